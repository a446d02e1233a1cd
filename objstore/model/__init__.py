"""The record kinds and their registry. Pure: no I/O, no redun import.

Every provenance record is one immutable object keyed by its redun id (value_hash, call_hash,
tag_hash, job or execution uuid). Each kind is one class (``objstore.model.<kind>``) owning its
payload, checks, index entries, redun export form and graph edges; the functions below
dispatch on the kind name, so callers never branch on kinds themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from objstore.errors import CorruptObject, InvalidId
from objstore.ids import ObjectId
from objstore.model import call, handle, job, tag, value
from objstore.model.base import EXPORT_VERSION, TASK, Edge, RecordKind
from objstore.model.schema import EXECUTIONS_KEY, TABLES, IndexEntry

# Kind names, as object headers spell them.
VALUE = value.NAME
CALL = call.NAME
JOB = job.JOB
EXECUTION = job.EXECUTION
TAG = tag.NAME
HANDLE = handle.HANDLE
HANDLE_EDGE = handle.HANDLE_EDGE

REGISTRY: dict[str, RecordKind] = {
    k.name: k
    for k in (
        value.KIND, call.KIND, job.JOB_KIND, job.EXECUTION_KIND, tag.KIND,
        handle.HANDLE_KIND, handle.HANDLE_EDGE_KIND,
    )
}  # fmt: skip
KINDS = tuple(REGISTRY)

# The five kinds redun's export format knows (_type -> kind name); the rest travel in
# objstore's own stream only, because stock redun's import crashes on an unknown _type.
EXPORT_TYPES: dict[str, str] = {k.export_type: name for name, k in REGISTRY.items() if k.export_type}
EXPORT_KINDS = tuple(EXPORT_TYPES.values())


# The version of what derive_entries implies. A journal segment records the one its writer used;
# the objects a segment of an older one lists are derived again when it is ingested, so an index
# never lacks the entries a newer objstore reads (2: the query tables value_parents,
# files_by_path, calls_by_result, calls_by_arg and jobs_by_call).
DERIVATION = 2
_CHANGED_AT: dict[int, tuple[str, ...]] = {2: (VALUE, CALL, JOB)}


def rederived_kinds(derivation: int) -> frozenset[str]:
    """The kinds whose index entries changed since ``derivation`` (empty when it is current)."""
    return frozenset(k for version, kinds in _CHANGED_AT.items() if version > derivation for k in kinds)


def kind(name: str) -> RecordKind:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown record kind {name!r}") from None


def decode(kind_name: str, payload: bytes, object_id: str = "?") -> dict[str, Any]:
    """The record's metadata as a dict (a value's header for a value)."""
    return kind(kind_name).decode(payload, object_id)


def derive_entries(kind_name: str, object_id: str, payload: bytes) -> list[IndexEntry]:
    """Every index entry an object implies; the journal and a full-scan reindex both use it.
    An object of a kind this objstore does not know implies only its ``objects`` entry."""
    known = REGISTRY.get(kind_name)
    if known is None:
        return [("put", "objects", object_id, kind_name)]
    return known.derive_entries(object_id, payload)


def verify(kind_name: str, object_id: str, payload: bytes) -> None:
    """Recompute the ids derivable from the payload; CorruptObject naming the object if off."""
    known = REGISTRY.get(kind_name)
    if known is None:
        return
    try:
        known.verify(object_id, payload)
    except (KeyError, TypeError, AttributeError, InvalidId) as exc:
        raise CorruptObject(object_id, f"malformed {kind_name} payload: {exc!r}") from None


def verify_doc(kind_name: str, object_id: str, doc: dict[str, Any]) -> None:
    """``verify`` from a document already decoded (``decode``)."""
    known = REGISTRY.get(kind_name)
    if known is None:
        return
    try:
        known.verify_doc(object_id, doc)
    except (KeyError, TypeError, AttributeError, InvalidId) as exc:
        raise CorruptObject(object_id, f"malformed {kind_name} payload: {exc!r}") from None


def edges(kind_name: str, object_id: str, doc: dict[str, Any]) -> Iterator[Edge]:
    known = REGISTRY.get(kind_name)
    return known.edges(object_id, doc) if known is not None else iter(())


def to_export(kind_name: str, object_id: str, payload: bytes, **context: Any) -> dict[str, Any]:
    """One stored object as a redun export record (jobs take job_children and result_type)."""
    return kind(kind_name).to_export(object_id, payload, **context)


def _export_kind(record: dict[str, Any]) -> RecordKind:
    rtype = record.get("_type")
    name = EXPORT_TYPES.get(rtype) if isinstance(rtype, str) else None
    if name is None:
        raise ValueError(f"unknown record _type {rtype!r}")
    return REGISTRY[name]


def record_id(record: dict[str, Any]) -> str:
    """The primary id of an export record (redun's RecordSerializer.get_pk)."""
    field = _export_kind(record).export_id_field
    assert field is not None
    return record[field]


def from_export(record: dict[str, Any]) -> tuple[str, ObjectId, bytes]:
    """(kind, object_id, payload) for one redun export record; ids are validated."""
    if record.get("_version") != EXPORT_VERSION:
        raise ValueError(f"unsupported record version {record.get('_version')!r}")
    k = _export_kind(record)
    object_id, payload = k.from_export(record)
    return k.name, object_id, payload


__all__ = [
    "VALUE", "CALL", "JOB", "EXECUTION", "TAG", "HANDLE", "HANDLE_EDGE", "KINDS", "REGISTRY",
    "EXPORT_TYPES", "EXPORT_KINDS", "EXPORT_VERSION", "EXECUTIONS_KEY", "TABLES", "TASK", "Edge",
    "IndexEntry", "RecordKind", "DERIVATION", "rederived_kinds", "kind", "decode", "derive_entries", "verify",
    "verify_doc", "edges",
    "to_export", "record_id", "from_export", "call", "handle", "job", "tag", "value",
]
