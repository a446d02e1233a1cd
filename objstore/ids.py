"""Typed ids and their validation. Pure: nothing here touches I/O.

Only strings that pass these checks ever become part of a path: a 40-hex hash (redun's
truncated sha512) or a canonical lowercase uuid (redun's Job and Execution ids).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NewType

from objstore.errors import InvalidId

Hash = NewType("Hash", str)  # 40 lowercase hex chars
Uuid = NewType("Uuid", str)  # canonical 8-4-4-4-12 lowercase uuid
ObjectId = Hash | Uuid

_HASH_RE = re.compile(r"[0-9a-f]{40}")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_hash(text: object) -> bool:
    return isinstance(text, str) and _HASH_RE.fullmatch(text) is not None


def is_uuid(text: object) -> bool:
    return isinstance(text, str) and _UUID_RE.fullmatch(text) is not None


_ID = r"(?:[0-9a-f]{40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
_ID_LINES = re.compile(rf"{_ID}(?:\n{_ID})*")


def all_ids(texts: Sequence[str]) -> bool:
    """Whether every str of ``texts`` is_hash or is_uuid: a length pass and one regex over them
    joined, in C (a toc or a journal listing holds up to millions). The lengths come first: one
    string holding "id\nid" must not pass as two ids."""
    return not texts or (set(map(len, texts)) <= {36, 40} and _ID_LINES.fullmatch("\n".join(texts)) is not None)


def validate_hash(text: object) -> Hash:
    if not is_hash(text):
        raise InvalidId(f"not a 40-hex hash: {text!r}")
    return Hash(text)  # type: ignore[arg-type]


def validate_uuid(text: object) -> Uuid:
    if not is_uuid(text):
        raise InvalidId(f"not a uuid: {text!r}")
    return Uuid(text)  # type: ignore[arg-type]


def validate_id(text: object) -> ObjectId:
    """A hash or a uuid; anything else (including '../x', uppercase, whitespace) is refused."""
    if is_hash(text) or is_uuid(text):
        return text  # type: ignore[return-value]
    raise InvalidId(f"not an object id (40-hex hash or uuid): {text!r}")


def fanout_path(object_id: str) -> str:
    """'abcdef…' -> 'ab/cdef…' after validation; the only way an id becomes a relative path."""
    object_id = validate_id(object_id)
    return f"{object_id[:2]}/{object_id[2:]}"
