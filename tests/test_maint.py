"""fsck, gc, repack and unpack through the command line, on repositories a real redun workflow
(or the library) filled, with the damage the issue names: flipped bytes in a loose object, a
pack entry, a pack toc, a journal segment, an eval head, a ref and objstore.json; foreign files
under every directory; a read-only repository; gc racing a live redun run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

import damage
from maint_helpers import (
    cached, cli, fsck_json, killed_mid_upload, library, make_env, one_line_error, out, populate, problems, ran,
    redun_project, redun_run, snapshot, value,
)
from objstore import hashing, layout, pack
from objstore.missing import MISSING


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.fixture
def project(tmp_path):
    env = make_env(tmp_path)
    repo = redun_project(tmp_path, env)
    redun_run(tmp_path, env, "--x", "3")
    return tmp_path, env, repo


# -- a healthy repository ------------------------------------------------------------------------


def test_fsck_of_a_workflow_repository_is_clean_and_says_what_it_checked(project):
    cwd, env, _ = project
    proc = cli(["fsck"], cwd, env, check=0)
    text = out(proc)
    assert "0 error(s), 0 warning(s): clean" in text and "references checked" in text
    code, doc = fsck_json(cwd, env)
    assert code == 0 and doc["clean"] and doc["problems"] == []
    assert doc["checked"]["objects"] > 20 and doc["checked"]["references checked"] > 5
    code, sampled = fsck_json(cwd, env, "--sample", "0.01", "--seed", "1")
    assert code == 0 and sampled["checked"]["journal files"] == doc["checked"]["journal files"]
    one_line_error(cli(["fsck", "--sample", "2"], cwd, env), 2, "fraction between 0 and 1")


# -- damage, reported and repaired ---------------------------------------------------------------


def _lone_objects(repo_dir: Path, env) -> tuple[list, tuple]:
    """Values in packs and one loose value, referenced by nothing (so losing one breaks no
    call node): what the damage tests damage."""
    with library(str(repo_dir), env) as repo:
        made = populate(repo, flushes=3)
    return made[:-1], made[-1]


@pytest.fixture
def repo_dir(tmp_path):
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    return tmp_path / ".objstore", env


def test_a_flipped_loose_object_is_named_and_moved_aside(repo_dir, tmp_path):
    repo, env = repo_dir
    packed, (oid, kind, payload) = _lone_objects(repo, env)
    path = repo / layout.object_key(oid)
    flip(path, path.stat().st_size - 6)
    code, doc = fsck_json(tmp_path, env)
    assert code == 1
    (p,) = problems(doc, severity="error")
    assert p["where"] == f"objects/{oid[:2]}/{oid[2:]}" and p["what"] == "corrupt" and p["object"] == oid
    assert "objects/" in out(cli(["fsck"], tmp_path, env))
    text = out(cli(["fsck", "--repair"], tmp_path, env, check=0))
    assert "cannot repair: no other copy exists; moved to lost+found/objects/" in text and "after repair: clean" in text
    assert not path.exists() and (repo / "lost+found" / layout.object_key(oid)).read_bytes() != payload
    with library(str(repo), env) as r:  # the index forgot it: the next writer writes it again
        assert not r.has(oid) or r.index.get("objects", oid) is MISSING
        r.add(oid, kind, payload)
    assert cli(["cat-object", "--raw", oid], tmp_path, env, check=0).stdout == payload
    assert cli(["fsck"], tmp_path, env).returncode == 0


def test_a_flipped_loose_copy_of_a_packed_object_is_repaired_from_the_pack(repo_dir, tmp_path):
    repo, env = repo_dir
    packed, _ = _lone_objects(repo, env)
    oid, kind, payload = packed[2]
    with library(str(repo), env) as r:
        assert r.store.put(oid, kind, payload)  # a second, loose copy (an old writer's)
    path = repo / layout.object_key(oid)
    flip(path, path.stat().st_size - 6)
    assert cli(["fsck"], tmp_path, env).returncode == 1
    text = out(cli(["fsck", "--repair"], tmp_path, env, check=0))
    assert "repaired: moved to lost+found/" in text and "the verified copy in pack" in text
    assert cli(["cat-object", "--raw", oid], tmp_path, env, check=0).stdout == payload


def test_a_flipped_pack_entry_keeps_every_other_object(repo_dir, tmp_path):
    repo, env = repo_dir
    packed, _ = _lone_objects(repo, env)
    victim = packed[1]
    pack_path = Path(damage.damage_object(str(repo), victim[0], "corrupt"))
    code, doc = fsck_json(tmp_path, env)
    assert code == 1
    errors = problems(doc, severity="error")
    assert any(p["object"] == victim[0] and p["where"] == f"objects/pack/{pack_path.name}" for p in errors)
    text = out(cli(["fsck", "--repair"], tmp_path, env, check=0))
    assert "repair: salvaged 3 objects from" in text and "after repair: clean" in text
    assert "cannot repair: the entry is damaged and no other copy exists" in text
    assert (repo / "lost+found" / "objects" / "pack" / pack_path.name).exists() and not pack_path.exists()
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "fresh-index"))
    for oid, _, payload in packed:
        got = cli(["cat-object", "--raw", oid], tmp_path, e2)
        if oid == victim[0]:
            one_line_error(got, 1, oid)
        else:
            assert got.stdout == payload


def test_a_flipped_pack_toc_loses_no_object(repo_dir, tmp_path):
    repo, env = repo_dir
    packed, _ = _lone_objects(repo, env)
    pack_path = Path(damage.object_span(str(repo), packed[0][0])[0])
    data = pack_path.read_bytes()
    toc_at = int.from_bytes(data[-8:], "big")
    flip(pack_path, toc_at + 15)
    code, doc = fsck_json(tmp_path, env)
    assert code == 1
    assert any("toc is unreadable" in p["detail"] for p in problems(doc, severity="error"))
    assert any("readable without its toc" in n for n in doc["notes"])
    assert "after repair: clean" in out(cli(["fsck", "--repair"], tmp_path, env, check=0))
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "fresh-index"))
    in_that_pack = [o for o in packed if damage.object_span(str(repo), o[0])[0] != str(pack_path)]
    assert in_that_pack  # they are loose now
    for oid, _, payload in packed:
        assert cli(["cat-object", "--raw", oid], tmp_path, e2, check=0).stdout == payload


def test_a_flipped_journal_segment_is_set_aside_and_its_objects_journaled_again(repo_dir, tmp_path):
    repo, env = repo_dir
    packed, lone = _lone_objects(repo, env)
    names = sorted(os.listdir(repo / "journal"))
    flip(repo / "journal" / names[0], 30)
    code, doc = fsck_json(tmp_path, env, "--seed", "3")
    assert code == 1
    assert problems(doc, what="corrupt")[0]["where"] == f"journal/{names[0]}"
    text = out(cli(["fsck", "--repair"], tmp_path, env, check=0))
    assert "journaled from a full scan" in text or "journaled again" in text
    assert "journal-only notes" in text and "after repair: clean" in text
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "fresh-index"))
    for oid, _, payload in packed + [lone]:
        assert cli(["cat-object", "--raw", oid], tmp_path, e2, check=0).stdout == payload


def test_a_flipped_eval_head_file_is_written_again_from_the_journal(repo_dir, tmp_path):
    repo, env = repo_dir
    eval_hash = hashing.hash_text("the head")
    item = value("behind the head")
    with library(str(repo), env, eval_files=True) as r:  # as on shared storage: a file per head
        r.add(*item)
        r.set_eval_head(eval_hash, item[0])
    head = repo / layout.eval_key(eval_hash)
    flip(head, 3)
    code, doc = fsck_json(tmp_path, env)
    assert code == 1 and problems(doc, what="corrupt")[0]["where"] == layout.eval_key(eval_hash)
    assert "written again from the journal" in out(cli(["fsck", "--repair"], tmp_path, env, check=0))
    assert head.read_text() == item[0]


def test_a_flipped_handle_ref_is_reported_and_left_as_readers_read_it(repo_dir, tmp_path):
    repo, env = repo_dir
    with library(str(repo), env) as r:
        assert r.swap_handle_state("my.handle", MISSING, json.dumps({"invalid": ["a" * 40]}).encode())
    ref = repo / "refs" / "handles" / "my.handle"
    flip(ref, 2)
    code, doc = fsck_json(tmp_path, env)
    (p,) = problems(doc, severity="error")
    assert code == 1 and p["where"] == "refs/handles/my.handle" and "readers treat every handle" in p["detail"]
    proc = cli(["fsck", "--repair"], tmp_path, env)
    assert proc.returncode == 1 and "cannot repair" in out(proc)
    assert ref.exists()  # never deleted


def test_a_flipped_objstore_json_is_rebuilt_with_its_repo_id(repo_dir, tmp_path):
    repo, env = repo_dir
    packed, _ = _lone_objects(repo, env)
    repo_id = json.loads((repo / "objstore.json").read_text())["repo_id"]
    flip(repo / "objstore.json", 0)
    one_line_error(cli(["log"], tmp_path, env), 1, "objstore.json is not valid JSON")
    code, doc = fsck_json(tmp_path, env)
    assert code == 1 and problems(doc)[0]["where"] == "objstore.json"
    text = out(cli(["fsck", "--repair"], tmp_path, env, check=0))
    assert "rebuilt objstore.json at format 3.0, kept the repo_id the index knew" in text
    rebuilt = json.loads((repo / "objstore.json").read_text())
    assert rebuilt["repo_id"] == repo_id and (repo / "lost+found" / "objstore.json").exists()
    for oid, _, payload in packed:
        assert cli(["cat-object", "--raw", oid], tmp_path, env, check=0).stdout == payload


# -- foreign files, read-only repositories -------------------------------------------------------

FOREIGN = ["README", "objects/README", "objects/ab/not-an-id", "objects/pack/notes.txt", "journal/notes",
           "evals/zz", "refs/handles/.DS_Store", "refs/other", "lost+found/x"]  # fmt: skip


def test_foreign_files_under_every_directory_are_warnings_and_never_removed(project):
    cwd, env, repo = project
    for rel in FOREIGN:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("not objstore's")
    code, doc = fsck_json(cwd, env)
    assert code == 0 and doc["clean"]
    flagged = {p["where"] for p in problems(doc, what="foreign")}
    assert flagged == set(FOREIGN) - {"lost+found/x"}
    assert all(p["severity"] == "warning" for p in doc["problems"])
    cli(["gc", "--grace", "0"], cwd, env, check=0)
    cli(["gc", "--grace", "0", "--prune"], cwd, env, check=0)
    cli(["repack"], cwd, env, check=0)
    assert "reindexed" in out(cli(["reindex", "--full-scan"], cwd, env, check=0))
    cli(["log"], cwd, env, check=0)
    for rel in FOREIGN:
        assert (repo / rel).read_text() == "not objstore's"
    assert cached(redun_run(cwd, env, "--x", "3")) > 0


@contextlib.contextmanager
def read_only_view(path: Path, view: Path):
    """``path`` seen through a read-only bind mount at ``view`` (root ignores permission bits)."""
    view.mkdir()
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
        os.rmdir(view)
        try:
            yield path
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)
        return
    try:
        subprocess.run(["mount", "--bind", str(path), str(view)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"a read-only bind mount is needed for this test as root (mount --bind): {exc}", pytrace=False)
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=False)


def test_a_read_only_repository_is_checked_but_gc_refuses_in_one_line(project):
    cwd, env, repo = project
    with library(str(repo), env) as r:  # an old-format repository cannot be migrated there either
        doc = dict(r.format, version=[2, 1])
        r.write_format(doc)
    with read_only_view(repo, cwd / "ro") as ro:
        e = dict(env, OBJSTORE_REPO=str(ro))
        proc = cli(["fsck"], cwd, e)
        assert proc.returncode == 0, out(proc) + proc.stderr.decode()
        assert "clean" in out(proc)
        one_line_error(cli(["gc"], cwd, e), 1, "is read-only here")
        one_line_error(cli(["gc", "--prune", "--grace", "0"], cwd, e), 1, "is read-only here")
        assert cli(["gc", "--dry-run"], cwd, e).returncode == 0
        cli(["log"], cwd, e, check=0)
        assert json.loads((ro / "objstore.json").read_text())["version"] == [2, 1]


# -- gc ------------------------------------------------------------------------------------------


def test_gc_removes_old_temp_files_and_keeps_young_ones(repo_dir, tmp_path):
    repo, env = repo_dir
    _lone_objects(repo, env)
    dead_pid = "7fffffff"
    old = [repo / "objects" / "ab" / f".tmp-{dead_pid}.x.1", repo / "journal" / f".tmp-{dead_pid}.x.2",
           repo / f".tmp-{dead_pid}.x.3"]  # fmt: skip
    young = repo / "objects" / f".tmp-{dead_pid}.x.4"
    live = repo / "objects" / f".tmp-{os.getpid():x}.x.5"  # this process is alive: never removed
    for path in old + [young, live]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a write")
    hour_ago = time.time() - 7200
    for path in old + [live]:
        os.utime(path, (hour_ago, hour_ago))
    assert "would remove 3 temp file(s)" in out(cli(["gc", "--dry-run"], tmp_path, env, check=0))
    assert all(p.exists() for p in old)
    assert "removed 3 temp file(s)" in out(cli(["gc"], tmp_path, env, check=0))
    assert not any(p.exists() for p in old) and young.exists() and live.exists()
    assert "removed 1 temp file(s)" in out(cli(["gc", "--grace", "0"], tmp_path, env, check=0))
    assert not young.exists() and live.exists()
    one_line_error(cli(["gc", "--grace", "soon"], tmp_path, env), 2, "--grace takes a duration")


def test_gc_racing_a_live_redun_run_takes_nothing_the_writer_references(tmp_path):
    env = make_env(tmp_path)
    repo = redun_project(tmp_path, env)
    stop = threading.Event()
    runs: list[subprocess.CompletedProcess] = []

    def keep_collecting() -> None:
        while not stop.is_set():
            runs.append(cli(["gc", "--grace", "0"], tmp_path, env))

    collector = threading.Thread(target=keep_collecting)
    collector.start()
    try:
        first = redun_run(tmp_path, env, "--x", "5", "--n", "300")
        second = redun_run(tmp_path, env, "--x", "6", "--n", "400")
    finally:
        stop.set()
        collector.join()
    assert len(runs) >= 2 and all(r.returncode == 0 for r in runs), [r.stderr.decode()[-500:] for r in runs]
    assert "maintwf.fan" in ran(first) and "maintwf.fan" in ran(second)
    assert cli(["fsck"], tmp_path, env).returncode == 0, out(cli(["fsck"], tmp_path, env))
    again = redun_run(tmp_path, env, "--x", "5", "--n", "300")
    assert ran(again) == [] and cached(again) > 300
    assert first.stdout.strip().splitlines()[-1] == again.stdout.strip().splitlines()[-1]
    del second, repo


def test_gc_prune_removes_only_what_nothing_reachable_refers_to(project):
    cwd, env, repo = project
    with library(str(repo), env) as r:
        unreachable = [value(f"nobody refers to me {i}") for i in range(3)]
        for item in unreachable:
            r.add(*item)
        r.flush()
        lone = value("a lone one, loose", size=10)
        r.add(*lone)
        r.flush()
        before = snapshot(r, ["objects"])
    dry = out(cli(["gc", "--prune", "--grace", "0", "--dry-run"], cwd, env, check=0))
    assert "would prune 4 value(s)" in dry
    assert "pruned 4 value(s)" in out(cli(["gc", "--prune", "--grace", "0"], cwd, env, check=0))
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(cwd / "fresh-index"))
    for oid, _, _ in unreachable + [lone]:
        one_line_error(cli(["cat-object", oid], cwd, e2), 1, oid)
    assert not (repo / layout.object_key(lone[0])).exists()
    with library(str(repo), dict(env, OBJSTORE_INDEX_DIR=str(cwd / "ix3"))) as r:
        after = {k for k, _ in r.index.scan("objects")}
    assert after == {k for k, _ in before["objects"]} - {o for o, _, _ in unreachable + [lone]}
    assert cli(["fsck"], cwd, env).returncode == 0
    assert "pruned nothing" in out(cli(["gc", "--prune", "--grace", "0"], cwd, env, check=0))
    again = redun_run(cwd, env, "--x", "3")
    assert ran(again) == [] and cached(again) > 5  # everything a run needs was kept


def test_gc_prune_keeps_what_is_younger_than_the_grace(project):
    cwd, env, repo = project
    with library(str(repo), env) as r:
        r.add(*value("young and unreferenced"))
    assert "pruned nothing" in out(cli(["gc", "--prune"], cwd, env, check=0))


# -- repack and unpack ---------------------------------------------------------------------------



@pytest.mark.remote
def test_gc_aborts_the_upload_a_writer_killed_mid_upload_left_on_s3(tmp_path, s3_server):
    import servers

    target = servers.make_target("s3", tmp_path=tmp_path, server=s3_server)
    env = make_env(tmp_path, OBJSTORE_STORAGE_OPTIONS=json.dumps(target.storage_options))
    cli(["init", target.url], tmp_path, env, check=0)
    bucket = target.root.split("/")[0]
    fs = target.fs()
    key = layout.object_key("ab" * 20)
    for root in (target.root, f"{bucket}/another-repo"):  # the other one is not gc's to touch
        killed_mid_upload(root, key, env)

    def uploads() -> list[str]:
        return sorted(u["Key"] for u in fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", []))

    mine, theirs = f"repo/{key}", f"another-repo/{key}"
    assert uploads() == [theirs, mine]
    assert not fs.exists(f"{target.root}/{key}")  # readers never see it
    assert "aborted 0 unfinished upload(s) older than the grace period (kept 1 younger)" in out(
        cli(["--repo", target.url, "gc"], tmp_path, env, check=0))  # a live writer's looks the same
    assert "would abort 1 unfinished upload(s)" in out(cli(["--repo", target.url, "gc", "--dry-run", "--grace", "0"],
                                                           tmp_path, env, check=0))  # fmt: skip
    assert uploads() == [theirs, mine]
    assert "aborted 1 unfinished upload(s)" in out(cli(["--repo", target.url, "gc", "--grace", "0"], tmp_path, env,
                                                       check=0))  # fmt: skip
    assert uploads() == [theirs]
    assert "unfinished upload" not in out(cli(["--repo", target.url, "gc", "--grace", "0"], tmp_path, env, check=0))
    code, doc = fsck_json(tmp_path, dict(env, OBJSTORE_REPO=target.url))
    assert code == 0, doc

def test_repack_merges_packs_drops_duplicates_and_stale_readers_follow(repo_dir, tmp_path):
    repo, env = repo_dir
    made = []
    with library(str(repo), env) as r:
        made = populate(r, flushes=6)
    # A second writer packs the same objects again (a copy-merge would do the same).
    with library(str(repo), dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "other"))) as other:
        for item in made[:10]:
            other.buffer.add(item[0], item[1], item[2], [])
        other.flush()
    # fsck places each object in the first pack it reads and counts the other as a copy; either
    # may be where the index places it, and neither is a mismatch.
    from objstore.maint.fsck import fsck

    with library(str(repo), env) as r:
        report, found = fsck(r)
        assert report.clean, report.problems
        places: dict[str, set[str]] = {}  # every place of every object, from the packs themselves
        for path in (repo / "objects" / "pack").iterdir():
            for oid, _, loc in pack.parse(path.read_bytes(), name=path.name):
                places.setdefault(oid, set()).add(f"{path.name}:{loc.offset}:{loc.length}")
        for oid, _, _ in made[:10]:  # each packed twice: one place is fsck's, the other a copy
            [copy] = places[oid] - {"{}:{}:{}".format(*found.toc[oid])}
            assert found.copies.holds(oid, copy) and not found.copies.holds(made[11][0], copy)
        once = made[10][0]
        assert not found.copies.holds(once, "{}:{}:{}".format(*found.toc[once]))  # packed once
    assert cli(["fsck"], tmp_path, env).returncode == 0
    stale = library(str(repo), dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "stale")))
    packs_before = os.listdir(repo / "objects" / "pack")
    assert len(packs_before) == 7
    text = out(cli(["repack"], tmp_path, env, check=0))
    assert "rewrote 7 pack(s)" in text and "into 1" in text and "duplicate copies dropped" in text
    assert len(os.listdir(repo / "objects" / "pack")) == 8  # the old ones wait for gc
    for oid, kind, payload in made:
        assert stale.get(oid) == (kind, payload)  # still at the old locations
    cli(["gc", "--grace", "0"], tmp_path, env, check=0)
    assert len(os.listdir(repo / "objects" / "pack")) == 1
    for oid, kind, payload in made:
        assert stale.get(oid) == (kind, payload)  # a miss on a retired pack refreshes once
    stale.close()
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "fresh-index"))
    for oid, _, payload in made:
        assert cli(["cat-object", "--raw", oid], tmp_path, e2, check=0).stdout == payload
    assert cli(["fsck"], tmp_path, e2).returncode == 0


def test_repack_copies_entries_byte_for_byte_into_one_content_named_pack(repo_dir, tmp_path):
    from objstore.maint.repack import repack

    repo, env = repo_dir
    with library(str(repo), env) as r:
        made = populate(r, flushes=5)
        before = {}
        for name in r.store.pack_names():
            data = (repo / layout.pack_key(name)).read_bytes()
            for oid, _, loc in pack.parse(data, name=name):
                before[oid] = data[loc.offset : loc.offset + loc.length]
        result = repack(r, everything=True)
    assert len(result.packs_written) == 1 and result.objects == len(before) and not result.damaged
    name = result.packs_written[0]
    data = (repo / layout.pack_key(name)).read_bytes()
    assert hashlib.sha256(data).hexdigest()[:40] + ".pack" == name
    toc = pack.read_toc(data, name=name)
    assert toc.in_order() and sorted(toc.ids) == sorted(before)
    for oid, _, offset, length in toc.rows():
        assert data[offset : offset + length] == before[oid]  # the entry as it was: not re-encoded
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "fresh-index"))
    with library(str(repo), e2) as fresh:
        for oid, kind, payload in made:
            assert fresh.get(oid) == (kind, payload)


def test_repack_never_copies_a_damaged_entry_and_keeps_its_pack(repo_dir, tmp_path):
    from objstore.errors import CorruptObject
    from objstore.maint.repack import repack

    repo, env = repo_dir
    with library(str(repo), env) as r:
        made = populate(r, flushes=4)
    victim = made[5][0]  # in the second flush's pack, with three neighbours
    damaged = Path(damage.damage_object(str(repo), victim, "corrupt")).name
    with library(str(repo), env) as r:
        result = repack(r, everything=True)
        assert [oid for oid, _ in result.damaged] == [victim]
        assert damaged not in result.retired and len(result.retired) == result.packs_read - 1
        for name in result.packs_written:
            toc = pack.read_toc((repo / layout.pack_key(name)).read_bytes(), name=name)
            assert victim not in toc.ids
        assert result.objects == len(made) - 2  # all but the victim and the loose one
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "fresh-index"))
    with library(str(repo), e2) as fresh:
        for oid, kind, payload in made:
            if oid == victim:
                with pytest.raises(CorruptObject):
                    fresh.get(oid)
            else:
                assert fresh.get(oid) == (kind, payload)
    code, doc = fsck_json(tmp_path, env)
    assert code == 1 and any(p["object"] == victim and damaged in p["where"] for p in problems(doc, severity="error"))


def test_unpack_and_never_pack(repo_dir, tmp_path):
    repo, env = repo_dir
    with library(str(repo), env) as r:
        made = populate(r, flushes=3)
    assert "unpacked 12 objects" in out(cli(["unpack"], tmp_path, env, check=0))
    for oid, _, _ in made:
        assert (repo / layout.object_key(oid)).is_file()
    cli(["config", "pack", "false"], tmp_path, env, check=0)
    with library(str(repo), env) as r:
        more = populate(r, flushes=2, prefix="loose")
    cli(["gc", "--grace", "0"], tmp_path, env, check=0)
    assert os.listdir(repo / "objects" / "pack") == []
    for oid, _, payload in made + more:
        assert (repo / layout.object_key(oid)).is_file()
        assert cli(["cat-object", "--raw", oid], tmp_path, env, check=0).stdout == payload
    assert cli(["fsck"], tmp_path, env).returncode == 0
    assert pack.MAGIC  # (the format module is what the loose files replaced)


def test_fsck_in_worker_processes_reports_what_one_process_reports(repo_dir, tmp_path):
    repo, env = repo_dir
    with library(str(repo), env) as r:
        made = populate(r, flushes=20)
    damage.damage_object(str(repo), made[5][0], "corrupt")
    one = fsck_json(tmp_path, env, "--jobs", "1")
    two = fsck_json(tmp_path, env, "--jobs", "2")
    assert one[0] == two[0] == 1
    strip = lambda doc: sorted((p["where"], p["what"], p["object"]) for p in doc["problems"])  # noqa: E731
    assert strip(one[1]) == strip(two[1]) and any(p[2] == made[5][0] for p in strip(one[1]))
    assert one[1]["checked"] == two[1]["checked"]


def test_a_damaged_checkpoint_is_named_alike_when_checked_beside_the_packs_or_after_them(repo_dir, tmp_path):
    # By default (more than one process allowed, one checkpoint), the journal is verified in a
    # worker while the packs are; in one process, after them. Both must find the same damage in a block of a checkpoint
    # whose rows fsck does not otherwise need (check_block), and a damaged pack entry.
    from objstore.repo import checkpoint as ckpt
    from objstore.repo.compaction import survey

    repo, env = repo_dir
    with library(str(repo), env) as r:
        made = populate(r, flushes=20)
        name = r.compact()
        r.compactor.retire(r.compactor.retirable(survey(r.blobs), grace=0))
    path = repo / layout.segment_key(name)
    data = bytearray(path.read_bytes())
    head = ckpt.parse_header(bytes(data), name)
    block = next(b for b in head.blocks if b["table"] != "objects")
    data[head.end + block["offset"] + block["length"] // 2] ^= 0x10
    path.write_bytes(bytes(data))
    damage.damage_object(str(repo), made[5][0], "corrupt")
    one = fsck_json(tmp_path, env, "--jobs", "1")
    two = fsck_json(tmp_path, env)
    assert one[0] == two[0] == 1
    strip = lambda doc: sorted((p["where"], p["what"], p["object"] or "") for p in doc["problems"])  # noqa: E731
    assert strip(one[1]) == strip(two[1]), (strip(one[1]), strip(two[1]))
    wheres = {p[0] for p in strip(one[1])}
    assert layout.segment_key(name) in wheres and any(p[2] == made[5][0] for p in strip(one[1]))


def test_named_remotes_config_is_part_of_the_repository_not_a_foreign_file(tmp_path):
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    cli(["repo", "add", "team", str(tmp_path / "elsewhere")], tmp_path, env, check=0)
    assert (tmp_path / ".objstore" / "config.json").exists()
    code, doc = fsck_json(tmp_path, env)
    assert code == 0 and not [p for p in doc["problems"] if "config.json" in json.dumps(p)], doc["problems"]
