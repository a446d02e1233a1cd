#!/usr/bin/env python
"""Requests and dollars per job of redun on objstore on S3 (moto on loopback), counted at the server.

    python tools/bench_requests.py                  # fan-out 1000 and compile-300, first + cached runs
    python tools/bench_requests.py --n 200 --files 60      # quick look
    python tools/bench_requests.py --speed --repeat 3      # also time S3 vs redun's sqlite on local disk

The tool starts its own moto_server (as the test suite's fixtures do) with moto's request
recorder on, and counts every HTTP request the server receives, by the kind S3 bills
(PUT, COPY, POST, LIST at $0.005 per 1,000; GET, ranged GET, HEAD and others at $0.0004 per
1,000; DELETE free: S3 Standard list prices, us-east-1) and by the part of the repository it
touched (objects/pack, journal, evals, ...).

Workloads, each on a fresh bucket:
  fanout(N)    [add(i, 1) for i in range(N)]: N+1 jobs
  compile(F)   a compile-style build: F source Files compiled one task each into object Files
               (a Python stand-in for gcc, so the count is the backend's, not the compiler's),
               linked into F/30 programs and a root: F + F/30 + 1 jobs
Runs of each:
  first        a new backend on an empty repository (one `redun run`)
  cached       a new backend, same repository and index directory (a second `redun run` on
               the same machine): every job a cache hit
  cached-cold  a new backend with an EMPTY index directory (a second machine): its first
               refresh reads the journal, then every job a cache hit
"load" is what opening the backend costs (objstore.json, the first refresh); "run" is the
scheduler's run and the close (final flush). Requests per job = run / jobs: what grows with
the workflow; the load is a constant per process.

--speed times, side by side in one run (medians of --repeat), redun's sqlite backend on a
local file, objstore on moto S3 (recorder off) and objstore on a local directory (for what S3
adds), first and cached fan-out runs.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

import fsspec  # noqa: E402
import s3_requests  # noqa: E402
import servers  # noqa: E402
from redun import File, Scheduler, task  # noqa: E402
from redun.backends.db import RedunBackendDb  # noqa: E402
from redun.config import Config  # noqa: E402

from objstore.redun import ObjstoreBackend  # noqa: E402

redun_namespace = "objstore_bench_requests"
CONFIG = Config({"scheduler": {"ignore_warnings": "namespace"}})
LINK_GROUP = 30
BODIES = [0]  # task bodies run (a cached run must run none)


@task()
def add(a: int, b: int) -> int:
    BODIES[0] += 1
    return a + b


@task()
def fanout(n: int) -> list:
    return [add(i, 1) for i in range(n)]


@task()
def compile_c(c_file: File) -> File:
    """Stands in for `gcc -c`: an object file derived from the source's bytes."""
    BODIES[0] += 1
    out = File(c_file.path[: -len(".c")] + ".o")
    out.write(b"OBJ\0" + c_file.read("rb")[::-1], "wb")
    return out


@task()
def link(prog_path: str, o_files: list) -> File:
    out = File(prog_path)
    out.write(b"".join(o.read("rb") for o in o_files), "wb")
    return out


@task()
def build(prog_path: str, c_files: list) -> File:
    return link(prog_path, [compile_c(c) for c in c_files])


@task()
def build_all(progs: dict) -> list:
    return [build(path, files) for path, files in sorted(progs.items())]


def make_sources(work: Path, count: int) -> dict[str, list[File]]:
    """``count`` C files in groups of LINK_GROUP, one program per group."""
    work.mkdir(parents=True, exist_ok=True)
    progs: dict[str, list[File]] = {}
    for i in range(count):
        src = work / f"src{i:04d}.c"
        src.write_text(f"int f{i}(void) {{ return {i}; }}\n")
        progs.setdefault(str(work / f"prog{i // LINK_GROUP:03d}"), []).append(File(str(src)))
    return progs


@dataclass
class Workload:
    name: str
    expr: Callable[[], Any]
    jobs: int
    check: Callable[[Any], bool]


def fanout_workload(n: int) -> Workload:
    return Workload(f"fanout-{n}", lambda: fanout(n), n + 1, lambda r: r == [i + 1 for i in range(n)])


def compile_workload(work: Path, files: int) -> Workload:
    progs = make_sources(work, files)
    return Workload(f"compile-{files}", lambda: build_all(progs), files + 2 * len(progs) + 1,
                    lambda r: len(r) == len(progs) and all(Path(f.path).exists() for f in r))


class Repo:
    """A fresh bucket on the server; backends on it with a given index directory."""

    def __init__(self, server: servers.ServerProcess, tmp: Path):
        self.options = servers.s3_options(server)
        bucket = f"bkt-{uuid.uuid4().hex[:20]}"
        fsspec.filesystem("s3", **self.options).mkdir(bucket)
        self.url = f"s3://{bucket}/repo"
        self.tmp = tmp

    def backend(self, index: str) -> ObjstoreBackend:
        return ObjstoreBackend(self.url, storage_options=self.options, index_dir=str(self.tmp / index), create=True)


def run_once(backend: Any, workload: Workload) -> tuple[int, float]:
    """(jobs the scheduler recorded, seconds) of one run, closing the backend (a process exit)."""
    started = 0
    record_job_start = backend.record_job_start

    def counting(job: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal started
        started += 1
        return record_job_start(job, *args, **kwargs)

    backend.record_job_start = counting
    scheduler = Scheduler(config=CONFIG, backend=backend)
    BODIES[0] = 0
    t0 = time.perf_counter()
    result = scheduler.run(workload.expr())
    if hasattr(backend, "close"):
        backend.close()
    elapsed = time.perf_counter() - t0
    if not workload.check(result):
        raise SystemExit(f"{workload.name}: wrong result {result!r:.80}")
    return started, elapsed


@dataclass
class Row:
    workload: str
    run: str
    jobs: int
    load: s3_requests.Counts
    body: s3_requests.Counts


def count_runs(log: s3_requests.RequestLog, server: servers.ServerProcess, tmp: Path, workload: Workload) -> list[Row]:
    repo = Repo(server, tmp / workload.name)
    rows = []
    for run, index in (("first", "index"), ("cached", "index"), ("cached-cold", f"index-{uuid.uuid4().hex[:6]}")):
        with log.measure() as load:
            backend = repo.backend(index)
            backend.load()
        with log.measure() as body:
            jobs, _ = run_once(backend, workload)
        if jobs != workload.jobs:
            print(f"  note: {workload.name} {run}: {jobs} jobs (expected {workload.jobs})", file=sys.stderr)
        if run != "first" and BODIES[0]:
            raise SystemExit(f"{workload.name} {run}: {BODIES[0]} task bodies ran in a cached run")
        rows.append(Row(workload.name, run, jobs, load, body))
        print(f"  counted {workload.name} {run}", file=sys.stderr, flush=True)
    return rows


def print_counts(rows: list[Row]) -> None:
    kinds = [k for k in s3_requests.KINDS if any(r.body.by_kind[k] or r.load.by_kind[k] for r in rows)]
    print("\nS3 requests per job (moto, counted at the server); load = opening the backend, once per process")
    head = f"{'workload':<14}{'run':<13}{'jobs':>6}{'load':>6}" + "".join(f"{k:>10}" for k in kinds)
    head += f"{'req/job':>9}{'$/M jobs':>10}"
    print(head)
    print("-" * len(head))
    for r in rows:
        line = f"{r.workload:<14}{r.run:<13}{r.jobs:>6}{r.load.total:>6}"
        line += "".join(f"{r.body.by_kind[k] / r.jobs:>10.3f}" for k in kinds)
        line += f"{r.body.total / r.jobs:>9.3f}{r.body.dollars() / r.jobs * 1e6:>10.2f}"
        print(line)
    print("\nwhere they went (run requests, by kind and part of the repository; load in brackets)")
    for r in rows:
        parts = sorted(set(r.body.by_kind_area) | set(r.load.by_kind_area))
        text = ", ".join(
            f"{kind} {area} {r.body.by_kind_area[(kind, area)]}"
            + (f" [{r.load.by_kind_area[(kind, area)]}]" if r.load.by_kind_area[(kind, area)] else "")
            for kind, area in parts
        )
        print(f"  {r.workload} {r.run}: {text}")
    print(f"\nprices: PUT/COPY/POST/LIST ${s3_requests.PRICE_TIER1} per 1,000; GET/HEAD/other "
          f"${s3_requests.PRICE_TIER2} per 1,000; DELETE free (S3 Standard, us-east-1 list prices)")


def speed(server: servers.ServerProcess, tmp: Path, n: int, repeat: int) -> None:
    """sqlite on local disk vs objstore on moto S3: fan-out first and cached, medians."""
    results: dict[str, list[tuple[float, float]]] = {"sqlite": [], "objstore-s3": [], "objstore-local": []}
    workload = fanout_workload(n)
    for i in range(repeat):
        for name in results:
            d = tmp / f"speed-{name}-{i}"
            d.mkdir(parents=True)
            if name == "sqlite":
                def make(d: Path = d) -> Any:
                    b = RedunBackendDb(db_uri=f"sqlite:///{d}/redun.db")
                    b.load(migrate=True)
                    return b
            elif name == "objstore-local":
                def make(d: Path = d) -> Any:
                    b = ObjstoreBackend(str(d / "repo"), index_dir=str(d / "index"), create=True)
                    b.load()
                    return b
            else:
                repo = Repo(server, d)

                def make(repo: Repo = repo) -> Any:
                    b = repo.backend("index")
                    b.load()
                    return b
            _, first = run_once(make(), workload)
            _, cached = run_once(make(), workload)
            results[name].append((first, cached))
        print(f"  timed round {i + 1}", file=sys.stderr, flush=True)
    med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in results.items()}
    print(f"\nspeed, fan-out N={n}: seconds per run (median of {repeat}; cached = new backend, same store)")
    print(f"{'run':<10}{'sqlite (local file)':>22}{'objstore (moto S3)':>22}{'sqlite/objstore':>18}"
          f"{'objstore (local dir)':>22}{'S3/local':>10}")
    for j, run in enumerate(("first", "cached")):
        s, o, loc = med["sqlite"][j], med["objstore-s3"][j], med["objstore-local"][j]
        print(f"{run:<10}{s:>22.3f}{o:>22.3f}{s / o:>17.2f}x{loc:>22.3f}{o / loc:>9.2f}x")
    print("targets: first run faster than sqlite (> 1x); cached >= 3x faster")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="fan-out width (default 1000)")
    p.add_argument("--files", type=int, default=300, help="source files of the compile workload (default 300)")
    p.add_argument("--speed", action="store_true", help="also time sqlite vs objstore on S3")
    p.add_argument("--speed-only", action="store_true", help="only the timing")
    p.add_argument("--repeat", type=int, default=3, help="timing rounds; the median is reported")
    args = p.parse_args(argv)
    logging.getLogger("redun").setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench-requests-"))
    server, log = s3_requests.start_counting_s3(tmp)
    try:
        if not args.speed_only:
            rows = count_runs(log, server, tmp, fanout_workload(args.n))
            rows += count_runs(log, server, tmp, compile_workload(tmp / "src", args.files))
            print_counts(rows)
        if args.speed or args.speed_only:
            speed(server, tmp, args.n, args.repeat)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
