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
import logging
import os
import threading
import uuid
import weakref
from datetime import datetime
from typing import Any, Iterable, Iterator, Optional

from redun.backends.base import KeyValue, RedunBackend, TagEntity, TagMap
from redun.backends.db import RedunDatabaseError
from redun.expression import Expression, SchedulerExpression, TaskExpression
from redun.file import File as RedunFile
from redun.handle import Handle
from redun.tags import CONTEXT_KEY
from redun.task import CacheCheckValid, CacheResult, CacheScope
from redun.task import Task as RedunTask
from redun.utils import MultiMap, iter_nested_value
from redun.value import InvalidValueError, TypeRegistry

from objstore import hashing, records
from objstore.backend import MISSING, ArgSpec, HandleSpec, Provenance, ValueSpec
from objstore.backend.values import DEFAULT_MAX_VALUE_SIZE
from objstore.errors import ValueTooLarge

log = logging.getLogger("objstore.redun")

URL_KEY = "objstore_url"
URI_PREFIX = "objstore+"
DEFAULT_DIRNAME = ".objstore"


class ObjstoreRedunError(RedunDatabaseError):
    """Root of the errors the redun adapter raises (a RedunDatabaseError, as redun expects)."""


class ObjstoreValueTooLarge(ValueTooLarge, ObjstoreRedunError):
    """A value larger than max_value_size (redun's tests expect RedunDatabaseError)."""


_live_backends: "weakref.WeakSet[ObjstoreBackend]" = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_registered = False


def _flush_live_backends() -> None:
    for backend in list(_live_backends):
        try:
            backend.flush()
        except Exception as exc:  # exit must go on; say what was lost
            log.error("objstore: flush at exit failed for %s: %s", backend.url, exc)


def _register_atexit(backend: "ObjstoreBackend") -> None:
    global _atexit_registered
    with _atexit_lock:
        _live_backends.add(backend)
        if not _atexit_registered:
            atexit.register(_flush_live_backends)
            _atexit_registered = True


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def resolve_url(url: Optional[str], config: Any) -> str:
    """The repository URL: explicit, then [backend] objstore_url, then an objstore+ db_uri,
    then ``.objstore/`` next to the redun config dir; with no config at all a fresh in-memory
    repository (as redun falls back to sqlite :memory:)."""
    if url:
        return url[len(URI_PREFIX) :] if url.startswith(URI_PREFIX) else url
    config = config or {}
    if config.get(URL_KEY):
        return config[URL_KEY]
    db_uri = config.get("db_uri") or ""
    if db_uri.startswith(URI_PREFIX):
        return db_uri[len(URI_PREFIX) :]
    config_dir = config.get("config_dir")
    if config_dir:
        return os.path.join(os.path.dirname(os.path.abspath(config_dir)), DEFAULT_DIRNAME)
    return f"memory://objstore-{uuid.uuid4().hex}"


class ObjstoreBackend(RedunBackend):
    """A drop-in redun backend storing provenance and caches in an objstore repository."""

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        config: Any = None,
        storage_options: Optional[dict] = None,
        index_dir: Optional[str] = None,
        durable: Optional[bool] = None,
        max_value_size: Optional[int] = None,
        flush_interval: Optional[float] = None,
        flush_every: Optional[int] = None,
        type_registry: Optional[TypeRegistry] = None,
        repo: Any = None,
        logger: Any = None,
    ):
        super().__init__(type_registry=type_registry)
        config = config if config is not None else {}
        self.logger = logger or log
        self.url = repo.url if repo is not None else resolve_url(url, config)
        self.storage_options = storage_options
        self.index_dir = index_dir or config.get("objstore_index_dir") or None
        self.durable = _truthy(durable if durable is not None else config.get("objstore_durable", False))
        self.max_value_size = int(
            max_value_size if max_value_size is not None else config.get("max_value_size", DEFAULT_MAX_VALUE_SIZE)
        )
        self.flush_interval = float(
            flush_interval if flush_interval is not None else config.get("objstore_flush_interval", 0.5)
        )
        self.flush_every = int(flush_every if flush_every is not None else config.get("objstore_flush_every", 5000))
        self._repo = repo
        self._prov: Optional[Provenance] = None
        self._stored_tasks: set[str] = set()  # bounded by the number of distinct tasks
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
                    from objstore.repo import Repository

                    repo = Repository.open(
                        self.url,
                        self.storage_options,
                        index_dir=self.index_dir,
                        durable=self.durable,
                        create=True,
                    )
                    self._repo = repo
                self._prov = Provenance(
                    repo,
                    max_value_size=self.max_value_size,
                    flush_every=self.flush_every,
                    flush_interval=self.flush_interval,
                )
                _register_atexit(self)
            return self._prov

    @property
    def repo(self) -> Any:
        return self.prov.repo

    def load(self, migrate: Optional[bool] = None) -> None:
        """Open (or create) the repository; there is no schema to migrate."""
        self.prov

    def flush(self) -> None:
        if self._prov is not None:
            self._prov.flush()

    def refresh(self) -> int:
        return self.prov.refresh()

    def close(self) -> None:
        if self._prov is not None:
            prov, self._prov = self._prov, None
            self._repo = None
            _live_backends.discard(self)
            prov.close()
            self._stored_tasks.clear()

    def __enter__(self) -> "ObjstoreBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- values ------------------------------------------------------------------------------

    def _subtype(self, value: Any) -> Optional[dict]:
        if isinstance(value, RedunFile):
            return records.file_subtype(value.path)
        if isinstance(value, RedunTask):
            return records.task_subtype(value.name, value.namespace, value.source)
        return None

    def _too_large(self, value: Any, size: int) -> ObjstoreValueTooLarge:
        text = repr(value)
        text = text if len(text) < 80 else text[:77] + "..."
        return ObjstoreValueTooLarge(
            f"Value {text} is too large (> {self.max_value_size}) to store in the objstore repository. "
            "Increase the `max_value_size` setting to store larger values."
        )

    def record_value(self, value: Any, data: Optional[bytes] = None) -> str:
        if data is None and isinstance(value, RedunTask):
            # Every job start records its task: once stored, a task hash is all it takes (a
            # Task's value hash is its task hash; serializing it again would be the cost).
            task_hash = value.hash
            if task_hash in self._stored_tasks:
                return task_hash
            recorded = self._record_value(value, None)
            self._stored_tasks.add(recorded)
            return recorded
        return self._record_value(value, data)

    def _record_value(self, value: Any, data: Optional[bytes]) -> str:
        registry = self.type_registry
        value_interface = registry.get_value(value)
        if data is None:
            data = value_interface.serialize()
        if len(data) > self.max_value_size:
            raise self._too_large(value, len(data))
        value_hash = value_interface.get_hash(data=data)
        prov = self.prov
        if prov.core.has(value_hash):
            return value_hash
        spec = ValueSpec(
            value_hash,
            registry.get_type_name(type(value)),
            value_interface.get_serialization_format(),
            data,
            self._subtype(value),
        )
        subvalues = []
        for sub in value_interface.iter_subvalues():
            sub_data = registry.serialize(sub)
            if len(sub_data) > self.max_value_size:
                raise self._too_large(sub, len(sub_data))
            subvalues.append(
                ValueSpec(
                    registry.get_hash(sub, data=sub_data),
                    registry.get_type_name(type(sub)),
                    registry.get_serialization_format(sub),
                    sub_data,
                    self._subtype(sub),
                )
            )
        try:
            prov.values.record_value(spec, subvalues)
        except ValueTooLarge as exc:
            raise ObjstoreValueTooLarge(str(exc)) from None
        return value_hash

    def _load_value(self, value_hash: str) -> tuple[Any, bool]:
        stored = self.prov.values.get_value(value_hash)
        if stored is MISSING:
            return None, False
        try:
            return self.type_registry.deserialize(stored.type, stored.data), True
        except InvalidValueError:
            return None, False

    def get_value(self, value_hash: str) -> tuple[Any, bool]:  # type: ignore[override]
        """(value, True), or (None, False) when absent or not loadable (redun's real contract)."""
        return self._load_value(value_hash)

    # -- call graph --------------------------------------------------------------------------

    def _find_arg_upstreams(self, expr_arg: Any) -> Iterator[str]:
        for value in iter_nested_value(expr_arg):
            if isinstance(value, TaskExpression) and not isinstance(value, SchedulerExpression):
                if value.call_hash:
                    yield value.call_hash
            elif isinstance(value, Expression):
                yield from self._find_arg_upstreams(value._upstreams)

    def _arg_specs(self, expr_args: tuple, eval_args: tuple) -> list[ArgSpec]:
        eval_pos, eval_kwargs = eval_args
        expr_pos, expr_kwargs = expr_args
        specs = [
            ArgSpec(self.record_value(eval_arg), position=i, upstream=tuple(set(self._find_arg_upstreams(expr_arg))))
            for i, (expr_arg, eval_arg) in enumerate(zip(expr_pos, eval_pos))
        ]
        for key in sorted(set(eval_kwargs) & set(expr_kwargs)):
            upstream = tuple(set(self._find_arg_upstreams(expr_kwargs[key])))
            specs.append(ArgSpec(self.record_value(eval_kwargs[key]), key=key, upstream=upstream))
        for key in eval_kwargs:
            if key not in expr_kwargs:
                value = eval_kwargs[key]
                specs.append(ArgSpec(self.record_value(value), key=key, upstream=tuple(set(self._find_arg_upstreams(value)))))
        return specs

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
        args = self._arg_specs(expr_args, eval_args)
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

    def record_call_node_context(self, call_hash: str, context_hash: Optional[str], context: dict) -> str:
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
        context_hash: Optional[str] = None,
        allowed_cache_results: Optional[set[CacheResult]] = None,
    ) -> tuple[Any, Optional[str], CacheResult]:
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
        self, eval_hash: str, task_hash: str, args_hash: str, value: Any, value_hash: Optional[str] = None
    ) -> None:
        if not value_hash:
            value_hash = self.record_value(value)
        self.prov.cache.set_eval_cache(eval_hash, value_hash)

    def explain_cache_miss(self, task: RedunTask, args_hash: str) -> Optional[dict[str, Any]]:
        return self.prov.cache.explain_cache_miss(task.name, task.namespace, task.hash, args_hash)

    # -- handles -----------------------------------------------------------------------------

    def _handle_spec(self, handle: Handle) -> HandleSpec:
        info = handle.__handle__
        return HandleSpec(info.hash, info.fullname, info.key, self.record_value(handle))

    def advance_handle(self, handles: list[Handle], child_handle: Handle) -> None:
        ancestors = []
        queue = [
            h.__handle__.fork_parent
            for h in handles
            if h.__handle__.fork_parent and not h.__handle__.is_recorded
        ]
        while queue:
            handle = queue.pop()
            ancestors.append(self._handle_spec(handle))
            handle.__handle__.is_recorded = True
            if handle.__handle__.fork_parent:
                queue.append(handle.__handle__.fork_parent)
        child = self._handle_spec(child_handle)
        parents = [self._handle_spec(h) for h in handles]
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

    def record_job_start(self, job: Any, now: Optional[datetime] = None) -> Any:
        self.record_value(job.task)
        prov = self.prov
        info = prov.jobs.job_started(
            job.id,
            task_hash=job.task.hash,
            execution_id=job.execution.id,
            parent_id=job.parent_job.id if job.parent_job else None,
            now=now,
        )
        if not self.durable:
            # A fan-out starts (and caches) every job before the first one ends: start writing
            # those objects in the background now rather than at the first job end.
            prov.maybe_flush()
        return info

    def record_job_end(self, job: Any, now: Optional[datetime] = None, status: Optional[str] = None) -> None:
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
        if job.parent_job is None or self.durable:
            prov.flush()
        else:
            prov.maybe_flush()

    def get_job(self, job_id: str) -> Optional[dict]:
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
        self.prov.flush()
        return count

    def iter_record_ids(self, root_ids: Iterable[str]) -> Iterator[str]:
        return self.prov.records.iter_record_ids(root_ids)

    def has_records(self, record_ids: Iterable[str]) -> list[str]:
        return [rid for rid in record_ids if self.prov.records.kind(rid) in records.EXPORT_TYPES.values()]
