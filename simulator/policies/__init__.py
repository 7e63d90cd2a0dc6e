"""Policies: one ``Policy`` protocol, one registry (``make_policy`` by config name)."""

from simulator.policies import (  # noqa: F401  (register the built-ins)
    bandits,
    baselines,
    greedy,
    interleaving,
    ipw,
    rerankers,
    wrappers,
)
from simulator.policies.base import (
    POLICIES,
    Policy,
    PolicyBase,
    ScoringPolicy,
    Slate,
    WorldView,
    make_policy,
    register,
    set_param,
)

__all__ = [
    "POLICIES",
    "Policy",
    "PolicyBase",
    "ScoringPolicy",
    "Slate",
    "WorldView",
    "make_policy",
    "register",
    "set_param",
]
