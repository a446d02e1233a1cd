"""The two JSON-lines streams objstore reads and writes, and the checks every line passes.

redun's stream (``_version: 1``): exactly the records ``redun export`` writes (Value, CallNode,
Job, Execution, Tag), one per line, so ``objstore export --redun | redun import`` and
``redun export | objstore import`` both work. It carries provenance only: no eval cache, no
subtree tasks, no handles, so a run after importing it recomputes everything.

objstore's stream: everything a repository needs to keep its cache, one item per line::

    {"_format": "objstore-export", "_version": 1, "_type": "header", "repo_format": [2, 0]}
    {"_type": "object", "id": …, "kind": "call", "doc": {…}}                    JSON payloads
    {"_type": "object", "id": …, "kind": "value", "header": {…}, "data": b64}   values
    {"_type": "object", "id": …, "kind": …, "raw": b64}                         anything else
    {"_type": "job_start", "id": …, "start": {…}}       a job that started and never ended
    {"_type": "exec_updated", "id": …, "time": …}       an execution's heartbeat
    {"_type": "eval", "eval_hash": …, "value_hash": …}  an eval-cache head
    {"_type": "handle_state", "fullname": …, "invalid": [hashes]}
    {"_type": "end", "count": N}                        last line: N items above it

Objects come first, then what refers to them, so an import written in stream order is always
consistent, and the end line tells a truncated stream from a complete one.

``parse_line`` turns one line into an ``Item`` after checking everything that can be checked
without the repository (JSON, fields, ids, kinds, derivable hashes); nothing from a line is
written before it passed.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from objstore import codec, model
from objstore.errors import CorruptObject, InvalidId
from objstore.ids import is_hash, validate_hash, validate_id, validate_uuid
from objstore.model import job as job_kind
from objstore.model import value as value_kind
from objstore.model.schema import IndexEntry

FORMAT = "objstore-export"
VERSION = 1
REDUN_VERSION = model.EXPORT_VERSION

OBJECT, JOB_START, EXEC_UPDATED, EVAL, HANDLE_STATE, END = (
    "object", "job_start", "exec_updated", "eval", "handle_state", "end",
)  # fmt: skip
ITEM_TYPES = (OBJECT, JOB_START, EXEC_UPDATED, EVAL, HANDLE_STATE, END)
REDUN, OBJSTORE = "redun", "objstore"


def header_line(repo_format: list[int]) -> dict[str, Any]:
    return {"_format": FORMAT, "_version": VERSION, "_type": "header", "repo_format": list(repo_format)}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def object_line(object_id: str, kind: str, payload: bytes, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """One object as a line of objstore's stream (``doc``: its payload already decoded)."""
    if kind == value_kind.NAME:
        head, data = value_kind.split(payload, object_id)
        return {"_type": OBJECT, "id": object_id, "kind": kind, "header": head, "data": b64(data)}
    if doc is None and payload[:1] == b"{":
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = None
    if isinstance(doc, dict) and (kind in model.REGISTRY or codec.canonical_json(doc) == payload):
        # A known kind's payload is canonical JSON by construction: the doc gives back its bytes.
        return {"_type": OBJECT, "id": object_id, "kind": kind, "doc": doc}
    return {"_type": OBJECT, "id": object_id, "kind": kind, "raw": b64(payload)}


class LineError(Exception):
    """What is wrong with one line (the importer adds its number)."""


@dataclass
class Item:
    type: str  # an ITEM_TYPES entry, or REDUN for a redun record
    id: str = ""
    kind: str = ""
    payload: bytes = b""
    entries: list[IndexEntry] | None = None
    value: Any = None  # eval: value hash; job_start: start info; exec_updated: time; state: set
    record: dict[str, Any] | None = None  # a redun Execution record (completed at the end)


def detect(doc: dict[str, Any]) -> str:
    """Which stream a first line starts: OBJSTORE (with its version checked) or REDUN."""
    if "_format" in doc:
        if doc.get("_format") != FORMAT:
            raise LineError(f"not an objstore export: _format is {doc.get('_format')!r}, not {FORMAT!r}")
        version = doc.get("_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise LineError(f"unreadable export version {version!r}")
        if version > VERSION:
            raise LineError(
                f"export stream version {version} is newer than this objstore reads ({VERSION}): "
                "upgrade objstore to import it"
            )
        return OBJSTORE
    if "_type" in doc and "_version" in doc:
        return REDUN
    raise LineError("neither an objstore export (no _format) nor a redun export record (no _type/_version)")


def parse_json_line(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise LineError(f"not valid JSON ({exc}); a truncated or damaged file?") from None
    if not isinstance(doc, dict):
        raise LineError(f"not a JSON object but {type(doc).__name__}")
    return doc


def _b64(doc: dict[str, Any], field: str) -> bytes:
    raw = doc.get(field)
    if not isinstance(raw, str):
        raise LineError(f"field {field!r} is not base64 text")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise LineError(f"field {field!r} is not valid base64 ({exc})") from None


def _checked_object(kind: str, object_id: str, payload: bytes, doc: dict[str, Any] | None = None) -> Item:
    """The object's derivable ids recomputed and its index entries derived, from ``doc`` (the
    payload's document, a value's header) when the caller has it: no second parse."""
    known = model.REGISTRY.get(kind)
    try:
        if known is None:
            entries = model.derive_entries(kind, object_id, payload)
        else:
            if doc is None:
                doc = known.decode(payload, object_id)
            model.verify_doc(kind, object_id, doc)
            entries = known.entries_of(object_id, doc)
    except CorruptObject as exc:
        raise LineError(f"{kind} {object_id}: {exc.reason}") from None
    return Item(OBJECT, object_id, kind, payload, entries)


def parse_objstore(doc: dict[str, Any]) -> Item:
    """One checked item of objstore's stream."""
    if "_format" in doc:
        raise LineError("a second stream header in the middle of the stream")
    kind_of_line = doc.get("_type")
    if "_version" in doc or kind_of_line not in ITEM_TYPES:
        raise LineError(f"not a line of an objstore export (_type {kind_of_line!r}); two streams mixed?")
    try:
        if kind_of_line == OBJECT:
            object_id = validate_id(doc.get("id"))
            kind = codec.check_kind(doc.get("kind"))  # type: ignore[arg-type]
            if kind == value_kind.NAME:
                head = doc.get("header")
                if not isinstance(head, dict):
                    raise LineError("a value line without a header object")
                for field in ("type", "format", "subvalues"):
                    if field not in head:
                        raise LineError(f"a value header without {field!r}")
                return _checked_object(kind, object_id, codec.canonical_json(head) + b"\0" + _b64(doc, "data"), head)
            if "doc" in doc:
                if not isinstance(doc["doc"], dict):
                    raise LineError("field 'doc' is not a JSON object")
                return _checked_object(kind, object_id, codec.canonical_json(doc["doc"]), doc["doc"])
            return _checked_object(kind, object_id, _b64(doc, "raw"))
        if kind_of_line == JOB_START:
            job_id = validate_uuid(doc.get("id"))
            start = doc.get("start")
            if not isinstance(start, dict) or not isinstance(start.get("start_time"), str):
                raise LineError("a job_start line without a start object holding start_time")
            info = {
                "start_time": start["start_time"],
                "task_hash": validate_hash(start.get("task_hash")),
                "parent_id": validate_uuid(start["parent_id"]) if start.get("parent_id") else None,
                "execution_id": validate_uuid(start.get("execution_id")),
            }
            return Item(JOB_START, job_id, entries=job_kind.JOB_KIND.start_entries(job_id, info), value=info)
        if kind_of_line == EXEC_UPDATED:
            exec_id = validate_uuid(doc.get("id"))
            if not isinstance(doc.get("time"), str):
                raise LineError("an exec_updated line without a time")
            return Item(EXEC_UPDATED, exec_id, entries=[("put", "exec_updated", exec_id, doc["time"])], value=doc["time"])
        if kind_of_line == EVAL:
            return Item(EVAL, validate_hash(doc.get("eval_hash")), value=validate_hash(doc.get("value_hash")))
        if kind_of_line == HANDLE_STATE:
            fullname, invalid = doc.get("fullname"), doc.get("invalid")
            if not isinstance(fullname, str) or not fullname:
                raise LineError("a handle_state line without a fullname")
            if not isinstance(invalid, list) or not all(is_hash(h) for h in invalid):
                raise LineError("a handle_state line whose 'invalid' is not a list of hashes")
            return Item(HANDLE_STATE, fullname, value=set(invalid))
        count = doc.get("count")
        if not isinstance(count, int) or isinstance(count, bool):
            raise LineError("an end line without a count")
        return Item(END, value=count)
    except (InvalidId, ValueError) as exc:
        if isinstance(exc, LineError):
            raise
        raise LineError(str(exc)) from None


def parse_redun(doc: dict[str, Any]) -> Item:
    """One checked record of redun's stream (``_version: 1``)."""
    if "_format" in doc:
        raise LineError("an objstore stream header in the middle of a redun export")
    if doc.get("_version") != REDUN_VERSION:
        raise LineError(f"unsupported redun record version {doc.get('_version')!r} (this objstore reads {REDUN_VERSION})")
    rtype = doc.get("_type")
    if rtype not in model.EXPORT_TYPES:
        raise LineError(f"unknown redun record _type {rtype!r} (known: {', '.join(model.EXPORT_TYPES)})")
    try:
        kind, object_id, payload = model.from_export(doc)
    except KeyError as exc:
        raise LineError(f"{rtype} record without field {exc}") from None
    except (InvalidId, ValueError, TypeError, AttributeError) as exc:
        raise LineError(f"bad {rtype} record: {exc}") from None
    item = _checked_object(kind, object_id, payload)
    item.type = REDUN
    if kind == model.EXECUTION:
        item.record = doc  # its start time is its root job's, which comes later in the stream
    return item


__all__ = [
    "FORMAT", "VERSION", "REDUN", "OBJSTORE", "ITEM_TYPES", "OBJECT", "JOB_START", "EXEC_UPDATED",
    "EVAL", "HANDLE_STATE", "END", "Item", "LineError", "header_line", "object_line", "detect",
    "parse_json_line", "parse_objstore", "parse_redun", "b64",
]
