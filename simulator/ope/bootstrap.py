"""Bootstrap confidence intervals for off-policy estimates.

Two conventions, chosen with ``convention=``:

``"obp"`` (default)
    Exactly ``obp.utils.estimate_confidence_interval_by_bootstrap`` (obp 0.5.7): the per-round
    values ``s_i`` of the estimator are computed **once on the full sample** (so self-normalised
    estimators are *not* re-normalised inside a resample); ``rs = np.random.RandomState(seed)``
    (legacy MT19937); ``B`` times ``np.mean(rs.choice(s, size=n))`` (uniform, with replacement);
    the interval is ``np.percentile(boot, [100 α/2, 100 (1 − α/2)])`` (linear interpolation) and
    ``mean`` is the mean of the bootstrap means (not the point estimate). With the same integer
    seed this reproduces obp's numbers bit for bit. ``random_state=None`` draws a fresh
    OS-seeded ``RandomState`` (obp would use NumPy's global state; recloop never does).

``"percentile"``
    The textbook nonparametric percentile bootstrap of the *estimator* itself, on recloop's
    seed convention: ``rng = np.random.default_rng(seed)``; each replicate resamples the rounds
    with replacement and recomputes the estimate, so SNIPW/SNDR are re-normalised inside every
    resample (``Σ_b r w / Σ_b w``); for estimators that are plain means this equals the mean of
    the resampled per-round values. The interval is the same ``np.percentile`` pair. Resampling
    is vectorised in blocks of at most ``2**22`` indices.

Both return a :class:`BootstrapInterval`; :meth:`BootstrapInterval.as_obp_dict` gives obp's
dictionary (``{"mean", "95.0% CI (lower)", "95.0% CI (upper)"}``).

References
----------
Efron, B. & Tibshirani, R. (1993). *An Introduction to the Bootstrap*, ch. 13 (percentile
interval). Saito, Y. et al. (2021). Open Bandit Dataset and Pipeline. NeurIPS Datasets and
Benchmarks (``obp.utils.estimate_confidence_interval_by_bootstrap``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from simulator.errors import ValidationError
from simulator.ope._validation import CHUNK_ELEMENTS

Convention = Literal["obp", "percentile"]
CONVENTIONS: tuple[str, ...] = ("obp", "percentile")


@dataclass(frozen=True)
class BootstrapInterval:
    """A bootstrap confidence interval.

    Attributes
    ----------
    estimate : float
        The point estimate on the full sample (``estimate_policy_value``).
    mean : float
        Mean of the bootstrap replicates (what obp reports as ``"mean"``).
    lower, upper : float
        ``np.percentile`` of the replicates at ``100 α/2`` and ``100 (1 − α/2)``.
    alpha : float
        Significance level; the interval has nominal coverage ``1 − alpha``.
    n_bootstrap_samples : int
        Number of replicates.
    convention : {"obp", "percentile"}
        How the replicates were drawn (see the module docstring).
    """

    estimate: float
    mean: float
    lower: float
    upper: float
    alpha: float
    n_bootstrap_samples: int
    convention: str

    def as_obp_dict(self) -> dict[str, float]:
        """The interval as obp returns it: ``{"mean", "95.0% CI (lower)", "95.0% CI (upper)"}``."""
        pct = 100.0 * (1.0 - self.alpha)
        return {
            "mean": self.mean,
            f"{pct}% CI (lower)": self.lower,
            f"{pct}% CI (upper)": self.upper,
        }


def _check_settings(n_bootstrap_samples: object, alpha: object, convention: object) -> None:
    if (
        isinstance(n_bootstrap_samples, bool)
        or not isinstance(n_bootstrap_samples, int | np.integer)
        or n_bootstrap_samples < 1
    ):
        raise ValidationError(f"n_bootstrap_samples must be an int >= 1; got {n_bootstrap_samples!r}")
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, int | float | np.floating)
        or not 0.0 < float(alpha) < 1.0
    ):
        raise ValidationError(f"alpha must be a float in (0, 1); got {alpha!r}")
    if convention not in CONVENTIONS:
        raise ValidationError(f"convention must be one of {CONVENTIONS}; got {convention!r}")


def _legacy_random_state(random_state: object) -> np.random.RandomState:
    if random_state is None:
        return np.random.RandomState()  # fresh, OS-seeded: never NumPy's global state
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValidationError(f"random_state must be an int >= 0; got {random_state}")
        return np.random.RandomState(int(random_state))
    raise ValidationError(
        "random_state for convention='obp' must be None, an int or a np.random.RandomState "
        f"(obp draws with the legacy MT19937 stream); got {type(random_state).__name__}"
    )


def _generator(random_state: object) -> np.random.Generator:
    if isinstance(random_state, np.random.RandomState):
        raise ValidationError(
            "random_state for convention='percentile' must be None, an int, a SeedSequence or a "
            "np.random.Generator; got np.random.RandomState"
        )
    try:
        return np.random.default_rng(random_state)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            "random_state for convention='percentile' must be None, an int, a SeedSequence or a "
            f"np.random.Generator; got {random_state!r}"
        ) from exc


def _obp_replicates(values: np.ndarray, n_boot: int, rs: np.random.RandomState) -> np.ndarray:
    """obp's ``[np.mean(rs.choice(s, size=n)) for _ in range(B)]``, drawn in blocks.

    ``RandomState.choice(s, size=n)`` (uniform, with replacement) is ``s[rs.randint(0, n,
    size=n)]``, and ``randint`` draws each bounded integer from its own 32-bit outputs with no
    state carried between calls, so one ``randint(0, n, size=(m, n))`` call yields exactly the
    indices of ``m`` consecutive ``choice`` calls (checked bit for bit against obp's numbers).
    Row means of a C-contiguous block use the same pairwise summation as ``np.mean``.
    """
    n = values.shape[0]
    boot = np.empty(n_boot, dtype=np.float64)
    block = max(1, CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        idx = rs.randint(0, n, size=(m, n))
        boot[start : start + m] = values[idx].mean(axis=1)
    return boot


def _percentile_replicates(
    base: np.ndarray | None,
    numerator: np.ndarray | None,
    denominator: np.ndarray | None,
    n_boot: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replicates of ``mean(base) + Σ numerator / Σ denominator`` over resampled rounds."""
    n = (base if base is not None else numerator).shape[0]  # type: ignore[union-attr]
    boot = np.empty(n_boot, dtype=np.float64)
    block = max(1, CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        rep = base[idx].mean(axis=1) if base is not None else np.zeros(m)
        if numerator is not None and denominator is not None:
            den = denominator[idx].sum(axis=1)
            if np.any(den == 0.0):
                raise ValidationError(
                    "a bootstrap resample has zero total importance weight, so the "
                    "self-normalized estimate is undefined on it; the target policy gives "
                    "probability to too few logged actions for a percentile bootstrap"
                )
            rep = rep + numerator[idx].sum(axis=1) / den
        boot[start : start + m] = rep
    return boot


def interval_from_parts(
    base: np.ndarray | None,
    numerator: np.ndarray | None = None,
    denominator: np.ndarray | None = None,
    *,
    n_bootstrap_samples: int = 10000,
    alpha: float = 0.05,
    random_state: object = None,
    convention: str = "obp",
) -> BootstrapInterval:
    """Interval for an estimate written as ``mean(base) + Σ numerator / Σ denominator``.

    Parameters
    ----------
    base : ndarray of shape (n_rounds,), float64, or None
        The plain-mean part of the per-round values.
    numerator, denominator : ndarray of shape (n_rounds,), float64, or None
        The self-normalised part (both or neither); ``denominator`` sums to a non-zero value.

    Notes
    -----
    The obp per-round values are ``s_i = base_i + numerator_i / mean(denominator)``; they feed
    the ``"obp"`` convention, the parts feed the ``"percentile"`` one.
    """
    _check_settings(n_bootstrap_samples, alpha, convention)
    n_boot = int(n_bootstrap_samples)
    alpha = float(alpha)
    if (numerator is None) != (denominator is None):
        raise ValidationError("numerator and denominator must be given together; got one")
    if numerator is not None and denominator is not None:
        s = numerator / denominator.mean()
        if base is not None:
            s = base + s
    elif base is not None:
        s = base
    else:
        raise ValidationError("interval_from_parts needs base or numerator; got neither")
    estimate = float(s.mean())
    if convention == "obp":
        boot = _obp_replicates(s, n_boot, _legacy_random_state(random_state))
    else:
        boot = _percentile_replicates(base, numerator, denominator, n_boot, _generator(random_state))
    lower = float(np.percentile(boot, 100.0 * (alpha / 2.0)))
    upper = float(np.percentile(boot, 100.0 * (1.0 - alpha / 2.0)))
    return BootstrapInterval(
        estimate=estimate,
        mean=float(np.mean(boot)),
        lower=lower,
        upper=upper,
        alpha=alpha,
        n_bootstrap_samples=n_boot,
        convention=str(convention),
    )


def bootstrap_interval(
    round_values: object,
    *,
    n_bootstrap_samples: int = 10000,
    alpha: float = 0.05,
    random_state: object = None,
    convention: str = "obp",
) -> BootstrapInterval:
    """Bootstrap interval of the mean of per-round values.

    Parameters
    ----------
    round_values : array-like of shape (n_rounds,), float
        Per-round values whose mean is the estimate (``estimate_round_rewards`` output).
    n_bootstrap_samples : int, default 10000
        Number of bootstrap replicates (>= 1).
    alpha : float, default 0.05
        Significance level in (0, 1).
    random_state : None, int, RandomState (``"obp"``) or Generator/SeedSequence (``"percentile"``)
        Seed of the resampling stream.
    convention : {"obp", "percentile"}, default "obp"
        See the module docstring; for a plain mean both resample the values, with different
        random streams.

    Returns
    -------
    BootstrapInterval

    Raises
    ------
    ValidationError
        If ``round_values`` is not a non-empty finite 1-D array, ``n_bootstrap_samples < 1``,
        ``alpha`` is outside (0, 1), the convention is unknown, or ``random_state`` does not fit
        the convention.
    """
    values = np.asarray(round_values)
    if values.ndim != 1 or values.shape[0] == 0:
        raise ValidationError(f"round_values must be a non-empty 1-D array; got shape {values.shape}")
    if values.dtype.kind not in "biuf":
        raise ValidationError(f"round_values must be numeric; got dtype {values.dtype}")
    values = values.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.all():
        i = int(np.argmax(~finite))
        raise ValidationError(f"round_values must be finite; got {values[i]} at round {i}")
    return interval_from_parts(
        values,
        n_bootstrap_samples=n_bootstrap_samples,
        alpha=alpha,
        random_state=random_state,
        convention=convention,
    )
