"""Every form of `log`, compared with redun on its own sqlite backend.

One workflow (tests/workflows/query_wf.py: values, Files produced, consumed and inside lists, a
failure, a cached rerun, tags) is recorded by real `redun run`s into redun's sqlite backend and,
with the same commands, into objstore on a local directory and on S3 (moto). Then, for the
objstore copy:

* redun's own CLI (`redun log` in every form, `tag list`, `export`, `repl`, `console`) reads it
  through the SQL replica and prints what it prints for the sqlite copy;
* objstore's CLI prints what redun prints for the sqlite copy (objstore adds lines only after
  redun's), with the same job counts, the same producers and consumers of each file and the same
  task sources as redun's own database holds.

Execution and job ids and times differ between the copies; so do File hashes (they cover the
file's mtime). ``recorded.normalized`` replaces ids and times and numbers hashes in order of
appearance, so the same hash must still appear in the same places.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

import recorded
import servers
from recorded import normalized


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    return recorded.record_sqlite(tmp_path_factory.mktemp("oracle"))


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.remote)])
def copy(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"copy-{request.param}")
    if request.param == "local":
        return recorded.record_objstore(base)
    server = request.getfixturevalue("s3_server")
    target = servers.make_target("s3", tmp_path=base, server=server)
    return recorded.record_objstore(base, url=target.url, storage_options=json.dumps(target.storage_options))


@pytest.fixture(scope="module")
def out(oracle, copy):
    """What each CLI prints for every form: ("sqlite" | "replica" | "objstore", form) -> stdout."""
    forms = ORDERED + UNORDERED + [("log", failed_job(oracle))]
    forms_copy = ORDERED + UNORDERED + [("log", failed_job(copy))]
    shown = {}
    # The copies live in two directories: tracebacks name the workflow file's path.
    shown.update({("sqlite", f): o.replace(str(oracle.path), "<dir>") for f, o in oracle.batch("redun", forms).items()})
    for who, program in (("replica", "redun"), ("objstore", "objstore")):
        found = copy.batch(program, forms_copy)
        shown.update({(who, f): found[g].replace(str(copy.path), "<dir>") for f, g in zip(forms, forms_copy)})
    shown["failed"] = forms[-1]
    return shown


def sqlite_db(oracle) -> sqlite3.Connection:
    return sqlite3.connect(oracle.path / ".redun" / "redun.db")


def failed_job(d) -> str:
    line = d.redun("log", "--job", "--job-status", "FAILED").stdout.splitlines()[0]
    assert "qwf.boom(1)" in line, line
    return line.split()[1]


# Forms whose output order is defined (newest first, or a single record).
ORDERED = [
    ("log",),
    ("log", "--exec"),
    ("log", "--job"),
    ("log", "--all", "--count"),
    ("log", "--count"),
    ("log", "out.txt"),
    ("log", "part0.txt"),
    ("log", "-"),
    ("log", "~2"),
    ("log", "~3"),
    ("log", "--job", "--job-status", "FAILED"),
    ("log", "--exec", "--exec-status", "FAILED"),
    ("log", "--task-name", "qwf.write", "--job"),
    ("log", "--exec-tag", "env=dev"),
    ("log", "--exec", "--tag", "project=other"),
    ("log", "--file"),
    ("tag", "list"),
    ("tag", "list", "--values"),
    ("tag", "list", "env=dev"),
]
# Forms redun prints in database row order (which a replica filled in journal order need not share).
UNORDERED = [("log", "--task"), ("log", "--call-node"), ("log", "--value"), ("log", "--file-path", "part*")]


@pytest.mark.parametrize("form", ORDERED, ids=" ".join)
def test_redun_log_through_the_replica_prints_what_it_prints_on_sqlite(out, form):
    want = normalized(out["sqlite", form])
    got = normalized(out["replica", form])
    assert got == want
    assert want, "the form printed nothing: the comparison would prove nothing"


@pytest.mark.parametrize("form", UNORDERED, ids=" ".join)
def test_redun_listings_through_the_replica_hold_the_same_records(out, form):
    def lines(text):
        return sorted(normalized(text, number=False))

    assert lines(out["replica", form]) == lines(out["sqlite", form])
    assert lines(out["objstore", form]) == lines(out["sqlite", form])
    assert out["sqlite", form].strip()
    if form[-1] == "--task":  # tasks do not depend on files: their hashes must be equal
        assert sorted(out["replica", form].split()) == sorted(out["sqlite", form].split())
        assert sorted(out["objstore", form].split()) == sorted(out["sqlite", form].split())


def test_redun_log_of_a_failed_job_shows_its_error_and_traceback(out):
    want = normalized(out["sqlite", out["failed"]])
    got = normalized(out["replica", out["failed"]])
    assert got == want
    assert "    Raised: ValueError('bad x=1')" in want
    assert want[-2:] == ['      raise ValueError(f"bad x={x}")', "  ValueError: bad x=1"]


def objstore_matches_redun(out, form: tuple[str, ...]) -> list[str]:
    """objstore's output for ``form`` begins with exactly what redun prints for the sqlite copy
    (objstore adds lines after redun's only); the lines it adds."""
    want = normalized(out["sqlite", form])
    got = normalized(out["objstore", form])
    assert got[: len(want)] == want, "\n".join(got)
    assert want
    return got[len(want) :]


@pytest.mark.parametrize("form", [f for f in ORDERED if f[0] == "log" and f[1:2] not in (("out.txt",), ("part0.txt",))],
                         ids=" ".join)  # fmt: skip
def test_objstore_log_prints_what_redun_prints(out, form):
    assert objstore_matches_redun(out, form) == []


@pytest.mark.parametrize("form", [("tag", "list"), ("tag", "list", "--values"), ("tag", "list", "env=dev")], ids=" ".join)
def test_objstore_tag_list_prints_what_redun_prints(out, form):
    assert objstore_matches_redun(out, form) == []


def test_objstore_log_of_a_failed_job(out):
    want = normalized(out["sqlite", out["failed"]])
    got = normalized(out["objstore", out["failed"]])
    assert got == want


@pytest.mark.parametrize("path", ["out.txt", "part0.txt"])
def test_objstore_log_of_a_path_then_every_producer_and_consumer(out, path):
    extra = objstore_matches_redun(out, ("log", path))
    assert extra and extra[0] == "" and extra[1] == "Produced by:"
    text = "\n".join(extra)
    if path == "out.txt":
        assert "Consumed by:" in text and "qwf.read(File(path=out.txt" in text
    else:
        assert "qwf.several('part', 2)" in text and "(inside Value" in text  # the list holding it


def test_job_counts_and_statuses_match_redun_database(oracle, copy):
    rows = sqlite_db(oracle).execute(
        "SELECT t.namespace || '.' || t.name, j.cached, v.type FROM job j JOIN task t ON t.hash = j.task_hash "
        "LEFT JOIN call_node c ON c.call_hash = j.call_hash LEFT JOIN value v ON v.value_hash = c.value_hash").fetchall()
    want = Counter((task, "FAILED" if vtype == "redun.ErrorValue" else "CACHED" if cached else "DONE")
                   for task, cached, vtype in rows)  # fmt: skip
    jobs = json.loads(copy.objstore("log", "--job", "--json").stdout)
    assert {r["_type"] for r in jobs} == {"JobNode"}
    got = Counter((r["task_name"], r["status"]) for r in jobs)
    assert got == want and sum(want.values()) == 16


def test_task_sources_match_redun_database(oracle, copy):
    tasks = dict(sqlite_db(oracle).execute("SELECT hash, source FROM task").fetchall())
    assert len(tasks) == 7
    for task_hash, source in tasks.items():
        shown = json.loads(copy.objstore("log", task_hash[:10], "--json").stdout)
        assert shown["_type"] == "TaskInfo" and shown["source"] == source
        text = copy.objstore("log", task_hash).stdout.splitlines()
        assert text[0].startswith(f"Task {task_hash} qwf.")
        assert "\n".join(line[2:] for line in text[3:]).strip() == source.strip()


def test_file_producers_and_consumers_match_redun_database(oracle, copy):
    db = sqlite_db(oracle)
    paths = [p for (p,) in db.execute("SELECT DISTINCT path FROM file ORDER BY path")]
    assert paths == ["out.txt", "part0.txt", "part1.txt"]
    for path in paths:
        def calls(sql):
            return Counter(name for (name,) in db.execute(sql, (path, path)))

        # redun's find_file joins: the File as a result (or inside one) / as an argument (or inside one).
        produced = calls(
            "SELECT DISTINCT c.call_hash || ' ' || c.task_name FROM call_node c JOIN file f ON f.path = ? "
            "WHERE c.value_hash = f.value_hash UNION SELECT DISTINCT c.call_hash || ' ' || c.task_name FROM call_node c "
            "JOIN subvalue s ON s.parent_value_hash = c.value_hash JOIN file f ON f.value_hash = s.value_hash AND f.path = ?")
        consumed = calls(
            "SELECT DISTINCT c.call_hash || ' ' || c.task_name FROM argument a JOIN call_node c ON c.call_hash = a.call_hash "
            "JOIN file f ON f.path = ? WHERE a.value_hash = f.value_hash UNION SELECT DISTINCT c.call_hash || ' ' || "
            "c.task_name FROM argument a JOIN call_node c ON c.call_hash = a.call_hash JOIN subvalue s ON "
            "s.parent_value_hash = a.value_hash JOIN file f ON f.value_hash = s.value_hash AND f.path = ?")
        detail = json.loads(copy.objstore("log", path, "--json").stdout)
        assert detail["_type"] == "FileDetail" and detail["path"] == path
        assert Counter(u["call"]["task_name"] for u in detail["produced_by"]) == Counter(
            n.split(" ", 1)[1] for n in produced)
        assert Counter(u["call"]["task_name"] for u in detail["consumed_by"]) == Counter(
            n.split(" ", 1)[1] for n in consumed)
        assert all(u["job_id"] for u in detail["produced_by"] + detail["consumed_by"])


def test_redun_export_through_the_replica(oracle, copy):
    def records(d):
        return [json.loads(line) for line in d.redun("export").stdout.splitlines() if line.strip()]

    want, got = records(oracle), records(copy)
    assert Counter(r["_type"] for r in got) == Counter(r["_type"] for r in want)
    # Tasks hash alike on every backend.
    assert {r["value_hash"] for r in got if r["_type"] == "Value" and (r.get("subtype") or {}).get("_type") == "Task"} == {
        r["value_hash"] for r in want if r["_type"] == "Value" and (r.get("subtype") or {}).get("_type") == "Task"}


def test_redun_repl_through_the_replica(copy):
    script = "p len(execs)\np last_exec.job.task.fullname\np query(last_exec.id[:8]).id == last_exec.id\nc\n"
    out = copy.redun("repl", stdin=script).stdout
    assert "3\n" in out and "'qwf.main'" in out and "True" in out


def test_redun_console_through_the_replica(copy, tmp_path):
    # The Textual console, driven headless (as a user would see its first screen).
    code = (
        "import asyncio, re, html\n"
        "from redun.cli import RedunClient\n"
        "from redun.console.app import RedunApp\n"
        "async def main():\n"
        "    client = RedunClient()\n"
        "    args, extra = client.get_command_parser().parse_known_args(['console'])\n"
        "    app = RedunApp(client.get_scheduler(args), args, extra, ['redun', 'console'])\n"
        "    async with app.run_test(size=(160, 40)) as pilot:\n"
        "        await pilot.pause(1.0)\n"
        "        svg = app.export_screenshot()\n"
        "        text = html.unescape(' '.join(re.findall(r'<text[^>]*>([^<]*)</text>', svg)))\n"
        "        print(type(app.screen).__name__)\n"
        "        print(text)\n"
        "asyncio.run(main())\n"
    )
    out = copy.run([recorded.sys.executable, "-c", code]).stdout.replace("\xa0", " ")
    assert "ExecutionsScreen" in out and "query_wf.py main" in out and "FAILED" in out, out[-2000:]
