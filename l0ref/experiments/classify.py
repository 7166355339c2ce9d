"""One classification run, start to finish (``l0ref train --task classify``): read the
labelled files -> train -> accuracy and confusion matrix with test-time gates -> compact
-> check (masked full model == compact NumPy == numba kernel) -> time -> summary.

The run directory and its files are the language model's (``pipeline.py``): the
checkpoint (with the vocabulary, the classes and the tokenization settings in its notes,
so that ``--resume`` and ``l0ref eval`` read text the same way), ``history.json``,
``summary.json`` and ``compact.npz``.  The summary has the language model's keys
(perplexities None) and ``valid_acc``, ``test_acc``, ``confusion`` (test, rows the true
class), ``classes`` and ``timing_batch`` (the timed batch's documents and steps).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from .. import compact as compact_mod
from .. import data as data_mod
from .. import fast, models, sizes, training
from ..cells import get_cell
from ..models import classifier
from . import pipeline
from . import summary as summary_mod

TIMING_DOCS = 32            #: documents of the timed batch (a training batch of the classifier's defaults)
CORPUS_KEYS = ("train", "valid", "test", "max_vocab", "max_len", "lowercase")


def load_corpus(spec: dict) -> data_mod.LabelledCorpus:
    """The labelled corpus of a run's ``corpus`` spec (files and tokenization settings)."""
    if spec.get("train") is None:
        raise ValueError("classification needs labelled files: --train FILE (and --valid, --test); "
                         "the embedded corpus is for language models")
    return data_mod.load_labelled(spec["train"], spec.get("valid"), spec.get("test"),
                                  max_vocab=spec.get("max_vocab"), max_len=spec.get("max_len"),
                                  lowercase=spec.get("lowercase", True))


def corpus_digest(corpus: data_mod.LabelledCorpus) -> str:
    """SHA-256 of the training documents' ids, lengths and labels."""
    h = hashlib.sha256()
    for a in (np.concatenate(corpus.train.docs), corpus.train.lengths, corpus.train.labels):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()


def start(spec, log, resumed=None):
    """The state to train and its corpus: a fresh run or the checkpoint ``spec.resume``
    (``resumed``: what ``pipeline.resumed_state`` gave for it)."""
    if spec.resume is not None:
        state, corpus_spec = resumed if resumed is not None else pipeline.resumed_state(spec)
        if state.model_config.task != "classify":
            raise ValueError(f"{spec.resume} is a language model's checkpoint, not a classifier's")
        corpus = load_corpus(corpus_spec)
        if corpus.vocab.to_list() != state.vocab or corpus.classes != state.meta.get("classes"):
            raise ValueError("the corpus' vocabulary or classes differ from the checkpoint's; pass the same --train file")
        if state.meta.get("corpus_sha256") != corpus_digest(corpus):
            raise ValueError("the training documents differ from those the checkpoint was trained on; resume with "
                             "the same --train file")
        log(f"resuming {spec.resume}: epoch {state.epoch}, batch {state.position}, step {state.step}")
        return state, corpus, corpus_spec
    corpus_spec = {k: spec.corpus.get(k) for k in CORPUS_KEYS}
    corpus = load_corpus(corpus_spec)
    m = spec.model
    mc = models.ModelConfig(m["cell"], len(corpus.vocab), m["emb_size"], tuple(m["hidden_sizes"]),
                            dict(m.get("cell_options", {})), tuple(m.get("gate_families", ("neurons",))),
                            len(corpus.classes))
    training.check_fits(mc, spec.train, steps=int(corpus.train.lengths.max()))
    state = training.init_state(mc, spec.train, len(corpus.train), corpus.vocab.to_list())
    state.meta.update(corpus=corpus_spec, corpus_sha256=corpus_digest(corpus), classes=list(corpus.classes))
    return state, corpus, corpus_spec


def describe_run(state, corpus, source: str, out: Path, log) -> None:
    """The lines a run prints before training: data, model, penalty, settings."""
    mc, cfg, summ = state.model_config, state.config, corpus.summary()
    counts = np.bincount(corpus.train.labels, minlength=len(corpus.classes))
    classes = ", ".join(f"{c} {n:,}" for c, n in zip(corpus.classes, counts))
    splits = ", ".join(f"{s} {summ[s + '_docs']:,} documents ({summ[s + '_tokens']:,} tokens, "
                       f"{summ[s + '_truncated']:,} cut to {summ['max_len']})" for s in ("train", "valid", "test")
                       if f"{s}_docs" in summ)
    cap = "" if summ["max_vocab"] is None else f" (at most {summ['max_vocab']:,})"
    case = "lowercased" if summ["lowercase"] else "case kept"
    log(f"data: {source}; {len(corpus.classes)} classes ({classes}); {splits}; vocabulary "
        f"{summ['vocab_size']:,}{cap}, {case}")
    sizes = " x ".join(str(n) for n in mc.hidden_sizes)
    opts = "".join(f", {k} {v}" for k, v in mc.cell_options.items())
    log(f"model: {mc.cell.upper()} classifier, embedding {mc.emb_size}, hidden {sizes}{opts}, last state -> "
        f"{mc.n_classes} classes, {models.n_params(mc, state.params):,} parameters, {cfg.dtype}, "
        f"gates: {', '.join(mc.gate_families)}")
    w = state.penalty_weights
    lam = ", ".join(f"layer {l + 1}: lam1 {a:.3g} lam2 {b:.3g}" for l, (a, b) in enumerate(zip(w.lam1, w.lam2)))
    log(f"penalty (Eq. 7), lambdas = multiplier x 0.08/N with N = {state.n_train_tokens:,} training documents: {lam}")
    log(f"training: {cfg.optimizer} lr {cfg.lr:g} (/{cfg.lr_decay:g} per epoch after {cfg.lr_decay_start}), "
        f"clip {cfg.clip:g}, dropout {cfg.dropout:g}, weight decay {cfg.weight_decay:g}, "
        f"log_alpha lr x{cfg.log_alpha_lr_scale:g}, batch {cfg.batch_size} documents, {cfg.epochs} epochs, "
        f"seed {cfg.seed}{cfg.phases()}")
    majority = counts.max() / counts.sum()
    log(f"majority class: {corpus.classes[int(np.argmax(counts))]} ({majority:.1%} of train)")
    log(f"run directory: {out}")


def accuracies(mc, params, corpus, batch_size: int) -> dict:
    """Accuracy (and the test confusion matrix) of ``params`` with test-time gates."""
    g = models.eval_gates(params)
    out = {}
    for split in ("valid", "test"):
        s = getattr(corpus, split)
        r = training.evaluate_classifier(mc, params, s, batch_size=batch_size, gates=g) if s is not None else None
        out[f"{split}_acc"] = None if r is None else r["accuracy"]
        out[f"{split}_loss"] = None if r is None else r["loss"]
        if split == "test" and r is not None:
            out["confusion"] = r["confusion"].tolist()
    return out


def format_confusion(confusion, classes) -> str:
    """A confusion matrix as a text table (rows: true class, columns: predicted)."""
    confusion = np.asarray(confusion)
    w = max(6, max(len(c) for c in classes) + 1)
    head = " " * w + "".join(f"{c[:w - 1]:>{w}}" for c in classes)
    rows = [f"{c[:w - 1]:<{w}}" + "".join(f"{int(n):>{w}}" for n in row) for c, row in zip(classes, confusion)]
    return "\n".join(["confusion matrix on test (rows: true class, columns: predicted)", head, *rows])


def timing_batch(corpus) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch of :data:`TIMING_DOCS` documents (test, else train; drawn with seed 0,
    padded to the longest): what the timing and the compaction check run."""
    split = corpus.test if corpus.test is not None else corpus.train
    order = np.random.default_rng(0).permutation(len(split))[:TIMING_DOCS]
    return data_mod.pad(split.docs, np.sort(order))


def check_compaction(mc, params, cm, tokens, lengths) -> dict:
    """The masked full model (NumPy, test-time gates), the compact model in NumPy and in
    the kernel, on one batch: ``ValueError`` unless equal to rounding (as
    ``pipeline.check_compaction``)."""
    ref = classifier.log_probs(mc, params, tokens, lengths, models.eval_gates(params))
    small = classifier.log_probs(cm.config, cm.params, tokens, lengths)
    ker = fast.classify(fast.prepare(cm.config, cm.params), tokens, lengths)
    d_np, d_k = float(np.max(np.abs(ref - small))), float(np.max(np.abs(ref - ker)))
    tol = 2e-4 if ref.dtype == np.float32 else 1e-9
    where = f"{tokens.shape[1]} documents of up to {tokens.shape[0]} tokens"
    if not (d_np <= tol and d_k <= tol):
        raise ValueError(f"compaction check FAILED on {where}: max |log p difference| {d_np:.3g} (NumPy compact), "
                         f"{d_k:.3g} (numba kernel) > {tol:g}")
    return {"message": f"compaction check: compact model == masked full model on {where}: max |log p difference| "
                       f"{d_np:.2g} (NumPy compact), {d_k:.2g} (numba kernel), tolerance {tol:g} ({ref.dtype})",
            "max_abs_diff": max(d_np, d_k), "tolerance": tol}


def time_compaction(mc, params, cm, tokens, lengths, budget: float = 3.0) -> dict:
    """Seconds per batch, one numba thread: the compact and the full-size classifier in the
    kernel (the full one is the trained network with all gates one, as
    ``pipeline.time_compaction``), and the masked NumPy reference."""
    import numba

    full = compact_mod.compact(mc, params, [np.ones(n, params["emb"].dtype) for n in mc.group_sizes])
    g = models.eval_gates(params)
    before = numba.get_num_threads()

    def kernel(c):
        prepared = fast.prepare(c.config, c.params)

        def go():
            numba.set_num_threads(1)
            try:
                fast.classify(prepared, tokens, lengths)
            finally:
                numba.set_num_threads(before)
        return go

    fns = {"compact_kernel_1": kernel(cm), "full_kernel_1": kernel(full)}
    reference = {"full_numpy_masked": lambda: classifier.log_probs(mc, params, tokens, lengths, g)}
    for fn in [*fns.values(), *reference.values()]:
        fn()
    t = pipeline.median_times(fns, budget=budget, min_rounds=3)
    t.update(pipeline.median_times(reference, budget=budget / 3, min_rounds=3))
    speedup = t["full_kernel_1"] / t["compact_kernel_1"]
    T, B = tokens.shape
    ms = lambda k: f"{1e3 * t[k]:8.2f} ms"  # noqa: E731
    lines = [f"inference time per batch ({B} documents, {int(lengths.sum()):,} tokens padded to {T} steps, "
             f"1 thread, median):",
             f"  full-size model, numba kernel   {ms('full_kernel_1')}   (nothing removed)",
             f"  compact model,   numba kernel   {ms('compact_kernel_1')}",
             f"  full-size model, NumPy (masked) {ms('full_numpy_masked')}   (the reference forward)",
             f"speedup of the compact model: {speedup:.2f}x (same kernel), "
             f"{t['full_numpy_masked'] / t['compact_kernel_1']:.2f}x vs the NumPy reference"]
    return {"message": "\n".join(lines), "times": t, "speedup": speedup, "threads": 1}


def run_locked(spec, out: Path, log, resumed=None) -> dict:
    """:func:`pipeline.run` for ``task="classify"`` (the directory is locked and checked)."""
    t0 = time.perf_counter()
    state, corpus, corpus_spec = start(spec, log, resumed)
    name = spec.name or out.resolve().name
    source = spec.data_note or corpus_spec["train"]
    describe_run(state, corpus, source, out, log)
    task = training.Classification(corpus.train, corpus.valid)
    chosen = pipeline.train(spec, state, corpus, out, log, task=task)
    params, mc, cfg = chosen["params"], state.model_config, state.config
    acc = accuracies(mc, params, corpus, cfg.eval_batch_size)
    line = ", ".join(f"{s} {100 * acc[s + '_acc']:.2f}%" for s in ("valid", "test") if acc[f"{s}_acc"] is not None)
    log(f"\naccuracy with test-time gates (Eq. 10, 11): {line or 'no valid/test documents'}")
    if "confusion" in acc:
        log(format_confusion(acc["confusion"], corpus.classes))

    cm = compact_mod.compact(mc, params)
    tokens, lengths = timing_batch(corpus)
    check = check_compaction(mc, params, cm, tokens, lengths)
    log(check["message"])
    st = pipeline.log_size_report(cm, log)
    speed = time_compaction(mc, params, cm, tokens, lengths, budget=spec.timing_seconds)
    log("")
    log(speed["message"])
    cm.meta.update(compact_meta(state))
    pipeline.save_compact(out / "compact.npz", cm, state.vocab, "word")
    log(f"compact model: {out / 'compact.npz'}")
    if spec.plots:
        pipeline.plots(state, params, out, name, spec.data_note)

    live = [len(k) for k in cm.kept]
    summary = summary_mod.make(
        name=name, task="classify", label=f"lam1={'/'.join(f'{x:g}' for x in cfg.lam1)} "
        f"lam2={'/'.join(f'{x:g}' for x in cfg.lam2)}",
        cell=mc.cell, sizes=list(mc.group_sizes), live=live, lam1=list(cfg.lam1), lam2=list(cfg.lam2),
        n_train_tokens=state.n_train_tokens, steps=state.step, epochs=state.epoch,
        stopped_by_time=state.epoch < cfg.epochs, selection=spec.selection, selected_epoch=chosen["epoch"],
        valid_ppl=None, test_ppl=None, **acc, classes=list(corpus.classes),
        expected_nonzero=training.expected_size(mc, params)["expected_nonzero"],
        params_before=st.params_before, params_after=st.params_after,
        macs_before=st.macs_before, macs_after=st.macs_after, compact_max_abs_diff=check["max_abs_diff"],
        timing=speed["times"], speedup=speed["speedup"], threads=speed["threads"],
        timing_batch={"documents": int(tokens.shape[1]), "steps": int(tokens.shape[0]),
                      "tokens": int(lengths.sum())},
        train_seconds=state.elapsed, wall_seconds=time.perf_counter() - t0,
        config={"model": mc.to_dict(), "train": cfg.to_dict()}, data=source, gate_families=list(mc.gate_families),
        constant_gates=sizes.constant_gates(cm), nonzero_weights=nonzero_weights(mc, params, cm),
        vocabulary_kept=vocabulary_kept(mc, params),
        sparse_matrices=[sorted(layer["sparse"]) for layer in cm.structure])
    summary_mod.write(out / "summary.json", summary)
    summary_mod.write_json(out / "history.json", pipeline.history_doc(state, summary))
    log(f"done in {summary['wall_seconds']:.0f} s; files in {out}/: checkpoint.npz, history.json, "
        f"summary.json, compact.npz")
    return summary


def evaluate_file(mc, params, path, vocab, meta: dict, gates=None, kernel: bool = False, batch_size: int = 64) -> dict:
    """Accuracy, loss and confusion matrix of a classifier on a labelled file, read with
    the vocabulary, classes and tokenization (``meta``: ``classes``, ``max_len``,
    ``lowercase``) it was trained with; ``kernel``: a compact model in ``fast.classify``."""
    classes = meta.get("classes")
    if not classes or len(classes) != mc.n_classes:
        raise ValueError(f"the model stores no class names for its {mc.n_classes} classes")
    labels, docs = data_mod.labelled.read_labelled(path, meta.get("lowercase", True))
    split = data_mod.labelled.encode_split(labels, docs, vocab, classes, meta.get("max_len"), str(path))
    fn = None
    if kernel:
        prepared = fast.prepare(mc, params)
        fn = lambda c, p, tokens, lengths: fast.classify(prepared, tokens, lengths)  # noqa: E731
    r = training.evaluate_classifier(mc, params, split, batch_size=batch_size, gates=gates, log_probs_fn=fn)
    return {"documents": len(split), "tokens": split.n_tokens, "truncated": split.truncated,
            "max_len": meta.get("max_len"), "unk_rate": data_mod.labelled.unk_rate(split, vocab),
            "loss": r["loss"], "accuracy": r["accuracy"], "classes": list(classes),
            "confusion": r["confusion"].tolist()}


def format_evaluation(r: dict, path, what: str) -> str:
    """:func:`evaluate_file`'s result as the lines ``l0ref eval`` prints."""
    head = (f"{path}: {r['documents']:,} documents, {r['tokens']:,} tokens ({r['unk_rate']:.1%} <unk>, "
            f"{r['truncated']:,} cut to {r['max_len']}), {what}: accuracy {100 * r['accuracy']:.2f}%, "
            f"loss {r['loss']:.4f} nats per document")
    return head + "\n" + format_confusion(r["confusion"], r["classes"]).replace(" on test", "")


def compact_meta(state) -> dict:
    """What a compact classifier keeps beside its vocabulary to read new text as training
    did: the class names and the tokenization settings."""
    corpus = state.meta.get("corpus") or {}
    return {"classes": list(state.meta.get("classes") or []),
            "tokenization": {k: corpus.get(k) for k in ("max_len", "lowercase")}}


def nonzero_weights(mc, params, cm) -> dict:
    """Weights of the recurrent layers (every layer's matrices, ``cell.MATRIX_KEYS``: W and
    U, or the RHN's W and R): how many the full model has, how many nonzero ones the
    compact model keeps (exact zeros left by weight gates not counted), the fraction
    removed and the compression (full / kept)."""
    keys = get_cell(mc.cell).MATRIX_KEYS
    full = sum(int(np.asarray(p[k]).size) for p in params["layers"] for k in keys)
    kept = sum(int(np.count_nonzero(p[k])) for p in cm.params["layers"] for k in keys)
    return {"full": full, "kept": kept, "removed_fraction": 1.0 - kept / full if full else 0.0,
            "compression": full / kept if kept else None}


def vocabulary_kept(mc, params) -> int | None:
    """Words whose test-time vocabulary gate is nonzero (None without vocabulary gates)."""
    if "vocab" not in mc.gate_families:
        return None
    return int(np.count_nonzero(models.eval_gates(params)["vocab"][0]))


__all__ = ["TIMING_DOCS", "load_corpus", "start", "accuracies", "format_confusion", "timing_batch",
           "check_compaction", "time_compaction", "run_locked", "compact_meta", "evaluate_file", "format_evaluation", "nonzero_weights", "vocabulary_kept"]
