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
from scipy import stats

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
    Pearson correlation of the average ranks (``scipy.stats.spearmanr``). The whole catalog
    enters, so items the loop stopped showing tie at the bottom rank.

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
    return float(stats.spearmanr(c, p).statistic)


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

    with :math:`0 \\ln 0 = 0`; clipped to [0, 1] against round-off.

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
    c = c.astype(np.float64, copy=False)
    total = c.sum(axis=1)
    empty = total == 0
    p = c / np.where(empty, 1.0, total)[:, None]
    plogp = p * np.log(np.where(p > 0, p, 1.0))
    h = -plogp.sum(axis=1)
    n_genres = c.shape[1]
    h = np.zeros_like(h) if n_genres == 1 else np.clip(h / math.log(n_genres), 0.0, 1.0)
    h[empty] = np.nan
    return h


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
        Slates processed at once; working memory is ``2 * chunk_size * d`` float64 whatever
        ``n``, plus one float64 copy of the unit-normalised embeddings (``n_items * d``).

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
    \\sum_k \\lVert e_k \\rVert^2) / 2`, so a chunk costs :math:`O(K d)` per slate.

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

    norms = np.sqrt(np.einsum("ij,ij->i", v, v, dtype=np.float64))
    nonzero = norms > 0
    inv_norm = np.where(nonzero, 1.0 / np.where(nonzero, norms, 1.0), 0.0)
    unit = v * inv_norm[:, None]  # float64 unit vectors (zero rows stay zero)
    n_pairs = k * (k - 1) / 2
    out = np.empty(ids.shape[0], dtype=np.float64)
    s = np.empty((min(chunk, ids.shape[0]), v.shape[1]), dtype=np.float64)
    gathered = np.empty_like(s)
    for start in range(0, ids.shape[0], chunk):
        block = ids[start : start + chunk]
        rows = block.shape[0]
        s[:rows] = 0.0
        for pos in range(k):  # K positions, not users: each step is one vectorised gather
            np.take(unit, block[:, pos], axis=0, out=gathered[:rows], mode="clip")
            s[:rows] += gathered[:rows]
        m = nonzero[block].sum(axis=1)
        sum_cos = (np.einsum("ij,ij->i", s[:rows], s[:rows]) - m) / 2.0
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
    :math:`p > 0` is finite.

    References
    ----------
    .. [1] Steck, H. (2018). Calibrated recommendations. *RecSys '18*, 154-162.
    """
    pp = _distributions("p", p, allow_empty_rows=False)
    qq = _distributions("q", q, allow_empty_rows=True)
    _same_shape("p", pp, "q", qq)
    a = _fraction("alpha", alpha, low_open=True)
    q_tilde = (1.0 - a) * qq + a * pp
    pos = pp > 0
    ratio = np.where(pos, pp, 1.0) / np.where(pos, q_tilde, 1.0)
    kl = np.sum(pp * np.log(ratio), axis=1)
    kl = np.maximum(kl, 0.0)  # Gibbs' inequality; clip round-off
    kl[qq.sum(axis=1) == 0] = np.nan
    return kl


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
