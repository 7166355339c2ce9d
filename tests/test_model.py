"""The language model (``l0ref.model``): its hand-written backward against float64 central
differences, its input checks, and the agreement of its two forward paths.

The gradient check covers every parameter (embedding, each layer's cell parameters,
softmax) and every gate group, for every registered cell, with gates per sequence
(B, size) and shared (size,) holding exact zeros and ones (the tied uses of a group,
as layer l's s and layer l + 1's z or the softmax's input gate, must add up, Eq. 2),
and with dropout on.  The checked function is the mean loss times T * B (and the
analytic gradients likewise), so that gradients are O(1) whatever T and B.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l0ref import tree
from l0ref import models as model
from l0ref.cells import CELLS
from tests import naive
from tests.gradcheck import check_gradients
from tests.strategies import lm_problem, values

GRAD_SETTINGS = settings(max_examples=12)
FAST_SETTINGS = settings(max_examples=20)


def as_families(gates) -> dict:
    return gates if isinstance(gates, dict) else {"neurons": gates}


def named_inputs(params: dict, gates) -> dict:
    """Every array the loss is differentiated by, named like ``model.flat_names``."""
    inputs = {name: a for name, a in zip(tree.flat_names(params), tree.leaves(params))
              if not name.startswith("log_alpha")}
    inputs.update({f"gates.{family}.{j}": g for family, gs in as_families(gates).items() for j, g in enumerate(gs)})
    return inputs


def named_grads(grads: dict, scale: float) -> dict:
    grads = dict(grads)
    gate_grads = grads.pop("gates")
    out = {name: scale * a for name, a in zip(tree.flat_names(grads), tree.leaves(grads))}
    out.update({f"gates.{family}.{j}": scale * g for family, gs in gate_grads.items() for j, g in enumerate(gs)})
    return out


@pytest.mark.parametrize("name", sorted(CELLS))
@GRAD_SETTINGS
@given(data=st.data())
def test_backward_matches_finite_differences(name, data):
    p = data.draw(lm_problem(name, families="any"))
    dropout = data.draw(st.one_of(st.just(0.0), values(0.1, 0.6)), label="dropout")
    seed = data.draw(st.integers(0, 2**32 - 1), label="dropout seed")
    config, params, gates, T, B = p["config"], p["params"], p["gates"], p["T"], p["B"]

    def run():
        # the same seed on every evaluation: the same dropout masks
        return model.forward(config, params, p["tokens"], p["targets"], gates, dropout=dropout,
                             rng=np.random.default_rng(seed))

    def loss():
        return run()[0] * T * B

    grads = model.backward(run()[2])
    assert {f: [np.shape(g) for g in gs] for f, gs in grads["gates"].items()} == \
        {f: [g.shape for g in gs] for f, gs in as_families(gates).items()}
    check_gradients(loss, named_inputs(params, gates), named_grads(grads, T * B))


@pytest.mark.parametrize("name", sorted(CELLS))
@FAST_SETTINGS
@given(data=st.data())
def test_log_probs_equals_forward_loss(name, data):
    """With the same gates (per sequence or shared) and no dropout, the evaluation path
    gives the training path's loss and final states."""
    p = data.draw(lm_problem(name, families="any"))
    config, params = p["config"], p["params"]
    loss, finals, _ = model.forward(config, params, p["tokens"], p["targets"], p["gates"])
    logp, finals_eval = model.log_probs(config, params, p["tokens"], p["gates"])
    assert logp.shape == (p["T"], p["B"], config.vocab_size)
    np.testing.assert_allclose(np.exp(logp).sum(axis=-1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(model.cross_entropy(logp, p["targets"]), loss, rtol=1e-13, atol=0)
    for a, b in zip(tree.leaves(finals), tree.leaves(finals_eval)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(CELLS))
@FAST_SETTINGS
@given(data=st.data())
def test_model_matches_naive_twin(name, data):
    """The model's wiring of the gate groups (docs/design.md section 2) against the explicit
    masked matrices of Eq. 2 (``tests/naive.py``), run one sequence at a time: layer l
    reads ``z = gates[l-1]``, ``s = gates[l]``, and the softmax reads ``gates[L] * h_L``;
    Lobacheva et al.'s gates: layer l's preactivation gates and weight gates, and the word's
    vocabulary gate on its embedding row."""
    masked_params = getattr(naive, f"masked_{name}_params")
    plain = getattr(naive, f"{name}_plain")
    p = data.draw(lm_problem(name, families="any"))
    config, params, gates = p["config"], p["params"], as_families(p["gates"])
    logp, _ = model.log_probs(config, params, p["tokens"], gates)
    n_states = len(CELLS[name].STATE_KEYS)
    keys = getattr(CELLS[name], "MATRIX_KEYS", ())

    def row(a, b):
        return a[b] if a.ndim == 2 else a

    for b in range(p["B"]):
        g = [row(gl, b) for gl in gates["neurons"]]
        x = params["emb"][p["tokens"][:, b]]                             # (T, e)
        if "vocab" in gates:
            x = x * row(gates["vocab"][0], b)[p["tokens"][:, b]][:, None]
        for l, (layer, n) in enumerate(zip(params["layers"], config.hidden_sizes)):
            pre = row(gates["preact"][l], b) if "preact" in gates else None
            wm = ({key: gates["weights"][l * len(keys) + k] for k, key in enumerate(keys)}
                  if "weights" in gates else None)
            x = plain(masked_params(layer, g[l], g[l + 1], pre, wm), x, *[np.zeros(n)] * n_states)[0]
        logits = (x * g[-1]) @ params["out_W"].T + params["out_b"]      # (T, V)
        expected = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        np.testing.assert_allclose(logp[:, b], expected, rtol=1e-12, atol=1e-12)


# --- Bad inputs ---------------------------------------------------------------------------

def small_model(name="lstm", dtype=np.float64):
    config = model.ModelConfig(name, 6, 3, (4, 2))
    params = model.init_params(config, np.random.default_rng(0), dtype)
    tokens = np.random.default_rng(1).integers(0, 6, (5, 2))
    return config, params, tokens


@pytest.mark.parametrize("name", sorted(CELLS))
def test_bad_token_ids_are_rejected(name):
    config, params, tokens = small_model(name)
    for bad in (tokens - 1 - tokens.max(), tokens + 6 - tokens.min()):   # below 0, at or above V
        with pytest.raises(ValueError, match=r"tokens has ids in .* outside \[0, 6\)"):
            model.forward(config, params, bad, tokens)
        with pytest.raises(ValueError, match=r"targets has ids in .* outside \[0, 6\)"):
            model.forward(config, params, tokens, bad)
        with pytest.raises(ValueError, match=r"tokens has ids in .* outside \[0, 6\)"):
            model.log_probs(config, params, bad)
    with pytest.raises(ValueError, match="must be integer token ids"):
        model.forward(config, params, tokens.astype(float), tokens)
    with pytest.raises(ValueError, match="must be integer token ids"):
        model.log_probs(config, params, np.full(tokens.shape, np.nan))


@pytest.mark.parametrize("fn", ["forward", "log_probs"])
def test_bad_shapes_are_rejected(fn):
    config, params, tokens = small_model()

    def run(params=params, tokens=tokens, gates=None, state0=None):
        if fn == "forward":
            return model.forward(config, params, tokens, tokens, gates, state0)
        return model.log_probs(config, params, tokens, gates, state0)

    with pytest.raises(ValueError, match=r"tokens has shape \(10,\), expected \(T, B\)"):
        run(tokens=tokens.reshape(-1))
    with pytest.raises(ValueError, match=r"tokens has shape \(0, 2\)"):
        run(tokens=tokens[:0])
    with pytest.raises(ValueError, match=r"parameter out_W has shape \(6, 3\), expected \(6, 2\)"):
        run(params={**params, "out_W": np.zeros((6, 3))})
    with pytest.raises(ValueError, match="config has 2 layers, parameters have 1"):
        run(params={**params, "layers": params["layers"][:1]})
    with pytest.raises(ValueError, match=r"parameter layers.1.W has shape \(16, 3\), expected \(8, 4\)"):
        run(params={**params, "layers": [params["layers"][0], params["layers"][0]]})
    with pytest.raises(ValueError, match="lack 'emb'"):
        run(params={k: v for k, v in params.items() if k != "emb"})
    with pytest.raises(ValueError, match="got 2 neurons gate groups, the model has 3"):
        run(gates=[np.ones(3), np.ones(4)])
    with pytest.raises(ValueError, match="got 4 neurons gate groups, the model has 3"):
        run(gates=[np.ones(3), np.ones(4), np.ones(2), np.ones(2)])
    with pytest.raises(ValueError, match=r"gate group 1 has shape \(3, 4\), expected \(4,\) or \(2, 4\)"):
        run(gates=[np.ones(3), np.ones((3, 4)), np.ones(2)])
    with pytest.raises(ValueError, match="state0 has 1 entries for 2 layers"):
        run(state0=[None])


def test_forward_only_checks():
    config, params, tokens = small_model()
    with pytest.raises(ValueError, match=r"targets have shape \(5, 1\), tokens \(5, 2\)"):
        model.forward(config, params, tokens, tokens[:, :1])
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
            model.forward(config, params, tokens, tokens, dropout=bad, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="dropout > 0 needs an rng"):
        model.forward(config, params, tokens, tokens, dropout=0.5)


@pytest.mark.parametrize("fn", ["forward", "log_probs"])
def test_nan_is_rejected_with_its_name(fn):
    config, params, tokens = small_model()

    def run(params=params, gates=None):
        if fn == "forward":
            return model.forward(config, params, tokens, tokens, gates)
        return model.log_probs(config, params, tokens, gates)

    for path in ("emb", "out_W", "out_b"):
        bad = {**params, path: params[path].copy()}
        bad[path].flat[0] = np.nan
        with pytest.raises(ValueError, match=f"parameter {path} contains NaN or inf"):
            run(params=bad)
    layer = {k: v.copy() for k, v in params["layers"][1].items()}
    layer["U"][0, 0] = np.inf
    with pytest.raises(ValueError, match="parameter layers.1.U contains NaN or inf"):
        run(params={**params, "layers": [params["layers"][0], layer]})
    for j, size in enumerate(config.group_sizes):
        g = [np.ones(k) for k in config.group_sizes]
        g[j][size - 1] = np.nan
        with pytest.raises(ValueError, match=f"gate group {j} contains NaN or inf"):
            run(gates=g)


def test_unknown_cell_and_bad_sizes_in_config():
    with pytest.raises(ValueError, match="unknown cell 'elman'"):
        model.ModelConfig("elman", 5, 3, (4,))
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 1"):
        model.ModelConfig("lstm", 0, 3, (4,))
    with pytest.raises(ValueError, match="hidden_sizes entry must be an integer >= 0"):
        model.ModelConfig("lstm", 5, 3, (4, -1))
    with pytest.raises(ValueError, match="at least one recurrent layer"):
        model.ModelConfig("lstm", 5, 3, ())
