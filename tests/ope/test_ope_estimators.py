"""Standard off-policy estimators: obp reference, closed forms, bad inputs, registry."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import ValidationError
from simulator.ope import (
    ESTIMATORS,
    BaseOffPolicyEstimator,
    DirectMethod,
    DoublyRobust,
    DoublyRobustWithShrinkage,
    Estimator,
    InverseProbabilityWeighting,
    SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting,
    SlateEstimator,
    SubGaussianDoublyRobust,
    SubGaussianInverseProbabilityWeighting,
    SwitchDoublyRobust,
    estimator_names,
    importance_weights,
    make_estimator,
)

REF_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
REL = 1e-9

# reference key -> estimator (hyperparameters from ope_reference.json)
REFERENCE_ESTIMATORS = {
    "ipw": InverseProbabilityWeighting(),
    "ipw_clip_lambda5": InverseProbabilityWeighting(lambda_=5.0),
    "snipw": SelfNormalizedInverseProbabilityWeighting(),
    "dm": DirectMethod(),
    "dr": DoublyRobust(),
    "dr_clip_lambda5": DoublyRobust(lambda_=5.0),
    "sndr": SelfNormalizedDoublyRobust(),
    "switch_dr_lambda5": SwitchDoublyRobust(lambda_=5.0),
    "dr_os_lambda10": DoublyRobustWithShrinkage(lambda_=10.0),
    "sg_ipw_lambda0.1": SubGaussianInverseProbabilityWeighting(lambda_=0.1),
    "sg_dr_lambda0.1": SubGaussianDoublyRobust(lambda_=0.1),
}


@pytest.fixture(scope="module")
def reference():
    if not (REF_DIR / "ope_case.npz").is_file():
        pytest.skip(f"obp reference case not found in {REF_DIR}")
    case = np.load(REF_DIR / "ope_case.npz")
    rounds = np.load(REF_DIR / "ope_reference_rounds.npz")
    values = json.loads((REF_DIR / "ope_reference.json").read_text())
    kwargs = {
        "reward": case["reward"],
        "action": case["action"],
        "pscore": case["pscore"],
        "action_dist": case["action_dist"],
        "estimated_rewards_by_reg_model": case["estimated_rewards_by_reg_model"],
        "position": case["position"],
    }
    return kwargs, rounds, values


# ---------------------------------------------------------------------------------------------
# the obp reference


@pytest.mark.parametrize("key", list(REFERENCE_ESTIMATORS))
def test_policy_value_matches_obp_reference(reference, key):
    kwargs, _, values = reference
    got = REFERENCE_ESTIMATORS[key].estimate_policy_value(**kwargs)
    assert got == pytest.approx(values["policy_values"][key], rel=REL, abs=0.0)


@pytest.mark.parametrize("key", list(REFERENCE_ESTIMATORS))
def test_round_rewards_match_obp_reference(reference, key):
    kwargs, rounds, _ = reference
    got = REFERENCE_ESTIMATORS[key].estimate_round_rewards(**kwargs)
    np.testing.assert_allclose(got, rounds[key], rtol=REL, atol=0.0)
    assert got.shape == (5000,) and got.dtype == np.float64


def test_reference_covers_every_registered_bandit_estimator(reference):
    # every non-slate estimator in the registry has at least one reference value
    covered = {type(e).name for e in REFERENCE_ESTIMATORS.values()}
    bandit = {n for n, cls in ESTIMATORS.items() if issubclass(cls, BaseOffPolicyEstimator)}
    assert bandit == covered


def test_reference_diagnostics(reference):
    kwargs, _, values = reference
    w = importance_weights(
        action=kwargs["action"], pscore=kwargs["pscore"], action_dist=kwargs["action_dist"]
    )
    diag = values["diagnostics"]
    assert w.mean() == pytest.approx(diag["importance_weight_mean"], rel=REL)
    assert w.max() == pytest.approx(diag["importance_weight_max"], rel=REL)
    assert (w > 5.0).mean() == diag["fraction_weights_gt_clip_lambda"]


def test_position_none_equals_zeros(reference):
    kwargs, _, _ = reference
    no_pos = {k: v for k, v in kwargs.items() if k != "position"}
    est = DoublyRobust(lambda_=5.0)
    assert est.estimate_policy_value(**no_pos) == est.estimate_policy_value(**kwargs)


def test_float32_inputs_agree(reference):
    kwargs, _, values = reference
    f32 = dict(kwargs)
    f32["action_dist"] = kwargs["action_dist"].astype(np.float32)
    f32["action_dist"] /= f32["action_dist"].sum(axis=1, keepdims=True)
    got = DoublyRobust().estimate_policy_value(**f32)
    assert got == pytest.approx(values["policy_values"]["dr"], rel=1e-5)


# ---------------------------------------------------------------------------------------------
# closed forms on a four-round problem worked out by hand

TINY = {
    "reward": np.array([1.0, 0.0, 1.0, 1.0]),
    "action": np.array([0, 1, 0, 1]),
    "pscore": np.array([0.5, 0.5, 0.25, 0.8]),
    "action_dist": np.array([[0.8, 0.2], [0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])[:, :, None],
    "estimated_rewards_by_reg_model": np.array([[0.5, 0.1], [0.2, 0.4], [0.6, 0.3], [0.0, 1.0]])[:, :, None],
}
# weights w = pi_e(a_i)/p_i = [1.6, 1.0, 4.0, 1.0], sum 7.6
# DM_i = sum_a pi_e q_hat = [0.42, 0.30, 0.60, 0.80], mean 0.53
# q_hat(a_i) = [0.5, 0.4, 0.6, 1.0], residual r - q_hat = [0.5, -0.4, 0.4, 0.0]
TINY_EXPECTED = [
    (InverseProbabilityWeighting(), (1.6 + 0 + 4.0 + 1.0) / 4),  # 1.65
    (InverseProbabilityWeighting(lambda_=2.0), (1.6 + 0 + 2.0 + 1.0) / 4),  # truncation: 1.15
    (InverseProbabilityWeighting(lambda_=0.0), 0.0),
    (SelfNormalizedInverseProbabilityWeighting(), 6.6 / 7.6),
    (DirectMethod(), 0.53),
    (DoublyRobust(), (1.22 - 0.10 + 2.20 + 0.80) / 4),  # DM_i + w_i res_i; 1.03
    (DoublyRobust(lambda_=2.0), (1.22 - 0.10 + (0.6 + 2.0 * 0.4) + 0.80) / 4),
    (SelfNormalizedDoublyRobust(), 0.53 + (0.8 - 0.4 + 1.6 + 0.0) / 7.6),
    (SwitchDoublyRobust(lambda_=2.0), (1.22 - 0.10 + 0.60 + 0.80) / 4),  # w=4 > 2 -> DM only
    (SwitchDoublyRobust(lambda_=4.0), (1.22 - 0.10 + 2.20 + 0.80) / 4),  # inclusive <=
    (
        DoublyRobustWithShrinkage(lambda_=1.0),  # w_hat = w / (w^2 + 1)
        0.53 + (0.5 * 1.6 / 3.56 - 0.4 * 0.5 + 0.4 * 4 / 17 + 0.0) / 4,
    ),
    (
        SubGaussianInverseProbabilityWeighting(lambda_=0.5),  # w~ = w / (0.5 + 0.5 w)
        (1.6 / 1.3 + 0.0 + 4.0 / 2.5 + 1.0) / 4,
    ),
    (
        SubGaussianDoublyRobust(lambda_=0.5),
        0.53 + (0.5 * 1.6 / 1.3 - 0.4 * 1.0 + 0.4 * 1.6 + 0.0) / 4,
    ),
]


@pytest.mark.parametrize(("estimator", "expected"), TINY_EXPECTED, ids=repr)
def test_tiny_closed_form(estimator, expected):
    assert estimator.estimate_policy_value(**TINY) == pytest.approx(expected, rel=1e-12)


def _random_problem(seed: int, n: int = 400, k: int = 5, length: int = 1, on_policy=False):
    rng = np.random.default_rng(seed)
    pi_b = rng.dirichlet(np.ones(k), size=(n, length)).transpose(0, 2, 1)
    pi_e = rng.dirichlet(np.ones(k), size=(n, length)).transpose(0, 2, 1)
    if on_policy:
        pi_e = pi_b
    position = rng.integers(0, length, size=n)
    u = rng.random(n)
    action = (u[:, None] > np.cumsum(pi_b[np.arange(n), :, position], axis=1)).sum(axis=1)
    action = np.minimum(action, k - 1)
    return {
        "reward": rng.random(n),
        "action": action,
        "pscore": pi_b[np.arange(n), action, position],
        "action_dist": pi_e,
        "estimated_rewards_by_reg_model": rng.random((n, k, length)),
        "position": position,
    }


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (DoublyRobustWithShrinkage(lambda_=np.inf), DoublyRobust()),
        (DoublyRobustWithShrinkage(lambda_=0.0), DirectMethod()),
        (SwitchDoublyRobust(lambda_=np.inf), DoublyRobust()),
        (SwitchDoublyRobust(lambda_=0.0), DirectMethod()),  # every weight is > 0 here
        (SubGaussianInverseProbabilityWeighting(lambda_=0.0), InverseProbabilityWeighting()),
        (SubGaussianDoublyRobust(lambda_=0.0), DoublyRobust()),
        (DoublyRobust(lambda_=0.0), DirectMethod()),
    ],
    ids=repr,
)
@pytest.mark.parametrize("length", [1, 3])
def test_limits_coincide(a, b, length):
    data = _random_problem(1, length=length)
    np.testing.assert_allclose(a.estimate_round_rewards(**data), b.estimate_round_rewards(**data), rtol=1e-12)


@pytest.mark.parametrize("contiguous", [True, False])
def test_ranked_lists_match_obp_formulas(contiguous):
    # len_list = 3: obp's code, transcribed (fancy indexing + np.average), as the oracle
    data = _random_problem(5, n=300, k=6, length=3)
    if not contiguous:  # strided views take the non-flat gather path
        data["action_dist"] = np.asfortranarray(data["action_dist"])
        data["estimated_rewards_by_reg_model"] = np.asfortranarray(data["estimated_rewards_by_reg_model"])
    rows, a, pos = np.arange(300), data["action"], data["position"]
    iw = data["action_dist"][rows, a, pos] / data["pscore"]
    q_hat = data["estimated_rewards_by_reg_model"]
    dm = np.average(q_hat[rows, :, pos], weights=data["action_dist"][rows, :, pos], axis=1)
    res = data["reward"] - q_hat[rows, a, pos]
    expected = {
        InverseProbabilityWeighting(lambda_=2.0): data["reward"] * np.minimum(iw, 2.0),
        SelfNormalizedInverseProbabilityWeighting(): data["reward"] * iw / iw.mean(),
        DirectMethod(): dm,
        DoublyRobust(): dm + iw * res,
        SelfNormalizedDoublyRobust(): dm + iw * res / iw.mean(),
        SwitchDoublyRobust(lambda_=1.5): dm + (iw <= 1.5) * iw * res,
    }
    for est, values in expected.items():
        np.testing.assert_allclose(est.estimate_round_rewards(**data), values, rtol=1e-12)


def test_on_policy_weights_are_one():
    # pi_e = pi_b: every weight is 1, IPW and SNIPW return the mean reward exactly
    data = _random_problem(2, length=2, on_policy=True)
    mean = data["reward"].mean()
    assert InverseProbabilityWeighting().estimate_policy_value(**data) == pytest.approx(mean)
    snipw = SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**data)
    assert snipw == pytest.approx(mean)


def test_ipw_is_unbiased_by_enumeration():
    # E_{a ~ pi_b}[r(a) pi_e(a)/pi_b(a)] = sum_a pi_e(a) r(a) exactly, for any rewards
    pi_b = np.array([0.1, 0.2, 0.3, 0.4])
    pi_e = np.array([0.4, 0.3, 0.2, 0.1])
    r = np.array([0.9, 0.1, 0.5, 0.3])
    per_round = InverseProbabilityWeighting().estimate_round_rewards(
        reward=r, action=np.arange(4), pscore=pi_b, action_dist=np.tile(pi_e, (4, 1))[:, :, None]
    )
    assert per_round @ pi_b == pytest.approx(pi_e @ r, rel=1e-14)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lam=st.floats(0.0, 10.0))
def test_properties(seed, lam):
    data = _random_problem(seed, n=50, k=4, length=2)
    ipw = InverseProbabilityWeighting().estimate_policy_value(**data)
    clipped = InverseProbabilityWeighting(lambda_=lam).estimate_policy_value(**data)
    assert clipped <= ipw + 1e-12  # rewards >= 0: truncation only lowers the estimate
    snipw = SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**data)
    assert data["reward"].min() - 1e-12 <= snipw <= data["reward"].max() + 1e-12  # a weighted mean
    values = DoublyRobust(lambda_=lam).estimate_round_rewards(**data)
    assert values.mean() == DoublyRobust(lambda_=lam).estimate_policy_value(**data)


# ---------------------------------------------------------------------------------------------
# bad inputs


def _base_inputs():
    data = _random_problem(3, n=30, k=4, length=1)
    return {k: np.array(v, copy=True) for k, v in data.items()}


def _with(**changes):
    def build():
        data = _base_inputs()
        for key, fn in changes.items():
            data[key] = fn(data[key]) if callable(fn) else fn
        return data

    return build


def _set(index, value):
    def fn(arr):
        arr = arr.astype(np.float64)
        arr[index] = value
        return arr

    return fn


BAD_INPUTS = [
    (_with(pscore=_set(17, 0.0)), r"pscore must be > 0 and finite; got min 0\.0 at round 17"),
    (_with(pscore=_set(4, -0.2)), r"pscore must be > 0 and finite; got min -0\.2 at round 4"),
    (_with(pscore=_set(3, np.nan)), r"pscore must be > 0 and finite; got nan at round 3"),
    (_with(pscore=_set(5, np.inf)), r"pscore must be > 0 and finite; got inf at round 5"),
    (_with(pscore=_set(6, 1.5)), r"pscore must be a probability <= 1; got max 1\.5 at round 6"),
    (_with(pscore=None), r"InverseProbabilityWeighting requires pscore; got None"),
    (_with(pscore=lambda p: p[:-1]), r"pscore must have length n_rounds = 30"),
    (_with(pscore=lambda p: p[:, None]), r"pscore must be a 1-D array"),
    (_with(reward=lambda r: r[:-2]), r"reward must have length n_rounds = 30 .*got length 28"),
    (_with(reward=_set(2, np.nan)), r"reward must be finite; got nan at round 2"),
    (_with(action=lambda a: a.astype(float)), r"action must be an integer array; got dtype float64"),
    (
        _with(action=lambda a: np.where(np.arange(30) == 9, 4, a)),
        r"action must be in \[0, n_actions\) = \[0, 4\); got 4 at round 9",
    ),
    (_with(action=lambda a: np.where(np.arange(30) == 1, -1, a)), r"got -1 at round 1"),
    (_with(action_dist=lambda d: d[:, :, 0]), r"action_dist must be a 3-D array"),
    (
        _with(action_dist=lambda d: d * 0.9),
        r"action_dist must sum to 1 over actions .* got 0\.9 at round 0, position 0",
    ),
    (
        _with(action_dist=_set((7, 2, 0), np.nan)),
        r"action_dist must be >= 0 and finite; got nan at round 7, action 2",
    ),
    (_with(action_dist=_set((1, 0, 0), -0.1)), r"action_dist must be >= 0 and finite"),
    (_with(action_dist=lambda d: d[:-1]), r"must have length n_rounds = 29"),
    (_with(action_dist=lambda d: d.astype(int)), r"action_dist must be a float array"),
    (
        _with(position=np.ones(30, dtype=int)),
        r"position must be in \[0, len_list\) = \[0, 1\); got 1 at round 0",
    ),
    (_with(position=np.zeros(30)), r"position must be an integer array"),
]


@pytest.mark.parametrize(("build", "match"), BAD_INPUTS)
def test_bad_inputs_raise(build, match):
    data = build()
    data.pop("estimated_rewards_by_reg_model")
    with pytest.raises(ValidationError, match=match):
        InverseProbabilityWeighting().estimate_policy_value(**data)


BAD_MODEL_INPUTS = [
    (
        DoublyRobust(),
        _with(estimated_rewards_by_reg_model=None),
        r"DoublyRobust requires estimated_rewards_by_reg_model; got None",
    ),
    (
        DirectMethod(),
        _with(estimated_rewards_by_reg_model=lambda q: q[:, :2]),
        r"must have the shape of action_dist \(30, 4, 1\); got shape \(30, 2, 1\)",
    ),
    (
        SelfNormalizedDoublyRobust(),
        _with(estimated_rewards_by_reg_model=_set((3, 1, 0), np.inf)),
        r"estimated_rewards_by_reg_model must be finite; got inf at round 3, action 1",
    ),
    (
        SwitchDoublyRobust(),
        _with(estimated_rewards_by_reg_model=_set((0, 0, 0), np.nan)),
        r"must be finite; got nan at round 0",
    ),
]


@pytest.mark.parametrize(("estimator", "build", "match"), BAD_MODEL_INPUTS)
def test_bad_reward_model_inputs_raise(estimator, build, match):
    with pytest.raises(ValidationError, match=match):
        estimator.estimate_policy_value(**build())


def test_position_required_for_ranked_lists():
    data = _random_problem(4, n=20, k=3, length=2)
    data.pop("position")
    with pytest.raises(ValidationError, match=r"position is required when action_dist has len_list = 2"):
        DoublyRobust().estimate_policy_value(**data)


@pytest.mark.parametrize(
    "estimator", [SelfNormalizedInverseProbabilityWeighting(), SelfNormalizedDoublyRobust()]
)
def test_self_normalized_needs_probability_on_logged_actions(estimator):
    # the target policy never takes a logged action: sum of weights is 0 -> error, not NaN
    data = _base_inputs()
    k = data["action_dist"].shape[1]
    data["action"] = np.zeros(30, dtype=int)
    data["action_dist"] = np.zeros((30, k, 1))
    data["action_dist"][:, 1, 0] = 1.0
    with pytest.raises(ValidationError, match=r"zero probability to every logged action"):
        estimator.estimate_policy_value(**data)
    # the plain estimators are defined there: IPW is exactly 0
    ipw = InverseProbabilityWeighting().estimate_policy_value(
        **{k: v for k, v in data.items() if k != "estimated_rewards_by_reg_model"}
    )
    assert ipw == 0.0


BAD_HYPERPARAMETERS = [
    (
        InverseProbabilityWeighting,
        {"lambda_": -1.0},
        r"InverseProbabilityWeighting\.lambda_ must be a float >= 0 .*got -1\.0",
    ),
    (InverseProbabilityWeighting, {"lambda_": np.nan}, r"lambda_ must be a float >= 0.*got nan"),
    (DoublyRobust, {"lambda_": "5"}, r"DoublyRobust\.lambda_ must be a float; got '5'"),
    (SwitchDoublyRobust, {"lambda_": True}, r"lambda_ must be a float; got True"),
    (DoublyRobustWithShrinkage, {"lambda_": -0.5}, r"lambda_ must be a float >= 0"),
    (
        SubGaussianInverseProbabilityWeighting,
        {"lambda_": 1.5},
        r"lambda_ must be a float in \[0, 1.0\]; got 1\.5",
    ),
    (SubGaussianDoublyRobust, {"lambda_": -0.1}, r"lambda_ must be a float in \[0, 1.0\]"),
]


@pytest.mark.parametrize(("cls", "kwargs", "match"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise(cls, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        cls(**kwargs)


def test_hyperparameters_are_normalised_to_float():
    assert InverseProbabilityWeighting(lambda_=5).lambda_ == 5.0
    assert isinstance(InverseProbabilityWeighting(lambda_=5).lambda_, float)


# ---------------------------------------------------------------------------------------------
# registry and conformance


def test_make_estimator_by_name_and_alias():
    assert make_estimator("ipw", lambda_=5) == InverseProbabilityWeighting(lambda_=5.0)
    assert make_estimator("IPS") == InverseProbabilityWeighting()
    assert make_estimator("snips") == SelfNormalizedInverseProbabilityWeighting()
    assert make_estimator("switch_dr", lambda_=3.0) == SwitchDoublyRobust(lambda_=3.0)
    assert make_estimator("dr-os", lambda_=10) == DoublyRobustWithShrinkage(lambda_=10.0)


REGISTRY_ERRORS = [
    (("snpis",), {}, r"unknown estimator 'snpis'; did you mean 'snips'"),
    (("doubly_robst",), {}, r"did you mean 'doubly-robust'"),
    (("zzz",), {}, r"unknown estimator 'zzz'\. Known estimators: ipw, snipw"),
    (("ipw",), {"lamda": 3.0}, r"has no hyperparameter 'lamda'; did you mean 'lambda_'\?"),
    (("snipw",), {"lambda_": 3.0}, r"ignore lambda_"),
    (("dr",), {"lambda_": -3.0}, r"DoublyRobust\.lambda_ must be a float >= 0"),
    ((3,), {}, r"estimator name must be a str"),
]


@pytest.mark.parametrize(("args", "kwargs", "match"), REGISTRY_ERRORS)
def test_registry_errors(args, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        make_estimator(*args, **kwargs)


@pytest.mark.parametrize("name", estimator_names())
def test_registry_conformance(name):
    est = make_estimator(name)
    assert type(est).name == name
    assert isinstance(est, Estimator) or isinstance(est, SlateEstimator)
    clone = pickle.loads(pickle.dumps(est))
    assert clone == est and hash(clone) == hash(est)
    with pytest.raises(AttributeError):
        est.name = "other"  # frozen dataclass: hyperparameters are data
    if name in ("iips", "pi"):
        return
    data = _random_problem(7, n=100, k=4, length=2)
    first = est.estimate_round_rewards(**data)
    again = clone.estimate_round_rewards(**data)
    assert np.array_equal(first, again) and np.isfinite(first).all()
    assert est.estimate_policy_value(**data) == pytest.approx(first.mean(), rel=1e-15)
    interval = est.estimate_interval(**data, n_bootstrap_samples=50, random_state=0)
    assert interval.lower <= interval.upper
