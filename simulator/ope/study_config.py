"""The schema of an off-policy evaluation study (``recloop ope CONFIG``).

A study config is TOML with five tables; unknown keys are errors and every message names the key
(``study.seeds``, ``targets.greedy.epsilon``, ``world.users.n_users``)::

    [study]        name, description, seeds, n_rounds, share_model
    [estimators]   which estimators, the clipping sweep, the reward model, the bootstrap
    [loggers.<label>]   logging policies: type + hyperparameters, as [policies.<label>]
    [targets.<label>]   target policies, likewise
    [world]        the simulated world: the main experiment config's tables (catalog, users,
                   relevance, history, click_model, simulation, metrics), validated by
                   :func:`simulator.config.parse_config`

The world must be **stationary** so that the logging and the target policies face the same
distribution: no taste drift (``world.users.drift_sigma = 0``), no satiation
(``world.users.satiation_strength = 0``), and frozen policies (fitted once on the pre-system
history: ``world.simulation.retrain_every_days > study.n_rounds``, which is the default the study
sets when the key is absent). Alternating-interest users are allowed: their taste is a
deterministic function of the day, the same in every run of a seed.

Loggers must give every (item, position) an exactly known, positive probability: ``random`` or
``epsilon_greedy`` with ``epsilon > 0`` around a frozen scoring policy. Targets must have exact
propensities and stay frozen: deterministic policies (``greedy``, ``ipw``, ``oracle``,
``popularity``, and the re-rankers ``mmr``/``calibrated`` of one of them), ``random`` and
``epsilon_greedy``. Bandits (they learn online) and ``boltzmann`` (Monte-Carlo propensities) are
refused.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from simulator.config import ExperimentConfig, PolicySpec, _suggest, apply_overrides, parse_config, read_toml
from simulator.errors import ConfigError

__all__ = [
    "FROZEN_SCORING",
    "LOGGER_TYPES",
    "TARGET_TYPES",
    "EstimatorsSection",
    "OPEStudyConfig",
    "StudySection",
    "load_study_config",
    "parse_study_config",
]

#: Scoring policies that are deterministic and change only when refitted (frozen in a study).
FROZEN_SCORING: tuple[str, ...] = ("greedy", "ipw", "oracle", "popularity")
#: Deterministic re-rankers of a frozen scoring base.
DETERMINISTIC_WRAPPERS: tuple[str, ...] = ("mmr", "calibrated")
#: Logging policies with exact, positive propensities for every (item, position).
LOGGER_TYPES: tuple[str, ...] = ("random", "epsilon_greedy")
#: Target policies with exact position propensities (:func:`simulator.ope.simulation.position_marginals`).
TARGET_TYPES: tuple[str, ...] = ("random", "epsilon_greedy", *FROZEN_SCORING, *DETERMINISTIC_WRAPPERS)
#: World tables (those of the main experiment config that describe the world).
WORLD_TABLES: tuple[str, ...] = (
    "catalog",
    "users",
    "relevance",
    "history",
    "click_model",
    "simulation",
    "metrics",
)
_LABEL = re.compile(r"^[A-Za-z0-9_-]+$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudySection(_Section):
    """``[study]``: what the study is, its seeds and how many days each run covers."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="folder name under results/ope/")
    description: str = Field("", description="scenario text for the summary")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(
        default=[0], min_length=1, description="one logged run and one on-policy run per target per seed"
    )
    n_rounds: Annotated[int, Field(gt=0)] = Field(14, description="days each run simulates")
    share_model: bool = Field(
        True,
        description="initialise every policy's model from one stream, so loggers and targets "
        "wrapping the same base share the same frozen model",
    )

    @field_validator("seeds")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be unique; got {v}")
        return v


class EstimatorsSection(_Section):
    """``[estimators]``: estimators, clipping sweep, reward model and bootstrap."""

    names: list[Literal["ips", "snips", "dm", "dr"]] = Field(
        default=["ips", "snips", "dm", "dr"], min_length=1, description="slate estimators to run"
    )
    clip_lambdas: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(
        default=[1.0, 3.0, 10.0, 30.0, 100.0],
        description="clipping thresholds of the sweep (the unclipped estimate is always included)",
    )
    clip_estimators: list[Literal["ips", "dr"]] = Field(
        default=["ips"], description="estimators swept over clip_lambdas"
    )
    reward_model: Literal["item_position"] = Field(
        "item_position",
        description="q(a, k) = sigmoid(b + beta_a + beta_k): per item and position, no user "
        "(deliberately misspecified)",
    )
    reward_model_folds: Annotated[int, Field(ge=1, le=20)] = Field(
        2, description="cross-fitting folds over sessions (1 = fit and predict on the whole log)"
    )
    reward_model_regularization: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        1.0, description="L2 strength of the logistic reward model"
    )
    n_bootstrap: Annotated[int, Field(ge=10)] = Field(1000, description="bootstrap resamples of sessions")
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = Field(
        0.05, description="intervals have nominal coverage 1 - alpha"
    )

    @model_validator(mode="after")
    def _checks(self) -> EstimatorsSection:
        for key in ("names", "clip_estimators", "clip_lambdas"):
            values = getattr(self, key)
            if len(set(values)) != len(values):
                raise ValueError(f"estimators.{key} has repeated values: {values}")
        missing = [e for e in self.clip_estimators if e not in self.names]
        if missing:
            raise ValueError(
                f"estimators.clip_estimators must be among estimators.names {self.names}; got {missing}"
            )
        return self


def _default_type(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: ({"type": k} | dict(s)) if isinstance(s, dict) else s for k, s in v.items()}
    return v


class OPEStudyConfig(_Section):
    """The whole, validated OPE study config (see the module docstring)."""

    study: StudySection
    estimators: EstimatorsSection = EstimatorsSection()
    loggers: dict[str, PolicySpec] = Field(min_length=1)
    targets: dict[str, PolicySpec] = Field(min_length=1)
    world: dict[str, Any] = Field(default_factory=dict)

    _experiment: ExperimentConfig | None = PrivateAttr(default=None)

    @field_validator("loggers", "targets", mode="before")
    @classmethod
    def _types(cls, v: Any) -> Any:
        return _default_type(v)

    @model_validator(mode="after")
    def _cross_checks(self) -> OPEStudyConfig:
        for group in ("loggers", "targets"):
            for label in getattr(self, group):
                if not _LABEL.match(label):
                    raise ValueError(f"{group}.{label}: labels may hold letters, digits, '_' and '-' only")
        both = sorted(set(self.loggers) & set(self.targets))
        if both:
            raise ValueError(
                f"labels must differ between loggers and targets (each label is one policy with its "
                f"own random stream); both have {both}"
            )
        for label, spec in self.loggers.items():
            _check_logger(label, spec)
        for label, spec in self.targets.items():
            _check_target(label, spec)
        for key in ("experiment", "policies", "interventions", "sweep"):
            if key in self.world:
                where = {
                    "experiment": "[study] (name, seeds, n_rounds)",
                    "policies": "[loggers.<label>] and [targets.<label>]",
                    "interventions": "nowhere: policies are frozen in an OPE study",
                    "sweep": "nowhere: run one study per setting",
                }[key]
                raise ValueError(f"world.{key} is not allowed here; set it in {where}")
        unknown = [k for k in self.world if k not in WORLD_TABLES]
        if unknown:
            close = difflib.get_close_matches(unknown[0], WORLD_TABLES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"world.{unknown[0]}: unknown table{hint}; world tables: {', '.join(WORLD_TABLES)}"
            )
        return self

    # -- the world ------------------------------------------------------------------------------

    def experiment_data(self) -> dict[str, Any]:
        """The main experiment config mapping of this study (every logger and target a policy)."""
        world = {k: dict(v) if isinstance(v, dict) else v for k, v in self.world.items()}
        sim = dict(world.get("simulation", {}))
        sim.setdefault("retrain_every_days", self.study.n_rounds + 1)  # frozen after the first fit
        world["simulation"] = sim
        metrics = dict(world.get("metrics", {}))
        metrics.setdefault("regret", False)  # the oracle pass per round is not needed here
        world["metrics"] = metrics
        policies = {
            label: spec.model_dump(mode="json")  # type + hyperparameters (extra fields)
            for label, spec in (*self.loggers.items(), *self.targets.items())
        }
        return {
            **world,
            "experiment": {
                "name": self.study.name,
                "description": self.study.description,
                "seeds": list(self.study.seeds),
                "n_rounds": self.study.n_rounds,
            },
            "policies": policies,
        }

    def experiment_config(self) -> ExperimentConfig:
        """The validated :class:`~simulator.config.ExperimentConfig` of the world and policies.

        Raises
        ------
        ConfigError
            Naming the study's keys (``world.users.n_users``, ``targets.<label>.<param>``), also
            when the world is not stationary or the policies would not stay frozen.
        """
        if self._experiment is not None:
            return self._experiment
        try:
            cfg = parse_config(self.experiment_data(), source="(study world)")
        except ConfigError as err:
            raise ConfigError(self._rename(str(err))) from None
        problems = []
        if cfg.users.drift_sigma > 0:
            problems.append(
                "world.users.drift_sigma must be 0 (an OPE study needs a stationary world: the "
                f"logger and the targets must face the same users); got {cfg.users.drift_sigma}"
            )
        if cfg.users.satiation_strength > 0:
            problems.append(
                "world.users.satiation_strength must be 0 (satiation makes relevance depend on "
                f"the policy's own past slates); got {cfg.users.satiation_strength}"
            )
        every = cfg.simulation.retrain_every_days
        if every <= self.study.n_rounds:
            problems.append(
                f"world.simulation.retrain_every_days must be > study.n_rounds = {self.study.n_rounds} "
                f"(policies are frozen after their first fit; leave the key out for the default); got {every}"
            )
        if problems:
            raise ConfigError("invalid OPE study config:\n" + "\n".join(f"  {p}" for p in problems))
        self._experiment = cfg
        return cfg

    def _rename(self, message: str) -> str:
        """Map the main config's key paths onto the study's (policies.X -> loggers.X, ...)."""

        def policy(m: re.Match[str]) -> str:
            label = m.group(1)
            return f"{'loggers' if label in self.loggers else 'targets'}.{label}"

        message = re.sub(r"\bpolicies\.([A-Za-z0-9_-]+)", policy, message)
        message = message.replace("experiment.", "study.")
        lines = []
        for line in message.splitlines():
            m = re.match(r"^(\s+)([A-Za-z_<][\w.<>]*):", line)
            if m and m.group(2).split(".")[0] in (*WORLD_TABLES, "<root>"):
                head = "world" if m.group(2) == "<root>" else f"world.{m.group(2)}"
                rest = line[m.end() :]
                if m.group(2) == "<root>":  # a cross-check of the world: drop the echoed mapping
                    rest = re.sub(r"; got \{.*\}$", "", rest)
                line = f"{m.group(1)}{head}:{rest}"
            lines.append(line)
        return "\n".join(lines).replace("invalid config (study world)", "invalid OPE study config")


def _base_of(spec: PolicySpec) -> str:
    return str(spec.params.get("base", "greedy"))


def _check_logger(label: str, spec: PolicySpec) -> None:
    where = f"loggers.{label}"
    if spec.type not in LOGGER_TYPES:
        raise ValueError(
            f"{where}.type: a logging policy must give every (item, position) an exactly known, "
            f"positive probability; supported: random, epsilon_greedy (epsilon > 0); got {spec.type!r}"
        )
    if spec.type == "epsilon_greedy":
        eps = spec.params.get("epsilon", 0.05)
        if isinstance(eps, int | float) and not eps > 0:
            raise ValueError(
                f"{where}.epsilon must be > 0 for a logging policy (with epsilon = 0 most "
                f"(item, position) pairs have probability 0 and IPS cannot see them); got {eps}"
            )
        if _base_of(spec) not in FROZEN_SCORING:
            raise ValueError(
                f"{where}.base must be a frozen scoring policy {FROZEN_SCORING}; got {_base_of(spec)!r}"
            )


def _check_target(label: str, spec: PolicySpec) -> None:
    where = f"targets.{label}"
    if spec.type not in TARGET_TYPES:
        from simulator.policies import POLICIES

        why = "is not a registered policy"
        if spec.type == "boltzmann":
            why = "has Monte-Carlo propensities beyond position 0 (not exact)"
        elif spec.type in POLICIES:
            why = "learns online (bandit), so it is not frozen"
        raise ValueError(
            f"{where}.type: {spec.type!r} {why}; OPE targets need exact propensities and a frozen "
            f"state: {', '.join(TARGET_TYPES)}"
        )
    if spec.type in ("epsilon_greedy", *DETERMINISTIC_WRAPPERS) and _base_of(spec) not in FROZEN_SCORING:
        raise ValueError(
            f"{where}.base must be a frozen scoring policy {FROZEN_SCORING}; got {_base_of(spec)!r}"
        )


_SECTIONS: dict[str, type[BaseModel]] = {"study": StudySection, "estimators": EstimatorsSection}


def _format_errors(err: PydanticValidationError, source: str) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
            parent = e["loc"][0] if len(e["loc"]) == 2 else None
            if parent in _SECTIONS:
                msg += _suggest(str(e["loc"][-1]), _SECTIONS[str(parent)].model_fields)
            elif len(e["loc"]) == 1:
                msg += _suggest(str(e["loc"][0]), OPEStudyConfig.model_fields)
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in {"model_type", "dict_type", "value_error"} and loc:
            msg += f"; got {e['input']!r}"
        if msg.startswith(f"{loc}.") or (
            not loc and msg.startswith(("loggers", "targets", "world.", "labels"))
        ):
            lines.append(f"  {msg}")  # a cross-check: its message names the key itself
        else:
            lines.append(f"  {loc or '<root>'}: {msg}")
    return ConfigError(f"invalid OPE study config {source}:\n" + "\n".join(lines))


def parse_study_config(data: dict[str, Any], source: str = "<dict>") -> OPEStudyConfig:
    """Validate an OPE study mapping, world and policies included.

    Raises
    ------
    ConfigError
        Listing every invalid key with its rule and value.
    """
    try:
        cfg = OPEStudyConfig.model_validate(data)
    except PydanticValidationError as err:
        raise _format_errors(err, source) from None
    cfg.experiment_config()  # the world and every policy are valid before anything runs
    return cfg


def load_study_config(path: str | Path, overrides: list[str] | None = None) -> OPEStudyConfig:
    """Read, override (``key.path=value``) and validate an OPE study TOML file.

    Raises
    ------
    ConfigError
        Missing file, malformed TOML, or any invalid key (named in the message).
    """
    data = read_toml(path, "OPE study config")
    return parse_study_config(apply_overrides(data, overrides or []), source=str(path))
