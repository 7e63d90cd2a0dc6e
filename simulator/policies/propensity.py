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
    scale: float = 1.0,
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
    scale : float > 0
        The log-weights are ``z * scale``, computed in the dtype of ``z`` (e.g. raw scores
        with ``scale = 1/T``: saves a pass when ``z * scale`` is known to be finite).

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
    (Maddison, Tarlow & Minka 2014, A* sampling); the chain stops at the first tail key that
    can no longer enter the prefix. Each tail item is an inverse-CDF lookup, without replacement
    (see :func:`~simulator.policies._pl_kernels._draw_tail`). A row costs one pass to find the
    head and one vectorised float32 ``exp`` pass with float64 sums per block of columns (a
    two-level CDF), not a Gumbel per item; all of it runs compiled, row by row
    (:mod:`simulator.policies._pl_kernels`). Each row draws ``M + 1`` slates (``M`` when
    ``items`` is given): the first is the one shown, the others only serve the estimates.

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
    temperature works (no overflow, no 0/0; a row whose ``z * scale`` overflows is shifted by
    its maximum first). A tail weight below ``e^−87`` of the tail maximum counts as 0. A
    probability below the smallest normal float32 is recorded as that value.
    """
    from simulator.users.population import chunk_rows

    n, n_items = z.shape
    out_items = np.empty((n, k), dtype=np.int32)
    pscore = np.empty((n, k), dtype=np.float32)
    inclusion = np.empty((n, k), dtype=np.float32)
    step = chunk_rows(n_items)  # rows per block: one scoring chunk
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        given = None if items is None else items[sl]
        out_items[sl], pscore[sl], inclusion[sl] = _pl_block(z[sl], k, n_samples, rng, head, given, scale)
    return out_items, pscore, inclusion


def _pl_block(zb, k, m, rng, head, items, scale=1.0):
    """One block of rows, by the row kernel of :mod:`simulator.policies._pl_kernels`.

    Random numbers, in this order and in shapes fixed by the block (so a seed gives the same
    slates with any number of threads): the head keys' Gumbels ``(n, S, L)``, the tail-key
    chain's exponentials ``(n, S, P)`` and the tail item draws' uniforms ``(n, S, P)``, with
    ``S`` sampled prefixes of length ``P`` per row (no tail draws when ``L = I``).
    """
    from simulator.policies._pl_kernels import pl_rows

    n, n_items = zb.shape
    big_l = min(n_items, max(head, k))
    draw = items is None
    n_pre = k if draw else k - 1
    # prefixes: the shown slate (when drawing) and M more for the estimates (none needed at K = 1)
    n_s = (m + 1 if draw else m) if k > 1 else (1 if draw else 0)
    n_t = n_pre if big_l < n_items else 0
    g_head = gumbel(rng, (n, n_s, big_l))
    e_tail = rng.standard_exponential((n, n_s, n_t))
    u_tail = rng.random((n, n_s, n_t))
    out = pl_rows(zb, scale, big_l, items, n_pre, g_head, e_tail, u_tail, MIN_PROPENSITY)
    bad = np.flatnonzero(out[3])
    if bad.size:  # z·scale overflows: shift those rows by their maximum first (same softmax)
        zs = np.asarray(zb[bad])
        with np.errstate(over="ignore", invalid="ignore"):
            zs = (zs - zs.max(axis=1, keepdims=True)) * zs.dtype.type(scale)
        np.maximum(zs, np.finfo(zs.dtype).min, out=zs)
        redo = pl_rows(
            zs,
            1.0,
            big_l,
            None if items is None else items[bad],
            n_pre,
            g_head[bad],
            e_tail[bad],
            u_tail[bad],
            MIN_PROPENSITY,
        )
        for full, part in zip(out[:3], redo[:3], strict=True):
            full[bad] = part
    return out[:3]


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
