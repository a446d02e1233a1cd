"""Copy what a destination repository lacks, in the write order, so any interruption is safe.

    plan(src, dst)   list both sides (journal, eval heads, packs, loose objects; refs) and work
                     out what to copy: never reads an object, only listings and the refs
    run(plan)        copy it: packs and loose objects, then eval heads, then journal segments,
                     then refs by compare-and-swap

Every file is copied byte for byte (never re-encoded) with a create that never replaces, and is
checked on the way (a pack against its content-hash name, a loose object's frame, a segment's
encoding), so a damaged source file is reported and not spread. A journal segment is written
only once every object it names is at the destination (loose, or in the pack its entries name),
so a reader of the destination never meets an entry whose object is absent, and a sync killed at
any point leaves a valid repository; run again, it lists again and copies only what is still
missing. Handle refs merge as a replayed rollback would: the union of what each side
invalidated wins, by compare-and-swap against whatever the destination holds at that moment.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import refs as refs_pkg
from objstore import codec, layout, pack
from objstore.errors import ConcurrentUpdate, CorruptObject, FormatError, ObjstoreError
from objstore.format import show
from objstore.ids import is_hash
from objstore.missing import Missing
from objstore.model import handle as handle_kind
from objstore.repo import journal as journal_mod
from objstore.repo.evals import parse_head
from objstore.repo.valuestore import ValueStores, scheme_of
from objstore.sync.endpoint import Endpoint, Listing, list_files

log = logging.getLogger("objstore.sync")

BATCH_FILES = 256
BATCH_BYTES = 16 << 20
STREAM_BYTES = 16 << 20  # loose objects this big are streamed, not held in memory
_CHUNK = 1 << 20
CAS_RETRIES = 100
HANDLE_REFS = layout.HANDLES + "/"


class Reporter(Protocol):
    """Progress of a copy (the CLI draws it; the library passes None)."""

    def phase(self, name: str, files: int, nbytes: int) -> None: ...

    def advance(self, files: int, nbytes: int, objects: int) -> None: ...


@dataclass
class RefMerge:
    name: str  # relative to refs/
    new: bytes  # what the destination will hold
    created: bool  # the destination had no such ref


@dataclass
class Plan:
    src: Endpoint
    dst: Endpoint
    packs: list[tuple[str, int]]
    loose: list[tuple[str, int]]
    evals: list[tuple[str, int]]
    journal: list[tuple[str, int]]
    refs: list[RefMerge]
    dst_files: Listing

    @property
    def files(self) -> int:
        return len(self.packs) + len(self.loose) + len(self.evals) + len(self.journal)

    @property
    def nbytes(self) -> int:
        return sum(n for group in (self.packs, self.loose, self.evals, self.journal) for _, n in group)

    @property
    def empty(self) -> bool:
        return not self.files and not self.refs


@dataclass
class Result:
    packs: int = 0
    packed_objects: int = 0  # objects inside the packs copied
    loose: int = 0
    evals: int = 0
    segments: int = 0
    refs: int = 0
    nbytes: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # what was not copied, and why

    @property
    def objects(self) -> int:
        return self.loose + self.packed_objects


# -- planning -----------------------------------------------------------------------------------


def plan(src: Endpoint, dst: Endpoint) -> Plan:
    """What ``dst`` lacks of ``src``: listings and refs only (nothing under objects/ is read)."""
    have = list_files(src)
    other = list_files(dst)

    def missing(mine: dict[str, int], theirs: dict[str, int]) -> list[tuple[str, int]]:
        return sorted((k, n) for k, n in mine.items() if k not in theirs)

    packs = missing(have.packs, other.packs)
    journal = missing(have.journal, other.journal)
    if not dst.holds_checkpoints and any(layout.is_checkpoint_name(k.rsplit("/", 1)[-1]) for k, _ in journal):
        raise FormatError(
            f"destination {dst.url} is format {show(dst.format['version'])}, which cannot hold journal "
            f"checkpoints (the source's journal is compacted); upgrade it first (`objstore --repo {dst.url} "
            "db upgrade`, once every worker using it runs an objstore that reads format 3.0)"
        )
    if packs and not dst.holds_packs:
        raise FormatError(
            f"destination {dst.url} is format {show(dst.format['version'])}, which cannot hold pack "
            f"files; upgrade it first (`objstore --repo {dst.url} upgrade`, once every worker using it "
            "runs an objstore that reads packs)"
        )
    return Plan(
        src, dst, packs, missing(have.loose, other.loose), missing(have.evals, other.evals),
        journal, plan_refs(src, dst), other,
    )  # fmt: skip


def merge_ref(name: str, src: bytes, dst: bytes | None) -> bytes | None:
    """What the destination's ref should hold after merging ``src`` in; None: leave it."""
    if dst is None:
        return src
    if src == dst or not name.startswith(HANDLE_REFS):
        return None  # equal, or a kind of ref the destination already has: the destination's stays
    theirs = handle_kind.decode_state(src)
    if theirs is None:
        log.warning("sync: refs/%s of the source is unreadable; the destination's is kept", name)
        return None
    ours = handle_kind.decode_state(dst)
    union = theirs | (ours or set())
    return None if union == ours else handle_kind.encode_state(union)


def _get(store, name: str) -> bytes | None:
    raw = store.get(name)
    return bytes(raw) if isinstance(raw, (bytes, bytearray)) else None


def plan_refs(src: Endpoint, dst: Endpoint) -> list[RefMerge]:
    out = []
    for name in src.refs.list():
        value = _get(src.refs, name)
        if value is None:
            continue
        current = _get(dst.refs, name)
        new = merge_ref(name, value, current)
        if new is not None:
            out.append(RefMerge(name, new, current is None))
    return out


# -- copying ------------------------------------------------------------------------------------


def _batches(items: list[tuple[str, int]]) -> Iterator[list[tuple[str, int]]]:
    batch: list[tuple[str, int]] = []
    size = 0
    for key, n in items:
        if batch and (len(batch) >= BATCH_FILES or size + n > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((key, n))
        size += n
    if batch:
        yield batch


class _Copier:
    def __init__(self, p: Plan, reporter: Reporter | None):
        self.p = p
        self.src = p.src.blobs
        self.dst = p.dst.blobs
        self.reporter = reporter
        self.result = Result()
        # What the destination holds (or will once this copy is done), for the segment check.
        self.dst_packs = set(p.dst_files.packs)
        self.dst_loose = set(p.dst_files.loose)
        self.dst_value_store = p.dst.value_store_url
        self._value_stores: ValueStores | None = None

    def _phase(self, name: str, items: list[tuple[str, int]]) -> None:
        if self.reporter is not None and items:
            self.reporter.phase(name, len(items), sum(n for _, n in items))

    def _advance(self, files: int, nbytes: int, objects: int) -> None:
        self.result.nbytes += nbytes
        if self.reporter is not None:
            self.reporter.advance(files, nbytes, objects)

    def _skip(self, why: str) -> None:
        log.warning("sync: not copied: %s", why)
        self.result.skipped.append(why)

    def copy_files(
        self,
        items: list[tuple[str, int]],
        check: Callable[[str, bytes], int],
        done: Callable[[str, int], None],
        *,
        stream_over: int = STREAM_BYTES,
    ) -> None:
        """Copy each (key, size): read in batches, ``check(key, data) -> objects in it``
        (raising CorruptObject to skip it), create at the destination, then ``done``. A file
        of ``stream_over`` bytes or more is streamed instead (and not checked)."""
        for batch in _batches(items):
            small = []
            for key, n in batch:
                if n < stream_over:
                    small.append((key, n))
                else:
                    self._stream(key, done)
            if not small:
                continue
            datas = self.src.read_many(k for k, _ in small)
            ready: list[tuple[str, bytes]] = []
            counts: list[int] = []
            for (key, _), data in zip(small, datas):
                if isinstance(data, Missing):
                    self._skip(f"{key}: removed from the source while copying")
                    continue
                try:
                    counts.append(check(key, data))
                except CorruptObject as exc:
                    self._skip(f"{key}: damaged at the source ({exc})")
                    continue
                ready.append((key, data))
            self.dst.create_many(ready)  # False: already there (a racing copy): just as good
            for (key, _data), objects in zip(ready, counts):
                done(key, objects)
            self._advance(len(ready), sum(len(d) for _, d in ready), sum(counts))

    def _stream(self, key: str, done: Callable[[str, int], None]) -> None:
        f = self.src.open_read(key)
        if isinstance(f, Missing):
            self._skip(f"{key}: removed from the source while copying")
            return
        copied = 0

        def produce(out: BinaryIO) -> None:
            nonlocal copied
            while chunk := f.read(_CHUNK):
                out.write(chunk)
                copied += len(chunk)

        try:
            self.dst.create_from(key, produce)
        finally:
            f.close()
        done(key, 1)
        self._advance(1, copied, 1)

    # -- checks, one per area --------------------------------------------------------------

    @staticmethod
    def check_pack(key: str, data: bytes) -> int:
        name = key.rsplit("/", 1)[-1]
        if hashlib.sha256(data).hexdigest()[:40] + ".pack" != name:
            raise CorruptObject(f"pack/{name}", "its bytes do not match its name")
        return len(pack.parse(data, name=name))

    @staticmethod
    def check_loose(key: str, data: bytes) -> int:
        object_id = layout.fanout_id(key[len(layout.OBJECTS) + 1 :])
        codec.decode(data, object_id=object_id or key)
        return 1

    @staticmethod
    def check_eval(key: str, data: bytes) -> int:
        parse_head(key, data)
        return 0

    # -- the phases ------------------------------------------------------------------------

    def objects(self) -> None:
        p, r = self.p, self.result
        self._phase("objects", p.packs + p.loose)

        def pack_done(key: str, objects: int) -> None:
            self.dst_packs.add(key)
            r.packs += 1
            r.packed_objects += objects

        def loose_done(key: str, objects: int) -> None:
            self.dst_loose.add(key)
            r.loose += 1

        # A pack is read whole (a writer makes them at most pack.MAX_PACK_BYTES), so each one is
        # checked against its name; only loose objects, which can be any size, stream.
        self.copy_files(p.packs, self.check_pack, pack_done, stream_over=max(STREAM_BYTES, 4 * pack.MAX_PACK_BYTES))
        self.copy_files(p.loose, self.check_loose, loose_done)

    def evals(self) -> None:
        self._phase("eval heads", self.p.evals)

        def done(key: str, _: int) -> None:
            self.result.evals += 1

        self.copy_files(self.p.evals, self.check_eval, done)

    def journal(self) -> None:
        items = self.p.journal
        self._phase("journal", items)
        heads_too = self.p.dst.writes_eval_files
        have_heads = set(self.p.dst_files.evals) | {k for k, _ in self.p.evals}
        # One batch at a time and in name order: a later segment is never written before an
        # earlier one's batch, and each only after the check that its objects are all here
        # (and, on shared storage, after the eval-head files its entries name).
        for batch in _batches(items):
            datas = self.src.read_many(k for k, _ in batch)
            ready: list[tuple[str, bytes]] = []
            heads: dict[str, bytes] = {}
            for (key, _), data in zip(batch, datas):
                if isinstance(data, Missing):
                    self._skip(f"{key}: removed from the source while copying")
                    continue
                try:
                    entries = self.check_segment(key, data)
                except CorruptObject as exc:
                    self._skip(f"{key}: {exc}")
                    continue
                ready.append((key, data))
                if heads_too:
                    for e in entries:
                        if e[:2] == ["put", "evals"] and isinstance(e[2], str) and is_hash(e[3]):
                            try:
                                head_key = layout.eval_key(e[2])
                            except ValueError:
                                continue
                            if head_key not in have_heads:
                                heads[head_key] = e[3].encode("ascii")
            if heads:
                self.dst.create_many(sorted(heads.items()))  # create-only: the destination's own heads stay
                have_heads.update(heads)
                self.result.evals += len(heads)
            self.dst.create_many(ready)
            self.result.segments += len(ready)
            self._advance(len(ready), sum(len(d) for _, d in ready), 0)

    def check_segment(self, key: str, data: bytes) -> list:
        """The entries of a journal file (a segment, or a checkpoint read as one), once every
        object it names is known to be at the destination. A value the source keeps in a value
        store the destination does not use is copied in as a loose object first (the entry's
        store stays the first place a reader looks; the loose copy is where it finds it here)."""
        name = key[len(layout.JOURNAL) + 1 :]
        if layout.is_checkpoint_name(name):
            segment = journal_mod.checkpoint_segment(name, data, listing_only=False)
            listing, entries = segment.listing, segment.entries
        else:
            listing, entries = journal_mod.decode(name, data)
        packed: dict[str, str] = {}
        stored: dict[str, str] = {}
        for e in entries:
            if isinstance(e, list) and len(e) == 4 and e[0] == "put" and isinstance(e[3], str):
                if e[1] == "packed":
                    packed[e[2]] = e[3]
                elif e[1] == "value_store":
                    stored[e[2]] = e[3]
        absent = 0
        example = ""
        fetch: dict[str, list[str]] = {}
        for object_id, _ in listing:
            where = packed.get(object_id)
            if where is not None:
                ok = layout.pack_key(pack.Location.parse(where, object_id=object_id).pack) in self.dst_packs
            else:
                ok = layout.object_key(object_id) in self.dst_loose
                store = stored.get(object_id)
                if not ok and store is not None:
                    ok = store == self.dst_value_store  # a store both sides use holds it already
                    if not ok:
                        fetch.setdefault(store, []).append(object_id)
                        continue
            if not ok:
                absent += 1
                example = example or object_id
        for store_url, ids in fetch.items():
            lost = self._copy_from_value_store(store_url, ids)
            absent += len(lost)
            example = example or (lost[0] if lost else "")
        if absent:
            raise CorruptObject(
                f"journal/{name}", f"{absent} of the objects it names are missing (e.g. {example}); "
                "the segment is kept back so the destination never lists an absent object"
            )
        return [e for e in entries if isinstance(e, list) and len(e) == 4]

    def _copy_from_value_store(self, url: str, ids: list[str]) -> list[str]:
        """Copy these values from the source's value store at ``url`` into the destination as
        loose objects (each checked); the ids that could not be copied."""
        if self._value_stores is None:
            src = self.p.src

            def options_for(store_url: str) -> dict | None:
                return src.storage_options if scheme_of(store_url) == scheme_of(src.url) else None

            self._value_stores = ValueStores(options_for)
        try:
            blobs = self._value_stores.store(url).blobs
        except (ValueError, ObjstoreError) as exc:
            self._skip(f"the value store {url}: cannot be opened ({exc})")
            return ids
        keys = [layout.object_key(i) for i in ids]
        ready: list[tuple[str, bytes]] = []
        lost: list[str] = []
        for object_id, key, data in zip(ids, keys, blobs.read_many(keys)):
            if isinstance(data, Missing):
                lost.append(object_id)
                continue
            try:
                self.check_loose(key, data)
            except CorruptObject as exc:
                self._skip(f"{url}/{key}: damaged in the value store ({exc})")
                lost.append(object_id)
                continue
            ready.append((key, data))
        self.dst.create_many(ready)
        self.dst_loose.update(k for k, _ in ready)
        self.result.loose += len(ready)
        self._advance(0, sum(len(d) for _, d in ready), len(ready))
        return lost

    def refs(self) -> None:
        dst = self.p.dst.refs
        src = self.p.src.refs
        if self.reporter is not None and self.p.refs:
            self.reporter.phase("refs", len(self.p.refs), 0)
        for merge in self.p.refs:
            value = _get(src, merge.name)
            if value is None:
                continue
            for _ in refs_pkg.attempts(CAS_RETRIES):
                current = _get(dst, merge.name)
                new = merge_ref(merge.name, value, current)
                if new is None:
                    break
                old = current if current is not None else refs_pkg.MISSING
                if dst.set_if_equals(merge.name, old, new):
                    self.result.refs += 1
                    break
            else:
                raise ConcurrentUpdate(f"refs/{merge.name} at {self.p.dst.url}: too many concurrent writers")
            if self.reporter is not None:
                self.reporter.advance(1, 0, 0)


def run(p: Plan, reporter: Reporter | None = None) -> Result:
    """Copy what ``p`` found missing, in the write order; what was copied and what was not."""
    start = time.monotonic()
    copier = _Copier(p, reporter)
    copier.objects()
    copier.evals()
    copier.journal()
    copier.refs()
    copier.result.seconds = time.monotonic() - start
    return copier.result


def sync(src: Endpoint, dst: Endpoint, reporter: Reporter | None = None) -> Result:
    return run(plan(src, dst), reporter)


__all__ = ["Plan", "Result", "RefMerge", "Reporter", "plan", "plan_refs", "merge_ref", "run", "sync"]
