"""fsck: verify everything a repository holds, and that the local index agrees with it.

    objstore.json   parses, names this format, a version this objstore reads, sane settings
    objects         every loose object (or a random ``sample`` of them): the frame checksum,
                    the kind, the length, and the id where it can be recomputed
    packs           the name is the content's hash; the toc parses; entries lie inside the
                    pack, in order, without overlaps; each (sampled) entry verifies like a read
    value stores    every value the journal places there is there (sampled ones verify)
    journal         every segment and checkpoint parses and its entries are well formed
    eval heads      each file holds a value hash; each head (file or journal) names a value
                    the repository holds
    handle refs     each holds handle state objstore can read
    call nodes      (those verified) their result, arguments, upstream calls and children
                    exist; a job's call node and an execution's root job too
    index           after a refresh, everything the index lists is stored where it says, and
                    everything stored is listed (else it is "unjournaled")

Listings come from the repository itself (objstore.maint.inventory), never from the index: the
index is one of the things checked. What is wrong goes into a Report, each problem naming its
file and object; a foreign file (one objstore never writes) is a warning, and left alone.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from objstore import codec, layout, model
from objstore import format as fmt
from objstore.errors import CorruptObject, FormatError, RepositoryNotFound, StorageError
from objstore.fs import is_local, missing_container, open_url
from objstore.ids import is_hash
from objstore.maint import inventory, salvage, verify
from objstore.maint.report import Report, bulk
from objstore.missing import Missing
from objstore.repo import Repository
from objstore.repo.evals import parse_head
from objstore.store import open_blobs

log = logging.getLogger("objstore.maint")
Progress = Callable[[str, int], None]
_BATCH = 512


@dataclass
class Found:
    """What fsck learned, for the checks after it and for repair."""

    kinds: dict[str, str] = field(default_factory=dict)  # every stored object id -> its kind
    toc: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # packed id -> (pack, offset, length)
    copies: dict[str, set[str]] = field(default_factory=dict)  # packed id -> its other "pack:offset:length"
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


# -- objstore.json, before a repository can be opened -------------------------------------------


def check_format_file(url: str, storage_options: dict | None, report: Report) -> dict[str, Any] | None:
    """objstore.json as a document this objstore can use, or None (with the problem reported)."""
    fs, root = open_url(url, storage_options)
    raw = open_blobs(fs, root).read(layout.FORMAT_FILE)
    if isinstance(raw, Missing):
        bucket = missing_container(fs, root)
        if bucket is not None:  # nothing to check, and nothing --repair may create there
            raise RepositoryNotFound(f"no objstore repository at {url}: bucket {bucket!r} does not exist")
        report.error(layout.FORMAT_FILE, "missing", "the repository has no objstore.json")
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        report.error(layout.FORMAT_FILE, "corrupt", f"not valid JSON ({exc})")
        return None
    version = doc.get("version") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and isinstance(version, list) and version and isinstance(version[0], int):
        if doc.get("format") == fmt.FORMAT_NAME and not fmt.compatible((version[0], 0)):
            fmt.check(doc, url)  # a version this objstore must not touch: refused, never "repaired"
    if isinstance(doc, dict) and isinstance(doc.get("format"), str) and doc["format"] != fmt.FORMAT_NAME:
        fmt.check(doc, url)  # somebody else's file: not ours to rewrite
    try:
        return fmt.check(doc, layout.FORMAT_FILE)
    except FormatError as exc:
        report.error(layout.FORMAT_FILE, "corrupt", str(exc))
        return None


# -- the checks --------------------------------------------------------------------------------

def _pack_at(url: str, options: dict | None, name: str, *, span: verify.Span) -> verify.PackCheck:
    return verify.verify_pack_at(url, options, name, span)


class Fsck:
    def __init__(self, repo: Repository, report: Report, *, sample: float = 1.0, seed: int | None = None,
                 progress: Progress | None = None, jobs: int | None = None):  # fmt: skip
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"--sample is a fraction between 0 and 1, not {sample}")
        self.repo = repo
        self.report = report
        self.sample = sample
        self.seed = seed
        self.jobs = jobs
        self.span = verify.sample_span(sample, seed)
        self.progress = progress
        self.found = Found()
        self.inv = inventory.Inventory()
        self._done = 0

    def _tick(self, phase: str, n: int = 1) -> None:
        self._done += n
        if self.progress:
            self.progress(phase, self._done)

    def _sampled(self, object_id: str) -> bool:
        return verify.in_span(object_id, self.span)

    def run(self) -> Found:
        self.inv = inventory.take(self.repo)
        for key, why in self.inv.foreign:
            self.report.warning(key, "foreign", f"{why}; objstore leaves it alone")
        self.check_packs()
        self.check_loose()
        self.check_journal()
        try:
            self.repo.refresh()
        except (StorageError, CorruptObject) as exc:
            self.report.error("index", "unavailable", f"refreshing the index failed: {exc}")
        self.check_value_stores()
        self.check_index()
        self.check_evals()
        self.check_refs()
        self.check_references()
        return self.found

    # -- packs and loose objects ----------------------------------------------------------------

    def check_packs(self) -> None:
        names = sorted(self.inv.packs)
        for check in self._pack_checks(names):
            if check.missing:
                continue
            self.report.count("packs")
            self._record_pack(check)
            self._tick("objects", len(check.toc))

    def _pack_checks(self, names: list[str]) -> Iterator[verify.PackCheck]:
        at = functools.partial(_pack_at, span=self.span)
        here = functools.partial(verify.verify_pack, span=self.span)
        return self._map(names, at, here, layout.pack_key)

    def _map(self, names: list[str], at: Callable[..., Any], here: Callable[..., Any], key: Callable[[str], str]) -> Iterator[Any]:
        """``here(name, bytes)`` for each name, or ``at(url, options, name)`` in worker processes."""
        workers = self._workers(len(names))
        if workers <= 1:
            # Remote files are fetched a few at a time (concurrent GETs), checked here.
            step = 1 if is_local(self.repo.fs) else 16
            for start in range(0, len(names), step):
                batch = names[start : start + step]
                for name, data in zip(batch, self.repo.blobs.read_many(key(n) for n in batch)):
                    if not isinstance(data, Missing):
                        yield here(name, data)
            return
        # Forked workers, each reading and checking whole files: only for a local directory,
        # where a child needs nothing of this process but the path (no event loop, no index).
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            n = len(names)
            yield from pool.map(at, [self.repo.url] * n, [self.repo.storage_options] * n, names,
                                chunksize=max(1, min(64, n // (workers * 8))))  # fmt: skip

    def _workers(self, packs: int) -> int:
        if not is_local(self.repo.fs) or "fork" not in multiprocessing.get_all_start_methods():
            return 1
        if self.jobs is not None:
            return max(self.jobs, 1)
        if packs < 16:
            return 1  # not worth starting processes for
        return min(os.cpu_count() or 1, 8)

    def _record_pack(self, check: verify.PackCheck) -> None:
        found, key = self.found, layout.pack_key(check.name)
        kinds, toc, name = found.kinds, found.toc, check.name
        again = [row for row in check.toc if row[0] in toc]  # packed twice (two writers, a copy-merge)
        for oid, _, offset, length in again:
            found.copies.setdefault(oid, set()).add(f"{name}:{offset}:{length}")
        first = {oid for oid, _, _, _ in again}
        rows = [row for row in check.toc if row[0] not in first] if first else check.toc
        kinds.update({oid: kind for oid, kind, _, _ in rows if oid not in kinds})
        toc.update({oid: (name, offset, length) for oid, _, offset, length in rows})
        found.good_copies.update(check.good)
        for oid in check.bad:
            found.bad_objects.setdefault(oid, key)
        for oid, kind, edges in check.edges:
            found.edges[oid] = (kind, edges)
        for detail, damaged in check.errors:
            self.report.error(key, "corrupt", detail, damaged)
        if check.salvaged is not None:
            found.damaged_packs[check.name] = check.salvaged
            if check.toc_unreadable:
                self.report.notes.append(f"{key}: {len(check.salvaged)} entries readable without its toc")
        self.report.count("objects verified", check.verified)

    def check_loose(self) -> None:
        ids = sorted(self.inv.loose)
        todo = [i for i in ids if self._sampled(i)]
        for object_id in ids:
            self.found.kinds.setdefault(object_id, "")
        for start in range(0, len(todo), _BATCH):
            batch = todo[start : start + _BATCH]
            datas = self.repo.blobs.read_many(layout.object_key(i) for i in batch)
            for object_id, data in zip(batch, datas):
                if isinstance(data, Missing):
                    continue
                key = layout.object_key(object_id)
                try:
                    kind, payload = codec.decode(data, object_id=object_id)
                    model.verify(kind, object_id, payload)
                except CorruptObject as exc:
                    self.report.error(key, "corrupt", exc.reason, object_id)
                    self.found.bad_objects[object_id] = key
                    continue
                self.found.kinds[object_id] = kind
                self.found.good_copies.add(object_id)
                self._keep_edges(key, object_id, kind, payload)
            self._tick("objects", len(batch))
        self.report.count("loose objects", len(ids))
        self.report.count("objects verified", len(todo))

    def _keep_edges(self, where: str, object_id: str, kind: str, payload: bytes) -> None:
        if kind in verify.FOLLOWED:
            try:
                self.found.edges[object_id] = (kind, verify.edges_of(kind, object_id, payload))
            except CorruptObject as exc:
                self.report.error(where, "corrupt", exc.reason, object_id)

    # -- journal -------------------------------------------------------------------------------

    def check_journal(self) -> None:
        names = sorted(self.inv.journal)
        for check in self._map(names, verify.verify_journal_at, verify.verify_journal, layout.segment_key):
            if check.missing:
                continue
            key = layout.segment_key(check.name)
            self.report.count("journal files")
            if check.reason is not None:
                self.report.error(key, "corrupt", check.reason)
                self.found.bad_journal.append(check.name)
                continue
            self.found.journaled.update(check.ids)
            if check.malformed:
                self.report.warning(key, "malformed", f"{check.malformed} of its {check.entries} index entries are "
                                    "not ones this objstore knows (readers skip them)")  # fmt: skip

    # -- value stores, index agreement ---------------------------------------------------------

    def check_value_stores(self) -> None:
        by_url: dict[str, list[str]] = {}
        for oid, url in self.repo.index.items("value_store"):
            by_url.setdefault(url, []).append(oid)
        for url, ids in sorted(by_url.items()):
            try:
                store = self.repo.value_stores.store(url)
                held = {layout.fanout_id(k[len(layout.OBJECTS) + 1 :]) for k in store.blobs.list_keys(layout.OBJECTS)}
            except (ValueError, StorageError) as exc:
                self.report.error(f"value store {url}", "unreachable", str(exc))
                self.found.value_stores[url] = set()
                continue
            held.discard(None)
            self.found.value_stores[url] = held  # type: ignore[assignment]
            self.report.count("values in value stores", len(ids))
            todo = [i for i in ids if i in held and self._sampled(i)]
            for start in range(0, len(todo), 8):  # big values: a few at a time, concurrently
                batch = todo[start : start + 8]
                for oid, data in zip(batch, store.blobs.read_many(layout.object_key(i) for i in batch)):
                    if isinstance(data, Missing):
                        continue
                    try:
                        kind, _ = codec.decode(data, object_id=oid)
                    except CorruptObject as exc:
                        self.report.error(f"{url}/{layout.object_key(oid)}", "corrupt", exc.reason, oid)
                        continue
                    self.found.kinds.setdefault(oid, kind)
                    self.found.good_copies.add(oid)
                self._tick("objects", len(batch))
            for oid in ids:
                self.found.kinds.setdefault(oid, "value")
                if oid not in held and oid not in self.inv.loose and oid not in self.found.toc:
                    self.report.error(f"value store {url}", "missing", "the journal places this value there; it is "
                                      "not there (a cache miss for every reader)", oid)  # fmt: skip
                    self.found.missing.append(oid)

    def check_index(self) -> None:
        # Whole tables compared as sets (C loops): a million rows each, several times.
        index, found = self.repo.index, self.found
        stored = found.kinds
        in_stores: set[str] = set().union(*found.value_stores.values()) if found.value_stores else set()
        span = self.span
        if span is not None:  # the sampled range of each table, and of what is stored
            stored = {oid: kind for oid, kind in stored.items() if span[0] <= oid[:8] < span[1]}
        rows = functools.partial(index.items, start=span[0] if span else None, stop=span[1] if span else None)
        listed = dict(rows("objects"))
        for oid in sorted(listed.keys() - stored.keys() - in_stores):
            self.report.error("journal", "missing", f"the journal names this {listed[oid]}; the repository holds "
                              "it nowhere", oid)  # fmt: skip
            found.missing.append(oid)
        for oid, kind in sorted(listed.items() - stored.items()):
            have = stored.get(oid)
            if have and have != kind:
                self.report.error("index", "mismatch", f"the index says {kind}, the object is a {have}", oid)
                found.index_disagrees = True
        self.report.count("index entries", len(listed))
        del listed
        expected = {oid: f"{name}:{offset}:{length}" for oid, (name, offset, length) in found.toc.items()
                    if oid in stored}  # fmt: skip
        for oid, text in sorted(dict(rows("packed")).items() - expected.items()):
            at = found.toc.get(oid)
            if at is None:
                if oid in self.inv.loose:
                    continue  # unpacked since (a reader falls back to the loose file)
                self.report.error("index", "mismatch", f"the index places it in {text}, no pack holds it", oid)
                found.index_disagrees = True
            elif at[0] not in found.damaged_packs and text not in found.copies.get(oid, ()):
                name = text.partition(":")[0]
                if name in found.damaged_packs:
                    continue  # reported with its pack
                self.report.error("index", "mismatch", f"the index places it at {text}, where no pack holds it; "
                                  f"it is at {at[0]}:{at[1]}:{at[2]}", oid)  # fmt: skip
                found.index_disagrees = True
        known = found.journaled
        for oid in sorted(set(found.kinds) - known):
            if oid in found.bad_objects and oid not in found.good_copies:
                continue  # damaged and named by no journal: reported as corrupt already
            self.report.warning(self._where(oid), "unjournaled", "stored, but no journal file names it (readers "
                                "of other indexes may not find it)", oid)  # fmt: skip
            found.unjournaled.append(oid)
        unseen = [n for n in self.inv.journal if not index.has_segment(n) and n not in found.bad_journal]
        if unseen:
            self.report.error("index", "behind", f"{len(unseen)} journal file(s) not ingested (e.g. {unseen[0]})")
            found.index_disagrees = True

    # -- eval heads, refs, references ----------------------------------------------------------

    def _exists(self, oid: str) -> bool:
        if oid in self.found.kinds:
            return True
        return any(oid in ids for ids in self.found.value_stores.values())

    def check_evals(self) -> None:
        files = sorted(self.inv.evals.items())
        for start in range(0, len(files), _BATCH):  # concurrent reads on object stores
            batch = files[start : start + _BATCH]
            for (eval_hash, entry), raw in zip(batch, self.repo.blobs.read_many(e.key for _, e in batch)):
                self._check_eval_file(eval_hash, entry, raw)
        self._check_eval_heads()

    def _check_eval_file(self, eval_hash: str, entry: inventory.Entry, raw: bytes | Missing) -> None:
        if isinstance(raw, Missing):
            return
        self.report.count("eval head files")
        try:
            value = parse_head(eval_hash, raw)
        except CorruptObject as exc:
            self.report.error(entry.key, "corrupt", exc.reason)
            self.found.bad_evals.append(eval_hash)
            return
        if not self._exists(value):
            self.report.error(entry.key, "missing", f"points at value {value}, which the repository does not hold "
                              "(a cache miss)")  # fmt: skip

    def _check_eval_heads(self) -> None:
        heads = 0
        for eval_hash, value in self.repo.index.items("evals"):
            heads += 1
            if eval_hash in self.inv.evals:
                continue
            if not self._exists(value):
                self.report.error("journal", "missing", f"eval head {eval_hash} points at value {value}, which the "
                                  "repository does not hold (a cache miss)")  # fmt: skip
        self.report.count("eval heads", heads)

    def check_refs(self) -> None:
        refs = sorted(self.inv.refs.items())
        raws = self.repo.blobs.read_many(e.key for _, e in refs)
        for (_name, entry), raw in zip(refs, raws):
            if isinstance(raw, Missing):
                continue
            self.report.count("handle refs")
            try:
                state = json.loads(raw)
                invalid = state["invalid"]
                if not isinstance(invalid, list) or not all(isinstance(h, str) and is_hash(h) for h in invalid):
                    raise ValueError("not a list of handle hashes")
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                self.report.error(entry.key, "corrupt", f"unreadable handle state ({exc}); readers treat every "
                                  "handle of this name as valid")  # fmt: skip
                continue
            for handle_hash in invalid:
                if isinstance(self.repo.index.get("handles", handle_hash), Missing):
                    self.report.warning(entry.key, "unknown", f"invalidates handle {handle_hash}, which no handle "
                                        "record names")  # fmt: skip

    def check_references(self) -> None:
        checked = 0
        # An object no journal names is what a writer killed between its objects and its journal
        # segment left behind (its execution's root job had not ended, its start note was in the
        # segment never written): nobody can reach it, so what it refers to is not missing.
        leftovers = set(self.found.unjournaled)
        for oid, (kind, edges) in sorted(self.found.edges.items()):
            checked += 1
            for target_kind, target in edges:
                if target_kind == model.TASK:
                    continue  # a task is known by its hash; redun does not always record it as a value
                if not self._exists(target) and not self._running(target_kind, target):
                    if oid in leftovers:
                        self.report.warning(self._where(oid), "missing", f"{kind} (unjournaled: an interrupted "
                                            f"flush) refers to {target_kind} {target}, which the repository does "
                                            "not hold", oid)  # fmt: skip
                        continue
                    self.report.error(self._where(oid), "missing", f"{kind} refers to {target_kind} {target}, which "
                                      "the repository does not hold", oid)  # fmt: skip
        self.report.count("references checked", checked)

    def _running(self, kind: str, target: str) -> bool:
        # A job known only from its start note (still running, or its worker died) is no object yet.
        return kind == model.JOB and not isinstance(self.repo.index.get("job_start", target), Missing)

    def _where(self, oid: str) -> str:
        if oid in self.inv.loose:
            return layout.object_key(oid)
        if oid in self.found.toc:
            return layout.pack_key(self.found.toc[oid][0])
        return "objects"


def fsck(repo: Repository, *, sample: float = 1.0, seed: int | None = None, progress: Progress | None = None,
         report: Report | None = None, jobs: int | None = None) -> tuple[Report, Found]:  # fmt: skip
    """Check ``repo``; ``jobs``: processes verifying packs (default: one per core for 16+ packs)."""
    report = report or Report(repo.url)
    with bulk():
        found = Fsck(repo, report, sample=sample, seed=seed, progress=progress, jobs=jobs).run()
    report.checked["objects"] = len(found.kinds)
    return report, found


__all__ = ["fsck", "Fsck", "Found", "check_format_file"]
