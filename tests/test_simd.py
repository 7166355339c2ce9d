"""The SIMD vector operations of ``l0ref/fast/simd.py`` that the kernels are written with,
each against numpy, in float32 and float64, at the vector width of this machine (the
other widths: ``tests/test_wide.py``)."""
from __future__ import annotations

from fractions import Fraction

import numba
import numpy as np
import pytest

from l0ref.fast import simd

DTYPES = [np.float32, np.float64]


@numba.njit
def _vector_ops(a, b, c, out):
    """out rows: a, fma(a, b, c), max(a, b), splat(c[1]), a lane by lane via lane/put,
    get of every element; all from flat offsets 0 and lanes."""
    w = simd.lanes_of(a)
    for off in (0, w):
        va, vb, vc = simd.load(a, off), simd.load(b, off), simd.load(c, off)
        simd.store(out, off, va)
        simd.store(out, 2 * w + off, simd.fma(va, vb, vc))
        simd.store(out, 4 * w + off, simd.maximum(va, vb))
        simd.store(out, 6 * w + off, simd.splat(simd.get(c, 1)))
        for i in range(w):
            simd.put(out, 8 * w + off + i, simd.lane(va, i))
            simd.put(out, 10 * w + off + i, simd.get(b, off + i))


def round_exact(q: Fraction, dtype):
    """The ``dtype`` number nearest to the rational ``q``, ties to even: IEEE-754 rounding
    done once.  (``np.longdouble`` is no oracle: on x86 its 64-bit significand makes
    ``a * b + c`` round twice in float64.)  ``float(q)`` is the correctly rounded float64;
    the float32 answer is it or one of its float32 neighbours."""
    guess = np.array(float(q)).astype(dtype)
    candidates = [np.nextafter(guess, dtype(-np.inf)), guess, np.nextafter(guess, dtype(np.inf))]
    def key(v):
        return abs(Fraction(float(v)) - q), int(np.array(v).view(np.int64 if dtype == np.float64 else np.int32)) & 1
    return min(candidates, key=key)


def test_round_exact_rounds_once():
    """The oracle itself: halfway cases go to even, and a double rounding is avoided."""
    assert round_exact(Fraction(1) + Fraction(1, 2 ** 53), np.float64) == 1.0           # tie -> even
    assert round_exact(Fraction(1) + Fraction(3, 2 ** 53), np.float64) == 1 + 2.0 ** -51  # tie -> even
    # 1 + 2**-24 + 2**-60: float64 first would give 1 + 2**-24 (a float32 tie, to even: 1.0);
    # rounded once to float32 it is above the tie: 1 + 2**-23
    q = Fraction(1) + Fraction(1, 2 ** 24) + Fraction(1, 2 ** 60)
    assert np.float32(np.float64(q)) == np.float32(1.0)
    assert round_exact(q, np.float32) == np.float32(1 + 2.0 ** -23)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_vector_operations_equal_numpy(dtype):
    w = simd.lanes(dtype)
    assert w == simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    a, b, c = (rng.uniform(-2, 2, 2 * w).astype(dtype) for _ in range(3))
    b[0] = a[0]                                                   # a tie for the max
    out = np.full((6, 2 * w), np.nan, dtype)
    _vector_ops(a, b, c, out)
    exact_fma = np.array([round_exact(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)), dtype)
                          for x, y, z in zip(a, b, c)], dtype)     # a * b + c, rounded once
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[1], exact_fma)
    np.testing.assert_array_equal(out[2], np.maximum(a, b))
    np.testing.assert_array_equal(out[3], np.full(2 * w, c[1]))
    np.testing.assert_array_equal(out[4], a)
    np.testing.assert_array_equal(out[5], b)


@numba.njit
def _pow2_and_constants(k, out):
    for i in range(k.shape[0]):
        out[i] = simd.pow2(k[i]) * simd.as_type_of(1.0, k[i])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_pow2_is_exact_over_the_normal_range(dtype):
    lo, hi = (-126, 127) if dtype == np.float32 else (-1022, 1023)
    k = np.arange(lo, hi + 1).astype(dtype)
    out = np.empty_like(k)
    _pow2_and_constants(k, out)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, np.ldexp(np.ones_like(k), k.astype(int)))


@numba.njit
def _arithmetic(a, b, out):
    """out rows, a whole vector at a time: a + b, a - b, a * b, each also with b[0] (a
    scalar) on either side, max(a, b), min(a, b), max(a, b[0]), min(b[0], a), rint(a),
    pow2(rint(a))."""
    w = simd.lanes_of(a)
    s = b[0]
    for off in range(0, a.shape[0], w):
        va, vb = simd.load(a, off), simd.load(b, off)
        results = (va + vb, va - vb, va * vb, va + s, s - va, s * va,
                   max(va, vb), min(va, vb), max(va, s), min(s, va), np.rint(va), simd.pow2(np.rint(va)))
        for row, v in enumerate(results):
            simd.store(out, row * a.shape[0] + off, v)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_vector_arithmetic_is_the_scalars(dtype):
    """The arithmetic, min, max and rint that vectors have (so ``vmath.exp`` runs on them)
    give, lane by lane, what numpy gives on the scalars, bit for bit: one rounding each, no
    fusing of a lone product or sum, rint's ties to even, Python's max and min (a NaN in the
    first operand stays)."""
    w = simd.lanes(dtype)
    rng = np.random.default_rng(3)
    a = rng.uniform(-60, 60, 4 * w).astype(dtype)
    a[:6] = [0.5, 1.5, 2.5, -0.5, -2.5, np.nan]                    # rint's ties; a NaN
    b = rng.uniform(-3, 3, 4 * w).astype(dtype)
    b[1] = a[1]                                                    # a tie for max and min
    out = np.empty((12, 4 * w), dtype)
    _arithmetic(a, b, out)
    s = b[0]
    with np.errstate(invalid="ignore"):
        want = [a + b, a - b, a * b, a + s, s - a, s * a,
                np.where(b > a, b, a), np.where(b < a, b, a), np.where(s > a, s, a), np.where(a < s, a, s),
                np.rint(a), np.ldexp(np.ones_like(a), np.nan_to_num(np.rint(a)).astype(int))]
    for row, (got, expected) in enumerate(zip(out, want)):
        if row == 11:                                              # pow2 of a NaN is not defined
            got, expected = got[6:], expected[6:]
        np.testing.assert_array_equal(got, expected.astype(dtype), err_msg=f"row {row}")
    assert np.isnan(out[6, 5]) and np.isnan(out[7, 5]) and out[8, 5] != out[8, 5]


def test_lanes_rejects_other_dtypes():
    with pytest.raises(ValueError, match="float32 or float64"):
        simd.lanes(np.int32)
