"""The compiled kernels against plain NumPy / dense linear algebra."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from simulator import kernels, selection


def _reference_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.lexsort((cols, -scores), axis=1)[:, :k]  # descending score, then lower column


@pytest.mark.parametrize("b", [16, 48, 64])
def test_group_maxima_are_the_strided_maxima(b):
    from numba import njit

    @njit
    def run(row, b, gmax):
        selection.group_maxima(row, b, gmax)

    rng = np.random.default_rng(b)
    row = rng.standard_normal(37 * b + 5).astype(np.float32)  # a partial last chunk
    row[3::b] = -np.inf  # a group of -inf, and an inf in another
    row[5 + 20 * b] = np.inf
    gmax = np.empty(b, np.float32)
    run(row, b, gmax)
    np.testing.assert_array_equal(gmax, [row[j::b].max() for j in range(b)])


@pytest.mark.parametrize(
    ("m", "k", "expected"), [(10_000, 10, 208), (5_000, 10, 112), (500, 10, 48), (10_000, 100, 400)]
)
def test_group_count_is_about_m_over_48_and_at_least_4k(m, k, expected):
    assert selection.group_count(m, k) == expected


def test_select_row_on_real_like_scores_matches_a_full_sort():
    """Clustered near-ties (a low-rank score matrix) across the group path at several widths."""
    rng = np.random.default_rng(3)
    for m in (97, 1_000, 10_007):
        scores = (rng.standard_normal((50, 8)) @ rng.standard_normal((8, m))).astype(np.float32)
        scores[:, m // 2 : m // 2 + 40] = scores[:, m // 2 : m // 2 + 1]  # a run of exact ties
        for k in (1, 10, 33):
            idx, vals = selection.top_k_rows(scores, k)
            ref = _reference_top_k(scores, k)
            np.testing.assert_array_equal(idx, ref)
            np.testing.assert_array_equal(vals, np.take_along_axis(scores, ref, axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 7, 64])
def test_top_k_matches_a_full_sort_with_ties(dtype, k):
    rng = np.random.default_rng(0)
    scores = np.round(rng.standard_normal((300, 500)), 1).astype(dtype)  # many ties
    scores[:5] = 0.0  # rows of equal scores: the first k columns
    scores[5, ::7] = -np.inf
    idx, vals = selection.top_k_rows(scores, k)
    ref = _reference_top_k(scores, k)
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(vals, np.take_along_axis(scores, ref, axis=1))
    assert idx.dtype == np.int32 and vals.dtype == dtype


def test_top_k_adversarial_order_and_integer_input():
    ascending = np.arange(10_000)[None, :]  # every column replaces the heap root
    idx, vals = selection.top_k_rows(ascending, 5)
    np.testing.assert_array_equal(idx[0], [9999, 9998, 9997, 9996, 9995])
    assert vals.dtype == np.float64
    idx, _ = selection.top_k_rows(np.ones((2, 3), np.float32), 3)
    np.testing.assert_array_equal(idx, [[0, 1, 2], [0, 1, 2]])


def test_top_k_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be in"):
        selection.top_k_rows(np.zeros((2, 3), np.float32), 4)
    with pytest.raises(ValueError, match="2-D"):
        selection.top_k_rows(np.zeros(3, np.float32), 1)


def _problem(seed=1, n=200, m=80, k=6):
    rng = np.random.default_rng(seed)
    c1 = sp.random(n, m, density=0.1, random_state=seed, format="csr", dtype=np.float32) * 20
    cp = c1.copy()
    cp.data = (c1.data + 1) * (rng.random(c1.nnz) < 0.7)  # some entries with target 0
    y = rng.standard_normal((m, k)).astype(np.float32)
    gram = 0.5 * y.T.astype(np.float64) @ y + 0.1 * np.eye(k)
    return c1, cp, y, gram


def test_cg_converges_to_the_exact_weighted_least_squares_solution():
    """With k CG steps, CG solves each k x k SPD system exactly (up to rounding)."""
    c1, cp, y, gram = _problem()
    k = y.shape[1]
    x0 = np.zeros((c1.shape[0], k), np.float32)
    x = kernels.cg_rows(c1.indptr, c1.indices, c1.data, cp.data, y, x0, gram, steps=3 * k)
    for u in range(0, c1.shape[0], 17):
        lo, hi = c1.indptr[u], c1.indptr[u + 1]
        yu = y[c1.indices[lo:hi]].astype(np.float64)
        a = gram + yu.T @ (c1.data[lo:hi, None] * yu)
        b = yu.T @ cp.data[lo:hi]
        np.testing.assert_allclose(x[u], np.linalg.solve(a, b), rtol=2e-3, atol=2e-4)


def test_cg_plus_one_target_and_thread_count_do_not_change_results():
    c1, _, y, gram = _problem(seed=2)
    x0 = np.random.default_rng(3).standard_normal((c1.shape[0], y.shape[1])).astype(np.float32)
    ones = c1.copy()
    ones.data = c1.data + 1
    a = kernels.cg_rows(c1.indptr, c1.indices, c1.data, None, y, x0, gram, 3)
    b = kernels.cg_rows(c1.indptr, c1.indices, c1.data, ones.data, y, x0, gram, 3)
    np.testing.assert_array_equal(a, b)
    before = numba.get_num_threads()
    kernels.set_threads(1)
    try:
        c = kernels.cg_rows(c1.indptr, c1.indices, c1.data, None, y, x0, gram, 3)
        d, _ = selection.top_k_rows(gram.astype(np.float32), 2)
    finally:
        kernels.set_threads(before)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(d, selection.top_k_rows(gram.astype(np.float32), 2)[0])
