#!/usr/bin/env python
"""Query speed on a repository of 10^5 jobs, measured by hand (medians of repeats, one run).

    python tools/bench_query.py                         # 10 executions x 10^4 jobs (builds once, minutes)
    python tools/bench_query.py --jobs 20000 --repeat 3 # a quicker look
    python tools/bench_query.py --workdir /tmp/bq       # keep (and reuse) the repositories there

The repository is recorded through the public API: redun's Scheduler on ObjstoreBackend runs a
fan-out workflow (every 10th job returns a File, a last job takes a list of Files), once per
execution. redun's own sqlite database of the same records is made by `redun import` of
`redun export` (read through objstore's replica), so both hold exactly the same records.

Measured (the issue's targets in brackets), each a command in a subprocess as a user runs it,
except the replica builds, which time Replica.sync itself:
  objstore log                  recent executions                        [< 0.3 s]
  objstore log EXEC             the job tree of a 10^4-job execution     [< 1 s]
  objstore log PATH             producers / consumers of one File        [< 0.5 s]
  replica first build           records/s                                [>= 20,000/s]
  replica incremental           after one more run (--more jobs)         [< 1 s]
  redun log (replica / sqlite)  the same command on both                 [<= 2x]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKFLOW = '''
from redun import File, task

redun_namespace = "bench_query"


@task()
def work(i: int, seed: int):
    if i % 10 == 0:
        f = File(f"out/{seed}/{i}.txt")
        f.write(str(i))
        return f
    return i * seed


@task()
def gather(files: list) -> int:
    return len(files)


@task()
def main(n: int, seed: int) -> list:
    results = [work(i, seed) for i in range(n)]
    return [gather(results[::10]), results]
'''

BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


CPU: list[float] = []  # CPU seconds (user + system) of the last timed command's runs


def timed(cmd: list[str], cwd: Path, env: dict[str, str], repeat: int) -> tuple[float, str]:
    """Median wall time of ``repeat`` runs (after one warm-up), and the last output. The median
    CPU time of the runs goes to CPU[-1]: on a loaded machine wall time also counts waiting."""
    out = run(cmd, cwd, env).stdout
    times, cpu = [], []
    for _ in range(repeat):
        before = os.times()
        t0 = time.perf_counter()
        out = run(cmd, cwd, env).stdout
        times.append(time.perf_counter() - t0)
        after = os.times()
        cpu.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
    CPU.append(statistics.median(cpu))
    return statistics.median(times), out


def record(project: Path, env: dict[str, str], executions: int, per_exec: int, first_seed: int = 1) -> float:
    t0 = time.perf_counter()
    for seed in range(first_seed, first_seed + executions):
        run([str(BIN / "redun"), "run", "wf.py", "main", "--n", str(per_exec), "--seed", str(seed)], project, env)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=100_000, help="jobs in the repository (default 10^5)")
    p.add_argument("--executions", type=int, default=10, help="executions they come in (default 10)")
    p.add_argument("--more", type=int, default=1000, help="jobs of the one more run (incremental replica)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per command (median)")
    p.add_argument("--workdir", help="keep the repositories here (reused when present)")
    args = p.parse_args()
    per_exec = max(1, args.jobs // args.executions)

    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-query-"))
    project, sq = base / "objstore", base / "sqlite"
    # PYTHONDONTWRITEBYTECODE would recompile every module on every command: an installed
    # package has its bytecode, so the commands are timed with it.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OBJSTORE_", "REDUN_")) and k != "PYTHONDONTWRITEBYTECODE"}  # fmt: skip
    env.update(HOME=str(base / "home"), PATH=f"{BIN}:{env.get('PATH', '')}")
    objstore = [sys.executable, "-m", "objstore.cli"]
    marker = base / f"built-{args.jobs}-{args.executions}"
    if not marker.exists():
        shutil.rmtree(base, ignore_errors=True)
        for d in (project, sq):
            d.mkdir(parents=True)
            (d / "wf.py").write_text(WORKFLOW)
            (d / ".redun").mkdir()
            (d / ".redun" / "redun.ini").write_text("[scheduler]\nignore_warnings = namespace\n")
        run(objstore + ["init", "--redun"], project, env)
        print(f"recording {args.executions} executions x {per_exec} jobs ...", flush=True)
        print(f"  recorded in {record(project, env, args.executions, per_exec):.1f} s", flush=True)
        export = base / "records.jsonl"
        run([str(BIN / "redun"), "export", "-f", str(export)], project, env)
        t0 = time.perf_counter()
        run([str(BIN / "redun"), "init"], sq, env)
        (sq / ".redun" / "redun.ini").write_text("[scheduler]\nignore_warnings = namespace\n")
        run([str(BIN / "redun"), "import", "-f", str(export)], sq, env)
        print(f"  redun import into sqlite: {time.perf_counter() - t0:.1f} s", flush=True)
        marker.touch()

    executions = json.loads(run(objstore + ["log", "--json", "--limit", "0"], project, env).stdout)
    # The newest of the big executions (a rerun of this tool adds one small "one more run" each time).
    newest = next(e["id"] for e in executions if f"--n {per_exec} " in " ".join(e["args"]) + " ")
    tree = json.loads(run(objstore + ["log", newest, "--json"], project, env).stdout)
    jobs = tree["execution"]["counts"]["total"]
    path = f"out/{args.executions}/0.txt"
    results: list[tuple[str, float, str]] = []

    t, _ = timed(objstore + ["log"], project, env, args.repeat)
    results.append((f"objstore log (recent executions; CPU {CPU[-1]:.3f} s)", t, "< 0.3 s"))
    t, _ = timed(objstore + ["log", newest], project, env, args.repeat)
    results.append((f"objstore log EXEC (job tree, {jobs} jobs; CPU {CPU[-1]:.3f} s)", t, "< 1 s"))
    t, out = timed(objstore + ["log", path], project, env, args.repeat)
    assert "Produced by Job" in out, out[:500]
    results.append((f"objstore log {path} (CPU {CPU[-1]:.3f} s)", t, "< 0.5 s"))
    t, _ = timed(objstore + ["--version"], project, env, args.repeat)
    results.append((f"objstore --version (Python start, for scale; CPU {CPU[-1]:.3f} s)", t, "-"))

    code = (
        "import sys, time, json\n"
        "from objstore.redun.config import resolve_url\n"
        "from objstore.backend import Provenance\n"
        "from objstore.repo import Repository\n"
        "from objstore.redun.replica import Replica\n"
        "repo = Repository.open(sys.argv[1])\n"
        "r = Replica(Provenance(repo))\n"
        "if sys.argv[2] == 'first':\n"
        "    r.path.unlink(missing_ok=True)\n"
        "t = time.perf_counter(); c = time.process_time(); n = r.sync(); dt = time.perf_counter() - t\n"
        "print(json.dumps({'records': n, 'seconds': dt, 'cpu': time.process_time() - c,\n"
        "                  **{k: v for k, v in r.last_sync.items() if k != 'seconds'}}))\n"
        "r.close(); repo.close()\n"
    )
    builds = []
    for _ in range(max(1, min(args.repeat, 3))):
        builds.append(json.loads(run([sys.executable, "-c", code, str(project / ".objstore"), "first"], project, env).stdout))
    first = sorted(builds, key=lambda b: b["seconds"])[len(builds) // 2]
    results.append((f"replica first build: {first['records']} records in {first['seconds']:.2f} s (CPU {first['cpu']:.2f} s)",
                    first["records"] / first["seconds"], ">= 20,000 records/s"))  # fmt: skip

    # redun log on the replica and on redun's own sqlite: the same records.
    for form in (["log"], ["log", "--exec"], ["log", "--task"]):
        a, _ = timed([str(BIN / "redun"), *form, "--no-pager"], project, env, args.repeat)
        b, _ = timed([str(BIN / "redun"), *form, "--no-pager"], sq, env, args.repeat)
        results.append((f"redun {' '.join(form)}: replica {a:.2f} s / sqlite {b:.2f} s", a / b, "<= 2x"))

    # One more run, then the replica catches up incrementally.
    record(project, env, 1, args.more, first_seed=10_000 + int(time.time()) % 1_000_000)  # new work each time
    more = json.loads(run([sys.executable, "-c", code, str(project / ".objstore"), "incremental"], project, env).stdout)
    results.append((f"replica incremental after a {args.more}-job run: {more['records']} records (CPU {more['cpu']:.2f} s)",
                    more["seconds"], "< 1 s"))  # fmt: skip
    t, _ = timed([str(BIN / "redun"), "log", "--no-pager"], project, env, 1)
    results.append(("redun log right after (replica already current)", t, "-"))

    print(f"\nrepository: {base} ({len(executions)} executions; the tree is of one with {jobs} jobs); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for what, value, target in results:
        unit = "records/s" if "records/s" in target else "x" if target.endswith("x") else "s"
        shown = f"{value:,.0f} {unit}" if unit == "records/s" else f"{value:.2f}{unit}" if unit == "x" else f"{value:.3f} s"
        print(f"  {what:70} {shown:>16}   target {target}")


if __name__ == "__main__":
    main()
