"""Start the dashboard: the ``solara run`` command line and its environment (no solara import).

Used by ``recloop dashboard`` and by the browser test, so that both start the page the same way:

* ``RECLOOP_DASHBOARD_CONFIG`` — a JSON file with the resolved base config (the world);
* ``SOLARA_ASSETS_PROXY_CACHE_DIR`` — the npm-packed JavaScript/CSS that solara would otherwise
  fetch from a CDN (``scripts/dashboard_assets.sh`` fills it; default ``<repo>/.cache/solara-assets``
  or ``$RECLOOP_SOLARA_ASSETS``);
* ``SOLARA_TELEMETRY_MIXPANEL_ENABLE=False`` — no telemetry calls.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from simulator.config import ExperimentConfig
from simulator.errors import RecloopError

__all__ = [
    "ASSET_PACKAGES",
    "CONFIG_ENV",
    "app_path",
    "assets_dir",
    "assets_missing",
    "check_dashboard_installed",
    "solara_command",
    "solara_env",
    "write_config",
]

CONFIG_ENV = "RECLOOP_DASHBOARD_CONFIG"
ASSETS_ENV = "RECLOOP_SOLARA_ASSETS"
#: npm packages solara 1.64.1 (with ipyvuetify < 3) loads from its CDN; see PLATFORM.md.
ASSET_PACKAGES = (
    "@widgetti/solara-vuetify-app@10.1.1",
    "requirejs@2.3.6",
    "font-awesome@4.5.0",
    "@widgetti/vue-grid-layout@2.3.13-alpha.2",
)
_REPO = Path(__file__).resolve().parents[2]


def app_path() -> Path:
    """The Solara app file (``simulator/dashboard/app.py``)."""
    return Path(__file__).with_name("app.py")


def assets_dir() -> Path:
    """Where ``scripts/dashboard_assets.sh`` puts the assets: ``$RECLOOP_SOLARA_ASSETS`` or
    ``<repo>/.cache/solara-assets``."""
    env = os.environ.get(ASSETS_ENV)
    return Path(env) if env else _REPO / ".cache" / "solara-assets"


def assets_missing(folder: Path | None = None) -> list[str]:
    """The asset packages not (completely) unpacked in ``folder``."""
    folder = folder or assets_dir()
    return [p for p in ASSET_PACKAGES if not (folder / p / ".recloop-complete").is_file()]


def check_dashboard_installed() -> None:
    """Raise a :class:`RecloopError` that says how to install the extra if solara is absent."""
    if any(importlib.util.find_spec(m) is None for m in ("solara", "altair", "ipyvuetify")):
        raise RecloopError(
            "the dashboard needs the optional dependencies of the 'dashboard' extra "
            "(solara, mesa[viz]); install them with: pip install -e '.[dashboard]'"
        )


def write_config(config: ExperimentConfig, path: Path) -> Path:
    """Write the resolved base config as JSON for the app (``RECLOOP_DASHBOARD_CONFIG``)."""
    path.write_text(json.dumps(config.model_dump(mode="json"), indent=1), encoding="utf-8")
    return path


def solara_env(config_file: Path | None = None, assets: Path | None = None) -> dict[str, str]:
    """The environment of ``solara run``: this process's, plus the dashboard's variables."""
    env = dict(os.environ)
    env["SOLARA_ASSETS_PROXY_CACHE_DIR"] = str(assets or assets_dir())
    env["SOLARA_TELEMETRY_MIXPANEL_ENABLE"] = "False"
    env.setdefault("MPLBACKEND", "Agg")
    if config_file is not None:
        env[CONFIG_ENV] = str(config_file)
    else:
        env.pop(CONFIG_ENV, None)
    return env


def solara_command(host: str = "127.0.0.1", port: int = 8765) -> list[str]:
    """``solara run simulator/dashboard/app.py`` on ``host:port`` in production mode."""
    return [
        sys.executable,
        "-m",
        "solara",
        "run",
        str(app_path()),
        "--host",
        host,
        "--port",
        str(int(port)),
        "--production",
        "--no-check-version",
        "--no-open",
    ]
