"""Object stores with asynchronous fsspec clients: s3fs, gcsfs, adlfs.

Every bulk call runs on the filesystem's event loop with at most ``max_concurrency`` requests in
flight, keeps input order, and lets every request finish before the first failure is raised, so
nothing is left running behind the caller's back. Where a client's generic call costs more
requests than the operation needs (a HEAD before each GET, a LIST after each missing HEAD), a
direct call replaces it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, BinaryIO

from fsspec.asyn import sync as run_on_loop

from objstore.fs import backend_of, has_atomic_create, remote, translate
from objstore.missing import MISSING, Missing
from objstore.store.base import BlobStore, Producer


class AsyncBlobStore(BlobStore):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.backend = backend_of(self.fs)
        # s3fs otherwise sends a HEAD before every GET to decide on a ranged, concurrent read.
        self._cat_kwargs: dict[str, Any] = {"max_concurrency": 1} if self.backend == "s3fs" else {}

    # -- running coroutines -------------------------------------------------------------------

    def _run(self, coro: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return run_on_loop(self.fs.loop, coro, *args)

    def _gather(self, fn: Callable[..., Awaitable[Any]], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``fn(*a)`` for each ``a``, at most max_concurrency at once, results in order."""
        if not args:
            return []

        async def run() -> list[Any]:
            gate = asyncio.Semaphore(self.max_concurrency)

            async def one(a: tuple[Any, ...]) -> Any:
                async with gate:
                    return await fn(*a)

            return await asyncio.gather(*(one(a) for a in args), return_exceptions=True)

        results = self._run(run)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results

    # -- one request each ---------------------------------------------------------------------

    async def _read(self, path: str, start: int | None = None, end: int | None = None) -> bytes | Missing:
        with translate(path, passthrough=()):
            try:
                if start is None:
                    return await self.fs._cat_file(path, **self._cat_kwargs)
                return await self.fs._cat_file(path, start=start, end=end)
            except (FileNotFoundError, IsADirectoryError):
                return MISSING

    async def _create(self, path: str, data: bytes) -> bool:
        with translate(path, passthrough=()):
            return await remote.create(self.fs, path, data)

    async def _replace(self, path: str, data: bytes) -> None:
        with translate(path, passthrough=()):
            await remote.replace(self.fs, path, data)

    async def _exists(self, path: str) -> bool:
        with translate(path, passthrough=()):
            try:
                if self.backend == "s3fs":
                    # One HEAD; s3fs's exists() adds a LIST for every missing key.
                    bucket, key, _ = self.fs.split_path(path)
                    await self.fs._call_s3("head_object", Bucket=bucket, Key=key)
                    return True
                if self.backend == "gcsfs":
                    # gcsfs's info() races an object GET against a LIST (directory probe).
                    await self.fs._get_object(path)
                    return True
                if self.backend == "adlfs":
                    # adlfs's exists() adds a LIST for every missing blob.
                    container, key, _ = self.fs.split_path(path)
                    async with self.fs.service_client.get_blob_client(container, key) as blob:
                        return bool(await blob.exists())
                info = await self.fs._info(path)
            except FileNotFoundError:
                return False
            return info.get("type") == "file"

    # -- primitives ---------------------------------------------------------------------------

    def read(self, key: str) -> bytes | Missing:
        return self._run(self._read, self.path(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes | Missing:
        return self._run(self._read, self.path(key), offset, offset + length)

    def create(self, key: str, data: bytes) -> bool:
        return self._run(self._create, self.path(key), data)

    def replace(self, key: str, data: bytes) -> None:
        self._run(self._replace, self.path(key), data)

    def exists(self, key: str) -> bool:
        return self._run(self._exists, self.path(key))

    def delete(self, key: str) -> bool:
        path = self.path(key)
        # Object stores report success for deleting a missing key, so ask first.
        if not self.exists(key):
            return False
        with translate(path, passthrough=()):
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                return False
        return True

    def open_read(self, key: str) -> BinaryIO | Missing:
        path = self.path(key)
        with translate(path, passthrough=()):
            try:
                return self.fs.open(path, "rb", cache_type="none")
            except (FileNotFoundError, IsADirectoryError):
                return MISSING

    def create_from(self, key: str, produce: Producer) -> bool:
        path = self.path(key)
        # One HEAD is cheap next to uploading hundreds of MB that would then be refused.
        if self.exists(key):
            return False
        with translate(path, passthrough=()):
            f = self.fs.open(path, "xb" if has_atomic_create(self.fs) else "wb")
            try:
                produce(f)
            except BaseException:
                remote.abandon(f)
                raise
            try:
                f.close()
            except FileExistsError:
                return False
            return True

    # -- bulk, concurrently -------------------------------------------------------------------

    def read_many(self, keys: Iterable[str]) -> list[bytes | Missing]:
        return self._gather(self._read, [(self.path(k),) for k in keys])

    def read_ranges(self, requests: Iterable[tuple[str, int, int]]) -> list[bytes | Missing]:
        return self._gather(self._read, [(self.path(k), o, o + n) for k, o, n in requests])

    def create_many(self, items: Sequence[tuple[str, bytes]]) -> list[bool]:
        # Concurrent creates of one key would race: the first occurrence is the one sent.
        first: dict[str, int] = {}
        for i, (k, _) in enumerate(items):
            first.setdefault(k, i)
        sent = list(first.values())
        results = [False] * len(items)
        for i, created in zip(sent, self._gather(self._create, [(self.path(items[i][0]), items[i][1]) for i in sent])):
            results[i] = created
        return results

    def replace_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        last = {k: d for k, d in items}  # concurrent PUTs of one key would race: last one wins
        self._gather(self._replace, [(self.path(k), d) for k, d in last.items()])

    def delete_many(self, keys: Iterable[str]) -> list[bool]:
        """Remove keys the caller listed (gc): one batched request per 1000 on S3."""
        paths = [self.path(k) for k in keys]
        if not paths:
            return []
        with translate(paths[0], passthrough=()):
            try:
                self.fs.rm(paths)
            except FileNotFoundError:
                return [self.delete(self.key_of(p)) for p in paths]
        return [True] * len(paths)

    def exists_many(self, keys: Iterable[str]) -> list[bool]:
        return self._gather(self._exists, [(self.path(k),) for k in keys])


__all__ = ["AsyncBlobStore"]
