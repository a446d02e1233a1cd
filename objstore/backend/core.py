"""The shared core of the provenance API: one Repository, a read-your-writes overlay, a cache.

The repository buffers objects until flush() and only then applies their index entries to LMDB,
but a scheduler asks about what it wrote a millisecond ago (CSE within one execution, tags it
just superseded). So every entry this process writes also lands in an in-memory overlay that
queries merge with the index until the next flush. Objects are immutable, so decoded ones are
kept in a bounded cache without any invalidation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Iterable

from objstore import records
from objstore.errors import CorruptObject, ObjectNotFound
from objstore.store import MISSING  # one sentinel for store, index and backend

log = logging.getLogger("objstore.backend")




class Overlay:
    """Index entries written since the last flush, in the index's own table shapes."""

    def __init__(self, tables: dict[str, bool]):
        self._multi = dict(tables)
        self.single: dict[str, dict[str, str]] = {}
        self.multi: dict[str, dict[str, set[str]]] = {}

    def apply(self, entries: Iterable[records.IndexEntry]) -> None:
        for op, table, key, value in entries:
            if op == "put":
                self.single.setdefault(table, {})[key] = value
            elif op == "add":
                self.multi.setdefault(table, {}).setdefault(key, set()).add(value)
            # del/delall are never produced by the provenance layer (everything is append-only).

    def clear(self) -> None:
        self.single.clear()
        self.multi.clear()


class Core:
    """Repository access shared by every concern module (values, calls, jobs, cache, ...)."""

    def __init__(
        self,
        repo: Any,
        *,
        flush_every: int = 5000,
        flush_interval: float = 0.5,
        cache_size: int = 20000,
    ):
        self.repo = repo
        self.index = repo.index
        self.flush_every = flush_every
        self.flush_interval = flush_interval
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._overlay = Overlay(records.INDEX_TABLES)
        self._pending = 0
        self._last_flush = time.monotonic()
        self.lock = threading.RLock()

    # -- index reads (overlay merged) --------------------------------------------------------

    def lookup(self, table: str, key: str) -> Any:
        value = self._overlay.single.get(table, {}).get(key)
        if value is not None:
            return value
        found = self.index.get(table, key)
        return found if isinstance(found, str) else MISSING

    def lookup_all(self, table: str, key: str) -> list[str]:
        pending = self._overlay.multi.get(table, {}).get(key)
        stored = self.index.get_all(table, key)
        if not pending:
            return list(stored)
        return sorted(set(stored) | pending)

    def has(self, object_id: str) -> bool:
        return self.kind_of(object_id) is not MISSING

    def kind_of(self, object_id: str) -> Any:
        return self.lookup("objects", object_id)

    # -- object reads ------------------------------------------------------------------------

    def get(self, object_id: str, kind: str | None = None) -> tuple[str, bytes]:
        """(kind, payload), verified; ObjectNotFound / CorruptObject otherwise."""
        hit = self._cache.get(object_id)
        if hit is not None:
            if kind is not None and hit[0] != kind:
                raise CorruptObject(object_id, f"kind {hit[0]!r} is not the expected {kind!r}")
            return hit
        got_kind, payload = self.repo.get(object_id, expect_kind=kind)
        records.verify(got_kind, object_id, payload)
        self._remember(object_id, got_kind, payload)
        return got_kind, payload

    def get_or_missing(self, object_id: str, kind: str | None = None) -> Any:
        """The object, or MISSING (a corrupt object is logged and treated as missing)."""
        try:
            return self.get(object_id, kind)
        except ObjectNotFound:
            return MISSING
        except CorruptObject as exc:
            log.warning("objstore: ignoring corrupt object: %s", exc)
            return MISSING

    def get_meta(self, object_id: str, kind: str) -> Any:
        """Decoded metadata dict of a non-value object, or MISSING."""
        got = self.get_or_missing(object_id, kind)
        if got is MISSING:
            return MISSING
        try:
            return records.decode(kind, got[1], object_id)
        except CorruptObject as exc:
            log.warning("objstore: ignoring corrupt object: %s", exc)
            return MISSING

    def _remember(self, object_id: str, kind: str, payload: bytes) -> None:
        cache = self._cache
        cache[object_id] = (kind, payload)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    # -- writes ------------------------------------------------------------------------------

    def add(self, kind: str, object_id: str, payload: bytes) -> None:
        entries = records.derive_entries(kind, object_id, payload)
        with self.lock:
            self.repo.add(object_id, kind, payload, entries)
            self._overlay.apply(entries)
            self._remember(object_id, kind, payload)
            self._pending += 1

    def note(self, entries: list[records.IndexEntry]) -> None:
        with self.lock:
            self.repo.note(entries)
            self._overlay.apply(entries)
            self._pending += 1

    def set_eval_head(self, eval_hash: str, value_hash: str) -> None:
        with self.lock:
            self.repo.set_eval_head(eval_hash, value_hash)
            self._overlay.single.setdefault("evals", {})[eval_hash] = value_hash
            self._pending += 1

    def eval_head(self, eval_hash: str) -> Any:
        value = self._overlay.single.get("evals", {}).get(eval_hash)
        if value is not None:
            return value
        found = self.repo.eval_head(eval_hash)
        return found if isinstance(found, str) else MISSING

    # -- flushing ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._pending

    def flush(self) -> None:
        with self.lock:
            self.repo.flush()
            self._overlay.clear()
            self._pending = 0
            self._last_flush = time.monotonic()

    def maybe_flush(self) -> bool:
        """Flush when the buffer is large or the last flush is old; True if it flushed."""
        if not self._pending:
            return False
        if self._pending >= self.flush_every or time.monotonic() - self._last_flush > self.flush_interval:
            self.flush()
            return True
        return False

    def refresh(self) -> int:
        with self.lock:
            return self.repo.refresh()
