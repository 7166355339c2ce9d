"""The PTB experiment script (benchmarks/ptb_experiments.py) on a tiny PTB-format corpus.

The experiments themselves take up to 30 minutes each; here one short run of the script's
own code path (train, select on dev, test, compact, check, write) proves that the command
works end to end and that its outputs say what they should.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def ptb():
    return load_benchmark("ptb_experiments")


def _write_fake_ptb(root: Path, n_lines: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(40)]
    for name, n in (("valid", n_lines), ("test", n_lines // 2)):
        lines = [" ".join(rng.choice(words, size=rng.integers(3, 12))) for _ in range(n)]
        (root / f"ptb.{name}.txt").write_text("\n".join(lines) + "\n")


def test_split_is_valid_lines_then_dev_and_test_file(ptb, tmp_path):
    _write_fake_ptb(tmp_path, 200, 0)
    corpus = ptb.load_data(tmp_path)
    valid_lines = (tmp_path / "ptb.valid.txt").read_text().splitlines()
    test_lines = (tmp_path / "ptb.test.txt").read_text().splitlines()
    cut = round(len(valid_lines) * (1 - ptb.DEV_FRACTION))
    # one <eos> per line: the token counts tell which lines went where
    assert corpus.train.size == sum(len(s.split()) + 1 for s in valid_lines[:cut])
    assert corpus.valid.size == sum(len(s.split()) + 1 for s in valid_lines[cut:])
    assert corpus.test.size == sum(len(s.split()) + 1 for s in test_lines)


def test_missing_data_is_a_clear_error(ptb, tmp_path):
    with pytest.raises(SystemExit, match="ptb.valid.txt"):
        ptb.load_data(tmp_path)


def test_single_run_end_to_end(ptb, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    _write_fake_ptb(tmp_path / "data", 600, 1)
    argv = ["single", "--name", "tiny", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
            "--emb", "8", "--hidden", "8", "8", "--epochs", "2", "--lam1", "4", "--lam2", "4", "--no-plots"]
    assert ptb.main(argv) == 0
    out = capsys.readouterr().out
    assert "Not the standard PTB split" in out and "| tiny |" in out
    s = json.loads((tmp_path / "out" / "tuning" / "tiny" / "summary.json").read_text())
    assert s["epochs"] == 2 and s["selected_epoch"] in (1, 2)
    assert s["sizes"] == [8, 8, 8] and all(0 <= k <= 8 for k in s["live"])
    # the compact model computes what the gated one does, and the numbers are perplexities
    assert s["compact_max_abs_diff"] < 1e-4
    # uniform random words: nothing to learn, so near the vocabulary size (40 words, <eos>, <unk>)
    assert 30 < s["test_ppl"] < 60 and 30 < s["valid_ppl"] < 60
    assert (tmp_path / "out" / "tuning" / "tiny" / "compact.npz").is_file()
