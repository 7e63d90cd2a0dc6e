"""Greedy: a relevance model retrained on its own log, recommending its top-``K``.

This is the policy that closes the feedback loop: it only learns about what it showed.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from simulator.policies.base import PolicyBase, Slate, WorldView, policy_dataclass, register
from simulator.scoring import gemm_top_k
from simulator.training.als import ImplicitALS
from simulator.users.population import chunk_rows


def factor_top_k(
    user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by ``U[u] · V[i]``, GEMM and selection fused in bounded user blocks.

    Returns
    -------
    items : ndarray of shape (n, k), int32
    scores : ndarray of shape (n, k), float32
    """
    vt = np.ascontiguousarray(item_factors.T)
    return gemm_top_k(lambda rows: user_factors[users[rows]], vt, users.size, k)


@register("greedy")
@policy_dataclass
class GreedyPolicy(PolicyBase):
    """Implicit ALS on the streams of the training window; shows its top-``K``. Deterministic.

    Parameters
    ----------
    factors : int
        Latent dimension.
    regularization : float
        L2 penalty λ.
    alpha : float
        Confidence slope ``c = 1 + alpha·streams`` (Hu, Koren & Volinsky 2008).
    iterations : int
        ALS sweeps of the first fit (on the pre-system history).
    warm_iterations : int
        ALS sweeps of each later retrain, warm-started from the previous factors.
    cg_steps : int
        Conjugate-gradient steps per half-sweep.
    """

    factors: Annotated[int, Field(ge=1, le=1024)] = 32
    regularization: Annotated[float, Field(gt=0)] = 0.1
    alpha: Annotated[float, Field(gt=0)] = 20.0
    iterations: Annotated[int, Field(ge=1)] = 10
    warm_iterations: Annotated[int, Field(ge=1)] = 1
    cg_steps: Annotated[int, Field(ge=1, le=50)] = 3

    def reset(self, world: WorldView, rng: np.random.Generator) -> None:
        self.world_ = world
        self.model_ = ImplicitALS(self.factors, self.regularization, self.alpha, self.cg_steps)
        self.model_.init(world.n_users, world.catalog.n_items, rng)
        self.n_fits_ = 0

    def fit(self, window) -> None:
        n_users, n_items = self.world_.n_users, self.world_.catalog.n_items
        counts = window.stream_counts(n_users, n_items)
        counts_t = window.stream_counts(n_users, n_items, transposed=True)
        self.model_.fit(counts, self.iterations if self.n_fits_ == 0 else self.warm_iterations, counts_t)
        self.n_fits_ += 1

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        items, scores = factor_top_k(self.model_.user_factors_, self.model_.item_factors_, users, k)
        return Slate.deterministic(items, scores)

    def score_factors(self):
        """``(left, right)`` with scores ``left(users) @ right``: ``U[users]`` and ``Vᵀ``, float32."""
        u = self.model_.user_factors_
        return (lambda users: u[users]), np.ascontiguousarray(self.model_.item_factors_.T)

    def score_chunks(self, users: np.ndarray):
        """Yield ``(rows, U[users[rows]] @ Vᵀ)`` blocks, shape (len(rows), n_items), float32."""
        return factor_score_chunks(self.model_.user_factors_, self.model_.item_factors_, users)


def factor_score_chunks(user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray):
    """Yield ``(rows, scores)``: ``U[users[rows]] · Vᵀ`` in user chunks of ``chunk_rows(I)`` rows."""
    vt = np.ascontiguousarray(item_factors.T)
    step = chunk_rows(item_factors.shape[0])
    for start in range(0, users.size, step):
        rows = slice(start, min(start + step, users.size))
        yield rows, user_factors[users[rows]] @ vt
