"""The two ways the threads share a compact model's recurrences, timed against each other.

    python benchmarks/schedules.py [--threads 1 2 4 8 16] [--rounds 20]

For each thread count (numba's threads set in this process; the model laid out for it),
Table 1's compact LSTM, GRU and RHN (batch 10, 30 steps, vocabulary 10,000) run with
``schedule="rows"`` (each thread its rows of the batch, no waiting) and
``schedule="columns"`` (each thread its unit groups, a barrier per step), interleaved;
medians.  What ``fast.driver.recurrence_split``'s "auto" rule (``ROWS_PER_THREAD``)
was chosen from (``docs/wide.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numba
import numpy as np

from l0ref import fast, models
from l0ref.experiments.table1 import BATCH, CONFIGS, STEPS, VOCAB
from l0ref.gates import PARAMS_KEY
from l0ref.models import ModelConfig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, (STEPS, args.batch))
    models_ = []
    for cell, kind, e, hs, opts in CONFIGS:
        if kind == "compact":
            config = ModelConfig(cell, VOCAB, e, hs, opts)
            params = models.init_params(config, rng, dtype=np.float32)
            params.pop(PARAMS_KEY)
            models_.append((config, params))
    rows = []
    print(f"kernels: {fast.simd.describe()}; batch {args.batch}; auto: columns below "
          f"{fast.driver.ROWS_PER_THREAD} rows a thread")
    print(f"{'model':<8} {'threads':>7} {'rows ms':>8} {'columns ms':>10} {'rows/columns':>12}  auto")
    for threads in [t for t in args.threads if t <= numba.config.NUMBA_NUM_THREADS]:
        numba.set_num_threads(threads)
        for config, params in models_:
            prepared = fast.prepare(config, params)
            times = {"rows": [], "columns": []}
            for s in times:
                fast.run(prepared, tokens, schedule=s)
            for _ in range(args.rounds):
                for s in times:
                    t0 = time.perf_counter()
                    fast.run(prepared, tokens, schedule=s)
                    times[s].append(time.perf_counter() - t0)
            med = {s: 1e3 * float(np.median(v)) for s, v in times.items()}
            _, cols = fast.driver.recurrence_split(args.batch, prepared.layers[0]["groups"].shape[0])
            auto = "columns" if cols > 1 else "rows"
            rows.append({"cell": config.cell, "threads": threads, "rows_ms": med["rows"],
                         "columns_ms": med["columns"], "auto": auto})
            print(f"{config.cell:<8} {threads:>7} {med['rows']:8.2f} {med['columns']:10.2f} "
                  f"{med['rows'] / med['columns']:11.2f}x  {auto}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"batch": args.batch, "cpus": os.cpu_count(), "kernels": fast.simd.describe(), "rows": rows},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
