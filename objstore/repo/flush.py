"""Flushing: when buffered records are written, and the order they are written in.

Write order, the promise that makes copying and concurrent readers safe: every object of the
batch (its values of value_store_min_size bytes or more in the value store, when the repository
has one; its small ones as one pack), then ONE journal segment naming what the batch added (its
eval heads included), then the eval heads' files where they are kept (shared storage), and only
then the same entries into the local index. A reader that sees a
journal entry or an eval head can therefore always fetch the objects behind it; a crash
mid-flush leaves at worst a few unreferenced immutable objects; a failed flush keeps its batch
for the next attempt.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from objstore import pack
from objstore.errors import ReadOnlyRepository, StorageError
from objstore.index import Index
from objstore.model.schema import IndexEntry
from objstore.repo import journal as journal_mod
from objstore.repo.buffer import Batch, WriteBuffer
from objstore.repo.evals import EvalHeads
from objstore.repo.journal import Journal
from objstore.repo.repair import DamageLedger
from objstore.store import ObjectStore

log = logging.getLogger("objstore.repo")

# A flush packs its small objects when it has at least this many; a lone object stays loose,
# where a reader without the journal entry still finds it by its path.
PACK_MIN_OBJECTS = 2
# What a refused write looks like: a read-only mount, an immutable file, read-only credentials.
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})

# (URL, store, min size) of the value store new big values go to, or None.
ValueStoreTarget = tuple[str, ObjectStore, int] | None


@dataclass(frozen=True)
class FlushPolicy:
    """When a repository writes what it has buffered: one setting for every caller.

    ``durable``: fsync every flush, and flush at every job end (nothing acknowledged is lost).
    Otherwise a flush starts, in the background, once ``max_items`` records are buffered or the
    last flush is ``interval`` seconds old, and always at the end of a root job and on close.
    """

    durable: bool = False
    max_items: int = 5000
    interval: float = 0.5
    background: bool = True


class Flusher:
    def __init__(
        self,
        *,
        buffer: WriteBuffer,
        store: ObjectStore,
        evals: EvalHeads,
        journal: Journal,
        index: Index,
        packs: Callable[[], bool],
        policy: FlushPolicy,
        lock: threading.Lock,
        damage: DamageLedger,
        value_store: Callable[[], ValueStoreTarget] = lambda: None,
    ):
        self.damage = damage
        self.buffer = buffer
        self.store = store
        self.evals = evals
        self.journal = journal
        self.index = index
        self.packs = packs
        self.value_store = value_store
        self.policy = policy
        self._lock = lock  # one flush at a time, and never beside a journal refresh
        self._last = time.monotonic()
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._stopping = False
        self._requested = False
        self._last_warning = ""
        self.read_only: ReadOnlyRepository | None = None

    # -- the flush ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything buffered; returns once it is in the repository and the index.

        On a repository that refuses writes (read-only mount, immutable files, read-only
        credentials) this raises ReadOnlyRepository, keeps the batch (reads still see it), and
        from then on raises it again at once instead of trying every write anew."""
        if self.read_only is not None:
            raise self.read_only
        with self._lock:
            batch = self.buffer.take()
            if batch is None:
                return
            self._last = time.monotonic()
            try:
                segment, entries = self._write(batch)
            except BaseException as exc:
                self.buffer.restore(batch)
                if isinstance(exc, StorageError) and exc.errno in READ_ONLY_ERRNOS:
                    self.read_only = ReadOnlyRepository(exc.errno, str(exc))
                    raise self.read_only from exc
                raise
            try:
                # The segment is in the repository now; a failure here only delays this index
                # (a refresh ingests the segment later), so the batch is not restored.
                self.index.apply(entries, segment=segment, prechecked=True)
                self.damage.repaired(batch.objects)
            finally:
                self.buffer.done(batch)

    def _write(self, batch: Batch) -> tuple[str, list[IndexEntry]]:
        objects = batch.objects
        located: list[tuple[str, str, pack.Location]] = []
        elsewhere: list[tuple[str, Any]] = []
        if objects:
            # Every buffered object is written, even one the index already lists: the index can
            # outlive the bytes (a lost pack, a partial copy), and writing again is the repair.
            todo = [(oid, kind, payload) for oid, (kind, payload, _) in objects.items()]
            target = self.value_store()
            if target is not None:
                url, store, min_size = target
                big = [item for item in todo if item[1] == "value" and len(item[2]) >= min_size]
                if big:
                    store.put_many(big)
                    elsewhere = [(oid, url) for oid, _, _ in big]
                    moved = {oid for oid, _ in elsewhere}
                    todo = [item for item in todo if item[0] not in moved]
            small = [item for item in todo if len(item[2]) <= pack.MAX_OBJECT_BYTES] if self.packs() else []
            if len(small) < PACK_MIN_OBJECTS:
                small = []
            if small:
                located = self.store.put_packed(small)
            packed = {oid for oid, _, _ in small}
            loose = [item for item in todo if item[0] not in packed]
            if self.damage:
                # A damaged loose file is still there: a create would leave it, so replace it.
                repair = [item for item in loose if self.damage.must_replace(item[0])]
                if repair:
                    self.store.rewrite_many(repair)
                    loose = [item for item in loose if not self.damage.must_replace(item[0])]
            if loose:
                self.store.put_many(loose)
        entries: list[IndexEntry] = [e for _, _, derived in objects.values() for e in derived]
        entries.extend(batch.notes)
        entries.extend(self.evals.entries(batch.evals))
        entries.extend(("put", "packed", oid, loc.encode()) for oid, _, loc in located)
        entries.extend(("put", "value_store", oid, url) for oid, url in elsewhere)
        listing = [[oid, kind] for oid, (kind, _, _) in objects.items()]
        segment = self.journal.write(listing, entries)
        try:
            self.evals.write_files(batch.evals)
        except StorageError as exc:  # the heads are in the journal already: nothing is lost
            log.warning("objstore: eval head files not written (the journal has them): %s", exc)
        return segment, journal_mod.index_entries(self.index, listing, entries)

    # -- when ---------------------------------------------------------------------------------

    def due(self) -> bool:
        pending = self.buffer.pending()
        if not pending:
            return False
        return pending >= self.policy.max_items or time.monotonic() - self._last > self.policy.interval

    def maybe_flush(self) -> bool:
        """Flush when the policy says it is time; True if a flush started. With a background
        policy the flush runs on a worker thread, so the scheduler keeps going while objects
        are written (file creation and uploads release the GIL)."""
        if not self.due():
            return False
        if not self.policy.background:
            self.flush()
            return True
        self._start_worker()
        if self._lock.locked():
            return False  # one is running; the worker starts the next as soon as it is due
        self._last = time.monotonic()  # due again only an interval from now (or when full)
        self._requested = True
        self._wake.set()
        return True

    def job_ended(self, *, root: bool) -> None:
        """A job ended: a root job's end (and, durable, every job's) is written before return."""
        if root or self.policy.durable:
            self.flush()
        else:
            self.maybe_flush()

    def job_started(self) -> None:
        # A fan-out starts (and caches) every job before the first one ends: start writing
        # those records in the background now rather than at the first job end. The worker
        # then keeps the interval on its own clock, between job boundaries too.
        if not self.policy.durable:
            if self.policy.background:
                self._start_worker()
            self.maybe_flush()

    # -- the background worker ----------------------------------------------------------------

    def _start_worker(self) -> None:
        worker = self._worker
        if worker is None or not worker.is_alive():
            with self._worker_lock:
                if self._worker is None or not self._worker.is_alive():
                    self._stopping = False
                    self._worker = threading.Thread(target=self._work, name="objstore-flush", daemon=True)
                    self._worker.start()

    def _work(self) -> None:
        """Flush whenever the policy says so: when asked (the buffer grew), and on its own clock
        once the oldest unflushed record is ``interval`` old, whether or not a job starts or
        ends meanwhile (a worker killed a second in must have written that second's results)."""
        while True:
            if self.buffer.pending():
                wait = max(0.01, self.policy.interval - (time.monotonic() - self._last))
            else:
                wait = self.policy.interval
            self._wake.wait(timeout=wait)
            self._wake.clear()
            if self._stopping:
                return
            if not (self._requested or self.due()) or self.read_only is not None:
                continue
            self._requested = False
            try:
                self.flush()
            except ReadOnlyRepository:
                continue  # said once by whoever flushes in the foreground next
            except Exception as exc:  # kept for the next flush, which retries it
                text = str(exc)
                if text != self._last_warning:  # a full disk must not fill the log twice a second
                    self._last_warning = text
                    log.warning("objstore: background flush failed (will retry): %s", exc)

    def stop(self) -> None:
        """Stop the background worker (after its current flush); does not flush."""
        worker = self._worker
        if worker is not None:
            self._stopping = True
            self._wake.set()
            worker.join()
            self._worker = None


__all__ = ["FlushPolicy", "Flusher", "PACK_MIN_OBJECTS", "ValueStoreTarget"]
