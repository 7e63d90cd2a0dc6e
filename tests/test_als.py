"""The ALS solver against the exact normal equations (Hu, Koren & Volinsky 2008, Eq. 4)."""

from __future__ import annotations

import numpy as np

from simulator.training.als import ImplicitALS, stream_counts


def test_cg_half_step_converges_to_exact_solution():
    rng = np.random.default_rng(0)
    n, m, k = 30, 40, 4
    user = rng.integers(0, n, 300)
    item = rng.integers(0, m, 300)
    counts = stream_counts(user, item, n, m)
    als = ImplicitALS(factors=k, regularization=0.5, alpha=3.0, cg_steps=k)  # CG exact in k steps
    als.init(n, m, rng)
    y = als.item_factors_.astype(np.float64) * 30
    c1 = counts.toarray() * 3.0
    x = als._solve(
        counts.tocsr().astype(np.float32) * np.float32(3.0),
        y.astype(np.float32),
        np.zeros((n, k), np.float32),
    )
    for u in range(n):
        cu = c1[u]
        a = y.T @ y + y.T @ (cu[:, None] * y) + 0.5 * np.eye(k)
        b = y.T @ ((1 + cu) * (cu > 0))
        np.testing.assert_allclose(x[u], np.linalg.solve(a, b), rtol=2e-3, atol=2e-4)


def test_fit_ranks_seen_items_first():
    # two user groups streaming two disjoint item blocks: factors separate them
    rng = np.random.default_rng(1)
    user = np.concatenate([rng.integers(0, 20, 400), rng.integers(20, 40, 400)])
    item = np.concatenate([rng.integers(0, 25, 400), rng.integers(25, 50, 400)])
    als = ImplicitALS(factors=8, regularization=0.1, alpha=10.0, cg_steps=3)
    als.init(40, 50, rng)
    als.fit(stream_counts(user, item, 40, 50), iterations=10)
    scores = als.user_factors_ @ als.item_factors_.T
    assert (scores[:20, :25].mean(1) > scores[:20, 25:].mean(1)).all()
    assert (scores[20:, 25:].mean(1) > scores[20:, :25].mean(1)).all()
