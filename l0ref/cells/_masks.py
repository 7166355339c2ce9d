"""What every cell shares: input checks and the structured masks of Eq. 2.

Eq. 2 masks every gate block of a cell alike::

    W_hat = W * outer(tile(s, G), z)        U_hat = U * outer(tile(s, G), s)

The cells never build those matrices.  They use the equal product

    W_hat @ x = tile(s, G) * (W @ (z * x))  U_hat @ h = tile(s, G) * (U @ (s * h))

which costs two vector scalings instead of two matrix copies, and lets each
sequence of a batch carry its own gate sample: a mask is either 1-D, shape
(size,), shared by the batch, or 2-D, shape (B, size), one row per sequence.

The two projections and their adjoints are shared by every cell:

- :func:`project_input` / :func:`project_input_backward`: ``W @ (z * x_t)`` for all
  steps at once, and the gradients for x, W and z;
- :func:`project_state` / :func:`project_state_backward`: ``U @ (s * h)`` for one step,
  and the gradients for h and for s as the column mask;
- the row mask ``S = tile(s, G)`` multiplies a projection P; the gradient of S * P
  with respect to s is ``sum_blocks(d * P)`` (:func:`sum_blocks`), and with respect
  to P it is ``d * S``.

Every gradient of s or z is first formed per step and per sequence, (T, B, size)
or (T, L, B, size), and then summed to the mask's own shape by :func:`reduce_to_mask`.
"""
from __future__ import annotations

import math

import numpy as np


def check_count(name: str, value, minimum: int = 0) -> int:
    """``value`` as an int if it is an integer >= ``minimum`` (not a bool), else a ``ValueError``."""
    try:
        ok = not isinstance(value, (bool, np.bool_)) and int(value) == value and value >= minimum
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_dtype(dtype) -> np.dtype:
    """``dtype`` if it is float32 or float64 (the precisions every cell and kernel runs in)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


#: How far outside [0, 1] a mask value may lie: gates are in [0, 1], and the slack lets a
#: finite-difference check probe the gradient at exact zeros and ones (its steps are 1e-4).
MASK_SLACK = 1e-3


def check_sizes(input_size, hidden_size) -> tuple[int, int]:
    """``(input_size, hidden_size)`` as ints; zero is allowed (compaction may prune a whole layer)."""
    return check_count("input_size", input_size), check_count("hidden_size", hidden_size)


def uniform(rng: np.random.Generator, k: float, shape, dtype) -> np.ndarray:
    """Uniform(-k, k) numbers of ``shape`` in ``dtype``: the same numbers as
    ``rng.uniform(-k, k, shape).astype(dtype)``, drawn a million at a time, so that a
    float32 model never holds a float64 copy of its largest matrix."""
    out = np.empty(shape, dtype)
    flat = out.reshape(-1)
    step = 1 << 20
    for i in range(0, flat.size, step):
        flat[i:i + step] = rng.uniform(-k, k, min(step, flat.size - i))
    return out


def init_scale(hidden_size: int, init_range: float | None) -> float:
    """Half-width k of the Uniform(-k, k) initialization: ``init_range``, or PyTorch's
    ``1 / sqrt(n)``.  A layer of width 0 has no weights to draw; k = 1 keeps it finite."""
    if init_range is not None:
        k = float(init_range)
        if not (np.isfinite(k) and k >= 0):
            raise ValueError(f"init_range must be finite and >= 0, got {init_range!r}")
        return k
    return 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 1.0


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
    check_finite(a, f"parameter {key}")
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
    """A gate vector of shape (size,) or (batch, size) with values in [0, 1] (up to
    :data:`MASK_SLACK`); ``None`` means all ones."""
    if mask is None:
        return np.ones(size, dtype=dtype)
    mask = np.asarray(mask)
    if mask.shape not in ((size,), (batch, size)):
        raise ValueError(f"mask {name} has shape {mask.shape}, expected ({size},) or ({batch}, {size})")
    mask = mask.astype(dtype, copy=False)
    check_finite(mask, name)
    if mask.size and (mask.min() < -MASK_SLACK or mask.max() > 1 + MASK_SLACK):
        raise ValueError(f"mask {name} has values in [{mask.min():g}, {mask.max():g}]; gates lie in [0, 1]")
    return mask


def check_cache(cache, name: str, keys) -> None:
    """``ValueError`` unless ``cache`` is what the ``name`` cell's forward returned."""
    if not isinstance(cache, dict) or cache.get("cell") != name or not set(keys) <= set(cache):
        raise ValueError(f"backward needs the cache that the {name} cell's forward returned, got "
                         f"{type(cache).__name__}" + (f" with keys {sorted(cache)}" if isinstance(cache, dict) else ""))


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


def check_inputs(x, z, s, input_size: int, hidden_size: int, dtype):
    """The checked ``(x, z, s)`` of a cell's forward, all cast to ``dtype``:
    x (T, B, m), masks of shape (m,) / (B, m) and (n,) / (B, n), None meaning ones."""
    x = check_sequence(x, input_size, dtype)
    B = x.shape[1]
    return x, check_mask(z, B, input_size, "z", dtype), check_mask(s, B, hidden_size, "s", dtype)


def check_weight_masks(weight_masks, shapes: dict, dtype) -> dict:
    """The weight gates of Lobacheva et al.'s "W" level, one per weight: ``{key: mask}`` with
    each mask of its matrix's shape (``shapes[key]``), values in [0, 1] (up to
    :data:`MASK_SLACK`).  None means no weight gates (``{}``); a key may be left out
    (all ones)."""
    if weight_masks is None:
        return {}
    if not isinstance(weight_masks, dict):
        raise ValueError(f"weight_masks must be a dict {{matrix: mask}}, got {type(weight_masks).__name__}")
    unknown = sorted(set(weight_masks) - set(shapes))
    if unknown:
        raise ValueError(f"weight_masks has keys {unknown}; the cell's matrices are {sorted(shapes)}")
    out = {}
    for key, mask in weight_masks.items():
        if mask is None:
            continue
        mask = np.asarray(mask)
        if mask.shape != tuple(shapes[key]):
            raise ValueError(f"weight mask {key} has shape {mask.shape}, expected {tuple(shapes[key])}")
        mask = mask.astype(dtype, copy=False)
        check_finite(mask, f"weight mask {key}")
        if mask.size and (mask.min() < -MASK_SLACK or mask.max() > 1 + MASK_SLACK):
            raise ValueError(f"weight mask {key} has values in [{mask.min():g}, {mask.max():g}]; gates lie in [0, 1]")
        out[key] = mask
    return out


def masked_weight(M: np.ndarray, masks: dict, key: str) -> np.ndarray:
    """The effective matrix ``M * masks[key]`` (the matrix itself where it has no weight gates)."""
    return M if key not in masks else M * masks[key]


def weight_mask_grads(grads: dict, params: dict, masks: dict) -> dict:
    """Chain the gradients of the effective matrices ``M_eff = M * mask`` (``grads[key]``, in
    place) to the matrices, ``dM = dM_eff * mask``, and the masks, ``d mask = dM_eff * M``
    (returned as ``grads[key + "_mask"]``)."""
    for key, mask in masks.items():
        d_eff = grads[key]
        grads[key + "_mask"] = d_eff * params[key]
        grads[key] = d_eff * mask
    return grads


def tile_blocks(s: np.ndarray, blocks: int) -> np.ndarray:
    """``tile(s, G)`` along the last axis: (..., n) -> (..., G*n), one copy per gate block."""
    return np.tile(s, (1,) * (s.ndim - 1) + (blocks,))


def sum_blocks(d: np.ndarray, blocks: int) -> np.ndarray:
    """Adjoint of :func:`tile_blocks`: (..., G*n) -> (..., n), the blocks added.

    So for a row-masked projection ``a = tile(s, G) * P + b``, ``dL/ds = sum_blocks(dL/da * P)``
    (per step and sequence, before :func:`reduce_to_mask`).
    """
    return d.reshape(d.shape[:-1] + (blocks, d.shape[-1] // blocks)).sum(axis=-2)


def weight_grad(d_out: np.ndarray, inp: np.ndarray) -> np.ndarray:
    """dL/dM for ``out = inp @ M.T``, summed over all leading (time, batch) axes.

    d_out (..., rows), inp (..., cols) -> (rows, cols).  Works for zero-size axes.
    """
    rows = math.prod(d_out.shape[:-1])
    return d_out.reshape(rows, d_out.shape[-1]).T @ inp.reshape(rows, inp.shape[-1])


def project_input(W: np.ndarray, x: np.ndarray, z: np.ndarray):
    """The input half of Eq. 2 before the row mask, for every step at once.

    W (G*n, m), x (T, B, m), z (m,) or (B, m) -> ``(z * x (T, B, m), W @ (z * x_t) (T, B, G*n))``.
    """
    xz = x * z                                       # (T, B, m)
    return xz, xz @ W.T                              # (T, B, G*n)


def project_input_backward(d_wx: np.ndarray, W: np.ndarray, x: np.ndarray, z: np.ndarray,
                           xz: np.ndarray):
    """Adjoint of :func:`project_input`.

    ``d_wx`` (T, B, G*n) is dL/d(W @ (z * x_t)) -- the gradient of the masked
    preactivation times the row mask S.  Returns ``(dx (T, B, m), dW (G*n, m), dz)``
    with dz of z's own shape.
    """
    d_xz = d_wx @ W                                  # (T, B, m)
    return d_xz * z, weight_grad(d_wx, xz), reduce_to_mask(d_xz * x, z)


def project_state(U: np.ndarray, s: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The recurrent half of Eq. 2 before the row mask, one step: ``U @ (s * h)``.

    U (G*n, n), s (n,) or (B, n), h (B, n) -> (B, G*n).
    """
    return (s * h) @ U.T


def project_state_backward(d_uh: np.ndarray, U: np.ndarray, s: np.ndarray, h: np.ndarray):
    """Adjoint of :func:`project_state` in h and s (U's gradient is :func:`weight_grad`
    over all steps).  ``d_uh`` (B, G*n) -> ``(dh (B, n), ds (B, n))``, ds per sequence."""
    d_sh = d_uh @ U                                  # dL/d(s * h), (B, n)
    return d_sh * s, d_sh * h


def reduce_to_mask(d: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sum a per-step, per-sequence gradient (T, B, size) or (B, size) to the mask's shape.

    A mask is constant over time (and over an RHN's micro-steps), so its gradient
    adds over those leading axes; a 1-D mask is shared by the batch, so its gradient
    adds over the batch axis too.
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
