"""Compiled Monte-Carlo rank counts of linear Thompson sampling (see ``LinearThompsonPolicy``).

For each row (a session) and each of its ``M`` extra posterior draws ``θ = m + sd ⊙ ε``, the
kernel scores the row's candidate items, ``x_c·θ = x_c·m + Σ_d (x_cd sd_d) ε_d``, and counts, for
every shown item, how many candidates score above it: the shown item sits at position ``j`` of
that draw's slate iff exactly ``j`` do, and is in the slate iff fewer than ``K`` do. Per row this
is a ``(M × D)·(D × C)`` product and ``K·C`` comparisons per draw, done in cache, instead of
``(rows, M, C)`` NumPy temporaries and ``K`` passes over them.

The normals ``ε`` come from the caller's NumPy Generator; rows are independent (``prange`` for
large blocks), so counts do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from simulator.kernels import PARALLEL_MIN_ELEMENTS

__all__ = ["rank_counts"]


def _rank_counts_py(feat, mean_u, sd_w, cand, masked, items, eps, at_pos, anywhere):  # pragma: no cover
    n, n_c = cand.shape
    k = items.shape[1]
    n_first = n_c - k
    m_s = eps.shape[1]
    d = feat.shape[1]
    for r in prange(n):
        xs = np.empty((d, n_c), dtype=np.float32)  # x_cd · sd_d, candidates innermost
        base = np.zeros(n_c, dtype=np.float32)  # x_c · m
        pos = np.empty(k, dtype=np.int64)  # where each shown item's score is read
        s = np.empty(n_c, dtype=np.float32)
        for c in range(n_c):
            x = feat[cand[r, c]]
            acc = np.float32(0.0)
            for q in range(d):
                xs[q, c] = x[q] * sd_w[r, q]
                acc += x[q] * mean_u[r, q]
            base[c] = acc
        for j in range(k):
            pos[j] = n_first + j
            if masked[r, j]:
                for c in range(n_first):  # its first copy among the first candidates
                    if cand[r, c] == items[r, j]:
                        pos[j] = c
                        break
        sm = np.dot(eps[r], xs)  # (M, C + K): the draws' deviations from x_c · m
        for mm in range(m_s):
            for c in range(n_c):
                s[c] = base[c] + sm[mm, c]
            for j in range(k):
                if masked[r, j]:  # the appended copy never counts
                    s[n_first + j] = -np.inf
            for j in range(k):
                own = s[pos[j]]
                above = 0
                for c in range(n_c):
                    above += 1 if s[c] > own else 0
                if above == j:
                    at_pos[r, j] += 1
                if above < k:
                    anywhere[r, j] += 1


_counts_parallel = njit(parallel=True, cache=True, nogil=True)(_rank_counts_py)
_counts_serial = njit(cache=True, nogil=True)(_rank_counts_py)


def rank_counts(
    feat: np.ndarray,
    mean_u: np.ndarray,
    sd_w: np.ndarray,
    cand: np.ndarray,
    masked: np.ndarray,
    items: np.ndarray,
    eps: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per shown item, the number of draws with it at its position and anywhere in the slate.

    Parameters
    ----------
    feat : ndarray of shape (I, D), float32
        Item features.
    mean_u, sd_w : ndarray of shape (n, D), float32
        Each row's posterior mean and the sd of its draws.
    cand : ndarray of shape (n, C + K), int
        Candidate items: ``C`` of them, then the ``K`` shown items.
    masked : ndarray of shape (n, K), bool
        Shown items already among the first ``C``: their appended copy is ignored and their
        score is read at the first copy.
    items : ndarray of shape (n, K), int
        The shown items.
    eps : ndarray of shape (n, M, D), float32
        Standard normals of the ``M`` draws per row.

    Returns
    -------
    at_pos, anywhere : ndarray of shape (n, K), int64
    """
    n, k = items.shape
    at_pos = np.zeros((n, k), dtype=np.int64)
    anywhere = np.zeros((n, k), dtype=np.int64)
    if n:
        work = n * eps.shape[1] * cand.shape[1] * max(k, feat.shape[1])
        kernel = _counts_parallel if work >= PARALLEL_MIN_ELEMENTS * 64 else _counts_serial
        kernel(
            np.ascontiguousarray(feat, dtype=np.float32),
            np.ascontiguousarray(mean_u, dtype=np.float32),
            np.ascontiguousarray(sd_w, dtype=np.float32),
            np.ascontiguousarray(cand, dtype=np.int64),
            np.ascontiguousarray(masked, dtype=np.bool_),
            np.ascontiguousarray(items, dtype=np.int64),
            np.ascontiguousarray(eps, dtype=np.float32),
            at_pos,
            anywhere,
        )
    return at_pos, anywhere
