"""Exploration policies, IPW retraining and re-rankers: propensities, bandit regret, bad input."""

from __future__ import annotations

import itertools
import tomllib
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

from simulator.catalog.catalog import make_catalog
from simulator.clicks.models import Feedback
from simulator.config import CatalogSection, HistorySection, RelevanceSection, UsersSection, parse_config
from simulator.errors import ConfigError, ValidationError
from simulator.logs.window import LogWindow
from simulator.policies import WorldView, make_policy, set_param
from simulator.policies.base import MIN_PROPENSITY
from simulator.policies.propensity import epsilon_greedy_table, plackett_luce_propensities
from simulator.policies.wrappers import boltzmann_logits
from simulator.users.population import make_population, organic_history

ROOT = Path(__file__).parents[1]
N_USERS, N_ITEMS, K = 150, 60, 4


@pytest.fixture(scope="module")
def world():
    cat = make_catalog(
        CatalogSection(n_items=N_ITEMS, n_genres=4, n_artists=20, embedding_dim=6), np.random.default_rng(0)
    )
    pop = make_population(UsersSection(n_users=N_USERS), RelevanceSection(), cat, np.random.default_rng(1))
    window = LogWindow(30, keep_impressions=True)
    window.add_organic(*organic_history(pop, HistorySection(days=10), np.random.default_rng(2)))
    return WorldView(N_USERS, cat, K, pop), window


def _ready(name, world, **params):
    view, window = world
    policy = make_policy(name, **params)
    policy.reset(view, np.random.default_rng(3))
    policy.fit(window)
    return policy


# ------------------------------------------------------------------------------------------
# epsilon-greedy: exact propensities
# ------------------------------------------------------------------------------------------


def _brute_force_epsilon(n_items: int, k: int, eps: float) -> np.ndarray:
    """P(rank r at position j) by enumerating every path (greedy ranking = item ids)."""
    pos = np.zeros((n_items, k))

    def walk(slate: list[int], prob: float) -> None:
        if len(slate) == k:
            for j, it in enumerate(slate):
                pos[it, j] += prob
            return
        free = [i for i in range(n_items) if i not in slate]
        walk([*slate, free[0]], prob * (1 - eps))  # the next greedy item
        for f in free:
            walk([*slate, f], prob * eps / len(free))

    walk([], 1.0)
    return pos


@pytest.mark.parametrize(
    ("n_items", "k", "eps"), [(5, 3, 0.3), (6, 4, 0.5), (4, 4, 0.7), (8, 5, 0.2), (7, 3, 1.0)]
)
def test_epsilon_table_matches_enumeration(n_items, k, eps):
    table, inclusion = epsilon_greedy_table(n_items, k, eps)
    brute = _brute_force_epsilon(n_items, k, eps)
    full = np.vstack([table[:k], np.repeat(table[k:], n_items - k, axis=0)])
    np.testing.assert_allclose(full, brute, atol=1e-12)
    np.testing.assert_allclose(inclusion[:k], brute[:k].sum(axis=1), atol=1e-12)
    np.testing.assert_allclose(full.sum(axis=0), 1.0, atol=1e-12)  # every position holds one item


def test_epsilon_table_closed_forms():
    n, k, eps = 50, 3, 0.2
    table, _ = epsilon_greedy_table(n, k, eps)
    # rank 0 at position 0: greedy, or the random slot happens to pick it
    assert table[0, 0] == pytest.approx(1 - eps + eps / n)
    # rank 0 at position 1: a random slot 0 took another item, then rank 0 is the next greedy item
    assert table[0, 1] == pytest.approx(eps * (n - 1) / n * (1 - eps + eps / (n - 1)))
    # an item of greedy rank >= K can only arrive by a random slot
    tail = [eps / (n - j) * np.prod([1 - eps / (n - i) for i in range(j)]) for j in range(k)]
    np.testing.assert_allclose(table[k], tail)
    # eps = 0: the greedy slate with certainty; eps = 1: uniform 1/I
    np.testing.assert_allclose(epsilon_greedy_table(n, k, 0.0)[0][:k], np.eye(k))
    np.testing.assert_allclose(epsilon_greedy_table(n, k, 1.0)[0], 1 / n)


def test_epsilon_greedy_slates_log_exact_propensities(world):
    policy = _ready("epsilon_greedy", world, epsilon=0.3)
    slate = policy.recommend(np.zeros(20000, dtype=np.int64), K, np.random.default_rng(5))
    assert slate.exact and slate.mc_samples == 0
    key = slate.items.astype(np.int64) * K + np.arange(K)
    freq = np.bincount(key.ravel(), minlength=N_ITEMS * K)[key] / 20000
    sd = np.sqrt(slate.pscore * (1 - slate.pscore) / 20000)
    assert (np.abs(freq - slate.pscore) <= 5 * sd + 1e-4).all()
    greedy = _ready("greedy", world).recommend(np.zeros(1, dtype=np.int64), K, None).items[0]
    np.testing.assert_allclose(
        slate.pscore[slate.items[:, 0] == greedy[0], 0], 1 - 0.3 + 0.3 / N_ITEMS, rtol=1e-6
    )


def test_epsilon_zero_intervention_gives_greedy(world):
    policy = _ready("epsilon_greedy", world, epsilon=0.1)
    set_param(policy, "epsilon", 0, "eps10_off")  # the scheduled "switch exploration off"
    assert policy.epsilon == 0.0
    users = np.arange(N_USERS)
    a = policy.recommend(users, K, np.random.default_rng(0))
    b = _ready("greedy", world).recommend(users, K, np.random.default_rng(0))
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.pscore, 1.0)


# ------------------------------------------------------------------------------------------
# Boltzmann / Plackett-Luce
# ------------------------------------------------------------------------------------------


def _pl_exact(w: np.ndarray, k: int) -> np.ndarray:
    """P(item i at position j) of Plackett-Luce by enumerating every ordered prefix."""
    out = np.zeros((w.size, k))
    for perm in itertools.permutations(range(w.size), k):
        p, rest = 1.0, w.sum()
        for it in perm:
            p *= w[it] / rest
            rest -= w[it]
        for j, it in enumerate(perm):
            out[it, j] += p
    return out


@pytest.mark.parametrize("head", [4, 5, 9])  # head < I: the tail's truncated-Gumbel keys are used
def test_plackett_luce_estimates_match_enumeration(head):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1, 9)) * 1.5
    exact = _pl_exact(np.exp(z[0]), 4)
    order = np.argsort(-z[0])
    m = 20000
    for items in (order[:4], order[[5, 6, 7, 8]], order[[0, 8, 1, 7]]):
        ps, inc = plackett_luce_propensities(z, items[None], m, rng, head=head)
        want = exact[items, np.arange(4)]
        assert ps[0, 0] == pytest.approx(want[0], rel=1e-5)  # position 0 is exact
        # Rao-Blackwellised: sd <= sqrt(p(1-p)/M); 5 sd
        np.testing.assert_allclose(ps[0], want, atol=5 * np.sqrt(0.25 / m))
        np.testing.assert_allclose(inc[0], exact[items].sum(axis=1), atol=4 * 5 * np.sqrt(0.25 / m))


@pytest.mark.parametrize("temperature", [1e-6, 1e-50, 1e-300, 1e6])  # 1e-50: 0 in float32
def test_boltzmann_extreme_temperatures_are_finite(world, temperature):
    users = np.arange(N_USERS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no divide-by-zero, no invalid value
        policy = _ready("boltzmann", world, temperature=temperature, mc_samples=200)
        slate = policy.recommend(users, K, np.random.default_rng(0))
    for p in (slate.pscore, slate.inclusion_pscore):
        assert np.isfinite(p).all() and (p >= MIN_PROPENSITY).all() and (p <= 1).all()
    assert not slate.exact and slate.mc_samples == 200
    if temperature < 1:  # T -> 0: the base's top-K, each with probability ~1 ...
        scores = np.concatenate([b for _, b in _ready("greedy", world).score_chunks(users)])
        top = -np.sort(-scores, axis=1)[:, : K + 1]
        clear = (np.diff(-top, axis=1) > 1e-4).all(axis=1)  # ... where the gaps dwarf T
        assert clear.sum() > N_USERS // 2
        greedy = _ready("greedy", world).recommend(users, K, None)
        np.testing.assert_array_equal(slate.items[clear], greedy.items[clear])
        np.testing.assert_allclose(slate.pscore[clear], 1.0, atol=1e-6)
    else:  # T -> inf: uniform, 1/I at every position, K/I anywhere
        np.testing.assert_allclose(slate.pscore[:, 0], 1 / N_ITEMS, rtol=1e-4)  # exact
        # Rao-Blackwell terms are 1/(I - j) when the item is not in the sampled prefix (chance
        # q = j/I): sd = sqrt(q(1-q)/M)/(I - j) <= 2.7e-4 at j = K - 1, M = 200; 5 sd
        q = (K - 1) / N_ITEMS
        sd = np.sqrt(q * (1 - q) / 200) / (N_ITEMS - K + 1)
        np.testing.assert_allclose(slate.pscore, 1 / N_ITEMS, atol=5 * sd)
        np.testing.assert_allclose(slate.inclusion_pscore, K / N_ITEMS, atol=5 * K * sd)


def test_boltzmann_first_position_is_the_exact_softmax():
    rng = np.random.default_rng(1)
    for scale in (1e-3, 1.0, 1e3, 1e30):  # |s|/T from tiny to float32 overflow
        scores = (rng.normal(size=(3, 50)) * scale).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            z = boltzmann_logits(scores, 1e-6)
            assert np.isfinite(z).all() and z.dtype == np.float32
            ps, _ = plackett_luce_propensities(z, np.argsort(-z, axis=1)[:, :3], 10, rng)
        soft = np.exp(z.astype(np.float64) - logsumexp(z.astype(np.float64), axis=1, keepdims=True))
        np.testing.assert_allclose(soft.sum(axis=1), 1.0)  # probabilities sum to 1
        np.testing.assert_allclose(ps[:, 0], np.maximum(soft.max(axis=1), MIN_PROPENSITY), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# bandits: regret on a stationary Bernoulli bandit
# ------------------------------------------------------------------------------------------

# gaps >= 0.3: by T/4 every policy is past its burn-in, so the log T regime shows
ARM_MEANS = np.array([0.9, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3, 0.2, 0.1])
HORIZON = 20_000


def _kl(p: float, q: float) -> float:
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def _bandit_regret(name: str, seed: int, horizon: int = HORIZON, **params) -> np.ndarray:
    """Cumulative pseudo-regret of a policy on the 10-armed bandit (one session per round, K = 1)."""
    cat = make_catalog(
        CatalogSection(n_items=ARM_MEANS.size, n_genres=2, n_artists=2), np.random.default_rng(0)
    )
    pop = make_population(UsersSection(n_users=1), RelevanceSection(), cat, np.random.default_rng(0))
    policy = make_policy(name, **params)
    policy.reset(WorldView(1, cat, 1, pop), np.random.default_rng(seed))
    policy.fit(LogWindow(1))
    rng, rng_click = np.random.default_rng(seed + 100), np.random.default_rng(seed + 200)
    user, best = np.zeros(1, dtype=np.int64), ARM_MEANS.max()
    regret = np.empty(horizon)
    ones = np.ones((1, 1), dtype=np.float32)
    for t in range(horizon):
        slate = policy.recommend(user, 1, rng)
        arm = slate.items[0, 0]
        click = np.array([[rng_click.random() < ARM_MEANS[arm]]])
        policy.update(user, slate, Feedback(click, ones, ones * ARM_MEANS[arm]))
        regret[t] = best - ARM_MEANS[arm]
    return np.cumsum(regret)


@pytest.fixture(scope="module")
def regrets():
    params = {
        "thompson": {"mc_samples": 1},
        "ucb": {},
        # linear growth shows by a shorter horizon (keeps the test fast)
        "epsilon_greedy": {
            "epsilon": 0.1,
            "base": "thompson",
            "base_params": {"mc_samples": 1},
            "horizon": 8000,
        },
    }
    return {name: _bandit_regret(name, 0, **p) for name, p in params.items()}


def test_thompson_and_ucb_regret_is_sublinear(regrets):
    gaps = ARM_MEANS.max() - ARM_MEANS[1:]
    lai_robbins = sum(g / _kl(m, ARM_MEANS.max()) for g, m in zip(gaps, ARM_MEANS[1:], strict=True))
    auer = sum(8 / g for g in gaps) * np.log(HORIZON) + (1 + np.pi**2 / 3) * gaps.sum()
    for name in ("thompson", "ucb"):
        r = regrets[name]
        ratio = r[-1] / r[HORIZON // 4 - 1]
        # log T growth would give ln(20000)/ln(5000) = 1.16; linear growth 4
        assert ratio < 1.6, (name, ratio)
    # Thompson attains the Lai-Robbins constant asymptotically (Agrawal & Goyal 2012): within 3x
    assert regrets["thompson"][-1] < 3 * lai_robbins * np.log(HORIZON)
    # UCB1 within its finite-time bound (Auer et al. 2002, Thm. 1)
    assert regrets["ucb"][-1] < auer


def test_epsilon_greedy_regret_is_linear(regrets):
    r = regrets["epsilon_greedy"]
    t = r.size
    ratio = r[-1] / r[t // 4 - 1]
    # a constant 10% of uniform exploration costs eps * mean gap per round: ratio ~ 4
    assert ratio > 3.0, ratio
    per_round = (r[-1] - r[t // 2]) / (t // 2)
    assert per_round == pytest.approx(0.1 * (ARM_MEANS.max() - ARM_MEANS.mean()), rel=0.25)


def test_linear_thompson_propensities_track_the_draw_frequencies(world):
    """With the whole catalog as candidates, the Monte-Carlo propensities average the slates'
    true frequencies. Here the logged position propensities are ~0.01-0.04 (median 0.022): the
    floor 1/(M + 1) is rarely reached at M = 256, while counting the realised draw too would
    add (1 - p)/(M + 1), ~+18% on average."""
    m = 256
    policy = _ready("linear_thompson", world, mc_samples=m, mc_candidates=N_ITEMS)
    r = 6000
    slate = policy.recommend(np.full(r, 7, dtype=np.int64), K, np.random.default_rng(21))
    assert slate.pscore.min() >= np.float32(1 / (m + 1))  # never below the floor
    key = slate.items.astype(np.int64) * K + np.arange(K)
    true_p = (np.bincount(key.ravel(), minlength=N_ITEMS * K) / r)[key]  # to ~1/sqrt(r)
    ratio = slate.pscore.astype(np.float64).mean() / true_p.mean()
    assert abs(ratio - 1) < 0.03, ratio
    inclusion = (np.bincount(slate.items.ravel(), minlength=N_ITEMS) / r)[slate.items]
    ratio_inc = slate.inclusion_pscore.astype(np.float64).mean() / inclusion.mean()
    assert abs(ratio_inc - 1) < 0.03, ratio_inc


# ------------------------------------------------------------------------------------------
# IPW
# ------------------------------------------------------------------------------------------


def _impressions(**overrides):
    imp = {
        "user": np.array([0, 0, 1, 1, 2], np.int32),
        "item": np.array([0, 1, 0, 2, 3], np.int32),
        "click": np.array([True, False, True, False, True]),
        "position": np.array([0, 3, 1, 2, -1], np.int16),  # the last row is an organic stream
        "pscore": np.array([0.5, 1.0, 1.0, 0.25, np.nan], np.float32),
        "examination": np.array([1.0, 0.25, 0.5, 0.5, np.nan], np.float32),
        "day": np.zeros(5, np.int32),
    }
    imp.update(overrides)
    return imp


def test_ipw_weights_clip_and_normalise(world):
    policy = _ready("ipw", world, clip=5.0, alpha=1.0)
    w = policy.weights(_impressions())
    # 1/(0.5*1) = 2, 1/(1*0.25) = 4, 1/(1*0.5) = 2, 1/(0.25*0.5) = 8 -> clipped to 5, organic 1
    np.testing.assert_allclose(w, [2, 4, 2, 5, 1])
    c1, cp = policy.weighted_matrices(_impressions())
    mean = np.mean([2, 4, 2, 5, 1])
    # ips: c - 1 = alpha * sum(w~) and c*p = alpha * sum(w~ * click) per (user, item)
    assert c1[0, 1] == pytest.approx(4 / mean) and cp[0, 1] == 0.0  # shown, not clicked
    assert c1[0, 0] == pytest.approx(2 / mean) and cp[0, 0] == pytest.approx(2 / mean)
    assert c1.nnz == cp.nnz == 5


def test_ipw_saito_corrects_the_label_of_clicks(world):
    policy = _ready("ipw", world, loss="saito", alpha=1.0, unobserved_weight=1.0)
    c1, cp = policy.weighted_matrices(_impressions())
    mean = np.mean([2, 2, 1])  # weights of the clicks only (organic: 1)
    # one click per pair: c = c0 + alpha = 2, p = (Y/theta) normalised = 2/mean; c*p stored
    assert c1[1, 0] == pytest.approx(1.0) and cp[1, 0] == pytest.approx(2 * 2 / mean)
    assert c1.nnz == 3  # non-clicks are not observations under Saito's loss


def test_ipw_uses_the_examination_estimate_for_real_logs(world):
    policy = _ready("ipw", world)
    missing = _impressions(examination=np.full(5, np.nan, np.float32))
    with pytest.raises(ValidationError, match="examination_estimate"):
        policy.weights(missing)
    policy = _ready("ipw", world, examination_estimate=[1.0, 0.5, 0.25, 0.2])
    w = policy.weights(missing)
    np.testing.assert_allclose(w, [2, 5, 2, 10, 1])  # 1/(0.5*1), 1/(1*0.2), 1/(1*.5), 1/(.25*.25)->10
    with pytest.raises(ValidationError, match="positions"):
        _ready("ipw", world, examination_estimate=[1.0, 0.5]).weights(missing)


def test_ipw_and_its_wrappers_ask_for_impressions():
    assert make_policy("ipw").needs_impressions
    assert make_policy("epsilon_greedy", base="ipw").needs_impressions
    assert not make_policy("epsilon_greedy").needs_impressions


def test_ipw_with_unit_weights_is_greedy(world):
    # all weights 1 and only clicks, unobserved weight 1, no normalisation effect: Hu et al.
    view, window = world
    a = _ready("greedy", world)
    b = make_policy("ipw", loss="saito", unobserved_weight=1.0)
    b.reset(view, np.random.default_rng(3))
    b.fit(window)  # organic streams only: every weight is 1
    np.testing.assert_allclose(a.model_.user_factors_, b.model_.user_factors_, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------
# re-rankers
# ------------------------------------------------------------------------------------------


def test_mmr_extremes(world):
    users = np.arange(N_USERS)
    base = _ready("greedy", world).recommend(users, K, None)
    np.testing.assert_array_equal(
        _ready("mmr", world, relevance_weight=1.0).recommend(users, K, None).items, base.items
    )
    diverse = _ready("mmr", world, relevance_weight=0.0).recommend(users, K, None)
    genres = world[0].catalog.genre[diverse.items]
    # pure diversity: 4 genres, K = 4 -> the embedding clusters push the slate across genres
    assert np.mean([len(set(g)) for g in genres.tolist()]) > np.mean(
        [len(set(g)) for g in world[0].catalog.genre[base.items].tolist()]
    )


def test_calibrated_follows_the_users_history(world):
    view, _ = world
    users = np.arange(N_USERS)
    cal = _ready("calibrated", world, calibration_weight=0.99)
    slate = cal.recommend(users, K, None)
    g = view.catalog.n_genres
    shown = np.zeros((users.size, g))
    np.add.at(shown, (np.repeat(np.arange(users.size), K), view.catalog.genre[slate.items].ravel()), 1 / K)
    base = _ready("greedy", world).recommend(users, K, None)
    shown_base = np.zeros_like(shown)
    np.add.at(
        shown_base, (np.repeat(np.arange(users.size), K), view.catalog.genre[base.items].ravel()), 1 / K
    )
    p = cal.genre_dist_[users]
    # closer (total variation) to the users' history than the base ranking
    assert np.abs(shown - p).sum(axis=1).mean() < np.abs(shown_base - p).sum(axis=1).mean()


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------

BAD = [
    ("epsilon_greedy", {"epsilon": 1.5}, r"policies\.x\.epsilon: .*less than or equal to 1"),
    ("epsilon_greedy", {"epsilon": -0.1}, r"policies\.x\.epsilon: .*greater than or equal to 0"),
    ("epsilon_greedy", {"epsilon": float("nan")}, r"policies\.x\.epsilon"),
    ("boltzmann", {"temperature": 0.0}, r"policies\.x\.temperature: .*greater than 0"),
    ("boltzmann", {"temperature": -1.0}, r"policies\.x\.temperature"),
    ("thompson", {"prior_alpha": 0.0}, r"policies\.x\.prior_alpha: .*greater than 0"),
    ("thompson", {"prior_beta": -2.0}, r"policies\.x\.prior_beta: .*greater than 0"),
    ("ipw", {"clip": 0.0}, r"policies\.x\.clip: .*greater than 0"),
    ("ipw", {"clip": -1.0}, r"policies\.x\.clip"),
    ("ipw", {"loss": "bce"}, r"policies\.x\.loss"),
    ("ipw", {"examination_estimate": [1.0, 0.0]}, r"policies\.x\.examination_estimate"),
    ("mmr", {"base": "gredy"}, r"policies\.x\.base: unknown base policy 'gredy' \(did you mean 'greedy'\?\)"),
    ("calibrated", {"base": "nope"}, r"policies\.x\.base: unknown base policy 'nope'"),
    ("epsilon_greedy", {"base": "random"}, r"policies\.x\.base: base policy 'random' has no per-item scores"),
    (
        "boltzmann",
        {"base_params": {"factors": 0}},
        r"policies\.x\.base_params: invalid parameters for base policy 'greedy': factors: .*greater than or",
    ),
    ("mmr", {"relevance_weight": 2.0}, r"policies\.x\.relevance_weight"),
    ("ucb", {"c": 0.0}, r"policies\.x\.c: .*greater than 0"),
    ("linucb", {"alpha": -1.0}, r"policies\.x\.alpha"),
    ("linear_thompson", {"prior_precision": 0.0}, r"policies\.x\.prior_precision"),
]


@pytest.mark.parametrize(("name", "kwargs", "match"), BAD)
def test_bad_input_names_the_key(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_policy(name, "x", **kwargs)


def test_bad_intervention_value_names_the_key():
    policy = make_policy("epsilon_greedy", epsilon=0.1)
    with pytest.raises(ConfigError, match=r"policies\.eps10_off\.epsilon"):
        set_param(policy, "epsilon", 1.5, "eps10_off")


# ------------------------------------------------------------------------------------------
# memory: chunked scoring, never a dense users x items matrix
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_world():
    n_users, n_items = 2000, 1000
    cat = make_catalog(CatalogSection(n_items=n_items, n_genres=4, n_artists=20), np.random.default_rng(0))
    pop = make_population(UsersSection(n_users=n_users), RelevanceSection(), cat, np.random.default_rng(1))
    window = LogWindow(30)
    window.add_organic(*organic_history(pop, HistorySection(days=2), np.random.default_rng(2)))
    return WorldView(n_users, cat, 5, pop), window


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("thompson", {"users_per_sample": 1, "mc_samples": 1}),
        ("ucb", {}),
        ("linear_thompson", {"mc_samples": 8, "mc_candidates": 32}),
        ("linucb", {}),
        ("boltzmann", {"mc_samples": 8, "base_params": {"iterations": 1}}),
        ("epsilon_greedy", {"base_params": {"iterations": 1}}),
        ("mmr", {"base_params": {"iterations": 1}}),
    ],
)
def test_recommend_is_chunked(name, params, big_world, monkeypatch):
    import simulator.scoring as scoring
    import simulator.users.population as population

    view, window = big_world
    policy = make_policy(name, **params)
    policy.reset(view, np.random.default_rng(3))
    policy.fit(window)
    monkeypatch.setattr(population, "CHUNK_ELEMENTS", 100_000)  # 100 users per chunk
    monkeypatch.setattr(scoring, "BLOCK_ELEMENTS", 100_000)  # and per fused block (16 MB by default)
    users = np.arange(view.n_users)
    policy.recommend(users[:50], 5, np.random.default_rng(4))  # compiled kernels loaded first
    tracemalloc.start()
    policy.recommend(users, 5, np.random.default_rng(4))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    dense = view.n_users * view.catalog.n_items * 4  # one float32 users x items matrix
    assert peak < dense / 2, (name, peak, dense)


BLOCKED = [
    ("boltzmann", {"mc_samples": 4, "base_params": {"iterations": 1}}),
    ("mmr", {"base_params": {"iterations": 1}}),
    ("calibrated", {"base_params": {"iterations": 1}}),
    ("linear_thompson", {"mc_samples": 8, "mc_candidates": 32}),
    ("linucb", {}),
]


@pytest.mark.parametrize(("name", "params"), BLOCKED)
def test_blocked_recommend_does_not_depend_on_the_thread_count(name, params, big_world):
    from simulator.kernels import get_threads, set_threads

    view, window = big_world
    policy = make_policy(name, **params)
    policy.reset(view, np.random.default_rng(3))
    policy.fit(window)
    users = np.arange(0, view.n_users, 2)
    before = get_threads()
    try:
        slates = []
        for threads in (1, 2):
            set_threads(threads)
            slates.append(policy.recommend(users, 5, np.random.default_rng(4)))
    finally:
        set_threads(before)
    np.testing.assert_array_equal(slates[0].items, slates[1].items)
    np.testing.assert_array_equal(slates[0].pscore, slates[1].pscore)


@pytest.mark.parametrize(("name", "params"), BLOCKED[:3])
def test_wrappers_score_factor_bases_like_their_score_chunks(name, params, big_world, monkeypatch):
    """Scores formed from the base's factors in cache-sized blocks, or read through its
    score_chunks: the same slates (and the same propensities, up to float32 rounding)."""
    import simulator.policies._blocks as blocks

    view, window = big_world
    policy = make_policy(name, **params)
    policy.reset(view, np.random.default_rng(3))
    policy.fit(window)
    users = np.arange(0, view.n_users, 3)
    fused = policy.recommend(users, 5, np.random.default_rng(4))
    monkeypatch.setattr(blocks, "factor_scorer", lambda policy: None)
    chunked = policy.recommend(users, 5, np.random.default_rng(4))
    assert (fused.items == chunked.items).all(axis=1).mean() > 0.99  # a near-tie may differ
    same = (fused.items == chunked.items).all(axis=1)
    np.testing.assert_allclose(fused.pscore[same], chunked.pscore[same], rtol=1e-4)


# ------------------------------------------------------------------------------------------
# the two experiments, at a tiny size
# ------------------------------------------------------------------------------------------


def _tiny(path: Path, **extra) -> dict:
    data = tomllib.loads(path.read_text())
    data["experiment"].update(n_rounds=4, seeds=[0])
    data["catalog"].update(n_items=200, n_artists=40)
    data["users"].update(n_users=300)
    data["history"].update(days=14)
    data["metrics"].update(n_tracked_users=20, regret_users=50)
    data["simulation"].update(log_fraction=0.0)
    data.update(extra)
    return data


@pytest.mark.parametrize("config", ["prevent_collapse", "exploration_switched_off"])
def test_experiment_runs_every_policy_at_a_tiny_size(config):
    from simulator.engine.model import RecloopModel

    cfg = parse_config(_tiny(ROOT / "experiments" / f"{config}.toml"))
    assert len(cfg.experiment.seeds) == 1 and len(cfg.policies) >= 3
    for label in cfg.policies:
        model = RecloopModel(cfg, label, 0)
        model.run()
        assert np.isfinite(model.metrics_["gini"]), label


def test_exploration_switched_off_sets_epsilon_to_zero_on_schedule():
    from simulator.engine.model import RecloopModel

    path = ROOT / "experiments" / "exploration_switched_off.toml"
    original = tomllib.loads(path.read_text())
    off = [iv for iv in original["interventions"] if iv["param"] == "epsilon"]
    assert off and all(iv["value"] == 0 for iv in off) and off[0]["day"] == 60
    data = _tiny(path, interventions=[{**off[0], "day": 3}])
    cfg = parse_config(data)
    model = RecloopModel(cfg, off[0]["policy"], 0)
    model.run(3)
    assert model.policy.epsilon > 0
    model.run(1)  # day 3: the intervention fires before the round
    assert model.policy.epsilon == 0
    slate = model.policy.recommend(np.arange(10), cfg.simulation.slate_size, np.random.default_rng(0))
    np.testing.assert_array_equal(slate.pscore, 1.0)
