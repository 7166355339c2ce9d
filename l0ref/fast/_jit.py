"""How every kernel of ``fast/`` is compiled: flags, and a disk cache keyed on the whole package.

numba caches a compiled function on disk and reloads it while the *file that defines it*
is unchanged; the code it inlined from other files (the SIMD intrinsics of ``simd.py``,
the product tile of ``tile.py``) is part of the cached machine code but not of that
check, so an edit of ``simd.py`` alone would leave every kernel running the old code.
:func:`njit` closes that trap: its functions' cache entries are stamped with a hash of
every ``.py`` file of this folder (:func:`package_stamp`), so any edit here recompiles
them all, and so does another vector width.  ``tests/test_kernels.py`` checks that every
kernel uses it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numba
from numba.core.caching import (CompileResultCacheImpl, FunctionCache, InTreeCacheLocator, UserProvidedCacheLocator,
                                UserWideCacheLocator)

#: LLVM fast-math flags: reassociate (vectorized reductions), contract (FMA),
#: reciprocal and approximate-function freedom; NaN and inf keep their meaning.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: The exp keeps the order of its operations: with reassociation the compiler may
#: merge the two-part Cody-Waite reduction ``(x - k ln2_hi) - k ln2_lo`` into one.
EXP_FASTMATH = {"nsz", "arcp", "contract", "afn"}
#: What every kernel is compiled with: the fast-math flags above and numpy's error
#: model (a float division by 0 gives inf as in IEEE-754, not Python's
#: ZeroDivisionError, whose test in every division keeps loops from vectorizing).
JIT = dict(fastmath=FASTMATH, error_model="numpy")

PACKAGE_DIR = Path(__file__).resolve().parent


def package_stamp(directory: Path = PACKAGE_DIR) -> str:
    """SHA-256 of the names and bytes of every ``.py`` file in ``directory``."""
    h = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class _PackageStamped:
    """A cache locator whose entries go stale when any file of the package changes, or
    the vector width (``simd.VECTOR_BYTES``: the same machine compiles other code under
    ``L0REF_VECTOR_BYTES``)."""

    def get_source_stamp(self):
        from .simd import VECTOR_BYTES
        return f"{package_stamp()}-{VECTOR_BYTES}"


class _UserProvided(_PackageStamped, UserProvidedCacheLocator):
    pass


class _InTree(_PackageStamped, InTreeCacheLocator):
    pass


class _UserWide(_PackageStamped, UserWideCacheLocator):
    pass


class _PackageCacheImpl(CompileResultCacheImpl):
    _locator_classes = [_UserProvided, _InTree, _UserWide]


class PackageCache(FunctionCache):
    """numba's function cache with :class:`_PackageStamped` locators (same places on disk)."""

    _impl_class = _PackageCacheImpl


def njit(**options):
    """``numba.njit(**JIT, **options)``, cached on disk under :func:`package_stamp`."""
    def decorate(fn):
        dispatcher = numba.njit(**{**JIT, **options})(fn)
        dispatcher._cache = PackageCache(fn)      # what Dispatcher.enable_caching does, our locator
        return dispatcher
    return decorate


__all__ = ["FASTMATH", "EXP_FASTMATH", "JIT", "njit", "package_stamp", "PackageCache"]
