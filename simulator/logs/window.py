"""The training window: the recent log a policy re-fits on (plus the organic pre-system streams).

Kept in memory as one chunk per day, so dropping the oldest day is O(1) and a retrain reads only
the window (its cost grows with the window, not with the length of the run). Streams (clicks) are
always kept; shown-not-clicked impressions only when a policy needs them (IPW, logistic models).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class DayChunk:
    """One day of data. Arrays have shape (m,), one row per stream or impression."""

    day: int
    user: np.ndarray  # int32
    item: np.ndarray  # int32
    click: np.ndarray  # bool
    position: np.ndarray  # int16 (-1 for organic streams)
    pscore: np.ndarray  # float32 (NaN for organic streams)
    examination: np.ndarray  # float32 (NaN for organic streams)


class LogWindow:
    """Rolling window of the last ``days`` days of streams (and optionally impressions).

    Parameters
    ----------
    days : int
        Window length in days; data older than ``today - days`` is dropped.
    keep_impressions : bool
        Also keep shown-not-clicked impressions (needed by IPW and logistic models).
    """

    def __init__(self, days: int, keep_impressions: bool = False) -> None:
        self.days = days
        self.keep_impressions = keep_impressions
        self._chunks: deque[DayChunk] = deque()
        # stream_counts caches: per orientation (False: users × items, True: its transpose) the
        # summed counts, and the day matrices (by chunk identity) of the days summed into them
        self._sums: dict[bool, _CountSum] = {}
        self._days: dict[int, tuple[DayChunk, sp.csr_matrix]] = {}
        self._day_shape: tuple[int, int] | None = None

    def add_organic(self, day: np.ndarray, user: np.ndarray, item: np.ndarray) -> None:
        """Add pre-system streams (organic: no position, no propensity)."""
        for d in np.unique(day):
            sel = day == d
            m = int(sel.sum())
            self._chunks.append(
                DayChunk(
                    int(d),
                    user[sel].astype(np.int32),
                    item[sel].astype(np.int32),
                    np.ones(m, dtype=bool),
                    np.full(m, -1, dtype=np.int16),
                    np.full(m, np.nan, dtype=np.float32),
                    np.full(m, np.nan, dtype=np.float32),
                )
            )

    def add_round(
        self,
        day: int,
        users: np.ndarray,
        items: np.ndarray,
        clicks: np.ndarray,
        pscore: np.ndarray,
        examination: np.ndarray,
    ) -> None:
        """Append one round: ``users`` (n,), the other arrays (n, K)."""
        k = items.shape[1]
        rows = np.repeat(users.astype(np.int32), k)
        pos = np.tile(np.arange(k, dtype=np.int16), users.size)
        sel = slice(None) if self.keep_impressions else clicks.ravel()
        self._chunks.append(
            DayChunk(
                day,
                rows[sel],
                items.ravel()[sel].astype(np.int32),
                clicks.ravel()[sel],
                pos[sel],
                pscore.ravel()[sel].astype(np.float32),
                examination.ravel()[sel].astype(np.float32),
            )
        )

    def advance(self, today: int) -> None:
        """Drop days older than ``today - days``."""
        while self._chunks and self._chunks[0].day < today - self.days:
            self._chunks.popleft()

    def _cat(self, name: str, clicks_only: bool) -> np.ndarray:
        parts = [getattr(c, name)[c.click] if clicks_only else getattr(c, name) for c in self._chunks]
        return np.concatenate(parts) if parts else np.empty(0)

    def streams(self) -> tuple[np.ndarray, np.ndarray]:
        """``(user, item)`` of every stream in the window, int32 arrays of shape (m,)."""
        return (
            self._cat("user", True).astype(np.int32),
            self._cat("item", True).astype(np.int32),
        )

    def stream_counts(self, n_users: int, n_items: int, transposed: bool = False) -> sp.csr_matrix:
        """Stream counts ``n_ui`` of the window, maintained incrementally.

        Each call adds the days that arrived and subtracts the days that left since the previous
        call as one small day-sized difference, merged into the total in a single sparse add
        (O(nnz of the window)) instead of re-sorting every stream of the window; each day is
        converted to CSR once. The transposed counts (the ALS item side) are kept the same way
        when asked for, from the transposed difference: cheaper than transposing the total (a
        scatter of every entry), for the memory of one more total.

        Parameters
        ----------
        n_users, n_items : int
        transposed : bool
            Return the (n_items, n_users) transpose.

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n_users, n_items), or its transpose, float32
            Canonical (sorted indices, no duplicates, no explicit zeros); a fresh copy.
        """
        shape = (n_users, n_items)
        if self._day_shape != shape:
            self._sums, self._days, self._day_shape = {}, {}, shape
        acc = self._sums.get(transposed)
        if acc is None:
            total = sp.csr_matrix(shape[::-1] if transposed else shape, dtype=np.int32)
            acc = self._sums[transposed] = _CountSum(total, [])
        live = {id(c) for c in self._chunks}
        counted = {id(c) for c in acc.counted}
        delta = None
        for c in acc.counted:
            if id(c) not in live:
                m = self._days[id(c)][1]
                delta = -m if delta is None else delta - m
        acc.counted = [c for c in acc.counted if id(c) in live]
        for c in self._chunks:
            if id(c) not in counted:
                if id(c) not in self._days:  # one day matrix per chunk, shared by both totals
                    self._days[id(c)] = (c, _day_counts(c.user[c.click], c.item[c.click], shape))
                m = self._days[id(c)][1]
                delta = m if delta is None else delta + m
                acc.counted.append(c)
        if delta is not None:
            # integer counts: exact in any order; scipy's sparse add drops the entries that cancel.
            # Transposing the day-sized difference is cheap; transposing the total is not.
            acc.total = acc.total + (delta.T.tocsr() if transposed else delta)
        needed = live | {id(c) for other in self._sums.values() for c in other.counted}
        self._days = {key: day for key, day in self._days.items() if key in needed}
        return acc.total.astype(np.float32)

    def impressions(self) -> dict[str, np.ndarray]:
        """Every kept row (streams and, if kept, impressions) as a dict of (m,) arrays."""
        names = ("user", "item", "click", "position", "pscore", "examination")
        out = {n: self._cat(n, False) for n in names}
        out["day"] = (
            np.concatenate([np.full(c.user.size, c.day, np.int32) for c in self._chunks])
            if self._chunks
            else np.empty(0, np.int32)
        )
        return out


@dataclass
class _CountSum:
    """The summed int32 counts and the chunks summed into them."""

    total: sp.csr_matrix
    counted: list[DayChunk]


def _day_counts(user: np.ndarray, item: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Canonical int32 CSR of (user, item) stream counts, duplicates summed."""
    m = sp.csr_matrix((np.ones(user.size, dtype=np.int32), (user, item)), shape=shape)
    m.sum_duplicates()
    return m
