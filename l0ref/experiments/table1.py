"""Table 1 of Wen et al. on this CPU: inference time of vanilla and compact models.

The paper (section 4.1, Table 1) times a two-layer LSTM language model, vocabulary
10,000, batch 10, 30 unrolled steps, full softmax: vanilla (embedding, h1, h2) =
(1500, 1500, 1500) against the learned compact (251, 296, 247), and reports 19.39x.
Here the same sizes run with random float32 weights (time does not depend on the
values) through:

- ``l0ref numba``: :func:`l0ref.fast.run` on the model laid out once by
  :func:`l0ref.fast.prepare`, the dense kernels for compact models;
- ``numpy reference``: :func:`l0ref.models.log_probs`, the plain NumPy forward;
- ``pytorch``: ``nn.Embedding`` -> one ``nn.LSTM`` / ``nn.GRU`` per layer (the layers
  differ in size) -> ``nn.Linear`` -> ``log_softmax`` under ``torch.inference_mode``,
  where torch is importable (it is not a dependency).  PyTorch has no RHN.

The GRU runs at the LSTM's sizes (not in the paper).  The RHN is Table 3's:
depth 10, width 830 (Zilly et al.'s "variational RHN + WT") against 389; one
layer.  Zilly et al. tie the input embedding to the softmax weights (WT), which
forces embedding size = width: 830 and 389.  The parameter counts confirm it:
10000*830 + 2*830*830 + 10*2*830*830 = 23.5M and, at width 389, 7.2M, Table 3's
numbers.  l0ref's model keeps separate input and output matrices; tying changes
no multiply-add, so the timing is the same.

Multiply-adds per token (MACs): every gate block of the input and recurrent
products and the softmax product; the embedding lookup, biases and elementwise
gate arithmetic count 0 (``cells.layer_macs``: LSTM layer 4n(m + n), GRU 3n(m + n),
RHN 2n m + depth 2n n), softmax V n_L.  Every configuration and a large float32 numpy
matrix product (2048 x 2048, 2 * 2048**3 flops) are timed in the same run,
interleaved round by round, so that the ratios (speedups, fraction of the matmul
rate, FLOPs = 2 * MACs) compare runs under the same machine load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .. import fast, models
from ..cells import get_cell, layer_macs
from ..gates import PARAMS_KEY
from ..models import ModelConfig

VOCAB = 10_000
BATCH = 10
STEPS = 30
MATMUL_N = 2048
PAPER_SPEEDUP = 19.39  #: Table 1, compact vs vanilla LSTM, TensorFlow + MKL on the authors' CPU
DEFAULT_OUT = Path("benchmarks/results/table1.json")

#: Thread-pool settings the benchmark runs under (set before numpy loads OpenBLAS, so
#: :func:`main` re-runs itself in a child process when they are missing).  The timed
#: methods alternate between three pools of threads: numba's OpenMP threads (the l0ref
#: kernels), numpy's OpenBLAS threads (the NumPy reference and the matmul rate) and
#: PyTorch's own OpenMP threads.  By default an idle OpenBLAS worker busy-waits for
#: about 2**28 cycles (~0.1 s) and an idle OpenMP worker spins too, so the pool that
#: ran last takes the cores from the one that runs next.  Measured here (earlier
#: kernels, which called OpenBLAS themselves): the compact LSTM forward took 35 ms with
#: the defaults and 13 ms with a short OpenBLAS wait; ``OMP_WAIT_POLICY=passive`` slowed
#: PyTorch's per-step OpenMP regions (12 -> 17.6 ms), a short GOMP spin costs PyTorch
#: about 5% and numba nothing measurable.  They change no result, only how idle
#: threads wait.
THREAD_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4", "GOMP_SPINCOUNT": "1000"}

#: (cell, kind (vanilla or compact), embedding size, hidden sizes, cell options)
CONFIGS = [
    ("lstm", "vanilla", 1500, (1500, 1500), {}),
    ("lstm", "compact", 251, (296, 247), {}),
    ("gru", "vanilla", 1500, (1500, 1500), {}),
    ("gru", "compact", 251, (296, 247), {}),
    ("rhn", "vanilla", 830, (830,), {"depth": 10}),
    ("rhn", "compact", 389, (389,), {"depth": 10}),
]


def rerun_with_thread_env(command: list[str]) -> int | None:
    """Run ``command`` in a child process with the settings of ``THREAD_ENV`` that this
    process lacks (they must be set before numpy loads OpenBLAS) and return its exit
    code; None when nothing is missing (go on in this process)."""
    missing = {k: v for k, v in THREAD_ENV.items() if k not in os.environ}
    if not missing:
        return None
    import subprocess
    return subprocess.run(command, env={**os.environ, **missing}).returncode


def macs_by_stage(config: ModelConfig) -> list[tuple[str, int]]:
    """Multiply-adds per token of each stage of the forward, in the order it runs them:
    each layer's input product and recurrent product, then the softmax product (see the
    module docstring)."""
    cell = get_cell(config.cell)
    stages = []
    for l, (m, n) in enumerate(config.layer_sizes, 1):
        inp, rec = layer_macs(cell, m, n, config.cell_options)
        stages.append((f"layer {l} input product", inp))
        stages.append((f"layer {l} recurrence", rec))
    stages.append(("softmax product", config.vocab_size * config.hidden_sizes[-1]))
    return stages


def macs_per_token(config: ModelConfig) -> int:
    """Multiply-adds per token of the forward (see the module docstring)."""
    return sum(macs for _, macs in macs_by_stage(config))


def sizes_label(config: ModelConfig) -> str:
    sizes = (config.emb_size,) + config.hidden_sizes
    depth = f", depth {config.cell_options['depth']}" if "depth" in config.cell_options else ""
    return f"({', '.join(map(str, sizes))}){depth}"


def try_torch():
    """The torch module, or None when it cannot be imported."""
    try:
        import torch
    except Exception:  # noqa: BLE001 - any import failure means "no torch"
        return None
    return torch


def torch_layers(torch, config: ModelConfig, params: dict):
    """PyTorch twins of the model's layers with l0ref's weights: (``nn.Embedding``, one
    ``nn.LSTM`` / ``nn.GRU`` per layer, ``nn.Linear``)."""
    nn = torch.nn
    emb = nn.Embedding(config.vocab_size, config.emb_size)
    emb.weight.data = torch.from_numpy(params["emb"])
    rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[config.cell]
    layers, m = [], config.emb_size
    for p, n in zip(params["layers"], config.hidden_sizes):
        rnn = rnn_cls(m, n)
        rnn.weight_ih_l0.data = torch.from_numpy(p["W"])
        rnn.weight_hh_l0.data = torch.from_numpy(p["U"])
        if config.cell == "lstm":
            rnn.bias_ih_l0.data = torch.from_numpy(p["b"])
            rnn.bias_hh_l0.data = torch.zeros_like(rnn.bias_hh_l0)
        else:
            rnn.bias_ih_l0.data = torch.from_numpy(p["b_i"])
            rnn.bias_hh_l0.data = torch.from_numpy(p["b_h"])
        layers.append(rnn)
        m = n
    out = nn.Linear(m, config.vocab_size)
    out.weight.data = torch.from_numpy(params["out_W"])
    out.bias.data = torch.from_numpy(params["out_b"])
    return emb, layers, out


def torch_model(torch, config: ModelConfig, params: dict):
    """A PyTorch twin of the compact/vanilla model with l0ref's weights; a function tokens -> logp."""
    emb, layers, out = torch_layers(torch, config, params)

    def run(tokens_t):
        with torch.inference_mode():
            x = emb(tokens_t)
            for rnn in layers:
                x, _ = rnn(x)
            return torch.log_softmax(out(x), dim=-1)
    return run


def _stats(times_s: list[float]) -> dict:
    t = np.asarray(times_s) * 1e3
    q25, med, q75 = np.percentile(t, [25, 50, 75])
    return {"n": int(t.size), "median_ms": float(med), "q25_ms": float(q25), "q75_ms": float(q75),
            "min_ms": float(t.min()), "max_ms": float(t.max())}


def kernel_shape() -> dict:
    """What the kernels were compiled for: vector width and product tile (``fast/simd.py``, ``fast/tile.py``)."""
    return {"vector_bytes": fast.simd.VECTOR_BYTES, "tile_rows": fast.tile.MAX_ROWS,
            "tile_columns": fast.tile.panel_width(np.float32), "describe": describe_kernels()}


def describe_kernels() -> str:
    """E.g. ``64-byte vectors (AVX-512): 16 float32, 8 float64; product tile 12 rows x 32 float32 columns``."""
    return (f"{fast.simd.describe()}; product tile {fast.tile.MAX_ROWS} rows x "
            f"{fast.tile.panel_width(np.float32)} float32 columns")


def _machine() -> dict:
    import numba
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__,
            "numba_threads": numba.get_num_threads(),
            "numba_threading_layer": numba.threading_layer(),
            "kernels": kernel_shape(),
            "thread_env": {k: os.environ.get(k) for k in THREAD_ENV}}
    return info


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="l0ref bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    p.add_argument("--rounds", type=int, default=None,
                   help="timed rounds (default 25, --quick 3); each round times every configuration")
    p.add_argument("--compact-repeats", type=int, default=4,
                   help="timed runs of each compact configuration per round (they are short)")
    p.add_argument("--max-seconds", type=float, default=150.0,
                   help="stop adding rounds after this much timing (the run must stay under 5 minutes)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if importable")
    p.add_argument("--no-numpy", action="store_true", help="leave the NumPy reference out")
    p.add_argument("--cells", default="lstm,gru,rhn", help="comma-separated cells to time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-env", action="store_true",
                   help="run in this process as it is, without the thread settings of THREAD_ENV")
    args = p.parse_args(argv)
    known = sorted({cell for cell, *_ in CONFIGS})
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    problems = []
    if not cells or any(c not in known for c in cells):
        problems.append(f"--cells must name some of {', '.join(known)} (comma-separated), got {args.cells!r}")
    if args.rounds is not None and args.rounds < 1:
        problems.append(f"--rounds must be >= 1, got {args.rounds}")
    if args.compact_repeats < 1:
        problems.append(f"--compact-repeats must be >= 1, got {args.compact_repeats}")
    if not (np.isfinite(args.max_seconds) and args.max_seconds > 0):
        problems.append(f"--max-seconds must be > 0, got {args.max_seconds}")
    if problems:
        p.error("; ".join(problems))
    return args


def build_runs(args, rng):
    """The timed callables: a list of dicts (method, cell, kind, sizes, config, fn)."""
    torch = None if args.no_torch else try_torch()
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    tokens = rng.integers(0, VOCAB, (STEPS, BATCH))
    runs = []
    for cell, kind, e, hs, opts in CONFIGS:
        if cell not in cells:
            continue
        config = ModelConfig(cell, VOCAB, e, hs, opts)
        params = models.init_params(config, rng, dtype=np.float32)
        params.pop(PARAMS_KEY)            # a model without gates: what the kernels run
        base = dict(cell=cell, kind=kind, config=config, sizes=sizes_label(config),
                    macs_per_token=macs_per_token(config))
        prepared = fast.prepare(config, params)      # weights laid out once, as on loading
        runs.append(dict(base, method="l0ref numba",
                         fn=lambda k=prepared: fast.run(k, tokens)))
        if not args.no_numpy:
            runs.append(dict(base, method="numpy reference",
                             fn=lambda c=config, p=params: models.log_probs(c, p, tokens)))
        if torch is not None and cell in ("lstm", "gru"):
            run_t = torch_model(torch, config, params)
            tokens_t = torch.from_numpy(tokens)
            mine = fast.log_probs(config, params, tokens)[0]
            theirs = run_t(tokens_t).numpy()
            runs.append(dict(base, method="pytorch", fn=lambda r=run_t: r(tokens_t),
                             max_abs_diff_vs_kernel=float(np.abs(mine - theirs).max())))
    return runs, torch


def time_all(runs, args, log=print):
    """Warm up, then time every run round by round (interleaved), with the matmul each round."""
    rng = np.random.default_rng(args.seed + 1)
    A = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    B = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    matmul = lambda: A @ B  # noqa: E731
    for r in runs:                                   # warm-up: compile, fault in memory
        r["fn"]()
        r["fn"]()
        r["times"] = []
    matmul()
    matmul_times = []
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 25)
    start = time.perf_counter()
    for k in range(rounds):
        t0 = time.perf_counter()
        matmul()
        matmul_times.append(time.perf_counter() - t0)
        for r in runs:
            for _ in range(args.compact_repeats if r["kind"] == "compact" else 1):
                t0 = time.perf_counter()
                r["fn"]()
                r["times"].append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if log:
            log(f"  round {k + 1}/{rounds} done, {elapsed:.0f} s", file=sys.stderr)
        if elapsed > args.max_seconds and k + 1 < rounds:
            if log:
                log(f"  stopping after {k + 1} rounds (--max-seconds {args.max_seconds:g})", file=sys.stderr)
            break
    return matmul_times


def summarize(runs, matmul_times) -> tuple[dict, list[dict]]:
    mm = _stats(matmul_times)
    mm_gflops = 2 * MATMUL_N ** 3 / (mm["median_ms"] * 1e-3) / 1e9
    rows = []
    by_key = {(r["method"], r["cell"], r["kind"]): r for r in runs}
    for r in runs:
        st = _stats(r["times"])
        tokens = STEPS * BATCH
        gflops = 2 * r["macs_per_token"] * tokens / (st["median_ms"] * 1e-3) / 1e9
        vanilla = by_key.get((r["method"], r["cell"], "vanilla"))
        row = {"method": r["method"], "cell": r["cell"], "kind": r["kind"], "sizes": r["sizes"],
               "config": r["config"].to_dict(), "macs_per_token": r["macs_per_token"],
               "mmacs_per_token": r["macs_per_token"] / 1e6, **st,
               "gflops": gflops, "fraction_of_matmul": gflops / mm_gflops}
        if vanilla is not None:
            v = _stats(vanilla["times"])
            row["speedup"] = v["median_ms"] / st["median_ms"]
            row["mac_reduction"] = vanilla["macs_per_token"] / r["macs_per_token"]
        if "max_abs_diff_vs_kernel" in r:
            row["max_abs_diff_vs_kernel"] = r["max_abs_diff_vs_kernel"]
        rows.append(row)
    matmul = {**mm, "size": MATMUL_N, "gflops": mm_gflops,
              "gflops_best": 2 * MATMUL_N ** 3 / (mm["min_ms"] * 1e-3) / 1e9}
    return matmul, rows


def targets(rows) -> list[dict]:
    """The issue's targets, checked on this run's medians."""
    get = {(r["method"], r["cell"], r["kind"]): r for r in rows}
    out = []
    lc = get.get(("l0ref numba", "lstm", "compact"))
    if lc:
        out.append({"target": f"LSTM compact vs vanilla speedup >= {PAPER_SPEEDUP}x (paper)",
                    "value": lc["speedup"], "met": lc["speedup"] >= PAPER_SPEEDUP})
        out.append({"target": "LSTM compact >= 80% of the float32 matmul rate",
                    "value": lc["fraction_of_matmul"], "met": lc["fraction_of_matmul"] >= 0.8})
    for cell in ("lstm", "gru"):
        k = get.get(("l0ref numba", cell, "compact"))
        ref = get.get(("numpy reference", cell, "compact"))
        pt = get.get(("pytorch", cell, "compact"))
        if k and ref:
            ratio = ref["median_ms"] / k["median_ms"]
            out.append({"target": f"{cell.upper()} compact: numba >= 3x faster than the NumPy reference",
                        "value": ratio, "met": ratio >= 3})
        if k and pt:
            ratio = pt["median_ms"] / k["median_ms"]
            out.append({"target": f"{cell.upper()} compact: numba no slower than PyTorch CPU",
                        "value": ratio, "met": ratio >= 1})
    return out


def format_table(matmul, rows, targets_) -> str:
    head = (f"{'method':<16} {'cell':<5} {'sizes':<28} {'MACs/token':>11} "
            f"{'time ms: median [IQR] (min-max)':>36} {'speedup':>8} {'MAC red.':>8} {'% matmul':>8}")
    lines = [f"kernels: {describe_kernels()}",
             f"float32 matmul {matmul['size']}x{matmul['size']}: {matmul['gflops']:.1f} GFLOP/s median "
             f"({matmul['median_ms']:.1f} ms, best {matmul['gflops_best']:.1f} GFLOP/s)", "", head,
             "-" * len(head)]
    for r in rows:
        t = (f"{r['median_ms']:.2f} [{r['q25_ms']:.2f}-{r['q75_ms']:.2f}] "
             f"({r['min_ms']:.2f}-{r['max_ms']:.2f})")
        sp = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        red = f"{r['mac_reduction']:.2f}x" if "mac_reduction" in r else ""
        lines.append(f"{r['method']:<16} {r['cell']:<5} {r['sizes']:<28} "
                     f"{r['mmacs_per_token']:>10.2f}M {t:>36} {sp:>8} {red:>8} "
                     f"{100 * r['fraction_of_matmul']:>7.1f}%")
    lines.append("")
    lines.append("speedup: vanilla median / this median, same method; MAC red.: vanilla MACs / these MACs;")
    lines.append("% matmul: 2 * MACs * 300 tokens / median time, over the matmul rate above.")
    if not any(r["method"] == "pytorch" for r in rows):
        lines.append("pytorch: not importable here (not a dependency), left out.")
    lines.append("pytorch has no RHN cell: no pytorch rows for it.")
    lines.append("")
    for t in targets_:
        lines.append(f"[{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['value']:.3g}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the benchmark, print the table, write the JSON; returns 0."""
    args = parse_args(argv)
    if not args.keep_env:
        argv = sys.argv[1:] if argv is None else list(argv)
        code = "import sys; from l0ref.experiments.table1 import main; sys.exit(main(sys.argv[1:]))"
        returncode = rerun_with_thread_env([sys.executable, "-c", code, *argv])
        if returncode is not None:
            return returncode
    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()
    runs, torch = build_runs(args, rng)
    matmul_times = time_all(runs, args)
    matmul, rows = summarize(runs, matmul_times)
    targets_ = targets(rows)
    print(format_table(matmul, rows, targets_))
    machine = _machine()
    if torch is not None:
        machine["torch"] = torch.__version__
        machine["torch_threads"] = torch.get_num_threads()
    result = {"setup": {"vocab": VOCAB, "batch": BATCH, "steps": STEPS, "dtype": "float32",
                        "softmax": "full", "weights": "random", "paper_speedup": PAPER_SPEEDUP,
                        "rounds": len(matmul_times), "compact_repeats_per_round": args.compact_repeats},
              "machine": machine, "matmul": matmul, "rows": rows, "targets": targets_,
              "wall_seconds": time.perf_counter() - t_start}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out} ({result['wall_seconds']:.0f} s)")
    return 0


__all__ = ["main", "macs_per_token", "macs_by_stage", "CONFIGS", "torch_model", "targets", "rerun_with_thread_env", "THREAD_ENV"]
