"""Position-bias study (``recloop position-bias-study CONFIG``): estimators against a known curve.

A frozen recloop world (catalog, population relevance ``r(u, i)``, the pre-system history) and a
deterministic ranker from the policy registry (``oracle`` by default: it ranks by the true
relevance, the strongest confounding of position with relevance; ``greedy`` and
``popularity`` work too) produce the slates. Each session (user drawn ∝ activity) gets a
candidate set of ``candidates`` items drawn uniformly (a retrieval stage), ranked by the
ranker's scores; the top ``K`` form the production slate. Clicks follow recloop's
position-based model (:class:`~simulator.clicks.models.PositionBasedModel`) with a **known**
examination curve ``1/(k+1)^eta`` for every ``eta`` of the study. Three logs per eta:

``randomised``
    The production slate shuffled uniformly per session (randomised placement).
``swap``
    The production slate after the randomised swap with the reference position
    (Joachims, Swaminathan & Schnabel 2017; :func:`~simulator.ope.position_bias.swap_with_reference`).
``deterministic``
    The production slate as ranked (no randomisation).

Estimators (``[estimators] names``): ``ctr_ratio`` and EM on the randomised and deterministic
logs — ``em`` with one relevance per (user, item) (Wang et al. 2018's query-document key:
relevance here is personal), ``em_item`` with one per item — and ``swap`` on the swap log
(regime "randomised": the swap is the randomisation). Every estimate has a percentile bootstrap
interval over sessions; the summary reports the error against the true curve and whether the
truth lies inside each position's interval. The same study runs the CTR ratio and EM on the Open
Bandit Dataset's uniform-random log (3 positions, truth unknown).

Randomness: every stochastic part draws from ``simulator.rng.stream(seed, name)``: the world
(``catalog``, ``users``, ``history``, ``policy-init:<ranker>``), the sessions and candidate sets
(``pb-sessions``, the same for every eta and regime: common random numbers), the shuffle
(``pb-shuffle``), the swap (``pb-swap``), the clicks (``pb-clicks:<regime>:<eta>``) and each
bootstrap (``pb-bootstrap:<eta>:<regime>:<estimator>``).

Outputs (``results/position_bias/<name>/`` or ``--out``), written atomically: ``estimates.csv``
(one row per seed × eta × regime × estimator × position), ``summary.csv`` and ``summary.md``,
``obd.csv``, ``figures/estimated_vs_true.{png,svg}`` and ``figures/obd.{png,svg}``,
``manifest.json``, and with ``write_logs`` the simulated logs
``logs/seed=<s>/eta=<eta>/regime=<regime>/part-00000.parquet`` (recloop's schema plus
``original_position``), which ``recloop position-bias`` reads.

References
----------
T. Joachims, A. Swaminathan, T. Schnabel. "Unbiased learning-to-rank with biased feedback."
WSDM 2017. X. Wang, N. Golbandi, M. Bendersky, D. Metzler, M. Najork. "Position bias
estimation for unbiased learning to rank in personal search." WSDM 2018. Y. Saito, S. Aihara,
M. Matsutani, Y. Narita. "Open Bandit Dataset and Pipeline." NeurIPS 2021 Datasets and
Benchmarks.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from simulator.config import ExperimentConfig, apply_overrides, parse_config, read_toml
from simulator.errors import ConfigError, ResultsError, ValidationError
from simulator.ope.position_bias import (
    PositionBiasEstimate,
    check_randomised_placement,
    estimate_position_bias,
    swap_with_reference,
)
from simulator.rng import stream

__all__ = [
    "ESTIMATORS",
    "REGIMES",
    "PositionBiasStudyConfig",
    "PositionBiasStudyResult",
    "StudyWorld",
    "build_world",
    "estimate_log",
    "load_position_bias_study_config",
    "parse_position_bias_study_config",
    "production_slates",
    "run_position_bias_study",
    "simulate_log",
    "summarise_position_bias",
    "true_curve",
]

#: Estimators of the study and the log each reads.
ESTIMATORS: tuple[str, ...] = ("ctr_ratio", "swap", "em", "em_item")
#: Logging regimes of the summary (the swap log belongs to "randomised").
REGIMES: tuple[str, ...] = ("randomised", "deterministic")
#: Deterministic scoring rankers from the registry.
RANKERS: tuple[str, ...] = ("oracle", "greedy", "popularity", "ipw")
_WORLD_TABLES: tuple[str, ...] = ("catalog", "users", "relevance", "history", "simulation")


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PBStudySection(_Section):
    """``[study]``: name, seeds, the known curves and the logging set-up."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="folder name under results/position_bias/")
    description: str = Field("", description="scenario text for the summary")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default=[0], min_length=1)
    etas: list[Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]] = Field(
        default=[0.5, 1.0, 2.0], min_length=1, description="examination 1/(k+1)^eta per log"
    )
    n_sessions: Annotated[int, Field(ge=100)] = Field(20_000, description="sessions per log")
    candidates: Annotated[int, Field(ge=2)] = Field(
        10, description="items per session's candidate set, ranked by the ranker (>= slate size)"
    )
    ranker: str = Field("oracle", description="deterministic scoring policy from the registry")
    ranker_params: dict[str, Any] = Field(default_factory=dict, description="its hyperparameters")
    write_logs: bool = Field(True, description="write the simulated logs (Parquet) under logs/")

    @field_validator("seeds", "etas")
    @classmethod
    def _unique(cls, v: list[Any]) -> list[Any]:
        if len(set(v)) != len(v):
            raise ValueError(f"values must be unique; got {v}")
        return v

    @field_validator("ranker")
    @classmethod
    def _ranker(cls, v: str) -> str:
        if v not in RANKERS:
            raise ValueError(
                f"ranker must be a deterministic scoring policy {list(RANKERS)} (it ranks each "
                f"session's candidates by its scores); got {v!r}"
            )
        return v


class PBEstimatorsSection(_Section):
    """``[estimators]``: which estimators, the reference and the bootstrap."""

    names: list[Literal["ctr_ratio", "swap", "em", "em_item"]] = Field(default=list(ESTIMATORS), min_length=1)
    reference: Annotated[int, Field(ge=0)] = Field(0, description="position with examination 1")
    n_bootstrap: Annotated[int, Field(ge=10)] = Field(200, description="bootstrap replicates over sessions")
    confidence: Annotated[float, Field(gt=0, lt=1)] = Field(0.95, description="per-position interval level")
    em_tol: Annotated[float, Field(gt=0, lt=0.01)] = Field(
        1e-4,
        description="EM stops when the relative curve moves less than this in an iteration "
        "(full log and bootstrap replicates)",
    )

    @field_validator("names")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"estimators.names has repeated values: {v}")
        return v


class PBObdSection(_Section):
    """``[obd]``: the Open Bandit Dataset's uniform-random log (truth unknown)."""

    enabled: bool = Field(True, description="also estimate on OBD random/all.csv")
    path: str | None = Field(None, description="all.csv (default: $RECLOOP_OBD_DIR or ../shared/data/obd)")


class PositionBiasStudyConfig(_Section):
    """The validated position-bias study config (see the module docstring)."""

    study: PBStudySection
    estimators: PBEstimatorsSection = PBEstimatorsSection()
    obd: PBObdSection = PBObdSection()
    world: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _checks(self) -> PositionBiasStudyConfig:
        unknown = [k for k in self.world if k not in _WORLD_TABLES]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], _WORLD_TABLES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"world.{unknown[0]}: unknown table{hint}; world tables: {', '.join(_WORLD_TABLES)} "
                "(the click model is the study's: PBM with each of study.etas)"
            )
        return self

    def experiment_config(self) -> ExperimentConfig:
        """The world (and the ranker) as a validated experiment config.

        Raises
        ------
        ConfigError
            Naming ``world.<table>.<key>`` or the ranker's hyperparameters.
        """
        data = {
            **{k: dict(v) if isinstance(v, dict) else v for k, v in self.world.items()},
            "experiment": {"name": self.study.name, "seeds": list(self.study.seeds)},
            "metrics": {"n_tracked_users": 2, "regret": False},  # no metrics in this study
            "policies": {"ranker": {"type": self.study.ranker, **self.study.ranker_params}},
        }
        try:
            cfg = parse_config(data, source="(position-bias study world)")
        except ConfigError as err:
            text = str(err).replace("policies.ranker", "study.ranker_params")
            for table in _WORLD_TABLES:
                text = text.replace(f"  {table}.", f"  world.{table}.")
            raise ConfigError(text) from None
        k = cfg.simulation.slate_size
        if k < 2:
            raise ConfigError(
                f"world.simulation.slate_size must be >= 2 (position bias needs two positions); got {k}"
            )
        if self.study.candidates < k:
            raise ConfigError(
                f"study.candidates must be >= world.simulation.slate_size = {k}; got {self.study.candidates}"
            )
        if self.study.candidates > cfg.catalog.n_items:
            raise ConfigError(
                f"study.candidates must be <= world.catalog.n_items = {cfg.catalog.n_items}; "
                f"got {self.study.candidates}"
            )
        if self.estimators.reference >= k:
            raise ConfigError(
                f"estimators.reference must be < world.simulation.slate_size = {k}; "
                f"got {self.estimators.reference}"
            )
        return cfg


def parse_position_bias_study_config(data: dict[str, Any], source: str = "<dict>") -> PositionBiasStudyConfig:
    """Validate a position-bias study mapping (world and ranker included).

    Raises
    ------
    ConfigError
        Listing every invalid key with its rule and value.
    """
    try:
        cfg = PositionBiasStudyConfig.model_validate(data)
    except PydanticValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown key"
            elif e["type"] == "missing":
                msg = "required key is missing"
            elif "input" in e and e["type"] not in {"model_type", "dict_type", "value_error"}:
                msg += f"; got {e['input']!r}"
            lines.append(
                f"  {msg}" if not loc and msg.startswith("world.") else f"  {loc or '<root>'}: {msg}"
            )
        raise ConfigError(f"invalid position-bias study config {source}:\n" + "\n".join(lines)) from None
    cfg.experiment_config()
    return cfg


def load_position_bias_study_config(
    path: str | Path, overrides: list[str] | None = None
) -> PositionBiasStudyConfig:
    """Read, override (``key.path=value``) and validate a position-bias study TOML file.

    Raises
    ------
    ConfigError
        Missing file, malformed TOML, or any invalid key.
    """
    data = read_toml(path, "position-bias study config")
    return parse_position_bias_study_config(apply_overrides(data, overrides or []), source=str(path))


# --------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StudyWorld:
    """A frozen world and its fitted ranker.

    Attributes
    ----------
    catalog : Catalog
    population : Population
    ranker : Policy
        Fitted once on the pre-system history (like the engine's first retrain).
    ranker_name : str
    slate_size : int
    """

    catalog: Any
    population: Any
    ranker: Any
    ranker_name: str
    slate_size: int


def build_world(config: ExperimentConfig, seed: int) -> StudyWorld:
    """Catalog, population and the ranker of ``config.policies["ranker"]``, fitted on the history.

    Uses the engine's streams (``catalog``, ``users``, ``history``, ``policy-init:ranker``), so the
    world is the one a recloop run of this config and seed would see on day 0.
    """
    from simulator.catalog.catalog import make_catalog
    from simulator.logs.window import LogWindow
    from simulator.policies import WorldView, make_policy
    from simulator.users.population import make_population, organic_history

    catalog = make_catalog(config.catalog, stream(seed, "catalog"))
    population = make_population(config.users, config.relevance, catalog, stream(seed, "users"))
    spec = config.policies["ranker"]
    ranker = make_policy(spec.type, "ranker", **spec.params)
    k = config.simulation.slate_size
    ranker.reset(WorldView(population.n_users, catalog, k, population), stream(seed, "policy-init:ranker"))
    window = LogWindow(config.simulation.train_window_days, ranker.needs_impressions)
    day, user, item = organic_history(population, config.history, stream(seed, "history"))
    window.add_organic(day, user, item)
    window.advance(0)
    ranker.fit(window)
    return StudyWorld(catalog, population, ranker, spec.type, k)


def production_slates(
    world: StudyWorld, n_sessions: int, candidates: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions and the ranker's deterministic slates over random candidate sets.

    Parameters
    ----------
    world : StudyWorld
    n_sessions : int
    candidates : int
        Candidate-set size C (>= K): items drawn uniformly without replacement per session.
    rng : numpy.random.Generator
        Users (∝ activity) and candidate sets.

    Returns
    -------
    users : ndarray of shape (n_sessions,), int64
    items : ndarray of shape (n_sessions, K), int32
        The top K of each candidate set by the ranker's score, best first.
    scores : ndarray of shape (n_sessions, K), float32
        Their scores.

    Notes
    -----
    Random candidate sets make every (user, item) appear at several positions although the
    ranking is deterministic: EM needs that (its position-key graph must be connected), and
    given (user, item) the position then depends only on the other candidates, not on the
    relevance — which is why EM with a (user, item) key is unbiased on these logs while the CTR
    ratio is not.
    """
    pop = world.population
    activity = pop.activity.astype(np.float64)
    users = rng.choice(pop.n_users, size=n_sessions, p=activity / activity.sum()).astype(np.int64)
    n_items = world.catalog.n_items
    cand = rng.random((n_sessions, n_items)).argpartition(candidates - 1, axis=1)[:, :candidates]
    scores = np.empty((n_sessions, candidates), dtype=np.float32)
    for rows, block in world.ranker.score_chunks(users):
        scores[rows] = np.take_along_axis(np.asarray(block), cand[rows], axis=1)
    k = world.slate_size
    # ties (e.g. popularity counts) break by item id, deterministically
    order = np.lexsort((cand, -scores), axis=1)[:, :k]
    items = np.take_along_axis(cand, order, axis=1).astype(np.int32)
    return users, items, np.take_along_axis(scores, order, axis=1)


def true_curve(eta: float, k: int, reference: int = 0) -> np.ndarray:
    """Relative examination ``(ref+1)^eta / (k+1)^eta``, shape (K,), float64."""
    theta = 1.0 / np.arange(1, k + 1, dtype=np.float64) ** eta
    return theta / theta[reference]


def simulate_log(
    world: StudyWorld,
    users: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
    eta: float,
    regime: str,
    seed: int,
    reference: int = 0,
) -> dict[str, np.ndarray]:
    """One impression log in recloop's schema (plus ``original_position``).

    Parameters
    ----------
    world : StudyWorld
    users : ndarray of shape (n,), int64
    items, scores : ndarray of shape (n, K)
        Production slates (:func:`production_slates`).
    eta : float
        PBM examination ``1/(k+1)^eta``.
    regime : {"randomised", "swap", "deterministic"}
    seed : int
    reference : int
        Reference position of the swap.

    Returns
    -------
    dict of str to ndarray of shape (n * K,)
        ``round, time, session_id, user_id, position, item_id, score, pscore,
        inclusion_pscore, examination, click, reward, policy, original_position``; the
        propensities are conditional on the session's candidate set.

    Raises
    ------
    ValidationError
        Unknown regime.
    """
    from simulator.clicks.models import PositionBasedModel

    n, k = items.shape
    original = np.broadcast_to(np.arange(k, dtype=np.int16), (n, k))
    if regime == "randomised":
        perm = np.argsort(stream(seed, "pb-shuffle").random((n, k)), axis=1).astype(np.int16)
        original = perm
        pscore = np.full((n, k), 1.0 / k, dtype=np.float32)
    elif regime == "swap":
        _, original = swap_with_reference(items, stream(seed, "pb-swap"), ref=reference)
        moved_in = (np.arange(k)[None, :] == reference) | (original == reference)
        pscore = np.where(moved_in, 1.0 / k, (k - 1.0) / k).astype(np.float32)
    elif regime == "deterministic":
        pscore = np.ones((n, k), dtype=np.float32)
    else:
        raise ValidationError(f"regime must be 'randomised', 'swap' or 'deterministic'; got {regime!r}")
    idx = np.asarray(original, dtype=np.intp)
    shown = np.take_along_axis(items, idx, axis=1)
    shown_scores = np.take_along_axis(scores, idx, axis=1)
    relevance = world.population.relevance(users, shown)
    feedback = PositionBasedModel(eta=float(eta)).simulate(
        relevance, stream(seed, f"pb-clicks:{regime}:{eta:g}")
    )
    nk = n * k
    return {
        "round": np.zeros(nk, dtype=np.int32),
        "time": np.full(nk, 0.5),
        "session_id": np.repeat(np.arange(n, dtype=np.int64), k),
        "user_id": np.repeat(users.astype(np.int32), k),
        "position": np.tile(np.arange(k, dtype=np.int16), n),
        "item_id": shown.ravel().astype(np.int32),
        "score": shown_scores.ravel().astype(np.float32),
        "pscore": pscore.ravel(),
        "inclusion_pscore": np.ones(nk, dtype=np.float32),
        "examination": np.asarray(feedback.examination, dtype=np.float32).ravel(),
        "click": feedback.clicks.ravel(),
        "reward": feedback.clicks.ravel().astype(np.float32),
        "policy": np.full(nk, f"{world.ranker_name}-{regime}", dtype=object),
        "original_position": np.asarray(original, dtype=np.int16).ravel(),
    }


def estimate_log(
    log: dict[str, np.ndarray],
    estimator: str,
    n_positions: int,
    *,
    reference: int = 0,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    rng: np.random.Generator | int | None = None,
    em_tol: float = 1e-6,
) -> PositionBiasEstimate:
    """Run one study estimator on a log (warnings are kept in the estimate's ``reason``).

    ``estimator``: ``ctr_ratio``, ``swap`` (needs ``original_position``), ``em`` (relevance key
    ``user_id * n_items + item_id``) or ``em_item`` (key ``item_id``).

    Raises
    ------
    ValidationError
        Unknown estimator, or the estimator's "not identifiable" errors.
    """
    kwargs: dict[str, Any] = {
        "reference": reference,
        "n_bootstrap": n_bootstrap,
        "confidence": confidence,
        "rng": rng,
    }
    method = {"ctr_ratio": "ctr_ratio", "swap": "swap_intervention", "em": "em", "em_item": "em"}.get(
        estimator
    )
    if method is None:
        raise ValidationError(f"estimator must be one of {list(ESTIMATORS)}; got {estimator!r}")
    if method == "em":
        kwargs["tol"] = em_tol
    if estimator == "em":
        n_items = int(np.max(log["item_id"])) + 1
        kwargs["relevance_key"] = np.asarray(log["user_id"], dtype=np.int64) * n_items + log["item_id"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PlacementWarning etc.: the estimate's reason says it
        return estimate_position_bias(log, method, n_positions=n_positions, **kwargs)


def _log_table(log: dict[str, np.ndarray]) -> Any:
    import pyarrow as pa

    from simulator.logs.impressions import LOG_SCHEMA

    schema = LOG_SCHEMA.append(pa.field("original_position", pa.int16()))
    return pa.Table.from_pydict({f.name: log[f.name] for f in schema}, schema=schema)


def _estimate_rows(
    log: dict[str, np.ndarray],
    names: list[str],
    *,
    seed: int,
    eta: float,
    regime: str,
    k: int,
    cfg: PositionBiasStudyConfig,
) -> list[dict[str, Any]]:
    est_cfg = cfg.estimators
    ref = est_cfg.reference
    truth = true_curve(eta, k, ref)
    placement_p = np.nan
    if "ctr_ratio" in names:
        placement_p = check_randomised_placement(log["position"], log["item_id"], k).p_value
    rows: list[dict[str, Any]] = []
    for name in names:
        t0 = time.perf_counter()
        try:
            est = estimate_log(
                log,
                name,
                k,
                reference=ref,
                n_bootstrap=est_cfg.n_bootstrap,
                confidence=est_cfg.confidence,
                rng=stream(seed, f"pb-bootstrap:{eta:g}:{regime}:{name}"),
                em_tol=est_cfg.em_tol,
            )
        except ValidationError as err:
            rows += [
                {
                    "seed": seed,
                    "eta": eta,
                    "regime": regime,
                    "estimator": name,
                    "position": p,
                    "truth": truth[p],
                    "estimate": np.nan,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "covered": False,
                    "identifiable": False,
                    "status": f"failed: {err}",
                    "placement_p": placement_p if name == "ctr_ratio" else np.nan,
                    "seconds": time.perf_counter() - t0,
                }
                for p in range(k)
            ]
            continue
        covered = est.covers(truth)
        for p in range(k):
            rows.append(
                {
                    "seed": seed,
                    "eta": eta,
                    "regime": regime,
                    "estimator": name,
                    "position": p,
                    "truth": truth[p],
                    "estimate": est.examination[p],
                    "ci_low": est.ci_lower[p],
                    "ci_high": est.ci_upper[p],
                    "covered": bool(covered[p]),
                    "identifiable": est.identifiable,
                    "status": "ok" if not est.reason else est.reason,
                    "placement_p": placement_p if name == "ctr_ratio" else np.nan,
                    "seconds": time.perf_counter() - t0,
                }
            )
    return rows


def run_seed(cfg: PositionBiasStudyConfig, seed: int, log_root: Path | None) -> pd.DataFrame:
    """Every log and estimate of one seed; one row per (eta, regime, estimator, position)."""
    from simulator.io import write_parquet

    exp = cfg.experiment_config()
    world = build_world(exp, seed)
    k = world.slate_size
    users, items, scores = production_slates(
        world, cfg.study.n_sessions, cfg.study.candidates, stream(seed, "pb-sessions")
    )
    names = list(cfg.estimators.names)
    on_shuffled = [n for n in names if n != "swap"]
    rows: list[dict[str, Any]] = []
    for eta in cfg.study.etas:
        plan = [("randomised", "randomised", on_shuffled), ("deterministic", "deterministic", on_shuffled)]
        if "swap" in names:
            plan.insert(1, ("swap", "randomised", ["swap"]))
        for log_regime, regime, which in plan:
            if not which:
                continue
            log = simulate_log(world, users, items, scores, eta, log_regime, seed, cfg.estimators.reference)
            if log_root is not None:
                write_parquet(
                    log_root
                    / f"seed={seed}"
                    / f"eta={eta:g}"
                    / f"regime={log_regime}"
                    / "part-00000.parquet",
                    _log_table(log),
                )
            rows += _estimate_rows(log, which, seed=seed, eta=eta, regime=regime, k=k, cfg=cfg)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------


def summarise_position_bias(estimates: pd.DataFrame, reference: int = 0) -> pd.DataFrame:
    """Error and coverage per (eta, regime, estimator), over the non-reference positions and seeds.

    Columns: ``max_abs_error`` (max over positions, mean over seeds), ``mean_abs_error``,
    ``max_half_width`` (largest half-width of the intervals), ``coverage`` (share of
    (seed, position) intervals containing the truth), ``all_covered`` (every interval of every
    seed covers), ``identifiable`` (every seed), ``placement_p`` (CTR ratio's check; mean).
    """
    df = estimates[(estimates["position"] != reference) & estimates["estimate"].notna()].copy()
    df["abs_error"] = (df["estimate"] - df["truth"]).abs()
    df["half_width"] = (df["ci_high"] - df["ci_low"]) / 2
    per_seed = df.groupby(["eta", "regime", "estimator", "seed"], sort=False).agg(
        max_abs_error=("abs_error", "max"),
        mean_abs_error=("abs_error", "mean"),
        max_half_width=("half_width", "max"),
        coverage=("covered", "mean"),
        all_covered=("covered", "all"),
        identifiable=("identifiable", "all"),
        placement_p=("placement_p", "mean"),
    )
    out = per_seed.groupby(["eta", "regime", "estimator"], sort=False).agg(
        n_seeds=("max_abs_error", "size"),
        max_abs_error=("max_abs_error", "mean"),
        mean_abs_error=("mean_abs_error", "mean"),
        max_half_width=("max_half_width", "mean"),
        coverage=("coverage", "mean"),
        all_covered=("all_covered", "all"),
        identifiable=("identifiable", "all"),
        placement_p=("placement_p", "mean"),
    )
    return out.reset_index()


def obd_estimates(cfg: PositionBiasStudyConfig, seed: int) -> pd.DataFrame:
    """CTR ratio and EM (item key) on OBD's uniform-random log; empty when disabled or absent."""
    from simulator.ope.data import default_obd_dir
    from simulator.ope.position_bias_log import read_position_log, run_position_bias

    if not cfg.obd.enabled:
        return pd.DataFrame()
    path = Path(cfg.obd.path) if cfg.obd.path else default_obd_dir() / "random" / "all.csv"
    if not path.is_file():
        raise ValidationError(
            f"obd.path: Open Bandit Dataset log not found: {path} (set obd.enabled = false)"
        )
    report = run_position_bias(
        read_position_log(path, log_format="obd"),
        "all",
        reference=cfg.estimators.reference,
        n_bootstrap=cfg.estimators.n_bootstrap,
        confidence=cfg.estimators.confidence,
        seed=seed,
    )
    table = report.table()
    table["placement_p"] = report.placement.p_value if report.placement is not None else np.nan
    table["source"] = str(path)
    return table


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionBiasStudyResult:
    """What :func:`run_position_bias_study` wrote."""

    out_dir: Path
    estimates: pd.DataFrame
    summary: pd.DataFrame
    obd: pd.DataFrame
    figures: list[Path]
    seconds: float


def run_position_bias_study(
    cfg: PositionBiasStudyConfig, out_dir: str | Path, *, figures: bool = True, progress: bool = True
) -> PositionBiasStudyResult:
    """Run the study and write its tables, summary, figures (and logs) into ``out_dir``.

    Raises
    ------
    ResultsError
        If ``out_dir`` is a file or holds results of another kind.
    ConfigError, ValidationError
        On invalid input.
    """
    from tqdm.auto import tqdm

    from simulator.io import atomic_write_json, atomic_write_text

    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file, not a folder")
    manifest = out / "manifest.json"
    if manifest.is_file() and '"kind": "position_bias_study"' not in manifest.read_text():
        raise ResultsError(f"{out} holds another kind of results (its manifest.json); use another --out")
    cfg.experiment_config()
    if cfg.obd.enabled:  # fail before anything is written
        from simulator.ope.data import default_obd_dir

        path = Path(cfg.obd.path) if cfg.obd.path else default_obd_dir() / "random" / "all.csv"
        if not path.is_file():
            raise ConfigError(f"obd.path: Open Bandit Dataset log not found: {path} (or obd.enabled = false)")
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for seed in tqdm(cfg.study.seeds, desc=cfg.study.name, unit="seed", disable=not progress):
        parts.append(run_seed(cfg, seed, out / "logs" if cfg.study.write_logs else None))
    estimates = pd.concat(parts, ignore_index=True)
    summary = summarise_position_bias(estimates, cfg.estimators.reference)
    obd = obd_estimates(cfg, cfg.study.seeds[0])
    atomic_write_text(out / "estimates.csv", estimates.to_csv(index=False))
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    if len(obd):
        atomic_write_text(out / "obd.csv", obd.to_csv(index=False))
    drawn: list[Path] = []
    if figures:
        from simulator.ope.position_bias_plots import draw_position_bias_figures

        drawn = draw_position_bias_figures(out / "figures", estimates, obd, cfg)
    seconds = time.perf_counter() - t0
    atomic_write_text(out / "summary.md", summary_markdown(cfg, summary, obd, drawn, out, seconds))
    atomic_write_json(
        manifest,
        {
            "kind": "position_bias_study",
            "status": "complete",
            "study_config": cfg.model_dump(mode="json"),
            "world": cfg.experiment_config().model_dump(mode="json"),
            "seconds": round(seconds, 1),
            "written": datetime.now(UTC).isoformat(),
        },
    )
    return PositionBiasStudyResult(out, estimates, summary, obd, drawn, seconds)


def _f(x: float, d: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{d}f}"


def summary_markdown(
    cfg: PositionBiasStudyConfig,
    summary: pd.DataFrame,
    obd: pd.DataFrame,
    figures: list[Path],
    out: Path,
    seconds: float,
) -> str:
    """The study's summary.md: design, error and coverage table, OBD estimates, figures."""
    exp = cfg.experiment_config()
    st, est = cfg.study, cfg.estimators
    k = exp.simulation.slate_size
    lines = [
        f"# Position-bias study: {st.name}",
        "",
        st.description.strip(),
        "",
        "## Design",
        "",
        f"* World: {exp.users.n_users:,} users × {exp.catalog.n_items:,} items; ranker `{st.ranker}` "
        f"(deterministic) over {st.candidates} random candidates per session; slates of K = {k}; "
        f"{st.n_sessions:,} sessions per log; seeds {', '.join(map(str, st.seeds))}.",
        "* Clicks: position-based model, examination 1/(k+1)^η for η ∈ "
        f"{{{', '.join(f'{e:g}' for e in st.etas)}}}.",
        "* Regimes: **randomised** — the slate shuffled per session (CTR ratio, EM), and the randomised "
        "swap with the reference (Joachims et al. 2017) for the swap estimator; **deterministic** — "
        "the slate as ranked.",
        "* Estimators: `ctr_ratio` (CTR_k / CTR_ref), `swap` (swap-with-reference, both classes), "
        "`em` (Wang et al. 2018, one relevance per (user, item)), `em_item` (one per item).",
        f"* Intervals: {100 * est.confidence:g}% percentile bootstrap over sessions, {est.n_bootstrap} "
        f"replicates, per position; examination relative to position {est.reference}; EM stops "
        f"when the relative curve moves by less than {est.em_tol:g} in an iteration.",
        "* Columns: max |error| = largest |estimate − truth| over the non-reference positions; "
        "coverage = share of those positions whose interval contains the truth; "
        "placement p = p-value of the CTR ratio's chi-square check of randomised placement.",
        "",
        "## Error against the true examination curve",
        "",
        "| η | regime | estimator | max \\|error\\| | mean \\|error\\| | max CI half-width | coverage "
        "| all covered | placement p |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for _, r in summary.iterrows():
        lines.append(
            f"| {r['eta']:g} | {r['regime']} | {r['estimator']} | {_f(r['max_abs_error'])} | "
            f"{_f(r['mean_abs_error'])} | {_f(r['max_half_width'])} | {_f(r['coverage'], 2)} | "
            f"{'yes' if r['all_covered'] else 'no'} | {_f(r['placement_p'], 3)} |"
        )
    lines.append("")
    if len(obd):
        lines += [
            "## Open Bandit Dataset (uniform-random logger, 3 positions)",
            "",
            f"{obd['impressions'].groupby(obd['method']).sum().iloc[0]:,} impressions, "
            f"{obd['clicks'].groupby(obd['method']).sum().iloc[0]:,} clicks; placement check "
            f"p = {_f(obd['placement_p'].iloc[0])}. Truth unknown.",
            "",
            "| method | position (1 = top) | estimate | CI low | CI high | CTR |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for _, r in obd.iterrows():
            lines.append(
                f"| {r['method']} | {int(r['position']) + 1} | {_f(r['estimate'])} | {_f(r['ci_low'])} | "
                f"{_f(r['ci_high'])} | {_f(r['ctr'], 4)} |"
            )
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})\n" for p in figures if p.suffix == ".png"]
    lines += [f"Runtime: {seconds:.0f} s.", ""]
    return "\n".join(lines)
