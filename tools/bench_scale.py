"""Scale: what a user pays on a repository of 10^4, 10^5 and 10^6 records, and a 10^5-task run's memory.

    nice -n 10 .venv/bin/python tools/bench_scale.py                       # 10^4, 10^5, 10^6 records
    .venv/bin/python tools/bench_scale.py --records 10000 100000 --tasks 0 # the repository part only
    .venv/bin/python tools/bench_scale.py --records --tasks 10000 100000   # the redun run only
    .venv/bin/python tools/bench_scale.py --work /tmp/scale --refresh-only --tasks  # build once, keep, refresh only

Repository part. A synthetic local repository is built through the scheduler-neutral API
(``objstore.backend.Provenance``, as a scheduler records): executions of ``--per-exec`` leaf
jobs, each leaf = an argument value, a result value, a call node and a job (4 records) plus an
eval head; each execution adds its root job, root call node and execution. The default flush
policy's 5000-record flushes make the journal; compaction runs as it would for a user. Then,
per size (medians of ``--repeat``):

* refresh: a fresh client (a new index directory) opens the repository and refreshes;
* log: ``objstore log <execution id>`` of one execution (CLI subprocess, the client's index),
  beside ``objstore --version`` (the interpreter and import floor) in the same run;
* cache check: ``Provenance.cache.get_eval_cache`` of 2000 recorded eval hashes (hits) and of
  2000 unknown ones (misses), microseconds per lookup;
* fsck: ``objstore fsck --sample 0.01`` (CLI).

Every execution has the same size, so log's work is the same at every scale: its growth is the
repository's overhead. The growth column is (time at this size) / (time at the smallest).

Run part. A redun fan-out of ``--tasks`` leaves (chunks of 10^4 under one root, ObjstoreBackend
on a local repository, default policy) in a child process that samples its own peak RSS
(VmHWM) and current RSS each time another 10^4 tasks have finished.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from objstore import hashing, model  # noqa: E402
from objstore.backend import MISSING, ArgSpec, Provenance, ValueSpec  # noqa: E402
from objstore.repo import Repository  # noqa: E402


def value(obj) -> ValueSpec:
    data = pickle.dumps(obj, protocol=3)
    return ValueSpec(hashing.hash_tag_bytes("Value", data), f"builtins.{type(obj).__name__}",
                     "application/python-pickle", data)


def task_value(name: str, source: str) -> ValueSpec:
    data = pickle.dumps(("task", name, source), protocol=3)
    return ValueSpec(hashing.hash_struct(["Task", f"scale.{name}", "source", source]), "redun.Task",
                     "application/python-pickle", data, model.value.task_subtype(name, "scale", source))


def record_call(prov: Provenance, task: ValueSpec, args: list[ValueSpec], result: ValueSpec,
                children: list[str]) -> tuple[str, str]:
    args_hash = hashing.hash_arguments_from_hashes([a.value_hash for a in args], {})
    call_hash = prov.calls.record_call_node(
        task_name=f"scale.{task.subtype['name']}", task_hash=task.value_hash, args_hash=args_hash,
        result_hash=result.value_hash, child_call_hashes=children,
        args=[ArgSpec(a.value_hash, position=p) for p, a in enumerate(args)],
        subtree_task_hashes=[task.value_hash],
    )
    return args_hash, call_hash


def build(url: str, index: Path, records: int, per_exec: int) -> dict:
    """A repository of about ``records`` records; its executions and a sample of eval hashes."""
    leaf, root = task_value("leaf", "def leaf(i): ..."), task_value("main", "def main(n): ...")
    executions, evals = [], []
    written = 0
    t0 = time.perf_counter()
    with Repository.init(url, index_dir=index) as repo:
        prov = Provenance(repo)
        prov.values.record_value(leaf)
        prov.values.record_value(root)
        e = 0
        while written < records:
            ex, root_job = str(uuid.uuid4()), str(uuid.uuid4())
            prov.jobs.record_execution(ex, ["scheduler.run", f"main({e})"])
            prov.jobs.job_started(root_job, task_hash=root.value_hash, execution_id=ex, parent_id=None)
            calls, results = [], []
            for i in range(per_exec):
                arg, result = value((e, i)), value(e * per_exec + i)
                prov.values.record_value(arg)
                prov.values.record_value(result)
                args_hash, call_hash = record_call(prov, leaf, [arg], result, [])
                job = str(uuid.uuid4())
                prov.jobs.job_started(job, task_hash=leaf.value_hash, execution_id=ex, parent_id=root_job)
                prov.jobs.job_ended(job, task_hash=leaf.value_hash, execution_id=ex, parent_id=root_job,
                                    cached=False, call_hash=call_hash, args_hash=args_hash)
                eval_hash = hashing.hash_eval(leaf.value_hash, args_hash)
                prov.cache.set_eval_cache(eval_hash, result.value_hash)
                if i % 97 == 0:
                    evals.append(eval_hash)
                calls.append(call_hash)
                results.append(result.value_hash)
                prov.job_ended(root=False)
            total = value([e, per_exec])
            prov.values.record_value(total)
            args_hash, call_hash = record_call(prov, root, [value(e)], total, calls)
            prov.values.record_value(value(e))
            prov.jobs.job_ended(root_job, task_hash=root.value_hash, execution_id=ex, parent_id=None,
                                cached=False, call_hash=call_hash, args_hash=args_hash)
            prov.job_ended(root=True)
            written += 4 * per_exec + 5
            executions.append(ex)
            e += 1
        prov.close()
    return {"seconds": time.perf_counter() - t0, "records": written, "executions": executions, "evals": evals}


def cpu_now() -> float:
    """CPU seconds of this process and of its finished children (the CLI subprocesses)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def median(fn, repeat: int) -> tuple[float, float]:
    """Median (wall seconds, CPU seconds) of ``repeat`` calls: the machine is shared, and CPU
    time is what the load does not inflate."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), cpu_now()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_now() - c0)
    return statistics.median(walls), statistics.median(cpus)


def cli(*args: str, index: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "objstore.cli", "--index-dir", str(index), *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"objstore {' '.join(args)}: exit {done.returncode}: {done.stderr[-2000:]}")


def built_repository(work: Path, size: int, per_exec: int, keep: bool) -> dict:
    """Build the repository of ``size`` records under ``work``, or, when ``keep`` and a finished
    build of the same size is there (``built-<size>.json``, written last), reuse it."""
    url, index = work / f"repo-{size}", work / f"build-index-{size}"
    record = work / f"built-{size}-{per_exec}.json"
    if keep and record.exists() and (url / "objstore.json").exists():
        built = json.loads(record.read_text())
        built["reused"] = True
        return built
    for stale in (url, index, work / f"repo-{size}-compacted", work / f"build-index-{size}-compacted"):
        shutil.rmtree(stale, ignore_errors=True)
    c0 = cpu_now()
    built = build(str(url), index, size, per_exec)
    built["cpu"] = cpu_now() - c0
    if keep:
        record.write_text(json.dumps(built))
    return built


def compacted_copy(work: Path, size: int, keep: bool) -> str:
    """The repository of ``size`` records compacted, as `objstore gc` (or the writers, past
    compact_threshold) would. With ``keep``, a copy is compacted (with a copy of the builder's
    index), so the kept repository stays uncompacted for the next run."""
    url, index = work / f"repo-{size}", work / f"build-index-{size}"
    if keep:
        copy, copy_index = work / f"repo-{size}-compacted", work / f"build-index-{size}-compacted"
        if (copy / "objstore.json").exists():
            return str(copy)
        shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(copy_index, ignore_errors=True)
        shutil.copytree(url, copy)
        shutil.copytree(index, copy_index)
        url, index = copy, copy_index
    with Repository.open(str(url), index_dir=index) as repo:
        repo.compact()
    return str(url)


def measure(work: Path, size: int, args) -> dict:
    url = str(work / f"repo-{size}")
    built = built_repository(work, size, args.per_exec, keep=args.work is not None)
    out = {"records": built["records"], "build_s": built["seconds"], "build_cpu": built["cpu"],
           "reused": built.get("reused", False)}
    repeat = args.repeat if size < 500_000 else 1  # one of each at 10^6: the machine is shared
    client = work / f"client-{size}"

    def refresh():
        shutil.rmtree(client, ignore_errors=True)
        # auto_compact off: past compact_threshold (1000) journal files a client compacts in the
        # background, and close() would wait for that fold; it is not the refresh's cost.
        with Repository.open(url, index_dir=client, auto_compact=False) as repo:
            repo.refresh()

    out["journal_files"] = len(os.listdir(Path(url) / "journal"))
    out["refresh_s"], out["refresh_cpu"] = median(refresh, repeat)
    if args.refresh_only:
        url = compacted_copy(work, size, keep=args.work is not None)
        out["refresh_compacted_s"], out["refresh_compacted_cpu"] = median(refresh, repeat)
        return out
    ex = built["executions"][len(built["executions"]) // 2]
    out["log_s"], out["log_cpu"] = median(lambda: cli("--repo", url, "log", ex, index=client), repeat)
    out["cli_floor_s"], out["cli_floor_cpu"] = median(lambda: cli("--version", index=client), repeat)
    with Repository.open(url, index_dir=client) as repo:
        prov = Provenance(repo)
        hits = (built["evals"] * (2000 // max(len(built["evals"]), 1) + 1))[:2000]
        t0 = time.perf_counter()
        found = [prov.cache.get_eval_cache(h) for h in hits]
        out["hit_us"] = (time.perf_counter() - t0) / len(hits) * 1e6
        assert all(f is not MISSING for f in found), "a recorded eval head was not found"
        misses = [hashing.hash_text(f"unknown {i}") for i in range(2000)]
        t0 = time.perf_counter()
        for h in misses:
            prov.cache.get_eval_cache(h)
        out["miss_us"] = (time.perf_counter() - t0) / len(misses) * 1e6
    out["fsck_s"], out["fsck_cpu"] = median(lambda: cli("--repo", url, "fsck", "--sample", "0.01", index=client),
                                            repeat)
    url = compacted_copy(work, size, keep=args.work is not None)
    out["refresh_compacted_s"], out["refresh_compacted_cpu"] = median(refresh, repeat)
    if args.work is None:
        shutil.rmtree(url, ignore_errors=True)
    return out


RUN_CHILD = textwrap.dedent(
    '''
    import json, sys, threading, time
    from redun import Scheduler, task
    from redun.config import Config
    from objstore.redun import ObjstoreBackend

    redun_namespace = "scale"
    done = [0]


    @task()
    def leaf(i: int) -> int:
        done[0] += 1
        return i + 1


    @task()
    def chunk(start: int, n: int) -> list:
        return [leaf(i) for i in range(start, start + n)]


    @task()
    def main(n: int, step: int) -> list:
        return [chunk(s, min(step, n - s)) for s in range(0, n, step)]


    def status():
        """MiB: peak RSS, RSS, and of RSS the heap (anonymous) and mapped files (the LMDB index)."""
        fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return tuple(int(fields[f].split()[0]) // 1024 for f in ("VmHWM", "VmRSS", "RssAnon", "RssFile"))


    samples, stop = [], threading.Event()


    def sampler(step):
        mark = step
        while not stop.wait(0.05):
            if done[0] >= mark:
                samples.append((done[0], time.perf_counter() - t0, *status()))
                mark += step


    url, index, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if sys.argv[4] == "floor":  # redun's own memory: the do-nothing backend of bench_redun
        sys.path.insert(0, sys.argv[5])
        from bench_redun import FloorBackend
        backend = FloorBackend()
    else:
        backend = ObjstoreBackend(url, index_dir=index, create=True)
    scheduler = Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend)
    t0 = time.perf_counter()
    threading.Thread(target=sampler, args=(10000,), daemon=True).start()
    result = scheduler.run(main(n, 10000))
    seconds = time.perf_counter() - t0
    stop.set()
    getattr(backend, "close", lambda: None)()
    assert [x for part in result for x in part] == [i + 1 for i in range(n)]
    print(json.dumps({"tasks": n, "seconds": seconds, "samples": samples, "end": status()}))
    '''
)


def run_tasks(work: Path, n: int, backend: str = "objstore") -> dict:
    script = work / "scale_run.py"
    script.write_text(RUN_CHILD)
    done = subprocess.run([sys.executable, str(script), str(work / f"run-{n}"), str(work / f"run-index-{n}"), str(n),
                           backend, str(ROOT / "tools")], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the {n}-task run failed: {done.stderr[-3000:]}")
    shutil.rmtree(work / f"run-{n}", ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="*", default=[10**4, 10**5, 10**6])
    parser.add_argument("--tasks", type=int, nargs="*", default=[10**4, 10**5])
    parser.add_argument("--floor", type=int, nargs="*", default=[],
                        help="the same runs on bench_redun's do-nothing backend (redun's own memory)")
    parser.add_argument("--per-exec", type=int, default=1000, help="leaf jobs per execution (default 1000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--work", type=Path,
                        help="keep the built repositories in this directory and reuse them on the next run "
                             "(a 10^6 build takes minutes); the compaction runs on a kept copy")
    parser.add_argument("--refresh-only", action="store_true",
                        help="measure only the fresh client's refresh, uncompacted and compacted")
    args = parser.parse_args(argv)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve() if args.work is not None else Path(tempfile.mkdtemp(prefix="objstore-scale-"))
    results: dict = {"load": os.getloadavg(), "sizes": [], "runs": []}
    try:
        first = None
        print("wall seconds (CPU seconds); log's floor is `objstore --version`", flush=True)
        if args.refresh_only:
            print(f"{'records':>9} {'files':>5} {'build':>13} {'refresh':>13} {'compacted':>11}", flush=True)
        else:
            print(f"{'records':>9} {'files':>5} {'build':>13} {'refresh':>13} {'compacted':>11} {'log':>11} "
                  f"{'floor':>11} {'hit':>5} {'miss':>5} {'fsck 1%':>13}  CPU growth: refresh log-floor fsck "
                  f"(x records)", flush=True)
        for size in args.records:
            r = measure(work, size, args)
            results["sizes"].append(r)
            first = first or r
            grow = r["records"] / first["records"]
            if args.refresh_only:
                print(f"{r['records']:>9,} {r['journal_files']:>5} {r['build_s']:>6.1f}({r['build_cpu']:>5.1f}) "
                      f"{r['refresh_s']:>6.2f}({r['refresh_cpu']:>5.2f}) {r['refresh_compacted_s']:>5.2f}"
                      f"({r['refresh_compacted_cpu']:>4.2f})  refresh CPU: {r['refresh_cpu'] / r['records'] * 1e6:.1f} "
                      f"us/record, growth {r['refresh_cpu'] / first['refresh_cpu']:.1f} ({grow:.0f}x)"
                      f"{'  (kept build)' if r['reused'] else ''}", flush=True)
                continue
            log_cost = max(r["log_cpu"] - r["cli_floor_cpu"], 1e-3)
            first_log = max(first["log_cpu"] - first["cli_floor_cpu"], 1e-3)
            print(f"{r['records']:>9,} {r['journal_files']:>5} {r['build_s']:>6.1f}({r['build_cpu']:>5.1f}) "
                  f"{r['refresh_s']:>6.2f}({r['refresh_cpu']:>5.2f}) {r['refresh_compacted_s']:>5.2f}"
                  f"({r['refresh_compacted_cpu']:>4.2f}) {r['log_s']:>5.2f}({r['log_cpu']:>4.2f}) "
                  f"{r['cli_floor_s']:>5.2f}({r['cli_floor_cpu']:>4.2f}) {r['hit_us']:>3.0f}us {r['miss_us']:>3.0f}us "
                  f"{r['fsck_s']:>6.2f}({r['fsck_cpu']:>5.2f})  {r['refresh_cpu'] / first['refresh_cpu']:.1f} "
                  f"{log_cost / first_log:.1f} {r['fsck_cpu'] / first['fsck_cpu']:.1f} ({grow:.0f}x)", flush=True)
        if args.tasks or args.floor:
            print(f"\n{'backend':8} {'tasks':>7} {'seconds':>8} {'ms/task':>7}   peak RSS MiB after each 10^4 tasks "
                  f"(heap+mapped files at the last)", flush=True)
        for backend, n in [("objstore", n) for n in args.tasks] + [("floor", n) for n in args.floor]:
            r = run_tasks(work, n, backend)
            r["backend"] = backend
            results["runs"].append(r)
            peaks = " ".join(str(s[2]) for s in r["samples"])
            last = r["samples"][-1] if r["samples"] else r["end"]
            print(f"{backend:8} {n:>7,} {r['seconds']:>7.1f}s {r['seconds'] / n * 1e3:>7.2f}   {peaks} "
                  f"({last[-2]}+{last[-1]})  end: peak {r['end'][0]}, now {r['end'][1]}", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(f"\nload average before/after: {results['load'][0]:.1f} / {results['load_after'][0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
