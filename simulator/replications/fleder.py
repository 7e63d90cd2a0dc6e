"""Fleder & Hosanagar (2009): recommenders and the concentration of sales.

Claim
    Common recommenders — sales-based ("people who bought this …") and collaborative filters —
    can *raise* the concentration of sales (aggregate diversity falls, the Gini rises) relative
    to a world without recommendations, because they recommend what already sold, even though
    each user may be pushed toward products new to them.

World (the paper's terms)
    Users and products are ideal points in a 2-D attribute space, both ``N(0, I)``. A user's
    utility for a product is ``v_ij = −k · log d_ij`` (``d_ij`` the Euclidean distance).
    Awareness: user ``i`` knows product ``j`` with probability
    ``awareness · exp(−‖x_j‖² / (2 s²))`` (central, mainstream products are salient), drawn once.
    Each period every user buys one product, chosen by a multinomial logit
    (:class:`~simulator.clicks.choice.Logit`) among the products they are aware of. With a
    recommender, each user is first recommended one product they have not bought yet; it joins
    their awareness set for good and its utility gets a salience boost ``δ`` in that period's
    choice. Repeat purchases are allowed. The first ``startup_periods`` periods have no
    recommender (identical for every condition: common random numbers).

Conditions
    ``none`` (no recommender), ``popularity`` (recloop's ``popularity``: the best seller so far,
    the sales-based recommender), ``collaborative`` (user-based k-NN on purchase counts, cosine
    similarity; paper-specific).

Measurements
    ``gini``: Gini of cumulative sales over the **whole catalog** (never-sold products included)
    after every period (:func:`simulator.metrics.functions.gini`). ``novelty``: the mean over
    users of the mean self-information ``−log2 s_j`` of their purchases, ``s_j`` the product's
    share of all sales at the end of the run (high = users buy what few others buy).
    ``distinct``: mean number of distinct products a user bought.

References
----------
Fleder, D., & Hosanagar, K. (2009). Blockbuster culture's next rise or fall: The impact of
recommender systems on sales diversity. Management Science, 55(5), 697–712.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from simulator.clicks.choice import Logit
from simulator.metrics.functions import gini
from simulator.replications.common import (
    LatentCatalog,
    ReplicationResult,
    Rows,
    RunSection,
    Section,
    StreamLog,
    fmt_ci,
    make_world_policy,
    mean_ci,
    policy_scores,
    rank_items,
    user_knn_scores,
)
from simulator.rng import stream

NAME = "fleder"
CONDITIONS = ("none", "popularity", "collaborative")
Condition = Literal["none", "popularity", "collaborative"]


class WorldSection(Section):
    """``[world]``: users, products, awareness and the number of periods."""

    n_users: int = Field(200, ge=3, le=20_000, description="users")
    n_items: int = Field(200, ge=2, le=20_000, description="products")
    periods: int = Field(100, ge=1, description="purchase periods (one purchase per user each)")
    startup_periods: int = Field(5, ge=0, description="periods without a recommender first")
    utility_scale: float = Field(5.0, gt=0, description="k in v = −k·log(distance)")
    awareness: float = Field(0.3, gt=0, le=1, description="awareness probability of a product at the centre")
    awareness_width: float = Field(1.0, gt=0, description="s: width of the salience bump")


class RecommenderSection(Section):
    """``[recommender]``: the recommenders compared with no recommender."""

    conditions: list[Condition] = Field(default=list(CONDITIONS), min_length=1)
    salience_boost: float = Field(1.0, ge=0, description="δ added to the recommended product's utility")
    n_neighbors: int = Field(20, ge=1, description="neighbours of the collaborative filter")


class ChoiceSection(Section):
    """``[choice]``: the multinomial-logit choice."""

    temperature: float = Field(1.0, gt=0, description="logit temperature T")


class FlederConfig(Section):
    """The Fleder & Hosanagar (2009) replication."""

    run: RunSection = RunSection(reps=20)
    world: WorldSection = WorldSection()
    recommender: RecommenderSection = RecommenderSection()
    choice: ChoiceSection = ChoiceSection()


Config = FlederConfig


def make_world(cfg: WorldSection, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Ideal points, utilities ``(U, I)`` and the initial awareness sets ``(U, I)`` bool."""
    users = rng.standard_normal((cfg.n_users, 2))
    items = rng.standard_normal((cfg.n_items, 2))
    dist = np.linalg.norm(users[:, None, :] - items[None, :, :], axis=2)
    utility = -cfg.utility_scale * np.log(np.maximum(dist, 1e-6))
    salience = cfg.awareness * np.exp(-(items**2).sum(axis=1) / (2 * cfg.awareness_width**2))
    aware = rng.random(utility.shape) < salience[None, :]
    # every user knows at least one product: a user who drew none knows the nearest one
    none = ~aware.any(axis=1)
    aware[np.flatnonzero(none), np.argmin(dist[none], axis=1)] = True
    return {"users": users, "items": items, "utility": utility, "aware": aware}


def simulate_rep(cfg: FlederConfig, rep: int) -> dict[str, dict[str, np.ndarray]]:
    """One world, every condition: per condition ``gini`` (T,) and ``sales`` (U, I) counts."""
    w, seed = cfg.world, cfg.run.seed
    world = make_world(w, stream(seed, f"{NAME}:world", rep))
    n_users, n_items = world["utility"].shape
    choice = Logit(cfg.choice.temperature)
    rows = np.arange(n_users)
    cols = np.ones((n_users, n_items), dtype=bool)

    def buy(aware: np.ndarray, boost: np.ndarray | None, rng) -> np.ndarray:
        u = world["utility"] if boost is None else world["utility"] + boost
        picked = choice.choose(u, aware, rng)
        return np.argmax(picked, axis=1)

    sales0 = np.zeros((n_users, n_items), dtype=np.int64)
    aware0 = world["aware"].copy()
    log0 = StreamLog()
    gini0 = []
    rng0 = stream(seed, f"{NAME}:startup", rep)
    for _ in range(w.startup_periods):
        items = buy(aware0, None, rng0)
        sales0[rows, items] += 1
        log0.add(rows, items)
        gini0.append(gini(sales0.sum(axis=0)))

    out = {}
    for cond in cfg.recommender.conditions:
        sales, aware = sales0.copy(), aware0.copy()
        log = StreamLog(list(log0.users), list(log0.items))
        g = list(gini0)
        rng_choice = stream(seed, f"{NAME}:choice", rep)  # the same choice draws in every condition
        rng_rec = stream(seed, f"{NAME}:policy:{cond}", rep)
        pop = (
            make_world_policy(
                "popularity", n_users, LatentCatalog(world["items"]), None, stream(seed, f"{NAME}:init", rep)
            )
            if cond == "popularity"
            else None
        )
        for _ in range(w.periods):
            boost = None
            if cond != "none":
                if pop is not None:
                    pop.fit(log)
                    scores = policy_scores(pop, rows)
                else:
                    scores = user_knn_scores(sales, cfg.recommender.n_neighbors)
                allowed = sales == 0
                allowed[~allowed.any(axis=1)] = True  # bought everything: anything may be recommended
                rec = rank_items(scores, allowed & cols, rng_rec, 1)[:, 0]
                aware[rows, rec] = True
                boost = np.zeros((n_users, n_items))
                boost[rows, rec] = cfg.recommender.salience_boost
            items = buy(aware, boost, rng_choice)
            sales[rows, items] += 1
            log.add(rows, items)
            g.append(gini(sales.sum(axis=0)))
        out[cond] = {"gini": np.asarray(g), "sales": sales}
    return out


def novelty(sales: np.ndarray) -> tuple[float, float]:
    """``(mean self-information of a user's purchases, mean distinct products per user)``.

    Self-information of a product: ``−log2 s_j`` with ``s_j`` its share of all sales; a user's
    novelty is the purchase-weighted mean over their purchases; both averaged over users.
    """
    total = sales.sum(axis=0).astype(np.float64)
    share = total / total.sum()
    info = np.where(share > 0, -np.log2(np.where(share > 0, share, 1.0)), 0.0)
    per_user = (sales * info[None, :]).sum(axis=1) / np.maximum(sales.sum(axis=1), 1)
    return float(per_user.mean()), float((sales > 0).sum(axis=1).mean())


def run(cfg: FlederConfig, reps: int | None = None) -> ReplicationResult:
    """All repetitions; tidy table and findings (paired differences against ``none``)."""
    n_reps = cfg.run.reps if reps is None else reps
    rows = Rows()
    acc: dict[str, dict[str, list[float]]] = {
        c: {"gini": [], "novelty": [], "distinct": [], "d_gini": [], "d_novelty": []}
        for c in cfg.recommender.conditions
    }
    for rep in range(n_reps):
        res = simulate_rep(cfg, rep)
        for cond, r in res.items():
            nov, distinct = novelty(r["sales"])
            rows.add_series(rep, cond, "gini", r["gini"], start=1)
            last = len(r["gini"])
            rows.add(rep, cond, last, "novelty", nov)
            rows.add(rep, cond, last, "distinct_items", distinct)
            a = acc[cond]
            a["gini"].append(float(r["gini"][-1]))
            a["novelty"].append(nov)
            a["distinct"].append(distinct)
            if "none" in res:
                nov0, _ = novelty(res["none"]["sales"])
                a["d_gini"].append(float(r["gini"][-1] - res["none"]["gini"][-1]))
                a["d_novelty"].append(nov - nov0)
    findings: dict = {"reps": n_reps, "conditions": {}}
    for cond, a in acc.items():
        e = {k: mean_ci(a[k]) for k in ("gini", "novelty", "distinct")}
        if a["d_gini"]:
            e["gini_minus_none"] = mean_ci(a["d_gini"])
            e["novelty_minus_none"] = mean_ci(a["d_novelty"])
        findings["conditions"][cond] = e
    return ReplicationResult(NAME, cfg, rows.frame(), findings)


def summary_markdown(result: ReplicationResult) -> str:
    f, cfg = result.findings, result.config
    w = cfg.world
    lines = [
        "# Fleder & Hosanagar (2009): recommenders and sales concentration\n",
        f"{w.n_users} users, {w.n_items} products in 2-D, {w.startup_periods} periods without a "
        f"recommender then {w.periods} periods; utility −{w.utility_scale}·log(distance), logit "
        f"T = {cfg.choice.temperature}, salience boost δ = {cfg.recommender.salience_boost}; "
        f"{f['reps']} repetitions. Means with 95% t-intervals, end of the run.\n",
        "| condition | Gini (whole catalog) | Gini − none | novelty (bits) | novelty − none "
        "| distinct/user |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for cond, e in f["conditions"].items():
        dg = fmt_ci(*e["gini_minus_none"]) if "gini_minus_none" in e else "—"
        dn = fmt_ci(*e["novelty_minus_none"], digits=2) if "novelty_minus_none" in e else "—"
        lines.append(
            f"| {cond} | {fmt_ci(*e['gini'])} | {dg} | {fmt_ci(*e['novelty'], digits=2)} | {dn} | "
            f"{fmt_ci(*e['distinct'], digits=1)} |"
        )
    return "\n".join(lines) + "\n"
