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

    def fill(self, kind: str, object_id: str, payload: bytes, handle_valid: Callable[[str, str], bool]) -> None:
        """The rows of one object (``handle_valid(hash, fullname)``: a handle's state now)."""
        if kind == model.VALUE:
            self.value(object_id, payload)
        elif kind == model.HANDLE:
            doc = model.decode(kind, payload, object_id)
            self.handle(doc, handle_valid(doc["hash"], doc["fullname"]))
        else:
            doc = model.decode(kind, payload, object_id)
            {model.CALL: self.call, model.JOB: self.job, model.EXECUTION: self.execution,
             model.TAG: self.tag}.get(kind, lambda _i, d: self.handle_edge(d))(object_id, doc)  # fmt: skip

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


def insert_rows(cursor: Any, table: sa.Table, rows: list[dict[str, Any]], *, conflict: str,
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



__all__ = ["Rows", "ROW_TABLES", "FILLED_KINDS", "INLINE_MAX", "when", "sqlite_stamp", "insert_rows"]
