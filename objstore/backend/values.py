"""Values: serialized bytes with their type, subvalues and File/Task subtype."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from objstore import model
from objstore.backend.core import MISSING, Core, log
from objstore.errors import CorruptObject, ValueTooLarge
from objstore.ids import validate_hash
from objstore.model import value as value_kind

DEFAULT_MAX_VALUE_SIZE = 1_000_000_000  # redun's default max_value_size


@dataclass(frozen=True)
class ValueSpec:
    """One value to record, already hashed and serialized by the scheduler's type system."""

    value_hash: str
    type: str
    format: str
    data: bytes
    subtype: dict | None = None  # model.value.file_subtype(path) / task_subtype(...)


@dataclass(frozen=True)
class StoredValue:
    value_hash: str
    type: str
    format: str
    data: bytes
    subvalues: list[str] = field(default_factory=list)
    subtype: dict | None = None


class Values:
    def __init__(self, core: Core, *, max_value_size: int = DEFAULT_MAX_VALUE_SIZE):
        self.core = core
        self.max_value_size = max_value_size

    def check_size(self, size: int, what: str = "value") -> None:
        if size > self.max_value_size:
            raise ValueTooLarge(
                f"{what} is too large ({size} > max_value_size {self.max_value_size}) to store"
            )

    def has_value(self, value_hash: str) -> bool:
        return self.core.has_kind(value_hash, model.VALUE)

    def record_value(self, spec: ValueSpec, subvalues: Sequence[ValueSpec] = ()) -> bool:
        """Store a value (and, if it is new, its subvalues). True if it was new.

        Like redun, subvalue links are only written with a new parent: values are immutable.
        """
        validate_hash(spec.value_hash)
        self.check_size(len(spec.data))
        if self.core.has(spec.value_hash):
            return False
        subs = [s for s in subvalues if s.value_hash != spec.value_hash]
        for sub in subs:
            validate_hash(sub.value_hash)
            self.check_size(len(sub.data), "subvalue")
        payload, entries = value_kind.KIND.build(
            spec.value_hash, spec.type, spec.format, spec.data, [s.value_hash for s in subs], spec.subtype
        )
        self.core.add(model.VALUE, spec.value_hash, payload, entries)
        for sub in subs:
            if not self.core.has(sub.value_hash):
                payload, entries = value_kind.KIND.build(sub.value_hash, sub.type, sub.format, sub.data, (), sub.subtype)
                self.core.add(model.VALUE, sub.value_hash, payload, entries)
        return True

    def get_value(self, value_hash: str) -> Any:
        """The StoredValue, or MISSING (absent or corrupt; corruption is logged)."""
        got = self.core.get_or_missing(value_hash, model.VALUE)
        if got is MISSING:
            return MISSING
        try:
            header, data = value_kind.split(got[1], value_hash)
        except CorruptObject as exc:
            log.warning("objstore: ignoring corrupt object: %s", exc)
            return MISSING
        return StoredValue(
            value_hash, header["type"], header["format"], data, list(header["subvalues"]), header.get("subtype")
        )

    def get_subvalues(self, value_hash: str) -> list[str]:
        return self.core.lookup_all("subvalues", value_hash)
