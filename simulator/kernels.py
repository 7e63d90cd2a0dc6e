"""Compiled inner loops (numba) for the two stages NumPy cannot express without big temporaries.

* :func:`top_k_rows` — the top-``k`` columns of every row of a score block. NumPy needs an
  ``argpartition`` over the whole block (a full copy plus a selection per row). The kernel makes
  two passes per row: vectorised maxima of 64-column blocks give a threshold no larger than the
  row's ``k``-th score, then only the ~``k`` blocks that reach it are scanned into a ``k``-heap.
  Selecting costs ~0.5 ns per score on a cache-resident block, a fraction of the GEMM.
* :func:`top_k_ucb_rows` — the same selection on ``mean + c·sqrt(var)``, formed row by row in
  a small buffer instead of three block-sized temporaries (the bandits' optimistic indices).
* :func:`cg_rows` — a few conjugate-gradient steps on every row's ALS normal equations. NumPy
  has to materialise ``nnz × k`` gathered factor rows several times per step; the kernel works
  row by row on the row's own nonzeros, so memory stays O(n·k) and the rows stay in cache.

Both loops are over independent rows (``prange``), so the result does not depend on the
number of threads: a run is bit-identical with 1 or 2 threads. Thread count follows
:func:`set_threads` (the runner sets it with the BLAS limit; default: numba's, i.e. all cores).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

__all__ = ["cg_rows", "get_threads", "prepare_rows", "set_threads", "top_k_rows", "top_k_ucb_rows"]


def set_threads(n: int) -> None:
    """Use ``n`` threads (clipped to [1, cores]) in the compiled kernels (calling thread)."""
    numba.set_num_threads(int(min(max(n, 1), numba.config.NUMBA_NUM_THREADS)))


def get_threads() -> int:
    """Threads the compiled kernels use when called from this thread."""
    return int(numba.get_num_threads())


# ------------------------------------------------------------------------------------ top-k
@njit(inline="always")
def _weaker(hv, hi, a, b):
    # (value, column) a is weaker than b: smaller value, or equal value and later column
    return hv[a] < hv[b] or (hv[a] == hv[b] and hi[a] > hi[b])


@njit(inline="always")
def _sift_down(hv, hi, pos, k):
    # restore the min-heap (weakest at the root) below ``pos``
    while True:
        left = 2 * pos + 1
        if left >= k:
            return
        child = left
        if left + 1 < k and _weaker(hv, hi, left + 1, left):
            child = left + 1
        if _weaker(hv, hi, child, pos):
            hv[pos], hv[child] = hv[child], hv[pos]
            hi[pos], hi[child] = hi[child], hi[pos]
            pos = child
        else:
            return


_BLOCK = 64


@njit(inline="always")
def _sift_value(hv, pos, k):
    # min-heap on values only (the block maxima)
    while True:
        left = 2 * pos + 1
        if left >= k:
            return
        child = left
        if left + 1 < k and hv[left + 1] < hv[left]:
            child = left + 1
        if hv[child] < hv[pos]:
            hv[pos], hv[child] = hv[child], hv[pos]
            pos = child
        else:
            return


@njit(inline="always")
def _offer(hv, hi, cnt, x, c, k):
    # offer (x, column c) to a heap holding ``cnt`` entries; columns arrive in any order
    if cnt < k:
        hv[cnt] = x
        hi[cnt] = c
        cnt += 1
        if cnt == k:
            for pos in range(k // 2 - 1, -1, -1):
                _sift_down(hv, hi, pos, k)
    elif x > hv[0] or (x == hv[0] and c < hi[0]):
        hv[0] = x
        hi[0] = c
        _sift_down(hv, hi, 0, k)
    return cnt


def _top_k_py(scores, k, out_idx, out_val):  # pragma: no cover - compiled
    n, m = scores.shape
    n_blocks = m // _BLOCK
    for r in prange(n):
        row = scores[r]
        hv = np.empty(k, dtype=scores.dtype)
        hi = np.empty(k, dtype=np.int64)
        cnt = 0
        if n_blocks >= k:
            # Pass 1: the maximum of every full block of _BLOCK columns (a fixed-length loop LLVM
            # vectorises). The k largest block maxima are k distinct scores, so the smallest of
            # them, t, is at most the k-th largest score: every top-k score is >= t.
            bmax = np.empty(n_blocks, dtype=scores.dtype)
            for b in range(n_blocks):
                base = b * _BLOCK
                mx = row[base]
                for j in range(1, _BLOCK):
                    mx = max(mx, row[base + j])
                bmax[b] = mx
            for j in range(k):
                hv[j] = bmax[j]
            for pos in range(k // 2 - 1, -1, -1):
                _sift_value(hv, pos, k)
            for b in range(k, n_blocks):
                if bmax[b] > hv[0]:
                    hv[0] = bmax[b]
                    _sift_value(hv, 0, k)
            t = hv[0]
            # Pass 2: only blocks whose maximum reaches t (about k of them) are scanned, in
            # column order, so once the heap is full a score equal to its root is weaker.
            for b in range(n_blocks):
                if bmax[b] < t or (cnt == k and bmax[b] <= hv[0]):
                    continue
                for c in range(b * _BLOCK, (b + 1) * _BLOCK):
                    x = row[c]
                    if x >= t and (cnt < k or x > hv[0]):
                        cnt = _offer(hv, hi, cnt, x, c, k)
            for c in range(n_blocks * _BLOCK, m):
                cnt = _offer(hv, hi, cnt, row[c], c, k)
        else:
            for c in range(m):
                cnt = _offer(hv, hi, cnt, row[c], c, k)
        # heap-sort ascending by weakness, written best-first
        for end in range(k - 1, -1, -1):
            out_val[r, end] = hv[0]
            out_idx[r, end] = hi[0]
            hv[0] = hv[end]
            hi[0] = hi[end]
            _sift_down(hv, hi, 0, end)


# A thread launch costs more than a small block (a one-row bandit index): serial below this size.
PARALLEL_MIN_ELEMENTS = 1 << 18
_top_k_parallel = njit(parallel=True, cache=True, nogil=True)(_top_k_py)
_top_k_serial = njit(cache=True, nogil=True)(_top_k_py)


def top_k_rows(scores: np.ndarray, k: int, parallel: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns of each row, sorted by descending score; ties: lower column first.

    Parameters
    ----------
    scores : ndarray of shape (n, m), float32 or float64 (other dtypes are cast to float64)
        NaN must not occur (a NaN score is never selected unless it is among the first ``k``
        columns, where its order is undefined).
    k : int, 1 <= k <= m
    parallel : bool, optional
        Rows in parallel threads; default: when the block has at least
        ``PARALLEL_MIN_ELEMENTS`` scores. ``False`` for callers that are already one of
        several threads.

    Returns
    -------
    idx : ndarray of shape (n, k), int32
    vals : ndarray of shape (n, k), same dtype as the (float) ``scores``

    Raises
    ------
    ValueError
        If ``scores`` is not 2-D or ``k`` is outside [1, m].
    """
    scores, idx, vals = prepare_rows(scores, k)
    if scores.shape[0]:
        if parallel is None:
            parallel = scores.size >= PARALLEL_MIN_ELEMENTS
        (_top_k_parallel if parallel else _top_k_serial)(scores, k, idx, vals)
    return idx, vals


def prepare_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a per-row top-``k`` request; return the contiguous float scores and empty outputs.

    Returns ``(scores, idx, vals)``: ``scores`` (n, m) C-contiguous float32/float64 (other
    dtypes cast to float64), ``idx`` (n, k) int32, ``vals`` (n, k) of the scores' dtype.

    Raises
    ------
    ValueError
        If ``scores`` is not 2-D or ``k`` is outside [1, m].
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D; got shape {scores.shape}")
    n, m = scores.shape
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, {m}]; got {k}")
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    scores = np.ascontiguousarray(scores)
    return scores, np.empty((n, k), dtype=np.int32), np.empty((n, k), dtype=scores.dtype)


def _top_k_ucb_py(mean, var, coef, k, out_idx, out_val):  # pragma: no cover - compiled
    n, m = mean.shape
    for r in prange(n):
        row = np.empty(m, dtype=np.float32)
        mr = mean[r]
        vr = var[r]
        for c in range(m):  # vectorised: one pass, no block-sized temporary
            row[c] = mr[c] + coef * np.sqrt(max(vr[c], np.float32(0.0)))
        hv = np.empty(k, dtype=np.float32)
        hi = np.empty(k, dtype=np.int64)
        for j in range(k):
            hv[j] = row[j]
            hi[j] = j
        for pos in range(k // 2 - 1, -1, -1):
            _sift_down(hv, hi, pos, k)
        for c in range(k, m):
            v = row[c]
            if v > hv[0]:
                hv[0] = v
                hi[0] = c
                _sift_down(hv, hi, 0, k)
        for end in range(k - 1, -1, -1):
            out_val[r, end] = hv[0]
            out_idx[r, end] = hi[0]
            hv[0] = hv[end]
            hi[0] = hi[end]
            _sift_down(hv, hi, 0, end)


_top_k_ucb_parallel = njit(parallel=True, cache=True, nogil=True)(_top_k_ucb_py)
_top_k_ucb_serial = njit(cache=True, nogil=True)(_top_k_ucb_py)


def top_k_ucb_rows(mean: np.ndarray, var: np.ndarray, coef: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns of ``mean + coef·sqrt(var)`` per row, as :func:`top_k_rows` would give.

    The index is formed in float32, row by row (``mean[r, c] + float32(coef)·sqrt(var[r, c])``),
    and never as a block.

    Parameters
    ----------
    mean, var : ndarray of shape (n, m), float32 (other dtypes are cast)
        ``var ≥ 0`` (a negative entry counts as 0).
    coef : float
    k : int, 1 <= k <= m

    Returns
    -------
    idx : ndarray of shape (n, k), int32
        Sorted by descending index; ties: lower column first.
    vals : ndarray of shape (n, k), float32
        The index values.

    Raises
    ------
    ValueError
        If the arrays are not 2-D of one shape or ``k`` is outside [1, m].
    """
    if mean.ndim != 2 or mean.shape != var.shape:
        raise ValueError(f"mean and var must be 2-D of one shape; got {mean.shape} and {var.shape}")
    n, m = mean.shape
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, {m}]; got {k}")
    mean = np.ascontiguousarray(mean, dtype=np.float32)
    var = np.ascontiguousarray(var, dtype=np.float32)
    idx = np.empty((n, k), dtype=np.int32)
    vals = np.empty((n, k), dtype=np.float32)
    if n:
        kernel = _top_k_ucb_parallel if mean.size >= PARALLEL_MIN_ELEMENTS else _top_k_ucb_serial
        kernel(mean, var, np.float32(coef), k, idx, vals)
    return idx, vals


# ------------------------------------------------------------------------------------ ALS CG
@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _cg_kernel(indptr, indices, c1, cp, plus_one, y, x0, gram, steps, out):  # pragma: no cover
    n, k = x0.shape
    for u in prange(n):
        lo, hi = indptr[u], indptr[u + 1]
        x = x0[u].copy()
        r = np.zeros(k, dtype=np.float32)
        ap = np.empty(k, dtype=np.float32)
        for t in range(lo, hi):
            w = c1[t] + np.float32(1.0) if plus_one else cp[t]
            yi = y[indices[t]]
            for j in range(k):
                r[j] += w * yi[j]
        _apply(gram, indices, c1, y, x, lo, hi, ap)
        for j in range(k):
            r[j] -= ap[j]
        p = r.copy()
        rs_old = _dot(r, r)
        for _ in range(steps):
            _apply(gram, indices, c1, y, p, lo, hi, ap)
            denom = _dot(p, ap)
            step = np.float32(rs_old / denom) if denom > 1e-20 else np.float32(0.0)
            for j in range(k):
                x[j] += step * p[j]
                r[j] -= step * ap[j]
            rs_new = _dot(r, r)
            beta = np.float32(rs_new / rs_old) if rs_old > 1e-20 else np.float32(0.0)
            for j in range(k):
                p[j] = r[j] + beta * p[j]
            rs_old = rs_new
        out[u] = x


@njit(inline="always", fastmath=True)
def _dot(a, b):
    acc = np.float32(0.0)
    for j in range(a.size):
        acc += a[j] * b[j]
    return acc


@njit(inline="always", fastmath=True)
def _apply(gram, indices, c1, y, v, lo, hi, out):
    # out = (G + Σ_i c1_i y_i y_iᵀ) v over the row's nonzeros
    k = v.size
    for a in range(k):
        out[a] = _dot(gram[a], v)
    for t in range(lo, hi):
        yi = y[indices[t]]
        d = _dot(yi, v) * c1[t]
        for j in range(k):
            out[j] += d * yi[j]


def cg_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    c1: np.ndarray,
    cp: np.ndarray | None,
    y: np.ndarray,
    x0: np.ndarray,
    gram: np.ndarray,
    steps: int,
) -> np.ndarray:
    """``steps`` CG iterations on ``(G + Yᵀ diag(c1_u) Y) x_u = Yᵀ cp_u`` for every row ``u``.

    The weighted-ALS half-step of Hu, Koren & Volinsky (2008, Eq. 4) with the conjugate-gradient
    solver of Takács, Pilászy & Tikk (2011), warm-started at ``x0``; ``G = c0·YᵀY + λI``.

    Parameters
    ----------
    indptr, indices : ndarray
        CSR structure of the (n, n_cols) confidence matrix.
    c1 : ndarray of shape (nnz,), float32
        ``c_ui − c0`` on the structure.
    cp : ndarray of shape (nnz,), float32, or None
        ``c_ui · p_ui`` on the structure; None means ``p = 1`` and ``c0 = 1`` (``cp = c1 + 1``).
    y : ndarray of shape (n_cols, k), float32
        The fixed factors of the other side.
    x0 : ndarray of shape (n, k), float32
        Warm start.
    gram : ndarray of shape (k, k), float (used as float32, like the factors)
    steps : int

    Returns
    -------
    ndarray of shape (n, k), float32
    """
    out = np.empty(x0.shape, dtype=np.float32)
    plus_one = cp is None
    cp_arr = c1 if cp is None else cp
    _cg_kernel(
        indptr.astype(np.int64, copy=False),
        indices.astype(np.int32, copy=False),
        c1.astype(np.float32, copy=False),
        cp_arr.astype(np.float32, copy=False),
        plus_one,
        np.ascontiguousarray(y, dtype=np.float32),
        np.ascontiguousarray(x0, dtype=np.float32),
        np.ascontiguousarray(gram, dtype=np.float32),
        int(steps),
        out,
    )
    return out
