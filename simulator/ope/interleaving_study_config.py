"""The schema of an interleaving power study (``recloop interleave CONFIG``).

A study config is TOML with four tables; unknown keys are errors and every message names the key
(``study.alpha``, ``pairs.small.b.epsilon``, ``world.users.n_users``)::

    [study]          name, description, seeds, the test level and target power, the grid of
                     experiment sizes, repetitions, the brute-force validation
    [methods]        which interleaving methods run against the A/B test
    [pairs.<label>]  two policies with a known utility gap: ``a = {type = ..., ...}`` and
                     ``b = {type = ..., ...}`` (each as ``[policies.<label>]`` of an experiment)
    [world]          the simulated world: the experiment config's tables ``catalog``, ``users``,
                     ``relevance``, ``history``, ``click_model`` (position-based only) and
                     ``simulation`` (``slate_size``, ``train_window_days``), validated by
                     :func:`simulator.config.parse_config`

Policies are frozen: fitted once on the pre-system history, then asked for slates. Their true
utility is computed from their exact position marginals
(:func:`simulator.ope.simulation.position_marginals`), so they must be deterministic
(``greedy``, ``ipw``, ``oracle``, ``popularity``, ``mmr``/``calibrated`` of one of them),
``random`` or ``epsilon_greedy`` over a frozen scoring policy.
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
from simulator.ope.study_config import DETERMINISTIC_WRAPPERS, FROZEN_SCORING, TARGET_TYPES

__all__ = [
    "InterleavingStudyConfig",
    "MethodsSection",
    "PairSection",
    "PowerStudySection",
    "load_interleaving_study",
    "parse_interleaving_study",
]

#: World tables of an interleaving study.
WORLD_TABLES: tuple[str, ...] = ("catalog", "users", "relevance", "history", "click_model", "simulation")
_LABEL = re.compile(r"^[A-Za-z0-9_-]+$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PowerStudySection(_Section):
    """``[study]``: seeds, the test, the grid of experiment sizes and the repetitions."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="folder name under results/interleaving/")
    description: str = Field("", description="scenario text for the summary")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(
        default=[0], min_length=1, description="one world (catalog, users, fitted policies) per seed"
    )
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = Field(0.05, description="significance level")
    power: Annotated[float, Field(gt=0, lt=1)] = Field(0.8, description="target detection rate")
    experiments: Annotated[int, Field(ge=10, le=1_000_000)] = Field(
        2000, description="repeated experiments per (seed, pair, method, size)"
    )
    sessions_min: Annotated[int, Field(ge=4)] = Field(20, description="smallest experiment (sessions)")
    sessions_max: Annotated[int, Field(ge=4, le=10**9)] = Field(
        1_000_000, description="largest experiment (sessions)"
    )
    n_sizes: Annotated[int, Field(ge=2, le=500)] = Field(
        36, description="experiment sizes, geometrically spaced from sessions_min to sessions_max"
    )
    draws_per_user: Annotated[int, Field(ge=1, le=1000)] = Field(
        8, description="slates drawn per user for the session pool (matters for random policies)"
    )
    validate_experiments: Annotated[int, Field(ge=0)] = Field(
        200, description="brute-force experiments (explicit sessions, clicks, tests) per check; 0 = off"
    )
    validate_max_sessions: Annotated[int, Field(ge=4)] = Field(
        10_000, description="largest experiment size of the brute-force check"
    )

    @field_validator("seeds")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be unique; got {v}")
        return v

    @model_validator(mode="after")
    def _range(self) -> PowerStudySection:
        if self.sessions_max <= self.sessions_min:
            raise ValueError(
                f"study.sessions_max must be > study.sessions_min = {self.sessions_min}; "
                f"got {self.sessions_max}"
            )
        return self


class MethodsSection(_Section):
    """``[methods]``: the A/B test and the interleaving methods compared with it."""

    ab_test: Literal["welch"] = Field(
        "welch", description="A/B: Welch two-sample t-test on clicks per session, 50/50 split"
    )
    interleaving: list[Literal["team_draft", "balanced"]] = Field(
        default=["team_draft", "balanced"], min_length=1, description="credit + sign test"
    )

    @field_validator("interleaving")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"methods.interleaving has repeated values: {v}")
        return v


class PairSection(_Section):
    """``[pairs.<label>]``: policies A and B (A is usually the better one; it need not be)."""

    description: str = Field("", description="what the pair stands for")
    a: PolicySpec
    b: PolicySpec


class InterleavingStudyConfig(_Section):
    """The whole, validated interleaving power study (see the module docstring)."""

    study: PowerStudySection
    methods: MethodsSection = MethodsSection()
    pairs: dict[str, PairSection] = Field(min_length=1)
    world: dict[str, Any] = Field(default_factory=dict)

    _experiment: ExperimentConfig | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_checks(self) -> InterleavingStudyConfig:
        for label, pair in self.pairs.items():
            if not _LABEL.match(label):
                raise ValueError(f"pairs.{label}: labels may hold letters, digits, '_' and '-' only")
            for side in ("a", "b"):
                _check_policy(f"pairs.{label}.{side}", getattr(pair, side))
        for key in ("experiment", "policies", "interventions", "sweep", "metrics"):
            if key in self.world:
                raise ValueError(
                    f"world.{key} is not allowed here; an interleaving study sets its seeds in "
                    "[study] and its policies in [pairs.<label>]"
                )
        unknown = [k for k in self.world if k not in WORLD_TABLES]
        if unknown:
            close = difflib.get_close_matches(unknown[0], WORLD_TABLES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"world.{unknown[0]}: unknown table{hint}; world tables: {', '.join(WORLD_TABLES)}"
            )
        return self

    def policy_label(self, pair: str, side: str) -> str:
        """Label of one side of a pair in the world's experiment config (``<pair>__a``)."""
        return f"{pair}__{side}"

    def experiment_data(self) -> dict[str, Any]:
        """The main experiment config mapping of the world (every pair side a policy)."""
        world = {k: dict(v) if isinstance(v, dict) else v for k, v in self.world.items()}
        metrics = {"regret": False, "n_tracked_users": 2}
        policies = {
            self.policy_label(label, side): getattr(pair, side).model_dump(mode="json")
            for label, pair in self.pairs.items()
            for side in ("a", "b")
        }
        return {
            **world,
            "metrics": metrics,
            "experiment": {"name": self.study.name, "seeds": list(self.study.seeds), "n_rounds": 1},
            "policies": policies,
        }

    def experiment_config(self) -> ExperimentConfig:
        """The validated :class:`~simulator.config.ExperimentConfig` of the world and policies.

        Raises
        ------
        ConfigError
            Naming the study's keys (``world.users.n_users``, ``pairs.<label>.a.<param>``), or
            a click model other than the position-based model.
        """
        if self._experiment is not None:
            return self._experiment
        try:
            cfg = parse_config(self.experiment_data(), source="(study world)")
        except ConfigError as err:
            raise ConfigError(self._rename(str(err))) from None
        if cfg.click_model.type != "pbm":
            raise ConfigError(
                "invalid interleaving study config:\n  world.click_model.type must be 'pbm' (the "
                "true utility and the outcome probabilities are exact under the position-based "
                f"model); got {cfg.click_model.type!r}"
            )
        self._experiment = cfg
        return cfg

    def _rename(self, message: str) -> str:
        def policy(m: re.Match[str]) -> str:
            return f"pairs.{m.group(1)}.{m.group(2)}"

        message = re.sub(r"\bpolicies\.([A-Za-z0-9_-]+?)__(a|b)\b", policy, message)
        lines = []
        for line in message.splitlines():
            m = re.match(r"^(\s+)([A-Za-z_<][\w.<>]*):", line)
            if m and m.group(2).split(".")[0] in (*WORLD_TABLES, "<root>"):
                head = "world" if m.group(2) == "<root>" else f"world.{m.group(2)}"
                rest = line[m.end() :]
                if m.group(2) == "<root>":
                    rest = re.sub(r"; got \{.*\}$", "", rest)
                line = f"{m.group(1)}{head}:{rest}"
            lines.append(line)
        return "\n".join(lines).replace("invalid config (study world)", "invalid interleaving study config")


def _check_policy(where: str, spec: PolicySpec) -> None:
    if spec.type not in TARGET_TYPES:
        raise ValueError(
            f"{where}.type: {spec.type!r} has no exact position marginals (its true utility is not "
            f"exactly known) or is not frozen; use one of {', '.join(TARGET_TYPES)}"
        )
    if spec.type in ("epsilon_greedy", *DETERMINISTIC_WRAPPERS):
        base = str(spec.params.get("base", "greedy"))
        if base not in FROZEN_SCORING:
            raise ValueError(f"{where}.base must be a frozen scoring policy {FROZEN_SCORING}; got {base!r}")


_SECTIONS: dict[str, type[BaseModel]] = {"study": PowerStudySection, "methods": MethodsSection}


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
                msg += _suggest(str(e["loc"][0]), InterleavingStudyConfig.model_fields)
            elif len(e["loc"]) == 3 and e["loc"][0] == "pairs":
                msg += _suggest(str(e["loc"][-1]), PairSection.model_fields)
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in {"model_type", "dict_type", "value_error"} and loc:
            msg += f"; got {e['input']!r}"
        if msg.startswith(("pairs.", "world.", "study.", "methods.")):
            lines.append(f"  {msg}")  # a cross-check: its message names the key itself
        else:
            lines.append(f"  {loc or '<root>'}: {msg}")
    return ConfigError(f"invalid interleaving study config {source}:\n" + "\n".join(lines))


def parse_interleaving_study(data: dict[str, Any], source: str = "<dict>") -> InterleavingStudyConfig:
    """Validate an interleaving study mapping, world and policies included.

    Raises
    ------
    ConfigError
        Listing every invalid key with its rule and value.
    """
    try:
        cfg = InterleavingStudyConfig.model_validate(data)
    except PydanticValidationError as err:
        raise _format_errors(err, source) from None
    cfg.experiment_config()
    return cfg


def load_interleaving_study(path: str | Path, overrides: list[str] | None = None) -> InterleavingStudyConfig:
    """Read, override (``key.path=value``) and validate an interleaving study TOML file.

    Raises
    ------
    ConfigError
        Missing file, malformed TOML, or any invalid key (named in the message).
    """
    data = read_toml(path, "interleaving study config")
    return parse_interleaving_study(apply_overrides(data, overrides or []), source=str(path))
