"""Open an impression log, validate it, and stream it as numpy batches of bounded size.

Two formats are understood (``log_format="auto"`` tells them apart by their columns):

``recloop``
    recloop's impression log (DESIGN.md §7, :data:`simulator.logs.impressions.LOG_SCHEMA`) as a
    Parquet file, a (hive-partitioned) Parquet folder, or a CSV file with the same columns.
    Required: ``item_id``, ``user_id``, ``position`` (0-based), ``click``, and ``time`` (numeric
    days since the start, or datetimes) for time windows or ``round`` for round windows.
    Optional: ``pscore`` (validated, and reported: IPW needs it), ``policy`` and ``seed``
    (filters).
``obd``
    The Open Bandit Dataset (Saito et al. 2021) ``all.csv``: ``timestamp`` (ISO 8601),
    ``item_id``, ``position`` (**1-based**), ``click``, ``propensity_score``, and the hashed
    ``user_feature_0..3``. OBD has no user id: the "user" of per-user metrics is the
    user-feature *segment* (the combination of the four features), said so in the report.

Every batch is converted once (:class:`Batch`): ids as int64, position 0-based, click as bool,
time as float64 **days** (timestamps: days since 1970-01-01 UTC; recloop's numeric ``time`` is
already in days). Validation happens during the conversion and names the column, the rule, the
value and its row: missing columns, nulls, non-integer or negative ids, unparsable timestamps,
clicks outside {0, 1}, propensities outside (0, 1]. The audit scans the log once to validate it
and fix the windows before it accumulates anything, so a bad log fails before any output exists.

Memory: one batch at a time (``batch_size`` rows, default 1,000,000: tens of MB); the dataset
is never materialised.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from simulator.errors import LogSchemaError, ValidationError

__all__ = ["Batch", "LogSource", "SegmentCoder", "iter_batches", "open_log"]

_NS_PER_DAY = 86_400 * 10**9
_OBD_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")
_OBD_USER_FEATURES = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")


@dataclass(frozen=True)
class LogSource:
    """An opened, not yet read, impression log.

    Attributes
    ----------
    path : Path
        The file or folder given.
    log_format : {"recloop", "obd"}
    file_format : {"parquet", "csv"}
    dataset : pyarrow.dataset.Dataset
        Lazily scanned; CSV columns the audit uses are read as strings and converted here, so
        that a bad value is reported with its column name.
    item, user, position, click : str or None
        Column names of each role (``user`` is None when the log has no user identity).
    time : str or None
        Time column (``time`` or ``timestamp``), None if absent.
    round : str or None
        Round column, None if absent.
    pscore : str or None
        Propensity column (``pscore`` or ``propensity_score``), None if absent.
    user_features : tuple of str
        OBD user-feature columns combined into a segment id (used when ``user`` is None).
    position_base : int
        0 (recloop) or 1 (OBD).
    filter : pyarrow.dataset.Expression or None
        Row filter from ``policy=`` / ``seed=``.
    filters : dict
        The filters as given, for the report.
    partition_values : dict
        Distinct ``policy`` / ``seed`` values seen in hive partition paths.
    """

    path: Path
    log_format: str
    file_format: str
    dataset: pads.Dataset
    item: str
    user: str | None
    position: str
    click: str
    time: str | None
    round: str | None
    pscore: str | None
    user_features: tuple[str, ...]
    position_base: int
    filter: pads.Expression | None
    filters: dict = field(default_factory=dict)
    partition_values: dict = field(default_factory=dict)

    @property
    def has_users(self) -> bool:
        """Whether per-user metrics are possible (a user id or OBD user features)."""
        return self.user is not None or bool(self.user_features)

    @property
    def user_label(self) -> str:
        """What a "user" is in this log, for reports."""
        if self.user is not None:
            return f"user (column {self.user!r})"
        if self.user_features:
            return f"user segment (combination of {', '.join(self.user_features)}; the log has no user id)"
        return "none (the log has no user column)"


@dataclass
class Batch:
    """One converted, validated batch (all arrays of shape (n,)).

    Attributes
    ----------
    row0 : int
        Index of the batch's first row in the (filtered) log, for error messages.
    item : int64, >= 0
    user : int64, >= 0, or None
        User id (OBD: segment code) or None without users.
    position : int64, 0-based
    click : bool or None
        None when the pass did not ask for clicks.
    time : float64 days, or None
    round : int64, or None
    pscore : float64 in (0, 1], or None
    policy, seed : pyarrow arrays or None
        Only in the validation scan, to detect mixed logs.
    datetime : bool
        Whether ``time`` came from datetimes (days since 1970-01-01 UTC) rather than numbers.
    """

    row0: int
    item: np.ndarray
    user: np.ndarray | None
    position: np.ndarray
    click: np.ndarray | None = None
    time: np.ndarray | None = None
    round: np.ndarray | None = None
    pscore: np.ndarray | None = None
    policy: pa.Array | None = None
    seed: pa.Array | None = None
    datetime: bool = False

    def __len__(self) -> int:
        return int(self.item.shape[0])


# ---------------------------------------------------------------------------------------------
# opening


def _files_under(folder: Path) -> tuple[list[Path], list[Path]]:
    parquet, csv = [], []
    for p in folder.rglob("*"):
        if not p.is_file() or any(part.startswith((".", "_")) for part in p.relative_to(folder).parts):
            continue
        name = p.name.lower()
        if name.endswith((".parquet", ".pq")):
            parquet.append(p)
        elif name.endswith((".csv", ".csv.gz")):
            csv.append(p)
    return parquet, csv


def _file_format(path: Path) -> str:
    if path.is_dir():
        parquet, csv = _files_under(path)
        if parquet and csv:
            raise LogSchemaError(
                f"{path} mixes Parquet ({len(parquet)}) and CSV ({len(csv)}) files; audit one format"
            )
        if not parquet and not csv:
            raise LogSchemaError(f"{path} holds no .parquet or .csv file")
        return "parquet" if parquet else "csv"
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    return "parquet"


def _dataset(path: Path, file_format: str, string_columns: list[str] | None = None) -> pads.Dataset:
    partitioning = "hive" if path.is_dir() else None
    try:
        if file_format == "csv":
            import pyarrow.csv as pacsv

            conv = pacsv.ConvertOptions(column_types={c: pa.string() for c in string_columns or []})
            fmt = pads.CsvFileFormat(convert_options=conv)
            return pads.dataset(path, format=fmt, partitioning=partitioning)
        return pads.dataset(path, format="parquet", partitioning=partitioning, exclude_invalid_files=False)
    except (pa.ArrowInvalid, OSError) as err:
        raise LogSchemaError(f"cannot read {path} as {file_format}: {err}") from None


def _pick(names: set[str], *candidates: str) -> str | None:
    return next((c for c in candidates if c in names), None)


def open_log(
    path: str | Path,
    *,
    log_format: str = "auto",
    policy: str | None = None,
    seed: int | None = None,
    needs: str = "time",
) -> LogSource:
    """Open a log and check its columns (no row is read).

    Parameters
    ----------
    path : path
        Parquet file, Parquet folder (hive partitions ``policy=.../seed=...`` allowed) or CSV
        file; a recloop results run folder stands for its ``logs/``.
    log_format : {"auto", "recloop", "obd"}, default "auto"
        ``auto`` is ``obd`` when the columns are OBD's (``timestamp``, ``propensity_score``, no
        ``user_id``), else ``recloop``.
    policy : str, optional
        Keep only rows whose ``policy`` (column or partition) equals this.
    seed : int, optional
        Keep only rows whose ``seed`` (column or partition) equals this.
    needs : {"time", "round"}, default "time"
        Which clock the windows use; its column becomes required.

    Returns
    -------
    LogSource

    Raises
    ------
    ValidationError
        If the path does not exist, ``log_format`` is unknown, or a filter names a column the
        log lacks.
    LogSchemaError
        If a required column is missing (the message lists them and the log's columns) or the
        file cannot be read.
    """
    path = Path(path)
    if log_format not in ("auto", "recloop", "obd"):
        raise ValidationError(f"log format must be 'auto', 'recloop' or 'obd'; got {log_format!r}")
    if not path.exists():
        raise ValidationError(f"log not found: {path}")
    if path.is_dir() and (path / "manifest.json").is_file() and (path / "logs").is_dir():
        path = path / "logs"  # a recloop results run: its impression log
    file_format = _file_format(path)
    probe = _dataset(path, file_format)
    names = set(probe.schema.names)
    if log_format == "auto":
        obd = set(_OBD_COLUMNS) <= names and "user_id" not in names
        log_format = "obd" if obd else "recloop"

    if log_format == "obd":
        required = list(_OBD_COLUMNS)
        time_col, round_col = "timestamp", _pick(names, "round")
        user_col, pscore_col, base = None, "propensity_score", 1
        features = tuple(c for c in _OBD_USER_FEATURES if c in names)
        if len(features) not in (0, len(_OBD_USER_FEATURES)):
            missing = [c for c in _OBD_USER_FEATURES if c not in names]
            raise LogSchemaError(f"{path} has some OBD user features but lacks {missing}")
    else:
        required = ["item_id", "user_id", "position", "click"]
        time_col, round_col = _pick(names, "time", "timestamp"), _pick(names, "round")
        user_col, pscore_col, base = "user_id", _pick(names, "pscore"), 0
        features = ()
    if needs == "round":
        if round_col is None:
            raise LogSchemaError(
                f"a window in rounds (e.g. '1000r') needs a 'round' column, which {path} lacks; "
                "use a time window such as '7d' or '12h'"
            )
    elif time_col is None:
        hint = "; it has 'round': use a window in rounds such as '7r'" if round_col else ""
        raise LogSchemaError(f"a time window needs a 'time' or 'timestamp' column, which {path} lacks{hint}")
    missing = [c for c in required if c not in names]
    if missing:
        raise LogSchemaError(
            f"{path} is missing required column(s) {missing} for the {log_format} format; "
            f"columns: {sorted(n for n in names if n)}"
        )

    exprs, filters = [], {}
    for key, value in (("policy", policy), ("seed", seed)):
        if value is None:
            continue
        if key not in names:
            raise ValidationError(f"--{key} {value!r} given, but {path} has no {key!r} column or partition")
        typ = probe.schema.field(key).type
        cast_value = str(value) if pa.types.is_string(typ) or pa.types.is_large_string(typ) else value
        if key == "seed" and not isinstance(value, int):
            raise ValidationError(f"seed must be an int; got {value!r}")
        exprs.append(pads.field(key) == cast_value)
        filters[key] = value
    flt = None
    for e in exprs:
        flt = e if flt is None else flt & e

    # every hive partition key (policy=, seed=, but also e.g. a study's eta= / regime=) must have
    # one value: pooling the logs of different runs would mix their sessions silently
    partition_values: dict[str, set] = {}
    if path.is_dir():
        for f in probe.files:
            rel = str(Path(f).relative_to(path))
            for key, val in re.findall(r"(?:^|/)([A-Za-z_][\w.]*)=([^/]+)(?=/)", rel):
                partition_values.setdefault(key, set()).add(val)

    for key, found in partition_values.items():
        if len(found) > 1 and key not in filters:
            how = f"one at a time with --{key}" if key in ("policy", "seed") else "one partition at a time"
            raise LogSchemaError(
                f"{path} holds {len(found)} {key} partitions {sorted(found)[:10]}: a feedback loop is one "
                f"run's log; read {how}"
            )

    dataset = probe
    if file_format == "csv":
        used = [c for c in (*required, time_col, round_col, user_col, pscore_col, *features) if c]
        dataset = _dataset(path, "csv", sorted(set(used)))
    return LogSource(
        path=path,
        log_format=log_format,
        file_format=file_format,
        dataset=dataset,
        item="item_id",
        user=user_col,
        position="position",
        click="click",
        time=time_col,
        round=round_col,
        pscore=pscore_col,
        user_features=features,
        position_base=base,
        filter=flt,
        filters=filters,
        partition_values={k: sorted(v) for k, v in partition_values.items() if v},
    )


# ---------------------------------------------------------------------------------------------
# conversion and validation of one batch


def _first_bad(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _nulls(col: pa.Array, name: str, row0: int) -> None:
    if col.null_count:
        i = _first_bad(np.asarray(col.is_null()))
        raise LogSchemaError(
            f"column {name!r} has {col.null_count} null value(s) in a batch (first at row {row0 + i})"
        )


def _arrow_message_value(err: Exception) -> str:
    m = re.search(r"'([^']*)'", str(err))
    return repr(m.group(1)) if m else str(err)


def _ints(col: pa.Array, name: str, row0: int, minimum: int | None) -> np.ndarray:
    _nulls(col, name, row0)
    typ = col.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        try:
            col = pc.cast(col, pa.int64())
        except pa.ArrowInvalid as err:
            raise LogSchemaError(
                f"column {name!r} must hold integers; got {_arrow_message_value(err)} (near row {row0})"
            ) from None
    elif pa.types.is_dictionary(typ):
        col = col.cast(typ.value_type)
        return _ints(col, name, row0, minimum)
    elif not pa.types.is_integer(typ):
        raise LogSchemaError(f"column {name!r} must be an integer column; got type {typ}")
    arr = col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if minimum is not None and arr.size:
        low = arr < minimum
        if low.any():
            i = _first_bad(low)
            raise LogSchemaError(f"column {name!r} must be >= {minimum}; got {arr[i]} at row {row0 + i}")
    return arr


def _clicks(col: pa.Array, name: str, row0: int) -> np.ndarray:
    _nulls(col, name, row0)
    typ = col.type
    if pa.types.is_boolean(typ):
        return col.to_numpy(zero_copy_only=False)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        try:
            return pc.cast(col, pa.bool_()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid as err:
            raise LogSchemaError(
                f"column {name!r} must hold 0/1 or true/false; got {_arrow_message_value(err)} "
                f"(near row {row0})"
            ) from None
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        arr = col.to_numpy(zero_copy_only=False)
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            i = _first_bad(bad)
            raise LogSchemaError(f"column {name!r} must be 0 or 1; got {arr[i]} at row {row0 + i}")
        return arr.astype(bool)
    raise LogSchemaError(f"column {name!r} must be boolean or 0/1; got type {typ}")


def _floats(col: pa.Array, name: str, row0: int) -> np.ndarray:
    _nulls(col, name, row0)
    typ = col.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        try:
            col = pc.cast(col, pa.float64())
        except pa.ArrowInvalid as err:
            raise LogSchemaError(
                f"column {name!r} must hold numbers; got {_arrow_message_value(err)} (near row {row0})"
            ) from None
    elif not (pa.types.is_floating(typ) or pa.types.is_integer(typ) or pa.types.is_decimal(typ)):
        raise LogSchemaError(f"column {name!r} must be numeric; got type {typ}")
    arr = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = _first_bad(bad)
        raise LogSchemaError(f"column {name!r} must be finite; got {arr[i]} at row {row0 + i}")
    return arr


def _pscores(col: pa.Array, name: str, row0: int) -> np.ndarray:
    arr = _floats(col, name, row0)
    bad = ~((arr > 0.0) & (arr <= 1.0))
    if bad.any():
        i = _first_bad(bad)
        raise LogSchemaError(
            f"column {name!r} must hold propensities in (0, 1]; got {arr[i]} at row {row0 + i}"
        )
    return arr


_NUMBER_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_ISO_RE = r"^\s*\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
_ZONE_RE = r"(Z|[+-]\d{2}:?\d{2})\s*$"


def _first_false(mask: pa.Array) -> int:
    return _first_bad(~np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))


def _parse_timestamps(col: pa.Array, name: str, row0: int) -> pa.Array:
    """Strings -> timestamp[ns] (UTC); ISO 8601 with or without a zone offset (not mixed).

    The error names the first value that is not a timestamp, and its row.
    """
    for typ in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):
        try:
            return pc.cast(col, typ)
        except pa.ArrowInvalid:
            continue
    iso = pc.match_substring_regex(col, _ISO_RE)
    if not pc.all(iso).as_py():
        i = _first_false(iso)
        raise LogSchemaError(
            f"column {name!r}: unparsable timestamp {col[i].as_py()!r} at row {row0 + i}; expected ISO 8601 "
            "such as '2019-11-24 00:00:34+00:00', or a number of days"
        )
    zone = pc.match_substring_regex(col, _ZONE_RE)
    i = _first_false(zone) if pc.any(zone).as_py() else 0
    raise LogSchemaError(
        f"column {name!r}: timestamps mix values with and without a zone offset, or hold an impossible "
        f"date (e.g. {col[i].as_py()!r} at row {row0 + i}); write them all in UTC with an offset"
    )


def _days(col: pa.Array, name: str, row0: int) -> tuple[np.ndarray, bool]:
    """A time column as float64 days, and whether it held datetimes.

    Numbers are days as they are (recloop's ``time``); datetimes become days since 1970-01-01
    UTC (zone-less datetimes are taken as UTC).
    """
    _nulls(col, name, row0)
    typ = col.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):  # CSV: days, or datetimes
        numeric = pc.match_substring_regex(col, _NUMBER_RE)
        if pc.all(numeric).as_py():
            return _floats(col, name, row0), False
        if pc.any(numeric).as_py() and np.asarray(numeric.to_numpy(zero_copy_only=False))[0]:
            i = _first_false(numeric)
            raise LogSchemaError(
                f"column {name!r} must hold numbers of days or timestamps; got {col[i].as_py()!r} at row "
                f"{row0 + i} among numbers"
            )
        col = _parse_timestamps(col, name, row0)
        typ = col.type
    if pa.types.is_date(typ):
        col = col.cast(pa.timestamp("ns"))
        typ = col.type
    if pa.types.is_timestamp(typ):
        ns = col.cast(pa.timestamp("ns", tz=typ.tz)).cast(pa.int64()).to_numpy(zero_copy_only=False)
        return ns.astype(np.float64) / _NS_PER_DAY, True
    if pa.types.is_floating(typ) or pa.types.is_integer(typ):
        return _floats(col, name, row0), False
    raise LogSchemaError(f"column {name!r} must hold days (numbers) or timestamps; got type {typ}")


class SegmentCoder:
    """Dense integer codes for OBD user segments (joined user-feature strings), stable across passes.

    New segments get the next code in order of first appearance; the mapping of a batch is one
    vectorised ``index_in`` (no per-row Python). Memory: one string per distinct segment.
    """

    def __init__(self) -> None:
        self.known_ = pa.array([], type=pa.string())

    def encode(self, columns: list[pa.Array]) -> np.ndarray:
        cols = [pc.cast(c, pa.string()) if not pa.types.is_string(c.type) else c for c in columns]
        joined = pc.binary_join_element_wise(*cols, "\x1f")
        joined = pc.fill_null(joined, "\x00null")
        uniq = pc.unique(joined)
        new = pc.filter(uniq, pc.invert(pc.is_in(uniq, value_set=self.known_)))
        if len(new):
            self.known_ = pa.concat_arrays([self.known_, new])
        return pc.index_in(joined, value_set=self.known_).to_numpy(zero_copy_only=False).astype(np.int64)

    @property
    def n_segments(self) -> int:
        return len(self.known_)


def iter_batches(
    source: LogSource,
    *,
    batch_size: int = 1_000_000,
    clicks: bool = True,
    pscore: bool = False,
    time: bool = True,
    rounds: bool = False,
    mixed_columns: bool = False,
    segments: SegmentCoder | None = None,
) -> Iterator[Batch]:
    """Stream the log as converted, validated :class:`Batch` objects.

    Parameters
    ----------
    source : LogSource
    batch_size : int, default 1_000_000
        Maximum rows per batch (pyarrow may yield smaller ones at file/row-group boundaries).
    clicks, pscore, time, rounds : bool
        Which optional roles to read (unused columns are not decoded).
    mixed_columns : bool, default False
        Also return the ``policy``/``seed`` columns (to detect a log mixing several).
    segments : SegmentCoder, optional
        Coder for OBD user segments; pass the same one to every pass so codes agree.

    Yields
    ------
    Batch

    Raises
    ------
    LogSchemaError
        On the first invalid value (column, rule, value, row).
    """
    names = set(source.dataset.schema.names)
    cols = [source.item, source.position]
    if source.user:
        cols.append(source.user)
    cols += list(source.user_features)
    if clicks:
        cols.append(source.click)
    if pscore and source.pscore:
        cols.append(source.pscore)
    if time and source.time:
        cols.append(source.time)
    if rounds and source.round:
        cols.append(source.round)
    extra = [c for c in ("policy", "seed") if mixed_columns and c in names]
    cols = list(dict.fromkeys(cols + extra))
    coder = segments if segments is not None else SegmentCoder()
    row0 = 0
    try:
        scanner = source.dataset.scanner(columns=cols, filter=source.filter, batch_size=batch_size)
        for rb in scanner.to_batches():
            n = rb.num_rows
            if n == 0:
                continue
            item = _ints(rb.column(source.item), source.item, row0, 0)
            raw_pos = _ints(rb.column(source.position), source.position, row0, source.position_base)
            position = raw_pos - source.position_base if source.position_base else raw_pos
            if source.user:
                user = _ints(rb.column(source.user), source.user, row0, 0)
            elif source.user_features:
                user = coder.encode([rb.column(c) for c in source.user_features])
            else:
                user = None
            batch = Batch(row0=row0, item=item, user=user, position=position)
            if clicks:
                batch.click = _clicks(rb.column(source.click), source.click, row0)
            if pscore and source.pscore:
                batch.pscore = _pscores(rb.column(source.pscore), source.pscore, row0)
            if time and source.time:
                batch.time, batch.datetime = _days(rb.column(source.time), source.time, row0)
            if rounds and source.round:
                batch.round = _ints(rb.column(source.round), source.round, row0, None)
            if "policy" in extra:
                batch.policy = rb.column("policy")
            if "seed" in extra:
                batch.seed = rb.column("seed")
            row0 += n
            yield batch
    except pa.ArrowInvalid as err:  # e.g. a malformed CSV line or a corrupt Parquet page
        raise LogSchemaError(f"cannot read {source.path}: {err}") from None
