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


__all__ = ["Reindexer"]
