"""The query layer behind `objstore log`: executions, job trees and record details.

Pure reads over a Provenance (its Repository and LMDB index), returning plain dataclasses that
the CLI formats as text or JSON. Walking an execution is an index walk (job_children) plus one
read per job object; tasks are read once per distinct task.

Statuses are redun's (DONE, CACHED, FAILED, RUNNING) plus UNFINISHED: a job known only from
the start note in the journal whose worker has evidently gone, because its execution's root job
has ended, or because nothing was heard from it or its execution for ``stale_after`` seconds.
"""

from __future__ import annotations

import builtins
import io
import json
import pickle
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from objstore import records
from objstore.backend import MISSING, Provenance
from objstore.errors import CorruptObject, InvalidId, ObjectNotFound, ObjstoreError
from objstore.ids import is_hash, is_uuid

DONE, CACHED, FAILED, RUNNING, UNFINISHED = "DONE", "CACHED", "FAILED", "RUNNING", "UNFINISHED"
STATUSES = (DONE, CACHED, FAILED, RUNNING, UNFINISHED)
ERROR_TYPE = "redun.ErrorValue"
PREVIEW_MAX_BYTES = 1 << 20  # larger values are described, not decoded
PREVIEW_MAX_CHARS = 200  # redun's trim_string default
_PREFIX_RE = re.compile(r"[0-9a-f][0-9a-f-]*")
_MAX_MATCHES = 10
_BATCH = 256


class AmbiguousId(InvalidId):
    """An id prefix matching more than one record of the kind asked for."""

    def __init__(self, what: str, prefix: str, matches: list[str]):
        self.prefix = prefix
        self.matches = matches
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        super().__init__(f"ambiguous {what} id prefix {prefix!r}: matches {shown}")


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class JobCounts:
    done: int = 0
    cached: int = 0
    failed: int = 0
    running: int = 0
    unfinished: int = 0

    @property
    def total(self) -> int:
        return self.done + self.cached + self.failed + self.running + self.unfinished

    @classmethod
    def of(cls, statuses: Iterable[str]) -> JobCounts:
        tally = {status: 0 for status in STATUSES}
        for status in statuses:
            tally[status] += 1
        return cls(tally[DONE], tally[CACHED], tally[FAILED], tally[RUNNING], tally[UNFINISHED])


@dataclass(frozen=True)
class ValueInfo:
    value_hash: str
    type: str
    format: str
    size: int
    preview: str  # redun's repr-style preview, trimmed; a description when not decodable
    subtype: dict | None = None


@dataclass(frozen=True)
class ArgInfo:
    key: str  # a keyword, or the position as digits (redun's export key)
    value: ValueInfo | None  # None when the value object is absent
    value_hash: str
    upstream: list[str] = field(default_factory=list)


@dataclass
class JobNode:
    id: str
    status: str
    task_hash: str
    task_name: str
    start_time: str | None
    end_time: str | None
    duration: float | None  # seconds; None while running
    cached: bool
    call_hash: str | None
    parent_id: str | None
    execution_id: str | None
    args: str = ""  # formatted argument previews (filled for trees and details)
    children: list[JobNode] = field(default_factory=list)

    def walk(self) -> Iterable[JobNode]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class ExecutionSummary:
    id: str
    status: str  # DONE (root DONE or CACHED), FAILED, RUNNING, UNFINISHED
    args: list[str]  # argv without the program name, as redun shows it
    start_time: str | None
    end_time: str | None
    duration: float | None
    updated_time: str | None  # last heartbeat written by the scheduler
    job_id: str | None  # the root job
    counts: JobCounts
    tags: list[tuple[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ExecutionTree:
    execution: ExecutionSummary
    root: JobNode | None


@dataclass(frozen=True)
class CallInfo:
    call_hash: str
    task_name: str
    task_hash: str
    args_hash: str
    timestamp: str | None
    args: list[ArgInfo]
    result: ValueInfo | None
    result_hash: str
    children: list[str]
    tags: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def raised(self) -> bool:
        return self.result is not None and self.result.type == ERROR_TYPE


@dataclass(frozen=True)
class JobDetail:
    job: JobNode
    call: CallInfo | None
    child_ids: list[str]
    tags: list[tuple[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ValueDetail:
    value: ValueInfo
    subvalues: list[str]
    tags: list[tuple[str, Any]] = field(default_factory=list)


_RESULTS = (ExecutionSummary, ExecutionTree, JobNode, JobDetail, CallInfo, ValueDetail, ValueInfo, ArgInfo)


def to_jsonable(obj: Any) -> Any:
    """Any result above as plain JSON data (tuples become lists, counts get their total)."""
    if isinstance(obj, JobCounts):
        return {**asdict(obj), "total": obj.total}
    if isinstance(obj, _RESULTS):
        return {k: to_jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)


# ---------------------------------------------------------------------------- value previews


class _Stub:
    """Stands in for any class a pickle names: holds what the pickle says, runs none of its code."""

    _qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        obj = object.__new__(cls)
        obj.__dict__["_stub_args"] = args
        obj.__dict__["_stub_state"] = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            self.__dict__["_stub_args"] = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_stub_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:  # dict subclasses (SETITEMS)
        self.__dict__.setdefault("_stub_items", {})[key] = value

    def append(self, value: Any) -> None:  # list subclasses (APPENDS)
        self.__dict__.setdefault("_stub_list", []).append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.__dict__.setdefault("_stub_list", []).extend(values)

    def __repr__(self) -> str:
        name = self._qualname.rsplit(".", 1)[-1]
        state = self.__dict__["_stub_state"]
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict, slots)
        parts = [repr(a) for a in self.__dict__["_stub_args"]]
        if parts:
            state = None  # built from arguments (exceptions...): their repr shows only those
        if isinstance(state, dict):
            parts += [f"{k}={v!r}" for k, v in state.items() if not str(k).startswith("_")]
        elif state is not None:
            parts.append(repr(state))
        if "_stub_list" in self.__dict__:
            parts.append(repr(self.__dict__["_stub_list"]))
        if "_stub_items" in self.__dict__:
            parts.append(repr(self.__dict__["_stub_items"]))
        return f"{name}({', '.join(parts)})"


_SAFE_BUILTINS = {
    "int", "float", "complex", "str", "bytes", "bytearray", "list", "tuple", "dict", "set",
    "frozenset", "bool", "range", "slice",
}  # fmt: skip


class _PreviewUnpickler(pickle.Unpickler):
    """Plain data decodes to itself; every other class becomes an inert _Stub, so previewing a
    stored value never imports or runs code named by it (redun's own log unpickles for real)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        return type(name, (_Stub,), {"_qualname": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not previewed")


def trim(text: str, limit: int = PREVIEW_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def preview_value(type_name: str, format: str, data: bytes, subtype: dict | None = None) -> str:
    """A short repr-style text for a stored value, without executing anything it names."""
    if subtype and subtype.get("_type") == "File":
        return trim(f"File(path={subtype.get('path')})")
    if subtype and subtype.get("_type") == "Task":
        name = subtype.get("name", "?")
        namespace = subtype.get("namespace")
        return trim(f"Task({namespace + '.' if namespace else ''}{name})")
    try:
        if "pickle" in format:
            obj = _PreviewUnpickler(io.BytesIO(data)).load()
            if type_name == ERROR_TYPE and isinstance(obj, _Stub):
                state = obj.__dict__["_stub_state"]
                if isinstance(state, dict) and "error" in state:
                    return trim(repr(state["error"]))
            return trim(repr(obj))
        if format in ("application/json", "json"):
            return trim(repr(json.loads(data)))
        if format.startswith("text/"):
            return trim(repr(data.decode("utf-8")))
    except Exception:  # a preview never fails the command: describe instead
        pass
    return f"<{type_name}, {len(data)} bytes>"


# ---------------------------------------------------------------------------------- the query


def _parse_time(text: str | None) -> datetime | None:
    return records.parse_timestamp(text)


def _seconds(start: str | None, end: str | None) -> float | None:
    a, b = _parse_time(start), _parse_time(end)
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())


class LogQuery:
    """Reads for `log` over one Provenance. Caches decoded objects for its own lifetime only.

    ``stale_after`` (seconds): a started-but-unended job with no sign of life (its start, its
    execution's heartbeat) for this long is UNFINISHED rather than RUNNING. ``now`` is for tests.
    """

    def __init__(self, prov: Provenance, *, stale_after: float | None = None, now: datetime | None = None):
        self.prov = prov
        self.core = prov.core
        self.stale_after = stale_after
        self.now = now or datetime.now(timezone.utc)
        self._task_names: dict[str, str] = {}
        self._jobs: dict[str, Any] = {}
        self._values: dict[str, Any] = {}

    # -- ids ---------------------------------------------------------------------------------

    def _check_prefix(self, prefix: str) -> str:
        prefix = prefix.strip().lower()
        if not _PREFIX_RE.fullmatch(prefix):
            raise InvalidId(f"not an id or id prefix: {prefix!r}")
        return prefix

    def _unique(self, what: str, prefix: str, matches: list[str]) -> str:
        matches = sorted(set(matches))
        if not matches:
            raise ObjectNotFound(f"no {what} with id prefix {prefix!r}")
        if len(matches) > 1:
            raise AmbiguousId(what, prefix, matches)
        return matches[0]

    def execution_ids(self) -> list[str]:
        """Every execution id, newest first (by the start recorded in the execution)."""
        return self.prov.jobs.list_executions()

    def resolve_execution(self, prefix: str) -> str:
        prefix = self._check_prefix(prefix)
        return self._unique("execution", prefix, [e for e in self.execution_ids() if e.startswith(prefix)])

    def resolve_any(self, prefix: str) -> tuple[str, str]:
        """(kind, id) for `log ID`: executions first, so a short execution prefix keeps working
        however many values share it; otherwise a unique job, call node or value."""
        prefix = self._check_prefix(prefix)
        executions = [e for e in self.execution_ids() if e.startswith(prefix)]
        if executions:
            return records.EXECUTION, self._unique("execution", prefix, executions)
        found: dict[str, str] = {}
        for key, kind in self.core.index.scan("objects", prefix):
            if kind in (records.JOB, records.CALL, records.VALUE):
                found[key] = kind
                if len(found) > _MAX_MATCHES:
                    break
        for job_id in self._scan_ids("job_start", prefix):
            found.setdefault(job_id, records.JOB)
        if not found and (is_hash(prefix) or is_uuid(prefix)):
            kind = self.prov.records.kind(prefix)  # not indexed here yet: one read of the object
            if kind in (records.EXECUTION, records.JOB, records.CALL, records.VALUE):
                found[prefix] = kind
        chosen = self._unique("record", prefix, list(found))
        return found[chosen], chosen

    def _scan_ids(self, table: str, prefix: str, kind: str | None = None) -> list[str]:
        found = []
        for key, value in self.core.index.scan(table, prefix):
            if kind is None or value == kind:
                found.append(key)
                if len(found) > _MAX_MATCHES:
                    break
        return found

    def resolve_job(self, prefix: str) -> str:
        prefix = self._check_prefix(prefix)
        if is_uuid(prefix) and self._job_meta(prefix) is not MISSING:
            return prefix
        ended = self._scan_ids("objects", prefix, records.JOB)
        started = self._scan_ids("job_start", prefix)
        return self._unique("job", prefix, ended + started)

    def resolve_object(self, prefix: str, kind: str, what: str) -> str:
        prefix = self._check_prefix(prefix)
        if is_hash(prefix) and self.core.kind_of(prefix) in (kind, MISSING):
            return prefix
        return self._unique(what, prefix, self._scan_ids("objects", prefix, kind))

    # -- small reads -------------------------------------------------------------------------

    def task_name(self, task_hash: str | None, fallback: str | None = None) -> str:
        if not task_hash:
            return fallback or "?"
        name = self._task_names.get(task_hash)
        if name is None:
            stored = self.prov.values.get_value(task_hash)
            subtype = stored.subtype if stored is not MISSING else None
            if subtype and subtype.get("_type") == "Task":
                namespace = subtype.get("namespace")
                name = f"{namespace}.{subtype['name']}" if namespace else subtype["name"]
            else:
                name = fallback or f"task:{task_hash[:8]}"
            self._task_names[task_hash] = name
        return name

    def tags_of(self, entity_id: str) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self.prov.tags.get_tags([entity_id]).get(entity_id, [])]

    def _load_jobs(self, job_ids: list[str]) -> None:
        """Read many ended jobs at once (bulk GETs on remote stores), into the job cache."""
        wanted = [j for j in job_ids if j not in self._jobs and self.core.kind_of(j) == records.JOB]
        store = self.prov.repo.store
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            try:
                got = store.get_many(batch, expect_kind=records.JOB)
            except ObjstoreError:
                got = [MISSING] * len(batch)  # fall back to one read each (names the bad one)
            for job_id, item in zip(batch, got):
                if item is MISSING:
                    continue  # maybe still in a write buffer: _job_meta reads it singly
                try:
                    self._jobs[job_id] = records.decode(records.JOB, item[1], job_id)
                except CorruptObject:
                    continue

    def _job_meta(self, job_id: str) -> Any:
        """The ended job's dict, or its start note (end_time None), or MISSING."""
        meta = self._jobs.get(job_id)
        if meta is None:
            meta = self.prov.jobs.get_job_info(job_id)
            self._jobs[job_id] = meta
        return meta

    def _result_type(self, call_hash: str | None) -> str | None:
        if not call_hash:
            return None
        value_hash = self.core.lookup("call_result", call_hash)
        if value_hash is MISSING:
            return None
        found = self.core.lookup("value_type", value_hash)
        return None if found is MISSING else found

    def _alive_since(self, meta: dict) -> datetime | None:
        times = [_parse_time(meta.get("start_time"))]
        if meta.get("execution_id"):
            beat = self.core.lookup("exec_updated", meta["execution_id"])
            if beat is not MISSING:
                times.append(_parse_time(beat))
        times = [t for t in times if t is not None]
        return max(times) if times else None

    def _status(self, meta: dict, root_ended: bool) -> str:
        if meta.get("end_time"):
            return records.job_status(meta, self._result_type(meta.get("call_hash")))
        if root_ended:
            return UNFINISHED  # its execution is over: nothing will ever end this job
        if self.stale_after is not None:
            since = self._alive_since(meta)
            if since is None or (self.now - since).total_seconds() > self.stale_after:
                return UNFINISHED
        return RUNNING

    def _node(self, job_id: str, meta: dict, root_ended: bool) -> JobNode:
        call = self.prov.calls.get_call_node(meta["call_hash"]) if meta.get("call_hash") else MISSING
        fallback = call.get("task_name") if call is not MISSING else None
        return JobNode(
            id=job_id,
            status=self._status(meta, root_ended),
            task_hash=meta.get("task_hash") or "",
            task_name=self.task_name(meta.get("task_hash"), fallback),
            start_time=meta.get("start_time"),
            end_time=meta.get("end_time"),
            duration=_seconds(meta.get("start_time"), meta.get("end_time")),
            cached=bool(meta.get("cached")),
            call_hash=meta.get("call_hash"),
            parent_id=meta.get("parent_id"),
            execution_id=meta.get("execution_id"),
            args=self.format_args(self._arg_infos(call)) if call is not MISSING else "",
        )

    # -- values and calls --------------------------------------------------------------------

    def value_info(self, value_hash: str) -> ValueInfo | None:
        if value_hash in self._values:
            return self._values[value_hash]
        info = self._read_value(value_hash)
        self._values[value_hash] = info
        return info

    def _read_value(self, value_hash: str) -> ValueInfo | None:
        """Read at most PREVIEW_MAX_BYTES of a value: a 1 GB result must not be loaded to show it."""
        store = self.prov.repo.store
        try:
            _, length, chunks = store.open_stream(value_hash, expect_kind=records.VALUE)
        except ObjectNotFound:
            got = self.core.get_or_missing(value_hash, records.VALUE)  # write buffer, if any
            if got is MISSING:
                return None
            length, chunks = len(got[1]), iter([got[1]])
        except CorruptObject:
            return None
        buf = bytearray()
        try:
            for chunk in chunks:
                buf += chunk
                if len(buf) > PREVIEW_MAX_BYTES + 65536:
                    break
        except CorruptObject:
            return None
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        complete = len(buf) >= length
        try:
            header, data = records.decode_value(bytes(buf), value_hash)
        except CorruptObject:
            return None
        size = length - (len(buf) - len(data))
        if complete and size <= PREVIEW_MAX_BYTES:
            preview = preview_value(header["type"], header["format"], data, header.get("subtype"))
        else:
            preview = f"<{header['type']}, {size} bytes>"
        return ValueInfo(value_hash, header["type"], header["format"], size, preview, header.get("subtype"))

    def _arg_infos(self, call: dict) -> list[ArgInfo]:
        out = []
        for key, arg in call.get("args", []):
            value_hash = arg["value_hash"]
            out.append(ArgInfo(key, self.value_info(value_hash), value_hash, list(arg.get("upstream", []))))
        return out

    @staticmethod
    def format_args(args: list[ArgInfo]) -> str:
        """redun's format_arguments: positional by position, then keywords by name."""
        def shown(arg: ArgInfo) -> str:
            return trim(arg.value.preview) if arg.value else f"<missing {arg.value_hash[:8]}>"

        positional = sorted((a for a in args if a.key.isdigit()), key=lambda a: int(a.key))
        keywords = sorted((a for a in args if not a.key.isdigit()), key=lambda a: a.key)
        return ", ".join([shown(a) for a in positional] + [f"{a.key}={shown(a)}" for a in keywords])

    def call_info(self, call_hash: str) -> CallInfo:
        call = self.prov.calls.get_call_node(call_hash)
        if call is MISSING:
            raise ObjectNotFound(f"no call node {call_hash}")
        return CallInfo(
            call_hash=call_hash,
            task_name=self.task_name(call.get("task_hash"), call.get("task_name")),
            task_hash=call["task_hash"],
            args_hash=call["args_hash"],
            timestamp=call.get("timestamp"),
            args=self._arg_infos(call),
            result=self.value_info(call["value_hash"]),
            result_hash=call["value_hash"],
            children=list(call.get("children", [])),
            tags=self.tags_of(call_hash),
        )

    # -- executions --------------------------------------------------------------------------

    def _job_ids_under(self, root_id: str) -> list[str]:
        """The root and every descendant, breadth first (one index read per job)."""
        out, layer, seen = [], [root_id], {root_id}
        while layer:
            out.extend(layer)
            nxt = []
            for job_id in layer:
                for child in self.prov.jobs.job_children(job_id):
                    if child not in seen:
                        seen.add(child)
                        nxt.append(child)
            layer = nxt
        return out

    def _execution(self, execution_id: str, *, want_tree: bool) -> ExecutionTree:
        execution = self.prov.jobs.get_execution(execution_id)
        if execution is MISSING:
            raise ObjectNotFound(f"no execution {execution_id}")
        try:
            argv = json.loads(execution.get("args") or "[]")
            args = [str(a) for a in argv[1:]] if isinstance(argv, list) else [str(argv)]
        except ValueError:
            args = [str(execution.get("args"))]
        root_id = execution.get("job_id")
        root_meta = self._job_meta(root_id) if root_id else MISSING
        root_ended = root_meta is not MISSING and bool(root_meta.get("end_time"))

        job_ids = self._job_ids_under(root_id) if root_meta is not MISSING else []
        self._load_jobs(job_ids)
        nodes: dict[str, JobNode] = {}
        statuses = []
        for job_id in job_ids:
            meta = self._job_meta(job_id)
            if meta is MISSING:
                continue
            if want_tree:
                node = self._node(job_id, meta, root_ended)
                nodes[job_id] = node
                statuses.append(node.status)
            else:
                statuses.append(self._status(meta, root_ended))
        if want_tree:
            for job_id in job_ids:  # breadth-first order keeps each parent's children by start
                node = nodes.get(job_id)
                if node and node.parent_id in nodes and job_id != root_id:
                    nodes[node.parent_id].children.append(node)

        if root_meta is MISSING:
            status, end_time = FAILED, None  # redun: an execution without a root job failed
        else:
            root_status = self._status(root_meta, root_ended)
            status = DONE if root_status in (DONE, CACHED) else root_status
            end_time = root_meta.get("end_time")
        start_time = execution.get("start_time") or (root_meta.get("start_time") if root_meta is not MISSING else None)
        updated = self.core.lookup("exec_updated", execution_id)
        summary = ExecutionSummary(
            id=execution_id,
            status=status,
            args=args,
            start_time=start_time,
            end_time=end_time,
            duration=_seconds(start_time, end_time),
            updated_time=None if updated is MISSING else updated,
            job_id=root_id,
            counts=JobCounts.of(statuses),
            tags=self.tags_of(execution_id),
        )
        return ExecutionTree(summary, nodes.get(root_id) if want_tree else None)

    def executions(self, limit: int | None = 20) -> list[ExecutionSummary]:
        """The newest ``limit`` executions (all with None), newest first, with job counts."""
        ids = self.execution_ids()
        if limit is not None:
            ids = ids[: max(0, limit)]
        return [self._execution(e, want_tree=False).execution for e in ids]

    def execution_tree(self, execution_id: str) -> ExecutionTree:
        return self._execution(execution_id, want_tree=True)

    # -- details -----------------------------------------------------------------------------

    def job(self, job_id: str) -> JobDetail:
        meta = self._job_meta(job_id)
        if meta is MISSING:
            raise ObjectNotFound(f"no job {job_id}")
        root_ended = False
        if not meta.get("end_time") and meta.get("execution_id"):
            execution = self.prov.jobs.get_execution(meta["execution_id"])
            if execution is not MISSING and execution.get("job_id"):
                root = self._job_meta(execution["job_id"])
                root_ended = root is not MISSING and bool(root.get("end_time"))
        node = self._node(job_id, meta, root_ended)
        call = None
        if node.call_hash and self.prov.calls.has_call_node(node.call_hash):
            call = self.call_info(node.call_hash)
        return JobDetail(node, call, self.prov.jobs.job_children(job_id), self.tags_of(job_id))

    def value(self, value_hash: str) -> ValueDetail:
        info = self.value_info(value_hash)
        if info is None:
            raise ObjectNotFound(f"no value {value_hash}")
        return ValueDetail(
            info,
            self.prov.values.get_subvalues(value_hash),
            self.tags_of(value_hash),
        )


def open_query(prov: Provenance, **kwargs: Any) -> LogQuery:
    """refresh() first, so jobs written by other workers since the index last looked show up."""
    prov.refresh()
    return LogQuery(prov, **kwargs)
