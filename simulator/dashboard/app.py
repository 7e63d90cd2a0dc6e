"""The recloop dashboard: a Mesa SolaraViz page (``solara run simulator/dashboard/app.py``).

Start it with ``recloop dashboard [CONFIG]`` (which sets the environment, see
:mod:`simulator.dashboard.launch`). The sidebar has SolaraViz's *Reset*, play/pause (▶, run) and
*Step* buttons and the model parameters: policy, epsilon, temperature, eta, drift share,
retrain cadence and seed. Changed parameters take effect on **Reset**, which rebuilds the world
(:class:`~simulator.dashboard.model.DashboardModel`). One step is one simulated day.

The page shows live: a status line (day, Gini, coverage, entropy, CTR), the whole-catalog Gini of
exposure, catalog coverage, the mean per-user shown-genre entropy, and the genre shares shown to
one sampled alternating-interest user against the user's true taste.

Each browser session builds its own model (``solara.use_memo``): sessions do not share state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import solara
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mesa.visualization import SolaraViz, make_plot_component
from mesa.visualization.utils import update_counter

from simulator.config import parse_config
from simulator.dashboard.launch import CONFIG_ENV
from simulator.dashboard.model import (
    CONTROLS,
    DashboardModel,
    available_policies,
    controls_from_config,
    default_base_config,
)

# seaborn "colorblind" palette (the figures' palette), without importing seaborn here
_BLUE, _ORANGE, _GREEN, _GREY = "#0173b2", "#de8f05", "#029e73", "#949494"


def _load_base_config():
    path = os.environ.get(CONFIG_ENV)
    if not path:
        return default_base_config()
    import json

    return parse_config(json.loads(Path(path).read_text(encoding="utf-8")), path)


BASE_CONFIG = _load_base_config()
INITIAL = controls_from_config(BASE_CONFIG)
WINDOW = BASE_CONFIG.metrics.window_days
USER_WINDOW = BASE_CONFIG.metrics.user_window_days


def model_params() -> dict[str, Any]:
    """SolaraViz ``model_params``: one input per control (ranges from ``CONTROLS``)."""
    params: dict[str, Any] = {}
    for name, c in CONTROLS.items():
        if c.kind == "select":
            params[name] = {
                "type": "Select",
                "value": INITIAL[name],
                "values": available_policies(),
                "label": c.label,
            }
        else:
            params[name] = {
                "type": "SliderInt" if c.kind == "int" else "SliderFloat",
                "value": INITIAL[name],
                "min": c.min,
                "max": c.max,
                "step": c.step,
                "label": c.label,
            }
    params["base_config"] = BASE_CONFIG  # fixed: the world of the config
    return params


# ------------------------------------------------------------------------------ components
def _metric_axes(title: str, ylabel: str, colour: str):
    def post_process(ax) -> None:
        for line in ax.get_lines():
            line.set_color(colour)
            line.set_linewidth(2)
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(ylabel)  # x: "Step" (SolaraViz's label) = day
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)

    return post_process


_HELP = "\n".join(f"- **{c.label}**: {c.help}" for c in CONTROLS.values() if c.help)

#: Slider values always visible (SolaraViz's sliders show them only while dragging).
_CSS = """
.v-slider__thumb-label-container { display: block !important; }
.v-slider__thumb-label { height: 24px !important; width: 24px !important; font-size: 10px; }
.v-input__slider { padding-top: 20px; }
"""


@solara.component
def Status(model: DashboardModel):
    """The current day and headline metrics as text (read by the browser test)."""
    update_counter.get()
    m = model.latest()
    c = model.controls
    used = {
        "epsilon_greedy": f"epsilon = {c['epsilon']:g}",
        "boltzmann": f"temperature = {c['temperature']:g}",
    }
    extra = f" ({used[c['policy']]})" if c["policy"] in used else ""

    def f(name: str) -> str:
        v = m.get(name)
        return "–" if v is None or v != v else f"{v:.3f}"

    solara.Markdown(
        f"""
### Day {model.day} of {model.n_days} · policy `{c["policy"]}`{extra}

| Gini of exposure | coverage | shown-genre entropy | CTR |
|---|---|---|---|
| **{f("gini")}** | {f("coverage")} | {f("entropy_shown")} | {f("ctr")} |

World: {model.config.users.n_users:,} users × {model.config.catalog.n_items:,} tracks,
eta = {c["eta"]:g}, drift share = {c["drift_share"]:g}, retrain every {c["retrain_every_days"]} day(s),
seed {c["seed"]}. Changed parameters take effect on **Reset**; one step (▶ runs) = one day.

{_HELP}
"""
    )


@solara.component
def UserGenres(model: DashboardModel):
    """Genre shares shown to the sampled user (solid) against the user's true taste (dashed)."""
    update_counter.get()
    d = model.user_genre_shares()
    fig = Figure(figsize=(6, 4.0), layout="constrained")
    ax = fig.subplots()
    ga, gb = d["genre_a"], d["genre_b"]
    if d["day"].size:
        shown, taste, day = d["shown"], d["taste"], d["day"]
        other = 1.0 - shown[:, ga] - shown[:, gb]
        ax.plot(day, shown[:, ga], color=_BLUE, lw=2, label=f"shown: genre {ga} (A)")
        ax.plot(day, shown[:, gb], color=_ORANGE, lw=2, label=f"shown: genre {gb} (B)")
        ax.plot(day, other, color=_GREY, lw=1.5, label="shown: other genres")
        ax.plot(day, taste[:, ga], color=_BLUE, lw=1.5, ls="--", label="true taste A")
        ax.plot(day, taste[:, gb], color=_ORANGE, lw=1.5, ls="--", label="true taste B")
        fig.legend(fontsize=7, ncol=3, loc="outside lower center", frameon=False)
    else:
        ax.text(0.5, 0.5, "press Step or ▶", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("day")
    ax.set_ylabel(f"share of shown items ({USER_WINDOW}-day window)")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"Sampled user {model.sampled_user}: genre shares shown vs true taste", fontsize=11)
    solara.FigureMatplotlib(fig, format="png")


COMPONENTS = [
    (Status, 0),
    make_plot_component(
        "gini",
        post_process=_metric_axes(
            f"Gini of exposure ({WINDOW}-day window, whole catalog)", "Gini (0 = equal, 1 = one item)", _BLUE
        ),
    ),
    make_plot_component(
        "coverage",
        post_process=_metric_axes(
            f"Catalog coverage ({WINDOW}-day window)", "fraction of catalog shown", _GREEN
        ),
    ),
    make_plot_component(
        "entropy_shown",
        post_process=_metric_axes(
            f"Per-user shown-genre entropy ({USER_WINDOW}-day window)", "H / ln G (mean per user)", _ORANGE
        ),
    ),
    (UserGenres, 0),
]


@solara.component
def Page():
    """One model per browser session; SolaraViz draws the controls and the components."""
    model = solara.use_memo(lambda: DashboardModel(**INITIAL, base_config=BASE_CONFIG), [])
    solara.Style(_CSS)
    SolaraViz(
        model,
        components=COMPONENTS,
        model_params=model_params(),
        name="recloop: recommendation feedback loop",
        play_interval=50,
    )
