"""The masked LSTM (Wen et al. Eq. 1, 2) beyond the generic checks of tests/test_cells.py
(gradients, the chain to log_alpha, and Eq. 2: the fast product form
``tile(s, 4) * (W @ (z * x) + U @ (s * h)) + b`` equals tests/naive.py's ``lstm_plain`` on
the explicit masked matrices ``W * outer(tile(s, 4), z)`` and ``U * outer(tile(s, 4), s)``).

- a (B, size) mask whose rows are all one vector equals that vector given 1-D;
- all-ones masks give the plain LSTM, and torch.nn.LSTM (reported as skipped where torch is
  not installed; the ``torch`` extra installs it);
- a pruned hidden unit (s_j = 0) is read by nothing, and its weights get zero gradient.
"""
from __future__ import annotations


import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from l0ref.cells import lstm
from tests import naive
from tests.gradcheck import check_gradients
from tests.strategies import cell_problem, masks, stack_problem
from tests.conftest import require_torch

SETTINGS = settings(max_examples=30)
RTOL = 1e-12   # float64 agreement of two orderings of the same arithmetic
ATOL = 1e-13   # for entries that are themselves ~0


def assert_close(actual, desired):
    np.testing.assert_allclose(actual, desired, rtol=RTOL, atol=ATOL)


@SETTINGS
@given(problem=cell_problem(lstm), data=st.data())
def test_per_sequence_and_shared_masks_agree(problem, data):
    """A (B, size) mask whose rows are all one vector equals that vector given 1-D."""
    T, B, m = problem["x"].shape
    n = problem["params"]["U"].shape[1]
    z, s = data.draw(masks(B, m, False)), data.draw(masks(B, n, False))
    args = problem["params"], problem["x"]
    out1, _, _ = lstm.forward(*args, z, s, problem["state0"])
    outB, _, _ = lstm.forward(*args, np.tile(z, (B, 1)), np.tile(s, (B, 1)), problem["state0"])
    assert_close(outB, out1)
    assert_close(out1, naive.masked_cell_plain("lstm", *args, z, s, problem["state0"])[0])


def _torch_lstm_outputs(params, x, h0, c0):
    """torch.nn.LSTM (float64) with the weights copied in: W -> weight_ih, U -> weight_hh,
    b -> bias_ih, bias_hh = 0.  Same gate order (i, f, g, o), same time-major layout."""
    import torch

    m, n = params["W"].shape[1], params["U"].shape[1]
    net = torch.nn.LSTM(m, n, dtype=torch.float64)
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.from_numpy(params["W"]))
        net.weight_hh_l0.copy_(torch.from_numpy(params["U"]))
        net.bias_ih_l0.copy_(torch.from_numpy(params["b"]))
        net.bias_hh_l0.zero_()
        out, (h, c) = net(torch.from_numpy(x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    return out.numpy(), h[0].numpy(), c[0].numpy()


@settings(max_examples=10)
@given(problem=cell_problem(lstm))
def test_all_ones_masks_equal_the_plain_lstm(problem):
    """Masks of ones (and masks of None) give Eq. 1 unmasked."""
    params, x, state0 = problem["params"], problem["x"], problem["state0"]
    T, B, m = x.shape
    n = params["U"].shape[1]
    out_none, (h_none, c_none), _ = lstm.forward(params, x, None, None, state0)
    out_ones, _, _ = lstm.forward(params, x, np.ones((B, m)), np.ones(n), state0)
    np.testing.assert_array_equal(out_ones, out_none)
    plain = [naive.lstm_plain(params, x[:, b], state0[0][b], state0[1][b]) for b in range(B)]
    assert_close(out_none, np.stack([p[0] for p in plain], axis=1))
    assert_close(h_none, np.array([p[1] for p in plain]))
    assert_close(c_none, np.array([p[2] for p in plain]))


@settings(max_examples=10)
@given(problem=cell_problem(lstm))
def test_open_and_masked_lstm_equal_torch(problem):
    """All-ones masks give torch.nn.LSTM's outputs; 1-D masks give torch.nn.LSTM run on
    the explicitly masked matrices of Eq. 2."""
    require_torch()
    params, x, state0 = problem["params"], problem["x"], problem["state0"]
    out_none, (h_none, c_none), _ = lstm.forward(params, x, None, None, state0)
    t_out, t_h, t_c = _torch_lstm_outputs(params, x, *state0)
    assert_close(out_none, t_out)
    assert_close(h_none, t_h)
    assert_close(c_none, t_c)
    z, s = problem["z"], problem["s"]
    z, s = (z, s) if z.ndim == 1 else (z[0], s[0])     # a per-sequence mask: its first row, shared
    out_m, _, _ = lstm.forward(params, x, z, s, state0)
    assert_close(out_m, _torch_lstm_outputs(naive.masked_lstm_params(params, z, s), x, *state0)[0])


# --- Pruned units ---------------------------------------------------------------------------

@st.composite
def pruned_stack(draw):
    """A 2-layer stack whose layer-1 hidden unit j is pruned (s_j = 0 in every sequence)."""
    problem = draw(stack_problem(lstm, 2, max_size=5))
    m, n1, n2 = problem["sizes"]
    B = problem["B"]
    j = draw(st.integers(0, n1 - 1))
    per_sequence = draw(st.booleans())
    g0, g1, g2 = (draw(masks(B, k, per_sequence)) for k in (m, n1, n2))
    g1[..., j] = 0.0
    return problem, [g0, g1, g2], j


def _run_stack(problem, gates):
    (p1, p2), (st1, st2) = problem["params"], problem["state0"]
    out1, fin1, _ = lstm.forward(p1, problem["x"], gates[0], gates[1], st1)
    out2, fin2, _ = lstm.forward(p2, out1, gates[1], gates[2], st2)
    return out1, fin1, out2, fin2


@SETTINGS
@given(data=pruned_stack(), scale=st.sampled_from([0.5, 3.0, 100.0]))
def test_pruned_unit_is_read_by_nothing(data, scale):
    """Changing everything that belongs to pruned unit j of layer 1 -- its rows of W, U, b
    in all four gate blocks, its column of U, its initial h and c -- leaves every other unit
    of layer 1 and every output of layer 2 unchanged, to the last bit."""
    problem, gates, j = data
    _, n = problem["sizes"][:2]
    rows = [k * n + j for k in range(4)]
    out1, _, out2, fin2 = _run_stack(problem, gates)

    changed = dict(problem)
    p1 = {k: v.copy() for k, v in problem["params"][0].items()}
    p1["W"][rows] += scale
    p1["U"][rows] -= scale
    p1["U"][:, j] += scale
    p1["b"][rows] += scale
    h0, c0 = (a.copy() for a in problem["state0"][0])
    h0[:, j] += scale
    c0[:, j] -= scale
    changed["params"] = [p1, problem["params"][1]]
    changed["state0"] = [(h0, c0), problem["state0"][1]]
    out1c, _, out2c, fin2c = _run_stack(changed, gates)

    others = [i for i in range(n) if i != j]
    np.testing.assert_array_equal(out1c[..., others], out1[..., others])
    np.testing.assert_array_equal(out2c, out2)
    np.testing.assert_array_equal(fin2c[0], fin2[0])
    np.testing.assert_array_equal(fin2c[1], fin2[1])
    # the pruned unit's own state still moves (it evolves from its bias and its initial
    # state): the change above was real, and it is invisible only because nothing reads it
    assert not np.array_equal(out1c[..., j], out1[..., j])


@SETTINGS
@given(problem=cell_problem(lstm), data=st.data())
def test_pruned_unit_weights_get_zero_gradient(problem, data):
    """With s_j = 0 the rows of W, U (all four blocks) and the column of U of unit j get an
    exactly zero gradient, as does every column of W of a pruned input (z_k = 0)."""
    params, x = problem["params"], problem["x"]
    T, B, m = x.shape
    n = params["U"].shape[1]
    z, s = problem["z"].copy(), problem["s"].copy()
    j, k = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, m - 1))
    s[..., j] = 0.0
    z[..., k] = 0.0
    rows = [blk * n + j for blk in range(4)]

    def loss():
        out, (h, c), _ = lstm.forward(params, x, z, s, problem["state0"])
        return float(np.sum(out * problem["d_out"]) + np.sum(h * problem["d_state"][0])
                     + np.sum(c * problem["d_state"][1]))

    _, _, cache = lstm.forward(params, x, z, s, problem["state0"])
    grads = lstm.backward(problem["d_out"], problem["d_state"], cache)
    assert np.all(grads["W"][rows] == 0)
    assert np.all(grads["U"][rows] == 0)
    assert np.all(grads["U"][:, j] == 0)
    assert np.all(grads["W"][:, k] == 0)
    # and the finite differences agree (they are zero there, and right everywhere else)
    check_gradients(loss, {"W": params["W"], "U": params["U"]}, grads)
