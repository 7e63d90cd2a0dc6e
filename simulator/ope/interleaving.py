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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from simulator.errors import ValidationError

__all__ = [
    "TEAM_A",
    "TEAM_B",
    "InterleavingResult",
    "balanced_credit",
    "balanced_interleave",
    "credit",
    "interleaving_test",
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
    n = a.shape[0]
    items = np.empty((n, k), dtype=np.int32)
    team = np.empty((n, k), dtype=np.int8)
    used_a = np.zeros(a.shape, dtype=bool)
    used_b = np.zeros(b.shape, dtype=bool)
    picks_a = np.zeros(n, dtype=np.int64)
    picks_b = np.zeros(n, dtype=np.int64)
    for slot in range(k):
        coin = gen.random(n) < 0.5  # drawn for every row every slot: reproducible streams
        a_picks = (picks_a < picks_b) | ((picks_a == picks_b) & coin)
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
    n, ka = a.shape
    kb = b.shape[1]
    rows = np.arange(n)
    a_first = gen.random(n) < 0.5
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
    ci = test.proportion_ci(confidence_level=float(confidence), method="exact")
    return InterleavingResult(
        n_sessions=n,
        wins_a=wins_a,
        wins_b=wins_b,
        ties=ties,
        win_rate=wins_a / decisive,
        ci_lower=float(ci.low),
        ci_upper=float(ci.high),
        p_value=float(test.pvalue),
        confidence=float(confidence),
        delta=(wins_a + 0.5 * ties) / n - 0.5,
    )
