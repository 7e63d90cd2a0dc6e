"""Position-bias (examination) estimators for click logs under the position-based model.

Under the position-based model (PBM) a click needs an examination and a relevant item,

    P(click | position k, item d) = theta_k * gamma_d,

so the click-through rate mixes *where* an item was shown with *which* items a policy puts
there. This module estimates the examination curve ``theta`` from an impression log, relative
to a reference position (``theta[ref] = 1``), in three ways:

``ctr_ratio``
    CTR_k / CTR_ref (the seed lesson's estimator). Valid **only** when item placement is
    independent of relevance (a randomised shuffle of the slate); otherwise the top positions
    hold better items and the ratio mixes relevance into examination. The function checks the
    log with :func:`check_randomised_placement` and warns (:class:`PlacementWarning`) when it
    fails, marking the estimate ``identifiable=False``.
``swap_intervention``
    The randomised swap experiment of Joachims, Swaminathan & Schnabel (2017): each session
    swaps the item at the reference position with the item at a uniformly drawn position k
    (k = ref leaves the slate unchanged). :func:`swap_with_reference` applies the swap to
    slates and returns the ``original_position`` the log must record.
``em_position_bias`` / :class:`PositionBasedEM`
    The EM estimator of Wang et al. (2018) with one relevance per ``relevance_key`` (the item
    by default). It needs no intervention, only that keys appear at several positions (the
    bipartite key-position graph must be connected); it works on non-randomised logs.

Every estimator returns a :class:`PositionBiasEstimate` with percentile bootstrap confidence
intervals over *sessions*: each replicate draws ``n_sessions`` sessions with replacement
(from a ``numpy.random.Generator`` seeded by ``rng``) and keeps all impressions of a drawn
session together, because impressions of one session share a user and a slate and are not
independent. The estimator is recomputed on each replicate (EM warm-started from the
full-log fit) and the interval is ``np.quantile`` of the replicates at ``(1 - confidence)/2``
and ``(1 + confidence)/2`` (linear interpolation), per position, not simultaneous over
positions (for a whole-curve statement use the Bonferroni level
``1 - (1 - confidence) / (K - 1)``, as the tests do). Replicates in which the statistic is
not identifiable (e.g. no click at the reference) are dropped and counted in ``reason``.
All replicates of a chunk are computed at once from a sparse (cell x session) count matrix.

Inputs are flat arrays, one row per impression, as in the impression-log schema
(``session_id int64, position int16 (0-based), item_id int32, click bool``). Inputs from
which the examination curve cannot be identified (a single position, a position without
impressions, no clicks, no clicks at the reference) raise
:class:`~simulator.errors.ValidationError` with a message that says "not identifiable";
no estimator returns NaN.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import sparse, stats
from scipy.sparse.csgraph import connected_components

from simulator.errors import ValidationError

__all__ = [
    "POSITION_BIAS_METHODS",
    "PlacementCheck",
    "PlacementWarning",
    "PositionBasedEM",
    "PositionBiasEstimate",
    "SparseRelevanceWarning",
    "check_randomised_placement",
    "ctr_ratio",
    "em_position_bias",
    "estimate_position_bias",
    "swap_intervention",
    "swap_with_reference",
]

_EPS = 1e-9


class PlacementWarning(UserWarning):
    """The log does not look randomised: a CTR ratio from it confounds relevance and position."""


class SparseRelevanceWarning(UserWarning):
    """EM's relevance keys have too few impressions each: the examination estimate is biased."""


def _warn(message: str, category: type[Warning]) -> None:
    """Warn, attributing the warning to the first caller outside this module.

    (``warnings.warn(skip_file_prefixes=...)`` does not skip frames on Python 3.12.1.)
    """
    frame = sys._getframe(1)
    level = 2
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionBiasEstimate:
    """Per-position examination propensities with bootstrap confidence intervals.

    Attributes
    ----------
    examination : ndarray of shape (n_positions,), float64
        Relative examination ``theta_k / theta_ref``; ``examination[reference] == 1``.
    ci_lower, ci_upper : ndarray of shape (n_positions,), float64
        Percentile bootstrap interval at level ``confidence`` (sessions resampled). Equal to
        ``examination`` when ``n_bootstrap == 0``.
    method : str
        ``"ctr_ratio"``, ``"swap_intervention"`` or ``"em"``.
    reference : int
        The reference position (0-based).
    n_impressions, n_sessions, n_clicks : int
        Size of the log the estimate used.
    confidence : float
        Level of the intervals, in (0, 1).
    n_bootstrap : int
        Number of bootstrap replicates that produced a finite estimate (replicates in which
        the reference got no click are dropped; see ``reason``).
    identifiable : bool
        False when the method's identifying assumption is known to fail on this log (e.g. a
        CTR ratio on a log whose placement is not randomised). The numbers are then finite
        but biased; ``reason`` says why.
    reason : str
        Empty, or why the estimate is not (fully) trustworthy.
    absolute : ndarray of shape (n_positions,), float64, or None
        ``examination * ref_examination`` when the caller stated the absolute examination
        probability of the reference position (clicks identify ``theta`` only up to a common
        factor: ``theta_k gamma_d = (c theta_k)(gamma_d / c)``); None otherwise.
    converged : bool or None
        EM only: whether the iteration met its tolerance.
    n_iter : int or None
        EM only: iterations used on the full log.
    """

    examination: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    method: str
    reference: int
    n_impressions: int
    n_sessions: int
    n_clicks: int
    confidence: float
    n_bootstrap: int
    identifiable: bool = True
    reason: str = ""
    absolute: np.ndarray | None = None
    converged: bool | None = None
    n_iter: int | None = None

    @property
    def n_positions(self) -> int:
        """Number of positions K."""
        return int(self.examination.shape[0])

    def covers(self, truth: np.ndarray) -> np.ndarray:
        """Whether each position's interval contains ``truth`` (relative to the reference).

        Parameters
        ----------
        truth : ndarray of shape (n_positions,)
            True examination curve, absolute or relative; it is divided by
            ``truth[reference]`` first.

        Returns
        -------
        ndarray of shape (n_positions,), bool
        """
        truth = np.asarray(truth, dtype=np.float64)
        if truth.shape != self.examination.shape:
            raise ValidationError(f"truth must have shape {self.examination.shape}; got {truth.shape}")
        rel = truth / truth[self.reference]
        return (self.ci_lower <= rel) & (rel <= self.ci_upper)

    def to_frame(self) -> Any:
        """One row per position: ``position, examination, ci_lower, ci_upper[, absolute]``.

        Returns
        -------
        pandas.DataFrame
        """
        import pandas as pd

        data = {
            "position": np.arange(self.n_positions, dtype=np.int16),
            "examination": self.examination,
            "ci_lower": self.ci_lower,
            "ci_upper": self.ci_upper,
        }
        if self.absolute is not None:
            data["absolute"] = self.absolute
        frame = pd.DataFrame(data)
        frame.attrs.update(
            method=self.method,
            reference=self.reference,
            confidence=self.confidence,
            identifiable=self.identifiable,
            reason=self.reason,
        )
        return frame


@dataclass(frozen=True)
class PlacementCheck:
    """Result of :func:`check_randomised_placement`.

    Attributes
    ----------
    statistic : float
        Pearson chi-square statistic of the (item group x position) impression table.
    dof : int
        Degrees of freedom ``(rows - 1) * (n_positions - 1)``; 0 when the test could not run.
    p_value : float
        P-value of independence of item and position (1.0 when the test could not run).
    alpha : float
        Significance level of the decision.
    randomised : bool
        ``p_value >= alpha`` and the test could run.
    testable : bool
        False when too few items had enough impressions to run the test.
    n_items_tested : int
        Items with their own row in the table (enough impressions for expected counts >= 5).
    n_items_pooled : int
        Sparse items pooled into one "other" row.
    max_deviation : float
        Largest absolute difference, over positions, between the mean item CTR (over the whole
        log) of the items shown at a position and its overall mean; a readable effect size:
        it is about 0 under randomised placement and large when good items sit on top.
    """

    statistic: float
    dof: int
    p_value: float
    alpha: float
    randomised: bool
    testable: bool
    n_items_tested: int
    n_items_pooled: int
    max_deviation: float

    @property
    def message(self) -> str:
        """One sentence for warnings and reports."""
        if not self.testable:
            return (
                "could not check randomised placement: too few impressions per item for the "
                "chi-square test of item-position independence"
            )
        verdict = "looks randomised" if self.randomised else "is NOT randomised"
        return (
            f"item placement {verdict}: chi-square test of item-position independence "
            f"chi2={self.statistic:.1f}, dof={self.dof}, p={self.p_value:.3g} (alpha={self.alpha})"
            f"; max deviation of mean item CTR by position {self.max_deviation:.3g}"
        )


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Log:
    """Validated, normalised impression arrays."""

    session_index: np.ndarray  # int64[n], 0..n_sessions-1
    position: np.ndarray  # int64[n]
    click: np.ndarray  # float64[n] in {0, 1}
    n_sessions: int
    n_positions: int
    reference: int
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_impressions(self) -> int:
        return int(self.position.shape[0])

    @property
    def n_clicks(self) -> int:
        return int(self.click.sum())


def _as_1d(name: str, values: Any, n: int | None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be a 1-D array (one row per impression); got ndim={arr.ndim}")
    if n is not None and arr.shape[0] != n:
        raise ValidationError(f"{name} must have the same length as position ({n}); got {arr.shape[0]}")
    return arr


def _as_int(name: str, values: Any, n: int | None) -> np.ndarray:
    arr = _as_1d(name, values, n)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValidationError(f"{name} must hold integers; got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _as_click(values: Any, n: int) -> np.ndarray:
    arr = _as_1d("click", values, n)
    if arr.dtype == np.bool_:
        return arr.astype(np.float64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValidationError(f"click must be bool or 0/1 numbers; got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    bad = (out != 0.0) & (out != 1.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValidationError(f"click must be 0 or 1; got {arr[i]!r} at row {i}")
    return out


def _check_n_positions(n_positions: Any) -> int:
    if isinstance(n_positions, bool) or not isinstance(n_positions, int | np.integer):
        raise ValidationError(f"n_positions must be an int >= 2; got {n_positions!r}")
    if n_positions < 1:
        raise ValidationError(f"n_positions must be an int >= 2; got {n_positions}")
    if n_positions == 1:
        raise ValidationError(
            "not identifiable: n_positions is 1 (a single position); examination is estimated "
            "relative to a reference position, so the log needs at least two positions"
        )
    return int(n_positions)


def _check_reference(reference: Any, n_positions: int) -> int:
    if isinstance(reference, bool) or not isinstance(reference, int | np.integer):
        raise ValidationError(f"reference must be an int in [0, {n_positions}); got {reference!r}")
    if not 0 <= reference < n_positions:
        raise ValidationError(f"reference must be an int in [0, {n_positions}); got {reference}")
    return int(reference)


def _check_bootstrap(n_bootstrap: Any, confidence: Any) -> tuple[int, float]:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer):
        raise ValidationError(f"n_bootstrap must be an int >= 0; got {n_bootstrap!r}")
    if n_bootstrap < 0:
        raise ValidationError(f"n_bootstrap must be an int >= 0; got {n_bootstrap}")
    if isinstance(confidence, bool) or not isinstance(confidence, float | int | np.floating):
        raise ValidationError(f"confidence must be a float in (0, 1); got {confidence!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValidationError(f"confidence must be a float in (0, 1); got {confidence}")
    return int(n_bootstrap), float(confidence)


def _validate_log(
    session_id: Any,
    position: Any,
    click: Any,
    n_positions: Any,
    reference: Any,
    **extra_int: Any,
) -> _Log:
    """Validate the common impression arrays; raise ValidationError on anything unusable."""
    k = _check_n_positions(n_positions)
    ref = _check_reference(reference, k)
    pos = _as_int("position", position, None)
    n = pos.shape[0]
    if n == 0:
        raise ValidationError("not identifiable: the log is empty (no impressions)")
    sid = _as_int("session_id", session_id, n)
    clk = _as_click(click, n)
    extra = {name: _as_int(name, values, n) for name, values in extra_int.items()}

    outside = (pos < 0) | (pos >= k)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValidationError(
            f"position must be in [0, n_positions) = [0, {k}) (0-based slots of the slate); "
            f"got {int(pos[i])} at row {i} ({int(outside.sum())} rows outside the slate)"
        )
    present = np.bincount(pos, minlength=k) > 0
    if present.sum() == 1:
        only = int(np.flatnonzero(present)[0])
        raise ValidationError(
            f"not identifiable: the log holds a single position ({only}); examination ratios "
            "need impressions at two or more positions"
        )
    if not present.all():
        missing = np.flatnonzero(~present).tolist()
        raise ValidationError(
            f"not identifiable: positions {missing} have no impressions; pass the n_positions of "
            f"the logged slates (got {k}) or filter the log"
        )
    if clk.sum() == 0:
        raise ValidationError(
            f"no clicks: examination not identifiable (the log has {n} impressions and no click)"
        )
    _, session_index = np.unique(sid, return_inverse=True)
    return _Log(
        session_index=session_index.astype(np.int64, copy=False),
        position=pos,
        click=clk,
        n_sessions=int(session_index.max()) + 1,
        n_positions=k,
        reference=ref,
        extra=extra,
    )


def _subset(log: _Log, mask: np.ndarray) -> _Log:
    """The impressions where ``mask`` is True, with sessions re-indexed."""
    _, session_index = np.unique(log.session_index[mask], return_inverse=True)
    return _Log(
        session_index=session_index.astype(np.int64, copy=False),
        position=log.position[mask],
        click=log.click[mask],
        n_sessions=int(session_index.max()) + 1,
        n_positions=log.n_positions,
        reference=log.reference,
    )


def _check_ref_examination(ref_examination: Any) -> float | None:
    if ref_examination is None:
        return None
    if isinstance(ref_examination, bool) or not isinstance(
        ref_examination, float | int | np.floating | np.integer
    ):
        raise ValidationError(f"ref_examination must be None or a float in (0, 1]; got {ref_examination!r}")
    value = float(ref_examination)
    if not 0.0 < value <= 1.0:
        raise ValidationError(f"ref_examination must be None or a float in (0, 1]; got {value}")
    return value


# --------------------------------------------------------------------------------------------
# Bootstrap over sessions
# --------------------------------------------------------------------------------------------


# Bootstrap replicates are processed in chunks whose session-weight matrix and cell arrays
# hold at most this many float64 entries (~32 MB each).
_BOOT_CHUNK_ENTRIES = 4_000_000

# statistic(shown, clicked) -> (estimates, valid); shown/clicked: (n_replicates, n_cells)
_BatchStatistic = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Cells:
    """Impressions aggregated into estimator cells (e.g. positions), overall and per session.

    The estimators are functions of the impression and click counts per cell; a bootstrap
    replicate that draws session ``s`` ``w_s`` times has cell counts ``M @ w`` with ``M`` the
    sparse (cell x session) count matrix, so all replicates of a chunk are one sparse product.
    """

    shown: np.ndarray  # float64[n_cells]
    clicked: np.ndarray  # float64[n_cells]
    shown_by_session: sparse.csr_matrix  # (n_cells, n_sessions)
    clicked_by_session: sparse.csr_matrix  # (n_cells, n_sessions)

    @classmethod
    def build(cls, log: _Log, cell_index: np.ndarray, n_cells: int) -> _Cells:
        shape = (n_cells, log.n_sessions)
        ones = np.ones(log.n_impressions)
        shown = sparse.csr_matrix((ones, (cell_index, log.session_index)), shape=shape)
        hit = log.click > 0
        clicked = sparse.csr_matrix((log.click[hit], (cell_index[hit], log.session_index[hit])), shape=shape)
        return cls(
            shown=np.bincount(cell_index, minlength=n_cells).astype(np.float64),
            clicked=np.bincount(cell_index, weights=log.click, minlength=n_cells),
            shown_by_session=shown,
            clicked_by_session=clicked,
        )

    @property
    def n_cells(self) -> int:
        return int(self.shown.shape[0])


def _bootstrap(
    statistic: _BatchStatistic,
    cells: _Cells,
    n_sessions: int,
    n_bootstrap: int,
    confidence: float,
    rng: np.random.Generator,
    point: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int, str]:
    """Percentile bootstrap over sessions.

    Each replicate draws ``n_sessions`` sessions with replacement (all impressions of a drawn
    session come along) and recomputes the statistic from the resampled cell counts;
    replicates the statistic flags as not identifiable (e.g. no click at the reference) are
    dropped and counted in the returned reason.
    """
    if n_bootstrap == 0:
        return point.copy(), point.copy(), 0, ""
    chunk = max(1, min(n_bootstrap, _BOOT_CHUNK_ENTRIES // max(n_sessions, cells.n_cells)))
    reps = []
    done = 0
    while done < n_bootstrap:
        b = min(chunk, n_bootstrap - done)
        weights = np.empty((n_sessions, b))
        for j in range(b):
            draw = rng.integers(0, n_sessions, size=n_sessions)
            weights[:, j] = np.bincount(draw, minlength=n_sessions)
        shown = np.ascontiguousarray((cells.shown_by_session @ weights).T)
        clicked = np.ascontiguousarray((cells.clicked_by_session @ weights).T)
        est, valid = statistic(shown, clicked)
        valid = valid & np.all(np.isfinite(est), axis=1)
        reps.append(est[valid])
        done += b
    boot = np.vstack(reps)
    n_valid = boot.shape[0]
    reason = ""
    if n_valid < n_bootstrap:
        reason = (
            f"{n_bootstrap - n_valid} of {n_bootstrap} bootstrap replicates were not identifiable "
            "(e.g. no click at the reference) and were dropped; the interval may be too narrow"
        )
    if n_valid < 2:
        raise ValidationError(
            f"not identifiable: only {n_valid} of {n_bootstrap} bootstrap replicates gave a finite "
            "estimate (too few clicks at the reference position)"
        )
    tail = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(boot, [tail, 1.0 - tail], axis=0)
    return lower, upper, n_valid, reason


def _finish(
    *,
    method: str,
    log: _Log,
    examination: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    confidence: float,
    n_valid: int,
    reasons: list[str],
    identifiable: bool,
    ref_examination: float | None,
    converged: bool | None = None,
    n_iter: int | None = None,
) -> PositionBiasEstimate:
    examination = np.asarray(examination, dtype=np.float64)
    for name, arr in (("examination", examination), ("ci_lower", lower), ("ci_upper", upper)):
        if not np.all(np.isfinite(arr)):  # pragma: no cover - guarded by the estimators
            raise ValidationError(f"not identifiable: {method} produced a non-finite {name}")
    ref = log.reference
    examination = examination.copy()
    lower = np.asarray(lower, dtype=np.float64).copy()
    upper = np.asarray(upper, dtype=np.float64).copy()
    examination[ref] = lower[ref] = upper[ref] = 1.0
    for arr in (examination, lower, upper):
        arr.setflags(write=False)
    absolute = None
    if ref_examination is not None:
        absolute = examination * ref_examination
        absolute.setflags(write=False)
    return PositionBiasEstimate(
        examination=examination,
        ci_lower=lower,
        ci_upper=upper,
        method=method,
        reference=ref,
        n_impressions=log.n_impressions,
        n_sessions=log.n_sessions,
        n_clicks=log.n_clicks,
        confidence=confidence,
        n_bootstrap=n_valid,
        identifiable=identifiable,
        reason="; ".join(r for r in reasons if r),
        absolute=absolute,
        converged=converged,
        n_iter=n_iter,
    )


# --------------------------------------------------------------------------------------------
# Randomised-placement check
# --------------------------------------------------------------------------------------------


def check_randomised_placement(
    position: Any,
    item_id: Any,
    n_positions: int,
    *,
    click: Any = None,
    alpha: float = 0.01,
    min_expected: float = 5.0,
) -> PlacementCheck:
    """Test whether items are placed independently of position (a randomised shuffle).

    Parameters
    ----------
    position : ndarray of shape (n_impressions,), int
        0-based slot of each impression, in ``[0, n_positions)``.
    item_id : ndarray of shape (n_impressions,), int
        The item shown.
    n_positions : int
        Slate length K.
    click : ndarray of shape (n_impressions,), bool, optional
        When given, ``max_deviation`` (an effect size in CTR units) is computed; otherwise it
        is 0.
    alpha : float, default 0.01
        Significance level: placement is declared not randomised when ``p_value < alpha``.
    min_expected : float, default 5.0
        Items whose expected count in some position would be below this are pooled into one
        "other" row (the usual validity rule of the chi-square approximation).

    Returns
    -------
    PlacementCheck

    Raises
    ------
    ValidationError
        On arrays of different lengths, positions outside ``[0, n_positions)`` or a bad
        ``alpha``.

    Notes
    -----
    Pearson's chi-square test of independence on the table ``O[g, k]`` of impressions of item
    group ``g`` at position ``k``: ``X^2 = sum (O - E)^2 / E`` with
    ``E[g, k] = n_g m_k / N``, ``dof = (G - 1)(K - 1)``. Under a randomised shuffle of the slate
    every item is equally likely at every slot, so the test holds its level; a policy that
    sorts by score puts its best items on top and fails it at any realistic log size. The
    check is necessary, not sufficient: a policy can pass it while still choosing *which*
    items to show per session based on the user (that is fine for the CTR ratio, which only
    needs placement independent of relevance given the slate's item set).
    """
    k = _check_n_positions(n_positions)
    pos = _as_int("position", position, None)
    item = _as_int("item_id", item_id, pos.shape[0])
    if isinstance(alpha, bool) or not isinstance(alpha, float | int) or not 0.0 < alpha < 1.0:
        raise ValidationError(f"alpha must be a float in (0, 1); got {alpha!r}")
    if (pos < 0).any() or (pos >= k).any():
        bad = pos[(pos < 0) | (pos >= k)][0]
        raise ValidationError(f"position must be in [0, {k}); got {int(bad)}")
    n = pos.shape[0]
    if n == 0:
        raise ValidationError("not identifiable: the log is empty (no impressions)")
    _, item_index = np.unique(item, return_inverse=True)
    n_items = int(item_index.max()) + 1
    table = np.bincount(item_index * k + pos, minlength=n_items * k).reshape(n_items, k)
    col = table.sum(axis=0).astype(np.float64)
    row = table.sum(axis=1).astype(np.float64)
    share = col / n
    present = share > 0
    max_dev = 0.0
    if click is not None:
        clk = _as_click(click, n)
        item_ctr = np.bincount(item_index, weights=clk, minlength=n_items) / row
        mean_ctr_at = np.bincount(pos, weights=item_ctr[item_index], minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_ctr_at = np.where(present, mean_ctr_at / np.maximum(col, 1.0), 0.0)
        overall = float(item_ctr[item_index].mean())
        max_dev = float(np.max(np.abs(mean_ctr_at[present] - overall)))
    min_share = float(share[present].min()) if present.any() else 0.0
    keep = row * min_share >= min_expected
    tested = table[keep][:, present]
    pooled = table[~keep][:, present].sum(axis=0, keepdims=True)
    if (~keep).any() and pooled.sum() * min_share >= min_expected:
        tested = np.vstack([tested, pooled])
    n_rows, n_cols = tested.shape
    if n_rows < 2 or n_cols < 2:
        return PlacementCheck(
            statistic=0.0,
            dof=0,
            p_value=1.0,
            alpha=float(alpha),
            randomised=False,
            testable=False,
            n_items_tested=int(keep.sum()),
            n_items_pooled=int((~keep).sum()),
            max_deviation=max_dev,
        )
    tested = tested.astype(np.float64)
    expected = np.outer(tested.sum(axis=1), tested.sum(axis=0)) / tested.sum()
    stat = float(((tested - expected) ** 2 / expected).sum())
    dof = (n_rows - 1) * (n_cols - 1)
    p_value = float(stats.chi2.sf(stat, dof))
    return PlacementCheck(
        statistic=stat,
        dof=dof,
        p_value=p_value,
        alpha=float(alpha),
        randomised=p_value >= alpha,
        testable=True,
        n_items_tested=int(keep.sum()),
        n_items_pooled=int((~keep).sum()),
        max_deviation=max_dev,
    )


# --------------------------------------------------------------------------------------------
# CTR ratio
# --------------------------------------------------------------------------------------------


def _ctr_ratio_stat(k: int, ref: int) -> _BatchStatistic:
    def statistic(shown: np.ndarray, clicked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = np.all(shown > 0, axis=1) & (clicked[:, ref] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ctr = clicked / shown
            return ctr / ctr[:, ref : ref + 1], valid

    return statistic


def ctr_ratio(
    session_id: Any,
    position: Any,
    item_id: Any,
    click: Any,
    n_positions: int,
    *,
    reference: int = 0,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    rng: np.random.Generator | int | None = None,
    check_placement: bool = True,
    alpha: float = 0.01,
    ref_examination: float | None = None,
) -> PositionBiasEstimate:
    """Examination relative to a reference position by the ratio of click-through rates.

    Parameters
    ----------
    session_id : ndarray of shape (n_impressions,), int64
        Session of each impression; the bootstrap resamples sessions.
    position : ndarray of shape (n_impressions,), int16
        0-based slot, in ``[0, n_positions)``.
    item_id : ndarray of shape (n_impressions,), int32
        Item shown; used only by the randomised-placement check.
    click : ndarray of shape (n_impressions,), bool
        Whether the impression was clicked.
    n_positions : int
        Slate length K (>= 2).
    reference : int, default 0
        Position whose examination is 1 by definition.
    n_bootstrap : int, default 200
        Bootstrap replicates (0: no interval).
    confidence : float, default 0.95
        Level of the percentile intervals.
    rng : numpy.random.Generator or int or None
        Randomness of the bootstrap.
    check_placement : bool, default True
        Run :func:`check_randomised_placement`; when it fails, warn with
        :class:`PlacementWarning` and return ``identifiable=False``.
    alpha : float, default 0.01
        Level of the placement check.
    ref_examination : float in (0, 1], optional
        Assumed absolute examination of the reference position; fills ``absolute``.

    Returns
    -------
    PositionBiasEstimate
        ``method="ctr_ratio"``.

    Raises
    ------
    ValidationError
        Arrays of different lengths; positions outside ``[0, n_positions)``; a single
        position; a position without impressions; no clicks ("no clicks: examination not
        identifiable"); no click at the reference position.

    Warns
    -----
    PlacementWarning
        When the placement check rejects independence of item and position.

    Notes
    -----
    Under the PBM, ``CTR_k = theta_k * E[gamma | shown at k]``, so

        theta_k / theta_ref = CTR_k / CTR_ref

    only when ``E[gamma | shown at k]`` is the same for every k, i.e. when the order of the
    slate is randomised independently of relevance. Under a policy that sorts by predicted
    relevance the lower positions hold worse items and the ratio *underestimates* their
    examination (it attributes the relevance gap to position). Use
    :func:`swap_intervention` or :func:`em_position_bias` on such logs.

    References
    ----------
    .. [1] T. Joachims, L. Granka, B. Pan, H. Hembrooke, F. Radlinski, G. Gay. "Evaluating the
       accuracy of implicit feedback from clicks and query reformulations in Web search."
       ACM TOIS 25(2), 2007 (randomised-order experiments for position bias).
    .. [2] N. Craswell, O. Zoeter, M. Taylor, B. Ramsey. "An experimental comparison of click
       position-bias models." WSDM 2008.
    """
    n_bootstrap, confidence = _check_bootstrap(n_bootstrap, confidence)
    ref_examination = _check_ref_examination(ref_examination)
    log = _validate_log(session_id, position, click, n_positions, reference, item_id=item_id)
    k, ref = log.n_positions, log.reference
    cells = _Cells.build(log, log.position, k)
    statistic = _ctr_ratio_stat(k, ref)
    est, ok = statistic(cells.shown[None, :], cells.clicked[None, :])
    point = est[0]
    if not ok[0]:
        raise ValidationError(
            f"not identifiable: the reference position {ref} has no clicks, so CTR_k / CTR_ref "
            "is undefined; choose another reference"
        )
    reasons: list[str] = []
    identifiable = True
    if check_placement:
        check = check_randomised_placement(
            log.position, log.extra["item_id"], k, click=log.click, alpha=alpha
        )
        if not (check.testable and check.randomised):
            # a failed test makes the ratio biased; an untestable log only gets the warning
            identifiable = not check.testable
            reasons.append(check.message + "; the CTR ratio is unbiased only under randomised placement")
            _warn(
                "ctr_ratio: " + reasons[-1] + " (use swap_intervention or em_position_bias)", PlacementWarning
            )
    gen = np.random.default_rng(rng)
    lower, upper, n_valid, boot_reason = _bootstrap(
        statistic, cells, log.n_sessions, n_bootstrap, confidence, gen, point
    )
    reasons.append(boot_reason)
    return _finish(
        method="ctr_ratio",
        log=log,
        examination=point,
        lower=lower,
        upper=upper,
        confidence=confidence,
        n_valid=n_valid,
        reasons=reasons,
        identifiable=identifiable,
        ref_examination=ref_examination,
    )


# --------------------------------------------------------------------------------------------
# Swap intervention (Joachims et al. 2017)
# --------------------------------------------------------------------------------------------


def swap_with_reference(
    items: Any,
    rng: np.random.Generator | int | None,
    ref: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the randomised swap intervention to slates.

    Each row draws a target position ``k`` uniformly from ``{0, ..., K-1}`` and swaps the items
    at ``ref`` and ``k`` (``k == ref`` leaves the row unchanged: the control arm).

    Parameters
    ----------
    items : ndarray of shape (n_sessions, K), int32
        Slates as ranked by the production policy.
    rng : numpy.random.Generator or int or None
        Randomness of the swap targets.
    ref : int, default 0
        The reference position every swap involves.

    Returns
    -------
    items_swapped : ndarray of shape (n_sessions, K), int32
        The slates to show.
    original_position : ndarray of shape (n_sessions, K), int16
        ``original_position[s, j]`` is the slot the item now at slot ``j`` held in ``items``.
        Log it next to ``position`` for :func:`swap_intervention`.

    Raises
    ------
    ValidationError
        When ``items`` is not 2-D or has fewer than two columns, or ``ref`` is outside
        ``[0, K)``.

    References
    ----------
    .. [1] T. Joachims, A. Swaminathan, T. Schnabel. "Unbiased learning-to-rank with biased
       feedback." WSDM 2017, Section 5.
    """
    arr = np.asarray(items)
    if arr.ndim != 2:
        raise ValidationError(f"items must be a 2-D array (n_sessions, K); got ndim={arr.ndim}")
    n, k = arr.shape
    if k < 2:
        raise ValidationError(
            f"not identifiable: items has {k} column(s); a swap needs at least two positions"
        )
    ref = _check_reference(ref, k)
    gen = np.random.default_rng(rng)
    target = gen.integers(0, k, size=n)
    rows = np.arange(n)
    original = np.broadcast_to(np.arange(k, dtype=np.int16), (n, k)).copy()
    original[rows, ref] = target
    original[rows, target] = ref
    swapped = np.take_along_axis(arr, original.astype(np.intp), axis=1).astype(np.int32)
    return swapped, original


def swap_intervention(
    session_id: Any,
    position: Any,
    original_position: Any,
    click: Any,
    n_positions: int,
    *,
    reference: int = 0,
    classes: Literal["both", "reference"] = "both",
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    rng: np.random.Generator | int | None = None,
    ref_examination: float | None = None,
) -> PositionBiasEstimate:
    """Examination from a randomised swap-with-reference experiment (Joachims et al. 2017).

    Parameters
    ----------
    session_id : ndarray of shape (n_impressions,), int64
        Session of each impression; the bootstrap resamples sessions.
    position : ndarray of shape (n_impressions,), int16
        Slot where the item was *shown*, in ``[0, n_positions)``.
    original_position : ndarray of shape (n_impressions,), int16
        Slot the item had in the production ranking before the swap (as returned by
        :func:`swap_with_reference`). Rows must be either unswapped
        (``original_position == position``) or part of a swap with the reference
        (``original_position == reference`` or ``position == reference``).
    click : ndarray of shape (n_impressions,), bool
        Whether the impression was clicked.
    n_positions : int
        Slate length K (>= 2).
    reference : int, default 0
        The position every swap involved.
    classes : {"both", "reference"}, default "both"
        ``"reference"``: use only the items originally at the reference (the estimator as
        stated by Joachims et al.); ``"both"``: also use the items originally at k, and take
        the geometric mean of the two ratios (lower variance; see Notes).
    n_bootstrap, confidence, rng, ref_examination
        As in :func:`ctr_ratio`.

    Returns
    -------
    PositionBiasEstimate
        ``method="swap_intervention"``.

    Raises
    ------
    ValidationError
        The errors of :func:`ctr_ratio`; rows that are not a swap with the reference; a
        position k for which one of the needed (original, shown) cells has no impression or
        no click (its examination is not identifiable from this log).

    Notes
    -----
    Pass only the sessions of the experiment (all their rows). Each session drew its target
    ``k`` uniformly, independently of the ranking, so the items originally at a slot ``o``
    have the same relevance distribution in every arm. Writing ``CTR(o, p)`` for the CTR of
    items originally at ``o`` shown at ``p``, the PBM gives ``CTR(o, p) = theta_p * rho_o``
    with ``rho_o = E[gamma | originally at o]``, hence

        theta_k / theta_ref = CTR(ref, k) / CTR(ref, ref)          (classes="reference")
        theta_k / theta_ref = sqrt( CTR(ref, k) CTR(k, k) / (CTR(ref, ref) CTR(k, ref)) )
                                                                    (classes="both")

    ``CTR(ref, ref)`` comes from the control arm, ``CTR(ref, k)`` and ``CTR(k, ref)`` from
    arm k, and ``CTR(k, k)`` from every arm other than k. Nothing is assumed about the
    production ranking, which may be deterministic. The identity needs the PBM (examination
    does not depend on the other items, as it would under a cascade).

    References
    ----------
    .. [1] T. Joachims, A. Swaminathan, T. Schnabel. "Unbiased learning-to-rank with biased
       feedback." WSDM 2017, Section 5.
    .. [2] X. Wang, N. Golbandi, M. Bendersky, D. Metzler, M. Najork. "Position bias estimation
       for unbiased learning to rank in personal search." WSDM 2018 (RandPair, RandTop).
    """
    if classes not in ("both", "reference"):
        raise ValidationError(f"classes must be 'both' or 'reference'; got {classes!r}")
    n_bootstrap, confidence = _check_bootstrap(n_bootstrap, confidence)
    ref_examination = _check_ref_examination(ref_examination)
    log = _validate_log(
        session_id, position, click, n_positions, reference, original_position=original_position
    )
    k, ref = log.n_positions, log.reference
    pos, orig = log.position, log.extra["original_position"]
    outside = (orig < 0) | (orig >= k)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValidationError(f"original_position must be in [0, {k}); got {int(orig[i])} at row {i}")
    not_swap = (orig != pos) & (orig != ref) & (pos != ref)
    if not_swap.any():
        i = int(np.flatnonzero(not_swap)[0])
        raise ValidationError(
            f"original_position {int(orig[i])} shown at position {int(pos[i])} (row {i}) is not a "
            f"swap with the reference position {ref}; swap_intervention needs logs of "
            "swap_with_reference"
        )
    # cell (o, p) = (original position, shown position); the estimator reads
    # (ref, ref), (ref, k), (k, ref) and (k, k)
    cells = _Cells.build(log, orig * k + pos, k * k)
    ks = np.arange(k)

    def statistic(shown: np.ndarray, clicked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = shown.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            ctr = (clicked / shown).reshape(b, k, k)
            from_ref = ctr[:, ref, ks] / ctr[:, ref, ref][:, None]
            if classes == "reference":
                est = from_ref
            else:
                from_k = ctr[:, ks, ks] / ctr[:, ks, ref]
                est = np.sqrt(from_ref * from_k)
        est[:, ref] = 1.0
        valid = np.all(np.isfinite(est), axis=1) & np.all(est > 0, axis=1)
        return est, valid

    shown = cells.shown.reshape(k, k)
    clicked = cells.clicked.reshape(k, k)
    needed = [(ref, ref)]
    for j in range(k):
        if j != ref:
            needed.append((ref, j))
            if classes == "both":
                needed += [(j, j), (j, ref)]
    for o, p in needed:
        what = f"items originally at position {o} shown at position {p}"
        if shown[o, p] == 0:
            raise ValidationError(
                f"not identifiable: the log has no impressions of {what}; every swap arm "
                "(and the control arm) needs sessions"
            )
        if clicked[o, p] == 0:
            raise ValidationError(
                f"not identifiable: no clicks on {what}; the ratio for position "
                f"{p if p != ref else o} is undefined (collect more sessions)"
            )
    est, _ = statistic(cells.shown[None, :], cells.clicked[None, :])
    point = est[0]
    gen = np.random.default_rng(rng)
    lower, upper, n_valid, boot_reason = _bootstrap(
        statistic, cells, log.n_sessions, n_bootstrap, confidence, gen, point
    )
    return _finish(
        method="swap_intervention",
        log=log,
        examination=point,
        lower=lower,
        upper=upper,
        confidence=confidence,
        n_valid=n_valid,
        reasons=[boot_reason],
        identifiable=True,
        ref_examination=ref_examination,
    )


# --------------------------------------------------------------------------------------------
# EM of the position-based model (Wang et al. 2018)
# --------------------------------------------------------------------------------------------


class _PBMCells:
    """PBM sufficient statistics per (key, position) cell for a batch of ``b`` data sets
    (the full log, or a chunk of bootstrap replicates), and the EM map on them.

    ``shown`` and ``clicked`` are ``(b, n_cells)``; ``theta`` is ``(b, K)`` and ``gamma``
    ``(b, n_keys)``. The M-step sums over cells with one ``np.bincount`` per parameter block,
    offsetting each row of the batch into its own bins.
    """

    def __init__(
        self,
        cell_pos: np.ndarray,
        cell_key: np.ndarray,
        shown: np.ndarray,
        clicked: np.ndarray,
        k: int,
        n_keys: int,
    ) -> None:
        b = shown.shape[0]
        self.k, self.n_keys = k, n_keys
        self.cell_pos = cell_pos
        self.cell_key = cell_key
        self._set_rows(clicked, shown - clicked)
        n_pos = np.bincount(self.pos_bins, weights=shown.ravel(), minlength=b * k)
        n_key = np.bincount(self.key_bins, weights=shown.ravel(), minlength=b * n_keys)
        self.inv_pos = (1.0 / np.maximum(n_pos, _EPS)).reshape(b, k)
        self.inv_key = (1.0 / np.maximum(n_key, _EPS)).reshape(b, n_keys)

    def _set_rows(self, clicked: np.ndarray, skipped: np.ndarray) -> None:
        b = clicked.shape[0]
        self.b = b
        self.clicked = clicked
        self.skipped = skipped
        row = np.arange(b, dtype=np.int64)[:, None]
        self.pos_bins = (row * self.k + self.cell_pos).ravel()
        self.key_bins = (row * self.n_keys + self.cell_key).ravel()

    def keep_rows(self, keep: np.ndarray) -> None:
        """Drop the rows of the batch where ``keep`` is False (they have converged)."""
        self.inv_pos = self.inv_pos[keep]
        self.inv_key = self.inv_key[keep]
        self._set_rows(self.clicked[keep], self.skipped[keep])

    def step(self, theta: np.ndarray, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One EM iteration (E-step posteriors, M-step averages)."""
        b, k, d = self.b, self.k, self.n_keys
        t = theta[:, self.cell_pos]
        g = gamma[:, self.cell_key]
        tg = t * g
        w = self.skipped / (1.0 - tg)
        # expected examined / relevant counts: clicks + skipped * P(E=1 | C=0), P(R=1 | C=0)
        e_sum = self.clicked + w * (t - tg)
        r_sum = self.clicked + w * (g - tg)
        theta = np.bincount(self.pos_bins, weights=e_sum.ravel(), minlength=b * k).reshape(b, k)
        gamma = np.bincount(self.key_bins, weights=r_sum.ravel(), minlength=b * d).reshape(b, d)
        return _clip01(theta * self.inv_pos), _clip01(gamma * self.inv_key)

    def loglik(self, theta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
        """Bernoulli log-likelihood of each row of the batch, shape (b,)."""
        p = theta[:, self.cell_pos] * gamma[:, self.cell_key]
        ll = self.clicked * np.log(p)
        ll += self.skipped * np.log1p(-p)
        return ll.sum(axis=1)

    def fit(
        self,
        theta: np.ndarray,
        gamma: np.ndarray,
        ref: int,
        tol: float,
        max_iter: int,
        accelerate: bool,
    ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Iterate until ``theta / theta[:, ref]`` moves by less than ``tol`` in every row.

        Returns ``(theta, gamma, n_iter, converged)`` with ``converged`` of shape (b,).
        With ``accelerate`` each cycle is one SQUAREM extrapolation (Varadhan & Roland 2008,
        scheme S3) from two EM steps, followed by a stabilising EM step; a row falls back to
        its plain second EM iterate whenever the extrapolation would lower its likelihood,
        so each cycle increases the likelihood like plain EM and the fixed points are EM's.
        Rows leave the batch as they converge. ``n_iter`` counts the EM steps of the slowest
        row. The batch is consumed (rows are dropped in place).
        """
        out_theta, out_gamma = theta.copy(), gamma.copy()
        converged = np.zeros(self.b, dtype=bool)
        rows = np.arange(self.b)
        n_iter = 0
        rel = theta / theta[:, ref : ref + 1]
        while n_iter < max_iter:
            t1, g1 = self.step(theta, gamma)
            n_iter += 1
            if accelerate and n_iter + 2 <= max_iter:
                t2, g2 = self.step(t1, g1)
                r_t, r_g = t1 - theta, g1 - gamma
                v_t, v_g = t2 - t1 - r_t, g2 - g1 - r_g
                r_norm = np.sqrt((r_t * r_t).sum(axis=1) + (r_g * r_g).sum(axis=1))
                v_norm = np.sqrt((v_t * v_t).sum(axis=1) + (v_g * v_g).sum(axis=1))
                with np.errstate(divide="ignore", invalid="ignore"):
                    alpha = np.where(v_norm > 0, np.minimum(-1.0, -r_norm / v_norm), -1.0)
                alpha = alpha[:, None]
                t_x = _clip01(theta - 2.0 * alpha * r_t + alpha * alpha * v_t)
                g_x = _clip01(gamma - 2.0 * alpha * r_g + alpha * alpha * v_g)
                t_x, g_x = self.step(t_x, g_x)
                better = (self.loglik(t_x, g_x) >= self.loglik(t2, g2))[:, None]
                t1 = np.where(better, t_x, t2)
                g1 = np.where(better, g_x, g2)
                n_iter += 2
            theta, gamma = t1, g1
            new_rel = theta / theta[:, ref : ref + 1]
            done = np.max(np.abs(new_rel - rel), axis=1) < tol
            rel = new_rel
            if done.any():
                out_theta[rows[done]] = theta[done]
                out_gamma[rows[done]] = gamma[done]
                converged[rows[done]] = True
                if done.all():
                    break
                keep = ~done
                rows, theta, gamma, rel = rows[keep], theta[keep], gamma[keep], rel[keep]
                self.keep_rows(keep)
        if not converged.all():
            out_theta[rows] = theta
            out_gamma[rows] = gamma
        return out_theta, out_gamma, n_iter, converged


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, _EPS, out=x), 1.0 - _EPS, out=x)


@dataclass
class PositionBasedEM:
    """EM estimator of the position-based model (Wang et al. 2018); hyperparameters as fields.

    Parameters
    ----------
    n_positions : int
        Slate length K (>= 2).
    reference : int, default 0
        Position whose examination is 1 in the reported curve.
    tol : float, default 1e-6
        Stop when the relative curve ``theta / theta[reference]`` moves by less than ``tol``
        (max norm) in one iteration.
    max_iter : int, default 2000
        Iteration cap on the full log (bootstrap replicates are warm-started from the full-log
        solution and use the same cap).
    n_bootstrap : int, default 200
        Bootstrap replicates over sessions (0: no interval).
    confidence : float, default 0.95
        Level of the percentile intervals.
    accelerate : bool, default True
        Accelerate EM with SQUAREM (Varadhan & Roland 2008); same fixed points, far fewer
        iterations (plain EM converges slowly when clicks are rare: most non-clicks are
        ambiguous between "not examined" and "not relevant").
    min_key_impressions : float, default 5.0
        Warn (:class:`SparseRelevanceWarning`) when the median number of impressions per
        relevance key is below this: with one parameter per key and few observations each,
        the maximum-likelihood examination curve is biased (the incidental-parameter
        problem). Measured on the tests' simulation (eta = 1, 20k sessions of 5): a
        per-(user, item) key with a median of 2 impressions per key erred by up to 0.11 in
        ``theta_k / theta_0`` (by 0.5 before single-position keys were left out); with a
        median of 6 or more, by less than 0.04.

    Attributes
    ----------
    theta_ : ndarray of shape (n_positions,), float64
        Fitted examination probabilities on the EM's own (arbitrary) scale.
    gamma_ : ndarray of shape (n_keys,), float64
        Fitted relevance per key of ``keys_`` on the matching scale.
    keys_ : ndarray of shape (n_keys,), int64
        The relevance keys used (sorted): those shown at two or more positions.
    n_iter_ : int
    converged_ : bool
    estimate_ : PositionBiasEstimate
        ``method="em"``.

    Notes
    -----
    Model: ``P(C=1 | k, d) = theta_k * gamma_d``, with latent examination ``E ~ Bern(theta_k)``
    and relevance ``R ~ Bern(gamma_d)``, ``C = E R``. E-step for an unclicked impression:

        P(E=1, R=0 | C=0) = theta (1 - gamma) / (1 - theta gamma)
        P(E=0, R=1 | C=0) = (1 - theta) gamma / (1 - theta gamma)

    (a click implies E = R = 1). M-step:

        theta_k = sum_{i at k} [c_i + (1 - c_i) P(E=1 | C=0)_i] / N_k
        gamma_d = sum_{i of d} [c_i + (1 - c_i) P(R=1 | C=0)_i] / N_d

    Sufficient statistics are aggregated per (key, position) cell, so one iteration costs
    two ``np.bincount`` over the cells. Wang et al.'s *regression* EM replaces the gamma
    M-step with a regression on features; with a categorical key and no features that step
    is exactly the per-key average above, which is what we use. The key is the item by
    default (standard with sparse data); pass e.g. a (user, item) code when relevance is
    personal and the log is dense enough.

    Identification: the likelihood is invariant under ``theta -> c theta``,
    ``gamma -> gamma / c``, so only ``theta / theta_ref`` is reported. It is identified when
    the bipartite graph linking positions to the clicked keys shown there is connected
    (keys move between positions, e.g. because the candidate sets vary); it does *not* need
    randomised placement. A log where every key always sits at the same position is not
    identifiable and is rejected.

    Keys shown at a single position are left out (their impressions are dropped before the
    fit and counted in ``estimate_.reason``): maximising over their relevance leaves the
    likelihood flat in ``theta_k`` except for the bound ``theta_k >= CTR_key``, which for a
    key clicked in its only impression would pin ``theta_k`` to 1. ``estimate_.n_impressions``
    and ``n_sessions`` count what the fit used.

    Starting point: ``theta = 0.5`` everywhere, ``gamma_d = min(1, 2 CTR_d)``; bootstrap
    replicates are warm-started from the full-log solution and fitted in one batch.

    References
    ----------
    .. [1] X. Wang, N. Golbandi, M. Bendersky, D. Metzler, M. Najork. "Position bias estimation
       for unbiased learning to rank in personal search." WSDM 2018.
    .. [2] O. Chapelle, Y. Zhang. "A dynamic Bayesian network click model for web search
       ranking." WWW 2009 (EM for click models).
    """

    n_positions: int
    reference: int = 0
    tol: float = 1e-6
    max_iter: int = 2000
    n_bootstrap: int = 200
    confidence: float = 0.95
    accelerate: bool = True
    min_key_impressions: float = 5.0

    def __post_init__(self) -> None:
        self.n_positions = _check_n_positions(self.n_positions)
        self.reference = _check_reference(self.reference, self.n_positions)
        if isinstance(self.tol, bool) or not isinstance(self.tol, float | int) or not self.tol > 0:
            raise ValidationError(f"tol must be a float > 0; got {self.tol!r}")
        if (
            isinstance(self.max_iter, bool)
            or not isinstance(self.max_iter, int | np.integer)
            or self.max_iter < 1
        ):
            raise ValidationError(f"max_iter must be an int >= 1; got {self.max_iter!r}")
        self.n_bootstrap, self.confidence = _check_bootstrap(self.n_bootstrap, self.confidence)
        if (
            isinstance(self.min_key_impressions, bool)
            or not isinstance(self.min_key_impressions, float | int)
            or self.min_key_impressions < 0
        ):
            raise ValidationError(
                f"min_key_impressions must be a number >= 0; got {self.min_key_impressions!r}"
            )

    def fit(
        self,
        session_id: Any,
        position: Any,
        item_id: Any,
        click: Any,
        *,
        relevance_key: Any = None,
        rng: np.random.Generator | int | None = None,
        ref_examination: float | None = None,
    ) -> PositionBasedEM:
        """Fit on an impression log; see :func:`em_position_bias` for the arguments.

        Returns
        -------
        PositionBasedEM
            ``self``, with ``theta_``, ``gamma_``, ``keys_``, ``n_iter_``, ``converged_`` and
            ``estimate_`` set.
        """
        ref_examination = _check_ref_examination(ref_examination)
        log = _validate_log(session_id, position, click, self.n_positions, self.reference)
        key = _as_int("item_id", item_id, log.n_impressions)
        if relevance_key is not None:
            key = _as_int("relevance_key", relevance_key, log.n_impressions)
        k, ref = log.n_positions, log.reference
        reasons: list[str] = []
        # A key seen at one position only carries no information on theta: its relevance
        # absorbs the position effect and it merely bounds theta_k >= its CTR (which, for a
        # key clicked in its only impression, pins theta_k to 1). Leave such keys out.
        _, key_index = np.unique(key, return_inverse=True)
        key_positions = np.bincount(np.unique(key_index * k + log.position) // k)
        multi = key_positions[key_index] >= 2
        if not multi.any():
            raise ValidationError(
                "not identifiable: no relevance key appears at two or more positions, so EM "
                "cannot separate examination from relevance (use randomisation or a coarser "
                "relevance_key)"
            )
        if not multi.all():
            reasons.append(
                f"{int((~multi).sum())} impressions of {int((key_positions == 1).sum())} "
                "relevance keys seen at a single position were left out (no information on "
                "examination)"
            )
            log = _subset(log, multi)
            key = key[multi]
        keys, key_index = np.unique(key, return_inverse=True)
        n_keys = keys.shape[0]
        key_impressions = np.bincount(key_index, minlength=n_keys)
        median_impressions = float(np.median(key_impressions))
        if median_impressions < self.min_key_impressions:
            reasons.append(
                f"relevance keys are sparse (median {median_impressions:g} impressions per key < "
                f"min_key_impressions={self.min_key_impressions:g}): one relevance parameter "
                "per key overfits and biases the examination estimate (incidental-parameter "
                "problem); use a coarser relevance_key"
            )
            _warn("em_position_bias: " + reasons[-1], SparseRelevanceWarning)
        # aggregate to (key, position) cells
        code = key_index.astype(np.int64) * k + log.position
        codes, cell_index = np.unique(code, return_inverse=True)
        cell_key = codes // k
        cell_pos = codes % k
        cells = _Cells.build(log, cell_index.astype(np.int64), codes.shape[0])
        shown, clicked = cells.shown, cells.clicked
        key_clicks = np.bincount(cell_key, weights=clicked, minlength=n_keys)
        self._check_connected(cell_pos, cell_key, key_clicks, k, n_keys, ref)
        pos_clicks = np.bincount(cell_pos, weights=clicked, minlength=k)
        if pos_clicks[ref] == 0:
            raise ValidationError(
                f"not identifiable: the reference position {ref} has no clicks on relevance keys "
                "that also appear at other positions; choose another reference"
            )

        # start: flat examination 0.5, relevance = key CTR / 0.5
        theta0 = np.full((1, k), 0.5)
        key_shown = np.bincount(cell_key, weights=shown, minlength=n_keys)
        gamma0 = _clip01(key_clicks / np.maximum(key_shown, _EPS) / 0.5)[None, :]
        tol, max_iter, accelerate = float(self.tol), int(self.max_iter), bool(self.accelerate)
        theta, gamma, n_iter, ok = _PBMCells(
            cell_pos, cell_key, shown[None, :], clicked[None, :], k, n_keys
        ).fit(theta0, gamma0, ref, tol, max_iter, accelerate)
        theta, gamma, converged = theta[0], gamma[0], bool(ok[0])
        point = theta / theta[ref]
        if not converged:
            reasons.append(f"EM did not converge in max_iter={self.max_iter} iterations (tol={self.tol})")
            _warn("em_position_bias: " + reasons[-1], RuntimeWarning)
        boot_unconverged = 0

        def statistic(s: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            nonlocal boot_unconverged
            b = s.shape[0]
            # warm start every replicate from the full-log solution
            t, _, _, conv = _PBMCells(cell_pos, cell_key, s, c, k, n_keys).fit(
                np.tile(theta, (b, 1)), np.tile(gamma, (b, 1)), ref, tol, max_iter, accelerate
            )
            boot_unconverged += int((~conv).sum())
            pos_shown = np.zeros((b, k))
            pos_click = np.zeros((b, k))
            np.add.at(pos_shown.T, cell_pos, s.T)
            np.add.at(pos_click.T, cell_pos, c.T)
            valid = np.all(pos_shown > 0, axis=1) & (pos_click[:, ref] > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                return t / t[:, ref : ref + 1], valid

        gen = np.random.default_rng(rng)
        lower, upper, n_valid, boot_reason = _bootstrap(
            statistic, cells, log.n_sessions, self.n_bootstrap, self.confidence, gen, point
        )
        reasons.append(boot_reason)
        if boot_unconverged:
            reasons.append(
                f"EM did not converge in {boot_unconverged} bootstrap replicates (max_iter={self.max_iter})"
            )
        self.theta_ = theta
        self.gamma_ = gamma
        self.keys_ = keys
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.estimate_ = _finish(
            method="em",
            log=log,
            examination=point,
            lower=lower,
            upper=upper,
            confidence=self.confidence,
            n_valid=n_valid,
            reasons=reasons,
            identifiable=True,
            ref_examination=ref_examination,
            converged=converged,
            n_iter=n_iter,
        )
        return self

    @staticmethod
    def _check_connected(
        cell_pos: np.ndarray,
        cell_key: np.ndarray,
        key_clicks: np.ndarray,
        k: int,
        n_keys: int,
        ref: int,
    ) -> None:
        """Reject logs whose position-key graph (clicked keys only) is disconnected."""
        informative = key_clicks[cell_key] > 0
        rows = cell_pos[informative]
        cols = k + cell_key[informative]
        size = k + n_keys
        graph = sparse.coo_matrix((np.ones(rows.shape[0]), (rows, cols)), shape=(size, size)).tocsr()
        _, labels = connected_components(graph, directed=False)
        apart = np.flatnonzero(labels[:k] != labels[ref]).tolist()
        if apart:
            raise ValidationError(
                f"not identifiable: positions {apart} share no clicked relevance key with the "
                f"reference position {ref} (directly or through other positions); EM needs keys "
                "that appear at several positions (e.g. varying candidate sets or some "
                "randomisation)"
            )


def em_position_bias(
    session_id: Any,
    position: Any,
    item_id: Any,
    click: Any,
    n_positions: int,
    *,
    relevance_key: Any = None,
    reference: int = 0,
    tol: float = 1e-6,
    max_iter: int = 2000,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    rng: np.random.Generator | int | None = None,
    ref_examination: float | None = None,
    accelerate: bool = True,
    min_key_impressions: float = 5.0,
) -> PositionBiasEstimate:
    """Examination curve by EM of the position-based model (Wang et al. 2018).

    Works on non-randomised logs, provided relevance keys move between positions.

    Parameters
    ----------
    session_id : ndarray of shape (n_impressions,), int64
        Session of each impression; the bootstrap resamples sessions.
    position : ndarray of shape (n_impressions,), int16
        0-based slot, in ``[0, n_positions)``.
    item_id : ndarray of shape (n_impressions,), int32
        Item shown; the relevance key unless ``relevance_key`` is given.
    click : ndarray of shape (n_impressions,), bool
        Whether the impression was clicked.
    n_positions : int
        Slate length K (>= 2).
    relevance_key : ndarray of shape (n_impressions,), int, optional
        One relevance parameter per distinct value (e.g. ``user_id * n_items + item_id`` for
        personal relevance). Default: ``item_id``.
    reference, n_bootstrap, confidence, rng, ref_examination
        As in :func:`ctr_ratio`.
    tol, max_iter, accelerate, min_key_impressions
        Fields of :class:`PositionBasedEM`: convergence tolerance on the relative curve,
        iteration cap (EM steps), SQUAREM acceleration, sparse-key warning threshold.

    Returns
    -------
    PositionBiasEstimate
        ``method="em"``, with ``converged`` and ``n_iter``.

    Raises
    ------
    ValidationError
        The errors of :func:`ctr_ratio`, and a disconnected position-key graph ("not
        identifiable").

    Warns
    -----
    RuntimeWarning
        When EM stops at ``max_iter`` before meeting ``tol``.
    SparseRelevanceWarning
        When the median relevance key has fewer than ``min_key_impressions`` impressions.

    Notes
    -----
    See :class:`PositionBasedEM` for the E- and M-steps and the identification argument.

    References
    ----------
    .. [1] X. Wang, N. Golbandi, M. Bendersky, D. Metzler, M. Najork. "Position bias estimation
       for unbiased learning to rank in personal search." WSDM 2018.
    """
    model = PositionBasedEM(
        n_positions=n_positions,
        reference=reference,
        tol=tol,
        max_iter=max_iter,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        accelerate=accelerate,
        min_key_impressions=min_key_impressions,
    )
    model.fit(
        session_id,
        position,
        item_id,
        click,
        relevance_key=relevance_key,
        rng=rng,
        ref_examination=ref_examination,
    )
    return model.estimate_


# --------------------------------------------------------------------------------------------
# Dispatcher for a log (the `recloop` command reads columns and calls this)
# --------------------------------------------------------------------------------------------

POSITION_BIAS_METHODS: dict[str, Callable[..., PositionBiasEstimate]] = {
    "ctr_ratio": ctr_ratio,
    "swap_intervention": swap_intervention,
    "em": em_position_bias,
}


def estimate_position_bias(
    columns: Mapping[str, Any],
    method: str,
    *,
    n_positions: int | None = None,
    **kwargs: Any,
) -> PositionBiasEstimate:
    """Run a position-bias estimator on the columns of an impression log.

    Parameters
    ----------
    columns : mapping of str to array-like
        Columns of the impression-log schema: ``session_id``, ``position``, ``click`` and, by
        method, ``item_id`` (``ctr_ratio``, ``em``) or ``original_position``
        (``swap_intervention``). A pandas DataFrame or a dict of numpy arrays works.
    method : {"ctr_ratio", "swap_intervention", "em"}
    n_positions : int, optional
        Slate length; default ``max(position) + 1``.
    **kwargs
        Passed to the estimator (``reference``, ``n_bootstrap``, ``confidence``, ``rng``, ...).

    Returns
    -------
    PositionBiasEstimate

    Raises
    ------
    ValidationError
        Unknown method (with the known names), a missing column, or the estimator's errors.
    """
    if method not in POSITION_BIAS_METHODS:
        import difflib

        close = difflib.get_close_matches(str(method), POSITION_BIAS_METHODS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValidationError(f"method must be one of {sorted(POSITION_BIAS_METHODS)}; got {method!r}{hint}")
    needed = ["session_id", "position", "click"]
    needed.append("original_position" if method == "swap_intervention" else "item_id")
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValidationError(f"method {method!r} needs log columns {needed}; missing {missing}")
    arrays = {c: np.asarray(columns[c]) for c in needed}
    if n_positions is None:
        if arrays["position"].size == 0:
            raise ValidationError("not identifiable: the log is empty (no impressions)")
        n_positions = int(np.max(arrays["position"])) + 1
    if method == "swap_intervention":
        return swap_intervention(
            arrays["session_id"],
            arrays["position"],
            arrays["original_position"],
            arrays["click"],
            n_positions,
            **kwargs,
        )
    return POSITION_BIAS_METHODS[method](
        arrays["session_id"],
        arrays["position"],
        arrays["item_id"],
        arrays["click"],
        n_positions,
        **kwargs,
    )
