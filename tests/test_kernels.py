"""The numba kernels (``l0ref/fast/``) against their naive twin, the NumPy reference
forward ``models.log_probs`` (``docs/design.md`` sections 5 and 7), end to end and layer
by layer (each kernel layer against its cell's ``forward``).

A compact model is ``(config, params)`` with all gates one, so ``model.log_probs(config,
params, tokens)`` is its reference forward.  Random models of every registered cell, with
random sizes including fully pruned (0-size) layers and embeddings, with and without
initial states, in float32 and float64.

Tolerance: ``|got - ref| <= rtol * (|ref| + max|ref|)`` elementwise, rtol 1e-5 in
float32 and 1e-10 in float64, i.e. relative to each element and, for elements near 0
(a state component that cancels to ~0), to the scale of the array: the kernel sums in
another order than the reference (the register-blocked product tile, fused
multiply-adds), so an element that is the difference of two O(1) numbers differs by
rounding of O(1), not of itself.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

from l0ref import fast, tree
from l0ref import models as model
from l0ref.cells import CELLS
from l0ref.gates import PARAMS_KEY
from l0ref.models import ModelConfig

RTOL = {np.float32: 1e-5, np.float64: 1e-10}
DTYPES = [np.float32, np.float64]


def assert_close(got, ref, rtol, what=""):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert got.dtype == ref.dtype, f"{what}: dtype {got.dtype} != {ref.dtype}"
    scale = np.abs(ref).max(initial=0.0)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale, err_msg=what)


def flat_states(finals):
    """A list of state arrays from a list of per-layer states (tuples for the LSTM)."""
    out = []
    for s in finals:
        out.extend(s if isinstance(s, tuple) else [s])
    return out


def random_state(cell, batch, n, rng, dtype):
    if cell == "lstm":
        return (rng.uniform(-1, 1, (batch, n)).astype(dtype), rng.uniform(-2, 2, (batch, n)).astype(dtype))
    return rng.uniform(-1, 1, (batch, n)).astype(dtype)


def random_problem(cell, seed, dtype, sizes=None):
    """A random compact model, tokens and (half the time) initial states.

    Sizes 0-13 with 0 drawn often; hidden sizes above 16 now and then so that the
    vectorized dot products run full SIMD vectors; batch 1-7 (partial tiles of fewer
    than ``MAX_ROWS`` rows); weights Uniform(-1, 1) so the gates leave their linear range.
    """
    rng = np.random.default_rng(seed)
    if sizes is None:
        n_layers = int(rng.integers(1, 4))
        pick = lambda: int(rng.choice([0, int(rng.integers(1, 14)), int(rng.integers(17, 40))],  # noqa: E731
                                      p=[0.2, 0.6, 0.2]))
        sizes = (pick(), tuple(pick() for _ in range(n_layers)))
    emb_size, hidden = sizes
    options = {"depth": int(rng.integers(1, 4))} if cell == "rhn" else {}
    config = ModelConfig(cell, int(rng.integers(2, 30)), emb_size, hidden, options)
    params = model.init_params(config, rng, dtype=dtype, init_range=1.0)
    del params[PARAMS_KEY]                               # a compact model: no gates
    params["out_b"] = rng.uniform(-1, 1, config.vocab_size).astype(dtype)
    T, B = int(rng.integers(1, 7)), int(rng.integers(1, 8))
    tokens = rng.integers(0, config.vocab_size, (T, B))
    state0 = None
    if rng.random() < 0.5:
        state0 = [random_state(cell, B, n, rng, dtype) for n in hidden]
    return config, params, tokens, state0


def check_against_reference(config, params, tokens, state0, dtype):
    ref, ref_finals = model.log_probs(config, params, tokens, state0=state0)
    got, got_finals = fast.log_probs(config, params, tokens, state0=state0)
    rtol = RTOL[dtype]
    assert_close(got, ref, rtol, "log-probabilities")
    assert len(got_finals) == len(ref_finals)
    for l, (g, r) in enumerate(zip(got_finals, ref_finals)):
        assert type(g) is type(r), f"layer {l + 1}: state form {type(g)} != {type(r)}"
    for l, (g, r) in enumerate(zip(flat_states(got_finals), flat_states(ref_finals))):
        assert_close(g, r, rtol, f"final state array {l}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("seed", range(12))
def test_kernel_equals_reference_random_models(cell, dtype, seed):
    config, params, tokens, state0 = random_problem(cell, seed, dtype)
    check_against_reference(config, params, tokens, state0, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("sizes", [
    (0, (5,)),            # embedding fully pruned: the first layer runs on its biases
    (4, (0,)),            # the only layer fully pruned: the softmax reads nothing
    (3, (0, 6)),          # a middle layer fully pruned
    (6, (7, 0)),          # the last layer fully pruned
    (0, (0, 0)),          # everything pruned
    (19, (37, 21)),       # wider than one SIMD vector, sizes not multiples of 4
])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "state0"])
def test_kernel_equals_reference_edge_sizes(cell, dtype, sizes, with_state):
    config, params, tokens, _ = random_problem(cell, 1000 + sum(sizes[1]), dtype, sizes=sizes)
    rng = np.random.default_rng(7)
    state0 = None
    if with_state:
        state0 = [random_state(cell, tokens.shape[1], n, rng, dtype) for n in config.hidden_sizes]
    check_against_reference(config, params, tokens, state0, dtype)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_kernel_leaves_inputs_alone(cell):
    config, params, tokens, _ = random_problem(cell, 3, np.float64, sizes=(5, (6, 4)))
    state0 = [random_state(cell, tokens.shape[1], n, np.random.default_rng(1), np.float64)
              for n in config.hidden_sizes]
    before = [a.copy() for a in flat_states(state0)] + [a.copy() for a in tree.leaves(params)]
    fast.log_probs(config, params, tokens, state0=state0)
    after = flat_states(state0) + tree.leaves(params)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_exp_matches_numpy(dtype):
    """The vectorizable exp: relative error a few ulp over the whole clamped range, and
    exp(0) exactly 1."""
    rng = np.random.default_rng(0)
    lo, hi = (-87.0, 88.0) if dtype == np.float32 else (-708.0, 709.0)
    x = np.concatenate([rng.uniform(lo, hi, 20000), rng.uniform(-1, 1, 20000),
                        [0.0, lo, hi, -1e-30, 1e-30, np.log(2), -np.log(2) / 2]]).astype(dtype)
    got = fast.vmath.exp_array(x)
    assert got.dtype == dtype
    exact = np.exp(x.astype(np.longdouble))
    rel = np.abs((got.astype(np.longdouble) - exact) / exact).max()
    eps = np.finfo(dtype).eps
    assert rel < 4 * eps, f"exp relative error {float(rel):.3g} is more than 4 ulp ({float(4 * eps):.3g})"
    assert fast.vmath.exp_array(np.zeros(3, dtype)).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_exp_of_a_vector_is_the_scalar_exp(dtype):
    """The exp of a whole vector (the log-softmax's) gives bit for bit what the scalar exp
    gives lane by lane, inside and beyond the clamped range, for inf and NaN too."""
    w = fast.simd.lanes(dtype)
    rng = np.random.default_rng(2)
    lo, hi = (-100.0, 100.0) if dtype == np.float32 else (-800.0, 800.0)
    x = np.concatenate([rng.uniform(lo, hi, 4000), rng.uniform(-1, 1, 4000),
                        [0.0, np.inf, -np.inf, np.nan, -0.0, 1e-30, -87.5, 88.5]]).astype(dtype)
    x = x[: x.shape[0] // w * w]
    assert x.shape[0] > 8000 - w
    np.testing.assert_array_equal(fast.vmath.exp_vectors(x), fast.vmath.exp_array(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_log_softmax_matches_reference_large_logits(dtype):
    """Stable for logits of size 1e3 (exp would overflow without the max shift), rows of
    every length around the vector widths (the row max's whole vectors and its tail) and
    around the chunks of ``softmax.CHUNK`` (a chunk whose max is far above or below the
    running max: the rescaled sums)."""
    rng = np.random.default_rng(1)
    chunk = fast.softmax.CHUNK
    for V in [1, 2, 7, 8, 31, 32, 33, 37, 65, 100, chunk - 1, chunk, chunk + 1, 2 * chunk + 17]:
        logits = rng.uniform(-1000, 1000, (5, V)).astype(dtype)
        logits[1, -1] = 2000                                    # the max in the tail
        logits[2, 0] = 2000                                     # ... in the first vector
        logits[3, : min(V, chunk)] -= 3000                      # a later chunk's max is larger
        logits[4, min(V, chunk):] -= 3000                       # ... or smaller
        ref = model.log_softmax(logits)
        got = logits.copy()
        for row in got:
            fast.softmax.log_softmax_row(row)
        assert_close(got, ref, RTOL[dtype], f"log-softmax, V={V}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("seed", range(6))
def test_matmul_bias_equals_numpy(dtype, seed):
    """The packed, register-blocked product: ``x @ M.T + b`` for sizes around the tile
    (rows not a multiple of ``MAX_ROWS``, columns not a multiple of a panel, k = 0, one
    row), in one block and split by rows, by panels and by both."""
    rng = np.random.default_rng(seed)
    N, k, cols = int(rng.integers(1, 40)), int(rng.choice([0, 1, int(rng.integers(2, 70))])), int(rng.integers(1, 70))
    x = rng.uniform(-1, 1, (N, k)).astype(dtype)
    M = rng.uniform(-1, 1, (cols, k)).astype(dtype)
    b = rng.uniform(-1, 1, cols).astype(dtype)
    ref = x.astype(np.float64) @ M.T.astype(np.float64) + b
    P = fast.tile.pack_panels(M, dtype)
    panels = P.shape[0]
    for rows in ([0, N], sorted({0, min(N, 6), N}), list(range(0, N, 5)) + [N]):
        for cuts in ([0, panels], sorted({0, panels // 2, panels}), list(range(panels + 1))):
            got = np.full((N, cols), np.nan, dtype)
            fast.tile.matmul_bias(x, P, fast.tile.pad_panels(b, dtype), got, np.array(sorted(set(rows)), np.int64),
                                  np.array(sorted(set(cuts)), np.int64))
            assert_close(got, ref.astype(dtype), RTOL[dtype],
                         f"x @ M.T + b, (N, k, cols) = {(N, k, cols)}, row chunks {rows}, panel chunks {cuts}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("seed", range(4))
def test_output_log_probs_in_every_split_equals_the_reference(dtype, seed):
    """The softmax layer split by rows (product and log-softmax row by row) and by
    columns (each block's partial max and sum of exponentials, combined): the reference's
    log-softmax, for vocabularies around the panel width, logits up to 30."""
    rng = np.random.default_rng(seed)
    N, n, V = int(rng.integers(1, 30)), int(rng.integers(1, 20)), int(rng.choice([1, 7, 33, 100, 257]))
    h = rng.uniform(-1, 1, (N, n)).astype(dtype)
    W = rng.uniform(-3, 3, (V, n)).astype(dtype)
    b = rng.uniform(-1, 1, V).astype(dtype)
    ref = model.log_softmax(h.astype(np.float64) @ W.T.astype(np.float64) + b).astype(dtype)
    P, bias = fast.tile.pack_panels(W, dtype), fast.tile.pad_panels(b, dtype)
    panels = P.shape[0]
    for rows in ([0, N], sorted({0, min(N, 7), N})):
        for cuts in ([0, panels], fast.tile.even(panels, 2).tolist(), list(range(panels + 1))):
            got = np.full((N, V), np.nan, dtype)
            fast.softmax.output_log_probs(h, P, bias, got, np.array(rows, np.int64), np.array(cuts, np.int64))
            assert_close(got, ref, RTOL[dtype], f"(N, n, V) = {(N, n, V)}, rows {rows}, panels {cuts}")


def test_split_shapes_its_blocks_like_the_product():
    """``tile.split``: as many blocks as threads at most, square-ish in cost: a wide product
    by columns, a tall one by rows, rows that fit one tile (``MAX_ROWS``: 12 on AVX-512, 6
    otherwise) not cut, every block non-empty."""
    one_tile = fast.tile.MAX_ROWS
    for threads, rows, panels, want in ((16, 300, 313, (1, 16)), (16, 300, 37, (2, 8)), (16, 5000, 4, (16, 1)),
                                        (2, 300, 313, (1, 2)), (1, 300, 313, (1, 1)), (16, one_tile, 2, (1, 2))):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fast.tile.numba, "get_num_threads", lambda t=threads: t)
            r, c = fast.tile.split(rows, panels, 32)
        assert (len(r) - 1, len(c) - 1) == want, (threads, rows, panels)
        assert r[0] == 0 and r[-1] == rows and c[0] == 0 and c[-1] == panels
        assert (np.diff(r) > 0).all() and (np.diff(c) > 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_pack_panels_layout(dtype):
    """``panels[q, i, j] = M[q nr + j, i]``, zero beyond M's rows; biases zero-padded alike."""
    M = np.arange(1, 1 + 21 * 5, dtype=dtype).reshape(21, 5)
    nr = fast.tile.panel_width(dtype)
    P = fast.tile.pack_panels(M, dtype)
    assert P.shape == (-(-21 // nr), 5, nr) and P.flags.c_contiguous and P.dtype == dtype
    for q in range(P.shape[0]):
        for j in range(nr):
            want = M[q * nr + j] if q * nr + j < 21 else np.zeros(5, dtype)
            np.testing.assert_array_equal(P[q, :, j], want)
    b = fast.tile.pad_panels(np.arange(1, 22, dtype=dtype), dtype)
    assert b.shape == (P.shape[0] * nr,)
    np.testing.assert_array_equal(b[:21], np.arange(1, 22))
    assert not b[21:].any()


def test_rejects_bad_input():
    config, params, tokens, _ = random_problem("lstm", 5, np.float32, sizes=(3, (4,)))
    with pytest.raises(ValueError):
        fast.log_probs(config, params, tokens + config.vocab_size)
    with pytest.raises(ValueError, match="token ids must lie in"):
        fast.log_probs(config, params, np.where(tokens == tokens[0, 0], -1, tokens))
    with pytest.raises(ValueError):
        fast.log_probs(config, params, tokens.astype(np.float32))
    with pytest.raises(ValueError):
        fast.log_probs(config, params, tokens, state0=[None, None])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_prepared_model_runs_many_times_alike(cell, dtype):
    """``prepare`` once, ``run`` twice with state carried: equals the reference on the
    two windows, and the recurrent matrices are the parameters' packed into panels."""
    config, params, _, _ = random_problem(cell, 11, dtype, sizes=(9, (21, 13)))
    prepared = fast.prepare(config, params, parts=1)              # one unit group: the plain layout
    rec = "R" if cell == "rhn" else "U"
    for q, p in zip(prepared.layers, params["layers"]):
        want = np.asarray(p[rec])
        if cell == "rhn":
            np.testing.assert_array_equal(q[rec], np.stack([fast.tile.pack_panels(R, dtype) for R in want]))
        else:
            np.testing.assert_array_equal(q[rec], fast.tile.pack_panels(want, dtype))
    tokens = np.random.default_rng(2).integers(0, config.vocab_size, (8, 3))
    state = None
    for window in (tokens[:4], tokens[4:]):
        got, got_finals = fast.run(prepared, window, state)
        ref, ref_finals = model.log_probs(config, params, window, state0=state)
        assert_close(got, ref, RTOL[dtype], "log-probabilities")
        for g, r in zip(flat_states(got_finals), flat_states(ref_finals)):
            assert_close(g, r, RTOL[dtype], "final state")
        state = got_finals


@pytest.mark.parametrize("where", ["emb", "out_b", "layer"])
def test_prepare_rejects_non_finite_parameters(where):
    config, params, _, _ = random_problem("gru", 5, np.float32, sizes=(3, (4,)))
    if where == "layer":
        params["layers"][0]["b_h"][2] = np.inf
        name = "layers.0.b_h"
    else:
        params[where].flat[1] = np.nan
        name = where
    with pytest.raises(ValueError, match=rf"parameter {name} contains NaN or inf"):
        fast.prepare(config, params)


@pytest.mark.parametrize("key, shape, message", [
    ("emb", (7, 3), r"emb has shape \(7, 3\)"),
    ("out_W", None, r"out_W has shape"),
    ("out_b", None, r"out_b has shape"),
])
def test_prepare_rejects_parameters_that_do_not_fit_the_config(key, shape, message):
    """The kernels read by flat offsets without bounds checks: a wrong size must stop at prepare."""
    config, params, _, _ = random_problem("lstm", 5, np.float32, sizes=(3, (4,)))
    a = params[key]
    params[key] = np.zeros(shape if shape else (a.shape[0], a.shape[-1] + 1) if a.ndim == 2 else (a.shape[0] + 1,),
                           np.float32)
    with pytest.raises(ValueError, match=message):
        fast.prepare(config, params)


def test_prepare_rejects_a_layer_wider_than_the_config():
    config, params, _, _ = random_problem("gru", 5, np.float32, sizes=(3, (4,)))
    wider = model.init_params(ModelConfig("gru", config.vocab_size, 3, (5,)), np.random.default_rng(0))
    params["layers"] = wider["layers"]
    with pytest.raises(ValueError, match=r"layer 1 has 5 units, the config says 4"):
        fast.prepare(config, params)


def test_run_layer_rejects_an_input_of_the_wrong_width_or_dtype():
    config, params, _, _ = random_problem("rhn", 5, np.float32, sizes=(3, (4,)))
    q = fast.prepare(config, params).layers[0]
    with pytest.raises(ValueError, match=r"the layer takes \(T, B, 3\) float32"):
        fast.run_layer("rhn", q, np.zeros((2, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"the layer takes \(T, B, 3\) float32"):
        fast.run_layer("rhn", q, np.zeros((2, 2, 3), np.float64))


def test_prepare_rejects_wrong_recurrent_shape():
    config, params, _, _ = random_problem("lstm", 5, np.float32, sizes=(3, (4,)))
    params["layers"][0]["U"] = params["layers"][0]["U"][:, :3]
    with pytest.raises(ValueError, match=r"U has shape \(16, 3\), expected \(16, 4\)"):
        fast.prepare(config, params)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_results_do_not_depend_on_the_threads(cell, monkeypatch):
    """In one layout, whichever thread computes a row or a unit group, split by rows or
    by columns, and however the products are split (``tile.split``), every number is
    computed by the same operations: the same bits.  (Pretending to have more threads
    than numba runs is safe for the products: ``prange`` runs any number of tasks.)"""
    config, params, _, _ = random_problem(cell, 21, np.float32, sizes=(23, (29, 17)))
    prepared = fast.prepare(config, params, parts=7)
    tokens = np.random.default_rng(3).integers(0, config.vocab_size, (5, 13))
    results = []
    most = numba.get_num_threads()
    for schedule in ("rows", "columns"):
        for threads in sorted({1, 2, most} & set(range(1, most + 1))):
            logp, finals = fast.run(prepared, tokens, schedule=schedule, threads=threads)
            results.append([logp] + flat_states(finals))
    for threads in (2, 3, 7):
        monkeypatch.setattr(fast.tile.numba, "get_num_threads", lambda t=threads: t)
        monkeypatch.setattr(fast.driver, "numba_threads", lambda t=threads: t)
        assert len(fast.tile.chunks(13)) - 1 == threads
        rows, cols = fast.tile.split(65, 3, 16)
        assert (len(rows) - 1) * (len(cols) - 1) <= threads
        logp, finals = fast.run(prepared, tokens, schedule="rows", threads=1)   # products split for `threads`
        monkeypatch.undo()
        results.append([logp] + flat_states(finals))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("parts", [1, 2, 3, 5, 16])
def test_every_layout_and_schedule_equals_the_reference(cell, dtype, parts):
    """Any number of unit groups (``layout.py``: more groups than quanta too, so some are
    empty), split by rows and by columns: the reference's results."""
    config, params, tokens, state0 = random_problem(cell, 50 + parts, dtype, sizes=(11, (37, 9)))
    prepared = fast.prepare(config, params, parts=parts)
    ref, ref_finals = model.log_probs(config, params, tokens, state0=state0)
    for schedule in fast.driver.SCHEDULES:
        got, got_finals = fast.run(prepared, tokens, state0, schedule=schedule)
        assert_close(got, ref, RTOL[dtype], f"{parts} groups, {schedule}")
        for g, r in zip(flat_states(got_finals), flat_states(ref_finals)):
            assert_close(g, r, RTOL[dtype], f"{parts} groups, {schedule}: final state")


def test_auto_splits_by_columns_when_the_batch_is_small():
    threads, enough = 16, fast.driver.ROWS_PER_THREAD
    assert enough == max(4, fast.tile.MAX_ROWS // 2)                                # 6 on AVX-512, else 4
    assert fast.driver.recurrence_split(10, 16, threads=threads)[1] == 16           # 10 rows, 16 threads
    rows, cols = fast.driver.recurrence_split(enough * threads, 16, threads=threads)  # enough rows a thread
    assert cols == 1 and len(rows) == 17
    assert fast.driver.recurrence_split(enough * threads - 1, 16, threads=threads)[1] == 16
    # Table 1's batch of 10 on 2 threads: 5 rows a thread, by columns where a tile has 12 rows
    assert fast.driver.recurrence_split(10, 16, threads=2)[1] == (2 if fast.tile.MAX_ROWS == 12 else 1)
    assert fast.driver.recurrence_split(10, 5, threads=threads)[1] == 5              # at most one thread a group
    assert fast.driver.recurrence_split(10, 1, threads=threads)[1] == 1              # one group: by rows
    rows, cols = fast.driver.recurrence_split(10, 16, threads=1)                     # one thread: all rows
    assert cols == 1 and rows.tolist() == [0, 10]


def test_a_barrier_that_times_out_falls_back_to_rows(monkeypatch):
    """Should a barrier give up (``sync.wait``), the layer runs again split by rows and
    the results are the reference's: here every barrier finds the abort flag raised.
    Split by columns, the first barrier is the input projection's
    (``recurrences._project``), so the driver must compute ``wx`` itself before the rerun."""
    config, params, tokens, state0 = random_problem("lstm", 8, np.float64, sizes=(6, (20, 7)))
    prepared = fast.prepare(config, params, parts=2)
    made = []

    def sync(parties):
        made.append(fast.sync.new_sync(parties))
        made[-1][fast.sync.ABORT] = 1 if len(made) % 2 == 1 else 0     # the first of each layer aborts
        return made[-1]

    monkeypatch.setattr(fast.driver, "new_sync", sync)
    got, finals = fast.run(prepared, tokens, state0, schedule="columns")
    ref, ref_finals = model.log_probs(config, params, tokens, state0=state0)
    assert len(made) == 4, "each layer: an aborted run, then one more"
    assert_close(got, ref, RTOL[np.float64], "after the fallback")
    for g, r in zip(flat_states(finals), flat_states(ref_finals)):
        assert_close(g, r, RTOL[np.float64], "final state after the fallback")


def test_run_layer_rejects_impossible_thread_counts_and_schedules():
    config, params, _, _ = random_problem("gru", 5, np.float32, sizes=(3, (4,)))
    q = fast.prepare(config, params, parts=1).layers[0]
    x = np.zeros((2, 2, 3), np.float32)
    most = numba.get_num_threads()
    for bad in (0, most + 1, 1.5, True):
        with pytest.raises(ValueError, match=f"threads must be an integer from 1 to {most}"):
            fast.run_layer("gru", q, x, threads=bad)
    with pytest.raises(ValueError, match="schedule must be one of"):
        fast.run_layer("gru", q, x, schedule="diagonal")


# --------------------------------------------------------------------------- layer by layer


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", sorted(fast.KERNELS))
@pytest.mark.parametrize("seed", range(6))
def test_each_kernel_layer_equals_its_cells_numpy_forward(cell, seed, dtype):
    """``fast.run_layer`` of every layer against ``cell.forward`` on the same input (the
    reference's output of the layer below), outputs and final states: a difference shows
    in the layer that makes it, not only in the final log-probabilities."""
    config, params, tokens, state0 = random_problem(cell, 1000 + seed, dtype)
    module = CELLS[cell]
    prepared = fast.prepare(config, params)
    x = params["emb"][tokens]
    for l, (p, q) in enumerate(zip(params["layers"], prepared.layers)):
        s0 = None if state0 is None else state0[l]
        ref, ref_final, _ = module.forward(p, x, None, None, s0)
        got, got_final = fast.run_layer(cell, q, x, s0)
        assert_close(got, ref, RTOL[dtype], f"{cell} layer {l + 1} outputs")
        for a, b in zip(flat_states([got_final]), flat_states([ref_final])):
            assert_close(a, b, RTOL[dtype], f"{cell} layer {l + 1} final state")
        x = ref


# --------------------------------------------------------------------------- the disk cache


def test_every_kernel_is_cached_under_the_package_stamp():
    """numba checks a cached function against its own file only; the kernels inline code
    of other files of ``fast/`` (``simd.py``, ``tile.py``), so each must be stamped with the
    whole package (``fast/_jit.py``), or an edit of one file would run stale code."""
    import importlib
    import numba.core.registry
    from l0ref.fast import _jit
    kernels = []
    for name in ("simd", "vmath", "tile", "layout", "sync", "recurrences", "layers", "softmax", "driver"):
        module = importlib.import_module(f"l0ref.fast.{name}")
        kernels += [(f"{name}.{k}", v) for k, v in vars(module).items()
                    if isinstance(v, numba.core.registry.CPUDispatcher) and v.__module__ == module.__name__]
    assert len(kernels) >= 15, [k for k, _ in kernels]
    uncached = {"driver.numba_threads"}          # numba's thread count: nothing to go stale, cannot be cached
    assert uncached <= {k for k, _ in kernels}
    for name, dispatcher in kernels:
        if name in uncached:
            continue
        assert isinstance(dispatcher._cache, _jit.PackageCache), f"{name} is not compiled with fast._jit.njit"
        assert dispatcher._cache._impl.locator.get_source_stamp() == \
            f"{_jit.package_stamp()}-{fast.simd.VECTOR_BYTES}", name


def test_package_stamp_changes_with_any_file(tmp_path):
    from l0ref.fast import _jit
    for path in _jit.PACKAGE_DIR.glob("*.py"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    before = _jit.package_stamp(tmp_path)
    assert before == _jit.package_stamp(_jit.PACKAGE_DIR)
    simd = tmp_path / "simd.py"
    simd.write_text(simd.read_text() + "\n# an edit\n")
    assert _jit.package_stamp(tmp_path) != before
