"""The GRU cell (PyTorch's variant) beyond the generic checks of tests/test_cells.py
(gradients, the chain to log_alpha, Eq. 2 against tests/naive.py's ``gru_plain``).

- with all gates open: an independent batched evaluation of the GRU equations,
  and torch.nn.GRU (outputs and gradients; reported as skipped where torch is not installed,
  which the ``torch`` extra installs);
- zero-width layers, and clear errors for bad input.
"""
from __future__ import annotations

import numpy as np
import pytest

from l0ref.cells import gru
from tests import naive
from tests.conftest import require_torch


# --- all gates open: an independent GRU, and torch.nn.GRU -----------------------------------

def gru_by_the_book(W, U, b_i, b_h, x, h0):
    """The GRU equations as PyTorch's documentation writes them, batched, with the
    weight matrices split per gate: x (T, B, m), h0 (B, n) -> (outputs, h_T)."""
    W_ir, W_iz, W_in = np.split(W, 3)
    W_hr, W_hz, W_hn = np.split(U, 3)
    b_ir, b_iz, b_in = np.split(b_i, 3)
    b_hr, b_hz, b_hn = np.split(b_h, 3)
    h, outs = h0, []
    for x_t in x:
        r = naive.sigmoid(x_t @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
        z = naive.sigmoid(x_t @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
        cand = np.tanh(x_t @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
        h = (1 - z) * cand + z * h
        outs.append(h)
    return np.stack(outs), h


def torch_gru(params, x, h0, d_out, d_h):
    """torch.nn.GRU with copied weights, float64: outputs, h_T and the gradients of
    ``sum(d_out * outputs) + sum(d_h * h_T)`` keyed like :func:`gru.backward`'s."""
    import torch

    m, n = gru.sizes(params)
    net = torch.nn.GRU(m, n, dtype=torch.float64)
    names = {"W": "weight_ih_l0", "U": "weight_hh_l0", "b_i": "bias_ih_l0", "b_h": "bias_hh_l0"}
    with torch.no_grad():
        for key, name in names.items():
            getattr(net, name).copy_(torch.from_numpy(params[key]))
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    out, h_T = net(xt, h0t)
    loss = (out * torch.from_numpy(d_out)).sum() + (h_T[0] * torch.from_numpy(d_h)).sum()
    loss.backward()
    grads = {key: getattr(net, name).grad.numpy() for key, name in names.items()}
    grads.update(x=xt.grad.numpy(), h0=h0t.grad[0].numpy())
    return out.detach().numpy(), h_T[0].detach().numpy(), grads


def _open_gru_problem():
    rng = np.random.default_rng(7)
    T, B, m, n = 6, 3, 4, 5
    params = gru.init_params(m, n, rng, init_range=1.0)
    x = rng.normal(size=(T, B, m))
    h0 = rng.uniform(-1, 1, (B, n))
    return rng, params, x, h0


def test_open_gates_match_an_independent_gru():
    rng, params, x, h0 = _open_gru_problem()
    T, B, m = x.shape
    n = h0.shape[1]
    out, h_T, cache = gru.forward(params, x, None, None, h0)
    assert out.shape == (T, B, n) and h_T.shape == (B, n)

    # masks of ones, shared or per sequence, are exactly the open gates
    for z, s in ((np.ones(m), np.ones(n)), (np.ones((B, m)), np.ones((B, n)))):
        out1, h1, _ = gru.forward(params, x, z, s, h0)
        np.testing.assert_array_equal(out1, out)
        np.testing.assert_array_equal(h1, h_T)

    ref_out, ref_h = gru_by_the_book(params["W"], params["U"], params["b_i"], params["b_h"], x, h0)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h_T, ref_h, rtol=1e-12, atol=1e-13)



def test_open_gates_match_torch_gru():
    """Outputs and every gradient against torch.nn.GRU (float64)."""
    require_torch()
    rng, params, x, h0 = _open_gru_problem()
    out, h_T, cache = gru.forward(params, x, None, None, h0)
    d_out, d_h = rng.normal(size=out.shape), rng.normal(size=h_T.shape)
    t_out, t_h, t_grads = torch_gru(params, x, h0, d_out, d_h)
    np.testing.assert_allclose(out, t_out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h_T, t_h, rtol=1e-12, atol=1e-13)
    grads = gru.backward(d_out, d_h, cache)
    assert set(t_grads) == {"x", "h0", "W", "U", "b_i", "b_h"}
    for key, g in t_grads.items():
        np.testing.assert_allclose(grads[key], g, rtol=1e-10, atol=1e-12, err_msg=key)


# --- interface, zero widths, bad input -----------------------------------------------------------

def test_interface_shapes():
    params = gru.init_params(3, 4, np.random.default_rng(0))
    assert {k: v.shape for k, v in params.items()} == {"W": (12, 3), "U": (12, 4), "b_i": (12,), "b_h": (12,)}
    assert all(np.abs(v).max() <= 0.5 for v in params.values())  # k = 1/sqrt(4)
    assert gru.sizes(params) == (3, 4)
    assert gru.weight_blocks(params) == (3, 3)
    assert gru.zero_state(2, 4).shape == (2, 4)
    assert gru.init_params(3, 4, np.random.default_rng(0), np.float32)["U"].dtype == np.float32


def test_without_input_the_state_is_driven_by_the_biases():
    """A layer whose every input is pruned (m = 0) still updates its state from its biases."""
    rng = np.random.default_rng(3)
    params = gru.init_params(0, 3, rng)
    h0 = rng.normal(size=(2, 3))
    out, _, _ = gru.forward(params, np.zeros((3, 2, 0)), None, rng.uniform(size=(2, 3)), h0)
    assert not np.allclose(out[-1], h0)


def test_bad_input_raises_clear_errors():
    rng = np.random.default_rng(4)
    params = gru.init_params(3, 4, rng)
    x = rng.normal(size=(2, 5, 3))

    def with_param(key, value):
        return dict(params, **{key: value})

    with pytest.raises(ValueError, match=r"parameter U has shape \(12, 5\), expected \(12, 4\)"):
        gru.forward(with_param("U", np.zeros((12, 5))), x)
    with pytest.raises(ValueError, match=r"parameter b_h has shape \(4,\), expected \(12,\)"):
        gru.forward(with_param("b_h", np.zeros(4)), x)
    with pytest.raises(ValueError, match=r"parameter W has shape \(13, 3\), expected \(12, 3\)"):
        gru.forward(with_param("W", np.zeros((13, 3))), x)
    with pytest.raises(ValueError, match="lack 'b_i'"):
        gru.forward({k: v for k, v in params.items() if k != "b_i"}, x)
    with pytest.raises(ValueError, match="mixed dtypes"):
        gru.forward(with_param("b_i", params["b_i"].astype(np.float32)), x)
    with pytest.raises(ValueError, match="float32 or float64"):
        gru.forward({k: v.astype(np.int64) for k, v in params.items()}, x)
    with pytest.raises(ValueError, match="parameter U contains NaN"):
        gru.forward(with_param("U", np.full((12, 4), np.nan)), x)
    with pytest.raises(ValueError, match="h0 contains NaN"):
        gru.forward(params, x, None, None, np.full((5, 4), np.nan))
    with pytest.raises(ValueError, match="s contains NaN"):
        gru.forward(params, x, None, np.full(4, np.nan))
    with pytest.raises(ValueError, match=r"initial state h0 has shape \(2, 5, 4\)"):  # an LSTM-style (h0, c0)
        gru.forward(params, x, None, None, (np.zeros((5, 4)), np.zeros((5, 4))))
    with pytest.raises(ValueError, match=r"x has shape \(0, 5, 3\)"):
        gru.forward(params, np.zeros((0, 5, 3)))
    _, _, cache = gru.forward(params, x)
    with pytest.raises(ValueError, match=r"d_outputs has shape \(2, 5, 3\), expected \(2, 5, 4\)"):
        gru.backward(np.zeros((2, 5, 3)), None, cache)
    with pytest.raises(ValueError, match=r"dh_T has shape \(4,\), expected \(5, 4\)"):
        gru.backward(np.zeros((2, 5, 4)), np.zeros(4), cache)
    for bad in (-1, 2.5, "4", None):
        with pytest.raises(ValueError, match="hidden_size must be an integer >= 0"):
            gru.init_params(3, bad, rng)
    with pytest.raises(ValueError, match="init_range"):
        gru.init_params(3, 4, rng, init_range=np.nan)
