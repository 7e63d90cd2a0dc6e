"""Jiang et al. (2019): degenerate feedback loops — how fast user interests run away.

Claim
    When exposure changes what users are interested in, the loop between a recommender and the
    users' interests degenerates: the interest vector moves ever further from where it started,
    ``‖μ_t − μ_0‖ → ∞``. How fast depends on the recommender: greedy/oracle top-K fastest,
    Thompson sampling and UCB slower, ε-greedy slower still (larger ε slower), random slowest;
    a growing candidate pool slows the degeneracy further.

World (the paper's terms)
    Users have latent interests ``θ_u ∈ R^d`` (``θ_0 ~ N(0, s²/d · I)``), items latent vectors
    ``a_i ~ N(0, I/d)``; the user's interest in item ``i`` is ``μ_t(i) = θ_{u,t} · a_i`` and
    a shown item is consumed with probability ``σ(μ_t(i))``
    (:class:`~simulator.clicks.choice.AcceptProbability`). After each step the interests move by
    the ``exposure_drift`` rule (:class:`~simulator.users.drift.ExposureDrift`):
    ``θ += η/K · Σ_k (c_k − w(1 − c_k)) a_k`` — towards what the user liked, away from what they
    rejected. Each user meets a recommender that learns *that user's* interest in each item (one
    bandit per user, as in the paper: a single user facing a multi-armed bandit), showing ``K``
    items per step. With a growing pool, ``growth_per_step`` new items become available each
    step.

Policies
    ``oracle`` (greedy top-K by the true current interest), ``thompson`` (Beta–Bernoulli per
    user and item), ``ucb`` (UCB1 per user and item), ``epsilon_greedy_<ε>`` (per slot: a random
    available item with probability ε, else the oracle's next item by the true current interest
    ``μ_t`` — Jiang et al.'s "random exploration" remedy, which adds uniform exploration to the
    oracle so that ε = 0 is the oracle and ε = 1 is random; ``policies.epsilon_base =
    "posterior_mean"`` exploits the learned posterior mean ``(s+1)/(n+2)`` instead), ``random``.
    These are per-user bandits written for this world: recloop's registered ``thompson``/``ucb``
    share one arm per item across all users (non-personalised), which is not the paper's
    setting; its ``epsilon_greedy`` wraps a score model (ALS) that needs a log window.

Measurement
    ``drift``: ``‖μ_t − μ_0‖₂ / sqrt(I0)`` over the initial items (the RMS change of the
    interest logit per item; comparable across pool sizes), mean over users, every step.

References
----------
Jiang, R., Chiappa, S., Lattimore, T., György, A., & Kohli, P. (2019). Degenerate feedback
loops in recommender systems. AIES '19, 383–390.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator
from scipy.special import expit

from simulator.clicks.choice import AcceptProbability
from simulator.replications.common import (
    ReplicationResult,
    Rows,
    RunSection,
    Section,
    fmt_ci,
    mean_ci,
    rank_items,
)
from simulator.rng import stream
from simulator.users.drift import make_drift_rule

NAME = "jiang"
BASE_POLICIES = ("oracle", "thompson", "ucb", "epsilon_greedy", "random")


class WorldSection(Section):
    """``[world]``: users, the item pool, slate size and horizon."""

    n_users: int = Field(200, ge=1, le=50_000, description="users (each with their own bandit)")
    n_items: int = Field(50, ge=2, le=10_000, description="items in the initial candidate pool (I0)")
    n_dims: int = Field(10, ge=1, le=512, description="latent dimension d")
    steps: int = Field(200, ge=1, description="recommendation steps")
    slate_size: int = Field(5, ge=1, description="K items shown per step")
    interest_scale: float = Field(2.0, gt=0, description="s: θ_0 ~ N(0, s²/d·I)")


class DriftSection(Section):
    """``[drift]``: the ``exposure_drift`` rule."""

    eta: float = Field(0.05, ge=0, description="step size η")
    negative_weight: float = Field(1.0, ge=0, description="w: push away from rejected items")


class PolicySection(Section):
    """``[policies]``: which recommenders, and their parameters."""

    names: list[str] = Field(default=list(BASE_POLICIES), min_length=1)
    epsilons: list[float] = Field(default=[0.05, 0.2, 0.5], min_length=1, description="ε of epsilon_greedy")
    ucb_c: float = Field(1.0, gt=0, description="UCB1 bonus width")
    epsilon_base: Literal["oracle", "posterior_mean"] = Field(
        "oracle",
        description="what epsilon_greedy exploits: the oracle's top-K by the true current interest "
        "(Jiang et al.'s random exploration added to the oracle) or the learned posterior mean",
    )

    @field_validator("names")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        import difflib

        for name in v:
            if name not in BASE_POLICIES:
                close = difflib.get_close_matches(name, BASE_POLICIES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown policy {name!r}{hint}; known: {list(BASE_POLICIES)}")
        return v

    @field_validator("epsilons")
    @classmethod
    def _eps(cls, v: list[float]) -> list[float]:
        if any(not 0 <= e <= 1 for e in v):
            raise ValueError(f"every epsilon must be in [0, 1]; got {v}")
        return v


class PoolSection(Section):
    """``[pool]``: the growing-candidate-pool variant."""

    growth_per_step: int = Field(1, ge=0, description="new items per step in the growing variant (0 = off)")
    policies: list[str] = Field(
        default=["oracle", "thompson", "ucb", "epsilon_greedy_0.05"],
        description="policy labels also run with a growing pool",
    )


class JiangConfig(Section):
    """The Jiang et al. (2019) replication."""

    run: RunSection = RunSection(reps=10)
    world: WorldSection = WorldSection()
    drift: DriftSection = DriftSection()
    policies: PolicySection = PolicySection()
    pool: PoolSection = PoolSection()

    @model_validator(mode="after")
    def _pool_labels(self) -> JiangConfig:
        known = policy_labels(self)
        bad = [p for p in self.pool.policies if p not in known]
        if bad:
            raise ValueError(f"pool.policies: {bad} are not run on the fixed pool; known labels: {known}")
        return self


Config = JiangConfig


def policy_labels(cfg: JiangConfig) -> list[str]:
    """The labels run on the fixed pool: ``epsilon_greedy`` expands to one label per ε."""
    out = []
    for name in cfg.policies.names:
        if name == "epsilon_greedy":
            out += [f"epsilon_greedy_{e:g}" for e in cfg.policies.epsilons]
        else:
            out.append(name)
    return out


GROWING = " (growing pool)"


def _select(label: str, state: dict, allowed: np.ndarray, k: int, cfg: JiangConfig, rng) -> np.ndarray:
    """The (U, K) slate of one policy for every user at once."""
    n, s, theta, items = state["n"], state["s"], state["theta"], state["items"]
    u = theta.shape[0]
    if label == "oracle":
        return rank_items(theta @ items.T, allowed, rng, k)
    if label == "random":
        return rank_items(rng.random(allowed.shape), allowed, rng, k)
    if label == "thompson":
        return rank_items(rng.beta(1.0 + s, 1.0 + n - s), allowed, rng, k)
    if label == "ucb":
        t = np.maximum(n.sum(axis=1, keepdims=True), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            idx = s / n + cfg.policies.ucb_c * np.sqrt(2.0 * np.log(t) / n)
        return rank_items(np.where(n > 0, idx, np.inf), allowed, rng, k)
    # epsilon_greedy_<eps>: per slot, random with probability eps, else the exploited ranking's
    # next item: the oracle's (true current interest μ_t, the default) or the posterior mean
    eps = float(label.removeprefix("epsilon_greedy_"))
    if cfg.policies.epsilon_base == "oracle":
        mean = theta @ items.T
    else:
        mean = (s + 1.0) / (n + 2.0)
    free = allowed.copy()
    rows = np.arange(u)
    slate = np.empty((u, k), dtype=np.int64)
    for j in range(k):  # slots, not users
        greedy = rank_items(mean, free, rng, 1)[:, 0]
        explore = rank_items(rng.random(free.shape), free, rng, 1)[:, 0]
        pick = np.where(rng.random(u) < eps, explore, greedy)
        slate[:, j] = pick
        free[rows, pick] = False
    return slate


def simulate(cfg: JiangConfig, rep: int, label: str, growing: bool) -> np.ndarray:
    """One policy in one world (the same world for every policy of a repetition): drift (T,)."""
    w, seed = cfg.world, cfg.run.seed
    grow = cfg.pool.growth_per_step if growing else 0
    total = w.n_items + cfg.pool.growth_per_step * w.steps  # the same items drawn in every run
    rng_w = stream(seed, f"{NAME}:world", rep)
    theta0 = rng_w.standard_normal((w.n_users, w.n_dims)) * (w.interest_scale / np.sqrt(w.n_dims))
    items = rng_w.standard_normal((total, w.n_dims)) / np.sqrt(w.n_dims)
    state = {
        "theta": theta0.copy(),
        "items": items,
        "n": np.zeros((w.n_users, total)),
        "s": np.zeros((w.n_users, total)),
    }
    accept = AcceptProbability(1.0)
    drift = make_drift_rule("exposure_drift", eta=cfg.drift.eta, negative_weight=cfg.drift.negative_weight)
    rng_pol = stream(seed, f"{NAME}:policy:{label}{GROWING if growing else ''}", rep)
    rng_click = stream(seed, f"{NAME}:clicks", rep)
    users = np.arange(w.n_users)
    a0 = items[: w.n_items]
    out = np.empty(w.steps)
    for t in range(w.steps):
        pool = w.n_items + grow * t
        allowed = np.zeros((w.n_users, total), dtype=bool)
        allowed[:, :pool] = True
        k = min(w.slate_size, pool)
        slate = _select(label, state, allowed, k, cfg, rng_pol)
        vec = items[slate]  # (U, K, d)
        p = expit(np.einsum("ud,ukd->uk", state["theta"], vec))
        shown = np.ones(slate.shape, dtype=bool)
        clicks = accept.choose(p, shown, rng_click)
        state["n"][users[:, None], slate] += 1.0  # a slate's items are distinct: no repeated index
        state["s"][users[:, None], slate] += clicks
        drift.apply(state["theta"], users, vec, shown, clicks)
        delta = (state["theta"] - theta0) @ a0.T
        out[t] = float(np.sqrt((delta**2).mean(axis=1)).mean())
    return out


def run(cfg: JiangConfig, reps: int | None = None) -> ReplicationResult:
    """All repetitions, every policy on the fixed pool and the selected ones on a growing pool."""
    n_reps = cfg.run.reps if reps is None else reps
    rows = Rows()
    runs = [(lab, False) for lab in policy_labels(cfg)]
    if cfg.pool.growth_per_step > 0:
        runs += [(lab, True) for lab in cfg.pool.policies]
    final: dict[str, list[float]] = {}
    area: dict[str, list[float]] = {}
    for rep in range(n_reps):
        for lab, growing in runs:
            series = simulate(cfg, rep, lab, growing)
            key = lab + (GROWING if growing else "")
            rows.add_series(rep, key, "drift", series, start=1)
            final.setdefault(key, []).append(float(series[-1]))
            area.setdefault(key, []).append(float(series.mean()))
    findings = {
        "reps": n_reps,
        "steps": cfg.world.steps,
        "final_drift": {k: mean_ci(v) for k, v in final.items()},
        "mean_drift": {k: mean_ci(v) for k, v in area.items()},
        "growing_minus_fixed": {
            lab: mean_ci(np.subtract(final[lab + GROWING], final[lab]))
            for lab, growing in runs
            if growing and lab in final
        },
    }
    return ReplicationResult(NAME, cfg, rows.frame(), findings)


def summary_markdown(result: ReplicationResult) -> str:
    f, cfg = result.findings, result.config
    w = cfg.world
    lines = [
        "# Jiang et al. (2019): degenerate feedback loops\n",
        f"{w.n_users} users, {w.n_items} items (d = {w.n_dims}), top-{w.slate_size} per step, "
        f"{w.steps} steps, "
        f"exposure_drift η = {cfg.drift.eta}, w = {cfg.drift.negative_weight}; growing pool: "
        f"+{cfg.pool.growth_per_step} item(s) per step; {f['reps']} repetitions. "
        "Drift = RMS change of the interest logit over the initial items, mean over users; "
        "means with 95% t-intervals.\n",
        "| policy | final drift ‖μ_T − μ_0‖ | mean drift over the run |",
        "| --- | --- | --- |",
    ]
    for key, v in sorted(f["final_drift"].items(), key=lambda kv: -kv[1][0]):
        lines.append(f"| {key} | {fmt_ci(*v)} | {fmt_ci(*f['mean_drift'][key])} |")
    if f["growing_minus_fixed"]:
        lines += ["", "| policy | final drift, growing − fixed pool |", "| --- | --- |"]
        for lab, v in f["growing_minus_fixed"].items():
            lines.append(f"| {lab} | {fmt_ci(*v)} |")
    return "\n".join(lines) + "\n"
