"""Propensities of the randomised policies: exact tables and vectorised Monte-Carlo estimators.

* :func:`epsilon_greedy_table` — exact ``P(rank r at position k)`` of per-slot epsilon-greedy,
  by a small recursion over the greedy pointer (the same table serves every user).
* :func:`plackett_luce_propensities` — Plackett–Luce (softmax sampling without replacement):
  position 0 exact (log-sum-exp), later positions and inclusion by a Rao–Blackwellised
  Monte-Carlo estimate computed in log space.
* :func:`counts_propensities` — frequency estimates from ``M`` sampled slates.
"""

from __future__ import annotations

from functools import lru_cache
from math import comb

import numpy as np

from simulator.policies.base import MIN_PROPENSITY

# --------------------------------------------------------------------------------------------
# epsilon-greedy
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def epsilon_greedy_table(n_items: int, k: int, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact position and inclusion probabilities of per-slot epsilon-greedy, by greedy rank.

    The slate is filled slot by slot: with probability ``epsilon`` a uniformly random item not
    yet in the slate, else the *next greedy item* — the best-ranked item not yet in the slate.

    Parameters
    ----------
    n_items : int
        Catalog size ``I``.
    k : int
        Slate size ``K`` (``K <= I``).
    epsilon : float in [0, 1]

    Returns
    -------
    position : ndarray of shape (K + 1, K), float64
        ``position[r, j]`` = P(the item of greedy rank ``r`` (0-based) is shown at position
        ``j``) for ``r < K``; row ``K`` is the probability for *one specific* item of greedy rank
        ``>= K`` (all such items are exchangeable). Each column sums to 1 once row ``K`` is
        counted ``I - K`` times.
    inclusion : ndarray of shape (K + 1,), float64
        P(the item appears anywhere in the slate) per row (the row sums: the events are disjoint).

    Notes
    -----
    Only items of greedy rank ``< K`` can ever be a greedy pick (at slot ``j`` the slate holds
    ``j`` items, so the first rank not yet in it is ``<= j``). Call that rank the *pointer*
    ``p``. The state before slot ``j`` is ``(p, m)``: ``m`` of the ``L = K − 1 − p`` head ranks
    after the pointer are already in the slate (taken by random slots), and ``t = j − p − m``
    tail items are. Random picks are uniform over the untaken items, so given ``(p, m)`` the set
    of taken head ranks after the pointer is a *uniform* ``m``-subset of those ``L`` ranks (a
    uniform subset plus a uniform new element is uniform; a pointer jump conditions on a prefix
    and leaves the rest uniform). With ``f = I − j`` free items the transitions are:

    * the pointer item is placed (greedy, or random hitting it): probability
      ``(1 − ε) + ε/f``; the pointer then jumps over the ``s`` taken ranks right after it,
      ``P(s) = C(L − s − 1, m − s) / C(L, m)`` (``s = L`` when ``m = L``), to ``(p + 1 + s, m − s)``;
    * a given untaken head rank ``r > p`` (untaken with probability ``1 − m/L``) is placed with
      probability ``ε/f``: state ``(p, m + 1)``;
    * a given tail item (untaken with probability ``1 − t/(I − K)``) with probability ``ε/f``.

    Summing these over the state distribution gives ``position`` exactly in ``O(K^4)`` (K = 10:
    well under a millisecond); the result is cached per ``(I, K, ε)``. ``ε = 0`` gives the
    greedy slate with probability 1; ``ε = 1`` the uniform ``1/I`` of the random policy.
    """
    big_k, n_tail = k, n_items - k
    pos = np.zeros((big_k + 1, big_k), dtype=np.float64)
    state = {(0, 0): 1.0}  # (pointer, taken head ranks after the pointer) -> probability
    for j in range(big_k):
        free = n_items - j
        nxt: dict[tuple[int, int], float] = {}
        for (p, m), prob in state.items():
            big_l = big_k - 1 - p
            t = j - p - m
            greedy = (1.0 - epsilon) + epsilon / free
            pos[p, j] += prob * greedy
            # pointer jump after placing rank p
            if big_l == 0 or m == big_l:
                jumps = [(big_l, 1.0)] if big_l > 0 else [(0, 1.0)]
            else:
                total = comb(big_l, m)
                jumps = [(s, comb(big_l - s - 1, m - s) / total) for s in range(m + 1)]
            for s, ps in jumps:
                key = (min(p + 1 + s, big_k), m - s)
                nxt[key] = nxt.get(key, 0.0) + prob * greedy * ps
            if big_l > m:
                each = prob * (epsilon / free) * (1.0 - m / big_l)
                pos[p + 1 :, j][:big_l] += each
                key = (p, m + 1)
                nxt[key] = nxt.get(key, 0.0) + prob * epsilon * (big_l - m) / free
            if n_tail > t:
                pos[big_k, j] += prob * (epsilon / free) * (1.0 - t / n_tail)
                key = (p, m)
                nxt[key] = nxt.get(key, 0.0) + prob * epsilon * (n_tail - t) / free
        state = nxt
    pos.setflags(write=False)
    inc = pos.sum(axis=1)
    inc.setflags(write=False)
    return pos, inc


# --------------------------------------------------------------------------------------------
# Plackett–Luce
# --------------------------------------------------------------------------------------------


def _logsumexp(z: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(z - m), axis=axis))


def gumbel(rng: np.random.Generator, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """Standard Gumbel noise ``−log E``, ``E ~ Exp(1)`` (never infinite)."""
    e = rng.standard_exponential(shape, dtype=dtype)
    np.maximum(e, np.finfo(dtype).tiny, out=e)
    return -np.log(e)


def plackett_luce_propensities(
    z: np.ndarray,
    items: np.ndarray,
    n_samples: int,
    rng: np.random.Generator,
    head: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Position and inclusion propensities of given Plackett–Luce slates, from log-weights.

    ``items`` were drawn from ``P(i first) = softmax(z)_i`` without replacement. Position 0 is
    exact; later positions are Rao–Blackwellised Monte-Carlo estimates from ``n_samples``
    independent prefixes per row. See :func:`plackett_luce_slates` (which also draws the slates)
    for the method.

    Returns
    -------
    pscore, inclusion : ndarray of shape (n, K), float32
    """
    _, pscore, inclusion = plackett_luce_slates(z, items.shape[1], n_samples, rng, head=head, items=items)
    return pscore, inclusion


def plackett_luce_slates(
    z: np.ndarray,
    k: int,
    n_samples: int,
    rng: np.random.Generator,
    head: int = 64,
    items: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw Plackett–Luce slates of ``k`` items and estimate their propensities.

    Parameters
    ----------
    z : ndarray of shape (n, I), float
        Log-weights (e.g. ``score / temperature``; any finite values, any range).
    k : int
        Slate size ``K``.
    n_samples : int
        Monte-Carlo prefixes per row (``M``) behind the estimates of positions ≥ 1.
    rng : numpy.random.Generator
    head : int
        Items per row handled one by one (the top ``max(head, K)`` by weight); the rest form a
        tail whose top keys are drawn with max-stable truncated Gumbels. Affects speed only,
        not the distribution.
    items : ndarray of shape (n, K), int, optional
        Given slates: only estimate their propensities.

    Returns
    -------
    items : ndarray of shape (n, K), int32
        The slates: ``P(i first) = softmax(z)_i``, then likewise among the rest.
    pscore : ndarray of shape (n, K), float32
        ``P(items[s, j] at position j)``, in ``[MIN_PROPENSITY, 1]``.
    inclusion : ndarray of shape (n, K), float32
        ``P(items[s, j] anywhere in the slate)`` (sum of the item's position estimates, ≤ 1).

    Notes
    -----
    Sampling — exact Plackett–Luce by the Gumbel-top-k trick (Yellott 1977; Kool, van Hoof &
    Welling 2019): the slate is the top K of the keys ``z_l + G_l``. Keys are only drawn where
    they can matter: one per *head* item (the top ``L`` by weight); for the *tail*, its largest
    key is ``LSE(z_tail) + G`` (max-stability) with the arg-max drawn ∝ ``w`` from the tail's CDF,
    and each next tail key is the same for the remaining tail, truncated below the previous one
    (Maddison, Tarlow & Minka 2014, A* sampling). A row costs two float32 passes over the
    catalog (``exp``, cumulative sum), not a Gumbel per item. Each row draws ``M + 1`` slates
    (``M`` when ``items`` is given): the first is the one shown, the others only serve the
    estimates.

    Estimates — chain rule (Plackett 1975; Luce 1959): given the first ``j`` items (the prefix
    ``S_j``), ``P(i at j | S_j) = w_i / R_j`` with ``R_j = Σ_{l ∉ S_j} w_l``. Hence
    ``P(i at j) = E[1(i ∉ S_j) · w_i / R_j]``, averaged over the ``M`` other prefixes — a
    Rao–Blackwellised estimator: unbiased, its variance at most that of counting
    (``≤ p(1 − p)/M``), and positive whenever ``i`` is absent from some sampled prefix.
    ``j = 0`` needs no sample: ``exp(z_i − LSE(z))``.

    ``log R_j`` is computed without cancellation: with ``m*`` the best head rank not in
    ``S_j``, ``R_j = S(m*) − Σ_{l ∈ S_j, rank(l) > m*} w_l`` where ``S(m)`` is the exactly
    summed (log-space) suffix of the sorted head plus the tail; every subtracted weight is
    ``≤ w_{m*} ≤ R_j``, so the relative error is at most ``I · eps``. The head and all
    probabilities are in float64 log space, the tail relative to its own maximum: any
    temperature works (no overflow, no 0/0). A probability below the smallest normal float32 is
    recorded as that value.
    """
    from simulator.users.population import chunk_rows

    n, n_items = z.shape
    out_items = np.empty((n, k), dtype=np.int32)
    pscore = np.empty((n, k), dtype=np.float32)
    inclusion = np.empty((n, k), dtype=np.float32)
    step = max(1, chunk_rows(n_items) // 2)  # rows per block: half a scoring chunk
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        given = None if items is None else items[sl].astype(np.intp)
        out_items[sl], pscore[sl], inclusion[sl] = _pl_block(z[sl], k, n_samples, rng, head, given)
    return out_items, pscore, inclusion


def _pl_block(zb, k, m, rng, head, items):
    from simulator.users.population import top_k_rows

    n, n_items = zb.shape
    big_l = min(n_items, max(head, k))
    order_t, vals_t = top_k_rows(zb, min(n_items, big_l + 1))
    order = order_t[:, :big_l].astype(np.intp)
    head_z = vals_t[:, :big_l].astype(np.float64)
    rows = np.arange(n)[:, None]
    flat = None
    if big_l < n_items:
        tail_max = vals_t[:, big_l].astype(np.float64)
        d = np.subtract(zb, tail_max[:, None].astype(zb.dtype), dtype=np.float32)
        np.put_along_axis(d, order, -np.inf, axis=1)
        # one running sum over all rows' tail weights (each ≤ 1, the tail maximum is 1): row r's
        # CDF is flat[r·I : (r+1)·I] minus the sum before it; the whole array is sorted
        flat = np.cumsum(np.exp(d, out=d).ravel(), dtype=np.float64)
        ends = flat[n_items - 1 :: n_items]
        starts = np.concatenate([[0.0], ends[:-1]])
        lse_tail = tail_max + np.log(ends - starts)
        flat = (flat, starts, ends - starts)
    else:
        lse_tail = np.full(n, -np.inf)
    rev = np.concatenate([lse_tail[:, None], head_z[:, ::-1]], axis=1)
    suffix = np.logaddexp.accumulate(rev, axis=1)[:, ::-1]  # (n, L + 1): log S(m)
    lse_all = suffix[:, 0]

    draw = items is None
    n_pre = k if draw else k - 1
    n_s = m + 1 if draw else m
    if n_pre > 0:
        keys = head_z[:, None, :] + gumbel(rng, (n, n_s, big_l))  # (n, S, L)
        t_keys = np.full((n, n_s, n_pre), -np.inf)
        t_items = np.full((n, n_s, n_pre), -1, dtype=np.intp)
        t_logw = np.full((n, n_s, n_pre), -np.inf)
        if flat is not None:
            _tail_keys(flat, n_items, zb, lse_tail, keys, t_keys, t_items, t_logw, rng)
        all_keys = np.concatenate([keys, t_keys], axis=2)
        top = np.argpartition(-all_keys, n_pre - 1, axis=2)[:, :, :n_pre]
        top = np.take_along_axis(
            top, np.argsort(-np.take_along_axis(all_keys, top, 2), axis=2, kind="stable"), 2
        )
        is_head = top < big_l
        hidx = np.minimum(top, big_l - 1)
        tidx = np.maximum(top - big_l, 0)
        pre_rank = np.where(is_head, top, big_l)  # head rank, or L for a tail item
        pre_item = np.where(is_head, order[rows[:, :, None], hidx], np.take_along_axis(t_items, tidx, 2))
        pre_logw = np.where(is_head, head_z[rows[:, :, None], hidx], np.take_along_axis(t_logw, tidx, 2))
        if draw:
            items = pre_item[:, 0, :]
            pre_rank, pre_item, pre_logw = pre_rank[:, 1:], pre_item[:, 1:], pre_logw[:, 1:]
    z_items = np.take_along_axis(zb, items, axis=1).astype(np.float64)
    probs = np.zeros((n, k, k), dtype=np.float64)  # [row, realised item, position]
    probs[:, :, 0] = np.exp(np.minimum(z_items - lse_all[:, None], 0.0))
    if k > 1:
        probs[:, :, 1:] = _rao_blackwell(head_z, suffix, items, z_items, pre_rank, pre_item, pre_logw)
    ps = probs[:, np.arange(k), np.arange(k)]
    inc = np.maximum(np.minimum(probs.sum(axis=2), 1.0), ps)
    return items, np.clip(ps, MIN_PROPENSITY, 1.0), np.clip(inc, MIN_PROPENSITY, 1.0)


def _rao_blackwell(head_z, suffix, items, z_items, pre_rank, pre_item, pre_logw) -> np.ndarray:
    """Estimates of P(realised item at position j), j = 1..K−1, from M prefixes: (n, K, K−1)."""
    n, big_l = head_z.shape
    m = pre_rank.shape[1]
    k = items.shape[1]
    rows = np.arange(n)[:, None]
    samp = np.arange(m)[None, :]
    out = np.zeros((n, k, k - 1), dtype=np.float64)
    taken = np.zeros((n, m, big_l), dtype=bool)
    in_prefix = np.zeros((n, m, k), dtype=bool)
    for j in range(k - 1):  # prefix of length j + 1 → the estimate for position j + 1
        r = pre_rank[:, :, j]
        taken[rows, samp, np.minimum(r, big_l - 1)] |= r < big_l
        in_prefix |= items[:, None, :] == pre_item[:, :, j, None]
        m_star = np.argmin(taken, axis=2)  # best untaken head rank (exists: L ≥ K > j + 1)
        base = suffix[rows, m_star]
        beyond = pre_rank[:, :, : j + 1] > m_star[:, :, None]
        w_rel = np.where(beyond, np.exp(np.minimum(pre_logw[:, :, : j + 1] - base[:, :, None], 0.0)), 0.0)
        log_r = base + np.log1p(-np.minimum(w_rel.sum(axis=2), 1.0 - 1e-16))
        log_r = np.maximum(log_r, head_z[rows, m_star])  # R ≥ w of the best untaken head item
        term = np.exp(np.minimum(z_items[:, None, :] - log_r[:, :, None], 0.0))  # (n, M, K)
        out[:, :, j] = np.where(in_prefix, 0.0, term).mean(axis=1)
    return out


def _tail_keys(flat, n_items, zb, lse_tail, head_keys, t_keys, t_items, t_logw, rng) -> None:
    """Fill the largest tail keys (descending) and their items, per (row, sample).

    ``flat`` is ``(running sum, row start, row total)``: the running sum of every row's tail
    weights (head items weigh 0) over the flattened block — one sorted array, so one
    ``searchsorted`` serves every row. All steps' items are drawn at once (∝ w, duplicates
    within a sample redrawn: sampling without replacement by rejection); the key chain then runs
    over the steps on (rows, samples) arrays.
    """
    n, m, n_pre = t_keys.shape
    rows = np.broadcast_to(np.arange(n)[:, None, None], (n, m, n_pre)).ravel()
    item = _draw_rows(flat, rows, n_items, rng).reshape(n, m, n_pre)
    for s in range(1, n_pre):  # redraw an item already drawn earlier in the same sample
        for _ in range(50):
            dup = (item[:, :, :s] == item[:, :, s, None]).any(axis=2)
            if not dup.any():
                break
            ri, si = np.nonzero(dup)
            item[ri, si, s] = _draw_rows(flat, ri, n_items, rng)
    logw = np.take_along_axis(zb, item.reshape(n, -1), axis=1).reshape(n, m, n_pre).astype(np.float64)
    # a tail key below the n_pre-th largest head key can never enter the prefix
    thr = -np.partition(-head_keys, n_pre - 1, axis=2)[:, :, n_pre - 1]
    lse = np.repeat(lse_tail[:, None], m, axis=1)
    prev = np.full((n, m), np.inf)
    g = gumbel(rng, (n, m, n_pre))
    with np.errstate(over="ignore", divide="ignore"):
        for s in range(n_pre):
            key = -np.logaddexp(-prev, -(lse + g[:, :, s]))  # Gumbel(lse) truncated below prev
            t_keys[:, :, s] = np.where(key > thr, key, -np.inf)
            prev = key
            lse = lse + np.log1p(-np.minimum(np.exp(logw[:, :, s] - lse), 1.0))
    t_items[...] = item
    t_logw[...] = logw


def _draw_rows(flat, rows: np.ndarray, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """One column per requested row, drawn ∝ the row's weights by inverse CDF.

    ``flat = (running, start, total)``: ``running`` is the float64 running sum of all rows'
    weights (row-major), ``start[r]`` the sum before row ``r`` and ``total[r]`` its weight. The
    first column whose running sum exceeds ``start + u·total`` is drawn (zero-weight columns
    never are); float64 keeps weights down to ~1e-9 of a row's largest weight exact.
    """
    running, start, total = flat
    target = start[rows] + rng.random(rows.size) * total[rows]
    pos = np.searchsorted(running, target, side="right") - rows * n_cols
    return np.clip(pos, 0, n_cols - 1)


# --------------------------------------------------------------------------------------------
# counting estimates
# --------------------------------------------------------------------------------------------


def counts_propensities(
    sampled: np.ndarray, items: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frequency estimates of position and inclusion propensities from ``D`` sampled slates.

    For a policy whose slate distribution is the same for every row of a call (a shared
    posterior). ``sampled`` must *include* the draws that produced ``items``, so every logged
    (item, position) pair was seen at least once and its estimate is ≥ ``1/D`` (never 0). The
    estimate is biased upwards by at most ``1/D``: ``E[p̂] = p + (1 − p)/D`` for a realised pair.

    Parameters
    ----------
    sampled : ndarray of shape (D, K), int
    items : ndarray of shape (n, K), int
    n_items : int

    Returns
    -------
    pscore, inclusion : ndarray of shape (n, K), float32
    """
    d, k = sampled.shape
    key = sampled.astype(np.int64) * k + np.arange(k)
    pos = np.bincount(key.ravel(), minlength=n_items * k).reshape(n_items, k) / d
    inc = np.bincount(sampled.ravel(), minlength=n_items) / d
    p = pos[items, np.arange(k)]
    q = inc[items]
    return (
        np.clip(p, MIN_PROPENSITY, 1.0).astype(np.float32),
        np.clip(np.maximum(q, p), MIN_PROPENSITY, 1.0).astype(np.float32),
    )
