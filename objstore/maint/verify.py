"""Verifying one pack file, in this process or in a worker process (fsck spreads packs over the
machine's cores: decoding every entry of a million objects is CPU work, and packs are
independent). Every check uses objstore.pack's own functions: the toc parse, the entry read
(frame checksum, kind, length, the id prefix), then model.verify (the recomputable ids)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from objstore import layout, model, pack
from objstore.errors import CorruptObject
from objstore.fs import open_url
from objstore.maint import salvage
from objstore.missing import Missing
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
    toc: list[tuple[str, str, int, int]] = field(default_factory=list)  # id, kind, offset, length
    errors: list[tuple[str, str | None]] = field(default_factory=list)  # (detail, object id)
    good: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    edges: list[tuple[str, str, Edges]] = field(default_factory=list)  # (id, kind, edges) verified ones
    salvaged: list[salvage.Found] | None = None  # readable entries, when the pack is damaged
    toc_unreadable: bool = False
    verified: int = 0


def edges_of(kind: str, object_id: str, payload: bytes) -> Edges:
    doc = model.decode(kind, payload, object_id)
    try:
        return list(model.edges(kind, object_id, doc))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CorruptObject(object_id, f"malformed {kind}: {exc!r}") from None


def layout_problems(toc: list[tuple[str, str, pack.Location]]) -> list[str]:
    out = []
    spans = sorted((loc.offset, loc.offset + loc.length, oid) for oid, _, loc in toc)
    for (s0, e0, a), (s1, _, b) in zip(spans, spans[1:]):
        if s1 < e0:
            out.append(f"entries of {a} and {b} overlap ({s0}-{e0} and {s1}-)")
    seen: set[str] = set()
    for oid, _, _ in toc:
        if oid in seen:
            out.append(f"its toc lists {oid} twice")
        seen.add(oid)
    return out


def verify_pack(name: str, data: bytes, *, sample: float = 1.0, seed: int | None = None) -> PackCheck:
    """Everything fsck checks in one pack file's bytes."""
    result = PackCheck(name, len(data))
    result.intact = hashlib.sha256(data).hexdigest()[:40] + ".pack" == name
    try:
        toc = pack.parse(data, name=name)
    except CorruptObject as exc:
        result.toc_unreadable = True
        result.errors.append((f"its toc is unreadable ({exc.reason})", None))
        _salvage(result, data)
        return result
    problems = layout_problems(toc)
    result.errors.extend((why, None) for why in problems)
    rng = random.Random(f"{seed}:{name}") if sample < 1.0 else None
    read_entry, verify, followed = pack.read_entry, model.verify, FOLLOWED
    result.toc = [(oid, kind, loc.offset, loc.length) for oid, kind, loc in toc]
    for oid, kind, loc in toc:
        if result.intact and rng is not None and rng.random() >= sample:
            continue
        try:
            got_kind, payload = read_entry(oid, data[loc.offset : loc.offset + loc.length], expect_kind=kind)
            verify(got_kind, oid, payload)
            if got_kind in followed:
                result.edges.append((oid, got_kind, edges_of(got_kind, oid, payload)))
        except CorruptObject as exc:
            result.errors.append((f"entry at {loc.offset}: {exc.reason}", oid))
            result.bad.append(oid)
            continue
        result.good.append(oid)
    result.verified = len(result.good) + len(result.bad)
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
        result.toc.append((entry.object_id, entry.kind, entry.offset, entry.length))
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


def verify_pack_at(url: str, storage_options: dict | None, name: str, sample: float, seed: int | None) -> PackCheck:
    """verify_pack on a pack read here (a worker process opens the repository's storage)."""
    fs, root = open_url(url, storage_options)
    data = open_blobs(fs, root).read(layout.pack_key(name))
    if isinstance(data, Missing):
        return PackCheck(name, missing=True)
    return verify_pack(name, data, sample=sample, seed=seed)


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
    from objstore.repo import journal as jmod

    result = JournalCheck(name)
    try:
        if layout.is_checkpoint_name(name):
            _, blocks = ckpt.parse(name, data)
            for block in blocks:
                result.entries += len(block.keys)
                if block.table == "objects":
                    result.ids.extend(k.decode() for k in block.keys)
            return result
        listing, entries = jmod.decode(name, data)
    except CorruptObject as exc:
        result.reason = exc.reason
        return result
    tables = model.TABLES
    result.entries = len(entries)
    result.ids = [oid for oid, _ in listing]
    for e in entries:
        if not well_formed(e, tables):
            result.malformed += 1
        elif e[1] == "objects" and e[0] == "put":
            result.ids.append(e[2])
    return result


def verify_journal_at(url: str, storage_options: dict | None, name: str) -> JournalCheck:
    fs, root = open_url(url, storage_options)
    data = open_blobs(fs, root).read(layout.segment_key(name))
    if isinstance(data, Missing):
        return JournalCheck(name, missing=True)
    return verify_journal(name, data)


__all__ = [
    "PackCheck", "JournalCheck", "verify_pack", "verify_pack_at", "verify_journal", "verify_journal_at",
    "edges_of", "layout_problems", "well_formed", "FOLLOWED",
]
