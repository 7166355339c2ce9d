"""Checks that hold for every registered cell (``l0ref.cells.CELLS``), one test per cell.

- the backward pass against float64 central differences.  The loss is a fixed random
  projection of everything the forward returns,
  ``L = sum(d_out * outputs) + sum(d_state * final_state)``, so the backward pass is
  called with exactly ``(d_out, d_state)``.  Masks are drawn per sequence and 1-D,
  with exact zeros and ones;
- the gradient chain loss -> cell -> hard concrete gates -> log_alpha, for sampled
  (Eq. 8) and test-time (Eq. 10, 11) gates, against central differences;
- Eq. 2: the fast masked forward equals the cell's plain twin (tests/naive.py) run on
  the explicitly masked matrices, for per-sequence and 1-D masks;
- float32 runs in float32; shape errors name the shapes.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l0ref import gates
from l0ref.cells import CELLS, get_cell
from l0ref.cells._masks import reduce_to_mask
from tests import naive
from tests.gradcheck import check_gradients
from tests.strategies import arrays, cell_problem, uniforms_for, values

GRAD_SETTINGS = settings(max_examples=25)
SETTINGS = settings(max_examples=15)

#: log_alpha values whose test-time gate (Eq. 10, 11) is at least 0.04 away from the
#: clamp's kinks: inside (0, 1) for |log_alpha| <= 2, clamped to 0 or 1 beyond 3.5.
TEST_TIME_LOG_ALPHA = st.one_of(values(-2.0, 2.0), values(-6.0, -3.5), values(3.5, 6.0))


def _state_parts(state):
    return state if isinstance(state, tuple) else (state,)


def projected_loss(cell, problem):
    """The scalar loss of ``problem`` and a closure that recomputes it."""
    p = problem

    def loss():
        out, final, _ = cell.forward(p["params"], p["x"], p["z"], p["s"], p["state0"], **lobacheva(p))
        total = np.sum(out * p["d_out"])
        for f, d in zip(_state_parts(final), _state_parts(p["d_state"])):
            total += np.sum(f * d)
        return float(total)

    return loss


def lobacheva(problem) -> dict:
    """The keywords of Lobacheva et al.'s gates in a problem (none for a cell without them)."""
    if problem.get("g") is None:
        return {}
    return {"g": problem["g"], "weight_masks": problem["weight_masks"]}


def inputs_of(cell, problem) -> dict:
    """Every array the gradient is taken with respect to, keyed as backward keys it."""
    p = problem
    inputs = {"x": p["x"], "z": p["z"], "s": p["s"]}
    inputs.update(zip(cell.STATE_KEYS, _state_parts(p["state0"])))
    inputs.update(p["params"])
    if p.get("g") is not None:
        inputs["g"] = p["g"]
    for key, mask in (p.get("weight_masks") or {}).items():
        inputs[key + "_mask"] = mask
    return inputs


@pytest.mark.parametrize("name", sorted(CELLS))
@GRAD_SETTINGS
@given(data=st.data())
def test_backward_matches_finite_differences(name, data):
    cell = get_cell(name)
    problem = data.draw(cell_problem(cell))
    _, _, cache = cell.forward(problem["params"], problem["x"], problem["z"], problem["s"], problem["state0"],
                               **lobacheva(problem))
    grads = cell.backward(problem["d_out"], problem["d_state"], cache)
    inputs = inputs_of(cell, problem)
    assert set(grads) == set(inputs), f"backward returned {sorted(grads)}, expected {sorted(inputs)}"
    check_gradients(projected_loss(cell, problem), inputs, grads)


# --- the chain through the gates to log_alpha ---------------------------------------------------

def check_log_alpha_chain(cell, problem, log_alphas, uniforms=None) -> None:
    """d loss / d log_alpha through ``cell`` and the gates, against central differences.

    One layer, two gate groups: ``log_alphas = [input group (m,), hidden group (n,)]``.
    With ``uniforms`` the gates are hard concrete samples (Eq. 8), one per sequence;
    with None, the test-time gates (Eq. 10, 11).  The loss is a fixed projection of
    the outputs and the final state (every part of it: the LSTM's h and c) plus, as the
    output layer reads ``s * h`` (docs/design.md section 2), a projection of ``s * h_T``
    (``outputs[-1]``, the GRU's h and the RHN's q alike): the hidden group receives
    gradient from both of its uses.
    """
    p = problem
    T, B, n = p["d_out"].shape
    d_read = np.random.default_rng(1).normal(size=(B, n))

    def gate_values():
        return gates.deterministic_gates(log_alphas) if uniforms is None else gates.sample_gates(log_alphas, uniforms)

    def loss():
        g = gate_values()
        (z, s), = gates.layer_masks(g)
        out, final, _ = cell.forward(p["params"], p["x"], z, s, p["state0"])
        total = np.sum(out * p["d_out"]) + np.sum(d_read * g[1] * out[-1])
        for f, d in zip(_state_parts(final), _state_parts(p["d_state"])):
            total += np.sum(f * d)
        return float(total)

    g = gate_values()
    (z, s), = gates.layer_masks(g)
    out, _, cache = cell.forward(p["params"], p["x"], z, s, p["state0"])
    d_outputs = p["d_out"].copy()
    d_outputs[-1] += d_read * g[1]
    grads = cell.backward(d_outputs, p["d_state"], cache)
    d_gates = gates.gate_grads([grads["z"]], [grads["s"]], reduce_to_mask(d_read * out[-1], g[1]))
    if uniforms is None:
        analytic = gates.log_alpha_grads_test(log_alphas, d_gates)
    else:
        analytic = gates.log_alpha_grads(log_alphas, uniforms, d_gates)
    check_gradients(loss, {"log_alpha_in": log_alphas[0], "log_alpha_hidden": log_alphas[1]},
                    {"log_alpha_in": analytic[0], "log_alpha_hidden": analytic[1]})


@st.composite
def chain_problem(draw, cell, test_time: bool):
    """A cell problem with log_alpha groups and (for sampled gates) uniforms chosen so
    that every gate is inside (0, 1) or clamped, at least 0.01 from the clamp's kinks."""
    problem = draw(cell_problem(cell))
    m, n = cell.sizes(problem["params"])
    B = problem["x"].shape[1]
    if test_time:
        log_alphas = [np.array(draw(st.lists(TEST_TIME_LOG_ALPHA, min_size=k, max_size=k)), np.float64)
                      for k in (m, n)]
        return problem, log_alphas, None
    log_alphas = [draw(arrays((k,), -3.0, 3.0)) for k in (m, n)]
    regions = ("interior", "zero", "one")
    uniforms = [draw(uniforms_for(la, B, regions)) for la in log_alphas]
    return problem, log_alphas, uniforms


@pytest.mark.parametrize("test_time", [False, True], ids=["sampled", "test_time"])
@pytest.mark.parametrize("name", sorted(CELLS))
@SETTINGS
@given(data=st.data())
def test_log_alpha_gradient_through_cell_matches_finite_differences(name, test_time, data):
    cell = get_cell(name)
    problem, log_alphas, uniforms = data.draw(chain_problem(cell, test_time))  # RHN depth drawn in 1..4
    check_log_alpha_chain(cell, problem, log_alphas, uniforms)


# --- Eq. 2: fast masked form == the plain twin on explicitly masked matrices ----------------------

def test_every_cell_has_a_naive_twin():
    assert set(naive.TWINS) == set(CELLS), "add the new cell's slow twin to tests/naive.py TWINS"


@pytest.mark.parametrize("per_sequence", [True, False], ids=["per_sequence", "shared"])
@pytest.mark.parametrize("name", sorted(CELLS))
@SETTINGS
@given(data=st.data())
def test_masked_forward_equals_plain_cell_on_masked_matrices(name, per_sequence, data):
    cell = get_cell(name)
    p = data.draw(cell_problem(cell, per_sequence=per_sequence))
    out, final, _ = cell.forward(p["params"], p["x"], p["z"], p["s"], p["state0"], **lobacheva(p))
    want_out, want_final = naive.masked_cell_plain(name, p["params"], p["x"], p["z"], p["s"], p["state0"],
                                                   p["g"], p["weight_masks"])
    np.testing.assert_allclose(out, want_out, rtol=1e-12, atol=1e-13)
    for got, want in zip(_state_parts(final), _state_parts(want_final), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


# --- float32, shape errors -----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CELLS))
def test_float32_runs_in_float32_and_agrees_with_float64(name):
    cell = get_cell(name)
    rng = np.random.default_rng(0)
    p64 = cell.init_params(5, 6, rng, np.float64)
    x = rng.normal(size=(4, 3, 5))
    z, s = rng.uniform(size=(3, 5)), rng.uniform(size=6)
    out64, _, c64 = cell.forward(p64, x, z, s)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    out32, _, c32 = cell.forward(p32, x.astype(np.float32), z, s)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-6)
    d = rng.normal(size=out64.shape)
    g64, g32 = cell.backward(d, None, c64), cell.backward(d.astype(np.float32), None, c32)
    for k in g64:
        assert g32[k].dtype == np.float32, k
        np.testing.assert_allclose(g32[k], g64[k], rtol=2e-5, atol=2e-5 * np.abs(g64[k]).max(), err_msg=k)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_shape_errors_name_the_shapes(name):
    cell = get_cell(name)
    rng = np.random.default_rng(1)
    params = cell.init_params(3, 4, rng)
    x = rng.normal(size=(2, 5, 3))
    with pytest.raises(ValueError, match=r"\(2, 5, 4\)"):
        cell.forward(params, rng.normal(size=(2, 5, 4)), None, None)
    with pytest.raises(ValueError, match=r"mask z has shape \(4,\)"):
        cell.forward(params, x, np.ones(4), None)
    with pytest.raises(ValueError, match=r"mask s has shape \(2, 4\)"):
        cell.forward(params, x, None, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"shape \(5, 3\)"):
        cell.forward(params, x, None, None, _bad_state(cell, 5, 3))
    bad = dict(params)
    bad[cell.PARAM_KEYS[1]] = np.asarray(params[cell.PARAM_KEYS[1]])[..., :-1]
    with pytest.raises(ValueError, match=cell.PARAM_KEYS[1]):
        cell.forward(bad, x, None, None)
    with pytest.raises(ValueError, match="NaN"):
        cell.forward(params, np.full((2, 5, 3), np.nan), None, None)


def _bad_state(cell, batch, size):
    template = cell.zero_state(batch, size, np.float64)
    return template


def _random_state(cell, batch, size, rng):
    template = cell.zero_state(batch, size, np.float64)
    if isinstance(template, tuple):
        return tuple(rng.normal(size=part.shape) for part in template)
    return rng.normal(size=template.shape)


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("m, n", [(0, 3), (3, 0), (0, 0)])
def test_zero_width_layers_run_and_have_correct_gradients(name, m, n):
    """Compaction can prune a whole layer (width 0) or its whole input (docs/design.md section 5)."""
    cell = get_cell(name)
    rng = np.random.default_rng(3)
    T, B = 3, 2
    problem = dict(params=cell.init_params(m, n, rng), x=rng.normal(size=(T, B, m)),
                   z=rng.uniform(size=(B, m)), s=rng.uniform(size=(B, n)),
                   state0=_random_state(cell, B, n, rng), d_out=rng.normal(size=(T, B, n)),
                   d_state=_random_state(cell, B, n, rng))
    out, _, cache = cell.forward(problem["params"], problem["x"], problem["z"], problem["s"], problem["state0"])
    assert out.shape == (T, B, n)
    grads = cell.backward(problem["d_out"], problem["d_state"], cache)
    inputs = inputs_of(cell, problem)
    assert {k: grads[k].shape for k in inputs} == {k: v.shape for k, v in inputs.items()}
    check_gradients(projected_loss(cell, problem), inputs, grads)
