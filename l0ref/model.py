"""The language model of Wen et al. section 4.1: embedding -> stacked gated cells -> softmax.

Shapes: vocabulary V, embedding size e, hidden sizes n_1..n_L, T steps, B streams.
Parameters live in one dict::

    params = {
        "emb":       (V, e)          word embedding
        "layers":    [dict, ...]     one parameter dict per recurrent layer (the cell's own keys)
        "out_W":     (V, n_L)        softmax weights
        "out_b":     (V,)            softmax bias
        "log_alpha": [(e,), (n_1,), ..., (n_L,)]   one hard concrete group per neuron group
    }

Gates (DESIGN.md section 2; ``gates.py``): group 0 gates the embedding's columns
(layer 1's z), group l gates the hidden units of layer l (layer l's s and layer
l + 1's z), and the output layer reads ``gates[L] * h_L``.  A gate array is (size,)
(one for the batch, e.g. test-time gates) or (B, size) (one per sequence).

Dropout (Zaremba et al. 2014, as in the paper's setting) acts on the non-recurrent
connections only: on the embedding output, between layers, and before the softmax;
inverted dropout with a fresh mask per time step, sequence and unit.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import numpy as np

from . import gates as gates_mod
from .cells import get_cell
from .cells._masks import reduce_to_mask


@dataclass(frozen=True)
class ModelConfig:
    """What a model is, apart from its numbers: cell name and sizes."""

    cell: str
    vocab_size: int
    emb_size: int
    hidden_sizes: tuple[int, ...]
    cell_options: dict = field(default_factory=dict)  # e.g. {"depth": 10} for the RHN

    def __post_init__(self):
        get_cell(self.cell)  # raises for an unknown name
        object.__setattr__(self, "hidden_sizes", tuple(int(n) for n in self.hidden_sizes))
        object.__setattr__(self, "cell_options", dict(self.cell_options))
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {self.vocab_size}")
        if self.emb_size < 0 or any(n < 0 for n in self.hidden_sizes):
            raise ValueError(f"sizes must be >= 0, got emb_size={self.emb_size}, hidden_sizes={self.hidden_sizes}")
        if not self.hidden_sizes:
            raise ValueError("a model needs at least one recurrent layer (hidden_sizes is empty)")

    @property
    def n_layers(self) -> int:
        return len(self.hidden_sizes)

    @property
    def group_sizes(self) -> list[int]:
        """Sizes of the gate groups: [e, n_1, ..., n_L]."""
        return gates_mod.group_sizes(self.emb_size, self.hidden_sizes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        keys = {"cell", "vocab_size", "emb_size", "hidden_sizes", "cell_options"}
        if not isinstance(d, dict) or not {"cell", "vocab_size", "emb_size", "hidden_sizes"} <= set(d):
            raise ValueError(f"a model config needs the keys {sorted(keys)}, got {d!r}")
        return cls(d["cell"], int(d["vocab_size"]), int(d["emb_size"]), tuple(d["hidden_sizes"]),
                   dict(d.get("cell_options", {})))


def init_params(config: ModelConfig, rng: np.random.Generator, dtype=np.float32,
                init_range: float | None = None, log_alpha_mean: float = 1.0,
                log_alpha_std: float = 0.1, drop_rate: float | None = None) -> dict:
    """Random parameters: Uniform(-init_range, init_range) everywhere if given (the paper's
    RHN setting uses 0.08), else PyTorch's defaults (embedding N(0, 1) scaled to U(-0.1, 0.1)
    as in the PyTorch word-LM example, cells U(-1/sqrt(n), 1/sqrt(n)), softmax U(-0.1, 0.1)
    with zero bias); ``log_alpha`` from ``gates.init_log_alpha``."""
    cell = get_cell(config.cell)
    V, e = config.vocab_size, config.emb_size
    k = 0.1 if init_range is None else float(init_range)
    layers, m = [], e
    for n in config.hidden_sizes:
        layers.append(cell.init_params(m, n, rng, dtype, init_range=init_range, **config.cell_options))
        m = n
    return {
        "emb": rng.uniform(-k, k, (V, e)).astype(dtype),
        "layers": layers,
        "out_W": rng.uniform(-k, k, (V, m)).astype(dtype),
        "out_b": np.zeros(V, dtype),
        "log_alpha": gates_mod.init_log_alpha(config.group_sizes, rng, drop_rate=drop_rate,
                                              mean=log_alpha_mean, std=log_alpha_std, dtype=dtype),
    }


def check_params(config: ModelConfig, params: dict) -> np.dtype:
    """Check that ``params`` fits ``config``; returns the model's dtype."""
    for key in ("emb", "layers", "out_W", "out_b"):
        if key not in params:
            raise ValueError(f"model parameters lack {key!r}")
    V, e, hs = config.vocab_size, config.emb_size, config.hidden_sizes
    expect = {"emb": (V, e), "out_W": (V, hs[-1]), "out_b": (V,)}
    for key, shape in expect.items():
        if np.shape(params[key]) != shape:
            raise ValueError(f"parameter {key} has shape {np.shape(params[key])}, expected {shape}")
    if len(params["layers"]) != len(hs):
        raise ValueError(f"config has {len(hs)} layers, parameters have {len(params['layers'])}")
    cell = get_cell(config.cell)
    m = e
    for l, (p, n) in enumerate(zip(params["layers"], hs)):
        if cell.sizes(p) != (m, n):
            raise ValueError(f"layer {l + 1} has (input, hidden) sizes {cell.sizes(p)}, expected {(m, n)}")
        m = n
    if "log_alpha" in params:
        got = [np.shape(a) for a in params["log_alpha"]]
        if got != [(g,) for g in config.group_sizes]:
            raise ValueError(f"log_alpha groups have shapes {got}, expected {[(g,) for g in config.group_sizes]}")
    for name, a in zip(flat_names(params), leaves(params)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"parameter {name} contains NaN or inf")
    return np.asarray(params["emb"]).dtype


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


def _check_gates(config: ModelConfig, gates, batch: int, dtype) -> list[np.ndarray]:
    sizes = config.group_sizes
    if gates is None:
        return [np.ones(g, dtype) for g in sizes]
    if len(gates) != len(sizes):
        raise ValueError(f"got {len(gates)} gate groups, the model has {len(sizes)} (embedding + one per layer)")
    out = []
    for l, (g, size) in enumerate(zip(gates, sizes)):
        g = np.asarray(g, dtype)
        if g.shape not in ((size,), (batch, size)):
            raise ValueError(f"gate group {l} has shape {g.shape}, expected ({size},) or ({batch}, {size})")
        if not np.all(np.isfinite(g)):
            raise ValueError(f"gate group {l} contains NaN or inf")
        out.append(g)
    return out


def _dropout_masks(config, shape_tb, dropout, rng, dtype) -> list:
    """Inverted-dropout masks for the L layer inputs and the softmax input; None when off."""
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
    if dropout == 0:
        return [None] * (config.n_layers + 1)
    if rng is None:
        raise ValueError("dropout > 0 needs an rng")
    keep = 1.0 - dropout
    sizes = [config.emb_size] + list(config.hidden_sizes)
    scale = np.asarray(1.0 / keep, dtype)
    return [(rng.random(shape_tb + (size,), dtype=dtype) < keep) * scale for size in sizes]


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


def _run_stack(config: ModelConfig, params: dict, tokens, gates, state0, targets=None,
               dropout: float = 0.0, rng: np.random.Generator | None = None, for_loss: bool = False):
    """What :func:`forward` and :func:`log_probs` share: check the inputs, embed ``tokens``
    and run the L cells, layer l with ``z = gates[l - 1]``, ``s = gates[l]`` (1-based l).

    ``for_loss``: the run of :func:`forward`, which checks ``targets`` against ``tokens``
    and keeps every layer's cell cache for :func:`backward`; otherwise (:func:`log_probs`)
    ``targets`` is ignored and each cache is freed as soon as its layer is done.  With
    ``dropout`` > 0 each layer's input is masked (``drop[l]``), and ``drop[L]`` is left for
    the softmax input.  Returns ``(x, finals, run)``: the last layer's outputs (T, B, n_L)
    before that dropout and the output gate; each layer's final state; and ``run``, a dict
    of the checked ``tokens`` and ``targets`` (None unless ``for_loss``), the gate arrays
    ``gates``, the dropout masks ``drop`` (None where off) and the cells' ``caches`` (None
    unless ``for_loss``).
    """
    cell = get_cell(config.cell)
    dtype = check_params(config, params)
    tokens = check_tokens(tokens, config.vocab_size)
    if for_loss:
        targets = check_tokens(targets, config.vocab_size, "targets")
        if targets.shape != tokens.shape:
            raise ValueError(f"targets have shape {targets.shape}, tokens {tokens.shape}")
    else:
        targets = None
    T, B = tokens.shape
    L = config.n_layers
    g = _check_gates(config, gates, B, dtype)
    state0 = [None] * L if state0 is None else list(state0)
    if len(state0) != L:
        raise ValueError(f"state0 has {len(state0)} entries for {L} layers")
    drop = _dropout_masks(config, (T, B), dropout, rng, dtype)

    x = params["emb"][tokens]                                    # (T, B, e)
    caches, finals = [], []
    for l in range(L):
        if drop[l] is not None:
            x = x * drop[l]
        x, final, c = cell.forward(params["layers"][l], x, g[l], g[l + 1], state0[l])
        caches.append(c if for_loss else None)
        finals.append(final)
    run = dict(tokens=tokens, targets=targets, gates=g, drop=drop, caches=caches)
    return x, finals, run


def forward(config: ModelConfig, params: dict, tokens, targets, gates=None, state0=None,
            dropout: float = 0.0, rng: np.random.Generator | None = None):
    """Mean cross-entropy of predicting ``targets`` from ``tokens``, both (T, B).

    ``gates``: L + 1 gate arrays (sampled or test-time), None for all ones.
    ``state0``: a list with each layer's initial state (the cell's form) or None.
    Returns ``(loss, final_states, cache)``.
    """
    x, finals, run = _run_stack(config, params, tokens, gates, state0, targets, dropout, rng, for_loss=True)
    T, B = run["tokens"].shape
    g, drop = run["gates"], run["drop"]
    L = config.n_layers
    h = x if drop[L] is None else x * drop[L]                   # (T, B, n_L)
    hs = h * g[L]                                                # the output layer reads s_L * h_L
    loss, out_cache = softmax_loss_forward(hs.reshape(T * B, -1), params["out_W"], params["out_b"],
                                           run["targets"].reshape(-1))
    cache = dict(run, config=config, params=params, h=h, hs=hs, out=out_cache)
    return loss, finals, cache


def backward(cache: dict) -> dict:
    """Gradients of the mean cross-entropy: ``emb, layers, out_W, out_b`` like the
    parameters, and ``gates``: one array per gate group, of the shape it was given."""
    config, params = cache["config"], cache["params"]
    cell = get_cell(config.cell)
    tokens, targets, g, drop = cache["tokens"], cache["targets"], cache["gates"], cache["drop"]
    T, B = tokens.shape
    L = config.n_layers

    d_hs, d_out_W, d_out_b = softmax_loss_backward(cache["out"], cache["hs"].reshape(T * B, -1),
                                                   params["out_W"], targets.reshape(-1))
    grads = {"out_W": d_out_W, "out_b": d_out_b}
    d_hs = d_hs.reshape(T, B, -1)                                # (T, B, n_L)
    d_out_gate = reduce_to_mask(d_hs * cache["h"], g[L])
    d_x = d_hs * g[L]
    if drop[L] is not None:
        d_x = d_x * drop[L]
    layer_grads, d_z, d_s = [None] * L, [None] * L, [None] * L
    for l in reversed(range(L)):
        lg = cell.backward(d_x, None, cache["caches"][l])
        layer_grads[l] = {k: lg[k] for k in cell.PARAM_KEYS}
        d_z[l], d_s[l] = lg["z"], lg["s"]
        d_x = lg["x"] if drop[l] is None else lg["x"] * drop[l]
    d_emb = np.zeros_like(params["emb"])
    np.add.at(d_emb, tokens.reshape(-1), d_x.reshape(T * B, -1))
    grads["emb"] = d_emb
    grads["layers"] = layer_grads
    grads["gates"] = gates_mod.gate_grads(d_z, d_s, d_out_gate)
    return grads


def log_probs(config: ModelConfig, params: dict, tokens, gates=None, state0=None):
    """Evaluation forward: log-probabilities of the next token, (T, B, V), and final states.

    No dropout.  With ``gates`` None all gates are one (a compact model, whose gates
    are folded into its weights); for a full model pass ``gates.test_gates(...)``.
    """
    x, finals, run = _run_stack(config, params, tokens, gates, state0)
    return log_softmax((x * run["gates"][-1]) @ params["out_W"].T + params["out_b"]), finals


def cross_entropy(logp: np.ndarray, targets) -> float:
    """Mean negative log-likelihood of ``targets`` (T, B) under ``logp`` (T, B, V)."""
    targets = np.asarray(targets)
    return float(-np.take_along_axis(logp, targets[..., None], axis=-1).mean())


def n_params(config: ModelConfig, params: dict) -> int:
    """Number of weights and biases (gates' log_alpha excluded)."""
    count = params["emb"].size + params["out_W"].size + params["out_b"].size
    return int(count + sum(np.asarray(a).size for p in params["layers"] for a in p.values()))


def layer_blocks(config: ModelConfig, params: dict) -> list[tuple[int, int]]:
    """(G_W, G_U) of every layer, for ``penalty.expected_nonzero_weights``."""
    cell = get_cell(config.cell)
    return [cell.weight_blocks(p) for p in params["layers"]]


def map_params(fn, *trees):
    """Apply ``fn`` leafwise to parameter dicts of the same structure (lists of arrays included)."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: map_params(fn, *(t[k] for t in trees)) for k in first}
    if isinstance(first, (list, tuple)):
        return [map_params(fn, *items) for items in zip(*trees)]
    return fn(*trees)


def leaves(tree) -> list[np.ndarray]:
    """The arrays of a parameter tree in a fixed order (dict keys sorted)."""
    if isinstance(tree, dict):
        return [a for k in sorted(tree) for a in leaves(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [a for item in tree for a in leaves(item)]
    return [tree]


def flat_names(tree, prefix: str = "") -> list[str]:
    """Names of the leaves of :func:`leaves`, e.g. ``layers.0.W`` (for checkpoints)."""
    if isinstance(tree, dict):
        return [n for k in sorted(tree) for n in flat_names(tree[k], f"{prefix}{k}.")]
    if isinstance(tree, (list, tuple)):
        return [n for i, item in enumerate(tree) for n in flat_names(item, f"{prefix}{i}.")]
    return [prefix[:-1]]


__all__ = ["ModelConfig", "init_params", "check_params", "check_tokens", "forward", "backward",
           "log_probs", "cross_entropy", "log_softmax", "n_params", "layer_blocks",
           "map_params", "leaves", "flat_names"]

