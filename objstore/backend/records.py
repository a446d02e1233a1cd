"""Record sync in redun's export format: get_records, put_records, iter_record_ids."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from objstore import model
from objstore.backend.core import MISSING, Core, log
from objstore.backend.jobs import Jobs
from objstore.backend.tags import Tags
from objstore.errors import CorruptObject, InvalidId, ObjectNotFound
from objstore.ids import is_hash, is_uuid
from objstore.model import job as job_kind
from objstore.model.base import Edge

EXPORT_KINDS = model.EXPORT_KINDS


class Records:
    def __init__(self, core: Core, jobs: Jobs, tags: Tags):
        self.core = core
        self.jobs = jobs
        self.tags = tags

    def kind(self, record_id: str) -> Any:
        """The kind of an id (index first, then one read of the object), or MISSING."""
        if not (is_hash(record_id) or is_uuid(record_id)):
            return MISSING
        kind = self.core.kind_of(record_id)
        if kind is not MISSING:
            return kind
        if is_uuid(record_id) and self.core.lookup("job_start", record_id) is not MISSING:
            return model.JOB
        got = self.core.get_or_missing(record_id)
        return got[0] if got is not MISSING else MISSING

    # -- get ----------------------------------------------------------------------------------

    def get_record(self, record_id: str) -> Any:
        kind = self.kind(record_id)
        if kind not in EXPORT_KINDS:
            return MISSING
        if kind == model.JOB:
            return self._job_record(record_id)
        got = self.core.get_or_missing(record_id, kind)
        if got is MISSING:
            return MISSING
        try:
            return model.to_export(kind, record_id, got[1])
        except (CorruptObject, KeyError, TypeError) as exc:
            log.warning("objstore: cannot export %s %s: %s", kind, record_id, exc)
            return MISSING

    def _job_record(self, job_id: str) -> Any:
        # A running job has no object yet: its record is built from its start note.
        job = self.jobs.get_job_info(job_id)
        if job is MISSING:
            return MISSING
        result_type = None
        if job.get("call_hash"):
            value_hash = self.core.lookup("call_result", job["call_hash"])
            if value_hash is not MISSING:
                found = self.core.lookup("value_type", value_hash)
                result_type = found if found is not MISSING else None
        payload, _ = job_kind.JOB_KIND.build(
            job_id,
            start_time=job["start_time"],
            end_time=job.get("end_time"),
            task_hash=job["task_hash"],
            cached=job.get("cached", False),
            call_hash=job.get("call_hash"),
            parent_id=job.get("parent_id"),
            execution_id=job["execution_id"],
        )
        children = self.jobs.job_children(job_id)
        return model.to_export(model.JOB, job_id, payload, job_children=children, result_type=result_type)

    def get_records(self, ids: Iterable[str], sorted: bool = True) -> Iterator[dict]:
        """Export records for the ids, in input order; unknown ids are silently dropped."""
        seen: set[str] = set()
        for record_id in ids:
            if record_id in seen and not sorted:
                continue
            seen.add(record_id)
            record = self.get_record(record_id)
            if record is not MISSING:
                yield record

    # -- put ----------------------------------------------------------------------------------

    def put_records(self, records: Iterable[dict]) -> int:
        """Store records whose id is not present yet (existing ids are never updated).

        Executions are stored last, with their root job's start time (redun's export has none):
        without it `log` would sort every imported execution as the oldest."""
        count = 0
        added: set[str] = set()
        executions: list[dict] = []
        job_starts: dict[str, str] = {}
        for record in records:
            if record.get("_type") == "Execution" and not record.get("start_time"):
                executions.append(record)
                continue
            if record.get("_type") == "Job" and isinstance(record.get("start_time"), str):
                job_starts[str(record.get("id"))] = record["start_time"]
            count += self._put(record, added)
        for record in executions:
            start = job_starts.get(str(record.get("job_id")))
            if start is None and record.get("job_id"):
                info = self.jobs.get_job_info(str(record["job_id"]))
                start = info.get("start_time") if info is not MISSING else None
            count += self._put({**record, "start_time": start} if start else record, added)
        return count

    def _put(self, record: dict, added: set[str]) -> int:
        kind, object_id, payload = model.from_export(record)
        if object_id in added or self.core.has(object_id):
            return 0
        self.core.add(kind, object_id, payload)
        added.add(object_id)
        return 1

    # -- graph walk ---------------------------------------------------------------------------

    def _edges(self, kind: str, record_id: str) -> Iterator[Edge]:
        if kind == model.VALUE:
            # From the index: a value's header would mean reading the (maybe huge) value.
            for child in self.core.lookup_all("subvalues", record_id):
                yield model.VALUE, child
        elif kind == model.JOB:
            job = self.jobs.get_job_info(record_id)
            if job is not MISSING:
                yield from model.edges(kind, record_id, job)
            for child in self.jobs.job_children(record_id):
                yield model.JOB, child
        elif kind in EXPORT_KINDS:
            doc = self.core.get_meta(record_id, kind)
            if doc is not MISSING:
                yield from model.edges(kind, record_id, doc)
            if kind == model.TAG:
                for child in self.tags.tag_children(record_id):
                    yield model.TAG, child
        for tag_hash in self.tags.entity_tag_hashes(record_id):
            yield model.TAG, tag_hash

    def iter_record_ids(self, root_ids: Iterable[str]) -> Iterator[str]:
        """Breadth-first over redun's ownership edges, one layer at a time, each id once."""
        seen: set[str] = set()
        layer: list[tuple[str, str]] = []
        for root in root_ids:
            try:
                kind = self.kind(root)
            except (InvalidId, ObjectNotFound):
                continue
            if kind in EXPORT_KINDS:
                layer.append((kind, root))
        while layer:
            fresh = []
            for kind, record_id in layer:
                if record_id not in seen:
                    seen.add(record_id)
                    fresh.append((kind, record_id))
                    yield record_id
            if not fresh:
                break
            layer = [edge for kind, record_id in fresh for edge in self._edges(kind, record_id)]
