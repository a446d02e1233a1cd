"""Every name in a repository, relative to its root. Pure: strings in, strings out.

    objstore.json            the format document (objstore.format)
    config.json              this copy's settings (remotes; objstore.repo.config), never synced
    objects/ab/cdef…         one loose object per id (objstore.codec encoding)
    objects/pack/<name>      packs: many objects in one immutable file (objstore.pack)
    evals/ab/cdef…           eval-cache heads on shared storage: eval_hash -> value_hash
    journal/<segment>        what each flush added (objstore.repo.journal)
    journal/<segment>.ckpt   a checkpoint: many segments folded into one (objstore.repo.checkpoint)
    refs/handles/<name>      handle state, changed only by compare-and-swap
    lost+found/<key>         what fsck --repair moved aside (damaged files), never read back

This module is the only place that turns an id or a name into a key, and the only one that
reads a key back into an id: nothing read from input, a record or a listing becomes a path
without passing one of the checks below.
"""

from __future__ import annotations

import datetime as _dt
import re

from objstore import hashing
from objstore.errors import InvalidId
from objstore.ids import ObjectId, fanout_path, is_hash, is_uuid, validate_hash

FORMAT_FILE = "objstore.json"
# This copy's own settings (named remotes): never copied by sync, as git keeps its config out
# of a push.
CONFIG_FILE = "config.json"
OBJECTS = "objects"
PACK_DIR = "pack"  # under objects/; a 4-letter name can never be a fanout directory
PACKS = f"{OBJECTS}/{PACK_DIR}"
EVALS = "evals"
JOURNAL = "journal"
REFS = "refs"
HANDLES = "handles"  # under refs/
LOST_FOUND = "lost+found"  # fsck --repair moves damaged files here, under their own key

# Temp files start with a dot and hold a dash in their first 40 characters, so they can never
# parse as an object id, a segment or a ref name, and every listing skips them.
TEMP_PREFIX = ".tmp-"

PACK_NAME_RE = re.compile(r"[0-9a-f]{40}\.pack")
# <UTC time>-<writer id>; the time sorts segments, the writer id keeps two writers apart.
SEGMENT_RE = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8,32}")
# A checkpoint is named like a segment (its writer's time and id) plus this suffix, so a
# major-2 reader, which ingests only names matching SEGMENT_RE, never mistakes one for a segment.
CHECKPOINT_SUFFIX = ".ckpt"
CHECKPOINT_RE = re.compile(SEGMENT_RE.pattern + re.escape(CHECKPOINT_SUFFIX))
_FANOUT_RE = re.compile(r"([0-9a-f]{2})/([0-9a-f-]{34,38})")
_SAFE_HANDLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}")


def object_key(object_id: str) -> str:
    return f"{OBJECTS}/{fanout_path(object_id)}"


def pack_key(name: str) -> str:
    if not isinstance(name, str) or PACK_NAME_RE.fullmatch(name) is None:
        raise InvalidId(f"not a pack name: {name!r}")
    return f"{PACKS}/{name}"


def eval_key(eval_hash: str) -> str:
    return f"{EVALS}/{fanout_path(validate_hash(eval_hash))}"


def segment_key(name: str) -> str:
    """The key of a journal file: a segment or a checkpoint (every name Journal.names() gives)."""
    if not is_journal_name(name):
        raise InvalidId(f"not a journal segment name: {name!r}")
    return f"{JOURNAL}/{name}"


def is_segment_name(name: object) -> bool:
    return isinstance(name, str) and SEGMENT_RE.fullmatch(name) is not None


def is_checkpoint_name(name: object) -> bool:
    return isinstance(name, str) and CHECKPOINT_RE.fullmatch(name) is not None


def is_journal_name(name: object) -> bool:
    """A segment's or a checkpoint's name."""
    return is_segment_name(name) or is_checkpoint_name(name)


def lost_found_key(key: str) -> str:
    """Where fsck --repair moves the damaged file at ``key`` (a key layout built)."""
    return f"{LOST_FOUND}/{key}"


def is_pack_name(name: object) -> bool:
    return isinstance(name, str) and PACK_NAME_RE.fullmatch(name) is not None


def is_temp(name: str) -> bool:
    return name.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)


def segment_name(when: _dt.datetime, writer_id: str) -> str:
    """The journal segment name for a flush at ``when`` (UTC) by ``writer_id`` (hex)."""
    return f"{when.astimezone(_dt.UTC).strftime('%Y%m%dT%H%M%S.%fZ')}-{writer_id}"


def checkpoint_name(when: _dt.datetime, writer_id: str) -> str:
    return segment_name(when, writer_id) + CHECKPOINT_SUFFIX


def journal_time(name: str) -> _dt.datetime:
    """The time a segment or checkpoint name carries (its writer's clock)."""
    return _dt.datetime.strptime(name[:23], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=_dt.UTC)


def fanout_id(relative: str) -> ObjectId | None:
    """``"ab/cdef…"`` (a key below objects/ or evals/) back to its id; None if it is not one."""
    m = _FANOUT_RE.fullmatch(relative)
    if m is None:
        return None
    candidate = m.group(1) + m.group(2)
    return candidate if is_hash(candidate) or is_uuid(candidate) else None  # type: ignore[return-value]


def handle_ref(fullname: str) -> str:
    """The ref (relative to refs/) holding a handle name's state: the name itself when it is
    plain, its hash otherwise (a ref name may not hold every character a handle name may)."""
    if _SAFE_HANDLE_NAME.fullmatch(fullname) and ".." not in fullname and not fullname.endswith((".lock", ".")):
        return f"{HANDLES}/{fullname}"
    return f"{HANDLES}/_/{hashing.hash_text(fullname)}"


__all__ = [
    "FORMAT_FILE", "CONFIG_FILE", "OBJECTS", "PACKS", "PACK_DIR", "EVALS", "JOURNAL", "REFS", "HANDLES",
    "TEMP_PREFIX", "PACK_NAME_RE", "SEGMENT_RE", "CHECKPOINT_RE", "CHECKPOINT_SUFFIX", "LOST_FOUND",
    "object_key", "pack_key", "eval_key", "segment_key", "segment_name", "checkpoint_name",
    "journal_time", "is_segment_name", "is_checkpoint_name", "is_journal_name", "is_pack_name",
    "is_temp", "fanout_id", "handle_ref", "lost_found_key",
]
