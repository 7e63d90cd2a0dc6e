"""Incremental, windowed metric state of one run: updated once per round, read by reporters.

Exposure metrics (``gini``, ``coverage``, ``cdi``, ``long_tail_share``, ``popularity_bias``) use
the last ``window_days`` rounds; per-user diversity (``entropy_shown``, ``entropy_consumed``,
``miscalibration``, ``alt_genre_loss``, ``homogenization``) the last ``user_window_days``. Window
sums are kept incrementally (add the new round, subtract the one that leaves), so a round costs
O(impressions), not O(window).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from simulator.catalog.catalog import Catalog
from simulator.clicks.models import Feedback
from simulator.config import MetricsSection
from simulator.metrics import functions as F
from simulator.policies.base import Slate
from simulator.users.population import Population

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
    shown: np.ndarray  # (n, G) uint8 genre counts shown
    consumed: np.ndarray  # (n, G) uint8 genre counts streamed


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
        self._exposure_days: deque[np.ndarray] = deque()  # per-round item ids shown
        self._reach_days: deque[np.ndarray] = deque()  # per-round (user·I + item) keys
        self._active_days: deque[np.ndarray] = deque()
        self._active_count = np.zeros(n_users, dtype=np.int32)  # active days in the window
        self.shown = np.zeros((n_users, g), dtype=np.int32)  # user-window sums
        self.consumed = np.zeros((n_users, g), dtype=np.int32)
        self._user_days: deque[_UserRound] = deque()
        # tracked users' consumed items (user-window), for Jaccard homogenization
        self._tracked_pos = np.full(n_users, -1, dtype=np.int64)
        self._tracked_pos[self.tracked] = np.arange(self.tracked.size)
        self.tracked_consumed = np.zeros((self.tracked.size, n_items), dtype=np.int32)
        self._tracked_days: deque[tuple[np.ndarray, np.ndarray]] = deque()

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
            Active users of the round.
        slate : Slate
            Shown slates, items of shape (n, K).
        feedback : Feedback
            Clicks and exact click probabilities, shape (n, K).
        oracle_utility : ndarray of shape (m,), float, optional
            Expected clicks of the oracle slate for the active users ``users[oracle_rows]``
            (a uniform sample of them when the population is large), for ``regret``.
        oracle_rows : ndarray of shape (m,), int, optional
        """
        items = slate.items
        clicks = feedback.clicks
        self._slide_exposure(users, items)
        self._slide_users(users, items, clicks)
        self._slide_tracked(users, items, clicks)

        n = users.size
        out: dict[str, float] = {"n_active": float(n)}
        out.update(self._exposure_metrics())
        out.update(self._user_metrics(users))
        utility = feedback.click_probability.sum(axis=1, dtype=np.float64)
        out["ild"] = float(np.mean(F.intra_list_diversity(items, self.catalog.embedding))) if n else np.nan
        out["ctr"] = float(clicks.mean()) if n else np.nan
        out["clicks_per_user"] = float(clicks.sum() / n) if n else np.nan
        out["utility"] = float(utility.mean()) if n else np.nan
        if oracle_utility is not None and n:
            out["regret"] = float(np.mean(oracle_utility - utility[oracle_rows]))
        return out

    def _slide_exposure(self, users: np.ndarray, items: np.ndarray) -> None:
        flat = items.ravel()
        self.exposure += np.bincount(flat, minlength=self.catalog.n_items)
        self._exposure_days.append(flat)
        self._reach_days.append(
            (np.repeat(users.astype(np.int64), items.shape[1]) * self.catalog.n_items) + flat
        )
        self._active_days.append(users)
        self._active_count[users] += 1  # users of one round are distinct
        while len(self._exposure_days) > self.cfg.window_days:
            old = self._exposure_days.popleft()
            self.exposure -= np.bincount(old, minlength=self.catalog.n_items)
            self._reach_days.popleft()
            self._active_count[self._active_days.popleft()] -= 1

    def _slide_users(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray) -> None:
        g = self.catalog.n_genres
        genres = self.catalog.genre[items]  # (n, K)
        # (user row, genre) counts as one bincount over the flattened cell index (np.add.at is slower)
        cell = (np.arange(users.size)[:, None] * g + genres).ravel()
        shape = (users.size, g)
        shown = np.bincount(cell, minlength=users.size * g).reshape(shape).astype(np.int32)
        consumed = np.bincount(cell[clicks.ravel()], minlength=users.size * g).reshape(shape).astype(np.int32)
        self.shown[users] += shown
        self.consumed[users] += consumed
        self._user_days.append(_UserRound(users, shown, consumed))
        while len(self._user_days) > self.cfg.user_window_days:
            old = self._user_days.popleft()
            self.shown[old.users] -= old.shown
            self.consumed[old.users] -= old.consumed

    def _slide_tracked(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray) -> None:
        pos = self._tracked_pos[users]
        r, k = np.nonzero(clicks & (pos >= 0)[:, None])
        rows, its = pos[r], items[r, k]
        np.add.at(self.tracked_consumed, (rows, its), 1)
        self._tracked_days.append((rows, its))
        while len(self._tracked_days) > self.cfg.user_window_days:
            orow, oit = self._tracked_days.popleft()
            np.add.at(self.tracked_consumed, (orow, oit), -1)

    # ------------------------------------------------------------------ read
    def _exposure_metrics(self) -> dict[str, float]:
        counts = self.exposure
        reach_keys = _unique(np.concatenate(self._reach_days))
        reach = np.bincount(reach_keys % self.catalog.n_items, minlength=self.catalog.n_items)
        n_window_users = int(np.count_nonzero(self._active_count))
        return {
            "gini": F.gini(counts),
            "coverage": F.coverage_from_counts(counts),
            "cdi": F.catalog_diversity_index(reach, n_window_users, self.cfg.cdi_threshold),
            "long_tail_share": F.long_tail_share(counts, self.catalog.head),
            "popularity_bias": F.popularity_bias(counts, self.catalog.prior_popularity),
        }

    def _user_metrics(self, users: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        if users.size == 0:
            return dict.fromkeys(("entropy_shown", "entropy_consumed", "miscalibration"), np.nan) | {
                "homogenization": np.nan,
                "alt_genre_loss": self.alt_genre_loss(),
            }
        shown = self.shown[users]
        out["entropy_shown"] = _nanmean(F.normalized_entropy(shown))
        out["entropy_consumed"] = _nanmean(F.normalized_entropy(self.consumed[users]))
        total = shown.sum(axis=1, keepdims=True)
        q = np.divide(shown, total, out=np.zeros(shown.shape), where=total > 0)
        out["miscalibration"] = _nanmean(F.miscalibration(self.pop.taste[users].astype(np.float64), q))
        consumed = self.tracked_consumed > 0
        # items nobody tracked consumed change no intersection or union: drop their columns
        out["homogenization"] = F.mean_pairwise_jaccard(consumed[:, consumed.any(axis=0)])
        out["alt_genre_loss"] = self.alt_genre_loss()
        return out

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
