#!/usr/bin/env python
"""redun on objstore vs redun on sqlite, measured in one run on this machine.

    python tools/bench_redun.py                    # N=1000 fan-out, chain 200, objstore at 5000
    python tools/bench_redun.py --sqlite-5000      # also sqlite at N=5000 (slow: minutes)
    python tools/bench_redun.py --n 200 --chain 50 --scale 1000   # quick look
    python tools/bench_redun.py --repeat 3         # median of 3 runs per cell (what the README reports)

Backends, each on a fresh temp dir:
  floor             an in-memory backend that does the minimum the scheduler needs (hashes,
                    eval cache, CSE): the scheduler's own cost, i.e. the best any backend can do
  sqlite            redun's RedunBackendDb on a sqlite file (redun's defaults)
  objstore          ObjstoreBackend on a local directory repository (default: OS-buffered)
  objstore-durable  the same with durable=True (fsync per flush)

Workloads (reference/redun-backend-spec.md §11): fanout(N) = [add(i, 1) for i in range(N)]
(N+1 jobs) first run and fully cached rerun; chain(0, C) = a recursive task, C+1 strictly
dependent jobs, first and cached; per-task cost at N=scale vs N. A cached run uses a new
backend instance on the same repository/database, as a second `redun run` would. Every run is
checked: results are right, and a cached run executes no task body.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from redun import Scheduler, task
from redun.backends.base import RedunBackend
from redun.backends.db import RedunBackendDb
from redun.config import Config
from redun.hashing import hash_call_node
from redun.task import CacheResult, CacheScope

from objstore.redun import ObjstoreBackend

redun_namespace = "objstore_bench"

_calls = 0
_calls_lock = threading.Lock()


def _count() -> None:
    global _calls
    with _calls_lock:
        _calls += 1


@task()
def add(a: int, b: int) -> int:
    _count()
    return a + b


@task()
def fanout(n: int) -> list:
    _count()
    return [add(i, 1) for i in range(n)]


@task()
def chain(x: int, k: int):
    # Recursive, not a loop of nested expressions: a 200-deep lazy expression overflows the
    # pickler when redun caches it (spec §12.13).
    _count()
    return x if k == 0 else chain(x + 1, k - 1)


class FloorBackend(RedunBackend):
    """The least a backend can do and still give the scheduler correct answers."""

    def __init__(self) -> None:
        super().__init__()
        self.evals: dict[str, Any] = {}
        self.cse: dict[tuple, tuple[str, Any]] = {}
        self.values: dict[str, Any] = {}
        self.jobs: dict[str, dict] = {}
        self.call_results: dict[str, str] = {}

    def load(self, migrate: Optional[bool] = None) -> None:
        pass

    def record_value(self, value: Any, data: Optional[bytes] = None) -> str:
        h = self.type_registry.get_hash(value)
        self.values[h] = value
        return h

    def get_value(self, value_hash: str):
        return (self.values[value_hash], True) if value_hash in self.values else (None, False)

    def record_call_node(self, task_name, task_hash, args_hash, expr_args, eval_args, result_hash,
                         child_call_hashes, subtree_tasks) -> str:
        call_hash = hash_call_node(task_hash, args_hash, result_hash, child_call_hashes)
        self.call_results[call_hash] = result_hash
        return call_hash

    def get_subtree_tasks(self, call_hash: str) -> set[str]:
        return set()

    def record_call_node_context(self, call_hash, context_hash, context) -> str:
        return context_hash or self.record_value(context)

    def check_cache(self, task_hash, args_hash, eval_hash, execution_id, scheduler_task_hashes,
                    cache_scope, check_valid, context_hash=None, allowed_cache_results=None):
        allowed = allowed_cache_results or set(CacheResult)
        if cache_scope == CacheScope.NONE:
            return None, None, CacheResult.MISS
        hit = self.cse.get((execution_id, task_hash, args_hash))
        if hit and CacheResult.CSE in allowed:
            return hit[1], hit[0], CacheResult.CSE
        if cache_scope == CacheScope.BACKEND and CacheResult.SINGLE in allowed and eval_hash in self.evals:
            return self.evals[eval_hash], None, CacheResult.SINGLE
        return None, None, CacheResult.MISS

    def set_eval_cache(self, eval_hash, task_hash, args_hash, value, value_hash=None) -> None:
        self.evals[eval_hash] = value

    def explain_cache_miss(self, task, args_hash):
        return None

    def advance_handle(self, handles, child_handle):
        pass

    def rollback_handle(self, handle) -> None:
        pass

    def is_valid_handle(self, handle) -> bool:
        return True

    def record_execution(self, exec_id, args) -> None:
        pass

    def record_updated_time(self, execution_id) -> None:
        pass

    def record_job_start(self, job, now=None):
        self.jobs[job.id] = {"job_id": job.id, "execution_id": job.execution.id,
                             "parent_id": job.parent_job.id if job.parent_job else None}

    def record_job_end(self, job, now=None, status=None) -> None:
        if job.call_hash:
            result = self.values[self.call_results[job.call_hash]]
            self.cse[(job.execution.id, job.task.hash, job.args_hash)] = (job.call_hash, result)

    def get_job(self, job_id):
        return self.jobs.get(job_id)

    def record_tags(self, entity_type, entity_id, tags, parents=(), update=False, new=False):
        return []

    def delete_tags(self, entity_id, tags, keys=()):
        return []

    def update_tags(self, entity_type, entity_id, old_keys, new_tags):
        return []

    def get_tags(self, entity_ids):
        return {}

    def get_records(self, ids, sorted=True):
        return []

    def put_records(self, records) -> int:
        return 0

    def iter_record_ids(self, root_ids):
        return iter(())


class Bench:
    """One backend kind: make(dir, first) -> backend; each workload in its own directory."""

    def __init__(self, name: str, make: Callable[[Path, bool], RedunBackend]):
        self.name = name
        self.make = make


def _sqlite(d: Path, first: bool) -> RedunBackendDb:
    b = RedunBackendDb(db_uri=f"sqlite:///{d}/redun.db")
    b.load(migrate=True)
    return b


def _objstore(durable: bool):
    def make(d: Path, first: bool) -> ObjstoreBackend:
        b = ObjstoreBackend(str(d / "repo"), index_dir=str(d / "index"), durable=durable, create=True)
        b.load()
        return b
    return make


_floor_instances: dict[Path, FloorBackend] = {}


def _floor(d: Path, first: bool) -> FloorBackend:
    # Memory only: the "second process" has to be the same instance, or nothing would be cached.
    return _floor_instances.setdefault(d, FloorBackend())


BENCHES = {
    "floor": Bench("floor", _floor),
    "sqlite": Bench("sqlite", _sqlite),
    "objstore": Bench("objstore", _objstore(False)),
    "objstore-durable": Bench("objstore-durable", _objstore(True)),
}


def timed_run(backend: RedunBackend, expr, expected, executed: Optional[int]) -> float:
    global _calls
    scheduler = Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}),
                          backend=backend)
    _calls = 0
    t0 = time.perf_counter()
    result = scheduler.run(expr)
    if hasattr(backend, "close"):
        backend.close()  # a process exit: buffered provenance is flushed and counted
    elapsed = time.perf_counter() - t0
    if result != expected:
        raise SystemExit(f"wrong result {result!r:.80} != {expected!r:.80}")
    if executed is not None and _calls != executed:
        raise SystemExit(f"expected {executed} task bodies to run, {_calls} did")
    return elapsed


def measure(bench: Bench, workload: str, size: int, tmp: Path, repeat: int = 1) -> tuple[float, float]:
    """(first, cached) seconds per job: the median of ``repeat`` runs, each on a fresh store.

    One run of a workload is a second or two, and this shared 2-core machine swings ±30 %
    between two such runs; a median of a few is what a ratio should be built from.
    """
    runs = [_measure_once(bench, workload, size, tmp / f"run{i}") for i in range(repeat)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def _measure_once(bench: Bench, workload: str, size: int, tmp: Path) -> tuple[float, float]:
    d = tmp / f"{bench.name}-{workload}-{size}"
    d.mkdir(parents=True)
    if workload == "fanout":
        expr, expected, jobs = fanout(size), [i + 1 for i in range(size)], size + 1
    else:
        expr, expected, jobs = chain(0, size), size, size + 1
    first = timed_run(bench.make(d, True), expr, expected, jobs)
    cached = timed_run(bench.make(d, False), expr, expected, 0)
    return first / jobs, cached / jobs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="fan-out width (default 1000)")
    p.add_argument("--chain", type=int, default=200, help="chain length (default 200)")
    p.add_argument("--scale", type=int, default=5000, help="large fan-out for the scaling row")
    p.add_argument("--sqlite-5000", action="store_true", help="also run sqlite at --scale (slow)")
    p.add_argument("--backends", default="floor,sqlite,objstore,objstore-durable")
    p.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is reported")
    args = p.parse_args(argv)
    logging.getLogger("redun").setLevel(logging.WARNING)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    names = args.backends.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-redun-"))
    rows: dict[str, dict[str, float]] = {}
    try:
        for name in names:
            bench = BENCHES[name]
            r = rows.setdefault(name, {})
            r["fanout first"], r["fanout cached"] = measure(bench, "fanout", args.n, tmp, args.repeat)
            r["chain first"], r["chain cached"] = measure(bench, "chain", args.chain, tmp, args.repeat)
            if name != "sqlite" or args.sqlite_5000:
                r[f"fanout first N={args.scale}"], r[f"fanout cached N={args.scale}"] = measure(
                    bench, "fanout", args.scale, tmp / "scale", args.repeat)  # its own dirs, even at --scale = --n
            print(f"  measured {name}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    metrics = ["fanout first", "fanout cached", "chain first", "chain cached",
               f"fanout first N={args.scale}", f"fanout cached N={args.scale}"]
    print(f"\nredun backends, ms per job (fan-out N={args.n}, chain {args.chain}; "
          f"cached = new backend instance on the same store; median of {args.repeat})")
    head = f"{'workload':<26}" + "".join(f"{n:>18}" for n in names)
    ratio_cols = [n for n in names if n.startswith("objstore")] if "sqlite" in names else []
    head += "".join(f"{'sqlite/' + n:>26}" for n in ratio_cols)
    print(head)
    print("-" * len(head))
    for m in metrics:
        line = f"{m:<26}"
        for n in names:
            v = rows[n].get(m)
            line += f"{v * 1000:>18.2f}" if v is not None else f"{'-':>18}"
        for n in ratio_cols:
            s, o = rows["sqlite"].get(m), rows[n].get(m)
            line += f"{s / o:>25.1f}x" if s is not None and o else f"{'-':>26}"
        print(line)
    print()
    for n in names:
        big = rows[n].get(f"fanout first N={args.scale}")
        if big is not None:
            print(f"{n}: per-job first-run cost at N={args.scale} / N={args.n} = "
                  f"{big / rows[n]['fanout first']:.2f} (target <= 1.25 for objstore)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
