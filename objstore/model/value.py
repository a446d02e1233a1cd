"""Values: a JSON header (type, format, subvalues, subtype), a NUL, then the serialized bytes raw.

Tasks and Files are values with a subtype (``{"_type": "Task", ...}`` / ``{"_type": "File",
...}``), as in redun, where a Task's value hash is its task hash.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from typing import Any

from objstore.errors import CorruptObject
from objstore.ids import ObjectId, validate_hash
from objstore.model.base import Edge, RecordKind, dump, load_object
from objstore.model.schema import IndexEntry, path_key, task_name_key

NAME = "value"
ERROR_TYPE = "redun.ErrorValue"


def header(type_name: str, format: str, subvalues: Iterable[str] = (), subtype: dict | None = None) -> dict:
    return {"type": type_name, "format": format, "subvalues": sorted(set(subvalues)), "subtype": subtype}


def encode(
    type_name: str, format: str, data: bytes, subvalues: Iterable[str] = (), subtype: dict | None = None
) -> bytes:
    return dump(header(type_name, format, subvalues, subtype)) + b"\0" + bytes(data)


def split(payload: bytes, object_id: str = "?") -> tuple[dict, bytes]:
    """(header, data). Canonical JSON never holds a raw NUL, so the first one ends the header."""
    cut = payload.find(b"\0")
    if cut < 0:
        raise CorruptObject(object_id, "value payload has no header terminator")
    head = load_object(payload[:cut], object_id)
    for field in ("type", "format", "subvalues"):
        if field not in head:
            raise CorruptObject(object_id, f"value header lacks {field!r}")
    return head, payload[cut + 1 :]


def task_subtype(name: str, namespace: str, source: str) -> dict:
    return {"_type": "Task", "name": name, "namespace": namespace, "source": source}


def file_subtype(path: str) -> dict:
    return {"_type": "File", "path": path}


class Value(RecordKind):
    name = NAME
    export_type = "Value"
    export_id_field = "value_hash"

    def build(
        self,
        value_hash: str,
        type_name: str,
        format: str,
        data: bytes,
        subvalues: Iterable[str] = (),
        subtype: dict | None = None,
    ) -> tuple[bytes, list[IndexEntry]]:
        """(payload, index entries) of a value, without parsing back the header just built."""
        head = header(type_name, format, subvalues, subtype)
        return dump(head) + b"\0" + bytes(data), self.entries_of(value_hash, head)

    def decode(self, payload: bytes, object_id: str) -> dict[str, Any]:
        return split(payload, object_id)[0]

    def entries(self, object_id: str, doc: dict[str, Any]) -> list[IndexEntry]:
        out: list[IndexEntry] = []
        for child in doc["subvalues"]:
            out.append(("add", "subvalues", object_id, validate_hash(child)))
            out.append(("add", "value_parents", child, object_id))
        out.append(("put", "value_type", object_id, str(doc["type"])))
        subtype = doc.get("subtype")
        if subtype and subtype.get("_type") == "File" and isinstance(subtype.get("path"), str):
            out.append(("add", "files_by_path", path_key(subtype["path"]), object_id))
        if subtype and subtype.get("_type") == "Task":
            name_key = task_name_key(subtype.get("namespace"), subtype["name"])
            out.append(("put", "task_name", object_id, name_key))
            out.append(("add", "tasks_by_name", name_key, object_id))
        return out

    def edges(self, object_id: str, doc: dict[str, Any]) -> Iterator[Edge]:
        for child in doc.get("subvalues", ()):
            yield NAME, child

    def to_export(self, object_id: str, payload: bytes, **context: Any) -> dict[str, Any]:
        head, data = split(payload, object_id)
        return {
            **self.export_header(),
            "value_hash": object_id,
            "type": head["type"],
            "format": head["format"],
            "data": base64.b64encode(data).decode("utf8"),
            "subvalues": sorted(head["subvalues"]),
            "subtype": head.get("subtype"),
        }

    def from_export(self, record: dict[str, Any]) -> tuple[ObjectId, bytes]:
        object_id = validate_hash(record["value_hash"])
        try:
            data = base64.b64decode(record["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"value {object_id}: bad base64 data: {exc}") from None
        subvalues = [validate_hash(h) for h in record["subvalues"]]
        return object_id, encode(record["type"], record["format"], data, subvalues, record.get("subtype"))


KIND = Value()
