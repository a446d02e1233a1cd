"""One error root for objstore; every leaf also subclasses the builtin a caller would expect.

fsspec/OSError failures are translated into these at one boundary (objstore.fs); nothing above
the store layer ever sees a raw OSError from a filesystem.
"""

from __future__ import annotations


class ObjstoreError(Exception):
    """Root of every error objstore raises on purpose."""


class InvalidId(ObjstoreError, ValueError):
    """A string that is not a 40-hex hash or a uuid was about to be used as an id (and a path)."""


class AmbiguousId(InvalidId):
    """An id prefix that matches more than one record of the kind asked for."""

    def __init__(self, what: str, prefix: str, matches: list[str]):
        self.prefix = prefix
        self.matches = matches
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        super().__init__(f"ambiguous {what} id prefix {prefix!r}: matches {shown}")


class ObjectNotFound(ObjstoreError, KeyError):
    """No object with this id exists in the store."""

    def __str__(self) -> str:  # KeyError's str() quotes its arg; keep the message readable.
        return str(self.args[0]) if self.args else "object not found"


class CorruptObject(ObjstoreError, ValueError):
    """An object failed verification: bad frame, checksum, kind, length or id. Names the object."""

    def __init__(self, object_id: str, reason: str):
        super().__init__(f"corrupt object {object_id}: {reason}")
        self.object_id = object_id
        self.reason = reason


class WrongKind(CorruptObject):
    """An intact object of another kind than the one asked for (``cat-object --kind value`` of a
    call node): not damage, so nothing is marked for repair. A CorruptObject so that a caller
    treating any unusable object as absent keeps doing so."""

    def __init__(self, object_id: str, expected: str, found: str):
        super().__init__(object_id, f"wrong kind: expected {expected!r}, found {found!r}")
        self.args = (f"object {object_id} is a {found!r}, not a {expected!r} (wrong kind)",)
        self.expected = expected
        self.found = found


class FormatError(ObjstoreError, ValueError):
    """objstore.json is missing, unreadable, of another format, or of an unsupported version."""


class RepositoryNotFound(FormatError, FileNotFoundError):
    """No repository at (or above) the given location."""


class RepositoryExists(ObjstoreError, FileExistsError):
    """init() was asked to create a repository where one already exists."""


class UnsafeFilesystem(ObjstoreError, RuntimeError):
    """The filesystem cannot create a file atomically (create-if-absent) or swap one, and
    objstore refuses to pretend it can: two writers could then overwrite each other."""


class ConcurrentUpdate(ObjstoreError, RuntimeError):
    """A compare-and-swap kept losing to other writers; nothing was changed."""


class NameCollision(ObjstoreError, FileExistsError):
    """A freshly generated, supposedly unique name (a journal segment) already exists."""


class StorageError(ObjstoreError, OSError):
    """A filesystem operation failed for a reason other than not-found (permissions, network...)."""

    def __str__(self) -> str:
        # The message names the path and the cause; OSError's "[Errno 13] " (or "[Errno None] "
        # for transport errors, which have no errno) in front of it tells a user nothing.
        return str(self.strerror) if self.strerror else super().__str__()


class ReadOnlyRepository(StorageError):
    """A write was refused because the repository is read-only (a read-only mount, immutable
    files, credentials that may only read). Reads still work."""


class IndexUnavailable(ObjstoreError, RuntimeError):
    """The local LMDB index is unusable (e.g. placed on a network filesystem)."""


class ValueTooLarge(ObjstoreError, ValueError):
    """A value exceeds the configured maximum size."""


class InvalidStream(ObjstoreError, ValueError):
    """A line of an export stream (objstore's or redun's) that cannot be imported: names the
    line and what is wrong with it."""

    def __init__(self, line: int, reason: str, *, where: str = "input"):
        super().__init__(f"{where}, line {line}: {reason}")
        self.line = line
        self.reason = reason


class UnsupportedSource(ObjstoreError, ValueError):
    """A source objstore refuses to read (e.g. a redun database of an unknown schema version),
    before anything from it is written."""
