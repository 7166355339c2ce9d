"""Gate families and gate groups: what a gate is, where it acts, and what it costs.

Every gate of l0ref is a hard concrete gate (``hard_concrete.py``) with one parameter
``log_alpha``.  Gates come in *families*, one per place they act; a family has one or
more *groups*, each a vector of gates drawn and stored together:

=========  ===============================================  ==================  =============
family     acts on                                          groups              drawn
=========  ===============================================  ==================  =============
neurons    input and hidden units (Wen et al. Eq. 2)        emb, layer 1..L     per sequence
preact     gate preactivations, one per block and unit      layer 1..L          per sequence
           (Lobacheva et al.'s "G"; the cells' ``g``)
weights    single weights of W and U (RHN: W and R)         (layer, matrix)     per minibatch
           (Lobacheva et al.'s "W", Louizos et al.)
vocab      rows of the input embedding: words               one, (V,)           per sequence
=========  ===============================================  ==================  =============

Group noise is drawn once per sequence and kept over its time steps (a (B, size) sample);
weight gates once per minibatch, one sample for the whole batch: a per-sequence sample
would be B copies of every matrix (B x 4n(m + n) numbers per layer), and the masked
products could no longer share one matrix across the batch.  Every model has the neuron
gates (the others are optional and come in this table's order); the vocabulary gates
act on the embedding's rows only (a pruned word's embedding is the zero vector; the
softmax keeps every word).  A model's ``log_alpha`` is a dict ``{family: [one array per group]}``, and a
group's :attr:`GateGroup.path` names its array in the parameter tree
(``log_alpha.neurons.1``).  Everything that treats gates differently from weights asks
the groups: the optimizer (no weight decay, their own learning-rate scale), the
parameter checks (shapes), compaction (test-time values), the penalty (each family's
share of the expected number of nonzero weights).

**Adding a family** means a module beside ``neurons.py`` with its sampling and
gradient chain, a :class:`GateFamily` registered in :data:`FAMILIES` below, its masks
taken by the cells, and its factor in ``penalties/expected_l0.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import neurons

#: Where the gates' parameters sit in a model's parameter tree.
PARAMS_KEY = "log_alpha"


@dataclass(frozen=True)
class GateGroup:
    """One vector of gates: its family, its index in the family's list, a readable name,
    its shape, what it multiplies and how often it is drawn."""

    family: str
    index: int
    name: str
    shape: tuple
    multiplies: str
    drawn: str = "per sequence"   #: PER_SEQUENCE or PER_MINIBATCH

    @property
    def path(self) -> str:
        """The dotted name of its ``log_alpha`` array in the parameter tree."""
        return f"{PARAMS_KEY}.{self.family}.{self.index}"


@dataclass(frozen=True)
class GateFamily:
    """A kind of gate: how its groups follow from a model config."""

    name: str
    acts_on: str
    groups: Callable[[object], list]   #: config -> [GateGroup, ...]


#: Drawn once per sequence, shape (B,) + group shape, or once per minibatch, the group's shape.
PER_SEQUENCE, PER_MINIBATCH = "per sequence", "per minibatch"


def _neuron_groups(config) -> list[GateGroup]:
    """Group 0 gates the stack's input (the embedding's columns, layer 1's z); group l
    the hidden units of layer l (its s, layer l + 1's z, or the softmax's input)."""
    sizes = neurons.group_sizes(config.emb_size, config.hidden_sizes)
    L = len(sizes) - 1
    out = [GateGroup("neurons", 0, "embedding", (sizes[0],), "the columns of layer 1's W (z)")]
    for l in range(1, L + 1):
        reader = f"the columns of layer {l + 1}'s W (z)" if l < L else "the softmax's input"
        out.append(GateGroup("neurons", l, f"layer {l}", (sizes[l],),
                             f"the rows of layer {l}'s gate blocks and the columns of its recurrent "
                             f"weights (s), and {reader}"))
    return out


def _lobacheva_cell(config, family: str):
    """The cell module, if it has Lobacheva et al.'s gates (``preact_size``, ``MATRIX_KEYS``)."""
    from ..cells import get_cell
    cell = get_cell(config.cell)
    if not (hasattr(cell, "preact_size") and hasattr(cell, "MATRIX_KEYS")):
        raise ValueError(f"cell {config.cell!r} has no {family} gates (it lacks preact_size / MATRIX_KEYS)")
    return cell


def _preact_groups(config) -> list[GateGroup]:
    """Group l - 1 gates the preactivations of layer l: the cell's ``g``, one per gate
    block and unit (LSTM 4n, GRU 3n, RHN 2n per micro-step)."""
    cell = _lobacheva_cell(config, "preact")
    return [GateGroup("preact", l, f"layer {l + 1}", (cell.preact_size(n, **config.cell_options),),
                      f"the preactivations of layer {l + 1}'s gate blocks (g)")
            for l, n in enumerate(config.hidden_sizes)]


def _weight_groups(config) -> list[GateGroup]:
    """One group per layer and matrix (``cell.MATRIX_KEYS``), of that matrix's shape;
    group ``l * K + k`` is layer l + 1's k-th matrix."""
    cell = _lobacheva_cell(config, "weights")
    out = []
    for l, (m, n) in enumerate(config.layer_sizes):
        shapes = cell.param_shapes(m, n, **config.cell_options)
        for key in cell.MATRIX_KEYS:
            out.append(GateGroup("weights", len(out), f"layer {l + 1} {key}", tuple(shapes[key]),
                                 f"the weights of layer {l + 1}'s {key}", PER_MINIBATCH))
    return out


def _vocab_groups(config) -> list[GateGroup]:
    return [GateGroup("vocab", 0, "vocabulary", (config.vocab_size,), "the rows of the embedding (words)")]


#: The registered families, by name, in their canonical order.
FAMILIES: dict[str, GateFamily] = {
    "neurons": GateFamily("neurons", "input and hidden units (Wen et al. Eq. 2)", _neuron_groups),
    "preact": GateFamily("preact", "gate preactivations (Lobacheva et al.)", _preact_groups),
    "weights": GateFamily("weights", "single weights of the recurrent layers (Louizos et al.)", _weight_groups),
    "vocab": GateFamily("vocab", "rows of the input embedding: words (Lobacheva et al.)", _vocab_groups),
}


def canonical_families(names) -> tuple:
    """``names`` checked (known, no repeats, the neuron gates among them) and put in the
    order of :data:`FAMILIES`, so that one set of families is one model."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    for name in names:
        get_family(name)
    if len(set(names)) != len(names):
        raise ValueError(f"gate families {names} name one family twice")
    if "neurons" not in names:
        raise ValueError(f"gate families {names} lack 'neurons': every model has the neuron gates "
                         f"(the others are added to them)")
    return tuple(n for n in FAMILIES if n in names)


def get_family(name: str) -> GateFamily:
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown gate family {name!r}; known: {sorted(FAMILIES)}") from None


def groups(config) -> list[GateGroup]:
    """Every gate group of a model, family by family in the config's order."""
    return [g for name in config.gate_families for g in get_family(name).groups(config)]


#: The initial mean log_alpha of the families beyond the neuron gates: open (test-time gate
#: 1, and 80% of the samples exactly 1), so that their noise starts small.  At Wen et al.'s
#: N(1, 0.1) every weight, gate and word is multiplied by a sample of mean 0.73 from the first
#: step, and on the embedded corpus the embedding's columns closed within 4 epochs (Adam)
#: or layer 1 within 6 (SGD) (docs/structure.md).
EXTRA_MEAN = 3.0


def init_params(config, rng: np.random.Generator, *, mean: float = 1.0, std: float = 0.1,
                   drop_rate: float | None = None, dtype=np.float64, extra_mean: float | None = EXTRA_MEAN) -> dict:
    """Initial ``log_alpha`` of every group: ``{family: [array per group]}``
    (:func:`neurons.init_log_alpha` draws them, family by family in the config's order):
    the neuron gates around ``mean``, the other families around ``extra_mean`` (None:
    ``mean`` too)."""
    out = {}
    for name in config.gate_families:
        shapes = [g.shape for g in get_family(name).groups(config)]
        m = mean if name == "neurons" or extra_mean is None else extra_mean
        out[name] = neurons.init_log_alpha(shapes, rng, drop_rate=drop_rate, mean=m, std=std, dtype=dtype)
    return out


def _family_groups(config) -> dict:
    return {name: get_family(name).groups(config) for name in config.gate_families}


def sample_shape(group: GateGroup, batch: int) -> tuple:
    """The shape of one step's samples of a group: (batch,) + its shape if drawn per
    sequence, its shape if drawn per minibatch."""
    return ((batch,) if group.drawn == PER_SEQUENCE else ()) + group.shape


def draw_uniforms(config, log_alpha: dict, batch: int, rng: np.random.Generator) -> dict:
    """One uniform draw per gate sample: ``{family: [array per group]}``, (batch,) + shape
    for the groups drawn per sequence, the group's shape for those drawn per minibatch.
    Family by family in the config's order (the neuron gates first, as they always were)."""
    from .. import hard_concrete as hc
    out = {}
    for name, groups_ in _family_groups(config).items():
        out[name] = [hc.uniform(rng, sample_shape(g, batch), la.dtype)
                     for g, la in zip(groups_, log_alpha[name])]
    return out


def sample_gates(log_alpha: dict, uniforms: dict) -> dict:
    """Hard concrete samples (Eq. 8) of every group, of the uniforms' shapes."""
    from .. import hard_concrete as hc
    return {name: [hc.sample(la, u) for la, u in zip(log_alpha[name], uniforms[name])] for name in log_alpha}


def eval_gates(log_alpha: dict) -> dict:
    """The test-time gates (Eq. 10, 11) of every group, of the group's shape."""
    return {name: neurons.deterministic_gates(las) for name, las in log_alpha.items()}


def fixed_gates(config, log_alpha: dict, batch: int) -> dict:
    """The test-time gates in the shapes of a training step's samples: the same for every
    sequence of the batch (fine-tuning a fixed structure, ``training/step.py``)."""
    out = {}
    for name, groups_ in _family_groups(config).items():
        test = neurons.deterministic_gates(log_alpha[name])
        out[name] = [np.broadcast_to(z, sample_shape(g, batch))
                     for g, z in zip(groups_, test)]
    return out


def open_gates(config, log_alpha: dict, batch: int) -> dict:
    """Every gate at 1, in the shapes of a training step's samples: the unpruned network
    (training it before it is pruned, ``TrainConfig.dense_start``)."""
    return {name: [np.ones(sample_shape(g, batch), dtype=la.dtype) for g, la in zip(groups_, log_alpha[name])]
            for name, groups_ in _family_groups(config).items()}


def log_alpha_grads(log_alpha: dict, uniforms: dict, d_gates: dict) -> dict:
    """Chain the gate gradients through the samples: ``sum over draws of d_gate * dz/dlog_alpha``."""
    from .. import hard_concrete as hc
    out = {}
    for name, las in log_alpha.items():
        out[name] = [_sum_to(np.asarray(d) * hc.sample_grad(la, u), la.shape)
                     for la, u, d in zip(las, uniforms[name], d_gates[name])]
    return out


def log_alpha_grads_test(log_alpha: dict, d_gates: dict) -> dict:
    """Chain the gate gradients through the test-time gates (Eq. 10, 11)."""
    from .. import hard_concrete as hc
    return {name: [_sum_to(np.asarray(d) * hc.deterministic_grad(la), la.shape) for la, d in zip(las, d_gates[name])]
            for name, las in log_alpha.items()}


def _sum_to(d: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum the leading (per-sequence) axes of ``d`` away, down to ``shape``."""
    return d.reshape((-1,) + tuple(shape)).sum(axis=0)


def check_log_alpha(config, log_alpha) -> None:
    """``ValueError`` unless ``log_alpha`` has exactly the config's families, and every
    group an array of its shape."""
    if not isinstance(log_alpha, dict) or set(log_alpha) != set(config.gate_families):
        got = sorted(log_alpha) if isinstance(log_alpha, dict) else type(log_alpha).__name__
        raise ValueError(f"log_alpha has gate families {got}, the model has {sorted(config.gate_families)}")
    for name in config.gate_families:
        want = [g.shape for g in get_family(name).groups(config)]
        got = [np.shape(a) for a in log_alpha[name]]
        if got != want:
            raise ValueError(f"log_alpha.{name} groups have shapes {got}, expected {want}")


__all__ = ["PARAMS_KEY", "PER_SEQUENCE", "PER_MINIBATCH", "GateGroup", "GateFamily", "FAMILIES", "get_family", "fixed_gates", "sample_shape",
           "canonical_families", "groups", "init_params", "check_log_alpha", "draw_uniforms", "sample_gates",
           "eval_gates", "log_alpha_grads", "log_alpha_grads_test"]
