"""Reading a repository: the one id resolver, `log`'s queries and what they return.

    resolve.py   id prefixes -> ids, for every command and the library
    log.py       LogQuery: executions, job trees, job / call node / value details
    results.py   the plain dataclasses queries return (and their JSON form)
    preview.py   safe previews of stored values (no pickle ever runs code here)
"""

from __future__ import annotations

from objstore.errors import AmbiguousId
from objstore.query.log import LogQuery, open_query
from objstore.query.preview import preview_value, trim
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
    ExecutionSummary,
    ExecutionTree,
    JobCounts,
    JobDetail,
    JobNode,
    ValueDetail,
    ValueInfo,
    to_jsonable,
)

__all__ = [
    "AmbiguousId", "LogQuery", "open_query", "preview_value", "trim", "Resolver", "normalize",
    "CACHED", "DONE", "FAILED", "RUNNING", "STATUSES", "UNFINISHED", "ArgInfo", "CallInfo",
    "ExecutionSummary", "ExecutionTree", "JobCounts", "JobDetail", "JobNode", "ValueDetail",
    "ValueInfo", "to_jsonable",
]
