"""What each array of a model's parameter tree is: a weight matrix, a bias or a gate.

The optimizer decays weight matrices only and scales the gates' learning rate; parameter
counts leave the gates out.  Gates are whatever the config's gate groups name
(``gates.groups``); every other array with two or more axes is a weight matrix, the rest
are biases.
"""
from __future__ import annotations

import numpy as np

from .. import gates as gates_mod
from ..tree import walk

WEIGHT, BIAS, GATE = "weight", "bias", "gate"


def roles(config, params) -> list[str]:
    """The role of every leaf of ``params``, in ``tree.walk`` order."""
    gate_paths = {g.path for g in gates_mod.groups(config)}
    return [GATE if name in gate_paths else (WEIGHT if np.ndim(a) >= 2 else BIAS) for name, a in walk(params)]


def n_params(config, params) -> int:
    """Number of weights and biases (the gates' ``log_alpha`` left out)."""
    return int(sum(np.size(a) for (_, a), r in zip(walk(params), roles(config, params)) if r != GATE))


__all__ = ["WEIGHT", "BIAS", "GATE", "roles", "n_params"]
