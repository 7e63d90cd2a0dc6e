"""One seed, many streams (NumPy's parallel-streams guide; STYLE.md point 1).

Every stochastic component of a run draws from its own ``numpy.random.Generator``, derived from
the run's seed and the component's *name* (not its position in a list). Adding a component, or a
policy, therefore never shifts another component's draws: all policies of one seed see the same
world, the same sessions and the same click uniforms (common random numbers).
"""

from __future__ import annotations

import zlib

import numpy as np

#: Components of a run; each gets an independent stream. Order does not matter.
COMPONENTS = ("catalog", "users", "history", "sessions", "drift", "clicks", "log", "metrics")


def component_key(name: str) -> int:
    """A stable 32-bit key for a component or policy name (CRC-32 of its UTF-8 bytes)."""
    return zlib.crc32(name.encode("utf-8"))


def stream(seed: int, name: str, *sub: int) -> np.random.Generator:
    """The generator of component ``name`` (optionally a sub-stream) for run seed ``seed``.

    Parameters
    ----------
    seed : int
        The run's seed (>= 0).
    name : str
        Component name, e.g. ``"clicks"`` or ``"policy:greedy"``.
    *sub : int
        Extra spawn-key entries for sub-streams.

    Returns
    -------
    numpy.random.Generator
        PCG64 generator; identical across processes and platforms for equal arguments.
    """
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(component_key(name), *sub))
    return np.random.Generator(np.random.PCG64(ss))
