"""The object format: round trips, and every kind of damage is a CorruptObject naming the object."""

from __future__ import annotations

import io
import json
import os
import random
import threading
import tracemalloc

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore import codec
from objstore.errors import CorruptObject, ObjstoreError

OID = "0123456789abcdef0123456789abcdef01234567"

kinds = st.from_regex(codec.KIND_RE, fullmatch=True)


def raw_frame(content: bytes, **kwargs) -> bytes:
    """A zstd frame around arbitrary content, bypassing the codec's own header writing."""
    params = {"level": 3, "write_checksum": True, "write_content_size": True} | kwargs
    return zstandard.ZstdCompressor(**params).compress(content)


def stream_decode(data: bytes, **kwargs) -> tuple[str, bytes]:
    kind, length, chunks = codec.decode_stream(io.BytesIO(data), object_id=OID, **kwargs)
    payload = b"".join(chunks)
    assert len(payload) == length
    return kind, payload


def one_shot_decode(data: bytes, **kwargs) -> tuple[str, bytes]:
    """codec.decode, checked against the bulk decoder: the same answer, or the same error."""
    try:
        got = codec.decode(data, object_id=OID, **kwargs)
    except CorruptObject as exc:
        with pytest.raises(type(exc)) as info:
            codec.decode_many([(OID, data)], **kwargs)
        assert (info.value.object_id, info.value.reason) == (exc.object_id, exc.reason)
        raise
    assert codec.decode_many([(OID, data)], **kwargs) == [got]
    return got


DECODERS = [one_shot_decode, stream_decode]


def assert_corrupt(data: bytes, reason_part: str = "", **kwargs) -> None:
    for decoder in DECODERS:
        with pytest.raises(CorruptObject) as info:
            decoder(data, **kwargs)
        err = info.value
        assert err.object_id == OID
        assert OID in str(err)
        assert reason_part in err.reason, (decoder.__name__, err.reason)
        assert isinstance(err, ObjstoreError) and isinstance(err, ValueError)


# ---------------------------------------------------------------- round trips and format


@settings(max_examples=150, deadline=None)
@given(
    kinds,
    st.binary(max_size=5000) | st.builds(lambda n: bytes(n), st.integers(0, 300_000)),
    st.sampled_from([-5, 1, 3, 9]),
    st.lists(st.integers(1, 70_000), max_size=8),
)
def test_round_trip_one_shot_and_stream(kind, payload, level, cuts):
    encoded = codec.encode(kind, payload, level=level)
    assert one_shot_decode(encoded, expect_kind=kind) == (kind, payload)
    assert stream_decode(encoded, expect_kind=kind) == (kind, payload)

    # Streaming encode from arbitrary chunking writes the very same bytes as one-shot encode.
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(payload[pos : pos + cut])
        pos += cut
    chunks.append(payload[pos:])
    out = io.BytesIO()
    written = codec.encode_stream(kind, len(payload), iter(chunks), out, level=level)
    assert written == len(out.getvalue())
    assert out.getvalue() == encoded


def test_frame_layout_is_the_documented_one():
    encoded = codec.encode("blob", b"hello")
    params = zstandard.get_frame_parameters(encoded)
    assert params.has_checksum
    assert params.content_size == len(b"blob 5\0hello")
    # Exactly one frame whose content is the git-style header and the raw payload.
    inner = zstandard.ZstdDecompressor().decompress(encoded, allow_extra_data=False)
    assert inner == b"blob 5\0hello"
    assert codec.DEFAULT_LEVEL == 3


def test_level_is_configurable():
    payload = (b"abcdefgh" * 5000) + os.urandom(2000)
    sizes = {level: len(codec.encode("v", payload, level=level)) for level in (-50, 19)}
    assert sizes[19] < sizes[-50]
    with pytest.raises(ValueError):
        codec.encode("v", b"x", level=99)
    with pytest.raises(TypeError):
        codec.encode("v", b"x", level=True)


@pytest.mark.parametrize("kind", ["", "Blob", "1blob", "a b", "a\0", "x" * 33, "é", None])
def test_invalid_kinds_are_refused_on_encode(kind):
    with pytest.raises(ValueError):
        codec.encode(kind, b"x")
    with pytest.raises(ValueError):
        codec.encode_stream(kind, 1, [b"x"], io.BytesIO())


def test_encode_many_is_encode_of_each():
    items = [("v", b""), ("call", b'{"a":1}'), ("v", bytearray(b"abc")), ("job", memoryview(b"x" * 5000)),
             ("v", os.urandom(300)), ("call", b"\0" * 70)]
    for level in (1, codec.DEFAULT_LEVEL, 19):
        assert codec.encode_many(items, level=level) == [codec.encode(k, p, level=level) for k, p in items]
    assert codec.encode_many([]) == []


@pytest.mark.parametrize("kind", ["", "Blob", "a b", "x" * 33, None])
def test_encode_many_refuses_invalid_kinds(kind):
    with pytest.raises(ValueError):
        codec.encode_many([("v", b"x"), (kind, b"y")])


def test_encode_accepts_buffers():
    for payload in (bytearray(b"abc"), memoryview(b"abc")):
        assert one_shot_decode(codec.encode("v", payload)) == ("v", b"abc")


def test_encode_stream_refuses_a_wrong_length():
    with pytest.raises(ValueError):
        codec.encode_stream("v", 5, [b"abc"], io.BytesIO())
    with pytest.raises(ValueError):
        codec.encode_stream("v", 2, [b"abc"], io.BytesIO())


def test_empty_payload():
    encoded = codec.encode("v", b"")
    assert one_shot_decode(encoded) == ("v", b"")
    assert stream_decode(encoded) == ("v", b"")


# ---------------------------------------------------------------- damage


SMALL_OBJECTS = [
    ("value", b""),
    ("value", b"x"),
    ("value", random.Random(80).randbytes(80)),  # incompressible: a raw block
    ("value", bytes(400)),  # an RLE block
    ("tag", b"hello world " * 30),  # a compressed block
    ("callnode", json.dumps({"task_hash": "a" * 40, "children": ["b" * 40] * 3}).encode()),
]


def _flips(encoded: bytes):
    for bit in range(len(encoded) * 8):
        damaged = bytearray(encoded)
        damaged[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(damaged)


@pytest.mark.parametrize("kind,payload", SMALL_OBJECTS[:5])
def test_every_flipped_bit_is_caught(kind, payload):
    encoded = codec.encode(kind, payload)
    for _, damaged in _flips(encoded):
        assert_corrupt(damaged, expect_kind=kind)


def test_flipped_bits_in_compressed_sequences_are_caught_or_provably_harmless():
    # In periodic data ("bbbb…") zstd may copy a match from several offsets with identical
    # output, so a few bits of a compressed block change nothing: the decoded content is the
    # same and its checksum verifies. Such a flip is not damage to the object; every other flip
    # must be reported, and the harmless ones must be rare.
    kind, payload = SMALL_OBJECTS[-1]
    encoded = codec.encode(kind, payload)
    harmless = 0
    for _, damaged in _flips(encoded):
        for decoder in DECODERS:
            try:
                result = decoder(damaged, expect_kind=kind)
            except CorruptObject as err:
                assert err.object_id == OID
            else:
                assert result == (kind, payload)
                harmless += 1
    assert harmless <= len(encoded) * 8 * 2 // 100


@pytest.mark.parametrize("kind,payload", SMALL_OBJECTS)
def test_truncation_at_every_length_is_caught(kind, payload):
    encoded = codec.encode(kind, payload)
    for cut in range(len(encoded)):
        assert_corrupt(encoded[:cut])


def test_truncation_reasons_are_specific():
    encoded = codec.encode("value", b"some payload" * 10)
    assert_corrupt(encoded[:-1], "truncated")  # only the checksum is cut
    assert_corrupt(encoded[:-4], "truncated")
    assert_corrupt(encoded[:10], "truncated")
    assert_corrupt(encoded[:2], "truncated")
    assert_corrupt(b"", "empty")


def test_checksum_mismatch_reason():
    encoded = bytearray(codec.encode("value", random.Random(64).randbytes(64)))  # a raw block
    encoded[20] ^= 0x01  # inside the stored payload bytes
    assert_corrupt(bytes(encoded), "checksum")
    encoded = bytearray(codec.encode("value", b"abc"))
    encoded[-1] ^= 0x80
    assert_corrupt(bytes(encoded), "checksum")


def test_wrong_kind():
    encoded = codec.encode("value", b"x")
    assert_corrupt(encoded, "wrong kind", expect_kind="task")
    assert one_shot_decode(encoded, expect_kind="value") == ("value", b"x")


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"blob 6\0hello", "length mismatch"),
        (b"blob 4\0hello", "length mismatch"),
        (b"blob 0\0", ""),  # fine: see below
        (b"blob 05\0hello", "bad header"),  # non-canonical length
        (b"blob +5\0hello", "bad header"),
        (b"Blob 5\0hello", "bad header"),
        (b"blob5\0hello", "bad header"),
        (b"blob  5\0hello", "bad header"),
        (b"blob 5 hello", "bad header"),  # no NUL at all
        (b"", "bad header"),
        (b"x" * 40 + b" 5\0hello", "bad header"),  # kind too long
        (b"blob 123456789012345678901\0", "bad header"),  # absurd length
        (b"\0blob 5\0hello", "bad header"),
    ],
)
def test_bad_inner_headers(content, reason):
    frame = raw_frame(content)
    if content == b"blob 0\0":
        assert one_shot_decode(frame) == ("blob", b"")
        assert stream_decode(frame) == ("blob", b"")
        return
    assert_corrupt(frame, reason)


def test_foreign_bytes():
    inner = b"blob 5\0hello"
    assert_corrupt(b"blob 5\0hello", "not a zstd frame")  # stored uncompressed
    assert_corrupt(os.urandom(64), "not a zstd frame")
    assert_corrupt(b"\x1f\x8b\x08\x00" + os.urandom(20), "not a zstd frame")  # gzip
    assert_corrupt(b"\x28\xb5\x2f\xfc" + raw_frame(inner)[4:], "not a zstd frame")
    # Skippable frame (magic 0x184D2A50) carrying our object's bytes: still not our format.
    skippable = (0x184D2A50).to_bytes(4, "little") + len(inner).to_bytes(4, "little") + inner
    assert_corrupt(skippable, "not a zstd frame")
    assert_corrupt(raw_frame(inner, write_checksum=False), "checksum")
    assert_corrupt(raw_frame(inner, write_content_size=False), "content size")
    assert_corrupt(codec.encode("v", b"x") + b"\0", "trailing")
    assert_corrupt(codec.encode("v", b"x") + codec.encode("v", b"y"), "trailing")
    assert_corrupt(b"\x28\xb5\x2f\xfd" + b"\xff" * 30, "")


def test_frame_without_content_size_from_a_streaming_compressor():
    cobj = zstandard.ZstdCompressor(write_checksum=True).compressobj()
    frame = cobj.compress(b"blob 5\0hello") + cobj.flush()
    assert_corrupt(frame, "content size")


def test_a_lying_content_size_is_caught_without_allocating_it():
    encoded = bytearray(codec.encode("value", b"hello"))
    fhd = encoded[4]
    assert fhd >> 6 == 0 and fhd & 0x20  # single segment, 1-byte content size
    # Rewrite the header to claim 2**40 bytes (8-byte content size field).
    rebuilt = bytes(encoded[:4]) + bytes([fhd | 0xC0]) + (2**40).to_bytes(8, "little") + bytes(
        encoded[6:]
    )
    tracemalloc.start()
    try:
        assert_corrupt(rebuilt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 1024 * 1024


def test_a_big_frame_held_in_memory_decodes_in_one_allocation_and_damage_is_still_named():
    # Over _ONE_SHOT_MAX, a frame whose claimed size is within _MAX_RATIO of its length (a
    # checkpoint block of ~400 MB) is decompressed at once, not in pieces joined afterwards.
    payload = os.urandom(codec._ONE_SHOT_MAX + 4096)
    frame = codec.encode("value", payload)
    assert codec._check_frame_header(frame, "x") > codec._ONE_SHOT_MAX
    assert codec.decode(frame, object_id="x") == ("value", payload)
    flipped = bytearray(frame)
    flipped[len(frame) // 2] ^= 0x40
    for damaged in (bytes(flipped), frame[:-100], frame + b"\0"):
        with pytest.raises(CorruptObject) as info:
            codec.decode(damaged, object_id="x")
        assert info.value.object_id == "x" and info.value.reason


def test_decode_many_decodes_in_order_and_raises_the_first_defect():
    ids = [f"{i:040x}" for i in range(6)]
    items = [(ids[0], codec.encode("v", b"a")), (ids[1], codec.encode("call", b"{}")),
             (ids[2], codec.encode("v", bytes(200_000))), (ids[3], raw_frame(b"v 1\0x", write_checksum=False))]
    assert codec.decode_many(items[:3]) == [("v", b"a"), ("call", b"{}"), ("v", bytes(200_000))]
    good, bad = codec.encode("v", b"b"), bytearray(codec.encode("v", b"b" * 100))
    bad[-1] ^= 1
    with pytest.raises(CorruptObject) as info:
        codec.decode_many([(ids[4], good), (ids[5], bytes(bad)), *items])
    assert info.value.object_id == ids[5] and "checksum" in info.value.reason
    with pytest.raises(CorruptObject) as info:
        codec.decode_many(items)
    assert info.value.object_id == ids[3] and "no content checksum" in info.value.reason
    with pytest.raises(CorruptObject) as info:
        codec.decode_many(items[:2], expect_kind="v")
    assert info.value.object_id == ids[1]


def test_pack_read_entries_is_read_entry_of_each():
    from objstore import pack

    ids = [f"{i:040x}" for i in range(3)]
    name, data, located = pack.build([(oid, "v", codec.encode("v", oid.encode())) for oid in ids])
    entries = [(oid, data[loc.offset : loc.offset + loc.length]) for oid, _, loc in located]
    assert pack.read_entries(entries) == [pack.read_entry(oid, entry) for oid, entry in entries]
    assert pack.read_entries(entries, expect_kind="v") == [("v", oid.encode()) for oid in ids]
    swapped = [entries[0], (ids[1], entries[2][1]), (ids[2], b"garbage")]
    with pytest.raises(CorruptObject) as info:
        pack.read_entries(swapped)
    assert info.value.object_id == ids[1] and "belongs to" in info.value.reason
    damaged = [(ids[0], entries[0][1][:-1]), entries[1], (ids[2], b"garbage")]
    with pytest.raises(CorruptObject) as info:
        pack.read_entries(damaged)  # the first defect, as one at a time
    assert info.value.object_id == ids[0]


def test_decode_accepts_buffers():
    encoded = codec.encode("v", b"abc")
    assert codec.decode(memoryview(encoded), object_id=OID) == ("v", b"abc")
    assert codec.decode(bytearray(encoded), object_id=OID) == ("v", b"abc")


# ---------------------------------------------------------------- streams


class TrickleReader(io.RawIOBase):
    """A raw stream that returns short reads, as sockets and raw files may."""

    def __init__(self, data: bytes, step: int = 7):
        self._buf = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(min(n, self._step) if n >= 0 else self._step)


class TrickleWriter(io.RawIOBase):
    def __init__(self):
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        chunk = bytes(b[:5])
        self.data += chunk
        return len(chunk)


def test_streams_cope_with_short_reads_and_writes():
    payload = os.urandom(3000) + bytes(200_000)
    out = TrickleWriter()
    codec.encode_stream("value", len(payload), [payload[:100], payload[100:]], out)
    assert bytes(out.data) == codec.encode("value", payload)
    kind, length, chunks = codec.decode_stream(TrickleReader(bytes(out.data)), object_id=OID)
    assert (kind, length, b"".join(chunks)) == ("value", len(payload), payload)


def test_stream_header_problems_raise_before_any_payload():
    encoded = codec.encode("value", b"x" * 1000)
    with pytest.raises(CorruptObject, match="wrong kind"):
        codec.decode_stream(io.BytesIO(encoded), object_id=OID, expect_kind="task")
    with pytest.raises(CorruptObject, match="length mismatch"):
        codec.decode_stream(io.BytesIO(raw_frame(b"v 3\0ab")), object_id=OID)
    with pytest.raises(CorruptObject, match="not a zstd frame"):
        codec.decode_stream(io.BytesIO(b"nope"), object_id=OID)


def _big_payload_chunks(total: int, chunk: int = 1 << 20):
    # Seeded, so the frame (and which bytes the sampled flips hit) is the same on every run.
    seed = random.Random(total).randbytes(chunk)
    for i in range(total // chunk):
        # Mixed random and zero data: both raw and highly compressed (RLE) blocks.
        yield seed if i % 2 else seed[: chunk // 4] + bytes(chunk - chunk // 4)


def test_large_stream_round_trip_in_bounded_memory(tmp_path):
    total = 64 * 1024 * 1024
    path = tmp_path / "obj"
    tracemalloc.start()
    try:
        with open(path, "wb") as out:
            written = codec.encode_stream("value", total, _big_payload_chunks(total), out)
        encode_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        seen = 0
        largest = 0
        with open(path, "rb") as src:
            kind, length, chunks = codec.decode_stream(src, object_id=OID, expect_kind="value")
            for chunk in chunks:
                seen += len(chunk)
                largest = max(largest, len(chunk))
        decode_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == path.stat().st_size
    assert (kind, length, seen) == ("value", total, total)
    assert largest <= 128 * 1024
    # The payload is 64 MiB; a few MiB of chunks and buffers is all either side may hold.
    assert encode_peak < 8 * 1024 * 1024, encode_peak
    assert decode_peak < 4 * 1024 * 1024, decode_peak


def test_zeros_decompress_in_bounded_chunks():
    # 32 MiB of zeros compress to a few KiB: a naive streaming decoder would inflate it at once.
    total = 32 * 1024 * 1024
    out = io.BytesIO()
    codec.encode_stream("value", total, (bytes(1 << 20) for _ in range(32)), out)
    assert len(out.getvalue()) < 64 * 1024
    tracemalloc.start()
    try:
        _, _, chunks = codec.decode_stream(io.BytesIO(out.getvalue()), object_id=OID)
        assert sum(len(c) for c in chunks) == total
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, peak


def _big_encoded(total: int = 4 * 1024 * 1024) -> bytes:
    out = io.BytesIO()
    codec.encode_stream("value", total, _big_payload_chunks(total), out)
    return out.getvalue()


def test_large_stream_damage_is_raised_by_the_iterator():
    encoded = _big_encoded()
    for mutate, reason in [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b + b"x", "trailing"),
        (lambda b: b[:-4] + bytes(4), "checksum"),
        (lambda b: b[:-4] + bytes([b[-4] ^ 1]) + b[-3:], "checksum"),
    ]:
        damaged = mutate(encoded)
        kind, length, chunks = codec.decode_stream(io.BytesIO(damaged), object_id=OID)
        with pytest.raises(CorruptObject, match=reason) as info:
            for _ in chunks:
                pass
        assert info.value.object_id == OID
        with pytest.raises(CorruptObject, match=reason):
            one_shot_decode(damaged)


def test_large_stream_sampled_bit_flips_are_caught():
    encoded = _big_encoded()
    # The window descriptor (byte 5 of a multi-segment frame) is exempt: a wider or narrower
    # window can decode the same content, which the checksum then proves intact.
    fhd = encoded[4]
    assert not fhd & 0x20
    rng = random.Random(7)
    positions = [4, 6, 7, 8, 9, 10, len(encoded) - 1] + rng.sample(range(11, len(encoded)), 40)
    for pos in positions:
        damaged = bytearray(encoded)
        damaged[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(CorruptObject):
            stream_decode(bytes(damaged))
        with pytest.raises(CorruptObject):
            one_shot_decode(bytes(damaged))


def test_one_shot_decode_of_a_value_larger_than_the_direct_limit():
    payload = os.urandom(1 << 20) * 40  # 40 MiB, above the single-allocation limit
    encoded = codec.encode("value", payload, level=1)
    assert one_shot_decode(encoded) == ("value", payload)
    assert_corrupt(encoded[:-1], "truncated")


# ---------------------------------------------------------------- JSON payloads


def test_canonical_json():
    obj = {"b": [1, 2.5, None, True], "a": "é", "c": {"z": 1, "y": 2}}
    data = codec.canonical_json(obj)
    assert data == '{"a":"é","b":[1,2.5,null,true],"c":{"y":2,"z":1}}'.encode()
    assert codec.parse_json(data, object_id=OID) == obj
    # Lone surrogates (from os.fsdecode of undecodable paths) still make valid, stable JSON.
    weird = {"path": "a\udcffb"}
    assert codec.canonical_json(weird) == codec.canonical_json(dict(weird))
    assert codec.parse_json(codec.canonical_json(weird), object_id=OID) == weird


@settings(deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_canonical_json_round_trips_and_is_stable(obj):
    data = codec.canonical_json(obj)
    back = codec.parse_json(data, object_id=OID)
    assert back == obj
    assert codec.canonical_json(back) == data


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"{'a': 1}", b"\xff\xfe{}", '{"a":1}'.encode("utf-16"), b"[1,2] x", b"[" * 100_000],
)
def test_parse_json_errors_name_the_object(payload):
    with pytest.raises(CorruptObject) as info:
        codec.parse_json(payload, object_id=OID)
    assert info.value.object_id == OID and "JSON" in info.value.reason


# ---------------------------------------------------------------- threads and speed


def test_concurrent_use_from_threads():
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(300):
                payload = bytes([seed]) * (i * 13) + os.urandom(i % 50)
                enc = codec.encode("value", payload, level=(seed % 3) + 1)
                assert codec.decode(enc, object_id=OID, expect_kind="value") == ("value", payload)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
