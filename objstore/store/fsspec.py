"""Synchronous fsspec filesystems: memory://, and any other sync filesystem fsspec offers.

Creates are atomic only where this module can make them so: in memory, under a process lock
(the only writers a process-global MemoryFileSystem can have are this process's threads).
Anywhere else create-if-absent would be exists-then-write, so it is refused (UnsafeFilesystem).
"""

from __future__ import annotations

import io
import threading
from typing import BinaryIO

from objstore.fs import is_memory, translate
from objstore.fs.remote import refuse_unsafe
from objstore.missing import MISSING, Missing
from objstore.store.base import BlobStore, Producer

_MEMORY_LOCK = threading.Lock()


class FsspecBlobStore(BlobStore):
    def _cat(self, path: str, **kwargs: int) -> bytes | Missing:
        with translate(path, passthrough=()):
            try:
                return self.fs.cat_file(path, **kwargs)
            except (FileNotFoundError, IsADirectoryError):
                return MISSING

    def read(self, key: str) -> bytes | Missing:
        return self._cat(self.path(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes | Missing:
        return self._cat(self.path(key), start=offset, end=offset + length)

    def _guard(self, path: str) -> threading.Lock:
        if not is_memory(self.fs):
            raise refuse_unsafe(self.fs, path)
        return _MEMORY_LOCK

    def create(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        with self._guard(path), translate(path, passthrough=()):
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, bytes(data))
            return True

    def replace(self, key: str, data: bytes) -> None:
        path = self.path(key)
        with translate(path, passthrough=()):
            self.fs.pipe_file(path, bytes(data))

    def create_from(self, key: str, produce: Producer) -> bool:
        if self.exists(key):
            return False
        buf = io.BytesIO()
        produce(buf)  # memory holds it all anyway
        return self.create(key, buf.getvalue())

    def exists(self, key: str) -> bool:
        path = self.path(key)
        with translate(path, passthrough=()):
            return bool(self.fs.isfile(path))

    def delete(self, key: str) -> bool:
        path = self.path(key)
        with translate(path, passthrough=()):
            if not self.fs.isfile(path):
                return False
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                return False
            return True

    def open_read(self, key: str) -> BinaryIO | Missing:
        if is_memory(self.fs):
            # MemoryFileSystem hands every reader the same file object (one position).
            data = self.read(key)
            return MISSING if isinstance(data, Missing) else io.BytesIO(data)
        path = self.path(key)
        with translate(path, passthrough=()):
            try:
                return self.fs.open(path, "rb")
            except (FileNotFoundError, IsADirectoryError):
                return MISSING


__all__ = ["FsspecBlobStore"]
