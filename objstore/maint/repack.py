"""repack: merge small packs into big ones and drop duplicate copies; unpack: every packed
object as a loose file (git's unpack-objects).

Nothing under objects/ is rewritten in place: repack writes new, content-named packs first,
then one journal segment moving each object's ``packed`` location to its new place (an
ordinary entry, so every client's index follows at its next refresh, and a reader still on the
old location finds the old pack, which stays until gc removes it after the grace period), and
marks each old pack ``retired``. An entry is a duplicate when the index places its object in
another pack (two writers, or a copy-merge, packed it twice): only the copy the index names is
kept.

A pack whose name is its content's sha256 (as written) has every entry as written, so its
entries are copied without decoding each; one that is not is verified entry by entry, and a
damaged entry is left where it is (fsck reports it) rather than copied.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from objstore import layout, pack
from objstore.errors import CorruptObject, ObjectNotFound
from objstore.maint.report import bulk
from objstore.missing import Missing
from objstore.model.schema import IndexEntry
from objstore.repo import Repository, relocate

log = logging.getLogger("objstore.maint")
Progress = Callable[[str, int], None]
SMALL_PACK = pack.MAX_PACK_BYTES // 4  # a pack below this is merged with others


@dataclass
class RepackResult:
    packs_read: int = 0
    packs_written: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    objects: int = 0
    duplicates: int = 0
    dropped: int = 0  # excluded on purpose (gc --prune)
    bytes_read: int = 0
    bytes_written: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)


def _intact(name: str, data: bytes) -> bool:
    return hashlib.sha256(data).hexdigest()[:40] + ".pack" == name


def candidates(repo: Repository, located: dict[str, str], sizes: dict[str, int], *, everything: bool) -> list[str]:
    """Packs worth rewriting: small ones, and any holding a copy the index does not use."""
    used: dict[str, int] = {}
    for loc in located.values():
        name = loc.partition(":")[0]
        used[name] = used.get(name, 0) + 1
    out = []
    for name, size in sorted(sizes.items()):
        if everything or size < SMALL_PACK or name not in used:
            out.append(name)
    return out


def repack(
    repo: Repository,
    *,
    everything: bool = False,
    exclude: set[str] | frozenset[str] = frozenset(),
    only: list[str] | None = None,
    progress: Progress | None = None,
    dry_run: bool = False,
) -> RepackResult:
    """Rewrite small packs (every pack with ``everything``; just ``only`` when given) into
    packs of up to pack.MAX_PACK_BYTES, without duplicates and without ``exclude``."""
    with bulk():
        return _repack(repo, everything=everything, exclude=exclude, only=only, progress=progress, dry_run=dry_run)


def _repack(
    repo: Repository,
    *,
    everything: bool,
    exclude: set[str] | frozenset[str],
    only: list[str] | None,
    progress: Progress | None,
    dry_run: bool,
) -> RepackResult:
    repo.flush()
    repo.refresh()
    result = RepackResult()
    located = dict(repo.index.items("packed"))
    sizes = {k.rsplit("/", 1)[-1]: size for k, size, _ in repo.blobs.list_details(layout.PACKS)
             if layout.is_pack_name(k.rsplit("/", 1)[-1])}  # fmt: skip
    names = [n for n in only if n in sizes] if only is not None else candidates(repo, located, sizes, everything=everything)
    if len(names) < 2 and only is None and not (names and _has_duplicates(names[0], located)):
        return result
    batch: list[tuple[str, str, bytes]] = []
    batch_bytes = 0
    moves: list[IndexEntry] = []
    listing: list[list[str]] = []

    def write() -> None:
        nonlocal batch, batch_bytes
        if not batch:
            return
        name, data, placed = pack.build(batch)
        if not dry_run:
            repo.blobs.create(layout.pack_key(name), data)
        result.packs_written.append(name)
        result.bytes_written += len(data)
        moves.extend(("put", "packed", oid, loc.encode()) for oid, _, loc in placed)
        batch, batch_bytes = [], 0

    for name in names:
        try:
            toc, data = repo.store.read_pack(name)
        except ObjectNotFound:
            continue
        except CorruptObject as exc:
            result.damaged.append((f"pack/{name}", exc.reason))
            continue
        result.packs_read += 1
        result.bytes_read += len(data)
        intact = _intact(name, data)
        kept_all = True
        for oid, kind, loc in toc:
            here = f"{name}:{loc.offset}:{loc.length}"
            current = located.get(oid)
            if oid in exclude:
                result.dropped += 1
                continue
            if current is not None and current != here:
                result.duplicates += 1
                continue
            entry = data[loc.offset : loc.offset + loc.length]
            if not intact:
                try:
                    pack.read_entry(oid, entry, expect_kind=kind)
                except CorruptObject as exc:
                    result.damaged.append((oid, exc.reason))
                    kept_all = False
                    continue
            if current is None:
                listing.append([oid, kind])  # packed, but named by no journal: known from now on
            frame = entry[len(oid) + 1 :]
            if batch and batch_bytes + len(frame) > pack.MAX_PACK_BYTES:
                write()
            batch.append((oid, kind, frame))
            batch_bytes += len(frame)
            result.objects += 1
        if kept_all:
            result.retired.append(name)
        if progress:
            progress("repack", result.objects)
    write()
    stamp = relocate.now_stamp()
    moves.extend(("put", "retired", name, stamp) for name in result.retired if name not in result.packs_written)
    if not dry_run:
        moved = relocate.Moved()
        relocate.write_entries(repo, listing, moves, moved, trusted=True)
        result.segments = moved.segments
    return result


def _has_duplicates(name: str, located: dict[str, str]) -> bool:
    # A single candidate is only worth rewriting when it holds copies the index does not use;
    # without reading it, that is: it is not referenced at all.
    return not any(loc.startswith(name + ":") for loc in located.values())


def unpack(repo: Repository, *, progress: Progress | None = None) -> relocate.Moved:
    """Every packed object as a loose file; the packs are retired (gc removes them later)."""
    return relocate.unpack(repo, progress=progress)


def pack_toc(repo: Repository, name: str) -> list[tuple[str, str, pack.Location]] | Missing:
    from objstore.missing import MISSING

    try:
        toc, _ = repo.store.read_pack(name)
    except ObjectNotFound:
        return MISSING
    return toc


__all__ = ["repack", "unpack", "RepackResult", "candidates", "SMALL_PACK", "pack_toc"]
