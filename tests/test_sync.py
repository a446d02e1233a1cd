"""objstore.sync.transfer between every pair of backends, and the promises a copy keeps.

* Any pair of memory, local, S3, GCS and Azure repositories: what the source has (packs, loose
  objects, big objects, eval heads, journal segments, handle refs) arrives, a fresh index on the
  destination reads all of it, and a second sync has nothing to do.
* Write order under failure: a copy that dies part way leaves no journal segment whose objects
  are absent; run again it copies only what is still missing.
* A damaged or missing source file is reported and never spread; the segments that need it are
  kept back.
* Handle refs merge as the union of what each side invalidated, by compare-and-swap: nothing is
  lost when another writer changes the destination's ref during the merge.
"""

from __future__ import annotations

import json
import threading

import pytest
import servers

from objstore import codec, hashing, layout, model, pack
from objstore.errors import FormatError, RepositoryNotFound
from objstore.missing import Missing
from objstore.model import handle as handle_kind
from objstore.repo import Repository
from objstore.repo import journal as journal_mod
from objstore.sync import transfer
from objstore.sync.endpoint import list_files, open_endpoint

PAIRS = [(a, b) for a in servers.BACKENDS for b in servers.BACKENDS]


def h(text: str) -> str:
    return hashing.hash_text(text)


def value(text: str, size: int = 0):
    data = text.encode() + b"x" * size
    return h("value:" + text), "value", model.value.encode("builtins.str", "pickle", data)


@pytest.fixture(params=[pytest.param(p, id=f"{p[0]}-{p[1]}", marks=[pytest.mark.remote] if set(p) & set(servers.REMOTE_BACKENDS) else [])
                        for p in PAIRS])
def pair(request, tmp_path):
    made = []
    for i, name in enumerate(request.param):
        server = request.getfixturevalue(f"{name}_server") if name in servers.REMOTE_BACKENDS else None
        made.append(servers.make_target(name, tmp_path=tmp_path / f"side{i}", server=server))
    try:
        yield made
    finally:
        for t in made:
            servers.discard_target(t)


def fill(repo: Repository, tag: str) -> dict:
    """Objects in a pack, a lone loose object, a big loose object, eval heads, a start note and
    a handle state: one of everything a repository holds."""
    small = [value(f"{tag}-{i}") for i in range(20)]
    for oid, kind, payload in small:
        repo.add(oid, kind, payload)
    heads = {h(f"{tag}-eval-{i}"): small[i][0] for i in range(3)}
    for e, v in heads.items():
        repo.set_eval_head(e, v)
    job = "6f1c1a3e-0000-4000-8000-" + hashing.hash_text(tag)[:12]
    repo.note(model.job.JOB_KIND.start_entries(job, {
        "start_time": "2026-01-01 00:00:00+00:00", "task_hash": h("t"), "parent_id": None,
        "execution_id": "6f1c1a3e-0000-4000-8000-000000000000"}))
    repo.flush()
    lone = value(f"{tag}-lone")
    repo.add(*lone)
    repo.flush()
    big = value(f"{tag}-big", size=(1 << 20) + 10)
    repo.add(*big)
    repo.flush()
    state = handle_kind.encode_state({h(f"{tag}-rolled-back")})
    assert repo.swap_handle_state(f"wf.{tag}", repo.read_handle_state(f"wf.{tag}")[1], state)
    return {"ids": [o for o, _, _ in small] + [lone[0], big[0]], "heads": heads, "job": job,
            "handle": f"wf.{tag}", "invalid": {h(f"{tag}-rolled-back")}}


def side(target):
    return open_endpoint(target.url, target.storage_options)


def test_sync_between_any_two_backends(pair, tmp_path):
    src_t, dst_t = pair
    with Repository.init(src_t.url, src_t.storage_options, index_dir=tmp_path / "ix-src") as src_repo:
        made = fill(src_repo, "a")
    Repository.init(dst_t.url, dst_t.storage_options, index_dir=tmp_path / "ix-dst").close()
    src, dst = side(src_t), side(dst_t)

    p = transfer.plan(src, dst)
    assert len(p.packs) == 1 and len(p.loose) == 2 and len(p.journal) == 3 and len(p.refs) == 1
    result = transfer.run(p)
    assert not result.skipped
    assert (result.packs, result.packed_objects, result.loose, result.segments, result.refs) == (1, 20, 2, 3, 1)
    assert result.objects == 22

    have, got = list_files(src), list_files(dst)
    assert set(have.journal) <= set(got.journal) and set(have.packs) <= set(got.packs)
    assert set(have.loose) <= set(got.loose) and set(have.evals) <= set(got.evals)
    # A second machine's view of the destination: a fresh index, caught up from the journal.
    with Repository.open(dst_t.url, dst_t.storage_options, index_dir=tmp_path / "ix-fresh") as repo:
        assert all(not isinstance(g, Missing) for g in repo.get_many(made["ids"]))
        assert {e: repo.eval_head(e) for e in made["heads"]} == made["heads"]
        assert not isinstance(repo.lookup("job_start", made["job"]), Missing)
        _, raw = repo.read_handle_state(made["handle"])
        assert handle_kind.decode_state(raw) == made["invalid"]
    again = transfer.plan(src, side(dst_t))
    assert again.empty, again


@pytest.mark.parametrize("target", ["memory", "local"], indirect=True)
def test_sync_refuses_a_missing_or_older_destination(target, tmp_path):
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "ix") as repo:
        fill(repo, "b")
    other = servers.make_target(target.name, tmp_path=tmp_path / "other")
    with pytest.raises(RepositoryNotFound, match="destination .* is not an objstore repository.*objstore init"):
        open_endpoint(other.url, role="destination")
    Repository.init(other.url, index_dir=tmp_path / "ix2").close()
    fs = other.fs()
    doc = json.loads(fs.cat_file(f"{other.root}/objstore.json"))
    fs.pipe_file(f"{other.root}/objstore.json", json.dumps(dict(doc, version=[1, 0])).encode())
    with pytest.raises(FormatError, match="format 1.0, which cannot hold pack files; upgrade it first"):
        transfer.plan(side(target), side(other))
    servers.discard_target(other)


class Dying:
    """A destination BlobStore that fails after ``budget`` creates: a sync killed mid-way."""

    def __init__(self, blobs, budget: int):
        self.blobs, self.budget = blobs, budget

    def __getattr__(self, name):
        return getattr(self.blobs, name)

    def create_many(self, items):
        out = []
        for key, data in items:
            if self.budget <= 0:
                raise OSError("killed")
            self.budget -= 1
            out.append(self.blobs.create(key, data))
        return out


def segments_complete(target) -> list[str]:
    """Journal segments at ``target`` naming an object that is not there (must be none)."""
    ep = side(target)
    files = list_files(ep)
    bad = []
    for key in files.journal:
        listing, entries = journal_mod.decode(key, ep.blobs.read(key))
        packed = {e[2]: e[3] for e in entries if e[:2] == ["put", "packed"]}
        for oid, _ in listing:
            where = packed.get(oid)
            ok = (layout.pack_key(pack.Location.parse(where, object_id=oid).pack) in files.packs if where
                  else layout.object_key(oid) in files.loose)
            if not ok:
                bad.append(f"{key} names {oid}")
    return bad


@pytest.mark.parametrize("target", ["local", pytest.param("s3", marks=pytest.mark.remote)], indirect=True)
def test_an_interrupted_sync_resumes_and_never_lists_an_absent_object(target, tmp_path):
    src_t = servers.make_target("local", tmp_path=tmp_path / "src")
    with Repository.init(src_t.url, index_dir=tmp_path / "ix-src") as repo:
        for round_ in range(6):  # six flushes: six packs, six segments
            for i in range(30):
                repo.add(*value(f"r{round_}-{i}"))
            repo.flush()
        for i in range(8):  # lone flushes: loose objects
            repo.add(*value(f"lone-{i}"))
            repo.flush()
    Repository.init(target.url, target.storage_options, index_dir=tmp_path / "ix-dst").close()
    total = len(transfer.plan(side(src_t), side(target)).journal)
    copied_before = 0
    for budget in (3, 5, 4, 6):  # die after a few files, again and again
        dst = side(target)
        dst.blobs = Dying(dst.blobs, budget)
        with pytest.raises(OSError, match="killed"):
            transfer.run(transfer.plan(side(src_t), dst))
        assert segments_complete(target) == []
        now = len(list_files(side(target)).journal) + len(list_files(side(target)).packs) + len(list_files(side(target)).loose)
        assert now > copied_before  # progress every time
        copied_before = now
    resumed = transfer.plan(side(src_t), side(target))
    assert len(resumed.packs) + len(resumed.loose) + len(resumed.journal) == 6 + 8 + total - copied_before
    result = transfer.run(resumed)
    assert not result.skipped and segments_complete(target) == []
    assert transfer.plan(side(src_t), side(target)).empty
    with Repository.open(target.url, target.storage_options, index_dir=tmp_path / "ix-fresh") as repo:
        ids = [value(f"r{r}-{i}")[0] for r in range(6) for i in range(30)] + [value(f"lone-{i}")[0] for i in range(8)]
        assert all(not isinstance(g, Missing) for g in repo.get_many(ids))


@pytest.mark.parametrize("target", ["memory", "local"], indirect=True)
def test_damaged_source_files_are_reported_and_what_needs_them_kept_back(target, tmp_path):
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "ix") as repo:
        for i in range(5):
            repo.add(*value(f"p-{i}"))
        repo.flush()  # a pack
        lone = value("lone")
        repo.add(*lone)
        repo.flush()  # a loose object
        for i in range(5):
            repo.add(*value(f"q-{i}"))
        repo.flush()  # a second pack, intact
    fs = target.fs()
    files = list_files(side(target))
    first_pack = sorted(files.packs)[0]
    damaged = bytearray(fs.cat_file(f"{target.root}/{first_pack}"))
    damaged[20] ^= 0xFF
    fs.pipe_file(f"{target.root}/{first_pack}", bytes(damaged))
    loose_key = layout.object_key(lone[0])
    fs.pipe_file(f"{target.root}/{loose_key}", fs.cat_file(f"{target.root}/{loose_key}")[:-3])  # truncated

    dst_t = servers.make_target(target.name, tmp_path=tmp_path / "dst")
    Repository.init(dst_t.url, index_dir=tmp_path / "ix-dst").close()
    result = transfer.run(transfer.plan(side(target), side(dst_t)))
    reasons = " | ".join(result.skipped)
    assert "do not match its name" in reasons and lone[0] in reasons
    assert sum("kept back" in r for r in result.skipped) == 2  # the two segments naming them
    assert result.segments == 1 and result.packs == 1
    assert segments_complete(dst_t) == []
    with Repository.open(dst_t.url, index_dir=tmp_path / "ix-fresh") as repo:
        assert all(not isinstance(g, Missing) for g in repo.get_many([value(f"q-{i}")[0] for i in range(5)]))
    servers.discard_target(dst_t)


def test_merge_ref_is_the_union_of_what_each_side_invalidated():
    a, b, c = h("a"), h("b"), h("c")
    name = "handles/wf.ledger"
    both = transfer.merge_ref(name, handle_kind.encode_state({a, b}), handle_kind.encode_state({b, c}))
    assert handle_kind.decode_state(both) == {a, b, c}
    assert transfer.merge_ref(name, handle_kind.encode_state({a}), handle_kind.encode_state({a, c})) is None
    assert transfer.merge_ref(name, b"new", None) == b"new"  # absent: copied as it is
    assert transfer.merge_ref(name, b"{not json", handle_kind.encode_state({a})) is None  # unreadable source
    assert transfer.merge_ref("other/x", b"1", b"2") is None  # not handle state: the destination's stays


@pytest.mark.parametrize("target", ["local", pytest.param("s3", marks=pytest.mark.remote)], indirect=True)
def test_handle_ref_merge_loses_no_concurrent_update(target, tmp_path):
    """Both sides advanced the same handle; while the merge runs, a worker on the destination
    keeps rolling back more: every hash anyone invalidated is invalid afterwards."""
    src_t = servers.make_target("local", tmp_path=tmp_path / "src")
    fullname = "wf.ledger"
    with Repository.init(src_t.url, index_dir=tmp_path / "ix-src") as repo:
        repo.swap_handle_state(fullname, repo.read_handle_state(fullname)[1], handle_kind.encode_state({h("src")}))
    dst_repo = Repository.init(target.url, target.storage_options, index_dir=tmp_path / "ix-dst")
    dst_repo.swap_handle_state(fullname, dst_repo.read_handle_state(fullname)[1], handle_kind.encode_state({h("dst")}))
    plan = transfer.plan(side(src_t), side(target))
    worker_hashes = [h(f"worker-{i}") for i in range(15)]

    def worker():
        for wh in worker_hashes:
            while True:  # a rollback, as backend.handles does it: read, add, compare-and-swap
                _, raw = dst_repo.read_handle_state(fullname)
                cur = handle_kind.decode_state(raw) or set()
                if dst_repo.swap_handle_state(fullname, raw, handle_kind.encode_state(cur | {wh})):
                    break

    thread = threading.Thread(target=worker)
    thread.start()
    for _ in range(5):
        transfer.run(plan)
    thread.join()
    transfer.run(transfer.plan(side(src_t), side(target)))
    _, raw = dst_repo.read_handle_state(fullname)
    assert handle_kind.decode_state(raw) == {h("src"), h("dst"), *worker_hashes}
    dst_repo.close()


def test_plan_never_reads_an_object(tmp_path, monkeypatch):
    """Negotiation lists; it reads no object, pack or segment (refs are read, they are few)."""
    src_t = servers.make_target("local", tmp_path=tmp_path / "src")
    with Repository.init(src_t.url, index_dir=tmp_path / "ix") as repo:
        fill(repo, "c")
    dst_t = servers.make_target("local", tmp_path=tmp_path / "dst")
    Repository.init(dst_t.url, index_dir=tmp_path / "ix2").close()
    src, dst = side(src_t), side(dst_t)
    reads = []
    for ep in (src, dst):
        for name in ("read", "read_many", "read_range", "read_ranges", "open_read"):
            real = getattr(ep.blobs, name)
            monkeypatch.setattr(ep.blobs, name, lambda *a, _real=real, _n=name, **k: reads.append(_n) or _real(*a, **k))
    p = transfer.plan(src, dst)
    assert p.files and reads == []


def test_streamed_big_objects_arrive_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "STREAM_BYTES", 1 << 16)  # stream anything over 64 KiB
    src_t = servers.make_target("local", tmp_path=tmp_path / "src")
    with Repository.init(src_t.url, index_dir=tmp_path / "ix") as repo:
        big = value("big", size=3 << 20)
        repo.add(*big)
        repo.flush()
    dst_t = servers.make_target("memory", tmp_path=tmp_path / "dst")
    Repository.init(dst_t.url, index_dir=tmp_path / "ix2").close()
    result = transfer.run(transfer.plan(side(src_t), side(dst_t)))
    assert result.loose == 1 and not result.skipped
    with Repository.open(dst_t.url, index_dir=tmp_path / "ix3") as repo:
        assert repo.get(big[0]) == ("value", big[2])
    assert codec.decode(dst_t.fs().cat_file(f"{dst_t.root}/{layout.object_key(big[0])}"), object_id=big[0])
    servers.discard_target(dst_t)
