"""Hosts catch up with the journal, and a killed worker's results survive (issue 8, defects 2, 8).

* Two "hosts" (two index directories) on one local repository: each must reuse what the other
  recorded, on its next load and, in a process that stays open, on its next miss.
* A writer killed after its journal segment but before its index transaction (a shared index):
  the next run must see the segment.
* A worker SIGKILLed seconds into a run keeps what it had finished: the flush interval holds
  between job boundaries (a long task running) and on S3 (a 200-job fan-out).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from redun import Scheduler
from redun.config import Config

import servers
from objstore.redun import ObjstoreBackend
from objstore.repo import Repository

CONFIG = Config({"scheduler": {"ignore_warnings": "namespace"}})

WORKFLOW = '''
import sys, time
from redun import task

redun_namespace = "catch_up_tests"
CALLS = []


@task()
def leaf(i: int) -> int:
    CALLS.append(i)
    print(f"leaf {i} ran", file=sys.stderr, flush=True)
    return i * 2


@task()
def fan(n: int) -> list:
    return [leaf(i) for i in range(n)]


@task()
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "slow"


@task()
def quick_then_slow(n: int, seconds: float) -> list:
    return [leaf(i) for i in range(n)] + [slow(seconds)]
'''

CHILD = '''
import json, os, signal, sys
sys.path.insert(0, {here!r})
from redun import Scheduler
from redun.config import Config
from objstore.redun import ObjstoreBackend
import workflow

url, options, index, expr, kill_in_index = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
if kill_in_index == "yes":
    # The crash this test is about: the journal segment is written, the index transaction
    # that would follow it never happens.
    from objstore.index import Index
    apply = Index.apply
    def dying_apply(self, entries, *, segment=None, prechecked=False):
        if segment is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return apply(self, entries, segment=segment, prechecked=prechecked)
    Index.apply = dying_apply
extra = json.loads(os.environ.get("CHILD_BACKEND", "{{}}"))
backend = ObjstoreBackend(url, storage_options=options or None, index_dir=index, **extra)
backend.load()
print("loaded", file=sys.stderr, flush=True)
Scheduler(config=Config({{"scheduler": {{"ignore_warnings": "namespace"}}}}), backend=backend).run(eval(expr, vars(workflow)))
print("finished", file=sys.stderr, flush=True)
'''


@pytest.fixture
def wf(tmp_path):
    """The workflow module, importable here and by child processes (same task hashes)."""
    (tmp_path / "workflow.py").write_text(WORKFLOW)
    (tmp_path / "child.py").write_text(CHILD.format(here=str(tmp_path)))
    spec = importlib.util.spec_from_file_location(f"catch_up_wf_{uuid.uuid4().hex}", tmp_path / "workflow.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def init(url: str, options=None) -> None:
    Repository.init(url, options, index_dir=f"/tmp/objstore-catch-up-init-{uuid.uuid4().hex}").close()


def run(wf, url: str, index: Path, expr, options=None, backend: ObjstoreBackend | None = None) -> list[int]:
    """Leaves executed by one run (a new backend unless one is given)."""
    wf.CALLS.clear()
    own = backend is None
    backend = backend or ObjstoreBackend(url, storage_options=options, index_dir=str(index))
    try:
        Scheduler(config=CONFIG, backend=backend).run(expr)
    finally:
        if own:
            backend.close()
    return sorted(wf.CALLS)


def child(tmp_path, url, index, expr, *, options=None, kill_in_index=False, backend=None):
    env = dict(__import__("os").environ, CHILD_BACKEND=json.dumps(backend or {}))
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), url, json.dumps(options or {}), str(index), expr,
         "yes" if kill_in_index else "no"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )


def wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"child ended before printing {text!r}")
        if text in line:
            return
    raise AssertionError(f"child did not print {text!r} in {timeout}s")


def test_a_second_host_reuses_the_first_hosts_work_on_load(tmp_path, wf):
    url = str(tmp_path / "repo")
    init(url)
    host_a, host_b = tmp_path / "index-a", tmp_path / "index-b"
    ObjstoreBackend(url, index_dir=str(host_b)).load()  # host B has been here before: its index is stamped
    assert run(wf, url, host_a, wf.fan(30)) == list(range(30))
    assert run(wf, url, host_b, wf.fan(30)) == []  # nothing re-executed on the other host
    assert run(wf, url, host_a, wf.fan(31)) == [30]
    assert run(wf, url, host_b, wf.fan(31)) == []


def test_a_host_that_stays_open_catches_up_on_a_miss(tmp_path, wf):
    url = str(tmp_path / "repo")
    init(url)
    host_b = ObjstoreBackend(url, index_dir=str(tmp_path / "index-b"))
    host_b.load()
    assert run(wf, url, tmp_path / "index-a", wf.fan(20)) == list(range(20))
    time.sleep(1.1)  # a catch-up after a miss is rate-limited (Repository.catch_up)
    try:
        assert run(wf, url, tmp_path / "index-b", wf.fan(20), backend=host_b) == []
    finally:
        host_b.close()


def test_a_segment_whose_writer_died_before_its_index_update_is_seen_by_the_next_run(tmp_path, wf):
    url, index = str(tmp_path / "repo"), tmp_path / "shared-index"
    init(url)
    # One flush at the root job's end, whose index transaction kills the writer.
    proc = child(tmp_path, url, index, "fan(12)", kill_in_index=True,
                 backend={"flush_interval": 1000, "flush_every": 10**9})
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    segments = sorted(p.name for p in (Path(url) / "journal").iterdir())
    assert segments
    assert run(wf, url, index, wf.fan(12)) == []  # the dead writer's results, from its segment
    assert run(wf, url, index, wf.fan(12)) == []


def test_a_worker_killed_during_a_long_task_keeps_the_results_it_had(tmp_path, wf):
    # Four quick leaves end at once; the next job boundary is slow()'s end, 30 s later. The
    # interval must hold without a boundary: the worker is killed 3 s in.
    url, index = str(tmp_path / "repo"), tmp_path / "index"
    init(url)
    proc = child(tmp_path, url, index, "quick_then_slow(4, 30.0)")
    wait_for(proc, "leaf 3 ran")
    time.sleep(3.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert run(wf, url, tmp_path / "other-index", wf.fan(4)) == []  # the quick results survived


@pytest.mark.remote
def test_an_s3_worker_killed_in_its_first_seconds_keeps_its_finished_jobs(tmp_path, wf, s3_server):
    target = servers.make_target("s3", tmp_path=tmp_path, server=s3_server)
    init(target.url, target.storage_options)
    n = 200
    # The leaves, then a long job: with no request per job left, 200 leaves alone finish on S3
    # before the kill, and the kill must land while the worker still runs.
    proc = child(tmp_path, target.url, tmp_path / "index", f"quick_then_slow({n}, 60)", options=target.storage_options)
    wait_for(proc, "leaf 0 ran")
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    executed = run(wf, target.url, tmp_path / "rerun-index", wf.fan(n), options=target.storage_options)
    reused = n - len(executed)
    assert reused >= 20, f"the re-run reused only {reused} of {n} results"
