"""What an index knows about itself: the journal files it has applied (``_segments``) and its
meta record (``_meta``: the repository it belongs to, the journal marker, ...)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from objstore.index.entries import encode_key
from objstore.index.env import META, SEGMENTS
from objstore.index.reads import Tables
from objstore.index.writes import Writes
from objstore.missing import MISSING


class Marks:
    """The journal files applied and the meta of one Index (``core``: its tables)."""

    def __init__(self, core: Tables, writes: Writes):
        self.core = core
        self.writes = writes

    def has_segment(self, name: str) -> bool:
        return self.core.get(SEGMENTS, name) is not MISSING

    def segment_marks(self, names: Iterable[str]) -> list:
        """For each journal name: "" if ingested itself, the covering checkpoint's name if a
        checkpoint covered it, MISSING if never seen."""
        return self.core.get_many(SEGMENTS, names)

    def mark_segments(self, marks: Mapping[str, str]) -> None:
        """Record journal names as seen (see ``segment_marks``)."""
        self.writes.load((), marks=marks)

    def segments(self) -> set[str]:
        return {k for k, _ in self.core.scan(SEGMENTS)}

    def segment_count(self) -> int:
        """How many segments the index has applied (O(1): a cheap "has anything changed?")."""
        return self.core.count(SEGMENTS)

    def meta_get(self, key: str):
        return self.core.get(META, key)

    def meta_put(self, key: str, value: str) -> None:
        k, v = encode_key(key), value.encode("utf-8")
        db = self.core._dbs[META]

        def body(txn: Any) -> None:
            txn.put(k, v, db=db)

        self.core._write(body)


__all__ = ["Marks"]
