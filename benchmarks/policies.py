"""Throughput of each policy's ``recommend`` (and ``update``) against greedy's, with peak memory.

    python benchmarks/policies.py                                  # 10k x 5k and 100k x 10k
    python benchmarks/policies.py --sizes 10000x5000 --policies greedy,boltzmann --reps 3

For each size a world is drawn once (catalog, population, a few days of organic history); each
policy is reset and fitted on that history (``--iterations`` ALS sweeps: the recommend cost does
not depend on how well the model fits), then serves one round to the active users
(``P(active) = 1 − e^(−activity)``, ~55% of users at the default activity) ``--reps`` times.
The reps interleave the policies (greedy, A, B, …, greedy, A, B, …), so a drift of the shared
machine's speed hits every policy alike. Reported per policy: user-rounds/s of ``recommend``
(best of the reps, after an untimed warm-up that compiles the kernels; the median is in the
JSON), its ratio to greedy's, the time of one ``update`` (bandits learn online) and the peak of memory *allocated during one
recommend* (tracemalloc, a separate call), against the size of one dense float32 users × items
matrix — the chunked policies stay far below it. One BLAS and kernel thread, like the runner's
workers.
Each size runs in its own process.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
import tracemalloc

from _args import policy_names, positive_int, sizes

DEFAULT_POLICIES = (
    "greedy",
    "epsilon_greedy",
    "boltzmann",
    "thompson",
    "ucb",
    "linear_thompson",
    "linucb",
    "ipw",
    "mmr",
    "calibrated",
)
MODEL_BASED = {"greedy", "ipw", "epsilon_greedy", "boltzmann", "mmr", "calibrated"}


def _params(name: str, iterations: int) -> dict:
    fit = {"iterations": iterations}
    if name in ("greedy", "ipw"):
        return fit
    if name in ("epsilon_greedy", "boltzmann", "mmr", "calibrated"):
        return {"base_params": fit}
    return {}


def _bench_size(
    n_users: int, n_items: int, policies: list[str], reps: int, iterations: int, days: int
) -> list[dict]:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from simulator.catalog.catalog import make_catalog
    from simulator.clicks.models import make_click_model
    from simulator.config import CatalogSection, HistorySection, RelevanceSection, UsersSection
    from simulator.kernels import set_threads
    from simulator.logs.window import LogWindow
    from simulator.policies import WorldView, make_policy
    from simulator.users.population import active_users, make_population, organic_history

    out = []
    set_threads(1)  # one thread for the compiled kernels too, like the runner's workers
    with threadpool_limits(1):
        t0 = time.perf_counter()
        cat = make_catalog(CatalogSection(n_items=n_items), np.random.default_rng(0))
        pop = make_population(
            UsersSection(n_users=n_users), RelevanceSection(), cat, np.random.default_rng(1)
        )
        window = LogWindow(30, keep_impressions=True)
        window.add_organic(*organic_history(pop, HistorySection(days=days), np.random.default_rng(2)))
        users = active_users(pop, np.random.default_rng(3))
        world_s = time.perf_counter() - t0
        view = WorldView(n_users, cat, 10, pop)
        clicks = make_click_model("pbm", eta=1.0)
        # every policy reset and fitted first; then the reps interleave the policies, so that
        # the machine's speed drifting during the run shifts every policy alike (fairer ratios)
        fitted = {}
        for name in policies:
            policy = make_policy(name, **_params(name, iterations))
            t = time.perf_counter()
            policy.reset(view, np.random.default_rng(4))
            policy.fit(window)
            fitted[name] = (policy, time.perf_counter() - t)
        # warm-up on a copy: a recommend and an update of a few users compile (or load from
        # numba's cache) the policy's kernels, so that no rep times the JIT
        for policy, _ in fitted.values():
            twin = copy.deepcopy(policy)
            few = users[:64]
            warm = twin.recommend(few, 10, np.random.default_rng(1))
            twin.update(few, warm, clicks.simulate(pop.relevance(few, warm.items), np.random.default_rng(2)))
        times: dict[str, list[float]] = {name: [] for name in policies}
        slates = {}
        for r in range(reps):
            for name, (policy, _) in fitted.items():
                t = time.perf_counter()
                slates[name] = policy.recommend(users, 10, np.random.default_rng(10 + r))
                times[name].append(time.perf_counter() - t)
        for name, (policy, setup) in fitted.items():
            slate = slates[name]
            feedback = clicks.simulate(pop.relevance(users, slate.items), np.random.default_rng(5))
            t = time.perf_counter()
            policy.update(users, slate, feedback)
            update_s = time.perf_counter() - t
            tracemalloc.start()
            policy.recommend(users, 10, np.random.default_rng(99))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            best = min(times[name])
            out.append(
                {
                    "size": f"{n_users}x{n_items}",
                    "policy": name,
                    "active_users": int(users.size),
                    "recommend_s": round(best, 3),
                    "recommend_median_s": round(float(np.median(times[name])), 3),
                    "user_rounds_per_s": round(users.size / best),
                    "update_s": round(update_s, 3),
                    "setup_s": round(setup, 2),
                    "peak_alloc_mb": round(peak / 2**20, 1),
                    "dense_matrix_mb": round(n_users * n_items * 4 / 2**20, 1),
                    "exact": bool(slate.exact),
                    "mc_samples": int(slate.mc_samples),
                    "world_s": round(world_s, 1),
                }
            )
            print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=sizes, default="10000x5000,100000x10000", help="USERSxITEMS,...")
    ap.add_argument("--policies", type=policy_names, default=",".join(DEFAULT_POLICIES))
    ap.add_argument("--reps", type=positive_int, default=5)
    ap.add_argument("--iterations", type=positive_int, default=2, help="ALS sweeps of the fit on the history")
    ap.add_argument("--history-days", type=positive_int, default=7)
    ap.add_argument("--one", type=sizes, help=argparse.SUPPRESS)
    args = ap.parse_args()
    policies = args.policies
    if args.one:
        n, m = args.one[0]
        _bench_size(n, m, policies, args.reps, args.iterations, args.history_days)
        return
    for n_users, n_items in args.sizes:
        size = f"{n_users}x{n_items}"
        cmd = [
            sys.executable,
            __file__,
            "--one",
            size,
            "--policies",
            ",".join(policies),
            "--reps",
            str(args.reps),
            "--iterations",
            str(args.iterations),
            "--history-days",
            str(args.history_days),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"benchmark {size} failed:\n{proc.stderr}")
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        base = next((r for r in rows if r["policy"] == "greedy"), None)
        print(f"\n{size}: {rows[0]['active_users']:,} active users, one slate of 10 each (1 BLAS thread)")
        print(
            f"  {'policy':16s} {'user-rounds/s':>13s} {'vs greedy':>9s} {'recommend':>10s} {'update':>8s} "
            f"{'peak alloc':>11s}  propensities"
        )
        for r in rows:
            ratio = f"{base['recommend_s'] / r['recommend_s']:.2f}x" if base else "-"
            prop = "exact" if r["exact"] else f"MC, {r['mc_samples']} samples"
            print(
                f"  {r['policy']:16s} {r['user_rounds_per_s']:>13,} {ratio:>9s} {r['recommend_s']:>9.3f}s "
                f"{r['update_s']:>7.3f}s {r['peak_alloc_mb']:>8.0f} MB  {prop}"
            )
        print(f"  (a dense float32 users x items matrix would be {rows[0]['dense_matrix_mb']:,.0f} MB)")


if __name__ == "__main__":
    main()
