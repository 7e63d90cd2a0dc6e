"""Time windows and the per-window counters the audit accumulates batch by batch.

A window is ``--window 7d`` (days), ``12h`` (hours), ``2w`` (weeks) or ``1000r`` (rounds).
Windows are aligned on an *origin*: the first round of the log for round windows, else the
first time floored to a whole day (``d``/``w``) or hour (``h``), so that ``7d`` windows of a
recloop log (sessions at day + 0.5) are days 0–6, 7–13, ... and daily windows of a timestamped
log start at midnight UTC.

The last window is usually cut short by the end of the log, and a shorter window has fewer
impressions, hence lower coverage and higher Gini: comparing it with full windows would fake a
collapse. It is marked **incomplete** (reported, drawn hollow, excluded from the trend tests)
unless the log reaches into its last round (round windows) or into its last
``min(1 unit, width / 2)`` (time windows; the unit is a day, or an hour for ``h``).

Counters (all numpy, one vectorised update per batch, no per-row Python):

- exposure per (window, jackknife group, item): ``W × G × I`` int64;
- impressions and clicks per (window, position) and per (window, group);
- for the sampled users, the impression count of every distinct (window, user, item) triple,
  as sorted int64 keys ``(w·U + u)·I + i`` with int64 counts. Reach (distinct users per item,
  for the CDI) and per-user category counts (entropy) both derive from it. When it would exceed
  ``max_pairs`` keys, half of the sampled users are dropped (the larger hashes), so its memory
  stays below about ``16 · max_pairs`` bytes (keys + counts) plus a merge buffer of the same
  size, whatever the log size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from simulator.audit.sampling import UserSample
from simulator.errors import ValidationError

__all__ = ["WindowAccumulator", "WindowCounts", "WindowGrid", "WindowSpec", "parse_window"]

_WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]+)\s*$")
_UNITS = {"d": ("days", 1.0), "h": ("days", 1.0 / 24.0), "w": ("days", 7.0), "r": ("rounds", 1.0)}


@dataclass(frozen=True)
class WindowSpec:
    """A parsed window width.

    Attributes
    ----------
    text : str
        As given, e.g. ``"7d"``.
    width : float
        Width in days (``d``, ``h``, ``w``) or rounds (``r``).
    clock : {"days", "rounds"}
        Which column the windows cut: time (days) or round.
    grid : float
        Alignment unit of the origin: 1 day (``d``, ``w``), 1/24 day (``h``), 1 round (``r``).
    """

    text: str
    width: float
    clock: str
    grid: float

    def describe(self) -> str:
        """E.g. ``"7-day"``, ``"12-hour"``, ``"1000-round"``."""
        num, unit = _WINDOW_RE.match(self.text).groups()  # type: ignore[union-attr]
        word = {"d": "day", "h": "hour", "w": "week", "r": "round"}[unit.lower()]
        value = float(num)
        shown = str(int(value)) if value.is_integer() else str(value)
        return f"{shown}-{word}"


def parse_window(text: str) -> WindowSpec:
    """Parse a window width such as ``"7d"``, ``"12h"``, ``"2w"`` or ``"1000r"``.

    Parameters
    ----------
    text : str
        A positive number followed by ``d`` (days), ``h`` (hours), ``w`` (weeks) or ``r``
        (rounds; an integer).

    Returns
    -------
    WindowSpec

    Raises
    ------
    ValidationError
        If the text does not have that form, the number is not positive, or a round count is
        not an integer; the message quotes the text.
    """
    if not isinstance(text, str):
        raise ValidationError(f"window must be a string such as '7d', '12h' or '1000r'; got {text!r}")
    m = _WINDOW_RE.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValidationError(
            f"window must be a positive number followed by d (days), h (hours), w (weeks) or "
            f"r (rounds), e.g. '7d', '12h', '1000r'; got {text!r}"
        )
    number, unit = float(m.group(1)), m.group(2).lower()
    if not number > 0:
        raise ValidationError(f"window must be > 0; got {text!r}")
    if unit == "r" and not number.is_integer():
        raise ValidationError(f"a window in rounds must be a whole number of rounds; got {text!r}")
    clock, scale = _UNITS[unit]
    grid = 1.0 / 24.0 if unit == "h" else 1.0
    return WindowSpec(text=text.strip(), width=number * scale, clock=clock, grid=grid)


@dataclass(frozen=True)
class WindowGrid:
    """The windows of one log: ``[origin + k·width, origin + (k+1)·width)``.

    Attributes
    ----------
    spec : WindowSpec
    origin : float
        Start of window 0 (days or rounds).
    n_windows : int
    t_min, t_max : float
        First and last time (or round) in the log.
    datetime : bool
        True when the times are datetimes (days since 1970-01-01 UTC), for labels.
    """

    spec: WindowSpec
    origin: float
    n_windows: int
    t_min: float
    t_max: float
    datetime: bool = False

    @classmethod
    def from_range(
        cls, spec: WindowSpec, t_min: float, t_max: float, *, datetime: bool = False
    ) -> WindowGrid:
        """The grid covering ``[t_min, t_max]`` (origin aligned as in the module docstring)."""
        origin = math.floor(t_min / spec.grid + 1e-9) * spec.grid
        n = math.floor((t_max - origin) / spec.width + 1e-12) + 1
        return cls(spec, origin, max(n, 1), t_min, t_max, datetime)

    def index(self, t: np.ndarray) -> np.ndarray:
        """Window of each time; ndarray of shape t.shape, int64 in [0, n_windows)."""
        w = np.floor((t - self.origin) / self.spec.width + 1e-12).astype(np.int64)
        return np.clip(w, 0, self.n_windows - 1, out=w)

    def start(self, w: int) -> float:
        return self.origin + w * self.spec.width

    def end(self, w: int) -> float:
        return self.origin + (w + 1) * self.spec.width

    def complete(self) -> np.ndarray:
        """Whether each window is fully covered by the log; ndarray of shape (n_windows,), bool."""
        out = np.ones(self.n_windows, dtype=bool)
        last_end = self.end(self.n_windows - 1)
        if self.spec.clock == "rounds":
            out[-1] = self.t_max >= last_end - 1 - 1e-9
        else:
            out[-1] = self.t_max >= last_end - min(self.spec.grid, self.spec.width / 2) - 1e-9
        return out

    def label(self, w: int) -> str:
        """Human-readable span of window ``w`` (inclusive ends for whole days or rounds)."""
        a, b = self.start(w), self.end(w)
        whole = float(a).is_integer() and float(b).is_integer()
        if self.spec.clock == "rounds":
            return f"rounds {a:g}–{b - 1:g}"
        if self.datetime:
            import datetime as _dt

            epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
            if whole:
                sa = (epoch + _dt.timedelta(days=a)).strftime("%Y-%m-%d")
                sb = (epoch + _dt.timedelta(days=b - 1)).strftime("%Y-%m-%d")
                return sa if sa == sb else f"{sa} – {sb}"
            fmt = "%Y-%m-%d %H:%M"
            sa = (epoch + _dt.timedelta(days=a)).strftime(fmt)
            sb = (epoch + _dt.timedelta(days=b)).strftime(fmt)
            return f"{sa} – {sb}"
        if whole:
            return f"day {a:g}" if b - a == 1 else f"days {a:g}–{b - 1:g}"
        return f"days [{a:g}, {b:g})"


def _add_counts(target: np.ndarray, keys: np.ndarray, weights: np.ndarray | None = None) -> None:
    """``target[keys] += weights`` (or 1) for a flat int64 array, vectorised."""
    if keys.size == 0:
        return
    if target.size <= 8 * keys.size:
        target += np.bincount(keys, weights=weights, minlength=target.size).astype(target.dtype, copy=False)
        return
    if weights is None:
        u, c = np.unique(keys, return_counts=True)
        target[u] += c
    else:
        u, inv = np.unique(keys, return_inverse=True)
        target[u] += np.bincount(inv, weights=weights).astype(target.dtype, copy=False)


class _PairCounter:
    """Counts of distinct int64 keys, kept sorted; batches are merged lazily (amortised)."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self._pk: list[np.ndarray] = []
        self._pc: list[np.ndarray] = []
        self._pn = 0

    def add(self, keys: np.ndarray) -> None:
        if keys.size == 0:
            return
        u, c = np.unique(keys, return_counts=True)
        self._pk.append(u)
        self._pc.append(c.astype(np.int64))
        self._pn += u.size
        if self._pn > max(self.keys.size, 1 << 22):
            self.compact()

    def compact(self) -> None:
        if not self._pk:
            return
        k = np.concatenate([self.keys, *self._pk])
        c = np.concatenate([self.counts, *self._pc])
        self._pk, self._pc, self._pn = [], [], 0
        order = np.argsort(k, kind="stable")
        k, c = k[order], c[order]
        del order
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        self.keys = k[starts]
        self.counts = np.add.reduceat(c, starts) if c.size else c

    def keep(self, mask: np.ndarray) -> None:
        self.compact()
        self.keys, self.counts = self.keys[mask], self.counts[mask]

    @property
    def size(self) -> int:
        return int(self.keys.size + self._pn)


@dataclass
class WindowCounts:
    """Everything the per-window metrics need, after the accumulation pass.

    Attributes
    ----------
    grid : WindowGrid
    n_items : int
        I, the catalog (or observed-item) size.
    n_groups : int
        G, jackknife groups (1 = no jackknife).
    exposure_g : ndarray of shape (W, G, I), int64
        Impressions per window, jackknife group and item.
    impressions_pos, clicks_pos : ndarray of shape (W, K), int64
        Per window and 0-based position.
    impressions_g, clicks_g : ndarray of shape (W, G), int64
    pair_keys, pair_counts : ndarray of shape (P,), int64
        Sorted ``(w·U + u)·I + i`` keys of sampled users and their impression counts.
    sample : UserSample or None
    user_kept : ndarray of shape (U,), bool
        Sampled users still kept after the pair budget.
    user_group : ndarray of shape (U,), int64
        Jackknife group of each sampled user.
    n_drops : int
        Times the user sample was halved to respect the pair budget.
    """

    grid: WindowGrid
    n_items: int
    n_groups: int
    exposure_g: np.ndarray
    impressions_pos: np.ndarray
    clicks_pos: np.ndarray
    impressions_g: np.ndarray
    clicks_g: np.ndarray
    pair_keys: np.ndarray
    pair_counts: np.ndarray
    sample: UserSample | None
    user_kept: np.ndarray
    user_group: np.ndarray
    n_drops: int = 0

    @property
    def exposure(self) -> np.ndarray:
        """Impressions per window and item; ndarray of shape (W, I), int64."""
        return self.exposure_g.sum(axis=1)

    @property
    def n_sampled_users(self) -> int:
        return int(self.user_kept.sum())

    def decode_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(w, u, i)`` of every stored key; three int64 arrays of shape (P,)."""
        n_users = self.sample.size if self.sample is not None else 1
        wu, i = np.divmod(self.pair_keys, self.n_items)
        w, u = np.divmod(wu, n_users)
        return w, u, i


class WindowAccumulator:
    """Per-window counters, updated one batch at a time (see the module docstring).

    Parameters
    ----------
    grid : WindowGrid
    n_items : int
        Catalog size I (dense item indices in [0, I)).
    n_positions : int
        K, slate length (0-based positions in [0, K)).
    n_groups : int
        Jackknife groups G (>= 1).
    sample : UserSample or None
        Users whose (window, user, item) counts are kept; None without users.
    max_pairs : int
        Budget of stored (window, user, item) keys.
    """

    def __init__(
        self,
        grid: WindowGrid,
        n_items: int,
        n_positions: int,
        n_groups: int,
        sample: UserSample | None,
        max_pairs: int,
    ) -> None:
        self.grid, self.n_items, self.k, self.g = grid, n_items, n_positions, max(1, n_groups)
        w = grid.n_windows
        self.exposure_g = np.zeros(w * self.g * n_items, dtype=np.int64)
        self.imp_pos = np.zeros(w * n_positions, dtype=np.int64)
        self.clk_pos = np.zeros(w * n_positions, dtype=np.int64)
        self.imp_g = np.zeros(w * self.g, dtype=np.int64)
        self.clk_g = np.zeros(w * self.g, dtype=np.int64)
        self.sample = sample
        self.max_pairs = max_pairs
        n_users = sample.size if sample is not None else 0
        if sample is not None and w * max(n_users, 1) * n_items >= 2**62:
            raise ValidationError(
                f"windows × sampled users × items = {w} × {n_users} × {n_items} overflows the int64 "
                "pair keys; use a longer --window or a smaller --max-users"
            )
        self.kept = np.ones(n_users, dtype=bool)
        self.pairs = _PairCounter()
        self.n_drops = 0

    def add(
        self,
        w: np.ndarray,
        item: np.ndarray,
        group: np.ndarray,
        position: np.ndarray,
        click: np.ndarray,
        user_dense: np.ndarray | None,
    ) -> None:
        """Add one batch; every argument is an ndarray of shape (n,), int64 (``click`` bool).

        ``user_dense`` is the sample index of each row's user, -1 outside the sample.
        """
        n_items, g = self.n_items, self.g
        _add_counts(self.exposure_g, (w * g + group) * n_items + item)
        pos_key = w * self.k + position
        _add_counts(self.imp_pos, pos_key)
        wg = w * g + group
        _add_counts(self.imp_g, wg)
        if click.any():
            _add_counts(self.clk_pos, pos_key[click])
            _add_counts(self.clk_g, wg[click])
        if self.sample is None or user_dense is None:
            return
        sel = user_dense >= 0
        if not sel.all():
            sel &= self.kept[np.maximum(user_dense, 0)]
        else:
            sel = self.kept[user_dense]
        u = user_dense[sel]
        self.pairs.add((w[sel] * self.sample.size + u) * n_items + item[sel])
        while self.pairs.size > self.max_pairs:
            self.pairs.compact()
            if self.pairs.size <= self.max_pairs:
                break
            self._halve_sample()

    def _halve_sample(self) -> None:
        """Drop the sampled users with the larger half of the hashes, and their keys."""
        if self.sample is None:
            return
        kept_h = self.sample.hashes[self.kept]
        if kept_h.size <= 1:
            return
        threshold = np.sort(kept_h)[kept_h.size // 2 - 1]
        self.kept &= self.sample.hashes <= threshold
        u = (self.pairs.keys // self.n_items) % self.sample.size
        self.pairs.keep(self.kept[u])
        self.n_drops += 1

    def finish(self) -> WindowCounts:
        """Compact the counters and return them."""
        self.pairs.compact()
        w = self.grid.n_windows
        if self.sample is not None:
            from simulator.audit.sampling import jackknife_group

            user_group = jackknife_group(self.sample.ids, self.g)
        else:
            user_group = np.zeros(0, dtype=np.int64)
        return WindowCounts(
            grid=self.grid,
            n_items=self.n_items,
            n_groups=self.g,
            exposure_g=self.exposure_g.reshape(w, self.g, self.n_items),
            impressions_pos=self.imp_pos.reshape(w, self.k),
            clicks_pos=self.clk_pos.reshape(w, self.k),
            impressions_g=self.imp_g.reshape(w, self.g),
            clicks_g=self.clk_g.reshape(w, self.g),
            pair_keys=self.pairs.keys,
            pair_counts=self.pairs.counts,
            sample=self.sample,
            user_kept=self.kept,
            user_group=user_group,
            n_drops=self.n_drops,
        )
