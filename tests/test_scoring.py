"""Fused GEMM + top-K (simulator.scoring) and the two-pass selection kernel against full sorts."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import kernels, scoring, selection


def _reference_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.lexsort((cols, -scores), axis=1)[:, :k]  # descending score, then lower column


@pytest.mark.parametrize("k", [1, 10, 78, 79])
def test_two_pass_top_k_with_heavy_ties_across_blocks(k):
    # 5000 columns = 78 full 64-column blocks + a tail of 8; values in {0..3}: nearly every block
    # reaches the threshold and ties must resolve to the lower column, also in the tail.
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 4, (64, 5000)).astype(np.float32)
    scores[0, -3:] = 9.0  # the best scores sit in the tail
    scores[1, :] = -np.inf
    scores[1, 4999] = 0.0
    idx, vals = selection.top_k_rows(scores, k)
    ref = _reference_top_k(scores, k)
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(vals, np.take_along_axis(scores, ref, axis=1))
    assert idx[1, 0] == 4999
    assert list(idx[0, :3]) == [4997, 4998, 4999][:k]


@pytest.mark.parametrize(("n", "n_items", "k"), [(1, 5, 5), (70, 300, 10), (333, 9000, 7)])
def test_gemm_top_k_equals_the_full_score_matrix(n, n_items, k):
    rng = np.random.default_rng(n)
    left = rng.standard_normal((n, 8)).astype(np.float32)
    right = np.ascontiguousarray(rng.standard_normal((8, n_items)).astype(np.float32))
    bias = rng.standard_normal(n_items).astype(np.float32)
    items, scores = scoring.gemm_top_k(lambda rows: left[rows], right, n, k, bias)
    full = left @ right + bias
    ref = _reference_top_k(full, k)
    np.testing.assert_array_equal(items, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(full, ref, axis=1), rtol=1e-6)
    assert items.dtype == np.int32 and scores.dtype == np.float32


def test_gemm_top_k_blocks_are_cache_sized_and_bad_k_is_refused():
    assert scoring.score_rows(5000) * 5000 <= scoring.BLOCK_ELEMENTS
    assert scoring.score_rows(10**6) == scoring.MIN_ROWS
    right = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        scoring.gemm_top_k(lambda rows: np.zeros((1, 2), np.float32), right, 1, 5)


def test_gemm_top_k_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(9)
    left = rng.standard_normal((500, 16)).astype(np.float32)
    right = np.ascontiguousarray(rng.standard_normal((16, 3000)).astype(np.float32))
    before = kernels.get_threads()
    try:
        results = []
        for threads in (1, 2):
            kernels.set_threads(threads)
            results.append(scoring.gemm_top_k(lambda rows: left[rows], right, 500, 10))
    finally:
        kernels.set_threads(before)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_gemm_top_k_reraises_a_worker_error():
    right = np.zeros((2, 5000), np.float32)
    before = kernels.get_threads()

    def left(rows):
        if rows.start > 0:
            raise RuntimeError("bad block")
        return np.zeros((rows.stop - rows.start, 2), np.float32)

    try:
        kernels.set_threads(2)
        with pytest.raises(RuntimeError, match="bad block"):
            scoring.gemm_top_k(left, right, 2 * scoring.score_rows(5000) + 1, 3)  # 3 blocks
    finally:
        kernels.set_threads(before)
