"""Recurrent Highway Network (Zilly et al. 2017) with structured neuron masks (Wen et al. Eq. 2).

Shapes: input size m, hidden size n, recurrence depth L, batch B, T time steps,
time-major arrays.  Two gate blocks, the candidate H and the transform gate T,
in that order; the carry gate is coupled, C = 1 - T::

    W (2n, m)        input weights, read at the first micro-step only
    R (L, 2n, n)     recurrent weights, one matrix per micro-step
    b (L, 2n)        biases, one vector per micro-step

The depth L is not stored separately: it is ``R.shape[0]``.

With an input gate vector z (m,) or (B, m) and a width gate vector s (n,) or
(B, n), ``S = tile(s, 2)``, the state q passes through L micro-steps per time
step (the masks of Eq. 2 in the product form of docs/design.md section 2)::

    q = q_{t-1}                                                 # the last micro-step's state
    for k = 1..L:
        a_k = S * ([k = 1] W @ (z * x_t) + R[k] @ (s * q)) + b[k]   # (B, 2n)
        h = tanh(a_k,H);  t = sigmoid(a_k,T)
        q = h * t + q * (1 - t)
    q_t = q                                                     # the output at time t

Not in the papers, chosen here: Wen et al. treat the LSTM (and mention other
cells); for the RHN one width gate vector s prunes a unit of the state q
everywhere it appears -- the rows of W and of every R[k] (through S) and the
columns of every R[k] (through s * q) -- because q is the only state and every
micro-step both reads and writes it.  Zilly et al.'s micro-steps share the
state width, so a unit pruned at one micro-step must be pruned at all.  A pruned
unit (s_j = 0) still has a state, driven by its biases alone, but nothing reads it.

Initialization: weights and the H biases Uniform(-k, k), k = 1/sqrt(n) unless
``init_range`` is given; the T biases are the constant ``transform_bias``,
default -2.  A negative transform bias makes sigmoid(b_T) small, so at the
start every micro-step mostly carries its state (sigmoid(-2) = 0.12: 88% carried
per micro-step), which eases the flow of gradients through time and depth, as
in highway networks.  -2 is the value of Zilly et al.'s released Penn Treebank
configuration (their character-level configurations use -4, for depth 10 and
longer dependencies); for the shallow depths used here, -4 would make the
cell nearly an identity map at the start (0.98 carried per micro-step).

The gates of Lobacheva et al. (``docs/design.md`` section 6), both optional keywords:
``weight_masks = {"W": M_W (2n, m), "R": M_R (L, 2n, n)}``, one gate per weight, and
``g`` (2nL,) or (B, 2nL), one *preactivation gate* per gate block, unit and micro-step
(micro-step k's H and T blocks at ``g[..., 2n k : 2n (k + 1)]``, the order of R's rows
flattened), multiplying everything of that preactivation that the input or the state
moves::

    a_k = g_k * S * ([k = 1] (W * M_W) @ (z * x_t) + (R[k] * M_R[k]) @ (s * q)) + b[k]

so that at g = 0 that gate of that unit, at that micro-step, is ``tanh(b)`` (H) or
``sigmoid(b)`` (T).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from ._masks import (as_dtype, check_cache, check_dtype, check_count, check_grad_output, check_inputs, check_mask,
                     check_param, check_sizes, check_state, check_weight_masks, init_scale, masked_weight,
                     project_input, project_input_backward, project_state, project_state_backward, reduce_to_mask,
                     sum_blocks, tile_blocks, uniform, weight_grad, weight_mask_grads)

NAME = "rhn"
BLOCKS = 2  #: gate blocks H (candidate) and T (transform gate)
BLOCK_NAMES = ("H", "T")  #: transform candidate, transform gate
STATE_KEYS = ("q0",)  #: name of the initial-state gradient returned by backward
PARAM_KEYS = ("W", "R", "b")
OPTIONS = ("depth", "transform_bias")  #: cell options beyond ``init_range``
#: Compaction (``compact.py``): the kind of every axis of every parameter; the
#: micro-step axis of R and b is not a neuron axis (None): every R^k is folded alike.
FOLD_AXES = {"W": ("rows", "in"), "R": (None, "rows", "hid"), "b": (None, "bias")}
MATRIX_KEYS = ("W", "R")  #: the matrices that weight gates act on: input, recurrent (every micro-step)
#: Biases that a preactivation gate multiplies, by block: none (the bias is added after g).
PREACT_SCALED_BIASES = {}
DEFAULT_DEPTH = 2  #: the smallest depth with a micro-step that does not read the input
TRANSFORM_BIAS = -2.0  #: initial bias of the transform gate T (see the module docstring)


def param_shapes(input_size: int, hidden_size: int, depth: int = DEFAULT_DEPTH,
                 transform_bias: float = TRANSFORM_BIAS) -> dict:
    """Shapes of the parameters for input size m, hidden size n and recurrence depth L."""
    m, n = check_sizes(input_size, hidden_size)
    L = check_count("depth", depth, minimum=1)
    return {"W": (BLOCKS * n, m), "R": (L, BLOCKS * n, n), "b": (L, BLOCKS * n)}


def preact_size(hidden_size: int, depth: int = DEFAULT_DEPTH, transform_bias: float = TRANSFORM_BIAS) -> int:
    """Preactivation gates of a layer of n units: one per gate block, unit and micro-step, 2nL."""
    return BLOCKS * check_sizes(0, hidden_size)[1] * check_count("depth", depth, minimum=1)


def matrix_blocks(depth: int = DEFAULT_DEPTH, transform_bias: float = TRANSFORM_BIAS) -> tuple[int, int]:
    """(G_W, G_R) = (2, 2L): W holds the H and T blocks, R holds them for each of L micro-steps."""
    return BLOCKS, BLOCKS * check_count("depth", depth, minimum=1)


def init_params(input_size: int, hidden_size: int, rng: np.random.Generator,
                dtype=np.float64, init_range: float | None = None, depth: int = DEFAULT_DEPTH,
                transform_bias: float = TRANSFORM_BIAS) -> dict:
    """Uniform(-k, k) weights and H biases, T biases ``transform_bias``.

    k = 1/sqrt(n) as PyTorch does for its recurrent layers, unless ``init_range``
    is given.  Returns ``{"W": (2n, m), "R": (L, 2n, n), "b": (L, 2n)}``, L = ``depth``.
    """
    m, n = check_sizes(input_size, hidden_size)
    dtype = check_dtype(dtype)
    L = check_count("depth", depth, minimum=1)
    if not np.isfinite(transform_bias):
        raise ValueError(f"transform_bias must be finite, got {transform_bias!r}")
    k = init_scale(n, init_range)
    b = rng.uniform(-k, k, (L, BLOCKS * n))
    b[:, n:] = transform_bias                        # the T block of every micro-step
    return {
        "W": uniform(rng, k, (BLOCKS * n, m), dtype),
        "R": uniform(rng, k, (L, BLOCKS * n, n), dtype),
        "b": b.astype(dtype),
    }


def sizes(params: dict) -> tuple[int, int]:
    """(input_size, hidden_size) of a parameter dict."""
    W = np.asarray(params["W"])
    return W.shape[1], W.shape[0] // BLOCKS


def depth(params: dict) -> int:
    """The recurrence depth L: the number of recurrent matrices in R."""
    return np.shape(params["R"])[0]


def zero_state(batch: int, hidden_size: int, dtype=np.float64) -> np.ndarray:
    """The RHN's state is q alone: one (batch, n) array of zeros."""
    return np.zeros((batch, hidden_size), dtype)


def forward(params: dict, x, z=None, s=None, state0=None, *, g=None, weight_masks=None):
    """Run the masked RHN over a whole sequence.

    x (T, B, m); z (m,) or (B, m); s (n,) or (B, n); ``state0`` is q0 (B, n) or
    None for zeros; g (2nL,) or (B, 2nL); ``weight_masks`` ``{"W": (2n, m), "R": (L, 2n, n)}``
    (module docstring).  Masks of None mean all ones.  Returns
    ``(outputs (T, B, n), q_T (B, n), cache)``; outputs[t] is q after the last
    micro-step of time t.
    """
    dtype = as_dtype(params)
    m, n = sizes(params)
    W = check_param(params, "W", (BLOCKS * n, m))
    L = _check_depth_of(params, n)
    R = check_param(params, "R", (L, BLOCKS * n, n))
    b = check_param(params, "b", (L, BLOCKS * n))
    x, z, s = check_inputs(x, z, s, m, n, dtype)
    T, B, _ = x.shape
    q0 = check_state(state0, B, n, "q0", dtype)
    g = check_mask(g, B, BLOCKS * n * L, "g", dtype)
    wm = check_weight_masks(weight_masks, {"W": W.shape, "R": R.shape}, dtype)
    We, Re = masked_weight(W, wm, "W"), masked_weight(R, wm, "R")

    S = tile_blocks(s, BLOCKS)                       # (2n,) or (B, 2n)
    M = [g[..., 2 * n * k: 2 * n * (k + 1)] * S for k in range(L)]   # row mask of each micro-step
    xz, wx = project_input(We, x, z)                 # (T, B, m), (T, B, 2n): all steps at once
    Q = np.empty((T, L + 1, B, n), dtype)            # Q[t, k]: state entering micro-step k of step t
    pre = np.empty((T, L, B, BLOCKS * n), dtype)     # [k=1] W(zx) + R[k](s q), before the mask S
    act = np.empty((T, L, B, BLOCKS * n), dtype)     # h, t after their nonlinearities
    q = q0
    for t in range(T):
        Q[t, 0] = q
        for k in range(L):
            pre[t, k] = project_state(Re[k], s, Q[t, k])
            if k == 0:
                pre[t, k] += wx[t]
            a = M[k] * pre[t, k] + b[k]              # (B, 2n)
            act[t, k] = np.concatenate([np.tanh(a[:, :n]), expit(a[:, n:])], axis=-1)
            h, tg = _split(act[t, k], n)
            Q[t, k + 1] = h * tg + Q[t, k] * (1 - tg)
        q = Q[t, L]
    cache = dict(cell=NAME, params=(W, R, b), effective=(We, Re), weight_masks=wm, x=x, xz=xz, z=z, s=s, S=S,
                 g=g, M=M, Q=Q, pre=pre, act=act)
    return Q[:, L].copy(), Q[T - 1, L].copy(), cache


def backward(d_outputs, d_final_state, cache) -> dict:
    """Backpropagate through time and through the micro-steps.

    d_outputs (T, B, n) is the loss gradient at every output q_t;
    ``d_final_state`` is dq_T (B, n) or None.  Returns gradients keyed like the
    forward's inputs: ``x, q0, W, R, b, z, s, g`` (z, s, g of the mask's own shape) and,
    where the forward had weight gates, ``W_mask``, ``R_mask``.
    """
    check_cache(cache, NAME, ("params", "x", "z", "s", "g"))
    W, R, b = cache["params"]
    We, Re = cache["effective"]
    x, xz, z, s, S, g, M = cache["x"], cache["xz"], cache["z"], cache["s"], cache["S"], cache["g"], cache["M"]
    Q, pre, act = cache["Q"], cache["pre"], cache["act"]
    T, L, B, n = Q.shape[0], R.shape[0], Q.shape[2], Q.shape[3]
    dtype = W.dtype
    d_outputs = check_grad_output(d_outputs, (T, B, n), "d_outputs", dtype)
    dq = check_grad_output(d_final_state, (B, n), "dq_T", dtype).copy()

    da = np.empty_like(act)                          # dL/da_k at every step and micro-step
    ds_cols = np.empty((T, L, B, n), dtype)          # dL/ds through s * q
    for t in reversed(range(T)):
        dq = dq + d_outputs[t]                       # dL/dq after the last micro-step of t
        for k in reversed(range(L)):
            h, tg = _split(act[t, k], n)
            q_in = Q[t, k]
            da[t, k] = np.concatenate([
                dq * tg * (1 - h ** 2),              # candidate H
                dq * (h - q_in) * tg * (1 - tg),     # transform gate T
            ], axis=-1)
            dq_proj, ds_cols[t, k] = project_state_backward(da[t, k] * M[k], Re[k], s, q_in)
            dq = dq * (1 - tg) + dq_proj             # carry + recurrent projection

    d_pre = np.stack([da[:, k] * M[k] for k in range(L)], axis=1)   # (T, L, B, 2n): dL/dpre
    dx, dW, dz = project_input_backward(d_pre[:, 0], We, x, z, xz)
    sq = s * Q[:, :L]                                # (T, L, B, n): what each R[k] reads
    da_pre = da * pre                                # dL/dM_k, M_k = g_k * S
    g_k = [g[..., 2 * n * k: 2 * n * (k + 1)] for k in range(L)]
    d_g = np.concatenate([reduce_to_mask(da_pre[:, k] * S, g_k[k]) for k in range(L)], axis=-1)
    grads = {
        "x": dx,
        "q0": dq,
        "W": dW,
        "R": np.stack([weight_grad(d_pre[:, k], sq[:, k]) for k in range(L)]),
        "b": da.sum(axis=(0, 2)),
        "z": dz,
        "s": reduce_to_mask(sum_blocks(np.stack([da_pre[:, k] * g_k[k] for k in range(L)], axis=1), BLOCKS)
                            + ds_cols, s),
        "g": d_g,
    }
    return weight_mask_grads(grads, {"W": W, "R": R}, cache["weight_masks"])


def _split(a: np.ndarray, n: int):
    return a[..., :n], a[..., n:]


def _check_depth_of(params: dict, n: int) -> int:
    """The depth L read off R, which must be (L, 2n, n) with L >= 1."""
    if "R" not in params:
        raise ValueError(f"cell parameters lack 'R' (have {sorted(params)})")
    shape = np.shape(params["R"])
    if len(shape) != 3 or shape[0] < 1:
        raise ValueError(f"parameter R has shape {shape}, expected (L, {BLOCKS * n}, {n}) with depth L >= 1")
    return shape[0]


def weight_blocks(params: dict) -> tuple[int, int]:
    """:func:`matrix_blocks` of a parameter dict, its depth read off R."""
    return matrix_blocks(depth(params))
