"""Policies: one ``Policy`` protocol, one registry (``make_policy`` by config name)."""

from simulator.policies import baselines, greedy  # noqa: F401  (register the built-ins)
from simulator.policies.base import (
    POLICIES,
    Policy,
    PolicyBase,
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
    "Slate",
    "WorldView",
    "make_policy",
    "register",
    "set_param",
]
