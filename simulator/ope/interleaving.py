"""Interleaved comparison of two rankers: team-draft and balanced interleaving, click credit.

An interleaving experiment shows each session *one* list merged from the slates of two
policies A and B, records which policy ("team") contributed each shown item, and credits the
session's clicks to the teams. The log of such an experiment carries one extra column,
``team int8`` (0 = A, 1 = B), next to ``position`` and ``item_id``.

Everything is vectorised over sessions; the only Python loops run over the slots of the
merged list.

Functions
---------
team_draft_interleave
    Radlinski, Kurup & Joachims (2008): captains pick alternately, a coin decides who picks
    first in each round; fair under clicks independent of team.
credit
    Team-draft credit: the team with more clicked items wins the session.
balanced_interleave, balanced_credit
    Joachims (2002, 2003): both lists are consumed at the same depth; credit compares the
    clicks in the top ``k*`` of each list, ``k*`` set by the lowest click.
interleaving_test
    Win rate of A over decisive sessions, exact binomial (sign) test and Clopper-Pearson CI.
interleave, coin_patterns, enumerate_interleavings, interleaving_propensities
    Either method by name; every coin outcome of a session (2^ceil(k/2) for team draft, 2 for
    balanced) and the exact propensities of a shown list given the two input slates.
pbm_outcome_probabilities
    Exact P(A wins), P(B wins), P(tie) per session under the position-based click model
    (the power study's engine, :mod:`simulator.ope.interleaving_study`).
credit_from_log
    Per-session outcomes from a logged interleaving run (``team``, or ``rank_a``/``rank_b``).

The pair policy ``interleaving`` (:mod:`simulator.policies.interleaving`) runs an interleaving
experiment inside the simulator; its log carries ``team`` (and ``rank_a``, ``rank_b``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from simulator.errors import ValidationError

__all__ = [
    "METHODS",
    "TEAM_A",
    "TEAM_B",
    "InterleavingResult",
    "balanced_credit",
    "balanced_interleave",
    "coin_patterns",
    "credit",
    "credit_from_log",
    "enumerate_interleavings",
    "interleave",
    "interleaving_propensities",
    "interleaving_test",
    "list_ranks",
    "pbm_outcome_probabilities",
    "team_draft_interleave",
]

TEAM_A: int = 0
"""Team code of policy A in the ``team`` array / log column."""
TEAM_B: int = 1
"""Team code of policy B in the ``team`` array / log column."""


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _as_lists(list_a: Any, list_b: Any, k: Any) -> tuple[np.ndarray, np.ndarray, int]:
    a = np.asarray(list_a)
    b = np.asarray(list_b)
    for name, arr in (("list_a", a), ("list_b", b)):
        if arr.ndim != 2:
            raise ValidationError(f"{name} must be a 2-D array (n_sessions, K); got ndim={arr.ndim}")
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise ValidationError(f"{name} must hold integer item ids; got dtype {arr.dtype}")
        if arr.size and arr.min() < 0:
            raise ValidationError(
                f"{name} must hold item ids >= 0 (padding is not supported); got {int(arr.min())}"
            )
        if arr.shape[1] >= 2:
            srt = np.sort(arr, axis=1)
            dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
            if dup.any():
                row = int(np.flatnonzero(dup)[0])
                raise ValidationError(
                    f"{name} must hold K distinct items per session; row {row} repeats an item"
                )
    if a.shape[0] != b.shape[0]:
        raise ValidationError(
            f"list_a and list_b must have the same number of sessions; got {a.shape[0]} and {b.shape[0]}"
        )
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValidationError(f"k must be an int >= 1; got {k!r}")
    k_max = min(a.shape[1], b.shape[1])
    if not 1 <= k <= k_max:
        raise ValidationError(f"k must be an int in [1, min(K_a, K_b)] = [1, {k_max}]; got {k}")
    return a.astype(np.int64, copy=False), b.astype(np.int64, copy=False), int(k)


def _as_clicks(clicks: Any, shape: tuple[int, ...], name: str = "clicks") -> np.ndarray:
    c = np.asarray(clicks)
    if c.shape != shape:
        raise ValidationError(f"{name} must have shape {shape} (like the interleaved list); got {c.shape}")
    if c.dtype == np.bool_:
        return c
    if not np.issubdtype(c.dtype, np.integer):
        raise ValidationError(f"{name} must be bool (or 0/1 integers); got dtype {c.dtype}")
    if c.size and ((c != 0) & (c != 1)).any():
        raise ValidationError(f"{name} must be 0 or 1; got values {np.unique(c)[:5].tolist()}")
    return c.astype(bool)


# --------------------------------------------------------------------------------------------
# Team draft
# --------------------------------------------------------------------------------------------


def _first_unused(lists: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Item at the first unused index of each row (rows always have one)."""
    idx = np.argmax(~used, axis=1)
    return lists[np.arange(lists.shape[0]), idx]


def _mark(used: np.ndarray, lists: np.ndarray, chosen: np.ndarray) -> None:
    used |= lists == chosen[:, None]


def team_draft_interleave(
    list_a: Any,
    list_b: Any,
    k: int,
    rng: np.random.Generator | int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Team-draft interleaving of two policies' slates (Radlinski, Kurup & Joachims 2008).

    Parameters
    ----------
    list_a, list_b : ndarray of shape (n_sessions, K_a) and (n_sessions, K_b), int32
        The slates of policies A and B for the same sessions, best first; each row holds
        distinct item ids >= 0. The two lists may share items.
    k : int
        Length of the interleaved list, ``1 <= k <= min(K_a, K_b)``.
    rng : numpy.random.Generator or int or None
        Randomness of the coin flips.

    Returns
    -------
    items : ndarray of shape (n_sessions, k), int32
        The interleaved list to show; ``k`` distinct items per row.
    team : ndarray of shape (n_sessions, k), int8
        Which policy contributed each slot: 0 = A, 1 = B (log it as the ``team`` column).

    Raises
    ------
    ValidationError
        Lists that are not 2-D integer arrays of equal row count, rows with repeated items,
        negative ids, or ``k`` outside ``[1, min(K_a, K_b)]``.

    Notes
    -----
    At every slot, the team with fewer picks so far picks; when both have picked equally
    often a fair coin decides. The picking team adds its highest-ranked item not already in
    the interleaved list (an item both lists contain goes to whichever team picks it
    first). Because each pair of slots holds one pick of each team in random order, the
    team of a slot is independent of its position's examination, so clicks independent of
    the team give each team a 50% chance of winning a decisive session. With
    ``K_a, K_b >= k`` and distinct items per row, a team never runs out of items.

    References
    ----------
    .. [1] F. Radlinski, M. Kurup, T. Joachims. "How does clickthrough data reflect retrieval
       quality?" CIKM 2008.
    """
    a, b, k = _as_lists(list_a, list_b, k)
    gen = np.random.default_rng(rng)
    coins = np.empty((a.shape[0], k), dtype=bool)
    for slot in range(k):
        coins[:, slot] = gen.random(a.shape[0]) < 0.5  # one per row and slot: reproducible streams
    return _team_draft_given_coins(a, b, k, coins)


def _team_draft_given_coins(
    a: np.ndarray, b: np.ndarray, k: int, coins: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Team draft with given coins (n, k), bool: ``coins[s, j]`` = A picks at slot j on a tie.

    Only the coins of the even slots 0, 2, 4, ... are ever read: after each pair of slots both
    teams have picked equally often, and in between the team behind picks.
    """
    n = a.shape[0]
    items = np.empty((n, k), dtype=np.int32)
    team = np.empty((n, k), dtype=np.int8)
    used_a = np.zeros(a.shape, dtype=bool)
    used_b = np.zeros(b.shape, dtype=bool)
    picks_a = np.zeros(n, dtype=np.int64)
    picks_b = np.zeros(n, dtype=np.int64)
    for slot in range(k):
        a_picks = (picks_a < picks_b) | ((picks_a == picks_b) & coins[:, slot])
        chosen = np.where(a_picks, _first_unused(a, used_a), _first_unused(b, used_b))
        items[:, slot] = chosen
        team[:, slot] = np.where(a_picks, TEAM_A, TEAM_B)
        _mark(used_a, a, chosen)
        _mark(used_b, b, chosen)
        picks_a += a_picks
        picks_b += ~a_picks
    return items, team


def credit(team: Any, clicks: Any) -> np.ndarray:
    """Team-draft outcome of each session: the team with more clicked items wins.

    Parameters
    ----------
    team : ndarray of shape (n_sessions, k), int8
        0 = A, 1 = B, as returned by :func:`team_draft_interleave` (or
        :func:`balanced_interleave`, though balanced interleaving has its own
        :func:`balanced_credit`).
    clicks : ndarray of shape (n_sessions, k), bool
        Clicks on the interleaved list.

    Returns
    -------
    outcome : ndarray of shape (n_sessions,), int8
        +1 when A wins, -1 when B wins, 0 on a tie (including no click).

    Raises
    ------
    ValidationError
        When shapes differ, ``team`` holds values other than 0 and 1, or clicks are not 0/1.

    Notes
    -----
    ``outcome = sign(sum_j c_j [team_j = A] - sum_j c_j [team_j = B])``.

    References
    ----------
    .. [1] F. Radlinski, M. Kurup, T. Joachims. "How does clickthrough data reflect retrieval
       quality?" CIKM 2008.
    """
    t = np.asarray(team)
    if t.ndim != 2:
        raise ValidationError(f"team must be a 2-D array (n_sessions, k); got ndim={t.ndim}")
    if t.dtype == np.bool_ or not np.issubdtype(t.dtype, np.integer):
        raise ValidationError(f"team must hold integers 0 (A) and 1 (B); got dtype {t.dtype}")
    if t.size and ((t != TEAM_A) & (t != TEAM_B)).any():
        bad = t[(t != TEAM_A) & (t != TEAM_B)][0]
        raise ValidationError(f"team must hold 0 (A) or 1 (B); got {int(bad)}")
    c = _as_clicks(clicks, t.shape)
    clicks_a = (c & (t == TEAM_A)).sum(axis=1)
    clicks_b = (c & (t == TEAM_B)).sum(axis=1)
    return np.sign(clicks_a - clicks_b).astype(np.int8)


# --------------------------------------------------------------------------------------------
# Balanced interleaving
# --------------------------------------------------------------------------------------------


def balanced_interleave(
    list_a: Any,
    list_b: Any,
    k: int,
    rng: np.random.Generator | int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced interleaving of two slates (Joachims 2002, 2003).

    Parameters
    ----------
    list_a, list_b : ndarray of shape (n_sessions, K_a) and (n_sessions, K_b), int32
        The two policies' slates, best first, distinct item ids >= 0 per row.
    k : int
        Length of the interleaved list, ``1 <= k <= min(K_a, K_b)``.
    rng : numpy.random.Generator or int or None
        Randomness of the per-session coin (which list goes first).

    Returns
    -------
    items : ndarray of shape (n_sessions, k), int32
        The interleaved list.
    team : ndarray of shape (n_sessions, k), int8
        The list that contributed each item (0 = A, 1 = B); for logging only; the credit
        of balanced interleaving is :func:`balanced_credit`, which looks at ranks.

    Raises
    ------
    ValidationError
        As :func:`team_draft_interleave`.

    Notes
    -----
    Pointers ``p_a, p_b`` walk down both lists; list A advances when ``p_a < p_b`` or
    (``p_a == p_b`` and A won the session's coin), otherwise B. The item under the advancing
    pointer is appended unless already shown. The top ``m`` items of the result thus always
    contain the top ``ceil(m/2)`` or ``floor(m/2)`` of each list. Balanced interleaving is
    known to be biased when the lists overlap: with ``A = (a, b, c)``, ``B = (b, c, a)`` and
    one uniformly random click, B wins 2/3 of sessions (see the tests); prefer team draft for
    inference.

    References
    ----------
    .. [1] T. Joachims. "Optimizing search engines using clickthrough data." KDD 2002.
    .. [2] T. Joachims. "Evaluating retrieval performance using clickthrough data." In Text
       Mining, Physica/Springer, 2003.
    .. [3] K. Hofmann, S. Whiteson, M. de Rijke. "A probabilistic method for inferring
       preferences from clicks." CIKM 2011 (bias of balanced interleaving).
    """
    a, b, k = _as_lists(list_a, list_b, k)
    gen = np.random.default_rng(rng)
    return _balanced_given_first(a, b, k, gen.random(a.shape[0]) < 0.5)


def _balanced_given_first(
    a: np.ndarray, b: np.ndarray, k: int, a_first: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced interleaving with the per-session coin given: ``a_first`` (n,), bool."""
    n, ka = a.shape
    kb = b.shape[1]
    rows = np.arange(n)
    items = np.zeros((n, k), dtype=np.int32)
    team = np.zeros((n, k), dtype=np.int8)
    used_a = np.zeros(a.shape, dtype=bool)
    used_b = np.zeros(b.shape, dtype=bool)
    p_a = np.zeros(n, dtype=np.int64)
    p_b = np.zeros(n, dtype=np.int64)
    filled = np.zeros(n, dtype=np.int64)
    for _ in range(ka + kb):
        active = filled < k
        if not active.any():
            break
        take_a = (p_a < p_b) | ((p_a == p_b) & a_first)
        # a list cannot run out before k items are placed (distinct items, K >= k); guard anyway
        take_a = np.where(p_a >= ka, False, np.where(p_b >= kb, True, take_a))
        ia = np.minimum(p_a, ka - 1)
        ib = np.minimum(p_b, kb - 1)
        cand = np.where(take_a, a[rows, ia], b[rows, ib])
        seen = np.where(take_a, used_a[rows, ia], used_b[rows, ib])
        add = active & ~seen
        r = rows[add]
        items[r, filled[add]] = cand[add]
        team[r, filled[add]] = np.where(take_a[add], TEAM_A, TEAM_B)
        used_a[add] |= a[add] == cand[add, None]
        used_b[add] |= b[add] == cand[add, None]
        filled += add
        p_a += active & take_a
        p_b += active & ~take_a
    return items, team


def balanced_credit(items: Any, clicks: Any, list_a: Any, list_b: Any) -> np.ndarray:
    """Rank-based credit of balanced interleaving (Joachims 2003).

    Parameters
    ----------
    items : ndarray of shape (n_sessions, k), int32
        The interleaved list shown (from :func:`balanced_interleave`).
    clicks : ndarray of shape (n_sessions, k), bool
        Clicks on it.
    list_a, list_b : ndarray of shape (n_sessions, K_a) and (n_sessions, K_b), int32
        The original slates.

    Returns
    -------
    outcome : ndarray of shape (n_sessions,), int8
        +1 when A wins, -1 when B wins, 0 on a tie (including no click).

    Raises
    ------
    ValidationError
        On inconsistent shapes, non-0/1 clicks, or a shown item in neither list.

    Notes
    -----
    Let ``d`` be the lowest clicked item of the interleaved list and
    ``k* = min(rank_A(d), rank_B(d))`` (1-based; an item missing from a list has infinite
    rank). With ``h_A`` the number of clicked items among the top ``k*`` of A and ``h_B``
    likewise, ``outcome = sign(h_A - h_B)``.

    References
    ----------
    .. [1] T. Joachims. "Evaluating retrieval performance using clickthrough data." In Text
       Mining, Physica/Springer, 2003.
    """
    shown = np.asarray(items)
    if shown.ndim != 2:
        raise ValidationError(f"items must be a 2-D array (n_sessions, k); got ndim={shown.ndim}")
    a, b, _ = _as_lists(list_a, list_b, 1)
    if a.shape[0] != shown.shape[0]:
        raise ValidationError(
            f"items and the lists must have the same number of sessions; got {shown.shape[0]} and "
            f"{a.shape[0]}"
        )
    c = _as_clicks(clicks, shown.shape)
    n, k = shown.shape
    shown = shown.astype(np.int64)
    in_a = a[:, :, None] == shown[:, None, :]  # (n, K_a, k)
    in_b = b[:, :, None] == shown[:, None, :]
    orphan = ~(in_a.any(axis=1) | in_b.any(axis=1))
    if orphan.any():
        s, j = (int(x[0]) for x in np.nonzero(orphan))
        raise ValidationError(f"items[{s}, {j}] = {int(shown[s, j])} is in neither list_a nor list_b")
    any_click = c.any(axis=1)
    last = k - 1 - np.argmax(c[:, ::-1], axis=1)  # lowest clicked slot (valid if any_click)
    rows = np.arange(n)
    d = shown[rows, last]
    big = max(a.shape[1], b.shape[1]) + 1
    hit_a = a == d[:, None]
    hit_b = b == d[:, None]
    rank_a = np.where(hit_a.any(axis=1), np.argmax(hit_a, axis=1) + 1, big)
    rank_b = np.where(hit_b.any(axis=1), np.argmax(hit_b, axis=1) + 1, big)
    k_star = np.minimum(rank_a, rank_b)
    clicked_a = (in_a & c[:, None, :]).any(axis=2)  # (n, K_a): list_a item was clicked
    clicked_b = (in_b & c[:, None, :]).any(axis=2)
    h_a = (clicked_a & (np.arange(a.shape[1]) < k_star[:, None])).sum(axis=1)
    h_b = (clicked_b & (np.arange(b.shape[1]) < k_star[:, None])).sum(axis=1)
    return np.where(any_click, np.sign(h_a - h_b), 0).astype(np.int8)


# --------------------------------------------------------------------------------------------
# Exact distributions: every coin outcome, propensities, outcome probabilities under the PBM
# --------------------------------------------------------------------------------------------

METHODS: tuple[str, ...] = ("team_draft", "balanced")
"""Interleaving methods, as named in configs (``method = "team_draft"``)."""

#: Rows (sessions x coin outcomes) handled per block by the enumerating helpers.
_BLOCK_ROWS = 1 << 17


def _check_method(method: Any) -> str:
    if method not in METHODS:
        raise ValidationError(f"method must be one of {list(METHODS)}; got {method!r}")
    return str(method)


def interleave(
    method: str, list_a: Any, list_b: Any, k: int, rng: np.random.Generator | int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Interleave two slates with the named method (:func:`team_draft_interleave` or
    :func:`balanced_interleave`); returns ``(items, team)``, each of shape (n_sessions, k).

    Raises
    ------
    ValidationError
        Unknown ``method``, or as the two functions.
    """
    fn = team_draft_interleave if _check_method(method) == "team_draft" else balanced_interleave
    return fn(list_a, list_b, k, rng)


def coin_patterns(method: str, k: int) -> np.ndarray:
    """Every coin outcome of one session, each equally likely.

    Parameters
    ----------
    method : {"team_draft", "balanced"}
    k : int
        Length of the interleaved list.

    Returns
    -------
    coins : ndarray of shape (P, k), bool
        Team draft: ``P = 2^ceil(k/2)``, the coins of the even slots (the only ones ever read;
        odd slots are False). Balanced: ``P = 2``; column 0 says whether A goes first.

    Raises
    ------
    ValidationError
        Unknown ``method`` or ``k < 1``.
    """
    _check_method(method)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValidationError(f"k must be an int >= 1; got {k!r}")
    if method == "balanced":
        coins = np.zeros((2, k), dtype=bool)
        coins[0, 0] = True
        return coins
    c = (k + 1) // 2
    bits = ((np.arange(2**c)[:, None] >> np.arange(c)) & 1).astype(bool)
    coins = np.zeros((2**c, k), dtype=bool)
    coins[:, 0::2] = bits
    return coins


def _given_coins(method: str, a: np.ndarray, b: np.ndarray, k: int, coins: np.ndarray):
    if method == "team_draft":
        return _team_draft_given_coins(a, b, k, coins)
    return _balanced_given_first(a, b, k, coins[:, 0])


def enumerate_interleavings(
    list_a: Any, list_b: Any, k: int, method: str, coins: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The interleaved list of every session under every coin outcome.

    Parameters
    ----------
    list_a, list_b : ndarray of shape (n_sessions, K_a) and (n_sessions, K_b), int
        As :func:`team_draft_interleave`.
    k : int
        Length of the interleaved list.
    method : {"team_draft", "balanced"}
    coins : ndarray of shape (P, k), bool, optional
        Coin outcomes to run (default: all of them, :func:`coin_patterns`, equally likely).

    Returns
    -------
    items, team : ndarray of shape (n_sessions, P, k), int32 and int8

    Raises
    ------
    ValidationError
        As :func:`team_draft_interleave`, or an unknown ``method``.
    """
    a, b, k = _as_lists(list_a, list_b, k)
    method = _check_method(method)
    pats = coin_patterns(method, k) if coins is None else np.asarray(coins, dtype=bool)
    n, p = a.shape[0], pats.shape[0]
    items = np.empty((n, p, k), dtype=np.int32)
    team = np.empty((n, p, k), dtype=np.int8)
    step = max(1, _BLOCK_ROWS // p)
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        m = sl.stop - sl.start
        it, tm = _given_coins(
            method, np.repeat(a[sl], p, axis=0), np.repeat(b[sl], p, axis=0), k, np.tile(pats, (m, 1))
        )
        items[sl], team[sl] = it.reshape(m, p, k), tm.reshape(m, p, k)
    return items, team


def interleaving_propensities(
    list_a: Any, list_b: Any, items: Any, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Exact propensities of shown interleaved lists, given the two input slates.

    Parameters
    ----------
    list_a, list_b : ndarray of shape (n_sessions, K_a) and (n_sessions, K_b), int
        The slates that were interleaved (fixed: the randomness is the interleaving's coins).
    items : ndarray of shape (n_sessions, k), int
        The interleaved lists shown.
    method : {"team_draft", "balanced"}

    Returns
    -------
    pscore : ndarray of shape (n_sessions, k), float64
        ``P(items[s, j] at position j | list_a[s], list_b[s])``: the share of the equally
        likely coin outcomes (:func:`coin_patterns`) that put the item there; ``>= 1/P`` for a
        list that was produced from these slates.
    inclusion : ndarray of shape (n_sessions, k), float64
        ``P(items[s, j] anywhere in the list | list_a[s], list_b[s])``.

    Raises
    ------
    ValidationError
        Inconsistent shapes or an unknown ``method``.

    Notes
    -----
    Team draft has ``2^ceil(k/2)`` coin outcomes (32 for k = 10), balanced interleaving 2;
    every outcome is run (:func:`enumerate_interleavings`), so the result is exact. With
    stochastic input slates the unconditional propensity is the mean of this over the slates'
    distribution (:class:`simulator.policies.interleaving.InterleavingPolicy` estimates it).
    """
    shown = np.asarray(items)
    _, _, k = _as_lists(list_a, list_b, int(shown.shape[1]) if shown.ndim == 2 else 1)
    if shown.ndim != 2 or shown.shape[0] != np.shape(list_a)[0]:
        raise ValidationError(
            f"items must have shape (n_sessions = {np.shape(list_a)[0]}, k); got {shown.shape}"
        )
    every, _ = enumerate_interleavings(list_a, list_b, k, method)
    same = every == shown[:, None, :]  # (n, P, k)
    pscore = same.mean(axis=1)
    inclusion = (every[:, :, :, None] == shown[:, None, None, :]).any(axis=2).mean(axis=1)
    return pscore, inclusion


def list_ranks(items: Any, lists: Any) -> np.ndarray:
    """0-based rank of each shown item in a policy's slate, -1 where the slate lacks it.

    Parameters
    ----------
    items : ndarray of shape (n_sessions, k), int
    lists : ndarray of shape (n_sessions, K), int

    Returns
    -------
    ndarray of shape (n_sessions, k), int16
    """
    shown, lst = np.asarray(items), np.asarray(lists)
    hit = shown[:, :, None] == lst[:, None, :]  # (n, k, K)
    return np.where(hit.any(axis=2), hit.argmax(axis=2), -1).astype(np.int16)


def _pmf_step(pmf: np.ndarray, q: np.ndarray, inc: np.ndarray) -> np.ndarray:
    """One Bernoulli(q) increment of ``inc`` in {-1, 0, 1} (rows) on a pmf over D (centred)."""
    moved = pmf * q[:, None]
    out = pmf - moved
    inc = inc[:, None]
    out[:, 1:] += moved[:, :-1] * (inc == 1)
    out[:, :-1] += moved[:, 1:] * (inc == -1)
    out += moved * (inc == 0)
    return out


def _team_draft_outcome(team: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(rows, 3) P(A wins), P(B wins), P(tie) of team-draft credit with independent clicks.

    The clicks on A's slots and on B's slots are independent Poisson-binomials (each team has
    at most ``ceil(k/2)`` slots); A wins when ``X_A > X_B``.
    """
    rows, k = q.shape
    m = (k + 1) // 2 + 1
    pmfs = []
    for code in (TEAM_A, TEAM_B):
        qt = np.where(team == code, q, 0.0)
        pmf = np.zeros((rows, m))
        pmf[:, 0] = 1.0
        for j in range(k):
            moved = pmf[:, :-1] * qt[:, j : j + 1]
            pmf *= 1.0 - qt[:, j : j + 1]
            pmf[:, 1:] += moved
        pmfs.append(pmf)
    pa, pb = pmfs
    cdf_b = np.cumsum(pb, axis=1)  # P(X_B <= x)
    a_wins = (pa[:, 1:] * cdf_b[:, :-1]).sum(axis=1)  # Σ_x P(X_A = x) P(X_B < x)
    tie = (pa * pb).sum(axis=1)
    return np.stack([a_wins, 1.0 - a_wins - tie, tie], axis=1)


def _balanced_outcome(rank_a: np.ndarray, rank_b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(rows, 3) outcome probabilities of balanced credit: condition on the lowest click L."""
    rows, k = q.shape
    big = np.iinfo(np.int32).max
    rank_a, rank_b = rank_a.astype(np.int64), rank_b.astype(np.int64)
    ra = np.where(rank_a >= 0, rank_a + 1, big)  # 1-based, absent = infinite
    rb = np.where(rank_b >= 0, rank_b + 1, big)
    out = np.zeros((rows, 3))
    none_below = np.ones(rows)  # P(no click below slot L), built from the bottom up
    for last in range(k - 1, -1, -1):
        p_last = q[:, last] * none_below
        k_star = np.minimum(ra[:, last], rb[:, last])
        inc = (ra[:, : last + 1] <= k_star[:, None]).astype(np.int64) - (rb[:, : last + 1] <= k_star[:, None])
        pmf = np.zeros((rows, 2 * k + 1))
        pmf[np.arange(rows), k + inc[:, last]] = 1.0  # the lowest click itself
        for j in range(last):
            pmf = _pmf_step(pmf, q[:, j], inc[:, j])
        out[:, 0] += p_last * pmf[:, k + 1 :].sum(axis=1)
        out[:, 1] += p_last * pmf[:, :k].sum(axis=1)
        out[:, 2] += p_last * pmf[:, k]
        none_below = none_below * (1.0 - q[:, last])
    out[:, 2] += none_below  # no click at all: a tie
    return out


def pbm_outcome_probabilities(
    list_a: Any,
    list_b: Any,
    relevance_a: Any,
    relevance_b: Any,
    examination: Any,
    method: str,
) -> np.ndarray:
    """Exact probabilities that A wins, B wins or they tie, per session, under the PBM.

    Parameters
    ----------
    list_a, list_b : ndarray of shape (n_sessions, K), int
        The two policies' slates (fixed).
    relevance_a, relevance_b : ndarray of shape (n_sessions, K), float
        True relevance ``r(u, i)`` of each slate's items for the session's user.
    examination : ndarray of shape (k,), float
        ``P(E_j)`` of the interleaved list's slots; ``k <= K``.
    method : {"team_draft", "balanced"}
        Team-draft credit (:func:`credit`) or balanced credit (:func:`balanced_credit`).

    Returns
    -------
    ndarray of shape (n_sessions, 3), float64
        ``P(A wins), P(B wins), P(tie)`` (rows sum to 1), over the interleaving's coins and
        the clicks.

    Raises
    ------
    ValidationError
        Inconsistent shapes, relevance outside [0, 1], examination outside [0, 1], unknown
        ``method``.

    Notes
    -----
    Position-based model (Richardson et al. 2007; Craswell et al. 2008): slot ``j`` is clicked
    independently with ``q_j = P(E_j) · r(u, i_j)``. Every coin outcome is enumerated
    (:func:`enumerate_interleavings`). Team draft: ``D = Σ_j c_j (+1 if team_j = A else −1)``,
    whose distribution follows from one convolution per slot; A wins when ``D > 0``.
    Balanced (Joachims 2003): condition on the lowest click ``L`` (probability
    ``q_L Π_{j>L} (1 − q_j)``), which fixes ``k* = min(rank_A(i_L), rank_B(i_L))``; each
    clicked slot ``j <= L`` then adds ``[rank_A(i_j) <= k*] − [rank_B(i_j) <= k*]`` to
    ``h_A − h_B``. Summing over the coins and ``L`` gives the outcome probabilities exactly.
    The per-session outcomes of an experiment are then i.i.d. categorical with the mean of
    these rows over the session population.
    """
    a, b, _ = _as_lists(list_a, list_b, 1)
    method = _check_method(method)
    e = np.asarray(examination, dtype=np.float64)
    if e.ndim != 1 or not 1 <= e.size <= min(a.shape[1], b.shape[1]):
        raise ValidationError(
            f"examination must be a 1-D array of k in [1, min(K_a, K_b)] values; got shape {e.shape}"
        )
    if ((e < 0) | (e > 1)).any():
        raise ValidationError(f"examination must be probabilities in [0, 1]; got {e.tolist()}")
    k = int(e.size)
    rel = []
    for name, r, lst in (("relevance_a", relevance_a, a), ("relevance_b", relevance_b, b)):
        r = np.asarray(r, dtype=np.float64)
        if r.shape != lst.shape:
            raise ValidationError(f"{name} must have the shape of its list {lst.shape}; got {r.shape}")
        if r.size and (not np.isfinite(r).all() or r.min() < 0 or r.max() > 1):
            raise ValidationError(f"{name} must be probabilities in [0, 1]")
        rel.append(r)
    n = a.shape[0]
    pats = coin_patterns(method, k)
    p = pats.shape[0]
    out = np.empty((n, 3))
    step = max(1, _BLOCK_ROWS // p)
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        m = sl.stop - sl.start
        aa, bb = np.repeat(a[sl], p, axis=0), np.repeat(b[sl], p, axis=0)
        items, team = _given_coins(method, aa, bb, k, np.tile(pats, (m, 1)))
        ra, rb = list_ranks(items, aa), list_ranks(items, bb)
        rel_a = np.repeat(rel[0][sl], p, axis=0)
        rel_b = np.repeat(rel[1][sl], p, axis=0)
        rows = np.arange(m * p)[:, None]
        r_item = np.where(ra >= 0, rel_a[rows, np.maximum(ra, 0)], rel_b[rows, np.maximum(rb, 0)])
        q = e[None, :] * r_item
        probs = _team_draft_outcome(team, q) if method == "team_draft" else _balanced_outcome(ra, rb, q)
        out[sl] = probs.reshape(m, p, 3).mean(axis=1)
    return out


def credit_from_log(
    session_id: Any,
    position: Any,
    click: Any,
    team: Any = None,
    rank_a: Any = None,
    rank_b: Any = None,
    method: str = "team_draft",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-session outcomes of an interleaving run, from its impression log's columns.

    Parameters
    ----------
    session_id, position : ndarray of shape (n_rows,), int
        The log's ``session_id`` and ``position`` columns (rows in any order).
    click : ndarray of shape (n_rows,), bool
    team : ndarray of shape (n_rows,), int8
        The ``team`` column (0 = A, 1 = B); needed for ``method = "team_draft"``.
    rank_a, rank_b : ndarray of shape (n_rows,), int16
        The ``rank_a`` / ``rank_b`` columns (0-based rank of the item in A's / B's slate, -1
        when absent); needed for ``method = "balanced"``.
    method : {"team_draft", "balanced"}

    Returns
    -------
    sessions : ndarray of shape (n_sessions,), int64
        Sorted unique session ids.
    outcome : ndarray of shape (n_sessions,), int8
        +1 A wins, -1 B wins, 0 tie, as :func:`credit` / :func:`balanced_credit` on the
        session's shown list; feed it to :func:`interleaving_test`.

    Raises
    ------
    ValidationError
        Unequal lengths, or the columns the method needs are missing.

    Notes
    -----
    Team draft: ``sign(Σ click·[team = 0] − Σ click·[team = 1])`` per session. Balanced: with
    ``d`` the clicked row of highest ``position`` and ``k* = min(rank_a(d), rank_b(d)) + 1``,
    ``h_A`` counts clicked rows with ``0 <= rank_a < k*`` (likewise ``h_B``), outcome
    ``sign(h_A − h_B)``. In pandas, team draft is
    ``log.assign(d=log.click * (1 - 2 * log.team)).groupby("session_id").d.sum().pipe(np.sign)``.
    """
    method = _check_method(method)
    sid = np.asarray(session_id, dtype=np.int64)
    pos = np.asarray(position, dtype=np.int64)
    clk = np.asarray(click).astype(bool)
    cols = {"position": pos, "click": clk}
    if method == "team_draft":
        if team is None:
            raise ValidationError("team-draft credit needs the log's team column")
        cols["team"] = np.asarray(team)
    else:
        if rank_a is None or rank_b is None:
            raise ValidationError("balanced credit needs the log's rank_a and rank_b columns")
        cols["rank_a"], cols["rank_b"] = np.asarray(rank_a), np.asarray(rank_b)
    for name, col in cols.items():
        if col.shape != sid.shape:
            raise ValidationError(f"{name} must have the shape of session_id {sid.shape}; got {col.shape}")
    sessions, code = np.unique(sid, return_inverse=True)
    n = sessions.size
    if method == "team_draft":
        sign = np.where(cols["team"] == TEAM_A, 1, -1)
        diff = np.bincount(code, weights=clk * sign, minlength=n)
        return sessions, np.sign(diff).astype(np.int8)
    ra = cols["rank_a"].astype(np.int64)
    rb = cols["rank_b"].astype(np.int64)
    big = np.iinfo(np.int32).max
    ra1 = np.where(ra >= 0, ra + 1, big)
    rb1 = np.where(rb >= 0, rb + 1, big)
    lowest = np.full(n, -1, dtype=np.int64)
    np.maximum.at(lowest, code[clk], pos[clk])
    is_d = clk & (pos == lowest[code])
    k_star = np.full(n, big, dtype=np.int64)
    np.minimum.at(k_star, code[is_d], np.minimum(ra1, rb1)[is_d])
    h_a = np.bincount(code, weights=clk & (ra1 <= k_star[code]), minlength=n)
    h_b = np.bincount(code, weights=clk & (rb1 <= k_star[code]), minlength=n)
    return sessions, np.sign(h_a - h_b).astype(np.int8)


# --------------------------------------------------------------------------------------------
# Test
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InterleavingResult:
    """Outcome of an interleaving experiment.

    Attributes
    ----------
    n_sessions, wins_a, wins_b, ties : int
        Session counts (ties include sessions without clicks).
    win_rate : float
        ``wins_a / (wins_a + wins_b)``: share of decisive sessions that A won.
    ci_lower, ci_upper : float
        Clopper-Pearson (exact) interval of ``win_rate`` at level ``confidence``.
    p_value : float
        Two-sided exact binomial (sign) test of ``win_rate = 0.5``.
    confidence : float
    delta : float
        ``(wins_a + ties / 2) / n_sessions - 1/2`` (Chapelle et al. 2012), in [-1/2, 1/2];
        positive when A is preferred.
    """

    n_sessions: int
    wins_a: int
    wins_b: int
    ties: int
    win_rate: float
    ci_lower: float
    ci_upper: float
    p_value: float
    confidence: float
    delta: float

    @property
    def preferred(self) -> str:
        """``"A"``, ``"B"`` or ``"none"`` (not significant at ``1 - confidence``)."""
        if self.p_value >= 1.0 - self.confidence:
            return "none"
        return "A" if self.win_rate > 0.5 else "B"


def interleaving_test(outcomes: Any, *, confidence: float = 0.95) -> InterleavingResult:
    """Sign test of per-session interleaving outcomes.

    Parameters
    ----------
    outcomes : ndarray of shape (n_sessions,), int8
        +1 (A wins), -1 (B wins), 0 (tie), as returned by :func:`credit` or
        :func:`balanced_credit`.
    confidence : float, default 0.95
        Level of the interval.

    Returns
    -------
    InterleavingResult

    Raises
    ------
    ValidationError
        Outcomes not 1-D or outside {-1, 0, 1}; ``confidence`` outside (0, 1); no decisive
        session ("not identifiable": the win rate is 0/0).

    Notes
    -----
    Ties carry no information on which ranker is better and are dropped; the number of A wins
    among the ``m = wins_a + wins_b`` decisive sessions is ``Binomial(m, 1/2)`` when neither
    ranker is preferred, tested with ``scipy.stats.binomtest``. Sessions are assumed
    independent (one session per user, or accept some over-dispersion).

    References
    ----------
    .. [1] O. Chapelle, T. Joachims, F. Radlinski, Y. Yue. "Large-scale validation and analysis
       of interleaved search evaluation." ACM TOIS 30(1), 2012.
    """
    out = np.asarray(outcomes)
    if out.ndim != 1:
        raise ValidationError(f"outcomes must be a 1-D array (one per session); got ndim={out.ndim}")
    if out.dtype == np.bool_ or not np.issubdtype(out.dtype, np.integer):
        raise ValidationError(f"outcomes must hold integers -1, 0, +1; got dtype {out.dtype}")
    if out.size and ((out < -1) | (out > 1)).any():
        bad = out[(out < -1) | (out > 1)][0]
        raise ValidationError(f"outcomes must hold -1, 0 or +1; got {int(bad)}")
    if isinstance(confidence, bool) or not isinstance(confidence, float | int):
        raise ValidationError(f"confidence must be a float in (0, 1); got {confidence!r}")
    if not 0.0 < confidence < 1.0:
        raise ValidationError(f"confidence must be a float in (0, 1); got {confidence}")
    n = int(out.shape[0])
    wins_a = int((out == 1).sum())
    wins_b = int((out == -1).sum())
    ties = n - wins_a - wins_b
    decisive = wins_a + wins_b
    if decisive == 0:
        raise ValidationError(
            f"not identifiable: no decisive session among {n} (all ties or no clicks); the win "
            "rate is undefined"
        )
    test = stats.binomtest(wins_a, decisive, p=0.5, alternative="two-sided")
    # Clopper-Pearson by its beta-quantile form (what proportion_ci(method="exact") solves for
    # numerically, ~50x slower): lower = B(a/2; x, m-x+1), upper = B(1-a/2; x+1, m-x)
    tail = (1.0 - float(confidence)) / 2.0
    low = 0.0 if wins_a == 0 else float(stats.beta.ppf(tail, wins_a, decisive - wins_a + 1))
    high = 1.0 if wins_a == decisive else float(stats.beta.ppf(1.0 - tail, wins_a + 1, decisive - wins_a))
    return InterleavingResult(
        n_sessions=n,
        wins_a=wins_a,
        wins_b=wins_b,
        ties=ties,
        win_rate=wins_a / decisive,
        ci_lower=low,
        ci_upper=high,
        p_value=float(test.pvalue),
        confidence=float(confidence),
        delta=(wins_a + 0.5 * ties) / n - 0.5,
    )
