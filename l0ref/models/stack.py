"""The stack of gated recurrent layers that every model shares (Wen et al. section 3).

Layer l (1-based) reads ``z = gates[l - 1]`` and ``s = gates[l]``, the neuron gate groups
of ``gates/neurons.py``; its input is the previous layer's raw outputs (or the
embedding), optionally multiplied by a dropout mask.  What comes before the stack (an
embedding) and after it (a softmax over words, or over classes) belongs to the model.
"""
from __future__ import annotations

import numpy as np

from ..cells import check_layer, get_cell


def check_layers(config, layers) -> None:
    """``ValueError`` unless ``layers`` holds one parameter dict per layer of ``config``,
    each of the shapes its sizes give (``cells.check_layer``)."""
    cell = get_cell(config.cell)
    if not isinstance(layers, (list, tuple)) or len(layers) != config.n_layers:
        got = len(layers) if isinstance(layers, (list, tuple)) else type(layers).__name__
        raise ValueError(f"config has {config.n_layers} layers, parameters have {got}")
    for l, (p, (m, n)) in enumerate(zip(layers, config.layer_sizes)):
        check_layer(cell, p, m, n, config.cell_options, f"layers.{l}")


def check_gates(config, gates, batch: int, dtype) -> list[np.ndarray]:
    """The neuron gates of a run: one array per group, (size,) or (batch, size); None
    means all ones (a compact model, whose gates are folded into its weights)."""
    sizes = config.group_sizes
    if gates is None:
        return [np.ones(g, dtype) for g in sizes]
    if len(gates) != len(sizes):
        raise ValueError(f"got {len(gates)} gate groups, the model has {len(sizes)} (embedding + one per layer)")
    out = []
    for l, (g, size) in enumerate(zip(gates, sizes)):
        g = np.asarray(g, dtype)
        if g.shape not in ((size,), (batch, size)):
            raise ValueError(f"gate group {l} has shape {g.shape}, expected ({size},) or ({batch}, {size})")
        if not np.all(np.isfinite(g)):
            raise ValueError(f"gate group {l} contains NaN or inf")
        out.append(g)
    return out


def dropout_masks(config, shape_tb, dropout, rng, dtype) -> list:
    """Inverted-dropout masks for the L layer inputs and the stack's output; None when off.
    A fresh mask per time step, sequence and unit (Zaremba et al. 2014)."""
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
    if dropout == 0:
        return [None] * (config.n_layers + 1)
    if rng is None:
        raise ValueError("dropout > 0 needs an rng")
    keep = 1.0 - dropout
    sizes = [config.emb_size] + list(config.hidden_sizes)
    scale = np.asarray(1.0 / keep, dtype)
    return [(rng.random(shape_tb + (size,), dtype=dtype) < keep) * scale for size in sizes]


def forward(config, layers, x, gates, state0, drop, *, keep_caches: bool):
    """Run the L cells over x (T, B, e): ``(outputs (T, B, n_L), final states, caches)``.

    ``gates``: checked neuron gates (:func:`check_gates`); ``state0``: a list with each
    layer's initial state or None; ``drop``: :func:`dropout_masks` (layer l's input is
    multiplied by ``drop[l]``).  ``keep_caches``: keep every layer's cell cache for
    :func:`backward` (else each is freed when its layer is done, and ``caches`` is None).
    """
    cell = get_cell(config.cell)
    L = config.n_layers
    state0 = [None] * L if state0 is None else list(state0)
    if len(state0) != L:
        raise ValueError(f"state0 has {len(state0)} entries for {L} layers")
    caches, finals = [], []
    for l in range(L):
        if drop[l] is not None:
            x = x * drop[l]
        x, final, c = cell.forward(layers[l], x, gates[l], gates[l + 1], state0[l])
        caches.append(c if keep_caches else None)
        finals.append(final)
    return x, finals, (caches if keep_caches else None)


def backward(config, caches, d_x, drop):
    """Backpropagate ``d_x`` (T, B, n_L), the gradient at the last layer's raw outputs,
    through the stack.  Returns ``(layer_grads, d_z, d_s, d_input)``: each layer's
    parameter gradients, its mask gradients (for ``gates.gate_grads``) and the gradient
    at the stack's input (before layer 1's dropout)."""
    cell = get_cell(config.cell)
    L = config.n_layers
    layer_grads, d_z, d_s = [None] * L, [None] * L, [None] * L
    for l in reversed(range(L)):
        lg = cell.backward(d_x, None, caches[l])
        layer_grads[l] = {k: lg[k] for k in cell.PARAM_KEYS}
        d_z[l], d_s[l] = lg["z"], lg["s"]
        d_x = lg["x"] if drop[l] is None else lg["x"] * drop[l]
    return layer_grads, d_z, d_s, d_x


__all__ = ["check_layers", "check_gates", "dropout_masks", "forward", "backward"]
