"""A repository: one URL -> its format file, object store, refs, write buffer, journal and index.

Write path (the order is the promise that makes copying and concurrent readers safe): a flush
writes every buffered object, then the eval heads, then ONE journal segment naming what the
flush added; only then are the same entries applied to the local index. A reader that sees a
journal segment or an eval head can therefore always fetch the objects behind it, and a crash
mid-flush leaves at worst a few unreferenced immutable objects.

Read path: the write buffer, then the local LMDB index, then one GET of the repository.

The index is derived and lives outside the repository (copying a repository must never copy an
index): ``default_index_dir`` keys it by URL, and its meta records the repo_id it was built
for, so a re-initialised repository at the same URL gets its index rebuilt.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import refs as refs_pkg
from objstore import codec, pack, records
from objstore import fs as fs_mod
from objstore.errors import (
    CorruptObject,
    FormatError,
    ObjectNotFound,
    RepositoryExists,
    RepositoryNotFound,
)
from objstore.ids import fanout_path, is_hash, is_uuid, validate_hash, validate_id, validate_uuid
from objstore.index import Index, IndexEntry, on_network_fs
from objstore.store import MISSING, ObjectStore

log = logging.getLogger("objstore.repo")

FORMAT_NAME = "objstore"
# Major 1: loose objects only. Major 2 adds pack files (objects/pack/, objstore.pack), which a
# major-1 reader would not find, hence the major bump. This code reads both and writes 2.
FORMAT_VERSION = (2, 0)
OLDEST_MAJOR = 1
PACKS_SINCE_MAJOR = 2
FORMAT_FILE = "objstore.json"
JOURNAL_KIND = "journal"
JOURNAL_FORMAT = "objstore-journal"

# <UTC time>-<writer id>; the time sorts segments, the writer id keeps two writers apart.
SEGMENT_RE = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8,32}")
_FANOUT_RE = re.compile(r"([0-9a-f]{2})/([0-9a-f]{38})")
_READ_BATCH = 64
# A flush packs its small objects when it has at least this many; a lone object stays loose,
# where a reader without the journal entry still finds it by its path.
PACK_MIN_OBJECTS = 2

Progress = Callable[[str, int], None]


# -- pure helpers -----------------------------------------------------------------------------


def normalize_url(url: str) -> str:
    """The URL an index is keyed by: local paths made absolute, no trailing slash."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() in ("file", "local"):
        path = rest if sep else url
        return "file://" + (os.path.abspath(os.path.expanduser(path)).rstrip("/") or "/")
    return f"{scheme.lower()}://{rest.rstrip('/')}"


def default_index_dir(url: str, cache_home: Path) -> Path:
    """``cache_home/index/<name>-<hash of the normalized url>``: outside any repository.

    The repo_id is checked through the index's own meta instead of being part of the path, so
    the path is computable before the repository is read (e.g. by the CLI).
    """
    norm = normalize_url(url)
    digest = hashlib.sha256(norm.encode("utf-8")).hexdigest()[:20]
    tail = norm.rstrip("/").rsplit("/", 1)[-1] or "root"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", tail).strip("._")[:40] or "repo"
    return Path(cache_home) / "index" / f"{slug}-{digest}"


def new_format_doc() -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": list(FORMAT_VERSION),
        "repo_id": str(uuid.uuid4()),
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def check_format(doc: Any, where: str) -> dict[str, Any]:
    """Accept objstore.json of this format and a major version we read; say why otherwise."""
    if not isinstance(doc, dict):
        raise FormatError(f"{where}: {FORMAT_FILE} is not a JSON object")
    name = doc.get("format")
    if name != FORMAT_NAME:
        raise FormatError(f"{where}: {FORMAT_FILE} says format {name!r}, not {FORMAT_NAME!r}")
    version = doc.get("version")
    if (
        not isinstance(version, list)
        or len(version) < 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in version)
    ):
        raise FormatError(f"{where}: {FORMAT_FILE} has an unreadable version {version!r}")
    major, minor = version[0], version[1]
    mine = f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"
    if major > FORMAT_VERSION[0]:
        raise FormatError(
            f"{where}: repository format version {major}.{minor} is newer than this objstore "
            f"supports ({mine}, majors {OLDEST_MAJOR}-{FORMAT_VERSION[0]}); upgrade objstore to use it"
        )
    if major < OLDEST_MAJOR:
        raise FormatError(
            f"{where}: repository format version {major}.{minor} is older than this objstore "
            f"supports ({mine}, majors {OLDEST_MAJOR}-{FORMAT_VERSION[0]})"
        )
    try:
        validate_uuid(doc.get("repo_id"))
    except ValueError:
        raise FormatError(f"{where}: {FORMAT_FILE} has no valid repo_id") from None
    return doc


def shared_storage(fs: Any, root: str) -> bool:
    """Whether other machines may use this repository without this machine's index: any
    remote or in-memory filesystem, and a local path on a network filesystem (NFS, SMB...)."""
    if not fs_mod.is_local(fs):
        return True
    return on_network_fs(root)


def _segment_doc(writer: str, objects: list[list[str]], entries: list[IndexEntry]) -> dict:
    return {
        "format": JOURNAL_FORMAT,
        "version": 1,
        "writer": writer,
        "objects": objects,
        "entries": entries,  # tuples: canonical_json writes them as the same JSON arrays
    }


class Repository:
    """Use ``Repository.init`` / ``Repository.open``; the constructor is internal."""

    def __init__(
        self,
        url: str,
        fs: Any,
        root: str,
        doc: dict[str, Any],
        *,
        index_dir: str | os.PathLike | None,
        durable: bool,
        eval_files: bool | None = None,
    ):
        self.url = url
        self.fs = fs
        self.root = root
        self.format = doc
        self.repo_id: str = doc["repo_id"]
        self.durable = durable
        self.store = ObjectStore(fs, root, durable=durable)
        self.refs = refs_pkg.open_refs(fs, self._path("refs"))
        if index_dir is None:
            index_dir = default_index_dir(url, Path.home() / ".cache" / "objstore")
        self.index_dir = Path(index_dir)
        self.index = Index(self.index_dir, records.INDEX_TABLES, durable=durable)
        self.writer_id = uuid.uuid4().hex[:16]
        if eval_files is None:
            eval_files = shared_storage(fs, root)
        # Eval heads as files under evals/ let a worker whose index lacks the writer's journal
        # find a head by its path: what a bucket or network directory shared by machines needs.
        # On a local disk every process of the machine shares the index the flush updates, and
        # creating a file per cached call was most of a first run's cost, so there the journal
        # alone carries them (a process with its own index_dir sees them at its next refresh).
        self.eval_files = eval_files
        self._lock = threading.RLock()  # guards the buffers
        self._flush_lock = threading.Lock()  # one flush at a time
        self._objects: dict[str, tuple[str, bytes, list[IndexEntry]]] = {}
        self._notes: list[IndexEntry] = []
        self._evals: dict[str, str] = {}
        self._flushing: tuple[dict, dict] | None = None
        self._last_stamp: _dt.datetime | None = None
        self._closed = False
        try:
            if self.index.meta_get("repo_id") != self.repo_id:
                # New, foreign or schema-reset index: rebuild it from the journal.
                self.index.clear()
                self._stamp_index()
                self.refresh()
        except BaseException:
            self.index.close()
            raise

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        url: str,
        storage_options: dict | None = None,
        *,
        index_dir: str | os.PathLike | None = None,
        durable: bool = False,
        eval_files: bool | None = None,
    ) -> Repository:
        """Create a repository at ``url``; RepositoryExists if objstore.json is already there."""
        fsys, root = fs_mod.open_url(url, storage_options)
        path = f"{root.rstrip('/')}/{FORMAT_FILE}"
        data = codec.canonical_json(new_format_doc())
        if not fs_mod.write_if_absent(fsys, path, data, durable=durable):
            raise RepositoryExists(f"a repository already exists at {url}")
        return cls.open(url, storage_options, index_dir=index_dir, durable=durable, eval_files=eval_files)

    @classmethod
    def open(
        cls,
        url: str,
        storage_options: dict | None = None,
        *,
        index_dir: str | os.PathLike | None = None,
        durable: bool = False,
        create: bool = False,
        eval_files: bool | None = None,
    ) -> Repository:
        """Open the repository at ``url`` (``create``: init it when absent).

        ``eval_files`` (default: only on shared storage, see ``shared_storage``) writes each
        eval-cache head as a file under evals/ besides its journal entry.
        """
        fsys, root = fs_mod.open_url(url, storage_options)
        path = f"{root.rstrip('/')}/{FORMAT_FILE}"
        try:
            with fs_mod.translate(path):
                raw = fsys.cat_file(path)
        except FileNotFoundError:
            if not create:
                raise RepositoryNotFound(
                    f"no objstore repository at {url} ({FORMAT_FILE} not found)"
                ) from None
            try:
                return cls.init(url, storage_options, index_dir=index_dir, durable=durable, eval_files=eval_files)
            except RepositoryExists:  # lost a creation race: open the winner's
                return cls.open(url, storage_options, index_dir=index_dir, durable=durable, eval_files=eval_files)
        try:
            doc = codec.parse_json(raw, object_id=FORMAT_FILE)
        except CorruptObject as exc:
            raise FormatError(f"{url}: {FORMAT_FILE} is not valid JSON ({exc.reason})") from None
        doc = check_format(doc, url)
        repo = cls(url, fsys, root, doc, index_dir=index_dir, durable=durable, eval_files=eval_files)
        if repo.format["version"][0] < FORMAT_VERSION[0] and (fs_mod.is_local(fsys) or fs_mod.is_memory(fsys)):
            # A local repository has no other objstore version writing to it that could miss
            # the packs this one writes: upgrade it now. A shared bucket waits for `objstore
            # upgrade`, run once every worker has an objstore that reads packs.
            try:
                repo.upgrade()
            except BaseException:
                repo.index.close()
                raise
        return repo

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @property
    def packs(self) -> bool:
        """Whether flushes may write pack files (format major >= 2)."""
        return self.format["version"][0] >= PACKS_SINCE_MAJOR

    def upgrade(self) -> bool:
        """Rewrite objstore.json at this objstore's format version; True if it changed.

        Major 1 -> 2 changes no data: a major-1 repository is a valid major-2 one without packs.
        Objects written before stay where they are.
        """
        old = self.format["version"]
        if tuple(old[:2]) >= FORMAT_VERSION:
            return False
        doc = dict(self.format)
        doc["version"] = list(FORMAT_VERSION)
        doc["upgraded_from"] = list(old)
        fs_mod.atomic_write(self.fs, self._path(FORMAT_FILE), codec.canonical_json(doc), durable=self.durable)
        self.format = doc
        log.info("%s: upgraded repository format %s -> %s", self.url, old, doc["version"])
        return True

    def _eval_path(self, eval_hash: str) -> str:
        return self._path("evals", fanout_path(validate_hash(eval_hash)))

    def _stamp_index(self) -> None:
        self.index.meta_put("repo_id", self.repo_id)
        self.index.meta_put("url", normalize_url(self.url))

    # -- write buffer ---------------------------------------------------------------------

    def _checked(self, entries: Iterable[IndexEntry]) -> list[IndexEntry]:
        # The one full check of an entry: it raises here, at the writer, and what is buffered
        # is an immutable tuple of str, so the flush writes it to the journal and hands it to
        # the index (apply(prechecked=True)) without checking it again.
        check = self.index.check_entry
        out = []
        for e in entries:
            check(e)
            out.append(e if type(e) is tuple else tuple(e))
        return out

    def add(
        self,
        object_id: str,
        kind: str,
        payload: bytes,
        entries: Iterable[IndexEntry] | None = None,
    ) -> None:
        """Buffer an object (written at the next flush) with the index entries it implies."""
        object_id = validate_id(object_id)
        payload = bytes(payload)
        if entries is None:
            entries = records.derive_entries(kind, object_id, payload)
        checked = self._checked(entries)
        with self._lock:
            # Objects are immutable: a second add of the same id keeps the first payload.
            if object_id not in self._objects:
                self._objects[object_id] = (kind, payload, checked)
            else:
                self._objects[object_id][2].extend(checked)

    def note(self, entries: Iterable[IndexEntry]) -> None:
        """Buffer journal-only index entries (e.g. a job's start, before it is an object)."""
        checked = self._checked(entries)
        with self._lock:
            self._notes.extend(checked)

    def set_eval_head(self, eval_hash: str, value_hash: str) -> None:
        validate_hash(eval_hash)
        validate_hash(value_hash)
        with self._lock:
            self._evals[eval_hash] = value_hash

    def pending(self) -> int:
        """How many buffered items (objects + notes + eval heads) the next flush writes."""
        with self._lock:
            return len(self._objects) + len(self._notes) + len(self._evals)

    def _segment_name(self) -> str:
        now = _dt.datetime.now(_dt.timezone.utc)
        if self._last_stamp is not None and now <= self._last_stamp:
            # Keep this writer's segments strictly ordered even if the clock stalls or steps back.
            now = self._last_stamp + _dt.timedelta(microseconds=1)
        self._last_stamp = now
        return f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{self.writer_id}"

    def flush(self) -> None:
        """objects -> eval heads -> one journal segment -> the local index (one LMDB txn).

        Nothing is written for an empty buffer. If writing to the repository fails, the
        buffer is kept (merged with anything added meanwhile) so the flush can be retried.
        """
        with self._flush_lock:
            with self._lock:
                objects, notes, evals = self._objects, self._notes, self._evals
                if not (objects or notes or evals):
                    return
                self._objects, self._notes, self._evals = {}, [], {}
                self._flushing = (objects, evals)
            try:
                segment, index_entries = self._write_out(objects, notes, evals)
            except BaseException:
                with self._lock:
                    for oid, item in self._objects.items():
                        objects.setdefault(oid, item)
                    evals.update(self._evals)  # newer heads win
                    self._objects, self._notes = objects, notes + self._notes
                    self._evals = evals
                    self._flushing = None
                raise
            try:
                # The segment is in the repository now; a failure here only delays this
                # index (refresh() ingests the segment later), so the buffer is not restored.
                self.index.apply(index_entries, segment=segment, prechecked=True)
            finally:
                with self._lock:
                    self._flushing = None

    def _write_out(
        self, objects: dict, notes: list[IndexEntry], evals: dict[str, str]
    ) -> tuple[str, list[IndexEntry]]:
        located: list[tuple[str, str, pack.Location]] = []
        if objects:
            # Every buffered object is packed, even one the index already knows: the index can
            # outlive the bytes (a lost pack, a partial copy), and writing again is the repair.
            # Callers that re-add known objects skip them first (the backend checks has()).
            small = [
                (oid, kind, payload)
                for oid, (kind, payload, _) in objects.items()
                if len(payload) <= pack.MAX_OBJECT_BYTES
            ] if self.packs else []
            if len(small) < PACK_MIN_OBJECTS:
                small = []
            packed = {oid for oid, _, _ in small}
            if small:
                located = self.store.put_packed(small)
            loose = [(oid, kind, payload) for oid, (kind, payload, _) in objects.items() if oid not in packed]
            if loose:
                self.store.put_many(loose)
        if evals and self.eval_files:
            # All heads at once: locally and durable, one fsync round for the files and one
            # for their directories, after the objects' (the order a crash must respect).
            fs_mod.replace_many(
                self.fs,
                [(self._eval_path(h), v.encode("ascii")) for h, v in evals.items()],
                durable=self.durable,
            )
        entries: list[IndexEntry] = []
        for _, (_, _, derived) in objects.items():
            entries.extend(derived)
        entries.extend(notes)
        entries.extend(("put", "evals", h, v) for h, v in evals.items())
        entries.extend(("put", "packed", oid, loc.encode()) for oid, _, loc in located)
        listing = [[oid, kind] for oid, (kind, _, _) in objects.items()]
        data = codec.encode(
            JOURNAL_KIND, codec.canonical_json(_segment_doc(self.writer_id, listing, entries))
        )
        for _ in range(5):
            segment = self._segment_name()
            path = self._path("journal", segment)
            if fs_mod.write_if_absent(self.fs, path, data, durable=self.durable):
                break
        else:  # cannot happen unless another client reuses our random writer id
            raise FileExistsError(f"journal segment names keep colliding at {path}")
        return segment, self._index_entries(listing, entries)

    def _index_entries(self, listing: list, entries: Iterable) -> list[IndexEntry]:
        out: list[IndexEntry] = []
        if "objects" in self.index.tables:
            out.extend(("put", "objects", oid, kind) for oid, kind in listing)
        out.extend(entries)
        return out

    # -- reads ----------------------------------------------------------------------------

    def _buffered(self, object_id: str):
        with self._lock:
            hit = self._objects.get(object_id)
            if hit is None and self._flushing is not None:
                hit = self._flushing[0].get(object_id)
        return hit

    def get(self, object_id: str, *, expect_kind: str | None = None) -> tuple[str, bytes]:
        object_id = validate_id(object_id)
        hit = self._buffered(object_id)
        if hit is not None:
            kind, payload = hit[0], hit[1]
            if expect_kind is not None and kind != expect_kind:
                raise CorruptObject(object_id, f"kind {kind!r} is not the expected {expect_kind!r}")
            return kind, payload
        kind, payload = self._read_stored(object_id, expect_kind)
        if "objects" in self.index.tables and self.index.get("objects", object_id) is MISSING:
            self.index.apply([("put", "objects", object_id, kind)])
        return kind, payload

    def _read_stored(self, object_id: str, expect_kind: str | None) -> tuple[str, bytes]:
        """Packed (the index knows where) or loose; on a miss, once more after a refresh: an
        object another writer packed is found through its journal segment, not by its path.
        (Even when this repository was opened at major 1: another client may have upgraded it.)"""
        try:
            return self._read_once(object_id, expect_kind)
        except ObjectNotFound:
            if not self.refresh():
                raise
        return self._read_once(object_id, expect_kind)

    def _read_once(self, object_id: str, expect_kind: str | None) -> tuple[str, bytes]:
        where = self.index.get("packed", object_id)
        if where is MISSING:
            return self.store.get(object_id, expect_kind=expect_kind)
        location = pack.Location.parse(where, object_id=object_id)
        return self.store.get_packed(object_id, location, expect_kind=expect_kind)

    def has(self, object_id: str) -> bool:
        object_id = validate_id(object_id)
        if self._buffered(object_id) is not None:
            return True
        if "objects" in self.index.tables and self.index.get("objects", object_id) is not MISSING:
            return True
        return self.store.has(object_id)

    def eval_head(self, eval_hash: str):
        """The value hash last recorded for ``eval_hash``, or MISSING."""
        validate_hash(eval_hash)
        with self._lock:
            value = self._evals.get(eval_hash)
            if value is None and self._flushing is not None:
                value = self._flushing[1].get(eval_hash)
        if value is not None:
            return value
        value = self.index.get("evals", eval_hash)
        if value is not MISSING or not self.eval_files:
            return value
        path = self._eval_path(eval_hash)
        try:
            with fs_mod.translate(path):
                raw = self.fs.cat_file(path)
        except FileNotFoundError:
            return MISSING
        value = raw.decode("ascii", "replace").strip()
        if not is_hash(value):
            raise CorruptObject(f"evals/{eval_hash}", f"not a value hash: {raw[:60]!r}")
        self.index.apply([("put", "evals", eval_hash, value)])
        return value

    # -- journal and reindex --------------------------------------------------------------

    def _list_names(self, directory: str) -> list[str]:
        try:
            with fs_mod.translate(directory):
                self.fs.invalidate_cache(directory)  # s3fs/gcsfs would answer from a stale listing
                paths = self.fs.ls(directory, detail=False)
        except FileNotFoundError:
            return []
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in paths]

    def _read_many(self, paths: list[str]) -> dict[str, bytes | BaseException]:
        """{path: bytes or the error}, concurrently on async filesystems."""
        out: dict[str, bytes | BaseException] = {}
        if fs_mod.is_local(self.fs) or fs_mod.is_memory(self.fs) or len(paths) == 1:
            for p in paths:
                try:
                    with fs_mod.translate(p):
                        out[p] = self.fs.cat_file(p)
                except Exception as exc:
                    out[p] = exc
            return out
        with fs_mod.translate(paths[0]):
            got = self.fs.cat(paths, on_error="return")
        for p in paths:
            value = got.get(p)
            if value is None:
                value = got.get(self.fs._strip_protocol(p), FileNotFoundError(p))
            out[p] = value
        return out

    def _valid(self, entries: Iterable, where: str) -> list[IndexEntry]:
        """Entries read back from the repository: a bad one is skipped, never fatal."""
        good = []
        for e in entries:
            try:
                self.index.check_entry(e)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s: skipping index entry %r: %s", where, e, exc)
                continue
            good.append(tuple(e))
        return good

    def _ingest(self, name: str, data: bytes) -> None:
        where = f"journal/{name}"
        kind, payload = codec.decode(data, object_id=where, expect_kind=JOURNAL_KIND)
        doc = codec.parse_json(payload, object_id=where)
        if not isinstance(doc, dict) or doc.get("format") != JOURNAL_FORMAT:
            raise CorruptObject(where, "not an objstore journal segment")
        listing = []
        for item in doc.get("objects") or []:
            if (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[1], str)
                and (is_hash(item[0]) or is_uuid(item[0]))
            ):
                listing.append(item)
            else:
                log.warning("%s: skipping malformed object listing %r", where, item)
        entries = self._valid(doc.get("entries") or [], where)
        self.index.apply(self._index_entries(listing, entries), segment=name, prechecked=True)

    def refresh(self, progress: Progress | None = None) -> int:
        """Ingest, in name order, the journal segments this index has not seen; how many.

        Holds the flush lock: a segment this writer is flushing is marked seen by the flush
        itself, and must not be ingested a second time after newer ones.
        """
        with self._flush_lock:
            return self._refresh_locked(progress)

    def _refresh_locked(self, progress: Progress | None) -> int:
        names = sorted(n for n in self._list_names(self._path("journal")) if SEGMENT_RE.fullmatch(n))
        new = [n for n in names if not self.index.has_segment(n)]
        done = 0
        for start in range(0, len(new), _READ_BATCH):
            batch = new[start : start + _READ_BATCH]
            got = self._read_many([self._path("journal", n) for n in batch])
            for name in batch:
                data = got[self._path("journal", name)]
                if isinstance(data, BaseException):
                    if isinstance(data, FileNotFoundError):
                        continue  # removed since the listing (e.g. compacted)
                    raise data
                try:
                    self._ingest(name, data)
                except CorruptObject as exc:
                    # Left unmarked so a repaired segment is picked up by a later refresh.
                    log.warning("skipping unreadable journal segment: %s", exc)
                    continue
                done += 1
            if progress:
                progress("journal", done)
        return done

    def reindex(self, *, full_scan: bool = False, progress: Progress | None = None) -> dict[str, Any]:
        """Clear the index and rebuild it from journal/ (and, with full_scan, objects/ + evals/)."""
        t0 = time.monotonic()
        self.index.clear()
        self._stamp_index()
        stats: dict[str, Any] = {"segments": self.refresh(progress), "objects": 0, "evals": 0, "corrupt": 0}
        if full_scan:
            self._scan_packs(stats, progress)
            self._scan_objects(stats, progress)
            self._scan_evals(stats, progress)
        stats["seconds"] = round(time.monotonic() - t0, 3)
        return stats

    def _scan_packs(self, stats: dict, progress: Progress | None) -> None:
        for name in self.store.pack_names():
            try:
                toc, data = self.store.read_pack(name)
            except ObjectNotFound:
                continue  # removed since the listing
            except CorruptObject as exc:
                log.warning("reindex: skipping %s", exc)
                stats["corrupt"] += 1
                continue
            entries: list[IndexEntry] = []
            for oid, _, loc in toc:
                try:
                    kind, payload = pack.read_entry(oid, data[loc.offset : loc.offset + loc.length])
                    derived = records.derive_entries(kind, oid, payload)
                except CorruptObject as exc:
                    log.warning("reindex: skipping %s", exc)
                    stats["corrupt"] += 1
                    continue
                entries.extend(self._index_entries([[oid, kind]], derived))
                entries.append(("put", "packed", oid, loc.encode()))
                stats["objects"] += 1
            self.index.apply(self._valid(entries, "reindex"), prechecked=True)
            if progress:
                progress("objects", stats["objects"])

    def _scan_objects(self, stats: dict, progress: Progress | None) -> None:
        ids: list[str] = []

        def drain() -> None:
            try:
                got = self.store.get_many(ids)
            except CorruptObject:
                got = []
                for oid in ids:  # find the bad one(s); keep the rest
                    try:
                        got.append(self.store.get(oid))
                    except ObjectNotFound:
                        got.append(MISSING)
                    except CorruptObject as exc:
                        log.warning("reindex: skipping %s", exc)
                        stats["corrupt"] += 1
                        got.append(MISSING)
            entries: list[IndexEntry] = []
            for oid, item in zip(ids, got):
                if item is MISSING:
                    continue
                kind, payload = item
                try:
                    derived = records.derive_entries(kind, oid, payload)
                except CorruptObject as exc:
                    log.warning("reindex: indexing %s without its derived entries: %s", oid, exc)
                    stats["corrupt"] += 1
                    derived = []
                entries.extend(self._index_entries([[oid, kind]], derived))
                stats["objects"] += 1
            self.index.apply(self._valid(entries, "reindex"), prechecked=True)
            ids.clear()
            if progress:
                progress("objects", stats["objects"])

        for oid in self.store.iter_ids():
            ids.append(oid)
            if len(ids) >= 256:
                drain()
        if ids:
            drain()

    def _scan_evals(self, stats: dict, progress: Progress | None) -> None:
        base = self._path("evals")
        try:
            with fs_mod.translate(base):
                self.fs.invalidate_cache(base)
                paths = self.fs.find(base)
        except FileNotFoundError:
            paths = []
        found: dict[str, str] = {}
        prefix = base.rstrip("/") + "/"
        for p in paths:
            rel = p[p.find(prefix) + len(prefix) :] if prefix in p else ""
            m = _FANOUT_RE.fullmatch(rel)
            if m:
                found[m.group(1) + m.group(2)] = p
        items = sorted(found.items())
        for start in range(0, len(items), _READ_BATCH):
            batch = items[start : start + _READ_BATCH]
            got = self._read_many([p for _, p in batch])
            entries = []
            for eval_hash, p in batch:
                data = got[p]
                if isinstance(data, BaseException):
                    if isinstance(data, FileNotFoundError):
                        continue
                    raise data
                value = data.decode("ascii", "replace").strip()
                if is_hash(value):
                    entries.append(("put", "evals", eval_hash, value))
                else:
                    log.warning("reindex: skipping evals/%s: not a value hash", eval_hash)
            self.index.apply(entries)
            stats["evals"] += len(entries)
            if progress:
                progress("evals", stats["evals"])

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Flush what is buffered, then release the index."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self.index.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # do not write a half-done batch from a failing block; just let go of the index
            self._closed = True
            self.index.close()

    def __repr__(self) -> str:
        return f"Repository({self.url!r})"
