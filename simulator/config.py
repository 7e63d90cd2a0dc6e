"""Experiment configs: the TOML schema, validation and ``--set`` overrides.

A config is validated completely before anything runs. Unknown keys are errors, every number has
its allowed range, and every message names the key path (``users.n_users``), the rule and the
value. Validation is pydantic's; this module only turns its errors into one readable
:class:`~simulator.errors.ConfigError`.

Units: time is in **days** (one round = one day); rates are per day.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator.errors import ConfigError

# strict: a boolean is not a count (`true` would otherwise be read as 1)
PosInt = Annotated[int, Field(gt=0, strict=True)]
#: A results folder name (experiment name, ``--run``): letters, digits, _ . -, not starting with
#: a dot ("." and ".." would leave results/, a leading dot would hide the folder).
FOLDER_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class _Section(BaseModel):
    # no NaN or infinity in any float: they pass range checks and fail deep inside a run
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        # pydantic reads `true` as 1 for an int or float field: a silently wrong setting
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if isinstance(data.get(name), bool) and field.annotation in (int, float):
                    raise ValueError(f"{name} must be a number; got {data[name]}")
        return data


class ExperimentSection(_Section):
    """``[experiment]``: what the run is and how many days and seeds it covers."""

    name: str = Field(pattern=FOLDER_NAME, description="folder name under results/")
    description: str = Field("", description="scenario text for the report")
    seeds: list[Annotated[int, Field(ge=0, lt=2**63, strict=True)]] = Field(
        default=[0], min_length=1, description="one run per seed and policy (unique, >= 0)"
    )
    n_rounds: PosInt = Field(120, description="simulated days (one round per day)")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be unique; got {v}")
        return v


class CatalogSection(_Section):
    """``[catalog]``: items (tracks) with genres, artists, embeddings, quality and a Zipf prior."""

    n_items: PosInt = Field(5000, le=10_000_000, description="tracks in the catalog")
    n_genres: Annotated[int, Field(ge=1, le=255)] = Field(12, description="genres")
    n_artists: PosInt = Field(1000, description="artists (each in one genre)")
    embedding_dim: Annotated[int, Field(ge=1, le=512)] = Field(
        16, description="dimension of user and item embeddings"
    )
    genre_size_concentration: Annotated[float, Field(gt=0)] = Field(
        5.0, description="Dirichlet concentration of genre sizes (large = equal genres)"
    )
    embedding_genre_spread: NonNegFloat = Field(
        0.5, description="std of item embeddings around their genre centre (centres have norm 1)"
    )
    zipf_exponent: Annotated[float, Field(gt=0, le=5)] = Field(
        1.0, description="prior popularity of the item of rank r is proportional to r^-s"
    )
    quality_popularity_corr: Annotated[float, Field(ge=-1, le=1)] = Field(
        0.3, description="correlation of item quality with log prior popularity"
    )
    head_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.2, description="share of items (by prior popularity) that form the head"
    )


class UsersSection(_Section):
    """``[users]``: tastes, activity, drift and satiation of the population."""

    n_users: PosInt = Field(10_000, le=100_000_000, description="users (listeners)")
    taste_concentration: Annotated[float, Field(gt=0)] = Field(
        0.3, description="Dirichlet alpha of genre tastes (small = few favourite genres)"
    )
    embedding_taste_noise: NonNegFloat = Field(
        0.5, description="std of a user's embedding around the taste-weighted genre centre"
    )
    activity_median: Annotated[float, Field(gt=0, le=50)] = Field(
        0.7, description="median sessions per day (lognormal across users)"
    )
    activity_sigma: NonNegFloat = Field(
        1.0, le=10, description="sigma of log activity (<= 10: e^(10·z) already spans 1e-40 to 1e40)"
    )
    alternating_share: Fraction = Field(
        0.2, description="share of users whose interest alternates between two genres"
    )
    alternating_mass: Fraction = Field(0.9, description="taste mass on the two genres")
    alternating_split: Annotated[float, Field(gt=0.5, lt=1)] = Field(
        0.7, description="the favoured genre's share of that mass (70/30 <-> 30/70)"
    )
    alternating_period_days: PosInt = Field(14, description="days between swaps")
    drift_sigma: NonNegFloat = Field(
        0.0, description="daily log-normal random-walk step of stable users' tastes"
    )
    satiation_strength: NonNegFloat = Field(
        0.0, description="relevance logit drop per unit of genre satiation (0 = off)"
    )
    satiation_recovery_days: Annotated[float, Field(gt=0)] = Field(
        3.0, description="e-folding time of satiation recovery"
    )


class RelevanceSection(_Section):
    """``[relevance]``: true relevance r(u, i) = sigmoid(b0 + bg log(G theta_ug) + be <U,V> + bq q)."""

    intercept: float = Field(-2.0, description="b0, the logit of an average item")
    genre_weight: NonNegFloat = Field(1.0, description="bg, weight of log genre taste")
    embedding_weight: NonNegFloat = Field(1.0, description="be, weight of <U_u, V_i>")
    quality_weight: NonNegFloat = Field(0.5, description="bq, weight of item quality")
    taste_floor: Annotated[float, Field(gt=0, lt=1)] = Field(
        1e-3, description="added to genre shares before the log (keeps r > 0)"
    )


class HistorySection(_Section):
    """``[history]``: the organic, pre-system streams the first model is trained on."""

    days: Annotated[int, Field(ge=0, le=365)] = Field(30, description="days before day 0")
    streams_per_session: Annotated[float, Field(gt=0, le=100)] = Field(
        2.0, description="mean organic streams per active day (Poisson)"
    )
    popularity_exponent: NonNegFloat = Field(
        0.0, description="organic streams drawn prop. to r(u,i) * prior_i^exponent"
    )
    sampler: Literal["auto", "matrix", "rejection"] = Field(
        "auto",
        description="how streams are drawn (both exact): full relevance rows (matrix), "
        "rejection from uniform proposals (fast for big catalogs); auto = matrix up to 20k items",
    )


class ClickModelSection(_Section):
    """``[click_model]``: how users examine and click a slate."""

    type: Literal["pbm", "cascade"] = Field("pbm", description="position-based model or cascade model")
    eta: Annotated[float, Field(ge=0, le=10)] = Field(
        1.0, description="PBM examination 1/(k+1)^eta at 0-based position k"
    )
    examination: list[Annotated[float, Field(gt=0, le=1)]] | None = Field(
        None, description="explicit PBM examination per position (overrides eta)"
    )


class SimulationSection(_Section):
    """``[simulation]``: slates, retraining cadence, log."""

    slate_size: PosInt = Field(
        10,
        ge=2,
        description="K, items per slate (2 <= K <= catalog.n_items: intra-list diversity needs pairs)",
    )
    retrain_every_days: PosInt = Field(1, description="retrain cadence of model policies")
    train_window_days: PosInt = Field(30, description="days of log a retrain sees")
    log_fraction: Fraction = Field(1.0, description="share of sessions written to the Parquet log")


class MetricsSection(_Section):
    """``[metrics]``: windows and samples of the metric trackers."""

    window_days: PosInt = Field(7, description="window of exposure metrics (gini, coverage, ...)")
    user_window_days: PosInt = Field(14, description="window of per-user diversity metrics")
    n_tracked_users: Annotated[int, Field(ge=2)] = Field(
        200, description="users whose trajectories go to users.parquet (and homogenization)"
    )
    cdi_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        0.01, description="CDI counts items shown to at least this share of active users"
    )
    genre_loss_threshold: Annotated[float, Field(gt=0, lt=0.5)] = Field(
        0.05, description="alt_genre_loss: a genre is lost below this share of the shown items"
    )
    regret: bool = Field(True, description="compute the oracle slate each round for regret")
    regret_users: Annotated[int, Field(ge=0)] = Field(
        1000,
        description="active users sampled per round for regret (0 = all; the oracle "
        "slate costs a full user x item pass)",
    )


class PolicySpec(_Section):
    """One entry of ``[policies.<label>]``: ``type`` (registry name) plus its hyperparameters."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Intervention(_Section):
    """``[[interventions]]``: at day ``day``, set ``param`` of policy ``policy`` to ``value``."""

    day: Annotated[int, Field(ge=0)]
    policy: str
    param: str
    value: Any


class SweepSection(_Section):
    """``[sweep]``: parameter lists crossed with the policies and seeds (one cell per combination).

    ``grid`` takes the Cartesian product of its lists; ``zip`` varies its lists together (all the
    same length), as one more axis of that product. Keys are config paths such as
    ``"users.drift_sigma"`` or ``"policies.eps.epsilon"``; a policy's own keys only vary that
    policy's cells (the others are computed once).
    """

    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="key.path -> values: all combinations"
    )
    zip: dict[str, list[Any]] = Field(
        default_factory=dict, description="key.path -> values of equal length, varied together"
    )

    @model_validator(mode="after")
    def _lists(self) -> SweepSection:
        for table in ("grid", "zip"):
            for key, values in getattr(self, table).items():
                if not values:
                    raise ValueError(f"sweep.{table}.{key} must be a non-empty list")
                if key.split(".")[0] in ("sweep", "experiment") and key != "experiment.n_rounds":
                    raise ValueError(f"sweep.{table}.{key}: this key cannot be swept")
                if len({repr(v) for v in values}) != len(values):
                    raise ValueError(f"sweep.{table}.{key} has repeated values: {values}")
        lengths = {k: len(v) for k, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"sweep.zip lists must all have the same length; got {lengths}")
        both = set(self.grid) & set(self.zip)
        if both:
            raise ValueError(f"sweep keys may be in grid or zip, not both: {sorted(both)}")
        return self

    def points(self) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination, as tuples of ``(key, value)`` in a stable order."""
        import itertools

        axes: list[list[tuple[tuple[str, Any], ...]]] = [
            [((k, v),) for v in vals] for k, vals in self.grid.items()
        ]
        if self.zip:
            keys = list(self.zip)
            axes.append([tuple(zip(keys, row, strict=True)) for row in zip(*self.zip.values(), strict=True)])
        return [tuple(p for part in combo for p in part) for combo in itertools.product(*axes)]


class ExperimentConfig(_Section):
    """The whole, validated experiment config."""

    experiment: ExperimentSection
    catalog: CatalogSection = CatalogSection()
    users: UsersSection = UsersSection()
    relevance: RelevanceSection = RelevanceSection()
    history: HistorySection = HistorySection()
    click_model: ClickModelSection = ClickModelSection()
    simulation: SimulationSection = SimulationSection()
    metrics: MetricsSection = MetricsSection()
    policies: dict[str, PolicySpec] = Field(min_length=1)
    interventions: list[Intervention] = []
    sweep: SweepSection = SweepSection()

    @field_validator("policies", mode="before")
    @classmethod
    def _default_type(cls, v: Any) -> Any:
        # ``[policies.greedy]`` with no ``type`` means ``type = "greedy"``.
        if isinstance(v, dict):
            return {k: ({"type": k} | dict(s)) if isinstance(s, dict) else s for k, s in v.items()}
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        k = self.simulation.slate_size
        if k > self.catalog.n_items:
            raise ValueError(
                f"simulation.slate_size must be <= catalog.n_items ({self.catalog.n_items}); got {k}"
            )
        if self.users.alternating_share > 0 and self.catalog.n_genres < 2:
            raise ValueError(
                "users.alternating_share must be 0 when catalog.n_genres = 1 (an alternating user "
                f"swaps between two genres); got {self.users.alternating_share}"
            )
        exam = self.click_model.examination
        if exam is not None and len(exam) != k:
            raise ValueError(f"click_model.examination must have slate_size = {k} entries; got {len(exam)}")
        if self.metrics.n_tracked_users > self.users.n_users:
            raise ValueError(
                f"metrics.n_tracked_users must be <= users.n_users ({self.users.n_users}); "
                f"got {self.metrics.n_tracked_users}"
            )
        for i, iv in enumerate(self.interventions):
            if iv.policy not in self.policies:
                raise ValueError(
                    f"interventions[{i}].policy must be one of {sorted(self.policies)}; "
                    f"got {iv.policy!r}{_suggest(iv.policy, self.policies)}"
                )
        return self


def _suggest(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_errors(err: ValidationError, source: str) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
            parent = _model_at(ExperimentConfig, e["loc"][:-1])
            if parent is not None:
                msg += _suggest(str(e["loc"][-1]), parent.model_fields)
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["loc"][:1] == ("sweep",) and len(e["loc"]) == 3 and isinstance(e.get("input"), dict):
            # an unquoted dotted key (sweep.grid.users.n_users) nests a table instead of naming it
            msg += (
                f'; a swept key is one quoted key: "{e["loc"][2]}.<key>" = [...] under [sweep.'
                f'{e["loc"][1]}] (with --set: sweep.{e["loc"][1]}."{e["loc"][2]}.<key>"=[...])'
            )
        elif (
            "input" in e
            and e["type"] not in {"model_type", "dict_type"}
            and "; got " not in msg  # our own validators already say what they got
            and not isinstance(e["input"], dict)  # a whole section or config: too long to quote
        ):
            msg += f"; got {e['input']!r}"
        lines.append(f"  {loc or '<root>'}: {msg}")
    return ConfigError(f"invalid config {source}:\n" + "\n".join(lines))


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def parse_config(data: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a config mapping.

    Raises
    ------
    ConfigError
        Listing every invalid key with its rule and value.
    """
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise _format_errors(err, source) from None
    from simulator.policies import make_policy  # late import: policies depend on this module

    for label, spec in cfg.policies.items():
        make_policy(spec.type, label, **spec.params)
    for point in cfg.sweep.points() if (cfg.sweep.grid or cfg.sweep.zip) else ():
        resolve_point(cfg, point)  # every sweep point is valid before anything runs
    return cfg


def resolve_point(config: ExperimentConfig, point: tuple[tuple[str, Any], ...]) -> ExperimentConfig:
    """The config of one sweep point: ``config`` with each ``(key.path, value)`` set, no sweep.

    Raises
    ------
    ConfigError
        Naming ``sweep.<key>`` when a swept value is invalid or the key does not exist.
    """
    data = config.model_dump(mode="json")
    data["sweep"] = {}
    for key, value in point:
        node = data
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"sweep key {key!r}: {part!r} is not a table of the config")
            node = node[part]
        node[last] = value
    try:
        return parse_config(data, source=f"(sweep point {dict(point)})")
    except ConfigError as err:
        raise ConfigError(f"sweep: {err}") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``key.path=value``; the value is read as a TOML literal, else as a plain string.

    Raises
    ------
    ConfigError
        If ``item`` has no ``=`` or an empty key.
    """
    key, sep, raw = _split_override(item)
    path = _key_path(key) if sep else None
    if path is None:
        raise ConfigError(f"--set expects key.path=value; got {item!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def _split_override(item: str) -> tuple[str, str, str]:
    """``(key, "=", value)`` at the first ``=`` outside a quoted key part."""
    quote = ""
    for i, ch in enumerate(item):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "=":
            return item[:i].strip(), "=", item[i + 1 :]
    return item.strip(), "", ""


def _key_path(key: str) -> list[str] | None:
    """A TOML dotted key as its parts (``sweep.grid."users.n_users"`` has three), else None."""
    try:
        node: Any = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:  # not TOML (e.g. a label with a space): plain dots, no quotes
        parts = key.split(".")
        return None if any(not p.strip() or p.strip()[0] in "\"'" for p in parts) else parts
    path = []
    while isinstance(node, dict) and len(node) == 1:
        ((part, node),) = node.items()
        path.append(part)
    return path or None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.path=value`` override applied."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a table")
            node = child
        node[path[-1]] = value
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate a TOML experiment config.

    Raises
    ------
    ConfigError
        Missing file, malformed TOML, or any invalid key (named in the message).
    """
    data = read_toml(path, "config file")
    # an error an override caused is not the file's: say that overrides were applied
    source = f"{path} with overrides ({', '.join(overrides)})" if overrides else str(path)
    return parse_config(apply_overrides(data, overrides or []), source=source)


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a TOML file into a dict.

    Raises
    ------
    ConfigError
        ``"<what> not found: PATH"`` (or a folder), malformed TOML (with the parser's line and column), or a
        file that is not UTF-8 text.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} expected, got a folder: {path}")
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"malformed TOML in {path}: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {path} is not UTF-8 text: {err}") from None


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    if text:
        return {"str": "text", "bool": "true / false", "float": "number", "int": "integer"}.get(text, text)
    text = str(annotation)
    if "Literal" in text:
        return " or ".join(re.findall(r"'([^']+)'", text))
    if text.startswith("list[") and "int" in text:
        return "list of integers >= 0"
    if "list[" in text and "float" in text:
        return "list of numbers in (0, 1], or absent"
    return text.replace("typing.", "")


def config_reference() -> str:
    """The config reference as Markdown tables (one per section), from the schema itself."""
    sections = [
        (name, field.annotation)
        for name, field in ExperimentConfig.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    ]
    out = []
    for name, model in sections:
        doc = (model.__doc__ or "").strip().splitlines()[0].split(": ", 1)[-1]
        out.append(f"**`[{name}]`** — {doc}\n")
        out.append("| key | default | allowed | meaning |\n| --- | --- | --- | --- |")
        for key, f in model.model_fields.items():
            rules = []
            for m in f.metadata:
                for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                    if getattr(m, attr, None) is not None:
                        rules.append(f"{sym} {getattr(m, attr)}")
            allowed = ", ".join(rules) or _type_name(f.annotation)
            if f.is_required():
                default = "required"
            elif f.default_factory is not None:  # e.g. an empty table: show what it makes
                default = f"`{f.default_factory()!r}`"
            else:
                default = f"`{f.default!r}`"
            out.append(f"| `{key}` | {default} | {allowed} | {f.description or ''} |")
        out.append("")
    return "\n".join(out)
