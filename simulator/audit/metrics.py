"""Per-window feedback-loop metrics with delete-a-group jackknife confidence intervals.

The metric functions themselves are :mod:`simulator.metrics.functions` (``gini``,
``coverage_from_counts``, ``catalog_diversity_index``, ``long_tail_share``,
``popularity_bias``, ``normalized_entropy``, ``head_mask_from_popularity``); this module feeds
them the window counters of :mod:`simulator.audit.windows` and measures their uncertainty.

Uncertainty: users are split by a hash of their id into ``G`` groups (default 20); each metric
is recomputed with one group deleted, and

.. math:: \\widehat{\\mathrm{se}} =
          \\sqrt{\\tfrac{G-1}{G} \\sum_g (\\theta_{(g)} - \\bar\\theta_{(\\cdot)})^2},
          \\qquad \\theta \\pm t_{G-1,\\,0.975}\\, \\widehat{\\mathrm{se}}.

Deleting whole users keeps each user's impressions together, so the interval reflects the
between-user variation of a window (a user's slates are correlated), not only impression
noise. Without user ids (or for OBD segments too few to split), rows are grouped by a hash of
their row number, i.e. impressions are treated as independent. Because the same groups are used
in every window, the jackknife also gives the standard error of a *change* between two windows
(correlated through the shared users). Position CTRs use Wilson score intervals (impressions as
independent Bernoulli trials).

References
----------
.. [1] Kott, P. S. (2001). The delete-a-group jackknife. *Journal of Official Statistics*,
       17(4), 521-526.
.. [2] Yitzhaki, S. (1991). Calculating jackknife variance estimators for parameters of the
       Gini method. *Journal of Business & Economic Statistics*, 9(2), 235-239.
.. [3] Wilson, E. B. (1927). Probable inference, the law of succession, and statistical
       inference. *JASA*, 22(158), 209-212.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from simulator.audit.catalog import ItemInfo
from simulator.audit.windows import WindowCounts
from simulator.metrics.functions import (
    catalog_diversity_index,
    coverage_from_counts,
    gini,
    head_mask_from_popularity,
    long_tail_share,
    normalized_entropy,
    popularity_bias,
)

__all__ = [
    "METRIC_INFO",
    "PositionCTR",
    "WindowMetrics",
    "compute_window_metrics",
    "gini_from_histogram",
    "position_ctr_summary",
    "uniform_gini_reference",
    "wilson_interval",
]

#: metric -> (title, unit/axis label, bad direction) ; the stable names of DESIGN.md §5
METRIC_INFO: dict[str, tuple[str, str, str]] = {
    "gini": ("Gini of exposure", "Gini (0 = equal)", "rising"),
    "coverage": ("Catalog coverage", "share of catalog shown", "falling"),
    "cdi": ("Catalog diversity index", "share of catalog to ≥1% of users", "falling"),
    "long_tail_share": ("Long-tail share", "share of impressions", "falling"),
    "popularity_bias": ("Popularity bias", "Spearman ρ vs prior", "rising"),
    "entropy_shown": ("Per-user category entropy", "mean H / ln C", "falling"),
    "ctr": ("Click-through rate", "clicks per impression", "none"),
}

#: Elements of one dense (users × categories) block in the entropy computation.
_ENTROPY_BLOCK = 1 << 22


def wilson_interval(clicks: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of binomial proportions.

    Parameters
    ----------
    clicks, n : ndarray of the same shape, int
        Successes and trials.
    level : float
        Confidence level.

    Returns
    -------
    low, high : ndarray of that shape, float64
        NaN where ``n == 0``.

    Notes
    -----
    :math:`\\frac{\\hat p + z^2/2n \\pm z\\sqrt{\\hat p(1-\\hat p)/n + z^2/4n^2}}{1 + z^2/n}`.
    """
    c = np.asarray(clicks, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    z = stats.norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = c / m
        denom = 1 + z**2 / m
        centre = (p + z**2 / (2 * m)) / denom
        half = z * np.sqrt(p * (1 - p) / m + z**2 / (4 * m**2)) / denom
    low, high = centre - half, centre + half
    low[m == 0] = np.nan
    high[m == 0] = np.nan
    return np.clip(low, 0, 1), np.clip(high, 0, 1)


#: Up to this many items the uniform reference draws exact multinomial counts.
_EXACT_UNIFORM_ITEMS = 1000


def gini_from_histogram(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Gini of exposure given as a histogram: ``counts[..., j]`` items have exposure ``values[j]``.

    Parameters
    ----------
    values : ndarray of shape (V,), float64
        Distinct exposure values, ascending.
    counts : ndarray of shape (..., V), int
        Number of items with each value (one histogram per leading index).

    Returns
    -------
    ndarray of shape (...,), float64
        The same value as :func:`simulator.metrics.functions.gini` of the expanded counts
        (0 where nothing was shown).

    Notes
    -----
    With :math:`R_j` the cumulative number of items up to value :math:`v_j` and :math:`c_j`
    items at that value, the ranks :math:`R_{j-1}+1..R_j` contribute
    :math:`\\sum (2i - n - 1) = c_j (R_{j-1} + R_j - n)`, so
    :math:`G = \\sum_j v_j c_j (R_{j-1} + R_j - n) / (n \\sum_j v_j c_j)` in O(V).
    """
    c = np.asarray(counts, dtype=np.float64)
    r = np.cumsum(c, axis=-1)
    n = r[..., -1]
    weight = values * c
    total = weight.sum(axis=-1)
    num = (weight * (2.0 * r - c - n[..., None])).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(total > 0, num / (n * total), 0.0)
    return np.clip(g, 0.0, 1.0)


def uniform_gini_reference(
    n_impressions: int, n_items: int, rng: np.random.Generator, n_draws: int = 200
) -> np.ndarray:
    """Gini of exposure under uniform random placement with the same number of impressions.

    A finite sample of a perfectly uniform policy does not have Gini 0: with ``n`` impressions
    over ``I`` items the counts are multinomial and their Gini is about
    :math:`1/\\sqrt{\\pi \\lambda}`, :math:`\\lambda = n/I`, for large :math:`\\lambda`. This is
    the yardstick for "Gini near 0 within sampling error" on a randomised log.

    Parameters
    ----------
    n_impressions : int
        Impressions in the window.
    n_items : int
        Catalog size.
    rng : numpy.random.Generator
    n_draws : int
        Monte-Carlo draws.

    Returns
    -------
    ndarray of shape (n_draws,), float64
        Simulated Gini values. Up to 1,000 items: exact ``Multinomial(n, 1/I)`` counts. Beyond:
        the items' counts as independent ``Poisson(n/I)`` (the multinomial's limit), drawn as
        a histogram over count values, ``Multinomial(I, pmf)``, so a draw costs O(√λ) rather
        than O(I log I). Both ignore that a slate holds distinct items, which matters only when
        a slate is a large part of the catalog.
    """
    if n_impressions <= 0 or n_draws <= 0:
        return np.zeros(0)
    if n_items <= _EXACT_UNIFORM_ITEMS:
        draws = rng.multinomial(n_impressions, np.full(n_items, 1.0 / n_items), size=n_draws)
        return np.array([gini(d) for d in draws])
    lam = n_impressions / n_items
    lo = int(stats.poisson.ppf(1e-12, lam))
    hi = int(stats.poisson.ppf(1 - 1e-12, lam)) + 1
    values = np.arange(lo, hi + 1, dtype=np.float64)
    pmf = stats.poisson.pmf(values, lam)
    pmf[0] += stats.poisson.cdf(lo - 1, lam)  # lump both tails into the end bins
    pmf[-1] += stats.poisson.sf(hi, lam)
    hist = rng.multinomial(n_items, pmf / pmf.sum(), size=n_draws)
    return gini_from_histogram(values, hist)


def _average_ranks_int(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged) of non-negative integer counts, in O(n + max)."""
    xi = x.astype(np.int64)
    hist = np.bincount(xi)
    below = np.cumsum(hist) - hist
    return (below + (hist + 1) / 2.0)[xi]


def _spearman_fixed(counts: np.ndarray, prior_ranks_centred: np.ndarray, prior_norm: float) -> float:
    """Spearman ρ of integer counts against a prior whose centred ranks are cached.

    Equals :func:`simulator.metrics.functions.popularity_bias` (Pearson correlation of average
    ranks; NaN for constant counts) — tested — at O(n) per call instead of two sorts, which
    matters for the jackknife's G + 1 evaluations per window.
    """
    if counts.min() == counts.max():
        return float("nan")
    r = _average_ranks_int(counts)
    r -= r.mean()
    return float(r @ prior_ranks_centred / (np.sqrt(r @ r) * prior_norm))


@dataclass
class WindowMetrics:
    """Per-window values, jackknife replicates and the arrays the figures need.

    Attributes
    ----------
    values : dict of str -> ndarray of shape (W,), float64
        Each metric per window (NaN where not computable or the window is empty).
    replicates : dict of str -> ndarray of shape (W, G), float64
        Delete-one-group values (absent without a jackknife).
    low, high : dict of str -> ndarray of shape (W,), float64
        95% jackknife intervals (NaN without a jackknife).
    unavailable : dict of str -> str
        Metrics not computable for this log, with the reason.
    n_impressions, n_clicks, n_users : ndarray of shape (W,), int64
        ``n_users``: active sampled users (-1 without users).
    complete, empty : ndarray of shape (W,), bool
    entropy_users : dict of int -> ndarray
        Per-user entropies of some windows (first and last complete), for the figure.
    entropy_quantiles : ndarray of shape (W, 5), float64
        10/25/50/75/90th percentiles of per-user entropy.
    uniform_gini : ndarray of shape (W, 3), float64
        Mean, 2.5th and 97.5th percentiles of the uniform-placement Gini; NaN if not simulated.
    uniform_gini_pct : ndarray of shape (W,), float64
        Share of uniform draws with a Gini at or below the observed one.
    pooled : dict
        The same exposure metrics over all complete windows pooled (``value``, ``low``,
        ``high`` per metric), the pooled uniform reference, and the pooled exposure.
    head_source : str
        How the long-tail head was defined.
    """

    values: dict[str, np.ndarray]
    replicates: dict[str, np.ndarray]
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    unavailable: dict[str, str]
    n_impressions: np.ndarray
    n_clicks: np.ndarray
    n_users: np.ndarray
    complete: np.ndarray
    empty: np.ndarray
    entropy_users: dict[int, np.ndarray] = field(default_factory=dict)
    entropy_quantiles: np.ndarray | None = None
    uniform_gini: np.ndarray | None = None
    uniform_gini_pct: np.ndarray | None = None
    pooled: dict = field(default_factory=dict)
    head_source: str = ""

    @property
    def trend_windows(self) -> np.ndarray:
        """Windows that enter trend tests: complete and non-empty; ndarray of indices."""
        return np.flatnonzero(self.complete & ~self.empty)


def _jackknife(full: np.ndarray, reps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jackknife 95% interval per window from replicates of shape (W, G)."""
    g = reps.shape[1]
    if g < 2:
        nan = np.full(full.shape, np.nan)
        return nan, nan, nan
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (empty windows)
        dev = reps - np.nanmean(reps, axis=1, keepdims=True)
        se = np.sqrt((g - 1) / g * np.nansum(dev**2, axis=1))
    se[~np.isfinite(full)] = np.nan
    t = stats.t.ppf(0.975, g - 1)
    return full - t * se, full + t * se, se


def _per_window(
    exposure_g: np.ndarray,
    fn: Callable[[np.ndarray], float],
    jackknife: bool,
    point: Callable[[np.ndarray], float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``fn`` (or ``point``) of each window's exposure, and ``fn`` of each delete-one-group complement."""
    w_count, g_count, _ = exposure_g.shape
    full = np.full(w_count, np.nan)
    reps = np.full((w_count, g_count if jackknife else 0), np.nan)
    for w in range(w_count):  # windows × groups evaluations, each vectorised over items
        total = exposure_g[w].sum(axis=0)
        if total.sum() == 0:
            continue
        full[w] = (point or fn)(total)
        if jackknife:
            for g in range(g_count):
                reps[w, g] = fn(total - exposure_g[w, g])
    return full, reps


def _entropy_rows(
    counts: WindowCounts,
    info: ItemInfo,
    w: np.ndarray,
    u: np.ndarray,
    i: np.ndarray,
    min_impressions: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-(window, sampled user) normalised category entropy of the items shown.

    Users with fewer than ``min_impressions`` impressions of known category in the window are
    left out: one impression has entropy 0 by construction, whatever the policy.

    Parameters
    ----------
    counts : WindowCounts
    info : ItemInfo
    w, u, i : ndarray of shape (P,), int64
        The decoded (window, user, item) keys, sorted by (w, u) (as stored).
    min_impressions : int

    Returns
    -------
    w, u : ndarray of shape (R,), int64
    h : ndarray of shape (R,), float64

    Notes
    -----
    The keys are sorted, so each (window, user) is a contiguous run: blocks of runs become dense
    ``(users, categories)`` count matrices by one ``bincount`` each (no sort), and
    :func:`~simulator.metrics.functions.normalized_entropy` takes them block by block
    (``_ENTROPY_BLOCK`` cells at a time).
    """
    n_cat = max(info.n_categories, 1)
    cat = info.category[i]  # type: ignore[index]
    weights = np.where(cat >= 0, counts.pair_counts, 0).astype(np.float64)
    cat = np.maximum(cat, 0)
    if w.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    new = np.r_[True, (w[1:] != w[:-1]) | (u[1:] != u[:-1])]
    starts = np.flatnonzero(new)
    row_of = np.cumsum(new) - 1
    n_rows = starts.size
    h = np.empty(n_rows, dtype=np.float64)
    totals = np.empty(n_rows, dtype=np.float64)
    block = max(1, _ENTROPY_BLOCK // n_cat)
    bounds = np.r_[starts, w.size]
    for r0 in range(0, n_rows, block):
        r1 = min(r0 + block, n_rows)
        lo, hi = bounds[r0], bounds[r1]
        dense = np.bincount(
            (row_of[lo:hi] - r0) * n_cat + cat[lo:hi], weights=weights[lo:hi], minlength=(r1 - r0) * n_cat
        ).reshape(r1 - r0, n_cat)
        totals[r0:r1] = dense.sum(axis=1)
        h[r0:r1] = normalized_entropy(dense)
    keep = totals >= max(min_impressions, 1)
    return w[starts][keep], u[starts][keep], h[keep]


def compute_window_metrics(
    counts: WindowCounts,
    info: ItemInfo,
    *,
    cdi_threshold: float = 0.01,
    head_fraction: float = 0.2,
    uniform_draws: int = 200,
    min_user_impressions: int = 2,
    rng: np.random.Generator | None = None,
) -> WindowMetrics:
    """Every audit metric per window, with jackknife intervals.

    Parameters
    ----------
    counts : WindowCounts
        From :class:`~simulator.audit.windows.WindowAccumulator`.
    info : ItemInfo
        Catalog size, categories, popularity.
    cdi_threshold : float, default 0.01
        CDI counts items reaching at least this share of the window's active users.
    head_fraction : float, default 0.2
        Share of items in the head (by pre-system popularity, else by first-window exposure).
    uniform_draws : int, default 200
        Monte-Carlo draws of the uniform-placement Gini per window (0 disables); see
        :func:`uniform_gini_reference` for their cost.
    min_user_impressions : int, default 2
        Users with fewer impressions (of known category) in a window are left out of the
        per-user entropy of that window (a single impression has entropy 0 by construction).
    rng : numpy.random.Generator, optional
        For the uniform-placement reference (default seed 0: reports are reproducible).

    Returns
    -------
    WindowMetrics
    """
    rng = np.random.default_rng(0) if rng is None else rng
    grid = counts.grid
    n_w = grid.n_windows
    jack = counts.n_groups > 1
    exp_g = counts.exposure_g
    exposure = counts.exposure
    n_imp = exposure.sum(axis=1)
    empty = n_imp == 0
    complete = grid.complete()
    trend_w = np.flatnonzero(complete & ~empty)
    values: dict[str, np.ndarray] = {}
    reps: dict[str, np.ndarray] = {}
    unavailable: dict[str, str] = {}

    values["gini"], reps["gini"] = _per_window(exp_g, gini, jack)
    values["coverage"], reps["coverage"] = _per_window(exp_g, coverage_from_counts, jack)

    # long tail: head by pre-system popularity, else by the first complete window's exposure
    if info.popularity is not None:
        head = head_mask_from_popularity(info.popularity, head_fraction)
        head_source = f"top {head_fraction:.0%} of items by pre-system popularity"
        ref_window = None
    elif trend_w.size:
        ref_window = int(trend_w[0])
        head = head_mask_from_popularity(exposure[ref_window].astype(np.float64), head_fraction)
        head_source = (
            f"top {head_fraction:.0%} of items by exposure in the first complete window "
            f"({grid.label(ref_window)}; no pre-system popularity given), which is therefore "
            "the reference and has no value of its own"
        )
    else:
        head, ref_window, head_source = None, None, "no complete window"
    if head is not None:
        values["long_tail_share"], reps["long_tail_share"] = _per_window(
            exp_g, lambda c: long_tail_share(c, head), jack
        )
        if ref_window is not None:
            values["long_tail_share"][ref_window] = np.nan
            reps["long_tail_share"][ref_window] = np.nan
    else:
        unavailable["long_tail_share"] = head_source

    if info.popularity is not None:
        pop = info.popularity
        if pop.min() == pop.max():
            unavailable["popularity_bias"] = "the pre-system popularity is constant (Spearman undefined)"
        else:
            pr = stats.rankdata(pop)
            pr -= pr.mean()
            pnorm = float(np.sqrt(pr @ pr))
            values["popularity_bias"], reps["popularity_bias"] = _per_window(
                exp_g, lambda c: _spearman_fixed(c, pr, pnorm), jack, point=lambda c: popularity_bias(c, pop)
            )
    else:
        unavailable["popularity_bias"] = info.popularity_source

    # CTR per window (all positions)
    imp_g, clk_g = counts.impressions_g, counts.clicks_g
    with np.errstate(invalid="ignore", divide="ignore"):
        values["ctr"] = clk_g.sum(1) / np.where(n_imp > 0, n_imp, np.nan)
        tot_i, tot_c = imp_g.sum(1, keepdims=True), clk_g.sum(1, keepdims=True)
        reps["ctr"] = (tot_c - clk_g) / np.where(tot_i - imp_g > 0, tot_i - imp_g, np.nan)
    if not jack:
        reps["ctr"] = np.zeros((n_w, 0))

    # users: reach (CDI) and per-user category entropy
    n_users = np.full(n_w, -1, dtype=np.int64)
    entropy_users: dict[int, np.ndarray] = {}
    quantiles = None
    sample = counts.sample
    if sample is None:
        reason = "the log has no user column"
        unavailable["cdi"] = reason
        unavailable["entropy_shown"] = f"{reason} (per-user entropy needs users)"
    else:
        w, u, i = counts.decode_pairs()
        n_items, g_count = counts.n_items, counts.n_groups
        ug = counts.user_group[u] if jack else np.zeros(u.size, dtype=np.int64)
        reach_g = np.bincount((w * g_count + ug) * n_items + i, minlength=n_w * g_count * n_items)
        reach_g = reach_g.reshape(n_w, g_count, n_items)
        reach = reach_g.sum(axis=1)
        wu_first = np.r_[True, (w[1:] != w[:-1]) | (u[1:] != u[:-1])] if w.size else np.zeros(0, bool)
        active_g = np.bincount(w[wu_first] * g_count + ug[wu_first], minlength=n_w * g_count).reshape(
            n_w, g_count
        )
        active = active_g.sum(axis=1)
        n_users = active.astype(np.int64)
        cdi = np.full(n_w, np.nan)
        cdi_reps = np.full((n_w, g_count if jack else 0), np.nan)
        for wi in range(n_w):
            if active[wi] == 0:
                continue
            cdi[wi] = catalog_diversity_index(reach[wi], int(active[wi]), cdi_threshold)
            if jack:
                # Replicates keep the full window's cutoff as a share, ceil(τN)/N: re-applying
                # ceil(τ N_(g)) to the smaller replicate would move the integer cutoff (5 users
                # of 420 -> 4 of 399) and make the jackknife measure that jump, not sampling.
                cut = max(1, math.ceil(cdi_threshold * int(active[wi]) - 1e-9)) / int(active[wi])
                for g in range(g_count):
                    cdi_reps[wi, g] = catalog_diversity_index(
                        reach[wi] - reach_g[wi, g], int(active[wi] - active_g[wi, g]), min(cut, 1.0)
                    )
        values["cdi"], reps["cdi"] = cdi, cdi_reps
        del reach_g

        if info.category is None:
            unavailable["entropy_shown"] = info.category_source
        elif info.n_categories < 2:
            unavailable["entropy_shown"] = "only one category: entropy is 0 by construction"
        else:
            rw, ru, h = _entropy_rows(counts, info, w, u, i, min_user_impressions)
            rg = counts.user_group[ru] if jack else np.zeros(ru.size, dtype=np.int64)
            ent = np.full(n_w, np.nan)
            ent_reps = np.full((n_w, g_count if jack else 0), np.nan)
            quantiles = np.full((n_w, 5), np.nan)
            starts = np.searchsorted(rw, np.arange(n_w + 1))
            for wi in range(n_w):
                hw = h[starts[wi] : starts[wi + 1]]
                if hw.size == 0:
                    continue
                ent[wi] = hw.mean()
                quantiles[wi] = np.clip(np.quantile(hw, [0.1, 0.25, 0.5, 0.75, 0.9]), 0.0, 1.0) + 0.0  # no -0
                if jack:
                    gw = rg[starts[wi] : starts[wi + 1]]
                    sums = np.bincount(gw, weights=hw, minlength=g_count)
                    ns = np.bincount(gw, minlength=g_count)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        ent_reps[wi] = (hw.sum() - sums) / (hw.size - ns)
            values["entropy_shown"], reps["entropy_shown"] = ent, ent_reps
            keep = set(trend_w[:1].tolist() + trend_w[-1:].tolist())
            for wi in keep:
                entropy_users[wi] = h[starts[wi] : starts[wi + 1]].copy()

    low, high = {}, {}
    for m, v in values.items():
        if jack and reps[m].shape[1] > 1:
            low[m], high[m], _ = _jackknife(v, reps[m])
            floor = -1.0 if m == "popularity_bias" else 0.0  # the metric's own range
            low[m], high[m] = np.clip(low[m], floor, 1.0), np.clip(high[m], floor, 1.0)
        else:
            low[m], high[m] = np.full(n_w, np.nan), np.full(n_w, np.nan)
            reps[m] = np.zeros((n_w, 0))

    # uniform-placement reference Gini
    uni = np.full((n_w, 3), np.nan)
    uni_pct = np.full(n_w, np.nan)
    draws = uniform_draws
    if draws > 0:
        for wi in np.flatnonzero(~empty):
            ref = uniform_gini_reference(int(n_imp[wi]), counts.n_items, rng, draws)
            uni[wi] = [ref.mean(), *np.quantile(ref, [0.025, 0.975])]
            uni_pct[wi] = float(np.mean(ref <= values["gini"][wi]))

    # pooled over complete windows (exposure metrics, CTR)
    pooled: dict = {}
    if trend_w.size:
        pg = exp_g[trend_w].sum(axis=0, keepdims=True)  # (1, G, I)
        pooled["exposure"] = pg[0].sum(axis=0)
        fns: dict[str, Callable[[np.ndarray], float]] = {"gini": gini, "coverage": coverage_from_counts}
        if info.popularity is not None:
            head_p = head_mask_from_popularity(info.popularity, head_fraction)
            fns["long_tail_share"] = lambda c: long_tail_share(c, head_p)
        points: dict[str, Callable[[np.ndarray], float]] = {}
        if "popularity_bias" in values:
            fns["popularity_bias"] = lambda c: _spearman_fixed(c, pr, pnorm)
            points["popularity_bias"] = lambda c: popularity_bias(c, info.popularity)
        for m, fn in fns.items():
            v, r = _per_window(pg, fn, jack, point=points.get(m))
            lo, hi, _ = _jackknife(v, r) if jack else (np.array([np.nan]), np.array([np.nan]), None)
            floor = -1.0 if m == "popularity_bias" else 0.0
            lo, hi = np.clip(lo, floor, 1.0), np.clip(hi, floor, 1.0)
            pooled[m] = {"value": float(v[0]), "low": float(lo[0]), "high": float(hi[0])}
        ti, tc = imp_g[trend_w].sum(0), clk_g[trend_w].sum(0)
        ctr = tc.sum() / ti.sum()
        entry = {"value": float(ctr), "low": float("nan"), "high": float("nan")}
        if jack:
            r = ((tc.sum() - tc) / np.maximum(ti.sum() - ti, 1))[None, :]
            lo, hi, _ = _jackknife(np.array([ctr]), r)
            entry.update(low=float(max(lo[0], 0.0)), high=float(min(hi[0], 1.0)))
        pooled["ctr"] = entry
        pooled["n_impressions"] = int(ti.sum())
        if draws > 0:
            ref = uniform_gini_reference(int(ti.sum()), counts.n_items, rng, draws)
            pooled["uniform_gini"] = [float(ref.mean()), *map(float, np.quantile(ref, [0.025, 0.975]))]
            pooled["uniform_gini_pct"] = float(np.mean(ref <= pooled["gini"]["value"]))
    return WindowMetrics(
        values=values,
        replicates=reps,
        low=low,
        high=high,
        unavailable=unavailable,
        n_impressions=n_imp.astype(np.int64),
        n_clicks=counts.clicks_g.sum(1).astype(np.int64),
        n_users=n_users,
        complete=complete,
        empty=empty,
        entropy_users=entropy_users,
        entropy_quantiles=quantiles,
        uniform_gini=uni,
        uniform_gini_pct=uni_pct,
        pooled=pooled,
        head_source=head_source,
    )


@dataclass(frozen=True)
class PositionCTR:
    """CTR per slate position over a set of windows.

    Attributes
    ----------
    label : str
        Which windows (e.g. ``"all complete windows"``).
    impressions, clicks : ndarray of shape (K,), int64
    ctr, low, high : ndarray of shape (K,), float64
        Clicks per impression and its Wilson 95% interval (NaN for an unused position).
    chi2_p : float
        p-value of the chi-square test that every position has the same CTR (NaN if it cannot
        be computed, e.g. no click at all).
    """

    label: str
    impressions: np.ndarray
    clicks: np.ndarray
    ctr: np.ndarray
    low: np.ndarray
    high: np.ndarray
    chi2_p: float


def position_ctr_summary(counts: WindowCounts, windows: np.ndarray, label: str) -> PositionCTR:
    """CTR by position, pooled over ``windows``, with Wilson intervals and a homogeneity test.

    Parameters
    ----------
    counts : WindowCounts
    windows : ndarray of int
        Window indices to pool.
    label : str

    Returns
    -------
    PositionCTR

    Notes
    -----
    :math:`\\mathrm{CTR}_k = \\sum_w c_{wk} / \\sum_w n_{wk}` (the aggregated form of
    :func:`simulator.metrics.functions.position_ctr`). The test is Pearson's chi-square on the
    2 × K table of clicks and non-clicks. Under uniform random placement the item mix is the
    same at every position, so CTR differences measure position bias alone (Joachims et al.
    2017); under a learned policy they mix position bias with what the policy puts on top.
    """
    imp = counts.impressions_pos[windows].sum(axis=0)
    clk = counts.clicks_pos[windows].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ctr = np.where(imp > 0, clk / np.maximum(imp, 1), np.nan)
    low, high = wilson_interval(clk, imp)
    used = imp > 0
    p = float("nan")
    if used.sum() >= 2 and clk[used].sum() > 0 and (imp[used] - clk[used]).sum() > 0:
        table = np.vstack([clk[used], imp[used] - clk[used]])
        p = float(stats.chi2_contingency(table, correction=False).pvalue)
    return PositionCTR(label, imp, clk, ctr, low, high, p)
