"""objstore.json: the format document, the versions this objstore reads and writes. Pure.

A repository says ``[major, minor]``. A reader accepts majors ``OLDEST_MAJOR..FORMAT_VERSION[0]``;
a new major means an old reader would miss data (major 2 added pack files, which a major-1
reader never looks in), a new minor only adds what old readers of the same major can ignore.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any

from objstore.errors import FormatError
from objstore.ids import is_uuid
from objstore.layout import FORMAT_FILE

FORMAT_NAME = "objstore"
# Major 1: loose objects only. Major 2 adds pack files (objects/pack/, objstore.pack).
FORMAT_VERSION: tuple[int, int] = (2, 0)
OLDEST_MAJOR = 1
PACKS_SINCE_MAJOR = 2

Version = tuple[int, int]


def new_doc() -> dict[str, Any]:
    """The format document of a new repository."""
    return {
        "format": FORMAT_NAME,
        "version": list(FORMAT_VERSION),
        "repo_id": str(uuid.uuid4()),
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def version_of(doc: dict[str, Any]) -> Version:
    major, minor = doc["version"][:2]
    return int(major), int(minor)


def show(version: Any) -> str:
    return ".".join(str(v) for v in list(version)[:2])


def check(doc: Any, where: str) -> dict[str, Any]:
    """``doc`` if it is objstore.json of this format at a major this objstore reads; else a
    FormatError saying why, naming ``where``."""
    if not isinstance(doc, dict):
        raise FormatError(f"{where}: {FORMAT_FILE} is not a JSON object")
    name = doc.get("format")
    if name != FORMAT_NAME:
        raise FormatError(f"{where}: {FORMAT_FILE} says format {name!r}, not {FORMAT_NAME!r}")
    version = doc.get("version")
    if (
        not isinstance(version, list)
        or len(version) < 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in version)
    ):
        raise FormatError(f"{where}: {FORMAT_FILE} has an unreadable version {version!r}")
    major, minor = version[0], version[1]
    mine = f"{show(FORMAT_VERSION)}, majors {OLDEST_MAJOR}-{FORMAT_VERSION[0]}"
    if major > FORMAT_VERSION[0]:
        raise FormatError(
            f"{where}: repository format version {major}.{minor} is newer than this objstore "
            f"supports ({mine}); upgrade objstore to use it"
        )
    if major < OLDEST_MAJOR:
        raise FormatError(
            f"{where}: repository format version {major}.{minor} is older than this objstore "
            f"supports ({mine})"
        )
    if not is_uuid(doc.get("repo_id")):
        raise FormatError(f"{where}: {FORMAT_FILE} has no valid repo_id")
    return doc


def writes_packs(doc: dict[str, Any]) -> bool:
    """Whether a repository at this version may hold packs (every reader then looks in them)."""
    return version_of(doc)[0] >= PACKS_SINCE_MAJOR


def upgraded(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The document rewritten at FORMAT_VERSION, or None when it is already there.

    Major 1 -> 2 changes no data: a major-1 repository is a valid major-2 one without packs.
    """
    old = list(doc["version"])
    if tuple(old[:2]) >= FORMAT_VERSION:
        return None
    new = dict(doc)
    new["version"] = list(FORMAT_VERSION)
    new["upgraded_from"] = old
    return new


__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "OLDEST_MAJOR", "PACKS_SINCE_MAJOR", "Version", "new_doc",
    "version_of", "show", "check", "writes_packs", "upgraded",
]
