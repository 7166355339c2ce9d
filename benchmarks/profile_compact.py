"""Where the time of a compact Table 1 forward goes, stage by stage, on this CPU.

    python benchmarks/profile_compact.py [--cell lstm|gru|rhn] [--rounds 60]

Runs ``driver.run`` on the compact model of the paper's Table 1 (vocabulary 10,000,
batch 10, 30 steps, (251, 296, 247); the RHN: depth 10, width 389) with the kernels'
entry points wrapped in timers, so every stage is timed inside the real forward:
each layer (``*_layer``, one compiled call: ``fast/layers.py``), split into its input
product and its recurrence by timing the product alone on the same arguments right
after (split by columns, the recurrence computes the input product itself, and the two
are one stage), and the output layer (``output_log_probs``), split into its product and
its log-softmax the same way.  A 2048 x 2048 float32
numpy product is timed in the same rounds for the machine's matrix-product rate,
under the benchmark's thread settings (``l0ref.experiments.table1.THREAD_ENV``).
Medians over the rounds; "% of matmul" is each stage's FLOPs (2 x multiply-adds) per
second over that rate (the log-softmax and the rest have no multiply-adds).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from l0ref import models as model
from l0ref.fast import driver
from l0ref.fast.recurrences import projects
from l0ref.fast.tile import matmul_bias
from l0ref.gates import PARAMS_KEY
from l0ref.experiments.table1 import BATCH, MATMUL_N, STEPS, CONFIGS, VOCAB, macs_by_stage, rerun_with_thread_env
from l0ref.models import ModelConfig

TIMED = ("lstm_layer", "gru_layer", "rhn_layer", "output_log_probs")
#: The compact configurations of the benchmark (``l0ref.experiments.table1.CONFIGS``), by cell.
CONFIGS = {cell: ModelConfig(cell, VOCAB, e, hs, opts) for cell, kind, e, hs, opts in CONFIGS if kind == "compact"}


def instrument(record: list) -> None:
    """Replace the kernels' entry points by timed wrappers that append (name, seconds, args)."""
    for name in TIMED:
        fn = getattr(driver, name)

        def timed(*args, _fn=fn, _name=name):
            t0 = time.perf_counter()
            out = _fn(*args)
            record.append((_name, time.perf_counter() - t0, args))
            return out
        setattr(driver, name, timed)


def stage_flops(config: ModelConfig) -> list[tuple[str, float]]:
    """(stage name, FLOPs of a batch) in the order ``driver.run`` calls them, from
    ``table1.macs_by_stage``; the log-softmax last, with none."""
    return [(name, 2 * STEPS * BATCH * macs) for name, macs in macs_by_stage(config)] + [("log-softmax", 0)]


def input_product_alone(args) -> float | None:
    """Seconds of a layer's input product alone, on the arguments of its recorded call
    (``layers.py``: x, W, b_in first; the grid and the product's split before
    ``starts``), into a scratch ``wx``; None where the layer's split computes it inside
    the recurrence (:func:`recurrences.projects`)."""
    x, W, b_in = args[:3]
    rows, cols, row_starts, panel_starts = args[-5:-1]
    if projects(rows, cols):
        return None
    wx = np.empty((x.shape[0], W.shape[0] * W.shape[-1]), x.dtype)
    t0 = time.perf_counter()
    matmul_bias(x, W, b_in, wx, row_starts, panel_starts)
    return time.perf_counter() - t0


def recorded_stages(record: list, flops: list[tuple[str, float]]) -> list[tuple[str, float, float]]:
    """(stage name, seconds, FLOPs) of one forward's ``record`` (all but its last entry,
    the output layer), from ``stage_flops``' layer stages: a layer is its input product
    (timed alone, :func:`input_product_alone`) and its recurrence (the rest of the
    layer's call), or one stage where its recurrence computed its input product too."""
    stages, layer_flops = [], iter(flops)
    for _, seconds, args in record[:-1]:
        (inp_name, inp_flops), (rec_name, rec_flops) = next(layer_flops), next(layer_flops)
        t_inp = input_product_alone(args)
        if t_inp is None:
            stages.append((rec_name.replace("recurrence", "input product + recurrence"), seconds,
                           inp_flops + rec_flops))
        else:
            stages += [(inp_name, t_inp, inp_flops), (rec_name, seconds - t_inp, rec_flops)]
    return stages


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cell", choices=sorted(CONFIGS), default="lstm")
    p.add_argument("--rounds", type=int, default=60)
    args = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    returncode = rerun_with_thread_env([sys.executable, __file__, *argv])   # the benchmark's thread settings
    if returncode is not None:
        return returncode
    config = CONFIGS[args.cell]
    rng = np.random.default_rng(0)
    params = model.init_params(config, rng, dtype=np.float32)
    params.pop(PARAMS_KEY)
    prepared = driver.prepare(config, params)
    tokens = rng.integers(0, VOCAB, (STEPS, BATCH))
    A = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    record: list = []
    instrument(record)
    times: dict = {}
    flops = dict(stage_flops(config))
    for r in range(args.rounds + 2):                              # 2 rounds of warm-up
        t0 = time.perf_counter()
        A @ A
        t_matmul = time.perf_counter() - t0
        record.clear()
        t0 = time.perf_counter()
        driver.run(prepared, tokens)
        t_run = time.perf_counter() - t0
        h, P, bias, logp, row_starts, panel_starts = record[-1][2]   # output_log_probs' arguments
        t0 = time.perf_counter()
        matmul_bias(h, P, bias, logp, row_starts, panel_starts)
        t_product = time.perf_counter() - t0
        if r < 2:
            continue
        for name, seconds, stage_flop in recorded_stages(record, stage_flops(config)[:-2]):
            times.setdefault(name, []).append(seconds)
            flops[name] = stage_flop
        for name, t in (("softmax product", t_product), ("log-softmax", record[-1][1] - t_product),
                        ("whole forward", t_run), ("matmul", t_matmul)):
            times.setdefault(name, []).append(t)
    names = [name for name in times if name not in ("whole forward", "matmul")]
    med = {k: float(np.median(v)) for k, v in times.items()}
    rate = 2 * MATMUL_N ** 3 / med["matmul"]
    total_flops = sum(f for _, f in stage_flops(config))
    print(f"compact {config.cell.upper()} {(config.emb_size,) + config.hidden_sizes}, batch {BATCH} x "
          f"{STEPS} steps, V {VOCAB}; {args.rounds} rounds, medians; float32 matmul {rate / 1e9:.1f} GFLOP/s")
    print(f"{'stage':<26} {'ms':>7} {'share':>6} {'GFLOP/s':>8} {'% of matmul':>12}")
    accounted = 0.0
    for name in names:
        t = med[name]
        accounted += t
        g = flops[name] / t / 1e9 if flops[name] else None
        print(f"{name:<26} {1e3 * t:7.2f} {100 * t / med['whole forward']:5.1f}% "
              + (f"{g:8.1f} {100 * g * 1e9 / rate:11.1f}%" if g else f"{'':>8} {'':>12}"))
    rest = med["whole forward"] - accounted
    print(f"{'rest (Python, lookup)':<26} {1e3 * rest:7.2f} {100 * rest / med['whole forward']:5.1f}%")
    g = total_flops / med["whole forward"] / 1e9
    print(f"{'whole forward':<26} {1e3 * med['whole forward']:7.2f} {100:5.1f}% {g:8.1f} {100 * g * 1e9 / rate:11.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
