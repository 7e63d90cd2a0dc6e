"""``recloop position-bias LOG``: estimates printed and written; bad logs exit 2 with the reason.

The log is a deterministic (oracle) ranker's log from the position-bias study's world: 20 users
x 30 items, K = 5, 3,000 sessions, eta = 1 (examination 1, 1/2, 1/3, 1/4, 1/5), world seed 0,
click seed 3, written as recloop Parquet (LOG_SCHEMA + original_position).
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.logs.impressions import LOG_SCHEMA
from simulator.ope.data import default_obd_dir
from simulator.ope.position_bias_study import (
    build_world,
    parse_position_bias_study_config,
    production_slates,
    simulate_log,
)
from simulator.rng import stream

K = 5
N_SESSIONS = 3_000


@functools.cache
def _log(regime: str) -> pd.DataFrame:
    cfg = parse_position_bias_study_config(
        {
            "study": {"name": "t", "n_sessions": N_SESSIONS},
            "world": {
                "catalog": {"n_items": 30, "n_genres": 5, "n_artists": 10},
                "users": {"n_users": 20, "alternating_share": 0.0},
                "simulation": {"slate_size": K},
            },
        }
    )
    world = build_world(cfg.experiment_config(), 0)
    users, items, scores = production_slates(world, N_SESSIONS, 10, stream(0, "pb-sessions"))
    return pd.DataFrame(simulate_log(world, users, items, scores, 1.0, regime, 3))


def _write(tmp_path, frame: pd.DataFrame, name: str = "log.parquet"):
    path = tmp_path / name
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def _invoke(*args):
    return CliRunner().invoke(app, ["position-bias", *map(str, args)])


def test_prints_estimates_and_writes_the_table(tmp_path):
    log = _write(tmp_path, _log("deterministic")[[*LOG_SCHEMA.names]])  # recloop's schema exactly
    out = tmp_path / "out"
    res = _invoke(log, "--bootstrap", 30, "--out", out)
    assert res.exit_code == 0, res.output
    text = res.output
    assert "K = 5 from max(position) + 1" in text and "sessions: session_id" in text
    # the CTR ratio's placement check is reported: a deterministic ranker's log
    assert "placement check: item placement is NOT randomised" in text
    assert "NOT IDENTIFIABLE (ctr_ratio)" in text
    assert "skipped swap_intervention" in text and "original_position" in text
    table = pd.read_csv(out / "position_bias.csv")
    assert set(table["method"]) == {"ctr_ratio", "em"}
    ctr = table[table["method"] == "ctr_ratio"].set_index("position")
    # true column from the log's `examination`: 1/(k+1)
    np.testing.assert_allclose(ctr["true_examination"], 1 / np.arange(1, K + 1), rtol=1e-6)
    # the CTR ratio is exactly CTR_k / CTR_0 of the log
    np.testing.assert_allclose(ctr["estimate"], ctr["ctr"] / ctr["ctr"].iloc[0])
    assert (ctr["estimate"].iloc[1:] < ctr["true_examination"].iloc[1:]).all()  # biased low
    assert np.all(ctr["ci_low"] <= ctr["estimate"]) and np.all(ctr["estimate"] <= ctr["ci_high"])
    meta = json.loads((out / "position_bias.json").read_text())
    assert meta["placement_check"]["randomised"] is False
    assert meta["methods"]["ctr_ratio"]["identifiable"] is False
    assert meta["n_impressions"] == N_SESSIONS * K and meta["n_bootstrap"] == 30


def test_swap_method_on_a_swap_log(tmp_path):
    log = _write(tmp_path, _log("swap"))
    res = _invoke(log, "--method", "swap", "--bootstrap", 30, "--em-key", "user_item")
    assert res.exit_code == 0, res.output
    assert "swap_intervention" in res.output and "placement check" not in res.output


@pytest.mark.skipif(not (default_obd_dir() / "random" / "all.csv").is_file(), reason="no OBD copy")
def test_open_bandit_dataset_has_three_positions():
    res = _invoke(default_obd_dir() / "random" / "all.csv", "--method", "ctr_ratio", "--bootstrap", 20)
    assert res.exit_code == 0, res.output
    assert "K = 3 from the Open Bandit Dataset" in res.output
    assert "item placement looks randomised" in res.output
    # (14 / 3412) / (13 / 3322) = 1.0485 at the second position
    assert "ctr_ratio         1     1.049" in res.output


def _edit(column, values):
    frame = _log("deterministic")[[*LOG_SCHEMA.names]].copy()  # recloop's schema
    frame[column] = values
    return frame


@pytest.mark.parametrize(
    ("frame", "args", "message"),
    [
        (lambda: _edit("position", np.int16(2)), [], "not identifiable: the log holds a single position (2)"),
        (
            lambda: _edit(
                "position",
                np.where(np.arange(N_SESSIONS * K) == 7, -1, _log("deterministic")["position"]).astype(
                    np.int16
                ),
            ),
            [],
            "column 'position' must be >= 0; got -1 at row 7",
        ),
        (
            lambda: _log("deterministic"),
            ["--slate-size", 3],
            "column 'position' must be < the slate size K = 3 (--slate-size",
        ),
        (lambda: _edit("click", False), [], "no clicks: examination not identifiable"),
        (lambda: _log("deterministic").drop(columns="click"), [], "missing required column(s) ['click']"),
        (lambda: _log("deterministic"), ["--method", "swap"], "needs the column 'original_position'"),
        (lambda: _log("deterministic"), ["--method", "emm"], "did you mean 'em'?"),
        (lambda: _log("deterministic"), ["--reference", 5], "reference must be an int in [0, 5)"),
    ],
)
def test_bad_input_exits_2_with_the_reason(tmp_path, frame, args, message):
    df = frame()
    if args[:2] == ["--method", "swap"]:
        df = df.drop(columns="original_position")
    log = _write(tmp_path, df)
    out = tmp_path / "out"
    res = _invoke(log, "--bootstrap", 10, "--out", out, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists()


def test_unreadable_and_missing_logs_exit_2(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not a parquet file")
    res = _invoke(bad)
    assert res.exit_code == 2 and "cannot read" in res.output
    res = _invoke(tmp_path / "nowhere.parquet")
    assert res.exit_code == 2 and "log not found" in res.output


def test_a_folder_pooling_several_runs_is_refused(tmp_path):
    # e.g. a study's logs/: regime=deterministic/ and regime=randomised/ share session ids
    for regime in ("deterministic", "randomised"):
        (tmp_path / "logs" / f"regime={regime}").mkdir(parents=True)
        _write(tmp_path / "logs" / f"regime={regime}", _log(regime), "part-00000.parquet")
    res = _invoke(tmp_path / "logs", "--bootstrap", 10)
    assert res.exit_code == 2, res.output
    assert "2 regime partitions" in res.output


def test_too_few_bootstrap_replicates_are_refused(tmp_path):
    res = _invoke(_write(tmp_path, _log("randomised")), "--bootstrap", 0)
    assert res.exit_code == 2 and "bootstrap" in res.output
