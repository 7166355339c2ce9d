"""Training: the step, the penalty's effect, evaluation, checkpoints and exact resume."""
from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np
import pytest

from tests.conftest import rewrite_checkpoint

from l0ref import checkpoint as ckpt
from l0ref import data as data_mod
from l0ref import gates, tree
from l0ref import models as model
from l0ref import penalties as penalty
from l0ref import training as train


def tiny_corpus(n_tokens: int = 1200, seed: int = 0) -> np.ndarray:
    """A learnable stream over 6 tokens: a fixed cycle 0 1 2 3 4 with a random 5 inserted."""
    rng = np.random.default_rng(seed)
    out, k = [], 0
    while len(out) < n_tokens:
        out.append(k % 5)
        k += 1
        if rng.random() < 0.2:
            out.append(5)
    return np.array(out[:n_tokens], dtype=np.int64)


def tiny_state(optimizer="sgd", momentum=0.0, dropout=0.2, dtype="float32", epochs=2, seed=0, **kw):
    mc = model.ModelConfig("lstm", 6, 5, (7, 6))
    lr = {"sgd": 1.0, "adam": 0.01}[optimizer]
    cfg = train.TrainConfig(optimizer=optimizer, lr=lr, momentum=momentum, dropout=dropout, dtype=dtype,
                            epochs=epochs, batch_size=4, bptt=6, clip=1.0, seed=seed, lr_decay=1.5,
                            lr_decay_start=1, weight_decay=1e-4, eval_batch_size=3, **kw)
    return train.init_state(mc, cfg, n_train_tokens=1200, vocab=[f"t{i}" for i in range(5)] + ["<unk>"])


def all_arrays(state: train.TrainState) -> dict:
    out = dict(zip(tree.flat_names(state.params), tree.leaves(state.params)))
    for key, moments in state.opt.items():
        out.update({f"opt.{key}.{n}": a for n, a in zip(tree.flat_names(moments), tree.leaves(moments))})
    if state.hidden is not None:
        out.update({f"hidden.{i}": np.asarray(a) for i, a in enumerate(tree.leaves(list(state.hidden)))})
    return out


# --------------------------------------------------------------------------- config


def test_lambdas_are_multiples_of_0_08_over_N():
    cfg = train.TrainConfig(lam1=(2.0, 3.0), lam2=(0.5,))
    lam1, lam2 = train.PenaltyWeights.from_config(cfg, 2, 1000).current()
    assert lam1 == pytest.approx([2 * 0.08 / 1000, 3 * 0.08 / 1000], rel=1e-15)
    assert lam2 == pytest.approx([0.5 * 0.08 / 1000] * 2, rel=1e-15)
    with pytest.raises(ValueError, match="lam1 has 2 values for 3 layers"):
        train.PenaltyWeights.from_config(cfg, 3, 1000)


@pytest.mark.parametrize("kw, match", [
    ({"lam1": (-1.0,)}, "lam1"),
    ({"lam2": (float("nan"),)}, "lam2"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"batch_size": 0}, "batch_size"),
    ({"bptt": 0}, "bptt"),
    ({"lr": 0.0}, "lr"),
    ({"clip": -1.0}, "clip"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"lr_decay": 0.5}, "lr_decay"),
    ({"dtype": "float16"}, "dtype"),
    ({"epochs": 0}, "epochs"),
])
def test_impossible_settings_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        train.TrainConfig(**kw)


def test_config_roundtrips_through_json():
    cfg = train.TrainConfig(lam1=(1.0, 2.0), optimizer="adam", init_range=0.08)
    assert train.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown train config keys"):
        train.TrainConfig.from_dict({**cfg.to_dict(), "nonsense": 1})


# --------------------------------------------------------------------------- the step


def test_sgd_step_applies_data_penalty_and_decay_gradients():
    """With clipping off, an SGD step moves every parameter by -lr * (dL/dw + dR/dw + wd*w),
    the data gradient taken with the same gate and dropout draws (a copy of the rng)."""
    st = tiny_state(dtype="float64", dropout=0.3, epochs=1)
    st.config = train.TrainConfig(**{**st.config.to_dict(), "clip": 0.0, "log_alpha_lr_scale": 2.0})
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 6, (5, 4)), rng.integers(0, 6, (5, 4))
    before = tree.map_tree(np.copy, st.params)
    twin = np.random.Generator(np.random.PCG64())
    twin.bit_generator.state = st.rng.bit_generator.state
    stats = train.train_step(st, x, y)

    la = before["log_alpha"]["neurons"]
    u = gates.draw_uniforms(la, 4, twin)
    loss, _, cache = model.forward(st.model_config, before, x, y, gates.sample_gates(la, u), dropout=0.3, rng=twin)
    g = model.backward(cache)
    d_la = gates.log_alpha_grads(la, u, g.pop("gates")["neurons"])
    pen, d_pen = penalty.penalty(la, *st.penalty_weights.current())
    assert stats["loss"] == pytest.approx(loss, rel=1e-12)
    assert stats["penalty"] == pytest.approx(pen, rel=1e-12)
    lr, wd = st.config.lr, st.config.weight_decay
    np.testing.assert_allclose(st.params["out_W"], before["out_W"] - lr * (g["out_W"] + wd * before["out_W"]), rtol=1e-12)
    np.testing.assert_allclose(st.params["out_b"], before["out_b"] - lr * g["out_b"], rtol=1e-12)  # no decay on biases
    np.testing.assert_allclose(st.params["layers"][1]["U"],
                               before["layers"][1]["U"] - lr * (g["layers"][1]["U"] + wd * before["layers"][1]["U"]),
                               rtol=1e-12)
    for l in range(3):   # log_alpha: no decay, its own learning-rate multiplier
        np.testing.assert_allclose(st.params["log_alpha"]["neurons"][l], la[l] - 2.0 * lr * (d_la[l] + d_pen[l]), rtol=1e-12)
    assert st.step == 1 and st.tokens_seen == 20


def test_clipping_bounds_the_global_norm_including_log_alpha():
    st = tiny_state(dtype="float64", epochs=1)
    st.config = train.TrainConfig(**{**st.config.to_dict(), "clip": 1e-3, "weight_decay": 0.0, "lr": 1.0})
    before = tree.leaves(tree.map_tree(np.copy, st.params))
    x = np.random.default_rng(2).integers(0, 6, (6, 4))
    stats = train.train_step(st, x, np.roll(x, 1, axis=0))
    step = [b - a for a, b in zip(tree.leaves(st.params), before)]
    assert stats["grad_norm"] > 1e-3
    assert math.sqrt(sum(float(np.vdot(d, d)) for d in step)) == pytest.approx(1e-3, rel=1e-9)
    assert np.any(step[tree.flat_names(st.params).index("log_alpha.neurons.0")] != 0)


def test_loss_falls_on_a_tiny_corpus():
    ids = tiny_corpus()
    st = tiny_state(optimizer="adam", epochs=6, lam1=(0.0,), lam2=(0.0,))
    st.config = train.TrainConfig(**{**st.config.to_dict(), "lr_decay": 1.0})
    train.fit(st, train.LanguageModeling(ids, ids[:300]))
    first, last = st.history[0], st.history[-1]
    # The cycle makes 4 of every ~5 tokens predictable: far below the unigram entropy.
    counts = np.bincount(ids, minlength=6) / ids.size
    unigram = float(-(counts * np.log(counts)).sum())
    assert last["train_loss"] < 0.6 * first["train_loss"]
    assert last["valid_loss"] < 0.6 * unigram
    assert [h["epoch"] for h in st.history] == list(range(1, 7))


def test_penalty_closes_the_gates_of_useless_inputs():
    """A copy task (target = input token) whose embedding is held fixed: columns 0-2 code the
    token in +-1 bits, columns 3-5 are constant (they carry no information; the bias can do
    their job).  The penalty must drive the useless columns' log_alpha down until their
    test-time gates are exactly 0, while the informative columns stay open and the task is
    learned."""
    V, e = 8, 6
    mc = model.ModelConfig("lstm", V, e, (12,))
    cfg = train.TrainConfig(optimizer="adam", lr=0.02, clip=0.0, dropout=0.0, weight_decay=0.0,
                            lam1=(20.0,), lam2=(1.0,), log_alpha_lr_scale=5.0, seed=3, dtype="float64")
    st = train.init_state(mc, cfg, n_train_tokens=300)
    bits = ((np.arange(V)[:, None] >> np.arange(3)) & 1) * 2.0 - 1.0
    emb = np.concatenate([bits, np.ones((V, 3))], axis=1)
    st.params["emb"][...] = emb
    start = st.params["log_alpha"]["neurons"][0].copy()
    rng = np.random.default_rng(0)
    for _ in range(400):
        x = rng.integers(0, V, (10, 16))
        stats = train.train_step(st, x, x)
        st.params["emb"][...] = emb     # the embedding stays fixed: the only freedom is in the gates
        st.hidden = None
    la = st.params["log_alpha"]["neurons"][0]
    z = gates.deterministic_gates(st.params["log_alpha"]["neurons"])[0]
    assert np.all(la[3:] < start[3:] - 3)
    assert np.all(z[3:] == 0.0)
    assert np.all(z[:3] > 0.5)
    assert stats["loss"] < 0.05 * math.log(V)


# --------------------------------------------------------------------------- evaluation


def test_evaluate_carries_state_across_windows():
    st = tiny_state(dtype="float64", epochs=1)
    ids = tiny_corpus(200, seed=4)
    g = gates.deterministic_gates(st.params["log_alpha"]["neurons"])
    whole = train.evaluate(st.model_config, st.params, ids, batch_size=1, bptt=1000, gates=g)
    pieces = train.evaluate(st.model_config, st.params, ids, batch_size=1, bptt=7, gates=g)
    logp, _ = model.log_probs(st.model_config, st.params, ids[:-1, None], gates=g)
    direct = -float(np.take_along_axis(logp, ids[1:, None, None], axis=-1).mean())
    assert whole == pytest.approx(direct, rel=1e-12)
    assert pieces == pytest.approx(direct, rel=1e-12)


def test_expected_size_counts_live_neurons_and_expected_weights():
    st = tiny_state(dtype="float64")
    st.params["log_alpha"]["neurons"][1][:3] = -10.0          # three hidden units of layer 1 closed
    s = train.expected_size(st.model_config, st.params)
    assert s["live"] == [5, 4, 6]
    assert s["recurrent_weights"] == 4 * (5 * 7 + 7 * 7) + 4 * (7 * 6 + 6 * 6)
    assert 0 < s["expected_nonzero"] < s["recurrent_weights"]


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("optimizer, momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)])
def test_resume_is_bit_identical(tmp_path, optimizer, momentum):
    ids = tiny_corpus(900)
    straight = tiny_state(optimizer, momentum, epochs=3)
    train.fit(straight, train.LanguageModeling(ids, ids[:200]))
    n_windows = len(list(data_mod.windows(data_mod.batchify(ids, 4), 6)))
    for k in (5, n_windows):                        # stop mid-epoch, and at an epoch's end
        part = tiny_state(optimizer, momentum, epochs=3)
        train.fit(part, train.LanguageModeling(ids, ids[:200]), max_steps=k)
        assert part.step == k
        path = tmp_path / f"ck{k}.npz"
        train.save_checkpoint(path, part)
        resumed = train.load_checkpoint(path)
        train.fit(resumed, train.LanguageModeling(ids, ids[:200]))
        a, b = all_arrays(straight), all_arrays(resumed)
        assert a.keys() == b.keys()
        for name in a:
            assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
        assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state
        assert (resumed.step, resumed.epoch, resumed.lr) == (straight.step, straight.epoch, straight.lr)
        strip = lambda h: [{k: v for k, v in r.items() if k not in ("elapsed", "tokens_per_s")} for r in h]  # noqa: E731
        assert strip(resumed.history) == strip(straight.history)


def test_checkpoint_roundtrip_keeps_everything(tmp_path):
    st = tiny_state("adam", epochs=2)
    ids = tiny_corpus(600)
    train.fit(st, train.LanguageModeling(ids, None), max_steps=4)
    st.meta["note"] = {"x": [1, 2]}
    path = train.save_checkpoint(tmp_path / "a.npz", st)
    with np.load(path, allow_pickle=False) as npz:       # arrays only, no pickles
        assert all(npz[k].dtype != object for k in npz.files)
    back = train.load_checkpoint(path)
    assert back.model_config == st.model_config and back.config == st.config
    assert back.vocab == st.vocab and back.meta == st.meta and back.history == st.history
    assert (back.step, back.epoch, back.position, back.opt_t) == (st.step, st.epoch, st.position, st.opt_t)
    assert isinstance(back.hidden[0], tuple)
    a, b = all_arrays(st), all_arrays(back)
    assert all(np.array_equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def _saved(tmp_path):
    st = tiny_state("sgd", 0.9)
    train.fit(st, train.LanguageModeling(tiny_corpus(600), None), max_steps=2)
    path = tmp_path / "ck.npz"
    train.save_checkpoint(path, st)
    return st, path


def test_crash_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    old, path = _saved(tmp_path)
    old_bytes = path.read_bytes()
    newer = train.load_checkpoint(path)
    train.fit(newer, train.LanguageModeling(tiny_corpus(600), None), max_steps=3)

    def half_then_crash(fh, arrays):
        fh.write(b"PK\x03\x04 partial archive")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt, "_write_npz", half_then_crash)
    with pytest.raises(OSError, match="simulated"):
        train.save_checkpoint(path, newer)
    assert path.read_bytes() == old_bytes
    assert train.load_checkpoint(path).step == old.step
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]          # the temporary file is gone

    monkeypatch.undo()
    monkeypatch.setattr(ckpt.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("crash before rename")))
    with pytest.raises(OSError, match="rename"):
        train.save_checkpoint(path, newer)
    monkeypatch.undo()
    assert train.load_checkpoint(path).step == old.step
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]
    train.save_checkpoint(path, newer)                          # and a normal save still replaces it
    assert train.load_checkpoint(path).step == newer.step


_rewrite = rewrite_checkpoint


@pytest.mark.parametrize("damage, match", [
    ("truncate", "not a readable"),
    ("garbage", "not a readable"),
    ("empty", "not a readable"),
    ("no_header", "no '__header__'"),
    ("bad_json", "not valid UTF-8 JSON"),
    ("wrong_format", "format is 'l0ref-compact'"),
    ("wrong_version", "version 99"),
    ("wrong_shape", "shape"),
    ("missing_array", "layers.1 has arrays"),
    ("extra_array", "unexpected arrays"),
    ("wrong_optimizer", "optimizer state"),
    ("bad_rng", "random-generator"),
    ("bad_config", "model config|cell"),
    ("wrong_dtype", "dtype"),
])
def test_damaged_checkpoints_raise_value_error(tmp_path, damage, match):
    _, path = _saved(tmp_path)
    bad = tmp_path / f"{damage}.npz"
    raw = path.read_bytes()
    if damage == "truncate":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        bad.write_bytes(np.random.default_rng(0).bytes(2000))
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "no_header":
        np.savez(bad, x=np.zeros(3))
    elif damage == "bad_json":
        with zipfile.ZipFile(bad, "w") as z, zipfile.ZipFile(path) as src:
            for item in src.namelist():
                data = src.read(item)
                if item == "__header__.npy":
                    import io
                    buf = io.BytesIO()
                    np.save(buf, np.frombuffer(b"{not json", np.uint8))
                    data = buf.getvalue()
                z.writestr(item, data)
    elif damage == "wrong_format":
        _rewrite(path, bad, edit_header=lambda h: h.update(format="l0ref-compact"))
    elif damage == "wrong_version":
        _rewrite(path, bad, edit_header=lambda h: h.update(version=99))
    elif damage == "wrong_shape":
        _rewrite(path, bad, edit_arrays=lambda a: a.update({"params/out_W": np.zeros((6, 3), np.float32)}))
    elif damage == "missing_array":
        _rewrite(path, bad, edit_arrays=lambda a: a.pop("params/layers.1.U"))
    elif damage == "extra_array":
        _rewrite(path, bad, edit_arrays=lambda a: a.update({"stray": np.zeros(2)}))
    elif damage == "wrong_optimizer":
        _rewrite(path, bad, edit_header=lambda h: h["train_config"].update(optimizer="adam"))
    elif damage == "bad_rng":
        _rewrite(path, bad, edit_header=lambda h: h.update(rng={"bit_generator": "PCG64", "state": "x"}))
    elif damage == "bad_config":
        _rewrite(path, bad, edit_header=lambda h: h["model_config"].update(cell="transformer"))
    elif damage == "wrong_dtype":
        _rewrite(path, bad, edit_header=lambda h: h["train_config"].update(dtype="float64"))
    with pytest.raises(ValueError, match=match) as info:
        train.load_checkpoint(bad)
    assert str(bad) in str(info.value)


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        train.load_checkpoint(tmp_path / "nope.npz")


# --------------------------------------------------------------------------- penalty weights as state


def test_changed_penalty_weights_survive_a_checkpoint_and_resume_exactly(tmp_path):
    """The lambdas are training state (``training/weights.py``): weights changed during
    training (as a controller would) are what a resumed run continues with, not the
    config's, and the continuation is bit for bit the straight run's."""
    ids = tiny_corpus(900)

    def raise_lambdas(st):
        st.penalty_weights.lam1 = [3 * x for x in st.penalty_weights.lam1]
        st.penalty_weights.lam2 = [0.5 * st.penalty_weights.lam2[0], 7e-3]

    straight = tiny_state("adam", epochs=2)
    train.fit(straight, train.LanguageModeling(ids, None), max_steps=5)
    raise_lambdas(straight)
    train.fit(straight, train.LanguageModeling(ids, None))

    part = tiny_state("adam", epochs=2)
    train.fit(part, train.LanguageModeling(ids, None), max_steps=5)
    raise_lambdas(part)
    path = train.save_checkpoint(tmp_path / "ck.npz", part)
    resumed = train.load_checkpoint(path)
    assert resumed.penalty_weights == part.penalty_weights
    assert resumed.penalty_weights != train.PenaltyWeights.from_config(part.config, 2, part.n_train_tokens)
    train.fit(resumed, train.LanguageModeling(ids, None))
    a, b = all_arrays(straight), all_arrays(resumed)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad", [{"kind": "fixed", "lam1": [1.0], "lam2": [1.0, 2.0]},
                                 {"kind": "controller", "lam1": [1.0, 1.0], "lam2": [1.0, 1.0]},
                                 {"kind": "fixed", "lam1": [1.0, "x"], "lam2": [1.0, 1.0]},
                                 {"kind": "fixed", "lam1": [1.0, -1.0], "lam2": [1.0, 1.0]}])
def test_bad_penalty_weights_in_a_checkpoint_are_refused(tmp_path, bad):
    _, path = _saved(tmp_path)
    _rewrite(path, tmp_path / "bad.npz", edit_header=lambda h: h.update(penalty_weights=bad))
    with pytest.raises(ValueError, match="bad.npz: .*(penalty weights|lam1)"):
        train.load_checkpoint(tmp_path / "bad.npz")


def test_version_1_checkpoints_still_load(tmp_path):
    """Version 1 named the neuron gates ``log_alpha.<k>`` and kept no penalty weights."""
    st, path = _saved(tmp_path)

    def to_v1(arrays):
        for k in [k for k in arrays if "log_alpha.neurons." in k]:
            arrays[k.replace("log_alpha.neurons.", "log_alpha.")] = arrays.pop(k)

    def header_v1(h):
        h["version"] = 1
        del h["penalty_weights"]
        h["model_config"].pop("gate_families")
    _rewrite(path, tmp_path / "v1.npz", edit_header=header_v1, edit_arrays=to_v1)
    old = train.load_checkpoint(tmp_path / "v1.npz")
    a, b = all_arrays(st), all_arrays(old)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert old.penalty_weights == st.penalty_weights
