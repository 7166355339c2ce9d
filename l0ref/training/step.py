"""One training step (Wen et al. sections 3-4): sample gates, loss, penalty, clip, update;
while fine-tuning (``TrainConfig.finetune``), the same with the gates fixed; while the
unpruned network is trained first (``TrainConfig.dense_start``), with every gate open."""
from __future__ import annotations

import math

import numpy as np

from .. import gates as gates_mod
from ..tree import leaves
from .optim import add_weight_decay, update
from .tasks import lm_loss_and_grads


def train_step(state, inputs: np.ndarray, targets: np.ndarray, loss_and_grads=lm_loss_and_grads) -> dict:
    """One update on one window: sample gates, forward, backward, penalty, clip, update.

    ``inputs, targets`` are the task's arrays (token ids (T, B) for the language model,
    whose loss is the default ``loss_and_grads``).  Updates ``state.params`` and the
    optimizer buffers in place, replaces ``state.hidden`` with the window's final states
    and advances ``step``, ``opt_t`` and ``tokens_seen``; nothing else (no data position,
    no history, no I/O), so a benchmark can time exactly this.  Returns ``loss`` (the
    task's mean loss, without the penalty), ``penalty`` (lambda-weighted Eq. 7 term added
    to it), ``grad_norm`` (global, before clipping) and ``lr``.
    """
    mc, cfg, p = state.model_config, state.config, state.params
    B = inputs.shape[1]
    log_alpha = p[gates_mod.PARAMS_KEY]              # {family: [array per group]}
    families = gates_mod.families
    if state.fine_tuning:
        loss, finals, grads = _fixed_structure(state, inputs, targets, loss_and_grads)
        pen = 0.0
    elif state.dense_warmup:
        loss, finals, grads = _fixed_structure(state, inputs, targets, loss_and_grads, families.open_gates)
        pen = 0.0
    else:
        # Gates: hard concrete samples (Eq. 8), one per sequence (B, size) per group, or one
        # per minibatch for the weight gates (``gates/families.py``).
        u = families.draw_uniforms(mc, log_alpha, B, state.rng)
        g = families.sample_gates(log_alpha, u)
        loss, finals, grads = loss_and_grads(mc, p, inputs, targets, g, state.hidden, cfg.dropout, state.rng)
        d_log_alpha = families.log_alpha_grads(log_alpha, u, grads.pop("gates"))

        # The penalty and its gradient: Eq. 7 (with P(gate != 0) of Eq. 9; every gate family's
        # expected nonzero weights), or a size target's Lagrangian (``weights.py``).
        pen, d_pen = state.penalty_weights.penalty(mc, log_alpha, state.fraction)
        state.penalty_weights.after_step(mc, log_alpha, state.fraction)     # a controller's multipliers ascend
        grads[gates_mod.PARAMS_KEY] = {name: [(a + b).astype(state.dtype, copy=False)
                                              for a, b in zip(d_log_alpha[name], d_pen[name])]
                                       for name in log_alpha}

    g_leaves, p_leaves = leaves(grads), leaves(p)
    if len(g_leaves) != len(p_leaves):
        raise ValueError(f"gradient tree has {len(g_leaves)} arrays, parameters {len(p_leaves)}")

    # Global-norm clipping over every gradient, the gates' included.
    norm = math.sqrt(sum(float(np.vdot(a, a)) for a in g_leaves))
    if not math.isfinite(norm):
        if not (math.isfinite(pen) and all(np.all(np.isfinite(a)) for a in leaves(grads[gates_mod.PARAMS_KEY]))):
            raise FloatingPointError(f"the penalty or its gradient overflows at step {state.step}; lower lam1/lam2")
        raise FloatingPointError(f"gradient norm is {norm} at step {state.step}; lower the learning rate")
    if cfg.clip > 0 and norm > cfg.clip:
        scale = state.dtype(cfg.clip / norm)
        for a in g_leaves:
            a *= scale

    add_weight_decay(state, g_leaves, p_leaves)      # after clipping, as PyTorch's optimizers do
    update(state, p_leaves, g_leaves)
    state.hidden = finals
    state.step += 1
    state.tokens_seen += int(inputs.size)
    return {"loss": loss, "penalty": pen, "grad_norm": norm, "lr": state.lr}


def _fixed_structure(state, inputs, targets, loss_and_grads, gates=None):
    """Loss and gradients with every gate at its test-time value (Eq. 10, 11), the same
    for every sequence: the network that compaction keeps, trained as it is (or, with
    ``gates=families.open_gates``, every gate at 1: the unpruned network).  No penalty
    and no gradient for ``log_alpha`` (zeros; ``optim.update`` leaves the gates where they
    are while ``state.fine_tuning`` or ``state.dense_warmup``), so the structure cannot change."""
    mc, p, cfg = state.model_config, state.params, state.config
    log_alpha = p[gates_mod.PARAMS_KEY]
    g = (gates or gates_mod.families.fixed_gates)(mc, log_alpha, inputs.shape[1])
    loss, finals, grads = loss_and_grads(mc, p, inputs, targets, g, state.hidden, cfg.dropout, state.rng)
    grads.pop("gates")
    grads[gates_mod.PARAMS_KEY] = {name: [np.zeros_like(la) for la in las] for name, las in log_alpha.items()}
    return loss, finals, grads


__all__ = ["train_step"]
