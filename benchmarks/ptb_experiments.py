"""PTB experiments of the training issue, at CPU scale, one command each.

    python benchmarks/ptb_experiments.py l0-vs-dense --data-dir DIR   # L0-pruned vs dense 2-layer LSTM
    python benchmarks/ptb_experiments.py ablation --data-dir DIR      # Wen et al. Table 2: lam1 of layer 1 x 1..5
    python benchmarks/ptb_experiments.py cells --data-dir DIR         # the same L0 run for a GRU and an RHN
    python benchmarks/ptb_experiments.py single --data-dir DIR ...    # one run with explicit settings (tuning)

Each prints a markdown table and writes ``results.json``, ``table.md`` and PNG plots to
``benchmarks/results/ptb/<experiment>/`` (one sub-directory per run with its
``summary.json``, ``history.json`` and ``compact.npz``).

Data -- NOT the standard PTB split.  Only ``ptb.valid.txt`` and ``ptb.test.txt`` are
available, so we *train on ptb.valid.txt* and *test on ptb.test.txt*.  The last 10% of
the lines of ptb.valid.txt are held out as a development set ("dev"): it is the only
signal used for tuning the settings below (and it is reported per epoch); ptb.test.txt
is evaluated once, at the end of each run, and was never used to choose anything.
The vocabulary is built from the training part (the first 90% of ptb.valid.txt's
lines); other words are ``<unk>``.  The learning-rate schedule is fixed (the same for
every run, no early stopping); model selection on dev: each run reports the parameters
(gates included) of the epoch with the lowest dev perplexity, for the dense and the L0
models alike (the dense model overfits 66k tokens within ~10 epochs).

Everything is seeded (``--seed``, default 0): parameters, gate samples and dropout masks
come from one generator, the data are read in order, so a run is reproducible bit for
bit on the same machine and library versions.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "ptb"
DEV_FRACTION = 0.10
SPLIT_NOTE = ("Not the standard PTB split: trained on the first 90% of the lines of ptb.valid.txt, "
              "tested on ptb.test.txt; dev = last 10% of ptb.valid.txt's lines.")

# ---------------------------------------------------------------------------------------
# Settings (chosen with short runs judged on the dev set only; see the README's PTB section)
# ---------------------------------------------------------------------------------------

#: Shared by every run: Adam (SGD lr 20 does not converge within ~25 epochs here),
#: a fixed lr schedule, dropout 0.4 for every model (the corpus is 66k tokens),
#: log_alpha ~ N(2, 0.1) (gates nearly deterministic at the start: the paper's N(1, 0.1)
#: made the L0 model underfit badly within 20 epochs, see the README's PTB section).
BASE_TRAIN = dict(optimizer="adam", lr=3e-3, clip=1.0, dropout=0.4, weight_decay=1e-6,
                  lr_decay=1.2, lr_decay_start=8, log_alpha_init=2.0, log_alpha_lr_scale=5.0,
                  batch_size=20, bptt=35, epochs=20, seed=0)
#: Penalties of the L0 runs (multiples of 0.08/N, N = training tokens), per layer.
L0_LAM1 = (2.0, 2.0)
L0_LAM2 = (1.0, 4.0)
LSTM_SIZE = dict(emb=256, hidden=(256, 256))
ABLATION_EPOCHS = 16
ABLATION_MULTIPLIERS = (1, 2, 3, 4, 5)
#: Ablation base, as the paper's (k, 1, 1, 1): lam1 = (k x 1, 1); lam2 = (1, 4) -- layer 2's
#: recurrent penalty raised because at this scale x1 leaves more than half of h2 alive.
ABLATION_LAM1 = (1.0, 1.0)
ABLATION_LAM2 = (1.0, 4.0)
#: GRU: the LSTM's sizes and lambdas (L0_LAM1, L0_LAM2).
GRU_SIZE = dict(emb=256, hidden=(256, 256))
RHN_SIZE = dict(emb=256, hidden=(256,), depth=3)
#: RHN: one layer whose gate s acts in every micro-step; at (1, 1) nothing was pruned, so the
#: penalty was raised (chosen on dev from (4, 8) and (4, 16)).
RHN_LAM = ((4.0,), (16.0,))


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def load_data(data_dir: Path):
    """``Corpus`` with train = first 90% of ptb.valid.txt lines, valid = the last 10% (dev),
    test = ptb.test.txt."""
    from l0ref import data as data_mod

    data_dir = Path(data_dir)
    files = {k: data_dir / f"ptb.{k}.txt" for k in ("valid", "test")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        sys.exit(f"ptb_experiments: error: PTB file(s) not found: {', '.join(missing)}\n"
                 f"  --data-dir must be a directory holding ptb.valid.txt and ptb.test.txt")
    lines = data_mod.read_text(files["valid"]).replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    cut = int(round(len(lines) * (1 - DEV_FRACTION)))
    test_lines = data_mod.read_text(files["test"]).replace("\r\n", "\n").split("\n")
    if test_lines and test_lines[-1] == "":
        test_lines.pop()
    return data_mod.corpus_from_lines(lines[:cut], lines[cut:], test_lines)


# ---------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------


def run_one(name: str, out_dir: Path, corpus, *, cell: str, emb: int, hidden, depth: int | None = None,
            lam1=(1.0,), lam2=(1.0,), overrides: dict | None = None, plots: bool = True,
            max_minutes: float | None = None, overwrite: bool = False) -> dict:
    """One run of the pipeline (``l0ref.experiments.pipeline``) in ``out_dir/name``, with the
    parameters of the epoch of lowest dev perplexity selected; returns its summary."""
    from l0ref import training
    from l0ref.experiments import pipeline

    kw = dict(BASE_TRAIN)
    kw.update(overrides or {})
    kw.update(lam1=tuple(lam1), lam2=tuple(lam2))
    cfg = training.TrainConfig(**kw)
    opts = {"depth": int(depth)} if cell == "rhn" else {}
    model = {"cell": cell, "emb_size": int(emb), "hidden_sizes": tuple(int(h) for h in hidden), "cell_options": opts}
    print(f"\n=== {name}: {cell.upper()} emb {emb} hidden {'x'.join(map(str, hidden))}"
          f"{f' depth {depth}' if cell == 'rhn' else ''} | lam1 {list(cfg.lam1)} lam2 {list(cfg.lam2)} (x0.08/N) | "
          f"{cfg.optimizer} lr {cfg.lr:g} dropout {cfg.dropout:g} log_alpha init {cfg.log_alpha_init:g} "
          f"lr x{cfg.log_alpha_lr_scale:g} | {cfg.epochs} epochs, seed {cfg.seed}", flush=True)

    def on_epoch(entry):
        from l0ref.training import describe
        print(f"  [{name}] {describe(entry)}", flush=True)

    spec = pipeline.RunSpec(out=out_dir / name, name=name, train=cfg, model=model, corpus_obj=corpus,
                            data_note=SPLIT_NOTE, selection="best_valid", max_minutes=max_minutes, plots=plots,
                            on_epoch=on_epoch, overwrite=overwrite)
    s = pipeline.run(spec, log=lambda line: None)
    print(f"  [{name}] selected epoch {s['selected_epoch']} (best dev) | dev ppl {s['valid_ppl']:.2f} | test ppl "
          f"{s['test_ppl']:.2f} | live {'/'.join(map(str, s['live']))} of {'/'.join(map(str, s['sizes']))} | "
          f"params {s['params_after']:,}/{s['params_before']:,} | MACs/token {s['macs_after']:,}/{s['macs_before']:,} | "
          f"compaction check max|dlogp| {s['compact_max_abs_diff']:.1e} | {s['wall_seconds']:.0f}s", flush=True)
    return s


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def _live(s: dict) -> str:
    return "(" + ", ".join(f"{k}/{n}" for k, n in zip(s["live"], s["sizes"])) + ")"


def model_table(rows: list[dict], ref: dict | None, caption: str) -> str:
    """model, live, params, MACs/token, dev/test ppl, test ppl ratio to ``ref``."""
    out = [f"*{caption}*", "",
           "| model | live (emb, h1[, h2]) | params | MACs/token | epoch (best dev) | dev ppl | test ppl | test ppl / dense |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in rows:
        ratio = f"{s['test_ppl'] / ref['test_ppl']:.3f}" if ref else "-"
        out.append(f"| {s['name']} | {_live(s)} | {s['params_after']:,} ({s['params_after'] / s['params_before']:.0%}) | "
                   f"{s['macs_after']:,} ({s['macs_after'] / s['macs_before']:.0%}) | {s['selected_epoch']}/{s['epochs']} | {s['valid_ppl']:.2f} | "
                   f"{s['test_ppl']:.2f} | {ratio} |")
    return "\n".join(out)


def _finish(out_dir: Path, experiment: str, table: str, doc: dict, t0: float) -> None:
    from l0ref.experiments.summary import write_json
    wall = time.perf_counter() - t0
    doc = {"experiment": experiment, "data": SPLIT_NOTE, "wall_seconds": wall, **doc}
    write_json(out_dir / "results.json", doc)
    text = table + f"\n\nWall time of `{experiment}`: {wall / 60:.1f} min.\n"
    (out_dir / "table.md").write_text(text)
    print("\n" + text, flush=True)


# ---------------------------------------------------------------------------------------
# Experiments
# ---------------------------------------------------------------------------------------


def exp_l0_vs_dense(args) -> None:
    from l0ref import report

    t0 = time.perf_counter()
    out = args.out / "l0-vs-dense"
    corpus = load_data(args.data_dir)
    ov = _overrides(args)
    dense = run_one("dense", out, corpus, cell="lstm", **LSTM_SIZE, lam1=(0.0,), lam2=(0.0,), overrides=ov, max_minutes=args.max_minutes_per_run, overwrite=args.overwrite)
    l0 = run_one("L0", out, corpus, cell="lstm", **LSTM_SIZE, lam1=L0_LAM1, lam2=L0_LAM2, overrides=ov, max_minutes=args.max_minutes_per_run, overwrite=args.overwrite)
    for s, series in ((dense, "dense (lambda = 0)"), (l0, "L0")):
        s["series"] = series
    report.plot_ppl_vs_width([dense, l0], out / "ppl_vs_width.png",
                             title="2-layer LSTM, L0 vs dense (PTB: train valid, test test; non-standard)")
    ratio = l0["test_ppl"] / dense["test_ppl"]
    half = [k <= n / 2 for k, n in zip(l0["live"], l0["sizes"])]
    targets = {"half_of_each_group_removed": all(half), "per_group": half,
               "test_ppl_ratio": ratio, "ppl_within_5pct": ratio <= 1.05}
    table = model_table([dense, l0], dense, f"2-layer LSTM, same size and settings, L0 (lam1 {L0_LAM1}, lam2 {L0_LAM2} "
                        f"x 0.08/N) vs dense (lambdas 0). {SPLIT_NOTE}")
    table += (f"\n\nTargets: >= half of emb/h1/h2 removed: {'MET' if all(half) else 'NOT met'} "
              f"(per group {half}); test ppl within 5% of dense: {'MET' if ratio <= 1.05 else 'NOT met'} "
              f"(ratio {ratio:.3f}).")
    _finish(out, "l0-vs-dense", table, {"runs": [dense, l0], "targets": targets}, t0)


def exp_ablation(args) -> None:
    from l0ref import report

    t0 = time.perf_counter()
    out = args.out / "ablation"
    corpus = load_data(args.data_dir)
    ov = {"epochs": ABLATION_EPOCHS, **_overrides(args)}
    mults = args.multipliers or ABLATION_MULTIPLIERS
    runs = []
    for k in mults:
        lam1 = (ABLATION_LAM1[0] * k,) + tuple(ABLATION_LAM1[1:])
        s = run_one(f"lam1x{k:g}", out, corpus, cell="lstm", **LSTM_SIZE, lam1=lam1, lam2=ABLATION_LAM2, overrides=ov, max_minutes=args.max_minutes_per_run, overwrite=args.overwrite)
        s["label"] = f"x{k:g}: emb {s['live'][0]}"
        s["multiplier"] = k
        runs.append(s)
    report.plot_ppl_vs_width(runs, out / "ppl_vs_width.png",
                             title="lam1 of layer 1 x1..5 (2-layer LSTM; PTB valid->test, non-standard split)")
    lines = [f"*Wen et al. Table 2 at CPU scale: 2-layer LSTM {LSTM_SIZE['emb']}/{LSTM_SIZE['hidden'][0]}/"
             f"{LSTM_SIZE['hidden'][1]}, lam1 of layer 1 = multiplier x {ABLATION_LAM1[0]:g} x 0.08/N, the other lambdas "
             f"fixed (lam1^(2) {ABLATION_LAM1[1]:g}, lam2 {ABLATION_LAM2[0]:g}/{ABLATION_LAM2[1]:g}), {ov['epochs']} epochs. {SPLIT_NOTE}*", "",
             "| lam1^(1) multiplier | live (emb, h1, h2) | params | MACs/token | epoch (best dev) | dev ppl | test ppl |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for s in runs:
        lines.append(f"| {s['multiplier']:g} | {_live(s)} | {s['params_after']:,} | {s['macs_after']:,} | {s['selected_epoch']}/{s['epochs']} | "
                     f"{s['valid_ppl']:.2f} | {s['test_ppl']:.2f} |")
    emb = [s["live"][0] for s in runs]
    ppl = [s["test_ppl"] for s in runs]
    mono_emb = all(a >= b for a, b in zip(emb, emb[1:]))
    mono_ppl = all(a <= b for a, b in zip(ppl, ppl[1:]))
    lines += ["", (f"Embedding width non-increasing with the multiplier: {mono_emb}; "
                   f"test perplexity non-decreasing: {mono_ppl}.")]
    _finish(out, "ablation", "\n".join(lines), {"runs": runs, "emb_monotone": mono_emb, "ppl_monotone": mono_ppl}, t0)


def exp_cells(args) -> None:
    from l0ref import report

    t0 = time.perf_counter()
    out = args.out / "cells"
    corpus = load_data(args.data_dir)
    ov = _overrides(args)
    runs = []
    which = args.which or ["gru", "rhn"]
    if "gru" in which:
        runs.append(run_one("GRU-dense", out, corpus, cell="gru", **GRU_SIZE, lam1=(0.0,), lam2=(0.0,), overrides=ov, max_minutes=args.max_minutes_per_run, overwrite=args.overwrite))
        runs.append(run_one("GRU-L0", out, corpus, cell="gru", **GRU_SIZE, lam1=L0_LAM1, lam2=L0_LAM2, overrides=ov, max_minutes=args.max_minutes_per_run, overwrite=args.overwrite))
    if "rhn" in which:
        runs.append(run_one("RHN-dense", out, corpus, cell="rhn", **RHN_SIZE, lam1=(0.0,), lam2=(0.0,), overrides=ov, max_minutes=args.max_minutes_per_run, overwrite=args.overwrite))
        runs.append(run_one("RHN-L0", out, corpus, cell="rhn", **RHN_SIZE, lam1=RHN_LAM[0], lam2=RHN_LAM[1], overrides=ov, max_minutes=args.max_minutes_per_run, overwrite=args.overwrite))
    for s in runs:
        s["series"] = s["cell"].upper()
    report.plot_ppl_vs_width(runs, out / "ppl_vs_width.png", title="GRU and RHN, L0 vs dense (PTB valid->test, non-standard)")
    parts = []
    for cell in ("gru", "rhn"):
        rs = [s for s in runs if s["cell"] == cell]
        if not rs:
            continue
        dense = next((s for s in rs if s["name"].endswith("dense")), None)
        size = GRU_SIZE if cell == "gru" else RHN_SIZE
        desc = (f"{cell.upper()} emb {size['emb']}, hidden {'x'.join(map(str, size['hidden']))}"
                + (f", recurrence depth {size['depth']}" if cell == "rhn" else ""))
        parts.append(model_table(rs, dense, f"{desc}; L0 vs dense (lambdas 0), same settings. {SPLIT_NOTE}"))
    _finish(out, "cells", "\n\n".join(parts), {"runs": runs}, t0)


def exp_single(args) -> None:
    """One run with explicit settings (for tuning); results under <out>/tuning/<name>."""
    t0 = time.perf_counter()
    corpus = load_data(args.data_dir)
    size = {"emb": args.emb, "hidden": tuple(args.hidden)}
    if args.cell == "rhn":
        size["depth"] = args.depth
    s = run_one(args.name, args.out / "tuning", corpus, cell=args.cell, **size, lam1=tuple(args.lam1),
                lam2=tuple(args.lam2), overrides=_overrides(args), plots=not args.no_plots,
                max_minutes=args.max_minutes_per_run, overwrite=args.overwrite)
    _finish(args.out / "tuning" / args.name, "single", model_table([s], None, SPLIT_NOTE), {"runs": [s]}, t0)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------

_OVERRIDABLE = ("epochs", "lr", "dropout", "log_alpha_init", "log_alpha_lr_scale", "lr_decay",
                "lr_decay_start", "weight_decay", "seed", "optimizer", "clip")


def _overrides(args) -> dict:
    return {k: getattr(args, k) for k in _OVERRIDABLE if getattr(args, k, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, required=True,
                        help="directory with ptb.valid.txt and ptb.test.txt (Mikolov's preprocessing)")
    common.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results root (default {DEFAULT_OUT})")
    common.add_argument("--overwrite", action="store_true", help="replace the runs of an earlier invocation")
    common.add_argument("--max-minutes-per-run", type=float, default=None,
                        help="cap on each run's training time (a safety net on a loaded machine; a run it stops "
                        "is marked in its summary and is then not reproducible bit for bit); default: none")
    g = common.add_argument_group("overrides of the fixed settings (for tuning; the defaults are the reported ones)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--dropout", type=float)
    g.add_argument("--log-alpha-init", type=float)
    g.add_argument("--log-alpha-lr-scale", type=float)
    g.add_argument("--lr-decay", type=float)
    g.add_argument("--lr-decay-start", type=int)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--clip", type=float)
    g.add_argument("--optimizer", choices=("sgd", "adam"))
    g.add_argument("--seed", type=int)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("l0-vs-dense", parents=[common], help="2-layer LSTM with and without the L0 penalty").set_defaults(func=exp_l0_vs_dense)
    a = sub.add_parser("ablation", parents=[common], help="Table 2: lam1 of layer 1 x 1..5")
    a.add_argument("--multipliers", type=float, nargs="+", help=f"(default {' '.join(map(str, ABLATION_MULTIPLIERS))})")
    a.set_defaults(func=exp_ablation)
    c = sub.add_parser("cells", parents=[common], help="GRU and RHN, L0 vs dense")
    c.add_argument("--which", nargs="+", choices=("gru", "rhn"), help="(default both)")
    c.set_defaults(func=exp_cells)
    s = sub.add_parser("single", parents=[common], help="one run with explicit settings (tuning)")
    s.add_argument("--name", required=True)
    s.add_argument("--cell", choices=("lstm", "gru", "rhn"), default="lstm")
    s.add_argument("--emb", type=int, default=256)
    s.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    s.add_argument("--depth", type=int, default=3)
    s.add_argument("--lam1", type=float, nargs="+", default=[1.0])
    s.add_argument("--lam2", type=float, nargs="+", default=[1.0])
    s.add_argument("--no-plots", action="store_true")
    s.set_defaults(func=exp_single)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.data_dir = args.data_dir.resolve()
    print(f"ptb_experiments {args.command}: data {args.data_dir} ({SPLIT_NOTE})", flush=True)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
