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

import threading
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
from objstore.redun.opening import BackendSettings, Recording, Reporter, flush_at_exit, forget_at_exit, log
from objstore.redun.sql import SqlInterface
from objstore.redun.values import RedunValues


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
        self.settings = settings = BackendSettings.resolve(
            url, config, repo=repo, storage_options=storage_options, index_dir=index_dir, durable=durable,
            max_value_size=max_value_size, flush_interval=flush_interval, flush_every=flush_every, create=create,
        )
        self.url, self.index_dir, self.durable = settings.url, settings.index_dir, settings.durable
        self.storage_options, self.max_value_size = settings.storage_options, settings.max_value_size
        self.flush_interval, self.flush_every = settings.flush_interval, settings.flush_every
        self.reporter = Reporter(self.url, logger or log)
        self._recording = Recording(self.reporter)
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
                    repo = self._repo = self.reporter.open_repository(self.settings)
                with self._recording:
                    # Catch up with every journal segment this index has not seen: another
                    # host's runs, or a writer killed between its segment and its index update.
                    repo.refresh()
                self._prov = Provenance(repo, max_value_size=self.max_value_size)
                flush_at_exit(self)
            return self._prov

    @property
    def repo(self) -> Any:
        return self.prov.repo

    def load(self, migrate: bool | None = None) -> None:
        """Open the repository (it must exist, unless ``create``) and read the journal segments
        this index has not seen yet; there is no schema to migrate."""
        if self._prov is None:
            self._open()
        else:
            with self._recording:
                self._prov.refresh()

    def flush(self) -> None:
        if self._prov is not None:
            with self._recording:
                self._prov.flush()

    def refresh(self) -> int:
        return self.prov.refresh()

    def close(self) -> None:
        self.close_replica()
        if self._prov is not None:
            prov, self._prov = self._prov, None
            self._repo = None
            forget_at_exit(self)
            try:
                with self._recording:
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
            task_name=task_name, task_hash=task_hash, args_hash=args_hash, result_hash=result_hash,
            child_call_hashes=child_call_hashes, args=args, subtree_task_hashes=[task.hash for task in subtree_tasks],
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
            task_hash, args_hash, eval_hash, execution_id, scheduler_task_hashes, CacheScope(cache_scope).value,
            CacheCheckValid(check_valid).value, context_hash, allowed, load=self._load_value,
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
        parents, child, ancestors = self.values.advance_specs(handles, child_handle)
        self.prov.handles.advance_handle(parents, child, ancestors)
        self.values.mark_recorded([child_handle, *handles])

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
        with self._recording:
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
        with self._recording:
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
        with self._recording:
            self.prov.flush()
        return count

    def iter_record_ids(self, root_ids: Iterable[str]) -> Iterator[str]:
        return self.prov.records.iter_record_ids(root_ids)

    def has_records(self, record_ids: Iterable[str]) -> list[str]:
        return [rid for rid in record_ids if self.prov.records.kind(rid) in model.EXPORT_KINDS]


# redun's CLI asserts isinstance(backend, RedunBackendDb) before reading ``session``; a virtual
# subclass passes without inheriting any of RedunBackendDb's SQL writes.
RedunBackendDb.register(ObjstoreBackend)
