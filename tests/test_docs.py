"""The README documents every config key and every metric name (docs cannot drift silently)."""

from pathlib import Path

from simulator.config import ExperimentConfig, config_reference
from simulator.metrics.tracker import METRIC_NAMES

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_holds_the_current_config_reference():
    assert config_reference().strip() in README
    for name, _field in ExperimentConfig.model_fields.items():
        assert f"[{name}" in README, name


def test_readme_defines_every_metric():
    for name in METRIC_NAMES:
        assert f"`{name}`" in README, name
