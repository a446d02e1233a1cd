"""Writes on object stores, where a PUT is atomic and conditions make it create-only.

    s3fs    If-None-Match: *               (pipe_file(..., mode="create"))
    gcsfs   ifGenerationMatch=0            (a media upload: see gcs_upload)
    adlfs   overwrite=False                (pipe_file(..., mode="create"))

fsspec's generic ``mode="create"`` is exists-then-write, so any other filesystem is refused:
two writers could overwrite each other's "immutable" files without anyone noticing.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fsspec import AbstractFileSystem

from objstore.errors import UnsafeFilesystem
from objstore.fs import backend_of, has_atomic_create

log = logging.getLogger("objstore.fs")


def refuse_unsafe(fs: AbstractFileSystem, path: str) -> UnsafeFilesystem:
    return UnsafeFilesystem(
        f"{path}: {type(fs).__module__}.{type(fs).__qualname__} has no atomic create-if-absent, "
        "so two writers could overwrite each other's files; objstore supports local "
        "directories, memory://, s3://, gs:// and az://"
    )


async def gcs_upload(fs: Any, path: str, data: bytes, *, create_only: bool) -> bool:
    """Upload to GCS as a plain media upload; with ``create_only``, False if the object exists.

    gcsfs's pipe_file sends small files as multipart/related with a bare LF before the closing
    boundary; an RFC 2046 parser takes a CR ending the data for part of that delimiter and
    drops it (the GCS emulator does, for 1 object in 256 here: the last byte is a checksum
    byte). A media upload carries the bytes as the whole body, so nothing can be trimmed.
    """
    bucket, key, _ = fs.split_path(path)
    # gcsfs raises FileExistsError for the 412 of a failed ifGenerationMatch=0.
    condition = {"ifGenerationMatch": "0"} if create_only else {}
    try:
        await fs._call(
            "POST",
            f"{fs._location}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
            uploadType="media",
            name=key,
            data=bytes(data),
            headers={"Content-Type": "application/octet-stream"},
            json_out=True,
            **condition,
        )
    except FileExistsError:
        if not create_only:
            raise
        return False
    finally:
        fs.invalidate_cache(fs._parent(path))
    return True


async def create(fs: Any, path: str, data: bytes) -> bool:
    """Create ``path`` unless it exists, atomically on the server; True if this call did."""
    backend = backend_of(fs)
    if backend == "gcsfs":
        return await gcs_upload(fs, path, data, create_only=True)
    if not has_atomic_create(fs):
        raise refuse_unsafe(fs, path)
    try:
        await fs._pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    return True


async def replace(fs: Any, path: str, data: bytes) -> None:
    """Write ``path`` whatever was there: one PUT, which object stores apply atomically."""
    if backend_of(fs) == "gcsfs":
        await gcs_upload(fs, path, data, create_only=False)
    else:
        await fs._pipe_file(path, data)


def abandon(f: Any) -> None:
    """Drop a half-written remote file without committing it under its real name."""
    # s3fs's discard aborts the multipart upload (its parts are billed until then). A GCS
    # resumable session is not: it expires unused after a week, and gcsfs's cancel retries
    # with backoff for ~30 s against a server that refuses it (the emulator answers 501).
    if type(f).__module__.split(".", 1)[0] != "gcsfs":
        try:
            f.discard()
        except Exception:  # best effort: the object must not appear, a stray upload id may
            log.debug("discarding a failed upload of %s failed", getattr(f, "path", "?"), exc_info=True)
    f.closed = True  # AbstractBufferedFile.close() would otherwise flush and commit the part
    try:
        f.close()  # releases client resources (adlfs) now that commit is off the table
    except Exception:
        log.debug("closing an abandoned upload failed", exc_info=True)


async def s3_unfinished_uploads(fs: Any, root: str) -> list[tuple[str, str, float]]:
    """(path, upload id, started) of every multipart upload under ``root`` never completed:
    what a writer killed mid-upload leaves, billed per part stored until it is aborted."""
    bucket, prefix, _ = fs.split_path(root)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    out: list[tuple[str, str, float]] = []
    while True:
        page = await fs._call_s3("list_multipart_uploads", **kwargs)
        for upload in page.get("Uploads") or ():
            out.append((f"{bucket}/{upload['Key']}", upload["UploadId"], upload["Initiated"].timestamp()))
        if not page.get("IsTruncated"):
            return out
        kwargs.update(KeyMarker=page.get("NextKeyMarker", ""), UploadIdMarker=page.get("NextUploadIdMarker", ""))


async def s3_abort_upload(fs: Any, path: str, upload_id: str) -> bool:
    bucket, key, _ = fs.split_path(path)
    try:
        await fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except FileNotFoundError:  # NoSuchUpload: completed or aborted meanwhile
        return False
    return True


__all__ = ["gcs_upload", "create", "replace", "abandon", "refuse_unsafe", "s3_unfinished_uploads", "s3_abort_upload"]
