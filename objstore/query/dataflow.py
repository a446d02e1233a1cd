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
_DERIVES = "derives"  # a queue entry: a value built from several calls' results


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
        if producer is _DERIVES:
            todo[0:0] = _derives_from(q, var, (callee or "").split(","), names, lines)
            continue
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
            found: list[tuple[str, str, str | None, str | None]] = []
            for v, arg in args:
                upstream = list(arg.get("upstream", []))
                if not upstream:
                    found.append((v, arg["value_hash"], None, producer))
                elif len(upstream) == 1 and _result_of(q, upstream[0]) == arg["value_hash"]:
                    found.append((v, arg["value_hash"], upstream[0], None))
                else:
                    found.append((v, arg["value_hash"], _DERIVES, ",".join(upstream)))
            todo[0:0] = found  # depth first, as redun walks it: a call's inputs before its siblings
            continue
        caller = _caller_holding(q, callee, value) if callee else None
        if caller is None:
            if callee is None:
                lines += [f"{var} <-- origin", ""]  # the value itself came from outside
            continue  # a constant written in the caller's body: nothing upstream
        # Handed down through callers' arguments: one line per hop, redun's continuation style.
        lead = f"{var} "
        while caller is not None and steps < MAX_STEPS:
            steps += 1
            parent_hash, parent, args, arg = caller
            short = q.task_name(parent.get("task_hash"), parent.get("task_name")).rsplit(".", 1)[-1]
            lines.append(f"{lead}<-- argument of <{parent_hash[:8]}> {short}({', '.join(n for n, _ in args)})")
            lead = " " * (len(var) + 1)
            upstream = list(arg.get("upstream", []))
            if upstream:
                lines.append("")
                todo.insert(0, (var, arg["value_hash"], upstream[0], None))
                break
            # Follow the value itself on up (a container argument holds it as a subvalue too).
            caller = _caller_holding(q, parent_hash, value) if q.call_parents(parent_hash) else None
            if caller is None:
                lines += [f"{lead}<-- origin", ""]
    if todo:
        lines.append(f"... (dataflow cut after {MAX_STEPS} steps)")
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _result_of(q: Reads, call_hash: str) -> str | None:
    call = q.call_doc(call_hash)
    return None if call is MISSING else call["value_hash"]


def _derives_from(q: Reads, var: str, upstream: list[str], names: _Names, lines: list[str]) -> list[tuple]:
    """redun's data section: a value built from several calls' results (a list of them, say).

        o_files <-- derives from
          compile_result   = <9b57fe6c> File(path=lib.o, hash=9b57fe6c)
          compile_result_2 = <688df74d> File(path=prog.o, hash=688df74d)
    """
    parts = []
    for call_hash in upstream:
        call = q.call_doc(call_hash)
        if call is MISSING:
            continue
        short = q.task_name(call.get("task_hash"), call.get("task_name")).rsplit(".", 1)[-1]
        parts.append((names.new(f"{short}_result"), call["value_hash"], call_hash))
    lines.append(f"{var} <-- derives from")
    width = max((len(n) for n, _, _ in parts), default=0)
    for name, value_hash, _ in parts:
        lines.append(f"  {name.ljust(width)} = <{value_hash[:8]}> {_preview(q, value_hash)}")
    lines.append("")
    return [(name, value_hash, call_hash, None) for name, value_hash, call_hash in parts]


def _caller_holding(q: Reads, callee: str, value: str) -> tuple[str, dict, list[tuple[str, dict]], dict] | None:
    """The calling call node whose argument holds ``value``, itself or inside a container value
    (it was handed down from there)."""
    holders = {value, *q.value_parents(value)}
    for parent_hash in q.call_parents(callee):
        parent = q.call_doc(parent_hash)
        if parent is MISSING:
            continue
        args = _call_args(q, parent)
        for _, arg in args:
            if arg["value_hash"] in holders:
                return parent_hash, parent, args, arg
    return None


__all__ = ["upstream_lines", "task_arg_names", "MAX_STEPS"]
