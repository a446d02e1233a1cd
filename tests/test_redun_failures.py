"""Inside redun, a repository that cannot be used fails clearly (issue 8, defects 3, 4 and 5).

* A damaged handle ref never makes a rolled-back handle a cache hit again, and says which ref.
* Only `objstore init` or an explicit create option creates a repository: a mistyped URL, a
  deleted objstore.json or a missing bucket is a one-line error naming the URL.
* A read-only repository (read-only mount, immutable files) still serves cache hits and says
  once that nothing new is recorded; a full disk, a damaged or newer objstore.json, a missing
  bucket and a dead endpoint are one ObjstoreRedunError line naming the repository and cause.

`redun run` runs in a subprocess here (as a user runs it); the S3 cases use a Scheduler in this
process, since redun.ini has no place for storage options (endpoints, credentials).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from redun import Handle, Scheduler, task
from redun.config import Config

import servers
from objstore.redun import ObjstoreBackend, ObjstoreRedunError

redun_namespace = "failure_tests"
CONFIG = Config({"scheduler": {"ignore_warnings": "namespace"}})
CALLS: list[str] = []
REDUN = Path(sys.executable).with_name("redun")
OBJSTORE = Path(sys.executable).with_name("objstore")

WORKFLOW = """
from redun import task

redun_namespace = "failure_cli"


@task()
def double(x: int) -> int:
    return 2 * x


@task()
def main(n: int = 5) -> list:
    return [double(i) for i in range(n)]
"""


class CounterHandle(Handle):
    def __init__(self, name: str, start: int = 0):
        self.start = start


@task()
def use_handle(h: CounterHandle, x: int) -> CounterHandle:
    CALLS.append(f"use_handle({x})")
    return h


@task()
def add(a: int, b: int) -> int:
    CALLS.append(f"add({a},{b})")
    return a + b


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path):
    """A directory set up as a user would: `objstore init --redun`, and a workflow file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBJSTORE_", "REDUN_"))}
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "workflow.py").write_text(WORKFLOW)
    subprocess.run([str(OBJSTORE), "init", "--redun"], cwd=work, env=env, check=True, capture_output=True)
    return work, env


def redun_run(project, *args: str) -> subprocess.CompletedProcess:
    work, env = project
    return subprocess.run([str(REDUN), "run", "workflow.py", "main", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)


def set_backend(project, **values: str) -> None:
    work, _ = project
    ini = work / ".redun" / "redun.ini"
    text = ini.read_text()
    for key, value in values.items():
        lines = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
        at = lines.index("[backend]") + 1
        lines.insert(at, f"{key} = {value}")
        text = "\n".join(lines) + "\n"
    ini.write_text(text)


def assert_one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """redun's CLI printed exactly one ObjstoreRedunError line (exit 1) and no traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if "ObjstoreRedunError" in line]
    assert len(lines) == 1 and lines[0].startswith("ObjstoreRedunError: "), out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def counts(proc: subprocess.CompletedProcess) -> tuple[int, int]:
    """(jobs run, jobs cached) as redun's log shows them."""
    out = proc.stdout + proc.stderr
    return out.count("] Run    Job "), out.count("] Cached Job ")


@contextlib.contextmanager
def read_only_mount(path: Path):
    """``path`` bind-mounted read-only onto itself for the block (needs root, as the suite runs)."""
    try:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"a read-only bind mount needs root with CAP_SYS_ADMIN (mount): {exc}", pytrace=False)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)


@contextlib.contextmanager
def immutable(path: Path):
    """Every file and directory under ``path`` immutable (chattr +i) for the block."""
    try:
        subprocess.run(["chattr", "-R", "+i", str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"chattr +i needs root on a filesystem with attributes (ext4, tmpfs...): {exc}", pytrace=False)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=True, capture_output=True)


# -- defect 3: a damaged handle ref -----------------------------------------------------------


def test_a_damaged_handle_ref_never_revalidates_a_rolled_back_handle(tmp_path, caplog):
    url = str(tmp_path / "repo")
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "index"), create=True)
    scheduler = Scheduler(config=CONFIG, backend=backend)
    h = CounterHandle("counter", start=1)
    result = scheduler.run(use_handle(h, 1))
    backend.rollback_handle(h)  # what was derived from h is no longer valid
    assert not backend.is_valid_handle(result)
    backend.close()
    ref = Path(url) / "refs" / "handles" / h.__handle__.fullname
    assert json.loads(ref.read_bytes())["invalid"]
    ref.write_bytes(b"\x00garbage{")

    CALLS.clear()
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "index"))
    with caplog.at_level(logging.WARNING, logger="objstore"):
        Scheduler(config=CONFIG, backend=backend).run(use_handle(CounterHandle("counter", start=1), 1))
    assert CALLS == ["use_handle(1)"]  # a miss (re-run), never the rolled-back result as a hit
    said = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert said and f"refs/handles/{h.__handle__.fullname}" in said[0]
    backend.close()
    assert isinstance(json.loads(ref.read_bytes())["invalid"], list)  # written readably again


# -- defect 4: no silent creation -------------------------------------------------------------


def test_a_mistyped_repository_path_is_an_error_and_creates_nothing(project):
    work, _ = project
    assert counts(redun_run(project)) == (6, 0)
    typo = work / ".objstor"
    set_backend(project, objstore_url=str(typo))
    assert_one_error_line(redun_run(project), f"no objstore repository at {typo}", "objstore init")
    assert not typo.exists()


def test_a_deleted_objstore_json_is_an_error_even_with_the_create_option(project):
    work, _ = project
    redun_run(project)
    fmt = work / ".objstore" / "objstore.json"
    fmt.unlink()
    assert_one_error_line(redun_run(project), "holds repository data", str(work / ".objstore"), "objstore init")
    set_backend(project, objstore_create="true")  # an explicit create never replaces data
    assert_one_error_line(redun_run(project), "holds repository data", "objstore init")
    assert not fmt.exists()


def test_the_create_option_creates_and_memory_needs_none(project, tmp_path):
    work, _ = project
    fresh = tmp_path / "fresh-repo"
    set_backend(project, objstore_url=str(fresh), objstore_create="true")
    assert counts(redun_run(project)) == (6, 0)
    assert (fresh / "objstore.json").is_file()
    assert counts(redun_run(project)) == (0, 6)
    # memory:// cannot hold anything from before this process: it is always created.
    set_backend(project, objstore_url="memory://scratch/repo", objstore_create="false")
    proc = redun_run(project)
    assert proc.returncode == 0 and counts(proc) == (6, 0), proc.stderr


@pytest.mark.remote
def test_a_mistyped_bucket_or_prefix_is_an_error(tmp_path, s3_server):
    target = servers.make_target("s3", tmp_path=tmp_path, server=s3_server)
    bucket = target.root.split("/")[0]
    for url, needle in ((f"s3://{bucket}/typo", "objstore init"),
                        (f"s3://no-such-{uuid.uuid4().hex[:8]}/repo", "does not exist")):
        backend = ObjstoreBackend(url, storage_options=target.storage_options, index_dir=str(tmp_path / "ix"))
        with pytest.raises(ObjstoreRedunError, match=needle) as info:
            Scheduler(config=CONFIG, backend=backend).run(add(1, 2))
        assert url in str(info.value) and "\n" not in str(info.value)
    assert not target.fs().exists(f"{bucket}/typo")


# -- defect 5: read-only, full, damaged, newer, missing, dead ---------------------------------


@pytest.mark.parametrize("how", ["read-only mount", "immutable files"])
def test_a_read_only_repository_serves_cache_hits_and_says_so_once(project, how):
    work, _ = project
    assert counts(redun_run(project)) == (6, 0)
    repo = work / ".objstore"
    guard = read_only_mount(repo) if how == "read-only mount" else immutable(repo)
    with guard:
        proc = redun_run(project)
        more = redun_run(project, "--n", "7")  # new work too: it runs, nothing is recorded
    for p in (proc, more):
        out = p.stdout + p.stderr
        assert p.returncode == 0 and "Traceback" not in out, out
        said = [line for line in out.splitlines() if "read-only" in line]
        assert len(said) == 1 and str(repo) in said[0] and "nothing new is recorded" in said[0], out
    assert counts(proc) == (0, 6) and "[0, 2, 4, 6, 8]" in proc.stdout
    assert counts(more)[0] == 3 and "[0, 2, 4, 6, 8, 10, 12]" in more.stdout  # main, double(5), double(6)
    assert counts(redun_run(project, "--n", "7"))[0] == 3  # ... so writable again, it runs them again


def test_a_full_disk_is_one_line_naming_the_repository(project, tmp_path):
    work, _ = project
    disk = tmp_path / "small-disk"
    disk.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"a small tmpfs needs root with CAP_SYS_ADMIN (mount): {exc}", pytrace=False)
    try:
        repo = disk / "repo"
        subprocess.run([str(OBJSTORE), "init", str(repo)], env=project[1], check=True, capture_output=True)
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        os.truncate(disk / "filler", os.path.getsize(disk / "filler") - 8192)  # room for next to nothing
        set_backend(project, objstore_url=str(repo))
        assert_one_error_line(redun_run(project, "--n", "50"), str(repo), "No space left on device")
    finally:
        subprocess.run(["umount", str(disk)], check=True, capture_output=True)


@pytest.mark.parametrize("damage", ["not json", "newer"])
def test_a_damaged_or_newer_format_file_is_one_line(project, damage):
    work, _ = project
    fmt = work / ".objstore" / "objstore.json"
    if damage == "not json":
        fmt.write_text("{ this is not json")
        needle = "not valid JSON"
    else:
        fmt.write_text(json.dumps(dict(json.loads(fmt.read_text()), version=[9, 0])))
        needle = "9.0 is newer"
    assert_one_error_line(redun_run(project), str(work / ".objstore"), needle)


@pytest.mark.remote
def test_a_dead_endpoint_is_one_error_naming_the_repository(tmp_path, s3_server):
    options = dict(servers.s3_options(s3_server), client_kwargs={"endpoint_url": f"http://127.0.0.1:{servers.free_port()}"},
                   config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2})
    url = "s3://some-bucket/repo"
    backend = ObjstoreBackend(url, storage_options=options, index_dir=str(tmp_path / "ix"))
    with pytest.raises(ObjstoreRedunError) as info:
        Scheduler(config=CONFIG, backend=backend).run(add(1, 2))
    text = str(info.value)
    assert text.startswith(f"cannot open the objstore repository at {url}: ") and "\n" not in text
    assert "Could not connect" in text and "[Errno" not in text
