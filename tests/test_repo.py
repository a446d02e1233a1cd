"""Repository conformance on every backend: format file, write order, refresh, reindex, merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from objstore import codec, hashing, model
from objstore.errors import (
    CorruptObject,
    FormatError,
    InvalidId,
    ObjectNotFound,
    RepositoryExists,
    RepositoryNotFound,
    StorageError,
)
from objstore.format import FORMAT_VERSION
from objstore.format import check as check_format
from objstore.layout import SEGMENT_RE
from objstore.missing import MISSING
from objstore.repo import Repository, default_index_dir


def h(text: str) -> str:
    return hashing.hash_text(text)


def value_obj(text: str, subvalues=()):
    payload = model.value.encode("builtins.str", "pickle", text.encode(), subvalues=subvalues)
    return h("value:" + text), "value", payload


def tag_obj(entity: str, key: str, value):
    payload = model.tag.KIND.encode("Value", entity, key, value, [])
    return model.tag.tag_hash_of(json.loads(payload)), "tag", payload


def open_repo(target, index_dir, **kw) -> Repository:
    return Repository.open(target.url, target.storage_options, index_dir=index_dir, **kw)


def snapshot(repo: Repository, exclude=()) -> dict[str, list[tuple[str, str]]]:
    return {t: list(repo.index.scan(t)) for t in model.TABLES if t not in exclude}


def write(target, rel: str, data: bytes) -> None:
    fs = target.fs()
    path = f"{target.root}/{rel}"
    if target.name == "local":
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)


def journal_names(target) -> list[str]:
    """Segments, as refresh() sees them: a writer killed mid-write leaves a .tmp- file that no
    reader ever takes for a segment."""
    fs = target.fs()
    try:
        names = [p.rsplit("/", 1)[-1] for p in fs.ls(f"{target.root}/journal", detail=False)]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if SEGMENT_RE.fullmatch(n))


@pytest.fixture
def repo(target, tmp_path):
    r = Repository.init(target.url, target.storage_options, index_dir=tmp_path / "ix")
    yield r
    r.close()


# -- format file ----------------------------------------------------------------------------


def test_init_writes_format_file_and_open_reads_it(target, tmp_path):
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "a") as r:
        repo_id = r.repo_id
    doc = json.loads(target.fs().cat_file(f"{target.root}/objstore.json"))
    assert doc["format"] == "objstore" and doc["version"] == list(FORMAT_VERSION)
    assert doc["repo_id"] == repo_id and str(uuid.UUID(repo_id)) == repo_id
    assert doc["created"].endswith("Z")
    assert target.fs().cat_file(f"{target.root}/objstore.json") == codec.canonical_json(doc)
    with open_repo(target, tmp_path / "b") as r:
        assert r.repo_id == repo_id and r.format == doc
    with pytest.raises(RepositoryExists):
        Repository.init(target.url, target.storage_options, index_dir=tmp_path / "c")
    assert json.loads(target.fs().cat_file(f"{target.root}/objstore.json")) == doc  # not rewritten


def test_open_missing_and_create(target, tmp_path):
    with pytest.raises(RepositoryNotFound, match="objstore.json"):
        open_repo(target, tmp_path / "a")
    with open_repo(target, tmp_path / "a", create=True) as r:
        created = r.repo_id
    with open_repo(target, tmp_path / "b", create=True) as r:
        assert r.repo_id == created


@pytest.mark.parametrize(
    "doc, match",
    [
        ({"format": "git", "version": [1, 0]}, "format 'git'"),
        ({"format": "objstore", "version": [4, 0]}, r"4\.0 is newer .*3\.0, majors 1-3"),
        ({"format": "objstore", "version": [0, 9]}, r"0\.9 is older"),
        ({"format": "objstore", "version": "1.0"}, "unreadable version"),
        ({"format": "objstore", "version": [1, 0], "repo_id": "nope"}, "repo_id"),
    ],
)
def test_open_refuses_other_formats(target, tmp_path, doc, match):
    doc = {"repo_id": str(uuid.uuid4()), **doc}
    write(target, "objstore.json", json.dumps(doc).encode())
    with pytest.raises(FormatError, match=match):
        open_repo(target, tmp_path / "ix")


def test_newer_minor_version_opens_and_bad_json_is_a_format_error(target, tmp_path):
    doc = {"format": "objstore", "version": [3, 7], "repo_id": str(uuid.uuid4()), "x": 1}
    write(target, "objstore.json", json.dumps(doc).encode())
    with open_repo(target, tmp_path / "ix") as r:
        assert r.format["version"] == [3, 7]
    write(target, "objstore.json", b"{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        open_repo(target, tmp_path / "ix2")


def test_check_format_is_pure_and_names_both_versions():
    with pytest.raises(FormatError) as info:
        check_format({"format": "objstore", "version": [4, 1], "repo_id": str(uuid.uuid4())}, "here")
    assert "4.1" in str(info.value) and "3.0" in str(info.value)


# -- write buffer and flush -----------------------------------------------------------------


def test_buffer_serves_reads_before_flush_and_empty_flush_writes_nothing(repo, target):
    oid, kind, payload = value_obj("a")
    repo.flush()
    assert journal_names(target) == []
    repo.add(oid, kind, payload)
    repo.set_eval_head(h("eval"), oid)
    assert repo.get(oid) == (kind, payload)
    assert repo.has(oid)
    assert repo.eval_head(h("eval")) == oid
    assert not repo.store.has(oid)  # nothing written yet
    with pytest.raises(CorruptObject):
        repo.get(oid, expect_kind="tag")
    repo.flush()
    assert repo.pending() == 0
    assert repo.store.get(oid) == (kind, payload)
    assert len(journal_names(target)) == 1
    repo.flush()
    assert len(journal_names(target)) == 1  # empty buffer: no segment
    assert repo.index.get("objects", oid) == "value"
    assert repo.index.get("evals", h("eval")) == oid
    assert repo.index.get("value_type", oid) == "builtins.str"
    head = f"{target.root}/evals/{h('eval')[:2]}/{h('eval')[2:]}"
    # Every repository keeps heads in the journal only (no request per head on a bucket).
    assert not repo.eval_files and not target.fs().exists(head)


def test_journal_segment_lists_objects_and_entries(repo, target):
    v = value_obj("x", subvalues=[h("child")])
    t = tag_obj(v[0], "env", "prod")
    repo.add(*v)
    repo.add(*t)
    repo.note([("put", "job_start", str(uuid.uuid4()), '{"a":1}')])
    repo.set_eval_head(h("e1"), v[0])
    repo.flush()
    (name,) = journal_names(target)
    assert SEGMENT_RE.fullmatch(name) and name.endswith(repo.writer_id)
    raw = target.fs().cat_file(f"{target.root}/journal/{name}")
    kind, payload = codec.decode(raw, object_id=name, expect_kind="journal")
    doc = json.loads(payload)
    assert doc["objects"] == [[v[0], "value"], [t[0], "tag"]]
    entries = [tuple(e) for e in doc["entries"]]
    assert ("add", "subvalues", v[0], h("child")) in entries
    assert ("add", "tags_by_entity", v[0], t[0]) in entries
    assert ("put", "evals", h("e1"), v[0]) in entries
    assert any(e[1] == "job_start" for e in entries)
    assert payload == codec.canonical_json(doc)


def test_validation_happens_at_the_writer(repo):
    with pytest.raises(InvalidId):
        repo.add("../etc/passwd", "value", b"")
    with pytest.raises(InvalidId):
        repo.set_eval_head("short", h("x"))
    with pytest.raises(KeyError):
        repo.note([("put", "no_such_table", "k", "v")])
    with pytest.raises(CorruptObject):
        repo.add(h("bad"), "value", b"no header")  # derive_entries refuses a malformed value
    assert repo.pending() == 0


def test_entries_checked_once_at_the_writer_are_what_the_journal_and_index_get(repo, target):
    # Entries are checked when buffered and trusted at the flush: a list (mutable) handed in
    # must be copied, so changing it afterwards cannot smuggle anything past the check.
    v = value_obj("once")
    entry = ["put", "value_type", v[0], "builtins.int"]
    repo.add(v[0], v[1], v[2], [entry])
    entry[1], entry[2] = "no_such_table", "../x"
    with pytest.raises(ValueError):
        repo.note([("put", "value_type", "k" * 600, "v")])  # too long for LMDB: refused here
    repo.flush()
    (name,) = journal_names(target)
    raw = target.fs().cat_file(f"{target.root}/journal/{name}")
    doc = json.loads(codec.decode(raw, object_id=name)[1])
    assert doc["entries"] == [["put", "value_type", v[0], "builtins.int"]]
    assert repo.index.get("value_type", v[0]) == "builtins.int"


def test_segment_names_strictly_increase(repo, target):
    for i in range(20):
        repo.note([("put", "job_start", str(uuid.uuid4()), str(i))])
        repo.flush()
    names = journal_names(target)
    assert len(names) == 20 and names == sorted(set(names))
    assert repo.index.segments() == set(names)


def test_failed_flush_keeps_the_buffer_and_retry_succeeds(tmp_path):
    url = str(tmp_path / "repo")
    with Repository.init(url, index_dir=tmp_path / "ix") as repo:
        v = value_obj("survivor")
        repo.add(*v)
        repo.set_eval_head(h("ev"), v[0])
        # A real filesystem failure at the journal step: a file squats on the journal/ name.
        Path(url, "journal").write_bytes(b"in the way")
        with pytest.raises(StorageError):
            repo.flush()
        assert repo.pending() == 2
        assert repo.store.has(v[0])  # objects went first: harmless, immutable
        assert repo.index.segments() == set()
        later = value_obj("added meanwhile")
        repo.add(*later)
        os.unlink(Path(url, "journal"))
        repo.flush()
        assert repo.pending() == 0
        (name,) = os.listdir(Path(url, "journal"))
        assert repo.index.has_segment(name)
        assert repo.index.get("objects", later[0]) == "value"
        assert repo.eval_head(h("ev")) == v[0]


_FLUSHER = textwrap.dedent(
    """
    import json, sys, uuid
    from objstore import hashing, model
    from objstore.repo import Repository
    url, options, index_dir = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    repo = Repository.open(url, options, index_dir=index_dir)
    print("ready", flush=True)
    i = 0
    while True:
        for j in range(20):
            text = f"{i}-{j}-{uuid.uuid4()}"
            oid = hashing.hash_text(text)
            repo.add(oid, "value", model.value.encode("builtins.str", "pickle", text.encode() * 50))
            repo.set_eval_head(hashing.hash_text("eval" + text), oid)
        repo.flush()
        i += 1
    """
)


@pytest.mark.parametrize("target", ["local", "s3"], indirect=True)
def test_killed_mid_flush_never_leaves_a_dangling_journal_entry(target, tmp_path):
    Repository.init(target.url, target.storage_options, index_dir=tmp_path / "ix0").close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _FLUSHER, target.url, json.dumps(target.storage_options), str(tmp_path / "ixw")],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 60
        while len(journal_names(target)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.137)  # land somewhere inside a flush
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    fs = target.fs()
    names = journal_names(target)
    assert len(names) >= 3
    for name in names:
        _, payload = codec.decode(fs.cat_file(f"{target.root}/journal/{name}"), object_id=name)
        doc = json.loads(payload)
        packed = {e[2]: e[3].split(":")[0] for e in doc["entries"] if e[1] == "packed"}
        ids = [oid for oid, _ in doc["objects"] if oid not in packed]
        heads = [(e[2], e[3]) for e in doc["entries"] if e[1] == "evals"]
        paths = [f"{target.root}/objects/{i[:2]}/{i[2:]}" for i in ids]
        paths += [f"{target.root}/objects/pack/{name}" for name in set(packed.values())]
        # Eval heads travel in the segment itself; their files (shared storage) are written
        # after it, so a kill then loses nothing a reader of the journal needs.
        assert all(value in ids or value in packed for _, value in heads)
        missing = [p for p in paths if not fs.exists(p)]
        assert missing == [], f"segment {name} references missing files"
    with open_repo(target, tmp_path / "ix1") as r:  # and it all loads
        assert r.index.count("objects") == 20 * len(names)


# -- reads that fall through ----------------------------------------------------------------


def test_unknown_id_falls_through_to_the_store_and_is_cached(target, tmp_path):
    # eval_files=True: the default on shared storage, and a choice on a local disk.
    a = Repository.init(target.url, target.storage_options, index_dir=tmp_path / "a", eval_files=True)
    b = open_repo(target, tmp_path / "b", eval_files=True)
    v = value_obj("remote")
    a.add(*v)
    a.set_eval_head(h("e"), v[0])
    a.flush()
    assert b.index.get("objects", v[0]) is MISSING
    assert b.has(v[0])
    assert b.get(v[0]) == (v[1], v[2])
    assert b.index.get("objects", v[0]) == "value"  # cached: only the objects table
    assert b.index.get("value_type", v[0]) is MISSING
    assert b.eval_head(h("e")) == v[0]  # one GET of evals/, then cached
    assert b.index.get("evals", h("e")) == v[0]
    assert b.eval_head(h("never")) is MISSING
    with pytest.raises(ObjectNotFound):
        b.get(h("never"))
    assert not b.has(h("never"))
    a.close()
    b.close()


def test_refresh_between_two_instances(target, tmp_path):
    a = Repository.init(target.url, target.storage_options, index_dir=tmp_path / "a")
    b = open_repo(target, tmp_path / "b")
    assert b.refresh() == 0
    vs = [value_obj(f"v{i}") for i in range(5)]
    for v in vs[:3]:
        a.add(*v)
    a.flush()
    a.add(*vs[3])
    a.set_eval_head(h("e"), vs[3][0])
    a.flush()
    b.add(*vs[4])
    b.flush()
    assert b.refresh() == 2
    assert b.refresh() == 0
    assert a.refresh() == 1
    for r in (a, b):
        for v in vs:
            assert r.index.get("objects", v[0]) == "value"
        assert r.index.get("evals", h("e")) == vs[3][0]
    assert a.index.segments() == b.index.segments() == set(journal_names(target))
    a.close()
    b.close()


def test_reindex_from_journal_and_full_scan_agree(target, tmp_path):
    repo = Repository.init(target.url, target.storage_options, index_dir=tmp_path / "ix", eval_files=True)
    for i in range(4):
        v = value_obj(f"val{i}", subvalues=[h(f"c{i}")])
        repo.add(*v)
        repo.add(*tag_obj(v[0], "k", i))
        repo.set_eval_head(h(f"e{i}"), v[0])
        repo.note([("put", "job_start", str(uuid.uuid4()), "{}")])
        repo.flush()
    repo.set_eval_head(h("e0"), h("newer"))  # last writer wins, in journal order too
    repo.flush()
    before = snapshot(repo)
    assert before["evals"] and before["subvalues"] and before["tags_by_entity"]
    assert dict(before["evals"])[h("e0")] == h("newer")
    stats = repo.reindex()
    assert stats["segments"] == 5
    assert snapshot(repo) == before
    stats = repo.reindex(full_scan=True)
    assert stats["objects"] == 8 and stats["evals"] == 4
    assert snapshot(repo) == before
    # Without any journal, a full scan rebuilds everything but journal-only notes.
    target.fs().rm(f"{target.root}/journal", recursive=True)
    stats = repo.reindex(full_scan=True)
    assert stats["segments"] == 0
    assert snapshot(repo, exclude=["job_start"]) == {
        k: v for k, v in before.items() if k != "job_start"
    }
    assert repo.index.segments() == set()
    repo.close()


def test_local_disk_keeps_eval_heads_in_the_journal(tmp_path):
    url = str(tmp_path / "r")
    a = Repository.init(url, index_dir=tmp_path / "a")
    b = Repository.open(url, index_dir=tmp_path / "b")  # another process, its own index
    assert not a.eval_files and not b.eval_files
    v = value_obj("head")
    a.add(*v)
    a.set_eval_head(h("e"), v[0])
    a.flush()
    assert not os.path.exists(f"{url}/evals")
    assert b.eval_head(h("e")) is MISSING  # no file to fall through to ...
    assert b.refresh() == 1
    assert b.eval_head(h("e")) == v[0]  # ... the journal carries it
    a.set_eval_head(h("e"), h("newer"))
    a.flush()
    b.refresh()
    assert b.eval_head(h("e")) == h("newer")  # last writer wins, in journal order
    b.reindex()
    assert b.eval_head(h("e")) == h("newer")
    shared = Repository.open(url, index_dir=tmp_path / "a")  # same index: sees it at once
    assert shared.eval_head(h("e")) == h("newer")
    for r in (a, b, shared):
        r.close()


def test_index_for_another_repository_is_rebuilt(tmp_path):
    ix = tmp_path / "shared-ix"
    with Repository.init(str(tmp_path / "one"), index_dir=ix) as one:
        v = value_obj("only in one")
        one.add(*v)
    with Repository.init(str(tmp_path / "two"), index_dir=ix) as two:
        assert two.index.get("objects", v[0]) is MISSING
        assert two.index.meta_get("repo_id") == two.repo_id
    with Repository.open(str(tmp_path / "one"), index_dir=ix) as one:
        assert one.index.get("objects", v[0]) == "value"  # rebuilt from one's journal


def test_copy_merge_of_two_independent_local_repos(tmp_path):
    a_url, b_url = str(tmp_path / "a"), str(tmp_path / "b")
    a = Repository.init(a_url, index_dir=tmp_path / "ixa")
    b = Repository.init(b_url, index_dir=tmp_path / "ixb")
    a_vals = [value_obj(f"a{i}") for i in range(6)]
    b_vals = [value_obj(f"b{i}") for i in range(6)]
    for i, v in enumerate(a_vals):
        a.add(*v)
        a.set_eval_head(h(f"ea{i}"), v[0])
        if i % 2:
            a.flush()
    for i, v in enumerate(b_vals):
        b.add(*v)
        b.set_eval_head(h(f"eb{i}"), v[0])
        b.flush()
    a.close()
    assert not os.path.exists(f"{a_url}/evals")  # local: the heads travel in the journal
    for sub in ("objects", "journal"):
        os.makedirs(Path(b_url, sub), exist_ok=True)
        subprocess.run(["cp", "-r", f"{a_url}/{sub}/.", f"{b_url}/{sub}/"], check=True)
    assert b.refresh() == 3
    for i, v in enumerate(a_vals + b_vals):
        assert b.get(v[0]) == (v[1], v[2])
        assert b.index.get("objects", v[0]) == "value"
        assert b.index.get("value_type", v[0]) == "builtins.str"
    for i, v in enumerate(a_vals):
        assert b.eval_head(h(f"ea{i}")) == v[0]
        assert b.index.get("evals", h(f"ea{i}")) == v[0]
    for i, v in enumerate(b_vals):
        assert b.eval_head(h(f"eb{i}")) == v[0]
    merged = snapshot(b)
    b.reindex()
    assert snapshot(b) == merged
    b.close()


def test_refresh_skips_foreign_and_corrupt_segments(repo, target):
    write(target, "journal/README", b"not a segment")
    write(target, "journal/20250101T000000.000000Z-abcdef0123", b"garbage")
    v = value_obj("fine")
    repo.add(*v)
    repo.flush()
    with Repository.open(target.url, target.storage_options, index_dir=Path(repo.index.path).parent / "other") as r:
        assert r.index.get("objects", v[0]) == "value"
        assert r.index.segments() == {n for n in journal_names(target) if n.endswith(repo.writer_id)}
        assert r.refresh() == 0


def test_threads_adding_while_flushing_lose_nothing(tmp_path):
    with Repository.init(str(tmp_path / "r"), index_dir=tmp_path / "ix") as repo:
        ids = []
        lock = threading.Lock()

        def worker(w):
            for i in range(40):
                v = value_obj(f"{w}-{i}")
                repo.add(*v)
                with lock:
                    ids.append(v[0])
                if i % 10 == 0:
                    repo.flush()

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        repo.flush()
        assert repo.index.count("objects") == 160
    with Repository.open(str(tmp_path / "r"), index_dir=tmp_path / "fresh") as again:
        assert all(again.get(i)[0] == "value" for i in ids)  # from the journal, packed or loose


def test_durable_mode_and_refs_are_wired(target, tmp_path):
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "ix", durable=True) as r:
        v = value_obj("durable")
        r.add(*v)
        r.flush()
        assert r.store.durable and r.index.durable
        assert r.refs.add_if_new("handles/main", b"x")
        assert not r.refs.add_if_new("handles/main", b"y")
        assert r.refs.get("handles/main") == b"x"


def test_default_index_dir_is_outside_the_repo_and_keyed_by_url(tmp_path):
    home = tmp_path / "cache"
    a = default_index_dir(str(tmp_path / "repo"), home)
    assert a == default_index_dir(f"file://{tmp_path}/repo/", home)
    assert a != default_index_dir(str(tmp_path / "repo2"), home)
    assert a != default_index_dir("s3://bucket/repo", home)
    assert str(a).startswith(str(home)) and not str(a).startswith(str(tmp_path / "repo"))
    assert default_index_dir("s3://b/x", home) == default_index_dir("s3://b/x/", home)
