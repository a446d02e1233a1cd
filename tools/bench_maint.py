"""Maintenance at scale: fsck, fsck --sample, gc --dry-run, repack and a cold refresh after
compaction, on a synthetic repository built through the public API (Repository.add/flush).

    python tools/bench_maint.py                       # 10^6 objects locally, 10^5 on S3 (moto)
    python tools/bench_maint.py --objects 200000 --s3-objects 0 --repeat 1

The repository holds what a redun run holds, per job: an argument value, a result value, a task
value and a call node whose arguments are verified on read (3 values + 1 call = 4 objects),
flushed in batches of ``--per-flush`` objects (one pack and one journal segment each), with an
eval head per job. Figures are medians of ``--repeat`` runs; each is printed beside a floor
measured in the same run: reading the same bytes and decompressing every entry (fsck), copying
the pack files (repack), ingesting every segment one by one (the refresh before compaction).
A cold refresh is a fresh client's first one, so it runs in a new process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from objstore import hashing, layout, model, pack  # noqa: E402
from objstore.maint.fsck import fsck  # noqa: E402
from objstore.maint.gc import gc  # noqa: E402
from objstore.maint.repack import repack  # noqa: E402
from objstore.repo import FlushPolicy, Repository  # noqa: E402
from objstore.repo.compaction import survey  # noqa: E402


def median_time(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def build(url: str, options: dict | None, index_dir: Path, objects: int, per_flush: int) -> None:
    policy = FlushPolicy(max_items=10**9, interval=10**9, background=False)
    tasks = 1000
    jobs = max((objects - tasks - 1) // 4, 1)
    t0 = time.perf_counter()
    with Repository.init(url, options, index_dir=index_dir, policy=policy) as repo:
        task_hash = hashing.hash_text("task:bench.add")
        task_payload, task_entries = model.value.KIND.build(
            task_hash, "redun.Task", "application/python-pickle", b"task source",
            subtype=model.value.task_subtype("add", "bench", "def add(a): ..."))  # fmt: skip
        for j in range(jobs):
            arg = hashing.hash_text(f"arg {j}")
            res = hashing.hash_text(f"result {j}")
            log = hashing.hash_text(f"log {j}")
            task = hashing.hash_text(f"task {j % tasks}")
            items = [(arg, f"argument {j}".encode() * 4), (res, f"result {j}".encode() * 6), (log, f"log {j}".encode() * 3)]
            if j < tasks:
                items.append((task, f"task {j}".encode()))
            for oid, data in items:
                payload, entries = model.value.KIND.build(oid, "builtins.bytes", "application/python-pickle", data)
                repo.add(oid, model.VALUE, payload, entries)
            call = hashing.hash_text(f"call {j}")
            args = {"0": {"arg_hash": model.call.argument_hash(call, "0", arg), "value_hash": arg, "upstream": []}}
            payload, entries = model.call.KIND.build(
                call, task_name="bench.add", task_hash=task, args_hash=hashing.hash_text(f"args {j}"),
                value_hash=res, timestamp="2026-12-01 00:00:00", args=args, children=[], subtree_tasks=[task])  # fmt: skip
            repo.add(call, model.CALL, payload, entries)
            repo.set_eval_head(hashing.hash_text(f"eval {j}"), res)
            if repo.pending() >= per_flush:
                repo.flush()
        repo.add(task_hash, model.VALUE, task_payload, task_entries)
    print(f"  built {jobs * 4 + min(jobs, tasks) + 1:,} objects in {time.perf_counter() - t0:.1f}s", flush=True)


def pack_bytes(repo: Repository) -> tuple[int, list[str]]:
    names = repo.store.pack_names()
    return sum(size for _, size, _ in repo.blobs.list_details(layout.PACKS)), names


def floor_read_decode(repo: Repository, names: list[str]) -> int:
    n = 0
    for name in names:
        data = repo.blobs.read(layout.pack_key(name))
        for oid, _, loc in pack.parse(data, name=name):
            pack.read_entry(oid, data[loc.offset : loc.offset + loc.length])
            n += 1
    return n


class RequestCounter:
    """Counts the S3 API calls s3fs makes (every request goes through its _call_s3)."""

    def __init__(self, fs):
        self.fs, self.calls = fs, {}
        self._real = fs._call_s3

        async def counted(method, *a, **kw):
            name = method if isinstance(method, str) else getattr(method, "__name__", str(method))
            self.calls[name] = self.calls.get(name, 0) + 1
            return await self._real(method, *a, **kw)

        fs._call_s3 = counted

    def total(self) -> int:
        return sum(self.calls.values())


def run_local(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-maint-", dir=args.workdir))
    out: dict = {"objects": args.objects}
    try:
        url = str(work / "repo")
        print(f"local: {args.objects:,} objects in {url}", flush=True)
        build(url, None, work / "ix-build", args.objects, args.per_flush)
        with Repository.open(url, index_dir=work / "ix-build", auto_compact=False) as repo:
            size, names = pack_bytes(repo)
            out["pack_mb"] = size / 1e6
            segments = len(repo.journal.names())
            out["segments"] = segments
            print(f"  {len(names)} packs ({size / 1e6:.0f} MB), {segments} segments; df: {shutil.disk_usage(work).free / 1e9:.0f} GB free")
            t, n = median_time(lambda: floor_read_decode(repo, names), args.repeat)
            out["floor_objects_per_s"] = n / t
            t, (report, found) = median_time(lambda: fsck(repo), args.repeat)
            count = report.checked["objects"]
            assert report.clean, report.text()[-2000:]
            out["fsck_seconds"], out["fsck_objects_per_s"] = t, count / t
            print(f"  fsck: {count:,} objects in {t:.2f}s = {count / t:,.0f}/s "
                  f"(floor: read + decompress every entry {out['floor_objects_per_s']:,.0f}/s)", flush=True)
            t, (report, _) = median_time(lambda: fsck(repo, sample=0.01, seed=1), args.repeat)
            out["fsck_sample_seconds"] = t
            print(f"  fsck --sample 0.01: {t:.2f}s", flush=True)
            t, _ = median_time(lambda: gc(repo, grace=3600, dry_run=True), args.repeat)
            out["gc_dry_run_seconds"] = t
            print(f"  gc --dry-run: {t:.2f}s", flush=True)
            t, result = median_time(lambda: gc(repo, grace=3600, dry_run=True, prune=True), 1)
            out["gc_dry_run_prune_seconds"] = t
            print(f"  gc --dry-run --prune: {t:.2f}s ({sum(len(v) for v in result.pruned.values())} to prune)", flush=True)
            # The refresh of a fresh client before compaction: one GET per segment.
            t = _cold(url, work / "cold-segments", 1)
            out["cold_refresh_segments_seconds"] = t
            print(f"  cold refresh, {segments} segments: {t:.2f}s", flush=True)
            t0 = time.perf_counter()
            name = repo.compact()
            out["compact_seconds"] = time.perf_counter() - t0
            repo.compactor.retire(repo.compactor.retirable(survey(repo.blobs), grace=0))
            ck = repo.blobs.read(layout.segment_key(name))
            out["checkpoint_mb"] = len(ck) / 1e6
            print(f"  compaction: {out['compact_seconds']:.1f}s, checkpoint {len(ck) / 1e6:.0f} MB", flush=True)
        t = _cold(url, work / "cold-checkpoint", args.repeat)
        out["cold_refresh_checkpoint_seconds"] = t
        print(f"  cold refresh after compaction: {t:.2f}s (before: {out['cold_refresh_segments_seconds']:.2f}s)", flush=True)
        with Repository.open(url, index_dir=work / "ix-build", auto_compact=False) as repo:
            # The steady state of a repository gc keeps compacted: one checkpoint, not 2500 segments.
            t, (report, _) = median_time(lambda: fsck(repo), args.repeat)
            assert report.clean, report.text()[-2000:]
            count = report.checked["objects"]
            out["fsck_compacted_objects_per_s"] = count / t
            t1, _ = median_time(lambda: fsck(repo, jobs=1), 1)
            out["fsck_compacted_one_process_objects_per_s"] = count / t1
            print(f"  fsck after compaction: {count / t:,.0f}/s ({count / t1:,.0f}/s in one process)", flush=True)
            t, _ = median_time(lambda: fsck(repo, sample=0.01, seed=1), args.repeat)
            out["fsck_sample_compacted_seconds"] = t
            print(f"  fsck --sample 0.01 after compaction: {t:.2f}s", flush=True)
            floor = _copy_floor(repo, work / "copy")
            out["copy_floor_mb_s"] = floor
            t0 = time.perf_counter()
            r = repack(repo, everything=True)
            t = time.perf_counter() - t0
            out["repack_seconds"], out["repack_mb_s"] = t, r.bytes_read / 1e6 / t
            out["repack_objects_per_s"] = r.objects / t
            print(f"  repack --all: {r.bytes_read / 1e6:.0f} MB, {r.objects:,} objects in {t:.2f}s = "
                  f"{r.bytes_read / 1e6 / t:.0f} MB/s, {r.objects / t:,.0f} objects/s (floor: copying the packs "
                  f"{floor:.0f} MB/s)", flush=True)
            report, _ = fsck(repo, sample=0.01, seed=2)
            assert report.clean, report.text()[-2000:]
        if args.big_values:
            out.update(_repack_big(work, args))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _repack_big(work: Path, args) -> dict:
    """repack of a repository whose bytes are in larger values (16 KiB, packed as well)."""
    url = str(work / "big-values")
    policy = FlushPolicy(max_items=10**9, interval=10**9, background=False)
    with Repository.init(url, index_dir=work / "ix-big", policy=policy) as repo:
        for i in range(args.big_values):
            oid = hashing.hash_text(f"big value {i}")
            data = random.Random(i).randbytes(16384)  # incompressible: the pack holds 16 KiB
            payload, entries = model.value.KIND.build(oid, "builtins.bytes", "application/python-pickle", data)
            repo.add(oid, model.VALUE, payload, entries)
            if repo.pending() >= 200:
                repo.flush()
    with Repository.open(url, index_dir=work / "ix-big", auto_compact=False) as repo:
        floor = _copy_floor(repo, work / "copy-big")
        t0 = time.perf_counter()
        r = repack(repo, everything=True)
        t = time.perf_counter() - t0
    print(f"  repack --all of {args.big_values:,} values of 16 KiB: {r.bytes_read / 1e6:.0f} MB in {t:.2f}s = "
          f"{r.bytes_read / 1e6 / t:.0f} MB/s (floor: copying the packs {floor:.0f} MB/s)", flush=True)
    return {"repack_big_mb_s": r.bytes_read / 1e6 / t, "repack_big_floor_mb_s": floor}


_COLD = """
import sys, time
from objstore.repo import Repository
t0 = time.perf_counter()
with Repository.open(sys.argv[1], index_dir=sys.argv[2], auto_compact=False) as fresh:
    assert fresh.index.count("objects") > 0
print(time.perf_counter() - t0)
"""


def _cold(url: str, index_dir: Path, repeat: int) -> float:
    """A fresh client's first refresh, as one is: a new process (not this one, whose heap holds
    the whole build), timed from Repository.open to its close; the median of ``repeat``."""
    times = []
    for _ in range(repeat):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", _COLD, url, str(index_dir)], capture_output=True, text=True,
                              env=env, check=True)  # fmt: skip
        times.append(float(proc.stdout.split()[-1]))
        shutil.rmtree(index_dir, ignore_errors=True)
    return statistics.median(times)


def _copy_floor(repo: Repository, dest: Path) -> float:
    dest.mkdir()
    t0, total = time.perf_counter(), 0
    for name in repo.store.pack_names():
        data = repo.blobs.read(layout.pack_key(name))
        (dest / name).write_bytes(data)
        total += len(data)
    t = time.perf_counter() - t0
    shutil.rmtree(dest)
    return total / 1e6 / t


def run_s3(args) -> dict:
    import servers

    out: dict = {"objects": args.s3_objects}
    logs = Path(tempfile.mkdtemp(prefix="bench-maint-moto-", dir=args.workdir))
    server = servers.start_s3(logs)
    try:
        target = servers.make_target("s3", tmp_path=logs, server=server)
        print(f"s3 (moto): {args.s3_objects:,} objects at {target.url}", flush=True)
        build(target.url, target.storage_options, logs / "ix-build", args.s3_objects, args.per_flush)
        with Repository.open(target.url, target.storage_options, index_dir=logs / "ix-build", auto_compact=False) as repo:
            t, (report, _) = median_time(lambda: fsck(repo), 1)
            assert report.clean, report.text()[-2000:]
            n = report.checked["objects"]
            out["fsck_objects_per_s"] = n / t
            print(f"  fsck: {n:,} objects in {t:.2f}s = {n / t:,.0f}/s", flush=True)
            t, _ = median_time(lambda: fsck(repo, sample=0.01, seed=1), 1)
            out["fsck_sample_seconds"] = t
            print(f"  fsck --sample 0.01: {t:.2f}s", flush=True)
            t, _ = median_time(lambda: gc(repo, grace=3600, dry_run=True), 1)
            out["gc_dry_run_seconds"] = t
            print(f"  gc --dry-run: {t:.2f}s", flush=True)
            segments = len(repo.journal.names())
        out["before"] = _cold_s3(target, logs / "cold-1")
        print(f"  cold refresh, {segments} segments: {out['before']['seconds']:.2f}s, {out['before']['requests']} requests "
              f"{out['before']['calls']}", flush=True)
        with Repository.open(target.url, target.storage_options, index_dir=logs / "ix-build", auto_compact=False) as repo:
            repo.compact()
            repo.compactor.retire(repo.compactor.retirable(survey(repo.blobs), grace=0))
        out["after"] = _cold_s3(target, logs / "cold-2")
        print(f"  cold refresh after compaction: {out['after']['seconds']:.2f}s, {out['after']['requests']} requests "
              f"{out['after']['calls']}", flush=True)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(logs, ignore_errors=True)
    return out


def _cold_s3(target, index_dir: Path) -> dict:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    from objstore.fs import open_url

    fs, _ = open_url(target.url, target.storage_options)
    counter = RequestCounter(fs)
    t0 = time.perf_counter()
    with Repository.open(target.url, target.storage_options, index_dir=index_dir, auto_compact=False) as fresh:
        seconds = time.perf_counter() - t0
        assert fresh.index.count("objects") > 0
    shutil.rmtree(index_dir, ignore_errors=True)
    return {"seconds": seconds, "requests": counter.total(), "calls": dict(counter.calls)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, default=1_000_000)
    p.add_argument("--s3-objects", type=int, default=100_000)
    p.add_argument("--per-flush", type=int, default=500)
    p.add_argument("--big-values", type=int, default=20_000, help="also repack this many 16 KiB values (0: not)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", default=None, help="where the repositories go (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the repositories")
    p.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = p.parse_args()
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)  # as --workdir of the other benches
    results = {}
    if args.objects:
        results["local"] = run_local(args)
    if args.s3_objects:
        results["s3"] = run_s3(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
