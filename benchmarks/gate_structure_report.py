"""The report of the gate-structure experiment (``benchmarks/gate_structure.py``, which
trains and times the runs): its tables, the choice of lambda, the comparisons of W+G+N with
N, and the figures.

    python benchmarks/gate_structure.py report

reads every result, those under ``--out`` and those of the last report kept in
``docs/data/gate_structure.json`` (:func:`load_docs`: run folders are not in the repository),
picks, per task, the lambda by a rule on validation data alone (:func:`choose`: the largest
whose W+G+N run is within 2 accuracy points, or 2% perplexity, of the unpruned run on
valid), compares W+G+N with N at the same quality across every lambda (:func:`same_quality`)
and seed by seed (:func:`paired_seeds`), writes ``table.md`` (the chosen runs, every run,
the comparisons), ``gate_structure.json``, ``gate_structure.png`` (constant gates) and
``gate_speed_quality.png`` (valid quality against speedup) there and copies all but the
table to ``docs/data`` and ``docs/figures``.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gate_structure import COMPARED, CONFIGS, REPO, TASKS  # noqa: E402


def _quality(q: float, metric: str, sign: str = "") -> str:
    """An accuracy as a percentage, a perplexity as it is (``sign="+"``: a difference)."""
    return f"{100 * q:{sign}.1f}%" if metric == "accuracy" else f"{q:{sign}.1f}"


def format_table(docs, lam: bool = False) -> str:
    lines = [("| task | lambda " if lam else "| task ") + "| run | test | valid | live in/hidden | words kept | recurrent weights removed | compression "
             "| constant i / f / g / o | compact ms | full ms | speedup | torch ms (same size) |",
             ("|---|---:" if lam else "|---") + "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for doc in docs:
        for r in doc["rows"]:
            q, v = _quality(r["quality"], r["metric"]), _quality(r["valid"], r["metric"])
            live = f"{r['live'][0]}/{'/'.join(map(str, r['live'][1:]))}"
            const = " / ".join(f"{100 * r['constant'][k]:.0f}%" for k in "ifgo")
            comp = f"{r['compression']:.1f}x" if r["compression"] else "inf"
            torch_ms = f"{r['torch_ms']:.2f}" if r.get("torch_ms") else "-"
            task = f"{r['task']} | {doc['lam']:g}" if lam else r["task"]
            lines.append(f"| {task} | {r['config']} | {q} | {v} | {live} | {r['vocabulary']:,} / "
                         f"{r['vocab_size']:,} | {100 * r['removed']:.1f}% | {comp} | {const} | {r['ms']:.2f} | "
                         f"{r['full_ms']:.2f} | {r['full_ms'] / r['ms']:.1f}x | {torch_ms} |")
    return "\n".join(lines)


def choose(docs: list) -> dict:
    """Per task, the lambda that the rule picks on validation data alone: the largest whose
    W+G+N run's valid quality is within 2 accuracy points (2% perplexity) of the unpruned
    run's; the smallest lambda if none is.  Lambdas without a W+G+N run (where only
    ``--configs W+G+N@6`` ran, say) are not candidates."""
    chosen = {}
    for task in TASKS:
        mine = sorted((d for d in docs if d["task"] == task and any(r["config"] == "W+G+N" for r in d["rows"])),
                      key=lambda d: d["lam"])
        if not mine:
            continue
        ok = []
        for d in mine:
            rows = {r["config"]: r for r in d["rows"]}
            base, wgn = rows["base"]["valid"], rows["W+G+N"]["valid"]
            good = wgn >= base - 0.02 if rows["base"]["metric"] == "accuracy" else wgn <= 1.02 * base
            if good:
                ok.append(d)
        chosen[task] = (ok[-1] if ok else mine[0])["lam"]
    return chosen


def _at_least_as_good(q: float, ref: float, metric: str) -> bool:
    return q >= ref if metric == "accuracy" else q <= ref


def same_quality(docs: list, fast_config: str = "W+G+N", ref_config: str = "N", variants: bool = False) -> dict:
    """Issue 12's second target, W+G+N's compact model no slower than N's at the same quality,
    measured across every lambda of a task (no fine-tuning): for each N run, the W+G+N runs at
    least as good on valid, and the fastest of them.  Speed as the speedup over the full-size
    model timed in the same process (``full_ms / ms``), since the runs of different lambdas
    were timed in different processes.  Per task: ``{"pairs": [{"ref": point, "best": point
    or None, "verdict": "no slower" | "slower" | "none as good", "best_layout": point or
    None, "verdict_best": ...}], "met": bool, "met_best": bool}``, a point ``{"lam",
    "valid", "test", "speedup", "speedup_best", "ms"}``; ``*_best``: each model, and each
    full-size one, in its faster layout (:func:`_best_ms`), which does not depend on the
    rule "auto" followed when the run was timed.  ``variants``: take the docs as given (one
    variant's runs, :func:`dense_start_docs`), else the plain runs alone."""
    result = {}
    for task in TASKS:
        mine = [d for d in docs if d["task"] == task and (variants or not _variant(d))]
        points = {fast_config: [], ref_config: []}
        metric = None
        for d in sorted(mine, key=lambda d: d["lam"]):
            for r in d["rows"]:
                if r["config"] in points and r.get("ms"):
                    metric = r["metric"]
                    points[r["config"]].append({"lam": d["lam"], "valid": r["valid"], "test": r["quality"],
                                                "speedup": r["full_ms"] / r["ms"], "ms": r["ms"],
                                                "speedup_best": _best_speedup(r)})
        if not points[ref_config] or not points[fast_config]:
            continue
        pairs = []
        for ref in points[ref_config]:
            good = [w for w in points[fast_config] if _at_least_as_good(w["valid"], ref["valid"], metric)]
            pair = {"ref": ref}
            for key, suffix in (("speedup", ""), ("speedup_best", "_best")):
                best = max(good, key=lambda w: w[key]) if good else None
                pair["best" + ("_layout" if suffix else "")] = best
                pair["verdict" + suffix] = ("none as good" if best is None
                                            else "no slower" if best[key] >= ref[key] else "slower")
            pairs.append(pair)
        result[task] = {"metric": metric, "pairs": pairs, "met": all(p["verdict"] == "no slower" for p in pairs),
                        "met_best": all(p["verdict_best"] == "no slower" for p in pairs), "fast": fast_config}
    return result


def format_same_quality(result: dict) -> str:
    fast = next(iter(result.values())).get("fast", "W+G+N") if result else "W+G+N"
    lines = [f"| task | N (lambda) | valid | speedup | fastest {fast} at least as good on valid (lambda) | valid "
             f"| speedup | {fast} against N | the same, each in its faster layout |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for task, res in result.items():
        fmt = lambda q: _quality(q, res["metric"])  # noqa: E731
        for pair in res["pairs"]:
            ref, best, other = pair["ref"], pair["best"], pair.get("best_layout")
            if best is None:
                tail = f"- | - | - | no {fast} run as good | no {fast} run as good"
            else:
                tail = (f"{best['lam']:g} | {fmt(best['valid'])} | {best['speedup']:.2f}x | "
                        f"{_against(best['speedup'] / ref['speedup'])} | ")
                if other is not None and "speedup_best" in ref:
                    tail += (f"{_against(other['speedup_best'] / ref['speedup_best'])}"
                             + ("" if other["lam"] == best["lam"] else f" (lambda {other['lam']:g})"))
            lines.append(f"| {task} | {ref['lam']:g} | {fmt(ref['valid'])} | {ref['speedup']:.2f}x | {tail} |")
    return "\n".join(lines)


def _key(doc: dict) -> tuple:
    return (doc["task"], float(doc["lam"]), float(doc.get("finetune") or 0.0), int(doc.get("seed") or 0),
            _dense(doc))


def _dense(doc: dict) -> float:
    """A run's dense-start fraction (0: none)."""
    return float(doc.get("dense_start") or 0.0)


def _variant(doc: dict) -> bool:
    """A fine-tuned run, another seed or a dense start: reported apart, never a candidate
    of the lambda rule of the plain runs."""
    return bool(doc.get("finetune")) or bool(doc.get("seed")) or bool(doc.get("dense_start"))


def dense_start_docs(docs: list) -> dict:
    """The runs with a dense start (``--dense-start F``, seed 0, no fine-tuning), per F: a
    method of their own, so the same rule on valid (:func:`choose`) picks their lambda,
    and W+G+N is compared with N at the same quality among them where both ran."""
    out = {}
    for f in sorted({float(d["dense_start"]) for d in docs if d.get("dense_start")}):
        mine = sorted((d for d in docs if _dense(d) == f and not d.get("finetune")
                       and not d.get("seed")), key=lambda d: (list(TASKS).index(d["task"]), d["lam"]))
        with_n = [d for d in mine if any(r["config"] == "N" for r in d["rows"])]
        compared = {c: same_quality(with_n, c, variants=True) for c in COMPARED}
        out[f] = {"docs": mine, "chosen": choose(mine), "same_quality": {c: r for c, r in compared.items() if r}}
    return out


def seed_spread(docs: list) -> list:
    """Per task, lambda and run type that ran with other seeds (``--seed``; no fine-tuning):
    the valid and test quality and the recurrent weights removed of each seed (seed 0
    first), their means, and the mean's difference to the unpruned runs' mean over the
    same seeds."""
    plain = [d for d in docs if not d.get("finetune")]
    groups = sorted({(d["task"], d["lam"], _dense(d)) for d in plain if d.get("seed")},
                    key=lambda k: (list(TASKS).index(k[0]), k[2], k[1]))
    out = []
    for task, lam, dense in groups:
        mine = sorted((d for d in plain if d["task"] == task and d["lam"] == lam and _dense(d) == dense),
                      key=lambda d: d.get("seed") or 0)
        configs = [r["config"] for r in mine[-1]["rows"]]
        by = {c: [(d.get("seed") or 0, r) for d in mine for r in d["rows"] if r["config"] == c] for c in configs}
        base_seeds = {seed: r for seed, r in by.get("base", [])}
        for c in configs:
            seeds = [seed for seed, _ in by[c]]
            rows = [r for _, r in by[c]]
            bases = [base_seeds[seed] for seed in seeds if seed in base_seeds]
            entry = {"task": task, "lam": lam, "dense_start": dense, "config": c, "seeds": seeds,
                     "metric": rows[0]["metric"],
                     "valid": [r["valid"] for r in rows], "test": [r["quality"] for r in rows],
                     "removed": [r["removed"] for r in rows]}
            for k in ("valid", "test", "removed"):
                entry[f"{k}_mean"] = float(np.mean(entry[k]))
            if len(bases) == len(rows) and c != "base":
                entry["valid_gap"] = entry["valid_mean"] - float(np.mean([b["valid"] for b in bases]))
                entry["test_gap"] = entry["test_mean"] - float(np.mean([b["quality"] for b in bases]))
            out.append(entry)
    return out


def paired_seeds(docs: list, fast_config: str = "W+G+N", ref_config: str = "N") -> list:
    """Issue 12's second target seed by seed: per task, lambda and dense start where some
    seed beyond 0 ran both W+G+N and N (no fine-tuning), each seed's pair, both compact models
    timed in the same process (speedup over the full-size model there), and the means over
    the seeds (``means``: per side, the mean valid and the geometric mean of the speedups): the
    valid difference and the geometric mean of W+G+N's speedup over N's.
    ``met_mean`` (``met_mean_best``: each model in its faster layout): on the means, W+G+N
    at least as good on valid and no slower, the comparison of the two methods that does
    not hang on which seed's pair lands on which side of a fine line."""
    plain = [d for d in docs if not d.get("finetune")]
    point = lambda r: {"valid": r["valid"], "test": r["quality"], "speedup": r["full_ms"] / r["ms"],  # noqa: E731
                       "speedup_best": _best_speedup(r)}
    out = []
    for task, lam, dense in sorted({(d["task"], d["lam"], _dense(d)) for d in plain if d.get("seed")},
                                   key=lambda k: (list(TASKS).index(k[0]), k[2], k[1])):
        pairs = []
        for d in sorted(plain, key=lambda d: d.get("seed") or 0):
            if (d["task"], d["lam"], _dense(d)) != (task, lam, dense):
                continue
            rows = {r["config"]: r for r in d["rows"] if r.get("ms")}
            if fast_config in rows and ref_config in rows:
                pairs.append({"seed": d.get("seed") or 0, "metric": rows[ref_config]["metric"], "fast_config": fast_config,
                              "ref": point(rows[ref_config]), "fast": point(rows[fast_config])})
        if len(pairs) < 2:
            continue
        for p in pairs:
            good = _at_least_as_good(p["fast"]["valid"], p["ref"]["valid"], p["metric"])
            p["ratio"] = p["fast"]["speedup"] / p["ref"]["speedup"]
            p["ratio_best"] = p["fast"]["speedup_best"] / p["ref"]["speedup_best"]
            p["met"] = good and p["ratio"] >= 1.0
            p["met_best"] = good and p["ratio_best"] >= 1.0
        geomean = lambda values: float(np.exp(np.mean(np.log(values))))  # noqa: E731
        means = {side: {"valid": float(np.mean([p[side]["valid"] for p in pairs])),
                        "speedup": geomean([p[side]["speedup"] for p in pairs])} for side in ("ref", "fast")}
        as_good = _at_least_as_good(means["fast"]["valid"], means["ref"]["valid"], pairs[0]["metric"])
        e = {"task": task, "lam": lam, "dense_start": dense, "fast_config": fast_config, "pairs": pairs,
             "means": means, "valid_diff_mean": means["fast"]["valid"] - means["ref"]["valid"],
             "ratio_geomean": geomean([p["ratio"] for p in pairs]),
             "ratio_best_geomean": geomean([p["ratio_best"] for p in pairs]),
             "ratio_range": [min(p["ratio"] for p in pairs), max(p["ratio"] for p in pairs)],
             "met": sum(p["met"] for p in pairs), "met_best": sum(p["met_best"] for p in pairs)}
        e["met_mean"] = as_good and e["ratio_geomean"] >= 1.0
        e["met_mean_best"] = as_good and e["ratio_best_geomean"] >= 1.0
        out.append(e)
    return out


def _best_speedup(r: dict) -> float:
    """A run's speedup over the full-size model, each in its faster layout."""
    return _best_ms(r, "full_") / _best_ms(r)


def _best_ms(r: dict, prefix: str = "") -> float:
    """A run's (``prefix="full_"``: the full-size model's) time in the faster of the two
    layouts, where both were timed (classifiers), else in the default one."""
    times = [r.get(f"{prefix}{layout}_ms") for layout in ("rows", "lanes")]
    times = [t for t in times if t]
    return min(times) if times else r[f"{prefix}ms"]


def format_paired(paired: list) -> str:
    lines = ["| task | lambda | dense start | run | seed | N valid | N speedup | its valid | its speedup "
             "| against N | against N, each in its faster layout |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for e in paired:
        for p in e["pairs"]:
            f = lambda q: _quality(q, p["metric"])        # noqa: E731
            speed, best = _against(p["ratio"]), _against(p["ratio_best"])
            lines.append(f"| {e['task']} | {e['lam']:g} | {e['dense_start']:g} | {e['fast_config']} | {p['seed']} | "
                         f"{f(p['ref']['valid'])} | "
                         f"{p['ref']['speedup']:.2f}x | {f(p['fast']['valid'])} | {p['fast']['speedup']:.2f}x | "
                         f"{speed}{' (target met)' if p['met'] else ''} | "
                         f"{best}{' (target met)' if p['met_best'] else ''} |")
        g = lambda q: _quality(q, e["pairs"][0]["metric"], "+").rstrip("%")  # noqa: E731
        r, rb = e["ratio_geomean"], e["ratio_best_geomean"]
        on_means = lambda met: "; on the means: target met" if met else "; on the means: not met"  # noqa: E731
        lo, hi = e["ratio_range"]
        lines.append(f"| {e['task']} | {e['lam']:g} | {e['dense_start']:g} | {e['fast_config']} | mean | | | "
                     f"{g(e['valid_diff_mean'])} "
                     f"points | | {r:.2f}x {'as fast' if r >= 1 else 'the speed'} (geometric mean; seeds "
                     f"{lo:.2f}-{hi:.2f}x); met in {e['met']} of {len(e['pairs'])}{on_means(e['met_mean'])} | "
                     f"{rb:.2f}x {'as fast' if rb >= 1 else 'the speed'}; met in "
                     f"{e['met_best']} of {len(e['pairs'])}{on_means(e['met_mean_best'])} |")
    return "\n".join(lines)


def _against(r: float) -> str:
    return f"{r:.2f}x as fast" if r >= 1 else f"{1 / r:.2f}x slower"


def format_seeds(spread: list) -> str:
    lines = ["| task | lambda | run | seeds | valid | test | recurrent weights removed | mean valid (against base) "
             "| mean test (against base) |", "|---|---:|---|---|---|---|---|---:|---:|"]
    for e in spread:
        f = lambda q: _quality(q, e["metric"])            # noqa: E731
        g = lambda q: _quality(q, e["metric"], "+").rstrip("%")  # noqa: E731
        gap_v = f" ({g(e['valid_gap'])})" if "valid_gap" in e else ""
        gap_t = f" ({g(e['test_gap'])})" if "test_gap" in e else ""
        run = e["config"] + (f" (dense start {e['dense_start']:g})" if e.get("dense_start") and e["config"] != "base" else "")
        lines.append(f"| {e['task']} | {e['lam']:g} | {run} | {', '.join(map(str, e['seeds']))} | "
                     f"{' / '.join(map(f, e['valid']))} | {' / '.join(map(f, e['test']))} | "
                     f"{' / '.join(f'{100 * r:.1f}%' for r in e['removed'])} | {f(e['valid_mean'])}{gap_v} | "
                     f"{f(e['test_mean'])}{gap_t} |")
    return "\n".join(lines)


def load_docs(out: Path, published: Path = REPO / "docs" / "data" / "gate_structure.json") -> list:
    """Every task command's results: those of ``published`` (the last report's, kept in the
    repository) and those under ``out`` (``<task>_lam<L>/results.json``; a new one of the same
    task, lambda, fine-tuning, seed and dense start replaces the published one's rows of the
    run types it has and keeps the others, each row with the full-size time of the process
    that timed it), so a report made where the run folders of earlier sessions are gone
    still has every result."""
    docs = {}
    if published.exists():
        for doc in json.loads(published.read_text())["tasks"]:
            doc = {k: v for k, v in doc.items() if k != "chosen"}
            docs[_key(doc)] = doc
    for path in sorted(out.glob("*/results.json")):
        doc = json.loads(path.read_text())
        old = docs.get(_key(doc))
        if old is not None:
            have = {r["config"] for r in doc["rows"]}
            rows = doc["rows"] + [r for r in old["rows"] if r["config"] not in have]
            doc = dict(doc, rows=sorted(rows, key=lambda r: list(CONFIGS).index(r["config"])))
        docs[_key(doc)] = doc
    return list(docs.values())


def report(args) -> None:
    out = Path(args.out)
    docs = load_docs(out)
    if not docs:
        raise SystemExit(f"no results under {out} nor in docs/data/gate_structure.json; run a task first")
    out.mkdir(parents=True, exist_ok=True)
    order = lambda d: (list(TASKS).index(d["task"]), d["lam"])  # noqa: E731
    tuned = sorted((d for d in docs if d.get("finetune")), key=order)
    seeded = sorted((d for d in docs if d.get("seed") and not d.get("finetune")), key=order)
    dense = dense_start_docs(docs)
    docs = sorted((d for d in docs if not _variant(d)), key=order)
    chosen = choose(docs)
    for d in docs:
        d["chosen"] = chosen.get(d["task"]) == d["lam"]
    picked = [d for t in TASKS for d in docs if d["task"] == t and d["chosen"]]
    table = format_table(picked)
    every = format_table(docs, lam=True)
    text = f"Chosen on valid (lambda per task: {chosen}):\n\n{table}\n\nEvery run:\n\n{every}\n"
    if tuned:
        text += ("\nWith fine-tuning (" + ", ".join(f"{d['task']} lambda {d['lam']:g}: last {100 * d['finetune']:g}%"
                                               for d in tuned) + "):\n\n" + format_table(tuned, lam=True) + "\n")
    spread = seed_spread(docs + seeded + [d for entry in dense.values() for d in entry["docs"]])
    if spread:
        text += "\nOther seeds (the same settings; not candidates of the lambda rule):\n\n" + format_seeds(spread) + "\n"
    every_seed = docs + seeded + [d for entry in dense.values() for d in entry["docs"]]
    paired = [e for c in COMPARED for e in paired_seeds(every_seed, c)]
    if paired:
        text += ("\nW+G+N (and W+G+N@6) against N seed by seed (both timed in the same process; \"target met\": "
                 "at least as good on valid and no slower):\n\n" + format_paired(paired) + "\n")
    for f, entry in dense.items():
        text += (f"\nWith a dense start (the first {100 * f:g}% of each pruned run trains the unpruned network; "
                 f"not candidates of the rule above; the same rule among them picks "
                 f"{', '.join(f'{t} {lam:g}' for t, lam in entry['chosen'].items())}):\n\n"
                 + format_table(entry["docs"], lam=True) + "\n")
        for config, result in entry["same_quality"].items():
            text += (f"\n{config} against N at the same quality, both with the dense start:\n\n"
                     + format_same_quality(result) + "\n")
    same = {c: res for c in COMPARED if (res := same_quality(docs, c))}
    for config, result in same.items():
        text += (f"\n{config} against N at the same quality (every lambda where it ran; speedup over the full-size "
                 "model timed in the same process; target met on: "
                 + (", ".join(t for t, r in result.items() if r["met"]) or "none")
                 + "; each in its faster layout: "
                 + (", ".join(t for t, r in result.items() if r["met_best"]) or "none") + "):\n\n"
                 + format_same_quality(result) + "\n")
    (out / "table.md").write_text(text)
    dense_docs = [d for entry in dense.values() for d in entry["docs"]]
    dense_json = {f"{f:g}": {"chosen": e["chosen"], "same_quality": e["same_quality"]} for f, e in dense.items()}
    (out / "gate_structure.json").write_text(json.dumps({"chosen": chosen, "tasks": docs + tuned + seeded + dense_docs,
                                                         "same_quality": same, "seeds": spread,
                                                         "paired_seeds": paired,
                                                         "dense_start": dense_json}, indent=1) + "\n")
    plot(docs, out / "gate_structure.png")
    plot_speed_quality(docs, out / "gate_speed_quality.png", dense_docs)
    shutil.copy(out / "gate_speed_quality.png", REPO / "docs" / "figures" / "gate_speed_quality.png")
    pairs_6 = [e for e in paired if e["fast_config"] == "W+G+N@6"]
    if pairs_6:
        plot_seed_pairs(pairs_6, out / "gate_seed_pairs.png")
        shutil.copy(out / "gate_seed_pairs.png", REPO / "docs" / "figures" / "gate_seed_pairs.png")
    (REPO / "docs" / "data").mkdir(exist_ok=True)
    shutil.copy(out / "gate_structure.json", REPO / "docs" / "data" / "gate_structure.json")
    shutil.copy(out / "gate_structure.png", REPO / "docs" / "figures" / "gate_structure.png")
    print(text)


def plot(docs, path: Path) -> None:
    """Bars: per task and lambda (groups) and gate type (bars), the constant fraction of
    W+G+N (and +V, hatched) -- the structure the runs learned; the chosen lambda's labels
    in bold."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = sum("G" in r["config"] for doc in docs for r in doc["rows"])
    fig, ax = plt.subplots(figsize=(max(14.0, 0.75 * groups), 4.8))
    colors = {"i": "#4c72b0", "f": "#dd8452", "g": "#55a868", "o": "#c44e52"}
    x = 0.0
    ticks, labels = [], []
    for doc in docs:
        for r in doc["rows"]:
            if "G" not in r["config"]:
                continue
            for k, gate in enumerate("ifgo"):
                ax.bar(x + 0.2 * k, 100 * r["constant"][gate], 0.2, color=colors[gate],
                       hatch="//" if r["config"].endswith("V") else None, edgecolor="white",
                       label=gate if x == 0 else None)
            ticks.append(x + 0.3)
            labels.append(f"{doc['task']} {r['config']}\nλ={doc['lam']:g}{' *' if doc.get('chosen') else ''}")
            x += 1.2
        x += 0.4
    ax.set_xticks(ticks, labels, fontsize=7, rotation=35, ha="right")
    ax.set_ylabel("live units with the gate constant (%)")
    ax.set_ylim(0, 100)
    ax.legend(title="gate", ncols=4, loc="upper left")
    ax.set_title("Constant gates per task (LSTM, L0 gates; * = lambda chosen on valid; "
                 "benchmarks/gate_structure.py)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_seed_pairs(paired: list, path: Path) -> None:
    """Per task (one panel each of :func:`paired_seeds`' groups): every seed's N and its
    W+G+N (or W+G+N@6) as two points, valid quality against the compact model's speedup
    over the full-size one timed in the same process, joined by a thin line (labels: the
    seed), and the means over the seeds (valid: arithmetic, speedup: geometric) as large
    markers.  Up and right is better (the perplexity axis inverted)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(paired), figsize=(4.6 * len(paired), 3.9), squeeze=False)
    colors = {"ref": "#4c72b0", "fast": "#937860"}
    for ax, e in zip(axes[0], paired):
        metric = e["pairs"][0]["metric"]
        scale = 100 if metric == "accuracy" else 1
        names = {"ref": "N", "fast": e["fast_config"]}
        for p in e["pairs"]:
            xs = [p[side]["speedup"] for side in ("ref", "fast")]
            ys = [scale * p[side]["valid"] for side in ("ref", "fast")]
            ax.plot(xs, ys, color="grey", lw=0.6, alpha=0.6)
            for side, x, y in zip(("ref", "fast"), xs, ys):
                ax.plot(x, y, "o", color=colors[side], ms=4)
            ax.annotate(str(p["seed"]), (xs[1], ys[1]), textcoords="offset points", xytext=(3, 2), fontsize=6,
                        color=colors["fast"])
        for side, m in e["means"].items():
            x, y = m["speedup"], scale * m["valid"]
            ax.plot(x, y, "D", color=colors[side], ms=10, mec="black", label=f"{names[side]}, mean over the seeds")
        if metric != "accuracy":
            ax.invert_yaxis()                                   # up is better in every panel
        ax.set_xlabel("compact model's speedup over the full-size one (x)")
        ax.set_ylabel("valid accuracy (%)" if metric == "accuracy" else "valid perplexity")
        verdict = "met" if e["met_mean"] else "not met"
        ax.set_title(f"{e['task']}, lambda {e['lam']:g}, dense start: {len(e['pairs'])} seeds\n"
                     f"{e['ratio_geomean']:.2f}x N's speed on the means (target {verdict}); "
                     f"pairs met {e['met']} of {len(e['pairs'])}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.margins(0.08)
    handles, labels = axes[0][0].get_legend_handles_labels()       # the means' markers, once, below the panels
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False)
    fig.suptitle(f"Each seed's N and {paired[0]['fast_config']} (small dots, joined; label: seed) and their means "
                 "(one thread; benchmarks/gate_structure.py report)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_speed_quality(docs, path: Path, dense_docs=()) -> None:
    """Per task: valid quality against the compact model's speedup over the full-size one
    (timed in the same process), one line per run type through its lambdas (``dense_docs``,
    runs with a dense start: dashed, hollow markers); the unpruned run's valid quality
    dashed grey.  Up and right is better (the perplexity axis inverted)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = [t for t in TASKS if any(d["task"] == t for d in docs)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.8), squeeze=False)
    styles = {"N": ("#4c72b0", "o"), "W+N": ("#8172b3", "s"), "W+G+N": ("#c44e52", "D"), "W+G+N+V": ("#55a868", "^"),
              "W+G+N@6": ("#937860", "P")}
    for ax, task in zip(axes[0], tasks):
        mine = sorted((d for d in docs if d["task"] == task), key=lambda d: d["lam"])
        metric = mine[0]["rows"][0]["metric"]
        scale = 100 if metric == "accuracy" else 1
        dense = sorted((d for d in dense_docs if d["task"] == task), key=lambda d: d["lam"])
        for runs, suffix, look in ((mine, "", {}), (dense, ", dense start", {"ls": "--", "markerfacecolor": "none"})):
            for config, (color, marker) in styles.items():
                pts = [(d["lam"], r) for d in runs for r in d["rows"] if r["config"] == config and r.get("ms")]
                if not pts:
                    continue
                xs = [r["full_ms"] / r["ms"] for _, r in pts]
                ys = [scale * r["valid"] for _, r in pts]
                ax.plot(xs, ys, color=color, marker=marker, label=config + suffix, lw=1, **look)
                for (lam, _), x, y in zip(pts, xs, ys):
                    ax.annotate(f"{lam:g}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7,
                                color=color)
        bases = [scale * r["valid"] for d in mine for r in d["rows"] if r["config"] == "base"]
        if bases:
            ax.axhline(bases[0], color="grey", ls="--", lw=1, label="unpruned")
        if metric != "accuracy":
            ax.invert_yaxis()                                   # up is better in every panel
        ax.set_xlabel("compact model's speedup over the full-size one (x)")
        ax.set_ylabel("valid accuracy (%)" if metric == "accuracy" else "valid perplexity")
        ax.set_title(f"{task} (labels: lambda)", fontsize=9)
        ax.grid(alpha=0.3)
    labels = {}                                             # every panel's lines, once, below the panels
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(label, handle)
    fig.legend(list(labels.values()), list(labels), loc="lower center", ncol=len(labels), fontsize=7, frameon=False)
    fig.suptitle("Quality against speed, every lambda (one thread; benchmarks/gate_structure.py)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
