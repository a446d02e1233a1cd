"""What a repository holds, read from its listings alone (the index is what gets checked, so it
is never the source here): loose objects, packs, journal files, eval heads, refs, temp files,
and every name that is none of these (a foreign file objstore never wrote and never touches)."""

from __future__ import annotations

from dataclasses import dataclass, field

from objstore import layout
from objstore.fs import translate
from objstore.ids import is_hash
from objstore.repo import Repository

# What may stand at the top of a repository.
TOP = {layout.FORMAT_FILE, layout.CONFIG_FILE, layout.CONFIG_FILE + ".lock", layout.OBJECTS, layout.EVALS, layout.JOURNAL, layout.REFS, layout.LOST_FOUND}
REF_LOCK_SUFFIX = ".lock"


@dataclass
class Entry:
    key: str
    size: int
    mtime: float


@dataclass
class Inventory:
    loose: dict[str, Entry] = field(default_factory=dict)  # object id -> its file
    packs: dict[str, Entry] = field(default_factory=dict)  # pack name -> its file
    journal: dict[str, Entry] = field(default_factory=dict)  # segment/checkpoint name -> file
    evals: dict[str, Entry] = field(default_factory=dict)  # eval hash -> its file
    refs: dict[str, Entry] = field(default_factory=dict)  # ref name (below refs/) -> file
    foreign: list[tuple[str, str]] = field(default_factory=list)  # (key, why it is not ours)
    temp: list[tuple[str, float]] = field(default_factory=list)  # (key, mtime)
    lost_found: list[str] = field(default_factory=list)


def take(repo: Repository, *, temp: bool = True) -> Inventory:
    """One listing of each directory of ``repo``."""
    inv = Inventory()
    blobs = repo.blobs
    for key, size, mtime in blobs.list_details(layout.OBJECTS):
        rel = key[len(layout.OBJECTS) + 1 :]
        if rel.startswith(layout.PACK_DIR + "/"):
            name = rel[len(layout.PACK_DIR) + 1 :]
            if layout.is_pack_name(name):
                inv.packs[name] = Entry(key, size, mtime)
            else:
                inv.foreign.append((key, "not a pack file name"))
            continue
        object_id = layout.fanout_id(rel)
        if object_id is None:
            inv.foreign.append((key, "not an object id"))
        else:
            inv.loose[object_id] = Entry(key, size, mtime)
    for key, size, mtime in blobs.list_details(layout.JOURNAL):
        name = key[len(layout.JOURNAL) + 1 :]
        if layout.is_journal_name(name):
            inv.journal[name] = Entry(key, size, mtime)
        else:
            inv.foreign.append((key, "not a journal segment or checkpoint name"))
    for key, size, mtime in blobs.list_details(layout.EVALS):
        head = layout.fanout_id(key[len(layout.EVALS) + 1 :])
        if head is not None and is_hash(head):
            inv.evals[head] = Entry(key, size, mtime)
        else:
            inv.foreign.append((key, "not an eval hash"))
    for key, size, mtime in blobs.list_details(layout.REFS):
        name = key[len(layout.REFS) + 1 :]
        if name.endswith(REF_LOCK_SUFFIX):
            continue  # a writer's lock (refs breaks stale ones itself)
        if name.startswith(layout.HANDLES + "/") and _ref_name(name):
            inv.refs[name] = Entry(key, size, mtime)
        else:
            inv.foreign.append((key, "not a handle ref"))
    inv.lost_found = [k for k, _, _ in blobs.list_details(layout.LOST_FOUND)]
    for name in _top_names(repo):
        if name not in TOP and not layout.is_temp(name):
            inv.foreign.append((name, "not part of an objstore repository"))
    if temp:
        inv.temp = blobs.list_temp("")  # every directory, the top included (objstore.json's)
    inv.foreign.sort()
    return inv


def _ref_name(name: str) -> bool:
    from refs.names import is_ref_name

    return is_ref_name(name)


def _top_names(repo: Repository) -> list[str]:
    fs, root = repo.fs, repo.root
    with translate(root, passthrough=()):
        try:
            found = fs.ls(root, detail=False)
        except FileNotFoundError:
            return []
        finally:
            fs.invalidate_cache(root)
    return sorted({str(p).rstrip("/").rsplit("/", 1)[-1] for p in found})


__all__ = ["Inventory", "Entry", "take", "TOP"]
