"""Throughput of one simulation cell: user-rounds per second and peak memory, per stage.

    python benchmarks/throughput.py                      # greedy at 10k x 5k and 100k x 10k
    python benchmarks/throughput.py --sizes 10000x5000 --policy random --rounds 20
    python benchmarks/throughput.py --sizes 10000x5000 --policy greedy,boltzmann,linear_thompson --reps 3

A "user-round" is one active user served one slate in one round, including everything a round
does (sessions, recommend, clicks, user updates, window + Parquet log, metrics, retraining). The
first (initial) fit on the pre-system history is timed separately as setup, after a small
warm-up run that compiles the numba kernels (a fresh install compiles them on first use). Peak
memory is the process's maximum resident set size (``resource.getrusage``), so run one size per
process for a clean number (the script re-executes itself per size). Each size also times the bare float32
scoring GEMM of its active users (``U @ Vᵀ`` in the policies' user chunks, same threads) and
prints the run's multiple of it. ``--threads`` sets the compiled-kernel and fused-scoring
threads; BLAS runs one thread, as in the runner (``RECLOOP_THREADS``), so the GEMM yardstick is
single-threaded too.

With several policies (``--policy a,b,...``) every (policy, rep) runs in its own process, the
reps interleaved (a, b, …, a, b, …) so that a drift of the shared machine's speed hits every
policy alike; each policy's best rep is reported with its throughput relative to the first
policy's (issue 3: an exploration policy's whole round within 3× of greedy's). For ``recommend``
alone, see ``benchmarks/policies.py``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _args import policy_names, positive_int, sizes


def _scoring_gemm_s(n_users: int, n_items: int, n_active: int, threads: int, factors: int = 32) -> float:
    """Time of the bare float32 scoring GEMM of one round: ``U[active] @ Vᵀ`` (the yardstick of
    issue 7: a round should cost a small multiple). The best of the policies' two user chunkings
    (``chunk_rows``, ~16 MB blocks, and the fused top-K's cache-sized ``score_rows``) is taken,
    so the yardstick is the fastest plain GEMM, not a slow one; BLAS gets the run's ``threads``."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from simulator.scoring import score_rows
    from simulator.users.population import chunk_rows

    rng = np.random.default_rng(0)
    u = rng.standard_normal((n_users, factors), dtype=np.float32)
    vt = np.ascontiguousarray(rng.standard_normal((n_items, factors), dtype=np.float32).T)
    active = np.sort(rng.choice(n_users, n_active, replace=False))
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        for step in (chunk_rows(n_items), score_rows(n_items)):
            for _ in range(2):
                t = time.perf_counter()
                for start in range(0, n_active, step):
                    u[active[start : start + step]] @ vt
                best = min(best, time.perf_counter() - t)
    return best


def _bench_one(n_users: int, n_items: int, policy: str, rounds: int, regret: bool, threads: int) -> dict:
    from threadpoolctl import threadpool_limits

    from simulator.config import parse_config
    from simulator.engine import model as engine
    from simulator.kernels import set_threads

    def config(users: int, n_rounds: int):
        return parse_config(
            {
                "experiment": {"name": "bench", "n_rounds": n_rounds, "seeds": [0]},
                "users": {"n_users": users},
                "catalog": {"n_items": n_items},
                "simulation": {"log_fraction": 0.1},
                "metrics": {"regret": regret, "n_tracked_users": 200},
                "policies": {policy: {}},
            }
        )

    cfg = config(n_users, rounds)
    stage = defaultdict(float)

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            stage[name] += time.perf_counter() - t
            return out

        return wrapper

    set_threads(threads)
    with threadpool_limits(limits=1, user_api="blas"), tempfile.TemporaryDirectory() as tmp:
        # warm-up: a small run of the same policy and catalog compiles (or loads from numba's
        # cache) every kernel, so that the first run after an install times rounds, not the JIT
        engine.RecloopModel(config(min(n_users, 2_000), 2), policy, 0, log_dir=Path(tmp) / "warm").run()
        t0 = time.perf_counter()
        model = engine.RecloopModel(cfg, policy, 0, log_dir=Path(tmp))
        model.policy.fit(model.window)  # the initial fit on the history is setup, not a round
        setup = time.perf_counter() - t0
        model.policy.fit = timed("retrain", model.policy.fit)
        model.policy.recommend = timed("recommend", model.policy.recommend)
        model.policy.update = timed("update", model.policy.update)  # the bandits' online step
        model.population.relevance = timed("relevance", model.population.relevance)
        # frozen dataclass: patch the instance attribute anyway (benchmark instrumentation only)
        object.__setattr__(model.click_model, "simulate", timed("clicks", model.click_model.simulate))
        model.tracker.update = timed("metrics", model.tracker.update)
        model._oracle_utility = timed("regret (oracle slate)", model._oracle_utility)
        model._log = timed("log", model._log)
        model.population.advance = timed("taste drift", model.population.advance)
        t1 = time.perf_counter()
        model.run()
        wall = time.perf_counter() - t1
        mv = model.datacollector.get_model_vars_dataframe()
        user_rounds = float(mv["n_active"].sum())
        gemm = _scoring_gemm_s(n_users, n_items, round(user_rounds / rounds), threads) * rounds
    return {
        "size": f"{n_users}x{n_items}",
        "policy": policy,
        "threads": threads,
        "rounds": rounds,
        "setup_s": round(setup, 2),
        "run_s": round(wall, 2),
        "user_rounds": int(user_rounds),
        "user_rounds_per_s": round(user_rounds / wall),
        "scoring_gemm_s": round(gemm, 2),
        "run_over_gemm": round(wall / gemm, 2),
        "stages_s": {k: round(v, 2) for k, v in sorted(stage.items(), key=lambda kv: -kv[1])},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=sizes, default="10000x5000,100000x10000", help="USERSxITEMS,...")
    ap.add_argument(
        "--policy",
        type=policy_names,
        default="greedy",
        help="a policy, or several: a,b,... (ratios to the first)",
    )
    ap.add_argument(
        "--reps", type=positive_int, default=1, help="runs per policy (best reported), interleaved"
    )
    ap.add_argument("--rounds", type=positive_int, default=20)
    ap.add_argument("--no-regret", action="store_true", help="skip the per-round oracle slate")
    ap.add_argument("--threads", type=positive_int, default=1, help="compiled-kernel and scoring threads")
    ap.add_argument("--one", type=sizes, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        (n, m), policy = args.one[0], args.policy[0]
        print(json.dumps(_bench_one(n, m, policy, args.rounds, not args.no_regret, args.threads)))
        return
    policies = args.policy
    for n_users, n_items in args.sizes:
        size = f"{n_users}x{n_items}"
        best: dict[str, dict] = {}
        for _ in range(args.reps):
            for policy in policies:
                r = _run_one(size, policy, args)
                if policy not in best or r["run_s"] < best[policy]["run_s"]:
                    best[policy] = r
        for policy in policies:
            r = best[policy]
            print(
                f"{r['policy']:>10} {r['size']:>13} ({r['threads']} thr): "
                f"{r['user_rounds_per_s']:>9,} user-rounds/s "
                f"({r['user_rounds']:,} in {r['run_s']} s over {r['rounds']} rounds; "
                f"setup {r['setup_s']} s), peak RSS {r['peak_rss_mb']:,} MB; "
                f"run / bare scoring GEMM ({r['scoring_gemm_s']} s) = {r['run_over_gemm']}x"
            )
            print("    per stage (s): " + ", ".join(f"{k} {v}" for k, v in r["stages_s"].items()))
        if len(policies) > 1:
            base = best[policies[0]]["user_rounds_per_s"]
            ratios = ", ".join(f"{p} {best[p]['user_rounds_per_s'] / base:.2f}x" for p in policies[1:])
            print(f"  whole-round throughput vs {policies[0]} (best of {args.reps}): {ratios}")


def _run_one(size: str, policy: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--one",
        size,
        "--policy",
        policy,
        "--rounds",
        str(args.rounds),
        "--threads",
        str(args.threads),
    ] + (["--no-regret"] if args.no_regret else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"benchmark {size} {policy} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
