"""The redun adapter's errors: RedunDatabaseErrors that redun's CLI prints as one line."""

from __future__ import annotations

from redun.backends.db import RedunDatabaseError
from redun.cli import RedunClientError

from objstore.errors import ValueTooLarge


class ObjstoreRedunError(RedunDatabaseError, RedunClientError):
    """Root of the errors the redun adapter raises: a RedunDatabaseError, as redun's callers and
    tests expect, and a RedunClientError, which `redun run` prints as one line (``Type: message``,
    exit 1) instead of a traceback: what a user needs for a repository that cannot be opened or
    written (the message names it and the cause)."""


class ObjstoreValueTooLarge(ValueTooLarge, ObjstoreRedunError):
    """A value larger than max_value_size (redun's tests expect RedunDatabaseError)."""


__all__ = ["ObjstoreRedunError", "ObjstoreValueTooLarge"]
