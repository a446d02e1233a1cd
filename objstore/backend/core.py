"""The shared core of the provenance API: one Repository, and a cache of verified objects.

Reads of the index go through the repository, which puts this process's unflushed writes on
top (a scheduler asks about what it wrote a millisecond ago). Objects are immutable, so decoded
and verified ones are kept in a bounded cache without any invalidation.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from objstore import model
from objstore.errors import CorruptObject, ObjectNotFound, WrongKind
from objstore.ids import is_hash, is_uuid
from objstore.missing import MISSING, Missing
from objstore.model.schema import IndexEntry
from objstore.repo import Repository

log = logging.getLogger("objstore.backend")
_PRESENT_MAX = 1_000_000


class Core:
    """Repository access shared by every concern module (values, calls, jobs, cache, ...)."""

    def __init__(self, repo: Repository, *, cache_size: int = 20000):
        self.repo = repo
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        # Ids this process wrote or found listed: a writer asks has() of the same value several
        # times per job (its result, then the call node's), and an index read per question was
        # a third of the backend's own cost on a first run. Trusted only while the repository
        # knows of no damage (a damaged id must be written again: repair by rewriting).
        self._present: dict[str, str] = {}  # id -> kind
        # Bound once: has() runs several times per job, and each layer of delegation is a call.
        self._damage = repo.damage
        self.lookup: Callable[[str, str], Any] = repo.lookups.lookup  # (table, key) -> value or MISSING

    # -- index reads --------------------------------------------------------------------------

    def lookup_all(self, table: str, key: str) -> list[str]:
        return self.repo.lookup_all(table, key)

    def has(self, object_id: str) -> bool:
        """Whether the object is recorded, so a writer may skip it: False for one a read found
        missing or damaged (until rewritten), which is how a re-run repairs the repository."""
        return self.kind_present(object_id) is not None

    def kind_present(self, object_id: str) -> str | None:
        """The kind of a recorded object a writer may skip, else None (see ``has``)."""
        kind = self._present.get(object_id)
        damage = self._damage
        if kind is not None and not damage:
            return kind
        kind = self.lookup("objects", object_id)
        if kind is MISSING or (damage and object_id in damage):
            return None
        self._note_present(object_id, kind)
        return kind

    def _note_present(self, object_id: str, kind: str) -> None:
        if len(self._present) >= _PRESENT_MAX:
            self._present.clear()  # a memo, not a record: starting over only costs index reads
        self._present[object_id] = kind

    def kind_of(self, object_id: str) -> Any:
        """The kind the index lists (damaged or not: what the object is, not whether it reads)."""
        return self.lookup("objects", object_id)

    def has_kind(self, object_id: str, kind: str) -> bool:
        """``has`` for an object of one kind."""
        return self.kind_present(object_id) == kind

    def needs_rewrite(self, object_id: str) -> bool:
        return object_id in self._damage

    # -- object reads -------------------------------------------------------------------------

    def get(self, object_id: str, kind: str | None = None) -> tuple[str, bytes]:
        """(kind, payload), verified; ObjectNotFound / CorruptObject otherwise."""
        hit = self._cache.get(object_id)
        if hit is not None:
            if kind is not None and hit[0] != kind:
                raise WrongKind(object_id, kind, hit[0])
            return hit
        got_kind, payload = self.repo.get(object_id, expect_kind=kind)
        model.verify(got_kind, object_id, payload)
        self._remember(object_id, got_kind, payload)
        return got_kind, payload

    def get_or_missing(self, object_id: str, kind: str | None = None) -> Any:
        """The object, or MISSING (a corrupt object is logged and treated as missing).

        An id that is neither a hash nor a uuid names nothing that can be stored, so a query for
        one (get_value('../x'), get_job('x')) is absent, as sqlite answers it, not an InvalidId
        raised inside the scheduler. Writes still validate and refuse it.
        """
        if not (is_hash(object_id) or is_uuid(object_id)):
            return MISSING
        try:
            return self.get(object_id, kind)
        except ObjectNotFound:
            return MISSING
        except CorruptObject as exc:
            log.warning("objstore: ignoring corrupt object: %s", exc)
            return MISSING

    def get_meta(self, object_id: str, kind: str) -> Any:
        """Decoded metadata dict of an object, or MISSING."""
        got = self.get_or_missing(object_id, kind)
        if got is MISSING:
            return MISSING
        try:
            return model.decode(kind, got[1], object_id)
        except CorruptObject as exc:
            log.warning("objstore: ignoring corrupt object: %s", exc)
            return MISSING

    def get_many_meta(self, ids: list[str], kind: str) -> dict[str, Any]:
        """Decoded metadata of many objects of one kind, read in bulk; absent or corrupt ones are
        left out (a corrupt one is logged)."""
        out: dict[str, Any] = {}
        todo = []
        for object_id in dict.fromkeys(ids):
            hit = self._cache.get(object_id)
            if hit is not None and hit[0] == kind:
                out[object_id] = model.decode(kind, hit[1], object_id)
            elif is_hash(object_id) or is_uuid(object_id):
                todo.append(object_id)
        if not todo:
            return out
        try:
            got = self.repo.get_many(todo, expect_kind=kind)
        except CorruptObject:
            got = [self.get_or_missing(object_id, kind) for object_id in todo]  # name the bad one
        for object_id, item in zip(todo, got):
            if isinstance(item, Missing):
                continue
            try:
                model.verify(kind, object_id, item[1])
                out[object_id] = model.decode(kind, item[1], object_id)
            except CorruptObject as exc:
                log.warning("objstore: ignoring corrupt object: %s", exc)
                continue
            self._remember(object_id, kind, item[1])
        return out

    def prefetch(self, ids: list[str], kind: str, *, small_only: bool = False) -> None:
        """Read objects of one kind into the cache in one bulk read, so the single reads that
        follow (a tree walk's call nodes, its argument values) cost nothing. ``small_only``
        skips loose objects, which may be huge values: only packed ones (<= 1 MiB) are read."""
        wanted = [i for i in dict.fromkeys(ids) if i not in self._cache and (is_hash(i) or is_uuid(i))]
        if small_only:
            wanted = [i for i in wanted if self.repo.lookup("packed", i) is not MISSING]
        if wanted:
            self.get_many_meta(wanted, kind)

    def cached(self, object_id: str) -> tuple[str, bytes] | None:
        """The verified object if it is in the cache (no read)."""
        return self._cache.get(object_id)

    def _remember(self, object_id: str, kind: str, payload: bytes) -> None:
        cache = self._cache
        cache[object_id] = (kind, payload)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    # -- writes -------------------------------------------------------------------------------

    def add(self, kind: str, object_id: str, payload: bytes, entries: list[IndexEntry] | None = None) -> None:
        """Buffer an object; ``entries`` (from a kind's ``build``) spare re-parsing it."""
        self.repo.add(object_id, kind, payload, entries)
        self._note_present(object_id, kind)
        self._remember(object_id, kind, payload)

    def note(self, entries: list[IndexEntry]) -> None:
        self.repo.note(entries)

    def set_eval_head(self, eval_hash: str, value_hash: str) -> None:
        self.repo.set_eval_head(eval_hash, value_hash)

    def eval_head(self, eval_hash: str, *, by_path: bool = True) -> Any:
        if not is_hash(eval_hash):
            return MISSING  # cannot have been set (set_eval_head validates): a miss, as sqlite
        return self.repo.eval_head(eval_hash, by_path=by_path)

    # -- flushing -----------------------------------------------------------------------------

    def flush(self) -> None:
        self.repo.flush()

    def maybe_flush(self) -> bool:
        return self.repo.maybe_flush()

    def refresh(self) -> int:
        return self.repo.refresh()

    def catch_up(self) -> int:
        """After a miss: read what other writers added since the last look (rate-limited)."""
        return self.repo.catch_up()


__all__ = ["Core", "MISSING", "log"]
