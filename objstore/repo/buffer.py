"""The write buffer: what this process recorded since its last flush, readable at once.

A scheduler asks about what it wrote a millisecond ago (CSE within one execution, a tag it just
superseded), long before a flush has put it into the repository and the index. So every record
lands here with the index entries it implies, and reads look here first. There is one buffer
per repository; an entry only ever moves ``current`` -> ``flushing`` -> the index, and reads
look in that order, so a read never misses an entry that is moving concurrently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from objstore.model.schema import IndexEntry

Buffered = tuple[str, bytes, list[IndexEntry]]  # kind, payload, index entries


def checked_entries(check: Callable[[Any], object], entries: Iterable[IndexEntry]) -> list[IndexEntry]:
    """``entries`` as the buffer keeps them: each fully checked once (``check`` raises, here at
    the writer) and an immutable tuple of str, so the flush hands them to the journal and the
    index (apply(prechecked=True)) without checking them again."""
    out: list[Any] = []
    for e in entries:
        check(e)
        out.append(e if type(e) is tuple else tuple(e))
    return out


@dataclass
class Batch:
    """One flush's worth of records, and the index entries they imply in the index's shapes."""

    objects: dict[str, Buffered] = field(default_factory=dict)
    notes: list[IndexEntry] = field(default_factory=list)  # journal-only entries
    evals: dict[str, str] = field(default_factory=dict)  # eval_hash -> value_hash
    single: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> key -> value
    multi: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # table -> key -> values

    def __len__(self) -> int:
        return len(self.objects) + len(self.notes) + len(self.evals)

    def overlay(self, entries: Iterable[IndexEntry]) -> None:
        single, multi = self.single, self.multi
        for op, table, key, value in entries:
            if op == "put":
                single.setdefault(table, {})[key] = value
            elif op == "add":
                multi.setdefault(table, {}).setdefault(key, set()).add(value)
            # del / delall are never buffered: records are append-only.

    def merge_newer(self, newer: Batch) -> None:
        """Put ``newer`` on top of this batch (its objects are duplicates, its heads win)."""
        for object_id, item in newer.objects.items():
            mine = self.objects.get(object_id)
            if mine is None:
                self.objects[object_id] = item
            else:
                mine[2].extend(item[2])
        self.notes.extend(newer.notes)
        self.evals.update(newer.evals)
        for table, values in newer.single.items():
            self.single.setdefault(table, {}).update(values)
        for table, keys in newer.multi.items():
            mine_keys = self.multi.setdefault(table, {})
            for key, vals in keys.items():
                mine_keys.setdefault(key, set()).update(vals)


_EMPTY: dict = {}


class WriteBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = Batch()
        self._flushing: Batch | None = None

    # -- writes -------------------------------------------------------------------------------

    def add(self, object_id: str, kind: str, payload: bytes, entries: list[IndexEntry]) -> None:
        with self._lock:
            batch = self._current
            item = batch.objects.get(object_id)
            if item is None:
                batch.objects[object_id] = (kind, payload, entries)
            else:  # objects are immutable: a second add keeps the first payload
                item[2].extend(entries)
            batch.overlay(entries)

    def note(self, entries: list[IndexEntry]) -> None:
        with self._lock:
            self._current.notes.extend(entries)
            self._current.overlay(entries)

    def set_eval_head(self, eval_hash: str, value_hash: str) -> None:
        with self._lock:
            self._current.evals[eval_hash] = value_hash
            self._current.single.setdefault("evals", {})[eval_hash] = value_hash

    def pending(self) -> int:
        return len(self._current)

    def idle(self) -> bool:
        """Nothing buffered and nothing being flushed: reads may skip the overlay."""
        return not len(self._current) and self._flushing is None

    # -- the flush's side ---------------------------------------------------------------------

    def take(self) -> Batch | None:
        """Hand the buffered records to a flush (None when there are none)."""
        with self._lock:
            batch = self._current
            if not batch:
                return None
            self._flushing = batch  # before the swap: a reader then finds it in one or the other
            self._current = Batch()
            return batch

    def done(self, batch: Batch) -> None:
        """The batch is in the repository and the index: stop answering from it."""
        with self._lock:
            if self._flushing is batch:
                self._flushing = None

    def restore(self, batch: Batch) -> None:
        """A flush failed: its records go back in front of whatever was buffered meanwhile.
        ``flushing`` stays until the next take, for readers that already passed ``current``."""
        with self._lock:
            batch.merge_newer(self._current)
            self._current = batch

    # -- reads (lock-free: dict reads are atomic, and entries only move forward) ---------------

    def object(self, object_id: str) -> tuple[str, bytes] | None:
        for batch in (self._current, self._flushing):
            if batch is not None:
                item = batch.objects.get(object_id)
                if item is not None:
                    return item[0], item[1]
        return None

    def lookup(self, table: str, key: str) -> str | None:
        value = self._current.single.get(table, _EMPTY).get(key)
        if value is None:
            flushing = self._flushing
            if flushing is not None:
                value = flushing.single.get(table, _EMPTY).get(key)
        return value

    def lookup_all(self, table: str, key: str) -> set[str] | None:
        found = self._current.multi.get(table, _EMPTY).get(key)
        flushing = self._flushing
        if flushing is not None:
            more = flushing.multi.get(table, _EMPTY).get(key)
            if more:
                found = more | found if found else more
        return found


__all__ = ["checked_entries", "Batch", "WriteBuffer", "Buffered"]
