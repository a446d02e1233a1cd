"""redun's compile example (examples/compile), recorded by `redun run workflow.py make` twice
(lib.c edited in between) into redun's sqlite backend and into objstore: objstore's log (and
redun's log through the replica) print what redun prints for the sqlite copy, with the same job
counts, the same producers and consumers of every file, and the same task sources."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

import recorded
from recorded import normalized

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "compile"
FORMS = [("log",), ("log", "--job"), ("log", "--all", "--count"), ("log", "--file"), ("log", "-"), ("log", "~2"),
         ("log", "prog.c"), ("log", "lib.o"), ("log", "prog"), ("log", "--task-name", "compile", "--job"),
         ("log", "--job", "--job-status", "CACHED")]  # fmt: skip


def record(base: Path, name: str, *, objstore: bool) -> recorded.Dir:
    work = base / name
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns(".redun", ".objstore", "*.o", "prog", "prog2"))
    (base / f"home-{name}").mkdir()
    d = recorded.Dir(work, recorded.clean_env(base / f"home-{name}"))
    shutil.rmtree(work / ".redun", ignore_errors=True)
    if objstore:
        (work / ".redun").mkdir()
        (work / ".redun" / "redun.ini").write_text("[scheduler]\nignore_warnings = namespace\n")
        d.objstore("init", "--redun")
    else:
        d.redun("init")
        (work / ".redun" / "redun.ini").write_text("[scheduler]\nignore_warnings = namespace\n")
    d.redun("run", "workflow.py", "make")
    lib = work / "lib.c"
    lib.write_text(lib.read_text().replace("Hello, World!", "Hello, oracle!"))
    os.utime(lib, (1_700_000_000, 1_700_000_000))  # same content, same mtime: same File hashes
    d.redun("run", "workflow.py", "make")
    return d


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("compile")
    sq, os_ = record(base, "sqlite", objstore=False), record(base, "objstore", objstore=True)
    out = {("sqlite", f): o.replace(str(sq.path), "<dir>") for f, o in sq.batch("redun", FORMS).items()}
    out.update({("replica", f): o.replace(str(os_.path), "<dir>") for f, o in os_.batch("redun", FORMS).items()})
    out.update({("objstore", f): o.replace(str(os_.path), "<dir>") for f, o in os_.batch("objstore", FORMS).items()})
    return sq, os_, out


# The two make_prog branches run in parallel threads, so which starts first is up to the
# scheduler; and redun records a list argument's upstream calls from a Python set, so the order of
# a "derives from" block changes from run to run even on sqlite. These forms are compared as
# multisets of lines (hashes as "<h>": either twin can be the one shown); the rest in order.
ORDERED = {("log",), ("log", "--all", "--count"), ("log", "--file")}


@pytest.mark.parametrize("form", FORMS, ids=" ".join)
def test_compile_example_log_forms_match_sqlite(pair, form):
    _, _, out = pair

    def shown(who):
        return normalized(out[who, form])

    want, replica, mine = shown("sqlite"), shown("replica"), shown("objstore")
    assert want
    if form in ORDERED:
        assert replica == want and mine == want
    else:
        def lines(who):  # dataflow names follow that order too: compile_result(_2), c_file(_2),
            # and so does the padding that aligns them ("compile_result   =" beside a "_2" name)
            return Counter(re.sub(r"(\S)\s+= ", r"\1 = ", re.sub(r"\b([a-z]+(?:_[a-z]+)*)_\d+\b", r"\1", line))
                           for line in normalized(out[who, form], number=False))  # fmt: skip

        want, replica, mine = lines("sqlite"), lines("replica"), lines("objstore")
        assert replica == want
        assert not (want - mine), want - mine  # objstore prints all of redun's lines (and adds some)


def test_compile_example_jobs_files_and_tasks_match_sqlite(pair):
    sq, os_, _ = pair
    db = sqlite3.connect(sq.path / ".redun" / "redun.db")
    jobs = Counter(
        (task, "CACHED" if cached else "DONE")
        for task, cached in db.execute("SELECT t.namespace || '.' || t.name, j.cached FROM job j JOIN task t ON t.hash = j.task_hash"))
    mine = Counter((j["task_name"], j["status"]) for j in json.loads(os_.objstore("log", "--job", "--json").stdout))
    assert mine == jobs and sum(jobs.values()) == 18
    for task_hash, source in db.execute("SELECT hash, source FROM task"):
        assert json.loads(os_.objstore("log", task_hash, "--json").stdout)["source"] == source
    for (path,) in db.execute("SELECT DISTINCT path FROM file"):
        direct = Counter(name for (name,) in db.execute(
            "SELECT c.task_name FROM call_node c JOIN file f ON f.value_hash = c.value_hash WHERE f.path = ? UNION ALL "
            "SELECT c.task_name FROM call_node c JOIN subvalue s ON s.parent_value_hash = c.value_hash "
            "JOIN file f ON f.value_hash = s.value_hash WHERE f.path = ?", (path, path)))
        taken = Counter(name for (name,) in db.execute(
            "SELECT c.task_name FROM argument a JOIN call_node c ON c.call_hash = a.call_hash JOIN file f "
            "ON f.value_hash = a.value_hash WHERE f.path = ? UNION ALL SELECT c.task_name FROM argument a JOIN "
            "call_node c ON c.call_hash = a.call_hash JOIN subvalue s ON s.parent_value_hash = a.value_hash JOIN "
            "file f ON f.value_hash = s.value_hash WHERE f.path = ?", (path, path)))
        detail = json.loads(os_.objstore("log", path, "--json").stdout)
        assert Counter(u["call"]["task_name"] for u in detail["produced_by"]) == direct, path
        assert Counter(u["call"]["task_name"] for u in detail["consumed_by"]) == taken, path
