"""Fine-tuning a fixed structure (``TrainConfig.finetune``): the last part of a run trains
the weights with every gate at its test-time value, no penalty, the gates frozen."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import _train_args
from tests.test_train import all_arrays, tiny_corpus

from l0ref import gates, tree
from l0ref import models as model
from l0ref import training as train
from l0ref.cli import main
from l0ref.training.tasks import lm_loss_and_grads


def state_with(families=("neurons",), finetune=0.5, epochs=2, optimizer="adam", dropout=0.0, dtype="float64"):
    mc = model.ModelConfig("lstm", 6, 5, (7, 6), gate_families=families)
    cfg = train.TrainConfig(optimizer=optimizer, lr=0.01 if optimizer == "adam" else 1.0, dropout=dropout,
                            dtype=dtype, epochs=epochs, batch_size=4, bptt=6, clip=1.0, seed=3,
                            lam1=(2.0,), lam2=(2.0,), finetune=finetune, log_alpha_lr_scale=5.0)
    st = train.init_state(mc, cfg, n_train_tokens=1200, vocab=[f"t{i}" for i in range(5)] + ["<unk>"])
    for las in st.params[gates.PARAMS_KEY].values():     # some gates near zero, some closed: a structure to keep
        for la in las:
            la.reshape(-1)[::3] = -0.2
            la.reshape(-1)[1::5] = -4.0
    return st


def gate_arrays(st):
    return [a.copy() for a in tree.leaves(st.params[gates.PARAMS_KEY])]


@pytest.mark.parametrize("families", [("neurons",), ("neurons", "preact", "weights")])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_gates_move_before_and_stay_fixed_while_fine_tuning(families, optimizer):
    ids = tiny_corpus(600)
    task = train.LanguageModeling(ids, None)
    st = state_with(families, finetune=0.5, optimizer=optimizer)
    before = gate_arrays(st)
    train.fit(st, task, max_steps=3)                      # fraction < 0.5: sparsifying
    assert not st.fine_tuning
    moved = gate_arrays(st)
    assert any(not np.array_equal(a, b) for a, b in zip(before, moved))
    train.fit(st, task)                                   # to the end: the second half fine-tunes
    assert st.fine_tuning
    assert st.history[-1]["fine_tuning"] and not st.history[0]["fine_tuning"]
    frozen = gate_arrays(st)
    st2 = state_with(families, finetune=0.5, optimizer=optimizer)
    n = len(list(task.batches(st2.config, 0)))
    train.fit(st2, task, max_steps=n + 1)                 # the first step of the fine-tuning epoch
    assert st2.fine_tuning
    for a, b in zip(gate_arrays(st2), frozen):            # nothing moved the gates after the switch
        assert np.array_equal(a, b)
    w_before = st2.params["layers"][0]["W"].copy()
    train.fit(st2, task, max_steps=2)
    assert not np.array_equal(w_before, st2.params["layers"][0]["W"])   # the weights still learn


def test_a_fine_tuning_step_is_the_test_time_network_without_penalty():
    ids = tiny_corpus(600)
    st = state_with(("neurons", "preact", "weights"), finetune=0.9)
    st.fraction = 0.5                                     # in the last 90%
    assert st.fine_tuning
    inputs, targets = next(iter(train.LanguageModeling(ids, None).batches(st.config, 0)))
    fixed = gates.families.eval_gates(st.params[gates.PARAMS_KEY])
    per_seq = gates.families.fixed_gates(st.model_config, st.params[gates.PARAMS_KEY], inputs.shape[1])
    loss_ref, _, _ = lm_loss_and_grads(st.model_config, st.params, inputs, targets, per_seq, None,
                                 0.0, np.random.default_rng(0))
    for name, groups in per_seq.items():                 # the same test-time value for every sequence
        for z, e in zip(groups, fixed[name]):
            assert np.array_equal(z.reshape((-1,) + e.shape)[-1], e)
    stats = train.train_step(st, inputs, targets)
    assert stats["penalty"] == 0.0
    assert stats["loss"] == pytest.approx(loss_ref, rel=1e-12)


def test_fine_tuning_keeps_the_live_neurons_and_constant_gates():
    ids = tiny_corpus(900)
    st = state_with(("neurons", "preact", "weights"), finetune=0.5, epochs=4)
    task = train.LanguageModeling(ids, None)
    n = len(list(task.batches(st.config, 0)))
    train.fit(st, task, max_steps=2 * n + 1)
    assert st.fine_tuning
    masks = [np.asarray(m) != 0 for m in tree.leaves(model.inference_gates(st.params))]
    train.fit(st, task)
    after = [np.asarray(m) != 0 for m in tree.leaves(model.inference_gates(st.params))]
    assert all(np.array_equal(a, b) for a, b in zip(masks, after))


def straight_and_resumed(make_state, stop_at, tmp_path):
    """A run trained straight, and the same run stopped after ``stop_at(batches per epoch)``
    steps, saved, loaded and finished: ``(straight, resumed, resumed as loaded)``."""
    ids = tiny_corpus(900)
    task = train.LanguageModeling(ids, ids[:200])
    straight = make_state()
    train.fit(straight, task)
    part = make_state()
    train.fit(part, task, max_steps=stop_at(len(list(task.batches(part.config, 0)))))
    loaded = train.load_checkpoint(train.save_checkpoint(tmp_path / "ck.npz", part))
    resumed = train.load_checkpoint(tmp_path / "ck.npz")
    train.fit(resumed, task)
    a, b = all_arrays(straight), all_arrays(resumed)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return straight, resumed, loaded


def test_resume_across_the_switch_is_bit_identical(tmp_path):
    make = lambda: state_with(("neurons", "weights"), finetune=0.4, epochs=3, dtype="float32", dropout=0.2)  # noqa: E731
    _, resumed, _ = straight_and_resumed(make, lambda n: n + n // 2, tmp_path)   # mid-epoch 2, before the last 40%
    assert resumed.config.finetune == 0.4


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, True, "0.2"])
def test_an_impossible_fine_tuning_fraction_is_refused(bad):
    with pytest.raises(ValueError, match="finetune must be a fraction of the run in"):
        train.TrainConfig(finetune=bad)


def test_the_command_takes_finetune_and_refuses_a_bad_one(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(corpus, out, epochs=2, extra=["--finetune", "0.5"])) == 0
    st = train.load_checkpoint(out / "checkpoint.npz")
    assert st.config.finetune == 0.5 and st.history[-1]["fine_tuning"] and not st.history[0]["fine_tuning"]
    assert "| fine-tuning |" in train.describe(st.history[-1]) and "fine" not in train.describe(st.history[0])
    assert main(_train_args(corpus, tmp_path / "r2", extra=["--finetune", "1"])) == 2
    assert "finetune must be a fraction of the run in [0, 1), got 1.0" in capsys.readouterr().err
