"""Pure metric functions: exposure concentration, coverage, diversity, homogenization, calibration.

Every function here takes plain numpy arrays and returns a ``float`` (float64) or a float64
ndarray; none holds state, draws random numbers or plots. The reporters in the engine window the
log (which impressions, which users) and call these; the names of the reported metrics are fixed
in DESIGN.md §5 (``gini``, ``coverage``, ``cdi``, ``long_tail_share``, ``popularity_bias``,
``entropy_shown``, ``entropy_consumed``, ``ild``, ``homogenization``, ``miscalibration``, ...).

Conventions
-----------
- Exposure metrics are computed over the **whole catalog**, zero-exposure items included: an
  item that the loop stopped showing is exactly what they must see.
- Inputs are validated at the boundary (shape, dtype, range) and raise
  :class:`simulator.errors.ValidationError` naming the parameter, the rule and the value.
- Undefined per-user values (a user shown nothing) are ``NaN`` so that callers average with
  ``np.nanmean``; undefined scalar values are documented function by function.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simulator.errors import ValidationError

__all__ = [
    "catalog_diversity_index",
    "coverage",
    "coverage_from_counts",
    "gini",
    "head_mask_from_popularity",
    "intra_list_diversity",
    "jaccard_similarity",
    "long_tail_share",
    "lorenz_curve",
    "mean_pairwise_jaccard",
    "miscalibration",
    "normalized_entropy",
    "pairwise_jaccard",
    "popularity_bias",
    "position_ctr",
]

#: Rows of a slate matrix processed at once by :func:`intra_list_diversity`.
DEFAULT_CHUNK_SIZE = 65_536

#: Upper bound on the elements of one float32 block in :func:`pairwise_jaccard` (64 MiB).
_JACCARD_BLOCK_ELEMENTS = 1 << 24

#: Tolerance on row sums of probability distributions in :func:`miscalibration`.
_SUM_TOL = 1e-5


# ----------------------------------------------------------------------------------------------
# validation helpers (public boundary only; the arithmetic below trusts them)
# ----------------------------------------------------------------------------------------------
def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _numeric(name: str, x: object) -> np.ndarray:
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValidationError(f"{name} must be an integer or float array; got dtype {arr.dtype}")
    return arr


def _finite(name: str, arr: np.ndarray) -> None:
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise ValidationError(f"{name} must be finite; got {bad} NaN or infinite value(s)")


def _non_negative(name: str, arr: np.ndarray) -> None:
    if arr.size and arr.min() < 0:
        raise ValidationError(f"{name} must be non-negative; got min {arr.min().item()!r}")


def _ndim(name: str, arr: np.ndarray, ndim: int, shape_doc: str) -> None:
    if arr.ndim != ndim:
        raise ValidationError(
            f"{name} must be {ndim}-D of shape {shape_doc}; got shape {_shape_text(arr.shape)}"
        )


def _counts_1d(name: str, x: object) -> np.ndarray:
    """Validate a non-empty, finite, non-negative 1-D count vector; return it as float64."""
    arr = _numeric(name, x)
    _ndim(name, arr, 1, "(n_items,)")
    if arr.size == 0:
        raise ValidationError(f"{name} must be non-empty; got shape {_shape_text(arr.shape)}")
    _finite(name, arr)
    _non_negative(name, arr)
    return arr.astype(np.float64, copy=False)


def _same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValidationError(
            f"{name_b} must have the shape of {name_a} {_shape_text(a.shape)}; "
            f"got shape {_shape_text(b.shape)}"
        )


def _fraction(name: str, value: object, *, low_open: bool = False) -> float:
    ok_type = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    rule = "(0, 1]" if low_open else "[0, 1]"
    if not ok_type:
        raise ValidationError(f"{name} must be a float in {rule}; got {value!r}")
    v = float(value)
    if not (0.0 < v <= 1.0 if low_open else 0.0 <= v <= 1.0):
        raise ValidationError(f"{name} must be a float in {rule}; got {value!r}")
    return v


def _count_arg(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValidationError(f"{name} must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValidationError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def _bool_array(name: str, x: object, ndim: int, shape_doc: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype != np.bool_:
        raise ValidationError(f"{name} must be a bool array; got dtype {arr.dtype}")
    _ndim(name, arr, ndim, shape_doc)
    return arr


def _ceil_tol(x: float) -> int:
    """``ceil(x)``, but a product such as ``0.07 * 100 = 7.000000000000001`` counts as 7."""
    r = round(x)
    if abs(x - r) <= 1e-9 * max(1.0, abs(x)):
        return int(r)
    return math.ceil(x)


# ----------------------------------------------------------------------------------------------
# compiled row kernels (serial: the tracker may run beside parallel kernels). They repeat NumPy's
# arithmetic operation for operation, including the order of its row sums, so that they return
# the same bits as the vectorised formulas they replace (tested against them).
# ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _pairwise_block(a, lo, n):  # pragma: no cover - compiled
    # NumPy's leaf (n <= 128): below 8 terms a plain loop, else eight strided accumulators
    # combined as a tree, then the remainder
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def _pairwise_sum(a, lo, n):  # pragma: no cover - compiled
    """``a[lo:lo+n].sum()`` in NumPy's order (``pairwise_sum`` of ``loops_utils.h.src``): leaves
    of at most 128 terms; above, split at a multiple of 8 and add left + right."""
    if n <= 128:
        return _pairwise_block(a, lo, n)
    return _pairwise_split(a, lo, n)  # apart: its stack arrays would cost every short row


@njit(cache=True, nogil=True)
def _pairwise_split(a, lo, n):  # pragma: no cover - compiled
    # the recursion on an explicit stack (numba's cache cannot reload self-recursive functions)
    f_lo = np.empty(64, dtype=np.int64)  # frames: depth <= log2(n) + 1
    f_n = np.empty(64, dtype=np.int64)
    f_state = np.empty(64, dtype=np.int64)
    vals = np.empty(64)
    f_lo[0], f_n[0], f_state[0] = lo, n, 0
    sp, vp = 1, 0
    while sp > 0:
        t = sp - 1
        m = f_n[t]
        if m <= 128:
            vals[vp] = _pairwise_block(a, f_lo[t], m)
            vp += 1
            sp -= 1
            continue
        m2 = m // 2
        m2 -= m2 % 8
        if f_state[t] == 0:  # left half
            f_state[t] = 1
            f_lo[sp], f_n[sp], f_state[sp] = f_lo[t], m2, 0
            sp += 1
        elif f_state[t] == 1:  # right half
            f_state[t] = 2
            f_lo[sp], f_n[sp], f_state[sp] = f_lo[t] + m2, m - m2, 0
            sp += 1
        else:  # both done: left + right
            vp -= 1
            vals[vp - 1] = vals[vp - 1] + vals[vp]
            sp -= 1
    return vals[0]


@njit(cache=True, nogil=True)
def _entropy_row(c, buf, log_g):  # pragma: no cover - compiled
    """Normalised entropy of one row of counts ``c`` (any numeric dtype); ``buf`` is float64
    scratch of the row's length. NaN for an empty row."""
    g = c.shape[0]
    for j in range(g):
        buf[j] = np.float64(c[j])
    total = _pairwise_sum(buf, 0, g)
    if total == 0.0:
        return np.nan
    for j in range(g):
        p = buf[j] / total
        buf[j] = p * np.log(p) if p > 0.0 else p * 0.0  # 0 ln 0 = 0
    if g == 1:
        return 0.0
    h = -_pairwise_sum(buf, 0, g) / log_g
    return 0.0 if h < 0.0 else (1.0 if h > 1.0 else h)


@njit(cache=True, nogil=True)
def _plogp_table(t_max):  # pragma: no cover - compiled
    """``table[T, c] = p ln p`` with ``p = c / T``, for integer counts ``0 <= c <= T <= t_max``,
    by the very operations of :func:`_entropy_row` (so the same bits): a row of small integer
    counts then needs no division and no logarithm."""
    table = np.zeros((t_max + 1, t_max + 1))
    for t in range(1, t_max + 1):
        for c in range(t + 1):
            p = np.float64(c) / np.float64(t)
            table[t, c] = p * np.log(p) if p > 0.0 else p * 0.0
    return table


@njit(cache=True, nogil=True)
def _entropy_row_int(c, table, buf, log_g):  # pragma: no cover - compiled
    """:func:`_entropy_row` of a row of non-negative integer counts, through :func:`_plogp_table`
    when its total is in the table (the total of integers is exact in any order)."""
    g = c.shape[0]
    total = 0
    for j in range(g):
        total += c[j]
    if total == 0:
        return np.nan
    if total >= table.shape[0]:
        return _entropy_row(c, buf, log_g)
    for j in range(g):
        buf[j] = table[total, c[j]]
    if g == 1:
        return 0.0
    h = -_pairwise_sum(buf, 0, g) / log_g
    return 0.0 if h < 0.0 else (1.0 if h > 1.0 else h)


@njit(cache=True, nogil=True)
def _entropy_rows(c, log_g):  # pragma: no cover - compiled
    out = np.empty(c.shape[0])
    buf = np.empty(c.shape[1])
    for r in range(c.shape[0]):
        out[r] = _entropy_row(c[r], buf, log_g)
    return out


@njit(cache=True, nogil=True)
def _kl_row(p, q, keep, alpha, buf):  # pragma: no cover - compiled
    """Steck's smoothed KL of one row, ``keep = 1 - alpha``; ``q`` float64, ``p`` any float
    dtype (cast to float64 as NumPy would); ``buf`` is float64 scratch."""
    for j in range(p.shape[0]):
        pj = np.float64(p[j])
        if pj > 0.0:
            buf[j] = pj * np.log(pj / (keep * q[j] + alpha * pj))
        else:
            buf[j] = pj * 0.0
    kl = _pairwise_sum(buf, 0, p.shape[0])
    return kl if kl > 0.0 else 0.0  # Gibbs' inequality; clip round-off


@njit(cache=True, nogil=True)
def _kl_rows(p, q, keep, alpha):  # pragma: no cover - compiled
    out = np.empty(p.shape[0])
    buf = np.empty(p.shape[1])
    for r in range(p.shape[0]):
        empty = True
        for j in range(q.shape[1]):
            if q[r, j] != 0.0:
                empty = False
        out[r] = np.nan if empty else _kl_row(p[r], q[r], keep, alpha, buf)
    return out


@njit(cache=True, nogil=True)
def _user_diversity_rows(shown, consumed, taste, users, table, log_g, keep, alpha, tol):  # pragma: no cover
    """For the rows ``users`` of the integer window sums: normalised entropy of ``shown`` and
    of ``consumed`` (as :func:`normalized_entropy`, via ``table`` from :func:`_plogp_table`) and
    the miscalibration of ``taste`` against the shown shares (as :func:`miscalibration` with
    ``q = shown / shown.sum(1)``), in one pass without gathering the rows. Also returns the
    first row whose taste :func:`miscalibration` would reject (not finite, negative, or summing
    beyond ``tol`` of 1), or -1."""
    n, g = users.shape[0], shown.shape[1]
    h_shown, h_consumed, kl = np.empty(n), np.empty(n), np.empty(n)
    buf, q = np.empty(g), np.empty(g)
    bad = -1
    for r in range(n):
        u = users[r]
        h_shown[r] = _entropy_row_int(shown[u], table, buf, log_g)
        h_consumed[r] = _entropy_row_int(consumed[u], table, buf, log_g)
        p = taste[u]
        for j in range(g):
            buf[j] = np.float64(p[j])
            if not (np.isfinite(buf[j]) and buf[j] >= 0.0):
                buf[j] = np.nan
        if bad < 0 and not (abs(_pairwise_sum(buf, 0, g) - 1.0) <= tol):
            bad = r
        total = 0
        for j in range(g):
            total += shown[u, j]
        if total == 0:
            kl[r] = np.nan
            continue
        for j in range(g):
            q[j] = np.float64(shown[u, j]) / np.float64(total)
        kl[r] = _kl_row(p, q, keep, alpha, buf)
    return h_shown, h_consumed, kl, bad


@njit(cache=True, nogil=True)
def _slate_unit_sums(ids, unit, nonzero, s, m):  # pragma: no cover - compiled
    """Per slate, the sum of its unit vectors (positions in order, from 0.0) into ``s`` and the
    number of its nonzero embeddings into ``m``."""
    d = unit.shape[1]
    for r in range(ids.shape[0]):
        for t in range(d):
            s[r, t] = 0.0
        cnt = 0
        for pos in range(ids.shape[1]):
            i = ids[r, pos]
            for t in range(d):
                s[r, t] += unit[i, t]
            cnt += nonzero[i]
        m[r] = cnt


# ----------------------------------------------------------------------------------------------
# exposure concentration
# ----------------------------------------------------------------------------------------------
def gini(counts: np.ndarray) -> float:
    """Gini coefficient of item exposure over the whole catalog.

    Parameters
    ----------
    counts : ndarray of shape (n_items,), int64 or float64
        Exposure (impression count) of every item of the catalog in the window, **zero-exposure
        items included**; non-negative. Units: impressions.

    Returns
    -------
    float
        Gini coefficient in [0, 1]: 0 when every item has the same exposure (or none has any),
        ``(n - 1) / n`` when one item has all of it.

    Raises
    ------
    ValidationError
        If ``counts`` is not a non-empty 1-D numeric array, holds NaN/inf, or holds a negative
        value.

    Notes
    -----
    With the counts sorted ascending, :math:`x_{(1)} \\le \\dots \\le x_{(n)}`,

    .. math:: G = \\frac{2 \\sum_{i=1}^{n} i\\, x_{(i)}}{n \\sum_i x_i} - \\frac{n + 1}{n}
              = \\frac{\\sum_{i=1}^{n} (2i - n - 1)\\, x_{(i)}}{n \\sum_i x_i},

    evaluated in the second form (no cancellation between two terms close to 1). It equals
    one minus twice the area under the Lorenz curve of :func:`lorenz_curve` (trapezoid rule).
    All-zero counts give 0.0, never NaN; the result is clipped to [0, 1] against round-off.

    Excluding zero-exposure items (e.g. computing from a dict of shown items) hides the dropped
    tail and can make the Gini *fall* while the catalog collapses; do not.

    References
    ----------
    .. [1] Damgaard, C., & Weiner, J. (2000). Describing inequality in plant size or fecundity.
           *Ecology*, 81(4), 1139-1142.
    .. [2] Fleder, D., & Hosanagar, K. (2009). Blockbuster culture's next rise or fall: The
           impact of recommender systems on sales diversity. *Management Science*, 55(5),
           697-712.
    """
    x = np.sort(_counts_1d("counts", counts))
    total = x.sum()
    if total == 0:
        return 0.0
    n = x.size
    weights = 2.0 * np.arange(1, n + 1, dtype=np.float64) - (n + 1)
    g = float(weights @ x) / (n * float(total))
    return float(min(max(g, 0.0), 1.0))


def lorenz_curve(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve of item exposure, for plotting next to :func:`gini`.

    Parameters
    ----------
    counts : ndarray of shape (n_items,), int64 or float64
        Exposure of every item of the catalog, zero-exposure items included; non-negative.

    Returns
    -------
    x : ndarray of shape (n_items + 1,), float64
        Cumulative share of items, least exposed first: ``0, 1/n, ..., 1``.
    y : ndarray of shape (n_items + 1,), float64
        Cumulative share of impressions held by those items; ``y[0] = 0``, ``y[-1] = 1``.
        All-zero counts give the line of equality ``y = x`` (consistent with a Gini of 0).

    Raises
    ------
    ValidationError
        As :func:`gini`.

    Notes
    -----
    :math:`y_k = \\sum_{i \\le k} x_{(i)} / \\sum_i x_i` with the counts sorted ascending, and
    :math:`G = 1 - 2 \\int_0^1 L` with the trapezoid rule on these points.

    References
    ----------
    .. [1] Lorenz, M. O. (1905). Methods of measuring the concentration of wealth.
           *Publications of the American Statistical Association*, 9(70), 209-219.
    """
    c = np.sort(_counts_1d("counts", counts))
    n = c.size
    x = np.arange(n + 1, dtype=np.float64) / n
    total = c.sum()
    if total == 0:
        return x, x.copy()
    y = np.empty(n + 1, dtype=np.float64)
    y[0] = 0.0
    np.cumsum(c, out=y[1:])
    y /= total
    y[-1] = 1.0
    return x, y


# ----------------------------------------------------------------------------------------------
# coverage
# ----------------------------------------------------------------------------------------------
def coverage(items: np.ndarray, n_items: int) -> float:
    """Catalog coverage: fraction of the catalog shown at least once.

    Parameters
    ----------
    items : ndarray of any shape, integer dtype
        Item ids of the impressions in the window (e.g. a slate matrix ``(n, K)`` or the
        ``item_id`` column of the log). Ids outside ``[0, n_items)`` (e.g. ``-1`` padding) are
        ignored. An empty array gives 0.0.
    n_items : int
        Size of the catalog, >= 1.

    Returns
    -------
    float
        ``|{i in [0, n_items) : i shown}| / n_items`` in [0, 1]; repeated ids count once, so
        it can never exceed 1.

    Raises
    ------
    ValidationError
        If ``n_items`` is not an int >= 1, or a non-empty ``items`` is not of integer dtype.

    Notes
    -----
    :math:`\\mathrm{cov} = \\frac{1}{|I|} \\sum_{i \\in I} [\\,\\mathrm{exposure}_i \\ge 1\\,]`.
    See :func:`coverage_from_counts` when exposure counts are already at hand.

    References
    ----------
    .. [1] Ge, M., Delgado-Battenfeld, C., & Jannach, D. (2010). Beyond accuracy: evaluating
           recommender systems by coverage and serendipity. *RecSys '10*, 257-260.
    """
    n = _count_arg("n_items", n_items, minimum=1)
    ids = np.asarray(items).ravel()
    if ids.size == 0:
        return 0.0
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValidationError(f"items must be an integer array of item ids; got dtype {ids.dtype}")
    ids = ids[(ids >= 0) & (ids < n)]
    seen = np.zeros(n, dtype=bool)
    seen[ids] = True
    return float(np.count_nonzero(seen)) / n


def coverage_from_counts(counts: np.ndarray) -> float:
    """Catalog coverage from per-item exposure counts: ``mean(counts > 0)``.

    Parameters
    ----------
    counts : ndarray of shape (n_items,), int64 or float64
        Exposure of every item of the catalog in the window; non-negative.

    Returns
    -------
    float
        Fraction of items with at least one impression, in [0, 1].

    Raises
    ------
    ValidationError
        As :func:`gini`.

    Notes
    -----
    :math:`\\mathrm{cov} = \\frac{1}{n} \\sum_i [\\,x_i > 0\\,]`.

    References
    ----------
    .. [1] Ge, M., Delgado-Battenfeld, C., & Jannach, D. (2010). Beyond accuracy: evaluating
           recommender systems by coverage and serendipity. *RecSys '10*, 257-260.
    """
    c = _counts_1d("counts", counts)
    return float(np.count_nonzero(c > 0)) / c.size


def catalog_diversity_index(reach: np.ndarray, n_active_users: int, threshold: float = 0.01) -> float:
    """Catalog diversity index (CDI): fraction of the catalog recommended to >= 1% of users.

    Parameters
    ----------
    reach : ndarray of shape (n_items,), int64
        For every item of the catalog, the number of **distinct** active users it was
        recommended to in the window (not its impression count: an item shown 50 times to one
        user reaches one user). Non-negative and at most ``n_active_users``.
    n_active_users : int
        Number of users active in the window, >= 0.
    threshold : float, default 0.01
        Minimum reach as a fraction of ``n_active_users``, in [0, 1].

    Returns
    -------
    float
        CDI in [0, 1]; 0.0 when ``n_active_users == 0``.

    Raises
    ------
    ValidationError
        If ``reach`` is not a non-empty 1-D non-negative finite array, exceeds
        ``n_active_users``, ``n_active_users`` is not an int >= 0, or ``threshold`` is not in
        [0, 1].

    Notes
    -----
    .. math:: \\mathrm{CDI} = \\frac{1}{n} \\sum_i
              [\\, \\mathrm{reach}_i \\ge \\max(1, \\lceil \\tau N \\rceil) \\,]

    with :math:`\\tau` = ``threshold`` and :math:`N` = ``n_active_users``. The ceiling forgives
    float round-off (``0.07 * 100`` is 7, not 8). ``threshold = 0`` counts every item shown to
    anyone.

    References
    ----------
    .. [1] recloop seed lesson, "Feedback Loops and Data Flywheels", section *Detecting
           Feedback Loops*: "the fraction of the catalog's items that were recommended to at
           least 1% of users". The seed's code counted impressions, not distinct users, and
           only over shown items; here reach is distinct users and the denominator is the whole
           catalog.
    """
    r = _counts_1d("reach", reach)
    n_users = _count_arg("n_active_users", n_active_users, minimum=0)
    tau = _fraction("threshold", threshold)
    if r.max() > n_users:
        raise ValidationError(f"reach must be <= n_active_users ({n_users}); got max {r.max().item()!r}")
    if n_users == 0:
        return 0.0
    min_reach = max(1, _ceil_tol(tau * n_users))
    return float(np.count_nonzero(r >= min_reach)) / r.size


# ----------------------------------------------------------------------------------------------
# popularity: long tail and bias
# ----------------------------------------------------------------------------------------------
def head_mask_from_popularity(prior: np.ndarray, head_fraction: float = 0.2) -> np.ndarray:
    """Mark the head of the catalog: the ``ceil(head_fraction * n)`` most popular items.

    Parameters
    ----------
    prior : ndarray of shape (n_items,), float64
        Prior popularity of every item (e.g. pre-system stream counts or the Zipf prior);
        finite. Only its order matters.
    head_fraction : float, default 0.2
        Share of the catalog in the head, in [0, 1].

    Returns
    -------
    ndarray of shape (n_items,), bool
        True for the ``ceil(head_fraction * n_items)`` items of highest prior popularity. Ties
        are broken by item id (the lower id enters the head first), so the mask is deterministic.

    Raises
    ------
    ValidationError
        If ``prior`` is not a non-empty 1-D finite numeric array, or ``head_fraction`` is not a
        float in [0, 1].

    Notes
    -----
    :math:`H = \\{\\text{first } \\lceil f n \\rceil \\text{ items by } (-\\mathrm{prior}_i, i)\\}`;
    the ceiling forgives float round-off (``0.07 * 100`` gives 7 items).

    References
    ----------
    .. [1] Abdollahpouri, H., Burke, R., & Mobasher, B. (2017). Controlling popularity bias in
           learning-to-rank recommendation. *RecSys '17*, 42-46.
    """
    p = _numeric("prior", prior)
    _ndim("prior", p, 1, "(n_items,)")
    if p.size == 0:
        raise ValidationError(f"prior must be non-empty; got shape {_shape_text(p.shape)}")
    _finite("prior", p)
    f = _fraction("head_fraction", head_fraction)
    n_head = min(p.size, _ceil_tol(f * p.size))
    order = np.argsort(-p.astype(np.float64), kind="stable")
    mask = np.zeros(p.size, dtype=bool)
    mask[order[:n_head]] = True
    return mask


def long_tail_share(counts: np.ndarray, head_mask: np.ndarray) -> float:
    """Share of impressions that went to items outside the head (the long tail).

    Parameters
    ----------
    counts : ndarray of shape (n_items,), int64 or float64
        Exposure of every item of the catalog in the window; non-negative.
    head_mask : ndarray of shape (n_items,), bool
        True for head items, e.g. from :func:`head_mask_from_popularity` (top 20% by prior
        popularity).

    Returns
    -------
    float
        ``sum(counts[~head_mask]) / sum(counts)`` in [0, 1]. A window with **zero
        impressions returns 0.0** (no impression went to the tail), not NaN, so the metric
        series stays plottable; check ``coverage`` to tell it apart from a real zero.

    Raises
    ------
    ValidationError
        If ``counts`` is invalid (as :func:`gini`), ``head_mask`` is not bool, or the shapes
        differ.

    Notes
    -----
    .. math:: \\mathrm{LTS} = \\frac{\\sum_{i \\notin H} x_i}{\\sum_i x_i}

    References
    ----------
    .. [1] Abdollahpouri, H., Burke, R., & Mobasher, B. (2017). Controlling popularity bias in
           learning-to-rank recommendation. *RecSys '17*, 42-46.
    """
    c = _counts_1d("counts", counts)
    head = _bool_array("head_mask", head_mask, 1, "(n_items,)")
    _same_shape("counts", c, "head_mask", head)
    total = c.sum()
    if total == 0:
        return 0.0
    share = float(c[~head].sum()) / float(total)
    return float(min(max(share, 0.0), 1.0))


def popularity_bias(counts: np.ndarray, prior: np.ndarray) -> float:
    """Spearman rank correlation between item exposure and prior popularity.

    Parameters
    ----------
    counts : ndarray of shape (n_items,), int64 or float64
        Exposure of every item of the catalog in the window, zero-exposure items included;
        non-negative.
    prior : ndarray of shape (n_items,), float64
        Prior popularity of every item; finite.

    Returns
    -------
    float
        Spearman rho in [-1, 1] (ties get average ranks). **NaN when either input is constant**
        (e.g. nothing shown, or a uniform prior): the rank correlation is undefined there.
        Callers should treat NaN as "no signal", not as 0.

    Raises
    ------
    ValidationError
        If ``counts`` is invalid (as :func:`gini`), ``prior`` is not finite numeric, or the
        shapes differ.

    Notes
    -----
    :math:`\\rho = \\mathrm{corr}(\\mathrm{rank}(x), \\mathrm{rank}(\\mathrm{prior}))`, the
    Pearson correlation of the average ranks, computed as ``scipy.stats.spearmanr`` does and
    equal to its statistic (tested) without its per-call overhead. The whole catalog enters,
    so items the loop stopped showing tie at the bottom rank.

    References
    ----------
    .. [1] Spearman, C. (1904). The proof and measurement of association between two things.
           *The American Journal of Psychology*, 15(1), 72-101.
    """
    c = _counts_1d("counts", counts)
    p = _numeric("prior", prior)
    _same_shape("counts", c, "prior", p)
    _finite("prior", p)
    if c.min() == c.max() or p.min() == p.max():
        return float("nan")
    return _rank_correlation(_average_ranks(c), _average_ranks(p.astype(np.float64, copy=False)))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of a finite 1-D array, ties averaged: ``scipy.stats.rankdata(x)`` exactly.

    A tie group occupying sorted positions ``lo .. hi - 1`` gets ``(lo + 1 + hi) / 2``: integers,
    then halved, so exact in float64 (as scipy's ``0.5 * (count[dense] + count[dense - 1] + 1)``).
    """
    order = np.argsort(x)
    xs = x[order]
    first = np.empty(x.size, dtype=bool)
    first[:1] = True
    np.not_equal(xs[1:], xs[:-1], out=first[1:])
    bounds = np.append(np.flatnonzero(first), x.size)
    group = np.cumsum(first) - 1
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = ((bounds[:-1] + bounds[1:] + 1) * 0.5)[group]
    return ranks


def _rank_correlation(rx: np.ndarray, ry: np.ndarray) -> float:
    """Pearson correlation of two rank vectors computed as ``scipy.stats.spearmanr`` does: the
    ranks as the columns of an (n, 2) Fortran-ordered array, passed to ``np.corrcoef``; the
    same layout gives the same summation order, hence the same bits. The ranks of a fixed
    vector (the prior) can so be computed once."""
    ranked = np.empty((2, rx.size), dtype=np.float64)
    ranked[0], ranked[1] = rx, ry
    return float(np.corrcoef(ranked.T, rowvar=False)[1, 0])


# ----------------------------------------------------------------------------------------------
# per-user diversity
# ----------------------------------------------------------------------------------------------
def normalized_entropy(counts: np.ndarray) -> np.ndarray:
    """Normalised Shannon entropy of each user's genre counts, ``H / ln G``.

    Parameters
    ----------
    counts : ndarray of shape (n_users, n_genres), int64 or float64
        Per-user genre counts in the window (impressions shown, or streams consumed);
        non-negative.

    Returns
    -------
    ndarray of shape (n_users,), float64
        Entropy in [0, 1]: 1 for a uniform spread over all genres, 0 for a single genre. Rows
        with zero total are **NaN** (average with ``np.nanmean``). With ``n_genres == 1`` every
        non-empty row is 0.

    Raises
    ------
    ValidationError
        If ``counts`` is not a 2-D finite non-negative numeric array with ``n_genres >= 1``.

    Notes
    -----
    .. math:: H_u = -\\sum_g p_{ug} \\ln p_{ug}, \\quad p_{ug} = c_{ug} / \\sum_{g'} c_{ug'},
              \\quad \\tilde H_u = H_u / \\ln G

    with :math:`0 \\ln 0 = 0`; clipped to [0, 1] against round-off. Computed row by row in one
    compiled pass (no ``(n_users, n_genres)`` temporaries), summing each row in NumPy's pairwise
    order for a C-ordered array, whatever the layout of ``counts`` (the vectorised formula
    summed Fortran-ordered input in another order, which moved the last bits).

    References
    ----------
    .. [1] Shannon, C. E. (1948). A mathematical theory of communication. *Bell System
           Technical Journal*, 27(3), 379-423.
    """
    c = _numeric("counts", counts)
    _ndim("counts", c, 2, "(n_users, n_genres)")
    if c.shape[1] == 0:
        raise ValidationError(f"counts must have n_genres >= 1 columns; got shape {_shape_text(c.shape)}")
    _finite("counts", c)
    _non_negative("counts", c)
    c = np.ascontiguousarray(c, dtype=np.float64)
    return _entropy_rows(c, math.log(c.shape[1]))


def intra_list_diversity(
    items: np.ndarray, embeddings: np.ndarray, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> np.ndarray:
    """Intra-list diversity: mean pairwise cosine distance of the items of each slate.

    Parameters
    ----------
    items : ndarray of shape (n, K), int32 or int64
        Item ids of ``n`` slates of length ``K >= 2``; every id in ``[0, n_items)``.
    embeddings : ndarray of shape (n_items, d), float32 or float64
        Item embeddings; finite.
    chunk_size : int, default 65536
        Slates processed at once; working memory is ``chunk_size * (d + K + 1)`` 8-byte values
        whatever ``n``, plus one float64 copy of the unit-normalised embeddings (``n_items * d``).

    Returns
    -------
    ndarray of shape (n,), float64
        Mean cosine distance over the :math:`K(K-1)/2` unordered pairs of positions, each
        pair counted once, in [0, 2]. A repeated item contributes distance 0 with itself.
        An item with a **zero-norm embedding has cosine 0** (distance 1) with every item,
        itself included.

    Raises
    ------
    ValidationError
        If ``items`` is not a 2-D integer array with ``K >= 2`` and ids in range,
        ``embeddings`` is not a 2-D finite float array, or ``chunk_size`` is not an int >= 1.

    Notes
    -----
    .. math:: \\mathrm{ILD}(s) = \\frac{2}{K(K-1)} \\sum_{j<k} (1 - \\cos(v_{s_j}, v_{s_k}))

    computed without the :math:`K \\times K` matrix: with unit vectors :math:`e_k` (zero for a
    zero-norm embedding), :math:`\\sum_{j<k} e_j \\cdot e_k = (\\lVert \\sum_k e_k \\rVert^2 -
    \\sum_k \\lVert e_k \\rVert^2) / 2`, so a chunk costs :math:`O(K d)` per slate. The sums
    :math:`\\sum_k e_k` are formed slate by slate in one compiled pass (positions in order).

    References
    ----------
    .. [1] Ziegler, C.-N., McNee, S. M., Konstan, J. A., & Lausen, G. (2005). Improving
           recommendation lists through topic diversification. *WWW '05*, 22-32.
    """
    ids = np.asarray(items)
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValidationError(f"items must be an integer array of item ids; got dtype {ids.dtype}")
    _ndim("items", ids, 2, "(n, K)")
    k = ids.shape[1]
    if k < 2:
        raise ValidationError(f"items must have K >= 2 columns (pairs); got K = {k}")
    v = np.asarray(embeddings)
    if not np.issubdtype(v.dtype, np.floating):
        raise ValidationError(f"embeddings must be a float array; got dtype {v.dtype}")
    _ndim("embeddings", v, 2, "(n_items, d)")
    _finite("embeddings", v)
    chunk = _count_arg("chunk_size", chunk_size, minimum=1)
    n_items = v.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= n_items):
        raise ValidationError(
            f"items must be ids in [0, {n_items}); got min {ids.min().item()} and max {ids.max().item()}"
        )

    unit, nonzero = _unit_rows(v)
    return _ild_from_unit(ids, unit, nonzero, chunk)


def _unit_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-normalised rows of ``v`` (float64, zero rows stay zero) and which rows are nonzero."""
    norms = np.sqrt(np.einsum("ij,ij->i", v, v, dtype=np.float64))
    nonzero = norms > 0
    inv_norm = np.where(nonzero, 1.0 / np.where(nonzero, norms, 1.0), 0.0)
    return np.ascontiguousarray(v * inv_norm[:, None]), nonzero


def _ild_from_unit(ids: np.ndarray, unit: np.ndarray, nonzero: np.ndarray, chunk: int) -> np.ndarray:
    """:func:`intra_list_diversity` on validated ids, from :func:`_unit_rows` (which the tracker
    computes once per catalog)."""
    k = ids.shape[1]
    n_pairs = k * (k - 1) / 2
    out = np.empty(ids.shape[0], dtype=np.float64)
    s = np.empty((min(chunk, ids.shape[0]), unit.shape[1]), dtype=np.float64)
    m = np.empty(s.shape[0], dtype=np.int64)
    nz = nonzero.view(np.uint8)
    for start in range(0, ids.shape[0], chunk):
        block = np.ascontiguousarray(ids[start : start + chunk], dtype=np.int64)  # one compiled variant
        rows = block.shape[0]
        _slate_unit_sums(block, unit, nz, s[:rows], m[:rows])  # no (rows, d) gather per position
        sum_cos = (np.einsum("ij,ij->i", s[:rows], s[:rows]) - m[:rows]) / 2.0
        out[start : start + chunk] = 1.0 - sum_cos / n_pairs
    return np.clip(out, 0.0, 2.0, out=out)


# ----------------------------------------------------------------------------------------------
# homogenization
# ----------------------------------------------------------------------------------------------
def jaccard_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Row-wise Jaccard similarity of two sets of item sets, ``|A ∩ B| / |A ∪ B|``.

    Parameters
    ----------
    a : ndarray of shape (..., n_items), bool
        Indicator of each set (e.g. one user's consumed items).
    b : ndarray of shape (..., n_items), bool
        Indicator of the sets to compare with, same shape as ``a``.

    Returns
    -------
    ndarray of shape (...,), float64, or float
        Jaccard similarity in [0, 1] per row (a float for 1-D inputs); NaN where both sets are
        empty.

    Raises
    ------
    ValidationError
        If ``a`` or ``b`` is not a bool array of at least 1 dimension, or the shapes differ.

    Notes
    -----
    :math:`J(A, B) = |A \\cap B| / |A \\cup B|`, undefined (NaN) for :math:`A = B = \\emptyset`.

    References
    ----------
    .. [1] Chaney, A. J. B., Stewart, B. M., & Engelhardt, B. E. (2018). How algorithmic
           confounding in recommendation systems increases homogeneity and decreases utility.
           *RecSys '18*, 224-232.
    """
    aa = np.asarray(a)
    bb = np.asarray(b)
    for name, arr in (("a", aa), ("b", bb)):
        if arr.dtype != np.bool_:
            raise ValidationError(f"{name} must be a bool array; got dtype {arr.dtype}")
        if arr.ndim < 1:
            raise ValidationError(f"{name} must have shape (..., n_items); got a scalar")
    _same_shape("a", aa, "b", bb)
    inter = np.count_nonzero(aa & bb, axis=-1).astype(np.float64)
    union = np.count_nonzero(aa | bb, axis=-1).astype(np.float64)
    out = np.divide(inter, union, out=np.full_like(union, np.nan), where=union > 0)
    return float(out) if out.ndim == 0 else out


def pairwise_jaccard(sets: np.ndarray) -> np.ndarray:
    """Jaccard similarity between every pair of rows of a set-indicator matrix.

    Parameters
    ----------
    sets : ndarray of shape (n_users, n_items), bool
        Row ``u`` marks the items user ``u`` consumed in the window (usually a sample of users).

    Returns
    -------
    ndarray of shape (n_users, n_users), float64
        Symmetric; entry ``(u, v)`` is ``|A_u ∩ A_v| / |A_u ∪ A_v|``. The diagonal is 1 for a
        non-empty set; any entry between two empty sets (the diagonal of an empty row
        included) is NaN.

    Raises
    ------
    ValidationError
        If ``sets`` is not a 2-D bool array.

    Notes
    -----
    Intersections come from one matrix product :math:`B B^\\top` (float32 blocks of item
    columns, exact for counts below :math:`2^{24}`, accumulated in float64), and
    :math:`|A \\cup B| = |A| + |B| - |A \\cap B|`. Memory is :math:`O(n_{users}^2)` plus one block
    of at most :math:`2^{24}` float32 values.

    References
    ----------
    .. [1] Chaney, A. J. B., Stewart, B. M., & Engelhardt, B. E. (2018). How algorithmic
           confounding in recommendation systems increases homogeneity and decreases utility.
           *RecSys '18*, 224-232.
    """
    b = _bool_array("sets", sets, 2, "(n_users, n_items)")
    n_users, n_items = b.shape
    inter = np.zeros((n_users, n_users), dtype=np.float64)
    step = max(1, _JACCARD_BLOCK_ELEMENTS // max(1, n_users))
    for start in range(0, n_items, step):  # column blocks bound memory; each is one matmul
        block = b[:, start : start + step].astype(np.float32)
        inter += block @ block.T
    sizes = np.diag(inter).copy()
    union = sizes[:, None] + sizes[None, :] - inter
    return np.divide(inter, union, out=np.full_like(union, np.nan), where=union > 0)


def mean_pairwise_jaccard(sets: np.ndarray) -> float:
    """Homogenization: mean Jaccard similarity over all unordered pairs of distinct users.

    Parameters
    ----------
    sets : ndarray of shape (n_users, n_items), bool
        Row ``u`` marks the items user ``u`` consumed in the window (a sample of users).

    Returns
    -------
    float
        Mean of :func:`pairwise_jaccard` over the :math:`S(S-1)/2` pairs ``u < v``, in [0, 1];
        pairs where both sets are empty are skipped. NaN if no pair is left (fewer than two
        users, or every set empty).

    Raises
    ------
    ValidationError
        If ``sets`` is not a 2-D bool array.

    Notes
    -----
    .. math:: \\mathrm{hom} = \\frac{1}{|P|} \\sum_{(u, v) \\in P} J(A_u, A_v), \\quad
              P = \\{u < v : A_u \\cup A_v \\ne \\emptyset\\}

    Report it also relative to the oracle policy (DESIGN §5).

    References
    ----------
    .. [1] Chaney, A. J. B., Stewart, B. M., & Engelhardt, B. E. (2018). How algorithmic
           confounding in recommendation systems increases homogeneity and decreases utility.
           *RecSys '18*, 224-232.
    """
    j = pairwise_jaccard(sets)
    upper = j[np.triu_indices(j.shape[0], k=1)]
    valid = upper[~np.isnan(upper)]
    if valid.size == 0:
        return float("nan")
    return float(valid.mean())


# ----------------------------------------------------------------------------------------------
# calibration and engagement
# ----------------------------------------------------------------------------------------------
def _distributions(name: str, x: object, *, allow_empty_rows: bool) -> np.ndarray:
    arr = _numeric(name, x)
    _ndim(name, arr, 2, "(n_users, n_genres)")
    _finite(name, arr)
    _non_negative(name, arr)
    arr = arr.astype(np.float64, copy=False)
    sums = arr.sum(axis=1)
    ok = np.abs(sums - 1.0) <= _SUM_TOL
    if allow_empty_rows:
        ok |= sums == 0
    if not ok.all():
        bad = sums[~ok][0].item()
        rule = "sum to 1 (or 0 for nothing shown)" if allow_empty_rows else "sum to 1"
        raise ValidationError(f"{name} rows must {rule}; got a row summing to {bad!r}")
    return arr


def miscalibration(p: np.ndarray, q: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """Miscalibration of each user's recommendations: KL(p ‖ q̃) over genres.

    Parameters
    ----------
    p : ndarray of shape (n_users, n_genres), float64
        Target genre distribution of each user (from their history); rows sum to 1.
    q : ndarray of shape (n_users, n_genres), float64
        Genre distribution of what each user was shown; rows sum to 1, or are all zero when
        nothing was shown (that user's result is NaN).
    alpha : float, default 0.01
        Smoothing weight of ``p`` in ``q̃``, in (0, 1]; keeps the divergence finite.

    Returns
    -------
    ndarray of shape (n_users,), float64
        :math:`C_{KL}` in nats, >= 0 and at most :math:`\\ln(1/\\alpha)`; 0 when ``q == p``;
        NaN for rows with nothing shown (average with ``np.nanmean``).

    Raises
    ------
    ValidationError
        If ``p`` or ``q`` is not a 2-D finite non-negative array with the rows summing as
        stated (tolerance 1e-5), the shapes differ, or ``alpha`` is not in (0, 1].

    Notes
    -----
    Steck (2018), Eq. 5:

    .. math:: C_{KL}(p, q) = \\sum_g p(g|u) \\ln \\frac{p(g|u)}{\\tilde q(g|u)}, \\quad
              \\tilde q = (1 - \\alpha)\\, q + \\alpha\\, p

    with :math:`0 \\ln 0 = 0`. Because :math:`\\tilde q \\ge \\alpha p`, every term with
    :math:`p > 0` is finite. Negative round-off is clipped to 0. Computed row by row in one
    compiled pass, with NumPy's order of summation.

    References
    ----------
    .. [1] Steck, H. (2018). Calibrated recommendations. *RecSys '18*, 154-162.
    """
    pp = _distributions("p", p, allow_empty_rows=False)
    qq = _distributions("q", q, allow_empty_rows=True)
    _same_shape("p", pp, "q", qq)
    a = _fraction("alpha", alpha, low_open=True)
    return _kl_rows(np.ascontiguousarray(pp), np.ascontiguousarray(qq), 1.0 - a, a)


def position_ctr(clicks: np.ndarray) -> np.ndarray:
    """Click-through rate at each slate position.

    Parameters
    ----------
    clicks : ndarray of shape (n, K), bool
        Clicks of ``n`` slates, position 0 first.

    Returns
    -------
    ndarray of shape (K,), float64
        Clicks per impression at each position, in [0, 1]; all NaN when ``n == 0``.

    Raises
    ------
    ValidationError
        If ``clicks`` is not a 2-D bool array.

    Notes
    -----
    :math:`\\mathrm{CTR}_k = \\frac{1}{n} \\sum_s \\mathrm{click}_{sk}`. Under the
    position-based model its ratio across positions at a fixed item estimates the examination
    ratio :math:`P(E_k) / P(E_0)`.

    References
    ----------
    .. [1] Joachims, T., Swaminathan, A., & Schnabel, T. (2017). Unbiased learning-to-rank with
           biased feedback. *WSDM '17*, 781-789.
    """
    c = _bool_array("clicks", clicks, 2, "(n, K)")
    if c.shape[0] == 0:
        return np.full(c.shape[1], np.nan, dtype=np.float64)
    return np.count_nonzero(c, axis=0).astype(np.float64) / c.shape[0]
