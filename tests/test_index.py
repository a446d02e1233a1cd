"""The LMDB index: tables, multi values, one-txn atomicity, map growth, processes, reopen."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from objstore.errors import IndexUnavailable, ObjstoreError, ValueTooLarge
from objstore.index import (
    MAX_KEY_BYTES,
    MISSING,
    Index,
    check_local_path,
    filesystem_type,
)

TABLES = {"objects": False, "tags": True, "evals": False}


@pytest.fixture
def ix(tmp_path):
    index = Index(tmp_path / "ix", TABLES)
    yield index
    index.close()


def test_single_table_put_get_overwrite(ix):
    assert ix.get("objects", "a") is MISSING
    ix.apply([("put", "objects", "a", "value")])
    assert ix.get("objects", "a") == "value"
    ix.apply([("put", "objects", "a", "task")])
    assert ix.get("objects", "a") == "task"
    assert ix.has("objects", "a") and not ix.has("objects", "b")


def test_multi_table_values_sorted_and_ops(ix):
    ix.apply([("add", "tags", "k", v) for v in ["c", "a", "b", "a"]])
    assert ix.get_all("tags", "k") == ["a", "b", "c"]
    assert ix.get("tags", "k") == "a"
    ix.apply([("del", "tags", "k", "b")])
    assert ix.get_all("tags", "k") == ["a", "c"]
    ix.apply([("put", "tags", "k", "z")])  # put replaces every value
    assert ix.get_all("tags", "k") == ["z"]
    ix.apply([("add", "tags", "k", "y"), ("delall", "tags", "k", "")])
    assert ix.get_all("tags", "k") == []
    assert ix.get_all("tags", "missing") == []


def test_single_table_add_is_add_if_absent_and_del_checks_value(ix):
    ix.apply([("add", "objects", "a", "first"), ("add", "objects", "a", "second")])
    assert ix.get("objects", "a") == "first"
    ix.apply([("del", "objects", "a", "other")])
    assert ix.get("objects", "a") == "first"
    ix.apply([("del", "objects", "a", "first")])
    assert ix.get("objects", "a") is MISSING


def test_unicode_keys_and_values_roundtrip(ix):
    ix.apply([("put", "objects", "clé/é", "välue ✓"), ("add", "tags", "ключ", "значение")])
    assert ix.get("objects", "clé/é") == "välue ✓"
    assert ix.get_all("tags", "ключ") == ["значение"]


def test_scan_prefix_ordered_and_chunked(ix):
    entries = [("put", "objects", f"p{i:05d}", str(i)) for i in range(3000)]
    entries += [("put", "objects", "q", "x"), ("put", "objects", "o", "y")]
    entries += [("add", "tags", f"t{i:03d}", f"v{j}") for i in range(700) for j in range(3)]
    ix.apply(entries)
    got = list(ix.scan("objects", "p"))
    assert got == [(f"p{i:05d}", str(i)) for i in range(3000)]  # crosses several chunks
    assert [k for k, _ in ix.scan("objects")][:1] == ["o"]
    tags = list(ix.scan("tags", "t"))
    assert tags == [(f"t{i:03d}", f"v{j}") for i in range(700) for j in range(3)]
    assert list(ix.scan("objects", "zzz")) == []
    assert ix.count("objects") == 3002


def test_get_many_keeps_order(ix):
    ix.apply([("put", "objects", "b", "2"), ("put", "objects", "a", "1")])
    assert ix.get_many("objects", ["a", "x", "b"]) == ["1", MISSING, "2"]


def test_get_all_many_is_get_all_of_each(ix):
    ix.apply([("add", "tags", "b", "2"), ("add", "tags", "b", "1"), ("add", "tags", "c", "3"), ("put", "objects", "a", "1")])
    keys = ["b", "x", "c", "b", "a"]
    assert ix.get_all_many("tags", keys) == [ix.get_all("tags", k) for k in keys] == [["1", "2"], [], ["3"], ["1", "2"], []]
    assert ix.get_all_many("objects", ["a", "b"]) == [["1"], []]
    assert ix.get_all_many("tags", []) == []
    with pytest.raises(ValueError):
        ix.get_all_many("tags", ["b", ""])
    with pytest.raises(KeyError):
        ix.get_all_many("nosuchtable", ["b"])


def test_apply_is_one_transaction_bad_entry_applies_nothing(ix):
    ix.apply([("put", "objects", "keep", "1")])
    with pytest.raises(KeyError):
        ix.apply([("put", "objects", "new", "1"), ("put", "nosuchtable", "k", "v")])
    with pytest.raises(ValueError):
        ix.apply([("put", "objects", "new", "1"), ("frob", "objects", "k", "v")])
    with pytest.raises(ValueTooLarge):
        ix.apply([("put", "objects", "new", "1"), ("put", "objects", "k" * 600, "v")])
    assert ix.get("objects", "new") is MISSING
    assert ix.segments() == set()


def test_apply_generator_failing_midway_applies_nothing(ix):
    def entries():
        yield ("put", "objects", "a", "1")
        yield ("add", "tags", "t", "1")
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError):
        ix.apply(entries(), segment="seg-1")
    assert ix.get("objects", "a") is MISSING
    assert ix.get_all("tags", "t") == []
    assert not ix.has_segment("seg-1")


def test_segment_marked_in_same_txn(ix):
    ix.apply([("put", "objects", "a", "1")], segment="20250101T000000.000000Z-w1")
    assert ix.has_segment("20250101T000000.000000Z-w1")
    assert ix.segments() == {"20250101T000000.000000Z-w1"}
    ix.apply([], segment="empty-seg")
    assert ix.segments() == {"20250101T000000.000000Z-w1", "empty-seg"}


def test_key_limits_are_clear_errors(ix):
    ok = "k" * MAX_KEY_BYTES
    ix.apply([("put", "objects", ok, "v")])
    assert ix.get("objects", ok) == "v"
    with pytest.raises(ValueTooLarge, match="511-byte limit"):
        ix.get("objects", "k" * (MAX_KEY_BYTES + 1))
    with pytest.raises(ValueTooLarge):  # multi-byte chars count as bytes
        ix.apply([("put", "objects", "é" * 300, "v")])
    with pytest.raises(ValueTooLarge):  # dupsort values are keys too
        ix.apply([("add", "tags", "k", "v" * 600)])
    with pytest.raises(ValueError):
        ix.apply([("put", "objects", "", "v")])
    # a large value in a single table is fine
    ix.apply([("put", "objects", "big", "v" * 100_000)])
    assert len(ix.get("objects", "big")) == 100_000
    assert isinstance(ValueTooLarge("x"), ObjstoreError)


def test_meta_and_clear(ix):
    ix.meta_put("repo_id", "abc")
    ix.apply([("put", "objects", "a", "1"), ("add", "tags", "t", "1")], segment="s")
    assert ix.meta_get("repo_id") == "abc"
    ix.clear()
    assert ix.meta_get("repo_id") is MISSING
    assert ix.get("objects", "a") is MISSING and ix.get_all("tags", "t") == []
    assert ix.segments() == set()
    ix.apply([("put", "objects", "b", "2")])  # still usable after clear
    assert ix.get("objects", "b") == "2"


def test_map_grows_from_tiny_initial_size(tmp_path):
    with Index(tmp_path / "ix", TABLES, map_size=64 * 1024) as ix:
        start = ix._env.info()["map_size"]
        big = [("put", "objects", f"{i:040x}", "value" * 20) for i in range(20_000)]
        ix.apply(big, segment="big")  # one txn larger than the map: abort, grow, retry
        for i in range(0, 2000, 7):
            ix.apply([("add", "tags", f"t{i}", f"v{j}") for j in range(50)])
        assert ix._env.info()["map_size"] > start
        assert ix.count("objects") == 20_000
        assert ix.get("objects", f"{19_999:040x}") == "value" * 20
        assert ix.has_segment("big")


def test_reopen_keeps_data(tmp_path):
    with Index(tmp_path / "ix", TABLES) as ix:
        ix.apply([("put", "objects", "a", "1"), ("add", "tags", "t", "x")], segment="s1")
        ix.meta_put("repo_id", "r")
    with Index(tmp_path / "ix", TABLES, durable=True) as ix:
        assert ix.get("objects", "a") == "1"
        assert ix.get_all("tags", "t") == ["x"]
        assert ix.segments() == {"s1"}
        assert ix.meta_get("repo_id") == "r"
        assert not ix.was_reset


def test_schema_change_resets_the_derived_tables(tmp_path):
    with Index(tmp_path / "ix", TABLES) as ix:
        ix.apply([("put", "objects", "a", "1"), ("add", "tags", "t", "x")], segment="s1")
        ix.meta_put("repo_id", "r")
    changed = {"objects": False, "tags": False, "extra": True}  # tags flips dupsort
    with Index(tmp_path / "ix", changed) as ix:
        assert ix.was_reset
        assert ix.get("objects", "a") is MISSING
        assert ix.meta_get("repo_id") is MISSING  # so the repository rebuilds it
        ix.apply([("put", "tags", "t", "y"), ("add", "extra", "e", "1"), ("add", "extra", "e", "2")])
        assert ix.get("tags", "t") == "y" and ix.get_all("extra", "e") == ["1", "2"]


def test_same_path_twice_in_one_process_shares_the_environment(tmp_path):
    a = Index(tmp_path / "ix", TABLES)
    b = Index(tmp_path / "ix", TABLES)
    a.apply([("put", "objects", "k", "v")])
    assert b.get("objects", "k") == "v"
    a.close()
    assert b.get("objects", "k") == "v"  # closing one must not close the other
    b.apply([("put", "objects", "k2", "v2")])
    b.close()
    with pytest.raises(IndexUnavailable, match="closed"):
        b.get("objects", "k")
    with Index(tmp_path / "ix", TABLES) as c:
        assert c.get("objects", "k2") == "v2"


def _writer(path: str, worker: int, n: int) -> None:
    ix = Index(path, TABLES, map_size=64 * 1024)
    for start in range(0, n, 50):
        ix.apply(
            [("put", "objects", f"w{worker}-{i:06d}", "x" * 64) for i in range(start, start + 50)]
            + [("add", "tags", "shared", f"w{worker}-{start:06d}")],
            segment=f"seg-w{worker}-{start:06d}",
        )
        # reads interleaved with the other process growing the map
        assert ix.get("objects", f"w{worker}-{start:06d}") == "x" * 64
    ix.close()


def test_two_processes_write_concurrently_with_map_growth(tmp_path):
    path = str(tmp_path / "ix")
    Index(path, TABLES, map_size=64 * 1024).close()
    ctx = multiprocessing.get_context("spawn")
    n = 3000
    procs = [ctx.Process(target=_writer, args=(path, w, n)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with Index(path, TABLES) as ix:
        assert ix.count("objects") == 2 * n
        assert len(ix.get_all("tags", "shared")) == 2 * (n // 50)
        assert len(ix.segments()) == 2 * (n // 50)
        assert ix.get("objects", f"w1-{n - 1:06d}") == "x" * 64


MOUNTS = """\
sysfs /sys sysfs rw 0 0
/dev/sda1 / ext4 rw 0 0
server:/export /mnt/nfs nfs4 rw,relatime 0 0
//host/share /mnt/my\\040share cifs rw 0 0
s3fs /mnt/bucket fuse.s3fs rw 0 0
tmpfs /mnt/nfs/local tmpfs rw 0 0
"""


def test_filesystem_type_longest_mount_wins():
    assert filesystem_type("/home/u/.cache", MOUNTS) == "ext4"
    assert filesystem_type("/mnt/nfs", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/nfs/x/y", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/nfsother", MOUNTS) == "ext4"  # component-wise, not string prefix
    assert filesystem_type("/mnt/nfs/local/ix", MOUNTS) == "tmpfs"
    assert filesystem_type("/mnt/my share/ix", MOUNTS) == "cifs"
    assert filesystem_type("/mnt/bucket/ix", MOUNTS) == "fuse.s3fs"


@pytest.mark.parametrize("where", ["/mnt/nfs/ix", "/mnt/my share/ix", "/mnt/bucket/ix"])
def test_network_filesystems_are_refused(tmp_path, where):
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS)
    with pytest.raises(IndexUnavailable, match="local disk"):
        check_local_path(where, str(mounts))
    check_local_path("/mnt/nfs/local/ix", str(mounts))  # no error
    check_local_path(str(tmp_path), "/proc/mounts")  # the real test machine: a local disk


def test_unknown_table_and_bad_entries(ix):
    with pytest.raises(KeyError):
        ix.get("nope", "k")
    with pytest.raises(ValueError):
        ix.apply([("put", "objects", "k")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        ix.apply([("put", "objects", "k", 3)])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        Index(os.devnull + "-never", {"_meta": False})


def test_prechecked_apply_matches_checked_apply(tmp_path):
    entries = [
        ("put", "objects", "a", "1"), ("add", "tags", "k", "x"), ("add", "tags", "k", "y"),
        ("del", "tags", "k", "x"), ("put", "objects", "é", "ü"), ("add", "objects", "a", "2"),
        ("delall", "tags", "gone", ""), ("del", "objects", "nope", ""),
    ]
    with Index(tmp_path / "one", TABLES) as one, Index(tmp_path / "two", TABLES) as two:
        for e in entries:
            one.check_entry(e)
        one.apply(entries, segment="s", prechecked=True)
        two.apply(entries, segment="s")
        for table in TABLES:
            assert list(one.scan(table)) == list(two.scan(table))
        assert one.segments() == two.segments() == {"s"}


# -- bulk ingest of many journal segments ----------------------------------------------------------


def random_segments(rng, segments: int, per: int) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Segments of entries over few keys, so that every op meets every other on one key."""
    out = []
    for s in range(segments):
        entries = []
        for _ in range(per):
            table = rng.choice(["objects", "tags", "evals"])
            op = rng.choice(["put", "put", "add", "add", "del", "delall"]) if table != "evals" else "put"
            key, value = f"k{rng.randrange(12)}", f"v{rng.randrange(5)}"
            if op == "del" and rng.random() < 0.3:
                value = ""  # the whole key
            entries.append((op, table, key, "" if op == "delall" else value))
        out.append((f"20260101T0000{s:02d}.000000Z-w1", entries))
    return out


def test_ingest_ends_as_applying_each_segment_in_turn(tmp_path):
    import random

    rng = random.Random(7)
    for trial in range(30):
        base = random_segments(rng, 2, 20)
        segments = random_segments(rng, rng.randrange(1, 8), rng.randrange(1, 60))
        with Index(tmp_path / f"one{trial}", TABLES) as one, Index(tmp_path / f"two{trial}", TABLES) as two:
            for ix in (one, two):  # an index that already holds rows (a client long offline)
                for name, entries in base:
                    ix.apply(entries, segment=name)
            for name, entries in segments:
                one.apply(entries, segment=name)
            two.ingest(segments)
            for table in TABLES:
                assert list(one.scan(table)) == list(two.scan(table)), (trial, table)
            assert one.segments() == two.segments()


def test_ingest_of_one_kind_per_table_keeps_last_put_first_add_and_every_multi_value(ix):
    ix.apply([("put", "evals", "kept", "old"), ("put", "objects", "held", "first")])
    ix.ingest([
        ("s1", [("put", "evals", "e", "1"), ("add", "objects", "held", "second"), ("add", "tags", "t", "b")]),
        ("s2", [("put", "evals", "e", "2"), ("add", "objects", "new", "x"), ("add", "tags", "t", "a")]),
        ("s3", [("put", "evals", "kept", "new"), ("add", "objects", "new", "y"), ("add", "tags", "t", "b")]),
    ])
    assert ix.get("evals", "e") == "2" and ix.get("evals", "kept") == "new"
    assert ix.get("objects", "held") == "first" and ix.get("objects", "new") == "x"
    assert ix.get_all("tags", "t") == ["a", "b"]
    assert ix.segments() == {"s1", "s2", "s3"}


def test_an_ingest_that_fails_leaves_nothing_applied_nor_marked(ix, monkeypatch):
    import objstore.index.writes as writes

    ix.apply([("put", "objects", "a", "1")], segment="s0")

    def broken(txn, runs):
        for run in runs:
            txn.put(b"half", b"written", db=run.db)
            raise RuntimeError("killed mid-ingest")

    monkeypatch.setattr(writes, "apply_bulk", broken)
    with pytest.raises(RuntimeError):
        ix.ingest([("s1", [("put", "objects", "b", "2")]), ("s2", [("add", "tags", "t", "x")])])
    assert ix.segments() == {"s0"}
    assert ix.get("objects", "b") is MISSING and ix.get("objects", "half") is MISSING
    assert ix.get_all("tags", "t") == []


def test_a_large_ingest_grows_the_map_once(tmp_path):
    with Index(tmp_path / "ix", TABLES, map_size=64 * 1024) as ix:
        segments = [(f"seg{s:03d}", [("put", "objects", f"{s:03d}{i:037x}", "value" * 10) for i in range(2000)])
                    for s in range(20)]
        ix.ingest(segments)
        assert ix.count("objects") == 40_000 and len(ix.segments()) == 20
        assert ix.get("objects", f"{19:03d}{1999:037x}") == "value" * 10
