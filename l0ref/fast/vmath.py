"""Vector math for the kernels: an exp that LLVM vectorizes, and the sigmoid and tanh built on it.

numba's own ``exp`` is a scalar libm call (no Intel SVML here), which keeps the gate
arithmetic of a row from vectorizing.  :func:`exp` is Cody-Waite range reduction, a
Taylor polynomial (degree 7 in float32, 13 in float64: the lowest whose truncation
error is below half an ulp) and ``2**k`` built from its IEEE-754 bits
(``simd.pow2``).  Relative error below 4 ulp in either precision
(``tests/test_kernels.py`` checks it).
"""
from __future__ import annotations

import numpy as np
from numba.core import types
from numba.extending import overload

from . import simd
from ._jit import EXP_FASTMATH, njit

_LOG2E = 1.4426950408889634


# --------------------------------------------------------------------------- exp


def exp(x):
    """exp of a float32 or float64 scalar inside jitted code, vectorizable in loops, or of
    every lane of a :class:`simd.Vector` (the full vector width, where LLVM's own loop
    vectorizer keeps to 256 bits on AVX-512 CPUs).

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
    """The scalar's precision, or a :class:`simd.Vector`'s: the same code runs on a whole
    vector (``simd`` gives vectors the arithmetic, ``min``, ``max`` and ``np.rint`` it
    uses), lane for lane the scalar's result."""
    element = x.dtype if isinstance(x, simd.Vector) else x
    if element == types.float32:
        return _exp_float32
    if element == types.float64:
        return _exp_float64
    return None


@njit(inline="always")
def sigmoid(x):
    """1 / (1 + exp(-x)) in x's precision."""
    one = simd.as_type_of(1.0, x)
    return one / (one + exp(-x))


@njit(inline="always")
def tanh(x):
    """2 / (1 + exp(-2x)) - 1 in x's precision (absolute error a few ulp of 1)."""
    one = simd.as_type_of(1.0, x)
    two = simd.as_type_of(2.0, x)
    return two / (one + exp(-two * x)) - one


@njit()
def exp_array(a):
    """:func:`exp` of every element of a 1-D array, a copy (what the tests check the exp by)."""
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        out[i] = exp(a[i])
    return out


@njit()
def exp_vectors(a):
    """:func:`exp` of a 1-D C-contiguous array a whole vector at a time, a copy (its length
    a multiple of the lanes; the tests check it against :func:`exp_array`)."""
    out = np.empty_like(a)
    w = simd.lanes_of(a)
    for j in range(0, a.shape[0] - w + 1, w):
        simd.store(out, j, exp(simd.load(a, j)))
    return out


__all__ = ["exp", "exp_array", "exp_vectors", "sigmoid", "tanh"]
