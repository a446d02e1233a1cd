"""`objstore log`: recent executions, an execution's job tree, and job / call / value details.

Text output follows redun's `redun log` (`Exec <id> [ DONE ] <time>:  <args>`, `Job <id> [ CACHED ]
...`); `--json` prints the same results as one JSON document.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

DEFAULT_LIMIT = 20
STATUS_WIDTH = 6  # redun's; widened when an UNFINISHED job is on show
RULE = "-" * 80


def register(sub) -> None:
    p = sub.add_parser(
        "log",
        help="show executions, an execution's job tree, or a job / call node / value",
        description="Without arguments: recent executions, newest first. With an execution id "
        "(or a unique prefix of one): that execution's job tree.",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("exec_id", nargs="?", metavar="ID",
                      help="execution id or unique prefix (else a job, call node or value id or prefix)")
    what.add_argument("--job", metavar="ID", help="show one job (id or unique prefix)")
    what.add_argument("--call-node", metavar="HASH", help="show one call node (hash or unique prefix)")
    what.add_argument("--value", metavar="HASH", help="show one value (hash or unique prefix)")
    p.add_argument("--limit", type=_non_negative_int, default=None, metavar="N",
                   help=f"how many executions to list (default {DEFAULT_LIMIT}), or how many jobs of "
                   "an execution's tree to show (default all); 0 = all")
    p.add_argument("--stale-after", type=_seconds, metavar="SECONDS",
                   help="show a job that started but has not ended, with no sign of life for this "
                   "long, as UNFINISHED instead of RUNNING")
    p.add_argument("--full-ids", action="store_true", help="print whole ids, not 8-character prefixes")
    p.add_argument("--json", action="store_true", help="machine-readable output (one JSON document)")
    p.set_defaults(func=cmd_log)


def _non_negative_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _seconds(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


def cmd_log(args, ctx) -> int:
    from objstore import model
    from objstore.backend import Provenance
    from objstore.query import open_query, to_jsonable

    with ctx.open_repo() as repo:
        prov = Provenance(repo)
        query = open_query(prov, stale_after=args.stale_after)
        out = _Printer(ctx.stdout, full_ids=args.full_ids)
        show: Callable[[Any], None]
        if args.job:
            result: Any = query.job(query.resolve_job(args.job))
            show = out.job_detail
        elif args.call_node:
            result = query.call_info(query.resolve_object(args.call_node, model.CALL, "call node"))
            show = out.call_detail
        elif args.value:
            result = query.value(query.resolve_object(args.value, model.VALUE, "value"))
            show = out.value_detail
        elif args.exec_id is not None:  # `log ''` is a bad id, not "list executions"
            kind, record_id = query.resolve_any(args.exec_id)
            result, show = {
                model.EXECUTION: lambda: (query.execution_tree(record_id), out.execution_tree),
                model.JOB: lambda: (query.job(record_id), out.job_detail),
                model.CALL: lambda: (query.call_info(record_id), out.call_detail),
                model.VALUE: lambda: (query.value(record_id), out.value_detail),
            }[kind]()
        else:
            limit = DEFAULT_LIMIT if args.limit is None else args.limit
            result = query.executions(limit=limit or None)
            show = out.executions
        if args.json:
            if args.limit and show == out.execution_tree:
                result = _limit_tree(result, args.limit)
            json.dump(to_jsonable(result), ctx.stdout, indent=2, sort_keys=True)
            ctx.stdout.write("\n")
        else:
            out.job_limit = args.limit or None
            show(result)
        for _, why in query.unreadable:  # listed what could be read; name what could not
            ctx.stderr.write(f"objstore: warning: {why}\n")
    return 0


def _limit_tree(tree, limit: int):
    """The tree with at most ``limit`` jobs (depth first, as printed); the rest cut off."""
    import copy

    tree = copy.deepcopy(tree)
    budget = [limit]

    def cut(job) -> None:
        budget[0] -= 1
        kept = []
        for child in job.children:
            if budget[0] <= 0:
                break
            kept.append(child)
            cut(child)
        job.children = kept

    if tree.root is not None:
        cut(tree.root)
    return tree


# ------------------------------------------------------------------------------------ text


def format_time(text: str | None) -> str:
    """redun's format_timestamp: local time, to the second."""
    from objstore.model.times import parse_timestamp

    when = parse_timestamp(text)
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else "?"


def format_duration(seconds: float | None) -> str:
    """redun's format_timedelta: H:MM:SS.cc."""
    if seconds is None:
        return "-"
    delta = timedelta(seconds=seconds)
    hours, rest = divmod(delta.days * 86400 + delta.seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}.{delta.microseconds // 10000:02}"


def format_tags(tags: list) -> str:
    if not tags:
        return ""
    # Sorted so two executions with the same tags print them the same way.
    items = sorted((k, json.dumps(v, sort_keys=True, default=repr)) for k, v in tags)
    return "(" + ", ".join(f"{k}={v}" for k, v in items) + ")"


def format_counts(counts) -> str:
    parts = [f"DONE: {counts.done}", f"CACHED: {counts.cached}", f"FAILED: {counts.failed}"]
    if counts.running:
        parts.append(f"RUNNING: {counts.running}")
    if counts.unfinished:
        parts.append(f"UNFINISHED: {counts.unfinished}")
    return f"{counts.total} ({', '.join(parts)})"


def status_table(jobs, when: str | None) -> list[str]:
    """redun's job status table: jobs per task and status, ALL first, columns right-aligned."""
    columns = ["RUNNING", "FAILED", "CACHED", "DONE"]
    per_task: dict[str, dict[str, int]] = {}
    for job in jobs:
        counts = per_task.setdefault(job.task_name, {})
        counts[job.status] = counts.get(job.status, 0) + 1
    if any("UNFINISHED" in counts for counts in per_task.values()):
        columns.append("UNFINISHED")
    columns.append("TOTAL")
    names = sorted(per_task)
    everything = {c: sum(per_task[n].get(c, 0) for n in names) for c in columns[:-1]}
    rows = [["TASK", *columns], ["ALL", *map(str, everything.values()), str(sum(everything.values()))]]
    for name in names:
        counts = per_task[name]
        rows.append([name, *(str(counts.get(c, 0)) for c in columns[:-1]), str(sum(counts.values()))])
    widths = [max(7, *(len(row[i]) for row in rows)) for i in range(len(columns) + 1)]
    out = [f"| JOB STATUS {format_time(when).replace('-', '/')}"]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        out.append("| " + " ".join(cells))
    out.append("")
    return out


class _Printer:
    def __init__(self, stream, *, full_ids: bool = False):
        self.stream = stream
        self.full_ids = full_ids
        self.width = STATUS_WIDTH
        self.job_limit: int | None = None  # jobs of a tree to print (None: all)

    def line(self, text: str = "", indent: int = 0) -> None:
        self.stream.write((" " * indent + text).rstrip() + "\n")

    def id(self, text: str | None, detail: bool = False) -> str:
        if not text:
            return "?"
        return text if (detail or self.full_ids) else text[:8]

    @staticmethod
    def _shown(status: str) -> str:
        return "RUN " if status == "RUNNING" else status  # redun's status_display

    def status(self, status: str) -> str:
        return self._shown(status).center(self.width)

    def _fit(self, statuses) -> None:
        self.width = max([STATUS_WIDTH, *(len(self._shown(s)) for s in statuses)])

    def exec_line(self, e, detail: bool = False) -> str:
        return (f"Exec {self.id(e.id, detail)} [{self.status(e.status)}] {format_time(e.start_time)}:  "
                f"{' '.join(e.args)} {format_tags(e.tags)}")

    def executions(self, summaries) -> None:
        if not summaries:
            self.line("No executions.")
            return
        self._fit(s.status for s in summaries)
        self.line("Recent executions:")
        self.line()
        for e in summaries:
            self.line(f"{self.exec_line(e).rstrip()}  Jobs: {format_counts(e.counts)}")

    def job_line(self, job, detail: bool = False) -> str:
        return (f"Job {self.id(job.id, detail)} [{self.status(job.status)}] {format_time(job.start_time)}:  "
                f"{job.task_name}({job.args}) {format_duration(job.duration)}")

    def execution_tree(self, tree) -> None:
        e = tree.execution
        statuses = [e.status] + ([j.status for j in tree.root.walk()] if tree.root else [])
        self._fit(statuses)
        self.line(self.exec_line(e, detail=True))
        self.line(f"Duration: {format_duration(e.duration)}")
        if e.updated_time and e.status in ("RUNNING", "UNFINISHED"):
            self.line(f"Last heartbeat: {format_time(e.updated_time)}")
        self.line()
        if tree.root is not None:
            for row in status_table(tree.root.walk(), e.end_time or e.updated_time):
                self.line(row)
        self.line(f"Jobs: {format_counts(e.counts)}")
        self.line(RULE)
        if tree.root is None:
            self.line("(no root job recorded)")
            return
        budget = [self.job_limit if self.job_limit is not None else -1]
        self._tree(tree.root, 0, budget)
        if budget[0] == 0:
            total = sum(1 for _ in tree.root.walk())
            if total > (self.job_limit or 0):
                self.line(f"... {total - (self.job_limit or 0)} more jobs (--limit 0 shows all)")

    def _tree(self, job, indent: int, budget: list[int]) -> None:
        if budget[0] == 0:
            return
        budget[0] -= 1
        self.line(self.job_line(job), indent)
        for child in job.children:
            self._tree(child, indent + 2, budget)

    def job_detail(self, detail) -> None:
        job = detail.job
        self._fit([job.status])
        self.line(f"{self.job_line(job, detail=True)} {format_tags(detail.tags)}")
        self.line(f"Exec {self.id(job.execution_id)}"
                  + (f" > parent Job {self.id(job.parent_id)}" if job.parent_id else ""))
        self.line(f"Duration: {format_duration(job.duration)}")
        if detail.child_ids:
            self.line(f"Child jobs: {' '.join(self.id(c) for c in detail.child_ids)}")
        self.line()
        if detail.call is None:
            self.line("CallNode UNKNOWN: Job has not finished or has been killed.", 2)
            self.line(f"Task {self.id(job.task_hash)} {job.task_name}", 2)
        else:
            self.call_detail(detail.call, indent=2)

    def call_detail(self, call, indent: int = 0) -> None:
        from objstore.query import LogQuery

        self.line(f"CallNode {self.id(call.call_hash, detail=indent == 0)} {call.task_name} {format_tags(call.tags)}",
                  indent)
        self.line(f"Args:   {LogQuery.format_args(call.args)}", indent + 2)
        result = call.result.preview if call.result else f"<missing {call.result_hash[:8]}>"
        self.line(f"{'Raised' if call.raised else 'Result'}: {result}", indent + 2)
        self.line(f"Task {self.id(call.task_hash)} {call.task_name}", indent + 2)
        if call.children:
            self.line("Child CallNodes: " + " ".join(self.id(c) for c in call.children), indent + 2)

    def value_detail(self, detail) -> None:
        v = detail.value
        self.line(f"Value {self.id(v.value_hash, detail=True)} {v.type} {format_tags(detail.tags)}")
        self.line(f"Format: {v.format}, {v.size} bytes")
        self.line(v.preview)
        if detail.subvalues:
            self.line("Subvalues: " + " ".join(self.id(s) for s in detail.subvalues))


__all__ = ["register", "cmd_log", "format_duration", "format_time"]
