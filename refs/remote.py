"""Refs on object stores: conditional requests against the object's version token.

Every store has a token that changes with every write (S3/Azure ETag, GCS generation)
and accepts "write / delete only if the token is still T" and "write only if absent".
set_if_equals is then: read value and token together (one request, so they belong to
the same version), compare the value, and write conditioned on the token. If anyone
wrote in between, the store refuses and we report a lost race.

One caveat shared by every HTTP compare-and-swap: if a conditional write succeeds but
its response is lost and the client library retries it, the retry is refused (the token
changed -- by us) and the caller is told it lost although it won. Refs must therefore
hold values for which "someone set it to the value I wanted" is harmless to re-check.
"""

from __future__ import annotations

import abc

from .base import MISSING, PathRefStore, _Missing, as_expected, as_value, storage_errors


class VersionedRefStore(PathRefStore):
    # ---- what a backend implements (all take a full path inside the fs)

    @abc.abstractmethod
    def _read(self, path: str) -> tuple[bytes, object] | _Missing:
        """(value, version token) from ONE request, or MISSING."""

    @abc.abstractmethod
    def _create(self, path: str, data: bytes) -> bool:
        """Write only if absent; False if it exists."""

    @abc.abstractmethod
    def _replace(self, path: str, data: bytes, token) -> bool:
        """Write only if the version is still `token`; False otherwise (also if deleted)."""

    @abc.abstractmethod
    def _delete(self, path: str, token) -> bool:
        """Delete only if the version is still `token`; False otherwise."""

    # ---- the RefStore core, once for all object stores

    def get(self, name: str) -> bytes | _Missing:
        path = self.path(name)
        with storage_errors(f"reading ref {name!r}"):
            current = self._read(path)
        return current if isinstance(current, _Missing) else current[0]

    def set_if_equals(self, name: str, old, new: bytes) -> bool:
        path = self.path(name)
        old, new = as_expected(old), as_value(new)
        with storage_errors(f"writing ref {name!r}"):
            if old is MISSING:
                return self._create(path, new)
            current = self._read(path)
            if isinstance(current, _Missing) or current[0] != old:
                return False
            return self._replace(path, new, current[1])

    def remove_if_equals(self, name: str, old: bytes) -> bool:
        path = self.path(name)
        old = as_value(old, "old value")
        with storage_errors(f"removing ref {name!r}"):
            current = self._read(path)
            if isinstance(current, _Missing) or current[0] != old:
                return False
            return self._delete(path, current[1])

    def list(self, prefix: str = "") -> list[str]:
        base = self._list_base(prefix)
        with storage_errors("listing refs"):
            # Listings are cached per filesystem instance; refs change under our feet.
            self.fs.invalidate_cache(base)
            return self._names(self._find(base), prefix)
