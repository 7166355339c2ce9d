"""What every cell shares: input checks and the structured masks of Eq. 2.

Eq. 2 masks every gate block of a cell alike::

    W_hat = W * outer(tile(s, G), z)        U_hat = U * outer(tile(s, G), s)

The cells never build those matrices.  They use the equal product

    W_hat @ x = tile(s, G) * (W @ (z * x))  U_hat @ h = tile(s, G) * (U @ (s * h))

which costs two vector scalings instead of two matrix copies, and lets each
sequence of a batch carry its own gate sample: a mask is either 1-D, shape
(size,), shared by the batch, or 2-D, shape (B, size), one row per sequence.
"""
from __future__ import annotations

import numpy as np


def as_dtype(params: dict) -> np.dtype:
    """The floating dtype of a cell's parameters; everything else is cast to it."""
    dtypes = {np.asarray(v).dtype for v in params.values()}
    if len(dtypes) != 1:
        raise ValueError(f"cell parameters have mixed dtypes {sorted(map(str, dtypes))}")
    dtype = dtypes.pop()
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"cell parameters must be float32 or float64, got {dtype}")
    return dtype


def check_param(params: dict, key: str, shape: tuple) -> np.ndarray:
    """``params[key]`` with the expected ``shape``, or a ``ValueError`` naming both shapes."""
    if key not in params:
        raise ValueError(f"cell parameters lack {key!r} (have {sorted(params)})")
    a = np.asarray(params[key])
    if a.shape != shape:
        raise ValueError(f"parameter {key} has shape {a.shape}, expected {shape}")
    return a


def check_finite(a: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")


def check_sequence(x, input_size: int, dtype) -> np.ndarray:
    """A time-major input sequence, shape (T, B, input_size), T >= 1 and B >= 1."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != input_size or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x has shape {x.shape}, expected (T, B, {input_size}) with T, B >= 1")
    x = x.astype(dtype, copy=False)
    check_finite(x, "x")
    return x


def check_mask(mask, batch: int, size: int, name: str, dtype) -> np.ndarray:
    """A gate vector of shape (size,) or (batch, size); ``None`` means all ones."""
    if mask is None:
        return np.ones(size, dtype=dtype)
    mask = np.asarray(mask)
    if mask.shape not in ((size,), (batch, size)):
        raise ValueError(f"mask {name} has shape {mask.shape}, expected ({size},) or ({batch}, {size})")
    mask = mask.astype(dtype, copy=False)
    check_finite(mask, name)
    return mask


def check_state(h, batch: int, size: int, name: str, dtype) -> np.ndarray:
    """A recurrent state of shape (batch, size); ``None`` means zeros."""
    if h is None:
        return np.zeros((batch, size), dtype=dtype)
    h = np.asarray(h)
    if h.shape != (batch, size):
        raise ValueError(f"initial state {name} has shape {h.shape}, expected ({batch}, {size})")
    h = h.astype(dtype, copy=False)
    check_finite(h, name)
    return h


def tile_blocks(s: np.ndarray, blocks: int) -> np.ndarray:
    """``tile(s, G)`` along the last axis: (..., n) -> (..., G*n), one copy per gate block."""
    return np.tile(s, (1,) * (s.ndim - 1) + (blocks,))


def sum_blocks(d: np.ndarray, blocks: int) -> np.ndarray:
    """Adjoint of :func:`tile_blocks`: (..., G*n) -> (..., n), the blocks added."""
    return d.reshape(d.shape[:-1] + (blocks, d.shape[-1] // blocks)).sum(axis=-2)


def reduce_to_mask(d: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sum a per-step, per-sequence gradient (T, B, size) or (B, size) to the mask's shape.

    A mask is constant over time, so its gradient adds over the time axis; a 1-D
    mask is shared by the batch, so its gradient adds over the batch axis too.
    """
    while d.ndim > mask.ndim:
        d = d.sum(axis=0)
    return d


def check_grad_output(d, shape: tuple, name: str, dtype) -> np.ndarray:
    """An incoming gradient of the given shape; ``None`` means zeros."""
    if d is None:
        return np.zeros(shape, dtype=dtype)
    d = np.asarray(d)
    if d.shape != shape:
        raise ValueError(f"{name} has shape {d.shape}, expected {shape}")
    return d.astype(dtype, copy=False)
