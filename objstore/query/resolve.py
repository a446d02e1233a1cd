"""The one id-prefix resolver: what `log`, `cat-object` and the query API accept as an id.

An id is a 40-hex hash or a uuid; a prefix of one is accepted in any case and resolved against
the local index. A prefix matching several records of the kind asked for is an AmbiguousId
that lists candidates; a prefix matching none is an ObjectNotFound.
"""

from __future__ import annotations

import re

from objstore import model
from objstore.backend import Provenance
from objstore.errors import AmbiguousId, InvalidId, ObjectNotFound
from objstore.ids import ObjectId, is_hash, is_uuid, validate_id
from objstore.missing import MISSING

PREFIX_RE = re.compile(r"[0-9a-f][0-9a-f-]{0,39}")
MAX_MATCHES = 10  # a prefix is refused as ambiguous once this many candidates are seen
MIN_PREFIX = 4  # as git: shorter prefixes match too much to mean anything
RECENT_RE = re.compile(r"~(\d+)")  # redun's ~N: the Nth newest execution

# What `log ID` may name, in the order a prefix is tried: executions first, so a short execution
# prefix keeps working however many values share it.
LOGGABLE = (model.EXECUTION, model.JOB, model.CALL, model.VALUE)
_NAMES = {model.EXECUTION: "execution", model.JOB: "job", model.CALL: "call node", model.VALUE: "value"}


def normalize(text: str) -> str:
    """The prefix as the index spells ids (lower case, no surrounding space), or InvalidId."""
    prefix = text.strip().lower() if isinstance(text, str) else ""
    if not PREFIX_RE.fullmatch(prefix):
        shown = repr(text) if text else "an empty string"
        raise InvalidId(f"not an object id or id prefix: {shown} (hex digits and dashes, as in an id)")
    if len(prefix.replace("-", "")) < MIN_PREFIX:
        raise InvalidId(f"id prefix {prefix!r} is too short: give at least {MIN_PREFIX} characters")
    return prefix


def looks_like_id(text: str) -> bool:
    """Whether ``text`` is spelled like an id or id prefix (any length), or redun's - / ~N."""
    t = text.strip().lower() if isinstance(text, str) else ""
    return bool(PREFIX_RE.fullmatch(t)) or t == "-" or bool(RECENT_RE.fullmatch(t))


def unique(what: str, prefix: str, matches: list[str]) -> ObjectId:
    matches = sorted(set(matches))
    if not matches:
        raise ObjectNotFound(f"no {what} with id prefix {prefix!r}")
    if len(matches) > 1:
        raise AmbiguousId(what, prefix, matches)
    return validate_id(matches[0])


class Resolver:
    def __init__(self, prov: Provenance):
        self.prov = prov
        self.core = prov.core

    def _scan(self, table: str, prefix: str, kinds: tuple[str, ...] | None = None) -> dict[str, str]:
        """{id: kind} of index keys starting with ``prefix`` (at most MAX_MATCHES + 1)."""
        found: dict[str, str] = {}
        for key, value in self.prov.repo.scan(table, prefix):
            kind = value if table == "objects" else model.JOB
            if kinds is None or kind in kinds:
                found[key] = kind
                if len(found) > MAX_MATCHES:
                    break
        return found

    def recent(self, text: str) -> ObjectId | None:
        """redun's shorthands: ``-`` is the newest execution, ``~N`` the Nth newest (``~1`` = ``-``);
        None when ``text`` is neither."""
        text = text.strip() if isinstance(text, str) else ""
        found = RECENT_RE.fullmatch(text)
        if text != "-" and not found:
            return None
        index = int(found.group(1)) if found else 1
        if index < 1:
            raise InvalidId("execution index should be >= 1 (~1 is the newest execution)")
        executions = self.prov.jobs.list_executions()
        if index > len(executions):
            raise ObjectNotFound(f"execution index too high: {text} (there are {len(executions)} executions)")
        return validate_id(executions[index - 1])

    def execution(self, text: str) -> ObjectId:
        alias = self.recent(text)
        if alias is not None:
            return alias
        prefix = normalize(text)
        ids = [e for e in self.prov.jobs.list_executions() if e.startswith(prefix)]
        return unique("execution", prefix, ids)

    def job(self, text: str) -> ObjectId:
        """Ended jobs (objects) and running ones (start notes)."""
        prefix = normalize(text)
        if is_uuid(prefix) and self.prov.jobs.get_job_info(prefix) is not MISSING:
            return validate_id(prefix)
        found = self._scan("objects", prefix, (model.JOB,))
        found.update(self._scan("job_start", prefix))
        return unique("job", prefix, list(found))

    def object(self, text: str, kind: str | None = None, what: str = "object") -> tuple[str, ObjectId]:
        """(kind, id) of an object of ``kind`` (any kind when None). A whole id the index does not
        know is returned as it is (kind MISSING-tolerant): its object may be there all the same."""
        prefix = normalize(text)
        if is_hash(prefix) or is_uuid(prefix):
            known = self.core.kind_of(prefix)
            if known is MISSING or kind is None or known == kind:
                return (known if known is not MISSING else (kind or "")), validate_id(prefix)
        found = self._scan("objects", prefix, None if kind is None else (kind,))
        chosen = unique(what, prefix, list(found))
        return found[chosen], chosen

    def any(self, text: str, kinds: tuple[str, ...] = LOGGABLE) -> tuple[str, ObjectId]:
        """(kind, id) for a prefix of any of ``kinds``, executions first (and redun's - / ~N)."""
        if model.EXECUTION in kinds:
            alias = self.recent(text)
            if alias is not None:
                return model.EXECUTION, alias
        prefix = normalize(text)
        if model.EXECUTION in kinds:
            executions = [e for e in self.prov.jobs.list_executions() if e.startswith(prefix)]
            if executions:
                return model.EXECUTION, unique("execution", prefix, executions)
        found = self._scan("objects", prefix, kinds)
        if model.JOB in kinds:
            for job_id in self._scan("job_start", prefix):
                found.setdefault(job_id, model.JOB)
        if not found and (is_hash(prefix) or is_uuid(prefix)):
            kind = self.prov.records.kind(prefix)  # not indexed here yet: one read of the object
            if kind in kinds:
                found[prefix] = kind
        what = _NAMES.get(kinds[0], "record") if len(kinds) == 1 else "record"
        chosen = unique(what, prefix, list(found))
        return found[chosen], chosen


__all__ = ["Resolver", "normalize", "unique", "looks_like_id", "PREFIX_RE", "LOGGABLE", "MIN_PREFIX"]
