"""Rows of redun's tables from objstore objects: what the SQL replica inserts.

Plain functions of one object each (a value, call node, job, execution, tag, handle), producing
the rows redun's sqlite backend holds for the same record, in redun's column order; then one
executemany per table on the DBAPI cursor, each value passed through SQLAlchemy's own bind
processor of redun's column type (timestamps through ``sqlite_stamp``, the same text), so the
database is byte for byte what SQLAlchemy would write (tests/test_replica.py compares the two).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.dialects.sqlite
from redun.backends.base import TagEntity
from redun.backends.db import (
    Argument,
    ArgumentResult,
    CallEdge,
    CallNode,
    CallSubtreeTask,
    Execution,
    File,
    Handle,
    HandleEdge,
    Job,
    Subvalue,
    Tag,
    TagEdit,
    Task,
    Value,
)

from objstore import model
from objstore.model import value as value_kind

INLINE_MAX = 1 << 20  # larger values stay in the repository (read through replica.ValueSource)
FILLED_KINDS = (model.VALUE, model.CALL, model.JOB, model.EXECUTION, model.TAG, model.HANDLE, model.HANDLE_EDGE)

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


# The columns each table's rows give, in order (redun's models name them).
COLUMNS: dict[str, tuple[str, ...]] = {
    "value": ("value_hash", "type", "format", "value"),
    "subvalue": ("value_hash", "parent_value_hash"),
    "file": ("value_hash", "path"),
    "task": ("hash", "name", "namespace", "source"),
    "call_node": ("call_hash", "task_name", "task_hash", "args_hash", "value_hash", "timestamp"),
    "call_edge": ("parent_id", "child_id", "call_order"),
    "argument": ("arg_hash", "call_hash", "value_hash", "arg_position", "arg_key"),
    "argument_result": ("arg_hash", "result_call_hash"),
    "call_subtree_task": ("call_hash", "task_hash"),
    "job": ("id", "start_time", "end_time", "task_hash", "cached", "call_hash", "parent_id", "execution_id"),
    "execution": ("id", "args", "job_id", "updated_time"),
    "tag": ("tag_hash", "entity_type", "entity_id", "key", "value", "is_current"),
    "tag_edit": ("parent_id", "child_id"),
    "handle": ("hash", "fullname", "value_hash", "key", "is_valid"),
    "handle_edge": ("parent_id", "child_id"),
}


class Rows:
    """Rows per redun table (tuples in COLUMNS order), from objects and journal notes, in the
    order given. Timestamps stay the records' text until insert_rows stores them."""

    def __init__(self) -> None:
        self.tables: dict[str, list[tuple[Any, ...]]] = {t.name: [] for t in ROW_TABLES}
        self.running: list[tuple[Any, ...]] = []  # job start notes (no end yet), job columns
        self.heartbeats: dict[str, str] = {}  # execution id -> its last heartbeat (record text)
        self.records = 0

    def dicts(self, table: str) -> list[dict[str, Any]]:
        """A table's rows as column -> value (for comparisons)."""
        rows = self.running if table == "running" else self.tables[table]
        columns = COLUMNS["job" if table == "running" else table]
        return [dict(zip(columns, row)) for row in rows]

    # -- per kind ----------------------------------------------------------------------------

    def value(self, value_hash: str, payload: bytes) -> None:
        head, data = value_kind.split(payload, value_hash)
        tables = self.tables
        tables["value"].append((value_hash, head["type"], head["format"], bytes(data) if len(data) <= INLINE_MAX else b""))
        for child in head.get("subvalues", ()):
            tables["subvalue"].append((child, value_hash))
        subtype = head.get("subtype") or {}
        if subtype.get("_type") == "File":
            tables["file"].append((value_hash, subtype.get("path")))
        elif subtype.get("_type") == "Task":
            tables["task"].append((value_hash, subtype.get("name"), subtype.get("namespace") or "",
                                   subtype.get("source") or ""))  # fmt: skip

    def call(self, call_hash: str, doc: dict[str, Any]) -> None:
        tables = self.tables
        tables["call_node"].append((call_hash, doc["task_name"], doc["task_hash"], doc["args_hash"],
                                    doc["value_hash"], doc.get("timestamp")))  # fmt: skip
        edges = tables["call_edge"]
        for order, child in enumerate(doc.get("children", ())):
            edges.append((call_hash, child, order))
        for key, arg in doc.get("args", ()):
            position, keyword = (int(key), None) if key.isdigit() else (None, key)
            tables["argument"].append((arg["arg_hash"], call_hash, arg["value_hash"], position, keyword))
            for upstream in arg.get("upstream", ()):
                tables["argument_result"].append((arg["arg_hash"], upstream))
        subtree = tables["call_subtree_task"]
        for task_hash in doc.get("subtree_tasks", ()):
            subtree.append((call_hash, task_hash))

    def job(self, job_id: str, doc: dict[str, Any]) -> None:
        self.tables["job"].append((job_id, doc.get("start_time"), doc.get("end_time"), doc["task_hash"],
                                   bool(doc.get("cached")), doc.get("call_hash"), doc.get("parent_id"),
                                   doc["execution_id"]))  # fmt: skip

    def job_start(self, job_id: str, note: dict[str, Any]) -> None:
        self.running.append((job_id, note.get("start_time"), None, note.get("task_hash"), False, None,
                             note.get("parent_id"), note.get("execution_id")))  # fmt: skip

    def execution(self, execution_id: str, doc: dict[str, Any]) -> None:
        self.tables["execution"].append((execution_id, doc.get("args") or "[]", doc.get("job_id"), None))

    def tag(self, tag_hash: str, doc: dict[str, Any]) -> None:
        self.tables["tag"].append((tag_hash, TagEntity(doc["entity_type"]), doc["entity_id"] or "", doc["key"],
                                   doc["value"], True))  # fmt: skip
        for parent in doc.get("parents", ()):
            self.tables["tag_edit"].append((parent, tag_hash))

    def handle(self, doc: dict[str, Any], valid: bool) -> None:
        self.tables["handle"].append((doc["hash"], doc["fullname"], doc["value_hash"], doc.get("key") or "", valid))

    def handle_edge(self, doc: dict[str, Any]) -> None:
        self.tables["handle_edge"].append((doc["parent"], doc["child"]))

    def fill(self, kind: str, object_id: str, payload: bytes, handle_valid: Callable[[str, str], bool]) -> None:
        """The rows of one object (``handle_valid(hash, fullname)``: a handle's state now)."""
        if kind == model.VALUE:
            self.value(object_id, payload)
        elif kind == model.HANDLE:
            doc = model.decode(kind, payload, object_id)
            self.handle(doc, handle_valid(doc["hash"], doc["fullname"]))
        else:
            doc = model.decode(kind, payload, object_id)
            if kind == model.CALL:
                self.call(object_id, doc)
            elif kind == model.JOB:
                self.job(object_id, doc)
            elif kind == model.EXECUTION:
                self.execution(object_id, doc)
            elif kind == model.TAG:
                self.tag(object_id, doc)
            else:
                self.handle_edge(doc)

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


def insert_rows(cursor: Any, table: sa.Table, rows: list[tuple[Any, ...]], *, conflict: str,
                keys: tuple[str, ...] = (), update: tuple[str, ...] = ()) -> None:  # fmt: skip
    """One executemany of ``rows`` (COLUMNS order) into ``table``: ``conflict`` "ignore" keeps a
    row already there, "update" sets ``update`` columns of the row with the same ``keys``."""
    names = list(COLUMNS[table.name])
    converters = _converters(table, names)
    quoted = ", ".join(f'"{n}"' for n in names)
    marks = ", ".join("?" * len(names))
    if conflict == "update":
        sets = ", ".join(f'"{n}" = excluded."{n}"' for n in update)
        sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks}) ON CONFLICT ({", ".join(keys)}) DO UPDATE SET {sets}'
    else:
        sql = f'INSERT OR IGNORE INTO "{table.name}" ({quoted}) VALUES ({marks})'
    if not converters:
        cursor.executemany(sql, rows)
        return
    stamps = [i for i, convert in converters if convert is sqlite_stamp]
    others = [(i, convert) for i, convert in converters if convert is not sqlite_stamp]
    values = []
    for row in rows:
        item = list(row)
        for i in stamps:  # sqlite_stamp's common case inline: a million calls cost a second
            v = item[i]
            item[i] = v[:-6] if v and v[-6:] == "+00:00" and "." in v else sqlite_stamp(v)
        for i, convert in others:
            item[i] = convert(item[i])
        values.append(item)
    cursor.executemany(sql, values)


__all__ = ["Rows", "COLUMNS", "ROW_TABLES", "FILLED_KINDS", "INLINE_MAX", "when", "sqlite_stamp", "insert_rows"]
