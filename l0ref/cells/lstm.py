"""LSTM with structured neuron masks (Wen et al. Eq. 1, 2), forward and backward through time.

Shapes: input size m, hidden size n, batch B, T time steps, time-major arrays.
Weights use PyTorch's layout and gate order (input i, forget f, cell candidate
g -- the paper's u -- output o)::

    W (4n, m)    U (4n, n)    b (4n,)

With an input gate vector z (m,) or (B, m) and a hidden gate vector s (n,) or
(B, n), the preactivations of all four gate blocks are (Eq. 2, in the product
form of docs/design.md section 2; ``S = tile(s, 4)``)::

    a_t = S * (W @ (z * x_t) + U @ (s * h_{t-1})) + b          # (B, 4n)
    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o);  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g                                    # Eq. 1
    h_t = o * tanh(c_t)

The outputs are the raw h_t: the consumer (the next layer's z, or the output
layer) applies s.  A pruned unit (s_j = 0) still has a state, driven by its bias
alone, but nothing reads it.

The gates of Lobacheva et al. (``docs/design.md`` section 6), both optional keywords:

- ``g`` (4n,) or (B, 4n), one *preactivation gate* per gate block and unit, multiplies
  everything of that preactivation that the input or the state moves::

      a_t = g * S * ((W * M_W) @ (z * x_t) + (U * M_U) @ (s * h_{t-1})) + b

  so that at g = 0 that gate of that unit is the constant ``sigmoid(b)`` (``tanh(b)``
  for the candidate);
- ``weight_masks = {"W": M_W (4n, m), "U": M_U (4n, n)}``, one gate per weight.

Absent, they are ones, and the arithmetic is today's, bit for bit (``1 * x == x``).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from ._masks import (as_dtype, check_cache, check_dtype, check_grad_output, check_inputs, check_mask, check_param,
                     check_sizes, check_state, check_weight_masks, init_scale, masked_weight, project_input,
                     project_input_backward, project_state, project_state_backward, reduce_to_mask, sum_blocks,
                     tile_blocks, uniform, weight_grad, weight_mask_grads)

NAME = "lstm"
BLOCKS = 4  #: gate blocks i, f, g, o
BLOCK_NAMES = ("i", "f", "g", "o")  #: PyTorch's order; g is the paper's u
STATE_KEYS = ("h0", "c0")  #: names of the initial-state gradients returned by backward
PARAM_KEYS = ("W", "U", "b")
OPTIONS = ()  #: cell options beyond ``init_range``: none
#: Compaction (``compact.py``): the kind of every axis of every parameter.
FOLD_AXES = {"W": ("rows", "in"), "U": ("rows", "hid"), "b": ("bias",)}
MATRIX_KEYS = ("W", "U")  #: the matrices that weight gates act on: input, recurrent
#: Biases that a preactivation gate multiplies, by block: none (the bias is added after g).
PREACT_SCALED_BIASES = {}


def preact_size(hidden_size: int) -> int:
    """Preactivation gates of a layer of n units: one per gate block and unit, 4n."""
    return BLOCKS * check_sizes(0, hidden_size)[1]


def param_shapes(input_size: int, hidden_size: int) -> dict:
    """Shapes of the parameters for input size m and hidden size n."""
    m, n = check_sizes(input_size, hidden_size)
    return {"W": (BLOCKS * n, m), "U": (BLOCKS * n, n), "b": (BLOCKS * n,)}


def matrix_blocks() -> tuple[int, int]:
    """(G_W, G_U) = (4, 4): (n, m) blocks of W and (n, n) blocks of the recurrent weights,
    for counting weights and multiply-adds."""
    return BLOCKS, BLOCKS


def init_params(input_size: int, hidden_size: int, rng: np.random.Generator,
                dtype=np.float64, init_range: float | None = None) -> dict:
    """Uniform(-k, k) weights, k = 1/sqrt(n) as in PyTorch unless ``init_range`` is given.

    Returns ``{"W": (4n, m), "U": (4n, n), "b": (4n,)}``.
    """
    m, n = check_sizes(input_size, hidden_size)
    dtype = check_dtype(dtype)
    k = init_scale(n, init_range)
    return {
        "W": uniform(rng, k, (BLOCKS * n, m), dtype),
        "U": uniform(rng, k, (BLOCKS * n, n), dtype),
        "b": uniform(rng, k, (BLOCKS * n,), dtype),
    }


def sizes(params: dict) -> tuple[int, int]:
    """(input_size, hidden_size) of a parameter dict."""
    W = np.asarray(params["W"])
    return W.shape[1], W.shape[0] // BLOCKS


def zero_state(batch: int, hidden_size: int, dtype=np.float64):
    return (np.zeros((batch, hidden_size), dtype), np.zeros((batch, hidden_size), dtype))


def forward(params: dict, x, z=None, s=None, state0=None, *, g=None, weight_masks=None):
    """Run the masked LSTM over a whole sequence.

    x (T, B, m); z (m,) or (B, m); s (n,) or (B, n); ``state0 = (h0, c0)``, each (B, n),
    or None for zeros; g (4n,) or (B, 4n); ``weight_masks`` ``{"W": (4n, m), "U": (4n, n)}``
    (module docstring).  Masks of None mean all ones.  Returns
    ``(outputs (T, B, n), (h_T, c_T), cache)``.
    """
    dtype = as_dtype(params)
    m, n = sizes(params)
    W = check_param(params, "W", (BLOCKS * n, m))
    U = check_param(params, "U", (BLOCKS * n, n))
    b = check_param(params, "b", (BLOCKS * n,))
    x, z, s = check_inputs(x, z, s, m, n, dtype)
    T, B, _ = x.shape
    h0, c0 = (None, None) if state0 is None else state0
    h0 = check_state(h0, B, n, "h0", dtype)
    c0 = check_state(c0, B, n, "c0", dtype)
    g = check_mask(g, B, BLOCKS * n, "g", dtype)
    wm = check_weight_masks(weight_masks, {"W": W.shape, "U": U.shape}, dtype)
    We, Ue = masked_weight(W, wm, "W"), masked_weight(U, wm, "U")

    S = tile_blocks(s, BLOCKS)                       # (4n,) or (B, 4n)
    M = g * S                                        # the row mask: preactivation gates times S
    xz, wx = project_input(We, x, z)                 # (T, B, m), (T, B, 4n): all steps at once
    H = np.empty((T + 1, B, n), dtype)               # H[t] = h_{t-1}; H[0] = h0
    C = np.empty((T + 1, B, n), dtype)
    pre = np.empty((T, B, BLOCKS * n), dtype)        # W(zx) + U(sh), before the mask S
    act = np.empty((T, B, BLOCKS * n), dtype)        # i, f, g, o after their nonlinearities
    tanh_c = np.empty((T, B, n), dtype)
    H[0], C[0] = h0, c0
    for t in range(T):
        pre[t] = wx[t] + project_state(Ue, s, H[t])
        a = M * pre[t] + b
        act[t] = _gate_nonlinearities(a, n)
        i, f, u, o = _split(act[t], n)             # u: the candidate (the paper's u)
        C[t + 1] = f * C[t] + i * u
        tanh_c[t] = np.tanh(C[t + 1])
        H[t + 1] = o * tanh_c[t]
    cache = dict(cell=NAME, params=(W, U, b), effective=(We, Ue), weight_masks=wm, x=x, xz=xz, z=z, s=s,
                 S=S, g=g, M=M, H=H, C=C, pre=pre, act=act, tanh_c=tanh_c)
    return H[1:].copy(), (H[T].copy(), C[T].copy()), cache


def backward(d_outputs, d_final_state, cache) -> dict:
    """Backpropagate through time.

    d_outputs (T, B, n) is the loss gradient at every h_t; ``d_final_state`` is
    ``(dh_T, dc_T)`` or None.  Returns gradients keyed like the forward's inputs:
    ``x, h0, c0, W, U, b, z, s, g`` (z, s, g of the mask's own shape) and, where the
    forward had weight gates, ``W_mask``, ``U_mask``.
    """
    check_cache(cache, NAME, ("params", "x", "z", "s", "g"))
    W, U, b = cache["params"]
    We, Ue = cache["effective"]
    x, xz, z, s, S, g, M = cache["x"], cache["xz"], cache["z"], cache["s"], cache["S"], cache["g"], cache["M"]
    H, C, pre, act, tanh_c = cache["H"], cache["C"], cache["pre"], cache["act"], cache["tanh_c"]
    T, B, n = tanh_c.shape
    dtype = W.dtype
    d_outputs = check_grad_output(d_outputs, (T, B, n), "d_outputs", dtype)
    dh_T, dc_T = (None, None) if d_final_state is None else d_final_state
    dh_next = check_grad_output(dh_T, (B, n), "dh_T", dtype).copy()
    dc_next = check_grad_output(dc_T, (B, n), "dc_T", dtype).copy()

    da = np.empty_like(act)                          # dL/da_t, a = S * pre + b
    ds_cols = np.empty((T, B, n), dtype)             # dL/ds through s * h_{t-1}
    for t in reversed(range(T)):
        i, f, u, o = _split(act[t], n)             # u: the candidate (the paper's u)
        dh = d_outputs[t] + dh_next
        dc = dh * o * (1 - tanh_c[t] ** 2) + dc_next
        da[t] = np.concatenate([
            dc * u * i * (1 - i),                    # input gate
            dc * C[t] * f * (1 - f),                 # forget gate
            dc * i * (1 - u ** 2),                   # candidate
            dh * tanh_c[t] * o * (1 - o),            # output gate
        ], axis=-1)
        dc_next = dc * f
        dh_next, ds_cols[t] = project_state_backward(da[t] * M, Ue, s, H[t])

    d_pre = da * M                                   # (T, B, 4n): dL/dpre
    dx, dW, dz = project_input_backward(d_pre, We, x, z, xz)
    da_pre = da * pre                                # dL/dM, M = g * S
    grads = {
        "x": dx,
        "h0": dh_next,
        "c0": dc_next,
        "W": dW,
        "U": weight_grad(d_pre, s * H[:-1]),
        "b": da.sum(axis=(0, 1)),
        "z": dz,
        "s": reduce_to_mask(sum_blocks(da_pre * g, BLOCKS) + ds_cols, s),
        "g": reduce_to_mask(da_pre * S, g),
    }
    return weight_mask_grads(grads, {"W": W, "U": U}, cache["weight_masks"])


def _split(a: np.ndarray, n: int):
    return a[..., :n], a[..., n:2 * n], a[..., 2 * n:3 * n], a[..., 3 * n:]


def _gate_nonlinearities(a: np.ndarray, n: int) -> np.ndarray:
    """sigmoid on the i, f, o blocks, tanh on the candidate block g."""
    out = expit(a)
    out[..., 2 * n:3 * n] = np.tanh(a[..., 2 * n:3 * n])
    return out


def weight_blocks(params: dict) -> tuple[int, int]:
    """:func:`matrix_blocks` of a parameter dict: W and U each hold four gate blocks."""
    return matrix_blocks()
