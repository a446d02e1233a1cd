"""Record kinds and the index entries each one implies. Pure: no I/O.

Placeholder schema so the repository layer can be built and tested; the backend work owns and
extends this module (see docs/contracts.md).
"""

from __future__ import annotations

# name -> multi (dupsort)
INDEX_TABLES: dict[str, bool] = {
    "objects": False,  # object id -> kind
    "evals": False,  # eval_hash -> value_hash (eval-cache heads)
}


def derive_entries(kind: str, object_id: str, payload: bytes) -> list[tuple[str, str, str, str]]:
    """Index entries implied by one stored object (used by the journal and by reindex)."""
    return [("put", "objects", object_id, kind)]
