"""Compiled per-row re-ranking of the ``mmr`` and ``calibrated`` policies (see ``rerankers``).

Per row (a session): the base's top ``C`` candidates (:func:`~simulator.selection.
select_row`), their scores min–max scaled to [0, 1], then ``K`` greedy slots over the ``C``
candidates — all in a few KB of per-row workspace, instead of ``K`` NumPy passes over
``(rows, C, d)`` / ``(rows, C, G)`` temporaries.

Ties of the objective go to the better base rank (higher score, then lower item id), as the
``argmax`` over best-first candidates did. Rows are independent (``prange`` for large
blocks), so results do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from simulator.selection import select_row, workspace

_ROWS = 16  # rows per parallel task (one workspace)

__all__ = ["calibrated_rows", "mmr_rows"]


@njit(inline="always")
def _normalise(cs, n, rel):
    """Min–max scale ``cs[:n]`` to [0, 1] in float32 (a constant row becomes 0)."""
    lo = cs[0]
    hi = cs[0]
    for c in range(1, n):
        lo = min(lo, cs[c])
        hi = max(hi, cs[c])
    span = hi - lo
    for c in range(n):
        rel[c] = (cs[c] - lo) / span if span > 0 else np.float32(0.0)


#: fastmath without "no infinities": a chosen candidate's objective is -inf (no NaN occurs)
_FAST = {"nnan", "nsz", "arcp", "contract", "afn", "reassoc"}


@njit(inline="always", fastmath=_FAST)
def _argmax(obj, cs, cand, n):
    """The best of ``obj[:n]``; ties go to the higher base score ``cs``, then the lower item id.

    One vectorised maximum, then a scan for the (rarely several) columns that reach it.
    """
    mx = obj[0]
    for c in range(1, n):
        mx = max(mx, obj[c])
    best = -1
    for c in range(n):
        if obj[c] == mx and (best < 0 or cs[c] > cs[best] or (cs[c] == cs[best] and cand[c] < cand[best])):
            best = c
    return best


def _mmr_py(scores, k, n_cand, lam, emb_t, out_items, out_scores):  # pragma: no cover - compiled
    n, m = scores.shape
    d = emb_t.shape[0]
    for grp in prange(-(-n // _ROWS)):
        # workspace, reused by the group's rows
        fw, iw = workspace(m, np.float32)
        cand = np.empty(n_cand, dtype=np.int64)
        cs = np.empty(n_cand, dtype=np.float32)
        rel = np.empty(n_cand, dtype=np.float32)
        obj = np.empty(n_cand, dtype=np.float32)
        max_sim = np.empty(n_cand, dtype=np.float32)
        taken = np.empty(n_cand, dtype=np.float32)  # 0, or -inf once chosen
        et = np.empty((d, n_cand), dtype=np.float32)  # the candidates' unit embeddings, transposed
        sim = np.empty(n_cand, dtype=np.float32)
        for r in range(grp * _ROWS, min(n, grp * _ROWS + _ROWS)):
            select_row(scores[r], n_cand, fw, iw, cand, cs)
            _normalise(cs, n_cand, rel)
            for q in range(d):  # gathers from contiguous rows of embᵀ
                for c in range(n_cand):
                    et[q, c] = emb_t[q, cand[c]]
            max_sim[:] = 0.0
            taken[:] = 0.0
            for j in range(k):
                _mmr_objective(rel, max_sim, taken, lam, np.float32(1.0) - lam, j, obj, n_cand)
                best = _argmax(obj, cs, cand, n_cand)
                taken[best] = -np.inf
                out_items[r, j] = cand[best]
                out_scores[r, j] = cs[best]
                if j + 1 < k:
                    _update_max_sim(et, best, sim, max_sim, n_cand)


@njit(inline="always", fastmath=_FAST)
def _mmr_objective(rel, max_sim, taken, lam, lam_c, j, obj, n):
    # λ·rel − (1 − λ)·max_sim in float32 (the first slot: rel alone); -inf once chosen
    if j == 0:
        for c in range(n):
            obj[c] = rel[c] + taken[c]
    else:
        for c in range(n):
            obj[c] = lam * rel[c] - lam_c * max_sim[c] + taken[c]


@njit(inline="always", fastmath=_FAST)
def _update_max_sim(et, best, sim, max_sim, n):
    # cosine of every candidate with the new pick (unit vectors), candidates innermost
    for c in range(n):
        sim[c] = 0.0
    for q in range(et.shape[0]):
        pq = et[q, best]
        for c in range(n):
            sim[c] += et[q, c] * pq
    for c in range(n):
        max_sim[c] = max(max_sim[c], sim[c])


_mmr_parallel = njit(parallel=True, cache=True, nogil=True)(_mmr_py)
_mmr_serial = njit(cache=True, nogil=True)(_mmr_py)


def mmr_rows(
    scores: np.ndarray, k: int, n_cand: int, lam: float, emb_t: np.ndarray, parallel: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """MMR slates of every row of a score block (see :class:`~simulator.policies.rerankers.MMRPolicy`).

    Parameters
    ----------
    scores : ndarray of shape (n, I), float32
        The base policy's scores.
    k, n_cand : int
        Slate size ``K`` and candidates ``C`` (``K <= C <= I``).
    lam : float
        ``λ``, the relevance weight.
    emb_t : ndarray of shape (d, I), float32
        Unit item embeddings, transposed (C-contiguous).
    parallel : bool
        Rows in parallel threads.

    Returns
    -------
    items : ndarray of shape (n, K), int32
    scores : ndarray of shape (n, K), float32
        The base scores of the items.
    """
    n = scores.shape[0]
    items = np.empty((n, k), dtype=np.int32)
    out = np.empty((n, k), dtype=np.float32)
    if n:
        (_mmr_parallel if parallel else _mmr_serial)(
            np.ascontiguousarray(scores, dtype=np.float32),
            k,
            n_cand,
            np.float32(lam),
            np.ascontiguousarray(emb_t, dtype=np.float32),
            items,
            out,
        )
    return items, out


def _calibrated_py(scores, k, n_cand, lam, a, genre, p, out_items, out_scores):  # pragma: no cover
    n, m = scores.shape
    g = p.shape[1]
    for grp in prange(-(-n // _ROWS)):
        # workspace, reused by the group's rows
        fw, iw = workspace(m, np.float32)
        cand = np.empty(n_cand, dtype=np.int64)
        cg = np.empty(n_cand, dtype=np.int64)
        cs = np.empty(n_cand, dtype=np.float32)
        rel = np.empty(n_cand, dtype=np.float32)
        obj = np.empty(n_cand, dtype=np.float64)
        taken = np.empty(n_cand, dtype=np.float64)  # 0, or -inf once chosen
        shown = np.empty(g, dtype=np.float64)
        log_base = np.empty(g, dtype=np.float64)
        kl = np.empty(g, dtype=np.float64)
        for r in range(grp * _ROWS, min(n, grp * _ROWS + _ROWS)):
            select_row(scores[r], n_cand, fw, iw, cand, cs)
            _normalise(cs, n_cand, rel)
            for c in range(n_cand):
                cg[c] = genre[cand[c]]
            taken[:] = 0.0
            shown[:] = 0.0
            pr = p[r]
            plogp = 0.0
            for h in range(g):
                if pr[h] > 0:
                    plogp += pr[h] * np.log(pr[h])
                    log_base[h] = np.log(a * pr[h])  # genres not yet shown: q̃_h = a·p_h
            for j in range(k):
                # KL(p ‖ q̃) if one item of genre h is added, for every h: q̃ then differs from
                # the slate's current smoothed mix (1 − a)·shown/(j + 1) + a·p only in genre h:
                # KL_h = Σ p log p − Σ_g p_g log q̃_g − p_h (log(q̃_h + (1 − a)/(j + 1)) − log q̃_h)
                step = (1.0 - a) / (j + 1)
                cross = 0.0
                for h in range(g):
                    if pr[h] > 0:
                        if shown[h] > 0:
                            log_base[h] = np.log(step * shown[h] + a * pr[h])
                        cross += pr[h] * log_base[h]
                for h in range(g):
                    kl[h] = plogp - cross
                    if pr[h] > 0:
                        kl[h] -= pr[h] * (np.log(step * shown[h] + a * pr[h] + step) - log_base[h])
                _calibrated_objective(rel, kl, cg, taken, lam, obj, n_cand)
                best = _argmax(obj, cs, cand, n_cand)
                taken[best] = -np.inf
                out_items[r, j] = cand[best]
                out_scores[r, j] = cs[best]
                shown[cg[best]] += 1.0


@njit(inline="always", fastmath=_FAST)
def _calibrated_objective(rel, kl, cg, taken, lam, obj, n):
    # (1 − λ)·rel − λ·KL of the candidate's genre, float64; -inf once chosen
    for c in range(n):
        obj[c] = (1.0 - lam) * np.float64(rel[c]) - lam * kl[cg[c]] + taken[c]


_calibrated_parallel = njit(parallel=True, cache=True, nogil=True)(_calibrated_py)
_calibrated_serial = njit(cache=True, nogil=True)(_calibrated_py)


def calibrated_rows(
    scores: np.ndarray,
    k: int,
    n_cand: int,
    lam: float,
    smoothing: float,
    genre: np.ndarray,
    p: np.ndarray,
    parallel: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated slates of every row (see :class:`~simulator.policies.rerankers.CalibratedPolicy`).

    Parameters
    ----------
    scores : ndarray of shape (n, I), float32
        The base policy's scores.
    k, n_cand : int
        Slate size ``K`` and candidates ``C`` (``K <= C <= I``).
    lam, smoothing : float
        ``λ`` (calibration weight) and ``a``.
    genre : ndarray of shape (I,), int
    p : ndarray of shape (n, G), float64
        Each row's target genre distribution ``p_u``.
    parallel : bool
        Rows in parallel threads.

    Returns
    -------
    items : ndarray of shape (n, K), int32
    scores : ndarray of shape (n, K), float32
        The base scores of the items.
    """
    n = scores.shape[0]
    items = np.empty((n, k), dtype=np.int32)
    out = np.empty((n, k), dtype=np.float32)
    if n:
        (_calibrated_parallel if parallel else _calibrated_serial)(
            np.ascontiguousarray(scores, dtype=np.float32),
            k,
            n_cand,
            float(lam),
            float(smoothing),
            np.ascontiguousarray(genre, dtype=np.int64),
            np.ascontiguousarray(p, dtype=np.float64),
            items,
            out,
        )
    return items, out
