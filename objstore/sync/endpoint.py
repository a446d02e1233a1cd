"""One side of a sync: a repository's files (format document, blob store, refs), and no index.

Sync moves files, not records: it never opens either side's LMDB index (a destination learns
what arrived at its next refresh, from the journal segments sync copied), so a no-op sync costs
a few listings and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import refs as refs_pkg
from objstore import codec, layout
from objstore import format as fmt
from objstore.errors import CorruptObject, FormatError, RepositoryNotFound
from objstore.fs import open_url
from objstore.ids import is_hash, is_uuid
from objstore.missing import Missing
from objstore.store import BlobStore, open_blobs


@dataclass
class Endpoint:
    url: str
    fs: Any
    root: str
    blobs: BlobStore
    format: dict[str, Any]
    storage_options: dict[str, Any] | None = None
    _refs: refs_pkg.RefStore | None = field(default=None, repr=False)

    @property
    def refs(self) -> refs_pkg.RefStore:
        if self._refs is None:
            self._refs = refs_pkg.open_refs(self.fs, self.blobs.path(layout.REFS))
        return self._refs

    @property
    def holds_packs(self) -> bool:
        return fmt.writes_packs(self.format)

    @property
    def holds_checkpoints(self) -> bool:
        return fmt.allows(self.format, fmt.CHECKPOINTS)

    @property
    def value_store_url(self) -> str | None:
        """Where its writers put big values (format 2.1 settings), or None."""
        if not fmt.allows(self.format, fmt.VALUE_STORE):
            return None
        return fmt.settings_of(self.format, self.url).value_store_url or None

    @property
    def writes_eval_files(self) -> bool:
        """Whether a copy must write eval heads as files too. No: heads live in the journal
        segments a copy brings along (files an older objstore wrote are copied as they are),
        and a PUT per head would undo the request economy a destination bucket's writers keep."""
        return False


def open_endpoint(url: str, storage_options: dict | None = None, *, role: str = "source") -> Endpoint:
    """The repository at ``url``; RepositoryNotFound (naming ``role``) when there is none."""
    fs, root = open_url(url, storage_options)
    blobs = open_blobs(fs, root)
    raw = blobs.read(layout.FORMAT_FILE)
    if isinstance(raw, Missing):
        hint = f"; create it first with `objstore init {url}`" if role == "destination" else ""
        raise RepositoryNotFound(f"{role} {url} is not an objstore repository ({layout.FORMAT_FILE} not found){hint}")
    try:
        doc = codec.parse_json(raw, object_id=layout.FORMAT_FILE)
    except CorruptObject as exc:
        raise FormatError(f"{url}: {layout.FORMAT_FILE} is not valid JSON ({exc.reason})") from None
    return Endpoint(url, fs, root, blobs, fmt.check(doc, url), storage_options)


@dataclass
class Listing:
    """What one side holds, by key, with sizes (one listing per area)."""

    journal: dict[str, int]  # journal/<name> -> size (every name, not only today's segments)
    evals: dict[str, int]  # evals/ab/cdef… -> size
    packs: dict[str, int]  # objects/pack/<name>.pack -> size
    loose: dict[str, int]  # objects/ab/cdef… -> size

    @property
    def files(self) -> int:
        return len(self.journal) + len(self.evals) + len(self.packs) + len(self.loose)


def list_files(side: Endpoint) -> Listing:
    """List the areas in the reverse of the write order (journal, eval heads, then objects).

    A flush writes objects, then eval heads, then its segment; listing the other way round means
    every segment and head seen here was written after its objects, so those are in the object
    listing taken after it, however busy the writers of this side are.
    """
    blobs = side.blobs
    journal = dict(blobs.list_sized(layout.JOURNAL))
    evals = {k: n for k, n in blobs.list_sized(layout.EVALS) if _fanout_ok(k, len(layout.EVALS) + 1, hashes_only=True)}
    packs: dict[str, int] = {}
    loose: dict[str, int] = {}
    pack_prefix = layout.PACKS + "/"
    cut = len(layout.OBJECTS) + 1
    for key, size in blobs.list_sized(layout.OBJECTS):
        if key.startswith(pack_prefix):
            if layout.is_pack_name(key[len(pack_prefix) :]):
                packs[key] = size
        elif _fanout_ok(key, cut):
            loose[key] = size
    return Listing(journal, evals, packs, loose)


def _fanout_ok(key: str, cut: int, *, hashes_only: bool = False) -> bool:
    # Only names that read back as ids are copied: a foreign file stays where it is.
    object_id = layout.fanout_id(key[cut:])
    return object_id is not None and (is_hash(object_id) or (not hashes_only and is_uuid(object_id)))


__all__ = ["Endpoint", "Listing", "open_endpoint", "list_files"]
