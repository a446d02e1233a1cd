"""Tags: a content-addressed, append-only DAG. A tag is current iff no tag names it as a parent.

A tag's parents are part of its hash, so its edit edges live inside the tag object itself; the
index keeps the reverse edge (parent -> child), which is all "is it current?" needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from objstore import hashing, model
from objstore.backend.core import MISSING, Core
from objstore.model import tag as tag_kind

NULL_ENTITY = "Null"  # the entity type of delete tags
ENTITY_TYPES = ("Execution", "Job", "CallNode", "Task", "Value", "Null")

TagRow = tuple[str, str, str, Any]  # (tag_hash, entity_id, key, value)


class Tags:
    def __init__(self, core: Core):
        self.core = core

    def get_tag(self, tag_hash: str) -> Any:
        return self.core.get_meta(tag_hash, model.TAG)

    def is_current(self, tag_hash: str) -> bool:
        return not self.core.lookup_all("tag_children", tag_hash)

    def tag_children(self, tag_hash: str) -> list[str]:
        return self.core.lookup_all("tag_children", tag_hash)

    def entity_tag_hashes(self, entity_id: str) -> list[str]:
        """Every tag ever recorded on the entity (current or not)."""
        if not entity_id:
            return []
        return self.core.lookup_all("tags_by_entity", entity_id)

    def current_tags(self, entity_id: str) -> list[tuple[str, dict]]:
        out = []
        for tag_hash in self.entity_tag_hashes(entity_id):
            if self.is_current(tag_hash):
                tag = self.get_tag(tag_hash)
                if tag is not MISSING:
                    out.append((tag_hash, tag))
        return out

    def record_tags(
        self,
        entity_type: str,
        entity_id: str,
        tags: Iterable[tuple[str, Any]],
        parents: Iterable[str] = (),
        update: bool = False,
        new: bool = False,
    ) -> list[TagRow]:
        """redun's record_tags: returns the tags computed at this level (not recursive ones)."""
        tags = list(tags)
        if not tags:
            return []
        if entity_type not in ENTITY_TYPES:
            raise ValueError(f"unknown tag entity type {entity_type!r}")
        parents = list(parents)
        if update:
            keys = {key for key, _ in tags}
            parents.extend(h for h, tag in self.current_tags(entity_id) if tag["key"] in keys)
            new = True
        parents = sorted(parents)

        rows = [(hashing.hash_tag(entity_id, key, value, parents), key, value) for key, value in tags]
        if new:
            # Walk down past superseded tags until a fresh leaf: the tag is forced to be current.
            superseded = [row for row in rows if self.tag_children(row[0])]
            rows = [row for row in rows if not self.tag_children(row[0])]
            for tag_hash, key, value in superseded:
                self.record_tags(entity_type, entity_id, [(key, value)], parents=[tag_hash], new=True)

        for tag_hash, key, value in rows:
            if not self.core.has(tag_hash):
                self.core.add(model.TAG, tag_hash, tag_kind.KIND.encode(entity_type, entity_id, key, value, parents))
        return [(tag_hash, entity_id, key, value) for tag_hash, key, value in rows]

    def delete_tags(self, entity_id: str, tags: Iterable[tuple[str, Any]], keys: Iterable[str] = ()) -> list[TagRow]:
        """Supersede matching current tags with a delete tag (Null entity, key "", value None)."""
        wanted = {(key, hashing.json_dumps(value)) for key, value in tags}
        keys = set(keys)
        # No tags and no keys deletes *every* current tag of the entity, as redun's sqlite
        # backend does (its filter is an empty or_(), which SQLAlchemy renders as no condition).
        # Kept rather than treated as a bug: `redun tag rm <id> --` reaches it from the CLI and
        # has always cleared the entity there, so a user may rely on it.
        everything = not wanted and not keys
        parents = [
            tag_hash
            for tag_hash, tag in self.current_tags(entity_id)
            if everything or tag["key"] in keys or (tag["key"], hashing.json_dumps(tag["value"])) in wanted
        ]
        return self.record_tags(NULL_ENTITY, "", [("", None)], parents=parents)

    def update_tags(
        self, entity_type: str, entity_id: str, old_keys: Iterable[str], new_tags: Iterable[tuple[str, Any]]
    ) -> list[TagRow]:
        old_keys = set(old_keys)
        parents = [tag_hash for tag_hash, tag in self.current_tags(entity_id) if tag["key"] in old_keys]
        return self.record_tags(entity_type, entity_id, new_tags, parents=parents)

    def get_tags(self, entity_ids: Iterable[str]) -> dict[str, list[tuple[str, Any]]]:
        """Current tags per entity as (key, value) pairs; entities without tags are absent."""
        out: dict[str, list[tuple[str, Any]]] = {}
        for entity_id in entity_ids:
            pairs = [(tag["key"], tag["value"]) for _, tag in self.current_tags(entity_id)]
            if pairs:
                out[entity_id] = pairs
        return out
