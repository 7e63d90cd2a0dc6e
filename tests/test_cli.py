"""The ``recloop`` command as a user meets it: exit codes, messages, nothing lost on interrupt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_config_data

RECLOOP = [sys.executable, "-m", "simulator.cli"]


def _write_config(path: Path, data: dict) -> Path:
    lines = []

    def emit(prefix: str, table: dict) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {json.dumps(v)}")
        for k, v in table.items():
            if isinstance(v, dict):
                emit(f"{prefix}.{k}" if prefix else k, v)

    emit("", data)
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(*args, cwd=None, timeout=300):
    return subprocess.run([*RECLOOP, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"users": {"n_users": -3}}, "users.n_users: Input should be greater than 0; got -3"),
        ({"users": {"n_userz": 3}}, "users.n_userz: unknown key (did you mean 'n_users'?)"),
        ({"click_model": {"eta": -0.5}}, "click_model.eta: Input should be greater than or equal to 0"),
        ({"simulation": {"slate_size": 999}}, "slate_size must be <= catalog.n_items (300); got 999"),
        ({"policies": {"gredy": {}}}, "unknown policy 'gredy' (did you mean 'greedy'?)"),
    ],
)
def test_bad_config_exits_2_and_writes_nothing(tmp_path, edit, message):
    cfg = _write_config(tmp_path / "c.toml", tiny_config_data(**edit))
    out = tmp_path / "out"
    res = _run("run", str(cfg), "--out", str(out), "--quiet")
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert not out.exists()


def test_missing_and_malformed_files_exit_2(tmp_path):
    res = _run("run", str(tmp_path / "nope.toml"))
    assert res.returncode == 2 and "config file not found" in res.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment\n")
    res = _run("run", str(bad))
    assert res.returncode == 2 and "malformed TOML" in res.stderr
    res = _run("run", str(bad), "--set", "novalue")
    assert res.returncode == 2
    res = _run("run", str(tmp_path))
    assert res.returncode == 2 and "config file expected, got a folder" in res.stderr
    good = _write_config(tmp_path / "c.toml", tiny_config_data())
    res = _run("run", str(good), "--seeds", "0,a", "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "'a' is not an integer" in res.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_keeps_finished_cells_and_rerun_resumes(tmp_path, sig, code):
    # 12 cells of ~1 s each: the signal lands after the first while ~11 s of work remain
    data = tiny_config_data(
        experiment={"n_rounds": 30, "seeds": list(range(12))},
        users={"n_users": 3000},
        catalog={"n_items": 1500, "n_artists": 150},
        policies={"random": {}},
    )
    cfg = _write_config(tmp_path / "c.toml", data)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*RECLOOP, "run", str(cfg), "--out", str(out), "--quiet", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job (`cmd &`, CI runners) inherits SIGINT ignored; Python then
        # installs no KeyboardInterrupt handler: give the child the default disposition back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "cells").glob("*/cell.json"))) < 1:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*/cell.json")}
    assert proc.returncode == code, err  # 0 would mean the run finished before the interrupt
    assert "rerun the same command" in err
    assert 1 <= len(finished) < 12
    manifest = json.loads((out / "manifest.json").read_text())  # says what is kept
    assert manifest["status"] == "interrupted"
    assert len(manifest["missing_cells"]) == 12 - len(finished)
    assert sum(manifest["cells_by_git_commit"].values()) == len(finished)
    res = _run("run", str(cfg), "--out", str(out), "--quiet", "--workers", "1")
    assert res.returncode == 0, res.stderr
    assert f"({12 - len(finished)} computed, {len(finished)} already finished)" in res.stdout
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    for name, stamp in finished.items():  # finished cells were not recomputed
        assert (out / "cells" / name / "cell.json").stat().st_mtime_ns == stamp
    assert not list((out / "cells").glob(".tmp-*"))


def test_kill_keeps_finished_cells(tmp_path):
    # 12 cells of ~1 s each: the signal lands after the first while ~11 s of work remain
    data = tiny_config_data(
        experiment={"n_rounds": 30, "seeds": list(range(12))},
        users={"n_users": 3000},
        catalog={"n_items": 1500, "n_artists": 150},
        policies={"random": {}},
    )
    cfg = _write_config(tmp_path / "c.toml", data)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*RECLOOP, "run", str(cfg), "--out", str(out), "--quiet", "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "cells").glob("*/cell.json"))) < 1:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    done = list((out / "cells").glob("*/cell.json"))
    assert done
    for p in done:  # every cell that looks finished is complete and readable
        json.loads(p.read_text())
        assert (p.parent / "metrics.parquet").is_file()
    res = _run("run", str(cfg), "--out", str(out), "--quiet", "--workers", "1")
    assert res.returncode == 0, res.stderr


def test_policies_and_validate_commands(tmp_path):
    res = _run("policies")
    assert res.returncode == 0 and "greedy" in res.stdout and "factors=32" in res.stdout
    lines = [line for line in res.stdout.splitlines() if len(line.split()) > 1]  # with parameters
    starts = {len(line) - len(line.split(maxsplit=1)[1]) for line in lines}  # one column
    assert len(starts) == 1, res.stdout
    cfg = _write_config(tmp_path / "c.toml", tiny_config_data())
    res = _run("validate", str(cfg), "--set", "users.n_users=123")
    assert res.returncode == 0 and json.loads(res.stdout)["users"]["n_users"] == 123


def _with_intervention(path: Path, policy: str, param: str, value, day: int = 2) -> Path:
    text = path.read_text()
    block = f'[[interventions]]\nday = {day}\npolicy = "{policy}"\nparam = "{param}"\n'
    block += f"value = {json.dumps(value)}\n"
    path.write_text(text + "\n" + block)
    return path


EPS = {"eps": {"type": "epsilon_greedy", "epsilon": 0.1}, "random": {}}


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        (
            "epsilonn",
            0.0,
            "interventions[0]: policy 'eps' has no parameter 'epsilonn' (did you mean 'epsilon'?)",
        ),
        ("epsilon", 1.5, "policies.eps.epsilon: Input should be less than or equal to 1; got 1.5"),
    ],
)
def test_bad_intervention_exits_2_before_any_cell(tmp_path, param, value, message):
    cfg = _with_intervention(
        _write_config(tmp_path / "c.toml", tiny_config_data(policies=EPS)), "eps", param, value
    )
    out = tmp_path / "out"
    res = _run("run", str(cfg), "--out", str(out), "--quiet", "--workers", "1")
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert not out.exists()  # the random cell was not computed first


def test_policies_subset_drops_the_left_out_policies_interventions(tmp_path):
    cfg = _with_intervention(
        _write_config(tmp_path / "c.toml", tiny_config_data(policies=EPS)), "eps", "epsilon", 0.0
    )
    res = _run(
        "run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--workers", "1", "--policies", "random"
    )
    assert res.returncode == 0, res.stderr
    assert "1 cells (1 computed" in res.stdout
    # an intervention beyond the last day is a warning (a shrunk config keeps it), as a plain line
    late = _with_intervention(
        _write_config(tmp_path / "d.toml", tiny_config_data(policies=EPS)), "eps", "epsilon", 0.0, 99
    )
    res = _run("validate", str(late))
    assert res.returncode == 0, res.stderr
    assert "warning: interventions[0] (day 99, eps.epsilon) never happens" in res.stderr
    assert "UserWarning" not in res.stderr


def test_out_that_is_a_file_exits_2(tmp_path):
    cfg = _write_config(tmp_path / "c.toml", tiny_config_data())
    (tmp_path / "afile").write_text("keep me")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        res = _run("run", str(cfg), "--out", str(out), "--quiet")
        assert res.returncode == 2, res.stderr
        assert "it or a parent is a file, not a folder" in res.stderr
    assert (tmp_path / "afile").read_text() == "keep me"


def test_subset_runs_keep_the_folder_whole(tmp_path):
    """--policies computes a subset and --seeds replaces the seeds; the run-level tables cover
    every finished cell of the folder, seeds an earlier run added stay, the manifest says
    "partial" (with missing_cells) until all are finished, and nothing is recomputed."""
    import pandas as pd

    cfg = _write_config(tmp_path / "c.toml", tiny_config_data(experiment={"seeds": [0, 1]}))
    out = tmp_path / "out"
    base = ("run", str(cfg), "--out", str(out), "--quiet", "--workers", "1")
    res = _run(*base, "--policies", "random", "--seeds", "1")
    assert res.returncode == 0, res.stderr
    assert "1 cells (1 computed" in res.stdout and "partial: 1 cell(s)" in res.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "partial" and manifest["missing_cells"] == ["greedy__seed1"]
    assert set(pd.read_parquet(out / "metrics.parquet")["seed"]) == {1}
    assert "**Partial run**: 1 of 2 cells" in (out / "report.md").read_text()
    res = _run(*base)  # the config's cells
    assert res.returncode == 0, res.stderr
    assert "4 cells (3 computed, 1 already finished)" in res.stdout
    full = pd.read_parquet(out / "metrics.parquet")
    res = _run(*base, "--policies", "greedy", "--seeds", "7")  # seed 7 extends the folder
    assert res.returncode == 0, res.stderr
    assert "5 cells (1 computed, 4 already finished)" in res.stdout
    assert "compute them with --seeds 7 --policies random" in res.stdout
    res = _run(*base)  # a later plain run keeps seed 7 (nothing to compute)
    assert res.returncode == 0, res.stderr
    assert "5 cells (0 computed, 5 already finished)" in res.stdout
    merged = pd.read_parquet(out / "metrics.parquet")
    assert set(merged["seed"]) == {0, 1, 7} and len(merged) > len(full)
    key = ["policy", "seed", "round"]
    pd.testing.assert_frame_equal(  # the first four cells' rows are unchanged
        merged[merged["seed"] != 7].sort_values(key).reset_index(drop=True),
        full.sort_values(key).reset_index(drop=True),
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seeds"] == [0, 1, 7] and manifest["missing_cells"] == ["random__seed7"]
    report = (out / "report.md").read_text()
    assert "random__seed7" in report  # the report names what is missing, from this manifest
    res = _run(*base, "--seeds", "-1")  # a bad seed: exit 2 before anything runs, naming the key
    assert res.returncode == 2 and "experiment.seeds" in res.stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "partial"


def test_results_never_land_outside_a_results_folder(tmp_path):
    """`..` as a run or experiment name, an unrelated non-empty --out (e.g. `.` in a source tree)
    and an --out the system will not create are refused before anything runs, exit code 2."""
    cfg = _write_config(tmp_path / "c.toml", tiny_config_data(policies={"random": {}}))
    unrelated = tmp_path / "src"
    unrelated.mkdir()
    (unrelated / "keep.py").write_text("x = 1\n")
    cases = [
        (["--run", ".."], "--run: a folder name"),
        (["--set", "experiment.name=.."], "experiment.name: String should match pattern"),
        (["--out", str(unrelated)], "it is a folder with other files and no recloop results"),
        (["--out", "/proc/recloop-no"], "cannot write results to /proc/recloop-no"),
    ]
    for args, message in cases:
        res = _run("run", str(cfg), "--quiet", *args, cwd=tmp_path)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
    assert sorted(p.name for p in unrelated.iterdir()) == ["keep.py"]
    assert not (tmp_path / "results").exists()


def test_an_error_an_override_caused_says_overrides_were_applied(tmp_path):
    cfg = _write_config(tmp_path / "c.toml", tiny_config_data())
    res = _run("validate", str(cfg), "--set", "users.n_users=-5")
    assert res.returncode == 2
    assert f"invalid config {cfg} with overrides (users.n_users=-5):" in res.stderr
    assert "users.n_users: Input should be greater than 0; got -5" in res.stderr
