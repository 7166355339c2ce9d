"""Which kind of l0ref model file a path is (a training checkpoint or a compact model),
with an error that says what it is instead, and reading either kind."""
from __future__ import annotations

import errno
from pathlib import Path

from . import checkpoint as ckpt
from . import compact as compact_mod
from . import data as data_mod
from . import training as train_mod


def file_format(path) -> str:
    """The format of an l0ref model file (a training checkpoint or a compact model), or a
    ``ValueError`` that says what the file is instead."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such model file", str(path))
    if path.is_dir():
        hint = " (a run directory? its model is checkpoint.npz or compact.npz)" if (path / "checkpoint.npz").exists() else ""
        raise ValueError(f"{path} is a directory, not a model file{hint}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(f"{path} is not an l0ref model file (a checkpoint.npz or a compact model): it is not an "
                         f"npz archive")
    fmt = ckpt.peek_format(path)
    if fmt not in (train_mod.CHECKPOINT_FORMAT, compact_mod.FORMAT_NAME):
        raise ValueError(f"{path} is an npz archive but not an l0ref model file (its header names "
                         f"{fmt!r}, expected {train_mod.CHECKPOINT_FORMAT!r} or {compact_mod.FORMAT_NAME!r})")
    return fmt


def load_checkpoint(path) -> train_mod.TrainState:
    """A training checkpoint, with a clear error for a compact model or any other file."""
    if file_format(path) != train_mod.CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is a compact model, not a training checkpoint (checkpoint.npz)")
    return train_mod.load_checkpoint(path)


def read_vocab(path) -> tuple[data_mod.Vocab, str]:
    """The vocabulary and level stored in a checkpoint or a compact model file."""
    path = Path(path)
    if file_format(path) == train_mod.CHECKPOINT_FORMAT:
        st = train_mod.load_checkpoint(path)
        vocab, level = st.vocab, st.level
    else:
        meta = compact_mod.load(path).meta
        vocab, level = meta.get("vocab"), meta.get("level", "word")
    if vocab is None:
        raise ValueError(f"{path}: stores no vocabulary")
    return data_mod.Vocab(vocab), level


__all__ = ["file_format", "load_checkpoint", "read_vocab"]
