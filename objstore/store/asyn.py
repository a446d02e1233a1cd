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
from objstore.layout import is_temp
from objstore.missing import MISSING, Missing
from objstore.store.base import BlobStore, Producer, UnfinishedUpload


class AsyncBlobStore(BlobStore):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.backend = backend_of(self.fs)
        # s3fs otherwise sends a HEAD before every GET to decide on a ranged, concurrent read.
        self._cat_kwargs: dict[str, Any] = {"max_concurrency": 1} if self.backend == "s3fs" else {}
        self._azure_start_from = True  # until the service or SDK refuses it

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

    # -- listing from a marker -----------------------------------------------------------------

    lists_after_natively = True

    def list_after(self, prefix: str, start_after: str) -> list[str]:
        top = self.path(prefix.strip("/"))
        with translate(top, passthrough=()):
            names = self._run(self._list_after, top, start_after)
        # Filtered here too: an emulator (or a service) that ignores the start parameter still
        # gives the right answer, only a longer listing.
        return sorted(n for n in set(names) if n > start_after and "/" not in n and not is_temp(n))

    async def _list_after(self, top: str, start_after: str) -> list[str]:
        if self.backend == "s3fs":
            return await self._list_after_s3(top, start_after)
        if self.backend == "gcsfs":
            return await self._list_after_gcs(top, start_after)
        if self.backend == "adlfs":
            return await self._list_after_azure(top, start_after)
        return [n for n in await self._list_all(top) if n > start_after]

    async def _list_all(self, top: str) -> list[str]:
        try:
            paths = await self.fs._find(top)
        except FileNotFoundError:
            return []
        cut = len(top) + 1
        return [self.fs._strip_protocol(p)[cut:] for p in paths]

    async def _list_after_s3(self, top: str, start_after: str) -> list[str]:
        # ListObjectsV2 with StartAfter: the listing begins after the marker (one request per
        # 1000 names of the tail, however long the journal is).
        bucket, key, _ = self.fs.split_path(top)
        head = f"{key}/"
        names: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": head, "StartAfter": head + start_after, "Delimiter": "/"}
        while True:
            page = await self.fs._call_s3("list_objects_v2", **kwargs)
            names.extend(item["Key"][len(head) :] for item in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return names
            kwargs["ContinuationToken"] = token

    async def _list_after_gcs(self, top: str, start_after: str) -> list[str]:
        # objects.list with startOffset (inclusive: the marker itself is filtered out above).
        bucket, key, _ = self.fs.split_path(top)
        head = f"{key}/"
        names: list[str] = []
        params: dict[str, Any] = {"prefix": head, "delimiter": "/", "startOffset": head + start_after, "maxResults": 1000}
        while True:
            page = await self.fs._call("GET", "b/{}/o", bucket, json_out=True, **params)
            names.extend(item["name"][len(head) :] for item in page.get("items", []))
            token = page.get("nextPageToken")
            if not token:
                return names
            params["pageToken"] = token

    async def _list_after_azure(self, top: str, start_after: str) -> list[str]:
        # List Blobs with startFrom (inclusive; azure-storage-blob's ``start_from``). A service
        # or SDK without it answers the whole prefix, which the caller filters.
        from azure.core.exceptions import HttpResponseError

        container, key, _ = self.fs.split_path(top)
        head = f"{key}/"
        names: list[str] = []
        async with self.fs.service_client.get_container_client(container) as client:
            if self._azure_start_from:
                try:
                    async for blob in client.list_blobs(name_starts_with=head, start_from=head + start_after):
                        names.append(blob.name[len(head) :])
                    return names
                except TypeError:  # an SDK older than start_from
                    self._azure_start_from = False
                except HttpResponseError as exc:
                    if exc.status_code not in (400, 501):
                        raise
                    # A service (API version, account kind) that refuses startFrom: list it all.
                    self._azure_start_from = False
                    names.clear()
            async for blob in client.list_blobs(name_starts_with=head):
                names.append(blob.name[len(head) :])
        return names

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

    def unfinished_uploads(self) -> list[UnfinishedUpload]:
        if self.backend != "s3fs":  # GCS sessions and Azure block lists expire by themselves
            return []
        with translate(self.root, passthrough=()):
            found = self._run(remote.s3_unfinished_uploads, self.fs, self.root)
        return sorted((UnfinishedUpload(self.key_of(p), u, t) for p, u, t in found), key=lambda up: up.started)

    def abort_upload(self, upload: UnfinishedUpload) -> bool:
        if self.backend != "s3fs":
            return False
        path = self.path(upload.key)
        with translate(path, passthrough=()):
            return self._run(remote.s3_abort_upload, self.fs, path, upload.upload_id)

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
