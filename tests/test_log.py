"""`objstore log` end to end: a real redun workflow on ObjstoreBackend, read back by the CLI in
subprocesses (each with its own index, so everything it shows came through the journal)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redun import Scheduler, task
from redun.config import Config

from objstore import model
from objstore.backend import Provenance
from objstore.query import (
    DONE,
    RUNNING,
    UNFINISHED,
    AmbiguousId,
    LogQuery,
    preview_value,
)
from objstore.redun import ObjstoreBackend
from objstore.repo import Repository

redun_namespace = "objstore_log_tests"
logging.getLogger("redun").setLevel(logging.WARNING)


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def main(x: int) -> int:
    return add(add(x, 1), add(x, 2))


class Boom(Exception):
    pass


@task()
def explode(x: int) -> int:
    raise Boom(f"boom {x}")


# Two executions and two jobs with ids chosen to share prefixes (ambiguity), written the way a
# worker writes them: a start note in the journal, flushed, never ended.
RUN_EXEC_A = "abcd1234-0000-4000-8000-00000000000a"
RUN_EXEC_B = "abcd1234-0000-4000-8000-00000000000b"
RUN_ROOT_A = "feed0000-0000-4000-8000-00000000000a"
RUN_ROOT_B = "feed0000-0000-4000-8000-00000000000b"
ORPHAN_JOB = "dead0000-0000-4000-8000-000000000001"


def scheduler(backend) -> Scheduler:
    return Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend)


def run_log(repo_url: str, index_dir: Path, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBJSTORE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "objstore.cli", "--repo", repo_url, "--index-dir", str(index_dir), "log", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


class World:
    def __init__(self, base: Path):
        self.base = base
        self.url = str(base / "repo")
        self._n = 0

    def index(self) -> Path:
        self._n += 1
        return self.base / f"cli-index-{self._n}"

    def log(self, *args: str, check: int | None = 0, index_dir: Path | None = None):
        return run_log(self.url, index_dir or self.index(), *args, check=check)

    def log_json(self, *args: str):
        return json.loads(self.log(*args, "--json").stdout)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("log"))
    backend = ObjstoreBackend(w.url, index_dir=str(w.base / "writer-index"), create=True)
    assert scheduler(backend).run(main(5)) == 13
    assert scheduler(backend).run(main(5)) == 13  # every job from the cache
    with pytest.raises(Boom):
        scheduler(backend).run(explode(3))
    prov = backend.prov
    w.first, w.second, w.failed = reversed(prov.jobs.list_executions()[:3])
    w.first_root = prov.jobs.get_execution(w.first)["job_id"]
    w.add_task_hash = add.hash

    # A job of the (finished) first execution whose worker died: started, flushed, never ended.
    prov.jobs.job_started(ORPHAN_JOB, task_hash=add.hash, execution_id=w.first, parent_id=w.first_root)
    # Two executions still running, their root jobs started just now.
    for exec_id, root in ((RUN_EXEC_A, RUN_ROOT_A), (RUN_EXEC_B, RUN_ROOT_B)):
        prov.jobs.record_execution(exec_id, ["redun", "run", "wf.py", "main", "--x", "7"])
        prov.jobs.job_started(root, task_hash=main.hash, execution_id=exec_id, parent_id=None)
        prov.jobs.record_updated_time(exec_id)
    prov.flush()
    backend.close()
    return w


def exec_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("Exec ")]


def tree_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.lstrip().startswith("Job ")]


def status_of(line: str) -> str:
    return line.split("[", 1)[1].split("]", 1)[0].strip()


# ------------------------------------------------------------------------------ executions


def test_lists_executions_newest_first_as_redun_does(world):
    out = world.log().stdout
    assert out.startswith("Recent executions:")
    lines = exec_lines(out)
    assert len(lines) == 5
    shown = [line.split()[1] for line in lines]
    # The two running executions started last; then the failure, the cached run, the first run.
    assert set(shown[:2]) == {RUN_EXEC_A[:8], RUN_EXEC_B[:8]}
    assert shown[2:] == [world.failed[:8], world.second[:8], world.first[:8]]
    failed, second, first = lines[2:]
    # redun's form: `Exec <id> [status] <start>:  <argv> (tags)`; job counts are in the tree.
    assert "[FAILED]" in failed and failed.endswith(":  objstore_log_tests.explode(3)")
    assert "[ DONE ]" in second and second.endswith(":  objstore_log_tests.main(5)")
    assert "[ DONE ]" in first and "Jobs:" not in first
    assert status_of(lines[0]) == "RUN" and lines[0].endswith("run wf.py main --x 7")  # argv without the program


def test_limit(world):
    assert len(exec_lines(world.log("--limit", "2").stdout)) == 2
    assert len(exec_lines(world.log("--limit", "0").stdout)) == 5  # 0 = all
    assert world.log("--limit", "-1", check=2).returncode == 2


def test_json_listing(world):
    data = world.log_json()
    assert [e["id"] for e in data][2:] == [world.failed, world.second, world.first]
    by_id = {e["id"]: e for e in data}
    assert by_id[world.second]["counts"] is None  # a listing does not read every job
    assert by_id[world.second]["_type"] == "ExecutionSummary"
    assert by_id[world.failed]["status"] == "FAILED"
    assert by_id[RUN_EXEC_A]["status"] == "RUNNING"
    assert by_id[RUN_EXEC_A]["args"] == ["run", "wf.py", "main", "--x", "7"]
    assert by_id[world.first]["duration"] >= 0


# -------------------------------------------------------------------------------- job tree


def test_job_tree_of_first_and_cached_runs(world):
    out = world.log(world.first[:6]).stdout
    assert out.splitlines()[0].startswith(f"Exec {world.first} [")
    jobs = tree_lines(out)
    # Root, then its children indented in call order; the dead job started last.
    assert jobs[0].startswith(f"Job {world.first_root[:8]} [") and status_of(jobs[0]) == "DONE"
    assert jobs[0].split(":  ", 1)[1] == "objstore_log_tests.main(5)"  # redun's line: no duration
    children = [line for line in jobs[1:]]
    assert all(line.startswith("  Job ") and not line.startswith("   ") for line in children)
    calls = [line.split(":  ", 1)[1] for line in children]
    assert calls == [
        "objstore_log_tests.add(5, 1)",
        "objstore_log_tests.add(5, 2)",
        "objstore_log_tests.add(6, 7)",
        "objstore_log_tests.add()",
    ]
    assert "[UNFINISHED]" in children[3] and children[3].startswith(f"  Job {ORPHAN_JOB[:8]}")
    assert "Jobs: 5 (DONE: 4, CACHED: 0, FAILED: 0, UNFINISHED: 1)" in out
    # redun's per-task status table: PENDING RUNNING FAILED CACHED DONE (UNFINISHED) TOTAL.
    table = {row.split()[1]: row.split()[2:] for row in out.splitlines() if row.startswith("| ") and row.split()[1:]}
    assert table["TASK"] == ["PENDING", "RUNNING", "FAILED", "CACHED", "DONE", "UNFINISHED", "TOTAL"]
    assert table["ALL"] == ["0", "0", "0", "0", "4", "1", "5"]
    assert table["objstore_log_tests.add"] == ["0", "0", "0", "0", "3", "1", "4"]
    assert table["objstore_log_tests.main"] == ["0", "0", "0", "0", "1", "0", "1"]

    cached = world.log(world.second).stdout
    statuses = [status_of(line) for line in tree_lines(cached)]
    assert statuses == ["CACHED"] * 4
    assert len(tree_lines(cached)) == 4


def test_job_tree_json(world):
    tree = world.log_json(world.first)
    root = tree["root"]
    assert tree["execution"]["id"] == world.first
    assert root["status"] == "DONE" and root["task_name"] == "objstore_log_tests.main"
    assert [c["args"] for c in root["children"]] == ["5, 1", "5, 2", "6, 7", ""]
    assert [c["status"] for c in root["children"]] == ["DONE", "DONE", "DONE", "UNFINISHED"]
    assert all(c["parent_id"] == root["id"] and c["children"] == [] for c in root["children"])
    assert all(c["duration"] is not None for c in root["children"][:3])


def test_running_execution_and_stale_after(world):
    out = world.log(RUN_EXEC_A).stdout
    assert status_of(tree_lines(out)[0]) == "RUN" and "Jobs: 1 (DONE: 0, CACHED: 0, FAILED: 0, RUNNING: 1)" in out
    assert "Last heartbeat:" in out
    # Silent for longer than --stale-after: the worker is taken for dead.
    stale = world.log(RUN_EXEC_A, "--stale-after", "0").stdout
    assert "[UNFINISHED]" in tree_lines(stale)[0] and "UNFINISHED: 1" in stale
    fresh = world.log(RUN_EXEC_A, "--stale-after", "3600").stdout
    assert status_of(tree_lines(fresh)[0]) == "RUN"


# ---------------------------------------------------------------------------------- prefixes


def test_prefixes_unique_ambiguous_and_unknown(world):
    assert world.log(world.second[:4]).stdout.startswith(f"Exec {world.second} ")
    assert world.log(RUN_EXEC_B.upper()).stdout.startswith(f"Exec {RUN_EXEC_B} ")  # case-insensitive
    proc = world.log("abcd1234", check=1)
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("objstore: error: ambiguous execution id prefix 'abcd1234'")
    assert RUN_EXEC_A in err and RUN_EXEC_B in err and "Traceback" not in proc.stderr
    assert "ambiguous job id prefix" in world.log("--job", "feed0000", check=1).stderr
    assert "no record with id prefix '0000000'" in world.log("0000000", check=1).stderr
    assert "not an object id or id prefix" in world.log("--job", "x/../y", check=1).stderr


# ----------------------------------------------------------------------------------- details


def test_job_details(world):
    tree = world.log_json(world.first)
    first_add = tree["root"]["children"][0]
    out = world.log("--job", first_add["id"][:10]).stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"Job {first_add['id']} [ DONE ] ")
    # redun's short traceback: the job's place in its execution's job tree.
    assert f"Traceback: Exec {world.first[:8]} > Job {world.first_root[:8]} main > Job {first_add['id'][:8]} add" in out
    assert "Args:   5, 1" in out and "Result: 6" in out

    dead = world.log("--job", ORPHAN_JOB[:6]).stdout
    assert "[UNFINISHED]" in dead and "CallNode UNKNOWN" in dead

    detail = world.log_json("--job", world.first_root)
    assert detail["job"]["status"] == "DONE" and len(detail["child_ids"]) == 4
    assert detail["call"]["result"]["preview"] == "13"
    assert [a["value"]["preview"] for a in detail["call"]["args"]] == ["5"]


def test_failed_job_shows_the_raised_error(world):
    tree = world.log_json(world.failed)
    assert tree["execution"]["status"] == "FAILED" and tree["root"]["status"] == "FAILED"
    out = world.log("--job", tree["root"]["id"]).stdout
    assert "[FAILED]" in out and "Raised: Boom('boom 3')" in out


def test_call_node_and_value_details(world):
    detail = world.log_json("--job", world.first_root)
    call_hash = detail["call"]["call_hash"]
    out = world.log("--call-node", call_hash[:8]).stdout
    assert out.startswith(f"CallNode {call_hash} objstore_log_tests.main")
    assert "Args:   5" in out and "Result: 13" in out
    call = world.log_json("--call-node", call_hash[:8])
    assert call["call_hash"] == call_hash and len(call["children"]) == 3

    value_hash = detail["call"]["result_hash"]
    out = world.log("--value", value_hash[:8]).stdout
    assert out.splitlines()[0] == f"Value {value_hash} builtins.int"
    assert out.splitlines()[2] == "13"
    assert world.log_json("--value", value_hash)["value"]["preview"] == "13"
    # A call node hash is not a value.
    assert "no value with id prefix" in world.log("--value", call_hash[:8], check=1).stderr


def test_any_record_id_as_the_argument(world):
    # Like `redun log ID`: no execution matches, so a job, call node or value id is shown.
    assert world.log(ORPHAN_JOB[:7]).stdout.startswith(f"Job {ORPHAN_JOB} [UNFINISHED]")
    detail = world.log_json("--job", world.first_root)
    call_hash, value_hash = detail["call"]["call_hash"], detail["call"]["result_hash"]
    assert world.log(call_hash).stdout.startswith(f"CallNode {call_hash} ")
    assert world.log_json(value_hash[:9])["value"]["preview"] == "13"


def test_refresh_shows_jobs_written_since_the_index_was_built(world, tmp_path):
    # A copy of the repository is a repository (cp -r): write to it, leaving the module's alone.
    url = str(tmp_path / "copy")
    shutil.copytree(world.url, url)
    index = tmp_path / "shared-index"
    before = exec_lines(run_log(url, index).stdout)
    # Another worker, with its own index, runs a workflow on the same repository.
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "other-writer"))
    try:
        assert scheduler(backend).run(main(11)) == 25
        new_exec = backend.prov.jobs.list_executions()[0]
    finally:
        backend.close()
    after = run_log(url, index).stdout
    assert len(exec_lines(after)) == len(before) + 1 and exec_lines(after)[0].split()[1] == new_exec[:8]
    assert "objstore_log_tests.main(11)" in after


# ------------------------------------------------------------------------- library and units


def test_query_library_with_a_clock(world, tmp_path):
    repo = Repository.open(world.url, index_dir=tmp_path / "lib-index")
    with repo:
        prov = Provenance(repo)
        prov.refresh()
        later = datetime.now(UTC) + timedelta(hours=2)
        stale = LogQuery(prov, stale_after=3600, now=later)
        assert stale.execution_tree(RUN_EXEC_A).root.status == UNFINISHED
        fresh = LogQuery(prov, stale_after=3600)
        assert fresh.execution_tree(RUN_EXEC_A).root.status == RUNNING
        assert fresh.execution_tree(world.second).execution.status == DONE
        with pytest.raises(AmbiguousId) as info:
            fresh.resolve_execution("abcd")
        assert sorted(info.value.matches) == [RUN_EXEC_A, RUN_EXEC_B]
        assert isinstance(info.value, ValueError)


class _Planted:
    """Unpickling this for real would run os.system; a preview must not."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_previews_never_run_code_named_by_a_value(tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps(_Planted(str(marker)))
    text = preview_value("x.Planted", "application/python-pickle", data)
    assert not marker.exists()
    assert "system(" in text and str(marker) in text
    assert preview_value("builtins.dict", "application/python-pickle", pickle.dumps({"a": [1, 2.5, "s"]})) == (
        "{'a': [1, 2.5, 's']}"
    )
    assert preview_value("builtins.bytes", "application/python-pickle", b"not a pickle") == (
        "<builtins.bytes, 12 bytes>"
    )
    assert preview_value("redun.File", "application/python-pickle", b"", model.value.file_subtype("/a/b")) == (
        "File(path=/a/b)"
    )
    assert preview_value("redun.File", "application/python-pickle", b"", model.value.file_subtype("/a/b"), "ab" * 20) == (
        "File(path=/a/b, hash=abababab)"
    )
    long = preview_value("builtins.str", "application/python-pickle", pickle.dumps("x" * 1000))
    assert len(long) == 200 and long.endswith("...")


def test_empty_repository(tmp_path):
    Repository.init(str(tmp_path / "empty"), index_dir=tmp_path / "init-index").close()
    url = str(tmp_path / "empty")
    assert run_log(url, tmp_path / "i1").stdout == "No executions.\n"
    assert json.loads(run_log(url, tmp_path / "i2", "--json").stdout) == []


# ------------------------------------------------------------------------ reads stay in bulk


@task()
def square(x: int) -> int:
    return x * x


@task()
def fan(n: int) -> list:
    return [square(i) for i in range(n)]


def test_an_execution_tree_reads_its_packed_jobs_in_bulk(tmp_path):
    # 40 jobs flushed together sit in one or two packs: walking the tree must cost about one
    # ranged read per pack, not one request per object (on a bucket: N GETs, or N 404s first).
    url = f"memory://log-bulk-{os.getpid()}-{id(tmp_path)}"
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "writer"))
    assert scheduler(backend).run(fan(40)) == [i * i for i in range(40)]
    backend.close()

    repo = Repository.open(url, index_dir=str(tmp_path / "reader"))
    packs = repo.store.pack_names()
    assert packs, "the run wrote no pack"
    # Count what reaches the filesystem: every GET (whole file or ranged) the walk causes.
    fs = repo.fs
    reads: list[tuple[str, bool]] = []
    cat_file = fs.cat_file

    def counting_cat_file(path, start=None, end=None, **kwargs):
        reads.append((path, start is not None))
        return cat_file(path, start=start, end=end, **kwargs)

    fs.cat_file = counting_cat_file
    try:
        query = LogQuery(Provenance(repo))
        (exec_id,) = query.execution_ids()
        tree = query.execution_tree(exec_id)
    finally:
        del fs.cat_file
        repo.close()
    assert tree.execution.counts.total == 41 and tree.execution.counts.done == 41
    assert len(list(tree.root.walk())) == 41
    objects = [(path, ranged) for path, ranged in reads if "/objects/" in path]
    # Every object of the run is packed: nothing may be looked for at a loose path.
    assert all("/objects/pack/" in path and ranged for path, ranged in objects), objects
    # Five bulk steps (the execution, the root job, the jobs, their call nodes, their tasks and
    # argument values), each at most one ranged read per pack; one read per object was 87.
    assert len(objects) <= 5 * len(packs), objects


@pytest.mark.parametrize("protocol", [3, 4, 5])  # redun pickles with protocol 3
def test_the_hand_decoded_small_pickles_read_as_pickle_reads_them(protocol):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from objstore.query.preview import _NOT_TINY, _tiny_pickle

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.integers(), st.text(), st.booleans(), st.none(), st.floats(allow_nan=False), st.binary()))
    def check(value):
        data = pickle.dumps(value, protocol=protocol)
        got = _tiny_pickle(data)
        if got is not _NOT_TINY:
            assert got == value and type(got) is type(value)
        assert preview_value("t", "application/python-pickle", data) == (
            repr(value) if len(repr(value)) <= 200 else repr(value)[:197] + "...")

    check()
