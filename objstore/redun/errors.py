"""The redun adapter's errors: RedunDatabaseErrors, as redun's own callers and tests expect."""

from __future__ import annotations

from redun.backends.db import RedunDatabaseError

from objstore.errors import ValueTooLarge


class ObjstoreRedunError(RedunDatabaseError):
    """Root of the errors the redun adapter raises (a RedunDatabaseError, as redun expects)."""


class ObjstoreValueTooLarge(ValueTooLarge, ObjstoreRedunError):
    """A value larger than max_value_size (redun's tests expect RedunDatabaseError)."""


__all__ = ["ObjstoreRedunError", "ObjstoreValueTooLarge"]
