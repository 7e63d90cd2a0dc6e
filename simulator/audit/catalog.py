"""What the audit knows about the items: catalog size, categories, pre-system popularity.

Exposure metrics must count the items a loop stopped showing, so the **catalog size** matters:

- given (``--catalog-size N``; item ids must then be in ``[0, N)``), or
- the Open Bandit Dataset's ``item_context.csv`` beside the log (one row per item: 80), or
- the simulation's own config when the log sits in a recloop results folder
  (``<run>/manifest.json``; the catalog is rebuilt from the config and the seed), or
- **unknown**: the audit then works over the items seen anywhere in the log, and every report
  says that Gini and coverage are over *observed* items only (items never shown in any window
  are invisible; coverage is then relative to them and Gini is a lower bound).

Categories (for per-user entropy) come from ``--items FILE`` (``item_id`` and a category
column: ``--category-column``, else ``genre``, else ``category``), from OBD's
``item_context.csv`` (column ``item_feature_3``: the coarsest of OBD's hashed categorical item
features, 7 values; ``item_feature_2``, 21 values, nests inside it), or from the simulation's
genres. Pre-system popularity (for the popularity-bias Spearman and the long-tail head) comes
from ``--popularity FILE`` (``item_id`` and ``popularity``) or the simulation's Zipf prior.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.errors import LogSchemaError, RecloopError, ValidationError

__all__ = ["ItemInfo", "RunMetadata", "build_item_info", "find_run_metadata", "read_item_table"]

#: Category column of OBD's item_context.csv (see the module docstring).
OBD_CATEGORY_COLUMN = "item_feature_3"
_CATEGORY_DEFAULTS = ("genre", "category")
_POPULARITY_DEFAULTS = ("popularity", "prior_popularity", "count", "n")


@dataclass(frozen=True)
class ItemInfo:
    """Item metadata aligned on the audit's dense item index ``0..n_items-1``.

    Attributes
    ----------
    n_items : int
        I, the size of the item index.
    catalog_known : bool
        Whether I is the whole catalog (else: the items observed in the log).
    catalog_source : str
        Where I came from, for the report.
    item_ids : ndarray of shape (I,), int64, or None
        Original id of each dense index when the catalog is unknown; None when ids are
        ``0..I-1`` themselves.
    category : ndarray of shape (I,), int64, or None
        Category code per item (-1 = unknown); None when no categories are known.
    category_names : list of str
        Name of each code.
    category_source : str
        Where the categories came from, or why there are none.
    popularity : ndarray of shape (I,), float64, or None
        Pre-system popularity per item (0 where the file has no row for it).
    popularity_source : str
        Where it came from, or why there is none.
    """

    n_items: int
    catalog_known: bool
    catalog_source: str
    item_ids: np.ndarray | None
    category: np.ndarray | None
    category_names: list[str]
    category_source: str
    popularity: np.ndarray | None
    popularity_source: str

    @property
    def n_categories(self) -> int:
        return len(self.category_names)

    def dense(self, item: np.ndarray) -> np.ndarray:
        """Dense index of item ids already validated to be in the index; int64 of shape (n,)."""
        if self.item_ids is None:
            return item
        return np.searchsorted(self.item_ids, item)


@dataclass(frozen=True)
class RunMetadata:
    """Catalog facts of a simulated run, rebuilt from its manifest's config and a seed."""

    manifest: Path
    seed: int
    n_items: int
    genre: np.ndarray
    n_genres: int
    prior_popularity: np.ndarray


def read_item_table(path: str | Path, what: str) -> pa.Table:
    """Read a small item table (CSV or Parquet) whole.

    Raises
    ------
    ValidationError
        If the file does not exist or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"{what} file not found: {path}")
    try:
        if path.name.lower().endswith((".csv", ".csv.gz")):
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path)
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValidationError(f"cannot read {what} file {path}: {err}") from None


def _id_column(table: pa.Table, path: Path, what: str) -> np.ndarray:
    if "item_id" not in table.column_names:
        raise LogSchemaError(f"{what} file {path} has no 'item_id' column; columns: {table.column_names}")
    col = table["item_id"]
    if col.null_count:
        raise LogSchemaError(f"{what} file {path}: column 'item_id' has {col.null_count} null values")
    if not pa.types.is_integer(col.type):
        raise LogSchemaError(f"{what} file {path}: column 'item_id' must be integers; got type {col.type}")
    ids = col.to_numpy().astype(np.int64)
    if ids.size and ids.min() < 0:
        raise LogSchemaError(f"{what} file {path}: column 'item_id' must be >= 0; got {ids.min()}")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise LogSchemaError(
            f"{what} file {path}: item_id {uniq[np.argmax(counts > 1)]} appears more than once"
        )
    return ids


def _choose_column(
    table: pa.Table, wanted: str | None, defaults: tuple[str, ...], path: Path, what: str, flag: str
) -> str:
    names = [c for c in table.column_names if c not in ("item_id", "", "index")]
    if wanted is not None:
        if wanted not in table.column_names:
            close = difflib.get_close_matches(wanted, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise LogSchemaError(f"{what} file {path} has no column {wanted!r}{hint}; columns: {names}")
        return wanted
    for c in defaults:
        if c in table.column_names:
            return c
    raise LogSchemaError(
        f"{what} file {path}: name the column with {flag} (none of {list(defaults)} is present); "
        f"columns: {names}"
    )


def _align(
    ids: np.ndarray,
    values: np.ndarray,
    info_ids: np.ndarray | None,
    n_items: int,
    fill,
    path: Path,
    what: str,
):
    """Values of the file's items placed on the dense index (``fill`` where absent)."""
    out = np.full(n_items, fill, dtype=values.dtype)
    if info_ids is None:
        inside = ids < n_items
        if not inside.all():
            bad = ids[~inside][0]
            raise LogSchemaError(
                f"{what} file {path}: item_id {bad} is outside the catalog of {n_items} items "
                f"(ids 0..{n_items - 1})"
            )
        out[ids] = values
        return out, int(inside.sum())
    pos = np.searchsorted(info_ids, ids)
    pos_c = np.minimum(pos, max(info_ids.size - 1, 0))
    hit = (pos < info_ids.size) & (info_ids[pos_c] == ids) if info_ids.size else np.zeros(ids.size, bool)
    out[pos_c[hit]] = values[hit]
    return out, int(hit.sum())


def find_run_metadata(path: Path, seed: int | None) -> tuple[RunMetadata | None, str]:
    """The simulated catalog behind a log inside a recloop results folder, if any.

    Looks for ``manifest.json`` (with a ``config``) in the log's folder and up to four parents;
    the seed is ``seed``, else the ``seed=<s>`` of the path, else the manifest's only seed.

    Returns
    -------
    (RunMetadata or None, note)
        ``note`` says what was found or why nothing was used.
    """
    start = path if path.is_dir() else path.parent
    manifest = None
    for folder in [start, *list(start.parents)[:4]]:
        cand = folder / "manifest.json"
        if cand.is_file():
            manifest = cand
            break
    if manifest is None:
        return None, "no recloop run manifest found above the log"
    try:
        data = json.loads(manifest.read_text())
        config = data["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"{manifest} is not a recloop run manifest"
    if seed is None:
        m = re.findall(r"seed=(\d+)", str(path.resolve()))
        if m:
            seed = int(m[-1])
        elif len(data.get("seeds") or []) == 1:
            seed = int(data["seeds"][0])
        else:
            return None, f"{manifest}: several seeds; pass --seed to use the simulated catalog"
    try:
        from simulator.catalog.catalog import make_catalog
        from simulator.config import parse_config
        from simulator.rng import stream

        cfg = parse_config(config)
        cat = make_catalog(cfg.catalog, stream(seed, "catalog"))
    except RecloopError as err:
        return None, f"{manifest}: cannot rebuild the catalog ({err})"
    meta = RunMetadata(
        manifest, seed, cat.n_items, cat.genre.astype(np.int64), cat.n_genres, cat.prior_popularity
    )
    return meta, f"simulation manifest {manifest} (seed {seed})"


def build_item_info(
    *,
    observed_ids: np.ndarray | None,
    max_item: int,
    catalog_size: int | None,
    items_path: Path | None,
    category_column: str | None,
    popularity_path: Path | None,
    obd_item_context: Path | None,
    run: RunMetadata | None,
) -> ItemInfo:
    """Assemble :class:`ItemInfo` from the options, the OBD item context and a simulated run.

    Parameters
    ----------
    observed_ids : ndarray of shape (n,), int64, or None
        Sorted distinct item ids of the log (needed when the catalog size is unknown).
    max_item : int
        Largest item id in the log.
    catalog_size : int or None
        ``--catalog-size``.
    items_path, category_column, popularity_path : optional
        ``--items``, ``--category-column``, ``--popularity``.
    obd_item_context : Path or None
        ``item_context.csv`` of an OBD log (catalog size and categories).
    run : RunMetadata or None
        A simulated run's catalog (used for whatever the options leave open).

    Raises
    ------
    ValidationError, LogSchemaError
        Bad files or values, an item id outside the catalog (the message names the id and the
        catalog size and where it came from).
    """
    ctx_table = read_item_table(obd_item_context, "OBD item_context") if obd_item_context else None
    # catalog size
    if catalog_size is not None:
        n, known, source = catalog_size, True, f"--catalog-size {catalog_size}"
    elif ctx_table is not None:
        n, known = ctx_table.num_rows, True
        source = f"{obd_item_context} ({ctx_table.num_rows} items)"
    elif run is not None:
        n, known, source = (
            run.n_items,
            True,
            f"the simulated catalog ({run.n_items} items) from {run.manifest}",
        )
    else:
        n, known, source = 0, False, ""
    item_ids = None
    if known:
        if max_item >= n:
            raise LogSchemaError(
                f"column 'item_id' holds id {max_item}, outside the catalog of {n} items (ids 0..{n - 1}) "
                f"given by {source}"
            )
    else:
        if observed_ids is None:
            raise ValidationError("the observed item ids are needed when the catalog size is unknown")
        item_ids = observed_ids
        n = int(observed_ids.size)
        source = (
            f"UNKNOWN — metrics are over the {n} items seen anywhere in the log; items never shown "
            "are invisible, so coverage is relative to those and the Gini is a lower bound "
            "(give --catalog-size)"
        )

    # categories
    category, names = None, []
    cat_source = (
        "not known: per-user category entropy is not computable "
        "(give --items FILE with item_id and a category column)"
    )
    table, tpath, col = None, None, None
    if items_path is not None:
        table, tpath = read_item_table(items_path, "items"), Path(items_path)
        col = _choose_column(table, category_column, _CATEGORY_DEFAULTS, tpath, "items", "--category-column")
    elif ctx_table is not None:
        table, tpath = ctx_table, Path(obd_item_context)  # type: ignore[arg-type]
        col = category_column or OBD_CATEGORY_COLUMN
        col = _choose_column(table, col, (), tpath, "OBD item_context", "--category-column")
    if table is not None:
        ids = _id_column(table, tpath, "items")
        raw = table[col]
        if raw.null_count:
            raise LogSchemaError(f"items file {tpath}: column {col!r} has {raw.null_count} null values")
        enc = pc.dictionary_encode(raw).combine_chunks()
        codes = enc.indices.to_numpy().astype(np.int64)
        names = [str(v) for v in enc.dictionary.to_pylist()]
        category, matched = _align(ids, codes, item_ids, n, -1, tpath, "items")
        unknown = int((category < 0).sum())
        cat_source = f"column {col!r} of {tpath} ({len(names)} categories)"
        if unknown:
            cat_source += f"; {unknown} of {n} items have no category there and are left out of the entropy"
    elif run is not None:
        category = run.genre.copy()
        names = [f"genre {g}" for g in range(run.n_genres)]
        if item_ids is not None:
            category = np.where(item_ids < run.n_items, run.genre[np.minimum(item_ids, run.n_items - 1)], -1)
        cat_source = f"the simulated genres ({run.n_genres}) from {run.manifest}"

    # popularity
    popularity = None
    pop_source = (
        "not given: popularity bias is not computable (give --popularity FILE with item_id and popularity)"
    )
    if popularity_path is not None:
        ptable, ppath = read_item_table(popularity_path, "popularity"), Path(popularity_path)
        ids = _id_column(ptable, ppath, "popularity")
        pcol = _choose_column(
            ptable, None, _POPULARITY_DEFAULTS, ppath, "popularity", "a 'popularity' column"
        )
        vals = ptable[pcol]
        if vals.null_count or not (pa.types.is_integer(vals.type) or pa.types.is_floating(vals.type)):
            raise LogSchemaError(f"popularity file {ppath}: column {pcol!r} must be numbers without nulls")
        v = vals.to_numpy().astype(np.float64)
        if not np.isfinite(v).all() or (v < 0).any():
            bad = v[~(np.isfinite(v) & (v >= 0))][0]
            raise LogSchemaError(
                f"popularity file {ppath}: column {pcol!r} must be finite and >= 0; got {bad}"
            )
        popularity, matched = _align(ids, v, item_ids, n, 0.0, ppath, "popularity")
        pop_source = f"column {pcol!r} of {ppath} ({matched} of {n} items; the others count as 0)"
    elif run is not None:
        popularity = run.prior_popularity.astype(np.float64)
        if item_ids is not None:
            popularity = np.where(
                item_ids < run.n_items, run.prior_popularity[np.minimum(item_ids, run.n_items - 1)], 0.0
            )
        pop_source = f"the simulated Zipf prior popularity from {run.manifest}"
    return ItemInfo(n, known, source, item_ids, category, names, cat_source, popularity, pop_source)
