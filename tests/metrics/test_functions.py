"""Closed-form checks of the pure metric functions (simulator.metrics.functions)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from simulator.errors import ValidationError
from simulator.metrics.functions import (
    catalog_diversity_index,
    coverage,
    coverage_from_counts,
    gini,
    head_mask_from_popularity,
    intra_list_diversity,
    jaccard_similarity,
    long_tail_share,
    lorenz_curve,
    mean_pairwise_jaccard,
    miscalibration,
    normalized_entropy,
    pairwise_jaccard,
    popularity_bias,
    position_ctr,
)

counts_arrays = hnp.arrays(
    dtype=np.float64,
    shape=st.integers(1, 60),
    # exposure counts: zero or a normal magnitude (subnormals scaled by 0.5 underflow to 0, which
    # turns "one item takes all" into "nothing shown" — a float artefact, not a Gini property)
    elements=st.one_of(st.just(0.0), st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False)),
)


# ----------------------------------------------------------------------------------------------
# gini and lorenz_curve
# ----------------------------------------------------------------------------------------------
def test_gini_uniform_is_zero():
    assert gini(np.full(10, 7)) == pytest.approx(0.0, abs=1e-15)  # all equal: no inequality


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000])
def test_gini_one_item_takes_all(n):
    counts = np.zeros(n, dtype=np.int64)
    counts[n // 2] = 5
    # only x_(n) = 5: 2·n·5 / (n·5) − (n+1)/n = 2 − (n+1)/n = (n−1)/n
    assert gini(counts) == pytest.approx((n - 1) / n, abs=1e-12)


def test_gini_all_zero_is_zero_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gini(np.zeros(5)) == 0.0  # nothing shown: defined as equal, never NaN


def test_gini_hand_case():
    # sorted [0, 0, 1, 3], n = 4, Σx = 4, Σ i·x = 3·1 + 4·3 = 15
    # G = 2·15 / (4·4) − 5/4 = 1.875 − 1.25 = 0.625
    assert gini(np.array([3, 0, 1, 0])) == pytest.approx(0.625, abs=1e-15)


def test_gini_returns_python_float():
    assert type(gini(np.array([1, 2]))) is float


@settings(max_examples=100, deadline=None)
@given(counts_arrays)
def test_gini_in_unit_interval(counts):
    assert 0.0 <= gini(counts) <= 1.0


@settings(max_examples=40, deadline=None)
@given(counts_arrays, st.randoms(use_true_random=False), st.floats(1e-3, 1e3))
def test_gini_invariant_to_permutation_and_scaling(counts, rnd, scale):
    base = gini(counts)
    perm = counts.copy()
    rnd.shuffle(perm)
    assert gini(perm) == pytest.approx(base, abs=1e-12)  # order of items is irrelevant
    assert gini(counts * scale) == pytest.approx(base, abs=1e-9)  # units are irrelevant


def test_gini_is_one_minus_twice_lorenz_area():
    counts = np.array([5, 0, 2, 9, 1, 0, 3])
    x, y = lorenz_curve(counts)
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))  # trapezoid rule
    assert gini(counts) == pytest.approx(1 - 2 * area, abs=1e-12)


def test_lorenz_curve_hand_case():
    x, y = lorenz_curve(np.array([3, 0, 1, 0]))
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(y, [0, 0, 0, 0.25, 1])  # cumulative of sorted [0, 0, 1, 3] / 4
    assert x.dtype == y.dtype == np.float64


def test_lorenz_curve_all_zero_is_equality_line():
    x, y = lorenz_curve(np.zeros(4))
    np.testing.assert_array_equal(x, y)  # consistent with gini = 0


# ----------------------------------------------------------------------------------------------
# coverage and CDI
# ----------------------------------------------------------------------------------------------
def test_coverage_counts_distinct_items_and_ignores_out_of_range():
    items = np.array([[0, 1, 1], [1, 0, -1], [7, 10, 2]])
    # in [0, 5): {0, 1, 2}; -1, 7 and 10 ignored → 3/5
    assert coverage(items, n_items=5) == pytest.approx(0.6)


def test_coverage_never_exceeds_one():
    items = np.arange(-5, 50).repeat(3)
    assert coverage(items, n_items=10) == 1.0  # every id 0..9 shown; the rest ignored


def test_coverage_empty_is_zero():
    assert coverage(np.array([], dtype=np.int64), 4) == 0.0
    assert coverage([], 4) == 0.0  # empty list is float64, still fine


def test_coverage_from_counts():
    assert coverage_from_counts(np.array([0, 2, 0, 1])) == 0.5  # 2 of 4 items shown


@pytest.mark.parametrize(
    ("reach", "n_users", "threshold", "expected"),
    [
        # need max(1, ceil(0.01·200)) = 2 users: items with reach 2, 3 → 2/4
        ([0, 1, 2, 3], 200, 0.01, 0.5),
        # 0.07·100 = 7.000000000000001 in floats; reach exactly 7 must count → 1/3
        ([6, 7, 0], 100, 0.07, 1 / 3),
        # 1% of 50 users is 0.5 user: ceil → 1, so every item shown to anyone counts → 2/3
        ([1, 0, 4], 50, 0.01, 2 / 3),
        # threshold 0: still at least one user → 2/3
        ([1, 0, 4], 50, 0.0, 2 / 3),
        # threshold 1: only items shown to everybody → 1/3
        ([1, 0, 4], 4, 1.0, 1 / 3),
        # no active users → 0.0 by definition
        ([0, 0], 0, 0.01, 0.0),
    ],
)
def test_cdi_threshold_edges(reach, n_users, threshold, expected):
    got = catalog_diversity_index(np.array(reach), n_users, threshold=threshold)
    assert got == pytest.approx(expected)


# ----------------------------------------------------------------------------------------------
# long tail, head mask, popularity bias
# ----------------------------------------------------------------------------------------------
def test_head_mask_top_fraction_with_stable_ties():
    prior = np.array([5.0, 9.0, 5.0, 1.0, 5.0, 0.0, 2.0, 3.0, 4.0, 8.0])
    # ceil(0.3·10) = 3 head items: 9 (id 1), 8 (id 9), then the tie at 5 goes to the lowest id 0
    mask = head_mask_from_popularity(prior, head_fraction=0.3)
    np.testing.assert_array_equal(np.flatnonzero(mask), [0, 1, 9])


def test_head_mask_size_rounding():
    prior = np.arange(100.0)
    assert head_mask_from_popularity(prior, 0.07).sum() == 7  # 0.07·100 = 7.000…01 → 7, not 8
    assert head_mask_from_popularity(np.arange(11.0), 0.2).sum() == 3  # ceil(2.2) = 3
    assert head_mask_from_popularity(prior, 0.0).sum() == 0
    assert head_mask_from_popularity(prior, 1.0).all()


def test_long_tail_share_hand_case():
    counts = np.array([10, 6, 3, 1, 0])
    head = np.array([True, False, False, False, False])
    # tail gets 6 + 3 + 1 + 0 = 10 of 20 impressions → 0.5
    assert long_tail_share(counts, head) == pytest.approx(0.5)


def test_long_tail_share_zero_impressions_is_zero():
    assert long_tail_share(np.zeros(3), np.array([True, False, False])) == 0.0


def test_popularity_bias_monotone_and_constant():
    prior = np.array([1.0, 2.0, 3.0, 4.0])
    assert popularity_bias(np.array([0, 1, 5, 9]), prior) == pytest.approx(1.0)
    assert popularity_bias(np.array([9, 5, 1, 0]), prior) == pytest.approx(-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConstantInputWarning leaks out
        assert math.isnan(popularity_bias(np.zeros(4), prior))  # nothing shown: undefined
        assert math.isnan(popularity_bias(np.array([0, 1, 2, 3]), np.ones(4)))


def test_popularity_bias_ties_averaged():
    # ranks of counts [0, 0, 1]: [1.5, 1.5, 3]; prior ranks [1, 2, 3]
    # centred: [-0.5, -0.5, 1] · [-1, 0, 1] = 1.5; norms √1.5 · √2 → ρ = 1.5/√3 = √3/2
    got = popularity_bias(np.array([0, 0, 1]), np.array([1.0, 2.0, 3.0]))
    assert got == pytest.approx(math.sqrt(3) / 2)


# ----------------------------------------------------------------------------------------------
# entropy and ILD
# ----------------------------------------------------------------------------------------------
def test_normalized_entropy_closed_forms():
    counts = np.array(
        [
            [2, 2, 2, 2],  # uniform over G = 4 → 1
            [0, 5, 0, 0],  # one genre → 0
            [1, 1, 0, 0],  # ln 2 / ln 4 = 0.5
            [0, 0, 0, 0],  # nothing → NaN
        ]
    )
    h = normalized_entropy(counts)
    np.testing.assert_allclose(h[:3], [1.0, 0.0, 0.5], atol=1e-12)
    assert np.isnan(h[3])
    assert h.dtype == np.float64


def test_normalized_entropy_single_genre():
    h = normalized_entropy(np.array([[3], [0]]))
    assert h[0] == 0.0 and np.isnan(h[1])  # G = 1: no spread possible; empty row still NaN


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 8), st.integers(1, 6)), elements=st.integers(0, 50)))
def test_normalized_entropy_in_unit_interval(counts):
    h = normalized_entropy(counts)
    ok = ~np.isnan(h)
    assert np.all((h[ok] >= 0) & (h[ok] <= 1))
    np.testing.assert_array_equal(ok, counts.sum(axis=1) > 0)


def test_ild_counts_each_pair_once():
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])  # items 0, 1 parallel; 2 orthogonal
    # pairs (0,1) → 0, (0,2) → 1, (1,2) → 1: mean over 3 pairs = 2/3 (not 4/6 with a diagonal)
    # slate [0, 0, 1]: all parallel → 0; slate [0, 2]: K = 2 handled below
    got = intra_list_diversity(np.array([[0, 1, 2], [0, 0, 1]]), emb)
    np.testing.assert_allclose(got, [2 / 3, 0.0], atol=1e-12)


def test_ild_opposite_and_zero_norm():
    emb = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    # opposite: 1 − (−1) = 2; zero vector: cos 0 with anything → distance 1 (even with itself)
    got = intra_list_diversity(np.array([[0, 1], [0, 2], [2, 2]]), emb)
    np.testing.assert_allclose(got, [2.0, 1.0, 1.0], atol=1e-12)


def test_ild_matches_brute_force_and_chunking():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 5)).astype(np.float32)
    items = rng.integers(0, 40, size=(37, 6))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = np.einsum("nkd,njd->nkj", unit[items], unit[items])
    iu = np.triu_indices(6, k=1)
    expected = (1 - cos[:, iu[0], iu[1]]).mean(axis=1)  # 15 pairs per slate
    np.testing.assert_allclose(intra_list_diversity(items, emb), expected, atol=1e-6)
    np.testing.assert_allclose(intra_list_diversity(items, emb, chunk_size=4), expected, atol=1e-6)


def test_ild_empty_slates():
    assert intra_list_diversity(np.zeros((0, 3), dtype=np.int32), np.eye(3)).shape == (0,)


# ----------------------------------------------------------------------------------------------
# homogenization
# ----------------------------------------------------------------------------------------------
def test_jaccard_hand_example():
    sets = np.array(
        [
            [1, 1, 0, 0],  # A = {0, 1}
            [0, 1, 1, 0],  # B = {1, 2}
            [0, 0, 0, 0],  # C = {}
        ],
        dtype=bool,
    )
    j = pairwise_jaccard(sets)
    # J(A,B) = |{1}| / |{0,1,2}| = 1/3; J(A,C) = 0/2 = 0; J(B,C) = 0; J(C,C) = NaN (empty-empty)
    expected = np.array([[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, np.nan]])
    np.testing.assert_allclose(j, expected, atol=1e-12)
    assert mean_pairwise_jaccard(sets) == pytest.approx((1 / 3 + 0 + 0) / 3)  # 3 valid pairs
    assert jaccard_similarity(sets[0], sets[1]) == pytest.approx(1 / 3)
    np.testing.assert_allclose(jaccard_similarity(sets, sets[[1, 0, 2]]), [1 / 3, 1 / 3, np.nan])


def test_mean_pairwise_jaccard_skips_empty_pairs_and_nan_when_none():
    two_empty_one_full = np.array([[0, 0], [0, 0], [1, 1]], dtype=bool)
    # pairs: (0,1) empty-empty skipped; (0,2) → 0; (1,2) → 0 → mean 0
    assert mean_pairwise_jaccard(two_empty_one_full) == 0.0
    assert math.isnan(mean_pairwise_jaccard(np.zeros((3, 4), dtype=bool)))
    assert math.isnan(mean_pairwise_jaccard(np.ones((1, 4), dtype=bool)))  # no pair at all


def test_pairwise_jaccard_matches_row_wise():
    rng = np.random.default_rng(1)
    sets = rng.random((12, 30)) < 0.2
    j = pairwise_jaccard(sets)
    u, v = np.triu_indices(12, k=1)
    np.testing.assert_allclose(j[u, v], jaccard_similarity(sets[u], sets[v]), atol=1e-12)
    np.testing.assert_allclose(j, j.T, equal_nan=True)


# ----------------------------------------------------------------------------------------------
# miscalibration and position CTR
# ----------------------------------------------------------------------------------------------
def test_miscalibration_zero_when_calibrated():
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    np.testing.assert_allclose(miscalibration(p, p), [0.0, 0.0], atol=1e-15)


def test_miscalibration_hand_value_and_empty_row():
    p = np.array([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5]])
    q = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])
    got = miscalibration(p, q, alpha=0.01)
    # row 0: q̃ = 0.99·[1, 0] + 0.01·[.5, .5] = [0.995, 0.005]
    #        KL = 0.5 ln(0.5/0.995) + 0.5 ln(0.5/0.005)
    # row 1: q̃ = [0.505, 0.495]; KL = ln(1/0.505) (the p = 0 term is 0·log 0 = 0)
    # row 2: nothing shown → NaN
    r0 = 0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005)
    r1 = math.log(1 / 0.505)
    np.testing.assert_allclose(got[:2], [r0, r1], rtol=1e-12)
    assert np.isnan(got[2])


def test_miscalibration_bounded_by_log_inverse_alpha():
    p = np.array([[0.0, 1.0]])
    q = np.array([[1.0, 0.0]])
    # disjoint support: q̃ = [0.99, 0.01] → KL = ln(1/0.01) = ln 100, the upper bound
    assert miscalibration(p, q)[0] == pytest.approx(math.log(100))


def test_position_ctr():
    clicks = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=bool)
    np.testing.assert_allclose(position_ctr(clicks), [0.75, 0.25, 0.0])  # column means
    assert np.isnan(position_ctr(np.zeros((0, 2), dtype=bool))).all()


# ----------------------------------------------------------------------------------------------
# bad inputs
# ----------------------------------------------------------------------------------------------
_C = np.array([1, 2, 3])

BAD_INPUTS = [
    (
        gini,
        {"counts": np.array([1, -1, 2])},
        ValidationError,
        "counts must be non-negative; got min -1",
    ),
    (gini, {"counts": np.array([1.0, np.nan])}, ValidationError, "counts must be finite"),
    (gini, {"counts": np.array([1.0, np.inf])}, ValidationError, "counts must be finite"),
    (
        gini,
        {"counts": np.array([], dtype=float)},
        ValidationError,
        r"counts must be non-empty; got shape \(0,\)",
    ),
    (
        gini,
        {"counts": np.ones((2, 2))},
        ValidationError,
        r"counts must be 1-D .*got shape \(2, 2\)",
    ),
    (
        gini,
        {"counts": np.array(["a"])},
        ValidationError,
        "counts must be an integer or float array",
    ),
    (
        lorenz_curve,
        {"counts": np.array([-0.5])},
        ValidationError,
        "counts must be non-negative; got min -0.5",
    ),
    (coverage, {"items": _C, "n_items": 0}, ValidationError, "n_items must be an int >= 1; got 0"),
    (
        coverage,
        {"items": _C, "n_items": 2.5},
        ValidationError,
        "n_items must be an int >= 1; got 2.5",
    ),
    (
        coverage,
        {"items": np.array([0.5]), "n_items": 3},
        ValidationError,
        "items must be an integer array",
    ),
    (
        coverage_from_counts,
        {"counts": np.array([-2])},
        ValidationError,
        "counts must be non-negative",
    ),
    (
        catalog_diversity_index,
        {"reach": _C, "n_active_users": 2},
        ValidationError,
        r"reach must be <= n_active_users \(2\); got max 3",
    ),
    (
        catalog_diversity_index,
        {"reach": _C, "n_active_users": -1},
        ValidationError,
        "n_active_users must be an int >= 0; got -1",
    ),
    (
        catalog_diversity_index,
        {"reach": _C, "n_active_users": 10, "threshold": 1.5},
        ValidationError,
        r"threshold must be a float in \[0, 1\]; got 1.5",
    ),
    (
        head_mask_from_popularity,
        {"prior": np.array([1.0, np.nan])},
        ValidationError,
        "prior must be finite",
    ),
    (
        head_mask_from_popularity,
        {"prior": _C, "head_fraction": -0.1},
        ValidationError,
        r"head_fraction must be a float in \[0, 1\]; got -0.1",
    ),
    (
        long_tail_share,
        {"counts": _C, "head_mask": np.array([1, 0, 0])},
        ValidationError,
        "head_mask must be a bool array; got dtype int64",
    ),
    (
        long_tail_share,
        {"counts": _C, "head_mask": np.array([True, False])},
        ValidationError,
        r"head_mask must have the shape of counts \(3,\); got shape \(2,\)",
    ),
    (
        popularity_bias,
        {"counts": _C, "prior": np.array([1.0, 2.0])},
        ValidationError,
        r"prior must have the shape of counts",
    ),
    (
        normalized_entropy,
        {"counts": _C},
        ValidationError,
        r"counts must be 2-D of shape \(n_users, n_genres\)",
    ),
    (
        normalized_entropy,
        {"counts": np.zeros((2, 0))},
        ValidationError,
        "counts must have n_genres >= 1",
    ),
    (
        normalized_entropy,
        {"counts": np.array([[1, -3]])},
        ValidationError,
        "counts must be non-negative; got min -3",
    ),
    (
        intra_list_diversity,
        {"items": np.array([[0], [1]]), "embeddings": np.eye(2)},
        ValidationError,
        "items must have K >= 2 columns",
    ),
    (
        intra_list_diversity,
        {"items": np.array([[0, 2]]), "embeddings": np.eye(2)},
        ValidationError,
        r"items must be ids in \[0, 2\); got min 0 and max 2",
    ),
    (
        intra_list_diversity,
        {"items": np.array([[0.0, 1.0]]), "embeddings": np.eye(2)},
        ValidationError,
        "items must be an integer array",
    ),
    (
        intra_list_diversity,
        {"items": np.array([[0, 1]]), "embeddings": np.array([[1.0, np.nan], [0.0, 1.0]])},
        ValidationError,
        "embeddings must be finite",
    ),
    (
        intra_list_diversity,
        {"items": np.array([[0, 1]]), "embeddings": np.eye(2), "chunk_size": 0},
        ValidationError,
        "chunk_size must be an int >= 1; got 0",
    ),
    (
        pairwise_jaccard,
        {"sets": np.ones((2, 3))},
        ValidationError,
        "sets must be a bool array; got dtype float64",
    ),
    (mean_pairwise_jaccard, {"sets": np.ones(3, dtype=bool)}, ValidationError, "sets must be 2-D"),
    (
        jaccard_similarity,
        {"a": np.ones(3, dtype=bool), "b": np.ones(4, dtype=bool)},
        ValidationError,
        "b must have the shape of a",
    ),
    (
        miscalibration,
        {"p": np.array([[0.5, 0.6]]), "q": np.array([[0.5, 0.5]])},
        ValidationError,
        "p rows must sum to 1; got a row summing to 1.1",
    ),
    (
        miscalibration,
        {"p": np.array([[0.0, 0.0]]), "q": np.array([[0.5, 0.5]])},
        ValidationError,
        "p rows must sum to 1; got a row summing to 0.0",
    ),
    (
        miscalibration,
        {"p": np.array([[0.5, 0.5]]), "q": np.array([[2.0, 0.0]])},
        ValidationError,
        r"q rows must sum to 1 \(or 0 for nothing shown\)",
    ),
    (
        miscalibration,
        {"p": np.array([[0.5, 0.5]]), "q": np.array([[0.5, 0.5]]), "alpha": 0.0},
        ValidationError,
        r"alpha must be a float in \(0, 1\]; got 0.0",
    ),
    (
        miscalibration,
        {"p": np.array([[1.0, 0.0]]), "q": np.array([[1.0, 0.0], [1.0, 0.0]])},
        ValidationError,
        "q must have the shape of p",
    ),
    (
        position_ctr,
        {"clicks": np.ones((2, 2), dtype=int)},
        ValidationError,
        "clicks must be a bool array",
    ),
]


@pytest.mark.parametrize(
    ("func", "kwargs", "error", "match"),
    BAD_INPUTS,
    ids=[f"{row[0].__name__}-{i}" for i, row in enumerate(BAD_INPUTS)],
)
def test_bad_inputs(func, kwargs, error, match):
    with pytest.raises(error, match=match):
        func(**kwargs)


def test_validation_error_is_value_error():
    with pytest.raises(ValueError):  # callers may catch the stdlib class
        gini(np.array([-1]))
