"""``l0ref report``: the figures of one or more run directories (:func:`make_report`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..gates import PARAMS_KEY, live_counts
from .curves import _fmt, plot_live_neurons, plot_ppl_vs_width, plot_size_target
from .figure import matplotlib_parts
from .gate_structure import plot_constant_gates
from .structure import _config_fields, plot_structure

__all__ = ["read_run", "make_report", "TEST_PPL_KEYS", "LAMBDA_KEYS"]


#: Keys accepted for the final test perplexity in a run's summary, in order.
TEST_PPL_KEYS = ("test_ppl", "test_perplexity", "ppl_test")
#: Keys accepted for the penalty strength in a run's summary, in order.
LAMBDA_KEYS = ("lambda", "lam", "lambdas", "lam1")


def read_run(run_dir) -> tuple[list[dict], dict, list[str]]:
    """``(history, summary, notes)`` of a run directory, tolerant of what is missing.

    ``history.json`` may be a list of records (the dicts of :func:`plot_live_neurons`)
    or a dict with ``"history"`` (that list) and optionally ``"summary"`` and ``"config"``;
    a separate ``summary.json`` is merged into the summary.  The summary may hold
    ``test_ppl`` (or ``test_perplexity``), ``lambda`` (or ``lam``, ``lam1`` and ``lam2``),
    ``label``, ``live``, ``sizes``, ``expected_nonzero``.  ``notes`` says what was not found.
    """
    run_dir = Path(run_dir)
    notes: list[str] = []
    history: list[dict] = []
    summary: dict = {}
    hist_path = run_dir / "history.json"
    if not run_dir.is_dir():
        return [], {}, [f"{run_dir}: not a directory"]
    if hist_path.exists():
        try:
            data = json.loads(hist_path.read_text())
        except (OSError, ValueError) as exc:
            data = None
            notes.append(f"{hist_path}: unreadable ({exc})")
        if isinstance(data, list):
            history = data
        elif isinstance(data, dict):
            history = data.get("history") or data.get("records") or []
            summary.update(data.get("summary") or {})
            if "config" in data and "config" not in summary:
                summary["config"] = data["config"]
        elif data is not None:
            notes.append(f"{hist_path}: expected a list of records or a dict with 'history', got {type(data).__name__}")
    else:
        notes.append(f"{run_dir}: no history.json")
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        try:
            extra = json.loads(summary_path.read_text())
            if isinstance(extra, dict):
                summary.update(extra)
        except (OSError, ValueError) as exc:
            notes.append(f"{summary_path}: unreadable ({exc})")
    history = [r for r in history if isinstance(r, dict)]
    return history, summary, notes


def _run_record(name: str, history: list[dict], summary: dict, model, notes: list[str]) -> dict:
    """One point of Fig. 3 from what a run directory holds (see :func:`make_report`)."""
    rec: dict = {"label": summary.get("label"), "series": summary.get("series", "")}
    for key in TEST_PPL_KEYS:
        if summary.get(key) is not None:
            rec["test_ppl"] = float(summary[key])
            break
    valid = [r["valid_ppl"] for r in history if r.get("valid_ppl") is not None]
    given = summary.get("valid_ppl")
    rec["valid_ppl"] = float(given if given is not None else valid[-1] if valid else float("nan"))
    if not rec["label"]:
        lam = next((summary[k] for k in LAMBDA_KEYS if summary.get(k) is not None), None)
        if lam is not None and lam is summary.get("lam1") and summary.get("lam2") is not None:
            rec["label"] = f"λ1={_fmt(summary['lam1'])}, λ2={_fmt(summary['lam2'])}"
        elif lam is not None:
            rec["lambda"] = lam
        else:
            notes.append(f"{name}: no lambda in the summary (keys {', '.join(LAMBDA_KEYS)}, lam2); "
                         "its point is labeled with the run name")
            rec["label"] = name
    if model is not None:
        config, params, gates = model
        if gates is None and params.get(PARAMS_KEY) is not None:
            from ..models import inference_gates
            gates = inference_gates(params)
        if gates is not None:
            rec["live"] = live_counts(gates)
    if rec.get("live") is None:
        if summary.get("live") is not None:
            rec["live"] = list(summary["live"])
        else:
            lives = [r["live"] for r in history if r.get("live") is not None]
            rec["live"] = list(lives[-1]) if lives else None
    enz = summary.get("expected_nonzero")
    if enz is None:
        values = [r["expected_nonzero"] for r in history if r.get("expected_nonzero") is not None]
        enz = values[-1] if values else None
    rec["expected_nonzero"] = enz
    return rec


def _as_model(obj) -> tuple | None:
    """``(config, params, gates)`` from a loader's or the caller's ``(config, params[, gates])``
    tuple or ``{"config", "params"[, "gates"]}`` dict; None passes through."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj["config"], obj["params"], obj.get("gates")
    obj = tuple(obj)
    if len(obj) == 2:
        return obj[0], obj[1], None
    if len(obj) == 3:
        return obj
    raise ValueError(f"a model is (config, params) or (config, params, gates), got {len(obj)} items")


def make_report(run_dirs, out_dir, *, loader: Callable | None = None,
                models: Sequence | Mapping | None = None,
                log: Callable[[str], None] | None = None) -> list[Path]:
    """Write the figures of one or more runs into ``out_dir``; returns the PNG paths.

    For each run directory ``RUN`` (named by its last path component, made unique):

    - ``RUN_live.png`` (:func:`plot_live_neurons`) from ``RUN/history.json`` (see
      :func:`read_run` for the forms it may take);
    - ``RUN_target.png`` (:func:`plot_size_target`) for a run with a size target;
    - ``RUN_structure.png`` (:func:`plot_structure`) from the trained model, which comes
      from ``models`` (a sequence aligned with ``run_dirs``, or a mapping from run dir to
      model) or else from ``loader(run_dir)``.  A model is ``(config, params)``,
      ``(config, params, gates)`` or a dict with those keys; the loader may return None or
      raise ``FileNotFoundError`` when a run has no checkpoint.  The checkpoint format
      belongs to the trainer, so this module reads none itself: the CLI passes its loader.

    Across runs, ``ppl_vs_width.png`` (:func:`plot_ppl_vs_width`) from each run's
    summary: test perplexity (validation perplexity for all runs if no run has a test
    perplexity, and the axis says so), lambda, and the live widths (from the model's
    gates, else the summary's ``live``, else the last history record).

    What is missing is reported through ``log`` (default: standard error) and written,
    with the list of figures, to ``out_dir/report.md``.
    """
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = [Path(d) for d in run_dirs]
    matplotlib_parts()  # fail early, with the install hint, before touching anything
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda msg: print(f"l0ref report: {msg}", file=sys.stderr))
    if isinstance(models, Mapping):
        given = {Path(k): v for k, v in models.items()}
        models = [given.get(d) for d in run_dirs]
    elif models is not None:
        models = list(models)
        if len(models) != len(run_dirs):
            raise ValueError(f"got {len(models)} models for {len(run_dirs)} run directories")

    written: list[Path] = []
    notes: list[str] = []
    records: list[dict] = []
    names = _unique_names(run_dirs)
    for i, (run_dir, name) in enumerate(zip(run_dirs, names)):
        history, summary, run_notes = read_run(run_dir)
        model = _as_model(models[i]) if models is not None else None
        if model is None and loader is not None:
            try:
                model = _as_model(loader(run_dir))
                if model is None:
                    run_notes.append(f"{name}: the loader found no checkpoint; no structure figure")
            except FileNotFoundError as exc:
                run_notes.append(f"{name}: no checkpoint ({exc}); no structure figure")
        elif model is None:
            run_notes.append(f"{name}: no model given and no checkpoint loader; no structure figure")
        if any(r.get("live") is not None for r in history):
            sizes = None
            if model is not None:
                _, _, e, hidden = _config_fields(model[0])
                sizes = [e, *hidden]
            written.append(plot_live_neurons(history, out_dir / f"{name}_live.png", sizes=sizes,
                                             title=f"{name}: live neurons per gate group"))
        elif history:
            run_notes.append(f"{name}: history has no 'live' records; no live-neuron figure")
        if any(r.get("target") is not None for r in history):
            written.append(plot_size_target(history, out_dir / f"{name}_target.png",
                                            title=f"{name}: size target, expected and realized size"))
        if model is not None:
            config, params, gates = model
            written.append(plot_structure(config, params, out_dir / f"{name}_structure.png", gates=gates,
                                          title=f"{name}: {_config_fields(config)[0].upper()} structure"))
            if "preact" in getattr(config, "gate_families", ()) and params.get(PARAMS_KEY) is not None:
                written.append(plot_constant_gates(config, params, out_dir / f"{name}_constant_gates.png",
                                                   title=f"{name}: constant gates (Lobacheva et al.'s statistic)"))
        rec = _run_record(name, history, summary, model, run_notes)
        if rec.get("test_ppl") is None:
            run_notes.append(f"{name}: no test perplexity in the summary (keys {', '.join(TEST_PPL_KEYS)})")
        if rec.get("live") is None:
            run_notes.append(f"{name}: no live widths; left out of ppl_vs_width")
        records.append(rec)
        notes += run_notes

    with_width = [r for r in records if r.get("live") is not None]
    if any(r.get("test_ppl") is not None for r in with_width):
        points, ppl_label = [r for r in with_width if r.get("test_ppl") is not None], "test perplexity"
    else:
        points = [dict(r, test_ppl=r["valid_ppl"]) for r in with_width if np.isfinite(r["valid_ppl"])]
        ppl_label = "validation perplexity (no test perplexity recorded)"
        if points:
            notes.append("no run has a test perplexity: ppl_vs_width shows the final validation perplexity")
    if points:
        written.append(plot_ppl_vs_width(points, out_dir / "ppl_vs_width.png", ppl_label=ppl_label,
                                         title="Perplexity vs remaining width"))
    else:
        notes.append("no run has both a perplexity and live widths: no ppl_vs_width figure")
    for note in notes:
        log(note)
    lines = ["# l0ref report", "", "Runs: " + ", ".join(str(d) for d in run_dirs), "", "## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in written] or ["(none)"]
    lines += ["", "## Missing", ""] + ([f"- {n}" for n in notes] or ["(nothing)"])
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return written


def _unique_names(run_dirs: Iterable[Path]) -> list[str]:
    names, seen = [], {}
    for d in run_dirs:
        base = d.resolve().name or "run"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names
