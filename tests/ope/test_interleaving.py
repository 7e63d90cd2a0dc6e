"""Team-draft and balanced interleaving: structure, fairness under random clicks, power.

Simulations: a catalog of ``N_ITEMS = 40`` items, two policies' slates of ``K = 10`` items
each drawn from it per session (so the lists overlap: ~2.5 shared items per session), an
interleaved list of ``k = 6``. Seeds are stated at each call.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from simulator.errors import ValidationError
from simulator.ope.interleaving import (
    TEAM_A,
    TEAM_B,
    balanced_credit,
    balanced_interleave,
    credit,
    interleaving_test,
    team_draft_interleave,
)

N_ITEMS = 40
K = 10
k = 6


def _random_slates(rng: np.random.Generator, n: int, n_items: int = N_ITEMS, size: int = K):
    """``n`` rows of ``size`` distinct items from ``n_items``, in random order."""
    return rng.random((n, n_items)).argpartition(size, axis=1)[:, :size].astype(np.int32)


def _first_unused(lst, shown):
    return next(x for x in lst if x not in shown)


# ------------------------------------------------------------------------------------------
# Team draft: structure
# ------------------------------------------------------------------------------------------


def test_team_draft_follows_the_algorithm_row_by_row():
    rng = np.random.default_rng(1)
    a, b = _random_slates(rng, 500), _random_slates(rng, 500)
    items, team = team_draft_interleave(a, b, k, rng=2)
    assert items.shape == team.shape == (500, k)
    assert items.dtype == np.int32 and team.dtype == np.int8
    for s in range(500):
        row = items[s].tolist()
        assert len(set(row)) == k  # k distinct items
        picks = {TEAM_A: 0, TEAM_B: 0}
        for j in range(k):
            t = int(team[s, j])
            # the team with fewer picks picks (ties go to the coin)
            assert picks[t] <= picks[1 - t]
            # ... its highest-ranked item not shown yet
            own = a[s] if t == TEAM_A else b[s]
            assert row[j] == _first_unused(own.tolist(), row[:j])
            picks[t] += 1
        # each team's items appear in its own list's order
        for t, own in ((TEAM_A, a[s]), (TEAM_B, b[s])):
            ranks = [own.tolist().index(x) for x in items[s][team[s] == t]]
            assert ranks == sorted(ranks)
        assert abs(picks[TEAM_A] - picks[TEAM_B]) <= 1


def test_team_draft_with_identical_lists_shows_the_list_itself():
    rng = np.random.default_rng(3)
    a = _random_slates(rng, 200)
    items, team = team_draft_interleave(a, a.copy(), k, rng=4)
    np.testing.assert_array_equal(items, a[:, :k])
    # teams are still drawn: both appear, balanced per row
    assert set(np.unique(team)) == {TEAM_A, TEAM_B}
    assert np.all(np.abs((team == TEAM_A).sum(axis=1) - (team == TEAM_B).sum(axis=1)) <= 1)


def test_team_draft_is_deterministic_under_a_seed_and_takes_k_up_to_k_min():
    rng = np.random.default_rng(5)
    a, b = _random_slates(rng, 100), _random_slates(rng, 100, size=7)
    first = team_draft_interleave(a, b, 7, rng=6)
    second = team_draft_interleave(a, b, 7, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_team_draft_first_pick_is_a_fair_coin():
    # Over n = 20_000 sessions the first slot goes to A with probability 1/2.
    rng = np.random.default_rng(7)
    n = 20_000
    a, b = _random_slates(rng, n), _random_slates(rng, n)
    _, team = team_draft_interleave(a, b, k, rng=8)
    assert stats.binomtest(int((team[:, 0] == TEAM_A).sum()), n).pvalue > 0.01


# ------------------------------------------------------------------------------------------
# Credit and the test
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("team", "clicks", "expected"),
    [
        ([[0, 1, 0]], [[1, 1, 1]], [1]),  # A 2 clicks, B 1
        ([[0, 1, 0]], [[0, 1, 0]], [-1]),
        ([[0, 1, 1, 0]], [[1, 1, 0, 0]], [0]),  # 1 - 1
        ([[1, 0]], [[0, 0]], [0]),  # no click: tie
        ([[0, 1], [1, 0]], [[1, 0], [1, 0]], [1, -1]),
    ],
)
def test_credit_table(team, clicks, expected):
    out = credit(np.array(team, dtype=np.int8), np.array(clicks, dtype=bool))
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, expected)


def test_interleaving_test_numbers():
    outcomes = np.array([1] * 60 + [-1] * 40 + [0] * 10, dtype=np.int8)
    res = interleaving_test(outcomes, confidence=0.95)
    assert (res.n_sessions, res.wins_a, res.wins_b, res.ties) == (110, 60, 40, 10)
    assert res.win_rate == pytest.approx(0.6)
    ref = stats.binomtest(60, 100)
    assert res.p_value == pytest.approx(ref.pvalue)
    ci = ref.proportion_ci(0.95, method="exact")
    assert (res.ci_lower, res.ci_upper) == pytest.approx((ci.low, ci.high))
    # delta = (60 + 10/2) / 110 - 1/2
    assert res.delta == pytest.approx(65 / 110 - 0.5)
    # p = 0.057 >= 1 - 0.95: not significant
    assert res.preferred == "none"
    assert interleaving_test(outcomes, confidence=0.90).preferred == "A"


def test_interleaving_test_preferred_rule():
    assert interleaving_test(np.array([1] * 100 + [-1] * 50)).preferred == "A"
    assert interleaving_test(np.array([1] * 50 + [-1] * 100)).preferred == "B"
    assert interleaving_test(np.array([1, -1] * 50)).preferred == "none"


# ------------------------------------------------------------------------------------------
# Fairness and power (simulated)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("click_model", ["uniform", "position_biased"])
def test_team_draft_is_fair_under_clicks_independent_of_team(click_model):
    # n = 20_000 sessions (seed 11); clicks ignore the items and teams: either Bernoulli(0.2)
    # everywhere, or Bernoulli(0.5 / (j + 1)) at slot j (position bias but no relevance).
    # Under H0 the wins of A among decisive sessions are Binomial(m, 1/2): accept at 1%.
    rng = np.random.default_rng(11)
    n = 20_000
    a, b = _random_slates(rng, n), _random_slates(rng, n)
    _, team = team_draft_interleave(a, b, k, rng)
    p = 0.2 if click_model == "uniform" else 0.5 / np.arange(1, k + 1)
    clicks = rng.random((n, k)) < p
    res = interleaving_test(credit(team, clicks), confidence=0.99)
    assert res.ci_lower <= 0.5 <= res.ci_upper, res
    assert res.p_value > 0.01
    assert res.ties > 0 and res.wins_a + res.wins_b > n / 3


def _relevance_world(seed: int, n: int):
    rng = np.random.default_rng(seed)
    relevance = rng.beta(1.0, 3.0, size=N_ITEMS)
    candidates = _random_slates(rng, n, size=20)
    good = np.take_along_axis(candidates, np.argsort(-relevance[candidates], axis=1), axis=1)
    bad = rng.permuted(candidates, axis=1)  # same candidates, random order
    return rng, relevance, good[:, :K], bad[:, :K]


def test_team_draft_credit_detects_the_better_ranker():
    # 5_000 sessions (seed 21); PBM clicks: examination 1/(j+1), relevance ~ Beta(1, 3).
    # A ranks 20 candidates by relevance, B shuffles them: A must win clearly.
    rng, relevance, good, bad = _relevance_world(21, 5_000)
    items, team = team_draft_interleave(good, bad, k, rng)
    clicks = rng.random(items.shape) < relevance[items] / np.arange(1, k + 1)
    res = interleaving_test(credit(team, clicks))
    assert res.preferred == "A" and res.win_rate > 0.6 and res.p_value < 1e-6
    # swapping the roles flips the verdict
    items, team = team_draft_interleave(bad, good, k, rng)
    clicks = rng.random(items.shape) < relevance[items] / np.arange(1, k + 1)
    assert interleaving_test(credit(team, clicks)).preferred == "B"


# ------------------------------------------------------------------------------------------
# Balanced interleaving
# ------------------------------------------------------------------------------------------


def test_balanced_interleave_structure():
    rng = np.random.default_rng(31)
    a, b = _random_slates(rng, 400), _random_slates(rng, 400)
    items, team = balanced_interleave(a, b, k, rng=32)
    for s in range(400):
        row = items[s].tolist()
        assert len(set(row)) == k
        for m in range(1, k + 1):
            # the top m of the interleaving hold the top ceil(m/2) of one list and the top
            # floor(m/2) of the other (more when the lists share items)
            top = set(row[:m])
            in_a = next(j for j in range(K + 1) if j == K or a[s, j] not in top)
            in_b = next(j for j in range(K + 1) if j == K or b[s, j] not in top)
            assert max(in_a, in_b) >= (m + 1) // 2 and min(in_a, in_b) >= m // 2
        # team marks the list that contributed the item
        for j in range(k):
            own = a[s] if team[s, j] == TEAM_A else b[s]
            assert row[j] in own.tolist()


def test_balanced_interleave_by_hand():
    a = np.array([[1, 2, 3], [1, 2, 3]])
    b = np.array([[2, 3, 1], [2, 3, 1]])
    # 40 sessions: both coin outcomes occur
    items, _ = balanced_interleave(np.repeat(a, 20, 0), np.repeat(b, 20, 0), 3, rng=0)
    rows = {tuple(r) for r in items.tolist()}
    # A first: 1 (A), 2 (B), A's 2 is shown -> skip, 3 (B); B first: 2, 1, 3
    assert rows == {(1, 2, 3), (2, 1, 3)}


@pytest.mark.parametrize(
    ("shown", "clicks", "expected"),
    [
        # A = (1, 2, 3), B = (2, 3, 1)
        ([1, 2, 3], [1, 0, 0], 1),  # lowest click 1: k* = 1; A's top-1 {1} clicked, B's {2} not
        ([1, 2, 3], [0, 1, 0], -1),  # lowest click 2: k* = 1; B's top-1 {2}
        ([1, 2, 3], [0, 0, 1], -1),  # lowest click 3: k* = 2; A {1, 2}: 0, B {2, 3}: 1
        ([1, 2, 3], [1, 0, 1], 0),  # k* = 2; A {1, 2}: 1, B {2, 3}: 1
        ([1, 2, 3], [0, 0, 0], 0),
    ],
)
def test_balanced_credit_table(shown, clicks, expected):
    out = balanced_credit(
        np.array([shown]),
        np.array([clicks], dtype=bool),
        np.array([[1, 2, 3]]),
        np.array([[2, 3, 1]]),
    )
    np.testing.assert_array_equal(out, [expected])


def test_balanced_interleaving_is_biased_on_overlapping_lists_team_draft_is_not():
    # A = (1, 2, 3), B = (2, 3, 1), one uniformly random click per session (independent of
    # the items): balanced credit gives B 2 of 3 decisive sessions (see the table above),
    # team draft 1/2. n = 30_000 (seed 41).
    rng = np.random.default_rng(41)
    n = 30_000
    a = np.tile([1, 2, 3], (n, 1))
    b = np.tile([2, 3, 1], (n, 1))
    clicks = np.zeros((n, 3), dtype=bool)
    clicks[np.arange(n), rng.integers(0, 3, size=n)] = True
    items, _ = balanced_interleave(a, b, 3, rng)
    balanced = interleaving_test(balanced_credit(items, clicks, a, b))
    assert balanced.win_rate == pytest.approx(1 / 3, abs=0.01)
    _, team = team_draft_interleave(a, b, 3, rng)
    assert interleaving_test(credit(team, clicks)).p_value > 0.01


def test_balanced_credit_detects_the_better_ranker():
    rng, relevance, good, bad = _relevance_world(51, 5_000)
    items, _ = balanced_interleave(good, bad, k, rng)
    clicks = rng.random(items.shape) < relevance[items] / np.arange(1, k + 1)
    res = interleaving_test(balanced_credit(items, clicks, good, bad))
    assert res.preferred == "A" and res.p_value < 1e-6


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

_A = np.array([[1, 2, 3], [4, 5, 6]])
_B = np.array([[3, 2, 1], [6, 7, 8]])


@pytest.mark.parametrize("fn", [team_draft_interleave, balanced_interleave])
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"list_a": np.array([1, 2, 3])}, ValidationError, "list_a must be a 2-D array"),
        ({"list_b": _B[:1]}, ValidationError, "same number of sessions; got 2 and 1"),
        ({"list_a": np.array([[1, 1, 2], [4, 5, 6]])}, ValidationError, "row 0 repeats an item"),
        ({"list_b": np.array([[3, 2, -1], [6, 7, 8]])}, ValidationError, "padding"),
        ({"list_a": _A.astype(float)}, ValidationError, "integer item ids"),
        ({"k": 4}, ValidationError, r"k must be an int in \[1, min\(K_a, K_b\)\] = \[1, 3\]"),
        ({"k": 0}, ValidationError, r"k must be an int in \[1"),
        ({"k": 2.0}, ValidationError, "k must be an int"),
    ],
)
def test_interleave_bad_input(fn, kwargs, error, match):
    base = {"list_a": _A, "list_b": _B, "k": 3, "rng": 0}
    base.update(kwargs)
    with pytest.raises(error, match=match):
        fn(**base)


@pytest.mark.parametrize(
    ("fn", "args", "match"),
    [
        (credit, ([[0, 2]], [[1, 0]]), "team must hold 0 .A. or 1 .B.; got 2"),
        (credit, ([[0, 1]], [[1, 0, 1]]), r"clicks must have shape \(1, 2\)"),
        (credit, ([[0, 1]], [[2, 0]]), "clicks must be 0 or 1"),
        (credit, ([0, 1], [1, 0]), "team must be a 2-D array"),
        (interleaving_test, ([0, 0, 0],), "not identifiable: no decisive session"),
        (interleaving_test, ([1, 2],), "outcomes must hold -1, 0 or \\+1; got 2"),
        (interleaving_test, ([[1, -1]],), "outcomes must be a 1-D array"),
        (interleaving_test, ([0.5],), "outcomes must hold integers"),
        (
            balanced_credit,
            ([[1, 9, 3]], [[1, 0, 0]], [[1, 2, 3]], [[2, 3, 1]]),
            r"items\[0, 1\] = 9 is in neither list_a nor list_b",
        ),
        (
            balanced_credit,
            ([[1, 2, 3]], [[1, 0]], [[1, 2, 3]], [[2, 3, 1]]),
            r"clicks must have shape \(1, 3\)",
        ),
    ],
)
def test_credit_and_test_bad_input(fn, args, match):
    with pytest.raises(ValidationError, match=match):
        fn(*(np.asarray(x) for x in args))


def test_interleaving_test_bad_confidence():
    with pytest.raises(ValidationError, match=r"confidence must be a float in \(0, 1\)"):
        interleaving_test(np.array([1, -1]), confidence=95)
