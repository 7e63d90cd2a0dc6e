"""Off-policy estimators of a target policy's value from a logged bandit feedback.

Every estimator is a small frozen dataclass whose fields are its hyperparameters (validated on
construction) and shares one signature, on numpy arrays in the (n_rounds, n_actions, len_list)
convention of the Open Bandit Pipeline (obp):

``reward`` : ndarray of shape (n_rounds,), float
    Observed reward r_i of round i (a click is 0/1).
``action`` : ndarray of shape (n_rounds,), int
    Logged action (item) a_i in [0, n_actions).
``pscore`` : ndarray of shape (n_rounds,), float
    Logging propensity p_i = pi_b(a_i | x_i, pos_i) in (0, 1], read from the log, never
    recomputed.
``action_dist`` : ndarray of shape (n_rounds, n_actions, len_list), float
    Target policy pi_e(a | x_i, k); sums to 1 over axis 1 for every round and position.
``estimated_rewards_by_reg_model`` : ndarray of shape (n_rounds, n_actions, len_list), float
    Reward model q̂(x_i, a, k), e.g. from :class:`simulator.ope.reward_model.RewardModel`.
``position`` : ndarray of shape (n_rounds,), int, optional
    Logged position pos_i in [0, len_list); None means all zeros (only allowed if len_list = 1).

Each round is one impression; with len_list > 1 this is obp's convention for ranked lists
(each row one (item, position) pair, ``pscore`` its marginal propensity); see
:mod:`simulator.ope.slate` for estimators over whole slates.

Notation and conventions (reproducing obp 0.5.7 exactly, see ``shared/reference/README.md``):
w_i = pi_e(a_i | x_i, pos_i) / p_i is the **full-sample** importance weight;
q̂_i(a) = q̂(x_i, a, pos_i) and q̂_i = q̂_i(a_i); the DM term of every DR variant is over the
**full action distribution**, DM_i = Σ_a pi_e(a | x_i, pos_i) q̂_i(a) / Σ_a pi_e(a | x_i, pos_i).
``estimate_policy_value`` is the plain mean of ``estimate_round_rewards``; the self-normalised
estimators divide by the mean weight of the whole sample.

All computations are vectorised numpy (the (n_rounds, n_actions) DM term in bounded chunks), so
10^7 rounds evaluate in seconds (``benchmarks/ope_throughput.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from simulator.errors import ValidationError
from simulator.ope._validation import (
    CHUNK_ELEMENTS,
    BanditArrays,
    check_lambda,
    validate_bandit_inputs,
)
from simulator.ope.bootstrap import BootstrapInterval, interval_from_parts

__all__ = [
    "BaseOffPolicyEstimator",
    "DirectMethod",
    "DoublyRobust",
    "DoublyRobustWithShrinkage",
    "Estimator",
    "InverseProbabilityWeighting",
    "SelfNormalizedDoublyRobust",
    "SelfNormalizedInverseProbabilityWeighting",
    "SubGaussianDoublyRobust",
    "SubGaussianInverseProbabilityWeighting",
    "SwitchDoublyRobust",
    "importance_weights",
]

Parts = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]


@runtime_checkable
class Estimator(Protocol):
    """What every (non-slate) off-policy estimator offers; see the module docstring for arrays."""

    name: ClassVar[str]

    def estimate_round_rewards(
        self,
        *,
        reward: np.ndarray | None = None,
        action: np.ndarray,
        pscore: np.ndarray | None = None,
        action_dist: np.ndarray,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        position: np.ndarray | None = None,
    ) -> np.ndarray: ...

    def estimate_policy_value(
        self,
        *,
        reward: np.ndarray | None = None,
        action: np.ndarray,
        pscore: np.ndarray | None = None,
        action_dist: np.ndarray,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        position: np.ndarray | None = None,
    ) -> float: ...

    def estimate_interval(
        self,
        *,
        reward: np.ndarray | None = None,
        action: np.ndarray,
        pscore: np.ndarray | None = None,
        action_dist: np.ndarray,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        position: np.ndarray | None = None,
        n_bootstrap_samples: int = 10000,
        alpha: float = 0.05,
        random_state: object = None,
        convention: str = "obp",
    ) -> BootstrapInterval: ...


# ---------------------------------------------------------------------------------------------
# vectorised building blocks


def _logged(arr: np.ndarray, action: np.ndarray, position: np.ndarray | None) -> np.ndarray:
    """arr[i, a_i, pos_i] as float64, shape (n_rounds,)."""
    n, n_actions, len_list = arr.shape
    if arr.flags.c_contiguous:  # one flat gather is the fastest path
        flat = np.arange(n, dtype=np.intp) * (n_actions * len_list)
        flat += action * len_list
        if position is not None:
            flat += position
        out = np.take(arr.reshape(-1), flat)
    elif position is None:
        out = arr[:, :, 0][np.arange(n), action]
    else:
        out = arr[np.arange(n), action, position]
    return out.astype(np.float64, copy=False)


def _weights(d: BanditArrays) -> np.ndarray:
    """Full-sample importance weights w_i = pi_e(a_i | x_i, pos_i) / p_i."""
    return _logged(d.action_dist, d.action, d.position) / d.pscore


def _dm_term(d: BanditArrays) -> np.ndarray:
    """DM_i = Σ_a pi_e(a|x_i,pos_i) q̂(x_i,a,pos_i) / Σ_a pi_e(a|x_i,pos_i) (obp's np.average).

    ``einsum`` accumulates in float64 without (n_rounds, n_actions) temporaries; with
    len_list > 1 the per-position slices are gathered in chunks of rounds (bounded memory).
    Agrees with obp's ``np.average`` to ~1e-16 relative (summation order only).
    """
    ad, q, pos = d.action_dist, d.q_hat, d.position
    if q is None:  # pragma: no cover - guaranteed by needs_reg_model
        raise ValidationError("estimated_rewards_by_reg_model is required for the DM term")
    n, n_actions, _ = ad.shape
    if pos is None:
        pi, qq = ad[:, :, 0], q[:, :, 0]
        num = np.einsum("ij,ij->i", qq, pi, dtype=np.float64)
        return num / np.einsum("ij->i", pi, dtype=np.float64)
    out = np.empty(n, dtype=np.float64)
    step = max(1, CHUNK_ELEMENTS // n_actions)
    for start in range(0, n, step):
        stop = min(n, start + step)
        rows = np.arange(start, stop)
        pi = ad[rows, :, pos[start:stop]]
        qq = q[rows, :, pos[start:stop]]
        num = np.einsum("ij,ij->i", qq, pi, dtype=np.float64)
        out[start:stop] = num / np.einsum("ij->i", pi, dtype=np.float64)
    return out


def _check_weight_mass(owner: str, w: np.ndarray) -> None:
    total = w.sum()
    if not total > 0.0:
        raise ValidationError(
            f"{owner}: action_dist gives zero probability to every logged action (sum of "
            f"importance weights is {total}), so the self-normalized estimate is undefined"
        )


def importance_weights(
    *,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray,
    position: np.ndarray | None = None,
) -> np.ndarray:
    """Importance weights w_i = pi_e(a_i | x_i, pos_i) / p_i (for diagnostics).

    Parameters
    ----------
    action : ndarray of shape (n_rounds,), int
    pscore : ndarray of shape (n_rounds,), float
    action_dist : ndarray of shape (n_rounds, n_actions, len_list), float
    position : ndarray of shape (n_rounds,), int, optional

    Returns
    -------
    ndarray of shape (n_rounds,), float64

    Raises
    ------
    ValidationError
        On any invalid input (see :func:`InverseProbabilityWeighting.estimate_round_rewards`).
    """
    d = validate_bandit_inputs(
        "importance_weights",
        reward=None,
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        position=position,
        estimated_rewards_by_reg_model=None,
        needs_reward=False,
        needs_pscore=True,
        needs_reg_model=False,
    )
    return _weights(d)


# ---------------------------------------------------------------------------------------------
# base class


@dataclass(frozen=True)
class BaseOffPolicyEstimator:
    """Shared machinery: validation, per-round values, policy value, bootstrap interval.

    Subclasses implement ``_parts``, returning ``(base, numerator, denominator)`` such that the
    estimate is ``mean(base) + Σ numerator / Σ denominator`` (either part may be None).
    """

    name: ClassVar[str] = "base"
    needs_reward: ClassVar[bool] = True
    needs_pscore: ClassVar[bool] = True
    needs_reg_model: ClassVar[bool] = False

    def _parts(self, d: BanditArrays) -> Parts:  # pragma: no cover - abstract
        raise NotImplementedError

    def _validate(self, **arrays: object) -> BanditArrays:
        return validate_bandit_inputs(
            type(self).__name__,
            needs_reward=self.needs_reward,
            needs_pscore=self.needs_pscore,
            needs_reg_model=self.needs_reg_model,
            **arrays,  # type: ignore[arg-type]
        )

    def estimate_round_rewards(
        self,
        *,
        reward: np.ndarray | None = None,
        action: np.ndarray,
        pscore: np.ndarray | None = None,
        action_dist: np.ndarray,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        position: np.ndarray | None = None,
    ) -> np.ndarray:
        """Per-round values whose mean is the estimate (obp's ``_estimate_round_rewards``).

        Parameters
        ----------
        reward : ndarray of shape (n_rounds,), float
            Observed rewards (not needed by DM).
        action : ndarray of shape (n_rounds,), int
            Logged actions in [0, n_actions).
        pscore : ndarray of shape (n_rounds,), float
            Logging propensities of the logged actions, in (0, 1] (not needed by DM).
        action_dist : ndarray of shape (n_rounds, n_actions, len_list), float
            Target policy; every (round, position) sums to 1 over actions.
        estimated_rewards_by_reg_model : ndarray of shape (n_rounds, n_actions, len_list), float
            Reward model predictions (needed by DM and the DR family only).
        position : ndarray of shape (n_rounds,), int, optional
            Logged positions in [0, len_list); required when len_list > 1.

        Returns
        -------
        ndarray of shape (n_rounds,), float64

        Raises
        ------
        ValidationError
            If a required array is None; shapes disagree; ``action``/``position`` are not
            integers in range; ``pscore`` is <= 0, > 1, NaN or infinite; ``reward`` or the reward
            model is not finite; ``action_dist`` is negative, NaN or does not sum to 1 over
            actions; or (self-normalised estimators) ``action_dist`` gives zero probability to
            every logged action.
        """
        base, num, den = self._parts(
            self._validate(
                reward=reward,
                action=action,
                pscore=pscore,
                action_dist=action_dist,
                position=position,
                estimated_rewards_by_reg_model=estimated_rewards_by_reg_model,
            )
        )
        if num is None or den is None:
            return base  # type: ignore[return-value]
        values = num / den.mean()
        return values if base is None else base + values

    def estimate_policy_value(
        self,
        *,
        reward: np.ndarray | None = None,
        action: np.ndarray,
        pscore: np.ndarray | None = None,
        action_dist: np.ndarray,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        position: np.ndarray | None = None,
    ) -> float:
        """Estimated value of the target policy: the mean of :meth:`estimate_round_rewards`.

        Parameters and Raises are those of :meth:`estimate_round_rewards`.

        Returns
        -------
        float
        """
        return float(
            self.estimate_round_rewards(
                reward=reward,
                action=action,
                pscore=pscore,
                action_dist=action_dist,
                estimated_rewards_by_reg_model=estimated_rewards_by_reg_model,
                position=position,
            ).mean()
        )

    def estimate_interval(
        self,
        *,
        reward: np.ndarray | None = None,
        action: np.ndarray,
        pscore: np.ndarray | None = None,
        action_dist: np.ndarray,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        position: np.ndarray | None = None,
        n_bootstrap_samples: int = 10000,
        alpha: float = 0.05,
        random_state: object = None,
        convention: str = "obp",
    ) -> BootstrapInterval:
        """Bootstrap confidence interval of the estimate.

        Parameters
        ----------
        reward, action, pscore, action_dist, estimated_rewards_by_reg_model, position
            As in :meth:`estimate_round_rewards`.
        n_bootstrap_samples : int, default 10000
            Number of bootstrap replicates.
        alpha : float, default 0.05
            Significance level; the interval has nominal coverage 1 − alpha.
        random_state : None, int, RandomState or Generator
            Seed of the resampling stream (see :mod:`simulator.ope.bootstrap`).
        convention : {"obp", "percentile"}, default "obp"
            ``"obp"`` resamples the full-sample per-round values with ``RandomState`` exactly as
            obp 0.5.7 does; ``"percentile"`` resamples rounds with ``default_rng`` and
            recomputes the estimator (re-normalising the self-normalised ones).

        Returns
        -------
        BootstrapInterval
            ``estimate``, ``mean`` (of the replicates), ``lower``, ``upper``; ``as_obp_dict()``
            gives obp's dictionary.

        Raises
        ------
        ValidationError
            As :meth:`estimate_round_rewards`, plus invalid bootstrap settings.
        """
        parts = self._parts(
            self._validate(
                reward=reward,
                action=action,
                pscore=pscore,
                action_dist=action_dist,
                position=position,
                estimated_rewards_by_reg_model=estimated_rewards_by_reg_model,
            )
        )
        return interval_from_parts(
            *parts,
            n_bootstrap_samples=n_bootstrap_samples,
            alpha=alpha,
            random_state=random_state,
            convention=convention,
        )


# ---------------------------------------------------------------------------------------------
# estimators


@dataclass(frozen=True)
class InverseProbabilityWeighting(BaseOffPolicyEstimator):
    """Inverse probability weighting (IPW / IPS), optionally with weight truncation.

    Parameters
    ----------
    lambda_ : float, default np.inf
        Clipping threshold λ >= 0 of the importance weight: weights are **truncated** to
        min(w, λ) (rounds are not dropped). ``np.inf`` disables clipping.

    Raises
    ------
    ValidationError
        If ``lambda_`` is NaN or negative.

    Notes
    -----
    V̂ = (1/n) Σ_i r_i min(w_i, λ),  w_i = pi_e(a_i | x_i, pos_i) / p_i.

    Unbiased for λ = ∞ when pi_b covers the support of pi_e; clipping trades bias (downward for
    non-negative rewards) for variance.

    References
    ----------
    Horvitz, D. G. & Thompson, D. J. (1952). A generalization of sampling without replacement
    from a finite universe. JASA 47(260).
    Precup, D., Sutton, R. S. & Singh, S. (2000). Eligibility traces for off-policy policy
    evaluation. ICML.
    Strehl, A., Langford, J., Li, L. & Kakade, S. (2010). Learning from logged implicit
    exploration data. NeurIPS (truncated weights).
    """

    lambda_: float = np.inf
    name: ClassVar[str] = "ipw"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambda_", check_lambda(type(self).__name__, self.lambda_))

    def _parts(self, d: BanditArrays) -> Parts:
        w = np.minimum(_weights(d), self.lambda_)
        return d.reward * w, None, None  # type: ignore[operator]


@dataclass(frozen=True)
class SelfNormalizedInverseProbabilityWeighting(BaseOffPolicyEstimator):
    """Self-normalised IPW (SNIPW / SNIPS, the Hájek estimator).

    No hyperparameters: obp's SNIPW inherits ``lambda_`` from IPW but ignores it, so recloop
    does not offer one.

    Notes
    -----
    V̂ = Σ_i r_i w_i / Σ_j w_j; per round, r_i w_i / mean_j(w_j) (full-sample mean).

    Biased but consistent; invariant to rescaling all weights.

    References
    ----------
    Swaminathan, A. & Joachims, T. (2015). The self-normalized estimator for counterfactual
    learning. NeurIPS.
    """

    name: ClassVar[str] = "snipw"

    def _parts(self, d: BanditArrays) -> Parts:
        w = _weights(d)
        _check_weight_mass(type(self).__name__, w)
        return None, d.reward * w, w  # type: ignore[operator]


@dataclass(frozen=True)
class DirectMethod(BaseOffPolicyEstimator):
    """Direct method (DM): the reward model averaged over the target policy.

    Notes
    -----
    V̂ = (1/n) Σ_i Σ_a pi_e(a | x_i, pos_i) q̂(x_i, a, pos_i).

    Needs ``estimated_rewards_by_reg_model``; ``reward`` and ``pscore`` are not used. Biased
    whenever q̂ is.

    References
    ----------
    Beygelzimer, A. & Langford, J. (2009). The offset tree for learning with partial labels. KDD.
    Dudík, M., Langford, J. & Li, L. (2011). Doubly robust policy evaluation and learning. ICML.
    """

    name: ClassVar[str] = "dm"
    needs_reward: ClassVar[bool] = False
    needs_pscore: ClassVar[bool] = False
    needs_reg_model: ClassVar[bool] = True

    def _parts(self, d: BanditArrays) -> Parts:
        return _dm_term(d), None, None


@dataclass(frozen=True)
class DoublyRobust(BaseOffPolicyEstimator):
    """Doubly robust (DR), optionally with clipped weights.

    Parameters
    ----------
    lambda_ : float, default np.inf
        Clipping threshold of the weight in the correction term, min(w, λ) (obp calls finite λ
        "DR with pessimistic shrinkage"). ``np.inf`` is plain DR.

    Raises
    ------
    ValidationError
        If ``lambda_`` is NaN or negative.

    Notes
    -----
    V̂ = (1/n) Σ_i [ DM_i + min(w_i, λ) (r_i − q̂_i) ],
    DM_i = Σ_a pi_e(a | x_i, pos_i) q̂(x_i, a, pos_i) (over the full action distribution).

    Unbiased (λ = ∞) if either the propensities or the reward model are correct.

    References
    ----------
    Dudík, M., Langford, J. & Li, L. (2011). Doubly robust policy evaluation and learning. ICML.
    Su, Y., Dimakopoulou, M., Krishnamurthy, A. & Dudík, M. (2020). Doubly robust off-policy
    evaluation with shrinkage. ICML.
    """

    lambda_: float = np.inf
    name: ClassVar[str] = "dr"
    needs_reg_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambda_", check_lambda(type(self).__name__, self.lambda_))

    def _parts(self, d: BanditArrays) -> Parts:
        w = np.minimum(_weights(d), self.lambda_)
        q_logged = _logged(d.q_hat, d.action, d.position)  # type: ignore[arg-type]
        base = _dm_term(d)
        base += w * (d.reward - q_logged)  # type: ignore[operator]
        return base, None, None


@dataclass(frozen=True)
class SelfNormalizedDoublyRobust(BaseOffPolicyEstimator):
    """Self-normalised doubly robust (SNDR).

    No hyperparameters (obp's SNDR inherits ``lambda_`` and ignores it).

    Notes
    -----
    V̂ = (1/n) Σ_i DM_i + Σ_i w_i (r_i − q̂_i) / Σ_j w_j;
    per round DM_i + w_i (r_i − q̂_i) / mean_j(w_j) (full-sample mean).

    References
    ----------
    Kallus, N. & Uehara, M. (2019). Intrinsically efficient, stable, and bounded off-policy
    evaluation for reinforcement learning. NeurIPS.
    Su, Y., Dimakopoulou, M., Krishnamurthy, A. & Dudík, M. (2020). Doubly robust off-policy
    evaluation with shrinkage. ICML.
    """

    name: ClassVar[str] = "sndr"
    needs_reg_model: ClassVar[bool] = True

    def _parts(self, d: BanditArrays) -> Parts:
        w = _weights(d)
        _check_weight_mass(type(self).__name__, w)
        q_logged = _logged(d.q_hat, d.action, d.position)  # type: ignore[arg-type]
        return _dm_term(d), w * (d.reward - q_logged), w  # type: ignore[operator]


@dataclass(frozen=True)
class SwitchDoublyRobust(BaseOffPolicyEstimator):
    """Switch doubly robust (Switch-DR): DR where the weight is small, DM where it is large.

    Parameters
    ----------
    lambda_ : float, default np.inf
        Switching threshold τ >= 0; ``np.inf`` is plain DR, 0 is DM (for positive weights).

    Raises
    ------
    ValidationError
        If ``lambda_`` is NaN or negative.

    Notes
    -----
    V̂ = (1/n) Σ_i [ DM_i + 1[w_i <= τ] w_i (r_i − q̂_i) ].

    The indicator is inclusive (``<=``, as obp); rounds with w_i > τ keep their DM term and stay
    in the mean.

    References
    ----------
    Wang, Y.-X., Agarwal, A. & Dudík, M. (2017). Optimal and adaptive off-policy evaluation in
    contextual bandits. ICML.
    """

    lambda_: float = np.inf
    name: ClassVar[str] = "switch-dr"
    needs_reg_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambda_", check_lambda(type(self).__name__, self.lambda_))

    def _parts(self, d: BanditArrays) -> Parts:
        w = _weights(d)
        q_logged = _logged(d.q_hat, d.action, d.position)  # type: ignore[arg-type]
        base = _dm_term(d)
        base += (w <= self.lambda_) * w * (d.reward - q_logged)  # type: ignore[operator]
        return base, None, None


@dataclass(frozen=True)
class DoublyRobustWithShrinkage(BaseOffPolicyEstimator):
    """DR with optimistic shrinkage (DR-OS).

    Parameters
    ----------
    lambda_ : float, default np.inf
        Shrinkage λ >= 0; ``np.inf`` is plain DR, 0 is DM.

    Raises
    ------
    ValidationError
        If ``lambda_`` is NaN or negative.

    Notes
    -----
    V̂ = (1/n) Σ_i [ DM_i + ŵ_i (r_i − q̂_i) ],  ŵ_i = λ w_i / (w_i² + λ).

    At λ = 0 recloop sets ŵ = 0 (DM) for every round; obp evaluates 0/0 = NaN for rounds with
    w_i = 0 there.

    References
    ----------
    Su, Y., Dimakopoulou, M., Krishnamurthy, A. & Dudík, M. (2020). Doubly robust off-policy
    evaluation with shrinkage. ICML.
    """

    lambda_: float = np.inf
    name: ClassVar[str] = "dr-os"
    needs_reg_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambda_", check_lambda(type(self).__name__, self.lambda_))

    def _parts(self, d: BanditArrays) -> Parts:
        w = _weights(d)
        if self.lambda_ == np.inf:
            shrunk = w
        elif self.lambda_ == 0.0:
            shrunk = np.zeros_like(w)
        else:
            shrunk = (self.lambda_ * w) / (w**2 + self.lambda_)
        q_logged = _logged(d.q_hat, d.action, d.position)  # type: ignore[arg-type]
        base = _dm_term(d)
        base += shrunk * (d.reward - q_logged)  # type: ignore[operator]
        return base, None, None


def _sub_gaussian_weights(w: np.ndarray, lam: float) -> np.ndarray:
    """w̃ = w / (1 − λ + λ w), with w̃ = 0 where w = 0 (also at λ = 1, where obp gives 0/0)."""
    denom = (1.0 - lam) + lam * w
    out = np.zeros_like(w)
    np.divide(w, denom, out=out, where=w > 0.0)
    return out


@dataclass(frozen=True)
class SubGaussianInverseProbabilityWeighting(BaseOffPolicyEstimator):
    """Sub-Gaussian IPW (SG-IPW): IPW with harmonically shrunk weights.

    Parameters
    ----------
    lambda_ : float, default 0.0
        Shrinkage λ in [0, 1]; 0 is IPW.

    Raises
    ------
    ValidationError
        If ``lambda_`` is outside [0, 1].

    Notes
    -----
    V̂ = (1/n) Σ_i r_i w̃_i,  w̃_i = w_i / (1 − λ + λ w_i).

    References
    ----------
    Metelli, A. M., Russo, A. & Restelli, M. (2021). Subgaussian and differentiable importance
    sampling for off-policy evaluation and learning. NeurIPS.
    """

    lambda_: float = 0.0
    name: ClassVar[str] = "sg-ipw"

    def __post_init__(self) -> None:
        lam = check_lambda(type(self).__name__, self.lambda_, upper=1.0)
        object.__setattr__(self, "lambda_", lam)

    def _parts(self, d: BanditArrays) -> Parts:
        return d.reward * _sub_gaussian_weights(_weights(d), self.lambda_), None, None  # type: ignore[operator]


@dataclass(frozen=True)
class SubGaussianDoublyRobust(BaseOffPolicyEstimator):
    """Sub-Gaussian DR (SG-DR): DR with the SG-IPW weights.

    Parameters
    ----------
    lambda_ : float, default 0.0
        Shrinkage λ in [0, 1]; 0 is DR.

    Raises
    ------
    ValidationError
        If ``lambda_`` is outside [0, 1].

    Notes
    -----
    V̂ = (1/n) Σ_i [ DM_i + w̃_i (r_i − q̂_i) ],  w̃_i = w_i / (1 − λ + λ w_i).

    References
    ----------
    Metelli, A. M., Russo, A. & Restelli, M. (2021). Subgaussian and differentiable importance
    sampling for off-policy evaluation and learning. NeurIPS.
    """

    lambda_: float = 0.0
    name: ClassVar[str] = "sg-dr"
    needs_reg_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        lam = check_lambda(type(self).__name__, self.lambda_, upper=1.0)
        object.__setattr__(self, "lambda_", lam)

    def _parts(self, d: BanditArrays) -> Parts:
        w = _sub_gaussian_weights(_weights(d), self.lambda_)
        q_logged = _logged(d.q_hat, d.action, d.position)  # type: ignore[arg-type]
        base = _dm_term(d)
        base += w * (d.reward - q_logged)  # type: ignore[operator]
        return base, None, None
