"""Pack files: the small objects of one flush in one immutable file (pure: bytes in, bytes out).

Why: a flush of a redun run writes a few objects per job, and on a local disk each new file
costs a create (and often a directory) of 50-600 µs; on a bucket, a request each. One pack per
flush turns thousands of creates or PUTs into one, while each object inside stays exactly its
loose encoding (one verified zstd frame), so a read is one ranged read and the same decode.

Layout of ``objects/pack/<name>``::

    b"OBJPACK1"                         magic
    entry*                              <object id, ascii> b"\\0" <the object's loose encoding>
    toc                                 codec.encode("packtoc", canonical JSON
                                        [[id, kind, offset, length], ...])
    8 bytes, big-endian                 offset of the toc

An entry's (offset, length) covers its id prefix too, so a read checks that it got the object it
asked for: a wrong location is a CorruptObject, never another object's bytes. The name is
``sha256(file)[:40] + ".pack"``: content-named, so two repositories' packs never collide when
copied together, and writing the same pack twice is a no-op. The index maps each packed id to a
``Location`` (its table entry); the toc makes a pack self-describing for a full-scan reindex.
"""

from __future__ import annotations

import hashlib
import operator
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat

from objstore import codec
from objstore.errors import CorruptObject
from objstore.ids import all_ids, is_hash, is_uuid
from objstore.layout import PACK_NAME_RE as NAME_RE

MAGIC = b"OBJPACK1"
TOC_KIND = "packtoc"
_TAIL = struct.Struct(">Q")
_DIGITS = re.compile(r"[0-9]{1,19}")  # str.isdigit() also accepts "²", which int() refuses
# A pack holds small objects only: bigger ones stay loose and stream. A flush with more than
# this many bytes of small objects is split into several packs.
MAX_OBJECT_BYTES = 1 << 20
MAX_PACK_BYTES = 64 << 20
# Reads of entries in one pack are merged when the bytes between them are fewer than this, and
# the merged read stays under MAX_READ_SPAN: one request instead of many, for little waste.
MAX_READ_GAP = 64 << 10
MAX_READ_SPAN = 8 << 20


@dataclass(frozen=True)
class Location:
    """Where a packed object's entry is: the pack's file name, byte offset and length."""

    pack: str
    offset: int
    length: int

    def encode(self) -> str:
        return f"{self.pack}:{self.offset}:{self.length}"

    @classmethod
    def parse(cls, text: str, *, object_id: str) -> Location:
        """The inverse of encode; CorruptObject naming ``object_id`` when it is not one."""
        pack, _, rest = text.partition(":")
        offset, _, length = rest.partition(":")
        if NAME_RE.fullmatch(pack) is None or not _DIGITS.fullmatch(offset) or not _DIGITS.fullmatch(length):
            raise CorruptObject(object_id, f"unreadable pack location {text[:80]!r}")
        loc = cls(pack, int(offset), int(length))
        if loc.offset < len(MAGIC) or loc.length <= len(object_id) + 1:
            raise CorruptObject(object_id, f"impossible pack location {text[:80]!r}")
        return loc


def build(items: Iterable[tuple[str, str, bytes]]) -> tuple[str, bytes, list[tuple[str, str, Location]]]:
    """(name, file bytes, [(id, kind, location)]) for (id, kind, loose encoding) items.

    Ids must be valid (the repository validated them when they were buffered); a repeated id
    keeps its first entry.
    """
    parts = [MAGIC]
    offset = len(MAGIC)
    toc: list[list] = []
    seen: set[str] = set()
    for object_id, kind, encoded in items:
        if object_id in seen:
            continue
        seen.add(object_id)
        prefix = object_id.encode("ascii") + b"\0"
        parts.append(prefix)
        parts.append(encoded)
        length = len(prefix) + len(encoded)
        toc.append([object_id, kind, offset, length])
        offset += length
    parts.append(codec.encode(TOC_KIND, codec.canonical_json(toc)))
    parts.append(_TAIL.pack(offset))
    data = b"".join(parts)
    name = hashlib.sha256(data).hexdigest()[:40] + ".pack"
    return name, data, [(oid, kind, Location(name, off, length)) for oid, kind, off, length in toc]


def read_entry(
    object_id: str, entry: bytes, *, expect_kind: str | None = None
) -> tuple[str, bytes]:
    """Verify and decode one entry read from a pack at the object's location."""
    prefix = object_id.encode("ascii") + b"\0"
    if not entry.startswith(prefix):
        found = entry[: len(prefix)].split(b"\0", 1)[0][:40]
        raise CorruptObject(object_id, f"pack entry belongs to {found!r}, not to this object")
    return codec.decode(entry[len(prefix) :], object_id=object_id, expect_kind=expect_kind)


def read_entries(
    entries: Iterable[tuple[str, bytes]], *, expect_kind: str | None = None
) -> list[tuple[str, bytes]]:
    """read_entry of each (object id, entry), in order, decoded in bulk (codec.decode_many); the
    first defective entry raises, as reading them one at a time would."""
    frames: list[tuple[str, bytes]] = []
    for object_id, entry in entries:
        prefix = object_id.encode("ascii") + b"\0"
        if not entry.startswith(prefix):
            codec.decode_many(frames, expect_kind=expect_kind)  # an earlier entry's defect first
            read_entry(object_id, entry)  # raises: the entry is another object's
        frames.append((object_id, entry[len(prefix) :]))
    return codec.decode_many(frames, expect_kind=expect_kind)


@dataclass(frozen=True)
class Toc:
    """A pack's table of contents as columns (no object per entry: a repack or an fsck of a
    million objects reads a million rows). Row i is (ids[i], kinds[i], offsets[i], lengths[i])."""

    name: str
    ids: Sequence[str]
    kinds: Sequence[str]
    offsets: Sequence[int]
    lengths: Sequence[int]
    toc_at: int  # where the toc frame starts: the end of the last entry's bytes

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> Iterable[tuple[str, str, int, int]]:
        return zip(self.ids, self.kinds, self.offsets, self.lengths)

    def locations(self) -> list[tuple[str, str, Location]]:
        return [(oid, kind, Location(self.name, off, n)) for oid, kind, off, n in self.rows()]

    def in_order(self) -> bool:
        """Entries in toc order, each after the one before (what build() writes): no overlaps."""
        offs, lens = self.offsets, self.lengths
        if not offs:
            return True
        ends = map(operator.add, offs, lens)
        return all(map(operator.le, ends, offs[1:]))




def read_toc(data: bytes, *, name: str) -> Toc:
    """A whole pack file's toc, checked against its bytes (as ``parse``), as columns."""
    where = f"pack/{name}"
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _TAIL.size:
        raise CorruptObject(where, "not an objstore pack")
    (toc_at,) = _TAIL.unpack_from(data, len(data) - _TAIL.size)
    if not len(MAGIC) <= toc_at <= len(data) - _TAIL.size:
        raise CorruptObject(where, f"toc offset {toc_at} is outside the pack")
    _, payload = codec.decode(data[toc_at : len(data) - _TAIL.size], object_id=where, expect_kind=TOC_KIND)
    toc = codec.parse_json(payload, object_id=where)
    if not isinstance(toc, list):
        raise CorruptObject(where, "the toc is not a list")
    columns = _columns(toc, toc_at)
    if columns is None:  # some row is off: find which, one by one, for the message
        for item in toc:
            if not _row_ok(item, toc_at):
                raise CorruptObject(where, f"malformed toc entry {str(item)[:80]}")
        raise AssertionError("a toc failing the column checks has a failing row")  # pragma: no cover
    ids, kinds, offsets, lengths = columns
    return Toc(name, ids, kinds, offsets, lengths, toc_at)


def _columns(toc: list, toc_at: int) -> tuple[tuple, tuple, tuple, tuple] | None:
    """The toc's four columns when every row is well formed, checked a column at a time (C
    loops, no Python per row); None when any row is not."""
    if not toc:
        return (), (), (), ()
    if set(map(type, toc)) != {list} or set(map(len, toc)) != {4}:
        return None
    ids, kinds, offsets, lengths = zip(*toc)
    if set(map(type, ids)) != {str} or set(map(type, kinds)) != {str}:
        return None
    if set(map(type, offsets)) != {int} or set(map(type, lengths)) != {int}:  # type(True) is bool
        return None
    if not all_ids(ids):
        return None
    if min(offsets) < len(MAGIC) or max(map(operator.add, offsets, lengths)) > toc_at:
        return None
    if min(map(operator.sub, lengths, map(len, ids))) <= 1:  # the id prefix and a byte of frame
        return None
    return ids, kinds, offsets, lengths


def _row_ok(item: object, toc_at: int) -> bool:
    return (
        isinstance(item, list)
        and len(item) == 4
        and isinstance(item[0], str)
        and (is_hash(item[0]) or is_uuid(item[0]))
        and isinstance(item[1], str)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in item[2:])
        and len(MAGIC) <= item[2]
        and item[3] > len(item[0]) + 1  # the id prefix and at least one byte of frame
        and item[2] + item[3] <= toc_at
    )


def parse(data: bytes, *, name: str) -> list[tuple[str, str, Location]]:
    """Every (id, kind, location) a whole pack file lists, checked against its bytes."""
    return read_toc(data, name=name).locations()


def build_copies(parts: Iterable[tuple[bytes, Toc, int, int, int]]) -> tuple[str, bytes, Toc]:
    """A pack made of runs of entries copied byte for byte from other packs: (name, file bytes,
    its toc). Each part is (source pack bytes, its toc, first row, end row, start offset of the
    first row): rows [first, end) of that toc, which lie back to back from that offset (as
    build() writes them). Nothing is decoded or compressed again: each entry keeps its own
    verified frame, so the caller must have verified the source bytes (e.g. the pack's name)."""
    chunks = [MAGIC]
    ids: list[str] = []
    kinds: list[str] = []
    offsets: list[int] = []
    lengths: list[int] = []
    at = len(MAGIC)
    for data, toc, first, end, start in parts:
        if first >= end:
            continue
        stop = toc.offsets[end - 1] + toc.lengths[end - 1]
        chunks.append(data[start:stop])
        shift = at - start
        ids.extend(toc.ids[first:end])
        kinds.extend(toc.kinds[first:end])
        offsets.extend(map(operator.add, toc.offsets[first:end], repeat(shift)))
        lengths.extend(toc.lengths[first:end])
        at += stop - start
    rows = list(map(list, zip(ids, kinds, offsets, lengths)))
    chunks.append(codec.encode(TOC_KIND, codec.canonical_json(rows)))
    chunks.append(_TAIL.pack(at))
    data = b"".join(chunks)
    name = hashlib.sha256(data).hexdigest()[:40] + ".pack"
    return name, data, Toc(name, ids, kinds, offsets, lengths, at)


# Where an entry may start: an id, a NUL, the zstd magic (what build() writes for every entry).
_ENTRY_START = re.compile(
    rb"([0-9a-f]{40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\x00\x28\xb5\x2f\xfd"
)


def scan_entries(data: bytes, *, name: str) -> list[tuple[str, str, Location]]:
    """Every (id, kind, location) recoverable from a pack without its table of contents.

    Entries are self-describing (``id\0`` + one verified frame), so a pack whose toc (or tail) is
    damaged still yields each entry that verifies: found by its id prefix, delimited by its
    frame's end, checked by decoding it. Damaged entries are skipped; the scan picks up at the
    next id prefix after them.
    """
    out: list[tuple[str, str, Location]] = []
    pos = len(MAGIC) if data.startswith(MAGIC) else 0
    while True:
        match = _ENTRY_START.search(data, pos)
        if match is None:
            return out
        object_id = match.group(1).decode("ascii")
        frame_at = match.start() + len(object_id) + 1
        end = codec.frame_end(data, frame_at, max_content=MAX_OBJECT_BYTES + 1024)
        if end is not None:
            try:
                kind, _ = codec.decode(data[frame_at:end], object_id=object_id)
            except CorruptObject:
                end = None
        if end is None:
            pos = match.start() + 1
            continue
        out.append((object_id, kind, Location(name, match.start(), end - match.start())))
        pos = end


def plan_reads(
    locations: Sequence[Location], *, max_gap: int = MAX_READ_GAP, max_span: int = MAX_READ_SPAN
) -> list[tuple[str, int, int, list[int]]]:
    """Ranged reads covering ``locations``: (pack, offset, length, indices into locations).

    Entries of one pack that lie close together are read as one range, so reading the objects
    of one flush costs about one request per pack instead of one per object.
    """
    order = sorted(range(len(locations)), key=lambda i: (locations[i].pack, locations[i].offset))
    plans: list[tuple[str, int, int, list[int]]] = []
    for i in order:
        loc = locations[i]
        end = loc.offset + loc.length
        if plans:
            pack, start, length, members = plans[-1]
            if pack == loc.pack and loc.offset - (start + length) <= max_gap and end - start <= max_span:
                members.append(i)  # in place: copying the list each time made a big run quadratic
                plans[-1] = (pack, start, max(length, end - start), members)
                continue
        plans.append((loc.pack, loc.offset, loc.length, [i]))
    return plans
