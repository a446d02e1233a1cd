"""The hostile-input corpus, hostile surroundings (issue 12, item 5): ids built for path traversal,
an index directory deleted mid-run, a read-only repository, a full disk, an LMDB map that must
grow, and remote storage that cannot be used (a bucket that does not exist, refused
credentials, a dead endpoint, an unknown storage option), each through objstore's CLI (its own
process per command) and a redun Scheduler on ObjstoreBackend (and `redun run` for redun.ini).

Each ends in one clear line (`objstore: error: …` / one ObjstoreRedunError), a cache miss, or a
recovery, and what was recorded before still reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import servers
from hostile import corpus, fixtures
from hostile import workflow as wf
from hostile.cli import assert_outcome
from redun import Scheduler
from redun.config import Config

from objstore.redun import ObjstoreBackend, ObjstoreRedunError

REDUN = Path(sys.executable).with_name("redun")


@pytest.fixture(scope="module", autouse=True)
def _cli():
    yield
    fixtures.close_cli()


@pytest.fixture
def case(tmp_path, tmp_path_factory) -> fixtures.Case:
    return fixtures.Case(fixtures.base(tmp_path_factory).copy(tmp_path / "repo"), tmp_path)


def assert_one_redun_error(exc: BaseException, *needles: str) -> str:
    text = str(exc)
    assert isinstance(exc, ObjstoreRedunError), repr(exc)
    assert "\n" not in text and not text.startswith("[Errno") and "[Errno None]" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def still_reads(case: fixtures.Case) -> None:
    """What the base recorded is all there: listed, readable, and a re-run is all cached."""
    listed = case.objstore("log")
    assert_outcome(listed, 0)
    assert case.repo.main_exec[:8] in listed.stdout and case.repo.handle_exec[:8] in listed.stdout
    assert_outcome(case.objstore("log", case.repo.main_exec), 0)
    assert_outcome(case.objstore("fsck"), 0, report=True)
    result, ran = case.run(wf.main(4))
    assert result == wf.expected(4) and ran == [], ran


# -- ids built for path traversal ---------------------------------------------------------------


def files_outside(case: fixtures.Case) -> set[str]:
    """Files around the repository (where a ../ would land), but the repository, HOME and the
    runs' index directories."""
    ours = (case.repo.path, case.tmp / "home")
    return {str(p) for p in case.tmp.parent.rglob("*")
            if not any(p == d or d in p.parents for d in ours) and not p.relative_to(case.tmp.parent).parts[-1:][0].startswith("ix-")
            and not any(part.startswith("ix-") for part in p.relative_to(case.tmp.parent).parts)}  # fmt: skip


def test_traversal_ids_at_the_command_line(case):
    before = files_outside(case)
    for bad in corpus.TRAVERSAL_IDS:
        forms = [["cat-object", bad], ["cat-object", "-t", "--kind", "value", bad], ["log", bad],
                 ["log", "--job", bad], ["export", bad], ["tag", "add", bad, "k=v"], ["graph", bad]]  # fmt: skip
        for form in forms:
            err = assert_outcome(case.objstore(*form), 1, 2)
            assert "root:" not in err  # it names the input, never a line of a file it read
    # ... and in an import stream (the one way a NUL reaches the CLI: argv cannot carry one).
    for line in ['{"_type": "Value", "_version": 1, "value_hash": "../../etc/passwd", "value": {}}',
                 '{"_format": "objstore-export", "_type": "object", "id": "../../x", "kind": "value"}',
                 '{"_type": "Job", "_version": 1, "id": "ab\\u0000cd"}', "not json"]:  # fmt: skip
        assert_outcome(case.objstore("import", "-", stdin=line + "\n"), 1)
    assert files_outside(case) == before
    still_reads(case)


def test_traversal_ids_at_the_backend_api(case, tmp_path):
    before = files_outside(case)
    with case.backend() as b:
        for bad in [*corpus.TRAVERSAL_IDS, *corpus.NUL_IDS]:
            assert b.get_value(bad) == (None, False)
            assert b.get_job(bad) is None
            assert b.get_eval_cache(bad) == (None, False)
            assert b.get_call_cache(bad) == (None, False)
            assert list(b.get_records([bad])) == []
            assert b.has_records([bad]) == []
            with contextlib.suppress(ValueError):  # an id that can name nothing may be refused ...
                assert b.get_tags([bad]) in ({}, {bad: {}})
            with contextlib.suppress(ValueError):
                assert list(b.iter_record_ids([bad])) == []
        # A handle name is free text: its ref never leaves refs/ (hashed when not a plain name).
        for name in ("../../../escape", "/abs/path", "a\0b", "x" * 3000):
            h = wf.Counter(name, start=1)
            after = Scheduler(config=Config(corpus.CONFIG), backend=b).run(wf.bump(h, 7))
            assert b.is_valid_handle(after)
            b.rollback_handle(h)  # what was derived from h is no longer valid
            assert not b.is_valid_handle(after)
    assert files_outside(case) == before
    escaped = [p for p in case.repo.path.rglob("*") if p.is_file() and (case.repo.path / "refs") in p.parents]
    assert all(".." not in p.relative_to(case.repo.path).parts for p in escaped)
    still_reads(case)


# -- the index directory deleted while a run goes on ---------------------------------------------


def test_an_index_directory_deleted_mid_run(case):
    index = case.tmp / "ix-deleted"
    with case.backend(index="ix-deleted") as b:
        scheduler = Scheduler(config=Config(corpus.CONFIG), backend=b)
        assert scheduler.run(wf.main(4)) == wf.expected(4)  # cached, and the index now exists
        assert index.is_dir()
        wf.RAN.clear()
        assert scheduler.run(wf.wipe_then(str(index), 6)) == wf.expected(6)
        assert wf.RAN[0] == "wipe" and "square(5)" in wf.RAN and not index.exists()
    # Everything that run recorded is in the repository: a fresh index, and the deleted one
    # (recreated), find it all, and a re-run is all cached.
    for name in ("ix-fresh", "ix-deleted"):
        result, ran = case.run(wf.wipe_then(str(index), 6), index=name)
        assert result == wf.expected(6) and ran == [], ran
    listed = case.objstore("log")
    assert_outcome(listed, 0)
    assert "wipe_then" in listed.stdout
    still_reads(case)


# -- a read-only repository ----------------------------------------------------------------------


@contextlib.contextmanager
def mounted(*args: str, target: Path):
    try:
        subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"this case needs root with CAP_SYS_ADMIN (mount {' '.join(args)}): {exc}", pytrace=False)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True, capture_output=True)


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` bind-mounted read-only onto itself for the block."""
    with mounted("--bind", str(path), target=path):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True, capture_output=True)
        yield


def test_a_read_only_repository(case, caplog):
    """A read-only bind mount (root ignores chmod): reads and cache hits work, a write is one
    line saying read-only, and a redun run records nothing and says so once."""
    repo = case.repo.path
    with read_only(repo):
        for args in (["log"], ["log", case.repo.main_exec], ["cat-object", "-t", case.repo.main_result], ["export"],
                     ["reindex"]):  # fmt: skip
            assert_outcome(case.objstore(*args), 0)
        assert_outcome(case.objstore("fsck"), 0, report=True)
        for args in (["tag", "add", case.repo.main_exec, "k=v"], ["repack", "--all"], ["unpack"]):
            err = assert_outcome(case.objstore(*args), 1)
            assert "read-only" in err.lower(), err
        result, ran = case.run(wf.main(4))
        assert result == wf.expected(4) and ran == []
        caplog.clear()  # the cached run above said it too, once
        with caplog.at_level("WARNING", logger="objstore"):
            result, ran = case.run(wf.main(5))  # new work runs; nothing is recorded
        assert result == wf.expected(5) and ran == ["main(5)", "square(4)", "total"], ran
        said = [r.getMessage() for r in caplog.records if "read-only" in r.getMessage()]
        assert len(said) == 1 and "nothing new is recorded" in said[0], said
    still_reads(case)
    result, ran = case.run(wf.main(5))  # ... so writable again it runs what was not recorded
    assert "square(4)" in ran


def test_a_repository_this_user_may_not_write(case, tmp_path_factory):
    """The repository as another user (nobody) sees it: readable, not writable (root ignores
    chmod, so the command runs as nobody). Reads work; a write is one line naming the file."""
    top = Path(tempfile.mkdtemp(prefix="hostile-nobody-", dir="/tmp"))  # pytest's tmp is root's 0700
    try:
        top.chmod(0o755)
        repo = case.repo.copy(top / "repo")
        home = top / "home"
        home.mkdir()
        os.chown(home, 65534, 65534)
        env = dict(case.env, HOME=str(home))

        def as_nobody(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                                   "-m", "objstore.cli", "--repo", str(repo.path), *args], cwd=top, env=env,
                                  capture_output=True, text=True, timeout=120)  # fmt: skip

        assert_outcome(as_nobody("log", repo.main_exec), 0)
        assert_outcome(as_nobody("cat-object", "-t", repo.main_result), 0)
        for args in (["tag", "add", repo.main_exec, "k=v"], ["repack", "--all"]):
            err = assert_outcome(as_nobody(*args), 1)
            assert "Permission denied" in err and str(repo.path) in err, err
    finally:
        shutil.rmtree(top, ignore_errors=True)


# -- a full disk ---------------------------------------------------------------------------------


def fill(disk: Path, leave: int = 0) -> None:
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 65536)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 512)
    os.close(fd)
    if leave:
        os.truncate(disk / "filler", max(0, os.path.getsize(disk / "filler") - leave))


def test_a_full_disk_under_the_repository(case, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=2m", "tmpfs", target=disk):
        small = case.repo.copy(disk / "repo")
        case.repo = small
        fill(disk, leave=64 << 10)
        with pytest.raises(ObjstoreRedunError) as info:
            case.run(wf.big(8, 256 << 10))  # 2 MiB of values into 64 KiB
        assert_one_redun_error(info.value, str(small.path), "No space left on device")
        proc = case.objstore("tag", "add", small.main_exec, "k=" + os.urandom(60_000).hex())
        if assert_outcome(proc, 0, 1):
            assert "No space left on device" in proc.stderr, proc.stderr
        # What was recorded before is intact and still reads, with the disk still full.
        assert_outcome(case.objstore("log", small.main_exec), 0)
        try:  # a cached run still records an execution: it may not fit either, and says so
            result, ran = case.run(wf.main(4))
            assert result == wf.expected(4) and ran == []
        except ObjstoreRedunError as exc:
            assert_one_redun_error(exc, str(small.path), "No space left on device")
        os.unlink(disk / "filler")
        still_reads(case)
        assert not [p for p in small.path.rglob("*") if p.name.startswith(".tmp")]  # no torn temp files left


def test_a_full_disk_under_the_index(case, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=2m", "tmpfs", target=disk):
        fill(disk)
        index = disk / "index"
        proc = fixtures.cli().run(["--repo", case.repo.url, "--index-dir", str(index), "log"], cwd=case.tmp,
                                  env=case.env)  # fmt: skip
        err = assert_outcome(proc, 0, 1)
        if proc.returncode:
            assert "space" in err.lower() or "index" in err.lower(), err
        b = ObjstoreBackend(case.repo.url, index_dir=str(index))
        try:
            with pytest.raises(ObjstoreRedunError) as info:
                Scheduler(config=Config(corpus.CONFIG), backend=b).run(wf.main(4))
            assert_one_redun_error(info.value, case.repo.url)
        finally:
            with contextlib.suppress(Exception):
                b.close()
    still_reads(case)


# -- an LMDB map that must grow ------------------------------------------------------------------

_SMALL_MAP = """
import runpy, sys
import objstore.index
objstore.index.Index.__init__.__kwdefaults__["map_size"] = 1 << 16   # the smallest map objstore opens
sys.argv = ["objstore", *sys.argv[1:]]
runpy.run_module("objstore.cli", run_name="__main__")
"""


def test_an_lmdb_map_that_must_grow(case, monkeypatch):
    """Every index starts at a 64 KiB map here: a run of 300 jobs and a reindex grow it."""
    monkeypatch.setitem(objstore_index().Index.__init__.__kwdefaults__, "map_size", 1 << 16)
    index = case.tmp / "ix-small"
    result, ran = case.run(wf.main(300), index="ix-small")
    assert result == wf.expected(300) and len(ran) == 298  # square(0..3) were recorded before
    assert (index / "data.mdb").stat().st_size > 1 << 16
    for args in (["log", "--index-dir", str(case.tmp / "ix-cli")], ["reindex", "--index-dir", str(case.tmp / "ix-cli")],
                 ["log", "--index-dir", str(index)]):  # fmt: skip
        where = args.index("--index-dir")
        argv = [*args[where:where + 2], "--repo", case.repo.url, *args[:where], *args[where + 2:]]
        proc = subprocess.run([sys.executable, "-c", _SMALL_MAP, *argv], cwd=case.tmp, env=case.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert_outcome(proc, 0)
        assert "main(300)" in proc.stdout or args[0] == "reindex"
    result, ran = case.run(wf.main(300), index="ix-small")
    assert ran == []


def objstore_index():
    import objstore.index

    return objstore.index


# -- remote storage that cannot be used ------------------------------------------------------------


def remote_forms(url: str) -> list[list[str]]:
    return [["--repo", url, "log"], ["--repo", url, "fsck"], ["--repo", url, "export"], ["sync", url, "local-copy"]]


def check_remote(case: fixtures.Case, url: str, options: dict, code: int, *needles: str) -> None:
    env = dict(case.env, OBJSTORE_STORAGE_OPTIONS=json.dumps(options))
    fixtures.cli().run(["init", str(case.tmp / "local-copy")], cwd=case.tmp, env=case.env)
    for form in remote_forms(url):
        proc = fixtures.cli().run(form, cwd=case.tmp, env=env)
        err = assert_outcome(proc, code, report=form[-1] == "fsck")
        for needle in needles if form[0] != "sync" else needles[:0]:  # sync: names the source, below
            assert needle in (err or proc.stdout), (form, needle, err, proc.stdout)
        if form[0] == "sync":
            assert url.split("://", 1)[1] in err, err
    b = ObjstoreBackend(url, storage_options=options, index_dir=str(case.tmp / "ix-remote"))
    try:
        with pytest.raises(ObjstoreRedunError) as info:
            Scheduler(config=Config(corpus.CONFIG), backend=b).run(wf.main(2))
        assert_one_redun_error(info.value, url)
    finally:
        with contextlib.suppress(Exception):
            b.close()


@pytest.mark.remote
def test_a_bucket_that_does_not_exist(case, s3_server):
    check_remote(case, "s3://no-such-bucket-hostile/repo", servers.s3_options(s3_server), 1, "does not exist")


@pytest.mark.remote
def test_a_dead_endpoint(case, s3_server):
    dead = dict(servers.s3_options(s3_server), client_kwargs={"endpoint_url": f"http://127.0.0.1:{servers.free_port()}"},
                config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2})  # fmt: skip
    check_remote(case, "s3://some-bucket/repo", dead, 1, "Could not connect")


@pytest.mark.remote
def test_refused_credentials(case, tmp_path, azure_server):
    target = servers.make_target("azure", tmp_path=tmp_path, server=azure_server)
    good = target.storage_options
    assert_outcome(fixtures.cli().run(["init", target.url], cwd=case.tmp,
                                      env=dict(case.env, OBJSTORE_STORAGE_OPTIONS=json.dumps(good))), 0)  # fmt: skip
    conn = good["connection_string"]
    key = next(p for p in conn.split(";") if p.startswith("AccountKey="))
    bad = {"connection_string": conn.replace(key, "AccountKey=" + "A" * 86 + "==")}
    check_remote(case, target.url, bad, 1)


@pytest.mark.remote
def test_an_unknown_storage_option(case, s3_server):
    typo = dict(servers.s3_options(s3_server), endpoint="http://x")
    check_remote(case, "s3://some-bucket/repo", typo, 2, "unknown storage option", "endpoint")


@pytest.mark.remote
def test_an_unknown_storage_option_in_redun_ini(case, s3_server):
    """`redun run` with redun.ini's objstore_storage_options naming an option S3 does not take:
    one line, not the TypeError deep inside aiobotocore it once was."""
    work = case.tmp / "work"
    work.mkdir()
    shutil.copy(Path(wf.__file__), work / "workflow.py")
    (work / ".redun").mkdir()
    typo = json.dumps(dict(servers.s3_options(s3_server), endpoint="http://x"))
    (work / ".redun" / "redun.ini").write_text(
        "[scheduler]\nignore_warnings = namespace\nsetup_scheduler = objstore.redun::setup_scheduler\n[backend]\n"
        f"objstore_url = s3://some-bucket/repo\nobjstore_storage_options = {typo}\n")
    proc = subprocess.run([str(REDUN), "run", "workflow.py", "main", "--n", "4"], cwd=work, env=case.env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out
    lines = [line for line in out.splitlines() if "ObjstoreRedunError" in line]
    assert len(lines) == 1 and "unknown storage option" in lines[0] and "endpoint" in lines[0], out
    # objstore's CLI reads the same setting from the same redun.ini: one line, a usage error.
    err = assert_outcome(fixtures.cli().run(["log"], cwd=work, env=case.env), 2)
    assert "unknown storage option" in err, err


# -- eval head files on shared storage ---------------------------------------------------------------


def test_damaged_eval_head_files_on_shared_storage(tmp_path):
    """On shared storage (memory:// here, as a bucket) a head file is read by its path when the
    index does not know the head yet: garbage or a value stored nowhere is a cache miss."""
    import fsspec

    url = f"memory://hostile-evals-{tmp_path.name}/repo"
    b = ObjstoreBackend(url, index_dir=str(tmp_path / "ix-writer"), create=True)
    try:
        assert Scheduler(config=Config(corpus.CONFIG), backend=b).run(wf.main(4)) == wf.expected(4)
        b.flush()
    finally:
        b.close()
    fs = fsspec.filesystem("memory")
    root = url[len("memory://"):]
    # Heads live in the journal; head files are what an older objstore left beside them. Plant
    # one per recorded head (then damage it) and some for heads nobody recorded.
    from objstore.repo import Repository

    with Repository.open(url, index_dir=str(tmp_path / "ix-writer")) as repo:
        recorded = [eval_hash for eval_hash, _ in repo.index.scan("evals")]
    assert recorded
    heads = [f"/{root}/evals/{eval_hash[:2]}/{eval_hash[2:]}" for eval_hash in recorded]
    unknown = {"ab" * 20: b"../../etc/passwd", "cd" * 20: b"\x00\xff", "ef" * 20: corpus.MISSING_VALUE.encode()}
    for eval_hash, data in unknown.items():
        fs.pipe_file(f"/{root}/evals/{eval_hash[:2]}/{eval_hash[2:]}", data)
    for path in heads:
        fs.pipe_file(path, b"garbage")  # the journal still carries the real heads
    b = ObjstoreBackend(url, index_dir=str(tmp_path / "ix-reader"))
    try:
        for eval_hash in unknown:
            assert b.get_eval_cache(eval_hash) == (None, False)
        wf.RAN.clear()
        assert Scheduler(config=Config(corpus.CONFIG), backend=b).run(wf.main(4)) == wf.expected(4)
        assert wf.RAN == []  # the journal's heads, not the damaged files
    finally:
        b.close()
        fs.rm(f"/{root.split('/')[0]}", recursive=True)
