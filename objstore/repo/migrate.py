"""Applying format migrations to a repository: each step's data change, then objstore.json.

The versions and what each changed are objstore.format's (pure). A step rewrites data first and
objstore.json last, and commits its own version before the next step starts, so an interrupted
migration leaves a repository at a valid version (the last step that finished). A downgrade
step that cannot keep every record (a value its store lost, a damaged pack entry) refuses before
objstore.json changes, naming what stands in the way: nothing recorded is lost.

    1.0 -> 2.0   objstore.json only             2.0 -> 1.0   unpack every pack
    2.0 -> 2.1   objstore.json (settings)       2.1 -> 2.0   values home from the value store
    2.1 -> 3.0   compact the journal            3.0 -> 2.1   expand the checkpoints
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from objstore import format as fmt
from objstore.errors import FormatError
from objstore.repo import relocate

if TYPE_CHECKING:
    from objstore.repo.repository import Repository

log = logging.getLogger("objstore.repo")
Progress = Callable[[str, int], None]
Step = Callable[["Repository", "Progress | None"], str]


def _nothing(repo: Repository, progress: Progress | None) -> str:
    return "objstore.json only"


def _unpack(repo: Repository, progress: Progress | None) -> str:
    moved = relocate.unpack(repo, progress=progress)
    if moved.failed:
        what = "; ".join(f"{name}: {why}" for name, why in moved.failed[:3])
        raise FormatError(
            f"cannot downgrade below {fmt.show(fmt.PACKS)}: {len(moved.failed)} packed object(s) cannot be read "
            f"({what}); run `objstore fsck` (the readable ones are loose now, nothing was lost)"
        )
    return f"unpacked {moved.objects} objects from {len(moved.retired)} packs (retired by gc after the grace period)"


def _values_home(repo: Repository, progress: Progress | None) -> str:
    moved = relocate.values_home(repo, progress=progress)
    if moved.failed:
        what = "; ".join(f"{name}: {why}" for name, why in moved.failed[:3])
        raise FormatError(
            f"cannot downgrade below {fmt.show(fmt.VALUE_STORE)}: {len(moved.failed)} value(s) live only in a "
            f"value store and cannot be read ({what}); restore them, or prune them with `objstore gc --prune` "
            "(the readable ones were copied into objects/)"
        )
    return f"copied {moved.objects} values ({moved.bytes} bytes) from the value store into objects/"


def _compact(repo: Repository, progress: Progress | None) -> str:
    name = repo.compactor.compact(merge=True, progress=progress)
    return f"journal compacted into {name}" if name else "journal too small to compact"


def _expand(repo: Repository, progress: Progress | None) -> str:
    moved = relocate.expand_checkpoints(repo, progress=progress)
    if not moved.retired:
        return "no checkpoints"
    return f"expanded {len(moved.retired)} checkpoint(s) into {len(moved.segments)} segment(s)"


STEPS: dict[tuple[fmt.Version, fmt.Version], Step] = {
    ((1, 0), (2, 0)): _nothing,
    ((2, 0), (1, 0)): _unpack,
    ((2, 0), (2, 1)): _nothing,
    ((2, 1), (2, 0)): _values_home,
    ((2, 1), (3, 0)): _compact,
    ((3, 0), (2, 1)): _expand,
}


def migrate(repo: Repository, target: fmt.Version, *, progress: Progress | None = None) -> list[str]:
    """Run every step from the repository's version to ``target``; what each did."""
    repo.reload_format()
    origin = list(repo.format["version"])
    steps = fmt.path(fmt.version_of(repo.format), target)
    done: list[str] = []
    for source, dest in steps:
        try:
            what = STEPS[(source, dest)](repo, progress)
        except FormatError as exc:
            if done:
                raise FormatError(f"{exc} [the repository stays at {fmt.show(source)}]") from None
            raise
        repo.write_format(fmt.with_version(repo.format, dest, origin))
        log.info("%s: format %s -> %s: %s", repo.url, fmt.show(source), fmt.show(dest), what)
        done.append(f"{fmt.show(source)} -> {fmt.show(dest)}: {what}")
    return done


def upgrade(repo: Repository, target: fmt.Version, *, progress: Progress | None = None) -> bool:
    """Migrate up to ``target`` (never down: that is an explicit ``migrate``); True if the
    version changed."""
    before = fmt.version_of(repo.format)
    if before >= target:
        return False
    migrate(repo, target, progress=progress)
    return fmt.version_of(repo.format) != before


__all__ = ["migrate", "upgrade", "STEPS"]
