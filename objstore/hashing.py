"""redun 0.44.1's ids, reproduced exactly without importing redun. Pure: no I/O.

Every content-addressed id in a repository is one of these formulas (sha512 over bencode,
hex-truncated to 40 chars), so objstore and redun's own sqlite backend agree on every hash.
The bencode below follows redun's vendored ``bcoding.py`` branch for branch, including its
quirks, because any divergence would silently change ids:

* ``bool`` is refused (it would otherwise encode as an int), as are ``None`` and ``float``;
* only ``str``/``bytes`` are strings: a ``bytearray`` or ``memoryview`` is an *iterable* and
  encodes as a list of ints;
* mappings are written in ``sorted(mapping.items())`` order, so mixed str/bytes keys raise
  ``TypeError`` exactly where redun's would;
* ints are written with ``str()``, so huge ints hit the same digit limit (``ValueError``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from objstore.ids import Hash

__all__ = [
    "HASH_LEN",
    "bencode",
    "hash_struct",
    "hash_bytes",
    "hash_tag_bytes",
    "hash_text",
    "hash_eval",
    "hash_call_node",
    "hash_arguments_from_hashes",
    "hash_argument",
    "hash_tag",
    "json_dumps",
]

HASH_LEN = 40  # redun truncates sha512 hexdigests to this many characters


def _encode_buffer(data: Any, out: list[bytes]) -> None:
    if isinstance(data, str):
        data = data.encode()
    # len() on a non-buffer key raises TypeError, as in redun (dict keys must be str/bytes).
    out.append(b"%d:" % len(data))
    out.append(data)


def _bencode_into(data: Any, out: list[bytes]) -> None:
    # Branch order is redun's: int before str/bytes before Mapping before Iterable.
    if isinstance(data, int) and not isinstance(data, bool):
        # str(), not %d: an int subclass encodes through its own __str__, as in redun.
        out.append(b"i" + str(data).encode() + b"e")
    elif isinstance(data, (str, bytes)):
        _encode_buffer(data, out)
    elif isinstance(data, Mapping):
        out.append(b"d")
        for key, value in sorted(data.items()):
            _encode_buffer(key, out)
            _bencode_into(value, out)
        out.append(b"e")
    elif isinstance(data, Iterable):
        out.append(b"l")
        for item in data:
            _bencode_into(item, out)
        out.append(b"e")
    else:
        raise TypeError(
            f"the passed value {data} of type {type(data).__name__} is not bencodable."
        )


def bencode(obj: Any) -> bytes:
    """redun's canonical serialization of a nested int/str/bytes/list/dict structure."""
    if type(obj) is list and all(type(x) is str for x in obj):
        # The common shape (["Eval", task, args], ["Argument", ...]): the same bytes, without
        # the general walk, which is most of the cost of hashing a cached call.
        parts = [x.encode() for x in obj]
        return b"l" + b"".join(b"%d:%s" % (len(p), p) for p in parts) + b"e"
    out: list[bytes] = []
    _bencode_into(obj, out)
    return b"".join(out)


def _digest(*parts: bytes) -> Hash:
    m = hashlib.sha512()
    for part in parts:
        m.update(part)
    return Hash(m.hexdigest()[:HASH_LEN])


def hash_struct(obj: Any) -> Hash:
    return _digest(bencode(obj))


def hash_bytes(data: bytes) -> Hash:
    return _digest(data)


def hash_tag_bytes(tag: str, data: bytes) -> Hash:
    """Hash of bencode([tag]) followed by raw bytes: how redun hashes pickled values."""
    return _digest(bencode([tag]), data)


def hash_text(text: str) -> Hash:
    return _digest(text.encode("utf-8"))


def json_dumps(value: Any) -> str:
    """redun's normalized JSON (ASCII-escaped); tag hashes are taken over this exact text."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def hash_eval(task_hash: str, args_hash: str) -> Hash:
    """The eval-cache key of a task applied to arguments (redun's hash_eval, from hashes)."""
    return hash_struct(["Eval", task_hash, args_hash])


def hash_call_node(
    task_hash: str, args_hash: str, result_hash: str, child_call_hashes: Iterable[str]
) -> Hash:
    # Children are sorted for the hash only; callers keep call order for storage.
    return hash_struct(["CallNode", task_hash, args_hash, result_hash, sorted(child_call_hashes)])


def hash_arguments_from_hashes(arg_hashes: Iterable[str], kwarg_hashes: Mapping[str, str]) -> Hash:
    """args_hash from the value hashes of the (already filtered) positional and keyword args."""
    return hash_struct(["TaskArguments", list(arg_hashes), dict(kwarg_hashes)])


def hash_argument(call_hash: str, position: int | None, key: str | None, value_hash: str) -> Hash:
    """arg_hash as redun's db backend computes it: str() of position and key, None -> "None"."""
    return hash_struct(["Argument", call_hash, str(position), str(key), value_hash])


def hash_tag(entity_id: str, key: str, value: Any, parents: Iterable[str]) -> Hash:
    """tag_hash as redun stores it.

    redun.hashing.hash_tag hashes ``parents`` in the order given, but its only caller
    (RedunBackendDb._record_tags) sorts them first; sorting here gives the stored id whatever
    order the caller has, and is a no-op for an already sorted list.
    """
    return hash_struct(["Tag", entity_id, key, json_dumps(value), sorted(parents)])
