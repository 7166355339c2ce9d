"""The driver of the compact-model kernels: lay a model out once, run it layer by layer.

A compact model is ``(config, params)`` of ``models/`` with the surviving neurons only and
the test-time gates folded into the weights, so its forward has no masks.
:func:`log_probs` runs it with the same results as ``models.log_probs(config, params,
tokens)`` (the NumPy reference that ``tests/test_kernels.py`` checks this package
against) and the same return convention; :func:`prepare` lays a model's weights out for
the kernels once (``tile.pack_panels``) and :func:`run` runs the prepared model, for
callers that run it many times.  Each cell with a kernel has one row in
:data:`KERNELS`: how to lay out its layer and which recurrence runs it
(``recurrences.py``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np

from ..cells import get_cell
from ..gates import PARAMS_KEY
from .layout import constant_layout, gate_rows, pack_grouped, pad_grouped, unit_groups
from .layers import gru_layer, lstm_layer, rhn_layer
from .softmax import output_log_probs
from . import lanes as lanes_mod
from . import sparse as sparse_mod
from .sync import barrier_safe, new_sync
from .tile import MAX_ROWS, chunks, pack_panels, pad_panels, split


@dataclass(frozen=True)
class Prepared:
    """A compact model laid out for the kernels: every weight matrix packed into panels
    (:func:`pack_panels`), biases zero-padded to them, all in one dtype.  Built once by
    :func:`prepare` (as inference code loads weights once), run by :func:`run`."""

    cell: str
    vocab_size: int
    emb: np.ndarray
    layers: tuple
    out_W: np.ndarray
    out_b: np.ndarray
    n_classes: int | None = None      #: a document classifier's classes (``out_W`` has that many rows)


def _packed_input(p: dict, key_b: str, rows, dtype) -> dict:
    return {"W": pack_grouped(p["W"], rows, dtype), "b_in": pad_grouped(p[key_b], rows, dtype)}


def _prepare_lstm(p, rows, dtype):
    """W packed with b (what the input projection adds), U packed."""
    return {**_packed_input(p, "b", rows, dtype), "U": pack_grouped(p["U"], rows, dtype)}


def _prepare_gru(p, rows, dtype):
    """W packed with b_i, U packed, b_h laid out (the recurrent bias, inside r * (...))."""
    return {**_packed_input(p, "b_i", rows, dtype), "U": pack_grouped(p["U"], rows, dtype),
            "b_rec": pad_grouped(p["b_h"], rows, dtype)}


def _prepare_rhn(p, rows, dtype):
    """W packed with b^1 (the first micro-step's bias), every R^k packed, all biases laid out."""
    b_rec = pad_grouped(p["b"], rows, dtype)
    return {"W": pack_grouped(p["W"], rows, dtype), "b_in": b_rec[0], "b_rec": b_rec,
            "R": np.stack([pack_grouped(R_k, rows, dtype) for R_k in np.asarray(p["R"])])}


def _constants_lstm(q, p, const_rows, dtype):
    """The tails of ``wx`` and ``pre`` (``layout.constant_layout``): a constant row's
    preactivation is its bias."""
    b = np.asarray(p["b"], dtype)[const_rows]
    return {"tail_wx": b, "tail_pre": b}


def _constants_gru(q, p, const_rows, dtype):
    """A constant row's input part is its b_i, its recurrent part its b_h."""
    return {"tail_wx": np.asarray(p["b_i"], dtype)[const_rows], "tail_pre": np.asarray(p["b_h"], dtype)[const_rows]}


def _constants_rhn(q, p, const_rows, dtype):
    """A constant row's preactivation is its bias at each micro-step: the first's in the
    tail of ``wx``, every micro-step's in the tail of ``b_rec`` (the kernel copies it)."""
    b = np.asarray(p["b"], dtype)
    return {"tail_wx": b[0, const_rows], "tail_pre": b[0, const_rows],
            "b_rec": np.ascontiguousarray(np.concatenate([q["b_rec"], b[:, const_rows]], axis=1))}


def _run_lstm(q, x, state, sync, grid, starts):
    h, c = state
    return lstm_layer(x, q["W"], q["b_in"], q["U"], q["groups"], q["pos"], q["tail"], q["tail_wx"], q["tail_pre"],
                      h, c, sync, *grid, starts)


def _run_gru(q, x, state, sync, grid, starts):
    h, = state
    return gru_layer(x, q["W"], q["b_in"], q["U"], q["b_rec"], q["groups"], q["pos"], q["tail"], q["tail_wx"],
                     q["tail_pre"], h, sync, *grid, starts)


def _run_rhn(q, x, state, sync, grid, starts):
    s, = state
    return rhn_layer(x, q["W"], q["b_in"], q["R"], q["b_rec"], q["groups"], q["pos"], q["tail"], q["tail_wx"],
                     q["tail_pre"], s, sync, *grid, starts)


@dataclass(frozen=True)
class CellKernel:
    """How the driver runs one cell: ``prepare(params, rows, dtype)`` -> the layer's
    arrays in the layout whose columns hold the gate rows ``rows`` (``layout.gate_rows``),
    ``run(q, x, state, sync, grid, starts)`` runs the layer over the packed steps
    ``starts`` of the inputs x in one compiled call (``layers.py``) and returns ``(out,
    aborted)`` (``state``: the cell's state arrays, (B, n) each, the initial state on
    entry; ``grid``: :func:`layer_grid`'s rows, columns and product split; ``sync`` the
    threads' barrier: ``recurrences.py``)."""

    prepare: Callable
    run: Callable
    state: tuple            #: names of the state arrays, in the order of the cell's state
    constants: Callable     #: ``(layer, params, constant_rows, dtype)`` -> the tails' values (``layout.constant_layout``)


#: The cells that have a kernel, by name; any other registered cell runs in NumPy only.
KERNELS = {
    "lstm": CellKernel(_prepare_lstm, _run_lstm, ("h0", "c0"), _constants_lstm),
    "gru": CellKernel(_prepare_gru, _run_gru, ("h0",), _constants_gru),
    "rhn": CellKernel(_prepare_rhn, _run_rhn, ("q0",), _constants_rhn),
}


def live_rows(module, p: dict) -> np.ndarray:
    """The gate rows of a layer that some weight feeds (bool, (G n,)): any nonzero in its
    row of any matrix (``MATRIX_KEYS``; the RHN's at any micro-step).  The others are
    constant gates (a preactivation gate folded to 0): their preactivation is the bias."""
    rows = None
    for key in module.MATRIX_KEYS:
        a = np.asarray(p[key])
        axis = module.FOLD_AXES[key].index("rows")
        nonzero = np.any(a != 0, axis=tuple(i for i in range(a.ndim) if i != axis))
        rows = nonzero if rows is None else rows | nonzero
    return rows


def _kernel(cell: str) -> CellKernel:
    if cell not in KERNELS:
        raise ValueError(f"no kernel for cell {cell!r}; known: {sorted(KERNELS)}")
    return KERNELS[cell]


def prepare_layer(cell: str, p: dict, m: int, dtype, options: dict | None = None, parts: int | None = None) -> dict:
    """One layer's parameters for :func:`run_layer`, after checking every shape against
    the cell's ``param_shapes`` (the kernels read by flat offsets without bounds checks):
    ``n``, the unit ``groups`` of the layout (``layout.py``: ``parts`` of them, default
    one per numba thread), W packed with the bias the input projection adds (``b_in``),
    the recurrent matrices packed and, GRU and RHN, the recurrent biases ``b_rec``, all
    in that layout.  ``options``: the config's cell options (the RHN's depth).  Gate rows
    with no weight (:func:`live_rows`: constant gates) get no column: the layout of
    ``layout.constant_layout``, with ``pos`` and the constants' values (``ca``, ``cx``);
    ``constant_rows`` counts them."""
    kernel = _kernel(cell)
    module = get_cell(cell)
    W = np.asarray(p["W"])
    if W.ndim != 2 or W.shape[1] != m or W.shape[0] % module.BLOCKS:
        raise ValueError(f"{cell} W has shape {W.shape}, expected ({module.BLOCKS}n, {m})")
    n = W.shape[0] // module.BLOCKS
    for key, shape in module.param_shapes(m, n, **(options or {})).items():
        if np.shape(p[key]) != tuple(shape):
            raise ValueError(f"{cell} {key} has shape {np.shape(p[key])}, expected {tuple(shape)}")
    parts = numba.get_num_threads() if parts is None else parts
    live = live_rows(module, p)
    if live.all():
        groups = unit_groups(n, module.BLOCKS, parts, dtype)
        q = {"n": n, "groups": groups, **kernel.prepare(p, gate_rows(n, module.BLOCKS, groups, dtype), dtype),
             "pos": np.empty(0, np.int64), "tail": 0, "tail_wx": np.empty(0, dtype), "tail_pre": np.empty(0, dtype)}
    else:                                      # constant gates: no column, no product (layout.constant_layout)
        groups, rows, pos, const_rows = constant_layout(n, module.BLOCKS, parts, dtype, live)
        q = {"n": n, "groups": groups, **kernel.prepare(p, rows, dtype), "pos": pos, "tail": len(const_rows)}
        q.update(kernel.constants(q, p, const_rows, dtype))
    q["constant_rows"] = int((~live).sum())
    return q


def _check_finite(params: dict) -> None:
    """``ValueError`` naming the first parameter with a NaN or inf (the kernels would
    carry it into every log-probability)."""
    named = [("emb", params["emb"]), ("out_W", params["out_W"]), ("out_b", params["out_b"])]
    named += [(f"layers.{l}.{key}", a) for l, p in enumerate(params["layers"]) for key, a in p.items()]
    for name, a in named:
        if not np.all(np.isfinite(a)):
            raise ValueError(f"parameter {name} contains NaN or inf")


def _check_shape(name: str, a, want: tuple) -> None:
    if np.shape(a) != want:
        raise ValueError(f"parameter {name} has shape {np.shape(a)}, expected {want}")


#: ``sparse=`` of :func:`prepare`: a layer runs in the CSR kernel (``sparse.py``) when one
#: of its matrices is smaller in CSR ("auto"), always, or never (the dense kernel, zeros
#: and all).
SPARSE = ("auto", "always", "never")


def prepare_sparse_layer(cell: str, p: dict, m: int, dtype, options: dict | None = None) -> dict:
    """One layer for the CSR kernel (``sparse.py``): every matrix in CSR (the RHN's R as
    its stack of rows), the biases as the cell reads them."""
    module = get_cell(cell)
    n = np.shape(p["W"])[0] // module.BLOCKS
    for key, shape in module.param_shapes(m, n, **(options or {})).items():
        if np.shape(p[key]) != tuple(shape):
            raise ValueError(f"{cell} {key} has shape {np.shape(p[key])}, expected {tuple(shape)}")

    def rows(key):
        a = np.asarray(p[key], dtype)
        return sparse_mod.csr(a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1]))

    q = {"sparse": True, "n": n, "m": m, "W": rows("W"), "U": rows(module.MATRIX_KEYS[1]),
         "constant_rows": int((~live_rows(module, p)).sum())}
    if cell == "lstm":
        q.update(b_in=np.asarray(p["b"], dtype))
    elif cell == "gru":
        q.update(b_in=np.asarray(p["b_i"], dtype), b_rec=np.ascontiguousarray(p["b_h"], dtype))
    else:
        q.update(b_in=np.ascontiguousarray(np.asarray(p["b"], dtype)[0]), b_rec=np.ascontiguousarray(p["b"], dtype))
    return q


def _runs_sparse(cell: str, p: dict, sparse: str) -> bool:
    """Whether a layer runs in the CSR kernel: ``sparse`` "always"/"never", or "auto": where
    a matrix's *live* rows (``live_rows``; constant gates' empty rows cost the dense kernel
    nothing either) are smaller in CSR form."""
    if sparse not in SPARSE:
        raise ValueError(f"sparse must be one of {SPARSE}, got {sparse!r}")
    if sparse != "auto":
        return sparse == "always"
    module = get_cell(cell)
    live = live_rows(module, p)
    for key in module.MATRIX_KEYS:
        a = np.asarray(p[key])
        rows = np.take(a, np.flatnonzero(live), axis=module.FOLD_AXES[key].index("rows"))
        if sparse_mod.csr_is_smaller(rows.reshape(int(np.prod(rows.shape[:-1])), rows.shape[-1])):
            return True
    return False


def run_sparse_layer(cell: str, q: dict, x: np.ndarray, state0=None):
    """One layer of :func:`prepare_sparse_layer` over x (T, B, m): ``(outputs (T, B, n),
    final state)``, as :func:`run_layer`.  The batch runs transposed and padded to whole
    SIMD vectors (``sparse.py``); the padding rows are zeros, and dropped."""
    dtype = x.dtype
    T, B, m = x.shape
    if m != q["m"]:
        raise ValueError(f"layer input has shape {x.shape}; the layer takes (T, B, {q['m']})")
    n, Bp = q["n"], sparse_mod.padded_batch(B, dtype)
    xT = np.zeros((m, T, Bp), dtype)
    xT[:, :, :B] = x.transpose(2, 0, 1)
    rows_in = q["W"][2].shape[0] - 1
    wx = np.empty((T, rows_in, Bp), dtype)
    sparse_mod.csr_input(xT, *q["W"], q["b_in"], wx)
    states = []
    for s in _initial_states(state0, _kernel(cell).state, B, n, dtype):
        sT = np.zeros((n, Bp), dtype)
        sT[:, :B] = s.T
        states.append(sT)
    outT = np.empty((T, n, Bp), dtype)
    preT = np.empty((rows_in, Bp), dtype)
    if cell == "lstm":
        sparse_mod.lstm_sequence(wx, *q["U"], states[0], states[1], outT, preT)
    elif cell == "gru":
        sparse_mod.gru_sequence(wx, *q["U"], sparse_mod.bias_rows(q["b_rec"], Bp), states[0], outT, preT)
    else:
        sparse_mod.rhn_sequence(wx, *q["U"], sparse_mod.bias_rows(q["b_rec"], Bp), states[0], outT, preT)
    out = np.ascontiguousarray(outT[:, :, :B].transpose(0, 2, 1))
    return out, _final_states([s[:, :B].T.copy() for s in states], out, T)


def prepare(config, params: dict, parts: int | None = None, sparse: str = "auto") -> Prepared:
    """The kernel layout of a compact model ``(config, params)`` (see :func:`log_probs`),
    each layer in ``parts`` unit groups (``layout.py``; default one per numba thread,
    which a column split needs: prepare after ``numba.set_num_threads``); a layer with
    weight-sparse matrices for the CSR kernel instead (``sparse``, one of :data:`SPARSE`);
    a classifier's dense LSTM layers also in the layout of ``lanes.py`` (``q["lanes"]``).

    Every shape is checked against ``config`` here: the kernels index by flat offsets
    without bounds checks, so a matrix of the wrong size would be read past its end."""
    _kernel(config.cell)
    if PARAMS_KEY in params:
        raise ValueError("the parameters have gates: the kernels run compact models, whose gates are folded into "
                         "the weights; compact the model first (l0ref.compact.compact, or l0ref compact)")
    emb = np.asarray(params["emb"])
    dtype = emb.dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"kernels run float32 or float64 parameters, got {dtype}")
    L = len(config.hidden_sizes)
    if len(params["layers"]) != L:
        raise ValueError(f"config has {L} layers, parameters have {len(params['layers'])}")
    _check_finite(params)
    V = int(config.vocab_size)
    _check_shape("emb", emb, (V, config.emb_size))
    layers, m = [], config.emb_size
    for l, (p, n) in enumerate(zip(params["layers"], config.hidden_sizes)):
        if _runs_sparse(config.cell, p, sparse):
            q = prepare_sparse_layer(config.cell, p, m, dtype, config.cell_options)
        else:
            q = prepare_layer(config.cell, p, m, dtype, config.cell_options, parts)
            if config.cell == "lstm" and getattr(config, "n_classes", None) is not None:
                q["lanes"] = lanes_mod.prepare_lstm(p, live_rows(get_cell("lstm"), p), dtype)
        if q["n"] != n:
            raise ValueError(f"layer {l + 1} has {q['n']} units, the config says {n}")
        layers.append(q)
        m = n
    K = int(getattr(config, "n_outputs", V))
    _check_shape("out_W", params["out_W"], (K, m))
    _check_shape("out_b", params["out_b"], (K,))
    return Prepared(config.cell, int(config.vocab_size), np.ascontiguousarray(emb), tuple(layers),
                    pack_panels(params["out_W"], dtype), pad_panels(params["out_b"], dtype),
                    getattr(config, "n_classes", None))


# --------------------------------------------------------------------- driver


#: Below this many rows of the batch per thread, "auto" splits a recurrence by columns:
#: 4, or half a product tile where that is more (6 of AVX-512's 12 rows): a thread with
#: fewer runs its tile half empty and reads all the recurrent weights at every step for a
#: few rows, where split by columns a batch of up to a tile fills it and each thread reads
#: its own columns only (``benchmarks/schedules.py`` on the 16-core AVX-512 machine, batch
#: 10, 2 threads: columns 1.03x faster for the compact LSTM, 1.02x GRU, 1.26x RHN; on
#: 2-core AVX2 machines, whose tile has 6 rows, rows were faster at 5 rows a thread).
ROWS_PER_THREAD = max(4, MAX_ROWS // 2)
#: ``schedule=`` of :func:`run_layer`.
SCHEDULES = ("auto", "rows", "columns")


def recurrence_split(batch: int, groups: int, schedule: str = "auto", threads: int | None = None):
    """The threads' grid of a recurrence (``recurrences.py``): ``(row boundaries, column
    parts)``.  By columns (one thread per unit group, at most one per numba thread)
    when each thread would have fewer than ``ROWS_PER_THREAD`` rows of the batch, by
    rows otherwise; by rows always where the threading layer may not run the threads
    together (``sync.barrier_safe``), and with one thread or one group."""
    threads = numba.get_num_threads() if threads is None else int(threads)
    return _recurrence_split(int(batch), int(groups), schedule, threads, barrier_safe())


@functools.lru_cache(maxsize=256)
def _recurrence_split(batch: int, groups: int, schedule: str, threads: int, safe: bool):
    """:func:`recurrence_split`, cached (the kernels never write the boundaries)."""
    columns = {"rows": False, "columns": True, "auto": batch < ROWS_PER_THREAD * threads}[schedule]
    if threads > 1 and groups > 1 and columns and safe:
        return np.array([0, batch], np.int64), min(groups, threads)
    return chunks(batch, 1, threads), 1


def run_layer(cell: str, q: dict, x: np.ndarray, state0=None, schedule: str = "auto",
              threads: int | None = None):
    """One compact recurrent layer over x (T, B, m); returns (outputs (T, B, n), final state).

    ``q`` is the layer from :func:`prepare_layer` in x's dtype; ``state0`` in the cell's
    own form (LSTM ``(h, c)``, GRU ``h``, RHN ``q``) or None for zeros; ``schedule`` (one
    of :data:`SCHEDULES`) and ``threads`` (default: numba's) choose how the threads share
    the recurrence (:func:`recurrence_split`).
    """
    if x.ndim != 3 or x.shape[2] != q["W"].shape[1] or x.dtype != q["W"].dtype:
        raise ValueError(f"layer input has shape {x.shape} and dtype {x.dtype}; the layer takes "
                         f"(T, B, {q['W'].shape[1]}) {q['W'].dtype}")
    return _run_layer(cell, q, x, state0, schedule, _check_schedule(schedule, threads))


def _run_layer(cell: str, q: dict, x: np.ndarray, state0, schedule: str, threads: int):
    """:func:`run_layer` on checked arguments, ``threads`` resolved."""
    T, B, m = x.shape
    out, states = _run_packed(cell, q, np.ascontiguousarray(x).reshape(T * B, m), _equal_steps(T, B), B, state0,
                              schedule, threads)
    out = out.reshape(T, B, q["n"])
    return out, _final_states(states, out, T)


@functools.lru_cache(maxsize=64)
def _equal_steps(T: int, B: int) -> np.ndarray:
    """``starts`` of T steps of B rows each (cached: the driver never writes it)."""
    return B * np.arange(T + 1, dtype=np.int64)


def run_packed(cell: str, q: dict, x: np.ndarray, starts: np.ndarray, state0=None, schedule: str = "auto",
               threads: int | None = None):
    """One compact recurrent layer over packed steps (``recurrences.py``: step t is rows
    ``starts[t]:starts[t + 1]`` of x (rows, m), the first sequences of the batch, a count
    that never grows); returns (outputs (rows, n) in the same packing, the cell's state
    arrays, each (B, n): every sequence's at its last step).  Arguments as :func:`run_layer`,
    which runs the case of equal steps (``starts = B * arange(T + 1)``); one input product
    for all steps and one recurrence, whatever the lengths."""
    if x.ndim != 2 or x.shape[1] != q["W"].shape[1] or x.dtype != q["W"].dtype:
        raise ValueError(f"packed layer input has shape {x.shape} and dtype {x.dtype}; the layer takes "
                         f"(rows, {q['W'].shape[1]}) {q['W'].dtype}")
    threads = _check_schedule(schedule, threads)
    starts = np.ascontiguousarray(starts, np.int64)
    counts = np.diff(starts)
    if starts.ndim != 1 or starts.shape[0] < 2 or starts[0] != 0 or starts[-1] != x.shape[0] \
            or counts[0] < 1 or np.any(np.diff(counts) > 0) or np.any(counts < 0):
        raise ValueError(f"starts must run from 0 to the {x.shape[0]} rows of x in steps that never grow, "
                         f"the first >= 1")
    return _run_packed(cell, q, np.ascontiguousarray(x), starts, int(counts[0]), state0, schedule, threads)


def _check_schedule(schedule, threads) -> int:
    """``schedule`` checked, and ``threads`` by :func:`_check_threads` (returned)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    return _check_threads(threads)


def _run_packed(cell: str, q: dict, x: np.ndarray, starts: np.ndarray, B: int, state0, schedule, threads):
    """:func:`run_packed` on checked arguments (x C-contiguous, B the first step's rows,
    ``threads`` resolved): one compiled call (``layers.py``), and few Python operations
    around it, since between kernels that sweep megabytes each costs microseconds of
    cache misses."""
    kernel = _kernel(cell)
    grid = layer_grid(q, x.shape[0], B, schedule, threads)
    states = _initial_states(state0, kernel.state, B, q["n"], x.dtype)
    out, aborted = kernel.run(q, x, states, new_sync(_parties(grid)), grid, starts)
    if aborted:                                                  # a barrier timed out: again, by rows
        grid = layer_grid(q, x.shape[0], B, "rows", threads)
        states = _initial_states(state0, kernel.state, B, q["n"], x.dtype)
        out, _ = kernel.run(q, x, states, new_sync(_parties(grid)), grid, starts)
    return out, states


def layer_grid(q: dict, rows_in: int, B: int, schedule: str, threads: int) -> tuple:
    """How the threads share a layer of ``rows_in`` input rows (all steps) and a first
    step of ``B`` rows: ``(rows, cols, row_starts, panel_starts)``, the recurrence's grid
    (:func:`recurrence_split`) and the input product's blocks (``tile.split``), which the
    layer computes before the recurrence where the grid does not (``layers.py``)."""
    W = q["W"]
    return _layer_grid(rows_in, B, q["groups"].shape[0], W.shape[0], W.shape[-1], schedule, threads, barrier_safe())


@functools.lru_cache(maxsize=256)
def _layer_grid(rows_in: int, B: int, groups: int, panels: int, nr: int, schedule: str, threads: int,
                safe: bool) -> tuple:
    """:func:`layer_grid`, cached (no kernel writes the boundaries)."""
    return (*_recurrence_split(B, groups, schedule, threads, safe), *split(rows_in, panels, nr, threads))


def _parties(grid: tuple) -> int:
    """The threads of a layer's grid (:func:`layer_grid`): row chunks times column parts."""
    return (grid[0].shape[0] - 1) * grid[1]


@numba.njit(cache=False)
def numba_threads() -> int:
    """numba's thread count, from compiled code: ``numba.get_num_threads()`` from Python
    takes two locks, 25-30 us on cold caches against 5-10 for this call.  Not cached on
    disk (it calls the threading layer through a pointer numba cannot cache); it compiles
    in a fraction of a second, and computes nothing that a stale copy could get wrong."""
    return numba.get_num_threads()


def _check_threads(threads) -> int:
    """``threads`` (None: numba's) checked: an integer from 1 to numba's thread count."""
    most = numba.get_num_threads()
    if threads is None:
        return most
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= most:
        raise ValueError(f"threads must be an integer from 1 to {most} (numba's threads), got {threads!r}")
    return int(threads)


def _initial_states(state0, names, B, n, dtype) -> list:
    """The cell's state arrays as fresh (B, n) arrays (the caller's stay as they are)."""
    if state0 is None:
        return [np.zeros((B, n), dtype) for _ in names]
    given = state0 if len(names) > 1 else (state0,)
    if len(given) != len(names):
        raise ValueError(f"the initial state has {len(given)} arrays, the cell takes {len(names)}")
    out = []
    for s, name in zip(given, names):
        s = np.asarray(s)
        if s.shape != (B, n):
            raise ValueError(f"initial state {name} has shape {s.shape}, expected ({B}, {n})")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"initial state {name} contains NaN or inf")
        out.append(np.array(s, dtype=dtype, order="C"))
    return out


def _final_states(states: list, out: np.ndarray, T: int):
    """The final state in the cell's own form: h, from the outputs of the last step (the
    RHN's q is its output), and the LSTM's c (updated in place) as ``(h, c)``."""
    h = out[T - 1].copy()
    return (h, *states[1:]) if len(states) > 1 else h


def run_stack(prepared: Prepared, x: np.ndarray, state0: list, schedule: str = "auto", threads: int | None = None):
    """The recurrent layers of a prepared model over x (T, B, e): ``(outputs of the last
    layer, final states)``, each layer in the dense kernel or, prepared sparse, the CSR one."""
    return _run_stack(prepared, x, state0, schedule, _check_schedule(schedule, threads))


def _run_stack(prepared: Prepared, x: np.ndarray, state0: list, schedule: str, threads: int):
    """:func:`run_stack`, ``threads`` resolved and checked."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    finals = []
    for q, s0 in zip(prepared.layers, state0):
        if q.get("sparse"):
            x, final = run_sparse_layer(prepared.cell, q, x, s0)
        else:
            if x.ndim != 3 or x.shape[2] != q["W"].shape[1] or x.dtype != q["W"].dtype:
                raise ValueError(f"layer input has shape {x.shape} and dtype {x.dtype}; the layer takes "
                                 f"(T, B, {q['W'].shape[1]}) {q['W'].dtype}")
            x, final = _run_layer(prepared.cell, q, x, s0, schedule, threads)
        finals.append(final)
    return x, finals


def _check_tokens(prepared: Prepared, tokens) -> np.ndarray:
    tokens = _token_array(tokens)
    if tokens.min() < 0 or tokens.max() >= prepared.vocab_size:
        raise ValueError(f"token ids must lie in [0, {prepared.vocab_size})")
    return tokens


def _token_array(tokens) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 1 or tokens.dtype.kind not in "iu":
        raise ValueError(f"tokens must be integer ids of shape (T, B), T, B >= 1; got {tokens.shape} {tokens.dtype}")
    return tokens


def _embed(prepared: Prepared, tokens) -> np.ndarray:
    """The embeddings (T, B, e) of token ids (T, B), checked.  (``np.take`` fetches the
    table's rows, cold in memory after a forward, 2.3x faster than a row loop in numba.)"""
    return np.take(prepared.emb, _check_tokens(prepared, tokens), axis=0)


def run(prepared: Prepared, tokens, state0=None, schedule: str = "auto", threads: int | None = None):
    """Log-probabilities of the next token (T, B, V) and the final states of a model
    laid out by :func:`prepare`; arguments and results as :func:`log_probs`,
    ``schedule`` and ``threads`` as in :func:`run_layer`."""
    if prepared.n_classes is not None:
        raise ValueError("this is a document classifier; run it with fast.classify, not fast.run")
    L = len(prepared.layers)
    state0 = [None] * L if state0 is None else list(state0)
    if len(state0) != L:
        raise ValueError(f"state0 has {len(state0)} entries for {L} layers")
    most = numba_threads()                                       # asked once: each call costs microseconds
    x = _embed(prepared, tokens)                                 # (T, B, e)
    x, finals = _run_stack(prepared, x, state0, schedule, most if threads is None else _check_threads(threads))
    T, B = x.shape[:2]
    logp = np.empty((T * B, prepared.vocab_size), x.dtype)
    output_log_probs(x.reshape(T * B, -1), prepared.out_W, prepared.out_b, logp,
                     *split(T * B, prepared.out_W.shape[0], prepared.out_W.shape[-1], most))
    return logp.reshape(T, B, -1), finals


def log_probs(config, params: dict, tokens, state0=None, schedule: str = "auto", threads: int | None = None,
              sparse: str = "auto"):
    """Log-probabilities of the next token (T, B, V) and the final states of a compact model.

    ``config`` is a ``model.ModelConfig`` (its ``cell``, ``vocab_size``, ``emb_size``,
    ``hidden_sizes``); ``params`` as in ``model.py`` with all gates one (a compact
    model); ``tokens`` (T, B) integer ids; ``state0`` a list with each layer's
    initial state in the cell's own form (LSTM ``(h, c)``, GRU ``h``, RHN ``q``) or
    None for zeros.  Runs in the parameters' dtype (float32 or float64).  Returns
    ``(logp, final_states)`` like ``model.log_probs(config, params, tokens)``.
    Hidden sizes of 0 (a fully pruned layer) are allowed.  Lays the weights out anew
    on every call: to run one model many times, :func:`prepare` it once and call
    :func:`run`.
    """
    return run(prepare(config, params, sparse=sparse), tokens, state0, schedule, threads)


__all__ = ["log_probs", "prepare", "run", "Prepared", "prepare_layer", "run_layer", "run_packed", "KERNELS", "CellKernel", "SPARSE",
           "prepare_sparse_layer", "run_sparse_layer", "run_stack", "live_rows",
           "recurrence_split", "SCHEDULES", "ROWS_PER_THREAD"]
