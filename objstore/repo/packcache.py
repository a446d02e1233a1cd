"""A local read-through cache of whole packs, beside the index (``<index dir>/packs/``).

Why: a cached run on a bucket reads one value per job, and each was one ranged GET (most of
such a run's time and all of its requests). Packs are immutable and content-named (the name is
a hash of the file), so a copy is valid forever and checkable: a pack is fetched whole on its
first need, checked against its name, and kept here; later reads of any of its entries cost no
request. A writer keeps the packs it writes (they are in memory anyway), so a second run on the
same machine reads nothing at all.

Every read is still verified: a pack's bytes are checked against its name when it is fetched
and when this process first loads it from disk (a damaged copy is deleted and fetched again),
and every entry is decoded and checked as a ranged read's would be (``pack.read_entry``). The
directory is bounded (``max_bytes``; least recently used packs go first), and a pack bigger
than the bound is read by ranges as before. Several processes may share the directory: files
appear by rename, and one deleted under a reader is only a refetch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from objstore import layout
from objstore.fs import is_local, is_memory
from objstore.layout import is_pack_name
from objstore.missing import MISSING, Missing

log = logging.getLogger("objstore.repo")

DEFAULT_MAX_BYTES = 512 << 20
# Packs kept in this process's memory once loaded (their bytes, verified), so a run of single
# reads does not read and hash a file each time.
MEMORY_BYTES = 64 << 20

# A temp file this old is a killed process's, not a copy being written: removed at eviction.
STALE_TEMP_SECONDS = 3600.0

Fetch = Callable[[str], bytes | Missing]


def content_ok(name: str, data: bytes) -> bool:
    """Whether ``data`` is the pack called ``name`` (``sha256(file)[:40] + ".pack"``)."""
    return hashlib.sha256(data).hexdigest()[:40] == name[: -len(".pack")]


class PackCache:
    def __init__(self, directory: Path, fetch: Fetch, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 memory_bytes: int = MEMORY_BYTES):
        self.directory = Path(directory)
        self.fetch = fetch
        self.max_bytes = max_bytes
        self.memory_bytes = min(memory_bytes, max_bytes)
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._in_memory = 0
        self._too_big: set[str] = set()
        self._lock = threading.Lock()
        self._warned = False
        self.fetched = 0  # whole packs fetched from the repository by this process (tests, benches)

    def get(self, name: str) -> bytes | Missing | None:
        """The verified bytes of pack ``name``; MISSING if the repository does not hold it; None
        when this cache does not serve it (too big to keep, or damaged in the repository: the
        caller's ranged read then reports it as such)."""
        if not is_pack_name(name):
            return None
        with self._lock:
            hit = self._memory.get(name)
            if hit is not None:
                self._memory.move_to_end(name)
                return hit
        data = self._load(name)
        if data is not None:
            self._remember(name, data)
            return data
        if name in self._too_big:
            return None
        got = self.fetch(name)
        if isinstance(got, Missing):
            return MISSING
        self.fetched += 1
        if not content_ok(name, got):
            log.warning("objstore: pack %s does not match its name: not cached", name)
            return None
        if not self.add(name, got):
            # Too big to keep, or the disk refused it: this process keeps it in memory if it
            # fits there, else reads it by ranges from now on; this batch uses what it has.
            if len(got) <= self.memory_bytes:
                self._remember(name, got)
            else:
                self._too_big.add(name)
        return got

    def add(self, name: str, data: bytes) -> bool:
        """Keep ``data`` (the caller vouches that it is pack ``name``: fetched and checked, or
        just written) when it fits the bound, evicting the least recently used; whether kept."""
        if len(data) > self.max_bytes or not is_pack_name(name):
            return False
        import tempfile  # here, not at the top: it imports shutil and random, for remote repositories only

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.directory / name)
            except BaseException:
                os.unlink(tmp)
                raise
            self._evict(keep=name)
        except OSError as exc:  # a cache: a full or read-only disk only costs requests
            if not self._warned:  # said once: a full disk must not fill the log at every flush
                self._warned = True
                log.warning("objstore: cannot keep pack %s in %s (packs are read by range): %s",
                            name, self.directory, exc)  # fmt: skip
            return False
        self._remember(name, data)
        return True

    def _load(self, name: str) -> bytes | None:
        path = self.directory / name
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if not content_ok(name, data):
            log.warning("objstore: cached pack %s is damaged: fetching it again", path)
            self.discard(name)
            return None
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        return data

    def discard(self, name: str) -> None:
        with self._lock:
            data = self._memory.pop(name, None)
            if data is not None:
                self._in_memory -= len(data)
        try:
            (self.directory / name).unlink()
        except OSError:
            pass

    def _remember(self, name: str, data: bytes) -> None:
        if len(data) > self.memory_bytes:
            return
        with self._lock:
            if name in self._memory:
                self._memory.move_to_end(name)
                return
            self._memory[name] = data
            self._in_memory += len(data)
            while self._in_memory > self.memory_bytes:
                _, old = self._memory.popitem(last=False)
                self._in_memory -= len(old)

    def _evict(self, *, keep: str) -> None:
        files = []
        now = time.time()
        for entry in os.scandir(self.directory):
            try:
                st = entry.stat()
            except OSError:
                continue
            if not is_pack_name(entry.name):
                # Another process's copy being written, or one a killed process left behind.
                if entry.name.startswith(".tmp-") and now - st.st_mtime > STALE_TEMP_SECONDS:
                    try:
                        os.unlink(entry.path)
                    except OSError:
                        pass
                continue
            files.append((st.st_mtime, entry.name, st.st_size))
        total = sum(size for _, _, size in files)
        for _, name, size in sorted(files):
            if total <= self.max_bytes:
                break
            if name == keep:
                continue
            try:
                os.unlink(self.directory / name)
            except OSError:
                continue
            total -= size
            with self._lock:
                data = self._memory.pop(name, None)
                if data is not None:
                    self._in_memory -= len(data)

    def size(self) -> int:
        """Bytes on disk now."""
        try:
            return sum(e.stat().st_size for e in os.scandir(self.directory))
        except OSError:
            return 0


def for_repository(fs: Any, index_dir: Path, blobs: Any, store: Any, max_bytes: int | None) -> PackCache | None:
    """A remote repository's local cache of whole packs, beside its index (a local or
    in-memory repository reads its packs by range for next to nothing: None)."""
    if max_bytes == 0 or is_local(fs) or is_memory(fs):
        return None
    cache = PackCache(index_dir / "packs", lambda name: blobs.read(layout.pack_key(name)),
                      max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes)  # fmt: skip
    store.pack_written = cache.add  # a writer keeps what it writes: its next run reads nothing
    return cache

__all__ = ["DEFAULT_MAX_BYTES", "PackCache", "content_ok", "for_repository"]
