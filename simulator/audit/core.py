"""The audit in two streaming passes: validate and scan, then accumulate per window.

Pass 1 (:func:`scan_log`) reads every column the audit uses, validates each batch, and learns
what the windows and counters need: the row count, the first and last time, the largest item
id (and the distinct item ids when the catalog size is unknown), the slate length, the
distinct users (a bottom-k hash sample beyond ``max_users``), the logged propensities, and
whether the log mixes several policies or seeds. A bad log therefore fails here, before any
counter or file exists.

Pass 2 (:func:`accumulate`) reads the log again and updates the per-window counters of
:class:`~simulator.audit.windows.WindowAccumulator`, one vectorised update per batch.

Memory is bounded whatever the number of rows:

- one batch (``batch_size`` rows, default 10^6) of a few int64 columns;
- exposure per (window, jackknife group, item): ``W · G · I · 8`` bytes, at most
  ``max_dense_bytes`` (default 1 GiB; ``G`` is lowered, down to no jackknife, to fit; beyond
  that the audit asks for a longer window);
- the user sample: ``max_users`` ids (default 10^6; 16 bytes each);
- the (window, user, item) store: ``max_pairs`` keys (default 2·10^7; about 16 bytes each plus
  a merge buffer of similar size), enforced by halving the user sample;
- when the catalog size is unknown, the distinct item ids (8 bytes each).

Measured (``benchmarks/audit_throughput.py``, 2 cores): 50M rows, 500k users, 50k items, 9
windows in about 50 s (~1M rows/s) with a peak RSS of about 2 GiB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from simulator.audit.alerts import (
    Alert,
    AlertRule,
    TrendResult,
    configure_rules,
    evaluate_alerts,
    trend_tests,
)
from simulator.audit.catalog import ItemInfo, build_item_info, find_run_metadata
from simulator.audit.metrics import WindowMetrics, compute_window_metrics
from simulator.audit.reader import LogSource, SegmentCoder, iter_batches, open_log
from simulator.audit.sampling import DistinctIds, UserSample, jackknife_group, splitmix64
from simulator.audit.windows import WindowAccumulator, WindowCounts, WindowGrid, WindowSpec, parse_window
from simulator.errors import LogSchemaError, ValidationError

__all__ = ["AuditOptions", "AuditResult", "ScanSummary", "accumulate", "audit_log", "scan_log"]


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValidationError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class AuditOptions:
    """Everything an audit can be told (the CLI flags map one to one).

    Parameters
    ----------
    window : str, default "7d"
        Window width: ``7d``, ``12h``, ``2w``, ``1000r`` (see :func:`parse_window`).
    catalog_size : int, optional
        Number of items in the catalog (ids ``0..N-1``); else OBD's item context or a
        simulated run's config, else unknown.
    items : path, optional
        Item table with ``item_id`` and a category column.
    category_column : str, optional
        The category column of ``items`` (default ``genre``, then ``category``; OBD:
        ``item_feature_3``).
    popularity : path, optional
        Table with ``item_id`` and ``popularity`` (pre-system popularity).
    log_format : {"auto", "recloop", "obd"}
    policy : str, optional
        Keep only this policy's rows (required when the log holds several).
    seed : int, optional
        Keep only this seed's rows (required when the log holds several).
    alpha : float, default 0.05
        Level of the trend tests.
    alerts : dict or list of "NAME=VALUE", optional
        Rule overrides (:func:`~simulator.audit.alerts.configure_rules`).
    trend_correction : {"none", "hamed_rao"}, default "none"
        Autocorrelation correction of the Mann–Kendall variance.
    run_metadata : bool, default True
        Use a simulated run's catalog (``manifest.json`` above the log) for whatever the other
        options leave open.
    cdi_threshold : float, default 0.01
    head_fraction : float, default 0.2
    n_groups : int, default 20
        Jackknife groups (1 = no intervals).
    max_users : int, default 1_000_000
        Size of the user hash sample.
    max_pairs : int, default 20_000_000
        Budget of (window, user, item) keys.
    max_dense_bytes : int, default 2**30
        Budget of the dense (window, group, item) exposure array.
    batch_size : int, default 1_000_000
    uniform_draws : int, default 200
        Draws of the uniform-placement Gini reference (0 = off).
    min_user_impressions : int, default 2
        Minimum impressions of a user in a window to enter the per-user entropy.
    """

    window: str = "7d"
    catalog_size: int | None = None
    items: Path | None = None
    category_column: str | None = None
    popularity: Path | None = None
    log_format: str = "auto"
    policy: str | None = None
    seed: int | None = None
    alpha: float = 0.05
    alerts: dict | list | None = None
    trend_correction: str = "none"
    run_metadata: bool = True
    cdi_threshold: float = 0.01
    head_fraction: float = 0.2
    n_groups: int = 20
    max_users: int = 1_000_000
    max_pairs: int = 20_000_000
    max_dense_bytes: int = 2**30
    batch_size: int = 1_000_000
    uniform_draws: int = 200
    min_user_impressions: int = 2

    def validated(self) -> tuple[WindowSpec, tuple[AlertRule, ...]]:
        """Check every option; return the parsed window and the alert rules.

        Raises
        ------
        ValidationError
            Naming the option, the rule and the value.
        """
        spec = parse_window(self.window)
        if self.catalog_size is not None:
            _positive_int("catalog size", self.catalog_size)
        if not (isinstance(self.alpha, float | int) and 0 < self.alpha < 1):
            raise ValidationError(f"alpha must be a float in (0, 1); got {self.alpha!r}")
        if self.trend_correction not in ("none", "hamed_rao"):
            raise ValidationError(
                f"trend correction must be 'none' or 'hamed_rao'; got {self.trend_correction!r}"
            )
        if not (0 < self.cdi_threshold <= 1):
            raise ValidationError(f"cdi threshold must be in (0, 1]; got {self.cdi_threshold!r}")
        if not (0 < self.head_fraction < 1):
            raise ValidationError(f"head fraction must be in (0, 1); got {self.head_fraction!r}")
        _positive_int("n_groups", self.n_groups)
        _positive_int("max_users", self.max_users)
        _positive_int("max_pairs", self.max_pairs, 1000)
        _positive_int("batch_size", self.batch_size)
        _positive_int("max_dense_bytes", self.max_dense_bytes)
        _positive_int("uniform_draws", self.uniform_draws, 0)
        _positive_int("min_user_impressions", self.min_user_impressions)
        if self.seed is not None:
            _positive_int("seed", self.seed, 0)
        return spec, configure_rules(self.alerts)


@dataclass
class ScanSummary:
    """What pass 1 learned (see the module docstring)."""

    n_rows: int = 0
    n_clicks: int = 0
    t_min: float = np.inf
    t_max: float = -np.inf
    datetime: bool = False
    max_item: int = -1
    max_position: int = -1
    pscore_min: float = np.inf
    pscore_max: float = -np.inf
    pscore_column: str | None = None
    items: DistinctIds | None = None
    users: DistinctIds | None = None
    policies: set = field(default_factory=set)
    seeds: set = field(default_factory=set)
    n_segments: int = 0
    seconds: float = 0.0


def _clock(batch, spec: WindowSpec) -> np.ndarray:
    return batch.round.astype(np.float64) if spec.clock == "rounds" else batch.time


def scan_log(
    source: LogSource, spec: WindowSpec, opts: AuditOptions, coder: SegmentCoder, catalog_known: bool
) -> ScanSummary:
    """Pass 1: validate every batch and collect the ranges (see the module docstring).

    Raises
    ------
    LogSchemaError
        Bad values (from the reader), an empty log, or a log mixing policies or seeds.
    """
    t0 = time.perf_counter()
    s = ScanSummary(pscore_column=source.pscore)
    s.items = None if catalog_known else DistinctIds()
    s.users = DistinctIds(cap=opts.max_users) if source.has_users else None
    for b in iter_batches(
        source,
        batch_size=opts.batch_size,
        clicks=True,
        pscore=True,
        time=spec.clock == "days",
        rounds=spec.clock == "rounds",
        mixed_columns=True,
        segments=coder,
    ):
        n = len(b)
        s.n_rows += n
        s.n_clicks += int(np.count_nonzero(b.click))
        clock = _clock(b, spec)
        s.t_min, s.t_max = min(s.t_min, float(clock.min())), max(s.t_max, float(clock.max()))
        s.datetime |= b.datetime
        s.max_item = max(s.max_item, int(b.item.max()))
        s.max_position = max(s.max_position, int(b.position.max()))
        if b.pscore is not None:
            s.pscore_min = min(s.pscore_min, float(b.pscore.min()))
            s.pscore_max = max(s.pscore_max, float(b.pscore.max()))
        if s.items is not None:
            s.items.add(b.item)
        if s.users is not None and b.user is not None:
            s.users.add(b.user)
        if b.policy is not None and len(s.policies) < 50:
            s.policies.update(str(v) for v in pc.unique(b.policy).to_pylist())
        if b.seed is not None and len(s.seeds) < 50:
            s.seeds.update(pc.unique(b.seed).to_pylist())
    s.n_segments = coder.n_segments
    where = f" for {', '.join(f'{k}={v!r}' for k, v in source.filters.items())}" if source.filters else ""
    if s.n_rows == 0:
        raise LogSchemaError(f"{source.path} has no rows{where}: nothing to audit")
    for key, found in (("policy", s.policies), ("seed", s.seeds)):
        if len(found) > 1 and key not in source.filters:
            raise LogSchemaError(
                f"{source.path} mixes {len(found)} {key} values {sorted(found, key=str)[:10]}: "
                "a feedback loop is "
                f"one policy's; audit one at a time with --{key}"
            )
    s.seconds = time.perf_counter() - t0
    return s


def _groups_for_budget(opts: AuditOptions, n_windows: int, n_items: int) -> int:
    g = opts.n_groups
    while g > 1 and n_windows * g * n_items * 8 > opts.max_dense_bytes:
        g = g // 2 if g > 4 else 1
    if n_windows * g * n_items * 8 > opts.max_dense_bytes:
        need = n_windows * n_items * 8 / 2**30
        raise ValidationError(
            f"{n_windows} windows × {n_items} items need {need:.1f} GiB of exposure counters, over the "
            f"budget of {opts.max_dense_bytes / 2**30:.1f} GiB; use a longer --window"
        )
    return g


def accumulate(
    source: LogSource,
    grid: WindowGrid,
    info: ItemInfo,
    sample: UserSample | None,
    n_positions: int,
    n_groups: int,
    opts: AuditOptions,
    coder: SegmentCoder,
) -> WindowCounts:
    """Pass 2: per-window counters (see :class:`~simulator.audit.windows.WindowAccumulator`).

    Impressions are split into jackknife groups by user; for OBD (no user id, few and uneven
    user segments) exposure groups are drawn by row instead, while per-segment metrics still
    group segments.
    """
    acc = WindowAccumulator(grid, info.n_items, n_positions, n_groups, sample, opts.max_pairs)
    group_by_rows = source.user is None
    for b in iter_batches(
        source,
        batch_size=opts.batch_size,
        clicks=True,
        time=grid.spec.clock == "days",
        rounds=grid.spec.clock == "rounds",
        segments=coder,
    ):
        w = grid.index(_clock(b, grid.spec))
        item = info.dense(b.item)
        if group_by_rows or b.user is None:
            group = jackknife_group(np.arange(b.row0, b.row0 + len(b), dtype=np.int64), acc.g)
        else:
            group = jackknife_group(b.user, acc.g)
        dense = sample.dense(b.user) if (sample is not None and b.user is not None) else None
        acc.add(w, item, group, b.position, b.click, dense)
    return acc.finish()


@dataclass
class AuditResult:
    """Everything an audit found; :func:`simulator.audit.report.write_audit` writes it out."""

    source: LogSource
    options: AuditOptions
    spec: WindowSpec
    grid: WindowGrid
    scan: ScanSummary
    info: ItemInfo
    sample: UserSample | None
    counts: WindowCounts
    metrics: WindowMetrics
    trends: dict[str, TrendResult]
    alerts: list[Alert]
    labels: list[str]
    notes: list[str]
    seconds: dict[str, float]

    @property
    def fired(self) -> list[Alert]:
        return [a for a in self.alerts if a.fired]

    @property
    def rows_per_second(self) -> float:
        total = self.seconds.get("total", 0.0)
        return self.scan.n_rows / total if total > 0 else float("nan")


def audit_log(log: str | Path, options: AuditOptions | None = None) -> AuditResult:
    """Audit an impression log for feedback-loop symptoms (nothing is written).

    Parameters
    ----------
    log : path
        recloop Parquet file or folder, recloop-schema CSV, or OBD ``all.csv``.
    options : AuditOptions, optional

    Returns
    -------
    AuditResult

    Raises
    ------
    ValidationError
        Bad options or files (named).
    LogSchemaError
        Bad log: missing columns, nulls, unparsable timestamps, negative ids, propensities
        outside (0, 1], an empty log, mixed policies or seeds (the message names the column
        and the value).
    """
    t0 = time.perf_counter()
    opts = options or AuditOptions()
    spec, rules = opts.validated()
    path = Path(log)
    source = open_log(
        path,
        log_format=opts.log_format,
        policy=opts.policy,
        seed=opts.seed,
        needs="round" if spec.clock == "rounds" else "time",
    )
    notes: list[str] = []
    obd_ctx = None
    if source.log_format == "obd":
        cand = (path if path.is_dir() else path.parent) / "item_context.csv"
        obd_ctx = cand if cand.is_file() else None
        if obd_ctx is None:
            notes.append(
                f"no item_context.csv beside the OBD log ({cand}): catalog size and categories unknown"
            )
    run = None
    if (
        opts.run_metadata
        and source.log_format == "recloop"
        and (opts.catalog_size is None or opts.items is None or opts.popularity is None)
    ):
        run, note = find_run_metadata(path, opts.seed)
        if run is not None:
            notes.append(f"item metadata not given on the command line was taken from {note}")
    catalog_known = opts.catalog_size is not None or obd_ctx is not None or run is not None
    for p, what in ((opts.items, "items"), (opts.popularity, "popularity")):
        if p is not None and not Path(p).is_file():
            raise ValidationError(f"{what} file not found: {p}")

    coder = SegmentCoder()
    scan = scan_log(source, spec, opts, coder, catalog_known)
    info = build_item_info(
        observed_ids=scan.items.result() if scan.items is not None else None,
        max_item=scan.max_item,
        catalog_size=opts.catalog_size,
        items_path=opts.items,
        category_column=opts.category_column,
        popularity_path=opts.popularity,
        obd_item_context=obd_ctx,
        run=run,
    )
    sample = None
    if scan.users is not None:
        ids = scan.users.result()
        n_users, exact = scan.users.n_distinct()
        sample = UserSample(ids, splitmix64(ids), n_users, exact)
    grid = WindowGrid.from_range(spec, scan.t_min, scan.t_max, datetime=scan.datetime)
    n_groups = _groups_for_budget(opts, grid.n_windows, info.n_items)
    if n_groups < opts.n_groups:
        notes.append(
            f"jackknife groups lowered from {opts.n_groups} to {n_groups} to keep the exposure counters "
            f"within {opts.max_dense_bytes / 2**30:.1f} GiB"
        )
    t_acc = time.perf_counter()
    counts = accumulate(source, grid, info, sample, scan.max_position + 1, n_groups, opts, coder)
    t_acc = time.perf_counter() - t_acc
    if sample is not None and not sample.is_complete:
        notes.append(
            f"per-user metrics (CDI reach, entropy) use a hash sample of {sample.size:,} of about "
            f"{sample.n_users:,.0f} users (--max-users {opts.max_users:,})"
        )
    if counts.n_drops:
        notes.append(
            f"the (window, user, item) store reached --max-pairs {opts.max_pairs:,}: the user sample was "
            f"halved {counts.n_drops} time(s), to {counts.n_sampled_users:,} users"
        )
    metrics = compute_window_metrics(
        counts,
        info,
        cdi_threshold=opts.cdi_threshold,
        head_fraction=opts.head_fraction,
        uniform_draws=opts.uniform_draws,
        min_user_impressions=opts.min_user_impressions,
    )
    labels = [grid.label(w) for w in range(grid.n_windows)]
    trends = trend_tests(metrics, alpha=opts.alpha, correction=opts.trend_correction)
    alerts = evaluate_alerts(rules, trends, metrics, labels, alpha=opts.alpha)
    total = time.perf_counter() - t0
    return AuditResult(
        source=source,
        options=opts,
        spec=spec,
        grid=grid,
        scan=scan,
        info=info,
        sample=sample,
        counts=counts,
        metrics=metrics,
        trends=trends,
        alerts=alerts,
        labels=labels,
        notes=notes,
        seconds={"scan": scan.seconds, "accumulate": t_acc, "total": total},
    )
