"""Every shipped experiment config is a smoke-tested document (STYLE.md point 12).

Each config runs end to end at a tiny size (its own world settings otherwise) and must produce
every metric for every policy, with its header comment saying what it shows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simulator.config import load_config
from simulator.engine.runner import run_experiment
from simulator.metrics.tracker import METRIC_NAMES

# experiments/replications/ holds paper replications with their own schema (tests/test_replications.py);
# study configs ([study] table: interleaving_vs_ab) have theirs too (tests/ope/test_interleaving_study.py)
ALL = sorted((Path(__file__).parents[1] / "experiments").glob("*.toml"))
CONFIGS = [p for p in ALL if "\n[study]" not in p.read_text()]
TINY = [
    "users.n_users=300",
    "catalog.n_items=300",
    "experiment.n_rounds=4",
    "experiment.seeds=[0]",
    "metrics.n_tracked_users=20",
    "metrics.regret_users=50",
    "history.days=7",
]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_runs_at_tiny_size(path, tmp_path):
    text = path.read_text()
    assert text.lstrip().startswith("#"), "a config starts with a comment saying what it shows"
    cfg = load_config(path, TINY)
    res = run_experiment(cfg, tmp_path / "run", workers=1, progress=False, figures=False)
    metrics = pd.read_parquet(res.run_dir / "metrics.parquet")
    assert set(metrics["policy"]) == set(cfg.policies)
    assert set(METRIC_NAMES) <= set(metrics["metric"])
    assert metrics["round"].max() == 3
