"""Dense numba inference for compact models (DESIGN.md section 5).

A compact model is ``(config, params)`` of ``model.py`` with the surviving neurons
only and the test-time gates folded into the weights, so its forward has no masks.
:func:`log_probs` runs it with the same results as ``model.log_probs(config, params,
tokens)`` (the NumPy reference, the naive twin that ``tests/test_kernels.py`` checks
this module against) and the same return convention; :func:`prepare` lays a model's
weights out for the kernels once and :func:`run` runs the prepared model, for callers
that run it many times.

Every multiply-add goes through one register-blocked product tile, :func:`_tile`:
up to ``MAX_ROWS`` = 6 rows of the left matrix times a *panel* of ``2 * lanes``
columns (16 in float32) of the right one, accumulated in 12 SIMD registers across
the whole inner dimension and stored once (``simd.py`` gives numba the vector
values; 12 accumulators, 2 weight loads and 6 broadcasts per 12 fused multiply-adds
keep both FMA units of an AVX2 core busy).  :func:`prepare` stores every weight
matrix as panels, ``(panels, k, 2 lanes)``: the weights of 2 lanes outputs for one
input are contiguous, and a panel is read front to back.  The tile serves

- the input projection of every time step at once, ``x W^T + b`` for all (T, B)
  rows (:func:`matmul_bias`), and the output layer, ``h out_W^T + out_b``;
- the recurrence, ``U h_{t-1}`` for the rows of the batch (:func:`lstm_sequence`,
  :func:`gru_sequence`, :func:`rhn_sequence`): the sequences of a batch are
  independent, so each thread takes a chunk of rows and runs the whole time loop for
  them (one fork-join per layer, none per step), a tile of its rows at a time,
  followed by the gate nonlinearities and the state update fused over the row;
- the output layer and the log-softmax of its rows in one parallel pass
  (:func:`output_log_probs`).

The nonlinearities use :func:`exp`, an exp that LLVM vectorizes (numba's own
``exp`` is a scalar libm call without Intel's SVML): Cody-Waite range reduction, a
Taylor polynomial (degree 7 in float32, 13 in float64: the lowest whose truncation
error is below half an ulp), and ``2**k`` built from its IEEE-754 bits.  Relative
error below 4 ulp in either precision (``tests/test_kernels.py`` checks it).

Kernels are flat module-level functions over arrays (STYLE.md), compiled with
``cache=True`` so that a second process loads them from numba's cache.  This
module imports nothing from the training code: it reads the parameter layout of
each cell (``cells/lstm.py``, ``cells/gru.py``, ``cells/rhn.py``) by key.

Not in the paper, chosen here: float32 and float64 both run, each in its own
precision; ``fastmath`` allows reassociation and contraction (FMA) but not the
no-NaN / no-inf assumptions, so results differ from the reference by rounding only.
No BLAS: an OpenBLAS product inside the forward brings a second pool of threads,
and the idle threads of two pools take the cores from each other (measured here with
the previous kernels, which called numpy's OpenBLAS for the input and output
products: the first layer of the compact Table 1 LSTM took 3.4 ms with OpenBLAS's
threads sent to sleep at once, 8.0 ms with its default spin).  The tile matches
OpenBLAS on these shapes (the Table 1 softmax product, 300 x 247 by 247 x 10000:
184 GFLOP/s on two cores here, OpenBLAS 154-170 GFLOP/s).

numba caches each function with the code of what it calls, and invalidates the cache
when *this* file changes; after editing ``simd.py`` alone, touch this file.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

from . import simd

#: LLVM fast-math flags: reassociate (vectorized reductions), contract (FMA),
#: reciprocal and approximate-function freedom; NaN and inf keep their meaning.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: The exp keeps the order of its operations: with reassociation the compiler may
#: merge the two-part Cody-Waite reduction ``(x - k ln2_hi) - k ln2_lo`` into one.
EXP_FASTMATH = {"nsz", "arcp", "contract", "afn"}

#: What every kernel is compiled with: cached on disk, the fast-math flags above, and
#: numpy's error model (a float division by 0 gives inf as in IEEE-754, not Python's
#: ZeroDivisionError, whose test in every division keeps loops from vectorizing).
JIT = dict(cache=True, fastmath=FASTMATH, error_model="numpy")

#: Cells this module can run, by ``config.cell``; each entry: gate blocks of W.
CELL_BLOCKS = {"lstm": 4, "gru": 3, "rhn": 2}

#: Zero offsets and strides are passed to the tile as ``NO_OFFSET``, an int64, not as a
#: literal 0: numba compiles a function anew for every literal constant an argument
#: is called with, and each would be another compilation of the whole tile.
NO_OFFSET = np.int64(0)

#: Rows of a product tile: 6 rows x 2 vectors = 12 accumulators, plus the two weight
#: vectors and a broadcast, of the 16 vector registers of AVX2.
MAX_ROWS = 6

_LOG2E = 1.4426950408889634


# --------------------------------------------------------------------------- exp


def exp(x):
    """exp of a float32 or float64 scalar inside jitted code, vectorizable in loops.

    exp(x) = 2**k exp(r) with k = rint(x / ln 2), r = x - k ln 2 in two parts
    (Cody-Waite: ``ln2_hi`` has few bits, so ``k ln2_hi`` is exact for the k that
    occur), exp(r) by its Taylor polynomial (Horner's scheme), ``2**k`` by :func:`simd.pow2`;
    x is first clamped to where ``2**k`` is a normal number (exp(-87) = 1.6e-38
    in float32: below it the result would be subnormal or 0).  From Python this
    is ``np.exp``; in numba code the precision's own implementation below runs.
    """
    return np.exp(x)


def _exp_float32(x):
    """Degree 7: on |r| <= ln(2)/2 the truncation error r**8/8! is 5e-9, below half an ulp
    (6e-8).  (Estrin's scheme, three multiply-adds deep instead of Horner's seven, ran
    the log-softmax's sum of exps 1.3x slower here: it needs more operations, and the
    out-of-order core already overlaps the independent elements.)"""
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    k = np.rint(x * np.float32(_LOG2E))
    r = (x - k * np.float32(0.693359375)) - k * np.float32(-2.12194440e-4)
    p = np.float32(1 / 5040)
    p = p * r + np.float32(1 / 720)
    p = p * r + np.float32(1 / 120)
    p = p * r + np.float32(1 / 24)
    p = p * r + np.float32(1 / 6)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    return p * simd.pow2(k)


def _exp_float64(x):
    """Degree 13: truncation error r**14/14! = 4e-18, below half an ulp (1.1e-16)."""
    x = min(max(x, -708.0), 709.0)
    k = np.rint(x * _LOG2E)
    r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
    p = 1 / 6227020800
    p = p * r + 1 / 479001600
    p = p * r + 1 / 39916800
    p = p * r + 1 / 3628800
    p = p * r + 1 / 362880
    p = p * r + 1 / 40320
    p = p * r + 1 / 5040
    p = p * r + 1 / 720
    p = p * r + 1 / 120
    p = p * r + 1 / 24
    p = p * r + 1 / 6
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * simd.pow2(k)


@overload(exp, jit_options={"fastmath": EXP_FASTMATH, "error_model": "numpy"})
def _exp_overload(x):
    if x == types.float32:
        return _exp_float32
    if x == types.float64:
        return _exp_float64
    return None


@numba.njit(**JIT, inline="always")
def sigmoid(x):
    """1 / (1 + exp(-x)) in x's precision."""
    one = simd.as_type_of(1.0, x)
    return one / (one + exp(-x))


@numba.njit(**JIT, inline="always")
def tanh(x):
    """2 / (1 + exp(-2x)) - 1 in x's precision (absolute error a few ulp of 1)."""
    one = simd.as_type_of(1.0, x)
    two = simd.as_type_of(2.0, x)
    return two / (one + exp(-two * x)) - one


@numba.njit(**JIT)
def exp_array(a):
    """:func:`exp` of every element of a 1-D array, a copy (what the tests check the exp by)."""
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        out[i] = exp(a[i])
    return out


# ------------------------------------------------------------------ product tile


@numba.njit(**JIT)
def _tile(rows, A, a, P, p, panels, k, Z, z, ldz, C, c, ldc, cols):
    """``C_r = Z_r + A_r @ B`` for the rows r < ``rows`` (<= ``MAX_ROWS``; numba
    compiles one specialization per constant count) and ``panels`` consecutive
    panels of B, of which the first ``cols`` columns are written.

    Flat offsets into C-contiguous arrays, as BLAS takes them: A holds the rows
    interleaved (:func:`_pack_rows`), ``A_r[i]`` at ``a + MAX_ROWS i + r``, so that the
    broadcasts of one input i are neighbours; panel j is the k x (2 lanes) numbers
    from ``p + j k (2 lanes)`` (row i: the weights of input i, :func:`pack_panels`);
    row r of Z starts at ``z + r ldz`` (``ldz`` = 0: one bias row for every row), of
    C at ``c + r ldc``.  Per panel, the 2 x rows accumulators stay in registers for
    the whole of k; per input i: two weight vectors, then per row a broadcast of
    ``A_r[i]`` and two fused multiply-adds.  The six rows are written out one by one:
    each row's accumulators must be variables of their own (registers), which a loop
    over an array of them would put in memory.
    """
    w = simd.lanes_of(P)
    for j in range(panels):
        pj, zj, cj = p + 2 * w * k * j, z + 2 * w * j, c + 2 * w * j
        s00 = simd.load(Z, zj)
        s01 = simd.load(Z, zj + w)
        s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = s00, s01, s00, s01, s00, s01, s00, s01, s00, s01
        if rows > 1:
            s10, s11 = simd.load(Z, zj + ldz), simd.load(Z, zj + ldz + w)
        if rows > 2:
            s20, s21 = simd.load(Z, zj + 2 * ldz), simd.load(Z, zj + 2 * ldz + w)
        if rows > 3:
            s30, s31 = simd.load(Z, zj + 3 * ldz), simd.load(Z, zj + 3 * ldz + w)
        if rows > 4:
            s40, s41 = simd.load(Z, zj + 4 * ldz), simd.load(Z, zj + 4 * ldz + w)
        if rows > 5:
            s50, s51 = simd.load(Z, zj + 5 * ldz), simd.load(Z, zj + 5 * ldz + w)
        for i in range(k):
            u0 = simd.load(P, pj + 2 * w * i)
            u1 = simd.load(P, pj + 2 * w * i + w)
            ai = a + MAX_ROWS * i
            x = simd.splat(simd.get(A, ai))
            s00, s01 = simd.fma(x, u0, s00), simd.fma(x, u1, s01)
            if rows > 1:
                x = simd.splat(simd.get(A, ai + 1))
                s10, s11 = simd.fma(x, u0, s10), simd.fma(x, u1, s11)
            if rows > 2:
                x = simd.splat(simd.get(A, ai + 2))
                s20, s21 = simd.fma(x, u0, s20), simd.fma(x, u1, s21)
            if rows > 3:
                x = simd.splat(simd.get(A, ai + 3))
                s30, s31 = simd.fma(x, u0, s30), simd.fma(x, u1, s31)
            if rows > 4:
                x = simd.splat(simd.get(A, ai + 4))
                s40, s41 = simd.fma(x, u0, s40), simd.fma(x, u1, s41)
            if rows > 5:
                x = simd.splat(simd.get(A, ai + 5))
                s50, s51 = simd.fma(x, u0, s50), simd.fma(x, u1, s51)
        width = min(2 * w, cols - 2 * w * j)
        _store_row(C, cj, s00, s01, width)
        if rows > 1:
            _store_row(C, cj + ldc, s10, s11, width)
        if rows > 2:
            _store_row(C, cj + 2 * ldc, s20, s21, width)
        if rows > 3:
            _store_row(C, cj + 3 * ldc, s30, s31, width)
        if rows > 4:
            _store_row(C, cj + 4 * ldc, s40, s41, width)
        if rows > 5:
            _store_row(C, cj + 5 * ldc, s50, s51, width)


@numba.njit(**JIT)
def _store_row(C, c, v0, v1, cols):
    """``C.flat[c : c + cols]`` = the first ``cols`` lanes of (v0, v1): two vector
    stores for a whole row of a tile, lane by lane for the last, partial panel."""
    w = simd.lanes_of(C)
    if cols == 2 * w:
        simd.store(C, c, v0)
        simd.store(C, c + w, v1)
    else:
        for j in range(min(cols, w)):
            simd.put(C, c + j, simd.lane(v0, j))
        for j in range(w, cols):
            simd.put(C, c + j, simd.lane(v1, j - w))


@numba.njit(**JIT)
def _pack_rows(X, r0, r1, out):
    """The rows r0 <= r < r1 of X (N, k), in blocks of ``MAX_ROWS``, interleaved
    for :func:`_tile`: element i of row r0 + MAX_ROWS j + r goes to
    ``out.flat[MAX_ROWS (k j + i) + r]``; out holds at least that many numbers."""
    k = X.shape[-1]
    for b in range(r0, r1, MAX_ROWS):
        rows = min(MAX_ROWS, r1 - b)
        base = (b - r0) * k
        for i in range(k):
            for r in range(rows):
                simd.put(out, base + MAX_ROWS * i + r, simd.get(X, (b + r) * k + i))


@numba.njit(**JIT)
def _tile_rows(rows, A, a, P, p, panels, k, Z, z, ldz, C, c, ldc, cols):
    """:func:`_tile` for a row count known at run time: the call with the count as a
    constant, so that the compiler drops the code for the rows that are not there."""
    if rows >= 6:
        _tile(6, A, a, P, p, panels, k, Z, z, ldz, C, c, ldc, cols)
    elif rows == 5:
        _tile(5, A, a, P, p, panels, k, Z, z, ldz, C, c, ldc, cols)
    elif rows == 4:
        _tile(4, A, a, P, p, panels, k, Z, z, ldz, C, c, ldc, cols)
    elif rows == 3:
        _tile(3, A, a, P, p, panels, k, Z, z, ldz, C, c, ldc, cols)
    elif rows == 2:
        _tile(2, A, a, P, p, panels, k, Z, z, ldz, C, c, ldc, cols)
    elif rows == 1:
        _tile(1, A, a, P, p, panels, k, Z, z, ldz, C, c, ldc, cols)


# ----------------------------------------------------------- matrix products


#: Bytes of B's panels that a pass of the row blocks of A goes over (:func:`_matmul_rows`):
#: half the L2 cache of a core, so that they stay there while every row block uses them.
PASS_BYTES = 256 * 1024


@numba.njit(**JIT)
def _matmul_rows(A, P, bias, C, r0, r1):
    """``C[r] = A[r] @ B + bias`` for the rows r0 <= r < r1 of A (N, k) and C (N, cols):
    ``P`` (panels, k, 2 lanes) is B (k, cols) packed by :func:`pack_panels`, ``bias``
    (panels * 2 lanes,) zero-padded.  The rows are packed once (:func:`_pack_rows`);
    then, ``PASS_BYTES`` of panels at a time, every block of ``MAX_ROWS`` rows times
    those panels."""
    k, cols = A.shape[-1], C.shape[-1]
    count, nr = P.shape[0], P.shape[-1]
    blocks = -(-(r1 - r0) // MAX_ROWS)
    packed = np.empty(blocks * MAX_ROWS * k, A.dtype)
    _pack_rows(A, r0, r1, packed)
    p, c = P.reshape(-1), C.reshape(-1)
    per_pass = max(1, PASS_BYTES // max(1, k * nr * P.itemsize))
    for q in range(0, count, per_pass):
        panels = min(per_pass, count - q)
        for j in range(blocks):
            r = r0 + MAX_ROWS * j
            _tile_rows(min(MAX_ROWS, r1 - r), packed, MAX_ROWS * k * j, p, q * k * nr, panels, k,
                       bias, q * nr, NO_OFFSET, c, r * cols + q * nr, cols, cols - q * nr)


@numba.njit(**JIT, parallel=True)
def matmul_bias(A, P, bias, C, starts):
    """C = A @ B + bias (see :func:`_matmul_rows`), rows split among the threads:
    chunk i is rows ``starts[i]:starts[i + 1]``."""
    for i in numba.prange(starts.shape[0] - 1):
        _matmul_rows(A, P, bias, C, starts[i], starts[i + 1])


@numba.njit(**JIT)
def _recurrent_product(h, b0, rows, P, Z, z, ldz, pre, packed):
    """``pre[b] = Z_b + h[b] @ U^T`` for the ``rows`` (<= ``MAX_ROWS``) rows from b0 of
    h (B, n); ``P`` is U (G n, n) packed, pre (B, panels * 2 lanes); row b - b0 of Z
    starts at flat offset ``z + (b - b0) ldz`` (``ldz`` = 0: one bias row for all);
    ``packed`` (n * MAX_ROWS,): scratch for the rows of h interleaved."""
    n, width = h.shape[1], pre.shape[1]
    _pack_rows(h, b0, b0 + rows, packed)
    _tile_rows(rows, packed, NO_OFFSET, P.reshape(-1), NO_OFFSET, P.shape[0], n, Z, z, ldz, pre.reshape(-1),
               b0 * width, width, width)


# ------------------------------------------------------------------------ cells


@numba.njit(**JIT)
def _lstm_update(a, c, h, out, n):
    """Eq. 1 for one sequence: gates from the preactivations ``a`` (i, f, g, o blocks
    of n), ``c <- f c + i g``, ``h <- o tanh(c)``, h also into ``out``; vectorized."""
    for j in range(n):
        cj = sigmoid(a[n + j]) * c[j] + sigmoid(a[j]) * tanh(a[2 * n + j])
        hj = sigmoid(a[3 * n + j]) * tanh(cj)
        c[j] = cj
        h[j] = hj
        out[j] = hj


@numba.njit(**JIT, parallel=True)
def lstm_sequence(wx, U, h, c, out, pre, starts):
    """The LSTM (Eq. 1) over a whole sequence, in place.

    wx (T, B, width): ``x_t W^T + b`` of every step (:func:`matmul_bias`), ``width``
    = 4n rounded up to whole panels; U (4n, n) packed; h, c (B, n): the initial state
    on entry, the final state on exit; out (T, B, n): every h_t; pre (B, width):
    scratch; ``starts``: the row chunks, one per thread.  Gate order i, f, g, o.
    """
    T, B, width = wx.shape
    n = h.shape[1]
    for ci in numba.prange(starts.shape[0] - 1):
        packed = np.empty(n * MAX_ROWS, h.dtype)
        for t in range(T):
            for b in range(starts[ci], starts[ci + 1], MAX_ROWS):
                rows = min(MAX_ROWS, starts[ci + 1] - b)
                _recurrent_product(h, b, rows, U, wx.reshape(-1), (t * B + b) * width, width, pre, packed)
                for r in range(b, b + rows):
                    _lstm_update(pre[r], c[r], h[r], out[t, r], n)


@numba.njit(**JIT)
def _gru_update(x, a, h, out, n):
    """PyTorch's GRU for one sequence: ``x`` = W x_t + b_i, ``a`` = U h + b_h (r, u, n
    blocks); ``h <- m + u (h - m)`` with ``m = tanh(x_n + r a_n)``; h also into out."""
    for j in range(n):
        r = sigmoid(x[j] + a[j])
        u = sigmoid(x[n + j] + a[n + j])
        m = tanh(x[2 * n + j] + r * a[2 * n + j])
        hj = m + u * (h[j] - m)
        h[j] = hj
        out[j] = hj


@numba.njit(**JIT, parallel=True)
def gru_sequence(wx, U, b_h, h, out, pre, starts):
    """PyTorch's GRU over a whole sequence, in place.

    wx (T, B, width): ``x_t W^T + b_i``; U (3n, n) packed; b_h (width,) zero-padded;
    h (B, n): the initial state on entry, the final one on exit; out (T, B, n); pre
    (B, width): scratch; ``starts`` as in :func:`lstm_sequence`.  Gate order r, u, n::

        r = sigmoid(wx_r + U_r h + b_hr),  u = sigmoid(wx_u + U_u h + b_hu)
        m = tanh(wx_n + r * (U_n h + b_hn)),  h <- (1 - u) * m + u * h
    """
    T = wx.shape[0]
    n = h.shape[1]
    for ci in numba.prange(starts.shape[0] - 1):
        packed = np.empty(n * MAX_ROWS, h.dtype)
        for t in range(T):
            for b in range(starts[ci], starts[ci + 1], MAX_ROWS):
                rows = min(MAX_ROWS, starts[ci + 1] - b)
                _recurrent_product(h, b, rows, U, b_h, NO_OFFSET, NO_OFFSET, pre, packed)
                for r in range(b, b + rows):
                    _gru_update(wx[t, r], pre[r], h[r], out[t, r], n)


@numba.njit(**JIT)
def _rhn_update(a, q, n):
    """One RHN micro-step for one sequence: ``q <- q + t (h - q)`` with h = tanh(a_H),
    t = sigmoid(a_T) (the coupled carry gate 1 - t)."""
    for j in range(n):
        hj = tanh(a[j])
        tj = sigmoid(a[n + j])
        q[j] += tj * (hj - q[j])


@numba.njit(**JIT, parallel=True)
def rhn_sequence(wx, R, rb, q, out, pre, starts):
    """The RHN (Zilly et al.) over a whole sequence, in place.

    wx (T, B, width): ``x_t W^T + b^1`` (the first micro-step's input and bias);
    R (L, 2n, n) packed per micro-step; rb (L, width): the micro-steps' biases,
    zero-padded (row 0 is already in wx); q (B, n): the initial state on entry, the
    final one on exit; out (T, B, n): q after the last micro-step of every t;
    pre (B, width): scratch; ``starts`` as in :func:`lstm_sequence`.
    """
    T, B, width = wx.shape
    L, n = R.shape[0], q.shape[1]
    for ci in numba.prange(starts.shape[0] - 1):
        packed = np.empty(n * MAX_ROWS, q.dtype)
        for t in range(T):
            for b in range(starts[ci], starts[ci + 1], MAX_ROWS):
                rows = min(MAX_ROWS, starts[ci + 1] - b)
                for k in range(L):
                    if k == 0:
                        _recurrent_product(q, b, rows, R[0], wx.reshape(-1), (t * B + b) * width, width, pre, packed)
                    else:
                        _recurrent_product(q, b, rows, R[k], rb.reshape(-1), k * width, NO_OFFSET, pre, packed)
                    for r in range(b, b + rows):
                        _rhn_update(pre[r], q[r], n)
                for r in range(b, b + rows):
                    out[t, r] = q[r]


# ----------------------------------------------------------------- output layer


@numba.njit(**JIT)
def _row_max(x):
    """max of a non-empty 1-D array: four vectors of running maxima (independent
    chains), combined at the end, then the elements after the last whole vector."""
    n, w = x.shape[0], simd.lanes_of(x)
    top = x[0]
    if n >= 4 * w:
        m0, m1, m2, m3 = simd.load(x, 0), simd.load(x, w), simd.load(x, 2 * w), simd.load(x, 3 * w)
        for j in range(4 * w, n - 4 * w + 1, 4 * w):
            m0 = simd.maximum(m0, simd.load(x, j))
            m1 = simd.maximum(m1, simd.load(x, j + w))
            m2 = simd.maximum(m2, simd.load(x, j + 2 * w))
            m3 = simd.maximum(m3, simd.load(x, j + 3 * w))
        m0 = simd.maximum(simd.maximum(m0, m1), simd.maximum(m2, m3))
        for i in range(w):
            top = max(top, simd.lane(m0, i))
    for j in range(n - n % (4 * w), n):
        top = max(top, x[j])
    return top


@numba.njit(**JIT)
def _sum_exp(x, top):
    """sum(exp(x - top)) of a 1-D array (vectorized; reassociated into several partial sums)."""
    total = x[0] - x[0]
    for j in range(x.shape[0]):
        total += exp(x[j] - top)
    return total


@numba.njit(**JIT)
def log_softmax_row(x):
    """x <- log_softmax(x) for a non-empty 1-D array, in place: ``x - (max + log(sum(exp(x - max))))``."""
    top = _row_max(x)
    shift = top + np.log(_sum_exp(x, top))
    for j in range(x.shape[0]):
        x[j] -= shift


@numba.njit(**JIT, parallel=True)
def output_log_probs(h, P, bias, logp, starts):
    """logp (N, V) = log_softmax(h @ out_W^T + out_b) for h (N, n): ``P`` is out_W
    packed, ``bias`` zero-padded.  Each thread takes the rows ``starts[i]:starts[i +
    1]``: their product, then their log-softmax, row by row.

    (Tried and slower here: the online softmax, which folds each pass of panels into a
    running max and sum while its columns are still in L2: the three passes over a
    row are bound by the exp, not by memory, and short slices cost calls.)"""
    for i in numba.prange(starts.shape[0] - 1):
        _matmul_rows(h, P, bias, logp, starts[i], starts[i + 1])
        for r in range(starts[i], starts[i + 1]):
            log_softmax_row(logp[r])


# --------------------------------------------------------------------- layout


def panel_width(dtype) -> int:
    """Columns of a panel: two SIMD vectors (16 float32, 8 float64)."""
    return 2 * simd.lanes(dtype)


def pack_panels(M: np.ndarray, dtype) -> np.ndarray:
    """The right-hand matrix ``M^T`` of a product ``x @ M^T``, for M (N, k) in PyTorch's
    layout (one row per output), as panels (ceil(N / nr), k, nr), nr = :func:`panel_width`:
    ``panels[q, i, j] = M[q nr + j, i]``, zero where ``q nr + j >= N``."""
    M = np.asarray(M)
    nr = panel_width(dtype)
    N, k = M.shape
    count = -(-N // nr)
    padded = np.zeros((count * nr, k), dtype)
    padded[:N] = M
    return np.ascontiguousarray(padded.reshape(count, nr, k).transpose(0, 2, 1))


def pad_panels(b: np.ndarray, dtype) -> np.ndarray:
    """A bias (..., N) zero-padded along its last axis to whole panels."""
    b = np.asarray(b)
    nr = panel_width(dtype)
    N = b.shape[-1]
    out = np.zeros(b.shape[:-1] + (-(-N // nr) * nr,), dtype)
    out[..., :N] = b
    return out


def _chunks(rows: int, multiple: int = 1) -> np.ndarray:
    """Boundaries of row chunks, one per numba thread (at most ``rows`` chunks), each
    a multiple of ``multiple`` rows but the last."""
    threads = max(1, min(rows, numba.get_num_threads()))
    step = -(-rows // threads)
    step = -(-step // multiple) * multiple
    return np.array(sorted({*range(0, rows, step), rows}), np.int64)


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


def prepare_layer(cell: str, p: dict, m: int, dtype) -> dict:
    """One layer's parameters for :func:`run_layer`: ``n``; ``W`` packed with its bias
    ``b_in`` (LSTM b, GRU b_i, RHN b^1: what the input projection adds); the recurrent
    matrix packed (LSTM/GRU ``U``; RHN ``R`` per micro-step) and, GRU and RHN, the
    recurrent biases ``b_rec`` (GRU b_h; RHN b, all micro-steps)."""
    if cell not in CELL_BLOCKS:
        raise ValueError(f"no kernel for cell {cell!r}; known: {sorted(CELL_BLOCKS)}")
    G = CELL_BLOCKS[cell]
    W = np.asarray(p["W"])
    n = W.shape[0] // G
    if W.ndim != 2 or W.shape != (G * n, m):
        raise ValueError(f"{cell} W has shape {W.shape}, expected ({G}n, {m})")
    rec = "R" if cell == "rhn" else "U"
    want = (np.shape(p[rec])[0], G * n, n) if cell == "rhn" else (G * n, n)
    if np.shape(p[rec]) != want:
        raise ValueError(f"{cell} {rec} has shape {np.shape(p[rec])}, expected {want}")
    q = {"n": n, "W": pack_panels(W, dtype)}
    if cell == "lstm":
        q["b_in"] = pad_panels(p["b"], dtype)
        q["U"] = pack_panels(p["U"], dtype)
    elif cell == "gru":
        q["b_in"], q["b_rec"] = pad_panels(p["b_i"], dtype), pad_panels(p["b_h"], dtype)
        q["U"] = pack_panels(p["U"], dtype)
    else:
        q["b_rec"] = pad_panels(p["b"], dtype)
        q["b_in"] = q["b_rec"][0]
        q["R"] = np.stack([pack_panels(R_k, dtype) for R_k in np.asarray(p["R"])])
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


def prepare(config, params: dict) -> Prepared:
    """The kernel layout of a compact model ``(config, params)`` (see :func:`log_probs`).

    Every shape is checked against ``config`` here: the kernels index by flat offsets
    without bounds checks, so a matrix of the wrong size would be read past its end."""
    if config.cell not in CELL_BLOCKS:
        raise ValueError(f"no kernel for cell {config.cell!r}; known: {sorted(CELL_BLOCKS)}")
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
        q = prepare_layer(config.cell, p, m, dtype)
        if q["n"] != n:
            raise ValueError(f"layer {l + 1} has {q['n']} units, the config says {n}")
        layers.append(q)
        m = n
    _check_shape("out_W", params["out_W"], (V, m))
    _check_shape("out_b", params["out_b"], (V,))
    return Prepared(config.cell, int(config.vocab_size), np.ascontiguousarray(emb), tuple(layers),
                    pack_panels(params["out_W"], dtype), pad_panels(params["out_b"], dtype))


# --------------------------------------------------------------------- driver


def run_layer(cell: str, q: dict, x: np.ndarray, state0=None):
    """One compact recurrent layer over x (T, B, m); returns (outputs (T, B, n), final state).

    ``q`` is the layer from :func:`prepare_layer` in x's dtype; ``state0`` in the cell's
    own form (LSTM ``(h, c)``, GRU ``h``, RHN ``q``) or None for zeros.
    """
    dtype = x.dtype
    if x.ndim != 3 or x.shape[2] != q["W"].shape[1] or dtype != q["W"].dtype:
        raise ValueError(f"layer input has shape {x.shape} and dtype {dtype}; the layer takes "
                         f"(T, B, {q['W'].shape[1]}) {q['W'].dtype}")
    x = np.ascontiguousarray(x)
    T, B, m = x.shape
    n = q["n"]
    width = q["W"].shape[0] * panel_width(dtype)                 # G n rounded up to whole panels
    wx = np.empty((T, B, width), dtype)
    matmul_bias(x.reshape(T * B, m), q["W"], q["b_in"], wx.reshape(T * B, width),       # every step's
                _chunks(T * B, MAX_ROWS))                                                # input projection
    out = np.empty((T, B, n), dtype)
    pre = np.empty((B, width), dtype)
    starts = _chunks(B)

    def state(s, name):
        """The initial state as a fresh (B, n) array (updated in place)."""
        if s is None:
            return np.zeros((B, n), dtype)
        s = np.asarray(s)
        if s.shape != (B, n):
            raise ValueError(f"initial state {name} has shape {s.shape}, expected ({B}, {n})")
        return np.array(s, dtype=dtype, order="C")               # a copy: the caller's array stays

    if cell == "lstm":
        h0, c0 = (None, None) if state0 is None else state0
        h, c = state(h0, "h0"), state(c0, "c0")
        lstm_sequence(wx, q["U"], h, c, out, pre, starts)
        return out, (h, c)
    if cell == "gru":
        h = state(state0, "h0")
        gru_sequence(wx, q["U"], q["b_rec"], h, out, pre, starts)
        return out, h
    if cell == "rhn":
        s = state(state0, "q0")
        rhn_sequence(wx, q["R"], q["b_rec"], s, out, pre, starts)
        return out, s
    raise ValueError(f"no kernel for cell {cell!r}; known: {sorted(CELL_BLOCKS)}")


def run(prepared: Prepared, tokens, state0=None):
    """Log-probabilities of the next token (T, B, V) and the final states of a model
    laid out by :func:`prepare`; arguments and results as :func:`log_probs`."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 1 \
            or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must be integer ids of shape (T, B), T, B >= 1; got {tokens.shape} {tokens.dtype}")
    if tokens.min() < 0 or tokens.max() >= prepared.vocab_size:
        raise ValueError(f"token ids must lie in [0, {prepared.vocab_size})")
    L = len(prepared.layers)
    state0 = [None] * L if state0 is None else list(state0)
    if len(state0) != L:
        raise ValueError(f"state0 has {len(state0)} entries for {L} layers")
    x = np.take(prepared.emb, tokens, axis=0)                    # (T, B, e); faster than emb[tokens]
    finals = []
    for q, s0 in zip(prepared.layers, state0):
        x, final = run_layer(prepared.cell, q, x, s0)
        finals.append(final)
    T, B = tokens.shape
    logp = np.empty((T * B, prepared.vocab_size), x.dtype)
    output_log_probs(x.reshape(T * B, -1), prepared.out_W, prepared.out_b, logp, _chunks(T * B, MAX_ROWS))
    return logp.reshape(T, B, -1), finals


def log_probs(config, params: dict, tokens, state0=None):
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
    return run(prepare(config, params), tokens, state0)


__all__ = ["log_probs", "prepare", "run", "Prepared", "prepare_layer", "run_layer", "pack_panels",
           "pad_panels", "panel_width", "matmul_bias", "output_log_probs", "lstm_sequence", "gru_sequence",
           "rhn_sequence", "log_softmax_row", "exp", "exp_array", "sigmoid", "tanh", "CELL_BLOCKS", "MAX_ROWS"]
