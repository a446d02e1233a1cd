"""Repair by rewriting: objects a read found missing or damaged, until a writer writes them again.

The index can outlive the bytes it describes: a pack deleted or truncated, a journal copied
without its objects, a bad disk block. Writers skip an object the index already lists (that is
what makes a cached re-run cheap), so without this ledger such an object would stay lost for
good. A read that finds an object the index lists missing, or damaged, records its id here, and
from then on ``Repository.has`` (and with it every "already recorded?" check of the backend)
answers False for it: the next writer that has the object writes it again, and the flush that
does so strikes it off.

The ledger lives in the index's meta table, so every process sharing the index knows what one
of them found (a re-run in a new process rewrites what an earlier one only read). A lost pack
takes every id the index places in it; a damaged pack is checked entry by entry, once per
process, so the intact entries before a truncation are not rewritten for nothing. A reindex
clears the ledger with the rest of the index: the next read finds the damage again.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable

from objstore import layout, pack
from objstore.errors import CorruptObject
from objstore.index import Index
from objstore.missing import Missing
from objstore.store import ObjectStore

log = logging.getLogger("objstore.repo")

META_KEY = "damaged"
MISSING_OBJECT = "missing"  # nothing readable at its place: an ordinary create writes it again
CORRUPT_LOOSE = "corrupt"  # a damaged loose file is there: the rewrite must replace it


class DamageLedger:
    """Ids (-> how they are damaged) that must be written again, shared through the index."""

    def __init__(self, index: Index, store: ObjectStore):
        self.index = index
        self.store = store
        self._lock = threading.Lock()
        self._raw: str | None = None
        self._ids: dict[str, str] = {}
        self._checked_packs: set[str] = set()
        self.reload()

    # -- reads (hot path: a dict lookup, and nothing at all while the ledger is empty) -------

    def __contains__(self, object_id: object) -> bool:
        return bool(self._ids) and object_id in self._ids

    def __bool__(self) -> bool:
        return bool(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def must_replace(self, object_id: str) -> bool:
        """Whether the rewrite of this id must replace a damaged loose file."""
        return self._ids.get(object_id) == CORRUPT_LOOSE

    def reload(self) -> None:
        """Pick up what other processes sharing the index have found or repaired."""
        raw = self.index.meta_get(META_KEY)
        text = None if isinstance(raw, Missing) else raw
        if text == self._raw:
            return
        ids: dict[str, str] = {}
        if text:
            try:
                doc = json.loads(text)
                if isinstance(doc, dict):
                    ids = {str(k): str(v) for k, v in doc.items()}
            except ValueError:
                log.warning("objstore: ignoring an unreadable damage ledger in the index")
        self._raw, self._ids = text, ids

    # -- changes ------------------------------------------------------------------------------

    def _update(self, change: dict[str, str | None]) -> None:
        with self._lock:
            self.reload()  # read-modify-write: keep what another process added meanwhile
            ids = dict(self._ids)
            for object_id, how in change.items():
                if how is None:
                    ids.pop(object_id, None)
                else:
                    ids[object_id] = how
            text = json.dumps(ids, sort_keys=True, separators=(",", ":"))
            self.index.meta_put(META_KEY, text)
            self._raw, self._ids = text, ids

    def mark(self, found: dict[str, str], why: str) -> None:
        """Record damaged ids (-> MISSING_OBJECT or CORRUPT_LOOSE), saying once what was found."""
        new = {oid: how for oid, how in found.items() if self._ids.get(oid) != how}
        if not new:
            return
        self._update(dict(new))
        shown = ", ".join(sorted(new)[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
        log.warning("objstore: %s: %s will be written again by the next writer that has them", why, shown)

    def repaired(self, ids: Iterable[str]) -> None:
        """These ids were just written again (and indexed): strike them off."""
        if not self._ids:
            return
        done = [oid for oid in ids if oid in self._ids]
        if done:
            self._update(dict.fromkeys(done))

    # -- finding the damage -------------------------------------------------------------------

    def pack_members(self, name: str) -> list[tuple[str, pack.Location]]:
        """Every (id, location) the index places in pack ``name``: one scan of the packed table,
        paid only when a pack turns out lost or damaged."""
        head = name + ":"
        out = []
        for object_id, text in self.index.scan("packed"):
            if text.startswith(head):
                try:
                    out.append((object_id, pack.Location.parse(text, object_id=object_id)))
                except CorruptObject:
                    continue
        return out

    def pack_lost(self, name: str) -> None:
        """A pack the index lists is not in the repository: all its objects need rewriting, and
        so do those of every other pack the index lists and the repository lacks (a deleted
        directory, a journal copied without objects/pack/): one listing and one scan of the
        packed table find them all, rather than a scan per pack."""
        if name in self._checked_packs:
            return
        present = set(self.store.pack_names())
        if name in present:
            return  # there after all (a read that raced its write): nothing is lost
        lost: dict[str, list[str]] = {name: []}
        for object_id, text in self.index.scan("packed"):
            pack_name = text.partition(":")[0]
            if pack_name not in present and pack_name not in self._checked_packs:
                lost.setdefault(pack_name, []).append(object_id)
        self._checked_packs.update(lost)
        ids = [oid for members in lost.values() for oid in members]
        names = ", ".join(sorted(lost)[:2]) + (f" and {len(lost) - 2} more" if len(lost) > 2 else "")
        self.mark(dict.fromkeys(ids, MISSING_OBJECT), f"pack {names} missing ({len(ids)} objects)")

    def pack_damaged(self, name: str) -> None:
        """A read of one entry of pack ``name`` failed: check every entry the index places in
        it, and mark the ones that no longer verify (e.g. all those past a truncation)."""
        if name in self._checked_packs:
            return
        self._checked_packs.add(name)
        members = self.pack_members(name)
        data = self.store.blobs.read(layout.pack_key(name))
        if isinstance(data, Missing):
            bad = [oid for oid, _ in members]
        else:
            bad = []
            for oid, loc in members:
                entry = data[loc.offset : loc.offset + loc.length]
                try:
                    if len(entry) != loc.length:
                        raise CorruptObject(oid, "cut short")
                    pack.read_entry(oid, entry)
                except CorruptObject:
                    bad.append(oid)
        self.mark(dict.fromkeys(bad, MISSING_OBJECT), f"pack {name} is damaged ({len(bad)} of {len(members)} objects)")

    def loose_missing(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if ids:
            self.mark(dict.fromkeys(ids, MISSING_OBJECT), "objects listed in the index are missing")

    def loose_corrupt(self, object_id: str) -> None:
        self.mark({object_id: CORRUPT_LOOSE}, f"object {object_id} is damaged")


__all__ = ["DamageLedger", "MISSING_OBJECT", "CORRUPT_LOOSE"]
