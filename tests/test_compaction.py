"""Journal compaction (format 3.0): checkpoints fold segments, readers load them, late segments
still count, a reader mid-refresh ends complete, and gc retires what checkpoints cover."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from maint_helpers import cli, library, make_env, one_line_error, out, populate, snapshot, value

from objstore import codec, hashing, layout
from objstore.errors import FormatError
from objstore.repo import Repository
from objstore.repo import checkpoint as ckpt
from objstore.repo.compaction import survey


def open_repo(target, index_dir, **kw) -> Repository:
    return Repository.open(target.url, target.storage_options, index_dir=index_dir, **kw)


def compact_and_retire(repo: Repository) -> str:
    name = repo.compact()
    assert name is not None
    repo.compactor.retire(repo.compactor.retirable(survey(repo.blobs), grace=0))
    return name


# -- the file format --------------------------------------------------------------------------


def test_checkpoint_round_trip_keeps_sources_tombstones_and_odd_strings():
    fold = ckpt.Fold({"objects": False, "evals": False, "subvalues": True, "job_start": False})
    a, b = fold.add_source("20260101T000000.000000Z-aaaaaaaa"), fold.add_source("20260101T000001.000000Z-bbbbbbbb")
    fold.apply([("put", "objects", "k1", "value"), ("put", "evals", "e1", "v-old"), ("add", "subvalues", "p", "c1"),
                ("add", "subvalues", "p", "c2"), ("put", "job_start", "j", '{"a":"x\\ny"}')], a)
    fold.apply([("put", "evals", "e1", "v-new"), ("del", "subvalues", "p", "c1"), ("delall", "objects", "k1", ""),
                ("add", "evals", "e2", "first"), ("put", "job_start", "j2", "two\nlines"), ("add", "nosuch", "x", "y")], b)
    rows = fold.rows()
    assert fold.skipped == 1
    assert rows["evals"] == (False, [("e1", "v-new", b), ("e2", "first", b | ckpt.ADD)])
    assert rows["objects"] == (False, [("k1", "", b | ckpt.TOMB)])
    assert rows["subvalues"] == (True, [("p", "c1", b | ckpt.TOMB), ("p", "c2", 0)])
    data = ckpt.encode(writer="cafe0001", position="20260101T000001.000000Z-bbbbbbbb", sources=fold.sources, rows=rows)
    head, blocks = ckpt.parse("20260102T000000.000000Z-cafe0001.ckpt", data)
    assert head.sources == fold.sources and head.position.endswith("bbbbbbbb")
    got = {blk.table: [(k.decode(), v.decode(), f) for k, v, f in zip(blk.keys, blk.values, blk.flags)] for blk in blocks}
    assert got["job_start"] == [("j", '{"a":"x\\ny"}', a), ("j2", "two\nlines", b)]  # a newline is kept
    assert got["evals"] == rows["evals"][1]
    # Any flipped byte is a CorruptObject naming the checkpoint, never a wrong row.
    for at in (3, 20, len(data) // 2, len(data) - 5):
        bad = bytearray(data)
        bad[at] ^= 0x40
        with pytest.raises(Exception) as info:
            ckpt.parse("20260102T000000.000000Z-cafe0001.ckpt", bytes(bad))
        assert "20260102T000000.000000Z-cafe0001.ckpt" in str(info.value)


def test_check_block_refuses_what_parse_block_refuses_without_making_the_strings():
    """fsck verifies a checkpoint's blocks with check_block (no string per row, except for the
    objects table it needs): it must refuse every block parse_block refuses."""
    from objstore.errors import CorruptObject
    from objstore.maint import verify

    rows = {"objects": (False, [(f"{i:040x}", "value", 0) for i in range(5)]),
            "evals": (False, [("e1", "v", 0), ("e2", "", 0)]),
            "job_start": (False, [("j", "two\nlines", 0)])}  # fmt: skip
    name = "20260102T000000.000000Z-cafe0001.ckpt"
    data = ckpt.encode(writer="cafe0001", position="20260101T000001.000000Z-bbbbbbbb",
                       sources=["20260101T000001.000000Z-bbbbbbbb"], rows=rows)  # fmt: skip
    head = ckpt.parse_header(data, name)
    for d in head.blocks:
        assert ckpt.check_block(head, d, data) == len(ckpt.parse_block(head, d, data).keys) == d["rows"]
        for wrong in (d["rows"] + 1, d["rows"] - 1):
            lying = dict(d, rows=wrong)
            for check in (ckpt.parse_block, ckpt.check_block):
                with pytest.raises(CorruptObject):
                    check(head, lying, data)
    found = verify.verify_journal(name, data)
    assert found.reason is None and found.entries == 8 and found.ids == [f"{i:040x}" for i in range(5)]
    bad = bytearray(data)
    bad[head.end + head.blocks[0]["offset"] + head.blocks[0]["length"] // 2] ^= 0x40  # the evals block
    assert head.blocks[0]["table"] == "evals"
    assert verify.verify_journal(name, bytes(bad)).reason  # a block fsck does not split is still verified


# -- readers ----------------------------------------------------------------------------------


def test_a_fresh_client_after_compaction_sees_what_one_that_read_every_segment_sees(target, tmp_path):
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "w") as writer:
        made = populate(writer, flushes=8)
        expected = snapshot(writer)
        name = compact_and_retire(writer)
        assert writer.journal.names() == [name]  # every segment retired, the checkpoint listed
        writer.refresh()
        assert snapshot(writer) == expected
    with open_repo(target, tmp_path / "fresh") as fresh:
        assert snapshot(fresh) == expected
        assert [fresh.get(oid) for oid, _, _ in made] == [(k, p) for _, k, p in made]
        # More writes after the checkpoint are segments again, and a second compaction folds both.
        extra = value("after the checkpoint")
        fresh.add(*extra)
        fresh.flush()
        expected = snapshot(fresh)
        compact_and_retire(fresh)
        assert len(fresh.journal.names()) == 1
    with open_repo(target, tmp_path / "fresh2") as again:
        assert snapshot(again) == expected and again.get(extra[0]) == extra[1:]


@pytest.mark.parametrize("target", ["local"], indirect=True)
def test_a_reader_that_saw_part_of_a_checkpoint_never_gets_an_older_value_back(target, tmp_path):
    head = hashing.hash_text("the eval head every flush moves")
    with Repository.init(target.url, index_dir=tmp_path / "w") as writer:
        reader = open_repo(target, tmp_path / "r")
        vals = []
        for i in range(10):
            item = value(f"step {i}")
            writer.add(*item)
            writer.set_eval_head(head, item[0])
            writer.flush()
            vals.append(item)
            if i == 4:
                reader.refresh()  # the reader saw the first five segments
        assert reader.eval_head(head) == vals[4][0]
        found = survey(writer.blobs)  # the compaction lists journal/ ...
        newest = value("written while the compaction ran")
        writer.add(*newest)
        writer.set_eval_head(head, newest[0])
        writer.flush()  # ... a writer adds a newer segment it does not cover ...
        late_reader = open_repo(target, tmp_path / "late")  # ... that this reader ingests now
        assert late_reader.eval_head(head) == newest[0]
        name = writer.compactor.compact(found=found)  # ... and the checkpoint lands
        assert name is not None
        writer.compactor.retire(writer.compactor.retirable(survey(writer.blobs), grace=0))
        for r in (reader, late_reader):
            r.refresh()
            assert r.eval_head(head) == newest[0]
            assert r.get(vals[7][0]) == vals[7][1:]
        with open_repo(target, tmp_path / "fresh") as fresh:
            assert snapshot(reader) == snapshot(fresh) == snapshot(late_reader)
        reader.close()
        late_reader.close()


@pytest.mark.parametrize("target", ["local", "s3"], indirect=True)
def test_a_reader_mid_refresh_during_a_compaction_ends_complete(target, tmp_path):
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "w") as writer:
        populate(writer, flushes=6)
        expected = snapshot(writer)
        reader = Repository.open(target.url, target.storage_options, index_dir=tmp_path / "r")
        reader.index.clear()
        reader.index.meta_put("repo_id", reader.repo_id)
        real = reader.blobs.read_many
        calls = {"n": 0}

        def read_many_after_a_compaction(keys):
            keys = list(keys)
            if calls["n"] == 0:  # the reader listed journal/; now another process compacts and retires
                calls["n"] += 1
                compact_and_retire(writer)
            return real(keys)

        reader.blobs.read_many = read_many_after_a_compaction  # type: ignore[method-assign]
        reader.refresh()
        assert calls["n"] == 1
        assert snapshot(reader) == expected
        reader.close()


@pytest.mark.parametrize("target", ["local"], indirect=True)
def test_a_refresh_killed_between_two_ingest_batches_is_completed_by_the_next(target, tmp_path, monkeypatch):
    from objstore.repo import journal as jmod

    with Repository.init(target.url, index_dir=tmp_path / "w") as writer:
        populate(writer, flushes=8)
        expected = snapshot(writer)
        written = writer.applied_segments()
    # Batches of a few entries: the refresh commits several, and dies after the second.
    monkeypatch.setattr(jmod.IngestBatch.__init__, "__defaults__", (3,))
    commits = {"n": 0}
    real = jmod.IngestBatch.commit

    def commit_then_die(self):
        if self.segments and commits["n"] == 2:
            raise KeyboardInterrupt("killed mid-refresh")
        commits["n"] += bool(self.segments)
        real(self)

    monkeypatch.setattr(jmod.IngestBatch, "commit", commit_then_die)
    with pytest.raises(KeyboardInterrupt):
        Repository.open(target.url, index_dir=tmp_path / "r")
    monkeypatch.setattr(jmod.IngestBatch, "commit", real)
    with Repository.open(target.url, index_dir=tmp_path / "r") as reader:
        half = reader.index.segments()
        assert half and half < written  # what was committed stayed; the marker did not move past the rest
        assert not isinstance(reader.index.meta_get(jmod.MARKER_META), str)
        reader.refresh()
        assert reader.index.segments() == written
        assert snapshot(reader) == expected


@pytest.mark.parametrize("target", ["local"], indirect=True)
def test_late_segments_still_count(target, tmp_path):
    root = target.root
    with Repository.init(target.url, index_dir=tmp_path / "w") as repo:
        populate(repo, flushes=4)
    # An offline copy, written to while the original is compacted and its segments retired.
    shutil.copytree(root, tmp_path / "offline")
    with Repository.open(str(tmp_path / "offline"), index_dir=tmp_path / "o") as copy:
        offline = value("written offline")
        copy.add(*offline)
        copy.flush()
        offline_segment = [n for n in copy.journal.names() if n not in os.listdir(f"{root}/journal")][0]
    with Repository.open(target.url, index_dir=tmp_path / "w") as repo:
        compact_and_retire(repo)
        # A segment with a skewed clock: named a day before everything else.
        skewed = value("skewed clock")
        repo.add(*skewed)
        repo.flush()
        newest = [n for n in repo.journal.names() if layout.is_segment_name(n)][-1]
        old_name = "20000101T000000.000000Z-" + newest.split("-", 1)[1]
        os.rename(f"{root}/journal/{newest}", f"{root}/journal/{old_name}")
        # The copy is merged in afterwards, objects first (as any copy-merge does).
        shutil.copytree(tmp_path / "offline" / "objects", f"{root}/objects", dirs_exist_ok=True)
        shutil.copy(tmp_path / "offline" / "journal" / offline_segment, f"{root}/journal/{offline_segment}")
        reader = Repository.open(target.url, index_dir=tmp_path / "fresh")
        assert reader.get(offline[0]) == offline[1:] and reader.get(skewed[0]) == skewed[1:]
        reader.close()
        compact_and_retire(repo)  # the next compaction folds them in
        assert len(repo.journal.names()) == 1
    with Repository.open(target.url, index_dir=tmp_path / "fresh2") as again:
        assert again.get(offline[0]) == offline[1:] and again.get(skewed[0]) == skewed[1:]


@pytest.mark.parametrize("target", ["memory", "local"], indirect=True)
def test_two_compactions_at_once_are_harmless_and_merged_later(target, tmp_path):
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "w") as a:
        populate(a, flushes=5)
        expected = snapshot(a)
        b = open_repo(target, tmp_path / "b")
        found = survey(a.blobs)
        first, second = a.compactor.compact(found=found), b.compactor.compact(found=found)
        assert first and second and first != second
        b.close()
        with open_repo(target, tmp_path / "fresh") as fresh:
            assert snapshot(fresh) == expected
        compact_and_retire(a)
        assert len(a.journal.names()) == 1
    with open_repo(target, tmp_path / "fresh2") as fresh:
        assert snapshot(fresh) == expected


@pytest.mark.parametrize("target", ["local"], indirect=True)
def test_compaction_starts_by_itself_past_the_threshold(target, tmp_path):
    with Repository.init(target.url, index_dir=tmp_path / "w") as repo:
        from objstore import format as fmt

        repo.write_format(fmt.with_setting(repo.format, "compact_threshold", 5))
        populate(repo, flushes=3)
        repo.refresh()
        repo.auto_compaction.join()
        assert not any(layout.is_checkpoint_name(n) for n in repo.journal.names())  # 4 < 5
        populate(repo, flushes=3, prefix="w")
        repo.refresh()
        repo.auto_compaction.join()
        names = repo.journal.names()
        assert sum(layout.is_checkpoint_name(n) for n in names) == 1
        expected = snapshot(repo)
    with open_repo(target, tmp_path / "fresh") as fresh:
        assert snapshot(fresh) == expected


@pytest.mark.parametrize("target", ["s3"], indirect=True)
def test_a_shared_major_2_repository_is_not_compacted(target, tmp_path):
    with Repository.init(target.url, target.storage_options, index_dir=tmp_path / "w") as repo:
        populate(repo, flushes=3)
    fs = target.fs()
    path = f"{target.root}/objstore.json"
    doc = json.loads(fs.cat_file(path))
    fs.pipe_file(path, codec.canonical_json(dict(doc, version=[2, 1])))
    with open_repo(target, tmp_path / "r") as repo:
        assert repo.format["version"] == [2, 1]  # shared: not migrated on open
        with pytest.raises(FormatError, match="compaction needs format 3.0"):
            repo.compact()


def test_gc_compacts_the_journal_and_a_new_client_reads_the_checkpoint(tmp_path):
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    url = str(tmp_path / ".objstore")
    with library(url, env) as repo:
        made = populate(repo, flushes=6)
    dry = out(cli(["gc", "--dry-run", "--grace", "0"], tmp_path, env, check=0))
    assert "would compact 7 journal file(s)" in dry
    assert len(os.listdir(tmp_path / ".objstore" / "journal")) == 7  # a dry run changes nothing
    text = out(cli(["gc", "--grace", "0"], tmp_path, env, check=0))
    assert "compacted 7 journal file(s) into" in text and "removed 7 journal file(s) a checkpoint covers" in text
    names = os.listdir(tmp_path / ".objstore" / "journal")
    assert len(names) == 1 and names[0].endswith(".ckpt")
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "another-index"))
    oid, _, payload = made[3]
    assert cli(["cat-object", "--raw", oid], tmp_path, e2, check=0).stdout == payload
    assert cli(["fsck"], tmp_path, e2).returncode == 0


def test_a_sync_carries_a_compacted_journal_and_refuses_a_destination_that_cannot_read_it(tmp_path):
    """Sync copies journal checkpoints (whose sources gc removed) like segments, after the
    objects they name; a destination of format 2.x would ignore them, so it is refused."""
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    url = str(tmp_path / ".objstore")
    with library(url, env) as repo:
        made = populate(repo, flushes=6)
        heads = dict(repo.index.scan("evals"))
    cli(["gc", "--grace", "0"], tmp_path, env, check=0)
    assert all(n.endswith(".ckpt") for n in os.listdir(tmp_path / ".objstore" / "journal"))
    old = tmp_path / "old"
    cli(["init", str(old)], tmp_path, env, check=0)
    cli(["--repo", str(old), "db", "downgrade", "2.1"], tmp_path, env, check=0)
    refused = cli(["sync", url, str(old)], tmp_path, env)
    one_line_error(refused, 1, "cannot hold journal checkpoints")
    assert not [p for p in old.rglob("*") if p.is_file() and p.name != "objstore.json"]  # nothing copied
    dst = tmp_path / "dst"
    cli(["init", str(dst)], tmp_path, env, check=0)
    cli(["sync", url, str(dst)], tmp_path, env, check=0)
    assert any(n.endswith(".ckpt") for n in os.listdir(dst / "journal"))
    e2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "fresh-index"))
    for oid, _, payload in made:
        assert cli(["--repo", str(dst), "cat-object", "--raw", oid], tmp_path, e2, check=0).stdout == payload
    with Repository.open(str(dst), index_dir=str(tmp_path / "fresh-index")) as copy:
        assert dict(copy.index.scan("evals")) == heads
    assert cli(["--repo", str(dst), "fsck"], tmp_path, e2).returncode == 0


def test_a_segment_listing_is_checked_at_once_and_a_bad_item_still_skipped(caplog):
    from objstore.repo import segments

    good = [["a" * 40, "value"], ["12345678-1234-1234-1234-123456789abc", "job"]]
    assert segments._listing(good, "journal/x") == good
    hostile = [["../../etc/passwd", "value"], ["a" * 40 + "\n" + "b" * 40, "value"], ["A" * 40, "value"],
               ["a" * 40, 7], "a" * 40, ["a" * 40]]  # fmt: skip
    assert segments._listing(good + hostile, "journal/x") == good
    assert caplog.text.count("skipping malformed object listing") == len(hostile)
    data = segments.encode("w1", good + hostile[:3], [])
    assert segments.parse("20260101T000000.000000Z-w1", data).listing == good


def test_a_fresh_client_loads_a_checkpoint_with_collection_off_and_columns_iterated_again(tmp_path, monkeypatch):
    """A checkpoint holds millions of rows: its load runs without cyclic collection (which
    walked the caller's whole heap again and again: a cold refresh of 10^6 records took 4.0 s,
    3.2 s without), and its rows reach LMDB as two columns, not a list of tuples (-336 MB peak);
    a load retried after the map grew iterates the columns again and loses no row."""
    import gc

    import lmdb

    from objstore.index import Index, Pairs

    url = str(tmp_path / "repo")
    with Repository.init(url, index_dir=tmp_path / "w") as writer:
        populate(writer, flushes=3)
        expected = snapshot(writer)
        compact_and_retire(writer)
    seen: list[tuple[bool, list[str]]] = []
    real_load = Index.load

    def load(self, groups, **kw):
        groups = list(groups)
        seen.append((gc.isenabled(), [type(rows).__name__ for _, _, rows in groups]))
        core = self.writes.core
        real_write = core._write

        def write_twice(body):
            runs = []

            def full_once(txn):  # the map is full after all rows went in: aborted and retried
                body(txn)
                runs.append(1)
                if len(runs) == 1:
                    raise lmdb.MapFullError("full")

            real_write(full_once)
            assert len(runs) == 2

        core._write = write_twice
        try:
            return real_load(self, groups, **kw)
        finally:
            del core._write

    monkeypatch.setattr(Index, "load", load)
    assert gc.isenabled()
    with Repository.open(url, index_dir=tmp_path / "fresh") as fresh:
        assert snapshot(fresh) == expected
    assert gc.isenabled()
    assert seen and all(not enabled for enabled, _ in seen), seen
    assert any(Pairs.__name__ in kinds for _, kinds in seen), seen
    rows = Pairs([b"a", b"b"], [b"1", b"2"])
    assert list(rows) == list(rows) == [(b"a", b"1"), (b"b", b"2")] and rows[::2] == [(b"a", b"1")]
    with pytest.raises(ValueError):
        Pairs([b"a"], [])
