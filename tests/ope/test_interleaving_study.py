"""The interleaving power study: config validation, the tests' calibration, detection curves."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import stats

from simulator.errors import ConfigError
from simulator.ope.interleaving_study import (
    AB,
    ab_detection,
    build_pairs,
    interleaving_detection,
    run_seed,
    sessions_at_power,
    sign_test_pvalues,
    validate_pair,
)
from simulator.ope.interleaving_study_config import parse_interleaving_study


def _tiny() -> dict:
    return {
        "study": {
            "name": "tiny",
            "seeds": [0],
            "experiments": 400,
            "sessions_min": 10,
            "sessions_max": 20_000,
            "n_sizes": 12,
            "draws_per_user": 2,
            "validate_experiments": 0,
        },
        "methods": {"interleaving": ["team_draft", "balanced"]},
        "pairs": {
            "eps": {
                "a": {"type": "oracle"},
                "b": {"type": "epsilon_greedy", "base": "oracle", "epsilon": 0.5},
            }
        },
        "world": {
            "catalog": {"n_items": 120, "n_genres": 4, "n_artists": 20, "embedding_dim": 6},
            "users": {"n_users": 150},
            "history": {"days": 5},
            "simulation": {"slate_size": 5, "train_window_days": 5},
        },
    }


def _set(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("study.alpha", 0.7, r"study\.alpha: Input should be less than 0\.5; got 0\.7"),
        ("study.experimentz", 10, r"study\.experimentz: unknown key \(did you mean 'experiments'\?\)"),
        ("study.sessions_max", 5, r"study\.sessions_max must be > study\.sessions_min = 10; got 5"),
        ("study.seeds", [1, 1], r"study\.seeds: seeds must be unique"),
        ("methods.interleaving", ["zipper"], r"methods\.interleaving\.0: Input should be 'team_draft'"),
        (
            "pairs.eps.b.type",
            "boltzmann",
            r"pairs\.eps\.b\.type: 'boltzmann' has no exact position marginals",
        ),
        ("pairs.eps.b.epsilon", 2.0, r"pairs\.eps\.b\.epsilon: Input should be less than or equal to 1"),
        ("pairs.eps.c", {"type": "oracle"}, r"pairs\.eps\.c: unknown key"),
        ("world.users.n_users", -1, r"world\.users\.n_users: Input should be greater than 0"),
        ("world.click_model.type", "cascade", r"world\.click_model\.type must be 'pbm'"),
        ("world.policies", {}, r"world\.policies is not allowed here"),
        ("world.catalogue", {}, r"world\.catalogue: unknown table \(did you mean 'catalog'\?\)"),
    ],
)
def test_config_rejects_bad_input_naming_the_key(path, value, match):
    with pytest.raises(ConfigError, match=match):
        parse_interleaving_study(_set(_tiny(), path, value))


def test_the_shipped_config_is_valid():
    from simulator.ope.interleaving_study_config import load_interleaving_study

    cfg = load_interleaving_study("experiments/interleaving_vs_ab.toml")
    assert set(cfg.pairs) >= {"small", "medium", "large"}


@pytest.mark.parametrize(("wa", "wb"), [(0, 0), (5, 0), (60, 40), (40, 60), (50, 50), (3, 17), (512, 488)])
def test_sign_test_pvalues_match_binomtest(wa, wb):
    expected = 1.0 if wa + wb == 0 else stats.binomtest(wa, wa + wb, 0.5).pvalue
    assert sign_test_pvalues(np.array([wa]), np.array([wb]))[0] == pytest.approx(expected, rel=1e-9)


def test_sessions_at_power_interpolates_in_log_n():
    sizes = np.array([10, 100, 1000])
    # 0.8 lies halfway between 0.6 (n = 100) and 1.0 (n = 1000): n = 10^2.5
    assert sessions_at_power(sizes, np.array([0.1, 0.6, 1.0]), 0.8) == pytest.approx(10**2.5)
    assert np.isnan(sessions_at_power(sizes, np.array([0.1, 0.2, 0.3]), 0.8))
    assert sessions_at_power(sizes, np.array([0.9, 1.0, 1.0]), 0.8) == 10


def test_tests_are_calibrated_under_no_difference():
    # Equal arms: a "detection" (significant in the +1 direction) happens with probability
    # alpha/2 = 0.025 for Welch (approximately) and at most that for the exact, discrete sign
    # test. 20_000 experiments of 400 sessions (seed 1): sd of the rate 0.0011.
    rng = np.random.default_rng(1)
    pmf = np.array([0.3, 0.4, 0.2, 0.1])
    ab = ab_detection(pmf, pmf, np.array([400]), 20_000, 0.05, +1, rng)[0]
    assert 0.019 < ab < 0.031
    il = interleaving_detection(np.array([0.3, 0.3, 0.4]), np.array([400]), 20_000, 0.05, +1, rng)[0]
    assert il < 0.028


@pytest.fixture(scope="module")
def tiny_seed():
    cfg = parse_interleaving_study(_tiny())
    return cfg, run_seed(cfg, 0, validate=False)


def test_detection_rate_increases_with_sessions(tiny_seed):
    _, (pairs, detection, _) = tiny_seed
    row = pairs.iloc[0]
    # the oracle is better than epsilon-greedy over it at epsilon = 0.5, by a clear margin
    assert row["gap"] > 0.1 * row["utility_b"]
    for method in (AB, "team_draft", "balanced"):
        rate = detection[detection["method"] == method].sort_values("sessions")["detection_rate"].to_numpy()
        assert rate[0] < 0.5 and rate[-1] > 0.99, (method, rate)
        # non-decreasing up to Monte-Carlo noise (400 experiments: sd <= 0.025)
        assert (np.diff(rate) > -0.08).all(), (method, rate)


def test_multinomial_shortcut_matches_brute_force(tiny_seed):
    # The study's detection rate (multinomial sufficient statistics) against explicit
    # experiments (sampled sessions, Bernoulli clicks, team draft, interleaving_test) at 40
    # sessions: 300 brute-force experiments, sd of the difference <= 0.5 * sqrt(1/300 + 1/400).
    cfg = tiny_seed[0]
    pw = build_pairs(cfg, 0)[0]
    sizes = np.array([40])
    for method in ("team_draft", AB):
        if method == AB:
            from simulator.ope.interleaving_study import clicks_pmf

            fast = ab_detection(
                pw.weight @ clicks_pmf(pw.examination * pw.rel_a),
                pw.weight @ clicks_pmf(pw.examination * pw.rel_b),
                sizes,
                4000,
                0.05,
                +1,
                np.random.default_rng(2),
            )[0]
        else:
            from simulator.ope.interleaving import pbm_outcome_probabilities

            probs = pw.weight @ pbm_outcome_probabilities(
                pw.list_a, pw.list_b, pw.rel_a, pw.rel_b, pw.examination, method
            )
            fast = interleaving_detection(probs, sizes, 4000, 0.05, +1, np.random.default_rng(2))[0]
        brute = validate_pair(pw, method, 40, 300, 0.05, np.random.default_rng(3))
        assert abs(brute - fast) < 4 * 0.5 * np.sqrt(1 / 300 + 1 / 4000), (method, brute, fast)


_TINY_TOML = """
[study]
name = "tiny"
seeds = [0]
experiments = 50
sessions_min = 10
sessions_max = 5000
n_sizes = 6
draws_per_user = 2
validate_experiments = 0

[methods]
interleaving = ["team_draft"]

[pairs.eps]
a = { type = "oracle" }
b = { type = "epsilon_greedy", base = "oracle", epsilon = 0.5 }

[world.catalog]
n_items = 120
n_genres = 4
n_artists = 20
embedding_dim = 6

[world.users]
n_users = 150

[world.history]
days = 5

[world.simulation]
slate_size = 5
train_window_days = 5
"""


def test_cli_writes_the_summary(tmp_path):
    from typer.testing import CliRunner

    from simulator.cli import app

    cfg_file = tmp_path / "study.toml"
    cfg_file.write_text(_TINY_TOML)
    res = CliRunner().invoke(app, ["interleave", str(cfg_file), "--out", str(tmp_path / "out"), "--quiet"])
    assert res.exit_code == 0, res.output
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "team draft" in summary and "A/B" in summary
    assert (tmp_path / "out" / "figures" / "detection_vs_sessions.png").is_file()
    bad = CliRunner().invoke(app, ["interleave", str(cfg_file), "--set", "study.alpha=0.9"])
    assert bad.exit_code == 2 and "study.alpha" in bad.output
