"""Ask for a budget, not a lambda: size targets against hand-tuned lambdas on the PTB sample.

    python benchmarks/target_sparsity.py --data-dir DIR [--targets 0.5 0.3 0.15 0.07]
                                         [--minutes-per-run 4] [--out benchmarks/results/target]

One run of the pipeline per setting, all with the same model, data, settings and time
budget (``--minutes-per-run``), the parameters of the *last* epoch evaluated (a target
is met at the end of a run; the best-dev epoch may come before it):

- ``lambdas``: the hand-tuned Eq. 7 lambdas of ``ptb_experiments.py`` (L0_LAM1, L0_LAM2);
- ``target-F`` for every F of ``--targets``: ``--target-macs F``;
- ``matched``: ``--target-macs`` at the realized multiply-add fraction of ``lambdas``, the
  comparison at equal size.

For each: the realized multiply-add fraction (the compact model's, test-time gates), test
perplexity, and the training time until the realized fraction first came within 5% of the
target (from the history).  Writes ``results.json``, ``table.md`` and ``target.png``
(perplexity against realized multiply-adds; the realized fraction over training) under
``--out``; runs already done (their ``summary.json`` exists) are read, not repeated, so an
interrupted invocation resumes where it stopped.  Data: ``ptb_experiments.load_data``
(not the standard split: train on 90% of ptb.valid.txt, dev on the rest, test on
ptb.test.txt).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import ptb_experiments as ptb

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "target"
TARGETS = (0.5, 0.3, 0.15, 0.07)
SIZE = dict(emb=256, hidden=(256, 256))


def run(name: str, out: Path, corpus, minutes: float, **train_kw) -> dict:
    """One pipeline run (or its stored summary), the last epoch's parameters."""
    from l0ref import training
    from l0ref.experiments import pipeline

    done = out / name / "summary.json"
    if done.exists():
        print(f"[{name}] done before: {done}", flush=True)
        return json.loads(done.read_text())
    kw = dict(ptb.BASE_TRAIN, epochs=100, lr_decay_start=100)     # the time budget ends the run
    kw.update(train_kw)
    model = {"cell": "lstm", "emb_size": SIZE["emb"], "hidden_sizes": SIZE["hidden"], "cell_options": {}}

    def on_epoch(e):
        extra = f" | realized {e['realized_fraction']:.3f} target {e['target']:.3f}" if "target" in e else ""
        print(f"  [{name}] epoch {e['epoch']} step {e['step']} | valid ppl {e['valid_ppl']:.1f} | live "
              f"{'/'.join(map(str, e['live']))}{extra} | {e['elapsed']:.0f}s", flush=True)

    spec = pipeline.RunSpec(out=out / name, name=name, train=training.TrainConfig(**kw), model=model,
                            corpus_obj=corpus, data_note=ptb.SPLIT_NOTE, selection="last", max_minutes=minutes,
                            on_epoch=on_epoch, overwrite=True, timing_seconds=0)
    print(f"\n=== {name}: {', '.join(f'{k} {v}' for k, v in train_kw.items())}, {minutes:g} min", flush=True)
    return pipeline.run(spec, log=lambda line: None)


def realized(summary: dict) -> float:
    return summary["macs_after"] / summary["macs_before"]


def time_to_target(out: Path, name: str, target: float) -> float | None:
    """Training seconds until the realized fraction first came within 5% of ``target``."""
    history = json.loads((out / name / "history.json").read_text())["history"]
    for e in history:
        if e.get("realized_fraction") is not None and abs(e["realized_fraction"] / target - 1) <= 0.05:
            return e["elapsed"]
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="directory with ptb.valid.txt and ptb.test.txt")
    p.add_argument("--targets", type=float, nargs="+", default=list(TARGETS))
    p.add_argument("--minutes-per-run", type=float, default=4.0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    corpus = ptb.load_data(args.data_dir.resolve())
    rows = []
    lam = run("lambdas", args.out, corpus, args.minutes_per_run, lam1=ptb.L0_LAM1, lam2=ptb.L0_LAM2)
    rows.append(("lambdas", None, lam))
    matched = round(realized(lam), 4)
    for name, target in [(f"target-{t:g}", t) for t in args.targets] + [("matched", matched)]:
        rows.append((name, target, run(name, args.out, corpus, args.minutes_per_run, target_macs=target)))

    lines = [f"*Size targets against the hand-tuned lambdas (lam1 {ptb.L0_LAM1}, lam2 {ptb.L0_LAM2}) on the PTB "
             f"sample: LSTM {SIZE['emb']}/{SIZE['hidden'][0]}/{SIZE['hidden'][1]}, {args.minutes_per_run:g} min "
             f"of training each, last epoch. {ptb.SPLIT_NOTE}*", "",
             "| run | target | realized MACs | within 5% | live (emb, h1, h2) | epochs | test ppl | time to target |",
             "|---|---:|---:|:---:|---|---:|---:|---:|"]
    doc = []
    for name, target, s in rows:
        r = realized(s)
        ok = "" if target is None else ("yes" if abs(r / target - 1) <= 0.05 else "**no**")
        t = None if target is None else time_to_target(args.out, name, target)
        lines.append(f"| {name} | {'' if target is None else f'{target:g}'} | {r:.4f} | {ok} | "
                     f"{'/'.join(map(str, s['live']))} | {s['epochs']} | {s['test_ppl']:.2f} | "
                     f"{'' if target is None else ('never' if t is None else f'{t:.0f} s')} |")
        doc.append({"name": name, "target": target, "realized_macs": r, "test_ppl": s["test_ppl"],
                    "live": s["live"], "epochs": s["epochs"], "time_to_target_s": t})
    ratio = rows[-1][2]["test_ppl"] / lam["test_ppl"]
    lines += ["", f"At equal size (matched, {matched:g} of the multiply-adds): test perplexity {ratio:.3f}x the "
              f"hand-tuned lambdas' ({'within' if ratio <= 1.03 else 'NOT within'} 3%)."]
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps({"runs": doc, "matched_ppl_ratio": ratio,
                                                       "wall_seconds": time.perf_counter() - t0}, indent=1) + "\n")
    plot(args.out, rows)
    print("\n" + table, flush=True)
    return 0


def plot(out: Path, rows) -> None:
    from l0ref.report.figure import figure, save
    fig = figure(12, 4.8)
    ax, ax2 = fig.subplots(1, 2)
    for name, target, s in rows:
        ax.scatter([realized(s)], [s["test_ppl"]], marker="o" if target is not None else "*", s=60 if target else 160)
        ax.annotate(name, (realized(s), s["test_ppl"]), textcoords="offset points", xytext=(5, 5), fontsize=9)
        history = json.loads((out / name / "history.json").read_text())["history"]
        if target is not None:
            xs = [e["elapsed"] for e in history if "realized_fraction" in e]
            line, = ax2.plot(xs, [e["realized_fraction"] for e in history if "realized_fraction" in e],
                             label=f"{name}")
            ax2.axhline(target, color=line.get_color(), ls=":", lw=0.8)
    ax.set_xlabel("realized fraction of the multiply-adds (compact model)")
    ax.set_ylabel("test perplexity")
    ax.grid(alpha=0.3)
    ax.set_title("quality against size")
    ax2.set_xlabel("training seconds")
    ax2.set_ylabel("realized fraction (test-time gates)")
    ax2.set_ylim(0, 1.05)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    ax2.set_title("reaching the target (dotted)")
    save(fig, out / "target.png")


if __name__ == "__main__":
    sys.exit(main())
