"""The fsspec boundary: URL -> filesystem, and the one place filesystem errors become objstore's.

Everything above this package sees ``StorageError`` (naming the path) instead of fsspec's,
boto's, aiohttp's or Azure's own exceptions. ``FileNotFoundError`` and ``FileExistsError`` pass
through ``translate`` unchanged because only the caller knows what they mean (a missing object,
a lost create race, a missing repository).

    local.py    the os-level hot path: the one temp-file -> fsync -> link/rename write loop
    remote.py   create-only and replacing writes on object stores (s3, gcs, azure)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from objstore.errors import ObjstoreError, StorageError
from objstore.layout import TEMP_PREFIX

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

# Libraries whose exceptions are transport failures even when they are not OSErrors.
_FOREIGN_ERROR_MODULES = ("botocore", "aiobotocore", "aiohttp", "azure", "google", "requests", "urllib3")

_SCHEMES = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "az",
    "abfs": "az",
    "abfss": "az",
    "memory": "memory",
    "file": "file",
    "local": "file",
}


def open_url(url: str, storage_options: dict[str, Any] | None = None) -> tuple[AbstractFileSystem, str]:
    """A filesystem and the root path (no trailing slash) inside it for ``url``.

    Plain paths and file:// become absolute local paths. Credentials and endpoints come only
    from ``storage_options``; nothing here looks at the environment.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"not a repository url: {url!r}")
    options = dict(storage_options or {})
    scheme, sep, _ = url.partition("://")
    kind = _SCHEMES.get(scheme.lower()) if sep else "file"
    if kind is None:
        raise ValueError(f"unsupported url scheme {scheme!r} in {url!r}")
    if kind == "file":
        path = url[len(scheme) + 3 :] if sep else url
        root = os.path.abspath(os.path.expanduser(path))
        return LocalFS(**options), root.rstrip("/") or "/"
    import fsspec

    try:
        if kind == "gcs":
            # The plain class, not fsspec's registry entry: gcsfs>=2026 swaps in an "extended"
            # class that asks a gRPC control API about the bucket layout (unreachable on
            # emulators and private endpoints, where each call then stalls for a minute).
            from gcsfs.core import GCSFileSystem

            fs = GCSFileSystem(**options)
        else:
            fs = fsspec.filesystem(kind, **options)
    except TypeError as exc:  # an unknown or mistyped storage option
        raise ValueError(f"bad storage options for {url}: {exc}") from None
    if kind == "s3":
        _check_s3_options(fs, url)
    root = fs._strip_protocol(url).rstrip("/")
    if kind != "memory" and not root:
        raise ValueError(f"url names no bucket or container: {url!r}")
    return fs, root if kind != "memory" else (root or "/")


def _check_s3_options(fs: Any, url: str) -> None:
    """s3fs keeps options it does not know and hands them to aiobotocore's session at the first
    request, where a typo becomes a TypeError deep inside a read: refuse them here instead."""
    import inspect

    try:
        from aiobotocore.session import AioSession  # type: ignore[import-untyped]

        accepted = set(inspect.signature(AioSession.__init__).parameters) - {"self"}
    except (ImportError, TypeError, ValueError):  # a layout this check does not know: skip it
        return
    unknown = sorted(k for k in (getattr(fs, "kwargs", None) or {}) if k not in accepted)
    if unknown:
        raise ValueError(f"unknown storage option{'s' if len(unknown) > 1 else ''} for {url}: {', '.join(unknown)}")


def missing_container(fs: AbstractFileSystem, root: str) -> str | None:
    """The bucket (container) of a remote ``root`` if it does not exist, else None; also None
    for local and memory filesystems, and when the store will not say (no permission to ask)."""
    if is_local(fs) or is_memory(fs):
        return None
    bucket = root.strip("/").split("/", 1)[0]
    if not bucket:
        return None
    try:
        return None if fs.exists(bucket) else bucket
    except Exception:  # e.g. credentials that may read objects but not the bucket: no claim
        return None


class LocalFS:
    """fsspec's LocalFileSystem, made only when something asks for more than paths.

    A local repository's reads and writes go through os (fs/local.py, store/local.py), so most
    commands never touch the filesystem object; importing fsspec (asyncio, importlib.metadata
    and more come with it) would be a third of such a command's start-up. Anything not defined
    here is fsspec's own, on first use. ``local_paths`` tells the refs package (which imports
    nothing from objstore) that paths here are this machine's.
    """

    protocol = ("file", "local")
    local_paths = True

    def __init__(self, **options: Any):
        self._options = options
        self._real: Any = None

    @property
    def real(self) -> Any:
        """The fsspec LocalFileSystem itself (imported and made on the first call)."""
        if self._real is None:
            from fsspec.implementations.local import LocalFileSystem

            self._real = LocalFileSystem(**self._options)
        return self._real

    def _strip_protocol(self, path: str) -> str:
        if path.startswith("/") and "://" not in path:  # an absolute posix path: what open_url makes
            return path.rstrip("/") or "/"
        return self.real._strip_protocol(path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_options", "_real"):  # copy/pickle probes, a half-made object
            raise AttributeError(name)
        return getattr(self.real, name)

    def __repr__(self) -> str:
        return f"LocalFS({self._options!r})" if self._options else "LocalFS()"


def _is(fs: Any, module: str, cls: str) -> bool:
    # A filesystem of a library that was never imported cannot be an instance of its class:
    # asking must not import fsspec (or s3fs, gcsfs, adlfs).
    mod = sys.modules.get(module)
    return mod is not None and isinstance(fs, getattr(mod, cls))


def backend_of(fs: AbstractFileSystem) -> str:
    """The library a filesystem comes from: "local", "memory", "s3fs", "gcsfs", "adlfs", …"""
    if is_local(fs):
        return "local"
    if is_memory(fs):
        return "memory"
    return type(fs).__module__.split(".", 1)[0]


def is_local(fs: Any) -> bool:
    return isinstance(fs, LocalFS) or _is(fs, "fsspec.implementations.local", "LocalFileSystem")


def is_memory(fs: Any) -> bool:
    return _is(fs, "fsspec.implementations.memory", "MemoryFileSystem")


def has_atomic_create(fs: AbstractFileSystem) -> bool:
    """Whether ``pipe_file(..., mode="create")`` is a server-side create-only write here.

    Only s3fs (If-None-Match), gcsfs (ifGenerationMatch=0) and adlfs (overwrite=False) do
    that; fsspec's generic implementation is exists-then-write.
    """
    return backend_of(fs) in ("s3fs", "gcsfs", "adlfs")


def _is_transport_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.split(".", 1)[0] in _FOREIGN_ERROR_MODULES


def storage_error(path: str, exc: BaseException) -> StorageError:
    """The StorageError for a failure at ``path`` (for hot paths that cannot afford ``translate``)."""
    if isinstance(exc, OSError):
        if exc.errno is None:  # OSError(None, msg) would print as "[Errno None] msg"
            return StorageError(f"{path}: {exc.strerror or exc}")
        return StorageError(exc.errno, f"{path}: {exc.strerror or exc}")
    return StorageError(None, f"{path}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def translate(
    path: str, *, passthrough: tuple[type[BaseException], ...] = (FileNotFoundError, FileExistsError)
) -> Iterator[None]:
    """Turn filesystem failures under this block into ``StorageError`` naming ``path``.

    ``passthrough`` exceptions (by default not-found and already-exists) are re-raised as they
    are, for the caller to give them meaning.
    """
    try:
        yield
    except ObjstoreError:
        raise
    except passthrough:
        raise
    except OSError as exc:
        raise storage_error(path, exc) from exc
    except Exception as exc:
        if _is_transport_error(exc):
            raise storage_error(path, exc) from exc
        raise


# pid + a per-process random tag + a counter: unique across threads, forks (the pid changes)
# and machines sharing a network directory, without a random-number syscall per object.
_TEMP_TAG = secrets.token_hex(4)
_temp_counter = itertools.count()


def temp_name() -> str:
    """A sibling name for a file being written; it can never parse as an id or a ref name."""
    return f"{TEMP_PREFIX}{os.getpid():x}.{_TEMP_TAG}.{next(_temp_counter)}"


def temp_writer_alive(name: str) -> bool:
    """Whether the process that named this temp file (temp_name) is still running here. Only
    meaningful for a directory no other machine writes (pids are per machine)."""
    base = name.rsplit("/", 1)[-1]
    if not base.startswith(TEMP_PREFIX):
        return False
    head = base[len(TEMP_PREFIX) :].split(".", 1)[0]
    try:
        pid = int(head, 16)
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


__all__ = [
    "LocalFS", "open_url", "missing_container", "backend_of", "is_local", "is_memory", "has_atomic_create", "storage_error",
    "translate", "temp_name", "temp_writer_alive", "TEMP_PREFIX",
]
