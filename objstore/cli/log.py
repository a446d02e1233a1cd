"""`objstore log`: every form of `redun log`, on an objstore repository.

    objstore log                          recent executions, newest first
    objstore log ID | - | ~N               one record in detail: an execution's job tree, a job,
                                          a call node, a task (with its source) or a value
    objstore log PATH                     which call nodes produced and consumed a File there
    objstore log --job | --task | ...     list records of those types, with redun's filters

Text output follows redun's; ``--json`` prints the same results as one JSON document. On a
terminal the output goes through a pager (``$PAGER``, else ``less -FRSX``) unless --no-pager.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from typing import Any

DEFAULT_LIMIT = 20
TYPE_FLAGS = {"exec": "Execution", "job": "Job", "call_node": "CallNode", "task": "Task", "value": "Value"}


def register(sub) -> None:
    p = sub.add_parser(
        "log",
        help="show executions, a job tree, a job / call node / task / value, or a file's history",
        description="Without arguments: recent executions, newest first. With an id (a unique "
        "prefix of one, or - for the newest execution, ~N for the Nth newest): that record in "
        "detail. With a path: the call nodes that produced and consumed a File recorded there. "
        "With type flags (--job, --task, ...): a list of those records, filtered as redun's log.",
    )
    p.add_argument("target", nargs="?", metavar="ID|PATH",
                   help="an execution, job, call node, task or value id (or unique prefix), - or ~N, "
                        "or a file path")
    types = p.add_argument_group("record types (lists; with an ID, the kinds it may name)")
    types.add_argument("--all", action="store_true", help="every record type")
    types.add_argument("--exec", action="store_true", help="executions")
    for flag, what in (("job", "jobs"), ("call-node", "call nodes"), ("task", "tasks"), ("value", "values")):
        types.add_argument(f"--{flag}", nargs="?", const=True, default=None, metavar="ID",
                           help=f"{what} (with ID: show that one)")
    types.add_argument("--file", action="store_true", help="files (File values, one line per path)")
    filters = p.add_argument_group("filters (redun's)")
    filters.add_argument("--exec-id", metavar="IDS", help="only records of these executions (comma separated)")
    filters.add_argument("--exec-status", metavar="S,..", help="executions with this status (DONE,FAILED,RUNNING,UNFINISHED)")
    filters.add_argument("--job-status", metavar="S,..", help="jobs with this status (DONE,CACHED,FAILED,RUNNING,UNFINISHED)")
    filters.add_argument("--task-name", action="append", default=[], metavar="NAME", help="jobs and tasks of this task")
    filters.add_argument("--value-type", action="append", default=[], metavar="TYPE", help="values of this type")
    filters.add_argument("--file-path", action="append", default=[], metavar="PATTERN",
                         help="files whose path matches (* is a wildcard)")
    filters.add_argument("-t", "--tag", action="append", default=[], metavar="KEY[=VALUE]", help="records with this tag")
    filters.add_argument("--exec-tag", action="append", default=[], metavar="KEY[=VALUE]",
                         help="records of executions with this tag")
    out = p.add_argument_group("output")
    out.add_argument("--count", action="store_true", help="count the records instead of listing them")
    out.add_argument("--limit", type=_non_negative_int, default=None, metavar="N",
                     help=f"at most N records (default: {DEFAULT_LIMIT} executions, every other record; "
                          "for a job tree, N jobs; 0 = all)")
    out.add_argument("--stale-after", type=_seconds, metavar="SECONDS",
                     help="show a job that started but has not ended, with no sign of life for this "
                     "long, as UNFINISHED instead of RUNNING")
    out.add_argument("--full-ids", action="store_true", help="print whole ids, not 8-character prefixes")
    out.add_argument("--json", action="store_true", help="machine-readable output (one JSON document)")
    out.add_argument("--format", choices=("text", "json"), default="text", help="as --json when json (redun's flag)")
    out.add_argument("--no-pager", action="store_true", help="never page the output")
    p.set_defaults(func=cmd_log)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


# ---------------------------------------------------------------------------------- parsing


def _tags(texts: list[str]) -> list[tuple[str, Any]]:
    from objstore.cli import UsageError
    from objstore.query.tags import parse_tag

    try:
        return [parse_tag(t, value_required=False) for t in texts]
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _statuses(text: str | None, allowed: tuple[str, ...], what: str) -> list[str]:
    from objstore.cli import UsageError

    if not text:
        return []
    found = [s.strip().upper() for s in text.split(",") if s.strip()]
    bad = [s for s in found if s not in allowed]
    if bad:
        raise UsageError(f"unknown {what} status {bad[0]!r} (one of {', '.join(allowed)})")
    return found


def list_spec(args, q) -> Any:
    from objstore.query.lists import TYPES, ListSpec
    from objstore.query.log import EXEC_STATUSES
    from objstore.query.results import STATUSES

    types = {t for flag, t in TYPE_FLAGS.items() if getattr(args, flag)}
    if args.all:
        types |= set(TYPES)
    if args.exec_status:
        types.add("Execution")
    if args.job_status:
        types.add("Job")
    if args.value_type or args.file_path:
        types.add("Value")
    if args.file:
        types = {"Value"}
    exec_ids = None
    if args.exec_id:
        exec_ids = [q.resolve_execution(e) for e in args.exec_id.split(",") if e.strip()]
    return ListSpec(
        types=types or {"Execution"},
        exec_ids=exec_ids,
        task_names=list(args.task_name),
        job_statuses=_statuses(args.job_status, STATUSES, "job"),
        exec_statuses=_statuses(args.exec_status, EXEC_STATUSES, "execution"),
        value_types=list(args.value_type),
        file_paths=list(args.file_path),
        tags=_tags(args.tag),
        exec_tags=_tags(args.exec_tag),
        files=bool(args.file),
    )


def _looks_like_path(text: str) -> bool:
    from objstore.query.resolve import looks_like_id

    return not looks_like_id(text) or os.path.exists(text) or "/" in text or ":" in text


# ---------------------------------------------------------------------------------- command


def cmd_log(args, ctx) -> int:
    from objstore.backend import Provenance
    from objstore.cli import no_gc
    from objstore.cli._text import Printer
    from objstore.query import open_query, to_jsonable

    as_json = args.json or args.format == "json"
    with no_gc(), ctx.open_repo() as repo:
        q = open_query(Provenance(repo), stale_after=args.stale_after)
        with paged(ctx, enabled=not (as_json or args.no_pager)) as stream:
            out = Printer(stream, full_ids=args.full_ids, tree_limit=args.limit or None if args.target else None)
            kind, result = answer(args, ctx, q)
            if as_json:
                if kind == "records":  # each record carries its _type (JobNode, TaskInfo, ...)
                    result = [record for _, record in result]
                elif kind == "tree" and args.limit:
                    result = limit_tree(result, args.limit)
                json.dump(to_jsonable(result), stream, indent=2, sort_keys=True)
                stream.write("\n")
            else:
                show(out, kind, result, args)
        for problem in q.problems:
            ctx.warn(problem)
    return 0


def limit_tree(tree, limit: int):
    """The tree with its first ``limit`` jobs (depth first, as the text prints them), for --json."""
    import dataclasses

    budget = [limit]

    def cut(job):
        budget[0] -= 1
        kept = []
        for child in job.children:
            if budget[0] <= 0:
                break
            kept.append(cut(child))
        return dataclasses.replace(job, children=kept)

    return tree if tree.root is None else dataclasses.replace(tree, root=cut(tree.root))


def answer(args, ctx, q) -> tuple[str, Any]:
    """(what it is, the query result) for the arguments given."""
    from objstore import model
    from objstore.errors import ObjectNotFound
    from objstore.query.files import file_detail, path_spellings
    from objstore.query.lists import count_records, list_records

    target, by_flag = args.target, False
    for flag in ("job", "call_node", "task", "value"):
        given = getattr(args, flag)
        if isinstance(given, str):
            if target:
                from objstore.cli import UsageError

                raise UsageError(f"give the id once: --{flag.replace('_', '-')} {given} or {target}")
            target, by_flag = given, True
    spec = list_spec(args, q)
    if target is not None:  # `log ''` is a bad id, not "list executions"
        if not by_flag and target and _looks_like_path(target):
            found = file_detail(q, path_spellings(target, str(ctx.cwd)))
            if found is not None:
                return "file", found
            from objstore.query.resolve import looks_like_id

            if not looks_like_id(target):
                raise ObjectNotFound(f"no File was recorded at {target!r}: no call node produced or consumed it")
        kinds = _kinds(args)
        kind, record_id = q.resolver.any(target, kinds) if kinds else q.resolve_any(target)
        if kind == model.EXECUTION:
            return "tree", q.execution_tree(record_id)
        if kind == model.JOB:
            return "job", q.job(record_id)
        if kind == model.CALL:
            return "call", q.call_info(record_id)
        detail = q.value(record_id)
        if detail.value.is_task and not args.value:
            return "task", q.task(record_id)
        if args.task and not args.value:
            raise ObjectNotFound(f"no task with id prefix {target!r} (it is a value)")
        return "value", detail
    listing = bool(spec.types - {"Execution"}) or any(
        getattr(args, f) for f in ("all", "exec", "job", "call_node", "task", "value", "file"))
    if args.count:
        return "counts", count_records(q, spec)
    if listing or spec.exec_ids is not None:
        spec.limit = args.limit or None
        return "records", list_records(q, spec)
    limit = DEFAULT_LIMIT if args.limit is None else (args.limit or None)
    statuses = set(spec.exec_statuses) | ({"CACHED"} if "DONE" in spec.exec_statuses else set())
    from objstore.query.lists import ANY_VALUE

    return "executions", q.executions(limit, statuses=statuses or None, tags=spec.tags + spec.exec_tags,
                                      any_value=ANY_VALUE)  # fmt: skip


def _kinds(args) -> tuple[str, ...]:
    """The record kinds a type flag limits an id to (none given: every kind)."""
    from objstore import model

    kinds = []
    if args.exec:
        kinds.append(model.EXECUTION)
    if args.job:
        kinds.append(model.JOB)
    if args.call_node:
        kinds.append(model.CALL)
    if args.task or args.value:
        kinds.append(model.VALUE)
    return tuple(kinds)


def show(out, kind: str, result: Any, args) -> None:
    if kind == "executions":
        out.executions(result)
    elif kind == "tree":
        out.execution_tree(result)
    elif kind == "job":
        out.job_detail(result)
    elif kind == "call":
        out.call_detail(result)
    elif kind == "task":
        out.task_detail(result)
    elif kind == "value":
        out.value_detail(result)
    elif kind == "file":
        out.file_detail(result)
    elif kind == "counts":
        if not any(getattr(args, f) for f in ("all", "exec", "job", "call_node", "task", "value", "file")):
            out.line("Recent executions:")
            out.line()
        for record_type, count in result:
            out.line(f"{count:>8} {record_type}")
    elif kind == "records":
        show_records(out, result, files=bool(args.file))


def show_records(out, records: list[tuple[str, Any]], *, files: bool = False) -> None:
    """List lines; ``files`` (--file): File values as ``File <hash> <path>``, each path once."""
    out.fit([r.status for t, r in records if t in ("Execution", "Job")])
    last_path = None
    for record_type, record in records:
        if record_type == "Execution":
            out.line(out.exec_line(record))
        elif record_type == "Job":
            out.line(out.job_line(record))
        elif record_type == "CallNode":
            out.call_line(record)
        elif record_type == "Task":
            out.task_line(record)
        elif files and record.path is not None and record.path == last_path:
            continue  # redun's --file shows each path once
        else:
            out.value_line(record, as_file=files)
            last_path = record.path


@contextlib.contextmanager
def paged(ctx, *, enabled: bool) -> Iterator[Any]:
    """The stream to print to: a pager's on a terminal (``$PAGER``, else ``less -FRSX``)."""
    isatty = getattr(ctx.stdout, "isatty", None)
    if not enabled or not (isatty and isatty()):
        yield ctx.stdout
        return
    buffer = io.StringIO()
    yield buffer
    command = ctx.environ.get("PAGER") or "less -FRSX"
    try:
        subprocess.run(shlex.split(command), input=buffer.getvalue(), text=True, check=False)
    except OSError:  # no pager here: print as it is
        ctx.stdout.write(buffer.getvalue())


__all__ = ["register", "cmd_log", "answer"]
