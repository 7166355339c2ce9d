"""A barrier for the threads of one ``prange``: what the column-split recurrences wait on.

When a batch has fewer rows than there are threads, the recurrences split each step's
product by output columns (``recurrences.py``), and every thread needs the whole state
of the previous step: the threads meet once per step.  Ending a ``prange`` and starting
another would do, at 9 us per fork-join on 16 cores (``benchmarks/fork_join.py``,
OpenMP); 30 steps of an RHN of depth 10 are 300 meetings.  This barrier costs the time
of the last thread's arrival and ceil(log2(parties)) signals from core to core:

- :func:`atomic_add`, :func:`atomic_load`: LLVM's ``atomicrmw add`` and an acquiring
  ``load atomic`` on an element of an int64 array (sequentially consistent; the add
  releases every write the thread made before it, the load acquires those of the
  others);
- :func:`wait`: barrier number ``epoch`` (1, 2, ...) of ``parties`` threads, a
  dissemination barrier (Hensgen, Finkel and Manber 1988): in round k = 0, 1, ... while
  2^k < ``parties``, party p signals party (p + 2^k) mod ``parties`` and waits for the
  signal of party (p - 2^k) mod ``parties``; after the last round every party has heard,
  directly or through others, from every other.  A signal is an atomic add of one on a
  slot that only its sender writes and only its receiver reads, each slot on a cache
  line of its own (:func:`slot`), so no line is fought over by all the threads (a
  counter that every thread adds to, the version before, cost 2.4 us on 16 cores:
  ``docs/wide.md``, version 6).  Slots only grow (barrier ``epoch`` brings every slot
  to ``epoch``), so nothing is reset and no two barriers can be confused.

It is only correct where the ``parties`` iterations of the ``prange`` run at the same
time, one per thread: numba's OpenMP and workqueue layers give each thread one of
``numba.get_num_threads()`` iterations; TBB may run two on one thread, one after the
other, which would wait for ever (:func:`barrier_safe` says which).  Should a wait ever
spin past ``SPIN_LIMIT`` (seconds, against a step of microseconds), it gives up and
raises the abort flag, every thread leaves its loop, and the driver runs the layer again
by rows (no barrier): slow, never wrong, never hung.
"""
from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.core.extending import intrinsic

from ._jit import njit

#: Spins of a wait before it gives up (each is one atomic load; 2**31 of them take seconds).
SPIN_LIMIT = 2 ** 31
#: The threading layers that run the iterations of a ``prange`` of one per thread together.
CONCURRENT_LAYERS = ("omp", "workqueue")

#: int64 slots of a 64-byte cache line: a barrier's array holds one line for the abort
#: flag, then one line per party and round (:func:`slot`).
LINE = 8
#: The abort flag's slot.
ABORT = 0


def _is_int64_array(a) -> bool:
    return isinstance(a, types.Array) and a.layout == "C" and a.dtype == types.int64


def _slot(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


@intrinsic
def atomic_add(typingctx, a, i, v):
    """``a[i] += v`` atomically (sequentially consistent) for an int64 array; returns the old value."""
    if not (_is_int64_array(a) and isinstance(i, types.Integer) and isinstance(v, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _slot(context, builder, sig.args[0], args[0], args[1])
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, value, "seq_cst")

    return types.int64(a, i, v), codegen


@intrinsic
def atomic_load(typingctx, a, i):
    """``a[i]`` of an int64 array, read atomically with acquire ordering."""
    if not (_is_int64_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _slot(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(a, i), codegen


@njit()
def rounds(parties):
    """Rounds of a dissemination barrier of ``parties``: ceil(log2(parties))."""
    k, distance = 0, 1
    while distance < parties:
        k, distance = k + 1, 2 * distance
    return k


@njit()
def slot(party, k, parties):
    """Where party ``party`` receives its signal of round ``k``: a cache line of its own."""
    return LINE * (1 + party * rounds(parties) + k)


@njit()
def wait(sync, epoch, parties, party, limit=SPIN_LIMIT):
    """Barrier number ``epoch`` (1-based) of ``parties`` threads on ``sync``
    (:func:`new_sync` of at least ``parties``), for party ``party`` (0 <= party <
    ``parties``, one per thread).  Returns False, and raises the abort flag, if a
    signal did not come within ``limit`` spins, or at once if another thread gave up.
    One party returns at once."""
    if atomic_load(sync, ABORT) != 0:
        return False
    k, distance = 0, 1
    while distance < parties:
        atomic_add(sync, slot((party + distance) % parties, k, parties), 1)
        mine = slot(party, k, parties)
        spins = 0
        while atomic_load(sync, mine) < epoch:
            if atomic_load(sync, ABORT) != 0:
                return False
            spins += 1
            if spins > limit:
                atomic_add(sync, ABORT, 1)
                return False
        k, distance = k + 1, 2 * distance
    return True


@njit()
def size(parties):
    """int64 slots of a barrier of ``parties``: the abort line and a line per party and round."""
    return LINE * (1 + parties * rounds(parties))


def new_sync(parties: int) -> np.ndarray:
    """A fresh barrier of ``parties`` threads (the ``parties`` that every wait on it is given): every slot 0."""
    return np.zeros(size(max(1, int(parties))), np.int64)


def aborted(sync: np.ndarray) -> bool:
    return bool(sync[ABORT])


def barrier_safe() -> bool:
    """Whether numba's threading layer runs a ``prange``'s iterations one per thread, at once
    (asked once: a process keeps the layer it chose first)."""
    if not _LAYER:
        try:
            _LAYER.append(numba.threading_layer())
        except ValueError:                   # not chosen yet: choose it by running something parallel
            _touch(np.zeros(1))
            _LAYER.append(numba.threading_layer())
    return _LAYER[0] in CONCURRENT_LAYERS


_LAYER: list = []                            #: numba's threading layer, once known


@njit(parallel=True)
def _touch(a):
    """Anything parallel: numba picks its threading layer at the first parallel run."""
    for i in numba.prange(a.shape[0]):
        a[i] += 1.0


__all__ = ["atomic_add", "atomic_load", "wait", "new_sync", "aborted", "barrier_safe", "SPIN_LIMIT",
           "CONCURRENT_LAYERS", "rounds", "slot", "size", "LINE", "ABORT"]
