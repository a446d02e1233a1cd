"""ObjectStore against a dict model: random sequences of operations, on every backend.

Memory and local get many examples; remote backends a handful of short runs (each remote
step costs a few loopback requests).
"""

from __future__ import annotations

import io
import uuid

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from objstore.errors import CorruptObject
from objstore.fs import open_url
from objstore.store import MISSING, ObjectStore, open_store

# A small id pool so operations collide (re-puts, deletes of present ids, duplicates in bulk).
IDS = [f"{n:02x}" + "0" * 36 + f"{n:02x}" for n in (0x00, 0x01, 0x0A, 0xAB, 0xFF)] + [
    "abcdef01-2345-4678-89ab-cdef01234567"
]
KINDS = ["value", "task", "call_node"]

ids = st.sampled_from(IDS)
kinds = st.sampled_from(KINDS)
payloads = st.binary(max_size=64) | st.sampled_from([b"", b"\x00" * 5000])


def make_machine(new_store):
    class StoreModel(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.store: ObjectStore = new_store()
            self.model: dict[str, tuple[str, bytes]] = {}

        @rule(object_id=ids, kind=kinds, payload=payloads)
        def put(self, object_id, kind, payload):
            created = self.store.put(object_id, kind, payload)
            assert created == (object_id not in self.model)
            self.model.setdefault(object_id, (kind, payload))

        @rule(object_id=ids, kind=kinds, payload=payloads)
        def put_stream(self, object_id, kind, payload):
            created = self.store.put_stream(object_id, kind, io.BytesIO(payload), len(payload))
            assert created == (object_id not in self.model)
            self.model.setdefault(object_id, (kind, payload))

        @rule(items=st.lists(st.tuples(ids, kinds, payloads), max_size=6))
        def put_many(self, items):
            results = self.store.put_many(items)
            expected = []
            for object_id, kind, payload in items:
                expected.append(object_id not in self.model)
                self.model.setdefault(object_id, (kind, payload))
            assert results == expected

        @rule(object_id=ids)
        def get(self, object_id):
            want = self.model.get(object_id, MISSING)
            try:
                got = self.store.get(object_id)
            except KeyError:
                got = MISSING
            assert got == want

        @rule(object_id=ids)
        def open_stream(self, object_id):
            if object_id not in self.model:
                return
            kind, length, chunks = self.store.open_stream(object_id)
            assert (kind, b"".join(chunks)) == self.model[object_id]
            assert length == len(self.model[object_id][1])

        @rule(asked=st.lists(ids, max_size=8), kind=st.none() | kinds)
        def get_many(self, asked, kind):
            want = [self.model.get(i, MISSING) for i in asked]
            if kind is not None and any(w is not MISSING and w[0] != kind for w in want):
                return  # a wrong kind raises; covered by the conformance suite
            assert self.store.get_many(asked, expect_kind=kind) == want

        @rule(asked=st.lists(ids, max_size=8))
        def has_many(self, asked):
            assert self.store.has_many(asked) == [i in self.model for i in asked]

        @rule(object_id=ids)
        def delete(self, object_id):
            assert self.store.delete(object_id) == (object_id in self.model)
            self.model.pop(object_id, None)

        @rule(object_id=ids)
        def has(self, object_id):
            assert self.store.has(object_id) == (object_id in self.model)

        @invariant()
        def listing_matches(self):
            assert sorted(self.store.iter_ids()) == sorted(self.model)

    return StoreModel


def test_store_matches_dict_model(target):
    fs = target.fs()
    remote = target.is_remote

    def new_store():
        # Every example gets a fresh location beside the others.
        return open_store(fs, f"{target.root}/m-{uuid.uuid4().hex[:12]}")

    run_state_machine_as_test(
        make_machine(new_store),
        settings=settings(
            max_examples=4 if remote else 60,
            stateful_step_count=8 if remote else 30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    payload=st.binary(max_size=300),
    cut=st.integers(min_value=0, max_value=400),
    edits=st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.integers(0, 255)), max_size=3),
    garbage=st.binary(max_size=8),
)
def test_damaged_objects_raise_corrupt_object_and_nothing_else(tmp_path_factory, payload, cut, edits, garbage):
    # Whatever happens to the bytes on disk, a read either returns the original object or
    # raises CorruptObject naming it: never another exception from deep inside a decoder.
    fs, root = open_url(str(tmp_path_factory.mktemp("fuzz")))
    store = open_store(fs, root)
    object_id = IDS[0]
    store.put(object_id, "value", payload)
    path = store.object_path(object_id)
    with open(path, "rb") as f:
        original = f.read()
    damaged = bytearray(original[:cut])
    for position, value in edits:
        if damaged:
            damaged[position % len(damaged)] = value
    damaged += garbage
    with open(path, "wb") as f:
        f.write(damaged)
    for read in (
        lambda: store.get(object_id),
        lambda: store.get_many([object_id])[0],
        lambda: (lambda k, n, chunks: (k, b"".join(chunks)))(*store.open_stream(object_id)),
    ):
        try:
            got = read()
        except CorruptObject as exc:
            assert exc.object_id == object_id
        else:
            assert bytes(damaged) == original and got == ("value", payload)
