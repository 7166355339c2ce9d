"""Time one training step of the small PTB model of Zaremba et al. with L0 gates on.

Vocabulary 10000, embedding and two LSTM layers of 200, batch 20, 35 steps, full
softmax, float32; one step = sample the gates, forward, hand-written backward, the
L0 penalty (Eq. 7), global-norm clipping and the SGD update (``l0ref.training.train_step``).

Where PyTorch is importable (not a dependency: ``pip install torch==2.13.0``), the same
run also times, with torch autograd:

- ``torch, same model``: the same masked LSTM (per-sequence hard concrete gates on
  inputs and hidden units, Eq. 2 in product form, dropout, penalty, clipping, SGD),
  written as a step loop because ``nn.LSTM`` cannot take per-sequence masks;
- ``torch nn.LSTM``: a plain ``nn.LSTM`` language model of the same sizes with dropout
  and no gates, the usual baseline.

All configurations are timed interleaved, round after round, so that the machine's
load falls on all of them alike; the table gives medians and ratios from one run.

    python benchmarks/train_step.py [--rounds 30] [--out benchmarks/results/train_step.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from l0ref import models as model
from l0ref import training as train

V, E, H, B, T = 10000, 200, 200, 20, 35


def l0ref_step_fn(seed: int = 0):
    mc = model.ModelConfig("lstm", V, E, (H, H))
    tc = train.TrainConfig(batch_size=B, bptt=T, dropout=0.5, lr=1.0, clip=0.25, seed=seed)
    state = train.init_state(mc, tc, n_train_tokens=929_589)   # PTB's training-set size
    rng = np.random.default_rng(seed + 1)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    return lambda: train.train_step(state, x, y)


def torch_step_fns(seed: int = 0):
    """(same-model step, nn.LSTM step) closures, or None if torch is missing."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    gamma, zeta, beta = -0.1, 1.1, 2.0 / 3.0
    x = torch.randint(0, V, (T, B))
    y = torch.randint(0, V, (T, B))

    class GatedLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, E)
            self.W = torch.nn.ParameterList([torch.nn.Parameter(torch.empty(4 * H, m).uniform_(-0.07, 0.07)) for m in (E, H)])
            self.U = torch.nn.ParameterList([torch.nn.Parameter(torch.empty(4 * H, H).uniform_(-0.07, 0.07)) for _ in range(2)])
            self.b = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(4 * H)) for _ in range(2)])
            self.log_alpha = torch.nn.ParameterList([torch.nn.Parameter(torch.normal(1.0, 0.1, (n,))) for n in (E, H, H)])
            self.out = torch.nn.Linear(H, V)
            self.drop = torch.nn.Dropout(0.5)

        def gates(self):
            out = []
            for la in self.log_alpha:
                u = torch.rand(B, la.shape[0]).clamp(1e-6, 1 - 1e-6)
                s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + la) / beta)
                out.append((s * (zeta - gamma) + gamma).clamp(0, 1))
            return out

        def penalty(self, lam=0.08 / 929_589):
            p = [torch.sigmoid(la - beta * np.log(-gamma / zeta)) for la in self.log_alpha]
            total = 0.0
            for l in range(2):
                sz, ss = p[l].sum(), p[l + 1].sum()
                total = total + lam * sz * ss + lam * (ss ** 2 - (p[l + 1] ** 2).sum() + ss)
            return total

        def forward(self, x, y):
            g = self.gates()
            h_in = self.drop(self.emb(x))
            for l in range(2):
                z, s = g[l], g[l + 1]
                S = s.repeat(1, 4)
                wx = (h_in * z) @ self.W[l].T                      # (T, B, 4H)
                h = torch.zeros(B, H)
                c = torch.zeros(B, H)
                outs = []
                for t in range(T):
                    a = S * (wx[t] + (s * h) @ self.U[l].T) + self.b[l]
                    i, f, gg, o = a.chunk(4, dim=1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                    h = torch.sigmoid(o) * torch.tanh(c)
                    outs.append(h)
                h_in = self.drop(torch.stack(outs))
            logits = self.out(h_in * g[2])
            return torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1)) + self.penalty()

    class PlainLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, H, num_layers=2, dropout=0.5)
            self.out = torch.nn.Linear(H, V)
            self.drop = torch.nn.Dropout(0.5)

        def forward(self, x, y):
            h, _ = self.rnn(self.drop(self.emb(x)))
            logits = self.out(self.drop(h))
            return torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))

    def make(module):
        opt = torch.optim.SGD(module.parameters(), lr=1.0)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = module(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 0.25)
            opt.step()
        return step

    return make(GatedLM()), make(PlainLM()), torch.__version__


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30, help="timed rounds (each runs every configuration once)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/train_step.json")
    args = ap.parse_args(argv)

    fns = {"l0ref (NumPy, hand-written backward)": l0ref_step_fn()}
    torch_fns = torch_step_fns()
    torch_version = None
    if torch_fns is not None:
        fns["torch autograd, same gated model"], fns["torch nn.LSTM, no gates"], torch_version = torch_fns
    else:
        print("PyTorch is not importable: timing l0ref only (pip install torch==2.13.0 to compare)")
    for fn in fns.values():
        for _ in range(args.warmup):
            fn()
    times = {name: [] for name in fns}
    for r in range(args.rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        print(f"\rround {r + 1}/{args.rounds}", end="", flush=True)
    print()
    ref = "l0ref (NumPy, hand-written backward)"
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"one training step, LSTM LM V={V} emb {E} hidden {H}x2, batch {B}, bptt {T}, float32, L0 gates on")
    print(f"{'configuration':40s} {'median ms':>10s} {'IQR ms':>14s} {'l0ref / this':>13s}")
    for name, v in times.items():
        q1, q3 = np.percentile(v, [25, 75])
        print(f"{name:40s} {1000 * med[name]:10.1f} {1000 * q1:6.1f}-{1000 * q3:6.1f} {med[ref] / med[name]:12.2f}x")
    result = {
        "config": {"vocab": V, "emb": E, "hidden": [H, H], "batch": B, "bptt": T, "dtype": "float32"},
        "median_s": med, "times_s": times, "rounds": args.rounds,
        "torch": torch_version, "numpy": np.__version__, "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
