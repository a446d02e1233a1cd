"""The journal segment format: one object-encoded document (kind ``journal``) per flush,
listing the objects it wrote and the index entries they imply; and a checkpoint read as one
segment. Pure apart from logging what it skips.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from objstore import codec, model
from objstore.errors import CorruptObject
from objstore.ids import all_ids, is_hash, is_uuid
from objstore.index import Index
from objstore.model.schema import IndexEntry

log = logging.getLogger("objstore.repo")
_DECODER = json.JSONDecoder()

KIND = "journal"
FORMAT = "objstore-journal"
Listing = list[list[str]]  # [[object id, kind], ...]


@dataclass(frozen=True)
class Segment:
    """One segment as read back: what it lists, its raw entries, and the model.DERIVATION its
    writer derived them with (1 when the segment predates the field)."""

    name: str
    listing: Listing
    entries: list[Any]
    derivation: int = model.DERIVATION


def encode(writer: str, listing: Listing, entries: list[IndexEntry]) -> bytes:
    doc = {"format": FORMAT, "version": 1, "writer": writer, "derived": model.DERIVATION,
           "objects": listing, "entries": entries}  # fmt: skip
    return codec.encode(KIND, codec.canonical_json(doc))


def decode(name: str, data: bytes) -> tuple[Listing, list[Any]]:
    """(object listing, raw entries) of a segment; CorruptObject naming it when unreadable.
    A malformed listing item is skipped (and logged); entries are checked by the caller."""
    segment = parse(name, data)
    return segment.listing, segment.entries


def parse(name: str, data: bytes) -> Segment:
    """The segment ``name`` from its bytes; CorruptObject naming it when unreadable."""
    where = f"journal/{name}"
    _, payload = codec.decode(data, object_id=where, expect_kind=KIND)
    doc = codec.parse_json(payload, object_id=where)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CorruptObject(where, "not an objstore journal segment")
    listing = _listing(doc.get("objects") or [], where)
    entries = doc.get("entries") or []
    derived = doc.get("derived", 1)
    return Segment(name, listing, entries if isinstance(entries, list) else [],
                   derived if isinstance(derived, int) else 1)  # fmt: skip




def _listing(items: Any, where: str) -> Listing:
    """The well-formed [id, kind] items of a listing: all of them checked at once by a few C
    passes and one regex over the ids joined (a fresh client reads a million), or, when that
    fails, one by one, skipping (and logging) the bad ones."""
    if isinstance(items, list) and set(map(type, items)) <= {list} and set(map(len, items)) <= {2}:
        ids = list(map(itemgetter(0), items))
        if set(map(type, ids)) <= {str} and set(map(type, map(itemgetter(1), items))) <= {str}:
            if all_ids(ids):
                return items
    listing: Listing = []
    for item in items if isinstance(items, list) else []:
        if (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[1], str)
            and (is_hash(item[0]) or is_uuid(item[0]))
        ):
            listing.append(item)
        else:
            log.warning("%s: skipping malformed object listing %r", where, item)
    return listing


_LISTING = b'"objects":['


def parse_listing(name: str, data: bytes) -> Listing:
    """Only what a segment lists, without parsing its (much larger) entries: the document is
    canonical JSON (sorted keys, no spaces), and a quote inside a JSON string is always escaped,
    so the one unescaped ``"objects":[`` is the listing's key. Falls back to a full parse."""
    where = f"journal/{name}"
    _, payload = codec.decode(data, object_id=where, expect_kind=KIND)
    at = payload.rfind(_LISTING)
    if at >= 0:
        try:
            raw, _ = _DECODER.raw_decode(payload[at + len(_LISTING) - 1 :].decode("utf-8"))
        except ValueError:
            raw = None
        if isinstance(raw, list):
            return [item for item in raw if isinstance(item, list) and len(item) == 2
                    and isinstance(item[1], str) and (is_hash(item[0]) or is_uuid(item[0]))]  # fmt: skip
    return parse(name, data).listing


def index_entries(index: Index, listing: Listing, entries: Iterable[IndexEntry]) -> list[IndexEntry]:
    """What a segment implies for the index: each object's kind, then its entries."""
    out: list[IndexEntry] = []
    if "objects" in index.tables:
        out.extend(("put", "objects", oid, kind) for oid, kind in listing)
    out.extend(entries)
    return out


def valid_entries(index: Index, entries: Iterable[Any], where: str) -> list[IndexEntry]:
    """Entries read back from the repository: a bad one is skipped, never fatal."""
    good: list[Any] = []
    for e in entries:
        try:
            index.check_entry(e)
            if e[1] == "evals" and e[0] == "put" and not (is_hash(e[2]) and is_hash(e[3])):
                # A head is an eval hash -> a value hash (set_eval_head validates both): anything
                # else came from damage, and would make every fresh index miss that call.
                raise ValueError("an eval head maps a hash to a value hash")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s: skipping index entry %r: %s", where, e, exc)
            continue
        good.append(tuple(e))
    return good


def checkpoint_segment(name: str, data: bytes, *, listing_only: bool) -> Segment:
    """A checkpoint read as a segment would be: its objects rows as the listing, the rest of its
    rows (not its deletions) as entries."""
    from objstore.repo import checkpoint as ckpt

    head, blocks = ckpt.parse(name, data)
    listing: Listing = []
    entries: list[Any] = []
    for block in blocks:
        if block.table != "objects" and listing_only:
            continue
        op = "add" if block.multi else "put"
        for k, v, f in zip(block.keys, block.values, block.flags or [0] * len(block.keys)):
            if f & ckpt.TOMB:
                continue
            if block.table == "objects":
                listing.append([k.decode(), v.decode()])
            else:
                entries.append([op, block.table, k.decode(), v.decode()])
    return Segment(name, listing, entries, head.derived)


__all__ = [
    "Segment", "Listing", "encode", "decode", "parse", "parse_listing", "checkpoint_segment", "index_entries",
    "valid_entries", "KIND", "FORMAT",
]
