"""The Policy protocol, the Slate it returns, and the registry that makes policies by name.

A policy sees the world through :class:`WorldView` (catalog, slate size; the oracle alone also
reads the true relevance), learns from the :class:`~simulator.logs.window.LogWindow` on the
retrain schedule, and answers ``recommend(users, k, rng)`` with a :class:`Slate` that carries its
own propensities (STYLE.md point 4): the log stores them at decision time and IPW training and
off-policy evaluation read them from the log.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
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
    extras : mapping of str to ndarray of shape (n, K)
        Extra per-impression columns written to the impression log after the standard ones
        (empty for ordinary policies). The ``interleaving`` pair policy sets ``team`` (int8,
        0 = A, 1 = B), ``rank_a`` and ``rank_b`` (int16, the item's rank in each policy's slate,
        -1 when absent).
    """

    items: np.ndarray
    scores: np.ndarray
    pscore: np.ndarray
    inclusion_pscore: np.ndarray
    exact: bool = True
    mc_samples: int = 0
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

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


@runtime_checkable
class ScoringPolicy(Protocol):
    """A policy whose ranking comes from a per-user score over the whole catalog.

    The optional method :meth:`score_chunks` is what wrappers (``epsilon_greedy``, ``boltzmann``)
    and re-rankers (``mmr``, ``calibrated``) read from their base policy. Implemented by
    ``greedy`` and ``ipw`` (``U[u] · V[i]`` from their factors), ``oracle`` (the true relevance
    logit), ``popularity`` (window stream counts), the bandits (posterior mean or UCB index) and
    the wrappers themselves (their base's scores).
    """

    def score_chunks(self, users: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(rows, scores)``: scores of ``users[rows]`` for every item.

        ``scores`` has shape (len(rows), n_items), float32; higher is better. Blocks have at most
        ``chunk_rows(n_items)`` rows (:func:`simulator.users.population.chunk_rows`), so a full
        users × items matrix is never held at once. Deterministic given the policy's state.
        """
        ...


def has_scores(policy: Any) -> bool:
    """Whether a policy (class or instance) implements :meth:`ScoringPolicy.score_chunks`."""
    return callable(getattr(policy, "score_chunks", None))


#: Smallest propensity written to a slate: the smallest positive normal float32. A probability
#: that underflows it (e.g. Plackett–Luce at a tiny temperature) is recorded as this value.
MIN_PROPENSITY = float(np.finfo(np.float32).tiny)


def finite_propensity(p: np.ndarray) -> np.ndarray:
    """Propensities as float32 in ``[MIN_PROPENSITY, 1]``: never 0, never NaN.

    Raises
    ------
    ValidationError
        If ``p`` holds NaN (a bug in the policy, never silently logged).
    """
    from simulator.errors import ValidationError

    p = np.asarray(p, dtype=np.float64)
    if np.isnan(p).any():
        raise ValidationError(f"propensities must not be NaN; got {int(np.isnan(p).sum())} NaN values")
    return np.clip(p, MIN_PROPENSITY, 1.0).astype(np.float32)


class PolicyBase:
    """Defaults shared by the built-in policies (no-op ``fit`` and ``update``).

    Class attributes that describe how a policy randomises (read by the conformance tests and
    the benchmarks; the engine needs none of them):

    ``rows_per_draw``
        Consecutive rows of one :meth:`recommend` call that share one random draw (batched
        Thompson sampling). Each row is still distributed as the logged propensities say; only
        the effective number of independent draws of a call is ``rows / rows_per_draw``.
    ``sequential``
        Rows of one call are served in order and later rows depend on earlier ones (per-item
        UCB counts the pending impressions of earlier rows). Propensities are conditional on
        the state *and* the rows before; one-row calls are independent draws.
    """

    needs_impressions: ClassVar[bool] = False
    rows_per_draw: ClassVar[int] = 1
    sequential: ClassVar[bool] = False

    def reset(self, world: WorldView, rng: np.random.Generator) -> None:
        self.world_ = world

    def fit(self, window: LogWindow) -> None:
        return None

    def update(self, users: np.ndarray, slate: Slate, feedback: Feedback) -> None:
        return None

    def params(self) -> dict[str, Any]:
        """The hyperparameters (dataclass fields) as a dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def propensity_info(self) -> dict[str, Any]:
        """How this policy's logged propensities are obtained (for the manifest / cell record).

        Returns ``{"exact": bool, "mc_samples": int, "method": str}``; ``mc_samples`` is the
        Monte-Carlo sample count behind estimated propensities (0 when exact).
        """
        return {"exact": True, "mc_samples": 0, "method": "deterministic or analytic"}


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
