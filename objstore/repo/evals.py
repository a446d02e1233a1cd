"""Eval-cache heads: eval_hash -> value_hash, last writer wins.

Every head travels in the journal (an ``evals`` index entry, kept by checkpoints), and that is
where a reader finds it: the scheduler's cache check asks the index only, and catches up with
the journal after a miss (rate-limited), which finds other writers' heads. Earlier versions
also wrote each head as a file ``evals/ab/cdef…`` on shared storage: one PUT per cached call,
most of a bucket's per-job bill, for a lookup by path nothing on the scheduler's path makes any
more. Those files are still read where they exist (``get(by_path=True)``, a full-scan reindex,
fsck, sync copies them), and ``files=True`` still writes them for a reader that wants them.
"""

from __future__ import annotations

import logging

from objstore import layout
from objstore.errors import CorruptObject
from objstore.ids import is_hash
from objstore.index import Index
from objstore.missing import MISSING, Missing
from objstore.model.schema import IndexEntry
from objstore.repo.buffer import WriteBuffer
from objstore.store import BlobStore

log = logging.getLogger("objstore.repo")
_READ_BATCH = 64


def parse_head(eval_hash: str, raw: bytes) -> str:
    value = raw.decode("ascii", "replace").strip()
    if not is_hash(value):
        raise CorruptObject(f"evals/{eval_hash}", f"not a value hash: {raw[:60]!r}")
    return value


class EvalHeads:
    def __init__(self, blobs: BlobStore, index: Index, buffer: WriteBuffer, *, files: bool, read_files: bool = True):
        self.blobs = blobs
        self.index = index
        self.buffer = buffer
        self.files = files  # write a file per head
        self.read_files = files or read_files  # look for one by path (shared storage: older writers')

    def get(self, eval_hash: str, *, by_path: bool = True) -> str | Missing:
        """The value hash last recorded for ``eval_hash``: buffer, index, then (shared storage,
        ``by_path``) its file if an older writer left one, remembered in the index once read. A scheduler's cache check
        passes by_path=False: a request per miss was most of a bucket's per-job cost, and
        catching up with the journal after a miss (rate-limited) finds other writers' heads."""
        value = self.buffer.lookup("evals", eval_hash)
        if value is not None:
            return value
        found = self.index.get("evals", eval_hash)
        if not isinstance(found, Missing) or not self.read_files or not by_path:
            return found
        raw = self.blobs.read(layout.eval_key(eval_hash))
        if isinstance(raw, Missing):
            return MISSING
        try:
            value = parse_head(eval_hash, raw)
        except CorruptObject as exc:  # a damaged head file is a cache miss, never a crash
            log.warning("%s: cache miss (fsck --repair rewrites it from the journal or moves it aside)", exc)
            return MISSING
        self.index.apply([("put", "evals", eval_hash, value)])
        return value

    @staticmethod
    def entries(heads: dict[str, str]) -> list[IndexEntry]:
        """A flush's heads as the journal (and the index) carry them."""
        return [("put", "evals", h, v) for h, v in heads.items()]

    def write_files(self, heads: dict[str, str]) -> None:
        """Write a flush's heads as files, when they are kept (``files``: off by default). The flush does
        this after the journal segment that carries the same heads: by then the batch is in the
        repository, so a worker killed here loses nothing, whatever a bucket's PUT per head
        costs; a head file that failed is only a later find for readers by path."""
        if heads and self.files:
            # All at once: locally and durable, one fsync round for the files and one for their
            # directories.
            self.blobs.replace_many([(layout.eval_key(h), v.encode("ascii")) for h, v in heads.items()])

    def scan(self) -> dict[str, str]:
        """Every head file under evals/ (a full-scan reindex); unreadable ones are skipped."""
        cut = len(layout.EVALS) + 1
        found = {}
        for key in self.blobs.list_keys(layout.EVALS):
            eval_hash = layout.fanout_id(key[cut:])
            if eval_hash is not None and is_hash(eval_hash):
                found[eval_hash] = key
        heads: dict[str, str] = {}
        items = sorted(found.items())
        for start in range(0, len(items), _READ_BATCH):
            batch = items[start : start + _READ_BATCH]
            for (eval_hash, _), raw in zip(batch, self.blobs.read_many(k for _, k in batch)):
                if isinstance(raw, Missing):
                    continue
                try:
                    heads[eval_hash] = parse_head(eval_hash, raw)
                except CorruptObject:
                    log.warning("reindex: skipping evals/%s: not a value hash", eval_hash)
        return heads


__all__ = ["EvalHeads", "parse_head"]
