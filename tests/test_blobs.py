"""BlobStore conformance: the few primitives every kind of filesystem implements, run on memory,
local, S3, GCS and Azure through `target`, plus what only some of them must refuse."""

from __future__ import annotations

import io
import threading

import fsspec
import pytest
from fsspec.implementations.dirfs import DirFileSystem

from objstore.errors import StorageError, UnsafeFilesystem
from objstore.missing import MISSING
from objstore.store import open_blobs
from objstore.store.asyn import AsyncBlobStore
from objstore.store.fsspec import FsspecBlobStore
from objstore.store.local import LocalBlobStore


@pytest.fixture
def blobs(target):
    return open_blobs(target.fs(), target.root)


def test_each_filesystem_gets_its_own_class(target):
    expected = {"memory": FsspecBlobStore, "local": LocalBlobStore}.get(target.name, AsyncBlobStore)
    assert type(open_blobs(target.fs(), target.root)) is expected


def test_create_never_replaces_and_replace_always_does(blobs):
    assert blobs.read("a/b") is MISSING and not blobs.exists("a/b")
    assert blobs.create("a/b", b"one") is True
    assert blobs.create("a/b", b"two") is False
    assert blobs.read("a/b") == b"one" and blobs.exists("a/b")
    blobs.replace("a/b", b"three")
    assert blobs.read("a/b") == b"three"
    blobs.replace("a/c", b"new")  # replace also creates
    assert blobs.read("a/c") == b"new"


def test_read_range_and_its_edges(blobs):
    blobs.create("r", bytes(range(100)))
    assert blobs.read_range("r", 10, 5) == bytes(range(10, 15))
    assert blobs.read_range("r", 95, 10) == bytes(range(95, 100))  # fewer past the end
    assert blobs.read_range("nothing", 0, 1) is MISSING
    assert blobs.read_ranges([("r", 0, 2), ("nothing", 0, 1), ("r", 98, 2)]) == [b"\x00\x01", MISSING, b"\x62\x63"]


def test_delete_says_whether_it_existed(blobs):
    blobs.create("d/x", b"1")
    assert blobs.delete("d/x") is True
    assert blobs.delete("d/x") is False
    assert blobs.read("d/x") is MISSING


def test_list_is_recursive_sorted_and_relative(blobs):
    for key in ("j/2", "j/1", "j/sub/3", "other/4"):
        blobs.create(key, b"x")
    assert blobs.list_keys("j") == ["j/1", "j/2", "j/sub/3"]
    assert blobs.list_keys("j/") == ["j/1", "j/2", "j/sub/3"]
    assert blobs.list_names("j") == ["1", "2"]
    assert blobs.list_keys("absent") == [] and blobs.list_names("absent") == []


def test_bulk_calls_keep_input_order_and_duplicates(blobs):
    created = blobs.create_many([("k/1", b"1"), ("k/2", b"2"), ("k/1", b"again")])
    assert created == [True, True, False]
    assert blobs.read_many(["k/2", "k/9", "k/1", "k/2"]) == [b"2", MISSING, b"1", b"2"]
    assert blobs.exists_many(["k/9", "k/1"]) == [False, True]
    blobs.replace_many([("e/1", b"a"), ("e/1", b"b")])
    assert blobs.read("e/1") == b"b"  # a later duplicate wins
    assert blobs.read_many([]) == [] and blobs.create_many([]) == [] and blobs.exists_many([]) == []


def test_streams_in_and_out(blobs):
    def produce(out):
        for i in range(4):
            out.write(bytes([i]) * 1000)

    assert blobs.create_from("s/big", produce) is True
    assert blobs.create_from("s/big", lambda out: out.write(b"never")) is False
    f = blobs.open_read("s/big")
    try:
        assert f.read() == b"".join(bytes([i]) * 1000 for i in range(4))
    finally:
        f.close()
    assert blobs.open_read("s/none") is MISSING


def test_a_failing_producer_leaves_nothing(blobs):
    def produce(out):
        out.write(b"partial")
        raise ValueError("source died")

    with pytest.raises(ValueError):
        blobs.create_from("s/half", produce)
    assert blobs.read("s/half") is MISSING and blobs.list_keys("s") == []


def test_racing_creates_have_one_winner(target):
    stores = [open_blobs(target.fs(), target.root) for _ in range(6)]
    for round_ in range(3):
        wins: list[int] = []
        gate = threading.Barrier(len(stores))

        def racer(i: int) -> None:
            gate.wait()
            if stores[i].create(f"race/{round_}", b"%d" % i):
                wins.append(i)

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1
        assert stores[0].read(f"race/{round_}") == b"%d" % wins[0]


def test_a_filesystem_without_atomic_create_is_refused_loudly(tmp_path):
    # DirFileSystem is synchronous and not memory: fsspec's create there is exists-then-write,
    # so objstore must refuse to create, not pretend.
    fs = DirFileSystem(path=str(tmp_path), fs=fsspec.filesystem("file", auto_mkdir=True))
    blobs = open_blobs(fs, "repo")
    assert isinstance(blobs, FsspecBlobStore)
    with pytest.raises(UnsafeFilesystem) as exc:
        blobs.create("x", b"1")
    assert "atomic create" in str(exc.value) and isinstance(exc.value, RuntimeError)
    with pytest.raises(UnsafeFilesystem):
        blobs.create_from("y", lambda out: out.write(b"1"))
    assert not (tmp_path / "repo" / "x").exists()


def test_local_errors_name_the_path(tmp_path):
    (tmp_path / "blocked").write_bytes(b"")  # a file where a directory must be
    blobs = open_blobs(fsspec.filesystem("file"), str(tmp_path))
    for call in (lambda: blobs.create("blocked/x", b"1"), lambda: blobs.replace("blocked/x", b"1"),
                 lambda: blobs.list_keys("blocked/x/y") or blobs.create_from("blocked/z", lambda o: o.write(b"1"))):
        with pytest.raises(StorageError) as exc:
            call()
        assert str(tmp_path / "blocked") in str(exc.value)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_local_temp_files_are_invisible_and_cleaned(tmp_path):
    import os
    import time

    blobs = open_blobs(fsspec.filesystem("file"), str(tmp_path))
    blobs.create("t/real", b"1")
    stale = tmp_path / "t" / ".tmp-dead.0"
    stale.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = tmp_path / "t" / ".tmp-live.0"
    fresh.write_bytes(b"half")
    assert blobs.list_keys("t") == ["t/real"]
    assert blobs.clean_temp("t", older_than=3600) == 1
    assert not stale.exists() and fresh.exists()  # a live writer's temp file is kept


def test_memory_reads_do_not_share_a_position():
    # MemoryFileSystem hands every reader one file object (one position) unless the store copies.
    import uuid

    blobs = open_blobs(fsspec.filesystem("memory"), f"/blobs-{uuid.uuid4().hex}")
    blobs.create("m", b"abcdef")
    a, b = blobs.open_read("m"), blobs.open_read("m")
    assert a.read(3) == b"abc" and b.read(3) == b"abc"
    assert isinstance(a, io.BytesIO)
