"""Chaney, Stewart & Engelhardt (2018): algorithmic confounding homogenises users.

Claim
    Recommenders trained on data their own recommendations shaped ("confounded") make similar
    users consume ever more similar items — more than an ideal recommender that knows the true
    utilities would — and lower the users' utility. Popularity homogenises most; random
    recommendations homogenise less than ideal.

World (the paper's terms)
    ``d`` latent topics. Chaney et al. (Sec. 3): ``μ_ρ ~ Dirichlet(1) · 10`` and user
    preferences ``θ_u ~ Dirichlet(μ_ρ)``; ``μ_α ~ Dirichlet(100) · 0.1`` and item attributes
    ``β_i ~ Dirichlet(μ_α)`` (the totals 10 and 0.1 are ``preference_scale`` and
    ``attribute_scale``; with a total of 0.1 almost every item is about one topic). True utility
    ``V_ui ~ Beta'(⟨θ_u, β_i⟩, σ²)`` (``Beta'`` = a Beta with the given mean and variance);
    users know ``V̂_ui = η_ui · V_ui`` with ``η_ui ~ Beta'(μ_η = 0.98, σ²)``, ``σ = 10⁻⁵``.
    ``items_per_step`` new items arrive each step. Each step every user is shown the ranked
    list of all released items they have not consumed yet and consumes exactly one, the item
    maximising ``rank^(−a) · V̂`` (:class:`~simulator.clicks.choice.RankAttention`). The first
    ``startup_steps`` steps rank at random (identical for every recommender: common random
    numbers); then each recommender ranks, retrained after every step on everything consumed,
    and the ``items_per_step`` newest items are *interleaved* at random positions of its list
    (the recommender ranks only the older items) — how the paper lets every recommender meet
    new items (T-RECS's replication: ``interleave_new_items``).

Recommenders
    ``ideal`` = recloop's ``oracle`` (true ``V``), ``mf`` = recloop's ``greedy`` (implicit ALS),
    ``popularity`` = recloop's ``popularity`` (consumption counts), ``content`` (content
    filtering: the user's preference estimate is the non-negative least-squares regression of the
    user's 0/1 consumption vector over all released items on the items' attributes,
    ``θ̂_u = argmin_{θ ≥ 0} ‖Bθ − y_u‖²``, score ``θ̂_u · β_i``; paper-specific), ``random``.

Measurements
    ``delta_jaccard`` (the paper's homogenisation, its Fig. 3): after every recommender step, each
    user is paired with the most similar other user by the cosine similarity of *the
    recommender's own* user representation ``θ`` (ideal: the true preferences; MF: the ALS user
    factors; content: the NNLS estimate; popularity and random, which treat every user alike:
    a random other user), and the mean Jaccard index of the pairs' cumulative consumed sets is
    compared with the Jaccard index of *the same pairs* under the ideal recommender in the same
    world: ``J_rec(pairs) − J_ideal(pairs)``. In Chaney et al.'s notation ``ρ_u, α_i`` are the
    true preferences and attributes, ``θ_u, β_i`` the recommender's estimates; T-RECS's
    replication (``SimilarUserInteractionSimilarity``) pairs by the recommender's ``users_hat``.
    ``jaccard_similar``: the same Jaccard index for fixed pairs of users most similar in their
    *true* preferences (unordered, each once), and ``delta_jaccard_true_pairs`` its change
    relative to ideal — a stricter variant reported next to the paper's.
    ``utility``: mean true ``V`` of the items consumed in a step; relative to ``ideal`` over the
    recommender phase (``utility_ratio``).

References
----------
Chaney, A. J. B., Stewart, B. M., & Engelhardt, B. E. (2018). How algorithmic confounding in
recommendation systems increases homogeneity and decreases utility. RecSys '18, 224–232.
Lucherini, E., Sun, M., Winecoff, A., & Narayanan, A. (2021). T-RECS: A simulation tool to study
the societal impact of recommender systems. arXiv:2107.08959 (its replication of Chaney et al.,
``algo_confounding/replication_sim.py`` and ``chaney_utils.py`` in sunnymatt/t-recs-experiments,
fixes the hyperparameters, the NNLS content filter and the interleaving of new items used here).
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
    preference_scale: float = Field(10.0, gt=0, description="θ_u ~ Dirichlet(preference_scale·w), w ~ Dir(1)")
    attribute_scale: float = Field(
        0.1, gt=0, description="β_i ~ Dirichlet(attribute_scale·w'), w' ~ Dir(100)"
    )
    known_fraction: float = Field(0.98, gt=0, lt=1, description="μ_η: users know V̂ = η·V, η ~ Beta'(μ_η, σ²)")
    utility_sd: float = Field(
        1e-5, ge=0, le=0.1, description="σ of V ~ Beta'(θ·β, σ²) and η ~ Beta'(μ_η, σ²)"
    )
    interleave_new: bool = Field(
        True, description="recommender phase: the newest items_per_step items at random list positions"
    )


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
def _dirichlet(alpha: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of ``Dirichlet(alpha)``, stable for tiny ``alpha`` (rows of shape (size, d)).

    ``numpy``'s sampler returns NaN rows when every gamma variate underflows (``alpha`` of order
    0.005, as in the item attributes here). We draw ``log Gamma(a)`` as
    ``log Gamma(a + 1) + log(U) / a`` (Marsaglia & Tsang's boost) and normalise in log space.
    """
    a = np.broadcast_to(np.maximum(alpha, 1e-12), (size, alpha.size))
    log_g = np.log(rng.standard_gamma(a + 1.0)) + np.log(rng.random(a.shape)) / a
    log_g -= log_g.max(axis=1, keepdims=True)
    g = np.exp(log_g)
    return g / g.sum(axis=1, keepdims=True)


def make_world(cfg: WorldSection, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw preferences, attributes, true and known utilities for one repetition.

    Notes
    -----
    Chaney et al. (2018), Sec. 3: ``θ_u ~ Dirichlet(μ_ρ)``, ``μ_ρ ~ Dirichlet(1) · 10``;
    ``β_i ~ Dirichlet(μ_α)``, ``μ_α ~ Dirichlet(100) · 0.1``;
    ``V_ui ~ Beta'(θ_u · β_i, σ²)``; ``V̂_ui = η_ui · V_ui``, ``η_ui ~ Beta'(0.98, σ²)``.

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
    theta = _dirichlet(cfg.preference_scale * w, n_users, rng)
    beta = _dirichlet(cfg.attribute_scale * w_item, n_items, rng)
    true = _beta_noise(theta @ beta.T, cfg.utility_sd**2, rng)
    known = true * _beta_noise(np.full(true.shape, cfg.known_fraction), cfg.utility_sd**2, rng)
    unit = theta / np.linalg.norm(theta, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argmax(sim, axis=1)
    pairs = np.unique(np.sort(np.stack([np.arange(n_users), nn], axis=1), axis=1), axis=0)
    return {"theta": theta, "beta": beta, "true": true, "known": known, "pairs": pairs}


def _beta_noise(mean: np.ndarray, var: float, rng: np.random.Generator) -> np.ndarray:
    """``Beta'(mean, var)``: Beta draws with the given means and variance (capped at half the
    Bernoulli variance ``m(1 − m)``, so both Beta parameters stay positive)."""
    m = np.clip(mean, 1e-9, 1 - 1e-9)
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
    """Content filtering on the items' attributes: a per-user non-negative least-squares fit.

    Notes
    -----
    With ``B`` (n_released, d) the attributes of the released items and ``y_u`` the user's 0/1
    consumption vector over them,

    .. math:: \\hat\\theta_u = \\arg\\min_{\\theta \\ge 0} \\lVert B\\theta - y_u \\rVert_2^2,
              \\qquad \\mathrm{score}_{ui} = \\hat\\theta_u \\cdot \\beta_i .

    Solved through the Gram matrix: with ``BᵀB = LLᵀ`` (Cholesky) the objective equals
    ``‖Lᵀθ − L⁻¹Bᵀy_u‖²`` up to a constant, a d × d NNLS per user. Unlike the mean attribute
    vector of the consumed items, the regression also uses what the user did *not* consume and
    corrects for how common each topic is among the items. Refit every step.

    References
    ----------
    Chaney et al. (2018), Sec. 3 (content filtering estimates preferences from item attributes);
    T-RECS's ``ChaneyContent`` (``scipy.optimize.nnls`` of the cumulative interactions on the
    item attributes, one user at a time).
    """

    def __init__(self, beta: np.ndarray, n_users: int) -> None:
        self.beta_ = beta
        self.profile_ = np.zeros((n_users, beta.shape[1]))

    def fit(self, consumed: np.ndarray, n_released: int) -> None:
        from scipy.optimize import nnls

        b = self.beta_[:n_released]
        y = consumed[:, :n_released].astype(np.float64)
        gram = b.T @ b + 1e-10 * np.eye(b.shape[1])
        chol = np.linalg.cholesky(gram)
        rhs = np.linalg.solve(chol, (y @ b).T).T  # rows L⁻¹ Bᵀ y_u
        a = chol.T
        for u in range(y.shape[0]):
            self.profile_[u] = nnls(a, rhs[u])[0] if y[u].any() else 0.0

    def scores(self, users: np.ndarray) -> np.ndarray:
        return self.profile_[users] @ self.beta_.T


def _scorer(name: str, world: dict, cfg: ChaneyConfig, seed: int, rep: int):
    """``(fit(consumed, log), scores(users, rng), represent())`` closures for one recommender.

    ``represent()`` is the recommender's current user representation (U, k) — what it believes
    the users' preferences are, used to pair each user with the most similar one (Chaney et al.
    pair users by the cosine similarity of the *recommender's* ``θ``) — or ``None`` when the
    recommender has no personal representation (popularity, random: every user alike, so the
    pairs are random, as in T-RECS where their ``users_hat`` is constant or random).
    """
    n_users, n_items = world["true"].shape
    catalog = LatentCatalog(world["beta"])
    init = stream(seed, f"{NAME}:policy-init:{name}", rep)
    if name == "random":
        return (
            (lambda consumed, log: None),
            (lambda users, rng: rng.random((users.size, n_items))),
            (lambda: None),
        )
    if name == "content":
        cb = ContentBased(world["beta"], n_users)
        m = cfg.world.items_per_step

        def fit_content(consumed, log):  # one log entry per step: the items released before now
            cb.fit(consumed, m * len(log.users))

        return fit_content, (lambda users, rng: cb.scores(users)), (lambda: cb.profile_)
    if name == "ideal":
        pol = make_world_policy("oracle", n_users, catalog, LatentPopulation(world["true"]), init)
        return (
            (lambda consumed, log: pol.fit(log)),
            (lambda users, rng: policy_scores(pol, users)),
            (lambda: world["theta"]),
        )
    if name == "popularity":
        pol = make_world_policy("popularity", n_users, catalog, None, init)
        return (
            (lambda consumed, log: pol.fit(log)),
            (lambda users, rng: policy_scores(pol, users)),
            (lambda: None),
        )
    pol = make_world_policy("greedy", n_users, catalog, None, init, **cfg.mf.model_dump())
    return (
        (lambda consumed, log: pol.fit(log)),
        (lambda users, rng: policy_scores(pol, users)),
        (lambda: pol.model_.user_factors_),
    )


def most_similar(representation: np.ndarray | None, rng: np.random.Generator, n_users: int) -> np.ndarray:
    """Each user's most similar other user by cosine similarity of ``representation`` (U, k),
    ties broken at random; ``None`` or all-equal similarities give a random other user.

    Returns
    -------
    ndarray of shape (U, 2), int64: directed pairs ``(u, nearest(u))``, one per user (T-RECS's
    ``SimilarUserInteractionSimilarity``).
    """
    if representation is None:
        sim = np.zeros((n_users, n_users))
    else:
        x = np.asarray(representation, dtype=np.float64)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        unit = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
        sim = unit @ unit.T
    sim = sim + 1e-9 * rng.random(sim.shape)  # random tie-break (similarities are <= 1)
    np.fill_diagonal(sim, -np.inf)
    return np.stack([np.arange(n_users), np.argmax(sim, axis=1)], axis=1)


# --------------------------------------------------------------------------------------------
# the simulation
# --------------------------------------------------------------------------------------------
def _interleave_newest(
    scores: np.ndarray, allowed: np.ndarray, new_lo: int, new_hi: int, rng: np.random.Generator
) -> np.ndarray:
    """Every allowed item in one list per user: the recommender's ranking of the older items,
    with the newest items (columns ``new_lo:new_hi``, never consumed yet) at random positions.

    Notes
    -----
    Chaney et al. (2018) interleave each step's new items into the recommendations at random;
    T-RECS's replication does it with ``interleave_new_items`` (the newest ``k`` items, in random
    order per user) and ``k`` list positions drawn once per step for all users, the other
    positions keeping the recommender's order. We do the same.

    Returns
    -------
    ndarray of shape (n, L), int64, ``L`` = allowed items per row (equal for every row).
    """
    n = scores.shape[0]
    k = new_hi - new_lo
    old = allowed.copy()
    old[:, new_lo:new_hi] = False
    length = int(allowed[0].sum())
    ranked_old = rank_items(scores, old, rng, length - k)
    new_items = new_lo + np.argsort(rng.random((n, k)), axis=1)  # random order per user
    slots = np.zeros(length, dtype=bool)
    slots[rng.choice(length, size=k, replace=False)] = True
    out = np.empty((n, length), dtype=np.int64)
    out[:, ~slots] = ranked_old
    out[:, slots] = new_items
    return out


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

    def one_step(t: int, scores: np.ndarray, consumed: np.ndarray, rng, interleave: bool) -> np.ndarray:
        released = np.zeros(n_items, dtype=bool)
        released[: (t + 1) * m] = True
        allowed = released[None, :] & ~consumed
        length = int(allowed[0].sum())  # every user consumed t items: the same count for all
        if interleave:
            ranked = _interleave_newest(scores, allowed, t * m, (t + 1) * m, rng)
        else:
            ranked = rank_items(scores, allowed, rng, length)
        picked = choice.choose(world["known"][rows[:, None], ranked], np.ones(ranked.shape, bool), rng)
        return ranked[rows, np.argmax(picked, axis=1)]

    # start-up: random rankings, the same for every recommender (common random numbers)
    consumed0 = np.zeros((n_users, n_items), dtype=bool)
    log0 = StreamLog()
    jac0, util0 = [], []
    rng_start = stream(seed, f"{NAME}:startup", rep)
    for t in range(t0):
        items = one_step(t, rng_start.random((n_users, n_items)), consumed0, rng_start, False)
        consumed0[rows, items] = True
        log0.add(users, items)
        jac0.append(pair_jaccard(consumed0, world["pairs"]))
        util0.append(world["true"][rows, items].mean())

    # ideal first: the other recommenders' homogenisation is measured against its trajectory
    names = sorted(cfg.recommenders, key=lambda n: n != "ideal")
    ideal_consumed: list[np.ndarray] = []  # ideal's cumulative consumption after each step
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        consumed = consumed0.copy()
        log = StreamLog(list(log0.users), list(log0.items))
        fit, score, represent = _scorer(name, world, cfg, seed, rep)
        rng = stream(seed, f"{NAME}:policy:{name}", rep)
        rng_pairs = stream(seed, f"{NAME}:pairs:{name}", rep)
        jac, util = list(jac0), list(util0)
        jac_rec, jac_ideal = [np.nan] * t0, [np.nan] * t0  # start-up: identical, no recommender
        for t in range(t0, total):
            fit(consumed, log)
            pairs = most_similar(represent(), rng_pairs, n_users)  # the representation it ranks with
            items = one_step(t, score(users, rng), consumed, rng, w.interleave_new)
            consumed[rows, items] = True
            log.add(users, items)
            jac.append(pair_jaccard(consumed, world["pairs"]))
            util.append(world["true"][rows, items].mean())
            if name == "ideal":
                ideal_consumed.append(consumed.copy())
            if ideal_consumed:
                jac_rec.append(pair_jaccard(consumed, pairs))
                jac_ideal.append(pair_jaccard(ideal_consumed[t - t0], pairs))
        series = {"jaccard": np.asarray(jac), "utility": np.asarray(util)}
        if ideal_consumed:
            series["jaccard_rec_pairs"] = np.asarray(jac_rec)
            series["delta_jaccard"] = np.asarray(jac_rec) - np.asarray(jac_ideal)
        out[name] = series
    return out


def run(cfg: ChaneyConfig, reps: int | None = None) -> ReplicationResult:
    """All repetitions; the tidy table and the findings (changes relative to ``ideal``)."""
    n_reps = cfg.run.reps if reps is None else reps
    t0 = cfg.world.startup_steps
    rows = Rows()
    per_rep: dict[str, dict[str, list[float]]] = {
        n: {"dj": [], "djt": [], "ur": [], "j": [], "u": []} for n in cfg.recommenders
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
                rows.add_series(rep, name, "delta_jaccard", series["delta_jaccard"][t0:], start=t0)
                rows.add_series(rep, name, "delta_jaccard_true_pairs", series["jaccard"] - ideal["jaccard"])
                per_rep[name]["dj"].append(float(series["delta_jaccard"][-1]))
                per_rep[name]["djt"].append(float(series["jaccard"][-1] - ideal["jaccard"][-1]))
                per_rep[name]["ur"].append(util_rec / float(ideal["utility"][t0:].mean()))
    findings: dict = {"reps": n_reps, "steps": cfg.world.startup_steps + cfg.world.steps, "recommenders": {}}
    for name, d in per_rep.items():
        entry = {
            "jaccard_similar_final": mean_ci(d["j"]),
            "utility_recommender_phase": mean_ci(d["u"]),
        }
        if d["dj"]:
            entry["delta_jaccard_final"] = mean_ci(d["dj"])
            entry["delta_jaccard_true_pairs_final"] = mean_ci(d["djt"])
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
        "Change vs ideal: the paper's homogenisation (users paired by the recommender's own user "
        "representation, the same pairs' Jaccard under ideal subtracted) and our variant on fixed "
        "pairs of users with the most similar true preferences.\n",
        "| recommender | Jaccard (true-preference pairs) | change vs ideal (recommender's pairs) "
        "| change vs ideal (true-preference pairs) | utility (rec. phase) | utility / ideal |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in f["recommenders"].items():
        dj = fmt_ci(*e["delta_jaccard_final"]) if "delta_jaccard_final" in e else "—"
        djt = fmt_ci(*e["delta_jaccard_true_pairs_final"]) if "delta_jaccard_true_pairs_final" in e else "—"
        ur = fmt_ci(*e["utility_ratio"]) if "utility_ratio" in e else "—"
        lines.append(
            f"| {name} | {fmt_ci(*e['jaccard_similar_final'])} | {dj} | {djt} | "
            f"{fmt_ci(*e['utility_recommender_phase'], digits=4)} | {ur} |"
        )
    return "\n".join(lines) + "\n"
