"""Rebuilding the index from the repository: from journal/ (fast), or from every object, pack
and eval head (slow; the last resort when the journal is damaged or missing)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from objstore import layout, model, pack
from objstore.errors import CorruptObject, ObjectNotFound
from objstore.index import Index
from objstore.missing import MISSING, Missing
from objstore.model.schema import IndexEntry
from objstore.repo import journal
from objstore.repo.evals import EvalHeads
from objstore.repo.objects import ObjectReader, read_head
from objstore.store import ObjectStore

log = logging.getLogger("objstore.repo")
_SCAN_BATCH = 256

Progress = Callable[[str, int], None]


class Reindexer:
    def __init__(self, store: ObjectStore, index: Index, evals: EvalHeads, refresh: Callable[..., int]):
        self.store = store
        self.index = index
        self.evals = evals
        self.refresh = refresh

    def run(self, *, full_scan: bool, stamp: Callable[[], None], progress: Progress | None = None) -> dict[str, Any]:
        """Clear the index and rebuild it; what was found, and how long it took."""
        t0 = time.monotonic()
        self.index.clear()
        stamp()
        stats: dict[str, Any] = {"segments": self.refresh(progress), "objects": 0, "evals": 0, "corrupt": 0}
        if full_scan:
            self._scan_packs(stats, progress)
            self._scan_loose(stats, progress)
            self._scan_evals(stats, progress)
        stats["seconds"] = round(time.monotonic() - t0, 3)
        return stats

    def _apply(self, entries: list[IndexEntry]) -> None:
        self.index.apply(journal.valid_entries(self.index, entries, "reindex"), prechecked=True)

    def _entries_of(self, object_id: str, kind: str, payload: bytes, stats: dict) -> list[IndexEntry]:
        try:
            derived = model.derive_entries(kind, object_id, payload)
        except CorruptObject as exc:
            log.warning("reindex: indexing %s without its derived entries: %s", object_id, exc)
            stats["corrupt"] += 1
            derived = []
        return journal.index_entries(self.index, [[object_id, kind]], derived)

    def _scan_packs(self, stats: dict, progress: Progress | None) -> None:
        for name in self.store.pack_names():
            try:
                toc, data = self.store.read_pack(name)
            except ObjectNotFound:
                continue  # removed since the listing
            except CorruptObject as exc:
                # Its toc (or tail) is damaged, its entries maybe not: they describe themselves.
                raw = self.store.blobs.read(layout.pack_key(name))
                if isinstance(raw, Missing):
                    continue
                data, toc = raw, pack.scan_entries(raw, name=name)
                log.warning("reindex: %s; recovered %d entries from the pack itself", exc, len(toc))
                stats["damaged_packs"] = stats.get("damaged_packs", 0) + 1
            entries: list[IndexEntry] = []
            for oid, _, loc in toc:
                try:
                    kind, payload = pack.read_entry(oid, data[loc.offset : loc.offset + loc.length])
                except CorruptObject as exc:
                    log.warning("reindex: skipping %s", exc)
                    stats["corrupt"] += 1
                    continue
                entries.extend(self._entries_of(oid, kind, payload, stats))
                entries.append(("put", "packed", oid, loc.encode()))
                stats["objects"] += 1
            self._apply(entries)
            if progress:
                progress("objects", stats["objects"])

    def _scan_loose(self, stats: dict, progress: Progress | None) -> None:
        ids: list[str] = []

        def drain() -> None:
            try:
                got = self.store.get_many(ids)
            except CorruptObject:
                got = [self._one(oid, stats) for oid in ids]  # find the bad one(s); keep the rest
            entries: list[IndexEntry] = []
            for oid, item in zip(ids, got):
                if isinstance(item, Missing):
                    continue
                entries.extend(self._entries_of(oid, item[0], item[1], stats))
                stats["objects"] += 1
            self._apply(entries)
            ids.clear()
            if progress:
                progress("objects", stats["objects"])

        for oid in self.store.iter_ids():
            ids.append(oid)
            if len(ids) >= _SCAN_BATCH:
                drain()
        if ids:
            drain()

    def _one(self, oid: str, stats: dict) -> Any:
        try:
            return self.store.get(oid)
        except ObjectNotFound:
            return MISSING
        except CorruptObject as exc:
            log.warning("reindex: skipping %s", exc)
            stats["corrupt"] += 1
            return MISSING

    def _scan_evals(self, stats: dict, progress: Progress | None) -> None:
        heads = self.evals.scan()
        self.index.apply([("put", "evals", h, v) for h, v in heads.items()])
        stats["evals"] += len(heads)
        if progress:
            progress("evals", stats["evals"])


def rederive(objects: ObjectReader, index: Index, listing: list[list[str]]) -> int:
    """Derive again the index entries of listed objects (those of journal segments written
    with an older model.DERIVATION); how many objects. A value stored loose may be huge: only
    its header is read."""
    done = 0
    for start in range(0, len(listing), _SCAN_BATCH):
        batch = listing[start : start + _SCAN_BATCH]
        ids = [oid for oid, _ in batch]
        where = index.get_many("packed", ids)
        whole = [oid for (oid, kind), loc in zip(batch, where) if kind != model.VALUE or not isinstance(loc, Missing)]
        entries: list[IndexEntry] = []
        try:
            got = dict(zip(whole, objects.get_many(whole)))
        except CorruptObject:
            got = {oid: _one(objects, oid) for oid in whole}
        for oid in ids:
            item = got[oid] if oid in got else _value_head(objects, oid)
            if isinstance(item, Missing):
                continue
            try:
                entries.extend(model.derive_entries(item[0], oid, item[1]))
                done += 1
            except CorruptObject as exc:
                log.warning("rederive: skipping %s", exc)
        index.apply(journal.valid_entries(index, entries, "rederive"), prechecked=True)
    return done


def _one(objects: ObjectReader, oid: str) -> Any:
    try:
        return objects.get(oid)
    except (ObjectNotFound, CorruptObject) as exc:
        log.warning("rederive: skipping %s", exc)
        return MISSING


def _value_head(objects: ObjectReader, oid: str) -> Any:
    """(kind, header + NUL) of a loose value, read only as far as its header."""
    try:
        kind, _, chunks = objects.open_stream(oid)
        return kind, read_head(chunks)
    except (ObjectNotFound, CorruptObject) as exc:
        log.warning("rederive: skipping %s", exc)
        return MISSING


__all__ = ["Reindexer", "rederive"]
