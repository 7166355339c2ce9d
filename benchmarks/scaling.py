"""Table 1's models against the thread count: l0ref's kernels and PyTorch, in one run.

    python benchmarks/scaling.py [--threads 1 2 4 8 16] [--rounds 6] [--out benchmarks/results/scaling.json]

For each thread count a child process runs ``l0ref bench`` (``l0ref/experiments/
table1.py``: the LSTM, GRU and RHN configurations of Table 1 and 3, vanilla and compact,
l0ref's kernels and PyTorch interleaved round by round, with the float32 matmul rate of
that round) with ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` set to it.  Thread counts above the machine's cores are left out.
Writes one JSON (every row of every child, with its thread count), prints a table
(median ms, l0ref / torch, % of the matmul rate) and draws ``scaling.png`` beside the
JSON: time and % of the matmul rate against threads, one line per model and method.
The numbers of issue 13 (``docs/wide.md``) come from this script on the 16-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_OUT = Path("benchmarks/results/scaling.json")
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_one(threads: int, args, scratch: Path) -> dict:
    """``l0ref bench`` in a child process with every thread pool at ``threads``."""
    out = scratch / f"threads_{threads}.json"
    env = {**os.environ, **{k: str(threads) for k in THREAD_VARS}}
    code = "import sys; from l0ref.experiments.table1 import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", code, "--no-numpy", "--cells", args.cells, "--rounds", str(args.rounds),
               "--max-seconds", str(args.max_seconds), "--out", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"l0ref bench with {threads} threads failed:\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result["threads"] = threads
    print(f"{threads:3d} threads: {time.perf_counter() - t0:5.0f} s, matmul {result['matmul']['gflops']:.0f} GFLOP/s",
          file=sys.stderr)
    return result


def table(results: list[dict]) -> str:
    """Median ms per model and thread count, l0ref against torch, and % of the matmul rate."""
    lines = [f"{'model':<22} {'threads':>7} {'l0ref ms':>9} {'torch ms':>9} {'torch/l0ref':>11} "
             f"{'l0ref %mm':>9} {'torch %mm':>9} {'matmul GF/s':>11}"]
    keys = []
    for res in results:
        for r in res["rows"]:
            if (r["cell"], r["kind"]) not in keys:
                keys.append((r["cell"], r["kind"]))
    for cell, kind in keys:
        for res in results:
            rows = {r["method"]: r for r in res["rows"] if (r["cell"], r["kind"]) == (cell, kind)}
            mine, theirs = rows.get("l0ref numba"), rows.get("pytorch")
            if mine is None:
                continue
            name = f"{cell.upper()} {kind} {mine['sizes']}"
            t_ms = f"{theirs['median_ms']:9.2f}" if theirs else f"{'':>9}"
            ratio = f"{theirs['median_ms'] / mine['median_ms']:10.2f}x" if theirs else f"{'':>11}"
            t_mm = f"{100 * theirs['fraction_of_matmul']:8.1f}%" if theirs else f"{'':>9}"
            lines.append(f"{name[:22]:<22} {res['threads']:>7} {mine['median_ms']:9.2f} {t_ms} {ratio} "
                         f"{100 * mine['fraction_of_matmul']:8.1f}% {t_mm} {res['matmul']['gflops']:11.0f}")
        lines.append("")
    lines.append("torch/l0ref > 1: l0ref is faster.  %mm: 2 MACs x 300 tokens / median time, over the float32 "
                 "matmul rate of the same run.")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> Path:
    from l0ref.report.figure import figure, save
    fig = figure(12, 4.8)
    ax_t, ax_f = fig.subplots(1, 2)
    keys = sorted({(r["cell"], r["kind"], r["method"]) for res in results for r in res["rows"]})
    colors = {("lstm", "vanilla"): "tab:blue", ("lstm", "compact"): "tab:cyan", ("gru", "vanilla"): "tab:red",
              ("gru", "compact"): "tab:orange", ("rhn", "vanilla"): "tab:green", ("rhn", "compact"): "tab:olive"}
    for cell, kind, method in keys:
        xs, ts, fs = [], [], []
        for res in results:
            for r in res["rows"]:
                if (r["cell"], r["kind"], r["method"]) == (cell, kind, method):
                    xs.append(res["threads"])
                    ts.append(r["median_ms"])
                    fs.append(100 * r["fraction_of_matmul"])
        style = "-o" if method == "l0ref numba" else "--s"
        label = f"{cell.upper()} {kind}, {'l0ref' if method == 'l0ref numba' else 'torch'}"
        ax_t.plot(xs, ts, style, color=colors.get((cell, kind), "k"), label=label, ms=4)
        ax_f.plot(xs, fs, style, color=colors.get((cell, kind), "k"), label=label, ms=4)
    for ax in (ax_t, ax_f):
        ax.set_xscale("log", base=2)
        ax.set_xticks([res["threads"] for res in results], [str(res["threads"]) for res in results])
        ax.set_xlabel("threads")
        ax.grid(alpha=0.3)
    ax_t.set_yscale("log")
    ax_t.set_ylabel("median ms per batch (10 x 30 tokens)")
    ax_f.set_ylabel("% of the float32 matmul rate (same run)")
    ax_f.legend(fontsize=7, ncol=2)
    cpu = results[0]["machine"].get("cpu", "")
    fig.suptitle(f"Table 1 models against threads: l0ref (solid) and PyTorch (dashed); {cpu}", fontsize=10)
    return save(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--max-seconds", type=float, default=60.0, help="per thread count")
    ap.add_argument("--cells", default="lstm,gru,rhn")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    threads = [t for t in args.threads if 1 <= t <= cores]
    if not threads:
        ap.error(f"no thread count of {args.threads} fits this machine's {cores} cores")
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    with tempfile.TemporaryDirectory() as scratch:
        results = [run_one(t, args, Path(scratch)) for t in threads]
    text = table(results)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"threads": threads, "runs": results, "table": text.splitlines()}
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    figure = plot(results, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
