"""Chaney, Stewart & Engelhardt (2018): algorithmic confounding homogenises users.

Claim
    Recommenders trained on data their own recommendations shaped ("confounded") make similar
    users consume ever more similar items — more than an ideal recommender that knows the true
    utilities would — and lower the users' utility. Popularity homogenises most; random
    recommendations homogenise less than ideal.

World (the paper's terms)
    ``d`` latent topics. A shared topic popularity ``w ~ Dirichlet(1)``; user preferences
    ``θ_u ~ Dirichlet(preference_scale · d · w)``; item attributes
    ``β_i ~ Dirichlet(attribute_scale · d · w')`` with ``w' ~ Dirichlet(100)``. True utility
    ``V_ui = θ_u · β_i``; users know a noisy version ``V̂_ui ~ Beta(mean V_ui, var σ²)``.
    ``items_per_step`` new items arrive each step. Each step every user is shown the ranked
    list of all released items they have not consumed yet and consumes exactly one, the item
    maximising ``rank^(−a) · V̂`` (:class:`~simulator.clicks.choice.RankAttention`). The first
    ``startup_steps`` steps rank at random (identical for every recommender: common random
    numbers); then each recommender ranks, retrained after every step on everything consumed.

Recommenders
    ``ideal`` = recloop's ``oracle`` (true ``V``), ``mf`` = recloop's ``greedy`` (implicit ALS),
    ``popularity`` = recloop's ``popularity`` (consumption counts), ``content`` (the user's mean
    consumed attribute vector dotted with each item's attributes; paper-specific), ``random``.

Measurements
    ``jaccard_similar``: mean Jaccard index of the cumulative consumed sets of the most-similar
    user pairs (each user with the other user of highest cosine similarity of ``θ``; unordered
    pairs counted once), after every step; its change relative to ``ideal``
    (``delta_jaccard``, same world, same step). ``utility``: mean true ``V`` of the items consumed
    in a step; relative to ``ideal`` over the recommender phase (``utility_ratio``).

References
----------
Chaney, A. J. B., Stewart, B. M., & Engelhardt, B. E. (2018). How algorithmic confounding in
recommendation systems increases homogeneity and decreases utility. RecSys '18, 224–232.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from simulator.clicks.choice import RankAttention
from simulator.replications.common import (
    LatentCatalog,
    LatentPopulation,
    ReplicationResult,
    Rows,
    RunSection,
    Section,
    StreamLog,
    make_world_policy,
    mean_ci,
    policy_scores,
    rank_items,
)
from simulator.rng import stream

NAME = "chaney"
RECOMMENDERS = ("ideal", "mf", "content", "popularity", "random")
Recommender = Literal["ideal", "mf", "content", "popularity", "random"]


class WorldSection(Section):
    """``[world]``: users, topics, the growing catalog and the schedule."""

    n_users: int = Field(100, ge=3, le=20_000, description="users")
    n_dims: int = Field(20, ge=2, le=512, description="latent topics d")
    items_per_step: int = Field(10, ge=1, le=10_000, description="new items released each step")
    startup_steps: int = Field(10, ge=1, description="steps of random rankings before any recommender")
    steps: int = Field(90, ge=1, description="steps with the recommender, retrained every step")
    preference_scale: float = Field(1.0, gt=0, description="θ_u ~ Dirichlet(preference_scale·d·w)")
    attribute_scale: float = Field(0.1, gt=0, description="β_i ~ Dirichlet(attribute_scale·d·w')")
    known_utility_variance: float = Field(1e-5, ge=0, le=0.01, description="σ² of V̂ ~ Beta(mean V, σ²)")


class ChoiceSection(Section):
    """``[choice]``: the rank-attention choice model."""

    exponent: float = Field(0.8, ge=0, le=10, description="attention rank^(−exponent)")


class MFSection(Section):
    """``[mf]``: hyperparameters of recloop's ``greedy`` (implicit ALS) used as the MF recommender."""

    factors: int = Field(20, ge=1, le=512)
    regularization: float = Field(0.1, gt=0)
    alpha: float = Field(20.0, gt=0)
    iterations: int = Field(10, ge=1, description="ALS sweeps of the first fit")
    warm_iterations: int = Field(2, ge=1, description="ALS sweeps of each later (warm) fit")


class ChaneyConfig(Section):
    """The Chaney et al. (2018) replication."""

    run: RunSection = RunSection(reps=50)
    world: WorldSection = WorldSection()
    choice: ChoiceSection = ChoiceSection()
    mf: MFSection = MFSection()
    recommenders: list[Recommender] = Field(default=list(RECOMMENDERS), min_length=1)


Config = ChaneyConfig


# --------------------------------------------------------------------------------------------
# world
# --------------------------------------------------------------------------------------------
def make_world(cfg: WorldSection, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw preferences, attributes, true and known utilities for one repetition.

    Returns
    -------
    dict with ``theta`` (U, d), ``beta`` (I, d), ``true`` (U, I) and ``known`` (U, I), float64,
    and ``pairs`` (P, 2) int64: the most-similar user pairs (cosine of ``theta``), unordered,
    each once.
    """
    d, n_users = cfg.n_dims, cfg.n_users
    n_items = cfg.items_per_step * (cfg.startup_steps + cfg.steps)
    w = rng.dirichlet(np.ones(d))
    w_item = rng.dirichlet(np.full(d, 100.0))
    theta = rng.dirichlet(np.maximum(cfg.preference_scale * d * w, 1e-3), size=n_users)
    beta = rng.dirichlet(np.maximum(cfg.attribute_scale * d * w_item, 1e-3), size=n_items)
    true = theta @ beta.T
    known = _beta_noise(true, cfg.known_utility_variance, rng)
    unit = theta / np.linalg.norm(theta, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argmax(sim, axis=1)
    pairs = np.unique(np.sort(np.stack([np.arange(n_users), nn], axis=1), axis=1), axis=0)
    return {"theta": theta, "beta": beta, "true": true, "known": known, "pairs": pairs}


def _beta_noise(mean: np.ndarray, var: float, rng: np.random.Generator) -> np.ndarray:
    """``Beta`` draws with the given means and variance (capped at half the Bernoulli variance)."""
    m = np.clip(mean, 1e-6, 1 - 1e-6)
    if var == 0:
        return m.copy()
    v = np.minimum(var, 0.5 * m * (1 - m))
    common = m * (1 - m) / v - 1
    return rng.beta(m * common, (1 - m) * common)


def pair_jaccard(consumed: np.ndarray, pairs: np.ndarray) -> float:
    """Mean Jaccard index of the consumed sets of the given user pairs (empty pairs skipped)."""
    a, b = consumed[pairs[:, 0]], consumed[pairs[:, 1]]
    inter = (a & b).sum(axis=1)
    union = (a | b).sum(axis=1)
    ok = union > 0
    return float((inter[ok] / union[ok]).mean()) if ok.any() else float("nan")


# --------------------------------------------------------------------------------------------
# recommenders
# --------------------------------------------------------------------------------------------
class ContentBased:
    """Content filtering on observed item attributes (Chaney et al.'s content recommender).

    The user's profile is the mean attribute vector of the items they consumed; an item's score
    is its attribute vector dotted with the profile. Refit every step.
    """

    def __init__(self, beta: np.ndarray, n_users: int) -> None:
        self.beta_ = beta
        self.profile_ = np.zeros((n_users, beta.shape[1]))

    def fit(self, consumed: np.ndarray) -> None:
        counts = consumed.sum(axis=1, keepdims=True)
        self.profile_ = np.divide(consumed @ self.beta_, np.maximum(counts, 1))

    def scores(self, users: np.ndarray) -> np.ndarray:
        return self.profile_[users] @ self.beta_.T


def _scorer(name: str, world: dict, cfg: ChaneyConfig, seed: int, rep: int):
    """``(fit(consumed, log), scores(users, rng))`` closures for one recommender."""
    n_users, n_items = world["true"].shape
    catalog = LatentCatalog(world["beta"])
    init = stream(seed, f"{NAME}:policy-init:{name}", rep)
    if name == "random":
        return (lambda consumed, log: None), (lambda users, rng: rng.random((users.size, n_items)))
    if name == "content":
        cb = ContentBased(world["beta"], n_users)
        return (lambda consumed, log: cb.fit(consumed)), (lambda users, rng: cb.scores(users))
    if name == "ideal":
        pol = make_world_policy("oracle", n_users, catalog, LatentPopulation(world["true"]), init)
    elif name == "popularity":
        pol = make_world_policy("popularity", n_users, catalog, None, init)
    else:  # mf
        pol = make_world_policy("greedy", n_users, catalog, None, init, **cfg.mf.model_dump())
    return (lambda consumed, log: pol.fit(log)), (lambda users, rng: policy_scores(pol, users))


# --------------------------------------------------------------------------------------------
# the simulation
# --------------------------------------------------------------------------------------------
def simulate_rep(cfg: ChaneyConfig, rep: int) -> dict[str, dict[str, np.ndarray]]:
    """One repetition: one world, every recommender. Returns per recommender the arrays
    ``jaccard`` (T,), ``utility`` (T,) over all steps (start-up included)."""
    w = cfg.world
    seed = cfg.run.seed
    world = make_world(w, stream(seed, f"{NAME}:world", rep))
    n_users, n_items = world["true"].shape
    m, t0, total = w.items_per_step, w.startup_steps, w.startup_steps + w.steps
    choice = RankAttention(cfg.choice.exponent)
    users = np.arange(n_users)
    rows = np.arange(n_users)

    def one_step(t: int, scores: np.ndarray, consumed: np.ndarray, rng) -> np.ndarray:
        released = np.zeros(n_items, dtype=bool)
        released[: (t + 1) * m] = True
        allowed = released[None, :] & ~consumed
        length = int(allowed[0].sum())  # every user consumed t items: the same count for all
        ranked = rank_items(scores, allowed, rng, length)
        picked = choice.choose(world["known"][rows[:, None], ranked], np.ones(ranked.shape, bool), rng)
        return ranked[rows, np.argmax(picked, axis=1)]

    # start-up: random rankings, the same for every recommender (common random numbers)
    consumed0 = np.zeros((n_users, n_items), dtype=bool)
    log0 = StreamLog()
    jac0, util0 = [], []
    rng_start = stream(seed, f"{NAME}:startup", rep)
    for t in range(t0):
        items = one_step(t, rng_start.random((n_users, n_items)), consumed0, rng_start)
        consumed0[rows, items] = True
        log0.add(users, items)
        jac0.append(pair_jaccard(consumed0, world["pairs"]))
        util0.append(world["true"][rows, items].mean())

    out: dict[str, dict[str, np.ndarray]] = {}
    for name in cfg.recommenders:
        consumed = consumed0.copy()
        log = StreamLog(list(log0.users), list(log0.items))
        fit, score = _scorer(name, world, cfg, seed, rep)
        rng = stream(seed, f"{NAME}:policy:{name}", rep)
        jac, util = list(jac0), list(util0)
        for t in range(t0, total):
            fit(consumed, log)
            items = one_step(t, score(users, rng), consumed, rng)
            consumed[rows, items] = True
            log.add(users, items)
            jac.append(pair_jaccard(consumed, world["pairs"]))
            util.append(world["true"][rows, items].mean())
        out[name] = {"jaccard": np.asarray(jac), "utility": np.asarray(util)}
    return out


def run(cfg: ChaneyConfig, reps: int | None = None) -> ReplicationResult:
    """All repetitions; the tidy table and the findings (changes relative to ``ideal``)."""
    n_reps = cfg.run.reps if reps is None else reps
    t0 = cfg.world.startup_steps
    rows = Rows()
    per_rep: dict[str, dict[str, list[float]]] = {
        n: {"dj": [], "ur": [], "j": [], "u": []} for n in cfg.recommenders
    }
    for rep in range(n_reps):
        res = simulate_rep(cfg, rep)
        ideal = res.get("ideal")
        for name, series in res.items():
            rows.add_series(rep, name, "jaccard_similar", series["jaccard"])
            rows.add_series(rep, name, "utility", series["utility"])
            util_rec = float(series["utility"][t0:].mean())
            per_rep[name]["j"].append(float(series["jaccard"][-1]))
            per_rep[name]["u"].append(util_rec)
            if ideal is not None:
                rows.add_series(rep, name, "delta_jaccard", series["jaccard"] - ideal["jaccard"])
                per_rep[name]["dj"].append(float(series["jaccard"][-1] - ideal["jaccard"][-1]))
                per_rep[name]["ur"].append(util_rec / float(ideal["utility"][t0:].mean()))
    findings: dict = {"reps": n_reps, "steps": cfg.world.startup_steps + cfg.world.steps, "recommenders": {}}
    for name, d in per_rep.items():
        entry = {
            "jaccard_similar_final": mean_ci(d["j"]),
            "utility_recommender_phase": mean_ci(d["u"]),
        }
        if d["dj"]:
            entry["delta_jaccard_final"] = mean_ci(d["dj"])
            entry["utility_ratio"] = mean_ci(d["ur"])
        findings["recommenders"][name] = entry
    return ReplicationResult(NAME, cfg, rows.frame(), findings)


def summary_markdown(result: ReplicationResult) -> str:
    """The numbers of the run as a Markdown section."""
    from simulator.replications.common import fmt_ci

    f, cfg = result.findings, result.config
    w = cfg.world
    lines = [
        "# Chaney, Stewart & Engelhardt (2018): homogenisation by algorithmic confounding\n",
        f"{w.n_users} users, {w.n_dims} topics, {w.items_per_step} new items per step, "
        f"{w.startup_steps} start-up steps (random) + {w.steps} recommender steps; "
        f"rank attention exponent {cfg.choice.exponent}; {f['reps']} repetitions. "
        "Means over repetitions with 95% t-intervals; final step.\n",
        "| recommender | Jaccard (similar pairs) | change vs ideal | utility (rec. phase) "
        "| utility / ideal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, e in f["recommenders"].items():
        dj = fmt_ci(*e["delta_jaccard_final"]) if "delta_jaccard_final" in e else "—"
        ur = fmt_ci(*e["utility_ratio"]) if "utility_ratio" in e else "—"
        lines.append(
            f"| {name} | {fmt_ci(*e['jaccard_similar_final'])} | {dj} | "
            f"{fmt_ci(*e['utility_recommender_phase'], digits=4)} | {ur} |"
        )
    return "\n".join(lines) + "\n"
