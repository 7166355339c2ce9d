"""Lobacheva et al.'s finding, with L0 gates: which gates turn constant depends on the task.

    python benchmarks/gate_structure.py rt [--lam L]    # sentiment: Rotten Tomatoes sentences
    python benchmarks/gate_structure.py r8 [--lam L]    # topics: Reuters-21578 R8
    python benchmarks/gate_structure.py ptb [--lam L]   # word-level language model: the PTB sample
    python benchmarks/gate_structure.py report          # the tables and the bar chart of every task done

Each task command takes 12-30 minutes on 2 cores (its runs capped by ``--minutes``; rt and
ptb 15 epochs a run, r8 20: its pruned runs were still shrinking and improving at 15).
Per task, one LSTM size and these runs (``l0ref train`` settings through
``experiments.pipeline.run``), all with the same lambdas:

    base      unpruned: neuron gates opened at log_alpha ~ N(10, 0.1) (a gate samples 1 with
              probability 1 - 2e-5) and no penalty: a plain LSTM of the same size
    N         neuron gates (Wen et al.)
    W+N       + weight gates (one per recurrent-layer weight)
    W+G+N     + preactivation gates (one per gate and unit: Lobacheva et al.'s "gates")
    W+G+N+V   + vocabulary gates (classifiers only)
    W+G+N@6   W+G+N with the gates beyond the neurons opened at log_alpha ~ N(6, 0.1) instead
              of 3 (a gate samples 1 with probability 0.99 instead of 0.80): only with
              ``--configs``, for the second target (``OPTIONAL``)

Each run has a fixed number of epochs and a time cap (``--minutes``); with ``--finetune F``
its last fraction F (of the epochs, or of the time where the cap comes first) fine-tunes
the weights with the structure fixed (``TrainConfig.finetune``: gates at their test-time
values, no penalty; results in ``<task>_lam<L>_ft<F>/``, not among the candidates of the
lambda rule below); with ``--dense-start F`` its first fraction F trains the unpruned
network, every gate open and no penalty, before the gates learn and prune
(``TrainConfig.dense_start``; results in ``<task>_lam<L>_ds<F>/``, a method of its own:
the same rule on valid picks its lambda among those runs, :func:`dense_start_docs`; F is
the unpruned run's best validation epoch over the epochs: rt 2/15, r8 14/20).  It is reported
with the parameters of its epoch of best validation accuracy (perplexity), the same rule
for every run (the unpruned baseline overfits within a few epochs; test data choose nothing).  A task is resumable: a run whose ``summary.json``
exists is skipped, one with a checkpoint but no summary is resumed.  At the end the
compact models of all runs of the task, and the full-size one, are timed interleaved in
one process on one batch (one numba thread; ``fast.classify``'s default layout, and each
of its two layouts, rows and lanes, apart for comparison; PyTorch's ``nn.LSTM`` with
``pack_padded_sequence`` at the full and at each compact size where torch imports), so
the speed ratios come from one run.

A gate is *constant* for a live unit when the compact model has no weight left in its
rows (input and recurrent): its preactivation is its bias, whatever the input (its
preactivation gate closed, or every weight of the rows gated off).  Reported per gate
type i, f, g, o as the fraction of the live hidden units of the layer(s).

Results go to ``benchmarks/results/gate_structure/<task>_lam<L>/`` (the run directories,
``results.json``).  The unpruned run does not depend on L: a finished one of the same task
and settings in another ``<task>_lam*/`` is copied (:func:`reuse_base`), else it is trained.
``--configs N,W+G+N`` runs only those (and the unpruned one, which the timing needs).
``report``: the tables, the lambda chosen on valid, the comparisons and the figures of
every task done (``benchmarks/gate_structure_report.py``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from l0ref import compact as compact_mod  # noqa: E402
from l0ref import fast, training  # noqa: E402
from l0ref.cells import get_cell  # noqa: E402
from l0ref.experiments import classify, pipeline  # noqa: E402

SHARED = REPO.parent / "shared" / "data"     #: --data: the shared data folder beside the checkout
OUT = REPO / "benchmarks" / "results" / "gate_structure"
CONFIGS = {"base": ("neurons",), "N": ("neurons",), "W+N": ("neurons", "weights"),
           "W+G+N": ("neurons", "preact", "weights"), "W+G+N+V": ("neurons", "preact", "weights", "vocab"),
           "W+G+N@6": ("neurons", "preact", "weights")}
#: ``TrainConfig.log_alpha_init_extra`` of a run type, where it is not the default (3).
EXTRA_INIT = {"W+G+N@6": 6.0}
#: Runs that only ``--configs`` asks for (each task command's time is planned without them).
OPTIONAL = tuple(EXTRA_INIT)
#: The run types judged against N for issue 12's second target.
COMPARED = ("W+G+N", *OPTIONAL)
CLASSIFY_TRAIN = dict(optimizer="adam", lr=3e-3, clip=1.0, dropout=0.3, weight_decay=1e-6, lr_decay=1.0,
                      log_alpha_lr_scale=5.0, batch_size=32, eval_batch_size=64, seed=0)
TASKS = {
    "rt": dict(kind="classify", folder="rt-sentiment", model=dict(emb_size=128, hidden_sizes=(128,)),
               lam=0.3, epochs=15, minutes=6.0, configs=[c for c in CONFIGS if c not in OPTIONAL],
               note="Rotten Tomatoes review sentences (~19 words), binary; the paper: IMDB reviews (first 200 "
                    "words), LSTM 128, embedding 300"),
    "r8": dict(kind="classify", folder="reuters-r8", model=dict(emb_size=128, hidden_sizes=(128,)),
               lam=0.3, epochs=20, minutes=6.0, configs=[c for c in CONFIGS if c not in OPTIONAL],
               note="Reuters-21578 R8 (first 200 words), 8 topics; the paper: AG News (4 topics), LSTM 512"),
    "ptb": dict(kind="lm", model=dict(emb_size=128, hidden_sizes=(256,)), lam=2.0, epochs=15, minutes=6.0,
                configs=["base", "N", "W+N", "W+G+N"],
                note="the PTB sample (train: first 90% of ptb.valid.txt, 66k words; test: ptb.test.txt); the "
                     "paper: full PTB, LSTM 256"),
}
LM_TRAIN = dict(optimizer="adam", lr=3e-3, clip=1.0, dropout=0.4, weight_decay=1e-6, lr_decay=1.2,
                lr_decay_start=8, log_alpha_lr_scale=5.0, batch_size=20, bptt=35, seed=0)


def train_config(task: dict, config: str) -> training.TrainConfig:
    base = dict(CLASSIFY_TRAIN if task["kind"] == "classify" else LM_TRAIN, epochs=task["epochs"],
                finetune=task.get("finetune", 0.0), seed=task.get("seed", 0))
    if config != "base" and task.get("dense_start"):
        base["dense_start"] = task["dense_start"]
    lam = 0.0 if config == "base" else task["lam"]
    extra = {"log_alpha_init": 10.0} if config == "base" else {"log_alpha_init": 1.0}
    if task["kind"] == "lm":
        extra["log_alpha_init"] = 10.0 if config == "base" else 2.0      # as benchmarks/ptb_experiments.py
    if config in EXTRA_INIT:
        extra["log_alpha_init_extra"] = EXTRA_INIT[config]
    return training.TrainConfig(**base, **extra, lam1=(lam,), lam2=(lam,), lam_vocab=lam / 10)


def corpus_spec(task: dict) -> dict:
    d = Path(task["data"]) / "classification" / task["folder"]
    return {"train": str(d / "train.tsv"), "valid": str(d / "valid.tsv"), "test": str(d / "test.tsv"),
            "max_vocab": 20000, "max_len": 200, "lowercase": True}


def _jsonable(obj):
    return json.loads(json.dumps(obj))


def reuse_base(name: str, task: dict, out: Path) -> Path | None:
    """The unpruned run does not depend on lambda: copy a finished one of the same task and
    settings from a sibling ``<task>_lam*`` folder instead of training it again (its train
    and model settings compared in its summary).  The folder it came from, or None."""
    if (out / "base").exists():
        return None
    want = {"train": _jsonable(train_config(task, "base").to_dict()),
            "model": _jsonable(dict(task["model"], cell="lstm", gate_families=CONFIGS["base"]))}
    for other in sorted(out.parent.glob(f"{name}_lam*/base/summary.json")):
        if other.parent.parent == out or not (other.parent / "compact.npz").exists() \
                or not (other.parent / "checkpoint.npz").exists():
            continue
        s = json.loads(other.read_text())
        model = s.get("config", {}).get("model", {})
        train = s.get("config", {}).get("train")
        if train is not None:      # the defaults of fields added since it ran
            train = _jsonable(training.TrainConfig.from_dict(train).to_dict())
        if train == want["train"] and all(model.get(k) == v for k, v in want["model"].items()):
            shutil.copytree(other.parent, out / "base")
            print(f"[{name} base] the same unpruned run as {other.parent}: copied", flush=True)
            return other.parent
    return None


def run_one(name: str, task: dict, config: str, out: Path, lm_corpus=None) -> dict:
    """One run (skipped when done, resumed when interrupted); its summary."""
    run_dir = out / config
    if (run_dir / "summary.json").exists():
        print(f"[{name} {config}] done before: {run_dir / 'summary.json'}", flush=True)
        return json.loads((run_dir / "summary.json").read_text())
    resume = run_dir / "checkpoint.npz" if (run_dir / "checkpoint.npz").exists() else None
    model = dict(task["model"], cell="lstm", gate_families=CONFIGS[config])
    common = dict(out=run_dir, name=f"{name} {config}", max_minutes=task["minutes"], timing_seconds=2.0,
                  selection="best_valid",
                  progress=training.Progress(sys.stderr, every=200), plots=False)
    if resume is not None:
        spec = pipeline.RunSpec(resume=resume, corpus_obj=lm_corpus, **common)
    elif task["kind"] == "classify":
        spec = pipeline.RunSpec(task="classify", train=train_config(task, config), model=model,
                                corpus=corpus_spec(task), **common)
    else:
        import ptb_experiments as ptb
        spec = pipeline.RunSpec(train=train_config(task, config), model=model, corpus_obj=lm_corpus,
                                data_note=ptb.SPLIT_NOTE, **common)
    print(f"[{name} {config}] {'resuming' if resume else 'training'} -> {run_dir}", flush=True)
    return pipeline.run(spec, log=lambda line: print(f"  {line}", flush=True))


def constant_fractions(cm) -> dict:
    """Per gate type: the fraction of live hidden units (all layers) whose gate rows hold no
    weight in the compact model (module docstring)."""
    cell = get_cell(cm.config.cell)
    counts, live = {name: 0 for name in cell.BLOCK_NAMES}, 0
    for layer, n in zip(cm.params["layers"], cm.config.hidden_sizes):
        if n == 0:
            continue
        empty = np.ones((cell.BLOCKS, n), bool)
        for key in cell.MATRIX_KEYS:
            rows = np.asarray(layer[key]).reshape(cell.BLOCKS, n, -1)
            empty &= ~np.any(rows != 0, axis=2)
        for a, name in enumerate(cell.BLOCK_NAMES):
            counts[name] += int(empty[a].sum())
        live += n
    return {name: (c / live if live else 0.0) for name, c in counts.items()}


def timing_inputs(task: dict, lm_corpus):
    if task["kind"] == "classify":
        corpus = classify.load_corpus(corpus_spec(task))
        return classify.timing_batch(corpus)
    return pipeline.timing_tokens(lm_corpus), None


def time_all(task: dict, out: Path, configs, lm_corpus, budget: float = 20.0) -> dict:
    """Median ms per batch of every run's compact model and the full-size model, one numba
    thread, interleaved; PyTorch at the same sizes (dense) where it imports."""
    import numba
    tokens, lengths = timing_inputs(task, lm_corpus)
    models_ = {c: compact_mod.load(out / c / "compact.npz") for c in configs}
    base = models_["base"]
    full_cfg = base.original
    st = training.load_checkpoint(out / "base" / "checkpoint.npz")
    full = compact_mod.compact(full_cfg, st.params, [np.ones(n, st.params["emb"].dtype) for n in full_cfg.group_sizes])
    models_ = {"full": full, **models_}
    numba.set_num_threads(1)
    fns, layouts = {}, {}
    for c, cm in models_.items():
        prepared = fast.prepare(cm.config, cm.params)
        if lengths is None:
            fns[c] = (lambda p=prepared: fast.run(p, tokens))
            continue
        fns[c] = (lambda p=prepared: fast.classify(p, tokens, lengths))        # the default layout
        for layout in ("rows", "lanes"):                                      # and each apart, for comparison
            if layout == "rows" or all("lanes" in q for q in prepared.layers):
                layouts[f"{c} {layout}"] = (lambda p=prepared, lay=layout: fast.classify(p, tokens, lengths, layout=lay))
    # every call follows another model's, so that each finds the caches as the others do
    # (a model timed right after itself runs warm: up to 1.3x faster on this machine)
    fns.update(sorted(layouts.items(), key=lambda kv: kv[0].rsplit(" ", 1)[1]))
    torch_fns = torch_models(models_, tokens, lengths)
    for fn in [*fns.values(), *torch_fns.values()]:
        fn()
    t = pipeline.median_times({**fns, **{f"torch {k}": f for k, f in torch_fns.items()}}, budget=budget,
                              min_rounds=10)
    return {k: 1e3 * v for k, v in t.items()}


def torch_models(models_: dict, tokens, lengths) -> dict:
    """``nn.LSTM`` (+ ``pack_padded_sequence`` for the classifiers) of each model's dense
    sizes with its weights: what PyTorch runs for the same network without l0ref's
    constant-row and sparse layouts.  Empty where torch does not import."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(1)
    out = {}
    tok = torch.from_numpy(np.ascontiguousarray(tokens))
    for name in ("full", "N", "W+G+N+V", *COMPARED):
        cm = models_.get(name)
        if cm is None:
            continue
        p = cm.params
        e, (n,) = cm.config.emb_size, cm.config.hidden_sizes[:1]
        if e == 0 or n == 0 or cm.config.n_layers != 1:
            continue
        emb = torch.nn.Embedding.from_pretrained(torch.from_numpy(np.asarray(p["emb"])))
        lstm = torch.nn.LSTM(e, n)
        layer = p["layers"][0]
        with torch.no_grad():
            lstm.weight_ih_l0.copy_(torch.from_numpy(np.asarray(layer["W"])))
            lstm.weight_hh_l0.copy_(torch.from_numpy(np.asarray(layer["U"])))
            lstm.bias_ih_l0.copy_(torch.from_numpy(np.asarray(layer["b"])))
            lstm.bias_hh_l0.zero_()
        dense = torch.nn.Linear(n, p["out_W"].shape[0])
        with torch.no_grad():
            dense.weight.copy_(torch.from_numpy(np.asarray(p["out_W"])))
            dense.bias.copy_(torch.from_numpy(np.asarray(p["out_b"])))

        def go(emb=emb, lstm=lstm, dense=dense):
            with torch.no_grad():
                x = emb(tok)
                if lengths is None:
                    h, _ = lstm(x)
                    return torch.log_softmax(dense(h), -1)
                packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(lengths), enforce_sorted=False)
                _, (h, _) = lstm(packed)
                return torch.log_softmax(dense(h[-1]), -1)
        out[name] = go
    return out


def row(name: str, config: str, s: dict, cm, times: dict) -> dict:
    keys = get_cell(cm.config.cell).MATRIX_KEYS
    full = sum(int(np.prod(cell_shape)) for cell_shape in _full_shapes(cm, keys))
    kept = sum(int(np.count_nonzero(layer[k])) for layer in cm.params["layers"] for k in keys)
    return {"task": name, "config": config,
            "quality": s["test_acc"] if s.get("test_acc") is not None else s["test_ppl"],
            "valid": s["valid_acc"] if s.get("valid_acc") is not None else s["valid_ppl"],
            "metric": "accuracy" if s.get("test_acc") is not None else "perplexity",
            "live": s["live"], "sizes": s["sizes"], "epochs": s["epochs"], "train_seconds": s["train_seconds"],
            "vocabulary": (s.get("vocabulary_kept") if s.get("vocabulary_kept") is not None
                           else cm.config.vocab_size),
            "vocab_size": cm.config.vocab_size, "recurrent_weights": full, "kept_weights": kept,
            "removed": 1 - kept / full, "compression": full / kept if kept else None,
            "constant": constant_fractions(cm), "ms": times.get(config), "full_ms": times.get("full"),
            "rows_ms": times.get(f"{config} rows"), "lanes_ms": times.get(f"{config} lanes"),
            "full_rows_ms": times.get("full rows"), "full_lanes_ms": times.get("full lanes"),
            "torch_ms": times.get("torch full" if config == "base" else f"torch {config}"),
            "torch_full_ms": times.get("torch full")}


def _full_shapes(cm, keys):
    cell = get_cell(cm.original.cell)
    for m, n in cm.original.layer_sizes:
        shapes = cell.param_shapes(m, n, **cm.original.cell_options)
        for k in keys:
            yield shapes[k]


def with_finished(configs: list, out: Path) -> list:
    """``configs`` and the runs already finished in ``out`` (a ``summary.json`` and a
    ``compact.npz``), in :data:`CONFIGS` order: a later ``--configs`` subset adds its runs to
    the folder's table and times them with the others, instead of writing a
    ``results.json`` that forgets the runs before it."""
    done = {c for c in CONFIGS if (out / c / "summary.json").exists() and (out / c / "compact.npz").exists()}
    return [c for c in CONFIGS if c in set(configs) | done]


def run_task(name: str, args) -> None:
    task = dict(TASKS[name], data=args.data)
    if args.minutes is not None:
        task["minutes"] = args.minutes
    if args.lam is not None:
        task["lam"] = args.lam
    task["finetune"] = args.finetune
    task["dense_start"] = args.dense_start
    if args.configs is not None:
        wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
        allowed = task["configs"] + list(OPTIONAL)
        unknown = [c for c in wanted if c not in allowed]
        if unknown:
            raise SystemExit(f"--configs: {', '.join(unknown)} not among {name}'s runs {allowed}")
        task["configs"] = ["base", *(c for c in allowed if c in wanted and c != "base")]
    task["seed"] = args.seed
    out = Path(args.out) / (f"{name}_lam{task['lam']:g}" + (f"_ft{args.finetune:g}" if args.finetune else "")
                            + (f"_ds{args.dense_start:g}" if args.dense_start else "")
                            + (f"_seed{args.seed}" if args.seed else ""))
    out.mkdir(parents=True, exist_ok=True)
    task["configs"] = with_finished(task["configs"], out)
    lm_corpus = None
    if task["kind"] == "lm":
        import ptb_experiments as ptb
        lm_corpus = ptb.load_data(Path(args.data) / "ptb")
    t0 = time.perf_counter()
    reuse_base(name, task, out)
    summaries = {c: run_one(name, task, c, out, lm_corpus) for c in task["configs"]}
    print(f"[{name}] timing every compact model, interleaved ...", flush=True)
    times = time_all(task, out, task["configs"], lm_corpus)
    rows = [row(name, c, summaries[c], compact_mod.load(out / c / "compact.npz"), times) for c in task["configs"]]
    doc = {"task": name, "note": task["note"], "lam": task["lam"], "finetune": task["finetune"],
           "dense_start": task["dense_start"], "seed": task["seed"],
           "epochs": task["epochs"],
           "minutes_per_run": task["minutes"], "model": task["model"], "times_ms": times, "rows": rows,
           "wall_seconds": time.perf_counter() - t0}
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    from gate_structure_report import format_table
    print(format_table([doc]))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=[*TASKS, "report"])
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--data", default=str(SHARED), help=f"the shared data folder (default {SHARED})")
    p.add_argument("--minutes", type=float, default=None, help="time cap per run (default: the task's)")
    p.add_argument("--finetune", type=float, default=0.0, metavar="F",
                   help="fine-tune the last fraction F of every run with the structure fixed (default 0)")
    p.add_argument("--dense-start", type=float, default=0.0, metavar="F",
                   help="train the unpruned network for the first fraction F of each pruned run, then prune "
                        "(TrainConfig.dense_start; results in <task>_lam<L>_ds<F>/, not candidates of the lambda rule)")
    p.add_argument("--seed", type=int, default=0,
                   help="the training seed of every run (default 0; others in <task>_lam<L>_seed<S>/, reported "
                   "apart: the spread of a result over seeds)")
    p.add_argument("--configs", default=None, metavar="C,C",
                   help="only these runs (and the unpruned one, which the timing needs), e.g. N,W+G+N")
    p.add_argument("--lam", type=float, default=None,
                   help="the lambda multiplier of every pruned run (default: the task's; results in "
                   "<task>_lam<L>/, the report chooses among them on valid)")
    args = p.parse_args(argv)
    if args.what == "report":
        from gate_structure_report import report
        report(args)
    else:
        run_task(args.what, args)


if __name__ == "__main__":
    main()
