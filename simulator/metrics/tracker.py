"""Incremental, windowed metric state of one run: updated once per round, read by reporters.

Exposure metrics (``gini``, ``coverage``, ``cdi``, ``long_tail_share``, ``popularity_bias``) use
the last ``window_days`` rounds; per-user diversity (``entropy_shown``, ``entropy_consumed``,
``miscalibration``, ``alt_genre_loss``, ``homogenization``) the last ``user_window_days``. Window
sums are kept incrementally (add the new round, subtract the one that leaves), so a round costs
O(impressions), not O(window); item reach (distinct users per item, for ``cdi``) is kept the same
way from the window's sorted (user, item) keys, at O(distinct keys in the window) per round.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numba import njit

from simulator.catalog.catalog import Catalog
from simulator.clicks.models import Feedback
from simulator.config import MetricsSection
from simulator.errors import ValidationError
from simulator.metrics import functions as F
from simulator.policies.base import Slate
from simulator.users.population import Population

#: Largest window total with tabulated ``p ln p`` for the entropies (a 2 MiB table); rows
#: with larger totals are computed directly, to the same bits.
_PLOGP_MAX = 511

#: Stable metric names (DESIGN.md §5) plus recloop's additions, in report order.
METRIC_NAMES = (
    "gini",
    "coverage",
    "cdi",
    "long_tail_share",
    "popularity_bias",
    "entropy_shown",
    "entropy_consumed",
    "ild",
    "homogenization",
    "miscalibration",
    "ctr",
    "clicks_per_user",
    "utility",
    "regret",
    "alt_genre_loss",
    "n_active",
)


@dataclass(frozen=True)
class _UserRound:
    users: np.ndarray  # (n,) active users of the round
    genres: np.ndarray  # (n, K) uint8 genre of each shown item
    clicks: np.ndarray  # (n, K) bool, own copy


class MetricTracker:
    """Windowed metric state for one (policy, seed) run.

    Parameters
    ----------
    cfg : MetricsSection
    catalog : Catalog
    population : Population
    tracked : ndarray of shape (S,), int
        Users whose trajectories are recorded (and whose pairs give ``homogenization``).
    """

    def __init__(
        self, cfg: MetricsSection, catalog: Catalog, population: Population, tracked: np.ndarray
    ) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.pop = population
        self.tracked = np.asarray(tracked, dtype=np.int64)
        n_items, n_users, g = catalog.n_items, population.n_users, catalog.n_genres
        self.exposure = np.zeros(n_items, dtype=np.int64)  # window sum
        self._exposure_days: deque[np.ndarray] = deque()  # per-round exposure counts
        # reach: the window's distinct keys user·I + item (sorted) with the last round each was
        # shown, in the first _n_keys slots of a buffer pair swapped every round
        self._round = 0
        self.reach = np.zeros(n_items, dtype=np.int64)  # distinct users per item in the window
        self._keys = np.empty(0, dtype=np.int64)
        self._key_last = np.empty(0, dtype=np.int32)
        self._spare_keys, self._spare_last = self._keys, self._key_last
        self._n_keys = 0
        self._active_days: deque[np.ndarray] = deque()
        self._active_count = np.zeros(n_users, dtype=np.int32)  # active days in the window
        self._n_window_users = 0
        self.shown = np.zeros((n_users, g), dtype=np.int32)  # user-window sums
        self.consumed = np.zeros((n_users, g), dtype=np.int32)
        self._user_days: deque[_UserRound] = deque()
        # tracked users' consumed items (user-window), item-major so that one item's column of
        # users is contiguous, and the pairwise intersection sizes kept with it (homogenization)
        self._tracked_pos = np.full(n_users, -1, dtype=np.int64)
        self._tracked_pos[self.tracked] = np.arange(self.tracked.size)
        s = self.tracked.size
        self._tracked_items = np.zeros((n_items, s), dtype=np.int32)
        self._intersections = np.zeros((s, s), dtype=np.int64)  # diagonal: set sizes
        self._tracked_days: deque[tuple[np.ndarray, np.ndarray]] = deque()
        # catalog constants, computed once
        if not np.isfinite(catalog.embedding).all():
            raise ValidationError("catalog.embedding must be finite (ild)")
        self._unit, self._unit_nonzero = F._unit_rows(catalog.embedding)
        self._plogp: np.ndarray | None = None  # p ln p of c / T, built on the first round
        prior = np.asarray(catalog.prior_popularity, dtype=np.float64)
        self._prior_ranks = F._average_ranks(prior)
        self._prior_constant = bool(prior.min() == prior.max())

    @property
    def tracked_consumed(self) -> np.ndarray:
        """Tracked users' consumed-item counts in the user window, shape (S, n_items), int32
        (a read-only view of the item-major store)."""
        view = self._tracked_items.T
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ update
    def update(
        self,
        users: np.ndarray,
        slate: Slate,
        feedback: Feedback,
        oracle_utility: np.ndarray | None = None,
        oracle_rows: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Fold one round in and return this round's metric values (name → float).

        Parameters
        ----------
        users : ndarray of shape (n,), int
            Active users of the round, distinct.
        slate : Slate
            Shown slates, items of shape (n, K) with ``K >= 2``.
        feedback : Feedback
            Clicks and exact click probabilities, shape (n, K).
        oracle_utility : ndarray of shape (m,), float, optional
            Expected clicks of the oracle slate for the active users ``users[oracle_rows]``
            (a uniform sample of them when the population is large), for ``regret``.
        oracle_rows : ndarray of shape (m,), int, optional

        Raises
        ------
        ValidationError
            If ``K < 2`` (no pair for ``ild``), an item id is outside the catalog or a user id
            outside the population (checked before any state changes: the kernels index with
            them unchecked).
        """
        items = slate.items
        clicks = feedback.clicks
        _check_ids(users, items, self.pop.n_users, self.catalog.n_items)
        if self._plogp is None:  # a user's window total is at most K · user_window_days
            self._plogp = F._plogp_table(min(items.shape[1] * self.cfg.user_window_days, _PLOGP_MAX))
        self._slide_exposure(users, items)
        self._slide_users(users, items, clicks)
        self._slide_tracked(users, items, clicks)
        self._round += 1

        n = users.size
        out: dict[str, float] = {"n_active": float(n)}
        out.update(self._exposure_metrics())
        out.update(self._user_metrics(users))
        utility = feedback.click_probability.sum(axis=1, dtype=np.float64)
        ild = F._ild_from_unit(items, self._unit, self._unit_nonzero, F.DEFAULT_CHUNK_SIZE)
        out["ild"] = float(np.mean(ild)) if n else np.nan
        out["ctr"] = float(clicks.mean()) if n else np.nan
        out["clicks_per_user"] = float(clicks.sum() / n) if n else np.nan
        out["utility"] = float(utility.mean()) if n else np.nan
        if oracle_utility is not None and n:
            out["regret"] = float(np.mean(oracle_utility - utility[oracle_rows]))
        return out

    def _slide_exposure(self, users: np.ndarray, items: np.ndarray) -> None:
        day = np.bincount(items.ravel(), minlength=self.catalog.n_items)
        self.exposure += day
        self._exposure_days.append(day)
        self._slide_reach(users, items)
        self._active_days.append(users)
        self._active_count[users] += 1  # users of one round are distinct
        self._n_window_users += int(np.count_nonzero(self._active_count[users] == 1))
        while len(self._exposure_days) > self.cfg.window_days:
            self.exposure -= self._exposure_days.popleft()
            old = self._active_days.popleft()
            self._active_count[old] -= 1
            self._n_window_users -= int(np.count_nonzero(self._active_count[old] == 0))

    def _slide_reach(self, users: np.ndarray, items: np.ndarray) -> None:
        """Merge the round's (user, item) keys into the window's sorted keys and drop the keys
        last shown ``window_days`` rounds ago, updating ``reach`` on each key that enters or
        leaves. Only the last round of a key is kept (not one entry per round), so memory is
        O(distinct keys in the window) and no round's keys need storing for its expiry."""
        n_items = self.catalog.n_items
        if users.size > 1 and not bool(np.all(users[1:] > users[:-1])):
            order = np.argsort(users, kind="stable")  # the merge needs rows in key order
            users, items = users[order], items[order]
            if bool(np.any(users[1:] == users[:-1])):  # not expected: one key per row instead
                k = items.shape[1]
                keys = _unique(np.repeat(users.astype(np.int64), k) * n_items + items.ravel())
                users, items = keys // n_items, (keys % n_items)[:, None]
        need = self._n_keys + items.size
        if self._spare_keys.size < need:  # grow geometrically; the pair stays O(window keys)
            size = max(need + need // 4, 1024)
            self._spare_keys = np.empty(size, dtype=np.int64)
            self._spare_last = np.empty(size, dtype=np.int32)
        self._n_keys = _merge_reach(
            self._keys,
            self._key_last,
            self._n_keys,
            users,
            items,
            n_items,
            self._round,
            self._round - self.cfg.window_days,
            self.reach,
            self._spare_keys,
            self._spare_last,
        )
        self._keys, self._spare_keys = self._spare_keys, self._keys
        self._key_last, self._spare_last = self._spare_last, self._key_last

    def _slide_users(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray) -> None:
        genres = np.empty(items.shape, dtype=np.uint8)  # n_genres <= 255 (config)
        clicks = np.array(clicks, dtype=np.bool_)  # own copy: kept for the expiry
        _add_genre_counts(self.shown, self.consumed, users, items, clicks, self.catalog.genre, genres)
        self._user_days.append(_UserRound(users, genres, clicks))
        while len(self._user_days) > self.cfg.user_window_days:
            old = self._user_days.popleft()
            _remove_genre_counts(self.shown, self.consumed, old.users, old.genres, old.clicks)

    def _slide_tracked(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray) -> None:
        pos = self._tracked_pos[users]
        r, k = np.nonzero(clicks & (pos >= 0)[:, None])
        rows, its = pos[r], items[r, k].astype(np.int64)
        _toggle_tracked(self._tracked_items, self._intersections, rows, its, 1)
        self._tracked_days.append((rows, its))
        while len(self._tracked_days) > self.cfg.user_window_days:
            orow, oit = self._tracked_days.popleft()
            _toggle_tracked(self._tracked_items, self._intersections, orow, oit, -1)

    # ------------------------------------------------------------------ read
    def _exposure_metrics(self) -> dict[str, float]:
        counts = self.exposure
        return {
            "gini": F.gini(counts),
            "coverage": F.coverage_from_counts(counts),
            "cdi": F.catalog_diversity_index(self.reach, self._n_window_users, self.cfg.cdi_threshold),
            "long_tail_share": F.long_tail_share(counts, self.catalog.head),
            "popularity_bias": self._popularity_bias(counts),
        }

    def _popularity_bias(self, counts: np.ndarray) -> float:
        """:func:`F.popularity_bias` of ``counts`` against the prior, with the prior's ranks
        computed once."""
        if self._prior_constant or counts.min() == counts.max():
            return float("nan")
        return F._rank_correlation(F._average_ranks(counts), self._prior_ranks)

    def _user_metrics(self, users: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        if users.size == 0:
            return dict.fromkeys(("entropy_shown", "entropy_consumed", "miscalibration"), np.nan) | {
                "homogenization": np.nan,
                "alt_genre_loss": self.alt_genre_loss(),
            }
        alpha = 0.01  # F.miscalibration's default smoothing
        log_g = math.log(self.catalog.n_genres)
        h_shown, h_consumed, kl, bad = F._user_diversity_rows(
            self.shown,
            self.consumed,
            self.pop.taste,
            users,
            self._plogp,
            log_g,
            1.0 - alpha,
            alpha,
            F._SUM_TOL,
        )
        if bad >= 0:  # let the public function raise its error for the invalid taste row
            shown = self.shown[users]
            total = shown.sum(axis=1, keepdims=True)
            q = np.divide(shown, total, out=np.zeros(shown.shape), where=total > 0)
            F.miscalibration(self.pop.taste[users].astype(np.float64), q, alpha)
        out["entropy_shown"] = _nanmean(h_shown)
        out["entropy_consumed"] = _nanmean(h_consumed)
        out["miscalibration"] = _nanmean(kl)
        out["homogenization"] = self._homogenization()
        out["alt_genre_loss"] = self.alt_genre_loss()
        return out

    def _homogenization(self) -> float:
        """:func:`F.mean_pairwise_jaccard` of the tracked users' consumed sets, from the kept
        intersection sizes: the same pairs in the same order, so the same float."""
        values, n = _jaccard_upper(self._intersections)
        return float(values[:n].mean()) if n else float("nan")

    def alt_genre_loss(self) -> float:
        """Share of alternating-interest users shown < ``genre_loss_threshold`` of one of their
        two genres over the user window (users shown at least one slate in the window)."""
        idx = np.flatnonzero(self.pop.alternating)
        if idx.size == 0:
            return np.nan
        shown = self.shown[idx]
        total = shown.sum(axis=1)
        seen = total > 0
        if not seen.any():
            return np.nan
        rows = np.arange(idx.size)
        a = shown[rows, self.pop.genre_a[idx]]
        b = shown[rows, self.pop.genre_b[idx]]
        lost = np.minimum(a, b) < self.cfg.genre_loss_threshold * total
        return float(lost[seen].mean())

    def user_snapshot(self) -> dict[str, np.ndarray]:
        """Tracked users' genre shares in the user window, arrays of shape (S, G), float32, and
        their normalised genre entropies (shown, consumed), arrays of shape (S,), float32."""
        u = self.tracked
        shown, consumed = self.shown[u].astype(np.float64), self.consumed[u].astype(np.float64)
        st, ct = shown.sum(1, keepdims=True), consumed.sum(1, keepdims=True)
        nan = np.full(shown.shape, np.nan)
        return {
            "entropy_shown": F.normalized_entropy(self.shown[u]).astype(np.float32),
            "entropy_consumed": F.normalized_entropy(self.consumed[u]).astype(np.float32),
            "taste": self.pop.taste[u].astype(np.float32),
            "shown_share": np.divide(shown, st, out=nan.copy(), where=st > 0).astype(np.float32),
            "consumed_share": np.divide(consumed, ct, out=nan.copy(), where=ct > 0).astype(np.float32),
        }


def _check_ids(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> None:
    if items.ndim != 2 or items.shape[1] < 2:
        raise ValidationError(f"items must have K >= 2 columns (pairs); got shape {items.shape}")
    if items.shape[0] != users.shape[0]:
        raise ValidationError(f"items must have one row per user ({users.shape[0]}); got {items.shape[0]}")
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ValidationError(
            f"items must be ids in [0, {n_items}); got min {items.min().item()} and max {items.max().item()}"
        )
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValidationError(
            f"users must be ids in [0, {n_users}); got min {users.min().item()} and max {users.max().item()}"
        )


@njit(cache=True, nogil=True)
def _merge_reach(keys, last, n_old, users, items, n_items, today, expired, reach, out_keys, out_last):
    """One pass over the window's sorted keys ``keys[:n_old]`` and the round's keys
    ``users[r]·n_items + items[r, j]`` (rows in ascending user order; each row's items are
    sorted here), writing the new window into ``out_*`` and returning its size. A key shown
    this round gets ``last = today``; an old key with ``last <= expired`` is dropped. ``reach``
    of the key's item gains 1 for a new key and loses 1 for a dropped one."""
    k = items.shape[1]
    row = np.empty(k, dtype=np.int64)
    i = 0
    o = 0
    for r in range(users.shape[0]):
        for t in range(k):  # sort the row's K items: place each at its rank (no branches)
            v = items[r, t]
            rank = 0
            for s in range(t):
                rank += items[r, s] <= v
            for s in range(t + 1, k):
                rank += items[r, s] < v
            row[rank] = v
        base = np.int64(users[r]) * n_items
        prev = np.int64(-1)
        for t in range(k):
            key = base + row[t]
            if key == prev:  # an item twice in one slate: one user, one key
                continue
            prev = key
            while i < n_old and keys[i] < key:
                o = _carry_old_key(keys, last, i, expired, n_items, reach, out_keys, out_last, o)
                i += 1
            if i < n_old and keys[i] == key:
                i += 1
            else:
                reach[row[t]] += 1
            out_keys[o] = key
            out_last[o] = today
            o += 1
    while i < n_old:
        o = _carry_old_key(keys, last, i, expired, n_items, reach, out_keys, out_last, o)
        i += 1
    return o


@njit(inline="always")
def _carry_old_key(keys, last, i, expired, n_items, reach, out_keys, out_last, o):  # pragma: no cover
    # an old key not shown this round: kept unless expired (then its item loses one user)
    if last[i] > expired:
        out_keys[o] = keys[i]
        out_last[o] = last[i]
        return o + 1
    reach[keys[i] % n_items] -= 1
    return o


@njit(cache=True, nogil=True)
def _jaccard_upper(inter):  # pragma: no cover - compiled
    """Jaccard similarities of the pairs ``u < v`` in row-major order (as ``np.triu_indices``),
    pairs of two empty sets skipped: ``|A ∩ B| / (|A| + |B| - |A ∩ B|)`` from the integer
    intersection matrix (set sizes on the diagonal). Returns the values buffer and its length."""
    s = inter.shape[0]
    out = np.empty(max(s * (s - 1) // 2, 1))
    n = 0
    for u in range(s):
        for v in range(u + 1, s):
            union = inter[u, u] + inter[v, v] - inter[u, v]
            if union > 0:
                out[n] = np.float64(inter[u, v]) / np.float64(union)
                n += 1
    return out, n


@njit(cache=True, nogil=True)
def _add_genre_counts(shown, consumed, users, items, clicks, genre, genres_out):  # pragma: no cover
    # one pass instead of two (n·G) bincounts, their int32 copies and two gather-add-scatters
    for r in range(users.shape[0]):
        u = users[r]
        for t in range(items.shape[1]):
            g = genre[items[r, t]]
            genres_out[r, t] = g
            shown[u, g] += 1
            if clicks[r, t]:
                consumed[u, g] += 1


@njit(cache=True, nogil=True)
def _remove_genre_counts(shown, consumed, users, genres, clicks):  # pragma: no cover
    for r in range(users.shape[0]):
        u = users[r]
        for t in range(genres.shape[1]):
            g = genres[r, t]
            shown[u, g] -= 1
            if clicks[r, t]:
                consumed[u, g] -= 1


@njit(cache=True, nogil=True)
def _toggle_tracked(counts, inter, rows, items, step):  # pragma: no cover
    """Add (``step = 1``) or remove (-1) one stream per (row, item) of tracked users' item-major
    counts; when an item enters or leaves a user's set, update the intersection sizes with every
    tracked user holding it (its contiguous column) and the user's set size on the diagonal."""
    s = counts.shape[1]
    for e in range(rows.shape[0]):
        u = rows[e]
        col = counts[items[e]]
        if step < 0:
            col[u] -= 1
        if col[u] == 0:  # entering (before the add) or leaving (after the removal)
            for v in range(s):
                if v != u and col[v] > 0:
                    inter[u, v] += step
                    inter[v, u] += step
            inter[u, u] += step
        if step > 0:
            col[u] += 1


def _unique(x: np.ndarray) -> np.ndarray:
    """Sorted unique values (sort-based: much faster than numpy 2's hash ``unique`` here)."""
    s = np.sort(x)
    keep = np.empty(s.size, dtype=bool)
    keep[:1] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else float("nan")
