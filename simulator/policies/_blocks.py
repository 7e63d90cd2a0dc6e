"""A base policy's scores in bounded user blocks, for the policies that post-process them.

The wrappers and re-rankers read their base's per-user scores over the whole catalog and
reduce every row to a few items (top candidates, a sampled slate). Through ``score_chunks``
each ~16 MB block is written by the GEMM and read back from memory by the kernel; when the
base's scores are a product of factors (``greedy``, ``ipw``, the linear bandits, or a wrapper
of one of them), :func:`score_blocks` instead forms them in blocks of
:func:`simulator.scoring.score_rows` users, each handed to the kernel right after its GEMM, as
greedy's own fused scoring does (:func:`simulator.scoring.gemm_top_k`) — with the same GEMM, so a
re-ranker with neutral weights reproduces greedy's slate exactly.

With several kernel threads (:func:`simulator.kernels.set_threads`) the blocks are split into
one contiguous range per thread (Python threads; the kernels and BLAS release the GIL). Rows are
independent and every random number is drawn before the blocks run, so results do not depend
on the thread count. Callers run BLAS single-threaded
(``simulator.scoring.single_threaded_blas``), like greedy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from simulator.scoring import run_blocks, score_rows
from simulator.selection import PARALLEL_MIN_ELEMENTS

__all__ = ["chunks", "factor_scorer", "score_blocks"]

#: ``(left, right)``: ``left(users)`` of shape (n, d) float32 and ``right`` (d, n_items) float32.
Factors = tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]


def factor_scorer(policy) -> Factors | None:
    """``(left, right)`` such that the policy's scores are ``left(users) @ right``, or None.

    A policy declares it with a ``score_factors()`` method (greedy and ipw, the linear bandits,
    the wrappers).
    """
    method = getattr(policy, "score_factors", None)
    return method() if callable(method) else None


def score_blocks(
    policy, users: np.ndarray, process: Callable[[slice, np.ndarray, bool], None], n_items: int
) -> None:
    """Call ``process(rows, scores, parallel)`` over the policy's scores of ``users``, block by block.

    ``scores`` has shape (len(rows), n_items), float32, and is only valid during the call.
    Factor bases: blocks of ``score_rows(n_items)`` rows, split over threads by
    :func:`run_blocks` (``parallel`` False: the caller is one of several threads). Other bases:
    their ``score_chunks`` blocks, in order (``parallel`` for blocks of at least
    ``PARALLEL_MIN_ELEMENTS`` scores).
    """
    factors = factor_scorer(policy)
    if factors is None:
        for rows, block in policy.score_chunks(users):
            block = np.ascontiguousarray(block, dtype=np.float32)
            process(rows, block, block.size >= PARALLEL_MIN_ELEMENTS)
        return
    left, right = factors
    run_blocks(users.size, score_rows(n_items), lambda rows: process(rows, left(users[rows]) @ right, False))


def chunks(n: int, step: int) -> Iterator[slice]:
    """Consecutive slices of ``step`` rows of ``range(n)``."""
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))
