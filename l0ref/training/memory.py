"""What a training run needs in memory, estimated before anything is allocated.

A model whose arrays cannot fit is refused with the numbers (``l0ref train --hidden
200000`` asks for hundreds of GiB) instead of failing half-way with a traceback.  The
estimate counts the parameters, their gradients and the optimizer's buffers, and the
largest activations of one step: the (T B, V) logits with their gradient, and per layer
the cell's cache, about 4 G + 4 numbers per unit, step and sequence.
"""
from __future__ import annotations

import os

import numpy as np

from ..cells import get_cell, layer_param_count
from .config import DTYPES


def parameter_count(model_config) -> int:
    """Weights and biases of a model of ``model_config`` (gates included)."""
    cell = get_cell(model_config.cell)
    V, e, hs = model_config.vocab_size, model_config.emb_size, model_config.hidden_sizes
    layers = sum(layer_param_count(cell, m, n, model_config.cell_options) for m, n in model_config.layer_sizes)
    K = model_config.n_outputs
    return V * e + layers + K * hs[-1] + K + sum(model_config.group_sizes)


def estimate_bytes(model_config, config, steps: int | None = None) -> int:
    """Bytes a training run of ``model_config`` with ``config`` needs, about; ``steps`` the
    unrolled length of a batch (default ``config.bptt``; a classifier's longest document)."""
    itemsize = np.dtype(DTYPES[config.dtype]).itemsize
    P = parameter_count(model_config)
    buffers = {"adam": 2, "sgd": 1 if config.momentum > 0 else 0}[config.optimizer]
    N = (config.bptt if steps is None else int(steps)) * config.batch_size
    G = get_cell(model_config.cell).BLOCKS
    activations = 2 * N * model_config.n_outputs + sum(N * (4 * G + 4) * n for n in model_config.hidden_sizes)
    return int(itemsize * ((2 + buffers) * P + activations))


def available_bytes() -> int | None:
    """Memory available to a new allocation (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(model_config, config, steps: int | None = None) -> int:
    """``ValueError`` with the numbers when the run cannot fit in the available memory;
    returns the estimate."""
    need = estimate_bytes(model_config, config, steps)
    have = available_bytes()
    if have is not None and need > have:
        raise ValueError(f"the model needs about {need / 2 ** 30:.1f} GiB ({parameter_count(model_config):,} "
                         f"parameters, {config.dtype}, {config.optimizer}), and {have / 2 ** 30:.1f} GiB are "
                         f"available; choose smaller --emb/--hidden/--batch-size or a smaller vocabulary")
    return need


__all__ = ["parameter_count", "estimate_bytes", "available_bytes", "check_fits"]
