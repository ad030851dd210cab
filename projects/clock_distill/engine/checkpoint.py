"""Checkpoints written whole or not at all.

detectron2 writes ``model_XXXXXXX.pth`` and then ``last_checkpoint`` in place: a run killed
during the write leaves a truncated file, and ``--resume`` then fails on it, or
``last_checkpoint`` names a file that was never finished. :class:`AtomicCheckpointer` is
detectron2's ``DetectionCheckpointer`` whose local writes go to a temporary file in the same
folder, flushed to disk and renamed over the target only when complete (``os.replace`` is
atomic on POSIX and Windows), so a kill at any point leaves the previous checkpoint and the
previous ``last_checkpoint`` intact.
"""

from __future__ import annotations

import os

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicCheckpointer", "atomic_open"]


class _AtomicFile:
    """``with`` block writing ``path`` through ``path.tmp.PID``; renamed on success, removed
    on an exception."""

    def __init__(self, path: str, mode: str):
        self.path, self.tmp = path, f"{path}.tmp.{os.getpid()}"
        self.file = open(self.tmp, mode)

    def __enter__(self):
        return self.file

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        else:
            self.file.close()
            os.unlink(self.tmp)
        return False


def atomic_open(path: str, mode: str = "wb") -> _AtomicFile:
    """``with atomic_open(path, "wb") as f: ...``: ``path`` appears complete or not at all."""
    if not any(c in mode for c in "wax"):
        raise ValueError(f"atomic_open is for writing; got mode {mode!r}")
    return _AtomicFile(path, mode)


class _AtomicWrites:
    """A path manager that opens local files for writing through :func:`atomic_open` and
    delegates everything else (reads, remote paths, exists, ls, ...) to ``base``."""

    def __init__(self, base):
        self._base = base

    def __getattr__(self, name):
        return getattr(self._base, name)

    def open(self, path: str, mode: str = "r", **kwargs):
        if "://" in str(path) or not any(c in mode for c in "wax"):
            return self._base.open(path, mode, **kwargs)
        return atomic_open(str(path), mode)


class AtomicCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer`` (same arguments, loading and resume) whose
    checkpoint files and ``last_checkpoint`` tag are written atomically."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path_manager = _AtomicWrites(self.path_manager)
