"""Refs on S3 through s3fs: ``If-None-Match: *`` to create, ``If-Match: <etag>`` to swap
and delete (conditional writes: AWS since 2024, conditional deletes since 2025; moto)."""

from __future__ import annotations

import time

from fsspec.asyn import sync

from .base import MISSING
from .remote import VersionedRefStore


def _status(exc: BaseException) -> tuple[str, int | None]:
    # s3fs maps a 412 to FileExistsError only for If-None-Match, else to a generic
    # OSError; the boto error it keeps as __cause__ says what it was.
    response = getattr(exc.__cause__, "response", None)
    if not isinstance(response, dict):
        return "", None
    code = str(response.get("Error", {}).get("Code", ""))
    return code, response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _precondition_failed(exc: BaseException) -> bool:
    code, status = _status(exc)
    return code in ("PreconditionFailed", "412") or status == 412


def _conflicting(exc: BaseException) -> bool:
    # AWS answers 409 ConditionalRequestConflict when conditional writes to one key
    # overlap, and asks for a retry: it decided nothing, so it is not a lost race.
    code, status = _status(exc)
    return code == "ConditionalRequestConflict" or status == 409


_CONFLICT_RETRIES = 8


class S3RefStore(VersionedRefStore):
    def _read(self, path):
        bucket, key, _ = self.fs.split_path(path)
        return sync(self.fs.loop, self._get_with_etag, bucket, key)

    async def _get_with_etag(self, bucket, key):
        try:
            response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return MISSING
        body = response["Body"]
        try:
            data = await body.read()
        finally:
            body.close()
        return data, response["ETag"]

    def _conditional(self, path, request, *, gone_means_lost: bool = True) -> bool:
        for attempt in range(_CONFLICT_RETRIES):
            try:
                request()
            except FileExistsError:
                return False  # If-None-Match: someone created it first
            except FileNotFoundError:
                if not gone_means_lost:
                    raise  # a create that finds no bucket is an error, not a race
                return False  # deleted since we read it
            except OSError as exc:
                if _precondition_failed(exc):
                    return False
                if not _conflicting(exc) or attempt == _CONFLICT_RETRIES - 1:
                    raise
                time.sleep(0.01 * 2**attempt)
            else:
                return True
            finally:
                self.fs.invalidate_cache(path)
        raise AssertionError("unreachable")

    def _create(self, path, data):
        return self._conditional(path, lambda: self.fs.pipe_file(path, data, mode="create"), gone_means_lost=False)

    def _replace(self, path, data, etag):
        return self._conditional(path, lambda: self.fs.pipe_file(path, data, IfMatch=etag))

    def _delete(self, path, etag):
        bucket, key, _ = self.fs.split_path(path)
        return self._conditional(
            path, lambda: self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
        )
