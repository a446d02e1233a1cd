"""A repository: one URL -> its format file, stores, refs, index, write buffer and journal.

``Repository`` composes the parts below and keeps none of their logic:

    opening               opening and creating (the format file, migration on open)
    buffer.WriteBuffer    what this process wrote and has not flushed; read first
    lookups.Lookups       index reads with that buffer on top
    objects.ObjectReader  where an object is (buffer, pack, loose) and bulk reads of many
    flush.Flusher         when to flush, and the write order (objects, eval heads, journal, index)
    journal.Journal       segments: writing, listing, catching up (refresh)
    compaction.Compactor  checkpoints folding many segments; retiring what they cover
    compaction.AutoCompaction  the same started by itself past compact_threshold
    refreshing.Refresher  when to read what other writers added (refresh, catch-up after a miss)
    packcache.PackCache   whole packs of a remote repository kept beside the index
    valuestore.ValueStores  the second URL big values go to (format 2.1 settings)
    evals.EvalHeads       eval-cache heads (in the journal; old evals/ files still read)
    reindex.Reindexer     rebuilding the index from the journal or a full scan
    migrate               format upgrades and downgrades (objstore db)
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Unpack

import refs as refs_pkg
from objstore import format as fmt
from objstore import layout, model
from objstore.errors import FormatError
from objstore.ids import validate_hash, validate_id
from objstore.index import Index
from objstore.missing import MISSING, Missing
from objstore.model.schema import IndexEntry
from objstore.repo import journal as journal_mod
from objstore.repo import opening, packcache, valuestore
from objstore.repo.buffer import WriteBuffer, checked_entries
from objstore.repo.compaction import AutoCompaction, Compactor
from objstore.repo.evals import EvalHeads
from objstore.repo.flush import Flusher, FlushPolicy
from objstore.repo.index_dir import default_index_dir, normalize_url
from objstore.repo.journal import Journal, Progress
from objstore.repo.lookups import Lookups
from objstore.repo.objects import ObjectReader
from objstore.repo.opening import OpenOptions, migrates_on_open, shared_storage
from objstore.repo.refreshing import CATCH_UP_INTERVAL, Refresher
from objstore.repo.reindex import Reindexer
from objstore.repo.repair import DamageLedger
from objstore.repo.valuestore import ValueStores
from objstore.store import open_blobs
from objstore.store.objects import Decoded, ObjectStore

log = logging.getLogger("objstore.repo")

# How long maintenance leaves what a live client may still use: temp files being written,
# packs and journal files that something newer replaced. `objstore gc --grace` changes it.
DEFAULT_GRACE = 3600.0


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
        self.buffer = WriteBuffer()
        self.lookups = Lookups(self.buffer, self.index)
        self.journal = Journal(
            self.blobs, self.index, self.writer_id, lock,
            skew=self.settings.journal_skew, full_every=self.settings.journal_full_listing,
        )  # fmt: skip
        self.evals = EvalHeads(self.blobs, self.index, self.buffer, files=self.eval_files,
                               read_files=shared_storage(fs, root))  # fmt: skip
        self.damage = DamageLedger(self.index, self.store)
        self.value_stores = ValueStores(
            valuestore.options_for(url, storage_options, value_store_options), durable=policy.durable
        )
        self.pack_cache = packcache.for_repository(fs, self.index_dir, self.blobs, self.store, pack_cache_bytes)
        self.objects = ObjectReader(self.store, self.index, self.buffer, self.refresh, self.damage, self.value_stores,
                                    self.pack_cache, catch_up=self.catch_up)  # fmt: skip
        self.flusher = Flusher(
            buffer=self.buffer, store=self.store, evals=self.evals, journal=self.journal,
            index=self.index, packs=lambda: self.packs, policy=policy, lock=lock, damage=self.damage,
            value_store=self._value_store_target,
        )  # fmt: skip
        self.compactor = Compactor(self.blobs, self.index, self.writer_id)
        self.auto_compaction = AutoCompaction(self.compactor, self.blobs, url, grace=DEFAULT_GRACE)
        self.refresher = Refresher(
            self.journal, self.index, self.damage, self.auto_compaction, lock, objects=lambda: self.objects,
            compaction_enabled=lambda: self.auto_compact and self.checkpoints and not self._closed,
            compact_threshold=lambda: self.settings.compact_threshold,
        )  # fmt: skip
        self._lock = lock
        self.auto_compact = auto_compact

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def init(cls, url: str, storage_options: dict | None = None, **kwargs: Any) -> Repository:
        """Create a repository at ``url``; RepositoryExists if objstore.json is already there.
        Keyword arguments as ``open``."""
        return opening.init_repository(cls, url, storage_options, **kwargs)

    @classmethod
    def open(cls, url: str, storage_options: dict | None = None, **options: Unpack[OpenOptions]) -> Repository:
        """Open the repository at ``url`` (the options: objstore.repo.opening.OpenOptions)."""
        return opening.open_repository(cls, url, storage_options, **options)

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
        from objstore.repo.migrate import upgrade

        return upgrade(self, target or fmt.FORMAT_VERSION, progress=progress)

    def write_format(self, doc: dict[str, Any]) -> None:
        """Replace objstore.json (a migration's last step, or a settings change)."""
        opening.write_format(self.blobs, self.url, doc)
        self.format, self.settings = doc, fmt.settings_of(doc, self.url)

    def reload_format(self) -> dict[str, Any]:
        """Read objstore.json again (another client may have upgraded or changed settings)."""
        doc = opening.reread_format(self.blobs, self.url, self.repo_id)
        self.format, self.settings = doc, fmt.settings_of(doc, self.url)
        return doc

    # -- the value store ----------------------------------------------------------------------

    def _value_store_target(self) -> Any:
        url = self.settings.value_store_url
        if not url or not fmt.allows(self.format, fmt.VALUE_STORE):
            return None
        return url, self.value_stores.store(url), self.settings.value_store_min_size

    def adopt_index(self) -> None:
        """Rebuild a new, foreign or schema-reset index from the journal (on open)."""
        if self.index.meta_get("repo_id") != self.repo_id:
            self.index.clear()
            self._stamp_index()
            self.refresh()

    def _stamp_index(self) -> None:
        self.index.meta_put("repo_id", self.repo_id)
        self.index.meta_put("url", normalize_url(self.url))

    # -- writes (buffered) --------------------------------------------------------------------

    def _checked(self, entries: Iterable[IndexEntry]) -> list[IndexEntry]:
        return checked_entries(self.index.check_entry, entries)

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
        """An index value with this process's unflushed writes on top (lookups.Lookups)."""
        return self.lookups.lookup(table, key)

    def lookup_many(self, table: str, keys: Iterable[str]) -> list[str | Missing]:
        return self.lookups.lookup_many(table, keys)

    def lookup_all(self, table: str, key: str) -> list[str]:
        return self.lookups.lookup_all(table, key)

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
        ``full``. Also picks up damage other processes sharing the index found or repaired;
        derives again the entries of objects listed by an older derivation (model.DERIVATION);
        past compact_threshold uncovered segments, compacts in the background (format 3.0)."""
        return self.refresher.refresh(progress, full=full)

    def catch_up(self) -> int:
        """refresh() for a reader that just missed (another writer may have recorded what it
        looked for since), rate-limited: see Refresher.catch_up_due."""
        return self.refresher.catch_up()

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
            self._release()

    def _release(self) -> None:
        self._closed = True
        self.auto_compaction.join()
        self.index.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # do not write a half-done batch from a failing block; just let go of the index
            self.flusher.stop()
            self._release()

    def __repr__(self) -> str:
        return f"Repository({self.url!r})"


__all__ = ["Repository", "shared_storage", "migrates_on_open", "DEFAULT_GRACE", "CATCH_UP_INTERVAL"]
