"""A size target instead of lambdas (``penalties/expected_size.py``, ``training/weights.py``):
the expected size in closed form against brute force and finite differences, the
Lagrangian's gradient, checkpointed multipliers, and targets that cannot be met refused."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from l0ref import cli, compact, hard_concrete, models, penalties, sizes
from l0ref import training as train
from tests.gradcheck import check_gradients
from tests.conftest import _train_args


def tiny_model(cell="lstm", sizes=(3, (2, 3)), seed=0, depth=2):
    opts = {"depth": depth} if cell == "rhn" else {}
    cfg = models.ModelConfig(cell, 7, sizes[0], sizes[1], opts)
    rng = np.random.default_rng(seed)
    return cfg, [rng.normal(0, 2, n) for n in cfg.group_sizes]


@pytest.mark.parametrize("measure", ["macs", "params"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rhn"])
def test_expected_size_is_the_expectation_over_every_gate_configuration(cell, measure):
    """Sum over all 2**8 live/dead patterns of the 8 neurons, each weighted by its
    probability under Eq. 9, of the compact model's size (``realized_size``)."""
    cfg, la = tiny_model(cell)
    p = [hard_concrete.prob_nonzero(a) for a in la]
    sizes = cfg.group_sizes
    brute = 0.0
    for bits in itertools.product([0, 1], repeat=sum(sizes)):
        live, prob, i = [], 1.0, 0
        for g, n in enumerate(sizes):
            b = np.array(bits[i:i + n], float)
            prob *= np.prod(np.where(b == 1, p[g], 1 - p[g]))
            live.append(b)
            i += n
        brute += prob * penalties.realized_size(cfg, live, measure)
    assert penalties.expected_size(cfg, la, measure)[0] == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("measure", ["macs", "params"])
def test_expected_size_gradient_matches_finite_differences(measure):
    cfg, la = tiny_model(sizes=(4, (5, 3)))
    _, grads = penalties.expected_size(cfg, la, measure)
    check_gradients(lambda: penalties.expected_size(cfg, la, measure)[0],
                    {f"g{j}": a for j, a in enumerate(la)}, {f"g{j}": g for j, g in enumerate(grads)})


def test_realized_size_counts_what_compaction_keeps():
    cfg = models.ModelConfig("gru", 11, 6, (5, 4))
    rng = np.random.default_rng(3)
    params = models.init_params(cfg, rng, dtype=np.float64)
    params["log_alpha"]["neurons"] = [rng.choice([-6.0, 0.5, 3.0], n) for n in cfg.group_sizes]
    report = sizes.size_report(compact.compact(cfg, params))
    gates = models.inference_gates(params)
    assert penalties.realized_size(cfg, gates, "macs") == report.macs_after
    assert penalties.full_size(cfg, "macs") == report.macs_before


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9])
def test_lagrangian_gradient_matches_finite_differences(fraction):
    cfg, la = tiny_model(sizes=(4, (5, 3)))
    ctrl = train.TargetController("macs", 0.4, 0.5, 0.1, lam1=0.7, lam2=1.3)
    _, grads = ctrl.penalty(cfg, {"neurons": la}, fraction)
    grads = grads["neurons"]
    check_gradients(lambda: ctrl.penalty(cfg, {"neurons": la}, fraction)[0],
                    {f"g{j}": a for j, a in enumerate(la)}, {f"g{j}": g for j, g in enumerate(grads)})


def test_target_ramps_in_and_multipliers_ascend():
    ctrl = train.TargetController("macs", 0.3, 0.5, 0.1)
    assert [ctrl.target_at(f) for f in (0.0, 0.25, 0.5, 0.9)] == pytest.approx([1.0, 0.65, 0.3, 0.3])
    cfg, la = tiny_model()
    la = [np.full_like(a, 8.0) for a in la]          # every gate open: realized 1 > target
    ctrl.after_step(cfg, la, 0.9)
    d = (1.0 - 0.3) / 0.3                               # the relative distance to the target
    assert ctrl.lam1 == pytest.approx(0.1 * d) and ctrl.lam2 == pytest.approx(0.1 * d * d)
    assert train.weights.from_json(ctrl.to_json(), 2) == ctrl


def tiny_target_state(**kw):
    mc = models.ModelConfig("lstm", 6, 4, (5, 5))
    cfg = train.TrainConfig(epochs=2, batch_size=4, bptt=6, optimizer="adam", lr=0.01, dropout=0.0,
                            target_macs=0.4, target_lr=0.2, **kw)
    return train.init_state(mc, cfg, n_train_tokens=900)


def test_resume_with_a_target_is_bit_identical(tmp_path):
    ids = np.random.default_rng(0).integers(0, 6, 900)
    straight = tiny_target_state()
    train.fit(straight, train.LanguageModeling(ids, None))
    part = tiny_target_state()
    train.fit(part, train.LanguageModeling(ids, None), max_steps=7)
    assert part.penalty_weights.lam1 != 0
    path = train.save_checkpoint(tmp_path / "ck.npz", part)
    resumed = train.load_checkpoint(path)
    assert resumed.penalty_weights == part.penalty_weights
    train.fit(resumed, train.LanguageModeling(ids, None))
    assert resumed.penalty_weights == straight.penalty_weights
    for a, b in zip(models.neuron_log_alpha(resumed.params), models.neuron_log_alpha(straight.params)):
        assert np.array_equal(a, b)
    assert np.array_equal(resumed.params["out_W"], straight.params["out_W"])


@pytest.mark.parametrize("target", [None, 0.4])
def test_under_a_target_the_gates_keep_the_initial_learning_rate(target):
    """The lr decay slows the weights; under a size target it leaves the gates alone (the
    controller holds the size to the last step), with fixed lambdas it slows them too.
    SGD, no clipping: a step moves each array by lr x its gradient, so the step of a
    decayed state over that of an undecayed twin is 1 for the gates, 1/4 for the weights
    under a target, 1/4 for both without."""
    mc = models.ModelConfig("lstm", 6, 4, (5, 5))
    cfg = train.TrainConfig(epochs=2, batch_size=4, bptt=6, optimizer="sgd", lr=0.5, clip=0.0, dropout=0.0,
                            weight_decay=0.0, target_macs=target, dtype="float64")
    x, y = np.random.default_rng(0).integers(0, 6, (6, 4)), np.random.default_rng(1).integers(0, 6, (6, 4))
    steps = []
    for lr in (0.5, 0.125):
        st = train.init_state(mc, cfg, n_train_tokens=900)
        st.lr = lr                                        # as after two epochs of decay by 2
        before = {"gate": models.neuron_log_alpha(st.params)[1].copy(), "weight": st.params["out_W"].copy()}
        train.train_step(st, x, y)
        steps.append({"gate": models.neuron_log_alpha(st.params)[1] - before["gate"],
                      "weight": st.params["out_W"] - before["weight"]})
    np.testing.assert_allclose(steps[1]["weight"], steps[0]["weight"] / 4, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(steps[1]["gate"], steps[0]["gate"] / (1 if target else 4), rtol=1e-9, atol=1e-15)
    assert np.abs(steps[0]["gate"]).max() > 0


@pytest.mark.parametrize("value", ["0", "1", "nan", "1.5", "-0.2"])
def test_impossible_targets_are_refused(corpus, tmp_path, capsys, value):
    assert cli.main(_train_args(corpus, tmp_path / "r", epochs=1, extra=["--target-macs", value])) == 2
    err = capsys.readouterr().err
    assert ("target_macs must be a fraction strictly between 0 and 1" in err or "not finite" in err), err
    assert not (tmp_path / "r").exists()


def test_a_target_replaces_the_lambdas(corpus, tmp_path, capsys):
    assert cli.main(_train_args(corpus, tmp_path / "r", epochs=1, extra=["--target-macs", "0.3", "--lam1", "2"])) == 2
    assert "replaces --lam1/--lam2" in capsys.readouterr().err
    assert cli.main(_train_args(corpus, tmp_path / "r", epochs=1, extra=["--target-lr", "0.3"])) == 2
    assert "apply with --target-macs" in capsys.readouterr().err


def test_training_with_a_target_ends_at_the_target(tmp_path):
    """``l0ref train --target-macs 0.3`` on a small corpus: the compact model has 0.3 of the
    multiply-adds per token, +-5% (relative), and says so in its summary."""
    import json

    from tests.conftest import _lines
    rng = np.random.default_rng(0)
    (tmp_path / "train.txt").write_text(_lines(3000, rng))
    (tmp_path / "valid.txt").write_text(_lines(200, rng))
    out = tmp_path / "run"
    assert cli.main(["train", "--train", str(tmp_path / "train.txt"), "--valid", str(tmp_path / "valid.txt"),
                     "--emb", "32", "--hidden", "64", "64", "--batch-size", "10", "--bptt", "20", "--epochs", "16",
                     "--dropout", "0", "--lr-decay-start", "100", "--target-macs", "0.3", "--quiet",
                     "--timing-seconds", "0", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["target"]["measure"] == "macs" and s["target"]["target"] == 0.3
    assert s["target"]["realized"] == s["macs_after"] / s["macs_before"]
    assert abs(s["target"]["realized"] / 0.3 - 1) <= 0.05, s["target"]
