"""refs: compare-and-swap semantics, names, races and stale locks, on every backend."""

from __future__ import annotations

import ast
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import fsspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import refs
from refs import MISSING, InvalidRefName, RefStorageError, UnsafeRefStore, check_ref_name, open_refs
from refs.local import LocalRefStore
from refs.memory import BestEffortRefStore

ROOT = Path(__file__).resolve().parent.parent


def store_for(target, sub: str = "refs"):
    return open_refs(target.fs(), f"{target.root}/{sub}")


EXPECTED_CLASS = {
    "memory": "MemoryRefStore",
    "local": "LocalRefStore",
    "s3": "S3RefStore",
    "gcs": "GCSRefStore",
    "azure": "AzureRefStore",
}


# ------------------------------------------------------------------ semantics


def test_open_refs_picks_the_backend(target):
    store = store_for(target)
    assert type(store).__name__ == EXPECTED_CLASS[target.name]
    assert store.atomic


def test_get_add_set_remove(target):
    s = store_for(target)
    assert s.get("heads/main") is MISSING
    assert s.add_if_new("heads/main", b"one") is True
    assert s.add_if_new("heads/main", b"two") is False
    assert s.get("heads/main") == b"one"

    assert s.set_if_equals("heads/main", b"wrong", b"two") is False
    assert s.set_if_equals("heads/main", MISSING, b"two") is False
    assert s.get("heads/main") == b"one"
    assert s.set_if_equals("heads/main", b"one", b"two") is True
    assert s.get("heads/main") == b"two"
    assert s.set_if_equals("heads/main", b"two", b"two") is True  # same value: still a success

    assert s.remove_if_equals("heads/main", b"one") is False
    assert s.get("heads/main") == b"two"
    assert s.remove_if_equals("heads/main", b"two") is True
    assert s.get("heads/main") is MISSING
    assert s.remove_if_equals("heads/main", b"two") is False
    assert s.set_if_equals("heads/main", b"two", b"three") is False
    assert s.get("heads/main") is MISSING

    assert s.set_if_equals("other", MISSING, b"x") is True  # set from MISSING == add_if_new
    assert s.get("other") == b"x"


def test_values_are_bytes(target):
    s = store_for(target)
    binary = bytes(range(256)) * 3
    assert s.add_if_new("bin", binary)
    assert s.get("bin") == binary
    assert s.add_if_new("empty", b"")
    assert s.get("empty") == b""  # empty is a value, not MISSING
    assert s.set_if_equals("empty", b"", bytearray(b"ba"))
    assert s.get("empty") == b"ba"
    with pytest.raises(TypeError):
        s.add_if_new("str", "text")
    with pytest.raises(TypeError):
        s.set_if_equals("bin", None, b"x")  # None is not MISSING
    with pytest.raises(TypeError):
        s.remove_if_equals("bin", MISSING)


def test_list_by_prefix_and_items(target):
    s = store_for(target)
    assert s.list() == []
    names = ["heads/main", "heads/dev", "heads/feature/x", "tags/v1", "tags/v10", "top"]
    for i, name in enumerate(names):
        assert s.add_if_new(name, str(i).encode())
    assert s.list() == sorted(names)
    assert s.list("heads/") == ["heads/dev", "heads/feature/x", "heads/main"]
    assert s.list("heads/feature/") == ["heads/feature/x"]
    assert s.list("tags/v1") == ["tags/v1", "tags/v10"]
    assert s.list("t") == ["tags/v1", "tags/v10", "top"]
    assert s.list("nothing/") == []
    assert s.list("../") == []  # never looks outside the root
    assert dict(s.items("tags/")) == {"tags/v1": b"3", "tags/v10": b"4"}
    assert s.remove_if_equals("heads/dev", b"1")
    assert s.list("heads/") == ["heads/feature/x", "heads/main"]
    # a second store on the same root (another client) sees the same refs
    assert store_for(target).list() == sorted(set(names) - {"heads/dev"})


def test_two_roots_do_not_mix(target):
    a, b = store_for(target, "a/refs"), store_for(target, "b/refs")
    assert a.add_if_new("x", b"a")
    assert b.get("x") is MISSING
    assert b.add_if_new("x", b"b")
    assert (a.get("x"), b.get("x")) == (b"a", b"b")


BAD_NAMES = [
    "", "/", "/abs", "trailing/", "a//b", "..", "a/../b", "a..b", ".hidden", "a/.b", "a.", "a/b.",
    "x.lock", "a.lock/b", "@", "a@{1}", "sp ace", "tab\tx", "nl\n", "del\x7f", "ctl\x01",
    "til~de", "ca^ret", "co:lon", "que?ry", "st*ar", "br[acket", "back\\slash",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_check_ref_name_rejects(name):
    with pytest.raises(InvalidRefName):
        check_ref_name(name)
    assert issubclass(InvalidRefName, ValueError)


@pytest.mark.parametrize(
    "name", ["main", "heads/main", "a/b/c", "v1.0", "a.b/c-d_e", "@x", "x@y", "a@", "lock", "a.lockx", "ünï"]
)
def test_check_ref_name_accepts(name):
    assert check_ref_name(name) == name


def test_check_ref_name_rejects_non_str():
    with pytest.raises(InvalidRefName):
        check_ref_name(b"bytes")  # type: ignore[arg-type]


def test_invalid_names_rejected_by_every_operation(target):
    s = store_for(target)
    for bad in ["../escape", "a/../../b", "/abs", "x.lock", "a b"]:
        with pytest.raises(InvalidRefName):
            s.get(bad)
        with pytest.raises(InvalidRefName):
            s.add_if_new(bad, b"v")
        with pytest.raises(InvalidRefName):
            s.set_if_equals(bad, b"v", b"w")
        with pytest.raises(InvalidRefName):
            s.remove_if_equals(bad, b"v")
    assert s.list() == []


def test_missing_sentinel():
    assert repr(MISSING) == "MISSING"
    assert not MISSING
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING
    assert type(MISSING)() is MISSING


def test_error_root():
    for leaf, builtin in [
        (refs.InvalidRefName, ValueError),
        (refs.UnsafeRefStore, RuntimeError),
        (refs.RefStorageError, OSError),
    ]:
        assert issubclass(leaf, refs.RefsError) and issubclass(leaf, builtin)


def test_refs_imports_nothing_from_objstore():
    for path in (ROOT / "refs").glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] if node.level == 0 else []
            else:
                continue
            assert not any(m == "objstore" or m.startswith("objstore.") for m in modules), path


def test_unknown_filesystem_is_refused_unless_allowed(tmp_path):
    from fsspec.implementations.dirfs import DirFileSystem

    fs = DirFileSystem(path=str(tmp_path), fs=fsspec.filesystem("file", auto_mkdir=True))
    with pytest.raises(UnsafeRefStore, match="allow_unsafe=True"):
        open_refs(fs, "refs")
    store = open_refs(fs, "refs", allow_unsafe=True)
    assert isinstance(store, BestEffortRefStore) and not store.atomic
    assert store.add_if_new("a/b", b"1") and not store.add_if_new("a/b", b"2")
    assert store.set_if_equals("a/b", b"1", b"2") and store.get("a/b") == b"2"
    assert store.list() == ["a/b"]
    assert store.remove_if_equals("a/b", b"2") and store.get("a/b") is MISSING


def test_local_prefix_conflict_is_a_storage_error(tmp_path):
    s = LocalRefStore(tmp_path / "refs")
    assert s.add_if_new("a", b"1")
    with pytest.raises(RefStorageError, match="conflicts"):
        s.add_if_new("a/b", b"2")
    assert s.get("a/b") is MISSING
    assert s.add_if_new("c/d", b"3")
    assert s.get("c") is MISSING  # a directory is not a ref


def test_local_accepts_file_urls_and_hides_lock_files(tmp_path):
    s = open_refs(fsspec.filesystem("file"), f"file://{tmp_path}/refs")
    assert isinstance(s, LocalRefStore)
    assert s.add_if_new("heads/main", b"1")
    (tmp_path / "refs" / "heads" / "dev.lock").write_bytes(b"")
    assert s.list() == ["heads/main"]
    assert sorted(os.listdir(tmp_path / "refs" / "heads")) == ["dev.lock", "main"]


def test_gcs_read_without_generation_header(gcs_server, tmp_path):
    """The fallback for a server that sends no x-goog-generation on downloads."""
    import servers

    target = servers.make_target("gcs", tmp_path=tmp_path, server=gcs_server)
    s = store_for(target)
    assert s.add_if_new("r", b"v1")
    path = s.path("r")
    value, generation = s._read_pinned(path)
    assert value == b"v1"
    assert s._read(path) == (b"v1", generation)
    assert s._replace(path, b"v2", generation)
    assert not s._replace(path, b"v3", generation)  # stale generation
    assert s._read_pinned(path)[0] == b"v2"
    assert s._read_pinned(s.path("absent")) is MISSING


# ------------------------------------------------------------------ model-based


NAMES = ["main", "heads/a", "heads/b", "tags/v1"]  # none is a directory of another
VALUES = st.binary(max_size=3)


class RefsModel(RuleBasedStateMachine):
    """Every operation agrees with a dict, including the bool it returns."""

    store: refs.RefStore

    def __init__(self):
        super().__init__()
        self.model: dict[str, bytes] = {}

    def _current_or(self, name, data):
        """Mostly the right old value (else CAS would almost never succeed), sometimes not."""
        if name in self.model and data.draw(st.booleans()):
            return self.model[name]
        return data.draw(st.one_of(st.just(MISSING), VALUES))

    @rule(name=st.sampled_from(NAMES), value=VALUES)
    def add(self, name, value):
        expected = name not in self.model
        assert self.store.add_if_new(name, value) is expected
        self.model.setdefault(name, value)

    @rule(name=st.sampled_from(NAMES), new=VALUES, data=st.data())
    def set(self, name, new, data):
        old = self._current_or(name, data)
        expected = self.model.get(name, MISSING) == old
        assert self.store.set_if_equals(name, old, new) is expected
        if expected:
            self.model[name] = new

    @rule(name=st.sampled_from(NAMES), data=st.data())
    def remove(self, name, data):
        old = self._current_or(name, data)
        if old is MISSING:
            old = b""
        expected = self.model.get(name, MISSING) == old
        assert self.store.remove_if_equals(name, old) is expected
        if expected:
            del self.model[name]

    @rule(name=st.sampled_from(NAMES))
    def get(self, name):
        assert self.store.get(name) == self.model.get(name, MISSING)

    @rule(prefix=st.sampled_from(["", "heads/", "h", "tags/v1", "x"]))
    def list(self, prefix):
        assert self.store.list(prefix) == sorted(n for n in self.model if n.startswith(prefix))

    @invariant()
    def no_unexpected_names(self):
        if self.remote:
            return  # one LIST per step is too slow against the emulators
        assert self.store.list() == sorted(self.model)


def test_refs_match_a_dict_model(target):
    remote = target.is_remote
    fs = target.fs()

    class Machine(RefsModel):
        def __init__(self):
            super().__init__()
            self.remote = remote
            self.store = open_refs(fs, f"{target.root}/{uuid.uuid4().hex}")

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=6 if remote else 60,
            stateful_step_count=12 if remote else 25,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )


# ------------------------------------------------------------------ races


def _race_sizes(target):
    # moto answers ~5-10 ms per request on one GIL; Azurite and the GCS emulator are
    # faster but still single-threaded. Remote rounds stay small to keep the suite fast.
    # moto itself is not atomic (its conditional PutObject is get-then-put without a
    # lock) and was seen to let two If-None-Match writers both win under 32 threads on
    # a busy machine; 4 threads have shown no double winner in any run here. A double
    # winner on s3 only would be moto's, not ours.
    return (4, 6) if target.is_remote else (8, 25)


def test_thread_race_exactly_one_winner_per_round(target):
    threads, rounds = _race_sizes(target)
    store = store_for(target)
    name = "race/ref"
    barrier = threading.Barrier(threads)
    wins = [[False] * threads for _ in range(rounds)]
    adds = [[False] * threads for _ in range(rounds)]
    removes = [[False] * threads for _ in range(rounds)]
    errors = []
    assert store.add_if_new(name, b"start")

    def worker(i):
        own = open_refs(target.fs(), f"{target.root}/refs")  # like a separate client
        try:
            for r in range(rounds):
                barrier.wait()
                current = own.get(name)
                barrier.wait()  # everyone has read the same value before anyone writes
                wins[r][i] = own.set_if_equals(name, current, f"{r}:{i}".encode())
                adds[r][i] = own.add_if_new(f"race/add{r}", f"{i}".encode())
                barrier.wait()
                value = own.get(f"race/add{r}")
                barrier.wait()
                removes[r][i] = own.remove_if_equals(f"race/add{r}", value)
        except Exception as exc:  # noqa: BLE001 - reported below, a thread cannot raise
            errors.append(exc)
            barrier.abort()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert not errors, errors
    for r in range(rounds):
        assert sum(wins[r]) == 1, f"round {r}: set_if_equals winners {wins[r]}"
        assert sum(adds[r]) == 1, f"round {r}: add_if_new winners {adds[r]}"
        assert sum(removes[r]) == 1, f"round {r}: remove_if_equals winners {removes[r]}"
    last_winner = wins[-1].index(True)
    assert store.get(name) == f"{rounds - 1}:{last_winner}".encode()
    assert store.list("race/") == [name]


def _increment(store, name) -> int:
    """A CAS loop: the number of attempts it took."""
    attempts = 0
    while True:
        attempts += 1
        current = store.get(name)
        if store.set_if_equals(name, current, str(int(current) + 1).encode()):
            return attempts


def test_thread_counter_loses_no_update(target):
    threads, per_thread = (3, 4) if target.is_remote else (6, 30)
    store = store_for(target)
    assert store.add_if_new("counter", b"0")
    barrier = threading.Barrier(threads)
    errors = []

    def worker():
        own = open_refs(target.fs(), f"{target.root}/refs")
        try:
            barrier.wait()
            for _ in range(per_thread):
                _increment(own, "counter")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert not errors, errors
    assert store.get("counter") == str(threads * per_thread).encode()


def _process_worker(root, name, index, rounds, barrier, results):
    store = LocalRefStore(root)
    for r in range(rounds):
        barrier.wait()
        current = store.get(name)
        barrier.wait()
        won = store.set_if_equals(name, current, f"{r}:{index}".encode())
        results.put((r, index, won))
    for _ in range(10):
        _increment(store, "counter")


def test_process_race_on_local(tmp_path):
    processes, rounds = 4, 15
    root = str(tmp_path / "refs")
    store = LocalRefStore(root)
    assert store.add_if_new("race", b"start") and store.add_if_new("counter", b"0")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(root, "race", i, rounds, barrier, results))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(processes * rounds)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    winners = {}
    for r, index, won in outcomes:
        if won:
            assert r not in winners, f"round {r}: two winners"
            winners[r] = index
    assert sorted(winners) == list(range(rounds))
    assert store.get("race") == f"{rounds - 1}:{winners[rounds - 1]}".encode()
    assert store.get("counter") == str(processes * 10).encode()
    assert not list((tmp_path / "refs").glob("*.lock"))


# ------------------------------------------------------------------ local lock files

_HOLD_LOCK = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(600)
    """
)


def _hold_lock(lock_path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(lock_path)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"locked"
    return proc


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_lock_of_a_dead_writer_is_broken(tmp_path):
    store = LocalRefStore(tmp_path, lock_timeout=5, stale_after=1.0)
    assert store.add_if_new("heads/main", b"1")
    lock = tmp_path / "heads" / "main.lock"
    proc = _hold_lock(lock)
    proc.send_signal(signal.SIGKILL)  # dies holding the lock: no cleanup ran
    proc.wait()
    assert lock.exists()
    _age(lock, 5)
    start = time.monotonic()
    assert store.set_if_equals("heads/main", b"1", b"2")
    assert time.monotonic() - start < 1
    assert store.get("heads/main") == b"2" and not lock.exists()


def test_young_orphan_lock_waits_until_stale(tmp_path):
    store = LocalRefStore(tmp_path, lock_timeout=5, stale_after=0.5)
    assert store.add_if_new("r", b"1")
    (tmp_path / "r.lock").write_bytes(b"")  # nobody holds it, but it is brand new
    start = time.monotonic()
    assert store.set_if_equals("r", b"1", b"2")
    assert time.monotonic() - start >= 0.4  # waited for it to become stale first
    assert store.get("r") == b"2"


def test_lock_of_a_live_writer_is_never_broken(tmp_path):
    store = LocalRefStore(tmp_path, lock_timeout=0.5, stale_after=0.01)
    assert store.add_if_new("r", b"1")
    proc = _hold_lock(tmp_path / "r.lock")
    try:
        _age(tmp_path / "r.lock", 3600)  # old, but its owner is alive
        with pytest.raises(RefStorageError, match="r.lock"):
            store.set_if_equals("r", b"1", b"2")
        assert store.get("r") == b"1"
        assert (tmp_path / "r.lock").exists()
    finally:
        proc.kill()
        proc.wait()
    assert store.set_if_equals("r", b"1", b"2")  # the kernel dropped the dead holder's flock


def test_many_writers_meeting_a_dead_lock_break_it_once(tmp_path):
    """Several threads find the same abandoned lock at once: exactly one of them wins the
    ref, nobody removes a lock another has just taken, and no lock is left behind."""
    root = tmp_path / "refs"
    assert LocalRefStore(root).add_if_new("r", b"0")
    proc = _hold_lock(root / "r.lock")
    proc.kill()
    proc.wait()
    _age(root / "r.lock", 60)
    threads = 8
    barrier = threading.Barrier(threads)
    wins, errors = [], []

    def worker(i):
        store = LocalRefStore(root, lock_timeout=10, stale_after=1.0)
        try:
            barrier.wait()
            # Values differ from the initial b"0": worker 0 writing b"0" again would leave the
            # ref unchanged and let a second worker's swap succeed legitimately.
            if store.set_if_equals("r", b"0", f"w{i}".encode()):
                wins.append(i)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(30)
    assert not errors, errors
    assert len(wins) == 1
    assert LocalRefStore(root).get("r") == f"w{wins[0]}".encode()
    assert not (root / "r.lock").exists()


@pytest.mark.parametrize("backend", ["s3", "gcs", "azure"])
def test_missing_bucket_is_an_error_not_a_lost_race(backend, request, tmp_path):
    import servers

    target = servers.make_target(backend, tmp_path=tmp_path, server=request.getfixturevalue(f"{backend}_server"))
    store = open_refs(target.fs(), f"no-such-bucket-{uuid.uuid4().hex[:12]}/refs")
    with pytest.raises(RefStorageError):
        store.add_if_new("r", b"1")
