"""The ALS solver against the exact normal equations (Hu, Koren & Volinsky 2008, Eq. 4)."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_window_stream_counts_stay_equal_to_a_recount_as_days_come_and_go():
    """The incremental counts (add the new day, subtract the expired one) equal a full recount."""
    from simulator.logs.window import LogWindow

    rng = np.random.default_rng(7)
    n_users, n_items, k = 40, 30, 4
    window = LogWindow(days=3)
    window.add_organic(rng.integers(-5, 0, 200), rng.integers(0, n_users, 200), rng.integers(0, n_items, 200))
    for day in range(8):
        users = np.sort(rng.choice(n_users, 25, replace=False))
        items = np.stack([rng.choice(n_items, k, replace=False) for _ in users])
        clicks = rng.random((users.size, k)) < 0.4
        window.add_round(day, users, items, clicks, np.ones((users.size, k)), np.ones((users.size, k)))
        window.advance(day + 1)
        if day % 3 == 1:
            continue  # several days arrive and leave between two calls
        got = window.stream_counts(n_users, n_items)
        ref = stream_counts(*window.streams(), n_users, n_items)
        assert got.dtype == np.float32 and got.has_canonical_format
        assert (got != ref).nnz == 0 and got.nnz == ref.nnz  # no explicit zeros left behind
        if day % 2:  # the transposed cache, asked for on some calls only, catches up the same way
            got_t = window.stream_counts(n_users, n_items, transposed=True)
            assert got_t.shape == (n_items, n_users) and got_t.has_canonical_format
            assert (got_t != ref.T).nnz == 0 and got_t.nnz == ref.nnz
        # memory stays bounded: day matrices only for the live days and those not yet subtracted
        assert len(window._days) <= len(window._chunks) + 3
    got.data[:] = -1  # a copy: the cache is not aliased
    assert window.stream_counts(n_users, n_items).min() >= 0


def test_fit_with_the_given_transpose_equals_fit_transposing_itself():
    rng = np.random.default_rng(3)
    counts = stream_counts(rng.integers(0, 60, 900), rng.integers(0, 45, 900), 60, 45)
    a, b = ImplicitALS(factors=6), ImplicitALS(factors=6)
    a.init(60, 45, np.random.default_rng(0))
    b.init(60, 45, np.random.default_rng(0))
    a.fit(counts, iterations=3)
    b.fit(counts, iterations=3, counts_t=counts.T.tocsr())
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    with pytest.raises(ValueError, match="counts_t must be counts transposed"):
        b.fit(counts, iterations=1, counts_t=counts)
