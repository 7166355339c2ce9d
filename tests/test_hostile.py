"""A careless or hostile user, case by case (issue 14): nothing they do loses a run, writes
over an input, prints a traceback or is accepted when it is nonsense.  Each test names
its case; the command line runs in-process (``cli.main``), as a user would run it."""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess

import numpy as np
import pytest

from l0ref import checkpoint as ckpt
from l0ref import cli, fast, hard_concrete, models
from l0ref import training as train
from l0ref.cells import lstm
from l0ref.experiments import rundir
from tests.conftest import TINY, _lines, _train_args, rewrite_checkpoint


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert cli.main(_train_args(corpus, out, epochs=2)) == 0
    return out


def fails(capsys, argv, *fragments, code=2):
    """``l0ref ARGV`` exits with ``code``, one message naming every fragment, no traceback."""
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


rewrite = rewrite_checkpoint


# --- 1, 2: data loss and silent overwrites ------------------------------------------------


def test_1_compact_never_writes_over_its_input_or_an_existing_file(run, corpus, capsys):
    ck = run / "checkpoint.npz"
    before = ck.read_bytes()
    fails(capsys, ["compact", str(ck), "--out", str(ck)], "is an input of this command")
    assert ck.read_bytes() == before
    text = (corpus / "train.txt").read_text()
    fails(capsys, ["compact", str(ck), "--out", str(corpus / "train.txt")], "exists", "--overwrite")
    assert (corpus / "train.txt").read_text() == text


def test_2_train_never_replaces_a_run_unasked(run, corpus, tmp_path, capsys):
    fails(capsys, _train_args(corpus, run, epochs=1), "holds a run already", "--resume", "--overwrite")
    assert train.load_checkpoint(run / "checkpoint.npz").epoch == 2        # untouched
    again = tmp_path / "again"
    assert cli.main(_train_args(corpus, again, epochs=1)) == 0
    assert cli.main(_train_args(corpus, again, epochs=1, extra=["--overwrite"])) == 0


def test_2_a_locked_run_directory_is_refused_with_the_holders_pid(corpus, tmp_path, capsys):
    out = tmp_path / "locked"
    out.mkdir()
    holder = subprocess.Popen(["sleep", "30"])
    try:
        (out / rundir.LOCK_NAME).write_text(f"{holder.pid} {os.uname().nodename}\n")
        fails(capsys, _train_args(corpus, out, epochs=1), "being written by another l0ref run",
              f"process {holder.pid}")
        assert not (out / "checkpoint.npz").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, and the next run takes it over (and frees it)
    assert cli.main(_train_args(corpus, out, epochs=1)) == 0
    assert not (out / rundir.LOCK_NAME).exists()


# --- 3, 4: operating-system errors and memory ------------------------------------------------


def test_3_full_disk_and_read_only_folders_are_one_line(run, corpus, tmp_path, capsys, monkeypatch):
    def full(fh, arrays):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ckpt, "_write_npz", full)
    fails(capsys, _train_args(corpus, tmp_path / "full", epochs=1), "No space left on device [Errno 28]")
    fails(capsys, ["compact", str(run / "checkpoint.npz"), "--out", str(tmp_path / "c.npz")], "[Errno 28]")
    monkeypatch.undo()

    def read_only(self):
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))
    monkeypatch.setattr(rundir.RunLock, "acquire", read_only)
    fails(capsys, _train_args(corpus, tmp_path / "ro", epochs=1), "Read-only file system [Errno 30]",
          "choose a writable --out")


def test_3_out_naming_an_existing_file(run, corpus, tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    fails(capsys, _train_args(corpus, f, epochs=1), "is a file, not a directory")
    fails(capsys, ["report", str(run), "--out", str(f)], "is a file")
    fails(capsys, ["compact", str(run / "checkpoint.npz"), "--out", str(tmp_path)], "is a directory")
    assert f.read_text() == "x"


@pytest.mark.parametrize("size", [["--hidden", "200000"], ["--emb", "2000000000"]])
def test_4_a_model_too_big_is_refused_before_allocating(corpus, tmp_path, capsys, size):
    args = _train_args(corpus, tmp_path / "big", epochs=1)
    args[args.index("--emb"):args.index("--batch-size")] = []          # drop the tiny sizes
    fails(capsys, args + size, "needs about", "GiB", "available")
    assert not (tmp_path / "big").exists()                            # nothing left behind


def test_4_weights_are_drawn_without_a_float64_copy():
    """float32 weights are the numbers a float64 draw gives, cast (a chunked draw)."""
    a = lstm.init_params(3, 5, np.random.default_rng(0), np.float32)
    rng = np.random.default_rng(0)
    k = 1 / np.sqrt(5)
    for key in ("W", "U", "b"):
        np.testing.assert_array_equal(a[key], rng.uniform(-k, k, a[key].shape).astype(np.float32))


# --- 5: bench arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [(["--rounds", "-1"], "--rounds must be >= 1"),
                                            (["--cells", "bogus"], "--cells must name"),
                                            (["--cells", ""], "--cells must name"),
                                            (["--max-seconds", "-5"], "--max-seconds must be > 0")])
def test_5_bench_refuses_bad_arguments(capsys, args, fragment):
    fails(capsys, ["bench", "--keep-env", *args], fragment)


# --- 6, 7: checkpoints that lie ---------------------------------------------------------------


@pytest.mark.parametrize("edit, fragment", [
    (lambda h: h["progress"].update(epoch=1e6), "progress.epoch must be an integer"),
    (lambda h: h["progress"].update(epoch=10 ** 6), "past the train config's"),
    (lambda h: h["progress"].update(epoch=-3), "progress.epoch must be finite and >= 0"),
    (lambda h: h["progress"].update(step=1.5), "progress.step must be an integer"),
    (lambda h: h.update(surprise=1), "unknown header keys ['surprise']"),
    (lambda h: h.update(kind="bogus"), "kind is 'bogus'"),
])
def test_6_checkpoint_headers_are_checked_strictly(run, tmp_path, capsys, edit, fragment):
    bad = rewrite(run / "checkpoint.npz", tmp_path / "bad.npz", edit_header=edit)
    fails(capsys, ["train", "--resume", str(bad), "--out", str(tmp_path / "o"), "--epochs", "3"], fragment)


def test_6_a_position_past_the_epoch_is_refused(run, corpus, tmp_path, capsys):
    bad = rewrite(run / "checkpoint.npz", tmp_path / "bad.npz",
                  edit_header=lambda h: h["progress"].update(position=10 ** 9))
    fails(capsys, ["train", "--resume", str(bad), "--out", str(tmp_path / "o"), "--epochs", "3"],
          "the data or the batch settings differ")


@pytest.mark.parametrize("value, fragment", [(np.nan, "contains NaN or inf"), (-1.0, "negative entries")])
def test_7_a_broken_adam_moment_is_refused_on_loading(corpus, tmp_path, capsys, value, fragment):
    out = tmp_path / "adam"
    assert cli.main(_train_args(corpus, out, epochs=1, extra=["--optimizer", "adam"])) == 0

    def spoil(arrays):
        arrays["opt/v/emb"] = np.full_like(arrays["opt/v/emb"], value)
    bad = rewrite(out / "checkpoint.npz", tmp_path / "bad.npz", edit_arrays=spoil)
    fails(capsys, ["train", "--resume", str(bad), "--out", str(tmp_path / "o"), "--epochs", "3"],
          "optimizer state v.emb", fragment)


# --- 8: nonsense hyper-parameters -------------------------------------------------------------


@pytest.mark.parametrize("extra, fragment", [(["--lam1", "1e300"], "lam1 = 1e+300"),
                                             (["--weight-decay", "1e30"], "weight_decay must lie in"),
                                             (["--max-vocab", "1"], "--max-vocab must be >= 2")])
def test_8_nonsense_hyperparameters_are_refused(corpus, tmp_path, capsys, extra, fragment):
    fails(capsys, _train_args(corpus, tmp_path / "r", epochs=1, extra=extra), fragment)
    assert not (tmp_path / "r").exists()


# --- 9: resume with other options, or other data ----------------------------------------------


def test_9_resume_refuses_options_the_checkpoint_fixes(run, capsys):
    fails(capsys, ["train", "--resume", str(run / "checkpoint.npz"), "--lr", "100", "--hidden", "99",
                   "--cell", "gru"], "--cell, --hidden, --lr cannot change on --resume")


def test_9_resume_refuses_a_changed_training_text(corpus, tmp_path, capsys):
    d = tmp_path / "data"
    d.mkdir()
    lines = (corpus / "train.txt").read_text().splitlines()
    (d / "train.txt").write_text("\n".join(lines) + "\n")
    assert cli.main(["train", "--train", str(d / "train.txt"), "--epochs", "1", "--out", str(tmp_path / "r"),
                     *TINY]) == 0
    rng = np.random.default_rng(1)
    (d / "train.txt").write_text("\n".join(rng.permutation(lines)) + "\n")     # same words, shuffled
    fails(capsys, ["train", "--resume", str(tmp_path / "r" / "checkpoint.npz"), "--epochs", "2"],
          "the training text differs")


# --- 10: options eval would ignore ----------------------------------------------------------


@pytest.mark.parametrize("extra, flag", [(["--vocab", "/nonexistent.npz"], "--vocab"), (["--numpy"], "--numpy")])
def test_10_eval_refuses_options_that_do_not_apply(run, corpus, capsys, extra, flag):
    fails(capsys, ["eval", str(run / "checkpoint.npz"), str(corpus / "test.txt"), *extra],
          f"{flag} applies to compact models")


# --- 11: Ctrl-C keeps the partial epoch -------------------------------------------------------


def test_11_ctrl_c_mid_epoch_saves_where_it_stopped(corpus, tmp_path, capsys, monkeypatch):
    from l0ref.training import loop
    real = loop.train_step

    def step_then_ctrl_c(state, *args):
        out = real(state, *args)
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGINT)     # the user presses Ctrl-C during step 3
        return out
    monkeypatch.setattr(loop, "train_step", step_then_ctrl_c)
    out = tmp_path / "r"
    err = fails(capsys, _train_args(corpus, out, epochs=2), "interrupted", "resume with: l0ref train --resume",
                code=130)
    st = train.load_checkpoint(out / "checkpoint.npz")
    assert (st.step, st.epoch, st.position) == (3, 0, 3), err          # mid-epoch, after the step
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(out / "checkpoint.npz")]) == 0
    assert train.load_checkpoint(out / "checkpoint.npz").epoch == 2


# --- 12: the API ----------------------------------------------------------------------------


@pytest.mark.parametrize("kw, fragment", [
    (dict(hidden_sizes=(4.5,)), "hidden_sizes entry must be an integer"),
    (dict(hidden_sizes="44"), "hidden_sizes must be a list or tuple"),
    (dict(emb_size=True), "emb_size must be an integer"),
    (dict(cell_options={"depth": 3}), "cell 'lstm' has no option 'depth'"),
])
def test_12_model_config_takes_no_nonsense(kw, fragment):
    args = dict(cell="lstm", vocab_size=10, emb_size=4, hidden_sizes=(4,))
    with pytest.raises(ValueError, match=fragment):
        models.ModelConfig(**{**args, **kw})


def _compact_model():
    cfg = models.ModelConfig("lstm", 12, 4, (5,))
    params = models.init_params(cfg, np.random.default_rng(0), dtype=np.float64)
    return cfg, params


def test_12_kernels_refuse_what_the_reference_refuses():
    cfg, params = _compact_model()
    tokens = np.zeros((3, 2), np.int64)
    with pytest.raises(ValueError, match="the parameters have gates"):
        fast.log_probs(cfg, params, tokens)
    small = {k: v for k, v in params.items() if k != "log_alpha"}
    state = (np.full((2, 5), np.nan), np.zeros((2, 5)))
    for log_probs in (models.log_probs, fast.log_probs):
        with pytest.raises(ValueError, match="h0 contains NaN"):
            log_probs(cfg, small, tokens, state0=[state])


def test_12_cells_and_models_refuse_bad_dtypes_masks_and_caches():
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        models.init_params(models.ModelConfig("lstm", 12, 4, (5,)), np.random.default_rng(0), dtype=np.float16)
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        lstm.init_params(3, 4, np.random.default_rng(0), np.float16)
    p = lstm.init_params(3, 4, np.random.default_rng(0))
    x = np.zeros((2, 1, 3))
    for bad in (2.5, -1.0):
        with pytest.raises(ValueError, match=r"mask s has values in .*gates lie in \[0, 1\]"):
            lstm.forward(p, x, None, np.full(4, bad))
    cfg, params = _compact_model()
    gates = [np.ones(n) for n in cfg.group_sizes]
    gates[1][0] = 2.5
    with pytest.raises(ValueError, match="gates lie in"):
        models.log_probs(cfg, params, np.zeros((3, 2), np.int64), gates)
    with pytest.raises(ValueError, match="backward needs the cache that the lstm cell's forward returned"):
        lstm.backward(np.zeros((2, 1, 4)), None, {"junk": 1})
    with pytest.raises(ValueError, match="t .* contains NaN"):
        hard_concrete.cdf(np.nan, 0.0)


# --- 13: messages that mislead --------------------------------------------------------------


def test_13_a_text_file_given_as_a_model(corpus, capsys):
    fails(capsys, ["eval", str(corpus / "train.txt"), str(corpus / "test.txt")], "is not an l0ref model file",
          "not an npz archive")
    fails(capsys, ["compact", str(corpus / "train.txt"), "--out", "/tmp/never.npz"], "not an npz archive")


def test_13_report_on_a_file_or_an_empty_directory(corpus, tmp_path, capsys):
    fails(capsys, ["report", str(corpus / "train.txt"), "--out", str(tmp_path / "f")], "is a file")
    (tmp_path / "empty").mkdir()
    fails(capsys, ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "f")], "holds no run")


def test_13_train_shows_the_unk_rate_of_valid_and_test(corpus, tmp_path, capsys):
    (tmp_path / "valid.txt").write_text(_lines(30, np.random.default_rng(3)) + "zebra quagga okapi\n")
    args = _train_args(corpus, tmp_path / "r", epochs=1)
    args[args.index("--valid") + 1] = str(tmp_path / "valid.txt")
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("corpus:"))
    assert re.search(r"valid [\d,]+ tokens \([1-9][\d.]*% <unk>\), test [\d,]+ tokens \([\d.]+% <unk>\)", line), line
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["test_ppl"] > 1
