"""Compiled rows of linear Thompson sampling: slate, candidates and Monte-Carlo rank counts.

For each row (a session) of a block, :func:`lints_rows` takes the block's three score rows —
the sampled ``x_i·θ̃`` (the slate), the posterior mean ``x_i·m`` and variance
``Σ_d x_id² / q_d`` (the candidates) — while they are in cache, and

1. selects the slate, the top ``K`` of the sampled scores;
2. selects the ``C`` candidates, the top ``C`` of ``mean + c·sqrt(var)`` formed into a
   one-row buffer (:func:`~simulator.selection.select_row`), and joins the shown items;
3. for each of the ``M`` extra posterior draws ``θ = m + sd ⊙ ε``, scores the candidates,
   ``x_c·θ = x_c·m + Σ_d (x_cd sd_d) ε_d`` — one ``(C' × E)·(E × M)`` product over the
   embedding columns per row, plus one M-vector per genre for the one-hot and constant
   columns — and counts, for every shown item, how many candidates score above it: the shown
   item sits at position ``j`` of that draw's slate iff exactly ``j`` do, and is in the slate
   iff fewer than ``K`` do (a candidate below every shown item in every draw is skipped).

The ``M·D`` normals ``ε`` of a row are generated in the kernel (:func:`fill_normals`: the
ziggurat method on a SplitMix64 stream seeded per row from the caller's NumPy Generator) —
NumPy's float32 normals cost ~10 ns each here, ~5x these, and more than the rest of the
row's Monte-Carlo step.
Rows are independent (``prange`` for large blocks), so results do not depend on the number of
threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from simulator.selection import PARALLEL_MIN_ELEMENTS, select_row, sort_desc, workspace

__all__ = ["fill_normals", "lints_rows", "rank_counts", "session_grams", "spd_solve", "ucb_rows"]

_ROWS = 16  # rows per parallel task (one workspace)


# ------------------------------------------------------------------------------------ normals
def _ziggurat_tables(n=256, r=3.6541528853610088, v=4.92867323399e-3, bits=23):
    """Layer tables of the ziggurat for |N(0, 1)| (Marsaglia & Tsang 2000, "The ziggurat method
    for generating random variables", J. Stat. Softw. 5(8), Sec. 2 and its C code ``zigset``),
    for ``n`` layers of area ``v`` with base strip edge ``r`` and ``bits``-bit magnitudes
    (NumPy's float32 layout: 8 bits of layer, 1 of sign, 23 of magnitude).

    Returns ``(k, w, f)``: layer ``i`` accepts a magnitude ``j < k[i]`` at once as ``j·w[i]``;
    ``f[i] = exp(−x_i²/2)`` at its edge.
    """
    m = float(2**bits)
    dn = tn = r
    q = v / np.exp(-0.5 * dn * dn)
    k = np.zeros(n, dtype=np.int32)
    w = np.zeros(n)
    f = np.zeros(n)
    k[0], k[1] = int(dn / q * m), 0
    w[0], w[n - 1] = q / m, dn / m
    f[0], f[n - 1] = 1.0, np.exp(-0.5 * dn * dn)
    for i in range(n - 2, 0, -1):
        dn = np.sqrt(-2.0 * np.log(v / dn + np.exp(-0.5 * dn * dn)))
        k[i + 1] = int(dn / tn * m)
        tn = dn
        f[i] = np.exp(-0.5 * dn * dn)
        w[i] = dn / m
    return k, w.astype(np.float32), f.astype(np.float32)


_ZK, _ZW, _ZF = _ziggurat_tables()
_ZR = np.float32(3.6541528853610088)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31, _S32, _S40 = (np.uint64(b) for b in (27, 30, 31, 32, 40))
_LOW32 = np.uint64(0xFFFFFFFF)


@njit(inline="always")
def _mix(z):
    """SplitMix64's output function (Steele, Lea & Flood 2014, "Fast splittable pseudorandom
    number generators", OOPSLA): a 64-bit bijective hash of the stream's counter."""
    z = (z ^ (z >> _S30)) * _C1
    z = (z ^ (z >> _S27)) * _C2
    return z ^ (z >> _S31)


@njit(inline="always")
def _uniform(state):
    """A float32 uniform on [0, 1) (24 bits) and the advanced stream state."""
    state += _GAMMA
    return np.float32(np.int32(_mix(state) >> _S40)) * np.float32(2.0**-24), state


@njit(nogil=True, cache=True)
def _ziggurat_slow(b, state):  # pragma: no cover - compiled
    """The ziggurat's rare branch for the word ``b`` (int32), drawing from ``state`` as needed."""
    while True:
        idx = b & 0xFF
        rabs = (b >> 9) & 0x7FFFFF
        neg = (b >> 8) & 1
        x = np.float32(rabs) * _ZW[idx]
        if rabs < _ZK[idx]:
            return (-x if neg else x), state
        if idx == 0:  # the tail beyond r (Marsaglia 1964)
            while True:
                u1, state = _uniform(state)
                u2, state = _uniform(state)
                xx = -np.log(np.float32(1.0) - u1) / _ZR
                yy = -np.log(np.float32(1.0) - u2)
                if yy + yy > xx * xx:
                    return (-(_ZR + xx) if neg else _ZR + xx), state
        u, state = _uniform(state)
        if _ZF[idx] + u * (_ZF[idx - 1] - _ZF[idx]) < np.exp(np.float32(-0.5) * x * x):
            return (-x if neg else x), state
        state += _GAMMA
        b = np.int32(_mix(state) & _LOW32)


@njit(nogil=True, cache=True)
def fill_normals(seed, out, words):  # pragma: no cover - compiled
    """Fill ``out`` (1-D float32) with standard normals from the stream seeded by ``seed``.

    The ziggurat method (Marsaglia & Tsang 2000) with NumPy's float32 layout — 256 layers, one
    32-bit word per attempt — on a SplitMix64 stream (Steele, Lea & Flood 2014): the words of
    all attempts first (two per 64-bit output), then the fast path for every one (~99% accept
    at once; no branch), then the rare rejections in order from the same stream. ``words``
    (int32, ≥ ``out.size`` + 1) is a workspace.
    """
    state = np.uint64(seed)
    n = out.size
    for i in range(0, n, 2):
        state += _GAMMA
        z = _mix(state)
        words[i] = np.int32(z >> _S32)
        words[i + 1] = np.int32(z & _LOW32)
    n_slow = 0
    for i in range(n):
        b = words[i]
        idx = b & 0xFF
        rabs = (b >> 9) & 0x7FFFFF
        x = np.float32(rabs) * _ZW[idx]
        out[i] = -x if (b >> 8) & 1 else x
        n_slow += 1 if rabs >= _ZK[idx] else 0
    if n_slow:
        for i in range(n):
            b = words[i]
            if ((b >> 9) & 0x7FFFFF) >= _ZK[b & 0xFF]:
                out[i], state = _ziggurat_slow(b, state)


@njit(nogil=True, cache=True)
def _candidate_side(feat, lo, hi, sd_r, cand, n_u, xs):  # pragma: no cover - compiled
    """``xs[c] = x_c ⊙ sd`` over the dense columns ``[lo, hi)`` (rows from ``n_u`` on zeroed)."""
    for c in range(n_u):
        x = feat[cand[c]]
        for q in range(lo, hi):
            xs[c, q - lo] = x[q] * sd_r[q]
    xs[n_u:] = 0.0


@njit(nogil=True, cache=True)
def _genre_table(eps_t, lo, hi, sd_r, table):  # pragma: no cover - compiled
    """``table[g] = sd_g ε_g + Σ_{q ≥ hi} sd_q ε_q``: the draws' deviation of a genre-``g`` item
    from its one-hot and constant columns (``lo`` one-hot columns, ``[hi, D)`` constant)."""
    d, m_s = eps_t.shape
    for g in range(lo):
        for mm in range(m_s):
            table[g, mm] = sd_r[g] * eps_t[g, mm]
        for q in range(hi, d):
            for mm in range(m_s):
                table[g, mm] += sd_r[q] * eps_t[q, mm]


@njit(nogil=True, cache=True)
def _count(
    sm, base, use_table, table, genre, cand, n_u, pos, lo_m, above, at_pos, anywhere
):  # pragma: no cover
    """Add ``base`` (and, with ``use_table``, the genre table) to the deviations ``sm[:n_u]`` and
    count, per shown item ``j`` (at ``pos[j]``) and draw, the candidates above it.

    A candidate below every shown item in every draw (``lo_m``: per draw, the lowest shown
    score) adds to no count and is skipped. Draws are innermost, so the loops vectorise.
    """
    m_s = sm.shape[1]
    k = pos.size
    for c in range(n_u):
        row = sm[c]
        b = base[c]
        if use_table:
            t = table[genre[cand[c]]]
            for mm in range(m_s):
                row[mm] += t[mm] + b
        else:
            for mm in range(m_s):
                row[mm] += b
    lo_m[:] = np.inf
    for j in range(k):
        own = sm[pos[j]]
        for mm in range(m_s):
            lo_m[mm] = min(lo_m[mm], own[mm])
    for j in range(k):
        above[j] = 0
    for c in range(n_u):
        sc = sm[c]
        hit = False
        for mm in range(m_s):
            hit |= sc[mm] > lo_m[mm]
        if not hit:
            continue
        for j in range(k):
            own = sm[pos[j]]
            ab = above[j]
            for mm in range(m_s):
                ab[mm] += np.int32(1) if sc[mm] > own[mm] else np.int32(0)
    for j in range(k):
        ab = above[j]
        for mm in range(m_s):
            at_pos[j] += 1 if ab[mm] == j else 0
            anywhere[j] += 1 if ab[mm] < k else 0


@njit(inline="always")
def _add_segments(row, off, seg, out):
    """``out[c] = row[c] + off[s]`` for the columns ``c`` of segment ``s`` (``seg``: boundaries)."""
    for s in range(seg.size - 1):
        a = off[s]
        r = row[seg[s] : seg[s + 1]]  # 0-based views: the loop vectorises
        o = out[seg[s] : seg[s + 1]]
        for c in range(r.size):
            o[c] = r[c] + a


@njit(inline="always")
def _index_row(mr, vr, off_m, off_v, seg, coef, out):
    """``out = (mean + off_m) + coef·sqrt(max(var + off_v, 0))`` by segments, in float32."""
    zero = np.float32(0.0)
    for s in range(seg.size - 1):
        a = off_m[s]
        b = off_v[s]
        m = mr[seg[s] : seg[s + 1]]  # 0-based views: the loop vectorises
        v = vr[seg[s] : seg[s + 1]]
        o = out[seg[s] : seg[s + 1]]
        for c in range(m.size):
            o[c] = (m[c] + a) + coef * np.sqrt(max(v[c] + b, zero))


@njit(nogil=True, cache=True)
def _join(cand, n_cand, items_r, pos):  # pragma: no cover - compiled
    """Append the shown items missing from ``cand[:n_cand]`` (ascending); ``pos[j]``: item ``j``'s column."""
    n_u = n_cand
    for j in range(items_r.size):
        it = items_r[j]
        at = np.searchsorted(cand[:n_cand], it)
        if at < n_cand and cand[at] == it:
            pos[j] = at
        else:
            cand[n_u] = it
            pos[j] = n_u
            n_u += 1
    return n_u


def _lints_py(  # pragma: no cover - compiled
    sampled,
    mean,
    var,
    off_s,
    off_m,
    off_v,
    seg,
    coef,
    n_cand,
    rows,
    genre,
    col_lo,
    col_hi,
    sd_w,
    m_s,
    seeds,
    items,
    scores,
    at_pos,
    anywhere,
):
    n, m = sampled.shape
    k = items.shape[1]
    d = sd_w.shape[1]
    w = n_cand + k
    use_table = col_lo > 0 or col_hi < d
    for grp in prange(-(-n // _ROWS)):
        # workspace, reused by the group's rows
        fw, iw = workspace(m, np.float32)
        buf = np.empty(m, dtype=np.float32)
        hv = np.empty(k, dtype=np.float32)
        hi = np.empty(k, dtype=np.int64)
        cand = np.empty(w, dtype=np.int64)
        cval = np.empty(n_cand, dtype=np.float32)
        pos = np.empty(k, dtype=np.int64)
        base = np.empty(w, dtype=np.float32)
        xs = np.empty((w, col_hi - col_lo), dtype=np.float32)
        eps_t = np.empty((d, m_s), dtype=np.float32)
        words = np.empty(d * m_s + 1, dtype=np.int32)
        sm = np.empty((w, m_s), dtype=np.float32)
        table = np.empty((max(col_lo, 1), m_s), dtype=np.float32)
        lo_m = np.empty(m_s, dtype=np.float32)
        above = np.empty((k, m_s), dtype=np.int32)
        for r in range(grp * _ROWS, min(n, grp * _ROWS + _ROWS)):
            # the slate: top K of the sampled scores, best first
            _add_segments(sampled[r], off_s[r], seg, buf)
            select_row(buf, k, fw, iw, hi, hv)
            sort_desc(hv, hi, k)
            for j in range(k):
                items[r, j] = hi[j]
                scores[r, j] = hv[j]
            # the candidates: top C of mean + c·sqrt(var), in column order, then the shown items
            _index_row(mean[r], var[r], off_m[r], off_v[r], seg, coef, buf)
            select_row(buf, n_cand, fw, iw, cand, cval)
            n_u = _join(cand, n_cand, hi, pos)
            mr = mean[r]
            om = off_m[r]
            for c in range(n_u):  # x_c·m: the mean scores' row plus its segment's offset
                base[c] = mr[cand[c]] + om[np.searchsorted(seg, cand[c], "right") - 1]
            sr = sd_w[r, col_lo:col_hi]
            for c in range(n_u):  # the candidates' dense features ⊙ sd
                x = rows[cand[c]]
                for q in range(x.size):
                    xs[c, q] = x[q] * sr[q]
            xs[n_u:] = 0.0
            # the M draws: the row's own normals; deviations over the dense columns by one
            # (W × E)·(E × M) product, the one-hot and constant columns' by a genre table
            fill_normals(seeds[r], eps_t.reshape(d * m_s), words)
            np.dot(xs, eps_t[col_lo:col_hi], sm)
            if use_table:
                _genre_table(eps_t, col_lo, col_hi, sd_w[r], table)
            _count(sm, base, use_table, table, genre, cand, n_u, pos, lo_m, above, at_pos[r], anywhere[r])


_lints_parallel = njit(parallel=True, cache=True, nogil=True)(_lints_py)
_lints_serial = njit(cache=True, nogil=True)(_lints_py)


def lints_rows(
    sampled: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    offsets: tuple[np.ndarray, np.ndarray, np.ndarray],
    segments: np.ndarray,
    coef: float,
    k: int,
    n_cand: int,
    side: tuple[np.ndarray, int, int, np.ndarray | None],
    sd_w: np.ndarray,
    m_s: int,
    seeds: np.ndarray,
    parallel: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slates and Monte-Carlo rank counts of linear Thompson sampling for a block of rows.

    Scores are ``x_i·a = e_i·a_E + o(a)`` for a user-side vector ``a``: a GEMM over the dense
    feature columns ``E`` plus a constant per row and segment of items (the one-hot and constant
    columns; see :class:`~simulator.policies.bandits.ItemSide`).

    Parameters
    ----------
    sampled, mean, var : ndarray of shape (n, I), float32
        The dense parts (GEMM outputs) of ``x_i·θ̃`` for each row's drawn parameter, of
        ``x_i·m`` and of ``Σ_d x_id²/q_d``.
    offsets : tuple of three ndarrays of shape (n, S), float32
        Their constant parts per segment of items.
    segments : ndarray of shape (S + 1,), int64
        Segment boundaries, ``0 = segments[0] < … < segments[S] = I``.
    coef : float
        ``c`` of the candidate index ``mean + c·sqrt(var)``.
    k, n_cand : int
        Slate size ``K`` and candidates ``C`` (``K <= C <= I``).
    side : tuple ``(rows, lo, hi, genre)``
        The dense features ``e_i`` (I, E) float32, feature columns ``[lo, hi)``; ``genre`` (I,)
        int: the one-hot of columns ``[0, lo)`` (``[hi, D)`` are constant 1), or None when
        ``lo = 0, hi = D``.
    sd_w : ndarray of shape (n, D), float32
        The sd of each row's draws.
    m_s : int
        ``M``, the Monte-Carlo draws per row.
    seeds : ndarray of shape (n,), int64
        Per row, the seed of the ``D × M`` normals of its draws (:func:`fill_normals`).
    parallel : bool
        Rows in parallel threads.

    Returns
    -------
    items : ndarray of shape (n, K), int32
        The slates, best first (ties: lower item id).
    scores : ndarray of shape (n, K), float32
        Their sampled scores.
    at_pos, anywhere : ndarray of shape (n, K), int64
        Per shown item, the number of the ``M`` draws with it at its position / in the slate.
    """
    n = sampled.shape[0]
    rows, lo, hi, genre = side
    items = np.empty((n, k), dtype=np.int32)
    scores = np.empty((n, k), dtype=np.float32)
    at_pos = np.zeros((n, k), dtype=np.int64)
    anywhere = np.zeros((n, k), dtype=np.int64)
    if n:
        (_lints_parallel if parallel else _lints_serial)(
            np.ascontiguousarray(sampled, dtype=np.float32),
            np.ascontiguousarray(mean, dtype=np.float32),
            np.ascontiguousarray(var, dtype=np.float32),
            *(np.ascontiguousarray(o, dtype=np.float32) for o in offsets),
            np.ascontiguousarray(segments, dtype=np.int64),
            np.float32(coef),
            n_cand,
            rows,
            np.zeros(1, np.int64) if genre is None else genre,
            int(lo),
            int(hi),
            np.ascontiguousarray(sd_w, dtype=np.float32),
            int(m_s),
            np.ascontiguousarray(seeds, dtype=np.int64),
            items,
            scores,
            at_pos,
            anywhere,
        )
    return items, scores, at_pos, anywhere


def _ucb_py(mean, var, off_m, off_v, seg, coef, items, scores):  # pragma: no cover - compiled
    n, m = mean.shape
    k = items.shape[1]
    for grp in prange(-(-n // _ROWS)):
        fw, iw = workspace(m, np.float32)
        buf = np.empty(m, dtype=np.float32)
        hv = np.empty(k, dtype=np.float32)
        hi = np.empty(k, dtype=np.int64)
        for r in range(grp * _ROWS, min(n, grp * _ROWS + _ROWS)):
            _index_row(mean[r], var[r], off_m[r], off_v[r], seg, coef, buf)
            select_row(buf, k, fw, iw, hi, hv)
            sort_desc(hv, hi, k)
            for j in range(k):
                items[r, j] = hi[j]
                scores[r, j] = hv[j]


_ucb_parallel = njit(parallel=True, cache=True, nogil=True)(_ucb_py)
_ucb_serial = njit(cache=True, nogil=True)(_ucb_py)


def ucb_rows(
    mean: np.ndarray,
    var: np.ndarray,
    offsets: tuple[np.ndarray, np.ndarray],
    segments: np.ndarray,
    coef: float,
    k: int,
    parallel: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``mean + coef·sqrt(var)`` per row (LinUCB), formed in a one-row buffer.

    Parameters
    ----------
    mean, var : ndarray of shape (n, I), float32
        Up to a constant per row and segment of columns, ``offsets`` (see :func:`lints_rows`).
    offsets : tuple of two ndarrays of shape (n, S), float32
    segments : ndarray of shape (S + 1,), int64
    coef : float
    k : int, 1 <= k <= I
    parallel : bool
        Rows in parallel threads.

    Returns
    -------
    items : ndarray of shape (n, k), int32
        Best first; ties: lower item id.
    scores : ndarray of shape (n, k), float32
        The index values.
    """
    n = mean.shape[0]
    items = np.empty((n, k), dtype=np.int32)
    scores = np.empty((n, k), dtype=np.float32)
    if n:
        (_ucb_parallel if parallel else _ucb_serial)(
            np.ascontiguousarray(mean, dtype=np.float32),
            np.ascontiguousarray(var, dtype=np.float32),
            *(np.ascontiguousarray(o, dtype=np.float32) for o in offsets),
            np.ascontiguousarray(segments, dtype=np.int64),
            np.float32(coef),
            items,
            scores,
        )
    return items, scores


def _rank_counts_py(feat, mean_u, sd_w, cand, masked, items, eps, at_pos, anywhere):  # pragma: no cover
    n, n_c = cand.shape
    k = items.shape[1]
    n_first = n_c - k
    d = feat.shape[1]
    m_s = eps.shape[1]
    for r in prange(n):
        pool = np.empty(n_c, dtype=np.int64)
        pos = np.empty(k, dtype=np.int64)
        xs = np.empty((n_c, d), dtype=np.float32)
        base = np.empty(n_c, dtype=np.float32)
        lo_m = np.empty(m_s, dtype=np.float32)
        above = np.empty((k, m_s), dtype=np.int32)
        for c in range(n_first):
            pool[c] = cand[r, c]
        n_u = n_first
        for j in range(k):
            pos[j] = -1
            if masked[r, j]:  # its first copy among the first candidates
                for c in range(n_first):
                    if cand[r, c] == items[r, j]:
                        pos[j] = c
                        break
            if pos[j] < 0:
                pool[n_u] = items[r, j]
                pos[j] = n_u
                n_u += 1
        for c in range(n_u):
            base[c] = np.dot(feat[pool[c]], mean_u[r])
        _candidate_side(feat, 0, d, sd_w[r], pool, n_u, xs)
        sm = np.dot(xs, np.ascontiguousarray(eps[r].T))
        _count(sm, base, False, xs, pool, pool, n_u, pos, lo_m, above, at_pos[r], anywhere[r])


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

    The counting step of :func:`lints_rows` on given candidates and per-row normals (a
    reference for tests).

    Parameters
    ----------
    feat : ndarray of shape (I, D), float32
        Item features.
    mean_u, sd_w : ndarray of shape (n, D), float32
        Each row's posterior mean and the sd of its draws.
    cand : ndarray of shape (n, C + K), int
        Candidate items: ``C`` distinct ones, then the ``K`` shown items.
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


@njit(nogil=True, cache=True)
def session_grams(xe, out):  # pragma: no cover - compiled
    """``out[n] = xe[n]ᵀ xe[n]`` for ``xe`` of shape (n, K, D), float64: the per-session Gram
    matrices of the linear bandits' update. NumPy's batched ``matmul`` of such small matrices
    runs at ~1 GFLOP/s (a loop of tiny products); this loop's rows vectorise."""
    n, k, d = xe.shape
    for s in range(n):
        a = out[s]
        a[:] = 0.0
        for r in range(k):
            row = xe[s, r]
            for i in range(d):
                v = row[i]
                ai = a[i]
                for j in range(d):
                    ai[j] += v * row[j]


@njit(nogil=True, cache=True)
def spd_solve(a, b, out):  # pragma: no cover - compiled
    """``out[s] = a[s]⁻¹ b[s]`` for symmetric positive-definite ``a`` of shape (n, D, D), float64,
    by Cholesky ``a = L Lᵀ`` and two triangular solves (Golub & Van Loan 2013, Alg. 4.2.1). Only
    the lower triangle of ``a`` is read. ~2x faster than NumPy's batched LU ``solve`` at D ≈ 30,
    whose per-matrix call overhead dominates."""
    n, d, _ = a.shape
    lo = np.empty((d, d))
    z = np.empty(d)
    for s in range(n):
        m = a[s]
        for j in range(d):
            acc = m[j, j]
            for q in range(j):
                acc -= lo[j, q] * lo[j, q]
            ljj = np.sqrt(acc)
            lo[j, j] = ljj
            inv = 1.0 / ljj
            for i in range(j + 1, d):
                acc = m[i, j]
                for q in range(j):
                    acc -= lo[i, q] * lo[j, q]
                lo[i, j] = acc * inv
        for i in range(d):
            acc = b[s, i]
            for q in range(i):
                acc -= lo[i, q] * z[q]
            z[i] = acc / lo[i, i]
        for i in range(d - 1, -1, -1):
            acc = z[i]
            for q in range(i + 1, d):
                acc -= lo[q, i] * out[s, q]
            out[s, i] = acc / lo[i, i]
