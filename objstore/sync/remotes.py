"""Named remotes: NAME -> a repository URL (and its fsspec storage options).

They live in the local repository's own settings (``config.json``, objstore.repo.config),
under ``"remotes"``; sync never copies that file, as git keeps its remotes out of a push.
Storage options are kept as given, in plain text: put credentials in the environment or the
cloud SDK's own configuration where that is possible, and only endpoints and such here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from objstore.repo import config

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
KEY = "remotes"


@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    storage_options: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"url": self.url}
        if self.storage_options:
            doc["storage_options"] = self.storage_options
        return doc


def is_remote_name(name: object) -> bool:
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None and not name.endswith(".")


def check_name(name: str) -> str:
    if not is_remote_name(name):
        raise ValueError(
            f"not a valid remote name: {name!r} (letters, digits, '_', '-', '.'; at most 64; "
            "starting with a letter or digit)"
        )
    return name


def _parse(settings: config.Config) -> dict[str, Remote]:
    found = settings.get(KEY) or {}
    out = {}
    if isinstance(found, dict):
        for name, doc in found.items():
            if is_remote_name(name) and isinstance(doc, dict) and isinstance(doc.get("url"), str):
                options = doc.get("storage_options")
                out[name] = Remote(name, doc["url"], options if isinstance(options, dict) else None)
    return out


def list_remotes(fs: Any, root: str) -> list[Remote]:
    """The remotes of the repository at (fs, root), by name."""
    return sorted(_parse(config.read(fs, root)).values(), key=lambda r: r.name)


def get_remote(fs: Any, root: str, name: str) -> Remote | None:
    return _parse(config.read(fs, root)).get(name)


def add_remote(fs: Any, root: str, remote: Remote) -> bool:
    """Add ``remote``; False (changing nothing) if its name is taken."""
    check_name(remote.name)
    added = False

    def change(settings: config.Config) -> config.Config:
        nonlocal added
        current = dict(settings.get(KEY) or {})
        added = remote.name not in current
        if added:
            current[remote.name] = remote.to_json()
        return {**settings, KEY: current}

    config.update(fs, root, change)
    return added


def remove_remote(fs: Any, root: str, name: str) -> bool:
    """Remove the remote ``name``; False if there is none."""
    removed = False

    def change(settings: config.Config) -> config.Config:
        nonlocal removed
        current = dict(settings.get(KEY) or {})
        removed = current.pop(name, None) is not None
        return {**settings, KEY: current}

    config.update(fs, root, change)
    return removed


__all__ = ["Remote", "NAME_RE", "is_remote_name", "check_name", "list_remotes", "get_remote", "add_remote", "remove_remote"]
