"""Damage one stored object of a local repository, loose or packed, as a bad disk or copy would."""

from __future__ import annotations

import os

from objstore import pack


def object_span(repo_dir: str, object_id: str) -> tuple[str, int, int]:
    """(file, offset, length) of the bytes that hold ``object_id``: its loose file, or its entry
    in the pack that lists it (found from the packs' own tocs, not from any index)."""
    loose = os.path.join(repo_dir, "objects", object_id[:2], object_id[2:])
    if os.path.exists(loose):
        return loose, 0, os.path.getsize(loose)
    pack_dir = os.path.join(repo_dir, "objects", "pack")
    for name in sorted(os.listdir(pack_dir)) if os.path.isdir(pack_dir) else []:
        path = os.path.join(pack_dir, name)
        with open(path, "rb") as f:
            toc = pack.parse(f.read(), name=name)
        for oid, _, loc in toc:
            if oid == object_id:
                return path, loc.offset, loc.length
    raise FileNotFoundError(f"{object_id} is stored nowhere under {repo_dir}")


def damage_object(repo_dir: str, object_id: str, how: str) -> str:
    """``missing``: remove the file holding it (a pack goes with its other objects);
    ``corrupt``: overwrite bytes inside its frame; ``truncated``: cut the file halfway through
    it. Returns the damaged file."""
    path, offset, length = object_span(repo_dir, object_id)
    if how == "missing":
        os.remove(path)
    elif how == "corrupt":
        with open(path, "r+b") as f:
            f.seek(offset + length - 12)  # inside the compressed content, before the checksum
            f.write(b"\xff\x00\xff\x00")
    elif how == "truncated":
        with open(path, "r+b") as f:
            f.truncate(offset + length // 2)
    else:
        raise ValueError(how)
    return path
