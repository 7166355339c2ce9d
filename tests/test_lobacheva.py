"""Lobacheva et al.'s gate families with L0 gates (``docs/design.md`` section 6): the cells'
preactivation and weight gates beyond the generic gradient and twin checks of
tests/test_cells.py, the generalized penalty, and compaction with constant gates and CSR
matrices.

- absent gates are today's arithmetic, bit for bit;
- a preactivation gate of 0 makes that gate a constant of its biases: with every gate 0,
  no input and no state moves a cell's output;
- the penalty: with the neuron gates alone it is Eq. 7 bit for bit; its factorized sums
  equal Eq. 7's terms without the other families; it equals a brute-force expectation
  over every gate configuration of tiny layers with every family; its gradient in every
  ``log_alpha`` equals central differences;
- compaction: masked full model == compact NumPy model == numba kernel (float64 1e-12,
  float32 1e-5 relative) with every family, exact zeros and ones among the gates; CSR
  matrices survive a save and load; the constant-gate counts are the zeros of the gates.
"""
from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l0ref import compact as C
from l0ref import sizes
from l0ref import fast
from l0ref import gates as gates_mod
from l0ref import hard_concrete as hc
from l0ref import models
from l0ref import penalties
from l0ref.cells import CELLS, get_cell
from tests.gradcheck import check_gradients
from tests.strategies import arrays, cell_problem, lm_problem

LOBACHEVA_CELLS = sorted(name for name, cell in CELLS.items() if hasattr(cell, "preact_size"))


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("name", LOBACHEVA_CELLS)
@settings(max_examples=10)
@given(data=st.data())
def test_absent_gates_are_todays_arithmetic_bit_for_bit(name, data):
    cell = get_cell(name)
    p = data.draw(cell_problem(cell))
    args = (p["params"], p["x"], p["z"], p["s"], p["state0"])
    out, final, _ = cell.forward(*args)
    ones = {"g": np.ones_like(p["g"]), "weight_masks": {k: np.ones(np.shape(p["params"][k]))
                                                        for k in cell.MATRIX_KEYS}}
    out1, final1, _ = cell.forward(*args, **ones)
    np.testing.assert_array_equal(out1, out)
    for a, b in zip(_parts(final1), _parts(final)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", LOBACHEVA_CELLS)
def test_closed_preactivation_gates_make_the_cell_a_constant_of_its_biases(name):
    """Every g = 0: the output does not move with the input, and equals the cell run with
    zero weights (the biases alone; the GRU's ``b_hn``, inside its gate, zeroed too)."""
    cell = get_cell(name)
    rng = np.random.default_rng(5)
    options = {"depth": 2} if name == "rhn" else {}
    params = cell.init_params(3, 4, rng, **options)
    g = np.zeros(cell.preact_size(4, **options))
    x1, x2 = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 3))
    out1, _, _ = cell.forward(params, x1, g=g)
    out2, _, _ = cell.forward(params, x2, g=g)
    np.testing.assert_array_equal(out1, out2)
    zero_weights = {k: (np.zeros_like(v) if k in cell.MATRIX_KEYS else v.copy()) for k, v in params.items()}
    for key, blocks in cell.PREACT_SCALED_BIASES.items():
        k = zero_weights[key].shape[-1] // cell.BLOCKS
        for blk in blocks:
            zero_weights[key][..., blk * k:(blk + 1) * k] = 0
    np.testing.assert_allclose(out1, cell.forward(zero_weights, x1)[0], rtol=1e-15, atol=1e-15)


# --- The penalty ------------------------------------------------------------------------------

def _config(name, m, n, families, V=3, depth=1):
    options = {"depth": depth} if name == "rhn" else {}
    return models.ModelConfig(name, V, m, (n,), options, families)


def _log_alpha(config, rng, lo=-3.0, hi=3.0):
    return {f: [rng.uniform(lo, hi, g.shape) for g in gates_mod.get_family(f).groups(config)]
            for f in config.gate_families}


def test_penalty_with_neuron_gates_alone_is_eq7_bit_for_bit():
    rng = np.random.default_rng(0)
    config = models.ModelConfig("lstm", 5, 3, (4, 2))
    la = _log_alpha(config, rng)
    total, grads = penalties.penalty_all(config, la, [0.3, 0.7], [1.1, 0.2])
    want, want_grads = penalties.penalty(la["neurons"], [0.3, 0.7], [1.1, 0.2])
    assert total == want
    for a, b in zip(grads["neurons"], want_grads):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", LOBACHEVA_CELLS)
def test_factorized_sums_without_other_families_are_eq7_times_the_blocks(name):
    rng = np.random.default_rng(1)
    cell = get_cell(name)
    options = {"depth": 3} if name == "rhn" else {}
    m, n = 4, 5
    gw, gu = cell.matrix_blocks(**options)
    pz, ps = rng.uniform(size=m), rng.uniform(size=n)
    value, _ = penalties.layer_expected_nonzero_all(pz, ps, None, None, None, gw * n, gu * n, 0.3, 0.7)
    ones, _ = penalties.layer_expected_nonzero_all(pz, ps, np.ones(gu * n), np.ones((gw * n, m)),
                                                   np.ones((gu * n, n)), gw * n, gu * n, 0.3, 0.7)
    want = penalties.layer_expected_nonzero(pz, ps, 0.3 * gw, 0.7 * gu)
    assert value == pytest.approx(want, rel=1e-13)
    assert ones == pytest.approx(want, rel=1e-13)


def _brute_force_layer(cell, options, m, n, p):
    """E ||W_hat||_0 + E ||U_hat||_0 of one layer by summing over every configuration of
    every gate (z, s, g, one per weight), each weighted by its probability."""
    gw, gu = cell.matrix_blocks(**options)
    R, P = gw * n, gu * n
    names = [("z", (m,)), ("s", (n,)), ("g", (P,)), ("W", (R, m)), ("U", (P, n))]
    sizes = [int(np.prod(shape)) for _, shape in names]
    probs = np.concatenate([p[k].reshape(-1) for k, _ in names])
    bits = np.array(list(itertools.product([0, 1], repeat=sum(sizes))), bool)     # (configs, gates)
    weight = np.prod(np.where(bits, probs, 1 - probs), axis=1)
    parts, start = {}, 0
    for (k, shape), size in zip(names, sizes):
        parts[k] = bits[:, start:start + size].reshape((-1,) + shape)
        start += size
    unit = np.arange(P) % n
    rows = parts["g"] & parts["s"][:, unit]                                       # (configs, P)
    W_nz = parts["W"] & rows[:, :R, None] & parts["z"][:, None, :]
    U_nz = parts["U"] & rows[:, :, None] & parts["s"][:, None, :]
    count = W_nz.sum(axis=(1, 2)) + U_nz.sum(axis=(1, 2))
    return float(weight @ count)


@pytest.mark.parametrize("name, options, m, n", [("lstm", {}, 1, 1), ("gru", {}, 1, 1), ("rhn", {"depth": 1}, 1, 2)])
def test_penalty_equals_a_brute_force_expectation_with_every_family(name, options, m, n):
    cell = get_cell(name)
    gw, gu = cell.matrix_blocks(**options)
    rng = np.random.default_rng(2)
    p = {"z": rng.uniform(size=m), "s": rng.uniform(size=n), "g": rng.uniform(size=gu * n),
         "W": rng.uniform(size=(gw * n, m)), "U": rng.uniform(size=(gu * n, n))}
    value, _ = penalties.layer_expected_nonzero_all(p["z"], p["s"], p["g"], p["W"], p["U"], gw * n, gu * n, 1.0, 1.0)
    assert value == pytest.approx(_brute_force_layer(cell, options, m, n, p), rel=1e-12)


@pytest.mark.parametrize("name", LOBACHEVA_CELLS)
@settings(max_examples=10)
@given(data=st.data())
def test_penalty_gradient_in_every_log_alpha_matches_finite_differences(name, data):
    m, n, V = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(st.integers(2, 4))
    families = ("neurons",) + tuple(f for f in ("preact", "weights", "vocab") if data.draw(st.booleans()))
    config = _config(name, m, n, families, V, depth=data.draw(st.integers(1, 2)))
    la = {f: [data.draw(arrays(g.shape, -3.0, 3.0)) for g in gates_mod.get_family(f).groups(config)]
          for f in config.gate_families}
    lams = dict(lam1=[0.4], lam2=[0.9], lam_vocab=0.3, lam_preact=[0.2], lam_weights=[0.5])
    _, grads = penalties.penalty_all(config, la, **lams)
    inputs = {f"{f}.{j}": a for f, arrs in la.items() for j, a in enumerate(arrs)}
    analytic = {f"{f}.{j}": a for f, arrs in grads.items() for j, a in enumerate(arrs)}
    check_gradients(lambda: penalties.penalty_all(config, la, **lams)[0], inputs, analytic)


# --- Compaction with constant gates and CSR matrices --------------------------------------------

def _test_time_like(config, gates):
    """A drawn problem's gates as test-time gates: one vector per per-sequence group."""
    return gates if isinstance(gates, dict) else {"neurons": gates}


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("name", LOBACHEVA_CELLS)
@settings(max_examples=12)
@given(data=st.data())
def test_masked_model_equals_compact_model_equals_kernel(name, dtype, rtol, data):
    p = data.draw(lm_problem(name, per_sequence=False, families="any"))
    config = p["config"]
    params = _cast(p["params"], dtype)
    gates = _cast(_test_time_like(config, p["gates"]), dtype)
    ref, _ = models.log_probs(config, params, p["tokens"], gates)
    cm = C.compact(config, params, gates)
    small, _ = models.log_probs(cm.config, cm.params, p["tokens"])
    kernel, _ = fast.log_probs(cm.config, cm.params, p["tokens"])
    scale = np.abs(ref).max()
    np.testing.assert_allclose(small, ref, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(kernel, ref, rtol=rtol, atol=rtol * scale)
    for l, row in enumerate(sizes.constant_gates(cm)):
        pre = cm.structure[l]["preact"]
        assert (sum(row["constant"].values()) == int(np.sum(pre == 0))) if pre is not None else not row["constant"]


def _cast(tree, dtype):
    if isinstance(tree, dict):
        return {k: _cast(v, dtype) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_cast(v, dtype) for v in tree]
    return np.asarray(tree, dtype)


@pytest.mark.parametrize("name", LOBACHEVA_CELLS)
def test_weight_sparse_matrices_are_stored_as_csr_and_load_back(name, tmp_path):
    rng = np.random.default_rng(3)
    config = _config(name, 6, 8, ("neurons", "preact", "weights"), V=7, depth=2)
    params = models.init_params(config, rng, np.float64)
    gates = models.eval_gates(params)
    gates["weights"] = [np.where(rng.uniform(size=g.shape) < 0.15, rng.uniform(size=g.shape), 0.0)
                        for g in gates["weights"]]
    gates["preact"] = [np.where(rng.uniform(size=g.shape) < 0.3, 0.0, g) for g in gates["preact"]]
    cm = C.compact(config, params, gates)
    keys = get_cell(name).MATRIX_KEYS
    assert set(cm.structure[0]["sparse"]) == set(keys)           # 85% zeros: CSR is smaller
    for key, (data, indices, indptr) in cm.structure[0]["sparse"].items():
        dense = cm.params["layers"][0][key]
        rows = dense.reshape(-1, dense.shape[-1])
        assert data.size == np.count_nonzero(rows)
        rebuilt = np.zeros_like(rows)
        rebuilt[np.repeat(np.arange(rows.shape[0]), np.diff(indptr)), indices] = data
        np.testing.assert_array_equal(rebuilt, rows)
    path = tmp_path / "c.npz"
    C.save(path, cm)
    back = C.load(path)
    np.testing.assert_array_equal(back.structure[0]["preact"], cm.structure[0]["preact"])
    assert set(back.structure[0]["sparse"]) == set(keys)
    for key in get_cell(name).PARAM_KEYS:
        np.testing.assert_array_equal(back.params["layers"][0][key], cm.params["layers"][0][key])
    report = sizes.size_report(back)
    nnz = sum(cm.structure[0]["sparse"][k][0].size for k in keys)
    assert report.components[1].macs_after == nnz


def _weight_sparse(m, n, V, density, dtype, seed):
    """An LSTM with weight gates of which a fraction ``density`` is 1, the rest 0:
    ``(config, params, compact model)``."""
    rng = np.random.default_rng(seed)
    config = _config("lstm", m, n, ("neurons", "weights"), V=V)
    params = models.init_params(config, rng, dtype)
    gates = models.eval_gates(params)
    gates["weights"] = [np.where(rng.uniform(size=g.shape) < density, 1.0, 0.0) for g in gates["weights"]]
    return config, params, C.compact(config, params, gates)


def test_compact_file_with_bad_csr_arrays_is_refused(tmp_path):
    _, _, cm = _weight_sparse(3, 4, 5, 0.1, np.float64, 4)
    data, indices, indptr = cm.structure[0]["sparse"]["U"]
    cm.structure[0]["sparse"]["U"] = (data, indices + 100, indptr)
    path = tmp_path / "bad.npz"
    C.save(path, cm)
    with pytest.raises(ValueError, match="CSR arrays of layers.0.U"):
        C.load(path)


def test_gate_families_are_checked_and_canonical():
    assert gates_mod.canonical_families("vocab,neurons,preact") == ("neurons", "preact", "vocab")
    with pytest.raises(ValueError, match="lack 'neurons'"):
        gates_mod.canonical_families(["preact"])
    with pytest.raises(ValueError, match="unknown gate family 'foo'"):
        gates_mod.canonical_families("neurons,foo")
    with pytest.raises(ValueError, match="twice"):
        gates_mod.canonical_families(["neurons", "preact", "preact"])


def test_weight_gates_are_drawn_once_per_minibatch_and_the_others_per_sequence():
    config = _config("gru", 3, 4, ("neurons", "preact", "weights", "vocab"), V=6)
    la = models.init_params(config, np.random.default_rng(0), np.float64)["log_alpha"]
    u = gates_mod.families.draw_uniforms(config, la, 5, np.random.default_rng(1))
    assert [a.shape for a in u["weights"]] == [(12, 3), (12, 4)]
    assert [a.shape for a in u["preact"]] == [(5, 12)]
    assert [a.shape for a in u["vocab"]] == [(5, 6)]
    assert [a.shape for a in u["neurons"]] == [(5, 3), (5, 4)]
    d = {f: [np.ones_like(a) for a in arrs] for f, arrs in u.items()}
    grads = gates_mod.families.log_alpha_grads(la, u, d)
    for f in la:
        for g, a, uu in zip(grads[f], la[f], u[f]):
            want = hc.sample_grad(a, uu)
            want = want if want.shape == a.shape else want.sum(axis=0)    # per sequence: the draws add up
            np.testing.assert_allclose(g, want, rtol=1e-13)


# --- The chain to log_alpha through the whole language model -------------------------------------

@pytest.mark.parametrize("test_time", [False, True], ids=["sampled", "test_time"])
@pytest.mark.parametrize("name", LOBACHEVA_CELLS)
def test_log_alpha_gradient_of_every_family_through_the_model(name, test_time):
    """d loss / d log_alpha of every group of every family, through the language model and
    the sampled (Eq. 8, fixed uniforms) or test-time (Eq. 10, 11) gates, against central
    differences.  log_alpha in [-1, 1] and uniforms in [0.4, 0.6] keep every gate inside
    (0, 1), away from the clamp's kinks."""
    rng = np.random.default_rng(7)
    config = _config(name, 2, 3, ("neurons", "preact", "weights", "vocab"), V=4, depth=2)
    params = models.init_params(config, rng, np.float64, init_range=0.8)
    la = {f: [rng.uniform(-1, 1, g.shape) for g in gates_mod.get_family(f).groups(config)]
          for f in config.gate_families}
    params["log_alpha"] = la
    T, B = 3, 2
    tokens, targets = rng.integers(0, 4, (T, B)), rng.integers(0, 4, (T, B))
    fam = gates_mod.families
    u = {f: [rng.uniform(0.4, 0.6, a.shape if g.drawn == gates_mod.PER_MINIBATCH else (B,) + a.shape)
             for g, a in zip(gates_mod.get_family(f).groups(config), la[f])] for f in la}

    def gate_values():
        return fam.eval_gates(la) if test_time else fam.sample_gates(la, u)

    def loss():
        return models.forward(config, params, tokens, targets, gate_values())[0]

    grads = models.backward(models.forward(config, params, tokens, targets, gate_values())[2])["gates"]
    analytic = fam.log_alpha_grads_test(la, grads) if test_time else fam.log_alpha_grads(la, u, grads)
    inputs = {f"{f}.{j}": a for f, arrs in la.items() for j, a in enumerate(arrs)}
    check_gradients(loss, inputs, {f"{f}.{j}": a for f, arrs in analytic.items() for j, a in enumerate(arrs)})


# --- The kernel skips the constant rows ------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["rows", "columns"])
@pytest.mark.parametrize("closed", ["some", "a whole gate type", "all"])
@pytest.mark.parametrize("name", LOBACHEVA_CELLS)
def test_kernel_computes_no_row_of_a_constant_gate_and_equals_the_reference(name, closed, schedule):
    """Constant gates (preactivation gate 0) leave rows without weights; the kernel's layout
    gives them no column (``prepare`` counts them) and fills in their constants, and its
    log-probabilities equal the NumPy reference's, split by rows or by unit groups."""
    rng = np.random.default_rng(11)
    cell = get_cell(name)
    config = _config(name, 5, 9, ("neurons", "preact"), V=6, depth=2)
    config = models.ModelConfig(name, 6, 5, (9, 7), config.cell_options, config.gate_families)
    params = models.init_params(config, rng, np.float64)
    gates = models.eval_gates(params)
    for l, g in enumerate(gates["preact"]):
        n = config.hidden_sizes[l]
        if closed == "some":
            g[rng.uniform(size=g.shape) < 0.4] = 0
        elif closed == "a whole gate type":
            g.reshape(-1, cell.BLOCKS, n)[:, 1] = 0                # every unit's second gate
        else:
            g[:] = 0
    cm = C.compact(config, params, gates)
    prepared = fast.prepare(cm.config, cm.params, parts=3)
    # a row is constant where its gate is 0 (the RHN's: at every micro-step)
    want = [int(np.all(g.reshape(-1, cell.BLOCKS * n) == 0, axis=0).sum())
            for g, n in zip(gates["preact"], config.hidden_sizes)]
    assert [q["constant_rows"] for q in prepared.layers] == want and sum(want) > 0
    tokens = rng.integers(0, 6, (4, 3))
    ref, _ = models.log_probs(config, params, tokens, gates)
    got, _ = fast.run(prepared, tokens, schedule=schedule, threads=min(2, numba.get_num_threads()))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


# --- The CSR kernel -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("name", LOBACHEVA_CELLS)
@settings(max_examples=8)
@given(data=st.data())
def test_csr_kernel_equals_the_reference(name, dtype, rtol, data):
    """Weight gates with most values exactly 0 (and exact 1s) make the matrices sparse; the
    CSR kernel runs them (``prepare`` chooses it, or is told to) with the reference's
    results, with and without an initial state, fully pruned layers included."""
    p = data.draw(lm_problem(name, per_sequence=False, families=("neurons", "weights")))
    config = p["config"]
    params = _cast(p["params"], dtype)
    gates = _cast(_test_time_like(config, p["gates"]), dtype)
    density = data.draw(st.sampled_from([0.0, 0.1, 0.5]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    gates["weights"] = [np.where(rng.uniform(size=w.shape) < density, w, 0).astype(dtype) for w in gates["weights"]]
    cm = C.compact(config, params, gates)
    ref, ref_finals = models.log_probs(cm.config, cm.params, p["tokens"])
    prepared = fast.prepare(cm.config, cm.params, sparse="always")
    assert all(q.get("sparse") for q in prepared.layers)
    got, finals = fast.run(prepared, p["tokens"])
    scale = max(1.0, np.abs(ref).max())
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)
    got2, _ = fast.run(prepared, p["tokens"], finals)            # continuing from a carried state
    ref2, _ = models.log_probs(cm.config, cm.params, p["tokens"], None, ref_finals)
    np.testing.assert_allclose(got2, ref2, rtol=rtol, atol=rtol * scale)


def test_prepare_runs_a_layer_sparse_where_csr_is_smaller():
    config, params, sparse = _weight_sparse(8, 16, 5, 0.05, np.float32, 12)
    dense = C.compact(config, params, models.eval_gates(params))
    assert fast.prepare(sparse.config, sparse.params).layers[0].get("sparse")
    assert not fast.prepare(dense.config, dense.params).layers[0].get("sparse")
    assert not fast.prepare(sparse.config, sparse.params, sparse="never").layers[0].get("sparse")
    with pytest.raises(ValueError, match="sparse must be one of"):
        fast.prepare(sparse.config, sparse.params, sparse="yes")


# --- The report's constant-gate picture -----------------------------------------------------------

@pytest.mark.parametrize("name, options", [("lstm", {}), ("gru", {}), ("rhn", {"depth": 2})])
def test_constant_gate_picture_counts_the_zeros_of_the_live_units(name, options, tmp_path):
    from l0ref import report
    config = models.ModelConfig(name, 20, 5, (8, 6), options, ("neurons", "preact"))
    params = models.init_params(config, np.random.default_rng(13), np.float64)
    gates = models.eval_gates(params)
    gates["preact"][0][::3] = 0
    gates["neurons"][1][::4] = 0                                  # pruned units are left out
    maps = report.constant_gate_maps(config, gates)
    cm = C.compact(config, params, gates)
    assert [m["constant"] for m in maps] == [row["constant"] for row in sizes.constant_gates(cm)]
    assert maps[0]["live"].tolist() == [j for j in range(8) if j % 4]
    path = report.plot_constant_gates(config, params, tmp_path / "cg.png", gates)
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="no preactivation gates"):
        report.constant_gate_maps(config, {"neurons": gates["neurons"]})


def test_the_other_families_start_open_and_the_neuron_gates_as_before():
    """Lobacheva et al.'s families start at log_alpha ~ N(3, 0.1) (test-time gate 1, most
    samples exactly 1); the neuron gates keep Wen et al.'s N(1, 0.1) and draw the same
    numbers as a neurons-only model of the same seed."""
    plain = models.ModelConfig("lstm", 9, 4, (5,))
    every = models.ModelConfig("lstm", 9, 4, (5,), {}, ("neurons", "preact", "weights", "vocab"))
    a = models.init_params(plain, np.random.default_rng(3), np.float64)["log_alpha"]
    b = models.init_params(every, np.random.default_rng(3), np.float64)["log_alpha"]
    for x, y in zip(a["neurons"], b["neurons"]):
        np.testing.assert_array_equal(x, y)
    for family in ("preact", "weights", "vocab"):
        values = np.concatenate([v.reshape(-1) for v in b[family]])
        assert abs(values.mean() - 3.0) < 0.05 and np.all(hc.deterministic(values) == 1)
