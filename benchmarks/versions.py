"""Two versions of l0ref's kernels, timed in turn on one machine: did a change help?

    python benchmarks/versions.py --old DIR [--new DIR] [--cells lstm,rhn] [--threads 16]
                                  [--pairs 3] [--rounds 40] [--schedule auto|rows|columns]
                                  [--out benchmarks/results/versions.json]

``DIR`` is a tree that holds an ``l0ref/`` package, e.g. an older commit's::

    mkdir -p /tmp/old && git archive <commit> l0ref | tar -x -C /tmp/old

(``--new`` defaults to this checkout).  On a shared machine the speed drifts from minute
to minute by more than most changes are worth, so one process per version, or two runs
an hour apart, cannot tell them apart.  Here the two versions run in alternating child
processes (old, new, new, old, ...: ``--pairs`` of each), each timing the compact Table 1
model of every cell in ``--cells`` (``l0ref.experiments.table1.CONFIGS``, batch 10 x 30
steps) ``--rounds`` times, with a 2048 x 2048 float32 matmul before each round for the
rate of that moment; every thread pool at ``--threads`` and the benchmark's thread
settings (``table1.THREAD_ENV``).  Each child imports the ``l0ref`` of its tree (it says
which file) with a numba cache of its own.  Prints each process's medians and, per cell,
the median over each version's processes and their ratio; writes every number to
``--out``.  ``docs/wide.md`` reports versions 6 and 7 from this script (or its probe).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
DEFAULT_OUT = Path("benchmarks/results/versions.json")
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def child(cells: list[str], rounds: int, schedule: str) -> dict:
    """In a child process: the medians of this tree's compact models (ms a batch) and of
    the matmul rate measured between their rounds."""
    import numpy as np

    import l0ref
    from l0ref import models
    from l0ref.experiments.table1 import BATCH, CONFIGS, MATMUL_N, STEPS, VOCAB, macs_per_token
    from l0ref.fast import driver
    from l0ref.gates import PARAMS_KEY

    rng = np.random.default_rng(0)
    runs = {}
    for cell, kind, e, hs, opts in CONFIGS:
        if kind == "compact" and cell in cells:
            config = models.ModelConfig(cell, VOCAB, e, hs, opts)
            params = models.init_params(config, rng, dtype=np.float32)
            params.pop(PARAMS_KEY)
            runs[cell] = (config, driver.prepare(config, params))
    tokens = rng.integers(0, VOCAB, (STEPS, BATCH))
    A = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    times = {cell: [] for cell in runs}
    rates = []
    for r in range(rounds + 2):                                   # 2 rounds of warm-up
        t0 = time.perf_counter()
        A @ A
        rate = 2 * MATMUL_N ** 3 / (time.perf_counter() - t0)
        for cell, (_, prepared) in runs.items():
            t0 = time.perf_counter()
            driver.run(prepared, tokens, schedule=schedule)
            if r >= 2:
                times[cell].append(time.perf_counter() - t0)
        if r >= 2:
            rates.append(rate)
    gflops = float(np.median(rates)) / 1e9
    out = {"l0ref": l0ref.__file__, "matmul_gflops": gflops, "cells": {}}
    for cell, (config, _) in runs.items():
        ms = 1e3 * float(np.median(times[cell]))
        flops = 2 * STEPS * BATCH * macs_per_token(config)
        out["cells"][cell] = {"ms": ms, "percent_of_matmul": 100 * flops / (ms / 1e3) / (gflops * 1e9),
                              "times_ms": [1e3 * t for t in times[cell]]}
    return out


def run_child(tree: Path, label: str, args) -> dict:
    """One child process on ``tree``'s l0ref."""
    env = {**os.environ, "PYTHONPATH": str(tree), **{k: str(args.threads) for k in THREAD_VARS}}
    from l0ref.experiments.table1 import THREAD_ENV
    env.update({k: v for k, v in THREAD_ENV.items() if k not in os.environ})
    env["NUMBA_CACHE_DIR"] = str(Path(os.environ.get("NUMBA_CACHE_DIR", "/tmp/l0ref-versions")) / label)
    done = subprocess.run([sys.executable, str(HERE), "--child", "--cells", ",".join(args.cells),
                           "--rounds", str(args.rounds), "--schedule", args.schedule],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {label} version failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["l0ref"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the {label} child imported {result['l0ref']}, not the l0ref of {tree}")
    return result


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", type=Path, help="a tree holding the old l0ref/")
    p.add_argument("--new", type=Path, default=HERE.parent.parent,
                   help="a tree holding the new l0ref/ (default: this one)")
    p.add_argument("--cells", default="lstm,rhn", help="comma-separated compact models (lstm, gru, rhn)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="every thread pool's size (default: the cores)")
    p.add_argument("--pairs", type=int, default=3, help="processes of each version, in turn")
    p.add_argument("--rounds", type=int, default=40, help="timed forwards of each model in a process")
    p.add_argument("--schedule", choices=("auto", "rows", "columns"), default="auto",
                   help="how the recurrences split (driver.SCHEDULES; columns forces a column split)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    problems = []
    if not args.child:
        for name in ("old", "new"):
            tree = getattr(args, name)
            if tree is None or not (tree / "l0ref" / "__init__.py").is_file():
                problems.append(f"--{name} must be a folder holding l0ref/__init__.py, got {tree}")
    if not args.cells or any(c not in ("lstm", "gru", "rhn") for c in args.cells):
        problems.append(f"--cells must name some of lstm, gru, rhn, got {','.join(args.cells)!r}")
    for name in ("threads", "pairs", "rounds"):
        if getattr(args, name) is None or getattr(args, name) < 1:
            problems.append(f"--{name} must be >= 1, got {getattr(args, name)}")
    if problems:
        p.error("; ".join(problems))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.cells, args.rounds, args.schedule)))
        return 0
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: give another --out (no run writes over another's results)")
    processes = []
    for pair in range(args.pairs):
        order = ("old", "new") if pair % 2 == 0 else ("new", "old")
        for label in order:
            result = run_child(getattr(args, label), label, args)
            result["version"] = label
            processes.append(result)
            cells = ", ".join(f"{c} {v['ms']:.2f} ms ({v['percent_of_matmul']:.1f}%)"
                              for c, v in result["cells"].items())
            print(f"{label}: {cells}; matmul {result['matmul_gflops']:.0f} GFLOP/s", flush=True)
    summary = {}
    for cell in args.cells:
        old = median([p["cells"][cell]["ms"] for p in processes if p["version"] == "old"])
        new = median([p["cells"][cell]["ms"] for p in processes if p["version"] == "new"])
        summary[cell] = {"old_ms": old, "new_ms": new, "new_over_old": new / old}
        print(f"{cell}: old {old:.2f} ms, new {new:.2f} ms, new / old {new / old:.3f} "
              f"(medians of {args.pairs} processes each, {args.threads} threads)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"old": str(args.old), "new": str(args.new), "threads": args.threads,
                                    "rounds": args.rounds, "schedule": args.schedule, "summary": summary,
                                    "processes": processes}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
