"""The ``l0ref`` command: train, compact, evaluate, benchmark, report.

::

    l0ref train   [model and training options] [--train F --valid F --test F] [--out DIR]
    l0ref compact CHECKPOINT --out FILE
    l0ref eval    MODEL FILE             (a training checkpoint or a compact model)
    l0ref bench   [options of l0ref.bench]
    l0ref report  RUN_DIR [RUN_DIR ...] --out DIR

``l0ref train`` with no arguments trains the quick demonstration model on the embedded
corpus (Python's own documentation, ``data.default_corpus``): a two-layer LSTM whose
neurons disappear as it learns, then compacted and timed.  A run directory holds
``checkpoint.npz`` (everything needed to resume), ``history.json`` (one record per
evaluation, plus a summary), ``summary.json`` and ``compact.npz`` (the small dense
model, with its vocabulary, for ``l0ref eval``).

Errors in the input (a missing file, an impossible hyper-parameter) print one line
``l0ref <command>: error: ...`` and exit with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import data as data_mod
from . import gates as gates_mod
from . import model
from . import train as train_mod

DEFAULT_MODEL = {"cell": "lstm", "emb": 128, "hidden": [256, 256], "depth": 10}
DEFAULT_MAX_VOCAB = 5000

#: ``l0ref train``'s defaults where they differ from ``TrainConfig``'s (the paper's PTB
#: setting).  The demonstration must learn *and* prune within a few minutes on 2 cores on
#: a 52k-token corpus, about 1,500 steps.  The paper's SGD (lr 20, clip 0.25) does not get
#: below the unigram perplexity in that many steps here (measured: valid ppl 395 against a
#: unigram 402 after 700 steps), Adam does; dropout 0.5 because the corpus is small;
#: log_alpha learns 5x faster so that the gates settle within the run.
DEMO_DEFAULTS = {"optimizer": "adam", "epochs": 20, "dropout": 0.5, "log_alpha_lr_scale": 5.0,
                 "lr_decay": 1.3, "lr_decay_start": 10}
#: Learning rate and clipping per optimizer, when not given.
OPTIMIZER_DEFAULTS = {"sgd": {"lr": 20.0, "clip": 0.25}, "adam": {"lr": 3e-3, "clip": 1.0}}
#: Training-time budget on the embedded corpus (minutes), so that the whole demonstration,
#: numba compilation included, stays under 5 minutes even on a slow machine.
DEMO_MAX_MINUTES = 3.5
TIMING_BATCH, TIMING_STEPS = 10, 30   #: Wen et al. Table 1 times batch 10, 30 unrolled steps


class UsageError(ValueError):
    """Bad command-line input (reported without a traceback)."""


# ---------------------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------------------


def _floats(name):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a number") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not finite")
        return v
    return parse


def build_parser() -> argparse.ArgumentParser:
    d = train_mod.TrainConfig()
    D = {**d.to_dict(), **DEMO_DEFAULTS}
    p = argparse.ArgumentParser(prog="l0ref", description="Structured L0 pruning of recurrent language models "
                                "(Wen et al.; Louizos et al.), in NumPy.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a gated language model, then compact it",
                       description="Train with the expected-L0 penalty (Eq. 7), evaluate with test-time gates "
                       "(Eq. 10, 11), compact, check and time the compact model. With no arguments: the quick "
                       "demonstration on the embedded corpus.")
    m = t.add_argument_group("model")
    m.add_argument("--cell", choices=("lstm", "gru", "rhn"), default=None, help="recurrent cell (default lstm)")
    m.add_argument("--emb", type=int, default=None, help=f"embedding size (default {DEFAULT_MODEL['emb']})")
    m.add_argument("--hidden", type=int, nargs="+", default=None,
                   help=f"hidden size per layer (default {' '.join(map(str, DEFAULT_MODEL['hidden']))})")
    m.add_argument("--depth", type=int, default=None, help="RHN recurrence depth (default 10)")
    o = t.add_argument_group("training")
    o.add_argument("--lam1", type=_floats("lam1"), nargs="+", default=None,
                   help="input-gate penalty per layer, in units of 0.08/N (N = training tokens); one value "
                   f"for all layers or one per layer (default {d.lam1[0]:g})")
    o.add_argument("--lam2", type=_floats("lam2"), nargs="+", default=None,
                   help=f"hidden-gate penalty per layer, in units of 0.08/N (default {d.lam2[0]:g})")
    o.add_argument("--epochs", type=int, default=None, help=f"(default {D['epochs']})")
    o.add_argument("--batch-size", type=int, default=None, help=f"(default {d.batch_size})")
    o.add_argument("--bptt", type=int, default=None, help=f"truncated-BPTT window (default {d.bptt})")
    o.add_argument("--optimizer", choices=train_mod.OPTIMIZERS, default=None, help=f"(default {D['optimizer']}; the library default, the paper's, is sgd)")
    o.add_argument("--lr", type=_floats("lr"), default=None, help="learning rate (default 20 for sgd, 0.003 for adam)")
    o.add_argument("--momentum", type=_floats("momentum"), default=None, help="SGD momentum (default 0)")
    o.add_argument("--lr-decay", type=_floats("lr-decay"), default=None,
                   help=f"divide the lr by this after each epoch from --lr-decay-start on (default {D['lr_decay']:g})")
    o.add_argument("--lr-decay-start", type=int, default=None, help=f"(default {D['lr_decay_start']})")
    o.add_argument("--dropout", type=_floats("dropout"), default=None,
                   help=f"dropout on non-recurrent connections (default {D['dropout']:g})")
    o.add_argument("--weight-decay", type=_floats("weight-decay"), default=None,
                   help=f"L2 on weight matrices (default {d.weight_decay:g})")
    o.add_argument("--clip", type=_floats("clip"), default=None,
                   help="global gradient-norm clip, 0 = none (default 0.25 for sgd, 1 for adam)")
    o.add_argument("--log-alpha-init", type=_floats("log-alpha-init"), default=None,
                   help=f"mean of the N(mean, 0.1) log_alpha init (default {d.log_alpha_init:g})")
    o.add_argument("--log-alpha-lr-scale", type=_floats("log-alpha-lr-scale"), default=None,
                   help=f"learning-rate multiplier for log_alpha (default {D['log_alpha_lr_scale']:g})")
    o.add_argument("--init-range", type=_floats("init-range"), default=None,
                   help="Uniform(-r, r) init of all weights (default: PyTorch's)")
    o.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: per epoch)")
    o.add_argument("--seed", type=int, default=None, help=f"(default {d.seed})")
    o.add_argument("--dtype", choices=sorted(train_mod.DTYPES), default=None, help=f"(default {d.dtype})")
    o.add_argument("--max-minutes", type=_floats("max-minutes"), default=None,
                   help="stop training after this many minutes, then evaluate, compact, save "
                   f"(default {DEMO_MAX_MINUTES:g} on the embedded corpus, none otherwise)")
    c = t.add_argument_group("data and output")
    c.add_argument("--train", dest="train_path", default=None,
                   help="training text (PTB format); default: the embedded corpus")
    c.add_argument("--valid", dest="valid_path", default=None)
    c.add_argument("--test", dest="test_path", default=None)
    c.add_argument("--char", action="store_true", help="character-level corpus (default: words)")
    c.add_argument("--max-vocab", type=int, default=None,
                   help=f"vocabulary cap, <unk> included (default: none for files, {DEFAULT_MAX_VOCAB} for the embedded corpus)")
    c.add_argument("--out", default=None, help="run directory (default l0ref-runs/<date-time>)")
    c.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue a run exactly; only --epochs, --max-minutes and --out apply then")
    c.add_argument("--log-every", type=int, default=25, help="progress line every N steps when not on a terminal")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    c.add_argument("--timing-seconds", type=_floats("timing-seconds"), default=3.0,
                   help="seconds spent timing the compact against the full model at the end (default 3)")
    t.set_defaults(func=cmd_train)

    k = sub.add_parser("compact", help="compact a training checkpoint into a small dense model")
    k.add_argument("checkpoint")
    k.add_argument("--out", required=True, help="compact model file (.npz)")
    k.set_defaults(func=cmd_compact)

    e = sub.add_parser("eval", help="perplexity of a checkpoint or compact model on a text file")
    e.add_argument("model", help="checkpoint.npz or a compact model")
    e.add_argument("file", help="text in the format of the training corpus")
    e.add_argument("--vocab", default=None,
                   help="take the vocabulary from this checkpoint instead (default: the one the "
                   "compact model stores)")
    e.add_argument("--batch-size", type=int, default=10)
    e.add_argument("--bptt", type=int, default=35)
    e.add_argument("--numpy", action="store_true", help="run a compact model with the NumPy reference, not the kernel")
    e.set_defaults(func=cmd_eval)

    sub.add_parser("bench", help="Table 1 inference benchmark (see l0ref bench --help)", add_help=False)

    r = sub.add_parser("report", help="figures of one or more run directories")
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    r.add_argument("--out", required=True, help="output directory for the figures")
    r.set_defaults(func=cmd_report)
    return p


def main(argv=None) -> int:
    """Entry point of the ``l0ref`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv and argv[0] == "bench":
        from . import bench
        try:
            return int(bench.main(argv[1:]) or 0)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError, ImportError,
            FloatingPointError) as err:
        print(f"l0ref {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nl0ref {args.command}: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------


def _say(*parts) -> None:
    print(*parts, flush=True)


def _load_corpus(spec: dict) -> data_mod.Corpus:
    """The corpus a run trains on: files, or the embedded default."""
    level = spec.get("level", "word")
    if spec.get("train") is None:
        if spec.get("valid") is not None or spec.get("test") is not None:
            raise UsageError("--valid/--test need --train (the embedded corpus has its own splits)")
        return data_mod.default_corpus(level, max_vocab=spec.get("max_vocab"))
    return data_mod.load_corpus(spec["train"], spec.get("valid"), spec.get("test"), level=level,
                                max_vocab=spec.get("max_vocab"))


def _train_config(args) -> train_mod.TrainConfig:
    """TrainConfig from the options given; the rest from TrainConfig's defaults."""
    names = {"epochs": "epochs", "batch_size": "batch_size", "bptt": "bptt", "optimizer": "optimizer",
             "lr": "lr", "momentum": "momentum", "lr_decay": "lr_decay", "lr_decay_start": "lr_decay_start",
             "dropout": "dropout", "weight_decay": "weight_decay", "clip": "clip",
             "log_alpha_init": "log_alpha_init", "log_alpha_lr_scale": "log_alpha_lr_scale",
             "init_range": "init_range", "eval_every": "eval_every", "seed": "seed", "dtype": "dtype",
             "lam1": "lam1", "lam2": "lam2"}
    given = {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}
    kw = dict(DEMO_DEFAULTS)
    kw.update(OPTIMIZER_DEFAULTS.get(given.get("optimizer", kw["optimizer"]), {}))
    kw.update(given)
    return train_mod.TrainConfig(**kw)


def _model_config(args, vocab_size: int) -> model.ModelConfig:
    cell = args.cell or DEFAULT_MODEL["cell"]
    emb = DEFAULT_MODEL["emb"] if args.emb is None else args.emb
    hidden = DEFAULT_MODEL["hidden"] if args.hidden is None else args.hidden
    if emb < 1:
        raise UsageError(f"--emb must be >= 1, got {emb}")
    if any(n < 1 for n in hidden):
        raise UsageError(f"--hidden sizes must be >= 1, got {hidden}")
    options = {}
    if cell == "rhn":
        depth = DEFAULT_MODEL["depth"] if args.depth is None else args.depth
        if depth < 1:
            raise UsageError(f"--depth must be >= 1, got {depth}")
        options["depth"] = depth
    elif args.depth is not None:
        raise UsageError("--depth applies to --cell rhn only")
    return model.ModelConfig(cell, vocab_size, emb, tuple(hidden), options)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)


def _history_doc(state: train_mod.TrainState, summary: dict | None = None) -> dict:
    doc = {"history": state.history, "config": {"model": state.model_config.to_dict(),
                                                "train": state.config.to_dict()}}
    if summary is not None:
        doc["summary"] = summary
    return doc


def cmd_train(args) -> int:
    t0 = time.perf_counter()
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise UsageError(f"--max-minutes must be > 0, got {args.max_minutes}")
    if args.timing_seconds < 0:
        raise UsageError(f"--timing-seconds must be >= 0, got {args.timing_seconds}")
    if args.log_every < 1:
        raise UsageError(f"--log-every must be >= 1, got {args.log_every}")
    if args.max_vocab is not None and args.max_vocab < 1:
        raise UsageError(f"--max-vocab must be >= 1, got {args.max_vocab}")
    if args.resume:
        state = train_mod.load_checkpoint(args.resume)
        if args.epochs is not None:
            state.config = dataclasses.replace(state.config, epochs=args.epochs)
        spec = dict(state.meta.get("corpus") or {})
        if args.train_path is not None:
            spec.update(train=args.train_path, valid=args.valid_path, test=args.test_path)
        corpus = _load_corpus(spec)
        if state.vocab is not None and corpus.vocab.to_list() != state.vocab:
            raise UsageError("the corpus' vocabulary differs from the checkpoint's; pass the same --train file")
        out = Path(args.out) if args.out else Path(args.resume).resolve().parent
        _say(f"resuming {args.resume}: epoch {state.epoch}, window {state.position}, step {state.step}")
    else:
        spec = {"train": args.train_path, "valid": args.valid_path, "test": args.test_path,
                "level": "char" if args.char else "word",
                "max_vocab": args.max_vocab if args.max_vocab is not None else
                (DEFAULT_MAX_VOCAB if args.train_path is None else None)}
        for key in ("train", "valid", "test"):
            if spec[key] is not None:
                spec[key] = str(Path(spec[key]).resolve())
        cfg = _train_config(args)       # validates the hyper-parameters before any data is read
        corpus = _load_corpus(spec)
        mc = _model_config(args, len(corpus.vocab))
        state = train_mod.init_state(mc, cfg, corpus.train.size, corpus.vocab.to_list(), corpus.level)
        state.meta["corpus"] = spec
        out = Path(args.out) if args.out else Path("l0ref-runs") / time.strftime("%Y%m%d-%H%M%S")
    need = data_mod.min_tokens(state.config.batch_size, state.config.bptt)
    if corpus.train.size < need:
        raise UsageError(f"the training text has {corpus.train.size} tokens; batch size {state.config.batch_size} "
                         f"and bptt {state.config.bptt} need at least {need}")
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.npz"
    mc, cfg = state.model_config, state.config

    source = "embedded corpus (Python's pydoc_data documentation)" if spec.get("train") is None else spec["train"]
    summ = corpus.summary()
    _say(f"corpus: {source}, {summ['level']} level, vocabulary {summ['vocab_size']}, "
         + ", ".join(f"{s} {summ[s + '_tokens']:,} tokens" for s in ("train", "valid", "test")
                     if f"{s}_tokens" in summ))
    sizes = " x ".join(str(n) for n in mc.hidden_sizes)
    opts = "".join(f", {k} {v}" for k, v in mc.cell_options.items())
    _say(f"model: {mc.cell.upper()}, embedding {mc.emb_size}, hidden {sizes}{opts}, "
         f"{model.n_params(mc, state.params):,} parameters, {cfg.dtype}")
    lam = ", ".join(f"layer {l + 1}: lam1 {a:.3g} lam2 {b:.3g}" for l, (a, b) in enumerate(zip(state.lam1, state.lam2)))
    _say(f"penalty (Eq. 7), lambdas = multiplier x 0.08/N with N = {state.n_train_tokens:,}: {lam}")
    _say(f"training: {cfg.optimizer} lr {cfg.lr:g} (/{cfg.lr_decay:g} per epoch after {cfg.lr_decay_start}), "
         f"clip {cfg.clip:g}, dropout {cfg.dropout:g}, weight decay {cfg.weight_decay:g}, "
         f"log_alpha lr x{cfg.log_alpha_lr_scale:g}, batch {cfg.batch_size} x bptt {cfg.bptt}, "
         f"{cfg.epochs} epochs, seed {cfg.seed}")
    ref_ids = corpus.valid if corpus.valid is not None and corpus.valid.size >= 2 else corpus.train
    ref = train_mod.reference_perplexities(corpus.train, ref_ids, len(corpus.vocab))
    which = "valid" if ref_ids is corpus.valid else "train"
    _say(f"reference perplexities on {which}: uniform {ref['uniform']:.1f}, unigram {ref['unigram']:.1f}")
    _say(f"run directory: {out}")

    progress = None if args.quiet else train_mod.Progress(sys.stderr, every=args.log_every)

    def on_record(st):
        _write_json(out / "history.json", _history_doc(st))

    valid = corpus.valid if corpus.valid is not None and corpus.valid.size >= 2 else None
    max_minutes = args.max_minutes
    if max_minutes is None and spec.get("train") is None and not args.resume:
        max_minutes = DEMO_MAX_MINUTES
    max_seconds = None if max_minutes is None else 60.0 * max_minutes
    train_mod.fit(state, corpus.train, valid, checkpoint_path=ckpt_path, progress=progress,
                  max_seconds=max_seconds, on_record=on_record)
    if state.epoch < cfg.epochs:
        _say(f"stopped by the time budget ({max_minutes:g} min) in epoch {state.epoch + 1}; "
             f"resume with: l0ref train --resume {ckpt_path}")
    _say(f"checkpoint: {ckpt_path}")

    summary = finish(state, corpus, out, reference=ref, timing_seconds=args.timing_seconds)
    summary["wall_seconds"] = time.perf_counter() - t0
    _write_json(out / "summary.json", summary)
    _write_json(out / "history.json", _history_doc(state, summary))
    _say(f"done in {summary['wall_seconds']:.0f} s; files in {out}/: checkpoint.npz, history.json, "
         f"summary.json, compact.npz")
    return 0


def finish(state: train_mod.TrainState, corpus: data_mod.Corpus, out: Path, reference: dict | None = None,
           timing_seconds: float = 3.0) -> dict:
    """After training: test perplexity, compaction with its check, structure, speed, files."""
    from . import compact as compact_mod

    mc, params, cfg = state.model_config, state.params, state.config
    g = gates_mod.test_gates(params["log_alpha"])
    summary: dict = {"label": f"lam1={'/'.join(f'{x:g}' for x in cfg.lam1)} lam2={'/'.join(f'{x:g}' for x in cfg.lam2)}",
                     "lam1": list(cfg.lam1), "lam2": list(cfg.lam2), "lambda": cfg.lam1[0],
                     "steps": state.step, "epochs": state.epoch, "train_seconds": state.elapsed}
    if reference:
        summary["reference_ppl"] = reference
    for split in ("valid", "test"):
        ids = getattr(corpus, split)
        if ids is not None and ids.size >= 2:
            nll = train_mod.evaluate(mc, params, ids, batch_size=cfg.eval_batch_size, bptt=cfg.bptt, gates=g)
            summary[f"{split}_ppl"] = math.exp(nll)
    line = ", ".join(f"{s} {summary[s + '_ppl']:.2f}" for s in ("valid", "test") if f"{s}_ppl" in summary)
    if reference:
        line += f" (unigram {reference['unigram']:.1f}, uniform {reference['uniform']:.0f})"
    _say(f"\nperplexity with test-time gates (Eq. 10, 11): {line}")

    cm = compact_mod.compact(mc, params, g)
    source = corpus.test if corpus.test is not None and corpus.test.size > TIMING_BATCH * (TIMING_STEPS + 1) else corpus.train
    tokens = data_mod.batchify(source, TIMING_BATCH)[:TIMING_STEPS]
    check = check_compaction(mc, params, cm, tokens)
    _say(check["message"])
    st = compact_mod.structure(cm)
    _say("")
    _say(compact_mod.format_structure(st))
    speed = time_compaction(mc, params, cm, tokens, budget=timing_seconds)
    _say("")
    _say(speed["message"])
    path = out / "compact.npz"
    save_compact(path, cm, state.vocab, state.level)
    _say(f"compact model: {path}")
    summary.update(live=[len(k) for k in cm.kept], sizes=list(mc.group_sizes),
                   expected_nonzero=train_mod.structure(mc, params)["expected_nonzero"],
                   params_before=st.params_before, params_after=st.params_after,
                   macs_before=st.macs_before, macs_after=st.macs_after,
                   compact_max_abs_diff=check["max_abs_diff"], timing=speed["times"],
                   speedup=speed["speedup"])
    return summary


def check_compaction(mc, params, cm, tokens) -> dict:
    """Compare, on ``tokens`` (T, B), the masked full model (NumPy, test-time gates) with the
    compact model in NumPy and in the numba kernel.  ``ValueError`` if they differ by more
    than rounding: 1e-9 (float64) / 2e-4 (float32) in log-probability."""
    from . import kernels

    g = gates_mod.test_gates(params["log_alpha"])
    ref, _ = model.log_probs(mc, params, tokens, gates=g)
    small, _ = model.log_probs(cm.config, cm.params, tokens)
    ker, _ = kernels.log_probs(cm.config, cm.params, tokens)
    d_np = float(np.max(np.abs(ref - small)))
    d_k = float(np.max(np.abs(ref - ker)))
    tol = 2e-4 if ref.dtype == np.float32 else 1e-9
    T, B = tokens.shape
    if not (d_np <= tol and d_k <= tol):
        raise ValueError(f"compaction check FAILED on {T}x{B} tokens: max |log p difference| "
                         f"{d_np:.3g} (NumPy compact), {d_k:.3g} (numba kernel) > {tol:g}")
    msg = (f"compaction check: compact model == masked full model on {T}x{B} tokens: max |log p difference| "
           f"{d_np:.2g} (NumPy compact), {d_k:.2g} (numba kernel), tolerance {tol:g} ({ref.dtype})")
    return {"message": msg, "max_abs_diff": max(d_np, d_k), "tolerance": tol}


def _median_time(fns: dict, budget: float = 3.0, min_rounds: int = 5, max_rounds: int = 200) -> dict:
    """Median seconds per call of each function, timed in interleaved rounds (so that a
    change of machine load hits all alike) until ``budget`` seconds or ``max_rounds``."""
    times = {k: [] for k in fns}
    start = time.perf_counter()
    for r in range(max_rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
        if r + 1 >= min_rounds and time.perf_counter() - start > budget:
            break
    return {k: float(np.median(v)) for k, v in times.items()}


def time_compaction(mc, params, cm, tokens, budget: float = 3.0) -> dict:
    """Inference time of one batch: compact vs full-size, both in the numba kernel.

    The full-size model is the trained network with nothing removed and all gates one
    (``compact`` with all-one gates): the same kernel on the original shapes.  Time does
    not depend on the values, so this is what the masked full model costs in the kernel.
    Both run with one numba thread (the work saved, undisturbed by fork-join costs, which
    dominate batches this small on a busy machine) and with numba's default thread count;
    the masked NumPy reference is timed too, for scale.
    """
    import numba

    from . import compact as compact_mod
    from . import kernels

    full = compact_mod.compact(mc, params, [np.ones(n, params["emb"].dtype) for n in mc.group_sizes])
    g = gates_mod.test_gates(params["log_alpha"])
    threads = numba.get_num_threads()

    def kernel(c, n):
        prepared = kernels.prepare(c.config, c.params)     # weights laid out once, as on loading

        def run():
            numba.set_num_threads(n)
            try:
                kernels.run(prepared, tokens)
            finally:
                numba.set_num_threads(threads)
        return run

    fns = {"compact_kernel_1": kernel(cm, 1), "full_kernel_1": kernel(full, 1)}
    if threads > 1:
        fns.update(compact_kernel_n=kernel(cm, threads), full_kernel_n=kernel(full, threads))
    reference = {"full_numpy_masked": lambda: model.log_probs(mc, params, tokens, gates=g)}
    for fn in [*fns.values(), *reference.values()]:  # compile / warm up
        fn()
    # The NumPy reference is timed after the kernels, not between them: after a product,
    # OpenBLAS's idle threads busy-wait for ~0.1 s (by default) and take the cores from
    # numba's threads (measured here: 2-thread kernel 4.3 ms alone, 8.7 ms interleaved).
    t = _median_time(fns, budget=budget, min_rounds=3)
    t.update(_median_time(reference, budget=budget / 3, min_rounds=3))
    speedup = t["full_kernel_1"] / t["compact_kernel_1"]
    T, B = tokens.shape
    ms = lambda k: f"{1e3 * t[k]:8.2f} ms"  # noqa: E731
    lines = [f"inference time per batch ({B} sequences x {T} steps, median):",
             "                                          1 thread" + (f"   {threads} threads" if threads > 1 else ""),
             f"  full-size model, numba kernel       {ms('full_kernel_1')}"
             + (f" {ms('full_kernel_n')}" if threads > 1 else "") + "   (nothing removed)",
             f"  compact model,   numba kernel       {ms('compact_kernel_1')}"
             + (f" {ms('compact_kernel_n')}" if threads > 1 else ""),
             f"  full-size model, NumPy (masked)     {ms('full_numpy_masked')}   (the reference forward)",
             f"speedup of the compact model: {speedup:.2f}x (same kernel, 1 thread)"
             + (f", {t['full_kernel_n'] / t['compact_kernel_n']:.2f}x ({threads} threads)" if threads > 1 else "")
             + f", {t['full_numpy_masked'] / t['compact_kernel_1']:.2f}x vs the NumPy reference"]
    return {"message": "\n".join(lines), "times": t, "speedup": speedup}


def save_compact(path: Path, cm, vocab, level: str) -> None:
    """The compact model (``compact.save``), its vocabulary and level in its header."""
    from . import compact as compact_mod

    if vocab is not None:
        cm.meta.update(vocab=list(vocab), level=level)
    compact_mod.save(path, cm)


# ---------------------------------------------------------------------------------------
# compact, eval, report
# ---------------------------------------------------------------------------------------


def cmd_compact(args) -> int:
    from . import compact as compact_mod

    state = train_mod.load_checkpoint(args.checkpoint)
    mc, params = state.model_config, state.params
    cm = compact_mod.compact(mc, params)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, mc.vocab_size, (TIMING_STEPS, TIMING_BATCH))
    _say(check_compaction(mc, params, cm, tokens)["message"])
    _say(compact_mod.format_structure(cm))
    save_compact(Path(args.out), cm, state.vocab, state.level)
    _say(f"compact model: {args.out}")
    return 0


def _read_vocab(path) -> tuple[data_mod.Vocab, str]:
    """The vocabulary and level stored in a checkpoint or a compact model file."""
    from . import compact as compact_mod

    path = Path(path)
    fmt = ckpt.peek_format(path)
    if fmt == train_mod.CHECKPOINT_FORMAT:
        st = train_mod.load_checkpoint(path)
        vocab, level = st.vocab, st.level
    elif fmt == compact_mod.FORMAT_NAME:
        meta = compact_mod.load(path).meta
        vocab, level = meta.get("vocab"), meta.get("level", "word")
    else:
        raise ValueError(f"{path}: neither an l0ref checkpoint nor a compact model")
    if vocab is None:
        raise ValueError(f"{path}: stores no vocabulary")
    return data_mod.Vocab(vocab), level


def cmd_eval(args) -> int:
    from . import compact as compact_mod
    from . import kernels

    if args.batch_size < 1 or args.bptt < 1:
        raise UsageError(f"--batch-size and --bptt must be >= 1, got {args.batch_size}, {args.bptt}")
    path = Path(args.model)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {str(path)!r}")
    if ckpt.peek_format(path) == train_mod.CHECKPOINT_FORMAT:
        state = train_mod.load_checkpoint(path)
        if state.vocab is None:
            raise ValueError(f"{path}: the checkpoint stores no vocabulary")
        vocab, level = data_mod.Vocab(state.vocab), state.level
        mc, params = state.model_config, state.params
        g = gates_mod.test_gates(params["log_alpha"])
        fn, what = None, "full model, test-time gates, NumPy"
    else:
        cm = compact_mod.load(path)
        if args.vocab:
            vocab, level = _read_vocab(args.vocab)
        elif "vocab" in cm.meta:
            vocab, level = data_mod.Vocab(cm.meta["vocab"]), cm.meta.get("level", "word")
        else:
            raise ValueError(f"{path}: the compact model stores no vocabulary (pass --vocab CHECKPOINT)")
        if len(vocab) != cm.config.vocab_size:
            raise ValueError(f"the vocabulary has {len(vocab)} tokens, the model {cm.config.vocab_size}")
        mc, params, g = cm.config, cm.params, None
        if args.numpy:
            fn, what = None, "compact model, NumPy"
        else:
            prepared = kernels.prepare(cm.config, cm.params)
            fn = lambda c, p, tokens, s0: kernels.run(prepared, tokens, s0)  # noqa: E731
            what = "compact model, numba kernel"
    ids = vocab.encode(data_mod.tokenize(data_mod.read_text(args.file), level))
    if ids.size < 2:
        raise ValueError(f"{args.file}: fewer than 2 tokens")
    nll = train_mod.evaluate(mc, params, ids, batch_size=args.batch_size, bptt=args.bptt, gates=g, log_probs_fn=fn)
    unk = data_mod.unk_rate(ids, vocab)
    _say(f"{args.file}: {ids.size:,} {level} tokens ({unk:.1%} <unk>), {what}: "
         f"loss {nll:.4f} nats/token, perplexity {math.exp(nll):.2f}")
    return 0


def _report_loader(run_dir):
    """(config, params, test-time gates) of a run directory's checkpoint, for the report."""
    path = Path(run_dir) / "checkpoint.npz"
    if not path.exists():
        raise FileNotFoundError(str(path))
    st = train_mod.load_checkpoint(path)
    return st.model_config, st.params, gates_mod.test_gates(st.params["log_alpha"])


def cmd_report(args) -> int:
    try:
        from . import report
    except ImportError as err:
        raise ImportError(f"{err}; install it with: pip install 'l0ref[plot]'") from None
    for d in args.run_dirs:
        if not Path(d).is_dir():
            raise FileNotFoundError(f"run directory not found: {d!r}")
    try:
        written = report.make_report(args.run_dirs, args.out, loader=_report_loader)
    except ImportError as err:
        msg = str(err)
        if "l0ref[plot]" not in msg:
            msg += "; install it with: pip install 'l0ref[plot]'"
        raise ImportError(msg) from None
    for p in written:
        _say(f"wrote {p}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
