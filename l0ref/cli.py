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
import errno
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import gates as gates_mod
from . import data as data_mod
from . import model_files, models
from . import training as train_mod
from .cells import CELLS
from .experiments import pipeline
from .experiments.rundir import RUN_FILES, check_output_file
from .experiments.summary import write_json

DEFAULT_MODEL = {"cell": "lstm", "emb": 128, "hidden": [256, 256], "depth": 10}
DEFAULT_MAX_VOCAB = 5000
#: ``--task classify``: Lobacheva et al.'s classifier setting, scaled to 2 cores (they use an
#: LSTM of 128 units on IMDB with a 300-wide embedding, a 20k vocabulary, the first 200 words).
CLASSIFY_MODEL = {"emb": 128, "hidden": [128]}
CLASSIFY_DEFAULTS = {"epochs": 10, "batch_size": 32, "eval_batch_size": 64, "dropout": 0.3}
CLASSIFY_MAX_VOCAB = 20000
CLASSIFY_MAX_LEN = 200

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
#: numba's first compilation included, stays near 5 minutes on a slow machine (4 min 58 s
#: measured on 2 cores from a cold cache with the AVX-512 kernels, training 3.2 minutes).
DEMO_MAX_MINUTES = 3.5


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

    t = sub.add_parser("train", help="train a gated language model or classifier, then compact it",
                       description="Train with the expected-L0 penalty (Eq. 7), evaluate with test-time gates "
                       "(Eq. 10, 11), compact, check and time the compact model. With no arguments: the quick "
                       "demonstration on the embedded corpus.")
    m = t.add_argument_group("model")
    m.add_argument("--task", choices=pipeline.TASKS, default=None,
                   help="lm: next-word prediction on text (default); classify: one label per document, read from "
                   "'label<TAB>text' or fastText '__label__X text' lines (Lobacheva et al.'s classifier: the last "
                   f"state of each document -> dense layer; defaults embedding {CLASSIFY_MODEL['emb']}, hidden "
                   f"{' '.join(map(str, CLASSIFY_MODEL['hidden']))}, {CLASSIFY_DEFAULTS['epochs']} epochs, batch "
                   f"{CLASSIFY_DEFAULTS['batch_size']}, dropout {CLASSIFY_DEFAULTS['dropout']:g})")
    m.add_argument("--cell", choices=sorted(CELLS), default=None, help="recurrent cell (default lstm)")
    m.add_argument("--emb", type=int, default=None, help=f"embedding size (default {DEFAULT_MODEL['emb']})")
    m.add_argument("--hidden", type=int, nargs="+", default=None,
                   help=f"hidden size per layer (default {' '.join(map(str, DEFAULT_MODEL['hidden']))})")
    m.add_argument("--depth", type=int, default=None, help="RHN recurrence depth (default 10)")
    m.add_argument("--gates", default=None, metavar="FAMILIES",
                   help="gate families, comma-separated: neurons (Wen et al.; always there), preact (one gate per "
                   "gate preactivation and unit), weights (one per recurrent weight), vocab (one per word of the "
                   "embedding) -- the last three Lobacheva et al.'s, with L0 gates (default neurons)")
    o = t.add_argument_group("training")
    o.add_argument("--lam1", type=_floats("lam1"), nargs="+", default=None,
                   help="input-gate penalty per layer, in units of 0.08/N (N = training tokens); one value "
                   f"for all layers or one per layer (default {d.lam1[0]:g})")
    o.add_argument("--lam2", type=_floats("lam2"), nargs="+", default=None,
                   help=f"hidden-gate penalty per layer, in units of 0.08/N (default {d.lam2[0]:g})")
    o.add_argument("--lam-vocab", type=_floats("lam-vocab"), default=None,
                   help=f"with vocab gates: penalty on the embedding's expected nonzero entries, in units of 0.08/N "
                   f"(default {d.lam_vocab:g})")
    o.add_argument("--lam-preact", type=_floats("lam-preact"), nargs="+", default=None,
                   help="with preact gates: an extra push, per layer, on their own count (Louizos et al.'s L0), "
                   f"in units of 0.08/N (default {d.lam_preact[0]:g})")
    o.add_argument("--lam-weights", type=_floats("lam-weights"), nargs="+", default=None,
                   help=f"with weights gates: the same for the weight gates (default {d.lam_weights[0]:g})")
    o.add_argument("--target-macs", type=_floats("target-macs"), default=None, metavar="F",
                   help="ask for a size, not a lambda: end with a compact model of this fraction of the "
                   "multiply-adds per token (0 < F < 1); a Lagrangian controller replaces --lam1/--lam2")
    o.add_argument("--target-params", type=_floats("target-params"), default=None, metavar="F",
                   help="the same for the fraction of the embedding and recurrent weights")
    o.add_argument("--target-warmup", type=_floats("target-warmup"), default=None, metavar="W",
                   help=f"fraction of the run (steps or --max-minutes) over which the target is ramped in "
                   f"(default {d.target_warmup:g})")
    o.add_argument("--finetune", type=_floats("finetune"), default=None, metavar="F",
                   help="spend the last fraction F of the run (steps or --max-minutes) fine-tuning the weights "
                   "with the structure fixed: gates at their test-time values, no penalty (default 0)")
    o.add_argument("--dense-start", type=_floats("dense-start"), default=None, metavar="F",
                   help="spend the first fraction F of the run training the unpruned network: every gate open, "
                   "no penalty, the gates not learning; then prune (default 0)")
    o.add_argument("--target-lr", type=_floats("target-lr"), default=None,
                   help=f"learning rate of the target's multipliers (default {d.target_lr:g})")
    o.add_argument("--target-lam2", type=_floats("target-lam2"), default=None,
                   help=f"initial quadratic multiplier of the target's Lagrangian (default {d.target_lam2:g})")
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
    o.add_argument("--log-alpha-init-extra", type=_floats("log-alpha-init-extra"), default=None,
                   help=f"the same for the gate families beyond the neurons (default {d.log_alpha_init_extra:g})")
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
    c.add_argument("--max-len", type=int, default=None,
                   help=f"--task classify: keep the first N tokens of each document (default {CLASSIFY_MAX_LEN})")
    c.add_argument("--keep-case", action="store_true", help="--task classify: do not lowercase the documents")
    c.add_argument("--max-vocab", type=int, default=None,
                   help=f"vocabulary cap, <unk> included (default: none for files, {DEFAULT_MAX_VOCAB} for the embedded "
                   f"corpus, {CLASSIFY_MAX_VOCAB} for --task classify)")
    c.add_argument("--out", default=None, help="run directory (default l0ref-runs/<date-time>)")
    c.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue a run exactly; only --epochs, --max-minutes, --out and the data files apply then")
    c.add_argument("--overwrite", action="store_true", help="replace a run that --out holds already")
    c.add_argument("--log-every", type=int, default=25, help="progress line every N steps when not on a terminal")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    c.add_argument("--timing-seconds", type=_floats("timing-seconds"), default=3.0,
                   help="seconds spent timing the compact against the full model at the end (default 3)")
    t.set_defaults(func=cmd_train)

    k = sub.add_parser("compact", help="compact a training checkpoint into a small dense model")
    k.add_argument("checkpoint")
    k.add_argument("--out", required=True, help="compact model file (.npz)")
    k.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    k.set_defaults(func=cmd_compact)

    e = sub.add_parser("eval", help="perplexity (a language model) or accuracy and confusion matrix (a classifier) "
                       "of a checkpoint or compact model on a file")
    e.add_argument("model", help="checkpoint.npz or a compact model")
    e.add_argument("file", help="text in the format of the training corpus (labelled lines for a classifier)")
    e.add_argument("--vocab", default=None,
                   help="take the vocabulary from this checkpoint instead (default: the one the "
                   "compact model stores)")
    e.add_argument("--batch-size", type=int, default=10)
    e.add_argument("--bptt", type=int, default=35)
    e.add_argument("--numpy", action="store_true", help="run a compact model with the NumPy reference, not the kernel")
    e.add_argument("--json", default=None, metavar="FILE",
                   help="also write the result (loss, perplexity, tokens, <unk> rate) as JSON to FILE")
    e.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    e.set_defaults(func=cmd_eval)

    sub.add_parser("bench", help="Table 1 inference benchmark (see l0ref bench --help)", add_help=False)

    r = sub.add_parser("report", help="figures of one or more run directories")
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    r.add_argument("--out", required=True, help="output directory for the figures")
    r.add_argument("--overwrite", action="store_true", help="replace a report that --out holds already")
    r.set_defaults(func=cmd_report)
    return p


def main(argv=None) -> int:
    """Entry point of the ``l0ref`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv and argv[0] == "bench":
        from .experiments import table1
        try:
            return run_command("bench", lambda: table1.main(argv[1:]))
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
    return run_command(args.command, lambda: args.func(args))


def describe_os_error(err: OSError) -> str:
    """An operating-system error as one line: what failed, on which file, and why."""
    where = f"cannot use {err.filename!r}: " if getattr(err, "filename", None) else ""
    reason = err.strerror or str(err)
    hints = {errno.ENOSPC: "; free some space or choose another --out",
             errno.EROFS: "; choose a writable --out",
             errno.EACCES: "; check the permissions or choose another path",
             errno.EEXIST: "; choose another name or pass --overwrite",
             errno.ENOTDIR: "; a path component is a file, not a directory"}
    return f"{where}{reason} [Errno {err.errno}]{hints.get(err.errno, '')}"


def run_command(name: str, fn) -> int:
    """Run a command; every expected failure becomes one line on standard error (exit 2),
    Ctrl-C exits 130 (after a training run has saved where it stopped)."""
    try:
        return int(fn() or 0)
    except (ValueError, ImportError, FloatingPointError) as err:
        print(f"l0ref {name}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"l0ref {name}: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"l0ref {name}: error: out of memory; choose a smaller model (--emb, --hidden), batch or "
              f"vocabulary", file=sys.stderr)
        return 2
    except train_mod.Interrupted as stop:
        where = f"; saved where it stopped, resume with: l0ref train --resume {stop.checkpoint}" \
            if stop.checkpoint is not None else ""
        print(f"\nl0ref {name}: interrupted{where}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"\nl0ref {name}: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------


def _say(*parts) -> None:
    print(*parts, flush=True)


#: The options of ``l0ref train`` that are TrainConfig fields (the same names).
TRAIN_FIELDS = ("epochs", "batch_size", "bptt", "optimizer", "lr", "momentum", "lr_decay", "lr_decay_start",
                "dropout", "weight_decay", "clip", "log_alpha_init", "log_alpha_init_extra", "log_alpha_lr_scale",
                "init_range", "eval_every", "seed", "dtype", "lam1", "lam2", "target_macs", "target_params", "target_warmup",
                "target_lr", "target_lam2", "lam_vocab", "lam_preact", "lam_weights", "finetune",
                "dense_start")
#: The options of ``l0ref train`` that a checkpoint fixes, refused with ``--resume``: the model's and the
#: data's, and every train setting but the number of epochs.
RESUME_FIXED = ("cell", "emb", "hidden", "depth", "char", "max_vocab", "gates", "task", "max_len", "keep_case",
                *(f for f in TRAIN_FIELDS if f != "epochs"))


def _train_config(args) -> train_mod.TrainConfig:
    """TrainConfig from the options given; the demonstration's defaults, then TrainConfig's, for the rest."""
    given = {name: getattr(args, name) for name in TRAIN_FIELDS if getattr(args, name) is not None}
    targeted = any(k in given for k in ("target_macs", "target_params"))
    if targeted and any(k in given for k in ("lam1", "lam2")):
        raise UsageError("a size target (--target-macs, --target-params) replaces --lam1/--lam2: give one or the other")
    if targeted and getattr(args, "gates", None) and gates_mod.canonical_families(args.gates) != ("neurons",):
        raise UsageError("a size target works with the neuron gates alone (--gates neurons); give lambdas for "
                         "the other gate families")
    if not targeted and any(k in given for k in ("target_warmup", "target_lr", "target_lam2")):
        raise UsageError("--target-warmup, --target-lr and --target-lam2 apply with --target-macs or --target-params")
    kw = dict(DEMO_DEFAULTS)
    if getattr(args, "task", None) == "classify":
        if "bptt" in given:
            raise UsageError("--bptt applies to language models; a classifier reads each document whole "
                             "(up to --max-len tokens)")
        if targeted:
            raise UsageError("size targets (--target-macs, --target-params) apply to language models")
        kw.update(CLASSIFY_DEFAULTS)
    kw.update(OPTIMIZER_DEFAULTS.get(given.get("optimizer", kw["optimizer"]), {}))
    kw.update(given)
    return train_mod.TrainConfig(**kw)


def _model_spec(args) -> dict:
    defaults = {**DEFAULT_MODEL, **(CLASSIFY_MODEL if args.task == "classify" else {})}
    cell = args.cell or defaults["cell"]
    emb = defaults["emb"] if args.emb is None else args.emb
    hidden = defaults["hidden"] if args.hidden is None else args.hidden
    if emb < 1:
        raise UsageError(f"--emb must be >= 1, got {emb}")
    if any(n < 1 for n in hidden):
        raise UsageError(f"--hidden sizes must be >= 1, got {hidden}")
    options = {}
    if "depth" in CELLS[cell].OPTIONS:
        depth = DEFAULT_MODEL["depth"] if args.depth is None else args.depth
        if depth < 1:
            raise UsageError(f"--depth must be >= 1, got {depth}")
        options["depth"] = depth
    elif args.depth is not None:
        deep = " or ".join(c for c in sorted(CELLS) if "depth" in CELLS[c].OPTIONS)
        raise UsageError(f"--depth applies to --cell {deep} only")
    try:
        families = gates_mod.canonical_families(args.gates if args.gates is not None else "neurons")
    except ValueError as e:
        raise UsageError(f"--gates {args.gates}: {e}") from None
    return {"cell": cell, "emb_size": emb, "hidden_sizes": tuple(hidden), "cell_options": options,
            "gate_families": families}


def cmd_train(args) -> int:
    """Check the options, then :func:`l0ref.experiments.pipeline.run` does the rest."""
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise UsageError(f"--max-minutes must be > 0, got {args.max_minutes}")
    if args.timing_seconds < 0:
        raise UsageError(f"--timing-seconds must be >= 0, got {args.timing_seconds}")
    if args.log_every < 1:
        raise UsageError(f"--log-every must be >= 1, got {args.log_every}")
    if args.max_vocab is not None and args.max_vocab < 2:
        raise UsageError(f"--max-vocab must be >= 2, got {args.max_vocab} (a vocabulary of 1 holds only <unk>: "
                         f"every token would be <unk> and the perplexity 1)")
    progress = None if args.quiet else train_mod.Progress(sys.stderr, every=args.log_every)
    common = dict(progress=progress, timing_seconds=args.timing_seconds, overwrite=args.overwrite)
    if args.resume:
        fixed = [f"--{name.replace('_', '-')}" for name in RESUME_FIXED if getattr(args, name) not in (None, False)]
        if fixed:
            raise UsageError(f"{', '.join(fixed)} cannot change on --resume: the checkpoint fixes the model, the "
                             f"training settings and the vocabulary (only --epochs, --max-minutes, --out and the "
                             f"data files apply); start a new run to change them")
        out = Path(args.out) if args.out else Path(args.resume).resolve().parent
        corpus = {"train": args.train_path, "valid": args.valid_path, "test": args.test_path}
        spec = pipeline.RunSpec(out=out, resume=Path(args.resume), epochs=args.epochs, corpus=corpus,
                                max_minutes=args.max_minutes, **common)
    elif args.task == "classify":
        spec = _classify_spec(args, common)
    else:
        for flag, given in (("--max-len", args.max_len), ("--keep-case", args.keep_case)):
            if given:
                raise UsageError(f"{flag} applies to --task classify")
        corpus = {"train": args.train_path, "valid": args.valid_path, "test": args.test_path,
                  "level": "char" if args.char else "word",
                  "max_vocab": args.max_vocab if args.max_vocab is not None else
                  (DEFAULT_MAX_VOCAB if args.train_path is None else None)}
        for key in ("train", "valid", "test"):
            if corpus[key] is not None:
                corpus[key] = str(Path(corpus[key]).resolve())
        cfg = _train_config(args)       # validates the hyper-parameters before any data is read
        model_spec = _model_spec(args)
        if corpus["train"] is None and (corpus["valid"] is not None or corpus["test"] is not None):
            raise UsageError("--valid/--test need --train (the embedded corpus has its own splits)")
        max_minutes = args.max_minutes
        if max_minutes is None and corpus["train"] is None:
            max_minutes = DEMO_MAX_MINUTES
        out = Path(args.out) if args.out else Path("l0ref-runs") / time.strftime("%Y%m%d-%H%M%S")
        spec = pipeline.RunSpec(out=out, train=cfg, model=model_spec, corpus=corpus, max_minutes=max_minutes,
                                **common)
    pipeline.run(spec, log=_say)
    return 0


def _classify_spec(args, common) -> pipeline.RunSpec:
    """The run of ``l0ref train --task classify``: labelled files are required."""
    if args.train_path is None:
        raise UsageError("--task classify needs labelled files: --train FILE (and --valid FILE, --test FILE), "
                         "one 'label<TAB>text' or '__label__X text' line per document")
    if args.char:
        raise UsageError("--char applies to language models; a classifier reads words")
    if args.max_len is not None and args.max_len < 1:
        raise UsageError(f"--max-len must be >= 1, got {args.max_len}")
    corpus = {"train": args.train_path, "valid": args.valid_path, "test": args.test_path,
              "max_vocab": CLASSIFY_MAX_VOCAB if args.max_vocab is None else args.max_vocab,
              "max_len": CLASSIFY_MAX_LEN if args.max_len is None else args.max_len,
              "lowercase": not args.keep_case}
    for key in ("train", "valid", "test"):
        if corpus[key] is not None:
            corpus[key] = str(Path(corpus[key]).resolve())
    cfg = _train_config(args)
    model_spec = _model_spec(args)
    out = Path(args.out) if args.out else Path("l0ref-runs") / time.strftime("%Y%m%d-%H%M%S")
    return pipeline.RunSpec(out=out, task="classify", train=cfg, model=model_spec, corpus=corpus,
                            max_minutes=args.max_minutes, **common)


# ---------------------------------------------------------------------------------------
# compact, eval, report
# ---------------------------------------------------------------------------------------


def cmd_compact(args) -> int:
    from . import compact as compact_mod

    out = check_output_file(args.out, [args.checkpoint], args.overwrite)
    state = model_files.load_checkpoint(args.checkpoint)
    mc, params = state.model_config, state.params
    cm = compact_mod.compact(mc, params)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, mc.vocab_size, (pipeline.TIMING_STEPS, pipeline.TIMING_BATCH))
    if mc.n_classes is not None:
        from .experiments import classify
        lengths = rng.integers(1, pipeline.TIMING_STEPS + 1, pipeline.TIMING_BATCH)
        _say(classify.check_compaction(mc, params, cm, tokens, lengths)["message"])
        cm.meta.update(classify.compact_meta(state))
    else:
        _say(pipeline.check_compaction(mc, params, cm, tokens)["message"])
    pipeline.log_size_report(cm, _say)
    pipeline.save_compact(out, cm, state.vocab, state.level)
    _say(f"compact model: {args.out}")
    return 0


def cmd_eval(args) -> int:
    from . import compact as compact_mod
    from . import fast

    if args.batch_size < 1 or args.bptt < 1:
        raise UsageError(f"--batch-size and --bptt must be >= 1, got {args.batch_size}, {args.bptt}")
    path = Path(args.model)
    out = None if args.json is None else check_output_file(args.json, [args.model, args.file, args.vocab],
                                                           args.overwrite, "--json")
    if model_files.file_format(path) == train_mod.CHECKPOINT_FORMAT:
        for flag, given in (("--vocab", args.vocab), ("--numpy", args.numpy)):
            if given:
                raise UsageError(f"{flag} applies to compact models; a checkpoint carries its vocabulary and "
                                 f"runs the NumPy reference with test-time gates")
        state = train_mod.load_checkpoint(path)
        if state.vocab is None:
            raise ValueError(f"{path}: the checkpoint stores no vocabulary")
        vocab, level = data_mod.Vocab(state.vocab), state.level
        mc, params = state.model_config, state.params
        g = models.eval_gates(params)
        fn, what = None, "full model, test-time gates, NumPy"
        meta = {"classes": state.meta.get("classes"), **(state.meta.get("corpus") or {})}
    else:
        cm = compact_mod.load(path)
        if args.vocab:
            vocab, level = model_files.read_vocab(args.vocab)
        elif "vocab" in cm.meta:
            vocab, level = data_mod.Vocab(cm.meta["vocab"]), cm.meta.get("level", "word")
        else:
            raise ValueError(f"{path}: the compact model stores no vocabulary (pass --vocab CHECKPOINT)")
        if len(vocab) != cm.config.vocab_size:
            raise ValueError(f"the vocabulary has {len(vocab)} tokens, the model {cm.config.vocab_size}")
        mc, params, g = cm.config, cm.params, None
        meta = {"classes": cm.meta.get("classes"), **(cm.meta.get("tokenization") or {})}
        if args.numpy:
            fn, what = None, "compact model, NumPy"
        else:
            prepared = fast.prepare(cm.config, cm.params)
            fn = lambda c, p, tokens, s0: fast.run(prepared, tokens, s0)  # noqa: E731
            what = "compact model, numba kernel"
    if mc.n_classes is not None:
        return _eval_classifier(args, path, out, mc, params, g, vocab, meta, what)
    ids = vocab.encode(data_mod.tokenize(data_mod.read_text(args.file), level))
    if ids.size < 2:
        raise ValueError(f"{args.file}: fewer than 2 tokens")
    nll = train_mod.evaluate(mc, params, ids, batch_size=args.batch_size, bptt=args.bptt, gates=g, log_probs_fn=fn)
    unk = data_mod.unk_rate(ids, vocab)
    _say(f"{args.file}: {ids.size:,} {level} tokens ({unk:.1%} <unk>), {what}: "
         f"loss {nll:.4f} nats/token, perplexity {math.exp(nll):.2f}")
    if out is not None:
        write_json(out, {"file": str(args.file), "model": str(path), "what": what, "tokens": int(ids.size),
                                     "unk_rate": unk, "loss": nll, "perplexity": math.exp(nll)})
    return 0


def _eval_classifier(args, path, out, mc, params, gates, vocab, meta: dict, what: str) -> int:
    """``l0ref eval`` of a classifier (``experiments.classify.evaluate_file``)."""
    from .experiments import classify

    r = classify.evaluate_file(mc, params, args.file, vocab, meta, gates=gates,
                               kernel=what == "compact model, numba kernel", batch_size=max(args.batch_size, 1))
    _say(classify.format_evaluation(r, args.file, what))
    if out is not None:
        write_json(out, {"file": str(args.file), "model": str(path), "what": what, **r})
    return 0


def _report_loader(run_dir):
    """(config, params, test-time gates) of a run directory's checkpoint, for the report."""
    path = Path(run_dir) / "checkpoint.npz"
    if not path.exists():
        raise FileNotFoundError(str(path))
    st = model_files.load_checkpoint(path)
    return st.model_config, st.params, models.inference_gates(st.params)


def cmd_report(args) -> int:
    try:
        from . import report
    except ImportError as err:
        raise ImportError(f"{err}; install it with: pip install 'l0ref[plot]'") from None
    for d in args.run_dirs:
        d = Path(d)
        if d.is_file():
            raise UsageError(f"{str(d)!r} is a file; l0ref report takes run directories (written by l0ref train)")
        if not d.is_dir():
            raise UsageError(f"run directory not found: {str(d)!r}")
        if not any((d / f).exists() for f in RUN_FILES):
            raise UsageError(f"{str(d)!r} holds no run (none of {', '.join(RUN_FILES)}); "
                             f"l0ref report takes the directories that l0ref train writes")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; name a directory for the figures")
    if (out / "report.md").exists() and not args.overwrite:
        raise UsageError(f"--out {str(out)!r} holds a report already; choose another --out or pass --overwrite")
    try:
        written = report.make_report(args.run_dirs, args.out, loader=_report_loader)
    except ImportError as err:
        msg = str(err)
        if "l0ref[plot]" not in msg:
            msg += "; install it with: pip install 'l0ref[plot]'"
        raise ImportError(msg) from None
    for p in written:
        _say(f"wrote {p}")
    if not written:
        raise UsageError(f"no figure could be drawn from {', '.join(map(str, args.run_dirs))} (see the notes above)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
