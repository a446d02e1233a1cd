"""Refs held by one process: fsspec's memory filesystem, and the best-effort fallback."""

from __future__ import annotations

import threading

from .base import MISSING, PathRefStore, _Missing, as_expected, as_value, storage_errors

# MemoryFileSystem keeps one dict per process, shared by every instance, so one lock per
# process (not per store) is what makes two stores on the same root agree.
_PROCESS_LOCK = threading.RLock()


class LockedPathRefStore(PathRefStore):
    """Read-compare-write on the filesystem under a process-wide lock."""

    def __init__(self, fs, root: str, lock=_PROCESS_LOCK):
        super().__init__(fs, root)
        self._lock = lock

    def _read(self, path: str) -> bytes | _Missing:
        try:
            return self.fs.cat_file(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return MISSING

    def get(self, name: str) -> bytes | _Missing:
        path = self.path(name)
        with self._lock, storage_errors(f"reading ref {name!r}"):
            return self._read(path)

    def set_if_equals(self, name: str, old, new: bytes) -> bool:
        path = self.path(name)
        old, new = as_expected(old), as_value(new)
        with self._lock, storage_errors(f"writing ref {name!r}"):
            if self._read(path) != old:
                return False
            self.fs.pipe_file(path, new)
            return True

    def remove_if_equals(self, name: str, old: bytes) -> bool:
        path = self.path(name)
        old = as_value(old, "old value")
        with self._lock, storage_errors(f"removing ref {name!r}"):
            if self._read(path) != old:
                return False
            self.fs.rm_file(path)
            return True

    def list(self, prefix: str = "") -> list[str]:
        with self._lock, storage_errors("listing refs"):
            return self._names(self._find(self._list_base(prefix)), prefix)


class MemoryRefStore(LockedPathRefStore):
    """fsspec ``memory://``: atomic, because the data never leaves this process."""


class BestEffortRefStore(LockedPathRefStore):
    """NOT ATOMIC across processes or machines: read, compare, then write.

    Only for filesystems where no compare-and-swap is known, and only when the caller
    asked for it (``open_refs(..., allow_unsafe=True)``). Writers in this process are
    serialised; any other writer can interleave between the compare and the write, and
    then both "win".
    """

    atomic = False

    def _read(self, path: str):
        # A remote filesystem may cache listings and file info; a stale one here would
        # turn a lost race into a silent overwrite even within this process.
        invalidate = getattr(self.fs, "invalidate_cache", None)
        if invalidate is not None:
            invalidate(path)
        return super()._read(path)
