"""Command-line argument types shared by the benchmark scripts: a bad value is an argparse error
(exit code 2, naming the option and the allowed values) before any size runs, not a traceback
after the valid ones."""

from __future__ import annotations

import argparse

#: Items per slate in the benchmarks' worlds (the config default): a catalog needs at least this.
SLATE_SIZE = 10


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {value}")
    return value


def sizes(text: str) -> list[tuple[int, int]]:
    """``USERSxITEMS[,USERSxITEMS...]`` as (users, items) pairs, items >= the slate size."""
    out = []
    for part in text.split(","):
        users, sep, items = part.strip().lower().partition("x")
        try:
            n, m = int(users), int(items)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected USERSxITEMS[,USERSxITEMS...], e.g. 10000x5000; got {part.strip()!r}"
            ) from None
        if not sep or n < 1 or m < SLATE_SIZE:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r}: need at least 1 user and {SLATE_SIZE} items (one slate)"
            )
        out.append((n, m))
    return out


def policy_names(text: str) -> list[str]:
    """``a,b,...``: registered policy names (``recloop policies`` lists them), no empty entry."""
    import simulator.engine.model  # noqa: F401 - registers every policy
    from simulator.policies.base import POLICIES

    names = [p.strip() for p in text.split(",")]
    for name in names:
        if name not in POLICIES:
            raise argparse.ArgumentTypeError(
                f"unknown policy {name!r}; registered: {', '.join(sorted(POLICIES))}"
            )
    return names
