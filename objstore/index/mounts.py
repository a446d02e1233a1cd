"""Which filesystem a path is on, from /proc/mounts: LMDB must never sit on a network filesystem
(its locks and shared mmap need a local disk), and eval heads must be files where several
machines share a directory.
"""

from __future__ import annotations

import os

from objstore.errors import IndexUnavailable

# Filesystems on which LMDB's shared mmap and locks are unsafe or unsupported.
NETWORK_FS_TYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "coda",
        "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "davfs", "ocfs2", "gfs2",
        "fuse.s3fs", "fuse.sshfs", "fuse.gcsfuse", "fuse.rclone", "fuse.goofys",
        "fuse.mount-s3", "fuse.juicefs", "fuse.blobfuse", "fuse.blobfuse2", "fuse.davfs2",
        "fuse.glusterfs", "fuse.cephfs", "fuse.ceph-fuse", "fuse.s3ql", "fuse.objectivefs",
    }
)


def _unescape_mount(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1 : i + 4]) == 3 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_type(path: str, mounts_text: str) -> str | None:
    """The fs type of the mount holding absolute ``path``, from /proc/mounts text (pure)."""
    best, best_type = -1, None
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt, fstype = _unescape_mount(parts[1]), parts[2]
        prefix = mnt.rstrip("/") + "/"
        if (path == mnt or (path + "/").startswith(prefix)) and len(mnt) > best:
            best, best_type = len(mnt), fstype
    return best_type


def is_network_fs(fstype: str | None) -> bool:
    return fstype is not None and fstype.lower() in NETWORK_FS_TYPES


def _mount_type(real_path: str, mounts_file: str) -> str | None:
    try:
        with open(mounts_file, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError:
        return None  # no /proc (not Linux): nothing to check against
    return filesystem_type(real_path, text)


def on_network_fs(path: str | os.PathLike, mounts_file: str = "/proc/mounts") -> bool:
    """Whether ``path`` (or the nearest existing parent) is on a network filesystem."""
    return is_network_fs(_mount_type(os.path.realpath(os.fspath(path)), mounts_file))


def check_local_path(path: str | os.PathLike, mounts_file: str = "/proc/mounts") -> None:
    """Raise IndexUnavailable if ``path`` (or the nearest existing parent) is on a network fs."""
    real = os.path.realpath(os.fspath(path))
    fstype = _mount_type(real, mounts_file)
    if is_network_fs(fstype):
        raise IndexUnavailable(
            f"refusing to open the LMDB index at {real}: it is on a {fstype} filesystem, and "
            "LMDB needs a local disk; choose a local index directory (index_dir= / --index-dir)"
        )
