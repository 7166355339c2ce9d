"""Training checkpoints: everything a run needs to continue bit for bit (``checkpoint.py``
holds the file format: plain arrays and a JSON header, written atomically)."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from .. import __version__
from .. import checkpoint as ckpt
from .. import models
from ..tree import flat_names, leaves, walk
from .config import DTYPES, TrainConfig
from .optim import init_opt
from .state import TrainState
from .weights import PenaltyWeights
from .weights import from_json as weights_from_json

CHECKPOINT_FORMAT = "l0ref-checkpoint"
CHECKPOINT_VERSION = 2


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


def flat_states(hidden) -> list:
    """The arrays of carried states (tuples for the LSTM), or [] for none."""
    if hidden is None:
        return []
    return [a for h in hidden for a in (h if isinstance(h, (tuple, list)) else (h,))]


def _upgrade_v1(arrays: dict) -> dict:
    """Version 1 stored the neuron gates as ``log_alpha.<k>``; version 2 files them under
    their family, ``log_alpha.neurons.<k>`` (``gates/families.py``)."""
    out = {}
    for k, v in arrays.items():
        head, _, name = k.rpartition("/")
        if name.startswith("log_alpha.") and name.split(".")[1].isdigit():
            k = f"{head}/log_alpha.neurons.{name.split('.', 1)[1]}"
        out[k] = v
    return out


def save_checkpoint(path, state: TrainState) -> Path:
    """Write ``state`` to ``path`` (.npz, atomically; see ``checkpoint.py``).

    Header (JSON): format ``l0ref-checkpoint``, version 2, ``model_config``,
    ``train_config``, ``vocab`` (tokens in id order) and ``level``, ``progress`` (step,
    epoch, position, tokens_seen, lr, opt_t, elapsed, n_train_tokens, loss accumulator,
    dense_steps),
    ``penalty_weights`` (``weights.py``), ``rng`` (the PCG64 state), ``hidden_kinds``,
    ``history``, and the library versions.
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
                     "loss_sum": state.loss_sum, "loss_count": state.loss_count,
                     "dense_steps": state.dense_steps},
        "penalty_weights": state.penalty_weights.to_json(),
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


#: The header's keys; anything else is refused.
HEADER_KEYS = {"format", "version", "kind", "model_config", "train_config", "vocab", "level", "progress",
               "penalty_weights", "rng", "hidden_kinds", "history", "meta", "created_with"}
REQUIRED_KEYS = {"format", "version", "kind", "model_config", "train_config", "progress", "rng"}
#: ``progress``: name -> (integer?, lowest value).
PROGRESS = {"step": (True, 0), "epoch": (True, 0), "position": (True, 0), "tokens_seen": (True, 0),
            "opt_t": (True, 0), "n_train_tokens": (True, 1), "loss_count": (True, 0),
            "lr": (False, None), "elapsed": (False, 0.0), "loss_sum": (False, None), "dense_steps": (True, 0)}
OPTIONAL_PROGRESS = {"dense_steps": 0}     #: added later: a checkpoint without it had none


def _check_progress(prog, cfg) -> dict:
    """The ``progress`` entry, every number of the right kind and in range."""
    if isinstance(prog, dict):
        prog = {**OPTIONAL_PROGRESS, **prog}
    if not isinstance(prog, dict) or set(prog) != set(PROGRESS):
        got = sorted(prog) if isinstance(prog, dict) else type(prog).__name__
        raise ValueError(f"progress has keys {got}, expected {sorted(PROGRESS)}")
    for name, (integer, low) in PROGRESS.items():
        v = prog[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            raise ValueError(f"progress.{name} must be {'an integer' if integer else 'a number'}, got {v!r}")
        if not np.isfinite(v) or (low is not None and v < low):
            raise ValueError(f"progress.{name} must be finite and >= {low}, got {v!r}")
    if not prog["lr"] > 0:
        raise ValueError(f"progress.lr must be > 0, got {prog['lr']!r}")
    if prog["epoch"] > cfg.epochs:
        raise ValueError(f"progress.epoch is {prog['epoch']}, past the train config's {cfg.epochs} epochs")
    if prog["opt_t"] > prog["step"]:
        raise ValueError(f"progress.opt_t ({prog['opt_t']}) exceeds progress.step ({prog['step']})")
    if prog["dense_steps"] > prog["opt_t"]:
        raise ValueError(f"progress.dense_steps ({prog['dense_steps']}) exceeds progress.opt_t ({prog['opt_t']})")
    return prog


def _check_opt(opt: dict) -> None:
    """Optimizer buffers finite; Adam's second moments >= 0."""
    for key, tree in opt.items():
        for name, a in walk(tree):
            if not np.all(np.isfinite(a)):
                raise ValueError(f"optimizer state {key}.{name} contains NaN or inf")
            if key == "v" and np.any(a < 0):
                raise ValueError(f"optimizer state v.{name} (Adam's second moment) has negative entries")


def load_checkpoint(path) -> TrainState:
    """Read a checkpoint written by :func:`save_checkpoint` into a ``TrainState``.

    ``ValueError`` naming the file for anything wrong with it: unreadable or truncated,
    another format or version, a config that does not validate, arrays missing, extra, or
    not matching the model config, an optimizer state that does not match the optimizer.
    """
    header, arrays = ckpt.load_npz(path, CHECKPOINT_FORMAT, (1, CHECKPOINT_VERSION))
    if header["version"] == 1:
        arrays = _upgrade_v1(arrays)
    try:
        unknown = sorted(set(header) - HEADER_KEYS)
        if unknown:
            raise ValueError(f"unknown header keys {unknown}")
        missing = sorted(REQUIRED_KEYS - set(header))
        if missing:
            raise ValueError(f"the header lacks {missing}")
        if header["kind"] != "full":
            raise ValueError(f"kind is {header['kind']!r}; a training checkpoint is 'full'")
        mc = models.ModelConfig.from_dict(header["model_config"])
        cfg = TrainConfig.from_dict(header["train_config"])
        prog = _check_progress(header["progress"], cfg)
        rng = _rng_from_json(header["rng"], path)
        params = ckpt.unflatten(arrays, "params", path)
        if params is None:
            raise ValueError("no parameter arrays")
        models.check_params(mc, params, gates=True)
        dtype = DTYPES[cfg.dtype]
        for name, a in walk(params):
            if a.dtype != dtype:
                raise ValueError(f"parameter {name} has dtype {a.dtype}, the train config says {cfg.dtype}")
        opt = {}
        for key in {k.split("/")[1] for k in arrays if k.startswith("opt/")}:
            opt[key] = ckpt.unflatten(arrays, f"opt/{key}", path)
        expected = set(init_opt(cfg, {"x": np.zeros(1)}))
        if set(opt) != expected:
            raise ValueError(f"optimizer state has {sorted(opt)}, optimizer {cfg.optimizer!r} needs {sorted(expected)}")
        shapes = [a.shape for a in leaves(params)]
        for key, tree in opt.items():
            if flat_names(tree) != flat_names(params) or [a.shape for a in leaves(tree)] != shapes:
                raise ValueError(f"optimizer state {key!r} does not match the parameters")
        _check_opt(opt)
        hidden = _hidden_from_tree(ckpt.unflatten(arrays, "hidden", path), header.get("hidden_kinds"), path)
        known = ("params/", "opt/", "hidden/")
        extra = [k for k in arrays if not k.startswith(known)]
        if extra:
            raise ValueError(f"unexpected arrays {extra[:5]}")
        vocab = header.get("vocab")
        if vocab is not None and (not isinstance(vocab, list) or len(vocab) != mc.vocab_size):
            raise ValueError("vocabulary does not match the model's vocab_size")
        if "penalty_weights" in header:
            weights = weights_from_json(header["penalty_weights"], mc.n_layers)
        else:   # version 1: the weights were the config's, fixed
            weights = PenaltyWeights.from_config(cfg, mc.n_layers, int(prog["n_train_tokens"]))
        for h in flat_states(hidden):
            if not np.all(np.isfinite(h)):
                raise ValueError("a carried recurrent state contains NaN or inf")
        state = TrainState(mc, cfg, params, rng, prog["n_train_tokens"], weights, float(prog["lr"]),
                           opt=opt, opt_t=prog["opt_t"], dense_steps=prog["dense_steps"], hidden=hidden, step=prog["step"],
                           epoch=prog["epoch"], position=prog["position"],
                           tokens_seen=prog["tokens_seen"], elapsed=float(prog["elapsed"]),
                           history=list(header.get("history", [])), loss_sum=float(prog["loss_sum"]),
                           loss_count=prog["loss_count"], vocab=vocab, level=header.get("level", "word"),
                           meta=dict(header.get("meta") or {}))
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: malformed checkpoint header ({type(err).__name__}: {err})") from None
    return state


__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION"]
