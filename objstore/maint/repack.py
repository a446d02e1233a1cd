"""repack: merge small packs into big ones and drop duplicate copies; unpack: every packed
object as a loose file (git's unpack-objects).

Nothing under objects/ is rewritten in place: repack writes new, content-named packs first,
then one journal segment moving each object's ``packed`` location to its new place (an
ordinary entry, so every client's index follows at its next refresh, and a reader still on the
old location finds the old pack, which stays until gc removes it after the grace period), and
marks each old pack ``retired``. An entry is a duplicate when the index places its object in
another pack (two writers, or a copy-merge, packed it twice): only the copy the index names is
kept.

Entries are copied byte for byte (each is one verified zstd frame behind its id; nothing is
decompressed, compressed or hashed again per object), in runs: a pack whose rows all stay is one
slice of its file, and the new toc is written once. A pack whose name is its content's sha256
(as written) has every entry as written; one that is not is verified entry by entry (frame
checksum, kind, length, id), and a damaged entry is left where it is (fsck reports it) rather
than copied, so the pack it sits in is not retired.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat

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
    out = _Writer(repo, result, dry_run=dry_run)
    listing: list[list[str]] = []
    unlisted: set[str] = set()  # kept though no journal names them: the first copy only
    for name in names:
        data = repo.blobs.read(layout.pack_key(name))
        if isinstance(data, Missing):
            continue
        try:
            toc = pack.read_toc(data, name=name)
        except CorruptObject as exc:
            result.damaged.append((f"pack/{name}", exc.reason))
            continue
        result.packs_read += 1
        result.bytes_read += len(data)
        runs, kept_all = _plan(name, data, toc, located, exclude, unlisted, listing, result)
        for first, end in runs:
            out.add(data, toc, first, end)
        if kept_all:
            result.retired.append(name)
        if progress:
            progress("repack", result.objects)
    out.close()
    stamp = relocate.now_stamp()
    moves = out.moves
    moves.extend(("put", "retired", name, stamp) for name in result.retired if name not in result.packs_written)
    if not dry_run:
        moved = relocate.Moved()
        relocate.write_entries(repo, listing, moves, moved, trusted=True)
        result.segments = moved.segments
    return result


def _plan(
    name: str, data: bytes, toc: pack.Toc, located: dict[str, str], exclude: set[str] | frozenset[str],
    unlisted: set[str], listing: list[list[str]], result: RepackResult,
) -> tuple[list[tuple[int, int]], bool]:  # fmt: skip
    """The runs [first, end) of toc rows to copy from pack ``name``, and whether nothing in it
    was left behind damaged (then it may be retired)."""
    n = len(toc)
    here = list(map("{}:{}:{}".format, repeat(name), toc.offsets, toc.lengths))
    current = list(map(located.get, toc.ids))
    # The verdict on the bytes: the pack's name is their sha256, so every entry is as written.
    intact = hashlib.sha256(data).hexdigest()[:40] + ".pack" == name
    if (intact and current == here and toc.in_order() and len(set(toc.ids)) == n
            and not (exclude and not exclude.isdisjoint(toc.ids))):
        result.objects += n
        return [(0, n)], True  # the common case: every entry is where the index says, copied as one run
    keep: list[bool] = []
    kept_all = True
    for oid, kind, at, want, offset, length in zip(toc.ids, toc.kinds, here, current, toc.offsets, toc.lengths):
        ok = False
        if oid in exclude:
            result.dropped += 1
        elif (want is not None and want != at) or (want is None and oid in unlisted):
            result.duplicates += 1
        else:
            ok = True
            if not intact:  # then each entry proves itself (frame checksum, kind, length, id)
                try:
                    pack.read_entry(oid, data[offset : offset + length], expect_kind=kind)
                except CorruptObject as exc:
                    result.damaged.append((oid, exc.reason))
                    kept_all = ok = False
            if ok and want is None:
                unlisted.add(oid)
                listing.append([oid, kind])  # packed, but named by no journal: known from now on
        keep.append(ok)
    result.objects += sum(keep)
    contiguous = toc.in_order()
    runs: list[tuple[int, int]] = []
    for i, ok in enumerate(keep):
        if not ok:
            continue
        if contiguous and runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs, kept_all


class _Writer:
    """New packs of up to pack.MAX_PACK_BYTES, made of runs of entries copied byte for byte."""

    def __init__(self, repo: Repository, result: RepackResult, *, dry_run: bool):
        self.repo, self.result, self.dry_run = repo, result, dry_run
        self.parts: list[tuple[bytes, pack.Toc, int, int, int]] = []
        self.size = 0
        self.moves: list[IndexEntry] = []

    def add(self, data: bytes, toc: pack.Toc, first: int, end: int) -> None:
        while first < end:
            start = toc.offsets[first]
            stop = toc.offsets[end - 1] + toc.lengths[end - 1]
            if self.parts and self.size + stop - start > pack.MAX_PACK_BYTES:
                self.close()
            cut = end
            if stop - start > pack.MAX_PACK_BYTES:  # a run bigger than a whole pack: split it
                cut = first + 1
                while cut < end and toc.offsets[cut] + toc.lengths[cut] - start <= pack.MAX_PACK_BYTES:
                    cut += 1
                stop = toc.offsets[cut - 1] + toc.lengths[cut - 1]
            self.parts.append((data, toc, first, cut, start))
            self.size += stop - start
            first = cut

    def close(self) -> None:
        if not self.parts:
            return
        name, data, toc = pack.build_copies(self.parts)
        if not self.dry_run:
            self.repo.blobs.create(layout.pack_key(name), data)
        self.result.packs_written.append(name)
        self.result.bytes_written += len(data)
        where = map("{}:{}:{}".format, repeat(name), toc.offsets, toc.lengths)
        self.moves.extend(zip(repeat("put"), repeat("packed"), toc.ids, where))
        self.parts, self.size = [], 0


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
