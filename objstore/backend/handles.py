"""Handles: an immutable graph of handle states plus one mutable ref per handle name.

Handle records and edges are objects. Validity (rolled back or not) is the only mutable part:
it lives in ``refs/handles/<name>`` as the set of invalidated handle hashes, changed only by
compare-and-swap, so concurrent workers never lose each other's rollbacks or advances.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from objstore import model
from objstore.backend.core import MISSING, Core, log
from objstore.errors import ConcurrentUpdate
from objstore.ids import validate_hash
from objstore.missing import Missing
from objstore.model import handle as handle_kind
from objstore.model import schema
from refs.backoff import attempts

CAS_RETRIES = 100


@dataclass(frozen=True)
class HandleSpec:
    hash: str
    fullname: str
    key: str
    value_hash: str  # the Handle recorded as a Value (its value_hash equals its hash in redun)


def _encode_state(invalid: set[str]) -> bytes:
    return handle_kind.encode_state(invalid)


class Handles:
    def __init__(self, core: Core):
        self.core = core
        self._unreadable_said: set[str] = set()

    # -- state (refs) ------------------------------------------------------------------------

    def _read_state(self, fullname: str) -> tuple[bytes | Missing, set[str]]:
        name, raw = self.core.repo.read_handle_state(fullname)
        if isinstance(raw, Missing):
            return raw, set()
        try:
            invalid = json.loads(raw)["invalid"]
            if not isinstance(invalid, list) or not all(isinstance(h, str) for h in invalid):
                raise TypeError("'invalid' is not a list of handle hashes")
            return raw, set(invalid)
        except (ValueError, KeyError, TypeError) as exc:
            # Which handles were rolled back is unknowable now. Calling them all valid would make
            # a rolled-back handle a cache hit again; calling them all rolled back costs at most
            # a re-run. The next change of this name's state rewrites the ref readably.
            if name not in self._unreadable_said:
                self._unreadable_said.add(name)
                log.warning(
                    "objstore: handle state refs/%s is unreadable (%s): every handle named %r counts as "
                    "rolled back until its state is next written", name, exc, fullname,
                )
            return raw, set(self.handles_named(fullname))

    def _change_state(self, fullname: str, change: Callable[[set[str]], set[str]]) -> None:
        """Apply change(invalid_set) -> new set with compare-and-swap, retrying on a lost race
        (re-reading and re-applying ``change``, after a jittered exponential backoff, so many
        writers of one handle spread out instead of colliding in lock step)."""
        repo = self.core.repo
        for _ in attempts(CAS_RETRIES):
            raw, invalid = self._read_state(fullname)
            new = change(set(invalid))
            if new == invalid:
                return
            if repo.swap_handle_state(fullname, raw, _encode_state(new)):
                return
        name, _ = repo.read_handle_state(fullname)
        raise ConcurrentUpdate(f"could not update handle state {name}: too many concurrent writers")

    def invalid_hashes(self, fullname: str) -> set[str]:
        return self._read_state(fullname)[1]

    # -- graph -------------------------------------------------------------------------------

    def is_recorded(self, handle_hash: str) -> bool:
        return self.core.lookup("handles", handle_hash) is not MISSING

    def record_handle(self, handle: HandleSpec) -> None:
        record_id = handle_kind.record_id(handle.hash)
        if not self.is_recorded(handle.hash) or not self.core.has(record_id):
            payload = handle_kind.HANDLE_KIND.encode(handle.hash, handle.fullname, handle.key, validate_hash(handle.value_hash))
            self.core.add(model.HANDLE, record_id, payload)

    def record_edge(self, parent_hash: str, child_hash: str) -> None:
        edge_id = handle_kind.edge_id(parent_hash, child_hash)
        if not self.core.has(edge_id):
            self.core.add(model.HANDLE_EDGE, edge_id, handle_kind.HANDLE_EDGE_KIND.encode(parent_hash, child_hash))

    def children(self, handle_hash: str) -> list[str]:
        return self.core.lookup_all("handle_children", handle_hash)

    def handles_named(self, fullname: str) -> list[str]:
        return self.core.lookup_all("handles_by_name", schema.handle_name_key(fullname))

    # -- redun's operations ------------------------------------------------------------------

    def advance_handle(self, parents: Iterable[HandleSpec], child: HandleSpec, ancestors: Iterable[HandleSpec] = ()) -> None:
        """Record child, parents (and unrecorded fork ancestors), the edges; all become valid."""
        parents = list(parents)
        touched = list(ancestors) + [child] + parents
        for handle in touched:
            self.record_handle(handle)
        for parent in parents:
            self.record_edge(parent.hash, child.hash)
        by_name: dict[str, set[str]] = {}
        for handle in touched:
            by_name.setdefault(handle.fullname, set()).add(handle.hash)
        for fullname, hashes in by_name.items():

            def revalidate(invalid: set[str], hashes: set[str] = hashes) -> set[str]:
                return invalid - hashes

            self._change_state(fullname, revalidate)

    def rollback_handle(self, handle_hash: str, fullname: str) -> None:
        """Invalidate every descendant of the handle (not the handle itself), as redun does."""

        def change(invalid: set[str]) -> set[str]:
            valid = [h for h in self.handles_named(fullname) if h not in invalid]
            lookups = {h: self.children(h) for h in valid}
            found: set[str] = set()
            queue = list(lookups.get(handle_hash, []))
            while queue:
                current = queue.pop()
                if current in found:
                    continue
                found.add(current)
                queue.extend(lookups.get(current, []))
            return invalid | found

        self._change_state(fullname, change)

    def is_valid_handle(self, handle_hash: str, fullname: str) -> bool:
        return self.is_recorded(handle_hash) and handle_hash not in self.invalid_hashes(fullname)
