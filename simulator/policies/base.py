"""The Policy protocol, the Slate it returns, and the registry that makes policies by name.

A policy sees the world through :class:`WorldView` (catalog, slate size; the oracle alone also
reads the true relevance), learns from the :class:`~simulator.logs.window.LogWindow` on the
retrain schedule, and answers ``recommend(users, k, rng)`` with a :class:`Slate` that carries its
own propensities (STYLE.md point 4): the log stores them at decision time and IPW training and
off-policy evaluation read them from the log.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pydantic

from simulator.errors import ConfigError

if TYPE_CHECKING:
    from simulator.catalog.catalog import Catalog
    from simulator.clicks.models import Feedback
    from simulator.logs.window import LogWindow
    from simulator.users.population import Population


@dataclass(frozen=True)
class Slate:
    """Ranked lists for ``n`` sessions, with the logging policy's propensities.

    Attributes
    ----------
    items : ndarray of shape (n, K), int32
        Item ids, position 0 first; K unique items per row.
    scores : ndarray of shape (n, K), float32
        The policy's score of each shown item (model output; 0 where the policy has none).
    pscore : ndarray of shape (n, K), float32
        ``P(policy shows item items[s, k] at position k to this user)``, in (0, 1].
    inclusion_pscore : ndarray of shape (n, K), float32
        ``P(item items[s, k] appears anywhere in the slate)``, in (0, 1].
    exact : bool
        True when the propensities are analytic; False for Monte-Carlo estimates.
    mc_samples : int
        Number of Monte-Carlo samples behind estimated propensities (0 when exact).
    """

    items: np.ndarray
    scores: np.ndarray
    pscore: np.ndarray
    inclusion_pscore: np.ndarray
    exact: bool = True
    mc_samples: int = 0

    @classmethod
    def deterministic(cls, items: np.ndarray, scores: np.ndarray) -> Slate:
        """A slate chosen with certainty: every propensity is 1."""
        ones = np.ones(items.shape, dtype=np.float32)
        return cls(items.astype(np.int32), scores.astype(np.float32), ones, ones.copy())


@dataclass(frozen=True, eq=False)
class WorldView:
    """What a policy may know about the world.

    ``population`` gives true relevance; only the oracle may read it.
    """

    n_users: int
    catalog: Catalog
    slate_size: int
    population: Population


@runtime_checkable
class Policy(Protocol):
    """A recommendation policy (logging policy when it produces a log).

    Hyperparameters are the dataclass fields; learned state ends with ``_`` and appears in
    :meth:`reset` / :meth:`fit`.
    """

    #: Whether :meth:`fit` needs shown-not-clicked impressions (else only streams are kept).
    needs_impressions: ClassVar[bool]

    def reset(self, world: WorldView, rng: np.random.Generator) -> None:
        """Forget everything and bind to a world (called once before day 0)."""
        ...

    def fit(self, window: LogWindow) -> None:
        """Re-fit the model on the log window (on the retrain schedule)."""
        ...

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        """Slates for ``users`` (int array of shape (n,)), ``k`` items each."""
        ...

    def update(self, users: np.ndarray, slate: Slate, feedback: Feedback) -> None:
        """Online update after each round (bandits); model policies do nothing here."""
        ...


class PolicyBase:
    """Defaults shared by the built-in policies (no-op ``fit`` and ``update``)."""

    needs_impressions: ClassVar[bool] = False

    def reset(self, world: WorldView, rng: np.random.Generator) -> None:
        self.world_ = world

    def fit(self, window: LogWindow) -> None:
        return None

    def update(self, users: np.ndarray, slate: Slate, feedback: Feedback) -> None:
        return None

    def params(self) -> dict[str, Any]:
        """The hyperparameters (dataclass fields) as a dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


POLICIES: dict[str, type] = {}

#: Hyperparameter dataclasses are pydantic-validated: wrong types and ranges fail on construction.
policy_dataclass = pydantic.dataclasses.dataclass(
    config=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
)


def register(name: str):
    """Class decorator: register a policy class under ``name`` (as used in configs)."""

    def deco(cls: type) -> type:
        if name in POLICIES:
            raise ValueError(f"policy {name!r} is already registered")
        cls.registry_name = name
        POLICIES[name] = cls
        return cls

    return deco


def make_policy(name: str, label: str | None = None, **params: Any) -> Policy:
    """Construct a registered policy from its name and hyperparameters.

    Raises
    ------
    ConfigError
        Unknown name (with a "did you mean" suggestion) or an invalid hyperparameter; the
        message names ``policies.<label>.<param>``.
    """
    from simulator import policies as _builtin  # noqa: F401  (registers the built-ins)

    where = f"policies.{label or name}"
    if name not in POLICIES:
        close = difflib.get_close_matches(name, POLICIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{where}.type: unknown policy {name!r}{hint}; known: {', '.join(sorted(POLICIES))}"
        )
    try:
        return POLICIES[name](**params)
    except pydantic.ValidationError as err:
        msgs = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "unexpected_keyword_argument":
                known = [f.name for f in fields(POLICIES[name])]
                close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1)
                msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
                msg += f"; {name} takes {known}"
            elif "input" in e:
                msg += f"; got {e['input']!r}"
            msgs.append(f"  {where}.{loc}: {msg}")
        raise ConfigError("invalid policy hyperparameters:\n" + "\n".join(msgs)) from None


def set_param(policy: Any, param: str, value: Any, label: str = "") -> None:
    """Set one hyperparameter of a live policy (a scheduled intervention), validated.

    Raises
    ------
    ConfigError
        Unknown parameter or invalid value.
    """
    params = policy.params()
    if param not in params:
        close = difflib.get_close_matches(param, params, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"policy {label!r} has no parameter {param!r}{hint}; has {sorted(params)}")
    checked = make_policy(policy.registry_name, label, **{**params, param: value})
    setattr(policy, param, getattr(checked, param))
