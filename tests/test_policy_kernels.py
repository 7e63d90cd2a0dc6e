"""The compiled policy kernels against closed forms, exact enumeration and plain NumPy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from simulator import kernels
from simulator.policies import _mc_kernels, _pl_kernels
from simulator.policies.base import MIN_PROPENSITY
from simulator.policies.propensity import plackett_luce_slates


def _pl_exact(w: np.ndarray, k: int) -> np.ndarray:
    """P(item i at position j) of Plackett-Luce by enumerating every ordered prefix."""
    out = np.zeros((w.size, k))
    for perm in itertools.permutations(range(w.size), k):
        p, rest = 1.0, w.sum()
        for it in perm:
            p *= w[it] / rest
            rest -= w[it]
        for j, it in enumerate(perm):
            out[it, j] += p
    return out


# ------------------------------------------------------------------------------- Plackett-Luce
def test_exp_rel_matches_numpy():
    d = np.concatenate([-np.linspace(0, 120, 20001), [0.0, -1e-30, -86.9, -87.0, -87.01, -1e30, -np.inf]])
    row = d.astype(np.float32)
    w = np.empty(row.size, np.float32)
    _pl_kernels._exp_rel(row, np.float32(1.0), np.float32(0.0), w, np.empty(row.size, np.int32))
    ref = np.exp(row.astype(np.float64))
    ok = row >= -87
    np.testing.assert_allclose(w[ok], ref[ok], rtol=4e-7)  # Cephes expf accuracy
    assert (w[~ok] == 0).all()  # below e^-87: weight 0, never a denormal or garbage


@pytest.mark.parametrize("head", [3, 4, 7])  # head < I: the tail's CDF and truncated keys are used
def test_slates_follow_plackett_luce_exactly(head):
    """Empirical (item, position) frequencies of drawn slates vs enumeration; 5 sd."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=7) * 1.2
    exact = _pl_exact(np.exp(z), 3)
    n = 40_000
    items, _, _ = plackett_luce_slates(np.tile(z, (n, 1)), 3, 1, rng, head=head)
    freq = np.zeros_like(exact)
    for j in range(3):
        freq[:, j] = np.bincount(items[:, j], minlength=7) / n
    np.testing.assert_allclose(freq, exact, atol=5 * np.sqrt(0.25 / n))
    assert all(len(set(r)) == 3 for r in items[:500])  # without replacement


def test_a_dominant_tail_item_is_drawn_without_replacement():
    """One tail item carries ~all the tail weight: later tail draws hit it and are redrawn."""
    z = np.array([5.0, 5.0, 3.0, -4.0, -4.0, -4.0, -4.0])  # head = 2 items; tail max is item 2
    exact = _pl_exact(np.exp(z), 4)
    n = 40_000
    rng = np.random.default_rng(3)
    items, _, _ = plackett_luce_slates(np.tile(z, (n, 1)), 4, 1, rng, head=2)
    freq = np.stack([np.bincount(items[:, j], minlength=7) / n for j in range(4)], axis=1)
    np.testing.assert_allclose(freq, exact, atol=5 * np.sqrt(0.25 / n))


def test_first_position_is_the_softmax_and_estimates_are_unbiased():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(1, 8)) * 2.0
    exact = _pl_exact(np.exp(z[0]), 4)
    items = np.array([[3, 0, 7, 5]])
    m = 20_000
    _, ps, inc = plackett_luce_slates(z, 4, m, rng, head=5, items=items)
    soft = np.exp(z[0] - logsumexp(z[0]))
    assert ps[0, 0] == pytest.approx(soft[3], rel=1e-6)  # closed form: softmax
    np.testing.assert_allclose(ps[0], exact[items[0], np.arange(4)], atol=5 * np.sqrt(0.25 / m))
    np.testing.assert_allclose(inc[0], exact[items[0]].sum(axis=1), atol=4 * 5 * np.sqrt(0.25 / m))


def test_scale_is_the_same_as_scaled_logits_and_overflow_is_shifted():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(30, 40)).astype(np.float32)
    a = plackett_luce_slates(s * np.float32(7.0), 4, 6, np.random.default_rng(5), head=8)
    b = plackett_luce_slates(s, 4, 6, np.random.default_rng(5), head=8, scale=7.0)
    np.testing.assert_array_equal(a[0], b[0])
    for x, y in zip(a[1:], b[1:], strict=True):  # the product may be fused into the exponent
        np.testing.assert_allclose(x, y, rtol=1e-6)
    # s·scale overflows float32 in some rows: those rows are shifted by their maximum first
    big = s.copy()
    big[::3] *= np.float32(1e35)
    with np.errstate(over="ignore"):
        c = plackett_luce_slates(big, 4, 6, np.random.default_rng(5), head=8, scale=1e6)
        shifted = (big - big.max(axis=1, keepdims=True)) * np.float32(1e6)
    shifted = np.maximum(shifted, np.finfo(np.float32).min)
    d = plackett_luce_slates(shifted, 4, 6, np.random.default_rng(5), head=8)
    for x, y in zip(c, d, strict=True):
        np.testing.assert_array_equal(x[::3], y[::3])
    for p in c[1:]:
        assert np.isfinite(p).all() and (p >= MIN_PROPENSITY).all() and (p <= 1).all()


def test_same_seed_same_slates_with_serial_and_parallel_kernels():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(64, 300))
    a = plackett_luce_slates(z, 5, 4, np.random.default_rng(9), head=8)
    b = plackett_luce_slates(z, 5, 4, np.random.default_rng(9), head=8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # the same block through the serial and the parallel compiled kernel
    g = np.random.default_rng(1)
    gh, et, ut = g.gumbel(size=(64, 5, 8)), g.standard_exponential((64, 5, 5)), g.random((64, 5, 5))
    outs = []
    for kern in (_pl_kernels._pl_serial, _pl_kernels._pl_parallel):
        o = (np.empty((64, 5), np.int32), np.empty((64, 5), np.float32), np.empty((64, 5), np.float32))
        given = np.zeros((64, 5), np.int64)
        kern(z, 1.0, 8, given, True, 5, gh, et, ut, *o, MIN_PROPENSITY, np.zeros(64, bool))
        outs.append(o)
    for x, y in zip(*outs, strict=True):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------- bandit kernels
def test_top_k_ucb_matches_top_k_of_the_formed_index():
    rng = np.random.default_rng(0)
    mean = np.round(rng.normal(size=(50, 300)), 1).astype(np.float32)  # ties
    var = np.round(rng.random((50, 300)), 1).astype(np.float32)
    for k in (1, 10, 64):
        idx, vals = kernels.top_k_ucb_rows(mean, var, 0.3, k)
        ucb = mean + np.float32(0.3) * np.sqrt(var)
        ref_idx, ref_vals = kernels.top_k_rows(ucb, k)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(vals, ref_vals)
    with pytest.raises(ValueError, match="k must be in"):
        kernels.top_k_ucb_rows(mean, var, 0.3, 301)
    with pytest.raises(ValueError, match="one shape"):
        kernels.top_k_ucb_rows(mean, var[:, :5], 0.3, 2)


def test_rank_counts_match_numpy():
    rng = np.random.default_rng(0)
    n, n_items, d, m, c, k = 20, 40, 6, 50, 8, 3
    feat = rng.normal(size=(n_items, d)).astype(np.float32)
    mean_u = rng.normal(size=(n, d)).astype(np.float32)
    sd_w = rng.random((n, d)).astype(np.float32)
    first = np.stack([rng.choice(n_items, c, replace=False) for _ in range(n)])
    items = np.stack([rng.choice(n_items, k, replace=False) for _ in range(n)])
    items[:5, 0] = first[:5, 2]  # some shown items are already candidates
    masked = (items[:, :, None] == first[:, None, :]).any(axis=2)
    cand = np.concatenate([first, items], axis=1)
    eps = rng.standard_normal((n, m, d)).astype(np.float32)
    at_pos, anywhere = _mc_kernels.rank_counts(feat, mean_u, sd_w, cand, masked, items, eps)
    # reference: score every candidate in every draw; a shown item's rank = #candidates above
    theta = mean_u[:, None, :] + sd_w[:, None, :] * eps  # (n, M, D)
    want_pos = np.zeros((n, k), int)
    want_any = np.zeros((n, k), int)
    for r in range(n):
        pool = np.unique(cand[r])
        s = theta[r] @ feat[pool].T  # (M, |pool|)
        for j in range(k):
            own = s[:, np.searchsorted(pool, items[r, j])]
            above = (s > own[:, None]).sum(axis=1)
            want_pos[r, j] = (above == j).sum()
            want_any[r, j] = (above < k).sum()
    # float32 sums in another order can flip a near-tie: allow a handful of the n·M·K comparisons
    assert np.abs(at_pos - want_pos).sum() <= 3
    assert np.abs(anywhere - want_any).sum() <= 3
