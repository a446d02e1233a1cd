"""Upstream dataflow, as redun's `log` draws it under a job, call node or value.

    result = [4, File(path=out.txt, hash=7401356b)]

    result <-- <63b85927> write(path, x)
      path = <754628a4> 'out.txt'
      x    = <6f3255df> 4

    x <-- <8598a109> inc(x_2)
      x_2 = <b0f83101> 3

    x_2 <-- argument of <005d989c> main(x)
        <-- origin

Each variable is followed to the call node that computed it (its argument's upstream), or to
the argument of the calling call node it was handed down from, until an origin (a value passed
in from outside the workflow). Argument names come from the task's source (parsed, never run),
as redun's do; a walk stops after ``MAX_STEPS`` edges.
"""

from __future__ import annotations

import ast
import re
import textwrap
from typing import Any

from objstore.backend import MISSING
from objstore.query.reads import Reads

MAX_STEPS = 50


def task_arg_names(source: str | None) -> list[str]:
    """The positional parameter names of a task, from its source; [] if it does not parse."""
    if not source:
        return []
    try:
        tree = ast.parse(textwrap.dedent(source))
    except (SyntaxError, ValueError):
        return []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return [a.arg for a in node.args.posonlyargs + node.args.args]
    return []


class _Names:
    def __init__(self) -> None:
        self.taken: set[str] = set()

    def new(self, base: str) -> str:
        base = re.sub(r"_\d+$", "", base) or "value"
        if base not in self.taken:
            self.taken.add(base)
            return base
        n = 2
        while f"{base}_{n}" in self.taken:
            n += 1
        self.taken.add(f"{base}_{n}")
        return f"{base}_{n}"


def _preview(q: Reads, value_hash: str) -> str:
    info = q.value_info(value_hash)
    return info.preview if info else f"<missing {value_hash[:8]}>"


def _call_args(q: Reads, call: dict[str, Any]) -> list[tuple[str, dict]]:
    """(parameter name, argument) in the call's order, positional names from the source."""
    source = q.task_info(call["task_hash"], fallback_name=call.get("task_name")).source
    positional = task_arg_names(source)
    out = []
    for key, arg in call.get("args", []):
        if key.isdigit():
            i = int(key)
            out.append((positional[i] if i < len(positional) else f"arg{i}", arg))
        else:
            out.append((key, arg))
    return out


def upstream_lines(q: Reads, value_hash: str, *, name: str = "value", call_hash: str | None = None) -> list[str]:
    """The dataflow lines of a value (the result of ``call_hash`` when given)."""
    names = _Names()
    names.new(name)
    lines = [f"{name} = {_preview(q, value_hash)}", ""]
    calls = [call_hash] if call_hash else q.calls_returning(value_hash)[-1:]  # the first call that made it
    # (variable, its value, the call that computed it | None, the call it is an argument of | None)
    todo: list[tuple[str, str, str | None, str | None]] = [(name, value_hash, calls[0] if calls else None, None)]
    steps = 0
    while todo and steps < MAX_STEPS:
        var, value, producer, callee = todo.pop(0)
        steps += 1
        if producer is not None:
            call = q.call_doc(producer)
            if call is MISSING:
                lines += [f"{var} <-- <{producer[:8]}> (unreadable call node)", ""]
                continue
            args = [(names.new(n), arg) for n, arg in _call_args(q, call)]
            short = q.task_name(call.get("task_hash"), call.get("task_name")).rsplit(".", 1)[-1]
            lines.append(f"{var} <-- <{producer[:8]}> {short}({', '.join(v for v, _ in args)})")
            width = max((len(v) for v, _ in args), default=0)
            for v, arg in args:
                lines.append(f"  {v.ljust(width)} = <{arg['value_hash'][:8]}> {_preview(q, arg['value_hash'])}")
            lines.append("")
            for v, arg in args:
                upstream = list(arg.get("upstream", []))
                todo.append((v, arg["value_hash"], upstream[0] if upstream else None, None if upstream else producer))
            continue
        caller = _caller_holding(q, callee, value) if callee else None
        if caller is None:
            if callee is None:
                lines += [f"{var} <-- origin", ""]  # the value itself came from outside
            continue  # a constant written in the caller's body: nothing upstream
        parent_hash, parent, args, arg = caller
        short = q.task_name(parent.get("task_hash"), parent.get("task_name")).rsplit(".", 1)[-1]
        lines.append(f"{var} <-- argument of <{parent_hash[:8]}> {short}({', '.join(n for n, _ in args)})")
        upstream = list(arg.get("upstream", []))
        if upstream:
            lines.append("")
            todo.insert(0, (var, value, upstream[0], None))
        elif q.call_parents(parent_hash):
            todo.insert(0, (var, value, None, parent_hash))
        else:
            lines += [" " * (len(var) + 1) + "<-- origin", ""]
    if todo:
        lines.append(f"... (dataflow cut after {MAX_STEPS} steps)")
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _caller_holding(q: Reads, callee: str, value: str) -> tuple[str, dict, list[tuple[str, dict]], dict] | None:
    """The calling call node whose argument holds ``value`` (it was handed down from there)."""
    for parent_hash in q.call_parents(callee):
        parent = q.call_doc(parent_hash)
        if parent is MISSING:
            continue
        args = _call_args(q, parent)
        for _, arg in args:
            if arg["value_hash"] == value:
                return parent_hash, parent, args, arg
    return None


__all__ = ["upstream_lines", "task_arg_names", "MAX_STEPS"]
