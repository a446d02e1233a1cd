"""Record kinds, their payloads, redun's export format, and the index entries each one implies.

Pure: no I/O, no redun import. Every provenance record is one immutable object keyed by its
redun id (value_hash, call_hash, tag_hash, job/execution uuid). Payloads are canonical JSON;
a Value's bytes follow its JSON header raw (``header NUL data``), never base64.

The index (INDEX_TABLES) is derived data: everything in it is computed here, from one object at a
time, so the journal and a reindex-from-objects produce the same tables. Composite keys join
fixed-width ids with ":"; multi tables hold short values (LMDB dupsort values are <= 511 bytes),
so free text (task names, handle names) is hashed into a key, never stored as one.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from typing import Any, Iterable

from objstore import hashing
from objstore.codec import canonical_json
from objstore.errors import CorruptObject, InvalidId
from objstore.ids import is_hash, is_uuid, validate_hash, validate_id, validate_uuid

IndexEntry = tuple[str, str, str, str]

EXPORT_VERSION = 1  # redun's serializer VERSION

# Object kinds.
VALUE = "value"  # redun Value (Tasks and Files are Values with a subtype)
CALL = "call"  # CallNode with its arguments, children and subtree tasks
JOB = "job"  # a Job, written once it has ended
EXECUTION = "exec"  # an Execution, written when its root job starts
TAG = "tag"
HANDLE = "handle"  # a Handle's graph node (id derived from the handle hash; see handle_record_id)
HANDLE_EDGE = "handle_edge"
KINDS = (VALUE, CALL, JOB, EXECUTION, TAG, HANDLE, HANDLE_EDGE)

# The five kinds redun's export format knows; the rest travel in objstore's own stream only.
EXPORT_TYPES = {"Value": VALUE, "CallNode": CALL, "Job": JOB, "Execution": EXECUTION, "Tag": TAG}

CONTEXT_KEY = "redun.context"

# name -> multi (dupsort). Values of multi tables are built to sort oldest first.
INDEX_TABLES: dict[str, bool] = {
    "objects": False,  # object id -> kind
    "packed": False,  # object id -> its pack.Location ("name:offset:length"); absent: loose
    "evals": False,  # eval_hash -> value_hash (eval-cache heads; written by the repository)
    # Values
    "subvalues": True,  # parent value_hash -> child value_hash
    "value_type": False,  # value_hash -> redun type name (job status needs the result's type)
    "task_name": False,  # task_hash -> task_name_key
    "tasks_by_name": True,  # task_name_key -> task_hash
    # CallNodes
    "calls_by_eval": True,  # "task_hash:args_hash" -> "ts:call_hash"              (ULTIMATE)
    "call_subtree": True,  # call_hash -> task_hash                               (ULTIMATE)
    "call_result": False,  # call_hash -> result value_hash
    "calls_by_task": True,  # task_hash -> "ts:call_hash"                          (explain)
    "calls_by_args": True,  # args_hash -> "ts:call_hash:task_hash"                (explain)
    "call_context": True,  # call_hash -> context_hash (from redun.context tags)   (context filter)
    # Jobs and executions
    "cse": True,  # "execution_id:task_hash:args_hash" -> "ts:job_id:call_hash" (ended jobs; CSE)
    "job_start": False,  # job_id -> canonical JSON of the start (journal note; running/dead jobs)
    "job_children": True,  # parent job_id -> "ts:job_id"
    "executions": True,  # "all" -> "ts:execution_id"
    "exec_updated": False,  # execution_id -> timestamp (heartbeat note)
    # Tags
    "tags_by_entity": True,  # entity_id -> tag_hash (all, current or not)
    "tag_children": True,  # parent tag_hash -> child tag_hash (current = no children)
    # Handles
    "handles": False,  # handle hash -> handle record id (present = recorded)
    "handles_by_name": True,  # handle_name_key(fullname) -> handle hash
    "handle_children": True,  # parent handle hash -> child handle hash
}

EXECUTIONS_KEY = "all"


# ---------------------------------------------------------------------------------------------
# Small helpers


def _json(obj: Any) -> bytes:
    return canonical_json(obj)


def _load(payload: bytes, object_id: str) -> dict:
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptObject(object_id, f"bad JSON payload: {exc}") from None
    if not isinstance(obj, dict):
        raise CorruptObject(object_id, "payload is not a JSON object")
    return obj


def format_timestamp(when: datetime) -> str:
    """redun's export spelling: str() of a tz-aware UTC datetime."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return str(when.astimezone(timezone.utc))


def parse_timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def ts_key(text: str | None) -> str:
    """A fixed-width, sortable key for a timestamp string (microseconds since the epoch)."""
    when = parse_timestamp(text)
    micros = 0 if when is None else max(0, int(when.timestamp() * 1_000_000))
    return f"{micros:017d}"


def task_name_key(namespace: str | None, name: str) -> str:
    return hashing.hash_struct(["TaskName", namespace or "", name])


def handle_name_key(fullname: str) -> str:
    return hashing.hash_struct(["HandleName", fullname])


def handle_record_id(handle_hash: str) -> str:
    # A Handle's hash is also the value_hash of the Handle as a Value, so its graph record needs
    # an id of its own.
    return hashing.hash_struct(["HandleRecord", validate_hash(handle_hash)])


def handle_edge_id(parent_hash: str, child_hash: str) -> str:
    return hashing.hash_struct(["HandleEdge", parent_hash, child_hash])


def split_sorted(value: str) -> list[str]:
    return value.split(":")


# ---------------------------------------------------------------------------------------------
# Value payloads: canonical JSON header, NUL, raw bytes.


def encode_value(
    type_name: str,
    format: str,
    data: bytes,
    subvalues: Iterable[str] = (),
    subtype: dict | None = None,
) -> bytes:
    return _json(value_header(type_name, format, subvalues, subtype)) + b"\0" + bytes(data)


def value_header(type_name: str, format: str, subvalues: Iterable[str] = (), subtype: dict | None = None) -> dict:
    return {
        "type": type_name,
        "format": format,
        "subvalues": sorted(set(subvalues)),
        "subtype": subtype,
    }


def value_record(
    object_id: str,
    type_name: str,
    format: str,
    data: bytes,
    subvalues: Iterable[str] = (),
    subtype: dict | None = None,
) -> tuple[bytes, list[IndexEntry]]:
    """(payload, index entries) of a value, without parsing back the header just encoded."""
    header = value_header(type_name, format, subvalues, subtype)
    return _json(header) + b"\0" + bytes(data), _entries_of(VALUE, object_id, header)


def decode_value(payload: bytes, object_id: str = "?") -> tuple[dict, bytes]:
    """(header, data). Canonical JSON never holds a raw NUL, so the first one ends the header."""
    cut = payload.find(b"\0")
    if cut < 0:
        raise CorruptObject(object_id, "value payload has no header terminator")
    header = _load(payload[:cut], object_id)
    for field in ("type", "format", "subvalues"):
        if field not in header:
            raise CorruptObject(object_id, f"value header lacks {field!r}")
    return header, payload[cut + 1 :]


def task_subtype(name: str, namespace: str, source: str) -> dict:
    return {"_type": "Task", "name": name, "namespace": namespace, "source": source}


def file_subtype(path: str) -> dict:
    return {"_type": "File", "path": path}


# ---------------------------------------------------------------------------------------------
# JSON payloads of the other kinds.


def encode_call(**fields: Any) -> bytes:
    """The payload of a CallNode; fields as call_doc."""
    return _json(call_doc(**fields))


def call_doc(
    *,
    task_name: str,
    task_hash: str,
    args_hash: str,
    value_hash: str,
    timestamp: str,
    args: dict[str, dict],
    children: list[str],
    subtree_tasks: Iterable[str] = (),
) -> dict:
    return {
        "task_name": task_name,
        "task_hash": task_hash,
        "args_hash": args_hash,
        "value_hash": value_hash,
        "timestamp": timestamp,
        # JSON objects lose order under sort_keys: keep the argument order as a list.
        "args": [[key, arg] for key, arg in args.items()],
        "children": list(children),
        "subtree_tasks": sorted(set(subtree_tasks)),
    }


def call_record(call_hash: str, **fields: Any) -> tuple[bytes, list[IndexEntry]]:
    """(payload, index entries) of a CallNode; fields as call_doc."""
    doc = call_doc(**fields)
    return _json(doc), _entries_of(CALL, call_hash, doc)


def encode_job(**fields: Any) -> bytes:
    """The payload of an ended Job; fields as job_doc."""
    return _json(job_doc(**fields))


def job_doc(
    *,
    start_time: str,
    end_time: str | None,
    task_hash: str,
    cached: bool,
    call_hash: str | None,
    parent_id: str | None,
    execution_id: str,
    args_hash: str | None = None,
) -> dict:
    # args_hash is objstore's own field: it keys the CSE table without reading the CallNode.
    return {
        "start_time": start_time,
        "end_time": end_time,
        "task_hash": task_hash,
        "cached": bool(cached),
        "call_hash": call_hash,
        "parent_id": parent_id,
        "execution_id": execution_id,
        "args_hash": args_hash,
    }


def job_record(job_id: str, **fields: Any) -> tuple[bytes, list[IndexEntry]]:
    """(payload, index entries) of an ended Job; fields as job_doc."""
    doc = job_doc(**fields)
    return _json(doc), _entries_of(JOB, job_id, doc)


def encode_execution(*, args: str, job_id: str | None, start_time: str | None = None) -> bytes:
    # args is redun's JSON *text* of argv; start_time (objstore's own) orders `log`.
    return _json({"args": args, "job_id": job_id, "start_time": start_time})


def encode_tag(entity_type: str, entity_id: str, key: str, value: Any, parents: Iterable[str]) -> bytes:
    return _json(
        {
            "entity_type": entity_type,
            "entity_id": entity_id,
            "key": key,
            "value": value,
            "parents": sorted(set(parents)),
        }
    )


def tag_hash_of(payload: dict) -> str:
    return hashing.hash_tag(payload["entity_id"], payload["key"], payload["value"], sorted(payload["parents"]))


def encode_handle(handle_hash: str, fullname: str, key: str, value_hash: str) -> bytes:
    return _json({"hash": handle_hash, "fullname": fullname, "key": key, "value_hash": value_hash})


def encode_handle_edge(parent_hash: str, child_hash: str) -> bytes:
    return _json({"parent": parent_hash, "child": child_hash})


def decode(kind: str, payload: bytes, object_id: str = "?") -> dict:
    """The metadata of any non-value kind as a dict (a value's header for VALUE)."""
    if kind == VALUE:
        return decode_value(payload, object_id)[0]
    return _load(payload, object_id)


def call_args(call: dict) -> dict[str, dict]:
    return {key: arg for key, arg in call.get("args", [])}


# ---------------------------------------------------------------------------------------------
# Index entries implied by one object.


def derive_entries(kind: str, object_id: str, payload: bytes) -> list[IndexEntry]:
    """The index entries an object implies; reindex-from-objects and the journal both use it."""
    try:
        doc = decode_value(payload, object_id)[0] if kind == VALUE else None
        if kind in (CALL, JOB, EXECUTION, TAG, HANDLE, HANDLE_EDGE):
            doc = _load(payload, object_id)
        return _entries_of(kind, object_id, doc)
    except (KeyError, TypeError, AttributeError, InvalidId) as exc:
        raise CorruptObject(object_id, f"malformed {kind} payload: {exc!r}") from None


def _entries_of(kind: str, object_id: str, doc: Any) -> list[IndexEntry]:
    """derive_entries from the decoded document (a value's header); writers that just built
    the document skip the JSON round trip."""
    entries: list[IndexEntry] = [("put", "objects", object_id, kind)]
    try:
        if kind == VALUE:
            header = doc
            for child in header["subvalues"]:
                entries.append(("add", "subvalues", object_id, validate_hash(child)))
            entries.append(("put", "value_type", object_id, str(header["type"])))
            subtype = header.get("subtype")
            if subtype and subtype.get("_type") == "Task":
                name_key = task_name_key(subtype.get("namespace"), subtype["name"])
                entries.append(("put", "task_name", object_id, name_key))
                entries.append(("add", "tasks_by_name", name_key, object_id))
        elif kind == CALL:
            call = doc
            task_hash = validate_hash(call["task_hash"])
            args_hash = validate_hash(call["args_hash"])
            ts = ts_key(call.get("timestamp"))
            entries.append(("add", "calls_by_eval", f"{task_hash}:{args_hash}", f"{ts}:{object_id}"))
            entries.append(("add", "calls_by_task", task_hash, f"{ts}:{object_id}"))
            entries.append(("add", "calls_by_args", args_hash, f"{ts}:{object_id}:{task_hash}"))
            entries.append(("put", "call_result", object_id, validate_hash(call["value_hash"])))
            for task in call.get("subtree_tasks", ()):
                entries.append(("add", "call_subtree", object_id, validate_hash(task)))
        elif kind == JOB:
            entries.extend(job_entries(object_id, doc, ended=True))
        elif kind == EXECUTION:
            execution = doc
            ts = ts_key(execution.get("start_time"))
            entries.append(("add", "executions", EXECUTIONS_KEY, f"{ts}:{validate_uuid(object_id)}"))
        elif kind == TAG:
            tag = doc
            for parent in tag["parents"]:
                entries.append(("add", "tag_children", validate_hash(parent), object_id))
            entity_id = tag["entity_id"]
            if entity_id:
                entries.append(("add", "tags_by_entity", validate_id(entity_id), object_id))
                if tag["key"] == CONTEXT_KEY and is_hash(tag["value"]):
                    entries.append(("add", "call_context", entity_id, tag["value"]))
        elif kind == HANDLE:
            handle = doc
            handle_hash = validate_hash(handle["hash"])
            entries.append(("put", "handles", handle_hash, object_id))
            entries.append(("add", "handles_by_name", handle_name_key(handle["fullname"]), handle_hash))
        elif kind == HANDLE_EDGE:
            edge = doc
            entries.append(("add", "handle_children", validate_hash(edge["parent"]), validate_hash(edge["child"])))
    except (KeyError, TypeError, AttributeError, InvalidId) as exc:
        raise CorruptObject(object_id, f"malformed {kind} payload: {exc!r}") from None
    return entries


def job_entries(job_id: str, job: dict, *, ended: bool) -> list[IndexEntry]:
    """Entries of a job; at its start (ended=False) only those a running job already implies."""
    job_id = validate_uuid(job_id)
    ts = ts_key(job.get("start_time"))
    entries: list[IndexEntry] = []
    if job.get("parent_id"):
        entries.append(("add", "job_children", validate_uuid(job["parent_id"]), f"{ts}:{job_id}"))
    if not ended:
        note = {k: job.get(k) for k in ("start_time", "task_hash", "parent_id", "execution_id")}
        entries.append(("put", "job_start", job_id, _json(note).decode()))
        return entries
    call_hash, args_hash = job.get("call_hash"), job.get("args_hash")
    if call_hash and args_hash and job.get("execution_id"):
        key = f"{validate_uuid(job['execution_id'])}:{validate_hash(job['task_hash'])}:{validate_hash(args_hash)}"
        entries.append(("add", "cse", key, f"{ts}:{job_id}:{validate_hash(call_hash)}"))
    return entries


# ---------------------------------------------------------------------------------------------
# redun's export format (serializers.py, VERSION 1), field for field.


def job_status(job: dict, result_type: str | None) -> str:
    """redun's derived Job.status (db Job.calc_status)."""
    if result_type == "redun.ErrorValue":
        return "FAILED"
    if not job.get("end_time"):
        return "RUNNING"
    if job.get("cached"):
        return "CACHED"
    return "DONE"


def to_export(
    kind: str,
    object_id: str,
    payload: bytes,
    *,
    job_children: list[str] | None = None,
    result_type: str | None = None,
) -> dict:
    """One stored object as a redun export record. Jobs need their children and result type."""
    if kind == VALUE:
        header, data = decode_value(payload, object_id)
        return {
            "_version": EXPORT_VERSION,
            "_type": "Value",
            "value_hash": object_id,
            "type": header["type"],
            "format": header["format"],
            "data": base64.b64encode(data).decode("utf8"),
            "subvalues": sorted(header["subvalues"]),
            "subtype": header.get("subtype"),
        }
    obj = _load(payload, object_id)
    if kind == CALL:
        return {
            "_version": EXPORT_VERSION,
            "_type": "CallNode",
            "call_hash": object_id,
            "task_name": obj["task_name"],
            "task_hash": obj["task_hash"],
            "args_hash": obj["args_hash"],
            "value_hash": obj["value_hash"],
            "timestamp": obj["timestamp"],
            "args": {
                key: {
                    "arg_hash": arg["arg_hash"],
                    "value_hash": arg["value_hash"],
                    "upstream": sorted(arg.get("upstream", [])),
                }
                for key, arg in obj["args"]
            },
            "children": list(obj["children"]),
        }
    if kind == JOB:
        return {
            "_version": EXPORT_VERSION,
            "_type": "Job",
            "id": object_id,
            "start_time": obj["start_time"],
            "end_time": obj["end_time"],
            "task_hash": obj["task_hash"],
            "cached": obj["cached"],
            "status": job_status(obj, result_type),
            "call_hash": obj["call_hash"],
            "parent_id": obj["parent_id"],
            "children": list(job_children or []),
            "execution_id": obj["execution_id"],
        }
    if kind == EXECUTION:
        return {
            "_version": EXPORT_VERSION,
            "_type": "Execution",
            "id": object_id,
            "args": obj["args"],
            "job_id": obj["job_id"],
        }
    if kind == TAG:
        return {
            "_version": EXPORT_VERSION,
            "_type": "Tag",
            "tag_hash": object_id,
            "entity_type": obj["entity_type"],
            "entity_id": obj["entity_id"],
            "key": obj["key"],
            "value": obj["value"],
            "parents": list(obj["parents"]),
        }
    raise ValueError(f"kind {kind!r} has no redun export record")


def record_id(record: dict) -> str:
    """The primary id of an export record (redun's RecordSerializer.get_pk)."""
    rtype = record.get("_type")
    field = {"Execution": "id", "Job": "id", "CallNode": "call_hash", "Value": "value_hash", "Tag": "tag_hash"}.get(
        rtype  # type: ignore[arg-type]
    )
    if field is None:
        raise ValueError(f"unknown record _type {rtype!r}")
    return record[field]


def from_export(record: dict) -> tuple[str, str, bytes]:
    """(kind, object_id, payload) for one redun export record; ids are validated."""
    if record.get("_version") != EXPORT_VERSION:
        raise ValueError(f"unsupported record version {record.get('_version')!r}")
    rtype = record.get("_type")
    if rtype == "Value":
        object_id = validate_hash(record["value_hash"])
        try:
            data = base64.b64decode(record["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"value {object_id}: bad base64 data: {exc}") from None
        payload = encode_value(
            record["type"], record["format"], data, [validate_hash(h) for h in record["subvalues"]],
            record.get("subtype"),
        )
        return VALUE, object_id, payload
    if rtype == "CallNode":
        object_id = validate_hash(record["call_hash"])
        args = {
            str(key): {
                "arg_hash": validate_hash(arg["arg_hash"]),
                "value_hash": validate_hash(arg["value_hash"]),
                "upstream": sorted(validate_hash(u) for u in arg.get("upstream", [])),
            }
            for key, arg in record["args"].items()
        }
        payload = encode_call(
            task_name=record["task_name"],
            task_hash=validate_hash(record["task_hash"]),
            args_hash=validate_hash(record["args_hash"]),
            value_hash=validate_hash(record["value_hash"]),
            timestamp=record["timestamp"],
            args=args,
            children=[validate_hash(c) for c in record["children"]],
        )
        return CALL, object_id, payload
    if rtype == "Job":
        object_id = validate_uuid(record["id"])
        payload = encode_job(
            start_time=record["start_time"],
            end_time=record["end_time"],
            task_hash=validate_hash(record["task_hash"]),
            cached=bool(record["cached"]),
            call_hash=validate_hash(record["call_hash"]) if record["call_hash"] else None,
            parent_id=validate_uuid(record["parent_id"]) if record["parent_id"] else None,
            execution_id=validate_uuid(record["execution_id"]),
        )
        return JOB, object_id, payload
    if rtype == "Execution":
        object_id = validate_uuid(record["id"])
        job_id = record.get("job_id")
        payload = encode_execution(args=record["args"], job_id=validate_uuid(job_id) if job_id else None)
        return EXECUTION, object_id, payload
    if rtype == "Tag":
        object_id = validate_hash(record["tag_hash"])
        entity_id = record["entity_id"]
        if entity_id and not (is_hash(entity_id) or is_uuid(entity_id)):
            validate_id(entity_id)
        payload = encode_tag(
            record["entity_type"], entity_id, record["key"], record["value"],
            [validate_hash(p) for p in record["parents"]],
        )
        return TAG, object_id, payload
    raise ValueError(f"unknown record _type {rtype!r}")


def argument_hash(call_hash: str, key: str, value_hash: str) -> str:
    """redun's arg_hash; key is the export key (a keyword, or a position as digits)."""
    position, name = (key, "None") if key.isdigit() else ("None", key)
    return hashing.hash_struct(["Argument", call_hash, position, name, value_hash])


def verify(kind: str, object_id: str, payload: bytes) -> None:
    """Recompute the ids derivable from the payload (tags, call arguments, handle records/edges).

    A CallNode's own hash covers children that may not have been recorded, so only its argument
    hashes can be checked.
    """
    if kind == CALL:
        obj = _load(payload, object_id)
        for key, arg in obj.get("args", []):
            if argument_hash(object_id, key, arg["value_hash"]) != arg["arg_hash"]:
                raise CorruptObject(object_id, f"argument {key!r} hash does not match")
    elif kind == TAG:
        obj = _load(payload, object_id)
        if tag_hash_of(obj) != object_id:
            raise CorruptObject(object_id, "tag hash does not match its payload")
    elif kind == HANDLE:
        obj = _load(payload, object_id)
        if handle_record_id(obj["hash"]) != object_id:
            raise CorruptObject(object_id, "handle record id does not match its payload")
    elif kind == HANDLE_EDGE:
        obj = _load(payload, object_id)
        if handle_edge_id(obj["parent"], obj["child"]) != object_id:
            raise CorruptObject(object_id, "handle edge id does not match its payload")
