"""Click models: which positions a user examines and which examined items they stream.

Each model is pure (STYLE.md point 6): :meth:`click_probabilities` returns exact examination and
click probabilities; :meth:`simulate` samples clicks from them with a given generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from simulator.errors import ValidationError


@dataclass(frozen=True)
class Feedback:
    """Outcome of one round of sessions.

    Attributes
    ----------
    clicks : ndarray of shape (n, K), bool
    examination : ndarray of shape (n, K), float32
        True probability that each position was examined (logged; estimated in real logs).
    click_probability : ndarray of shape (n, K), float32
        Exact marginal click probability of each position.
    """

    clicks: np.ndarray
    examination: np.ndarray
    click_probability: np.ndarray


@runtime_checkable
class ClickModel(Protocol):
    """How a user responds to a slate, given the true relevance of its items."""

    name: ClassVar[str]

    def click_probabilities(self, relevance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(examination, click_probability)``, each of shape (n, K), float32."""
        ...

    def simulate(self, relevance: np.ndarray, rng: np.random.Generator) -> Feedback:
        """Sample clicks for a (n, K) relevance matrix; draws exactly n·K uniforms."""
        ...


def _check_relevance(relevance: np.ndarray) -> np.ndarray:
    rel = np.asarray(relevance, dtype=np.float32)
    if rel.ndim != 2:
        raise ValidationError(f"relevance must have shape (n, K); got shape {rel.shape}")
    if rel.size and (not np.isfinite(rel).all() or rel.min() < 0 or rel.max() > 1):
        raise ValidationError(
            f"relevance must be probabilities in [0, 1]; got range [{rel.min()}, {rel.max()}]"
        )
    return rel


def pbm_examination(k: int, eta: float) -> np.ndarray:
    """Examination curve ``P(E_k) = 1 / (k + 1)^eta`` for 0-based positions ``k = 0..K-1``.

    Returns
    -------
    ndarray of shape (K,), float32

    Raises
    ------
    ValidationError
        If ``k < 1`` or ``eta < 0``.

    References
    ----------
    Joachims, Swaminathan & Schnabel (2017), "Unbiased learning-to-rank with biased feedback",
    WSDM, Sec. 5 (``eta`` controls the severity of position bias).
    """
    if k < 1:
        raise ValidationError(f"slate size K must be >= 1; got {k}")
    if not eta >= 0:
        raise ValidationError(f"eta must be >= 0; got {eta}")
    return (1.0 / np.arange(1, k + 1, dtype=np.float64) ** eta).astype(np.float32)


@dataclass(frozen=True)
class PositionBasedModel:
    """Position-based model: ``P(click_k) = P(E_k) · r(u, i_k)``, examination independent of items.

    Parameters
    ----------
    eta : float, >= 0
        Severity of position bias in ``P(E_k) = 1/(k+1)^eta``; 0 = every position examined.
    examination : tuple of float in (0, 1], optional
        An explicit examination curve, one value per position (overrides ``eta``).

    References
    ----------
    Richardson, Dominowska & Ragno (2007); Craswell et al. (2008), WSDM, Sec. 2 (the
    "examination hypothesis"); Joachims et al. (2017) for the ``1/(k+1)^eta`` curve.
    """

    eta: float = 1.0
    examination: tuple[float, ...] | None = None
    name: ClassVar[str] = "pbm"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.eta) and self.eta >= 0):
            raise ValidationError(f"eta must be a finite float >= 0; got {self.eta}")
        if self.examination is not None:
            e = np.asarray(self.examination, dtype=np.float64)
            if e.ndim != 1 or e.size == 0 or not np.all((e > 0) & (e <= 1)):
                raise ValidationError(
                    f"examination must be a non-empty list of values in (0, 1]; got {self.examination}"
                )

    def curve(self, k: int) -> np.ndarray:
        """Examination probability per position, shape (k,), float32."""
        if self.examination is not None:
            if len(self.examination) != k:
                raise ValidationError(f"examination has {len(self.examination)} positions; the slate has {k}")
            return np.asarray(self.examination, dtype=np.float32)
        return pbm_examination(k, self.eta)

    def click_probabilities(self, relevance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = _check_relevance(relevance)
        exam = np.broadcast_to(self.curve(rel.shape[1]), rel.shape)
        return exam, exam * rel

    def simulate(self, relevance: np.ndarray, rng: np.random.Generator) -> Feedback:
        exam, p = self.click_probabilities(relevance)
        clicks = rng.random(p.shape, dtype=np.float32) < p
        return Feedback(clicks, exam, p)


@dataclass(frozen=True)
class CascadeModel:
    """Cascade model: scan top-down, click the first attractive item, then stop.

    ``P(E_k) = prod_{j<k} (1 − r_j)`` and ``P(click_k) = r_k · P(E_k)``; at most one click per
    slate.

    References
    ----------
    Craswell, Zoeter, Taylor & Ramsey (2008), "An experimental comparison of click
    position-bias models", WSDM, Sec. 3 (Eq. for the cascade model).
    """

    name: ClassVar[str] = "cascade"

    def click_probabilities(self, relevance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = _check_relevance(relevance)
        survive = np.cumprod(1.0 - rel, axis=1, dtype=np.float64)
        exam = np.ones_like(survive)
        exam[:, 1:] = survive[:, :-1]
        return exam.astype(np.float32), (exam * rel).astype(np.float32)

    def simulate(self, relevance: np.ndarray, rng: np.random.Generator) -> Feedback:
        rel = _check_relevance(relevance)
        exam, p = self.click_probabilities(rel)
        attractive = rng.random(rel.shape, dtype=np.float32) < rel
        first = np.argmax(attractive, axis=1)
        clicks = np.zeros(rel.shape, dtype=bool)
        hit = attractive.any(axis=1)
        clicks[np.flatnonzero(hit), first[hit]] = True
        return Feedback(clicks, exam, p)


CLICK_MODELS: dict[str, type] = {"pbm": PositionBasedModel, "cascade": CascadeModel}


def make_click_model(name: str, **params: object) -> ClickModel:
    """Build a registered click model by name.

    Raises
    ------
    ValidationError
        Unknown name (with a suggestion) or invalid parameters.
    """
    import difflib

    if name not in CLICK_MODELS:
        close = difflib.get_close_matches(name, CLICK_MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValidationError(f"unknown click model {name!r}{hint}; known: {sorted(CLICK_MODELS)}")
    return CLICK_MODELS[name](**params)
