"""Top-``K`` of a users × items score matrix that is never held whole: GEMM and selection fused.

A round's scoring is ``S = L · R + b`` (users × items; ``L`` a per-user side such as ALS user
factors, ``R`` the item side, ``b`` an optional per-item bias) followed by the top ``K`` items
of every row, block by block (:func:`score_rows` users at a time), so the score matrix is never
held whole. The block size trades two costs: BLAS packs the item side once per call (at 10k items
and 32-row blocks, 1.3 MB packed per 1.3 MB of scores: the GEMM ran 30% slower than on big
blocks), while the selection (:func:`simulator.selection.top_k_rows`) reads a block back faster
from L2 than from L3. Measured on the 2-core VMs at 10k items, 16 MB blocks (419 rows) made the
stage 15% faster than 1 MB blocks (8 MB: 12%); at 5k items 4%. The stage then costs the bare
GEMM plus a selection of ~0.25–0.35 ns per score (see ``benchmarks/throughput.py``).

With several kernel threads (:func:`simulator.kernels.set_threads`) the rows are split into one
contiguous range per thread, each run by a Python thread (GEMM and the compiled selection both
release the GIL) with single-threaded BLAS and a serial selection: small GEMMs do not
parallelise inside BLAS, and BLAS worker threads woken for every small block, alternating with
the selection, ran ~20x slower on the 2-core VMs. Rows are independent and BLAS runs one thread
in every case (OpenBLAS rounds differently with one thread and with two), so the result does not
depend on the thread count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from simulator.kernels import get_threads
from simulator.selection import top_k_rows

#: Float32 scores per fused block: 16 MB (see the module docstring for the measurement).
BLOCK_ELEMENTS = 1 << 22
#: Fewer rows than this starve the GEMM (it re-reads the item side per block): floor of rows.
MIN_ROWS = 32


@functools.cache
def _controller() -> ThreadpoolController:
    # scanning the loaded libraries costs ~5 ms; a controller made once limits them in ~30 µs
    return ThreadpoolController()


def single_threaded_blas():
    """Context manager: BLAS runs one thread inside (cheap: a cached ``ThreadpoolController``)."""
    return _controller().limit(limits=1, user_api="blas")


def score_rows(n_items: int) -> int:
    """Users per fused GEMM + top-``K`` block: ``BLOCK_ELEMENTS / n_items``, at least ``MIN_ROWS``."""
    return max(MIN_ROWS, BLOCK_ELEMENTS // max(1, n_items))


def gemm_top_k(
    left: Callable[[slice], np.ndarray],
    right: np.ndarray,
    n: int,
    k: int,
    bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns of every row of ``left(rows) @ right (+ bias)``, block by block.

    Parameters
    ----------
    left : callable
        ``left(rows)`` returns the user side of the rows ``rows`` (a slice of ``range(n)``),
        shape (len(rows), d), float32 — e.g. ``lambda rows: U[users[rows]]``.
    right : ndarray of shape (d, n_items), float32
        The item side, C-contiguous (transposed item factors).
    n : int
        Number of rows.
    k : int, 1 <= k <= n_items
    bias : ndarray of shape (n_items,), float32, optional
        Added to every row before selection.

    Returns
    -------
    items : ndarray of shape (n, k), int32
        Best first; ties: lower item index first (as :func:`simulator.selection.top_k_rows`).
    scores : ndarray of shape (n, k), float32

    Raises
    ------
    ValueError
        If ``k`` is outside [1, n_items].
    """
    n_items = right.shape[1]
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be in [1, {n_items}]; got {k}")
    items = np.empty((n, k), dtype=np.int32)
    scores = np.empty((n, k), dtype=np.float32)

    def one_block(rows: slice) -> None:
        block = left(rows) @ right
        if bias is not None:
            block += bias
        items[rows], scores[rows] = top_k_rows(block, k, parallel=False)

    # one BLAS thread in every case, so the scores do not depend on the thread count
    with single_threaded_blas():
        run_blocks(n, score_rows(n_items), one_block)
    return items, scores


def run_blocks(n: int, step: int, fn: Callable[[slice], None]) -> None:
    """Call ``fn(rows)`` for consecutive slices of ``step`` rows of ``range(n)``.

    With several kernel threads (:func:`simulator.kernels.get_threads`), each Python thread runs
    one contiguous range of blocks; ``fn`` must write only its own rows and draw no random
    numbers. A worker's exception is re-raised here.
    """
    starts = list(range(0, n, step))
    threads = min(get_threads(), len(starts))

    def run(part) -> None:
        for start in part:
            fn(slice(int(start), min(int(start) + step, n)))

    if threads <= 1:
        run(starts)
        return
    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(run, p) for p in np.array_split(np.asarray(starts), threads)]:
            done.result()
