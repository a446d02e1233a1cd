"""fsck of what holds objects: packs (toc, layout, each sampled entry), loose objects (frame,
kind, length, recomputable id) and value stores (every value the journal places there is there;
sampled ones decode). Each records what it found for the checks after it (Found)."""

from __future__ import annotations

import functools
from itertools import repeat

from objstore import codec, layout, model
from objstore.errors import CorruptObject, StorageError
from objstore.maint import verify
from objstore.maint.fsck_context import BATCH, Context
from objstore.missing import Missing


class Check:
    """One of fsck's jobs, over the shared context."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.repo = ctx.repo
        self.report = ctx.report
        self.found = ctx.found
        self.inv = ctx.inv

    def start(self) -> None:
        """Begin what can run beside the checks before this one (fsck calls it for every file
        check before running the first)."""

    def run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop what start began, if run did not consume it."""


def _pack_at(url: str, options: dict | None, name: str, *, span: verify.Span) -> verify.PackCheck:
    return verify.verify_pack_at(url, options, name, span)


class Packs(Check):
    def run(self) -> None:
        span = self.ctx.span
        at = functools.partial(_pack_at, span=span)
        here = functools.partial(verify.verify_pack, span=span)
        for check in self.ctx.map_files(sorted(self.inv.packs), at, here, layout.pack_key):
            if check.missing:
                continue
            self.report.count("packs")
            self._record(check)
            self.ctx.tick("objects", len(check.ids))

    def _record(self, check: verify.PackCheck) -> None:
        found, key, name = self.found, layout.pack_key(check.name), check.name
        ids = check.ids
        if found.kinds.keys().isdisjoint(ids):  # (every id in found.toc is in found.kinds)
            # The common case (each object packed once): whole columns, in C loops.
            found.kinds.update(zip(ids, check.kinds))
            found.toc.update(zip(ids, zip(repeat(name), check.offsets, check.lengths)))
            if self.ctx.span is None:  # a sample compares (and spells out) the sampled ones only
                found.placed.update(zip(ids, map("{}:{}:{}".format, repeat(name), check.offsets, check.lengths)))
        else:
            self._record_copies(check)
        found.good_copies.update(check.good)
        for oid in check.bad:
            found.bad_objects.setdefault(oid, key)
        for oid, kind, edges in check.edges:
            found.edges[oid] = (kind, edges)
        for detail, damaged in check.errors:
            self.report.error(key, "corrupt", detail, damaged)
        if check.salvaged is not None:
            found.damaged_packs[check.name] = check.salvaged
            if check.toc_unreadable:
                self.report.notes.append(f"{key}: {len(check.salvaged)} entries readable without its toc")
        self.report.count("objects verified", check.verified)

    def _record_copies(self, check: verify.PackCheck) -> None:
        """A pack holding objects packed before (two writers, a copy-merge, a repack): the first
        copy stays the one fsck places them at, the others are copies. Whole columns where they
        can be: right after a repack every entry of every old pack is a copy."""
        found, name = self.found, check.name
        ids, toc = check.ids, found.toc
        again = toc.keys() & set(ids)
        found.copies.add(name, ids, check.offsets, check.lengths, again)
        fresh = [i for i, oid in enumerate(ids) if oid not in again]
        if not fresh:
            return
        kinds, offsets, lengths = check.kinds, check.offsets, check.lengths
        found.kinds.update({ids[i]: kinds[i] for i in fresh if ids[i] not in found.kinds})
        for i in fresh:  # (of one id twice in this pack, the later row is where fsck places it)
            toc[ids[i]] = (name, offsets[i], lengths[i])
            found.placed[ids[i]] = f"{name}:{offsets[i]}:{lengths[i]}"


class LooseObjects(Check):
    def run(self) -> None:
        ids = sorted(self.inv.loose)
        todo = [i for i in ids if self.ctx.sampled(i)]
        for object_id in ids:
            self.found.kinds.setdefault(object_id, "")
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            datas = self.repo.blobs.read_many(layout.object_key(i) for i in batch)
            for object_id, data in zip(batch, datas):
                if not isinstance(data, Missing):
                    self._verify(object_id, data)
            self.ctx.tick("objects", len(batch))
        self.report.count("loose objects", len(ids))
        self.report.count("objects verified", len(todo))

    def _verify(self, object_id: str, data: bytes) -> None:
        key = layout.object_key(object_id)
        try:
            kind, payload = codec.decode(data, object_id=object_id)
            model.verify(kind, object_id, payload)
        except CorruptObject as exc:
            self.report.error(key, "corrupt", exc.reason, object_id)
            self.found.bad_objects[object_id] = key
            return
        self.found.kinds[object_id] = kind
        self.found.good_copies.add(object_id)
        if kind in verify.FOLLOWED:
            try:
                self.found.edges[object_id] = (kind, verify.edges_of(kind, object_id, payload))
            except CorruptObject as exc:
                self.report.error(key, "corrupt", exc.reason, object_id)


class ValueStores(Check):
    """Needs the index refreshed: the journal says which values live in which store."""

    def run(self) -> None:
        by_url: dict[str, list[str]] = {}
        for oid, url in self.repo.index.items("value_store"):
            by_url.setdefault(url, []).append(oid)
        for url, ids in sorted(by_url.items()):
            self._check_store(url, ids)

    def _check_store(self, url: str, ids: list[str]) -> None:
        found = self.found
        try:
            store = self.repo.value_stores.store(url)
            held = {layout.fanout_id(k[len(layout.OBJECTS) + 1 :]) for k in store.blobs.list_keys(layout.OBJECTS)}
        except (ValueError, StorageError) as exc:
            self.report.error(f"value store {url}", "unreachable", str(exc))
            found.value_stores[url] = set()
            return
        held.discard(None)
        found.value_stores[url] = held  # type: ignore[assignment]
        self.report.count("values in value stores", len(ids))
        todo = [i for i in ids if i in held and self.ctx.sampled(i)]
        for start in range(0, len(todo), 8):  # big values: a few at a time, concurrently
            batch = todo[start : start + 8]
            for oid, data in zip(batch, store.blobs.read_many(layout.object_key(i) for i in batch)):
                if isinstance(data, Missing):
                    continue
                try:
                    kind, _ = codec.decode(data, object_id=oid)
                except CorruptObject as exc:
                    self.report.error(f"{url}/{layout.object_key(oid)}", "corrupt", exc.reason, oid)
                    continue
                found.kinds.setdefault(oid, kind)
                found.good_copies.add(oid)
            self.ctx.tick("objects", len(batch))
        for oid in ids:
            found.kinds.setdefault(oid, "value")
            if oid not in held and oid not in self.inv.loose and oid not in found.toc:
                self.report.error(f"value store {url}", "missing", "the journal places this value there; it is "
                                  "not there (a cache miss for every reader)", oid)  # fmt: skip
                found.missing.append(oid)


__all__ = ["Check", "Packs", "LooseObjects", "ValueStores"]
