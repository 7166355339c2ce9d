"""Training a gated language model with the expected-L0 penalty (Wen et al. sections 3-4).

One training step (:func:`train_step`) on a window ``(inputs, targets)`` of shape (T, B)::

    u      = draw_uniforms(log_alpha, B, rng)           one draw per sequence and gate
    gates  = sample_gates(log_alpha, u)                  hard concrete samples (Eq. 8)
    loss   = forward(params, inputs, targets, gates, state, dropout, rng)   mean CE per token
    grads  = backward(...);  d log_alpha = log_alpha_grads(u, d gates)       (reparameterized)
    R, dR  = penalty(log_alpha, lam1, lam2)              Eq. 7 with Eq. 9 for P(gate != 0)
    g      = grads + dR;  g *= min(1, clip / ||g||)      global norm over *all* parameters
    g     += weight_decay * w        (weight matrices only)
    w     -= lr * g                  (SGD; or momentum / Adam)

and the recurrent state carries to the next window (truncated BPTT: the final states of
one window start the next, but no gradient flows across windows).

What the paper leaves open, and what we chose
---------------------------------------------
**The scale of lambda.**  Wen et al. (Table 2) give ``lambda`` in units of ``0.08 / N``,
``N`` the number of training examples, following Louizos et al., whose objective (their
Eq. 3) is the *mean* loss ``(1/N) sum_i L_i`` plus ``lambda * ||theta||_0``: the ``1/N``
sits on the data term, and the reference code of Louizos et al. divides its
regularizer by ``N`` accordingly.  We train on the mean cross-entropy per token, which is
that same mean over ``N`` = the number of tokens of the training split (each token is one
prediction, one example).  So a multiplier ``k`` (``--lam1 k``) means::

    total = mean_token_CE + (k * 0.08 / N) * R            (R of Eq. 7, per gate block)

or, multiplying through by ``N``, "summed CE over the training set + 0.08 k R": keeping a
weight must buy 0.08 k nats of training log-likelihood over the whole set.  The
minibatch mean CE is an unbiased estimate of the data-set mean, so adding the full
penalty at every step optimizes the right objective.  (Reading the paper's lambda as
applying to a *summed* loss and then dividing it by N again would make it ~1e6 times too
weak on PTB to prune anything, against Table 2.)  The penalty counts one gate block, as
``penalty.py`` does (the paper's Eq. 4 leaves G to the lambdas).

**Weight decay.**  The paper adds L2 regularization "following [24]" without details.
We decay the weight *matrices* (every parameter array with two or more axes: embedding,
W, U, softmax weights), not the biases (as is common) and never ``log_alpha`` (decaying
it would pull every gate toward ``log_alpha = 0``, i.e. toward half-open gates, which is a
different prior than the L0 penalty).  As in PyTorch's optimizers the decay term is added
after clipping, so clipping acts on the gradient of the loss and penalty alone.

**Clipping** uses the global norm over all gradients, ``log_alpha`` included (the paper
clips at 0.25 with NT-ASGD and lr 20).  **Learning rate**: plain SGD by default, with the
learning rate divided by ``lr_decay`` after every epoch from ``lr_decay_start`` on (the
paper's RHN schedule is 1.02 after epoch 35); Adam is offered as an option.  NT-ASGD's
averaging is not implemented.  ``log_alpha_lr_scale`` multiplies the learning rate of
the gates only (1 = the paper).

**Dropout** acts on the non-recurrent connections only (``model.forward``).  Sampled
gates are drawn once per sequence per window (a window is one minibatch step).

Reproducibility: one ``numpy.random.Generator`` (PCG64, from ``seed``) draws the initial
parameters, then every gate sample and dropout mask, in a fixed order; the data are read
in order.  A checkpoint stores that generator's state, the optimizer's moments and the
carried recurrent state, so that training k steps, saving, loading and continuing gives
bit for bit the parameters of training straight through.
"""
from __future__ import annotations

import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from . import checkpoint as ckpt
from . import data as data_mod
from . import gates as gates_mod
from . import model
from . import penalty as penalty_mod
from .cells import get_cell

CHECKPOINT_FORMAT = "l0ref-checkpoint"
CHECKPOINT_VERSION = 1
LAMBDA_UNIT = 0.08  #: Wen et al. Table 2: lambdas are multiples of 0.08 / N
OPTIMIZERS = ("sgd", "adam")
DTYPES = {"float32": np.float32, "float64": np.float64}


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """How to train.  The defaults are the paper's PTB setting where it gives one (SGD,
    lr 20, clip 0.25, dropout 0.35 (keep 0.65), lambdas 1 x 0.08/N, log_alpha ~ N(1, 0.1),
    lr divided by 1.02 per epoch after epoch 35; section 4.1) and ours where it does not.
    ``l0ref train``'s quick demonstration overrides several of them (see ``cli.py``)."""

    epochs: int = 40
    batch_size: int = 20
    bptt: int = 35
    optimizer: str = "sgd"            #: "sgd" (with optional momentum) or "adam"
    lr: float = 20.0
    momentum: float = 0.0             #: SGD only
    lr_decay: float = 1.02            #: divide lr by this after each epoch >= lr_decay_start
    lr_decay_start: int = 35          #: first epoch (1-based) after which lr is divided
    clip: float = 0.25                #: global gradient norm; 0 = no clipping
    dropout: float = 0.35
    weight_decay: float = 1e-6        #: L2 on weight matrices (not biases, not log_alpha)
    lam1: tuple = (1.0,)              #: per layer, multiples of 0.08/N (one value = all layers)
    lam2: tuple = (1.0,)
    log_alpha_init: float = 1.0       #: mean of the N(mean, std) init (Wen et al.: N(1, 0.1))
    log_alpha_std: float = 0.1
    log_alpha_lr_scale: float = 1.0   #: learning-rate multiplier for log_alpha
    init_range: float | None = None   #: Uniform(-r, r) init for all weights; None = PyTorch's
    adam_betas: tuple = (0.9, 0.999)
    adam_eps: float = 1e-8
    eval_batch_size: int = 10
    eval_every: int = 0               #: steps between evaluations; 0 = once per epoch
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("lam1", "lam2", "adam_betas"):
            v = getattr(self, name)
            v = (v,) if np.ndim(v) == 0 else tuple(v)
            object.__setattr__(self, name, tuple(float(x) for x in v))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first impossible setting."""
        def positive_int(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

        for name in ("epochs", "batch_size", "bptt", "eval_batch_size", "lr_decay_start"):
            positive_int(name)
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, (int, np.integer)) or self.eval_every < 0:
            raise ValueError(f"eval_every must be an integer >= 0, got {self.eval_every!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        finite = ("lr", "momentum", "lr_decay", "clip", "dropout", "weight_decay", "log_alpha_init",
                  "log_alpha_std", "log_alpha_lr_scale", "adam_eps")
        for name in finite:
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if self.lr_decay < 1:
            raise ValueError(f"lr_decay is a divisor and must be >= 1, got {self.lr_decay!r}")
        if self.clip < 0:
            raise ValueError(f"clip must be >= 0 (0 = no clipping), got {self.clip!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.log_alpha_std < 0:
            raise ValueError(f"log_alpha_std must be >= 0, got {self.log_alpha_std!r}")
        if self.log_alpha_lr_scale < 0:
            raise ValueError(f"log_alpha_lr_scale must be >= 0, got {self.log_alpha_lr_scale!r}")
        if not self.adam_eps > 0:
            raise ValueError(f"adam_eps must be > 0, got {self.adam_eps!r}")
        for name in ("lam1", "lam2"):
            v = getattr(self, name)
            if not v:
                raise ValueError(f"{name} needs at least one value")
            for x in v:
                if not math.isfinite(x) or x < 0:
                    raise ValueError(f"{name} values must be finite and >= 0, got {v!r}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}")
        if self.init_range is not None and not (math.isfinite(self.init_range) and self.init_range > 0):
            raise ValueError(f"init_range must be > 0 or None, got {self.init_range!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("lam1", "lam2", "adam_betas"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ValueError(f"a train config must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown train config keys {sorted(unknown)}")
        return cls(**d)

    def lambdas(self, n_layers: int, n_train_tokens: int) -> tuple[list[float], list[float]]:
        """Absolute per-layer ``(lam1, lam2)``: multiplier * 0.08 / N (see the module docstring)."""
        if n_train_tokens < 1:
            raise ValueError(f"the number of training tokens must be >= 1, got {n_train_tokens}")
        unit = LAMBDA_UNIT / n_train_tokens
        lam1 = penalty_mod.per_layer(_broadcast(self.lam1, n_layers, "lam1"), n_layers, "lam1")
        lam2 = penalty_mod.per_layer(_broadcast(self.lam2, n_layers, "lam2"), n_layers, "lam2")
        return [x * unit for x in lam1], [x * unit for x in lam2]


def _broadcast(values: tuple, n_layers: int, name: str) -> list[float]:
    if len(values) == 1:
        return list(values) * n_layers
    if len(values) != n_layers:
        raise ValueError(f"{name} has {len(values)} values for {n_layers} layers (give one or {n_layers})")
    return list(values)


# ---------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything training needs to continue exactly where it stopped.

    ``params`` and ``opt`` are parameter trees (``model.py``); ``opt`` holds the SGD
    momentum buffers (``{"momentum": tree}``, empty without momentum) or Adam's moments
    (``{"m": tree, "v": tree}``) and ``opt_t``, the number of updates made.  ``hidden``
    is the recurrent state carried into the next window (None at the start of an epoch).
    ``epoch`` counts finished epochs; ``position`` is the next window of the current one.
    """

    model_config: model.ModelConfig
    config: TrainConfig
    params: dict
    rng: np.random.Generator
    n_train_tokens: int
    lam1: list
    lam2: list
    lr: float
    opt: dict = field(default_factory=dict)
    opt_t: int = 0
    hidden: list | None = None
    step: int = 0
    epoch: int = 0
    position: int = 0
    tokens_seen: int = 0
    elapsed: float = 0.0                  # training seconds, summed over sessions
    history: list = field(default_factory=list)
    loss_sum: float = 0.0                 # train loss since the last history record
    loss_count: int = 0
    vocab: list | None = None             # tokens in id order, for evaluating new text
    level: str = "word"
    meta: dict = field(default_factory=dict)  # JSON-able notes kept in checkpoints (e.g. the corpus)

    @property
    def dtype(self):
        return DTYPES[self.config.dtype]


def init_state(model_config: model.ModelConfig, config: TrainConfig, n_train_tokens: int,
               vocab: list | None = None, level: str = "word") -> TrainState:
    """A fresh state: parameters drawn from ``Generator(PCG64(seed))``, ``log_alpha`` from
    ``N(log_alpha_init, log_alpha_std)``, optimizer buffers at zero."""
    rng = np.random.default_rng(config.seed)
    params = model.init_params(model_config, rng, dtype=DTYPES[config.dtype], init_range=config.init_range,
                               log_alpha_mean=config.log_alpha_init, log_alpha_std=config.log_alpha_std)
    lam1, lam2 = config.lambdas(model_config.n_layers, int(n_train_tokens))
    if vocab is not None and len(vocab) != model_config.vocab_size:
        raise ValueError(f"vocabulary has {len(vocab)} tokens, the model {model_config.vocab_size}")
    return TrainState(model_config, config, params, rng, int(n_train_tokens), lam1, lam2, float(config.lr),
                      opt=_init_opt(config, params), vocab=None if vocab is None else list(vocab), level=level)


def _init_opt(config: TrainConfig, params: dict) -> dict:
    zeros = lambda: model.map_params(np.zeros_like, params)  # noqa: E731
    if config.optimizer == "adam":
        return {"m": zeros(), "v": zeros()}
    if config.momentum > 0:
        return {"momentum": zeros()}
    return {}


def _decays(params: dict) -> list[bool]:
    """Per leaf (``model.leaves`` order): does weight decay apply?  Matrices yes; biases
    and ``log_alpha`` no (see the module docstring)."""
    names = model.flat_names(params)
    return [np.ndim(a) >= 2 and not n.startswith("log_alpha") for n, a in zip(names, model.leaves(params))]


def _lr_scales(params: dict, log_alpha_scale: float) -> list[float]:
    return [log_alpha_scale if n.startswith("log_alpha") else 1.0 for n in model.flat_names(params)]


# ---------------------------------------------------------------------------------------
# One step
# ---------------------------------------------------------------------------------------


def train_step(state: TrainState, inputs: np.ndarray, targets: np.ndarray) -> dict:
    """One update on one window: sample gates, forward, backward, penalty, clip, update.

    ``inputs, targets`` are token ids (T, B).  Updates ``state.params`` and the optimizer
    buffers in place, replaces ``state.hidden`` with the window's final states and advances
    ``step``, ``opt_t`` and ``tokens_seen``; nothing else (no data position, no history,
    no I/O), so a benchmark can time exactly this.  Returns ``loss`` (mean cross-entropy
    per token, without the penalty), ``penalty`` (lambda-weighted Eq. 7 term added to it),
    ``grad_norm`` (global, before clipping) and ``lr``.
    """
    mc, cfg, p = state.model_config, state.config, state.params
    B = inputs.shape[1]
    log_alpha = p["log_alpha"]

    # Gates: one hard concrete sample per sequence (B, size) per group (Eq. 8).
    u = gates_mod.draw_uniforms(log_alpha, B, state.rng)
    g = gates_mod.sample_gates(log_alpha, u)
    loss, finals, cache = model.forward(mc, p, inputs, targets, g, state0=state.hidden,
                                        dropout=cfg.dropout, rng=state.rng)
    grads = model.backward(cache)
    del cache
    d_log_alpha = gates_mod.log_alpha_grads(log_alpha, u, grads.pop("gates"))

    # Expected-L0 penalty (Eq. 7, with P(gate != 0) of Eq. 9) and its gradient.
    pen, d_pen = penalty_mod.penalty(log_alpha, state.lam1, state.lam2)
    grads["log_alpha"] = [(a + b).astype(state.dtype, copy=False) for a, b in zip(d_log_alpha, d_pen)]

    g_leaves = model.leaves(grads)
    p_leaves = model.leaves(p)
    if len(g_leaves) != len(p_leaves):
        raise ValueError(f"gradient tree has {len(g_leaves)} arrays, parameters {len(p_leaves)}")

    # Global-norm clipping over every gradient, log_alpha included.
    norm = math.sqrt(sum(float(np.vdot(a, a)) for a in g_leaves))
    if not math.isfinite(norm):
        raise FloatingPointError(f"gradient norm is {norm} at step {state.step}; lower the learning rate")
    if cfg.clip > 0 and norm > cfg.clip:
        scale = state.dtype(cfg.clip / norm)
        for a in g_leaves:
            a *= scale

    # Weight decay on the weight matrices, after clipping (as PyTorch's optimizers do).
    decays = _decays(p)
    if cfg.weight_decay > 0:
        wd = state.dtype(cfg.weight_decay)
        for a, w, d in zip(g_leaves, p_leaves, decays):
            if d:
                a += wd * w

    _update(state, p_leaves, g_leaves)
    state.hidden = finals
    state.step += 1
    state.tokens_seen += int(inputs.size)
    return {"loss": loss, "penalty": pen, "grad_norm": norm, "lr": state.lr}


def _update(state: TrainState, p_leaves: list, g_leaves: list) -> None:
    """The optimizer step, in place on the parameters (the gradients are consumed)."""
    cfg = state.config
    state.opt_t += 1
    scales = _lr_scales(state.params, cfg.log_alpha_lr_scale)
    dt = state.dtype
    if cfg.optimizer == "sgd":
        bufs = model.leaves(state.opt["momentum"]) if "momentum" in state.opt else [None] * len(p_leaves)
        mu = dt(cfg.momentum)
        for w, gr, buf, sc in zip(p_leaves, g_leaves, bufs, scales):
            if buf is not None:
                buf *= mu
                buf += gr
                gr = buf.copy()
            gr *= dt(state.lr * sc)
            w -= gr
        return
    # Adam (Kingma & Ba), bias-corrected; L2 decay already in the gradient as in torch.optim.Adam.
    b1, b2 = cfg.adam_betas
    t = state.opt_t
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    for w, gr, m, v, sc in zip(p_leaves, g_leaves, model.leaves(state.opt["m"]),
                               model.leaves(state.opt["v"]), scales):
        m *= dt(b1)
        m += dt(1 - b1) * gr
        v *= dt(b2)
        gr *= gr
        gr *= dt(1 - b2)
        v += gr
        denom = np.sqrt(v / dt(c2))
        denom += dt(cfg.adam_eps)
        w -= dt(state.lr * sc / c1) * m / denom


# ---------------------------------------------------------------------------------------
# Evaluation and structure
# ---------------------------------------------------------------------------------------


def evaluate(model_config: model.ModelConfig, params: dict, ids: np.ndarray, *, batch_size: int = 10,
             bptt: int = 35, gates=None, log_probs_fn: Callable | None = None) -> float:
    """Mean negative log-likelihood per token of ``ids`` (L,), state carried across windows.

    ``gates`` are passed to ``model.log_probs`` (use ``gates.test_gates(log_alpha)`` for a
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
            return model.log_probs(c, p, tokens, gates=gates, state0=state0)
    total, count, state = 0.0, 0, None
    for inputs, targets in data_mod.windows(batched, T):
        logp, state = log_probs_fn(model_config, params, inputs, state)
        total += float(-np.take_along_axis(logp, targets[..., None], axis=-1).sum(dtype=np.float64))
        count += targets.size
    return total / count


def live_neurons(params: dict) -> list[int]:
    """Per gate group (embedding, layer 1..L): neurons whose test-time gate (Eq. 10, 11) is nonzero."""
    return [int(np.count_nonzero(g)) for g in gates_mod.test_gates(params["log_alpha"])]


def structure(model_config: model.ModelConfig, params: dict) -> dict:
    """Live neurons per group, their totals, and the expected number of nonzero weights
    of the recurrent stack (all gate blocks counted) against its full count."""
    blocks = model.layer_blocks(model_config, params)
    sizes = model_config.group_sizes
    full = sum(gw * m * n + gu * n * n for (gw, gu), m, n in zip(blocks, sizes[:-1], sizes[1:]))
    return {
        "live": live_neurons(params),
        "sizes": list(sizes),
        "expected_nonzero": penalty_mod.expected_nonzero_weights(params["log_alpha"], blocks),
        "recurrent_weights": int(full),
    }


def reference_perplexities(train_ids: np.ndarray, ids: np.ndarray, vocab_size: int) -> dict:
    """Perplexities of two baselines on ``ids``: uniform over the vocabulary, and the
    unigram distribution of ``train_ids`` (add-one smoothed so unseen ids stay finite)."""
    counts = np.bincount(np.asarray(train_ids), minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return {"uniform": float(vocab_size), "unigram": float(np.exp(-logp[np.asarray(ids)].mean()))}


# ---------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------


class Progress:
    """One updating line on a terminal (``\\r``), or a line every ``every`` steps otherwise."""

    def __init__(self, stream=None, every: int = 25, tty: bool | None = None):
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.every = max(1, int(every))
        self._width = 0

    def step(self, state: "TrainState", line: str) -> None:
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()
            self._width = len(line)
        elif state.step % self.every == 0:
            self.stream.write(line + "\n")
            self.stream.flush()

    def message(self, line: str) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(line + "\n")
        self.stream.flush()


def _fmt_count(x: float) -> str:
    x = float(x)
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def status_line(state: TrainState, stats: dict, tok_per_s: float) -> str:
    """The progress line: epoch, step, speed, loss, perplexity, live neurons, E[nonzero]."""
    live = "/".join(str(n) for n in live_neurons(state.params))
    blocks = model.layer_blocks(state.model_config, state.params)
    nnz = penalty_mod.expected_nonzero_weights(state.params["log_alpha"], blocks)
    last = state.history[-1] if state.history else None
    val = f" | val ppl {last['valid_ppl']:.1f}" if last and last.get("valid_ppl") is not None else ""
    loss = stats["loss"]
    return (f"ep {state.epoch + 1}/{state.config.epochs} step {state.step} | {tok_per_s / 1e3:.1f}k tok/s"
            f" | loss {loss:.3f} ppl {math.exp(min(loss, 50)):.1f}{val} | live {live}"
            f" | E[nnz] {_fmt_count(nnz)} | lr {state.lr:.3g}")


def record(state: TrainState, valid_ids: np.ndarray | None, since: tuple[float, int]) -> dict:
    """Evaluate (valid perplexity with test-time gates) and append one history entry.

    ``since = (wall time, tokens_seen)`` of the previous record, for the speed.
    """
    mc, p, cfg = state.model_config, state.params, state.config
    entry = {"step": state.step, "epoch": state.epoch, "position": state.position,
             "tokens": state.tokens_seen, "lr": state.lr}
    entry["train_loss"] = state.loss_sum / state.loss_count if state.loss_count else None
    entry["train_ppl"] = math.exp(min(entry["train_loss"], 50)) if state.loss_count else None
    if valid_ids is not None and np.size(valid_ids) >= 2:
        nll = evaluate(mc, p, valid_ids, batch_size=cfg.eval_batch_size, bptt=cfg.bptt,
                       gates=gates_mod.test_gates(p["log_alpha"]))
        entry["valid_loss"], entry["valid_ppl"] = nll, math.exp(min(nll, 50))
    else:
        entry["valid_loss"] = entry["valid_ppl"] = None
    st = structure(mc, p)
    entry["live"] = st["live"]
    entry["expected_nonzero"] = st["expected_nonzero"]
    entry["penalty"] = float(penalty_mod.penalty(p["log_alpha"], state.lam1, state.lam2)[0])
    entry["elapsed"] = state.elapsed
    dt = time.perf_counter() - since[0]
    entry["tokens_per_s"] = (state.tokens_seen - since[1]) / dt if dt > 0 else None
    state.history.append(entry)
    state.loss_sum, state.loss_count = 0.0, 0
    return entry


def describe(entry: dict) -> str:
    """A history entry as one log line."""
    val = f"valid ppl {entry['valid_ppl']:8.2f}" if entry.get("valid_ppl") is not None else "valid ppl      n/a"
    tr = f"train ppl {entry['train_ppl']:8.2f}" if entry.get("train_ppl") is not None else "train ppl      n/a"
    live = "/".join(str(n) for n in entry["live"])
    return (f"epoch {entry['epoch']:3d} step {entry['step']:6d} | {tr} | {val} | live {live} | "
            f"E[nnz] {_fmt_count(entry['expected_nonzero'])} | lr {entry['lr']:.3g} | {entry['elapsed']:.0f}s")


def fit(state: TrainState, train_ids: np.ndarray, valid_ids: np.ndarray | None = None, *,
        checkpoint_path=None, progress: Progress | None = None, max_steps: int | None = None,
        max_seconds: float | None = None, save_every_epoch: bool = True,
        on_record: Callable[[TrainState], None] | None = None) -> TrainState:
    """Train until ``config.epochs`` epochs are done, ``max_steps`` more steps were taken, or
    ``max_seconds`` of wall time passed (whichever first; running out of time records a
    last history entry).  Continues from ``state``'s
    epoch and window position (a loaded checkpoint resumes exactly).

    Each epoch walks the training stream in order in windows of ``bptt`` steps over
    ``batch_size`` parallel streams, the state reset to zeros at the epoch's start.
    After every epoch (and every ``eval_every`` steps) the validation perplexity with
    test-time gates is recorded in ``state.history``; after every epoch the learning rate
    may decay and, with ``checkpoint_path``, a checkpoint is written (also at the end).
    ``on_record(state)`` is called after every history record (e.g. to write it out).
    """
    cfg = state.config
    batched = data_mod.batchify(np.asarray(train_ids), cfg.batch_size)
    wins = list(data_mod.windows(batched, cfg.bptt))
    t_start = time.perf_counter()
    elapsed0 = state.elapsed
    since = (t_start, state.tokens_seen)
    speed_t, speed_tok = t_start, state.tokens_seen
    tok_per_s = 0.0
    steps_done = 0

    out_of_time = False

    def stop() -> bool:
        nonlocal out_of_time
        if max_steps is not None and steps_done >= max_steps:
            return True
        out_of_time = max_seconds is not None and time.perf_counter() - t_start >= max_seconds
        return out_of_time

    def log_record():
        nonlocal since
        state.elapsed = elapsed0 + time.perf_counter() - t_start
        entry = record(state, valid_ids, since)
        since = (time.perf_counter(), state.tokens_seen)
        if progress is not None:
            progress.message(describe(entry))
        if on_record is not None:
            on_record(state)

    stopped = False
    while state.epoch < cfg.epochs and not stopped:
        if state.position == 0:
            state.hidden = None
        while state.position < len(wins):
            if stop():
                stopped = True
                break
            inputs, targets = wins[state.position]
            stats = train_step(state, inputs, targets)
            state.position += 1
            steps_done += 1
            state.loss_sum += stats["loss"]
            state.loss_count += 1
            now = time.perf_counter()
            if now - speed_t > 0.5:
                tok_per_s = (state.tokens_seen - speed_tok) / (now - speed_t)
                speed_t, speed_tok = now, state.tokens_seen
            elif tok_per_s == 0.0 and now > speed_t:
                tok_per_s = (state.tokens_seen - speed_tok) / (now - speed_t)
            if progress is not None:
                progress.step(state, status_line(state, stats, tok_per_s))
            if cfg.eval_every and state.step % cfg.eval_every == 0 and state.position < len(wins):
                log_record()
        if stopped:
            if out_of_time and state.loss_count:
                log_record()          # the budget ran out mid-epoch: record where training ended
            break
        # end of an epoch
        state.epoch += 1
        state.position = 0
        state.hidden = None
        log_record()
        if state.epoch >= cfg.lr_decay_start and cfg.lr_decay != 1:
            state.lr = state.lr / cfg.lr_decay
        if checkpoint_path is not None and save_every_epoch:
            state.elapsed = elapsed0 + time.perf_counter() - t_start
            save_checkpoint(checkpoint_path, state)
    state.elapsed = elapsed0 + time.perf_counter() - t_start
    if checkpoint_path is not None and (stopped or not save_every_epoch):
        save_checkpoint(checkpoint_path, state)
    return state


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------


def _rng_state_to_json(rng: np.random.Generator) -> dict:
    st = rng.bit_generator.state
    if st.get("bit_generator") != "PCG64":
        raise ValueError(f"checkpoints store PCG64 generators only, got {st.get('bit_generator')!r}")
    return st


def _rng_from_json(st: dict, path) -> np.random.Generator:
    try:
        if st["bit_generator"] != "PCG64":
            raise ValueError(f"bit generator {st['bit_generator']!r}")
        bg = np.random.PCG64()
        bg.state = st
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: bad random-generator state in the header ({err})") from None
    return np.random.Generator(bg)


def _hidden_to_tree(hidden):
    """Carried states -> a tree of lists (tuples become lists; the header remembers which)."""
    if hidden is None:
        return None, None
    kinds = ["tuple" if isinstance(h, tuple) else ("list" if isinstance(h, list) else "array") for h in hidden]
    tree = [list(h) if isinstance(h, (tuple, list)) else h for h in hidden]
    return tree, kinds


def _hidden_from_tree(tree, kinds, path):
    if tree is None:
        return None
    if not isinstance(kinds, list) or len(kinds) != len(tree):
        raise ValueError(f"{path}: carried-state description does not match its arrays")
    out = []
    for h, k in zip(tree, kinds):
        if k == "tuple":
            out.append(tuple(h))
        elif k == "list":
            out.append(list(h))
        elif k == "array":
            out.append(h)
        else:
            raise ValueError(f"{path}: unknown carried-state kind {k!r}")
    return out


def _check_layer_arrays(mc: model.ModelConfig, params: dict) -> None:
    """Every layer has exactly its cell's arrays, of the shapes its sizes give."""
    cell = get_cell(mc.cell)
    layers = params.get("layers")
    if not isinstance(layers, list) or len(layers) != mc.n_layers:
        raise ValueError(f"parameters need {mc.n_layers} layers")
    m = mc.emb_size
    for l, (p, n) in enumerate(zip(layers, mc.hidden_sizes)):
        want = cell.init_params(m, n, np.random.default_rng(0), np.float32, **mc.cell_options)
        if not isinstance(p, dict) or set(p) != set(want):
            got = sorted(p) if isinstance(p, dict) else type(p).__name__
            raise ValueError(f"layer {l + 1} has arrays {got}, a {mc.cell} layer has {sorted(want)}")
        for k in want:
            if p[k].shape != want[k].shape:
                raise ValueError(f"layer {l + 1} array {k} has shape {p[k].shape}, expected {want[k].shape}")
        m = n


def save_checkpoint(path, state: TrainState) -> Path:
    """Write ``state`` to ``path`` (.npz, atomically; see ``checkpoint.py``).

    Header (JSON): format ``l0ref-checkpoint``, version 1, ``model_config``,
    ``train_config``, ``vocab`` (tokens in id order) and ``level``, ``progress`` (step,
    epoch, position, tokens_seen, lr, opt_t, elapsed, n_train_tokens, loss accumulator),
    ``rng`` (the PCG64 state), ``hidden_kinds``, ``history``, and the library versions.
    Arrays: ``params/<name>``, ``opt/<m|v|momentum>/<name>``, ``hidden/<l>.<i>``.
    """
    tree, kinds = _hidden_to_tree(state.hidden)
    header = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": "full",
        "model_config": state.model_config.to_dict(),
        "train_config": state.config.to_dict(),
        "vocab": state.vocab,
        "level": state.level,
        "progress": {"step": state.step, "epoch": state.epoch, "position": state.position,
                     "tokens_seen": state.tokens_seen, "lr": state.lr, "opt_t": state.opt_t,
                     "elapsed": state.elapsed, "n_train_tokens": state.n_train_tokens,
                     "loss_sum": state.loss_sum, "loss_count": state.loss_count},
        "rng": _rng_state_to_json(state.rng),
        "hidden_kinds": kinds,
        "history": state.history,
        "meta": state.meta,
        "created_with": {"l0ref": __version__, "numpy": np.__version__, "python": platform.python_version()},
    }
    arrays = ckpt.flatten(state.params, "params")
    for key, tree_ in state.opt.items():
        arrays.update(ckpt.flatten(tree_, f"opt/{key}"))
    if tree is not None:
        arrays.update(ckpt.flatten(tree, "hidden"))
    return ckpt.save_npz(path, header, arrays)


def load_checkpoint(path) -> TrainState:
    """Read a checkpoint written by :func:`save_checkpoint` into a ``TrainState``.

    ``ValueError`` naming the file for anything wrong with it: unreadable or truncated,
    another format or version, a config that does not validate, arrays missing, extra, or
    not matching the model config, an optimizer state that does not match the optimizer.
    """
    header, arrays = ckpt.load_npz(path, CHECKPOINT_FORMAT, (CHECKPOINT_VERSION,))
    try:
        mc = model.ModelConfig.from_dict(header["model_config"])
        cfg = TrainConfig.from_dict(header["train_config"])
        prog = header["progress"]
        rng = _rng_from_json(header["rng"], path)
        params = ckpt.unflatten(arrays, "params", path)
        if params is None:
            raise ValueError("no parameter arrays")
        _check_layer_arrays(mc, params)
        model.check_params(mc, params)
        if "log_alpha" not in params:
            raise ValueError("no log_alpha arrays")
        dtype = DTYPES[cfg.dtype]
        for name, a in zip(model.flat_names(params), model.leaves(params)):
            if a.dtype != dtype:
                raise ValueError(f"parameter {name} has dtype {a.dtype}, the train config says {cfg.dtype}")
        opt = {}
        for key in {k.split("/")[1] for k in arrays if k.startswith("opt/")}:
            opt[key] = ckpt.unflatten(arrays, f"opt/{key}", path)
        expected = set(_init_opt(cfg, {"x": np.zeros(1)}))
        if set(opt) != expected:
            raise ValueError(f"optimizer state has {sorted(opt)}, optimizer {cfg.optimizer!r} needs {sorted(expected)}")
        shapes = [a.shape for a in model.leaves(params)]
        for key, tree in opt.items():
            if model.flat_names(tree) != model.flat_names(params) or [a.shape for a in model.leaves(tree)] != shapes:
                raise ValueError(f"optimizer state {key!r} does not match the parameters")
        hidden = _hidden_from_tree(ckpt.unflatten(arrays, "hidden", path), header.get("hidden_kinds"), path)
        known = ("params/", "opt/", "hidden/")
        extra = [k for k in arrays if not k.startswith(known)]
        if extra:
            raise ValueError(f"unexpected arrays {extra[:5]}")
        vocab = header.get("vocab")
        if vocab is not None and (not isinstance(vocab, list) or len(vocab) != mc.vocab_size):
            raise ValueError("vocabulary does not match the model's vocab_size")
        state = TrainState(mc, cfg, params, rng, int(prog["n_train_tokens"]),
                           *cfg.lambdas(mc.n_layers, int(prog["n_train_tokens"])), float(prog["lr"]),
                           opt=opt, opt_t=int(prog["opt_t"]), hidden=hidden, step=int(prog["step"]),
                           epoch=int(prog["epoch"]), position=int(prog["position"]),
                           tokens_seen=int(prog["tokens_seen"]), elapsed=float(prog["elapsed"]),
                           history=list(header.get("history", [])), loss_sum=float(prog["loss_sum"]),
                           loss_count=int(prog["loss_count"]), vocab=vocab, level=header.get("level", "word"),
                           meta=dict(header.get("meta") or {}))
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: malformed checkpoint header ({type(err).__name__}: {err})") from None
    return state


__all__ = ["TrainConfig", "TrainState", "init_state", "train_step", "evaluate", "live_neurons",
           "structure", "reference_perplexities", "fit", "record", "describe", "Progress",
           "save_checkpoint", "load_checkpoint", "LAMBDA_UNIT", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION"]
