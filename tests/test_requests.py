"""Request economy on S3 (issue 12, item 2), counted at the server (moto's request recorder).

* Real redun Scheduler runs on moto S3: a fan-out and a compile-style build with Files, first
  run and cached runs, pinned at what tools/bench_requests.py measures with slack (first run
  <= 0.1 requests/job, cached <= 0.1), no eval-head file per job, no ranged GET per cached
  value, a second machine fetching each pack once.
* Lookups of ids nobody recorded do not cost a LIST each.
* The local pack cache: every read verified, a damaged cached pack detected and fetched again,
  a pack damaged in the bucket never cached (a miss, not a wrong hit), its bound respected, a
  pack bigger than the bound read by ranges.
* Eval heads: the journal carries them (a second machine hits); head files an older objstore
  wrote are still found by path, by a full-scan reindex and by fsck, and copied by sync.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fsspec
import pytest
import s3_requests

from objstore import hashing, layout, model
from objstore.redun import ObjstoreBackend
from objstore.repo import Repository
from objstore.repo.repository import CATCH_UP_INTERVAL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import bench_requests as wf  # noqa: E402  (the bench's workloads: one definition for both)

# Requests per job, plus what time-driven flushes add (measured); measured by the bench at
# N=1000: 0.006 and 0.004. A request per job of any kind comes back as >= 1.0 and fails.
FIRST_MAX, CACHED_MAX = 0.1, 0.1

pytestmark = pytest.mark.remote


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    server, log = s3_requests.start_counting_s3(tmp_path_factory.mktemp("counting-s3"))
    try:
        yield server, log
    finally:
        server.stop()


@pytest.fixture
def bucket(counting, tmp_path):
    server, log = counting
    return wf.Repo(server, tmp_path), log


def run(backend, workload) -> int:
    jobs, _ = wf.run_once(backend, workload)
    return jobs


def measured(log, make, workload):
    """(jobs, load counts, run counts, task bodies run, allowance): the allowance is what the
    time-driven flushes may add on a loaded machine (a pack and a segment per flush interval),
    per job, so the bounds below pin the per-job cost, not the machine's speed."""
    with log.measure() as load:
        backend = make()
        backend.load()
    with log.measure() as body:
        started = time.monotonic()
        jobs = run(backend, workload)
        elapsed = time.monotonic() - started
    allowance = 2 * (elapsed / backend.flush_interval + 2) / jobs
    return jobs, load, body, wf.BODIES[0], allowance


@pytest.mark.parametrize("kind", ["fanout", "compile"])
def test_requests_per_job_first_and_cached(bucket, tmp_path, kind):
    repo, log = bucket
    workload = wf.fanout_workload(300) if kind == "fanout" else wf.compile_workload(tmp_path / "src", 90)
    jobs, _, first, bodies, slack = measured(log, lambda: repo.backend("ix"), workload)
    assert jobs == workload.jobs and bodies > 0
    assert first.total / jobs <= FIRST_MAX + slack, first.by_kind_area
    assert first.by_area["evals"] == 0  # no eval-head file per job
    assert first.by_kind["HEAD"] == 0 and first.by_kind["GET-range"] == 0

    _, _, cached, bodies, slack = measured(log, lambda: repo.backend("ix"), workload)
    assert bodies == 0
    assert cached.total / jobs <= CACHED_MAX + slack, cached.by_kind_area
    # The packs this machine wrote are in its pack cache: no read of any cached value.
    assert cached.by_area["objects/pack"] == cached.by_kind_area[("PUT", "objects/pack")]
    assert cached.by_kind["GET-range"] == 0 and cached.by_kind["GET"] == 0

    # A second machine (empty index directory): its load reads the journal, then each pack at
    # most once, whatever the number of values in it.
    _, load, cold, bodies, slack = measured(log, lambda: repo.backend("ix-cold"), workload)
    assert bodies == 0
    assert cold.total / jobs <= CACHED_MAX + slack, cold.by_kind_area
    packs = len(fsspec.filesystem("s3", **repo.options).ls(f"{repo.url}/objects/pack"))
    assert 1 <= cold.by_kind_area[("GET", "objects/pack")] <= packs
    assert cold.by_kind["GET-range"] == 0


def test_lookups_of_unknown_ids_do_not_list_the_journal_each(bucket):
    repo, log = bucket
    run(repo.backend("ix"), wf.fanout_workload(20))
    backend = repo.backend("ix")
    backend.load()
    with log.measure() as counts:
        started = time.monotonic()
        for i in range(200):
            value, found = backend.get_value(hashing.hash_text(f"never recorded {i}"))
            assert not found
        elapsed = time.monotonic() - started
    # At most one catch-up a second (Repository.catch_up), not one LIST per unknown id.
    assert counts.by_kind["LIST"] <= 2 + elapsed / CATCH_UP_INTERVAL, (elapsed, counts.by_kind_area)
    assert counts.by_kind["LIST"] < 100
    backend.close()


# -- the pack cache ----------------------------------------------------------------------------


def _value(text: str):
    payload = model.value.encode("builtins.str", "pickle", text.encode())
    return hashing.hash_text("value:" + text), "value", payload


def _write_packs(url, options, index_dir, count=3, per=20, **kw):
    """``count`` flushes of ``per`` values: one pack each. Returns the values."""
    values = []
    with Repository.open(url, options, index_dir=index_dir, create=True, **kw) as repo:
        for p in range(count):
            batch = [_value(f"pack{p}-{i}-{'x' * 200}") for i in range(per)]
            for v in batch:
                repo.add(*v)
            repo.flush()
            values += batch
    return values


def test_a_second_machine_fetches_a_pack_once_and_verifies_every_read(bucket, tmp_path):
    repo, log = bucket
    values = _write_packs(repo.url, repo.options, tmp_path / "writer")
    with Repository.open(repo.url, repo.options, index_dir=tmp_path / "reader") as r:
        with log.measure() as counts:
            got = [r.get(oid) for oid, _, _ in values]
        assert got == [(kind, payload) for _, kind, payload in values]
        assert counts.by_kind_area[("GET", "objects/pack")] == 3 and counts.total == 3
        cached = sorted(p.name for p in (tmp_path / "reader" / "packs").iterdir())
        in_bucket = fsspec.filesystem("s3", **repo.options).ls(f"{repo.url}/objects/pack")
        assert cached == sorted(n.rsplit("/", 1)[-1] for n in in_bucket)


def test_a_damaged_cached_pack_is_detected_and_fetched_again(bucket, tmp_path):
    repo, log = bucket
    values = _write_packs(repo.url, repo.options, tmp_path / "writer", count=1)
    cache = tmp_path / "writer" / "packs"
    (cached,) = list(cache.iterdir())  # the writer kept the pack it wrote
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    with Repository.open(repo.url, repo.options, index_dir=tmp_path / "writer") as r:
        with log.measure() as counts:
            got = [r.get(oid) for oid, _, _ in values]
        assert got == [(kind, payload) for _, kind, payload in values]
        assert counts.by_kind_area[("GET", "objects/pack")] == 1  # fetched again, once
    assert cached.read_bytes() != bytes(data)  # and the cached copy replaced


def test_a_pack_damaged_in_the_bucket_is_not_cached_and_reads_as_corrupt(bucket, tmp_path):
    repo, _ = bucket
    values = _write_packs(repo.url, repo.options, tmp_path / "writer", count=1, pack_cache_bytes=0)
    fs = fsspec.filesystem("s3", **repo.options)
    (path,) = fs.ls(f"{repo.url}/objects/pack")
    data = bytearray(fs.cat_file(path))
    first_entry_at = len(b"OBJPACK1") + 60
    data[first_entry_at] ^= 0xFF
    fs.pipe_file(path, bytes(data))
    from objstore.errors import CorruptObject

    with Repository.open(repo.url, repo.options, index_dir=tmp_path / "reader") as r:
        with pytest.raises(CorruptObject):
            for oid, _, _ in values:
                r.get(oid)
        assert not (tmp_path / "reader" / "packs").exists() or not list((tmp_path / "reader" / "packs").iterdir())


def test_the_cache_keeps_to_its_bound_and_reads_a_bigger_pack_by_ranges(bucket, tmp_path):
    repo, log = bucket
    values = _write_packs(repo.url, repo.options, tmp_path / "writer", count=4, pack_cache_bytes=0)
    fs = fsspec.filesystem("s3", **repo.options)
    sizes = [fs.size(p) for p in fs.ls(f"{repo.url}/objects/pack")]
    bound = max(sizes) * 2 + 10  # room for two packs of four
    with Repository.open(repo.url, repo.options, index_dir=tmp_path / "reader", pack_cache_bytes=bound) as r:
        for oid, kind, payload in values:
            assert r.get(oid) == (kind, payload)
        assert r.pack_cache is not None and 0 < r.pack_cache.size() <= bound
        assert len(list((tmp_path / "reader" / "packs").iterdir())) == 2
    tiny = min(sizes) - 1  # smaller than any pack: every pack is read by ranges, all still right
    with Repository.open(repo.url, repo.options, index_dir=tmp_path / "tiny", pack_cache_bytes=tiny) as r:
        first = [r.get(oid) for oid, _, _ in values]
        with log.measure() as counts:
            again = [r.get(oid) for oid, _, _ in values]
        assert first == again == [(kind, payload) for _, kind, payload in values]
        assert counts.by_kind["GET"] == 0 and counts.by_kind["GET-range"] == len(values)
        assert not (tmp_path / "tiny" / "packs").exists() or r.pack_cache.size() == 0


# -- eval heads --------------------------------------------------------------------------------


def test_a_second_machine_hits_the_cache_from_the_journal_alone(bucket):
    repo, _ = bucket
    workload = wf.fanout_workload(30)
    run(repo.backend("a"), workload)
    fs = fsspec.filesystem("s3", **repo.options)
    assert not fs.exists(f"{repo.url}/evals")  # no head files
    backend = repo.backend("b")
    backend.load()
    assert run(backend, workload) == workload.jobs
    assert wf.BODIES[0] == 0  # every job a cache hit


def test_head_files_of_an_older_writer_are_still_found_by_path_reindex_fsck_and_sync(bucket, tmp_path):
    repo, _ = bucket
    options = repo.options
    v = _value("old head")
    eval_hash = hashing.hash_text("an eval")
    with Repository.open(repo.url, options, index_dir=tmp_path / "old", create=True, eval_files=True) as old:
        old.add(*v)
        old.set_eval_head(eval_hash, v[0])
        old.flush()
    fs = fsspec.filesystem("s3", **options)
    head_path = f"{repo.url}/{layout.eval_key(eval_hash)}"
    assert fs.cat_file(head_path) == v[0].encode()
    # Its journal lost (as if written before the journal carried heads): found by path...
    for seg in fs.ls(f"{repo.url}/journal"):
        fs.rm(seg)
    with Repository.open(repo.url, options, index_dir=tmp_path / "new") as r:
        assert r.eval_head(eval_hash) == v[0]
        # ...by a full-scan reindex...
        stats = r.reindex(full_scan=True)
        assert stats["evals"] == 1 and r.index.get("evals", eval_hash) == v[0]
    # ...by fsck (the CLI), which checks the file...
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OBJSTORE_INDEX_DIR": str(tmp_path / "cli"),
           "OBJSTORE_STORAGE_OPTIONS": json.dumps(options)}
    out = subprocess.run([sys.executable, "-m", "objstore.cli", "--repo", repo.url, "fsck"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert "eval head files" in out.stdout + out.stderr, out.stdout + out.stderr
    # ...and sync copies it (copying is merging).
    dest = f"{repo.url.rsplit('/', 1)[0]}/copy-{uuid.uuid4().hex[:6]}"
    for command in (["init", dest], ["sync", repo.url, dest]):
        out = subprocess.run([sys.executable, "-m", "objstore.cli", *command], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    assert fs.cat_file(f"{dest}/{layout.eval_key(eval_hash)}") == v[0].encode()


def test_a_cache_directory_that_cannot_be_written_only_costs_requests(bucket, tmp_path, caplog):
    repo, log = bucket
    values = _write_packs(repo.url, repo.options, tmp_path / "writer", count=2, pack_cache_bytes=0)
    with Repository.open(repo.url, repo.options, index_dir=tmp_path / "reader") as r:
        (tmp_path / "reader" / "packs").write_text("in the way")  # mkdir fails: a full or read-only disk
        with log.measure() as counts:
            got = [r.get(oid) for oid, _, _ in values] + [r.get(oid) for oid, _, _ in values]
        assert got == [(kind, payload) for _, kind, payload in values] * 2
        # Kept in this process's memory instead: each pack fetched once, no error.
        assert counts.by_kind_area[("GET", "objects/pack")] == 2 and counts.total == 2
    assert sum("cannot keep pack" in rec.getMessage() for rec in caplog.records) == 1  # said once


@pytest.mark.parametrize("setting, expect", [(None, 512 << 20), ("0", None), ("1000000", 1000000)])
def test_redun_ini_bounds_or_turns_off_the_pack_cache(bucket, tmp_path, setting, expect):
    repo, _ = bucket
    config = {"objstore_url": repo.url, "objstore_storage_options": json.dumps(repo.options),
              "objstore_index_dir": str(tmp_path / "ix"), "objstore_create": "true"}
    if setting is not None:
        config["objstore_pack_cache_bytes"] = setting
    backend = ObjstoreBackend(config=config)
    backend.load()
    cache = backend.prov.repo.pack_cache
    assert (cache.max_bytes if cache is not None else None) == expect
    backend.close()


def test_a_killed_writers_temp_file_in_the_cache_is_removed_once_stale(bucket, tmp_path):
    repo, _ = bucket
    values = _write_packs(repo.url, repo.options, tmp_path / "writer", count=1, pack_cache_bytes=0)
    packs = tmp_path / "reader" / "packs"
    packs.mkdir(parents=True)
    stale, fresh = packs / ".tmp-killed", packs / ".tmp-writing"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    with Repository.open(repo.url, repo.options, index_dir=tmp_path / "reader") as r:
        assert r.get(values[0][0]) == values[0][1:]
    assert not stale.exists() and fresh.exists()  # another process may still be writing that one
