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
    # A redun.ErrorValue: the raised error's repr and its traceback lines, as redun records them.
    error: str | None = None
    traceback: list[str] | None = None
    tags: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def path(self) -> str | None:
        """The path of a File value."""
        subtype = self.subtype or {}
        return subtype.get("path") if subtype.get("_type") == "File" else None

    @property
    def is_task(self) -> bool:
        return bool(self.subtype and self.subtype.get("_type") == "Task")


@dataclass(frozen=True)
class CallRef:
    """A call node named by its task (what a line of `log` shows of one)."""

    call_hash: str
    task_name: str
    args: str = ""  # formatted argument previews
    tags: list[tuple[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ArgInfo:
    key: str  # a keyword, or the position as digits (redun's export key)
    value: ValueInfo | None  # None when the value object is absent
    value_hash: str
    upstream: list[str] = field(default_factory=list)  # the call nodes that computed the value
    upstream_calls: list[CallRef] = field(default_factory=list)  # the same, named (details only)


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
    tags: list[tuple[str, Any]] = field(default_factory=list)

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
    counts: JobCounts | None  # None in listings (counting means reading every job)
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
    child_calls: list[CallRef] = field(default_factory=list)
    parents: list[CallRef] = field(default_factory=list)  # the calls that called this one
    jobs: list[str] = field(default_factory=list)  # ended jobs of this call node, oldest first
    task: TaskInfo | None = None
    dataflow: list[str] = field(default_factory=list)  # redun's "Upstream dataflow" lines

    @property
    def raised(self) -> bool:
        return self.result is not None and self.result.type == ERROR_TYPE

    @property
    def ref(self) -> CallRef:
        return CallRef(self.call_hash, self.task_name)


@dataclass(frozen=True)
class TaskInfo:
    task_hash: str
    name: str
    namespace: str
    source: str | None  # None when the task's value is absent
    first_job: tuple[str, str | None] | None = None  # (job id, start time) of its first job
    tags: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def fullname(self) -> str:
        return f"{self.namespace}.{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class JobDetail:
    job: JobNode
    call: CallInfo | None
    child_ids: list[str]
    tags: list[tuple[str, Any]] = field(default_factory=list)
    stack: list[tuple[str, str]] = field(default_factory=list)  # (job id, task name), this job first
    task: TaskInfo | None = None
    problems: list[str] = field(default_factory=list)  # objects behind the job that could not be read


@dataclass(frozen=True)
class ValueUse:
    """A call node that returned (or took) a value, directly or inside a container value."""

    call: CallRef
    value_hash: str  # the value the call returned / took (the container, for a subvalue)
    job_id: str | None  # the most recent job of that call (ended), if any
    job_time: str | None  # its end (producers) or start (consumers)
    execution_id: str | None


@dataclass(frozen=True)
class ValueDetail:
    value: ValueInfo
    subvalues: list[str]
    tags: list[tuple[str, Any]] = field(default_factory=list)
    produced_by: list[ValueUse] = field(default_factory=list)
    consumed_by: list[ValueUse] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)  # container values holding this one
    dataflow: list[str] = field(default_factory=list)  # redun's "Upstream dataflow" lines


@dataclass(frozen=True)
class FileDetail:
    """What `log <path>` answers: the File values recorded at a path, the call nodes that produced
    and consumed them (newest first), and the job redun would show: the newest producer's, else
    the newest consumer's."""

    path: str
    values: list[ValueInfo]
    produced_by: list[ValueUse]
    consumed_by: list[ValueUse]
    job: JobDetail | None
    verb: str  # "Produced", "Consumed" or ""


@dataclass(frozen=True)
class TagInfo:
    tag_hash: str
    entity_type: str
    entity_id: str
    key: str
    value: Any
    parents: list[str]
    current: bool


@dataclass(frozen=True)
class TagCount:
    key: str
    value: Any  # MISSING-free: None with ``by_value`` False means "any value"
    counts: dict[str, int]  # entity type -> how many current tags


_RESULTS = (
    ExecutionSummary, ExecutionTree, JobNode, JobDetail, CallInfo, ValueDetail, ValueInfo, ArgInfo, CallRef,
    TaskInfo, ValueUse, FileDetail, TagInfo, TagCount,
)  # fmt: skip


def to_jsonable(obj: Any) -> Any:
    """Any result above as plain JSON data (tuples become lists, counts get their total)."""
    if isinstance(obj, JobCounts):
        return {**asdict(obj), "total": obj.total}
    if isinstance(obj, _RESULTS):
        out = {k: to_jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
        out["_type"] = type(obj).__name__
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)
