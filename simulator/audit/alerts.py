"""Trend tests per metric and the alerts they raise, each with its evidence.

A **trend alert** fires when, over the complete windows,

1. the Mann–Kendall test (:func:`simulator.audit.trends.mann_kendall`, tie-corrected,
   two-sided) rejects "no trend" at level ``alpha`` (default 0.05) in the alert's direction, and
2. the size of the change — Sen's slope times the span of the series, in the metric's own units
   — is at least the rule's ``threshold``: a floor of *practical* significance, so that a tiny
   but consistent drift in a huge log does not page anyone. Defaults: 0.02 (two points) for
   Gini, CDI, long-tail share and normalised entropy; 0.05 for coverage, which saturates near 1
   and moves by a few points with traffic volume alone (fewer impressions show fewer items);
   0.05 for Spearman ρ. A **level alert** fires
when the last complete window is beyond a fixed level (the seed's "popularity bias > 0.8";
"Gini above a threshold" is available but off by default, as its sensible level depends on the
catalog). Each alert carries a sentence of evidence: the first and last values with their
jackknife intervals, the change and its interval, S, Z, p, Sen's slope and its interval.

Rules are configured by name: ``gini_rising=0.05`` sets a threshold, ``cdi_falling=off``
disables a rule, ``gini_high=0.9`` enables a level rule.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from simulator.audit.metrics import METRIC_INFO, WindowMetrics
from simulator.audit.trends import MannKendallResult, SenSlope, mann_kendall, min_attainable_p, sens_slope
from simulator.errors import ValidationError

__all__ = [
    "DEFAULT_RULES",
    "Alert",
    "AlertRule",
    "TrendResult",
    "configure_rules",
    "evaluate_alerts",
    "trend_tests",
]


@dataclass(frozen=True)
class AlertRule:
    """One alert rule.

    Attributes
    ----------
    name : str
        Identifier used in ``--alert NAME=VALUE``.
    metric : str
        Metric name (``gini``, ``coverage``, ``cdi``, ``long_tail_share``, ``popularity_bias``,
        ``entropy_shown``).
    kind : {"trend", "level"}
    direction : {"rising", "falling"} for trends, {"above", "below"} for levels
    threshold : float or None
        Trend: minimum size of the change over the audited span (metric units). Level: the
        level. None disables the rule.
    meaning : str
        What the alert says, in words.
    """

    name: str
    metric: str
    kind: str
    direction: str
    threshold: float | None
    meaning: str


DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule("gini_rising", "gini", "trend", "rising", 0.02, "exposure is concentrating on fewer items"),
    AlertRule(
        "coverage_falling",
        "coverage",
        "trend",
        "falling",
        0.05,
        "the share of the catalog shown is shrinking",
    ),
    AlertRule("cdi_falling", "cdi", "trend", "falling", 0.02, "fewer items reach at least 1% of users"),
    AlertRule(
        "long_tail_falling",
        "long_tail_share",
        "trend",
        "falling",
        0.02,
        "the long tail is losing impressions",
    ),
    AlertRule(
        "popularity_bias_rising",
        "popularity_bias",
        "trend",
        "rising",
        0.05,
        "exposure follows prior popularity more and more",
    ),
    AlertRule(
        "diversity_shrinking",
        "entropy_shown",
        "trend",
        "falling",
        0.02,
        "each user is shown fewer categories",
    ),
    AlertRule(
        "popularity_bias_high",
        "popularity_bias",
        "level",
        "above",
        0.8,
        "exposure is strongly tied to prior popularity (the seed's > 0.8)",
    ),
    AlertRule("gini_high", "gini", "level", "above", None, "exposure concentration is above the set level"),
)


def configure_rules(overrides: dict[str, str | float | None] | list[str] | None) -> tuple[AlertRule, ...]:
    """The default rules with thresholds overridden by name.

    Parameters
    ----------
    overrides : dict or list of "NAME=VALUE" strings, optional
        VALUE is a number (threshold or level) or ``off``.

    Returns
    -------
    tuple of AlertRule

    Raises
    ------
    ValidationError
        Unknown rule name (with a suggestion), malformed entry, or a threshold that is not a
        finite number (negative for a trend).
    """
    rules = {r.name: r for r in DEFAULT_RULES}
    if not overrides:
        return tuple(rules.values())
    items: list[tuple[str, object]] = []
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        for text in overrides:
            if "=" not in str(text):
                raise ValidationError(
                    f"--alert expects NAME=VALUE (e.g. gini_rising=0.05 or cdi_falling=off); got {text!r}"
                )
            k, v = str(text).split("=", 1)
            items.append((k.strip(), v.strip()))
    for name, value in items:
        if name not in rules:
            close = difflib.get_close_matches(name, rules, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValidationError(f"unknown alert {name!r}{hint}; known: {', '.join(rules)}")
        if value is None or (isinstance(value, str) and value.lower() in ("off", "none", "")):
            rules[name] = replace(rules[name], threshold=None)
            continue
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValidationError(
                f"alert {name}: threshold must be a number or 'off'; got {value!r}"
            ) from None
        if not math.isfinite(v) or (rules[name].kind == "trend" and v < 0):
            raise ValidationError(f"alert {name}: threshold must be a finite number >= 0; got {value!r}")
        rules[name] = replace(rules[name], threshold=v)
    return tuple(rules.values())


@dataclass(frozen=True)
class TrendResult:
    """Trend of one metric over the complete windows.

    Attributes
    ----------
    metric : str
    windows : ndarray of int
        Windows used (complete, non-empty, finite value).
    mk : MannKendallResult
    sen : SenSlope
        Slope per window.
    first, last : float
        Values in the first and last window used.
    first_ci, last_ci : tuple of float
        Their jackknife 95% intervals (NaN without a jackknife).
    change : float
        ``last - first``.
    change_ci : tuple of float
        Jackknife 95% interval of the change (same user groups in both windows).
    total_change : float
        Sen's slope times the span (in windows): the fitted change over the audited period.
    holm_p : float
        Holm-adjusted p-value across the metrics tested.
    note : str
        Why the test is missing or weak (e.g. too few windows).
    """

    metric: str
    windows: np.ndarray
    mk: MannKendallResult
    sen: SenSlope
    first: float
    last: float
    first_ci: tuple[float, float]
    last_ci: tuple[float, float]
    change: float
    change_ci: tuple[float, float]
    total_change: float
    holm_p: float = float("nan")
    note: str = ""


def _holm(p: list[float]) -> list[float]:
    arr = np.asarray(p, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(arr))
    out = np.full(arr.shape, np.nan)
    if ok.size == 0:
        return out.tolist()
    order = ok[np.argsort(arr[ok])]
    m = order.size
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * arr[idx]))
        out[idx] = running
    return out.tolist()


def trend_tests(
    metrics: WindowMetrics, *, alpha: float = 0.05, correction: str = "none"
) -> dict[str, TrendResult]:
    """Mann–Kendall and Sen's slope for every computable metric over the complete windows.

    Parameters
    ----------
    metrics : WindowMetrics
    alpha : float
        Test level (also the Sen interval's ``1 - alpha``).
    correction : {"none", "hamed_rao"}
        Autocorrelation correction of the Mann–Kendall variance.

    Returns
    -------
    dict of metric -> TrendResult
    """
    out: dict[str, TrendResult] = {}
    base = metrics.trend_windows
    for m, values in metrics.values.items():
        idx = base[np.isfinite(values[base])]
        x = values[idx]
        t = idx.astype(np.float64)
        mk = mann_kendall(x, t, alpha=alpha, correction=correction)
        sen = sens_slope(x, t, alpha=alpha)
        note = ""
        if idx.size < 3:
            note = f"{idx.size} complete window(s): no trend test (needs >= 3; use a shorter --window)"
        elif min_attainable_p(idx.size) >= alpha:
            note = (
                f"only {idx.size} complete windows: even a perfectly monotone series cannot reach "
                f"p < {alpha:g} (smallest possible p = {min_attainable_p(idx.size):.3f}); "
                "use a shorter --window"
            )
        nan2 = (float("nan"), float("nan"))
        if idx.size:
            a, b = int(idx[0]), int(idx[-1])
            first, last = float(values[a]), float(values[b])
            first_ci = (float(metrics.low[m][a]), float(metrics.high[m][a]))
            last_ci = (float(metrics.low[m][b]), float(metrics.high[m][b]))
            reps = metrics.replicates[m]
            change_ci = nan2
            if reps.shape[1] > 1 and a != b:
                d = reps[b] - reps[a]
                g = d.size
                se = math.sqrt((g - 1) / g * float(np.nansum((d - np.nanmean(d)) ** 2)))
                tq = stats.t.ppf(0.975, g - 1)
                change_ci = (last - first - tq * se, last - first + tq * se)
            total = sen.slope * float(idx[-1] - idx[0]) if idx.size >= 2 else float("nan")
        else:
            first = last = total = float("nan")
            first_ci = last_ci = change_ci = nan2
        out[m] = TrendResult(
            m, idx, mk, sen, first, last, first_ci, last_ci, last - first, change_ci, total, note=note
        )
    holm = _holm([r.mk.p_value for r in out.values()])
    return {m: replace(r, holm_p=h) for (m, r), h in zip(out.items(), holm, strict=True)}


@dataclass(frozen=True)
class Alert:
    """The outcome of one rule.

    Attributes
    ----------
    rule : AlertRule
    status : {"alert", "ok", "not evaluated", "off"}
    evidence : str
        One or two sentences: the numbers behind the status.
    """

    rule: AlertRule
    status: str
    evidence: str

    @property
    def fired(self) -> bool:
        return self.status == "alert"


def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _ci(ci: tuple[float, float], digits: int = 3) -> str:
    if not all(math.isfinite(c) for c in ci):
        return ""
    return f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"


def trend_evidence(tr: TrendResult, labels: list[str]) -> str:
    """A sentence with the numbers of one trend (used by alerts and the report)."""
    if tr.windows.size < 2:
        return tr.note or "not enough windows"
    a, b = int(tr.windows[0]), int(tr.windows[-1])
    name = METRIC_INFO.get(tr.metric, (tr.metric,))[0]
    s = (
        f"{name} went from {_fmt(tr.first)}{_ci(tr.first_ci)} ({labels[a]}) to "
        f"{_fmt(tr.last)}{_ci(tr.last_ci)} ({labels[b]}), change {tr.change:+.3f}{_ci(tr.change_ci)}; "
    )
    if tr.windows.size >= 3:
        s += (
            f"Mann–Kendall over {tr.windows.size} complete windows: S = {tr.mk.s:+.0f}, "
            f"Z = {_fmt(tr.mk.z, 2)}, p = {_p(tr.mk.p_value)} (Holm-adjusted {_p(tr.holm_p)}); "
            f"Sen's slope {tr.sen.slope:+.4f} per window{_ci((tr.sen.low, tr.sen.high), 4)}, "
            f"fitted change {tr.total_change:+.3f}"
        )
    if tr.note:
        s += f". Note: {tr.note}"
    return s


def evaluate_alerts(
    rules: tuple[AlertRule, ...],
    trends: dict[str, TrendResult],
    metrics: WindowMetrics,
    labels: list[str],
    *,
    alpha: float = 0.05,
) -> list[Alert]:
    """Apply every rule; see the module docstring for the conditions.

    Returns
    -------
    list of Alert, in rule order.
    """
    out: list[Alert] = []
    for rule in rules:
        if rule.threshold is None:
            out.append(Alert(rule, "off", "disabled"))
            continue
        if rule.metric in metrics.unavailable:
            out.append(
                Alert(
                    rule, "not evaluated", f"{rule.metric} not computable: {metrics.unavailable[rule.metric]}"
                )
            )
            continue
        tr = trends.get(rule.metric)
        if tr is None or tr.windows.size == 0:
            out.append(Alert(rule, "not evaluated", "no complete window with a value"))
            continue
        if rule.kind == "level":
            b = int(tr.windows[-1])
            v, lo = tr.last, tr.last_ci[0]
            beyond = v > rule.threshold if rule.direction == "above" else v < rule.threshold
            sure = ""
            if math.isfinite(lo):
                lim = lo if rule.direction == "above" else tr.last_ci[1]
                inside = lim > rule.threshold if rule.direction == "above" else lim < rule.threshold
                sure = (
                    " (the whole 95% interval is beyond it)"
                    if inside
                    else " (but the 95% interval reaches it)"
                )
            ev = (
                f"{rule.metric} = {_fmt(v)}{_ci(tr.last_ci)} in the last complete window ({labels[b]}), "
                f"{'beyond' if beyond else 'within'} the level {rule.threshold:g} ({rule.direction})"
                f"{sure if beyond else ''}"
            )
            out.append(Alert(rule, "alert" if beyond else "ok", ev))
            continue
        ev = trend_evidence(tr, labels)
        if tr.windows.size < 3 or not math.isfinite(tr.mk.p_value):
            out.append(Alert(rule, "not evaluated", ev))
            continue
        want = "increasing" if rule.direction == "rising" else "decreasing"
        significant = tr.mk.p_value < alpha and tr.mk.trend == want
        big = math.isfinite(tr.total_change) and (
            tr.total_change >= rule.threshold
            if rule.direction == "rising"
            else -tr.total_change >= rule.threshold
        )
        if significant and big:
            status = "alert"
            ev += f" — significant at {alpha:g} and beyond the threshold {rule.threshold:g}"
        else:
            status = "ok"
            why = []
            if not significant:
                why.append(f"no significant {rule.direction} trend at {alpha:g}")
            if not big:
                why.append(f"fitted change below the threshold {rule.threshold:g}")
            ev += " — " + "; ".join(why)
        out.append(Alert(rule, status, ev))
    return out
