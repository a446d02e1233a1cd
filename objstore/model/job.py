"""Jobs and Executions.

A Job becomes an object when it ends; its start is a journal-only note (``start_entries``), so a
job still running, or one whose worker died, is known to the index. An Execution becomes an
object when its root job starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from objstore.ids import ObjectId, validate_hash, validate_uuid
from objstore.model import call, value
from objstore.model.base import TASK, Edge, RecordKind, dump
from objstore.model.schema import EXECUTIONS_KEY, IndexEntry, cse_key, timed
from objstore.model.times import ts_key

JOB = "job"
EXECUTION = "exec"

DONE, CACHED, FAILED, RUNNING = "DONE", "CACHED", "FAILED", "RUNNING"


def status(job: dict[str, Any], result_type: str | None) -> str:
    """redun's derived Job.status (its db Job.calc_status)."""
    if result_type == value.ERROR_TYPE:
        return FAILED
    if not job.get("end_time"):
        return RUNNING
    if job.get("cached"):
        return CACHED
    return DONE


def job_doc(
    *,
    start_time: str,
    end_time: str | None,
    task_hash: str,
    cached: bool,
    call_hash: str | None,
    parent_id: str | None,
    execution_id: str,
    args_hash: str | None = None,
) -> dict[str, Any]:
    # args_hash is objstore's own field: it keys the CSE table without reading the CallNode.
    return {
        "start_time": start_time,
        "end_time": end_time,
        "task_hash": task_hash,
        "cached": bool(cached),
        "call_hash": call_hash,
        "parent_id": parent_id,
        "execution_id": execution_id,
        "args_hash": args_hash,
    }


class Job(RecordKind):
    name = JOB
    export_type = "Job"
    export_id_field = "id"

    def build(self, job_id: str, **fields: Any) -> tuple[bytes, list[IndexEntry]]:
        """(payload, index entries) of an ended job; fields as ``job_doc``."""
        d = job_doc(**fields)
        return dump(d), self.entries_of(job_id, d)

    def start_entries(self, job_id: str, info: dict[str, Any]) -> list[IndexEntry]:
        """The journal note of a job's start: what a running job already implies."""
        job_id = validate_uuid(job_id)
        note = {k: info.get(k) for k in ("start_time", "task_hash", "parent_id", "execution_id")}
        return [*self._child_entry(job_id, info), ("put", "job_start", job_id, dump(note).decode())]

    def _child_entry(self, job_id: str, job: dict[str, Any], ts: str | None = None) -> list[IndexEntry]:
        if not job.get("parent_id"):
            return []
        ts = ts_key(job.get("start_time")) if ts is None else ts
        return [("add", "job_children", validate_uuid(job["parent_id"]), timed(ts, job_id))]

    def entries(self, object_id: str, doc: dict[str, Any]) -> list[IndexEntry]:
        job_id = validate_uuid(object_id)
        ts = ts_key(doc.get("start_time"))  # once: parsing a timestamp is the costly part here
        out = self._child_entry(job_id, doc, ts)
        call_hash, args_hash = doc.get("call_hash"), doc.get("args_hash")
        if call_hash:
            out.append(("add", "jobs_by_call", validate_hash(call_hash), timed(ts, job_id)))
        if call_hash and args_hash and doc.get("execution_id"):
            key = cse_key(validate_uuid(doc["execution_id"]), validate_hash(doc["task_hash"]), validate_hash(args_hash))
            out.append(("add", "cse", key, timed(ts, job_id, validate_hash(call_hash))))
        return out

    def edges(self, object_id: str, doc: dict[str, Any]) -> Iterator[Edge]:
        # Child jobs are an index query (job_children), added by the caller's walk.
        yield TASK, doc["task_hash"]
        if doc.get("call_hash"):
            yield call.NAME, doc["call_hash"]

    def to_export(
        self, object_id: str, payload: bytes, *, job_children: list[str] | None = None,
        result_type: str | None = None, **context: Any,
    ) -> dict[str, Any]:
        obj = self.doc_of(object_id, payload, context)
        return {
            **self.export_header(),
            "id": object_id,
            "start_time": obj["start_time"],
            "end_time": obj["end_time"],
            "task_hash": obj["task_hash"],
            "cached": obj["cached"],
            "status": status(obj, result_type),
            "call_hash": obj["call_hash"],
            "parent_id": obj["parent_id"],
            "children": list(job_children or []),
            "execution_id": obj["execution_id"],
        }

    def from_export(self, record: dict[str, Any]) -> tuple[ObjectId, bytes]:
        object_id = validate_uuid(record["id"])
        payload = dump(
            job_doc(
                start_time=record["start_time"],
                end_time=record["end_time"],
                task_hash=validate_hash(record["task_hash"]),
                cached=bool(record["cached"]),
                call_hash=validate_hash(record["call_hash"]) if record["call_hash"] else None,
                parent_id=validate_uuid(record["parent_id"]) if record["parent_id"] else None,
                execution_id=validate_uuid(record["execution_id"]),
            )
        )
        return object_id, payload


def execution_doc(*, args: str, job_id: str | None, start_time: str | None = None) -> dict[str, Any]:
    # args is redun's JSON *text* of argv; start_time (objstore's own) orders `log`.
    return {"args": args, "job_id": job_id, "start_time": start_time}


class Execution(RecordKind):
    name = EXECUTION
    export_type = "Execution"
    export_id_field = "id"

    def build(self, execution_id: str, **fields: Any) -> tuple[bytes, list[IndexEntry]]:
        d = execution_doc(**fields)
        return dump(d), self.entries_of(execution_id, d)

    def entries(self, object_id: str, doc: dict[str, Any]) -> list[IndexEntry]:
        ts = ts_key(doc.get("start_time"))
        return [("add", "executions", EXECUTIONS_KEY, timed(ts, validate_uuid(object_id)))]

    def edges(self, object_id: str, doc: dict[str, Any]) -> Iterator[Edge]:
        if doc.get("job_id"):
            yield JOB, doc["job_id"]

    def to_export(self, object_id: str, payload: bytes, **context: Any) -> dict[str, Any]:
        obj = self.doc_of(object_id, payload, context)
        return {**self.export_header(), "id": object_id, "args": obj["args"], "job_id": obj["job_id"]}

    def from_export(self, record: dict[str, Any]) -> tuple[ObjectId, bytes]:
        object_id = validate_uuid(record["id"])
        job_id = record.get("job_id")
        # redun's export has no start time; an importer that knows the root job's may add it,
        # so `log` orders the execution where it ran rather than as the oldest of all.
        start = record.get("start_time")
        doc = execution_doc(args=record["args"], job_id=validate_uuid(job_id) if job_id else None,
                            start_time=start if isinstance(start, str) and start else None)
        return object_id, dump(doc)


JOB_KIND = Job()
EXECUTION_KIND = Execution()
