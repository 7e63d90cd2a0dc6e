"""Speed-up of a sweep on the local process pool with 1, 2 and 4 workers.

    python benchmarks/sweep_speedup.py                       # 8 cells, workers 1, 2, 4
    python benchmarks/sweep_speedup.py --workers 1,2 --cells 4 --users 2000

The sweep is ``--cells`` independent cells (an epsilon grid x seeds of epsilon-greedy over the
ALS model) in a small world; each worker count runs it from scratch into its own folder, with
figures off, and the wall time includes process start-up and the final table merge. Reported:
wall time, cells per minute, speed-up over one worker, parallel efficiency (speed-up / workers)
and whether ``metrics.parquet`` is identical to the one-worker run. Each cell uses one thread
(``RECLOOP_THREADS``), so more workers than cores cannot help.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _config(n_cells: int, n_users: int, rounds: int) -> dict:
    seeds = [0, 1]
    n_eps = max(1, n_cells // len(seeds))
    return {
        "experiment": {"name": "sweep_bench", "n_rounds": rounds, "seeds": seeds},
        "users": {"n_users": n_users},
        "catalog": {"n_items": n_users // 2, "n_artists": max(10, n_users // 10)},
        "simulation": {"log_fraction": 0.0},
        "metrics": {"n_tracked_users": 50, "regret_users": 200},
        "sweep": {"grid": {"policies.eps.epsilon": [round(0.02 * (i + 1), 2) for i in range(n_eps)]}},
        "policies": {"eps": {"type": "epsilon_greedy", "epsilon": 0.1, "base": "greedy"}},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()

    import pandas as pd

    from simulator.config import parse_config
    from simulator.engine.runner import run_experiment

    os.environ.setdefault("RECLOOP_THREADS", "1")
    cfg = parse_config(_config(args.cells, args.users, args.rounds))
    n_cells = len(cfg.sweep.points()) * len(cfg.experiment.seeds)
    print(f"sweep: {n_cells} cells ({args.users} users x {args.users // 2} items, {args.rounds} rounds)")
    print(f"{'workers':>8} {'wall s':>8} {'cells/min':>10} {'speed-up':>9} {'efficiency':>11}  identical")
    base_time, base_table = None, None
    with tempfile.TemporaryDirectory() as tmp:
        for w in (int(x) for x in args.workers.split(",")):
            t = time.perf_counter()
            res = run_experiment(cfg, Path(tmp) / f"w{w}", workers=w, progress=False, figures=False)
            wall = time.perf_counter() - t
            table = pd.read_parquet(res.run_dir / "metrics.parquet")
            table = table.sort_values(list(table.columns[:-1])).reset_index(drop=True)
            if base_time is None:
                base_time, base_table = wall, table
            same = table.equals(base_table)
            speedup = base_time / wall
            rate = n_cells / wall * 60
            print(f"{w:>8} {wall:>8.1f} {rate:>10.1f} {speedup:>8.2f}x {speedup / w:>10.0%}  {same}")


if __name__ == "__main__":
    main()
