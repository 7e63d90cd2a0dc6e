"""Throughput of the off-policy estimators on synthetic logs (default: 10 million rounds).

Times ``estimate_policy_value`` (input validation included) of every registered estimator on
``n_rounds`` synthetic rounds with ``n_actions`` actions and ``len_list = 1``, then the slate
estimators on ``n_rounds / slate_length`` slates, and prints rounds/s and the peak memory each
call allocates on top of its inputs (``tracemalloc``, which numpy reports to), plus the process's
peak RSS (``resource.getrusage``).

    python benchmarks/ope_throughput.py                    # 10M rounds, 10 actions
    python benchmarks/ope_throughput.py --n-rounds 1000000 --dtype float32

Bootstrap intervals are not timed: they cost ``n_bootstrap_samples`` resamples of all rounds.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from simulator.ope import ItemPositionIPS, PseudoInverse, make_estimator

BANDIT = [
    ("ipw", {}),
    ("ipw", {"lambda_": 5.0}),
    ("snipw", {}),
    ("dm", {}),
    ("dr", {}),
    ("dr", {"lambda_": 5.0}),
    ("sndr", {}),
    ("switch-dr", {"lambda_": 5.0}),
    ("dr-os", {"lambda_": 10.0}),
    ("sg-ipw", {"lambda_": 0.1}),
    ("sg-dr", {"lambda_": 0.1}),
]


def _softmax_rows(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Random distributions over axis 1, built in place to keep memory at one array."""
    out = rng.random(shape, dtype=np.float64).astype(dtype, copy=False)
    out *= 3.0
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def _time(fn, repeat: int) -> tuple[float, float, float]:
    """Best wall time over ``repeat`` calls, peak traced MB of the last call, and its value."""
    best = np.inf
    value = np.nan
    peak = 0.0
    for _ in range(repeat):
        tracemalloc.start()
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return best, peak, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-rounds", type=int, default=10_000_000)
    parser.add_argument("--n-actions", type=int, default=10)
    parser.add_argument("--slate-length", type=int, default=5)
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, k = args.n_rounds, args.n_actions
    dtype = np.float64 if args.dtype == "float64" else np.float32
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    pi_b = _softmax_rows(rng, (n, k), np.float64)  # logging policy; dropped after sampling
    u = rng.random(n)
    action = np.empty(n, dtype=np.int64)
    step = 1_000_000
    for s in range(0, n, step):  # inverse-CDF sampling in chunks
        cdf = np.cumsum(pi_b[s : s + step], axis=1)
        action[s : s + step] = np.minimum((u[s : s + step, None] > cdf).sum(axis=1), k - 1)
    pscore = pi_b[np.arange(n), action].astype(dtype)
    del pi_b, u
    data = {
        "reward": (rng.random(n) < 0.3).astype(np.float64),
        "action": action,
        "pscore": pscore,
        "action_dist": _softmax_rows(rng, (n, k, 1), dtype),
        "estimated_rewards_by_reg_model": rng.random((n, k, 1)).astype(dtype),
    }
    input_mb = sum(v.nbytes for v in data.values()) / 2**20
    print(
        f"{n:,} rounds, {k} actions, len_list 1, {args.dtype}; inputs {input_mb:,.0f} MB "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )
    print(f"{'estimator':52s} {'seconds':>8s} {'rounds/s':>14s} {'peak extra MB':>14s} value")
    for name, hyper in BANDIT:
        est = make_estimator(name, **hyper)
        call = lambda est=est, data=data: est.estimate_policy_value(**data)  # noqa: E731
        seconds, peak, value = _time(call, args.repeat)
        print(f"{est!r:52s} {seconds:8.2f} {n / seconds:14,.0f} {peak:14,.0f} {value:8.4f}")
    del data

    length = args.slate_length
    n_slates = n // length
    slate_action = rng.integers(0, k, size=(n_slates, length))
    slate = {
        "slate_action": slate_action,
        "reward": (rng.random((n_slates, length)) < 0.1).astype(np.float64),
        "pscore": np.full((n_slates, length), 1.0 / k, dtype=dtype),
        "action_dist": _softmax_rows(rng, (n_slates, k, length), dtype),
    }
    print(f"\n{n_slates:,} slates x {length} positions ({n_slates * length:,} impressions)")
    for est in (ItemPositionIPS(), PseudoInverse()):
        call = lambda est=est, slate=slate: est.estimate_policy_value(**slate)  # noqa: E731
        seconds, peak, value = _time(call, args.repeat)
        print(
            f"{est!r:52s} {seconds:8.2f} {n_slates / seconds:14,.0f} {peak:14,.0f} {value:8.4f}  (slates/s)"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the process: {rss:,.0f} MB")


if __name__ == "__main__":
    main()
