"""ObjstoreBackend: redun's RedunBackend on an objstore repository.

The only module (with its package) that imports redun. It turns redun objects into the neutral
API's specs: values are hashed and serialized only through ``self.type_registry``, jobs and
handles are read for their ids, and cache results are deserialized back. Writes are buffered and
flushed at the root job's end, when the buffer grows, at most ``flush_interval`` seconds after
the last flush (checked at job starts and ends; such flushes run on a background thread so the
scheduler keeps working while files are written), from ``close()``, and at interpreter exit.
Durable mode flushes in the foreground at every job end.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import weakref
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from redun.backends.base import KeyValue, RedunBackend, TagEntity, TagMap
from redun.backends.db import RedunBackendDb
from redun.handle import Handle
from redun.tags import CONTEXT_KEY
from redun.task import CacheCheckValid, CacheResult, CacheScope
from redun.task import Task as RedunTask
from redun.utils import MultiMap
from redun.value import TypeRegistry

from objstore import hashing, model
from objstore.backend import MISSING, Provenance
from objstore.backend.values import DEFAULT_MAX_VALUE_SIZE
from objstore.errors import ObjstoreError, ReadOnlyRepository, RepositoryNotFound, StorageError
from objstore.redun.config import index_dir as config_index_dir
from objstore.redun.config import resolve_url, truthy
from objstore.redun.config import storage_options as config_storage_options
from objstore.redun.config import value_store_options as config_value_store_options
from objstore.redun.errors import ObjstoreRedunError
from objstore.redun.sql import SqlInterface
from objstore.redun.values import RedunValues
from objstore.repo import FlushPolicy, Repository

log = logging.getLogger("objstore.redun")

_live_backends: weakref.WeakSet[ObjstoreBackend] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_registered = False


def _flush_live_backends() -> None:
    for backend in list(_live_backends):
        try:
            backend.flush()
        except Exception as exc:  # exit must go on; say what was lost (unless already said)
            if str(exc) not in backend._reported:
                log.error("objstore: flush at exit failed for %s: %s", backend.url, exc)


def _register_atexit(backend: ObjstoreBackend) -> None:
    global _atexit_registered
    with _atexit_lock:
        _live_backends.add(backend)
        if not _atexit_registered:
            atexit.register(_flush_live_backends)
            _atexit_registered = True


def _cause(exc: BaseException, url: str) -> str:
    """An error's message without a leading repository URL (the caller's message names it)."""
    text = " ".join(str(exc).split())  # one line: a server's multi-line message (Azure's XML) too
    for prefix in (f"{url}: ", f"{url.rstrip('/')}: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


class ObjstoreBackend(SqlInterface, RedunBackend):
    """A drop-in redun backend storing provenance and caches in an objstore repository.

    redun's own CLI and console read it through ``session`` (objstore.redun.sql): a read-only
    SQL replica in redun's schema, kept beside the index and caught up from the journal."""

    def __init__(
        self,
        url: str | None = None,
        *,
        config: Any = None,
        storage_options: dict | None = None,
        index_dir: str | None = None,
        durable: bool | None = None,
        max_value_size: int | None = None,
        flush_interval: float | None = None,
        flush_every: int | None = None,
        create: bool | None = None,
        type_registry: TypeRegistry | None = None,
        repo: Any = None,
        logger: Any = None,
    ):
        super().__init__(type_registry=type_registry)
        config = config if config is not None else {}
        self._config = config
        self.logger = logger or log
        self.url = repo.url if repo is not None else resolve_url(url, config)
        self.storage_options = storage_options if storage_options is not None else config_storage_options(config)
        # The repository's value store (its URL is a repository setting); its fsspec options.
        self.value_store_options = config_value_store_options(config)
        self.index_dir = index_dir or config_index_dir(config)
        self.durable = truthy(durable if durable is not None else config.get("objstore_durable", False))
        self.max_value_size = int(
            max_value_size if max_value_size is not None else config.get("max_value_size", DEFAULT_MAX_VALUE_SIZE)
        )
        self.flush_interval = float(
            flush_interval if flush_interval is not None else config.get("objstore_flush_interval", 0.5)
        )
        self.flush_every = int(flush_every if flush_every is not None else config.get("objstore_flush_every", 5000))
        # The local cache of whole packs of a remote repository (bytes; 0: none).
        cache_bytes = config.get("objstore_pack_cache_bytes")
        self.pack_cache_bytes = None if cache_bytes in (None, "") else int(cache_bytes)
        # Only `objstore init`, or this explicit option, creates a repository: a mistyped URL or
        # a deleted objstore.json must be an error, not an empty repository that re-runs all.
        self.create = truthy(create if create is not None else config.get("objstore_create", False))
        self._read_only_said = False
        self._reported: set[str] = set()  # error messages already raised to redun
        self._repo = repo
        self._prov: Provenance | None = None
        self.values = RedunValues(self.type_registry, self.max_value_size, lambda: self.prov)
        self._open_lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def prov(self) -> Provenance:
        prov = self._prov
        if prov is None:
            prov = self._open()
        return prov

    def _open(self) -> Provenance:
        with self._open_lock:
            if self._prov is None:
                repo = self._repo
                if repo is None:
                    repo = self._repo = self._open_repository()
                with self._recording():
                    # Catch up with every journal segment this index has not seen: another
                    # host's runs, or a writer killed between its segment and its index update.
                    repo.refresh()
                self._prov = Provenance(repo, max_value_size=self.max_value_size)
                _register_atexit(self)
            return self._prov

    def _open_repository(self) -> Repository:
        policy = FlushPolicy(durable=self.durable, max_items=self.flush_every, interval=self.flush_interval)
        # A memory:// repository cannot hold anything from before this process: creating it
        # is never a surprise (it is also redun's no-config default, as sqlite's :memory:).
        create = self.create or self.url.startswith("memory://")
        try:
            return Repository.open(
                self.url, self.storage_options, index_dir=self.index_dir, create=create, policy=policy,
                value_store_options=self.value_store_options, pack_cache_bytes=self.pack_cache_bytes,
            )
        except RepositoryNotFound as exc:
            hint = "" if "does not exist" in str(exc) or "holds repository data" in str(exc) else (
                f": create it with `objstore init {self.url}`, or set objstore_create = true in redun.ini's [backend]"
            )
            raise self._error(f"{exc}{hint}") from None
        except (ObjstoreError, ValueError) as exc:
            raise self._error(f"cannot open the objstore repository at {self.url}: {_cause(exc, self.url)}") from None

    def _error(self, message: str) -> ObjstoreRedunError:
        self._reported.add(message)
        return ObjstoreRedunError(message)

    @contextlib.contextmanager
    def _recording(self) -> Iterator[None]:
        """Storage failures while recording, as redun should show them: a read-only repository
        is said once and then serves cache hits only; anything else is one ObjstoreRedunError
        naming the repository and the cause (redun's CLI prints it as one line)."""
        try:
            yield
        except ReadOnlyRepository as exc:
            if not self._read_only_said:
                self._read_only_said = True
                self._reported.add(str(exc))
                self.logger.warning(
                    "objstore: the repository %s is read-only (%s): cache hits are served, nothing new is recorded",
                    self.url, _cause(exc, self.url),
                )
        except StorageError as exc:
            raise self._error(f"cannot record into the objstore repository at {self.url}: {_cause(exc, self.url)}") from None

    @property
    def repo(self) -> Any:
        return self.prov.repo

    def load(self, migrate: bool | None = None) -> None:
        """Open the repository (it must exist, unless ``create``) and read the journal segments
        this index has not seen yet; there is no schema to migrate."""
        if self._prov is None:
            self._open()
        else:
            with self._recording():
                self._prov.refresh()

    def flush(self) -> None:
        if self._prov is not None:
            with self._recording():
                self._prov.flush()

    def refresh(self) -> int:
        return self.prov.refresh()

    def close(self) -> None:
        self.close_replica()
        if self._prov is not None:
            prov, self._prov = self._prov, None
            self._repo = None
            _live_backends.discard(self)
            try:
                with self._recording():
                    prov.close()
            finally:
                self.values.forget()

    def __enter__(self) -> ObjstoreBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- values ------------------------------------------------------------------------------

    def record_value(self, value: Any, data: bytes | None = None) -> str:
        return self.values.record(value, data)

    def _load_value(self, value_hash: str) -> tuple[Any, bool]:
        return self.values.load(value_hash)

    def get_value(self, value_hash: str) -> tuple[Any, bool]:
        """(value, True), or (None, False) when absent or not loadable (redun's real contract)."""
        return self.values.load(value_hash)

    # -- call graph --------------------------------------------------------------------------

    def record_call_node(
        self,
        task_name: str,
        task_hash: str,
        args_hash: str,
        expr_args: tuple[tuple, dict],
        eval_args: tuple[tuple, dict],
        result_hash: str,
        child_call_hashes: list[str],
        subtree_tasks: Iterable[RedunTask],
    ) -> str:
        prov = self.prov
        call_hash = hashing.hash_call_node(task_hash, args_hash, result_hash, child_call_hashes)
        if prov.calls.has_call_node(call_hash):
            return call_hash
        subtree_tasks = list(subtree_tasks)
        args = self.values.arg_specs(expr_args, eval_args)
        if not all(prov.calls.has_call_node(child) for child in child_call_hashes):
            # Children recorded with prov=False may have left their tasks unrecorded.
            for task in subtree_tasks:
                self.record_value(task)
        recorded = prov.calls.record_call_node(
            task_name=task_name,
            task_hash=task_hash,
            args_hash=args_hash,
            result_hash=result_hash,
            child_call_hashes=child_call_hashes,
            args=args,
            subtree_task_hashes=[task.hash for task in subtree_tasks],
            call_hash=call_hash,
        )
        assert recorded == call_hash
        return call_hash

    def get_subtree_tasks(self, call_hash: str) -> set[str]:
        return self.prov.calls.get_subtree_tasks(call_hash)

    def record_call_node_context(self, call_hash: str, context_hash: str | None, context: dict) -> str:
        if context_hash is None:
            context_hash = self.record_value(context)
        self.record_tags(TagEntity.CallNode, call_hash, [(CONTEXT_KEY, context_hash)])
        return context_hash

    # -- cache -------------------------------------------------------------------------------

    def check_cache(
        self,
        task_hash: str,
        args_hash: str,
        eval_hash: str,
        execution_id: str,
        scheduler_task_hashes: set[str],
        cache_scope: CacheScope,
        check_valid: CacheCheckValid,
        context_hash: str | None = None,
        allowed_cache_results: set[CacheResult] | None = None,
    ) -> tuple[Any, str | None, CacheResult]:
        allowed = None if allowed_cache_results is None else {r.value for r in allowed_cache_results}
        result, call_hash, kind = self.prov.cache.check_cache(
            task_hash,
            args_hash,
            eval_hash,
            execution_id,
            scheduler_task_hashes,
            CacheScope(cache_scope).value,
            CacheCheckValid(check_valid).value,
            context_hash,
            allowed,
            load=self._load_value,
        )
        return result, call_hash, CacheResult(kind)

    def get_eval_cache(self, eval_hash: str) -> tuple[Any, bool]:
        value_hash = self.prov.cache.get_eval_cache(eval_hash)
        return (None, False) if value_hash is MISSING else self._load_value(value_hash)

    def get_call_cache(self, call_hash: str) -> tuple[Any, bool]:
        return self.prov.cache.load_call_result(call_hash, self._load_value)

    def set_eval_cache(
        self, eval_hash: str, task_hash: str, args_hash: str, value: Any, value_hash: str | None = None
    ) -> None:
        if not value_hash:
            value_hash = self.record_value(value)
        self.prov.cache.set_eval_cache(eval_hash, value_hash)

    def explain_cache_miss(self, task: RedunTask, args_hash: str) -> dict[str, Any] | None:
        return self.prov.cache.explain_cache_miss(task.name, task.namespace, task.hash, args_hash)

    # -- handles -----------------------------------------------------------------------------

    def advance_handle(self, handles: list[Handle], child_handle: Handle) -> None:
        ancestors = []
        queue = [
            h.__handle__.fork_parent
            for h in handles
            if h.__handle__.fork_parent and not h.__handle__.is_recorded
        ]
        while queue:
            handle = queue.pop()
            ancestors.append(self.values.handle_spec(handle))
            handle.__handle__.is_recorded = True
            if handle.__handle__.fork_parent:
                queue.append(handle.__handle__.fork_parent)
        child = self.values.handle_spec(child_handle)
        parents = [self.values.handle_spec(h) for h in handles]
        self.prov.handles.advance_handle(parents, child, ancestors)
        child_handle.__handle__.is_recorded = True
        for handle in handles:
            handle.__handle__.is_recorded = True

    def rollback_handle(self, handle: Handle) -> None:
        self.prov.handles.rollback_handle(handle.__handle__.hash, handle.__handle__.fullname)

    def is_valid_handle(self, handle: Handle) -> bool:
        return self.prov.handles.is_valid_handle(handle.__handle__.hash, handle.__handle__.fullname)

    # -- executions and jobs -----------------------------------------------------------------

    def record_execution(self, exec_id: str, args: list[str]) -> None:
        self.prov.jobs.record_execution(exec_id, args)

    def record_updated_time(self, execution_id: str) -> None:
        self.prov.jobs.record_updated_time(execution_id)

    def record_job_start(self, job: Any, now: datetime | None = None) -> Any:
        self.record_value(job.task)
        prov = self.prov
        info = prov.jobs.job_started(
            job.id,
            task_hash=job.task.hash,
            execution_id=job.execution.id,
            parent_id=job.parent_job.id if job.parent_job else None,
            now=now,
        )
        with self._recording():
            prov.job_started()
        return info

    def record_job_end(self, job: Any, now: datetime | None = None, status: str | None = None) -> None:
        prov = self.prov
        if not prov.jobs.is_running_here(job.id):
            self.record_value(job.task)
        prov.jobs.job_ended(
            job.id,
            task_hash=job.task.hash,
            execution_id=job.execution.id,
            parent_id=job.parent_job.id if job.parent_job else None,
            cached=bool(job.was_cached),
            call_hash=job.call_hash,
            args_hash=job.args_hash,
            now=now,
        )
        with self._recording():
            prov.job_ended(root=job.parent_job is None)

    def get_job(self, job_id: str) -> dict | None:
        return self.prov.jobs.get_job(job_id)

    # -- tags --------------------------------------------------------------------------------

    def record_tags(
        self,
        entity_type: TagEntity,
        entity_id: str,
        tags: Iterable[KeyValue],
        parents: Iterable = (),
        update: bool = False,
        new: bool = False,
    ) -> list[tuple[str, str, str, Any]]:
        return self.prov.tags.record_tags(
            TagEntity(entity_type).value, entity_id, list(tags), parents=parents, update=update, new=new
        )

    def delete_tags(
        self, entity_id: str, tags: Iterable[KeyValue], keys: Iterable[str] = ()
    ) -> list[tuple[str, str, str, Any]]:
        return self.prov.tags.delete_tags(entity_id, list(tags), keys)

    def update_tags(
        self, entity_type: TagEntity, entity_id: str, old_keys: Iterable[str], new_tags: Iterable[KeyValue]
    ) -> list[tuple[str, str, str, Any]]:
        return self.prov.tags.update_tags(TagEntity(entity_type).value, entity_id, old_keys, list(new_tags))

    def get_tags(self, entity_ids: list[str]) -> dict[str, TagMap]:
        out: dict[str, TagMap] = {}
        for entity_id, pairs in self.prov.tags.get_tags(entity_ids).items():
            out[entity_id] = MultiMap(pairs)
        return out

    # -- records -----------------------------------------------------------------------------

    def get_records(self, ids: Iterable[str], sorted: bool = True) -> Iterable[dict]:
        return self.prov.records.get_records(ids, sorted=sorted)

    def put_records(self, records: Iterable[dict]) -> int:
        count = self.prov.records.put_records(records)
        with self._recording():
            self.prov.flush()
        return count

    def iter_record_ids(self, root_ids: Iterable[str]) -> Iterator[str]:
        return self.prov.records.iter_record_ids(root_ids)

    def has_records(self, record_ids: Iterable[str]) -> list[str]:
        return [rid for rid in record_ids if self.prov.records.kind(rid) in model.EXPORT_KINDS]


# redun's CLI asserts isinstance(backend, RedunBackendDb) before reading ``session``; a virtual
# subclass passes without inheriting any of RedunBackendDb's SQL writes.
RedunBackendDb.register(ObjstoreBackend)
