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
