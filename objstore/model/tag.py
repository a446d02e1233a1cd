"""Tags: a content-addressed, append-only DAG. A tag's parents (the tags it supersedes) are part
of its hash; the index keeps the reverse edge, and a tag is current iff nothing names it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from objstore import hashing
from objstore.errors import CorruptObject
from objstore.ids import ObjectId, is_hash, validate_hash, validate_id
from objstore.model.base import Edge, RecordKind, dump
from objstore.model.schema import IndexEntry

NAME = "tag"
CONTEXT_KEY = "redun.context"


def tag_doc(entity_type: str, entity_id: str, key: str, value: Any, parents: Iterable[str]) -> dict[str, Any]:
    return {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "key": key,
        "value": value,
        "parents": sorted(set(parents)),
    }


def tag_hash_of(doc: dict[str, Any]) -> str:
    return hashing.hash_tag(doc["entity_id"], doc["key"], doc["value"], sorted(doc["parents"]))


class Tag(RecordKind):
    name = NAME
    export_type = "Tag"
    export_id_field = "tag_hash"

    def encode(self, entity_type: str, entity_id: str, key: str, value: Any, parents: Iterable[str]) -> bytes:
        return dump(tag_doc(entity_type, entity_id, key, value, parents))

    def verify_doc(self, object_id: str, doc: dict[str, Any]) -> None:
        if tag_hash_of(doc) != object_id:
            raise CorruptObject(object_id, "tag hash does not match its payload")

    def entries(self, object_id: str, doc: dict[str, Any]) -> list[IndexEntry]:
        out: list[IndexEntry] = [("add", "tag_children", validate_hash(p), object_id) for p in doc["parents"]]
        entity_id = doc["entity_id"]
        if entity_id:
            out.append(("add", "tags_by_entity", validate_id(entity_id), object_id))
            if doc["key"] == CONTEXT_KEY and is_hash(doc["value"]):
                out.append(("add", "call_context", entity_id, doc["value"]))
        return out

    def edges(self, object_id: str, doc: dict[str, Any]) -> Iterator[Edge]:
        # Child tags and the entity's tags are index queries, added by the caller's walk.
        for parent in doc.get("parents", ()):
            yield NAME, parent

    def to_export(self, object_id: str, payload: bytes, **context: Any) -> dict[str, Any]:
        obj = self.decode(payload, object_id)
        return {
            **self.export_header(),
            "tag_hash": object_id,
            "entity_type": obj["entity_type"],
            "entity_id": obj["entity_id"],
            "key": obj["key"],
            "value": obj["value"],
            "parents": list(obj["parents"]),
        }

    def from_export(self, record: dict[str, Any]) -> tuple[ObjectId, bytes]:
        object_id = validate_hash(record["tag_hash"])
        entity_id = record["entity_id"]
        if entity_id:
            validate_id(entity_id)
        parents = [validate_hash(p) for p in record["parents"]]
        return object_id, self.encode(record["entity_type"], entity_id, record["key"], record["value"], parents)


KIND = Tag()
