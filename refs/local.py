"""Refs as files in a local directory, changed under git-style lock files.

Protocol (git's ``refs/heads/main.lock``): create ``<name>.lock`` with O_EXCL -- only one
writer can -- then re-read the ref under the lock, compare, write the new value into the
lock file, fsync it and rename it over the ref. The rename both installs the value and
releases the lock, atomically, so a reader sees the old value or the new one and never a
partial file. Removal unlinks the ref under the lock, then the lock.

A writer that finds the lock taken waits (with backoff, up to `lock_timeout`) rather than
reporting a lost race: the holder may yet fail its own comparison, and a compare-and-swap
that fails without a competing success would break "exactly one winner".

Stale locks. A writer killed while holding a lock leaves ``<name>.lock`` behind, which
would block the ref forever. Each holder therefore also holds ``flock`` on its lock file;
the kernel drops it when the process dies, however it dies. A lock may be broken only if

* its file is older than `stale_after` seconds (the owner takes the flock immediately
  after creating the file, so a younger lock may be one whose owner is still between
  those two steps), and
* a non-blocking flock on it succeeds, i.e. no living process holds it.

The breaker keeps that flock while it checks that the path still names the same inode
and unlinks it; since only a flock holder ever removes a lock path, two breakers cannot
both succeed, and a fresh lock created by someone else is never removed. Limits: an
owner stopped (SIGSTOP, debugger) for longer than `stale_after` between creating the
file and taking the flock would lose its lock; on systems without fcntl, stale locks are
never broken (the timeout error names the file to delete by hand). This store is for
local disks only: flock on network filesystems is not to be relied upon.
"""

from __future__ import annotations

import contextlib
import os
import time

from .base import MISSING, PathRefStore, _Missing, as_expected, as_value, storage_errors
from .errors import RefStorageError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"


class LocalRefStore(PathRefStore):
    def __init__(
        self,
        root: str,
        *,
        lock_timeout: float = 30.0,
        stale_after: float = 10.0,
        durable: bool = True,
    ):
        super().__init__(None, os.path.abspath(os.fspath(root)))
        self.lock_timeout = lock_timeout
        self.stale_after = stale_after
        self.durable = durable

    def _file(self, name: str) -> str:
        return os.path.join(self.root, *self.path(name)[len(self.root) + 1 :].split("/"))

    @staticmethod
    def _read(path: str) -> bytes | _Missing:
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            # "a" is a directory when refs "a/…" exist; "a/b" cannot exist under a file "a".
            return MISSING

    def get(self, name: str) -> bytes | _Missing:
        path = self._file(name)
        with storage_errors(f"reading ref {name!r}"):
            return self._read(path)

    def set_if_equals(self, name: str, old, new: bytes) -> bool:
        path = self._file(name)
        old, new = as_expected(old), as_value(new)
        with storage_errors(f"writing ref {name!r}"), self._locked(name, path) as lock:
            if self._read(path) != old:
                return False
            os.ftruncate(lock.fd, 0)
            _write_all(lock.fd, new)
            if self.durable:
                os.fsync(lock.fd)
            os.rename(lock.path, path)
            lock.committed = True
            self._sync_dir(path)
            return True

    def remove_if_equals(self, name: str, old: bytes) -> bool:
        path = self._file(name)
        old = as_value(old, "old value")
        with storage_errors(f"removing ref {name!r}"), self._locked(name, path):
            if self._read(path) != old:
                return False
            os.unlink(path)
            self._sync_dir(path)
            return True

    def list(self, prefix: str = "") -> list[str]:
        base = self._list_base(prefix)
        paths: list[str] = []
        with storage_errors("listing refs"):
            for dirpath, _dirs, files in os.walk(base):
                rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
                head = "" if rel == "." else rel + "/"
                paths.extend(f"{self.root}/{head}{f}" for f in files)
        return self._names(paths, prefix)

    # ------------------------------------------------------------ locking

    @contextlib.contextmanager
    def _locked(self, name: str, path: str):
        lock = _Lock(path + LOCK_SUFFIX)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.0005
        while True:
            try:
                lock.fd = os.open(lock.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                break
            except (FileNotFoundError, NotADirectoryError):
                self._make_parents(name, path)
                continue
            except FileExistsError:
                if self._break_if_stale(lock.path):
                    continue
            if time.monotonic() > deadline:
                raise RefStorageError(
                    f"ref {name!r} stayed locked for {self.lock_timeout:.0f} s by {lock.path}; "
                    "if no process is using it, delete that file"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            if fcntl is not None:
                fcntl.flock(lock.fd, fcntl.LOCK_EX)  # only a would-be breaker can hold it, briefly
            yield lock
        finally:
            if not lock.committed:
                # Unlink while still holding the flock, so nobody takes it for stale.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock.path)
            os.close(lock.fd)

    def _make_parents(self, name: str, path: str) -> None:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            # git refuses the same: "a/b" cannot exist while a ref "a" does.
            raise RefStorageError(f"ref {name!r} conflicts with an existing ref that is a prefix of it") from exc

    def _break_if_stale(self, lock_path: str) -> bool:
        """Remove `lock_path` if its owner is gone; True means "try to lock again now"."""
        if fcntl is None:
            return False
        try:
            fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return True  # released meanwhile
        try:
            seen = os.fstat(fd)
            if time.time() - seen.st_mtime < self.stale_after:
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a living process holds it
            try:
                now = os.stat(lock_path)
            except FileNotFoundError:
                return True
            if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
                return True  # already replaced by a new lock: not ours to judge
            os.unlink(lock_path)
            return True
        finally:
            os.close(fd)

    def _sync_dir(self, path: str) -> None:
        if not self.durable:
            return
        fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Lock:
    __slots__ = ("path", "fd", "committed")

    def __init__(self, path: str):
        self.path = path
        self.fd = -1
        self.committed = False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
