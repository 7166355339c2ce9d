"""Checkpoint files: ``.npz`` archives of plain arrays with a JSON header, written atomically.

A checkpoint holds nothing but arrays, so it loads with ``np.load(..., allow_pickle=False)``
and can never run code.  One entry, ``__header__``, is the UTF-8 bytes of a JSON document
stored as a ``uint8`` array; every other entry is a named array.  The header names the
file's format and version, so a reader rejects a file meant for something else::

    __header__        uint8 (k,)   JSON: {"format": ..., "version": ..., ...}
    params/emb        (V, e)       one entry per array of a nested parameter tree,
    params/layers.0.W (4n, m)      named by ``tree.walk``
    ...

Writing is atomic: the archive goes to a temporary file in the target's directory, is
flushed and ``fsync``-ed, then ``os.replace`` moves it over the target in one step.  A
crash (or an exception) at any point before the rename leaves the previous file as it
was; the temporary file is removed when Python gets the chance.

Reading turns every way a file can be bad -- truncated, not a zip, no header, a header
that is not JSON, the wrong format or version, arrays missing or of the wrong shape -- into
a ``ValueError`` that names the file.  A missing file stays ``FileNotFoundError``.

This module knows nothing about training; ``training/checkpoints.py`` decides what goes
in the header and the arrays.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .tree import walk

HEADER_KEY = "__header__"


# ---------------------------------------------------------------------------------------
# Header
# ---------------------------------------------------------------------------------------


def encode_header(header: dict) -> np.ndarray:
    """The header as a ``uint8`` array of UTF-8 JSON bytes (strict JSON: no NaN)."""
    text = json.dumps(header, sort_keys=True, allow_nan=False)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode_header(raw: np.ndarray, path="checkpoint") -> dict:
    """Inverse of :func:`encode_header`; ``ValueError`` if the bytes are not a JSON object."""
    raw = np.asarray(raw)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path}: header must be a 1-D uint8 array, got {raw.dtype} {raw.shape}")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: header is not valid UTF-8 JSON ({err})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header must be a JSON object, got {type(header).__name__}")
    return header


# ---------------------------------------------------------------------------------------
# Nested trees <-> flat names
# ---------------------------------------------------------------------------------------


def flatten(tree, prefix: str) -> dict[str, np.ndarray]:
    """``{prefix/name: array}`` for a nested dict/list tree, names as ``tree.walk`` gives
    them (dict keys sorted, list items numbered): ``params/layers.0.W``."""
    return {f"{prefix}/{name}": np.asarray(a) for name, a in walk(tree, strict=True)}


def unflatten(arrays: dict[str, np.ndarray], prefix: str, path="checkpoint"):
    """Rebuild the tree that :func:`flatten` stored under ``prefix``.

    Numbered parts become lists (their numbers must run 0, 1, 2, ...), named parts dicts.
    Returns None when nothing is stored under ``prefix``.
    """
    items = {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}
    if not items:
        return None
    root: dict = {}
    for name, value in items.items():
        parts = name.split(".")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{path}: inconsistent array names under {prefix!r} ({name!r})")
        if parts[-1] in node:
            raise ValueError(f"{path}: inconsistent array names under {prefix!r} ({name!r})")
        node[parts[-1]] = value

    def build(node):
        if not isinstance(node, dict):
            return node
        keys = list(node)
        if all(k.isdigit() for k in keys):
            idx = sorted(int(k) for k in keys)
            if idx != list(range(len(idx))):
                raise ValueError(f"{path}: list entries under {prefix!r} are not numbered 0..{len(idx) - 1}")
            return [build(node[str(i)]) for i in idx]
        if any(k.isdigit() for k in keys):
            raise ValueError(f"{path}: mixed list and dict entries under {prefix!r}")
        return {k: build(v) for k, v in node.items()}

    return build(root)


# ---------------------------------------------------------------------------------------
# Atomic write, checked read
# ---------------------------------------------------------------------------------------


def _write_npz(fh, arrays: dict[str, np.ndarray]) -> None:
    """Write the archive into an open binary file (a seam for the crash tests)."""
    np.savez(fh, **arrays)


def save_npz(path, header: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``header`` and ``arrays`` to ``path`` atomically (see the module docstring).

    ``path`` gets no suffix added.  Object arrays are refused (they would need pickle).
    Returns the path written.
    """
    path = Path(path)
    if HEADER_KEY in arrays:
        raise ValueError(f"{HEADER_KEY!r} is reserved for the header")
    try:
        payload = {HEADER_KEY: encode_header(header)}
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the header cannot be stored as JSON: {err}") from None
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.hasobject:
            raise ValueError(f"array {name!r} has dtype object, which a checkpoint cannot hold")
        payload[name] = a
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_npz(fh, payload)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_npz(path, format_name: str, versions=(1,)) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a file written by :func:`save_npz`: ``(header, arrays)``, all arrays in memory.

    ``ValueError`` (naming the file) if it is not a readable archive, has no header, or its
    header's ``format`` is not ``format_name`` or its ``version`` not in ``versions``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    with open(path, "rb") as fh:  # our own handle: closed even when np.load fails half-way
        try:
            npz = np.load(fh, allow_pickle=False)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, RuntimeError) as err:
            raise ValueError(f"{path}: not a readable npz archive (corrupt or truncated?): "
                             f"{type(err).__name__}: {err}") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: holds a single .npy array, not an npz archive")
        with npz:
            arrays = {}
            for k in npz.files:
                try:
                    arrays[k] = npz[k]
                except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, RuntimeError) as err:
                    raise ValueError(f"{path}: array {k!r} is corrupt or truncated: "
                                     f"{type(err).__name__}: {err}") from None
    if HEADER_KEY not in arrays:
        raise ValueError(f"{path}: no {HEADER_KEY!r} entry; not an l0ref {format_name} file")
    header = decode_header(arrays.pop(HEADER_KEY), path)
    if header.get("format") != format_name:
        raise ValueError(f"{path}: format is {header.get('format')!r}, expected {format_name!r}")
    if header.get("version") not in versions:
        raise ValueError(f"{path}: {format_name} version {header.get('version')!r} is not supported "
                         f"(this l0ref reads versions {list(versions)})")
    return header, arrays


def peek_format(path) -> str | None:
    """The ``format`` named in a file's header, or None if it has no readable header."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if HEADER_KEY not in npz.files:
                return None
            return decode_header(npz[HEADER_KEY], path).get("format")
    except FileNotFoundError:
        raise
    except Exception:  # noqa: BLE001 - any unreadable file simply has no format
        return None


__all__ = ["HEADER_KEY", "encode_header", "decode_header", "flatten", "unflatten",
           "save_npz", "load_npz", "peek_format"]
