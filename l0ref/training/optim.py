"""The optimizers: SGD (with optional momentum) and Adam, in place on the parameter tree.

What each array is (``models.roles``) decides how it is treated: weight matrices are
decayed (L2, added after clipping as PyTorch's optimizers do), biases and gates are not;
the gates' learning rate is multiplied by ``log_alpha_lr_scale``, and is zero while the
run fine-tunes a fixed structure (``TrainState.fine_tuning``) or trains the unpruned
network first (``TrainState.dense_warmup``).  Under a size target the
gates' learning rate is not decayed (``TargetController.DECAY_GATE_LR``): the controller
holds the size until the last step, and gates frozen by the decay could not follow it.
"""
from __future__ import annotations

import numpy as np

from ..models.roles import GATE, WEIGHT, roles
from ..tree import leaves, map_tree


def init_opt(config, params: dict) -> dict:
    """Zeroed optimizer buffers: Adam's ``m`` and ``v``, SGD's ``momentum`` or nothing."""
    zeros = lambda: map_tree(np.zeros_like, params)  # noqa: E731
    if config.optimizer == "adam":
        return {"m": zeros(), "v": zeros()}
    if config.momentum > 0:
        return {"momentum": zeros()}
    return {}


def add_weight_decay(state, g_leaves: list, p_leaves: list) -> None:
    """``g += weight_decay * w`` for the weight matrices (not biases, not gates), in place."""
    cfg = state.config
    if cfg.weight_decay <= 0:
        return
    wd = state.dtype(cfg.weight_decay)
    for a, w, role in zip(g_leaves, p_leaves, roles(state.model_config, state.params)):
        if role == WEIGHT:
            a += wd * w


def update(state, p_leaves: list, g_leaves: list) -> None:
    """The optimizer step, in place on the parameters (the gradients are consumed)."""
    cfg = state.config
    state.opt_t += 1
    if state.dense_warmup:
        state.dense_steps += 1
    gate_lr = (state.lr if state.penalty_weights.DECAY_GATE_LR else cfg.lr) * cfg.log_alpha_lr_scale
    if state.fine_tuning or state.dense_warmup:
        gate_lr = 0.0
    lrs = [gate_lr if r == GATE else state.lr for r in roles(state.model_config, state.params)]
    dt = state.dtype
    if cfg.optimizer == "sgd":
        bufs = leaves(state.opt["momentum"]) if "momentum" in state.opt else [None] * len(p_leaves)
        mu = dt(cfg.momentum)
        for w, gr, buf, lr in zip(p_leaves, g_leaves, bufs, lrs):
            if buf is not None:
                buf *= mu
                buf += gr
                gr = buf.copy()
            gr *= dt(lr)
            w -= gr
        return
    # Adam (Kingma & Ba), bias-corrected; L2 decay already in the gradient as in torch.optim.Adam.
    # The gates' moments start when the gates start learning, after any dense start: their
    # bias correction counts from there (else their first steps would be several times lr).
    b1, b2 = cfg.adam_betas
    for w, gr, m, v, lr, role in zip(p_leaves, g_leaves, leaves(state.opt["m"]), leaves(state.opt["v"]), lrs,
                                     roles(state.model_config, state.params)):
        if role == GATE and state.dense_warmup:
            continue                   # no gradient, no update, moments still at zero
        t = state.opt_t - state.dense_steps if role == GATE else state.opt_t
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        m *= dt(b1)
        m += dt(1 - b1) * gr
        v *= dt(b2)
        gr *= gr
        gr *= dt(1 - b2)
        v += gr
        denom = np.sqrt(v / dt(c2))
        denom += dt(cfg.adam_eps)
        w -= dt(lr / c1) * m / denom


__all__ = ["init_opt", "add_weight_decay", "update"]
