"""Many writers, one repository (issue 12, item 1), through real redun runs in separate processes.

Each writer is its own process with its OWN index directory (a separate "host"), on one
repository: a local directory, S3 (moto), GCS (emulator), Azure (Azurite). Every writer first
runs its own tasks, then flushes and waits at a barrier until every other writer has too, then
runs the other writers' tasks: those must be cache hits (the task bodies leave a marker file per
execution, so every task runs exactly once across all writers), while all of them still run.
While they run, `objstore log` (the CLI, in a subprocess) reads the repository and sees the
execution a first writer finished; afterwards a fresh host sees every job of every writer and
`objstore fsck` is clean.

Handles shared between writers: many processes advance and roll back one handle at once
(compare-and-swap with backoff and jitter); every update survives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import servers

from objstore.repo import Repository

HERE = Path(__file__).resolve().parent

WORKFLOW = '''
import os, pathlib, time
from redun import task

redun_namespace = "multiwriter_tests"
MARKS = pathlib.Path(os.environ["MW_DIR"])
BACKEND = None  # set by the worker: the barrier flushes and refreshes through it


@task()
def work(group: str, i: int) -> str:
    (MARKS / f"ran-{group}-{i}-{os.getpid()}").touch()
    return f"{group}:{i}"


def _wait(path, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path}")
        time.sleep(0.02)


@task(cache=False)
def barrier(me: str, others: list, done: list) -> list:
    # Everything in `done` has finished (redun resolved it): make it visible to the others,
    # say so, and wait until every other writer has done the same (and the test says go).
    BACKEND.flush()
    (MARKS / f"ready-{me}").touch()
    for other in others:
        _wait(MARKS / f"ready-{other}")
    _wait(MARKS / "go")
    BACKEND.load()  # a refresh: lists the journal's tail, ingests what the others wrote
    return done


@task()
def others_work(groups: list, n: int, gate: list) -> list:
    return [work(g, i) for g in groups for i in range(n)]


@task()
def main(me: str, others: list, n: int) -> list:
    mine = [work(me, i) for i in range(n)]
    return others_work(others, n, barrier(me, others, mine))


@task()
def solo(me: str, n: int) -> list:
    return [work(me, i) for i in range(n)]
'''

WORKER = '''
import json, sys
sys.path.insert(0, sys.argv[1])
from redun import Scheduler
from redun.config import Config
from objstore.redun import ObjstoreBackend
import workflow

url, options, index, expr = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
backend = ObjstoreBackend(url, storage_options=options or None, index_dir=index)
backend.load()
workflow.BACKEND = backend
result = Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend).run(
    eval(expr, vars(workflow)))
backend.close()
print(json.dumps(result))
'''


class Writers:
    """Worker processes on one repository, each with its own index directory."""

    def __init__(self, tmp_path: Path, url: str, options: dict | None):
        self.dir, self.url, self.options = tmp_path, url, options or {}
        (tmp_path / "workflow.py").write_text(WORKFLOW)
        (tmp_path / "worker.py").write_text(WORKER)
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.env = dict(os.environ, MW_DIR=str(self.marks), XDG_CACHE_HOME=str(tmp_path / "cache"))
        if options:
            self.env["OBJSTORE_STORAGE_OPTIONS"] = json.dumps(options)

    def start(self, name: str, expr: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(self.dir / "worker.py"), str(self.dir), self.url, json.dumps(self.options),
             str(self.dir / f"index-{name}"), expr],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=self.dir,
        )  # fmt: skip

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 180) -> list:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err[-3000:]
        return json.loads(out.strip().splitlines()[-1])

    def runs(self) -> dict[tuple[str, int], int]:
        """(group, i) -> how many times the task body ran, over all writers."""
        counts: dict[tuple[str, int], int] = {}
        for p in self.marks.glob("ran-*"):
            _, group, i, _pid = p.name.split("-")
            counts[group, int(i)] = counts.get((group, int(i)), 0) + 1
        return counts

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "objstore.cli", *args], capture_output=True, text=True, env=self.env,
            cwd=self.dir, timeout=timeout,
        )  # fmt: skip


def init(url: str, options: dict | None, tmp_path: Path) -> None:
    Repository.init(url, options, index_dir=tmp_path / "index-init").close()


def log_json(writers: Writers, *args: str) -> dict | list:
    proc = writers.cli("--repo", writers.url, "log", "--json", *args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def executions(writers: Writers) -> list[dict]:
    doc = log_json(writers)
    return doc if isinstance(doc, list) else doc.get("executions", doc.get("results", []))


def wait_for_files(paths: list[Path], procs: list[subprocess.Popen], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a writer ended early: {proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"writers never reached the barrier: {[p.name for p in paths if not p.exists()]}")
        time.sleep(0.05)


@pytest.fixture(params=servers.backend_params(("local", "s3", "gcs", "azure")))
def shared(request, tmp_path):
    """One repository location for several writers."""
    t = servers.make_target_for(request, tmp_path)
    yield t
    servers.discard_target(t)


def test_overlapping_writers_reuse_each_others_results_while_they_run_and_lose_nothing(shared, tmp_path):
    n_writers, n = (3, 6) if shared.name == "local" else (2, 4)
    init(shared.url, shared.storage_options, tmp_path)
    w = Writers(tmp_path, shared.url, shared.storage_options)

    groups = [f"g{k}" for k in range(n_writers)]
    others = {g: [o for o in groups if o != g] for g in groups}
    solo = w.start("solo", "solo('s', 3)")
    procs = {g: w.start(g, f"main({g!r}, {others[g]!r}, {n})") for g in groups}
    try:
        # One writer finishes its whole run while the others are at their barrier.
        assert w.finish(solo) == ["s:0", "s:1", "s:2"]
        # Every writer has run and flushed its own tasks and waits at the barrier: all still run.
        wait_for_files([w.marks / f"ready-{g}" for g in groups], list(procs.values()))
        assert all(p.poll() is None for p in procs.values())
        # `objstore log` reads the repository while they write: it sees the finished execution.
        seen = executions(w)
        done = [e for e in seen if e["args"] == ["multiwriter_tests.solo('s', 3)"]]
        assert len(done) == 1 and done[0]["status"] == "DONE", seen
        (w.marks / "go").touch()
        while any(p.poll() is None for p in procs.values()):  # and keeps reading while they finish
            assert len(executions(w)) >= 1
        results = {g: w.finish(p) for g, p in procs.items()}
    finally:
        (w.marks / "go").touch()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for g in groups:
        assert results[g] == [f"{o}:{i}" for o in others[g] for i in range(n)]

    # Every task body ran exactly once over all writers: each reused the others' results.
    runs = w.runs()
    expected = {("s", i) for i in range(3)} | {(g, i) for g in groups for i in range(n)}
    assert set(runs) == expected and set(runs.values()) == {1}, runs

    # Nothing lost: a fresh host (the CLI's own index) sees every job of every writer, in redun's
    # own records: each writer executed its own tasks and had the others' as cache hits.
    execs = executions(w)
    assert len(execs) == 1 + n_writers and all(e["status"] == "DONE" for e in execs), execs
    by_exec: dict[str, list[dict]] = {}
    for job in log_json(w, "--job"):
        by_exec.setdefault(job["execution_id"], []).append(job)
    for e in execs:
        jobs = by_exec.get(e["id"], [])
        assert all(j["status"] in ("DONE", "CACHED") for j in jobs), jobs
        if e["args"] == ["multiwriter_tests.solo('s', 3)"]:
            assert len(jobs) == 4
            continue
        me = e["args"][0].split("'")[1]
        works = [j for j in jobs if j["task_name"] == "multiwriter_tests.work"]
        executed = sorted(j["args"] for j in works if not j["cached"])
        cached = sorted(j["args"] for j in works if j["cached"])
        assert executed == sorted(f"'{me}', {i}" for i in range(n)), (me, executed)
        assert cached == sorted(f"'{o}', {i}" for o in others[me] for i in range(n)), (me, cached)
        assert len(jobs) == 3 + n * n_writers  # main, barrier, others_work and every work job
    fsck = w.cli("--repo", shared.url, "fsck")
    assert fsck.returncode == 0 and "Traceback" not in fsck.stderr, fsck.stdout + fsck.stderr


# -- handles shared between writers -----------------------------------------------------------

HANDLE_WORKER = '''
import json, os, sys, time
from objstore.backend import Provenance
from objstore.backend.handles import HandleSpec
from objstore.repo import Repository

url, options, index, me, m, go = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
spec = lambda h: HandleSpec(h["hash"], h["fullname"], h["key"], h["hash"])
plan = json.loads(sys.stdin.read())
with Repository.open(url, options or None, index_dir=index) as repo, Provenance(repo) as prov:
    repo.refresh()
    lost = []
    swap = repo.swap_handle_state
    def counted(*args):
        won = swap(*args)
        lost.append(not won)
        return won
    repo.swap_handle_state = counted
    print("ready", flush=True)
    while not os.path.exists(go):  # every writer starts at once: the swaps collide
        time.sleep(0.005)
    for j in range(m):
        c, d = plan[me][j]
        prov.handles.rollback_handle(c["hash"], c["fullname"])     # invalidates d
        if j % 2 == 0:
            prov.handles.advance_handle([spec(c)], spec(d))       # and makes it valid again
print(json.dumps({"swaps": len(lost), "lost": sum(lost)}))
'''


@pytest.fixture(params=servers.backend_params(("local", "s3")))
def handle_target(request, tmp_path):
    t = servers.make_target_for(request, tmp_path)
    yield t
    servers.discard_target(t)


def test_many_writers_rolling_back_and_advancing_one_handle_lose_no_update(handle_target, tmp_path):
    from objstore import hashing
    from objstore.backend import Provenance
    from objstore.backend.handles import HandleSpec

    target = handle_target
    writers, m = (6, 12) if target.name == "local" else (4, 8)
    fullname = "shared_db"

    def handle(name: str) -> HandleSpec:
        h = hashing.hash_text(f"handle {name}")
        return HandleSpec(h, fullname, name, h)

    root = handle("root")
    plan = [[(handle(f"c{k}-{j}"), handle(f"d{k}-{j}")) for j in range(m)] for k in range(writers)]
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "setup") as repo, \
            Provenance(repo) as prov:  # fmt: skip
        # One handle name, a tree: root -> c(k, j) -> d(k, j), all valid.
        for row in plan:
            for c, d in row:
                prov.handles.advance_handle([root], c)
                prov.handles.advance_handle([c], d)
        prov.flush()
    (tmp_path / "handle_worker.py").write_text(HANDLE_WORKER)
    doc = json.dumps([[[vars(c), vars(d)] for c, d in row] for row in plan])
    procs = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "handle_worker.py"), target.url, json.dumps(target.storage_options),
             str(tmp_path / f"index-{k}"), str(k), str(m), str(tmp_path / "go")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for k in range(writers)
    ]
    for p in procs:
        p.stdin.write(doc)
        p.stdin.close()
    for p in procs:
        line = p.stdout.readline()
        assert line.strip() == "ready", p.stderr.read()[-3000:]
    (tmp_path / "go").touch()
    swaps = lost = 0
    for p in procs:
        p.wait(timeout=300)
        err = p.stderr.read()
        assert p.returncode == 0, err[-3000:]
        counts = json.loads(p.stdout.read().strip().splitlines()[-1])
        swaps, lost = swaps + counts["swaps"], lost + counts["lost"]
    # The writers did collide (lost compare-and-swaps, retried after a backoff) ...
    assert swaps >= writers * m * 1.5 and lost > 0, (swaps, lost)
    with Repository.open(target.url, target.storage_options, index_dir=tmp_path / "check") as repo, \
            Provenance(repo) as prov:  # fmt: skip
        invalid = prov.handles.invalid_hashes(fullname)
    # Every writer's last word on each of its handles survived the others' concurrent updates.
    expected = {d.hash for row in plan for j, (_, d) in enumerate(row) if j % 2 == 1}
    assert invalid == expected
    # ... and every writer's last word on each of its handles survived the others' updates.


def test_cas_retries_back_off_exponentially_with_jitter_and_stay_bounded():
    from refs.backoff import CAP, attempts

    slept: list[float] = []
    assert list(attempts(12, sleep=slept.append, rand=lambda: 1.0)) == list(range(12))
    assert slept[:4] == [0.002, 0.004, 0.008, 0.016]  # doubling bounds, none before the first try
    assert len(slept) == 11 and max(slept) == CAP  # capped
    jittered: list[float] = []
    list(attempts(200, sleep=jittered.append))
    assert len(set(jittered)) > 150 and all(0 <= s <= CAP for s in jittered)  # random below the bound
    assert sum(jittered) < 200 * CAP


def test_a_handle_that_never_settles_ends_in_one_clear_error(tmp_path, monkeypatch):
    from objstore import hashing
    from objstore.backend import Provenance
    from objstore.backend.handles import HandleSpec
    from objstore.errors import ConcurrentUpdate

    slept: list[float] = []
    monkeypatch.setattr("refs.backoff._sleep", slept.append)
    parent, child = hashing.hash_text("a handle"), hashing.hash_text("its child")
    with Repository.init(str(tmp_path / "repo"), index_dir=tmp_path / "i") as repo, Provenance(repo) as prov:
        prov.handles.advance_handle([HandleSpec(parent, "busy", "p", parent)], HandleSpec(child, "busy", "c", child))
        monkeypatch.setattr(repo, "swap_handle_state", lambda *a: False)  # every race lost
        with pytest.raises(ConcurrentUpdate, match="handle state handles/busy: too many concurrent writers"):
            prov.handles.rollback_handle(parent, "busy")
    assert len(slept) == 99  # 100 attempts, a backoff before each retry
