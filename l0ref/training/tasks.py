"""What is learned: the data of an epoch, the loss and its gradients, the evaluation.

The training loop (``loop.py``) and the step (``step.py``) know nothing of words: they
ask a task.  :class:`LanguageModeling` is the language model of Wen et al. section 4.1:
truncated BPTT over ``batch_size`` parallel streams, the recurrent state carried from
one window to the next within an epoch, validation perplexity with test-time gates.
:class:`Classification` is Lobacheva et al.'s document classifier: batches of documents
of similar length (``data.labelled``), in an order shuffled anew every epoch (from the
seed and the epoch alone, so that a resumed run sees the same order), no state carried,
validation accuracy with test-time gates.

A task has ``carries_state``, ``loss_and_grads(model_config, params, inputs, targets,
gates, state0, dropout, rng) -> (loss, final_states, grads)``, ``batches(config, epoch)``
(the ``(inputs, targets)`` of one epoch; ``inputs`` (T, B) token ids) and
``valid_metrics(model_config, params, config, open_gates=False)`` (a dict for the history;
``open_gates``: every gate at 1, the unpruned network that a dense start trains).
"""
from __future__ import annotations

import math

import numpy as np

from .. import data as data_mod
from .. import models


def _eval_gates(params, open_gates: bool) -> dict:
    """The test-time gates of ``params``, or, with ``open_gates``, ones of their shapes."""
    g = models.eval_gates(params)
    return {name: [np.ones_like(a) for a in arrays] for name, arrays in g.items()} if open_gates else g


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

    def batches(self, config, epoch: int = 0) -> list:
        """The windows ``(inputs, targets)`` of one epoch, (bptt, batch_size) each, in order
        (the same every epoch)."""
        batched = data_mod.batchify(self.train_ids, config.batch_size)
        return list(data_mod.windows(batched, config.bptt))

    def valid_metrics(self, model_config, params, config, open_gates: bool = False) -> dict:
        """``valid_loss`` and ``valid_ppl`` with test-time gates, or every gate open (None
        without validation text)."""
        if self.valid_ids is None:
            return {"valid_loss": None, "valid_ppl": None}
        from .evaluate import evaluate
        nll = evaluate(model_config, params, self.valid_ids, batch_size=config.eval_batch_size, bptt=config.bptt,
                       gates=_eval_gates(params, open_gates))
        return {"valid_loss": nll, "valid_ppl": math.exp(min(nll, 50))}


def classify_loss_and_grads(model_config, params, inputs, targets, gates, state0, dropout, rng):
    """Mean cross-entropy of a batch of documents (``models.classifier``) and its gradients:
    ``(loss, None, grads)``; ``targets`` is ``(labels, lengths)``; no state is carried."""
    labels, lengths = targets
    loss, cache = models.classifier.forward(model_config, params, inputs, lengths, labels, gates, dropout=dropout,
                                            rng=rng)
    return loss, None, models.classifier.backward(cache)


class Classification:
    """One class per document: ``train`` and ``valid`` are ``data.labelled.Split``s."""

    carries_state = False
    loss_and_grads = staticmethod(classify_loss_and_grads)

    def __init__(self, train, valid=None):
        if len(train) == 0:
            raise ValueError("the training split has no documents")
        self.train = train
        self.valid = valid if valid is not None and len(valid) else None

    def batches(self, config, epoch: int = 0) -> list:
        """The batches ``(tokens (T, B), (labels (B,), lengths (B,)))`` of epoch ``epoch``:
        ``data.length_batches`` of the training documents, shuffled by
        ``Generator(PCG64([seed, epoch]))``."""
        rng = np.random.default_rng([config.seed, epoch])
        out = []
        for order in data_mod.length_batches(self.train.lengths, config.batch_size, rng):
            tokens, lengths = data_mod.pad(self.train.docs, order)
            out.append((tokens, (self.train.labels[order], lengths)))
        return out

    def valid_metrics(self, model_config, params, config, open_gates: bool = False) -> dict:
        """``valid_loss`` and ``valid_acc`` with test-time gates, or every gate open (None
        without validation documents)."""
        if self.valid is None:
            return {"valid_loss": None, "valid_acc": None}
        from .evaluate import evaluate_classifier
        r = evaluate_classifier(model_config, params, self.valid, batch_size=config.eval_batch_size,
                                gates=_eval_gates(params, open_gates))
        return {"valid_loss": r["loss"], "valid_acc": r["accuracy"]}


__all__ = ["Classification", "LanguageModeling", "classify_loss_and_grads", "lm_loss_and_grads"]
