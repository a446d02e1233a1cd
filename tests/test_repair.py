"""Damaged repositories repair themselves by re-running (issue 8, defects 1, 6 and 7).

A pack deleted or cut short, a damaged loose object, a journal copied without its objects: the
index still lists what is gone, and writers skip what the index lists. A re-run must find the
damage when it reads, write the lost objects again, and leave a repository whose next runs are
fully cached and whose objects `cat-object` prints again. `objstore log` lists what it can read
and names what it cannot; `reindex --full-scan` recovers the entries of a pack whose table of
contents is damaged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from redun import Scheduler, task
from redun.config import Config

from damage import damage_object
from objstore import pack
from objstore.redun import ObjstoreBackend
from objstore.repo import Repository

redun_namespace = "repair_tests"
CONFIG = Config({"scheduler": {"ignore_warnings": "namespace"}})
CALLS: list[str] = []
BIG = 1 << 21  # over pack.MAX_OBJECT_BYTES: the result of big() is a loose object


@task()
def leaf(i: int) -> int:
    CALLS.append(f"leaf({i})")
    return i * 3


@task()
def big(n: int) -> bytes:
    CALLS.append("big")
    return bytes(range(256)) * (n // 256)


@task()
def root(n: int) -> list:
    CALLS.append("root")
    return [leaf(i) for i in range(n)] + [big(BIG)]


def expected(n: int) -> list:
    return [i * 3 for i in range(n)] + [bytes(range(256)) * (BIG // 256)]


def cli(*args: str, repo: str, index: Path, check: int | None = 0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBJSTORE_")}
    cmd = [sys.executable, "-m", "objstore.cli", "--repo", repo, "--index-dir", str(index), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if check is not None:
        assert proc.returncode == check, (args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def run(url: str, index: Path, n: int = 8) -> tuple[list[str], str]:
    """One run in a new backend (as a new process would be): (what executed, execution id)."""
    CALLS.clear()
    backend = ObjstoreBackend(url, index_dir=str(index))
    exec_id = str(uuid.uuid4())
    try:
        assert Scheduler(config=CONFIG, backend=backend).run(root(n), execution_id=exec_id) == expected(n)
    finally:
        backend.close()
    return sorted(CALLS), exec_id


def pack_members(url: str) -> dict[str, str]:
    """{id: kind} of every object in the repository's packs, read from the packs themselves."""
    out = {}
    pack_dir = Path(url) / "objects" / "pack"
    for path in sorted(pack_dir.glob("*.pack")):
        for oid, kind, _ in pack.parse(path.read_bytes(), name=path.name):
            out[oid] = kind
    return out


def unreadable(url: str, index: Path, ids) -> list[str]:
    with Repository.open(url, index_dir=index) as repo:
        bad = []
        for oid in ids:
            try:
                repo.get(oid)
            except Exception:
                bad.append(oid)
        return bad


@pytest.mark.parametrize("how", ["pack-deleted", "pack-truncated", "loose-corrupt", "journal-without-objects"])
def test_a_rerun_writes_lost_objects_again_and_the_next_runs_are_cached(tmp_path, how):
    url, index = str(tmp_path / "repo"), tmp_path / "index"
    cli("init", url, repo=url, index=index)
    first, _ = run(url, index)
    assert len(first) == 8 + 2
    members = pack_members(url)
    workflow_objects = [oid for oid, kind in members.items() if kind in ("value", "call")]
    big_hash = ObjstoreBackend(url).type_registry.get_hash(expected(8)[-1])

    if how == "pack-deleted":
        for path in (Path(url) / "objects" / "pack").glob("*.pack"):
            path.unlink()
    elif how == "pack-truncated":
        for path in (Path(url) / "objects" / "pack").glob("*.pack"):
            with open(path, "r+b") as f:
                f.truncate(path.stat().st_size // 2)
    elif how == "loose-corrupt":
        damage_object(url, big_hash, "corrupt")
        workflow_objects = [big_hash]
    else:  # a copy of journal/ alone onto a new repository: its index lists objects it lacks
        copy = str(tmp_path / "copy")
        cli("init", copy, repo=copy, index=tmp_path / "copy-index")
        shutil.copytree(Path(url) / "journal", Path(copy) / "journal", dirs_exist_ok=True)
        url, index = copy, tmp_path / "copy-index"
        cli("reindex", repo=url, index=index)
        workflow_objects = [oid for oid, kind in members.items() if kind in ("value", "call")]
    assert unreadable(url, index, workflow_objects)  # the damage is real

    second, _ = run(url, index)
    if how == "loose-corrupt":
        assert second == ["big"]
    elif how == "pack-deleted":  # every packed result is lost; big()'s is loose and intact
        assert second == sorted(["root"] + [f"leaf({i})" for i in range(8)])
    elif how == "journal-without-objects":
        assert len(second) == 8 + 2
    # (a pack cut in half may keep every result a cache hit needs)
    # The repair happened in the run that found the damage: nothing is computed again.
    assert run(url, index)[0] == []
    assert run(url, index)[0] == []
    assert unreadable(url, index, workflow_objects) == []
    # ... and the command line reads them again, through an index of its own too.
    for oid in workflow_objects[:3]:
        cli("cat-object", "-t", oid, repo=url, index=index)
        cli("cat-object", "-t", oid, repo=url, index=tmp_path / "fresh-index")


def test_log_lists_what_it_can_read_and_names_a_lost_execution(tmp_path):
    url, index = str(tmp_path / "repo"), tmp_path / "index"
    cli("init", url, repo=url, index=index)
    _, lost_exec = run(url, index)
    lost_packs = sorted((Path(url) / "objects" / "pack").glob("*.pack"))
    for path in lost_packs:
        path.unlink()
    _, kept_exec = run(url, index)

    proc = cli("log", "--full-ids", repo=url, index=index)
    assert kept_exec in proc.stdout and lost_exec not in proc.stdout
    warning = [line for line in proc.stderr.splitlines() if lost_exec in line]
    assert warning and warning[0].startswith("objstore: warning: execution "), proc.stderr
    assert "pack" in warning[0] and "missing" in warning[0]
    listed = json.loads(cli("log", "--json", repo=url, index=index).stdout)
    assert [e["id"] for e in listed] == [kept_exec]

    # The lost execution itself: one line saying what is gone, naming the pack.
    proc = cli("log", lost_exec, repo=url, index=index, check=1)
    assert proc.stderr.startswith("objstore: error: execution ") and proc.stderr.count("\n") == 1
    assert any(p.name in proc.stderr for p in lost_packs), proc.stderr
    proc = cli("cat-object", lost_exec, repo=url, index=index, check=1)
    assert proc.stderr.count("\n") == 1 and "missing" in proc.stderr
    assert any(p.name in proc.stderr for p in lost_packs), proc.stderr


def test_full_scan_recovers_the_entries_of_a_pack_whose_toc_is_damaged(tmp_path):
    url, index = str(tmp_path / "repo"), tmp_path / "index"
    cli("init", url, repo=url, index=index)
    _, exec_id = run(url, index)
    members = pack_members(url)
    assert exec_id in members
    for path in (Path(url) / "objects" / "pack").glob("*.pack"):
        data = bytearray(path.read_bytes())
        toc_at = int.from_bytes(data[-8:], "big")
        data[toc_at + 8 : toc_at + 16] = b"\xff" * 8  # inside the toc's frame
        path.write_bytes(bytes(data))
        with pytest.raises(Exception, match="corrupt"):
            pack.parse(bytes(data), name=path.name)
    shutil.rmtree(Path(url) / "journal")  # the last resort: nothing but the objects themselves

    fresh = tmp_path / "fresh-index"
    out = cli("reindex", "--full-scan", repo=url, index=fresh).stdout
    assert "damaged table of contents" in out and "recovered" in out
    assert unreadable(url, fresh, members) == []  # every packed entry is indexed again
    assert exec_id in cli("log", "--full-ids", repo=url, index=fresh).stdout
