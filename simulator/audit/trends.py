"""Trend tests for short metric series: Mann–Kendall (tie-corrected) and Sen's slope.

An audit has one value per time window (often 5–20 of them), non-normal and with ties
(coverage is a multiple of ``1 / n_items``). The Mann–Kendall test is the standard
distribution-free test for a monotone trend in such a series, and Sen's slope the matching
robust estimate of its size. Both accept an explicit time index ``t`` so that a window dropped
from the series (empty or partial) leaves a gap instead of shifting the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from simulator.errors import ValidationError

__all__ = ["MannKendallResult", "SenSlope", "mann_kendall", "min_attainable_p", "sens_slope"]


@dataclass(frozen=True)
class MannKendallResult:
    """Outcome of :func:`mann_kendall`.

    Attributes
    ----------
    n : int
        Number of (finite) observations used.
    s : float
        Kendall's score :math:`S = \\sum_{i<j} \\mathrm{sgn}(x_j - x_i)`; ``n(n-1)/2`` for a strictly
        increasing series, ``-n(n-1)/2`` for a strictly decreasing one.
    var_s : float
        Variance of ``S`` under the null (tie-corrected; times the Hamed–Rao factor if used).
    z : float
        Standardised score (continuity-corrected unless disabled).
    p_value : float
        Two-sided p-value, :math:`2 (1 - \\Phi(|Z|))`.
    tau : float
        Kendall's tau-a, ``S / (n(n-1)/2)``, in [-1, 1].
    trend : str
        ``"increasing"``, ``"decreasing"`` or ``"none"`` at the ``alpha`` of the call.
    correction : str
        ``"none"`` or ``"hamed_rao"``.
    variance_factor : float
        ``n / n*`` of Hamed & Rao (1.0 without the correction).
    """

    n: int
    s: float
    var_s: float
    z: float
    p_value: float
    tau: float
    trend: str
    correction: str = "none"
    variance_factor: float = 1.0


@dataclass(frozen=True)
class SenSlope:
    """Outcome of :func:`sens_slope`: median pairwise slope and its confidence interval.

    Attributes
    ----------
    slope : float
        Median of :math:`(x_j - x_i) / (t_j - t_i)` over pairs ``i < j``; units of ``x`` per
        unit of ``t`` (per window in an audit).
    low, high : float
        Confidence limits at level ``1 - alpha`` (Gilbert 1987, from the Mann–Kendall variance).
    intercept : float
        ``median(x - slope * t)`` (Conover), for drawing the line.
    """

    slope: float
    low: float
    high: float
    intercept: float


def _series(x: object, t: object | None) -> tuple[np.ndarray, np.ndarray]:
    xs = np.asarray(x, dtype=np.float64)
    if xs.ndim != 1:
        raise ValidationError(f"x must be 1-D of shape (n,); got shape {xs.shape}")
    ts = np.arange(xs.size, dtype=np.float64) if t is None else np.asarray(t, dtype=np.float64)
    if ts.shape != xs.shape:
        raise ValidationError(f"t must have the shape of x {xs.shape}; got shape {ts.shape}")
    keep = np.isfinite(xs)
    xs, ts = xs[keep], ts[keep]
    if not np.all(np.isfinite(ts)):
        raise ValidationError("t must be finite")
    if ts.size > 1 and np.any(np.diff(ts) <= 0):
        raise ValidationError("t must be strictly increasing (one observation per time)")
    return xs, ts


def _s_and_tie_variance(x: np.ndarray) -> tuple[float, float]:
    n = x.size
    diff = x[None, :] - x[:, None]  # diff[i, j] = x_j - x_i; O(n^2), n = number of windows
    s = float(np.sign(diff[np.triu_indices(n, k=1)]).sum())
    _, counts = np.unique(x, return_counts=True)
    ties = counts[counts > 1].astype(np.float64)
    var = (n * (n - 1) * (2 * n + 5) - float(np.sum(ties * (ties - 1) * (2 * ties + 5)))) / 18.0
    return s, var


def _hamed_rao_factor(x: np.ndarray, t: np.ndarray, alpha: float) -> float:
    n = x.size
    slope = sens_slope(x, t, alpha=alpha).slope
    resid = x - slope * t
    r = stats.rankdata(resid)
    r = r - r.mean()
    denom = float(r @ r)
    if denom == 0.0:
        return 1.0
    bound = stats.norm.ppf(1 - alpha / 2) / math.sqrt(n)
    total = 0.0
    for k in range(1, n - 2):  # lags; n is the number of windows (tens at most)
        rho = float(r[:-k] @ r[k:]) / denom
        if abs(rho) > bound:
            total += (n - k) * (n - k - 1) * (n - k - 2) * rho
    # Only inflate: a negative autocorrelation estimate from a short series must not make
    # the alerting test anti-conservative (a deliberate departure from Hamed & Rao).
    return max(1.0, 1.0 + 2.0 / (n * (n - 1) * (n - 2)) * total)


def mann_kendall(
    x: np.ndarray,
    t: np.ndarray | None = None,
    *,
    alpha: float = 0.05,
    continuity: bool = True,
    correction: str = "none",
) -> MannKendallResult:
    """Mann–Kendall test for a monotone trend, with the tie correction of the variance.

    Parameters
    ----------
    x : ndarray of shape (n,), float
        The series (one value per window). NaN values are dropped with their time.
    t : ndarray of shape (n,), float, optional
        Strictly increasing times of ``x`` (default ``0, 1, ..., n-1``). Only their order enters
        ``S``; gaps matter for :func:`sens_slope` and the Hamed–Rao detrending.
    alpha : float, default 0.05
        Level used for the ``trend`` label and the Hamed–Rao significance bound, in (0, 1).
    continuity : bool, default True
        Subtract ``sgn(S)`` from ``S`` before standardising (the usual continuity correction).
    correction : {"none", "hamed_rao"}, default "none"
        ``"hamed_rao"`` inflates ``Var(S)`` by ``n / n*`` estimated from the significant
        lag autocorrelations of the ranks of the Sen-detrended series (Hamed & Rao 1998).

    Returns
    -------
    MannKendallResult
        With fewer than 3 finite values the test is undefined: ``z`` and ``p_value`` are NaN
        and ``trend`` is ``"none"``.

    Raises
    ------
    ValidationError
        If ``x``/``t`` are not 1-D of equal length, ``t`` is not strictly increasing, ``alpha``
        is not in (0, 1), or ``correction`` is unknown.

    Notes
    -----
    .. math::
        S = \\sum_{i<j} \\mathrm{sgn}(x_j - x_i), \\qquad
        \\mathrm{Var}(S) = \\frac{n(n-1)(2n+5) - \\sum_p t_p (t_p - 1)(2 t_p + 5)}{18},

    where :math:`t_p` is the size of the p-th group of tied values, and
    :math:`Z = (S - \\mathrm{sgn}(S)) / \\sqrt{\\mathrm{Var}(S)}` (without continuity correction
    :math:`Z = S / \\sqrt{\\mathrm{Var}(S)}`, which is exactly the asymptotic test of Kendall's
    tau between ``x`` and its time index, ``scipy.stats.kendalltau(t, x, method="asymptotic")``).
    The normal approximation is conservative-to-fair from n ≈ 8; with n windows the smallest
    attainable p-value is :func:`min_attainable_p` (n = 4 can never reach 0.05).

    Hamed–Rao: :math:`n/n^* = 1 + \\frac{2}{n(n-1)(n-2)} \\sum_{k} (n-k)(n-k-1)(n-k-2)\\,
    \\rho_k` over the lags whose rank autocorrelation :math:`\\rho_k` lies outside
    :math:`\\pm z_{1-\\alpha/2}/\\sqrt{n}`. The factor is floored at 1 (variance only ever
    inflated): with 5–20 windows a spurious negative autocorrelation would otherwise make the
    test anti-conservative, which an alerting tool must not be.

    References
    ----------
    .. [1] Mann, H. B. (1945). Nonparametric tests against trend. *Econometrica*, 13(3), 245-259.
    .. [2] Kendall, M. G. (1975). *Rank Correlation Methods* (4th ed.). Charles Griffin, London.
    .. [3] Hamed, K. H., & Rao, A. R. (1998). A modified Mann-Kendall trend test for
           autocorrelated data. *Journal of Hydrology*, 204(1-4), 182-196.
    """
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ValidationError(f"alpha must be a float in (0, 1); got {alpha!r}")
    if correction not in ("none", "hamed_rao"):
        raise ValidationError(f"correction must be 'none' or 'hamed_rao'; got {correction!r}")
    xs, ts = _series(x, t)
    n = xs.size
    if n < 3:
        nan = float("nan")
        return MannKendallResult(n, 0.0, nan, nan, nan, nan, "none", correction, 1.0)
    s, var = _s_and_tie_variance(xs)
    factor = 1.0
    if correction == "hamed_rao":
        factor = _hamed_rao_factor(xs, ts, alpha)
        var *= factor
    if var <= 0:  # every value tied: no trend is possible
        return MannKendallResult(n, s, var, 0.0, 1.0, 0.0, "none", correction, factor)
    num = s - math.copysign(1.0, s) if (continuity and s != 0) else s
    z = num / math.sqrt(var)
    p = float(2.0 * stats.norm.sf(abs(z)))
    trend = "none"
    if p < alpha:
        trend = "increasing" if s > 0 else "decreasing"
    return MannKendallResult(n, s, var, float(z), p, s / (n * (n - 1) / 2), trend, correction, factor)


def sens_slope(x: np.ndarray, t: np.ndarray | None = None, *, alpha: float = 0.05) -> SenSlope:
    """Sen's slope: the median of all pairwise slopes, with a distribution-free CI.

    Parameters
    ----------
    x : ndarray of shape (n,), float
        The series; NaN values are dropped with their time.
    t : ndarray of shape (n,), float, optional
        Strictly increasing times (default ``0, ..., n-1``).
    alpha : float, default 0.05
        The interval has level ``1 - alpha``.

    Returns
    -------
    SenSlope
        All fields NaN with fewer than 2 finite values.

    Raises
    ------
    ValidationError
        As :func:`mann_kendall`.

    Notes
    -----
    :math:`\\beta = \\mathrm{median}_{i<j} (x_j - x_i)/(t_j - t_i)`. With the :math:`N'`
    pairwise slopes sorted and :math:`C = z_{1-\\alpha/2} \\sqrt{\\mathrm{Var}(S)}`
    (tie-corrected Mann–Kendall variance), the limits are the :math:`M_1 = (N' - C)/2`-th and
    :math:`(M_2 + 1) = ((N' + C)/2 + 1)`-th smallest slopes (linear interpolation between
    ranks, clipped to the extreme slopes).

    References
    ----------
    .. [1] Sen, P. K. (1968). Estimates of the regression coefficient based on Kendall's tau.
           *Journal of the American Statistical Association*, 63(324), 1379-1389.
    .. [2] Gilbert, R. O. (1987). *Statistical Methods for Environmental Pollution
           Monitoring*, §16.5. Van Nostrand Reinhold, New York.
    """
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ValidationError(f"alpha must be a float in (0, 1); got {alpha!r}")
    xs, ts = _series(x, t)
    n = xs.size
    if n < 2:
        nan = float("nan")
        return SenSlope(nan, nan, nan, nan)
    i, j = np.triu_indices(n, k=1)
    slopes = np.sort((xs[j] - xs[i]) / (ts[j] - ts[i]))
    beta = float(np.median(slopes))
    _, var = _s_and_tie_variance(xs)
    c = stats.norm.ppf(1 - alpha / 2) * math.sqrt(max(var, 0.0))
    m = slopes.size
    ranks = np.arange(1, m + 1, dtype=np.float64)
    low = float(np.interp((m - c) / 2, ranks, slopes))
    high = float(np.interp((m + c) / 2 + 1, ranks, slopes))
    intercept = float(np.median(xs - beta * ts))
    return SenSlope(beta, low, high, intercept)


def min_attainable_p(n: int, *, continuity: bool = True) -> float:
    """Smallest two-sided Mann–Kendall p-value possible with ``n`` untied values.

    A strictly monotone series has :math:`|S| = n(n-1)/2`; below about 5 windows even that
    cannot reach p < 0.05, so an audit with fewer windows can never raise a trend alert.

    Parameters
    ----------
    n : int
        Number of windows.

    Returns
    -------
    float
        The p-value of a strictly monotone series; 1.0 for ``n < 3``.
    """
    if n < 3:
        return 1.0
    s = n * (n - 1) / 2
    var = n * (n - 1) * (2 * n + 5) / 18.0
    z = (s - 1 if continuity else s) / math.sqrt(var)
    return float(2.0 * stats.norm.sf(z))
