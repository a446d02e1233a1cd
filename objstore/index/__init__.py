"""The local LMDB index: derived tables that answer cache and graph queries in microseconds.

Everything in it can be rebuilt from the repository (journal/ segments, or a full scan of
objects/ and evals/), so it is a cache: OS-buffered by default, cleared when its schema or the
repository it belongs to changes, and never placed on a network filesystem (LMDB's locking and
mmap need a local disk).

Tables are named LMDB sub-databases; a *multi* table is dupsort (one key, many sorted values).
Two internal tables sit beside them: ``_meta`` (str -> str) and ``_segments`` (journal segment
names already applied). All str keys and values are stored utf-8 encoded.

Concurrency: several processes on one machine may open the same index (LMDB's lock file);
inside one process every Index on the same directory shares one LMDB environment, because
LMDB forbids opening an environment twice in a process (closing either copy would drop the
other's locks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from objstore.index.entries import MAX_KEY_BYTES, OPS, BulkPlan, Checked, Pairs, check_entry, encode_key
from objstore.index.env import META, SEGMENTS, Environment
from objstore.index.marks import Marks
from objstore.index.mounts import check_local_path, filesystem_type, is_network_fs, on_network_fs
from objstore.index.reads import Tables
from objstore.index.writes import Writes
from objstore.missing import MISSING
from objstore.model.schema import IndexEntry

DEFAULT_MAP_SIZE = 64 << 20  # grows on demand; a small start keeps sparse files small


class Index(Tables):
    """Derived tables in LMDB. ``tables``: name -> multi (dupsort).

    Its parts: the reads it is (objstore.index.reads.Tables: get, get_many, get_all, has, scan,
    items, count), its writes (objstore.index.writes) and what it knows of the journal and
    itself (objstore.index.marks); this class opens and closes the environment they share."""

    def __init__(
        self,
        path: str | os.PathLike,
        tables: Mapping[str, bool],
        *,
        durable: bool = False,
        map_size: int = DEFAULT_MAP_SIZE,
    ):
        tables = {str(k): bool(v) for k, v in tables.items()}
        for name in tables:
            if not name or name.startswith("_"):
                raise ValueError(f"index table names must not be empty or start with '_': {name!r}")
        path = os.path.abspath(os.fspath(path))
        os.makedirs(path, exist_ok=True)
        check_local_path(path)
        shared = Environment.acquire(os.path.realpath(path), tables, durable=durable, map_size=map_size)
        super().__init__(path, tables, shared)
        self.durable = durable
        self.writes = Writes(self)
        self.marks = Marks(self, self.writes)
        # Validate one IndexEntry; returns (op, db, multi, key bytes, value bytes). A partial, not
        # a method forwarding to Writes: every buffered entry is checked, several per job.
        self.check_entry: Callable[[Any], Checked] = partial(check_entry, tables=self.tables, dbs=self._dbs)

    # -- writes ----------------------------------------------------------------------------

    def apply(
        self, entries: Iterable[IndexEntry], *, segment: str | None = None, prechecked: bool = False
    ) -> None:
        """Apply entries in order, in ONE write txn, optionally marking ``segment`` as seen.

        Ops: ``put`` sets the key to exactly this value (a multi table drops its other
        values); ``add`` adds a value to a multi table, or sets a single-table key only if it
        is absent; ``del`` removes that value (an empty value: the whole key); ``delall``
        removes the key with every value. Everything is validated before the txn starts,
        so a bad entry leaves the index untouched.

        ``prechecked``: every entry already passed ``check_entry`` and is a tuple of four str
        (immutable, so still valid); only the encoding is redone. The repository checks an
        entry once, when it is buffered, and would otherwise pay for it twice per flush.
        """
        self.writes.apply(entries, segment=segment, prechecked=prechecked)

    def ingest(self, segments: Sequence[tuple[str, Sequence[IndexEntry]]]) -> None:
        """Apply many journal segments' entries (name, prechecked entries; in journal order)
        in ONE write txn, marking each name seen: the index ends as ``apply`` of each in turn
        would leave it, but the entries go in grouped by table and sorted by key
        (objstore.index.entries), so a refresh of many segments costs what a bulk load does."""
        self.writes.ingest(segments)

    def bulk_plan(self) -> BulkPlan:
        """An empty plan for ``ingest_plan``: entries added to it are encoded at once, so a
        refresh holds a batch's bytes, not its parsed entries too."""
        return self.writes.plan()

    def ingest_plan(self, plan: BulkPlan, names: Sequence[str]) -> None:
        """``ingest`` of the entries gathered in ``plan`` (in journal order), marking ``names``."""
        self.writes.ingest_plan(plan, names)

    def load(
        self,
        groups: Iterable[tuple[str, str, list[tuple[bytes, bytes]] | Pairs]],
        *,
        entries: Iterable[IndexEntry] = (),
        marks: Mapping[str, str] | None = None,
    ) -> None:
        """Bulk-load rows in ONE write txn (a journal checkpoint): first ``entries`` (checked, as
        ``apply``), then each (op, table, [(key, value)] or Pairs) group, op "put" (set) or "add" (a
        multi table's value; a single table's key only if absent), then ``marks``: journal
        names seen -> what covered them ("" when ingested themselves).

        Keys and values are utf-8 bytes as the repository gave them: a size LMDB refuses raises
        ValueError and leaves the index untouched, and the caller checks rows one by one."""
        self.writes.load(groups, entries=entries, marks=marks)

    # -- segments and meta (objstore.index.marks) ------------------------------------------

    def has_segment(self, name: str) -> bool:
        return self.marks.has_segment(name)

    def segment_marks(self, names: Iterable[str]) -> list:
        """For each journal name: "" if ingested itself, the covering checkpoint's name if a
        checkpoint covered it, MISSING if never seen."""
        return self.marks.segment_marks(names)

    def mark_segments(self, marks: Mapping[str, str]) -> None:
        self.marks.mark_segments(marks)

    def segments(self) -> set[str]:
        return self.marks.segments()

    def segment_count(self) -> int:
        """How many segments the index has applied (O(1): a cheap "has anything changed?")."""
        return self.marks.segment_count()

    def meta_get(self, key: str):
        return self.marks.meta_get(key)

    def meta_put(self, key: str, value: str) -> None:
        self.marks.meta_put(key, value)

    # -- the environment as a whole --------------------------------------------------------

    def clear(self) -> None:
        """Empty every table, the segment list and the meta (the schema record is kept)."""
        schema = Environment.schema_bytes(self.tables)
        dbs = self._dbs

        def body(txn: Any) -> None:
            for db in dbs.values():
                txn.drop(db, delete=False)
            txn.put(b"schema", schema, db=dbs[META])

        self._write(body)

    @property
    def was_reset(self) -> bool:
        """True if opening found another schema and dropped the old tables."""
        return self._shared is not None and self._shared.was_reset

    def sync(self) -> None:
        self._check_open()
        self._env.sync(True)

    def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is None:
            return
        self._dbs = {}
        shared.release()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Index({self.path!r})"


__all__ = [
    "Index", "IndexEntry", "MISSING", "OPS", "MAX_KEY_BYTES", "Pairs", "check_local_path",
    "filesystem_type", "is_network_fs", "on_network_fs", "encode_key", "SEGMENTS",
]
