"""The ``recloop`` command line (typer).

Exit codes: 0 success, 2 bad input (config, arguments, results folder), 130 interrupted (143
after a SIGTERM to ``recloop run``).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from simulator.errors import RecloopError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="recloop: simulate, measure and break recommendation feedback loops.",
)


def _fail(err: Exception, code: int = 2) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(code)


_TERMINATED = {"sigterm": False}


def _sigterm_as_interrupt(signum, frame):
    """SIGTERM handled like Ctrl-C: workers and servers are stopped, finished work kept (the
    exit code is then 143, the shell's 128 + SIGTERM, rather than Ctrl-C's 130)."""
    _TERMINATED["sigterm"] = True
    raise KeyboardInterrupt


def _interrupt_code() -> int:
    return 143 if _TERMINATED["sigterm"] else 130


def _parse_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not any(items) or (len(items) > 1 and not all(items)):
        raise RecloopError(f"--{what} expects a comma-separated list without empty entries; got {text!r}")
    if what == "seeds":
        bad = [t for t in items if not t.lstrip("-").isdigit()]
        if bad:
            raise RecloopError(f"--seeds expects comma-separated integers; {bad[0]!r} is not an integer")
    return items


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="experiment TOML, e.g. experiments/music_collapse.toml")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a config key: key.path=value (repeatable)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="results folder (default results/<experiment>/<run>)")
    ] = None,
    run_name: Annotated[str, typer.Option("--run", help="run name under results/<experiment>/")] = "default",
    seeds: Annotated[
        str | None,
        typer.Option(help="comma-separated seeds (replace the config's; the folder keeps its other seeds)"),
    ] = None,
    policies: Annotated[
        str | None, typer.Option(help="comma-separated policy labels to compute (a subset of the config's)")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="worker processes (default: number of CPU cores)")
    ] = os.cpu_count() or 1,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    dask_scheduler: Annotated[
        str | None,
        typer.Option(help="run the cells on this dask.distributed scheduler (tcp://host:8786)"),
    ] = None,
) -> None:
    """Run every (policy, seed[, sweep point]) cell of CONFIG; resumes finished cells on rerun."""
    from simulator.config import FOLDER_NAME, load_config
    from simulator.engine.runner import RunInterrupted, run_experiment

    # SIGTERM (kill, a scheduler's timeout) stops the pool's workers like Ctrl-C does
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        overrides = list(set_ or [])
        seed_list = _parse_list(seeds, "seeds")
        if seed_list is not None:  # validated with the config, before anything runs
            overrides.append(f"experiment.seeds=[{', '.join(seed_list)}]")
        cfg = load_config(config, overrides)
        wanted = _parse_list(policies, "policies")
        only = None
        if wanted is not None:
            unknown = [p for p in wanted if p not in cfg.policies]
            if unknown:
                raise RecloopError(f"--policies: {unknown} not in the config's policies {list(cfg.policies)}")

            def only(cell) -> bool:  # the folder's tables still cover every finished cell
                return cell.policy in wanted

        if not re.match(FOLDER_NAME, run_name):
            raise RecloopError(
                f"--run: a folder name of letters, digits, _ . - (not starting with a dot); got {run_name!r}"
            )
        run_dir = out or Path("results") / cfg.experiment.name / run_name
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            try:
                result = run_experiment(
                    cfg,
                    run_dir,
                    workers=workers,
                    progress=not quiet,
                    dask_scheduler=dask_scheduler,
                    only=only,
                )
            finally:
                for w in caught:  # the runner's warnings, as plain lines (not Python's format)
                    typer.echo(f"warning: {w.message}", err=True)
    except RunInterrupted as err:
        _fail(err, _interrupt_code())
    except RecloopError as err:
        _fail(err)
    except KeyboardInterrupt:
        _fail(RecloopError("interrupted; finished cells are kept, rerun the same command"), _interrupt_code())
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo(
        f"{len(result.cells)} cells ({len(result.computed)} computed, "
        f"{len(result.cells) - len(result.computed)} already finished) -> {result.run_dir}"
    )
    if result.missing:
        seeds_m = sorted({c.seed for c in result.missing})
        pols = sorted({c.policy for c in result.missing})
        typer.echo(
            f"partial: {len(result.missing)} cell(s) of this folder are not computed yet (e.g. "
            f"{result.missing[0].name}); compute them with --seeds {','.join(map(str, seeds_m))} "
            f"--policies {','.join(pols)}"
        )
    typer.echo(f"report: {result.run_dir / 'report.md'}")


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="experiment TOML")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="key.path=value")] = None,
) -> None:
    """Validate CONFIG (and overrides) and print the resolved config."""
    import json

    from simulator.config import load_config
    from simulator.engine.runner import check_policies

    try:
        cfg = load_config(config, list(set_ or []))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            check_policies(cfg)  # bad hyperparameters and interventions fail here, before any run
        for w in caught:
            typer.echo(f"warning: {w.message}", err=True)
    except RecloopError as err:
        _fail(err)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


@app.command("policies")
def list_policies() -> None:
    """List the registered policies and their hyperparameters."""
    from dataclasses import fields

    from simulator.policies import POLICIES

    width = max(len(name) for name in POLICIES)
    for name, cls in sorted(POLICIES.items()):
        params = ", ".join(f"{f.name}={f.default!r}" for f in fields(cls))
        typer.echo(f"{name:{width}s}  {params}")


@app.command()
def audit(
    log: Annotated[
        Path, typer.Argument(help="impression log: recloop Parquet file/folder or CSV, or OBD all.csv")
    ],
    window: Annotated[str, typer.Option(help="window width: 7d, 12h, 2w, or 1000r (rounds)")] = "7d",
    catalog_size: Annotated[
        int | None,
        typer.Option(help="items in the catalog (ids 0..N-1); default: unknown, or from OBD/run metadata"),
    ] = None,
    popularity: Annotated[
        Path | None, typer.Option(help="pre-system popularity table (CSV/Parquet: item_id, popularity)")
    ] = None,
    items: Annotated[
        Path | None, typer.Option(help="item categories (CSV/Parquet: item_id and a category column)")
    ] = None,
    category_column: Annotated[
        str | None, typer.Option(help="category column of --items (default genre, then category)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default results/audit/<log name>)")] = None,
    log_format: Annotated[str, typer.Option("--format", help="auto, recloop or obd")] = "auto",
    policy: Annotated[str | None, typer.Option(help="audit only this policy's rows")] = None,
    seed: Annotated[int | None, typer.Option(help="audit only this seed's rows")] = None,
    alpha: Annotated[float, typer.Option(help="level of the trend tests")] = 0.05,
    alert: Annotated[
        list[str] | None,
        typer.Option(help="alert threshold NAME=VALUE or NAME=off, e.g. gini_rising=0.05 (repeatable)"),
    ] = None,
    hamed_rao: Annotated[
        bool, typer.Option("--hamed-rao", help="correct the trend tests for autocorrelation")
    ] = False,
    max_users: Annotated[int, typer.Option(help="users kept (hash sample) for per-user metrics")] = 1_000_000,
    run_metadata: Annotated[
        bool, typer.Option(help="use the simulated catalog when LOG lies in a recloop results folder")
    ] = True,
    figures: Annotated[bool, typer.Option(help="draw the figures")] = True,
    fail_on_alert: Annotated[
        bool, typer.Option(help="exit with code 1 when an alert fires (monitoring)")
    ] = False,
) -> None:
    """Audit LOG for feedback-loop symptoms; write report.md, tables and figures."""
    from simulator.audit import AuditOptions, audit_log, default_out_dir, write_audit

    try:
        opts = AuditOptions(
            window=window,
            catalog_size=catalog_size,
            items=items,
            category_column=category_column,
            popularity=popularity,
            log_format=log_format,
            policy=policy,
            seed=seed,
            alpha=alpha,
            alerts=list(alert or []),
            trend_correction="hamed_rao" if hamed_rao else "none",
            max_users=max_users,
            run_metadata=run_metadata,
        )
        result = audit_log(log, opts)
        folder = write_audit(result, out or default_out_dir(log), figures=figures)
    except RecloopError as err:
        _fail(err)
    typer.echo(
        f"{result.scan.n_rows:,} rows, {result.grid.n_windows} windows ({result.rows_per_second:,.0f} rows/s)"
    )
    for a in result.alerts:
        if a.status != "off":
            typer.echo(f"  {a.status.upper():13s} {a.rule.name}")
    typer.echo(f"report: {folder / 'report.md'}")
    if fail_on_alert and result.fired:
        raise typer.Exit(1)


@app.command()
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="a finished results folder, e.g. results/music_collapse/default")
    ],
    out: Annotated[Path | None, typer.Option(help="HTML file to write (default RUN_DIR/report.html)")] = None,
    redraw: Annotated[
        bool | None,
        typer.Option("--redraw/--no-redraw", help="redraw the figures (default: only if missing or stale)"),
    ] = None,
) -> None:
    """Write a self-contained report.html (figures embedded) and report.md for RUN_DIR."""
    from simulator.report_html import build_report

    try:
        paths = build_report(run_dir, out, redraw=redraw)
    except RecloopError as err:
        _fail(err)
    except OSError as err:
        _fail(RecloopError(f"cannot write the report: {err}"))
    typer.echo(f"report: {paths.html}")
    typer.echo(f"markdown: {paths.markdown}")


@app.command()
def dashboard(
    config: Annotated[
        Path | None, typer.Argument(help="experiment TOML for the world (default: a small music_collapse)")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key.path=value (repeatable)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8765,
    full_size: Annotated[
        bool, typer.Option(help="keep the config's sizes (default: capped at 1000 users x 500 items)")
    ] = False,
    check: Annotated[
        bool, typer.Option(help="validate and print the initial controls; do not serve")
    ] = False,
) -> None:
    """Start the interactive SolaraViz dashboard on http://HOST:PORT (Ctrl-C stops it)."""
    import subprocess
    import tempfile

    from simulator.config import load_config
    from simulator.dashboard import launch
    from simulator.dashboard.model import cap_sizes, controls_from_config, default_base_config

    try:
        if config is None and set_:
            raise RecloopError("--set needs a CONFIG to override")
        cfg = load_config(config, list(set_ or [])) if config is not None else default_base_config()
        changed: list[str] = []
        if not full_size:
            cfg, changed = cap_sizes(cfg)
        controls = controls_from_config(cfg)
        if not check:
            launch.check_dashboard_installed()
    except RecloopError as err:
        _fail(err)
    if changed:
        typer.echo(f"dashboard size (--full-size keeps the config's): {'; '.join(changed)}", err=True)
    typer.echo("initial controls: " + ", ".join(f"{k}={v}" for k, v in controls.items()))
    if check:
        return
    missing = launch.assets_missing()
    if missing:
        typer.echo(
            f"warning: solara's offline assets are missing from {launch.assets_dir()} "
            f"({', '.join(missing)}); without internet the page stays blank. "
            "Run scripts/dashboard_assets.sh first.",
            err=True,
        )

    with tempfile.TemporaryDirectory(prefix="recloop-dashboard-") as tmp:
        cfg_file = launch.write_config(cfg, Path(tmp) / "config.json")
        typer.echo(f"dashboard: http://{host}:{port}  (Ctrl-C stops it)")
        server = subprocess.Popen(launch.solara_command(host, port), env=launch.solara_env(cfg_file))
        previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)  # stops it like Ctrl-C
        try:
            code = server.wait()
        except KeyboardInterrupt:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            code = 0
        finally:
            signal.signal(signal.SIGTERM, previous)
    if code not in (0, -2, -15, 130):
        _fail(RecloopError(f"the dashboard server exited with code {code}"), 1)


@app.command()
def replicate(
    name: Annotated[str, typer.Argument(help="replication: chaney, fleder, mansoury or jiang")],
    reps: Annotated[
        int | None, typer.Option(min=1, help="repetitions (default: the config's run.reps)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output folder (default results/replications/NAME)")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="config TOML (default experiments/replications/NAME.toml)")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key.path=value (repeatable)")] = None,
) -> None:
    """Run a replication of a published feedback-loop result; write tables, figures, summary.md."""
    from simulator.replications import run_replication

    try:
        _, folder = run_replication(name, config, reps=reps, out=out, overrides=list(set_ or []))
    except RecloopError as err:
        _fail(err)
    typer.echo(f"summary: {folder / 'summary.md'}")


@app.command()
def ope(
    config: Annotated[Path, typer.Argument(help="OPE study TOML, e.g. experiments/ope/ope_study.toml")],
    out: Annotated[Path | None, typer.Option(help="results folder (default results/ope/<name>)")] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds (overrides the config)")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a study key: key.path=value, e.g. world.users.n_users=500"),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes over seeds")] = os.cpu_count() or 1,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Off-policy evaluation study: estimators from a simulated log against the on-policy truth."""
    from simulator.ope.study import run_study
    from simulator.ope.study_config import load_study_config

    try:
        overrides = list(set_ or [])
        seed_list = _parse_list(seeds, "seeds")
        if seed_list is not None:
            overrides.append(f"study.seeds=[{', '.join(seed_list)}]")
        cfg = load_study_config(config, overrides)
        result = run_study(
            cfg, out or Path("results") / "ope" / cfg.study.name, workers=workers, progress=not quiet
        )
    except RecloopError as err:
        _fail(err)
    except OSError as err:
        _fail(RecloopError(f"cannot write the study's results: {err}"))
    except KeyboardInterrupt:
        _fail(RecloopError("interrupted; the study's tables, summary and figures were not written"), 130)
    typer.echo(f"{len(cfg.study.seeds)} seeds in {result.seconds:.0f} s -> {result.out_dir}")
    typer.echo(f"summary: {result.out_dir / 'summary.md'}")


@app.command("position-bias")
def position_bias(
    log: Annotated[
        Path,
        typer.Argument(help="impression log: recloop Parquet file/folder, results run, or OBD all.csv"),
    ],
    method: Annotated[str, typer.Option(help="ctr_ratio, swap, em, or all")] = "all",
    reference: Annotated[int, typer.Option(help="reference position (0-based), examination 1")] = 0,
    bootstrap: Annotated[int, typer.Option(min=10, help="bootstrap replicates over sessions (>= 10)")] = 200,
    confidence: Annotated[float, typer.Option(help="level of the per-position intervals")] = 0.95,
    seed: Annotated[int, typer.Option(min=0, help="seed of the bootstrap")] = 0,
    em_key: Annotated[str, typer.Option(help="EM relevance key: item or user_item")] = "item",
    slate_size: Annotated[
        int | None, typer.Option(help="slate length K (default: run manifest, 3 for OBD, max position + 1)")
    ] = None,
    log_format: Annotated[str, typer.Option("--format", help="auto, recloop or obd")] = "auto",
    policy: Annotated[str | None, typer.Option(help="use only this policy's rows")] = None,
    log_seed: Annotated[int | None, typer.Option(help="use only this seed's rows of the log")] = None,
    out: Annotated[
        Path | None, typer.Option(help="folder for position_bias.csv and position_bias.json")
    ] = None,
) -> None:
    """Estimate the examination curve (position bias) of LOG with CTR ratio, swap and EM."""
    from simulator.ope.position_bias_log import (
        format_report,
        read_position_log,
        run_position_bias,
        write_report,
    )

    try:
        plog = read_position_log(
            log, log_format=log_format, policy=policy, seed=log_seed, n_positions=slate_size
        )
        result = run_position_bias(
            plog,
            method,
            reference=reference,
            n_bootstrap=bootstrap,
            confidence=confidence,
            seed=seed,
            em_key=em_key,
        )
        written = write_report(result, out) if out is not None else []
    except RecloopError as err:
        _fail(err)
    except OSError as err:
        _fail(RecloopError(f"cannot write the position-bias results: {err}"))
    typer.echo(format_report(result))
    for path in written:
        typer.echo(f"wrote {path}")


@app.command("position-bias-study")
def position_bias_study(
    config: Annotated[Path, typer.Argument(help="study TOML")] = Path(
        "experiments/position_bias/position_bias_study.toml"
    ),
    out: Annotated[
        Path | None, typer.Option(help="results folder (default results/position_bias/<name>)")
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds (overrides the config)")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a study key: key.path=value")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Position-bias estimators on simulated logs with a known examination curve, and on OBD."""
    from simulator.ope.position_bias_study import load_position_bias_study_config, run_position_bias_study

    try:
        overrides = list(set_ or [])
        seed_list = _parse_list(seeds, "seeds")
        if seed_list is not None:
            overrides.append(f"study.seeds=[{', '.join(seed_list)}]")
        cfg = load_position_bias_study_config(config, overrides)
        result = run_position_bias_study(
            cfg, out or Path("results") / "position_bias" / cfg.study.name, progress=not quiet
        )
    except RecloopError as err:
        _fail(err)
    except OSError as err:
        _fail(RecloopError(f"cannot write the study's results: {err}"))
    typer.echo(f"{len(cfg.study.seeds)} seeds in {result.seconds:.0f} s -> {result.out_dir}")
    typer.echo(f"summary: {result.out_dir / 'summary.md'}")


@app.command()
def interleave(
    config: Annotated[
        Path, typer.Argument(help="interleaving study TOML, e.g. experiments/interleaving_vs_ab.toml")
    ],
    out: Annotated[
        Path | None, typer.Option(help="results folder (default results/interleaving/<name>)")
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds (overrides the config)")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a study key: key.path=value, e.g. study.experiments=500"),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Power study: sessions an interleaving experiment and an A/B test need to find the better policy."""
    from simulator.ope.interleaving_study import run_interleaving_study
    from simulator.ope.interleaving_study_config import load_interleaving_study

    try:
        overrides = list(set_ or [])
        seed_list = _parse_list(seeds, "seeds")
        if seed_list is not None:
            overrides.append(f"study.seeds=[{', '.join(seed_list)}]")
        cfg = load_interleaving_study(config, overrides)
        result = run_interleaving_study(
            cfg, out or Path("results") / "interleaving" / cfg.study.name, progress=not quiet
        )
    except RecloopError as err:
        _fail(err)
    except OSError as err:
        _fail(RecloopError(f"cannot write the study's results: {err}"))
    except KeyboardInterrupt:
        _fail(RecloopError("interrupted; the study's tables, summary and figures were not written"), 130)
    typer.echo(f"{len(cfg.study.seeds)} seeds in {result.seconds:.0f} s -> {result.out_dir}")
    typer.echo(f"summary: {result.out_dir / 'summary.md'}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
