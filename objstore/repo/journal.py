"""The journal: one immutable segment per flush naming what it added, so any index catches up.

A segment is one object-encoded document (kind ``journal``) holding the ids and kinds of the
objects the flush wrote and every index entry they and the flush's notes imply, eval heads and
pack locations included. Catching up with other writers is a LIST of ``journal/`` and a GET per
segment not yet seen; segment names sort by time and carry a writer id, so two writers never
collide and a reader ingests them in order.

Listing from a marker. Names sort by their writer's clock, so a refresh lists only the tail of
journal/: what sorts after its marker (the newest name this index has listed, never later than
this machine's clock) minus ``skew`` seconds (S3 StartAfter, GCS startOffset, Azure startFrom;
BlobStore.list_after). A segment is missed by that listing only if its name is more than
``skew`` older than the marker when it first becomes visible: a writer whose clock runs that far
behind, or a segment copied in later (sync, an offline copy). Those are picked up by the full
listing a refresh still makes every ``full_every`` seconds (kept in the index's meta, so it holds
across processes), on a fresh or reset index (open of a new index, ``reindex``), after a listed
file vanished, and whenever asked (``refresh(full=True)``).

From format 3.0 the journal may also hold checkpoints (``<segment name>.ckpt``,
objstore.repo.checkpoint): many segments folded into one file. A refresh reads each new
checkpoint's header, skips what it covers, and loads the checkpoint instead (or only marks what
it covers as seen, when this index has ingested all of it already). When a file it listed is
gone by the time it reads it (compaction retired it), it lists again, so it never ends with a
gap.

Segments are ingested in batches (IngestBatch): many at once in one write transaction, sorted
per table (Index.ingest), so a fresh client's first refresh of an uncompacted journal grows
with its records, not faster; each batch commits its segments' marks with their entries.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from objstore import layout, model
from objstore.errors import CorruptObject, NameCollision
from objstore.index import SEGMENTS, Index
from objstore.missing import Missing
from objstore.model.schema import IndexEntry
from objstore.repo.checkpoint import all_well_formed
from objstore.repo.segments import (
    FORMAT,
    KIND,
    Listing,
    Segment,
    checkpoint_segment,
    decode,
    encode,
    index_entries,
    parse,
    parse_listing,
    valid_entries,
)
from objstore.store import BlobStore

log = logging.getLogger("objstore.repo")
_READ_BATCH = 64
_RELISTS = 5  # a refresh lists again at most this often when files vanish under it
# Index meta: the newest journal time a listing saw (capped at this machine's clock), and the
# wall time of the last full listing.
MARKER_META = "journal_marker"
FULL_LISTING_META = "journal_full_listing_at"

Progress = Callable[[str, int], None]


class IngestBatch:
    """Segments applied together in one write txn (Index.ingest), whole or not at all with
    their marks: a refresh of many (a fresh client, one long offline) pays a sorted bulk write
    per batch, not a txn of random inserts per segment. ``max_entries`` bounds the memory held
    (a batch's encoded rows, ~250 bytes an entry: ~1 GB) and how often it commits: each commit
    rewrites most pages of the tables it touches (10^6 records are 7M entries: in batches of
    2.5M their refresh cost 12 % more CPU than in two, in batches of 1M 15 % more again)."""

    def __init__(self, index: Index, stale: Listing, max_entries: int = 4_000_000):
        self.index = index
        self.stale = stale  # where a commit adds what its segments list of an older derivation
        self.max_entries = max_entries
        self.plan = index.bulk_plan()
        self.segments: list[str] = []
        self.stale_pending: Listing = []

    def add(self, segment: Segment) -> bool:
        """Queue a (checked) segment; whether the batch is full."""
        self.plan.add(index_entries(self.index, segment.listing, segment.entries))
        self.segments.append(segment.name)
        stale = model.rederived_kinds(segment.derivation)
        if stale:
            self.stale_pending.extend(item for item in segment.listing if item[1] in stale)
        return self.plan.size >= self.max_entries

    def commit(self) -> None:
        if self.segments:
            self.index.ingest_plan(self.plan, self.segments)
            self.stale.extend(self.stale_pending)
            self.plan = self.index.bulk_plan()
        self.segments, self.stale_pending = [], []


class Journal:
    def __init__(
        self, blobs: BlobStore, index: Index, writer_id: str, lock: threading.Lock, *,
        skew: float = 600.0, full_every: float = 900.0,
    ):  # fmt: skip
        self.blobs = blobs
        self.index = index
        self.writer_id = writer_id
        self.skew = skew
        self.full_every = full_every
        self._lock = lock  # the flush lock: a refresh never runs beside this writer's flush
        self._last_stamp: _dt.datetime | None = None
        # Every name listed since the last full listing (tail listings add to it): what the
        # compaction threshold counts. Names retired since stay until the next full listing;
        # they count for nothing (their checkpoint covers them).
        self._known: set[str] = set()
        self.last_listing = ""  # "full" or "tail": what the last refresh's last listing was
        self._full_owed = False  # a full listing failed or was cut short: the next one is full too
        # Objects listed by ingested segments of an older derivation, whose entries the
        # repository derives again once the lock is released (Repository.refresh).
        self._stale: Listing = []

    def _next_name(self) -> str:
        now = _dt.datetime.now(_dt.UTC)
        if self._last_stamp is not None and now <= self._last_stamp:
            # Keep this writer's segments strictly ordered even if the clock stalls or steps back.
            now = self._last_stamp + _dt.timedelta(microseconds=1)
        self._last_stamp = now
        return layout.segment_name(now, self.writer_id)

    def write(self, listing: Listing, entries: list[IndexEntry]) -> str:
        """Write one segment (create-only); its name. Caller holds the flush lock."""
        data = encode(self.writer_id, listing, entries)
        for _ in range(5):
            name = self._next_name()
            if self.blobs.create(layout.segment_key(name), data):
                return name
        # Cannot happen unless another client reuses this random writer id.
        raise NameCollision(f"journal segment names keep colliding at {self.blobs.path(layout.JOURNAL)}/{name}")

    def names(self) -> list[str]:
        """Every segment and checkpoint present, in name (time) order; other names under
        journal/ are ignored. (Sync copies each of these a destination lacks.)"""
        return [n for n in self.blobs.list_names(layout.JOURNAL) if layout.is_journal_name(n)]

    @property
    def listed(self) -> list[str]:
        """The journal names listed since the last full listing, in name order."""
        return sorted(self._known)

    def tail_start(self) -> str | None:
        """Where a refresh's listing starts (a time prefix every later name sorts after), or None
        when it must list everything: a fresh index, no marker, or a full listing due."""
        if self._full_owed or self.full_every <= 0 or self.index.count(SEGMENTS) == 0:
            return None
        marker, full_at = self.index.meta_get(MARKER_META), self.index.meta_get(FULL_LISTING_META)
        if not isinstance(marker, str) or not isinstance(full_at, str):
            return None
        try:
            if not 0 <= time.time() - float(full_at) < self.full_every:
                return None
            start = layout.journal_time(marker) - _dt.timedelta(seconds=self.skew)
        except (ValueError, OverflowError):
            return None
        return layout.segment_name(start, "")[:-1]  # "<time>": sorts before every "<time>-<writer>"

    def _list(self, *, full: bool) -> list[str]:
        start = None if full else self.tail_start()
        if start is None:
            self._full_owed = True  # until this listing has been ingested whole (_advance)
            names = self.names()
            self._known = set(names)
        else:
            names = [n for n in self.blobs.list_after(layout.JOURNAL, start) if layout.is_journal_name(n)]
            self._known.update(names)
        self.last_listing = "full" if start is None else "tail"
        return names

    def _advance(self, names: list[str], *, full: bool) -> None:
        """After a refresh ingested everything ``names`` listed: move the marker to the newest
        of them, and note the time of a full listing. (Not before: a refresh that fails half way
        must not leave a marker past segments it never read.)"""
        if full:
            self.index.meta_put(FULL_LISTING_META, repr(time.time()))
            self._full_owed = False
        if names:
            # Never past this machine's clock: a writer whose clock runs ahead must not move the
            # marker so far that everyone else's segments would sort before the window.
            newest = min(layout.journal_time(names[-1]), _dt.datetime.now(_dt.UTC))
            old = self.index.meta_get(MARKER_META)
            if not isinstance(old, str) or not layout.is_journal_name(old) or layout.journal_time(old) < newest:
                self.index.meta_put(MARKER_META, layout.segment_name(newest, "0" * 8))

    def refresh(self, progress: Progress | None = None, *, full: bool = False) -> int:
        """Ingest what this index has not seen, in position order: segments one by one, and
        checkpoints instead of the segments they cover; how many files were applied. Lists
        only the tail of journal/ (from the marker, see the module's doc) unless ``full`` or a
        full listing is due.

        Holds the flush lock: a segment this writer is flushing is marked seen by the flush
        itself, and must not be ingested a second time after newer ones.
        """
        with self._lock:
            done = 0
            for attempt in range(_RELISTS):
                # After a file vanished (retired by a compaction), list everything: what covers
                # it may be a checkpoint older than the tail.
                names = self._list(full=full or attempt > 0)
                marks = self.index.segment_marks(names)
                new = [n for n, m in zip(names, marks) if isinstance(m, Missing)]
                if not new:
                    self._advance(names, full=self.last_listing == "full")
                    break
                fresh = self.index.count(SEGMENTS) == 0
                from objstore.repo.compaction import bulk

                # Many files, or one checkpoint (millions of rows): collections would only walk
                # what is being built, and a big heap of the caller's makes each walk longer.
                many = len(new) > 16 or any(layout.is_checkpoint_name(n) for n in new)
                with bulk() if many else contextlib.nullcontext():
                    applied, complete = self._ingest_all(new, fresh=fresh, progress=progress, done=done)
                done += applied
                if complete:
                    self._advance(names, full=self.last_listing == "full")
                    break
            return done

    def _ingest_all(self, new: list[str], *, fresh: bool, progress: Progress | None, done: int) -> tuple[int, bool]:
        """Ingest the unseen files ``new``; (how many, whether none had vanished)."""
        from objstore.repo import checkpoint as ckpt
        from objstore.repo.compaction import read_headers

        complete = True
        names = [n for n in new if layout.is_checkpoint_name(n)]
        heads: dict[str, ckpt.Header] = {}
        for name, head in zip(names, read_headers(self.blobs, names)):
            if isinstance(head, ckpt.Header):
                heads[name] = head
            elif isinstance(head, Missing):
                complete = False
            else:
                log.warning("skipping unreadable journal checkpoint: %s", head)
        # A file an unseen checkpoint covers is loaded with it (a nested checkpoint's too).
        cover: dict[str, str] = {}
        for name, head in heads.items():
            for source in head.sources:
                cover.setdefault(source, name)
        tops = [c for c in heads if c not in cover]
        work = sorted(
            [(heads[c].position, 0, c) for c in tops]
            + [(n, 1, n) for n in new if layout.is_segment_name(n) and n not in cover]
        )
        applied = 0
        pending: list[str] = []
        batch = IngestBatch(self.index, self._stale)

        def drain() -> None:
            nonlocal applied, complete
            for name, data in zip(pending, self.blobs.read_many(layout.segment_key(n) for n in pending)):
                if isinstance(data, Missing):
                    complete = False  # retired since the listing: list again for what covers it
                    continue
                segment = self._parse(name, data)
                if segment is not None:
                    applied += 1
                    if batch.add(segment):
                        batch.commit()
            pending.clear()
            if progress:
                progress("journal", done + applied)

        for _, is_segment, name in work:
            if is_segment:
                pending.append(name)
                if len(pending) >= _READ_BATCH:
                    drain()
                continue
            if pending:
                drain()
            batch.commit()  # the segments before it are applied first
            loaded = self._load_checkpoint(heads[name], heads, fresh=fresh)
            if loaded is None:
                complete = False
            elif loaded:
                applied += 1
            if progress:
                progress("journal", done + applied)
        if pending:
            drain()
        batch.commit()
        return applied, complete

    def _load_checkpoint(self, head: Any, heads: dict[str, Any], *, fresh: bool) -> bool | None:
        """Apply one checkpoint (or just mark what it covers, when all of it was seen);
        None if it vanished, False if it is unreadable."""
        from objstore.repo import checkpoint as ckpt
        from objstore.repo.compaction import load_into

        marks = {head.name: ""}
        stack = [head]
        while stack:  # what it covers, and what the checkpoints it covers cover
            h = stack.pop()
            for source in h.sources:
                if source not in marks:
                    marks[source] = head.name
                    if source in heads:
                        stack.append(heads[source])
        seen = set() if fresh else {
            i for i, m in enumerate(self.index.segment_marks(head.sources)) if not isinstance(m, Missing)
        }
        if len(seen) == len(head.sources):
            self.index.mark_segments(marks)
            return True
        data = self.blobs.read(layout.segment_key(head.name))
        if isinstance(data, Missing):
            return None
        try:
            _, blocks = ckpt.parse(head.name, data)
        except CorruptObject as exc:
            log.warning("skipping unreadable journal checkpoint: %s", exc)
            return False
        load_into(self.index, head, blocks, seen, marks)
        stale = model.rederived_kinds(head.derived)
        if stale:
            for block in blocks:
                if block.table == "objects":
                    pairs = ([k.decode(), v.decode()] for k, v in zip(block.keys, block.values))
                    self._stale.extend(pair for pair in pairs if pair[1] in stale)
        return True

    def _parse(self, name: str, data: bytes) -> Segment | None:
        """A segment read back, its entries checked (bad ones skipped); None if unreadable."""
        try:
            segment = parse(name, data)
        except CorruptObject as exc:
            # Left unmarked, so a repaired segment is picked up by a later refresh.
            log.warning("skipping unreadable journal segment: %s", exc)
            return None
        entries = segment.entries
        # Another writer's segments are ingested during a run (a catch-up after a miss blocks
        # the scheduler meanwhile): a few C-level passes check a well-formed segment, and only
        # one that is not gets the entry-by-entry check that skips what is bad.
        if all_well_formed(entries, self.index.tables):
            good: list[Any] = entries  # [op, table, key, value] lists: Index.ingest reads them as they are
        else:
            good = valid_entries(self.index, entries, f"journal/{name}")
        return Segment(name, segment.listing, good, segment.derivation)

    def read_listings(self, names: Iterable[str]) -> Iterator[tuple[str, Listing]]:
        """(name, what it lists) of the named journal files, in the order given, without parsing
        a segment's entries (parse_listing); a checkpoint lists its ``objects`` rows. A missing
        or unreadable one is left out."""
        for segment in self._read(names, listing_only=True):
            yield segment.name, segment.listing

    def take_stale(self) -> Listing:
        """The objects ingested segments listed whose entries must be derived again (once)."""
        with self._lock:
            stale, self._stale = self._stale, []
            return stale

    def read(self, names: Iterable[str]) -> Iterator[Segment]:
        """The named journal files, in the order given: a checkpoint as one Segment listing its
        ``objects`` rows, with its other rows as entries (deletions left out). A missing one
        (retired since it was listed: a checkpoint has its records) or an unreadable one (logged)
        is left out."""
        return self._read(names, listing_only=False)

    def _read(self, names: Iterable[str], *, listing_only: bool) -> Iterator[Segment]:
        names = list(names)
        for start in range(0, len(names), _READ_BATCH):
            batch = names[start : start + _READ_BATCH]
            for name, data in zip(batch, self.blobs.read_many(layout.segment_key(n) for n in batch)):
                if isinstance(data, Missing):
                    continue
                try:
                    if layout.is_checkpoint_name(name):
                        yield checkpoint_segment(name, data, listing_only=listing_only)
                    elif listing_only:
                        yield Segment(name, parse_listing(name, data), [])
                    else:
                        yield parse(name, data)
                except CorruptObject as exc:
                    log.warning("skipping unreadable journal file: %s", exc)


__all__ = ["Journal", "Segment", "encode", "decode", "parse", "parse_listing", "checkpoint_segment", "index_entries", "valid_entries", "KIND", "FORMAT"]
