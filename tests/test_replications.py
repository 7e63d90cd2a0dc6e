"""Replications of published feedback-loop results (simulator/replications/), and the choice
models and drift rules they plug in.

The direction tests run each replication at a small size with fixed seeds and assert the
direction the paper reports, with a stated tolerance or a 95% t-interval over repetitions.
Where our honest measurement does not show the paper's direction at this size, the assertion is
an ``xfail(strict=True)`` whose reason gives the measured numbers (seed 0); the full-size numbers
are in experiments/replications/README.md.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from simulator.clicks.choice import (
    CHOICE_MODELS,
    AcceptProbability,
    ChoiceModel,
    Logit,
    RankAttention,
    make_choice_model,
)
from simulator.errors import ConfigError, ValidationError
from simulator.replications import REPLICATIONS, default_config_path, get, run_replication
from simulator.replications.common import TABLE_COLUMNS, mean_ci, parse_config, rank_items
from simulator.users.drift import DRIFT_RULES, DriftRule, ExposureDrift, make_drift_rule

ROOT = Path(__file__).parents[1]
REP_DIR = ROOT / "experiments" / "replications"


# --------------------------------------------------------------------------------------------
# choice models
# --------------------------------------------------------------------------------------------
def test_rank_attention_closed_form():
    # weights (k+1)^-1: row 0: [0.1, 0.5/2, 0.9/3] = [0.1, 0.25, 0.3] -> slot 2
    # row 1: slot 2 unavailable -> [0.1, 0.25, -] -> slot 1; row 2: nothing available
    u = np.array([[0.1, 0.5, 0.9], [0.1, 0.5, 0.9], [0.3, 0.2, 0.1]])
    a = np.array([[True, True, True], [True, True, False], [False, False, False]])
    m = RankAttention(exponent=1.0)
    p = m.choice_probabilities(u, a)
    np.testing.assert_array_equal(p, [[0, 0, 1], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(m.choose(u, a, np.random.default_rng(0)), p > 0)


def test_rank_attention_ties_go_to_the_better_rank():
    # exponent 0: rank does not matter; equal utilities -> the first slot
    p = RankAttention(exponent=0.0).choice_probabilities(np.full((1, 3), 0.5), np.ones((1, 3), bool))
    np.testing.assert_array_equal(p, [[1, 0, 0]])


def test_logit_probabilities_and_sampling():
    u = np.array([[0.0, np.log(2.0), np.log(3.0)]])
    a = np.ones((1, 3), bool)
    # exp(u) = [1, 2, 3]: P = [1/6, 2/6, 3/6]
    np.testing.assert_allclose(Logit().choice_probabilities(u, a), [[1 / 6, 2 / 6, 3 / 6]])
    # outside option of utility 0 adds 1 to the denominator: [1/7, 2/7, 3/7]
    np.testing.assert_allclose(Logit(outside_utility=0.0).choice_probabilities(u, a), [[1 / 7, 2 / 7, 3 / 7]])
    big = np.repeat(u, 60_000, axis=0)
    picks = Logit().choose(big, np.ones(big.shape, bool), np.random.default_rng(1))
    assert (picks.sum(axis=1) == 1).all()
    np.testing.assert_allclose(picks.mean(axis=0), [1 / 6, 2 / 6, 3 / 6], atol=0.006)  # ~4 sd


def test_logit_never_picks_unavailable():
    u = np.array([[5.0, 0.0, 0.0]])
    a = np.array([[False, True, True]])
    picks = Logit().choose(np.repeat(u, 1000, 0), np.repeat(a, 1000, 0), np.random.default_rng(2))
    assert not picks[:, 0].any() and (picks.sum(axis=1) == 1).all()


def test_accept_probability_closed_form_and_sampling():
    m = AcceptProbability(scale=2.0, position_exponent=1.0)
    u = np.array([[0.2, 0.3, 0.8]])
    a = np.array([[True, True, False]])
    # clip(2u, 0, 1) * 1/(k+1): [0.4, 0.6/2, 0] = [0.4, 0.3, 0]
    np.testing.assert_allclose(m.choice_probabilities(u, a), [[0.4, 0.3, 0.0]])
    picks = m.choose(np.repeat(u, 50_000, 0), np.repeat(a, 50_000, 0), np.random.default_rng(3))
    np.testing.assert_allclose(picks.mean(axis=0), [0.4, 0.3, 0.0], atol=0.01)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("rank_atention", {}, "did you mean 'rank_attention'"),
        ("rank_attention", {"exponent": -1.0}, "exponent must be a finite float >= 0; got -1.0"),
        ("accept_probability", {"scale": 0.0}, "scale must be a finite float > 0; got 0.0"),
        ("logit", {"temperature": float("nan")}, "temperature must be a finite float > 0"),
        ("logit", {"tau": 1.0}, "choice model 'logit'"),
    ],
)
def test_choice_model_bad_inputs(name, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        make_choice_model(name, **kwargs)


@pytest.mark.parametrize("name", sorted(CHOICE_MODELS))
def test_choice_model_conformance(name):
    m = make_choice_model(name)
    assert isinstance(m, ChoiceModel)
    rng = np.random.default_rng(4)
    u = rng.random((50, 6))
    a = rng.random((50, 6)) < 0.7
    p = m.choice_probabilities(u, a)
    assert p.shape == u.shape and (p >= 0).all() and (p[~a] == 0).all()
    if m.single_choice:
        assert (p.sum(axis=1) <= 1 + 1e-12).all()
    c1 = m.choose(u, a, np.random.default_rng(5))
    c2 = m.choose(u, a, np.random.default_rng(5))
    np.testing.assert_array_equal(c1, c2)
    assert not (c1 & ~a).any()
    with pytest.raises(ValidationError, match="available must be a bool array"):
        m.choice_probabilities(u, a.astype(int))


# --------------------------------------------------------------------------------------------
# drift rules
# --------------------------------------------------------------------------------------------
def test_exposure_drift_closed_form():
    prefs = np.zeros((3, 2))
    vec = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, 0.0]]])
    shown = np.ones((2, 2), bool)
    consumed = np.array([[True, False], [False, False]])
    ExposureDrift(eta=0.5, negative_weight=1.0).apply(prefs, np.array([0, 2]), vec, shown, consumed)
    # user 0: 0.5/2 * ((+1)[1,0] + (-1)[0,1]) = [0.25, -0.25]
    # user 2: 0.5/2 * (-[1,1] - [2,0]) = [-0.75, -0.25]; user 1 untouched
    np.testing.assert_allclose(prefs, [[0.25, -0.25], [0, 0], [-0.75, -0.25]])


def test_attraction_closed_form_and_none():
    prefs = np.array([[1.0, 1.0], [1.0, 1.0]])
    vec = np.array([[[3.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    consumed = np.array([[True, True], [False, False]])
    make_drift_rule("attraction", eta=0.5).apply(
        prefs, np.array([0, 1]), vec, np.ones((2, 2), bool), consumed
    )
    # user 0: mean consumed [2, 1]; 1 + 0.5 (2 - 1) = 1.5, 1 + 0.5 (1 - 1) = 1; user 1 consumed nothing
    np.testing.assert_allclose(prefs, [[1.5, 1.0], [1.0, 1.0]])
    before = prefs.copy()
    make_drift_rule("none").apply(prefs, np.array([0, 1]), vec, np.ones((2, 2), bool), consumed)
    np.testing.assert_array_equal(prefs, before)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("exposure", {}, "did you mean 'exposure_drift'"),
        ("exposure_drift", {"eta": -0.1}, "eta must be a finite float >= 0; got -0.1"),
        ("exposure_drift", {"negative_weight": float("inf")}, "negative_weight must be a finite float"),
        ("attraction", {"eta": 1.5}, r"eta must be in \[0, 1\]"),
        ("attraction", {"target": "clicked"}, "target must be 'consumed' or 'shown'"),
    ],
)
def test_drift_rule_bad_inputs(name, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        make_drift_rule(name, **kwargs)


@pytest.mark.parametrize("name", sorted(DRIFT_RULES))
def test_drift_rule_conformance(name):
    rule = make_drift_rule(name)
    assert isinstance(rule, DriftRule)
    prefs = np.zeros((4, 3))
    rule.apply(prefs, np.array([1, 3]), np.ones((2, 2, 3)), np.ones((2, 2), bool), np.eye(2, dtype=bool))
    assert np.isfinite(prefs).all() and (prefs[[0, 2]] == 0).all()


# --------------------------------------------------------------------------------------------
# configs, helpers, CLI
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REPLICATIONS)
def test_shipped_config_parses_and_documents_itself(name):
    path = REP_DIR / f"{name}.toml"
    assert path.is_file() and default_config_path(name).resolve() == path.resolve()
    text = path.read_text()
    assert text.lstrip().startswith("#"), "a config starts with a comment saying what it replicates"
    mod = get(name)
    cfg = parse_config(mod.Config, tomllib.loads(text), str(path))
    assert cfg.run.reps >= 1


def test_config_errors_name_the_key():
    chaney = get("chaney")
    with pytest.raises(ConfigError, match=r"world\.n_user: unknown key \(did you mean 'n_users'\?\)"):
        parse_config(chaney.Config, {"world": {"n_user": 10}})
    with pytest.raises(ConfigError, match=r"world\.startup_steps: .*greater than or equal to 1; got 0"):
        parse_config(chaney.Config, {"world": {"startup_steps": 0}})
    with pytest.raises(ConfigError, match=r"recommenders\.1"):
        parse_config(chaney.Config, {"recommenders": ["ideal", "svd"]})
    jiang = get("jiang")
    with pytest.raises(ConfigError, match=r"pool\.policies: \['eps'\] are not run on the fixed pool"):
        parse_config(jiang.Config, {"pool": {"policies": ["eps"]}})
    with pytest.raises(ConfigError, match="unknown replication 'chaeny' \\(did you mean 'chaney'\\?\\)"):
        get("chaeny")


def test_rank_items_masks_and_breaks_ties_randomly():
    rng = np.random.default_rng(0)
    scores = np.zeros((1, 6))
    allowed = np.array([[True, False, True, True, False, True]])
    firsts = {int(rank_items(scores, allowed, rng, 4)[0, 0]) for _ in range(200)}
    assert firsts == {0, 2, 3, 5}  # every allowed tied item comes first sometimes, no other
    best = rank_items(np.array([[0.1, 0.9, 0.5, 0.7]]), np.ones((1, 4), bool), rng, 3)
    np.testing.assert_array_equal(best, [[1, 3, 2]])


def test_mean_ci_closed_form():
    # values 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.3027 -> half width 4.3027 / sqrt(3) = 2.4841
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert (
        m == 2.0 and hi - m == pytest.approx(2.4841, abs=1e-4) and m - lo == pytest.approx(2.4841, abs=1e-4)
    )


def test_cli_replicate_writes_outputs(tmp_path):
    from simulator.cli import app

    out = tmp_path / "fleder"
    sets = ["world.n_users=30", "world.n_items=30", "world.periods=4", "world.startup_periods=1"]
    args = ["replicate", "fleder", "--reps", "2", "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(out / "measurements.parquet")
    assert tuple(table.columns) == TABLE_COLUMNS
    assert set(table["policy"]) == {"none", "popularity", "collaborative"} and set(table["rep"]) == {0, 1}
    for f in (
        "summary.md",
        "findings.json",
        "config.json",
        "figures/concentration.png",
        "figures/concentration.svg",
    ):
        assert (out / f).is_file(), f
    assert "Gini" in (out / "summary.md").read_text()
    bad = CliRunner().invoke(app, ["replicate", "flede"])
    assert bad.exit_code == 2 and "did you mean 'fleder'" in bad.output


# --------------------------------------------------------------------------------------------
# directions the papers report, at small sizes (fixed seed 0)
# --------------------------------------------------------------------------------------------
def _run(name: str, data: dict):
    mod = get(name)
    with threadpool_limits(limits=1):
        return mod.run(parse_config(mod.Config, data))


def _xfail(reason: str):
    # strict: a genuine disagreement that starts to agree must be looked at, not silently pass
    return pytest.mark.xfail(strict=True, reason=reason)


CHANEY_SIZE = "50 users x (5 + 25) steps x 8 reps"
MANSOURY_SIZE = "300 users x 3706 items x 10 iterations x 4 reps"
JIANG_SIZE = "60 users x 50 items x 80 steps x 3 reps"


@pytest.fixture(scope="module")
def chaney():
    # 50 users, 20 topics, 10 items/step, 5 random start-up steps + 25 recommender steps, 8 worlds
    return _run("chaney", {"world": {"n_users": 50, "startup_steps": 5, "steps": 25}, "run": {"reps": 8}})


@pytest.mark.parametrize("name", ["mf", "content", "popularity"])
def test_chaney_confounded_recommender_homogenises(chaney, name):
    # the paper's homogenisation: users paired by the recommender's own user representation,
    # Jaccard of the pairs' consumed sets minus the same pairs' Jaccard under ideal, final step:
    # > 0 with the 95% CI excluding 0. Measured (seed 0): MF +0.39 [0.34, 0.44], content +0.27
    # [0.22, 0.32], popularity +0.43 [0.38, 0.48]
    m, lo, _ = chaney.findings["recommenders"][name]["delta_jaccard_final"]
    assert m > 0 and lo > 0, chaney.findings["recommenders"][name]["delta_jaccard_final"]


@pytest.mark.parametrize(
    "name",
    [
        "mf",  # measured +0.04 [0.01, 0.07]
        "popularity",  # measured +0.22 [0.20, 0.25]
        pytest.param(
            "content",
            marks=pytest.mark.xfail(
                strict=True,
                reason="with pairs fixed by TRUE preference similarity (our stricter variant, not the "
                "paper's pairing) content filtering homogenises LESS than ideal: -0.14 [-0.20, -0.08] "
                f"at {CHANEY_SIZE}; see experiments/replications/README.md",
            ),
        ),
    ],
)
def test_chaney_homogenises_true_preference_pairs(chaney, name):
    # variant: fixed pairs of users most similar in their true preferences
    m, lo, _ = chaney.findings["recommenders"][name]["delta_jaccard_true_pairs_final"]
    assert m > 0 and lo > 0, chaney.findings["recommenders"][name]["delta_jaccard_true_pairs_final"]


def test_chaney_utility_at_most_ideal(chaney):
    for name, e in chaney.findings["recommenders"].items():
        m, _, hi = e["utility_ratio"]
        assert m <= 1.0 + 1e-12, (name, e["utility_ratio"])  # ideal is 1 exactly
        if name != "ideal":
            assert hi < 1.0, (name, e["utility_ratio"])  # measured: 0.66 .. 0.86


def test_chaney_random_below_ideal_and_popularity_most(chaney):
    rec = chaney.findings["recommenders"]
    assert rec["random"]["delta_jaccard_final"][0] <= 0  # measured -0.018 [-0.036, 0.000]
    changes = {n: e["delta_jaccard_final"][0] for n, e in rec.items() if n != "ideal"}
    assert max(changes, key=changes.get) == "popularity", changes


@pytest.fixture(scope="module")
def fleder():
    # 100 users x 100 products, 5 start-up + 40 periods, 8 worlds
    return _run("fleder", {"world": {"n_users": 100, "n_items": 100, "periods": 40}, "run": {"reps": 8}})


@pytest.mark.parametrize("condition", ["collaborative", "popularity"])
def test_fleder_recommender_raises_sales_gini(fleder, condition):
    # paired Gini(recommender) - Gini(none), 95% CI above 0; measured +0.027 [0.015, 0.039]
    # (collaborative) and +0.062 [0.050, 0.074] (popularity)
    m, lo, _ = fleder.findings["conditions"][condition]["gini_minus_none"]
    assert m > 0 and lo > 0, fleder.findings["conditions"][condition]


@pytest.fixture(scope="module")
def mansoury():
    # 300 users (28% minority) x 3706 items (MovieLens 1M's catalog and profile sizes), rank
    # acceptance exp(-0.1 k) (~6 of 10 per list), 10 iterations, 4 worlds
    data = {"world": {"n_users": 300}, "loop": {"iterations": 10}, "run": {"reps": 4}}
    return _run("mansoury", data)


def test_mansoury_rank_acceptance_closed_form():
    from simulator.replications.mansoury import rank_acceptance

    # exp(-0.1 k), k = 1, 2, 3: [0.904837, 0.818731, 0.740818]
    np.testing.assert_allclose(rank_acceptance(3, 0.1), [0.904837, 0.818731, 0.740818], atol=1e-6)
    # expected acceptances of a top-10 list: e^-0.1 (1 - e^-1) / (1 - e^-0.1)
    # = 0.904837 * 0.632121 / 0.095163 = 6.0104
    assert rank_acceptance(10, 0.1).sum() == pytest.approx(6.0104, abs=1e-4)


_MANSOURY_EXHAUST = (
    "with ~6 of 10 items accepted per list and consumed items excluded from later lists, users "
    "use up the heads of their lists, so the lists move to less popular items"
)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            "popularity",
            marks=_xfail(
                "most-popular's recommendations get LESS popular (relative change of the mean "
                "normalised popularity: majority -0.32 [-0.34, -0.29], minority -0.31 [-0.37, -0.25]) at "
                f"{MANSOURY_SIZE}: {_MANSOURY_EXHAUST} (full size: -0.45 / -0.49)"
            ),
        ),
        pytest.param(
            "mf",
            marks=_xfail(
                "MF's recommendations get LESS popular for the majority (-0.13 [-0.29, 0.04]) and "
                "more popular for the minority (+0.53 [0.13, 0.93]; gap +0.65 [0.11, 1.20]) at "
                f"{MANSOURY_SIZE} (full size: majority -0.43 [-0.46, -0.41], minority -0.12 "
                "[-0.22, -0.03], gap +0.31 [0.20, 0.42])"
            ),
        ),
        pytest.param(
            "user_knn",
            marks=_xfail(
                "user-kNN's recommendations get LESS popular, more for the minority: majority -0.35 "
                f"[-0.47, -0.24], minority -0.45 [-0.46, -0.43] at {MANSOURY_SIZE}: {_MANSOURY_EXHAUST}"
            ),
        ),
    ],
)
def test_mansoury_rec_popularity_rises_more_for_minority(mansoury, name):
    e = mansoury.findings["recommenders"][name]
    for grp in ("majority", "minority"):
        assert e[grp]["rec_popularity"]["rel"][0] > 0, (grp, e[grp]["rec_popularity"])
    gap = e["minority_minus_majority_rel_change"]["rec_popularity"]
    assert gap[0] > 0 and gap[1] > 0, gap


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=_xfail(
                f"aggregate diversity RISES over the iterations ({rise}) at {MANSOURY_SIZE}: "
                + _MANSOURY_EXHAUST
            ),
        )
        for name, rise in [
            ("mf", "majority +0.06 [-0.07, 0.19], minority -0.05 [-0.21, 0.12]; full size +0.11 / +0.11"),
            ("popularity", "majority +1.09 [0.68, 1.51], minority +1.55 [1.14, 1.96]"),
            ("user_knn", "majority +0.43 [0.35, 0.52], minority +0.44 [0.28, 0.61]"),
        ]
    ],
)
def test_mansoury_aggregate_diversity_falls_more_for_minority(mansoury, name):
    e = mansoury.findings["recommenders"][name]
    for grp in ("majority", "minority"):
        assert e[grp]["aggregate_diversity"]["rel"][0] < 0, grp
    assert e["minority_minus_majority_rel_change"]["aggregate_diversity"][0] < 0


@pytest.mark.parametrize(
    "name",
    [
        "mf",  # majority +0.18 [0.03, 0.34], minority +1.08 [0.36, 1.80]
        pytest.param(
            "popularity",
            marks=_xfail(
                "most-popular's genre shift from the initial profile SHRINKS (majority -0.30 [-0.38, "
                f"-0.21], minority -0.29 [-0.33, -0.24]) at {MANSOURY_SIZE}: presumably, as users use up the "
                "majority-flavoured head, the lists reach deeper, more mixed items"
            ),
        ),
        pytest.param(
            "user_knn",
            marks=_xfail(
                "user-kNN's genre shift does not grow for the minority (-0.07 [-0.12, -0.03]; majority "
                f"+0.06 [-0.02, 0.15]) at {MANSOURY_SIZE} (full size: majority +0.08 [0.04, 0.12], "
                "minority -0.02 [-0.07, 0.04])"
            ),
        ),
    ],
)
def test_mansoury_genre_shift_grows(mansoury, name):
    # relative change of the JS divergence from the initial profile, 95% CI above 0 in both groups
    e = mansoury.findings["recommenders"][name]
    for grp in ("majority", "minority"):
        m, lo, _ = e[grp]["genre_shift"]["rel"]
        assert m > 0 and lo > 0, (grp, e[grp]["genre_shift"])


@pytest.fixture(scope="module")
def jiang():
    # 60 users, 50 items (d = 10), top-5, 80 steps, 3 worlds
    return _run("jiang", {"world": {"n_users": 60, "steps": 80}, "run": {"reps": 3}})


def test_jiang_oracle_degenerates_fastest_and_random_slowest(jiang):
    # fixed pool; measured oracle 0.78, random 0.208 (next lowest: UCB 0.217)
    final = {k: v[0] for k, v in jiang.findings["final_drift"].items() if "growing" not in k}
    assert max(final, key=final.get) == "oracle", final
    assert min(final, key=final.get) == "random", final


@pytest.mark.parametrize("policy", ["thompson", "ucb"])
def test_jiang_growing_pool_slows_bandits(jiang, policy):
    # paired final drift, growing - fixed pool: measured -0.095 [-0.13, -0.07] (Thompson),
    # -0.050 [-0.059, -0.042] (UCB)
    m, _, hi = jiang.findings["growing_minus_fixed"][policy]
    assert m < 0 and hi < 0, jiang.findings["growing_minus_fixed"][policy]


@pytest.mark.xfail(
    strict=True,
    reason="epsilon-greedy (random exploration on top of the oracle) drifts MORE than Thompson and UCB: "
    f"final drift eps=0.05 0.77, eps=0.2 0.71, eps=0.5 0.55 vs Thompson 0.34, UCB 0.22 at {JIANG_SIZE}; "
    "the per-user bandits learn too slowly to come near the oracle",
)
def test_jiang_bandits_above_epsilon_greedy(jiang):
    final = {k: v[0] for k, v in jiang.findings["final_drift"].items()}
    eps = [v for k, v in final.items() if k.startswith("epsilon_greedy") and "growing" not in k]
    assert min(final["thompson"], final["ucb"]) >= max(eps)


def test_jiang_larger_epsilon_drifts_less(jiang):
    # measured eps=0.05 0.77, eps=0.2 0.71, eps=0.5 0.55 (oracle 0.78, random 0.21)
    final = jiang.findings["final_drift"]
    eps = sorted(
        (float(k.removeprefix("epsilon_greedy_")), v[0])
        for k, v in final.items()
        if k.startswith("epsilon_greedy") and "growing" not in k
    )
    values = [v for _, v in eps]
    assert values == sorted(values, reverse=True), eps


@pytest.mark.xfail(
    strict=True,
    reason=f"a growing pool RAISES the oracle's drift: +0.071 [0.050, 0.093] at {JIANG_SIZE}: more "
    "candidates give a greedy top-K better-aligned items to reinforce",
)
def test_jiang_growing_pool_slows_oracle(jiang):
    assert jiang.findings["growing_minus_fixed"]["oracle"][0] < 0


def test_replication_runs_are_deterministic(tmp_path):
    sets = [
        "world.n_users=20",
        "world.steps=5",
        "world.startup_steps=2",
        "recommenders=['ideal','mf','random']",
    ]
    a, _ = run_replication("chaney", reps=1, out=tmp_path / "a", overrides=sets, figures=False)
    b, _ = run_replication("chaney", reps=1, out=tmp_path / "b", overrides=sets, figures=False)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert set(a.table["metric"]) == {
        "jaccard_similar",
        "utility",
        "delta_jaccard",
        "delta_jaccard_true_pairs",
    }
