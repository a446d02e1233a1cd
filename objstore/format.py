"""objstore.json: the format document, the versions this objstore knows, what each one changed,
and the repository settings every client reads from it. Pure.

A repository says ``[major, minor]``. This objstore reads and writes majors
``OLDEST_MAJOR..FORMAT_VERSION[0]``, any minor of them. A new *major* means an older reader
would miss data (major 2 added pack files, which a major-1 reader never looks in; major 3 lets
the journal be compacted, so a major-2 reader would miss the records of retired segments), so a
client refuses a repository of a newer major outright. A new *minor* only adds what clients of
the same major can ignore without being wrong (2.1's settings and value store: an older 2.x
client ignores the settings and finds a value kept at the second URL missing, which is a cache
miss, never a wrong hit), so a repository of a newer minor is read and written as usual.

Whatever version a client is, it writes only what the *repository's* version allows
(``allows``): a new objstore on an old shared repository keeps writing the old format until
``objstore db upgrade``, which is what makes an upgrade without downtime possible.

The settings (``settings_of``) live here, in objstore.json, rather than in a file of their
own: every client reads objstore.json anyway when it opens a repository (so they cost no
request), the version beside them says which clients understand them, and like the version
they change only by an explicit command (``objstore config``, ``objstore db``).
"""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass
from typing import Any

from objstore.errors import FormatError
from objstore.ids import is_uuid
from objstore.layout import FORMAT_FILE

FORMAT_NAME = "objstore"
Version = tuple[int, int]

FORMAT_VERSION: Version = (3, 0)
OLDEST_MAJOR = 1
PACKS_SINCE_MAJOR = 2  # kept for callers of the 2.0 API


@dataclass(frozen=True)
class FormatVersion:
    """One version this objstore knows, and what it changed."""

    version: Version
    summary: str
    upgrade: str  # what `objstore db upgrade` to it does
    downgrade: str  # what `objstore db downgrade` from it does


VERSIONS: tuple[FormatVersion, ...] = (
    FormatVersion(
        (1, 0),
        "loose objects (objects/ab/cdef…), eval heads, journal segments, handle refs",
        "-",
        "-",
    ),
    FormatVersion(
        (2, 0),
        "pack files: the small objects of one flush in one objects/pack/<sha256>.pack, located by "
        "`packed` journal entries (a 1.x reader never looks in packs)",
        "rewrites objstore.json only: a 1.x repository is a 2.0 one without packs",
        "unpacks: writes every packed object as a loose file and journals that it left its pack "
        "(the packs are retired by gc after the grace period)",
    ),
    FormatVersion(
        (2, 1),
        "repository settings in objstore.json (value_store_url, value_store_min_size, pack, "
        "compact_threshold); values at or above the size kept at a second URL, each located by a "
        "`value_store` journal entry (an older 2.x client finds them missing: a cache miss)",
        "adds the default settings to objstore.json",
        "copies every value kept at the value store back into objects/ and journals it, then drops "
        "the settings (refused while a value there cannot be read)",
    ),
    FormatVersion(
        (3, 0),
        "journal checkpoints: journal/<time>-<writer>.ckpt folds many segments into one file, and "
        "the segments it covers are retired after the grace period (a 2.x reader would miss them)",
        "compacts the journal into a checkpoint (its segments are retired by gc after the grace "
        "period)",
        "expands every checkpoint back into ordinary journal segments and removes the checkpoints",
    ),
)

KNOWN: dict[Version, FormatVersion] = {v.version: v for v in VERSIONS}

# What a repository's version must be for a client to write a feature.
PACKS: Version = (2, 0)
SETTINGS: Version = (2, 1)
VALUE_STORE: Version = (2, 1)
CHECKPOINTS: Version = (3, 0)


def new_doc() -> dict[str, Any]:
    """The format document of a new repository."""
    doc: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": list(FORMAT_VERSION),
        "repo_id": str(uuid.uuid4()),
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    doc["settings"] = DEFAULT_SETTINGS.to_doc()
    return doc


def version_of(doc: dict[str, Any]) -> Version:
    major, minor = doc["version"][:2]
    return int(major), int(minor)


def show(version: Any) -> str:
    return ".".join(str(v) for v in list(version)[:2])


def parse_version(text: str) -> Version:
    """``"2.1"`` / ``"2"`` -> (2, 1) / (2, 0); FormatError for anything else."""
    parts = str(text).strip().split(".")
    if not 1 <= len(parts) <= 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise FormatError(f"not a format version: {text!r} (expected MAJOR.MINOR, e.g. 2.1)")
    return int(parts[0]), int(parts[1]) if len(parts) == 2 else 0


def supported() -> str:
    """The range this objstore reads and writes, as people read it."""
    return f"{OLDEST_MAJOR}.0 to {FORMAT_VERSION[0]}.x (writes {show(FORMAT_VERSION)})"


def compatible(version: Version) -> bool:
    return OLDEST_MAJOR <= version[0] <= FORMAT_VERSION[0]


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
    settings_of(doc, where)  # damaged settings are an error here, not a surprise at a write
    return doc


def allows(doc: dict[str, Any], feature: Version) -> bool:
    """Whether a repository at ``doc``'s version may hold ``feature`` (PACKS, VALUE_STORE, ...):
    every client of that version then reads it."""
    major, minor = version_of(doc)
    if major != feature[0]:
        return major > feature[0]
    return minor >= feature[1]


def writes_packs(doc: dict[str, Any]) -> bool:
    """Whether a repository at this version may hold packs (every reader then looks in them)."""
    return allows(doc, PACKS)


# -- settings ---------------------------------------------------------------------------------

DEFAULT_VALUE_STORE_MIN_SIZE = 1 << 20  # objects above 1 MiB are loose (never packed) anyway
DEFAULT_COMPACT_THRESHOLD = 1000
# A refresh lists journal/ from the newest name its index has seen minus this many seconds (the
# clock skew, plus upload time, tolerated between writers), and lists all of it this often.
DEFAULT_JOURNAL_SKEW = 600
DEFAULT_JOURNAL_FULL_LISTING = 900


@dataclass(frozen=True)
class Settings:
    """Repository settings every client obeys (objstore.json ``settings``; format 2.1)."""

    value_store_url: str | None = None  # values of value_store_min_size bytes or more go there
    value_store_min_size: int = DEFAULT_VALUE_STORE_MIN_SIZE
    pack: bool = True  # false: never write packs (the plain objects/ab/cdef fanout only)
    compact_threshold: int = DEFAULT_COMPACT_THRESHOLD  # compact past this many segments; 0: never
    journal_skew: int = DEFAULT_JOURNAL_SKEW  # seconds a refresh lists back from its marker
    journal_full_listing: int = DEFAULT_JOURNAL_FULL_LISTING  # seconds between full listings; 0: always

    def to_doc(self) -> dict[str, Any]:
        return {
            "value_store_url": self.value_store_url,
            "value_store_min_size": self.value_store_min_size,
            "pack": self.pack,
            "compact_threshold": self.compact_threshold,
            "journal_skew": self.journal_skew,
            "journal_full_listing": self.journal_full_listing,
        }


DEFAULT_SETTINGS = Settings()
SETTING_NAMES = tuple(DEFAULT_SETTINGS.to_doc())


def _setting(name: str, value: Any, where: str) -> Any:
    bad = FormatError(f"{where}: {FORMAT_FILE} setting {name} has an unusable value {value!r}")
    if name == "value_store_url":
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise bad
        return value
    if name == "pack":
        if not isinstance(value, bool):
            raise bad
        return value
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad
    return value


def settings_of(doc: dict[str, Any], where: str = "repository") -> Settings:
    """The settings a repository's clients obey. Before 2.1 there are none (the defaults, no
    value store); names a newer minor added are ignored."""
    raw = doc.get("settings")
    if raw is None or not allows(doc, SETTINGS):
        return DEFAULT_SETTINGS
    if not isinstance(raw, dict):
        raise FormatError(f"{where}: {FORMAT_FILE} settings is not a JSON object")
    values = DEFAULT_SETTINGS.to_doc()
    for name in SETTING_NAMES:
        if name in raw:
            values[name] = _setting(name, raw[name], where)
    return Settings(**values)


def parse_setting(name: str, text: str | None) -> Any:
    """A setting's value from the command line (None: back to the default); ValueError if bad."""
    if name not in SETTING_NAMES:
        raise ValueError(f"unknown setting {name!r} (settings: {', '.join(SETTING_NAMES)})")
    if text is None:
        return DEFAULT_SETTINGS.to_doc()[name]
    if name == "value_store_url":
        return text
    if name == "pack":
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"{name} is true or false, not {text!r}")
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"{name} is a whole number, not {text!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def with_setting(doc: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """The document with one setting changed; FormatError if its version has no settings."""
    if not allows(doc, SETTINGS):
        raise FormatError(
            f"repository format {show(doc['version'])} has no settings: they need format "
            f"{show(SETTINGS)} (run `objstore db upgrade {show(SETTINGS)}` once every client reads it)"
        )
    new = dict(doc)
    settings = settings_of(doc).to_doc()
    settings.update({k: v for k, v in (doc.get("settings") or {}).items() if k not in settings})
    settings[name] = _setting(name, value, "setting")
    new["settings"] = settings
    return new


# -- versions ---------------------------------------------------------------------------------


def path(current: Version, target: Version) -> list[tuple[Version, Version]]:
    """The steps (from, to) between two known versions, in the order they run: up through every
    version in between, or down through them. FormatError naming what is unknown."""
    if target not in KNOWN:
        raise FormatError(f"unknown format version {show(target)} (known: {', '.join(show(v) for v in KNOWN)})")
    ordered = [v.version for v in VERSIONS]
    if current not in KNOWN:
        if current > FORMAT_VERSION:
            raise FormatError(
                f"repository format {show(current)} is newer than this objstore knows ({show(FORMAT_VERSION)}); "
                "its migrations are unknown here: use an objstore that knows it"
            )
        # An unknown minor of a known major (a newer objstore's, since removed): treat it as the
        # newest known version below it when going up; going down is refused (its data unknown).
        below = max(v for v in ordered if v < current)
        if target < current:
            raise FormatError(
                f"repository format {show(current)} is unknown to this objstore: it cannot say what "
                f"a downgrade to {show(target)} must rewrite"
            )
        current = below
    i, j = ordered.index(current), ordered.index(target)
    if j >= i:
        return [(ordered[k], ordered[k + 1]) for k in range(i, j)]
    return [(ordered[k], ordered[k - 1]) for k in range(i, j, -1)]


def with_version(doc: dict[str, Any], version: Version, origin: Any = None) -> dict[str, Any]:
    """The document at ``version`` (settings dropped below 2.1, added at 2.1 and later);
    ``origin``: the version a multi-step migration started from (default: the document's)."""
    new = dict(doc)
    old = list(origin if origin is not None else doc["version"])
    new["version"] = list(version)
    if version > version_of(doc):
        new["upgraded_from"] = old
        new.pop("downgraded_from", None)
    else:
        new["downgraded_from"] = old
        new.pop("upgraded_from", None)
    if version >= SETTINGS:
        merged = DEFAULT_SETTINGS.to_doc()
        merged.update(doc.get("settings") or {})
        new["settings"] = merged
    else:
        new.pop("settings", None)
    return new


def upgraded(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The document rewritten at FORMAT_VERSION, or None when it is already there (the data
    steps of each migration are objstore.repo.migrate's)."""
    if version_of(doc) >= FORMAT_VERSION:
        return None
    return with_version(doc, FORMAT_VERSION)


__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "OLDEST_MAJOR", "PACKS_SINCE_MAJOR", "Version", "FormatVersion",
    "VERSIONS", "KNOWN", "PACKS", "SETTINGS", "VALUE_STORE", "CHECKPOINTS", "new_doc", "version_of",
    "show", "parse_version", "supported", "compatible", "check", "allows", "writes_packs", "Settings",
    "DEFAULT_SETTINGS", "SETTING_NAMES", "settings_of", "parse_setting", "with_setting", "path",
    "with_version", "upgraded", "DEFAULT_VALUE_STORE_MIN_SIZE", "DEFAULT_COMPACT_THRESHOLD",
]
