"""The compiled policy kernels against closed forms, exact enumeration and plain NumPy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from simulator import kernels, selection
from simulator.policies import _mc_kernels, _pl_kernels, _rerank_kernels
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
        ref_idx, ref_vals = selection.top_k_rows(ucb, k)
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


def test_tail_draws_over_many_blocks_follow_the_softmax():
    """A tail of many CDF blocks (the guide table's walk): first-position frequencies, 5 sd."""
    rng = np.random.default_rng(6)
    z = rng.normal(size=300) * 1.5
    z[[10, 200]] = np.sort(z)[-3] - 0.1  # two heavy tail items, in different blocks
    soft = np.exp(z - logsumexp(z))
    n = 60_000
    items, _, _ = plackett_luce_slates(np.tile(z, (n, 1)), 3, 1, rng, head=3)
    freq = np.bincount(items[:, 0], minlength=300) / n
    assert (np.abs(freq - soft) <= 5 * np.sqrt(soft * (1 - soft) / n) + 1e-4).all()
    assert all(len(set(r)) == 3 for r in items[:1000].tolist())


def test_shorter_estimate_prefixes_give_the_same_slates_and_estimates():
    """Estimate-only prefixes stop at K − 1 items: the same output as with given slates."""
    rng = np.random.default_rng(7)
    z = rng.normal(size=(40, 500)) * 2.0
    g = rng.gumbel(size=(40, 5, 6))
    e, u = rng.standard_exponential((40, 5, 4)), rng.random((40, 5, 4))
    items, ps, inc, _ = _pl_kernels.pl_rows(z, 1.0, 6, None, 4, g, e, u, MIN_PROPENSITY)
    # the same estimate prefixes (numbers 1..4) for the drawn slates, as given slates
    _, ps2, inc2, _ = _pl_kernels.pl_rows(z, 1.0, 6, items, 3, g[:, 1:], e[:, 1:], u[:, 1:], MIN_PROPENSITY)
    np.testing.assert_allclose(ps[:, 1:], ps2[:, 1:], rtol=1e-6)
    np.testing.assert_allclose(inc, inc2, rtol=1e-6)


# ----------------------------------------------------------------------------------- selection
@pytest.mark.parametrize("k", [1, 10, 17, 64, 100])
@pytest.mark.parametrize("m", [20, 300, 5003])
def test_select_rows_matches_a_full_sort(k, m):
    rng = np.random.default_rng(k + m)
    s = np.round(rng.standard_normal((40, m)), 1).astype(np.float32)  # many ties
    s[:3] = 0.0
    s[3, ::3] = -np.inf
    k = min(k, m)
    cols = np.broadcast_to(np.arange(m), s.shape)
    order = np.lexsort((cols, -s), axis=1)[:, :k]  # descending score, then lower column
    ref = (order, np.take_along_axis(s, order, axis=1))
    got = selection.select_rows(s, k)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    idx, vals = selection.select_rows(s.astype(np.float64), k, ordered=False)
    np.testing.assert_array_equal(np.take_along_axis(s, idx.astype(np.intp), axis=1), vals)
    assert (np.diff(idx, axis=1) > 0).all()  # column order
    assert [set(r) for r in idx.tolist()] == [set(r) for r in ref[0].tolist()]
    with pytest.raises(ValueError, match="k must be in"):
        selection.select_rows(s, m + 1)


# ------------------------------------------------------------------------------------ normals
def test_fill_normals_are_standard_normal_and_reproducible():
    from scipy import stats

    out = np.empty(400_001, np.float32)
    words = np.empty(out.size + 1, np.int32)
    _mc_kernels.fill_normals(12345, out, words)
    again = np.empty_like(out)
    _mc_kernels.fill_normals(12345, again, words)
    np.testing.assert_array_equal(out, again)
    other = np.empty(1000, np.float32)
    _mc_kernels.fill_normals(12346, other, words)
    assert not np.array_equal(other, out[:1000])
    assert stats.kstest(out, "norm").pvalue > 1e-3
    n = out.size
    for a in (1.0, 2.0, 3.0, 3.7, 4.0):  # 3.7: beyond the ziggurat's base strip (its tail)
        p = 2 * stats.norm.sf(a)
        assert abs(np.mean(np.abs(out) > a) - p) < 5 * np.sqrt(p / n)
    assert abs(out.mean()) < 5 / np.sqrt(n) and abs(out.var() - 1) < 5 * np.sqrt(2 / n)


# ---------------------------------------------------------------------------------- re-rankers
def _mmr_reference(scores, k, c, lam, emb):
    """The re-ranking by NumPy, candidates best first (the policy's former implementation)."""
    cand, cs = selection.top_k_rows(scores, c)
    lo, hi = cs.min(axis=1, keepdims=True), cs.max(axis=1, keepdims=True)
    rel = np.divide(cs - lo, hi - lo, out=np.zeros_like(cs), where=hi > lo).astype(np.float32)
    out = np.empty((scores.shape[0], k), np.int64)
    for r in range(scores.shape[0]):
        e = emb[cand[r]]
        max_sim = np.zeros(c, np.float32)
        chosen = np.zeros(c, bool)
        for j in range(k):
            obj = lam * rel[r] - (1 - lam) * max_sim if j else rel[r].copy()
            obj[chosen] = -np.inf
            p = int(np.argmax(obj))
            chosen[p] = True
            out[r, j] = cand[r, p]
            max_sim = np.maximum(max_sim, e @ e[p])
    return out


def _calibrated_reference(scores, k, c, lam, a, genre, p):
    cand, cs = selection.top_k_rows(scores, c)
    lo, hi = cs.min(axis=1, keepdims=True), cs.max(axis=1, keepdims=True)
    rel = np.divide(cs - lo, hi - lo, out=np.zeros_like(cs), where=hi > lo).astype(np.float64)
    g = p.shape[1]
    out = np.empty((scores.shape[0], k), np.int64)
    for r in range(scores.shape[0]):
        shown = np.zeros(g)
        chosen = np.zeros(c, bool)
        pr = p[r]
        for j in range(k):
            q = (shown[None, :] + np.eye(g)) / (j + 1)
            qt = (1 - a) * q + a * pr[None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                kl = np.where(pr > 0, pr * np.log(np.where(pr > 0, pr / qt, 1.0)), 0.0).sum(axis=1)
            obj = (1 - lam) * rel[r] - lam * kl[genre[cand[r]]]
            obj[chosen] = -np.inf
            b = int(np.argmax(obj))
            chosen[b] = True
            out[r, j] = cand[r, b]
            shown[genre[cand[r, b]]] += 1
    return out


def test_rerank_kernels_match_numpy():
    rng = np.random.default_rng(8)
    n, m, d, g = 30, 400, 6, 5
    scores = np.round(rng.standard_normal((n, m)), 2).astype(np.float32)  # some ties
    emb = rng.standard_normal((m, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    genre = rng.integers(0, g, m)
    p = rng.dirichlet(np.ones(g), n)
    p[:5, 0] = 0.0  # genres the user never streamed
    p /= p.sum(axis=1, keepdims=True)
    for lam in (0.0, 0.3, 1.0):
        items, _ = _rerank_kernels.mmr_rows(scores, 6, 50, lam, np.ascontiguousarray(emb.T))
        np.testing.assert_array_equal(items, _mmr_reference(scores, 6, 50, np.float32(lam), emb))
        items, _ = _rerank_kernels.calibrated_rows(scores, 6, 50, lam, 0.01, genre, p)
        np.testing.assert_array_equal(items, _calibrated_reference(scores, 6, 50, lam, 0.01, genre, p))


# ----------------------------------------------------------------------------- linear bandits
def _linear_block(n=24, m=700, g=4, e=5, seed=9):
    rng = np.random.default_rng(seed)
    genre = np.sort(rng.integers(0, g, m))
    emb = rng.standard_normal((m, e)).astype(np.float32)
    feat = np.concatenate([np.eye(g, dtype=np.float32)[genre], emb, np.ones((m, 1), np.float32)], axis=1)
    mean_u = rng.standard_normal((n, feat.shape[1])).astype(np.float32)
    inv_q = rng.uniform(0.2, 1.0, (n, feat.shape[1])).astype(np.float32)
    return rng, genre, feat, mean_u, inv_q


def test_ucb_rows_match_top_k_of_the_dense_index():
    from simulator.policies.bandits import ItemSide

    _, genre, feat, mean_u, inv_q = _linear_block()
    side = ItemSide(feat, genre, 4)
    assert side.segments.size - 1 == np.unique(genre).size  # runs: the embedding-only GEMM
    items, vals = _mc_kernels.ucb_rows(
        side.left(mean_u) @ side.right,
        side.left(inv_q) @ side.right2,
        (side.offsets(mean_u), side.offsets(inv_q)),
        side.segments,
        0.7,
        9,
    )
    ref_items, ref_vals = kernels.top_k_ucb_rows(mean_u @ feat.T, inv_q @ (feat * feat).T, 0.7, 9)
    np.testing.assert_allclose(vals, ref_vals, rtol=1e-5, atol=1e-5)
    assert (items == ref_items).mean() > 0.99  # near-ties may swap under other rounding


def test_lints_rows_slates_and_counts():
    """Slates: the top K of the sampled scores. Counts: the reference counting on the same
    candidates and normals (the kernel draws them from the row's seed)."""
    from simulator.policies.bandits import ItemSide

    rng, genre, feat, mean_u, inv_q = _linear_block()
    n, d = mean_u.shape
    k, c, m_s, coef = 5, 20, 40, 0.3
    sd_w = 0.3 * np.sqrt(inv_q)
    theta = mean_u + sd_w * rng.standard_normal(sd_w.shape).astype(np.float32)
    seeds = rng.integers(0, 2**62, n)
    side = ItemSide(feat, genre, 4)
    items, sc, at_pos, anywhere = _mc_kernels.lints_rows(
        side.left(theta) @ side.right,
        side.left(mean_u) @ side.right,
        side.left(inv_q) @ side.right2,
        (side.offsets(theta), side.offsets(mean_u), side.offsets(inv_q)),
        side.segments,
        coef,
        k,
        c,
        side.dense,
        sd_w,
        m_s,
        seeds,
    )
    sampled = theta @ feat.T
    np.testing.assert_array_equal(items, selection.top_k_rows(sampled, k)[0])
    np.testing.assert_allclose(
        sc, np.take_along_axis(sampled, items.astype(np.intp), 1), rtol=1e-5, atol=1e-5
    )
    cand, _ = kernels.top_k_ucb_rows(mean_u @ feat.T, inv_q @ (feat * feat).T, coef, c)
    cand = np.sort(cand, axis=1)
    masked = (items[:, :, None] == cand[:, None, :]).any(axis=2)
    eps = np.empty((n, m_s, d), np.float32)
    for r in range(n):
        e_t = np.empty(d * m_s, np.float32)
        _mc_kernels.fill_normals(seeds[r], e_t, np.empty(d * m_s + 1, np.int32))
        eps[r] = e_t.reshape(d, m_s).T
    want_pos, want_any = _mc_kernels.rank_counts(
        feat, mean_u, sd_w, np.concatenate([cand, items], axis=1), masked, items, eps
    )
    # float32 sums in another order can flip a near-tie: allow a handful of the n·M·K comparisons
    assert np.abs(at_pos - want_pos).sum() <= 3
    assert np.abs(anywhere - want_any).sum() <= 3


def test_session_grams_and_spd_solve_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 10, 7))
    grams = np.empty((40, 7, 7))
    _mc_kernels.session_grams(x, grams)
    np.testing.assert_allclose(grams, np.einsum("nki,nkj->nij", x, x), rtol=1e-12, atol=1e-12)
    a = grams + 0.5 * np.eye(7)  # SPD
    b = rng.standard_normal((40, 7))
    out = np.empty((40, 7))
    _mc_kernels.spd_solve(a, b, out)
    np.testing.assert_allclose(out, np.linalg.solve(a, b[:, :, None])[:, :, 0], rtol=1e-9, atol=1e-12)
