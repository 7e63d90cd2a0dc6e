"""Input checks shared by every off-policy estimator (private).

Every check is vectorised (a few passes over each array, no Python loop over rounds) and runs at
the public boundary only; the formulas in :mod:`simulator.ope.estimators` trust what these
functions return. Each failure raises :class:`~simulator.errors.ValidationError` naming the
parameter, the rule and the offending value with its round index.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from simulator.errors import ValidationError

#: Row sums of an ``action_dist`` must be within this of 1 (``np.allclose`` defaults, as in obp).
SUM_RTOL = 1e-5
SUM_ATOL = 1e-8

#: Chunk size (in array elements) for passes that would otherwise build (n_rounds, n_actions)
#: temporaries; keeps peak memory bounded for 10^7 rounds.
CHUNK_ELEMENTS = 1 << 22


def _first(mask: np.ndarray) -> int:
    """Index of the first True in a 1-D boolean mask (the caller knows there is one)."""
    return int(np.argmax(mask))


def as_1d_float(name: str, x: object, n: int | None = None) -> np.ndarray:
    """Return ``x`` as a finite 1-D float64 array of length ``n`` (if given)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be a 1-D array; got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValidationError(f"{name} must be numeric (bool, int or float); got dtype {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise ValidationError(
            f"{name} must have length n_rounds = {n} (action_dist.shape[0]); got length {arr.shape[0]}"
        )
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        i = _first(~finite)
        raise ValidationError(f"{name} must be finite; got {arr[i]} at round {i}")
    return arr


def as_1d_int(name: str, x: object, n: int, upper: int, upper_name: str) -> np.ndarray:
    """Return ``x`` as a 1-D intp array of length ``n`` with values in ``[0, upper)``."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be a 1-D array; got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValidationError(f"{name} must be an integer array; got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise ValidationError(
            f"{name} must have length n_rounds = {n} (action_dist.shape[0]); got length {arr.shape[0]}"
        )
    if n:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= upper:
            bad = (arr < 0) | (arr >= upper)
            i = _first(bad)
            raise ValidationError(
                f"{name} must be in [0, {upper_name}) = [0, {upper}); got {int(arr[i])} at round {i}"
            )
    return arr.astype(np.intp, copy=False)


def check_pscore(name: str, x: object, n: int | None = None) -> np.ndarray:
    """Return propensities as 1-D float64; each must be in (0, 1] and finite (never NaN)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be a 1-D array; got shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise ValidationError(f"{name} must be a float array; got dtype {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise ValidationError(
            f"{name} must have length n_rounds = {n} (action_dist.shape[0]); got length {arr.shape[0]}"
        )
    arr = arr.astype(np.float64, copy=False)
    check_positive_probability(name, arr)
    return arr


def check_positive_probability(name: str, arr: np.ndarray) -> None:
    """Raise unless every entry of the float array is in (0, 1] (rounds are axis 0)."""
    if arr.size == 0:
        return
    ok = (arr > 0.0) & (arr <= 1.0 + 1e-6)  # NaN compares False, so it fails here too
    if ok.all():
        return
    flat_bad = ~ok.ravel()
    i = _first(flat_bad)
    where = np.unravel_index(i, arr.shape)
    at = f"round {where[0]}" if arr.ndim == 1 else f"round {where[0]}, position {where[1]}"
    value = arr[where]
    if not np.isfinite(value):
        raise ValidationError(f"{name} must be > 0 and finite; got {value} at {at}")
    if value > 1.0:
        raise ValidationError(f"{name} must be a probability <= 1; got max {value} at {at}")
    lo = np.nanmin(arr)
    j = np.unravel_index(int(np.nanargmin(arr)), arr.shape)
    at = f"round {j[0]}" if arr.ndim == 1 else f"round {j[0]}, position {j[1]}"
    raise ValidationError(f"{name} must be > 0 and finite; got min {lo} at {at}")


def check_action_dist(action_dist: object, name: str = "action_dist") -> np.ndarray:
    """Return ``action_dist`` as a float array of shape (n_rounds, n_actions, len_list).

    Entries must be >= 0 and finite and every (round, position) column must sum to 1 over the
    actions (axis 1) within ``np.allclose`` tolerance. The array is not copied.
    """
    arr = np.asarray(action_dist)
    if arr.ndim != 3:
        raise ValidationError(
            f"{name} must be a 3-D array of shape (n_rounds, n_actions, len_list); got shape {arr.shape}"
        )
    if arr.dtype.kind != "f":
        raise ValidationError(f"{name} must be a float array; got dtype {arr.dtype}")
    n, k, length = arr.shape
    if k == 0 or length == 0:
        raise ValidationError(f"{name} must have n_actions >= 1 and len_list >= 1; got {arr.shape}")
    if n == 0:
        raise ValidationError(f"{name} must hold at least one round; got shape {arr.shape}")
    mn = arr.min()
    if not mn >= 0.0:  # also catches NaN
        bad = np.argwhere(~(arr >= 0.0))[0]
        raise ValidationError(
            f"{name} must be >= 0 and finite; got {arr[tuple(bad)]} at round {bad[0]}, "
            f"action {bad[1]}, position {bad[2]}"
        )
    sums = np.einsum("ijk->ik", arr, dtype=np.float64)  # (n_rounds, len_list); inf propagates
    close = np.abs(sums - 1.0) <= SUM_ATOL + SUM_RTOL
    if not close.all():
        bad = np.argwhere(~close)[0]
        raise ValidationError(
            f"{name} must sum to 1 over actions (axis 1) for every round and position; got "
            f"{float(sums[tuple(bad)]):.10g} at round {bad[0]}, position {bad[1]}"
        )
    return arr


class BanditArrays(NamedTuple):
    """Validated inputs of a standard (non-slate) estimator; ``position`` None means all zeros."""

    reward: np.ndarray | None
    action: np.ndarray
    pscore: np.ndarray | None
    action_dist: np.ndarray
    position: np.ndarray | None
    q_hat: np.ndarray | None

    @property
    def n_rounds(self) -> int:
        return self.action.shape[0]


def validate_bandit_inputs(
    owner: str,
    *,
    reward: object,
    action: object,
    pscore: object,
    action_dist: object,
    position: object,
    estimated_rewards_by_reg_model: object,
    needs_reward: bool,
    needs_pscore: bool,
    needs_reg_model: bool,
) -> BanditArrays:
    """Validate the arrays of the (n_rounds, n_actions, len_list) convention for ``owner``."""
    missing = [
        name
        for name, value, needed in (
            ("reward", reward, needs_reward),
            ("action", action, True),
            ("pscore", pscore, needs_pscore),
            ("action_dist", action_dist, True),
            ("estimated_rewards_by_reg_model", estimated_rewards_by_reg_model, needs_reg_model),
        )
        if needed and value is None
    ]
    if missing:
        raise ValidationError(f"{owner} requires {', '.join(missing)}; got None")
    ad = check_action_dist(action_dist)
    n, n_actions, len_list = ad.shape
    act = as_1d_int("action", action, n, n_actions, "n_actions")
    rew = as_1d_float("reward", reward, n) if needs_reward else None
    ps = check_pscore("pscore", pscore, n) if needs_pscore else None
    if position is None:
        if len_list > 1:
            raise ValidationError(
                f"position is required when action_dist has len_list = {len_list} > 1 positions; got None"
            )
        pos = None
    else:
        pos = as_1d_int("position", position, n, len_list, "len_list")
        if len_list == 1:
            pos = None  # all zeros: use the cheaper view-based paths
    q_hat = None
    if needs_reg_model:
        q_hat = np.asarray(estimated_rewards_by_reg_model)
        if q_hat.shape != ad.shape:
            raise ValidationError(
                "estimated_rewards_by_reg_model must have the shape of action_dist "
                f"{ad.shape}; got shape {q_hat.shape}"
            )
        if q_hat.dtype.kind not in "iuf":
            raise ValidationError(
                f"estimated_rewards_by_reg_model must be a float array; got dtype {q_hat.dtype}"
            )
        if not np.isfinite(q_hat.sum(dtype=np.float64)):
            bad = np.argwhere(~np.isfinite(q_hat))
            if len(bad):
                b = bad[0]
                raise ValidationError(
                    "estimated_rewards_by_reg_model must be finite; got "
                    f"{q_hat[tuple(b)]} at round {b[0]}, action {b[1]}, position {b[2]}"
                )
            raise ValidationError("estimated_rewards_by_reg_model must be finite; its sum overflows float64")
    return BanditArrays(rew, act, ps, ad, pos, q_hat)


def check_lambda(owner: str, value: object, *, upper: float = np.inf, name: str = "lambda_") -> float:
    """Return a hyperparameter as float in [0, upper] (inf allowed when upper is inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValidationError(f"{owner}.{name} must be a float; got {value!r}")
    v = float(value)
    if np.isnan(v) or v < 0.0 or v > upper:
        rule = ">= 0 (np.inf disables it)" if upper == np.inf else f"in [0, {upper}]"
        raise ValidationError(f"{owner}.{name} must be a float {rule}; got {v}")
    return v
