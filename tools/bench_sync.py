#!/usr/bin/env python
"""Interchange and sync, measured as a user runs them: whole commands, both sides in one run.

    python tools/bench_sync.py                 # everything, median of 5 interleaved repeats
    python tools/bench_sync.py --repeat 3 --skip-s3
    python tools/bench_sync.py --work /tmp/bench-sync   # keep (and reuse) the recorded data

The data (built once per --work dir, then reused): redun's compile-free benchmark workflow run
by redun on its own sqlite backend, 1000-task fan-out twice and a 200-job chain twice, i.e. the
repository the issue names (about 4,600 redun records); `redun export` of it; the same
database migrated into objstore (so both sides hold exactly the same records).

Rows (every time is a whole process, as typed at a shell, interleaved with the other side):
  export       `redun export -f F` vs `objstore export --redun -o F` and `objstore export -o F`
  import       `redun import -f F` (into a new sqlite db) vs `objstore import F` (both streams)
  migrate      `objstore migrate-redun sqlite:///…` vs `redun export` alone
  sync         `objstore sync A B` local -> local, objects/s (packed, and one object per flush)
  no-op        `objstore sync` with nothing to copy, a 100,000-object repository: wall time, and
               on S3 (moto) the number of requests
  to S3        `objstore push` local -> S3 (moto): objects/s and requests per object

Bytecode: PYTHONDONTWRITEBYTECODE is dropped and PYTHONPYCACHEPREFIX points into --work, so both
redun and objstore run from cached bytecode, as an installed package does.
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
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OBJSTORE = str(BIN / "objstore")
REDUN = str(BIN / "redun")

WORKFLOW = '''\
from redun import task

redun_namespace = "bench_sync"


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def fanout(n: int) -> list:
    return [add(i, 1) for i in range(n)]


@task()
def chain(x: int, k: int):
    return x if k == 0 else chain(x + 1, k - 1)
'''

RECORD = '''\
import sys
sys.path.insert(0, sys.argv[1])
import wf
from redun import Scheduler
from redun.config import Config
config = Config({"backend": {"db_uri": "sqlite:///" + sys.argv[2]}, "scheduler": {"ignore_warnings": "namespace"}})
for expr in (lambda: wf.fanout(1000), lambda: wf.fanout(1000), lambda: wf.chain(0, 200), lambda: wf.chain(0, 200)):
    s = Scheduler(config=config)
    s.load()
    s.run(expr())
'''


class Bench:
    def __init__(self, work: Path, repeat: int):
        self.work = work
        self.repeat = repeat
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OBJSTORE_", "REDUN_"))}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        self.env["HOME"] = str(work / "home")
        (work / "home").mkdir(parents=True, exist_ok=True)
        self.rows: list[tuple[str, str, str]] = []
        self.cpu: dict[str, float] = {}  # CPU-second medians of the cases measured last, by name
        self.last_cpu = 0.0

    # -- running ------------------------------------------------------------------------------

    def sh(self, *args: str, cwd: Path | None = None, env: dict | None = None, check: bool = True) -> tuple[float, str]:
        before = os.times()
        start = time.perf_counter()
        proc = subprocess.run(list(args), cwd=cwd or self.work, env=env or self.env, capture_output=True, text=True)
        took = time.perf_counter() - start
        after = os.times()
        # CPU seconds of this command: on a loaded machine its wall time also counts waiting.
        self.last_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        if check and proc.returncode:
            raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return took, proc.stdout

    def fresh(self, name: str) -> Path:
        path = self.work / "scratch" / f"{name}-{uuid.uuid4().hex[:8]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def medians(self, cases: dict[str, callable]) -> dict[str, float]:
        """Run each case ``repeat`` times, interleaved (a, b, c, a, b, c, ...); median seconds."""
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for case in cases.values():  # warm the page cache and bytecode once, untimed
            case()
        for _ in range(self.repeat):
            for name, case in cases.items():
                times[name].append(case())
                cpus[name].append(self.last_cpu)  # the case's timed command is its last
        for name, ts in times.items():
            self.cpu[name] = statistics.median(cpus[name])
            print(f"  {name:<34} median {statistics.median(ts):.3f}s  ({', '.join(f'{t:.2f}' for t in ts)}); "
                  f"CPU median {self.cpu[name]:.3f}s", flush=True)
        return {name: statistics.median(ts) for name, ts in times.items()}

    def cpu_ratio(self, base: str, name: str) -> str:
        """The CPU-time ratio of two cases just measured (less sensitive to load than wall)."""
        return f"CPU {self.cpu[base]:.2f} s / {self.cpu[name]:.2f} s: {self.cpu[base] / self.cpu[name]:.1f}x"

    def row(self, what: str, measured: str, beside: str) -> None:
        self.rows.append((what, measured, beside))
        print(f"=> {what}: {measured}  [{beside}]", flush=True)

    # -- data ---------------------------------------------------------------------------------

    def setup(self) -> None:
        w = self.work
        (w / "wf.py").write_text(WORKFLOW)
        self.db = w / "redun" / "redun.db"
        self.config = w / "redun"
        if not self.db.exists():
            print("recording 1000+1000+200+200 tasks with redun's sqlite backend (once per --work dir)...", flush=True)
            self.config.mkdir(parents=True, exist_ok=True)
            (self.config / "redun.ini").write_text(f"[backend]\ndb_uri = sqlite:///{self.db}\n")
            (w / "record.py").write_text(RECORD)
            self.sh(sys.executable, str(w / "record.py"), str(w), str(self.db))
        self.redun_stream = w / "redun.jsonl"
        if not self.redun_stream.exists():
            self.sh(REDUN, "-c", str(self.config), "export", "-f", str(self.redun_stream))
        self.migrated = w / "migrated"
        if not (self.migrated / "objstore.json").exists():
            self.sh(OBJSTORE, "init", str(self.migrated))
            self.sh(OBJSTORE, "--repo", str(self.migrated), "migrate-redun", f"sqlite:///{self.db}")
        self.full_stream = w / "full.jsonl"
        if not self.full_stream.exists():
            self.sh(OBJSTORE, "--repo", str(self.migrated), "export", "-o", str(self.full_stream))
        records = sum(1 for _ in open(self.redun_stream))
        print(f"data: {records} redun records; objstore stream {sum(1 for _ in open(self.full_stream))} lines", flush=True)
        self.empty_repo = w / "empty-objstore"
        if not (self.empty_repo / "objstore.json").exists():
            self.sh(OBJSTORE, "init", str(self.empty_repo))
        self.empty_db = w / "empty-redun" / "redun.db"
        if not self.empty_db.exists():
            self.empty_db.parent.mkdir(parents=True, exist_ok=True)
            (self.empty_db.parent / "redun.ini").write_text(f"[backend]\ndb_uri = sqlite:///{self.empty_db}\n")
            self.sh(REDUN, "-c", str(self.empty_db.parent), "init")

    def big_repo(self, name: str, objects: int, per_flush: int) -> Path:
        """A repository of ``objects`` small objects written ``per_flush`` at a time."""
        path = self.work / name
        if (path / "objstore.json").exists():
            return path
        print(f"building {name}: {objects} objects, {per_flush} per flush...", flush=True)
        code = (
            "import sys\nfrom objstore import hashing, model\nfrom objstore.repo import Repository\n"
            "url, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
            "with Repository.init(url, index_dir=url + '.index') as repo:\n"
            "    for start in range(0, n, per):\n"
            "        for i in range(start, min(n, start + per)):\n"
            "            repo.add(hashing.hash_text(f'bench-{i}'), 'value', model.value.encode('builtins.int', 'pickle', str(i).encode() * 8))\n"
            "        repo.flush()\n"
        )
        self.sh(sys.executable, "-c", code, str(path), str(objects), str(per_flush))
        return path

    # -- the measurements ---------------------------------------------------------------------

    def floors(self) -> None:
        """What each side pays before its first record: the interpreter and its imports."""
        print("\nstart-up floor (python + the imports the commands need):", flush=True)
        m = self.medians({
            "redun (redun.cli + redun.backends.db)": lambda: self.sh(sys.executable, "-c", "import redun.cli, redun.backends.db")[0],
            "objstore (cli + repo + sync)": lambda: self.sh(sys.executable, "-c", "import objstore.cli, objstore.repo, objstore.sync.export, objstore.sync.imports")[0],
            "objstore export of an empty repo": lambda: self.sh(OBJSTORE, "--repo", str(self.empty_repo), "export", "--redun", "-o", os.devnull)[0],
        })
        self.row("start-up floor", f"objstore {m['objstore (cli + repo + sync)']:.3f} s; a whole `export` of an empty "
                 f"repository {m['objstore export of an empty repo']:.3f} s (CPU {self.cpu['objstore export of an empty repo']:.3f} s)",
                 f"redun {m['redun (redun.cli + redun.backends.db)']:.3f} s")

    def export_import_migrate(self) -> None:
        self.floors()
        print("\nexport (whole processes):", flush=True)
        out = self.work / "scratch" / "out.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        m = self.medians({
            "redun export": lambda: self.sh(REDUN, "-c", str(self.config), "export", "-f", str(out))[0],
            "objstore export --redun": lambda: self.sh(OBJSTORE, "--repo", str(self.migrated), "export", "--redun", "-o", str(out))[0],
            "objstore export": lambda: self.sh(OBJSTORE, "--repo", str(self.migrated), "export", "-o", str(out))[0],
        })
        self.redun_export = m["redun export"]
        self.row("export --redun", f"{m['objstore export --redun']:.3f} s", f"redun export {m['redun export']:.3f} s: {m['redun export'] / m['objstore export --redun']:.1f}x (target >= 10x); {self.cpu_ratio('redun export', 'objstore export --redun')}")
        self.row("export (objstore stream)", f"{m['objstore export']:.3f} s", f"{m['redun export'] / m['objstore export']:.1f}x redun export; {self.cpu_ratio('redun export', 'objstore export')}")

        print("\nimport (whole processes, each into a new, empty database/repository):", flush=True)

        def redun_import() -> float:
            d = self.fresh("redun-import")
            d.mkdir()
            shutil.copy(self.empty_db, d / "redun.db")
            (d / "redun.ini").write_text(f"[backend]\ndb_uri = sqlite:///{d / 'redun.db'}\n")
            return self.sh(REDUN, "-c", str(d), "import", "-f", str(self.redun_stream))[0]

        def objstore_import(stream: Path):
            def case() -> float:
                d = self.fresh("os-import")
                self.sh(OBJSTORE, "init", str(d))
                return self.sh(OBJSTORE, "--repo", str(d), "import", str(stream))[0]
            return case

        m = self.medians({
            "redun import": redun_import,
            "objstore import (objstore stream)": objstore_import(self.full_stream),
            "objstore import (redun stream)": objstore_import(self.redun_stream),
        })
        self.row("import (objstore stream)", f"{m['objstore import (objstore stream)']:.3f} s", f"redun import {m['redun import']:.3f} s: {m['redun import'] / m['objstore import (objstore stream)']:.1f}x (target >= 10x); {self.cpu_ratio('redun import', 'objstore import (objstore stream)')}")
        self.row("import (redun stream)", f"{m['objstore import (redun stream)']:.3f} s", f"{m['redun import'] / m['objstore import (redun stream)']:.1f}x redun import; {self.cpu_ratio('redun import', 'objstore import (redun stream)')}")

        print("\nmigrate-redun vs redun export:", flush=True)

        def migrate() -> float:
            d = self.fresh("migrate")
            self.sh(OBJSTORE, "init", str(d))
            return self.sh(OBJSTORE, "--repo", str(d), "migrate-redun", f"sqlite:///{self.db}")[0]

        m = self.medians({
            "redun export": lambda: self.sh(REDUN, "-c", str(self.config), "export", "-f", str(out))[0],
            "objstore migrate-redun": migrate,
        })
        self.row("migrate-redun (sqlite)", f"{m['objstore migrate-redun']:.3f} s", f"redun export {m['redun export']:.3f} s: {m['redun export'] / m['objstore migrate-redun']:.1f}x (target >= 5x)")

    def local_sync(self) -> None:
        print("\nsync local -> local (whole process; objects/s over the command's wall time):", flush=True)
        loose = self.big_repo("loose-2000", 2000, 1)

        def sync(src: Path):
            def case() -> float:
                d = self.fresh("sync")
                self.sh(OBJSTORE, "init", str(d))
                return self.sh(OBJSTORE, "sync", str(src), str(d))[0]
            return case

        m = self.medians({"sync migrated (packed)": sync(self.migrated), "sync loose-2000": sync(loose)})
        objects = self.count_objects(self.migrated)
        rates = {name: self.copy_rate(src) for name, src in (("packed", self.migrated), ("loose", loose))}
        self.row("sync local->local, packed", f"{objects / m['sync migrated (packed)']:,.0f} objects/s",
                 f"{objects} objects in {m['sync migrated (packed)']:.3f} s whole process, index catch-up included; "
                 f"the copy itself {rates['packed']} objects/s (target >= 20,000/s)")
        self.row("sync local->local, one object per flush", f"{2000 / m['sync loose-2000']:,.0f} objects/s",
                 f"2000 loose objects + 2000 segments in {m['sync loose-2000']:.3f} s; the copy itself {rates['loose']} objects/s")

        print("\nno-op sync of a 100,000-object repository:", flush=True)
        big = self.big_repo("big-100k", 100_000, 5000)
        copy = self.work / "big-100k-copy"
        if not (copy / "objstore.json").exists():
            self.sh(OBJSTORE, "init", str(copy))
            self.sh(OBJSTORE, "sync", str(big), str(copy))
        m = self.medians({"no-op sync (local)": lambda: self.sh(OBJSTORE, "sync", str(big), str(copy))[0]})
        self.row("no-op sync, 100,000 objects, local", f"{m['no-op sync (local)']:.3f} s", "target < 2 s")

    def copy_rate(self, src: Path) -> str:
        """The copy's own objects/s, as the command reports it (median of ``repeat`` runs)."""
        rates = []
        for _ in range(self.repeat):
            d = self.fresh("rate")
            self.sh(OBJSTORE, "init", str(d))
            _, out = self.sh(OBJSTORE, "sync", str(src), str(d))
            rates.append(float(out.rsplit("(", 1)[1].split(" objects/s")[0].replace(",", "")))
        return f"{statistics.median(rates):,.0f}"

    def count_objects(self, repo: Path) -> int:
        _, out = self.sh(OBJSTORE, "--repo", str(repo), "export")
        return sum(1 for line in out.splitlines() if line.startswith('{"_type":"object"'))

    def s3(self) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        import servers  # the suite's moto_server (a subprocess on a loopback port, logging requests)

        server = servers.start_s3(Path(tempfile.mkdtemp(prefix="bench-sync-s3-")))
        try:
            options = servers.s3_options(server)
            env = dict(self.env, OBJSTORE_STORAGE_OPTIONS=json.dumps(options))
            admin = servers.make_target("s3", tmp_path=self.work, server=server)

            def requests() -> int:
                return sum(1 for line in server.log_path.read_text(errors="replace").splitlines() if '" 20' in line or '" 30' in line or '" 40' in line)

            def bucket() -> str:
                url = f"s3://bkt-{uuid.uuid4().hex[:16]}/repo"
                admin.fs().mkdir(url.split("/")[2])
                self.sh(OBJSTORE, "init", url, env=env)
                return url

            print("\nlocal -> S3 (moto) push:", flush=True)
            objects = self.count_objects(self.migrated)
            rows = []
            for _ in range(self.repeat):
                url = bucket()
                before = requests()
                took, _ = self.sh(OBJSTORE, "sync", str(self.migrated), url, env=env)
                rows.append((took, requests() - before))
            took = statistics.median(t for t, _ in rows)
            sent = statistics.median(n for _, n in rows)
            self.row("push local->S3 (moto), packed", f"{objects / took:,.0f} objects/s", f"{objects} objects in {took:.3f} s, {sent} requests = {sent / objects:.3f} per object")
            loose = self.work / "loose-2000"
            url = bucket()
            before = requests()
            took, _ = self.sh(OBJSTORE, "sync", str(loose), url, env=env)
            sent = requests() - before
            self.row("push local->S3 (moto), one object per flush", f"{2000 / took:,.0f} objects/s", f"2000 objects + 2000 segments in {took:.3f} s, {sent} requests = {sent / 2000:.2f} per object")

            print("\nno-op sync to S3 (moto), 100,000 objects:", flush=True)
            big = self.work / "big-100k"
            url = bucket()
            self.sh(OBJSTORE, "sync", str(big), url, env=env)
            rows = []
            for _ in range(self.repeat):
                before = requests()
                took, out = self.sh(OBJSTORE, "sync", str(big), url, env=env)
                assert "up to date" in out, out
                rows.append((took, requests() - before))
            self.row("no-op sync, 100,000 objects, local->S3", f"{statistics.median(t for t, _ in rows):.3f} s",
                     f"{statistics.median(n for _, n in rows)} requests (bounded: listings and the format file, not per object)")
        finally:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--work", type=Path, help="where the data lives (reused when it is there)")
    ap.add_argument("--skip-s3", action="store_true")
    ap.add_argument("--only", choices=["interchange", "sync", "s3"], help="run one group")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-sync-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work.resolve(), args.repeat)
    bench.setup()
    if args.only in (None, "interchange"):
        bench.export_import_migrate()
    if args.only in (None, "sync"):
        bench.local_sync()
    if args.only in (None, "s3") and not args.skip_s3:
        bench.big_repo("loose-2000", 2000, 1)
        bench.big_repo("big-100k", 100_000, 5000)
        bench.s3()
    print("\n| measured | value | beside it, same run |\n|---|---|---|")
    for what, measured, beside in bench.rows:
        print(f"| {what} | {measured} | {beside} |")
    shutil.rmtree(work / "scratch", ignore_errors=True)


if __name__ == "__main__":
    main()
