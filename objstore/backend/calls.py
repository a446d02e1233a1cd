"""CallNodes: a call's arguments (with upstream call nodes), children in call order, subtree tasks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from objstore import hashing, model
from objstore.backend.core import Core
from objstore.ids import validate_hash
from objstore.model import call as call_kind
from objstore.model import schema
from objstore.model.times import format_timestamp


@dataclass(frozen=True)
class ArgSpec:
    """One argument: a position (positional) or a key (keyword), its value and upstream calls."""

    value_hash: str
    position: int | None = None
    key: str | None = None
    upstream: Sequence[str] = field(default_factory=tuple)

    @property
    def export_key(self) -> str:
        return self.key if self.key is not None else str(self.position)


class Calls:
    def __init__(self, core: Core):
        self.core = core

    def record_call_node(
        self,
        *,
        task_name: str,
        task_hash: str,
        args_hash: str,
        result_hash: str,
        child_call_hashes: Sequence[str],
        args: Iterable[ArgSpec],
        subtree_task_hashes: Iterable[str],
        timestamp: datetime | None = None,
        call_hash: str | None = None,
    ) -> str:
        """Record a finished call; returns redun's call_hash. Idempotent (existing node kept).

        Children not recorded (prov=False) are left out of the stored children, as redun does;
        the hash still covers all of them.
        """
        if call_hash is None:  # an adapter that already hashed the node passes it
            call_hash = hashing.hash_call_node(task_hash, args_hash, result_hash, list(child_call_hashes))
        if self.core.has(call_hash):
            return call_hash
        core = self.core
        children = [c for c in child_call_hashes if core.kind_of(c) == model.CALL]
        stored_args: dict[str, dict] = {}
        for arg in args:
            key = arg.export_key
            stored_args[key] = {
                "arg_hash": call_kind.argument_hash(call_hash, key, arg.value_hash),
                "value_hash": validate_hash(arg.value_hash),
                "upstream": sorted({validate_hash(u) for u in arg.upstream}),
            }
        payload, entries = call_kind.KIND.build(
            call_hash,
            task_name=task_name,
            task_hash=validate_hash(task_hash),
            args_hash=validate_hash(args_hash),
            value_hash=validate_hash(result_hash),
            timestamp=format_timestamp(timestamp or datetime.now(UTC)),
            args=stored_args,
            children=children,
            subtree_tasks=[validate_hash(t) for t in subtree_task_hashes],
        )
        core.add(model.CALL, call_hash, payload, entries)
        return call_hash

    def get_call_node(self, call_hash: str) -> Any:
        """The call's metadata dict (args as [[key, arg], ...]) or MISSING."""
        return self.core.get_meta(call_hash, model.CALL)

    def has_call_node(self, call_hash: str) -> bool:
        """Recorded and readable as far as this process knows (see Core.has)."""
        return self.core.has_kind(call_hash, model.CALL)

    def get_subtree_tasks(self, call_hash: str) -> set[str]:
        return set(self.core.lookup_all("call_subtree", call_hash))

    def call_result(self, call_hash: str) -> Any:
        return self.core.lookup("call_result", call_hash)

    def calls_for(self, task_hash: str, args_hash: str) -> list[str]:
        """Call hashes with this (task_hash, args_hash), newest first."""
        entries = self.core.lookup_all("calls_by_eval", schema.eval_key(task_hash, args_hash))
        return [schema.timed_id(entry) for entry in reversed(entries)]

    def contexts_of(self, call_hash: str) -> set[str]:
        return set(self.core.lookup_all("call_context", call_hash))
