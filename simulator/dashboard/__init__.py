"""Interactive dashboard (Mesa SolaraViz): watch the feedback loop while turning its knobs.

``recloop dashboard [CONFIG]`` starts :mod:`simulator.dashboard.app` with ``solara run``. The
dashboard needs the ``dashboard`` extra (``pip install -e '.[dashboard]'``) and, offline, the
npm-packed assets of ``scripts/dashboard_assets.sh``.

Importing this package does not import solara: :mod:`~simulator.dashboard.model` (the
:class:`DashboardModel` adapter and the control ranges) and :mod:`~simulator.dashboard.launch`
(the command and environment) work without it; only ``app`` needs it.
"""

from simulator.dashboard.launch import app_path, assets_dir, solara_command, solara_env
from simulator.dashboard.model import (
    CONTROLS,
    ControlError,
    DashboardModel,
    available_policies,
    controls_from_config,
    dashboard_config,
    default_base_config,
    validate_controls,
)

__all__ = [
    "CONTROLS",
    "ControlError",
    "DashboardModel",
    "app_path",
    "assets_dir",
    "available_policies",
    "controls_from_config",
    "dashboard_config",
    "default_base_config",
    "solara_command",
    "solara_env",
    "validate_controls",
]
