"""Re-rankers around any scoring policy: maximal marginal relevance and calibration.

Both take the base policy's top ``candidates`` items per user (by its ``score_chunks``) and
re-rank them greedily, slot by slot. They are deterministic given the base's scores, so every
propensity is 1 (exact). A stochastic base (``boltzmann``, a bandit) contributes its
deterministic scores here (its ``score_chunks``), not its randomisation.

Both run compiled, row by row (:mod:`simulator.policies._rerank_kernels`), on blocks of the
base's scores that stay in cache (:func:`simulator.policies._blocks.score_blocks`).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from simulator.policies._blocks import score_blocks
from simulator.policies._rerank_kernels import calibrated_rows, mmr_rows
from simulator.policies.base import Slate, WorldView, policy_dataclass, register
from simulator.policies.wrappers import WrapperBase
from simulator.scoring import single_threaded_blas


@register("mmr")
@policy_dataclass
class MMRPolicy(WrapperBase):
    """Maximal marginal relevance on item embeddings, re-ranking a base policy's candidates.

    Slot by slot, pick the candidate that maximises
    ``λ · rel(i) − (1 − λ) · max_{j ∈ S} cos(v_i, v_j)`` over the not-yet-chosen candidates,
    where ``S`` is the slate so far, ``rel`` the base score min–max scaled to [0, 1] within the
    user's candidates, and ``v`` the public item embeddings (``catalog.embedding``). The first
    slot is the base's top item.

    Parameters
    ----------
    relevance_weight : float in [0, 1]
        ``λ``: 1 = the base ranking, 0 = pure diversity.
    candidates : int
        Top-N items of the base policy re-ranked per user.
    base, base_params
        The wrapped scoring policy.

    Notes
    -----
    Deterministic: ``pscore = inclusion_pscore = 1`` (exact).

    References
    ----------
    Carbonell & Goldstein (1998), "The use of MMR, diversity-based reranking for reordering
    documents and producing summaries", SIGIR, Eq. (MMR).
    """

    relevance_weight: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.7
    candidates: Annotated[int, Field(ge=1)] = 100

    def reset(self, world: WorldView, rng: np.random.Generator) -> None:
        super().reset(world, rng)
        v = world.catalog.embedding.astype(np.float32)
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        self.unit_embedding_ = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
        self.unit_embedding_t_ = np.ascontiguousarray(self.unit_embedding_.T)

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        n_items = self.world_.catalog.n_items
        c = min(n_items, max(self.candidates, k))
        items = np.empty((users.size, k), dtype=np.int32)
        scores = np.empty((users.size, k), dtype=np.float32)

        def process(rows, block, parallel):
            items[rows], scores[rows] = mmr_rows(
                block, k, c, self.relevance_weight, self.unit_embedding_t_, parallel
            )

        with single_threaded_blas():
            score_blocks(self.base_, users, process, n_items)
        return Slate.deterministic(items, scores)


@register("calibrated")
@policy_dataclass
class CalibratedPolicy(WrapperBase):
    """Calibrated re-ranking (Steck 2018): the slate's genre mix follows the user's history.

    Slot by slot, add the candidate that maximises
    ``(1 − λ) · Σ_{i ∈ S} rel(i) − λ · KL(p_u ‖ q̃(S))``, with ``q̃ = (1 − a) q(S) + a p_u``:
    ``p_u`` is the user's genre distribution over their streams in the training window (learned
    from the log, not the true taste), ``q(S)`` the genre distribution of the slate so far, and
    ``rel`` the base score min–max scaled to [0, 1] within the user's candidates.

    Parameters
    ----------
    calibration_weight : float in [0, 1]
        ``λ``: 0 = the base ranking, 1 = calibration only.
    smoothing : float in (0, 1)
        ``a`` in ``q̃`` (Steck uses 0.01); keeps the KL finite.
    candidates : int
        Top-N items of the base policy re-ranked per user.
    base, base_params
        The wrapped scoring policy.

    Notes
    -----
    A user without streams in the window gets the window's overall genre distribution as
    ``p_u``. Deterministic: ``pscore = inclusion_pscore = 1`` (exact). The same KL (with the
    *true* taste as ``p``) is the ``miscalibration`` metric.

    References
    ----------
    Steck (2018), "Calibrated recommendations", RecSys, Eq. (2)–(5) (KL miscalibration, its
    smoothing, and the greedy maximal-marginal-relevance style re-ranking).
    """

    calibration_weight: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.5
    smoothing: Annotated[float, Field(gt=0, lt=1)] = 0.01
    candidates: Annotated[int, Field(ge=1)] = 100

    def reset(self, world: WorldView, rng: np.random.Generator) -> None:
        super().reset(world, rng)
        g = world.catalog.n_genres
        self.genre_dist_ = np.full((world.n_users, g), 1.0 / g, dtype=np.float32)

    def fit(self, window) -> None:
        super().fit(window)
        user, item = window.streams()
        cat = self.world_.catalog
        g = cat.n_genres
        counts = np.bincount(
            user.astype(np.int64) * g + cat.genre[item], minlength=self.world_.n_users * g
        ).reshape(self.world_.n_users, g)
        overall = counts.sum(axis=0).astype(np.float64)
        overall = overall / overall.sum() if overall.sum() > 0 else np.full(g, 1.0 / g)
        tot = counts.sum(axis=1, keepdims=True)
        dist = np.where(tot > 0, counts / np.maximum(tot, 1), overall[None, :])
        self.genre_dist_ = dist.astype(np.float32)

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        cat = self.world_.catalog
        c = min(cat.n_items, max(self.candidates, k))
        items = np.empty((users.size, k), dtype=np.int32)
        scores = np.empty((users.size, k), dtype=np.float32)

        def process(rows, block, parallel):
            items[rows], scores[rows] = calibrated_rows(
                block,
                k,
                c,
                self.calibration_weight,
                self.smoothing,
                cat.genre,
                self.genre_dist_[users[rows]],
                parallel,
            )

        with single_threaded_blas():
            score_blocks(self.base_, users, process, cat.n_items)
        return Slate.deterministic(items, scores)
