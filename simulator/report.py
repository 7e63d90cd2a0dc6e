"""Read a results run folder and write its Markdown report (``report.md``).

A run folder ``results/<experiment>/<run>/`` holds (DESIGN.md §7):

- ``manifest.json``: the experiment name and description, the resolved config, seeds, policies;
- ``metrics.parquet``: long format ``round, time, policy, seed, metric, value``;
- ``users.parquet``: sampled per-user trajectories (read by :mod:`simulator.plotting`);
- ``exposure.parquet``: per-item impressions in the first and last metric window;
- ``figures/``: PNG and SVG figures written by :func:`simulator.plotting.plot_run`.

:func:`write_report` turns these into ``report.md``: the description, a config summary, the
figures, a first-week / last-week table of the headline metrics (mean ± standard deviation over
seeds, and the change), and a "What happened" paragraph generated from the same numbers.
Every number in the report is computed by :func:`window_summary` from ``metrics.parquet``;
nothing is hard-coded. This module never imports matplotlib (that lives in
:mod:`simulator.plotting`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from simulator.errors import ResultsError
from simulator.io import atomic_write_text
from simulator.metrics.tracker import METRIC_NAMES

__all__ = [
    "FIGURE_CAPTIONS",
    "HEADLINE_METRICS",
    "METRIC_INFO",
    "METRIC_ORDER",
    "format_change",
    "format_mean_sd",
    "format_number",
    "markdown_table",
    "ordered_metrics",
    "partial_notice",
    "policy_order",
    "read_exposure",
    "read_manifest",
    "read_metrics",
    "read_users",
    "render_results",
    "window_days",
    "window_summary",
    "write_report",
]

METRICS_COLUMNS = ("round", "time", "policy", "seed", "metric", "value")
EXPOSURE_COLUMNS = ("policy", "seed", "window", "item_id", "exposure")
USERS_COLUMNS = (
    "round",
    "time",
    "policy",
    "seed",
    "user_id",
    "kind",
    "genre_a",
    "genre_b",
    "genre",
    "taste",
    "shown_share",
    "consumed_share",
)

#: Stable metric names (DESIGN.md §5) in display order; unknown metrics follow, sorted.
METRIC_ORDER: tuple[str, ...] = METRIC_NAMES

#: metric -> (title, axis label with unit), shared by the figures and the report.
METRIC_INFO: dict[str, tuple[str, str]] = {
    "gini": ("Gini of exposure", "Gini (0 = equal, 1 = one item)"),
    "coverage": ("Catalog coverage", "fraction of catalog shown"),
    "cdi": ("Catalog diversity index", "fraction of catalog"),
    "long_tail_share": ("Long-tail share", "share of impressions"),
    "popularity_bias": ("Popularity bias", "Spearman ρ (exposure, prior)"),
    "entropy_shown": ("Shown-genre entropy", "H / ln G (mean per user)"),
    "entropy_consumed": ("Consumed-genre entropy", "H / ln G (mean per user)"),
    "ild": ("Intra-list diversity", "mean cosine distance"),
    "homogenization": ("Homogenization", "mean Jaccard similarity"),
    "miscalibration": ("Miscalibration", "KL(p ‖ q̃) (nats)"),
    "ctr": ("Click-through rate", "clicks per impression"),
    "clicks_per_user": ("Clicks per active user", "clicks per user per day"),
    "utility": ("Expected utility", "expected clicks per slate"),
    "regret": ("Regret vs oracle", "expected clicks per slate"),
    "alt_genre_loss": ("Alternating users losing a genre", "share of alternating users"),
    "n_active": ("Active users", "users per day"),
}

#: Metrics of the final table, in order (those absent from a run are skipped).
HEADLINE_METRICS: tuple[str, ...] = (
    "gini",
    "coverage",
    "long_tail_share",
    "entropy_shown",
    "ctr",
    "utility",
    "regret",
    "alt_genre_loss",
)

#: Figure stem -> caption, in report order. Figures on disk with other stems follow, sorted.
FIGURE_CAPTIONS: dict[str, str] = {
    "trajectories": "Exposure concentration and diversity over time (line: mean over seeds; "
    "band: min–max across seeds).",
    "engagement": "Engagement, utility, regret and genre loss of alternating-interest users over time.",
    "lorenz": "Lorenz curves of item exposure in the first and the last metric window "
    "(whole catalog, zero-exposure items included).",
    "alternating_user": "Genre shares shown to one alternating-interest user (solid) against "
    "the user's true taste (dashed).",
    "all_metrics": "Every recorded metric, small multiples.",
    "policy_comparison": "Every policy on concentration, diversity, homogenization, "
    "miscalibration, engagement and utility/regret over time (mean over seeds, min–max band).",
    "tradeoff": "Final engagement against final Gini of exposure, one point per policy "
    "(mean over seeds, error bars: seed range).",
}


# --------------------------------------------------------------------------------------------
# Reading a run folder
# --------------------------------------------------------------------------------------------


def _run_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"results run folder not found: {run_dir}")
    return run_dir


def _require_columns(df: pd.DataFrame, required: Iterable[str], path: Path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ResultsError(f"{path} lacks required column(s) {missing}; has {list(df.columns)}")


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """Return ``manifest.json`` of a run folder as a dict (``{}`` if the file is absent).

    Raises
    ------
    ResultsError
        If the folder does not exist or the manifest is not a JSON object.
    """
    path = _run_dir(run_dir) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict):
        raise ResultsError(f"{path} must hold a JSON object; got {type(manifest).__name__}")
    return manifest


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """Read ``metrics.parquet`` (long format) with plain dtypes.

    Returns
    -------
    DataFrame with columns ``round`` (int), ``time`` (float, days), ``policy`` (str),
    ``seed`` (int), ``metric`` (str), ``value`` (float). ``time`` defaults to ``round``
    if the column is absent.

    Raises
    ------
    ResultsError
        If the folder or ``metrics.parquet`` is missing, unreadable, lacks a column or is empty.
    """
    path = _run_dir(run_dir) / "metrics.parquet"
    if not path.is_file():
        raise ResultsError(
            f"no metrics.parquet in {path.parent}: the run has not finished, or this is not a "
            "results run folder (expected results/<experiment>/<run>/metrics.parquet)"
        )
    try:
        df = pq.read_table(path).to_pandas()
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise ResultsError(f"cannot read {path}: {err}") from err
    if "time" not in df.columns and "round" in df.columns:
        df["time"] = df["round"].astype("float64")
    _require_columns(df, METRICS_COLUMNS, path)
    if df.empty:
        raise ResultsError(f"{path} holds no rows: nothing to plot or report")
    df = df.astype({"round": "int64", "time": "float64", "seed": "int64", "value": "float64"})
    df["policy"] = df["policy"].astype(str)
    df["metric"] = df["metric"].astype(str)
    return df


def read_exposure(run_dir: str | Path) -> pd.DataFrame | None:
    """Read ``exposure.parquet`` (per-item impressions per window); ``None`` if absent.

    Raises
    ------
    ResultsError
        If the file exists but is unreadable or lacks a column.
    """
    path = _run_dir(run_dir) / "exposure.parquet"
    if not path.is_file():
        return None
    try:
        df = pq.read_table(path).to_pandas()
    except Exception as err:
        raise ResultsError(f"cannot read {path}: {err}") from err
    _require_columns(df, EXPOSURE_COLUMNS, path)
    df["policy"] = df["policy"].astype(str)
    df["window"] = df["window"].astype(str)
    return df


def read_users(
    run_dir: str | Path, *, seed: int | None = None, kind: str | None = None
) -> pd.DataFrame | None:
    """Read ``users.parquet`` (per-user trajectories), optionally one seed and one user kind.

    The filters are pushed down to Parquet, so a large file is never loaded whole.
    ``seed=None`` with ``kind`` given reads every seed. Returns ``None`` if the file is absent.

    Raises
    ------
    ResultsError
        If the file exists but is unreadable or lacks a column.
    """
    path = _run_dir(run_dir) / "users.parquet"
    if not path.is_file():
        return None
    filters = []
    if seed is not None:
        filters.append(("seed", "=", int(seed)))
    if kind is not None:
        filters.append(("kind", "=", str(kind)))
    try:
        schema_names = pq.read_schema(path).names
        _require_columns(pd.DataFrame(columns=schema_names), USERS_COLUMNS, path)
        df = pq.read_table(path, filters=filters or None).to_pandas()
    except ResultsError:
        raise
    except Exception as err:
        raise ResultsError(f"cannot read {path}: {err}") from err
    df["policy"] = df["policy"].astype(str)
    df["kind"] = df["kind"].astype(str)
    return df


def window_days(manifest: Mapping[str, Any], default: int = 7) -> int:
    """The metric window in days: ``manifest["window_days"]``, else the config's, else 7."""
    for value in (
        manifest.get("window_days"),
        _get(manifest, "config", "metrics", "window_days"),
    ):
        if isinstance(value, int | float) and value >= 1:
            return int(value)
    return default


def policy_order(manifest: Mapping[str, Any], observed: Iterable[str] = ()) -> list[str]:
    """Policy labels in a fixed order: the manifest's ``policies`` first, then others sorted.

    ``policies`` may be a list of labels, of dicts with a ``label``/``name``, or a mapping
    ``label -> spec``; the config's ``policies`` table is the fallback. The order fixes each
    policy's colour in every figure.
    """
    raw = manifest.get("policies")
    if raw is None:
        raw = _get(manifest, "config", "policies")
    labels: list[str] = []
    if isinstance(raw, Mapping):
        labels = [str(k) for k in raw]
    elif isinstance(raw, list | tuple):
        for p in raw:
            if isinstance(p, Mapping):
                p = p.get("label", p.get("name"))
            if p is not None:
                labels.append(str(p))
    out = list(dict.fromkeys(labels))
    out += sorted(set(map(str, observed)) - set(out))
    return out


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def ordered_metrics(names: Iterable[str]) -> list[str]:
    """Metric names in :data:`METRIC_ORDER`, unknown ones after it, sorted."""
    names = set(names)
    return [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


def window_summary(
    metrics: pd.DataFrame, window: int = 7, metric_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """First-window vs last-window summary per policy and metric.

    For each (policy, seed, metric) the value is averaged over the first ``window`` rounds
    (rounds ``0 … window-1``) and over the last ``window`` rounds of the run (rounds
    ``R-window+1 … R``, ``R`` the largest round in ``metrics``), ignoring NaN. These per-seed
    means are then summarised across seeds.

    Returns
    -------
    DataFrame with one row per (metric, policy) and columns ``first_mean, first_sd, last_mean,
    last_sd, change_mean, change_sd`` (``change`` = last − first, per seed, paired),
    ``rel_change`` ((last_mean − first_mean) / |first_mean|; NaN if |first_mean| < 1e-6, where
    a relative change of float noise means nothing) and
    ``n_seeds`` (seeds with both windows present; only these enter the means, so
    ``change_mean == last_mean - first_mean``; 0 and NaN everywhere if there is none).
    Standard deviations use ``ddof=1`` (NaN for one seed).
    """
    if window < 1:
        raise ValueError(f"window must be an int >= 1; got {window}")
    df = metrics
    if metric_names is not None:
        df = df[df["metric"].isin(list(metric_names))]
    last_round = int(metrics["round"].max())
    first = df[df["round"] <= window - 1]
    last = df[df["round"] >= last_round - window + 1]
    keys = ["metric", "policy", "seed"]
    per_seed = pd.concat(
        {
            "first": first.groupby(keys)["value"].mean(),
            "last": last.groupby(keys)["value"].mean(),
        },
        axis=1,
    )
    # a seed counts only with both windows present, so that change = last - first exactly;
    # a (metric, policy) without any such seed is kept, with NaN (shown as n/a) and n_seeds 0
    paired = per_seed["first"].notna() & per_seed["last"].notna()
    per_seed = per_seed.where(paired)
    per_seed["change"] = per_seed["last"] - per_seed["first"]
    g = per_seed.groupby(level=["metric", "policy"])
    out = pd.DataFrame(
        {
            "first_mean": g["first"].mean(),
            "first_sd": g["first"].std(ddof=1),
            "last_mean": g["last"].mean(),
            "last_sd": g["last"].std(ddof=1),
            "change_mean": g["change"].mean(),
            "change_sd": g["change"].std(ddof=1),
            "n_seeds": g["change"].count(),
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (out["last_mean"] - out["first_mean"]) / out["first_mean"].abs()
    out["rel_change"] = rel.where(out["first_mean"].abs() >= 1e-6)
    out["n_seeds"] = out["n_seeds"].astype(int)
    return out


def format_number(x: float, signed: bool = False) -> str:
    """Format a report number: 3 decimals in [0.01, 10), 3 significant digits (at most 6
    decimals) below 0.01, fewer decimals above 10, ``n/a`` for NaN or None.

    >>> format_number(0.81234), format_number(-0.000412, signed=True), format_number(1234.5)
    ('0.812', '-0.000412', '1,234')
    """
    if x is None or not math.isfinite(x):
        return "n/a"
    ax = abs(x)
    if 0 < ax < 0.0095:  # 0.0095 would round to 0.010 at 3 decimals
        decimals = min(6, 2 - math.floor(math.log10(ax)))
        spec = f".{decimals}f"
    else:
        spec = ".3f" if ax < 10 else ".2f" if ax < 100 else ".1f" if ax < 1000 else ",.0f"
    return format(x, ("+" if signed else "") + spec)


def format_change(rel: float) -> str:
    """Format a relative change as a signed percentage with one decimal: ``-77.6%``."""
    if rel is None or not math.isfinite(rel):
        return "n/a"
    return f"{100 * rel:+.1f}%"


def format_mean_sd(mean: float, sd: float | None, signed: bool = False) -> str:
    """``mean ± sd`` with the sd given to as many decimals as the mean (no sd if NaN/None).

    >>> format_mean_sd(0.31712, 0.000775), format_mean_sd(0.00123, 0.0004, signed=True)
    ('0.317 ± 0.001', '+0.00123 ± 0.00040')
    """
    s = format_number(mean, signed=signed)
    if sd is None or not math.isfinite(sd) or s == "n/a":
        return s
    decimals = len(s.split(".")[1]) if "." in s else 0
    return f"{s} ± {sd:,.{decimals}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` has one of ``l``/``r``/``c`` per column.

    Cells are converted with ``str`` and ``|`` is escaped; columns are padded for reading the
    raw text.
    """
    cells = [[str(c).replace("|", "\\|") for c in header]]
    cells += [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    n = len(header)
    if any(len(r) != n for r in cells):
        raise ValueError(f"every row must have {n} cells like the header")
    align = align or "l" * n
    widths = [max(3, *(len(r[j]) for r in cells)) for j in range(n)]
    rule = {"l": ":{}", "r": "{}:", "c": ":{}:"}

    def line(r: Sequence[str]) -> str:
        padded = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align, strict=True)]
        return "| " + " | ".join(padded) + " |"

    seps = []
    for w, a in zip(widths, align, strict=True):
        fmt = rule[a]
        seps.append(fmt.format("-" * (w - fmt.count(":"))))
    return "\n".join([line(cells[0]), "| " + " | ".join(seps) + " |", *map(line, cells[1:])])


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def partial_notice(manifest: Mapping[str, Any]) -> list[str]:
    """Markdown lines naming the cells a partial run (``--policies``/``--seeds``) lacks, or []."""
    missing = manifest.get("missing_cells")
    if manifest.get("status") != "partial" or not isinstance(missing, list) or not missing:
        return []
    cells = manifest.get("cells") if isinstance(manifest.get("cells"), list) else []
    names = ", ".join(f"`{c}`" for c in missing[:8])
    names += f" and {len(missing) - 8} more" if len(missing) > 8 else ""
    return [
        f"> **Partial run**: {len(cells) - len(missing)} of {len(cells)} cells are finished; not yet "
        f"computed: {names}. Tables and figures cover the finished cells only.",
        "",
    ]


def _config_summary(manifest: Mapping[str, Any], metrics: pd.DataFrame, window: int) -> str:
    cfg = manifest.get("config") if isinstance(manifest.get("config"), Mapping) else {}
    n_rounds_seen = int(metrics["round"].max()) + 1
    seeds_seen = sorted(int(s) for s in metrics["seed"].unique())
    seeds = manifest.get("seeds") or _get(cfg, "experiment", "seeds") or seeds_seen
    policies = policy_order(manifest, metrics["policy"].unique())

    rows: list[tuple[str, Any]] = []

    def add(label: str, *path: str) -> None:
        v = _get(cfg, *path)
        if v is not None:
            rows.append((label, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else v))

    add("users", "users", "n_users")
    add("items (tracks)", "catalog", "n_items")
    add("genres", "catalog", "n_genres")
    add("artists", "catalog", "n_artists")
    add("share of alternating-interest users", "users", "alternating_share")
    add("slate size K", "simulation", "slate_size")
    add("click model", "click_model", "type")
    add("retrain every (days)", "simulation", "retrain_every_days")
    add("training window (days)", "simulation", "train_window_days")
    add("pre-system history (days)", "history", "days")
    n_cfg = _get(cfg, "experiment", "n_rounds")
    rounds = str(n_rounds_seen)
    if n_cfg not in (None, n_rounds_seen):
        rounds += f" of {n_cfg} configured"
    rows.append(("rounds (days) in metrics", rounds))
    rows.append(("metric window (days)", window))
    add("per-user window (days)", "metrics", "user_window_days")
    add("tracked users", "metrics", "n_tracked_users")
    rows.append(("seeds", ", ".join(map(str, seeds))))
    rows.append(("seeds in metrics", f"{len(seeds_seen)} ({', '.join(map(str, seeds_seen))})"))

    spec = _get(cfg, "policies")
    pol_cells = []
    for p in policies:
        s = spec.get(p) if isinstance(spec, Mapping) else None
        if isinstance(s, Mapping):
            params = ", ".join(f"{k}={v}" for k, v in s.items() if k != "type")
            typ = s.get("type", p)
            detail = typ if typ != p else ""
            detail = ", ".join(x for x in (detail, params) if x)
            pol_cells.append(f"`{p}`" + (f" ({detail})" if detail else ""))
        else:
            pol_cells.append(f"`{p}`")
    rows.append(("policies", "; ".join(pol_cells)))
    for key, label in (("git_commit", "git commit"), ("commit", "git commit")):
        if isinstance(manifest.get(key), str):
            rows.append((label, f"`{manifest[key]}`"))
            break
    versions = manifest.get("versions")
    if isinstance(versions, Mapping) and versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return markdown_table(["setting", "value"], rows, "ll")


def _figure_links(run_dir: Path, figures: Sequence[str | Path] | None) -> list[str]:
    """Figure stems to embed: the given ones, else the PNGs in ``figures/``; report order."""
    if figures is not None:
        stems = [Path(f).stem for f in figures]
    else:
        fig_dir = run_dir / "figures"
        stems = [p.stem for p in fig_dir.glob("*.png")] if fig_dir.is_dir() else []
    stems = list(dict.fromkeys(stems))
    known = [s for s in FIGURE_CAPTIONS if s in stems]
    return known + sorted(set(stems) - set(known))


def _summary_table(summary: pd.DataFrame, policies: Sequence[str], window: int, last_round: int) -> str:
    n_values = sorted(set(summary["n_seeds"]))
    uniform = len(n_values) == 1
    header = ["metric", "policy", "first week", "last week", "change", "change (%)"]
    align = "llrrrr"
    if not uniform:
        header.append("n seeds")
        align += "r"
    rows = []
    for metric in ordered_metrics(summary.index.get_level_values("metric").unique()):
        if metric not in HEADLINE_METRICS:
            continue
        for p in policies:
            if (metric, p) not in summary.index:
                continue
            r = summary.loc[(metric, p)]
            row = [
                f"`{metric}`",
                p,
                format_mean_sd(r["first_mean"], r["first_sd"]),
                format_mean_sd(r["last_mean"], r["last_sd"]),
                format_mean_sd(r["change_mean"], r["change_sd"], signed=True),
                format_change(r["rel_change"]),
            ]
            if not uniform:
                row.append(int(r["n_seeds"]))
            rows.append(row)
    if not rows:
        return "_None of the headline metrics was recorded._"
    lo = max(0, last_round - window + 1)
    if uniform:
        n = n_values[0]
        n_txt = f"n = {n} seed{'s' if n != 1 else ''}"
        sd_txt = " ± standard deviation across seeds" if n > 1 else " (one seed: no spread)"
    else:
        n_txt, sd_txt = "n seeds per row", " ± standard deviation across seeds"
    intro = (
        f"First week = mean over rounds 0–{window - 1}, last week = mean over rounds "
        f"{lo}–{last_round}, per seed; cells show the mean over seeds{sd_txt} ({n_txt}). "
        "Change = last week − first week, paired by seed; change (%) is relative to the "
        "first week."
    )
    if last_round - window + 1 <= window - 1:
        intro += " **The run is shorter than two windows: the two weeks overlap.**"
    return intro + "\n\n" + markdown_table(header, rows, align)


def _direction(delta_text: str) -> str:
    return (
        "stayed at"
        if delta_text.lstrip("+-").strip("0.,%") == ""
        else ("fell from" if delta_text.startswith("-") else "rose from")
    )


def _what_happened(summary: pd.DataFrame, policies: Sequence[str]) -> str:
    """One generated sentence per policy from the summary numbers (no hard-coded claims)."""

    def clause(metric: str, p: str, label: str, relative: bool) -> str | None:
        if (metric, p) not in summary.index:
            return None
        r = summary.loc[(metric, p)]
        if r["n_seeds"] == 0:
            return f"{label} was not recorded in both weeks"
        a, b = format_number(r["first_mean"]), format_number(r["last_mean"])
        if relative:
            delta = format_change(r["rel_change"])
            if delta == "n/a":
                delta = format_number(r["change_mean"], signed=True)
        else:
            delta = format_number(r["change_mean"], signed=True)
        verb = _direction(delta)
        if verb == "stayed at":
            return f"{label} stayed at {a} ({delta})"
        return f"{label} {verb} {a} to {b} ({delta})"

    lines = []
    for p in policies:
        if ("n_active", p) in summary.index:
            r = summary.loc[("n_active", p)]
            if r["first_mean"] == 0 and r["last_mean"] == 0:  # nothing to measure: say so
                lines.append(
                    f"- Under **{p}**, no user was active in the first or the last week, so there "
                    "is nothing to measure (is `users.activity_median` too low?)."
                )
                continue
        parts = [
            clause("gini", p, "the Gini of exposure", relative=False),
            clause("coverage", p, "catalog coverage", relative=True),
            clause("entropy_shown", p, "the mean shown-genre entropy", relative=True),
            clause("ctr", p, "CTR", relative=False),
        ]
        parts = [x for x in parts if x]
        if not parts:
            continue
        text = "; ".join(parts)
        lines.append(f"- Under **{p}**, {text}.")
    if not lines:
        return "_None of gini, coverage, entropy_shown, ctr was recorded._"
    extra = []
    gini = [(summary.loc[("gini", p), "change_mean"], p) for p in policies if ("gini", p) in summary.index]
    gini = [(d, p) for d, p in gini if math.isfinite(d)]
    if len(gini) > 1:
        d, p = max(gini)
        extra.append(
            f"The Gini of exposure rose most under **{p}** ({format_number(d, signed=True)})."
            if d > 0
            else "The Gini of exposure rose under no policy."
        )
    cov = [
        (summary.loc[("coverage", p), "rel_change"], p) for p in policies if ("coverage", p) in summary.index
    ]
    cov = [(d, p) for d, p in cov if math.isfinite(d)]
    if len(cov) > 1:
        d, p = min(cov)
        if d < 0:
            extra.append(f"Catalog coverage shrank most under **{p}** ({format_change(d)}).")
    return "\n".join(lines) + ("\n\n" + " ".join(extra) if extra else "")


def write_report(run_dir: str | Path, *, figures: Sequence[str | Path] | None = None) -> Path:
    """Write ``RUN_DIR/report.md`` from the run's manifest, metrics and figures.

    Parameters
    ----------
    run_dir : path of a results run folder (holding at least ``metrics.parquet``).
    figures : figure paths (or stems) to embed, e.g. the list :func:`simulator.plotting.plot_run`
        returns; by default every PNG in ``RUN_DIR/figures/``. Figures are linked relatively
        (``figures/<stem>.png``), with their SVG beside them.

    Returns
    -------
    Path of ``report.md`` (written atomically).

    Raises
    ------
    ResultsError
        If the folder or ``metrics.parquet`` is missing or malformed.
    """
    run_dir = _run_dir(run_dir)
    metrics = read_metrics(run_dir)
    manifest = read_manifest(run_dir)
    window = window_days(manifest)
    policies = policy_order(manifest, metrics["policy"].unique())
    policies = [p for p in policies if p in set(metrics["policy"])]
    last_round = int(metrics["round"].max())
    summary = window_summary(metrics, window)

    exp = manifest.get("experiment") if isinstance(manifest.get("experiment"), Mapping) else {}
    name = exp.get("name") or _get(manifest, "config", "experiment", "name") or run_dir.parent.name
    desc = exp.get("description") or _get(manifest, "config", "experiment", "description")

    out: list[str] = [f"# {name}: run `{run_dir.name}`", ""]
    out += [str(desc).strip() if desc else "_No description in the manifest._", ""]
    if not manifest:
        out += ["_No manifest.json in this run folder; settings below come from the metrics._", ""]
    out += partial_notice(manifest)
    out += ["## Configuration", "", _config_summary(manifest, metrics, window), ""]
    cfg = manifest.get("config")
    if isinstance(cfg, Mapping) and cfg:
        out += [
            "<details><summary>Resolved config (JSON)</summary>",
            "",
            "```json",
            json.dumps(cfg, indent=2, sort_keys=False, default=str),
            "```",
            "",
            "</details>",
            "",
        ]

    out += ["## Figures", ""]
    stems = _figure_links(run_dir, figures)
    if not stems:
        out += ["_No figures found in `figures/` (run `simulator.plotting.plot_run` first)._", ""]
    for stem in stems:
        caption = FIGURE_CAPTIONS.get(stem, stem.replace("_", " ").capitalize() + ".")
        out += [f"### {stem.replace('_', ' ').capitalize()}", ""]
        out += [f"![{caption}](figures/{stem}.png)", ""]
        has_svg = (run_dir / "figures" / f"{stem}.svg").is_file()
        svg = f" ([SVG](figures/{stem}.svg))" if has_svg else ""
        out += [f"_{caption}_{svg}", ""]

    out += ["## What happened", ""]
    lo = max(0, last_round - window + 1)
    out += [
        f"From the first week (rounds 0–{window - 1}) to the last week (rounds {lo}–{last_round}), "
        "mean over seeds:",
        "",
        _what_happened(summary, policies),
        "",
    ]
    out += ["## Headline metrics: first week vs last week", ""]
    out += [_summary_table(summary, policies, window, last_round), ""]
    present = ordered_metrics(metrics["metric"].unique())
    missing = [m for m in HEADLINE_METRICS if m not in present]
    if missing:
        out += [f"Not recorded in this run: {', '.join(f'`{m}`' for m in missing)}.", ""]
    other = [m for m in present if m not in HEADLINE_METRICS]
    if other:
        out += [f"Also recorded (see `metrics.parquet`): {', '.join(f'`{m}`' for m in other)}.", ""]

    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(out).rstrip() + "\n")
    return path


def render_results(run_dir: str | Path) -> tuple[list[Path], Path]:
    """Make every figure (:func:`simulator.plotting.plot_run`) and then ``report.md``.

    Returns
    -------
    (figure paths, report path)
    """
    from simulator.plotting import plot_run  # matplotlib only when figures are wanted

    paths = plot_run(run_dir)
    return paths, write_report(run_dir, figures=paths)
