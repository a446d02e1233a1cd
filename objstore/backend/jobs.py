"""Executions and jobs.

An Execution becomes an object when its root job starts (redun keeps it pending until then). A
Job becomes an object when it ends; at its start only a journal note is written, so `log` can
still show a job that is running or whose worker died.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from objstore import model
from objstore.backend.core import MISSING, Core
from objstore.ids import validate_hash, validate_uuid
from objstore.model import job as job_kind
from objstore.model import schema
from objstore.model.times import format_timestamp


def _now() -> datetime:
    return datetime.now(UTC)


class Jobs:
    def __init__(self, core: Core):
        self.core = core
        self._pending_executions: dict[str, str] = {}  # execution id -> argv as JSON text
        self._started: dict[str, dict] = {}  # job id -> start info, for jobs started here

    # -- executions --------------------------------------------------------------------------

    def record_execution(self, execution_id: str, args: list[str]) -> None:
        self._pending_executions[validate_uuid(execution_id)] = json.dumps(args)

    def record_updated_time(self, execution_id: str, now: datetime | None = None) -> None:
        stamp = format_timestamp(now or _now())
        self.core.note([("put", "exec_updated", validate_uuid(execution_id), stamp)])

    def get_execution(self, execution_id: str) -> Any:
        return self.core.get_meta(execution_id, model.EXECUTION)

    def list_executions(self) -> list[str]:
        """Execution ids, newest first."""
        entries = self.core.lookup_all("executions", schema.EXECUTIONS_KEY)
        return [schema.timed_id(entry) for entry in reversed(entries)]

    # -- jobs --------------------------------------------------------------------------------

    def job_started(
        self,
        job_id: str,
        *,
        task_hash: str,
        execution_id: str,
        parent_id: str | None,
        now: datetime | None = None,
    ) -> dict:
        start = format_timestamp(now or _now())
        info = {
            "start_time": start,
            "task_hash": validate_hash(task_hash),
            "parent_id": validate_uuid(parent_id) if parent_id else None,
            "execution_id": validate_uuid(execution_id),
        }
        job_id = validate_uuid(job_id)
        if parent_id is None:
            args = self._pending_executions.pop(execution_id, None)
            if args is not None and not self.core.has(execution_id):
                payload, entries = job_kind.EXECUTION_KIND.build(execution_id, args=args, job_id=job_id, start_time=start)
                self.core.add(model.EXECUTION, execution_id, payload, entries)
        self._started[job_id] = info
        self.core.note(job_kind.JOB_KIND.start_entries(job_id, info))
        return info

    def job_ended(
        self,
        job_id: str,
        *,
        task_hash: str,
        execution_id: str,
        parent_id: str | None,
        cached: bool,
        call_hash: str | None,
        args_hash: str | None,
        now: datetime | None = None,
    ) -> None:
        """Write the job object. A job never started is created with start == end (as redun)."""
        job_id = validate_uuid(job_id)
        if self.core.has(job_id):
            return  # already ended: objects are immutable
        now = now or _now()
        info = self._started.pop(job_id, None) or self._start_note(job_id)
        if info is None:
            info = self.job_started(
                job_id, task_hash=task_hash, execution_id=execution_id, parent_id=parent_id, now=now
            )
            self._started.pop(job_id, None)
        if call_hash and not args_hash:
            # redun's CSE query takes args_hash from the job's CallNode (a join), not from the
            # job; a caller that never set job.args_hash (anything but the scheduler) must
            # still get the CSE hit sqlite gives it, so the call node supplies it.
            call = self.core.get_meta(validate_hash(call_hash), model.CALL)
            if call is not MISSING:
                args_hash = call.get("args_hash")
        payload, entries = job_kind.JOB_KIND.build(
            job_id,
            start_time=info["start_time"],
            end_time=format_timestamp(now),
            task_hash=info["task_hash"],
            cached=cached,
            call_hash=validate_hash(call_hash) if call_hash else None,
            parent_id=info["parent_id"],
            execution_id=info["execution_id"],
            args_hash=validate_hash(args_hash) if args_hash else None,
        )
        self.core.add(model.JOB, job_id, payload, entries)

    def _start_note(self, job_id: str) -> dict | None:
        note = self.core.lookup("job_start", job_id)
        if note is MISSING:
            return None
        try:
            return json.loads(note)
        except ValueError:
            return None

    def get_job_info(self, job_id: str) -> Any:
        """The job as a dict (ended: the object; running: the start note), or MISSING."""
        if self.core.kind_of(job_id) == model.JOB:
            return self.core.get_meta(job_id, model.JOB)
        info = self._started.get(job_id) or self._start_note(job_id)
        if info is None:
            got = self.core.get_meta(job_id, model.JOB)  # maybe not indexed yet here
            return got
        return {**info, "end_time": None, "cached": False, "call_hash": None, "args_hash": None}

    def get_job(self, job_id: str) -> dict | None:
        """redun's get_job: {"job_id", "parent_id", "execution_id"} or None."""
        info = self.get_job_info(job_id)
        if info is MISSING:
            return None
        return {"job_id": job_id, "parent_id": info.get("parent_id"), "execution_id": info.get("execution_id")}

    def job_children(self, job_id: str) -> list[str]:
        """Child job ids ordered by start time."""
        return [schema.timed_id(entry) for entry in self.core.lookup_all("job_children", job_id)]

    def is_running_here(self, job_id: str) -> bool:
        return job_id in self._started
