"""Conformance suite over the whole policy registry (STYLE.md point 11)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from simulator.catalog.catalog import make_catalog
from simulator.config import CatalogSection, HistorySection, RelevanceSection, UsersSection
from simulator.errors import ConfigError
from simulator.logs.window import LogWindow
from simulator.policies import POLICIES, WorldView, make_policy, set_param
from simulator.users.population import make_population, organic_history

N_USERS, N_ITEMS, K = 200, 120, 5


@pytest.fixture(scope="module")
def world():
    cat = make_catalog(
        CatalogSection(n_items=N_ITEMS, n_genres=4, n_artists=20, embedding_dim=6), np.random.default_rng(0)
    )
    pop = make_population(UsersSection(n_users=N_USERS), RelevanceSection(), cat, np.random.default_rng(1))
    window = LogWindow(30)
    window.add_organic(*organic_history(pop, HistorySection(days=10), np.random.default_rng(2)))
    return WorldView(N_USERS, cat, K, pop), window


def _ready(name, world):
    view, window = world
    policy = make_policy(name)
    policy.reset(view, np.random.default_rng(3))
    policy.fit(window)
    return policy


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_slates_are_valid(name, world):
    policy = _ready(name, world)
    users = np.arange(0, N_USERS, 3)
    slate = policy.recommend(users, K, np.random.default_rng(4))
    assert slate.items.shape == (users.size, K) and slate.items.dtype == np.int32
    assert ((slate.items >= 0) & (slate.items < N_ITEMS)).all()
    assert all(len(set(row)) == K for row in slate.items.tolist())  # K unique items
    for p in (slate.pscore, slate.inclusion_pscore):
        assert p.shape == (users.size, K) and np.isfinite(p).all()
        assert ((p > 0) & (p <= 1)).all()
    assert (slate.inclusion_pscore >= slate.pscore).all()


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_same_seed_same_slates(name, world):
    users = np.arange(N_USERS)
    a = _ready(name, world).recommend(users, K, np.random.default_rng(9))
    b = _ready(name, world).recommend(users, K, np.random.default_rng(9))
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.pscore, b.pscore)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_pickles(name, world):
    policy = _ready(name, world)
    clone = pickle.loads(pickle.dumps(policy))
    users = np.arange(10)
    np.testing.assert_array_equal(
        policy.recommend(users, K, np.random.default_rng(1)).items,
        clone.recommend(users, K, np.random.default_rng(1)).items,
    )


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_empirical_position_frequency_matches_pscore(name, world):
    # Over R draws for one user, the frequency of each logged (item, position) pair must match
    # its logged pscore. Deterministic policies: pscore 1 and the same slate every draw.
    policy = _ready(name, world)
    rng = np.random.default_rng(11)
    r = 4000
    if policy.sequential:  # rows of one call depend on earlier rows: one-row calls are the draws
        slates = [policy.recommend(np.zeros(1, dtype=np.int64), K, rng) for _ in range(r)]
        items = np.concatenate([s.items for s in slates])
        pscore = np.concatenate([s.pscore for s in slates])
        mc = max(s.mc_samples for s in slates)
    else:
        slate = policy.recommend(np.zeros(r, dtype=np.int64), K, rng)
        items, pscore, mc = slate.items, slate.pscore, slate.mc_samples
    key = items.astype(np.int64) * K + np.arange(K)
    freq = np.bincount(key.ravel(), minlength=N_ITEMS * K) / r
    logged = freq[key]
    # binomial sd of a frequency p over r_eff independent draws <= sqrt(p(1-p)/r_eff); rows that
    # share one draw (batched Thompson) count once. Monte-Carlo propensities from M samples add
    # their own sd sqrt(p(1-p)/M) and at most 1/M of bias (counting estimates include the
    # realised draw). Tolerance: 5 sd of each + the bias bound + 1e-3, the sd taken at the larger
    # of the logged and the empirical p(1-p) (a small M can log a p far below the true one).
    r_eff = r // policy.rows_per_draw
    var = np.maximum(pscore * (1 - pscore), logged * (1 - logged))
    tol = 5 * np.sqrt(var / r_eff) + 1e-3
    if mc:
        tol = tol + 5 * np.sqrt(var / mc) + 1 / mc
    assert (np.abs(logged - pscore) <= tol).all()


def test_random_policy_exact_propensities(world):
    policy = _ready("random", world)
    slate = policy.recommend(np.arange(5), K, np.random.default_rng(0))
    np.testing.assert_allclose(slate.pscore, 1 / N_ITEMS)
    np.testing.assert_allclose(slate.inclusion_pscore, K / N_ITEMS)


def test_oracle_is_optimal_for_true_relevance(world):
    view, _ = world
    policy = _ready("oracle", world)
    users = np.arange(20)
    slate = policy.recommend(users, K, np.random.default_rng(0))
    rel_shown = view.population.relevance(users, slate.items)
    full = np.concatenate([b for _, b in view.population.relevance_chunks(users)])
    best = -np.sort(-full, axis=1)[:, :K]
    np.testing.assert_allclose(np.log(rel_shown / (1 - rel_shown)), best, rtol=1e-4, atol=1e-4)


def test_set_param_validates(world):
    policy = make_policy("greedy")
    set_param(policy, "alpha", 5.0, "greedy")
    assert policy.alpha == 5.0
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        set_param(policy, "alpah", 5.0, "greedy")
    with pytest.raises(ConfigError, match="greater than 0"):
        set_param(policy, "alpha", -1.0, "greedy")


@pytest.mark.parametrize("name", ["linear_thompson", "linucb"])
def test_linear_bandit_batched_update_equals_the_general_one(name, world):
    # one slate per distinct user takes the batched path; the general (sparse) path is the reference
    users = np.arange(0, N_USERS, 2)
    batched, general = _ready(name, world), _ready(name, world)
    slate = batched.recommend(users, K, np.random.default_rng(5))
    rng = np.random.default_rng(6)
    exam = rng.random((users.size, K))

    class Feedback:
        clicks = rng.random((users.size, K)) < 0.3
        examination = exam

    batched.update(users, slate, Feedback)
    rows = np.repeat(users, K)
    clicks = Feedback.clicks.ravel() * 1.0
    general._absorb(rows, slate.items.ravel().astype(np.int64), clicks, exam.ravel(), 1.0)
    assert not np.allclose(batched.mean_, _ready(name, world).mean_)  # the update did something
    np.testing.assert_allclose(batched.mean_, general.mean_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(batched.precision_, general.precision_, rtol=1e-6)
