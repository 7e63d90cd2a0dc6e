"""Exploration wrappers around any scoring policy: per-slot epsilon-greedy and Boltzmann.

A wrapper names its base policy (``base = "greedy"``, ``base_params = {...}``), builds it with
:func:`~simulator.policies.base.make_policy`, forwards ``reset``/``fit``/``update`` to it, and
reads its per-user scores through ``score_chunks`` (user chunks: never a full users × items
matrix) — or, when they are a product of factors, forms them in cache-sized user blocks
(:mod:`simulator.policies._blocks`). The wrapper only changes *which* items are shown, and logs
the propensities of that choice.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from simulator.errors import ConfigError
from simulator.policies._blocks import chunks, factor_scorer, score_blocks
from simulator.policies._pl_kernels import pl_block
from simulator.policies.base import (
    MIN_PROPENSITY,
    POLICIES,
    PolicyBase,
    Slate,
    WorldView,
    finite_propensity,
    has_scores,
    make_policy,
    policy_dataclass,
    register,
)
from simulator.policies.propensity import epsilon_greedy_table, gumbel
from simulator.scoring import single_threaded_blas
from simulator.selection import top_k_rows
from simulator.users.population import chunk_rows


def _scoring_names() -> list[str]:
    return sorted(n for n, c in POLICIES.items() if has_scores(c))


def check_base(name: str) -> str:
    """Validate a wrapper's ``base``: a registered policy that exposes ``score_chunks``."""
    from simulator import policies as _builtin  # noqa: F401  (registers the built-ins)

    if name not in POLICIES:
        close = difflib.get_close_matches(name, POLICIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown base policy {name!r}{hint}; scoring policies: {', '.join(_scoring_names())}"
        )
    if not has_scores(POLICIES[name]):
        raise ValueError(
            f"base policy {name!r} has no per-item scores to wrap (no score_chunks); "
            f"use one of {', '.join(_scoring_names())}"
        )
    return name


def check_base_params(params: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
    """Validate ``base_params`` by constructing the base once (errors name the base's key)."""
    base = info.data.get("base")
    if base is None or params is None:
        return params
    try:
        make_policy(base, "__base__", **params)
    except ConfigError as err:
        lines = [line.strip() for line in str(err).splitlines()[1:]] or [str(err)]
        detail = "; ".join(line.replace("policies.__base__.", "") for line in lines)
        raise ValueError(f"invalid parameters for base policy {base!r}: {detail}") from None
    return params


@policy_dataclass
class WrapperBase(PolicyBase):
    """Shared by the wrappers and re-rankers: a named base policy, built on :meth:`reset`.

    Parameters
    ----------
    base : str
        Registered name of the base policy (must expose ``score_chunks``).
    base_params : dict, optional
        The base policy's hyperparameters (validated on construction).
    """

    base: str = "greedy"
    base_params: dict[str, Any] | None = None

    @field_validator("base")
    @classmethod
    def _check_base(cls, v: str) -> str:
        return check_base(v)

    @field_validator("base_params")
    @classmethod
    def _check_base_params(cls, v: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        return check_base_params(v, info)

    def __post_init__(self) -> None:
        # an instance attribute: a wrapper needs what its base needs (IPW needs impressions)
        probe = make_policy(self.base, **(self.base_params or {}))
        self.needs_impressions = bool(probe.needs_impressions)

    def _make_base(self):
        return make_policy(self.base, **(self.base_params or {}))

    def reset(self, world: WorldView, rng: np.random.Generator) -> None:
        self.world_ = world
        self.base_ = self._make_base()
        self.base_.reset(world, rng)

    def fit(self, window) -> None:
        self.base_.fit(window)

    def update(self, users, slate, feedback) -> None:
        self.base_.update(users, slate, feedback)

    def score_chunks(self, users: np.ndarray):
        """The base policy's scores (see :class:`~simulator.policies.base.ScoringPolicy`)."""
        return self.base_.score_chunks(users)

    def score_factors(self):
        """The base's scores as ``(left, right)`` factors, or None (:mod:`simulator.policies._blocks`)."""
        return factor_scorer(self.base_)


@register("epsilon_greedy")
@policy_dataclass
class EpsilonGreedyPolicy(WrapperBase):
    """Per-slot epsilon-greedy around any scoring policy.

    Slot by slot, with probability ``epsilon`` a uniformly random item not yet in the slate,
    otherwise the base policy's best item not yet in the slate (the *next greedy item*).

    Parameters
    ----------
    epsilon : float in [0, 1]
        Exploration probability per slot (0 = the base's top-K, 1 = uniformly random slates).
    base, base_params
        The wrapped scoring policy (default ``greedy``).

    Notes
    -----
    Propensities are **exact**: they depend only on the item's greedy rank, through the table of
    :func:`~simulator.policies.propensity.epsilon_greedy_table` (its docstring derives the
    recursion). For example, with ``I`` items, the greedy top item is at position 0 with
    probability ``1 − ε + ε/I``, and at position 1 with probability
    ``(ε(I − 1)/I)·(1 − ε + ε/(I − 1))``; an item of greedy rank ``≥ K`` is at position ``j`` with
    probability ``ε/(I − j) · Π_{l<j} (1 − ε/(I − l))``.

    References
    ----------
    Sutton & Barto (2018), *Reinforcement Learning*, 2nd ed., Sec. 2.2 (ε-greedy action
    selection); Li, Chu, Langford & Schapire (2010), WWW (ε-greedy as a news-recommendation
    baseline).
    """

    epsilon: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.05

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        n_items = self.world_.catalog.n_items
        n = users.size
        table, inclusion = epsilon_greedy_table(n_items, k, float(self.epsilon))
        items = np.empty((n, k), dtype=np.int32)
        scores = np.empty((n, k), dtype=np.float32)
        ranks = np.empty((n, k), dtype=np.intp)
        for rows, block in self.base_.score_chunks(users):
            top, _ = top_k_rows(block, k)
            it, rk = _epsilon_slates(top, n_items, float(self.epsilon), rng)
            items[rows], ranks[rows] = it, rk
            scores[rows] = np.take_along_axis(block, it.astype(np.intp), axis=1)
        cols = np.broadcast_to(np.arange(k), (n, k))
        return Slate(
            items, scores, finite_propensity(table[ranks, cols]), finite_propensity(inclusion[ranks])
        )


def _epsilon_slates(
    top: np.ndarray, n_items: int, epsilon: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw per-slot epsilon-greedy slates from the greedy top-K of each row.

    Returns the items (n, K) and each item's greedy rank (``K`` for items outside the top-K).
    """
    n, k = top.shape
    items = np.empty((n, k), dtype=np.int32)
    ranks = np.empty((n, k), dtype=np.intp)
    taken = np.zeros((n, k + 1), dtype=bool)  # head ranks already in the slate (+ sentinel)
    pointer = np.zeros(n, dtype=np.intp)
    all_rows = np.arange(n)
    for j in range(k):
        explore = rng.random(n) < epsilon
        pick = top[all_rows, np.minimum(pointer, k - 1)].astype(np.int32)
        rank = pointer.copy()
        idx = np.flatnonzero(explore)
        if idx.size:
            cand = rng.integers(0, n_items, idx.size, dtype=np.int32)
            dup = (items[idx, :j] == cand[:, None]).any(axis=1)
            while dup.any():
                d = np.flatnonzero(dup)
                cand[d] = rng.integers(0, n_items, d.size, dtype=np.int32)
                dup[d] = (items[idx[d], :j] == cand[d, None]).any(axis=1)
            hit = top[idx] == cand[:, None]
            pick[idx] = cand
            rank[idx] = np.where(hit.any(axis=1), hit.argmax(axis=1), k)
        items[:, j], ranks[:, j] = pick, rank
        taken[all_rows, rank] = True
        taken[:, k] = False
        pointer = np.argmin(taken, axis=1)  # first head rank not yet in the slate (k if all are)
    return items, ranks


@register("boltzmann")
@policy_dataclass
class BoltzmannPolicy(WrapperBase):
    """Plackett–Luce (softmax) sampling of the base policy's scores, without replacement.

    ``P(i first) = exp(s_i/T) / Σ_l exp(s_l/T)``; each next item likewise among the rest.
    Sampled exactly by the Gumbel-top-k trick — the top-K of ``s_i/T + G_i`` with i.i.d. standard
    Gumbel ``G`` (Yellott 1977; Kool, van Hoof & Welling 2019) — with keys drawn only where they
    can matter (:func:`~simulator.policies.propensity.plackett_luce_slates`). Every exponential
    is of a number ≤ 0 and sums are in log space: no overflow, no 0/0 at any temperature.

    Parameters
    ----------
    temperature : float > 0
        ``T``, in the units of the base policy's scores (the ALS scores of ``greedy`` are
        ~0–1). ``T → 0``: the base's top-K; ``T → ∞``: uniformly random slates.
    mc_samples : int
        Monte-Carlo prefixes per session behind the propensities of positions ≥ 1 (the
        sampling itself does not depend on it; the cost does: each prefix costs about a third
        of greedy's recommend per session at 5k items, mostly tail draws at the default ``T``).
    mc_head : int
        Items per user treated one by one in the Monte-Carlo step (speed only).
    base, base_params
        The wrapped scoring policy.

    Notes
    -----
    Propensities: position 0 **exact** (softmax by log-sum-exp); positions ≥ 1 and inclusion
    are Rao–Blackwellised Monte-Carlo estimates with ``mc_samples`` prefixes per session
    (:func:`~simulator.policies.propensity.plackett_luce_slates`; unbiased, standard error at
    most ``sqrt(p(1 − p)/mc_samples)`` and far less when the mass is spread). The slate carries
    ``exact=False`` and ``mc_samples``.

    The base's scores are formed in cache-sized user blocks when they are a product of factors
    (:func:`~simulator.policies._blocks.score_blocks`) and sampled by the compiled row kernel
    (:func:`~simulator.policies._pl_kernels.pl_block`). The random numbers are those of
    ``plackett_luce_slates``, drawn per chunk of ``chunk_rows(I)`` rows in the same order and
    shapes, except that the head keys' Gumbels are float32 (~3x cheaper to draw; the keys are
    summed in float64).

    References
    ----------
    Plackett (1975); Luce (1959); Sutton & Barto (2018), Sec. 2.8 / 13.1 (softmax / Boltzmann
    exploration); Kool, van Hoof & Welling (2019), ICML (Gumbel-top-k).
    """

    temperature: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 0.1
    mc_samples: Annotated[int, Field(ge=1, le=100_000)] = 8
    mc_head: Annotated[int, Field(ge=1)] = 16

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        n = users.size
        n_items = self.world_.catalog.n_items
        items = np.empty((n, k), dtype=np.int32)
        scores = np.empty((n, k), dtype=np.float32)
        pscore = np.empty((n, k), dtype=np.float32)
        incl = np.empty((n, k), dtype=np.float32)
        big_l = min(n_items, max(self.mc_head, k))
        n_s = self.mc_samples + 1 if k > 1 else 1  # the shown slate + M prefixes for the estimates
        n_t = k if big_l < n_items else 0
        with single_threaded_blas():
            for chunk in chunks(n, chunk_rows(n_items)):
                # every random number of the chunk's rows first (the order and shapes of
                # plackett_luce_slates), so that its blocks may run in any order or thread
                rnd = (
                    gumbel(rng, (chunk.stop - chunk.start, n_s, big_l), np.float32),
                    rng.standard_exponential((chunk.stop - chunk.start, n_s, n_t)),
                    rng.random((chunk.stop - chunk.start, n_s, n_t)),
                )

                def process(rows, block, parallel, chunk=chunk, rnd=rnd):
                    at = slice(chunk.start + rows.start, chunk.start + rows.stop)
                    z, scale = _logits_and_scale(block, self.temperature)
                    it, pscore[at], incl[at] = pl_block(
                        z, scale, big_l, k, *(a[rows] for a in rnd), MIN_PROPENSITY, parallel
                    )
                    items[at] = it
                    scores[at] = np.take_along_axis(block, it.astype(np.intp), axis=1)

                score_blocks(self.base_, users[chunk], process, n_items)
        return Slate(
            items,
            scores,
            finite_propensity(pscore),
            finite_propensity(incl),
            exact=k == 1,
            mc_samples=0 if k == 1 else self.mc_samples,
        )

    def propensity_info(self) -> dict[str, Any]:
        return {
            "exact": False,
            "mc_samples": self.mc_samples,
            "method": "position 0 exact (softmax); positions >= 1 and inclusion: Rao-Blackwellised "
            f"Monte-Carlo, {self.mc_samples} Plackett-Luce prefixes per session",
        }


def _logits_and_scale(scores: np.ndarray, temperature: float) -> tuple[np.ndarray, float]:
    """``(z, scale)`` whose product ``z * scale`` is :func:`boltzmann_logits` of the scores.

    The scores are passed as they are with ``scale = 1/T`` as float32 (the product is formed
    inside the sampler, which shifts a row by its maximum first where it would overflow),
    unless ``1/T`` itself overflows float32.
    """
    s = np.asarray(scores, dtype=np.float32)
    inv = 1.0 / float(temperature)
    if inv < float(np.finfo(np.float32).max):
        return s, float(np.float32(inv))
    return boltzmann_logits(s, temperature), 1.0


def boltzmann_logits(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Log-weights ``s / T`` as float32, finite at any temperature.

    Plackett–Luce is shift-invariant, so ``s / T`` is used as is when it fits float32. Otherwise
    (``|s|/T > 3.4e38``) the rows are shifted by their maximum first, ``(s − max_row s)/T``; a row
    whose range still overflows is divided by the smallest temperature at which it fits instead,
    which keeps every item's order (its weights are 0 or 1 to float32 precision either way).
    """
    s = np.asarray(scores, dtype=np.float32)
    inv = 1.0 / float(temperature)
    if inv < float(np.finfo(np.float32).max):
        with np.errstate(over="ignore", invalid="ignore"):
            z = s * np.float32(inv)
        if np.isfinite(z).all():
            return z
    # Shift each row by its maximum: d ≤ 0. A quotient d/T beyond float32 would be clamped (and
    # T below float32's range rounds to 0: 0/0 at the maximum), which would tie every item after
    # the first; instead the row divides by max(T, T_row), the smallest temperature at which its
    # whole range fits float32. Below T_row every gap is already ≥ 1e38 nats wide (probability
    # 0 to float32 precision), so the ordering — all that is left of Plackett–Luce — is exact.
    d = (s - s.max(axis=1, keepdims=True)).astype(np.float64)
    t_row = -d.min(axis=1, keepdims=True) / (0.5 * float(np.finfo(np.float32).max))
    z = d / np.maximum(float(temperature), t_row)
    return z.astype(np.float32)
