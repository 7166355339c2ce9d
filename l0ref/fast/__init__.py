"""Dense numba inference for compact models (``docs/design.md`` section 5), split by job:

- ``simd.py``: LLVM's vector types for numba (load, store, broadcast, fma, max, 2**k),
  64, 32 or 16 bytes wide as the CPU allows (AVX-512, AVX2, SSE2);
- ``vmath.py``: a vectorizable exp, and the sigmoid and tanh on it (within 4 ulp);
- ``tile.py``: the one register-blocked product tile every multiply-add goes through
  (12 or 6 rows, as the registers allow), the packed layouts it reads, and the matrix
  products built on it, split among the threads in blocks of rows x columns;
- ``layout.py``: the gate columns of a layer in unit groups, one per thread;
- ``sync.py``: the barrier of the threads that split a recurrence by columns;
- ``recurrences.py``: the LSTM, GRU and RHN over a whole sequence, gate math fused,
  the threads by rows of the batch or by unit groups (``docs/wide.md``);
- ``layers.py``: one compiled call per layer (its buffers, input product and recurrence),
  so that no Python runs between a layer's kernels;
- ``softmax.py``: the softmax product and the log-softmax, in one parallel pass or,
  split by columns, with per-block maxima and sums;
- ``sparse.py``: the CSR kernel of weight-sparse layers (Lobacheva et al.'s weight gates);
- ``lanes.py``: a classifier's LSTM with the documents in the vector lanes, where a
  constant gate costs no product row and no sigmoid (Lobacheva et al.'s gate sparsity);
- ``driver.py``: :func:`prepare` (lay a model out once; constant gates get no column,
  weight-sparse layers go to the CSR kernel), :func:`run`, :func:`log_probs`, and the
  table of cells that have a kernel;
- ``documents.py``: :func:`classify` (a document classifier: documents packed by length,
  in the rows or the lanes layout, last state per document, dense layer);
- ``_jit.py``: the compile flags and a disk cache keyed on every file of this folder.

The NumPy code (``models/``, ``cells/``) is the reference; this package computes the
same numbers (``tests/test_kernels.py``: float32 to 1e-5, float64 to 1e-10, layer by
layer and end to end) and imports nothing from the training code.

Not in the paper, chosen here: float32 and float64 both run, each in its own precision;
``fastmath`` allows reassociation and contraction (FMA) but not the no-NaN / no-inf
assumptions, so results differ from the reference by rounding only.  No BLAS: an
OpenBLAS product inside the forward brings a second pool of threads, and the idle
threads of two pools take the cores from each other (measured with earlier kernels
that called numpy's OpenBLAS: the first layer of the compact Table 1 LSTM took 3.4 ms
with OpenBLAS's threads sent to sleep at once, 8.0 ms with its default spin).  The tile
matches OpenBLAS on these shapes (``docs/speed.md``).
"""
from .driver import KERNELS, SPARSE, Prepared, log_probs, prepare, prepare_layer, run, run_layer, run_stack
from .documents import classify

__all__ = ["KERNELS", "SPARSE", "Prepared", "classify", "log_probs", "prepare", "prepare_layer", "run", "run_layer", "run_stack"]
