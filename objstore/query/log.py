"""The query layer behind `objstore log`: executions, job trees and record details.

Reads over a Provenance (its Repository and LMDB index), returning the plain dataclasses of
objstore.query.results. Walking an execution is an index walk (job_children) plus one bulk read
of its jobs; tasks are read once per distinct task.

Statuses are redun's (DONE, CACHED, FAILED, RUNNING) plus UNFINISHED: a job known only from
the start note in the journal whose worker has evidently gone, because its execution's root job
has ended, or because nothing was heard from it or its execution for ``stale_after`` seconds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from objstore import model
from objstore.backend import MISSING, Provenance
from objstore.errors import CorruptObject, ObjectNotFound
from objstore.model import job as job_kind
from objstore.model import value as value_kind
from objstore.model.times import parse_timestamp
from objstore.query.preview import PREVIEW_MAX_BYTES, preview_value, trim
from objstore.query.resolve import Resolver
from objstore.query.results import (
    CACHED,
    DONE,
    FAILED,
    RUNNING,
    UNFINISHED,
    ArgInfo,
    CallInfo,
    ExecutionSummary,
    ExecutionTree,
    JobCounts,
    JobDetail,
    JobNode,
    ValueDetail,
    ValueInfo,
)

_BATCH = 256


def _parse_time(text: str | None) -> datetime | None:
    return parse_timestamp(text)


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
        self.now = now or datetime.now(UTC)
        self._task_names: dict[str, str] = {}
        self._jobs: dict[str, Any] = {}
        self._values: dict[str, Any] = {}
        self.resolver = Resolver(prov)
        # (id, why) of every record a query needed and could not read: `log` lists the rest and
        # names these, rather than failing as a whole for one lost object.
        self.unreadable: list[tuple[str, str]] = []

    # -- ids (one resolver for every command) --------------------------------------------------

    def execution_ids(self) -> list[str]:
        """Every execution id, newest first (by the start recorded in the execution)."""
        return self.prov.jobs.list_executions()

    def resolve_execution(self, prefix: str) -> str:
        return self.resolver.execution(prefix)

    def resolve_any(self, prefix: str) -> tuple[str, str]:
        """(kind, id) for `log ID`: an execution, else a unique job, call node or value."""
        return self.resolver.any(prefix)

    def resolve_job(self, prefix: str) -> str:
        return self.resolver.job(prefix)

    def resolve_object(self, prefix: str, kind: str, what: str) -> str:
        return self.resolver.object(prefix, kind, what)[1]

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
        """Read many ended jobs at once (one bulk read: a packed flush's jobs come back from a
        ranged read or two), into the job cache."""
        wanted = [j for j in job_ids if j not in self._jobs and self.core.kind_of(j) == model.JOB]
        for start in range(0, len(wanted), _BATCH):
            self._jobs.update(self.core.get_many_meta(wanted[start : start + _BATCH], model.JOB))

    def _prefetch_calls(self, job_ids: list[str]) -> None:
        """The call nodes of these jobs, then their tasks and argument values, in bulk."""
        metas = [self._jobs.get(j) for j in job_ids]
        calls = [m["call_hash"] for m in metas if isinstance(m, dict) and m.get("call_hash")]
        for start in range(0, len(calls), _BATCH):
            self.core.prefetch(calls[start : start + _BATCH], model.CALL)
        wanted = [m["task_hash"] for m in metas if isinstance(m, dict) and m.get("task_hash")]
        for call_hash in calls:
            call = self.core.cached(call_hash)
            if call is not None:
                doc = model.decode(model.CALL, call[1], call_hash)
                wanted.extend(arg["value_hash"] for _, arg in doc.get("args", []))
        for start in range(0, len(wanted), _BATCH):
            self.core.prefetch(wanted[start : start + _BATCH], model.VALUE, small_only=True)

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
        known = [t for t in times if t is not None]
        return max(known) if known else None

    def _status(self, meta: dict, root_ended: bool) -> str:
        if meta.get("end_time"):
            return job_kind.status(meta, self._result_type(meta.get("call_hash")))
        if root_ended:
            return UNFINISHED  # its execution is over: nothing will ever end this job
        if self.stale_after is not None:
            since = self._alive_since(meta)
            if since is None or (self.now - since).total_seconds() > self.stale_after:
                return UNFINISHED
        return RUNNING

    def _node(self, job_id: str, meta: dict, root_ended: bool) -> JobNode:
        call: Any = self.prov.calls.get_call_node(meta["call_hash"]) if meta.get("call_hash") else MISSING
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
        hit = self.core.cached(value_hash)
        try:
            if hit is not None and hit[0] == model.VALUE:
                length, chunks = len(hit[1]), iter((hit[1],))
            else:
                _, length, chunks = self.prov.repo.open_stream(value_hash, expect_kind=model.VALUE)
        except (ObjectNotFound, CorruptObject):
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
            header, data = value_kind.split(bytes(buf), value_hash)
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

    def why_unreadable(self, object_id: str, kind: str) -> str:
        """Why an object of ``kind`` cannot be read: its pack is gone, it is damaged, ..."""
        try:
            self.core.get(object_id, kind)
        except (ObjectNotFound, CorruptObject) as exc:
            return str(exc)
        return f"no {kind} {object_id}"

    def _execution(self, execution_id: str, *, want_tree: bool) -> ExecutionTree:
        execution = self.prov.jobs.get_execution(execution_id)
        if execution is MISSING:
            why = self.why_unreadable(execution_id, model.EXECUTION)
            raise ObjectNotFound(f"execution {execution_id} cannot be read: {why}")
        try:
            argv = json.loads(execution.get("args") or "[]")
            args = [str(a) for a in argv[1:]] if isinstance(argv, list) else [str(argv)]
        except ValueError:
            args = [str(execution.get("args"))]
        root_id = execution.get("job_id")
        root_meta: Any = self._job_meta(root_id) if root_id else MISSING
        root_ended = root_meta is not MISSING and bool(root_meta.get("end_time"))

        job_ids = self._job_ids_under(root_id) if root_meta is not MISSING else []
        self._load_jobs(job_ids)
        if want_tree:
            self._prefetch_calls(job_ids)
        nodes: dict[str, JobNode] = {}
        statuses = []
        for job_id in job_ids:
            meta = self._job_meta(job_id)
            if meta is MISSING:
                if want_tree:
                    self.unreadable.append((job_id, f"job {job_id}: {self.why_unreadable(job_id, model.JOB)}"))
                continue
            if want_tree:
                new = self._node(job_id, meta, root_ended)
                nodes[job_id] = new
                statuses.append(new.status)
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
        out = []
        for execution_id in ids:
            try:
                out.append(self._execution(execution_id, want_tree=False).execution)
            except ObjectNotFound as exc:  # one lost object must not hide every other execution
                self.unreadable.append((execution_id, str(exc)))
        return out

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
