"""Off-policy estimators for ranked lists (slates).

A logged slate i shows items ``slate_action[i, k]`` at positions k = 0..L−1 (L = ``len_list``)
and observes per-position rewards ``reward[i, k]`` (clicks). The value of a policy is the
expected **slate reward** R = Σ_k r_k (expected clicks per slate); divide by L for a
per-impression click rate.

Arrays (shared by both estimators):

``slate_action`` : ndarray of shape (n_slates, len_list), int
    Logged items, in [0, n_actions).
``reward`` : ndarray of shape (n_slates, len_list), float
    Per-position rewards. :class:`PseudoInverse` also accepts the slate reward, shape (n_slates,).
``pscore`` : ndarray of shape (n_slates, len_list), float
    Per-position logging propensity μ(slate_action[i, k] at position k | x_i) in (0, 1], the
    marginal probability of the (item, position) pair (recloop's ``pscore`` log column).
``action_dist`` : ndarray of shape (n_slates, n_actions, len_list), float
    Target policy marginals π(a at position k | x_i); each position sums to 1 over items.

Only per-position marginals are needed, which is what recloop's impression log stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from simulator.errors import ValidationError
from simulator.ope._validation import (
    check_action_dist,
    check_lambda,
    check_positive_probability,
)
from simulator.ope.bootstrap import BootstrapInterval, interval_from_parts

__all__ = ["ItemPositionIPS", "PseudoInverse", "SlateEstimator"]

Parts = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]


@runtime_checkable
class SlateEstimator(Protocol):
    """What every slate estimator offers; see the module docstring for the arrays."""

    name: ClassVar[str]

    def estimate_round_rewards(
        self,
        *,
        slate_action: np.ndarray,
        reward: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
    ) -> np.ndarray: ...

    def estimate_policy_value(
        self,
        *,
        slate_action: np.ndarray,
        reward: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
    ) -> float: ...

    def estimate_interval(
        self,
        *,
        slate_action: np.ndarray,
        reward: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
        n_bootstrap_samples: int = 10000,
        alpha: float = 0.05,
        random_state: object = None,
        convention: str = "obp",
    ) -> BootstrapInterval: ...


class SlateArrays(NamedTuple):
    """Validated slate inputs."""

    slate_action: np.ndarray  # (n, L) intp
    reward: np.ndarray  # (n, L) or (n,) float64
    pscore: np.ndarray  # (n, L) float64
    action_dist: np.ndarray  # (n, m, L)


def validate_slate_inputs(
    owner: str,
    *,
    slate_action: object,
    reward: object,
    pscore: object,
    action_dist: object,
    allow_slate_reward: bool,
) -> SlateArrays:
    """Check shapes, ranges and finiteness of slate inputs; raise ValidationError naming them."""
    for name, value in (
        ("slate_action", slate_action),
        ("reward", reward),
        ("pscore", pscore),
        ("action_dist", action_dist),
    ):
        if value is None:
            raise ValidationError(f"{owner} requires {name}; got None")
    ad = check_action_dist(action_dist)
    n, n_actions, length = ad.shape
    sa = np.asarray(slate_action)
    if sa.shape != (n, length):
        raise ValidationError(
            "slate_action must have shape (n_slates, len_list) = "
            f"{(n, length)} (from action_dist); got shape {sa.shape}"
        )
    if sa.dtype.kind not in "iu":
        raise ValidationError(f"slate_action must be an integer array; got dtype {sa.dtype}")
    bad = (sa < 0) | (sa >= n_actions)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise ValidationError(
            f"slate_action must be in [0, n_actions) = [0, {n_actions}); got {int(sa[i, k])} at "
            f"round {i}, position {k}"
        )
    ps = np.asarray(pscore)
    if ps.shape != (n, length):
        raise ValidationError(
            f"pscore must have shape (n_slates, len_list) = {(n, length)}; got shape {ps.shape}"
        )
    if ps.dtype.kind not in "iuf":
        raise ValidationError(f"pscore must be a float array; got dtype {ps.dtype}")
    ps = ps.astype(np.float64, copy=False)
    check_positive_probability("pscore", ps)
    rw = np.asarray(reward)
    shapes = [(n, length), (n,)] if allow_slate_reward else [(n, length)]
    if rw.shape not in shapes:
        want = " or ".join(str(s) for s in shapes)
        raise ValidationError(f"reward must have shape {want}; got shape {rw.shape}")
    if rw.dtype.kind not in "biuf":
        raise ValidationError(f"reward must be numeric; got dtype {rw.dtype}")
    rw = rw.astype(np.float64, copy=False)
    finite = np.isfinite(rw)
    if not finite.all():
        where = np.argwhere(~finite)[0]
        raise ValidationError(f"reward must be finite; got {rw[tuple(where)]} at round {where[0]}")
    return SlateArrays(sa.astype(np.intp, copy=False), rw, ps, ad)


def _position_weights(d: SlateArrays) -> np.ndarray:
    """w_ik = π(a_ik at k | x_i) / μ(a_ik at k | x_i), shape (n_slates, len_list)."""
    n, length = d.slate_action.shape
    rows = np.arange(n)[:, None]
    cols = np.arange(length)[None, :]
    pi = d.action_dist[rows, d.slate_action, cols].astype(np.float64, copy=False)
    return pi / d.pscore


@dataclass(frozen=True)
class _SlateBase:
    name: ClassVar[str] = "slate-base"
    allow_slate_reward: ClassVar[bool] = False

    def _parts(self, d: SlateArrays) -> Parts:  # pragma: no cover - abstract
        raise NotImplementedError

    def _validated_parts(self, **arrays: object) -> Parts:
        d = validate_slate_inputs(type(self).__name__, allow_slate_reward=self.allow_slate_reward, **arrays)  # type: ignore[arg-type]
        return self._parts(d)

    def estimate_round_rewards(
        self,
        *,
        slate_action: np.ndarray,
        reward: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
    ) -> np.ndarray:
        """Per-slate values whose mean is the estimate.

        Parameters
        ----------
        slate_action : ndarray of shape (n_slates, len_list), int
        reward : ndarray of shape (n_slates, len_list), float
        pscore : ndarray of shape (n_slates, len_list), float
        action_dist : ndarray of shape (n_slates, n_actions, len_list), float
            See the module docstring.

        Returns
        -------
        ndarray of shape (n_slates,), float64

        Raises
        ------
        ValidationError
            If shapes disagree, items are out of range, ``pscore`` is not in (0, 1] (zero,
            negative, NaN), ``reward`` is not finite, ``action_dist`` is not a distribution over
            items at each position, or (self-normalised) the weights sum to <= 0.
        """
        base, num, den = self._validated_parts(
            slate_action=slate_action, reward=reward, pscore=pscore, action_dist=action_dist
        )
        if num is None or den is None:
            return base  # type: ignore[return-value]
        values = num / den.mean()
        return values if base is None else base + values

    def estimate_policy_value(
        self,
        *,
        slate_action: np.ndarray,
        reward: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
    ) -> float:
        """The estimate: mean of :meth:`estimate_round_rewards` (same parameters and errors)."""
        return float(
            self.estimate_round_rewards(
                slate_action=slate_action, reward=reward, pscore=pscore, action_dist=action_dist
            ).mean()
        )

    def estimate_interval(
        self,
        *,
        slate_action: np.ndarray,
        reward: np.ndarray,
        pscore: np.ndarray,
        action_dist: np.ndarray,
        n_bootstrap_samples: int = 10000,
        alpha: float = 0.05,
        random_state: object = None,
        convention: str = "obp",
    ) -> BootstrapInterval:
        """Bootstrap interval over slates (see :mod:`simulator.ope.bootstrap` for conventions)."""
        parts = self._validated_parts(
            slate_action=slate_action, reward=reward, pscore=pscore, action_dist=action_dist
        )
        return interval_from_parts(
            *parts,
            n_bootstrap_samples=n_bootstrap_samples,
            alpha=alpha,
            random_state=random_state,
            convention=convention,
        )


@dataclass(frozen=True)
class ItemPositionIPS(_SlateBase):
    """Independent-item (item-position) IPS with per-position propensities.

    Parameters
    ----------
    lambda_ : float, default np.inf
        Truncation of each per-position weight, min(w_ik, λ); ``np.inf`` disables it.

    Raises
    ------
    ValidationError
        If ``lambda_`` is NaN or negative.

    Notes
    -----
    V̂ = (1/n) Σ_i Σ_k r_ik min(w_ik, λ),  w_ik = π(a_ik at k | x_i) / μ(a_ik at k | x_i).

    Unbiased (λ = ∞) when the expected reward at a position depends only on the context, the
    item and the position, E[r_k | x, s] = φ_x(s_k, k) (the item-position model, which contains
    the position-based click model P(click) = P(examine k) · rel(x, a)), and μ(a at k | x) > 0
    wherever π(a at k | x) > 0. It is biased under cascade-like interactions between positions.
    Weights are per position, so the variance grows with L, not with the number of slates.

    References
    ----------
    Li, S., Abbasi-Yadkori, Y., Kveton, B., Muthukrishnan, S., Vinay, V. & Wen, Z. (2018).
    Offline evaluation of ranking policies with click models. KDD.
    McInerney, J. et al. (2020). Counterfactual evaluation of slate recommendations with
    sequential reward interactions. KDD (the "independent IPS" baseline).
    """

    lambda_: float = np.inf
    name: ClassVar[str] = "iips"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambda_", check_lambda(type(self).__name__, self.lambda_))

    def _parts(self, d: SlateArrays) -> Parts:
        w = np.minimum(_position_weights(d), self.lambda_)
        return (d.reward * w).sum(axis=1), None, None


@dataclass(frozen=True)
class PseudoInverse(_SlateBase):
    """Pseudo-inverse (PI) estimator for additive slate rewards, independent logging.

    Parameters
    ----------
    self_normalized : bool, default False
        If True, the weighted PI (wPI): Σ_i R_i w_i / Σ_i w_i.

    Raises
    ------
    ValidationError
        If ``self_normalized`` is not a bool.

    Notes
    -----
    With slate reward R_i = Σ_k r_ik (or given directly as shape (n_slates,)),

        V̂_PI = (1/n) Σ_i R_i w_i,   w_i = Σ_k π(a_ik at k | x_i) / μ(a_ik at k | x_i) − (L − 1).

    This is the general PI estimator V̂ = (1/n) Σ_i R_i q_π(x_i)^T Γ_μ(x_i)^† 1_{s_i} in the
    closed form it takes when the logging policy fills the positions **independently**,
    μ(s | x) = Π_k μ_k(s_k | x) (Swaminathan et al. 2017, §3, "the PI estimator for a product
    logging policy"). It is unbiased whenever the expected slate reward is additive over
    positions, E[R | x, s] = Σ_k φ_x(s_k, k) with unknown φ (every position-based click model is),
    for any target policy (also rankings without repeats), given μ_k(a | x) > 0 where
    π(a at k | x) > 0. Only the slate reward is needed, not the per-position rewards. Weights can
    be negative. With a logging policy that samples rankings *without replacement* Γ_μ is not of
    product form and this closed form is biased; recloop does not implement the general Γ^† form.

    References
    ----------
    Swaminathan, A., Krishnamurthy, A., Agarwal, A., Dudík, M., Langford, J., Jose, D. &
    Zitouni, I. (2017). Off-policy evaluation for slate recommendation. NeurIPS.
    """

    self_normalized: bool = False
    name: ClassVar[str] = "pi"
    allow_slate_reward: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.self_normalized, bool | np.bool_):
            raise ValidationError(
                f"PseudoInverse.self_normalized must be a bool; got {self.self_normalized!r}"
            )

    def _parts(self, d: SlateArrays) -> Parts:
        length = d.slate_action.shape[1]
        w = _position_weights(d).sum(axis=1) - (length - 1)
        slate_reward = d.reward.sum(axis=1) if d.reward.ndim == 2 else d.reward
        if not self.self_normalized:
            return slate_reward * w, None, None
        total = w.sum()
        if not total > 0.0:
            raise ValidationError(
                "PseudoInverse(self_normalized=True): the pseudo-inverse weights sum to "
                f"{total} <= 0, so the self-normalized estimate is undefined"
            )
        return None, slate_reward * w, w
