"""Read-only objects for walking a repository's call graph: what `objstore repl` hands out.

    from objstore.query import open_graph
    g = open_graph("s3://bucket/repo")            # or a path, a Repository, a Provenance
    e = g.query("-")                              # the newest execution (any id prefix, ~N, a path)
    e.job.call_node.arguments[0].upstream         # the call nodes that computed an argument
    job = e.jobs[3]; job.task.source; job.parent; job.children; job.tags
    call = job.call_node; call.value.preview; call.parents; call.children; call.jobs
    f = g.query("out/result.csv"); f.produced_by; f.consumed_by
    call.value.value                              # the ONE place a stored value is unpickled

Every attribute is read on first use (and kept); nothing here writes. ``.value`` of a Value
deserializes it for real, running whatever code its pickle names: it is the explicit step a
user takes on a value they trust. Everything else (``preview``, reprs, `log`) uses the safe
previews of objstore.query.preview.
"""

from __future__ import annotations

import json
import os
import pickle
from functools import cached_property
from typing import Any

from objstore import model
from objstore.backend import MISSING, Provenance
from objstore.errors import ObjectNotFound
from objstore.query.files import file_detail, path_spellings
from objstore.query.log import LogQuery
from objstore.query.resolve import looks_like_id
from objstore.query.results import TaskInfo, ValueInfo


class Graph:
    """One repository, navigable. ``refresh()`` picks up what other writers flushed since."""

    def __init__(self, prov: Provenance, *, cwd: str | None = None):
        self.prov = prov
        self.cwd = cwd or os.getcwd()
        self.q = LogQuery(prov)

    def refresh(self) -> Graph:
        self.prov.refresh()
        self.q = LogQuery(self.prov)
        return self

    def executions(self, limit: int | None = 20) -> list[ExecutionView]:
        """The newest executions, newest first."""
        return [ExecutionView(self, e) for e in self.q.execution_ids()[: limit if limit else None]]

    def query(self, target: str) -> Any:
        """What an id (or unique prefix, ``-``, ``~N``) or a recorded File path names."""
        if not isinstance(target, str):
            raise TypeError(f"query() takes an id prefix or a path, not {type(target).__name__}")
        from_path = file_detail(self.q, path_spellings(target, self.cwd))
        if from_path is not None:
            return FileView(self, from_path.path, [v.value_hash for v in from_path.values])
        if not looks_like_id(target):
            raise ObjectNotFound(f"no File was recorded at {target!r}, and it is not an id")
        kind, record_id = self.q.resolve_any(target)
        return self.view(kind, record_id)

    def view(self, kind: str, record_id: str) -> Any:
        if kind == model.EXECUTION:
            return ExecutionView(self, record_id)
        if kind == model.JOB:
            return JobView(self, record_id)
        if kind == model.CALL:
            return CallNodeView(self, record_id)
        info = self.q.value_info(record_id)
        if info is not None and info.is_task:
            return TaskView(self, record_id)
        return ValueView(self, record_id)

    def __repr__(self) -> str:
        return f"Graph({self.prov.repo.url!r})"


class View:
    """A record seen through a Graph: immutable, attributes read on demand."""

    kind = "record"

    def __init__(self, graph: Graph, record_id: str):
        self.graph = graph
        self.id = record_id

    @property
    def q(self) -> LogQuery:
        return self.graph.q

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, View) and other.id == self.id

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.id))

    @property
    def tags(self) -> list[tuple[str, Any]]:
        return self.q.tags_of(self.id)


class ExecutionView(View):
    kind = "Execution"

    @cached_property
    def _summary(self) -> Any:
        return self.q.summary(self.id)

    @property
    def status(self) -> str:
        return self._summary.status

    @property
    def args(self) -> list[str]:
        return self._summary.args

    @property
    def start_time(self) -> str | None:
        return self._summary.start_time

    @property
    def job(self) -> JobView | None:
        """The root job."""
        return JobView(self.graph, self._summary.job_id) if self._summary.job_id else None

    @cached_property
    def jobs(self) -> list[JobView]:
        """Every job of the execution, breadth first from the root."""
        return [JobView(self.graph, j) for j in self.q.execution_jobs(self.id)]

    def __repr__(self) -> str:
        return f"Execution(id={self.id[:8]!r}, status={self.status!r}, args={' '.join(self.args)!r})"


class JobView(View):
    kind = "Job"

    @cached_property
    def _node(self) -> Any:
        node = self.q.job_node(self.id)
        if node is None:
            raise ObjectNotFound(f"no job {self.id}")
        return node

    @property
    def status(self) -> str:
        return self._node.status

    @property
    def start_time(self) -> str | None:
        return self._node.start_time

    @property
    def end_time(self) -> str | None:
        return self._node.end_time

    @property
    def duration(self) -> float | None:
        return self._node.duration

    @property
    def cached(self) -> bool:
        return self._node.cached

    @property
    def execution(self) -> ExecutionView | None:
        return ExecutionView(self.graph, self._node.execution_id) if self._node.execution_id else None

    @property
    def call_node(self) -> CallNodeView | None:
        """None while the job runs (or if its worker died)."""
        return CallNodeView(self.graph, self._node.call_hash) if self._node.call_hash else None

    @property
    def parent(self) -> JobView | None:
        return JobView(self.graph, self._node.parent_id) if self._node.parent_id else None

    @property
    def children(self) -> list[JobView]:
        return [JobView(self.graph, j) for j in self.q.prov.jobs.job_children(self.id)]

    @property
    def task(self) -> TaskView:
        return TaskView(self.graph, self._node.task_hash, fallback=self._node.task_name)

    def __repr__(self) -> str:
        return f"Job(id={self.id[:8]!r}, status={self.status!r}, task={self._node.task_name}({self._node.args}))"


class TaskView(View):
    kind = "Task"

    def __init__(self, graph: Graph, task_hash: str, fallback: str | None = None):
        super().__init__(graph, task_hash)
        self._fallback = fallback

    @cached_property
    def _info(self) -> TaskInfo:
        return self.q.task_info(self.id, fallback_name=self._fallback, first_job=True)

    @property
    def hash(self) -> str:
        return self.id

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def namespace(self) -> str:
        return self._info.namespace

    @property
    def fullname(self) -> str:
        return self._info.fullname

    @property
    def source(self) -> str | None:
        return self._info.source

    def __repr__(self) -> str:
        return f"Task(fullname={self.fullname!r}, hash={self.id[:8]!r})"


class ArgumentView:
    """One argument of a call node: its name (keyword) or position, value and upstream calls."""

    def __init__(self, graph: Graph, call_hash: str, key: str, arg: dict[str, Any]):
        self.graph = graph
        self.call_hash = call_hash
        self.key = key
        self.position = int(key) if key.isdigit() else None
        self.name = None if key.isdigit() else key
        self.arg_hash = arg["arg_hash"]
        self._value_hash = arg["value_hash"]
        self._upstream = list(arg.get("upstream", []))

    @property
    def value(self) -> ValueView:
        return ValueView(self.graph, self._value_hash)

    @property
    def upstream(self) -> list[CallNodeView]:
        """The call nodes whose results this argument was computed from."""
        return [CallNodeView(self.graph, c) for c in self._upstream]

    def __repr__(self) -> str:
        return f"Argument({self.name or self.position}={self.value.preview})"


class CallNodeView(View):
    kind = "CallNode"

    @cached_property
    def _doc(self) -> dict[str, Any]:
        doc = self.q.call_doc(self.id)
        if doc is MISSING:
            raise ObjectNotFound(f"no call node {self.id}")
        return doc

    @property
    def call_hash(self) -> str:
        return self.id

    @property
    def task_name(self) -> str:
        return self.q.task_name(self._doc.get("task_hash"), self._doc.get("task_name"))

    @property
    def task(self) -> TaskView:
        return TaskView(self.graph, self._doc["task_hash"], fallback=self._doc.get("task_name"))

    @property
    def value(self) -> ValueView:
        """The result."""
        return ValueView(self.graph, self._doc["value_hash"])

    @property
    def arguments(self) -> list[ArgumentView]:
        return [ArgumentView(self.graph, self.id, key, arg) for key, arg in self._doc.get("args", [])]

    @property
    def children(self) -> list[CallNodeView]:
        return [CallNodeView(self.graph, c) for c in self._doc.get("children", [])]

    @property
    def parents(self) -> list[CallNodeView]:
        return [CallNodeView(self.graph, c) for c in self.q.call_parents(self.id)]

    @property
    def jobs(self) -> list[JobView]:
        return [JobView(self.graph, j) for j in self.q.jobs_of_call(self.id)]

    def __repr__(self) -> str:
        return f"CallNode(call_hash={self.id[:8]!r}, task={self.task_name!r})"


class ValueView(View):
    kind = "Value"

    @cached_property
    def _info(self) -> ValueInfo:
        info = self.q.value_info(self.id)
        if info is None:
            raise ObjectNotFound(f"no value {self.id}")
        return info

    @property
    def value_hash(self) -> str:
        return self.id

    @property
    def type(self) -> str:
        return self._info.type

    @property
    def format(self) -> str:
        return self._info.format

    @property
    def size(self) -> int:
        return self._info.size

    @property
    def preview(self) -> str:
        """A safe repr: no code the value names runs."""
        return self._info.preview

    @property
    def path(self) -> str | None:
        return self._info.path

    @property
    def value(self) -> Any:
        """The value itself. Unpickling runs whatever code the pickle names: the one place any
        objstore reader does it, and only when asked for, on a value you trust."""
        stored = self.q.prov.values.get_value(self.id)
        if stored is MISSING:
            raise ObjectNotFound(f"no value {self.id}")
        if "pickle" in stored.format:
            return pickle.loads(stored.data)  # noqa: S301 - the explicit, documented unpickle
        if stored.format in ("application/json", "json"):
            return json.loads(stored.data)
        if stored.format.startswith("text/"):
            return stored.data.decode("utf-8")
        return stored.data

    @property
    def subvalues(self) -> list[ValueView]:
        return [ValueView(self.graph, v) for v in self.q.prov.values.get_subvalues(self.id)]

    @property
    def parents(self) -> list[ValueView]:
        """Container values holding this one."""
        return [ValueView(self.graph, v) for v in self.q.value_parents(self.id)]

    @property
    def produced_by(self) -> list[CallNodeView]:
        """Call nodes that returned this value (itself or inside a container), newest first."""
        return [CallNodeView(self.graph, u.call.call_hash) for u in self.q.uses(self.id, produced=True)]

    @property
    def consumed_by(self) -> list[CallNodeView]:
        """Call nodes that took this value as an argument (or inside one), newest first."""
        return [CallNodeView(self.graph, u.call.call_hash) for u in self.q.uses(self.id, produced=False)]

    def __repr__(self) -> str:
        return f"Value(hash={self.id[:8]!r}, type={self.type!r}, preview={self.preview!r})"


class FileView:
    """A recorded File path: the File values seen there and what produced and consumed them."""

    kind = "File"

    def __init__(self, graph: Graph, path: str, value_hashes: list[str]):
        self.graph = graph
        self.path = path
        self.values = [ValueView(graph, h) for h in value_hashes]

    @property
    def produced_by(self) -> list[CallNodeView]:
        return list(dict.fromkeys(c for v in self.values for c in v.produced_by))

    @property
    def consumed_by(self) -> list[CallNodeView]:
        return list(dict.fromkeys(c for v in self.values for c in v.consumed_by))

    def __repr__(self) -> str:
        return f"File(path={self.path!r}, values={len(self.values)})"


def open_graph(repo: Any, storage_options: dict | None = None, **open_kwargs: Any) -> Graph:
    """A Graph over a repository URL (opened read-mostly), a Repository or a Provenance."""
    if isinstance(repo, Graph):
        return repo
    if isinstance(repo, Provenance):
        prov = repo
    else:
        from objstore.repo import Repository

        if isinstance(repo, Repository):
            prov = Provenance(repo)
        else:
            prov = Provenance(Repository.open(str(repo), storage_options, **open_kwargs))
    prov.refresh()
    return Graph(prov)


def query(prefix_or_path: str, repo: Any, storage_options: dict | None = None) -> Any:
    """What an id prefix (or ``-`` / ``~N``) or a File path names in ``repo`` (a URL, a
    Repository, a Provenance or a Graph), as a read-only navigable object."""
    return open_graph(repo, storage_options).query(prefix_or_path)


__all__ = [
    "Graph", "open_graph", "query", "ExecutionView", "JobView", "TaskView", "CallNodeView",
    "ArgumentView", "ValueView", "FileView",
]
