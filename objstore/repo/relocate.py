"""Moving objects between the places a repository keeps them, told to every client through
ordinary journal entries: packs -> loose files (unpack), the value store -> objects/, and
checkpoints -> ordinary segments. Migrations (objstore.repo.migrate) and maintenance
(objstore.maint) both use these.

Nothing is rewritten in place: a copy is written first (create-only), then a journal segment
says where the object is now, and only then may the old place be retired, by gc after the grace
period (a pack gets a ``retired`` entry with the time it was retired).
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from objstore import layout, model, pack
from objstore.errors import CorruptObject, ObjectNotFound, StorageError
from objstore.missing import Missing
from objstore.model.schema import IndexEntry
from objstore.repo import checkpoint as ckpt
from objstore.repo.compaction import bulk, survey

if TYPE_CHECKING:
    from objstore.repo.repository import Repository

log = logging.getLogger("objstore.repo")
Progress = Callable[[str, int], None]
_SEGMENT_ENTRIES = 100_000  # entries per journal segment written by an expansion or a move


def now_stamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Moved:
    """What a relocation did, and what it could not do (each: name, why)."""

    objects: int = 0
    bytes: int = 0
    retired: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)


def write_entries(
    repo: Repository, listing: list[list[str]], entries: list[IndexEntry], moved: Moved, *, trusted: bool = False
) -> None:
    """Journal ``listing`` and ``entries`` in segments of a bounded size (``trusted``: built by
    objstore from ids and locations it checked, so not checked again)."""
    if not listing and not entries:
        return
    step = _SEGMENT_ENTRIES
    chunks = max((len(entries) + step - 1) // step, (len(listing) + step - 1) // step, 1)
    for i in range(chunks):
        part = entries[i * step : (i + 1) * step]
        moved.segments.append(repo.write_segment(listing[i * step : (i + 1) * step], part, trusted=trusted))


# -- packs -> loose ---------------------------------------------------------------------------


def unpack(repo: Repository, *, progress: Progress | None = None, packs: list[str] | None = None) -> Moved:
    """Write every object of every pack (or of ``packs``) as a loose file, journal that the
    index no longer places it in a pack, and mark each pack read whole as retired."""
    repo.flush()
    repo.refresh()
    moved = Moved()
    names = repo.store.pack_names() if packs is None else packs
    entries: list[IndexEntry] = []
    listing: list[list[str]] = []
    stamp = now_stamp()
    for name in names:
        try:
            toc, data = repo.store.read_pack(name)
        except ObjectNotFound:
            continue
        except CorruptObject as exc:
            moved.failed.append((f"pack/{name}", exc.reason))
            continue
        good: list[tuple[str, bytes]] = []
        for oid, kind, loc in toc:
            entry = data[loc.offset : loc.offset + loc.length]
            try:
                pack.read_entry(oid, entry, expect_kind=kind)
            except CorruptObject as exc:
                moved.failed.append((oid, exc.reason))
                continue
            # A loose file is exactly an entry's bytes after its id prefix: copy, not re-encode.
            good.append((oid, entry[len(oid) + 1 :]))
        repo.blobs.create_many([(layout.object_key(oid), frame) for oid, frame in good])
        ids = [oid for oid, _ in good]
        where = repo.index.get_many("packed", ids)
        known = repo.index.get_many("objects", ids)
        kinds = {oid: kind for oid, kind, _ in toc}
        for oid, loc, kind_known in zip(ids, where, known):
            if not isinstance(loc, Missing) and loc.startswith(name + ":"):
                entries.append(("del", "packed", oid, loc))
            if isinstance(kind_known, Missing):
                listing.append([oid, kinds[oid]])  # in the pack but in no journal: known from now on
        moved.objects += len(good)
        moved.bytes += sum(len(f) for _, f in good)
        if len(good) == len(toc):
            entries.append(("put", "retired", name, stamp))
            moved.retired.append(name)
        if progress:
            progress("unpack", moved.objects)
    write_entries(repo, listing, entries, moved)
    return moved


# -- value store -> objects/ ------------------------------------------------------------------


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n) and (chunk := next(self._chunks, None)) is not None:
            self._buf += chunk
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def values_home(repo: Repository, *, progress: Progress | None = None) -> Moved:
    """Copy every value the index places in a value store into objects/ (streamed, verified)
    and journal that it is there now. A value that cannot be read is listed in ``failed``."""
    repo.flush()
    repo.refresh()
    moved = Moved()
    entries: list[IndexEntry] = []
    for oid, url in repo.index.items("value_store"):
        try:
            store = repo.value_stores.store(url)
            kind, length, chunks = store.open_stream(oid)
            repo.store.put_stream(oid, kind, _ChunkReader(chunks), length)  # type: ignore[arg-type]
            repo.store.get(oid)  # what now sits in objects/ reads back whole
        except (ObjectNotFound, CorruptObject, StorageError, ValueError) as exc:
            moved.failed.append((oid, f"{url}: {exc}"))
            continue
        entries.append(("del", "value_store", oid, url))
        moved.objects += 1
        moved.bytes += length
        if progress:
            progress("values", moved.objects)
    write_entries(repo, [], entries, moved)
    return moved


# -- checkpoints -> segments ------------------------------------------------------------------


def expand_checkpoints(repo: Repository, *, progress: Progress | None = None) -> Moved:
    """Write what every checkpoint holds (and every segment no checkpoint covers) as ordinary
    segments, newest of all, so a reader that does not know checkpoints gets every record and
    a reader that has seen newer segments gets nothing older on top; then remove the
    checkpoints."""
    repo.flush()
    found = survey(repo.blobs)
    moved = Moved()
    if not found.checkpoints:
        return moved
    sources = repo.compactor.plan(found, merge=True) or found.top_checkpoints()
    with bulk():
        fold, _ = repo.compactor.fold(sources, progress=progress)
    listing: list[list[str]] = []
    dels: list[IndexEntry] = []
    rest: list[IndexEntry] = []
    for table, (multi, rows) in sorted(fold.rows().items()):
        for key, value, flags in rows:
            if flags & ckpt.TOMB:
                dels.append(("del" if value else "delall", table, key, value))
            elif table == "objects":
                listing.append([key, value])
            elif multi or flags & ckpt.ADD:
                rest.append(("add", table, key, value))
            else:
                rest.append(("put", table, key, value))
    write_entries(repo, listing, dels + rest, moved)
    moved.objects = len(listing)
    moved.retired = list(found.checkpoints)
    repo.compactor.retire(found.checkpoints)
    return moved


def derived_dels(kind: str, object_id: str, payload: bytes) -> list[IndexEntry]:
    """The entries that undo what an object implied (for objects gc prunes)."""
    out: list[IndexEntry] = []
    try:
        derived = model.derive_entries(kind, object_id, payload)
    except CorruptObject:
        derived = [("put", "objects", object_id, kind)]
    for _, table, key, value in derived:
        out.append(("del", table, key, value))  # only while it still says this
    return out


__all__ = ["Moved", "unpack", "values_home", "expand_checkpoints", "write_entries", "derived_dels", "now_stamp"]
