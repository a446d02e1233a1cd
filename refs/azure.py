"""Refs on Azure Blob Storage through adlfs: ``overwrite=False`` (If-None-Match: *) to
create; ``etag`` + ``MatchConditions.IfNotModified`` (If-Match) to swap and delete."""

from __future__ import annotations

import errno

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from fsspec.asyn import sync

from .base import MISSING
from .errors import RefStorageError
from .remote import VersionedRefStore


def _lost(exc: HttpResponseError) -> bool:
    return isinstance(exc, (ResourceModifiedError, ResourceNotFoundError)) or exc.status_code in (404, 412)


def _failed(exc: HttpResponseError) -> RefStorageError:
    # The Azure SDK's errors are not OSErrors; give callers the one error root.
    error = RefStorageError(errno.EIO, f"Azure: {exc}")
    error.__cause__ = exc
    return error


class AzureRefStore(VersionedRefStore):
    def _read(self, path):
        container, blob, _ = self.fs.split_path(path)
        return sync(self.fs.loop, self._download, container, blob)

    async def _download(self, container, blob):
        # download_blob's properties come from the same GET as its body.
        async with self.fs.service_client.get_blob_client(container=container, blob=blob) as client:
            try:
                downloader = await client.download_blob()
                data = await downloader.readall()
            except ResourceNotFoundError:
                return MISSING
            except HttpResponseError as exc:
                raise _failed(exc) from exc
            return data, downloader.properties.etag

    def _create(self, path, data):
        try:
            self.fs.pipe_file(path, data, overwrite=False)
        except (FileExistsError, ResourceExistsError):
            return False
        except HttpResponseError as exc:
            raise _failed(exc) from exc
        return True

    def _replace(self, path, data, etag):
        try:
            self.fs.pipe_file(path, data, etag=etag, match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if _lost(exc):
                return False
            raise _failed(exc) from exc
        return True

    def _delete(self, path, etag):
        container, blob, _ = self.fs.split_path(path)
        try:
            return sync(self.fs.loop, self._delete_blob, container, blob, etag)
        finally:
            self.fs.invalidate_cache(self.fs._parent(path))

    async def _delete_blob(self, container, blob, etag):
        async with self.fs.service_client.get_blob_client(container=container, blob=blob) as client:
            try:
                await client.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
            except HttpResponseError as exc:
                if _lost(exc):
                    return False
                raise _failed(exc) from exc
            return True
