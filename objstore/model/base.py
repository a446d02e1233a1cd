"""What every record kind knows about itself. Pure.

A kind owns its payload (canonical JSON, or a JSON header and raw bytes for values), the checks
a reader can make on it, the index entries it implies, its form in redun's export stream and
the edges redun's graph walk follows from it. Adding a kind is one module and one line in the
registry (objstore.model).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

from objstore.codec import canonical_json
from objstore.errors import CorruptObject, InvalidId
from objstore.ids import ObjectId
from objstore.model.schema import IndexEntry

EXPORT_VERSION = 1  # redun's serializer VERSION

# (kind name, id): an edge of redun's record graph. TASK names a task reached from a job or a
# call node: only its tags are followed, as redun's walk does.
Edge = tuple[str, str]
TASK = "task"


_DECODER = json.JSONDecoder()


def load_object(payload: bytes, object_id: str) -> dict[str, Any]:
    """A JSON-object payload; CorruptObject naming the object otherwise."""
    try:
        # Payloads are UTF-8 (canonical JSON): skipping json.loads's encoding sniffing makes
        # decoding 40% faster, which a job tree or a replica build pays per object.
        obj = _DECODER.decode(bytes(payload).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptObject(object_id, f"bad JSON payload: {exc}") from None
    if not isinstance(obj, dict):
        raise CorruptObject(object_id, "payload is not a JSON object")
    return obj


def dump(doc: Any) -> bytes:
    return canonical_json(doc)


class RecordKind:
    """Base of one record kind. Subclasses set ``name`` and override what applies to them."""

    name: ClassVar[str]  # the kind in the object header
    export_type: ClassVar[str | None] = None  # redun's `_type`, when redun's export knows it
    export_id_field: ClassVar[str | None] = None  # the primary key field of that record

    def decode(self, payload: bytes, object_id: str) -> dict[str, Any]:
        """The record's metadata as a dict."""
        return load_object(payload, object_id)

    def verify(self, object_id: str, payload: bytes) -> None:
        """Recompute whatever the payload lets a reader recompute (ids); CorruptObject if off."""
        if type(self).verify_doc is not RecordKind.verify_doc:  # nothing to decode for the others
            self.verify_doc(object_id, self.decode(payload, object_id))

    def verify_doc(self, object_id: str, doc: dict[str, Any]) -> None:
        """``verify`` from the decoded document (a reader that decodes it anyway saves a parse)."""

    def entries(self, object_id: str, doc: dict[str, Any]) -> list[IndexEntry]:
        """The index entries this record implies (beyond ("put", "objects", id, kind))."""
        return []

    def edges(self, object_id: str, doc: dict[str, Any]) -> Iterator[Edge]:
        """The records redun's graph walk reaches from this one, read from the record itself."""
        return iter(())

    def to_export(self, object_id: str, payload: bytes, **context: Any) -> dict[str, Any]:
        """The redun export record; ``doc=`` may pass the payload already decoded."""
        raise ValueError(f"kind {self.name!r} has no redun export record")

    def doc_of(self, object_id: str, payload: bytes, context: dict[str, Any]) -> dict[str, Any]:
        doc = context.get("doc")
        return doc if isinstance(doc, dict) else self.decode(payload, object_id)

    def from_export(self, record: dict[str, Any]) -> tuple[ObjectId, bytes]:
        """(object_id, payload) of one redun export record of this kind; ids are validated."""
        raise ValueError(f"kind {self.name!r} has no redun export record")

    # -- derived once -------------------------------------------------------------------------

    def derive_entries(self, object_id: str, payload: bytes) -> list[IndexEntry]:
        return self.entries_of(object_id, self.decode(payload, object_id))

    def entries_of(self, object_id: str, doc: dict[str, Any]) -> list[IndexEntry]:
        """Every index entry of the record, from its decoded document; a malformed document is a
        CorruptObject naming the object, never a KeyError deep in a builder."""
        try:
            return [("put", "objects", object_id, self.name), *self.entries(object_id, doc)]
        except (KeyError, TypeError, AttributeError, InvalidId) as exc:
            raise CorruptObject(object_id, f"malformed {self.name} payload: {exc!r}") from None

    def export_header(self) -> dict[str, Any]:
        return {"_version": EXPORT_VERSION, "_type": self.export_type}

    def __repr__(self) -> str:
        return f"<record kind {self.name}>"


__all__ = ["RecordKind", "EXPORT_VERSION", "Edge", "TASK", "load_object", "dump"]
