"""The SQL replica itself: rows exactly as SQLAlchemy (redun's models) writes them, first build
and incremental catch-up from the journal, running jobs that end later, heartbeats, tag
supersession, handle validity after a rollback, and rebuilding for another repository."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from redun import Handle, Scheduler, task
from redun.backends.db import Base
from redun.config import Config

from objstore.redun import ObjstoreBackend
from objstore.redun.replica import Replica
from objstore.redun.rows import ROW_TABLES, when

redun_namespace = "replica_tests"


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def fan(n: int) -> list:
    return [add(i, i) for i in range(n)]


class Counter(Handle):
    def __init__(self, name: str, start: int = 0):
        self.start = start


@task()
def bump(counter: Counter, by: int) -> Counter:
    return counter


def scheduler(backend) -> Scheduler:
    return Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend)


@pytest.fixture
def backend(tmp_path):
    b = ObjstoreBackend(str(tmp_path / "repo"), index_dir=str(tmp_path / "index"), create=True)
    yield b
    b.close()


def dump(path, tables=None) -> dict[str, list[tuple]]:
    db = sqlite3.connect(path)
    names = tables or [t.name for t in ROW_TABLES]
    return {name: db.execute(f'SELECT * FROM "{name}" ORDER BY rowid').fetchall() for name in names}


def test_rows_are_what_sqlalchemy_writes_through_redun_models(backend, tmp_path):
    replica = backend.replica
    replica.sync()  # built empty: what follows is caught up segment by segment
    scheduler(backend).run(fan(30))
    backend.record_tags("Execution", backend.prov.jobs.list_executions()[0], [("env", "dev"), ("n", 3)])
    backend.flush()
    replica.sync()
    assert not replica.last_sync["first"]
    fast = dump(replica.path)
    # The same rows inserted through SQLAlchemy Core, whose type processors (DateTimeUTC, Boolean,
    # redun's JSON, the TagEntity enum) decide what sqlite stores.
    rows = replica._rows_of(sorted(backend.prov.repo.applied_segments()))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    with engine.begin() as conn:
        Base.metadata.create_all(conn)
        def typed(rows_):
            data = [dict(r) for r in rows_]
            for r in data:
                for column in ("start_time", "end_time", "timestamp", "updated_time"):
                    if column in r:
                        r[column] = when(r[column])
            return data

        for table in ROW_TABLES:
            data = typed(rows.dicts(table.name))
            if table.name == "job":
                # As redun: a job's row is written at its start, and completed at its end.
                if rows.running:
                    conn.execute(table.insert().prefix_with("OR IGNORE"), typed(rows.dicts("running")))
                stmt = sqlite_insert(table)
                conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={
                    c: stmt.excluded[c] for c in ("start_time", "end_time", "cached", "call_hash")}), data)
            elif data:
                conn.execute(table.insert().prefix_with("OR IGNORE"), data)
        execution = ROW_TABLES[[t.name for t in ROW_TABLES].index("execution")]
        for execution_id, stamp in rows.heartbeats.items():
            conn.execute(execution.update().where(execution.c.id == execution_id).values(updated_time=when(stamp)))
    reference = dump(tmp_path / "reference.sqlite")
    for name in ("value", "subvalue", "task", "call_node", "call_edge", "argument", "argument_result",
                 "call_subtree_task", "job", "execution", "tag", "tag_edit"):  # fmt: skip
        assert fast[name] == reference[name], name
    assert len(fast["job"]) == 31 and len(fast["tag"]) >= 2
    # A first build (listings only; running jobs and heartbeats from the index) holds the same rows.
    replica.path.unlink()
    replica.close()
    rebuilt = Replica(backend.prov)
    rebuilt.sync()
    assert rebuilt.last_sync["first"]
    again = dump(rebuilt.path)
    for name in fast:
        assert sorted(again[name]) == sorted(fast[name]), name
    rebuilt.close()


def test_first_build_then_incremental(backend):
    scheduler(backend).run(fan(20))
    backend.flush()
    replica = backend.replica
    first = replica.sync()
    assert replica.last_sync["first"] and first > 40
    assert replica.sync() == 0 and not replica.stale()  # nothing new: nothing applied
    scheduler(backend).run(fan(25))  # 5 new add() calls, the rest cached
    backend.flush()
    assert replica.stale()
    more = replica.sync()
    assert 0 < more < first and not replica.last_sync["first"]
    counts = dump(replica.path, ["job", "execution"])
    assert len(counts["execution"]) == 2 and len(counts["job"]) == 21 + 26
    # The session redun reads sees it all.
    from redun.backends.db import Execution, Job

    session = backend.session
    assert session.query(Execution).count() == 2 and session.query(Job).count() == 47


def test_a_first_build_skips_a_damaged_job_and_keeps_the_rest(backend, tmp_path, caplog):
    from damage import damage_object
    from objstore.model import schema

    scheduler(backend).run(fan(20))
    backend.flush()
    jobs = backend.prov.jobs
    [execution] = jobs.list_executions()
    children = backend.prov.repo.index.get_all("job_children", jobs.get_execution(execution)["job_id"])
    victim = schema.timed_id(children[3])  # a child job, in the middle of its pack
    damage_object(str(tmp_path / "repo"), victim, "corrupt")
    replica = backend.replica
    with caplog.at_level("WARNING", logger="objstore"):
        replica.sync()
    assert replica.last_sync["first"]
    ids = {row[0] for row in sqlite3.connect(replica.path).execute("SELECT id FROM job")}
    assert victim not in ids and len(ids) == 20  # 21 jobs, one unreadable
    assert any("replica skips" in r.getMessage() and victim in r.getMessage() for r in caplog.records), caplog.text


def test_a_running_job_gets_its_end_later_and_heartbeats_arrive(backend):
    prov = backend.prov
    scheduler(backend).run(fan(2))
    execution = prov.jobs.list_executions()[0]
    root = prov.jobs.get_execution(execution)["job_id"]
    task_hash = prov.jobs.get_job_info(root)["task_hash"]
    job = "abcdef01-0000-4000-8000-000000000001"
    prov.jobs.job_started(job, task_hash=task_hash, execution_id=execution, parent_id=root)
    prov.jobs.record_updated_time(execution)
    backend.flush()
    replica = backend.replica
    replica.sync()
    db = sqlite3.connect(replica.path)
    assert db.execute("SELECT end_time, call_hash FROM job WHERE id = ?", (job,)).fetchone() == (None, None)
    rowid = db.execute("SELECT rowid FROM job WHERE id = ?", (job,)).fetchone()[0]
    assert db.execute("SELECT updated_time FROM execution WHERE id = ?", (execution,)).fetchone()[0]
    prov.jobs.job_ended(job, task_hash=task_hash, execution_id=execution, parent_id=root, cached=True,
                        call_hash=None, args_hash=None)  # fmt: skip
    backend.flush()
    replica.sync()
    end, cached, again = db.execute("SELECT end_time, cached, rowid FROM job WHERE id = ?", (job,)).fetchone()
    assert end is not None and cached == 1 and again == rowid  # updated in place: row order kept


def test_tag_supersession_and_handle_validity(backend):
    prov = backend.prov
    scheduler(backend).run(fan(1))
    execution = prov.jobs.list_executions()[0]
    backend.record_tags("Execution", execution, [("stage", 1)])
    backend.update_tags("Execution", execution, ["stage"], [("stage", 2)])
    backend.flush()
    replica = backend.replica
    replica.sync()
    db = sqlite3.connect(replica.path)
    rows = db.execute("SELECT value, is_current FROM tag WHERE key = 'stage' ORDER BY rowid").fetchall()
    assert rows == [("1", 0), ("2", 1)]

    counter = Counter("c")
    s = scheduler(backend)
    c1 = s.run(bump(counter, 1))
    s.run(bump(counter, 2))  # forks: the first result is still valid
    backend.flush()
    replica.sync(handles=True)
    assert db.execute("SELECT count(*) FROM handle").fetchone()[0] >= 2
    backend.rollback_handle(c1)
    replica.sync(handles=True)
    valid = dict(db.execute("SELECT hash, is_valid FROM handle").fetchall())
    assert valid[c1.__handle__.hash] == 0


def test_another_repository_rebuilds_the_replica(tmp_path):
    path = tmp_path / "replica.sqlite"
    for name, n in (("one", 3), ("two", 5)):
        b = ObjstoreBackend(str(tmp_path / name), index_dir=str(tmp_path / f"index-{name}"), create=True)
        scheduler(b).run(fan(n))
        b.flush()
        r = Replica(b.prov, path=path)
        r.sync()
        r.close()
        assert len(dump(path, ["job"])["job"]) == n + 1  # only this repository's jobs
        b.close()


@task()
def big(n: int) -> bytes:
    return b"x" * n


def test_a_large_value_is_read_from_the_repository_when_redun_asks(backend):
    from redun.backends.db import Value

    from objstore.redun.rows import INLINE_MAX

    scheduler(backend).run(big(INLINE_MAX + 10))
    session = backend.session
    row = [v for v in session.query(Value).all() if v.type == "builtins.bytes"][0]
    assert row.value == b""  # not copied into the replica
    assert session.backend._get_value_size(row) > INLINE_MAX
    assert session.backend._get_value(row)[0] == b"x" * (INLINE_MAX + 10)
