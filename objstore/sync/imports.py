"""Import either stream (objstore's or redun's, told apart by the first line) into a repository.

Idempotent: an object the repository already has is left alone (objects are immutable), a
head or a note written again changes nothing, handle states merge as a union. Every line is
checked before anything from it is buffered; the first bad line stops the import with its
number and what is wrong, after the lines before it are flushed (objects, then eval heads,
then the journal segment: a flush's order), so what was imported is consistent and importing
the repaired file again finishes the job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from objstore import model
from objstore.errors import ConcurrentUpdate, InvalidStream
from objstore.missing import Missing
from objstore.model import handle as handle_kind
from objstore.model import job as job_kind
from objstore.repo import Repository
from objstore.sync import streams
from objstore.sync.streams import Item, LineError
from refs.backoff import attempts

FLUSH_EVERY = 50_000
CAS_RETRIES = 100


@dataclass
class ImportResult:
    stream: str = ""
    lines: int = 0
    objects: int = 0  # new objects written
    present: int = 0  # objects the repository already had
    evals: int = 0
    notes: int = 0
    states: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


class Importer:
    def __init__(self, repo: Repository, *, where: str = "input"):
        self.repo = repo
        self.where = where
        self.result = ImportResult()
        self.added: set[str] = set()
        self.states: dict[str, set[str]] = {}
        self.executions: list[Item] = []  # redun Executions, completed at the end
        self.job_starts: dict[str, str] = {}  # redun Job id -> its start_time
        self.items = 0
        self.ended = False
        # Into a new repository, nothing but this import's own objects can be present.
        self.empty_at_start = repo.index.count("objects") == 0 and not repo.pending()

    def known(self, object_id: str) -> bool:
        if object_id in self.added:
            return True
        return not self.empty_at_start and isinstance(self.repo.lookup("objects", object_id), str)

    def add(self, item: Item) -> None:
        if self.known(item.id):
            self.result.present += 1
            return
        self.repo.add(item.id, item.kind, item.payload, item.entries)
        self.added.add(item.id)
        self.result.objects += 1
        self.result.kinds[item.kind] = self.result.kinds.get(item.kind, 0) + 1

    # -- one line each ------------------------------------------------------------------------

    def take_objstore(self, item: Item) -> None:
        if self.ended:
            raise LineError("a line after the stream's end line")
        if item.type == streams.END:
            if item.value != self.items:
                raise LineError(f"the end line counts {item.value} items, but the stream holds {self.items}")
            self.ended = True
            return
        self.items += 1
        if item.type == streams.OBJECT:
            self.add(item)
        elif item.type == streams.JOB_START:
            if not self.known(item.id):
                self.repo.note(item.entries or [])
                self.result.notes += 1
        elif item.type == streams.EXEC_UPDATED:
            if self.repo.lookup("exec_updated", item.id) != item.value:  # the same heartbeat: nothing new
                self.repo.note(item.entries or [])
                self.result.notes += 1
        elif item.type == streams.EVAL:
            if not self.known(item.value):
                raise LineError(
                    f"eval head {item.id} points at value {item.value}, which is neither earlier in "
                    "the stream nor in the repository"
                )
            if self.repo.eval_head(item.id, by_path=False) != item.value:
                self.repo.set_eval_head(item.id, item.value)
                self.result.evals += 1
        elif item.type == streams.HANDLE_STATE:
            self.states.setdefault(item.id, set()).update(item.value)

    def take_redun(self, item: Item) -> None:
        if item.kind == model.EXECUTION:
            self.executions.append(item)
            return
        if item.kind == model.JOB:
            self.job_starts[item.id] = model.decode(item.kind, item.payload, item.id)["start_time"]
        self.add(item)

    # -- the end ------------------------------------------------------------------------------

    def _root_start(self, job_id: Any) -> str | None:
        if not isinstance(job_id, str):
            return None
        if job_id in self.job_starts:
            return self.job_starts[job_id]
        got = self.repo.get_many([job_id])[0] if self.known(job_id) else None
        if got is not None and not isinstance(got, Missing):
            return model.decode(got[0], got[1], job_id).get("start_time")
        note = self.repo.lookup("job_start", job_id)
        return None if isinstance(note, Missing) else model.decode(model.JOB, note.encode(), job_id).get("start_time")

    def finish_executions(self) -> None:
        # redun's Execution record has no time; objstore orders executions by their root job's
        # start, which is in the same stream (or already in the repository).
        for item in self.executions:
            if self.known(item.id):
                self.result.present += 1
                continue
            record = item.record or {}
            payload, entries = job_kind.EXECUTION_KIND.build(
                item.id, args=record["args"], job_id=record.get("job_id"),
                start_time=self._root_start(record.get("job_id")),
            )  # fmt: skip
            self.add(Item(streams.REDUN, item.id, model.EXECUTION, payload, entries))
        self.executions = []

    def merge_states(self) -> None:
        repo = self.repo
        for fullname, invalid in self.states.items():
            for _ in attempts(CAS_RETRIES):
                _, raw = repo.read_handle_state(fullname)
                current = set() if isinstance(raw, Missing) else (handle_kind.decode_state(raw) or set())
                union = current | invalid
                if union == current and not isinstance(raw, Missing):
                    break
                if repo.swap_handle_state(fullname, raw, handle_kind.encode_state(union)):
                    self.result.states += 1
                    break
            else:
                raise ConcurrentUpdate(f"could not merge the state of handle {fullname}: too many concurrent writers")
        self.states = {}

    def flush(self) -> None:
        """Write what is buffered (objects, heads, one segment), then the handle states."""
        self.finish_executions()
        self.repo.flush()
        self.merge_states()

    def run(self, lines: Iterable[str | bytes]) -> ImportResult:
        stream = None
        number = 0
        try:
            for line in lines:
                number += 1
                text = _text(line)
                if not text.strip():
                    continue
                doc = streams.parse_json_line(text)
                if stream is None:
                    stream = self.result.stream = streams.detect(doc)
                    if stream == streams.OBJSTORE:
                        continue  # the header line
                if stream == streams.OBJSTORE:
                    self.take_objstore(streams.parse_objstore(doc))
                else:
                    self.take_redun(streams.parse_redun(doc))
                if self.repo.pending() >= FLUSH_EVERY:
                    self.repo.flush()
            self.result.lines = number
            if stream == streams.OBJSTORE and not self.ended:
                number += 1
                raise LineError("the stream ends without its end line: the file is truncated")
        except LineError as exc:
            self.flush()  # the lines before this one, in a flush's order
            raise InvalidStream(number, str(exc), where=self.where) from None
        self.flush()
        return self.result


def _text(line: str | bytes) -> str:
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def import_lines(repo: Repository, lines: Iterable[str | bytes], *, where: str = "input") -> ImportResult:
    return Importer(repo, where=where).run(lines)


__all__ = ["Importer", "ImportResult", "import_lines"]
