"""ObjectStore: immutable, verified objects over a BlobStore, loose or in packs.

    loose   objects/ab/cdef…        one object per file (objstore.codec encoding)
    packed  objects/pack/<name>     many objects in one immutable file (objstore.pack)

Semantics: an object is written once (a second ``put`` of an id returns False and leaves it
alone); a read verifies the frame and, when asked, the kind, and names the object when it
fails; bulk calls take iterables and return results in input order, duplicates included.
Which objects are packed, and where, is the index's knowledge (objstore.repo.objects routes
reads); this class reads a packed object only when told its location.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from objstore import codec, layout, pack
from objstore.errors import CorruptObject, ObjectNotFound
from objstore.ids import ObjectId, validate_id
from objstore.missing import MISSING, Missing
from objstore.store.base import BlobStore

log = logging.getLogger("objstore.store")

# Bulk inputs are encoded and sent this many at a time, so memory stays bounded on huge iterables.
_BATCH = 512
_STREAM_CHUNK = 1 << 20

Decoded = tuple[str, bytes]


def _read_exactly(src: BinaryIO, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = src.read(min(_STREAM_CHUNK, remaining))
        if not chunk:
            raise ValueError(f"stream ended after {length - remaining} of {length} bytes")
        remaining -= len(chunk)
        yield chunk


class ObjectStore:
    def __init__(self, blobs: BlobStore, *, level: int = codec.DEFAULT_LEVEL):
        self.blobs = blobs
        self.level = level
        # Told (name, bytes) of every pack written: a local pack cache keeps what it would
        # otherwise fetch back (objstore.repo.packcache).
        self.pack_written: Callable[[str, bytes], object] | None = None

    @property
    def fs(self) -> Any:
        return self.blobs.fs

    @property
    def root(self) -> str:
        return self.blobs.root

    @property
    def durable(self) -> bool:
        return self.blobs.durable

    def __repr__(self) -> str:
        return f"ObjectStore({self.blobs!r})"

    def object_path(self, object_id: str) -> str:
        """Where a loose ``object_id`` lives; raises InvalidId for anything that is not an id."""
        return self.blobs.path(layout.object_key(object_id))

    def _encode(self, kind: str, payload: bytes) -> bytes:
        return codec.encode(kind, payload, level=self.level)

    # -- loose objects ------------------------------------------------------------------------

    def put(self, object_id: str, kind: str, payload: bytes) -> bool:
        """Store an object unless its id exists; True if this call created it."""
        return self.put_many([(object_id, kind, payload)])[0]

    def get(self, object_id: str, *, expect_kind: str | None = None) -> Decoded:
        """(kind, payload), verified; ObjectNotFound or CorruptObject naming the id."""
        key = layout.object_key(object_id)
        data = self.blobs.read(key)
        if isinstance(data, Missing):
            raise ObjectNotFound(f"no object {object_id} ({key} is not in the repository)")
        return codec.decode(data, object_id=object_id, expect_kind=expect_kind)

    def has(self, object_id: str) -> bool:
        return self.blobs.exists(layout.object_key(object_id))

    def delete(self, object_id: str) -> bool:
        """Remove a loose object; True if it existed. (Immutable, not undeletable: gc.)"""
        return self.blobs.delete(layout.object_key(object_id))

    def put_many(self, items: Iterable[tuple[str, str, bytes]]) -> list[bool]:
        """put() for each (id, kind, payload), in order; a repeated id is False after its first.
        Every id and kind is checked before anything is written."""
        items = list(items)
        keys = [layout.object_key(object_id) for object_id, _, _ in items]
        for _, kind, _ in items:
            codec.check_kind(kind)
        results = [False] * len(items)
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        todo = sorted(first.values())
        for start in range(0, len(todo), _BATCH):
            batch = todo[start : start + _BATCH]
            if self.blobs.exists_is_cheap:
                # A stat spares encoding and a temp file for ids already stored (the common case
                # when a workflow re-runs); the create still settles any race atomically.
                present = self.blobs.exists_many(keys[i] for i in batch)
                batch = [i for i, there in zip(batch, present) if not there]
            blobs = [(keys[i], self._encode(items[i][1], items[i][2])) for i in batch]
            for i, created in zip(batch, self.blobs.create_many(blobs)):
                results[i] = created
        return results

    def rewrite_many(self, items: Iterable[tuple[str, str, bytes]]) -> None:
        """Write (id, kind, payload) loose objects over whatever is at their paths: only for the
        repair of a damaged file, whose id the caller knows to hold exactly these bytes."""
        items = list(items)
        for _, kind, _ in items:
            codec.check_kind(kind)
        for start in range(0, len(items), _BATCH):
            batch = items[start : start + _BATCH]
            self.blobs.replace_many([(layout.object_key(oid), self._encode(kind, payload)) for oid, kind, payload in batch])

    def get_many(self, ids: Iterable[str], *, expect_kind: str | None = None) -> list[Decoded | Missing]:
        """get() for each id, in order; MISSING where an object does not exist. A corrupt object
        raises CorruptObject (naming it) rather than hiding among the results."""
        ids = list(ids)
        keys = [layout.object_key(object_id) for object_id in ids]
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        unique = sorted(first.values())
        decoded: dict[str, Decoded | Missing] = {}
        for start in range(0, len(unique), _BATCH):
            batch = unique[start : start + _BATCH]
            for i, data in zip(batch, self.blobs.read_many(keys[i] for i in batch)):
                decoded[keys[i]] = (
                    MISSING if isinstance(data, Missing) else codec.decode(data, object_id=ids[i], expect_kind=expect_kind)
                )
        return [decoded[key] for key in keys]

    def has_many(self, ids: Iterable[str]) -> list[bool]:
        keys = [layout.object_key(object_id) for object_id in ids]
        unique = list(dict.fromkeys(keys))
        found = dict(zip(unique, self.blobs.exists_many(unique)))
        return [found[k] for k in keys]

    # -- streaming ----------------------------------------------------------------------------

    def put_stream(self, object_id: str, kind: str, src: BinaryIO, length: int) -> bool:
        """Store ``length`` bytes read from ``src`` as one object, in bounded memory.

        False (reading nothing) if the object exists. ``src`` ending early raises ValueError and
        leaves no object.
        """
        key = layout.object_key(object_id)
        codec.check_kind(kind)
        if length < 0:
            raise ValueError(f"negative length {length}")

        def produce(out: BinaryIO) -> None:
            codec.encode_stream(kind, length, _read_exactly(src, length), out, level=self.level)

        return self.blobs.create_from(key, produce)

    def open_stream(self, object_id: str, *, expect_kind: str | None = None) -> tuple[str, int, Iterator[bytes]]:
        """(kind, length, chunks) of a loose object; verification failures raise at the end of
        the chunks, so consume them (or close the iterator) before trusting what was read."""
        key = layout.object_key(object_id)
        f = self.blobs.open_read(key)
        if isinstance(f, Missing):
            raise ObjectNotFound(f"no object {object_id} ({key} is not in the repository)")
        try:
            kind, length, chunks = codec.decode_stream(f, object_id=object_id, expect_kind=expect_kind)
        except BaseException:
            f.close()
            raise
        return kind, length, self._closing(chunks, f, self.blobs.path(key))

    @staticmethod
    def _closing(chunks: Iterator[bytes], f: BinaryIO, path: str) -> Iterator[bytes]:
        from objstore.fs import translate

        try:
            with translate(path, passthrough=()):
                yield from chunks
        finally:
            f.close()

    # -- listing ------------------------------------------------------------------------------

    def iter_ids(self, *, on_foreign: Callable[[str], None] | None = None) -> Iterator[ObjectId]:
        """Every loose object id present (a full scan), sorted. Names that are not ids are
        skipped and passed to ``on_foreign`` (default: a warning in the log)."""
        report = on_foreign or (lambda p: log.warning("ignoring foreign file in objects/: %s", p))
        cut = len(layout.OBJECTS) + 1
        for key in self.blobs.list_keys(layout.OBJECTS):
            rel = key[cut:]
            if rel.startswith(layout.PACK_DIR + "/"):
                continue  # packed objects are listed by pack_names / read_pack
            object_id = layout.fanout_id(rel)
            if object_id is None:
                report(self.blobs.path(key))
            else:
                yield object_id

    def clean_temp(self, *, older_than: float = 3600.0) -> int:
        """Remove temp files of writers that died mid-write (older than ``older_than`` seconds,
        so a live writer's are kept); how many."""
        return self.blobs.clean_temp(layout.OBJECTS, older_than=older_than)

    # -- packs --------------------------------------------------------------------------------

    def pack_path(self, name: str) -> str:
        return self.blobs.path(layout.pack_key(name))

    def put_packed(self, items: Iterable[tuple[str, str, bytes]]) -> list[tuple[str, str, pack.Location]]:
        """Write (id, kind, payload) items as pack files; [(id, kind, location)] in input order.

        One file per pack.MAX_PACK_BYTES of encoded objects; a pack that already exists (same
        bytes, same name) is left alone. Payloads over pack.MAX_OBJECT_BYTES are refused: those
        go loose (put / put_many / put_stream), where they stream.
        """
        out: list[tuple[str, str, pack.Location]] = []
        batch: list[tuple[str, str, bytes]] = []
        size = 0
        items = list(items)
        for object_id, _, payload in items:
            if len(payload) > pack.MAX_OBJECT_BYTES:
                raise ValueError(f"{object_id}: {len(payload)} bytes is too big for a pack")
            validate_id(object_id)
        encodings = codec.encode_many([(kind, payload) for _, kind, payload in items], level=self.level)
        for (object_id, kind, _), encoded in zip(items, encodings):
            if batch and size + len(encoded) > pack.MAX_PACK_BYTES:
                out.extend(self._write_pack(batch))
                batch, size = [], 0
            batch.append((object_id, kind, encoded))
            size += len(encoded)
        if batch:
            out.extend(self._write_pack(batch))
        return out

    def _write_pack(self, batch: list[tuple[str, str, bytes]]) -> list[tuple[str, str, pack.Location]]:
        name, data, located = pack.build(batch)
        self.blobs.create(layout.pack_key(name), data)
        if self.pack_written is not None:
            self.pack_written(name, data)
        return located

    def get_packed(self, object_id: str, location: pack.Location, *, expect_kind: str | None = None) -> Decoded:
        """One packed object, read by its range and verified like a loose one. ObjectNotFound if
        the pack is not here (e.g. a journal copied without objects/pack/)."""
        got = self.get_packed_many([(object_id, location)], expect_kind=expect_kind)[0]
        if isinstance(got, Missing):
            raise ObjectNotFound(f"object {object_id} is missing: its pack {location.pack} is not in the repository")
        return got

    def get_packed_many(
        self, located: Iterable[tuple[str, pack.Location]], *, expect_kind: str | None = None
    ) -> list[Decoded | Missing]:
        """get_packed for each (id, location), in order; MISSING where the pack is missing.
        Entries that lie close together in one pack are fetched by one ranged read."""
        located = list(located)
        plans = pack.plan_reads([loc for _, loc in located])
        got = self.blobs.read_ranges([(layout.pack_key(name), start, length) for name, start, length, _ in plans])
        out: list[Decoded | Missing] = [MISSING] * len(located)
        for (_, start, _, members), data in zip(plans, got):
            if isinstance(data, Missing):
                continue
            entries: list[tuple[str, bytes]] = []
            for i in members:
                object_id, loc = located[i]
                entry = data[loc.offset - start : loc.offset - start + loc.length]
                if len(entry) != loc.length:
                    pack.read_entries(entries, expect_kind=expect_kind)  # an earlier entry's defect first
                    raise CorruptObject(object_id, f"pack {loc.pack} ends before the object's entry does")
                entries.append((object_id, entry))
            for i, item in zip(members, pack.read_entries(entries, expect_kind=expect_kind)):
                out[i] = item
        return out

    def pack_names(self) -> list[str]:
        """The pack files present, sorted; other names under objects/pack/ are ignored."""
        return [n for n in self.blobs.list_names(layout.PACKS) if layout.is_pack_name(n)]

    def read_pack(self, name: str) -> tuple[list[tuple[str, str, pack.Location]], bytes]:
        """(toc, the whole file): every (id, kind, location) a pack lists, and its bytes, so a
        scan decodes its entries (pack.read_entry) without a read per object."""
        data = self.blobs.read(layout.pack_key(name))
        if isinstance(data, Missing):
            raise ObjectNotFound(f"pack/{name}")
        return pack.parse(data, name=name), data


__all__ = ["ObjectStore", "Decoded"]
