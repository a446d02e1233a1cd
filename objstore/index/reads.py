"""Reading the index's tables: the core every Index is (an open environment and its tables),
with point lookups, bulk lookups and ordered scans.

Every read runs in its own short read transaction: it always sees other processes' latest
commits, and never pins an old snapshot (LMDB could not reuse its pages) nor blocks a map
resize (the environment's lock excludes set_mapsize while any txn of ours is live).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lmdb

from objstore.errors import IndexUnavailable
from objstore.index.entries import MAX_KEY_BYTES, encode_key
from objstore.index.env import Environment
from objstore.missing import MISSING

_SCAN_CHUNK = 1024


class Tables:
    """An open index environment's tables (``tables``: name -> multi), read."""

    def __init__(self, path: str, tables: dict[str, bool], shared: Environment):
        self.path = path
        self.tables = tables
        self._shared: Environment | None = shared
        self._env = shared.env
        self._lock = shared.lock
        self._dbs = shared.dbs

    # -- transactions ----------------------------------------------------------------------

    def _write(self, body: Callable[[Any], Any]) -> Any:
        self._check_open()
        assert self._shared is not None
        return self._shared.write(body)

    def _reserve(self, size: int) -> None:
        """Grow the map ahead of a write of about ``size`` bytes (Environment.reserve)."""
        if size > 1 << 20:
            assert self._shared is not None
            self._shared.reserve(size)

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


__all__ = ["Tables"]
