"""Mansoury et al. (2020): the feedback loop amplifies popularity bias, most for a minority group.

Claim
    When users accept some of their top-10 recommendations, the accepted items join their
    profiles and the recommender is retrained on them, then over the iterations the mean
    popularity of the recommended items rises, aggregate diversity (items recommended to anyone)
    falls, and the recommended genres drift away from the user's own profile — and all of this
    is stronger for a minority group whose tastes differ from the majority's (women in
    MovieLens 1M in the paper).

World (the paper's terms, synthetic instead of MovieLens)
    The catalog is recloop's (:func:`~simulator.catalog.catalog.make_catalog`: genres, a Zipf
    popularity prior, quality) with MovieLens 1M's 3706 items. Users are a majority and a
    minority group (``minority_share`` = 0.28, the share of women in MovieLens 1M); the
    majority's tastes lean to the first half of the genres, the minority's to the second half
    (``overlap`` = weight of the other half): ``θ_u ~ Dirichlet(c · G · profile_group)``. True
    relevance ``r(u, i) = sigmoid(b0 + bg·log(G·θ_u,g(i) + f) + bq·q_i)``. Initial profiles (the
    "rating data") are drawn without replacement ∝ ``r(u, i) · prior_i^e`` with MovieLens 1M's
    sizes (lognormal, median 96, mean ≈ 166, at least 20), so the data start skewed to popular
    items as MovieLens is.

Loop (Sec. 3 of the paper, as far as it could be established)
    Each iteration every user gets a top-10 list of items not in their profile (the usual top-N
    protocol: rated items are not recommended again). The user accepts the item in slot ``k``
    with probability ``exp(−α·k)`` (:func:`rank_acceptance`, α = 0.1, each slot independently,
    ≈ 6 items per list) — the rank only, not the user's taste, decides, as it must on MovieLens
    where the taste for unrated items is unknown. The accepted items join the profiles and the
    recommender is retrained on all profiles. ``acceptance = "rank_one"`` (exactly one item per
    list, ∝ ``exp(−α·k)``, the published Lesota et al. (2024) variant) and ``"relevance"`` (each
    item with ``accept_scale · r(u, i)``, this module's earlier rule) are kept as alternatives.

Recommenders
    ``mf`` = recloop's ``greedy`` (implicit ALS), ``popularity`` = recloop's ``popularity``,
    ``user_knn`` = user-based k-NN (cosine) on the profiles (paper-specific).

Measurements (per iteration, per group)
    ``rec_popularity``: mean popularity of the recommended items, an item's popularity being the
    number of profiles holding it divided by the catalog mean of that number, at the time of the
    recommendation (1 = an average item; the normalisation removes the mechanical rise of every
    item's count as profiles grow — about +70% over 20 iterations at six acceptances per list).
    ``rec_popularity_raw``: the same with the paper's popularity, the share of users whose profile
    holds the item (recorded, not plotted). ``aggregate_diversity``: share of the
    catalog recommended to at least one user of a fixed random sample of ``min(group sizes)``
    users of the group (equal-size samples, so the groups are comparable). ``genre_shift``:
    mean Jensen–Shannon divergence (base 2) between the genre distribution of the user's
    recommendations and of the user's *initial* profile.

References
----------
Mansoury, M., Abdollahpouri, H., Pechenizkiy, M., Mobasher, B., & Burke, R. (2020). Feedback
loop and bias amplification in recommender systems. CIKM '20, 2145–2148. arXiv:2007.13019.

Lesota, O., Geiger, J., Walder, M., Kowald, D., & Schedl, M. (2024). Oh, Behave! Country
representation dynamics created by feedback loops in music recommender systems. RecSys '24
(code: github.com/hcai-mms/FeedbackLoops4RecSys; its rank-based acceptance is attributed there
to Mansoury et al. 2020).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from scipy.special import expit

from simulator.catalog.catalog import make_catalog
from simulator.clicks.choice import AcceptProbability
from simulator.config import CatalogSection
from simulator.replications.common import (
    LatentCatalog,
    ReplicationResult,
    Rows,
    RunSection,
    Section,
    StreamLog,
    fmt_ci,
    js_divergence,
    make_world_policy,
    mean_ci,
    policy_scores,
    rank_items,
    user_knn_scores,
)
from simulator.rng import stream

NAME = "mansoury"
RECOMMENDERS = ("mf", "popularity", "user_knn")
GROUPS = ("majority", "minority")
Recommender = Literal["mf", "popularity", "user_knn"]
Acceptance = Literal["rank", "rank_one", "relevance"]
#: The metrics of the paper's claims (tested and plotted).
METRICS = ("rec_popularity", "aggregate_diversity", "genre_shift")
#: Also recorded: the paper's own, unnormalised popularity (share of users holding the item).
ALL_METRICS = (*METRICS, "rec_popularity_raw")


def rank_acceptance(list_size: int, decay: float) -> np.ndarray:
    """Probability that a user accepts the item in slot ``k`` of the list, ``k = 1..list_size``.

    Parameters
    ----------
    list_size : int
        ``L``.
    decay : float > 0
        ``α``.

    Returns
    -------
    ndarray of shape (list_size,), float64
        ``P(k) = exp(−α·k)``; each slot is accepted independently (Bernoulli), whatever the item.

    Notes
    -----
    Acceptance depends on the rank only, not on the user's taste: on MovieLens the paper has no
    ground truth for the unrated items it recommends. This exponential rank rule is the one the
    feedback-loop code of Lesota et al. (2024) attributes to Mansoury et al. (2020)
    (``prob(rank, alpha) = exp(alpha·rank)``, ``alpha = −0.1``, one Bernoulli draw per slot in its
    first version; one draw per list ∝ ``exp(−0.1·k)`` in the published version).
    With ``α = 0.1`` and ``L = 10`` a user accepts Σ_k e^(−0.1k) ≈ 6.01 items per list.

    References
    ----------
    Mansoury et al. (2020), CIKM, Sec. 3. Lesota, Geiger, Walder, Kowald & Schedl (2024), "Oh,
    Behave! Country representation dynamics created by feedback loops in music recommender
    systems", RecSys (github.com/hcai-mms/FeedbackLoops4RecSys, ``choice_models.py``).
    """
    return np.exp(-decay * np.arange(1, list_size + 1, dtype=np.float64))


class WorldSection(Section):
    """``[world]``: catalog, the two groups, relevance and the initial profiles."""

    n_users: int = Field(600, ge=10, le=50_000, description="users")
    n_items: int = Field(3706, ge=20, le=100_000, description="items (MovieLens 1M: 3706)")
    n_genres: int = Field(10, ge=2, le=255, description="genres (first half: majority's, second: minority's)")
    zipf_exponent: float = Field(1.0, gt=0, le=5, description="Zipf exponent of the popularity prior")
    minority_share: float = Field(
        0.28, gt=0, lt=0.5, description="share of users in the minority group (MovieLens 1M women: 0.28)"
    )
    overlap: float = Field(0.2, ge=0, le=1, description="taste weight of the other group's genres")
    taste_concentration: float = Field(0.5, gt=0, description="c in θ_u ~ Dirichlet(c·G·profile)")
    intercept: float = Field(-2.0, description="b0")
    genre_weight: float = Field(1.0, ge=0, description="bg")
    quality_weight: float = Field(0.5, ge=0, description="bq")
    taste_floor: float = Field(0.01, gt=0, lt=1, description="f")
    profile_median: float = Field(
        96.0, ge=1, description="median initial profile size (lognormal; ML-1M: 96)"
    )
    profile_sigma: float = Field(1.04, ge=0, description="sigma of log profile size (ML-1M mean 166: 1.04)")
    profile_min: int = Field(20, ge=1, description="smallest initial profile (ML-1M: 20 ratings)")
    popularity_exponent: float = Field(1.0, ge=0, description="e: initial profiles ∝ r·prior^e")


class LoopSection(Section):
    """``[loop]``: the recommend → accept → retrain iterations."""

    iterations: int = Field(20, ge=2, description="iterations")
    list_size: int = Field(10, ge=1, description="items recommended per user and iteration")
    acceptance: Acceptance = Field(
        "rank",
        description="rank: each slot k accepted with exp(-rank_decay·k); rank_one: one slot per list, "
        "P(k) ∝ exp(-rank_decay·k); relevance: each item accepted with accept_scale·r(u, i)",
    )
    rank_decay: float = Field(0.1, gt=0, description="α of the rank acceptance exp(-α·k), k = 1..list_size")
    accept_scale: float = Field(1.0, gt=0, description="relevance acceptance = scale·r(u, i), clipped")
    n_neighbors: int = Field(30, ge=1, description="neighbours of user_knn")


class MFSection(Section):
    """``[mf]``: recloop's ``greedy`` (implicit ALS)."""

    factors: int = Field(32, ge=1, le=512)
    regularization: float = Field(0.1, gt=0)
    alpha: float = Field(20.0, gt=0)
    iterations: int = Field(10, ge=1)
    warm_iterations: int = Field(3, ge=1)


class MansouryConfig(Section):
    """The Mansoury et al. (2020) replication."""

    run: RunSection = RunSection(reps=5)
    world: WorldSection = WorldSection()
    loop: LoopSection = LoopSection()
    mf: MFSection = MFSection()
    recommenders: list[Recommender] = Field(default=list(RECOMMENDERS), min_length=1)


Config = MansouryConfig


def make_world(cfg: WorldSection, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Catalog, groups, true acceptance probabilities ``(U, I)`` and initial profiles ``(U, I)``."""
    g = cfg.n_genres
    catalog = make_catalog(
        CatalogSection(
            n_items=cfg.n_items,
            n_genres=g,
            n_artists=max(g, cfg.n_items // 10),
            embedding_dim=2,
            zipf_exponent=cfg.zipf_exponent,
        ),
        rng,
    )
    n_min = max(1, round(cfg.minority_share * cfg.n_users))
    minority = np.zeros(cfg.n_users, dtype=bool)
    minority[rng.choice(cfg.n_users, n_min, replace=False)] = True
    half = np.arange(g) < g // 2
    prof_maj = np.where(half, 1.0, cfg.overlap)
    prof_min = np.where(half, cfg.overlap, 1.0)
    prof = np.where(minority[:, None], prof_min / prof_min.sum(), prof_maj / prof_maj.sum())
    # one Dirichlet draw per user, vectorised through gamma variates
    gam = rng.standard_gamma(np.maximum(cfg.taste_concentration * g * prof, 1e-3))
    theta = gam / gam.sum(axis=1, keepdims=True)
    genre = catalog.genre.astype(np.intp)
    logit = (
        cfg.intercept
        + cfg.genre_weight * np.log(g * theta[:, genre] + cfg.taste_floor)
        + cfg.quality_weight * catalog.quality[None, :]
    )
    relevance = expit(logit)
    # initial profiles: without replacement ∝ r · prior^e (Gumbel top-k), lognormal sizes
    sizes = np.clip(
        np.round(cfg.profile_median * np.exp(cfg.profile_sigma * rng.standard_normal(cfg.n_users))),
        min(cfg.profile_min, cfg.n_items // 4),
        cfg.n_items // 4,
    ).astype(np.int64)
    keys = np.log(relevance) + cfg.popularity_exponent * np.log(catalog.prior_popularity)[None, :]
    keys += rng.gumbel(size=keys.shape)
    order = np.argsort(-keys, axis=1)
    profile = np.zeros(relevance.shape, dtype=bool)
    take = np.arange(cfg.n_items)[None, :] < sizes[:, None]
    rows = np.repeat(np.arange(cfg.n_users), sizes)
    profile[rows, order[take]] = True
    return {
        "catalog": catalog,
        "genre": genre,
        "minority": minority,
        "relevance": relevance,
        "profile": profile,
    }


def _genre_hist(items: np.ndarray, genre: np.ndarray, n_genres: int) -> np.ndarray:
    """(n, G) genre counts of the items of each row of ``items`` (n, L)."""
    n = items.shape[0]
    flat = np.arange(n)[:, None] * n_genres + genre[items]
    return np.bincount(flat.ravel(), minlength=n * n_genres).reshape(n, n_genres).astype(np.float64)


def simulate_rep(cfg: MansouryConfig, rep: int) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """One world, every recommender: ``out[rec][group][metric]`` arrays of shape (iterations,)."""
    w, lp, seed = cfg.world, cfg.loop, cfg.run.seed
    world = make_world(w, stream(seed, f"{NAME}:world", rep))
    rel, genre, minority = world["relevance"], world["genre"], world["minority"]
    n_users, n_items = rel.shape
    g = w.n_genres
    rows = np.arange(n_users)
    accept = AcceptProbability(lp.accept_scale)
    p_rank = rank_acceptance(lp.list_size, lp.rank_decay)
    base_hist = np.zeros((n_users, g))
    np.add.at(base_hist, (np.nonzero(world["profile"])[0], genre[np.nonzero(world["profile"])[1]]), 1.0)
    rng_sample = stream(seed, f"{NAME}:groups", rep)
    n_eq = int(min(minority.sum(), (~minority).sum()))
    members = {
        "majority": np.sort(rng_sample.choice(np.flatnonzero(~minority), n_eq, replace=False)),
        "minority": np.sort(rng_sample.choice(np.flatnonzero(minority), n_eq, replace=False)),
    }
    groups = {"majority": ~minority, "minority": minority}

    out = {}
    for name in cfg.recommenders:
        profile = world["profile"].copy()
        log = StreamLog()
        log.add(*np.nonzero(profile))
        rng = stream(seed, f"{NAME}:policy:{name}", rep)
        rng_accept = stream(seed, f"{NAME}:accept", rep)
        init = stream(seed, f"{NAME}:policy-init:{name}", rep)
        pol = None
        if name == "mf":
            pol = make_world_policy(
                "greedy", n_users, LatentCatalog(np.zeros((n_items, 1))), None, init, **cfg.mf.model_dump()
            )
        elif name == "popularity":
            pol = make_world_policy("popularity", n_users, LatentCatalog(np.zeros((n_items, 1))), None, init)
        series = {grp: {m: [] for m in ALL_METRICS} for grp in GROUPS}
        for _ in range(lp.iterations):
            if pol is not None:
                pol.fit(log)
                scores = policy_scores(pol, rows)
            else:
                scores = user_knn_scores(profile, lp.n_neighbors)
            recs = rank_items(scores, ~profile, rng, lp.list_size)
            counts = profile.sum(axis=0)
            popularity = counts / counts.mean()  # 1 = an average item (profiles grow: no drift)
            share = counts / n_users  # the paper's popularity: share of users holding the item
            shift = js_divergence(_genre_hist(recs, genre, g), base_hist)
            for grp in GROUPS:
                sel = groups[grp]
                series[grp]["rec_popularity"].append(float(popularity[recs[sel]].mean()))
                series[grp]["rec_popularity_raw"].append(float(share[recs[sel]].mean()))
                series[grp]["aggregate_diversity"].append(np.unique(recs[members[grp]]).size / n_items)
                series[grp]["genre_shift"].append(float(shift[sel].mean()))
            if lp.acceptance == "rank":  # n·L uniforms: the streams stay aligned with "relevance"
                took = rng_accept.random(recs.shape) < p_rank
            elif lp.acceptance == "rank_one":  # one slot per list by inverse CDF, n uniforms
                cdf = np.cumsum(p_rank) / p_rank.sum()
                slot = np.minimum(
                    np.searchsorted(cdf, rng_accept.random(n_users), side="right"), lp.list_size - 1
                )
                took = np.arange(lp.list_size)[None, :] == slot[:, None]
            else:
                took = accept.choose(rel[rows[:, None], recs], np.ones(recs.shape, bool), rng_accept)
            profile[np.nonzero(took)[0], recs[took]] = True
            log.add(np.nonzero(took)[0], recs[took])
        out[name] = {grp: {m: np.asarray(v) for m, v in d.items()} for grp, d in series.items()}
    return out


def run(cfg: MansouryConfig, reps: int | None = None) -> ReplicationResult:
    """All repetitions; findings: first/last iteration and relative change per group."""
    n_reps = cfg.run.reps if reps is None else reps
    rows = Rows()
    acc: dict = {
        n: {grp: {m: {"first": [], "last": [], "rel": []} for m in ALL_METRICS} for grp in GROUPS}
        for n in cfg.recommenders
    }
    gap: dict = {n: {m: [] for m in ALL_METRICS} for n in cfg.recommenders}
    for rep in range(n_reps):
        res = simulate_rep(cfg, rep)
        for name, by_group in res.items():
            rel_change = {}
            for grp, metrics in by_group.items():
                for m, v in metrics.items():
                    rows.add_series(rep, name, m, v, group=grp, start=1)
                    a = acc[name][grp][m]
                    a["first"].append(float(v[0]))
                    a["last"].append(float(v[-1]))
                    rc = float(v[-1] / v[0] - 1) if v[0] != 0 else float("nan")
                    a["rel"].append(rc)
                    rel_change[(grp, m)] = rc
            for m in ALL_METRICS:
                gap[name][m].append(rel_change[("minority", m)] - rel_change[("majority", m)])
    findings: dict = {"reps": n_reps, "iterations": cfg.loop.iterations, "recommenders": {}}
    for name in cfg.recommenders:
        e = {
            grp: {m: {k: mean_ci(v) for k, v in acc[name][grp][m].items()} for m in ALL_METRICS}
            for grp in GROUPS
        }
        e["minority_minus_majority_rel_change"] = {m: mean_ci(gap[name][m]) for m in ALL_METRICS}
        findings["recommenders"][name] = e
    return ReplicationResult(NAME, cfg, rows.frame(), findings)


def summary_markdown(result: ReplicationResult) -> str:
    f, cfg = result.findings, result.config
    w, lp = cfg.world, cfg.loop
    lines = [
        "# Mansoury et al. (2020): bias amplification in the feedback loop\n",
        f"{w.n_users} users ({w.minority_share:.0%} minority), {w.n_items} items, {w.n_genres} genres, "
        f"top-{lp.list_size} lists, {lp.iterations} iterations, {f['reps']} repetitions. "
        "Means with 95% t-intervals; relative change = last / first iteration − 1.\n",
        "| recommender | metric | group | first | last | relative change |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in f["recommenders"].items():
        for m in ALL_METRICS:
            for grp in GROUPS:
                d = e[grp][m]
                lines.append(
                    f"| {name} | {m} | {grp} | {fmt_ci(*d['first'])} | {fmt_ci(*d['last'])} | "
                    f"{fmt_ci(*d['rel'])} |"
                )
    lines += ["", "Minority − majority, relative change (positive = larger rise for the minority):", ""]
    lines += ["| recommender | " + " | ".join(ALL_METRICS) + " |", "| --- |" + " --- |" * len(ALL_METRICS)]
    for name, e in f["recommenders"].items():
        gaps = e["minority_minus_majority_rel_change"]
        lines.append(f"| {name} | " + " | ".join(fmt_ci(*gaps[m]) for m in ALL_METRICS) + " |")
    return "\n".join(lines) + "\n"
