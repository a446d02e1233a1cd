"""Bulk, cached reads for queries: many objects of one kind at once, each read once a query.

A query (one command, one repl session) keeps what it decoded: records are immutable. Packed
objects are cut from ranged reads of their packs, neighbours in one read; index lookups go in
batches (Repository.lookup_many); which entities carry tags is read once when there are few.
A damaged object is noted (``problems``) and left out, never fatal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from objstore import layout, model, pack
from objstore.backend import MISSING, Provenance
from objstore.errors import CorruptObject, ObjectNotFound
from objstore.ids import is_hash, is_uuid
from objstore.missing import Missing
from objstore.query.resolve import Resolver
from objstore.query.results import ValueInfo

BATCH = 1024
_FEW_TAGS = 20000  # up to this many tags, list the tagged entities once instead of asking per entity
WHAT = {model.JOB: "job", model.CALL: "call node", model.VALUE: "value", model.EXECUTION: "execution", model.TAG: "tag"}


class Cached:
    """The caches and bulk readers every query shares. ``now`` is for tests."""

    def __init__(self, prov: Provenance, *, stale_after: float | None = None, now: datetime | None = None):
        self.prov = prov
        self.core = prov.core
        self.stale_after = stale_after
        self.now = now or datetime.now(UTC)
        self._task_names: dict[str, str] = {}
        self._jobs: dict[str, Any] = {}
        self._values: dict[str, ValueInfo | None] = {}
        self.resolver = Resolver(prov)
        self.problems: list[str] = []  # objects found damaged while reading (each named once)
        self._docs: dict[str, Any] = {}  # decoded metadata by object id
        self._headers: dict[bytes, dict[str, Any]] = {}  # value header bytes -> decoded (shared)
        self._raw: dict[str, bytes] = {}  # payloads of small values read in bulk
        self._tags: dict[str, list[tuple[str, Any]]] = {}
        self._untagged: set[str] = set()
        self._tagged: set[str] | None = None  # every tagged entity, when there are few
        self._types: dict[str, Any] = {}  # value hash -> its type (or MISSING), from the index

    # -- damage ------------------------------------------------------------------------------

    def damaged(self, object_id: str, what: str, exc: Exception | None = None) -> None:
        """Note an object that could not be read, and why (its pack is gone, it is damaged...);
        the query goes on without it."""
        if exc is None:
            exc = self._why_unreadable(object_id)
        text = f"{what} {object_id} is unreadable" + (f": {exc}" if exc else "")
        if text not in self.problems:
            self.problems.append(text)

    def _why_unreadable(self, object_id: str) -> Exception | None:
        try:
            self.core.get(object_id)
        except (ObjectNotFound, CorruptObject) as exc:
            return exc
        return None

    # -- tasks -------------------------------------------------------------------------------

    def tags_of(self, entity_id: str) -> list[tuple[str, Any]]:
        if entity_id in self._untagged:
            return []
        found = self._tags.get(entity_id)
        if found is None:
            found = [(k, v) for k, v in self.prov.tags.get_tags([entity_id]).get(entity_id, [])]
            self._tags[entity_id] = found
        return list(found)

    # -- jobs --------------------------------------------------------------------------------

    def docs(
        self, ids: list[str], kind: str, *, listed: bool = False, packed: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Decoded metadata of many objects of one kind, read in bulk (neighbours in a pack
        come from one ranged read) and kept for this query. The codec has checked each object's
        checksum; ids are not recomputed here (a display does not need it). An object the index
        lists but that cannot be read is noted damaged and left out. ``packed``: the index's pack
        locations of these ids, when the caller has just read them."""
        want = [i for i in dict.fromkeys(ids) if i not in self._docs and (is_hash(i) or is_uuid(i))]
        for start in range(0, len(want), BATCH):
            batch = want[start : start + BATCH]
            got = self._read_many(batch, kind, listed=listed, packed=packed)
            for object_id, item in zip(batch, got):
                if isinstance(item, Missing):
                    if listed or self.core.kind_of(object_id) == kind:
                        self.damaged(object_id, WHAT.get(kind, kind))
                    continue
                try:
                    if kind == model.VALUE:
                        self._docs[object_id] = self._value_header(item[1], object_id)
                        self._raw[object_id] = item[1]
                    else:
                        self._docs[object_id] = model.decode(kind, item[1], object_id)
                except CorruptObject as exc:
                    self.damaged(object_id, WHAT.get(kind, kind), exc)
        return {i: self._docs[i] for i in ids if i in self._docs}

    def _value_header(self, payload: bytes, object_id: str) -> dict[str, Any]:
        """A value's header, decoded once per distinct header: most values share theirs (an int's
        is an int's), so ten thousand arguments cost a few JSON decodes. Headers are not changed."""
        cut = payload.find(b"\0")
        key = payload[:cut] if cut >= 0 else payload
        head = self._headers.get(key)
        if head is None:
            head = model.decode(model.VALUE, payload, object_id)
            if len(self._headers) < 10_000:
                self._headers[key] = head
        return head

    def _read_many(
        self, ids: list[str], kind: str, *, listed: bool = True, packed: dict[str, str] | None = None
    ) -> list[Any]:
        """(kind, payload) | MISSING per id. Packed objects are cut from ranged reads of their
        packs (neighbours in one read) without the per-object routing of Repository.get_many;
        anything else, or anything that does not check out, goes through the repository (which
        refreshes once on a miss and names what is damaged)."""
        repo = self.prov.repo
        out: list[Any] = [None] * len(ids)
        located: list[tuple[int, pack.Location]] = []
        places = [packed.get(i) for i in ids] if packed is not None else repo.lookup_many("packed", ids)
        for i, where in enumerate(places):
            if isinstance(where, str):
                name, _, span = where.partition(":")
                at, _, size = span.partition(":")
                if at.isdigit() and size.isdigit():
                    located.append((i, pack.Location(name, int(at), int(size))))
        if located and repo.buffer.idle():  # nothing buffered here that could be newer
            plans = pack.plan_reads([loc for _, loc in located])
            datas = repo.blobs.read_ranges([(layout.pack_key(name), offset, length) for name, offset, length, _ in plans])
            for (_, first, _, members), data in zip(plans, datas):
                if isinstance(data, Missing):
                    continue
                entries = []
                for m in members:
                    i, loc = located[m]
                    entries.append((i, ids[i], data[loc.offset - first : loc.offset - first + loc.length]))
                decoded: list[Any]
                try:
                    decoded = pack.read_entries([(oid, entry) for _, oid, entry in entries], expect_kind=kind)
                except CorruptObject:  # one at a time, to keep the good ones
                    decoded = []
                    for _, oid, entry in entries:
                        try:
                            decoded.append(pack.read_entry(oid, entry, expect_kind=kind))
                        except CorruptObject:
                            decoded.append(None)  # the repository's read below names it
                for (i, _, _), item in zip(entries, decoded):
                    out[i] = item
        rest = [i for i, item in enumerate(out) if item is None]
        if rest and not listed:  # ``listed``: the caller knows they exist (named by other records)
            kinds = repo.lookup_many("objects", [ids[i] for i in rest])
            for i, found in zip(rest, kinds):
                if found != kind:
                    out[i] = MISSING  # not an object (yet): no read, and no refresh for it
            rest = [i for i in rest if out[i] is None]
        if rest:
            try:
                got = repo.get_many([ids[i] for i in rest], expect_kind=kind)
            except CorruptObject:
                got = [self._read_one(ids[i], kind) for i in rest]  # find the damaged one(s)
            for i, item in zip(rest, got):
                out[i] = item
        return out

    def _read_one(self, object_id: str, kind: str) -> Any:
        try:
            return self.prov.repo.get(object_id, expect_kind=kind)
        except (ObjectNotFound, CorruptObject):
            return MISSING

    def load_jobs(self, job_ids: list[str]) -> None:
        """Read many ended jobs at once, into the job cache (running ones are start notes)."""
        found = self.docs([j for j in job_ids if j not in self._jobs], model.JOB)
        self._jobs.update(found)

    def prefetch_calls(self, job_ids: list[str]) -> None:
        """The call nodes of these jobs, then their tasks and (packed) argument values, and which
        of them carry tags, in bulk."""
        metas = [self._jobs.get(j) for j in job_ids]
        calls = [m["call_hash"] for m in metas if isinstance(m, dict) and m.get("call_hash")]
        docs = self.docs(calls, model.CALL, listed=True)
        values = [m["task_hash"] for m in metas if isinstance(m, dict) and m.get("task_hash")]
        for doc in docs.values():  # the arguments are shown; a result is known by its type (index)
            values.extend(arg["value_hash"] for _, arg in doc.get("args", []))
        values = [v for v in dict.fromkeys(values) if v not in self._raw and v not in self._values]
        packed = {v: where for v, where in zip(values, self.prov.repo.lookup_many("packed", values)) if isinstance(where, str)}
        self.docs(list(packed), model.VALUE, listed=True, packed=packed)
        self.prefetch_tags([*job_ids, *calls, *values])
        results = [doc["value_hash"] for doc in docs.values() if doc["value_hash"] not in self._types]
        self._types.update(zip(results, self.prov.repo.lookup_many("value_type", results)))

    def prefetch_tags(self, entity_ids: list[str]) -> None:
        """Which of these entities have any tag at all (most have none): the whole (small) list of
        tagged entities read once, else one index read for all of them."""
        todo = [e for e in dict.fromkeys(entity_ids) if e and e not in self._untagged and e not in self._tags]
        if not todo:
            return
        repo = self.prov.repo
        if self._tagged is None and repo.buffer.idle() and repo.index.count("tags_by_entity") <= _FEW_TAGS:
            self._tagged = {key for key, _ in repo.scan("tags_by_entity")}
        if self._tagged is not None:
            self._untagged.update(e for e in todo if e not in self._tagged)
            return
        for entity_id, first in zip(todo, repo.lookup_many("tags_by_entity", todo)):
            if isinstance(first, Missing):
                self._untagged.add(entity_id)


__all__ = ["Cached", "BATCH", "WHAT"]
