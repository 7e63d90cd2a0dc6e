"""The dashboard's model: a small ``mesa.Model`` adapter around :class:`RecloopModel`.

SolaraViz steps a model by calling ``model.step()`` and rebuilds it (button *Reset*) by calling
the model class with the current controls as keyword arguments. :class:`DashboardModel` is that
class: its constructor validates the controls (:func:`validate_controls`), turns them into an
experiment config on top of a base config (:func:`dashboard_config`) and builds a fresh
:class:`~simulator.engine.model.RecloopModel`; its ``step()`` advances the SimPy clock by one day
(``model.run(1)``) — SimPy stays the only clock.

This module does not import solara: it is what the tests and the CLI use to validate controls.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields
from typing import Any

import mesa
import numpy as np

from simulator.config import ExperimentConfig, parse_config
from simulator.errors import ConfigError, ValidationError

__all__ = [
    "CONTROLS",
    "DEFAULT_WORLD",
    "POLICY_CHOICES",
    "Control",
    "ControlError",
    "DashboardModel",
    "available_policies",
    "controls_from_config",
    "dashboard_config",
    "default_base_config",
    "validate_controls",
]


class ControlError(ValidationError):
    """A dashboard control is outside its range; the message names the control and the range."""


@dataclass(frozen=True)
class Control:
    """One dashboard control: a slider (int or float) or a select.

    ``min``/``max`` are both the slider's range and the validation range (inclusive).
    """

    name: str
    label: str
    kind: str  # "float", "int" or "select"
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    config_key: str | None = None  # where the value goes in the experiment config
    help: str = ""


#: Policies offered by the dashboard, in menu order (those registered at run time are shown).
POLICY_CHOICES: tuple[str, ...] = (
    "greedy",
    "epsilon_greedy",
    "boltzmann",
    "thompson",
    "ucb",
    "ipw",
    "mmr",
    "calibrated",
    "linear_thompson",
    "linucb",
    "popularity",
    "random",
    "oracle",
)

CONTROLS: dict[str, Control] = {
    c.name: c
    for c in (
        Control("policy", "policy", "select", "greedy", help="the recommender in the loop"),
        Control(
            "epsilon", "epsilon", "float", 0.05, 0.0, 1.0, 0.01,
            help="epsilon_greedy: share of slots filled with a uniformly random item",
        ),
        Control(
            "temperature", "temperature", "float", 0.05, 0.01, 1.0, 0.01,
            help="boltzmann: Plackett-Luce sampling of exp(score / T)",
        ),
        Control(
            "eta", "eta", "float", 1.0, 0.0, 3.0, 0.1, "click_model.eta",
            help="position bias: P(examine position k) = 1 / k^eta, k = 1, 2, ...",
        ),
        Control(
            "drift_share", "drift share", "float", 0.2, 0.0, 1.0, 0.05,
            "users.alternating_share", help="share of users whose interest alternates between two genres",
        ),
        Control(
            "retrain_every_days", "retrain (days)", "int", 1, 1, 14, 1,
            "simulation.retrain_every_days", help="days between retrains of model policies",
        ),
        Control("seed", "seed", "int", 0, 0, 999, 1, help="world, sessions and clicks"),
    )
}  # fmt: skip

#: The default dashboard world: music_collapse, small enough for ~0.2 s per day on a laptop, with
#: a 14-day history and training window so that the loop closes within the first weeks.
DEFAULT_WORLD: dict[str, Any] = {
    "experiment": {
        "name": "dashboard",
        "description": "music_collapse at dashboard size",
        "n_rounds": 120,
        "seeds": [0],
    },
    "catalog": {"n_items": 500, "n_genres": 12, "n_artists": 150, "embedding_dim": 16},
    "users": {"n_users": 1000, "taste_concentration": 0.3, "alternating_share": 0.2},
    "history": {"days": 14, "popularity_exponent": 0.0},
    "click_model": {"type": "pbm", "eta": 1.0},
    "simulation": {"slate_size": 10, "retrain_every_days": 1, "train_window_days": 14, "log_fraction": 0.0},
    "metrics": {"window_days": 7, "user_window_days": 14, "n_tracked_users": 40, "regret_users": 200},
    "policies": {"greedy": {"factors": 32, "alpha": 20.0}},
}

#: Size caps applied to a user's config unless ``--full-size`` (keeps the dashboard fluid).
SIZE_CAPS: dict[str, int] = {
    "users.n_users": 1000,
    "catalog.n_items": 500,
    "catalog.n_artists": 150,
    "metrics.n_tracked_users": 40,
    "metrics.regret_users": 200,
}


def default_base_config() -> ExperimentConfig:
    """The built-in dashboard world (:data:`DEFAULT_WORLD`)."""
    return parse_config(DEFAULT_WORLD, "<dashboard default>")


def available_policies() -> list[str]:
    """The dashboard's policy menu: :data:`POLICY_CHOICES` that are registered, in that order."""
    from simulator.policies import POLICIES

    return [p for p in POLICY_CHOICES if p in POLICIES]


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool | np.bool_)


def validate_controls(**values: Any) -> dict[str, Any]:
    """Check dashboard controls against their ranges; return them complete (defaults filled).

    Raises
    ------
    ControlError
        Unknown control, a value of the wrong type, or out of range, e.g.
        ``epsilon must be a float in [0, 1]; got 1.5``.
    """
    unknown = [k for k in values if k not in CONTROLS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], CONTROLS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ControlError(f"unknown dashboard control {unknown[0]!r}{hint}; controls: {', '.join(CONTROLS)}")
    out: dict[str, Any] = {}
    for name, c in CONTROLS.items():
        v = values.get(name, c.default)
        if c.kind == "select":
            choices = available_policies()
            if v not in choices:
                close = difflib.get_close_matches(str(v), choices, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ControlError(f"{name} must be one of {', '.join(choices)}; got {v!r}{hint}")
        elif c.kind == "int":
            ok = _is_number(v) and float(v).is_integer() and c.min <= v <= c.max
            if not ok:
                raise ControlError(f"{name} must be an integer in [{c.min:g}, {c.max:g}]; got {v!r}")
            v = int(v)
        else:
            ok = _is_number(v) and math.isfinite(v) and c.min <= v <= c.max
            if not ok:
                raise ControlError(f"{name} must be a float in [{c.min:g}, {c.max:g}]; got {v!r}")
            v = float(v)
        out[name] = v
    return out


def _get(d: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        d = d[part]
    return d


def _set(d: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        d = d.setdefault(part, {})
    d[last] = value


def cap_sizes(config: ExperimentConfig) -> tuple[ExperimentConfig, list[str]]:
    """Shrink a config to the dashboard's sizes (:data:`SIZE_CAPS`); return it and what changed."""
    data = config.model_dump(mode="json")
    changed = []
    for key, cap in SIZE_CAPS.items():
        v = _get(data, key)
        if isinstance(v, int) and v > cap:
            _set(data, key, cap)
            changed.append(f"{key} {v:,} -> {cap:,}")
    if data["simulation"]["slate_size"] > data["catalog"]["n_items"]:
        data["simulation"]["slate_size"] = data["catalog"]["n_items"]
    return parse_config(data, "<dashboard>"), changed


def controls_from_config(config: ExperimentConfig) -> dict[str, Any]:
    """Initial control values taken from a config (its first policy, eta, drift share, ...).

    Raises
    ------
    ControlError
        If a value of the config is outside the control's range (e.g. ``click_model.eta = 5``).
    """
    label, spec = next(iter(config.policies.items()))
    params = spec.params
    values: dict[str, Any] = {"policy": spec.type, "seed": config.experiment.seeds[0]}
    for name in ("epsilon", "temperature"):
        if name in params:
            values[name] = params[name]
    data = config.model_dump(mode="json")
    for c in CONTROLS.values():
        if c.config_key:
            values[c.name] = _get(data, c.config_key)
    try:
        return validate_controls(**values)
    except ControlError as err:
        where = {c.name: c.config_key for c in CONTROLS.values() if c.config_key}
        for name, key in where.items():
            if str(err).startswith(f"{name} "):
                raise ControlError(f"{key}: the dashboard's {err}") from None
        if str(err).startswith(("epsilon ", "temperature ")):
            raise ControlError(f"policies.{label}.{str(err).split()[0]}: the dashboard's {err}") from None
        raise


def _policy_params(config: ExperimentConfig, policy: str, controls: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters of ``policy``: the config's (first policy of that type), then the controls."""
    from simulator.policies import POLICIES

    params: dict[str, Any] = {}
    for spec in config.policies.values():
        if spec.type == policy:
            params = dict(spec.params)
            break
    names = {f.name for f in fields(POLICIES[policy])}
    if "base" in names and "base_params" in names and params.get("base_params") is None:
        base = params.get("base", "greedy")
        for spec in config.policies.values():
            if spec.type == base and spec.params:
                params["base_params"] = dict(spec.params)
                break
    if policy in ("greedy", "ipw") and not params:
        for spec in config.policies.values():
            if spec.type == "greedy":
                params = {k: v for k, v in spec.params.items() if k in names}
                break
    for name in ("epsilon", "temperature"):
        if name in names:
            params[name] = controls[name]
    return params


def dashboard_config(base: ExperimentConfig, controls: dict[str, Any]) -> ExperimentConfig:
    """The experiment config of one dashboard run: ``base`` with the controls applied.

    One policy (label ``dashboard``), one seed (the ``seed`` control), no impression log.
    """
    data = base.model_dump(mode="json")
    for c in CONTROLS.values():
        if c.config_key:
            _set(data, c.config_key, controls[c.name])
    data["experiment"]["seeds"] = [controls["seed"]]
    data["simulation"]["log_fraction"] = 0.0
    policy = controls["policy"]
    data["policies"] = {"dashboard": {"type": policy, **_policy_params(base, policy, controls)}}
    data["interventions"] = []
    data.pop("sweep", None)
    try:
        return parse_config(data, "<dashboard>")
    except ConfigError as err:
        raise ControlError(str(err)) from None


class _DayIndexed:
    """A read-only view of a ``mesa.DataCollector`` whose model table is indexed by day (1-based)."""

    def __init__(self, collector: mesa.DataCollector) -> None:
        self._collector = collector

    def get_model_vars_dataframe(self):
        df = self._collector.get_model_vars_dataframe().copy()
        df.index = np.arange(1, len(df) + 1)
        df.index.name = "day"
        return df

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collector, name)


class DashboardModel(mesa.Model):
    """A :class:`RecloopModel` behind dashboard controls; one ``step()`` is one simulated day.

    Parameters
    ----------
    policy : str
        Registered policy name (:func:`available_policies`).
    epsilon : float in [0, 1]
        Used by ``epsilon_greedy``.
    temperature : float in [0.01, 1]
        Used by ``boltzmann``.
    eta : float in [0, 3]
        Position bias of the click model (``click_model.eta``).
    drift_share : float in [0, 1]
        Share of alternating-interest users (``users.alternating_share``).
    retrain_every_days : int in [1, 14]
        Retrain cadence (``simulation.retrain_every_days``).
    seed : int in [0, 999]
    base_config : ExperimentConfig, optional
        The world; default :func:`default_base_config`.

    Raises
    ------
    ControlError
        If a control is out of range (see :data:`CONTROLS`).

    Attributes
    ----------
    inner : RecloopModel
        The simulation; ``inner.datacollector`` holds one row per simulated day.
    sampled_user : int or None
        The most active tracked alternating-interest user (else tracked user): its genre shares
        are plotted.
    """

    def __init__(
        self,
        policy: str = CONTROLS["policy"].default,
        epsilon: float = CONTROLS["epsilon"].default,
        temperature: float = CONTROLS["temperature"].default,
        eta: float = CONTROLS["eta"].default,
        drift_share: float = CONTROLS["drift_share"].default,
        retrain_every_days: int = CONTROLS["retrain_every_days"].default,
        seed: int = CONTROLS["seed"].default,
        base_config: ExperimentConfig | None = None,
        rng: Any = None,
    ) -> None:
        from simulator.engine.model import RecloopModel

        self.controls = validate_controls(
            policy=policy,
            epsilon=epsilon,
            temperature=temperature,
            eta=eta,
            drift_share=drift_share,
            retrain_every_days=retrain_every_days,
            seed=seed,
        )
        super().__init__(rng=self.controls["seed"])
        self.base_config = base_config if base_config is not None else default_base_config()
        self.config = dashboard_config(self.base_config, self.controls)
        self.inner = RecloopModel(self.config, "dashboard", self.controls["seed"])
        self.n_days = self.config.experiment.n_rounds
        # the sampled user: the most active tracked alternating-interest user (else tracked user),
        # so that the genre-share plot fills from the first days
        tracked = self.inner.tracker.tracked
        pop = self.inner.population
        alt = tracked[pop.alternating[tracked]]
        pick = alt if alt.size else tracked
        self.sampled_user = int(pick[np.argmax(pop.activity[pick])]) if pick.size else None
        self._sampled_row = int(np.flatnonzero(tracked == self.sampled_user)[0]) if pick.size else None
        self.running = True

    @property
    def datacollector(self) -> _DayIndexed:
        """The inner model's collector, its table indexed by day 1, 2, ... (SolaraViz's
        ``make_plot_component`` plots against the index: step n = day n)."""
        return _DayIndexed(self.inner.datacollector)

    @property
    def day(self) -> int:
        """Days simulated so far."""
        return self.inner.day

    def step(self) -> None:
        """One simulated day: the SimPy clock runs retraining, drift and the round of sessions."""
        if self.inner.day >= self.n_days:
            self.running = False
            return
        self.inner.run(1)
        self.running = self.inner.day < self.n_days

    def latest(self) -> dict[str, float]:
        """The last day's metric values (empty before the first day)."""
        return dict(self.inner.metrics_)

    def user_genre_shares(self) -> dict[str, np.ndarray]:
        """The sampled user's genre shares per simulated day.

        Returns
        -------
        dict with ``day`` (shape (T,), int, 1-based), ``shown`` and ``taste`` (shape (T, G),
        float; shown shares over the per-user window, NaN before anything was shown),
        ``genre_a``, ``genre_b`` (the user's two alternating genres, or its two favourites).
        """
        g = self.inner.catalog.n_genres
        rows = self.inner.user_rows
        if self._sampled_row is None or not rows:
            empty = np.zeros((0, g))
            return {"day": np.zeros(0, int), "shown": empty, "taste": empty, "genre_a": 0, "genre_b": 1}
        r = self._sampled_row
        shown = np.stack([s["shown_share"][r] for s in rows]).astype(np.float64)
        taste = np.stack([s["taste"][r] for s in rows]).astype(np.float64)
        pop = self.inner.population
        u = self.sampled_user
        if pop.alternating[u]:
            ga, gb = int(pop.genre_a[u]), int(pop.genre_b[u])
        else:
            ga, gb = (int(x) for x in np.argsort(-taste[-1])[:2])
        days = np.array([s["round"] for s in rows], dtype=int) + 1
        return {"day": days, "shown": shown, "taste": taste, "genre_a": ga, "genre_b": gb}
