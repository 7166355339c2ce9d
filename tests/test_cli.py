"""The ``l0ref`` command, run in-process: train -> compact -> eval on a tiny corpus, resume,
and clear errors for bad input."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from l0ref import cli, tree
from l0ref import compact as compact_mod
from l0ref import training as train
from tests.conftest import _train_args

@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert cli.main(_train_args(corpus, out, extra=["--lam1", "2", "1", "--lam2", "1"])) == 0
    return out


def _eval(tmp_path, *args) -> float:
    """``l0ref eval ARGS --json F``: the perplexity it stores (not the printed text)."""
    out = tmp_path / f"eval{len(list(tmp_path.glob('eval*.json')))}.json"
    assert cli.main(["eval", *map(str, args), "--json", str(out)]) == 0
    return json.loads(out.read_text())["perplexity"]


def test_train_writes_a_complete_run(run_dir, corpus, capsys):
    for name in ("checkpoint.npz", "history.json", "summary.json", "compact.npz"):
        assert (run_dir / name).is_file(), name
    doc = json.loads((run_dir / "history.json").read_text())
    assert [r["epoch"] for r in doc["history"]] == [1, 2]
    assert all(len(r["live"]) == 3 and r["valid_ppl"] > 1 for r in doc["history"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["lam1"] == [2.0, 1.0] and summary["test_ppl"] > 1
    assert summary["compact_max_abs_diff"] <= 2e-4
    st = train.load_checkpoint(run_dir / "checkpoint.npz")
    assert st.epoch == 2 and st.model_config.hidden_sizes == (8, 8)
    assert st.penalty_weights.lam1 == pytest.approx([2 * 0.08 / st.n_train_tokens, 0.08 / st.n_train_tokens])


def test_train_prints_structure_check_and_speed(corpus, tmp_path, capsys):
    assert cli.main(_train_args(corpus, tmp_path / "r", epochs=1)) == 0
    out = capsys.readouterr().out
    assert "reference perplexities on valid: uniform" in out
    assert "compaction check: compact model == masked full model" in out
    assert "kept %" in out and "multiply-adds kept" in out
    assert "speedup of the compact model" in out


def test_compact_and_eval_agree_with_the_checkpoint(run_dir, corpus, tmp_path, capsys):
    small = tmp_path / "small.npz"
    assert cli.main(["compact", str(run_dir / "checkpoint.npz"), "--out", str(small)]) == 0
    assert "compaction check" in capsys.readouterr().out
    test = str(corpus / "test.txt")
    cfg = train.load_checkpoint(run_dir / "checkpoint.npz").config       # the run's evaluation batches
    batches = ["--batch-size", cfg.eval_batch_size, "--bptt", cfg.bptt]
    full = _eval(tmp_path, run_dir / "checkpoint.npz", test, *batches)
    kernel = _eval(tmp_path, small, test, *batches)
    reference = _eval(tmp_path, small, test, "--numpy", *batches)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert full == summary["test_ppl"]                   # the same computation, the same number
    # the compact model in float32 equals the masked one to rounding (1e-5 of a loss ~5 nats)
    assert kernel == pytest.approx(full, rel=1e-5) and reference == pytest.approx(full, rel=1e-5)
    # the compact file carries its vocabulary; without it, --vocab takes one from a checkpoint
    bare_model = compact_mod.load(small)
    bare_model.meta.clear()
    bare = tmp_path / "bare.npz"
    compact_mod.save(bare, bare_model)
    assert cli.main(["eval", str(bare), test]) == 2
    assert "stores no vocabulary" in capsys.readouterr().err
    assert _eval(tmp_path, bare, test, "--vocab", run_dir / "checkpoint.npz", *batches) == kernel


def test_every_gate_family_trains_compacts_and_evaluates_alike(corpus, tmp_path, capsys):
    """``--gates neurons,preact,weights,vocab``: the checkpoint records the families, the
    summary the constant gates, and the checkpoint, the compact kernel and the compact NumPy
    model give the same test perplexity."""
    run = tmp_path / "all"
    assert cli.main(_train_args(corpus, run, epochs=1, extra=["--gates", "vocab,weights,preact,neurons",
                                                              "--lam-preact", "50", "--lam-weights", "5",
                                                              "--log-alpha-init-extra", "4"])) == 0
    st = train.load_checkpoint(run / "checkpoint.npz")
    assert st.model_config.gate_families == ("neurons", "preact", "weights", "vocab")
    assert st.config.log_alpha_init_extra == 4.0
    assert set(st.params["log_alpha"]) == {"neurons", "preact", "weights", "vocab"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["gate_families"] == ["neurons", "preact", "weights", "vocab"]
    assert len(summary["constant_gates"]) == 2 and set(summary["constant_gates"][0]["constant"]) == set("ifgo")
    figures = tmp_path / "figures"
    assert cli.main(["report", str(run), "--out", str(figures)]) == 0
    assert (figures / "all_constant_gates.png").is_file()
    small = tmp_path / "small.npz"
    assert cli.main(["compact", str(run / "checkpoint.npz"), "--out", str(small)]) == 0
    test = str(corpus / "test.txt")
    batches = ["--batch-size", st.config.eval_batch_size, "--bptt", st.config.bptt]
    full = _eval(tmp_path, run / "checkpoint.npz", test, *batches)
    assert full == summary["test_ppl"]
    assert _eval(tmp_path, small, test, *batches) == pytest.approx(full, rel=1e-5)
    assert _eval(tmp_path, small, test, "--numpy", *batches) == pytest.approx(full, rel=1e-5)


def test_resume_continues_the_run(corpus, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main(_train_args(corpus, a, epochs=2)) == 0
    assert cli.main(_train_args(corpus, b, epochs=1)) == 0
    assert cli.main(["train", "--resume", str(b / "checkpoint.npz"), "--epochs", "2", "--quiet",
                     "--timing-seconds", "0"]) == 0
    sa, sb = train.load_checkpoint(a / "checkpoint.npz"), train.load_checkpoint(b / "checkpoint.npz")
    assert sb.step == sa.step
    for x, y in zip(tree.leaves(sa.params), tree.leaves(sb.params)):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("args, message", [
    (["--train", "/no/such/file.txt"], "not found"),
    (["--lam1", "-1"], "lam1"),
    (["--lam2", "1", "2", "3"], "lam2 has 3 values for 2 layers"),
    (["--dropout", "1"], "dropout"),
    (["--batch-size", "0"], "batch_size"),
    (["--bptt", "0"], "bptt"),
    (["--hidden", "0"], "--hidden"),
    (["--emb", "0"], "--emb"),
    (["--lr", "-1"], "lr"),
    (["--lr", "nan"], "not finite"),
    (["--log-alpha-init-extra", "inf"], "log-alpha-init-extra: 'inf' is not finite"),
    (["--epochs", "0"], "epochs"),
    (["--depth", "3"], "--depth applies to --cell rhn"),
    (["--max-minutes", "0"], "max-minutes"),
    (["--gates", "neurons,foo"], "unknown gate family 'foo'"),
    (["--gates", "preact"], "lack 'neurons'"),
    (["--gates", "neurons,preact", "--target-macs", "0.5"], "a size target works with the neuron gates alone"),
    (["--batch-size", "500", "--bptt", "50"], "need at least"),
])
def test_bad_train_input_is_a_clear_error(corpus, tmp_path, capsys, args, message):
    base = ["train", "--train", str(corpus / "train.txt"), "--out", str(tmp_path / "r"), "--quiet",
            "--emb", "4", "--hidden", "4", "4", "--epochs", "1"]
    code = cli.main(base + args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


def test_bad_input_to_the_other_commands(run_dir, corpus, tmp_path, capsys):
    missing = str(tmp_path / "missing.npz")
    assert cli.main(["compact", missing, "--out", str(tmp_path / "x.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes((run_dir / "checkpoint.npz").read_bytes()[:300])
    assert cli.main(["compact", str(corrupt), "--out", str(tmp_path / "x.npz")]) == 2
    assert "corrupt.npz" in capsys.readouterr().err
    assert cli.main(["eval", missing, str(corpus / "test.txt")]) == 2
    assert "no such model file" in capsys.readouterr().err
    assert cli.main(["eval", str(run_dir / "checkpoint.npz"), str(tmp_path / "none.txt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["eval", str(corrupt), str(corpus / "test.txt")]) == 2
    assert cli.main(["frobnicate"]) == 2
    assert cli.main([]) == 2
    assert cli.main(["train", "--optimizer", "rmsprop"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_report_draws_figures_or_says_how_to_get_matplotlib(run_dir, tmp_path, capsys):
    code = cli.main(["report", str(run_dir), "--out", str(tmp_path / "fig")])
    if importlib.util.find_spec("matplotlib") is None:
        assert code == 2
        assert "pip install 'l0ref[plot]'" in capsys.readouterr().err
    else:
        assert code == 0
        assert list((tmp_path / "fig").glob("*.png"))
    assert cli.main(["report", str(tmp_path / "no_run"), "--out", str(tmp_path / "fig")]) == 2


def test_bench_is_delegated(capsys):
    assert cli.main(["bench", "--help"]) == 0
    assert "l0ref bench" in capsys.readouterr().out


def test_console_script_points_at_main():
    import tomllib
    from pathlib import Path
    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["l0ref"] == "l0ref.cli:main"
