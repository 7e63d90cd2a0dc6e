"""Off-policy evaluation inside the simulator: exact target propensities and slate estimators.

The simulator knows every policy, so a target policy's probability of the logged
(item, position) pairs can be computed exactly instead of being estimated. Two pieces:

* :func:`position_marginals` — a policy's **exact** per-position marginals
  ``π(a at k | u)`` for a batch of sessions, in a compact form (:class:`PositionMarginals`):
  an explicit block of "head" items per session plus one common probability for every other
  item. Supported: deterministic policies (every slate propensity is 1: ``greedy``, ``ipw``,
  ``oracle``, ``popularity``, ``mmr``, ``calibrated``), ``random`` (uniform) and
  ``epsilon_greedy`` (the analytic table of
  :func:`~simulator.policies.propensity.epsilon_greedy_table`). ``boltzmann`` is refused: its
  propensities at positions >= 1 are Monte-Carlo estimates, not exact. The helper reads the
  policy's current (frozen) state through its public methods only (``recommend``,
  ``score_chunks``); the Policy protocol is unchanged.
* :func:`slate_estimate` — per-position (item-position) slate estimators on per-session arrays:
  IPS (:class:`~simulator.ope.slate.ItemPositionIPS`), its self-normalised version (SNIPS), the
  direct method (DM) and doubly robust (DR), with weight clipping and bootstrap intervals over
  sessions (:func:`~simulator.ope.bootstrap.interval_from_parts`).

The value of a policy is the expected number of clicks per session (slate),
``V(π) = E_u Σ_k Σ_a π(a at k | u) · E[r_k | u, a, k]``; under the position-based click model
``E[r_k | u, a, k] = P(E_k) · r(u, a)``, so per-position importance weighting is unbiased
(Li et al. 2018).

References
----------
Li, S., Abbasi-Yadkori, Y., Kveton, B., Muthukrishnan, S., Vinay, V. & Wen, Z. (2018). Offline
evaluation of ranking policies with click models. KDD.
Dudík, M., Langford, J. & Li, L. (2011). Doubly robust policy evaluation and learning. ICML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.errors import ValidationError
from simulator.ope._validation import check_lambda, check_positive_probability
from simulator.ope.bootstrap import BootstrapInterval, interval_from_parts
from simulator.ope.slate import ItemPositionIPS

__all__ = [
    "SLATE_ESTIMATORS",
    "PositionMarginals",
    "position_marginals",
    "slate_estimate",
    "slate_estimator_parts",
    "target_position_propensities",
    "weight_diagnostics",
]

#: Slate estimators of :func:`slate_estimate`, in display order.
SLATE_ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dm", "dr")
#: Estimators that take a clipping threshold λ (weights truncated to min(w, λ)).
CLIPPABLE: tuple[str, ...] = ("ips", "dr")


# --------------------------------------------------------------------------------------------
# exact target propensities
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PositionMarginals:
    """A policy's exact (item, position) marginals for ``n`` sessions, in compact form.

    ``π(a at k | u_s) = head_prob[s, h, k]`` if ``a == head_items[s, h]``, else
    ``rest_prob[s, k]`` (the same for every item outside the session's head).

    Attributes
    ----------
    head_items : ndarray of shape (n, H), int64
        Items with an explicit probability (distinct within a row); H may be 0.
    head_prob : ndarray of shape (n, H, K), float64
        Their probability at each position.
    rest_prob : ndarray of shape (n, K), float64
        Probability of each single item outside the head at each position.
    n_items : int
        Catalog size I; every position sums to 1 over the I items:
        ``head_prob[s, :, k].sum() + (I − H) · rest_prob[s, k] = 1``.
    """

    head_items: np.ndarray
    head_prob: np.ndarray
    rest_prob: np.ndarray
    n_items: int

    @property
    def n_sessions(self) -> int:
        return int(self.rest_prob.shape[0])

    @property
    def len_list(self) -> int:
        return int(self.rest_prob.shape[1])

    def prob(self, items: np.ndarray) -> np.ndarray:
        """π(items[s, m] at position k | u_s) for every listed item and every position.

        Parameters
        ----------
        items : ndarray of shape (n, M), int

        Returns
        -------
        ndarray of shape (n, M, K), float64
        """
        items = np.asarray(items)
        n, k = self.rest_prob.shape
        if items.ndim != 2 or items.shape[0] != n:
            raise ValidationError(f"items must have shape (n_sessions = {n}, M); got shape {items.shape}")
        out = np.broadcast_to(self.rest_prob[:, None, :], (n, items.shape[1], k)).copy()
        if self.head_items.shape[1]:
            match = items[:, :, None] == self.head_items[:, None, :]  # (n, M, H)
            s, m, h = np.nonzero(match)
            out[s, m] = self.head_prob[s, h]
        return out

    def at(self, items: np.ndarray) -> np.ndarray:
        """π(items[s, k] at position k | u_s): the propensity of each logged (item, position).

        Parameters
        ----------
        items : ndarray of shape (n, K), int

        Returns
        -------
        ndarray of shape (n, K), float64
        """
        p = self.prob(items)
        k = np.arange(p.shape[1])
        if p.shape[1] != self.len_list:
            raise ValidationError(
                f"items must have len_list = {self.len_list} columns; got shape {np.shape(items)}"
            )
        return p[:, k, k]

    def expected(self, value: np.ndarray) -> np.ndarray:
        """Σ_k Σ_a π(a at k | u_s) · value[a, k] per session (e.g. the DM term for q̂).

        Parameters
        ----------
        value : ndarray of shape (n_items, K), float
            A per-(item, position) table, the same for every session.

        Returns
        -------
        ndarray of shape (n,), float64
        """
        value = np.asarray(value, dtype=np.float64)
        k = self.len_list
        if value.shape != (self.n_items, k):
            raise ValidationError(
                f"value must have shape (n_items, len_list) = {(self.n_items, k)}; got {value.shape}"
            )
        total = value.sum(axis=0)  # Σ_a value[a, k]
        if self.head_items.shape[1] == 0:
            return (self.rest_prob * total).sum(axis=1)
        head_val = value[self.head_items]  # (n, H, K)
        head = np.einsum("shk,shk->s", self.head_prob, head_val)
        rest = (self.rest_prob * (total[None, :] - head_val.sum(axis=1))).sum(axis=1)
        return head + rest

    def column_sums(self) -> np.ndarray:
        """Σ_a π(a at k | u_s), shape (n, K): 1 up to rounding (a self-check)."""
        h = self.head_items.shape[1]
        return self.head_prob.sum(axis=1) + (self.n_items - h) * self.rest_prob


def _top_k_of_scores(policy: Any, users: np.ndarray, k: int) -> np.ndarray:
    """The base policy's top-``k`` items per user, exactly as the wrapper's ``recommend`` ranks them."""
    from simulator.selection import top_k_rows

    top = np.empty((users.size, k), dtype=np.int64)
    for rows, block in policy.score_chunks(users):
        top[rows], _ = top_k_rows(block, k)
    return top


def position_marginals(
    policy: Any, users: np.ndarray, k: int, rng: np.random.Generator | None = None
) -> PositionMarginals:
    """Exact per-position marginals π(a at k | u) of a policy's slates for ``users``.

    Parameters
    ----------
    policy : Policy
        A policy after ``reset`` and ``fit`` (its current state is used as is; it must not
        change between the sessions being evaluated).
    users : ndarray of shape (n,), int
        The sessions' users (repeats allowed).
    k : int
        Slate size K.
    rng : numpy.random.Generator, optional
        Passed to ``recommend`` when a deterministic policy is probed (never used by it).

    Returns
    -------
    PositionMarginals

    Raises
    ------
    ValidationError
        If the policy's propensities are not exactly known: ``boltzmann`` (Monte-Carlo
        propensities beyond position 0), or any other policy whose slates carry a propensity
        below 1 and which is neither ``random`` nor ``epsilon_greedy``.

    Notes
    -----
    * ``random``: ``π(a at k) = 1/I`` for every item (no head).
    * ``epsilon_greedy``: the head is the base policy's top-K (the greedy ranks), with
      ``π(rank r at k) = T[r, k]`` and every other item ``T[K, k]``, T from
      :func:`~simulator.policies.propensity.epsilon_greedy_table` (exact).
    * deterministic policies (every ``pscore`` of their slate is 1): the head is the slate
      itself, ``π(slate_k at j) = 1[j = k]``, every other item 0.
    """
    from simulator.policies.baselines import RandomPolicy
    from simulator.policies.propensity import epsilon_greedy_table
    from simulator.policies.wrappers import BoltzmannPolicy, EpsilonGreedyPolicy

    users = np.asarray(users)
    if users.ndim != 1:
        raise ValidationError(f"users must be a 1-D array; got shape {users.shape}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValidationError(f"k must be an int >= 1; got {k!r}")
    k = int(k)
    n = users.size
    world = getattr(policy, "world_", None)
    if world is None:
        raise ValidationError(
            f"{type(policy).__name__} has not been reset (no world bound); call reset first"
        )
    n_items = int(world.catalog.n_items)
    if k > n_items:
        raise ValidationError(f"k must be <= n_items = {n_items}; got {k}")

    if isinstance(policy, RandomPolicy):
        return PositionMarginals(
            np.empty((n, 0), dtype=np.int64),
            np.empty((n, 0, k), dtype=np.float64),
            np.full((n, k), 1.0 / n_items),
            n_items,
        )
    if isinstance(policy, EpsilonGreedyPolicy):
        table, _ = epsilon_greedy_table(n_items, k, float(policy.epsilon))
        head = _top_k_of_scores(policy.base_, users, k)
        return PositionMarginals(
            head,
            np.broadcast_to(table[:k], (n, k, k)),
            np.broadcast_to(table[k], (n, k)),
            n_items,
        )
    if isinstance(policy, BoltzmannPolicy):
        raise ValidationError(
            "boltzmann has no exact position propensities (positions >= 1 are Monte-Carlo "
            "estimates); use a deterministic policy, random or epsilon_greedy as the target"
        )
    slate = policy.recommend(users, k, rng if rng is not None else np.random.default_rng(0))
    if not np.all(slate.pscore == 1.0):
        raise ValidationError(
            f"{type(policy).__name__} is randomised (its slates carry propensities below 1) and "
            "its exact position marginals are unknown; supported targets: deterministic "
            "policies, random and epsilon_greedy"
        )
    return PositionMarginals(
        np.asarray(slate.items, dtype=np.int64),
        np.broadcast_to(np.eye(k), (n, k, k)),
        np.zeros((n, k)),
        n_items,
    )


def target_position_propensities(policy: Any, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """π(items[s, k] at position k | users[s]) under a policy's current state, exactly.

    Parameters
    ----------
    policy : Policy
        Deterministic, ``random`` or ``epsilon_greedy`` (see :func:`position_marginals`).
    users : ndarray of shape (n,), int
    items : ndarray of shape (n, K), int
        The logged slates.

    Returns
    -------
    ndarray of shape (n, K), float64
        In [0, 1]; 0 where the policy never shows that item at that position.

    Raises
    ------
    ValidationError
        As :func:`position_marginals`, or if ``items`` does not have one row per user.
    """
    items = np.asarray(items)
    if items.ndim != 2 or items.shape[0] != np.asarray(users).shape[0]:
        raise ValidationError(
            f"items must have shape (len(users), K) = ({np.asarray(users).shape[0]}, K); got {items.shape}"
        )
    return position_marginals(policy, users, items.shape[1]).at(items)


# --------------------------------------------------------------------------------------------
# slate estimators
# --------------------------------------------------------------------------------------------


def _as_float_2d(name: str, x: object, shape: tuple[int, int]) -> np.ndarray:
    """``x`` as finite float64 of the given (n_sessions, len_list) shape, else ValidationError."""
    arr = np.asarray(x)
    if arr.shape != shape:
        raise ValidationError(f"{name} must have shape {shape} (that of pscore); got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValidationError(f"{name} must be numeric; got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        i, k = np.argwhere(~finite)[0]
        raise ValidationError(f"{name} must be finite; got {arr[i, k]} at session {i}, position {k}")
    return arr


def slate_estimator_parts(
    estimator: str,
    *,
    reward: np.ndarray,
    pscore: np.ndarray,
    target_pscore: np.ndarray,
    dm_term: np.ndarray | None = None,
    q_logged: np.ndarray | None = None,
    lambda_: float = np.inf,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Per-session parts ``(base, numerator, denominator)`` of a slate estimate.

    The estimate is ``mean(base) + Σ numerator / Σ denominator`` (unused parts are None), the
    form :func:`~simulator.ope.bootstrap.interval_from_parts` resamples.

    Parameters
    ----------
    estimator : {"ips", "snips", "dm", "dr"}
    reward : ndarray of shape (n, K), float
        Logged per-position rewards (clicks).
    pscore : ndarray of shape (n, K), float
        Logging propensity μ(a_ik at k | u_i), in (0, 1] (read from the log).
    target_pscore : ndarray of shape (n, K), float
        Target propensity π(a_ik at k | u_i), in [0, 1] (:func:`target_position_propensities`).
    dm_term : ndarray of shape (n,), float, optional
        ``Σ_k Σ_a π(a at k | u_i) q̂(u_i, a, k)`` (:meth:`PositionMarginals.expected`);
        required by DM and DR.
    q_logged : ndarray of shape (n, K), float, optional
        ``q̂(u_i, a_ik, k)``; required by DR.
    lambda_ : float, default np.inf
        Clipping threshold of the per-position weights (IPS and DR only; inf = none).

    Returns
    -------
    tuple of (ndarray or None) × 3, each of shape (n,), float64

    Raises
    ------
    ValidationError
        Unknown estimator; clipping asked of SNIPS or DM; shapes disagree; ``pscore`` is zero,
        negative, above 1 or NaN; ``target_pscore`` outside [0, 1] or NaN; ``reward``,
        ``dm_term`` or ``q_logged`` not finite or missing where needed; or (SNIPS) the target
        gives zero probability to every logged (item, position), so the self-normalised
        estimate is undefined.

    Notes
    -----
    With w_ik = π_ik / μ_ik and w^λ = min(w, λ):

    * IPS  V̂ = (1/n) Σ_i Σ_k r_ik w^λ_ik (:class:`~simulator.ope.slate.ItemPositionIPS`);
    * SNIPS V̂ = Σ_i Σ_k r_ik w_ik / ((1/K) Σ_i Σ_k w_ik), i.e. IPS divided by the mean
      per-position weight (which is 1 in expectation) — obp's impression-level SNIPW times K;
    * DM   V̂ = (1/n) Σ_i Σ_k Σ_a π(a at k | u_i) q̂(u_i, a, k);
    * DR   V̂ = DM + (1/n) Σ_i Σ_k w^λ_ik (r_ik − q̂(u_i, a_ik, k)).
    """
    if estimator not in SLATE_ESTIMATORS:
        raise ValidationError(f"estimator must be one of {SLATE_ESTIMATORS}; got {estimator!r}")
    lam = check_lambda(estimator, lambda_)
    if lam != np.inf and estimator not in CLIPPABLE:
        raise ValidationError(
            f"{estimator} takes no clipping threshold; got lambda_={lam} (clip {CLIPPABLE})"
        )
    ps = np.asarray(pscore)
    if ps.ndim != 2:
        raise ValidationError(f"pscore must be a 2-D array (n_sessions, len_list); got shape {ps.shape}")
    shape = ps.shape
    if ps.dtype.kind not in "iuf":
        raise ValidationError(f"pscore must be a float array; got dtype {ps.dtype}")
    ps = ps.astype(np.float64, copy=False)
    check_positive_probability("pscore", ps)
    rw = _as_float_2d("reward", reward, shape)
    pi = _as_float_2d("target_pscore", target_pscore, shape)
    bad = (pi < 0.0) | (pi > 1.0 + 1e-9)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise ValidationError(
            f"target_pscore must be a probability in [0, 1]; got {pi[i, k]} at session {i}, position {k}"
        )
    n, length = shape
    if n == 0:
        raise ValidationError("the log holds no sessions; got n_sessions = 0")
    w = pi / ps

    if estimator == "ips":
        # ItemPositionIPS reads π only at the logged (item, position) pairs; a two-action
        # encoding per position (0 = the logged item, 1 = any other) carries exactly that.
        two = np.stack([pi, 1.0 - np.minimum(pi, 1.0)], axis=1)  # (n, 2, K), sums to 1
        base = ItemPositionIPS(lambda_=lam).estimate_round_rewards(
            slate_action=np.zeros(shape, dtype=np.intp), reward=rw, pscore=ps, action_dist=two
        )
        return base, None, None
    if estimator == "snips":
        total = w.sum()
        if not total > 0.0:
            raise ValidationError(
                "snips: the target policy gives zero probability to every logged (item, position) "
                f"(sum of importance weights is {total}), so the self-normalised estimate is undefined"
            )
        return None, (rw * w).sum(axis=1), w.sum(axis=1) / length

    if dm_term is None:
        raise ValidationError(f"{estimator} requires dm_term (the reward model under the target); got None")
    dm = np.asarray(dm_term)
    if dm.shape != (n,) or dm.dtype.kind not in "biuf":
        raise ValidationError(f"dm_term must be a numeric array of shape ({n},); got shape {dm.shape}")
    dm = dm.astype(np.float64)
    if not np.isfinite(dm).all():
        i = int(np.argmax(~np.isfinite(dm)))
        raise ValidationError(f"dm_term must be finite; got {dm[i]} at session {i}")
    if estimator == "dm":
        return dm, None, None
    if q_logged is None:
        raise ValidationError("dr requires q_logged (the reward model at the logged pairs); got None")
    q = _as_float_2d("q_logged", q_logged, shape)
    return dm + (np.minimum(w, lam) * (rw - q)).sum(axis=1), None, None


def slate_estimate(
    estimator: str,
    *,
    reward: np.ndarray,
    pscore: np.ndarray,
    target_pscore: np.ndarray,
    dm_term: np.ndarray | None = None,
    q_logged: np.ndarray | None = None,
    lambda_: float = np.inf,
    n_bootstrap_samples: int = 1000,
    alpha: float = 0.05,
    random_state: object = None,
) -> BootstrapInterval:
    """A slate estimate (expected clicks per session) with a bootstrap interval over sessions.

    Parameters
    ----------
    estimator, reward, pscore, target_pscore, dm_term, q_logged, lambda_
        As in :func:`slate_estimator_parts`.
    n_bootstrap_samples : int, default 1000
    alpha : float, default 0.05
        The interval has nominal coverage 1 − alpha.
    random_state : None, int, SeedSequence or Generator
        Seed of the resampling (``convention="percentile"``: sessions are resampled with
        replacement and the estimate recomputed, SNIPS re-normalised in every resample).

    Returns
    -------
    BootstrapInterval
        ``estimate`` is the point estimate on the full log.

    Raises
    ------
    ValidationError
        As :func:`slate_estimator_parts`, or invalid bootstrap settings.
    """
    parts = slate_estimator_parts(
        estimator,
        reward=reward,
        pscore=pscore,
        target_pscore=target_pscore,
        dm_term=dm_term,
        q_logged=q_logged,
        lambda_=lambda_,
    )
    return interval_from_parts(
        *parts,
        n_bootstrap_samples=n_bootstrap_samples,
        alpha=alpha,
        random_state=random_state,
        convention="percentile",
    )


def weight_diagnostics(pscore: np.ndarray, target_pscore: np.ndarray) -> dict[str, float]:
    """How far the target is from the logger, from the per-position importance weights.

    Parameters
    ----------
    pscore, target_pscore : ndarray of shape (n, K), float
        Logging and target propensities of the logged (item, position) pairs.

    Returns
    -------
    dict
        ``ess_share`` — mean over positions of the effective sample size
        ``(Σ_i w_ik)² / Σ_i w_ik²`` divided by n (1 = the target is the logger; 0 = no overlap);
        ``mean_weight`` — mean of w (1 in expectation under full support);
        ``max_weight``; ``support_share`` — share of logged pairs with π > 0.

    References
    ----------
    Kong, A. (1992). A note on importance sampling using standardized weights. Tech. report 348,
    University of Chicago (the effective sample size).
    """
    w = np.asarray(target_pscore, dtype=np.float64) / np.asarray(pscore, dtype=np.float64)
    n = w.shape[0]
    s1, s2 = w.sum(axis=0), (w**2).sum(axis=0)
    ess = np.divide(s1**2, s2, out=np.zeros_like(s1), where=s2 > 0)
    return {
        "ess_share": float(ess.mean() / n) if n else 0.0,
        "mean_weight": float(w.mean()) if w.size else 0.0,
        "max_weight": float(w.max()) if w.size else 0.0,
        "support_share": float((w > 0).mean()) if w.size else 0.0,
    }
