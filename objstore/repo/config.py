"""This copy's own settings: ``config.json`` at the repository root (named remotes).

The settings belong to one copy of a repository, not to its content: sync, push and pull never
copy them (as git keeps ``.git/config`` out of a push). The file is changed only by
compare-and-swap (the refs package's, rooted at the repository), so two ``objstore repo add``
running at once never lose each other's remote.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import refs as refs_pkg
from objstore import layout
from objstore.errors import ConcurrentUpdate, FormatError
from objstore.fs import open_url

CAS_RETRIES = 50

Config = dict[str, Any]


def _store(fs: Any, root: str) -> refs_pkg.RefStore:
    return refs_pkg.open_refs(fs, root)


def _parse(raw: bytes | Any, where: str) -> Config:
    if not isinstance(raw, (bytes, bytearray)):
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise FormatError(f"{where}/{layout.CONFIG_FILE} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{where}/{layout.CONFIG_FILE} is not a JSON object")
    return doc


def read(fs: Any, root: str) -> Config:
    """The settings of the repository at (fs, root); {} when it has none."""
    return _parse(_store(fs, root).get(layout.CONFIG_FILE), root)


def read_url(url: str, storage_options: dict | None = None) -> Config:
    fs, root = open_url(url, storage_options)
    return read(fs, root)


def update(fs: Any, root: str, change: Callable[[Config], Config]) -> Config:
    """Apply ``change(settings) -> new settings`` by compare-and-swap; the settings written."""
    store = _store(fs, root)
    for _ in refs_pkg.attempts(CAS_RETRIES):
        raw = store.get(layout.CONFIG_FILE)
        old = _parse(raw, root)
        new = change(dict(old))
        if new == old:
            return new
        data = json.dumps(new, indent=2, sort_keys=True).encode() + b"\n"
        if store.set_if_equals(layout.CONFIG_FILE, raw, data):
            return new
    raise ConcurrentUpdate(f"{root}/{layout.CONFIG_FILE}: too many concurrent writers")


__all__ = ["read", "read_url", "update", "Config"]
