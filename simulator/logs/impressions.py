"""The impression log: one row per (session, position) shown, buffered and written to Parquet.

Schema (DESIGN.md §7), in this column order::

    round int32, time float64 (days), session_id int64, user_id int32, position int16,
    item_id int32, score float32, pscore float32, inclusion_pscore float32,
    examination float32, click bool, reward float32, policy string

A policy may add per-impression columns (``Slate.extras``, e.g. ``team int8`` of an
interleaving run): they are written after the standard columns, in the order of the first round
that had them (:func:`log_schema`); ordinary runs write exactly ``LOG_SCHEMA``.

Rows accumulate as numpy chunks and are flushed to ``part-NNNNN.parquet`` files (each written
atomically) once ``flush_rows`` rows are buffered. ``log_fraction`` < 1 keeps a Bernoulli sample
of *sessions* (whole slates), drawn from the run's own ``log`` stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from simulator.errors import ValidationError
from simulator.io import write_parquet

LOG_SCHEMA = pa.schema(
    [
        ("round", pa.int32()),
        ("time", pa.float64()),
        ("session_id", pa.int64()),
        ("user_id", pa.int32()),
        ("position", pa.int16()),
        ("item_id", pa.int32()),
        ("score", pa.float32()),
        ("pscore", pa.float32()),
        ("inclusion_pscore", pa.float32()),
        ("examination", pa.float32()),
        ("click", pa.bool_()),
        ("reward", pa.float32()),
        ("policy", pa.string()),
    ]
)


def log_schema(extras: Mapping[str, np.dtype] | None = None) -> pa.Schema:
    """``LOG_SCHEMA`` followed by one column per extra (name -> numpy dtype), in order.

    Raises
    ------
    ValidationError
        If an extra column reuses a standard column's name.
    """
    if not extras:
        return LOG_SCHEMA
    clash = sorted(set(extras) & set(LOG_SCHEMA.names))
    if clash:
        raise ValidationError(f"extra log columns must not reuse standard names; got {clash}")
    return pa.schema(
        [*LOG_SCHEMA, *(pa.field(name, pa.from_numpy_dtype(np.dtype(dt))) for name, dt in extras.items())]
    )


class ImpressionLogWriter:
    """Buffer a run's impressions and write them as Parquet parts under ``directory``.

    Parameters
    ----------
    directory : Path
        Folder of this run's parts (created on first flush).
    policy : str
        Value of the ``policy`` column (the config label).
    n_users : int
        Used to build ``session_id = round · n_users + user_id`` (unique per session).
    log_fraction : float in [0, 1]
        Share of sessions kept.
    rng : numpy.random.Generator
        The run's ``log`` stream (one uniform per session, always drawn).
    flush_rows : int
        Rows buffered before a part is written.
    """

    def __init__(
        self,
        directory: Path,
        policy: str,
        n_users: int,
        log_fraction: float,
        rng: np.random.Generator,
        flush_rows: int = 2_000_000,
    ) -> None:
        self.directory = Path(directory)
        self.policy = policy
        self.n_users = n_users
        self.log_fraction = log_fraction
        self.rng = rng
        self.flush_rows = flush_rows
        self._buffer: list[dict[str, np.ndarray]] = []
        self._extras: dict[str, np.dtype] | None = None  # fixed by the first appended round
        self._rows = 0
        self._part = 0
        self.rows_written = 0

    def append(
        self,
        round_: int,
        time: float,
        users: np.ndarray,
        items: np.ndarray,
        scores: np.ndarray,
        pscore: np.ndarray,
        inclusion_pscore: np.ndarray,
        examination: np.ndarray,
        clicks: np.ndarray,
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Add one round; ``users`` has shape (n,), the other arrays (n, K).

        ``extras`` (``Slate.extras``) adds columns of shape (n, K) after the standard ones; every
        round of a run must carry the same names and dtypes.

        Raises
        ------
        ValidationError
            If ``extras`` differs in names or dtypes from the run's first round, or an extra
            array does not have shape (n, K).
        """
        extras = dict(extras or {})
        spec = {name: np.asarray(v).dtype for name, v in extras.items()}
        if self._extras is None:
            log_schema(spec)  # names checked once
            self._extras = spec
        elif spec != self._extras:
            raise ValidationError(
                f"extra log columns must be the same in every round; first {self._extras}, now {spec}"
            )
        for name, v in extras.items():
            if np.shape(v) != items.shape:
                raise ValidationError(
                    f"extra log column {name!r} must have the slate's shape {items.shape}; got {np.shape(v)}"
                )
        keep = self.rng.random(users.size) < self.log_fraction
        if not keep.any():
            return
        users, k = users[keep], items.shape[1]
        m = users.size * k
        self._buffer.append(
            {
                "round": np.full(m, round_, np.int32),
                "time": np.full(m, time, np.float64),
                "session_id": np.repeat(round_ * np.int64(self.n_users) + users, k),
                "user_id": np.repeat(users.astype(np.int32), k),
                "position": np.tile(np.arange(k, dtype=np.int16), users.size),
                "item_id": items[keep].ravel().astype(np.int32),
                "score": scores[keep].ravel().astype(np.float32),
                "pscore": pscore[keep].ravel().astype(np.float32),
                "inclusion_pscore": inclusion_pscore[keep].ravel().astype(np.float32),
                "examination": examination[keep].ravel().astype(np.float32),
                "click": clicks[keep].ravel(),
                "reward": clicks[keep].ravel().astype(np.float32),
                **{name: np.asarray(v)[keep].ravel() for name, v in extras.items()},
            }
        )
        self._rows += m
        if self._rows >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as the next part file."""
        if not self._buffer:
            return
        cols = {name: np.concatenate([b[name] for b in self._buffer]) for name in self._buffer[0]}
        n = cols["round"].size
        schema = log_schema(self._extras)
        arrays = [pa.array(cols[f.name], type=f.type) for f in LOG_SCHEMA if f.name != "policy"]
        arrays.append(pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [self.policy]).cast(pa.string()))
        arrays += [pa.array(cols[f.name], type=f.type) for f in schema if f.name not in LOG_SCHEMA.names]
        table = pa.Table.from_arrays(arrays, schema=schema)
        write_parquet(self.directory / f"part-{self._part:05d}.parquet", table)
        self._part += 1
        self.rows_written += n
        self._buffer.clear()
        self._rows = 0

    def close(self) -> None:
        """Flush what is left."""
        self.flush()
