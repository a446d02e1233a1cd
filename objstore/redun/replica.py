"""A read-only SQL replica of a repository in redun's own schema, for redun's own CLI.

`redun log`, `console`, `repl`, `export` and `tag list` query SQLAlchemy directly. For them the
redun backend keeps ``<index dir>/redun-replica.sqlite``: a sqlite database created from redun's
own models (``Base.metadata``, alembic's version row, redun_version), filled row for row as
redun's sqlite backend would hold the same records, and brought up to date from the journal
whenever it is opened: records are immutable, so catching up is applying the segments the
replica has not applied yet, in journal order (sqlite hands rows back in insertion order, and
redun's tests and console rely on it). It is derived and local, like the index: deleting it
loses nothing, and nothing ever writes to a repository through it.

Filling: a segment's listing says which objects it added; they are read in bulk (packed
neighbours come from one ranged read), turned into rows by plain functions, and inserted with
SQLAlchemy Core executemany on redun's tables in one transaction per catch-up (a first build
drops the secondary indexes and builds them once at the end). Jobs start as a journal note
(running: no end, no call node) and become rows with an end later: an upsert keeps their row.
Values of up to ``INLINE_MAX`` bytes are copied in; bigger ones are read from the repository
when redun asks for them (``ValueSource``, redun's value-store interface).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import sqlalchemy.dialects.sqlite
from redun.backends.base import TagEntity
from redun.backends.db import (
    REDUN_DB_VERSIONS,
    Argument,
    ArgumentResult,
    Base,
    CallEdge,
    CallNode,
    CallSubtreeTask,
    Execution,
    File,
    Handle,
    HandleEdge,
    Job,
    RedunBackendDb,
    RedunMigration,
    RedunVersion,
    Subvalue,
    Tag,
    TagEdit,
    Task,
    Value,
)

from objstore import layout, model, pack
from objstore.errors import CorruptObject
from objstore.missing import MISSING, Missing
from objstore.model import value as value_kind

log = logging.getLogger("objstore.redun")

FILENAME = "redun-replica.sqlite"
SCHEMA = 1  # this module's fill rules; a replica of another is rebuilt
INLINE_MAX = 1 << 20  # larger values stay in the repository (read through ValueSource)
READ_BATCH = 2048
SEGMENT_BATCH = 64
OVERLAP = True  # read the next batch in a thread while this one is inserted
_META = sa.MetaData()
META_TABLE = sa.Table("objstore_replica", _META, sa.Column("key", sa.String, primary_key=True),
                      sa.Column("value", sa.String))  # fmt: skip
SEGMENT_TABLE = sa.Table("objstore_segment", _META, sa.Column("name", sa.String, primary_key=True))

# Insert order: what rows refer to comes first (foreign keys are not enforced while filling).
ROW_TABLES = (
    Value.__table__, Subvalue.__table__, File.__table__, Task.__table__, CallNode.__table__,
    CallEdge.__table__, Argument.__table__, ArgumentResult.__table__, CallSubtreeTask.__table__,
    Job.__table__, Execution.__table__, Tag.__table__, TagEdit.__table__, Handle.__table__,
    HandleEdge.__table__,
)  # fmt: skip


def when(text: str | None) -> datetime | None:
    """A record's timestamp text as the tz-aware datetime redun's DateTimeUTC columns take."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Rows:
    """Rows per redun table, filled from objects (and journal notes) in the order given."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {t.name: [] for t in ROW_TABLES}
        self.running: list[dict[str, Any]] = []  # job start notes (no end yet)
        self.heartbeats: dict[str, str] = {}  # execution id -> its last heartbeat (record text)
        self.records = 0

    def add(self, table: str, **row: Any) -> None:
        self.tables[table].append(row)

    # -- per kind ----------------------------------------------------------------------------

    def value(self, value_hash: str, payload: bytes) -> None:
        head, data = value_kind.split(payload, value_hash)
        self.add("value", value_hash=value_hash, type=head["type"], format=head["format"],
                 value=bytes(data) if len(data) <= INLINE_MAX else b"")  # fmt: skip
        for child in head.get("subvalues", ()):
            self.add("subvalue", value_hash=child, parent_value_hash=value_hash)
        subtype = head.get("subtype") or {}
        if subtype.get("_type") == "File":
            self.add("file", value_hash=value_hash, path=subtype.get("path"))
        elif subtype.get("_type") == "Task":
            self.add("task", hash=value_hash, name=subtype.get("name"), namespace=subtype.get("namespace") or "",
                     source=subtype.get("source") or "")  # fmt: skip

    def call(self, call_hash: str, doc: dict[str, Any]) -> None:
        self.add("call_node", call_hash=call_hash, task_name=doc["task_name"], task_hash=doc["task_hash"],
                 args_hash=doc["args_hash"], value_hash=doc["value_hash"], timestamp=doc.get("timestamp"))
        for order, child in enumerate(doc.get("children", ())):
            self.add("call_edge", parent_id=call_hash, child_id=child, call_order=order)
        for key, arg in doc.get("args", ()):
            position, keyword = (int(key), None) if key.isdigit() else (None, key)
            self.add("argument", arg_hash=arg["arg_hash"], call_hash=call_hash, value_hash=arg["value_hash"],
                     arg_position=position, arg_key=keyword)  # fmt: skip
            for upstream in arg.get("upstream", ()):
                self.add("argument_result", arg_hash=arg["arg_hash"], result_call_hash=upstream)
        for task_hash in doc.get("subtree_tasks", ()):
            self.add("call_subtree_task", call_hash=call_hash, task_hash=task_hash)

    def job(self, job_id: str, doc: dict[str, Any]) -> None:
        self.add("job", id=job_id, start_time=doc.get("start_time"), end_time=doc.get("end_time"),
                 task_hash=doc["task_hash"], cached=bool(doc.get("cached")), call_hash=doc.get("call_hash"),
                 parent_id=doc.get("parent_id"), execution_id=doc["execution_id"])  # fmt: skip

    def job_start(self, job_id: str, note: dict[str, Any]) -> None:
        self.running.append(dict(id=job_id, start_time=note.get("start_time"), end_time=None,
                                 task_hash=note.get("task_hash"), cached=False, call_hash=None,
                                 parent_id=note.get("parent_id"), execution_id=note.get("execution_id")))  # fmt: skip

    def execution(self, execution_id: str, doc: dict[str, Any]) -> None:
        self.add("execution", id=execution_id, args=doc.get("args") or "[]", job_id=doc.get("job_id"),
                 updated_time=None)  # fmt: skip

    def tag(self, tag_hash: str, doc: dict[str, Any]) -> None:
        self.add("tag", tag_hash=tag_hash, entity_type=TagEntity(doc["entity_type"]), entity_id=doc["entity_id"] or "",
                 key=doc["key"], value=doc["value"], is_current=True)  # fmt: skip
        for parent in doc.get("parents", ()):
            self.add("tag_edit", parent_id=parent, child_id=tag_hash)

    def handle(self, doc: dict[str, Any], valid: bool) -> None:
        self.add("handle", hash=doc["hash"], fullname=doc["fullname"], value_hash=doc["value_hash"],
                 key=doc.get("key") or "", is_valid=valid)  # fmt: skip

    def handle_edge(self, doc: dict[str, Any]) -> None:
        self.add("handle_edge", parent_id=doc["parent"], child_id=doc["child"])

    def note(self, entry: Any) -> None:
        """A journal-only entry a segment carries: a job's start, an execution's heartbeat."""
        try:
            op, table, key, value = entry
        except (TypeError, ValueError):
            return
        if table == "job_start":
            try:
                self.job_start(key, json.loads(value))
            except (ValueError, TypeError, AttributeError):
                pass
        elif table == "exec_updated" and isinstance(value, str):
            self.heartbeats[key] = value


class ValueSource:
    """redun's value-store interface (get / size) over the repository, for the values the
    replica does not copy in (larger than INLINE_MAX)."""

    def __init__(self, prov: Any):
        self.prov = prov

    def get(self, value_hash: str) -> tuple[bytes, bool]:
        stored = self.prov.values.get_value(value_hash)
        return (b"", False) if isinstance(stored, Missing) else (stored.data, True)

    def size(self, value_hash: str) -> int:
        stored = self.prov.values.get_value(value_hash)
        return 0 if isinstance(stored, Missing) else len(stored.data)

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

    def sync(self, *, handles: bool = False) -> int:
        """Apply the segments the replica has not applied yet; how many records. Handle
        validity (a rollback changes a ref, not the journal) is read again when anything was
        applied, or with ``handles``."""
        with self._lock:
            t0 = time.perf_counter()
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
                              "seconds": time.perf_counter() - t0}  # fmt: skip
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
        # Reading and decoding (zstd releases the GIL) run in a thread one batch ahead of the
        # inserts (sqlite steps without the GIL): the two overlap on a second core.
        batches = [names[i : i + SEGMENT_BATCH] for i in range(0, len(names), SEGMENT_BATCH)]
        records = 0
        # A first build reads only what segments list (their entries are mostly the index's own)
        # and takes pack locations, running jobs and heartbeats from the index instead.
        read = self._rows_first if first else self._rows_of
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="objstore-replica") as reader:
            pending = reader.submit(read, batches[0])
            for n, batch in enumerate(batches):
                rows = pending.result()
                if n + 1 < len(batches):
                    pending = reader.submit(read, batches[n + 1])
                    if not OVERLAP:
                        pending.result()
                self._insert(conn, rows)
                conn.execute(SEGMENT_TABLE.insert().prefix_with("OR IGNORE"), [{"name": name} for name in batch])
                records += rows.records
        if first:
            self._insert(conn, self._notes_from_index())
        for _, sql in indexes:
            conn.exec_driver_sql(sql)
        return records

    def _rows_first(self, batch: list[str]) -> Rows:
        """The rows of the objects these segments list (a first build), in their order."""
        rows = Rows()
        listing: list[tuple[str, str]] = []
        for _, items in self.repo.read_segment_listings(batch):
            listing.extend((oid, kind) for oid, kind in items)
        ids = [oid for oid, kind in listing if kind in _FILLERS]
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
        items = [(oid, kind) for oid, kind in listing if kind in _FILLERS]
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
                _FILLERS[kind](self, rows, oid, item[1])
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
            for oid, kind, offset, length in members:
                try:
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
                        _executemany(cursor, table, rows.running, conflict="ignore")
                    if data:
                        _executemany(cursor, table, data, conflict="update", keys=("id",),
                                     update=("start_time", "end_time", "cached", "call_hash"))  # fmt: skip
                elif data:
                    _executemany(cursor, table, data, conflict="ignore")
            beats = dict(rows.heartbeats)
            for execution_id in (r["id"] for r in rows.tables["execution"]):
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


_DIALECT = sa.dialects.sqlite.dialect()


def sqlite_stamp(text: str | None) -> str | None:
    """A record's timestamp as SQLAlchemy's sqlite DATETIME stores redun's DateTimeUTC: UTC,
    without its offset, always with microseconds (``YYYY-mm-dd HH:MM:SS.ffffff``)."""
    if not text:
        return None
    if text.endswith("+00:00") and len(text) >= 25:  # objstore's own spelling: no parsing needed
        core = text[:-6]
        return core if "." in core else core + ".000000"
    stamp = when(text)
    return stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if stamp else None


def _converters(table: sa.Table, names: list[str]) -> list[tuple[int, Any]]:
    """(position, function) for the columns whose Python value is not what sqlite stores:
    timestamps (sqlite_stamp), and otherwise SQLAlchemy's own bind processors of redun's column
    types (Boolean, redun's JSON, the TagEntity enum...), so raw rows hold exactly what redun's
    sqlite backend writes."""
    out: list[tuple[int, Any]] = []
    for i, name in enumerate(names):
        column_type = table.c[name].type
        if isinstance(column_type, sa.types.TypeDecorator) and isinstance(column_type.impl, sa.DateTime):
            out.append((i, sqlite_stamp))
            continue
        process = column_type._cached_bind_processor(_DIALECT)
        if process is not None:
            out.append((i, process))
    return out


def _executemany(cursor: Any, table: sa.Table, rows: list[dict[str, Any]], *, conflict: str,
                 keys: tuple[str, ...] = (), update: tuple[str, ...] = ()) -> None:  # fmt: skip
    names = list(rows[0])
    converters = _converters(table, names)
    quoted = ", ".join(f'"{n}"' for n in names)
    marks = ", ".join("?" * len(names))
    if conflict == "update":
        sets = ", ".join(f'"{n}" = excluded."{n}"' for n in update)
        sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks}) ON CONFLICT ({", ".join(keys)}) DO UPDATE SET {sets}'
    else:
        sql = f'INSERT OR IGNORE INTO "{table.name}" ({quoted}) VALUES ({marks})'
    stamps = [i for i, convert in converters if convert is sqlite_stamp]
    others = [(i, convert) for i, convert in converters if convert is not sqlite_stamp]
    values = []
    for row in rows:
        item = list(row.values())
        for i in stamps:  # sqlite_stamp's common case inline: a million calls cost a second
            v = item[i]
            item[i] = v[:-6] if v and v[-6:] == "+00:00" and "." in v else sqlite_stamp(v)
        for i, convert in others:
            item[i] = convert(item[i])
        values.append(item)
    cursor.executemany(sql, values)


def _fill_value(r: Replica, rows: Rows, oid: str, payload: bytes) -> None:
    rows.value(oid, payload)


def _fill_call(r: Replica, rows: Rows, oid: str, payload: bytes) -> None:
    rows.call(oid, model.decode(model.CALL, payload, oid))


def _fill_job(r: Replica, rows: Rows, oid: str, payload: bytes) -> None:
    rows.job(oid, model.decode(model.JOB, payload, oid))


def _fill_execution(r: Replica, rows: Rows, oid: str, payload: bytes) -> None:
    rows.execution(oid, model.decode(model.EXECUTION, payload, oid))


def _fill_tag(r: Replica, rows: Rows, oid: str, payload: bytes) -> None:
    rows.tag(oid, model.decode(model.TAG, payload, oid))


def _fill_handle(r: Replica, rows: Rows, oid: str, payload: bytes) -> None:
    doc = model.decode(model.HANDLE, payload, oid)
    rows.handle(doc, r.prov.handles.is_valid_handle(doc["hash"], doc["fullname"]))


def _fill_handle_edge(r: Replica, rows: Rows, oid: str, payload: bytes) -> None:
    rows.handle_edge(model.decode(model.HANDLE_EDGE, payload, oid))


_FILLERS = {
    model.VALUE: _fill_value, model.CALL: _fill_call, model.JOB: _fill_job, model.EXECUTION: _fill_execution,
    model.TAG: _fill_tag, model.HANDLE: _fill_handle, model.HANDLE_EDGE: _fill_handle_edge,
}  # fmt: skip


__all__ = ["Replica", "ValueSource", "Rows", "FILENAME", "INLINE_MAX"]
