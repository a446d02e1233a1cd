"""A repository at a URL (objstore.repo.repository.Repository) and the parts it composes."""

from __future__ import annotations

from objstore.repo.flush import PACK_MIN_OBJECTS, FlushPolicy
from objstore.repo.index_dir import cache_home, default_index_dir, normalize_url
from objstore.repo.repository import Repository, shared_storage

__all__ = [
    "Repository", "FlushPolicy", "PACK_MIN_OBJECTS", "cache_home", "default_index_dir",
    "normalize_url", "shared_storage",
]
