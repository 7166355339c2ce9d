"""The one product tile behind every multiply-add of the kernels, and the layouts it reads.

:func:`tile` computes up to ``MAX_ROWS`` rows of the left matrix times a *panel* of
``2 * lanes`` columns (16 in float32 on AVX2, 32 on AVX-512) of the right one,
accumulated in SIMD registers across the whole inner dimension and stored once
(``simd.py`` gives numba the vector values).  The tile's height follows the registers
there are: 6 rows (12 accumulators, 2 weight loads and 6 broadcasts per 12 fused
multiply-adds, of AVX2's 16 registers) or 12 (24 accumulators of AVX-512's 32, so that
a batch of 10 rows reads each weight once per step).  Its operands are named
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

import functools
import math
from collections import namedtuple

import numba
import numpy as np

from . import simd
from ._jit import njit

#: Rows of a product tile, from the vector registers there are: 6 rows x 2 vectors = 12
#: accumulators, plus the two weight vectors and a broadcast, of the 16 registers of
#: AVX2 (and SSE); 12 rows = 24 accumulators + 3 of the 32 of AVX-512.
MAX_ROWS = 12 if simd.VECTOR_REGISTERS >= 32 else 6

#: Zero offsets and strides are passed as ``NO_OFFSET``, an int64, not as a literal 0:
#: numba compiles a function anew for every literal constant an argument is called
#: with, and each would be another compilation of the whole tile.
NO_OFFSET = np.int64(0)

#: Bytes of B's panels that a pass of the row blocks of A goes over (:func:`matmul_packed`):
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
    and two fused multiply-adds.  The rows are written out one by one (up to 12, the
    AVX-512 tile): each row's accumulators must be variables of their own (registers),
    which a loop over an array of them would put in memory.
    """
    P, a, k = B.data, A.start, B.depth
    X, Zd, ldz = A.data, Z.data, Z.stride
    w = simd.lanes_of(P)
    for j in range(B.count):
        pj, zj, cj = B.start + 2 * w * k * j, Z.start + 2 * w * j, C.start + 2 * w * j
        s0_0 = simd.load(Zd, zj)
        s0_1 = simd.load(Zd, zj + w)
        # the rows that are not there keep these and are never stored
        s1_0 = s2_0 = s3_0 = s4_0 = s5_0 = s6_0 = s7_0 = s8_0 = s9_0 = s10_0 = s11_0 = s0_0
        s1_1 = s2_1 = s3_1 = s4_1 = s5_1 = s6_1 = s7_1 = s8_1 = s9_1 = s10_1 = s11_1 = s0_1
        if rows > 1:
            s1_0, s1_1 = simd.load(Zd, zj + ldz), simd.load(Zd, zj + ldz + w)
        if rows > 2:
            s2_0, s2_1 = simd.load(Zd, zj + 2 * ldz), simd.load(Zd, zj + 2 * ldz + w)
        if rows > 3:
            s3_0, s3_1 = simd.load(Zd, zj + 3 * ldz), simd.load(Zd, zj + 3 * ldz + w)
        if rows > 4:
            s4_0, s4_1 = simd.load(Zd, zj + 4 * ldz), simd.load(Zd, zj + 4 * ldz + w)
        if rows > 5:
            s5_0, s5_1 = simd.load(Zd, zj + 5 * ldz), simd.load(Zd, zj + 5 * ldz + w)
        if rows > 6:
            s6_0, s6_1 = simd.load(Zd, zj + 6 * ldz), simd.load(Zd, zj + 6 * ldz + w)
        if rows > 7:
            s7_0, s7_1 = simd.load(Zd, zj + 7 * ldz), simd.load(Zd, zj + 7 * ldz + w)
        if rows > 8:
            s8_0, s8_1 = simd.load(Zd, zj + 8 * ldz), simd.load(Zd, zj + 8 * ldz + w)
        if rows > 9:
            s9_0, s9_1 = simd.load(Zd, zj + 9 * ldz), simd.load(Zd, zj + 9 * ldz + w)
        if rows > 10:
            s10_0, s10_1 = simd.load(Zd, zj + 10 * ldz), simd.load(Zd, zj + 10 * ldz + w)
        if rows > 11:
            s11_0, s11_1 = simd.load(Zd, zj + 11 * ldz), simd.load(Zd, zj + 11 * ldz + w)
        for i in range(k):
            u0 = simd.load(P, pj + 2 * w * i)
            u1 = simd.load(P, pj + 2 * w * i + w)
            ai = a + MAX_ROWS * i
            x = simd.splat(simd.get(X, ai))
            s0_0, s0_1 = simd.fma(x, u0, s0_0), simd.fma(x, u1, s0_1)
            if rows > 1:
                x = simd.splat(simd.get(X, ai + 1))
                s1_0, s1_1 = simd.fma(x, u0, s1_0), simd.fma(x, u1, s1_1)
            if rows > 2:
                x = simd.splat(simd.get(X, ai + 2))
                s2_0, s2_1 = simd.fma(x, u0, s2_0), simd.fma(x, u1, s2_1)
            if rows > 3:
                x = simd.splat(simd.get(X, ai + 3))
                s3_0, s3_1 = simd.fma(x, u0, s3_0), simd.fma(x, u1, s3_1)
            if rows > 4:
                x = simd.splat(simd.get(X, ai + 4))
                s4_0, s4_1 = simd.fma(x, u0, s4_0), simd.fma(x, u1, s4_1)
            if rows > 5:
                x = simd.splat(simd.get(X, ai + 5))
                s5_0, s5_1 = simd.fma(x, u0, s5_0), simd.fma(x, u1, s5_1)
            if rows > 6:
                x = simd.splat(simd.get(X, ai + 6))
                s6_0, s6_1 = simd.fma(x, u0, s6_0), simd.fma(x, u1, s6_1)
            if rows > 7:
                x = simd.splat(simd.get(X, ai + 7))
                s7_0, s7_1 = simd.fma(x, u0, s7_0), simd.fma(x, u1, s7_1)
            if rows > 8:
                x = simd.splat(simd.get(X, ai + 8))
                s8_0, s8_1 = simd.fma(x, u0, s8_0), simd.fma(x, u1, s8_1)
            if rows > 9:
                x = simd.splat(simd.get(X, ai + 9))
                s9_0, s9_1 = simd.fma(x, u0, s9_0), simd.fma(x, u1, s9_1)
            if rows > 10:
                x = simd.splat(simd.get(X, ai + 10))
                s10_0, s10_1 = simd.fma(x, u0, s10_0), simd.fma(x, u1, s10_1)
            if rows > 11:
                x = simd.splat(simd.get(X, ai + 11))
                s11_0, s11_1 = simd.fma(x, u0, s11_0), simd.fma(x, u1, s11_1)
        width = min(2 * w, cols - 2 * w * j)
        Cd, ldc = C.data, C.stride
        _store_row(Cd, cj, s0_0, s0_1, width)
        if rows > 1:
            _store_row(Cd, cj + ldc, s1_0, s1_1, width)
        if rows > 2:
            _store_row(Cd, cj + 2 * ldc, s2_0, s2_1, width)
        if rows > 3:
            _store_row(Cd, cj + 3 * ldc, s3_0, s3_1, width)
        if rows > 4:
            _store_row(Cd, cj + 4 * ldc, s4_0, s4_1, width)
        if rows > 5:
            _store_row(Cd, cj + 5 * ldc, s5_0, s5_1, width)
        if rows > 6:
            _store_row(Cd, cj + 6 * ldc, s6_0, s6_1, width)
        if rows > 7:
            _store_row(Cd, cj + 7 * ldc, s7_0, s7_1, width)
        if rows > 8:
            _store_row(Cd, cj + 8 * ldc, s8_0, s8_1, width)
        if rows > 9:
            _store_row(Cd, cj + 9 * ldc, s9_0, s9_1, width)
        if rows > 10:
            _store_row(Cd, cj + 10 * ldc, s10_0, s10_1, width)
        if rows > 11:
            _store_row(Cd, cj + 11 * ldc, s11_0, s11_1, width)


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
def _tile_rows_6(rows, A, B, Z, C, cols):
    """:func:`tile` for 1 to 6 rows known at run time: the call with the count as a
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
def _tile_rows_12(rows, A, B, Z, C, cols):
    """:func:`_tile_rows_6` for 1 to 12 rows (the AVX-512 tile).  (Tried: tiles of 1, 2,
    4, 8 and 12 rows only, the count rounded up with rows of zeros, to compile fewer:
    47 s against 55 s for a first run, but a thread's 5 rows then cost 8.)"""
    if rows >= 12:
        tile(12, A, B, Z, C, cols)
    elif rows == 11:
        tile(11, A, B, Z, C, cols)
    elif rows == 10:
        tile(10, A, B, Z, C, cols)
    elif rows == 9:
        tile(9, A, B, Z, C, cols)
    elif rows == 8:
        tile(8, A, B, Z, C, cols)
    elif rows == 7:
        tile(7, A, B, Z, C, cols)
    else:
        _tile_rows_6(rows, A, B, Z, C, cols)


#: :func:`tile` for up to ``MAX_ROWS`` rows known at run time (chosen here, so that a
#: 6-row machine never compiles the wider tiles).
tile_rows = _tile_rows_12 if MAX_ROWS == 12 else _tile_rows_6


@njit()
def pack_rows(X, r0, r1, out):
    """The rows r0 <= r < r1 of X (N, k), in blocks of ``MAX_ROWS``, interleaved
    for :func:`tile`: element i of row r0 + MAX_ROWS j + r goes to
    ``out.flat[MAX_ROWS (k j + i) + r]``; out holds ``MAX_ROWS k`` numbers per block."""
    k = X.shape[-1]
    for b in range(r0, r1, MAX_ROWS):
        rows = min(MAX_ROWS, r1 - b)
        base = (b - r0) * k
        for i in range(k):
            for r in range(rows):
                simd.put(out, base + MAX_ROWS * i + r, simd.get(X, (b + r) * k + i))


@njit()
def matmul_rows(A, P, bias, C, r0, r1, q0, q1):
    """``C[r] = A[r] @ B + bias`` for the rows r0 <= r < r1 of A (N, k) and C (N, cols),
    in the columns of the panels q0 <= q < q1: ``P`` (panels, k, 2 lanes) is B (k, cols)
    packed by :func:`pack_panels`, ``bias`` (panels * 2 lanes,) zero-padded.  The rows
    are packed once (:func:`pack_rows`), then multiplied by :func:`matmul_packed`."""
    k = A.shape[-1]
    packed = np.empty(-(-(r1 - r0) // MAX_ROWS) * MAX_ROWS * k, A.dtype)
    pack_rows(A, r0, r1, packed)
    matmul_packed(packed, P, bias, C, r0, r1, q0, q1)


@njit()
def matmul_packed(packed, P, bias, C, r0, r1, q0, q1):
    """:func:`matmul_rows` on rows r0 <= r < r1 already in ``packed`` (:func:`pack_rows`
    of those rows, from its start): ``PASS_BYTES`` of panels at a time, every block of
    ``MAX_ROWS`` rows times those panels, so that the panels stay in L2 while all the
    row blocks use them."""
    k, nr, cols = P.shape[1], P.shape[-1], C.shape[-1]
    blocks = -(-(r1 - r0) // MAX_ROWS)
    p, c = P.reshape(-1), C.reshape(-1)
    per_pass = max(1, PASS_BYTES // max(1, k * nr * P.itemsize))
    for q in range(q0, q1, per_pass):
        panels = min(per_pass, q1 - q)
        for j in range(blocks):
            r = r0 + MAX_ROWS * j
            tile_rows(min(MAX_ROWS, r1 - r), Packed(packed, MAX_ROWS * k * j), Panels(p, q * k * nr, panels, k),
                      Strided(bias, q * nr, NO_OFFSET), Strided(c, r * cols + q * nr, cols),
                      min(panels * nr, cols - q * nr))


@njit(parallel=True)
def matmul_bias(A, P, bias, C, row_starts, panel_starts):
    """C = A @ B + bias (see :func:`matmul_rows`) in blocks of rows times panels, one
    per thread (:func:`split`): block (i, j) is rows ``row_starts[i]:row_starts[i + 1]``
    times panels ``panel_starts[j]:panel_starts[j + 1]``."""
    nc = panel_starts.shape[0] - 1
    for task in numba.prange((row_starts.shape[0] - 1) * nc):
        i, j = task // nc, task % nc
        matmul_rows(A, P, bias, C, row_starts[i], row_starts[i + 1], panel_starts[j], panel_starts[j + 1])


@njit()
def recurrent_product(packed, start, b0, rows, P, p0, count, Z, pre, c0):
    """``pre[b, c0 : c0 + count nr] = Z_b + h[b] @ U^T`` for the ``rows`` (<= ``MAX_ROWS``)
    rows from b0 of h, interleaved by :func:`pack_rows` into ``packed`` from ``start``,
    and the ``count`` panels from ``p0`` of ``P`` (U (G n, n) packed: panels, n, nr).
    pre (B, width); Z a :class:`Strided` (its row b - b0 is what row b adds: a bias row
    with stride 0, or the input projection of the step)."""
    n, nr, width = P.shape[1], P.shape[-1], pre.shape[1]
    tile_rows(rows, Packed(packed, start), Panels(P.reshape(-1), p0 * n * nr, count, n), Z,
              Strided(pre.reshape(-1), b0 * width + c0, width), count * nr)


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


def chunks(rows: int, multiple: int = 1, parts: int | None = None) -> np.ndarray:
    """Boundaries of ``parts`` (default: one per numba thread) chunks of ``rows`` (at most
    ``rows`` chunks), each a multiple of ``multiple`` rows but the last."""
    parts = numba.get_num_threads() if parts is None else parts
    threads = max(1, min(rows, parts))
    step = -(-rows // threads)
    step = -(-step // multiple) * multiple
    return np.array(sorted({*range(0, rows, step), rows}), np.int64)


def even(count: int, parts: int) -> np.ndarray:
    """Boundaries of ``parts`` (at most ``count``) nearly equal ranges of ``count`` items."""
    parts = max(1, min(count, parts))
    return np.array([i * count // parts for i in range(parts + 1)], np.int64)


def split(rows: int, panels: int, nr: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How the threads share a product of ``rows`` rows and ``panels`` panels of ``nr``
    columns: ``(row_starts, panel_starts)`` for :func:`matmul_bias`, a grid of
    ``rp x cp`` blocks, one per thread.

    A thread packs the rows of its block of the left matrix and reads the panels of its
    block of the right one, ``rows / rp + columns / cp`` per inner index; for ``rp cp =
    threads`` that is least where ``rp / cp = rows / columns``.  So the softmax product
    (300 rows, 10,000 columns) is split by columns alone, the input projection of a
    compact layer (300 x 1,184) into 2 x 8 on 16 threads, and a tall product by rows.
    ``threads``: default numba's.  Cached: the same arrays for the same arguments and
    thread count (no caller writes them)."""
    return _split(int(rows), int(panels), int(nr), numba.get_num_threads() if threads is None else int(threads))


@functools.lru_cache(maxsize=256)
def _split(rows: int, panels: int, nr: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    cols = panels * nr
    rp = int(round(math.sqrt(threads * rows / max(cols, 1))))
    rp = max(1, min(threads, rp, -(-rows // MAX_ROWS)))
    cp = max(1, min(panels, threads // rp))
    return chunks(rows, MAX_ROWS, rp), even(panels, cp)


__all__ = ["MAX_ROWS", "NO_OFFSET", "PASS_BYTES", "Packed", "Panels", "Strided", "tile", "tile_rows", "pack_rows",
           "matmul_rows", "matmul_packed", "matmul_bias", "recurrent_product", "panel_width", "pack_panels", "pad_panels", "chunks",
           "even", "split"]
