"""Replications of published feedback-loop results as runnable experiments.

One module per paper, each with its own world in that paper's terms, its own config schema
(``experiments/replications/<name>.toml``) and its measurement:

``chaney``    Chaney, Stewart & Engelhardt (2018): homogenisation by algorithmic confounding.
``fleder``    Fleder & Hosanagar (2009): recommenders and sales concentration.
``mansoury``  Mansoury et al. (2020): popularity-bias amplification, minority vs majority group.
``jiang``     Jiang et al. (2019): degenerate feedback loops of drifting interests.

:func:`run_replication` loads a config, runs it (BLAS limited to one thread: the matrices are
small and the machine is shared) and writes ``measurements.parquet`` (tidy: ``rep, policy,
step, group, metric, value``), ``findings.json``, ``config.json``, ``summary.md`` and the figures
(PNG + SVG) to ``results/replications/<name>/``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from types import ModuleType

from simulator.errors import ConfigError

__all__ = ["REPLICATIONS", "default_config_path", "get", "load", "redraw", "run_replication"]

REPLICATIONS = ("chaney", "fleder", "mansoury", "jiang")


def get(name: str) -> ModuleType:
    """The module of a replication by name.

    Raises
    ------
    ConfigError
        Unknown name, with a "did you mean" suggestion.
    """
    if name not in REPLICATIONS:
        close = difflib.get_close_matches(name, REPLICATIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown replication {name!r}{hint}; known: {', '.join(REPLICATIONS)}")
    import importlib

    return importlib.import_module(f"simulator.replications.{name}")


def default_config_path(name: str) -> Path:
    """``experiments/replications/<name>.toml`` of the working directory, else of the source tree."""
    rel = Path("experiments") / "replications" / f"{name}.toml"
    if rel.is_file():
        return rel
    return Path(__file__).resolve().parents[2] / rel


def load(name: str, config: str | Path | None = None, overrides: list[str] | None = None):
    """The validated config of replication ``name`` (default file, ``key.path=value`` overrides)."""
    from simulator.replications.common import load_config

    mod = get(name)
    return load_config(mod.Config, config or default_config_path(name), overrides)


def run_replication(
    name: str,
    config: str | Path | None = None,
    *,
    reps: int | None = None,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    figures: bool = True,
):
    """Run a replication and write its outputs.

    Parameters
    ----------
    name : str
        One of :data:`REPLICATIONS`.
    config : path, optional
        The TOML config (default :func:`default_config_path`).
    reps : int, optional
        Repetitions (default: the config's ``run.reps``).
    out : path, optional
        Output folder (default ``results/replications/<name>``).
    overrides : list of str
        ``key.path=value`` overrides of the config.
    figures : bool
        Draw the figures.

    Returns
    -------
    (ReplicationResult, Path)
        The result and the output folder.
    """
    from threadpoolctl import threadpool_limits

    from simulator.replications.common import write_result

    mod = get(name)
    cfg = load(name, config, overrides)
    if reps is not None and reps < 1:
        raise ConfigError(f"--reps must be an integer >= 1; got {reps}")
    with threadpool_limits(limits=1):
        result = mod.run(cfg, reps=reps)
    folder = Path(out) if out is not None else Path("results") / "replications" / name
    figs = {}
    if figures:
        from simulator.replications.plots import figures as make_figures

        figs = make_figures(result)
    write_result(result, folder, mod.summary_markdown(result), figs)
    return result, folder


def redraw(name: str, folder: str | Path) -> list[Path]:
    """Redraw the figures of a finished replication folder from its saved tables (no rerun).

    Raises
    ------
    ConfigError
        If the folder lacks ``measurements.parquet``, ``findings.json`` or ``config.json``.
    """
    import json

    import matplotlib.pyplot as plt
    import pandas as pd

    from simulator.plotting import save_figure
    from simulator.replications.common import ReplicationResult, parse_config
    from simulator.replications.plots import figures as make_figures

    mod = get(name)
    folder = Path(folder)
    files = [folder / f for f in ("measurements.parquet", "findings.json", "config.json")]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"{folder} is not a finished {name} replication folder: missing {missing}")
    cfg = parse_config(mod.Config, json.loads(files[2].read_text()), str(files[2]))
    result = ReplicationResult(name, cfg, pd.read_parquet(files[0]), json.loads(files[1].read_text()))
    paths: list[Path] = []
    for stem, fig in make_figures(result).items():
        try:
            paths += save_figure(fig, folder / "figures" / stem)
        finally:
            plt.close(fig)
    return paths
