"""Journal compaction: fold many segments into one checkpoint, load checkpoints into an index,
and retire what a checkpoint covers once it is older than the grace period (format 3.0).

The promises (DESIGN.md):
- a checkpoint is immutable and written before anything it covers is removed, and a covered
  file is removed only when the checkpoint covering it has existed for the grace period, so a
  reader that listed journal/ before the checkpoint appeared still finds every segment it
  listed; one that is slower still finds one gone, lists again and finds the checkpoint
  (``Journal.refresh``), so it always ends with a complete index;
- a late segment (clock skew, an offline copy merged in afterwards) is covered by no
  checkpoint, so it is ingested like any segment, and folded by the next compaction;
- two compactions at once (two workers past the threshold) write two checkpoints of the same
  records: harmless, and merged by the next full compaction.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from objstore import layout
from objstore.errors import CorruptObject, NameCollision
from objstore.index import SEGMENTS, Index, Pairs
from objstore.missing import Missing
from objstore.repo import checkpoint as ckpt
from objstore.repo import journal as jmod
from objstore.store import BlobStore

log = logging.getLogger("objstore.repo")
Progress = Callable[[str, int], None]
_READ_BATCH = 64
MERGE_CHECKPOINTS_AT = 8  # an automatic compaction also merges checkpoints once there are this many


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """No cyclic garbage collection while a pass builds millions of small objects (a fold, a
    refresh of many segments, fsck): each full collection would walk all of them again, which
    makes such a pass quadratic; they are freed by reference counting anyway."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- reading checkpoints ----------------------------------------------------------------------


def read_headers(blobs: BlobStore, names: Sequence[str]) -> list[ckpt.Header | Missing | CorruptObject]:
    """Each checkpoint's header (one ranged read each, two for a huge header); MISSING if it
    is gone, the CorruptObject if it is damaged."""
    keys = [layout.segment_key(n) for n in names]
    prefixes = blobs.read_ranges([(k, 0, ckpt.HEAD_GUESS) for k in keys])
    out: list[Any] = []
    for name, key, prefix in zip(names, keys, prefixes):
        if isinstance(prefix, Missing):
            out.append(prefix)
            continue
        try:
            need = ckpt.header_length(prefix, name)
            if need > len(prefix):
                prefix = blobs.read_range(key, 0, need)
                if isinstance(prefix, Missing):
                    out.append(prefix)
                    continue
            out.append(ckpt.parse_header(prefix, name))
        except CorruptObject as exc:
            out.append(exc)
    return out


def load_into(index: Index, header: ckpt.Header, blocks: list[ckpt.Block], seen: set[int], marks: dict[str, str]) -> None:
    """Apply a checkpoint to ``index``: every row, except rows of single tables (and deletions)
    whose source the index has already seen (``seen``: indices into header.sources)."""
    entries: list[tuple[str, str, str, str]] = []
    groups: list[tuple[str, str, list[tuple[bytes, bytes]] | Pairs]] = []
    for block in blocks:
        multi = index.tables.get(block.table)
        if multi is None or multi != block.multi:
            log.warning("journal/%s: skipping rows of unknown index table %r", header.name, block.table)
            continue
        flags = block.flags
        plain = not flags or max(flags) < ckpt.ADD
        if plain and (multi or not seen):
            groups.append(("add" if multi else "put", block.table, Pairs(block.keys, block.values)))
            continue
        puts: list[tuple[bytes, bytes]] = []
        adds: list[tuple[bytes, bytes]] = []
        for k, v, f in zip(block.keys, block.values, flags):
            if f & ckpt.TOMB:
                if (f & ckpt.SOURCE_MASK) not in seen:
                    entries.append(("del" if v else "delall", block.table, k.decode(), v.decode()))
            elif multi:
                adds.append((k, v))
            elif (f & ckpt.SOURCE_MASK) in seen:
                continue
            elif f & ckpt.ADD:
                adds.append((k, v))
            else:
                puts.append((k, v))
        if puts:
            groups.append(("put", block.table, puts))
        if adds:
            groups.append(("add", block.table, adds))
    try:
        index.load(groups, entries=_checked(index, entries, header.name), marks=marks)
    except ValueError as exc:
        # A row LMDB cannot hold (a checkpoint written by something else than objstore): keep
        # every row that fits, one check each, rather than lose the checkpoint.
        log.warning("journal/%s: %s; checking its rows one by one", header.name, exc)
        kept = [(op, t, [(k, v) for k, v in rows if _fits(index, t, k, v)]) for op, t, rows in groups]
        index.load(kept, entries=_checked(index, entries, header.name), marks=marks)


def _fits(index: Index, table: str, key: bytes, value: bytes) -> bool:
    return 0 < len(key) <= 511 and (not index.tables[table] or len(value) <= 511)


def _checked(index: Index, entries: list[tuple[str, str, str, str]], name: str) -> list[Any]:
    return jmod.valid_entries(index, entries, f"journal/{name}")


# -- surveying the journal --------------------------------------------------------------------


@dataclass
class Survey:
    """journal/ as one listing sees it: every name with its storage time, each checkpoint's
    header, and which names each checkpoint covers."""

    names: list[str]
    mtimes: dict[str, float]
    headers: dict[str, ckpt.Header] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)  # checkpoint -> why unreadable
    covered_by: dict[str, set[str]] = field(default_factory=dict)  # name -> checkpoints listing it

    @property
    def segments(self) -> list[str]:
        return [n for n in self.names if layout.is_segment_name(n)]

    @property
    def checkpoints(self) -> list[str]:
        return [n for n in self.names if layout.is_checkpoint_name(n)]

    def covered(self, name: str) -> bool:
        return bool(self.covered_by.get(name))

    def top_checkpoints(self) -> list[str]:
        return [c for c in self.headers if not self.covered(c)]

    def uncovered_segments(self) -> list[str]:
        return [s for s in self.segments if not self.covered(s)]

    def position(self, name: str) -> str:
        head = self.headers.get(name)
        return head.position if head is not None else name


def survey(blobs: BlobStore) -> Survey:
    cut = len(layout.JOURNAL) + 1
    details = [(k[cut:], mtime) for k, _, mtime in blobs.list_details(layout.JOURNAL) if "/" not in k[cut:]]
    names = sorted(n for n, _ in details if layout.is_journal_name(n))
    found = Survey(names, {n: m for n, m in details})
    ckpts = found.checkpoints
    for name, head in zip(ckpts, read_headers(blobs, ckpts)):
        if isinstance(head, ckpt.Header):
            found.headers[name] = head
        elif isinstance(head, CorruptObject):
            found.damaged[name] = head.reason
    for name, head in found.headers.items():
        for source in head.sources:
            found.covered_by.setdefault(source, set()).add(name)
    return found


# -- compacting -------------------------------------------------------------------------------


class Compactor:
    """Writes checkpoints and retires what they cover. ``index`` is only used to check entries
    (its tables); nothing here changes it: the next refresh ingests the new checkpoint."""

    def __init__(self, blobs: BlobStore, index: Index, writer_id: str):
        self.blobs = blobs
        self.index = index
        self.writer_id = writer_id

    def plan(self, found: Survey, *, merge: bool) -> list[str]:
        """The sources a compaction would fold, in position order."""
        sources = found.uncovered_segments()
        tops = found.top_checkpoints()
        if merge or len(tops) >= MERGE_CHECKPOINTS_AT:
            sources += tops
        sources.sort(key=lambda n: (found.position(n), layout.is_segment_name(n), n))
        if len(sources) < 2:
            return []
        return sources

    def compact(self, *, merge: bool = True, found: Survey | None = None, progress: Progress | None = None) -> str | None:
        """Fold every segment no checkpoint covers (and, ``merge``, every checkpoint no other
        covers) into one new checkpoint; its name, or None when there is nothing to fold."""
        found = found or survey(self.blobs)
        sources = self.plan(found, merge=merge)
        if not sources:
            return None
        with bulk():
            fold, used = self.fold(sources, progress=progress)
        if len(used) < 2:
            return None
        position = max(found.position(n) for n in used)
        data = ckpt.encode(
            writer=self.writer_id, position=position, sources=fold.sources, rows=fold.rows(), derived=fold.derived
        )
        return self._write(data)

    def fold(self, sources: Sequence[str], *, progress: Progress | None = None) -> tuple[ckpt.Fold, list[str]]:
        """The sources folded in the order given, and those that could be read."""
        fold = ckpt.Fold(self.index.tables)
        used: list[str] = []
        done = 0
        for start in range(0, len(sources), _READ_BATCH):
            batch = sources[start : start + _READ_BATCH]
            for name, data in zip(batch, self.blobs.read_many(layout.segment_key(n) for n in batch)):
                if isinstance(data, Missing):
                    continue  # retired since the listing: what covers it is folded instead
                try:
                    if layout.is_checkpoint_name(name):
                        head, blocks = ckpt.parse(name, data)
                        fold.apply_blocks(blocks, fold.add_source(name))
                        fold.derived = min(fold.derived, head.derived)
                    else:
                        segment = jmod.parse(name, data)
                        listing, entries = segment.listing, segment.entries
                        fold.derived = min(fold.derived, segment.derivation)
                        good = ([tuple(e) for e in entries] if ckpt.all_well_formed(entries, self.index.tables)
                                else jmod.valid_entries(self.index, entries, f"journal/{name}"))  # fmt: skip
                        fold.apply(jmod.index_entries(self.index, listing, good), fold.add_source(name))
                except CorruptObject as exc:
                    log.warning("compaction: leaving out %s", exc)  # fsck reports it
                    continue
                used.append(name)
                done += 1
            if progress:
                progress("compact", done)
        return fold, used

    def _write(self, data: bytes) -> str:
        now = _dt.datetime.now(_dt.UTC)
        for attempt in range(5):
            name = layout.checkpoint_name(now + _dt.timedelta(microseconds=attempt), self.writer_id)
            if self.blobs.create(layout.segment_key(name), data):
                log.info("journal compacted into %s", name)
                return name
        raise NameCollision(f"checkpoint names keep colliding at {self.blobs.path(layout.JOURNAL)}/{name}")

    # -- retiring -----------------------------------------------------------------------------

    def retirable(self, found: Survey, *, grace: float, now: float | None = None) -> list[str]:
        """Journal files a checkpoint older than ``grace`` seconds covers (directly, or through
        another covered checkpoint), segments before the checkpoints that cover them."""
        now = time.time() if now is None else now
        verified: dict[str, bool] = {}
        out: list[str] = []
        for name in found.names:
            for cover in sorted(found.covered_by.get(name, ())):
                if now - self._age_anchor(found, cover) < grace:
                    continue
                if cover not in verified:
                    verified[cover] = self._verify(cover)
                if verified[cover]:
                    out.append(name)
                    break
        out.sort(key=lambda n: (layout.is_checkpoint_name(n), n))
        return out

    def _age_anchor(self, found: Survey, name: str) -> float:
        # The later of the storage's clock and the writer's: a writer's clock running slow must
        # not make a checkpoint look older than it is.
        head = found.headers[name]
        created = head.created_at()
        stamp = created.timestamp() if created is not None else 0.0
        return max(found.mtimes.get(name, 0.0), stamp)

    def _verify(self, name: str) -> bool:
        data = self.blobs.read(layout.segment_key(name))
        if isinstance(data, Missing):
            return False
        try:
            ckpt.parse(name, data)
        except CorruptObject as exc:
            log.warning("compaction: not retiring what %s covers: %s", name, exc)
            return False
        return True

    def retire(self, names: Iterable[str]) -> int:
        """Remove the given (retirable) journal files; how many were there."""
        names = list(names)
        removed = 0
        for start in range(0, len(names), 1000):
            batch = [layout.segment_key(n) for n in names[start : start + 1000]]
            removed += sum(self.blobs.delete_many(batch))
        return removed


def uncovered_count(index: Index, names: Sequence[str]) -> int:
    """How many listed segments this index ingested one by one (no checkpoint covers them)."""
    segments = [n for n in names if layout.is_segment_name(n)]
    return sum(1 for m in index.get_many(SEGMENTS, segments) if m == "")


class AutoCompaction:
    """The compaction a client starts by itself, in the background, once the journal holds
    ``compact_threshold`` segments no checkpoint covers; an optimisation, never a failure."""

    def __init__(self, compactor: Compactor, blobs: BlobStore, url: str, *, grace: float):
        self.compactor = compactor
        self.blobs = blobs
        self.url = url
        self.grace = grace
        self._worker: threading.Thread | None = None

    def maybe_start(self, *, enabled: bool, threshold: int, listed: Sequence[str]) -> None:
        if not (enabled and threshold) or (self._worker is not None and self._worker.is_alive()):
            return
        if uncovered_count(self.compactor.index, listed) < threshold:
            return
        self._worker = threading.Thread(target=self._run, name="objstore-compact", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        try:
            if self.compactor.compact(merge=False):
                self.compactor.retire(self.compactor.retirable(survey(self.blobs), grace=self.grace))
        except Exception as exc:  # a compaction is an optimisation: never the caller's failure
            log.warning("%s: background journal compaction failed: %s", self.url, exc)

    def join(self) -> None:
        worker = self._worker
        if worker is not None:
            worker.join()
            self._worker = None

__all__ = [
    "Compactor", "Survey", "survey", "read_headers", "load_into", "uncovered_count",
    "MERGE_CHECKPOINTS_AT", "AutoCompaction",
]
