"""Interleaving as a policy-pair mode: exact distributions, the pair policy, the logged team.

Seeds are stated at each call. Sizes are small: the whole file runs in a few seconds.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from simulator.config import parse_config
from simulator.engine.model import RecloopModel
from simulator.errors import ConfigError, ValidationError
from simulator.logs.impressions import LOG_SCHEMA, ImpressionLogWriter
from simulator.ope.interleaving import (
    TEAM_A,
    balanced_credit,
    coin_patterns,
    credit,
    credit_from_log,
    enumerate_interleavings,
    interleave,
    interleaving_propensities,
    interleaving_test,
    list_ranks,
    pbm_outcome_probabilities,
    team_draft_interleave,
)
from simulator.policies import make_policy
from tests.conftest import tiny_config_data

N_ITEMS, K = 15, 6


def _slates(rng, n, n_items=N_ITEMS, size=K):
    return rng.random((n, n_items)).argpartition(size, axis=1)[:, :size].astype(np.int32)


# ------------------------------------------------------------------------------------------
# exact distributions
# ------------------------------------------------------------------------------------------


def test_coin_patterns_count():
    # team draft reads one coin per pair of slots: 2^ceil(k/2) outcomes; balanced one coin
    assert coin_patterns("team_draft", 6).shape == (8, 6)
    assert coin_patterns("team_draft", 5).shape == (8, 5)
    assert coin_patterns("balanced", 6).shape == (2, 6)
    with pytest.raises(ValidationError, match="method must be one of"):
        coin_patterns("draft", 6)


def test_enumeration_covers_every_realised_list():
    # every list team_draft_interleave draws is one of the enumerated ones, and the enumerated
    # propensity of a realised (item, position) is >= 1 / 2^ceil(k/2)
    rng = np.random.default_rng(1)
    a, b = _slates(rng, 200), _slates(rng, 200)
    items, _ = team_draft_interleave(a, b, K, rng)
    every, _ = enumerate_interleavings(a, b, K, "team_draft")
    assert (every == items[:, None, :]).all(axis=2).any(axis=1).all()
    pscore, inclusion = interleaving_propensities(a, b, items, "team_draft")
    assert (pscore >= 1 / 8 - 1e-12).all() and (pscore <= 1).all() and (inclusion >= pscore).all()


def test_team_draft_propensity_by_hand():
    # A = (1, 2), B = (3, 4), k = 2: the coin decides who picks first; item 1 is at position 0
    # with probability 1/2 and in the list with probability 1
    a, b = np.array([[1, 2]]), np.array([[3, 4]])
    pscore, inclusion = interleaving_propensities(a, b, np.array([[1, 3]]), "team_draft")
    np.testing.assert_allclose(pscore, [[0.5, 0.5]])
    np.testing.assert_allclose(inclusion, [[1.0, 1.0]])


@pytest.mark.parametrize("method", ["team_draft", "balanced"])
def test_outcome_probabilities_match_simulation(method):
    # 60 sessions x 2_000 replays (seed 2): exact P(A wins), P(B wins), P(tie) under the PBM
    # against the frequencies of the library's interleave + credit with Bernoulli clicks.
    # sd of a frequency <= 0.5 / sqrt(2000) = 0.011; allow 5 sd.
    rng = np.random.default_rng(2)
    n, reps = 60, 2000
    a, b = _slates(rng, n), _slates(rng, n)
    relevance = rng.beta(1.0, 2.0, N_ITEMS)
    exam = 1.0 / np.arange(1, K + 1)
    exact = pbm_outcome_probabilities(a, b, relevance[a], relevance[b], exam, method)
    np.testing.assert_allclose(exact.sum(axis=1), 1.0)
    aa, bb = np.repeat(a, reps, 0), np.repeat(b, reps, 0)
    items, team = interleave(method, aa, bb, K, rng)
    clicks = rng.random(items.shape) < exam * relevance[items]
    out = credit(team, clicks) if method == "team_draft" else balanced_credit(items, clicks, aa, bb)
    out = out.reshape(n, reps)
    freq = np.stack([(out == 1).mean(1), (out == -1).mean(1), (out == 0).mean(1)], axis=1)
    assert np.abs(freq - exact).max() < 5 * 0.5 / np.sqrt(reps)


def test_outcome_probabilities_with_no_examination_is_a_tie():
    rng = np.random.default_rng(3)
    a, b = _slates(rng, 5), _slates(rng, 5)
    p = pbm_outcome_probabilities(
        a, b, np.ones((5, K)) * 0.5, np.ones((5, K)) * 0.5, np.zeros(K), "team_draft"
    )
    np.testing.assert_allclose(p, np.tile([0.0, 0.0, 1.0], (5, 1)))


def test_team_draft_fair_when_relevance_is_equal():
    # Two different lists, every item equally relevant (0.3), PBM examination: clicks do not
    # depend on the team, so exactly P(A wins) = P(B wins) for every session (team draft's
    # fairness, Radlinski et al. 2008), while the tie share is positive.
    rng = np.random.default_rng(4)
    a, b = _slates(rng, 300), _slates(rng, 300)
    p = pbm_outcome_probabilities(
        a, b, np.full((300, K), 0.3), np.full((300, K), 0.3), 1 / np.arange(1, K + 1), "team_draft"
    )
    np.testing.assert_allclose(p[:, 0], p[:, 1], atol=1e-12)
    assert (p[:, 2] > 0.1).all()


def test_team_draft_fair_under_random_clicks_binomial_ci():
    # 40_000 sessions (seed 5), Bernoulli(0.5 / (j + 1)) clicks at slot j, independent of the
    # items: A's wins among decisive sessions are Binomial(m, 1/2); the 99.9% Clopper-Pearson
    # interval of A's win rate must contain 1/2 and be narrower than 0.03.
    rng = np.random.default_rng(5)
    n = 40_000
    a, b = _slates(rng, n), _slates(rng, n)
    _, team = team_draft_interleave(a, b, K, rng)
    clicks = rng.random((n, K)) < 0.5 / np.arange(1, K + 1)
    res = interleaving_test(credit(team, clicks), confidence=0.999)
    assert res.ci_lower <= 0.5 <= res.ci_upper and res.ci_upper - res.ci_lower < 0.03, res


def test_credit_from_log_matches_credit():
    rng = np.random.default_rng(6)
    n = 500
    a, b = _slates(rng, n), _slates(rng, n)
    for method in ("team_draft", "balanced"):
        items, team = interleave(method, a, b, K, rng)
        clicks = rng.random(items.shape) < 0.3
        sid = np.repeat(np.arange(n) * 7, K)
        pos = np.tile(np.arange(K), n)
        perm = rng.permutation(sid.size)  # rows in any order
        ra, rb = list_ranks(items, a).ravel(), list_ranks(items, b).ravel()
        sessions, out = credit_from_log(
            sid[perm], pos[perm], clicks.ravel()[perm], team.ravel()[perm], ra[perm], rb[perm], method=method
        )
        expected = credit(team, clicks) if method == "team_draft" else balanced_credit(items, clicks, a, b)
        np.testing.assert_array_equal(sessions, np.arange(n) * 7)
        np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValidationError, match="needs the log's team column"):
        credit_from_log(sid, pos, clicks.ravel())


# ------------------------------------------------------------------------------------------
# the pair policy
# ------------------------------------------------------------------------------------------


def test_pair_policy_rejects_bad_children():
    with pytest.raises(ConfigError, match="cannot interleave another interleaving"):
        make_policy("interleaving", "il", a="interleaving")
    with pytest.raises(ConfigError, match="did you mean 'oracle'"):
        make_policy("interleaving", "il", b="oracel")
    with pytest.raises(ConfigError, match=r"policies\.il\.b_params.*epsilon"):
        make_policy("interleaving", "il", b="epsilon_greedy", b_params={"base": "oracle", "epsilon": 2.0})
    with pytest.raises(ConfigError, match=r"policies\.il\.method"):
        make_policy("interleaving", "il", method="zipper")


@pytest.fixture(scope="module")
def tiny_world():
    from simulator.catalog.catalog import make_catalog
    from simulator.config import CatalogSection, HistorySection, RelevanceSection, UsersSection
    from simulator.logs.window import LogWindow
    from simulator.policies import WorldView
    from simulator.users.population import make_population, organic_history

    cat = make_catalog(
        CatalogSection(n_items=60, n_genres=4, n_artists=20, embedding_dim=6), np.random.default_rng(0)
    )
    pop = make_population(UsersSection(n_users=50), RelevanceSection(), cat, np.random.default_rng(1))
    window = LogWindow(30)
    window.add_organic(*organic_history(pop, HistorySection(days=10), np.random.default_rng(2)))
    return WorldView(50, cat, 4, pop), window


def test_pair_policy_with_a_stochastic_child_estimates_propensities(tiny_world):
    # oracle vs epsilon_greedy(oracle, 0.5): propensities are Monte-Carlo (exact=False); over
    # R = 3000 draws for one user the frequency of each logged (item, position) must match the
    # logged pscore within 5 binomial sd + the estimator's sd and bias bound (as the
    # conformance suite).
    view, window = tiny_world
    policy = make_policy(
        "interleaving",
        a="oracle",
        b="epsilon_greedy",
        b_params={"base": "oracle", "epsilon": 0.5},
        mc_samples=16,
    )
    policy.reset(view, np.random.default_rng(3))
    policy.fit(window)
    r, k = 3000, 4
    slate = policy.recommend(np.zeros(r, dtype=np.int64), k, np.random.default_rng(4))
    assert not slate.exact and slate.mc_samples == 16
    key = slate.items.astype(np.int64) * k + np.arange(k)
    freq = np.bincount(key.ravel(), minlength=60 * k) / r
    logged = freq[key]
    var = np.maximum(slate.pscore * (1 - slate.pscore), logged * (1 - logged))
    tol = 5 * np.sqrt(var / r) + 5 * np.sqrt(var / 16) + 1 / 16 + 1e-3
    assert (np.abs(logged - slate.pscore) <= tol).all()
    # the team of a slot is whoever contributed the item: A's items come from the oracle slate
    oracle_top = view.population.top_k(np.zeros(1, dtype=np.int64), k)[0][0]
    from_a = slate.items[slate.extras["team"] == TEAM_A]
    assert np.isin(from_a, oracle_top).all()


def test_pair_policy_runs_in_the_engine_and_logs_the_team(tmp_path):
    # tiny config, 3 rounds: the Parquet log has team / rank_a / rank_b after the standard
    # columns; team-draft credit computed from the log agrees with the slates' structure
    data = tiny_config_data(
        experiment={"name": "tiny", "n_rounds": 3, "seeds": [0]},
        policies={
            "il": {
                "type": "interleaving",
                "a": "oracle",
                "b": "epsilon_greedy",
                "b_params": {"base": "oracle", "epsilon": 0.5},
                "mc_samples": 2,
            }
        },
    )
    cfg = parse_config(data)
    model = RecloopModel(cfg, "il", 0, log_dir=tmp_path)
    model.run()
    table = pq.read_table(tmp_path)
    assert table.schema.names == [*LOG_SCHEMA.names, "team", "rank_a", "rank_b"]
    log = table.to_pandas().sort_values(["session_id", "position"])
    assert str(log["team"].dtype) == "int8" and set(log["team"].unique()) == {0, 1}
    k = cfg.simulation.slate_size
    team = log["team"].to_numpy().reshape(-1, k)
    # team draft: every prefix of two slots holds one pick of each team
    assert (np.abs((team == 0).sum(axis=1) - (team == 1).sum(axis=1)) <= 1).all()
    assert (team[:, 0::2][:, : k // 2] != team[:, 1::2][:, : k // 2]).all()
    # an item of team A has a rank in A's slate; B's likewise
    assert (log.loc[log["team"] == 0, "rank_a"] >= 0).all()
    assert (log.loc[log["team"] == 1, "rank_b"] >= 0).all()
    # the oracle's items win more sessions than epsilon-greedy's half-random ones
    _, outcome = credit_from_log(log["session_id"], log["position"], log["click"], log["team"])
    res = interleaving_test(outcome)
    assert res.wins_a > res.wins_b


def test_plain_runs_keep_the_standard_schema(tmp_path):
    writer = ImpressionLogWriter(tmp_path, "p", 10, 1.0, np.random.default_rng(0))
    users = np.arange(3)
    z = np.zeros((3, 2), np.float32)
    writer.append(0, 0.5, users, np.ones((3, 2), np.int32), z, z + 1, z + 1, z, np.zeros((3, 2), bool))
    writer.close()
    assert pq.read_table(tmp_path).schema.equals(LOG_SCHEMA)


def test_writer_rejects_changing_extras(tmp_path):
    writer = ImpressionLogWriter(tmp_path, "p", 10, 1.0, np.random.default_rng(0))
    users = np.arange(3)
    z = np.zeros((3, 2), np.float32)
    args = (users, np.ones((3, 2), np.int32), z, z + 1, z + 1, z, np.zeros((3, 2), bool))
    writer.append(0, 0.5, *args, {"team": np.zeros((3, 2), np.int8)})
    with pytest.raises(ValidationError, match="same in every round"):
        writer.append(1, 1.5, *args, {})
    with pytest.raises(ValidationError, match="must not reuse standard names"):
        ImpressionLogWriter(tmp_path / "x", "p", 10, 1.0, np.random.default_rng(0)).append(
            0, 0.5, *args, {"click": np.zeros((3, 2), bool)}
        )


def test_interleaving_detects_the_better_policy_at_a_fixed_seed():
    # 4_000 sessions (seed 7): A ranks 20 candidates by relevance and shows its top 6; B shows
    # A's ranks 3..8 (overlapping lists, B strictly worse); PBM clicks. Team draft must prefer A.
    rng = np.random.default_rng(7)
    n = 4000
    relevance = rng.beta(1.0, 3.0, 40)
    cand = _slates(rng, n, 40, 20)
    ranked = np.take_along_axis(cand, np.argsort(-relevance[cand], axis=1), axis=1)
    good, bad = ranked[:, :K], ranked[:, 3 : 3 + K]
    items, team = team_draft_interleave(good, bad, K, rng)
    clicks = rng.random(items.shape) < relevance[items] / np.arange(1, K + 1)
    res = interleaving_test(credit(team, clicks))
    assert res.preferred == "A" and res.p_value < 1e-4
    assert stats.binomtest(res.wins_a, res.wins_a + res.wins_b).pvalue == pytest.approx(res.p_value)
