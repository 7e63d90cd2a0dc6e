"""Compiled inner loops (numba) for the stages NumPy cannot express without big temporaries.

* :func:`top_k_ucb_rows` — the top ``k`` of ``mean + c·sqrt(var)`` per row, formed row by row in
  a small buffer instead of three block-sized temporaries (the bandits' optimistic indices),
  and selected by :func:`simulator.selection.select_row` (the selection of
  :func:`simulator.selection.top_k_rows`).
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

from simulator.selection import PARALLEL_MIN_ELEMENTS, select_row, sort_desc, workspace

__all__ = ["cg_rows", "get_threads", "set_threads", "top_k_ucb_rows"]


def set_threads(n: int) -> None:
    """Use ``n`` threads (clipped to [1, cores]) in the compiled kernels (calling thread)."""
    numba.set_num_threads(int(min(max(n, 1), numba.config.NUMBA_NUM_THREADS)))


def get_threads() -> int:
    """Threads the compiled kernels use when called from this thread."""
    return int(numba.get_num_threads())


# ------------------------------------------------------------------------------------ top-k
_TASK_ROWS = 8  # rows per parallel task (one set of workspaces)


def _top_k_ucb_py(mean, var, coef, k, out_idx, out_val):  # pragma: no cover - compiled
    n, m = mean.shape
    for task in prange((n + _TASK_ROWS - 1) // _TASK_ROWS):
        row = np.empty(m, dtype=np.float32)
        fw, iw = workspace(m, np.float32)
        vals = np.empty(k, dtype=np.float32)
        idx = np.empty(k, dtype=np.int64)
        for r in range(task * _TASK_ROWS, min(n, (task + 1) * _TASK_ROWS)):
            mr = mean[r]
            vr = var[r]
            for c in range(m):  # vectorised: one pass, no block-sized temporary
                row[c] = mr[c] + coef * np.sqrt(max(vr[c], np.float32(0.0)))
            select_row(row, k, fw, iw, idx, vals)
            sort_desc(vals, idx, k)
            for j in range(k):
                out_idx[r, j] = idx[j]
                out_val[r, j] = vals[j]


_top_k_ucb_parallel = njit(parallel=True, cache=True, nogil=True)(_top_k_ucb_py)
_top_k_ucb_serial = njit(cache=True, nogil=True)(_top_k_ucb_py)


def top_k_ucb_rows(mean: np.ndarray, var: np.ndarray, coef: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns of ``mean + coef·sqrt(var)`` per row, as ``selection.top_k_rows`` gives.

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
