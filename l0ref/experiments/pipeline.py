"""One run, start to finish: train -> evaluate -> compact -> check -> time -> summary.

:func:`run` is a function of its :class:`RunSpec` alone: the corpus, the model, the
training settings, the budget, the thread counts of the timing and where the files
go.  ``l0ref train``, ``benchmarks/ptb_experiments.py`` and any sweep call it and get
back the run summary (``summary.py``), which it also writes, with the other files of a
run directory::

    checkpoint.npz   everything needed to resume (``training/checkpoints.py``)
    history.json     one record per evaluation, and the summary
    summary.json     the summary
    compact.npz      the small dense model with its vocabulary (``compact.py``)

Nothing global is changed behind the caller's back: the timing sets numba's thread
count for its calls and restores it.  Each stage is a function of its own, so that a
new stage (a plot, another check) is one more function and one more line in :func:`run`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import compact as compact_mod
from .. import data as data_mod
from .. import fast, models, sizes, training
from ..tree import map_tree
from . import rundir
from . import summary as summary_mod

TIMING_BATCH, TIMING_STEPS = 10, 30   #: Wen et al. Table 1 times batch 10, 30 unrolled steps
SELECTIONS = ("last", "best_valid")


@dataclass(frozen=True)
class RunSpec:
    """Everything a run depends on.

    ``task``: ``"lm"`` (language modelling) or ``"classify"`` (a document classifier,
    ``classify.py``; then ``corpus`` gives labelled files, ``max_vocab``, ``max_len`` and
    ``lowercase``, and the training file gives the classes; a resumed run's task is its
    checkpoint's).
    ``corpus``: ``{"train", "valid", "test"}`` paths (None: the embedded corpus), ``level``
    and ``max_vocab``; or ``corpus_obj``, an already loaded ``data.Corpus`` (with a
    ``data_note`` saying what it is).  ``model``: ``{"cell", "emb_size", "hidden_sizes",
    "cell_options"}`` (the vocabulary size comes from the corpus).  ``resume``: a
    checkpoint to continue (then ``model``, ``train`` and ``corpus`` come from it, and
    ``epochs`` may raise the number of epochs).  ``selection``: which parameters are
    evaluated and compacted (``"last"``, or ``"best_valid"``: those of the epoch with the
    lowest validation perplexity).  ``threads``: numba threads of the timing's
    many-thread rows (None: numba's count when the run starts).
    """

    out: Path
    task: str = "lm"
    train: training.TrainConfig = field(default_factory=training.TrainConfig)
    model: dict = field(default_factory=dict)
    corpus: dict = field(default_factory=dict)
    corpus_obj: object = None
    data_note: str | None = None
    resume: Path | None = None
    epochs: int | None = None
    name: str | None = None
    max_minutes: float | None = None
    selection: str = "last"
    timing_seconds: float = 3.0
    threads: int | None = None
    plots: bool = False
    overwrite: bool = False          #: a fresh run may replace a run in ``out``
    progress: object = None          #: a ``training.Progress`` or None
    on_epoch: Callable | None = None  #: called with each history entry


def _corpus(spec: dict) -> data_mod.Corpus:
    """The corpus a run trains on: files, or the embedded default."""
    level = spec.get("level", "word")
    if spec.get("train") is None:
        if spec.get("valid") is not None or spec.get("test") is not None:
            raise ValueError("--valid/--test need --train (the embedded corpus has its own splits)")
        return data_mod.default_corpus(level, max_vocab=spec.get("max_vocab"))
    return data_mod.load_corpus(spec["train"], spec.get("valid"), spec.get("test"), level=level,
                                max_vocab=spec.get("max_vocab"))


def corpus_digest(corpus) -> str:
    """SHA-256 of the training text's token ids: a resumed run must see the same text."""
    return hashlib.sha256(np.ascontiguousarray(corpus.train, dtype=np.int64).tobytes()).hexdigest()


def resumed_state(spec: RunSpec):
    """The checkpoint ``spec.resume`` with ``spec.epochs`` applied (an error if the run is
    finished), and its corpus spec with the data files ``spec`` names instead."""
    state = training.load_checkpoint(spec.resume)
    if spec.epochs is not None:
        state.config = dataclasses.replace(state.config, epochs=spec.epochs)
    if state.epoch >= state.config.epochs:
        raise ValueError(f"{spec.resume}: the run is finished (epoch {state.epoch} of {state.config.epochs}); "
                         f"pass --epochs N with N > {state.epoch} to train on")
    corpus_spec = dict(state.meta.get("corpus") or {})
    if spec.corpus.get("train") is not None:
        corpus_spec.update({k: spec.corpus.get(k) for k in ("train", "valid", "test")})
    return state, corpus_spec


def start(spec: RunSpec, log: Callable[[str], None], resumed=None):
    """The state to train and its corpus: a fresh run, or the checkpoint ``spec.resume``
    (``resumed``: what :func:`resumed_state` gave for it)."""
    if spec.resume is not None:
        state, corpus_spec = resumed if resumed is not None else resumed_state(spec)
        corpus = spec.corpus_obj or _corpus(corpus_spec)
        if state.vocab is not None and corpus.vocab.to_list() != state.vocab:
            raise ValueError("the corpus' vocabulary differs from the checkpoint's; pass the same --train file")
        digest = state.meta.get("corpus_sha256")
        if digest is not None and digest != corpus_digest(corpus):
            raise ValueError("the training text differs from the one the checkpoint was trained on (same vocabulary, "
                             "other tokens or order); resume with the same --train file")
        log(f"resuming {spec.resume}: epoch {state.epoch}, window {state.position}, step {state.step}")
        return state, corpus, corpus_spec
    corpus = spec.corpus_obj or _corpus(spec.corpus)
    m = spec.model
    mc = models.ModelConfig(m["cell"], len(corpus.vocab), m["emb_size"], tuple(m["hidden_sizes"]),
                            dict(m.get("cell_options", {})), tuple(m.get("gate_families", ("neurons",))))
    training.check_fits(mc, spec.train)
    state = training.init_state(mc, spec.train, corpus.train.size, corpus.vocab.to_list(), corpus.level)
    state.meta["corpus"] = dict(spec.corpus)
    state.meta["corpus_sha256"] = corpus_digest(corpus)
    return state, corpus, spec.corpus


def describe_run(state, corpus, source: str, out: Path, reference: dict, log) -> None:
    """The lines a run prints before training: corpus, model, penalty, settings."""
    mc, cfg = state.model_config, state.config
    summ = corpus.summary()

    def split(s):
        ids = getattr(corpus, s)
        unk = f" ({data_mod.unk_rate(ids, corpus.vocab):.1%} <unk>)" if s != "train" and _has(ids, 1) else ""
        return f"{s} {summ[s + '_tokens']:,} tokens{unk}"
    log(f"corpus: {source}, {summ['level']} level, vocabulary {summ['vocab_size']}, "
        + ", ".join(split(s) for s in ("train", "valid", "test") if f"{s}_tokens" in summ))
    sizes = " x ".join(str(n) for n in mc.hidden_sizes)
    opts = "".join(f", {k} {v}" for k, v in mc.cell_options.items())
    log(f"model: {mc.cell.upper()}, embedding {mc.emb_size}, hidden {sizes}{opts}, "
        f"{models.n_params(mc, state.params):,} parameters, {cfg.dtype}, gates: {', '.join(mc.gate_families)}")
    w = state.penalty_weights
    if isinstance(w, training.TargetController):
        what = "multiply-adds per token" if w.measure == "macs" else "embedding and recurrent weights"
        log(f"penalty: a size target, {w.target:g} of the full model's {what}: the Lagrangian lam1 (s - t) + "
            f"lam2 (s - t)^2 on the expected size s, the target t ramped in over {w.warmup:.0%} of the run, "
            f"multipliers by gradient ascent (lr {w.lr:g}; now {w.lam1:.3g}, {w.lam2:.3g})")
    else:
        lam = ", ".join(f"layer {l + 1}: lam1 {a:.3g} lam2 {b:.3g}" for l, (a, b) in enumerate(zip(w.lam1, w.lam2)))
        log(f"penalty (Eq. 7), lambdas = multiplier x 0.08/N with N = {state.n_train_tokens:,}: {lam}")
    log(f"training: {cfg.optimizer} lr {cfg.lr:g} (/{cfg.lr_decay:g} per epoch after {cfg.lr_decay_start}), "
        f"clip {cfg.clip:g}, dropout {cfg.dropout:g}, weight decay {cfg.weight_decay:g}, "
        f"log_alpha lr x{cfg.log_alpha_lr_scale:g}, batch {cfg.batch_size} x bptt {cfg.bptt}, "
        f"{cfg.epochs} epochs, seed {cfg.seed}{cfg.phases()}")
    which = "valid" if _has(corpus.valid) else "train"
    log(f"reference perplexities on {which}: uniform {reference['uniform']:.1f}, unigram {reference['unigram']:.1f}")
    log(f"run directory: {out}")


def _has(ids, at_least: int = 2) -> bool:
    return ids is not None and np.size(ids) >= at_least


def history_doc(state, summary: dict | None = None) -> dict:
    doc = {"history": state.history, "config": {"model": state.model_config.to_dict(),
                                                "train": state.config.to_dict()}}
    if summary is not None:
        doc["summary"] = summary
    return doc


def _valid_score(entry: dict) -> float | None:
    """What ``best_valid`` minimizes: the validation perplexity, or a classifier's error rate."""
    if entry.get("valid_acc") is not None:
        return 1.0 - entry["valid_acc"]
    return entry.get("valid_ppl")


def train(spec: RunSpec, state, corpus, out: Path, log, task=None) -> dict:
    """Train within the budget, writing ``history.json`` after every record and the
    checkpoint after every epoch.  Returns ``{"params", "epoch"}``: the parameters that
    ``spec.selection`` picks (``best_valid``: the lowest validation perplexity, or the
    highest validation accuracy, among the records after any dense start) and the epoch
    they come from.  ``task``: the training
    task (default: language modelling on ``corpus``)."""
    best = {"score": math.inf, "epoch": None, "params": None}

    def on_record(st):
        summary_mod.write_json(out / "history.json", history_doc(st))
        e = st.history[-1]
        score = _valid_score(e)
        # A dense start's epochs evaluate the unpruned network, not one that compacts: not candidates.
        if spec.selection == "best_valid" and score is not None and score < best["score"] \
                and not e.get("dense_warmup"):
            best.update(score=score, epoch=e["epoch"], params=map_tree(np.copy, st.params))
        if spec.on_epoch is not None:
            spec.on_epoch(e)

    max_seconds = None if spec.max_minutes is None else 60.0 * spec.max_minutes
    if task is None:
        task = training.LanguageModeling(corpus.train, corpus.valid)
    training.fit(state, task, checkpoint_path=out / "checkpoint.npz", progress=spec.progress,
                 max_seconds=max_seconds, on_record=on_record)
    if state.epoch < state.config.epochs:
        log(f"stopped by the time budget ({spec.max_minutes:g} min) in epoch {state.epoch + 1}; "
            f"resume with: l0ref train --resume {out / 'checkpoint.npz'}")
    log(f"checkpoint: {out / 'checkpoint.npz'}")
    if spec.selection == "best_valid" and best["params"] is not None:
        return {"params": best["params"], "epoch": best["epoch"]}
    return {"params": state.params, "epoch": state.epoch}


def perplexities(state, params, corpus) -> dict:
    """``valid_ppl`` and ``test_ppl`` with test-time gates (None for a missing split)."""
    cfg, g = state.config, models.eval_gates(params)
    out = {}
    for split in ("valid", "test"):
        ids = getattr(corpus, split)
        out[f"{split}_ppl"] = math.exp(training.evaluate(state.model_config, params, ids, batch_size=cfg.eval_batch_size,
                                                         bptt=cfg.bptt, gates=g)) if _has(ids) else None
    return out


def timing_tokens(corpus) -> np.ndarray:
    """Table 1's batch (10 sequences x 30 steps) from the test text, or the training text."""
    source = corpus.test if _has(corpus.test, TIMING_BATCH * (TIMING_STEPS + 1) + 1) else corpus.train
    return data_mod.batchify(source, TIMING_BATCH)[:TIMING_STEPS]


def check_compaction(mc, params, cm, tokens) -> dict:
    """Compare, on ``tokens`` (T, B), the masked full model (NumPy, test-time gates) with the
    compact model in NumPy and in the numba kernel.  ``ValueError`` if they differ by more
    than rounding: 1e-9 (float64) / 2e-4 (float32) in log-probability."""
    ref, _ = models.log_probs(mc, params, tokens, gates=models.eval_gates(params))
    small, _ = models.log_probs(cm.config, cm.params, tokens)
    ker, _ = fast.log_probs(cm.config, cm.params, tokens)
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


def median_times(fns: dict, budget: float = 3.0, min_rounds: int = 5, max_rounds: int = 200) -> dict:
    """Median seconds per call of each function, timed in interleaved rounds (so that a
    change of machine load hits all alike) until ``budget`` seconds or ``max_rounds``."""
    times = {k: [] for k in fns}
    begin = time.perf_counter()
    for r in range(max_rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
        if r + 1 >= min_rounds and time.perf_counter() - begin > budget:
            break
    return {k: float(np.median(v)) for k, v in times.items()}


def time_compaction(mc, params, cm, tokens, budget: float = 3.0, threads: int | None = None) -> dict:
    """Inference time of one batch: compact vs full-size, both in the numba kernel.

    The full-size model is the trained network with nothing removed and all gates one
    (``compact`` with all-one gates): the same kernel on the original shapes.  Time does
    not depend on the values, so this is what the masked full model costs in the kernel.
    Both run with one numba thread (the work saved, undisturbed by fork-join costs, which
    dominate batches this small on a busy machine) and with ``threads`` (default numba's
    current count, restored after every call); the masked NumPy reference is timed too.
    """
    import numba

    full = compact_mod.compact(mc, params, [np.ones(n, params["emb"].dtype) for n in mc.group_sizes])
    g = models.eval_gates(params)
    before = numba.get_num_threads()
    threads = before if threads is None else int(threads)

    def kernel(c, n):
        prepared = fast.prepare(c.config, c.params)     # weights laid out once, as on loading

        def go():
            numba.set_num_threads(n)
            try:
                fast.run(prepared, tokens)
            finally:
                numba.set_num_threads(before)
        return go

    fns = {"compact_kernel_1": kernel(cm, 1), "full_kernel_1": kernel(full, 1)}
    if threads > 1:
        fns.update(compact_kernel_n=kernel(cm, threads), full_kernel_n=kernel(full, threads))
    reference = {"full_numpy_masked": lambda: models.log_probs(mc, params, tokens, gates=g)}
    for fn in [*fns.values(), *reference.values()]:  # compile / warm up
        fn()
    # The NumPy reference is timed after the kernels, not between them: after a product,
    # OpenBLAS's idle threads busy-wait for ~0.1 s (by default) and take the cores from
    # numba's threads (measured here: 2-thread kernel 4.3 ms alone, 8.7 ms interleaved).
    t = median_times(fns, budget=budget, min_rounds=3)
    t.update(median_times(reference, budget=budget / 3, min_rounds=3))
    speedup = t["full_kernel_1"] / t["compact_kernel_1"]
    T, B = tokens.shape
    ms = lambda k: f"{1e3 * t[k]:8.2f} ms"  # noqa: E731
    many = threads > 1
    lines = [f"inference time per batch ({B} sequences x {T} steps, median):",
             "                                          1 thread" + (f"   {threads} threads" if many else ""),
             f"  full-size model, numba kernel       {ms('full_kernel_1')}"
             + (f" {ms('full_kernel_n')}" if many else "") + "   (nothing removed)",
             f"  compact model,   numba kernel       {ms('compact_kernel_1')}"
             + (f" {ms('compact_kernel_n')}" if many else ""),
             f"  full-size model, NumPy (masked)     {ms('full_numpy_masked')}   (the reference forward)",
             f"speedup of the compact model: {speedup:.2f}x (same kernel, 1 thread)"
             + (f", {t['full_kernel_n'] / t['compact_kernel_n']:.2f}x ({threads} threads)" if many else "")
             + f", {t['full_numpy_masked'] / t['compact_kernel_1']:.2f}x vs the NumPy reference"]
    return {"message": "\n".join(lines), "times": t, "speedup": speedup, "threads": threads}


def log_size_report(cm, log):
    """Log the compact model's size report and its constant gates; returns the report."""
    st = sizes.size_report(cm)
    log("")
    log(sizes.format_size_report(st))
    constant = sizes.format_constant_gates(cm)
    if constant:
        log(constant)
    return st


def save_compact(path: Path, cm, vocab, level: str) -> None:
    """The compact model (``compact.save``), its vocabulary and level in its header."""
    if vocab is not None:
        cm.meta.update(vocab=list(vocab), level=level)
    compact_mod.save(path, cm)


def size_target(state, params, report) -> dict:
    """For a run with a size target: the target, the expected fraction at the end and the
    realized one (the compact model's, test-time gates) of its measure; {} otherwise."""
    w = state.penalty_weights
    if not isinstance(w, training.TargetController):
        return {}
    from .. import penalties
    mc = state.model_config
    expected = w.expected_fraction(mc, models.neuron_log_alpha(params))[0]
    if w.measure == "macs":      # what compaction kept (penalties.realized_size counts the same)
        realized = report.macs_after / report.macs_before
    else:
        realized = penalties.realized_size(mc, models.inference_gates(params), "params") / \
            penalties.full_size(mc, "params")
    return {"target": {"measure": w.measure, "target": w.target, "expected": expected, "realized": realized,
                       "multipliers": [w.lam1, w.lam2]}}


def plots(state, params, out: Path, name: str, data_note: str | None) -> None:
    """The run's figures: live neurons over training and the learned structure."""
    from .. import report
    mc = state.model_config
    note = f" ({data_note})" if data_note else ""
    report.plot_live_neurons(state.history, out / "live.png", sizes=mc.group_sizes,
                             title=f"{name}: live neurons ({mc.cell.upper()}){note}")
    report.plot_structure(mc, params, out / "structure.png", models.inference_gates(params),
                          title=f"{name}: kept structure")
    if "preact" in mc.gate_families:
        report.plot_constant_gates(mc, params, out / "constant_gates.png", title=f"{name}: constant gates")


TASKS = ("lm", "classify")


def run(spec: RunSpec, log: Callable[[str], None] = print) -> dict:
    """Run ``spec`` start to finish; returns (and writes) the run summary (``summary.py``)."""
    if spec.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {spec.task!r}")
    if spec.selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {spec.selection!r}")
    out = Path(spec.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a directory; name a run directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with rundir.RunLock(out):
            continuing = spec.resume is not None and out.resolve() == Path(spec.resume).resolve().parent
            if not continuing:
                rundir.check_new_run(out, spec.overwrite)
            return _run_locked(spec, out, log)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()              # a run refused before it wrote anything leaves no directory behind
        raise


def _run_locked(spec: RunSpec, out: Path, log) -> dict:
    t0 = time.perf_counter()
    resumed = resumed_state(spec) if spec.resume is not None else None   # the checkpoint, read once
    task = spec.task if resumed is None else resumed[0].model_config.task
    if task == "classify":
        from . import classify
        return classify.run_locked(spec, out, log, resumed)
    state, corpus, corpus_spec = start(spec, log, resumed)
    need = data_mod.min_tokens(state.config.batch_size, state.config.bptt)
    if corpus.train.size < need:
        raise ValueError(f"the training text has {corpus.train.size} tokens; batch size {state.config.batch_size} "
                         f"and bptt {state.config.bptt} need at least {need}")
    name = spec.name or out.resolve().name
    source = spec.data_note or ("embedded corpus (Python's pydoc_data documentation)"
                                if corpus_spec.get("train") is None else corpus_spec["train"])
    ref = training.reference_perplexities(corpus.train, corpus.valid if _has(corpus.valid) else corpus.train,
                                          len(corpus.vocab))
    describe_run(state, corpus, source, out, ref, log)

    chosen = train(spec, state, corpus, out, log)
    params, mc, cfg = chosen["params"], state.model_config, state.config
    ppl = perplexities(state, params, corpus)
    line = ", ".join(f"{s} {ppl[s + '_ppl']:.2f}" for s in ("valid", "test") if ppl[f"{s}_ppl"] is not None)
    log(f"\nperplexity with test-time gates (Eq. 10, 11): {line} "
        f"(unigram {ref['unigram']:.1f}, uniform {ref['uniform']:.0f})")

    cm = compact_mod.compact(mc, params)
    tokens = timing_tokens(corpus)
    check = check_compaction(mc, params, cm, tokens)
    log(check["message"])
    st = log_size_report(cm, log)
    speed = time_compaction(mc, params, cm, tokens, budget=spec.timing_seconds, threads=spec.threads)
    log("")
    log(speed["message"])
    save_compact(out / "compact.npz", cm, state.vocab, state.level)
    log(f"compact model: {out / 'compact.npz'}")
    if spec.plots:
        plots(state, params, out, name, spec.data_note)

    summary = summary_mod.make(
        name=name, label=f"lam1={'/'.join(f'{x:g}' for x in cfg.lam1)} lam2={'/'.join(f'{x:g}' for x in cfg.lam2)}",
        cell=mc.cell, sizes=list(mc.group_sizes), live=[len(k) for k in cm.kept],
        lam1=list(cfg.lam1), lam2=list(cfg.lam2), n_train_tokens=state.n_train_tokens,
        steps=state.step, epochs=state.epoch, stopped_by_time=state.epoch < cfg.epochs,
        selection=spec.selection, selected_epoch=chosen["epoch"], **ppl, reference_ppl=ref,
        expected_nonzero=training.expected_size(mc, params)["expected_nonzero"],
        params_before=st.params_before, params_after=st.params_after,
        macs_before=st.macs_before, macs_after=st.macs_after, compact_max_abs_diff=check["max_abs_diff"],
        timing=speed["times"], speedup=speed["speedup"], threads=speed["threads"],
        train_seconds=state.elapsed, wall_seconds=time.perf_counter() - t0,
        config={"model": mc.to_dict(), "train": cfg.to_dict()}, data=source, gate_families=list(mc.gate_families),
        constant_gates=sizes.constant_gates(cm),
        sparse_matrices=[sorted(layer["sparse"]) for layer in cm.structure], **size_target(state, params, st))
    if "target" in summary:
        t = summary["target"]
        log(f"size target: {t['measure']} {t['target']:g}; expected {t['expected']:.4f}, realized (compact model) "
            f"{t['realized']:.4f}, {100 * (t['realized'] / t['target'] - 1):+.1f}% of the target")
    summary_mod.write(out / "summary.json", summary)
    summary_mod.write_json(out / "history.json", history_doc(state, summary))
    log(f"done in {summary['wall_seconds']:.0f} s; files in {out}/: checkpoint.npz, history.json, "
        f"summary.json, compact.npz")
    return summary


__all__ = ["RunSpec", "run", "check_compaction", "time_compaction", "save_compact", "median_times",
           "timing_tokens", "perplexities", "TIMING_BATCH", "TIMING_STEPS"]
