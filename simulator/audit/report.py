"""Write an audit: ``report.md`` for a design review, tables, figures — all or nothing.

Layout of the output folder::

    report.md          verdict, alerts with evidence, remedies, inputs, tables, figures, method
    audit.json         machine-readable summary (inputs, alerts, trends, pooled metrics, timing)
    windows.csv        one row per window: counts, every computable metric and its 95% CI
    trends.csv         one row per metric: Mann–Kendall, Sen's slope, first/last, change
    position_ctr.csv   CTR by position (all complete windows pooled, then each window), Wilson CIs
    figures/           trajectories, lorenz, entropy, position_ctr (PNG + SVG)

Everything is written into a hidden temporary folder beside the destination and renamed into
place at the end, so a failure leaves nothing behind and a reader never sees half a report. An
existing destination is replaced only if it is an earlier audit (it holds ``audit.json``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simulator.audit.alerts import trend_evidence
from simulator.audit.metrics import METRIC_INFO, position_ctr_summary
from simulator.errors import ValidationError

if TYPE_CHECKING:
    from simulator.audit.core import AuditResult

__all__ = ["default_out_dir", "render_report", "write_audit"]

_ORDER = ("gini", "coverage", "cdi", "long_tail_share", "popularity_bias", "entropy_shown", "ctr")

#: What the seed lesson suggests per symptom (quotes from "Feedback Loops and Data Flywheels").
REMEDIES: dict[str, tuple[str, str]] = {
    "exploration": (
        "**Exploration floor.** Keep a permanent share of randomised recommendations: "
        '"Maintain a minimum exploration rate (1-5%) permanently" and, when diversity has '
        'already declined, "increase exploration rate to 10-15% temporarily".',
        "It feeds the model data about items it would not show, which is what a concentrating "
        "loop lacks. Uniform exploration protects coverage first; the non-exploring 95-99% of "
        "traffic can keep concentrating (re-audit the Gini after adding it), so pair it with IPW "
        "(what the model learns) and a coverage constraint (what it may show).",
    ),
    "ipw": (
        '**Inverse propensity weighting (IPW).** "Apply IPW correction to existing training data '
        'to reduce the weight of overexposed items"; long term, "permanent propensity weighting".',
        "",
    ),
    "coverage": (
        '**Coverage constraint.** "Add a re-ranking stage that enforces catalog coverage '
        'constraints" (and calibrated or diversity-aware re-ranking for per-user diversity).',
        "",
    ),
}
_REMEDY_FOR = {
    "gini_rising": ("exploration", "ipw", "coverage"),
    "gini_high": ("exploration", "ipw", "coverage"),
    "coverage_falling": ("exploration", "coverage"),
    "cdi_falling": ("exploration", "coverage"),
    "long_tail_falling": ("exploration", "ipw", "coverage"),
    "popularity_bias_rising": ("ipw", "exploration"),
    "popularity_bias_high": ("ipw", "exploration"),
    "diversity_shrinking": ("exploration", "coverage"),
}


def default_out_dir(log: str | Path) -> Path:
    """``results/audit/<name>``: the log's stem, prefixed by its folder for generic names."""
    p = Path(log)
    name = p.name if p.is_dir() else p.name.split(".")[0]
    generic = name in ("all", "logs", "log", "data", "impressions") or name.startswith("part-")
    if generic or "=" in name:
        parts = [q for q in p.resolve().parts[-4:] if q not in ("/",)]
        name = "_".join(q.replace("=", "-").split(".")[0] for q in parts[-3:] if q)
    return Path("results") / "audit" / name


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v + 0.0:.{digits}f}"  # + 0.0: never print "-0.000"


def _ci(lo: float, hi: float, digits: int = 3) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f" [{lo:.{digits}f}, {hi:.{digits}f}]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _metric_names(result: AuditResult) -> list[str]:
    return [m for m in _ORDER if m in result.metrics.values]


# --------------------------------------------------------------------------------------------
# tables


def windows_frame(result: AuditResult) -> pd.DataFrame:
    """One row per window; columns only for computable metrics (never an all-NaN column)."""
    m, grid = result.metrics, result.grid
    data: dict[str, Any] = {
        "window": np.arange(grid.n_windows),
        "label": result.labels,
        "start": [grid.start(w) for w in range(grid.n_windows)],
        "end": [grid.end(w) for w in range(grid.n_windows)],
        "complete": m.complete,
        "impressions": m.n_impressions,
        "clicks": m.n_clicks,
    }
    if result.sample is not None:
        data["active_users_sampled"] = m.n_users
    for name in _metric_names(result):
        data[name] = m.values[name]
        if np.isfinite(m.low[name]).any():
            data[f"{name}_low"] = m.low[name]
            data[f"{name}_high"] = m.high[name]
    if m.entropy_quantiles is not None:
        for j, q in enumerate((10, 25, 50, 75, 90)):
            data[f"entropy_shown_p{q}"] = m.entropy_quantiles[:, j]
    if m.uniform_gini is not None and np.isfinite(m.uniform_gini).any():
        data["gini_uniform_mean"] = m.uniform_gini[:, 0]
        data["gini_uniform_low"] = m.uniform_gini[:, 1]
        data["gini_uniform_high"] = m.uniform_gini[:, 2]
        data["gini_uniform_percentile"] = m.uniform_gini_pct
    return pd.DataFrame(data)


def trends_frame(result: AuditResult) -> pd.DataFrame:
    rows = []
    for name in _metric_names(result):
        tr = result.trends[name]
        rows.append(
            {
                "metric": name,
                "n_windows": int(tr.windows.size),
                "first": tr.first,
                "first_low": tr.first_ci[0],
                "first_high": tr.first_ci[1],
                "last": tr.last,
                "last_low": tr.last_ci[0],
                "last_high": tr.last_ci[1],
                "change": tr.change,
                "change_low": tr.change_ci[0],
                "change_high": tr.change_ci[1],
                "mk_s": tr.mk.s,
                "mk_var_s": tr.mk.var_s,
                "mk_z": tr.mk.z,
                "mk_p": tr.mk.p_value,
                "holm_p": tr.holm_p,
                "kendall_tau": tr.mk.tau,
                "trend": tr.mk.trend,
                "sen_slope_per_window": tr.sen.slope,
                "sen_low": tr.sen.low,
                "sen_high": tr.sen.high,
                "fitted_change": tr.total_change,
                "correction": tr.mk.correction,
                "note": tr.note,
            }
        )
    return pd.DataFrame(rows)


def _position_summaries(result: AuditResult) -> list:
    tw = result.metrics.trend_windows
    if tw.size == 0:
        return []
    out = [position_ctr_summary(result.counts, tw, "all complete windows")]
    if tw.size > 1:
        out.append(position_ctr_summary(result.counts, tw[:1], f"first: {result.labels[tw[0]]}"))
        out.append(position_ctr_summary(result.counts, tw[-1:], f"last: {result.labels[tw[-1]]}"))
    return out


def position_frame(result: AuditResult) -> pd.DataFrame:
    """CTR by position: all complete windows pooled, then every non-empty window."""
    rows = []
    summaries = _position_summaries(result)[:1]
    for w in np.flatnonzero(~result.metrics.empty):
        summaries.append(position_ctr_summary(result.counts, np.array([w]), result.labels[w]))
    for s in summaries:
        for k in range(s.impressions.size):
            rows.append(
                {
                    "windows": s.label,
                    "position": k + 1,
                    "impressions": int(s.impressions[k]),
                    "clicks": int(s.clicks[k]),
                    "ctr": s.ctr[k],
                    "ctr_low": s.low[k],
                    "ctr_high": s.high[k],
                    "chi2_equal_ctr_p": s.chi2_p,
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# report.md


def _verdict(result: AuditResult) -> str:
    fired = result.fired
    n_tw = result.metrics.trend_windows.size
    span = ""
    if n_tw:
        tw = result.metrics.trend_windows
        span = (
            f" over {n_tw} complete {result.spec.describe()} windows "
            f"({result.labels[tw[0]]} to {result.labels[tw[-1]]})"
        )
    if fired:
        names = ", ".join(f"`{a.rule.name}`" for a in fired)
        head = f"**Verdict: {len(fired)} alert{'s' if len(fired) > 1 else ''}** — {names}{span}."
        bullets = "\n".join(f"- `{a.rule.name}`: {a.rule.meaning}." for a in fired)
        return f"{head}\n\n{bullets}"
    not_eval = [a for a in result.alerts if a.status == "not evaluated"]
    tested = [a for a in result.alerts if a.status == "ok"]
    if not tested:
        return (
            f"**Verdict: no conclusion**{span} — no alert rule could be evaluated "
            f"({not_eval[0].evidence if not_eval else 'no rule enabled'})."
        )
    return (
        f"**Verdict: no alert**{span}. No metric shows a significant trend in the feedback-loop "
        f"direction beyond its threshold (tests at α = {result.options.alpha:g})."
    )


def _how_sure(result: AuditResult) -> list[str]:
    m, opts = result.metrics, result.options
    n_tw = m.trend_windows.size
    lines = [
        f"- Trends: Mann–Kendall test per metric (two-sided, tie-corrected variance"
        f"{', Hamed–Rao autocorrelation correction' if opts.trend_correction == 'hamed_rao' else ''}) "
        f"over the {n_tw} complete windows; an alert needs p < {opts.alpha:g} in the loop's direction "
        "*and* a fitted change (Sen's slope × span) at least the rule's threshold. Holm-adjusted "
        "p-values across the metrics are in the trend table for the multiple-testing-minded.",
    ]
    from simulator.audit.trends import min_attainable_p

    if 3 <= n_tw and min_attainable_p(n_tw) >= opts.alpha:
        lines.append(
            f"- **Too few windows for significance**: with {n_tw} windows even a perfectly monotone "
            f"series gives p ≥ {min_attainable_p(n_tw):.3f}. Use a shorter `--window`."
        )
    elif n_tw < 3:
        lines.append(
            f"- **No trend test**: {n_tw} complete window(s); use a shorter `--window` (≥ 5 windows)."
        )
    if result.counts.n_groups > 1:
        if result.source.user is not None:
            lines.append(
                f"- Intervals: 95% delete-a-group jackknife over {result.counts.n_groups} hash groups of "
                "users; the change first → last uses the same groups, so it accounts for the users both "
                "windows share."
            )
        else:
            lines.append(
                f"- Intervals: 95% delete-a-group jackknife over {result.counts.n_groups} hash groups of "
                "impressions for exposure metrics and CTR (the log has no user id: impressions are "
                "treated as independent), and of user segments for CDI and entropy."
            )
    tw = m.trend_windows
    if tw.size >= 2:
        a, b = int(tw[0]), int(tw[-1])
        vol = (m.n_impressions[b] - m.n_impressions[a]) / max(m.n_impressions[a], 1)
        per_user = ""
        if result.sample is not None and m.n_users[a] > 0 and m.n_users[b] > 0 and result.sample.is_complete:
            per_user = (
                f"; {m.n_impressions[a] / m.n_users[a]:.1f} → {m.n_impressions[b] / m.n_users[b]:.1f} "
                "impressions per active user"
            )
        lines.append(
            f"- Traffic: {m.n_impressions[a]:,} impressions in the first complete window, "
            f"{m.n_impressions[b]:,} in the last ({vol:+.0%}){per_user}. Coverage and CDI depend on "
            "volume (fewer impressions show fewer items), per-user entropy on impressions per user: "
            "read their trends with this in mind."
        )
    incomplete = np.flatnonzero(~m.complete)
    if incomplete.size:
        lines.append(
            f"- Incomplete window(s) {', '.join(result.labels[w] for w in incomplete)} (the log ends "
            "inside) are reported but not tested: a short window has lower coverage and higher Gini "
            "by construction."
        )
    if not result.info.catalog_known:
        lines.append(
            "- **Catalog size unknown**: exposure metrics are over the items seen in the log; items "
            "never shown are invisible, so the Gini is a lower bound and coverage is relative."
        )
    return lines


def _remedies(result: AuditResult) -> list[str]:
    fired = result.fired
    lines: list[str] = []
    if not fired:
        lines.append(
            "No symptom to treat. The seed's standing advice still applies: \"Include randomized "
            'exploration in production (even at 1-5% of traffic)", "Monitor long-tail coverage '
            'monthly", "Track Gini coefficient of recommendation distribution" — this audit, run '
            "on a schedule (`recloop audit ... --fail-on-alert`), is that monitoring."
        )
        return lines
    wanted: list[str] = []
    for a in fired:
        for r in _REMEDY_FOR.get(a.rule.name, ()):
            if r not in wanted:
                wanted.append(r)
    for r in wanted:
        text, extra = REMEDIES[r]
        triggers = ", ".join(f"`{a.rule.name}`" for a in fired if r in _REMEDY_FOR.get(a.rule.name, ()))
        line = f"- {text} Suggested by {triggers}."
        if extra:
            line += f" {extra}"
        if r == "ipw":
            line += " " + _ipw_readiness(result)
        lines.append(line)
    return lines


def _ipw_readiness(result: AuditResult) -> str:
    s = result.scan
    if s.pscore_column is None:
        return (
            '**This log has no propensity column**, so IPW cannot be applied to it: "If your system '
            "does not log propensities, you cannot perform counterfactual evaluation and cannot apply "
            'IPW correction" — log them at decision time first.'
        )
    if s.pscore_min >= 1.0:
        return (
            f"The log has a propensity column (`{s.pscore_column}`) but every value is 1: the logging "
            "policy is deterministic, items it never shows have propensity 0, and IPW has nothing to "
            're-weight — "This is why every production recommendation system should include some '
            'randomization": add the exploration floor first.'
        )
    return (
        f"The log has propensities (`{s.pscore_column}` in [{s.pscore_min:.3g}, {s.pscore_max:.3g}]), "
        "so IPW training and off-policy evaluation (`simulator.ope`) can use it."
    )


def _inputs(result: AuditResult) -> str:
    s, src, info, grid = result.scan, result.source, result.info, result.grid
    users = "none"
    if result.sample is not None:
        n_u = f"{result.sample.n_users:,.0f}" + ("" if result.sample.exact_count else " (estimated)")
        users = f"{n_u} distinct; {src.user_label}"
        if not result.sample.is_complete or result.counts.n_drops:
            users += f"; per-user metrics on a hash sample of {result.counts.n_sampled_users:,}"
    span = f"{grid.label(0)} to {grid.label(grid.n_windows - 1)}"
    if s.pscore_column is None:
        prop = "not logged (no `pscore` / `propensity_score` column)"
    else:
        prop = f"`{s.pscore_column}` in [{s.pscore_min:.3g}, {s.pscore_max:.3g}], all valid"
    rows = [
        ["log", f"`{src.path}`"],
        [
            "format",
            f"{src.log_format} ({src.file_format})" + (f"; filters {src.filters}" if src.filters else ""),
        ],
        ["rows (impressions)", f"{s.n_rows:,} ({s.n_clicks:,} clicks)"],
        [
            "windows",
            f"{grid.n_windows} × {result.spec.describe()} ({span}); "
            f"{int(result.metrics.complete.sum())} complete",
        ],
        ["slate positions", str(s.max_position + 1)],
        ["catalog", info.catalog_source],
        ["categories", info.category_source],
        ["pre-system popularity", info.popularity_source],
        ["long-tail head", result.metrics.head_source],
        ["users", users],
        ["propensities", prop],
    ]
    return _md_table(["input", "value"], rows)


def _windows_table(result: AuditResult) -> str:
    m = result.metrics
    names = _metric_names(result)
    header = ["window", "complete", "impressions"]
    if result.sample is not None:
        header.append("active users" + ("" if result.sample.is_complete else " (sample)"))
    header += [METRIC_INFO[n][0] + (" (mean; p10–p90)" if n == "entropy_shown" else "") for n in names]
    rows = []
    lts_ref = "first complete window" in result.metrics.head_source
    ref_w = int(m.trend_windows[0]) if m.trend_windows.size else -1
    for w in range(result.grid.n_windows):
        r = [result.labels[w], "yes" if m.complete[w] else "**no**", f"{m.n_impressions[w]:,}"]
        if result.sample is not None:
            r.append(f"{m.n_users[w]:,}")
        for n in names:
            v = m.values[n][w]
            if n == "long_tail_share" and lts_ref and w == ref_w:
                r.append("reference (defines the head)")
                continue
            if m.empty[w]:
                r.append("empty window")
                continue
            cell = _f(v) + _ci(m.low[n][w], m.high[n][w])
            if n == "entropy_shown" and m.entropy_quantiles is not None and math.isfinite(v):
                q = m.entropy_quantiles[w]
                cell += f"; {q[0]:.2f}–{q[4]:.2f}"
            r.append(cell)
        rows.append(r)
    return _md_table(header, rows)


def _trends_table(result: AuditResult) -> str:
    rows = []
    for n in _metric_names(result):
        tr = result.trends[n]
        if tr.windows.size < 3:
            rows.append([METRIC_INFO[n][0], str(tr.windows.size), "—", "—", "—", "—", "—", tr.note or "—"])
            continue
        rows.append(
            [
                METRIC_INFO[n][0],
                str(tr.windows.size),
                f"{tr.change:+.3f}{_ci(*tr.change_ci)}",
                f"{tr.sen.slope:+.4f}{_ci(tr.sen.low, tr.sen.high, 4)}",
                f"{tr.mk.s:+.0f} / {_f(tr.mk.z, 2)}",
                _p(tr.mk.p_value),
                _p(tr.holm_p),
                tr.mk.trend + (f" ({tr.note})" if tr.note else ""),
            ]
        )
    return _md_table(
        [
            "metric",
            "windows",
            "change last − first [95% CI]",
            "Sen's slope / window [95% CI]",
            "S / Z",
            "p",
            "Holm p",
            "trend",
        ],
        rows,
    )


def _uniform_section(result: AuditResult) -> str:
    m = result.metrics
    if m.uniform_gini is None or not np.isfinite(m.uniform_gini).any():
        return "Not simulated (catalog too large for the Monte-Carlo budget, or `uniform_draws = 0`)."
    lines = [
        "A finite sample of a perfectly uniform placement does not have Gini 0. The reference is the "
        "Gini of `Multinomial(impressions, 1/items)` counts (Monte Carlo); an observed Gini inside "
        "its 95% range is what a uniformly random policy would show.",
        "",
    ]
    rows = []
    for w in np.flatnonzero(~m.empty):
        u = m.uniform_gini[w]
        rows.append(
            [
                result.labels[w],
                _f(m.values["gini"][w]),
                f"{u[0]:.3f} [{u[1]:.3f}, {u[2]:.3f}]",
                _f(m.uniform_gini_pct[w], 3),
            ]
        )
    pooled = m.pooled
    if "uniform_gini" in pooled:
        u = pooled["uniform_gini"]
        rows.append(
            [
                "**all complete windows pooled**",
                _f(pooled["gini"]["value"]) + _ci(pooled["gini"]["low"], pooled["gini"]["high"]),
                f"{u[0]:.3f} [{u[1]:.3f}, {u[2]:.3f}]",
                _f(pooled["uniform_gini_pct"], 3),
            ]
        )
    lines.append(
        _md_table(
            ["window", "observed Gini", "uniform placement: mean [95%]", "share of uniform draws ≤ observed"],
            rows,
        )
    )
    return "\n".join(lines)


def _position_table(result: AuditResult) -> str:
    rows = []
    for s in _position_summaries(result):
        for k in range(s.impressions.size):
            rows.append(
                [
                    s.label if k == 0 else "",
                    str(k + 1),
                    f"{s.impressions[k]:,}",
                    f"{s.clicks[k]:,}",
                    _f(s.ctr[k], 4) + _ci(s.low[k], s.high[k], 4),
                    _p(s.chi2_p) if k == 0 else "",
                ]
            )
    return _md_table(
        ["windows", "position", "impressions", "clicks", "CTR [Wilson 95%]", "χ² p (equal CTR)"], rows
    )


def render_report(result: AuditResult, figures: list[Path] | None = None) -> str:
    """The text of ``report.md``."""
    m = result.metrics
    out = [f"# Feedback-loop audit: `{result.source.path}`", "", _verdict(result), ""]
    out += ["## Alerts", ""]
    rows = []
    for a in result.alerts:
        if a.status == "off":
            continue
        status = {"alert": "**ALERT**", "ok": "ok", "not evaluated": "not evaluated"}[a.status]
        thr = "" if a.rule.threshold is None else f"{a.rule.threshold:g}"
        tr = result.trends.get(a.rule.metric)
        if a.status == "not evaluated" or tr is None or tr.windows.size == 0:
            rows.append([f"`{a.rule.name}`", status, a.rule.meaning, "—", "—", "—", thr])
            continue
        if a.rule.kind == "level":
            rows.append(
                [f"`{a.rule.name}`", status, a.rule.meaning, f"last {_f(tr.last)}", "—", "—", f"level {thr}"]
            )
            continue
        rows.append(
            [
                f"`{a.rule.name}`",
                status,
                a.rule.meaning,
                f"{_f(tr.first)} → {_f(tr.last)}",
                _p(tr.mk.p_value),
                f"{tr.total_change:+.3f}" if math.isfinite(tr.total_change) else "—",
                thr,
            ]
        )
    out += [
        _md_table(
            [
                "alert",
                "status",
                "meaning",
                "first → last window",
                "Mann–Kendall p",
                "fitted change",
                "threshold",
            ],
            rows,
        ),
        "",
    ]
    shown = [a for a in result.alerts if a.status in ("alert", "not evaluated")]
    if shown:
        out += ["Evidence:", ""]
        out += [f"- `{a.rule.name}` ({a.status}): {a.evidence}" for a in shown]
        out += [""]
    out += ["## Which remedy the seed suggests", "", *_remedies(result), ""]
    out += ["## How sure", "", *_how_sure(result), ""]
    if m.unavailable:
        out += ["## Not computable for this log", ""]
        out += [f"- **{METRIC_INFO.get(k, (k,))[0]}** (`{k}`): {v}" for k, v in m.unavailable.items()]
        out += [""]
    if result.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    out += ["## Inputs", "", _inputs(result), ""]
    out += [
        "## Per-window metrics",
        "",
        "Values with 95% jackknife intervals in brackets.",
        "",
        _windows_table(result),
        "",
    ]
    out += ["## Trend tests", "", _trends_table(result), ""]
    for n in _metric_names(result):
        out.append(f"- {trend_evidence(result.trends[n], result.labels)}")
    out += ["", "## Exposure Gini against uniform placement", "", _uniform_section(result), ""]
    out += ["## CTR by position", "", _position_table(result), ""]
    out += [
        "Under uniform random placement every position gets the same mix of items, so CTR "
        "differences between positions measure position bias alone; under a learned policy they "
        "also reflect what the policy ranks on top.",
        "",
    ]
    if figures:
        out += ["## Figures", ""]
        captions = {
            "trajectories": "Metrics per window (95% CIs; dashed: Sen's slope; hollow: incomplete window)",
            "lorenz": "Lorenz curves of exposure, first vs last complete window",
            "entropy": "Per-user category entropy, first vs last complete window",
            "position_ctr": "CTR by position",
        }
        for f in figures:
            out += [f"![{captions.get(f.stem, f.stem)}](figures/{f.name})", ""]
    out += [
        "## Method",
        "",
        f"- Windows: `{result.spec.text}` aligned on {result.grid.label(0).split(' –')[0]}; metrics are "
        "recomputed per window from streaming counters (`simulator/audit`), with the metric "
        "functions of `simulator.metrics.functions` (DESIGN.md §5): Gini over the whole catalog "
        "(zero-exposure items included), coverage, CDI (items shown to ≥ "
        f"{result.options.cdi_threshold:.0%} of the window's active users), long-tail share, "
        "popularity-bias Spearman ρ, per-user normalised category entropy H / ln C.",
        "- Trend test: Mann (1945), Kendall (1975) with the tie correction; Sen (1968) slope with "
        "Gilbert's (1987) interval"
        + (
            "; Hamed & Rao (1998) variance correction."
            if result.options.trend_correction == "hamed_rao"
            else "."
        ),
        "- Intervals: delete-a-group jackknife (Kott 2001) over hash groups of users (of rows when "
        "the log has no user id); Wilson (1927) intervals for position CTRs; the uniform-placement "
        "Gini reference by Monte Carlo.",
        f"- Per-user entropy: users with fewer than {result.options.min_user_impressions} impressions "
        "of known category in a window are left out of it (one impression has entropy 0 whatever "
        "the policy).",
        f"- Run time: {result.seconds['total']:.1f} s for {result.scan.n_rows:,} rows "
        f"({result.rows_per_second:,.0f} rows/s; validation scan {result.seconds['scan']:.1f} s, "
        f"accumulation {result.seconds['accumulate']:.1f} s).",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# the folder


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def summary(result: AuditResult) -> dict:
    """The content of ``audit.json``."""
    m = result.metrics
    return _jsonable(
        {
            "log": result.source.path,
            "format": result.source.log_format,
            "filters": result.source.filters,
            "window": result.spec.text,
            "rows": result.scan.n_rows,
            "clicks": result.scan.n_clicks,
            "n_windows": result.grid.n_windows,
            "complete_windows": int(m.complete.sum()),
            "catalog": {
                "n_items": result.info.n_items,
                "known": result.info.catalog_known,
                "source": result.info.catalog_source,
            },
            "categories": result.info.category_source,
            "popularity": result.info.popularity_source,
            "users": None
            if result.sample is None
            else {
                "distinct": result.sample.n_users,
                "exact": result.sample.exact_count,
                "sampled": result.counts.n_sampled_users,
            },
            "unavailable": m.unavailable,
            "alerts": [
                {
                    "name": a.rule.name,
                    "metric": a.rule.metric,
                    "kind": a.rule.kind,
                    "direction": a.rule.direction,
                    "threshold": a.rule.threshold,
                    "status": a.status,
                    "evidence": a.evidence,
                }
                for a in result.alerts
            ],
            "fired": [a.rule.name for a in result.fired],
            "pooled": {k: v for k, v in m.pooled.items() if k != "exposure"},
            "alpha": result.options.alpha,
            "trend_correction": result.options.trend_correction,
            "notes": result.notes,
            "seconds": result.seconds,
            "rows_per_second": result.rows_per_second,
        }
    )


def write_audit(result: AuditResult, out_dir: str | Path, *, figures: bool = True) -> Path:
    """Write the audit folder atomically (see the module docstring); return its path.

    Raises
    ------
    ValidationError
        If ``out_dir`` exists and is neither empty nor an earlier audit folder.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "audit.json").is_file())):
        raise ValidationError(f"--out {out} exists and is not an audit folder; choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        drawn: list[Path] = []
        if figures:
            from simulator.audit.figures import write_figures

            (tmp / "figures").mkdir()
            drawn = write_figures(result, tmp / "figures")
        windows_frame(result).to_csv(tmp / "windows.csv", index=False)
        trends_frame(result).to_csv(tmp / "trends.csv", index=False)
        position_frame(result).to_csv(tmp / "position_ctr.csv", index=False)
        (tmp / "audit.json").write_text(json.dumps(summary(result), indent=2, sort_keys=True) + "\n")
        (tmp / "report.md").write_text(render_report(result, drawn))
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
