"""A self-contained HTML report (and the Markdown one) of a finished results run folder.

``recloop report RUN_DIR`` calls :func:`build_report`, which

1. checks that ``RUN_DIR`` is a *finished* results folder (:func:`check_run_complete`):
   ``manifest.json`` with ``"status": "complete"``, every cell of the manifest finished
   (``cells/<policy>__seed<s>/cell.json``) and present in ``metrics.parquet`` with all its rounds;
2. draws the figures (:func:`simulator.plotting.plot_run`) if they are missing or older than
   ``metrics.parquet`` — or always, with ``redraw=True``;
3. writes ``report.md`` with :func:`simulator.report.write_report` and appends the final table
   with 95% confidence intervals over seeds;
4. writes ``report.html``: the scenario text, the config summary, every figure embedded as a
   base64 PNG (no external file or URL: it opens offline and can be mailed or attached), what
   happened, and the same final table.

Every number comes from ``metrics.parquet`` through :func:`simulator.report.window_summary`
(first week = the first ``window_days`` rounds, last week = the last ``window_days``, mean over
rounds per seed, then over seeds). The final table's intervals are Student-t intervals over
seeds (:func:`ci_summary`)::

    mean ± t_{0.975, n−1} · sd / √n        (sd with ddof = 1, n = number of seeds)

and for the change the same interval of the per-seed paired differences (last − first). With
one seed there is no interval. Each numeric cell of the HTML table carries its full-precision
value in ``data-value`` so that tests (and readers) can check it against the Parquet file.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from simulator.errors import ResultsError
from simulator.io import atomic_write_text
from simulator.report import (
    FIGURE_CAPTIONS,
    HEADLINE_METRICS,
    METRIC_INFO,
    format_change,
    format_number,
    markdown_table,
    ordered_metrics,
    policy_order,
    read_manifest,
    read_metrics,
    window_days,
    window_summary,
    write_report,
)

__all__ = [
    "CONFIDENCE",
    "ReportPaths",
    "build_report",
    "check_run_complete",
    "ci_summary",
    "format_ci",
    "write_html_report",
]

#: Confidence level of the final table's intervals.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class ReportPaths:
    """What :func:`build_report` wrote."""

    html: Path
    markdown: Path
    figures: list[Path]
    redrawn: bool


# --------------------------------------------------------------------------------------------
# Is this a finished results folder?
# --------------------------------------------------------------------------------------------


def check_run_complete(run_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """Check that ``run_dir`` is a finished results run folder; return its manifest and metrics.

    Raises
    ------
    ResultsError
        Naming the folder and what is wrong: it does not exist; it is not a results folder (no
        ``manifest.json`` nor ``metrics.parquet``); the manifest is missing, unreadable or its
        ``status`` is not ``"complete"``; cells of the manifest are not finished, or are absent
        from (or incomplete in) ``metrics.parquet``.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ResultsError(f"results run folder not found: {run_dir}")
    if not run_dir.is_dir():
        raise ResultsError(f"{run_dir} is a file, not a results run folder")
    has_manifest = (run_dir / "manifest.json").is_file()
    has_metrics = (run_dir / "metrics.parquet").is_file()
    if not has_manifest and not has_metrics:
        raise ResultsError(
            f"{run_dir} is not a results run folder: it has no manifest.json and no metrics.parquet "
            "(expected results/<experiment>/<run>/ as written by `recloop run`)"
        )
    if not has_manifest:
        raise ResultsError(
            f"{run_dir} has no manifest.json, so it cannot be told whether the run finished; "
            "rerun `recloop run CONFIG --out DIR` to complete it"
        )
    manifest = read_manifest(run_dir)
    status = manifest.get("status")
    cells = [str(c) for c in manifest.get("cells") or []]
    unfinished = [c for c in cells if not (run_dir / "cells" / c / "cell.json").is_file()]
    if status == "partial":
        raise ResultsError(
            f"the run in {run_dir} is partial (--policies/--seeds): {len(cells) - len(unfinished)} of "
            f"{len(cells)} cells are finished (missing: {_few(unfinished)}); compute the missing cells "
            "with `recloop run` (see report.md for which), then render"
        )
    if status != "complete":
        done = len(cells) - len(unfinished)
        detail = f"; {done} of {len(cells)} cells are finished" if cells else ""
        if unfinished:
            detail += f" (unfinished: {_few(unfinished)})"
        raise ResultsError(
            f"the run in {run_dir} is not complete (manifest.json status is {status!r}, expected "
            f"'complete'){detail}; rerun the same `recloop run` command to finish it"
        )
    if not cells:
        raise ResultsError(f"{run_dir}/manifest.json lists no cells: not a results run folder")
    if unfinished:
        raise ResultsError(
            f"the run in {run_dir} is marked complete but {len(unfinished)} of {len(cells)} cells "
            f"are missing from cells/: {_few(unfinished)}; rerun the same `recloop run` command"
        )
    if not has_metrics:
        raise ResultsError(
            f"{run_dir} has no metrics.parquet although its manifest says complete; rerun the same "
            "`recloop run` command to merge the cells"
        )
    metrics = read_metrics(run_dir)

    # every cell of the manifest must be in metrics.parquet, with every round
    present = metrics.groupby(["policy", "seed"])["round"].nunique()
    n_rounds = _get(manifest, "config", "experiment", "n_rounds")
    missing, short = [], []
    for name in cells:
        policy, _, seed = name.rpartition("__seed")
        try:
            key = (policy, int(seed))
        except ValueError:
            raise ResultsError(f"{run_dir}/manifest.json: malformed cell name {name!r}") from None
        if key not in present.index:
            missing.append(name)
        elif isinstance(n_rounds, int) and present[key] < n_rounds:
            short.append(f"{name} ({present[key]} of {n_rounds} rounds)")
    if missing:
        raise ResultsError(
            f"metrics.parquet in {run_dir} lacks {len(missing)} of the manifest's cells: "
            f"{_few(missing)}; rerun the same `recloop run` command to merge them"
        )
    if short:
        raise ResultsError(f"metrics.parquet in {run_dir} has unfinished cells: {_few(short)}")
    return manifest, metrics


def _few(names: Sequence[str], n: int = 6) -> str:
    more = f", … ({len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


# --------------------------------------------------------------------------------------------
# Numbers: seed confidence intervals
# --------------------------------------------------------------------------------------------


def ci_summary(metrics: pd.DataFrame, window: int = 7, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """First week, last week and change per (metric, policy), with t-intervals over seeds.

    Parameters
    ----------
    metrics : long-format metrics (``round, time, policy, seed, metric, value``).
    window : int
        Rounds per week (the metric window, in days).
    confidence : float
        Confidence level of the intervals, in (0, 1).

    Returns
    -------
    DataFrame indexed by (metric, policy) with the columns of
    :func:`simulator.report.window_summary` plus ``first_lo, first_hi, last_lo, last_hi,
    change_lo, change_hi`` (NaN with fewer than two seeds).

    Notes
    -----
    ``mean ± t_{(1+c)/2, n−1} · sd / √n`` with the across-seed standard deviation
    (``ddof=1``) of the per-seed window means; the change interval uses the per-seed paired
    differences. Seeds are independent replications, so this is the usual small-sample interval
    for a mean; with few seeds it is wide on purpose.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be a float in (0, 1); got {confidence}")
    out = window_summary(metrics, window)
    n = out["n_seeds"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(n >= 2, stats.t.ppf((1 + confidence) / 2, np.maximum(n - 1, 1)), np.nan)
        for part in ("first", "last", "change"):
            half = t * out[f"{part}_sd"].to_numpy() / np.sqrt(n)
            out[f"{part}_lo"] = out[f"{part}_mean"] - half
            out[f"{part}_hi"] = out[f"{part}_mean"] + half
    return out


def format_ci(mean: float, lo: float, hi: float, signed: bool = False) -> str:
    """``mean [lo, hi]`` with the bounds to as many decimals as the mean (no interval if NaN).

    >>> format_ci(0.96312, 0.96101, 0.96523), format_ci(0.5, float("nan"), float("nan"))
    ('0.963 [0.961, 0.965]', '0.500')
    """
    s = format_number(mean, signed=signed)
    if s == "n/a" or not (math.isfinite(lo) and math.isfinite(hi)):
        return s
    decimals = len(s.split(".")[1]) if "." in s else 0
    sign = "+" if signed else ""
    return f"{s} [{lo:{sign},.{decimals}f}, {hi:{sign},.{decimals}f}]"


def _final_rows(ci: pd.DataFrame, policies: Sequence[str]) -> list[tuple[str, str, pd.Series]]:
    rows = []
    for metric in ordered_metrics(ci.index.get_level_values("metric").unique()):
        if metric not in HEADLINE_METRICS:
            continue
        for p in policies:
            if (metric, p) in ci.index:
                rows.append((metric, p, ci.loc[(metric, p)]))
    return rows


def _ci_intro(ci: pd.DataFrame, window: int, last_round: int, confidence: float) -> str:
    n_values = sorted(set(ci["n_seeds"]))
    n_txt = f"n = {n_values[0]} seeds" if len(n_values) == 1 else "n seeds per row"
    lo = max(0, last_round - window + 1)
    pct = f"{100 * confidence:g}%"
    text = (
        f"First week = mean over rounds 0–{window - 1} (days 1–{window}), last week = mean over "
        f"rounds {lo}–{last_round} (days {lo + 1}–{last_round + 1}), per seed; each cell is the "
        f"mean over seeds and its {pct} confidence interval [low, high], a Student-t interval over "
        f"seeds (mean ± t(n−1) · sd / √n, {n_txt}). Change = last week − first week, paired by "
        "seed, with the same interval of the per-seed differences; change (%) is relative to "
        "the first-week mean."
    )
    if max(n_values) < 2:
        text += " With one seed there is no interval: run more seeds for one."
    return text


def final_table_markdown(ci: pd.DataFrame, policies: Sequence[str], window: int, last_round: int) -> str:
    """The final table (Markdown) of :func:`ci_summary`, with its explanation."""
    rows = [
        [
            f"`{m}`",
            p,
            format_ci(r["first_mean"], r["first_lo"], r["first_hi"]),
            format_ci(r["last_mean"], r["last_lo"], r["last_hi"]),
            format_ci(r["change_mean"], r["change_lo"], r["change_hi"], signed=True),
            format_change(r["rel_change"]),
            int(r["n_seeds"]),
        ]
        for m, p, r in _final_rows(ci, policies)
    ]
    if not rows:
        return "_None of the headline metrics was recorded._"
    header = ["metric", "policy", "first week", "last week", "change", "change (%)", "n seeds"]
    return (
        _ci_intro(ci, window, last_round, CONFIDENCE)
        + "\n\n"
        + markdown_table(header, rows, "llrrrrr")
        + "\n\n"
        + "Units: "
        + "; ".join(f"`{m}`: {METRIC_INFO[m][1]}" for m in _table_metrics(ci, policies))
        + "."
    )


def _table_metrics(ci: pd.DataFrame, policies: Sequence[str]) -> list[str]:
    """Metrics of the final table that have a unit in METRIC_INFO, in table order."""
    return list(dict.fromkeys(m for m, _, _ in _final_rows(ci, policies) if m in METRIC_INFO))


# --------------------------------------------------------------------------------------------
# The tiny Markdown subset that simulator.report produces, to HTML
# --------------------------------------------------------------------------------------------

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w])_(.+?)_(?![\w])")


def md_inline(text: str) -> str:
    """HTML of one line of the report's Markdown: escapes, then `code`, **bold**, _emphasis_."""
    parts = _CODE.split(str(text))
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # inside backticks: literal
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            s = html.escape(part)
            s = _BOLD.sub(r"<strong>\1</strong>", s)
            s = _EM.sub(r"<em>\1</em>", s)
            out.append(s)
    return "".join(out)


def md_blocks(text: str) -> str:
    """HTML of paragraphs and ``- `` bullet lists (the "What happened" text)."""
    out, in_list = [], False
    for line in str(text).splitlines():
        is_item = line.startswith("- ")
        if is_item and not in_list:
            out.append("<ul>")
        if not is_item and in_list:
            out.append("</ul>")
        in_list = is_item
        if is_item:
            out.append(f"<li>{md_inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{md_inline(line)}</p>")
    if in_list:
        out.append("</ul>")
    return "\n".join(out)


def parse_markdown_table(md: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a table written by :func:`simulator.report.markdown_table`."""
    lines = [ln for ln in md.strip().splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        raise ValueError("not a Markdown table")

    def cells(line: str) -> list[str]:
        inner = line.strip()[1:-1]
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]

    return cells(lines[0]), [cells(ln) for ln in lines[2:]]


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1.2em; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 2px solid #0173b2; padding-bottom: .2em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .15em; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #d0d0d0; padding: .3em .6em; vertical-align: top; }
th { background: #f2f5f8; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.first-of-metric td { border-top: 2px solid #9aa; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .8em; }
figure { margin: 1em 0 2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e4e4; }
figcaption { font-style: italic; color: #444; margin-top: .3em; }
.scenario { font-size: 1.05em; background: #f4f8fb; border-left: 4px solid #0173b2;
            padding: .1em 1em; }
.meta { color: #555; font-size: .85em; }
.note { color: #333; font-size: .92em; }
@media print { figure { page-break-inside: avoid; } body { max-width: none; } }
"""


def _table_html(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    head = "".join(f"<th>{md_inline(h)}</th>" for h in header)
    body = []
    for r in rows:
        tds = "".join(
            f'<td class="num">{md_inline(c)}</td>' if num else f"<td>{md_inline(c)}</td>"
            for c, num in zip(r, numeric, strict=True)
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _final_table_html(ci: pd.DataFrame, policies: Sequence[str]) -> str:
    header = ["metric", "policy", "first week", "last week", "change", "change (%)", "n seeds"]
    head = "".join(f"<th>{h}</th>" for h in header)
    body, last_metric = [], None
    for m, p, r in _final_rows(ci, policies):
        cls = ' class="first-of-metric"' if m != last_metric else ""
        last_metric = m
        unit = METRIC_INFO.get(m, (m, ""))[1]
        cells = [f'<td title="{html.escape(unit)}"><code>{html.escape(m)}</code></td>', f"<td>{p}</td>"]
        for part, signed in (("first", False), ("last", False), ("change", True)):
            mean, lo, hi = r[f"{part}_mean"], r[f"{part}_lo"], r[f"{part}_hi"]
            attrs = (
                f'data-metric="{html.escape(m)}" data-policy="{html.escape(p)}" '
                f'data-stat="{part}_mean" data-value="{_repr(mean)}" '
                f'data-lo="{_repr(lo)}" data-hi="{_repr(hi)}"'
            )
            cells.append(f'<td class="num" {attrs}>{html.escape(format_ci(mean, lo, hi, signed))}</td>')
        cells.append(f'<td class="num">{html.escape(format_change(r["rel_change"]))}</td>')
        cells.append(f'<td class="num">{int(r["n_seeds"])}</td>')
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    if not body:
        return "<p><em>None of the headline metrics was recorded.</em></p>"
    return f'<table class="final"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _paragraphs(text: Any) -> str:
    """Plain text (TOML description, wrapped by hand) as HTML paragraphs, lines re-flowed."""
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", str(text or "").strip())]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paras if p)


def _repr(x: float) -> str:
    return repr(float(x)) if x is not None and math.isfinite(x) else "nan"


def _figure_stems(fig_dir: Path) -> list[str]:
    stems = [p.stem for p in fig_dir.glob("*.png")] if fig_dir.is_dir() else []
    known = [s for s in FIGURE_CAPTIONS if s in stems]
    return known + sorted(set(stems) - set(known))


def _figures_html(run_dir: Path) -> str:
    parts = []
    stems = _figure_stems(run_dir / "figures")
    if not stems:
        return "<p><em>No figures in figures/.</em></p>"
    for stem in stems:
        caption = FIGURE_CAPTIONS.get(stem, stem.replace("_", " ").capitalize() + ".")
        data = base64.b64encode((run_dir / "figures" / f"{stem}.png").read_bytes()).decode("ascii")
        title = stem.replace("_", " ").capitalize()
        parts.append(
            f'<figure id="fig-{html.escape(stem)}"><h3>{html.escape(title)}</h3>'
            f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{md_inline(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def write_html_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    manifest: Mapping[str, Any] | None = None,
    metrics: pd.DataFrame | None = None,
) -> Path:
    """Write the self-contained ``report.html`` of a run folder (figures must already exist).

    Parameters
    ----------
    run_dir : the results run folder.
    out : the HTML file (default ``RUN_DIR/report.html``).
    manifest, metrics : already read ones (default: read from ``run_dir``).

    Returns
    -------
    Path of the HTML file (written atomically).
    """
    from simulator import report as md  # the Markdown report's own helpers, for one source of text

    run_dir = Path(run_dir)
    manifest = dict(manifest) if manifest is not None else read_manifest(run_dir)
    metrics = metrics if metrics is not None else read_metrics(run_dir)
    window = window_days(manifest)
    policies = [p for p in policy_order(manifest, metrics["policy"].unique()) if p in set(metrics["policy"])]
    last_round = int(metrics["round"].max())
    ci = ci_summary(metrics, window)

    exp = manifest.get("experiment") if isinstance(manifest.get("experiment"), Mapping) else {}
    name = exp.get("name") or _get(manifest, "config", "experiment", "name") or run_dir.parent.name
    desc = exp.get("description") or _get(manifest, "config", "experiment", "description") or ""
    title = f"{name}: run {run_dir.name}"

    cfg_header, cfg_rows = parse_markdown_table(md._config_summary(manifest, metrics, window))
    cfg = manifest.get("config")
    cfg_json = json.dumps(cfg, indent=2, default=str) if isinstance(cfg, Mapping) else ""

    happened_html = md_blocks(md._what_happened(window_summary(metrics, window), policies))

    lo = max(0, last_round - window + 1)
    present = ordered_metrics(metrics["metric"].unique())
    other = [m for m in present if m not in HEADLINE_METRICS]
    units = "; ".join(
        f"<code>{m}</code>: {html.escape(METRIC_INFO[m][1])}" for m in _table_metrics(ci, policies)
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    details = (
        f"<details><summary>Resolved config (JSON)</summary><pre>{html.escape(cfg_json)}</pre></details>"
        if cfg_json
        else ""
    )
    also = (
        '<p class="note">Also recorded in <code>metrics.parquet</code>: '
        + ", ".join(f"<code>{m}</code>" for m in other)
        + ".</p>"
        if other
        else ""
    )
    body = f"""
<h1>{html.escape(title)}</h1>
<p class="meta">Generated {generated} by <code>recloop report</code> from
<code>{html.escape(str(run_dir))}</code> (manifest status: {html.escape(str(manifest.get("status")))}).
Every number below is computed from <code>metrics.parquet</code>.</p>
<h2>Scenario</h2>
<div class="scenario">{_paragraphs(desc) or "<p><em>No description in the manifest.</em></p>"}</div>
<h2>Configuration</h2>
{_table_html(cfg_header, cfg_rows, [False] * len(cfg_header))}
{details}
<h2>Figures</h2>
{_figures_html(run_dir)}
<h2>What happened</h2>
<p>From the first week (rounds 0–{window - 1}) to the last week (rounds {lo}–{last_round}),
mean over seeds:</p>
{happened_html}
<h2>Final table: first week vs last week, {100 * CONFIDENCE:g}% confidence intervals over seeds</h2>
<p class="note">{md_inline(_ci_intro(ci, window, last_round, CONFIDENCE))}</p>
{_final_table_html(ci, policies)}
<p class="note">Units: {units}.</p>
{also}
"""
    doc = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"{body.strip()}\n</body>\n</html>\n"
    )
    path = Path(out) if out is not None else run_dir / "report.html"
    atomic_write_text(path, doc)
    return path


# --------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------


def _figures_stale(run_dir: Path) -> bool:
    fig_dir = run_dir / "figures"
    pngs = list(fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    if not pngs:
        return True
    newest_input = max(
        (run_dir / f).stat().st_mtime
        for f in ("metrics.parquet", "users.parquet", "exposure.parquet")
        if (run_dir / f).is_file()
    )
    expected = {"trajectories", "engagement", "all_metrics"}
    have = {p.stem for p in pngs}
    return not expected <= have or min(p.stat().st_mtime for p in pngs) < newest_input


def build_report(
    run_dir: str | Path, out: str | Path | None = None, *, redraw: bool | None = None
) -> ReportPaths:
    """Check a finished run folder, (re)draw its figures if needed, write report.md and report.html.

    Parameters
    ----------
    run_dir : the results run folder (``results/<experiment>/<run>/``).
    out : the HTML file; default ``RUN_DIR/report.html``. ``report.md`` is always written into
        ``RUN_DIR`` (its figure links are relative to it).
    redraw : True always redraws the figures, False never does, None (default) redraws them
        when a figure is missing or older than the run's Parquet files.

    Raises
    ------
    ResultsError
        If the folder is not a finished results run folder (see :func:`check_run_complete`).
    """
    run_dir = Path(run_dir)
    manifest, metrics = check_run_complete(run_dir)
    do_draw = _figures_stale(run_dir) if redraw is None else redraw
    if do_draw:
        from simulator.plotting import plot_run

        figures = plot_run(run_dir)
    else:
        figures = sorted((run_dir / "figures").glob("*.png")) + sorted((run_dir / "figures").glob("*.svg"))
    md_path = write_report(run_dir, figures=[f for f in figures if f.suffix == ".png"] or None)
    window = window_days(manifest)
    policies = [p for p in policy_order(manifest, metrics["policy"].unique()) if p in set(metrics["policy"])]
    ci = ci_summary(metrics, window)
    table = final_table_markdown(ci, policies, window, int(metrics["round"].max()))
    text = md_path.read_text(encoding="utf-8").rstrip() + (
        f"\n\n## Final table: {100 * CONFIDENCE:g}% confidence intervals over seeds\n\n{table}\n"
    )
    atomic_write_text(md_path, text)
    html_path = write_html_report(run_dir, out, manifest=manifest, metrics=metrics)
    return ReportPaths(html_path, md_path, list(figures), do_draw)
