"""Storage: bytes at keys on any fsspec filesystem (BlobStore), and objects over them.

    base.py     BlobStore: the small abstract core; bulk and batched calls derived once
    local.py    LocalBlobStore: a local directory through os (the hot path)
    fsspec.py   FsspecBlobStore: memory:// and other synchronous fsspec filesystems
    asyn.py     AsyncBlobStore: s3fs, gcsfs, adlfs, with bounded, input-ordered concurrency
    objects.py  ObjectStore: verified objects, loose and in packs, over a BlobStore
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from objstore import codec
from objstore.fs import backend_of, is_local
from objstore.missing import MISSING
from objstore.store.base import BlobStore, Producer
from objstore.store.objects import ObjectStore

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

# Object stores whose async clients objstore drives concurrently (and knows how to create on).
ASYNC_BACKENDS = ("s3fs", "gcsfs", "adlfs")


def open_blobs(
    fs: AbstractFileSystem, root: str, *, durable: bool = False, max_concurrency: int = 32
) -> BlobStore:
    """The BlobStore for ``fs`` rooted at ``root``."""
    if is_local(fs):
        from objstore.store.local import LocalBlobStore

        return LocalBlobStore(fs, root, durable=durable, max_concurrency=max_concurrency)
    if backend_of(fs) in ASYNC_BACKENDS:
        from objstore.store.asyn import AsyncBlobStore

        return AsyncBlobStore(fs, root, durable=durable, max_concurrency=max_concurrency)
    from objstore.store.fsspec import FsspecBlobStore

    return FsspecBlobStore(fs, root, durable=durable, max_concurrency=max_concurrency)


def open_store(
    fs: AbstractFileSystem,
    root: str,
    *,
    durable: bool = False,
    level: int = codec.DEFAULT_LEVEL,
    max_concurrency: int = 32,
) -> ObjectStore:
    """An ObjectStore on ``fs`` at ``root`` (objects under ``root/objects``)."""
    return ObjectStore(open_blobs(fs, root, durable=durable, max_concurrency=max_concurrency), level=level)


__all__ = ["MISSING", "BlobStore", "ObjectStore", "Producer", "open_blobs", "open_store"]
