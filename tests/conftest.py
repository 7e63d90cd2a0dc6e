"""Shared fixtures: tiny worlds that run in well under a second."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.config import ExperimentConfig, parse_config


def tiny_config_data(**sections: Any) -> dict[str, Any]:
    """A small, valid config mapping; keyword arguments extend sections (``policies`` replaces)."""
    data: dict[str, Any] = {
        "experiment": {"name": "tiny", "n_rounds": 12, "seeds": [0]},
        "catalog": {"n_items": 300, "n_genres": 6, "n_artists": 60, "embedding_dim": 8},
        "users": {"n_users": 400},
        "history": {"days": 14},
        "simulation": {"slate_size": 5, "train_window_days": 14, "log_fraction": 1.0},
        "metrics": {"window_days": 3, "user_window_days": 5, "n_tracked_users": 20, "regret_users": 0},
        "policies": {"greedy": {"factors": 8}, "random": {}},
    }
    for key, value in sections.items():
        merge = isinstance(value, dict) and key != "policies"  # policies are replaced whole
        data[key] = {**data.get(key, {}), **value} if merge else value
    return data


@pytest.fixture
def tiny_config() -> ExperimentConfig:
    return parse_config(tiny_config_data())
