"""The user population as arrays: tastes, embeddings, activity, drift, satiation, true relevance.

Row ``u`` of every array is user ``u``. Nothing here loops over users in Python: a round touches
all active users at once, and full user × item work is chunked so memory stays bounded.

True relevance (the probability that a user who examines item ``i`` streams it)::

    r(u, i, t) = sigmoid( b0 + bg · log(G · theta_u,g(i)(t) + f) − bs · s_u,g(i)(t)
                          + be · <U_u, V_i> + bq · q_i )

with genre taste ``theta_u(t)`` (Dirichlet, drifting or alternating), genre satiation ``s``,
user/item embeddings ``U``, ``V``, item quality ``q`` and the ``[relevance]`` weights of the config.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from simulator.catalog.catalog import Catalog
from simulator.config import HistorySection, RelevanceSection, UsersSection
from simulator.scoring import gemm_top_k

#: Elements of one user × item block (16 MB of float32: stays in cache between the GEMM and top-K).
CHUNK_ELEMENTS = 4_000_000


def chunk_rows(n_items: int) -> int:
    """Users per chunk so that one chunk of user × item float32 work stays ~16 MB."""
    return max(1, CHUNK_ELEMENTS // max(1, n_items))


@dataclass(eq=False)
class Population:
    """All users as arrays; the mutable state changes only through :meth:`advance` and :meth:`consume`.

    Attributes
    ----------
    base_taste : ndarray of shape (n_users, n_genres), float32
        Taste at day 0 (rows sum to 1).
    taste : ndarray of shape (n_users, n_genres), float32
        Current genre taste ``theta_u(t)``.
    embedding : ndarray of shape (n_users, d), float32
    activity : ndarray of shape (n_users,), float32
        Mean sessions per day (lognormal across users).
    alternating : ndarray of shape (n_users,), bool
    genre_a, genre_b : ndarray of shape (n_users,), int16
        The two alternating genres (-1 for stable users).
    phase : ndarray of shape (n_users,), int32
        Day offset of each alternating user's square wave.
    satiation : ndarray of shape (n_users, n_genres), float32
    """

    cfg: UsersSection
    rel: RelevanceSection
    catalog: Catalog
    base_taste: np.ndarray
    taste: np.ndarray
    embedding: np.ndarray
    activity: np.ndarray
    alternating: np.ndarray
    genre_a: np.ndarray
    genre_b: np.ndarray
    phase: np.ndarray
    satiation: np.ndarray
    day: float = 0.0

    @property
    def n_users(self) -> int:
        return int(self.taste.shape[0])

    # ---------------------------------------------------------------- dynamics
    def alternating_taste_phase(self, phase: int) -> np.ndarray:
        """Taste of the alternating users in a given phase (0: favour genre a, 1: genre b)."""
        c = self.cfg
        idx = np.flatnonzero(self.alternating)
        share_a = c.alternating_split if phase == 0 else 1 - c.alternating_split
        rest = self.base_taste[idx] * (1 - c.alternating_mass)
        rows = np.arange(idx.size)
        rest[rows, self.genre_a[idx]] += c.alternating_mass * share_a
        rest[rows, self.genre_b[idx]] += c.alternating_mass * (1 - share_a)
        return rest.astype(np.float32)

    def alternating_taste(self, t: float) -> np.ndarray:
        """Taste of the alternating users at day ``t`` (rows of ``self.alternating`` only).

        ``mass`` of the taste sits on genres a and b, split ``split : 1 − split`` and swapped
        every ``period`` days (a square wave, phase per user); the rest keeps the base shape.
        """
        idx = np.flatnonzero(self.alternating)
        favour_b = (np.floor((t + self.phase[idx]) / self.cfg.alternating_period_days) % 2) == 1
        return np.where(favour_b[:, None], self.alternating_taste_phase(1), self.alternating_taste_phase(0))

    def advance(self, t: float, rng: np.random.Generator) -> None:
        """Move tastes and satiation to day ``t`` (called once per day, before the round).

        Stable users take a log-normal random-walk step of size ``drift_sigma``; satiation
        decays by ``exp(-1/tau)``. ``rng`` must be the run's own drift stream (nothing else draws
        from it, so every policy sees the same walk; with ``drift_sigma = 0``, fixed for a run,
        no step is drawn at all).
        """
        c = self.cfg
        stable = ~self.alternating
        if c.drift_sigma > 0:
            step = rng.standard_normal(self.taste.shape, dtype=np.float32)
            walked = self.taste[stable] * np.exp(c.drift_sigma * step[stable])
            self.taste[stable] = walked / walked.sum(axis=1, keepdims=True)
        if self.alternating.any():
            self.taste[self.alternating] = self.alternating_taste(t)
        if c.satiation_strength > 0:
            self.satiation *= np.float32(np.exp(-1.0 / c.satiation_recovery_days))
        self.day = t

    def consume(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray) -> None:
        """Add the round's streams to the users' genre satiation.

        Parameters
        ----------
        users : ndarray of shape (n,), int
        items : ndarray of shape (n, K), int32
        clicks : ndarray of shape (n, K), bool
        """
        if self.cfg.satiation_strength <= 0:
            return
        rows, cols = np.nonzero(clicks)
        genres = self.catalog.genre[items[rows, cols]]
        cell, count = np.unique(users[rows] * np.int64(self.catalog.n_genres) + genres, return_counts=True)
        # unique cells, so a plain fancy-index add is exact (and much faster than np.add.at)
        self.satiation.flat[cell] = self.satiation.flat[cell] + count

    # ---------------------------------------------------------------- relevance
    def genre_logit(self, users: np.ndarray) -> np.ndarray:
        """Per-genre part of the relevance logit, shape (n, n_genres), float32."""
        r = self.rel
        g = self.catalog.n_genres
        out = r.genre_weight * np.log(g * self.taste[users] + r.taste_floor, dtype=np.float32)
        if self.cfg.satiation_strength > 0:
            out -= self.cfg.satiation_strength * self.satiation[users]
        return out.astype(np.float32, copy=False)

    def relevance(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True relevance of given (user, item) pairs.

        Parameters
        ----------
        users : ndarray of shape (n,), int
        items : ndarray of shape (n, K), int

        Returns
        -------
        ndarray of shape (n, K), float32, values in (0, 1)
        """
        cat, r = self.catalog, self.rel
        gl = self.genre_logit(users)
        logit = np.take_along_axis(gl, cat.genre[items].astype(np.intp), axis=1)
        # The embedding term in user chunks: the gathered (n, K, d) item embeddings of a whole
        # round (34 MB at 50k users) would be a fresh mapping each round, whose first touch costs
        # up to ~70 ms on the VMs; chunks stay in the allocator's reused heap. Same values.
        for start in range(0, users.size, _RELEVANCE_CHUNK):
            rows = slice(start, start + _RELEVANCE_CHUNK)
            item_emb = np.take(cat.embedding, items[rows], axis=0)  # ~3x faster than fancy indexing
            logit[rows] += r.embedding_weight * np.einsum("nd,nkd->nk", self.embedding[users[rows]], item_emb)
        logit += r.quality_weight * cat.quality[items] + r.intercept
        return _sigmoid(logit)

    def relevance_chunks(self, users: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(rows, logits)`` blocks of the full user × item relevance *logit* matrix.

        ``logits`` has shape (len(rows), n_items), float32; apply a sigmoid for probabilities.
        The genre term rides in the same GEMM as the embedding term (one-hot genre columns on the
        item side), so a block is one matrix product. At most ~4M floats per block.
        """
        item_side = self._item_side()
        step = chunk_rows(self.catalog.n_items)
        for start in range(0, users.size, step):
            rows = slice(start, min(start + step, users.size))
            block = self._user_side(users[rows]) @ item_side
            block += self._item_bias
            yield rows, block

    def _user_side(self, users: np.ndarray) -> np.ndarray:
        """``[be·U_u , genre logit_u]``, shape (n, d + G), float32: the left factor of the logits."""
        return np.concatenate(
            [self.rel.embedding_weight * self.embedding[users], self.genre_logit(users)], axis=1
        )

    def _item_side(self) -> np.ndarray:
        """``[V ; onehot(genre)]ᵀ``, shape (d + G, n_items), float32 (cached)."""
        if getattr(self, "_item_side_cache", None) is None:
            cat = self.catalog
            onehot = np.zeros((cat.n_items, cat.n_genres), dtype=np.float32)
            onehot[np.arange(cat.n_items), cat.genre] = 1.0
            side = np.concatenate([cat.embedding, onehot], axis=1).T
            self._item_side_cache = np.ascontiguousarray(side, dtype=np.float32)
            self._item_bias = (self.rel.quality_weight * cat.quality + self.rel.intercept).astype(np.float32)
        return self._item_side_cache

    def top_k(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Items of highest true relevance per user, best first (the oracle's slate).

        Returns
        -------
        items : ndarray of shape (n, k), int32
        relevance : ndarray of shape (n, k), float32
        """
        item_side = self._item_side()
        items, logits = gemm_top_k(
            lambda rows: self._user_side(users[rows]), item_side, users.size, k, self._item_bias
        )
        return items, _sigmoid(logits)


#: Users per chunk of :meth:`Population.relevance` (4096 × K=10 × d=16 float32: 2.6 MB).
_RELEVANCE_CHUNK = 4096


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, float32, stable for any input (scipy's ``expit``)."""
    return expit(np.asarray(x, dtype=np.float32))


def make_population(
    cfg: UsersSection, rel: RelevanceSection, catalog: Catalog, rng: np.random.Generator
) -> Population:
    """Draw the users: Dirichlet tastes, embeddings, lognormal activity, alternating pairs."""
    n, g = cfg.n_users, catalog.n_genres
    base = rng.dirichlet(np.full(g, cfg.taste_concentration), size=n)
    base = np.maximum(base, 1e-12)
    base /= base.sum(axis=1, keepdims=True)
    alternating = rng.random(n) < cfg.alternating_share if g >= 2 else np.zeros(n, bool)
    pair = np.argsort(rng.random((n, g)), axis=1)[:, :2] if g >= 2 else np.zeros((n, 2), int)
    genre_a = np.where(alternating, pair[:, 0], -1).astype(np.int16)
    genre_b = np.where(alternating, pair[:, 1], -1).astype(np.int16)
    phase = rng.integers(0, 2 * cfg.alternating_period_days, n).astype(np.int32)
    d = catalog.embedding.shape[1]
    emb = base @ catalog.genre_centres + rng.standard_normal((n, d)) * (
        cfg.embedding_taste_noise / np.sqrt(d)
    )
    activity = cfg.activity_median * np.exp(cfg.activity_sigma * rng.standard_normal(n))
    pop = Population(
        cfg=cfg,
        rel=rel,
        catalog=catalog,
        base_taste=base.astype(np.float32),
        taste=base.astype(np.float32),
        embedding=emb.astype(np.float32),
        activity=activity.astype(np.float32),
        alternating=alternating,
        genre_a=genre_a,
        genre_b=genre_b,
        phase=phase,
        satiation=np.zeros((n, g), dtype=np.float32),
    )
    if alternating.any():
        pop.taste[alternating] = pop.alternating_taste(0.0)
        # the embedding follows the long-run (50/50) taste of alternating users
        mean_taste = pop.base_taste.copy()
        mean_taste[alternating] *= 1 - cfg.alternating_mass
        idx = np.flatnonzero(alternating)
        mean_taste[idx, genre_a[idx]] += cfg.alternating_mass / 2
        mean_taste[idx, genre_b[idx]] += cfg.alternating_mass / 2
        pop.embedding[idx] = (
            mean_taste[idx] @ catalog.genre_centres
            + rng.standard_normal((idx.size, d)) * (cfg.embedding_taste_noise / np.sqrt(d))
        ).astype(np.float32)
    return pop


def active_users(pop: Population, rng: np.random.Generator) -> np.ndarray:
    """Users with a session this round: ``P(active) = 1 − exp(−activity)`` (Poisson ≥ 1).

    Always draws one uniform per user, so the stream stays aligned across policies.

    Returns
    -------
    ndarray of shape (n_active,), int64, sorted ascending
    """
    u = rng.random(pop.n_users)
    return np.flatnonzero(u < -np.expm1(-pop.activity.astype(np.float64)))


def organic_history(
    pop: Population, cfg: HistorySection, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pre-system streams for days ``-cfg.days .. -1``: items drawn ∝ ``r(u,i)·prior_i^e``.

    Each user is active on a day with ``P = 1 − exp(−activity)`` and then streams
    ``Poisson(streams_per_session)`` items. Stable users keep their base taste, so all their
    streams come from one relevance row; alternating users follow their square wave, so their
    streams come from two rows (one per phase) and ``days`` spanning a full period covers both.
    One full relevance pass per (user, phase) — not per day — keeps this cheap.

    Returns
    -------
    day : ndarray of shape (n_streams,), int32 (negative)
    user : ndarray of shape (n_streams,), int32
    item : ndarray of shape (n_streams,), int32
    """
    n, d = pop.n_users, cfg.days
    empty = np.empty(0, dtype=np.int32)
    if d == 0:
        return empty, empty, empty
    days = np.arange(-d, 0)
    p_active = -np.expm1(-pop.activity.astype(np.float64))
    counts = (rng.random((n, d)) < p_active[:, None]) * rng.poisson(cfg.streams_per_session, (n, d))
    # phase[u, j] = 1 when an alternating user favours genre b on day j (else 0)
    period = pop.cfg.alternating_period_days
    phase = np.zeros((n, d), dtype=np.int8)
    alt = np.flatnonzero(pop.alternating)
    phase[alt] = (np.floor((days[None, :] + pop.phase[alt, None]) / period) % 2).astype(np.int8)

    prior_w = (pop.catalog.prior_popularity**cfg.popularity_exponent).astype(np.float32)
    saved = pop.taste.copy()
    out_day, out_user, out_item = [], [], []
    for ph in (0, 1):
        per_user = np.where(phase == ph, counts, 0)
        users = np.flatnonzero(per_user.sum(axis=1) > 0)
        if users.size == 0:
            continue
        if alt.size:
            pop.taste[alt] = pop.alternating_taste_phase(ph)
        reps = per_user[users].sum(axis=1)
        sampler = cfg.sampler
        if sampler == "auto":
            sampler = "matrix" if pop.catalog.n_items <= 20_000 else "rejection"
        if sampler == "rejection":
            out_item.append(_rejection_sample(pop, np.repeat(users, reps), prior_w, rng))
        else:
            for rows, logits in pop.relevance_chunks(users):
                out_item.append(_sample_rows(_sigmoid(logits) * prior_w, reps[rows], rng))
        u_idx, j_idx = np.nonzero(per_user[users])  # row-major: user, then day
        c = per_user[users][u_idx, j_idx]
        out_user.append(np.repeat(users[u_idx], c).astype(np.int32))
        out_day.append(np.repeat(days[j_idx], c).astype(np.int32))
    pop.taste[:] = saved
    if not out_item:
        return empty, empty, empty
    return np.concatenate(out_day), np.concatenate(out_user), np.concatenate(out_item)


def _rejection_sample(
    pop: Population,
    users: np.ndarray,
    weight: np.ndarray,
    rng: np.random.Generator,
    batch: int = 32,
) -> np.ndarray:
    """One item per entry of ``users``, drawn exactly ∝ ``r(u, i)·weight_i`` by rejection.

    Proposals are uniform items, accepted with probability ``r·w / max(w)`` (``r <= 1``), so
    accepted items follow the target exactly (von Neumann 1951); ``batch`` proposals per pending
    draw at a time. Cost O(draws · batch / acceptance rate), independent of the catalog size.

    Returns
    -------
    ndarray of shape (len(users),), int32
    """
    n_items = pop.catalog.n_items
    w = (weight / weight.max()).astype(np.float32)
    out = np.full(users.size, -1, dtype=np.int32)
    pending = np.arange(users.size)
    step = max(1, CHUNK_ELEMENTS // (batch * pop.catalog.embedding.shape[1]))
    while pending.size:
        still = []
        for start in range(0, pending.size, step):
            idx = pending[start : start + step]
            props = rng.integers(0, n_items, (idx.size, batch), dtype=np.int32)
            accept = rng.random(props.shape, dtype=np.float32) < pop.relevance(users[idx], props) * w[props]
            hit = accept.any(axis=1)
            first = np.argmax(accept, axis=1)
            out[idx[hit]] = props[hit, first[hit]]
            still.append(idx[~hit])
        pending = np.concatenate(still)
    return out


def _sample_rows(weights: np.ndarray, reps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw ``reps[r]`` column indices from row ``r`` of ``weights`` (with replacement)."""
    cdf = np.cumsum(weights, axis=1, dtype=np.float32)
    cdf /= cdf[:, -1:]
    rows = np.repeat(np.arange(weights.shape[0]), reps)
    u = rng.random(rows.size)
    # Offset each row by its index so one flat searchsorted serves all rows (float64: exact).
    flat = (cdf + np.arange(weights.shape[0], dtype=np.float64)[:, None]).ravel()
    pos = np.searchsorted(flat, rows + u, side="right") - rows * weights.shape[1]
    return np.minimum(pos, weights.shape[1] - 1).astype(np.int32)
