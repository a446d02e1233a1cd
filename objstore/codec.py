"""The object format: one zstd frame around ``<kind> <length>\\0<payload>``. Pure: no I/O.

Every stored object is exactly one zstd frame with its content checksum on and the content
size in the frame header; inside it, a git-style header names the record kind and the payload
length. Decoding verifies all of it (magic, frame header, checksum, completeness, no trailing
bytes, header syntax, declared length, expected kind) and every failure is a CorruptObject
naming the object, never a raw ZstdError or a silently short value. (A few bit flips inside
zstd's own encoding can be harmless: e.g. a match copied from another offset of periodic data,
or a different window size. Those decode to the same content, proven by its checksum.)

Streaming functions work on file-like objects handed in by the caller (the store layer owns the
actual I/O) and keep memory bounded for values of hundreds of MB.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import zstandard

from objstore.errors import CorruptObject, WrongKind

__all__ = [
    "DEFAULT_LEVEL",
    "KIND_RE",
    "encode",
    "encode_many",
    "decode",
    "decode_many",
    "encode_stream",
    "decode_stream",
    "canonical_json",
    "parse_json",
    "check_kind",
    "frame_end",
]

DEFAULT_LEVEL = 3
KIND_RE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")

_MAGIC = zstandard.MAGIC_NUMBER.to_bytes(4, "little")  # b"\x28\xb5\x2f\xfd"
_HEADER_RE = re.compile(rb"([a-z][a-z0-9_.-]{0,31}) (0|[1-9][0-9]{0,19})\0")
_MAX_HEADER = 32 + 1 + 20 + 1  # kind, space, length digits, NUL
_UNKNOWN_SIZES = (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR)
# zstd's Block_Maximum_Size: no block decompresses to more, which is what bounds stream memory.
_BLOCK_MAX = 128 * 1024
# Above this, one-shot encode avoids concatenating header and payload (a full extra copy), and
# decode refuses to trust the header's content size for a single allocation: a flipped bit
# there could otherwise ask for terabytes before the checksum is ever looked at.
_ONE_SHOT_MAX = 32 * 1024 * 1024
# ...unless the frame is already in memory and the size it claims is at most this many times
# its length (and under _IN_MEMORY_MAX): a flipped bit can then ask for little more than what
# is held already, and one allocation replaces the pieces and the copy that joins them (a cold
# refresh decodes a checkpoint of ~400 MB this way).
_MAX_RATIO = 64
_IN_MEMORY_MAX = 1 << 30

# zstd contexts are costly to create (~tens of µs) and not thread-safe: keep one per thread.
_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    if type(level) is not int:  # before the cache lookup: True would find level 1's context
        raise TypeError(f"compression level must be an int, not {type(level).__name__}")
    try:
        cache = _local.compressors
    except AttributeError:
        cache = _local.compressors = {}
    cctx = cache.get(level)
    if cctx is None:
        cctx = cache[level] = _new_compressor(level)
    return cctx


def _new_compressor(level: int) -> zstandard.ZstdCompressor:
    if type(level) is not int:
        raise TypeError(f"compression level must be an int, not {type(level).__name__}")
    return zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)


def _decompressor() -> zstandard.ZstdDecompressor:
    try:
        return _local.dctx
    except AttributeError:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
        return dctx


def check_kind(kind: str) -> str:
    if not isinstance(kind, str) or KIND_RE.fullmatch(kind) is None:
        raise ValueError(f"invalid object kind {kind!r}: must match {KIND_RE.pattern}")
    return kind


def _header(kind: str, length: int) -> bytes:
    check_kind(kind)
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise ValueError(f"invalid payload length {length!r}")
    return b"%s %d\0" % (kind.encode("ascii"), length)


# --------------------------------------------------------------------------- one shot


def encode(kind: str, payload: bytes, *, level: int = DEFAULT_LEVEL) -> bytes:
    """One object: a zstd frame (checksum + content size) around ``kind length\\0payload``."""
    header = _header(kind, len(payload))
    cctx = _compressor(level)
    if len(payload) <= _ONE_SHOT_MAX:
        return cctx.compress(header + payload)
    # Same bytes as the one-shot path (the size is pledged), without copying a huge payload.
    cobj = cctx.compressobj(size=len(header) + len(payload))
    return b"".join([cobj.compress(header), cobj.compress(payload), cobj.flush()])


def encode_many(items: Iterable[tuple[str, bytes]], *, level: int = DEFAULT_LEVEL) -> list[bytes]:
    """``encode`` of each (kind, payload), in order; the same bytes. For a flush of thousands of
    small objects: one compressor and one check per distinct kind, not one per object."""
    cctx = _compressor(level)
    compress = cctx.compress
    kinds: dict[str, bytes] = {}
    out: list[bytes] = []
    for kind, payload in items:
        name = kinds.get(kind) if type(kind) is str else None
        if name is None:
            name = kinds[kind] = check_kind(kind).encode("ascii")
        if len(payload) > _ONE_SHOT_MAX:
            out.append(encode(kind, payload, level=level))
        else:
            out.append(compress(b"%s %d\0%s" % (name, len(payload), payload)))
    return out


def decode(
    data: bytes, *, object_id: str, expect_kind: str | None = None
) -> tuple[str, bytes]:
    """Verify and unpack one object; CorruptObject(object_id, reason) on any defect."""
    size = _check_frame_header(data, object_id)
    if size <= _ONE_SHOT_MAX or (size <= _IN_MEMORY_MAX and size <= _MAX_RATIO * len(data)):
        try:
            content = _decompressor().decompress(data, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise CorruptObject(object_id, _zstd_reason(exc)) from None
    else:
        pieces = _decompress_pieces(_frame_pieces(_MemoryReader(data), object_id), object_id)
        next(pieces)  # the content size, already known
        content = b"".join(pieces)
    match = _HEADER_RE.match(content)
    if match is None:
        raise CorruptObject(object_id, f"bad header {_preview(content)}")
    kind = match.group(1).decode("ascii")
    start = match.end()
    length = int(match.group(2))
    if length != len(content) - start:
        raise CorruptObject(
            object_id, f"length mismatch: header says {length}, payload has {len(content) - start}"
        )
    if expect_kind is not None and kind != expect_kind:
        raise WrongKind(object_id, expect_kind, kind)
    return kind, content[start:]


def decode_many(
    items: Iterable[tuple[str, bytes]], *, expect_kind: str | None = None
) -> list[tuple[str, bytes]]:
    """``decode`` of each (object_id, data), in order, with the same checks and errors: the
    first defective object raises, as decoding them one at a time would.

    For reading thousands of small objects (a log of a 10^4-job tree decodes 3x that): one
    decompressor and no per-object function calls for a frame as encode writes it. Anything
    else (damage, a big object, a foreign frame) takes decode itself, which names the defect.
    """
    decompress = _decompressor().decompress
    params_of = zstandard.get_frame_parameters
    header = _HEADER_RE.match
    magic, limit = _MAGIC, _ONE_SHOT_MAX
    out: list[tuple[str, bytes]] = []
    for object_id, data in items:
        match = content = None
        if data[:4] == magic and len(data) > 4 and not data[4] & 0x18:
            try:
                params = params_of(data)
                if params.has_checksum and not params.dict_id and 0 <= params.content_size <= limit:
                    content = decompress(data, allow_extra_data=False)
            except zstandard.ZstdError:
                content = None
            if content is not None:
                match = header(content)
        if match is None or int(match.group(2)) != len(content) - match.end():  # type: ignore[arg-type]
            out.append(decode(data, object_id=object_id, expect_kind=expect_kind))  # raises what is wrong
            continue
        kind = match.group(1).decode("ascii")
        if expect_kind is not None and kind != expect_kind:
            raise WrongKind(object_id, expect_kind, kind)
        out.append((kind, content[match.end() :]))  # type: ignore[index]
    return out


def frame_end(data: bytes, start: int = 0, *, max_content: int = _ONE_SHOT_MAX) -> int | None:
    """The offset just past the one zstd frame starting at ``data[start]``, or None if no whole,
    decodable frame of at most ``max_content`` bytes starts there. For finding objects laid end
    to end without an index (a pack whose table of contents is lost); decode() then verifies."""
    head = data[start : start + 18]  # the longest zstd frame header
    if head[:4] != _MAGIC:
        return None
    try:
        size = zstandard.frame_content_size(head)
    except zstandard.ZstdError:
        return None
    if size < 0 or size > max_content:
        return None
    # zstd's compressBound (size + size/256 + a little) plus the frame header and checksum:
    # never hand the decompressor the rest of a 64 MiB pack to find one small frame's end.
    bound = size + (size >> 7) + 1024
    window = memoryview(data)[start : start + bound]
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        dobj.decompress(window)
    except zstandard.ZstdError:
        return None
    if not dobj.eof:
        return None
    return start + len(window) - len(dobj.unused_data)


def _check_frame_header(data: bytes, object_id: str) -> int:
    """The declared content size, after checking this is a frame we can fully verify."""
    if len(data) == 0:
        raise CorruptObject(object_id, "empty object (not a zstd frame)")
    if data[:4] != _MAGIC:
        if len(data) < 4 and _MAGIC.startswith(bytes(data)):
            raise CorruptObject(object_id, f"truncated zstd frame ({len(data)} bytes)")
        raise CorruptObject(object_id, f"not a zstd frame (starts {_preview(data[:8])})")
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError:
        raise CorruptObject(object_id, f"truncated zstd frame header ({len(data)} bytes)") from None
    return _check_params(data[4], params, object_id)


def _check_params(descriptor: int, params: Any, object_id: str) -> int:
    # Decoders must ignore the descriptor's unused bit; we never set it, so a set bit is damage
    # (the content would still verify, but a flipped bit anywhere must not pass as intact).
    if descriptor & 0x18:
        raise CorruptObject(object_id, f"bad zstd frame descriptor {descriptor:#04x}")
    if not params.has_checksum:
        raise CorruptObject(object_id, "zstd frame has no content checksum")
    if params.dict_id:
        raise CorruptObject(object_id, f"zstd frame needs dictionary {params.dict_id}")
    if params.content_size in _UNKNOWN_SIZES:
        raise CorruptObject(object_id, "zstd frame header lacks the content size")
    return params.content_size


def _zstd_reason(exc: Exception) -> str:
    msg = str(exc)
    low = msg.lower()
    if "checksum" in low:
        return "frame checksum mismatch"
    if "did not decompress full frame" in low or "truncated" in low:
        return "truncated zstd frame"
    if "unused data" in low:
        return "trailing bytes after the zstd frame"
    return f"bad zstd data ({msg})"


def _preview(data: bytes | bytearray | memoryview) -> str:
    return repr(bytes(data[:40]))


# --------------------------------------------------------------------------- streaming


def encode_stream(
    kind: str,
    length: int,
    chunks: Iterable[bytes],
    out: BinaryIO,
    *,
    level: int = DEFAULT_LEVEL,
) -> int:
    """Write one object to ``out`` from payload chunks totalling ``length``; returns bytes written.

    Produces the same bytes as ``encode`` of the joined payload. The length must be known up
    front because it is in both headers; a mismatch raises ValueError (the caller's output is
    then garbage and must be discarded, which the store's temp-file write does).
    """
    header = _header(kind, length)
    # A private context: a shared per-thread one could be reused mid-stream by encode().
    cobj = _new_compressor(level).compressobj(size=len(header) + length)
    written = _write_all(out, cobj.compress(header))
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > length:
            raise ValueError(f"payload is longer than the declared {length} bytes")
        written += _write_all(out, cobj.compress(chunk))
    if seen != length:
        raise ValueError(f"payload has {seen} bytes, declared {length}")
    written += _write_all(out, cobj.flush())
    return written


def _write_all(out: BinaryIO, data: bytes) -> int:
    view = memoryview(data)
    while view:
        n = out.write(view)
        if n is None or n >= len(view):  # buffered writers write everything
            break
        view = view[n:]
    return len(data)


def decode_stream(
    src: BinaryIO, *, object_id: str, expect_kind: str | None = None
) -> tuple[str, int, Iterator[bytes]]:
    """Unpack one object from a file-like source with bounded memory.

    The frame and object headers (kind, declared length, expected kind) are checked before this
    returns; the payload iterator yields chunks of at most 128 KiB and raises CorruptObject when
    the data turns out bad: at once for a bad block, at the end for a checksum mismatch,
    truncation, trailing bytes or a length that does not match the header. A consumer must
    therefore read the iterator to the end before trusting what it got.
    """
    pieces = _decompress_pieces(_frame_pieces(_StreamReader(src), object_id), object_id)
    content_size = next(pieces)  # the generator reports the frame's size first
    head = bytearray()
    for out in pieces:
        head += out
        if b"\0" in head[:_MAX_HEADER] or len(head) >= _MAX_HEADER:
            break
    match = _HEADER_RE.match(head)
    if match is None:
        raise CorruptObject(object_id, f"bad header {_preview(head)}")
    kind = match.group(1).decode("ascii")
    length = int(match.group(2))
    start = match.end()
    if start + length != content_size:
        raise CorruptObject(
            object_id,
            f"length mismatch: header says {length}, frame holds {content_size - start}",
        )
    if expect_kind is not None and kind != expect_kind:
        raise WrongKind(object_id, expect_kind, kind)
    return kind, length, _payload(bytes(head[start:]), pieces, length, object_id)


def _payload(
    first: bytes, pieces: Iterator[bytes], length: int, object_id: str
) -> Iterator[bytes]:
    seen = len(first)
    if first:
        yield first
    for out in pieces:
        seen += len(out)
        if seen > length:
            raise CorruptObject(object_id, f"length mismatch: payload exceeds the declared {length}")
        yield out
    if seen != length:
        raise CorruptObject(object_id, f"length mismatch: header says {length}, payload has {seen}")


def _decompress_pieces(pieces: Iterator[Any], object_id: str) -> Iterator[Any]:
    """Decompress frame pieces one block at a time; first yields the declared content size."""
    content_size = next(pieces)
    yield content_size
    # A private context: the per-thread one may be used by decode() while this is suspended.
    dobj = zstandard.ZstdDecompressor().decompressobj()
    total = 0
    try:
        for piece in pieces:
            out = dobj.decompress(piece)
            if out:
                total += len(out)
                yield out
    except zstandard.ZstdError as exc:
        raise CorruptObject(object_id, _zstd_reason(exc)) from None
    if not dobj.eof:
        raise CorruptObject(object_id, "truncated zstd frame")
    if total != content_size:
        raise CorruptObject(
            object_id, f"frame content size mismatch: header says {content_size}, got {total}"
        )


class _StreamReader:
    def __init__(self, src: BinaryIO):
        self._src = src

    def read(self, n: int) -> bytes:
        """Up to n bytes; fewer only at end of input (raw streams may return short reads)."""
        data = self._src.read(n)
        if data is None:
            data = b""
        if len(data) == n or not data:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            more = self._src.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)


class _MemoryReader:
    def __init__(self, data: bytes):
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int) -> memoryview:
        piece = self._view[self._pos : self._pos + n]
        self._pos += len(piece)
        return piece


_FCS_SIZES = (0, 2, 4, 8)
_DID_SIZES = (0, 1, 2, 4)


def _frame_pieces(reader: Any, object_id: str) -> Iterator[Any]:
    """Split one zstd frame into its header, its blocks and its checksum, in input order.

    Walking the block structure (RFC 8878 §3.1.1) is what makes streaming decode both bounded
    and exact: each block is handed to the decompressor alone, so no call can expand beyond
    128 KiB, and the walk knows precisely where the frame ends, so a frame cut inside its
    checksum, or followed by foreign bytes, is caught (zstd's own stream readers report
    neither). First yields the declared content size.
    """
    magic = reader.read(4)
    if len(magic) == 0:
        raise CorruptObject(object_id, "empty object (not a zstd frame)")
    if bytes(magic) != _MAGIC[: len(magic)]:
        raise CorruptObject(object_id, f"not a zstd frame (starts {_preview(magic)})")
    fhd = reader.read(1)
    if len(magic) < 4 or len(fhd) < 1:
        raise CorruptObject(object_id, "truncated zstd frame header")
    d = fhd[0]
    single_segment = (d >> 5) & 1
    fcs_size = _FCS_SIZES[d >> 6] or single_segment  # single-segment frames always carry 1+
    rest = (0 if single_segment else 1) + _DID_SIZES[d & 3] + fcs_size
    tail = reader.read(rest)
    if len(tail) < rest:
        raise CorruptObject(object_id, "truncated zstd frame header")
    header = bytes(magic) + bytes(fhd) + bytes(tail)
    try:
        params = zstandard.get_frame_parameters(header)
    except zstandard.ZstdError as exc:
        raise CorruptObject(object_id, f"bad zstd frame header ({exc})") from None
    yield _check_params(d, params, object_id)
    yield header
    while True:
        block_header = reader.read(3)
        if len(block_header) < 3:
            raise CorruptObject(object_id, "truncated zstd frame")
        bh = int.from_bytes(block_header, "little")
        last, block_type, block_size = bh & 1, (bh >> 1) & 3, bh >> 3
        if block_type == 3 or block_size > _BLOCK_MAX:
            raise CorruptObject(object_id, f"bad zstd block header {bytes(block_header).hex()}")
        size = 1 if block_type == 1 else block_size  # an RLE block stores its byte once
        body = reader.read(size)
        if len(body) < size:
            raise CorruptObject(object_id, "truncated zstd frame")
        yield bytes(block_header) + bytes(body)
        if last:
            break
    checksum = reader.read(4)
    if len(checksum) < 4:
        raise CorruptObject(object_id, "truncated zstd frame (checksum cut)")
    yield checksum
    if reader.read(1):
        raise CorruptObject(object_id, "trailing bytes after the zstd frame")


# --------------------------------------------------------------------------- JSON payloads


# One encoder for every call: json.dumps builds a new one per call when given options, which
# costs as much as encoding a small record.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8: equal records give equal bytes."""
    text = _CANONICAL.encode(obj)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (e.g. os.fsdecode'd paths) cannot be UTF-8; \u-escaping them is still
        # valid, deterministic JSON that parses back to the same str.
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
            "ascii"
        )


def parse_json(payload: bytes, *, object_id: str) -> Any:
    try:
        # Decode explicitly: json.loads(bytes) would also accept UTF-16/32.
        return json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CorruptObject(object_id, f"bad JSON payload ({exc})") from None
