"""The ``interleaving`` pair policy: an interleaving experiment of two policies inside the loop.

Every session is shown *one* list merged from the slates of two policies A and B (team draft,
Radlinski, Kurup & Joachims 2008, or balanced interleaving, Joachims 2003), and the slate
carries per-impression extras that the impression log writes after its standard columns::

    team int8     0 = the item was contributed by A, 1 = by B
    rank_a int16  0-based rank of the item in A's slate, -1 if A's slate lacks it
    rank_b int16  likewise for B

**Who won each session, from the log.** Team draft: per ``session_id``,
``sign(Σ click·[team = 0] − Σ click·[team = 1])`` (+1 A, −1 B, 0 tie); balanced interleaving
uses ``rank_a``/``rank_b`` and the lowest click. Both are
:func:`simulator.ope.interleaving.credit_from_log`; feed the outcomes to
:func:`simulator.ope.interleaving.interleaving_test` (sign test).

Config::

    [policies.oracle_vs_eps]
    type = "interleaving"
    method = "team_draft"                       # or "balanced"
    a = "oracle"
    b = "epsilon_greedy"
    b_params = { base = "oracle", epsilon = 0.2 }
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from simulator.errors import ConfigError
from simulator.policies.base import (
    POLICIES,
    PolicyBase,
    Slate,
    WorldView,
    finite_propensity,
    make_policy,
    policy_dataclass,
    register,
)

__all__ = ["DETERMINISTIC_CHILDREN", "InterleavingPolicy"]

#: Registered policies whose slates are deterministic given their state (for
#: :meth:`InterleavingPolicy.propensity_info`; each slate's own ``exact`` flag is authoritative).
DETERMINISTIC_CHILDREN: tuple[str, ...] = (
    "greedy",
    "ipw",
    "oracle",
    "popularity",
    "mmr",
    "calibrated",
    "ucb",
)


def _check_child(name: str) -> str:
    from simulator import policies as _builtin  # noqa: F401  (registers the built-ins)

    if name == "interleaving":
        raise ValueError("an interleaving policy cannot interleave another interleaving policy")
    if name not in POLICIES:
        close = difflib.get_close_matches(name, POLICIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown policy {name!r}{hint}; known: {', '.join(sorted(set(POLICIES) - {'interleaving'}))}"
        )
    return name


def _check_child_params(params: dict[str, Any] | None, child: str | None) -> dict[str, Any] | None:
    if child is None or params is None:
        return params
    try:
        make_policy(child, "__child__", **params)
    except ConfigError as err:
        lines = [line.strip() for line in str(err).splitlines()[1:]] or [str(err)]
        detail = "; ".join(line.replace("policies.__child__.", "") for line in lines)
        raise ValueError(f"invalid parameters for policy {child!r}: {detail}") from None
    return params


def _is_deterministic(slate: Slate) -> bool:
    """A slate drawn with certainty: every position propensity is exactly 1."""
    return bool(slate.exact and np.all(slate.pscore == 1.0))


@register("interleaving")
@policy_dataclass
class InterleavingPolicy(PolicyBase):
    """Show the interleaving of two policies' slates; log which policy contributed each item.

    Parameters
    ----------
    method : {"team_draft", "balanced"}
        Team-draft interleaving (fair under clicks independent of the team; prefer it for
        inference) or balanced interleaving (biased when the slates overlap, Hofmann et al.
        2011).
    a, b : str
        Registered names of policies A (team 0) and B (team 1); any policy but
        ``interleaving`` itself.
    a_params, b_params : dict, optional
        Their hyperparameters (validated on construction).
    mc_samples : int
        Extra draws of the two slates per session behind the propensities when a child policy
        is stochastic (see Notes).

    Notes
    -----
    ``reset``, ``fit`` and ``update`` go to both children: both learn from the same window of
    interleaved impressions (what was shown and clicked). Both children are initialised from
    one seed drawn from the reset stream (common random numbers: ``greedy`` and
    ``epsilon_greedy`` over ``greedy`` fit the same model). ``recommend`` asks A, then B, for
    ``k`` items each and interleaves them with the policy's generator.

    Propensities of the shown list. Given the two slates, the only randomness is the
    interleaving's coins: ``2^ceil(K/2)`` equally likely outcomes for team draft (32 at K = 10),
    2 for balanced. When both children's slates are deterministic (every child pscore is 1)
    every outcome is enumerated and ``pscore``/``inclusion_pscore`` are **exact**
    (:func:`simulator.ope.interleaving.interleaving_propensities`). Otherwise the propensity is
    ``E_slates[P(item at k | slates)]``, estimated Rao–Blackwell style: the exact conditional
    probability averaged over the realised slates and ``mc_samples`` fresh draws of the
    stochastic children for the same users (``exact=False``); including the realised draw keeps
    every estimate ``>= 2^-ceil(K/2) / (mc_samples + 1)`` and biases it upwards by at most
    ``1 / (mc_samples + 1)``.

    The logged ``score`` is the contributing child's score of the item.

    References
    ----------
    Radlinski, Kurup & Joachims (2008), "How does clickthrough data reflect retrieval
    quality?", CIKM (team draft, Sec. 4); Joachims (2003), "Evaluating retrieval performance
    using clickthrough data" (balanced); Chapelle, Joachims, Radlinski & Yue (2012),
    "Large-scale validation and analysis of interleaved search evaluation", ACM TOIS 30(1).
    """

    method: Literal["team_draft", "balanced"] = "team_draft"
    a: str = "greedy"
    a_params: dict[str, Any] | None = None
    b: str = "popularity"
    b_params: dict[str, Any] | None = None
    mc_samples: Annotated[int, Field(ge=1, le=1000)] = 8

    @field_validator("a", "b")
    @classmethod
    def _check_children(cls, v: str) -> str:
        return _check_child(v)

    @field_validator("a_params")
    @classmethod
    def _check_a_params(cls, v: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        return _check_child_params(v, info.data.get("a"))

    @field_validator("b_params")
    @classmethod
    def _check_b_params(cls, v: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        return _check_child_params(v, info.data.get("b"))

    def __post_init__(self) -> None:
        # instance attributes: the pair needs (and randomises) what its children do
        pa, pb = self._make_children()
        self.needs_impressions = bool(pa.needs_impressions or pb.needs_impressions)
        self.sequential = bool(pa.sequential or pb.sequential)
        self.rows_per_draw = max(int(pa.rows_per_draw), int(pb.rows_per_draw))

    def _make_children(self):
        return make_policy(self.a, **(self.a_params or {})), make_policy(self.b, **(self.b_params or {}))

    def reset(self, world: WorldView, rng: np.random.Generator) -> None:
        self.world_ = world
        self.a_, self.b_ = self._make_children()
        seed = int(rng.integers(2**63))
        self.a_.reset(world, np.random.default_rng(seed))
        self.b_.reset(world, np.random.default_rng(seed))

    def fit(self, window) -> None:
        self.a_.fit(window)
        self.b_.fit(window)

    def update(self, users, slate, feedback) -> None:
        self.a_.update(users, slate, feedback)
        self.b_.update(users, slate, feedback)

    def recommend(self, users: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        from simulator.ope.interleaving import interleave, interleaving_propensities, list_ranks

        sa = self.a_.recommend(users, k, rng)
        sb = self.b_.recommend(users, k, rng)
        items, team = interleave(self.method, sa.items, sb.items, k, rng)
        rank_a, rank_b = list_ranks(items, sa.items), list_ranks(items, sb.items)
        rows = np.arange(items.shape[0])[:, None]
        scores = np.where(
            team == 0,
            sa.scores[rows, np.maximum(rank_a, 0)],
            sb.scores[rows, np.maximum(rank_b, 0)],
        ).astype(np.float32)
        pscore, inclusion = interleaving_propensities(sa.items, sb.items, items, self.method)
        det_a, det_b = _is_deterministic(sa), _is_deterministic(sb)
        exact = det_a and det_b
        if not exact:
            for _ in range(self.mc_samples):
                la = sa.items if det_a else self.a_.recommend(users, k, rng).items
                lb = sb.items if det_b else self.b_.recommend(users, k, rng).items
                p, q = interleaving_propensities(la, lb, items, self.method)
                pscore += p
                inclusion += q
            pscore /= self.mc_samples + 1
            inclusion /= self.mc_samples + 1
        return Slate(
            items,
            scores,
            finite_propensity(pscore),
            finite_propensity(np.maximum(inclusion, pscore)),
            exact=exact,
            mc_samples=0 if exact else self.mc_samples,
            extras={"team": team, "rank_a": rank_a, "rank_b": rank_b},
        )

    def propensity_info(self) -> dict[str, Any]:
        exact = self.a in DETERMINISTIC_CHILDREN and self.b in DETERMINISTIC_CHILDREN
        return {
            "exact": exact,
            "mc_samples": 0 if exact else self.mc_samples,
            "method": f"{self.method} interleaving: every coin outcome enumerated (exact) when both "
            f"slates are deterministic; otherwise the exact conditional propensity averaged over the "
            f"realised and {self.mc_samples} fresh draws of the stochastic slates (Monte-Carlo)",
        }
