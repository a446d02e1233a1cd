"""Read routing: where an object is, and one bulk read for many.

An object is in this process's write buffer, in a pack (the index knows where: its ``packed``
table), in a value store at a second URL (its ``value_store`` table names the URL), or loose at
its fanout path; a value its store lost is looked for loose before it is called missing. ``get_many`` resolves every location first and then reads
each kind of place in bulk: entries close together in one pack come back from one ranged read.
An id found nowhere is tried once more after a refresh of the journal, because another writer
may have packed it and this index has not read that writer's segment yet (rate-limited for ids
the index does not list, see ``_look_again``). Packs of a remote repository are read through a
local cache of whole packs (objstore.repo.packcache) when one is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from objstore import layout, pack
from objstore.errors import CorruptObject, ObjectNotFound, WrongKind
from objstore.ids import validate_id
from objstore.index import Index
from objstore.missing import MISSING, Missing
from objstore.repo.buffer import WriteBuffer
from objstore.repo.packcache import PackCache
from objstore.repo.repair import DamageLedger
from objstore.repo.valuestore import ValueStores
from objstore.store import ObjectStore
from objstore.store.objects import Decoded

log = logging.getLogger("objstore.repo")


def check_kind(object_id: str, kind: str, expect_kind: str | None) -> None:
    if expect_kind is not None and kind != expect_kind:
        raise WrongKind(object_id, expect_kind, kind)


class ObjectReader:
    def __init__(
        self,
        store: ObjectStore,
        index: Index,
        buffer: WriteBuffer,
        refresh: Callable[[], int],
        damage: DamageLedger,
        value_stores: ValueStores | None = None,
        pack_cache: PackCache | None = None,
        *,
        catch_up: Callable[[], int] | None = None,
    ):
        self.pack_cache = pack_cache
        self.catch_up = catch_up or refresh
        self.store = store
        self.index = index
        self.buffer = buffer
        self.refresh = refresh
        self.damage = damage
        self.value_stores = value_stores

    def get(self, object_id: str, *, expect_kind: str | None = None) -> Decoded:
        """(kind, payload), verified; ObjectNotFound or CorruptObject naming the id."""
        got = self.get_many([object_id], expect_kind=expect_kind)[0]
        if isinstance(got, Missing):
            raise ObjectNotFound(self._missing_reason(object_id))
        return got

    def get_many(self, ids: Iterable[str], *, expect_kind: str | None = None) -> list[Decoded | Missing]:
        """get() for each id, in order; MISSING where it is nowhere. A corrupt object raises.

        An id the index lists that is not found (after one refresh), or found damaged, goes
        into the damage ledger, so the next writer that has it writes it again."""
        ids = [validate_id(i) for i in ids]
        out: list[Decoded | Missing] = [MISSING] * len(ids)
        todo = []
        for i, object_id in enumerate(ids):
            hit = self.buffer.object(object_id)
            if hit is None:
                todo.append(i)
            else:
                check_kind(object_id, hit[0], expect_kind)
                out[i] = hit
        if todo:
            lost: dict[int, str] = {}
            try:
                self._read_stored(ids, todo, out, expect_kind, lost)
            except CorruptObject as exc:
                # Another writer may have written it again since this index last looked (a
                # re-run repairs what it re-records): read where the journal now places it.
                if isinstance(exc, WrongKind) or not self.refresh():
                    raise
                lost.clear()
                self._read_stored(ids, todo, out, expect_kind, lost)
            missed = [i for i in todo if isinstance(out[i], Missing)]
            if missed and self._look_again(ids, missed):
                lost.clear()
                self._read_stored(ids, missed, out, expect_kind, lost)
                missed = [i for i in missed if isinstance(out[i], Missing)]
            if missed:
                self._note_missing(ids, missed, lost)
        return out

    def _look_again(self, ids: list[str], missed: list[int]) -> int:
        """Read the journal again after a miss; how many segments that found. An id this index
        lists was moved (a repack) or lost: refresh now. An id it does not know is most often
        simply unknown (a cache probe, a prefix, a query for something never recorded), so
        only catch up, which is rate-limited: a run of such lookups is not a LIST each."""
        if "objects" in self.index.tables:
            known = self.index.get_many("objects", [ids[i] for i in missed])
            if any(not isinstance(k, Missing) for k in known):
                return self.refresh()
        return self.catch_up()

    def _read_stored(
        self, ids: list[str], todo: list[int], out: list, expect_kind: str | None, lost: dict[int, str]
    ) -> None:
        where = self.index.get_many("packed", [ids[i] for i in todo])
        packed: list[tuple[int, pack.Location]] = []
        loose: list[int] = []
        for i, text in zip(todo, where):
            if isinstance(text, Missing):
                loose.append(i)
            else:
                packed.append((i, pack.Location.parse(text, object_id=ids[i])))
        if packed and self.pack_cache is not None:
            packed = self._read_cached_packs(ids, packed, out, expect_kind, lost, loose)
            loose.sort()
        if packed:
            try:
                got = self.store.get_packed_many([(ids[i], loc) for i, loc in packed], expect_kind=expect_kind)
            except CorruptObject as exc:
                if not isinstance(exc, WrongKind):
                    for i, loc in packed:
                        if ids[i] == exc.object_id:
                            self.damage.pack_damaged(loc.pack)
                raise
            for (i, loc), item in zip(packed, got):
                if isinstance(item, Missing):
                    lost[i] = loc.pack
                    loose.append(i)  # its pack is gone; a copy may still be loose
                else:
                    out[i] = item
            loose.sort()
        # Found through the index's packed table: listed already. The rest may be copies merged
        # in without their journal, which _remember_kinds lists (an index read per id otherwise).
        by_path = list(loose)
        if loose and self.value_stores is not None:
            loose = self._read_value_stores(ids, loose, out, expect_kind)
        if loose:
            try:
                got = self.store.get_many([ids[i] for i in loose], expect_kind=expect_kind)
            except CorruptObject as exc:
                if isinstance(exc, WrongKind):
                    self._check_recorded_kind(exc.object_id, exc.found)
                else:
                    self.damage.loose_corrupt(exc.object_id)
                raise
            for i, item in zip(loose, got):
                if not isinstance(item, Missing):
                    self._check_recorded_kind(ids[i], item[0])
                out[i] = item
        if by_path:
            self._remember_kinds(ids, by_path, out)

    def _read_cached_packs(
        self,
        ids: list[str],
        packed: list[tuple[int, pack.Location]],
        out: list,
        expect_kind: str | None,
        lost: dict[int, str],
        loose: list[int],
    ) -> list[tuple[int, pack.Location]]:
        """Serve packed reads from whole packs in the local cache (fetching each on its first
        need); what is left for ranged reads."""
        assert self.pack_cache is not None
        by_pack: dict[str, list[tuple[int, pack.Location]]] = {}
        for i, loc in packed:
            by_pack.setdefault(loc.pack, []).append((i, loc))
        rest: list[tuple[int, pack.Location]] = []
        for name, members in by_pack.items():
            data = self.pack_cache.get(name)
            if data is None:
                rest.extend(members)
                continue
            if isinstance(data, Missing):
                for i, _ in members:
                    lost[i] = name
                    loose.append(i)  # its pack is gone; a copy may still be loose
                continue
            for i, loc in members:
                entry = data[loc.offset : loc.offset + loc.length]
                try:
                    if len(entry) != loc.length:
                        raise CorruptObject(ids[i], f"pack {name} ends before the object's entry does")
                    out[i] = pack.read_entry(ids[i], entry, expect_kind=expect_kind)
                except CorruptObject as exc:
                    if not isinstance(exc, WrongKind):
                        self.damage.pack_damaged(name)
                    raise
        rest.sort(key=lambda item: item[0])
        return rest

    def _check_recorded_kind(self, object_id: str, found: str) -> None:
        """A loose file holding an object of another kind than the one recorded under its id is
        another object's bytes (a bad copy), not that object: damage, for the next writer to
        replace, never an answer (cat-object would print a call node as the value asked for)."""
        if "objects" not in self.index.tables:
            return
        recorded = self.index.get("objects", object_id)
        if isinstance(recorded, str) and recorded != found:
            self.damage.loose_corrupt(object_id)
            raise CorruptObject(object_id, f"its file holds a {found!r} object, but a {recorded!r} was recorded")

    def _note_missing(self, ids: list[str], missed: list[int], lost: dict[int, str]) -> None:
        """Ids found nowhere: a lost pack loses all its objects; a loose id the index lists as
        stored is lost too. An id the index does not know was simply never here."""
        for name in sorted(set(lost.values())):
            self.damage.pack_lost(name)
        rest = [ids[i] for i in missed if i not in lost]
        if rest and "objects" in self.index.tables:
            known = self.index.get_many("objects", rest)
            self.damage.loose_missing(oid for oid, kind in zip(rest, known) if not isinstance(kind, Missing))

    def _read_value_stores(self, ids: list[str], todo: list[int], out: list, expect_kind: str | None) -> list[int]:
        """Read what the index places in a value store; the indices still to look for loose."""
        assert self.value_stores is not None
        at = self.index.get_many("value_store", [ids[i] for i in todo])
        by_url: dict[str, list[int]] = {}
        rest: list[int] = []
        for i, url in zip(todo, at):
            if isinstance(url, Missing):
                rest.append(i)
            else:
                by_url.setdefault(url, []).append(i)
        for url, members in by_url.items():
            try:
                store = self.value_stores.store(url)
            except ValueError as exc:
                log.warning("objstore: cannot open the value store %s: %s", url, exc)
                rest.extend(members)
                continue
            for i, item in zip(members, store.get_many([ids[i] for i in members], expect_kind=expect_kind)):
                if isinstance(item, Missing):
                    rest.append(i)  # lost there (or written loose by an older client)
                else:
                    out[i] = item
        return sorted(rest)

    def value_store_of(self, object_id: str) -> tuple[str, ObjectStore] | None:
        """(URL, store) the index places ``object_id`` in, or None."""
        if self.value_stores is None:
            return None
        url = self.index.get("value_store", object_id)
        if isinstance(url, Missing):
            return None
        try:
            return url, self.value_stores.store(url)
        except ValueError:
            return None

    def _remember_kinds(self, ids: list[str], todo: list[int], out: list) -> None:
        """Objects found by their path that the index did not list (a copy merged in without its
        journal): list them, so `has` and prefix lookups know them from now on."""
        if "objects" not in self.index.tables:
            return
        found = [i for i in todo if not isinstance(out[i], Missing)]
        if not found:
            return
        known = self.index.get_many("objects", [ids[i] for i in found])
        new = [("put", "objects", ids[i], out[i][0]) for i, k in zip(found, known) if isinstance(k, Missing)]
        if new:
            self.index.apply(new)

    def _missing_reason(self, object_id: str) -> str:
        """Why a read found nothing: the pack the index places it in is gone, or the loose file
        the index lists is gone, or the value store it was
        written to does not hold it, or it was never recorded here."""
        stored = self.value_store_of(object_id)
        if stored is not None:
            return f"object {object_id} is missing: the value store at {stored[0]} does not hold it"
        where = self.index.get("packed", object_id)
        kind = self.index.get("objects", object_id) if "objects" in self.index.tables else MISSING
        what = f"object {object_id}" + (f" (a {kind})" if isinstance(kind, str) else "")
        if isinstance(where, str):
            name = pack.Location.parse(where, object_id=object_id).pack
            return f"{what} is missing: its pack {name} is not in the repository"
        if isinstance(kind, str):
            return f"{what} is missing: {layout.object_key(object_id)} is not in the repository"
        return f"no object {object_id}"

    def open_stream(self, object_id: str, *, expect_kind: str | None = None) -> tuple[str, int, Iterator[bytes]]:
        """(kind, length, chunks) wherever the object is: a packed or buffered object (at most a
        pack entry's size) comes as one chunk, a loose one streams in bounded memory."""
        object_id = validate_id(object_id)
        stored = self.value_store_of(object_id) if self.buffer.object(object_id) is None else None
        if stored is not None:
            try:
                return stored[1].open_stream(object_id, expect_kind=expect_kind)
            except ObjectNotFound:
                pass  # lost there: the routed read below looks for it loose
        elif self.buffer.object(object_id) is None and isinstance(self.index.get("packed", object_id), Missing):
            try:
                return self.store.open_stream(object_id, expect_kind=expect_kind)
            except ObjectNotFound:
                pass  # maybe packed by another writer: the routed read below refreshes once
        kind, payload = self.get(object_id, expect_kind=expect_kind)
        return kind, len(payload), iter((payload,))

    def has(self, object_id: str) -> bool:
        """Whether the object is buffered, indexed, or loose at its path (no refresh); False for
        an id a read found missing or damaged, until it is written again."""
        object_id = validate_id(object_id)
        if self.buffer.object(object_id) is not None:
            return True
        if object_id in self.damage:
            return False
        if "objects" in self.index.tables and not isinstance(self.index.get("objects", object_id), Missing):
            return True
        return self.store.has(object_id)


def read_head(chunks: Iterator[bytes]) -> bytes:
    """The first bytes of a streamed object up to and including its header's NUL (all of it if
    there is none), closing the stream: a value's header without reading a big payload."""
    head = bytearray()
    try:
        for chunk in chunks:
            head += chunk
            if b"\0" in head:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()
    cut = head.find(b"\0")
    return bytes(head[: cut + 1]) if cut >= 0 else bytes(head)


__all__ = ["ObjectReader", "check_kind", "read_head"]
