"""One LMDB environment per index directory per process, shared by every Index opened on it.

LMDB forbids opening an environment twice in one process (closing either copy would drop the
other's locks), so Index objects on one directory share this; it also owns what concerns the
environment as a whole: its tables (and dropping them when the schema changed), map growth,
and the write-transaction retry loop.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any

import lmdb

from objstore.errors import IndexUnavailable

META = "_meta"
SEGMENTS = "_segments"


class Environment:
    """An open LMDB environment with its named tables; reference-counted by ``acquire``."""

    def __init__(self, path: str, env: lmdb.Environment, tables: dict[str, bool]):
        self.path = path
        self.env = env
        self.tables = tables
        self.dbs: dict[str, Any] = {}
        self.lock = threading.RLock()  # excludes set_mapsize while any txn of ours is live
        self.refcount = 0
        self.was_reset = False

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    def acquire(cls, real: str, tables: dict[str, bool], *, durable: bool, map_size: int) -> Environment:
        """The environment of directory ``real`` (opened if this process has none yet)."""
        with _OPEN_LOCK:
            shared = _OPEN.get(real)
            if shared is None:
                _check_room(real)
                try:
                    env = lmdb.open(
                        real,
                        map_size=max(int(map_size), 1 << 16),
                        subdir=True,
                        max_dbs=len(tables) + 2,
                        lock=True,
                        sync=durable,
                        # One fsync per durable commit instead of two: without the meta
                        # flush a crash can undo the last commit but never corrupts, and
                        # the index is derived (refresh re-ingests that journal segment).
                        metasync=False,
                        readahead=False,  # random point lookups; readahead only evicts cache
                        max_readers=512,
                    )
                except lmdb.Error as e:
                    raise IndexUnavailable(f"cannot open the LMDB index at {real}: {e}") from e
                shared = cls(real, env, tables)
                try:
                    shared._open_tables()
                except BaseException:
                    env.close()
                    raise
                _OPEN[real] = shared
            elif shared.tables != tables:
                raise IndexUnavailable(f"the index at {real} is already open in this process with another schema")
            shared.refcount += 1
            return shared

    def release(self) -> None:
        with _OPEN_LOCK:
            self.refcount -= 1
            if self.refcount == 0:
                _OPEN.pop(self.path, None)
                with self.lock:
                    self.env.close()

    @staticmethod
    def schema_bytes(tables: dict[str, bool]) -> bytes:
        return json.dumps(tables, sort_keys=True, separators=(",", ":")).encode()

    def _open_tables(self) -> None:
        """Open (creating) every table; drop everything if the stored schema differs."""
        env, tables = self.env, self.tables
        schema = self.schema_bytes(tables)

        def body(txn: Any) -> dict[str, Any]:
            dbs: dict[str, Any] = {}
            meta = env.open_db(META.encode(), txn=txn, create=True)
            old = txn.get(b"schema", db=meta)
            if old is not None and old != schema:
                # A derived cache with another schema is cheaper to rebuild than to migrate.
                self.was_reset = True
                try:
                    old_tables = json.loads(old)
                except ValueError:
                    old_tables = {}
                for name, multi in old_tables.items():
                    try:
                        db = env.open_db(name.encode(), txn=txn, dupsort=bool(multi), create=False)
                    except (lmdb.NotFoundError, lmdb.IncompatibleError):
                        continue
                    txn.drop(db, delete=True)
                seg = env.open_db(SEGMENTS.encode(), txn=txn, create=True)
                txn.drop(seg, delete=False)
                txn.drop(meta, delete=False)
            for name, multi in tables.items():
                try:
                    dbs[name] = env.open_db(name.encode(), txn=txn, dupsort=multi, create=True)
                except lmdb.IncompatibleError:
                    # Same name, other dupsort flag and no schema record: drop and recreate.
                    stale = env.open_db(name.encode(), txn=txn, dupsort=not multi, create=False)
                    txn.drop(stale, delete=True)
                    self.was_reset = True
                    dbs[name] = env.open_db(name.encode(), txn=txn, dupsort=multi, create=True)
            dbs[META] = meta
            dbs[SEGMENTS] = env.open_db(SEGMENTS.encode(), txn=txn, create=True)
            txn.put(b"schema", schema, db=meta)
            return dbs

        self.dbs.update(self.write(body))

    # -- transactions -------------------------------------------------------------------------

    def write(self, body: Callable[[Any], Any]) -> Any:
        """Run body(txn) in one write txn; grow the map and retry on MapFullError."""
        env = self.env
        with self.lock:
            while True:
                try:
                    txn = env.begin(write=True)
                except lmdb.MapResizedError:
                    env.set_mapsize(0)  # another process grew the map: adopt its size
                    continue
                try:
                    result = body(txn)
                    txn.commit()
                    return result
                except lmdb.MapFullError:
                    txn.abort()
                    size = env.info()["map_size"]
                    env.set_mapsize(size * 2)
                except lmdb.MapResizedError:
                    txn.abort()
                    env.set_mapsize(0)
                except BaseException:
                    txn.abort()
                    raise

    def reserve(self, extra: int) -> None:
        """Grow the map now so a write of about ``extra`` bytes fits, instead of failing with
        MapFullError and redoing the whole transaction once per doubling (a bulk load of a
        million rows would otherwise be written five times over)."""
        with self.lock:
            info, stat = self.env.info(), self.env.stat()
            used = (info["last_pgno"] + 1) * stat["psize"]
            want = used + 3 * extra  # B-tree pages are rarely full, and copy-on-write needs room
            if want > info["map_size"]:
                size = info["map_size"]
                while size < want:
                    size *= 2
                self.env.set_mapsize(size)

    def begin_read(self) -> Any:
        # Caller holds self.lock. A fresh read txn per call is ~1.5 µs in py-lmdb, and it
        # always sees other processes' latest commits, so no stale cached snapshot is kept.
        try:
            return self.env.begin()
        except lmdb.MapResizedError:
            self.env.set_mapsize(0)
            return self.env.begin()


# LMDB maps its lock file (and grows its data file) through shared memory: on a full
# filesystem the first touch of an unbacked page kills the process with SIGBUS instead of
# failing a write. Below this much free space a new or sparse environment is refused instead.
MIN_FREE_BYTES = 1 << 20


def _check_room(real: str) -> None:
    try:
        st = os.statvfs(real)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free >= MIN_FREE_BYTES:
        return
    for name in ("lock.mdb", "data.mdb"):
        try:
            info = os.stat(os.path.join(real, name))
        except OSError:
            break
        if info.st_blocks * 512 < info.st_size:  # sparse: its first write needs new pages
            break
    else:
        return  # both files fully allocated: reads (and writes within them) need no new room
    raise IndexUnavailable(
        f"cannot open the LMDB index at {real}: no space left on its filesystem ({free:,} bytes free)"
    )


_OPEN: dict[str, Environment] = {}
_OPEN_LOCK = threading.Lock()

__all__ = ["Environment", "META", "SEGMENTS"]
