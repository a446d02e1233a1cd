"""Reading a repository: the one id resolver, `log`'s queries and what they return.

    resolve.py   id prefixes (and redun's - / ~N) -> ids, for every command and the library
    reads.py     what every query reads (tasks, values, jobs, call nodes), cached per query
    log.py       LogQuery: executions, job trees, job / call node / task / value details
    files.py     File paths: which call nodes produced and consumed them, during which jobs
    lists.py     redun's list forms of `log` and their filters (--job, --task-name, --tag...)
    tags.py      tag parsing, counts and edits (redun's `tag` commands)
    navigate.py  query(prefix_or_path): read-only objects to walk the graph (the repl)
    graph.py     a picture of an execution's or a call node's dataflow (dot, mermaid, html)
    results.py   the plain dataclasses queries return (and their JSON form)
    preview.py   safe previews of stored values (no pickle ever runs code here)
"""

from __future__ import annotations

from objstore.errors import AmbiguousId
from objstore.query.log import LogQuery, open_query
from objstore.query.navigate import Graph, open_graph, query
from objstore.query.preview import error_details, preview_value, trim
from objstore.query.resolve import Resolver, normalize
from objstore.query.results import (
    CACHED,
    DONE,
    FAILED,
    RUNNING,
    STATUSES,
    UNFINISHED,
    ArgInfo,
    CallInfo,
    CallRef,
    ExecutionSummary,
    ExecutionTree,
    FileDetail,
    JobCounts,
    JobDetail,
    JobNode,
    TagCount,
    TagInfo,
    TaskInfo,
    ValueDetail,
    ValueInfo,
    ValueUse,
    to_jsonable,
)

__all__ = [
    "AmbiguousId", "LogQuery", "open_query", "Graph", "open_graph", "query", "preview_value", "error_details", "trim", "Resolver",
    "normalize", "CACHED", "DONE", "FAILED", "RUNNING", "STATUSES", "UNFINISHED", "ArgInfo", "CallInfo",
    "CallRef", "ExecutionSummary", "ExecutionTree", "FileDetail", "JobCounts", "JobDetail", "JobNode",
    "TagCount", "TagInfo", "TaskInfo", "ValueDetail", "ValueInfo", "ValueUse", "to_jsonable",
]  # fmt: skip
