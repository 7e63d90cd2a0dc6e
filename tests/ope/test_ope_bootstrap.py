"""Bootstrap confidence intervals: obp's convention bit for bit, the percentile convention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.errors import ValidationError
from simulator.ope import (
    BootstrapInterval,
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    SelfNormalizedInverseProbabilityWeighting,
    bootstrap_interval,
)

REF_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


@pytest.fixture(scope="module")
def reference():
    if not (REF_DIR / "ope_case.npz").is_file():
        pytest.skip(f"obp reference case not found in {REF_DIR}")
    case = np.load(REF_DIR / "ope_case.npz")
    values = json.loads((REF_DIR / "ope_reference.json").read_text())
    kwargs = {
        "reward": case["reward"],
        "action": case["action"],
        "pscore": case["pscore"],
        "action_dist": case["action_dist"],
        "estimated_rewards_by_reg_model": case["estimated_rewards_by_reg_model"],
        "position": case["position"],
    }
    return kwargs, values


@pytest.mark.parametrize(
    ("key", "estimator"),
    [
        ("ipw", InverseProbabilityWeighting()),
        ("snipw", SelfNormalizedInverseProbabilityWeighting()),
        # DM and DR take the same code path over their (already reference-checked) per-round
        # values; ~2 s each on a slow machine, so they carry the "slow" marker
        pytest.param("dm", DirectMethod(), marks=pytest.mark.slow),
        pytest.param("dr", DoublyRobust(), marks=pytest.mark.slow),
    ],
)
def test_obp_interval_matches_reference(reference, key, estimator):
    kwargs, values = reference
    boot = values["hyperparameters"]["bootstrap"]  # random_state 12345, 10000 samples, 0.05
    interval = estimator.estimate_interval(
        **kwargs,
        n_bootstrap_samples=boot["n_bootstrap_samples"],
        alpha=boot["alpha"],
        random_state=boot["random_state"],
        convention="obp",
    )
    expected = values["bootstrap_intervals"][key]
    got = interval.as_obp_dict()
    assert list(got) == list(expected)  # same keys: "mean", "95.0% CI (lower)", "(upper)"
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=0.0)
    # the point estimate is not obp's "mean" (that is the mean of the bootstrap means)
    assert interval.estimate == pytest.approx(values["policy_values"][key], rel=1e-12)
    assert interval.convention == "obp" and interval.n_bootstrap_samples == 10000


def test_obp_convention_is_obp_loop():
    # obp: [np.mean(RandomState(seed).choice(s, size=n)) for _ in range(B)], np.percentile
    s = np.random.default_rng(0).random(37)  # odd n on purpose
    rs = np.random.RandomState(5)
    boot = [np.mean(rs.choice(s, size=s.shape[0])) for _ in range(300)]
    got = bootstrap_interval(s, n_bootstrap_samples=300, alpha=0.1, random_state=5)
    assert got.mean == np.mean(boot)
    assert got.lower == np.percentile(boot, 5.0)
    assert got.upper == np.percentile(boot, 95.0)
    assert got.as_obp_dict() == {
        "mean": got.mean,
        "90.0% CI (lower)": got.lower,
        "90.0% CI (upper)": got.upper,
    }


def test_obp_convention_accepts_random_state_instance():
    s = np.arange(10.0)
    a = bootstrap_interval(s, n_bootstrap_samples=20, random_state=np.random.RandomState(3))
    b = bootstrap_interval(s, n_bootstrap_samples=20, random_state=3)
    assert a == b


def test_percentile_convention_is_seeded_and_renormalises():
    rng = np.random.default_rng(1)
    n = 300
    pscore = rng.uniform(0.1, 0.9, n)
    action_dist = np.stack([np.full(n, 0.5), np.full(n, 0.5)], axis=1)[:, :, None]
    kwargs = {
        "reward": rng.random(n),
        "action": rng.integers(0, 2, n),
        "pscore": pscore,
        "action_dist": action_dist,
    }
    est = SelfNormalizedInverseProbabilityWeighting()
    a = est.estimate_interval(**kwargs, n_bootstrap_samples=500, random_state=7, convention="percentile")
    b = est.estimate_interval(
        **kwargs,
        n_bootstrap_samples=500,
        random_state=np.random.default_rng(7),
        convention="percentile",
    )
    assert a == b
    assert a.lower < a.estimate < a.upper
    # each replicate is a self-normalised estimate, hence inside the reward range
    assert kwargs["reward"].min() <= a.lower and a.upper <= kwargs["reward"].max()
    # for a plain mean the percentile replicates are means of resampled values
    s = rng.random(50)
    gen = np.random.default_rng(11)
    idx = gen.integers(0, 50, size=(40, 50))
    expected = np.percentile(s[idx].mean(axis=1), [2.5, 97.5])
    got = bootstrap_interval(s, n_bootstrap_samples=40, random_state=11, convention="percentile")
    assert (got.lower, got.upper) == tuple(expected)


def test_interval_covers_truth_usually():
    # a sanity check of the interval's width: 95 % intervals of a mean cover it ~95 % of the time
    rng = np.random.default_rng(2)
    covered = 0
    for rep in range(40):
        s = rng.normal(1.0, 1.0, 200)
        iv = bootstrap_interval(s, n_bootstrap_samples=200, random_state=rep)
        covered += iv.lower <= 1.0 <= iv.upper
    assert covered >= 32  # binomial(40, 0.95): P(< 33) < 1 %


BAD_SETTINGS = [
    ({"n_bootstrap_samples": 0}, r"n_bootstrap_samples must be an int >= 1; got 0"),
    ({"n_bootstrap_samples": 10.0}, r"n_bootstrap_samples must be an int >= 1; got 10\.0"),
    ({"alpha": 0.0}, r"alpha must be a float in \(0, 1\); got 0\.0"),
    ({"alpha": 1.5}, r"alpha must be a float in \(0, 1\); got 1\.5"),
    ({"convention": "bca"}, r"convention must be one of \('obp', 'percentile'\); got 'bca'"),
    (
        {"random_state": np.random.default_rng(0)},
        r"convention='obp' must be None, an int or a np\.random\.RandomState",
    ),
    ({"random_state": -1}, r"random_state must be an int >= 0; got -1"),
    (
        {"random_state": np.random.RandomState(0), "convention": "percentile"},
        r"convention='percentile' must be None, an int, a SeedSequence",
    ),
    ({"round_values": np.array([1.0, np.nan])}, r"round_values must be finite; got nan at round 1"),
    ({"round_values": np.zeros((2, 2))}, r"round_values must be a non-empty 1-D array"),
    ({"round_values": np.array([])}, r"round_values must be a non-empty 1-D array"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_SETTINGS)
def test_bad_settings_raise(kwargs, match):
    kwargs = {"round_values": np.arange(5.0), "n_bootstrap_samples": 10, **kwargs}
    with pytest.raises(ValidationError, match=match):
        bootstrap_interval(**kwargs)


def test_interval_dataclass_is_frozen():
    iv = bootstrap_interval(np.arange(5.0), n_bootstrap_samples=10, random_state=0)
    assert isinstance(iv, BootstrapInterval)
    with pytest.raises(AttributeError):
        iv.lower = 0.0
