"""What is learned: the data of an epoch, the loss and its gradients, the evaluation.

The training loop (``loop.py``) and the step (``step.py``) know nothing of words: they
ask a task.  :class:`LanguageModeling` is the language model of Wen et al. section 4.1:
truncated BPTT over ``batch_size`` parallel streams, the recurrent state carried from
one window to the next within an epoch, validation perplexity with test-time gates.
"""
from __future__ import annotations

import math

import numpy as np

from .. import data as data_mod
from .. import models


def lm_loss_and_grads(model_config, params, inputs, targets, gates, state0, dropout, rng):
    """Mean cross-entropy per token of one window and its gradients (``models.language``):
    ``(loss, final_states, grads)``, ``grads["gates"]`` the gates' gradients, ``{family: [...]}``."""
    loss, finals, cache = models.forward(model_config, params, inputs, targets, gates, state0=state0,
                                         dropout=dropout, rng=rng)
    return loss, finals, models.backward(cache)


class LanguageModeling:
    """Next-token prediction on a token stream ``train_ids`` (and ``valid_ids`` to evaluate)."""

    carries_state = True   #: the final states of a window start the next (truncated BPTT)
    loss_and_grads = staticmethod(lm_loss_and_grads)

    def __init__(self, train_ids, valid_ids=None):
        self.train_ids = np.asarray(train_ids)
        self.valid_ids = None if valid_ids is None or np.size(valid_ids) < 2 else np.asarray(valid_ids)

    def batches(self, config) -> list:
        """The windows ``(inputs, targets)`` of one epoch, (bptt, batch_size) each, in order."""
        batched = data_mod.batchify(self.train_ids, config.batch_size)
        return list(data_mod.windows(batched, config.bptt))

    def valid_metrics(self, model_config, params, config) -> dict:
        """``valid_loss`` and ``valid_ppl`` with test-time gates (None without validation text)."""
        if self.valid_ids is None:
            return {"valid_loss": None, "valid_ppl": None}
        from .evaluate import evaluate
        nll = evaluate(model_config, params, self.valid_ids, batch_size=config.eval_batch_size, bptt=config.bptt,
                       gates=models.eval_gates(params))
        return {"valid_loss": nll, "valid_ppl": math.exp(min(nll, 50))}


__all__ = ["LanguageModeling", "lm_loss_and_grads"]
