"""The shared core of the provenance API: one Repository, a read-your-writes overlay, a cache.

The repository buffers objects until flush() and only then applies their index entries to LMDB,
but a scheduler asks about what it wrote a millisecond ago (CSE within one execution, tags it
just superseded). So every entry this process writes also lands in an in-memory overlay that
queries merge with the index until the next flush. Objects are immutable, so decoded ones are
kept in a bounded cache without any invalidation.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Iterable

from objstore import fs as fs_mod
from objstore import records
from objstore.errors import CorruptObject, ObjectNotFound
from objstore.ids import is_hash, is_uuid
from objstore.index import MAX_KEY_BYTES
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

    def merge_under(self, newer: "Overlay") -> None:
        """Put ``newer`` on top of this overlay (its single values win)."""
        for table, values in newer.single.items():
            self.single.setdefault(table, {}).update(values)
        for table, keys in newer.multi.items():
            mine = self.multi.setdefault(table, {})
            for key, values in keys.items():
                mine.setdefault(key, set()).update(values)


class Core:
    """Repository access shared by every concern module (values, calls, jobs, cache, ...).

    Reads merge two overlays with the index: ``_overlay`` (written since the last flush began)
    and ``_flushing`` (entries of the flush in progress, until the index has them). An entry
    only ever moves overlay -> flushing -> index, and reads look in that order, so a read never
    misses an entry that is moving concurrently.
    """

    def __init__(
        self,
        repo: Any,
        *,
        flush_every: int = 5000,
        flush_interval: float = 0.5,
        cache_size: int = 20000,
        background: bool = True,
    ):
        self.repo = repo
        self.index = repo.index
        self.flush_every = flush_every
        self.flush_interval = flush_interval
        self.background = background
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._overlay = Overlay(records.INDEX_TABLES)
        self._flushing: Overlay | None = None
        self._pending = 0
        self._last_flush = time.monotonic()
        self.lock = threading.RLock()  # guards the overlay together with the repo buffer
        self._flush_mutex = threading.Lock()  # one flush at a time, foreground or background
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self._closing = False
        # Where a local repository keeps eval heads, for a cheap stat before the GET of a miss.
        self._local_evals: str | None = None
        if fs_mod.is_local(getattr(repo, "fs", None)):
            self._local_evals = f"{repo.root.rstrip('/')}/evals/"

    # -- index reads (overlays merged) -------------------------------------------------------

    def lookup(self, table: str, key: str) -> Any:
        value = self._overlay.single.get(table, _EMPTY).get(key)
        if value is not None:
            return value
        flushing = self._flushing
        if flushing is not None:
            value = flushing.single.get(table, _EMPTY).get(key)
            if value is not None:
                return value
        try:
            found = self.index.get(table, key)
        except (ValueError, TypeError):
            if _indexable(key):
                raise
            return MISSING  # a key LMDB cannot hold (empty, over-long) was never written
        return found if isinstance(found, str) else MISSING

    def lookup_all(self, table: str, key: str) -> list[str]:
        pending = self._overlay.multi.get(table, _EMPTY).get(key)
        flushing = self._flushing
        if flushing is not None:
            more = flushing.multi.get(table, _EMPTY).get(key)
            if more:
                pending = more | pending if pending else more
        try:
            stored = self.index.get_all(table, key)
        except (ValueError, TypeError):
            if _indexable(key):
                raise
            stored = []
        if not pending:
            return list(stored)
        return sorted(set(stored) | pending)

    def has(self, object_id: str) -> bool:
        return self.lookup("objects", object_id) is not MISSING

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
        """The object, or MISSING (a corrupt object is logged and treated as missing).

        An id that is neither a hash nor a uuid names nothing that can be stored, so a query for
        one (get_value('../x'), get_job('x')) is absent, as sqlite answers it, not an InvalidId
        raised inside the scheduler. Writes still validate and refuse it.
        """
        if not (is_hash(object_id) or is_uuid(object_id)):
            return MISSING
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

    def add(self, kind: str, object_id: str, payload: bytes, entries: list | None = None) -> None:
        """Buffer an object; ``entries`` (from a records.*_record builder) spare re-parsing it."""
        if entries is None:
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
        if not is_hash(eval_hash):
            return MISSING  # cannot have been set (set_eval_head validates): a miss, as sqlite
        value = self._overlay.single.get("evals", _EMPTY).get(eval_hash)
        if value is None:
            flushing = self._flushing
            if flushing is not None:
                value = flushing.single.get("evals", _EMPTY).get(eval_hash)
        if value is not None:
            return value
        local = self._local_evals
        if local is not None and is_hash(eval_hash) and self.index.get("evals", eval_hash) is MISSING:
            # Every new job of a first run misses here; another writer's head is still found
            # (the file exists), only the repository's GET through fsspec is spared.
            if not os.path.exists(f"{local}{eval_hash[:2]}/{eval_hash[2:]}"):
                return MISSING
        found = self.repo.eval_head(eval_hash)
        return found if isinstance(found, str) else MISSING

    # -- flushing ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._pending

    def flush(self) -> None:
        """Write everything buffered so far; returns once it is in the repository and index.

        A failure of an earlier background flush left its buffer in place, so this retries it
        (and raises if the repository still refuses).
        """
        with self._flush_mutex:
            self._flush_locked()

    def _flush_locked(self) -> None:
        with self.lock:
            empty = not self._pending
        if empty:
            self.repo.flush()  # cheap when empty; covers anything buffered around us
            return
        with self.lock:
            # Swap before the repository swaps its buffer: an entry added in between is in
            # both the new overlay and this flush, which only keeps it in memory a bit longer.
            flushing, self._flushing = self._overlay, self._overlay
            self._overlay = Overlay(records.INDEX_TABLES)
            pending, self._pending = self._pending, 0
            self._last_flush = time.monotonic()
        try:
            self.repo.flush()
        except BaseException:
            with self.lock:  # the repository kept its buffer: so must the overlay
                merged = Overlay(records.INDEX_TABLES)
                merged.merge_under(flushing)
                merged.merge_under(self._overlay)
                self._overlay = merged
                self._pending += pending
                # _flushing stays until the next swap: a reader that already passed the old
                # overlay still finds these entries there.
            raise
        self._flushing = None

    def maybe_flush(self) -> bool:
        """Flush when the buffer is large or the last flush is old; True if a flush started.

        With ``background`` the flush runs on a worker thread, so the scheduler keeps going
        while objects are written (file creation and uploads release the GIL).
        """
        if not self._pending:
            return False
        if self._pending < self.flush_every and time.monotonic() - self._last_flush <= self.flush_interval:
            return False
        if not self.background:
            self.flush()
            return True
        if self._flush_mutex.locked():
            return False  # one is running; the next check starts another
        self._last_flush = time.monotonic()
        self._start_worker()
        self._wake.set()
        return True

    def _start_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            with self.lock:
                if self._worker is None or not self._worker.is_alive():
                    self._closing = False
                    self._worker = threading.Thread(target=self._work, name="objstore-flush", daemon=True)
                    self._worker.start()

    def _work(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            try:
                self.flush()
            except Exception as exc:  # kept for the next foreground flush, which retries
                log.warning("objstore: background flush failed (will retry): %s", exc)

    def stop(self) -> None:
        """Stop the background worker (after its current flush); does not flush."""
        worker = self._worker
        if worker is not None:
            self._closing = True
            self._wake.set()
            worker.join()
            self._worker = None

    def refresh(self) -> int:
        with self.lock:
            return self.repo.refresh()


_EMPTY: dict = {}


def _indexable(key: object) -> bool:
    """Whether the index could hold ``key``: queries built from bad input (an empty or huge
    id) are answered as absent rather than with the index's key error."""
    return isinstance(key, str) and 0 < len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES
