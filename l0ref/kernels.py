"""Dense numba inference for compact models (DESIGN.md section 5).

A compact model is ``(config, params)`` of ``model.py`` with the surviving neurons
only and the test-time gates folded into the weights, so its forward has no masks.
:func:`log_probs` runs it with the same results as ``model.log_probs(config, params,
tokens)`` (the NumPy reference, the naive twin that ``tests/test_kernels.py`` checks
this module against) and the same return convention; :func:`prepare` lays a model's
weights out for the kernels once (contiguous, recurrent rows zero-padded to whole SIMD
vectors) and :func:`run` runs the prepared model, for callers that run it many times.

Where the time goes and how each part is done (measured on a 2-core AVX-512 CPU):

- the input projection of every time step, ``x @ W.T`` for all (T, B) at once:
  one BLAS matrix product (numpy's ``np.dot``, by W stored transposed), outside the jitted code (the
  bias is added where the kernel reads the projection);
- the recurrence: one jitted whole-sequence loop per cell (:func:`lstm_sequence`,
  :func:`gru_sequence`, :func:`rhn_sequence`).  The sequences of a batch are
  independent, so the batch is split into one chunk of rows per thread and each
  thread runs the whole time loop for its rows (``numba.prange`` over chunks: one
  fork-join per layer, not per step).  Per step, the recurrent product
  ``h @ U.T`` is :func:`_add_matmul_rows`, register-blocked dot products (5 rows of
  h by 2 rows of U), then the gate nonlinearities and the state update are fused
  over the row;
- the nonlinearities use :func:`_exp_inplace`, an exp that the compiler can
  vectorize (numba's own ``exp`` is a scalar libm call without Intel's SVML, about
  5x slower here than numpy's SIMD exp): Cody-Waite range reduction, a Taylor
  polynomial (degree 7 in float32, 13 in float64: the lowest whose truncation error
  is below half an ulp), and ``2**k`` built from its IEEE-754 bits.  Relative error
  below 4 ulp in either precision (``tests/test_kernels.py`` checks it);
- the output layer: ``h @ out_W.T`` by BLAS (out_W stored transposed), then :func:`log_softmax_inplace`
  adds the bias and takes the row-wise log-softmax in one parallel pass.

Kernels are flat module-level functions over arrays (STYLE.md), compiled with
``cache=True`` so that a second process loads them from numba's cache.  This
module imports nothing from the training code: it reads the parameter layout of
each cell (``cells/lstm.py``, ``cells/gru.py``, ``cells/rhn.py``) by key.

Not in the paper, chosen here: float32 and float64 both run, each in its own
precision; ``fastmath`` allows reassociation and contraction (FMA) but not the
no-NaN / no-inf assumptions, so results differ from the reference by rounding only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

#: LLVM fast-math flags: reassociate (vectorized reductions), contract (FMA),
#: reciprocal and approximate-function freedom; NaN and inf keep their meaning.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: The exp keeps the order of its operations: with reassociation the compiler may
#: merge the two-part Cody-Waite reduction ``(x - k ln2_hi) - k ln2_lo`` into one.
EXP_FASTMATH = {"nsz", "arcp", "contract", "afn"}

#: Cells this module can run, by ``config.cell``; each entry: gate blocks of W.
CELL_BLOCKS = {"lstm": 4, "gru": 3, "rhn": 2}


# --------------------------------------------------------------------------- exp


def exp_constants(dtype) -> tuple[np.ndarray, int, int]:
    """Constants of :func:`_exp_inplace` for ``dtype``: ``(C, shift, bias)``.

    ``C = [log2(e), ln2_hi, ln2_lo, x_min, x_max, 1/0!, 1/1!, ..., 1/d!]`` in ``dtype``,
    with the Taylor degree ``d`` = 7 for float32 and 13 for float64: on
    ``|r| <= ln(2)/2`` the truncation error ``r**(d+1)/(d+1)!`` is then 5e-9 and 4e-18,
    below half an ulp (6e-8 and 1.1e-16).
    ``ln2_hi + ln2_lo = ln 2`` with ``ln2_hi`` exact in few bits (Cody-Waite), so
    that ``x - k ln2`` loses nothing for the k that occur; ``x`` is clamped to
    ``[x_min, x_max]``, where ``2**k`` is a normal number.  ``shift`` and ``bias``
    place ``k`` in the exponent field: ``bits(2**k) = (k + bias) << shift``.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        ln2_hi, ln2_lo, lo, hi, shift, bias = 0.693359375, -2.12194440e-4, -87.0, 88.0, 23, 127
        degree = 7
    elif dtype == np.float64:
        ln2_hi, ln2_lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10
        lo, hi, shift, bias = -708.0, 709.0, 52, 1023
        degree = 13
    else:
        raise ValueError(f"kernels run float32 or float64, got {dtype}")
    taylor = [1.0 / math.factorial(k) for k in range(degree + 1)]
    return np.array([1.4426950408889634, ln2_hi, ln2_lo, lo, hi] + taylor, dtype), shift, bias


def bits_dtype(dtype) -> np.dtype:
    """The integer type with the size of ``dtype`` (the scratch that holds ``2**k``'s bits)."""
    return np.dtype(np.int32) if np.dtype(dtype) == np.float32 else np.dtype(np.int64)


@numba.njit(cache=True, fastmath=EXP_FASTMATH)
def _exp_reduce(x, C):
    """(k, r) with exp(x) = 2**k exp(r), k = rint(x / ln 2), r = x - k ln 2 (Cody-Waite),
    x first clamped to ``[C[3], C[4]]``."""
    x = min(max(x, C[3]), C[4])
    k = np.rint(x * C[0])
    return k, (x - k * C[1]) - k * C[2]


@numba.njit(cache=True, fastmath=EXP_FASTMATH)
def _horner_from_7(p, r, C):
    """The last seven Horner steps of the Taylor polynomial: ``p`` is the accumulated
    coefficient of ``r**7`` (``C[12] = 1/7!`` for degree 7, more for higher degrees)."""
    p = p * r + C[11]
    p = p * r + C[10]
    p = p * r + C[9]
    p = p * r + C[8]
    p = p * r + C[7]
    p = p * r + C[6]
    return p * r + C[5]


@numba.njit(cache=True, fastmath=EXP_FASTMATH)
def _exp_inplace(a, bits, scale, C, shift, bias):
    """a <- exp(a), elementwise, for a 1-D array; vectorizable.

    ``bits`` is an integer scratch at least as long as ``a`` and ``scale`` is the
    same memory viewed as floats (``bits.view(a.dtype)``); ``C, shift, bias`` from
    :func:`exp_constants`.  exp(x) = 2**k * exp(r), |r| <= ln(2)/2, exp(r) by its
    Taylor polynomial of degree 7 (float32) or 13 (float64), Horner; one loop per
    degree, so that each is a straight-line body the compiler vectorizes.
    """
    if C.shape[0] == 5 + 8:          # degree 7
        for i in range(a.shape[0]):
            k, r = _exp_reduce(a[i], C)
            a[i] = _horner_from_7(C[12], r, C)
            bits[i] = (np.int64(k) + bias) << shift
    else:                            # degree 13
        for i in range(a.shape[0]):
            k, r = _exp_reduce(a[i], C)
            p = C[18]
            p = p * r + C[17]
            p = p * r + C[16]
            p = p * r + C[15]
            p = p * r + C[14]
            p = p * r + C[13]
            p = p * r + C[12]
            a[i] = _horner_from_7(p, r, C)
            bits[i] = (np.int64(k) + bias) << shift
    for i in range(a.shape[0]):
        a[i] *= scale[i]


@numba.njit(cache=True, fastmath=FASTMATH)
def _sigmoid_inplace(a, bits, scale, C, shift, bias):
    """a <- sigmoid(a) = 1 / (1 + exp(-a)), 1-D."""
    for i in range(a.shape[0]):
        a[i] = -a[i]
    _exp_inplace(a, bits, scale, C, shift, bias)
    for i in range(a.shape[0]):
        a[i] = 1 / (1 + a[i])


@numba.njit(cache=True, fastmath=FASTMATH)
def _tanh_inplace(a, bits, scale, C, shift, bias):
    """a <- tanh(a) = 2 / (1 + exp(-2a)) - 1, 1-D (absolute error a few ulp of 1)."""
    for i in range(a.shape[0]):
        a[i] = -2 * a[i]
    _exp_inplace(a, bits, scale, C, shift, bias)
    for i in range(a.shape[0]):
        a[i] = 2 / (1 + a[i]) - 1


@numba.njit(cache=True, fastmath=FASTMATH)
def exp_array(a, bits, scale, C, shift, bias):
    """exp of a 1-D array, a copy (the entry point the tests use for the exp itself)."""
    out = a.copy()
    _exp_inplace(out, bits, scale, C, shift, bias)
    return out


# ------------------------------------------------------------ recurrent product


@numba.njit(cache=True, fastmath=FASTMATH)
def _add_matmul_rows(h, U, out, b0, b1):
    """out[b] += U @ h[b] for the rows b0 <= b < b1: out (B, R), h (B, k), U (R, k).

    Dot products along the contiguous k, register-blocked: 5 rows of h by 2 rows of
    U give 10 independent accumulators (7 loads per 10 multiply-adds), each a SIMD
    vector after vectorization (measured here: 1.2-1.3x faster than 3 x 4 or 5 x 4
    blocks); leftover rows of h one at a time by 4 rows of U, then single dot
    products.  The accumulators start from ``out``, which holds the input projection
    and biases, so no extra pass adds them.  :func:`prepare` zero-pads k to whole
    SIMD vectors once per model (``PAD_BYTES``), so the vectorized loop has no scalar
    remainder.
    """
    R, k = U.shape
    R2 = R - R % 2
    b = b0
    while b + 5 <= b1:
        for r in range(0, R2, 2):
            a00, a01 = out[b, r], out[b, r + 1]
            a10, a11 = out[b + 1, r], out[b + 1, r + 1]
            a20, a21 = out[b + 2, r], out[b + 2, r + 1]
            a30, a31 = out[b + 3, r], out[b + 3, r + 1]
            a40, a41 = out[b + 4, r], out[b + 4, r + 1]
            for i in range(k):
                u0, u1 = U[r, i], U[r + 1, i]
                x0, x1, x2, x3, x4 = h[b, i], h[b + 1, i], h[b + 2, i], h[b + 3, i], h[b + 4, i]
                a00 += x0 * u0
                a01 += x0 * u1
                a10 += x1 * u0
                a11 += x1 * u1
                a20 += x2 * u0
                a21 += x2 * u1
                a30 += x3 * u0
                a31 += x3 * u1
                a40 += x4 * u0
                a41 += x4 * u1
            out[b, r], out[b, r + 1] = a00, a01
            out[b + 1, r], out[b + 1, r + 1] = a10, a11
            out[b + 2, r], out[b + 2, r + 1] = a20, a21
            out[b + 3, r], out[b + 3, r + 1] = a30, a31
            out[b + 4, r], out[b + 4, r + 1] = a40, a41
        for r in range(R2, R):
            for bb in range(b, b + 5):
                acc = out[bb, r]
                for i in range(k):
                    acc += h[bb, i] * U[r, i]
                out[bb, r] = acc
        b += 5
    R4 = R - R % 4
    for bb in range(b, b1):
        for r in range(0, R4, 4):
            a0, a1, a2, a3 = out[bb, r], out[bb, r + 1], out[bb, r + 2], out[bb, r + 3]
            for i in range(k):
                x = h[bb, i]
                a0 += x * U[r, i]
                a1 += x * U[r + 1, i]
                a2 += x * U[r + 2, i]
                a3 += x * U[r + 3, i]
            out[bb, r], out[bb, r + 1], out[bb, r + 2], out[bb, r + 3] = a0, a1, a2, a3
        for r in range(R4, R):
            acc = out[bb, r]
            for i in range(k):
                acc += h[bb, i] * U[r, i]
            out[bb, r] = acc


# ----------------------------------------------------------------------- cells


@numba.njit(cache=True, fastmath=FASTMATH, parallel=True)
def lstm_sequence(wx, b_x, U, h, c, out, pre, bits, scale, C, shift, bias, starts):
    """The LSTM (Eq. 1) over a whole sequence, in place.

    wx (T, B, 4n): input projections ``x_t @ W.T``; b_x (4n,): the bias b; U (4n, n);
    h, c (B, n): the initial state on entry, the final state on exit;
    out (T, B, n): every h_t; pre (B, 4n), bits (B, 4n) and its float view scale:
    scratch; ``starts``: the row chunks, one per thread (rows starts[i]:starts[i+1]).
    Gate order i, f, g, o (PyTorch's).
    """
    T = wx.shape[0]
    n = U.shape[0] // 4
    for ci in numba.prange(starts.shape[0] - 1):
        b0, b1 = starts[ci], starts[ci + 1]
        for t in range(T):
            for b in range(b0, b1):
                for j in range(4 * n):
                    pre[b, j] = wx[t, b, j] + b_x[j]
            _add_matmul_rows(h, U, pre, b0, b1)          # (rows, 4n): W x_t + b + U h
            for b in range(b0, b1):
                a = pre[b]
                _sigmoid_inplace(a[:2 * n], bits[b], scale[b], C, shift, bias)         # i, f
                _tanh_inplace(a[2 * n:3 * n], bits[b], scale[b], C, shift, bias)      # g
                _sigmoid_inplace(a[3 * n:], bits[b], scale[b], C, shift, bias)         # o
                for j in range(n):
                    c[b, j] = a[n + j] * c[b, j] + a[j] * a[2 * n + j]
                    a[2 * n + j] = c[b, j]
                _tanh_inplace(a[2 * n:3 * n], bits[b], scale[b], C, shift, bias)      # tanh(c_t)
                for j in range(n):
                    h[b, j] = a[3 * n + j] * a[2 * n + j]
                    out[t, b, j] = h[b, j]


@numba.njit(cache=True, fastmath=FASTMATH, parallel=True)
def gru_sequence(wx, b_i, U, b_h, h, out, pre, bits, scale, C, shift, bias, starts):
    """PyTorch's GRU over a whole sequence, in place.

    wx (T, B, 3n): ``x_t @ W.T``; b_i (3n,); U (3n, n); b_h (3n,); h (B, n): the
    initial state on entry, the final one on exit; out (T, B, n); pre, bits,
    scale (B, 3n): scratch; ``starts`` as in :func:`lstm_sequence`.  Gate order
    r, u, n::

        r = sigmoid(wx_r + b_ir + U_r h + b_hr),  u = sigmoid(wx_u + b_iu + U_u h + b_hu)
        m = tanh(wx_n + b_in + r * (U_n h + b_hn)),  h <- (1 - u) * m + u * h
    """
    T = wx.shape[0]
    n = U.shape[0] // 3
    for ci in numba.prange(starts.shape[0] - 1):
        b0, b1 = starts[ci], starts[ci + 1]
        for t in range(T):
            for b in range(b0, b1):
                pre[b] = b_h
            _add_matmul_rows(h, U, pre, b0, b1)          # (rows, 3n): U h + b_h
            for b in range(b0, b1):
                a = pre[b]
                for j in range(2 * n):
                    a[j] += wx[t, b, j] + b_i[j]
                _sigmoid_inplace(a[:2 * n], bits[b], scale[b], C, shift, bias)         # r, u
                for j in range(n):
                    a[2 * n + j] = wx[t, b, 2 * n + j] + b_i[2 * n + j] + a[j] * a[2 * n + j]
                _tanh_inplace(a[2 * n:], bits[b], scale[b], C, shift, bias)           # candidate
                for j in range(n):
                    h[b, j] = a[2 * n + j] + a[n + j] * (h[b, j] - a[2 * n + j])
                    out[t, b, j] = h[b, j]


@numba.njit(cache=True, fastmath=FASTMATH, parallel=True)
def rhn_sequence(wx, R, rb, q, out, pre, bits, scale, C, shift, bias, starts):
    """The RHN (Zilly et al.) over a whole sequence, in place.

    wx (T, B, 2n): ``x_t @ W.T`` (read at the first micro-step only); R (L, 2n, n);
    rb (L, 2n): the micro-steps' biases; q (B, n): the initial state on entry, the
    final one on exit; out (T, B, n): q after the last micro-step of every t;
    pre, bits, scale (B, 2n): scratch; ``starts`` as in :func:`lstm_sequence`.
    Per micro-step k: ``h = tanh(a_H)``, ``g = sigmoid(a_T)``, ``q <- h g + q (1 - g)``.
    """
    T = wx.shape[0]
    L, n = R.shape[0], R.shape[1] // 2
    for ci in numba.prange(starts.shape[0] - 1):
        b0, b1 = starts[ci], starts[ci + 1]
        for t in range(T):
            for k in range(L):
                for b in range(b0, b1):
                    pre[b] = rb[k]
                    if k == 0:
                        for j in range(2 * n):
                            pre[b, j] += wx[t, b, j]
                _add_matmul_rows(q, R[k], pre, b0, b1)   # (rows, 2n)
                for b in range(b0, b1):
                    a = pre[b]
                    _tanh_inplace(a[:n], bits[b], scale[b], C, shift, bias)           # H
                    _sigmoid_inplace(a[n:], bits[b], scale[b], C, shift, bias)        # T
                    for j in range(n):
                        q[b, j] += a[n + j] * (a[j] - q[b, j])
            for b in range(b0, b1):
                for j in range(n):
                    out[t, b, j] = q[b, j]


# ----------------------------------------------------------------- output layer


@numba.njit(cache=True, fastmath=FASTMATH)
def _row_max(x):
    """max of a non-empty 1-D array with 8 independent running maxima.

    A single running max is one long dependency chain that the compiler does not
    vectorize (``max`` keeps NaN semantics); eight chains run about 3x faster.
    """
    n = x.shape[0]
    n8 = n - n % 8
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = x[0]
    for j in range(0, n8, 8):
        t0 = max(t0, x[j])
        t1 = max(t1, x[j + 1])
        t2 = max(t2, x[j + 2])
        t3 = max(t3, x[j + 3])
        t4 = max(t4, x[j + 4])
        t5 = max(t5, x[j + 5])
        t6 = max(t6, x[j + 6])
        t7 = max(t7, x[j + 7])
    for j in range(n8, n):
        t0 = max(t0, x[j])
    return max(max(max(t0, t1), max(t2, t3)), max(max(t4, t5), max(t6, t7)))


@numba.njit(cache=True, fastmath=FASTMATH, parallel=True)
def log_softmax_inplace(logits, b, bits, scale, C, shift, bias, starts):
    """logits (N, V) <- log_softmax(logits + b) row-wise, in place; b (V,), V >= 1.

    Per row: add the bias, take the max, exp of the shifted row into a scratch row,
    sum it, then ``x - (max + log(sum))``; every pass vectorized.  ``bits``/``scale``
    are (nchunks, V); rows split into chunks, one per thread (``starts``).
    """
    N, V = logits.shape
    for ci in numba.prange(starts.shape[0] - 1):
        e = np.empty_like(logits[0])
        for i in range(starts[ci], starts[ci + 1]):
            x = logits[i]
            for j in range(V):
                x[j] += b[j]
            top = _row_max(x)
            for j in range(V):
                e[j] = x[j] - top
            _exp_inplace(e, bits[ci], scale[ci], C, shift, bias)
            total = e[0] - e[0]
            for j in range(V):
                total += e[j]
            shift_by = top + np.log(total)
            for j in range(V):
                x[j] -= shift_by


# --------------------------------------------------------------------- driver


def _chunks(rows: int) -> np.ndarray:
    """Boundaries of about equal row chunks, one per numba thread (at most ``rows``)."""
    k = max(1, min(rows, numba.get_num_threads()))
    return np.linspace(0, rows, k + 1).round().astype(np.int64)


def _scratch(rows: int, width: int, dtype):
    """(pre, bits, scale) scratch arrays of shape (rows, width); scale views bits as floats."""
    bits = np.empty((rows, width), bits_dtype(dtype))
    return np.empty((rows, width), dtype), bits, bits.view(dtype)


#: Rows of the recurrent matrices are zero-padded to a multiple of this many bytes (one
#: cache line: a whole number of SIMD vectors), so that
#: the dot products of :func:`_add_matmul_rows` have no scalar remainder: measured here,
#: (1184, 296) -> (1184, 304) ran 14% faster and (988, 247) -> (988, 256) 26% faster.
PAD_BYTES = 64


def padded_width(n: int, dtype) -> int:
    """n rounded up to a multiple of ``PAD_BYTES`` worth of ``dtype`` elements."""
    per = PAD_BYTES // np.dtype(dtype).itemsize
    return -(-n // per) * per


def _pad_last_axis(a: np.ndarray, dtype) -> np.ndarray:
    """A C-contiguous copy of ``a`` in ``dtype`` with its last axis zero-padded to
    :func:`padded_width`."""
    a = np.asarray(a, dtype)
    out = np.zeros(a.shape[:-1] + (padded_width(a.shape[-1], dtype),), dtype)
    out[..., :a.shape[-1]] = a
    return out


@dataclass(frozen=True)
class Prepared:
    """A compact model laid out for the kernels: every array C-contiguous in one dtype,
    the recurrent matrices' rows zero-padded (``PAD_BYTES``).  Built once by
    :func:`prepare` (as inference code loads weights once), run by :func:`run`."""

    cell: str
    vocab_size: int
    emb: np.ndarray
    layers: tuple
    out_WT: np.ndarray
    out_b: np.ndarray


def prepare_layer(cell: str, p: dict, m: int, dtype) -> dict:
    """One layer's parameters for :func:`run_layer`: ``WT`` = W transposed, contiguous
    (m, G n) (BLAS multiplies by it about 8% faster here than by the transposed view of
    W), the recurrent matrix (LSTM/GRU ``U`` (G n, n_pad); RHN ``R`` (L, 2n, n_pad)) and
    the biases."""
    if cell not in CELL_BLOCKS:
        raise ValueError(f"no kernel for cell {cell!r}; known: {sorted(CELL_BLOCKS)}")
    G = CELL_BLOCKS[cell]
    W = np.ascontiguousarray(p["W"], dtype)
    n = W.shape[0] // G
    if W.ndim != 2 or W.shape != (G * n, m):
        raise ValueError(f"{cell} W has shape {W.shape}, expected ({G}n, {m})")
    rec = "R" if cell == "rhn" else "U"
    want = (p[rec].shape[0], G * n, n) if cell == "rhn" else (G * n, n)
    if np.shape(p[rec]) != want:
        raise ValueError(f"{cell} {rec} has shape {np.shape(p[rec])}, expected {want}")
    q = {"n": n, "WT": np.ascontiguousarray(W.T), rec: _pad_last_axis(p[rec], dtype)}
    for key in {"lstm": ("b",), "gru": ("b_i", "b_h"), "rhn": ("b",)}[cell]:
        q[key] = np.ascontiguousarray(p[key], dtype)
    return q


def prepare(config, params: dict) -> Prepared:
    """The kernel layout of a compact model ``(config, params)`` (see :func:`log_probs`)."""
    if config.cell not in CELL_BLOCKS:
        raise ValueError(f"no kernel for cell {config.cell!r}; known: {sorted(CELL_BLOCKS)}")
    emb = np.asarray(params["emb"])
    dtype = emb.dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"kernels run float32 or float64 parameters, got {dtype}")
    L = len(config.hidden_sizes)
    if len(params["layers"]) != L:
        raise ValueError(f"config has {L} layers, parameters have {len(params['layers'])}")
    layers, m = [], emb.shape[1]
    for p in params["layers"]:
        q = prepare_layer(config.cell, p, m, dtype)
        layers.append(q)
        m = q["n"]
    return Prepared(config.cell, int(config.vocab_size), np.ascontiguousarray(emb), tuple(layers),
                    np.ascontiguousarray(np.asarray(params["out_W"], dtype).T), np.ascontiguousarray(params["out_b"], dtype))


def run_layer(cell: str, q: dict, x: np.ndarray, state0=None):
    """One compact recurrent layer over x (T, B, m); returns (outputs (T, B, n), final state).

    ``q`` is the layer from :func:`prepare_layer` in x's dtype; ``state0`` in the cell's
    own form (LSTM ``(h, c)``, GRU ``h``, RHN ``q``) or None for zeros.  The kernels keep
    the state as (B, n_pad) with zero padding, matching the padded recurrent matrix.
    """
    dtype = x.dtype
    T, B, m = x.shape
    G = CELL_BLOCKS[cell]
    n = q["n"]
    C, shift, bias = exp_constants(dtype)
    starts = _chunks(B)
    pre, bits, scale = _scratch(B, G * n, dtype)
    out = np.empty((T, B, n), dtype)
    wx = np.dot(x.reshape(T * B, m), q["WT"]).reshape(T, B, G * n)   # every step's input projection
    width = padded_width(n, dtype)

    def state(s, name):
        """The initial state as a fresh zero-padded (B, n_pad) array (updated in place)."""
        buf = np.zeros((B, width), dtype)
        if s is not None:
            s = np.asarray(s)
            if s.shape != (B, n):
                raise ValueError(f"initial state {name} has shape {s.shape}, expected ({B}, {n})")
            buf[:, :n] = s
        return buf

    if cell == "lstm":
        h0, c0 = (None, None) if state0 is None else state0
        h, c = state(h0, "h0"), state(c0, "c0")
        lstm_sequence(wx, q["b"], q["U"], h, c, out, pre, bits, scale, C, shift, bias, starts)
        return out, (h[:, :n].copy(), c[:, :n].copy())
    if cell == "gru":
        h = state(state0, "h0")
        gru_sequence(wx, q["b_i"], q["U"], q["b_h"], h, out, pre, bits, scale, C, shift, bias, starts)
        return out, h[:, :n].copy()
    if cell == "rhn":
        s = state(state0, "q0")
        rhn_sequence(wx, q["R"], q["b"], s, out, pre, bits, scale, C, shift, bias, starts)
        return out, s[:, :n].copy()
    raise ValueError(f"no kernel for cell {cell!r}; known: {sorted(CELL_BLOCKS)}")


def output_log_probs(h: np.ndarray, out_WT: np.ndarray, out_b: np.ndarray) -> np.ndarray:
    """log_softmax(h @ out_WT + out_b) for h (T, B, n), out_WT (n, V) (the output layer's
    weights transposed, contiguous): (T, B, V).

    The product by BLAS, the bias and the log-softmax fused in
    :func:`log_softmax_inplace` (parallel over rows).
    """
    T, B, n = h.shape
    dtype = h.dtype
    V = out_WT.shape[1]
    logits = np.dot(h.reshape(T * B, n), out_WT)                  # (T B, V)
    C, shift, bias = exp_constants(dtype)
    starts = _chunks(T * B)
    bits = np.empty((len(starts) - 1, V), bits_dtype(dtype))
    log_softmax_inplace(logits, out_b, bits, bits.view(dtype), C, shift, bias, starts)
    return logits.reshape(T, B, V)


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
    x = prepared.emb[tokens]                                     # (T, B, e)
    finals = []
    for q, s0 in zip(prepared.layers, state0):
        x, final = run_layer(prepared.cell, q, x, s0)
        finals.append(final)
    return output_log_probs(x, prepared.out_WT, prepared.out_b), finals


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


__all__ = ["log_probs", "prepare", "run", "Prepared", "run_layer", "output_log_probs", "lstm_sequence", "gru_sequence",
           "rhn_sequence", "log_softmax_inplace", "exp_constants", "exp_array", "CELL_BLOCKS"]
