"""db info / db versions: a repository's format against what this objstore reads and writes.

``info`` reads objstore.json without opening the repository, so it answers for a repository of
a version this objstore refuses too (and never migrates one by looking at it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from objstore import format as fmt
from objstore import layout
from objstore.errors import FormatError, RepositoryNotFound
from objstore.fs import open_url
from objstore.missing import Missing
from objstore.repo.repository import migrates_on_open
from objstore.store import open_blobs


@dataclass
class Info:
    url: str
    version: fmt.Version
    compatible: bool
    why: str
    local: bool
    doc: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    journal: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "version": fmt.show(self.version),
            "reads": f"{fmt.OLDEST_MAJOR}.0-{fmt.FORMAT_VERSION[0]}.x",
            "writes": fmt.show(fmt.FORMAT_VERSION),
            "compatible": self.compatible,
            "status": self.why,
            "migrates_on_open": self.local,
            "upgraded_from": self.doc.get("upgraded_from"),
            "downgraded_from": self.doc.get("downgraded_from"),
            "settings": self.settings,
            "journal": self.journal,
        }

    def lines(self) -> list[str]:
        out = [
            f"repository:    {self.url}",
            f"format:        {fmt.show(self.version)}"
            + (f" (upgraded from {fmt.show(self.doc['upgraded_from'])})" if self.doc.get("upgraded_from") else "")
            + (f" (downgraded from {fmt.show(self.doc['downgraded_from'])})" if self.doc.get("downgraded_from") else ""),
            f"this objstore: reads {fmt.supported()}",
            f"compatible:    {'yes' if self.compatible else 'NO'}: {self.why}",
            "migration:     " + ("on open (a repository on this machine's own disk)" if self.local
                                 else "only by `objstore db upgrade` (shared storage)"),  # fmt: skip
        ]
        if self.settings:
            out.append("settings:      " + ", ".join(f"{k}={_show(v)}" for k, v in self.settings.items()))
        if self.journal:
            out.append("journal:       " + ", ".join(f"{n} {k}" for k, n in self.journal.items()))
        return out


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def status(version: fmt.Version) -> tuple[bool, str]:
    mine = fmt.FORMAT_VERSION
    if version[0] > mine[0]:
        return False, f"a newer major than this objstore's {fmt.show(mine)}: upgrade objstore to use it"
    if version[0] < fmt.OLDEST_MAJOR:
        return False, "older than any format this objstore reads"
    if version > mine:
        return True, f"a newer minor of major {version[0]}: read and written; its new features are left alone"
    if version == mine:
        return True, "up to date"
    return True, (f"read and written as {fmt.show(version)}; `objstore db upgrade` makes it {fmt.show(mine)} "
                  "(once every client using it runs an objstore that reads that)")  # fmt: skip


def info(url: str, storage_options: dict | None = None) -> Info:
    fs, root = open_url(url, storage_options)
    blobs = open_blobs(fs, root)
    raw = blobs.read(layout.FORMAT_FILE)
    if isinstance(raw, Missing):
        raise RepositoryNotFound(f"no objstore repository at {url} ({layout.FORMAT_FILE} not found)")
    try:
        doc = json.loads(raw)
        version = fmt.version_of(doc)
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError):
        raise FormatError(f"{url}: {layout.FORMAT_FILE} is unreadable (run `objstore fsck --repair`)") from None
    compatible, why = status(version)
    if compatible:
        fmt.check(doc, url)
    settings = fmt.settings_of(doc, url).to_doc() if compatible and fmt.allows(doc, fmt.SETTINGS) else {}
    names = blobs.list_names(layout.JOURNAL)
    journal = {
        "segments": sum(1 for n in names if layout.is_segment_name(n)),
        "checkpoints": sum(1 for n in names if layout.is_checkpoint_name(n)),
    }
    return Info(url, version, compatible, why, migrates_on_open(fs, root), doc, settings, journal)


def table(current: fmt.Version | None = None) -> list[tuple[str, str, str, str]]:
    """(mark, version, what it changed, what upgrading to it / downgrading from it does)."""
    rows = []
    for v in fmt.VERSIONS:
        mark = "*" if current == v.version else " "
        rows.append((mark, fmt.show(v.version), v.summary, f"up: {v.upgrade}; down: {v.downgrade}"))
    return rows


__all__ = ["Info", "info", "status", "table"]
