"""Choice models: which items of a ranked list a user consumes, given their utilities.

A click model (:mod:`simulator.clicks.models`) answers "which *examined* positions are
streamed"; a choice model answers the more general question of the replication literature:
given the list a user is shown (in rank order), which of its items does the user take? One
protocol, one registry (STYLE.md point 3); every model is pure (STYLE.md point 6):
:meth:`ChoiceModel.choice_probabilities` returns exact probabilities and :meth:`ChoiceModel.choose`
samples from them with a given generator.

Inputs are always in *list order* (column 0 = rank 1):

``utility`` : ndarray of shape (n, L), float
    The utility the user assigns to each listed item (what the user knows, not necessarily the
    truth).
``available`` : ndarray of shape (n, L), bool
    False for padding and for items the user may not take (e.g. already consumed).

Registered models
-----------------
``rank_attention``
    One deterministic choice per list: ``argmax_k (k+1)^(−a) · utility_k`` over the available
    slots (Chaney, Stewart & Engelhardt 2018).
``accept_probability``
    Each available slot is accepted independently with probability
    ``clip(scale · utility, 0, 1) · (k+1)^(−position_exponent)`` (Mansoury et al. 2020; the
    Bernoulli reaction of Jiang et al. 2019).
``logit``
    One multinomial-logit choice per list among the available slots and an optional outside
    option: ``P(k) ∝ exp(utility_k / T)`` (McFadden 1974; the choice rule of Fleder &
    Hosanagar 2009).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from simulator.errors import ValidationError

__all__ = [
    "CHOICE_MODELS",
    "AcceptProbability",
    "ChoiceModel",
    "Logit",
    "RankAttention",
    "make_choice_model",
]


@runtime_checkable
class ChoiceModel(Protocol):
    """How a user picks items from a ranked list, given their utilities."""

    name: ClassVar[str]
    #: True when at most one item per list is chosen (probabilities of a row sum to <= 1).
    single_choice: ClassVar[bool]

    def choice_probabilities(self, utility: np.ndarray, available: np.ndarray) -> np.ndarray:
        """Exact ``P(slot k is chosen)``, shape (n, L), float64; 0 where not available."""
        ...

    def choose(self, utility: np.ndarray, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sampled choices, shape (n, L), bool (never True where not available)."""
        ...


def _check(utility: np.ndarray, available: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(utility, dtype=np.float64)
    a = np.asarray(available)
    if u.ndim != 2:
        raise ValidationError(f"utility must have shape (n, L); got shape {u.shape}")
    if a.dtype != np.bool_ or a.shape != u.shape:
        raise ValidationError(
            f"available must be a bool array of the utility's shape {u.shape}; got {a.dtype} {a.shape}"
        )
    if not np.isfinite(u[a]).all():
        raise ValidationError("utility must be finite on the available slots")
    return u, a


def _positive_finite(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        rule = ">= 0" if allow_zero else "> 0"
        raise ValidationError(f"{name} must be a finite float {rule}; got {value}")


@dataclass(frozen=True)
class RankAttention:
    """One deterministic choice per list: the slot maximising ``(k+1)^(−a) · utility_k``.

    Parameters
    ----------
    exponent : float >= 0
        ``a``, the decay of attention with (1-based) rank; 0 = rank does not matter.

    Notes
    -----
    .. math:: k^* = \\arg\\max_{k:\\ \\mathrm{available}} (k + 1)^{-a}\\, \\hat V_{u, i_k}

    Ties go to the better rank. Rows with no available slot choose nothing. Utilities should be
    non-negative (a negative utility is better at a *worse* rank under this rule).

    References
    ----------
    Chaney, Stewart & Engelhardt (2018), "How algorithmic confounding in recommendation systems
    increases homogeneity and decreases utility", RecSys, Sec. 3 (users choose
    ``argmax r^(-0.8) · V̂`` among the recommended items they have not consumed).
    """

    exponent: float = 0.8
    name: ClassVar[str] = "rank_attention"
    single_choice: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _positive_finite("exponent", self.exponent, allow_zero=True)

    def attention(self, length: int) -> np.ndarray:
        """``(k+1)^(−a)`` for 0-based ranks ``k < length``, shape (length,), float64."""
        return np.arange(1, length + 1, dtype=np.float64) ** -self.exponent

    def choice_probabilities(self, utility: np.ndarray, available: np.ndarray) -> np.ndarray:
        u, a = _check(utility, available)
        out = np.zeros(u.shape, dtype=np.float64)
        if u.size == 0:
            return out
        weighted = np.where(a, u * self.attention(u.shape[1]), -np.inf)
        best = np.argmax(weighted, axis=1)  # first maximum: the better rank wins ties
        any_ok = a.any(axis=1)
        out[np.flatnonzero(any_ok), best[any_ok]] = 1.0
        return out

    def choose(self, utility: np.ndarray, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The deterministic choice (draws nothing from ``rng``)."""
        return self.choice_probabilities(utility, available) > 0


@dataclass(frozen=True)
class AcceptProbability:
    """Each available slot accepted independently with ``clip(s·utility, 0, 1)·(k+1)^(−b)``.

    Parameters
    ----------
    scale : float > 0
        ``s``; with utilities already probabilities, 1 accepts with exactly that probability.
    position_exponent : float >= 0
        ``b``, position bias of the acceptance (0 = every slot is considered).

    Notes
    -----
    Draws exactly ``n·L`` uniforms, whatever is available (streams stay aligned).

    References
    ----------
    Mansoury, Abdollahpouri, Pechenizkiy, Mobasher & Burke (2020), "Feedback loop and bias
    amplification in recommender systems", CIKM, Sec. 3 (users accept recommended items with a
    probability and the accepted items join their profiles).
    """

    scale: float = 1.0
    position_exponent: float = 0.0
    name: ClassVar[str] = "accept_probability"
    single_choice: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _positive_finite("scale", self.scale)
        _positive_finite("position_exponent", self.position_exponent, allow_zero=True)

    def choice_probabilities(self, utility: np.ndarray, available: np.ndarray) -> np.ndarray:
        u, a = _check(utility, available)
        pos = np.arange(1, u.shape[1] + 1, dtype=np.float64) ** -self.position_exponent
        p = np.clip(self.scale * np.where(a, u, 0.0), 0.0, 1.0) * pos
        return np.where(a, p, 0.0)

    def choose(self, utility: np.ndarray, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.choice_probabilities(utility, available)
        return rng.random(p.shape) < p


@dataclass(frozen=True)
class Logit:
    """One multinomial-logit choice per list among the available slots (and an outside option).

    Parameters
    ----------
    temperature : float > 0
        ``T``; small = users almost always take their best available item.
    outside_utility : float or None
        Utility of choosing nothing; ``None`` = no outside option (a row with any available slot
        always chooses one).

    Notes
    -----
    .. math:: P(k) = \\frac{e^{U_k / T}}
              {e^{U_0 / T}\\,[\\text{outside}] + \\sum_{j\\ \\mathrm{avail}} e^{U_j / T}}

    Computed with the log-sum-exp shift. Draws exactly ``n`` uniforms (inverse CDF per row).

    References
    ----------
    McFadden (1974), "Conditional logit analysis of qualitative choice behavior"; Fleder &
    Hosanagar (2009), "Blockbuster culture's next rise or fall", Management Science 55(5),
    Sec. 3 (consumers choose among the products they are aware of by a multinomial logit).
    """

    temperature: float = 1.0
    outside_utility: float | None = None
    name: ClassVar[str] = "logit"
    single_choice: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _positive_finite("temperature", self.temperature)
        if self.outside_utility is not None and not math.isfinite(self.outside_utility):
            raise ValidationError(
                f"outside_utility must be a finite float or None; got {self.outside_utility}"
            )

    def choice_probabilities(self, utility: np.ndarray, available: np.ndarray) -> np.ndarray:
        u, a = _check(utility, available)
        z = np.where(a, u / self.temperature, -np.inf)
        if self.outside_utility is not None:
            z = np.concatenate([z, np.full((u.shape[0], 1), self.outside_utility / self.temperature)], axis=1)
        top = z.max(axis=1, keepdims=True) if z.shape[1] else np.zeros((u.shape[0], 1))
        top = np.where(np.isfinite(top), top, 0.0)
        w = np.exp(z - top)
        total = w.sum(axis=1, keepdims=True)
        p = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
        return p[:, : u.shape[1]]

    def choose(self, utility: np.ndarray, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.choice_probabilities(utility, available)
        draw = rng.random(p.shape[0])
        cdf = np.cumsum(p, axis=1)
        k = (cdf <= draw[:, None]).sum(axis=1)  # first slot whose cdf exceeds the draw
        out = np.zeros(p.shape, dtype=bool)
        hit = k < p.shape[1]
        rows = np.flatnonzero(hit)
        out[rows, k[hit]] = True
        return out & np.asarray(available)


CHOICE_MODELS: dict[str, type] = {m.name: m for m in (RankAttention, AcceptProbability, Logit)}


def make_choice_model(name: str, **params: object) -> ChoiceModel:
    """Build a registered choice model by name.

    Raises
    ------
    ValidationError
        Unknown name (with a "did you mean" suggestion), unknown parameter, or invalid value.
    """
    if name not in CHOICE_MODELS:
        close = difflib.get_close_matches(name, CHOICE_MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValidationError(f"unknown choice model {name!r}{hint}; known: {sorted(CHOICE_MODELS)}")
    try:
        return CHOICE_MODELS[name](**params)
    except TypeError as err:
        raise ValidationError(f"choice model {name!r}: {err}") from None
