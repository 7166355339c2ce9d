"""What the kernels do for wide machines (issue 13): the vector width chosen from the CPU,
the unit-group layout of the gate columns, and the barrier of the column-split
recurrences.

Every vector width is tested on this machine: ``L0REF_VECTOR_BYTES`` makes a fresh
process compile the kernels for it (LLVM splits a vector wider than the registers, so
the numbers are the same anywhere), and the kernels must equal the NumPy reference
there.  The wide machine runs this file too, natively on AVX-512 (``docs/wide.md``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from l0ref import fast
from l0ref.fast import layout, simd, sync


# --------------------------------------------------------------------------- vector width


@pytest.mark.parametrize("features, want", [
    ({"sse2"}, 16),
    ({"avx", "sse2"}, 16),                              # AVX without FMA: no fused multiply-add vectors
    ({"avx2", "fma", "avx"}, 32),
    ({"avx2", "fma", "avx512f", "avx512vl"}, 64),
    (set(), 16),
])
def test_vector_width_follows_the_cpu_features(features, want):
    assert simd.host_vector_bytes(features) == want


def test_the_tile_fills_the_registers_there_are():
    assert simd.VECTOR_REGISTERS == (32 if simd.VECTOR_BYTES == 64 else 16)
    rows = fast.tile.MAX_ROWS
    assert 2 * rows + 3 <= simd.VECTOR_REGISTERS, "accumulators + 2 weights + a broadcast must fit"
    assert rows == (12 if simd.VECTOR_BYTES == 64 else 6)


_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_kernels import random_problem, RTOL
    from l0ref import fast, models as model
    out = {{"bytes": fast.simd.VECTOR_BYTES, "rows": fast.tile.MAX_ROWS, "describe": fast.simd.describe(),
           "errors": []}}
    for cell in ("lstm", "gru", "rhn"):
        for seed, sizes in ((0, (19, (37, 21))), (1, (5, (0, 9)))):
            config, params, tokens, state0 = random_problem(cell, seed, np.float32, sizes=sizes)
            ref, _ = model.log_probs(config, params, tokens, state0=state0)
            for parts in (1, 3):
                got, _ = fast.run(fast.prepare(config, params, parts=parts), tokens, state0)
                err = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
                out["errors"].append([cell, seed, parts, err])
    from l0ref import compact
    from l0ref.models import classifier
    rng = np.random.default_rng(0)                 # the LSTM classifier with the documents in the lanes
    mc = model.ModelConfig("lstm", 30, 9, (13, 6), {{}}, ("neurons", "preact"), 3)
    p = model.init_params(mc, rng, np.float32)
    for a in p["log_alpha"]["preact"]:
        a[...] = np.where(rng.random(a.shape) < 0.4, -10.0, 10.0)
    cm = compact.compact(mc, p)
    lengths = rng.integers(1, 12, 37)
    tokens = rng.integers(0, 30, (11, 37))
    ref = classifier.log_probs(mc, p, tokens, lengths, model.eval_gates(p))
    got = fast.classify(fast.prepare(cm.config, cm.params), tokens, lengths, layout="lanes")
    out["errors"].append(["lstm classifier, lanes", 0, 1, float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))])
    print(json.dumps(out))
""")


#: The widths a fresh process is forced to: all but the host's own, which every other
#: kernel test of the suite runs in this process (``simd.VECTOR_BYTES``), every layout,
#: schedule, dtype and cell; a fresh process for it would compile those kernels again
#: (131 s on the AVX-512 development host) to test the same code.
OTHER_WIDTHS = [w for w in sorted(simd.WIDTHS.values()) if w != simd.VECTOR_BYTES]


def test_the_other_widths_are_the_ones_this_process_does_not_run():
    assert sorted(OTHER_WIDTHS + [simd.VECTOR_BYTES]) == sorted(simd.WIDTHS.values()) and len(OTHER_WIDTHS) == 2


@pytest.mark.parametrize("width", OTHER_WIDTHS)
def test_every_vector_width_equals_the_reference(width):
    """A fresh process per width (the width is fixed at import and in the cache stamp):
    every cell, two models, one and three unit groups, float32, against the reference;
    and an LSTM classifier with constant gates in the lanes layout."""
    env = {**os.environ, simd.ENV_VECTOR_BYTES: str(width)}
    tests = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run([sys.executable, "-c", _CHILD.format(tests=tests)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["bytes"] == width and got["rows"] == (12 if width == 64 else 6)
    assert f"{width}-byte vectors" in got["describe"]
    for cell, seed, parts, err in got["errors"]:
        assert err <= 1e-5, f"{width}-byte vectors, {cell} seed {seed}, {parts} groups: relative error {err:.3g}"
    assert len(got["errors"]) == 13


def test_a_wrong_vector_width_is_refused():
    env = {**os.environ, simd.ENV_VECTOR_BYTES: "48"}
    done = subprocess.run([sys.executable, "-c", "import l0ref.fast"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "L0REF_VECTOR_BYTES='48': give one of [16, 32, 64]" in done.stderr


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 31, 296, 389])
@pytest.mark.parametrize("blocks", [2, 3, 4])
@pytest.mark.parametrize("parts", [1, 2, 5, 16])
def test_unit_groups_cover_the_units_in_whole_panels(n, blocks, parts):
    dtype = np.float32
    nr = fast.tile.panel_width(dtype)
    q = layout.quantum(blocks, nr)
    assert (q * blocks) % nr == 0
    groups = layout.unit_groups(n, blocks, parts, dtype)
    assert groups.shape == (parts, 4)
    first, units, column, panels = groups.T
    assert units.sum() == n and first[0] == 0
    np.testing.assert_array_equal(first[1:], (first + units)[:-1])            # consecutive units
    np.testing.assert_array_equal(column[1:], (column + panels * nr)[:-1])     # consecutive columns
    np.testing.assert_array_equal(panels, -(-blocks * units // nr))           # each group in whole panels
    assert all(u % q == 0 for u in units[:-1] if u) or n < q                   # whole quanta but the last
    assert units.max() - units[units > 0].min() <= q if n else True           # shared out evenly
    rows = layout.gate_rows(n, blocks, groups, dtype)
    assert len(rows) == layout.width(groups, dtype)
    assert sorted(rows[rows >= 0].tolist()) == list(range(blocks * n))         # every gate row once


def test_one_group_is_the_plain_layout():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        M = rng.normal(size=(4 * 13, 5)).astype(dtype)
        groups = layout.unit_groups(13, 4, 1, dtype)
        rows = layout.gate_rows(13, 4, groups, dtype)
        np.testing.assert_array_equal(layout.pack_grouped(M, rows, dtype), fast.tile.pack_panels(M, dtype))
        np.testing.assert_array_equal(layout.pad_grouped(M[:, 0], rows, dtype), fast.tile.pad_panels(M[:, 0], dtype))


def test_a_group_holds_all_gates_of_its_units():
    dtype = np.float32
    groups = layout.unit_groups(20, 4, 3, dtype)
    rows = layout.gate_rows(20, 4, groups, dtype)
    for first, units, column, _ in groups:
        for a in range(4):
            np.testing.assert_array_equal(rows[column + a * units: column + (a + 1) * units],
                                          a * 20 + np.arange(first, first + units))


# --------------------------------------------------------------------------- barrier


@numba.njit(parallel=True)
def _steps(sync_, parties, steps, seen):
    """Each party writes its step number, meets the others, then reads every party's:
    after barrier t, every party must see every other's step t."""
    for p in numba.prange(parties):
        for t in range(steps):
            seen[p, t, p] = t + 1
            if not sync.wait(sync_, t + 1, parties, p):
                break
            for o in range(parties):
                if seen[o, t, o] != t + 1:
                    seen[p, t, parties] = -1                 # saw a party that had not arrived


def test_the_barrier_holds_every_thread_at_each_step():
    parties = numba.get_num_threads()
    steps = 200
    seen = np.zeros((parties, steps, parties + 1), np.int64)
    s = sync.new_sync(parties)
    _steps(s, parties, steps, seen)
    assert not sync.aborted(s)
    assert (seen[:, :, parties] == 0).all(), "a thread passed a barrier before another had arrived"
    used = [sync.slot(p, k, parties) for p in range(parties) for k in range(sync.rounds(parties))]
    assert (s[used] == steps).all(), "each signal slot gets one add a barrier"


@pytest.mark.parametrize("parties", [2, 3, 5, 8, 13, 16])
def test_dissemination_rounds_reach_every_party(parties):
    """After the rounds, each party has heard from every other, directly or through
    others: party p hears from p - 2^k in round k, and what they heard before."""
    heard = [{p} for p in range(parties)]
    for k in range(sync.rounds(parties)):
        heard = [heard[p] | heard[(p - 2 ** k) % parties] for p in range(parties)]
    assert all(h == set(range(parties)) for h in heard)
    assert sync.rounds(parties) == int(np.ceil(np.log2(parties)))
    slots = {sync.slot(p, k, parties) for p in range(parties) for k in range(sync.rounds(parties))}
    assert len(slots) == parties * sync.rounds(parties) and max(slots) < sync.size(parties)
    assert all(a % sync.LINE == 0 for a in slots) and sync.ABORT not in slots   # a cache line each


def test_a_barrier_nobody_else_reaches_gives_up():
    s = sync.new_sync(2)
    assert not sync.wait(s, 1, 2, 0, 1000)                  # one of two parties: waits 1000 spins, gives up
    assert sync.aborted(s)
    assert not sync.wait(s, 2, 1, 0, 1000)                  # once aborted, every wait returns at once


def test_one_party_never_waits():
    s = sync.new_sync(1)
    assert all(sync.wait(s, t, 1, 0, 0) for t in range(1, 5))
    assert not sync.aborted(s)


def test_threading_layer_is_one_that_runs_parties_together():
    """CI's numba has OpenMP (or the workqueue): the column split is taken, not the fallback."""
    assert sync.barrier_safe(), numba.threading_layer()
