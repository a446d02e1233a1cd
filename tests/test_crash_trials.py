"""A few crash trials of tools/crash_trials.py and tools/crash_power.py (the campaign is run by hand).

SIGKILL a redun run on a local repository, and `objstore gc` mid-way; then `objstore fsck --json`
(CLI) must be clean and a re-run must reuse every recorded leaf. A durable run survives a
simulated power cut (ext4 shutdown without flushing) with every acknowledged job.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))

import crash_power  # noqa: E402
import crash_trials as ct  # noqa: E402

JOBS = 60


@pytest.fixture
def work(tmp_path):
    ct.write_scripts(tmp_path)
    return tmp_path


def test_a_killed_run_leaves_a_clean_repository_and_a_rerun_reuses_what_was_recorded(work):
    url = str(work / "repo")
    trial = ct.workflow_trial(work, "local", url, {}, JOBS, 1.5)
    assert not trial.fsck_errors and not trial.wrong_result, trial
    assert trial.lost == 0 and trial.ignored == 0, trial
    assert trial.heads > 0 and trial.reexecuted <= JOBS - trial.heads, trial
    # The trials' checker is not blind: a damaged pack is an fsck error.
    victim = max((Path(url) / "objects" / "pack").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    errors, _ = ct.fsck_cli(url, {}, work / "fsck-after-damage")
    assert any(victim.name in e for e in errors), errors


def test_a_killed_gc_leaves_a_clean_repository_that_keeps_its_cache(work):
    template = ct.build_template(work, JOBS, runs=1)
    trial = ct.command_trial(work, "gc", template, 1, JOBS, 0.45, None)
    assert not trial.fsck_errors and not trial.wrong_result, trial
    assert trial.reexecuted == 0, trial  # gc, killed then run again, kept every cached leaf


@pytest.mark.skipif(crash_power.why_not() is not None, reason=f"power cut: {crash_power.why_not()}")
def test_a_durable_run_loses_nothing_acknowledged_in_a_power_cut(work):
    durable = crash_power.one_trial(work, True, 80, 2.5)
    assert durable.acked > 0 and durable.lost == 0 and durable.acked_rerun == 0, durable
    assert not durable.fsck_errors and not durable.wrong_result, durable
    # The same cut loses acks the default policy never promised: the harness does drop writes.
    control = crash_power.one_trial(work, False, 80, 1.5)
    assert control.acked > 0 and control.lost > 0, control
    assert not control.after_repair and not control.wrong_result, control


KILLED_BEFORE_ITS_SEGMENT = """
import os, pickle, signal, sys, uuid
from objstore import hashing, model
from objstore.backend import Provenance, ValueSpec
from objstore.repo import Repository, journal

# SIGKILL at the moment the flush would write its journal segment: its pack is already written.
journal.Journal.write = lambda self, *a, **k: os.kill(os.getpid(), signal.SIGKILL)
prov = Provenance(Repository.open(sys.argv[1], index_dir=sys.argv[2]))
data = pickle.dumps(("task", "main", "def main(): ..."), protocol=3)
prov.values.record_value(ValueSpec(hashing.hash_struct(["Task", "ns.main", "source", "def main(): ..."]),
                                   "redun.Task", "application/python-pickle", data,
                                   model.value.task_subtype("main", "ns", "def main(): ...")))
execution, root = str(uuid.uuid4()), str(uuid.uuid4())
prov.jobs.record_execution(execution, ["redun", "run", "main"])
prov.jobs.job_started(root, task_hash=hashing.hash_text("main"), execution_id=execution, parent_id=None)
prov.flush()
"""


def test_fsck_is_clean_after_a_kill_between_a_flush_s_pack_and_its_segment(tmp_path):
    """Found by the campaign (5 of 104 trials): the pack of a flush killed before its segment
    holds the Execution, whose root job is neither an object nor (its note was in the segment)
    a start note; fsck called that a missing job, an error, where it is an unreachable leftover."""
    import json
    import subprocess

    url = str(tmp_path / "repo")
    assert ct.run_cli(["init", url], None, tmp_path / "i0").returncode == 0
    script = tmp_path / "killed.py"
    script.write_text(KILLED_BEFORE_ITS_SEGMENT)
    done = subprocess.run([sys.executable, str(script), url, str(tmp_path / "i1")], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    assert list((tmp_path / "repo" / "objects" / "pack").glob("*.pack")), "the flush wrote no pack"
    assert not list((tmp_path / "repo").glob("journal/*")), "the segment was written"
    fsck = ct.run_cli(["--repo", url, "fsck", "--json"], None, tmp_path / "i2")
    report = json.loads(fsck.stdout)
    assert fsck.returncode == 0 and report["clean"], report["problems"]
    assert any(p["what"] == "missing" and p["severity"] == "warning" and "interrupted flush" in p["detail"]
               for p in report["problems"]), report["problems"]
