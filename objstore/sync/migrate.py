"""migrate-redun: every row of a redun database (schema 3.5) as objstore records, cache included.

What redun's export drops is kept: the eval cache (``evaluation``), subtree tasks, handles with
their edges and validity, tag edits, execution heartbeats, values kept in redun's value store.
Everything is read and converted, and every check made, before anything is written; then one
flush writes objects, eval heads and the journal segment (a flush's order), and the handle
states follow by compare-and-swap. Migrating twice adds nothing; migrating into a repository
that already ran work keeps its eval heads where they differ (its own work is newer).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from objstore import codec, hashing, model
from objstore.errors import ConcurrentUpdate, CorruptObject, InvalidId, UnsupportedSource
from objstore.fs import open_url
from objstore.ids import is_hash
from objstore.missing import Missing
from objstore.model import call as call_kind
from objstore.model import handle as handle_kind
from objstore.model import job as job_kind
from objstore.model import tag as tag_kind
from objstore.model import value as value_kind
from objstore.model.schema import IndexEntry
from objstore.model.times import format_timestamp
from objstore.repo import Repository
from objstore.store import open_blobs
from objstore.sync import redun_db
from objstore.sync.redun_db import Source, Tables
from refs.backoff import attempts

Progress = Callable[[str, int], None]
CAS_RETRIES = 100


@dataclass
class MigrateStats:
    schema: str = ""
    objects: int = 0
    present: int = 0
    evals: int = 0
    eval_conflicts: int = 0  # heads the repository already had with another value (kept)
    notes: int = 0
    states: int = 0
    from_value_store: int = 0
    seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items())) or "none new"


def ts(value: Any) -> str | None:
    """A timestamp as redun's export spells it, from sqlite text (naive UTC) or a PG datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == 26 and value[19] == "." and value[10] == " ":
            # "YYYY-MM-DD HH:MM:SS.ffffff": str() of the aware datetime, without parsing it
            return (value[:19] if value.endswith(".000000") else value) + "+00:00"
        value = datetime.fromisoformat(value)
    return format_timestamp(value)


def read_value_store(url: str, hashes: list[str]) -> dict[str, bytes]:
    """Bytes of ``hashes`` from redun's value store (``<root>/ab/cdef…``); absent ones left out."""
    fs, root = open_url(url)
    blobs = open_blobs(fs, root)
    found = {}
    for h, data in zip(hashes, blobs.read_many(f"{h[:2]}/{h[2:]}" for h in hashes)):
        if not isinstance(data, Missing):
            found[h] = data
    return found


class Converter:
    """Rows -> (id, kind, payload, entries), notes, heads and states; no writes."""

    def __init__(self, tables: Tables, source: Source, known: Callable[[str], bool]):
        self.t = tables
        self.source = source
        self.known = known
        self.objects: list[tuple[str, str, bytes, list[IndexEntry]]] = []
        self.notes: list[IndexEntry] = []
        self.heads: dict[str, str] = {}
        self.invalid: dict[str, set[str]] = defaultdict(set)
        self.migrated_handles: dict[str, set[str]] = defaultdict(set)
        self.present = 0
        self.from_value_store = 0
        self.values: set[str] = set()
        self.call_args: dict[str, str] = {}

    def add(self, object_id: str, kind: str, payload: bytes, entries: list[IndexEntry]) -> None:
        # Derivable ids (arguments, tags) are checked against the rows before building: the
        # payload is never parsed back.
        if self.known(object_id):
            self.present += 1
            return
        self.objects.append((object_id, kind, payload, entries))

    def convert(self) -> None:
        for step in (self.values_, self.calls, self.jobs, self.tags, self.handles, self.evals):
            step()

    def values_(self) -> None:
        subs: dict[str, list[str]] = defaultdict(list)
        for parent, child in self.t["subvalue"]:
            subs[parent].append(child)
        subtype: dict[str, dict] = {h: value_kind.file_subtype(p) for h, p in self.t["file"]}
        for h, name, namespace, source in self.t["task"]:
            subtype[h] = value_kind.task_subtype(name, namespace, source)
        rows = [(h, type_, fmt, bytes(data or b"")) for h, type_, fmt, data in self.t["value"]]
        self.values = {h for h, *_ in rows}
        # An empty value column is redun's mark of "the bytes are in the value store".
        stored = [h for h, _, _, data in rows if not data and not self.known(h)]
        for h in stored:
            if not is_hash(h):
                raise UnsupportedSource(f"value row with a malformed hash {h!r}")
        found = read_value_store(self.source.value_store, stored) if stored and self.source.value_store else {}
        missing = [h for h in stored if h not in found]
        if missing:
            where = (
                f"but {len(missing)} of them are missing from {self.source.value_store}"
                if self.source.value_store else "pass --value-store PATH (redun's value_store_path)"
            )  # fmt: skip
            raise UnsupportedSource(
                f"{len(stored)} values of {self.source.shown} are in redun's value store; {where} (e.g. {missing[0]})"
            )
        self.from_value_store = len(found)
        for h, type_, fmt, data in rows:
            if self.known(h):
                self.present += 1
                continue
            payload, entries = value_kind.KIND.build(h, type_, fmt, found.get(h, data), subs.get(h, ()), subtype.get(h))
            self.objects.append((h, model.VALUE, payload, entries))

    def calls(self) -> None:
        upstream: dict[str, list[str]] = defaultdict(list)
        for arg_hash, up in self.t["argument_result"]:
            upstream[arg_hash].append(up)
        args: dict[str, dict[str, dict]] = defaultdict(dict)
        for arg_hash, call_hash, value_hash, position, key in self.t["argument"]:
            name = key if key is not None else str(position)
            if call_kind.argument_hash(call_hash, name, value_hash) != arg_hash:
                raise UnsupportedSource(f"argument {arg_hash} of call node {call_hash}: its hash does not match its value")
            args[call_hash][name] = {"arg_hash": arg_hash, "value_hash": value_hash, "upstream": sorted(set(upstream[arg_hash]))}
        children: dict[str, list[str]] = defaultdict(list)
        for parent, child in self.t["call_edge"]:
            children[parent].append(child)
        subtree: dict[str, list[str]] = defaultdict(list)
        for call_hash, task_hash in self.t["call_subtree_task"]:
            subtree[call_hash].append(task_hash)
        for call_hash, task_name, task_hash, args_hash, value_hash, stamp in self.t["call_node"]:
            self.call_args[call_hash] = args_hash
            if value_hash not in self.values and not self.known(value_hash):
                raise UnsupportedSource(f"call node {call_hash}: its result {value_hash} is not in the database")
            payload, entries = call_kind.KIND.build(
                call_hash, task_name=task_name, task_hash=task_hash, args_hash=args_hash, value_hash=value_hash,
                timestamp=ts(stamp), args=args.get(call_hash, {}), children=children.get(call_hash, []),
                subtree_tasks=subtree.get(call_hash, []),
            )  # fmt: skip
            self.add(call_hash, model.CALL, payload, entries)

    def jobs(self) -> None:
        starts = {}
        for job_id, start, end, task_hash, cached, call_hash, parent_id, exec_id in self.t["job"]:
            starts[job_id] = ts(start)
            if end is None:
                # Unfinished (running, or its worker died): a start note, as a live job has, so a
                # later migrate of the finished run can still write the ended job.
                if not self.known(job_id):
                    info = {"start_time": ts(start), "task_hash": task_hash, "parent_id": parent_id, "execution_id": exec_id}
                    self.notes.extend(job_kind.JOB_KIND.start_entries(job_id, info))
                continue
            payload, entries = job_kind.JOB_KIND.build(
                job_id, start_time=ts(start), end_time=ts(end), task_hash=task_hash, cached=bool(cached),
                call_hash=call_hash, parent_id=parent_id, execution_id=exec_id,
                args_hash=self.call_args.get(call_hash) if call_hash else None,
            )  # fmt: skip
            self.add(job_id, model.JOB, payload, entries)
        for exec_id, argv, job_id, updated in self.t["execution"]:
            payload, entries = job_kind.EXECUTION_KIND.build(exec_id, args=argv, job_id=job_id, start_time=starts.get(job_id))
            self.add(exec_id, model.EXECUTION, payload, entries)
            if updated is not None:
                self.notes.append(("put", "exec_updated", exec_id, ts(updated) or ""))

    def tags(self) -> None:
        import json

        parents: dict[str, list[str]] = defaultdict(list)
        for parent, child in self.t["tag_edit"]:
            parents[child].append(parent)
        sqlite = self.source.dialect == "sqlite"
        for tag_hash, entity_type, entity_id, key, value, _is_current in self.t["tag"]:
            if sqlite and isinstance(value, str):
                value = json.loads(value)
            entity = getattr(entity_type, "name", entity_type)
            doc = tag_kind.tag_doc(str(entity), entity_id or "", key, value, parents.get(tag_hash, []))
            if tag_kind.tag_hash_of(doc) != tag_hash:
                raise UnsupportedSource(f"tag {tag_hash}: its hash does not match its entity, key, value and parents")
            self.add(tag_hash, model.TAG, codec.canonical_json(doc), tag_kind.KIND.entries_of(tag_hash, doc))

    def handles(self) -> None:
        for h, fullname, value_hash, key, is_valid in self.t["handle"]:
            record = handle_kind.record_id(h)
            payload = handle_kind.HANDLE_KIND.encode(h, fullname, key, value_hash)
            self.add(record, model.HANDLE, payload, model.derive_entries(model.HANDLE, record, payload))
            self.migrated_handles[fullname].add(h)
            if not is_valid:
                self.invalid[fullname].add(h)
        for parent, child in self.t["handle_edge"]:
            edge = handle_kind.edge_id(parent, child)
            payload = handle_kind.HANDLE_EDGE_KIND.encode(parent, child)
            self.add(edge, model.HANDLE_EDGE, payload, model.derive_entries(model.HANDLE_EDGE, edge, payload))

    def evals(self) -> None:
        for eval_hash, task_hash, args_hash, value_hash in self.t["evaluation"]:
            if hashing.hash_eval(task_hash, args_hash) != eval_hash:
                raise UnsupportedSource(f"evaluation {eval_hash}: its hash does not match its task and arguments")
            if value_hash not in self.values and not self.known(value_hash):
                raise UnsupportedSource(f"evaluation {eval_hash}: its value {value_hash} is not in the database")
            self.heads[eval_hash] = value_hash


def _merge_states(repo: Repository, conv: Converter) -> int:
    """Per handle name: the source decides for the hashes it has, the repository keeps its
    verdict on the others (what was rolled back elsewhere stays rolled back)."""
    changed = 0
    for fullname, migrated in conv.migrated_handles.items():
        source_invalid = conv.invalid.get(fullname, set())
        for _ in attempts(CAS_RETRIES):
            _, raw = repo.read_handle_state(fullname)
            current = set() if isinstance(raw, Missing) else (handle_kind.decode_state(raw) or set())
            new = (current - migrated) | source_invalid
            if new == current:
                break
            if repo.swap_handle_state(fullname, raw, handle_kind.encode_state(new)):
                changed += 1
                break
        else:
            raise ConcurrentUpdate(f"could not update the state of handle {fullname}: too many concurrent writers")
    return changed


def _nothing_known(object_id: str) -> bool:
    return False


def migrate(source: Source, repo: Repository, *, progress: Progress | None = None) -> MigrateStats:
    """Read ``source`` (refusing any schema but 3.5) and write all of it into ``repo``."""
    started = time.monotonic()
    version, tables = redun_db.read(source)
    if progress:
        progress("read", sum(len(rows) for rows in tables.values()))

    def known(object_id: str) -> bool:
        return isinstance(repo.lookup("objects", object_id), str)

    if repo.index.count("objects") == 0 and not repo.pending():
        known = _nothing_known  # a new repository: spare a lookup per row

    conv = Converter(tables, source, known)
    try:
        conv.convert()
    except (CorruptObject, InvalidId, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, UnsupportedSource):
            raise
        raise UnsupportedSource(f"{source.shown}: a row objstore cannot take ({exc}); nothing was written") from None
    stats = MigrateStats(schema=f"{version[0]}.{version[1]}", present=conv.present, from_value_store=conv.from_value_store)
    for object_id, kind, payload, entries in conv.objects:
        repo.add(object_id, kind, payload, entries)
        stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
    stats.objects = len(conv.objects)
    if conv.notes:
        repo.note(conv.notes)
        stats.notes = len(conv.notes)
    for eval_hash, value_hash in conv.heads.items():
        head = repo.eval_head(eval_hash, by_path=False)
        if isinstance(head, Missing):
            repo.set_eval_head(eval_hash, value_hash)
            stats.evals += 1
        elif head != value_hash:
            stats.eval_conflicts += 1
    if progress:
        progress("write", stats.objects)
    repo.flush()  # objects, then eval heads, then the journal segment
    stats.states = _merge_states(repo, conv)
    stats.seconds = time.monotonic() - started
    return stats


__all__ = ["migrate", "MigrateStats", "Converter", "ts", "read_value_store"]
