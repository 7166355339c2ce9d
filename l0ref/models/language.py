"""The language model of Wen et al. section 4.1: embedding -> stacked gated cells -> softmax.

Shapes: vocabulary V, embedding size e, hidden sizes n_1..n_L, T steps, B streams.
Parameters live in one dict::

    params = {
        "emb":       (V, e)          word embedding
        "layers":    [dict, ...]     one parameter dict per recurrent layer (the cell's own keys)
        "out_W":     (V, n_L)        softmax weights
        "out_b":     (V,)            softmax bias
        "log_alpha": {"neurons": [(e,), (n_1,), ..., (n_L,)]}   hard concrete gates, by family
    }

Gates (``docs/design.md`` section 2; ``gates/``): group 0 gates the embedding's columns
(layer 1's z), group l gates the hidden units of layer l (layer l's s and layer
l + 1's z), and the output layer reads ``gates[L] * h_L``.  A gate array is (size,)
(one for the batch, e.g. test-time gates) or (B, size) (one per sequence).

Dropout (Zaremba et al. 2014, as in the paper's setting) acts on the non-recurrent
connections only: on the embedding output, between layers, and before the softmax;
inverted dropout with a fresh mask per time step, sequence and unit.
"""
from __future__ import annotations

import numpy as np

from .. import gates as gates_mod
from ..cells import get_cell
from ..cells._masks import check_dtype, reduce_to_mask, uniform
from . import stack
from .config import ModelConfig
from .roles import n_params
from ..tree import leaves


def init_params(config: ModelConfig, rng: np.random.Generator, dtype=np.float32,
                init_range: float | None = None, log_alpha_mean: float = 1.0, log_alpha_extra: float | None = 3.0,
                log_alpha_std: float = 0.1, drop_rate: float | None = None) -> dict:
    """Random parameters: Uniform(-init_range, init_range) everywhere if given (the paper's
    RHN setting uses 0.08), else PyTorch's defaults (embedding N(0, 1) scaled to U(-0.1, 0.1)
    as in the PyTorch word-LM example, cells U(-1/sqrt(n), 1/sqrt(n)), softmax U(-0.1, 0.1)
    with zero bias); ``log_alpha`` from ``gates.init_params`` (drawn last)."""
    cell = get_cell(config.cell)
    dtype = check_dtype(dtype)
    V, e = config.vocab_size, config.emb_size
    k = 0.1 if init_range is None else float(init_range)
    layers, m = [], e
    for n in config.hidden_sizes:
        layers.append(cell.init_params(m, n, rng, dtype, init_range=init_range, **config.cell_options))
        m = n
    return {
        "emb": uniform(rng, k, (V, e), dtype),
        "layers": layers,
        "out_W": uniform(rng, k, (config.n_outputs, m), dtype),      # (V, n_L), or (classes, n_L)
        "out_b": np.zeros(config.n_outputs, dtype),
        "log_alpha": gates_mod.init_params(config, rng, drop_rate=drop_rate, mean=log_alpha_mean, extra_mean=log_alpha_extra,
                                           std=log_alpha_std, dtype=dtype),
    }


def check_params(config: ModelConfig, params: dict, *, gates: bool | None = None) -> np.dtype:
    """Check that ``params`` fits ``config`` (every shape, every value finite); returns the
    model's dtype.  ``gates``: True requires the gates' ``log_alpha``, False forbids it (a
    compact model), None accepts either."""
    if not isinstance(params, dict):
        raise ValueError(f"model parameters must be a dict, got {type(params).__name__}")
    for key in ("emb", "layers", "out_W", "out_b"):
        if key not in params:
            raise ValueError(f"model parameters lack {key!r}")
    V, e, hs = config.vocab_size, config.emb_size, config.hidden_sizes
    K = config.n_outputs
    expect = {"emb": (V, e), "out_W": (K, hs[-1]), "out_b": (K,)}
    for key, shape in expect.items():
        if np.shape(params[key]) != shape:
            raise ValueError(f"parameter {key} has shape {np.shape(params[key])}, expected {shape}")
        if not np.all(np.isfinite(params[key])):
            raise ValueError(f"parameter {key} contains NaN or inf")
    stack.check_layers(config, params["layers"])
    has_gates = gates_mod.PARAMS_KEY in params
    if gates is True and not has_gates:
        raise ValueError(f"model parameters lack the gates ({gates_mod.PARAMS_KEY!r})")
    if gates is False and has_gates:
        raise ValueError(f"a compact model has no gates, but the parameters have {gates_mod.PARAMS_KEY!r}")
    extra = sorted(set(params) - {"emb", "layers", "out_W", "out_b", gates_mod.PARAMS_KEY})
    if extra:
        raise ValueError(f"unexpected model parameters {extra}")
    if has_gates:
        gates_mod.check_log_alpha(config, params[gates_mod.PARAMS_KEY])
        for g in gates_mod.groups(config):
            if not np.all(np.isfinite(params[gates_mod.PARAMS_KEY][g.family][g.index])):
                raise ValueError(f"parameter {g.path} contains NaN or inf")
    dtypes = {np.asarray(a).dtype for a in leaves(params)}
    if len(dtypes) != 1:
        raise ValueError(f"model parameters have mixed dtypes {sorted(map(str, dtypes))}")
    return np.asarray(params["emb"]).dtype


def neuron_log_alpha(params: dict) -> list[np.ndarray]:
    """The ``log_alpha`` of the neuron gate groups, ``[(e,), (n_1,), ..., (n_L,)]``."""
    try:
        return params[gates_mod.PARAMS_KEY]["neurons"]
    except (KeyError, TypeError):
        raise ValueError("the parameters have no neuron gates (a compact model has none)") from None


def inference_gates(params: dict) -> list[np.ndarray]:
    """The test-time neuron gates (Eq. 10, 11) of a full model, one (size,) vector per group
    (:func:`eval_gates` gives every family's)."""
    return gates_mod.deterministic_gates(neuron_log_alpha(params))


def eval_gates(params: dict) -> dict:
    """The test-time gates (Eq. 10, 11) of every family of a full model, ``{family: [array
    per group]}``: what ``forward`` and ``log_probs`` take to evaluate it."""
    try:
        log_alpha = params[gates_mod.PARAMS_KEY]
    except (KeyError, TypeError):
        raise ValueError("the parameters have no neuron gates (a compact model has none)") from None
    return gates_mod.eval_gates(log_alpha)


def embed(emb: np.ndarray, tokens: np.ndarray, gates: dict) -> np.ndarray:
    """The stack's input (T, B, e): ``emb[tokens]``, each row times its word's vocabulary
    gate where the model has them (``v[w] * emb[w]``: a pruned word embeds as zeros)."""
    x = emb[tokens]
    if "vocab" in gates:
        x = x * _word_gates(gates["vocab"][0], tokens)[..., None]
    return x


def _word_gates(v: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """The vocabulary gate of every token (T, B): ``v[w]``, or ``v[b, w]`` per sequence."""
    return v[tokens] if v.ndim == 1 else v[np.arange(tokens.shape[1])[None, :], tokens]


def embed_backward(emb: np.ndarray, tokens: np.ndarray, gates: dict, d_x: np.ndarray):
    """Adjoint of :func:`embed`: ``(d_emb (V, e), d_vocab)``, the latter of the vocabulary
    gate's shape (None without vocabulary gates)."""
    T, B = tokens.shape
    d_emb = np.zeros_like(emb)
    if "vocab" not in gates:
        np.add.at(d_emb, tokens.reshape(-1), d_x.reshape(T * B, -1))
        return d_emb, None
    v = gates["vocab"][0]
    np.add.at(d_emb, tokens.reshape(-1), (d_x * _word_gates(v, tokens)[..., None]).reshape(T * B, -1))
    d_word = np.einsum("tbe,tbe->tb", d_x, emb[tokens])            # dL/d v[w] at every position
    d_v = np.zeros_like(v)
    if v.ndim == 1:
        np.add.at(d_v, tokens.reshape(-1), d_word.reshape(-1))
    else:
        np.add.at(d_v, (np.broadcast_to(np.arange(B)[None, :], (T, B)).reshape(-1), tokens.reshape(-1)),
                  d_word.reshape(-1))
    return d_emb, d_v


def check_tokens(tokens, vocab_size: int, name: str = "tokens") -> np.ndarray:
    """Token ids as an int array (T, B) with every id in [0, vocab_size)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise ValueError(f"{name} has shape {tokens.shape}, expected (T, B) with T, B >= 1")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{name} must be integer token ids, got dtype {tokens.dtype}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"{name} has ids in [{tokens.min()}, {tokens.max()}], outside [0, {vocab_size})")
    return tokens


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax over the last axis, stable for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_loss_forward(hs: np.ndarray, out_W: np.ndarray, out_b: np.ndarray, targets: np.ndarray):
    """Softmax output layer and mean cross-entropy over N positions.

    hs (N, n) is what the output layer reads (``s_L * h_L``), targets (N,).  The
    (N, V) logits are the largest array of a training step, so they are shifted
    and exponentiated in place and kept *unnormalized*: ``softmax = e / sums``.
    Returns ``(loss, (e, sums))``.
    """
    N = targets.shape[0]
    e = hs @ out_W.T                                             # (N, V) logits
    e += out_b
    e -= e.max(axis=1, keepdims=True)
    picked = e[np.arange(N), targets]                            # shifted logit of each target
    np.exp(e, out=e)
    sums = e.sum(axis=1)                                         # (N,)
    loss = float(np.mean(np.log(sums) - picked))
    return loss, (e, sums)


def softmax_loss_backward(cache, hs: np.ndarray, out_W: np.ndarray, targets: np.ndarray):
    """Gradients of :func:`softmax_loss_forward` with respect to hs, out_W and out_b.

    ``d_logits = (e / sums - onehot(targets)) / N`` is never formed: each product
    with it is taken as a product with ``e`` (rows scaled on the small side) minus
    the one-hot part, gathered or scattered by target.  Returns ``(d_hs, d_out_W, d_out_b)``.
    """
    e, sums = cache
    N, V = e.shape
    row = (1.0 / (sums * N)).astype(e.dtype)                     # (N,) softmax normalizer and 1/N
    d_out_W = e.T @ (hs * row[:, None])                          # (V, n)
    np.subtract.at(d_out_W, targets, hs / N)
    d_out_b = e.T @ row - np.bincount(targets, minlength=V).astype(e.dtype) / N
    d_hs = (e @ out_W) * row[:, None] - out_W[targets] / N       # (N, n)
    return d_hs, d_out_W, d_out_b


def _embed_and_run(config: ModelConfig, params: dict, tokens, gates, state0, dropout: float = 0.0,
                   rng: np.random.Generator | None = None, *, keep_caches: bool):
    """What :func:`forward` and :func:`log_probs` share: check the parameters, embed the
    checked ``tokens`` and run the stack (``stack.forward``).  Returns ``(x, finals, run)``:
    the last layer's raw outputs (T, B, n_L), each layer's final state, and ``run``, a dict
    of the checked ``gates``, the dropout masks ``drop`` (None where off; ``drop[L]`` is
    the softmax input's) and the cells' ``caches`` (None unless ``keep_caches``)."""
    dtype = check_params(config, params)
    T, B = tokens.shape
    g = stack.check_gates(config, gates, B, dtype)
    drop = stack.dropout_masks(config, (T, B), dropout, rng, dtype)
    x = embed(params["emb"], tokens, g)                          # (T, B, e)
    x, finals, caches = stack.forward(config, params["layers"], x, g, state0, drop, keep_caches=keep_caches)
    return x, finals, dict(gates=g, drop=drop, caches=caches)


def forward(config: ModelConfig, params: dict, tokens, targets, gates=None, state0=None,
            dropout: float = 0.0, rng: np.random.Generator | None = None):
    """Mean cross-entropy of predicting ``targets`` from ``tokens``, both (T, B).

    ``gates``: ``{family: [array per group]}`` (sampled or test-time; ``stack.check_gates``),
    or the L + 1 neuron gate arrays alone, or None for all ones.
    ``state0``: a list with each layer's initial state (the cell's form) or None.
    Returns ``(loss, final_states, cache)``.
    """
    tokens = check_tokens(tokens, config.vocab_size)
    targets = check_tokens(targets, config.vocab_size, "targets")
    if targets.shape != tokens.shape:
        raise ValueError(f"targets have shape {targets.shape}, tokens {tokens.shape}")
    x, finals, run = _embed_and_run(config, params, tokens, gates, state0, dropout, rng, keep_caches=True)
    T, B = tokens.shape
    g, drop = run["gates"], run["drop"]
    L = config.n_layers
    h = x if drop[L] is None else x * drop[L]                   # (T, B, n_L)
    hs = h * g["neurons"][L]                                     # the output layer reads s_L * h_L
    loss, out_cache = softmax_loss_forward(hs.reshape(T * B, -1), params["out_W"], params["out_b"],
                                           targets.reshape(-1))
    cache = dict(run, tokens=tokens, targets=targets, config=config, params=params, h=h, hs=hs, out=out_cache)
    return loss, finals, cache


def backward(cache: dict) -> dict:
    """Gradients of the mean cross-entropy: ``emb, layers, out_W, out_b`` like the
    parameters, and ``gates``: ``{family: [one array per group]}`` for every family the
    forward had, each of the shape it was given."""
    config, params = cache["config"], cache["params"]
    tokens, targets, g, drop = cache["tokens"], cache["targets"], cache["gates"], cache["drop"]
    T, B = tokens.shape
    L = config.n_layers

    d_hs, d_out_W, d_out_b = softmax_loss_backward(cache["out"], cache["hs"].reshape(T * B, -1),
                                                   params["out_W"], targets.reshape(-1))
    grads = {"out_W": d_out_W, "out_b": d_out_b}
    d_hs = d_hs.reshape(T, B, -1)                                # (T, B, n_L)
    s_L = g["neurons"][L]
    d_out_gate = reduce_to_mask(d_hs * cache["h"], s_L)
    d_x = d_hs * s_L
    if drop[L] is not None:
        d_x = d_x * drop[L]
    grads.update(stack_and_embedding_backward(cache, d_x, d_out_gate))
    return grads


def stack_and_embedding_backward(cache: dict, d_x: np.ndarray, d_out_gate) -> dict:
    """What every model's backward shares below its head: from ``d_x`` (T, B, n_L), the
    gradient at the last layer's raw outputs, and ``d_out_gate``, the head's gradient
    with respect to the last neuron gate group, the gradients ``emb``, ``layers`` and
    ``gates`` (``{family: [...]}``) of a forward's ``cache``."""
    config, params, tokens, g = cache["config"], cache["params"], cache["tokens"], cache["gates"]
    layer_grads, d_z, d_s, d_lob, d_x = stack.backward(config, cache["caches"], d_x, cache["drop"], g)
    d_emb, d_vocab = embed_backward(params["emb"], tokens, g, d_x)
    gates = {"neurons": gates_mod.gate_grads(d_z, d_s, d_out_gate), **d_lob}
    if d_vocab is not None:
        gates["vocab"] = [d_vocab]
    return {"emb": d_emb, "layers": layer_grads, "gates": gates}


def log_probs(config: ModelConfig, params: dict, tokens, gates=None, state0=None):
    """Evaluation forward: log-probabilities of the next token, (T, B, V), and final states.

    No dropout.  With ``gates`` None all gates are one (a compact model, whose gates
    are folded into its weights); for a full model pass :func:`eval_gates`.
    """
    tokens = check_tokens(tokens, config.vocab_size)
    x, finals, run = _embed_and_run(config, params, tokens, gates, state0, keep_caches=False)
    return log_softmax((x * run["gates"]["neurons"][-1]) @ params["out_W"].T + params["out_b"]), finals


def cross_entropy(logp: np.ndarray, targets) -> float:
    """Mean negative log-likelihood of ``targets`` (T, B) under ``logp`` (T, B, V)."""
    targets = np.asarray(targets)
    return float(-np.take_along_axis(logp, targets[..., None], axis=-1).mean())


def layer_blocks(config: ModelConfig) -> list[tuple[int, int]]:
    """(G_W, G_U) of every layer (``cell.matrix_blocks``), for the expected-L0 counts."""
    cell = get_cell(config.cell)
    return [cell.matrix_blocks(**config.cell_options)] * config.n_layers


__all__ = ["ModelConfig", "init_params", "check_params", "check_tokens", "neuron_log_alpha", "inference_gates",
           "eval_gates", "embed", "embed_backward",
           "forward", "backward", "log_probs", "cross_entropy", "log_softmax", "n_params", "layer_blocks",
           "softmax_loss_forward", "softmax_loss_backward"]
