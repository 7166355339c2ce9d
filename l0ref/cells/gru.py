"""GRU (PyTorch's variant) with structured neuron masks (Wen et al. Eq. 2), forward and backward through time.

Shapes: input size m, hidden size n, batch B, T time steps, time-major arrays.
Weights use PyTorch's layout and gate order (reset r, update u, candidate n;
PyTorch calls the update gate z, but here z is the input gate vector of Eq. 2)::

    W (3n, m)    U (3n, n)    b_i (3n,)    b_h (3n,)

With an input gate vector z (m,) or (B, m) and a hidden gate vector s (n,) or
(B, n), the two projections are masked as Eq. 2 masks W and U, in the product
form of docs/design.md section 2 (``S = tile(s, 3)``)::

    gi_t = S * (W @ (z * x_t)) + b_i                             # (B, 3n)
    gh_t = S * (U @ (s * h_{t-1})) + b_h                         # (B, 3n)
    r = sigmoid(gi_r + gh_r);  u = sigmoid(gi_u + gh_u)
    n_t = tanh(gi_n + r * gh_n)
    h_t = (1 - u) * n_t + u * h_{t-1}

Not in the paper, which writes out the LSTM only (Eq. 1): the GRU's reset gate
multiplies the whole recurrent term of the candidate, bias ``b_hn`` included, as
in PyTorch; that is why the GRU keeps two biases and cannot add the two
projections before the mask as the LSTM does.  The mask S still multiplies each
projection before its bias, so this is exactly PyTorch's GRU run with the
explicitly masked matrices ``W * outer(S, z)`` and ``U * outer(S, s)`` of Eq. 2.

The outputs are the raw h_t: the consumer (the next layer's z, or the output
layer) applies s.  A pruned unit (s_j = 0) still has a state, driven by its biases
alone, but nothing reads it.

The gates of Lobacheva et al. (``docs/design.md`` section 6), both optional keywords:
``weight_masks = {"W": M_W (3n, m), "U": M_U (3n, n)}``, one gate per weight (the
matrices are ``W * M_W`` and ``U * M_U`` throughout), and ``g`` (3n,) or (B, 3n), one
*preactivation gate* per gate block and unit, which multiplies everything of that
gate's preactivation that the input or the state moves.  For r and u that is both
projections; for the candidate it is the input projection *and* the whole reset-gated
term, ``b_hn`` included, since ``r`` depends on the input::

    a_r = g_r * S_r * (W_r (z x_t) + U_r (s h_{t-1})) + b_ir + b_hr        (u alike)
    a_n = g_n * (S_n * W_n (z x_t) + r * (S_n * U_n (s h_{t-1}) + b_hn)) + b_in

so that at g = 0 the gate is a constant of its biases: ``sigmoid(b_ir + b_hr)``, and
``tanh(b_in)`` for the candidate.  In code the candidate's preactivation is
``(g_n S_n W_n (z x) + b_in) + (g_n r) (S_n U_n (s h) + b_hn)``: with g = 1 (or absent)
that is today's arithmetic bit for bit.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from ._masks import (as_dtype, check_cache, check_dtype, check_grad_output, check_inputs, check_mask, check_param,
                     check_sizes, check_state, check_weight_masks, init_scale, masked_weight, project_input,
                     project_input_backward, project_state, project_state_backward, reduce_to_mask, sum_blocks,
                     tile_blocks, uniform, weight_grad, weight_mask_grads)

NAME = "gru"
BLOCKS = 3  #: gate blocks r, u, n
BLOCK_NAMES = ("r", "u", "n")  #: reset, update, candidate (PyTorch's r, z, n)
STATE_KEYS = ("h0",)  #: name of the initial-state gradient returned by backward
PARAM_KEYS = ("W", "U", "b_i", "b_h")
OPTIONS = ()  #: cell options beyond ``init_range``: none
#: Compaction (``compact.py``): the kind of every axis of every parameter.  ``r``
#: multiplies ``S_n * U_n (s * h) + b_hn``: folding ``S_n`` and ``s`` into the kept part
#: of ``U_n`` and cutting ``b_hn`` leaves that product unchanged.
FOLD_AXES = {"W": ("rows", "in"), "U": ("rows", "hid"), "b_i": ("bias",), "b_h": ("bias",)}
MATRIX_KEYS = ("W", "U")  #: the matrices that weight gates act on: input, recurrent
#: Biases that a preactivation gate multiplies, by block: ``b_hn`` (inside ``r * (...)``),
#: so compaction folds ``g_n`` into it as into the rows of ``U_n``.
PREACT_SCALED_BIASES = {"b_h": (2,)}


def preact_size(hidden_size: int) -> int:
    """Preactivation gates of a layer of n units: one per gate block and unit, 3n."""
    return BLOCKS * check_sizes(0, hidden_size)[1]


def param_shapes(input_size: int, hidden_size: int) -> dict:
    """Shapes of the parameters for input size m and hidden size n."""
    m, n = check_sizes(input_size, hidden_size)
    return {"W": (BLOCKS * n, m), "U": (BLOCKS * n, n), "b_i": (BLOCKS * n,), "b_h": (BLOCKS * n,)}


def matrix_blocks() -> tuple[int, int]:
    """(G_W, G_U) = (3, 3): (n, m) blocks of W and (n, n) blocks of U."""
    return BLOCKS, BLOCKS


def init_params(input_size: int, hidden_size: int, rng: np.random.Generator,
                dtype=np.float64, init_range: float | None = None) -> dict:
    """Uniform(-k, k) weights and biases, k = 1/sqrt(n) as in PyTorch unless ``init_range`` is given.

    Returns ``{"W": (3n, m), "U": (3n, n), "b_i": (3n,), "b_h": (3n,)}``.
    """
    m, n = check_sizes(input_size, hidden_size)
    dtype = check_dtype(dtype)
    k = init_scale(n, init_range)
    return {
        "W": uniform(rng, k, (BLOCKS * n, m), dtype),
        "U": uniform(rng, k, (BLOCKS * n, n), dtype),
        "b_i": uniform(rng, k, (BLOCKS * n,), dtype),
        "b_h": uniform(rng, k, (BLOCKS * n,), dtype),
    }


def sizes(params: dict) -> tuple[int, int]:
    """(input_size, hidden_size) of a parameter dict."""
    W = np.asarray(params["W"])
    return W.shape[1], W.shape[0] // BLOCKS


def zero_state(batch: int, hidden_size: int, dtype=np.float64) -> np.ndarray:
    """The GRU's state is h alone: one (batch, n) array of zeros."""
    return np.zeros((batch, hidden_size), dtype)


def forward(params: dict, x, z=None, s=None, state0=None, *, g=None, weight_masks=None):
    """Run the masked GRU over a whole sequence.

    x (T, B, m); z (m,) or (B, m); s (n,) or (B, n); ``state0`` is h0 (B, n) or
    None for zeros; g (3n,) or (B, 3n); ``weight_masks`` ``{"W": (3n, m), "U": (3n, n)}``
    (module docstring).  Masks of None mean all ones.  Returns
    ``(outputs (T, B, n), h_T (B, n), cache)``.
    """
    dtype = as_dtype(params)
    m, n = sizes(params)
    W = check_param(params, "W", (BLOCKS * n, m))
    U = check_param(params, "U", (BLOCKS * n, n))
    b_i = check_param(params, "b_i", (BLOCKS * n,))
    b_h = check_param(params, "b_h", (BLOCKS * n,))
    x, z, s = check_inputs(x, z, s, m, n, dtype)
    T, B, _ = x.shape
    h0 = check_state(state0, B, n, "h0", dtype)
    g = check_mask(g, B, BLOCKS * n, "g", dtype)
    wm = check_weight_masks(weight_masks, {"W": W.shape, "U": U.shape}, dtype)
    We, Ue = masked_weight(W, wm, "W"), masked_weight(U, wm, "U")

    S = tile_blocks(s, BLOCKS)                       # (3n,) or (B, 3n)
    M = g * S                                        # row mask of W and of U's r, u blocks
    Mh = _recurrent_row_mask(M, S, n)                # ... and of U: S alone on the n block
    gn = g[..., 2 * n:]                              # the candidate's gate, outside r * (...)
    xz, wx = project_input(We, x, z)                 # (T, B, m), (T, B, 3n): all steps at once
    gi = M * wx + b_i                                # (T, B, 3n)
    H = np.empty((T + 1, B, n), dtype)               # H[t] = h_{t-1}; H[0] = h0
    uh = np.empty((T, B, BLOCKS * n), dtype)         # U(s h_{t-1}), before the mask S
    gh_n = np.empty((T, B, n), dtype)                # candidate block of gh, what r multiplies
    act = np.empty((T, B, BLOCKS * n), dtype)        # r, u, n_t after their nonlinearities
    H[0] = h0
    for t in range(T):
        uh[t] = project_state(Ue, s, H[t])
        gh = Mh * uh[t] + b_h                        # (B, 3n)
        gi_r, gi_u, gi_n = _split(gi[t], n)
        gh_r, gh_u, gh_n[t] = _split(gh, n)
        r = expit(gi_r + gh_r)
        u = expit(gi_u + gh_u)
        cand = np.tanh(gi_n + (gn * r) * gh_n[t])    # the candidate n_t (n is the hidden size)
        act[t] = np.concatenate([r, u, cand], axis=-1)
        H[t + 1] = (1 - u) * cand + u * H[t]
    cache = dict(cell=NAME, params=(W, U, b_i, b_h), effective=(We, Ue), weight_masks=wm, x=x, xz=xz, z=z,
                 s=s, S=S, g=g, M=M, Mh=Mh, H=H, wx=wx, uh=uh, gh_n=gh_n, act=act)
    return H[1:].copy(), H[T].copy(), cache


def backward(d_outputs, d_final_state, cache) -> dict:
    """Backpropagate through time.

    d_outputs (T, B, n) is the loss gradient at every h_t; ``d_final_state`` is
    dh_T (B, n) or None.  Returns gradients keyed like the forward's inputs:
    ``x, h0, W, U, b_i, b_h, z, s, g`` (z, s, g of the mask's own shape) and, where the
    forward had weight gates, ``W_mask``, ``U_mask``.
    """
    check_cache(cache, NAME, ("params", "x", "z", "s", "g"))
    W, U, b_i, b_h = cache["params"]
    We, Ue = cache["effective"]
    x, xz, z, s, S = cache["x"], cache["xz"], cache["z"], cache["s"], cache["S"]
    g, M, Mh = cache["g"], cache["M"], cache["Mh"]
    H, wx, uh, gh_n, act = cache["H"], cache["wx"], cache["uh"], cache["gh_n"], cache["act"]
    T, B, n = gh_n.shape
    gn = g[..., 2 * n:]
    dtype = W.dtype
    d_outputs = check_grad_output(d_outputs, (T, B, n), "d_outputs", dtype)
    dh_next = check_grad_output(d_final_state, (B, n), "dh_T", dtype).copy()

    d_gi = np.empty_like(act)                        # dL/dgi_t
    d_gh = np.empty_like(act)                        # dL/dgh_t
    d_gn = np.empty((T, B, n), dtype)                # dL/dg_n through (g_n r) gh_n
    ds_cols = np.empty((T, B, n), dtype)             # dL/ds through s * h_{t-1}
    for t in reversed(range(T)):
        r, u, cand = _split(act[t], n)
        dh = d_outputs[t] + dh_next
        da_n = dh * (1 - u) * (1 - cand ** 2)        # candidate preactivation gi_n + (g_n r) gh_n
        d_gn[t] = da_n * r * gh_n[t]
        da_r = da_n * gn * gh_n[t] * r * (1 - r)
        da_u = dh * (H[t] - cand) * u * (1 - u)
        d_gi[t] = np.concatenate([da_r, da_u, da_n], axis=-1)
        d_gh[t] = np.concatenate([da_r, da_u, da_n * (gn * r)], axis=-1)
        dh_prev, ds_cols[t] = project_state_backward(d_gh[t] * Mh, Ue, s, H[t])
        dh_next = dh * u + dh_prev

    dx, dW, dz = project_input_backward(d_gi * M, We, x, z, xz)
    d_gi_wx, d_gh_uh = d_gi * wx, d_gh * uh          # dL/dM through gi; dL/dMh through gh
    d_Sh = _recurrent_row_mask(d_gh_uh * g, d_gh_uh, n)   # dL/dS through gh
    d_gg = _recurrent_row_mask(d_gh_uh * S, np.zeros_like(d_gh_uh), n)        # dL/dg through gh (r, u)
    d_gg[..., 2 * n:] = d_gn
    grads = {
        "x": dx,
        "h0": dh_next,
        "W": dW,
        "U": weight_grad(d_gh * Mh, s * H[:-1]),
        "b_i": d_gi.sum(axis=(0, 1)),
        "b_h": d_gh.sum(axis=(0, 1)),
        "z": dz,
        "s": reduce_to_mask(sum_blocks(d_gi_wx * g + d_Sh, BLOCKS) + ds_cols, s),
        "g": reduce_to_mask(d_gi_wx * S + d_gg, g),
    }
    return weight_mask_grads(grads, {"W": W, "U": U}, cache["weight_masks"])


def _recurrent_row_mask(M: np.ndarray, S: np.ndarray, n: int) -> np.ndarray:
    """The r and u blocks of ``M`` and the n block of ``S``, broadcast to one array: the
    mask of the recurrent projection, whose candidate block the gate multiplies outside
    ``r * (...)`` instead (module docstring)."""
    shape = np.broadcast_shapes(M.shape, S.shape)
    out = np.empty(shape, np.result_type(M, S))
    out[..., :2 * n] = M[..., :2 * n]
    out[..., 2 * n:] = S[..., 2 * n:]
    return out


def _split(a: np.ndarray, n: int):
    return a[..., :n], a[..., n:2 * n], a[..., 2 * n:]


def weight_blocks(params: dict) -> tuple[int, int]:
    """:func:`matrix_blocks` of a parameter dict: W and U each hold three gate blocks."""
    return matrix_blocks()
