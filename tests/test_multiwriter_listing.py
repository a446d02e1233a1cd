"""Refresh lists only what is new (issue 12, item 1): journal/ is listed from a marker.

* BlobStore.list_after lists only the names after a marker, on every store kind;
* a refresh after N new segments asks S3 for the tail only (one ListObjectsV2 with StartAfter,
  N keys back, however long the journal), and locally lists from the marker too;
* a segment stamped "in the past" within the journal_skew window is found by the next refresh,
  one beyond it by the next full listing (periodic, forced, on a fresh index, after reindex);
* checkpoints written by a compaction are found by the tail listing, and a segment retired under
  a refresh sends it back to a full listing.
"""

from __future__ import annotations

import datetime as _dt
import time

import pytest
import servers
from maint_helpers import populate, snapshot, value

from objstore import format as fmt
from objstore import layout
from objstore.repo import Repository
from objstore.repo import journal as jmod
from objstore.repo.compaction import survey


def open_repo(target, index_dir, **kw) -> Repository:
    return Repository.open(target.url, target.storage_options, index_dir=index_dir, **kw)


def set_setting(repo: Repository, name: str, value) -> None:
    repo.write_format(fmt.with_setting(repo.format, name, value))


def stamped(repo: Repository, when: _dt.datetime) -> None:
    """Make ``repo``'s next segments carry names from ``when`` on (a writer whose clock is off)."""
    steps = iter(range(10**6))
    repo.journal._next_name = lambda: layout.segment_name(when + _dt.timedelta(milliseconds=next(steps)), repo.writer_id)


def flush_values(repo: Repository, prefix: str, n: int = 1) -> list[str]:
    ids = []
    for i in range(n):
        item = value(f"{prefix}-{i}")
        repo.add(*item)
        repo.flush()
        ids.append(item[0])
    return ids


class ListCounter:
    """Counts a BlobStore's listings by kind (list_after: the tail; the others: everything)."""

    def __init__(self, blobs):
        self.calls: list[tuple[str, str]] = []
        for name in ("list_after", "list_names", "list_keys", "list_details", "list_sized"):
            original = getattr(blobs, name)

            def counted(*args, _name=name, _original=original, **kwargs):
                self.calls.append((_name, str(args[0]) if args else ""))
                return _original(*args, **kwargs)

            setattr(blobs, name, counted)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


# -- the store primitive ----------------------------------------------------------------------


def test_list_after_lists_the_names_after_the_marker_only(target):
    fs, root = target.fs(), target.root
    from objstore.store import open_blobs

    blobs = open_blobs(fs, root)
    names = [f"2026010{d}T000000.000000Z-{w}" for d in range(1, 6) for w in ("aaaaaaaa", "bbbbbbbb")]
    for n in names:
        assert blobs.create(f"journal/{n}", b"x")
    blobs.create("journal/sub/20270101T000000.000000Z-cccccccc", b"nested: not in the flat listing")
    blobs.create("journalx/20270101T000000.000000Z-cccccccc", b"a sibling prefix")
    sent: list[dict] = []
    if target.name == "gcs":  # the listing asks for startOffset (tools/gcs_emulator.py honours it)
        call = blobs.fs._call

        async def recorded(method, path, *args, **kwargs):
            answer = await call(method, path, *args, **kwargs)
            if "startOffset" in kwargs:
                sent.append({**kwargs, "got": len(answer.get("items", []))})
            return answer

        blobs.fs._call = recorded
    assert blobs.list_after("journal", "") == names
    assert blobs.list_after("journal", "20260103T000000.000000Z") == names[4:]  # a time prefix: both writers
    assert blobs.list_after("journal", names[4]) == names[5:]  # strictly after
    assert blobs.list_after("journal", "20270101") == []
    assert blobs.list_after("nothing-here", "") == []
    assert blobs.lists_after_natively == target.is_remote
    if target.name == "gcs":
        asked = [k for k in sent if k["startOffset"] == f"{root.split('/', 1)[1]}/journal/{names[4]}"]
        assert asked and asked[0]["got"] == len(names) - 4, sent  # inclusive: the marker, and what follows


# -- a refresh lists the tail only ------------------------------------------------------------


@pytest.mark.remote
def test_a_refresh_after_n_segments_sends_s3_one_list_of_the_tail(tmp_path, s3_server):
    target = servers.make_target("s3", tmp_path=tmp_path, server=s3_server)
    old_segments, new_segments = 40, 6
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "b") as b:
        stamped(b, _dt.datetime.now(_dt.UTC) - _dt.timedelta(hours=3))  # an old journal, outside the window
        flush_values(b, "old", old_segments)
        b.journal._next_name = jmod.Journal._next_name.__get__(b.journal)  # on time again
        flush_values(b, "recent")
        with open_repo(target, tmp_path / "a") as a:
            assert a.journal.last_listing == "full"  # opening a fresh index lists everything once
            ids = flush_values(b, "new", new_segments)
            requests: list[dict] = []
            returned: list[int] = []
            client = a.fs.s3
            client.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda params, **_: requests.append(dict(params)))
            client.meta.events.register(
                "after-call.s3.ListObjectsV2", lambda parsed, **_: returned.append(len(parsed.get("Contents", [])))
            )
            assert a.refresh() == new_segments
            assert a.journal.last_listing == "tail"
            assert len(requests) == 1, requests
            assert requests[0]["StartAfter"].startswith(requests[0]["Prefix"] + "20")
            # The tail only: the segment A's marker names (within the window) and the new ones.
            assert returned == [new_segments + 1]
            assert all(a.has(i) for i in ids)
            requests.clear()
            returned.clear()
            assert a.refresh() == 0  # nothing new: one LIST of the window, none of the old
            assert len(requests) == 1 and returned == [new_segments + 1]


def test_a_refresh_lists_from_the_marker_locally_too(tmp_path):
    url = str(tmp_path / "repo")
    with Repository.init(url, index_dir=tmp_path / "b") as b, Repository.open(url, index_dir=tmp_path / "a") as a:
        flush_values(b, "first")
        a.refresh()  # the index has seen a segment: from now on it lists from its marker
        flush_values(b, "x", 5)
        counter = ListCounter(a.blobs)

        def no_full_listing():
            raise AssertionError("a refresh listed the whole journal")

        a.journal.names = no_full_listing
        assert a.refresh() == 5
        assert counter.calls[0] == ("list_after", "journal")


# -- clock skew: the window and the full listing ----------------------------------------------


@pytest.fixture(params=servers.backend_params(("local", "s3")))
def skew_target(request, tmp_path):
    t = servers.make_target_for(request, tmp_path)
    yield t
    servers.discard_target(t)


def test_a_late_segment_within_the_window_is_found_and_one_beyond_it_by_the_full_listing(skew_target, tmp_path):
    target = skew_target
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "a") as a:
        set_setting(a, "journal_skew", 60)
        set_setting(a, "journal_full_listing", 3600)
    with open_repo(target, tmp_path / "a") as a, open_repo(target, tmp_path / "b") as b:
        assert (a.journal.skew, a.journal.full_every) == (60, 3600)
        flush_values(b, "now")
        a.refresh()
        now = _dt.datetime.now(_dt.UTC)
        # B's clock runs 30 s behind: inside the 60 s window, found by the next tail listing.
        stamped(b, now - _dt.timedelta(seconds=30))
        within = flush_values(b, "within")
        assert a.refresh() == 1 and a.journal.last_listing == "tail"
        assert a.has(within[0])
        # B's clock runs 10 minutes behind: the tail listing cannot see it ...
        stamped(b, now - _dt.timedelta(minutes=10))
        beyond = flush_values(b, "beyond")
        assert a.refresh() == 0 and a.journal.last_listing == "tail"
        assert not a.index.has("objects", beyond[0])
        # ... the full listing does, when asked ...
        assert a.refresh(full=True) == 1 and a.journal.last_listing == "full"
        assert a.has(beyond[0])
        # ... and when it is due (journal_full_listing seconds after the last one).
        later = flush_values(b, "beyond-again")
        assert a.refresh() == 0
        a.journal.full_every = 0.5
        time.sleep(0.6)
        assert a.refresh() == 1 and a.journal.last_listing == "full"
        assert a.has(later[0])


def test_a_writer_whose_clock_runs_ahead_does_not_hide_everyone_elses_segments(tmp_path):
    url = str(tmp_path / "repo")
    with Repository.init(url, index_dir=tmp_path / "a") as a, Repository.open(url, index_dir=tmp_path / "b") as b, \
            Repository.open(url, index_dir=tmp_path / "c") as c:  # fmt: skip
        a.refresh()
        stamped(b, _dt.datetime.now(_dt.UTC) + _dt.timedelta(days=2))  # B's clock is two days fast
        ahead = flush_values(b, "ahead")
        assert a.refresh() == 1
        # The marker never passes A's own clock, so C's segments (on time) still sort after it.
        marker = a.index.meta_get(jmod.MARKER_META)
        assert layout.journal_time(marker) <= _dt.datetime.now(_dt.UTC)
        on_time = flush_values(c, "on-time", 2)
        assert a.refresh() == 2 and a.journal.last_listing == "tail"
        assert all(a.has(i) for i in ahead + on_time)


def test_a_fresh_index_and_a_reindex_list_everything(tmp_path):
    url = str(tmp_path / "repo")
    with Repository.init(url, index_dir=tmp_path / "b") as b:
        stamped(b, _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=1))
        old = flush_values(b, "old", 3)
        with Repository.open(url, index_dir=tmp_path / "a") as a:  # a new index: one full listing
            assert a.journal.last_listing == "full" and all(a.has(i) for i in old)
            expected = snapshot(a)
            a.refresh()
            assert a.journal.last_listing == "tail"
            a.reindex()
            assert a.journal.last_listing == "full"
            assert snapshot(a) == expected


# -- checkpoints ------------------------------------------------------------------------------


def test_a_tail_listing_finds_a_checkpoint(tmp_path):
    url = str(tmp_path / "repo")
    with Repository.init(url, index_dir=tmp_path / "w", auto_compact=False) as w, \
            Repository.open(url, index_dir=tmp_path / "r", auto_compact=False) as r:  # fmt: skip
        flush_values(w, "first")
        r.refresh()
        populate(w, flushes=6)
        assert w.compact() is not None
        w.compactor.retire(w.compactor.retirable(survey(w.blobs), grace=0))
        # R never saw the segments; they are gone, and the checkpoint is new: the tail finds it.
        assert r.refresh() == 1 and r.journal.last_listing == "tail"
        w.refresh()
        assert snapshot(r) == snapshot(w)


def test_a_segment_retired_under_a_tail_listing_sends_the_refresh_to_a_full_listing(tmp_path):
    url = str(tmp_path / "repo")
    with Repository.init(url, index_dir=tmp_path / "w", auto_compact=False) as w, \
            Repository.open(url, index_dir=tmp_path / "r", auto_compact=False) as r:  # fmt: skip
        flush_values(w, "first")
        r.refresh()
        populate(w, flushes=4)
        stale = w.journal.names()  # what R's listing saw, before a compaction retired it all
        assert w.compact() is not None
        w.compactor.retire(w.compactor.retirable(survey(w.blobs), grace=0))
        tail = r.blobs.list_after
        calls = []

        def stale_then_real(prefix, start):
            calls.append(start)
            return [n for n in stale if n > start] if len(calls) == 1 else tail(prefix, start)

        r.blobs.list_after = stale_then_real
        r.refresh()
        assert len(calls) == 1 and r.journal.last_listing == "full"  # the second listing was full
        w.refresh()
        assert snapshot(r) == snapshot(w)


def test_the_compaction_threshold_still_counts_segments_listed_by_tail_listings(tmp_path):
    url = str(tmp_path / "repo")
    with Repository.init(url, index_dir=tmp_path / "w") as w:
        set_setting(w, "compact_threshold", 5)
    with Repository.open(url, index_dir=tmp_path / "w") as w, Repository.open(url, index_dir=tmp_path / "r") as r:
        r.refresh()
        flush_values(w, "a", 3)
        r.refresh()
        flush_values(w, "b", 3)
        r.refresh()  # two tail listings of 3 each: 6 uncovered segments known, past the threshold
        assert r.journal.last_listing == "tail"
        r.close()  # joins the background compaction
        assert any(layout.is_checkpoint_name(n) for n in w.journal.names())


def test_a_pull_makes_the_copied_segments_visible_though_their_names_are_old(tmp_path):
    import os
    import subprocess
    import sys

    from objstore.repo import cache_home, default_index_dir

    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    with Repository.init(src, index_dir=tmp_path / "src-index") as s:
        stamped(s, _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=2))  # recorded two days ago, elsewhere
        copied = flush_values(s, "elsewhere", 3)
    index = default_index_dir(dst, cache_home({"XDG_CACHE_HOME": str(tmp_path / "cache")}))
    with Repository.init(dst, index_dir=index) as d:
        flush_values(d, "here")
        d.refresh()  # this machine's index of dst lists from its marker (now) from here on
        assert d.journal.tail_start() is not None
    proc = subprocess.run([sys.executable, "-m", "objstore.cli", "--repo", dst, "pull", src],
                          capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Repository.open(dst, index_dir=index) as d:  # opening an existing index reads nothing
        assert all(d.index.has("objects", i) for i in copied)


def test_the_listing_settings_through_objstore_config(tmp_path):
    import os
    import subprocess
    import sys

    url = str(tmp_path / "repo")
    Repository.init(url, index_dir=tmp_path / "i").close()
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))

    def config(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "objstore.cli", "--repo", url, "config", *args],
                              capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip

    assert config("journal_skew", "120").returncode == 0
    assert config("journal_full_listing", "0").returncode == 0
    shown = config()
    assert shown.returncode == 0 and "journal_skew" in shown.stdout and "120" in shown.stdout
    with Repository.open(url, index_dir=tmp_path / "i") as repo:
        assert (repo.journal.skew, repo.journal.full_every) == (120, 0)
        flush_values(repo, "x")
        repo.refresh()
        assert repo.journal.last_listing == "full"  # 0: every refresh lists all of journal/
    bad = config("journal_skew", "-5")
    # A usage error, as argparse gives one: the usage line, then one line naming the problem.
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == "objstore: error: journal_skew must not be negative"


def test_a_full_listing_that_fails_half_way_is_made_again_by_the_next_refresh(tmp_path):
    from objstore.errors import StorageError

    url = str(tmp_path / "repo")
    with Repository.init(url, index_dir=tmp_path / "a") as a, Repository.open(url, index_dir=tmp_path / "b") as b:
        flush_values(b, "first")
        a.refresh()
        stamped(b, _dt.datetime.now(_dt.UTC) - _dt.timedelta(hours=1))  # beyond the window
        late = flush_values(b, "late")
        a.journal.full_every = 0.5
        time.sleep(0.6)  # a full listing is due
        read_many = a.blobs.read_many

        def failing(keys):
            raise StorageError("the network went away")

        a.blobs.read_many = failing
        with pytest.raises(StorageError):
            a.refresh()
        a.blobs.read_many = read_many
        a.journal.full_every = 3600  # due or not, the failed full listing must be made again
        assert a.refresh() == 1 and a.journal.last_listing == "full"
        assert a.has(late[0])
