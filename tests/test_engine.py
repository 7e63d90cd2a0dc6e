"""The engine end to end on a tiny world: determinism, common random numbers, resume, the story."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import tiny_config_data

from simulator.config import parse_config
from simulator.engine.model import RecloopModel
from simulator.engine.runner import run_experiment
from simulator.logs.impressions import LOG_SCHEMA
from simulator.metrics.tracker import METRIC_NAMES


def _metrics(cfg, policy, seed=0):
    m = RecloopModel(cfg, policy, seed)
    m.run()
    return m.datacollector.get_model_vars_dataframe()


def test_same_seed_identical_and_streams_independent_of_other_policies():
    cfg = parse_config(tiny_config_data())
    a = _metrics(cfg, "greedy")
    b = _metrics(cfg, "greedy")
    pd.testing.assert_frame_equal(a, b)
    # adding a policy to the config changes nothing for greedy
    more = parse_config(
        tiny_config_data(policies={"greedy": {"factors": 8}, "random": {}, "popularity": {}, "oracle": {}})
    )
    pd.testing.assert_frame_equal(a, _metrics(more, "greedy"))
    # a different seed gives a different run
    assert not np.allclose(a["gini"], _metrics(cfg, "greedy", seed=1)["gini"])


def test_common_random_numbers_same_sessions_for_every_policy():
    cfg = parse_config(tiny_config_data())
    n = {p: _metrics(cfg, p)["n_active"].to_numpy() for p in ("greedy", "random")}
    np.testing.assert_array_equal(n["greedy"], n["random"])


def test_every_metric_reported_and_in_range():
    cfg = parse_config(tiny_config_data())
    df = _metrics(cfg, "greedy")
    assert list(df.columns) == list(METRIC_NAMES)
    for name in (
        "gini",
        "coverage",
        "cdi",
        "long_tail_share",
        "entropy_shown",
        "ctr",
        "alt_genre_loss",
        "homogenization",
    ):
        v = df[name].dropna()
        assert len(v) == len(df) or name in ("homogenization",), name
        assert ((v >= 0) & (v <= 1)).all(), name
    assert (df["regret"] >= -1e-6).all()  # oracle utility is an upper bound


def test_oracle_has_zero_regret():
    cfg = parse_config(tiny_config_data(policies={"oracle": {}}))
    # float32 relevance: GEMM and pairwise paths agree to ~1e-7 per slot
    np.testing.assert_allclose(_metrics(cfg, "oracle")["regret"], 0.0, atol=1e-6)


def test_run_writes_results_layout_and_log_schema(tmp_path):
    cfg = parse_config(tiny_config_data(simulation={"log_fraction": 0.5}))
    res = run_experiment(cfg, tmp_path / "run", workers=1, progress=False)  # with figures
    root = res.run_dir
    for name in ("manifest.json", "metrics.parquet", "users.parquet", "exposure.parquet", "report.md"):
        assert (root / name).is_file(), name
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["seeds"] == [0]
    assert manifest["versions"]["numpy"] == np.__version__
    assert list((root / "figures").glob("*.png")) and list((root / "figures").glob("*.svg"))
    parts = sorted((root / "logs" / "policy=greedy" / "seed=0").glob("part-*.parquet"))
    table = pq.read_table(parts[0])
    assert table.schema.equals(LOG_SCHEMA)
    log = table.to_pandas()
    # log_fraction samples whole sessions: each logged session has all K positions
    per_session = log.groupby("session_id")["position"].nunique()
    assert (per_session == cfg.simulation.slate_size).all()
    metrics = pd.read_parquet(root / "metrics.parquet")
    n_active_total = metrics.query("metric == 'n_active' and policy == 'greedy'")["value"].sum()
    share = per_session.size / n_active_total
    assert 0.4 < share < 0.6  # Bernoulli(0.5) over ~2.4k sessions
    assert (log["pscore"] == 1).all() and log["click"].dtype == bool
    assert list(metrics.columns) == ["round", "time", "policy", "seed", "metric", "value"]


def test_resume_computes_only_missing_cells(tmp_path):
    cfg = parse_config(tiny_config_data(experiment={"n_rounds": 5}))
    out = tmp_path / "run"
    run_experiment(cfg, out, workers=1, progress=False, figures=False)
    stamp = (out / "cells" / "greedy__seed0" / "cell.json").stat().st_mtime_ns
    before = pd.read_parquet(out / "metrics.parquet")
    # a lost cell (as after an interruption) is recomputed; the finished one is not
    import shutil

    shutil.rmtree(out / "cells" / "random__seed0")
    res = run_experiment(cfg, out, workers=1, progress=False, figures=False)
    assert [c.name for c in res.computed] == ["random__seed0"]
    assert (out / "cells" / "greedy__seed0" / "cell.json").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(before, pd.read_parquet(out / "metrics.parquet"))


def test_resume_refuses_a_different_config(tmp_path):
    from simulator.errors import ResultsError

    cfg = parse_config(tiny_config_data(experiment={"n_rounds": 3}, policies={"random": {}}))
    run_experiment(cfg, tmp_path / "r", workers=1, progress=False, figures=False)
    other = parse_config(tiny_config_data(experiment={"n_rounds": 4}, policies={"random": {}}))
    with pytest.raises(ResultsError, match=r"different config \(changed: experiment\.n_rounds\)"):
        run_experiment(other, tmp_path / "r", workers=1, progress=False, figures=False)


def test_resume_warns_about_cells_from_other_code(tmp_path):
    import json
    import warnings

    cfg = parse_config(tiny_config_data(experiment={"n_rounds": 3}, policies={"random": {}}))
    out = tmp_path / "r"
    run_experiment(cfg, out, workers=1, progress=False, figures=False)
    info_path = out / "cells" / "random__seed0" / "cell.json"
    # same code: a resume is silent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_experiment(cfg, out, workers=1, progress=False, figures=False)
    # a cell computed by other code is kept, and named in a warning and counted in the manifest
    info = json.loads(info_path.read_text())
    info["git_commit"] = "0" * 40
    info_path.write_text(json.dumps(info))
    other = r"1 finished cell\(s\) \(e\.g\. random__seed0\) were computed by other code"
    with pytest.warns(UserWarning, match=other):
        res = run_experiment(cfg, out, workers=1, progress=False, figures=False)
    assert res.computed == []
    counts = json.loads((out / "manifest.json").read_text())["cells_by_git_commit"]
    assert counts == {"0" * 40: 1}


def test_identical_in_another_process(tmp_path):
    cfg_data = tiny_config_data(experiment={"n_rounds": 6})
    cfg = parse_config(cfg_data)
    here = _metrics(cfg, "greedy")
    code = (
        "import json,sys; from simulator.config import parse_config;"
        "from simulator.engine.model import RecloopModel;"
        "m=RecloopModel(parse_config(json.loads(sys.argv[1])),'greedy',0); m.run();"
        "print(json.dumps(m.datacollector.get_model_vars_dataframe().to_numpy().tolist()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cfg_data)],
        capture_output=True,
        text=True,
        check=True,
        # same BLAS thread count as this process: a BLAS reduction may round differently otherwise
        env={
            "PYTHONHASHSEED": "123",
            "PATH": "",
            **{k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")},
        },
    )
    there = np.array(json.loads(out.stdout), dtype=np.float64)  # json floats round-trip exactly
    np.testing.assert_array_equal(here.to_numpy(), there)


def test_intervention_changes_a_parameter_on_its_day():
    cfg = parse_config(
        tiny_config_data(
            experiment={"n_rounds": 6},
            policies={"greedy": {"factors": 8}},
            interventions=[{"day": 3, "policy": "greedy", "param": "alpha", "value": 1.0}],
        )
    )
    m = RecloopModel(cfg, "greedy", 0)
    m.run(3)
    assert m.policy.alpha == 20.0
    m.run(1)
    assert m.policy.alpha == 1.0


def test_users_table_is_consistent(tmp_path):
    cfg = parse_config(tiny_config_data(experiment={"n_rounds": 6}, policies={"greedy": {"factors": 8}}))
    res = run_experiment(cfg, tmp_path / "run", workers=1, progress=False, figures=False)
    users = pd.read_parquet(res.run_dir / "users.parquet")
    n_genres = cfg.catalog.n_genres
    assert len(users) == 6 * cfg.metrics.n_tracked_users * n_genres
    per_user = users.groupby(["round", "user_id"])
    shown = per_user["shown_share"].sum(min_count=1).dropna()
    np.testing.assert_allclose(shown, 1.0, rtol=1e-5)  # shares of a user's window sum to 1
    np.testing.assert_allclose(per_user["taste"].sum(), 1.0, rtol=1e-5)
    ent = users["entropy_shown"].dropna()
    assert ((ent >= 0) & (ent <= 1)).all()
    alt = users[users["kind"] == "alternating"]
    assert len(alt) and (alt["genre_a"] >= 0).all() and (alt["genre_a"] != alt["genre_b"]).all()
    assert (users.loc[users["kind"] == "stable", "genre_a"] == -1).all()


def test_partly_deleted_cell_is_recomputed_and_a_finished_run_needs_no_executor(tmp_path):
    import json

    cfg = parse_config(
        tiny_config_data(experiment={"n_rounds": 3}, policies={"random": {}, "popularity": {}})
    )
    out = tmp_path / "r"
    run_experiment(cfg, out, workers=1, progress=False, figures=False)
    before = pd.read_parquet(out / "metrics.parquet")
    (out / "cells" / "random__seed0" / "users.parquet").unlink()
    res = run_experiment(cfg, out, workers=1, progress=False, figures=False)
    assert [c.name for c in res.computed] == ["random__seed0"]
    pd.testing.assert_frame_equal(before, pd.read_parquet(out / "metrics.parquet"))
    # nothing left to compute: an unreachable scheduler is never contacted, the run stays complete
    res = run_experiment(
        cfg, out, workers=1, progress=False, figures=False, dask_scheduler="tcp://127.0.0.1:1"
    )
    assert res.computed == []
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_cell_json_without_a_config_is_reported(tmp_path):
    from simulator.errors import ResultsError

    cfg = parse_config(tiny_config_data(experiment={"n_rounds": 3}, policies={"random": {}}))
    out = tmp_path / "r"
    run_experiment(cfg, out, workers=1, progress=False, figures=False)
    (out / "cells" / "random__seed0" / "cell.json").write_text("[1, 2]")
    with pytest.raises(ResultsError, match=r"cell\.json holds no cell config; delete that cell folder"):
        run_experiment(cfg, out, workers=1, progress=False, figures=False)


def test_resume_compares_resolved_policy_hyperparameters(tmp_path):
    """Writing a policy's default out changes nothing; a default that changed in the code (here:
    the saved cell has another value of a parameter the config never wrote) is a changed key."""
    import json

    from simulator.errors import ResultsError

    cfg = parse_config(
        tiny_config_data(experiment={"n_rounds": 3}, policies={"eps": {"type": "epsilon_greedy"}})
    )
    out = tmp_path / "r"
    run_experiment(cfg, out, workers=1, progress=False, figures=False)
    explicit = parse_config(
        tiny_config_data(
            experiment={"n_rounds": 3},
            policies={"eps": {"type": "epsilon_greedy", "epsilon": 0.05, "base_params": {"iterations": 10}}},
        )
    )
    assert run_experiment(explicit, out, workers=1, progress=False, figures=False).computed == []
    path = out / "cells" / "eps__seed0" / "cell.json"
    info = json.loads(path.read_text())
    assert info["config"]["policies"]["eps"]["base_params"]["cg_steps"] == 3  # stored resolved
    info["config"]["policies"]["eps"]["base_params"]["cg_steps"] = 4  # as if the default moved
    path.write_text(json.dumps(info))
    with pytest.raises(ResultsError, match=r"changed: policies\.eps\.base_params\.cg_steps"):
        run_experiment(cfg, out, workers=1, progress=False, figures=False)


def test_resume_reads_old_cells_by_todays_schema(tmp_path):
    """A cell saved before a config key existed (here: history.sampler removed from its saved
    config) resumes, the new key taking its default; a removed key, or a saved value that differs
    from the current one, is still refused and named."""
    import json

    from simulator.errors import ResultsError

    cfg = parse_config(tiny_config_data(experiment={"n_rounds": 3}, policies={"random": {}}))
    out = tmp_path / "r"
    run_experiment(cfg, out, workers=1, progress=False, figures=False)
    path = out / "cells" / "random__seed0" / "cell.json"
    info = json.loads(path.read_text())
    del info["config"]["history"]["sampler"]  # as written by code before the key existed
    path.write_text(json.dumps(info))
    assert run_experiment(cfg, out, workers=1, progress=False, figures=False).computed == []
    info["config"]["history"]["retired_key"] = 1  # a key today's schema no longer has
    path.write_text(json.dumps(info))
    with pytest.raises(ResultsError, match=r"changed: history\.retired_key, history\.sampler"):
        run_experiment(cfg, out, workers=1, progress=False, figures=False)
    del info["config"]["history"]["retired_key"]
    info["config"]["history"]["days"] += 1  # a value that differs: refused, named
    path.write_text(json.dumps(info))
    with pytest.raises(ResultsError, match=r"changed: history\.days\)"):
        run_experiment(cfg, out, workers=1, progress=False, figures=False)
