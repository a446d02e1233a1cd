"""The refs package's one error root; every leaf also subclasses the matching builtin."""


class RefsError(Exception):
    """Root of every error raised on purpose by `refs`."""


class InvalidRefName(RefsError, ValueError):
    """A name that git's check-ref-format would refuse (or that is not a str)."""


class UnsafeRefStore(RefsError, RuntimeError):
    """No atomic compare-and-swap is known for this filesystem."""


class RefStorageError(RefsError, OSError):
    """The storage failed for a reason other than losing a race (I/O, permissions, a lock
    that stays held)."""
