"""What queries return: plain dataclasses the CLI prints as text or JSON. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from objstore.model.value import ERROR_TYPE

DONE, CACHED, FAILED, RUNNING, UNFINISHED = "DONE", "CACHED", "FAILED", "RUNNING", "UNFINISHED"
STATUSES = (DONE, CACHED, FAILED, RUNNING, UNFINISHED)


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
