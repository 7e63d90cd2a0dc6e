"""MetricTracker's incremental state against brute-force recounts of the raw rounds, and the
compiled metric kernels against the NumPy formulas they replace."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from simulator.config import MetricsSection
from simulator.errors import ValidationError
from simulator.metrics import functions as F
from simulator.metrics.tracker import MetricTracker


# ----------------------------------------------------------------------------------------------
# a small random world (duck-typed catalog and population: the tracker reads only arrays)
# ----------------------------------------------------------------------------------------------
def _world(rng, n_users, n_items, n_genres, d=4, n_tracked=12, zero_embeddings=0):
    emb = rng.standard_normal((n_items, d)).astype(np.float32)
    emb[:zero_embeddings] = 0.0
    prior = rng.random(n_items)
    catalog = SimpleNamespace(
        n_items=n_items,
        n_genres=n_genres,
        genre=rng.integers(0, n_genres, n_items).astype(np.int16),
        embedding=emb,
        prior_popularity=prior,
        head=F.head_mask_from_popularity(prior),
    )
    alternating = rng.random(n_users) < 0.3
    ga = np.where(alternating, rng.integers(0, n_genres, n_users), -1).astype(np.int16)
    gb = np.where(alternating, (ga + 1) % n_genres, -1).astype(np.int16)
    pop = SimpleNamespace(
        n_users=n_users,
        taste=rng.dirichlet(np.full(n_genres, 0.3), n_users).astype(np.float32),
        alternating=alternating,
        genre_a=ga,
        genre_b=gb,
    )
    tracked = np.sort(rng.choice(n_users, min(n_tracked, n_users), replace=False))
    return catalog, pop, tracked


def _round(rng, n_users, n_items, k, *, sort_users=True, p_active=0.4, dup_items=False):
    users = np.flatnonzero(rng.random(n_users) < p_active)
    if not sort_users:
        users = rng.permutation(users)
    if dup_items:  # a tiny item range forces repeated items within slates
        items = rng.integers(0, min(n_items, k), (users.size, k)).astype(np.int32)
    else:
        items = rng.integers(0, n_items, (users.size, k)).astype(np.int32)
    clicks = rng.random((users.size, k)) < 0.3
    prob = rng.random((users.size, k)).astype(np.float32)
    return users, SimpleNamespace(items=items), SimpleNamespace(clicks=clicks, click_probability=prob)


class _BruteForce:
    """The tracker's windows recounted from scratch from the raw rounds (no incremental state)."""

    def __init__(self, cfg, catalog, pop, tracked):
        self.cfg, self.catalog, self.pop, self.tracked = cfg, catalog, pop, tracked
        self.rounds: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, users, items, clicks):
        self.rounds.append((users, items.copy(), clicks.copy()))

    def _last(self, w):
        return self.rounds[-w:]

    def exposure(self):
        n = self.catalog.n_items
        return sum((np.bincount(it.ravel(), minlength=n) for _, it, _ in self._last(self.cfg.window_days)))

    def reach(self):
        n = self.catalog.n_items
        keys = [
            np.repeat(u.astype(np.int64), it.shape[1]) * n + it.ravel()
            for u, it, _ in self._last(self.cfg.window_days)
        ]
        distinct = np.unique(np.concatenate(keys))
        return np.bincount(distinct % n, minlength=n)

    def n_window_users(self):
        return np.unique(np.concatenate([u for u, _, _ in self._last(self.cfg.window_days)])).size

    def genre_counts(self):
        g, n_users = self.catalog.n_genres, self.pop.n_users
        shown = np.zeros((n_users, g), dtype=np.int64)
        consumed = np.zeros((n_users, g), dtype=np.int64)
        for u, it, c in self._last(self.cfg.user_window_days):
            rows = np.repeat(u, it.shape[1])
            np.add.at(shown, (rows, self.catalog.genre[it.ravel()]), 1)
            np.add.at(consumed, (rows[c.ravel()], self.catalog.genre[it.ravel()[c.ravel()]]), 1)
        return shown, consumed

    def tracked_sets(self):
        pos = {int(u): i for i, u in enumerate(self.tracked)}
        sets = np.zeros((self.tracked.size, self.catalog.n_items), dtype=bool)
        for u, it, c in self._last(self.cfg.user_window_days):
            for r, user in enumerate(u):
                if int(user) in pos:
                    sets[pos[int(user)], it[r][c[r]]] = True
        return sets


def _cfg(**kw):
    return MetricsSection(**({"window_days": 3, "user_window_days": 5, "n_tracked_users": 12} | kw))


def _nanmean(x):
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def _same(a, b):
    return a == b or (math.isnan(a) and math.isnan(b))


# ----------------------------------------------------------------------------------------------
# the tracker against brute force
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_windows_and_metrics_equal_a_full_recount_after_windows_expire(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, g, k = 60, 40, 5, 4
    catalog, pop, tracked = _world(rng, n_users, n_items, g, zero_embeddings=2)
    cfg = _cfg()
    tr, bf = MetricTracker(cfg, catalog, pop, tracked), _BruteForce(cfg, catalog, pop, tracked)
    for day in range(14):  # > user_window_days: both windows expire repeatedly
        users, slate, fb = _round(
            rng,
            n_users,
            n_items,
            k,
            sort_users=day % 3 != 1,
            p_active=0.0 if day == 6 else 0.4,
            dup_items=day == 4,
        )
        pop.taste = rng.dirichlet(np.full(g, 0.3), n_users).astype(np.float32)  # drifts daily
        out = tr.update(users, slate, fb)
        bf.add(users, slate.items, fb.clicks)

        exposure, reach = bf.exposure(), bf.reach()
        np.testing.assert_array_equal(tr.exposure, exposure)
        np.testing.assert_array_equal(tr.reach, reach)
        assert tr._n_window_users == bf.n_window_users()
        shown, consumed = bf.genre_counts()
        np.testing.assert_array_equal(tr.shown, shown)
        np.testing.assert_array_equal(tr.consumed, consumed)
        sets = bf.tracked_sets()
        np.testing.assert_array_equal(tr.tracked_consumed > 0, sets)

        n_window = bf.n_window_users()
        assert out["cdi"] == F.catalog_diversity_index(reach, n_window, cfg.cdi_threshold)
        assert out["gini"] == F.gini(exposure)
        if exposure.min() < exposure.max():
            assert out["popularity_bias"] == stats.spearmanr(exposure, catalog.prior_popularity).statistic
        if users.size:
            assert _same(out["homogenization"], F.mean_pairwise_jaccard(sets))
            assert out["ild"] == float(np.mean(F.intra_list_diversity(slate.items, catalog.embedding)))
            assert _same(out["entropy_shown"], _nanmean(F.normalized_entropy(shown[users])))
            assert _same(out["entropy_consumed"], _nanmean(F.normalized_entropy(consumed[users])))
            total = shown[users].sum(1, keepdims=True)
            q = np.divide(shown[users], total, out=np.zeros((users.size, g)), where=total > 0)
            expected = _nanmean(F.miscalibration(pop.taste[users].astype(np.float64), q))
            assert _same(out["miscalibration"], expected)
        else:
            # no active user: the per-user metrics are undefined (as before the incremental state)
            assert math.isnan(out["entropy_shown"]) and math.isnan(out["homogenization"])
            assert math.isnan(out["ild"])
        assert tr._n_keys == reach.sum()  # one key per distinct (user, item) of the window


def test_reach_with_repeated_users_in_a_round_counts_each_user_once():
    rng = np.random.default_rng(3)
    catalog, pop, tracked = _world(rng, 30, 20, 3)
    tr, bf = MetricTracker(_cfg(), catalog, pop, tracked), _BruteForce(_cfg(), catalog, pop, tracked)
    for _ in range(6):
        users = rng.integers(0, 30, 25)  # repeats and unsorted: the merge falls back to unique keys
        items = rng.integers(0, 20, (25, 3)).astype(np.int32)
        tr._slide_reach(users, items)
        tr._round += 1
        bf.add(users, items, np.zeros(items.shape, bool))
        np.testing.assert_array_equal(tr.reach, bf.reach())


def test_reach_keys_at_a_million_users_and_100k_items():
    # keys user·I + item reach 1e11: int64 throughout, reach still a distinct-user count
    rng = np.random.default_rng(7)
    n_users, n_items = 1_000_000, 100_000
    catalog, pop, tracked = _world(rng, n_users, n_items, 2, d=2, n_tracked=4)
    cfg = _cfg(window_days=2, user_window_days=2)
    tr, bf = MetricTracker(cfg, catalog, pop, tracked), _BruteForce(cfg, catalog, pop, tracked)
    hot = np.array([n_users - 1, n_users - 2, 0])  # the largest keys, shown on several days
    for _ in range(5):
        users = np.unique(np.concatenate([rng.choice(n_users, 300, replace=False), hot]))
        items = rng.integers(0, n_items, (users.size, 3)).astype(np.int32)
        items[-2:, 0] = n_items - 1
        tr._slide_reach(users, items)
        tr._round += 1
        bf.add(users, items, np.zeros(items.shape, bool))
        np.testing.assert_array_equal(tr.reach, bf.reach())
    assert tr.reach[n_items - 1] == 2 and tr._keys[tr._n_keys - 1] == (n_users - 1) * n_items + n_items - 1


def test_update_rejects_out_of_range_ids_before_changing_state():
    rng = np.random.default_rng(0)
    catalog, pop, tracked = _world(rng, 10, 8, 3)
    tr = MetricTracker(_cfg(), catalog, pop, tracked)
    fb = SimpleNamespace(clicks=np.zeros((2, 3), bool), click_probability=np.zeros((2, 3), np.float32))
    with pytest.raises(ValidationError, match=r"items must be ids in \[0, 8\)"):
        tr.update(np.array([0, 1]), SimpleNamespace(items=np.array([[0, 1, 8], [0, 1, 2]])), fb)
    with pytest.raises(ValidationError, match=r"users must be ids in \[0, 10\)"):
        tr.update(np.array([0, 10]), SimpleNamespace(items=np.array([[0, 1, 2], [0, 1, 2]])), fb)
    with pytest.raises(ValidationError, match="K >= 2"):
        tr.update(np.array([0, 1]), SimpleNamespace(items=np.array([[0], [1]])), fb)
    assert tr.exposure.sum() == 0 and tr.shown.sum() == 0 and tr._n_keys == 0


def test_invalid_taste_raises_the_miscalibration_error():
    rng = np.random.default_rng(0)
    catalog, pop, tracked = _world(rng, 10, 8, 3)
    tr = MetricTracker(_cfg(), catalog, pop, tracked)
    users, slate, fb = _round(rng, 10, 8, 3, p_active=1.0)
    pop.taste[3] = [0.5, 0.5, 0.5]
    with pytest.raises(ValidationError, match="p rows must sum to 1"):
        tr.update(users, slate, fb)


# ----------------------------------------------------------------------------------------------
# compiled kernels against the NumPy formulas they replace
# ----------------------------------------------------------------------------------------------
def _entropy_numpy(c):
    c = np.ascontiguousarray(c, dtype=np.float64)
    total = c.sum(axis=1)
    empty = total == 0
    p = c / np.where(empty, 1.0, total)[:, None]
    h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
    h = np.zeros_like(h) if c.shape[1] == 1 else np.clip(h / math.log(c.shape[1]), 0.0, 1.0)
    h[empty] = np.nan
    return h


def _miscalibration_numpy(p, q, a):
    qt = (1.0 - a) * q + a * p
    pos = p > 0
    kl = np.maximum(np.sum(p * np.log(np.where(pos, p, 1.0) / np.where(pos, qt, 1.0)), axis=1), 0.0)
    kl[q.sum(axis=1) == 0] = np.nan
    return kl


@pytest.mark.parametrize("n", [1, 5, 7, 8, 9, 12, 15, 16, 17, 127, 128, 129, 255, 300, 1000, 4099])
def test_pairwise_sum_has_numpys_summation_order(n):
    # the kernels claim NumPy's bits: a different order shows on these wide-range values
    x = np.random.default_rng(n).standard_normal(n) * np.exp(
        np.random.default_rng(n + 1).standard_normal(n) * 8
    )
    assert F._pairwise_sum(x, 0, n) == x.sum()
    assert F._pairwise_sum(x, 1, n - 1) == x[1:].sum()


@pytest.mark.parametrize("g", [1, 2, 8, 12, 13, 130])
def test_entropy_and_miscalibration_kernels_equal_the_numpy_formulas(g):
    rng = np.random.default_rng(g)
    c = rng.integers(0, 6, (40, g)) * (rng.random((40, g)) < 0.5)
    c[0] = 0
    for counts in (c, c * rng.random((40, g))):
        np.testing.assert_allclose(F.normalized_entropy(counts), _entropy_numpy(counts), rtol=1e-13, atol=0)
    p = rng.dirichlet(np.full(g, 0.3), 40)
    p[:, 0] = 0.0
    p /= np.where(p.sum(1, keepdims=True) > 0, p.sum(1, keepdims=True), 1.0)
    p[p.sum(1) == 0] = 1.0 / g
    q = rng.dirichlet(np.ones(g), 40)
    q[1] = 0.0
    got = F.miscalibration(p, q, 0.05)
    np.testing.assert_allclose(got, _miscalibration_numpy(p, q, 0.05), rtol=1e-13, atol=1e-300)
    assert math.isnan(got[1]) and not np.isnan(got[2:]).any()


def test_tabulated_entropy_equals_the_direct_one_inside_and_beyond_the_table():
    rng = np.random.default_rng(0)
    table = F._plogp_table(30)
    counts = rng.integers(0, 8, (200, 12)).astype(np.int32)  # totals straddle 30
    counts[:4] = 0
    counts[3, 0] = 5  # one genre: entropy 0
    assert (counts.sum(1) > 30).any() and (counts.sum(1) <= 30).any()
    buf = np.empty(12)
    for row in counts:
        a = F._entropy_row_int(row, table, buf, math.log(12))
        b = F._entropy_row(row, buf, math.log(12))
        assert _same(a, b)
    np.testing.assert_array_equal(F.normalized_entropy(counts)[3], 0.0)


def test_ild_kernel_equals_the_gathering_formula():
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((30, 6)).astype(np.float32)
    emb[0] = 0.0
    ids = rng.integers(0, 30, (50, 5)).astype(np.int32)
    v = emb.astype(np.float64)
    norms = np.linalg.norm(v, axis=1)
    unit = np.divide(v, norms[:, None], out=np.zeros_like(v), where=norms[:, None] > 0)
    s = unit[ids].sum(axis=1)
    m = (norms[ids] > 0).sum(axis=1)
    expected = 1.0 - ((s * s).sum(1) - m) / 2.0 / 10.0
    np.testing.assert_allclose(F.intra_list_diversity(ids, emb), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(
        F.intra_list_diversity(ids, emb, chunk_size=7), F.intra_list_diversity(ids, emb)
    )


def test_average_ranks_and_popularity_bias_equal_scipy():
    rng = np.random.default_rng(2)
    for n in (2, 3, 50, 999):
        counts = rng.integers(0, 4, n)  # many ties
        prior = rng.random(n) if n % 2 else rng.integers(0, 3, n).astype(np.float64)
        np.testing.assert_array_equal(F._average_ranks(counts.astype(np.float64)), stats.rankdata(counts))
        if counts.min() < counts.max() and prior.min() < prior.max():
            assert F.popularity_bias(counts, prior) == stats.spearmanr(counts, prior).statistic
