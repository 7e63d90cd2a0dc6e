"""One registry of off-policy estimators, made by name from configs.

``make_estimator("ipw", lambda_=5.0)`` builds :class:`InverseProbabilityWeighting` with weights
truncated at 5; an unknown name or hyperparameter answers "did you mean …" (``difflib``).
Names are case-insensitive and ``_`` is read as ``-``.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from simulator.errors import ValidationError
from simulator.ope import estimators as est
from simulator.ope import slate

__all__ = ["ESTIMATORS", "estimator_names", "make_estimator", "register_estimator"]

#: canonical name -> estimator class (bandit estimators first, then slate estimators)
ESTIMATORS: dict[str, type] = {}
_ALIASES: dict[str, str] = {}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_estimator(cls: type, *, aliases: tuple[str, ...] = ()) -> type:
    """Register ``cls`` under ``cls.name`` (and ``aliases``); return it (usable as decorator).

    Raises
    ------
    ValidationError
        If the name or an alias is already taken by another class.
    """
    names = (cls.name, *aliases)  # type: ignore[attr-defined]
    for raw in names:
        key = _normalise(raw)
        taken = ESTIMATORS.get(key) or ESTIMATORS.get(_ALIASES.get(key, ""))
        if taken is not None and taken is not cls:
            raise ValidationError(f"estimator name {key!r} is already registered to {taken.__name__}")
    canonical = _normalise(cls.name)  # type: ignore[attr-defined]
    ESTIMATORS[canonical] = cls
    for alias in aliases:
        _ALIASES[_normalise(alias)] = canonical
    return cls


for _cls, _aliases in (
    (est.InverseProbabilityWeighting, ("ips", "clipped-ipw")),
    (est.SelfNormalizedInverseProbabilityWeighting, ("snips",)),
    (est.DirectMethod, ("direct-method",)),
    (est.DoublyRobust, ("doubly-robust",)),
    (est.SelfNormalizedDoublyRobust, ()),
    (est.SwitchDoublyRobust, ("switch",)),
    (est.DoublyRobustWithShrinkage, ("dros",)),
    (est.SubGaussianInverseProbabilityWeighting, ("sgipw",)),
    (est.SubGaussianDoublyRobust, ("sgdr",)),
    (slate.ItemPositionIPS, ("item-position-ips", "independent-ips")),
    (slate.PseudoInverse, ("pseudo-inverse",)),
):
    register_estimator(_cls, aliases=_aliases)


def estimator_names(*, include_aliases: bool = False) -> list[str]:
    """Registered names (canonical first, then aliases if asked)."""
    names = list(ESTIMATORS)
    return names + sorted(_ALIASES) if include_aliases else names


def make_estimator(name: str, **hyperparameters: Any) -> Any:
    """Build a registered estimator by name.

    Parameters
    ----------
    name : str
        A canonical name (``estimator_names()``) or an alias, e.g. "ips", "snips", "dr",
        "switch-dr", "pi".
    **hyperparameters
        Fields of the estimator's dataclass, e.g. ``lambda_=5.0``.

    Returns
    -------
    Estimator or SlateEstimator

    Raises
    ------
    ValidationError
        If the name is unknown (with close matches), a hyperparameter is unknown (with close
        matches) or invalid.
    """
    if not isinstance(name, str):
        raise ValidationError(f"estimator name must be a str; got {name!r}")
    key = _normalise(name)
    key = _ALIASES.get(key, key)
    cls = ESTIMATORS.get(key)
    if cls is None:
        known = estimator_names(include_aliases=True)
        close = difflib.get_close_matches(_normalise(name), known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "."
        raise ValidationError(
            f"unknown estimator {name!r}{hint} Known estimators: {', '.join(estimator_names())}"
        )
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in hyperparameters if k not in fields]
    if unknown:
        bad = unknown[0]
        close = difflib.get_close_matches(bad, fields, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        if bad == "lambda_" and not fields:
            hint = " (obp's self-normalized estimators ignore lambda_, so recloop takes none)."
        raise ValidationError(
            f"{cls.__name__} has no hyperparameter {bad!r}{hint} Its hyperparameters: "
            f"{fields if fields else 'none'}"
        )
    return cls(**hyperparameters)
