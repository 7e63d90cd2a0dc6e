"""Run every (policy, seed) cell of an experiment into a resumable results folder.

Layout (DESIGN.md §7)::

    results/<experiment>/<run>/
        manifest.json        resolved config, seeds, cells, package versions, git commit, status
        metrics.parquet      round, time, policy, seed, metric, value  (all cells)
        users.parquet        sampled per-user genre trajectories      (all cells)
        exposure.parquet     per-item exposure, first and last window (Lorenz curves)
        logs/policy=<p>/seed=<s>/part-*.parquet   the impression log
        cells/<p>__seed<s>/  one finished cell: its own metrics/users/exposure + cell.json
        figures/             PNG and SVG
        report.md

A cell is finished when ``cells/<name>/cell.json`` exists: cells are computed in a hidden
staging folder and renamed into place, so an interrupted run leaves only finished cells behind and
a rerun computes only the missing ones. A cell records the config it was computed with; resuming
with a config that would change it is refused rather than mixing results.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.config import ExperimentConfig, parse_config
from simulator.errors import ResultsError
from simulator.io import atomic_write_json, write_parquet

PACKAGES = (
    "recloop",
    "numpy",
    "scipy",
    "mesa",
    "simpy",
    "pyarrow",
    "pandas",
    "pydantic",
    "matplotlib",
    "seaborn",
)


@dataclass(frozen=True, order=True)
class Cell:
    """One (policy label, seed) simulation."""

    policy: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.policy}__seed{self.seed}"


def cell_config(config: ExperimentConfig, policy: str) -> dict[str, Any]:
    """The part of the config that determines a cell's results (not other policies or seeds)."""
    d = config.model_dump(mode="json")
    for key in ("seeds", "description", "name"):
        d["experiment"].pop(key, None)
    d["policies"] = {policy: d["policies"][policy]}
    d["interventions"] = [iv for iv in d["interventions"] if iv["policy"] == policy]
    return d


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "<root>"]


# ---------------------------------------------------------------------------- one cell
def run_cell(config_data: dict[str, Any], policy: str, seed: int, run_dir: str) -> str:
    """Simulate one cell and move its outputs into place; returns the cell name.

    Runs in a worker process (spawned), so it takes plain data and re-validates the config.
    """
    from threadpoolctl import threadpool_limits

    from simulator.engine.model import RecloopModel

    config = parse_config(config_data)
    cell = Cell(policy, seed)
    root = Path(run_dir)
    staging = root / "cells" / f".tmp-{cell.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    with threadpool_limits(limits=_blas_threads()):
        model = RecloopModel(config, policy, seed, log_dir=staging / "logs")
        model.run()
    _write_cell_tables(model, staging)

    logs_final = root / "logs" / f"policy={policy}" / f"seed={seed}"
    if logs_final.exists():  # stale parts of an earlier, interrupted attempt
        shutil.rmtree(logs_final)
    if (staging / "logs").exists():
        logs_final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / "logs", logs_final)
    info = {
        "policy": policy,
        "seed": seed,
        "config": cell_config(config, policy),
        "log_rows": model.log.rows_written if model.log is not None else 0,
        "finished": datetime.now(UTC).isoformat(),
    }
    atomic_write_json(staging / "cell.json", info)
    final = root / "cells" / cell.name
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return cell.name


def _blas_threads() -> int:
    return int(os.environ.get("RECLOOP_BLAS_THREADS", "1"))


def _write_cell_tables(model: Any, folder: Path) -> None:
    policy, seed = model.policy_label, model.seed
    mv = model.datacollector.get_model_vars_dataframe()
    mv.index = np.arange(len(mv), dtype=np.int32)
    long = mv.reset_index(names="round").melt(id_vars="round", var_name="metric", value_name="value")
    long["time"] = long["round"].astype(np.float64) + 0.5
    long["policy"], long["seed"] = policy, np.int64(seed)
    long = long[["round", "time", "policy", "seed", "metric", "value"]]
    long["round"] = long["round"].astype(np.int32)
    long["value"] = long["value"].astype(np.float64)
    write_parquet(folder / "metrics.parquet", long)

    pop, tracked = model.population, model.tracker.tracked
    g = model.catalog.n_genres
    frames = []
    for snap in model.user_rows:
        s = tracked.size
        frames.append(
            pd.DataFrame(
                {
                    "round": np.int32(snap["round"]),
                    "time": np.float64(snap["time"]),
                    "user_id": np.repeat(tracked.astype(np.int32), g),
                    "kind": np.repeat(np.where(pop.alternating[tracked], "alternating", "stable"), g),
                    "genre_a": np.repeat(pop.genre_a[tracked], g),
                    "genre_b": np.repeat(pop.genre_b[tracked], g),
                    "genre": np.tile(np.arange(g, dtype=np.int16), s),
                    "taste": snap["taste"].ravel(),
                    "shown_share": snap["shown_share"].ravel(),
                    "consumed_share": snap["consumed_share"].ravel(),
                    # per-user values, repeated on each of the user's genre rows
                    "entropy_shown": np.repeat(snap["entropy_shown"], g),
                    "entropy_consumed": np.repeat(snap["entropy_consumed"], g),
                }
            )
        )
    users = pd.concat(frames, ignore_index=True)
    users.insert(2, "policy", policy)
    users.insert(3, "seed", np.int64(seed))
    write_parquet(folder / "users.parquet", users)

    n = model.catalog.n_items
    first = model.exposure_first if model.exposure_first is not None else model.tracker.exposure
    exposure = pd.DataFrame(
        {
            "policy": policy,
            "seed": np.int64(seed),
            "window": np.repeat(["first", "last"], n),
            "item_id": np.tile(np.arange(n, dtype=np.int32), 2),
            "exposure": np.concatenate([first, model.tracker.exposure]).astype(np.int64),
        }
    )
    write_parquet(folder / "exposure.parquet", exposure)


# ---------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    cells: list[Cell]
    computed: list[Cell]
    figures: list[Path]


class RunInterrupted(ResultsError):
    """The run stopped before every cell finished; finished cells are kept."""


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return res.stdout.strip() + ("-dirty" if dirty else "")


def cell_done(run_dir: Path, cell: Cell) -> bool:
    return (run_dir / "cells" / cell.name / "cell.json").is_file()


def check_resumable(run_dir: Path, config: ExperimentConfig, cells: list[Cell]) -> None:
    """Refuse to resume into a folder whose finished cells came from a different config.

    Raises
    ------
    ResultsError
        Naming the cell and the keys that differ.
    """
    for cell in cells:
        path = run_dir / "cells" / cell.name / "cell.json"
        if not path.is_file():
            continue
        try:
            saved = json.loads(path.read_text())["config"]
        except (OSError, ValueError, KeyError) as err:
            raise ResultsError(f"{path} is unreadable ({err}); delete that cell folder") from None
        changed = _diff_keys(saved, cell_config(config, cell.policy))
        if changed:
            raise ResultsError(
                f"{run_dir} already holds cell {cell.name} computed with a different config "
                f"(changed: {', '.join(changed[:6])}). Write to another folder with --out, "
                "or delete the old results."
            )


def run_experiment(
    config: ExperimentConfig,
    run_dir: Path,
    workers: int = 1,
    progress: bool = True,
    on_cell: Callable[[Cell], None] | None = None,
    figures: bool = True,
) -> RunResult:
    """Run (or resume) every cell, then merge tables and draw figures and the report.

    Parameters
    ----------
    config : ExperimentConfig
    run_dir : Path
        The results folder of this run.
    workers : int
        Processes for the cells (1 = in this process).
    progress : bool
        Show a tqdm bar over cells.
    figures : bool
        Draw the figures and the report (off in tests that only check tables).

    Raises
    ------
    ResultsError
        The folder holds cells of a different config.
    RunInterrupted
        On Ctrl-C or a kill of the pool; finished cells are kept and a rerun resumes.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    cells = [Cell(p, s) for s in config.experiment.seeds for p in config.policies]
    check_resumable(run_dir, config, cells)
    (run_dir / "cells").mkdir(parents=True, exist_ok=True)
    for stale in (run_dir / "cells").glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    todo = [c for c in cells if not cell_done(run_dir, c)]
    _write_manifest(run_dir, config, cells, status="running")

    data = config.model_dump(mode="json")
    bar = tqdm(
        total=len(cells),
        initial=len(cells) - len(todo),
        desc=config.experiment.name,
        unit="cell",
        disable=not progress,
    )
    try:
        if workers <= 1 or len(todo) <= 1:
            for cell in todo:
                bar.set_postfix_str(cell.name)
                run_cell(data, cell.policy, cell.seed, str(run_dir))
                bar.update()
                if on_cell:
                    on_cell(cell)
        else:
            _run_pool(data, todo, run_dir, workers, bar, on_cell)
    except KeyboardInterrupt:
        done = sum(cell_done(run_dir, c) for c in cells)
        raise RunInterrupted(
            f"interrupted: {done} of {len(cells)} cells are finished and kept in {run_dir}; "
            "rerun the same command to compute the rest"
        ) from None
    finally:
        bar.close()

    merge_cells(run_dir, cells)
    drawn: list[Path] = []
    if figures:
        from simulator.plotting import plot_run
        from simulator.report import write_report

        drawn = plot_run(run_dir)
        write_report(run_dir, figures=drawn)
    _write_manifest(run_dir, config, cells, status="complete")
    return RunResult(run_dir, cells, todo, drawn)


def _run_pool(data, todo, run_dir, workers, bar, on_cell) -> None:
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as pool:
        futures: dict[Future, Cell] = {
            pool.submit(run_cell, data, c.policy, c.seed, str(run_dir)): c for c in todo
        }
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    cell = futures[fut]
                    try:
                        fut.result()
                    except Exception as err:
                        raise ResultsError(f"cell {cell.name} failed: {err!r}") from err
                    bar.update()
                    if on_cell:
                        on_cell(cell)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def merge_cells(run_dir: Path, cells: list[Cell]) -> None:
    """Concatenate the cells' tables into the run-level Parquet files (atomically)."""
    for name in ("metrics", "users", "exposure"):
        frames = [pd.read_parquet(run_dir / "cells" / c.name / f"{name}.parquet") for c in cells]
        write_parquet(run_dir / f"{name}.parquet", pd.concat(frames, ignore_index=True))


def _write_manifest(run_dir: Path, config: ExperimentConfig, cells: list[Cell], status: str) -> None:
    atomic_write_json(
        run_dir / "manifest.json",
        {
            "status": status,
            "experiment": {
                "name": config.experiment.name,
                "description": config.experiment.description,
            },
            "config": config.model_dump(mode="json"),
            "seeds": list(config.experiment.seeds),
            "policies": list(config.policies),
            "cells": [c.name for c in cells],
            "window_days": config.metrics.window_days,
            "user_window_days": config.metrics.user_window_days,
            "versions": _versions(),
            "git_commit": _git_commit(),
            "written": datetime.now(UTC).isoformat(),
        },
    )
