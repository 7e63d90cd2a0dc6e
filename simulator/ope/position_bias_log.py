"""Position-bias estimation on a logged file (``recloop position-bias LOG``).

Reads an impression log with the audit's reader (:func:`simulator.audit.reader.open_log`: a
recloop Parquet file or partitioned folder, a results run folder standing for its ``logs/``, a
CSV in recloop's schema, or an Open Bandit Dataset ``all.csv``), runs the estimators of
:mod:`simulator.ope.position_bias` on it and reports one row per (method, position):
relative examination ``theta_k / theta_ref`` with its percentile bootstrap interval over
sessions, the position's CTR and impression count, and the true relative examination when the
log has recloop's ``examination`` column (simulated logs).

Sessions (the bootstrap's resampling unit) are ``session_id`` when the log has it, else
``(round, user_id)`` (recloop's ``session_id = round * n_users + user_id``), else each row is
its own session (OBD: its small sample keeps single impressions, not whole slates).

The slate length ``K`` is, in order: ``n_positions`` when given, the ``simulation.slate_size``
of the recloop run manifest above the log, 3 for OBD, else ``max(position) + 1``. A position
outside ``[0, K)`` is an error that names the column, the value and its row.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.errors import LogSchemaError, RecloopError, ValidationError
from simulator.ope.position_bias import (
    PlacementCheck,
    PositionBiasEstimate,
    check_randomised_placement,
    estimate_position_bias,
)
from simulator.rng import stream

__all__ = [
    "CLI_METHODS",
    "OBD_SLATE_SIZE",
    "PositionBiasReport",
    "PositionLog",
    "format_report",
    "read_position_log",
    "run_position_bias",
    "write_report",
]

#: ``--method`` values and the estimator names they run (``all``: swap only when possible).
CLI_METHODS: dict[str, tuple[str, ...]] = {
    "ctr_ratio": ("ctr_ratio",),
    "swap": ("swap_intervention",),
    "em": ("em",),
    "all": ("ctr_ratio", "swap_intervention", "em"),
}
#: Positions of the Open Bandit Dataset's ZOZOTOWN slates (Saito et al. 2021).
OBD_SLATE_SIZE = 3


@dataclass(frozen=True, eq=False)
class PositionLog:
    """The impression columns the position-bias estimators need, validated.

    Attributes
    ----------
    path : Path
        The log read (a run folder is replaced by its ``logs/``).
    log_format : {"recloop", "obd"}
    session_id : ndarray of shape (n,), int64
        Session of each impression (see the module docstring for its source).
    position : ndarray of shape (n,), int64
        0-based position, in ``[0, n_positions)``.
    item_id : ndarray of shape (n,), int64
    click : ndarray of shape (n,), bool
    user_id : ndarray of shape (n,), int64, or None
        recloop's ``user_id``; None for OBD (no user id).
    examination : ndarray of shape (n,), float64, or None
        True examination probability (simulated recloop logs only).
    original_position : ndarray of shape (n,), int64, or None
        Slot before the randomised swap (logs of the swap experiment only).
    n_positions : int
        Slate length K.
    session_source : str
        Which column(s) gave ``session_id``.
    k_source : str
        Where ``n_positions`` came from.
    """

    path: Path
    log_format: str
    session_id: np.ndarray
    position: np.ndarray
    item_id: np.ndarray
    click: np.ndarray
    user_id: np.ndarray | None
    examination: np.ndarray | None
    original_position: np.ndarray | None
    n_positions: int
    session_source: str
    k_source: str

    @property
    def n_impressions(self) -> int:
        return int(self.position.shape[0])

    @property
    def n_sessions(self) -> int:
        return int(np.unique(self.session_id).shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        """The arrays :func:`~simulator.ope.position_bias.estimate_position_bias` reads."""
        cols = {
            "session_id": self.session_id,
            "position": self.position,
            "item_id": self.item_id,
            "click": self.click,
        }
        if self.original_position is not None:
            cols["original_position"] = self.original_position
        return cols

    def true_examination(self, reference: int) -> np.ndarray | None:
        """Mean logged examination per position divided by the reference's, shape (K,), or None."""
        if self.examination is None:
            return None
        k = self.n_positions
        shown = np.bincount(self.position, minlength=k)
        total = np.bincount(self.position, weights=self.examination, minlength=k)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(shown > 0, total / np.maximum(shown, 1), np.nan)
        if not np.isfinite(mean[reference]) or mean[reference] <= 0:
            return None
        return mean / mean[reference]


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _open(path: Path, log_format: str, policy: str | None, seed: int | None):
    """The audit's :func:`open_log`, with whichever clock column the log has (unused here)."""
    from simulator.audit.reader import open_log

    try:
        return open_log(path, log_format=log_format, policy=policy, seed=seed, needs="time")
    except LogSchemaError as err:
        if "needs a 'time'" not in str(err):
            raise
    try:
        return open_log(path, log_format=log_format, policy=policy, seed=seed, needs="round")
    except LogSchemaError as err:
        if "needs a 'round'" not in str(err):
            raise
    raise LogSchemaError(
        f"{path} has neither a 'time'/'timestamp' nor a 'round' column; recloop's impression log "
        "has both (position bias needs session_id or round + user_id, position, item_id, click)"
    )


def _manifest_slate_size(path: Path) -> tuple[int | None, str]:
    """``simulation.slate_size`` of the recloop run manifest in the log's folder or above."""
    start = path if path.is_dir() else path.parent
    for folder in [start, *list(start.resolve().parents)[:4]]:
        cand = folder / "manifest.json"
        if cand.is_file():
            try:
                k = json.loads(cand.read_text())["config"]["simulation"]["slate_size"]
            except (OSError, ValueError, KeyError, TypeError):
                return None, ""
            if isinstance(k, int) and k >= 1:
                return k, f"simulation.slate_size of {cand}"
            return None, ""
    return None, ""


def read_position_log(
    path: str | Path,
    *,
    log_format: str = "auto",
    policy: str | None = None,
    seed: int | None = None,
    n_positions: int | None = None,
) -> PositionLog:
    """Read the columns position-bias estimation needs from an impression log.

    Parameters
    ----------
    path : path
        recloop Parquet file/folder or CSV, a results run folder (its ``logs/``), or an OBD
        ``all.csv``.
    log_format : {"auto", "recloop", "obd"}
    policy, seed : optional
        Keep only this policy's / seed's rows (needed when a folder holds several).
    n_positions : int, optional
        Slate length K; default from the run manifest, 3 for OBD, else ``max(position) + 1``.

    Returns
    -------
    PositionLog

    Raises
    ------
    ValidationError
        Missing path, bad ``n_positions``, an empty log, a position outside ``[0, K)``.
    LogSchemaError
        Unreadable file, a missing column, a value outside the schema (named with its row).
    """
    import pyarrow as pa

    from simulator.audit.reader import _clicks, _floats, _ints

    if n_positions is not None and (
        isinstance(n_positions, bool) or not isinstance(n_positions, int) or n_positions < 1
    ):
        raise ValidationError(f"slate size must be an int >= 1; got {n_positions!r}")
    source = _open(Path(path), log_format, policy, seed)
    names = set(source.dataset.schema.names)
    obd = source.log_format == "obd"
    wanted = [source.item, source.position, source.click]
    if source.user:
        wanted.append(source.user)
    for extra in ("session_id", "round", "examination", "original_position"):
        if extra in names:
            wanted.append(extra)
    try:
        table = source.dataset.to_table(columns=list(dict.fromkeys(wanted)), filter=source.filter)
    except (pa.ArrowInvalid, OSError) as err:
        raise LogSchemaError(f"cannot read {source.path}: {err}") from None
    if table.num_rows == 0:
        where = f" with {source.filters}" if source.filters else ""
        raise ValidationError(f"not identifiable: {source.path} has no impressions{where}")

    def col(name: str) -> Any:
        return table.column(name).combine_chunks()

    item = _ints(col(source.item), source.item, 0, 0)
    base = source.position_base
    position = _ints(col(source.position), source.position, 0, base) - base
    click = _clicks(col(source.click), source.click, 0)
    user = _ints(col(source.user), source.user, 0, 0) if source.user else None
    if "session_id" in table.column_names:
        session = _ints(col("session_id"), "session_id", 0, None)
        session_source = "session_id"
    elif user is not None and "round" in table.column_names:
        rnd = _ints(col("round"), "round", 0, None)
        session = (rnd - rnd.min()) * (int(user.max()) + 1) + user
        session_source = "(round, user_id)"
    else:
        session = np.arange(table.num_rows, dtype=np.int64)
        session_source = "row (no session id: each impression is its own session)"
    exam = _floats(col("examination"), "examination", 0) if "examination" in table.column_names else None
    orig = None
    if "original_position" in table.column_names:
        orig = _ints(col("original_position"), "original_position", 0, base) - base

    k, k_source = n_positions, "--slate-size"
    if k is None:
        k, k_source = _manifest_slate_size(source.path)
    if k is None and obd:
        k, k_source = OBD_SLATE_SIZE, "the Open Bandit Dataset's 3 positions"
    if k is None:
        k, k_source = int(position.max()) + 1, "max(position) + 1"
    outside = position >= k
    if outside.any():
        i = int(np.argmax(outside))
        raise ValidationError(
            f"column 'position' must be < the slate size K = {k} ({k_source}; positions are "
            f"{base}-based in this log); got {int(position[i]) + base} at row {i} "
            f"({int(outside.sum())} rows outside the slate)"
        )
    if orig is not None and (orig >= k).any():
        i = int(np.argmax(orig >= k))
        raise ValidationError(
            f"column 'original_position' must be < the slate size K = {k}; "
            f"got {int(orig[i]) + base} at row {i}"
        )
    return PositionLog(
        path=source.path,
        log_format=source.log_format,
        session_id=session,
        position=position,
        item_id=item,
        click=click.astype(bool),
        user_id=user,
        examination=exam,
        original_position=orig,
        n_positions=int(k),
        session_source=session_source,
        k_source=k_source,
    )


# --------------------------------------------------------------------------------------------
# estimating
# --------------------------------------------------------------------------------------------


@dataclass
class PositionBiasReport:
    """Estimates of every method run on a log, and what went wrong where.

    Attributes
    ----------
    log : PositionLog
    estimates : dict of str to PositionBiasEstimate
        Per estimator name (``ctr_ratio``, ``swap_intervention``, ``em``).
    placement : PlacementCheck or None
        The randomised-placement check (run with ``ctr_ratio``).
    failed : dict of str to str
        Methods that could not run on this log, with the reason.
    warnings : list of str
        Warnings raised by the estimators (e.g. placement not randomised).
    truth : ndarray of shape (K,), float64, or None
        True relative examination, when the log has ``examination``.
    settings : dict
        reference, n_bootstrap, confidence, seed, em_key.
    """

    log: PositionLog
    estimates: dict[str, PositionBiasEstimate]
    placement: PlacementCheck | None
    failed: dict[str, str]
    warnings: list[str]
    truth: np.ndarray | None
    settings: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One row per (method, position).

        Columns: ``method, position`` (0-based), ``estimate, ci_low, ci_high``,
        ``true_examination`` (NaN when unknown), ``ctr, impressions, clicks``,
        ``identifiable``.
        """
        log, k = self.log, self.log.n_positions
        shown = np.bincount(log.position, minlength=k)
        clicks = np.bincount(log.position, weights=log.click, minlength=k)
        ctr = clicks / np.maximum(shown, 1)
        truth = self.truth if self.truth is not None else np.full(k, np.nan)
        frames = []
        for name, est in self.estimates.items():
            frames.append(
                pd.DataFrame(
                    {
                        "method": name,
                        "position": np.arange(k),
                        "estimate": est.examination,
                        "ci_low": est.ci_lower,
                        "ci_high": est.ci_upper,
                        "true_examination": truth,
                        "ctr": ctr,
                        "impressions": shown.astype(np.int64),
                        "clicks": clicks.astype(np.int64),
                        "identifiable": est.identifiable,
                    }
                )
            )
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _em_key(log: PositionLog, em_key: str) -> np.ndarray | None:
    if em_key == "item":
        return None
    if em_key != "user_item":
        raise ValidationError(f"em key must be 'item' or 'user_item'; got {em_key!r}")
    if log.user_id is None:
        raise ValidationError(
            f"em key 'user_item' needs a 'user_id' column, which this {log.log_format} log lacks; "
            "use the item key"
        )
    n_items = int(log.item_id.max()) + 1
    return log.user_id * n_items + log.item_id


def run_position_bias(
    log: PositionLog,
    method: str = "all",
    *,
    reference: int = 0,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    em_key: str = "item",
) -> PositionBiasReport:
    """Run the chosen estimators on a log.

    Parameters
    ----------
    log : PositionLog
    method : {"ctr_ratio", "swap", "em", "all"}, default "all"
        ``all`` runs the CTR ratio, EM and, when the log has ``original_position``, the swap
        estimator; a method that fails there is reported in ``failed`` and the others go on.
    reference : int
        Position with examination 1 (0-based).
    n_bootstrap, confidence
        Percentile bootstrap over sessions.
    seed : int
        Bootstrap replicates of method m draw from ``simulator.rng.stream(seed,
        "position-bias:<m>")``.
    em_key : {"item", "user_item"}
        Relevance key of EM: one relevance per item, or per (user, item) (personalised
        rankers; needs ``user_id`` and many impressions per pair).

    Returns
    -------
    PositionBiasReport

    Raises
    ------
    ValidationError
        Unknown method; a named method that cannot run (e.g. ``swap`` without
        ``original_position``); every method of ``all`` failing (the first reason is raised:
        a single position, no clicks, ...).
    """
    if method not in CLI_METHODS:
        import difflib

        close = difflib.get_close_matches(str(method), CLI_METHODS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValidationError(f"method must be one of {list(CLI_METHODS)}; got {method!r}{hint}")
    names = list(CLI_METHODS[method])
    failed: dict[str, str] = {}
    if "swap_intervention" in names and log.original_position is None:
        why = (
            "the swap estimator needs the column 'original_position' (the slot before the randomised "
            "swap, written by swap_with_reference), which this log lacks"
        )
        if method == "swap":
            raise ValidationError(why)
        failed["swap_intervention"] = why
        names.remove("swap_intervention")
    columns = log.columns()
    key = _em_key(log, em_key) if "em" in names else None
    estimates: dict[str, PositionBiasEstimate] = {}
    messages: list[str] = []
    errors: list[ValidationError] = []
    placement = None
    for name in names:
        kwargs: dict[str, Any] = {
            "reference": reference,
            "n_bootstrap": n_bootstrap,
            "confidence": confidence,
            "rng": stream(seed, f"position-bias:{name}"),
        }
        if name == "em" and key is not None:
            kwargs["relevance_key"] = key
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                est = estimate_position_bias(columns, name, n_positions=log.n_positions, **kwargs)
        except ValidationError as err:
            if len(names) == 1:
                raise
            errors.append(err)
            failed[name] = str(err)
            continue
        messages += [f"{name}: {w.message}" for w in caught]
        estimates[name] = est
        if name == "ctr_ratio":
            placement = check_randomised_placement(
                log.position, log.item_id, log.n_positions, click=log.click
            )
    if not estimates:
        raise errors[0] if errors else ValidationError(f"no method could run: {failed}")
    return PositionBiasReport(
        log=log,
        estimates=estimates,
        placement=placement,
        failed=failed,
        warnings=messages,
        truth=log.true_examination(reference),
        settings={
            "method": method,
            "reference": reference,
            "n_bootstrap": n_bootstrap,
            "confidence": confidence,
            "seed": seed,
            "em_key": em_key,
        },
    )


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def format_report(report: PositionBiasReport) -> str:
    """The text ``recloop position-bias`` prints: the log, the placement check, the table."""
    log = report.log
    lines = [
        f"log: {log.path} ({log.log_format}; {log.n_impressions:,} impressions, {log.n_sessions:,} "
        f"sessions, {int(log.click.sum()):,} clicks; K = {log.n_positions} from {log.k_source})",
        f"sessions: {log.session_source}; positions are 0-based (OBD's position 1 is 0)",
        f"examination relative to position {report.settings['reference']}; "
        f"{100 * report.settings['confidence']:g}% percentile bootstrap over sessions, "
        f"{report.settings['n_bootstrap']} replicates",
    ]
    if report.placement is not None:
        lines.append(f"placement check: {report.placement.message}")
    table = report.table()
    shown = table[["method", "position", "estimate", "ci_low", "ci_high"]].copy()
    if report.truth is not None:
        shown["true"] = table["true_examination"]
    lines += ["", shown.to_string(index=False, float_format=lambda x: f"{x:.3f}"), ""]
    for name, est in report.estimates.items():
        if not est.identifiable:
            lines.append(f"NOT IDENTIFIABLE ({name}): {est.reason}")
        elif est.reason:
            lines.append(f"note ({name}): {est.reason}")
    for name, why in report.failed.items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)


def write_report(report: PositionBiasReport, out: str | Path) -> list[Path]:
    """Write ``position_bias.csv`` (the table) and ``position_bias.json`` atomically into ``out``.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    RecloopError
        When ``out`` is a file.
    """
    from simulator.io import atomic_write_json, atomic_write_text

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RecloopError(f"--out {out} is a file, not a folder")
    table = report.table()
    csv_path, json_path = out / "position_bias.csv", out / "position_bias.json"
    atomic_write_text(csv_path, table.to_csv(index=False))
    log = report.log
    meta = {
        "log": str(log.path),
        "log_format": log.log_format,
        "n_impressions": log.n_impressions,
        "n_sessions": log.n_sessions,
        "n_clicks": int(log.click.sum()),
        "n_positions": log.n_positions,
        "n_positions_source": log.k_source,
        "sessions": log.session_source,
        **report.settings,
        "placement_check": None
        if report.placement is None
        else {
            "randomised": report.placement.randomised,
            "testable": report.placement.testable,
            "p_value": report.placement.p_value,
            "statistic": report.placement.statistic,
            "dof": report.placement.dof,
            "max_deviation": report.placement.max_deviation,
            "message": report.placement.message,
        },
        "methods": {
            name: {
                "identifiable": est.identifiable,
                "reason": est.reason,
                "n_bootstrap_valid": est.n_bootstrap,
                "converged": est.converged,
                "examination": est.examination.tolist(),
                "ci_lower": est.ci_lower.tolist(),
                "ci_upper": est.ci_upper.tolist(),
            }
            for name, est in report.estimates.items()
        },
        "true_examination": None if report.truth is None else report.truth.tolist(),
        "failed": report.failed,
        "warnings": report.warnings,
    }
    atomic_write_json(json_path, meta)
    return [csv_path, json_path]
