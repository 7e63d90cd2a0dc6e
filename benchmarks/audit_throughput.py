"""Throughput and peak memory of ``recloop audit`` on a large synthetic log (default 50M rows).

Writes a synthetic impression log in recloop's Parquet schema to a temporary folder (chunked:
one row group per round, never the whole log in memory), then audits it in a **child process**
and reports the audit's rows/s and peak RSS (``resource.getrusage(RUSAGE_CHILDREN)``), so the
generator's memory does not count. The folder is deleted afterwards unless ``--keep``.

The synthetic world: ``--users`` users (default 500,000), ``--items`` items (50,000), slates of
10, ``--rounds`` days (60); each day ~``rows / (10 · rounds)`` slates go to users drawn
uniformly. Items are drawn from a Zipf law whose exponent grows from 0.5 to 1.1 over the days
(exposure concentrating: the audit should raise Gini-rising and coverage-falling alerts); clicks
are Bernoulli(0.3 / (position + 1)). With these defaults the (window, user, item) store exceeds
its budget, so the benchmark also exercises the bounded-memory path (user-sample halving).

    python benchmarks/audit_throughput.py                      # 50M rows, a few minutes
    python benchmarks/audit_throughput.py --rows 5000000       # quick look
    python benchmarks/audit_throughput.py --keep /tmp/auditlog # keep the generated log

Requirement checked: the audit of 50M rows stays within 24 GiB (exit code 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("round", pa.int32()),
        ("time", pa.float64()),
        ("session_id", pa.int64()),
        ("user_id", pa.int32()),
        ("position", pa.int16()),
        ("item_id", pa.int32()),
        ("pscore", pa.float32()),
        ("click", pa.bool_()),
    ]
)
LIMIT_GIB = 24.0


def generate(folder: Path, rows: int, users: int, items: int, rounds: int, k: int, seed: int) -> int:
    """Write the synthetic log (one Parquet file per 10 rounds); return the number of rows."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    slates_per_round = max(1, rows // (k * rounds))
    perm = rng.permutation(items)  # popularity rank -> item id
    ranks = np.arange(1, items + 1, dtype=np.float64)
    written = 0
    writer = None
    for r in range(rounds):
        if r % 10 == 0:
            if writer is not None:
                writer.close()
            writer = pq.ParquetWriter(folder / f"part-{r // 10:05d}.parquet", SCHEMA, compression="snappy")
        s = 0.5 + 0.6 * r / max(rounds - 1, 1)
        p = ranks**-s
        cdf = np.cumsum(p / p.sum())
        n = slates_per_round * k
        user = rng.integers(0, users, slates_per_round).astype(np.int32)
        idx = np.minimum(np.searchsorted(cdf, rng.random(n)), items - 1)
        item = perm[idx].astype(np.int32)
        pos = np.tile(np.arange(k, dtype=np.int16), slates_per_round)
        table = pa.Table.from_arrays(
            [
                pa.array(np.full(n, r, np.int32)),
                pa.array(np.full(n, r + 0.5)),
                pa.array(np.repeat(r * np.int64(users) + user, k)),
                pa.array(np.repeat(user, k)),
                pa.array(pos),
                pa.array(item),
                pa.array(np.minimum((p / p.sum())[idx] * k, 1.0).astype(np.float32)),
                pa.array(rng.random(n) < 0.3 / (pos + 1)),
            ],
            schema=SCHEMA,
        )
        writer.write_table(table, row_group_size=1 << 20)
        written += n
    writer.close()
    cats = pa.table({"item_id": np.arange(items, dtype=np.int64), "genre": np.arange(items) % 20})
    pq.write_table(cats, folder.parent / "items.parquet")
    pop = np.empty(items)
    pop[perm] = ranks**-1.0
    pq.write_table(
        pa.table({"item_id": np.arange(items), "popularity": pop}), folder.parent / "popularity.parquet"
    )
    return written


def audit_child(log: Path, items: int, window: str) -> None:
    """Run in the child: audit, write the report, print a JSON line of results."""
    from simulator.audit import AuditOptions, audit_log, write_audit

    t0 = time.perf_counter()
    res = audit_log(
        log,
        AuditOptions(
            window=window,
            catalog_size=items,
            items=log.parent / "items.parquet",
            popularity=log.parent / "popularity.parquet",
            run_metadata=False,
        ),
    )
    t_audit = time.perf_counter() - t0
    write_audit(res, log.parent / "audit", figures=True)
    t_total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(
        json.dumps(
            {
                "rows": res.scan.n_rows,
                "windows": res.grid.n_windows,
                "seconds_audit": t_audit,
                "seconds_scan": res.seconds["scan"],
                "seconds_accumulate": res.seconds["accumulate"],
                "seconds_with_report": t_total,
                "rows_per_second": res.scan.n_rows / t_audit,
                "peak_rss_gib_self": peak,
                "fired": [a.rule.name for a in res.fired],
                "sampled_users": res.counts.n_sampled_users,
                "distinct_users": res.sample.n_users if res.sample else None,
                "sample_halvings": res.counts.n_drops,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--users", type=int, default=500_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--window", default="7d")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="write the log here and keep it")
    ap.add_argument("--audit-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.audit_only is not None:
        audit_child(args.audit_only, args.items, args.window)
        return

    root = args.keep or Path(tempfile.mkdtemp(prefix="recloop-audit-bench-"))
    log = root / "log"
    try:
        t0 = time.perf_counter()
        rows = generate(log, args.rows, args.users, args.items, args.rounds, 10, args.seed)
        t_gen = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in log.glob("*.parquet")) / 2**30
        print(f"generated {rows:,} rows ({size:.2f} GiB Parquet) in {t_gen:.0f} s -> {log}")
        cmd = [
            sys.executable,
            __file__,
            "--audit-only",
            str(log),
            "--items",
            str(args.items),
            "--window",
            args.window,
        ]
        t1 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t1
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            sys.exit(proc.returncode)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        print(
            f"audit: {out['rows']:,} rows, {out['windows']} windows in {out['seconds_audit']:.1f} s "
            f"({out['rows_per_second']:,.0f} rows/s; validation scan {out['seconds_scan']:.1f} s, "
            f"accumulation {out['seconds_accumulate']:.1f} s); with report and figures "
            f"{out['seconds_with_report']:.1f} s; process wall {wall:.1f} s (imports included)"
        )
        print(
            f"per-user metrics on {out['sampled_users']:,} of ~{out['distinct_users']:,.0f} users "
            f"({out['sample_halvings']} sample halvings); alerts: {', '.join(out['fired']) or 'none'}"
        )
        print(f"peak RSS of the audit process: {peak:.2f} GiB (limit {LIMIT_GIB:g} GiB)")
        if peak > LIMIT_GIB:
            sys.exit(1)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
