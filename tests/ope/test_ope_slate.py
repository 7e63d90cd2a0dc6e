"""Slate estimators on a small problem whose truth is computed by enumeration.

The problem: 2 contexts (probability 0.5 each), 4 items, slates of 2 positions.
* Logging μ fills the positions **independently** (repeats allowed): μ_k(a | x).
* Target π is a distribution over rankings *without* repeats (12 per context, Plackett–Luce).
* Clicks follow the position-based model: P(click at k | x, s) = θ_k · rel(x, s_k), so the slate
  reward R = Σ_k click_k is additive and the item-position assumption holds.
True value V(π) = Σ_x p(x) Σ_s π(s | x) Σ_k θ_k rel(x, s_k).
"""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

from simulator.errors import ValidationError
from simulator.ope import ItemPositionIPS, PseudoInverse, SlateEstimator, make_estimator

N_ITEMS, LENGTH = 4, 2
P_X = np.array([0.5, 0.5])
THETA = np.array([1.0, 0.6])
REL = np.array([[0.2, 0.5, 0.7, 0.3], [0.6, 0.1, 0.4, 0.8]])
MU = np.array(  # MU[x, a, k] = μ_k(a | x); columns sum to 1
    [
        [[0.4, 0.1], [0.3, 0.2], [0.2, 0.3], [0.1, 0.4]],
        [[0.25, 0.25], [0.25, 0.25], [0.25, 0.25], [0.25, 0.25]],
    ]
)
SCORES = np.array([[0.1, 1.0, 2.0, 0.0], [1.5, 0.0, 0.5, 2.5]])


def _plackett_luce(scores: np.ndarray) -> dict[tuple[int, ...], float]:
    """π(s) for every ranking s of LENGTH distinct items under Plackett–Luce."""
    w = np.exp(scores)
    out = {}
    for s in itertools.permutations(range(N_ITEMS), LENGTH):
        p, left = 1.0, w.sum()
        for a in s:
            p *= w[a] / left
            left -= w[a]
        out[s] = p
    return out


PI = [_plackett_luce(SCORES[x]) for x in range(2)]
PI_MARGINAL = np.zeros((2, N_ITEMS, LENGTH))  # π(a at k | x)
for _x in range(2):
    for _s, _p in PI[_x].items():
        for _k, _a in enumerate(_s):
            PI_MARGINAL[_x, _a, _k] += _p
TRUE_VALUE = sum(
    P_X[x] * p * sum(THETA[k] * REL[x, a] for k, a in enumerate(s))
    for x in range(2)
    for s, p in PI[x].items()
)


def _enumerate_logged(click_model: str = "pbm"):
    """Every (context, logged slate) as one round, its probability, and E[reward | x, s]."""
    rows, prob, exp_reward = [], [], []
    for x in range(2):
        for s in itertools.product(range(N_ITEMS), repeat=LENGTH):
            rows.append((x, s))
            prob.append(P_X[x] * np.prod([MU[x, a, k] for k, a in enumerate(s)]))
            c = [THETA[k] * REL[x, a] for k, a in enumerate(s)]
            if click_model == "cascade":  # position 1 is seen only without a click above
                c[1] *= 1.0 - c[0]
            exp_reward.append(c)
    xs = np.array([x for x, _ in rows])
    slate = np.array([s for _, s in rows])
    pscore = MU[xs[:, None], slate, np.arange(LENGTH)[None, :]]
    return {
        "slate_action": slate,
        "reward": np.array(exp_reward),
        "pscore": pscore,
        "action_dist": PI_MARGINAL[xs],
    }, np.array(prob)


def test_truth_by_enumeration_is_a_probability_model():
    assert sum(PI[0].values()) == pytest.approx(1.0)
    np.testing.assert_allclose(PI_MARGINAL.sum(axis=1), 1.0)
    _, prob = _enumerate_logged()
    assert prob.sum() == pytest.approx(1.0)
    # V(π) = Σ_x p(x) Σ_k θ_k Σ_a π(a at k | x) rel(x, a), the marginal form
    marginal_form = np.einsum("x,k,xak,xa->", P_X, THETA, PI_MARGINAL, REL)
    assert TRUE_VALUE == pytest.approx(marginal_form, rel=1e-14)


@pytest.mark.parametrize("estimator", [ItemPositionIPS(), PseudoInverse()], ids=["iips", "pi"])
def test_exactly_unbiased_by_enumeration(estimator):
    # E_μ[V̂] = Σ_{x,s} p(x) μ(s|x) v̂(x, s, E[r|x,s]) equals V(π) up to rounding: the estimators
    # are linear in the reward, so plugging in the expected rewards gives the exact expectation
    data, prob = _enumerate_logged()
    expectation = estimator.estimate_round_rewards(**data) @ prob
    assert expectation == pytest.approx(TRUE_VALUE, rel=1e-12)


def test_pseudo_inverse_weights_have_unit_mean():
    # E_μ[w_PI] = Σ_k Σ_a π(a at k) − (L − 1) = 1, exactly, per context
    data, prob = _enumerate_logged()
    ones = {**data, "reward": np.ones(len(prob))}  # slate reward 1 -> round value = w
    w = PseudoInverse().estimate_round_rewards(**ones)
    assert w @ prob == pytest.approx(1.0, rel=1e-12)
    assert w.min() < 0  # PI weights can be negative


def test_pseudo_inverse_accepts_slate_reward():
    data, _ = _enumerate_logged()
    per_position = PseudoInverse().estimate_round_rewards(**data)
    slate = PseudoInverse().estimate_round_rewards(**{**data, "reward": data["reward"].sum(1)})
    np.testing.assert_array_equal(per_position, slate)


def test_closed_forms_on_one_slate():
    # one slate (items 2, 0), μ = 0.5 and 0.25, π marginals 0.3 and 0.6, clicks (1, 0):
    # IIPS = 1·0.3/0.5 + 0·0.6/0.25 = 0.6;  PI = (1 + 0)·(0.6 + 2.4 − 1) = 2.0
    dist = np.full((1, 3, 2), 0.0)
    dist[0, :, 0] = [0.6, 0.1, 0.3]
    dist[0, :, 1] = [0.6, 0.2, 0.2]
    kwargs = {
        "slate_action": np.array([[2, 0]]),
        "reward": np.array([[1.0, 0.0]]),
        "pscore": np.array([[0.5, 0.25]]),
        "action_dist": dist,
    }
    assert ItemPositionIPS().estimate_policy_value(**kwargs) == pytest.approx(0.6)
    assert ItemPositionIPS(lambda_=0.5).estimate_policy_value(**kwargs) == pytest.approx(0.5)
    assert PseudoInverse().estimate_policy_value(**kwargs) == pytest.approx(2.0)
    assert PseudoInverse(self_normalized=True).estimate_policy_value(**kwargs) == pytest.approx(1.0)


def test_on_policy_weights_are_one():
    # π = μ (independent, both positions): every IIPS weight is 1 and every PI weight is
    # L·1 − (L − 1) = 1, so both return the mean slate reward exactly
    data, _ = _enumerate_logged()
    xs = np.repeat([0, 1], N_ITEMS**LENGTH)
    on_policy = {**data, "action_dist": MU[xs]}
    mean = data["reward"].sum(axis=1).mean()
    assert ItemPositionIPS().estimate_policy_value(**on_policy) == pytest.approx(mean, rel=1e-14)
    assert PseudoInverse().estimate_policy_value(**on_policy) == pytest.approx(mean, rel=1e-14)


def test_cascade_rewards_break_the_assumptions():
    # with a cascade the reward is not additive: both estimators are biased (documented)
    data, prob = _enumerate_logged("cascade")
    truth = sum(
        P_X[x] * p * (THETA[0] * REL[x, s[0]] + (1 - THETA[0] * REL[x, s[0]]) * THETA[1] * REL[x, s[1]])
        for x in range(2)
        for s, p in PI[x].items()
    )
    for est in (ItemPositionIPS(), PseudoInverse()):
        assert abs(est.estimate_round_rewards(**data) @ prob - truth) > 1e-3


def _sample_log(n: int, seed: int):
    """n logged slates from μ with Bernoulli PBM clicks."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n)
    slate = np.empty((n, LENGTH), dtype=np.int64)
    for k in range(LENGTH):  # inverse CDF per position, independent
        cdf = np.cumsum(MU[x, :, k], axis=1)
        slate[:, k] = np.minimum((rng.random(n)[:, None] > cdf).sum(axis=1), N_ITEMS - 1)
    p_click = THETA[None, :] * REL[x[:, None], slate]
    clicks = (rng.random((n, LENGTH)) < p_click).astype(np.float64)
    return {
        "slate_action": slate,
        "reward": clicks,
        "pscore": MU[x[:, None], slate, np.arange(LENGTH)[None, :]],
        "action_dist": PI_MARGINAL[x],
    }


@pytest.mark.parametrize(
    "estimator",
    [ItemPositionIPS(), PseudoInverse(), PseudoInverse(self_normalized=True)],
    ids=["iips", "pi", "wpi"],
)
def test_unbiased_on_a_sampled_log(estimator):
    # 200k slates, seed 0: the estimate is within 4 standard errors of V(π)
    # (the standard error from the per-slate values; wPI is only consistent, same tolerance)
    data = _sample_log(200_000, seed=0)
    values = estimator.estimate_round_rewards(**data)
    se = values.std() / np.sqrt(values.shape[0])
    estimate = values.mean()
    print(f"{estimator!r}: {estimate:.5f} vs truth {TRUE_VALUE:.5f} (se {se:.5f})")
    assert abs(estimate - TRUE_VALUE) < 4 * se
    assert se < 0.01  # and the check is informative


def test_slate_interval_and_determinism():
    data = _sample_log(2000, seed=1)
    est = make_estimator("pseudo-inverse")
    a = est.estimate_interval(**data, n_bootstrap_samples=200, random_state=3)
    b = est.estimate_interval(**data, n_bootstrap_samples=200, random_state=3)
    assert a == b and a.lower < a.estimate < a.upper
    p = est.estimate_interval(**data, n_bootstrap_samples=200, random_state=3, convention="percentile")
    assert p.estimate == a.estimate
    assert isinstance(est, SlateEstimator)
    assert pickle.loads(pickle.dumps(est)) == est


def _slate_inputs():
    data = _sample_log(20, seed=2)
    return {k: np.array(v, copy=True) for k, v in data.items()}


def _with(key, fn):
    def build():
        data = _slate_inputs()
        data[key] = fn(data[key]) if callable(fn) else fn
        return data

    return build


def _set(index, value):
    def fn(arr):
        arr = arr.astype(np.float64)
        arr[index] = value
        return arr

    return fn


BAD_SLATE_INPUTS = [
    (
        _with("pscore", _set((3, 1), 0.0)),
        r"pscore must be > 0 and finite; got min 0\.0 at round 3, position 1",
    ),
    (_with("pscore", _set((5, 0), np.nan)), r"pscore must be > 0 and finite; got nan at round 5, position 0"),
    (_with("pscore", lambda p: p[:, :1]), r"pscore must have shape \(n_slates, len_list\) = \(20, 2\)"),
    (_with("pscore", None), r"requires pscore; got None"),
    (_with("slate_action", lambda s: s + 4), r"slate_action must be in \[0, n_actions\) = \[0, 4\)"),
    (_with("slate_action", lambda s: s.astype(float)), r"slate_action must be an integer array"),
    (
        _with("slate_action", lambda s: s[:-1]),
        r"slate_action must have shape \(n_slates, len_list\) = \(20, 2\)",
    ),
    (_with("reward", _set((2, 1), np.inf)), r"reward must be finite; got inf at round 2"),
    (_with("reward", lambda r: r[:, 0]), r"reward must have shape \(20, 2\); got shape \(20,\)"),
    (_with("action_dist", lambda d: d * 2.0), r"action_dist must sum to 1 over actions"),
]


@pytest.mark.parametrize(("build", "match"), BAD_SLATE_INPUTS)
def test_bad_slate_inputs_raise(build, match):
    with pytest.raises(ValidationError, match=match):
        ItemPositionIPS().estimate_policy_value(**build())


def test_bad_slate_hyperparameters_raise():
    with pytest.raises(ValidationError, match=r"ItemPositionIPS\.lambda_ must be a float >= 0"):
        ItemPositionIPS(lambda_=-1)
    with pytest.raises(ValidationError, match=r"self_normalized must be a bool; got 'yes'"):
        PseudoInverse(self_normalized="yes")


def test_weighted_pi_needs_positive_weight_mass():
    # every PI weight <= 0: π puts no mass on any logged (item, position) pair
    dist = np.zeros((3, 3, 2))
    dist[:, 2, :] = 1.0  # target always shows item 2, the log never does
    kwargs = {
        "slate_action": np.array([[0, 1], [1, 0], [0, 0]]),
        "reward": np.ones((3, 2)),
        "pscore": np.full((3, 2), 0.5),
        "action_dist": dist,
    }
    assert PseudoInverse().estimate_policy_value(**kwargs) == pytest.approx(-2.0)  # 2 · (0 − 1)
    with pytest.raises(ValidationError, match=r"pseudo-inverse weights sum to -3\.0 <= 0"):
        PseudoInverse(self_normalized=True).estimate_policy_value(**kwargs)
