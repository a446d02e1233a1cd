"""Journal checkpoints: many segments folded into one immutable file (format 3.0). Pure.

A checkpoint is what a reader would hold after ingesting its *sources* (segments, or older
checkpoints) in order, stored table by table so that a fresh client loads a million records
with one GET and one bulk write instead of a GET per segment and a JSON parse per entry.

File ``journal/<time>-<writer>.ckpt``::

    b"OBJCKPT1"
    8 bytes, big-endian     length H of the header
    H bytes                 codec.encode("ckpthead", canonical JSON header)
    block*                  codec.encode("ckptblock", payload), one per table

    header = {"format": "objstore-checkpoint", "version": 1, "writer": …, "created": ISO time,
              "position": the newest source's position (its name, or its own position),
              "sources": [journal names, in the order they were folded],
              "blocks": [{"table", "multi", "rows", "offset", "length", "encoding"}, …]}

    block payload = 8-byte length, keys, 8-byte length, values, flags
        keys / values: the rows' strings, utf-8, joined by "\\n" ("lines"), or a JSON list when
        some string holds a newline ("json"); flags: one little-endian uint32 per row =
        index of the source that last wrote the row | TOMB (a deletion) | ADD (set if absent)

Rows of a single-valued table carry the source that last wrote them, because an index that has
already seen some sources (it refreshed while they were being written) must apply only the rows
whose source it has not seen, or it could put back an older value over a newer one. Rows of a
multi table are a set and are applied whatever was seen. A deletion (``del`` / ``delall``,
written by maintenance: prune, unpack, downgrade) is kept as a TOMB row, applied before the
other rows, so a value deleted and added again ends present.
"""

from __future__ import annotations

import datetime as _dt
import json
import operator
import struct
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

from objstore import codec, layout, model
from objstore.errors import CorruptObject

MAGIC = b"OBJCKPT1"
FORMAT = "objstore-checkpoint"
HEADER_KIND = "ckpthead"
BLOCK_KIND = "ckptblock"
TOMB = 1 << 31
ADD = 1 << 30
SOURCE_MASK = ADD - 1
_LEN = struct.Struct(">Q")
HEAD_GUESS = 64 << 10  # one ranged read of this much holds most headers


@dataclass(frozen=True)
class Header:
    name: str
    writer: str
    created: str
    position: str
    sources: list[str]
    blocks: list[dict[str, Any]]
    end: int  # where the blocks start
    # The model.DERIVATION of its rows: the lowest of its sources' (1 when the field is absent),
    # so a reader derives again the entries of the kinds that changed since (Journal).
    derived: int = 1

    def created_at(self) -> _dt.datetime | None:
        try:
            return _dt.datetime.strptime(self.created, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.UTC)
        except (TypeError, ValueError):
            return None


@dataclass
class Block:
    table: str
    multi: bool
    keys: list[bytes]
    values: list[bytes]
    flags: array


# -- writing ----------------------------------------------------------------------------------


def _join(strings: list[str]) -> tuple[str, bytes]:
    if any("\n" in s for s in strings):
        return "json", json.dumps(strings, ensure_ascii=False).encode("utf-8")
    return "lines", "\n".join(strings).encode("utf-8")


def encode(
    *,
    writer: str,
    position: str,
    sources: list[str],
    rows: Mapping[str, tuple[bool, list[tuple[str, str, int]]]],
    created: _dt.datetime | None = None,
    level: int = 1,
    derived: int = model.DERIVATION,
) -> bytes:
    """The checkpoint file for ``rows``: table -> (multi, [(key, value, flags)]) sorted."""
    when = (created or _dt.datetime.now(_dt.UTC)).astimezone(_dt.UTC)
    blobs: list[bytes] = []
    descriptors: list[dict[str, Any]] = []
    offset = 0
    for table in sorted(rows):
        multi, table_rows = rows[table]
        enc_k, keys = _join([r[0] for r in table_rows])
        enc_v, values = _join([r[1] for r in table_rows])
        encoding = "json" if "json" in (enc_k, enc_v) else "lines"
        if encoding == "json":
            keys = json.dumps([r[0] for r in table_rows], ensure_ascii=False).encode("utf-8")
            values = json.dumps([r[1] for r in table_rows], ensure_ascii=False).encode("utf-8")
        flags = array("I", (r[2] for r in table_rows))
        if flags.itemsize != 4:  # pragma: no cover - every platform objstore runs on
            raise RuntimeError("array('I') is not 32 bits here")
        payload = b"".join((_LEN.pack(len(keys)), keys, _LEN.pack(len(values)), values, _le(flags)))
        blob = codec.encode(BLOCK_KIND, payload, level=level)
        descriptors.append({"table": table, "multi": multi, "rows": len(table_rows), "offset": offset,
                            "length": len(blob), "encoding": encoding})  # fmt: skip
        blobs.append(blob)
        offset += len(blob)
    header = {
        "format": FORMAT, "version": 1, "writer": writer,
        "created": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "position": position,
        "sources": list(sources), "blocks": descriptors, "derived": derived,
    }  # fmt: skip
    head = codec.encode(HEADER_KIND, codec.canonical_json(header))
    return b"".join((MAGIC, _LEN.pack(len(head)), head, *blobs))


def _le(flags: array) -> bytes:
    if _BIG_ENDIAN:
        flags = array("I", flags)
        flags.byteswap()
    return flags.tobytes()


_BIG_ENDIAN = array("I", [1]).tobytes()[0] == 0


# -- reading ----------------------------------------------------------------------------------


def header_length(prefix: bytes, name: str) -> int:
    """How many leading bytes of the file hold its header (to read them in one range)."""
    where = f"journal/{name}"
    if len(prefix) < len(MAGIC) + _LEN.size or not prefix.startswith(MAGIC):
        raise CorruptObject(where, "not an objstore checkpoint")
    (length,) = _LEN.unpack_from(prefix, len(MAGIC))
    return len(MAGIC) + _LEN.size + length


def parse_header(data: bytes, name: str) -> Header:
    """The header from the file's first bytes (at least header_length of them)."""
    where = f"journal/{name}"
    end = header_length(data, name)
    if len(data) < end:
        raise CorruptObject(where, "the checkpoint ends inside its header")
    _, payload = codec.decode(data[len(MAGIC) + _LEN.size : end], object_id=where, expect_kind=HEADER_KIND)
    doc = codec.parse_json(payload, object_id=where)
    ok = (
        isinstance(doc, dict)
        and doc.get("format") == FORMAT
        and isinstance(doc.get("sources"), list)
        and all(layout.is_journal_name(s) for s in doc["sources"])
        and isinstance(doc.get("blocks"), list)
        and layout.is_journal_name(doc.get("position"))
        and isinstance(doc.get("writer"), str)
    )
    if not ok:
        raise CorruptObject(where, "malformed checkpoint header")
    for b in doc["blocks"]:
        if not (
            isinstance(b, dict)
            and isinstance(b.get("table"), str)
            and all(isinstance(b.get(k), int) and not isinstance(b.get(k), bool) and b[k] >= 0
                    for k in ("rows", "offset", "length"))  # fmt: skip
            and b.get("encoding") in ("lines", "json")
        ):
            raise CorruptObject(where, f"malformed checkpoint block {str(b)[:80]}")
    derived = doc.get("derived", 1)
    derived = derived if isinstance(derived, int) and not isinstance(derived, bool) else 1
    return Header(
        name, doc["writer"], str(doc.get("created", "")), doc["position"], doc["sources"], doc["blocks"], end, derived
    )


def _split(raw: bytes, encoding: str, rows: int, where: str) -> list[bytes]:
    if encoding == "json":
        items = codec.parse_json(raw, object_id=where)
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise CorruptObject(where, "malformed checkpoint block")
        out = [i.encode("utf-8") for i in items]
    else:
        out = raw.split(b"\n") if rows else []
    if len(out) != rows:
        raise CorruptObject(where, f"a checkpoint block holds {len(out)} strings for {rows} rows")
    return out


def _block_columns(header: Header, descriptor: dict[str, Any], data: bytes) -> tuple[bytes, bytes, array]:
    """One block's frame decoded and cut: its keys' bytes, its values' bytes, its flags."""
    where = f"journal/{header.name}"
    start = header.end + descriptor["offset"]
    frame = data[start : start + descriptor["length"]]
    if len(frame) != descriptor["length"]:
        raise CorruptObject(where, "the checkpoint ends inside a block")
    _, payload = codec.decode(frame, object_id=where, expect_kind=BLOCK_KIND)
    rows = descriptor["rows"]
    try:
        (klen,) = _LEN.unpack_from(payload, 0)
        keys = payload[8 : 8 + klen]
        (vlen,) = _LEN.unpack_from(payload, 8 + klen)
        values = payload[16 + klen : 16 + klen + vlen]
        raw_flags = payload[16 + klen + vlen :]
    except struct.error:
        raise CorruptObject(where, "truncated checkpoint block") from None
    if len(raw_flags) != 4 * rows or len(keys) != klen or len(values) != vlen:
        raise CorruptObject(where, "truncated checkpoint block")
    flags = array("I")
    flags.frombytes(raw_flags)
    if _BIG_ENDIAN:
        flags.byteswap()
    return keys, values, flags


def parse_block(header: Header, descriptor: dict[str, Any], data: bytes) -> Block:
    """One table's rows; ``data`` is the whole file."""
    where = f"journal/{header.name}"
    keys, values, flags = _block_columns(header, descriptor, data)
    rows = descriptor["rows"]
    block = Block(descriptor["table"], bool(descriptor.get("multi")),
                  _split(keys, descriptor["encoding"], rows, where),
                  _split(values, descriptor["encoding"], rows, where), flags)  # fmt: skip
    # A row naming a source index the header does not list (only a foreign writer could) counts
    # as written by a source the reader has not seen: it is applied.
    return block


def check_block(header: Header, descriptor: dict[str, Any], data: bytes) -> int:
    """What parse_block checks (the frame, its cuts, a string per row), without making the
    strings: fsck verifies a checkpoint of millions of rows it needs only a table of. The rows."""
    where = f"journal/{header.name}"
    keys, values, _ = _block_columns(header, descriptor, data)
    rows: int = descriptor["rows"]
    for raw in (keys, values):
        if descriptor["encoding"] == "json":
            _split(raw, "json", rows, where)
        elif rows and (held := raw.count(b"\n") + 1) != rows:
            raise CorruptObject(where, f"a checkpoint block holds {held} strings for {rows} rows")
    return rows


def parse(name: str, data: bytes) -> tuple[Header, list[Block]]:
    """The whole checkpoint, every block verified; CorruptObject naming it when it is damaged."""
    header = parse_header(data, name)
    return header, [parse_block(header, d, data) for d in header.blocks]


def well_formed_columns(entries: list, tables: Mapping[str, bool]) -> tuple[list, list, list, list] | None:
    """(ops, tables, keys, values) of journal entries when every one is an [op, known table, key,
    value] list of strings with a key (and a multi table's value) LMDB can hold, checked by a few
    passes of C loops (millions of entries); None means: check them one by one (Index.check_entry)."""
    if not entries:
        return [], [], [], []
    if set(map(type, entries)) != {list} or set(map(len, entries)) != {4}:
        return None
    ops, names, keys, values = (list(map(operator.itemgetter(i), entries)) for i in range(4))
    if not set(ops) <= {"put", "add", "del", "delall"} or not set(names) <= tables.keys():
        return None
    if set(map(type, keys)) != {str} or set(map(type, values)) != {str}:
        return None
    lengths = set(map(len, keys))
    if 0 in lengths or max(lengths) > 127:  # 127 characters are at most 508 utf-8 bytes
        return None
    multi = {t for t, m in tables.items() if m}
    if multi and max(map(len, compress(values, map(multi.__contains__, names))), default=0) > 127:
        return None
    return ops, names, keys, values


def all_well_formed(entries: list, tables: Mapping[str, bool]) -> bool:
    """Whether every journal entry is well formed (well_formed_columns)."""
    return well_formed_columns(entries, tables) is not None


# -- folding sources into one -----------------------------------------------------------------


@dataclass
class Fold:
    """Sources folded in order, as Index.apply would leave them, keeping for every row of a
    single table the source that wrote it last (see the module docstring)."""

    tables: Mapping[str, bool]
    sources: list[str] = field(default_factory=list)
    single: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)  # -> (value, flags)
    multi: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    tombs: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)  # multi deletions
    skipped: int = 0  # entries naming a table this objstore does not know
    derived: int = model.DERIVATION  # the lowest model.DERIVATION of the sources folded

    def add_source(self, name: str) -> int:
        self.sources.append(name)
        return len(self.sources) - 1

    def apply(self, entries: Iterable[tuple[str, str, str, str]], src: int) -> None:
        """Fold a segment's (checked) entries, written by source ``src``."""
        tables = self.tables
        for op, table, key, value in entries:
            multi = tables.get(table)
            if multi is None:
                self.skipped += 1
            elif multi:
                self._multi(op, table, key, value, src)
            else:
                self._single(op, table, key, value, src)

    def _single(self, op: str, table: str, key: str, value: str, src: int) -> None:
        rows = self.single.setdefault(table, {})
        if op == "put":
            rows[key] = (value, src)
        elif op == "add":
            held = rows.get(key)
            if held is None or held[1] & TOMB:
                rows[key] = (value, src | ADD)
        else:  # del (value: only if it holds that value; "": whatever it holds) and delall
            held = rows.get(key)
            cond = value if op == "del" else ""
            if held is None or held[1] & TOMB or not cond or held[0] == cond:
                rows[key] = (cond, src | TOMB)

    def _multi(self, op: str, table: str, key: str, value: str, src: int) -> None:
        sets = self.multi.setdefault(table, {})
        if op == "add":
            sets.setdefault(key, set()).add(value)
        elif op == "put":
            self._multi("delall", table, key, "", src)
            sets.setdefault(key, set()).add(value)
        else:
            if op == "delall" or not value:
                sets.pop(key, None)
                self.tombs.setdefault(table, {})[(key, "")] = src
            else:
                held = sets.get(key)
                if held is not None:
                    held.discard(value)
                    if not held:
                        del sets[key]
                self.tombs.setdefault(table, {})[(key, value)] = src

    def apply_blocks(self, blocks: Iterable[Block], src: int) -> None:
        """Fold an older checkpoint's rows as one source: its deletions first, then its rows."""
        for block in blocks:
            multi = self.tables.get(block.table)
            if multi is None or multi != block.multi:
                self.skipped += len(block.keys)
                continue
            rows = list(zip(block.keys, block.values, block.flags))
            for k, v, f in rows:
                if f & TOMB:
                    self._apply_row(block.table, multi, k.decode("utf-8"), v.decode("utf-8"), f, src)
            for k, v, f in rows:
                if not f & TOMB:
                    self._apply_row(block.table, multi, k.decode("utf-8"), v.decode("utf-8"), f, src)

    def _apply_row(self, table: str, multi: bool, key: str, value: str, flags: int, src: int) -> None:
        if flags & TOMB:
            op = "delall" if not value else "del"
        else:
            op = "add" if (multi or flags & ADD) else "put"
        (self._multi if multi else self._single)(op, table, key, value, src)

    def rows(self) -> dict[str, tuple[bool, list[tuple[str, str, int]]]]:
        out: dict[str, tuple[bool, list[tuple[str, str, int]]]] = {}
        for table, single in self.single.items():
            out[table] = (False, sorted((k, v, f) for k, (v, f) in single.items()))
        for table in set(self.multi) | set(self.tombs):
            rows = [(k, v, 0) for k, vals in self.multi.get(table, {}).items() for v in vals]
            rows.extend((k, v, src | TOMB) for (k, v), src in self.tombs.get(table, {}).items())
            out[table] = (True, sorted(rows))
        return {t: r for t, r in out.items() if r[1]}

    def count(self) -> int:
        return sum(len(r) for r in self.single.values()) + sum(
            len(v) for sets in self.multi.values() for v in sets.values()
        )


__all__ = [
    "MAGIC", "FORMAT", "TOMB", "ADD", "SOURCE_MASK", "HEAD_GUESS", "Header", "Block", "Fold",
    "encode", "header_length", "parse_header", "parse_block", "check_block", "parse",
]
