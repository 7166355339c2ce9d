"""The LSTM with the documents in the vector lanes: a constant gate costs nothing.

The dense kernels (``recurrences.py``) lay a step out as rows of documents times gate
columns, the units' gates side by side in the vectors; every unit pays for all four
gates there, constant or not (a constant gate is gathered in: ``layout.constant_layout``).
Here the arrays run transposed, as in the CSR kernel (``sparse.py``): one gate row per
array row, the documents along it, padded to whole SIMD vectors (``sparse.padded_batch``),
so that every operation on one gate of one unit is whole vectors of documents, and what
a unit costs depends on its own gates (Lobacheva et al.'s point: a constant gate makes
the cell simpler).  A step of the layer (Eq. 1, gate order i, f, g, o):

1. ``pre = b + W x_t + U h_{t-1}`` for the *live* gate rows only (those with a weight;
   ``driver.live_rows``), sigmoid rows (i, f, o) first, then the tanh rows (g):
   :func:`product`, 8 rows times 2 vectors of documents per pass (16 accumulators);
2. the sigmoid or tanh of every live row (:func:`_activate`);
3. the update of every unit (:func:`_update`), ``c <- f c + i g``, ``h <- o tanh(c)``,
   each gate read from its row: a live row of step 2, or one of the rows after them
   that hold the constant gates' activations, ``sigmoid(b)`` or ``tanh(b)``, filled once
   per call.

So a unit whose i, f and o are constant costs one row of each product, one tanh of it
and the tanh of its c, where a plain unit costs four rows, three sigmoids and two tanh.

**Packed steps**, as in ``recurrences.py``: documents sorted by length, longest first;
step t computes the first ``counts[t]`` documents, rounded up to whole vectors.  The
lanes of a document that has ended (or of padding) go on computing from zero inputs;
their values are never read (a document's result is its output at its own last step).

**Threads**: each takes whole vectors of documents and runs the whole time loop on them
(the documents are independent: no barrier); at most one thread per vector, so a batch
of 32 float32 documents on AVX-512 keeps two threads busy.  ``documents.classify`` takes
this kernel where that is all the threads there are (:func:`usable`).

Written out index by index and sliced row by row: numba wraps a negative index around,
and where it cannot rule one out (``range(v0, v1)`` over a row) LLVM does not vectorize
the loop, which measured 8x slower; slicing first makes every index run from 0.
"""
from __future__ import annotations

import numba
import numpy as np

from . import simd
from ._jit import njit
from .sparse import padded_batch
from .vmath import sigmoid, tanh

#: Rows of the weights that one pass of :func:`product` computes (8 accumulators a vector).
BLOCK_ROWS = 8
#: Which gate blocks of the LSTM (i, f, g, o) take tanh: g.
TANH_BLOCKS = (2,)


def pack_blocks(M: np.ndarray, dtype) -> np.ndarray:
    """M (R, k) as (ceil(R / 8), k, 8): the k-th weights of 8 consecutive rows side by
    side (what :func:`product` broadcasts, one after the other), rows of zeros padding."""
    M = np.asarray(M, dtype)
    R, k = M.shape
    blocks = -(-R // BLOCK_ROWS)
    P = np.zeros((blocks * BLOCK_ROWS, k), dtype)
    P[:R] = M
    return np.ascontiguousarray(P.reshape(blocks, BLOCK_ROWS, k).transpose(0, 2, 1))


def prepare_lstm(p: dict, live: np.ndarray, dtype) -> dict:
    """An LSTM layer (``W (4n, m)``, ``U (4n, n)``, ``b (4n,)``) for :func:`lstm_sequence`:
    ``live`` (4n,) bool the gate rows with weights.  Returns the live rows' W, U (packed
    by :func:`pack_blocks`, sigmoid rows first) and b (padded), ``sigmoid_rows`` and
    ``live_rows`` (the two kinds' boundaries), ``constants`` (the constant rows'
    activations, in the rows after the padded live ones) and ``gate_rows`` (4, n): the
    row of ``pre`` that holds gate a of unit j."""
    W, U, b = np.asarray(p["W"]), np.asarray(p["U"]), np.asarray(p["b"])
    n = U.shape[1]
    live = np.asarray(live, bool)
    tanh_row = np.isin(np.arange(4 * n) // max(n, 1), TANH_BLOCKS)
    order = np.concatenate([np.flatnonzero(live & ~tanh_row), np.flatnonzero(live & tanh_row)])
    constant = np.flatnonzero(~live)
    padded = -(-order.size // BLOCK_ROWS) * BLOCK_ROWS
    bias = np.zeros(padded, dtype)
    bias[:order.size] = b[order]
    cb = np.asarray(b[constant], dtype)
    activated = np.where(tanh_row[constant], np.tanh(cb), 1 / (1 + np.exp(-cb))).astype(dtype)
    rows = np.empty(4 * n, np.int64)
    rows[order] = np.arange(order.size)
    rows[constant] = padded + np.arange(constant.size)
    return {"n": n, "m": W.shape[1], "W": pack_blocks(W[order], dtype), "U": pack_blocks(U[order], dtype),
            "b": bias, "sigmoid_rows": int((live & ~tanh_row).sum()), "live_rows": int(order.size),
            "constants": np.ascontiguousarray(activated), "gate_rows": np.ascontiguousarray(rows.reshape(4, n))}


# ------------------------------------------------------------------ product


@njit()
def _start(c, Bp, r0, v, init, bias):
    """The 8 accumulators of rows r0.. at lane v: the bias (``init``) or C's contents."""
    if init:
        return (simd.splat(simd.get(bias, r0)), simd.splat(simd.get(bias, r0 + 1)),
                simd.splat(simd.get(bias, r0 + 2)), simd.splat(simd.get(bias, r0 + 3)),
                simd.splat(simd.get(bias, r0 + 4)), simd.splat(simd.get(bias, r0 + 5)),
                simd.splat(simd.get(bias, r0 + 6)), simd.splat(simd.get(bias, r0 + 7)))
    return (simd.load(c, r0 * Bp + v), simd.load(c, (r0 + 1) * Bp + v), simd.load(c, (r0 + 2) * Bp + v),
            simd.load(c, (r0 + 3) * Bp + v), simd.load(c, (r0 + 4) * Bp + v), simd.load(c, (r0 + 5) * Bp + v),
            simd.load(c, (r0 + 6) * Bp + v), simd.load(c, (r0 + 7) * Bp + v))


@njit()
def _store(c, Bp, r0, v, a):
    """Rows r0.. of C at lane v <- the 8 accumulators ``a``."""
    for i in range(BLOCK_ROWS):
        simd.store(c, (r0 + i) * Bp + v, a[i])


@njit()
def product(P, X, v0, v1, C, init, bias):
    """``C[r, v0:v1] (+)= sum_k M[r, k] X[k, v0:v1]`` for every row r of M (P: M packed by
    :func:`pack_blocks`); X (k, Bp), C (rows, Bp), v0, v1 whole vectors; ``init``: C
    starts at ``bias[r]`` instead of its contents.  Two vectors of documents a pass where
    the CPU has 32 vector registers (16 accumulators, 2 inputs, a broadcast), else one."""
    blocks, k = P.shape[0], P.shape[1]
    Bp = C.shape[1]
    lanes = simd.lanes_of(C)
    pair = simd.VECTOR_REGISTERS >= 32
    p, x, c = P.reshape(-1), X.reshape(-1), C.reshape(-1)
    for blk in range(blocks):
        r0, w = blk * BLOCK_ROWS, blk * k * BLOCK_ROWS
        v = v0
        while pair and v + 2 * lanes <= v1:
            a0, a1, a2, a3, a4, a5, a6, a7 = _start(c, Bp, r0, v, init, bias)
            b0, b1, b2, b3, b4, b5, b6, b7 = _start(c, Bp, r0, v + lanes, init, bias)
            for kk in range(k):
                xa, xb = simd.load(x, kk * Bp + v), simd.load(x, kk * Bp + v + lanes)
                q = w + kk * BLOCK_ROWS
                s = simd.splat(simd.get(p, q))
                a0, b0 = simd.fma(s, xa, a0), simd.fma(s, xb, b0)
                s = simd.splat(simd.get(p, q + 1))
                a1, b1 = simd.fma(s, xa, a1), simd.fma(s, xb, b1)
                s = simd.splat(simd.get(p, q + 2))
                a2, b2 = simd.fma(s, xa, a2), simd.fma(s, xb, b2)
                s = simd.splat(simd.get(p, q + 3))
                a3, b3 = simd.fma(s, xa, a3), simd.fma(s, xb, b3)
                s = simd.splat(simd.get(p, q + 4))
                a4, b4 = simd.fma(s, xa, a4), simd.fma(s, xb, b4)
                s = simd.splat(simd.get(p, q + 5))
                a5, b5 = simd.fma(s, xa, a5), simd.fma(s, xb, b5)
                s = simd.splat(simd.get(p, q + 6))
                a6, b6 = simd.fma(s, xa, a6), simd.fma(s, xb, b6)
                s = simd.splat(simd.get(p, q + 7))
                a7, b7 = simd.fma(s, xa, a7), simd.fma(s, xb, b7)
            _store(c, Bp, r0, v, (a0, a1, a2, a3, a4, a5, a6, a7))
            _store(c, Bp, r0, v + lanes, (b0, b1, b2, b3, b4, b5, b6, b7))
            v += 2 * lanes
        while v < v1:
            a0, a1, a2, a3, a4, a5, a6, a7 = _start(c, Bp, r0, v, init, bias)
            for kk in range(k):
                xa = simd.load(x, kk * Bp + v)
                q = w + kk * BLOCK_ROWS
                a0 = simd.fma(simd.splat(simd.get(p, q)), xa, a0)
                a1 = simd.fma(simd.splat(simd.get(p, q + 1)), xa, a1)
                a2 = simd.fma(simd.splat(simd.get(p, q + 2)), xa, a2)
                a3 = simd.fma(simd.splat(simd.get(p, q + 3)), xa, a3)
                a4 = simd.fma(simd.splat(simd.get(p, q + 4)), xa, a4)
                a5 = simd.fma(simd.splat(simd.get(p, q + 5)), xa, a5)
                a6 = simd.fma(simd.splat(simd.get(p, q + 6)), xa, a6)
                a7 = simd.fma(simd.splat(simd.get(p, q + 7)), xa, a7)
            _store(c, Bp, r0, v, (a0, a1, a2, a3, a4, a5, a6, a7))
            v += lanes


# ------------------------------------------------------------------ the cell


@njit()
def _activate(pre, r0, r1, v0, v1, use_tanh):
    """``pre[r, v0:v1]`` <- its sigmoid (``use_tanh``: its tanh) for r0 <= r < r1."""
    for r in range(r0, r1):
        x = pre[r, v0:v1]
        if use_tanh:
            for b in range(x.shape[0]):
                x[b] = tanh(x[b])
        else:
            for b in range(x.shape[0]):
                x[b] = sigmoid(x[b])


@njit()
def _update(pre, gate_rows, c, h, v0, v1):
    """Eq. 1's state update of every unit j in lanes v0:v1, its gates the rows
    ``gate_rows[:, j]`` of the activated ``pre``: ``c <- f c + i g``, ``h <- o tanh(c)``."""
    for j in range(c.shape[0]):
        i, f = pre[gate_rows[0, j], v0:v1], pre[gate_rows[1, j], v0:v1]
        g, o = pre[gate_rows[2, j], v0:v1], pre[gate_rows[3, j], v0:v1]
        cj, hj = c[j, v0:v1], h[j, v0:v1]
        for b in range(cj.shape[0]):
            x = f[b] * cj[b] + i[b] * g[b]
            cj[b] = x
            hj[b] = o[b] * tanh(x)


@njit(parallel=True)
def lstm_sequence(xT, W, U, b, sigmoid_rows, live_rows, constants, gate_rows, counts, h0, c, outT, pre, parts):
    """The LSTM over packed steps (module docstring), in place: xT (T, m, Bp) the inputs,
    documents along the last axis; W, U, b, sigmoid_rows, live_rows, constants,
    gate_rows as :func:`prepare_lstm` gives them; counts (T,) the documents of each step,
    never growing; h0 (n, Bp) the initial h, c (n, Bp) the initial c, updated in place;
    outT (T, n, Bp) every h_t; pre (padded live rows + constants, Bp) scratch; ``parts``
    threads, each over whole vectors of documents."""
    T, Bp = outT.shape[0], outT.shape[2]
    top = W.shape[0] * BLOCK_ROWS                        # the constants' rows follow the padded live ones
    lanes = simd.lanes_of(pre)
    vectors = Bp // lanes
    for part in numba.prange(parts):
        v0, v1 = lanes * (part * vectors // parts), lanes * ((part + 1) * vectors // parts)
        for r in range(constants.shape[0]):
            row = pre[top + r, v0:v1]
            for i in range(row.shape[0]):
                row[i] = constants[r]
        for t in range(T):
            e1 = min(v1, lanes * (-(-counts[t] // lanes)))
            if e1 <= v0:
                break
            product(W, xT[t], v0, e1, pre, True, b)
            product(U, h0 if t == 0 else outT[t - 1], v0, e1, pre, False, b)
            _activate(pre, 0, sigmoid_rows, v0, e1, False)
            _activate(pre, sigmoid_rows, live_rows, v0, e1, True)
            _update(pre, gate_rows, c, outT[t], v0, e1)


# ------------------------------------------------------------------ in and out


@njit()
def gather_input(emb, tokens, counts, xT):
    """xT[t, :, b] = emb[tokens[t, b]] for b < counts[t]; the other lanes stay as they are
    (zeros from the caller)."""
    for t in range(tokens.shape[0]):
        for b in range(counts[t]):
            row = emb[tokens[t, b]]
            for k in range(row.shape[0]):
                xT[t, k, b] = row[k]


@njit()
def last_outputs(outT, lengths, h):
    """h[b] = outT[lengths[b] - 1, :, b]: each document's output at its last step."""
    for b in range(h.shape[0]):
        src = outT[lengths[b] - 1]
        for j in range(h.shape[1]):
            h[b, j] = src[j, b]


def vectors(batch: int, dtype) -> int:
    """SIMD vectors of ``dtype`` that a batch of ``batch`` documents fills (the most threads
    :func:`lstm_sequence` can use)."""
    return padded_batch(batch, dtype) // simd.lanes(dtype)


def usable(batch: int, dtype, threads: int) -> bool:
    """Whether ``threads`` threads all find work here: no more than the batch's vectors."""
    return threads <= vectors(batch, dtype)


def run_lstm(q: dict, xT: np.ndarray, counts: np.ndarray, threads: int) -> np.ndarray:
    """One layer of :func:`prepare_lstm` over xT (T, m, Bp), zero initial state: outT (T, n, Bp)."""
    T, _, Bp = xT.shape
    dtype = xT.dtype
    n = q["n"]
    outT = np.empty((T, n, Bp), dtype)
    h0, c = np.zeros((n, Bp), dtype), np.zeros((n, Bp), dtype)
    pre = np.empty((q["W"].shape[0] * BLOCK_ROWS + q["constants"].shape[0], Bp), dtype)
    parts = max(1, min(threads, Bp // simd.lanes(dtype)))
    lstm_sequence(xT, q["W"], q["U"], q["b"], q["sigmoid_rows"], q["live_rows"], q["constants"], q["gate_rows"],
                  counts, h0, c, outT, pre, parts)
    return outT


__all__ = ["BLOCK_ROWS", "pack_blocks", "prepare_lstm", "product", "lstm_sequence", "gather_input", "last_outputs",
           "vectors", "usable", "run_lstm"]
