"""The scheduler-neutral provenance API: caching, call graph, jobs, tags, handles, records.

No scheduler imports here: values arrive already hashed and serialized, so any scheduler (redun
through objstore.redun, or another) can record into and query one repository. Nothing here
knows the repository's layout or its flush policy: both belong to objstore.repo. Each concern
lives in its own module around a shared Core (one Repository, a cache of verified objects):

    values   ValueSpec -> value objects (+ subvalues, File/Task subtypes)
    calls    CallNodes with arguments, upstream calls, children, subtree tasks
    jobs     executions and jobs (start = journal note, end = object)
    cache    check_cache (CSE / ULTIMATE / SINGLE), eval heads, explain_cache_miss
    tags     record / update / delete / get, supersession, delete tags
    handles  advance / rollback / is_valid with ref-file state changed by compare-and-swap
    records  redun export records: get_records / put_records / iter_record_ids
"""

from __future__ import annotations

from typing import Any

from objstore.backend.cache import CSE, MISS, SINGLE, ULTIMATE, Cache
from objstore.backend.calls import ArgSpec, Calls
from objstore.backend.core import MISSING, Core
from objstore.backend.handles import Handles, HandleSpec
from objstore.backend.jobs import Jobs
from objstore.backend.records import Records
from objstore.backend.tags import Tags
from objstore.backend.values import DEFAULT_MAX_VALUE_SIZE, StoredValue, Values, ValueSpec
from objstore.repo import Repository

__all__ = [
    "Provenance",
    "ArgSpec",
    "HandleSpec",
    "ValueSpec",
    "StoredValue",
    "MISSING",
    "CSE",
    "SINGLE",
    "ULTIMATE",
    "MISS",
]


class Provenance:
    """All concerns over one Repository. Writes are buffered (by the repository, flushed by its
    FlushPolicy) until flush()."""

    def __init__(self, repo: Repository, *, max_value_size: int = DEFAULT_MAX_VALUE_SIZE):
        self.repo = repo
        self.core = Core(repo)
        self.values = Values(self.core, max_value_size=max_value_size)
        self.calls = Calls(self.core)
        self.jobs = Jobs(self.core)
        self.cache = Cache(self.core, self.values, self.calls)
        self.tags = Tags(self.core)
        self.handles = Handles(self.core)
        self.records = Records(self.core, self.jobs, self.tags)

    def flush(self) -> None:
        self.repo.flush()

    def maybe_flush(self) -> bool:
        return self.repo.maybe_flush()

    def job_started(self) -> None:
        """A scheduler started a job: the repository's flush policy decides what to write."""
        self.repo.flusher.job_started()

    def job_ended(self, *, root: bool) -> None:
        """A job ended (``root``: the execution's root job, written before this returns)."""
        self.repo.flusher.job_ended(root=root)

    def refresh(self) -> int:
        return self.repo.refresh()

    def close(self) -> None:
        self.repo.close()

    def __enter__(self) -> Provenance:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
