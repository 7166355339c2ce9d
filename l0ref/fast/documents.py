"""The kernel driver of a compact document classifier: :func:`classify`.

Documents of a batch differ in length.  They are sorted longest first and run packed,
step t holding the documents longer than t (PyTorch's ``pack_padded_sequence``), in one
of two layouts (:data:`LAYOUTS`): the dense kernels' rows of documents
(``driver.run_packed``; a CSR layer padded in :func:`length_segments`), or the documents
in the vector lanes (``lanes.py``, where a constant gate costs nothing).  Then each
document's last state, the dense layer and the log-softmax (``softmax.py``).  The
language model's driver is ``driver.py``, whose layouts of the layers this reads.
"""
from __future__ import annotations

import numpy as np

from . import lanes as lanes_mod
from . import simd
from . import sparse as sparse_mod
from .driver import Prepared, _check_threads, _check_tokens, run_packed, run_sparse_layer
from .softmax import output_log_probs
from .tile import split

#: At most this many row counts in :func:`classify`'s shrinking batch (kernel calls per layer).
CLASSIFY_SEGMENTS = 8


def length_segments(lengths_desc: np.ndarray, segments: int = CLASSIFY_SEGMENTS) -> list[tuple[int, int, int]]:
    """How :func:`classify` runs documents sorted by length, longest first: ``(t0, t1,
    rows)``, steps ``t0 <= t < t1`` on the first ``rows`` documents.  The row counts are
    ``B - floor(k B / S)`` for k = 0..S-1 (S = min(B, ``segments``)), and a count runs until
    every document after it has ended, so each step computes every document still going
    (as ``pack_padded_sequence`` does) and a few that ended, whose outputs nobody reads."""
    B = lengths_desc.shape[0]
    S = max(1, min(B, int(segments)))
    counts = [B - (k * B) // S for k in range(S)] + [0]
    out, t0 = [], 0
    for rows, after in zip(counts[:-1], counts[1:]):
        t1 = int(lengths_desc[after]) if after > 0 else int(lengths_desc[0])
        if t1 > t0:
            out.append((t0, t1, rows))
            t0 = t1
    return out


def _first_rows(state, rows: int):
    """A layer's final state (the cell's form) cut to its first ``rows`` sequences."""
    return tuple(a[:rows] for a in state) if isinstance(state, tuple) else state[:rows]


#: ``layout=`` of :func:`classify`: the packed dense kernels (rows of documents), the
#: documents in the vector lanes (``lanes.py``; dense LSTM layers), or "auto".
LAYOUTS = ("auto", "rows", "lanes")
#: The "auto" rule's estimate of the lanes' time over the rows' (:func:`lanes_over_rows`):
#: ``waste * max(LANES_K - LANES_K_SMALL / n, LANES_K_MIN) * (1 - LANES_CONSTANT * q)`` for a
#: dense LSTM layer of n units with a share q of its gate rows constant, on a batch whose
#: steps fill ``waste`` lanes a token (whole vectors).  Fitted to ``benchmarks/layouts.py``
#: on the 2-core EPYC (one thread, float32, 16 lanes; docs/classification.md): the lanes
#: win for small layers, whose rows layout pays per step for products too small to fill
#: its tiles (n = 8: 0.54x the rows' time on a Rotten Tomatoes batch, waste 1.25), and lose
#: on long, uneven documents (n = 128: 1.49x on a Reuters R8 batch, waste 1.73).
LANES_K, LANES_K_SMALL, LANES_K_MIN, LANES_CONSTANT = 0.88, 3.8, 0.3, 0.6


def _step_counts(desc: np.ndarray) -> np.ndarray:
    """Documents at each step (T,) int64, for lengths ``desc`` sorted longest first."""
    return (np.arange(int(desc[0]))[:, None] < desc[None, :]).sum(axis=1).astype(np.int64)


def _lanes_waste(counts: np.ndarray, dtype) -> float:
    """Lanes that steps of ``counts`` documents fill, whole SIMD vectors each, over the tokens."""
    lanes = simd.lanes(dtype)
    return float((-(-counts // lanes) * lanes).sum() / counts.sum())


def lanes_over_rows(prepared: Prepared, counts: np.ndarray) -> float:
    """The estimated time of the lanes layout over that of the rows for a batch whose steps
    hold ``counts`` documents: each layer's estimate (:data:`LANES_K`), weighted by the
    layer's share of the products, ``4 n (m + n)``; inf without a layer of units."""
    waste = _lanes_waste(counts, prepared.emb.dtype)
    m, total, weighted = prepared.emb.shape[1], 0.0, 0.0
    for q in prepared.layers:
        n = q["n"]
        if n:
            work = 4 * n * (m + n)
            k = max(LANES_K - LANES_K_SMALL / n, LANES_K_MIN)
            estimate = waste * k * (1 - LANES_CONSTANT * q["constant_rows"] / (4 * n))
            total, weighted = total + work, weighted + work * estimate
        m = n
    return weighted / total if total else float("inf")


def choose_layout(prepared: Prepared, counts: np.ndarray, threads: int) -> str:
    """The layout that "auto" of :func:`classify` takes for a batch whose steps hold
    ``counts`` documents (``counts[0]``: all of them): "lanes" where every layer can run
    there (dense LSTM layers), ``threads`` are no more than the lanes can use
    (``lanes.usable``) and the lanes are estimated faster (:func:`lanes_over_rows` < 1);
    else "rows"."""
    if not all("lanes" in q for q in prepared.layers):
        return "rows"
    if not lanes_mod.usable(int(counts[0]), prepared.emb.dtype, threads):
        return "rows"
    return "lanes" if lanes_over_rows(prepared, counts) < 1 else "rows"


def classify(prepared: Prepared, tokens, lengths, schedule: str = "auto", threads: int | None = None,
             layout: str = "auto") -> np.ndarray:
    """Class log-probabilities (B, C) of a compact document classifier laid out by
    :func:`prepare` (``models.classifier.log_probs`` with gates None).

    The documents are sorted by length, longest first, and packed step after step (step
    t: the documents longer than t; PyTorch's ``pack_padded_sequence``).  ``layout``
    (:data:`LAYOUTS`) says how the recurrent layers run:

    - "lanes": the documents in the vector lanes (``lanes.py``), where a constant gate
      costs nothing; for dense LSTM layers only, on at most one thread per vector of
      documents;
    - "rows": a dense layer is one input product and one recurrence over exactly the
      tokens there are (:func:`run_packed`, ``schedule`` as there); a CSR layer runs
      padded in :func:`length_segments`, a few calls over a batch that shrinks as
      documents end;
    - "auto": :func:`choose_layout` (``threads``: default numba's).

    Then each document's last-layer output at its last token ``lengths[b] - 1``, the
    dense layer and log-softmax (the softmax kernel, over C columns), in the caller's
    order."""
    if prepared.n_classes is None:
        raise ValueError("this is a language model; run it with fast.run, not fast.classify")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    tokens = _check_tokens(prepared, tokens)
    T, B = tokens.shape
    lengths = np.asarray(lengths)
    if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer) or lengths.min() < 1 \
            or lengths.max() > T:
        raise ValueError(f"lengths must be ({B},) integers in [1, {T}], got {lengths.dtype} {lengths.shape}")
    threads = _check_threads(threads)
    order = np.argsort(-lengths, kind="stable")
    desc = lengths[order]
    T = int(desc[0])
    if layout == "lanes" and not all("lanes" in q for q in prepared.layers):
        raise ValueError(f"layout 'lanes' runs dense LSTM layers only; this {prepared.cell} classifier has "
                         f"{'CSR layers' if prepared.cell == 'lstm' else 'none'}")
    counts = _step_counts(desc)
    if layout == "auto":
        layout = choose_layout(prepared, counts, threads)
    if layout == "lanes":
        h = _lanes_last_outputs(prepared, tokens[:T, order], desc, counts, threads)
    else:
        h = _rows_last_outputs(prepared, tokens[:T, order], desc, schedule, threads)
    C = prepared.n_classes
    logp = np.empty((B, C), h.dtype)
    output_log_probs(h, prepared.out_W, prepared.out_b, logp,
                     *split(B, prepared.out_W.shape[0], prepared.out_W.shape[-1]))
    result = np.empty_like(logp)
    result[order] = logp
    return result


def _rows_last_outputs(prepared: Prepared, tokens, desc, schedule, threads) -> np.ndarray:
    """The last layer's output (B, n) of each document at its last step, documents sorted
    longest first (tokens (T, B) in that order): the "rows" layout of :func:`classify`."""
    T, B = tokens.shape
    live = np.arange(T)[:, None] < desc[None, :]                 # (T, B): step t of document b exists
    starts = np.concatenate([[0], np.cumsum(live.sum(axis=1))]).astype(np.int64)
    x = np.take(prepared.emb, tokens[live], axis=0)              # (tokens, e), packed
    for q in prepared.layers:
        if q.get("sparse"):
            x = _sparse_packed(prepared.cell, q, x, live, desc)
        else:
            x, _ = run_packed(prepared.cell, q, x, starts, None, schedule, threads)
    return np.ascontiguousarray(x[starts[desc - 1] + np.arange(B)])


def _lanes_last_outputs(prepared: Prepared, tokens, desc, counts, threads) -> np.ndarray:
    """As :func:`_rows_last_outputs`, in the "lanes" layout (``lanes.py``); ``counts``:
    :func:`_step_counts` of ``desc``."""
    T, B = tokens.shape
    dtype = prepared.emb.dtype
    xT = np.zeros((T, prepared.emb.shape[1], sparse_mod.padded_batch(B, dtype)), dtype)
    lanes_mod.gather_input(prepared.emb, np.ascontiguousarray(tokens), counts, xT)
    for q in prepared.layers:
        xT = lanes_mod.run_lstm(q["lanes"], xT, counts, threads)
    h = np.empty((B, xT.shape[1]), dtype)
    lanes_mod.last_outputs(xT, np.ascontiguousarray(desc, np.int64), h)
    return h


def _sparse_packed(cell: str, q: dict, x: np.ndarray, live: np.ndarray, desc: np.ndarray) -> np.ndarray:
    """A CSR layer over packed steps (:func:`classify`): padded to (T, B, m) and run in
    :func:`length_segments`, the outputs packed again."""
    T, B = live.shape
    padded = np.zeros((T, B, x.shape[1]), x.dtype)
    padded[live] = x
    out = np.zeros((T, B, q["n"]), x.dtype)
    state = None
    for t0, t1, rows in length_segments(desc):
        s0 = None if state is None else _first_rows(state, rows)
        out[t0:t1, :rows], state = run_sparse_layer(cell, q, np.ascontiguousarray(padded[t0:t1, :rows]), s0)
    return out[live]


__all__ = ["classify", "choose_layout", "lanes_over_rows", "LAYOUTS", "LANES_K", "LANES_K_SMALL", "LANES_K_MIN",
           "LANES_CONSTANT", "length_segments", "CLASSIFY_SEGMENTS"]
