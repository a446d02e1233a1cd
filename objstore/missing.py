"""MISSING: the one "absent" answer of every layer (store, index, repository, backend). Pure.

A sentinel rather than None, because None is a legitimate value in several records (a job
without a parent, a tag value), and a caller must never confuse "not there" with "there, and
empty".
"""

from __future__ import annotations

from typing import Final


class Missing:
    """The type of ``MISSING``: one instance, falsy, never equal to a real result."""

    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"  # unpickles to this module's singleton


MISSING: Final = Missing()

__all__ = ["MISSING", "Missing"]
