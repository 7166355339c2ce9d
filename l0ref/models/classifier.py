"""The document classifier of Lobacheva et al. section 4.1: embedding -> stacked gated
cells -> the last state of each document -> a dense layer -> softmax over classes.

Shapes: vocabulary V, embedding e, hidden sizes n_1..n_L, C classes, B documents padded
to T steps.  The parameters are the language model's (``language.py``) with the output
layer over classes: ``out_W (C, n_L)``, ``out_b (C,)``; ``config.n_classes = C``.

Padding.  A batch holds documents of different lengths, right-padded (``data.labelled``):
``tokens (T, B)``, document b in ``tokens[:lengths[b], b]``.  The stack runs over all T
steps, and the classifier reads document b's state at its own last token,
``h_L[lengths[b] - 1, b]``.  A recurrence is causal, so that state depends on the
document's tokens alone, never on the padding after it; in the backward pass the
padded steps get a zero incoming gradient, and every product with it is an exact zero,
so they add nothing to any gradient either.  That is exact, not approximate: no state
update is masked and no cell needed to change (``tests/test_classifier.py`` checks that a
document gives the same loss, prediction and gradients padded in a batch as alone).

The loss is the mean cross-entropy over the batch's documents; the gates are the
language model's (every family: ``stack.check_gates``), dropout the same non-recurrent
masks, the output one read at each document's last token.
"""
from __future__ import annotations

import numpy as np

from ..cells._masks import reduce_to_mask
from .config import ModelConfig
from .language import (_embed_and_run, check_tokens, log_softmax, softmax_loss_backward, softmax_loss_forward,
                       stack_and_embedding_backward)


def check_lengths(lengths, tokens: np.ndarray) -> np.ndarray:
    """Document lengths (B,) as int64, each in [1, T] for ``tokens`` (T, B)."""
    T, B = tokens.shape
    lengths = np.asarray(lengths)
    if lengths.shape != (B,):
        raise ValueError(f"lengths has shape {lengths.shape}, expected ({B},) for tokens of shape {tokens.shape}")
    if not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
    if lengths.min() < 1 or lengths.max() > T:
        raise ValueError(f"lengths must lie in [1, {T}] (every document has a token, none runs past the batch), "
                         f"got [{lengths.min()}, {lengths.max()}]")
    return lengths.astype(np.int64, copy=False)


def check_labels(labels, config: ModelConfig, batch: int) -> np.ndarray:
    """Class ids (B,) as int64, each in [0, n_classes)."""
    labels = np.asarray(labels)
    if labels.shape != (batch,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids of shape ({batch},), got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= config.n_classes:
        raise ValueError(f"labels lie in [{labels.min()}, {labels.max()}], outside [0, {config.n_classes})")
    return labels.astype(np.int64, copy=False)


def _check_config(config: ModelConfig) -> None:
    if config.n_classes is None:
        raise ValueError("this model config is a language model (n_classes is None), not a classifier")


def last_states(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each document's output at its last token: ``x[lengths[b] - 1, b]``, (B, n) of (T, B, n)."""
    return x[lengths - 1, np.arange(x.shape[1])]


def forward(config: ModelConfig, params: dict, tokens, lengths, labels, gates=None, dropout: float = 0.0,
            rng: np.random.Generator | None = None):
    """Mean cross-entropy of the documents' ``labels`` (B,); tokens (T, B), lengths (B,).

    ``gates`` as in ``language.forward`` (sampled or test-time, or None for all ones).
    Returns ``(loss, cache)``."""
    _check_config(config)
    tokens = check_tokens(tokens, config.vocab_size)
    lengths = check_lengths(lengths, tokens)
    labels = check_labels(labels, config, tokens.shape[1])
    x, _, run = _embed_and_run(config, params, tokens, gates, None, dropout, rng, keep_caches=True)
    g, drop = run["gates"], run["drop"]
    L = config.n_layers
    h = last_states(x, lengths)                                   # (B, n_L)
    if drop[L] is not None:
        h = h * last_states(drop[L], lengths)
    hs = h * g["neurons"][L]                                      # the dense layer reads s_L * h_L
    loss, out_cache = softmax_loss_forward(hs, params["out_W"], params["out_b"], labels)
    cache = dict(run, tokens=tokens, lengths=lengths, labels=labels, config=config, params=params, h=h, hs=hs,
                 out=out_cache, T=x.shape[0])
    return loss, cache


def backward(cache: dict) -> dict:
    """Gradients of :func:`forward`'s loss: ``emb, layers, out_W, out_b`` like the
    parameters, and ``gates``, ``{family: [one array per group]}`` as the forward had them."""
    config, params = cache["config"], cache["params"]
    tokens, lengths, g, drop = cache["tokens"], cache["lengths"], cache["gates"], cache["drop"]
    L = config.n_layers
    T, B = tokens.shape
    d_hs, d_out_W, d_out_b = softmax_loss_backward(cache["out"], cache["hs"], params["out_W"], cache["labels"])
    grads = {"out_W": d_out_W, "out_b": d_out_b}
    s_L = g["neurons"][L]
    d_out_gate = reduce_to_mask(d_hs * cache["h"], s_L)
    d_h = d_hs * s_L
    if drop[L] is not None:
        d_h = d_h * last_states(drop[L], lengths)
    d_x = np.zeros((T, B, d_h.shape[1]), d_h.dtype)               # zero at every other step and at the padding
    d_x[lengths - 1, np.arange(B)] = d_h
    grads.update(stack_and_embedding_backward(cache, d_x, d_out_gate))
    return grads


def log_probs(config: ModelConfig, params: dict, tokens, lengths, gates=None) -> np.ndarray:
    """Evaluation forward: log-probabilities of the classes, (B, C).  No dropout; gates as
    in ``language.log_probs`` (None for a compact model, ``eval_gates`` for a full one)."""
    _check_config(config)
    tokens = check_tokens(tokens, config.vocab_size)
    lengths = check_lengths(lengths, tokens)
    x, _, run = _embed_and_run(config, params, tokens, gates, None, keep_caches=False)
    hs = last_states(x, lengths) * run["gates"]["neurons"][-1]
    return log_softmax(hs @ params["out_W"].T + params["out_b"])


__all__ = ["check_lengths", "check_labels", "last_states", "forward", "backward", "log_probs"]
