"""How `objstore log` prints query results: redun's `redun log` text, line for line.

``Exec <id> [ DONE ] <time>:  <args> <tags>``, ``Job <id> [CACHED] <time>:  task(args) <tags>``,
a job's ``Traceback: Exec … > Job … > Job …`` stack, ``CallNode … / Args: / Result:``, a task's
source, and the rest as redun's cli.py shows them. Where objstore knows more than redun shows
(a value's producers and consumers, damaged objects, UNFINISHED jobs) it adds lines after.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TextIO

from objstore.model.times import parse_timestamp
from objstore.query.reads import format_args
from objstore.query.tags import format_tags

STATUS_WIDTH = 6  # redun's; widened when an UNFINISHED job is on show
RULE = "-" * 80
TABLE_STATUSES = ("PENDING", "RUNNING", "FAILED", "CACHED", "DONE")


_SHOWN: dict[str, str] = {}  # a timestamp's first 19 characters + offset -> local time shown


def format_time(text: str | None) -> str:
    """redun's format_timestamp: local time, to the second. Jobs of one second share the
    conversion (a job tree prints ten thousand)."""
    if not text:
        return "?"
    key = text[:19] + text[-6:]
    shown = _SHOWN.get(key)
    if shown is None:
        when = parse_timestamp(text)
        shown = when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else "?"
        if len(_SHOWN) < 100_000:
            _SHOWN[key] = shown
    return shown


def format_duration(seconds: float | None) -> str:
    """redun's format_timedelta: H:MM:SS.cc."""
    if seconds is None:
        return "-"
    delta = timedelta(seconds=seconds)
    hours, rest = divmod(delta.days * 86400 + delta.seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}.{delta.microseconds // 10000:02}"


def format_counts(counts) -> str:
    parts = [f"DONE: {counts.done}", f"CACHED: {counts.cached}", f"FAILED: {counts.failed}"]
    if counts.running:
        parts.append(f"RUNNING: {counts.running}")
    if counts.unfinished:
        parts.append(f"UNFINISHED: {counts.unfinished}")
    return f"{counts.total} ({', '.join(parts)})"


def status_table(jobs, when: str | None) -> list[str]:
    """redun's job status table (format_job_statuses): jobs per task and status, ALL first."""
    columns = list(TABLE_STATUSES)
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
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        out.append("| " + " ".join(cells))
        if n == 0:
            out.append("| ")  # redun's format_table rule under the header
    out.append("")
    return out


class Printer:
    def __init__(self, stream: TextIO, *, full_ids: bool = False, tree_limit: int | None = None):
        self.stream = stream
        self.full_ids = full_ids
        self.width = STATUS_WIDTH
        self.tree_limit = tree_limit

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

    def fit(self, statuses) -> None:
        self.width = max([STATUS_WIDTH, *(len(self._shown(s)) for s in statuses)])

    def problems(self, problems: list[str], indent: int = 0) -> None:
        for problem in problems:
            self.line(f"! {problem}", indent)

    # -- executions --------------------------------------------------------------------------

    def exec_line(self, e, detail: bool = False) -> str:
        return (f"Exec {self.id(e.id, detail)} [{self.status(e.status)}] {format_time(e.start_time)}:  "
                f"{' '.join(e.args)} {format_tags(e.tags)}")

    def executions(self, summaries, *, header: bool = True) -> None:
        if header:
            if not summaries:
                self.line("No executions.")
                return
            self.line("Recent executions:")
            self.line()
        self.fit(s.status for s in summaries)
        for e in summaries:
            self.line(self.exec_line(e))

    def execution_tree(self, tree) -> None:
        e = tree.execution
        statuses = [e.status] + ([j.status for j in tree.root.walk()] if tree.root else [])
        self.fit(statuses)
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
        shown = self._tree(tree.root, 0, [0])
        total = e.counts.total if e.counts else shown
        if self.tree_limit is not None and shown < total:
            self.line(f"... {total - shown} more jobs (--limit {self.tree_limit})")

    def _tree(self, job, indent: int, count: list[int]) -> int:
        if self.tree_limit is not None and count[0] >= self.tree_limit:
            return count[0]
        count[0] += 1
        self.line(self.job_line(job), indent)
        for child in job.children:
            self._tree(child, indent + 2, count)
        return count[0]

    # -- jobs --------------------------------------------------------------------------------

    def job_line(self, job, detail: bool = False) -> str:
        return (f"Job {self.id(job.id, detail)} [{self.status(job.status)}] {format_time(job.start_time)}:  "
                f"{job.task_name}({job.args}) {format_tags(job.tags)}")

    def stack_line(self, detail) -> str:
        """redun's short traceback: Exec x > (N Jobs) > Job parent name > Job this name."""
        stack = detail.stack or [(detail.job.id, detail.job.task_name.rsplit(".", 1)[-1])]
        parts = [f"Exec {self.id(detail.job.execution_id)} > "]
        if len(stack) > 2:
            n = len(stack) - 2
            parts.append(f"({n} {'Jobs' if n > 1 else 'Job'}) > ")
        if len(stack) > 1:
            parts.append(f"Job {stack[1][0][:8]} {stack[1][1]} > ")
        parts.append(f"Job {stack[0][0][:8]} {stack[0][1]}")
        return "Traceback: " + "".join(parts)

    def job_detail(self, detail, indent: int = 0) -> None:
        job = detail.job
        self.fit([job.status])
        self.line(self.job_line(job, detail=True), indent)
        self.line(self.stack_line(detail), indent)
        if job.status == "DONE":
            self.line(f"Duration: {format_duration(job.duration) if job.duration is not None else 'Unknown'}", indent)
        self.line()
        if detail.call is not None:
            self.call_detail(detail.call, indent=indent + 2, in_job=True)
        elif job.call_hash:
            self.line(f"CallNode {job.call_hash} is unreadable (a damaged or missing object)", indent + 2)
            self.line()
            if detail.task is not None:
                self.task_detail(detail.task, indent=indent + 2, show_job=False)
        else:
            self.line("CallNode UNKNOWN: Job has not finished or has been killed.", indent + 2)
            self.line()
            if detail.task is not None:
                self.task_detail(detail.task, indent=indent + 2, show_job=False)
        if job.status == "FAILED" and detail.call is not None and detail.call.result is not None:
            self.line()
            self.line("Traceback:", indent + 2)
            for text in detail.call.result.traceback or []:
                self.line(text, indent + 2)
        if detail.child_ids:
            self.line()
            self.line(f"Child jobs: {' '.join(self.id(c) for c in detail.child_ids)}", indent + 2)
        self.problems(detail.problems, indent)

    # -- call nodes and tasks ----------------------------------------------------------------

    def call_line(self, ref, indent: int = 0) -> None:
        self.line(f"CallNode {self.id(ref.call_hash)} {ref.task_name} {format_tags(ref.tags)}", indent)

    def call_detail(self, call, indent: int = 0, in_job: bool = False) -> None:
        self.line(f"CallNode {self.id(call.call_hash, detail=True)} {call.task_name} {format_tags(call.tags)}", indent)
        self.line(f"Args:   {format_args(call.args)}", indent + 2)
        if call.raised:
            self.line(f"Raised: {call.result.error or 'Unknown'}", indent + 2)
        else:
            result = call.result.preview if call.result else f"<missing {call.result_hash[:8]}>"
            self.line(f"Result: {result}", indent + 2)
        if not in_job and call.parents:
            self.line("Parent CallNodes:", indent + 2)
            for ref in call.parents:
                self.call_line(ref, indent + 4)
        if not in_job and call.child_calls:
            self.line("Child CallNodes:", indent + 2)
            for ref in call.child_calls:
                self.call_line(ref, indent + 4)
        if call.task is not None:
            self.line()
            self.task_detail(call.task, indent=indent, show_job=False)
        self.dataflow(call.dataflow, indent)

    def dataflow(self, lines: list[str], indent: int) -> None:
        if not lines:
            return
        self.line()
        self.line("Upstream dataflow:", indent)
        self.line()
        for text in lines:
            self.line(text, indent + 2)

    def task_line(self, task, indent: int = 0) -> None:
        self.line(f"Task {self.id(task.task_hash)} {task.fullname} {format_tags(task.tags)}", indent)

    def task_detail(self, task, indent: int = 0, show_job: bool = True) -> None:
        self.line(f"Task {self.id(task.task_hash, detail=True)} {task.fullname} {format_tags(task.tags)}", indent)
        if show_job and task.first_job:
            self.line(f"First Job {task.first_job[0][:8]} {task.first_job[1] or '?'}", indent + 2)
        self.line()
        for text in (task.source or "(source not recorded)").split("\n"):
            self.line(text, indent + 2)

    # -- values and files --------------------------------------------------------------------

    def value_line(self, v, *, as_file: bool = False) -> None:
        if as_file and v.path is not None:
            self.line(f"File {self.id(v.value_hash)} {v.path} {format_tags(v.tags)}")
        else:
            self.line(f"Value {self.id(v.value_hash)} {v.type} {v.preview} {format_tags(v.tags)}")

    def value_detail(self, detail) -> None:
        v = detail.value
        if v.path is not None:
            self.line(f"File {self.id(v.value_hash)} {v.path} {format_tags(detail.tags)}")
        else:
            self.line(f"Value {self.id(v.value_hash, detail=True)} {v.type} {format_tags(detail.tags)}")
            self.line(f"Format: {v.format}, {v.size} bytes")
            self.line(v.preview)
        if detail.subvalues:
            self.line("Subvalues: " + " ".join(self.id(s) for s in detail.subvalues))
        self.dataflow(detail.dataflow, 0)
        self.uses("Produced by", detail.produced_by, {v.value_hash})
        self.uses("Consumed by", detail.consumed_by, {v.value_hash})

    def uses(self, title: str, uses: list[Any], of: set[str], indent: int = 0) -> None:
        """The call nodes that returned or took a value (``of``: its hashes), with their jobs."""
        if not uses:
            return
        self.line()
        self.line(f"{title}:", indent)
        for use in uses:
            job = f"Job {self.id(use.job_id)} {format_time(use.job_time)}" if use.job_id else "no job recorded"
            inside = "" if use.value_hash in of else f" (inside Value {self.id(use.value_hash)})"
            self.line(f"CallNode {self.id(use.call.call_hash)} {use.call.task_name}({use.call.args}) "
                      f"in {job}{inside}", indent + 2)  # fmt: skip

    def file_detail(self, detail) -> None:
        for v in detail.values[:1] or []:
            self.line(f"File {self.id(v.value_hash)} {detail.path}")
        if detail.job is not None:
            self.line(f"{detail.verb} by Job {self.id(detail.job.job.id)}")
            self.line()
            self.job_detail(detail.job, indent=2)
        hashes = {v.value_hash for v in detail.values}
        self.uses("Produced by", detail.produced_by, hashes)
        self.uses("Consumed by", detail.consumed_by, hashes)
        if not detail.produced_by and not detail.consumed_by:
            self.line()
            self.line("No call node produced or consumed it.")

    # -- tags --------------------------------------------------------------------------------

    def tag_counts(self, counts, *, by_value: bool) -> None:
        from objstore.query.tags import format_tag

        self.line("Tags:")
        for c in counts:
            shown = ", ".join(f"{n} {t}" for t, n in c.counts.items())
            if by_value:
                self.line(f"  {format_tag(c.key, c.value, max_length=1 << 30):30} ({shown})")
            else:
                self.line(f"  {c.key:10} ({shown})")


__all__ = ["Printer", "format_time", "format_duration", "status_table", "RULE"]
