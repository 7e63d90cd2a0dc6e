"""Reference policies: uniform random, most-popular, and the oracle that defines regret."""

from __future__ import annotations

import numpy as np

from simulator.policies.base import PolicyBase, Slate, WorldView, policy_dataclass, register
from simulator.users.population import chunk_rows


def sample_without_replacement(n_rows: int, n_items: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct uniform items per row, in uniformly random order.

    Loops over the ``k`` slots (never over rows): each slot draws for all rows at once and
    redraws only the rows that hit an item already in their slate.

    Returns
    -------
    ndarray of shape (n_rows, k), int32
    """
    out = np.empty((n_rows, k), dtype=np.int32)
    for j in range(k):
        cand = rng.integers(0, n_items, n_rows, dtype=np.int32)
        dup = (out[:, :j] == cand[:, None]).any(axis=1)
        while dup.any():
            idx = np.flatnonzero(dup)
            cand[idx] = rng.integers(0, n_items, idx.size, dtype=np.int32)
            dup[idx] = (out[idx, :j] == cand[idx, None]).any(axis=1)
        out[:, j] = cand
    return out


@register("random")
@policy_dataclass
class RandomPolicy(PolicyBase):
    """Uniformly random slates of distinct items.

    Propensities (exact): ``pscore = 1/I`` (each item is equally likely at each position) and
    ``inclusion_pscore = K/I``.
    """

    def reset(self, world: WorldView, rng: np.random.Generator) -> None:
        self.world_ = world
        self.n_items_ = world.catalog.n_items

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        n, m = users.size, self.n_items_
        items = sample_without_replacement(n, m, k, rng)
        return Slate(
            items,
            np.zeros((n, k), np.float32),
            np.full((n, k), 1.0 / m, np.float32),
            np.full((n, k), k / m, np.float32),
        )


@register("popularity")
@policy_dataclass
class PopularityPolicy(PolicyBase):
    """The ``K`` items with the most streams in the training window, the same slate for everyone.

    Ties break by lower item id. Deterministic, so every propensity is 1.
    """

    def reset(self, world: WorldView, rng: np.random.Generator) -> None:
        self.world_ = world
        self.counts_ = np.zeros(world.catalog.n_items, dtype=np.int64)

    def fit(self, window) -> None:
        _, item = window.streams()
        self.counts_ = np.bincount(item, minlength=self.world_.catalog.n_items)

    def score_chunks(self, users: np.ndarray):
        """Yield ``(rows, counts)``: the window's stream counts, the same row for every user.

        The blocks are read-only broadcast views (no users × items allocation).
        """
        counts = self.counts_.astype(np.float32)
        step = chunk_rows(counts.size)
        for start in range(0, users.size, step):
            rows = slice(start, min(start + step, users.size))
            yield rows, np.broadcast_to(counts, (rows.stop - rows.start, counts.size))

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        order = np.lexsort((np.arange(self.counts_.size), -self.counts_))[:k]
        items = np.broadcast_to(order.astype(np.int32), (users.size, k))
        scores = np.broadcast_to(self.counts_[order].astype(np.float32), (users.size, k))
        return Slate.deterministic(items, scores)


@register("oracle")
@policy_dataclass
class OraclePolicy(PolicyBase):
    """Ranks by the true current relevance ``r(u, i, t)``: the top-``K`` per user.

    Under the position-based and cascade models this maximises expected clicks, so it defines
    regret. Reads the simulator's ground truth; not a deployable policy.
    """

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        items, rel = self.world_.population.top_k(users, k)
        return Slate.deterministic(items, rel)

    def score_chunks(self, users: np.ndarray):
        """Yield ``(rows, logits)``: the true relevance logits (``population.relevance_chunks``)."""
        return self.world_.population.relevance_chunks(users)
