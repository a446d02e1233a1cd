"""Whole-machine loss of unsynced writes, durable mode: is anything acknowledged lost?

    sudo nice -n 10 .venv/bin/python tools/crash_power.py --trials 12 --control 3

Needs root, losetup and ext4 (it says which is missing). Each trial makes a fresh ext4 image,
loop-mounts it, and puts the repository AND its local index on it (the machine that dies loses
both). A redun fan-out runs there with ``durable=True`` (FlushPolicy durable: every job end is
flushed and fsync'd before ``record_job_end`` returns); the child prints "acked <job> <leaf>"
after each leaf's ``record_job_end`` returned. At a random moment the child is frozen (SIGSTOP,
so every ack it printed came before what follows), the filesystem is shut down with
``EXT4_IOC_SHUTDOWN`` + ``EXT4_GOING_FLAGS_NOLOGFLUSH`` (what xfstests' godown uses to simulate
a power cut: dirty pages never reach the device and the uncommitted jbd2 transaction is
dropped), the child is SIGKILLed, and the image is unmounted and mounted again (journal
recovery). Then:

* ``objstore fsck --json`` (CLI, a new index) must be clean;
* every acknowledged job must be in the repository (its Job object, read through a new index
  built from the journal) -- "lost" counts those that are not;
* the workflow runs again with the index that survived on the image, must give the right
  result and may re-execute no acknowledged leaf.

``--control N`` runs N trials with the default (non-durable) policy: acks there are promises
nobody made, and their loss shows that the harness really drops unsynced writes. A cut that
comes after ext4's 5 s journal commit but before its delayed allocation wrote the data leaves
names without content (empty journal segments and packs): fsck then reports them, and after
``objstore fsck --repair`` it must be clean.
What this does not model: a disk whose own volatile cache loses writes it reported done (the
loop device's backing file lives in the host's page cache, which survives).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import crash_trials as ct  # noqa: E402

_ACKED = re.compile(r"acked ([0-9a-f-]{36}) (\d+)")
EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2


def why_not() -> str | None:
    """Why a power-loss simulation cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (losetup, mount and the EXT4_IOC_SHUTDOWN ioctl need CAP_SYS_ADMIN)"
    for tool in ("losetup", "mount", "umount", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if "ext4" not in Path("/proc/filesystems").read_text():
        return "the kernel has no ext4"
    return None


def sh(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout.strip()


class Image:
    """A fresh ext4 image, loop-mounted at ``mount``."""

    def __init__(self, path: Path, mount: Path, size_mb: int = 512):
        self.path, self.mount = path, mount
        with open(path, "wb") as f:
            f.truncate(size_mb << 20)
        sh("mkfs.ext4", "-q", "-F", str(path))
        self.loop = sh("losetup", "-f", "--show", str(path))
        mount.mkdir(parents=True, exist_ok=True)
        sh("mount", self.loop, str(mount))

    def power_cut(self) -> None:
        fd = os.open(self.mount, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        finally:
            os.close(fd)

    def reboot(self) -> None:
        sh("umount", str(self.mount))
        sh("mount", self.loop, str(self.mount))  # ext4 replays its journal here

    def close(self) -> None:
        subprocess.run(["umount", str(self.mount)], capture_output=True)
        subprocess.run(["losetup", "-d", self.loop], capture_output=True)
        self.path.unlink(missing_ok=True)


@dataclass
class PowerTrial:
    durable: bool
    cut_after: float
    acked: int = 0
    finished: int = 0  # leaves whose task body returned (acked or not)
    lost: int = 0  # acknowledged jobs not in the repository after the cut
    acked_rerun: int = 0  # acknowledged leaves the re-run executed again
    reexecuted: int = 0
    fsck_errors: list[str] = field(default_factory=list)
    after_repair: list[str] = field(default_factory=list)  # fsck errors left after fsck --repair
    wrong_result: bool = False


def reader(stream, lines: list[str]) -> threading.Thread:
    def run():
        for line in stream:
            lines.append(line)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def jobs_present(url: str, index: Path, job_ids: list[str]) -> set[str]:
    from objstore.missing import MISSING
    from objstore.repo import Repository

    with Repository.open(url, index_dir=index, auto_compact=False) as repo:
        repo.reindex()
        found = repo.lookup_many("objects", job_ids)
        present = set()
        for job_id, kind in zip(job_ids, found, strict=True):
            if kind is not MISSING and kind == "job":
                repo.get(job_id, expect_kind="job")  # reads and verifies the bytes too
                present.add(job_id)
        return present


def one_trial(work: Path, durable: bool, n: int, cut_after: float) -> PowerTrial:
    trial = PowerTrial(durable, cut_after)
    image = Image(work / f"disk-{uuid.uuid4().hex}.img", work / "mnt")
    try:
        url, index = str(image.mount / "repo"), image.mount / "index"
        done = ct.run_cli(["init", url], None, index)
        assert done.returncode == 0, done.stderr
        sh("sync")  # the repository's creation itself is not what is tested
        extra = {"durable": True} if durable else {"ack": True}
        proc = ct.child(work, url, {}, index, n, extra)
        lines: list[str] = []
        thread = reader(proc.stderr, lines)
        deadline = time.time() + 120
        while not any(line.startswith("loaded ") for line in list(lines)):
            if proc.poll() is not None or time.time() > deadline:
                thread.join(5)
                raise RuntimeError("child died before loading:\n" + "".join(lines))
            time.sleep(0.01)
        time.sleep(cut_after)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.2)  # the reader takes what is in the pipe; the child prints nothing more
        # Threads' lines may interleave (the text and its newline are two writes): match, not split.
        acks = _ACKED.findall("".join(list(lines)))
        image.power_cut()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        thread.join(5)
        trial.finished = len(ct.parse_done(lines))
        trial.acked = len(acks)
        image.reboot()
        trial.fsck_errors, _ = ct.fsck_cli(url, None, work / f"fsck-{uuid.uuid4().hex}")
        if trial.fsck_errors:  # what a user does next: repair, then check again
            ct.run_cli(["--repo", url, "fsck", "--repair"], None, work / f"repair-{uuid.uuid4().hex}")
            trial.after_repair, _ = ct.fsck_cli(url, None, work / f"fsck-{uuid.uuid4().hex}")
        acked_jobs = [job for job, _ in acks]
        trial.lost = len(set(acked_jobs) - jobs_present(url, work / f"check-{uuid.uuid4().hex}", acked_jobs))
        again = ct.child(work, url, {}, index, n)  # the index that survived the cut
        _, err = again.communicate(timeout=900)
        if again.returncode != 0:
            raise RuntimeError(f"the re-run failed:\n{err[-3000:]}")
        ran = ct.parse_done(err.splitlines())
        trial.reexecuted = len(ran)
        trial.acked_rerun = len({int(leaf) for _, leaf in acks} & set(ran))
        results = [line for line in err.splitlines() if line.startswith("result ")]
        trial.wrong_result = not results or json.loads(results[-1][len("result "):]) != [i * i for i in range(n)]
        return trial
    finally:
        image.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12, help="durable trials (default 12)")
    parser.add_argument("--control", type=int, default=3, help="non-durable control trials (default 3)")
    parser.add_argument("--jobs", type=int, default=150, help="leaf jobs per run (default 150)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--min-cut", type=float, default=0.3)
    parser.add_argument("--max-cut", type=float, default=4.0)
    args = parser.parse_args(argv)
    reason = why_not()
    if reason:
        print(f"crash_power: cannot simulate a power cut here: {reason}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="objstore-power-"))
    ct.write_scripts(work)
    trials: list[PowerTrial] = []
    try:
        print(f"{'#':>3} {'mode':8} {'cut at':>6} {'done':>5} {'acked':>5} {'lost':>4} {'re-run':>6} "
              f"{'acked re-run':>12} {'fsck':>5} {'repaired':>8} {'result':>6}", flush=True)
        plan = [True] * args.trials + [False] * args.control
        for number, durable in enumerate(plan, 1):
            t = one_trial(work, durable, args.jobs, rng.uniform(args.min_cut, args.max_cut))
            trials.append(t)
            print(f"{number:>3} {'durable' if durable else 'default':8} {t.cut_after:>5.2f}s {t.finished:>5} "
                  f"{t.acked:>5} {t.lost:>4} {t.reexecuted:>6} {t.acked_rerun:>12} "
                  f"{'clean' if not t.fsck_errors else len(t.fsck_errors):>5} "
                  f"{'-' if not t.fsck_errors else 'clean' if not t.after_repair else len(t.after_repair):>8} "
                  f"{'WRONG' if t.wrong_result else 'ok':>6}", flush=True)
            for line in t.fsck_errors[:5]:
                print("    " + line, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    for durable in (True, False):
        mine = [t for t in trials if t.durable is durable]
        if mine:
            print(f"{'durable' if durable else 'default (control)'}: {len(mine)} trials, acked "
                  f"{sum(t.acked for t in mine)}, lost {sum(t.lost for t in mine)}, acked leaves re-run "
                  f"{sum(t.acked_rerun for t in mine)}, fsck unclean {sum(1 for t in mine if t.fsck_errors)} "
                  f"(after --repair {sum(1 for t in mine if t.after_repair)}), "
                  f"wrong results {sum(t.wrong_result for t in mine)}")
    # Durable: clean, nothing acknowledged lost. Default: OS-buffered files the cut emptied are
    # allowed, but fsck --repair must leave a clean repository, and every result must be right.
    bad = [t for t in trials if t.after_repair or t.wrong_result
           or (t.durable and (t.fsck_errors or t.lost or t.acked_rerun))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
