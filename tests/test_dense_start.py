"""A dense start (``TrainConfig.dense_start``): the first part of a run trains the unpruned
network, every gate at 1, no penalty, the gates not learning; then the run prunes."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import _train_args, rewrite_checkpoint
from tests.test_finetune import gate_arrays, straight_and_resumed
from tests.test_train import tiny_corpus

from l0ref import gates
from l0ref import models as model
from l0ref import training as train
from l0ref.cli import main
from l0ref.experiments import pipeline
from l0ref.training.tasks import lm_loss_and_grads


def state_with(families=("neurons",), dense_start=0.5, epochs=2, optimizer="adam", dropout=0.0, dtype="float64",
               finetune=0.0):
    mc = model.ModelConfig("lstm", 6, 5, (7, 6), gate_families=families)
    cfg = train.TrainConfig(optimizer=optimizer, lr=0.01 if optimizer == "adam" else 1.0, dropout=dropout,
                            dtype=dtype, epochs=epochs, batch_size=4, bptt=6, clip=0.0, seed=3,
                            lam1=(2.0,), lam2=(2.0,), dense_start=dense_start, finetune=finetune,
                            log_alpha_lr_scale=5.0)
    return train.init_state(mc, cfg, n_train_tokens=1200, vocab=[f"t{i}" for i in range(5)] + ["<unk>"])


def batches_per_epoch(st, task) -> int:
    return len(list(task.batches(st.config, 0)))


@pytest.mark.parametrize("families", [("neurons",), ("neurons", "preact", "weights")])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_gates_stay_put_while_the_unpruned_network_trains_then_move(families, optimizer):
    task = train.LanguageModeling(tiny_corpus(600), None)
    st = state_with(families, dense_start=0.5, optimizer=optimizer)
    before, w_before = gate_arrays(st), st.params["layers"][0]["W"].copy()
    n = batches_per_epoch(st, task)
    train.fit(st, task, max_steps=n)                      # the first half: the unpruned network
    assert st.dense_warmup and st.dense_steps == n == st.opt_t
    assert all(np.array_equal(a, b) for a, b in zip(before, gate_arrays(st)))
    assert not np.array_equal(w_before, st.params["layers"][0]["W"])     # the weights learn
    assert st.history[-1]["dense_warmup"]
    train.fit(st, task)                                   # the second half prunes
    assert not st.dense_warmup and st.dense_steps == n and st.opt_t == 2 * n
    assert any(not np.array_equal(a, b) for a, b in zip(before, gate_arrays(st)))
    assert not st.history[-1]["dense_warmup"]


def test_a_dense_step_is_the_open_network_without_penalty():
    ids = tiny_corpus(600)
    st = state_with(("neurons", "preact", "weights"), dense_start=0.5)
    st.fraction = 0.2
    assert st.dense_warmup
    inputs, targets = next(iter(train.LanguageModeling(ids, None).batches(st.config, 0)))
    ones = gates.families.open_gates(st.model_config, st.params[gates.PARAMS_KEY], inputs.shape[1])
    drawn = gates.families.sample_gates(st.params[gates.PARAMS_KEY], gates.families.draw_uniforms(
        st.model_config, st.params[gates.PARAMS_KEY], inputs.shape[1], np.random.default_rng(0)))
    for name in drawn:                                   # the shapes of a training step's samples, all ones
        assert [z.shape for z in ones[name]] == [z.shape for z in drawn[name]]
        assert all(np.all(z == 1.0) for z in ones[name])
    loss_ref, _, _ = lm_loss_and_grads(st.model_config, st.params, inputs, targets, ones, None, 0.0,
                                       np.random.default_rng(0))
    stats = train.train_step(st, inputs, targets)
    assert stats["penalty"] == 0.0
    assert stats["loss"] == pytest.approx(loss_ref, rel=1e-12)


def test_adams_bias_correction_of_the_gates_starts_with_the_pruning():
    """The first gate update after the dense start is a first Adam step, ``lr * g / (|g| + eps)``
    (with the global step count it would be ``lr * 0.1 / (1 - 0.9^t) * g / sqrt(...)``, larger)."""
    task = train.LanguageModeling(tiny_corpus(600), None)
    st = state_with(("neurons", "weights"), dense_start=0.5)
    n = batches_per_epoch(st, task)
    train.fit(st, task, max_steps=n)
    before = gate_arrays(st)
    train.fit(st, task, max_steps=1)
    assert st.opt_t - st.dense_steps == 1
    gate_lr = st.config.lr * st.config.log_alpha_lr_scale
    moments = [(m, v) for m, v in zip(gates_leaves(st.opt["m"]), gates_leaves(st.opt["v"]))]
    for a, b, (m, v) in zip(before, gate_arrays(st), moments):
        g = m / (1 - st.config.adam_betas[0])            # the step's gradient, from the first moment
        np.testing.assert_allclose(v, (1 - st.config.adam_betas[1]) * g * g, rtol=1e-12)
        np.testing.assert_allclose(a - b, gate_lr * g / (np.abs(g) + st.config.adam_eps), rtol=1e-9, atol=1e-15)
        assert np.max(np.abs(a - b)) > 0.5 * gate_lr


def gates_leaves(opt_tree):
    from l0ref import tree
    return tree.leaves(opt_tree[gates.PARAMS_KEY])


def test_validation_during_the_dense_start_evaluates_the_open_network():
    ids = tiny_corpus(900)
    task = train.LanguageModeling(ids, ids[:200])
    st = state_with(("neurons",), dense_start=0.5)
    n = batches_per_epoch(st, task)
    train.fit(st, task, max_steps=n)
    ones = {k: [np.ones_like(a) for a in v] for k, v in model.eval_gates(st.params).items()}
    nll = train.evaluate(st.model_config, st.params, ids[:200], batch_size=st.config.eval_batch_size,
                         bptt=st.config.bptt, gates=ones)
    test_time = train.evaluate(st.model_config, st.params, ids[:200], batch_size=st.config.eval_batch_size,
                               bptt=st.config.bptt, gates=model.eval_gates(st.params))
    assert nll != test_time
    assert st.history[-1]["valid_loss"] == pytest.approx(nll, rel=1e-12)


def test_best_valid_never_picks_an_epoch_of_the_dense_start(tmp_path):
    """Those epochs evaluate the unpruned network, not one the run compacts."""
    ids = tiny_corpus(900)

    class OpenLooksBest(train.LanguageModeling):
        def valid_metrics(self, model_config, params, config, open_gates=False):
            out = super().valid_metrics(model_config, params, config, open_gates)
            return {"valid_loss": 0.0, "valid_ppl": 1.0} if open_gates else out

    st = state_with(("neurons",), dense_start=0.5, epochs=4)
    spec = pipeline.RunSpec(out=tmp_path, selection="best_valid")
    chosen = pipeline.train(spec, st, None, tmp_path, log=lambda line: None, task=OpenLooksBest(ids, ids[:200]))
    assert [e["dense_warmup"] for e in st.history] == [True, True, False, False]
    assert chosen["epoch"] in (3, 4)


def test_resume_across_the_switch_is_bit_identical(tmp_path):
    make = lambda: state_with(("neurons", "weights"), dense_start=0.4, epochs=3, dtype="float32", dropout=0.2)  # noqa: E731
    straight, resumed, loaded = straight_and_resumed(make, lambda n: n // 2, tmp_path)   # inside the dense start
    assert loaded.config.dense_start == 0.4
    assert 0 < loaded.dense_steps == loaded.opt_t < resumed.dense_steps == straight.dense_steps


def test_a_checkpoint_from_before_dense_starts_loads_and_a_bad_count_is_refused(tmp_path):
    task = train.LanguageModeling(tiny_corpus(600), None)
    st = state_with(("neurons",), dense_start=0.0)
    train.fit(st, task, max_steps=3)
    path = train.save_checkpoint(tmp_path / "ck.npz", st)

    def older(header):
        del header["progress"]["dense_steps"]
        del header["train_config"]["dense_start"]
    old = rewrite_checkpoint(path, tmp_path / "old.npz", edit_header=older)
    back = train.load_checkpoint(old)
    assert back.dense_steps == 0 and back.config.dense_start == 0.0

    def too_many(header):
        header["progress"]["dense_steps"] = header["progress"]["opt_t"] + 1
    bad = rewrite_checkpoint(path, tmp_path / "bad.npz", edit_header=too_many)
    with pytest.raises(ValueError, match="progress.dense_steps .* exceeds progress.opt_t"):
        train.load_checkpoint(bad)


@pytest.mark.parametrize("bad", [1.0, -0.1, True, "0.2"])
def test_an_impossible_dense_start_is_refused(bad):
    with pytest.raises(ValueError, match="dense_start must be a fraction of the run in"):
        train.TrainConfig(dense_start=bad)


def test_the_run_says_which_parts_do_not_prune():
    assert train.TrainConfig().phases() == ""
    assert train.TrainConfig(dense_start=0.25, finetune=0.1).phases() == \
        ", the first 25% of the run unpruned, the last 10% fine-tuning the structure"


def test_a_dense_start_with_a_size_target_is_refused():
    with pytest.raises(ValueError, match="a dense start does not combine with a size target"):
        train.TrainConfig(dense_start=0.2, target_macs=0.3)


def test_a_dense_start_and_fine_tuning_that_leave_no_pruning_are_refused():
    with pytest.raises(ValueError, match=r"dense_start \(0.6\) \+ finetune \(0.4\) must be < 1"):
        train.TrainConfig(dense_start=0.6, finetune=0.4)


def test_the_command_takes_dense_start_and_refuses_a_bad_one(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(corpus, out, epochs=2, extra=["--dense-start", "0.5"])) == 0
    st = train.load_checkpoint(out / "checkpoint.npz")
    assert st.config.dense_start == 0.5 and st.history[0]["dense_warmup"] and not st.history[-1]["dense_warmup"]
    assert "| unpruned first |" in train.describe(st.history[0]) and "unpruned" not in train.describe(st.history[-1])
    assert main(_train_args(corpus, tmp_path / "r2", extra=["--dense-start", "1"])) == 2
    assert "dense_start must be a fraction of the run in [0, 1), got 1.0" in capsys.readouterr().err


def test_resume_refuses_every_train_setting_but_the_epochs(corpus, tmp_path, capsys):
    from l0ref.cli import RESUME_FIXED, TRAIN_FIELDS
    assert set(TRAIN_FIELDS) - set(RESUME_FIXED) == {"epochs"}
    out = tmp_path / "run"
    assert main(_train_args(corpus, out, epochs=1, extra=["--dense-start", "0.5"])) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out / "checkpoint.npz"), "--dense-start", "0.2", "--quiet"]) == 2
    assert "--dense-start cannot change on --resume" in capsys.readouterr().err
