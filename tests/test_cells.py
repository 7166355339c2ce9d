"""Every registered cell's backward pass against float64 central differences.

The loss is a fixed random projection of everything the forward returns,
``L = sum(d_out * outputs) + sum(d_state * final_state)``, so the backward pass
is called with exactly ``(d_out, d_state)``.  Masks are drawn per sequence and
1-D, with exact zeros and ones.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l0ref.cells import CELLS, get_cell
from tests.gradcheck import check_gradients
from tests.strategies import cell_problem

GRAD_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _state_parts(cell, state):
    return state if isinstance(state, tuple) else (state,)


def projected_loss(cell, problem):
    """The scalar loss of ``problem`` and a closure that recomputes it."""
    p = problem

    def loss():
        out, final, _ = cell.forward(p["params"], p["x"], p["z"], p["s"], p["state0"])
        total = np.sum(out * p["d_out"])
        for f, d in zip(_state_parts(cell, final), _state_parts(cell, p["d_state"])):
            total += np.sum(f * d)
        return float(total)

    return loss


def inputs_of(cell, problem) -> dict:
    """Every array the gradient is taken with respect to, keyed as backward keys it."""
    p = problem
    inputs = {"x": p["x"], "z": p["z"], "s": p["s"]}
    inputs.update(zip(cell.STATE_KEYS, _state_parts(cell, p["state0"])))
    inputs.update(p["params"])
    return inputs


@pytest.mark.parametrize("name", sorted(CELLS))
@GRAD_SETTINGS
@given(data=st.data())
def test_backward_matches_finite_differences(name, data):
    cell = get_cell(name)
    problem = data.draw(cell_problem(cell))
    _, _, cache = cell.forward(problem["params"], problem["x"], problem["z"], problem["s"], problem["state0"])
    grads = cell.backward(problem["d_out"], problem["d_state"], cache)
    inputs = inputs_of(cell, problem)
    assert set(grads) == set(inputs), f"backward returned {sorted(grads)}, expected {sorted(inputs)}"
    check_gradients(projected_loss(cell, problem), inputs, grads)


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
