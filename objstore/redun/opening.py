"""How ObjstoreBackend comes to have a repository: its settings, opening, errors, exit flush.

Settings are resolved once (explicit arguments, then redun.ini's [backend], then the
environment, as objstore.redun.config documents); opening turns every failure into one
ObjstoreRedunError that names the repository; ``Recording`` is the guard around every write
(a read-only repository is said once and then serves cache hits only); live backends are
flushed at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

from objstore.backend.values import DEFAULT_MAX_VALUE_SIZE
from objstore.errors import ObjstoreError, ReadOnlyRepository, RepositoryNotFound, StorageError
from objstore.redun import config as cfg
from objstore.redun.errors import ObjstoreRedunError
from objstore.repo import FlushPolicy, Repository

log = logging.getLogger("objstore.redun")


def cause(exc: BaseException, url: str) -> str:
    """An error's message without a leading repository URL (the caller's message names it)."""
    text = " ".join(str(exc).split())  # one line: a server's multi-line message (Azure's XML) too
    for prefix in (f"{url}: ", f"{url.rstrip('/')}: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _given(value: Any, config: Any, key: str, default: Any) -> Any:
    return value if value is not None else config.get(key, default)


@dataclass(frozen=True)
class BackendSettings:
    url: str
    storage_options: dict | None
    value_store_options: dict | None  # the value store's fsspec options (its URL is a repository setting)
    index_dir: str | None
    durable: bool
    max_value_size: int
    flush_interval: float
    flush_every: int
    pack_cache_bytes: int | None  # the local cache of whole packs of a remote repository; 0: none
    # Only `objstore init`, or this explicit option, creates a repository: a mistyped URL or a
    # deleted objstore.json must be an error, not an empty repository that re-runs all.
    create: bool

    @classmethod
    def resolve(
        cls,
        url: str | None,
        config: Any,
        *,
        repo: Repository | None = None,
        storage_options: dict | None = None,
        index_dir: str | None = None,
        durable: bool | None = None,
        max_value_size: int | None = None,
        flush_interval: float | None = None,
        flush_every: int | None = None,
        create: bool | None = None,
    ) -> BackendSettings:
        config = config if config is not None else {}
        cache_bytes = config.get("objstore_pack_cache_bytes")
        return cls(
            url=repo.url if repo is not None else cfg.resolve_url(url, config),
            storage_options=storage_options if storage_options is not None else cfg.storage_options(config),
            value_store_options=cfg.value_store_options(config),
            index_dir=index_dir or cfg.index_dir(config),
            durable=cfg.truthy(_given(durable, config, "objstore_durable", False)),
            max_value_size=int(_given(max_value_size, config, "max_value_size", DEFAULT_MAX_VALUE_SIZE)),
            flush_interval=float(_given(flush_interval, config, "objstore_flush_interval", 0.5)),
            flush_every=int(_given(flush_every, config, "objstore_flush_every", 5000)),
            pack_cache_bytes=None if cache_bytes in (None, "") else int(cache_bytes),
            create=cfg.truthy(_given(create, config, "objstore_create", False)),
        )

    @property
    def policy(self) -> FlushPolicy:
        return FlushPolicy(durable=self.durable, max_items=self.flush_every, interval=self.flush_interval)


class Reporter:
    """Turns storage failures into the one-line errors redun shows, remembering what was said
    (the exit flush does not repeat an error the run already raised)."""

    def __init__(self, url: str, logger: logging.Logger | logging.LoggerAdapter):
        self.url = url
        self.logger = logger
        self.reported: set[str] = set()
        self.read_only_said = False

    def error(self, message: str) -> ObjstoreRedunError:
        self.reported.add(message)
        return ObjstoreRedunError(message)

    def open_repository(self, settings: BackendSettings) -> Repository:
        # A memory:// repository cannot hold anything from before this process: creating it
        # is never a surprise (it is also redun's no-config default, as sqlite's :memory:).
        create = settings.create or settings.url.startswith("memory://")
        try:
            return Repository.open(
                settings.url, settings.storage_options, index_dir=settings.index_dir, create=create,
                policy=settings.policy, value_store_options=settings.value_store_options,
                pack_cache_bytes=settings.pack_cache_bytes,
            )
        except RepositoryNotFound as exc:
            hint = "" if "does not exist" in str(exc) or "holds repository data" in str(exc) else (
                f": create it with `objstore init {settings.url}`, or set objstore_create = true in redun.ini's [backend]"
            )
            raise self.error(f"{exc}{hint}") from None
        except (ObjstoreError, ValueError) as exc:
            raise self.error(f"cannot open the objstore repository at {self.url}: {cause(exc, self.url)}") from None


class Recording:
    """``with recording:`` around a write. A plain class, not a contextlib generator: it runs
    twice per job, and a generator-based manager costs several Python calls more each time."""

    __slots__ = ("reporter",)

    def __init__(self, reporter: Reporter):
        self.reporter = reporter

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        r = self.reporter
        if isinstance(exc, ReadOnlyRepository):
            if not r.read_only_said:
                r.read_only_said = True
                r.reported.add(str(exc))
                r.logger.warning(
                    "objstore: the repository %s is read-only (%s): cache hits are served, nothing new is recorded",
                    r.url, cause(exc, r.url),
                )
            return True
        if isinstance(exc, StorageError):
            raise r.error(f"cannot record into the objstore repository at {r.url}: {cause(exc, r.url)}") from None
        return False


class Flushable(Protocol):
    url: str
    reporter: Reporter

    def flush(self) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_registered = False


def _flush_live_backends() -> None:
    for backend in list(_live):
        try:
            backend.flush()
        except Exception as exc:  # exit must go on; say what was lost (unless already said)
            if str(exc) not in backend.reporter.reported:
                log.error("objstore: flush at exit failed for %s: %s", backend.url, exc)


def flush_at_exit(backend: Flushable) -> None:
    global _atexit_registered
    with _atexit_lock:
        _live.add(backend)
        if not _atexit_registered:
            atexit.register(_flush_live_backends)
            _atexit_registered = True


def forget_at_exit(backend: Flushable) -> None:
    _live.discard(backend)


__all__ = ["BackendSettings", "Recording", "Reporter", "cause", "flush_at_exit", "forget_at_exit"]
