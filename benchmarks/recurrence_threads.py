"""How many threads a compact recurrence should use: the Table 1 compact models with the
products on every thread and the recurrences on fewer.

    python benchmarks/recurrence_threads.py [--share 2 4 8 12 16] [--rounds 30] [--out F.json]

Runs in a child with every thread pool at the machine's cores (numba, OpenMP, OpenBLAS,
MKL; ``l0ref.experiments.table1.THREAD_ENV``) and times ``fast.run`` of the compact LSTM
(251, 296, 247), GRU and RHN (389, depth 10) of ``benchmarks/table1.py`` with the
recurrences split over ``share`` threads (``fast.run(..., threads=share)``: the input
products and the softmax keep all of them), interleaved round by round with the float32
matmul of ``table1.py``.  Prints, per model and share, the median ms and the % of that
run's matmul rate; writes the JSON.  A probe for issue 13 (``docs/wide.md``): whether a
step of a compact layer, too small for 16 cores, runs faster on fewer.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--share", type=int, nargs="+", default=None, help="recurrence threads (default: 1, 2, 4, ... cores)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--cells", default="lstm,gru,rhn")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "recurrence_threads.json")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    if os.environ.get("NUMBA_NUM_THREADS") != str(cores):         # every pool at the cores, in a child
        from l0ref.experiments.table1 import THREAD_ENV
        env = {**os.environ, **THREAD_ENV, **{k: str(cores) for k in
                                              ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                               "MKL_NUM_THREADS")}}
        os.execve(sys.executable, [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)], env)

    from l0ref import fast, models
    from l0ref.experiments.table1 import BATCH, CONFIGS, MATMUL_N, STEPS, VOCAB, macs_per_token
    from l0ref.gates import PARAMS_KEY
    shares = args.share or sorted({min(cores, 2 ** k) for k in range(cores.bit_length() + 1)} | {cores})
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, (STEPS, BATCH))
    runs = []
    for cell, kind, e, hs, opts in CONFIGS:
        if kind != "compact" or cell not in args.cells.split(","):
            continue
        config = models.ModelConfig(cell, VOCAB, e, hs, opts)
        params = models.init_params(config, rng, dtype=np.float32)
        params.pop(PARAMS_KEY)
        prepared = fast.prepare(config, params)
        flops = 2 * macs_per_token(config) * STEPS * BATCH
        for share in shares:
            runs.append(dict(cell=cell, share=share, flops=flops, times=[],
                             fn=lambda p=prepared, s=share: fast.run(p, tokens, threads=s)))
    A = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    for r in runs:
        r["fn"]()
    matmul = []
    for k in range(args.rounds):
        t0 = time.perf_counter()
        A @ A
        matmul.append(time.perf_counter() - t0)
        for r in runs:
            t0 = time.perf_counter()
            r["fn"]()
            r["times"].append(time.perf_counter() - t0)
    rate = 2 * MATMUL_N ** 3 / float(np.median(matmul))
    rows = []
    print(f"{cores} cores, float32 matmul {rate / 1e9:.0f} GFLOP/s (median of {args.rounds})")
    for r in runs:
        ms = 1e3 * float(np.median(r["times"]))
        pct = 100 * r["flops"] / (ms / 1e3) / rate
        rows.append(dict(cell=r["cell"], recurrence_threads=r["share"], median_ms=ms, percent_of_matmul=pct))
        print(f"  {r['cell']:4s} compact, recurrence on {r['share']:2d} of {cores}: {ms:8.3f} ms  {pct:5.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": cores, "matmul_gflops": rate / 1e9, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
