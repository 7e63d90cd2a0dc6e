"""The ``recloop`` command line (typer).

Exit codes: 0 success, 2 bad input (config, arguments, results folder), 130 interrupted.
"""

from __future__ import annotations

import os
import sys
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


def _parse_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise RecloopError(f"--{what} expects a comma-separated list; got {text!r}")
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
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds (overrides the config)")] = None,
    policies: Annotated[
        str | None, typer.Option(help="comma-separated policy labels to run (subset of the config)")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="worker processes (default: number of CPU cores)")
    ] = os.cpu_count() or 1,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Run every (policy, seed) cell of CONFIG; resumes finished cells on rerun."""
    from simulator.config import load_config
    from simulator.engine.runner import RunInterrupted, run_experiment

    try:
        overrides = list(set_ or [])
        seed_list = _parse_list(seeds, "seeds")
        if seed_list is not None:
            overrides.append(f"experiment.seeds=[{', '.join(seed_list)}]")
        cfg = load_config(config, overrides)
        wanted = _parse_list(policies, "policies")
        if wanted is not None:
            unknown = [p for p in wanted if p not in cfg.policies]
            if unknown:
                raise RecloopError(f"--policies: {unknown} not in the config's policies {list(cfg.policies)}")
            cfg = cfg.model_copy(update={"policies": {p: cfg.policies[p] for p in wanted}})
        _validate_policies(cfg)
        run_dir = out or Path("results") / cfg.experiment.name / run_name
        result = run_experiment(cfg, run_dir, workers=workers, progress=not quiet)
    except RunInterrupted as err:
        _fail(err, 130)
    except RecloopError as err:
        _fail(err)
    except KeyboardInterrupt:
        _fail(RecloopError("interrupted before any cell finished"), 130)
    typer.echo(
        f"{len(result.cells)} cells ({len(result.computed)} computed, "
        f"{len(result.cells) - len(result.computed)} resumed) -> {result.run_dir}"
    )
    typer.echo(f"report: {result.run_dir / 'report.md'}")


def _validate_policies(cfg) -> None:
    """Construct every policy once so that bad hyperparameters fail before anything runs."""
    from simulator.policies import make_policy

    for label, spec in cfg.policies.items():
        make_policy(spec.type, label, **spec.params)


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="experiment TOML")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="key.path=value")] = None,
) -> None:
    """Validate CONFIG (and overrides) and print the resolved config."""
    import json

    from simulator.config import load_config

    try:
        cfg = load_config(config, list(set_ or []))
        _validate_policies(cfg)
    except RecloopError as err:
        _fail(err)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


@app.command("policies")
def list_policies() -> None:
    """List the registered policies and their hyperparameters."""
    from dataclasses import fields

    from simulator.policies import POLICIES

    for name, cls in sorted(POLICIES.items()):
        params = ", ".join(f"{f.name}={f.default!r}" for f in fields(cls))
        typer.echo(f"{name:12s} {params}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
