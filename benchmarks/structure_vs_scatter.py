"""Structured against scattered sparsity at equal nonzero weights, on Table 1's LSTM.

Wen et al.'s introduction cites scattered (weight-level) sparsity of 70-97% in AlexNet
running only 0.25x-1.38x as fast as dense; structured sparsity leaves smaller dense
matrices.  This benchmark holds the number of nonzero recurrent-layer weights equal and
times, on Table 1's configuration (vocabulary 10,000, batch 10, 30 steps, full sizes
1500/1500/1500, float32, random weights: time does not depend on their values):

- ``neurons``: neuron-level compaction, a dense model of widths ``k = 1500 sqrt(1 - s)``
  (embedding and both layers), in the dense kernel;
- ``neurons+preact``: wider, ``k = 1500 sqrt((1 - s) / (1 - c))``, with a fraction
  ``c = 0.5`` of every layer's gate rows constant (preactivation gates 0: no weights),
  in the dense kernel, which gives constant rows no column;
- ``csr``: the full widths with each weight of W and U kept with probability ``1 - s``,
  in l0ref's CSR kernel (``fast/sparse.py``);
- ``masked_dense``: the same scattered zeros in the dense kernel (they cost what dense costs);
- ``dense``: the uncompressed model in the dense kernel (one row, sparsity 0);
- ``scipy_csr``: the scattered model with ``scipy.sparse`` CSR products in NumPy (what a
  user would reach for), and ``torch_csr``: torch's sparse CSR tensors, where importable.

Every method runs the whole forward (embedding, two layers, dense softmax) and the
recurrent layers alone (``layers_ms``); medians of interleaved rounds.  Writes
``benchmarks/results/structure_vs_scatter.json`` (one row per method and sparsity:
``method, sparsity, nonzero_weights, median_ms, layers_ms``), prints a table with the
ratios of ``neurons`` and ``neurons+preact`` to ``csr``, and draws
``benchmarks/results/structure_vs_scatter.png``.

    python benchmarks/structure_vs_scatter.py [--sparsities 0.7 0.9 0.95 0.97] [--max-seconds 400]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from l0ref import fast, models  # noqa: E402
from l0ref.experiments.pipeline import median_times  # noqa: E402
from l0ref.experiments.table1 import describe_kernels, rerun_with_thread_env, try_torch  # noqa: E402

V, FULL, BATCH, STEPS = 10_000, 1500, 10, 30
CONSTANT = 0.5                     #: the fraction of gate rows constant in neurons+preact
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "structure_vs_scatter.json"


def random_model(rng, e: int, n: int, dtype=np.float32) -> tuple:
    """A compact-model ``(config, params)`` of Table 1's shape with embedding e and two layers of n."""
    config = models.ModelConfig("lstm", V, e, (n, n))
    k = 1 / math.sqrt(max(n, 1))
    layers, m = [], e
    for _ in range(2):
        layers.append({"W": rng.uniform(-k, k, (4 * n, m)).astype(dtype),
                       "U": rng.uniform(-k, k, (4 * n, n)).astype(dtype),
                       "b": rng.uniform(-k, k, 4 * n).astype(dtype)})
        m = n
    params = {"emb": rng.uniform(-0.1, 0.1, (V, e)).astype(dtype), "layers": layers,
              "out_W": rng.uniform(-0.1, 0.1, (V, n)).astype(dtype), "out_b": np.zeros(V, dtype)}
    return config, params


def nonzero_weights(params) -> int:
    return int(sum(np.count_nonzero(p[k]) for p in params["layers"] for k in ("W", "U")))


def models_at(sparsity: float, rng) -> dict:
    """The models of every method at one sparsity (see the module docstring)."""
    out = {}
    k = max(1, round(FULL * math.sqrt(1 - sparsity)))
    out["neurons"] = random_model(rng, k, k)
    kp = max(1, round(FULL * math.sqrt((1 - sparsity) / (1 - CONSTANT))))
    config, params = random_model(rng, kp, kp)
    for p in params["layers"]:
        closed = rng.permutation(4 * kp)[:round(CONSTANT * 4 * kp)]
        p["W"][closed] = 0
        p["U"][closed] = 0
    out["neurons+preact"] = (config, params)
    config, params = random_model(rng, FULL, FULL)
    for p in params["layers"]:
        for key in ("W", "U"):
            p[key] *= rng.uniform(size=p[key].shape) < 1 - sparsity
    out["csr"] = (config, params)
    return out


def kernel_runner(config, params, tokens, sparse: str):
    prepared = fast.prepare(config, params, sparse=sparse)

    def whole():
        fast.run(prepared, tokens)

    x = np.take(prepared.emb, tokens, axis=0)

    def layers():
        fast.run_stack(prepared, x, [None] * len(prepared.layers))
    return whole, layers


def scipy_runner(config, params, tokens):
    """The LSTM forward in NumPy with ``scipy.sparse`` CSR matrix products."""
    import scipy.sparse as sp
    from scipy.special import expit
    mats = [(sp.csr_matrix(p["W"]), sp.csr_matrix(p["U"]), p["b"]) for p in params["layers"]]

    def layers():
        x = params["emb"][tokens]                                      # (T, B, e)
        for W, U, b in mats:
            n = U.shape[1]
            wx = (W @ x.reshape(-1, x.shape[-1]).T).T.reshape(x.shape[0], x.shape[1], -1) + b
            h, c, outs = np.zeros((x.shape[1], n), x.dtype), np.zeros((x.shape[1], n), x.dtype), []
            for t in range(x.shape[0]):
                a = wx[t] + (U @ h.T).T
                i, f, g, o = expit(a[:, :n]), expit(a[:, n:2 * n]), np.tanh(a[:, 2 * n:3 * n]), expit(a[:, 3 * n:])
                c = f * c + i * g
                h = o * np.tanh(c)
                outs.append(h)
            x = np.stack(outs)
        return x

    def whole():
        h = layers()
        logits = h.reshape(-1, h.shape[-1]) @ params["out_W"].T + params["out_b"]
        logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
    return whole, layers


def torch_runner(torch, config, params, tokens):
    """The LSTM forward in PyTorch with sparse CSR weight tensors."""
    import warnings
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    mats = [(torch.from_numpy(p["W"]).to_sparse_csr(), torch.from_numpy(p["U"]).to_sparse_csr(),
             torch.from_numpy(p["b"])) for p in params["layers"]]
    emb, out_W, out_b = (torch.from_numpy(params[k]) for k in ("emb", "out_W", "out_b"))
    tok = torch.from_numpy(tokens)

    def layers():
        with torch.no_grad():
            x = emb[tok]
            for W, U, b in mats:
                n = U.shape[1]
                wx = (W @ x.reshape(-1, x.shape[-1]).T).T.reshape(x.shape[0], x.shape[1], -1) + b
                h = torch.zeros(x.shape[1], n)
                c = torch.zeros(x.shape[1], n)
                outs = []
                for t in range(x.shape[0]):
                    a = wx[t] + (U @ h.T).T
                    i, f, g, o = a.split(n, dim=1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                    outs.append(h)
                x = torch.stack(outs)
            return x

    def whole():
        with torch.no_grad():
            h = layers()
            torch.log_softmax(h.reshape(-1, h.shape[-1]) @ out_W.T + out_b, dim=-1)
    return whole, layers


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.7, 0.9, 0.95, 0.97])
    ap.add_argument("--max-seconds", type=float, default=400.0,
                    help="timing budget, shared out over the sparsities (the run stays under 10 minutes)")
    ap.add_argument("--no-scipy", action="store_true", help="leave scipy.sparse out (the slowest)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    code = rerun_with_thread_env([sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)])
    if code is not None:
        return code
    if any(not 0 < s < 1 for s in args.sparsities):
        ap.error("sparsities must lie strictly between 0 and 1")
    rng = np.random.default_rng(args.seed)
    tokens = rng.integers(0, V, (STEPS, BATCH))
    torch = None if args.no_torch else try_torch()
    t0 = time.perf_counter()
    budget = args.max_seconds / (len(args.sparsities) + 1)
    rows = []

    def measure(sparsity, runs: dict, counts: dict):
        fns = {}
        for name, (whole, layers) in runs.items():
            fns[f"{name}/whole"], fns[f"{name}/layers"] = whole, layers
        for fn in fns.values():                                # compile, warm up
            fn()
        t = median_times(fns, budget=budget, min_rounds=3, max_rounds=50)
        for name in runs:
            rows.append({"method": name, "sparsity": sparsity, "nonzero_weights": counts[name],
                         "median_ms": 1e3 * t[f"{name}/whole"], "layers_ms": 1e3 * t[f"{name}/layers"]})
            r = rows[-1]
            print(f"  {name:15s} sparsity {sparsity:4.2f}: {r['nonzero_weights']:>11,} nonzero, "
                  f"{r['median_ms']:9.2f} ms ({r['layers_ms']:9.2f} ms in the layers)", flush=True)

    print(f"Table 1 LSTM (V {V}, batch {BATCH}, {STEPS} steps, full {FULL}/{FULL}/{FULL}), float32; "
          f"{describe_kernels()}", flush=True)
    config, params = random_model(rng, FULL, FULL)
    measure(0.0, {"dense": kernel_runner(config, params, tokens, "never")}, {"dense": nonzero_weights(params)})
    for s in args.sparsities:
        ms = models_at(s, rng)
        runs = {"neurons": kernel_runner(*ms["neurons"], tokens, "never"),
                "neurons+preact": kernel_runner(*ms["neurons+preact"], tokens, "never"),
                "csr": kernel_runner(*ms["csr"], tokens, "always"),
                "masked_dense": kernel_runner(*ms["csr"], tokens, "never")}
        counts = {"neurons": nonzero_weights(ms["neurons"][1]), "neurons+preact": nonzero_weights(ms["neurons+preact"][1]),
                  "csr": nonzero_weights(ms["csr"][1]), "masked_dense": nonzero_weights(ms["csr"][1])}
        if not args.no_scipy:
            runs["scipy_csr"], counts["scipy_csr"] = scipy_runner(*ms["csr"], tokens), counts["csr"]
        if torch is not None:
            runs["torch_csr"], counts["torch_csr"] = torch_runner(torch, *ms["csr"], tokens), counts["csr"]
        measure(s, runs, counts)
    table = format_table(rows)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "structure_vs_scatter", "config": {"vocab": V, "batch": BATCH, "steps": STEPS, "full": FULL,
                                                           "constant_fraction": CONSTANT, "dtype": "float32"},
           "torch": None if torch is None else torch.__version__, "seconds": time.perf_counter() - t0, "rows": rows}
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out} ({doc['seconds']:.0f} s)")
    plot(rows, args.out.with_suffix(".png"))
    return 0


def format_table(rows) -> str:
    """Median ms per method and sparsity, and the ratios csr / neurons, csr / neurons+preact."""
    by = {(r["method"], r["sparsity"]): r for r in rows}
    sparsities = sorted({r["sparsity"] for r in rows if r["sparsity"] > 0})
    methods = [m for m in ("neurons", "neurons+preact", "csr", "masked_dense", "scipy_csr", "torch_csr")
               if any((m, s) in by for s in sparsities)]
    dense = by.get(("dense", 0.0))
    lines = [f"whole forward, median ms (dense, uncompressed: {dense['median_ms']:.2f} ms, "
             f"{dense['nonzero_weights']:,} weights)" if dense else "whole forward, median ms",
             f"{'sparsity':>9}" + "".join(f"{m:>16}" for m in methods) + f"{'csr/neurons':>13}{'csr/n+preact':>14}"]
    for s in sparsities:
        cells = "".join(f"{by[(m, s)]['median_ms']:16.2f}" if (m, s) in by else f"{'-':>16}" for m in methods)
        csr = by[("csr", s)]["median_ms"]
        lines.append(f"{s:9.2f}{cells}{csr / by[('neurons', s)]['median_ms']:12.2f}x"
                     f"{csr / by[('neurons+preact', s)]['median_ms']:13.2f}x")
    lines.append("nonzero recurrent weights per sparsity: " + "; ".join(
        f"{s:g}: " + ", ".join(f"{m} {by[(m, s)]['nonzero_weights']:,}" for m in ("neurons", "neurons+preact", "csr"))
        for s in sparsities))
    return "\n".join(lines)


def plot(rows, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[plot]')")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sparsities = sorted({r["sparsity"] for r in rows if r["sparsity"] > 0})
    for m in ("neurons", "neurons+preact", "csr", "masked_dense", "scipy_csr", "torch_csr"):
        pts = [(r["sparsity"], r["median_ms"]) for r in rows if r["method"] == m]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=m)
    dense = [r["median_ms"] for r in rows if r["method"] == "dense"]
    if dense:
        ax.axhline(dense[0], color="gray", ls="--", label="dense (uncompressed)")
    ax.set_yscale("log")
    ax.set_xticks(sparsities)
    ax.set_xlabel("sparsity of the recurrent layers (nonzero weights equal across methods)")
    ax.set_ylabel("median ms per batch (10 x 30 tokens)")
    ax.set_title("Table 1 LSTM: structured vs scattered sparsity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
