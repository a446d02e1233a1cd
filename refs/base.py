"""The abstract ref store and what every backend shares."""

from __future__ import annotations

import abc
import contextlib
import errno
from collections.abc import Iterator
from typing import Any, Final

from .errors import RefsError, RefStorageError
from .names import check_ref_name, is_ref_name


class _Missing:
    """The type of MISSING: the value of a ref that does not exist (never None)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self):
        return (_Missing, ())  # unpickles to the same singleton (multiprocessing)


MISSING: Final = _Missing()


def as_value(value: Any, what: str = "value") -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"ref {what} must be bytes, not {type(value).__name__}")


def as_expected(old: Any) -> bytes | _Missing:
    return old if old is MISSING else as_value(old, "old value")


class RefStore(abc.ABC):
    """Named byte values changed only by compare-and-swap.

    The core (get, set_if_equals, remove_if_equals, list) is what a backend implements;
    add_if_new and items derive from it. Atomic operations return bool: False means the
    ref did not hold the expected value when the store checked (another writer won),
    never an error. Errors are RefsError subclasses.
    """

    #: True when compare-and-swap is atomic against every other writer of the location.
    atomic: bool = True

    @abc.abstractmethod
    def get(self, name: str) -> bytes | _Missing:
        """The ref's value, or MISSING."""

    @abc.abstractmethod
    def set_if_equals(self, name: str, old: bytes | _Missing, new: bytes) -> bool:
        """Set `name` to `new` if it currently holds `old` (MISSING: does not exist)."""

    @abc.abstractmethod
    def remove_if_equals(self, name: str, old: bytes) -> bool:
        """Remove `name` if it currently holds `old`."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Sorted names starting with `prefix` (a plain string prefix)."""

    # ----------------------------------------------------------- derived

    def add_if_new(self, name: str, new: bytes) -> bool:
        """Create `name` holding `new`; False if it already exists."""
        return self.set_if_equals(name, MISSING, new)

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """(name, value) for each ref under `prefix`; refs removed meanwhile are skipped."""
        for name in self.list(prefix):
            value = self.get(name)
            if not isinstance(value, _Missing):
                yield name, value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self, 'root', '?')!r})"


class PathRefStore(RefStore):
    """A store whose refs are files named ``f"{root}/{name}"`` on an fsspec filesystem."""

    def __init__(self, fs, root: str):
        self.fs = fs
        self.root = fs._strip_protocol(root).rstrip("/") if fs is not None else root.rstrip("/")

    def path(self, name: str) -> str:
        return f"{self.root}/{check_ref_name(name)}"

    def _list_base(self, prefix: str) -> str:
        """The deepest directory that holds every name starting with `prefix`."""
        head = prefix.rpartition("/")[0]
        # Only a valid name may become part of a path; anything else lists from the root
        # and filters, which is slower but can never look outside it.
        return f"{self.root}/{head}" if head and is_ref_name(head) else self.root

    def _names(self, paths, prefix: str) -> list[str]:
        start = len(self.root) + 1
        names = set()
        for path in paths:
            path = path.rstrip("/")
            if not path.startswith(self.root + "/"):
                continue
            name = path[start:]
            # Lock files, temp files and directory markers are not valid ref names.
            if name.startswith(prefix) and is_ref_name(name):
                names.add(name)
        return sorted(names)

    def _find(self, base: str) -> list[str]:
        try:
            return list(self.fs.find(base))
        except FileNotFoundError:
            return []


@contextlib.contextmanager
def storage_errors(what: str):
    """Turn an unexpected OSError into RefStorageError (ours pass through untouched)."""
    try:
        yield
    except RefsError:
        raise
    except OSError as exc:
        code = exc.errno if exc.errno is not None else errno.EIO
        raise RefStorageError(code, f"{what}: {exc}") from exc
