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

import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping

import lmdb

from objstore.errors import IndexUnavailable, ValueTooLarge
from objstore.store import MISSING

IndexEntry = tuple[str, str, str, str]  # (op, table, key, value)

OPS = frozenset({"put", "add", "del", "delall"})
META = "_meta"
SEGMENTS = "_segments"
MAX_KEY_BYTES = 511  # LMDB's compile-time MDB_MAXKEYSIZE; dupsort values are keys too
DEFAULT_MAP_SIZE = 64 << 20  # grows on demand; a small start keeps sparse files small
_SCAN_CHUNK = 1024

# Filesystems on which LMDB's shared mmap and locks are unsafe or unsupported.
NETWORK_FS_TYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "coda",
        "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "davfs", "ocfs2", "gfs2",
        "fuse.s3fs", "fuse.sshfs", "fuse.gcsfuse", "fuse.rclone", "fuse.goofys",
        "fuse.mount-s3", "fuse.juicefs", "fuse.blobfuse", "fuse.blobfuse2", "fuse.davfs2",
        "fuse.glusterfs", "fuse.cephfs", "fuse.ceph-fuse", "fuse.s3ql", "fuse.objectivefs",
    }
)


def _unescape_mount(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1 : i + 4]) == 3 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_type(path: str, mounts_text: str) -> str | None:
    """The fs type of the mount holding absolute ``path``, from /proc/mounts text (pure)."""
    best, best_type = -1, None
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt, fstype = _unescape_mount(parts[1]), parts[2]
        prefix = mnt.rstrip("/") + "/"
        if (path == mnt or (path + "/").startswith(prefix)) and len(mnt) > best:
            best, best_type = len(mnt), fstype
    return best_type


def is_network_fs(fstype: str | None) -> bool:
    return fstype is not None and fstype.lower() in NETWORK_FS_TYPES


def _mount_type(real_path: str, mounts_file: str) -> str | None:
    try:
        with open(mounts_file, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError:
        return None  # no /proc (not Linux): nothing to check against
    return filesystem_type(real_path, text)


def on_network_fs(path: str | os.PathLike, mounts_file: str = "/proc/mounts") -> bool:
    """Whether ``path`` (or the nearest existing parent) is on a network filesystem."""
    return is_network_fs(_mount_type(os.path.realpath(os.fspath(path)), mounts_file))


def check_local_path(path: str | os.PathLike, mounts_file: str = "/proc/mounts") -> None:
    """Raise IndexUnavailable if ``path`` (or the nearest existing parent) is on a network fs."""
    real = os.path.realpath(os.fspath(path))
    fstype = _mount_type(real, mounts_file)
    if is_network_fs(fstype):
        raise IndexUnavailable(
            f"refusing to open the LMDB index at {real}: it is on a {fstype} filesystem, and "
            "LMDB needs a local disk; choose a local index directory (index_dir= / --index-dir)"
        )


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


class _Shared:
    """One LMDB environment per directory per process, shared by every Index on it."""

    def __init__(self, path: str, env: lmdb.Environment, tables: dict[str, bool]):
        self.path = path
        self.env = env
        self.tables = tables
        self.dbs: dict[str, object] = {}
        self.lock = threading.RLock()  # excludes set_mapsize while any txn of ours is live
        self.refcount = 0
        self.was_reset = False


_OPEN: dict[str, _Shared] = {}
_OPEN_LOCK = threading.Lock()


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
        real = os.path.realpath(path)
        self.path = path
        self.tables = tables
        with _OPEN_LOCK:
            shared = _OPEN.get(real)
            if shared is None:
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
                shared = _Shared(real, env, tables)
                try:
                    self._open_tables(shared)
                except BaseException:
                    env.close()
                    raise
                _OPEN[real] = shared
            elif shared.tables != tables:
                raise IndexUnavailable(
                    f"the index at {real} is already open in this process with another schema"
                )
            shared.refcount += 1
        self._shared = shared
        self._env = shared.env
        self._lock = shared.lock
        self._dbs = shared.dbs
        self.durable = durable

    # -- opening ---------------------------------------------------------------------------

    @staticmethod
    def _schema_bytes(tables: dict[str, bool]) -> bytes:
        return json.dumps(tables, sort_keys=True, separators=(",", ":")).encode()

    def _open_tables(self, shared: _Shared) -> None:
        """Open (creating) every table; drop everything if the stored schema differs."""
        env, tables = shared.env, shared.tables
        schema = self._schema_bytes(tables)

        def body(txn: lmdb.Transaction) -> dict[str, object]:
            dbs: dict[str, object] = {}
            meta = env.open_db(META.encode(), txn=txn, create=True)
            old = txn.get(b"schema", db=meta)
            if old is not None and old != schema:
                # A derived cache with another schema is cheaper to rebuild than to migrate.
                shared.was_reset = True
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
                    shared.was_reset = True
                    dbs[name] = env.open_db(name.encode(), txn=txn, dupsort=multi, create=True)
            dbs[META] = meta
            dbs[SEGMENTS] = env.open_db(SEGMENTS.encode(), txn=txn, create=True)
            txn.put(b"schema", schema, db=meta)
            return dbs

        shared.dbs.update(self._write_retry(env, shared.lock, body))

    # -- write machinery -------------------------------------------------------------------

    @staticmethod
    def _write_retry(env: lmdb.Environment, lock: threading.RLock, body):
        """Run body(txn) in one write txn; grow the map and retry on MapFullError."""
        with lock:
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

    def _write(self, body):
        self._check_open()
        return self._write_retry(self._env, self._lock, body)

    def _begin_read(self) -> lmdb.Transaction:
        # Caller holds self._lock. A fresh read txn per call is ~1.5 µs in py-lmdb, and it
        # always sees other processes' latest commits, so no stale cached snapshot is kept.
        try:
            return self._env.begin()
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)
            return self._env.begin()

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
                txn = self._env.begin()
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

        def body(txn: lmdb.Transaction) -> None:
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
            if seg is not None:
                txn.put(seg, b"", db=seg_db)

        self._write(body)

    # -- segments and meta -----------------------------------------------------------------

    def has_segment(self, name: str) -> bool:
        return self.get(SEGMENTS, name) is not MISSING

    def segments(self) -> set[str]:
        return {k for k, _ in self.scan(SEGMENTS)}

    def meta_get(self, key: str):
        return self.get(META, key)

    def meta_put(self, key: str, value: str) -> None:
        k, v = encode_key(key), value.encode("utf-8")
        db = self._dbs[META]
        self._write(lambda txn: txn.put(k, v, db=db))

    def clear(self) -> None:
        """Empty every table, the segment list and the meta (the schema record is kept)."""
        schema = self._schema_bytes(self.tables)

        def body(txn: lmdb.Transaction) -> None:
            for name, db in self._dbs.items():
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
        with _OPEN_LOCK:
            shared.refcount -= 1
            if shared.refcount == 0:
                _OPEN.pop(shared.path, None)
                with shared.lock:
                    shared.env.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Index({self.path!r})"


__all__ = [
    "Index", "IndexEntry", "MISSING", "OPS", "MAX_KEY_BYTES", "check_local_path",
    "filesystem_type", "is_network_fs", "on_network_fs", "encode_key",
]
