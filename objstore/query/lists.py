"""redun's list forms of `log`: records of chosen types, filtered, newest first where redun is.

    log --exec | --job | --call-node | --task | --value | --file | --all
        [--exec-id ID,…] [--task-name NAME] [--job-status S,…] [--exec-status S,…]
        [--value-type T] [--file-path PATTERN] [--tag k=v] [--exec-tag k=v] [--count]

Types are redun's record types (Execution, Job, CallNode, Task, Value); a status filter narrows
the types to the ones it applies to, as in redun's CallGraphQuery. Executions and jobs come
newest first; the other types in id order (redun's come in database row order).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from objstore import model
from objstore.backend import MISSING
from objstore.model import schema
from objstore.query.log import LogQuery, matches_tags
from objstore.query.results import CACHED, DONE, CallRef, JobNode, TaskInfo, ValueInfo

TYPES = ("Execution", "Job", "CallNode", "Task", "Value")


class AnyValue:
    """A tag filter's value meaning "any value" (``--tag key`` without ``=value``)."""

    def __repr__(self) -> str:
        return "ANY_VALUE"


ANY_VALUE = AnyValue()
_NO_PATH = ValueInfo("", "", "", 0, "")


@dataclass
class ListSpec:
    types: set[str] = field(default_factory=lambda: {"Execution"})
    exec_ids: list[str] | None = None
    task_names: list[str] = field(default_factory=list)
    job_statuses: list[str] = field(default_factory=list)
    exec_statuses: list[str] = field(default_factory=list)
    value_types: list[str] = field(default_factory=list)
    file_paths: list[str] = field(default_factory=list)  # patterns, "*" a wildcard
    tags: list[tuple[str, Any]] = field(default_factory=list)
    exec_tags: list[tuple[str, Any]] = field(default_factory=list)
    files: bool = False  # --file: File values only, shown as files
    limit: int | None = None

    def narrowed(self) -> set[str]:
        """The record types left once the filters that apply to some types only are in."""
        types = set(self.types)
        if self.exec_statuses:
            types &= {"Execution"}
        if self.job_statuses:
            types &= {"Job"}
        if self.task_names:
            types &= {"Job", "Task"}
        if self.value_types or self.file_paths or self.files:
            types &= {"Value"}
        return types


def _task_matches(fullname: str, wanted: list[str]) -> bool:
    namespace, _, name = fullname.rpartition(".")
    for want in wanted:
        if "." in want:
            if want == fullname:
                return True
        elif want == name:
            return True
    return False


class Lister:
    """One listing over a LogQuery (its caches shared by every type)."""

    def __init__(self, q: LogQuery, spec: ListSpec):
        self.q = q
        self.spec = spec
        self._exec_jobs: list[str] | None = None

    # -- scope -------------------------------------------------------------------------------

    def scoped_jobs(self) -> list[str] | None:
        """The jobs of the --exec-id / --exec-tag executions (None: no execution scope)."""
        spec = self.spec
        if spec.exec_ids is None and not spec.exec_tags:
            return None
        if self._exec_jobs is None:
            ids = spec.exec_ids if spec.exec_ids is not None else self.q.execution_ids()
            if spec.exec_tags:
                ids = [e for e in ids if matches_tags(self.q.tags_of(e), spec.exec_tags, ANY_VALUE)]
            jobs: list[str] = []
            for execution_id in ids:
                jobs.extend(self.q.execution_jobs(execution_id))
            self._exec_jobs = jobs
        return self._exec_jobs

    def _tagged(self, entity_id: str) -> bool:
        return not self.spec.tags or matches_tags(self.q.tags_of(entity_id), self.spec.tags, ANY_VALUE)

    # -- per type ----------------------------------------------------------------------------

    def executions(self) -> Iterator[Any]:
        spec = self.spec
        statuses = set(spec.exec_statuses) or None
        if statuses and "DONE" in statuses:
            statuses.add(CACHED)
        found = self.q.executions(None, statuses=statuses, tags=spec.tags + spec.exec_tags, any_value=ANY_VALUE)
        if spec.exec_ids is not None:
            keep = set(spec.exec_ids)
            found = [e for e in found if e.id in keep]
        yield from found

    def _all_job_ids(self) -> Iterator[list[str]]:
        """Job ids in batches, newest executions first (each execution breadth first)."""
        scoped = self.scoped_jobs()
        if scoped is not None:
            yield scoped
            return
        if self.spec.task_names:
            yield self._jobs_of_tasks(self.spec.task_names)
            return
        for execution_id in self.q.execution_ids():
            yield self.q.execution_jobs(execution_id)

    def _jobs_of_tasks(self, names: list[str]) -> list[str]:
        task_hashes: list[str] = []
        for want in names:
            namespace, _, name = want.rpartition(".")
            keys = [schema.task_name_key(namespace or None, name)] if namespace else []
            if not namespace:  # a bare name matches it in every namespace: scan the task names
                keys = [k for h, k in self.q.prov.repo.scan("task_name") if self.q.task_name(h).rsplit(".", 1)[-1] == name]
            for key in dict.fromkeys(keys):
                task_hashes.extend(self.q.core.lookup_all("tasks_by_name", key))
        jobs: list[str] = []
        for task_hash in dict.fromkeys(task_hashes):
            for entry in self.q.core.lookup_all("calls_by_task", task_hash):
                jobs.extend(self.q.jobs_of_call(schema.timed_id(entry)))
        wanted, known = set(task_hashes), set(jobs)
        for job_id, note in self.q.prov.repo.scan("job_start"):  # running jobs have no call yet
            try:
                start = json.loads(note)
            except ValueError:
                continue
            if job_id not in known and isinstance(start, dict) and start.get("task_hash") in wanted:
                jobs.append(job_id)
        return jobs

    def jobs(self) -> Iterator[JobNode]:
        spec = self.spec
        limit = spec.limit
        statuses = set(spec.job_statuses)
        found: list[JobNode] = []
        for batch in self._all_job_ids():
            for node in self.q.batch_nodes(batch):
                if statuses and node.status not in statuses:
                    continue
                if spec.task_names and not _task_matches(node.task_name, spec.task_names):
                    continue
                if not self._tagged(node.id):
                    continue
                found.append(node)
            if limit is not None and len(found) >= limit:
                break  # executions come newest first: later batches hold older jobs
        found.sort(key=lambda n: n.start_time or "", reverse=True)
        yield from found

    def _objects(self, kind: str) -> Iterator[str]:
        for object_id, found in self.q.prov.repo.scan("objects"):
            if found == kind:
                yield object_id

    def call_nodes(self) -> Iterator[CallRef]:
        scoped = self.scoped_jobs()
        if scoped is not None:
            self.q.load_jobs(scoped)
            calls = list(dict.fromkeys(m["call_hash"] for m in map(self.q.job_meta, scoped)
                                       if m is not MISSING and m.get("call_hash")))  # fmt: skip
        else:
            calls = list(self._objects(model.CALL))
        for call_hash in calls:
            if self._tagged(call_hash):
                yield self.q.call_ref(call_hash)

    def tasks(self) -> Iterator[TaskInfo]:
        scoped = self.scoped_jobs()
        if scoped is not None:
            self.q.load_jobs(scoped)
            hashes = list(dict.fromkeys(m["task_hash"] for m in map(self.q.job_meta, scoped) if m is not MISSING))
        else:
            hashes = [h for h, _ in self.q.prov.repo.scan("task_name")]
        for task_hash in hashes:
            info = self.q.task_info(task_hash)
            if self.spec.task_names and not _task_matches(info.fullname, self.spec.task_names):
                continue
            if self._tagged(task_hash):
                yield info

    def _scoped_values(self, jobs: list[str]) -> list[str]:
        """The values of these jobs' call nodes: results, arguments and what they contain."""
        self.q.load_jobs(jobs)
        out: list[str] = []
        for meta in map(self.q.job_meta, jobs):
            if meta is MISSING or not meta.get("call_hash"):
                continue
            call = self.q.call_doc(meta["call_hash"])
            if call is MISSING:
                continue
            for value_hash in [call["value_hash"], *(a["value_hash"] for _, a in call.get("args", []))]:
                out.append(value_hash)
                out.extend(self.q.prov.values.get_subvalues(value_hash))
        return list(dict.fromkeys(out))

    def values(self) -> Iterator[ValueInfo]:
        spec = self.spec
        types = set(spec.value_types)
        if spec.files:
            types.add("redun.File")
        scoped = self.scoped_jobs()
        if scoped is not None:
            pairs: Iterable[tuple[str, str]] = ((h, self.q.core.lookup("value_type", h)) for h in self._scoped_values(scoped))
        else:
            pairs = self.q.prov.repo.scan("value_type")
        if spec.files:  # redun's --file lists paths in order
            pairs = sorted(pairs, key=lambda pair: (self.q.value_info(pair[0]) or _NO_PATH).path or "")
        count = 0
        for value_hash, type_name in pairs:
            if types and type_name not in types:
                continue
            info = self.q.value_info(value_hash)
            if info is None:
                continue
            if spec.file_paths and not (info.path and any(fnmatch.fnmatchcase(info.path, p) for p in spec.file_paths)):
                continue
            if spec.files and info.path is None:
                continue
            if not self._tagged(value_hash):
                continue
            yield info
            count += 1
            if spec.limit is not None and count >= spec.limit:
                return

    # -- all ---------------------------------------------------------------------------------

    def records(self) -> Iterator[tuple[str, Any]]:
        """(record type, result) in redun's type order, each type cut at ``limit``."""
        makers = {
            "Execution": self.executions, "Job": self.jobs, "CallNode": self.call_nodes,
            "Task": self.tasks, "Value": self.values,
        }  # fmt: skip
        types = self.spec.narrowed()
        for record_type in TYPES:
            if record_type not in types:
                continue
            for n, item in enumerate(makers[record_type]()):
                if self.spec.limit is not None and n >= self.spec.limit:
                    break
                yield record_type, item

    def counts(self) -> list[tuple[str, int]]:
        """(record type, how many) for redun's --count (no limit applies)."""
        limit, self.spec.limit = self.spec.limit, None
        try:
            totals: dict[str, int] = {}
            for record_type, _ in self.records():
                totals[record_type] = totals.get(record_type, 0) + 1
            return [(t, totals.get(t, 0)) for t in TYPES if t in self.spec.narrowed()]
        finally:
            self.spec.limit = limit


def list_records(q: LogQuery, spec: ListSpec) -> list[tuple[str, Any]]:
    return list(Lister(q, spec).records())


def count_records(q: LogQuery, spec: ListSpec) -> list[tuple[str, int]]:
    return Lister(q, spec).counts()


__all__ = ["ListSpec", "Lister", "list_records", "count_records", "TYPES", "ANY_VALUE", "DONE"]
