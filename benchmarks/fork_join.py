"""What one numba fork-join costs, per threading layer and thread count, and what one
barrier of ``fast/sync.py`` costs.

The column-split recurrences (``fast/recurrences.py``) synchronize their threads once
per time step (RHN: once per micro-step).  Ending a ``prange`` would do; this measures
that cost (a ``prange`` over one tiny task per thread, repeated, median of rounds) and
that of the barrier the recurrences wait on instead (``sync.wait``: one ``prange`` whose
threads meet at 3,000 barriers with no work between them).

    python benchmarks/fork_join.py [--threads 1 2 4 8 16] [--layer omp]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from l0ref.fast import sync  # noqa: E402


@numba.njit(parallel=True)
def _forks(a, reps):
    for _ in range(reps):
        for i in numba.prange(a.shape[0]):
            a[i] += 1.0


def fork_join_us(threads: int, reps: int = 2000, rounds: int = 7) -> float:
    """Median microseconds of one fork-join of ``threads`` threads."""
    numba.set_num_threads(threads)
    a = np.zeros(threads)
    _forks(a, 10)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        _forks(a, reps)
        times.append((time.perf_counter() - t) / reps * 1e6)
    return float(np.median(times))


@numba.njit(parallel=True)
def _barriers(s, parties, reps):
    for p in numba.prange(parties):
        for t in range(reps):
            sync.wait(s, t + 1, parties, p)


def barrier_us(threads: int, reps: int = 3000, rounds: int = 7) -> float:
    """Median microseconds of one barrier of ``threads`` threads (``sync.wait``)."""
    numba.set_num_threads(threads)
    _barriers(sync.new_sync(threads), threads, 10)
    times = []
    for _ in range(rounds):
        s = sync.new_sync(threads)
        t = time.perf_counter()
        _barriers(s, threads, reps)
        times.append((time.perf_counter() - t) / reps * 1e6)
        if sync.aborted(s):
            raise SystemExit(f"a barrier of {threads} threads timed out: the threading layer does not run them together")
    return float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=None)
    ap.add_argument("--layer", default=None, help="NUMBA_THREADING_LAYER to ask for (default numba's choice)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.layer:
        numba.config.THREADING_LAYER = args.layer
    top = numba.config.NUMBA_NUM_THREADS
    threads = args.threads or [t for t in (1, 2, 4, 8, 16, 32) if t <= top]
    rows = [{"threads": t, "fork_join_us": fork_join_us(t)} for t in threads if t <= top]
    layer = numba.threading_layer()
    for r in rows:
        r["layer"] = layer
        if sync.barrier_safe():
            r["barrier_us"] = barrier_us(r["threads"])
        print(f"{layer:9s} {r['threads']:3d} threads: {r['fork_join_us']:7.2f} us per fork-join"
              + (f", {r['barrier_us']:6.2f} us per barrier" if "barrier_us" in r else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
