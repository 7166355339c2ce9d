"""One hypothesis profile for the whole suite: no deadline (numba compiles on first use and
gradient checks are slow by design), no health check for slow data generation.  Tests
set only how many examples they draw."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("l0ref", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("l0ref")


# --- A tiny corpus and the command line that trains on it (tests/test_cli.py, test_hostile.py, ...) ---

SUBJECTS = ["the cat", "a dog", "my friend", "the teacher"]
VERBS = ["sees", "likes", "finds", "wants"]
OBJECTS = ["the ball", "a book", "the tree", "some food"]


def _lines(n, rng):
    return "\n".join(f"{SUBJECTS[rng.integers(4)]} {VERBS[rng.integers(4)]} {OBJECTS[rng.integers(4)]}"
                     for _ in range(n)) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for name, n in (("train", 200), ("valid", 30), ("test", 40)):
        (d / f"{name}.txt").write_text(_lines(n, rng))
    return d


TINY = ["--emb", "6", "--hidden", "8", "8", "--batch-size", "4", "--bptt", "6", "--quiet",
        "--timing-seconds", "0"]


def _train_args(corpus, out, epochs=2, extra=()):
    return ["train", "--train", str(corpus / "train.txt"), "--valid", str(corpus / "valid.txt"),
            "--test", str(corpus / "test.txt"), "--epochs", str(epochs), "--out", str(out), *TINY, *extra]




def rewrite_checkpoint(path, out, edit_header=None, edit_arrays=None):
    """A copy of the checkpoint ``path`` at ``out``, its header and arrays edited (to damage it)."""
    from l0ref import checkpoint as ckpt
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = ckpt.decode_header(arrays.pop(ckpt.HEADER_KEY))
    if edit_header:
        edit_header(header)
    if edit_arrays:
        edit_arrays(arrays)
    ckpt.save_npz(out, header, arrays)
    return out


# --- A script of benchmarks/ as a module (tests/test_experiments.py, test_gate_structure.py) ---

def load_benchmark(name: str):
    """``benchmarks/<name>.py`` imported as a module of that name, its ``main`` not run."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- PyTorch, the oracle of the LSTM and GRU comparisons (tests/test_lstm.py, test_gru.py) ---

def require_torch():
    """``torch``, or a skip where it is not installed (the README's test command does not
    install it: PyTorch is an oracle, never a dependency).  Under CI (``CI`` set), whose
    ``.ci/run`` installs it, a missing torch fails the test instead of skipping it, so
    the comparisons cannot drop out of CI unseen."""
    if os.environ.get("CI"):
        import torch
        return torch
    return pytest.importorskip("torch")
