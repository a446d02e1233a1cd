"""The value store at a second URL (format 2.1): values of value_store_min_size bytes or more go
there, every client follows the journal's location record, fsck and gc follow it too, and a
value lost there is a clean cache miss that the next run repairs by writing it again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import servers
from maint_helpers import (
    cached, cli, fsck_json, killed_mid_upload, library, make_env, out, problems, ran, redun_project, redun_run,
    value,
)
from objstore import layout
from objstore.missing import MISSING

BIG = "4000"  # blob(4000): 1 MB of bytes, well over the minimum size set below


def _store_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_a_redun_run_keeps_big_values_at_the_second_url_and_a_lost_one_is_a_clean_miss(tmp_path):
    env = make_env(tmp_path)
    repo = redun_project(tmp_path, env)
    cli(["config", "value_store_url", "values"], tmp_path, env, check=0)
    cli(["config", "value_store_min_size", "100000"], tmp_path, env, check=0)
    first = redun_run(tmp_path, env, "--x", "2", "--big", BIG)
    stored = _store_files(tmp_path / "values")
    assert stored and all(p.stat().st_size < 1_000_000 for p in stored)  # compressed objects
    big_ids = {p.parent.name + p.name for p in stored}
    # Nothing of that size is in the repository itself.
    assert not any((repo / layout.object_key(oid)).exists() for oid in big_ids)
    # Another machine (an empty index) gets every cache hit, the big value read from the store.
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "other-index"))
    second = redun_run(tmp_path, e2, "--x", "2", "--big", BIG)
    assert ran(second) == [] and second.stdout == first.stdout
    code, doc = fsck_json(tmp_path, env)
    assert code == 0 and doc["checked"]["values in value stores"] == len(big_ids)
    # Lose them: fsck names each; redun recomputes (never a wrong hit) and writes them again.
    for p in stored:
        p.unlink()
    code, doc = fsck_json(tmp_path, env)
    assert code == 1 and {p["object"] for p in problems(doc, what="missing")} == big_ids
    third = redun_run(tmp_path, env, "--x", "2", "--big", BIG)
    assert "maintwf.blob" in ran(third) and third.stdout == first.stdout
    assert {p.parent.name + p.name for p in _store_files(tmp_path / "values")} == big_ids
    fourth = redun_run(tmp_path, e2, "--x", "2", "--big", BIG)
    assert ran(fourth) == [] and cached(fourth) > 3
    assert cli(["fsck"], tmp_path, env).returncode == 0


def test_gc_prune_follows_the_value_store(tmp_path):
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    cli(["config", "value_store_url", str(tmp_path / "values")], tmp_path, env, check=0)
    cli(["config", "value_store_min_size", "1000"], tmp_path, env, check=0)
    with library(str(tmp_path / ".objstore"), env) as repo:
        big, small = value("big and unreferenced", size=5000), value("small and unreferenced")
        repo.add(*big)
        repo.add(*small)
        repo.flush()
        assert repo.lookup("value_store", big[0]) == str(tmp_path / "values")
        assert repo.lookup("value_store", small[0]) is MISSING
    assert (tmp_path / "values" / layout.object_key(big[0])).exists()
    assert "pruned 2 value(s)" in out(cli(["gc", "--prune", "--grace", "0"], tmp_path, env, check=0))
    assert not (tmp_path / "values" / layout.object_key(big[0])).exists()
    assert cli(["fsck"], tmp_path, env).returncode == 0


def test_values_stay_readable_where_they_were_written_when_the_setting_moves(tmp_path):
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    url = str(tmp_path / ".objstore")
    cli(["config", "value_store_url", str(tmp_path / "first")], tmp_path, env, check=0)
    cli(["config", "value_store_min_size", "1000"], tmp_path, env, check=0)
    with library(url, env) as repo:
        one = value("one", size=3000)
        repo.add(*one)
    cli(["config", "value_store_url", str(tmp_path / "second")], tmp_path, env, check=0)
    with library(url, env) as repo:
        two = value("two", size=3000)
        repo.add(*two)
        kind, length, chunks = repo.open_stream(one[0])
        assert (kind, b"".join(chunks)) == (one[1], one[2])
    cli(["config", "value_store_url", "--unset"], tmp_path, env, check=0)
    with library(url, dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "fresh"))) as repo:
        three = value("three", size=3000)
        repo.add(*three)
        repo.flush()
        assert [repo.get(v[0]) for v in (one, two, three)] == [v[1:] for v in (one, two, three)]
    assert (tmp_path / "first" / layout.object_key(one[0])).exists()
    assert (tmp_path / "second" / layout.object_key(two[0])).exists()
    assert (tmp_path / ".objstore" / layout.object_key(three[0])).exists()


@pytest.mark.remote
def test_metadata_on_a_local_disk_and_values_on_s3(tmp_path, s3_server):
    bucket = servers.make_target("s3", tmp_path=tmp_path, server=s3_server)
    options = json.dumps(bucket.storage_options)
    env = make_env(tmp_path, OBJSTORE_VALUE_STORE_OPTIONS=options)
    repo = redun_project(tmp_path, env)
    ini = tmp_path / ".redun" / "redun.ini"
    ini.write_text(ini.read_text() + f"objstore_value_store_options = {options}\n")
    cli(["config", "value_store_url", bucket.url], tmp_path, env, check=0)
    cli(["config", "value_store_min_size", "100000"], tmp_path, env, check=0)
    first = redun_run(tmp_path, env, "--x", "7", "--big", BIG)
    fs = bucket.fs()
    keys = fs.find(f"{bucket.root}/objects")
    assert keys  # the big values are in the bucket ...
    assert all(not (repo / "objects" / k.rsplit("/", 2)[-2] / k.rsplit("/", 1)[-1]).exists() for k in keys)
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "other"))
    again = redun_run(tmp_path, e2, "--x", "7", "--big", BIG)
    assert ran(again) == [] and again.stdout == first.stdout  # ... and read back from there
    code, doc = fsck_json(tmp_path, env)
    assert code == 0 and doc["checked"]["values in value stores"] == len(keys)
    assert os.listdir(repo / "journal")
    # A writer killed while uploading a big value to the bucket: gc aborts what it left there.
    killed_mid_upload(bucket.root, layout.object_key("cd" * 20), dict(env, OBJSTORE_STORAGE_OPTIONS=options))
    name = bucket.root.split("/")[0]
    assert len(fs.call_s3("list_multipart_uploads", Bucket=name).get("Uploads", [])) == 1
    assert "aborted 1 unfinished upload(s)" in out(cli(["gc", "--grace", "0"], tmp_path, env, check=0))
    assert not fs.call_s3("list_multipart_uploads", Bucket=name).get("Uploads")


def test_a_sync_copies_values_from_a_value_store_the_destination_does_not_share(tmp_path):
    """A value the source keeps at its second URL reaches a destination that does not use that
    store (as a loose object), so the copy stays whole after the source's store is gone; a
    destination whose value store is the same URL needs no copy."""
    env = make_env(tmp_path)
    redun_project(tmp_path, env)
    cli(["config", "value_store_url", str(tmp_path / "values")], tmp_path, env, check=0)
    cli(["config", "value_store_min_size", "100000"], tmp_path, env, check=0)
    first = redun_run(tmp_path, env, "--x", "3", "--big", BIG)
    big_ids = {p.parent.name + p.name for p in _store_files(tmp_path / "values")}
    assert big_ids
    shared = tmp_path / "shared"
    cli(["init", str(shared)], tmp_path, env, check=0)
    cli(["--repo", str(shared), "config", "value_store_url", str(tmp_path / "values")], tmp_path, env, check=0)
    cli(["sync", str(tmp_path / ".objstore"), str(shared)], tmp_path, env, check=0)
    assert not any((shared / layout.object_key(oid)).exists() for oid in big_ids)  # the store has them
    dst = tmp_path / "dst"
    cli(["init", str(dst)], tmp_path, env, check=0)
    cli(["sync", str(tmp_path / ".objstore"), str(dst)], tmp_path, env, check=0)
    assert all((dst / layout.object_key(oid)).exists() for oid in big_ids)
    for p in _store_files(tmp_path / "values"):
        p.unlink()
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "dst-index"))
    for oid in big_ids:
        assert cli(["--repo", str(dst), "cat-object", "-t", oid], tmp_path, e2, check=0).stdout.strip() == b"value"
    assert cli(["--repo", str(dst), "fsck"], tmp_path, e2).returncode == 0
    assert first.returncode == 0
