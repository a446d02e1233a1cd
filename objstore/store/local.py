"""A local directory, through os directly (the hot path of a first run)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import BinaryIO

from objstore.errors import CorruptObject
from objstore.fs import local as lfs
from objstore.fs import storage_error, translate
from objstore.layout import TEMP_PREFIX
from objstore.missing import MISSING, Missing
from objstore.store.base import BlobStore, Producer


class LocalBlobStore(BlobStore):
    exists_is_cheap = True

    def read(self, key: str) -> bytes | Missing:
        return lfs.read_file(self._prefix + key)

    def read_range(self, key: str, offset: int, length: int) -> bytes | Missing:
        return lfs.read_range(self._prefix + key, offset, length)

    def create(self, key: str, data: bytes) -> bool:
        return lfs.write_files([(self._prefix + key, data)], durable=self.durable, exclusive=True)[0]

    def create_many(self, items: Sequence[tuple[str, bytes]]) -> list[bool]:
        p = self._prefix
        return lfs.write_files([(p + k, d) for k, d in items], durable=self.durable, exclusive=True)

    def replace(self, key: str, data: bytes) -> None:
        lfs.write_files([(self._prefix + key, data)], durable=self.durable, exclusive=False)

    def replace_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        p = self._prefix
        lfs.write_files([(p + k, d) for k, d in items], durable=self.durable, exclusive=False)

    def create_from(self, key: str, produce: Producer) -> bool:
        path = self._prefix + key
        if self.exists(key):
            return False  # read nothing from a source that may be hundreds of MB
        return lfs.write_files([(path, produce)], durable=self.durable, exclusive=True)[0]

    def exists(self, key: str) -> bool:
        path = self._prefix + key
        try:
            return os.path.lexists(path)
        except OSError as exc:
            raise storage_error(path, exc) from exc

    def exists_many(self, keys: Iterable[str]) -> list[bool]:
        p, lexists = self._prefix, os.path.lexists
        with translate(self.root, passthrough=()):
            return [lexists(p + k) for k in keys]

    def delete(self, key: str) -> bool:
        path = self._prefix + key
        with translate(path, passthrough=()):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            if self.durable:
                lfs.fsync_dir(os.path.dirname(path))
            return True

    def list_keys(self, prefix: str) -> list[str]:
        top = self._prefix + prefix.strip("/")
        keys: list[str] = []
        with translate(top, passthrough=()):
            self._walk(top, prefix.strip("/"), keys)
        keys.sort()
        return keys

    def list_sized(self, prefix: str) -> list[tuple[str, int]]:
        top = self._prefix + prefix.strip("/")
        found: list = []
        with translate(top, passthrough=()):
            self._walk(top, prefix.strip("/"), found, sized=True)
        found.sort()
        return found

    def _walk(self, directory: str, key: str, out: list, *, sized: bool = False) -> None:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return  # absent, or removed while we listed
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            child = f"{key}/{entry.name}" if key else entry.name
            if entry.is_dir(follow_symlinks=False):
                self._walk(entry.path, child, out, sized=sized)
            elif not sized:
                out.append(child)
            else:
                try:
                    out.append((child, entry.stat(follow_symlinks=False).st_size))
                except FileNotFoundError:
                    pass  # removed while we listed

    def open_read(self, key: str) -> BinaryIO | Missing:
        path = self._prefix + key
        with translate(path, passthrough=()):
            try:
                return open(path, "rb")
            except FileNotFoundError:
                return MISSING
            except IsADirectoryError:
                raise CorruptObject(path, "a directory stands where a file should be") from None

    def list_details(self, prefix: str) -> list[tuple[str, int, float]]:
        top = self._prefix + prefix.strip("/")
        out: list[tuple[str, int, float]] = []
        with translate(top, passthrough=()):
            self._walk_details(top, prefix.strip("/"), out)
        out.sort()
        return out

    def _walk_details(self, directory: str, key: str, out: list[tuple[str, int, float]]) -> None:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            child = f"{key}/{entry.name}" if key else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    self._walk_details(entry.path, child, out)
                else:
                    st = entry.stat(follow_symlinks=False)
                    out.append((child, st.st_size, st.st_mtime))
            except FileNotFoundError:
                continue

    def list_temp(self, prefix: str) -> list[tuple[str, float]]:
        top = self._prefix + prefix.strip("/")
        found: list[tuple[str, float]] = []
        with translate(top, passthrough=()):
            for directory, _, names in os.walk(top):
                for name in names:
                    if name.startswith(TEMP_PREFIX):
                        path = os.path.join(directory, name)
                        try:
                            found.append((self.key_of(path), os.lstat(path).st_mtime))
                        except FileNotFoundError:
                            pass
        return sorted(found)

    def clean_temp(self, prefix: str, *, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        top = self._prefix + prefix.strip("/")
        with translate(top, passthrough=()):
            for directory, _, names in os.walk(top):
                for name in names:
                    if not name.startswith(TEMP_PREFIX):
                        continue
                    path = os.path.join(directory, name)
                    try:
                        if os.lstat(path).st_mtime <= cutoff:
                            os.unlink(path)
                            removed += 1
                    except FileNotFoundError:
                        pass
        return removed


__all__ = ["LocalBlobStore"]
