"""Compaction (``l0ref.compact``, ``docs/design.md`` section 5): mask-to-structure equivalence,
the size report, and the compact model's files.

Equivalence: the masked full model, ``model.log_probs(config, params, tokens, gates=g)``,
and the compact model, ``model.log_probs(cm.config, cm.params, tokens)``, give the same
log-probabilities to 1e-12 in float64 and 1e-5 in float32, relative to the size of the
log-probabilities (at least 1: they are O(1) numbers, and one near 0 would make a purely
elementwise relative test measure nothing but its own smallness).
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l0ref import compact as C
from l0ref import sizes
from l0ref import gates as gates_mod
from l0ref import tree
from l0ref import models as model
from l0ref.cells import CELLS
from tests.strategies import lm_problem, token_arrays

SETTINGS = settings(max_examples=25)
RTOL = {np.float64: 1e-12, np.float32: 1e-5}
DEPTH = 2  #: RHN depth of the hand-built examples


def assert_same_log_probs(actual, desired, dtype):
    rtol = RTOL[dtype]
    assert actual.dtype == desired.dtype == dtype
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * max(1.0, float(np.abs(desired).max())))


def cast(params, dtype):
    return tree.map_tree(lambda a: np.asarray(a, dtype), params)


def options(name):
    return {"depth": DEPTH} if name == "rhn" else {}


def random_model(name, V=7, e=3, hidden=(4, 3, 2), dtype=np.float64, seed=0):
    config = model.ModelConfig(name, V, e, hidden, options(name))
    params = model.init_params(config, np.random.default_rng(seed), dtype, init_range=0.8)
    params["out_b"] = np.random.default_rng(seed + 1).uniform(-1, 1, V).astype(dtype)
    return config, params


def random_gates(config, rng, zero_groups=(), p_zero=0.3):
    """Gates in (0, 1] with some exact zeros and ones; the groups in ``zero_groups`` all 0."""
    out = []
    for j, size in enumerate(config.group_sizes):
        g = rng.uniform(0.05, 1.0, size)
        g[rng.random(size) < 0.2] = 1.0
        g[rng.random(size) < p_zero] = 0.0
        out.append(np.zeros(size) if j in zero_groups else g)
    return out


def check_equivalence(config, params, g, tokens, dtype):
    """Masked full == compact, for the log-probabilities and the kept part of the final
    states, and again for a second chunk that continues from those states."""
    cm = C.compact(config, params, g)
    full, finals = model.log_probs(config, params, tokens, g)
    small, small_finals = cm.log_probs(tokens)
    assert_same_log_probs(small, full, dtype)
    for a, b in zip(tree.leaves(C.compact_state(cm, finals)), tree.leaves(small_finals)):
        np.testing.assert_allclose(b, a, rtol=RTOL[dtype], atol=RTOL[dtype])
    full2, _ = model.log_probs(config, params, tokens[::-1], g, finals)
    small2, _ = cm.log_probs(tokens[::-1], C.compact_state(cm, finals))
    assert_same_log_probs(small2, full2, dtype)
    return cm


def check_compact_layout(cm, config, g, dtype):
    assert cm.original == config
    assert cm.config.cell == config.cell and cm.config.cell_options == config.cell_options
    assert cm.config.group_sizes == [len(k) for k in cm.kept]
    for k, gl in zip(cm.kept, g):
        np.testing.assert_array_equal(k, np.flatnonzero(np.asarray(gl, dtype) != 0))
    assert "log_alpha" not in cm.params
    model.check_params(cm.config, cm.params)
    for a in tree.leaves(cm.params):
        assert a.dtype == dtype and a.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(CELLS))
@SETTINGS
@given(data=st.data())
def test_masked_model_equals_compact_model(name, dtype, data):
    p = data.draw(lm_problem(name, max_steps=4, per_sequence=False, max_size=4, max_layers=3))
    config, params, g = p["config"], cast(p["params"], dtype), p["gates"]
    cm = check_equivalence(config, params, g, p["tokens"], dtype)
    check_compact_layout(cm, config, g, dtype)


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("pruned", [[0], [1], [2], [3], [1, 3], [0, 1, 2, 3]],
                         ids=["embedding", "layer1", "layer2", "last", "layer1+last", "all"])
def test_whole_group_pruned(name, pruned):
    """A fully pruned group becomes size 0; the next layer runs on no input, and with the
    last layer gone the output is the softmax bias alone."""
    config, params = random_model(name)
    rng = np.random.default_rng(3)
    g = random_gates(config, rng, zero_groups=pruned, p_zero=0.0)
    tokens = rng.integers(0, config.vocab_size, (5, 2))
    cm = check_equivalence(config, params, g, tokens, np.float64)
    check_compact_layout(cm, config, g, np.float64)
    assert [j for j, size in enumerate(cm.config.group_sizes) if size == 0] == pruned
    if 3 in pruned:
        assert cm.params["out_W"].shape == (config.vocab_size, 0)
        logp, _ = cm.log_probs(tokens)
        np.testing.assert_allclose(logp, np.broadcast_to(model.log_softmax(params["out_b"]), logp.shape),
                                   rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_all_kept_leaves_the_weights_unchanged(name):
    """Gates all one: nothing is cut, every factor is 1, the arrays and outputs are the same."""
    config, params = random_model(name)
    g = [np.ones(size) for size in config.group_sizes]
    cm = C.compact(config, params, g)
    assert cm.config == config
    ref = {k: v for k, v in params.items() if k != "log_alpha"}
    assert tree.flat_names(cm.params) == tree.flat_names(ref)
    for a, b in zip(tree.leaves(cm.params), tree.leaves(ref)):
        np.testing.assert_array_equal(a, b)
    tokens = np.random.default_rng(1).integers(0, config.vocab_size, (4, 3))
    np.testing.assert_array_equal(cm.log_probs(tokens)[0], model.log_probs(config, params, tokens, g)[0])


@pytest.mark.parametrize("name", sorted(CELLS))
def test_default_gates_are_the_test_time_gates(name):
    """Without gates, compaction takes Eq. 10, 11 of ``log_alpha``: -50 prunes, +50 gives 1."""
    config, params = random_model(name)
    rng = np.random.default_rng(5)
    params["log_alpha"] = {"neurons": [rng.choice([-50.0, -3.0, 0.3, 1.0, 50.0], size) for size in config.group_sizes]}
    g = gates_mod.deterministic_gates(params["log_alpha"]["neurons"])
    assert any((gl == 0).any() for gl in g) and any(((gl > 0) & (gl < 1)).any() for gl in g)
    cm = C.compact(config, params)
    for k, gl in zip(cm.kept, g):
        np.testing.assert_array_equal(k, np.flatnonzero(gl))
    tokens = rng.integers(0, config.vocab_size, (4, 2))
    assert_same_log_probs(cm.log_probs(tokens)[0], model.log_probs(config, params, tokens, g)[0], np.float64)


def test_bad_gates_are_rejected():
    config, params = random_model("lstm")
    ones = [np.ones(size) for size in config.group_sizes]
    with pytest.raises(ValueError, match="got 3 gate groups, the model has 4"):
        C.compact(config, params, ones[:3])
    with pytest.raises(ValueError, match=r"gate group 1 has shape \(2, 4\); compaction needs .* \(4,\)"):
        C.compact(config, params, [ones[0], np.ones((2, 4))] + ones[2:])
    for bad, message in ((np.nan, "contains NaN or inf"), (1.5, r"outside \[0, 1\]"), (-0.5, r"outside \[0, 1\]")):
        g = [a.copy() for a in ones]
        g[2][0] = bad
        with pytest.raises(ValueError, match=f"gate group 2 {message}" if "NaN" in message else message):
            C.compact(config, params, g)
    without = {k: v for k, v in params.items() if k != "log_alpha"}
    with pytest.raises(ValueError, match="the parameters have no neuron gates"):
        C.compact(config, without)
    with pytest.raises(ValueError, match=r"parameter out_W has shape"):
        C.compact(config, {**params, "out_W": params["out_W"][:, :1]}, ones)


# --- The size report ---------------------------------------------------------------------

def hand_model():
    """LSTM, V = 10, e = 6, hidden (5, 4); kept 4 of 6, 3 of 5, 2 of 4."""
    config, params = random_model("lstm", V=10, e=6, hidden=(5, 4))
    g = [np.array([0.5, 0, 1, 0, 0.25, 1.0]), np.array([0, 1, 0.5, 0, 1.0]), np.array([0, 0.75, 0, 1.0])]
    return config, params, g


def test_size_report_against_a_hand_count():
    config, params, g = hand_model()
    report = sizes.size_report(C.compact(config, params, g))
    assert report.groups == [("embedding", 4, 6), ("layer 1", 3, 5), ("layer 2", 2, 4)]
    rows = {c.name: c for c in report.components}
    assert list(rows) == ["embedding", "layer 1", "layer 2", "softmax"]
    # parameters: embedding V*e; LSTM 4n*m + 4n*n + 4n; softmax V*n + V
    expected_params = {"embedding": (10 * 6, 10 * 4),
                       "layer 1": (20 * 6 + 20 * 5 + 20, 12 * 4 + 12 * 3 + 12),
                       "layer 2": (16 * 5 + 16 * 4 + 16, 8 * 3 + 8 * 2 + 8),
                       "softmax": (10 * 4 + 10, 10 * 2 + 10)}
    # multiply-adds per token: lookup 0; LSTM 4n*m + 4n*n; softmax V*n
    expected_macs = {"embedding": (0, 0),
                     "layer 1": (20 * 6 + 20 * 5, 12 * 4 + 12 * 3),
                     "layer 2": (16 * 5 + 16 * 4, 8 * 3 + 8 * 2),
                     "softmax": (10 * 4, 10 * 2)}
    for name, c in rows.items():
        assert (c.params_before, c.params_after) == expected_params[name], name
        assert (c.macs_before, c.macs_after) == expected_macs[name], name
    assert (report.params_before, report.params_after) == (510, 214)
    assert (report.macs_before, report.macs_after) == (404, 144)


#: Per cell, by hand: (parameters, multiply-adds per token) of a layer with input m, hidden n.
HAND_LAYER_COUNTS = {
    "lstm": lambda m, n: (4 * n * m + 4 * n * n + 4 * n, 4 * n * m + 4 * n * n),
    "gru": lambda m, n: (3 * n * m + 3 * n * n + 2 * 3 * n, 3 * n * m + 3 * n * n),
    "rhn": lambda m, n: (2 * n * m + DEPTH * 2 * n * n + DEPTH * 2 * n, 2 * n * m + DEPTH * 2 * n * n),
}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_size_report_counts_every_gate_block(name):
    config, params = random_model(name, V=9, e=5, hidden=(6, 4))
    g = random_gates(config, np.random.default_rng(2), zero_groups=[2])
    cm = C.compact(config, params, g)
    report = cm.size_report()
    for before_after, cfg in ((0, config), (1, cm.config)):
        m, sizes = cfg.emb_size, []
        for n in cfg.hidden_sizes:
            sizes.append(HAND_LAYER_COUNTS[name](m, n))
            m = n
        V = cfg.vocab_size
        params_total = V * cfg.emb_size + sum(p for p, _ in sizes) + V * m + V
        macs_total = sum(k for _, k in sizes) + V * m
        got = ((report.params_before, report.macs_before), (report.params_after, report.macs_after))
        assert got[before_after] == (params_total, macs_total)
    assert report.params_before == model.n_params(config, params)
    assert report.params_after == model.n_params(cm.config, cm.params)
    assert report.components[-1].macs_after == 0           # the last layer is pruned away


def test_format_size_report_is_a_readable_table():
    config, params, g = hand_model()
    text = sizes.format_size_report(C.compact(config, params, g))
    lines = text.splitlines()
    assert lines[0] == "compacted lstm model"
    assert any(line.split() == ["layer", "1", "3", "5", "60.0%"] for line in lines)
    assert any(line.split() == ["layer", "2", "5->4", "3->2", "160", "48", "144", "40"] for line in lines)
    assert any(line.split() == ["total", "510", "214", "404", "144"] for line in lines)
    assert "parameters kept:      42.0%" in text
    assert "multiply-adds kept:   35.6%" in text


# --- Files ---------------------------------------------------------------------------------

def saved_model(tmp_path, name="lstm", dtype=np.float64, zero_groups=()):
    config, params = random_model(name, dtype=dtype)
    g = random_gates(config, np.random.default_rng(4), zero_groups=zero_groups)
    cm = C.compact(config, params, g)
    path = tmp_path / "model.npz"
    C.save(path, cm)
    return cm, path


def assert_same_compact_model(a, b):
    assert a.config == b.config and a.original == b.original
    assert len(a.kept) == len(b.kept)
    for x, y in zip(a.kept, b.kept):
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, y)
    assert tree.flat_names(a.params) == tree.flat_names(b.params)
    for x, y in zip(tree.leaves(a.params), tree.leaves(b.params)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_save_load_round_trip_is_exact(tmp_path, name, dtype):
    cm, path = saved_model(tmp_path, name, dtype, zero_groups=[2])
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    loaded = C.load(path)
    assert_same_compact_model(cm, loaded)
    tokens = np.random.default_rng(0).integers(0, cm.config.vocab_size, (4, 2))
    np.testing.assert_array_equal(loaded.log_probs(tokens)[0], cm.log_probs(tokens)[0])


def test_save_writes_exactly_the_given_path_and_replaces_it(tmp_path):
    cm, path = saved_model(tmp_path)
    other = C.compact(cm.original, random_model("lstm", seed=9)[1], [np.ones(k) for k in cm.original.group_sizes])
    C.save(tmp_path / "plain", other)
    C.save(path, other)
    assert sorted(os.listdir(tmp_path)) == ["model.npz", "plain"]
    assert_same_compact_model(C.load(path), other)
    assert_same_compact_model(C.load(tmp_path / "plain"), other)


def read_entries(path) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(arrays.pop("__header__").tobytes().decode("utf-8"))
    return header, arrays


def write_entries(path, header, arrays):
    entries = dict(arrays)
    if header is not None:
        entries["__header__"] = np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **entries)


def test_the_file_is_plain_arrays_with_a_json_header(tmp_path):
    cm, path = saved_model(tmp_path, "rhn", zero_groups=[1])
    header, arrays = read_entries(path)                  # allow_pickle=False: no object arrays
    assert header["format"] == C.FORMAT_NAME and header["version"] == C.FORMAT_VERSION
    assert header["config"] == cm.config.to_dict() and header["original"] == cm.original.to_dict()
    assert header["config"]["cell_options"] == {"depth": DEPTH}
    assert header["kept"] == [k.tolist() for k in cm.kept]
    assert sorted(arrays) == sorted(tree.flat_names(cm.params))


def test_random_bytes_empty_and_truncated_files_are_rejected(tmp_path):
    _, path = saved_model(tmp_path)
    good = path.read_bytes()
    cases = {
        "random": np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "truncated_end": good[:-10],
    }
    for case, content in cases.items():
        bad = tmp_path / f"{case}.npz"
        bad.write_bytes(content)
        with pytest.raises(ValueError, match="not a readable npz archive"):
            C.load(bad)
    with pytest.raises(FileNotFoundError):
        C.load(tmp_path / "missing.npz")


def test_a_flipped_byte_in_the_data_is_detected(tmp_path):
    cm, path = saved_model(tmp_path)
    content = bytearray(path.read_bytes())
    data = cm.params["layers"][1]["U"].tobytes()
    at = content.find(data)
    assert at > 0 and content.find(data, at + 1) == -1
    content[at + len(data) // 2] ^= 0x10
    path.write_bytes(bytes(content))
    with pytest.raises(ValueError, match=r"array 'layers.1.U' is corrupt or truncated.*CRC"):
        C.load(path)


def test_an_npy_file_is_not_a_compact_model(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array, not an npz archive"):
        C.load(path)


def mutate(tmp_path, change, **kw):
    """Save a model, rewrite its file with ``change(header, arrays)`` applied, return the path."""
    _, path = saved_model(tmp_path, **kw)
    header, arrays = read_entries(path)
    header = change(header, arrays)
    write_entries(path, header, arrays)
    return path


def _set(d, key, value):
    d[key] = value
    return d


@pytest.mark.parametrize("change, message", [
    (lambda h, a: None, "no '__header__' entry; not an l0ref l0ref-compact file"),
    (lambda h, a: _set(h, "version", 3), r"l0ref-compact version 3 is not supported \(this l0ref reads versions \[1, 2\]\)"),
    (lambda h, a: _set(h, "format", "something-else"), "format is 'something-else', expected 'l0ref-compact'"),
    (lambda h, a: (a.pop("layers.0.U"), h)[1], r"lacks the arrays \['layers.0.U'\]"),
    (lambda h, a: (a.pop("out_b"), h)[1], r"lacks the arrays \['out_b'\]"),
    (lambda h, a: (_set(a, "extra", np.zeros(2)), h)[1], r"unexpected arrays \['extra'\]"),
    (lambda h, a: (_set(a, "out_W", a["out_W"][:, :-1]), h)[1], r"array 'out_W' has shape \(7, \d\), expected"),
    (lambda h, a: (_set(a, "layers.2.b", a["layers.2.b"][:1]), h)[1], r"array 'layers.2.b' has shape"),
    (lambda h, a: (_set(a, "emb", a["emb"].astype(np.float32)), h)[1], "array 'emb' has dtype float32"),
    (lambda h, a: (_set(a, "out_b", a["out_b"] * np.nan), h)[1], "array 'out_b' contains NaN or inf"),
    (lambda h, a: _set(h, "kept", h["kept"][:-1]), "kept has 3 groups, the model has 4"),
    (lambda h, a: _set(h, "kept", [k[::-1] for k in h["kept"]]), "must increase strictly"),
    (lambda h, a: _set(h, "kept", [[i + 10 for i in k] for k in h["kept"]]), "must increase strictly"),
    (lambda h, a: _set(h, "kept", [k[:-1] for k in h["kept"]]), "keeps \\d+ indices but its compact size is"),
    (lambda h, a: _set(h, "config", {"cell": "lstm"}), "the header does not describe a model"),
    (lambda h, a: _set(h, "dtype", "int32"), "dtype int32 is not float32 or float64"),
], ids=["no-header", "version", "format-name", "missing-U", "missing-out_b", "extra-array", "out_W-shape",
        "bias-shape", "dtype-mix", "nan", "kept-groups", "kept-order", "kept-range", "kept-length",
        "bad-config", "bad-dtype"])
def test_damaged_files_are_rejected_saying_why(tmp_path, change, message):
    path = mutate(tmp_path, change)
    with pytest.raises(ValueError, match=message):
        C.load(path)


def test_a_header_that_is_not_json_is_rejected(tmp_path):
    _, path = saved_model(tmp_path)
    _, arrays = read_entries(path)
    arrays["__header__"] = np.frombuffer(b"{not json", np.uint8)
    write_entries(path, None, arrays)
    with pytest.raises(ValueError, match="header is not valid UTF-8 JSON"):
        C.load(path)
    arrays["__header__"] = np.array(["a string header"])
    write_entries(path, None, arrays)
    with pytest.raises(ValueError, match="header must be a 1-D uint8 array"):
        C.load(path)


class Crash(Exception):
    pass


def test_a_crash_while_saving_keeps_the_previous_file(tmp_path, monkeypatch):
    """The save dies after writing part of the archive: the last good file is intact
    and loads, and no temporary file is left behind."""
    cm, path = saved_model(tmp_path)
    before = path.read_bytes()
    other = C.compact(cm.original, random_model("lstm", seed=9)[1], [np.ones(k) for k in cm.original.group_sizes])
    real_savez = np.savez

    def crashing_savez(file, *args, **kwds):
        file.write(b"PK\x03\x04 partial archive")      # something reaches the disk first
        file.flush()
        raise Crash("simulated crash mid-save")

    monkeypatch.setattr(np, "savez", crashing_savez)
    with pytest.raises(Crash):
        C.save(path, other)
    monkeypatch.setattr(np, "savez", real_savez)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert_same_compact_model(C.load(path), cm)

    def crashing_replace(src, dst):
        raise Crash("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(Crash):
        C.save(path, other)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


@SETTINGS
@given(data=st.data())
def test_loaded_model_equals_masked_model(data):
    """The whole chain on a random model: mask -> compact -> save -> load -> log-probs."""
    name = data.draw(st.sampled_from(sorted(CELLS)), label="cell")
    p = data.draw(lm_problem(name, per_sequence=False))
    config, params, g = p["config"], p["params"], p["gates"]
    tokens = data.draw(token_arrays((3, 2), config.vocab_size), label="tokens")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        C.save(path, C.compact(config, params, g))
        loaded = C.load(path)
    assert_same_log_probs(loaded.log_probs(tokens)[0], model.log_probs(config, params, tokens, g)[0], np.float64)
