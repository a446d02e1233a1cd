"""Safe previews of stored values: a short repr-style text that never runs code a pickle names.

redun's own `log` unpickles values for real, importing and running whatever classes they name;
here plain data decodes to itself and every other class becomes an inert stub.
"""

from __future__ import annotations

import builtins
import io
import json
import pickle
from collections.abc import Iterable
from typing import Any

from objstore.model.value import ERROR_TYPE

PREVIEW_MAX_BYTES = 1 << 20  # larger values are described, not decoded
PREVIEW_MAX_CHARS = 200  # redun's trim_string default


class _Stub:
    """Stands in for any class a pickle names: holds what the pickle says, runs none of its code."""

    _qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        obj = object.__new__(cls)
        obj.__dict__["_stub_args"] = args
        obj.__dict__["_stub_state"] = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            self.__dict__["_stub_args"] = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_stub_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:  # dict subclasses (SETITEMS)
        self.__dict__.setdefault("_stub_items", {})[key] = value

    def append(self, value: Any) -> None:  # list subclasses (APPENDS)
        self.__dict__.setdefault("_stub_list", []).append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.__dict__.setdefault("_stub_list", []).extend(values)

    def __repr__(self) -> str:
        name = self._qualname.rsplit(".", 1)[-1]
        state = self.__dict__["_stub_state"]
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict, slots)
        parts = [repr(a) for a in self.__dict__["_stub_args"]]
        if parts:
            state = None  # built from arguments (exceptions...): their repr shows only those
        if isinstance(state, dict):
            parts += [f"{k}={v!r}" for k, v in state.items() if not str(k).startswith("_")]
        elif state is not None:
            parts.append(repr(state))
        if "_stub_list" in self.__dict__:
            parts.append(repr(self.__dict__["_stub_list"]))
        if "_stub_items" in self.__dict__:
            parts.append(repr(self.__dict__["_stub_items"]))
        return f"{name}({', '.join(parts)})"


_SAFE_BUILTINS = {
    "int", "float", "complex", "str", "bytes", "bytearray", "list", "tuple", "dict", "set",
    "frozenset", "bool", "range", "slice",
}  # fmt: skip


class _PreviewUnpickler(pickle.Unpickler):
    """Plain data decodes to itself; every other class becomes an inert _Stub, so previewing a
    stored value never imports or runs code named by it (redun's own log unpickles for real)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        return type(name, (_Stub,), {"_qualname": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not previewed")


def trim(text: str, limit: int = PREVIEW_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def preview_value(type_name: str, format: str, data: bytes, subtype: dict | None = None) -> str:
    """A short repr-style text for a stored value, without executing anything it names."""
    if subtype and subtype.get("_type") == "File":
        return trim(f"File(path={subtype.get('path')})")
    if subtype and subtype.get("_type") == "Task":
        name = subtype.get("name", "?")
        namespace = subtype.get("namespace")
        return trim(f"Task({namespace + '.' if namespace else ''}{name})")
    try:
        if "pickle" in format:
            obj = _PreviewUnpickler(io.BytesIO(data)).load()
            if type_name == ERROR_TYPE and isinstance(obj, _Stub):
                state = obj.__dict__["_stub_state"]
                if isinstance(state, dict) and "error" in state:
                    return trim(repr(state["error"]))
            return trim(repr(obj))
        if format in ("application/json", "json"):
            return trim(repr(json.loads(data)))
        if format.startswith("text/"):
            return trim(repr(data.decode("utf-8")))
    except Exception:  # a preview never fails the command: describe instead
        pass
    return f"<{type_name}, {len(data)} bytes>"
