"""A repository: one URL -> its format file, stores, refs, index, write buffer and journal.

``Repository`` composes the parts below and keeps none of their logic:

    buffer.WriteBuffer    what this process wrote and has not flushed; read first
    objects.ObjectReader  where an object is (buffer, pack, loose) and bulk reads of many
    flush.Flusher         when to flush, and the write order (objects, eval heads, journal, index)
    journal.Journal       segments: writing, listing, catching up (refresh)
    evals.EvalHeads       eval-cache heads (files on shared storage)
    reindex.Reindexer     rebuilding the index from the journal or a full scan
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import refs as refs_pkg
from objstore import codec, layout, model
from objstore import format as fmt
from objstore.errors import CorruptObject, FormatError, RepositoryExists, RepositoryNotFound
from objstore.fs import is_local, is_memory, open_url
from objstore.ids import validate_hash, validate_id
from objstore.index import MAX_KEY_BYTES, Index, on_network_fs
from objstore.missing import MISSING, Missing
from objstore.model.schema import IndexEntry
from objstore.repo import journal as journal_mod
from objstore.repo.buffer import WriteBuffer
from objstore.repo.evals import EvalHeads
from objstore.repo.flush import Flusher, FlushPolicy
from objstore.repo.index_dir import default_index_dir, normalize_url
from objstore.repo.journal import Journal, Progress
from objstore.repo.objects import ObjectReader
from objstore.repo.reindex import Reindexer, rederive
from objstore.store import open_blobs
from objstore.store.objects import Decoded, ObjectStore

log = logging.getLogger("objstore.repo")


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
    ):
        self.url = url
        self.fs = fs
        self.root = root
        self.format = doc
        self.repo_id: str = doc["repo_id"]
        self.policy = policy
        self.durable = policy.durable
        self.blobs = open_blobs(fs, root, durable=policy.durable)
        self.store = ObjectStore(self.blobs)
        self.refs = refs_pkg.open_refs(fs, self.blobs.path(layout.REFS))
        self.index_dir = Path(index_dir if index_dir is not None else default_index_dir(url))
        self.index = Index(self.index_dir, model.TABLES, durable=policy.durable)
        self.writer_id = uuid.uuid4().hex[:16]
        self.eval_files = shared_storage(fs, root) if eval_files is None else eval_files
        self._closed = False
        lock = threading.Lock()  # one flush at a time, and never beside a refresh
        self.buffer = WriteBuffer()
        self.journal = Journal(self.blobs, self.index, self.writer_id, lock)
        self.evals = EvalHeads(self.blobs, self.index, self.buffer, files=self.eval_files)
        self.objects = ObjectReader(self.store, self.index, self.buffer, self.refresh)
        self.flusher = Flusher(
            buffer=self.buffer, store=self.store, evals=self.evals, journal=self.journal,
            index=self.index, packs=lambda: self.packs, policy=policy, lock=lock,
        )  # fmt: skip
        try:
            if self.index.meta_get("repo_id") != self.repo_id:
                # New, foreign or schema-reset index: rebuild it from the journal.
                self.index.clear()
                self._stamp_index()
                self.refresh()
        except BaseException:
            self.index.close()
            raise

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
    ) -> Repository:
        """Open the repository at ``url`` (``create``: init it when absent).

        ``policy`` says when buffered records are flushed (``durable`` is its shorthand for an
        fsync per flush); ``eval_files`` (default: only on shared storage) writes each eval
        head as a file under evals/ besides its journal entry.
        """
        policy = _policy({"durable": durable, "policy": policy})
        fsys, root = open_url(url, storage_options)
        doc = _read_format(open_blobs(fsys, root), url)
        if isinstance(doc, Missing):
            if not create:
                raise RepositoryNotFound(f"no objstore repository at {url} ({layout.FORMAT_FILE} not found)")
            try:
                return cls.init(url, storage_options, index_dir=index_dir, eval_files=eval_files, policy=policy)
            except RepositoryExists:  # lost a creation race: open the winner's
                return cls.open(url, storage_options, index_dir=index_dir, eval_files=eval_files, policy=policy)
        repo = cls(url, fsys, root, doc, index_dir=index_dir, policy=policy, eval_files=eval_files)
        if fmt.version_of(doc)[0] < fmt.FORMAT_VERSION[0] and (is_local(fsys) or is_memory(fsys)):
            # A local repository has no other objstore version writing to it that could miss
            # the packs this one writes: upgrade it now. A shared bucket waits for `objstore
            # upgrade`, run once every worker has an objstore that reads packs.
            try:
                repo.upgrade()
            except BaseException:
                repo.index.close()
                raise
        return repo

    @property
    def packs(self) -> bool:
        """Whether flushes may write pack files (format major >= 2)."""
        return fmt.writes_packs(self.format)

    def upgrade(self) -> bool:
        """Rewrite objstore.json at this objstore's format version; True if it changed."""
        new = fmt.upgraded(self.format)
        if new is None:
            return False
        self.blobs.replace(layout.FORMAT_FILE, codec.canonical_json(new))
        log.info("%s: upgraded repository format %s -> %s", self.url, self.format["version"], new["version"])
        self.format = new
        return True

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

    def open_stream(self, object_id: str, *, expect_kind: str | None = None) -> tuple[str, int, Iterator[bytes]]:
        return self.objects.open_stream(object_id, expect_kind=expect_kind)

    def eval_head(self, eval_hash: str) -> str | Missing:
        """The value hash last recorded for ``eval_hash``, or MISSING."""
        return self.evals.get(validate_hash(eval_hash))

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

    def refresh(self, progress: Progress | None = None) -> int:
        """Ingest the journal segments this index has not seen yet; how many. Objects listed by
        a segment of an older derivation get their entries derived again (model.DERIVATION)."""
        done = self.journal.refresh(progress)
        stale = self.journal.take_stale()
        if stale:
            rederive(self.objects, self.index, stale)
        return done

    def applied_segments(self) -> set[str]:
        """The journal segments this index has ingested (or written)."""
        return self.index.segments()

    def read_segments(self, names: Iterable[str]) -> Iterator[journal_mod.Segment]:
        """The named journal segments as stored (what each lists, its entries), in the order
        given; a segment gone since (compacted) is left out. For derived views kept beside the
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
            self.index.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # do not write a half-done batch from a failing block; just let go of the index
            self.flusher.stop()
            self._closed = True
            self.index.close()

    def __repr__(self) -> str:
        return f"Repository({self.url!r})"


def _policy(kwargs: dict[str, Any]) -> FlushPolicy:
    policy = kwargs.get("policy")
    if policy is None:
        return FlushPolicy(durable=bool(kwargs.get("durable", False)))
    if kwargs.get("durable") and not policy.durable:
        raise ValueError("durable=True contradicts the given FlushPolicy(durable=False)")
    return policy


__all__ = ["Repository", "shared_storage"]
