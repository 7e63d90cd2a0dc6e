"""World model: relevance formula, tastes, sessions, organic history, top-K."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.catalog.catalog import make_catalog
from simulator.config import CatalogSection, HistorySection, RelevanceSection, UsersSection
from simulator.selection import top_k_rows
from simulator.users.population import active_users, make_population, organic_history


def _world(n_users=300, n_items=200, **users):
    cat = make_catalog(
        CatalogSection(n_items=n_items, n_genres=5, n_artists=50, embedding_dim=6), np.random.default_rng(1)
    )
    pop = make_population(
        UsersSection(n_users=n_users, **users), RelevanceSection(), cat, np.random.default_rng(2)
    )
    return cat, pop


def test_relevance_matches_formula_and_full_matrix():
    cat, pop = _world()
    rel = RelevanceSection()
    users = np.array([0, 5, 17])
    items = np.array([[0, 10, 199], [3, 4, 5], [7, 8, 9]])
    g = cat.n_genres
    # r = sigmoid(b0 + bg log(G theta + f) + be <U,V> + bq q), written out by hand
    logit = (
        rel.intercept
        + rel.genre_weight * np.log(g * pop.taste[users[:, None], cat.genre[items]] + rel.taste_floor)
        + rel.embedding_weight * np.einsum("nd,nkd->nk", pop.embedding[users], cat.embedding[items])
        + rel.quality_weight * cat.quality[items]
    )
    expected = 1 / (1 + np.exp(-logit))
    np.testing.assert_allclose(pop.relevance(users, items), expected, rtol=1e-5)
    # the chunked full matrix agrees with the pairwise formula
    ((_rows, block),) = list(pop.relevance_chunks(users))
    np.testing.assert_allclose(np.take_along_axis(block, items, axis=1), logit, rtol=1e-4, atol=1e-5)


def test_top_k_rows_equals_full_sort():
    rng = np.random.default_rng(0)
    for m in (7, 50, 5000):
        scores = rng.standard_normal((40, m)).astype(np.float32)
        k = min(10, m)
        idx, vals = top_k_rows(scores, k)
        ref = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(idx, ref)
        np.testing.assert_array_equal(vals, np.take_along_axis(scores, ref, axis=1))


def test_alternating_users_swap_every_period():
    _, pop = _world(
        alternating_share=0.5, alternating_split=0.7, alternating_mass=0.9, alternating_period_days=14
    )
    alt = np.flatnonzero(pop.alternating)
    assert alt.size > 100
    rows = np.arange(alt.size)
    a, b = pop.genre_a[alt], pop.genre_b[alt]
    t0 = pop.alternating_taste(0.0)
    t14 = pop.alternating_taste(14.0)
    # the two genres hold at least 0.9 of the taste, split 0.63/0.27 (+ base rest), and swap
    share_a0, share_a14 = t0[rows, a], t14[rows, a]
    np.testing.assert_allclose(t0[rows, a] + t0[rows, b], t14[rows, a] + t14[rows, b], rtol=1e-5)
    assert np.all(np.abs(share_a0 - share_a14) > 0.3)
    np.testing.assert_allclose(t0.sum(axis=1), 1.0, rtol=1e-5)


def test_active_share_matches_activity():
    _, pop = _world(n_users=20_000)
    rng = np.random.default_rng(5)
    hits = np.zeros(pop.n_users)
    for _ in range(50):
        hits[active_users(pop, rng)] += 1
    expected = (1 - np.exp(-pop.activity)).mean()
    # 1M Bernoulli draws: sd of the mean < 0.0005; tolerance 0.003
    assert abs(hits.mean() / 50 - expected) < 0.003


def test_organic_history_follows_relevance():
    # With one user drawn many times, item frequencies track r(u, i) / sum r (chi-square-ish).
    _cat, pop = _world(n_users=1, n_items=50, activity_median=50.0, activity_sigma=0.0, alternating_share=0.0)
    day, user, item = organic_history(
        pop, HistorySection(days=300, streams_per_session=20), np.random.default_rng(3)
    )
    assert (day < 0).all() and (day >= -300).all() and (user == 0).all()
    ((_rows, logits),) = list(pop.relevance_chunks(np.array([0])))
    p = 1 / (1 + np.exp(-logits[0].astype(np.float64)))
    p /= p.sum()
    freq = np.bincount(item, minlength=50) / item.size
    # n ~ 6000 streams: per-item sd <= sqrt(p/n); allow 5 sd + 0.002
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p / item.size) + 0.002)


def test_catalog_prior_and_head():
    cat = make_catalog(
        CatalogSection(n_items=1000, head_fraction=0.2, zipf_exponent=1.0), np.random.default_rng(0)
    )
    assert cat.head.sum() == 200
    assert cat.prior_popularity.sum() == pytest.approx(1.0)
    # Zipf: the top item has rank 1 weight 1/H_1000
    assert cat.prior_popularity.max() == pytest.approx(1 / np.sum(1 / np.arange(1, 1001)))
    assert cat.prior_popularity[cat.head].min() >= cat.prior_popularity[~cat.head].max()


def test_history_by_rejection_follows_relevance():
    # Rejection sampling from uniform proposals is exact: same check as the matrix sampler.
    _cat, pop = _world(n_users=1, n_items=50, activity_median=50.0, activity_sigma=0.0, alternating_share=0.0)
    _, _user, item = organic_history(
        pop,
        HistorySection(days=300, streams_per_session=20, sampler="rejection"),
        np.random.default_rng(4),
    )
    ((_, logits),) = list(pop.relevance_chunks(np.array([0])))
    p = 1 / (1 + np.exp(-logits[0].astype(np.float64)))
    p /= p.sum()
    freq = np.bincount(item, minlength=50) / item.size
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p / item.size) + 0.002)
