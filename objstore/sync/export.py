"""Export: a repository (or what given roots reach) as redun's stream or objstore's own.

The walk is redun's (backend.records.Records.iter_record_ids: the same edges, the same
breadth-first order, each id once), done one layer at a time with one bulk read per layer, so
exporting thousands of records costs a few ranged reads of packs rather than one read each.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from objstore import hashing, layout, model
from objstore.errors import CorruptObject
from objstore.ids import is_hash, is_uuid
from objstore.missing import MISSING, Missing
from objstore.model import handle as handle_kind
from objstore.model import job as job_kind
from objstore.model import schema
from objstore.model import value as value_kind
from objstore.repo import Repository
from objstore.repo import journal as journal_mod
from objstore.sync import streams

log = logging.getLogger("objstore.sync")

EXPORT_KINDS = set(model.EXPORT_KINDS)
_SEGMENTS = 64  # journal segments read at a time
_BATCH = 2048  # records of redun's stream whose index lookups are made together


@dataclass
class Reached:
    id: str
    kind: str | None  # the stored kind; None: nothing (readable) stored under this id
    payload: bytes | None  # None for a job that has only its start note
    doc: dict[str, Any] | None = None  # decoded once: a value's header, a job's fields (object or note)
    children: list[str] | None = None  # a job's child jobs, by start time


def readable(repo: Repository, ids: list[str]) -> list[Any]:
    """repo.get_many, but a damaged object is skipped (MISSING, with a warning) instead of
    failing the whole export: everything else still goes out, as log still lists the rest."""
    try:
        return repo.get_many(ids)
    except CorruptObject:
        pass
    out: list[Any] = []
    for oid in ids:
        try:
            out.append(repo.get(oid))
        except CorruptObject as exc:
            log.warning("export: skipping %s", exc)
            out.append(MISSING)
        except KeyError:
            out.append(MISSING)
    return out


def newest_executions(repo: Repository) -> list[str]:
    entries = repo.lookup_all("executions", schema.EXECUTIONS_KEY)
    return [schema.timed_id(e) for e in reversed(entries)]


def _start_note(repo: Repository, job_id: str) -> dict[str, Any] | None:
    note = repo.lookup("job_start", job_id)
    if isinstance(note, Missing):
        return None
    try:
        info = json.loads(note)
    except ValueError:
        return None
    return {**info, "end_time": None, "cached": False, "call_hash": None, "args_hash": None}


class Walk:
    """redun's record graph, read in bulk: one get_many per layer, each object decoded once."""

    # Tables asked about for every record (most records have no tags): read whole once when
    # they are this small, instead of one lookup per record.
    PRELOAD = ("tags_by_entity", "tag_children")
    PRELOAD_MAX = 100_000

    def __init__(self, repo: Repository):
        self.repo = repo
        index = repo.index  # nothing is buffered during an export: the index is all there is
        self._tables: dict[str, dict[str, list[str]]] = {}
        for table in self.PRELOAD:
            if index.count(table) <= self.PRELOAD_MAX:
                whole: dict[str, list[str]] = {}
                for key, value in index.scan(table):
                    whole.setdefault(key, []).append(value)
                self._tables[table] = whole
        self._index_all = index.get_all
        self._index_all_many = index.get_all_many
        self._layer: dict[str, list[str]] = {}  # job_children of the layer being walked

    def _all(self, table: str, key: str) -> list[str]:
        if table == "job_children":
            found = self._layer.get(key)
            if found is not None:
                return found
        whole = self._tables.get(table)
        return self._index_all(table, key) if whole is None else whole.get(key, [])

    def _children_of_layer(self, layer: list[tuple[str, str]]) -> None:
        """Every job's children in this layer in one index read, not one read per job."""
        jobs = [oid for edge_kind, oid in layer if edge_kind == model.JOB and is_uuid(oid)]
        self._layer = dict(zip(jobs, self._index_all_many("job_children", jobs))) if jobs else {}

    def kind_of(self, record_id: str) -> str | None:
        if not (is_hash(record_id) or is_uuid(record_id)):
            return None
        kind = self.repo.lookup("objects", record_id)
        if isinstance(kind, str):
            return kind
        if is_uuid(record_id) and _start_note(self.repo, record_id) is not None:
            return model.JOB
        got = readable(self.repo, [record_id])[0]
        return None if isinstance(got, Missing) else got[0]

    def _read(self, layer: list[tuple[str, str]]) -> list[Reached]:
        ids = [oid for _, oid in layer if is_hash(oid) or is_uuid(oid)]
        got = dict(zip(ids, readable(self.repo, ids)))
        out = []
        for _, oid in layer:
            item = got.get(oid)
            if item is None or isinstance(item, Missing):
                note = _start_note(self.repo, oid) if is_uuid(oid) else None
                out.append(Reached(oid, model.JOB if note else None, None, note))
                continue
            kind, payload = item
            try:
                doc = model.decode(kind, payload, oid) if kind in model.REGISTRY else None
                if doc is not None:
                    model.verify_doc(kind, oid, doc)
            except CorruptObject as exc:
                log.warning("export: skipping %s", exc)
                out.append(Reached(oid, None, None))
                continue
            out.append(Reached(oid, kind, payload, doc))
        return out

    def _edges(self, edge_kind: str, item: Reached) -> Iterator[tuple[str, str]]:
        oid, get_all = item.id, self._all
        same = item.kind == edge_kind and item.doc is not None
        if edge_kind == model.VALUE:
            for child in item.doc["subvalues"] if same and item.doc else get_all("subvalues", oid):
                yield model.VALUE, child
        elif edge_kind == model.JOB:
            if item.kind == model.JOB and item.doc is not None:
                yield from model.edges(model.JOB, oid, item.doc)
            item.children = [schema.timed_id(e) for e in get_all("job_children", oid)]
            for child in item.children:
                yield model.JOB, child
        elif edge_kind in EXPORT_KINDS:
            if same and item.doc is not None:
                yield from model.edges(edge_kind, oid, item.doc)
            if edge_kind == model.TAG:
                for child in get_all("tag_children", oid):
                    yield model.TAG, child
        for tag_hash in get_all("tags_by_entity", oid):
            yield model.TAG, tag_hash

    def records(self, roots: Iterable[str]) -> Iterator[Reached]:
        """Every record the roots reach, breadth first, each once (roots of other kinds, or
        unknown, are skipped as redun skips them)."""
        seen: set[str] = set()
        layer = []
        for root in roots:
            kind = self.kind_of(root)
            if kind in EXPORT_KINDS:
                layer.append((kind, root))
        while layer:
            fresh = []
            for edge_kind, oid in layer:
                if oid not in seen:
                    seen.add(oid)
                    fresh.append((edge_kind, oid))
            if not fresh:
                break
            reached = self._read(fresh)
            self._children_of_layer(fresh)
            layer = []
            for (edge_kind, _), item in zip(fresh, reached):
                layer.extend(self._edges(edge_kind, item))
                yield item


# -- redun's stream -----------------------------------------------------------------------------


def result_types(repo: Repository, items: list[Reached]) -> dict[str, str | None]:
    """The redun type of each ended job's result (by job id), in two index reads for all."""
    calls = {item.id: item.doc["call_hash"] for item in items
             if item.kind == model.JOB and item.payload is not None and item.doc and item.doc.get("call_hash")}  # fmt: skip
    results = dict(zip(calls.values(), repo.index.get_many("call_result", list(calls.values()))))
    hashes = sorted({v for v in results.values() if isinstance(v, str)})
    types = dict(zip(hashes, repo.index.get_many("value_type", hashes)))
    out: dict[str, str | None] = {}
    for job_id, call_hash in calls.items():
        found = types.get(results[call_hash]) if isinstance(results[call_hash], str) else None
        out[job_id] = found if isinstance(found, str) else None
    return out


def redun_record(
    repo: Repository, item: Reached, types: dict[str, str | None] | None = None
) -> dict[str, Any] | None:
    """The redun export record of a reached record (None: not one redun's export knows);
    ``types``: result_types of a batch holding it, when the caller read them in bulk."""
    if item.kind not in EXPORT_KINDS:
        return None
    if item.kind != model.JOB:
        assert item.payload is not None
        try:
            return model.to_export(item.kind, item.id, item.payload, doc=item.doc)
        except (CorruptObject, KeyError, TypeError) as exc:
            log.warning("export: cannot export %s %s: %s", item.kind, item.id, exc)
            return None
    job = item.doc
    if job is None:
        return None
    result_type = None
    if types is not None and item.id in types:
        result_type = types[item.id]
    elif job.get("call_hash"):
        value_hash = repo.index.get("call_result", job["call_hash"])
        if isinstance(value_hash, str):
            found = repo.index.get("value_type", value_hash)
            result_type = found if isinstance(found, str) else None
    payload = item.payload
    if payload is None:  # still running: its record is built from its start note
        payload, _ = job_kind.JOB_KIND.build(
            item.id, start_time=job["start_time"], end_time=None, task_hash=job["task_hash"], cached=False,
            call_hash=None, parent_id=job.get("parent_id"), execution_id=job["execution_id"],
        )  # fmt: skip
        job = None
    children = item.children
    if children is None:
        children = [schema.timed_id(e) for e in repo.index.get_all("job_children", item.id)]
    return model.to_export(model.JOB, item.id, payload, job_children=children, result_type=result_type, doc=job)


def export_redun(repo: Repository, roots: list[str] | None, out: TextIO) -> int:
    """redun's stream of the roots (default: every execution, newest first); records written."""
    count = 0
    write, dumps = out.write, json.dumps
    walked = Walk(repo).records(roots if roots is not None else newest_executions(repo))
    while batch := list(itertools.islice(walked, _BATCH)):
        types = result_types(repo, batch)
        for item in batch:
            record = redun_record(repo, item, types)
            if record is not None:
                write(dumps(record))
                write("\n")
                count += 1
    return count


# -- objstore's stream --------------------------------------------------------------------------


@dataclass
class FullExport:
    repo: Repository
    out: TextIO
    emitted: set[str] = field(default_factory=set)
    running: list[str] = field(default_factory=list)  # jobs with a start note only
    calls: list[dict[str, Any]] = field(default_factory=list)
    handle_names: set[str] = field(default_factory=set)
    values: list[str] = field(default_factory=list)
    count: int = 0

    def line(self, doc: dict[str, Any]) -> None:
        self.out.write(json.dumps(doc, separators=(",", ":")))
        self.out.write("\n")
        self.count += 1

    def emit(self, object_id: str, kind: str, payload: bytes, doc: dict[str, Any] | None = None) -> None:
        if object_id in self.emitted:
            return
        self.emitted.add(object_id)
        self.line(streams.object_line(object_id, kind, payload, doc))
        if kind == model.CALL:
            self.calls.append(doc or model.decode(kind, payload, object_id))
        elif kind == model.HANDLE:
            self.handle_names.add((doc or model.decode(kind, payload, object_id))["fullname"])
        elif kind == model.VALUE:
            self.values.append(object_id)

    def emit_ids(self, ids: Iterable[str], *, closure: bool = True) -> None:
        """Emit these objects (and, with ``closure``, the subvalues of the values among them)."""
        todo = [i for i in dict.fromkeys(ids) if i not in self.emitted and (is_hash(i) or is_uuid(i))]
        while todo:
            batch, todo = todo[:2048], todo[2048:]
            nxt = []
            for oid, got in zip(batch, readable(self.repo, batch)):
                if isinstance(got, Missing) or oid in self.emitted:
                    continue
                kind, payload = got
                self.emit(oid, kind, payload)
                if closure and kind == model.VALUE:
                    nxt.extend(value_kind.split(payload, oid)[0]["subvalues"])
            todo.extend(i for i in nxt if i not in self.emitted)

    def walk(self, roots: list[str]) -> None:
        for item in Walk(self.repo).records(roots):
            if item.payload is not None and item.kind is not None:
                self.emit(item.id, item.kind, item.payload, item.doc)
            elif item.kind == model.JOB and item.id not in self.emitted:
                self.running.append(item.id)

    def closure_of_roots(self) -> None:
        """What a reached record needs for its cache beyond redun's walk: the eval heads of its
        calls (and their values), the handle graphs and states of its handles."""
        repo = self.repo
        heads: dict[str, str] = {}
        for call in self.calls:
            call_eval = hashing.hash_eval(call["task_hash"], call["args_hash"])
            head = repo.eval_head(call_eval, by_path=False)  # heads are journaled: no GET per call
            if isinstance(head, str):
                heads[call_eval] = head
        # Heads no reached call names but whose value was reached (a scheduler task's, such as
        # catch: redun caches it by an eval hash only the pickled expression knows).
        for eval_hash, value_hash in repo.scan("evals"):
            if value_hash in self.emitted:
                heads.setdefault(eval_hash, value_hash)
        self.emit_ids(heads.values())
        for value_hash in list(self.values):
            record = repo.lookup("handles", value_hash)
            if isinstance(record, str):
                self.emit_ids([record], closure=False)
        handles = set()
        for fullname in sorted(self.handle_names):
            handles.update(repo.lookup_all("handles_by_name", schema.handle_name_key(fullname)))
        records = [repo.lookup("handles", h) for h in sorted(handles)]
        self.emit_ids([r for r in records if isinstance(r, str)], closure=False)
        self.emit_ids(sorted(handles))
        edges = [handle_kind.edge_id(h, c) for h in sorted(handles) for c in repo.lookup_all("handle_children", h)]
        self.emit_ids(edges, closure=False)
        for eval_hash, value_hash in heads.items():
            self.line({"_type": streams.EVAL, "eval_hash": eval_hash, "value_hash": value_hash})

    def whole(self) -> None:
        """Every object, newest flush first (the journal says what each flush wrote), then any
        the index knows that no segment lists. Payloads go out as stored: a JSON payload is
        canonical JSON already, so it becomes its line's "doc" without a parse and a re-dump."""
        repo = self.repo
        names = repo.journal.names()
        for start in range(len(names), 0, -_SEGMENTS):
            batch = names[max(0, start - _SEGMENTS) : start]
            ids: list[str] = []
            for name, data in reversed(list(zip(batch, repo.blobs.read_many(layout.segment_key(n) for n in batch)))):
                if isinstance(data, Missing):
                    continue
                try:
                    listing, _ = journal_mod.decode(name, data)
                except CorruptObject as exc:
                    log.warning("export: skipping an unreadable journal segment: %s", exc)
                    continue
                ids.extend(oid for oid, _ in listing)
            self.emit_raw(ids)
        self.emit_raw([k for k, _ in repo.scan("objects")])

    def emit_raw(self, ids: list[str]) -> None:
        todo = [i for i in dict.fromkeys(ids) if i not in self.emitted]
        write = self.out.write
        for start in range(0, len(todo), 2048):
            batch = todo[start : start + 2048]
            for oid, got in zip(batch, readable(self.repo, batch)):
                if isinstance(got, Missing):
                    continue
                kind, payload = got
                self.emitted.add(oid)
                if kind == model.VALUE:
                    cut = payload.find(b"\0")
                    write(f'{{"_type":"object","id":"{oid}","kind":"value","header":{payload[:cut].decode()},'
                          f'"data":"{streams.b64(payload[cut + 1 :])}"}}\n')
                elif kind in model.REGISTRY and payload[:1] == b"{":
                    write(f'{{"_type":"object","id":"{oid}","kind":"{kind}","doc":{payload.decode()}}}\n')
                    if kind == model.HANDLE:
                        self.handle_names.add(model.decode(kind, payload, oid)["fullname"])
                else:
                    self.line(streams.object_line(oid, kind, payload))
                    continue
                self.count += 1

    def notes(self, jobs: Iterable[str], executions: Iterable[str]) -> None:
        for job_id in jobs:
            note = self.repo.lookup("job_start", job_id)
            if isinstance(note, str) and job_id not in self.emitted:
                try:
                    self.line({"_type": streams.JOB_START, "id": job_id, "start": json.loads(note)})
                except ValueError:
                    log.warning("export: skipping an unreadable start note of job %s", job_id)
        for exec_id in executions:
            stamp = self.repo.lookup("exec_updated", exec_id)
            if isinstance(stamp, str):
                self.line({"_type": streams.EXEC_UPDATED, "id": exec_id, "time": stamp})

    def states(self) -> None:
        for fullname in sorted(self.handle_names):
            _, raw = self.repo.read_handle_state(fullname)
            if isinstance(raw, Missing):
                continue
            invalid = handle_kind.decode_state(raw)
            if invalid is None:
                log.warning("export: skipping the unreadable state of handle %s", fullname)
                continue
            self.line({"_type": streams.HANDLE_STATE, "fullname": fullname, "invalid": sorted(invalid)})


def export_full(repo: Repository, roots: list[str] | None, out: TextIO) -> int:
    """objstore's stream: with roots, what they reach and what its cache needs; without, the
    whole repository, newest flush first. Lines written, header and end line included."""
    ex = FullExport(repo, out)
    ex.line(streams.header_line(repo.format["version"]))
    if roots is not None:
        ex.walk(roots)
        ex.closure_of_roots()
        executions = [i for i in ex.emitted if repo.lookup("objects", i) == model.EXECUTION]
        ex.notes(ex.running, sorted(executions))
    else:
        ex.whole()
        for eval_hash, value_hash in repo.scan("evals"):
            ex.line({"_type": streams.EVAL, "eval_hash": eval_hash, "value_hash": value_hash})
        started = [k for k, _ in repo.scan("job_start") if k not in ex.emitted]
        ex.notes(started, [k for k, _ in repo.scan("exec_updated")])
    ex.states()
    ex.line({"_type": streams.END, "count": ex.count - 1})
    return ex.count


__all__ = ["Walk", "Reached", "export_redun", "export_full", "newest_executions", "redun_record", "result_types"]
