"""The OPE study: exact target propensities, slate estimators, and estimates against the truth.

The study fixture runs once (about 25 s): a small frozen world — 500 users × 300 items, slates
of K = 5, PBM with η = 1, 10 days, about 2,600 sessions per log — for SEEDS = 8 seeds, two
loggers (``eps_log``: per-slot epsilon-greedy 0.2 around greedy ALS; ``uniform_log``: uniformly
random slates) and three targets (``eps``: the eps logger's own policy; ``greedy``; ``oracle``).

Tolerances (stated in each test): over the 8 seeds, the mean error of IPS, SNIPS and DR is
within 3 standard errors of 0 (and, for the near target, within 4% of the truth); pooled 95%
interval coverage is at least 0.75; DM's mean error under the uniform logger is below −30% of
the truth and more than 10 standard errors from 0.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.errors import ConfigError, LogSchemaError, ValidationError
from simulator.ope import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    ItemPositionIPS,
    SelfNormalizedInverseProbabilityWeighting,
    load_slate_log,
)
from simulator.ope.simulation import (
    position_marginals,
    slate_estimate,
    slate_estimator_parts,
    target_position_propensities,
)
from simulator.ope.study import frozen_model, run_study
from simulator.ope.study_config import load_study_config, parse_study_config

SEEDS = list(range(8))
N_ITEMS, K = 300, 5
GREEDY = {"factors": 8}
EPS = {"type": "epsilon_greedy", "epsilon": 0.2, "base": "greedy", "base_params": GREEDY}
WORLD = {
    "catalog": {"n_items": N_ITEMS, "n_genres": 6, "n_artists": 60, "embedding_dim": 8},
    "users": {"n_users": 500},
    "history": {"days": 14},
    "simulation": {"slate_size": K, "train_window_days": 14},
    "metrics": {"window_days": 3, "user_window_days": 5, "n_tracked_users": 20},
}
REPO = Path(__file__).parents[2]


def study_data(**sections) -> dict:
    data = {
        "study": {"name": "test_ope", "seeds": SEEDS, "n_rounds": 10},
        "estimators": {"clip_lambdas": [3, 10, 30, 100], "clip_estimators": ["ips"], "n_bootstrap": 200},
        "loggers": {"eps_log": dict(EPS), "uniform_log": {"type": "random"}},
        "targets": {"eps": dict(EPS), "greedy": dict(GREEDY), "oracle": {}},
        "world": {k: dict(v) for k, v in WORLD.items()},
    }
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return data


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    cfg = parse_study_config(study_data())
    return run_study(cfg, tmp_path_factory.mktemp("ope") / "study", workers=1, progress=False)


def _cell(study, logger, target, estimator, lam=np.inf) -> pd.Series:
    s = study.summary
    row = s[(s.logger == logger) & (s.target == target) & (s.estimator == estimator) & (s["lambda"] == lam)]
    assert len(row) == 1, (logger, target, estimator, lam)
    return row.iloc[0]


# --------------------------------------------------------------------------------------------
# the study against the truth


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
@pytest.mark.parametrize("logger", ["eps_log", "uniform_log"])
def test_weighting_estimators_are_unbiased_against_the_on_policy_truth(study, logger, estimator):
    # 8 seeds; exact logged propensities: E[estimate] = value of the target on the same sessions
    r = _cell(study, logger, "greedy", estimator)
    assert r["n_seeds"] == len(SEEDS) and r["n_undefined"] == 0
    assert abs(r["bias"]) <= 3 * r["bias_se"] + 1e-9, r.to_dict()
    if logger == "eps_log":  # the near target: a tight absolute tolerance as well
        assert abs(r["bias"]) <= 0.04 * r["truth_onpolicy"], r.to_dict()


def test_intervals_cover_the_truth_near_the_nominal_rate(study):
    # pooled over IPS, SNIPS, DR × 8 seeds × both loggers (48 intervals, nominal 0.95)
    cov = [
        _cell(study, lg, "greedy", e)["coverage"]
        for lg in ("eps_log", "uniform_log")
        for e in ("ips", "snips", "dr")
    ]
    assert np.mean(cov) >= 0.75, cov


def test_dm_is_biased_under_the_misspecified_reward_model(study):
    # q̂(a, k) has no user: under uniform logging it is the population click rate of the item,
    # far below what a personalised target earns
    r = _cell(study, "uniform_log", "greedy", "dm")
    assert r["rel_bias"] < -0.3 and abs(r["bias"]) > 10 * r["bias_se"], r.to_dict()
    r = _cell(study, "eps_log", "oracle", "dm")
    assert abs(r["bias"]) > 5 * r["bias_se"], r.to_dict()
    dr = _cell(study, "uniform_log", "greedy", "dr")  # DR repairs it with the same q̂
    assert abs(dr["bias"]) < abs(_cell(study, "uniform_log", "greedy", "dm")["bias"]) / 3


def test_clipping_trades_bias_for_variance(study):
    lams = [3.0, 10.0, 30.0, 100.0, np.inf]
    rows = [_cell(study, "uniform_log", "greedy", "ips", lam) for lam in lams]
    sd = [r["sd_estimate"] for r in rows]
    bias = [abs(r["bias"]) for r in rows]
    assert all(a < b for a, b in itertools.pairwise(sd)), sd  # variance grows with λ
    assert all(a > b for a, b in itertools.pairwise(bias)), bias  # |bias| shrinks with λ
    # closed form: uniform logging gives w ∈ {0, I = 300}, so min(w, λ) = (λ/300)·w for λ ≤ 300
    # and every clipped estimate is exactly λ/300 times the unclipped one
    e = study.estimates
    e = e[(e.logger == "uniform_log") & (e.target == "greedy") & (e.estimator == "ips")]
    wide = e.pivot(index="seed", columns="lambda", values="estimate")
    for lam in lams[:-1]:
        np.testing.assert_allclose(wide[lam], wide[np.inf] * lam / N_ITEMS, rtol=1e-6)  # pscore is float32


def test_the_logger_as_target_has_unit_weights_and_replays_the_log(study):
    # share_model: the eps target and the eps logger fit the same model, so every weight is 1
    d = study.diagnostics
    d = d[(d.logger == "eps_log") & (d.target == "eps")]
    assert np.allclose(d[["mean_weight", "max_weight", "ess_share", "support_share"]], 1.0)
    # ... and IPS is the mean logged clicks per session: the logger's on-policy value
    e = study.estimates
    ips = e[(e.logger == "eps_log") & (e.target == "eps") & (e.estimator == "ips") & np.isinf(e["lambda"])]
    t = study.truths
    own = t[(t.policy == "eps_log")].set_index("seed")["truth_onpolicy"]
    np.testing.assert_allclose(ips.set_index("seed")["estimate"], own, rtol=1e-6)


def test_study_writes_tidy_tables_summary_and_figures(study):
    out = study.out_dir
    est = pd.read_parquet(out / "estimates.parquet")
    cols = [
        "seed",
        "logger",
        "target",
        "estimator",
        "lambda",
        "estimate",
        "ci_low",
        "ci_high",
        "truth_onpolicy",
        "truth_expected",
    ]
    assert list(est.columns[: len(cols)]) == cols
    # 8 seeds × 2 loggers × 3 targets × (ips at 5 λ + snips + dm + dr)
    assert len(est) == len(SEEDS) * 2 * 3 * 8
    assert (est["status"] == "ok").all() and np.isfinite(est[["estimate", "ci_low", "ci_high"]]).all().all()
    assert (est["ci_low"] <= est["estimate"]).all() and (est["estimate"] <= est["ci_high"]).all()
    assert pd.read_csv(out / "summary.csv").shape[0] == 2 * 3 * 8
    md = (out / "summary.md").read_text()
    assert "Seeds: 8" in md and "## Unbiasedness check" in md and "## Clipping" in md
    for stem in ("estimate_vs_truth", "error_vs_divergence", "clipping"):
        assert (out / "figures" / f"{stem}.png").stat().st_size > 10_000
    assert (out / "logs" / "policy=eps_log" / "seed=0").is_dir()


# --------------------------------------------------------------------------------------------
# exact target propensities


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Two days of the eps logger, with its log, and the frozen greedy / oracle / random models."""
    cfg = parse_study_config(
        study_data(
            study={"seeds": [3], "n_rounds": 2}, targets={"greedy": GREEDY, "oracle": {}, "random": {}}
        )
    )
    exp = cfg.experiment_config()
    log_dir = tmp_path_factory.mktemp("log")
    logger = frozen_model(exp, "eps_log", 3, share_model=True, log_dir=log_dir)
    logger.run()
    fb = load_slate_log(log_dir, n_actions=N_ITEMS)
    users = fb.session_id - fb.round * exp.users.n_users
    targets = {}
    for label in ("greedy", "oracle", "random"):
        m = frozen_model(exp, label, 3, share_model=True)
        m.run()
        targets[label] = m
    return logger, fb, users, targets


def test_recomputed_propensities_of_the_logger_equal_the_logged_ones(logged):
    logger, fb, users, _ = logged
    pi = target_position_propensities(logger.policy, users, fb.slate_action)
    np.testing.assert_allclose(pi, fb.pscore, rtol=1e-6)  # logged as float32


def test_marginals_are_distributions_over_items_at_every_position(logged):
    logger, _, users, targets = logged
    for policy in (logger.policy, *(m.policy for m in targets.values())):
        marg = position_marginals(policy, users[:200], K)
        np.testing.assert_allclose(marg.column_sums(), 1.0, atol=1e-12)
        # Σ_k Σ_a π(a at k) · 1 = K
        np.testing.assert_allclose(marg.expected(np.ones((N_ITEMS, K))), K, atol=1e-9)


def test_deterministic_targets_give_their_own_slate_probability_one(logged):
    _, fb, users, targets = logged
    g = targets["greedy"].policy
    slate = g.recommend(users[:100], K, np.random.default_rng(0))
    assert (target_position_propensities(g, users[:100], slate.items) == 1.0).all()
    swapped = slate.items[:, ::-1]  # same items, other positions (K odd: the middle one stays)
    p = target_position_propensities(g, users[:100], swapped)
    assert (p[:, K // 2] == 1.0).all() and (np.delete(p, K // 2, axis=1) == 0.0).all()
    r = target_position_propensities(targets["random"].policy, users[:10], fb.slate_action[:10])
    assert (r == 1.0 / N_ITEMS).all()


def test_randomised_policies_without_exact_marginals_are_refused(tmp_path):
    cfg = parse_study_config(study_data(study={"seeds": [0], "n_rounds": 1}))
    data = cfg.experiment_data()
    data["policies"] = {"bz": {"type": "boltzmann", "base_params": GREEDY}, "ts": {"type": "thompson"}}
    from simulator.config import parse_config

    exp = parse_config(data)
    for label, match in (("bz", "boltzmann has no exact"), ("ts", "is randomised")):
        model = frozen_model(exp, label, 0, share_model=False)
        with pytest.raises(ValidationError, match=match):
            position_marginals(model.policy, np.arange(5), K)


# --------------------------------------------------------------------------------------------
# the slate estimators against the library's (obp-checked) impression-level estimators


def _problem(seed=0, n=60, n_items=7, k=3):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(n_items), size=(n, k)).transpose(0, 2, 1)  # (n, I, K)
    items = np.stack([rng.permutation(n_items)[:k] for _ in range(n)])
    pscore = rng.uniform(0.05, 0.6, size=(n, k))
    reward = (rng.random((n, k)) < 0.4).astype(float)
    q = rng.uniform(0.1, 0.7, size=(n_items, k))
    rows, cols = np.arange(n)[:, None], np.arange(k)[None, :]
    target = pi[rows, items, cols]
    dm_term = np.einsum("nak,ak->n", pi, q)
    return pi, items, pscore, reward, q, target, dm_term


@pytest.mark.parametrize("lam", [np.inf, 2.0])
def test_slate_estimators_equal_k_times_the_impression_level_estimators(lam):
    pi, items, pscore, reward, q, target, dm_term = _problem()
    n, n_items, k = pi.shape
    imp = {  # one round per impression, obp's ranking convention
        "reward": reward.ravel(),
        "action": items.ravel(),
        "position": np.tile(np.arange(k), n),
        "pscore": pscore.ravel(),
        "action_dist": np.repeat(pi, k, axis=0),
        "estimated_rewards_by_reg_model": np.broadcast_to(q, (n * k, n_items, k)).copy(),
    }
    mine = {
        "reward": reward,
        "pscore": pscore,
        "target_pscore": target,
        "dm_term": dm_term,
        "q_logged": q[items, np.arange(k)],
    }

    def value(name, **kw):
        base, num, den = slate_estimator_parts(name, **mine, **kw)
        return (0.0 if base is None else base.mean()) + (0.0 if num is None else num.sum() / den.sum())

    ips = ItemPositionIPS(lambda_=lam).estimate_policy_value(
        slate_action=items, reward=reward, pscore=pscore, action_dist=pi
    )
    assert value("ips", lambda_=lam) == pytest.approx(ips, rel=1e-12)
    assert value("ips", lambda_=lam) == pytest.approx(
        k * InverseProbabilityWeighting(lambda_=lam).estimate_policy_value(**imp), rel=1e-12
    )
    assert value("dr", lambda_=lam) == pytest.approx(
        k * DoublyRobust(lambda_=lam).estimate_policy_value(**imp), rel=1e-12
    )
    if np.isinf(lam):
        snipw = SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**imp)
        assert value("snips") == pytest.approx(k * snipw, rel=1e-12)
        assert value("dm") == pytest.approx(k * DirectMethod().estimate_policy_value(**imp), rel=1e-12)


def test_slate_estimate_interval_brackets_the_estimate():
    _, _, pscore, reward, _, target, _ = _problem(1, n=400)
    iv = slate_estimate("snips", reward=reward, pscore=pscore, target_pscore=target, random_state=0)
    assert iv.lower <= iv.estimate <= iv.upper and iv.convention == "percentile"
    again = slate_estimate("snips", reward=reward, pscore=pscore, target_pscore=target, random_state=0)
    assert again == iv  # deterministic under a seed


# --------------------------------------------------------------------------------------------
# bad input: a clear error, never a silent NaN


def _arrays():
    _, _, pscore, reward, _, target, dm_term = _problem(2, n=20)
    return {"reward": reward, "pscore": pscore, "target_pscore": target, "dm_term": dm_term}


def _set(key, i, value):
    def edit(a):
        a[key] = a[key].copy()
        a[key][i] = value
        return a

    return edit


@pytest.mark.parametrize(
    ("estimator", "edit", "match"),
    [
        (
            "ips",
            _set("pscore", (3, 1), 0.0),
            r"pscore must be > 0 and finite; got min 0.0 at round 3, position 1",
        ),
        ("ips", _set("pscore", (2, 0), -0.1), r"pscore must be > 0 and finite; got min -0.1"),
        (
            "ips",
            _set("pscore", (5, 2), np.nan),
            r"pscore must be > 0 and finite; got nan at round 5, position 2",
        ),
        ("dr", _set("pscore", (0, 0), 1.5), r"pscore must be a probability <= 1; got max 1.5"),
        ("snips", _set("pscore", (1, 1), np.nan), r"pscore must be > 0 and finite; got nan"),
        ("ips", _set("target_pscore", (4, 0), np.nan), r"target_pscore must be finite; got nan at session 4"),
        ("ips", _set("target_pscore", (4, 0), 1.2), r"target_pscore must be a probability in \[0, 1\]"),
        ("ips", _set("reward", (7, 2), np.inf), r"reward must be finite; got inf at session 7"),
        ("dr", _set("dm_term", 6, np.nan), r"dm_term must be finite; got nan at session 6"),
        (
            "snips",
            lambda a: a | {"target_pscore": np.zeros((20, 3))},
            r"snips: the target policy gives zero probability to every logged \(item, position\)",
        ),
        ("dm", lambda a: a | {"dm_term": None}, r"dm requires dm_term"),
        ("dr", lambda a: a, r"dr requires q_logged"),
        ("ips", lambda a: a | {"pscore": a["pscore"][:, :2]}, r"reward must have shape \(20, 2\)"),
        ("ipss", lambda a: a, r"estimator must be one of \('ips', 'snips', 'dm', 'dr'\); got 'ipss'"),
    ],
)
def test_bad_estimator_input_raises_a_clear_error(estimator, edit, match):
    with pytest.raises(ValidationError, match=match):
        slate_estimate(estimator, **edit(_arrays()), n_bootstrap_samples=20, random_state=0)


def test_clipping_is_refused_where_it_means_nothing():
    with pytest.raises(ValidationError, match="snips takes no clipping threshold"):
        slate_estimator_parts("snips", lambda_=5.0, **{k: v for k, v in _arrays().items() if k != "dm_term"})
    with pytest.raises(ValidationError, match=r"ips.lambda_ must be a float >= 0"):
        slate_estimator_parts("ips", lambda_=-1.0, **_arrays())


def _log_frame(n=4, k=3) -> pd.DataFrame:
    rows = np.repeat(np.arange(n), k)
    return pd.DataFrame(
        {
            "round": np.zeros(n * k, np.int32),
            "session_id": rows.astype(np.int64),
            "item_id": np.tile(np.arange(k), n).astype(np.int32),
            "position": np.tile(np.arange(k), n).astype(np.int16),
            "pscore": np.full(n * k, 0.5, np.float32),
            "reward": np.zeros(n * k, np.float32),
        }
    )


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda f: f.drop(columns="pscore"), "missing the propensity column 'pscore'"),
        (
            lambda f: f.assign(pscore=np.where(f.index == 4, 0.0, f.pscore)),
            r"'pscore' must hold propensities in \(0, 1\] \(never NaN\); got 0.0 at row 4",
        ),
        (  # pandas writes NaN as a Parquet null
            lambda f: f.assign(pscore=np.where(f.index == 2, np.nan, f.pscore)),
            r"column 'pscore' has 1 null values \(first at row 2\)",
        ),
        (lambda f: f.assign(pscore=np.where(f.index == 1, -0.5, f.pscore)), r"got -0.5 at row 1"),
    ],
)
def test_bad_logs_raise_log_schema_errors(tmp_path, edit, match):
    path = tmp_path / "log.parquet"
    edit(_log_frame()).to_parquet(path)
    with pytest.raises(LogSchemaError, match=match):
        load_slate_log(path)


# --------------------------------------------------------------------------------------------
# the config and the command line


@pytest.mark.parametrize(
    ("sections", "match"),
    [
        (
            {"world": {"users": {"n_users": -5}}},
            r"world.users.n_users: Input should be greater than 0; got -5",
        ),
        (
            {"world": {"users": {"n_userz": 5}}},
            r"world.users.n_userz: unknown key \(did you mean 'n_users'\?\)",
        ),
        ({"world": {"users": {"drift_sigma": 0.1}}}, r"world.users.drift_sigma must be 0"),
        ({"world": {"users": {"satiation_strength": 0.5}}}, r"world.users.satiation_strength must be 0"),
        (
            {"world": {"simulation": {"retrain_every_days": 1}}},
            r"world.simulation.retrain_every_days must be > study.n_rounds = 10",
        ),
        ({"world": {"policies": {}}}, r"world.policies is not allowed here"),
        ({"targets": {"ucb": {}}}, r"targets.ucb.type: 'ucb' learns online"),
        (
            {"targets": {"bz": {"type": "boltzmann"}}},
            r"targets.bz.type: 'boltzmann' has Monte-Carlo propensities",
        ),
        (
            {"targets": {"greedy": {"factorz": 8}}},
            r"targets.greedy.factorz: unknown key \(did you mean 'factors'\?\)",
        ),
        (
            {"loggers": {"g": {"type": "greedy"}}},
            r"loggers.g.type: a logging policy must give every \(item, position\)",
        ),
        ({"loggers": {"e": {"type": "epsilon_greedy", "epsilon": 0.0}}}, r"loggers.e.epsilon must be > 0"),
        ({"loggers": {"greedy": {"type": "random"}}}, r"labels must differ between loggers and targets"),
        ({"study": {"seeds": [1, 1]}}, r"study.seeds: seeds must be unique"),
        (
            {"estimators": {"names": ["ips", "dmm"]}},
            r"estimators.names.1: Input should be 'ips', 'snips', 'dm' or 'dr'",
        ),
        (
            {"estimators": {"names": ["ips"], "clip_estimators": ["dr"]}},
            r"clip_estimators must be among estimators.names",
        ),
        ({"estimators": {"clip_lambdas": [0]}}, r"estimators.clip_lambdas.0: Input should be greater than 0"),
    ],
)
def test_bad_study_config_names_the_key(sections, match):
    with pytest.raises(ConfigError, match=match):
        parse_study_config(study_data(**sections))


def _toml(path: Path, data: dict) -> Path:
    import json

    lines: list[str] = []

    def emit(prefix: str, table: dict) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in scalars.items())
        for k, v in table.items():
            if isinstance(v, dict):
                emit(f"{prefix}.{k}" if prefix else k, v)

    emit("", data)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path):
    bad = _toml(tmp_path / "bad.toml", study_data(world={"users": {"drift_sigma": 0.2}}))
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "ope", str(bad), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    assert "error: invalid OPE study config" in res.stderr and "world.users.drift_sigma" in res.stderr
    assert not out.exists()


def test_shipped_study_config_runs_at_a_tiny_size(tmp_path):
    # experiments/ope/*.toml are smoke-tested documents too (STYLE.md point 12)
    for path in sorted((REPO / "experiments" / "ope").glob("*.toml")):
        assert path.read_text().lstrip().startswith("#"), (
            "a config starts with a comment saying what it shows"
        )
        cfg = load_study_config(
            path,
            [
                "study.seeds=[0]",
                "study.n_rounds=2",
                "world.users.n_users=200",
                "world.catalog.n_items=150",
                "world.history.days=7",
                "world.metrics.n_tracked_users=10",
                "estimators.n_bootstrap=20",
            ],
        )
        res = run_study(cfg, tmp_path / path.stem, workers=1, progress=False, figures=False)
        n_est = len(cfg.estimators.names) + len(cfg.estimators.clip_estimators) * len(
            cfg.estimators.clip_lambdas
        )
        assert len(res.estimates) == len(cfg.loggers) * len(cfg.targets) * n_est
        assert (res.out_dir / "summary.md").is_file()
