"""PyTorch's compact Table 1 LSTM stage by stage, the rival of ``profile_compact.py``.

    python benchmarks/torch_stages.py [--rounds 60]

The same model as ``benchmarks/table1.py``'s PyTorch runs (``table1.torch_model``'s layers:
``nn.Embedding`` -> one ``nn.LSTM`` per layer -> ``nn.Linear`` -> ``log_softmax``, under
``torch.inference_mode``, l0ref's weights), batch 10 x 30 steps, at ``torch``'s thread
count (set it with ``OMP_NUM_THREADS`` as the benchmarks do).  Each stage is timed alone,
the forward whole, and a 2048 x 2048 numpy product in the same rounds; medians.  For
comparing how each of the two libraries' stages scales with the threads.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from l0ref import models as model  # noqa: E402
from l0ref.experiments.table1 import BATCH, MATMUL_N, STEPS, rerun_with_thread_env, torch_layers, torch_model, try_torch  # noqa: E402
from l0ref.gates import PARAMS_KEY  # noqa: E402
from profile_compact import CONFIGS  # noqa: E402


def stages(torch, params: dict, tokens_t):
    """(name, function) of each stage (``table1.torch_layers``), the input of each made once beforehand."""
    emb, rnns, out = torch_layers(torch, CONFIGS["lstm"], params)
    with torch.inference_mode():
        inputs = [emb(tokens_t)]
        for rnn in rnns:
            inputs.append(rnn(inputs[-1])[0])
        logits = out(inputs[-1])
    named = [("embedding", lambda: emb(tokens_t))]
    named += [(f"layer {l} (nn.LSTM)", lambda r=rnn, x=x: r(x)) for l, (rnn, x) in enumerate(zip(rnns, inputs), 1)]
    named += [("softmax product (nn.Linear)", lambda: out(inputs[-1])),
              ("log-softmax", lambda: torch.log_softmax(logits, dim=-1))]

    whole = torch_model(torch, CONFIGS["lstm"], params)          # table1.py's PyTorch run
    return named + [("whole forward", lambda: whole(tokens_t))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=60)
    args = p.parse_args(argv)
    returncode = rerun_with_thread_env([sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)])
    if returncode is not None:
        return returncode
    torch = try_torch()
    if torch is None:
        print("torch_stages.py: PyTorch is not importable", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    params = model.init_params(CONFIGS["lstm"], rng, dtype=np.float32)
    params.pop(PARAMS_KEY)
    tokens_t = torch.from_numpy(rng.integers(0, CONFIGS["lstm"].vocab_size, (STEPS, BATCH)))
    named = stages(torch, params, tokens_t)
    A = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    times: dict = {}
    with torch.inference_mode():
        for r in range(args.rounds + 2):                          # 2 rounds of warm-up
            for name, fn in named + [("matmul", lambda: A @ A)]:
                t0 = time.perf_counter()
                fn()
                if r >= 2:
                    times.setdefault(name, []).append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"matmul {2 * MATMUL_N ** 3 / med['matmul'] / 1e6:.0f} GFLOP/s")
    for name, ms in med.items():
        if name != "matmul":
            print(f"{name:32s} {ms:8.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
