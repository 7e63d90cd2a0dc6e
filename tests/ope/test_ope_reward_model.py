"""Reward model q̂(x, a, k): closed-form prediction, cross-fitting, DR on the reference case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.errors import ValidationError
from simulator.ope import DirectMethod, DoublyRobust, RewardModel

REF_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


def _logistic_log(n=3000, d=3, k=4, length=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    theta = rng.normal(size=(k, d))
    bias = rng.normal(-0.5, 0.5, size=k)
    pos_effect = np.array([0.0, -0.7, -1.2])[:length]
    action = rng.integers(0, k, n)
    position = rng.integers(0, length, n)
    z_all = x @ theta.T + bias  # (n, k)
    z = z_all[np.arange(n), action] + pos_effect[position]
    reward = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    truth = 1 / (1 + np.exp(-(z_all[:, :, None] + pos_effect[None, None, :])))
    return {"context": x, "action": action, "reward": reward, "position": position}, truth


def test_closed_form_prediction_equals_sklearn_on_the_design_matrix():
    # q̂ for every (a, k) computed from the coefficients must equal predict_proba of the same
    # sklearn model on the explicit feature rows φ(x_i, a, k)
    from sklearn.linear_model import LogisticRegression

    data, _ = _logistic_log(n=400)
    model = RewardModel().fit(**data, n_actions=4, len_list=2)
    q = model.predict(data["context"])
    assert q.shape == (400, 4, 2) and q.dtype == np.float64
    xs = (data["context"] - model.x_mean_) / model.x_scale_
    logged = model._design(xs, data["action"], data["position"])
    sk = LogisticRegression(C=1.0, max_iter=1000).fit(logged, data["reward"].astype(int))
    np.testing.assert_allclose(sk.coef_.ravel(), model.coef_, rtol=1e-12)
    for a in range(4):
        for k in range(2):
            design = model._design(xs, np.full(400, a), np.full(400, k))
            np.testing.assert_allclose(q[:, a, k], sk.predict_proba(design)[:, 1], rtol=1e-10)


def test_recovers_a_well_specified_model():
    data, truth = _logistic_log(n=6000, seed=1)
    q = RewardModel(regularization=0.1).fit_predict(**data, n_actions=4, len_list=2)
    assert np.sqrt(np.mean((q - truth) ** 2)) < 0.05


def test_ridge_for_continuous_rewards():
    rng = np.random.default_rng(2)
    n = 2000
    action = rng.integers(0, 3, n)
    reward = np.array([0.1, 0.5, 0.9])[action] + rng.normal(0, 0.01, n)
    model = RewardModel(regularization=1e-3)
    q = model.fit_predict(action=action, reward=reward, n_actions=3)
    assert model.kind_ == "ridge"
    np.testing.assert_allclose(q[0, :, 0], [0.1, 0.5, 0.9], atol=0.01)


def test_cross_fitting_never_uses_a_rounds_own_reward():
    # changing round 0's reward changes only the folds that train on it, never round 0's q̂
    # (continuous rewards: the ridge link, which is fast to refit)
    data, _ = _logistic_log(n=200, seed=3)
    data["reward"] = data["reward"] + np.random.default_rng(0).normal(0, 0.1, 200)
    flipped = {**data, "reward": data["reward"].copy()}
    flipped["reward"][0] += 5.0
    kw = {"n_actions": 4, "len_list": 2, "n_folds": 3, "random_state": 0}
    a = RewardModel().fit_predict(**data, **kw)
    b = RewardModel().fit_predict(**flipped, **kw)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a, b)
    # in-sample (n_folds = 1) the round's own reward does enter
    kw1 = {**kw, "n_folds": 1}
    assert not np.array_equal(
        RewardModel().fit_predict(**data, **kw1)[0], RewardModel().fit_predict(**flipped, **kw1)[0]
    )


def test_cross_fitting_is_seeded():
    data, _ = _logistic_log(n=300, seed=4)
    kw = {"n_actions": 4, "len_list": 2, "n_folds": 2}
    a = RewardModel().fit_predict(**data, **kw, random_state=7)
    b = RewardModel().fit_predict(**data, **kw, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_constant_fold_and_no_context():
    # a log with no click at all: the model is the constant 0, no solver error
    action = np.array([0, 1, 2, 0, 1, 2])
    q = RewardModel().fit_predict(action=action, reward=np.zeros(6), n_actions=3, n_folds=2, random_state=0)
    np.testing.assert_array_equal(q, np.zeros((6, 3, 1)))
    # without context the model is a shrunk per-action mean
    rng = np.random.default_rng(5)
    action = rng.integers(0, 2, 4000)
    reward = (rng.random(4000) < np.array([0.2, 0.7])[action]).astype(float)
    model = RewardModel(regularization=1e-3).fit(action=action, reward=reward, n_actions=2)
    np.testing.assert_allclose(model.predict(n_rounds=1)[0, :, 0], [0.2, 0.7], atol=0.03)


def test_dr_with_a_cross_fitted_model_on_the_reference_case():
    if not (REF_DIR / "ope_case.npz").is_file():
        pytest.skip(f"obp reference case not found in {REF_DIR}")
    case = np.load(REF_DIR / "ope_case.npz")
    q = RewardModel().fit_predict(
        context=case["context"],
        action=case["action"],
        reward=case["reward"],
        n_actions=10,
        n_folds=2,
        random_state=0,
    )
    kwargs = {
        "reward": case["reward"],
        "action": case["action"],
        "pscore": case["pscore"],
        "action_dist": case["action_dist"],
        "estimated_rewards_by_reg_model": q,
    }
    truth = float(case["ground_truth_policy_value"])  # 0.7451
    dm = DirectMethod().estimate_policy_value(**kwargs)
    dr = DoublyRobust(lambda_=5.0).estimate_policy_value(**kwargs)
    print(f"reference case: truth {truth:.4f}, DM {dm:.4f}, clipped DR {dr:.4f}")
    assert abs(dm - truth) < 0.02  # the feature map contains the true logit (x·θ_a + b_a)
    assert abs(dr - truth) < 0.03


BAD = [
    ({"kind": "tree"}, r"RewardModel\.kind must be one of"),
    ({"regularization": 0.0}, r"regularization must be a finite float > 0; got 0\.0"),
    ({"regularization": np.inf}, r"regularization must be a finite float > 0; got inf"),
    ({"interactions": 1}, r"interactions must be a bool; got 1"),
    ({"max_iter": 0}, r"max_iter must be an int >= 1; got 0"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD)
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        RewardModel(**kwargs)


BAD_FIT = [
    ({"n_folds": 0}, r"n_folds must be in \[1, n_rounds = 6\]; got 0"),
    ({"n_folds": 7}, r"n_folds must be in \[1, n_rounds = 6\]; got 7"),
    ({"n_actions": 2}, r"action must be in \[0, n_actions\) = \[0, 2\); got 2 at round 2"),
    ({"reward": np.array([0, 1, np.nan, 0, 1, 0])}, r"reward must be finite; got nan at round 2"),
    ({"context": np.ones((5, 2))}, r"context must have n_rounds = 6 rows"),
    ({"position": np.array([0, 1, 0, 1, 0, 1])}, r"position must be in \[0, len_list\) = \[0, 1\)"),
    ({"len_list": 0}, r"len_list must be an int >= 1; got 0"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_FIT)
def test_bad_fit_inputs_raise(kwargs, match):
    base = {
        "action": np.array([0, 1, 2, 0, 1, 2]),
        "reward": np.array([0, 1, 1, 0, 1, 0]),
        "n_actions": 3,
    }
    with pytest.raises(ValidationError, match=match):
        RewardModel().fit_predict(**{**base, **kwargs})


def test_logistic_needs_binary_rewards_and_predict_needs_fit():
    with pytest.raises(ValidationError, match=r"needs rewards in \{0, 1\}; got values such as 0\.5"):
        RewardModel(kind="logistic").fit(action=np.array([0, 1]), reward=np.array([0.5, 1.0]), n_actions=2)
    with pytest.raises(ValidationError, match=r"predict called before fit"):
        RewardModel().predict(n_rounds=3)
