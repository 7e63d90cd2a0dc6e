"""Loaders: the Open Bandit Dataset sample and recloop's own Parquet impression log.

The OBD tests read the data where it lives (``$RECLOOP_OBD_DIR``, else
``<repo>/../shared/data/obd``) and are skipped with the reason when it is missing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.errors import LogSchemaError, ValidationError
from simulator.logs.impressions import LOG_SCHEMA
from simulator.ope import (
    OBD_ENV_VAR,
    DoublyRobust,
    InverseProbabilityWeighting,
    ItemPositionIPS,
    PseudoInverse,
    RewardModel,
    SelfNormalizedInverseProbabilityWeighting,
    default_obd_dir,
    empirical_action_dist,
    load_impression_log,
    load_open_bandit_dataset,
    load_slate_log,
)

OBD_DIR = default_obd_dir()
needs_obd = pytest.mark.skipif(
    not (OBD_DIR / "random" / "all.csv").is_file() or not (OBD_DIR / "bts" / "all.csv").is_file(),
    reason=f"Open Bandit Dataset sample not found in {OBD_DIR} (set {OBD_ENV_VAR} to its folder)",
)


@pytest.fixture(scope="module")
def obd():
    return (
        load_open_bandit_dataset(OBD_DIR, behavior_policy="random"),
        load_open_bandit_dataset(OBD_DIR, behavior_policy="bts"),
    )


@needs_obd
def test_obd_loader_shapes(obd):
    random, bts = obd
    for log in (random, bts):
        assert log.n_rounds == 10_000
        assert (log.n_actions, log.len_list) == (80, 3)
        assert log.action.dtype == np.int64 and log.position.dtype == np.int64
        assert set(np.unique(log.position)) == {0, 1, 2}  # OBD's 1..3, 0-based
        assert set(np.unique(log.reward)) <= {0.0, 1.0}
        assert log.context is not None and log.context.shape[0] == 10_000
        assert ((log.pscore > 0) & (log.pscore <= 1)).all()
    np.testing.assert_array_equal(random.pscore, 1 / 80)  # uniform over 80 items per position


@needs_obd
def test_obd_bts_value_from_the_random_log(obd):
    """Estimate the Bernoulli TS click rate from the uniform-random log.

    Target ``action_dist``: BTS's context-free marginal P(item a at position k), estimated by
    the (item, position) frequencies of the BTS log (:func:`empirical_action_dist`; obp would
    recompute it by Monte Carlo from BTS's posterior, which the sample does not include).
    On-policy truth: the BTS log's click rate. With ~40 clicks per log the estimates are noisy,
    so the stated tolerance is generous: the on-policy CTR must lie in IPW's 95 % bootstrap
    interval, and the relative error of IPW, SNIPW and DR must be below 50 %.
    """
    random, bts = obd
    p_bts = empirical_action_dist(bts.action, bts.position, bts.n_actions, bts.len_list)
    action_dist = np.broadcast_to(p_bts[None], (random.n_rounds, *p_bts.shape))
    kwargs = {**random.estimator_kwargs(), "action_dist": action_dist}
    q = RewardModel(interactions=False).fit_predict(
        context=random.context,
        action=random.action,
        reward=random.reward,
        position=random.position,
        n_actions=random.n_actions,
        len_list=random.len_list,
        n_folds=2,
        random_state=0,
    )
    on_policy = bts.reward.mean()
    se_on = np.sqrt(on_policy * (1 - on_policy) / bts.n_rounds)
    ipw = InverseProbabilityWeighting()
    interval = ipw.estimate_interval(**kwargs, n_bootstrap_samples=1000, random_state=12345)
    estimates = {
        "IPW": interval.estimate,
        "SNIPW": SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kwargs),
        "DR": DoublyRobust().estimate_policy_value(**kwargs, estimated_rewards_by_reg_model=q),
    }
    print(
        f"\nOBD: BTS on-policy CTR {on_policy:.5f} (± {1.96 * se_on:.5f}, {bts.n_rounds} "
        f"impressions); random-log CTR {random.reward.mean():.5f}"
    )
    print(f"  IPW 95% CI (obp bootstrap, 1000): [{interval.lower:.5f}, {interval.upper:.5f}]")
    for name, value in estimates.items():
        print(f"  {name:5s} {value:.5f}  relative error {abs(value / on_policy - 1):.1%}")
    assert interval.lower <= on_policy <= interval.upper
    for value in estimates.values():
        assert abs(value / on_policy - 1) < 0.5


@needs_obd
def test_obd_env_var_and_missing_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(OBD_ENV_VAR, str(OBD_DIR))
    assert default_obd_dir() == OBD_DIR
    assert load_open_bandit_dataset(behavior_policy="bts").n_rounds == 10_000
    monkeypatch.setenv(OBD_ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"{OBD_ENV_VAR}"):
        load_open_bandit_dataset()
    with pytest.raises(ValidationError, match=r"behavior_policy must be 'random' or 'bts'"):
        load_open_bandit_dataset(OBD_DIR, behavior_policy="greedy")


def test_obd_missing_propensity_column(tmp_path):
    (tmp_path / "random").mkdir()
    header = ",timestamp,item_id,position,click,user_feature_0,user_feature_1,user_feature_2,"
    (tmp_path / "random" / "all.csv").write_text(header + "user_feature_3\n0,t,1,1,0,a,b,c,d\n")
    with pytest.raises(LogSchemaError, match=r"lacks required OBD columns \['propensity_score'\]"):
        load_open_bandit_dataset(tmp_path)


def test_empirical_action_dist():
    p = empirical_action_dist(np.array([0, 1, 1, 2]), np.array([0, 0, 0, 1]), 3, 2)
    np.testing.assert_allclose(p, [[1 / 3, 0.0], [2 / 3, 0.0], [0.0, 1.0]])
    with pytest.raises(ValidationError, match=r"position 1 never occurs"):
        empirical_action_dist(np.array([0]), np.array([0]), 3, 2)


# ---------------------------------------------------------------------------------------------
# recloop's Parquet schema

SCHEMA = LOG_SCHEMA  # the writer's schema (DESIGN.md §7), not a second copy


def _recloop_log(n_sessions=300, length=3, n_items=6, seed=0) -> pa.Table:
    """Uniform-random independent slates (repeats allowed) with PBM clicks; rows shuffled."""
    rng = np.random.default_rng(seed)
    n = n_sessions * length
    items = rng.integers(0, n_items, n)
    position = np.tile(np.arange(length), n_sessions)
    click = rng.random(n) < 0.3 / (1 + position)
    order = rng.permutation(n)  # a log need not be sorted
    cols = {
        "round": np.repeat(np.arange(n_sessions) // 50, length).astype(np.int32),
        "time": np.repeat(np.arange(n_sessions) / 50.0, length),
        "session_id": np.repeat(np.arange(n_sessions), length).astype(np.int64),
        "user_id": np.repeat(rng.integers(0, 40, n_sessions), length).astype(np.int32),
        "position": position.astype(np.int16),
        "item_id": items.astype(np.int32),
        "score": rng.random(n).astype(np.float32),
        "pscore": np.full(n, 1 / n_items, dtype=np.float32),
        "inclusion_pscore": np.full(n, 1 - (1 - 1 / n_items) ** length, dtype=np.float32),
        "examination": (1 / (1 + position)).astype(np.float32),
        "click": click,
        "reward": click.astype(np.float32),
        "policy": np.where(np.arange(n) < n // 2, "random", "other"),
    }
    cols = {k: v[order] for k, v in cols.items()}
    return pa.table(cols, schema=SCHEMA)


def test_parquet_roundtrip_impressions_and_slates(tmp_path):
    table = _recloop_log()
    path = tmp_path / "log.parquet"
    pq.write_table(table, path)
    imp = load_impression_log(path)
    assert imp.n_rounds == 900 and imp.len_list == 3 and imp.n_actions == 6
    assert imp.pscore.dtype == np.float64 and imp.context is None
    assert imp.reward.sum() == table["click"].to_numpy().sum()
    slates = load_slate_log(path, n_actions=6)
    assert slates.slate_action.shape == (300, 3) and slates.inclusion_pscore is not None
    np.testing.assert_array_equal(slates.session_id, np.arange(300))
    # slate k of session s holds the item logged at (s, k)
    df = table.to_pandas().sort_values(["session_id", "position"])
    np.testing.assert_array_equal(slates.slate_action.ravel(), df["item_id"].to_numpy())
    # the same table passed directly (Table or DataFrame) gives the same arrays
    for source in (table, table.to_pandas()):
        np.testing.assert_array_equal(load_slate_log(source).slate_action, slates.slate_action)
    # on-policy evaluation of the logger: both slate estimators return the mean clicks per slate
    uniform = np.full((300, 6, 3), 1 / 6)
    for est in (ItemPositionIPS(), PseudoInverse()):
        value = est.estimate_policy_value(**slates.estimator_kwargs(), action_dist=uniform)
        assert value == pytest.approx(slates.reward.sum(axis=1).mean(), rel=1e-6)
    ipw = InverseProbabilityWeighting().estimate_policy_value(
        **imp.estimator_kwargs(), action_dist=np.full((900, 6, 3), 1 / 6)
    )
    assert ipw == pytest.approx(imp.reward.mean(), rel=1e-6)


def test_parquet_partitioned_folder_and_policy_filter(tmp_path):
    table = _recloop_log()
    pq.write_to_dataset(table, tmp_path / "logs", partition_cols=["policy"])
    both = load_impression_log(tmp_path / "logs")
    only = load_impression_log(tmp_path / "logs", policy="random", reward_column="click")
    assert both.n_rounds == 900 and only.n_rounds == 450


def _drop(name):
    return lambda t: t.drop_columns([name])


def _replace(name, values):
    def fn(t):
        i = t.column_names.index(name)
        return t.set_column(i, name, pa.array(values, type=t.schema.field(name).type))

    return fn


def _nan_at(i):
    def values(t):
        p = t["pscore"].to_numpy().copy()
        p[i] = np.nan
        return p

    return values


BAD_LOGS = [
    (_drop("pscore"), LogSchemaError, r"missing the propensity column 'pscore'"),
    (_drop("item_id"), LogSchemaError, r"missing required columns \['item_id'\]"),
    (_drop("session_id"), LogSchemaError, r"missing required columns \['session_id'\]"),
    (
        lambda t: _replace("pscore", _nan_at(7)(t))(t),
        LogSchemaError,
        r"column 'pscore' must hold propensities in \(0, 1\] \(never NaN\); got nan at row 7",
    ),
    (lambda t: _replace("pscore", np.zeros(900))(t), LogSchemaError, r"got 0\.0 at row 0"),
    (
        lambda t: _replace("pscore", [None] * 3 + [0.5] * 897)(t),
        LogSchemaError,
        r"column 'pscore' has 3 null values \(first at row 0\)",
    ),
    (lambda t: t.slice(1), LogSchemaError, r"has 2 impressions; every slate must fill positions 0\.\.2"),
]


@pytest.mark.parametrize(("mutate", "error", "match"), BAD_LOGS)
def test_bad_logs_raise(tmp_path, mutate, error, match):
    table = mutate(_recloop_log())
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    with pytest.raises(error, match=match):
        load_slate_log(path)


def test_repeated_position_in_a_slate_raises():
    table = _recloop_log()
    pos = table["position"].to_numpy().copy()
    first = int(np.flatnonzero(pos == 2)[0])
    pos[first] = 1
    table = _replace("position", pos)(table)
    with pytest.raises(LogSchemaError, match=r"has positions \[0, 1, 1\]"):
        load_slate_log(table)


def test_policy_filter_needs_policy_column_and_path_must_exist(tmp_path):
    with pytest.raises(LogSchemaError, match=r"no 'policy' column"):
        load_impression_log(_recloop_log().drop_columns(["policy"]), policy="random")
    with pytest.raises(FileNotFoundError, match=r"impression log not found"):
        load_impression_log(tmp_path / "nope.parquet")
