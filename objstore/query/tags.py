"""Tags as `redun tag` reads and writes them: key=value parsing, counts, and edits.

Edits go through the backend's Tags, the calls redun's ``apply_tags`` and its `tag add / update /
rm` commands make (record_tags(new=True) / record_tags(update=True) / delete_tags), so their
supersession is redun's: a tag is current until a newer tag names it as a parent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from objstore import model
from objstore.backend import MISSING
from objstore.errors import InvalidId
from objstore.query.lists import ANY_VALUE
from objstore.query.log import LogQuery
from objstore.query.preview import trim
from objstore.query.reads import BATCH
from objstore.query.results import TagCount, TagInfo

_LITERALS = {"true": True, "false": False, "null": None}
ENTITY_OF_KIND = {model.EXECUTION: "Execution", model.JOB: "Job", model.CALL: "CallNode", model.VALUE: "Value"}


def parse_tag_value(text: str) -> Any:
    """redun's parse_tag_value: JSON for [ { and ", then int, float, true/false/null, else text."""
    if not text:
        return None
    if text[0] in '[{"':
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"invalid tag value {text!r}: {exc}") from None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return _LITERALS.get(text, text)


def parse_tag(text: str, *, value_required: bool = True) -> tuple[str, Any]:
    """``key=value`` (redun's parse_tag_key_value); ``key`` alone is (key, ANY_VALUE) unless a
    value is required."""
    if not text:
        raise ValueError("a tag key must be given")
    if "=" not in text:
        if value_required:
            raise ValueError(f"key=value expected, not {text!r}")
        return text, ANY_VALUE
    key, value = text.split("=", 1)
    if not key:
        raise ValueError(f"a tag key must be given: {text!r}")
    return key, parse_tag_value(value)


def format_tag_value(value: Any) -> str:
    """redun's format_tag_value: a plain string bare, anything else as JSON."""
    if isinstance(value, str) and not re.match(".*[ ,].*", value) and isinstance(parse_tag_value(value), str):
        return value
    return json.dumps(value, sort_keys=True)


def format_tag(key: str, value: Any, max_length: int = 50) -> str:
    return f"{trim(key, max_length)}={trim(format_tag_value(value), max_length)}"


def format_tags(tags: list[tuple[str, Any]], max_length: int = 50) -> str:
    """``(k=v, …)`` sorted, as redun's log prints a record's tags; '' without tags."""
    if not tags:
        return ""
    return "(" + ", ".join(sorted(format_tag(k, v, max_length) for k, v in tags)) + ")"


# -- reading ------------------------------------------------------------------------------------


def all_tags(q: LogQuery, *, current_only: bool = True) -> list[TagInfo]:
    """Every tag (current ones only, by default), delete tags left out."""
    ids = [object_id for object_id, kind in q.prov.repo.scan("objects") if kind == model.TAG]
    out = []
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        metas = q.core.get_many_meta(batch, model.TAG)
        for tag_hash in batch:
            doc = metas.get(tag_hash)
            if doc is None:
                q.damaged(tag_hash, "tag")
                continue
            current = q.prov.tags.is_current(tag_hash)
            if (current_only and not current) or not doc.get("key"):
                continue
            out.append(TagInfo(tag_hash, doc["entity_type"], doc["entity_id"], doc["key"], doc["value"],
                               list(doc.get("parents", [])), current))  # fmt: skip
    return out


def tag_counts(q: LogQuery, *, by_value: bool, filters: Sequence[tuple[str, Any]] = ()) -> list[TagCount]:
    """redun's `tag list`: current tags counted per key (``by_value``: per key=value) and entity
    type, sorted by key (then value)."""
    groups: dict[tuple[str, str], dict[str, int]] = {}
    values: dict[tuple[str, str], Any] = {}
    for tag in all_tags(q):
        if filters and not any(tag.key == k and (v is ANY_VALUE or tag.value == v) for k, v in filters):
            continue
        shown = json.dumps(tag.value, sort_keys=True) if by_value else ""
        group = groups.setdefault((tag.key, shown), {})
        values[(tag.key, shown)] = tag.value if by_value else None
        group[tag.entity_type] = group.get(tag.entity_type, 0) + 1
    return [TagCount(key, values[(key, shown)], dict(sorted(groups[(key, shown)].items())))
            for key, shown in sorted(groups)]  # fmt: skip


def entity(q: LogQuery, text: str) -> tuple[str, str]:
    """(entity type, full id) of what an id prefix (or - / ~N) names, as redun's tag commands
    resolve it: an execution, job, call node, task or value."""
    kind, record_id = q.resolver.any(text)
    if kind == model.VALUE:
        info = q.value_info(record_id)
        if info is not None and info.is_task:
            return "Task", record_id
    if kind not in ENTITY_OF_KIND:
        raise InvalidId(f"{record_id} is a {kind}, which cannot be tagged")
    if kind == model.JOB and q.prov.jobs.get_job_info(record_id) is MISSING:
        raise InvalidId(f"no job {record_id}")
    return ENTITY_OF_KIND[kind], record_id


# -- writing ------------------------------------------------------------------------------------


def add_tags(q: LogQuery, entity_type: str, entity_id: str, tags: list[tuple[str, Any]]) -> None:
    """`redun tag add`: new current tags (an equal tag that was superseded is made current again)."""
    q.prov.tags.record_tags(entity_type, entity_id, tags, new=True)


def update_tags(q: LogQuery, entity_type: str, entity_id: str, tags: list[tuple[str, Any]]) -> None:
    """`redun tag update`: supersede the entity's current tags of these keys with these."""
    q.prov.tags.record_tags(entity_type, entity_id, tags, update=True)


def remove_tags(q: LogQuery, entity_id: str, tags: list[tuple[str, Any]], keys: list[str]) -> None:
    """`redun tag rm`: supersede the matching current tags with a delete tag."""
    q.prov.tags.delete_tags(entity_id, tags, keys)


__all__ = [
    "parse_tag", "parse_tag_value", "format_tag", "format_tag_value", "format_tags", "all_tags",
    "tag_counts", "entity", "add_tags", "update_tags", "remove_tags", "ENTITY_OF_KIND",
]
