"""The run summary: one JSON document per run, one schema, one writer (:func:`write`).

Every run of the pipeline (``l0ref train``, the PTB experiments, sweeps) ends with a
``summary.json`` of this form; ``l0ref report`` and the experiment tables read it.

=====================  =====================================================================
key                    value
=====================  =====================================================================
schema, version        ``"l0ref-run-summary"``, 1
name, label            the run's name (its directory) and a short label for plots
cell, sizes, live      the cell; full and live (test-time gate != 0) sizes per gate group
lam1, lam2             the penalty multipliers per layer, in units of 0.08/N
n_train_tokens         N
steps, epochs          updates made, epochs finished
stopped_by_time        True when the time budget ended training before its epochs
selection              ``"last"`` (the final parameters) or ``"best_valid"`` (the epoch of
                       lowest validation perplexity), and ``selected_epoch``
valid_ppl, test_ppl    perplexities of the selected parameters with test-time gates (None
                       where the corpus has no such split)
reference_ppl          ``{"uniform", "unigram"}`` perplexities on valid (or train)
expected_nonzero       expected nonzero recurrent weights (Eq. 4, all gate blocks)
params_before/after    weights and biases of the full and the compact model
macs_before/after      multiply-adds per token of the full and the compact model
compact_max_abs_diff   largest log-probability difference, masked full vs compact models
timing, speedup        seconds per batch (``compact_kernel_1``, ``full_kernel_1``, ...,
                       ``full_numpy_masked``) and full / compact in the kernel, 1 thread
threads                numba threads of the timing's many-thread rows
train_seconds          training time; ``wall_seconds``: the whole run
config                 ``{"model": ModelConfig.to_dict(), "train": TrainConfig.to_dict()}``
data                   what the corpus was, and how it differs from the paper's setting
gate_families          the model's gate families; ``constant_gates``: per layer, live units and
                       per gate type how many have it constant; ``sparse_matrices`` (CSR)
=====================  =====================================================================

A classifier's run (``l0ref train --task classify``, ``classify.py``) has ``task``
``"classify"``, perplexities None, and ``valid_acc``, ``test_acc`` (``valid_loss``,
``test_loss`` per document), ``confusion`` (test; rows the true class), ``classes``,
``nonzero_weights`` (``full``, ``kept``, ``removed_fraction``, ``compression`` of the
recurrent layers' matrices), ``vocabulary_kept`` (words whose gate is open; None without
vocabulary gates) and ``timing_batch`` (documents, padded steps and tokens of the timed
batch); ``n_train_tokens`` is then the number of training documents.
"""
from __future__ import annotations

import json
from pathlib import Path

SCHEMA = "l0ref-run-summary"
VERSION = 1
REQUIRED = ("name", "cell", "sizes", "live", "lam1", "lam2", "steps", "epochs", "selection", "valid_ppl",
            "test_ppl", "params_before", "params_after", "macs_before", "macs_after", "expected_nonzero",
            "compact_max_abs_diff", "config")


def make(**fields) -> dict:
    """A summary with the schema's header, checked for the required keys."""
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        raise ValueError(f"a run summary needs {missing}")
    return {"schema": SCHEMA, "version": VERSION, **fields}


def write_json(path, obj) -> Path:
    """``obj`` as indented strict JSON at ``path``, atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def write(path, summary: dict) -> Path:
    """Write a summary made by :func:`make` (the one writer of ``summary.json``)."""
    if summary.get("schema") != SCHEMA or summary.get("version") != VERSION:
        raise ValueError(f"not a {SCHEMA} v{VERSION} document")
    return write_json(path, summary)


__all__ = ["SCHEMA", "VERSION", "REQUIRED", "make", "write", "write_json"]
