"""SIMD vectors inside numba kernels: a vector type and the handful of operations the
compact-model kernels (``fast/``) are written with.

LLVM vectorizes numba's elementwise loops by itself, but not a matrix product's
register blocking: a product tile that keeps 12 accumulators of 8 lanes in the CPU's
registers across a whole dot-product loop needs values that *are* vectors.  This
module gives numba such values, as LLVM's own vector types, and nothing more:

- :data:`VECTOR_BYTES`: the width of a vector, chosen for the CPU that numba compiles
  for (:func:`host_vector_bytes`): 64 bytes (16 float32) where it has AVX-512, 32 (one
  AVX2 register) where it has AVX2, 16 (SSE2, every x86-64; LLVM maps it to NEON on
  Arm) otherwise.  ``L0REF_VECTOR_BYTES=16|32|64`` in the environment overrides it (the
  tests run every path that way: LLVM splits a vector wider than the CPU's registers
  into several, so every width computes the same numbers anywhere, if not as fast);
- :class:`Vector`: the numba type of ``lanes(dtype)`` numbers of one float dtype;
- :func:`load` / :func:`store`: a vector from / to ``lanes`` consecutive elements of
  a C-contiguous array, addressed by the *flat* index of the first one (the layout
  ``tile.py`` packs its matrices in, so a kernel computes offsets like BLAS does);
  :func:`get` / :func:`put`: one element, by flat index; :func:`lanes_of`: the lanes
  of an array's dtype, a compile-time constant;
- :func:`splat`: a scalar in every lane; :func:`fma`: ``a * b + c`` lane by lane,
  one fused rounding (LLVM's ``llvm.fma``); :func:`maximum`: the larger of two
  lanes, lane by lane; :func:`lane`: one lane as a scalar;
- :func:`pow2`: ``2**k`` from the bits of an integral float ``k``, the last step of
  the vectorizable ``exp`` of ``vmath.py``; :func:`as_type_of`: a constant in the
  precision of another value (numba turns ``1 + x`` into float64 for a float32 ``x``).

No bounds are checked: the callers index within arrays whose sizes they laid out.
"""
from __future__ import annotations

import operator
import os

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.extending import intrinsic, models, overload, register_model

#: The vector widths the kernels are written for, by instruction set.
WIDTHS = {"avx512": 64, "avx2": 32, "sse2": 16}
#: Vector registers of each instruction set (x86-64: 16 of AVX2 or SSE, 32 of AVX-512).
REGISTERS = {64: 32, 32: 16, 16: 16}
ENV_VECTOR_BYTES = "L0REF_VECTOR_BYTES"


def _target_features() -> set:
    """The features of the CPU that numba compiles for: those of ``NUMBA_CPU_FEATURES``
    where numba is told a CPU (none for ``NUMBA_CPU_NAME=generic``), else the host's, as
    llvmlite reports them."""
    from numba.core import config
    if config.CPU_NAME is not None or config.CPU_FEATURES:    # numba compiles for a named CPU
        return {f[1:] for f in (config.CPU_FEATURES or "").split(",") if f.startswith("+")}
    import llvmlite.binding as llvm
    return {name for name, on in llvm.get_host_cpu_features().items() if on}


def host_vector_bytes(features=None) -> int:
    """The vector width for a CPU with ``features`` (default: the compile target's):
    64 with AVX-512 F, 32 with AVX2 and FMA, 16 otherwise."""
    features = _target_features() if features is None else set(features)
    if "avx512f" in features:
        return WIDTHS["avx512"]
    if {"avx2", "fma"} <= features:
        return WIDTHS["avx2"]
    return WIDTHS["sse2"]


def _vector_bytes() -> int:
    """:func:`host_vector_bytes`, or the environment's ``L0REF_VECTOR_BYTES``."""
    value = os.environ.get(ENV_VECTOR_BYTES)
    if value is None or value == "":
        return host_vector_bytes()
    if value not in {str(v) for v in WIDTHS.values()}:
        raise ValueError(f"{ENV_VECTOR_BYTES}={value!r}: give one of {sorted(WIDTHS.values())} (bytes per vector)")
    return int(value)


#: Bytes per vector, fixed when the package is imported (see the module docstring).
VECTOR_BYTES = _vector_bytes()
#: Vector registers the product tile may use (``tile.py`` sizes itself by them).
VECTOR_REGISTERS = REGISTERS[VECTOR_BYTES]


def describe() -> str:
    """The kernels' vector width in words, e.g. ``64-byte vectors (AVX-512): 16 float32``."""
    isa = {v: k for k, v in WIDTHS.items()}[VECTOR_BYTES]
    names = {"avx512": "AVX-512", "avx2": "AVX2", "sse2": "SSE2"}
    forced = f", set by {ENV_VECTOR_BYTES}" if os.environ.get(ENV_VECTOR_BYTES) else ""
    return f"{VECTOR_BYTES}-byte vectors ({names[isa]}{forced}): {VECTOR_BYTES // 4} float32, {VECTOR_BYTES // 8} float64"


def lanes(dtype) -> int:
    """Numbers of ``dtype`` per vector: 8 for float32, 4 for float64."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"SIMD vectors hold float32 or float64, got {dtype}")
    return VECTOR_BYTES // dtype.itemsize


class Vector(types.Type):
    """The numba type of a SIMD vector of ``count`` numbers of ``dtype`` (a numba float type)."""

    def __init__(self, dtype, count: int):
        self.dtype, self.count = dtype, count
        super().__init__(name=f"Vector({dtype} x {count})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    """A :class:`Vector` is an LLVM vector value, held in a register."""

    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))


def _vector_of(dtype) -> Vector:
    return Vector(dtype, VECTOR_BYTES // (dtype.bitwidth // 8))


def _is_float_array(a) -> bool:
    return isinstance(a, types.Array) and a.layout == "C" and a.dtype in (types.float32, types.float64)


def _element_pointer(context, builder, array_type, array, index):
    """Pointer to the element at flat ``index`` of a C-contiguous array."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


def _splat_value(builder, vector_type, scalar):
    """An LLVM vector with ``scalar`` in every lane."""
    undef = ir.Constant(vector_type, ir.Undefined)
    one = builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count), [0] * vector_type.count)
    return builder.shuffle_vector(one, undef, zeros)


@intrinsic
def load(typingctx, a, i):
    """The vector ``a.flat[i : i + lanes]`` of a C-contiguous float array ``a``."""
    if not (_is_float_array(a) and isinstance(i, types.Integer)):
        return None
    vector = _vector_of(a.dtype)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        vptr = builder.bitcast(ptr, context.get_value_type(vector).as_pointer())
        return builder.load(vptr, align=a.dtype.bitwidth // 8)

    return vector(a, i), codegen


@intrinsic
def store(typingctx, a, i, v):
    """``a.flat[i : i + lanes] = v`` for a C-contiguous float array ``a``."""
    if not (_is_float_array(a) and isinstance(i, types.Integer) and v == _vector_of(a.dtype)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(ptr, args[2].type.as_pointer()), align=a.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(a, i, v), codegen


@intrinsic
def get(typingctx, a, i):
    """The element ``a.flat[i]`` of a C-contiguous float array (no wraparound of negative i)."""
    if not (_is_float_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_element_pointer(context, builder, sig.args[0], args[0], args[1]))

    return a.dtype(a, i), codegen


@intrinsic
def put(typingctx, a, i, x):
    """``a.flat[i] = x`` for a C-contiguous float array (x of its dtype)."""
    if not (_is_float_array(a) and isinstance(i, types.Integer) and x == a.dtype):
        return None

    def codegen(context, builder, sig, args):
        builder.store(args[2], _element_pointer(context, builder, sig.args[0], args[0], args[1]))
        return context.get_dummy_value()

    return types.none(a, i, x), codegen


@intrinsic
def lanes_of(typingctx, a):
    """Lanes of a vector of ``a``'s dtype (8 float32, 4 float64), a constant."""
    if not _is_float_array(a):
        return None
    count = _vector_of(a.dtype).count

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(types.intp), count)

    return types.intp(a), codegen


@intrinsic
def splat(typingctx, x):
    """The vector with the float ``x`` in every lane."""
    if x not in (types.float32, types.float64):
        return None
    vector = _vector_of(x)

    def codegen(context, builder, sig, args):
        return _splat_value(builder, context.get_value_type(vector), args[0])

    return vector(x), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` lane by lane with one rounding, for vectors of one type."""
    if not (isinstance(a, Vector) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        ty = args[0].type
        bits = a.dtype.bitwidth
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty, ty, ty]),
                                            f"llvm.fma.v{ty.count}f{bits}")
        return builder.call(fn, args)

    return a(a, b, c), codegen


@intrinsic
def maximum(typingctx, a, b):
    """Lane by lane ``a if a > b else b`` (one ``vmaxps``; a NaN in ``a`` gives ``b``)."""
    if not (isinstance(a, Vector) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[0], args[1])

    return a(a, b), codegen


@intrinsic
def lane(typingctx, v, i):
    """Lane ``i`` of the vector ``v``, a scalar."""
    if not (isinstance(v, Vector) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.extract_element(args[0], args[1])

    return v.dtype(v, i), codegen


@intrinsic
def pow2(typingctx, k):
    """``2**k`` for a float ``k`` (or each lane of a vector) holding an integer in the
    normal exponent range (-126..127 in float32, -1022..1023 in float64), built from its
    IEEE-754 bits: ``(k + bias) << mantissa_bits`` read as a float.  Vectorizes
    (``vcvttps2dq``, shift, no memory)."""
    element = k.dtype if isinstance(k, Vector) else k
    if element not in (types.float32, types.float64):
        return None
    bits, mantissa, bias = (32, 23, 127) if element == types.float32 else (64, 52, 1023)

    def codegen(context, builder, sig, args):
        int_type = ir.IntType(bits)
        if isinstance(k, Vector):
            int_type = ir.VectorType(int_type, k.count)
        e = builder.fptosi(args[0], int_type)
        e = builder.add(e, _constant(int_type, bias))
        e = builder.shl(e, _constant(int_type, mantissa))
        return builder.bitcast(e, args[0].type)

    return k(k), codegen


# ------------------------------------------------ arithmetic, as on scalars

#: Fast-math flags of the vector arithmetic below: those of ``vmath``'s exp (``_jit.EXP_FASTMATH``),
#: so ``p * r + c`` fuses into one multiply-add as in scalar code, and nothing is reassociated.
ARITHMETIC_FLAGS = ("nsz", "arcp", "contract", "afn")


def _constant(ty, value):
    """An LLVM constant of scalar or vector type ``ty`` (a vector: ``value`` in every lane)."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [value] * ty.count)
    return ir.Constant(ty, value)


def _vector_binary(emit):
    """An intrinsic ``f(a, b)`` on two vectors of one type, ``emit(builder, a, b)`` its code."""
    @intrinsic
    def binary(typingctx, a, b):
        if not (isinstance(a, Vector) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return emit(builder, *args)

        return a(a, b), codegen
    return binary


_add = _vector_binary(lambda b, x, y: b.fadd(x, y, flags=ARITHMETIC_FLAGS))
_sub = _vector_binary(lambda b, x, y: b.fsub(x, y, flags=ARITHMETIC_FLAGS))
_mul = _vector_binary(lambda b, x, y: b.fmul(x, y, flags=ARITHMETIC_FLAGS))
# Python's max(x, y) and min(x, y): y only where it is strictly larger (smaller), so a NaN
# in x stays, as numba's scalar max and min keep it.
_max = _vector_binary(lambda b, x, y: b.select(b.fcmp_ordered(">", y, x), y, x))
_min = _vector_binary(lambda b, x, y: b.select(b.fcmp_ordered("<", y, x), y, x))


def _overload_binary(function, vector_op):
    """``function(a, b)`` (an operator or builtin) for two vectors of one type, or a
    vector and a scalar of its dtype in either order (the scalar in every lane)."""
    @overload(function)
    def implement(a, b):
        if isinstance(a, Vector) and a == b:
            return lambda a, b: vector_op(a, b)
        if isinstance(a, Vector) and b == a.dtype:
            return lambda a, b: vector_op(a, splat(b))
        if isinstance(b, Vector) and a == b.dtype:
            return lambda a, b: vector_op(splat(a), b)
        return None


for _function, _op in [(operator.add, _add), (operator.sub, _sub), (operator.mul, _mul), (max, _max), (min, _min)]:
    _overload_binary(_function, _op)


@intrinsic
def _rint(typingctx, v):
    """Each lane rounded to the nearest integer, ties to even (``llvm.rint``: ``vroundps``)."""
    if not isinstance(v, Vector):
        return None

    def codegen(context, builder, sig, args):
        ty = args[0].type
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty]),
                                            f"llvm.rint.v{ty.count}f{v.dtype.bitwidth}")
        return builder.call(fn, args)

    return v(v), codegen


@overload(np.rint)
def _rint_overload(v):
    if isinstance(v, Vector):
        return lambda v: _rint(v)
    return None


@intrinsic
def as_type_of(typingctx, value, like):
    """``value`` converted to the float type of ``like``: a constant in float32 code
    stays float32 (``one = as_type_of(1.0, x)``)."""
    if like not in (types.float32, types.float64) or not isinstance(value, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[0], sig.args[0], sig.return_type)

    return like(value, like), codegen


__all__ = ["VECTOR_BYTES", "VECTOR_REGISTERS", "WIDTHS", "host_vector_bytes", "describe", "lanes", "Vector", "load", "store", "get", "put", "lanes_of", "splat", "fma", "maximum", "lane", "pow2", "as_type_of",
           "ARITHMETIC_FLAGS"]
