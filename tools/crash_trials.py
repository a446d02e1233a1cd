"""Crash campaign: SIGKILL redun runs recording into objstore, then check what survived.

    .venv/bin/python tools/crash_trials.py                    # 20 local + 12 S3 trials (moto)
    .venv/bin/python tools/crash_trials.py --local 5 --s3 0 --jobs 100 --seed 3

Each trial starts a fresh repository, runs a 300-job fan-out (`redun`'s Scheduler on
ObjstoreBackend, default flush policy) in a child process and SIGKILLs it at a random moment
0.2-3 s after its backend loaded. Then, from a new index built from the journal alone:

* every object each journal segment names is read back and verified (corrupt / dangling);
* `.tmp-` files left by interrupted writes are counted (local);
* the workflow runs again in a new process with a new index (as another worker would), and
  its result is compared with the right one.

Reported per trial: when the kill came, how many jobs had finished (and how many of those more
than 1 s before the kill: two flush intervals plus a flush), how many jobs the re-run executed
again, and "lost": jobs that had finished more than 1 s before the kill and ran again anyway.
The S3 trials use a moto server started here (tests/servers.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

WORKFLOW = textwrap.dedent(
    '''
    import sys, time
    from redun import task

    redun_namespace = "crash_trials"


    @task()
    def leaf(i: int) -> int:
        time.sleep(0.05 + (i % 7) * 0.03)  # about 2 s for 300 leaves on 20 threads
        print(f"done {i} {time.time():.6f}", file=sys.stderr, flush=True)
        return i * i


    @task()
    def fan(n: int) -> list:
        return [leaf(i) for i in range(n)]
    '''
)

CHILD = textwrap.dedent(
    '''
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    from redun import Scheduler
    from redun.config import Config
    from objstore.redun import ObjstoreBackend
    import workflow

    url, options, index, n = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    backend = ObjstoreBackend(url, storage_options=options or None, index_dir=index)
    backend.load()
    print(f"loaded {time.time():.6f}", file=sys.stderr, flush=True)
    result = Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend).run(
        workflow.fan(n))
    backend.close()
    print("result " + json.dumps(result), file=sys.stderr, flush=True)
    '''
)


@dataclass
class Trial:
    backend: str
    kill_after: float
    finished: int = 0
    finished_1s: int = 0  # finished more than 1 s before the kill
    reexecuted: int = 0
    lost: int = 0
    objects_checked: int = 0
    corrupt: int = 0
    dangling: int = 0
    tmp_files: int = 0
    wrong_result: bool = False
    segments: int = 0


def child(work: Path, url: str, options: dict, index: Path, n: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(work / "child.py"), str(work), url, json.dumps(options), str(index), str(n)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


_DONE = re.compile(r"done (\d+) (\d+\.\d{6})")


def parse_done(lines: list[str]) -> dict[int, float]:
    """{leaf: when it finished} from the child's stderr (threads' lines may interleave)."""
    return {int(i): float(when) for i, when in _DONE.findall("\n".join(lines))}


def check_journal(url: str, options: dict, index: Path) -> tuple[int, int, int, int]:
    """(segments, objects named, corrupt, dangling), read through an index built from the journal."""
    from objstore import codec, layout
    from objstore.errors import CorruptObject, ObjectNotFound
    from objstore.repo import Repository
    from objstore.repo import journal as journal_mod

    with Repository.open(url, options or None, index_dir=index) as repo:
        repo.reindex()
        names = repo.journal.names()
        checked = corrupt = dangling = 0
        for name in names:
            raw = repo.blobs.read(layout.segment_key(name))
            try:
                listing, _ = journal_mod.decode(name, raw)
            except CorruptObject:
                corrupt += 1
                continue
            for object_id, kind in listing:
                checked += 1
                try:
                    repo.get(object_id, expect_kind=kind)
                except CorruptObject:
                    corrupt += 1
                except ObjectNotFound:
                    dangling += 1
        del codec
        return len(names), checked, corrupt, dangling


def count_tmp(url: str) -> int:
    if "://" in url:
        return 0
    from objstore.layout import TEMP_PREFIX

    return sum(1 for _, _, files in os.walk(url) for f in files if f.startswith(TEMP_PREFIX))


def one_trial(work: Path, backend: str, url: str, options: dict, n: int, kill_after: float) -> Trial:
    from objstore.repo import Repository

    trial = Trial(backend, kill_after)
    Repository.init(url, options or None, index_dir=work / f"init-{uuid.uuid4().hex}").close()
    proc = child(work, url, options, work / f"index-{uuid.uuid4().hex}", n)
    lines: list[str] = []
    line = proc.stderr.readline()
    while line and not line.startswith("loaded "):
        lines.append(line)
        line = proc.stderr.readline()
    if not line:
        raise RuntimeError("child died before loading:\n" + "".join(lines) + proc.stderr.read())
    time.sleep(kill_after)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    rest = proc.stderr.read()
    proc.wait()
    done = parse_done(lines + rest.splitlines())
    trial.finished = len(done)
    old = {i for i, when in done.items() if when < killed_at - 1.0}
    trial.finished_1s = len(old)

    trial.segments, trial.objects_checked, trial.corrupt, trial.dangling = check_journal(
        url, options, work / f"check-{uuid.uuid4().hex}")
    trial.tmp_files = count_tmp(url)

    again = child(work, url, options, work / f"rerun-{uuid.uuid4().hex}", n)
    out, err = again.communicate(timeout=600)
    if again.returncode != 0:
        raise RuntimeError(f"the re-run failed:\n{err[-3000:]}")
    rerun = parse_done(err.splitlines())
    trial.reexecuted = len(rerun)
    trial.lost = len(old & set(rerun))
    results = [line for line in err.splitlines() if line.startswith("result ")]
    trial.wrong_result = not results or json.loads(results[-1][len("result "):]) != [i * i for i in range(n)]
    return trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local", type=int, default=20, help="local trials (default 20)")
    parser.add_argument("--s3", type=int, default=12, help="S3 trials on moto (default 12)")
    parser.add_argument("--jobs", type=int, default=300, help="leaf jobs per run (default 300)")
    parser.add_argument("--seed", type=int, default=8, help="seed of the kill times (default 8)")
    parser.add_argument("--min-kill", type=float, default=0.2)
    parser.add_argument("--max-kill", type=float, default=3.0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="objstore-crash-"))
    (work / "workflow.py").write_text(WORKFLOW)
    (work / "child.py").write_text(CHILD)
    server = None
    trials: list[Trial] = []
    try:
        plan = [("local", rng.uniform(args.min_kill, args.max_kill)) for _ in range(args.local)]
        plan += [("s3", rng.uniform(args.min_kill, args.max_kill)) for _ in range(args.s3)]
        if args.s3:
            import servers

            server = servers.start_s3(work)
        print(f"{'#':>3} {'backend':7} {'kill at':>7} {'done':>5} {'done>1s':>7} {'re-run':>6} {'lost':>4} "
              f"{'segs':>4} {'objects':>7} {'corrupt':>7} {'dangling':>8} {'tmp':>3} {'result':>6}")
        for number, (backend, kill_after) in enumerate(plan, 1):
            if backend == "local":
                url, options = str(work / f"repo-{number}"), {}
            else:
                import servers

                target = servers.make_target("s3", tmp_path=work, server=server)
                url, options = target.url, target.storage_options
            t = one_trial(work, backend, url, options, args.jobs, kill_after)
            trials.append(t)
            print(f"{number:>3} {t.backend:7} {t.kill_after:>6.2f}s {t.finished:>5} {t.finished_1s:>7} "
                  f"{t.reexecuted:>6} {t.lost:>4} {t.segments:>4} {t.objects_checked:>7} {t.corrupt:>7} "
                  f"{t.dangling:>8} {t.tmp_files:>3} {'WRONG' if t.wrong_result else 'ok':>6}", flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    for backend in ("local", "s3"):
        mine = [t for t in trials if t.backend == backend]
        if not mine:
            continue
        reuse = sorted(args.jobs - t.reexecuted for t in mine)
        print(f"{backend}: {len(mine)} trials; objects read back {sum(t.objects_checked for t in mine)}, "
              f"corrupt {sum(t.corrupt for t in mine)}, dangling {sum(t.dangling for t in mine)}, "
              f"tmp files {sum(t.tmp_files for t in mine)}, wrong results {sum(t.wrong_result for t in mine)}; "
              f"lost results {sum(t.lost for t in mine)} (of {sum(t.finished_1s for t in mine)} finished >1 s "
              f"before the kill); re-executed per trial min/median/max "
              f"{min(t.reexecuted for t in mine)}/{sorted(t.reexecuted for t in mine)[len(mine) // 2]}/"
              f"{max(t.reexecuted for t in mine)}; trials whose re-run reused nothing: "
              f"{sum(1 for r in reuse if r == 0)}")
    bad = sum(t.corrupt + t.dangling + t.lost + t.wrong_result for t in trials)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
