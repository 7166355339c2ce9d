"""The Recurrent Highway Network cell beyond the generic checks of tests/test_cells.py
(gradients, the chain to log_alpha, Eq. 2 against tests/naive.py's ``rhn_plain``; there
the recurrence depth is drawn in 1..4).

- limits that pin the equations down: a transform gate of exactly one at depth 1
  is a tanh RNN; a transform gate of (nearly) zero carries the state unchanged;
- initialization, zero-width layers, and clear errors for bad input.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from l0ref.cells import rhn


# --- limits of the transform gate -------------------------------------------------------------

def _with_constant_transform_gate(params, bias):
    """T-block weights zero and T bias ``bias``: then t = sigmoid(bias) at every step."""
    n = rhn.sizes(params)[1]
    p = {k: v.copy() for k, v in params.items()}
    p["W"][n:] = 0.0
    p["R"][:, n:] = 0.0
    p["b"][:, n:] = bias
    return p


@pytest.mark.parametrize("per_sequence", [False, True])
def test_depth_one_with_transform_gate_one_is_a_tanh_rnn(per_sequence):
    # With zero T weights the T preactivation is exactly the bias (S * 0 + 40 = 40), and
    # sigmoid(40) = 1 - 4e-18 rounds to 1.0 in float64: then q = h * 1 + q * 0 = h exactly.
    assert expit(40.0) == 1.0
    rng = np.random.default_rng(11)
    T, B, m, n = 5, 3, 4, 6
    params = _with_constant_transform_gate(rhn.init_params(m, n, rng, depth=1, init_range=1.0), 40.0)
    W_H, R_H, b_H = params["W"][:n], params["R"][0, :n], params["b"][0, :n]
    x, q0 = rng.normal(size=(T, B, m)), rng.uniform(-1, 1, (B, n))
    shape_z, shape_s = ((B, m), (B, n)) if per_sequence else ((m,), (n,))
    z = rng.uniform(size=shape_z) * (rng.uniform(size=shape_z) > 0.3)  # with exact zeros
    s = rng.uniform(size=shape_s) * (rng.uniform(size=shape_s) > 0.3)

    for zz, ss in ((None, None), (z, s)):
        out, q_T, _ = rhn.forward(params, x, zz, ss, q0)
        for b in range(B):
            zb = np.ones(m) if zz is None else (zz[b] if per_sequence else zz)
            sb = np.ones(n) if ss is None else (ss[b] if per_sequence else ss)
            W_hat, R_hat = W_H * np.outer(sb, zb), R_H * np.outer(sb, sb)   # Eq. 2, H block only
            q = q0[b]
            for t in range(T):
                q = np.tanh(W_hat @ x[t, b] + R_hat @ q + b_H)
                np.testing.assert_allclose(out[t, b], q, rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(q_T[b], q, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("depth", [1, 3])
def test_closed_transform_gate_carries_the_state(depth):
    # t = sigmoid(-40) = 4e-18: every micro-step keeps q, and the gradient of q0 is the sum
    # of the gradients at every output (the carry path of the backward pass).
    rng = np.random.default_rng(12)
    T, B, m, n = 4, 2, 3, 5
    params = _with_constant_transform_gate(rhn.init_params(m, n, rng, depth=depth, init_range=1.0), -40.0)
    x, q0 = rng.normal(size=(T, B, m)), rng.uniform(-1, 1, (B, n))
    out, q_T, cache = rhn.forward(params, x, None, rng.uniform(size=n), q0)
    np.testing.assert_allclose(out, np.broadcast_to(q0, out.shape), rtol=0, atol=1e-15)
    np.testing.assert_allclose(q_T, q0, rtol=0, atol=1e-15)
    d_out, d_q = rng.normal(size=out.shape), rng.normal(size=q_T.shape)
    grads = rhn.backward(d_out, d_q, cache)
    np.testing.assert_allclose(grads["q0"], d_out.sum(axis=0) + d_q, rtol=1e-12, atol=1e-12)


# --- initialization, interface, zero widths, bad input -------------------------------------------

def test_init_and_interface():
    rng = np.random.default_rng(0)
    params = rhn.init_params(3, 4, rng, depth=3)
    assert {k: v.shape for k, v in params.items()} == {"W": (8, 3), "R": (3, 8, 4), "b": (3, 8)}
    assert rhn.sizes(params) == (3, 4) and rhn.depth(params) == 3
    assert rhn.weight_blocks(params) == (2, 6)
    np.testing.assert_array_equal(params["b"][:, 4:], rhn.TRANSFORM_BIAS)   # every micro-step's T bias
    assert rhn.TRANSFORM_BIAS < 0
    assert np.abs(params["b"][:, :4]).max() <= 0.5 and np.abs(params["R"]).max() <= 0.5  # k = 1/sqrt(4)
    assert rhn.depth(rhn.init_params(3, 4, rng)) == rhn.DEFAULT_DEPTH
    p = rhn.init_params(3, 4, rng, np.float32, depth=2, transform_bias=-4.0, init_range=0.1)
    assert all(v.dtype == np.float32 for v in p.values())
    np.testing.assert_array_equal(p["b"][:, 4:], -4.0)
    assert np.abs(p["W"]).max() <= 0.1
    assert rhn.zero_state(2, 4).shape == (2, 4)



def test_bad_input_raises_clear_errors():
    rng = np.random.default_rng(4)
    params = rhn.init_params(3, 4, rng, depth=2)
    x = rng.normal(size=(2, 5, 3))

    def with_param(key, value):
        return dict(params, **{key: value})

    for bad in (0, -1, 1.5, True, "2", None):
        with pytest.raises(ValueError, match="depth must be an integer >= 1"):
            rhn.init_params(3, 4, rng, depth=bad)
    with pytest.raises(ValueError, match="transform_bias must be finite"):
        rhn.init_params(3, 4, rng, transform_bias=np.nan)
    with pytest.raises(ValueError, match=r"parameter R has shape \(8, 4\), expected \(L, 8, 4\) with depth L >= 1"):
        rhn.forward(with_param("R", np.zeros((8, 4))), x)
    with pytest.raises(ValueError, match=r"parameter R has shape \(0, 8, 4\)"):
        rhn.forward(with_param("R", np.zeros((0, 8, 4))), x)
    with pytest.raises(ValueError, match=r"parameter R has shape \(2, 8, 3\), expected \(2, 8, 4\)"):
        rhn.forward(with_param("R", np.zeros((2, 8, 3))), x)
    with pytest.raises(ValueError, match=r"parameter b has shape \(3, 8\), expected \(2, 8\)"):
        rhn.forward(with_param("b", np.zeros((3, 8))), x)
    with pytest.raises(ValueError, match=r"parameter W has shape \(9, 3\), expected \(8, 3\)"):
        rhn.forward(with_param("W", np.zeros((9, 3))), x)
    with pytest.raises(ValueError, match="lack 'R'"):
        rhn.forward({k: v for k, v in params.items() if k != "R"}, x)
    with pytest.raises(ValueError, match="parameter R contains NaN"):
        rhn.forward(with_param("R", np.full((2, 8, 4), np.nan)), x)
    with pytest.raises(ValueError, match="mixed dtypes"):
        rhn.forward(with_param("R", params["R"].astype(np.float32)), x)
    with pytest.raises(ValueError, match="q0 contains NaN"):
        rhn.forward(params, x, None, None, np.full((5, 4), np.nan))
    with pytest.raises(ValueError, match=r"initial state q0 has shape \(5, 3\), expected \(5, 4\)"):
        rhn.forward(params, x, None, None, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="z contains NaN"):
        rhn.forward(params, x, np.full((5, 3), np.nan))
    with pytest.raises(ValueError, match=r"mask s has shape \(5, 3\), expected \(4,\) or \(5, 4\)"):
        rhn.forward(params, x, None, np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"x has shape \(2, 5, 4\)"):
        rhn.forward(params, rng.normal(size=(2, 5, 4)))
    _, _, cache = rhn.forward(params, x)
    with pytest.raises(ValueError, match=r"d_outputs has shape \(5, 4\), expected \(2, 5, 4\)"):
        rhn.backward(np.zeros((5, 4)), None, cache)
    with pytest.raises(ValueError, match=r"dq_T has shape \(2, 5, 4\), expected \(5, 4\)"):
        rhn.backward(np.zeros((2, 5, 4)), np.zeros((2, 5, 4)), cache)
