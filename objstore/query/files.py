"""Files by path: which call nodes produced and consumed a File, and during which jobs.

A File value is indexed by its recorded path (``files_by_path``), and every call node by the
values it returned and took (``calls_by_result`` / ``calls_by_arg``), containers included
(``value_parents``), so `log <path>` is a handful of index reads, never a scan.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from objstore.backend import MISSING
from objstore.model.schema import path_key
from objstore.model.times import parse_timestamp
from objstore.query.log import LogQuery
from objstore.query.results import FileDetail, ValueInfo, ValueUse


def path_spellings(text: str, cwd: str) -> list[str]:
    """A path as given, absolute, and relative to ``cwd``: redun records a File's path as the
    workflow spelled it (``File("prog.c")`` is recorded as ``prog.c``)."""
    absolute = os.path.normpath(os.path.join(cwd, os.path.expanduser(text)))
    out = [text, absolute]
    try:
        out.append(os.path.relpath(absolute, cwd))
    except ValueError:
        pass
    return list(dict.fromkeys(out))


def values_at(q: LogQuery, path: str) -> list[str]:
    """The File values recorded at exactly this path (every content it had)."""
    return q.core.lookup_all("files_by_path", path_key(path))


def file_detail(q: LogQuery, paths: Iterable[str]) -> FileDetail | None:
    """The first of ``paths`` (spellings of one path: as given, absolute, relative) that a File
    was recorded at, or None. The job shown is redun's choice: the newest producer's (by its
    end), else the newest consumer's (by its start)."""
    for path in dict.fromkeys(paths):
        value_hashes = values_at(q, path)
        if value_hashes:
            return _detail(q, path, value_hashes)
    return None


def _detail(q: LogQuery, path: str, value_hashes: list[str]) -> FileDetail:
    values = [v for v in (q.value_info(h) for h in value_hashes) if v is not None]
    produced: list[ValueUse] = []
    consumed: list[ValueUse] = []
    for value_hash in value_hashes:
        produced.extend(q.uses(value_hash, produced=True))
        consumed.extend(q.uses(value_hash, produced=False))
    newest = datetime.min.replace(tzinfo=UTC)
    produced.sort(key=lambda u: parse_timestamp(u.job_time) or newest, reverse=True)
    consumed.sort(key=lambda u: parse_timestamp(u.job_time) or newest, reverse=True)
    chosen = _redun_choice(q, produced, produced=True) or _redun_choice(q, consumed, produced=False)
    verb = "Produced" if produced and chosen else "Consumed" if chosen else ""
    job = q.job(chosen[0]) if chosen else None
    if chosen:
        # Show first the File value the chosen job made or used, as redun does.
        holder = chosen[1]
        values.sort(key=lambda v: v.value_hash not in (holder, *q.prov.values.get_subvalues(holder)))
    return FileDetail(path, values, produced, consumed, job, verb)


def _redun_choice(q: LogQuery, uses: list[ValueUse], *, produced: bool) -> tuple[str, str] | None:
    """(job id, the value its call returned / took) that redun's log_file shows: of the producing
    call nodes, the one whose first job ended first, and that first job ("earlier job end is
    deepest"); of the consuming ones, the one whose latest job started last, and that job."""
    best: tuple[datetime, str, str] | None = None
    for use in uses:
        metas = [(j, q.job_meta(j)) for j in q.jobs_of_call(use.call.call_hash)]
        times: list[tuple[datetime, str]] = []
        for job_id, meta in metas:
            when = parse_timestamp(meta.get("end_time" if produced else "start_time")) if meta is not MISSING else None
            if when is not None:
                times.append((when, job_id))
        if not times:
            continue
        when, job_id = min(times) if produced else max(times)
        if best is None or (when < best[0] if produced else when > best[0]):
            best = (when, job_id, use.value_hash)
    return (best[1], best[2]) if best else None


def all_files(q: LogQuery, patterns: Iterable[str] = ()) -> Iterator[ValueInfo]:
    """Every File value (optionally only paths matching one of ``patterns``, ``*`` a wildcard
    as in redun's --file-path), ordered by path."""
    patterns = list(patterns)
    found = []
    for _, value_hash in q.prov.repo.scan("files_by_path"):
        info = q.value_info(value_hash)
        if info is None or info.path is None:
            continue
        if patterns and not any(fnmatch.fnmatchcase(info.path, p) for p in patterns):
            continue
        found.append(info)
    found.sort(key=lambda v: (v.path or "", v.value_hash))
    yield from found


__all__ = ["file_detail", "values_at", "all_files", "path_spellings"]
