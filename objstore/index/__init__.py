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

import itertools
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import lmdb

from objstore.errors import IndexUnavailable, ValueTooLarge
from objstore.index.env import META, SEGMENTS, Environment
from objstore.index.mounts import check_local_path, filesystem_type, is_network_fs, on_network_fs
from objstore.missing import MISSING
from objstore.model.schema import IndexEntry

OPS = frozenset({"put", "add", "del", "delall"})
MAX_KEY_BYTES = 511  # LMDB's compile-time MDB_MAXKEYSIZE; dupsort values are keys too
DEFAULT_MAP_SIZE = 64 << 20  # grows on demand; a small start keeps sparse files small
_SCAN_CHUNK = 1024

def encode_key(text: str, what: str = "key") -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"index {what} must be str, not {type(text).__name__}")
    raw = text.encode("utf-8")
    if not raw:
        raise ValueError(f"index {what} must not be empty")
    if len(raw) > MAX_KEY_BYTES:
        raise ValueTooLarge(
            f"index {what} is {len(raw)} bytes utf-8, over LMDB's {MAX_KEY_BYTES}-byte limit: "
            f"{text[:60]!r}..."
        )
    return raw


def _apply_checked(txn: Any, items: Iterable[tuple[str, Any, bool, bytes, bytes]]) -> None:
    # A run of puts into one single-valued table (a repack moving a million locations) is one
    # putmulti, a C loop; the same writes, in the same order, as a put each.
    for (op, db, multi), run in itertools.groupby(items, _RUN_KEY):
        if op == "put" and not multi:
            txn.cursor(db=db).putmulti(map(_KEY_VALUE, run), dupdata=False, overwrite=True)
        else:
            _apply_each(txn, run)


_RUN_KEY = operator.itemgetter(0, 1, 2)
_KEY_VALUE = operator.itemgetter(3, 4)


def _apply_each(txn: Any, items: Iterable[tuple[str, Any, bool, bytes, bytes]]) -> None:
    for op, db, multi, k, v in items:
        if op == "put":
            if multi:
                txn.delete(k, db=db)
            txn.put(k, v, db=db)
        elif op == "add":
            txn.put(k, v, db=db, overwrite=multi)
        elif op == "del":
            if not v:
                txn.delete(k, db=db)
            elif multi:
                txn.delete(k, v, db=db)
            elif txn.get(k, db=db) == v:
                txn.delete(k, db=db)
        else:  # delall
            txn.delete(k, db=db)


class Index:
    """Derived tables in LMDB. ``tables``: name -> multi (dupsort)."""

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
        self.path = path
        self.tables = tables
        shared = Environment.acquire(os.path.realpath(path), tables, durable=durable, map_size=map_size)
        self._shared: Environment | None = shared
        self._env = shared.env
        self._lock = shared.lock
        self._dbs = shared.dbs
        self.durable = durable

    # -- write machinery -------------------------------------------------------------------

    def _write(self, body: Callable[[Any], Any]) -> Any:
        self._check_open()
        assert self._shared is not None
        return self._shared.write(body)

    def _begin_read(self) -> Any:
        assert self._shared is not None
        return self._shared.begin_read()

    def _check_open(self) -> None:
        if self._shared is None:
            raise IndexUnavailable(f"the index at {self.path} is closed")

    def _db(self, table: str):
        try:
            return self._dbs[table]
        except (KeyError, TypeError):
            self._check_open()
            raise KeyError(f"unknown index table {table!r}") from None

    # -- reads -----------------------------------------------------------------------------

    def get(self, table: str, key: str):
        """The value (the smallest one in a multi table), or MISSING.

        The hot path, kept flat on purpose: a fresh read txn per call costs ~1.5 µs in
        py-lmdb and always sees other processes' latest commits; a cached txn measured no
        faster (py-lmdb 3 has no reset/renew, and checking its age needs the same lock).
        """
        try:
            db = self._dbs[table]
            k = key.encode("utf-8")
        except (KeyError, TypeError, AttributeError):
            db, k = self._db(table), encode_key(key)
        if not 0 < len(k) <= MAX_KEY_BYTES:
            encode_key(key)  # raises the clear error
        with self._lock:
            try:
                txn: Any = self._env.begin()
            except lmdb.MapResizedError:
                txn = self._begin_read()
            v = txn.get(k, db=db)
            txn.abort()
        return MISSING if v is None else v.decode("utf-8")

    def get_many(self, table: str, keys: Iterable[str]) -> list:
        """get() for many keys in one read txn; input order kept, MISSING for absent keys."""
        db = self._db(table)
        ks = [encode_key(k) for k in keys]
        with self._lock:
            txn = self._begin_read()
            try:
                g = txn.get
                raw = [g(k, db=db) for k in ks]
            finally:
                txn.abort()
        return [MISSING if v is None else v.decode("utf-8") for v in raw]

    def get_all(self, table: str, key: str) -> list[str]:
        """Every value of ``key`` (sorted, as LMDB keeps dupsort values)."""
        db = self._db(table)
        k = encode_key(key)
        with self._lock:
            txn = self._begin_read()
            try:
                cur = txn.cursor(db=db)
                if not cur.set_key(k):
                    return []
                if self.tables.get(table):
                    vals = list(cur.iternext_dup(keys=False, values=True))
                else:
                    vals = [cur.value()]
            finally:
                txn.abort()
        return [v.decode("utf-8") for v in vals]

    def get_all_many(self, table: str, keys: Iterable[str]) -> list[list[str]]:
        """get_all() for many keys in one read txn and one cursor; input order kept."""
        db = self._db(table)
        ks = [encode_key(k) for k in keys]
        multi = self.tables.get(table)
        raw: list[list[bytes]] = []
        with self._lock:
            txn = self._begin_read()
            try:
                cur = txn.cursor(db=db)
                for k in ks:
                    if not cur.set_key(k):
                        raw.append([])
                    elif multi:
                        raw.append(list(cur.iternext_dup(keys=False, values=True)))
                    else:
                        raw.append([cur.value()])
            finally:
                txn.abort()
        return [[v.decode("utf-8") for v in vals] for vals in raw]

    def has(self, table: str, key: str) -> bool:
        return self.get(table, key) is not MISSING

    def scan(self, table: str, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(key, value) pairs with keys starting with ``prefix``, in key (then value) order.

        Read in chunks, each in its own short read txn, so a long scan never pins an old
        snapshot (LMDB could not reuse pages) nor blocks a map resize; a scan concurrent with
        writes sees each chunk as of when it was read.
        """
        db = self._db(table)
        multi = bool(self.tables.get(table))
        pfx = prefix.encode("utf-8")
        last: tuple[bytes, bytes] | None = None
        while True:
            chunk: list[tuple[bytes, bytes]] = []
            with self._lock:
                txn = self._begin_read()
                try:
                    cur = txn.cursor(db=db)
                    if last is None:
                        ok = cur.set_range(pfx) if pfx else cur.first()
                    elif multi:
                        ok = cur.set_range_dup(*last)
                        if ok and (cur.key(), cur.value()) == last:
                            ok = cur.next()
                        elif not ok:
                            ok = cur.set_range(last[0] + b"\x00")
                    else:
                        ok = cur.set_range(last[0])
                        if ok and cur.key() == last[0]:
                            ok = cur.next()
                    while ok and len(chunk) < _SCAN_CHUNK:
                        k = cur.key()
                        if not k.startswith(pfx):
                            ok = False
                            break
                        chunk.append((k, cur.value()))
                        ok = cur.next()
                finally:
                    txn.abort()
            for k, v in chunk:
                yield k.decode("utf-8"), v.decode("utf-8")
            if not ok or not chunk:
                return
            last = chunk[-1]

    def items(self, table: str, *, start: str | None = None, stop: str | None = None) -> list[tuple[str, str]]:
        """Every (key, value) of a table with start <= key < stop, in order, read in one
        transaction: for maintenance passes over a whole table, or a range of it."""
        db = self._db(table)
        lo = start.encode("utf-8") if start else None
        hi = stop.encode("utf-8") if stop else None
        with self._lock:
            txn = self._begin_read()
            try:
                cur = txn.cursor(db=db)
                if lo is not None and not cur.set_range(lo):
                    raw: list[tuple[bytes, bytes]] = []
                elif hi is None:
                    raw = list(cur.iternext(keys=True, values=True))
                else:
                    raw = []
                    for k, v in cur.iternext(keys=True, values=True):
                        if k >= hi:
                            break
                        raw.append((k, v))
            finally:
                txn.abort()
        return [(k.decode("utf-8"), v.decode("utf-8")) for k, v in raw]

    def count(self, table: str) -> int:
        db = self._db(table)
        with self._lock:
            txn = self._begin_read()
            try:
                return txn.stat(db)["entries"]
            finally:
                txn.abort()

    # -- writes ----------------------------------------------------------------------------

    def check_entry(self, entry) -> tuple[str, object, bool, bytes, bytes]:
        """Validate one IndexEntry; returns (op, db, multi, key bytes, value bytes)."""
        try:
            op, table, key, value = entry
        except (TypeError, ValueError):
            raise ValueError(f"an index entry is (op, table, key, value), not {entry!r}") from None
        if op not in OPS:
            raise ValueError(f"unknown index op {op!r} (expected one of {sorted(OPS)})")
        multi = self.tables.get(table)
        if multi is None:
            raise KeyError(f"unknown index table {table!r}")
        if not isinstance(value, str):
            raise TypeError(f"index value must be str, not {type(value).__name__}")
        # Inline fast path of encode_key (called for every buffered entry); it raises the errors.
        k = key.encode("utf-8") if isinstance(key, str) else encode_key(key)
        if not 0 < len(k) <= MAX_KEY_BYTES:
            encode_key(key)
        v = value.encode("utf-8")
        if multi and op != "delall" and v and len(v) > MAX_KEY_BYTES:
            encode_key(value, "value in a multi table")
        return op, self._dbs[table], multi, k, v

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
        self._check_open()
        if prechecked:
            dbs, tables = self._dbs, self.tables
            items = [
                (op, dbs[table], tables[table], key.encode("utf-8"), value.encode("utf-8"))
                for op, table, key, value in entries
            ]
        else:
            items = [self.check_entry(e) for e in entries]
        seg = encode_key(segment, "segment name") if segment is not None else None
        seg_db = self._dbs[SEGMENTS]

        def body(txn: Any) -> None:
            _apply_checked(txn, items)
            if seg is not None:
                txn.put(seg, b"", db=seg_db)

        self._write(body)

    def load(
        self,
        groups: Iterable[tuple[str, str, list[tuple[bytes, bytes]]]],
        *,
        entries: Iterable[IndexEntry] = (),
        marks: Mapping[str, str] | None = None,
    ) -> None:
        """Bulk-load rows in ONE write txn (a journal checkpoint): first ``entries`` (checked, as
        ``apply``), then each (op, table, [(key, value)]) group, op "put" (set) or "add" (a
        multi table's value; a single table's key only if absent), then ``marks``: journal
        names seen -> what covered them ("" when ingested themselves).

        Keys and values are utf-8 bytes as the repository gave them: a size LMDB refuses raises
        ValueError and leaves the index untouched, and the caller checks rows one by one."""
        self._check_open()
        checked = [self.check_entry(e) for e in entries]
        plan = []
        for op, table, rows in groups:
            if op not in ("put", "add"):
                raise ValueError(f"bulk load takes put or add rows, not {op!r}")
            plan.append((self._db(table), bool(self.tables[table]), op, rows))
        marked = [(encode_key(n, "segment name"), v.encode("utf-8")) for n, v in (marks or {}).items()]
        seg_db = self._dbs[SEGMENTS]
        size = sum(len(k) + len(v) + 16 for _, _, _, rows in plan for k, v in rows)
        if size > 1 << 20:
            assert self._shared is not None
            self._shared.reserve(size)

        def body(txn: Any) -> None:
            _apply_checked(txn, checked)
            for db, multi, op, rows in plan:
                if not rows:
                    continue
                cur = txn.cursor(db=db)
                if multi:
                    cur.putmulti(rows, dupdata=True, overwrite=True)
                else:
                    cur.putmulti(rows, dupdata=False, overwrite=op == "put")
            if marked:
                txn.cursor(db=seg_db).putmulti(marked)

        try:
            self._write(body)
        except lmdb.BadValsizeError as exc:
            raise ValueError(f"a bulk-loaded key or value does not fit the index: {exc}") from None

    # -- segments and meta -----------------------------------------------------------------

    def has_segment(self, name: str) -> bool:
        return self.get(SEGMENTS, name) is not MISSING

    def segment_marks(self, names: Iterable[str]) -> list:
        """For each journal name: "" if ingested itself, the covering checkpoint's name if a
        checkpoint covered it, MISSING if never seen."""
        return self.get_many(SEGMENTS, names)

    def mark_segments(self, marks: Mapping[str, str]) -> None:
        """Record journal names as seen (see ``segment_marks``)."""
        self.load((), marks=marks)

    def segments(self) -> set[str]:
        return {k for k, _ in self.scan(SEGMENTS)}

    def segment_count(self) -> int:
        """How many segments the index has applied (O(1): a cheap "has anything changed?")."""
        return self.count(SEGMENTS)

    def meta_get(self, key: str):
        return self.get(META, key)

    def meta_put(self, key: str, value: str) -> None:
        k, v = encode_key(key), value.encode("utf-8")
        db = self._dbs[META]
        self._write(lambda txn: txn.put(k, v, db=db))

    def clear(self) -> None:
        """Empty every table, the segment list and the meta (the schema record is kept)."""
        schema = Environment.schema_bytes(self.tables)

        def body(txn: Any) -> None:
            for db in self._dbs.values():
                txn.drop(db, delete=False)
            txn.put(b"schema", schema, db=self._dbs[META])

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
    "Index", "IndexEntry", "MISSING", "OPS", "MAX_KEY_BYTES", "check_local_path",
    "filesystem_type", "is_network_fs", "on_network_fs", "encode_key", "SEGMENTS",
]
