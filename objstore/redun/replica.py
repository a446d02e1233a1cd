"""A read-only SQL replica of a repository in redun's own schema, for redun's own CLI.

`redun log`, `console`, `repl`, `export` and `tag list` query SQLAlchemy directly. For them the
redun backend keeps ``<index dir>/redun-replica.sqlite``: a sqlite database created from redun's
own models (``Base.metadata``, alembic's version row, redun_version), filled row for row as
redun's sqlite backend would hold the same records, and brought up to date from the journal
whenever it is opened: records are immutable, so catching up is applying the segments the
replica has not applied yet, in journal order (sqlite hands rows back in insertion order, and
redun's tests and console rely on it). It is derived and local, like the index: deleting it
loses nothing, and nothing ever writes to a repository through it.

Filling: a segment's listing says which objects it added; packed ones are cut from their pack
(read whole once), the rest read in bulk; objstore.redun.rows turns them into rows, inserted
with the DBAPI's executemany after SQLAlchemy's own bind processors of redun's column types, in
one transaction per catch-up. A first build reads only the segments' listings (pack locations,
running jobs and heartbeats come from the index) and builds the secondary indexes once at the
end. Jobs start as a journal note
(running: no end, no call node) and become rows with an end later: an upsert keeps their row.
Values of up to ``INLINE_MAX`` bytes are copied in; bigger ones are read from the repository
when redun asks for them (``ValueSource``, redun's value-store interface).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from redun.backends.db import (
    REDUN_DB_VERSIONS,
    Base,
    Handle,
    Job,
    RedunBackendDb,
    RedunMigration,
    RedunVersion,
)

from objstore import layout, model, pack
from objstore.errors import CorruptObject
from objstore.missing import MISSING, Missing
from objstore.redun.rows import FILLED_KINDS, INLINE_MAX, ROW_TABLES, Rows, insert_rows, sqlite_stamp
from objstore.repo.objects import read_head

log = logging.getLogger("objstore.redun")

FILENAME = "redun-replica.sqlite"
SCHEMA = 1  # this module's fill rules; a replica of another is rebuilt
READ_BATCH = 2048
SEGMENT_BATCH = 64
_META = sa.MetaData()
META_TABLE = sa.Table("objstore_replica", _META, sa.Column("key", sa.String, primary_key=True),
                      sa.Column("value", sa.String))  # fmt: skip
SEGMENT_TABLE = sa.Table("objstore_segment", _META, sa.Column("name", sa.String, primary_key=True))

class ValueSource:
    """redun's value-store interface (get / size) over the repository, for the values the
    replica does not copy in (larger than INLINE_MAX)."""

    def __init__(self, prov: Any):
        self.prov = prov

    def get(self, value_hash: str) -> tuple[bytes, bool]:
        stored = self.prov.values.get_value(value_hash)
        return (b"", False) if isinstance(stored, Missing) else (stored.data, True)

    def size(self, value_hash: str) -> int:
        """The value's size without reading it all (redun asks before deciding to preview)."""
        try:
            _, length, chunks = self.prov.repo.open_stream(value_hash)
        except (KeyError, CorruptObject):
            return 0
        head = read_head(chunks)
        return length - len(head) if head.endswith(b"\0") else 0

    def has(self, value_hash: str) -> bool:
        return self.prov.values.has_value(value_hash)


class Replica:
    """The replica of one repository (``prov``: its Provenance) at ``path``."""

    def __init__(self, prov: Any, path: str | Path | None = None):
        self.prov = prov
        self.repo = prov.repo
        self.path = Path(path) if path is not None else Path(self.repo.index_dir) / FILENAME
        self.db = RedunBackendDb(db_uri=f"sqlite:///{self.path}")
        self._lock = threading.RLock()
        self._writer: sa.Engine | None = None
        self._seen_count = -1  # segments applied to the index when we last caught up
        self.last_sync: dict[str, Any] = {}

    # -- opening -----------------------------------------------------------------------------

    def open(self) -> RedunBackendDb:
        """The private RedunBackendDb reading the replica (built or caught up first)."""
        with self._lock:
            self.sync()
            if self.db.engine is None:
                self.db.create_engine()
                self.db.value_store = ValueSource(self.prov)  # type: ignore[assignment]
                self.db._database_loaded = True
            return self.db

    def writer(self) -> sa.Engine:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(f"sqlite:///{self.path}", connect_args={"check_same_thread": False,
                                                                                "timeout": 60})  # fmt: skip

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_connection: Any, record: Any) -> None:
                dbapi_connection.isolation_level = None  # we issue BEGIN IMMEDIATE ourselves
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=OFF")  # derived: a crash loses nothing
                cursor.execute("PRAGMA foreign_keys=OFF")
                # Rows arrive in hash order: a big page cache keeps the primary-key b-trees in
                # memory while they fill, and index builds sort in memory.
                cursor.execute("PRAGMA cache_size=-262144")
                cursor.execute("PRAGMA temp_store=MEMORY")
                cursor.close()

            self._writer = engine
        return self._writer

    def close(self) -> None:
        with self._lock:
            if self.db.session is not None:
                self.db.session.close()
            if self.db.engine is not None:
                self.db.engine.dispose()
            if self._writer is not None:
                self._writer.dispose()
                self._writer = None

    # -- catching up -------------------------------------------------------------------------

    def stale(self) -> bool:
        """Whether the index has applied segments since the last catch-up (a cheap check)."""
        return self.repo.index.segment_count() != self._seen_count

    _phases: dict[str, float]

    def sync(self, *, handles: bool = False) -> int:
        """Apply the segments the replica has not applied yet; how many records. Handle
        validity (a rollback changes a ref, not the journal) is read again when anything was
        applied, or with ``handles``."""
        with self._lock:
            t0 = time.perf_counter()
            self._phases = {"reading": 0.0, "inserting": 0.0, "indexes": 0.0}
            count = self.repo.index.segment_count()
            engine = self.writer()
            with engine.connect() as conn:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    first = self._prepare(conn)
                    have = {row[0] for row in conn.execute(sa.select(SEGMENT_TABLE.c.name))}
                    new = sorted(self.repo.applied_segments() - have)
                    records = self._apply(conn, new, first=first)
                    if records or handles:
                        self._revalidate_handles(conn)
                    conn.exec_driver_sql("COMMIT")
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
            self._seen_count = count
            if records and self.db.session is not None:
                self.db.session.expire_all()
            self.last_sync = {"segments": len(new), "records": records, "first": first,
                              "seconds": time.perf_counter() - t0, **self._phases}  # fmt: skip
            return records

    def _revalidate_handles(self, conn: sa.Connection) -> None:
        table = Handle.__table__
        rows = conn.execute(sa.select(table.c.hash, table.c.fullname, table.c.is_valid)).all()
        changed = []
        invalid: dict[str, set[str]] = {}
        for handle_hash, fullname, valid in rows:
            if fullname not in invalid:
                invalid[fullname] = set(self.prov.handles.invalid_hashes(fullname))
            now = handle_hash not in invalid[fullname]
            if bool(valid) != now:
                changed.append({"b_h": handle_hash, "b_v": now})
        if changed:
            conn.execute(table.update().where(table.c.hash == sa.bindparam("b_h")).values(is_valid=sa.bindparam("b_v")),
                         changed)  # fmt: skip

    def _prepare(self, conn: sa.Connection) -> bool:
        """Create the schema when missing (or of another repository / fill rule); True if the
        replica is being built from nothing."""
        tables = set(sa.inspect(conn).get_table_names())
        if META_TABLE.name in tables:
            meta = dict(conn.execute(sa.select(META_TABLE.c.key, META_TABLE.c.value)).all())
            if meta.get("repo_id") == self.repo.repo_id and meta.get("schema") == str(SCHEMA):
                return False
            log.info("objstore: rebuilding the SQL replica %s (another repository or fill rule)", self.path)
            for name in tables:
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')
        Base.metadata.create_all(conn)
        _META.create_all(conn)
        latest = REDUN_DB_VERSIONS[-1]
        conn.execute(RedunMigration.__table__.insert(), [{"version_num": latest.migration_id}])
        conn.execute(RedunVersion.__table__.insert(),
                     [{"id": str(uuid.uuid4()), "version": latest.major, "timestamp": datetime.now(UTC)}])  # fmt: skip
        conn.execute(META_TABLE.insert(), [{"key": "repo_id", "value": self.repo.repo_id},
                                           {"key": "schema", "value": str(SCHEMA)},
                                           {"key": "url", "value": str(self.repo.url)}])  # fmt: skip
        return True

    def _apply(self, conn: sa.Connection, names: list[str], *, first: bool) -> int:
        if not names:
            return 0
        indexes = []
        if first:
            # One build of each secondary index at the end is cheaper than keeping them current.
            indexes = [row for row in conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL")]  # fmt: skip
            for name, _ in indexes:
                conn.exec_driver_sql(f'DROP INDEX "{name}"')
        batches = [names[i : i + SEGMENT_BATCH] for i in range(0, len(names), SEGMENT_BATCH)]
        records = 0
        # A first build reads only what segments list (their entries are mostly the index's own)
        # and takes pack locations, running jobs and heartbeats from the index instead. (Reading
        # in a thread beside the inserts was measured slower: most of both is Python.)
        read = self._rows_first if first else self._rows_of
        for batch in batches:
            t1 = time.perf_counter()
            rows = read(batch)
            t2 = time.perf_counter()
            self._phases["reading"] += t2 - t1
            self._insert(conn, rows)
            conn.execute(SEGMENT_TABLE.insert().prefix_with("OR IGNORE"), [{"name": name} for name in batch])
            records += rows.records
            self._phases["inserting"] += time.perf_counter() - t2
        if first:
            self._insert(conn, self._notes_from_index())
        t0 = time.perf_counter()
        for _, sql in indexes:
            conn.exec_driver_sql(sql)
        self._phases["indexes"] = time.perf_counter() - t0
        return records

    def _rows_first(self, batch: list[str]) -> Rows:
        """The rows of the objects these segments list (a first build), in their order."""
        rows = Rows()
        listing: list[tuple[str, str]] = []
        for _, items in self.repo.read_segment_listings(batch):
            listing.extend((oid, kind) for oid, kind in items)
        ids = sorted(oid for oid, kind in listing if kind in FILLED_KINDS)  # in key order: index pages once
        where = {oid: loc for oid, loc in zip(ids, self.repo.lookup_many("packed", ids)) if isinstance(loc, str)}
        self._fill(rows, listing, where)
        return rows

    def _notes_from_index(self) -> Rows:
        """Jobs still running (a start note, no object) and every heartbeat, from the index."""
        rows = Rows()
        notes = list(self.repo.scan("job_start"))
        kinds = self.repo.lookup_many("objects", [job_id for job_id, _ in notes])
        for (job_id, note), kind in zip(notes, kinds):
            if kind != model.JOB:
                rows.note(("put", "job_start", job_id, note))
        for execution_id, stamp in self.repo.scan("exec_updated"):
            rows.note(("put", "exec_updated", execution_id, stamp))
        return rows

    def _rows_of(self, batch: list[str]) -> Rows:
        """The rows of what these segments added, in their order."""
        rows = Rows()
        listing: list[tuple[str, str]] = []
        where: dict[str, str] = {}  # object id -> its pack location, as the segment says
        notes = ("job_start", "exec_updated")
        for segment in self.repo.read_segments(batch):
            listing.extend((oid, kind) for oid, kind in segment.listing)
            for entry in segment.entries:
                try:
                    table = entry[1]
                    if table == "packed":
                        where[entry[2]] = entry[3]
                    elif table in notes:
                        rows.note(entry)
                except (IndexError, TypeError, KeyError):
                    continue
        self._fill(rows, listing, where)
        return rows

    def _fill(self, rows: Rows, listing: Iterable[tuple[str, str]], where: dict[str, str] | None = None) -> None:
        """Rows of the listed objects, in listing order. Objects a segment says are packed are cut
        out of their pack, read whole once (a flush's objects share one); the rest are read in
        bulk through the repository (loose, or a location that did not check out)."""
        items = [(oid, kind) for oid, kind in listing if kind in FILLED_KINDS]
        found = self._from_packs(items, where or {})
        rest = [(oid, kind) for oid, kind in items if oid not in found]
        for start in range(0, len(rest), READ_BATCH):
            batch = rest[start : start + READ_BATCH]
            try:
                got = self.repo.get_many([oid for oid, _ in batch])
            except CorruptObject:
                got = [self._one(oid) for oid, _ in batch]
            for (oid, _), item in zip(batch, got):
                if not isinstance(item, Missing):
                    found[oid] = item
        for oid, kind in items:
            item = found.get(oid)
            if item is None:
                continue
            try:
                rows.fill(kind, oid, item[1], self.prov.handles.is_valid_handle)
                rows.records += 1
            except (CorruptObject, KeyError, TypeError, ValueError) as exc:
                log.warning("objstore: the SQL replica skips %s %s: %s", kind, oid, exc)

    def _from_packs(self, items: list[tuple[str, str]], where: dict[str, str]) -> dict[str, Any]:
        by_pack: dict[str, list[tuple[str, str, int, int]]] = {}
        for oid, kind in items:
            text = where.get(oid)
            if text is None:
                continue
            name, _, span = text.partition(":")
            at, _, size = span.partition(":")
            if not (at.isdigit() and size.isdigit() and layout.is_pack_name(name)):
                continue  # read through the repository, which names what is wrong
            by_pack.setdefault(name, []).append((oid, kind, int(at), int(size)))
        found: dict[str, Any] = {}
        for name, members in by_pack.items():
            data = self.repo.blobs.read(layout.pack_key(name))
            if isinstance(data, Missing):
                continue  # gone (repacked): read through the repository instead
            try:  # in bulk (codec.decode_many): a first build decodes every object once
                decoded = pack.read_entries([(oid, data[offset : offset + length]) for oid, _, offset, length in members])
            except CorruptObject:  # one at a time below, to keep the good ones and name the bad
                decoded = [("", b"")] * len(members)
            for (oid, kind, offset, length), item in zip(members, decoded):
                if item[0] == kind:
                    found[oid] = item
                    continue
                try:  # damaged, or not the kind the segment says: read_entry names what is wrong
                    found[oid] = pack.read_entry(oid, data[offset : offset + length], expect_kind=kind)
                except CorruptObject as exc:
                    log.warning("objstore: the SQL replica skips %s", exc)
        return found

    def _one(self, oid: str) -> Any:
        try:
            return self.repo.get(oid)
        except (CorruptObject, KeyError) as exc:
            log.warning("objstore: the SQL replica skips %s: %s", oid, exc)
            return MISSING

    def _insert(self, conn: sa.Connection, rows: Rows) -> None:
        cursor = conn.connection.cursor()  # the DBAPI cursor: SQLAlchemy's per-row work costs 2x
        try:
            for table in ROW_TABLES:
                data = rows.tables[table.name]
                if table is Job.__table__:
                    if rows.running:  # a running job: a row without an end, kept if it has one
                        insert_rows(cursor, table, rows.running, conflict="ignore")
                    if data:
                        insert_rows(cursor, table, data, conflict="update", keys=("id",),
                                     update=("start_time", "end_time", "cached", "call_hash"))  # fmt: skip
                elif data:
                    insert_rows(cursor, table, data, conflict="ignore")
            beats = dict(rows.heartbeats)
            for execution_id in (r[0] for r in rows.tables["execution"]):
                if execution_id not in beats:  # a heartbeat applied before its execution's row
                    found = self.repo.lookup("exec_updated", execution_id)
                    if isinstance(found, str):
                        beats[execution_id] = found
            if beats:
                cursor.executemany("UPDATE execution SET updated_time = ? WHERE id = ?",
                                   [(sqlite_stamp(v), k) for k, v in beats.items()])  # fmt: skip
            if rows.tables["tag"]:
                # A tag named as a parent is superseded, whichever of the two was applied first.
                cursor.execute("UPDATE tag SET is_current = 0 WHERE is_current = 1 AND tag_hash IN "
                               "(SELECT parent_id FROM tag_edit)")  # fmt: skip
        finally:
            cursor.close()


__all__ = ["Replica", "ValueSource", "Rows", "FILENAME", "INLINE_MAX"]
