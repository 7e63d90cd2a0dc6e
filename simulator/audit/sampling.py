"""Distinct ids and hash-based user samples with bounded memory.

Per-user quantities (reach for the CDI, per-user category entropy) need state per user. A log
can hold any number of users, so the audit keeps that state for a **deterministic hash sample**
of at most ``max_users`` users: the users with the smallest ``splitmix64(user_id)`` (a bottom-k
sample, Cohen & Kaplan 2007). Every user's hash is a fixed function of the id, so the sample is
the same whatever the batch order, nested (a smaller budget keeps a subset of a larger one), and
uniform over users (independent of activity). With fewer users than the budget, the sample is
exact (all users).

References
----------
.. [1] Steele, G. L., Lea, D., & Flood, C. H. (2014). Fast splittable pseudorandom number
       generators (SplitMix64). *OOPSLA '14*, 453-472.
.. [2] Cohen, E., & Kaplan, H. (2007). Summarizing data using bottom-k sketches. *PODC '07*,
       225-234.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DistinctIds", "UserSample", "splitmix64"]

#: Ids below this are tracked with a bitmap (one byte each: 64 MiB at most) instead of sorting.
_BITMAP_LIMIT = 1 << 26
#: Salt that makes the jackknife group of a user independent of its sampling hash.
_GROUP_SALT = np.uint64(0x5DEECE66D1234567)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of each value: a fixed, well-mixed 64-bit hash.

    Parameters
    ----------
    x : ndarray of any shape, integer
        Values (ids); negative values are taken modulo 2^64.

    Returns
    -------
    ndarray of the same shape, uint64
    """
    z = np.asarray(x).astype(np.uint64, copy=True)
    z += np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def jackknife_group(ids: np.ndarray, n_groups: int) -> np.ndarray:
    """Group ``0..n_groups-1`` of each id (users, or row numbers when users are unknown).

    Returns
    -------
    ndarray of shape ids.shape, int64
    """
    if n_groups <= 1:
        return np.zeros(np.shape(ids), dtype=np.int64)
    h = splitmix64(np.asarray(ids).astype(np.uint64) ^ _GROUP_SALT)
    return (h % np.uint64(n_groups)).astype(np.int64)


class DistinctIds:
    """The distinct non-negative ids of a stream, optionally capped to a bottom-k hash sample.

    Parameters
    ----------
    cap : int or None
        Keep at most ``cap`` ids (those with the smallest :func:`splitmix64`); None = all.

    Notes
    -----
    Ids below 2^26 are marked in a bitmap (O(n) per batch, 64 MiB at most); larger ids switch
    to a sorted array merged batch by batch (O(n log n)), pruned to the ``cap`` smallest hashes
    whenever it exceeds ``2 * cap``. Memory: O(min(distinct, 2 cap) + batch).
    """

    def __init__(self, cap: int | None = None) -> None:
        self.cap = cap
        self._bitmap: np.ndarray | None = np.zeros(0, dtype=bool)
        self._ids = np.zeros(0, dtype=np.int64)
        self._threshold: np.uint64 | None = None  # max hash kept once pruned
        self._total: int | None = None  # exact distinct count, when known
        self.pruned = False

    def add(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        top = int(ids.max())
        if self._bitmap is not None and top < _BITMAP_LIMIT:
            if top >= self._bitmap.size:
                grown = np.zeros(max(top + 1, 2 * self._bitmap.size), dtype=bool)
                grown[: self._bitmap.size] = self._bitmap
                self._bitmap = grown
            self._bitmap[ids] = True
            return
        if self._bitmap is not None:  # switch to the sorted representation
            self._ids = np.flatnonzero(self._bitmap).astype(np.int64)
            self._bitmap = None
        u = np.unique(ids)
        if self._threshold is not None:
            u = u[splitmix64(u) <= self._threshold]
        self._ids = np.union1d(self._ids, u)
        if self.cap is not None and self._ids.size > 2 * self.cap:
            self._prune()

    def _prune(self) -> None:
        h = splitmix64(self._ids)
        keep = np.argpartition(h, self.cap - 1)[: self.cap]
        self._threshold = h[keep].max()
        self._ids = np.sort(self._ids[keep])
        self.pruned = True

    def result(self) -> np.ndarray:
        """Sorted distinct ids kept (all of them, or the bottom-``cap`` hash sample)."""
        if self._bitmap is not None:
            self._ids = np.flatnonzero(self._bitmap).astype(np.int64)
            self._bitmap = None
            if not self.pruned:
                self._total = int(self._ids.size)
        if self._total is None and not self.pruned:
            self._total = int(self._ids.size)
        if self.cap is not None and self._ids.size > self.cap:
            self._prune()
        return self._ids

    def n_distinct(self) -> tuple[float, bool]:
        """``(count, exact)``: the exact distinct count, or the bottom-k estimate if pruned.

        The estimate is :math:`(k - 1) / U_{(k)}` with :math:`U_{(k)}` the k-th smallest hash
        as a fraction of 2^64 (Bar-Yossef et al. 2002; relative sd ≈ 1/√k).
        """
        ids = self.result()
        if self._total is not None:
            return float(self._total), True
        k = ids.size
        frac = float(splitmix64(ids).max()) / 2.0**64
        return (k - 1) / frac, False


@dataclass
class UserSample:
    """The users whose per-user state the audit keeps, with a dense index.

    Attributes
    ----------
    ids : ndarray of shape (U,), int64
        Sorted user ids (OBD: segment codes) in the sample.
    hashes : ndarray of shape (U,), uint64
        ``splitmix64(ids)``; the sample can only shrink by lowering a hash threshold.
    n_users : float
        Distinct users in the log (exact, or the bottom-k estimate).
    exact_count : bool
        Whether ``n_users`` is exact.
    """

    ids: np.ndarray
    hashes: np.ndarray
    n_users: float
    exact_count: bool

    def __post_init__(self) -> None:
        self._lut: np.ndarray | None = None
        if self.ids.size and int(self.ids[-1]) < _BITMAP_LIMIT:
            self._lut = np.full(int(self.ids[-1]) + 1, -1, dtype=np.int64)
            self._lut[self.ids] = np.arange(self.ids.size, dtype=np.int64)

    @property
    def size(self) -> int:
        return int(self.ids.size)

    @property
    def is_complete(self) -> bool:
        """True when every user of the log is in the sample."""
        return self.exact_count and self.size >= self.n_users

    def dense(self, user: np.ndarray) -> np.ndarray:
        """Dense sample index of each user id, -1 for users outside the sample.

        Parameters
        ----------
        user : ndarray of shape (n,), int64, >= 0

        Returns
        -------
        ndarray of shape (n,), int64
        """
        if self.ids.size == 0:
            return np.full(user.shape, -1, dtype=np.int64)
        if self._lut is not None:
            inside = user < self._lut.size
            out = np.full(user.shape, -1, dtype=np.int64)
            out[inside] = self._lut[user[inside]]
            return out
        idx = np.searchsorted(self.ids, user)
        idx_c = np.minimum(idx, self.ids.size - 1)
        return np.where(self.ids[idx_c] == user, idx_c, -1)
