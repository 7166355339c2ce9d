"""The stack of gated recurrent layers that every model shares (Wen et al. section 3).

Layer l (1-based) reads ``z = gates[l - 1]`` and ``s = gates[l]``, the neuron gate groups
of ``gates/neurons.py``; its input is the previous layer's raw outputs (or the
embedding), optionally multiplied by a dropout mask.  What comes before the stack (an
embedding) and after it (a softmax over words, or over classes) belongs to the model.
"""
from __future__ import annotations

import numpy as np

from .. import gates as gates_mod
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


def check_gates(config, gates, batch: int, dtype) -> dict:
    """The gates of a run, ``{family: [one array per group]}``.

    ``gates`` is such a dict (a family of the config left out means all ones), a list
    (the neuron gates alone), or None (all ones: a compact model, whose gates are folded
    into its weights).  A group drawn per sequence is (batch,) + its shape or its shape
    alone (one for the batch, e.g. test-time gates); a weight group is its matrix's shape.
    The neuron gates are always present in the result."""
    if gates is None:
        gates = {}
    elif not isinstance(gates, dict):
        gates = {"neurons": gates}
    unknown = sorted(set(gates) - set(config.gate_families))
    if unknown:
        raise ValueError(f"gates of families {unknown}, the model has {list(config.gate_families)}")
    out = {}
    for family in config.gate_families:
        groups = gates_mod.get_family(family).groups(config)
        given = gates.get(family)
        if given is None:
            if family == "neurons":
                out[family] = [np.ones(g.shape, dtype) for g in groups]
            continue
        if len(given) != len(groups):
            raise ValueError(f"got {len(given)} {family} gate groups, the model has {len(groups)}")
        arrays = []
        for group, a in zip(groups, given):
            a = np.asarray(a, dtype)
            shapes = [group.shape] + ([(batch,) + group.shape] if group.drawn == gates_mod.PER_SEQUENCE else [])
            if a.shape not in shapes:
                raise ValueError(f"{family} gate group {group.index} has shape {a.shape}, expected "
                                 + " or ".join(map(str, shapes)) + f" ({group.name})")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{family} gate group {group.index} contains NaN or inf ({group.name})")
            arrays.append(a)
        out[family] = arrays
    return out


def layer_gates(config, gates: dict, l: int) -> dict:
    """The keywords of layer l's cell for Lobacheva et al.'s gates in ``gates``: ``g`` (its
    preactivation gates) and ``weight_masks``; none where the model has no such gates."""
    kw = {}
    if "preact" in gates:
        kw["g"] = gates["preact"][l]
    if "weights" in gates:
        keys = get_cell(config.cell).MATRIX_KEYS
        kw["weight_masks"] = {key: gates["weights"][l * len(keys) + k] for k, key in enumerate(keys)}
    return kw


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

    ``gates``: checked gates (:func:`check_gates`); ``state0``: a list with each
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
    neurons = gates["neurons"]
    for l in range(L):
        if drop[l] is not None:
            x = x * drop[l]
        x, final, c = cell.forward(layers[l], x, neurons[l], neurons[l + 1], state0[l], **layer_gates(config, gates, l))
        caches.append(c if keep_caches else None)
        finals.append(final)
    return x, finals, (caches if keep_caches else None)


def backward(config, caches, d_x, drop, gates: dict):
    """Backpropagate ``d_x`` (T, B, n_L), the gradient at the last layer's raw outputs,
    through the stack.  Returns ``(layer_grads, d_z, d_s, d_lob, d_input)``: each layer's
    parameter gradients, its neuron-mask gradients (for ``gates.gate_grads``), the
    gradients of Lobacheva et al.'s gates in ``gates`` (``{"preact": [per layer],
    "weights": [per layer and matrix]}``, the families present) and the gradient at the
    stack's input (before layer 1's dropout)."""
    cell = get_cell(config.cell)
    L = config.n_layers
    layer_grads, d_z, d_s = [None] * L, [None] * L, [None] * L
    d_lob = {family: [] for family in ("preact", "weights") if family in gates}
    per_layer = [None] * L
    for l in reversed(range(L)):
        lg = cell.backward(d_x, None, caches[l])
        layer_grads[l] = {k: lg[k] for k in cell.PARAM_KEYS}
        d_z[l], d_s[l] = lg["z"], lg["s"]
        per_layer[l] = lg
        d_x = lg["x"] if drop[l] is None else lg["x"] * drop[l]
    if "preact" in d_lob:
        d_lob["preact"] = [per_layer[l]["g"] for l in range(L)]
    if "weights" in d_lob:
        d_lob["weights"] = [per_layer[l][key + "_mask"] for l in range(L) for key in cell.MATRIX_KEYS]
    return layer_grads, d_z, d_s, d_lob, d_x


__all__ = ["check_layers", "check_gates", "layer_gates", "dropout_masks", "forward", "backward"]
