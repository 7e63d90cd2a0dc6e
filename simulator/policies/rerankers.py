"""Re-rankers around any scoring policy: maximal marginal relevance and calibration.

Both take the base policy's top ``candidates`` items per user (by its ``score_chunks``) and
re-rank them greedily, slot by slot. They are deterministic given the base's scores, so every
propensity is 1 (exact). A stochastic base (``boltzmann``, a bandit) contributes its
deterministic scores here (its ``score_chunks``), not its randomisation.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from simulator.policies.base import Slate, WorldView, policy_dataclass, register
from simulator.policies.wrappers import WrapperBase, top_candidates


def _normalise_rows(s: np.ndarray) -> np.ndarray:
    """Min–max scale each row to [0, 1] (a constant row becomes 0), float32."""
    lo = s.min(axis=1, keepdims=True)
    span = s.max(axis=1, keepdims=True) - lo
    return np.divide(s - lo, span, out=np.zeros_like(s, dtype=np.float32), where=span > 0).astype(np.float32)


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

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        n_items = self.world_.catalog.n_items
        c = min(n_items, max(self.candidates, k))
        lam = np.float32(self.relevance_weight)
        items = np.empty((users.size, k), dtype=np.int32)
        scores = np.empty((users.size, k), dtype=np.float32)
        for rows, block in self.base_.score_chunks(users):
            cand, cs = top_candidates(block, c)
            rel = _normalise_rows(cs)
            emb = self.unit_embedding_[cand]  # (n, C, d)
            n = cand.shape[0]
            r = np.arange(n)
            max_sim = np.zeros((n, c), dtype=np.float32)
            chosen = np.zeros((n, c), dtype=bool)
            pick_idx = np.empty((n, k), dtype=np.intp)
            for j in range(k):
                obj = lam * rel - (1 - lam) * max_sim if j else rel.copy()
                obj[chosen] = -np.inf
                p = np.argmax(obj, axis=1)  # ties: the better base rank
                pick_idx[:, j] = p
                chosen[r, p] = True
                sim = np.einsum("ncd,nd->nc", emb, emb[r, p])
                np.maximum(max_sim, sim, out=max_sim)
            items[rows] = np.take_along_axis(cand, pick_idx, axis=1)
            scores[rows] = np.take_along_axis(cs, pick_idx, axis=1)
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
        g = cat.n_genres
        c = min(cat.n_items, max(self.candidates, k))
        lam, a = float(self.calibration_weight), float(self.smoothing)
        eye = np.eye(g, dtype=np.float64)
        items = np.empty((users.size, k), dtype=np.int32)
        scores = np.empty((users.size, k), dtype=np.float32)
        for rows, block in self.base_.score_chunks(users):
            cand, cs = top_candidates(block, c)
            rel = _normalise_rows(cs).astype(np.float64)
            cg = cat.genre[cand].astype(np.intp)  # (n, C)
            p = self.genre_dist_[users[rows]].astype(np.float64)  # (n, G)
            n = cand.shape[0]
            r = np.arange(n)
            shown = np.zeros((n, g), dtype=np.float64)
            chosen = np.zeros((n, c), dtype=bool)
            pick_idx = np.empty((n, k), dtype=np.intp)
            with np.errstate(divide="ignore", invalid="ignore"):
                plogp = np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)  # (n,)
            for j in range(k):
                # KL(p ‖ q̃) if one item of genre h is added, for every h: (n, G)
                q = (shown[:, None, :] + eye[None]) / (j + 1)
                qt = (1 - a) * q + a * p[:, None, :]
                kl = plogp[:, None] - np.where(
                    p[:, None, :] > 0, p[:, None, :] * np.log(np.where(p[:, None, :] > 0, qt, 1.0)), 0.0
                ).sum(axis=2)
                obj = (1 - lam) * rel - lam * np.take_along_axis(kl, cg, axis=1)
                obj[chosen] = -np.inf
                pk = np.argmax(obj, axis=1)
                pick_idx[:, j] = pk
                chosen[r, pk] = True
                shown[r, cg[r, pk]] += 1
            items[rows] = np.take_along_axis(cand, pick_idx, axis=1)
            scores[rows] = np.take_along_axis(cs, pick_idx, axis=1)
        return Slate.deterministic(items, scores)
