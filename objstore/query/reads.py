"""What every query reads: tasks, values, jobs and call nodes, cached for one query's lifetime.

Reads over a Provenance (its Repository and LMDB index). Objects are immutable, so what a
``Reads`` has decoded stays valid; it lives as long as one command (or one repl session, which
makes a new one on ``refresh()``). Statuses are redun's (DONE, CACHED, FAILED, RUNNING) plus
UNFINISHED: a job known only from the start note in the journal whose worker has evidently gone,
because its execution's root job has ended, or because nothing was heard from it or its
execution for ``stale_after`` seconds.

No value is ever unpickled here for real: previews and error tracebacks come from
objstore.query.preview, which turns every class a pickle names into an inert stub.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from objstore import model
from objstore.backend import MISSING
from objstore.errors import CorruptObject, InvalidId, ObjectNotFound
from objstore.missing import Missing
from objstore.model import job as job_kind
from objstore.model import schema
from objstore.model import value as value_kind
from objstore.model.times import parse_timestamp
from objstore.query.bulk import BATCH, Cached
from objstore.query.preview import PREVIEW_MAX_BYTES, error_details, preview_value, trim
from objstore.query.results import RUNNING, UNFINISHED, ArgInfo, CallRef, JobNode, TaskInfo, ValueInfo, ValueUse

log = logging.getLogger("objstore.query")


def seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = parse_timestamp(start), parse_timestamp(end)
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())


def format_args(args: list[ArgInfo]) -> str:
    """redun's format_arguments: positional by position, then keywords by name."""

    def shown(arg: ArgInfo) -> str:
        return trim(arg.value.preview) if arg.value else f"<missing {arg.value_hash[:8]}>"

    positional = sorted((a for a in args if a.key.isdigit()), key=lambda a: int(a.key))
    keywords = sorted((a for a in args if not a.key.isdigit()), key=lambda a: a.key)
    return ", ".join([shown(a) for a in positional] + [f"{a.key}={shown(a)}" for a in keywords])


class Reads(Cached):
    """The reads every query shares: tasks, jobs and their statuses, values, call nodes."""

    def _task_subtype(self, task_hash: str) -> dict | None:
        head = self._docs.get(task_hash)  # read in bulk already (a job tree prefetches its tasks)
        if head is not None:
            subtype = head.get("subtype")
        else:
            stored = self.prov.values.get_value(task_hash)
            subtype = stored.subtype if stored is not MISSING else None
        return subtype if subtype and subtype.get("_type") == "Task" else None

    def task_name(self, task_hash: str | None, fallback: str | None = None) -> str:
        if not task_hash:
            return fallback or "?"
        name = self._task_names.get(task_hash)
        if name is None:
            subtype = self._task_subtype(task_hash)
            if subtype:
                namespace = subtype.get("namespace")
                name = f"{namespace}.{subtype['name']}" if namespace else subtype["name"]
            else:
                name = fallback or f"task:{task_hash[:8]}"
            self._task_names[task_hash] = name
        return name

    def task_info(self, task_hash: str, *, fallback_name: str | None = None, first_job: bool = False) -> TaskInfo:
        """The task's name and source (from its Task value), and optionally its first job."""
        subtype = self._task_subtype(task_hash)
        if subtype:
            name, namespace, source = subtype.get("name", "?"), subtype.get("namespace") or "", subtype.get("source")
        else:
            fullname = fallback_name or f"task:{task_hash[:8]}"
            namespace, _, name = fullname.rpartition(".")
            source = None
        first = None
        if first_job:
            for entry in self.core.lookup_all("calls_by_task", task_hash):
                jobs = self.jobs_of_call(schema.timed_id(entry))
                if jobs:
                    meta = self.job_meta(jobs[0])
                    first = (jobs[0], meta.get("start_time") if meta is not MISSING else None)
                    break
        return TaskInfo(task_hash, name, namespace, source, first, self.tags_of(task_hash))

    # -- tags --------------------------------------------------------------------------------

    def job_meta(self, job_id: str) -> Any:
        """The ended job's dict, or its start note (end_time None), or MISSING. A job whose
        object is damaged falls back to its start note, and is noted as damaged."""
        meta = self._jobs.get(job_id)
        if meta is None:
            meta = self.prov.jobs.get_job_info(job_id)
            if meta is MISSING and self.core.kind_of(job_id) == model.JOB:
                self.damaged(job_id, "job")
                note = self.core.lookup("job_start", job_id)
                try:
                    start = json.loads(note) if note is not MISSING else None
                except ValueError:
                    start = None
                if isinstance(start, dict):
                    meta = {**start, "end_time": None, "cached": False, "call_hash": None}
            self._jobs[job_id] = meta
        return meta

    def result_type(self, call_hash: str | None) -> str | None:
        if not call_hash:
            return None
        value_hash = self.core.lookup("call_result", call_hash)
        if value_hash is MISSING:
            return None
        found = self.core.lookup("value_type", value_hash)
        return None if found is MISSING else found

    def _alive_since(self, meta: dict) -> datetime | None:
        times = [parse_timestamp(meta.get("start_time"))]
        if meta.get("execution_id"):
            beat = self.core.lookup("exec_updated", meta["execution_id"])
            if beat is not MISSING:
                times.append(parse_timestamp(beat))
        known = [t for t in times if t is not None]
        return max(known) if known else None

    def status(self, meta: dict, root_ended: bool) -> str:
        if meta.get("end_time"):
            call = self._docs.get(meta.get("call_hash") or "")
            if call is not None:  # already read: its result's type is one lookup away
                found = self._types.get(call["value_hash"])
                if found is None:
                    found = self._types[call["value_hash"]] = self.core.lookup("value_type", call["value_hash"])
                return job_kind.status(meta, None if isinstance(found, Missing) else found)
            return job_kind.status(meta, self.result_type(meta.get("call_hash")))
        if root_ended:
            return UNFINISHED  # its execution is over: nothing will ever end this job
        if self.stale_after is not None:
            since = self._alive_since(meta)
            if since is None or (self.now - since).total_seconds() > self.stale_after:
                return UNFINISHED
        return RUNNING

    def root_ended(self, meta: dict) -> bool:
        """Whether the execution of an unended job is over (its root job ended)."""
        if meta.get("end_time") or not meta.get("execution_id"):
            return False
        execution = self.prov.jobs.get_execution(meta["execution_id"])
        if execution is MISSING or not execution.get("job_id"):
            return False
        root = self.job_meta(execution["job_id"])
        return root is not MISSING and bool(root.get("end_time"))

    def call_doc(self, call_hash: str) -> Any:
        """A call node's dict, or MISSING (a damaged one is noted)."""
        found = self._docs.get(call_hash)
        if found is not None:
            return found
        return self.docs([call_hash], model.CALL).get(call_hash, MISSING)

    def node(self, job_id: str, meta: dict, root_ended: bool) -> JobNode:
        call: Any = self.call_doc(meta["call_hash"]) if meta.get("call_hash") else MISSING
        fallback = call.get("task_name") if call is not MISSING else None
        return JobNode(
            id=job_id,
            status=self.status(meta, root_ended),
            task_hash=meta.get("task_hash") or "",
            task_name=self.task_name(meta.get("task_hash"), fallback),
            start_time=meta.get("start_time"),
            end_time=meta.get("end_time"),
            duration=seconds_between(meta.get("start_time"), meta.get("end_time")),
            cached=bool(meta.get("cached")),
            call_hash=meta.get("call_hash"),
            parent_id=meta.get("parent_id"),
            execution_id=meta.get("execution_id"),
            args=self.args_text(call) if call is not MISSING else "",
            tags=self.tags_of(job_id),
        )

    def args_text(self, call: dict) -> str:
        """A call's arguments as a job line shows them (format_args), without the ArgInfo
        objects a detail needs: a job tree prints ten thousand of these."""
        pairs = call.get("args", [])
        if all(key == str(i) for i, (key, _) in enumerate(pairs)):  # positional, in order: the usual
            parts = []
            for _, arg in pairs:
                info = self.value_info(arg["value_hash"])
                parts.append(trim(info.preview) if info else f"<missing {arg['value_hash'][:8]}>")
            return ", ".join(parts)
        return format_args(self.arg_infos(call))

    def job_node(self, job_id: str) -> JobNode | None:
        meta = self.job_meta(job_id)
        if meta is MISSING:
            return None
        return self.node(job_id, meta, self.root_ended(meta))

    def call_parents(self, call_hash: str) -> list[str]:
        """The call nodes that called this one: the calls of its jobs' parent jobs (redun's
        call_edge, read backwards through the jobs that ran it)."""
        jobs = self.jobs_of_call(call_hash)
        self.load_jobs(jobs)
        found: list[str] = []
        for job_id in jobs:
            meta: Any = self.job_meta(job_id)
            parent: Any = self.job_meta(meta["parent_id"]) if meta is not MISSING and meta.get("parent_id") else MISSING
            if parent is not MISSING and parent.get("call_hash") and parent["call_hash"] not in found:
                found.append(parent["call_hash"])
        return found

    def jobs_of_call(self, call_hash: str) -> list[str]:
        """The ended jobs of a call node, oldest first."""
        return [schema.timed_id(e) for e in self.core.lookup_all("jobs_by_call", call_hash)]

    # -- values and calls --------------------------------------------------------------------

    def value_info(self, value_hash: str) -> ValueInfo | None:
        if value_hash in self._values:
            return self._values[value_hash]
        info = self._read_value(value_hash)
        if info is None and self.core.kind_of(value_hash) == model.VALUE:
            self.damaged(value_hash, "value")
        self._values[value_hash] = info
        return info

    def _read_value(self, value_hash: str) -> ValueInfo | None:
        """Read at most PREVIEW_MAX_BYTES of a value: a 1 GB result must not be loaded to show it."""
        raw = self._raw.pop(value_hash, None)
        head = self._docs.get(value_hash) if raw is not None else None
        if head is not None and raw is not None:  # read in bulk: the header is decoded already
            return self._value_from(value_hash, head, raw[raw.index(b"\0") + 1 :], complete=True)
        hit = (model.VALUE, raw) if raw is not None else self.core.cached(value_hash)
        try:
            if hit is not None and hit[0] == model.VALUE:
                length, chunks = len(hit[1]), iter((hit[1],))
            else:
                _, length, chunks = self.prov.repo.open_stream(value_hash, expect_kind=model.VALUE)
        except (ObjectNotFound, CorruptObject, InvalidId):
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
        return self._value_from(value_hash, header, data, complete=complete, size=length - (len(buf) - len(data)))

    def _value_from(
        self, value_hash: str, header: dict, data: bytes, *, complete: bool, size: int | None = None
    ) -> ValueInfo:
        size = len(data) if size is None else size
        error = traceback = None
        if complete and size <= PREVIEW_MAX_BYTES:
            preview = preview_value(header["type"], header["format"], data, header.get("subtype"), value_hash)
            if header["type"] == value_kind.ERROR_TYPE:
                found = error_details(header["format"], data)
                if found:
                    error, traceback = found
        else:
            preview = f"<{header['type']}, {size} bytes>"
        return ValueInfo(
            value_hash, header["type"], header["format"], size, preview, header.get("subtype"), error, traceback,
            self.tags_of(value_hash),
        )

    def arg_infos(self, call: dict, *, named: bool = False) -> list[ArgInfo]:
        out = []
        for key, arg in call.get("args", []):
            value_hash = arg["value_hash"]
            upstream = list(arg.get("upstream", []))
            refs = [self.call_ref(u) for u in upstream] if named else []
            out.append(ArgInfo(key, self.value_info(value_hash), value_hash, upstream, refs))
        return out

    def call_ref(self, call_hash: str, *, with_args: bool = False) -> CallRef:
        call = self.call_doc(call_hash)
        if call is MISSING:
            return CallRef(call_hash, "?")
        name = self.task_name(call.get("task_hash"), call.get("task_name"))
        return CallRef(call_hash, name, format_args(self.arg_infos(call)) if with_args else "", self.tags_of(call_hash))

    def calls_returning(self, value_hash: str) -> list[str]:
        """Call nodes whose result is the value, newest first."""
        return [schema.timed_id(e) for e in reversed(self.core.lookup_all("calls_by_result", value_hash))]

    def calls_taking(self, value_hash: str) -> list[str]:
        """Call nodes with the value as an argument, newest first."""
        return [schema.timed_id(e) for e in reversed(self.core.lookup_all("calls_by_arg", value_hash))]

    def value_parents(self, value_hash: str) -> list[str]:
        return self.core.lookup_all("value_parents", value_hash)

    def uses(self, value_hash: str, *, produced: bool) -> list[ValueUse]:
        """The calls that returned (``produced``) or took the value, itself or inside a container
        value, each with its newest job; newest job first (redun's find_file order)."""
        found: list[ValueUse] = []
        seen: set[str] = set()
        for holder in [value_hash, *self.value_parents(value_hash)]:
            calls = self.calls_returning(holder) if produced else self.calls_taking(holder)
            for call_hash in calls:
                if call_hash in seen:
                    continue
                seen.add(call_hash)
                jobs = self.jobs_of_call(call_hash)
                metas = [(j, self.job_meta(j)) for j in jobs]
                metas = [(j, m) for j, m in metas if m is not MISSING]
                key = "end_time" if produced else "start_time"
                job_id, meta = max(metas, key=lambda jm: jm[1].get(key) or "") if metas else (None, None)
                found.append(ValueUse(
                    self.call_ref(call_hash, with_args=True), holder, job_id,
                    meta.get(key) if meta else None, meta.get("execution_id") if meta else None,
                ))  # fmt: skip
        found.sort(key=lambda use: parse_timestamp(use.job_time) or datetime.min.replace(tzinfo=UTC), reverse=True)
        return found


__all__ = ["Reads", "format_args", "seconds_between", "BATCH", "log"]
