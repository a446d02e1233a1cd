"""The value store: values of ``value_store_min_size`` bytes or more kept at a second URL.

Like redun's value store, it keeps big payloads out of the metadata's way (say the repository
on a local disk or a small bucket, the values on S3). Each value written there is still an
ordinary verified object (one zstd frame, ``<url>/objects/ab/cdef…``), and its location is an
ordinary journal entry (``value_store``: value hash -> the store's URL), so every client finds
it whatever the settings say today, and a value whose store lost it is a clean miss.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from objstore.fs import open_url
from objstore.store import ObjectStore, open_store

# url -> storage options for it (None: the filesystem's defaults)
OptionsFor = Callable[[str], dict[str, Any] | None]


class ValueStores:
    """Every value store a repository's journal names, opened on first use."""

    def __init__(self, options_for: OptionsFor, *, durable: bool = False):
        self.options_for = options_for
        self.durable = durable
        self._stores: dict[str, ObjectStore] = {}
        self._lock = threading.Lock()

    def store(self, url: str) -> ObjectStore:
        """The ObjectStore at ``url`` (ValueError for a URL no filesystem takes)."""
        found = self._stores.get(url)
        if found is None:
            with self._lock:
                found = self._stores.get(url)
                if found is None:
                    fs, root = open_url(url, self.options_for(url))
                    found = open_store(fs, root, durable=self.durable)
                    self._stores[url] = found
        return found


def scheme_of(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else "file"


def options_for(repo_url: str, storage_options: dict | None, value_store_options: dict | None) -> OptionsFor:
    """The fsspec options of a value store at a URL: ``value_store_options`` when given, else the
    repository's own when the store is the same kind of storage (most likely the same account)."""

    def options(url: str) -> dict[str, Any] | None:
        if value_store_options is not None:
            return value_store_options
        return storage_options if scheme_of(url) == scheme_of(repo_url) else None

    return options

__all__ = ["ValueStores", "OptionsFor", "scheme_of", "options_for"]
