"""objstore.hashing must give redun 0.44.1's ids bit for bit: compared against redun itself."""

from __future__ import annotations

import enum
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore import hashing
from objstore.ids import is_hash

# redun is part of the test extra: a missing redun is a failure here, never a skip.
from redun import bcoding as redun_bcoding
from redun import hashing as redun_hashing
from redun.utils import json_dumps as redun_json_dumps

hex40 = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
texts = st.text(max_size=30)  # includes non-ASCII, so utf-8 lengths differ from char counts
leaves = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), texts, st.binary(max_size=30))
structs = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(texts, inner, max_size=5),
        st.dictionaries(st.binary(max_size=8), inner, max_size=5),
    ),
    max_leaves=25,
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=15,
)


@settings(max_examples=400, deadline=None)
@given(structs)
def test_bencode_and_hash_struct_match_redun(obj):
    assert hashing.bencode(obj) == redun_bcoding.bencode(obj)
    h = hashing.hash_struct(obj)
    assert h == redun_hashing.hash_struct(obj)
    assert is_hash(h)


@settings(deadline=None)
@given(st.binary(max_size=200), texts, st.text(max_size=200))
def test_byte_and_text_hashes_match_redun(data, tag, text):
    assert hashing.hash_bytes(data) == redun_hashing.hash_bytes(data)
    assert hashing.hash_tag_bytes(tag, data) == redun_hashing.hash_tag_bytes(tag, data)
    assert hashing.hash_text(text) == redun_hashing.hash_text(text)


def test_known_value_hash_prefix():
    # Spec §2: bencode(["Value"]) is the prefix of every pickled value's hash input.
    assert hashing.bencode(["Value"]) == b"l5:Valuee"


@settings(deadline=None)
@given(hex40, st.lists(hex40, max_size=4), st.dictionaries(st.text(max_size=10), hex40, max_size=4))
def test_eval_and_arguments_match_redun(task_hash, arg_hashes, kwarg_hashes):
    class Registry:  # redun's hash_arguments asks a type registry; hand it precomputed hashes
        def get_hash(self, value):
            return value

    args_hash = hashing.hash_arguments_from_hashes(arg_hashes, kwarg_hashes)
    assert args_hash == redun_hashing.hash_arguments(Registry(), arg_hashes, kwarg_hashes)
    eval_hash, redun_args_hash = redun_hashing.hash_eval(
        Registry(), task_hash, arg_hashes, kwarg_hashes
    )
    assert redun_args_hash == args_hash
    assert hashing.hash_eval(task_hash, args_hash) == eval_hash


@settings(deadline=None)
@given(hex40, hex40, hex40, st.lists(hex40, max_size=6))
def test_call_node_sorts_children_like_redun(task_hash, args_hash, result_hash, children):
    expected = redun_hashing.hash_call_node(task_hash, args_hash, result_hash, children)
    assert hashing.hash_call_node(task_hash, args_hash, result_hash, children) == expected
    assert hashing.hash_call_node(task_hash, args_hash, result_hash, reversed(children)) == expected


@settings(deadline=None)
@given(
    hex40,
    st.one_of(st.tuples(st.integers(0, 50), st.none()), st.tuples(st.none(), st.text(max_size=10))),
    hex40,
)
def test_argument_hash_matches_redun_db_formula(call_hash, pos_key, value_hash):
    position, key = pos_key
    # The formula as written in redun/backends/db/__init__.py (_record_args).
    expected = redun_hashing.hash_struct(["Argument", call_hash, str(position), str(key), value_hash])
    assert hashing.hash_argument(call_hash, position, key, value_hash) == expected


@settings(max_examples=200, deadline=None)
@given(hex40, st.text(max_size=20), json_values, st.lists(hex40, max_size=4))
def test_tag_hash_matches_redun(entity_id, key, value, parents):
    assert hashing.json_dumps(value) == redun_json_dumps(value)
    # redun's db backend sorts parents before hashing; the stored id is what must match.
    expected = redun_hashing.hash_tag(entity_id, key, value, sorted(parents))
    assert hashing.hash_tag(entity_id, key, value, parents) == expected


def test_json_dumps_is_redun_canonical():
    value = {"b": [1, 2.5, None, True], "a": "é"}
    assert hashing.json_dumps(value) == '{"a":"\\u00e9","b":[1,2.5,null,true]}'
    assert json.loads(hashing.json_dumps(value)) == value


@pytest.mark.parametrize("bad", [True, False, None, 1.5, float("nan"), [1, None], {"a": 2.0}, object()])
def test_unbencodable_values_raise_type_error_like_redun(bad):
    with pytest.raises(TypeError):
        redun_bcoding.bencode(bad)
    with pytest.raises(TypeError):
        hashing.bencode(bad)
    with pytest.raises(TypeError):
        hashing.hash_struct(bad)


def test_quirks_follow_redun():
    class Color(enum.IntEnum):
        RED = 3

    for obj in [
        bytearray(b"ab"),  # not a string to redun: an iterable of ints
        memoryview(b"xy"),
        (1, "a"),
        {"z": 1, "a": [b"q"]},
        Color.RED,
        "",
        b"",
        [],
        {},
    ]:
        assert hashing.bencode(obj) == redun_bcoding.bencode(obj)
    assert hashing.bencode(iter([1, "a"])) == redun_bcoding.bencode(iter([1, "a"]))
    assert hashing.bencode(bytearray(b"ab")) == b"li97ei98ee"
    for mixed in [{"a": 1, b"b": 2}, {1: 2}]:  # mixed key types / non-string keys
        with pytest.raises(TypeError):
            redun_bcoding.bencode(mixed)
        with pytest.raises(TypeError):
            hashing.bencode(mixed)


def test_hashes_are_typed_40_hex():
    for h in [
        hashing.hash_bytes(b""),
        hashing.hash_text(""),
        hashing.hash_eval("a" * 40, "b" * 40),
        hashing.hash_tag("e", "k", None, []),
    ]:
        assert is_hash(h)


def test_real_redun_values_and_calls_hash_the_same():
    """End to end with redun's own type registry: value hashes, args hash, eval hash."""
    import pickle

    from redun.value import get_type_registry

    registry = get_type_registry()
    args, kwargs = (7, "x", [1, 2]), {"flag": {"a": 1}}
    for value in (*args, *kwargs.values()):
        expected = registry.get_hash(value)
        assert hashing.hash_tag_bytes("Value", pickle.dumps(value, protocol=3)) == expected
    task_hash = hashing.hash_struct(["Task", "ns.task", "source", "def task(): pass\n"])
    eval_hash, args_hash = redun_hashing.hash_eval(registry, task_hash, args, kwargs)
    ours_args = hashing.hash_arguments_from_hashes(
        [registry.get_hash(a) for a in args], {k: registry.get_hash(v) for k, v in kwargs.items()}
    )
    assert ours_args == args_hash
    assert hashing.hash_eval(task_hash, ours_args) == eval_hash
