"""Cache checks: CSE, ULTIMATE and SINGLE, decided exactly as redun's sqlite backend decides.

Every step is a constant number of index lookups: CSE reads one key (execution, task, args),
ULTIMATE one key (task, args) plus each candidate's subtree tasks, SINGLE one eval head. A value
that cannot be loaded (missing or corrupt object behind a head) is a miss, never a wrong hit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from objstore.backend.calls import Calls
from objstore.backend.core import MISSING, Core, log
from objstore.backend.values import Values
from objstore.ids import validate_hash
from objstore.model import schema

CSE, SINGLE, ULTIMATE, MISS = "CSE", "SINGLE", "ULTIMATE", "MISS"
SCOPE_NONE, SCOPE_CSE, SCOPE_BACKEND = "NONE", "CSE", "BACKEND"
VALID_FULL, VALID_SHALLOW = "full", "shallow"

# load(value_hash) -> (value, ok): the scheduler's deserializer.
Loader = Callable[[str], tuple[Any, bool]]


class Cache:
    def __init__(self, core: Core, values: Values, calls: Calls):
        self.core = core
        self.values = values
        self.calls = calls

    # -- eval cache (SINGLE) -----------------------------------------------------------------

    def set_eval_cache(self, eval_hash: str, value_hash: str) -> None:
        """Point eval_hash at value_hash (last writer wins). The value must be recorded first."""
        self.core.set_eval_head(validate_hash(eval_hash), validate_hash(value_hash))

    def get_eval_cache(self, eval_hash: str) -> Any:
        """The value_hash under eval_hash, or MISSING."""
        return self.core.eval_head(eval_hash)

    def _stored_loader(self, value_hash: str) -> tuple[Any, bool]:
        stored = self.values.get_value(value_hash)
        return (None, False) if stored is MISSING else (stored, True)

    def _load(self, value_hash: Any, load: Loader, why: str) -> tuple[Any, bool]:
        if value_hash is MISSING:
            return None, False
        if not self.values.has_value(value_hash) and self.core.get_or_missing(value_hash) is MISSING:
            log.warning("objstore: %s points at value %s, which is missing: cache miss", why, value_hash)
            return None, False
        try:
            result, ok = load(value_hash)
        except Exception as exc:  # a value that cannot be read back is a miss, never a crash
            log.warning("objstore: cannot load value %s (%s): cache miss", value_hash, exc)
            return None, False
        if not ok:
            log.warning("objstore: value %s behind %s cannot be loaded: cache miss", value_hash, why)
        return result, ok

    def load_call_result(self, call_hash: str, load: Loader) -> tuple[Any, bool]:
        value_hash = self.calls.call_result(call_hash)
        if value_hash is MISSING:
            call = self.calls.get_call_node(call_hash)
            value_hash = call["value_hash"] if call is not MISSING else MISSING
        return self._load(value_hash, load, f"call node {call_hash}")

    # -- the check ---------------------------------------------------------------------------

    def _context_ok(self, call_hash: str, context_hash: str | None) -> bool:
        return not context_hash or context_hash in self.calls.contexts_of(call_hash)

    def cse_candidate(self, execution_id: str, task_hash: str, args_hash: str, context_hash: str | None) -> Any:
        """call_hash of the newest ended job of this execution with (task, args), or MISSING."""
        entries = self.core.lookup_all("cse", schema.cse_key(execution_id, task_hash, args_hash))
        for entry in reversed(entries):
            _, call_hash = schema.untimed(entry)
            if not self.calls.has_call_node(call_hash):
                continue  # redun joins Job to CallNode: a job without its node is not a candidate
            if self._context_ok(call_hash, context_hash):
                return call_hash
        return MISSING

    def ultimate_candidate(
        self, task_hash: str, args_hash: str, current_task_hashes: set[str], context_hash: str | None
    ) -> Any:
        """The newest call node with (task, args) whose subtree tasks are all current, or MISSING."""
        for call_hash in self.calls.calls_for(task_hash, args_hash):
            if not self._context_ok(call_hash, context_hash):
                continue
            if self.calls.get_subtree_tasks(call_hash) <= current_task_hashes:
                return call_hash
        return MISSING

    def check_cache(
        self,
        task_hash: str,
        args_hash: str,
        eval_hash: str,
        execution_id: str,
        current_task_hashes: Iterable[str],
        cache_scope: str,
        check_valid: str,
        context_hash: str | None = None,
        allowed: set[str] | None = None,
        load: Loader | None = None,
    ) -> tuple[Any, str | None, str]:
        """(result, call_hash, result type) following redun's RedunBackendDb.check_cache.

        A miss reads the journal segments other writers added since this index last looked
        (Core.catch_up, rate-limited) and checks once more: a hit recorded by another host or
        process must not stay a miss for the life of this one."""
        load = load or self._stored_loader
        if allowed is None:
            allowed = {CSE, SINGLE, ULTIMATE, MISS}
        if cache_scope == SCOPE_NONE:
            return None, None, MISS
        current = current_task_hashes if isinstance(current_task_hashes, set) else set(current_task_hashes)
        args = (task_hash, args_hash, eval_hash, execution_id, current, cache_scope, check_valid, context_hash,
                allowed, load)  # fmt: skip
        found = self._check(*args)
        if found[2] == MISS and self.core.catch_up():
            found = self._check(*args)
        return found

    def _check(
        self,
        task_hash: str,
        args_hash: str,
        eval_hash: str,
        execution_id: str,
        current_task_hashes: set[str],
        cache_scope: str,
        check_valid: str,
        context_hash: str | None,
        allowed: set[str],
        load: Loader,
    ) -> tuple[Any, str | None, str]:
        if CSE in allowed:
            call_hash = self.cse_candidate(execution_id, task_hash, args_hash, context_hash)
            if call_hash is not MISSING:
                result, ok = self.load_call_result(call_hash, load)
                if ok:
                    return result, call_hash, CSE

        result, is_cached = None, False
        found_call: str | None = None
        cache_type = MISS
        if cache_scope == SCOPE_BACKEND and check_valid == VALID_SHALLOW and ULTIMATE in allowed:
            call_hash = self.ultimate_candidate(task_hash, args_hash, current_task_hashes, context_hash)
            if call_hash is not MISSING:
                found_call = call_hash
                result, is_cached = self.load_call_result(call_hash, load)
                cache_type = ULTIMATE

        if not is_cached and cache_scope == SCOPE_BACKEND and SINGLE in allowed:
            # No request per miss on a bucket (by_path=False): check_cache catches up with the
            # journal after a miss instead, which finds other writers' heads within a second.
            value_hash = self.core.eval_head(eval_hash, by_path=False)
            result, is_cached = self._load(value_hash, load, f"eval head {eval_hash}")
            cache_type = SINGLE

        if is_cached:
            # As redun: a SINGLE hit after an unloadable ULTIMATE candidate keeps that call_hash.
            return result, found_call, cache_type
        return None, None, MISS

    # -- explain -----------------------------------------------------------------------------

    def explain_cache_miss(self, task_name: str, task_namespace: str | None, task_hash: str, args_hash: str) -> dict:
        name_key = schema.task_name_key(task_namespace, task_name)
        for entry in reversed(self.core.lookup_all("calls_by_args", args_hash)):
            call_hash, call_task_hash = schema.untimed(entry)
            if self.core.lookup("task_name", call_task_hash) == name_key:
                return {
                    "reason": "new_task",
                    "call_hash": call_hash,
                    "call_task_hash": call_task_hash,
                    "call_args_hash": args_hash,
                }
        entries = self.core.lookup_all("calls_by_task", task_hash)
        if entries:
            call_hash = schema.timed_id(entries[-1])
            call = self.calls.get_call_node(call_hash)
            return {
                "reason": "new_args",
                "call_hash": call_hash,
                "call_task_hash": task_hash,
                "call_args_hash": call["args_hash"] if call is not MISSING else None,
            }
        return {"reason": "new_call"}
