"""Logged feedback for off-policy evaluation: the Open Bandit Dataset and recloop's own logs.

Two loaders turn logs into the arrays the estimators take:

* :func:`load_open_bandit_dataset` reads the Open Bandit Dataset (OBD; Saito et al. 2021)
  ``<data_dir>/<behavior_policy>/<campaign>.csv`` (the small sample shipped with obp has
  ``random/all.csv`` and ``bts/all.csv``). The data are never copied: pass the folder of your
  copy, or set ``RECLOOP_OBD_DIR``; the default is ``<repo>/../shared/data/obd``.
* :func:`load_impression_log` / :func:`load_slate_log` read recloop's impression log (Parquet,
  one row per impression; DESIGN.md §7) — a file, a partitioned folder, a ``pyarrow.Table`` or
  a pandas ``DataFrame`` — into impression-level or slate-level arrays.

:func:`empirical_action_dist` turns a log into the context-free (item, position) frequencies
used as a target policy's ``action_dist`` when only its log is known.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.errors import LogSchemaError, ValidationError

__all__ = [
    "OBD_ENV_VAR",
    "BanditFeedback",
    "SlateFeedback",
    "default_obd_dir",
    "empirical_action_dist",
    "load_impression_log",
    "load_open_bandit_dataset",
    "load_slate_log",
]

#: Environment variable that points the OBD loader at a copy of the dataset.
OBD_ENV_VAR = "RECLOOP_OBD_DIR"

_OBD_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")
_OBD_USER_COLUMNS = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")


@dataclass(frozen=True, eq=False)
class BanditFeedback:
    """Impression-level logged feedback in the estimators' convention.

    Attributes
    ----------
    action : ndarray of shape (n_rounds,), int64
        Logged item per impression.
    position : ndarray of shape (n_rounds,), int64
        0-based position of the impression.
    reward : ndarray of shape (n_rounds,), float64
        Reward (click) of the impression.
    pscore : ndarray of shape (n_rounds,), float64
        Logging propensity of the (item, position) pair, in (0, 1].
    n_actions : int
        Number of items.
    len_list : int
        Number of positions.
    context : ndarray of shape (n_rounds, d), float64, or None
        Context features, if the source has them (OBD: one-hot user features).
    source : str
        Where the data came from.
    """

    action: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    n_actions: int
    len_list: int
    context: np.ndarray | None = None
    source: str = ""

    @property
    def n_rounds(self) -> int:
        """Number of logged impressions."""
        return int(self.action.shape[0])

    def estimator_kwargs(self) -> dict[str, np.ndarray]:
        """``reward``, ``action``, ``pscore``, ``position`` for ``estimate_policy_value(**...)``."""
        return {
            "reward": self.reward,
            "action": self.action,
            "pscore": self.pscore,
            "position": self.position,
        }


@dataclass(frozen=True, eq=False)
class SlateFeedback:
    """Slate-level logged feedback for :mod:`simulator.ope.slate`.

    Attributes
    ----------
    slate_action : ndarray of shape (n_slates, len_list), int64
        Item at each position of each logged slate.
    reward : ndarray of shape (n_slates, len_list), float64
        Per-position rewards.
    pscore : ndarray of shape (n_slates, len_list), float64
        Per-position propensity of the (item, position) pair.
    inclusion_pscore : ndarray of shape (n_slates, len_list), float64, or None
        P(item anywhere in the slate), if logged.
    round : ndarray of shape (n_slates,), int64
    session_id : ndarray of shape (n_slates,), int64
    n_actions : int
    source : str
    """

    slate_action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    inclusion_pscore: np.ndarray | None
    round: np.ndarray
    session_id: np.ndarray
    n_actions: int
    source: str = ""

    @property
    def n_slates(self) -> int:
        """Number of logged slates."""
        return int(self.slate_action.shape[0])

    @property
    def len_list(self) -> int:
        """Slate length."""
        return int(self.slate_action.shape[1])

    def estimator_kwargs(self) -> dict[str, np.ndarray]:
        """``slate_action``, ``reward``, ``pscore`` for the slate estimators."""
        return {"slate_action": self.slate_action, "reward": self.reward, "pscore": self.pscore}


# ---------------------------------------------------------------------------------------------
# Open Bandit Dataset


def default_obd_dir() -> Path:
    """The OBD folder: ``$RECLOOP_OBD_DIR`` if set, else ``<repo>/../shared/data/obd``."""
    env = os.environ.get(OBD_ENV_VAR)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data" / "obd"


def load_open_bandit_dataset(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    behavior_policy: str = "random",
    campaign: str = "all",
) -> BanditFeedback:
    """Load one Open Bandit Dataset log as impression-level arrays.

    Parameters
    ----------
    data_dir : path, optional
        Folder holding ``<behavior_policy>/<campaign>.csv``; default :func:`default_obd_dir`.
    behavior_policy : {"random", "bts"}, default "random"
        Logging policy: uniform random or Bernoulli Thompson sampling.
    campaign : {"all", "men", "women"}, default "all"
        Campaign (the small sample has "all" only).

    Returns
    -------
    BanditFeedback
        Rows sorted by timestamp (stable), as obp does. ``action`` = ``item_id``;
        ``position`` = OBD position − 1 (0 = top); ``reward`` = ``click``; ``pscore`` =
        ``propensity_score`` (P(item at that position) under the logging policy); ``context`` =
        one-hot ``user_feature_0..3`` with the first level of each dropped (obp's
        ``pd.get_dummies(..., drop_first=True)``); ``n_actions`` = number of rows of
        ``item_context.csv`` if present, else ``max(item_id) + 1``; ``len_list`` = 3.

    Raises
    ------
    FileNotFoundError
        If the csv does not exist (the message names the path and ``RECLOOP_OBD_DIR``).
    LogSchemaError
        If a required column is missing or a value is outside the schema.

    References
    ----------
    Saito, Y., Aihara, S., Matsutani, M. & Narita, Y. (2021). Open Bandit Dataset and Pipeline:
    Towards realistic and reproducible off-policy evaluation. NeurIPS Datasets and Benchmarks.
    """
    import pandas as pd

    if behavior_policy not in ("random", "bts"):
        raise ValidationError(f"behavior_policy must be 'random' or 'bts'; got {behavior_policy!r}")
    root = Path(data_dir) if data_dir is not None else default_obd_dir()
    path = root / behavior_policy / f"{campaign}.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"Open Bandit Dataset file not found: {path}; pass data_dir= or set {OBD_ENV_VAR} to "
            "the folder holding random/ and bts/"
        )
    wanted = (*_OBD_COLUMNS, *_OBD_USER_COLUMNS)
    header = pd.read_csv(path, nrows=0).columns
    missing = [c for c in wanted if c not in header]
    if missing:
        raise LogSchemaError(f"{path} lacks required OBD columns {missing}")
    df = pd.read_csv(path, usecols=list(wanted))  # skip the 80 user-item affinity columns
    df = df.sort_values("timestamp", kind="stable")
    action = df["item_id"].to_numpy(np.int64)
    position = df["position"].to_numpy(np.int64) - 1
    if position.min() < 0:
        raise LogSchemaError(f"{path}: position must be 1-based (>= 1); got {position.min() + 1}")
    reward = df["click"].to_numpy(np.float64)
    pscore = df["propensity_score"].to_numpy(np.float64)
    _check_pscore_column(pscore, "propensity_score", str(path))
    context = pd.get_dummies(df[list(_OBD_USER_COLUMNS)], drop_first=True).to_numpy(np.float64)
    item_path = root / behavior_policy / "item_context.csv"
    n_actions = int(action.max()) + 1
    if item_path.is_file():
        n_actions = max(n_actions, len(pd.read_csv(item_path, index_col=0)))
    return BanditFeedback(
        action=action,
        position=position,
        reward=reward,
        pscore=pscore,
        n_actions=n_actions,
        len_list=int(position.max()) + 1,
        context=context,
        source=str(path),
    )


def empirical_action_dist(
    action: np.ndarray, position: np.ndarray, n_actions: int, len_list: int
) -> np.ndarray:
    """Context-free (item, position) frequencies of a log: P̂(a at k) = #(a, k) / #(k).

    Parameters
    ----------
    action : ndarray of shape (n_rounds,), int
    position : ndarray of shape (n_rounds,), int
    n_actions, len_list : int

    Returns
    -------
    ndarray of shape (n_actions, len_list), float64
        Each column sums to 1 (every position must occur in the log). Broadcast it over rounds
        with ``np.broadcast_to(p[None], (n_rounds, n_actions, len_list))`` (no copy).

    Raises
    ------
    ValidationError
        If a position in [0, len_list) never occurs, or values are out of range.

    Notes
    -----
    For a policy whose propensities change over the log (OBD's batch-updated Bernoulli TS),
    #(a, k) / #(k) is an unbiased estimate of its time-averaged marginal P(a at k), unlike the
    mean of the logged propensities of the shown pairs, which over-weights the times a pair was
    likely.
    """
    act = np.asarray(action)
    pos = np.asarray(position)
    if act.shape != pos.shape or act.ndim != 1:
        raise ValidationError(
            f"action and position must be 1-D of equal length; got {act.shape} and {pos.shape}"
        )
    if act.size and (act.min() < 0 or act.max() >= n_actions):
        raise ValidationError(f"action must be in [0, {n_actions}); got range [{act.min()}, {act.max()}]")
    if pos.size and (pos.min() < 0 or pos.max() >= len_list):
        raise ValidationError(f"position must be in [0, {len_list}); got range [{pos.min()}, {pos.max()}]")
    counts = np.zeros((n_actions, len_list), dtype=np.float64)
    np.add.at(counts, (act, pos), 1.0)
    per_pos = counts.sum(axis=0)
    if (per_pos == 0).any():
        k = int(np.argmax(per_pos == 0))
        raise ValidationError(f"position {k} never occurs in the log, so its distribution is undefined")
    return counts / per_pos


# ---------------------------------------------------------------------------------------------
# recloop impression log (Parquet)


def _check_pscore_column(p: np.ndarray, column: str, source: str) -> None:
    ok = (p > 0.0) & (p <= 1.0)  # NaN fails
    if not ok.all():
        i = int(np.argmax(~ok))
        raise LogSchemaError(
            f"{source}: column {column!r} must hold propensities in (0, 1] (never NaN); got {p[i]} at row {i}"
        )


def _read_table(
    source: Any, columns: list[str], optional: list[str], policy: str | None
) -> tuple[pa.Table, str]:
    """Read the needed columns of a log given as a path, pyarrow Table or pandas DataFrame."""
    if isinstance(source, pa.Table):
        table, name = source, "impression log (pyarrow.Table)"
    elif hasattr(source, "to_records") and hasattr(source, "columns"):  # pandas DataFrame
        table = pa.Table.from_pandas(source, preserve_index=False)
        name = "impression log (DataFrame)"
    else:
        import pyarrow.dataset as pads

        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"impression log not found: {path}")
        dataset = pads.dataset(path, format="parquet", partitioning="hive")
        names = set(dataset.schema.names)
        _require(names, columns, str(path), policy)
        wanted = [c for c in [*columns, *optional, "policy"] if c in names]
        flt = None
        if policy is not None:
            flt = pads.field("policy") == policy
        return dataset.to_table(columns=list(dict.fromkeys(wanted)), filter=flt), str(path)
    _require(set(table.column_names), columns, name, policy)
    if policy is not None:
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table["policy"], policy))
    return table, name


def _require(names: set[str], columns: list[str], source: str, policy: str | None) -> None:
    missing = [c for c in columns if c not in names]
    if "pscore" in missing:
        raise LogSchemaError(
            f"{source} is missing the propensity column 'pscore', which off-policy evaluation "
            f"needs (the log must store propensities at decision time); columns: {sorted(names)}"
        )
    if missing:
        raise LogSchemaError(f"{source} is missing required columns {missing}; columns: {sorted(names)}")
    if policy is not None and "policy" not in names:
        raise LogSchemaError(f"{source} has no 'policy' column to filter on policy={policy!r}")


def _column(table: pa.Table, name: str, dtype: Any, source: str) -> np.ndarray:
    col = table[name]
    if col.null_count:
        mask = np.asarray(col.is_null())
        raise LogSchemaError(
            f"{source}: column {name!r} has {col.null_count} null values (first at row "
            f"{int(np.argmax(mask))})"
        )
    return np.asarray(col.to_numpy()).astype(dtype, copy=False)


def _n_actions(item: np.ndarray, n_actions: int | None) -> int:
    top = int(item.max()) + 1 if item.size else 0
    if n_actions is None:
        return top
    if n_actions < top:
        raise ValidationError(f"n_actions must exceed every item_id; got {n_actions} <= {top - 1}")
    return int(n_actions)


def load_impression_log(
    source: Any,
    *,
    reward_column: str = "reward",
    policy: str | None = None,
    n_actions: int | None = None,
) -> BanditFeedback:
    """Impression-level arrays from a recloop impression log.

    Parameters
    ----------
    source : path, pyarrow.Table or pandas.DataFrame
        A Parquet file or (hive-partitioned) folder in recloop's schema
        (``round int32, time float64, session_id int64, user_id int32, position int16,
        item_id int32, score float32, pscore float32, inclusion_pscore float32,
        examination float32, click bool, reward float32, policy string``; only ``item_id``,
        ``position``, ``pscore`` and the reward column are required).
    reward_column : str, default "reward"
        Column used as reward (``"click"`` for clicks).
    policy : str, optional
        Keep only rows logged by this policy (needs the ``policy`` column).
    n_actions : int, optional
        Catalogue size; default ``max(item_id) + 1``.

    Returns
    -------
    BanditFeedback
        One round per impression, in the log's row order; ``len_list = max(position) + 1``;
        no context.

    Raises
    ------
    LogSchemaError
        If ``pscore`` (or another required column) is missing, holds nulls, or a propensity is
        not in (0, 1].
    FileNotFoundError
        If the path does not exist.
    """
    cols = ["item_id", "position", "pscore", reward_column]
    table, name = _read_table(source, cols, [], policy)
    if table.num_rows == 0:
        raise LogSchemaError(f"{name} has no rows" + (f" for policy={policy!r}" if policy else ""))
    item = _column(table, "item_id", np.int64, name)
    position = _column(table, "position", np.int64, name)
    pscore = _column(table, "pscore", np.float64, name)
    reward = _column(table, reward_column, np.float64, name)
    _check_pscore_column(pscore, "pscore", name)
    if item.min() < 0 or position.min() < 0:
        raise LogSchemaError(f"{name}: item_id and position must be >= 0")
    return BanditFeedback(
        action=item,
        position=position,
        reward=reward,
        pscore=pscore,
        n_actions=_n_actions(item, n_actions),
        len_list=int(position.max()) + 1,
        context=None,
        source=name,
    )


def load_slate_log(
    source: Any,
    *,
    reward_column: str = "reward",
    policy: str | None = None,
    n_actions: int | None = None,
) -> SlateFeedback:
    """Slate-level arrays from a recloop impression log.

    Impressions are grouped into slates by ``(round, session_id)`` and ordered by ``position``;
    every slate must show each position 0..L−1 exactly once (L = max(position) + 1).

    Parameters
    ----------
    source, reward_column, policy, n_actions
        As in :func:`load_impression_log`; ``round`` and ``session_id`` are required too,
        ``inclusion_pscore`` is read when present.

    Returns
    -------
    SlateFeedback
        Slates sorted by (round, session_id).

    Raises
    ------
    LogSchemaError
        As :func:`load_impression_log`, or if a slate is incomplete or repeats a position.
    """
    cols = ["round", "session_id", "item_id", "position", "pscore", reward_column]
    table, name = _read_table(source, cols, ["inclusion_pscore"], policy)
    if table.num_rows == 0:
        raise LogSchemaError(f"{name} has no rows" + (f" for policy={policy!r}" if policy else ""))
    rnd = _column(table, "round", np.int64, name)
    session = _column(table, "session_id", np.int64, name)
    item = _column(table, "item_id", np.int64, name)
    position = _column(table, "position", np.int64, name)
    pscore = _column(table, "pscore", np.float64, name)
    reward = _column(table, reward_column, np.float64, name)
    _check_pscore_column(pscore, "pscore", name)
    incl = None
    if "inclusion_pscore" in table.column_names:
        incl = _column(table, "inclusion_pscore", np.float64, name)
    if item.min() < 0 or position.min() < 0:
        raise LogSchemaError(f"{name}: item_id and position must be >= 0")
    length = int(position.max()) + 1
    order = np.lexsort((position, session, rnd))
    rnd, session, position = rnd[order], session[order], position[order]
    new = np.ones(rnd.shape[0], dtype=bool)
    new[1:] = (rnd[1:] != rnd[:-1]) | (session[1:] != session[:-1])
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, rnd.shape[0]))
    if (sizes != length).any():
        j = int(np.argmax(sizes != length))
        s = starts[j]
        raise LogSchemaError(
            f"{name}: slate (round={rnd[s]}, session_id={session[s]}) has {sizes[j]} impressions; "
            f"every slate must fill positions 0..{length - 1} exactly once"
        )
    pos2 = position.reshape(-1, length)
    if (pos2 != np.arange(length)).any():
        j = int(np.argmax((pos2 != np.arange(length)).any(axis=1)))
        s = starts[j]
        raise LogSchemaError(
            f"{name}: slate (round={rnd[s]}, session_id={session[s]}) has positions "
            f"{pos2[j].tolist()}; expected each of 0..{length - 1} once"
        )
    n_slates = starts.shape[0]
    return SlateFeedback(
        slate_action=item[order].reshape(n_slates, length),
        reward=reward[order].reshape(n_slates, length),
        pscore=pscore[order].reshape(n_slates, length),
        inclusion_pscore=None if incl is None else incl[order].reshape(n_slates, length),
        round=rnd[starts],
        session_id=session[starts],
        n_actions=_n_actions(item, n_actions),
        source=name,
    )
