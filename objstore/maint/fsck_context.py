"""What the fsck checks share: the repository, the report, the sampled span, the inventory
(listings, never the index), what the checks before learned (Found), and the way files are
spread over worker processes. Each check (objstore.maint.fsck_*) is a small class over this."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from objstore import layout, pack
from objstore.errors import CorruptObject
from objstore.fs import is_local
from objstore.maint import inventory, salvage, verify
from objstore.maint.report import Report
from objstore.missing import Missing
from objstore.repo import Repository

Progress = Callable[[str, int], None]
BATCH = 512  # loose objects, eval files: reads per read_many (concurrent on object stores)


class Copies:
    """The other places of packed ids (two writers, a copy-merge, a repack gc has not finished),
    kept as each pack's columns. A repository just repacked holds a copy of every object, and
    the index may place any of them at either copy: asking about one looks in that one pack
    (whose rows become a dict on its first question), never spells out every copy."""

    def __init__(self) -> None:
        self._packs: dict[str, tuple[list[str], list[int], list[int], set[str]]] = {}
        self._rows: dict[str, dict[str, tuple[int, int]]] = {}

    def add(self, name: str, ids: list[str], offsets: list[int], lengths: list[int], which: set[str]) -> None:
        """Rows of pack ``name`` whose id is in ``which`` are copies."""
        if which:
            self._packs[name] = (ids, offsets, lengths, which)

    def holds(self, object_id: str, place: str) -> bool:
        """Whether ``place`` ("pack:offset:length") is a copy of ``object_id``."""
        try:
            loc = pack.Location.parse(place, object_id=object_id)
        except CorruptObject:
            return False
        found = self._packs.get(loc.pack)
        if found is None or object_id not in found[3]:
            return False
        ids, offsets, lengths, _ = found
        rows = self._rows.get(loc.pack)
        if rows is None:
            rows = self._rows[loc.pack] = dict(zip(ids, zip(offsets, lengths)))
        want = (loc.offset, loc.length)
        if rows.get(object_id) == want:
            return True
        # One id twice in one pack (the dict kept the later row): look at every row of it.
        return any(oid == object_id and (o, n) == want for oid, o, n in zip(ids, offsets, lengths))


@dataclass
class Found:
    """What fsck learned, for the checks after it and for repair."""

    kinds: dict[str, str] = field(default_factory=dict)  # every stored object id -> its kind
    toc: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # packed id -> (pack, offset, length)
    placed: dict[str, str] = field(default_factory=dict)  # packed id -> "pack:offset:length" (a full fsck only)
    copies: Copies = field(default_factory=Copies)  # the other places of packed ids
    bad_objects: dict[str, str] = field(default_factory=dict)  # id -> where the damaged copy is
    good_copies: set[str] = field(default_factory=set)  # ids with a verified copy
    damaged_packs: dict[str, list[salvage.Found]] = field(default_factory=dict)  # pack -> readable entries
    bad_journal: list[str] = field(default_factory=list)
    bad_evals: list[str] = field(default_factory=list)
    value_stores: dict[str, set[str]] = field(default_factory=dict)  # url -> ids it holds
    missing: list[str] = field(default_factory=list)  # listed by the index, stored nowhere
    unjournaled: list[str] = field(default_factory=list)
    index_disagrees: bool = False
    journaled: set[str] = field(default_factory=set)  # every id a readable journal file lists
    edges: dict[str, tuple[str, list[tuple[str, str]]]] = field(default_factory=dict)  # verified call/job/exec


class Started:
    """Files being checked already (Context.start_files): their results in input order, and the
    worker processes, shut down once the results are read or the caller gives up on them."""

    def __init__(self, results: Iterator[Any], pool: ProcessPoolExecutor | None):
        self._results, self._pool = results, pool

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._results
        finally:
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class Context:
    def __init__(self, repo: Repository, report: Report, *, span: verify.Span, progress: Progress | None,
                 jobs: int | None):  # fmt: skip
        self.repo = repo
        self.report = report
        self.span = span
        self.progress = progress
        self.jobs = jobs
        self.found = Found()
        self.inv = inventory.Inventory()
        self._done = 0

    def tick(self, phase: str, n: int = 1) -> None:
        self._done += n
        if self.progress:
            self.progress(phase, self._done)

    def sampled(self, object_id: str) -> bool:
        return verify.in_span(object_id, self.span)

    def exists(self, oid: str) -> bool:
        if oid in self.found.kinds:
            return True
        return any(oid in ids for ids in self.found.value_stores.values())

    def where(self, oid: str) -> str:
        """The key of the file holding ``oid``, for a report line."""
        if oid in self.inv.loose:
            return layout.object_key(oid)
        if oid in self.found.toc:
            return layout.pack_key(self.found.toc[oid][0])
        return "objects"

    def map_files(self, names: list[str], at: Callable[..., Any], here: Callable[..., Any],
                  key: Callable[[str], str]) -> Iterator[Any]:  # fmt: skip
        """``here(name, bytes)`` for each name, or ``at(url, options, name)`` in worker processes."""
        repo = self.repo
        workers = self._workers(len(names))
        if workers <= 1:
            # Remote files are fetched a few at a time (concurrent GETs), checked here.
            step = 1 if is_local(repo.fs) else 16
            for start in range(0, len(names), step):
                batch = names[start : start + step]
                for name, data in zip(batch, repo.blobs.read_many(key(n) for n in batch)):
                    if not isinstance(data, Missing):
                        yield here(name, data)
            return
        # Forked workers, each reading and checking whole files: only for a local directory,
        # where a child needs nothing of this process but the path (no event loop, no index).
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            yield from self._submit(pool, workers, names, at)

    def _submit(self, pool: ProcessPoolExecutor, workers: int, names: list[str], at: Callable[..., Any]) -> Iterator[Any]:
        """``at(url, options, name)`` for each name, submitted to ``pool`` now; results in order."""
        n = len(names)
        return pool.map(at, [self.repo.url] * n, [self.repo.storage_options] * n, names,
                        chunksize=max(1, min(64, n // (workers * 8))))  # fmt: skip

    def start_files(self, names: list[str], at: Callable[..., Any], here: Callable[..., Any],
                    key: Callable[[str], str], *, big: bool) -> Started:  # fmt: skip
        """map_files, begun now in one forked worker when these few files are big (``big``: a
        local directory, more than one process allowed), so the checks before this one run beside
        it; else as map_files, when iterated. Many files already get a worker per core of their
        own, and beside the packs' workers they would only compete for the cores."""
        if not big or self.jobs == 1 or not self._can_fork() or self._workers(len(names)) > 1:
            return Started(self.map_files(names, at, here, key), None)
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
        return Started(self._submit(pool, 1, names, at), pool)

    def _can_fork(self) -> bool:
        return is_local(self.repo.fs) and "fork" in multiprocessing.get_all_start_methods()

    def _workers(self, files: int) -> int:
        if not self._can_fork():
            return 1
        if self.jobs is not None:
            return max(self.jobs, 1)
        if files < 16:
            return 1  # not worth starting processes for
        return min(os.cpu_count() or 1, 8)


__all__ = ["Context", "Found", "Progress", "BATCH"]
