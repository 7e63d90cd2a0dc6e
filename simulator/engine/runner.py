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

A cell is finished when ``cells/<name>/`` holds its ``cell.json`` and tables (and its log
partition exists, when it logged rows): cells are computed in a hidden staging folder and renamed
into place, so an interrupted run leaves only finished cells behind and a rerun computes only the
missing ones (a partly deleted cell counts as missing).

A cell records the config it was computed with, its policy's hyperparameters resolved; resuming
with a config that would change it is refused rather than mixing results (the saved config is
read by today's schema: a key added since takes its default). A cell also records
the code version (git commit) that computed it; resuming with other code is allowed (most
commits do not change results) but warned about, and the manifest counts the cells per code
version.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import platform
import shutil
import subprocess
import threading
import warnings
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
from pydantic import ValidationError

from simulator.config import ExperimentConfig, parse_config, resolve_point
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
    """One simulation: a policy label, a seed and (in a sweep) a point of swept parameters."""

    policy: str
    seed: int
    point: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        parts = [self.policy] + [f"{k}={_slug(v)}" for k, v in self.point] + [f"seed{self.seed}"]
        return "__".join(parts)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.point)


def _slug(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return "".join(c if c.isalnum() or c in "._-+" else "-" for c in text)


def plan_cells(config: ExperimentConfig) -> list[Cell]:
    """Every cell of the experiment: sweep points x policies x seeds, without duplicates.

    A swept key of another policy (``policies.<other>.<param>``) does not vary this policy's
    cells, so each policy is computed only for the points that change it.
    """
    points = config.sweep.points() if (config.sweep.grid or config.sweep.zip) else [()]
    cells: list[Cell] = []
    seen: set[Cell] = set()
    for point in points:
        for seed in config.experiment.seeds:
            for policy in config.policies:
                own = tuple(
                    (k, v) for k, v in point if not (k.startswith("policies.") and k.split(".")[1] != policy)
                )
                cell = Cell(policy, seed, own)
                if cell not in seen:
                    seen.add(cell)
                    cells.append(cell)
    return cells


def cell_experiment(config: ExperimentConfig, cell: Cell) -> ExperimentConfig:
    """The resolved config a cell runs with (the sweep point applied)."""
    return resolve_point(config, cell.point) if cell.point else config


def cell_config(config: ExperimentConfig, policy: str) -> dict[str, Any]:
    """The part of the config that determines a cell's results (not other policies or seeds).

    The policy's hyperparameters are resolved (defaults included), so that writing a default
    out changes nothing, and a default changed in the code shows as a changed key on resume.
    """
    d = config.model_dump(mode="json")
    for key in ("seeds", "description", "name"):
        d["experiment"].pop(key, None)
    d["policies"] = {policy: d["policies"][policy]}
    d["interventions"] = [iv for iv in d["interventions"] if iv["policy"] == policy]
    d.pop("sweep", None)
    return _resolved_policies(d)


def _resolved_policies(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with every policy spec replaced by all its hyperparameters (JSON values)."""
    if not isinstance(d.get("policies"), dict):
        return d
    return {**d, "policies": {label: _resolved_spec(spec) for label, spec in d["policies"].items()}}


def _resolved_spec(spec: Any) -> Any:
    """``{"type": ..., **every hyperparameter}``, a wrapper's ``base_params`` resolved likewise.
    A spec the current code cannot build is returned as written (then compared as written)."""
    from simulator.policies import make_policy

    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        return spec
    params = {k: v for k, v in spec.items() if k != "type"}
    try:
        policy = make_policy(spec["type"], "resolve", **params)
    except Exception:
        return spec
    full = json.loads(json.dumps(policy.params(), default=str))
    if isinstance(full.get("base"), str) and isinstance(full.get("base_params") or {}, dict):
        base = _resolved_spec({"type": full["base"], **(full["base_params"] or {})})
        if isinstance(base, dict):
            full["base_params"] = {k: v for k, v in base.items() if k != "type"}
    return {"type": spec["type"], **full}


def _read_by_todays_schema(saved: Any, config: ExperimentConfig, policy: str) -> Any:
    """A finished cell's saved config as today's code reads it, to compare with the current one.

    A key added to the schema since the cell ran takes its default (a new key's default keeps
    the old behaviour), and policy hyperparameters are resolved with today's defaults. A saved
    config today's schema rejects (a removed or renamed key) is compared as written, so its
    differences are reported.
    """
    if not isinstance(saved, dict) or not isinstance(saved.get("experiment"), dict):
        return saved
    data = copy.deepcopy(saved)
    data["experiment"].setdefault("name", config.experiment.name)  # not part of a cell's config
    data["experiment"].setdefault("seeds", [0])
    try:
        return cell_config(ExperimentConfig.model_validate(data), policy)
    except (ValidationError, KeyError, ValueError):
        return _resolved_policies(saved)


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "<root>"]


# ---------------------------------------------------------------------------- one cell
def run_cell(
    config_data: dict[str, Any],
    policy: str,
    seed: int,
    run_dir: str,
    point: tuple[tuple[str, Any], ...] = (),
) -> str:
    """Simulate one cell and move its outputs into ``run_dir``; returns the cell name.

    Runs in a worker process (spawned), so it takes plain data and re-validates the config.
    ``config_data`` is the experiment config; ``point`` the cell's sweep point.
    """
    cell = Cell(policy, seed, tuple(point))
    root = Path(run_dir)
    staging = root / "cells" / f".tmp-{cell.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    _compute_cell(config_data, cell, staging)
    install_cell(root, cell, staging)
    return cell.name


def run_cell_to_bytes(
    config_data: dict[str, Any], policy: str, seed: int, point: tuple[tuple[str, Any], ...] = ()
) -> dict[str, bytes]:
    """Simulate one cell in a private temporary folder and return its files as bytes.

    For executors without a shared file system (a Dask cluster): the client writes the files.
    Keys are paths relative to the cell folder (``metrics.parquet``, ``logs/part-00000.parquet``).
    """
    import tempfile

    cell = Cell(policy, seed, tuple(point))
    with tempfile.TemporaryDirectory(prefix="recloop-cell-") as tmp:
        folder = Path(tmp)
        _compute_cell(config_data, cell, folder)
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _compute_cell(config_data: dict[str, Any], cell: Cell, folder: Path) -> None:
    from threadpoolctl import threadpool_limits

    if os.environ.get("RECLOOP_FAULT_CELL") == cell.name:
        # Fault injection for the executor tests: this worker dies as if killed (no cleanup).
        os._exit(77)

    from simulator.engine.model import RecloopModel

    config = cell_experiment(parse_config(config_data), cell)
    from simulator.kernels import set_threads

    code = _process_code_version()  # before simulating: the version of the code this process loaded
    set_threads(_threads())
    # BLAS stays single-threaded: recloop's GEMMs are small blocks, BLAS worker threads spinning
    # between them starve the kernels' threads, and OpenBLAS rounds differently with 2 threads.
    with threadpool_limits(limits=1, user_api="blas"):
        model = RecloopModel(config, cell.policy, cell.seed, log_dir=folder / "logs")
        model.run()
    _write_cell_tables(model, folder, cell)
    info = {
        "policy": cell.policy,
        "seed": cell.seed,
        "point": [[k, v] for k, v in cell.point],
        "config": cell_config(config, cell.policy),
        "log_rows": model.log.rows_written if model.log is not None else 0,
        # exact or Monte-Carlo propensities (and the sample count) of this cell's logging policy
        "propensity": model.policy.propensity_info()
        if hasattr(model.policy, "propensity_info")
        else {"exact": True, "mc_samples": 0},
        "finished": datetime.now(UTC).isoformat(),
        "git_commit": code,
    }
    atomic_write_json(folder / "cell.json", info)


def install_cell(root: Path, cell: Cell, staging: Path) -> None:
    """Move a computed cell's staging folder into place (logs first, then the cell itself).

    The cell counts as finished only once ``cells/<name>`` (with its ``cell.json``) exists, so
    a crash between the two renames leaves stale log parts that the next attempt replaces.
    """
    logs_final = _log_dir(root, cell)
    if logs_final.exists():  # stale parts of an earlier, interrupted attempt
        shutil.rmtree(logs_final)
    if (staging / "logs").exists():
        logs_final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / "logs", logs_final)
    final = root / "cells" / cell.name
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def _threads() -> int:
    """Threads per cell of the compiled kernels and fused scoring (1: cells, not threads, use the
    cores). BLAS always runs one thread per cell."""
    return int(os.environ.get("RECLOOP_THREADS", "1"))


def _add_point(df: pd.DataFrame, cell: Cell) -> pd.DataFrame:
    for k, v in cell.point:
        df[k] = v
    return df


def _write_cell_tables(model: Any, folder: Path, cell: Cell) -> None:
    policy, seed = model.policy_label, model.seed
    mv = model.datacollector.get_model_vars_dataframe()
    mv.index = np.arange(len(mv), dtype=np.int32)
    long = mv.reset_index(names="round").melt(id_vars="round", var_name="metric", value_name="value")
    long["time"] = long["round"].astype(np.float64) + 0.5
    long["policy"], long["seed"] = policy, np.int64(seed)
    long = long[["round", "time", "policy", "seed", "metric", "value"]]
    long["round"] = long["round"].astype(np.int32)
    long["value"] = long["value"].astype(np.float64)
    write_parquet(folder / "metrics.parquet", _add_point(long, cell))

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
    write_parquet(folder / "users.parquet", _add_point(users, cell))

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
    write_parquet(folder / "exposure.parquet", _add_point(exposure, cell))


# ---------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    cells: list[Cell]  # the finished cells of the config in the folder (the merged ones)
    computed: list[Cell]  # computed by this call
    figures: list[Path]
    missing: list[Cell] = dataclasses.field(default_factory=list)  # not finished (a subset run)


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


@functools.cache
def _process_code_version() -> str | None:
    """The git commit when this process first asked: close to when it imported recloop's code, so
    a commit made while a long run goes on is not attributed to cells computed by older code."""
    return _git_commit()


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


#: The tables every finished cell folder holds besides its ``cell.json``.
CELL_TABLES = ("metrics.parquet", "users.parquet", "exposure.parquet")


def check_policies(config: ExperimentConfig) -> None:
    """Construct every policy, and apply every scheduled intervention to it, before anything runs.

    Raises
    ------
    ConfigError
        A bad hyperparameter; an intervention on a policy the config does not run, with an
        unknown parameter or an invalid value (the message names ``interventions[i]``). An
        intervention on a day the run never reaches is only warned about.
    """
    from simulator.errors import ConfigError
    from simulator.policies import make_policy, set_param

    built = {label: make_policy(spec.type, label, **spec.params) for label, spec in config.policies.items()}
    n_rounds = config.experiment.n_rounds
    for i, iv in enumerate(config.interventions):
        key = f"interventions[{i}]"
        if iv.policy not in built:
            raise ConfigError(f"{key}.policy: {iv.policy!r} is not among the policies run {sorted(built)}")
        if iv.day >= n_rounds:  # a warning, not an error: shrunk configs (workshops) keep them
            warnings.warn(
                f"{key} (day {iv.day}, {iv.policy}.{iv.param}) never happens: the run has "
                f"experiment.n_rounds = {n_rounds} days",
                stacklevel=2,
            )
        try:
            set_param(built[iv.policy], iv.param, iv.value, iv.policy)
        except ConfigError as err:
            raise ConfigError(f"{key}: {err}") from None


def cell_done(run_dir: Path, cell: Cell) -> bool:
    """A cell is finished when its ``cell.json`` and tables exist, and its log partition too when
    it logged rows. A partly deleted cell counts as missing and is recomputed."""
    folder = run_dir / "cells" / cell.name
    if not (folder / "cell.json").is_file() or not all((folder / t).is_file() for t in CELL_TABLES):
        return False
    try:
        info = json.loads((folder / "cell.json").read_text())
        logged = int(info.get("log_rows", 0)) > 0 if isinstance(info, dict) else False
    except (OSError, ValueError, TypeError):
        return True  # check_resumable reports an unreadable cell.json
    return not logged or any(_log_dir(run_dir, cell).glob("*.parquet"))


def _log_dir(root: Path, cell: Cell) -> Path:
    """The cell's partition of the run's impression log."""
    path = root / "logs" / f"policy={cell.policy}"
    for k, v in cell.point:
        path = path / f"{k}={_slug(v)}"
    return path / f"seed={cell.seed}"


def check_resumable(run_dir: Path, config: ExperimentConfig, cells: list[Cell]) -> dict[str, str | None]:
    """Refuse to resume into a folder whose finished cells came from a different config.

    Returns
    -------
    dict
        The code version (git commit, ``None`` if unknown) of every finished cell, by name.

    Raises
    ------
    ResultsError
        Naming the cell and the keys that differ.
    """
    versions: dict[str, str | None] = {}
    for cell in cells:
        path = run_dir / "cells" / cell.name / "cell.json"
        if not path.is_file():
            continue
        try:
            info = json.loads(path.read_text())
            saved = info["config"]
        except (OSError, ValueError) as err:
            raise ResultsError(f"{path} is unreadable ({err}); delete that cell folder") from None
        except (KeyError, TypeError):
            raise ResultsError(f"{path} holds no cell config; delete that cell folder") from None
        changed = _diff_keys(
            _read_by_todays_schema(saved, config, cell.policy),
            cell_config(cell_experiment(config, cell), cell.policy),
        )
        if changed:
            raise ResultsError(
                f"{run_dir} already holds cell {cell.name} computed with a different config "
                f"(changed: {', '.join(changed[:6])}"
                f"{f' and {len(changed) - 6} more' if len(changed) > 6 else ''}). "
                "Write to another folder with --out, "
                "or delete the old results."
            )
        versions[cell.name] = info.get("git_commit")
    return versions


def _warn_other_code(run_dir: Path, versions: dict[str, str | None], current: str | None) -> None:
    """Warn when finished cells were computed by code other than the running one."""
    other = sorted(name for name, v in versions.items() if v != current)
    if other:
        seen = sorted({versions[n] or "unknown" for n in other})
        warnings.warn(
            f"{run_dir}: {len(other)} finished cell(s) (e.g. {', '.join(other[:3])}) were computed "
            f"by other code (git {', '.join(seen[:3])}; now {current or 'unknown'}). They are kept; if the "
            "change affects results, write to another folder with --out for a consistent set.",
            stacklevel=3,
        )


def run_experiment(
    config: ExperimentConfig,
    run_dir: Path,
    workers: int = 1,
    progress: bool = True,
    on_cell: Callable[[Cell], None] | None = None,
    figures: bool = True,
    dask_scheduler: str | None = None,
    only: Callable[[Cell], bool] | None = None,
) -> RunResult:
    """Run (or resume) every cell, then merge tables and draw figures and the report.

    Parameters
    ----------
    config : ExperimentConfig
    run_dir : Path
        The results folder of this run.
    workers : int
        Processes for the cells on this machine (1 = in this process).
    progress : bool
        Show a tqdm bar over cells.
    figures : bool
        Draw the figures and the report (off in tests that only check tables).
    dask_scheduler : str, optional
        Address of a running ``dask.distributed`` scheduler (``tcp://host:8786``). Cells then run
        on its workers, which return the cell's files to this process (no shared file system
        needed); a failed cell is retried once.
    only : callable, optional
        Compute only the cells it accepts (``--policies``). The run-level tables, figures and
        report still cover every finished cell in the folder — including the seeds an earlier
        run added (its manifest's ``seeds``) — and the manifest says ``"partial"``, with
        ``missing_cells``, until all of them are finished.

    Raises
    ------
    ResultsError
        The folder holds cells of a different config; the scheduler cannot be reached; or some
        cells failed (named in the message; every other finished cell is kept).
    RunInterrupted
        On Ctrl-C or a kill of the pool; finished cells are kept and a rerun resumes.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    check_policies(config)
    cells = plan_cells(config)
    # seeds an earlier run added to this folder (--seeds beyond the config's) stay part of it
    extra = [s for s in _folder_seeds(run_dir) if s not in config.experiment.seeds]
    folder = _with_seeds(config, [*config.experiment.seeds, *extra])
    folder_cells = plan_cells(folder)
    _warn_other_code(run_dir, check_resumable(run_dir, folder, folder_cells), _process_code_version())
    if run_dir.is_dir() and not ((run_dir / "manifest.json").exists() or (run_dir / "cells").is_dir()):
        if any(run_dir.iterdir()):  # e.g. --out . in a source tree: results would mix in
            raise ResultsError(
                f"cannot write results to {run_dir}: it is a folder with other files and no "
                "recloop results (no manifest.json); choose a new or empty folder"
            )
    try:
        (run_dir / "cells").mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ResultsError(
            f"cannot write results to {run_dir}: it or a parent is a file, not a folder"
        ) from None
    except OSError as err:  # read-only, permission denied, a path /proc will not take, ...
        raise ResultsError(f"cannot write results to {run_dir}: {err.strerror or err}") from None
    for stale in (run_dir / "cells").glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    chosen = [c for c in cells if only is None or only(c)]
    todo = [c for c in chosen if not cell_done(run_dir, c)]
    if todo:  # a finished run stays "complete" (nothing to dispatch, no executor to reach)
        _write_manifest(run_dir, folder, folder_cells, status="running")

    data = config.model_dump(mode="json")
    bar = tqdm(
        total=len(chosen),
        initial=len(chosen) - len(todo),
        desc=config.experiment.name,
        unit="cell",
        disable=not progress,
    )

    def done(cell: Cell) -> None:
        bar.update()
        if on_cell:
            on_cell(cell)

    failures: dict[str, str] = {}
    try:
        if not todo:
            pass
        elif dask_scheduler:
            failures = _run_dask(data, todo, run_dir, dask_scheduler, done)
        elif workers <= 1 or len(todo) <= 1:
            for cell in todo:
                bar.set_postfix_str(cell.name)
                try:
                    run_cell(data, cell.policy, cell.seed, str(run_dir), cell.point)
                except Exception as err:  # keep going: report every failed cell at the end
                    failures[cell.name] = repr(err)
                    continue
                done(cell)
        else:
            failures = _run_pool(data, todo, run_dir, workers, done)
    except KeyboardInterrupt:
        _write_manifest_quietly(run_dir, folder, folder_cells, status="interrupted")
        n_done = sum(cell_done(run_dir, c) for c in chosen)
        raise RunInterrupted(
            f"interrupted: {n_done} of {len(chosen)} cells are finished and kept in {run_dir}; "
            "rerun the same command to compute the rest"
        ) from None
    finally:
        bar.close()
    if failures:
        _write_manifest_quietly(run_dir, folder, folder_cells, status="failed")
        n_done = sum(cell_done(run_dir, c) for c in chosen)
        lines = "\n".join(f"  {name}: {msg}" for name, msg in failures.items())
        raise ResultsError(
            f"{len(failures)} cell(s) failed ({n_done} of {len(chosen)} finished and kept in "
            f"{run_dir}; rerun to retry the rest):\n{lines}"
        )

    # the run-level tables cover every finished cell of the folder, not only the chosen ones; an
    # added seed without a finished cell is dropped again
    finished = [c for c in folder_cells if cell_done(run_dir, c)]
    kept = {c.seed for c in finished} | set(config.experiment.seeds)
    folder = _with_seeds(folder, [s for s in folder.experiment.seeds if s in kept])
    folder_cells = [c for c in folder_cells if c.seed in kept]
    missing = [c for c in folder_cells if c not in finished]
    try:
        merge_cells(run_dir, finished)
        # the manifest first: the report reads it
        _write_manifest(run_dir, folder, folder_cells, status="partial" if missing else "complete")
        drawn = _draw(run_dir, config) if figures else []
    except KeyboardInterrupt:
        raise RunInterrupted(
            f"interrupted while merging the tables or drawing the figures: the {len(finished)} "
            f"finished cells are kept in {run_dir}; rerun the same command to merge and draw"
        ) from None
    return RunResult(run_dir, finished, todo, drawn, missing)


def _folder_seeds(run_dir: Path) -> list[int]:
    """The seeds listed in the folder's ``manifest.json`` (none if it is absent or unreadable)."""
    try:
        seeds = json.loads((run_dir / "manifest.json").read_text()).get("seeds")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(seeds, list):
        return []
    return [s for s in seeds if isinstance(s, int) and not isinstance(s, bool) and s >= 0]


def _with_seeds(config: ExperimentConfig, seeds: list[int]) -> ExperimentConfig:
    if list(seeds) == list(config.experiment.seeds):
        return config
    experiment = config.experiment.model_copy(update={"seeds": list(seeds)})
    return config.model_copy(update={"experiment": experiment})


def _draw(run_dir: Path, config: ExperimentConfig) -> list[Path]:
    if config.sweep.grid or config.sweep.zip:
        from simulator.sweep_plots import plot_sweep, write_sweep_report

        drawn = plot_sweep(run_dir)
        write_sweep_report(run_dir, drawn)
        return drawn
    from simulator.plotting import plot_run
    from simulator.report import write_report

    drawn = plot_run(run_dir)
    write_report(run_dir, figures=drawn)
    return drawn


def _run_pool(data, todo: list[Cell], run_dir: Path, workers: int, done) -> dict[str, str]:
    from concurrent.futures.process import BrokenProcessPool

    failures: dict[str, str] = {}
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as pool:
        futures: dict[Future, Cell] = {
            pool.submit(run_cell, data, c.policy, c.seed, str(run_dir), c.point): c for c in todo
        }
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    cell = futures[fut]
                    err = fut.exception()
                    if isinstance(err, BrokenProcessPool):
                        failures[cell.name] = "its worker process died (killed or out of memory)"
                    elif err is not None:
                        failures[cell.name] = repr(err)
                    else:
                        done(cell)
        except BaseException:
            # Interrupted: stop the workers now (their unfinished cells live only in staging
            # folders, removed on the next run) instead of letting orphans run on.
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return failures


#: Seconds to connect to a Dask scheduler, handshake included.
DASK_CONNECT_TIMEOUT = 30.0


def _connect_dask(client_cls, address: str):
    """A ``distributed.Client`` for ``address``, or a ResultsError naming it.

    The connection runs in a daemon thread with a deadline: a server that accepts the TCP
    connection but does not speak Dask's protocol (an HTTP server, say) can stall the handshake
    past the client's own timeout, and one that answers with other bytes makes it fail with
    arbitrary errors (a MemoryError for a garbage message length) — each becomes one message.
    """
    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            box["client"] = client_cls(address, timeout="10s")
        except BaseException as err:  # reported below, in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=connect, name="recloop-dask-connect", daemon=True)
    thread.start()
    thread.join(DASK_CONNECT_TIMEOUT)
    if thread.is_alive():
        raise ResultsError(
            f"cannot reach the Dask scheduler at {address!r}: no Dask handshake within "
            f"{DASK_CONNECT_TIMEOUT:.0f} s (is it a Dask scheduler's address, e.g. tcp://host:8786?)"
        )
    if "error" in box:
        err = box["error"]
        if isinstance(err, KeyboardInterrupt):
            raise err
        raise ResultsError(
            f"cannot reach the Dask scheduler at {address!r}: {type(err).__name__}: {err}"
        ) from None
    return box["client"]


def _run_dask(data, todo: list[Cell], run_dir: Path, address: str, done) -> dict[str, str]:
    try:
        from distributed import Client, as_completed
    except ImportError as err:  # pragma: no cover - dask is a declared dependency
        raise ResultsError(f"--dask-scheduler needs dask.distributed: {err}") from None
    client = _connect_dask(Client, address)
    failures: dict[str, str] = {}
    with client:
        futures = {
            client.submit(
                run_cell_to_bytes,
                data,
                c.policy,
                c.seed,
                c.point,
                key=f"recloop-{c.name}-{os.getpid()}",
                pure=False,
                retries=1,
            ): c
            for c in todo
        }
        try:
            for fut in as_completed(list(futures)):
                cell = futures[fut]
                if fut.status != "finished":
                    try:
                        err = fut.exception()
                    except Exception as exc:  # e.g. a cancelled future
                        err = exc
                    failures[cell.name] = f"failed on the cluster: {err!r}"
                    continue
                staging = run_dir / "cells" / f".tmp-{cell.name}-dask"
                if staging.exists():
                    shutil.rmtree(staging)
                for rel, blob in fut.result().items():
                    path = staging / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(blob)
                install_cell(run_dir, cell, staging)
                done(cell)
        except BaseException:
            client.cancel(list(futures))
            raise
    return failures


def merge_cells(run_dir: Path, cells: list[Cell]) -> None:
    """Concatenate the cells' tables into the run-level Parquet files (atomically)."""
    for name in ("metrics", "users", "exposure"):
        frames = [pd.read_parquet(run_dir / "cells" / c.name / f"{name}.parquet") for c in cells]
        write_parquet(run_dir / f"{name}.parquet", pd.concat(frames, ignore_index=True))


def _cells_by_commit(run_dir: Path, cells: list[Cell]) -> dict[str, int]:
    """Number of finished cells per recorded code version ("unknown" if not recorded)."""
    out: dict[str, int] = {}
    for cell in cells:
        path = run_dir / "cells" / cell.name / "cell.json"
        if path.is_file():
            try:
                key = json.loads(path.read_text()).get("git_commit") or "unknown"
            except (OSError, ValueError):
                key = "unreadable"
            out[key] = out.get(key, 0) + 1
    return out


def _write_manifest_quietly(run_dir: Path, config: ExperimentConfig, cells: list[Cell], status: str) -> None:
    """:func:`_write_manifest` on the way out of a stopped run: its ``missing_cells`` and
    ``cells_by_git_commit`` then say what is kept. A second Ctrl-C or a full disk here must not
    hide why the run stopped, so an error writing it is dropped (the old manifest stays whole)."""
    try:
        _write_manifest(run_dir, config, cells, status)
    except (OSError, KeyboardInterrupt):
        pass


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
            "missing_cells": [c.name for c in cells if not cell_done(run_dir, c)],
            "sweep_keys": list(config.sweep.grid) + list(config.sweep.zip),
            "window_days": config.metrics.window_days,
            "user_window_days": config.metrics.user_window_days,
            "versions": _versions(),
            "git_commit": _git_commit(),
            "cells_by_git_commit": _cells_by_commit(run_dir, cells),
            "written": datetime.now(UTC).isoformat(),
        },
    )
