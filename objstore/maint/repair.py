"""fsck --repair: rebuild what can be derived, and say plainly what cannot.

    a damaged loose object      moved to lost+found/; a verified copy elsewhere (a pack) serves
    a damaged pack              every entry that still verifies is written as a loose file (its
                                toc is not needed: objstore.maint.salvage), the index is told,
                                and the pack moves to lost+found/
    a damaged journal file      moved to lost+found/; the objects it named are journaled again
                                from a full scan (its journal-only notes -- job starts,
                                heartbeats, eval heads on a local disk -- cannot be recovered)
    unjournaled objects         one new journal segment lists them with the entries they imply
    objects nowhere to be found forgotten by the index (journaled), so the next run that has
                                them writes them again (repair by rewriting), instead of every
                                run believing they are there
    a damaged eval head file    written again from the journal's value, or moved aside
    the index                   rebuilt from the journal
    objstore.json               rebuilt (repo_id from the index when it knows it)

Nothing is deleted: what is damaged goes to lost+found/ under its own key, for a person to look
at; nothing under objects/ that verifies is ever rewritten.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
import uuid
from typing import Any

from objstore import codec, layout, model, pack
from objstore import format as fmt
from objstore.errors import CorruptObject
from objstore.fs import open_url
from objstore.index import Index
from objstore.maint.fsck import Found
from objstore.maint.report import Report
from objstore.missing import Missing
from objstore.model.schema import IndexEntry
from objstore.repo import Repository, relocate
from objstore.repo.repository import migrates_on_open
from objstore.store import BlobStore, open_blobs

log = logging.getLogger("objstore.maint")


def quarantine(blobs: BlobStore, key: str) -> str | None:
    """Move the file at ``key`` to lost+found/ (under its own key); where it went."""
    data = blobs.read(key)
    if isinstance(data, Missing):
        return None
    dest = layout.lost_found_key(key)
    if not blobs.create(dest, data):
        dest = f"{dest}.{int(time.time() * 1e6)}"
        blobs.create(dest, data)
    blobs.delete(key)
    return dest


def _problems(report: Report, *, where: str | None = None, what: str | None = None, obj: str | None = None) -> list[Any]:
    return [p for p in report.problems
            if (where is None or p.where == where) and (what is None or p.what == what)
            and (obj is None or p.object == obj) and not p.repaired and not p.cannot_repair]  # fmt: skip


def repair(repo: Repository, report: Report, found: Found) -> list[str]:
    """Repair what ``found`` says is wrong; what was done, one line each."""
    done: list[str] = []
    blobs = repo.blobs
    forget: dict[str, str] = {}  # id -> kind the index believes
    listing: list[list[str]] = []
    entries: list[IndexEntry] = []
    damaged_packs = set(found.damaged_packs)
    # Loose objects that do not verify.
    for oid, key in sorted(found.bad_objects.items()):
        if not key.startswith(layout.OBJECTS + "/") or key.startswith(layout.PACKS + "/"):
            continue
        dest = quarantine(blobs, key)
        copy = found.toc.get(oid)
        for p in _problems(report, where=key, obj=oid):
            if oid in found.good_copies and copy is not None and copy[0] not in damaged_packs:
                p.repaired = f"moved to {dest}; the verified copy in pack {copy[0]} serves reads"
            else:
                p.cannot_repair = (f"no other copy exists; moved to {dest}, and the index forgets it, so the next "
                                   "run that produces it writes it again")  # fmt: skip
                forget[oid] = found.kinds.get(oid, "")
        done.append(f"moved {key} to {dest}")
    # Packs that do not verify: their readable entries become loose files.
    for name, readable in sorted(found.damaged_packs.items()):
        key = layout.pack_key(name)
        # Encoded again from the verified payloads (the damaged pack's bytes are not kept).
        blobs.create_many([(layout.object_key(e.object_id), codec.encode(e.kind, e.payload)) for e in readable])
        ids = [e.object_id for e in readable]
        kept = set(ids)
        where = repo.index.get_many("packed", ids)
        known = repo.index.get_many("objects", ids)
        for e, loc, kind in zip(readable, where, known):
            if not isinstance(loc, Missing) and loc.startswith(name + ":"):
                entries.append(("del", "packed", e.object_id, loc))
            if isinstance(kind, Missing):
                listing.append([e.object_id, e.kind])
                entries.extend(e2 for e2 in _derived(e.kind, e.object_id, e.payload) if e2[1] != "objects")
        for oid, loc in repo.index.items("packed"):
            if loc.startswith(name + ":") and oid not in kept:
                entries.append(("del", "packed", oid, loc))
                if oid not in found.good_copies:
                    forget.setdefault(oid, found.kinds.get(oid, ""))
        dest = quarantine(blobs, key)
        for p in _problems(report, where=key):
            if p.object and p.object not in kept and p.object not in found.good_copies:
                p.cannot_repair = ("the entry is damaged and no other copy exists; the index forgets it so the "
                                   "next run that produces it writes it again")  # fmt: skip
                forget.setdefault(p.object, found.kinds.get(p.object, ""))
            else:
                p.repaired = f"its {len(readable)} readable entries are loose files now; the pack moved to {dest}"
        done.append(f"salvaged {len(readable)} objects from {key} (moved to {dest})")
    # Journal files that do not parse.
    for name in found.bad_journal:
        key = layout.segment_key(name)
        dest = quarantine(blobs, key)
        for p in _problems(report, where=key):
            p.repaired = f"moved to {dest}; the objects it named are journaled again below"
            p.cannot_repair = ("its journal-only notes (job starts, heartbeats, eval heads written on a local disk) "
                               "cannot be recovered")  # fmt: skip
        done.append(f"moved {key} to {dest}")
    # Objects no journal names (some just salvaged): one segment lists them.
    salvaged = {oid for oid, _ in listing}
    for oid in found.unjournaled:
        if oid in salvaged or oid in forget:
            continue
        at = found.toc.get(oid)
        # A packed object whose only journal file was damaged: the index has no location for
        # it (that file was the only one to say where it is), but the pack's toc does.
        kind_payload = _read(repo, oid) or (_read_packed(repo, oid, at) if at and at[0] not in damaged_packs else None)
        if kind_payload is None:
            continue
        kind, payload = kind_payload
        listing.append([oid, kind])
        entries.extend(e for e in _derived(kind, oid, payload) if e[1] != "objects")
        if at is not None and at[0] not in damaged_packs:
            entries.append(("put", "packed", oid, f"{at[0]}:{at[1]}:{at[2]}"))
        for p in _problems(report, what="unjournaled", obj=oid):
            p.repaired = "journaled from a full scan"
    # Objects the journal names and nothing holds: forget them, so they are written again.
    for oid in found.missing:
        forget.setdefault(oid, found.kinds.get(oid, ""))
        for p in _problems(report, what="missing", obj=oid):
            p.cannot_repair = ("no copy exists anywhere; the index forgets it, so the next run that produces it "
                               "writes it again")  # fmt: skip
    for oid in sorted(forget):
        held = repo.index.get("objects", oid)
        if not isinstance(held, Missing):
            entries.append(("del", "objects", oid, held))
        for table in ("packed", "value_store"):
            value = repo.index.get(table, oid)
            if not isinstance(value, Missing):
                entries.append(("del", table, oid, value))
    if listing or entries:
        moved = relocate.Moved()
        relocate.write_entries(repo, listing, entries, moved)
        done.append(f"journaled {len(listing)} objects and {len(entries)} index entries in {len(moved.segments)} segment(s)")
    # Eval head files that do not parse.
    for eval_hash in found.bad_evals:
        key = layout.eval_key(eval_hash)
        value = repo.index.get("evals", eval_hash)
        for p in _problems(report, where=key):
            if isinstance(value, Missing):
                dest = quarantine(blobs, key)
                p.repaired = f"moved to {dest} (the journal has no head for it: a cache miss until the next run)"
            else:
                blobs.replace(key, value.encode("ascii"))
                p.repaired = f"written again from the journal ({value})"
        done.append(f"repaired {key}")
    # The index: rebuilt from the journal as it now stands.
    stats = repo.reindex()
    for p in _problems(report, where="index"):
        p.repaired = "the index was rebuilt from the journal"
    done.append(f"rebuilt the index from {stats['segments']} journal files")
    for p in _problems(report, what="foreign"):
        p.cannot_repair = "not objstore's: left alone (remove it yourself if it is not yours)"
    for p in report.problems:
        if p.severity == "error" and not p.repaired and not p.cannot_repair:
            p.cannot_repair = _why_not(p.what)
    return done


def _derived(kind: str, oid: str, payload: bytes) -> list[IndexEntry]:
    try:
        return model.derive_entries(kind, oid, payload)
    except CorruptObject:
        return [("put", "objects", oid, kind)]


def _read(repo: Repository, oid: str) -> tuple[str, bytes] | None:
    try:
        return repo.get(oid)
    except Exception:  # noqa: BLE001 - damaged or gone: nothing to journal
        return None


def _read_packed(repo: Repository, oid: str, at: tuple[str, int, int]) -> tuple[str, bytes] | None:
    try:
        kind, payload = repo.store.get_packed(oid, pack.Location(*at))
        model.verify(kind, oid, payload)
        return kind, payload
    except Exception:  # noqa: BLE001 - damaged or gone: nothing to journal
        return None


def _why_not(what: str) -> str:
    return {
        "missing": "what it refers to is not derivable from anything else; the next run that records it writes it",
        "corrupt": "not derivable from anything else in the repository",
        "unreachable": "the storage could not be reached",
        "mismatch": "see the other problems",
    }.get(what, "not derivable from anything else in the repository")


def rebuild_format(url: str, storage_options: dict | None, index_dir: Any) -> tuple[dict[str, Any], str]:
    """A new objstore.json for a repository whose own is missing or damaged: its repo_id from
    the local index when it has one; its version this objstore's for a repository on this
    machine's disk, else the oldest its data needs (so no older client is locked out)."""
    fs, root = open_url(url, storage_options)
    blobs = open_blobs(fs, root)
    repo_id = None
    try:
        index = Index(index_dir, model.TABLES)
        try:
            known = index.meta_get("repo_id")
            repo_id = known if isinstance(known, str) else None
        finally:
            index.close()
    except Exception:  # noqa: BLE001 - no usable index: a new identity
        repo_id = None
    journal = blobs.list_names(layout.JOURNAL)
    if migrates_on_open(fs, root):
        version = fmt.FORMAT_VERSION  # opening it would migrate it there anyway
    elif any(layout.is_checkpoint_name(n) for n in journal):
        version = fmt.CHECKPOINTS
    elif blobs.list_names(layout.PACKS):
        version = fmt.SETTINGS
    else:
        version = (1, 0)
    doc: dict[str, Any] = {
        "format": fmt.FORMAT_NAME,
        "version": list(version),
        "repo_id": repo_id or str(uuid.uuid4()),
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "rebuilt_by_fsck": True,
    }
    if version >= fmt.SETTINGS:
        doc["settings"] = fmt.DEFAULT_SETTINGS.to_doc()
    old = blobs.read(layout.FORMAT_FILE)
    if not isinstance(old, Missing):
        dest = layout.lost_found_key(layout.FORMAT_FILE)
        if not blobs.create(dest, old):
            blobs.create(f"{dest}.{int(time.time() * 1e6)}", old)
    blobs.replace(layout.FORMAT_FILE, codec.canonical_json(doc))
    how = "kept the repo_id the index knew" if repo_id else "a new repo_id (no index knew the old one)"
    return doc, f"rebuilt objstore.json at format {fmt.show(version)}, {how}; settings are the defaults"


__all__ = ["repair", "quarantine", "rebuild_format"]
