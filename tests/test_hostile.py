"""The hostile-input corpus, damaged files (issue 12, item 5): every case of tests/hostile/corpus.py
through the real entry points, objstore's CLI (each command its own process: tests/hostile/cli.py)
and a redun Scheduler on ObjstoreBackend.

Each case must end in a clear one-line error, a cache miss or a recovery, never a traceback or a
wrong answer, and what was recorded before the damage (and not damaged) must still read; a re-run
is cached where the data survived and repairs what it re-records.
"""

from __future__ import annotations

import pytest
from hostile import corpus, fixtures
from hostile import workflow as wf
from hostile.cli import assert_outcome

from objstore.redun import ObjstoreRedunError

FORMAT_BROKEN = {name for name in corpus.DAMAGE if name.startswith("format-") and name != "format-created-number"}
# cat-object of main(4)'s result: these leave it unreadable (its journal segment, for
# journal-truncated: the id is then unknown to a fresh index).
RESULT_UNREADABLE = {"loose-truncated", "loose-bit-flipped", "loose-wrong-kind", "loose-zero-bytes",
                     "pack-flipped-entry", "pack-truncated", "journal-truncated"}  # fmt: skip
# A segment dated in the future that names a head for main(4) whose value is stored nowhere:
# each fresh index replays it, so main(4) is a miss there every time (never a wrong hit). (Heads
# whose value is not a hash at all, journal-bad-ids, are skipped at ingest.)
HEAD_REPLAYED = {"journal-missing-objects"}


@pytest.fixture(scope="module", autouse=True)
def _cli():
    yield
    fixtures.close_cli()


def damaged(tmp_path, tmp_path_factory, name: str) -> tuple[fixtures.Case, str]:
    base = fixtures.base(tmp_path_factory, loose=name.startswith("loose-"))
    repo = base.copy(tmp_path / "repo")
    return fixtures.Case(repo, tmp_path), corpus.DAMAGE[name](repo)


@pytest.mark.parametrize("name", sorted(corpus.DAMAGE))
def test_damaged_repository(tmp_path, tmp_path_factory, name):
    case, broke = damaged(tmp_path, tmp_path_factory, name)
    repo = case.repo
    if name in FORMAT_BROKEN:
        for args in (["log"], ["log", repo.main_exec], ["cat-object", repo.main_result], ["reindex"], ["export"]):
            err = assert_outcome(case.objstore(*args), 1)
            assert str(repo.path) in err and ("objstore.json" in err or "newer" in err), err
        fsck = case.objstore("fsck")
        assert_outcome(fsck, 1, report=True)
        assert "objstore.json" in fsck.stdout or "newer" in fsck.stderr
        with pytest.raises(ObjstoreRedunError) as info:
            case.run(wf.main(4))
        assert str(repo.path) in str(info.value) and "\n" not in str(info.value)
        return

    listed = case.objstore("log")
    assert_outcome(listed, 0)
    for exec_id in (repo.main_exec, repo.handle_exec):
        # every execution is still listed (but the one whose only journal segment was cut:
        # fsck --repair brings it back, test_a_truncated_journal_segment_is_recovered_...)
        assert (exec_id[:8] in listed.stdout) == (name != "journal-truncated" or exec_id != repo.main_exec)
    assert_outcome(case.objstore("log", repo.handle_exec), 0)  # an undamaged record reads
    assert_outcome(case.objstore("log", repo.main_exec), 1 if name == "journal-truncated" else 0)
    cat = case.objstore("cat-object", "-t", repo.main_result)
    if name in RESULT_UNREADABLE:
        err = assert_outcome(cat, 1)
        assert repo.main_result in err, err
    else:
        assert_outcome(cat, 0)
        assert cat.stdout == "value\n"  # never another object's bytes
    fsck = case.objstore("fsck")
    clean = name in ("format-created-number", "journal-bad-ids")  # the latter: a warning, readers skip them
    assert_outcome(fsck, 0 if clean else 1, report=True)
    assert ("0 error(s)" in fsck.stdout) == clean, fsck.stdout
    assert name != "journal-bad-ids" or "malformed" in fsck.stdout, fsck.stdout
    assert_outcome(case.objstore("reindex", "--full-scan"), 0)
    export = case.objstore("export")  # a damaged object is skipped with a warning, the rest goes out
    assert_outcome(export, 0)
    assert repo.handle_exec in export.stdout

    # redun: the right result always; a re-run of what was damaged, cached where it survived.
    result, ran = case.run(wf.main(4))
    assert result == wf.expected(4)
    if name == "journal-truncated":  # main(4)'s records are in a pack no segment lists now
        assert "main(4)" in ran
    else:
        assert set(ran) <= {"total"}, ran
        assert ("total" in ran) == (name in RESULT_UNREADABLE | HEAD_REPLAYED), ran
    result, ran = case.run(wf.main(4))
    assert result == wf.expected(4) and ran == (["total"] if name in HEAD_REPLAYED else []), ran
    result, ran = case.run(wf.with_handle(1))
    assert ran == [], ran  # the other execution's cache survived every case
    # ... and what the runs re-recorded repaired the objects: they read again.
    assert_outcome(case.objstore("cat-object", "-t", repo.main_result), 0)
    if name.startswith("loose-"):
        assert_outcome(case.objstore("fsck"), 0)  # clean again
    assert_outcome(case.objstore("log", repo.handle_exec), 0)


def test_a_truncated_journal_segment_is_recovered_by_fsck_repair(tmp_path, tmp_path_factory):
    """The records of a segment cut short are still in their pack: `fsck --repair` journals
    them again from the packs' tocs, and a fresh index reads them. (The eval heads that segment
    carried lived only there, on a local disk: main(4) is then a miss, with the right result.)"""
    case, _ = damaged(tmp_path, tmp_path_factory, "journal-truncated")
    assert_outcome(case.objstore("log", case.repo.main_exec), 1)
    assert_outcome(case.objstore("fsck"), 1, report=True)
    repair = case.objstore("fsck", "--repair")
    assert_outcome(repair, 0, report=True)
    assert "journaled 25 objects" in repair.stdout, repair.stdout
    fresh = fixtures.Case(case.repo, tmp_path / "other-host")
    assert_outcome(fresh.objstore("log", case.repo.main_exec), 0)
    assert_outcome(fresh.objstore("cat-object", "-t", case.repo.main_result), 0)
    assert_outcome(fresh.objstore("fsck"), 0, report=True)
    result, ran = case.run(wf.main(4))
    assert result == wf.expected(4)


def test_a_bad_eval_head_file_is_skipped_or_a_miss_after_a_full_scan(tmp_path, tmp_path_factory):
    """evals/ files are written on shared storage only; a full-scan reindex reads them. One that
    names a value stored nowhere becomes a cache miss (a re-run), garbage is skipped."""
    for name in ("evals-missing-value", "evals-garbage"):
        case, _ = damaged(tmp_path / name, tmp_path_factory, name)
        index = tmp_path / name / "ix-scan"
        proc = fixtures.cli().run(["--repo", case.repo.url, "--index-dir", str(index), "reindex", "--full-scan"],
                                  cwd=case.tmp, env=case.env)  # fmt: skip
        assert_outcome(proc, 0)
        result, ran = case.run(wf.main(4), index="ix-scan")
        assert result == wf.expected(4)
        assert set(ran) <= {"total"}, ran


def test_a_damaged_handle_ref_never_makes_a_rolled_back_handle_valid(tmp_path, tmp_path_factory):
    for name in ("ref-torn", "ref-garbage"):
        case, _ = damaged(tmp_path / name, tmp_path_factory, name)
        assert "refs/handles/hostile.rolled" in case.objstore("fsck").stdout  # found ...
        result, ran = case.run(wf.bump(wf.Counter("rolled", start=2), 2))
        assert ran == ["bump(2)"], ran  # a miss: the rollback is not forgotten as a hit
        assert_outcome(case.objstore("fsck"), 0, report=True)  # the ref is written readably again
