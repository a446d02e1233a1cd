"""What the roots reach: the values and call nodes gc --prune keeps.

Roots are every execution and job (jobs hang off their execution; none is ever pruned), every
eval head, every tag (its entity is kept) and every handle. From a job its call node and task;
from a call node its task, result, arguments, upstream calls and children (model.edges, the
edges redun's own graph walk follows); from a value its subvalues. A task is kept as the value
whose hash is the task hash (redun records Task values that way).
"""

from __future__ import annotations

from collections.abc import Callable

from objstore import model
from objstore.errors import CorruptObject
from objstore.missing import Missing
from objstore.repo import Repository

Progress = Callable[[str, int], None]
_BATCH = 512


def reachable(repo: Repository, *, progress: Progress | None = None) -> tuple[set[str], list[str]]:
    """(every id the roots reach, the ids named as reached but found nowhere)."""
    seen: set[str] = set()
    calls: list[str] = []
    values: list[str] = []
    missing: list[str] = []

    def reach(kind: str, object_id: str) -> None:
        if object_id in seen:
            return
        seen.add(object_id)
        if kind == model.CALL:
            calls.append(object_id)
        elif kind in (model.VALUE, model.TASK):
            values.append(object_id)

    jobs: list[str] = []
    for object_id, kind in repo.index.items("objects"):
        if kind in (model.JOB, model.EXECUTION, model.TAG, model.HANDLE, model.HANDLE_EDGE):
            seen.add(object_id)
            if kind == model.JOB:
                jobs.append(object_id)
    for _, value_hash in repo.index.items("evals"):
        reach(model.VALUE, value_hash)
    entities = list(dict.fromkeys(entity for entity, _ in repo.index.items("tags_by_entity")))
    for start in range(0, len(entities), _BATCH):
        batch = entities[start : start + _BATCH]
        for entity, kind in zip(batch, repo.index.get_many("objects", batch)):
            # a value, a call node, a job...: whichever it is, kept (and walked, for a call node)
            reach(model.VALUE if isinstance(kind, Missing) else kind, entity)
    for handle_hash, _ in repo.index.items("handles"):
        reach(model.VALUE, handle_hash)
    for start in range(0, len(jobs), _BATCH):
        batch = jobs[start : start + _BATCH]
        for object_id, doc in _docs(repo, batch, model.JOB, missing):
            for kind, target in model.edges(model.JOB, object_id, doc):
                reach(model.VALUE if kind == model.TASK else kind, target)
    done = 0
    while calls or values:
        while calls:
            batch, calls[:] = calls[:_BATCH], calls[_BATCH:]
            for object_id, doc in _docs(repo, batch, model.CALL, missing):
                for kind, target in model.edges(model.CALL, object_id, doc):
                    reach(model.VALUE if kind == model.TASK else kind, target)
            done += len(batch)
            if progress:
                progress("reach", done)
        while values:
            value_hash = values.pop()
            for child in repo.index.get_all("subvalues", value_hash):
                reach(model.VALUE, child)
    return seen, missing


def _docs(repo: Repository, ids: list[str], kind: str, missing: list[str]) -> list[tuple[str, dict]]:
    try:
        got = repo.get_many(ids)
    except CorruptObject:
        got = []
        for object_id in ids:
            try:
                got.append(repo.get(object_id))
            except Exception:  # noqa: BLE001 - damaged: fsck's business; its edges are unknown
                got.append(None)  # type: ignore[arg-type]
    out = []
    for object_id, item in zip(ids, got):
        if item is None:
            continue
        if isinstance(item, Missing):
            missing.append(object_id)
            continue
        found_kind, payload = item
        if found_kind != kind:
            continue
        try:
            out.append((object_id, model.decode(kind, payload, object_id)))
        except CorruptObject:
            continue
    return out


__all__ = ["reachable"]
