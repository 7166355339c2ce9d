"""Run directories and output files that no command overwrites unasked.

- :func:`check_output_file`: an output file may not be one of the command's inputs, ever,
  and may not exist already unless the user said ``--overwrite``.
- :func:`check_new_run`: a fresh run may not write into a directory that holds a run
  (``RUN_FILES``) unless the user said ``--overwrite``.
- :class:`RunLock`: while a run writes its directory, the file ``.l0ref.lock`` there holds
  its process id; a second run is refused with that id, and a lock whose process is gone
  (a killed run) is taken over.
"""
from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

#: The files of a run directory (``pipeline.py``).
RUN_FILES = ("checkpoint.npz", "history.json", "summary.json", "compact.npz")
LOCK_NAME = ".l0ref.lock"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output_file(path, inputs=(), overwrite: bool = False, what: str = "--out") -> Path:
    """``path`` if it may be written: not one of ``inputs``, not a directory, and new
    unless ``overwrite``; else a ``ValueError`` that says what to do."""
    path = Path(path)
    for inp in inputs:
        if inp is not None and _same_file(path, Path(inp)):
            raise ValueError(f"{what} {str(path)!r} is an input of this command; writing it would destroy "
                             f"the input: choose another file")
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a directory; name a file")
    if path.exists() and not overwrite:
        raise ValueError(f"{what} {str(path)!r} exists; choose another name, or pass --overwrite to replace it")
    return path


def check_new_run(out, overwrite: bool = False) -> Path:
    """``out`` if a fresh run may write there: a directory without a run, or a new path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a directory; name a run directory")
    present = [f for f in RUN_FILES if (out / f).exists()]
    if present and not overwrite:
        raise ValueError(f"--out {str(out)!r} holds a run already ({', '.join(present)}); continue it with "
                         f"--resume {out / 'checkpoint.npz'}, choose another --out, or pass --overwrite")
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # it exists, but belongs to someone else
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory, for a ``with`` block."""

    def __init__(self, directory):
        self.path = Path(directory) / LOCK_NAME
        self.held = False

    def holder(self) -> tuple[int, str] | None:
        """``(pid, host)`` written in the lock file, or None if it is unreadable."""
        try:
            pid, host = self.path.read_text().split()[:2]
            return int(pid), host
        except (OSError, ValueError):
            return None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None and (holder[1] != socket.gethostname() or _alive(holder[0])):
                    raise ValueError(f"{str(self.path.parent)!r} is being written by another l0ref run "
                                     f"(process {holder[0]} on {holder[1]}); wait for it to finish or choose "
                                     f"another --out") from None
                try:                    # a stale lock: its process is gone (killed); take it over
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()} {socket.gethostname()}\n")
            self.held = True
            return self
        raise OSError(errno.EEXIST, "could not take the run directory's lock", str(self.path))

    def release(self) -> None:
        if self.held:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


__all__ = ["RUN_FILES", "LOCK_NAME", "check_output_file", "check_new_run", "RunLock"]
