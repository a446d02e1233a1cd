"""The entries of a pack found without its toc: for a pack whose toc (or any byte) is damaged.

A pack is ``OBJPACK1``, then entries ``<id>\\0<one zstd frame>`` back to back, then the toc frame
and an 8-byte tail (objstore.pack). Each frame says where it ends (a decompressor stops at the
frame's end), so the entries can be walked from the magic without the toc; a damaged entry is
stepped over by looking for the next ``<id>\\0`` followed by zstd's frame magic. Every entry found
is verified like any read (pack.read_entry: the frame checksum, the kind, the length).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import zstandard

from objstore import pack
from objstore.errors import CorruptObject

_FRAME_MAGIC = zstandard.MAGIC_NUMBER.to_bytes(4, "little")
_ENTRY_START = re.compile(
    rb"(?:[0-9a-f]{40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\x00" + re.escape(_FRAME_MAGIC)
)


@dataclass(frozen=True)
class Found:
    object_id: str
    kind: str
    offset: int
    length: int
    payload: bytes

    def entry(self, data: bytes) -> bytes:
        return data[self.offset : self.offset + self.length]


def _frame_end(data: bytes, start: int) -> int | None:
    """Where the zstd frame starting at ``start`` ends, or None if it does not decode."""
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        dobj.decompress(data[start : start + pack.MAX_OBJECT_BYTES + (1 << 16)])
    except zstandard.ZstdError:
        return None
    if not dobj.eof:
        return None
    return start + (min(len(data) - start, pack.MAX_OBJECT_BYTES + (1 << 16)) - len(dobj.unused_data))


def scan(data: bytes) -> tuple[list[Found], list[tuple[int, str]]]:
    """(entries that verify, [(offset, why)] of the damaged stretches stepped over)."""
    found: list[Found] = []
    damaged: list[tuple[int, str]] = []
    pos = len(pack.MAGIC) if data.startswith(pack.MAGIC) else 0
    while pos < len(data):
        if data.startswith(_FRAME_MAGIC, pos):
            break  # a frame with no id before it: the toc
        m = _ENTRY_START.match(data, pos)
        if m is None:
            damaged.append((pos, "bytes that start no entry"))
        else:
            candidate = data[pos : m.end() - len(_FRAME_MAGIC) - 1].decode("ascii")
            stop = _frame_end(data, m.end() - len(_FRAME_MAGIC))
            if stop is None:
                damaged.append((pos, f"{candidate}: its frame does not decode"))
            else:
                try:
                    kind, payload = pack.read_entry(candidate, data[pos:stop])
                except CorruptObject as exc:
                    damaged.append((pos, f"{candidate}: {exc.reason}"))
                else:
                    found.append(Found(candidate, kind, pos, stop - pos, payload))
                    pos = stop
                    continue
        nxt = _ENTRY_START.search(data, pos + 1)
        if nxt is None:
            break
        pos = nxt.start()
    return found, damaged


__all__ = ["Found", "scan"]
