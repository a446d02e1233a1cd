"""redun workflows recorded into objstore behave as redun's docs say.

* The compile example (examples/compile, the demo): after editing lib.c only what depends on it
  runs again, on a local repository and on S3 (moto). The second run uses a new backend with an
  empty index, so the cache hits come from the repository itself, as for a second machine.
* A workflow with Files, a Handle (fork; rollback when a consumer re-executes), tags from
  apply_tags, a failing task and a task returning a lazy expression, run on objstore and on
  redun's own sqlite backend: the same documented behaviour on both.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from redun import File, Handle, Scheduler, apply_tags, task
from redun.backends.db import RedunBackendDb
from redun.config import Config

import servers
from objstore.redun import ObjstoreBackend

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "compile"
CONFIG = Config({"scheduler": {"ignore_warnings": "namespace"}})


def run(scheduler: Scheduler, expr):
    exec_id = str(uuid.uuid4())
    return exec_id, scheduler.run(expr, execution_id=exec_id)


def job_table(backend, exec_id: str) -> list[dict]:
    """One row per job of an execution, from the exported records only (abstract API)."""
    id_field = {"Value": "value_hash", "CallNode": "call_hash", "Job": "id", "Execution": "id",
                "Tag": "tag_hash"}
    recs = {}
    for rec in backend.get_records(list(backend.iter_record_ids([exec_id]))):
        recs[rec[id_field[rec["_type"]]]] = rec
    rows = []
    for rec in recs.values():
        if rec["_type"] != "Job":
            continue
        call = recs[rec["call_hash"]]
        args = {}
        for name, arg in call["args"].items():
            value = recs[arg["value_hash"]]
            subtype = value["subtype"] or {}
            args[name] = subtype.get("path", arg["value_hash"])
        rows.append({"task": call["task_name"].rsplit(".", 1)[-1], "cached": rec["cached"],
                     "status": rec["status"], "args": args})
    return rows


def load_workflow(directory: Path):
    spec = importlib.util.spec_from_file_location(f"compile_wf_{uuid.uuid4().hex}",
                                                  directory / "workflow.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # redun reads redun_namespace through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.remote)])
def compile_repo(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "repo"), None
    server = request.getfixturevalue("s3_server")
    target = servers.make_target("s3", tmp_path=tmp_path, server=server)
    return target.url, target.storage_options


def test_compile_example(compile_repo, tmp_path, monkeypatch):
    url, options = compile_repo
    work = tmp_path / "work"
    shutil.copytree(EXAMPLE, work)
    monkeypatch.chdir(work)
    wf = load_workflow(work)

    backend = ObjstoreBackend(url, storage_options=options, index_dir=str(tmp_path / "index1"), create=True)
    exec1, progs = run(Scheduler(config=CONFIG, backend=backend), wf.make())
    backend.close()
    assert [p.path for p in progs] == ["prog", "prog2"]
    assert subprocess.run(["./prog"], capture_output=True, text=True).stdout == "prog1: Hello, World!\n"
    objects = {name: os.stat(name).st_mtime_ns for name in ("prog.o", "prog2.o", "lib.o")}

    (work / "lib.c").write_text((work / "lib.c").read_text().replace("Hello, World!", "Hello, objstore!"))

    # A second process with an empty index: every cache answer must come from the repository.
    # (and a fresh import, as `redun run` does: the default File arguments hash at import time).
    wf = load_workflow(work)
    backend = ObjstoreBackend(url, storage_options=options, index_dir=str(tmp_path / "index2"))
    exec2, _ = run(Scheduler(config=CONFIG, backend=backend), wf.make())
    assert subprocess.run(["./prog"], capture_output=True, text=True).stdout == "prog1: Hello, objstore!\n"
    assert subprocess.run(["./prog2"], capture_output=True, text=True).stdout == "prog2: Hello, objstore!\n"
    # The unchanged compiles did not run (their outputs were not rewritten); lib.c's did.
    assert os.stat("prog.o").st_mtime_ns == objects["prog.o"]
    assert os.stat("prog2.o").st_mtime_ns == objects["prog2.o"]
    assert os.stat("lib.o").st_mtime_ns != objects["lib.o"]

    jobs = job_table(backend, exec2)
    compiles = {}
    for j in jobs:
        if j["task"] == "compile":
            # Positional arguments are exported under their position ("0").
            compiles.setdefault(j["args"]["0"], []).append(j["cached"])
    assert compiles["prog.c"] == [True] and compiles["prog2.c"] == [True]
    # compile(lib.c) is asked for twice; one job runs, its twin is collapsed onto it (CSE).
    assert sorted(compiles["lib.c"]) == [False, True]
    for name, count in (("link", 2), ("make_prog", 2), ("make", 1)):
        ran = [j for j in jobs if j["task"] == name]
        assert len(ran) == count and not any(j["cached"] for j in ran), (name, ran)
    assert {j["status"] for j in jobs} <= {"DONE", "CACHED"}

    # The first execution is still there, with its own (all-run) jobs.
    first = job_table(backend, exec1)
    assert len(first) == 9 and {j["args"]["0"] for j in first if j["task"] == "compile"} == {
        "prog.c", "prog2.c", "lib.c"}
    backend.close()


# -- a workflow touching every kind of record ---------------------------------------------------

redun_namespace = "objstore_workflows"


class RowsDb(Handle):
    """An external system: a text file of rows. Its state is tracked by redun, not read."""

    def __init__(self, name: str, path: str):
        self.path = path


def _log(log_path: str, line: str) -> None:
    with open(log_path, "a") as f:
        f.write(line + "\n")


@task()
def write_text(path: str, text: str, log_path: str) -> File:
    _log(log_path, f"write_text {text}")
    out = File(path)
    out.write(text)
    return out


@task()
def add_row(db: RowsDb, row: str, log_path: str) -> RowsDb:
    _log(log_path, f"add_row {row}")
    with open(db.path, "a") as f:
        f.write(row + "\n")
    return db


@task()
def double_tagged(x: int, log_path: str) -> int:
    _log(log_path, f"double_tagged {x}")
    return apply_tags(x * 2, tags=[("stage", "demo")], job_tags=[("kind", "double")])


@task()
def inc(x: int, log_path: str) -> int:
    _log(log_path, f"inc {x}")
    return x + 1


@task()
def lazy_inc(x: int, log_path: str):
    # Returns an unevaluated expression: the eval cache stores the expression itself.
    _log(log_path, f"lazy_inc {x}")
    return inc(x * 10, log_path)


@task()
def boom(x: int, log_path: str) -> int:
    _log(log_path, f"boom {x}")
    raise ValueError(f"boom {x}")


@task()
def pipeline(db: RowsDb, first: str, path: str, log_path: str) -> list:
    db2 = add_row(db, first, log_path)
    db3 = add_row(db2, "second", log_path)
    return [db3, write_text(path, first, log_path), double_tagged(21, log_path),
            lazy_inc(4, log_path)]


@pytest.fixture(params=["objstore", "sqlite"])
def make_backend(request, tmp_path):
    """A factory of backends on ONE repository/database (a new instance per "process")."""
    made = []

    def make():
        if request.param == "objstore":
            b = ObjstoreBackend(str(tmp_path / "repo"), index_dir=str(tmp_path / f"index{len(made)}"), create=True)
        else:
            b = RedunBackendDb(db_uri=f"sqlite:///{tmp_path}/redun.db")
            b.load(migrate=True)
        made.append(b)
        return b

    yield make
    for b in made:
        if hasattr(b, "close"):
            b.close()


def test_workflow_files_handles_tags_errors_lazy(make_backend, tmp_path):
    log_path = str(tmp_path / "log.txt")
    rows = str(tmp_path / "rows.txt")
    out = str(tmp_path / "out.txt")

    def ran() -> list[str]:
        lines = Path(log_path).read_text().splitlines() if os.path.exists(log_path) else []
        os.remove(log_path) if lines else None
        return sorted(lines)

    def go(first: str):
        scheduler = Scheduler(config=CONFIG, backend=make_backend())
        return scheduler, run(scheduler, pipeline(RowsDb("rows", rows), first, out, log_path))

    s1, (exec1, result) = go("a")
    db3, out_file, doubled, lazy = result
    assert isinstance(db3, RowsDb) and Path(rows).read_text() == "a\nsecond\n"
    assert isinstance(out_file, File) and out_file.read() == "a"
    assert doubled == 42 and lazy == 41
    assert ran() == ["add_row a", "add_row second", "double_tagged 21", "inc 40", "lazy_inc 4",
                     "write_text a"]
    # apply_tags: the value and the job carry the tags.
    tags = s1.backend.get_tags([s1.type_registry.get_hash(42)])
    assert tags[s1.type_registry.get_hash(42)] == {"stage": ["demo"]}

    # Same inputs, new backend instance: everything is cached, including the lazy expression's
    # result (its cached value is the expression inc(40), which is itself a cache hit).
    s2, (exec2, result2) = go("a")
    assert result2[1].hash == out_file.hash and result2[2:] == [42, 41] and ran() == []

    # Handle rollback: a different first row makes add_row(db, "b") run, and before it runs
    # the scheduler rolls back the handle's descendants recorded by run 1...
    go("b")
    assert ran() == ["add_row b", "add_row second", "write_text b"]
    # ...so going back to "a" cannot reuse run 1's handle states: both add_row calls re-execute,
    # although their eval cache entries still exist. Files and plain values are still cached.
    go("a")
    assert ran() == ["add_row a", "add_row second", "write_text a"]

    # A failing task: the error propagates, the job is recorded FAILED, and errors are not
    # cached: running again executes it again.
    s5 = Scheduler(config=CONFIG, backend=make_backend())
    exec5 = str(uuid.uuid4())
    with pytest.raises(ValueError, match="boom 3"):
        s5.run(boom(3, log_path), execution_id=exec5)
    assert ran() == ["boom 3"]
    assert [j["status"] for j in job_table(s5.backend, exec5)] == ["FAILED"]
    with pytest.raises(ValueError, match="boom 3"):
        Scheduler(config=CONFIG, backend=make_backend()).run(boom(3, log_path))
    assert ran() == ["boom 3"]

    # The File result is re-validated against the filesystem: change it and write_text re-runs.
    Path(out).write_text("tampered")
    go("a")
    assert ran() == ["write_text a"]
    assert Path(out).read_text() == "a"
