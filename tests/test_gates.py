"""Gate groups of a stack (docs/design.md section 2): sampling, tied groups, the whole gradient chain.

The chain under test, for a 2-layer LSTM stack with L + 1 = 3 gate groups::

    log_alpha --(Eq. 8, fixed uniforms)--> gates (B, size) --> layer 1 (z = g0, s = g1)
              --> layer 2 (z = g1, s = g2) --> output g2 * h2 --> loss

Group 1 is both layer 1's s and layer 2's z, so its gradient is the sum of two uses;
the finite differences in log_alpha see that sum whole.  The uniforms are chosen so
that every stretched value is at least 0.01 from the hard sigmoid's kinks (some gates
inside (0, 1), some clamped at exactly 0 or 1), where the central difference is exact.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l0ref import gates as gt
from l0ref import hard_concrete as hc
from l0ref.cells import lstm
from tests.gradcheck import check_gradients
from tests.strategies import arrays, stack_problem, uniforms_for

SETTINGS = settings(max_examples=20)
N_LAYERS = 2
DET_KINK = float(np.log(11.0))   # the test-time gate clamps where |log_alpha| > log 11


def stack_forward(cell, problem, gates):
    """Loss ``sum(d_out * g_L * h_L)`` of the stack, with the caches for the backward pass."""
    x, caches = problem["x"], []
    for l, (params, state0) in enumerate(zip(problem["params"], problem["state0"])):
        x, _, cache = cell.forward(params, x, gates[l], gates[l + 1], state0)
        caches.append(cache)
    loss = float(np.sum(problem["d_out"] * (gates[-1] * x)))
    return loss, caches, x


def stack_gate_grads(cell, problem, gates, caches, h_L):
    """d loss / d gates, per group, the tied uses added by ``gates.gate_grads``."""
    d_y = problem["d_out"]                                   # (T, B, n_L)
    d_out_gate = (d_y * h_L).sum(axis=0)                     # (B, n_L)
    if gates[-1].ndim == 1:
        d_out_gate = d_out_gate.sum(axis=0)                  # a shared gate adds over the batch
    d_h = d_y * gates[-1]
    L = len(caches)
    d_z, d_s = [None] * L, [None] * L
    for l in reversed(range(L)):
        g = cell.backward(d_h, None, caches[l])
        d_z[l], d_s[l], d_h = g["z"], g["s"], g["x"]
    return gt.gate_grads(d_z, d_s, d_out_gate)


@st.composite
def chain_problem(draw, regions=("interior", "zero", "one")):
    problem = draw(stack_problem(lstm, N_LAYERS))
    log_alphas = [draw(arrays((k,), -3.0, 3.0)) for k in problem["sizes"]]
    uniforms = [draw(uniforms_for(la, problem["B"], regions)) for la in log_alphas]
    return problem, log_alphas, uniforms


def _check_chain_through_samples(problem, log_alphas, uniforms):
    def loss():
        return stack_forward(lstm, problem, gt.sample_gates(log_alphas, uniforms))[0]

    gates = gt.sample_gates(log_alphas, uniforms)
    _, caches, h_L = stack_forward(lstm, problem, gates)
    d_gates = stack_gate_grads(lstm, problem, gates, caches, h_L)
    analytic = gt.log_alpha_grads(log_alphas, uniforms, d_gates)
    inputs = {f"log_alpha{g}": la for g, la in enumerate(log_alphas)}
    check_gradients(loss, inputs, {f"log_alpha{g}": d for g, d in enumerate(analytic)})
    return gates, analytic


@SETTINGS
@given(data=chain_problem())
def test_log_alpha_gradient_through_sampled_gates(data):
    problem, log_alphas, uniforms = data
    gates, _ = _check_chain_through_samples(problem, log_alphas, uniforms)
    for g, u, la in zip(gates, uniforms, log_alphas):
        assert g.shape == u.shape == (problem["B"], la.shape[0])


@settings(max_examples=10)
@given(data=chain_problem(regions=("zero", "one")))
def test_clamped_gates_have_zero_log_alpha_gradient(data):
    problem, log_alphas, uniforms = data
    gates, analytic = _check_chain_through_samples(problem, log_alphas, uniforms)
    for g in gates:
        assert np.all((g == 0) | (g == 1)), g                # clamped at exactly 0 or 1
    for d in analytic:
        np.testing.assert_array_equal(d, 0.0)


def test_tied_group_receives_both_uses():
    """gate_grads adds layer l's d_s and layer l+1's d_z, and the output's gradient to the last group."""
    rng = np.random.default_rng(0)
    B, sizes = 3, [2, 4, 5]
    d_z = [rng.normal(size=(B, sizes[0])), rng.normal(size=(B, sizes[1]))]
    d_s = [rng.normal(size=(B, sizes[1])), rng.normal(size=(B, sizes[2]))]
    d_out = rng.normal(size=sizes[2])                        # a shared output gate broadcasts
    g = gt.gate_grads(d_z, d_s, d_out)
    np.testing.assert_array_equal(g[0], d_z[0])
    np.testing.assert_array_equal(g[1], d_s[0] + d_z[1])
    np.testing.assert_array_equal(g[2], d_s[1] + d_out)
    with pytest.raises(ValueError, match="input-mask"):
        gt.gate_grads(d_z, d_s[:1], d_out)


@st.composite
def eval_gate_problem(draw):
    problem = draw(stack_problem(lstm, N_LAYERS))
    away = lambda a: bool(np.all(np.abs(np.abs(a) - DET_KINK) > 0.05))  # noqa: E731
    log_alphas = [draw(arrays((k,), -4.0, 4.0).filter(away)) for k in problem["sizes"]]
    return problem, log_alphas


@SETTINGS
@given(data=eval_gate_problem())
def test_log_alpha_gradient_through_test_time_gates(data):
    problem, log_alphas = data

    def loss():
        return stack_forward(lstm, problem, gt.deterministic_gates(log_alphas))[0]

    gates = gt.deterministic_gates(log_alphas)
    for g, la in zip(gates, log_alphas):
        assert g.shape == la.shape
    _, caches, h_L = stack_forward(lstm, problem, gates)
    d_gates = stack_gate_grads(lstm, problem, gates, caches, h_L)
    analytic = gt.log_alpha_grads_test(log_alphas, d_gates)
    inputs = {f"log_alpha{g}": la for g, la in enumerate(log_alphas)}
    check_gradients(loss, inputs, {f"log_alpha{g}": d for g, d in enumerate(analytic)})


# --- Sampling -------------------------------------------------------------------------------

def test_one_gate_vector_per_sequence_reproducible():
    sizes = gt.group_sizes(30, [40, 20])
    assert sizes == [30, 40, 20]
    la = gt.init_log_alpha(sizes, np.random.default_rng(0))
    B = 4
    u1 = gt.draw_uniforms(la, B, np.random.default_rng(11))
    u2 = gt.draw_uniforms(la, B, np.random.default_rng(11))
    u3 = gt.draw_uniforms(la, B, np.random.default_rng(12))
    g1, g2, g3 = gt.sample_gates(la, u1), gt.sample_gates(la, u2), gt.sample_gates(la, u3)
    for a, b, c, u, k in zip(g1, g2, g3, u1, sizes):
        assert a.shape == u.shape == (B, k)                  # no time axis: one draw per sequence
        assert np.all((u >= hc.EPS) & (u <= 1 - hc.EPS))
        np.testing.assert_array_equal(a, b)                  # same seed, same sample
        assert not np.array_equal(a, c)                      # another seed, another sample
        assert len({row.tobytes() for row in a}) == B        # each sequence its own vector
        np.testing.assert_array_equal(a, hc.sample(la[sizes.index(k)], u))
    assert [(z.shape, s.shape) for z, s in gt.layer_masks(g1)] == [((B, 30), (B, 40)), ((B, 40), (B, 20))]


def test_gates_are_constant_over_time():
    """The sequence run whole equals the same gates applied step by step, state carried."""
    rng = np.random.default_rng(5)
    T, B, m, n = 6, 3, 4, 5
    params = lstm.init_params(m, n, rng)
    la = gt.init_log_alpha([m, n], rng, mean=0.0, std=1.0)
    z, s = gt.sample_gates(la, gt.draw_uniforms(la, B, rng))
    x = rng.normal(size=(T, B, m))
    out, final, _ = lstm.forward(params, x, z, s)
    state, steps = None, []
    for t in range(T):
        o, state, _ = lstm.forward(params, x[t:t + 1], z, s, state)
        steps.append(o[0])
    np.testing.assert_allclose(np.array(steps), out, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(state[1], final[1], rtol=1e-13, atol=1e-15)
    # and a different draw at some step would have shown: the gates do matter here
    out_other, _, _ = lstm.forward(params, x, z[::-1], s[::-1])
    assert not np.allclose(out_other, out)


def test_sample_gates_checks_shapes():
    la = [np.zeros(3), np.zeros(4)]
    with pytest.raises(ValueError, match="uniforms"):
        gt.sample_gates(la, [np.full((2, 3), 0.5)])
    with pytest.raises(ValueError, match="group 1"):
        gt.sample_gates(la, [np.full((2, 3), 0.5), np.full((2, 5), 0.5)])
    with pytest.raises(ValueError, match="gate gradients"):
        gt.log_alpha_grads(la, [np.full((2, 3), 0.5), np.full((2, 4), 0.5)], [np.zeros((2, 3))])


# --- Initialization -------------------------------------------------------------------------
# Mean bounds: 5 standard errors, std / sqrt(N); std bounds: 5 standard errors of the sample
# standard deviation, std / sqrt(2 N).  The seed is fixed.

def test_init_log_alpha_default_is_normal_1_01():
    sizes = [3000, 5000]
    la = gt.init_log_alpha(sizes, np.random.default_rng(42))
    assert [a.shape for a in la] == [(3000,), (5000,)] and all(a.dtype == np.float64 for a in la)
    v = np.concatenate(la)
    N = v.size
    assert abs(v.mean() - 1.0) <= 5 * 0.1 / np.sqrt(N)
    assert abs(v.std() - 0.1) <= 5 * 0.1 / np.sqrt(2 * N)
    assert gt.init_log_alpha([4], np.random.default_rng(0), dtype=np.float32)[0].dtype == np.float32


@pytest.mark.parametrize("drop_rate", [0.1, 0.5, 0.8])
def test_init_log_alpha_from_drop_rate(drop_rate):
    N = 8000
    v = gt.init_log_alpha([N], np.random.default_rng(7), drop_rate=drop_rate)[0]
    mean = np.log(1 - drop_rate) - np.log(drop_rate)           # Louizos et al.: logit(1 - drop rate)
    assert abs(v.mean() - mean) <= 5 * 0.01 / np.sqrt(N)
    assert abs(v.std() - 0.01) <= 5 * 0.01 / np.sqrt(2 * N)
    # sigmoid(log_alpha) starts at 1 - drop_rate
    assert abs(np.mean(1 / (1 + np.exp(-v))) - (1 - drop_rate)) < 1e-3


@pytest.mark.parametrize("drop_rate", [0.0, 1.0, -0.1, 1.5, np.nan])
def test_init_log_alpha_bad_drop_rate_raises(drop_rate):
    with pytest.raises(ValueError, match="drop_rate"):
        gt.init_log_alpha([3], np.random.default_rng(0), drop_rate=drop_rate)


def test_init_log_alpha_bad_std_raises():
    with pytest.raises(ValueError, match="std"):
        gt.init_log_alpha([3], np.random.default_rng(0), std=-0.1)
    with pytest.raises(ValueError, match="mean"):
        gt.init_log_alpha([3], np.random.default_rng(0), mean=np.nan)
