"""BlobStore: bytes at keys under one root. A handful of primitives per kind of filesystem;
everything bulk is derived here once (and overridden only where a filesystem can do better).

Keys are relative, "/"-separated (``objects/ab/cdef…``, ``journal/<segment>``; objstore.layout
builds every one). Semantics every implementation keeps:
- ``create`` never replaces: of two racing creates of one key exactly one returns True;
- a reader sees a whole file or none (local: temp file + link/rename; remote: one PUT);
- ``read`` answers MISSING, never raises, for a key that is not there;
- bulk calls keep input order (duplicates included) and run with bounded concurrency where the
  filesystem is asynchronous;
- temp files of unfinished writes are invisible to ``list``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from objstore.fs import translate
from objstore.layout import is_temp
from objstore.missing import Missing

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

# A function writing a file's content to a binary stream, for files too big to hold in memory.
Producer = Callable[[BinaryIO], None]


class UnfinishedUpload(NamedTuple):
    """A multipart upload a writer started and never completed or aborted (it died mid-write):
    invisible to readers, but its parts are stored, and billed, until someone aborts it."""

    key: str
    upload_id: str
    started: float  # POSIX timestamp


class BlobStore(abc.ABC):
    #: Whether ``exists`` is cheap enough (a local stat) to ask before encoding a write.
    exists_is_cheap = False

    def __init__(self, fs: AbstractFileSystem, root: str, *, durable: bool = False, max_concurrency: int = 32):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self.durable = durable
        self.max_concurrency = max_concurrency
        self._prefix = self.root if self.root.endswith("/") else self.root + "/"

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` (keys come from objstore.layout, already checked)."""
        return self._prefix + key

    def key_of(self, path: str) -> str:
        return path[len(self._prefix) :] if path.startswith(self._prefix) else path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"

    # -- primitives ---------------------------------------------------------------------------

    @abc.abstractmethod
    def read(self, key: str) -> bytes | Missing:
        """The file's bytes, or MISSING."""

    @abc.abstractmethod
    def read_range(self, key: str, offset: int, length: int) -> bytes | Missing:
        """``length`` bytes from ``offset`` (fewer past the end), or MISSING."""

    @abc.abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write ``key`` unless it exists; True if this call created it."""

    @abc.abstractmethod
    def replace(self, key: str, data: bytes) -> None:
        """Write ``key`` whatever was there (mutable files: eval heads, objstore.json)."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed."""

    def list_keys(self, prefix: str) -> list[str]:
        """Every key below the directory ``prefix`` (recursive), sorted; [] if there is none.
        Temp files of unfinished writes are left out. (fsspec's find; local stores use os.)"""
        top = self.path(prefix.strip("/"))
        with translate(top, passthrough=()):
            # s3fs/gcsfs would otherwise answer from a listing cached before another writer's.
            self.fs.invalidate_cache(top)
            try:
                paths = self.fs.find(top)
            except FileNotFoundError:
                return []
            finally:
                self.fs.invalidate_cache(top)
        keys = [self.key_of(self.fs._strip_protocol(p)) for p in paths]
        return sorted(k for k in keys if not is_temp(k))

    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO | Missing:
        """A binary stream of the file (the caller closes it), or MISSING."""

    @abc.abstractmethod
    def create_from(self, key: str, produce: Producer) -> bool:
        """``create`` for content written by ``produce`` to a stream, in bounded memory. If
        ``produce`` raises, nothing appears at ``key``."""

    # -- derived ------------------------------------------------------------------------------

    def read_many(self, keys: Iterable[str]) -> list[bytes | Missing]:
        return [self.read(k) for k in keys]

    def read_ranges(self, requests: Iterable[tuple[str, int, int]]) -> list[bytes | Missing]:
        """read_range for each (key, offset, length), in order."""
        return [self.read_range(k, o, n) for k, o, n in requests]

    def create_many(self, items: Sequence[tuple[str, bytes]]) -> list[bool]:
        return [self.create(k, d) for k, d in items]

    def replace_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """replace for each (key, data), in order: a later duplicate key wins."""
        for k, d in items:
            self.replace(k, d)

    def exists_many(self, keys: Iterable[str]) -> list[bool]:
        return [self.exists(k) for k in keys]

    def list_names(self, prefix: str) -> list[str]:
        """The names directly below ``prefix`` that are files (a flat directory's listing)."""
        cut = len(prefix.rstrip("/")) + 1
        return [k[cut:] for k in self.list_keys(prefix) if "/" not in k[cut:]]

    #: Whether ``list_after`` asks the storage for only the names after the marker (S3
    #: StartAfter, GCS startOffset, Azure startFrom), or lists the directory and filters (a local
    #: directory or memory, where a listing costs no request).
    lists_after_natively = False

    def list_after(self, prefix: str, start_after: str) -> list[str]:
        """The names directly below the flat directory ``prefix`` that sort after ``start_after``
        (strictly), sorted: a listing of only the tail of a directory whose names sort by time
        (journal/). Derived here by filtering list_names; object stores start the listing there."""
        return [n for n in self.list_names(prefix) if n > start_after]

    def list_sized(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size in bytes) of every key below ``prefix``, sorted: what list_keys lists,
        from the same one listing (object stores return sizes with it), for a copy that must
        know how much it will move before it reads anything."""
        return [(key, size) for key, size, _ in self.list_details(prefix)]

    def clean_temp(self, prefix: str, *, older_than: float) -> int:
        """Remove temp files of writers that died mid-write under ``prefix``; how many. Only
        local stores leave them (a remote write is one upload), so by default: none."""
        return 0

    def list_temp(self, prefix: str) -> list[tuple[str, float]]:
        """(key, modification time) of every temp file under ``prefix`` (none remotely)."""
        return []

    def delete_many(self, keys: Iterable[str]) -> list[bool]:
        return [self.delete(k) for k in keys]

    def unfinished_uploads(self) -> list[UnfinishedUpload]:
        """Multipart uploads under the root that were never completed, oldest first. Only S3
        keeps them until told otherwise (a GCS resumable session and an Azure block list
        expire by themselves within a week), so by default: none."""
        return []

    def abort_upload(self, upload: UnfinishedUpload) -> bool:
        """Drop an unfinished upload's parts; whether it was still there."""
        return False

    def list_details(self, prefix: str) -> list[tuple[str, int, float]]:
        """(key, size, modification time as a POSIX timestamp) of every key below ``prefix``,
        sorted; temp files skipped. One listing: object stores return both with the names."""
        top = self.path(prefix.strip("/"))
        from objstore.fs import translate

        with translate(top, passthrough=()):
            self.fs.invalidate_cache(top)
            try:
                found = self.fs.find(top, detail=True)
            except FileNotFoundError:
                return []
            finally:
                self.fs.invalidate_cache(top)
        out = []
        for path, info in found.items():
            key = self.key_of(self.fs._strip_protocol(path))
            if is_temp(key) or info.get("type", "file") != "file":
                continue
            out.append((key, int(info.get("size") or 0), modified_time(info)))
        out.sort()
        return out


def modified_time(info: dict) -> float:
    """An fsspec info dict's modification time as a POSIX timestamp (0.0 when it has none)."""
    import datetime as _dt

    for field in ("mtime", "LastModified", "last_modified", "updated", "created", "timeCreated"):
        value = info.get(field)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, _dt.datetime):
            return (value if value.tzinfo else value.replace(tzinfo=_dt.UTC)).timestamp()
        if isinstance(value, str):
            try:
                when = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return (when if when.tzinfo else when.replace(tzinfo=_dt.UTC)).timestamp()
    return 0.0


__all__ = ["BlobStore", "Producer", "UnfinishedUpload", "modified_time"]
