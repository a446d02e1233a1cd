"""When a client reads what other writers added: a refresh, a rate-limited catch-up after a
miss, and the background journal compaction a refresh may start."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from objstore.index import Index
from objstore.repo.compaction import AutoCompaction
from objstore.repo.journal import Journal, Progress
from objstore.repo.objects import ObjectReader
from objstore.repo.reindex import rederive
from objstore.repo.repair import DamageLedger

# A reader's miss refreshes from the journal at most this often (Refresher.catch_up).
CATCH_UP_INTERVAL = 1.0


class Refresher:
    def __init__(
        self,
        journal: Journal,
        index: Index,
        damage: DamageLedger,
        auto_compaction: AutoCompaction,
        flush_lock: threading.Lock,
        *,
        objects: Callable[[], ObjectReader],
        compaction_enabled: Callable[[], bool],
        compact_threshold: Callable[[], int],
    ):
        self.journal = journal
        self.index = index
        self.damage = damage
        self.auto_compaction = auto_compaction
        self._flush_lock = flush_lock
        self._objects = objects
        self._compaction_enabled = compaction_enabled
        self._compact_threshold = compact_threshold
        self.last = 0.0  # time.monotonic() of the last refresh, and what it cost
        self.cost = 0.0

    def refresh(self, progress: Progress | None = None, *, full: bool = False) -> int:
        """See Repository.refresh."""
        started = time.monotonic()
        done = self.journal.refresh(progress, full=full)
        stale = self.journal.take_stale()
        if stale:
            rederive(self._objects(), self.index, stale)
        self.damage.reload()
        self.last = now = time.monotonic()
        self.cost = now - started
        self.auto_compaction.maybe_start(
            enabled=self._compaction_enabled(), threshold=self._compact_threshold(), listed=self.journal.listed
        )
        return done

    def catch_up_due(self) -> float:
        """The time.monotonic() from which a miss may read the journal again: at most once per
        CATCH_UP_INTERVAL, and never more than a tenth of the time (a LIST of journal/ grows
        with the repository), so a first run (all misses) pays little."""
        return self.last + max(CATCH_UP_INTERVAL, 10 * self.cost)

    def catch_up(self) -> int:
        """See Repository.catch_up. Never waits for a flush in progress."""
        if time.monotonic() < self.catch_up_due():
            return 0
        if self._flush_lock.locked():
            return 0  # this writer is flushing: try again at a later miss
        return self.refresh()


__all__ = ["Refresher", "CATCH_UP_INTERVAL"]
