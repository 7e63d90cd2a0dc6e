"""Drift rules: how what a user is shown and consumes moves the user's preference vector.

One protocol, one registry (STYLE.md point 3). A rule updates rows of a preference matrix in
place, vectorised over the users of a round (no per-user Python loop):

``prefs`` : ndarray of shape (n_users, d), float
    Every user's current preference vector (latent interests ``μ_u`` / ``θ_u``).
``users`` : ndarray of shape (n,), int
    The users of the round (distinct).
``item_vectors`` : ndarray of shape (n, L, d), float
    The latent vectors of the items each of them was shown, in list order.
``shown`` : ndarray of shape (n, L), bool
    False for padding slots.
``consumed`` : ndarray of shape (n, L), bool
    The slots the user took (a subset of ``shown``).

Registered rules
----------------
``none``
    Preferences never move.
``exposure_drift``
    Signed reinforcement (Jiang et al. 2019): ``μ_u += η/|S_u| · Σ_{k∈S_u} s_k v_k`` with
    ``s_k = +1`` for a consumed item and ``−negative_weight`` for a shown, unconsumed one.
    Interest in what the user liked grows and in what they rejected falls, without bound: the
    *degenerate* dynamics of the paper.
``attraction``
    Bounded pull toward what was consumed (or shown): ``μ_u += η (mean_k v_k − μ_u)``, for users
    with at least one such item. A contraction: ``μ_u`` stays in the convex hull of the items.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from simulator.errors import ValidationError

__all__ = ["DRIFT_RULES", "Attraction", "DriftRule", "ExposureDrift", "NoDrift", "make_drift_rule"]


@runtime_checkable
class DriftRule(Protocol):
    """Moves users' preference vectors after a round (in place)."""

    name: ClassVar[str]

    def apply(
        self,
        prefs: np.ndarray,
        users: np.ndarray,
        item_vectors: np.ndarray,
        shown: np.ndarray,
        consumed: np.ndarray,
    ) -> None:
        """Update ``prefs[users]`` in place from the round's exposure and consumption."""
        ...


def _check(prefs, users, item_vectors, shown, consumed) -> None:
    n, length = shown.shape
    d = prefs.shape[1]
    if item_vectors.shape != (n, length, d):
        raise ValidationError(f"item_vectors must have shape {(n, length, d)}; got {item_vectors.shape}")
    if users.shape != (n,) or consumed.shape != (n, length):
        raise ValidationError(
            f"users must have shape ({n},) and consumed {(n, length)}; got {users.shape}, {consumed.shape}"
        )
    if consumed.dtype != np.bool_ or shown.dtype != np.bool_:
        raise ValidationError("shown and consumed must be bool arrays")


def _eta(value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValidationError(f"eta must be a finite float >= 0; got {value}")


@dataclass(frozen=True)
class NoDrift:
    """Preferences never change."""

    name: ClassVar[str] = "none"

    def apply(self, prefs, users, item_vectors, shown, consumed) -> None:
        return None


@dataclass(frozen=True)
class ExposureDrift:
    """Signed reinforcement of interests by exposure: ``μ_u += η/|S_u| · Σ s_k v_k``.

    Parameters
    ----------
    eta : float >= 0
        Step size ``η`` (per round, per unit of item vector).
    negative_weight : float >= 0
        ``w``: a shown item the user did not consume contributes ``−w · v_k`` (0 = only consumed
        items move the user).

    Notes
    -----
    .. math:: \\mu_{u,t+1} = \\mu_{u,t} + \\frac{\\eta}{|S_u|} \\sum_{k \\in S_u}
              \\bigl(c_k - w\\,(1 - c_k)\\bigr)\\, v_{i_k}

    with ``S_u`` the shown slots and ``c_k`` the consumption indicator. With a click probability
    ``σ(μ·v)``, a shown item's expected push is ``((1+w)σ(μ·v) − w) v``: along ``v`` for liked
    items and against it for disliked ones, so the interest in *both* grows in magnitude — a
    positive-feedback (echo-chamber) dynamics whose speed depends on what the system shows.

    References
    ----------
    Jiang, Chiappa, Lattimore, György & Kohli (2019), "Degenerate feedback loops in recommender
    systems", AIES, Sec. 3 (user interest dynamics; degeneracy ``‖μ_t − μ_0‖ → ∞``).
    """

    eta: float = 0.05
    negative_weight: float = 1.0
    name: ClassVar[str] = "exposure_drift"

    def __post_init__(self) -> None:
        _eta(self.eta)
        if not (math.isfinite(self.negative_weight) and self.negative_weight >= 0):
            raise ValidationError(f"negative_weight must be a finite float >= 0; got {self.negative_weight}")

    def apply(self, prefs, users, item_vectors, shown, consumed) -> None:
        _check(prefs, users, item_vectors, shown, consumed)
        sign = np.where(consumed, 1.0, -self.negative_weight) * shown
        n_shown = np.maximum(shown.sum(axis=1), 1)
        step = np.einsum("nl,nld->nd", sign, item_vectors) / n_shown[:, None]
        prefs[users] += (self.eta * step).astype(prefs.dtype, copy=False)


@dataclass(frozen=True)
class Attraction:
    """Bounded pull toward the mean vector of the consumed (or shown) items.

    Parameters
    ----------
    eta : float in [0, 1]
        Share of the gap closed per round.
    target : "consumed" or "shown"
        Which items pull.

    Notes
    -----
    .. math:: \\mu_{u,t+1} = \\mu_{u,t} + \\eta\\,(\\bar v_u - \\mu_{u,t})

    Users with no target item this round do not move.
    """

    eta: float = 0.05
    target: Literal["consumed", "shown"] = "consumed"
    name: ClassVar[str] = "attraction"

    def __post_init__(self) -> None:
        _eta(self.eta)
        if self.eta > 1:
            raise ValidationError(f"eta must be in [0, 1] for attraction; got {self.eta}")
        if self.target not in ("consumed", "shown"):
            raise ValidationError(f"target must be 'consumed' or 'shown'; got {self.target!r}")

    def apply(self, prefs, users, item_vectors, shown, consumed) -> None:
        _check(prefs, users, item_vectors, shown, consumed)
        w = (consumed if self.target == "consumed" else shown).astype(np.float64)
        m = w.sum(axis=1)
        moved = m > 0
        mean = np.einsum("nl,nld->nd", w[moved], item_vectors[moved]) / m[moved, None]
        rows = users[moved]
        prefs[rows] += (self.eta * (mean - prefs[rows])).astype(prefs.dtype, copy=False)


DRIFT_RULES: dict[str, type] = {r.name: r for r in (NoDrift, ExposureDrift, Attraction)}


def make_drift_rule(name: str, **params: object) -> DriftRule:
    """Build a registered drift rule by name.

    Raises
    ------
    ValidationError
        Unknown name (with a "did you mean" suggestion), unknown parameter, or invalid value.
    """
    if name not in DRIFT_RULES:
        close = difflib.get_close_matches(name, DRIFT_RULES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValidationError(f"unknown drift rule {name!r}{hint}; known: {sorted(DRIFT_RULES)}")
    try:
        return DRIFT_RULES[name](**params)
    except TypeError as err:
        raise ValidationError(f"drift rule {name!r}: {err}") from None
