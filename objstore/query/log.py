"""The query layer behind `objstore log`: executions, job trees and record details.

Walking an execution is an index walk (job_children) plus one bulk read of its jobs; tasks are
read once per distinct task. Details answer what redun's `log` shows of one record: a job with
its call node, task source, where it sits in the job tree and, for a failure, the error and its
traceback; a call node with its arguments (and the call nodes upstream of each), result,
parents, children and jobs; a value with the calls that produced and consumed it.

A damaged object behind a record is named in the result's ``problems`` (and in
``LogQuery.problems``) while the rest is still answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from objstore import model
from objstore.backend import MISSING, Provenance
from objstore.errors import ObjectNotFound
from objstore.model import schema
from objstore.query.dataflow import upstream_lines
from objstore.query.reads import BATCH, Reads, format_args, seconds_between
from objstore.query.results import (
    CACHED,
    DONE,
    FAILED,
    CallInfo,
    ExecutionSummary,
    ExecutionTree,
    JobCounts,
    JobDetail,
    JobNode,
    TaskInfo,
    ValueDetail,
)

EXEC_STATUSES = ("DONE", "FAILED", "RUNNING", "UNFINISHED")


def matches_tags(tags: list[tuple[str, Any]], wanted: Iterable[tuple[str, Any]], any_value: Any) -> bool:
    """Whether current tags hold every wanted (key, value); ``any_value`` as a value: any."""
    have = list(tags)
    return all(any(k == key and (value is any_value or v == value) for k, v in have) for key, value in wanted)


class LogQuery(Reads):
    """Reads for `log` over one Provenance. Caches decoded objects for its own lifetime only."""

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

    format_args = staticmethod(format_args)

    # -- executions --------------------------------------------------------------------------

    def job_ids_under(self, root_id: str) -> list[str]:
        """The root and every descendant, breadth first (one index read per layer)."""
        out, layer, seen = [], [root_id], {root_id}
        while layer:
            out.extend(layer)
            nxt = []
            for children in self._children_of(layer):
                for child in children:
                    if child not in seen:
                        seen.add(child)
                        nxt.append(child)
            layer = nxt
        return out

    def _children_of(self, job_ids: list[str]) -> list[list[str]]:
        """Each job's child jobs by start time: from the index in one read when nothing is
        buffered here (a tree of 10^4 jobs made 10^4 reads), else through the backend."""
        repo = self.prov.repo
        if repo.buffer.idle():
            try:
                found = repo.index.get_all_many("job_children", job_ids)
            except (ValueError, TypeError):  # an id the index cannot hold: one by one below
                pass
            else:
                return [[schema.timed_id(entry) for entry in entries] for entries in found]
        return [self.prov.jobs.job_children(job_id) for job_id in job_ids]

    def _argv(self, execution: dict) -> list[str]:
        try:
            argv = json.loads(execution.get("args") or "[]")
            return [str(a) for a in argv[1:]] if isinstance(argv, list) else [str(argv)]
        except ValueError:
            return [str(execution.get("args"))]

    def summary(self, execution_id: str, counts: JobCounts | None = None) -> ExecutionSummary:
        """One execution's line: its status is its root job's (CACHED counts as DONE)."""
        execution = self.prov.jobs.get_execution(execution_id)
        if execution is MISSING:
            if self.core.kind_of(execution_id) == model.EXECUTION:
                why = self._why_unreadable(execution_id)
                self.damaged(execution_id, "execution", why)
                raise ObjectNotFound(f"execution {execution_id} cannot be read: {why}")
            raise ObjectNotFound(f"no execution {execution_id}")
        root_id = execution.get("job_id")
        root_meta: Any = self.job_meta(root_id) if root_id else MISSING
        if root_meta is MISSING:
            status, end_time = FAILED, None  # redun: an execution without a root job failed
        else:
            root_status = self.status(root_meta, bool(root_meta.get("end_time")))
            status = DONE if root_status in (DONE, CACHED) else root_status
            end_time = root_meta.get("end_time")
        start_time = execution.get("start_time") or (root_meta.get("start_time") if root_meta is not MISSING else None)
        updated = self.core.lookup("exec_updated", execution_id)
        return ExecutionSummary(
            id=execution_id,
            status=status,
            args=self._argv(execution),
            start_time=start_time,
            end_time=end_time,
            duration=seconds_between(start_time, end_time),
            updated_time=None if updated is MISSING else updated,
            job_id=root_id,
            counts=counts,
            tags=self.tags_of(execution_id),
        )

    def _execution(self, execution_id: str, *, want_tree: bool) -> ExecutionTree:
        base = self.summary(execution_id)
        root_id = base.job_id
        root_meta: Any = self.job_meta(root_id) if root_id else MISSING
        root_ended = root_meta is not MISSING and bool(root_meta.get("end_time"))
        job_ids = self.job_ids_under(root_id) if root_id and root_meta is not MISSING else []
        self.load_jobs(job_ids)
        if want_tree:
            self.prefetch_calls(job_ids)
        nodes: dict[str, JobNode] = {}
        statuses = []
        for job_id in job_ids:
            meta = self.job_meta(job_id)
            if meta is MISSING:
                continue
            if want_tree:
                new = self.node(job_id, meta, root_ended)
                nodes[job_id] = new
                statuses.append(new.status)
            else:
                statuses.append(self.status(meta, root_ended))
        if want_tree:
            for job_id in job_ids:  # breadth-first order keeps each parent's children by start
                node = nodes.get(job_id)
                if node and node.parent_id in nodes and job_id != root_id:
                    nodes[node.parent_id].children.append(node)
        summary = ExecutionSummary(**{**base.__dict__, "counts": JobCounts.of(statuses)})
        return ExecutionTree(summary, nodes.get(root_id) if want_tree and root_id else None)

    def executions(
        self,
        limit: int | None = 20,
        *,
        statuses: Iterable[str] | None = None,
        tags: Iterable[tuple[str, Any]] = (),
        any_value: Any = None,
    ) -> list[ExecutionSummary]:
        """The newest ``limit`` executions (all with None), newest first, optionally only those
        with one of ``statuses`` and all of ``tags`` (redun's --exec-status / --exec-tag). An
        execution whose object is unreadable is left out and noted in ``problems``."""
        wanted = set(statuses) if statuses else None
        tags = list(tags)
        out: list[ExecutionSummary] = []
        for execution_id in self.execution_ids():
            if limit is not None and len(out) >= limit:
                break
            try:
                summary = self.summary(execution_id)
            except ObjectNotFound:
                continue
            if wanted is not None and summary.status not in wanted:
                continue
            if tags and not matches_tags(summary.tags, tags, any_value):
                continue
            out.append(summary)
        return out

    def execution_tree(self, execution_id: str) -> ExecutionTree:
        return self._execution(execution_id, want_tree=True)

    def execution_jobs(self, execution_id: str) -> list[str]:
        """Every job id of an execution, breadth first from its root."""
        execution = self.prov.jobs.get_execution(execution_id)
        if execution is MISSING or not execution.get("job_id"):
            return []
        return self.job_ids_under(execution["job_id"])

    # -- details -----------------------------------------------------------------------------

    def stack(self, job_id: str) -> list[tuple[str, str]]:
        """(job id, task short name) from this job up to its execution's root job."""
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        current: str | None = job_id
        while current and current not in seen:
            seen.add(current)
            meta = self.job_meta(current)
            if meta is MISSING:
                out.append((current, "?"))
                break
            out.append((current, self.task_name(meta.get("task_hash")).rsplit(".", 1)[-1]))
            current = meta.get("parent_id")
        return out

    def job(self, job_id: str) -> JobDetail:
        before = len(self.problems)
        meta = self.job_meta(job_id)
        if meta is MISSING:
            raise ObjectNotFound(f"no job {job_id}")
        node = self.node(job_id, meta, self.root_ended(meta))
        call = None
        if node.call_hash and self.prov.calls.has_call_node(node.call_hash):
            try:
                call = self.call_info(node.call_hash)
            except ObjectNotFound:
                call = None  # damaged: named in problems
        task = self.task_info(node.task_hash, fallback_name=node.task_name) if node.task_hash else None
        return JobDetail(
            node, call, self.prov.jobs.job_children(job_id), self.tags_of(job_id), self.stack(job_id), task,
            self.problems[before:],
        )  # fmt: skip

    def call_info(self, call_hash: str, *, detail: bool = True) -> CallInfo:
        call = self.call_doc(call_hash)
        if call is MISSING:
            raise ObjectNotFound(f"no call node {call_hash}")
        task_name = self.task_name(call.get("task_hash"), call.get("task_name"))
        children = list(call.get("children", []))
        jobs = self.jobs_of_call(call_hash)
        parents = self.call_parents(call_hash) if detail else []
        return CallInfo(
            call_hash=call_hash,
            task_name=task_name,
            task_hash=call["task_hash"],
            args_hash=call["args_hash"],
            timestamp=call.get("timestamp"),
            args=self.arg_infos(call, named=detail),
            result=self.value_info(call["value_hash"]),
            result_hash=call["value_hash"],
            children=children,
            tags=self.tags_of(call_hash),
            child_calls=[self.call_ref(c) for c in children] if detail else [],
            parents=[self.call_ref(p) for p in parents],
            jobs=jobs,
            task=self.task_info(call["task_hash"], fallback_name=task_name) if detail else None,
            dataflow=upstream_lines(self, call["value_hash"], name="result", call_hash=call_hash) if detail else [],
        )

    def task(self, task_hash: str) -> TaskInfo:
        info = self.task_info(task_hash, first_job=True)
        if info.source is None:
            raise ObjectNotFound(f"no task {task_hash}")
        return info

    def value(self, value_hash: str) -> ValueDetail:
        info = self.value_info(value_hash)
        if info is None:
            raise ObjectNotFound(f"no value {value_hash}")
        return ValueDetail(
            info,
            self.prov.values.get_subvalues(value_hash),
            self.tags_of(value_hash),
            self.uses(value_hash, produced=True),
            self.uses(value_hash, produced=False),
            self.value_parents(value_hash),
            upstream_lines(self, value_hash),
        )

    def batch_nodes(self, job_ids: list[str]) -> list[JobNode]:
        """Job lines for many jobs (read in bulk), in the order given."""
        self.load_jobs(job_ids)
        self.prefetch_calls(job_ids)
        out = []
        for start in range(0, len(job_ids), BATCH):
            for job_id in job_ids[start : start + BATCH]:
                node = self.job_node(job_id)
                if node is not None:
                    out.append(node)
        return out


def open_query(prov: Provenance, **kwargs: Any) -> LogQuery:
    """refresh() first, so jobs written by other workers since the index last looked show up."""
    prov.refresh()
    return LogQuery(prov, **kwargs)


__all__ = ["LogQuery", "open_query", "matches_tags", "EXEC_STATUSES"]
