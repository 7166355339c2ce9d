"""Gate families and gate groups: what a gate is, where it acts, and what it costs.

Every gate of l0ref is a hard concrete gate (``hard_concrete.py``) with one parameter
``log_alpha``.  Gates come in *families*, one per place they act; a family has one or
more *groups*, each a vector of gates drawn and stored together:

=========  ===============================================  ==================  ===========
family     acts on                                          groups              drawn
=========  ===============================================  ==================  ===========
neurons    input and hidden units (Wen et al. Eq. 2)        emb, layer 1..L     per sequence
=========  ===============================================  ==================  ===========

(The gate-preactivation, weight and vocabulary gates of Lobacheva et al. are the next
rows.)  A model's ``log_alpha`` is a dict ``{family: [one array per group]}``, and a
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
    drawn: str = "per sequence"

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


#: The registered families, by name.
FAMILIES: dict[str, GateFamily] = {
    "neurons": GateFamily("neurons", "input and hidden units (Wen et al. Eq. 2)", _neuron_groups),
}


def get_family(name: str) -> GateFamily:
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown gate family {name!r}; known: {sorted(FAMILIES)}") from None


def groups(config) -> list[GateGroup]:
    """Every gate group of a model, family by family in the config's order."""
    return [g for name in config.gate_families for g in get_family(name).groups(config)]


def init_params(config, rng: np.random.Generator, *, mean: float = 1.0, std: float = 0.1,
                   drop_rate: float | None = None, dtype=np.float64) -> dict:
    """Initial ``log_alpha`` of every group: ``{family: [array per group]}``
    (:func:`neurons.init_log_alpha` draws them)."""
    out = {}
    for name in config.gate_families:
        sizes = [g.shape[0] for g in get_family(name).groups(config)]
        out[name] = neurons.init_log_alpha(sizes, rng, drop_rate=drop_rate, mean=mean, std=std, dtype=dtype)
    return out


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


__all__ = ["PARAMS_KEY", "GateGroup", "GateFamily", "FAMILIES", "get_family", "groups", "init_params",
           "check_log_alpha"]
