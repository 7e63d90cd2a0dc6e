"""Compiled per-row loops of Plackett–Luce sampling and its Rao–Blackwellised propensities.

:func:`pl_rows` does, for every row of a block, what
:func:`~simulator.policies.propensity.plackett_luce_slates` describes: the tail's CDF, the
Gumbel-top-k prefixes (head keys plus the chain of truncated tail keys, stopped as soon as a
tail key can no longer enter the prefix) and the Rao–Blackwell accumulation — one row at a
time, so nothing larger than a row (a float64 CDF of ``I`` entries) is ever materialised.

Per row, the costs that were not proportional to the slate are kept to vectorised passes: the
head (the top ``L`` and the tail maximum) comes from
:func:`~simulator.selection.select_row` (no heap over the row), the tail weights'
``exp`` pass also forms their float64 sums per block of 16 columns, and a guide table over
the running block sums (Chen & Asau 1974, "On generating random variates from an empirical
distribution", AIIE Trans. 6) finds a tail draw's block in ~1 step instead of a binary search.
The prefixes drawn only for the estimates stop at length ``K − 1``, all the estimator reads
(their first ``K − 1`` keys are the same as those of longer prefixes), and a tail item's weight
in ``R_j`` is its float32 tail weight — the one it was drawn with — instead of an ``exp``.

Every random number is drawn by the caller with a NumPy Generator, in arrays whose shapes
depend only on the block's shape, and passed in; the kernel consumes none of its own. Rows are
independent (``prange`` over rows for large blocks), so the result does not depend on the
number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from simulator.selection import PARALLEL_MIN_ELEMENTS, select_row, sort_desc, workspace

__all__ = ["pl_block", "pl_rows"]

_ONE_MINUS = 1.0 - 1e-16
_BLOCK = 16  # tail columns per block of the two-level CDF
_ROWS = 16  # rows per parallel task (one workspace)
# fastmath without "no NaNs / no infinities": -inf log-weights must keep their meaning
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(fastmath=_FAST, cache=True)
def _exp_rel(row, sc, t, w, n2):  # pragma: no cover - compiled
    """``w[c] = exp(row[c]·sc − t)`` (clipped at ``exp(0)``), float32, 0 below ``e^−87``.

    Cody–Waite reduction ``x = n·ln 2 + r`` and a degree-7 polynomial (Cephes ``expf``; relative
    error < 4e-7), written so that the loop vectorises: the scale ``2^n`` is added to the
    exponent bits in a second pass.
    """
    _exp_poly(row, sc, t, w, n2)
    bits = w.view(np.int32)
    for c in range(row.size):
        bits[c] += n2[c] << 23


@njit(fastmath=_FAST, cache=True)
def _exp_rel_sums(row, sc, t, w, n2, bs):  # pragma: no cover - compiled
    """:func:`_exp_rel`, with ``bs[b]`` = :func:`_block_sum` of each block of ``w`` formed in its
    second pass, while the block is in L1 (``w`` zero-padded to whole blocks)."""
    _exp_poly(row, sc, t, w, n2)
    m = row.size
    bits = w.view(np.int32)
    full = m // _BLOCK
    for b in range(full):
        ib = bits[b * _BLOCK : (b + 1) * _BLOCK]  # a 0-based view: the loop vectorises
        nb = n2[b * _BLOCK : (b + 1) * _BLOCK]
        for j in range(_BLOCK):
            ib[j] += nb[j] << 23
        bs[b] = _block_sum(w, b)
    if full < bs.size:
        for c in range(full * _BLOCK, m):
            bits[c] += n2[c] << 23
        bs[full] = _block_sum(w, full)


@njit(fastmath=_FAST, cache=True)
def _exp_poly(row, sc, t, w, n2):  # pragma: no cover - compiled
    """Pass 1 of :func:`_exp_rel`: the polynomial in ``w`` and the exponent ``n`` in ``n2``."""
    m = row.size
    for c in range(m):
        x0 = np.float32(row[c] * sc - t)
        ok = x0 >= np.float32(-87.0)
        x = min(max(x0, np.float32(-87.0)), np.float32(0.0))
        fn = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
        r = x - fn * np.float32(0.693145751953125)
        r = r - fn * np.float32(1.428606765330187e-06)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        p = p * r * r + r + np.float32(1.0)
        w[c] = p if ok else np.float32(0.0)
        n2[c] = np.int32(fn) if ok else np.int32(0)


@njit(inline="always", fastmath=_FAST)
def _block_sum(w, b):
    """The float64 sum of block ``b`` of ``w`` (zero-padded to whole blocks)."""
    blk = w[b * _BLOCK : (b + 1) * _BLOCK]  # a 0-based view: the sum vectorises
    acc = 0.0
    for c in range(_BLOCK):
        acc += np.float64(blk[c])
    return acc


@njit(inline="always")
def _build_guide(bc, guide):
    """``guide[g]``: the first block whose running sum ``bc`` exceeds ``g/G`` of the total."""
    nb = bc.size
    n_g = guide.size
    step = bc[nb - 1] / n_g
    g = 0
    for b in range(nb):  # the g with g·step < bc[b] not yet assigned
        while g < n_g and g * step < bc[b]:
            guide[g] = b
            g += 1
    while g < n_g:  # rounding: g·step ≥ the total
        guide[g] = nb - 1
        g += 1


@njit(inline="always")
def _logaddexp(a, b):
    hi = max(a, b)
    if hi == -np.inf:
        return -np.inf
    return hi + np.log1p(np.exp(-abs(a - b)))


@njit(inline="always")
def _items_at(out_items, items, draw, r, i):
    return out_items[r, i] if draw else items[r, i]


@njit(inline="always")
def _scan_start(w, bc, c):
    """CDF just before column ``c``: its block's start plus the block's weights before it."""
    b = c // _BLOCK
    acc = bc[b - 1] if b > 0 else 0.0
    for cc in range(b * _BLOCK, c):
        acc += np.float64(w[cc])
    return acc


@njit(inline="always")
def _is_removed(c, rm_col, n_rm):
    for q in range(n_rm):
        if rm_col[q] == c:
            return True
    return False


@njit(inline="always")
def _lookup(w, bc, guide, n_cols, t, frac):
    """The column whose CDF interval ``[start, start + w)`` holds ``t``, or -1 (past the end).

    The CDF is two-level: ``bc[b]`` is the running sum through block ``b`` and a block is
    scanned column by column. The block is found from a guide table (Chen & Asau 1974):
    ``guide[g]`` is the first block whose running sum exceeds ``g/G`` of the total, so a
    short walk from ``guide[frac·G]`` (``frac ≈ t / total``; ~1 step) replaces a binary
    search. Also returns the column's ``start`` as the scan sees it.
    """
    nb = bc.size
    n_g = guide.size
    g = min(max(int(frac * n_g), 0), n_g - 1)
    lo = guide[g]  # then the first block whose running sum exceeds t
    while lo > 0 and bc[lo - 1] > t:
        lo -= 1
    while lo < nb and bc[lo] <= t:
        lo += 1
    if lo >= nb:
        return -1, 0.0
    # in the block (zero-padded to _BLOCK columns): the running sum passes t once
    acc = bc[lo - 1] if lo > 0 else 0.0
    before = acc
    n_le = 0
    for c in range(lo * _BLOCK, lo * _BLOCK + _BLOCK):
        acc += np.float64(w[c])
        if acc <= t:
            n_le += 1
            before = acc
    c = lo * _BLOCK + n_le
    if n_le == _BLOCK or c >= n_cols or not w[c] > 0:  # rounding: bc and the scan disagree
        return -1, 0.0
    return c, before


@njit(inline="always")
def _draw_tail(w, bc, guide, n_cols, u, total, rem, rm_col, rm_start, s, n_rm):
    """A column drawn with probability ``w_c / rem`` among those not removed, from ``u ~ U[0, 1)``.

    ``rm_col[s, :n_rm]`` (ascending) are the removed columns, ``rm_start[s]`` the CDF just
    before each, ``rem`` the weight left. First ``t = u · total`` is looked up in the full CDF; when it
    falls in a removed column, its relative position there is a fresh uniform ``u'`` (uniform
    given the column, and independent of which column it was), mapped onto the remaining weight:
    ``t' = u' · rem``, shifted past every removed column at or before it (the CDF without a
    column is the CDF with it, minus its weight beyond it). Then
    ``P(c) = w_c/total + (W_removed/total)·(w_c/rem) = w_c/rem``. Zero-weight and removed
    columns are never returned; if rounding (relative 1e-16) leaves the target in no valid
    column, the nearest valid column below it (else above) is. Also returns the CDF just
    before the returned column.
    """
    t = u * total
    c, start = _lookup(w, bc, guide, n_cols, t, u)
    hit = -1
    for q in range(n_rm):
        if rm_col[s, q] == c:
            hit = q
    if c >= 0 and hit < 0:
        return c, start
    return _redraw(w, bc, guide, n_cols, u, t, c, hit, rem, rm_col[s], rm_start[s], n_rm)


@njit
def _redraw(w, bc, guide, n_cols, u, t, c, hit, rem, rm_col, rm_start, n_rm):
    """The rare branch of :func:`_draw_tail`: ``t`` fell in a removed column (or nowhere)."""
    u2 = u
    if hit >= 0:
        u2 = min(max((t - rm_start[hit]) / np.float64(w[c]), 0.0), _ONE_MINUS)
    t = u2 * rem
    for q in range(n_rm):
        if rm_start[q] <= t:
            t += np.float64(w[rm_col[q]])
        else:
            break
    c, start = _lookup(w, bc, guide, n_cols, t, t / bc[bc.size - 1])
    if c >= 0 and not _is_removed(c, rm_col, n_rm):
        return c, start
    last = n_cols - 1 if c < 0 else c
    found = -1
    for cc in range(last, -1, -1):
        if w[cc] > 0 and not _is_removed(cc, rm_col, n_rm):
            found = cc
            break
    if found < 0:
        found = last
        for cc in range(last + 1, n_cols):
            if w[cc] > 0 and not _is_removed(cc, rm_col, n_rm):
                found = cc
                break
    return found, _scan_start(w, bc, found)


def _pl_rows_py(  # pragma: no cover - compiled
    zb,
    scale,
    big_l,
    items,
    draw,
    n_pre,
    g_head,
    e_tail,
    u_tail,
    out_items,
    pscore,
    inclusion,
    min_p,
    overflow,
):
    n, n_items = zb.shape
    k = items.shape[1]
    n_s = g_head.shape[1]
    has_tail = big_l < n_items
    n_heap = big_l + 1 if has_tail else big_l
    nb = -(-n_items // _BLOCK)
    p1 = max(n_pre, 1)
    sc = zb.dtype.type(scale)
    lowest = -np.finfo(zb.dtype).max  # -inf log-weights are clamped here (weight 0 all the same)
    n_groups = -(-n // _ROWS)
    for grp in prange(n_groups):
        # workspace, reused by the group's rows
        fw, iw = workspace(n_items, zb.dtype)
        hv = np.empty(n_heap, dtype=zb.dtype)
        hi = np.empty(n_heap, dtype=np.int64)
        order = np.empty(big_l, dtype=np.int64)
        head_z = np.empty(big_l, dtype=np.float64)
        w = np.zeros(nb * _BLOCK if has_tail else 1, dtype=np.float32)  # zero padding
        n2 = np.empty(n_items if has_tail else 1, dtype=np.int32)
        bc = np.empty(nb if has_tail else 1, dtype=np.float64)
        guide = np.zeros(nb if has_tail else 1, dtype=np.int64)
        suffix = np.empty(big_l + 1, dtype=np.float64)
        kv = np.empty((n_s, p1), dtype=np.float64)  # each prefix: keys, descending
        kc = np.empty((n_s, p1), dtype=np.int64)  # head rank, or L + tail step
        t_item = np.empty((n_s, p1), dtype=np.int64)
        rm_col = np.empty((n_s, p1), dtype=np.int64)  # its tail items, by column
        rm_start = np.empty((n_s, p1), dtype=np.float64)  # the CDF just before each
        rem = np.empty(n_s, dtype=np.float64)  # its remaining tail weight
        y = np.empty(n_s, dtype=np.float64)  # e^-(last tail key - tail max)
        n_rm = np.empty(n_s, dtype=np.int64)
        active = np.empty(n_s, dtype=np.bool_)
        pre_rank = np.empty(p1, dtype=np.int64)
        pre_item = np.empty(p1, dtype=np.int64)
        pre_logw = np.empty(p1, dtype=np.float64)
        pre_w = np.empty(p1, dtype=np.float64)
        taken = np.empty(big_l, dtype=np.bool_)
        in_prefix = np.empty(k, dtype=np.bool_)
        z_it = np.empty(k, dtype=np.float64)
        e_rel = np.empty((big_l, k), dtype=np.float64)  # w_i / S(m), for the m that occur
        cap = np.empty(big_l, dtype=np.float64)  # S(m) / w_m: the largest S(m) / R
        e_ok = np.empty(big_l, dtype=np.bool_)
        acc_p = np.empty((k, k), dtype=np.float64)  # [realised item, position]
        for r in range(grp * _ROWS, min(n, grp * _ROWS + _ROWS)):
            row = zb[r]
            # ---- the head: top L (+ the tail maximum), as selection.top_k_rows orders them
            select_row(row, n_heap, fw, iw, hi, hv)
            sort_desc(hv, hi, n_heap)
            tmax_s = zb.dtype.type(0)
            for h in range(big_l):
                order[h] = hi[h]
                head_z[h] = max(np.float64(hv[h] * sc), lowest)
            if has_tail:
                tmax_s = max(hv[big_l] * sc, lowest)  # the tail maximum, in the dtype of zb
            if not head_z[0] < np.inf:  # z·scale overflows (or is NaN): the caller shifts the row
                overflow[r] = True
                for i in range(k):
                    out_items[r, i] = i
                    pscore[r, i] = np.float32(1.0)
                    inclusion[r, i] = np.float32(1.0)
                continue
            # ---- the tail: weights relative to its maximum (each ≤ 1), float64 block sums
            total = 0.0
            lse_tail = -np.inf
            tmax = 0.0
            if has_tail:
                tmax = np.float64(tmax_s)
                _exp_rel_sums(row, sc, tmax_s, w, n2, bc)
                for h in range(big_l):  # the head is not in the tail: zero, and its blocks resummed
                    w[order[h]] = np.float32(0.0)
                for h in range(big_l):
                    bc[order[h] // _BLOCK] = _block_sum(w, order[h] // _BLOCK)
                for b in range(1, nb):
                    bc[b] += bc[b - 1]
                total = bc[nb - 1]
                _build_guide(bc, guide)
                lse_tail = tmax + np.log(total)
            # ---- log S(m): suffix sums of the sorted head plus the tail
            suffix[big_l] = lse_tail
            for h in range(big_l - 1, -1, -1):
                suffix[h] = _logaddexp(head_z[h], suffix[h + 1])
            n_run = n_s if n_pre > 0 else 0
            # ---- head keys of every prefix: top n_pre of z_l + G_l by insertion. The estimates
            # read prefixes of length K − 1 only: drawing, every prefix but the shown one stops
            # there (its first K − 1 keys are the same either way)
            for s in range(n_run):
                p_len = n_pre if (not draw or s == 0) else max(n_pre - 1, 1)
                last = p_len - 1
                for q in range(p_len):
                    kv[s, q] = -np.inf
                    kc[s, q] = -1
                for h in range(big_l):
                    key = head_z[h] + g_head[r, s, h]
                    if key > kv[s, last]:
                        q = last
                        while q > 0 and key > kv[s, q - 1]:
                            kv[s, q] = kv[s, q - 1]
                            kc[s, q] = kc[s, q - 1]
                            q -= 1
                        kv[s, q] = key
                        kc[s, q] = h
                rem[s] = total
                y[s] = 0.0
                n_rm[s] = 0
                active[s] = has_tail
            # ---- tail keys, descending (A* sampling): each is Gumbel(LSE of the remaining
            # tail) truncated below the previous one, -log(e^-prev + e^-(LSE + G)); relative to
            # the tail maximum, y = e^-(key - tmax) grows by E / rem with E = e^-G ~ Exp(1). A
            # prefix stops at its first key that cannot enter it. The prefixes are independent:
            # one step of each in turn, so that their CDF searches overlap.
            for t in range(n_pre if has_tail else 0):
                for s in range(n_run):
                    if not active[s]:
                        continue
                    last = n_pre - 1 if (not draw or s == 0) else max(n_pre - 2, 0)
                    if t > last:
                        active[s] = False
                        continue
                    y[s] += e_tail[r, s, t] / rem[s] if rem[s] > 0 else np.inf
                    key = tmax - np.log(y[s])
                    if not key > kv[s, last]:
                        active[s] = False
                        continue
                    nr = n_rm[s]
                    c, c_start = _draw_tail(
                        w, bc, guide, n_items, u_tail[r, s, t], total, rem[s], rm_col, rm_start, s, nr
                    )
                    t_item[s, t] = c
                    rem[s] -= np.float64(w[c])
                    q = nr  # keep the removed columns sorted
                    while q > 0 and rm_col[s, q - 1] > c:
                        rm_col[s, q] = rm_col[s, q - 1]
                        rm_start[s, q] = rm_start[s, q - 1]
                        q -= 1
                    rm_col[s, q] = c
                    rm_start[s, q] = c_start
                    n_rm[s] = nr + 1
                    q = last
                    while q > 0 and key > kv[s, q - 1]:
                        kv[s, q] = kv[s, q - 1]
                        kc[s, q] = kc[s, q - 1]
                        q -= 1
                    kv[s, q] = key
                    kc[s, q] = big_l + t
            e_ok[:] = False
            acc_p[:] = 0.0
            if not draw:
                for i in range(k):
                    z_it[i] = max(np.float64(row[items[r, i]] * sc), lowest)
            n_rb = 0
            for s in range(n_run):
                for j in range(n_pre if (not draw or s == 0) else max(n_pre - 1, 1)):
                    code = kc[s, j]
                    if code < big_l:
                        pre_rank[j] = code
                        pre_item[j] = order[code]
                        pre_logw[j] = head_z[code]
                    else:
                        pre_rank[j] = big_l
                        pre_item[j] = t_item[s, code - big_l]
                        pre_logw[j] = max(np.float64(row[pre_item[j]] * sc), lowest)
                        pre_w[j] = np.float64(w[pre_item[j]])  # its weight relative to tmax
                if draw and s == 0:  # the slate shown
                    for i in range(k):
                        out_items[r, i] = pre_item[i]
                        z_it[i] = pre_logw[i]
                    continue
                # ---- Rao–Blackwell: P(i at j + 1 | prefix of length j + 1) = w_i / R_{j+1}
                n_rb += 1
                taken[:] = False
                in_prefix[:] = False
                m_star = 0
                cur = -1
                base = 0.0
                tail_f = 0.0
                wsum = 0.0
                for j in range(k - 1):
                    rk = pre_rank[j]
                    if rk < big_l:
                        taken[rk] = True
                    it = pre_item[j]
                    for i in range(k):
                        if _items_at(out_items, items, draw, r, i) == it:
                            in_prefix[i] = True
                    while taken[m_star]:  # best untaken head rank (exists: L ≥ K > j + 1)
                        m_star += 1
                    if m_star != cur:  # R = S(m*) − the prefix weights ranked beyond m*
                        cur = m_star
                        base = suffix[m_star]
                        # a tail item's w / S(m*) is its tail weight (relative to the tail
                        # maximum, error < 4e-7) times e^(tmax − base) ≤ 1: no exp per item
                        tail_f = np.exp(min(tmax - base, 0.0))
                        wsum = 0.0
                        for t in range(j + 1):
                            if pre_rank[t] == big_l:
                                wsum += pre_w[t] * tail_f
                            elif pre_rank[t] > m_star:
                                wsum += np.exp(min(pre_logw[t] - base, 0.0))
                        if not e_ok[m_star]:
                            e_ok[m_star] = True
                            cap[m_star] = np.exp(base - head_z[m_star])
                            for i in range(k):
                                e_rel[m_star, i] = np.exp(min(z_it[i] - base, 0.0))
                    elif rk == big_l:
                        wsum += pre_w[j] * tail_f
                    elif rk > m_star:
                        wsum += np.exp(min(pre_logw[j] - base, 0.0))
                    # w_i / R = (w_i / S(m*)) · S(m*) / R, with S(m*) / R = 1 / (1 − wsum) in
                    # [1, 1e16] and at most S(m*) / w_{m*} (R ≥ w of the best untaken head item)
                    f = min(1.0 / (1.0 - min(wsum, _ONE_MINUS)), cap[m_star])
                    for i in range(k):
                        if not in_prefix[i]:
                            acc_p[i, j + 1] += min(e_rel[m_star, i] * f, 1.0)
            # ---- position 0 exact; the rest averaged; inclusion = the sum over positions
            lse_all = suffix[0]
            for i in range(k):
                p0 = np.exp(min(z_it[i] - lse_all, 0.0))
                tot = p0
                for j in range(1, k):
                    tot += acc_p[i, j] / max(n_rb, 1)
                ps = p0 if i == 0 else acc_p[i, i] / max(n_rb, 1)
                inc = max(min(tot, 1.0), ps)
                pscore[r, i] = np.float32(min(max(ps, min_p), 1.0))
                inclusion[r, i] = np.float32(min(max(inc, min_p), 1.0))


_pl_parallel = njit(parallel=True, cache=True, nogil=True)(_pl_rows_py)
_pl_serial = njit(cache=True, nogil=True)(_pl_rows_py)


def pl_rows(zb, scale, big_l, items, n_pre, g_head, e_tail, u_tail, min_p, parallel=None):
    """Run the row kernel on one block (see :func:`~simulator.policies.propensity._pl_block`).

    Parameters
    ----------
    zb : ndarray of shape (n, I), float32 or float64
        Log-weights, up to the factor ``scale``.
    scale : float > 0
        The log-weights are ``zb * scale``, computed in the dtype of ``zb``.
    big_l : int
        Head size ``L`` (``K ≤ L ≤ I``): the top ``L`` items per row get a key each.
    items : ndarray of shape (n, K), int, or None
        Given slates (None: draw them from the first prefix).
    n_pre : int
        Prefix length (``K`` when drawing, else ``K − 1``).
    g_head : ndarray of shape (n, S, L), float64 or float32
        Standard Gumbels of the head keys, per sampled prefix.
    e_tail, u_tail : ndarray of shape (n, S, n_pre), float64
        Standard exponentials of the tail-key chain (``e^−G`` of its Gumbels) and uniforms of
        the tail item draws (unused when ``L = I``).
    min_p : float
        Smallest propensity recorded.
    parallel : bool, optional
        Rows in parallel threads; default: when the block has at least
        ``PARALLEL_MIN_ELEMENTS`` scores. ``False`` for callers that are already one of
        several threads.

    Returns
    -------
    items : ndarray of shape (n, K), int32
    pscore, inclusion : ndarray of shape (n, K), float32
    overflow : ndarray of shape (n,), bool
        Rows whose largest ``z * scale`` is not finite: their outputs are placeholders (rerun
        them with shifted log-weights). ``z * scale = −inf`` elsewhere is fine (weight 0).
    """
    n, n_items = zb.shape
    draw = items is None
    k = n_pre if draw else n_pre + 1
    out_items = np.empty((n, k), dtype=np.int32)
    given = np.zeros((n, k), dtype=np.int64) if draw else np.ascontiguousarray(items, dtype=np.int64)
    pscore = np.empty((n, k), dtype=np.float32)
    inclusion = np.empty((n, k), dtype=np.float32)
    overflow = np.zeros(n, dtype=np.bool_)
    if big_l < n_items and e_tail.shape[2] < n_pre:
        raise ValueError("e_tail and u_tail need n_pre steps per prefix when L < I")
    if n:
        if parallel is None:
            parallel = zb.size >= PARALLEL_MIN_ELEMENTS
        kernel = _pl_parallel if parallel else _pl_serial
        kernel(
            np.ascontiguousarray(zb),
            float(scale),
            int(big_l),
            given,
            draw,
            int(n_pre),
            np.ascontiguousarray(g_head, dtype=g_head.dtype if g_head.dtype == np.float32 else np.float64),
            np.ascontiguousarray(e_tail, dtype=np.float64),
            np.ascontiguousarray(u_tail, dtype=np.float64),
            out_items,
            pscore,
            inclusion,
            float(min_p),
            overflow,
        )
    if not draw:
        out_items[:] = given
    return out_items, pscore, inclusion, overflow


def pl_block(zb, scale, big_l, n_pre, g_head, e_tail, u_tail, min_p, parallel=None):
    """Draw slates and propensities of a block, as :func:`pl_rows` (``items`` None), rerunning
    the rows whose ``z * scale`` overflows with log-weights shifted by the row maximum (the same
    softmax) and the same random numbers.

    Returns
    -------
    items : ndarray of shape (n, K), int32
    pscore, inclusion : ndarray of shape (n, K), float32
    """
    out = pl_rows(zb, scale, big_l, None, n_pre, g_head, e_tail, u_tail, min_p, parallel)
    bad = np.flatnonzero(out[3])
    if bad.size:
        zs = np.asarray(zb[bad])
        with np.errstate(over="ignore", invalid="ignore"):
            zs = (zs - zs.max(axis=1, keepdims=True)) * zs.dtype.type(scale)
        np.maximum(zs, np.finfo(zs.dtype).min, out=zs)
        redo = pl_rows(zs, 1.0, big_l, None, n_pre, g_head[bad], e_tail[bad], u_tail[bad], min_p, parallel)
        for full, part in zip(out[:3], redo[:3], strict=True):
            full[bad] = part
    return out[:3]
