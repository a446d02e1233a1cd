"""Crash campaign: SIGKILL redun runs and maintenance commands on objstore, then check what survived.

    nice -n 10 .venv/bin/python tools/crash_trials.py                  # 60 local + 44 S3 runs, 24 commands
    .venv/bin/python tools/crash_trials.py --local 3 --s3 0 --sync 1 --gc 1 --repack 1 --jobs 100

Workflow trials start a fresh repository, run a fan-out of ``--jobs`` leaves (redun's Scheduler
on ObjstoreBackend, default flush policy) in a child process and SIGKILL it at a random moment
0.2-3 s after its backend loaded. Command trials SIGKILL ``objstore push`` (local -> local and
local -> S3), ``objstore gc --grace 0 --prune`` and ``objstore repack --all`` (CLI subprocesses)
at a random moment between their start and their unkilled duration. After every kill:

* ``objstore fsck --json`` (the CLI, a new index built from the journal) must be clean: no
  visible object corrupt, no eval head or journal entry naming a missing object, no torn ref;
* the workflow (or the command, then the workflow) runs again in a new process with a new
  index, as another worker would, and must give the right result, re-executing no leaf whose
  eval head was recorded before the kill ("ignored" counts those that ran again anyway).

Reported per workflow trial: when the kill came, how many leaves had finished (and how many of
those more than 1 s before the kill: two flush intervals plus a flush), how many the re-run
executed again, and "lost": leaves finished more than 1 s before the kill that ran again; the
same for leaves whose job end the backend had (record_job_end returned) more than 1 s before
the kill, which leaves out the scheduler's own lag on a loaded machine.
S3 trials use a moto server started here (tests/servers.py). The whole-machine loss of unsynced
writes in durable mode is tools/crash_power.py.
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

WORKFLOW = textwrap.dedent(
    '''
    import sys, time
    from redun import Handle, task

    redun_namespace = "crash_trials"


    @task()
    def leaf(i: int, pause: float = 1.0) -> int:
        time.sleep((0.05 + (i % 7) * 0.03) * pause)  # about 2 s for 300 leaves on 20 threads
        print(f"done {i} {time.time():.6f}", file=sys.stderr, flush=True)
        return i * i


    @task()
    def fan(n: int, pause: float = 1.0) -> list:
        return [leaf(i, pause) for i in range(n)]


    class Counter(Handle):  # every step advances it: a compare-and-swap of refs/handles/...
        def __init__(self, name: str):
            self.name = name


    @task()
    def step(h: Counter, i: int, pause: float) -> Counter:
        time.sleep(0.02 * pause)
        print(f"done {i} {time.time():.6f}", file=sys.stderr, flush=True)
        return h


    @task()
    def squares(h: Counter, n: int) -> list:
        return [i * i for i in range(n)]


    @task()
    def walk(h: Counter, i: int, n: int, pause: float):
        return squares(h, n) if i == n else walk(step(h, i, pause), i + 1, n, pause)


    @task()
    def handles(n: int, pause: float = 1.0) -> list:
        return walk(Counter("crash"), 0, n, pause)
    '''
)

# argv: work dir, url, storage options JSON, index dir, leaves, backend options JSON, pause.
# It prints "acked <job id> <leaf> <time>" once a leaf's record_job_end returned: the backend has
# the job's end (durable: written and fsync'd; tools/crash_power.py checks that none is lost).
CHILD = textwrap.dedent(
    '''
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    from redun import Scheduler
    from redun.config import Config
    from objstore.redun import ObjstoreBackend
    import workflow

    url, options, index, n = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    extra, pause = json.loads(sys.argv[6]), float(sys.argv[7])


    class Acking(ObjstoreBackend):
        def record_job_end(self, job, now=None, status=None):
            super().record_job_end(job, now=now, status=status)
            if job.task.name in ("leaf", "step"):
                print(f"acked {job.id} {job.expr.args[-2]} {time.time():.6f}", file=sys.stderr, flush=True)


    extra.pop("ack", None)
    kind = Acking
    main = getattr(workflow, extra.pop("workflow", "fan"))
    backend = kind(url, storage_options=options or None, index_dir=index, **extra)
    backend.load()
    print(f"loaded {time.time():.6f}", file=sys.stderr, flush=True)
    result = Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend).run(
        main(n, pause))
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
    ended_1s: int = 0  # whose job end the backend had more than 1 s before the kill
    lost_ended: int = 0  # of those, run again by the re-run
    heads: int = 0  # eval heads recorded before the kill (a new index built from the journal)
    reexecuted: int = 0
    lost: int = 0
    ignored: int = 0  # leaves re-executed although their eval head was recorded
    fsck_errors: list[str] = field(default_factory=list)
    tmp_files: int = 0
    wrong_result: bool = False
    segments: int = 0
    objects: int = 0
    completed: bool = False  # the run (or command) ended before the kill came
    jobs: int = 0  # leaves (or steps) of the workflow
    ran: set[int] = field(default_factory=set)  # leaves the re-run executed

    @property
    def bad(self) -> int:
        """What breaks a promise: an unclean fsck, a recorded head not reused, a wrong result.
        ("lost" measures how far the journal lags the scheduler: a latency, reported.)"""
        return len(self.fsck_errors) + self.ignored + int(self.wrong_result)


def write_scripts(work: Path) -> None:
    (work / "workflow.py").write_text(WORKFLOW)
    (work / "child.py").write_text(CHILD)


def child(work: Path, url: str, options: dict, index: Path, n: int, extra: dict | None = None,
          pause: float = 1.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(work / "child.py"), str(work), url, json.dumps(options), str(index), str(n),
         json.dumps(extra or {}), str(pause)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


_DONE = re.compile(r"done (\d+) (\d+\.\d{6})")
_ENDED = re.compile(r"acked [0-9a-f-]{36} (\d+) (\d+\.\d{6})")


def parse_done(lines: list[str]) -> dict[int, float]:
    """{leaf: when it finished} from the child's stderr (threads' lines may interleave)."""
    return {int(i): float(when) for i, when in _DONE.findall("\n".join(lines))}


def cli(args: list[str], options: dict | None, index: Path, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, OBJSTORE_INDEX_DIR=str(index))
    env.pop("OBJSTORE_STORAGE_OPTIONS", None)
    env.pop("OBJSTORE_REPO", None)
    if args[:1] == ["--home"]:  # the repository whose remotes a push names (never --repo)
        env["OBJSTORE_REPO"], args = args[1], args[2:]
    if options:
        env["OBJSTORE_STORAGE_OPTIONS"] = json.dumps(options)
    return subprocess.Popen([sys.executable, "-m", "objstore.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def run_cli(args: list[str], options: dict | None, index: Path) -> subprocess.CompletedProcess:
    proc = cli(args, options, index)
    out, err = proc.communicate(timeout=900)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def fsck_cli(url: str, options: dict | None, index: Path) -> tuple[list[str], dict]:
    """``objstore fsck --json`` with a new index: (its error lines, what it checked)."""
    done = run_cli(["--repo", url, "fsck", "--json"], options, index)
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        return [f"fsck exit {done.returncode}, no JSON: {done.stderr.strip()[-500:]}"], {}
    errors = [f"{p['where']}: {p['what']}: {p['detail']}" for p in doc["problems"] if p["severity"] == "error"]
    if done.returncode != (0 if doc["clean"] else 1):
        errors.append(f"fsck exit {done.returncode} for clean={doc['clean']}")
    return errors, doc["checked"]


def count_heads(url: str, options: dict | None, index: Path) -> tuple[int, int]:
    """(journal files, leaves' eval heads) through a new index built from the journal alone.

    A leaf's head names an int; fan's names the list of expressions its body returned (redun
    caches a task's immediate result), which is not a leaf's."""
    from objstore.repo import Repository

    with Repository.open(url, options or None, index_dir=index, auto_compact=False) as repo:
        repo.reindex()
        values = [v for _, v in repo.index.scan("evals")]
        types = repo.lookup_many("value_type", values)
        return len(repo.journal.names()), sum(1 for t in types if t == "builtins.int")


def count_tmp(url: str) -> int:
    if "://" in url:
        return 0
    from objstore.layout import TEMP_PREFIX

    return sum(1 for _, _, files in os.walk(url) for f in files if f.startswith(TEMP_PREFIX))


def rerun(work: Path, url: str, options: dict, n: int, trial: Trial, old: set[int] = frozenset(),
          pause: float = 1.0, recorded: int | None = None, flow: str = "fan") -> None:
    """Run the workflow again from a new index; fill the re-run's side of ``trial``.
    ``recorded``: leaves whose heads must be found (default: the heads seen after the kill)."""
    again = child(work, url, options, work / f"rerun-{uuid.uuid4().hex}", n, {"workflow": flow}, pause)
    _, err = again.communicate(timeout=900)
    if again.returncode != 0:
        raise RuntimeError(f"the re-run failed:\n{err[-3000:]}")
    ran = parse_done(err.splitlines())
    trial.reexecuted, trial.jobs, trial.ran = len(ran), n, set(ran)
    trial.lost = len(old & set(ran))
    # Every leaf with a recorded head must come from the cache: at most n - heads run again.
    recorded = trial.heads if recorded is None else recorded
    trial.ignored = max(0, trial.reexecuted + min(recorded, n) - n)
    results = [line for line in err.splitlines() if line.startswith("result ")]
    trial.wrong_result = not results or json.loads(results[-1][len("result "):]) != [i * i for i in range(n)]


def workflow_trial(work: Path, backend: str, url: str, options: dict, n: int, kill_after: float,
                   flow: str = "fan") -> Trial:
    """``flow``: "fan" (``--jobs`` leaves at once) or "handles" (a chain of steps, each advancing
    one handle: refs changed by compare-and-swap all along)."""
    from objstore.repo import Repository

    trial = Trial(backend if flow == "fan" else f"{backend}-{flow}", kill_after)
    Repository.init(url, options or None, index_dir=work / f"init-{uuid.uuid4().hex}").close()
    proc = child(work, url, options, work / f"index-{uuid.uuid4().hex}", n, {"workflow": flow})
    lines: list[str] = []
    line = proc.stderr.readline()
    while line and not line.startswith("loaded "):
        lines.append(line)
        line = proc.stderr.readline()
    if not line:
        raise RuntimeError("child died before loading:\n" + "".join(lines) + proc.stderr.read())
    time.sleep(kill_after)
    killed_at = time.time()
    trial.completed = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    rest = proc.stderr.read()
    proc.wait()
    done = parse_done(lines + rest.splitlines())
    trial.finished = len(done)
    old = {i for i, when in done.items() if when < killed_at - 1.0}
    trial.finished_1s = len(old)
    ended = {int(i) for i, when in _ENDED.findall("".join(lines) + rest) if float(when) < killed_at - 1.0}
    trial.ended_1s = len(ended)
    after_kill(work, trial, url, options)
    rerun(work, url, options, n, trial, old, flow=flow)
    trial.lost_ended = len(ended & trial.ran)
    return trial


def after_kill(work: Path, trial: Trial, url: str, options: dict) -> None:
    trial.tmp_files = count_tmp(url)
    trial.fsck_errors, checked = fsck_cli(url, options, work / f"fsck-{uuid.uuid4().hex}")
    trial.objects = checked.get("objects", 0)
    trial.segments, trial.heads = count_heads(url, options, work / f"check-{uuid.uuid4().hex}")


# -- maintenance commands --------------------------------------------------------------------


TEMPLATE_PAUSES = (0.2, 0.21, 0.22, 0.2)


def build_template(work: Path, n: int, runs: int = len(TEMPLATE_PAUSES)) -> Path:
    """A repository of many small flushes (many packs and segments), then repacked once, so gc
    has journal files to compact, retired packs to remove and leftovers to clean."""
    template = work / "template"
    from objstore.repo import Repository

    Repository.init(str(template), index_dir=work / "template-init").close()
    for pause in TEMPLATE_PAUSES[:runs]:  # new leaves each time (the pause is an argument); the last is cached
        proc = child(work, str(template), {}, work / "template-index", n, {"flush_every": 25}, pause=pause)
        _, err = proc.communicate(timeout=900)
        if proc.returncode:
            raise RuntimeError(f"template run failed:\n{err[-3000:]}")
    done = run_cli(["--repo", str(template), "repack", "--all"], None, work / "template-index")
    if done.returncode:
        raise RuntimeError(f"template repack failed: {done.stderr}")
    return template


def command_args(command: str, repo: str, dest: str) -> list[str]:
    if command in ("push-local", "push-s3"):
        return ["--home", repo, "push", dest]
    if command == "gc":
        return ["--repo", repo, "gc", "--grace", "0", "--prune"]
    return ["--repo", repo, "repack", "--all"]


def prepare(work: Path, command: str, template: Path, number: int | str, server) -> tuple[str, str, dict]:
    """(repository the command runs in, repository to check afterwards, its storage options)."""
    copy = work / f"cmd-{number}"
    shutil.copytree(template, copy)
    if command == "push-local":
        dest = str(work / f"dest-{number}")
        done = run_cli(["init", dest], None, work / f"init-{uuid.uuid4().hex}")
        assert done.returncode == 0, done.stderr
        run_cli(["--repo", str(copy), "repo", "add", "dst", dest], None, work / "x")
        return str(copy), dest, {}
    if command == "push-s3":
        import servers

        target = servers.make_target("s3", tmp_path=work, server=server)
        done = run_cli(["init", target.url], target.storage_options, work / f"init-{uuid.uuid4().hex}")
        assert done.returncode == 0, done.stderr
        run_cli(["--repo", str(copy), "repo", "add", "dst", target.url, "--storage-options",
                 json.dumps(target.storage_options)], None, work / "x")
        return str(copy), target.url, target.storage_options
    return str(copy), str(copy), {}


def command_trial(work: Path, command: str, template: Path, number: int, n: int, kill_after: float,
                  server, args_first_file: bool = False) -> Trial:
    """``args_first_file``: a push-local's kill is counted from its first file in the destination."""
    repo, checked, options = prepare(work, command, template, number, server)
    trial = Trial(command, kill_after)
    index = work / f"cmd-index-{number}"
    proc = cli(command_args(command, repo, "dst"), None, index)
    if command == "push-local" and args_first_file:
        # On a loaded machine the interpreter's start is most of a local push: count the kill
        # from the first file the push created in the destination.
        while proc.poll() is None and not any(files for _, _, files in os.walk(Path(checked) / "objects")):
            time.sleep(0.005)
    time.sleep(kill_after)
    trial.completed = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    after_kill(work, trial, checked, options)
    done = run_cli(command_args(command, repo, "dst"), None, index)  # the same command, resumed
    if done.returncode:
        trial.fsck_errors.append(f"the command again: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    trial.fsck_errors += fsck_cli(checked, options, work / f"fsck2-{uuid.uuid4().hex}")[0]
    # The command completed the second time: every leaf must come from the cache.
    rerun(work, checked, options, n, trial, pause=TEMPLATE_PAUSES[0], recorded=n)
    return trial


def time_command(work: Path, command: str, template: Path, server) -> float:
    repo, _, _ = prepare(work, command, template, f"unkilled-{command}", server)
    t0 = time.monotonic()
    done = run_cli(command_args(command, repo, "dst"), None, work / f"cmd-index-unkilled-{command}")
    if done.returncode:
        raise RuntimeError(f"{command} failed unkilled: {done.stderr}")
    return time.monotonic() - t0


# -- the campaign ----------------------------------------------------------------------------

HEADER = (f"{'#':>3} {'trial':10} {'kill at':>7} {'done':>5} {'done>1s':>7} {'lost':>4} {'ended>1s':>8} "
          f"{'lost':>4} {'heads':>5} {'re-run':>6} {'ignored':>7} {'segs':>4} {'objects':>7} {'fsck':>5} {'tmp':>3} "
          f"{'result':>6}")


def row(number: int, t: Trial) -> str:
    return (f"{number:>3} {t.backend:10} {t.kill_after:>6.2f}s{'*' if t.completed else ' '}{t.finished:>5} "
            f"{t.finished_1s:>7} {t.lost:>4} {t.ended_1s:>8} {t.lost_ended:>4} {t.heads:>5} {t.reexecuted:>6} "
            f"{t.ignored:>7} {t.segments:>4} "
            f"{t.objects:>7} {'clean' if not t.fsck_errors else len(t.fsck_errors):>5} {t.tmp_files:>3} "
            f"{'WRONG' if t.wrong_result else 'ok':>6}")


def summary(trials: list[Trial]) -> list[str]:
    out = []
    for kind in dict.fromkeys(t.backend for t in trials):
        mine = [t for t in trials if t.backend == kind]
        n = mine[0].jobs
        again = sorted(t.reexecuted for t in mine)
        out.append(
            f"{kind}: {len(mine)} trials ({sum(t.completed for t in mine)} ended before the kill); fsck unclean "
            f"{sum(1 for t in mine if t.fsck_errors)}, objects checked {sum(t.objects for t in mine)}, tmp files "
            f"{sum(t.tmp_files for t in mine)}, wrong results {sum(t.wrong_result for t in mine)}; recorded heads "
            f"ignored {sum(t.ignored for t in mine)}; lost {sum(t.lost for t in mine)} of "
            f"{sum(t.finished_1s for t in mine)} leaves finished >1 s before the kill, {sum(t.lost_ended for t in mine)} "
            f"of {sum(t.ended_1s for t in mine)} the backend had >1 s before it; re-executed per trial "
            f"min/median/max {again[0]}/{again[len(again) // 2]}/{again[-1]} of {n} (cached median "
            f"{n - again[len(again) // 2]})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local", type=int, default=60, help="local workflow trials (default 60)")
    parser.add_argument("--s3", type=int, default=44, help="S3 workflow trials on moto (default 44)")
    parser.add_argument("--handles", type=int, default=8,
                        help="local trials of a chain of handle-advancing steps (default 8)")
    parser.add_argument("--handle-steps", type=int, default=150, help="steps per handle chain (default 150)")
    parser.add_argument("--sync", type=int, default=6, help="kills of each push: local->local, local->S3 (6)")
    parser.add_argument("--gc", type=int, default=6, help="kills of gc --grace 0 --prune (6)")
    parser.add_argument("--repack", type=int, default=6, help="kills of repack --all (6)")
    parser.add_argument("--only", nargs="*", default=None, metavar="COMMAND",
                        help="only these commands (push-local, push-s3, gc, repack)")
    parser.add_argument("--cmd-window", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                        help="kill commands between LO and HI seconds (default: 0.25 s to their unkilled time)")
    parser.add_argument("--from-first-file", action="store_true",
                        help="count a push-local's kill time from the first file it copied")
    parser.add_argument("--jobs", type=int, default=300, help="leaf jobs per run (default 300)")
    parser.add_argument("--seed", type=int, default=8, help="seed of the kill times (default 8)")
    parser.add_argument("--min-kill", type=float, default=0.2)
    parser.add_argument("--max-kill", type=float, default=3.0)
    args = parser.parse_args(argv)
    return 1 if campaign(args) else 0


def campaign(args) -> list[Trial]:
    """Run the trials ``args`` asks for, print the table; the trials that found something wrong."""
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="objstore-crash-"))
    write_scripts(work)
    server = None
    trials: list[Trial] = []
    try:
        commands = ["push-local"] * args.sync + ["push-s3"] * args.sync + ["gc"] * args.gc + ["repack"] * args.repack
        commands = [c for c in commands if args.only is None or c in args.only]
        if args.s3 or "push-s3" in commands:
            import servers

            server = servers.start_s3(work)
        print(HEADER, flush=True)
        plan = [("local", "fan", rng.uniform(args.min_kill, args.max_kill)) for _ in range(args.local)]
        plan += [("s3", "fan", rng.uniform(args.min_kill, args.max_kill)) for _ in range(args.s3)]
        plan += [("local", "handles", rng.uniform(args.min_kill, args.max_kill)) for _ in range(args.handles)]
        for number, (backend, flow, kill_after) in enumerate(plan, 1):
            if backend == "local":
                url, options = str(work / f"repo-{number}"), {}
            else:
                import servers

                target = servers.make_target("s3", tmp_path=work, server=server)
                url, options = target.url, target.storage_options
            n = args.jobs if flow == "fan" else args.handle_steps
            trials.append(workflow_trial(work, backend, url, options, n, kill_after, flow))
            print(row(number, trials[-1]), flush=True)
        if commands:
            template = build_template(work, args.jobs)
            durations = {c: time_command(work, c, template, server) for c in dict.fromkeys(commands)}
            print("unkilled: " + ", ".join(f"{c} {s:.2f}s" for c, s in durations.items()), flush=True)
            for number, command in enumerate(commands, len(plan) + 1):
                lo, hi = args.cmd_window or (0.25, durations[command])
                kill_after = rng.uniform(lo, hi)
                trials.append(command_trial(work, command, template, number, args.jobs, kill_after, server,
                                            args.from_first_file))
                print(row(number, trials[-1]), flush=True)
                for line in trials[-1].fsck_errors[:5]:
                    print("    " + line, flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    for line in summary(trials):
        print(line)
    return [t for t in trials if t.bad]


if __name__ == "__main__":
    sys.exit(main())
