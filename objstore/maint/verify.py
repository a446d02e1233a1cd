"""Verifying one pack file, in this process or in a worker process (fsck spreads packs over the
machine's cores: decoding every entry of a million objects is CPU work, and packs are
independent). Every check uses objstore.pack's own functions: the toc parse, the entry read
(frame checksum, kind, length, the id prefix), then model.verify (the recomputable ids)."""

from __future__ import annotations

import hashlib
import itertools
import operator
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat

from objstore import codec, layout, model, pack
from objstore.errors import CorruptObject
from objstore.fs import open_url
from objstore.ids import all_ids
from objstore.maint import salvage
from objstore.missing import Missing
from objstore.repo.checkpoint import well_formed_columns
from objstore.store import open_blobs

# The kinds whose references fsck follows (model.edges): calls, jobs, executions.
FOLLOWED = frozenset((model.CALL, model.JOB, model.EXECUTION))
Edges = list[tuple[str, str]]


@dataclass
class PackCheck:
    name: str
    size: int = 0
    missing: bool = False
    intact: bool = True
    # The toc as columns (row i: ids[i], kinds[i], offsets[i], lengths[i]); for a pack whose toc
    # is unreadable, the entries salvage found. Columns pickle as four lists, not a tuple per row.
    ids: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    errors: list[tuple[str, str | None]] = field(default_factory=list)  # (detail, object id)
    good: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    edges: list[tuple[str, str, Edges]] = field(default_factory=list)  # (id, kind, edges) verified ones
    salvaged: list[salvage.Found] | None = None  # readable entries, when the pack is damaged
    toc_unreadable: bool = False
    verified: int = 0

    def rows(self) -> Iterator[tuple[str, str, int, int]]:
        return zip(self.ids, self.kinds, self.offsets, self.lengths)


def edges_of(kind: str, object_id: str, payload: bytes) -> Edges:
    return _edges(kind, object_id, model.decode(kind, payload, object_id))


def _edges(kind: str, object_id: str, doc: dict) -> Edges:
    try:
        return list(model.edges(kind, object_id, doc))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CorruptObject(object_id, f"malformed {kind}: {exc!r}") from None


def layout_problems(toc: pack.Toc) -> list[str]:
    """Overlapping entries and ids listed twice; none for a pack as build() writes it (entries
    in toc order, back to back: one pass of C loops proves it)."""
    out: list[str] = []
    if toc.in_order() and len(set(toc.ids)) == len(toc):
        return out
    spans = sorted(zip(toc.offsets, map(operator.add, toc.offsets, toc.lengths), toc.ids))
    for (s0, e0, a), (s1, _, b) in zip(spans, spans[1:]):
        if s1 < e0:
            out.append(f"entries of {a} and {b} overlap ({s0}-{e0} and {s1}-)")
    seen: set[str] = set()
    for oid in toc.ids:
        if oid in seen:
            out.append(f"its toc lists {oid} twice")
        seen.add(oid)
    return out


Span = tuple[str, str] | None  # the sampled ids: those whose first 8 hex digits are in [lo, hi)


def sample_span(sample: float, seed: int | None) -> Span:
    """The ids a ``sample`` fraction checks: a range of the id space at a random place. A range
    (not a coin per object) lets fsck read just that range of each index table too."""
    if sample >= 1.0:
        return None
    start = random.Random(seed).random() * (1.0 - sample)
    return f"{int(start * 16**8):08x}", f"{min(int((start + sample) * 16**8), 16**8 - 1):08x}"


def in_span(object_id: str, span: Span) -> bool:
    return span is None or span[0] <= object_id[:8] < span[1]


def sampled_rows(ids: Sequence[str], span: Span) -> Iterable[int]:
    """The row numbers of ``ids`` in ``span`` (``lo <= id[:8] < hi`` is ``lo <= id < hi`` for
    8-digit bounds), compared in C loops: a sample skips most rows of every toc."""
    if span is None:
        return range(len(ids))
    lo, hi = span
    inside = map(operator.and_, map(operator.ge, ids, repeat(lo)), map(operator.lt, ids, repeat(hi)))
    return itertools.compress(range(len(ids)), inside)


def verify_pack(name: str, data: bytes, *, span: Span = None) -> PackCheck:
    """Everything fsck checks in one pack file's bytes (the entries of ids in ``span``)."""
    result = PackCheck(name, len(data))
    result.intact = hashlib.sha256(data).hexdigest()[:40] + ".pack" == name
    try:
        toc = pack.read_toc(data, name=name)
    except CorruptObject as exc:
        result.toc_unreadable = True
        result.errors.append((f"its toc is unreadable ({exc.reason})", None))
        _salvage(result, data)
        return result
    problems = layout_problems(toc)
    result.errors.extend((why, None) for why in problems)
    read_entry, verify, followed = pack.read_entry, model.verify, FOLLOWED
    ids, kinds, offsets, lengths = toc.ids, toc.kinds, toc.offsets, toc.lengths
    result.ids, result.kinds, result.offsets, result.lengths = list(ids), list(kinds), list(offsets), list(lengths)
    good, bad, edges, errors = result.good, result.bad, result.edges, result.errors
    for i in sampled_rows(ids, span if result.intact else None):  # a damaged pack: every entry
        oid, kind, offset = ids[i], kinds[i], offsets[i]
        try:
            got_kind, payload = read_entry(oid, data[offset : offset + lengths[i]], expect_kind=kind)
            if got_kind in followed:  # decoded once: verified and its references taken
                doc = model.decode(got_kind, payload, oid)
                model.verify_doc(got_kind, oid, doc)
                edges.append((oid, got_kind, _edges(got_kind, oid, doc)))
            else:
                verify(got_kind, oid, payload)
        except CorruptObject as exc:
            errors.append((f"entry at {offset}: {exc.reason}", oid))
            bad.append(oid)
            continue
        good.append(oid)
    result.verified = len(good) + len(bad)
    if not result.intact and not result.bad and not problems:
        result.errors.append(("its bytes differ from what its name (their sha256) says, though every entry still verifies", None))
    if not result.intact or result.bad or problems:
        result.salvaged = salvage.scan(data)[0]
    return result


def _salvage(result: PackCheck, data: bytes) -> None:
    found, damaged = salvage.scan(data)
    result.salvaged = found
    for entry in found:
        result.good.append(entry.object_id)
        result.ids.append(entry.object_id)
        result.kinds.append(entry.kind)
        result.offsets.append(entry.offset)
        result.lengths.append(entry.length)
        if entry.kind in FOLLOWED:
            try:
                result.edges.append((entry.object_id, entry.kind, edges_of(entry.kind, entry.object_id, entry.payload)))
            except CorruptObject:
                pass
    for offset, why in damaged:
        oid = why.split(":", 1)[0] if ":" in why else None
        oid = oid if oid and len(oid) >= 36 else None
        result.errors.append((f"at {offset}: {why}", oid))
        if oid:
            result.bad.append(oid)
    result.verified = len(found)


def verify_pack_at(url: str, storage_options: dict | None, name: str, span: Span) -> PackCheck:
    """verify_pack on a pack read here (a worker process opens the repository's storage)."""
    fs, root = open_url(url, storage_options)
    data = open_blobs(fs, root).read(layout.pack_key(name))
    if isinstance(data, Missing):
        return PackCheck(name, missing=True)
    return verify_pack(name, data, span=span)


# -- journal files -------------------------------------------------------------------------------

_OPS = frozenset(("put", "add", "del", "delall"))


def well_formed(entry: object, tables: dict[str, bool] | frozenset[str]) -> bool:
    """What Index.check_entry checks of a journal entry, cheaply (a refresh skips the others)."""
    if type(entry) is not list or len(entry) != 4:
        return False
    op, table, key, value = entry
    if op not in _OPS or table not in tables or type(key) is not str or type(value) is not str:
        return False
    n = len(key)
    return 0 < n and (n <= 127 or 0 < len(key.encode("utf-8")) <= 511)




def _segment(name: str, data: bytes) -> tuple[list[str], list]:
    """(listed ids, raw entries): journal.decode, with its per-item checks done a column at a
    time (a million records' listings): the same answer, a malformed item counted, not logged."""
    from objstore.repo import journal as jmod

    where = f"journal/{name}"
    _, payload = codec.decode(data, object_id=where, expect_kind=jmod.KIND)
    doc = codec.parse_json(payload, object_id=where)
    if not isinstance(doc, dict) or doc.get("format") != jmod.FORMAT:
        raise CorruptObject(where, "not an objstore journal segment")
    items = doc.get("objects") or []
    entries = doc.get("entries") or []
    if not isinstance(items, list) or not isinstance(entries, list):
        raise CorruptObject(where, "not an objstore journal segment")
    if not items:
        return [], entries
    if set(map(type, items)) == {list} and set(map(len, items)) == {2}:
        ids, kinds = zip(*items)
        if set(map(type, ids)) == {str} and set(map(type, kinds)) == {str} and all_ids(ids):
            return list(ids), entries
    listing, entries = jmod.decode(name, data)
    return [oid for oid, _ in listing], entries


def _put_objects(entries: list, tables: Mapping[str, bool]) -> list[str] | None:
    """The ids of the ("put", "objects", id, kind) entries when every entry is well formed
    (well_formed), checked a column at a time; None when some entry may not be."""
    columns = well_formed_columns(entries, tables)
    if columns is None:
        return None
    ops, names, keys, _ = columns
    objects = map(operator.and_, map(operator.eq, names, repeat("objects")), map(operator.eq, ops, repeat("put")))
    return list(itertools.compress(keys, objects))


@dataclass
class JournalCheck:
    name: str
    missing: bool = False
    reason: str | None = None  # why it does not parse
    entries: int = 0
    malformed: int = 0
    ids: list[str] = field(default_factory=list)  # the objects it lists


def verify_journal(name: str, data: bytes) -> JournalCheck:
    from objstore.repo import checkpoint as ckpt

    result = JournalCheck(name)
    try:
        if layout.is_checkpoint_name(name):
            # Every block verified; only the objects table's rows are made into strings.
            header = ckpt.parse_header(data, name)
            for descriptor in header.blocks:
                if descriptor["table"] == "objects":
                    block = ckpt.parse_block(header, descriptor, data)
                    result.entries += len(block.keys)
                    result.ids.extend(map(bytes.decode, block.keys))
                else:
                    result.entries += ckpt.check_block(header, descriptor, data)
            return result
        result.ids, entries = _segment(name, data)
    except CorruptObject as exc:
        result.reason = exc.reason
        return result
    tables = model.TABLES
    result.entries = len(entries)
    put = _put_objects(entries, tables)
    if put is None:
        good = [e for e in entries if well_formed(e, tables)]
        result.malformed = len(entries) - len(good)
        put = [e[2] for e in good if e[1] == "objects" and e[0] == "put"]
    result.ids.extend(put)
    return result


def verify_journal_at(url: str, storage_options: dict | None, name: str) -> JournalCheck:
    fs, root = open_url(url, storage_options)
    data = open_blobs(fs, root).read(layout.segment_key(name))
    if isinstance(data, Missing):
        return JournalCheck(name, missing=True)
    return verify_journal(name, data)


__all__ = [
    "PackCheck", "JournalCheck", "Span", "sample_span", "in_span", "verify_pack", "verify_pack_at", "verify_journal", "verify_journal_at",
    "edges_of", "layout_problems", "well_formed", "FOLLOWED",
]
