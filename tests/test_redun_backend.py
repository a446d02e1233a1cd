"""A real redun Scheduler on ObjstoreBackend, and record exchange with redun's own sqlite backend."""

from __future__ import annotations

import json
import logging
import os

import pytest

from redun import File, Handle, Scheduler, apply_tags, task
from redun.backends.base import TagEntity
from redun.backends.db import Execution as DbExecution
from redun.backends.db import RedunBackendDb, RedunDatabaseError
from redun.config import Config
from redun.task import CacheCheckValid, CacheResult, CacheScope

from objstore.redun import ObjstoreBackend, setup_scheduler

from damage import damage_object

redun_namespace = "objstore_tests"

logging.getLogger("redun").setLevel(logging.WARNING)

CALLS: list[str] = []


@task()
def add(a: int, b: int) -> int:
    CALLS.append(f"add({a},{b})")
    return a + b


@task()
def fan(n: int) -> list:
    CALLS.append(f"fan({n})")
    return [add(i, 1) for i in range(n)]


@task()
def main(x: int) -> int:
    CALLS.append(f"main({x})")
    return add(add(x, 1), add(x, 2))


@task()
def lazy(x: int):
    CALLS.append(f"lazy({x})")
    return add(x, 10)  # an unevaluated expression: the eval cache stores it


@task()
def tagged(x: int):
    return apply_tags(x * 2, tags=[("stage", "demo")], job_tags=[("kind", "job")])


class Boom(Exception):
    pass


@task()
def fails(x: int) -> int:
    CALLS.append(f"fails({x})")
    raise Boom(f"boom {x}")


@task()
def write_file(path: str, text: str) -> File:
    CALLS.append(f"write_file({text})")
    f = File(path)
    f.write(text)
    return f


@task()
def read_file(f: File) -> str:
    CALLS.append("read_file")
    return f.read()


class CounterHandle(Handle):
    def __init__(self, name: str, start: int = 0):
        self.start = start


@task()
def use_handle(h: CounterHandle, x: int) -> CounterHandle:
    CALLS.append(f"use_handle({x})")
    return h


@pytest.fixture(params=["memory", "local"])
def backend(request, tmp_path):
    url = f"memory://bk-{os.urandom(6).hex()}/repo" if request.param == "memory" else str(tmp_path / "repo")
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "index"), create=True)
    backend.load()
    CALLS.clear()
    yield backend
    backend.close()


def latest_execution(backend) -> str:
    return backend.prov.jobs.list_executions()[0]


def scheduler_for(backend) -> Scheduler:
    return Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend)


def test_second_run_is_cached(backend):
    s = scheduler_for(backend)
    assert s.run(main(5)) == 6 + 7
    first = list(CALLS)
    assert sorted(first) == ["add(5,1)", "add(5,2)", "add(6,7)", "main(5)"]
    CALLS.clear()
    assert scheduler_for(backend).run(main(5)) == 13
    assert CALLS == []  # every job came from the cache
    assert scheduler_for(backend).run(main(6)) == 15
    assert "main(6)" in CALLS


def test_fanout_then_cached_after_reopen(backend, tmp_path):
    assert scheduler_for(backend).run(fan(20)) == list(range(1, 21))
    assert len(CALLS) == 21
    backend.flush()
    # A second backend on the same repository sees the cache.
    other = ObjstoreBackend(backend.url, index_dir=str(tmp_path / "index2"))
    CALLS.clear()
    assert scheduler_for(other).run(fan(20)) == list(range(1, 21))
    assert CALLS == []
    other.close()


def test_get_value_and_records(backend):
    scheduler = scheduler_for(backend)
    assert scheduler.run(add(2, 3)) == 5
    value_hash = backend.type_registry.get_hash(5)
    assert backend.get_value(value_hash) == (5, True)
    assert backend.get_value("0" * 40) == (None, False)
    ids = list(backend.iter_record_ids([latest_execution(backend)]))
    types = sorted(r["_type"] for r in backend.get_records(ids))
    # Execution, root job, its CallNode, the task value, the arguments and the result.
    assert types.count("Execution") == 1 and types.count("Job") == 1 and types.count("CallNode") == 1
    assert "Value" in types
    [job] = [r for r in backend.get_records(ids) if r["_type"] == "Job"]
    assert job["status"] == "DONE" and job["end_time"] and job["call_hash"]


def test_tags_via_apply_tags(backend):
    scheduler = scheduler_for(backend)
    assert scheduler.run(tagged(4), tags=[("project", "demo")]) == 8
    value_hash = backend.type_registry.get_hash(8)
    assert backend.get_tags([value_hash])[value_hash] == {"stage": ["demo"]}
    execution_id = latest_execution(backend)
    assert backend.get_tags([execution_id])[execution_id]["project"] == ["demo"]
    backend.update_tags(TagEntity.Value, value_hash, ["stage"], [("stage", "prod")])
    assert backend.get_tags([value_hash])[value_hash] == {"stage": ["prod"]}
    backend.delete_tags(value_hash, [("stage", "prod")])
    assert value_hash not in backend.get_tags([value_hash])
    backend.record_tags(TagEntity.Value, value_hash, [("stage", "demo")], new=True)
    assert backend.get_tags([value_hash])[value_hash] == {"stage": ["demo"]}


def test_failing_task(backend):
    scheduler = scheduler_for(backend)
    with pytest.raises(Boom):
        scheduler.run(fails(1))
    records = list(backend.get_records(backend.iter_record_ids([latest_execution(backend)])))
    [job] = [r for r in records if r["_type"] == "Job"]
    assert job["status"] == "FAILED"
    # A failure is not a cache hit for a new execution: the task runs again.
    CALLS.clear()
    with pytest.raises(Boom):
        scheduler_for(backend).run(fails(1))
    assert CALLS == ["fails(1)"]


def test_lazy_expression_result(backend):
    assert scheduler_for(backend).run(lazy(1)) == 11
    CALLS.clear()
    assert scheduler_for(backend).run(lazy(1)) == 11
    assert CALLS == []


def test_file_values(backend, tmp_path):
    path = str(tmp_path / "out.txt")
    assert scheduler_for(backend).run(read_file(write_file(path, "hello"))) == "hello"
    CALLS.clear()
    assert scheduler_for(backend).run(read_file(write_file(path, "hello"))) == "hello"
    assert CALLS == []
    # The File record carries its path as the export subtype.
    file_hash = File(path).hash
    [record] = backend.get_records([file_hash])
    assert record["subtype"] == {"_type": "File", "path": path}
    # Changing the file invalidates the cached File: the writer runs again.
    with open(path, "w") as out:
        out.write("changed")
    CALLS.clear()
    assert scheduler_for(backend).run(read_file(write_file(path, "hello"))) == "hello"
    assert "write_file(hello)" in CALLS


def test_handle(backend):
    h = CounterHandle("counter", start=1)
    result = scheduler_for(backend).run(use_handle(h, 1))
    assert isinstance(result, CounterHandle)
    assert backend.is_valid_handle(result)
    CALLS.clear()
    scheduler_for(backend).run(use_handle(CounterHandle("counter", start=1), 1))
    assert CALLS == []
    # Rolling back the initial handle invalidates what was derived from it.
    backend.rollback_handle(h)
    assert not backend.is_valid_handle(result)
    CALLS.clear()
    scheduler_for(backend).run(use_handle(CounterHandle("counter", start=1), 1))
    assert CALLS == ["use_handle(1)"]


def test_max_value_size_is_a_redun_database_error(tmp_path):
    backend = ObjstoreBackend(str(tmp_path / "repo"), index_dir=str(tmp_path / "idx"), max_value_size=100, create=True)
    with pytest.raises(RedunDatabaseError):
        backend.record_value("J" * 10000)
    backend.close()


def test_check_cache_missing_value_is_a_miss(tmp_path, caplog):
    url = str(tmp_path / "repo")
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "idx"), create=True)
    assert scheduler_for(backend).run(add(40, 2)) == 42
    backend.close()
    value_hash = backend.type_registry.get_hash(42)
    damage_object(url, value_hash, "missing")
    fresh = ObjstoreBackend(url, index_dir=str(tmp_path / "idx2"))
    eval_hash, args_hash = _eval_of(fresh, add, 40, 2)
    with caplog.at_level(logging.WARNING, logger="objstore"):
        result = fresh.check_cache(
            add.hash, args_hash, eval_hash, "00000000-0000-4000-8000-000000000000", {add.hash},
            CacheScope.BACKEND, CacheCheckValid.FULL,
        )
    assert result == (None, None, CacheResult.MISS)
    assert "cache miss" in caplog.text and value_hash in caplog.text
    CALLS.clear()
    assert scheduler_for(fresh).run(add(40, 2)) == 42
    assert CALLS == ["add(40,2)"]
    fresh.close()


def _eval_of(backend, t, *args):
    from redun.task import hash_args_eval

    return hash_args_eval(backend.type_registry, t, args, {})


def test_setup_scheduler_uses_config(tmp_path):
    url = str(tmp_path / "cfgrepo")
    config = Config({"backend": {"objstore_url": url, "objstore_index_dir": str(tmp_path / "i"),
                                 "objstore_create": "true"}})
    scheduler = setup_scheduler(config)
    assert isinstance(scheduler.backend, ObjstoreBackend)
    assert scheduler.run(add(1, 1)) == 2
    scheduler.backend.close()
    assert os.path.exists(os.path.join(url, "objstore.json"))
    scheduler2 = setup_scheduler(Config({"backend": {"db_uri": "objstore+" + url}}), index_dir=str(tmp_path / "j"))
    assert scheduler2.backend.url == url
    scheduler2.backend.close()


# -- record exchange with redun's own backend --------------------------------------------------


def _norm(record: dict) -> str:
    out = dict(record)
    for field in ("children", "subvalues", "parents"):
        if isinstance(out.get(field), list):
            out[field] = sorted(out[field])
    return json.dumps(out, sort_keys=True)


def _sqlite_records() -> list[dict]:
    db = RedunBackendDb(db_uri="sqlite:///:memory:")
    db.load()
    scheduler = scheduler_for(db)
    scheduler.run(main(3), tags=[("project", "x")])
    scheduler.run(tagged(5))
    with pytest.raises(Boom):
        scheduler.run(fails(2))
    value_hash = db.type_registry.get_hash(10)
    db.record_tags(TagEntity.Value, value_hash, [("env", "dev")])
    db.update_tags(TagEntity.Value, value_hash, ["env"], [("env", "prod")])
    db.delete_tags(value_hash, [("env", "prod")])
    roots = [e.id for e in db.session.query(DbExecution).all()]
    records = list(db.get_records(db.iter_record_ids(roots)))
    assert {r["_type"] for r in records} == {"Execution", "Job", "CallNode", "Value", "Tag"}
    return records


def test_sqlite_records_round_trip(backend):
    records = _sqlite_records()
    assert backend.put_records(list(reversed(records))) == len(records)
    assert backend.put_records(records) == 0  # idempotent
    ids = [r.get("id") or r.get("call_hash") or r.get("value_hash") or r.get("tag_hash") for r in records]
    got = list(backend.get_records(ids))
    assert sorted(map(_norm, got)) == sorted(map(_norm, records))
    # The same graph walk reaches the same ids.
    roots = [r["id"] for r in records if r["_type"] == "Execution"]
    assert set(backend.iter_record_ids(roots)) == set(ids)


def test_objstore_records_into_sqlite(backend):
    scheduler = scheduler_for(backend)
    scheduler.run(main(4), tags=[("project", "y")])
    scheduler.run(tagged(2))
    roots = backend.prov.jobs.list_executions()
    assert len(roots) == 2
    ids = list(backend.iter_record_ids(roots))
    records = list(backend.get_records(ids))
    db = RedunBackendDb(db_uri="sqlite:///:memory:")
    db.load()
    assert db.put_records(records) == len(records)
    again = list(db.get_records(ids))
    assert sorted(map(_norm, again)) == sorted(map(_norm, records))


# -- agreement with sqlite where the differential test found divergences ---------------------


def _both_backends(tmp_path):
    db = RedunBackendDb(db_uri="sqlite:///:memory:")
    db.load()
    ob = ObjstoreBackend(str(tmp_path / "repo"), index_dir=str(tmp_path / "idx"), create=True)
    ob.load()
    return db, ob


def test_cse_hit_when_job_args_hash_was_never_set(tmp_path):
    # sqlite's CSE query joins Job to its CallNode and takes args_hash from the node, so a
    # caller that records jobs without job.args_hash (only the scheduler sets it) still hits.
    # objstore keyed its CSE entry on job.args_hash alone and missed.
    from redun.scheduler import Execution, Job
    from redun.task import hash_args_eval

    exec_id = "00000000-0000-4000-8000-000000000001"
    for backend in _both_backends(tmp_path):
        eval_hash, args_hash = hash_args_eval(backend.type_registry, add, (1, 2), {})
        backend.record_execution(exec_id, ["run"])
        job = Job(add, add(1, 2), id="00000000-0000-4000-8000-000000000002", execution=Execution(exec_id))
        assert job.args_hash is None
        backend.record_job_start(job)
        result_hash = backend.record_value(3)
        job.call_hash = backend.record_call_node(
            add.fullname, add.hash, args_hash, ((1, 2), {}), ((1, 2), {}), result_hash, [], {add})
        backend.record_job_end(job)
        got = backend.check_cache(add.hash, args_hash, eval_hash, exec_id, {add.hash},
                                  CacheScope.CSE, CacheCheckValid.FULL)
        assert got == (3, job.call_hash, CacheResult.CSE), type(backend).__name__
        if isinstance(backend, ObjstoreBackend):
            backend.close()


def test_delete_tags_without_tags_or_keys_clears_the_entity_like_sqlite(tmp_path):
    # `redun tag rm <id> --` calls delete_tags(id, [], []): sqlite's empty or_() filter matches
    # every current tag, so the entity is cleared. objstore used to delete nothing.
    import warnings

    results = []
    for backend in _both_backends(tmp_path):
        value_hash = backend.record_value(7)
        other_hash = backend.record_value(8)
        backend.record_tags(TagEntity.Value, value_hash, [("env", "dev"), ("stage", 1)])
        backend.record_tags(TagEntity.Value, other_hash, [("env", "dev")])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLAlchemy's deprecation of an empty or_()
            rows = backend.delete_tags(value_hash, [], keys=[])
        tags = backend.get_tags([value_hash, other_hash])
        results.append((sorted(rows), {k: dict(v) for k, v in tags.items()}))
        if isinstance(backend, ObjstoreBackend):
            backend.close()
    sqlite, objstore = results
    assert sqlite == objstore
    assert objstore[1] == {backend.type_registry.get_hash(8): {"env": ["dev"]}}


# -- bad input: a clear error or a miss, never a crash inside the scheduler --------------------


@task()
def big(n: int) -> str:
    CALLS.append(f"big({n})")
    return "J" * n


@task()
def small_then_big(x: int) -> list:
    return [add(x, 1), big(add(x, 1000))]


def test_value_over_max_value_size_is_clear_and_loses_nothing_recorded_earlier(tmp_path):
    url = str(tmp_path / "repo")
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "idx"), max_value_size=1000, create=True)
    with pytest.raises(RedunDatabaseError, match=r"too large \(> 1000\).*max_value_size"):
        scheduler_for(backend).run(small_then_big(5))
    assert "add(5,1)" in CALLS and "big(1005)" in CALLS
    # The refused value left nothing behind, and the backend still works.
    assert backend.get_value(backend.type_registry.get_hash("J" * 1005)) == (None, False)
    assert backend.record_value("fine") == backend.type_registry.get_hash("fine")
    backend.close()
    # What was recorded before the refusal is in the repository, read by another client.
    fresh = ObjstoreBackend(url, index_dir=str(tmp_path / "idx2"), max_value_size=1000)
    assert len(fresh.prov.jobs.list_executions()) == 1
    assert fresh.get_value(fresh.type_registry.get_hash(6)) == (6, True)
    assert fresh.get_value(fresh.type_registry.get_hash("fine")) == ("fine", True)
    CALLS.clear()
    assert scheduler_for(fresh).run(add(5, 1)) == 6
    assert CALLS == []  # cached from the run that failed later
    fresh.close()


def test_ids_that_are_not_hashes_are_answered_as_sqlite_answers(tmp_path):
    # A query naming something that cannot exist is absent (sqlite's answer); it is never an
    # id turned into a path, and never an exception inside the scheduler's cache check.
    bad_ids = ["../x", "../../etc/passwd", "", "ABC", "0" * 39, "/abs", "g" * 40, "x" * 600]
    answers = []
    for backend in _both_backends(tmp_path):
        seen = []
        for bad in bad_ids:
            seen.append(("get_value", backend.get_value(bad)))
            seen.append(("get_job", backend.get_job(bad)))
            seen.append(("get_eval_cache", backend.get_eval_cache(bad)))
            seen.append(("get_call_cache", backend.get_call_cache(bad)))
            seen.append(("get_tags", backend.get_tags([bad])))
            seen.append(("records", list(backend.get_records(list(backend.iter_record_ids([bad]))))))
            for scope in (CacheScope.CSE, CacheScope.BACKEND):
                for valid in CacheCheckValid:
                    seen.append(("check_cache", backend.check_cache(
                        bad, bad, bad, bad, {bad}, scope, valid, context_hash=bad or None)))
        answers.append(seen)
        if isinstance(backend, ObjstoreBackend):
            # Writes refuse such an id with a clear error rather than storing it.
            with pytest.raises(ValueError, match="not a 40-hex hash"):
                backend.set_eval_cache("../x", add.hash, "0" * 40, 1)
            assert not os.path.exists(tmp_path / "x")
            backend.close()
    sqlite, objstore = answers
    assert objstore == sqlite
    assert ("get_value", (None, False)) in objstore
    assert all(r[1] == (None, None, CacheResult.MISS) for r in objstore if r[0] == "check_cache")


def test_scheduler_check_cache_with_a_non_hash_eval_hash_runs_the_task(tmp_path):
    backend = ObjstoreBackend(str(tmp_path / "repo"), index_dir=str(tmp_path / "idx"), create=True)
    assert scheduler_for(backend).run(add(1, 1)) == 2
    got = backend.check_cache(add.hash, "not-a-hash", "../evals/../../x", "not-a-uuid", {add.hash},
                              CacheScope.BACKEND, CacheCheckValid.SHALLOW)
    assert got == (None, None, CacheResult.MISS)
    backend.close()


def test_repository_of_a_newer_format_major_is_refused_on_load(tmp_path):
    from objstore.redun import ObjstoreRedunError

    url = str(tmp_path / "repo")
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "idx"), create=True)
    assert scheduler_for(backend).run(add(1, 2)) == 3
    backend.close()
    path = os.path.join(url, "objstore.json")
    with open(path) as f:
        fmt = json.load(f)
    fmt["version"] = [fmt["version"][0] + 1, 0]
    with open(path, "w") as f:
        json.dump(fmt, f)
    before = sorted(os.listdir(os.path.join(url, "objects")))
    newer = ObjstoreBackend(url, index_dir=str(tmp_path / "idx"))
    with pytest.raises(ObjstoreRedunError, match=rf"format version {fmt['version'][0]}\.0 is newer.*upgrade objstore"):
        newer.load()
    # Refused before anything is written, and a scheduler on it fails the same clear way.
    with pytest.raises(ObjstoreRedunError, match="newer"):
        scheduler_for(ObjstoreBackend(url, index_dir=str(tmp_path / "idx"))).run(add(1, 2))
    assert sorted(os.listdir(os.path.join(url, "objects"))) == before
    with open(path) as f:
        assert json.load(f)["version"] == fmt["version"]


@pytest.mark.parametrize("damage", ["missing", "corrupt", "truncated"])
def test_damaged_value_behind_an_eval_head_is_a_miss_and_the_task_reruns(tmp_path, caplog, damage):
    url = str(tmp_path / "repo")
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "idx"), create=True)
    assert scheduler_for(backend).run(add(40, 2)) == 42
    backend.close()
    value_hash = backend.type_registry.get_hash(42)
    damage_object(url, value_hash, damage)
    # The same index, which still believes the value is there: only the object is damaged.
    again = ObjstoreBackend(url, index_dir=str(tmp_path / "idx"))
    eval_hash, args_hash = _eval_of(again, add, 40, 2)
    with caplog.at_level(logging.WARNING, logger="objstore"):
        for valid in CacheCheckValid:
            got = again.check_cache(add.hash, args_hash, eval_hash, "00000000-0000-4000-8000-000000000000",
                                    {add.hash}, CacheScope.BACKEND, valid)
            assert got == (None, None, CacheResult.MISS)
    assert value_hash in caplog.text
    CALLS.clear()
    assert scheduler_for(again).run(add(40, 2)) == 42
    assert CALLS == ["add(40,2)"]  # re-run, never a wrong hit
    again.close()
