"""l0ref: structured L0 pruning of recurrent networks, from scratch in NumPy.

Wen, Zhang, Bai, Xu, *Structured Pruning of Recurrent Neural Networks through
Neuron Selection*, with the hard concrete gates of Louizos, Welling, Kingma (2018).
"""
import os as _os

# Idle OpenBLAS and OpenMP (numba) worker threads spin-wait after every call; on a
# two-core machine the spinning BLAS threads take the cores that the numba kernels'
# threads need, and the compact Table 1 LSTM runs ~3x slower.  Shorter spins, unless
# the user chose otherwise.  This takes effect only if l0ref is imported before numpy
# (the ``l0ref`` command and the benchmarks are); see ``l0ref.bench.THREAD_ENV``.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
_os.environ.setdefault("GOMP_SPINCOUNT", "1000")

__version__ = "0.1.0"
