"""The one product tile behind every multiply-add of the kernels, and the layouts it reads.

:func:`tile` computes up to ``MAX_ROWS`` = 6 rows of the left matrix times a *panel* of
``2 * lanes`` columns (16 in float32 on AVX2) of the right one, accumulated in 12 SIMD
registers across the whole inner dimension and stored once (``simd.py`` gives numba the
vector values; 12 accumulators, 2 weight loads and 6 broadcasts per 12 fused
multiply-adds keep both FMA units of an AVX2 core busy).  Its operands are named
tuples of a flat array and offsets into it, as BLAS takes them:

- :class:`Packed`, the left rows interleaved by :func:`pack_rows`: element i of row r at
  ``start + MAX_ROWS i + r``, so that the broadcasts of one input are neighbours;
- :class:`Panels`, the right matrix as :func:`pack_panels` lays it out: ``count``
  panels from ``start``, each ``depth`` (the inner dimension k) rows of 2 lanes;
- :class:`Strided`, rows of a row-major matrix: row r at ``start + r stride``
  (``stride`` 0: one row for all, e.g. a bias).

``C_r = Z_r + A_r @ B`` is ``tile(rows, A, B, Z, C, cols)``: ``Z`` the initial rows
(biases, or the input projection the recurrence adds to), ``C`` the output, ``cols``
the columns written (the last panel may be partial).

:func:`matmul_bias` runs the tile over whole matrices (the input projections of all
time steps, the softmax product), :func:`recurrent_product` over the rows of a batch at
one time step.
"""
from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np

from . import simd
from ._jit import njit

#: Rows of a product tile: 6 rows x 2 vectors = 12 accumulators, plus the two weight
#: vectors and a broadcast, of the 16 vector registers of AVX2.
MAX_ROWS = 6

#: Zero offsets and strides are passed as ``NO_OFFSET``, an int64, not as a literal 0:
#: numba compiles a function anew for every literal constant an argument is called
#: with, and each would be another compilation of the whole tile.
NO_OFFSET = np.int64(0)

#: Bytes of B's panels that a pass of the row blocks of A goes over (:func:`matmul_rows`):
#: half the L2 cache of a core, so that they stay there while every row block uses them.
PASS_BYTES = 256 * 1024

Packed = namedtuple("Packed", ["data", "start"])
Panels = namedtuple("Panels", ["data", "start", "count", "depth"])
Strided = namedtuple("Strided", ["data", "start", "stride"])


@njit()
def tile(rows, A, B, Z, C, cols):
    """``C_r = Z_r + A_r @ B`` for the rows r < ``rows`` (<= ``MAX_ROWS``; numba compiles
    one specialization per constant count) and the ``B.count`` panels of B, of which the
    first ``cols`` columns are written.  A: :class:`Packed`; B: :class:`Panels`; Z, C:
    :class:`Strided` (see the module docstring).

    Per panel, the 2 x rows accumulators stay in registers for the whole inner
    dimension; per input i: two weight vectors, then per row a broadcast of ``A_r[i]``
    and two fused multiply-adds.  The six rows are written out one by one: each row's
    accumulators must be variables of their own (registers), which a loop over an
    array of them would put in memory.
    """
    P, a, k = B.data, A.start, B.depth
    X, Zd, ldz = A.data, Z.data, Z.stride
    w = simd.lanes_of(P)
    for j in range(B.count):
        pj, zj, cj = B.start + 2 * w * k * j, Z.start + 2 * w * j, C.start + 2 * w * j
        s00 = simd.load(Zd, zj)
        s01 = simd.load(Zd, zj + w)
        s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = s00, s01, s00, s01, s00, s01, s00, s01, s00, s01
        if rows > 1:
            s10, s11 = simd.load(Zd, zj + ldz), simd.load(Zd, zj + ldz + w)
        if rows > 2:
            s20, s21 = simd.load(Zd, zj + 2 * ldz), simd.load(Zd, zj + 2 * ldz + w)
        if rows > 3:
            s30, s31 = simd.load(Zd, zj + 3 * ldz), simd.load(Zd, zj + 3 * ldz + w)
        if rows > 4:
            s40, s41 = simd.load(Zd, zj + 4 * ldz), simd.load(Zd, zj + 4 * ldz + w)
        if rows > 5:
            s50, s51 = simd.load(Zd, zj + 5 * ldz), simd.load(Zd, zj + 5 * ldz + w)
        for i in range(k):
            u0 = simd.load(P, pj + 2 * w * i)
            u1 = simd.load(P, pj + 2 * w * i + w)
            ai = a + MAX_ROWS * i
            x = simd.splat(simd.get(X, ai))
            s00, s01 = simd.fma(x, u0, s00), simd.fma(x, u1, s01)
            if rows > 1:
                x = simd.splat(simd.get(X, ai + 1))
                s10, s11 = simd.fma(x, u0, s10), simd.fma(x, u1, s11)
            if rows > 2:
                x = simd.splat(simd.get(X, ai + 2))
                s20, s21 = simd.fma(x, u0, s20), simd.fma(x, u1, s21)
            if rows > 3:
                x = simd.splat(simd.get(X, ai + 3))
                s30, s31 = simd.fma(x, u0, s30), simd.fma(x, u1, s31)
            if rows > 4:
                x = simd.splat(simd.get(X, ai + 4))
                s40, s41 = simd.fma(x, u0, s40), simd.fma(x, u1, s41)
            if rows > 5:
                x = simd.splat(simd.get(X, ai + 5))
                s50, s51 = simd.fma(x, u0, s50), simd.fma(x, u1, s51)
        width = min(2 * w, cols - 2 * w * j)
        Cd, ldc = C.data, C.stride
        _store_row(Cd, cj, s00, s01, width)
        if rows > 1:
            _store_row(Cd, cj + ldc, s10, s11, width)
        if rows > 2:
            _store_row(Cd, cj + 2 * ldc, s20, s21, width)
        if rows > 3:
            _store_row(Cd, cj + 3 * ldc, s30, s31, width)
        if rows > 4:
            _store_row(Cd, cj + 4 * ldc, s40, s41, width)
        if rows > 5:
            _store_row(Cd, cj + 5 * ldc, s50, s51, width)


@njit()
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


@njit()
def tile_rows(rows, A, B, Z, C, cols):
    """:func:`tile` for a row count known at run time: the call with the count as a
    constant, so that the compiler drops the code for the rows that are not there."""
    if rows >= 6:
        tile(6, A, B, Z, C, cols)
    elif rows == 5:
        tile(5, A, B, Z, C, cols)
    elif rows == 4:
        tile(4, A, B, Z, C, cols)
    elif rows == 3:
        tile(3, A, B, Z, C, cols)
    elif rows == 2:
        tile(2, A, B, Z, C, cols)
    elif rows == 1:
        tile(1, A, B, Z, C, cols)


@njit()
def pack_rows(X, r0, r1, out):
    """The rows r0 <= r < r1 of X (N, k), in blocks of ``MAX_ROWS``, interleaved
    for :func:`tile`: element i of row r0 + MAX_ROWS j + r goes to
    ``out.flat[MAX_ROWS (k j + i) + r]``; out holds at least that many numbers."""
    k = X.shape[-1]
    for b in range(r0, r1, MAX_ROWS):
        rows = min(MAX_ROWS, r1 - b)
        base = (b - r0) * k
        for i in range(k):
            for r in range(rows):
                simd.put(out, base + MAX_ROWS * i + r, simd.get(X, (b + r) * k + i))


@njit()
def matmul_rows(A, P, bias, C, r0, r1):
    """``C[r] = A[r] @ B + bias`` for the rows r0 <= r < r1 of A (N, k) and C (N, cols):
    ``P`` (panels, k, 2 lanes) is B (k, cols) packed by :func:`pack_panels`, ``bias``
    (panels * 2 lanes,) zero-padded.  The rows are packed once (:func:`pack_rows`);
    then, ``PASS_BYTES`` of panels at a time, every block of ``MAX_ROWS`` rows times
    those panels."""
    k, cols = A.shape[-1], C.shape[-1]
    count, nr = P.shape[0], P.shape[-1]
    blocks = -(-(r1 - r0) // MAX_ROWS)
    packed = np.empty(blocks * MAX_ROWS * k, A.dtype)
    pack_rows(A, r0, r1, packed)
    p, c = P.reshape(-1), C.reshape(-1)
    per_pass = max(1, PASS_BYTES // max(1, k * nr * P.itemsize))
    for q in range(0, count, per_pass):
        panels = min(per_pass, count - q)
        for j in range(blocks):
            r = r0 + MAX_ROWS * j
            tile_rows(min(MAX_ROWS, r1 - r), Packed(packed, MAX_ROWS * k * j), Panels(p, q * k * nr, panels, k),
                      Strided(bias, q * nr, NO_OFFSET), Strided(c, r * cols + q * nr, cols), cols - q * nr)


@njit(parallel=True)
def matmul_bias(A, P, bias, C, starts):
    """C = A @ B + bias (see :func:`matmul_rows`), rows split among the threads:
    chunk i is rows ``starts[i]:starts[i + 1]``."""
    for i in numba.prange(starts.shape[0] - 1):
        matmul_rows(A, P, bias, C, starts[i], starts[i + 1])


@njit()
def recurrent_product(h, b0, rows, P, Z, pre, packed):
    """``pre[b] = Z_b + h[b] @ U^T`` for the ``rows`` (<= ``MAX_ROWS``) rows from b0 of
    h (B, n): ``P`` is U (G n, n) packed, pre (B, panels * 2 lanes), Z a
    :class:`Strided` (its row b - b0 is what row b adds: a bias row with stride 0, or
    the input projection of the step); ``packed`` (n * MAX_ROWS,): scratch for the rows
    of h interleaved."""
    n, width = h.shape[1], pre.shape[1]
    pack_rows(h, b0, b0 + rows, packed)
    tile_rows(rows, Packed(packed, NO_OFFSET), Panels(P.reshape(-1), NO_OFFSET, P.shape[0], n), Z,
              Strided(pre.reshape(-1), b0 * width, width), width)


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


def chunks(rows: int, multiple: int = 1) -> np.ndarray:
    """Boundaries of row chunks, one per numba thread (at most ``rows`` chunks), each
    a multiple of ``multiple`` rows but the last."""
    threads = max(1, min(rows, numba.get_num_threads()))
    step = -(-rows // threads)
    step = -(-step // multiple) * multiple
    return np.array(sorted({*range(0, rows, step), rows}), np.int64)


__all__ = ["MAX_ROWS", "NO_OFFSET", "PASS_BYTES", "Packed", "Panels", "Strided", "tile", "tile_rows", "pack_rows",
           "matmul_rows", "matmul_bias", "recurrent_product", "panel_width", "pack_panels", "pad_panels", "chunks"]
