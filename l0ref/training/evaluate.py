"""Evaluation: perplexity over a token stream, a classifier's accuracy, live neurons,
expected size, baselines."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .. import data as data_mod
from .. import gates as gates_mod
from .. import models
from .. import penalties
from ..cells import get_cell, layer_macs


def evaluate(model_config: models.ModelConfig, params: dict, ids: np.ndarray, *, batch_size: int = 10,
             bptt: int = 35, gates=None, log_probs_fn: Callable | None = None) -> float:
    """Mean negative log-likelihood per token of ``ids`` (L,), state carried across windows.

    ``gates`` are passed to ``models.log_probs`` (use ``models.eval_gates(params)`` for a
    full model, None for a compact one).  ``log_probs_fn(config, params, tokens, state0)``
    -> ``(logp, finals)`` replaces it (e.g. a kernel).  The batch size shrinks for short
    texts; every prediction of the batched streams counts once.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size < 2:
        raise ValueError(f"evaluation needs at least 2 tokens, got shape {ids.shape}")
    B = max(1, min(int(batch_size), ids.size // 2))
    batched = data_mod.batchify(ids, B)
    T = max(1, min(int(bptt), batched.shape[0] - 1))
    if log_probs_fn is None:
        def log_probs_fn(c, p, tokens, state0):
            return models.log_probs(c, p, tokens, gates=gates, state0=state0)
    total, count, state = 0.0, 0, None
    for inputs, targets in data_mod.windows(batched, T):
        logp, state = log_probs_fn(model_config, params, inputs, state)
        total += float(-np.take_along_axis(logp, targets[..., None], axis=-1).sum(dtype=np.float64))
        count += targets.size
    return total / count


def evaluate_classifier(model_config: models.ModelConfig, params: dict, split, *, batch_size: int = 64, gates=None,
                        log_probs_fn: Callable | None = None) -> dict:
    """Accuracy, mean cross-entropy and the confusion matrix of a classifier on ``split``
    (``data.labelled.Split``), in batches of similar length.

    ``gates`` as for :func:`evaluate`; ``log_probs_fn(config, params, tokens, lengths)`` ->
    (B, C) log-probabilities replaces ``models.classifier.log_probs`` (e.g. a kernel).
    ``confusion[i, j]`` counts documents of class i predicted as j.  Returns ``{"loss",
    "accuracy", "confusion", "predictions"}`` (predictions in the split's order)."""
    if len(split) == 0:
        raise ValueError("evaluation needs at least one document")
    if log_probs_fn is None:
        def log_probs_fn(c, p, tokens, lengths):
            return models.classifier.log_probs(c, p, tokens, lengths, gates)
    C = model_config.n_classes
    predictions = np.empty(len(split), np.int64)
    total = 0.0
    for order in data_mod.length_batches(split.lengths, max(1, int(batch_size))):
        tokens, lengths = data_mod.pad(split.docs, order)
        logp = log_probs_fn(model_config, params, tokens, lengths)
        total -= float(logp[np.arange(order.size), split.labels[order]].sum(dtype=np.float64))
        predictions[order] = np.argmax(logp, axis=1)
    confusion = np.zeros((C, C), np.int64)
    np.add.at(confusion, (split.labels, predictions), 1)
    return {"loss": total / len(split), "accuracy": float(np.mean(predictions == split.labels)),
            "confusion": confusion, "predictions": predictions}


def live_neurons(params: dict) -> list[int]:
    """Per neuron gate group (embedding, layer 1..L): neurons whose test-time gate (Eq. 10, 11)
    is nonzero (``gates.live_counts`` of the test-time gates)."""
    return gates_mod.live_counts(models.inference_gates(params))


def expected_size(model_config: models.ModelConfig, params: dict) -> dict:
    """Live neurons per group, their totals, and the expected number of nonzero weights
    of the recurrent stack (all gate blocks counted) against its full count."""
    cell = get_cell(model_config.cell)
    full = sum(sum(layer_macs(cell, m, n, model_config.cell_options)) for m, n in model_config.layer_sizes)
    return {
        "live": live_neurons(params),
        "sizes": list(model_config.group_sizes),
        "expected_nonzero": expected_nonzero(model_config, params),
        "recurrent_weights": int(full),
    }


def expected_nonzero(model_config: models.ModelConfig, params: dict) -> float:
    """The expected number of nonzero effective weights of the recurrent stack, every gate
    block and every gate family counted (``penalties``)."""
    log_alpha = params[gates_mod.PARAMS_KEY]
    if set(log_alpha) == {"neurons"}:
        return penalties.expected_nonzero_weights(log_alpha["neurons"], models.layer_blocks(model_config))
    return float(sum(penalties.expected_nonzero_all(model_config, log_alpha)))


def reference_perplexities(train_ids: np.ndarray, ids: np.ndarray, vocab_size: int) -> dict:
    """Perplexities of two baselines on ``ids``: uniform over the vocabulary, and the
    unigram distribution of ``train_ids`` (add-one smoothed so unseen ids stay finite)."""
    counts = np.bincount(np.asarray(train_ids), minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return {"uniform": float(vocab_size), "unigram": float(np.exp(-logp[np.asarray(ids)].mean()))}


__all__ = ["evaluate", "evaluate_classifier", "live_neurons", "expected_size", "reference_perplexities"]
