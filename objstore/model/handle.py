"""Handles: an immutable graph of handle states (records and edges). Which states a rollback
invalidated is mutable and lives in a ref (objstore.layout.handle_ref), not in these objects."""

from __future__ import annotations

from typing import Any

from objstore import hashing
from objstore.errors import CorruptObject
from objstore.ids import validate_hash
from objstore.model.base import RecordKind, dump
from objstore.model.schema import IndexEntry, handle_name_key

HANDLE = "handle"
HANDLE_EDGE = "handle_edge"


def record_id(handle_hash: str) -> str:
    # A Handle's hash is also the value_hash of the Handle as a Value, so its graph record needs
    # an id of its own.
    return hashing.hash_struct(["HandleRecord", validate_hash(handle_hash)])


def edge_id(parent_hash: str, child_hash: str) -> str:
    return hashing.hash_struct(["HandleEdge", parent_hash, child_hash])


class Handle(RecordKind):
    name = HANDLE

    def encode(self, handle_hash: str, fullname: str, key: str, value_hash: str) -> bytes:
        return dump({"hash": handle_hash, "fullname": fullname, "key": key, "value_hash": value_hash})

    def verify_doc(self, object_id: str, doc: dict[str, Any]) -> None:
        if record_id(doc["hash"]) != object_id:
            raise CorruptObject(object_id, "handle record id does not match its payload")

    def entries(self, object_id: str, doc: dict[str, Any]) -> list[IndexEntry]:
        handle_hash = validate_hash(doc["hash"])
        return [
            ("put", "handles", handle_hash, object_id),
            ("add", "handles_by_name", handle_name_key(doc["fullname"]), handle_hash),
        ]


class HandleEdge(RecordKind):
    name = HANDLE_EDGE

    def encode(self, parent_hash: str, child_hash: str) -> bytes:
        return dump({"parent": parent_hash, "child": child_hash})

    def verify_doc(self, object_id: str, doc: dict[str, Any]) -> None:
        if edge_id(doc["parent"], doc["child"]) != object_id:
            raise CorruptObject(object_id, "handle edge id does not match its payload")

    def entries(self, object_id: str, doc: dict[str, Any]) -> list[IndexEntry]:
        return [("add", "handle_children", validate_hash(doc["parent"]), validate_hash(doc["child"]))]


HANDLE_KIND = Handle()
HANDLE_EDGE_KIND = HandleEdge()
