"""Named pointers with per-backend compare-and-swap (dulwich-style refs on fsspec).

    store = open_refs(fs, f"{repo_root}/refs")
    store.add_if_new("handles/main", b"...")            # False if it exists
    store.set_if_equals("handles/main", old, new)       # False if someone else won
    store.remove_if_equals("handles/main", new)

A separate top-level package: it imports nothing from objstore.
"""

from __future__ import annotations

import sys

from .backoff import attempts
from .base import MISSING, RefStore
from .errors import InvalidRefName, RefsError, RefStorageError, UnsafeRefStore
from .names import check_ref_name

__all__ = [
    "MISSING",
    "InvalidRefName",
    "RefStorageError",
    "RefStore",
    "RefsError",
    "UnsafeRefStore",
    "attempts",
    "check_ref_name",
    "open_refs",
]


def _is(fs, module: str, cls: str) -> bool:
    # A filesystem of a library that was never imported cannot be an instance of its
    # class, so there is no need to import (optional, slow) s3fs/gcsfs/adlfs to ask.
    mod = sys.modules.get(module)
    return mod is not None and isinstance(fs, getattr(mod, cls))


def open_refs(fs, root: str, *, allow_unsafe: bool = False) -> RefStore:
    """The ref store for `fs`, with refs at ``f"{root}/<name>"``.

    Chooses by filesystem type. For any filesystem without a known atomic
    compare-and-swap this raises UnsafeRefStore, unless `allow_unsafe` asks for the
    BestEffortRefStore (atomic only among threads of this process).
    """
    # fsspec's LocalFileSystem, or a stand-in for it saying its paths are this machine's (objstore's
    # makes fsspec's only when needed, to keep it out of a local command's start-up).
    if getattr(fs, "local_paths", False) is True or _is(fs, "fsspec.implementations.local", "LocalFileSystem"):
        from .local import LocalRefStore

        return LocalRefStore(fs._strip_protocol(root))
    if _is(fs, "fsspec.implementations.memory", "MemoryFileSystem"):
        from .memory import MemoryRefStore

        return MemoryRefStore(fs, root)
    if _is(fs, "s3fs.core", "S3FileSystem"):
        from .s3 import S3RefStore

        return S3RefStore(fs, root)
    if _is(fs, "gcsfs.core", "GCSFileSystem"):
        from .gcs import GCSRefStore

        return GCSRefStore(fs, root)
    if _is(fs, "adlfs.spec", "AzureBlobFileSystem"):
        from .azure import AzureRefStore

        return AzureRefStore(fs, root)
    if allow_unsafe:
        from .memory import BestEffortRefStore

        return BestEffortRefStore(fs, root)
    kind = f"{type(fs).__module__}.{type(fs).__qualname__}"
    raise UnsafeRefStore(
        f"no atomic compare-and-swap is known for {kind}; refs on it could silently lose "
        "updates when two writers race. Supported: local, memory, s3, gcs, azure. Pass "
        "allow_unsafe=True only if a single writer uses this location at a time."
    )
