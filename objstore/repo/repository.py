"""A repository: one URL -> its format file, stores, refs, index, write buffer and journal.

``Repository`` composes the parts below and keeps none of their logic:

    buffer.WriteBuffer    what this process wrote and has not flushed; read first
    objects.ObjectReader  where an object is (buffer, pack, loose) and bulk reads of many
    flush.Flusher         when to flush, and the write order (objects, eval heads, journal, index)
    journal.Journal       segments: writing, listing, catching up (refresh)
    compaction.Compactor  checkpoints folding many segments; retiring what they cover
    valuestore.ValueStores  the second URL big values go to (format 2.1 settings)
    evals.EvalHeads       eval-cache heads (in the journal; old evals/ files still read)
    reindex.Reindexer     rebuilding the index from the journal or a full scan
    migrate               format upgrades and downgrades (objstore db)
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import refs as refs_pkg
from objstore import codec, layout, model
from objstore import format as fmt
from objstore.errors import CorruptObject, FormatError, RepositoryExists, RepositoryNotFound, StorageError
from objstore.fs import is_local, is_memory, missing_container, open_url
from objstore.ids import validate_hash, validate_id
from objstore.index import MAX_KEY_BYTES, Index, on_network_fs
from objstore.missing import MISSING, Missing
from objstore.model.schema import IndexEntry
from objstore.repo import journal as journal_mod
from objstore.repo.buffer import WriteBuffer
from objstore.repo.compaction import Compactor, uncovered_count
from objstore.repo.evals import EvalHeads
from objstore.repo.flush import Flusher, FlushPolicy
from objstore.repo.index_dir import default_index_dir, normalize_url
from objstore.repo.journal import Journal, Progress
from objstore.repo.objects import ObjectReader
from objstore.repo.packcache import DEFAULT_MAX_BYTES as DEFAULT_PACK_CACHE_BYTES
from objstore.repo.packcache import PackCache
from objstore.repo.reindex import Reindexer, rederive
from objstore.repo.repair import DamageLedger
from objstore.repo.valuestore import ValueStores, scheme_of
from objstore.store import open_blobs
from objstore.store.objects import Decoded, ObjectStore

log = logging.getLogger("objstore.repo")

# A reader's miss refreshes from the journal at most this often (Repository.catch_up).
CATCH_UP_INTERVAL = 1.0

# How long maintenance leaves what a live client may still use: temp files being written,
# packs and journal files that something newer replaced. `objstore gc --grace` changes it.
DEFAULT_GRACE = 3600.0


def shared_storage(fs: Any, root: str) -> bool:
    """Whether other machines may use this repository without this machine's index: any
    remote or in-memory filesystem, and a local path on a network filesystem (NFS, SMB...)."""
    if not is_local(fs):
        return True
    return on_network_fs(root)


def indexable(key: object) -> bool:
    """Whether the index could hold ``key`` at all."""
    return isinstance(key, str) and 0 < len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES


def _read_format(blobs: Any, url: str) -> dict[str, Any] | Missing:
    raw = blobs.read(layout.FORMAT_FILE)
    if isinstance(raw, Missing):
        return MISSING
    try:
        doc = codec.parse_json(raw, object_id=layout.FORMAT_FILE)
    except CorruptObject as exc:
        raise FormatError(f"{url}: {layout.FORMAT_FILE} is not valid JSON ({exc.reason})") from None
    return fmt.check(doc, url)


class Repository:
    """Use ``Repository.init`` / ``Repository.open``; the constructor is internal."""

    def __init__(
        self,
        url: str,
        fs: Any,
        root: str,
        doc: dict[str, Any],
        *,
        index_dir: str | os.PathLike[str] | None,
        policy: FlushPolicy,
        eval_files: bool | None = None,
        storage_options: dict | None = None,
        value_store_options: dict | None = None,
        auto_compact: bool = True,
        pack_cache_bytes: int | None = None,
    ):
        self.url = url
        self.fs = fs
        self.root = root
        self.format = doc
        self.settings = fmt.settings_of(doc, url)
        self.repo_id: str = doc["repo_id"]
        self.storage_options = storage_options
        self.value_store_options = value_store_options
        self.policy = policy
        self.durable = policy.durable
        self.blobs = open_blobs(fs, root, durable=policy.durable)
        self.store = ObjectStore(self.blobs)
        self.refs = refs_pkg.open_refs(fs, self.blobs.path(layout.REFS))
        self.index_dir = Path(index_dir if index_dir is not None else default_index_dir(url))
        self.index = Index(self.index_dir, model.TABLES, durable=policy.durable)
        self.writer_id = uuid.uuid4().hex[:16]
        # Heads live in the journal; a file per head (a PUT per cached call on a bucket) only
        # when asked for. Files an older objstore wrote are still read (EvalHeads.get, reindex).
        self.eval_files = bool(eval_files)
        self._closed = False
        lock = threading.Lock()  # one flush at a time, and never beside a refresh
        self._flush_lock = lock
        self._last_refresh = 0.0  # time.monotonic() of the last refresh, and what it cost
        self._refresh_cost = 0.0
        self.buffer = WriteBuffer()
        self.journal = Journal(
            self.blobs, self.index, self.writer_id, lock,
            skew=self.settings.journal_skew, full_every=self.settings.journal_full_listing,
        )  # fmt: skip
        self.evals = EvalHeads(self.blobs, self.index, self.buffer, files=self.eval_files,
                               read_files=shared_storage(fs, root))  # fmt: skip
        self.damage = DamageLedger(self.index, self.store)
        self.value_stores = ValueStores(self._value_store_options, durable=policy.durable)
        self.pack_cache = self._pack_cache(pack_cache_bytes)
        self.objects = ObjectReader(self.store, self.index, self.buffer, self.refresh, self.damage, self.value_stores,
                                    self.pack_cache, catch_up=self.catch_up)  # fmt: skip
        self.flusher = Flusher(
            buffer=self.buffer, store=self.store, evals=self.evals, journal=self.journal,
            index=self.index, packs=lambda: self.packs, policy=policy, lock=lock, damage=self.damage,
            value_store=self._value_store_target,
        )  # fmt: skip
        self.compactor = Compactor(self.blobs, self.index, self.writer_id)
        self._lock = lock
        self._compacting: threading.Thread | None = None
        self.auto_compact = auto_compact
        try:
            if self.index.meta_get("repo_id") != self.repo_id:
                # New, foreign or schema-reset index: rebuild it from the journal.
                self.index.clear()
                self._stamp_index()
                self.refresh()
        except BaseException:
            self.index.close()
            raise

    def _pack_cache(self, max_bytes: int | None) -> PackCache | None:
        """A remote repository's local cache of whole packs (a local or in-memory one reads its
        packs by range for next to nothing)."""
        if max_bytes == 0 or is_local(self.fs) or is_memory(self.fs):
            return None
        cache = PackCache(self.index_dir / "packs", lambda name: self.blobs.read(layout.pack_key(name)),
                          max_bytes=DEFAULT_PACK_CACHE_BYTES if max_bytes is None else max_bytes)  # fmt: skip
        self.store.pack_written = cache.add  # a writer keeps what it writes: its next run reads nothing
        return cache

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def init(cls, url: str, storage_options: dict | None = None, **kwargs: Any) -> Repository:
        """Create a repository at ``url``; RepositoryExists if objstore.json is already there.
        Keyword arguments as ``open``."""
        fsys, root = open_url(url, storage_options)
        blobs = open_blobs(fsys, root, durable=_policy(kwargs).durable)
        if not blobs.create(layout.FORMAT_FILE, codec.canonical_json(fmt.new_doc())):
            raise RepositoryExists(f"a repository already exists at {url}")
        kwargs.pop("create", None)
        return cls.open(url, storage_options, **kwargs)

    @classmethod
    def open(
        cls,
        url: str,
        storage_options: dict | None = None,
        *,
        index_dir: str | os.PathLike[str] | None = None,
        durable: bool = False,
        create: bool = False,
        eval_files: bool | None = None,
        policy: FlushPolicy | None = None,
        value_store_options: dict | None = None,
        migrate: bool | None = None,
        auto_compact: bool = True,
        pack_cache_bytes: int | None = None,
    ) -> Repository:
        """Open the repository at ``url`` (``create``: init it when absent, unless the location
        already holds repository data without its objstore.json).

        ``policy`` says when buffered records are flushed (``durable`` is its shorthand for an
        fsync per flush); ``eval_files`` (default off) also writes each eval head as a file
        under evals/ besides its journal entry (a request per head on a bucket); ``value_store_options`` are the
        fsspec options of the repository's value store (default: ``storage_options`` when it
        is the same kind of storage as the repository, else none). ``migrate``: upgrade the
        format to this objstore's now (default: only a repository on this machine's own disk);
        ``auto_compact``: compact the journal in the background past the compact_threshold;
        ``pack_cache_bytes``: the bound of the local cache of whole packs kept beside the index
        for a remote repository (default packcache.DEFAULT_MAX_BYTES; 0: none, ranged reads).
        """
        policy = _policy({"durable": durable, "policy": policy})
        fsys, root = open_url(url, storage_options)
        blobs = open_blobs(fsys, root)
        doc = _read_format(blobs, url)
        if isinstance(doc, Missing):
            bucket = missing_container(fsys, root)
            if bucket is not None:
                raise RepositoryNotFound(f"no objstore repository at {url}: bucket {bucket!r} does not exist")
            if blobs.list_names(layout.JOURNAL):
                # Never a silent new repo_id over someone's data (create or not): that is
                # `objstore init`'s call, made by a user who knows the data is theirs.
                raise RepositoryNotFound(
                    f"{url} holds repository data (journal/) but no {layout.FORMAT_FILE}: restore it, "
                    f"or adopt the data as a new repository with `objstore init {url}`"
                )
            if not create:
                raise RepositoryNotFound(f"no objstore repository at {url} ({layout.FORMAT_FILE} not found)")
            more: dict[str, Any] = {"index_dir": index_dir, "eval_files": eval_files, "policy": policy,
                                    "value_store_options": value_store_options, "auto_compact": auto_compact,
                                    "pack_cache_bytes": pack_cache_bytes}  # fmt: skip
            try:
                return cls.init(url, storage_options, **more)
            except RepositoryExists:  # lost a creation race: open the winner's
                return cls.open(url, storage_options, **more)
        repo = cls(
            url, fsys, root, doc, index_dir=index_dir, policy=policy, eval_files=eval_files,
            storage_options=storage_options, value_store_options=value_store_options, auto_compact=auto_compact,
            pack_cache_bytes=pack_cache_bytes,
        )  # fmt: skip
        if migrate is None:
            migrate = migrates_on_open(fsys, root)
        if fmt.version_of(doc) < fmt.FORMAT_VERSION and migrate:
            # A repository on this machine's own disk has no client of another objstore version
            # on another machine that could miss what this one writes: migrate it now. Shared
            # storage (buckets, network mounts) waits for `objstore db upgrade`, run once every
            # client has an objstore that reads the new version.
            try:
                repo.upgrade()
            except StorageError as exc:
                log.warning("%s: left at format %s (cannot migrate it: %s)", url, fmt.show(doc["version"]), exc)
            except BaseException:
                repo.index.close()
                raise
        return repo

    @property
    def packs(self) -> bool:
        """Whether flushes may write pack files (format >= 2.0, and the `pack` setting)."""
        return fmt.allows(self.format, fmt.PACKS) and self.settings.pack

    @property
    def checkpoints(self) -> bool:
        """Whether the journal may be compacted into checkpoints (format >= 3.0)."""
        return fmt.allows(self.format, fmt.CHECKPOINTS)

    def upgrade(self, target: fmt.Version | None = None, progress: Progress | None = None) -> bool:
        """Migrate to ``target`` (default: this objstore's format version), running each
        step's data migration; True if the version changed."""
        from objstore.repo.migrate import migrate

        before = fmt.version_of(self.format)
        target = target or fmt.FORMAT_VERSION
        if before >= target:
            return False
        migrate(self, target, progress=progress)
        return fmt.version_of(self.format) != before

    def write_format(self, doc: dict[str, Any]) -> None:
        """Replace objstore.json (a migration's last step, or a settings change)."""
        fmt.check(doc, self.url)
        self.blobs.replace(layout.FORMAT_FILE, codec.canonical_json(doc))
        log.info("%s: objstore.json now at format %s", self.url, fmt.show(doc["version"]))
        self.format = doc
        self.settings = fmt.settings_of(doc, self.url)

    def reload_format(self) -> dict[str, Any]:
        """Read objstore.json again (another client may have upgraded or changed settings)."""
        doc = _read_format(self.blobs, self.url)
        if isinstance(doc, Missing):
            raise RepositoryNotFound(f"no objstore repository at {self.url} ({layout.FORMAT_FILE} not found)")
        if doc.get("repo_id") != self.repo_id:
            raise FormatError(f"{self.url}: {layout.FORMAT_FILE} now names another repository")
        self.format = doc
        self.settings = fmt.settings_of(doc, self.url)
        return doc

    # -- the value store ----------------------------------------------------------------------

    def _value_store_options(self, url: str) -> dict | None:
        if self.value_store_options is not None:
            return self.value_store_options
        if scheme_of(url) == scheme_of(self.url):
            return self.storage_options  # same kind of storage: most likely the same account
        return None

    def _value_store_target(self) -> Any:
        url = self.settings.value_store_url
        if not url or not fmt.allows(self.format, fmt.VALUE_STORE):
            return None
        return url, self.value_stores.store(url), self.settings.value_store_min_size

    def _stamp_index(self) -> None:
        self.index.meta_put("repo_id", self.repo_id)
        self.index.meta_put("url", normalize_url(self.url))

    # -- writes (buffered) --------------------------------------------------------------------

    def _checked(self, entries: Iterable[IndexEntry]) -> list[IndexEntry]:
        # The one full check of an entry: it raises here, at the writer, and what is buffered
        # is an immutable tuple of str, so the flush hands it to the journal and the index
        # (apply(prechecked=True)) without checking it again.
        check = self.index.check_entry
        out: list[Any] = []
        for e in entries:
            check(e)
            out.append(e if type(e) is tuple else tuple(e))
        return out

    def add(self, object_id: str, kind: str, payload: bytes, entries: Iterable[IndexEntry] | None = None) -> None:
        """Buffer an object (written at the next flush) with the index entries it implies
        (by default derived from the payload)."""
        object_id = validate_id(object_id)
        payload = bytes(payload)
        if entries is None:
            entries = model.derive_entries(kind, object_id, payload)
        self.buffer.add(object_id, kind, payload, self._checked(entries))

    def note(self, entries: Iterable[IndexEntry]) -> None:
        """Buffer journal-only index entries (e.g. a job's start, before it is an object)."""
        self.buffer.note(self._checked(entries))

    def set_eval_head(self, eval_hash: str, value_hash: str) -> None:
        self.buffer.set_eval_head(validate_hash(eval_hash), validate_hash(value_hash))

    def pending(self) -> int:
        """How many buffered items (objects + notes + eval heads) the next flush writes."""
        return self.buffer.pending()

    def flush(self) -> None:
        self.flusher.flush()

    def maybe_flush(self) -> bool:
        return self.flusher.maybe_flush()

    # -- reads --------------------------------------------------------------------------------

    def get(self, object_id: str, *, expect_kind: str | None = None) -> Decoded:
        return self.objects.get(object_id, expect_kind=expect_kind)

    def get_many(self, ids: Iterable[str], *, expect_kind: str | None = None) -> list[Decoded | Missing]:
        return self.objects.get_many(ids, expect_kind=expect_kind)

    def has(self, object_id: str) -> bool:
        return self.objects.has(object_id)

    def has_damage(self) -> bool:
        """Whether the damage ledger names anything (a cheap check before trusting a memo)."""
        return bool(self.damage)

    def needs_rewrite(self, object_id: str) -> bool:
        """Whether a read found this indexed object missing or damaged and no writer has written
        it again yet (the damage ledger, shared by every process using this index)."""
        return object_id in self.damage

    def open_stream(self, object_id: str, *, expect_kind: str | None = None) -> tuple[str, int, Iterator[bytes]]:
        return self.objects.open_stream(object_id, expect_kind=expect_kind)

    def eval_head(self, eval_hash: str, *, by_path: bool = True) -> str | Missing:
        """The value hash last recorded for ``eval_hash``, or MISSING. ``by_path=False`` answers
        from this process's writes and the index only (no request per miss; see catch_up)."""
        return self.evals.get(validate_hash(eval_hash), by_path=by_path)

    def lookup(self, table: str, key: str) -> str | Missing:
        """An index value with this process's unflushed writes on top. A key the index cannot
        hold (empty, over-long: built from bad input) was never written: MISSING."""
        value = self.buffer.lookup(table, key)
        if value is not None:
            return value
        if not indexable(key):
            return MISSING
        return self.index.get(table, key)

    def lookup_many(self, table: str, keys: Iterable[str]) -> list[str | Missing]:
        """``lookup`` for many keys in one index read (input order kept)."""
        keys = list(keys)
        if self.buffer.idle():
            try:
                return self.index.get_many(table, keys)
            except (ValueError, TypeError):  # a key the index cannot hold: one by one below
                pass
        out: list[str | Missing] = [MISSING] * len(keys)
        todo = []
        for i, key in enumerate(keys):
            value = self.buffer.lookup(table, key)
            if value is not None:
                out[i] = value
            elif indexable(key):
                todo.append(i)
        if todo:
            for i, value in zip(todo, self.index.get_many(table, [keys[i] for i in todo])):
                out[i] = value
        return out

    def lookup_all(self, table: str, key: str) -> list[str]:
        """Every value of a multi-table key, unflushed writes included, sorted."""
        pending = self.buffer.lookup_all(table, key)
        stored = self.index.get_all(table, key) if indexable(key) else []
        return sorted(set(stored) | pending) if pending else stored

    def scan(self, table: str, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(key, value) pairs of the index whose keys start with ``prefix`` (flushed ones)."""
        return self.index.scan(table, prefix)

    # -- refs ---------------------------------------------------------------------------------

    def read_handle_state(self, fullname: str) -> tuple[str, bytes | Missing]:
        """(ref name, its bytes or MISSING) of a handle name's state."""
        name = layout.handle_ref(fullname)
        raw = self.refs.get(name)
        return name, raw if isinstance(raw, (bytes, bytearray)) else MISSING

    def swap_handle_state(self, fullname: str, old: bytes | Missing, new: bytes) -> bool:
        """Compare-and-swap a handle name's state; False if another writer changed it first."""
        return self.refs.set_if_equals(layout.handle_ref(fullname), refs_pkg.MISSING if isinstance(old, Missing) else old, new)

    # -- journal and reindex ------------------------------------------------------------------

    def refresh(self, progress: Progress | None = None, *, full: bool = False) -> int:
        """Ingest the journal segments this index has not seen yet; how many. Lists only the
        journal's tail since the newest segment this index has seen (less the journal_skew
        setting), and all of it on a fresh index, every journal_full_listing seconds, or when
        ``full``. (Also picks up
        damage other processes sharing the index found or repaired.) Objects listed by a segment
        or checkpoint of an older derivation get their entries derived again (model.DERIVATION). Past the repository's
        compact_threshold of segments no checkpoint covers, start compacting them in the
        background (format 3.0)."""
        started = time.monotonic()
        done = self.journal.refresh(progress, full=full)
        stale = self.journal.take_stale()
        if stale:
            rederive(self.objects, self.index, stale)
        self.damage.reload()
        self._last_refresh = now = time.monotonic()
        self._refresh_cost = now - started
        self._maybe_compact()
        return done

    def catch_up(self) -> int:
        """refresh() for a reader that just missed: another writer may have recorded what it
        looked for since this index last read the journal, so a miss must not stay a miss for
        the life of a process. Rate-limited, so a first run (all misses) pays little: at most
        once per CATCH_UP_INTERVAL, and never more than a tenth of the time (a LIST of journal/
        grows with the repository); never waits for a flush in progress."""
        now = time.monotonic()
        if now - self._last_refresh < max(CATCH_UP_INTERVAL, 10 * self._refresh_cost):
            return 0
        if self._flush_lock.locked():
            return 0  # this writer is flushing: try again at a later miss
        return self.refresh()

    def write_segment(self, listing: journal_mod.Listing, entries: list[IndexEntry], *, trusted: bool = False) -> str:
        """Journal ``entries`` (checked, unless ``trusted``: built here from checked ids) at once,
        as a flush would, and apply them here: how maintenance tells every client that objects
        moved, or what a repair found."""
        checked = list(entries) if trusted else self._checked(entries)
        with self._lock:
            name = self.journal.write(listing, checked)
            self.index.apply(journal_mod.index_entries(self.index, listing, checked), segment=name, prechecked=True)
        return name

    # -- compaction ---------------------------------------------------------------------------

    def compact(self, *, merge: bool = True, progress: Progress | None = None) -> str | None:
        """Fold the journal into a new checkpoint (FormatError before format 3.0); its name, or
        None when there was nothing to fold. What it covers is retired later (``retire_journal``)."""
        if not self.checkpoints:
            raise FormatError(
                f"{self.url}: journal compaction needs format {fmt.show(fmt.CHECKPOINTS)} (this repository "
                f"is {fmt.show(self.format['version'])}): run `objstore db upgrade` once every client reads it"
            )
        return self.compactor.compact(merge=merge, progress=progress)

    def _maybe_compact(self) -> None:
        threshold = self.settings.compact_threshold
        if not (self.auto_compact and threshold and self.checkpoints) or self._closed:
            return
        if self._compacting is not None and self._compacting.is_alive():
            return
        if uncovered_count(self.index, self.journal.listed) < threshold:
            return
        self._compacting = threading.Thread(target=self._compact_in_background, name="objstore-compact", daemon=True)
        self._compacting.start()

    def _compact_in_background(self) -> None:
        try:
            found = self.compactor.compact(merge=False)
            if found:
                from objstore.repo.compaction import survey

                self.compactor.retire(self.compactor.retirable(survey(self.blobs), grace=DEFAULT_GRACE))
        except Exception as exc:  # a compaction is an optimisation: never the caller's failure
            log.warning("%s: background journal compaction failed: %s", self.url, exc)

    def applied_segments(self) -> set[str]:
        """The journal segments this index has ingested (or written)."""
        return self.index.segments()

    def read_segments(self, names: Iterable[str]) -> Iterator[journal_mod.Segment]:
        """The named journal files as stored (what each lists, its entries), in the order given;
        a checkpoint as one segment of its rows, a segment gone since (retired: the checkpoint
        covering it has its records) left out. For derived views kept beside the
        index (redun's SQL replica) that catch up with the segments they have not seen."""
        return self.journal.read(names)

    def read_segment_listings(self, names: Iterable[str]) -> Iterator[tuple[str, list[list[str]]]]:
        """(name, [[object id, kind], ...]) of the named segments, in the order given, without
        their index entries (read_segments, much cheaper: a first build of a derived view)."""
        return self.journal.read_listings(names)

    def reindex(self, *, full_scan: bool = False, progress: Progress | None = None) -> dict[str, Any]:
        """Clear the index and rebuild it from journal/ (and, with full_scan, objects/ + evals/)."""
        return Reindexer(self.store, self.index, self.evals, self.refresh).run(
            full_scan=full_scan, stamp=self._stamp_index, progress=progress
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop background flushing, flush what is buffered, then release the index."""
        if self._closed:
            return
        try:
            self.flusher.stop()
            self.flush()
        finally:
            self._closed = True
            self._join_compaction()
            self.index.close()

    def _join_compaction(self) -> None:
        worker = self._compacting
        if worker is not None:
            worker.join()
            self._compacting = None

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # do not write a half-done batch from a failing block; just let go of the index
            self.flusher.stop()
            self._closed = True
            self._join_compaction()
            self.index.close()

    def __repr__(self) -> str:
        return f"Repository({self.url!r})"


def migrates_on_open(fs: Any, root: str) -> bool:
    """Whether opening migrates a repository to this objstore's format: on this machine's own
    disk (or in this process's memory), where no client on another machine can be writing it."""
    if is_memory(fs):
        return True
    return is_local(fs) and not shared_storage(fs, root)


def _policy(kwargs: dict[str, Any]) -> FlushPolicy:
    policy = kwargs.get("policy")
    if policy is None:
        return FlushPolicy(durable=bool(kwargs.get("durable", False)))
    if kwargs.get("durable") and not policy.durable:
        raise ValueError("durable=True contradicts the given FlushPolicy(durable=False)")
    return policy


__all__ = ["Repository", "shared_storage", "migrates_on_open", "DEFAULT_GRACE"]
