"""Sweeps: cell planning, identical results on every executor, resume, failures named."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from conftest import tiny_config_data

from simulator.config import parse_config
from simulator.engine.runner import plan_cells, run_experiment
from simulator.errors import ConfigError, ResultsError


def _sweep_config(**extra):
    return parse_config(
        tiny_config_data(
            experiment={"n_rounds": 4, "seeds": [0, 1]},
            users={"n_users": 200},
            policies={"greedy": {"factors": 4}, "random": {}},
            sweep={
                "grid": {"policies.greedy.alpha": [2.0, 20.0]},
                "zip": {"users.drift_sigma": [0.0, 0.1], "users.alternating_share": [0.1, 0.3]},
            },
            **extra,
        )
    )


def _tables(run_dir):
    m = pd.read_parquet(run_dir / "metrics.parquet")
    keys = ["policy", "seed", "policies.greedy.alpha", "users.drift_sigma", "round", "metric"]
    return m.sort_values(keys, na_position="first").reset_index(drop=True)


def test_plan_crosses_grid_zip_policies_and_seeds():
    cells = plan_cells(_sweep_config())
    # greedy: 2 alphas x 2 zipped points x 2 seeds = 8; random ignores the greedy key: 2 x 2 = 4
    assert sum(c.policy == "greedy" for c in cells) == 8
    assert sum(c.policy == "random" for c in cells) == 4
    assert len({c.name for c in cells}) == len(cells)
    rnd = next(c for c in cells if c.policy == "random")
    assert "policies.greedy.alpha" not in rnd.params
    assert rnd.params.keys() == {"users.drift_sigma", "users.alternating_share"}


@pytest.mark.parametrize(
    ("sweep", "match"),
    [
        ({"grid": {"users.n_users": [100, -1]}}, r"users\.n_users: Input should be greater than 0"),
        ({"grid": {"users.n_userz": [1]}}, r"users\.n_userz: unknown key"),
        ({"grid": {"policies.greedy.alpah": [1.0]}}, r"did you mean 'alpha'"),
        ({"zip": {"users.drift_sigma": [0.0, 0.1], "users.alternating_share": [0.1]}}, r"same length"),
        ({"grid": {"users.drift_sigma": []}}, r"non-empty list"),
        ({"grid": {"experiment.seeds": [[1]]}}, r"cannot be swept"),
    ],
)
def test_bad_sweeps_name_the_key(sweep, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(tiny_config_data(sweep=sweep))


def test_same_results_on_one_worker_a_pool_and_a_dask_cluster(tmp_path):
    from distributed import LocalCluster

    cfg = _sweep_config()
    serial = run_experiment(cfg, tmp_path / "serial", workers=1, progress=False, figures=False)
    pool = run_experiment(cfg, tmp_path / "pool", workers=2, progress=False, figures=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        dask = run_experiment(
            cfg, tmp_path / "dask", progress=False, figures=False, dask_scheduler=cluster.scheduler_address
        )
    a = _tables(serial.run_dir)
    assert {"policies.greedy.alpha", "users.drift_sigma", "users.alternating_share"} <= set(a.columns)
    pd.testing.assert_frame_equal(a, _tables(pool.run_dir))
    pd.testing.assert_frame_equal(a, _tables(dask.run_dir))
    # the dask run gathered the impression logs to the output folder too
    assert len(list((dask.run_dir / "logs").rglob("part-*.parquet"))) == len(plan_cells(cfg))


def test_restart_completes_only_missing_cells(tmp_path):
    cfg = _sweep_config()
    out = tmp_path / "run"
    first = run_experiment(cfg, out, workers=1, progress=False, figures=False)
    stamps = {c.name: (out / "cells" / c.name / "cell.json").stat().st_mtime_ns for c in first.cells}
    lost = [c.name for c in first.cells[::3]]
    for name in lost:  # as if killed before these finished
        shutil.rmtree(out / "cells" / name)
    again = run_experiment(cfg, out, workers=2, progress=False, figures=False)
    assert sorted(c.name for c in again.computed) == sorted(lost)
    for name, stamp in stamps.items():
        if name not in lost:
            assert (out / "cells" / name / "cell.json").stat().st_mtime_ns == stamp


def test_dead_worker_and_bad_address_are_named(tmp_path, monkeypatch):
    cfg = _sweep_config()
    victim = plan_cells(cfg)[1].name
    monkeypatch.setenv("RECLOOP_FAULT_CELL", victim)
    with pytest.raises(ResultsError, match=rf"{victim}: its worker process died"):
        run_experiment(cfg, tmp_path / "run", workers=2, progress=False, figures=False)
    # cells that finished before the crash are kept, and the manifest says which are missing
    monkeypatch.delenv("RECLOOP_FAULT_CELL")
    kept = list((tmp_path / "run" / "cells").glob("*/cell.json"))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and victim in manifest["missing_cells"]
    assert len(manifest["missing_cells"]) == len(plan_cells(cfg)) - len(kept)
    again = run_experiment(cfg, tmp_path / "run", workers=2, progress=False, figures=False)
    assert len(again.computed) == len(again.cells) - len(kept)
    with pytest.raises(ResultsError, match=r"cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:1'"):
        run_experiment(
            cfg, tmp_path / "other", progress=False, figures=False, dask_scheduler="tcp://127.0.0.1:1"
        )


def test_a_scheduler_that_stalls_or_answers_garbage_is_one_clear_error(monkeypatch):
    """An address that accepts TCP but is no Dask scheduler: a stalled handshake hits the
    deadline, a garbage answer's arbitrary error (a MemoryError) becomes the same message."""
    import time

    from simulator.engine import runner

    class Stalls:
        def __init__(self, address, timeout):
            time.sleep(5)

    class Garbage:
        def __init__(self, address, timeout):
            raise MemoryError("Unable to allocate 3.07 EiB")

    monkeypatch.setattr(runner, "DASK_CONNECT_TIMEOUT", 0.2)
    with pytest.raises(ResultsError, match=r"at 'tcp://h:1': no Dask handshake within 0 s"):
        runner._connect_dask(Stalls, "tcp://h:1")
    with pytest.raises(ResultsError, match=r"at 'tcp://h:2': MemoryError: Unable to allocate"):
        runner._connect_dask(Garbage, "tcp://h:2")
