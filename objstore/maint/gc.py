"""gc: remove what crashes and replacements left behind, never what a live client may still use.

    temp files          a writer that died mid-write (.tmp-… files), older than the grace period
    uploads             on S3, a multipart upload a writer started and never finished (killed
                        while uploading a big value): aborted once older than the grace period,
                        since S3 keeps, and bills, its parts until then
    journal             compacted into one checkpoint (format 3.0); the files checkpoints cover
                        removed once the checkpoint covering them is older than the grace period
    packs               a pack retired by repack/unpack (its objects live elsewhere now) once the
                        retirement is older than the grace period; a pack no journal entry names
                        (a crashed flush's) once the file is older than the grace period and an
                        hour, and only if each of its objects is also somewhere else
    --prune             values and call nodes nothing reachable from executions, eval heads,
                        tags and handles refers to, older than the grace period: their index
                        entries are journaled away first, then their files (or pack entries,
                        by a repack without them, or value-store files) are removed

The grace period is what keeps a live writer safe: a temp file being written, a pack whose
journal segment is being written, an object a running job will reference, are all younger. On
this machine's own disk a temp file is also kept while the process that writes it runs (its
pid is in its name), so even `--grace 0` never takes a file from under a live writer.
"""

from __future__ import annotations

import errno
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from objstore import layout, model
from objstore.errors import StorageError
from objstore.fs import is_memory, temp_writer_alive
from objstore.maint import inventory, reach
from objstore.maint.repack import RepackResult, repack
from objstore.maint.report import bulk
from objstore.missing import Missing
from objstore.model.schema import IndexEntry
from objstore.repo import Repository, relocate
from objstore.repo.compaction import survey
from objstore.repo.repository import migrates_on_open
from objstore.store.base import BlobStore

log = logging.getLogger("objstore.maint")
Progress = Callable[[str, int], None]
_READONLY = {errno.EACCES, errno.EROFS, errno.EPERM}
# A pack no journal entry names is removed only this old, whatever --grace says: a flush that
# wrote its pack and is writing its segment looks exactly like a crashed one.
ORPHAN_MIN_AGE = 3600.0


class ReadOnlyRepository(StorageError):
    pass


@dataclass
class GcResult:
    dry_run: bool
    grace: float
    temp: list[str] = field(default_factory=list)
    temp_kept: int = 0
    uploads: list[str] = field(default_factory=list)  # keys of the unfinished uploads
    uploads_kept: int = 0
    checkpoint: str | None = None
    compact_sources: int = 0
    journal_retired: list[str] = field(default_factory=list)
    packs_removed: list[str] = field(default_factory=list)
    packs_kept: int = 0
    prune: bool = False
    pruned: dict[str, list[str]] = field(default_factory=dict)  # kind -> ids
    prune_repack: RepackResult | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        would = "would remove" if self.dry_run else "removed"
        out = [f"{would} {len(self.temp)} temp file(s) older than the grace period"
               + (f" (kept {self.temp_kept} younger)" if self.temp_kept else "")]  # fmt: skip
        if self.uploads or self.uploads_kept:
            out.append(f"{'would abort' if self.dry_run else 'aborted'} {len(self.uploads)} unfinished upload(s) "
                       "older than the grace period" + (f" (kept {self.uploads_kept} younger)" if self.uploads_kept else ""))
        if self.compact_sources:
            verb = "would compact" if self.dry_run else "compacted"
            into = f" into {self.checkpoint}" if self.checkpoint else ""
            out.append(f"{verb} {self.compact_sources} journal file(s){into}")
        out.append(f"{would} {len(self.journal_retired)} journal file(s) a checkpoint covers")
        out.append(f"{would} {len(self.packs_removed)} retired or orphaned pack(s)"
                   + (f" (kept {self.packs_kept} still in their grace period)" if self.packs_kept else ""))  # fmt: skip
        if self.prune:
            counts = ", ".join(f"{len(ids)} {kind}(s)" for kind, ids in sorted(self.pruned.items())) or "nothing"
            out.append(f"{'would prune' if self.dry_run else 'pruned'} {counts} nothing reachable refers to")
        out.extend(self.notes)
        return out


def check_writable(repo: Repository) -> None:
    """Refuse, in one clear line, a repository this process cannot change."""
    key = f"{layout.JOURNAL}/{layout.TEMP_PREFIX}gc-probe-{uuid.uuid4().hex}"
    try:
        repo.blobs.create(key, b"")
        repo.blobs.delete(key)
    except StorageError as exc:
        if exc.errno in _READONLY or "denied" in str(exc).lower() or "forbidden" in str(exc).lower():
            raise ReadOnlyRepository(
                exc.errno, f"{repo.url} is read-only here ({exc}): gc removes files and cannot run; fsck can"
            ) from None
        raise


def gc(
    repo: Repository,
    *,
    grace: float,
    dry_run: bool = False,
    prune: bool = False,
    progress: Progress | None = None,
) -> GcResult:
    with bulk():
        return _gc(repo, grace=grace, dry_run=dry_run, prune=prune, progress=progress)


def _gc(repo: Repository, *, grace: float, dry_run: bool, prune: bool, progress: Progress | None) -> GcResult:
    result = GcResult(dry_run, grace, prune=prune)
    if not dry_run:
        check_writable(repo)
        repo.flush()
    repo.refresh()
    now = time.time()
    inv = inventory.take(repo)
    _temp(repo, inv, result, now)
    _uploads(repo, result, now)
    _journal(repo, result)
    _packs(repo, inv, result, now)
    if prune:
        _prune(repo, inv, result, now, progress)
    return result


def _temp(repo: Repository, inv: inventory.Inventory, result: GcResult, now: float) -> None:
    # On this machine's own disk every writer is a process here: one still running keeps its
    # temp files whatever the grace period (even 0). Elsewhere only the grace period can tell.
    mine = migrates_on_open(repo.fs, repo.root) and not is_memory(repo.fs)
    old = [key for key, mtime in inv.temp
           if now - mtime >= result.grace and not (mine and temp_writer_alive(key))]  # fmt: skip
    result.temp_kept = len(inv.temp) - len(old)
    result.temp = old
    if not result.dry_run:
        for key in old:
            repo.blobs.delete(key)


def _uploads(repo: Repository, result: GcResult, now: float) -> None:
    # Big values are the ones uploaded in parts, and they may live in a value store at a second
    # URL: look there too. A live writer's upload is younger than the grace period, like its
    # temp file would be.
    places: list[tuple[str, BlobStore]] = [("", repo.blobs)]
    urls = {url for _, url in repo.index.items("value_store")}
    if repo.settings.value_store_url:
        urls.add(repo.settings.value_store_url)
    for url in sorted(urls):
        try:
            places.append((url.rstrip("/") + "/", repo.value_stores.store(url).blobs))
        except (ValueError, StorageError) as exc:
            result.notes.append(f"value store {url} unreachable, its unfinished uploads not looked at: {exc}")
    for where, blobs in places:
        found = blobs.unfinished_uploads()
        old = [upload for upload in found if now - upload.started >= result.grace]
        result.uploads_kept += len(found) - len(old)
        result.uploads.extend(where + upload.key for upload in old)
        if not result.dry_run:
            for upload in old:
                blobs.abort_upload(upload)


def _journal(repo: Repository, result: GcResult) -> None:
    if not repo.checkpoints:
        result.notes.append(
            f"journal compaction needs format 3.0 (this repository is {'.'.join(map(str, repo.format['version'][:2]))}): "
            "see `objstore db upgrade`"
        )
        return
    found = survey(repo.blobs)
    sources = repo.compactor.plan(found, merge=True)
    result.compact_sources = len(sources)
    if sources and not result.dry_run:
        result.checkpoint = repo.compactor.compact(merge=True, found=found)
        if result.checkpoint is None:
            result.compact_sources = 0
        else:
            repo.refresh()  # marks what it covers as seen here
            found = survey(repo.blobs)
    retire = repo.compactor.retirable(found, grace=result.grace)  # now: after the compaction
    result.journal_retired = retire
    if retire and not result.dry_run:
        repo.compactor.retire(retire)


def _elsewhere(repo: Repository, inv: inventory.Inventory, name: str, located: dict[str, str], *, retired: bool) -> bool:
    """Whether every object of pack ``name`` is also loose, in another pack or a value store
    (for a retired pack: every object the index still lists; one it does not was pruned)."""
    try:
        toc, _ = repo.store.read_pack(name)
    except Exception:  # noqa: BLE001 - unreadable: keep it, fsck says why
        return False
    ids = [oid for oid, _, _ in toc]
    stored_at = repo.index.get_many("value_store", ids)
    listed = repo.index.get_many("objects", ids)
    for (oid, _, _), url, kind in zip(toc, stored_at, listed):
        if retired and isinstance(kind, Missing):
            continue
        loc = located.get(oid)
        if loc is not None and not loc.startswith(name + ":") and loc.partition(":")[0] in inv.packs:
            continue
        if oid in inv.loose or not isinstance(url, Missing):
            continue
        return False
    return True


def _packs(repo: Repository, inv: inventory.Inventory, result: GcResult, now: float) -> None:
    located = dict(repo.index.items("packed"))
    referenced = {loc.partition(":")[0] for loc in located.values()}
    retired = dict(repo.index.items("retired"))
    unreadable = [n for n in inv.journal if not repo.index.has_segment(n)]
    for name, entry in sorted(inv.packs.items()):
        if name in referenced:
            continue
        stamp = retired.get(name)
        if stamp is not None:
            since = _timestamp(stamp)
            if now - max(since, 0.0) < result.grace:
                result.packs_kept += 1
                continue
        elif now - entry.mtime < max(result.grace, ORPHAN_MIN_AGE):
            # Named by no journal entry and not retired: a crashed flush's, or one whose journal
            # segment is being written right now, which look the same; only age tells them apart.
            result.packs_kept += 1
            continue
        elif unreadable:
            # An unreadable journal file may be the one naming this pack: keep it.
            result.packs_kept += 1
            continue
        if not _elsewhere(repo, inv, name, located, retired=stamp is not None):
            result.packs_kept += 1
            result.notes.append(f"kept pack {name}: it holds objects found nowhere else (see `objstore fsck`)")
            continue
        result.packs_removed.append(name)
        if not result.dry_run:
            repo.blobs.delete(layout.pack_key(name))


def _timestamp(stamp: str) -> float:
    import datetime as _dt

    try:
        return _dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.UTC).timestamp()
    except ValueError:
        return time.time()  # unreadable: as if retired just now (kept for another grace period)


def _prune(repo: Repository, inv: inventory.Inventory, result: GcResult, now: float, progress: Progress | None) -> None:
    kept, _ = reach.reachable(repo, progress=progress)
    located = dict(repo.index.items("packed"))
    stored = dict(repo.index.items("value_store"))
    pack_times = {n: e.mtime for n, e in inv.packs.items()}
    value_store_times: dict[str, dict[str, float]] = {}
    doomed: dict[str, tuple[str, str]] = {}  # id -> (kind, where)
    for object_id, kind in repo.index.items("objects"):
        if kind not in (model.VALUE, model.CALL) or object_id in kept:
            continue
        loc = located.get(object_id)
        if loc is not None:
            age = now - pack_times.get(loc.partition(":")[0], now)
            where = "pack"
        elif object_id in stored:
            url = stored[object_id]
            times = value_store_times.get(url)
            if times is None:
                times = value_store_times[url] = _store_times(repo, url)
            age = now - times.get(object_id, now)
            where = "value_store"
        elif object_id in inv.loose:
            age = now - inv.loose[object_id].mtime
            where = "loose"
        else:
            continue  # listed but stored nowhere: fsck's business, nothing to remove
        if age >= result.grace:
            doomed[object_id] = (kind, where)
    for object_id, (kind, _) in doomed.items():
        result.pruned.setdefault(kind, []).append(object_id)
    if result.dry_run or not doomed:
        return
    # First tell every client they are gone, then remove them: a crash in between leaves
    # unlisted files (fsck: unjournaled), never a journal naming a missing object.
    dels: list[IndexEntry] = []
    ids = list(doomed)
    for start in range(0, len(ids), 512):
        batch = ids[start : start + 512]
        try:
            got = repo.get_many(batch)
        except Exception:  # noqa: BLE001 - a damaged one: undo just what the index says it is
            got = [None] * len(batch)  # type: ignore[list-item]
        for object_id, item in zip(batch, got):
            kind, where = doomed[object_id]
            if item is None or isinstance(item, Missing):
                dels.append(("del", "objects", object_id, kind))
            else:
                dels.extend(relocate.derived_dels(item[0], object_id, item[1]))
            if where == "pack":
                dels.append(("del", "packed", object_id, located[object_id]))
            elif where == "value_store":
                dels.append(("del", "value_store", object_id, stored[object_id]))
    relocate.write_entries(repo, [], dels, relocate.Moved())
    for object_id, (_, where) in doomed.items():
        if where == "loose":
            repo.blobs.delete(layout.object_key(object_id))
        elif where == "value_store":
            store = repo.value_stores.store(stored[object_id])
            store.delete(object_id)
    packs = sorted({located[i].partition(":")[0] for i, (_, w) in doomed.items() if w == "pack"})
    if packs:
        result.prune_repack = repack(repo, only=packs, exclude=set(doomed), progress=progress)


def _store_times(repo: Repository, url: str) -> dict[str, float]:
    store = repo.value_stores.store(url)
    out: dict[str, float] = {}
    for key, _, mtime in store.blobs.list_details(layout.OBJECTS):
        object_id = layout.fanout_id(key[len(layout.OBJECTS) + 1 :])
        if object_id is not None:
            out[object_id] = mtime
    return out


__all__ = ["gc", "GcResult", "ReadOnlyRepository", "check_writable"]
