"""The one rule for where a repository's local index lives, shared by every entry point.

The index is derived and lives outside the repository (copying a repository must never copy an
index over another one): ``<cache home>/index/<name>-<hash of the normalized URL>``, where the
cache home is ``$XDG_CACHE_HOME/objstore``, else ``~/.cache/objstore``. The CLI, the library and
the redun adapter all call ``default_index_dir``, so `objstore log` and a redun process find the
same index for one repository; an explicit index directory (``index_dir=``, ``--index-dir``,
``$OBJSTORE_INDEX_DIR``, redun.ini ``objstore_index_dir``) overrides it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path


def normalize_url(url: str) -> str:
    """The URL an index is keyed by: local paths made absolute, no trailing slash."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() in ("file", "local"):
        path = rest if sep else url
        return "file://" + (os.path.abspath(os.path.expanduser(path)).rstrip("/") or "/")
    return f"{scheme.lower()}://{rest.rstrip('/')}"


def cache_home(environ: Mapping[str, str] | None = None) -> Path:
    """objstore's cache directory by the XDG base-directory rule. ``environ`` defaults to the
    process environment: this is the one place outside the entry points that reads it, because
    every objstore process on a machine, however it was started, must agree on it."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "objstore"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".cache" / "objstore"


def default_index_dir(url: str, home: Path | None = None) -> Path:
    """``<cache home>/index/<name>-<hash of the normalized url>``; computable before the
    repository is read. The repository's repo_id is checked through the index's own meta."""
    norm = normalize_url(url)
    digest = hashlib.sha256(norm.encode("utf-8")).hexdigest()[:20]
    tail = norm.rstrip("/").rsplit("/", 1)[-1] or "root"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", tail).strip("._")[:40] or "repo"
    return (cache_home() if home is None else Path(home)) / "index" / f"{slug}-{digest}"


__all__ = ["normalize_url", "cache_home", "default_index_dir"]
