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
        special = _redun_repr(self._qualname, name, self.__dict__["_stub_state"])
        if special is not None:
            return special
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


def _safe_load(data: Any) -> Any:
    return _PreviewUnpickler(io.BytesIO(data)).load() if isinstance(data, bytes) else data


def _redun_repr(qualname: str, name: str, state: Any) -> str | None:
    """redun's own reprs for the redun classes values hold (Files, task expressions, errors),
    rebuilt from their pickled state; None for anything else."""
    if not isinstance(state, dict):
        return None
    try:
        if qualname.startswith("redun.file.") and "path" in state and isinstance(state.get("hash"), str):
            return f"{name}(path={state['path']}, hash={state['hash'][:8]})"
        if qualname == "redun.expression.TaskExpression" and "task_name" in state:
            args, kwargs = _safe_load(state.get("args")) or (), _safe_load(state.get("kwargs")) or {}
            shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in sorted(dict(kwargs).items())]
            return f"{state['task_name']}({', '.join(shown)})"
        if qualname == "redun.expression.SimpleExpression" and "func_name" in state:
            return _simple_expression(state["func_name"], tuple(_safe_load(state.get("args")) or ()),
                                      dict(_safe_load(state.get("kwargs")) or {}))  # fmt: skip
        if qualname == "redun.expression.ValueExpression" and "value" in state:
            return f"ValueExpression({_safe_load(state['value'])!r})"
        if qualname in ("redun.scheduler.ErrorValue", "redun.value.ErrorValue") and "error" in state:
            return f"ErrorValue({state['error']!r})"
    except Exception:  # a state of another shape: the generic stub repr
        return None
    return None


# redun's lazy operators (redun.expression.lazy_operation): name -> symbol; reversed ones swap sides.
_SYMBOLS = {
    "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "add": "+", "radd": "+",
    "sub": "-", "rsub": "-", "mul": "*", "rmul": "*", "div": "/", "rdiv": "/", "and": "&", "rand": "&",
    "or": "|", "ror": "|",
}  # fmt: skip
_REVERSED = {"radd", "rsub", "rmul", "rdiv", "rand", "ror"}


def _simple_expression(func_name: str, args: tuple, kwargs: dict) -> str:
    """redun's SimpleExpression.__repr__."""
    if func_name in _SYMBOLS and len(args) == 2:
        left, right = args if func_name not in _REVERSED else args[::-1]
        return f"({left!r} {_SYMBOLS[func_name]} {right!r})"
    if func_name == "getitem" and len(args) == 2:
        return f"{args[0]!r}[{args[1]!r}]"
    if func_name == "getattr" and len(args) == 2:
        return f"{args[0]!r}.{args[1]}"
    if func_name == "call" and len(args) == 3:
        shown = [repr(a) for a in args[1]] + [f"{k}={v!r}" for k, v in sorted(dict(args[2]).items())]
        return f"{args[0]!r}({', '.join(shown)})"
    return f"SimpleExpression({func_name!r}, {args!r}, {kwargs!r})"


_SAFE_BUILTINS = {
    "int", "float", "complex", "str", "bytes", "bytearray", "list", "tuple", "dict", "set",
    "frozenset", "bool", "range", "slice",
}  # fmt: skip


class _PreviewUnpickler(pickle.Unpickler):
    """Plain data decodes to itself; every other class becomes an inert _Stub, so previewing a
    stored value never imports or runs code named by it (redun's own log unpickles for real)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocols 0-2 spell builtins the Python 2 way
            module = "builtins"
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        return type(name, (_Stub,), {"_qualname": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not previewed")


def _state(obj: Any) -> dict[str, Any]:
    """A stub's pickled state as one dict (plain __dict__ state, or (dict, slots))."""
    state = obj.__dict__.get("_stub_state") if isinstance(obj, _Stub) else None
    if isinstance(state, tuple) and len(state) == 2:
        state = {**(state[0] or {}), **(state[1] or {})}
    return state if isinstance(state, dict) else {}


def _error_text(error: Any) -> str:
    """``TypeName: message`` as Python's traceback module ends a traceback."""
    if isinstance(error, _Stub):
        args: tuple[Any, ...] = tuple(error.__dict__.get("_stub_args") or ())
        message = str(args[0]) if len(args) == 1 else (str(args) if args else "")
        return f"{error._qualname.rsplit('.', 1)[-1]}: {message}"
    return f"{type(error).__name__}: {error}"


def error_details(format: str, data: bytes) -> tuple[str, list[str]] | None:
    """(the raised error's repr, its traceback lines as redun's Traceback.format prints them) of
    a stored redun.ErrorValue, read without running any code it names; None if unreadable."""
    if "pickle" not in format:
        return None
    try:
        value = _PreviewUnpickler(io.BytesIO(data)).load()
        state = _state(value)
        error = state.get("error")
        lines: list[str] = []
        traceback = _state(state.get("traceback"))
        for frame in traceback.get("frames") or []:
            f = _state(frame)
            job = _state(f.get("job")).get("id")
            where = f'File "{f.get("filename")}", line {f.get("lineno")}, in {f.get("name")}'
            lines.append(f"  Job {str(job)[:8]}: {where}" if job else f"  {where}")
            lines.append(f"    {str(f.get('_line') or '').strip()}")
            local_vars = f.get("locals") or {}
            if isinstance(local_vars, dict) and local_vars:
                width = max(map(len, map(str, local_vars)))
                lines.extend(f"    {str(k).ljust(width)} = {v}" for k, v in sorted(local_vars.items()))
        if error is not None:
            lines.append(_error_text(traceback.get("error", error)))
        logs = traceback.get("logs") or []
        if logs:
            lines += ["", "Latest logs:", *(str(line).rstrip("\n") for line in logs)]
        return trim(repr(error)) if error is not None else "Unknown", lines
    except Exception:  # an unreadable error value is described, never a failed command
        return None


_NOT_TINY = object()


def _tiny_pickle(data: bytes) -> Any:
    """The value of a pickle that is one int, str, bool or None (``PROTO n, <one opcode>, STOP``),
    decoded by hand: most arguments are, and an Unpickler per value costs more than the rest of a
    job line. Anything else is _NOT_TINY (the stub unpickler reads it)."""
    if len(data) < 4 or data[0] != 0x80 or data[-1] != 0x2E:  # PROTO ... STOP
        return _NOT_TINY
    op, body = data[2], data[3:-1]
    if op == 0x4B and len(body) == 1:  # BININT1
        return body[0]
    if op == 0x4D and len(body) == 2:  # BININT2
        return int.from_bytes(body, "little")
    if op == 0x4A and len(body) == 4:  # BININT
        return int.from_bytes(body, "little", signed=True)
    if op == 0x88 and not body:
        return True
    if op == 0x89 and not body:
        return False
    if op == 0x4E and not body:
        return None
    if op == 0x58 and len(body) >= 4 and int.from_bytes(body[:4], "little") == len(body) - 4:  # BINUNICODE
        return body[4:].decode("utf-8")
    if op == 0x8C and len(body) >= 1 and body[0] == len(body) - 1:  # SHORT_BINUNICODE
        return body[1:].decode("utf-8")
    return _NOT_TINY


def trim(text: str, limit: int = PREVIEW_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def preview_value(
    type_name: str, format: str, data: bytes, subtype: dict | None = None, value_hash: str | None = None
) -> str:
    """A short repr-style text for a stored value, without executing anything it names. Files
    and tasks read as redun's reprs do (``File(path=…, hash=…)``) when ``value_hash`` is given."""
    tail = f", hash={value_hash[:8]}" if value_hash else ""
    if subtype and subtype.get("_type") == "File":
        return trim(f"File(path={subtype.get('path')}{tail})")
    if subtype and subtype.get("_type") == "Task":
        name = subtype.get("name", "?")
        namespace = subtype.get("namespace")
        return trim(f"Task(fullname={namespace + '.' if namespace else ''}{name}{tail})")
    try:
        if "pickle" in format:
            tiny = _tiny_pickle(data)
            if tiny is not _NOT_TINY:
                return trim(repr(tiny))
            return trim(repr(_PreviewUnpickler(io.BytesIO(data)).load()))
        if format in ("application/json", "json"):
            return trim(repr(json.loads(data)))
        if format.startswith("text/"):
            return trim(repr(data.decode("utf-8")))
    except Exception:  # a preview never fails the command: describe instead
        pass
    return f"<{type_name}, {len(data)} bytes>"
