"""Which of ``fast.classify``'s two layouts, rows or lanes, runs a compact LSTM classifier
faster, by hidden size, share of constant gates and batch: the measurements behind its
"auto" rule (``fast/documents.py``).

Models: one LSTM layer of n hidden units (n = 8 ... 128) on an input of m = min(2n, 128)
(the N models of ``gate_structure.py`` have m / n = 1.4-2.4), random weights (time does not
depend on their values), and a share c of the input, forget and output gate rows of the
units made constant (their rows all zero: ``driver.live_rows``), the candidate never
(as in every trained run).  Batches: the fixed timing batch of 32 test documents
(``experiments.classify.timing_batch``) of Rotten Tomatoes and of Reuters R8 where
``--data`` has them (``../shared/data/classification``), else two drawn batches of the
same length ranges (6-36 tokens and 14-200).  For each, the lanes that its steps fill,
whole vectors, over its tokens (``documents._lanes_waste``: 1 is no padding).

One numba thread; each pair (rows, lanes) timed interleaved, medians.  Writes
``benchmarks/results/layouts.json`` (a row per batch, n, c: ``rows_ms``, ``lanes_ms``,
``auto``: the layout "auto" takes) and ``layouts.png`` (lanes / rows against n).

    python benchmarks/layouts.py [--sizes 8 16 32 64 128] [--constant 0 0.25 0.5] [--budget 1.5]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from l0ref import data as data_mod  # noqa: E402
from l0ref import fast, models  # noqa: E402
from l0ref.experiments.classify import timing_batch  # noqa: E402
from l0ref.experiments.pipeline import median_times  # noqa: E402
from l0ref.fast import documents  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "classification"
OUT = ROOT / "benchmarks" / "results" / "layouts.json"
VOCAB, CLASSES = 2000, 2
#: The shared data's folders, and the length range of a drawn batch where they are absent.
BATCHES = {"rt": ("rt-sentiment", (6, 36)), "r8": ("reuters-r8", (14, 200))}


def batch(name: str, data: Path, rng) -> tuple[np.ndarray, np.ndarray, str]:
    """(tokens (T, B), lengths (B,), where from) of one timing batch."""
    folder, (lo, hi) = BATCHES[name]
    d = data / folder
    if (d / "train.tsv").is_file() and (d / "test.tsv").is_file():
        corpus = data_mod.load_labelled(d / "train.tsv", None, d / "test.tsv", max_vocab=VOCAB - 1, max_len=200)
        tokens, lengths = timing_batch(corpus)
        return tokens, lengths, f"{d / 'test.tsv'}: experiments.classify.timing_batch"
    lengths = rng.integers(lo, hi + 1, 32)
    return rng.integers(0, VOCAB, (int(lengths.max()), 32)), lengths, f"drawn: 32 lengths in [{lo}, {hi}]"


def random_classifier(rng, n: int, m: int, constant: float, dtype=np.float32) -> tuple:
    """A compact LSTM classifier ``(config, params)``: input m, hidden n, a share
    ``constant`` of the i, f, o gate rows all zero (constant gates)."""
    config = models.ModelConfig("lstm", VOCAB, m, (n,), {}, ("neurons",), CLASSES)
    k = 1 / math.sqrt(n)
    W = rng.uniform(-k, k, (4 * n, m)).astype(dtype)
    U = rng.uniform(-k, k, (4 * n, n)).astype(dtype)
    rows = np.concatenate([np.arange(n), np.arange(n, 2 * n), np.arange(3 * n, 4 * n)])    # i, f, o (not g)
    dead = rng.choice(rows, int(round(constant * rows.size)), replace=False)
    W[dead], U[dead] = 0, 0
    params = {"emb": rng.normal(0, 0.1, (VOCAB, m)).astype(dtype),
              "layers": [{"W": W, "U": U, "b": rng.uniform(-k, k, 4 * n).astype(dtype)}],
              "out_W": rng.normal(0, 0.1, (CLASSES, n)).astype(dtype), "out_b": np.zeros(CLASSES, dtype)}
    return config, params


def measure(sizes, constants, ratio: float, data: Path, budget: float) -> list[dict]:
    import numba
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    for name in BATCHES:
        tokens, lengths, source = batch(name, data, rng)
        counts = documents._step_counts(np.sort(lengths)[::-1])
        waste = documents._lanes_waste(counts, np.float32)
        for n in sizes:
            for c in constants:
                m = min(max(1, round(ratio * n)), 128)
                prepared = fast.prepare(*random_classifier(rng, n, m, c))
                fns = {layout: (lambda lay=layout: fast.classify(prepared, tokens, lengths, layout=lay))
                       for layout in ("rows", "lanes")}
                for fn in fns.values():
                    fn()
                t = median_times(fns, budget=budget, min_rounds=10)
                auto = documents.choose_layout(prepared, counts, 1)
                rows.append({"batch": name, "source": source, "lanes_waste": waste, "n": n, "m": m,
                             "constant": c, "rows_ms": 1e3 * t["rows"], "lanes_ms": 1e3 * t["lanes"], "auto": auto})
                r = rows[-1]
                print(f"{name} (waste {waste:.2f})  n {n:4d}  m {m:4d}  constant {c:4.2f}  rows {r['rows_ms']:7.3f} ms  "
                      f"lanes {r['lanes_ms']:7.3f} ms  lanes/rows {r['lanes_ms'] / r['rows_ms']:5.2f}  auto: {auto}",
                      flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(BATCHES), figsize=(10, 4), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), BATCHES):
        mine = [r for r in rows if r["batch"] == name]
        for c in sorted({r["constant"] for r in mine}):
            pts = sorted((r["n"], r["lanes_ms"] / r["rows_ms"]) for r in mine if r["constant"] == c)
            ax.plot(*zip(*pts), marker="o", label=f"{c:.0%} of i, f, o constant")
        ax.axhline(1.0, color="k", lw=0.8)
        waste = mine[0]["lanes_waste"] if mine else float("nan")
        ax.set(xscale="log", xlabel="hidden units n",
               title=f"{name}: a batch of 32 (lanes / tokens {waste:.2f})")
        ax.set_xticks(sorted({r["n"] for r in mine}), [str(n) for n in sorted({r["n"] for r in mine})])
    np.atleast_1d(axes)[0].set_ylabel("lanes time / rows time (below 1: lanes faster)")
    np.atleast_1d(axes)[0].legend()
    fig.suptitle("fast.classify: the two layouts of a compact LSTM classifier, one thread")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 12, 16, 24, 32, 48, 64, 96, 128])
    p.add_argument("--constant", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    p.add_argument("--data", default=str(SHARED), help=f"the labelled data (default {SHARED})")
    p.add_argument("--input-ratio", type=float, default=2.0, help="input size m = min(ratio n, 128) (default 2)")
    p.add_argument("--budget", type=float, default=1.5, help="seconds of timing per pair (default 1.5)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if any(n < 1 for n in args.sizes) or any(not 0 <= c <= 1 for c in args.constant):
        raise SystemExit("--sizes must be >= 1 and --constant in [0, 1]")
    rows = measure(args.sizes, args.constant, args.input_ratio, Path(args.data), args.budget)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    try:
        plot(rows, out.with_suffix(".png"))
    except ImportError:
        print("matplotlib is not installed: no figure (pip install 'l0ref[plot]')")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
