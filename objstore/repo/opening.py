"""Opening and creating a repository: its format file, the creation rules (never a silent
new repository over someone's data), and the migration a local repository gets on open."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from objstore import codec, layout
from objstore import format as fmt
from objstore.errors import CorruptObject, FormatError, RepositoryExists, RepositoryNotFound, StorageError
from objstore.fs import is_local, is_memory, missing_container, open_url
from objstore.index import on_network_fs
from objstore.missing import MISSING, Missing
from objstore.repo.flush import FlushPolicy
from objstore.store import open_blobs

if TYPE_CHECKING:
    from objstore.repo.repository import Repository

log = logging.getLogger("objstore.repo")


def shared_storage(fs: Any, root: str) -> bool:
    """Whether other machines may use this repository without this machine's index: any
    remote or in-memory filesystem, and a local path on a network filesystem (NFS, SMB...)."""
    if not is_local(fs):
        return True
    return on_network_fs(root)


def migrates_on_open(fs: Any, root: str) -> bool:
    """Whether opening migrates a repository to this objstore's format: on this machine's own
    disk (or in this process's memory), where no client on another machine can be writing it."""
    if is_memory(fs):
        return True
    return is_local(fs) and not shared_storage(fs, root)


def read_format(blobs: Any, url: str) -> dict[str, Any] | Missing:
    raw = blobs.read(layout.FORMAT_FILE)
    if isinstance(raw, Missing):
        return MISSING
    try:
        doc = codec.parse_json(raw, object_id=layout.FORMAT_FILE)
    except CorruptObject as exc:
        raise FormatError(f"{url}: {layout.FORMAT_FILE} is not valid JSON ({exc.reason})") from None
    return fmt.check(doc, url)


def write_format(blobs: Any, url: str, doc: dict[str, Any]) -> None:
    """Replace objstore.json (a migration's last step, or a settings change)."""
    fmt.check(doc, url)
    blobs.replace(layout.FORMAT_FILE, codec.canonical_json(doc))
    log.info("%s: objstore.json now at format %s", url, fmt.show(doc["version"]))


def reread_format(blobs: Any, url: str, repo_id: str) -> dict[str, Any]:
    """objstore.json read again (another client may have upgraded or changed settings); it
    must still name the repository this client opened."""
    doc = read_format(blobs, url)
    if isinstance(doc, Missing):
        raise RepositoryNotFound(f"no objstore repository at {url} ({layout.FORMAT_FILE} not found)")
    if doc.get("repo_id") != repo_id:
        raise FormatError(f"{url}: {layout.FORMAT_FILE} now names another repository")
    return doc


def flush_policy(kwargs: dict[str, Any]) -> FlushPolicy:
    policy = kwargs.get("policy")
    if policy is None:
        return FlushPolicy(durable=bool(kwargs.get("durable", False)))
    if kwargs.get("durable") and not policy.durable:
        raise ValueError("durable=True contradicts the given FlushPolicy(durable=False)")
    return policy


def init_repository(cls: type[Repository], url: str, storage_options: dict | None = None, **kwargs: Any) -> Repository:
    """Repository.init: create objstore.json (create-only), then open."""
    fsys, root = open_url(url, storage_options)
    blobs = open_blobs(fsys, root, durable=flush_policy(kwargs).durable)
    if not blobs.create(layout.FORMAT_FILE, codec.canonical_json(fmt.new_doc())):
        raise RepositoryExists(f"a repository already exists at {url}")
    kwargs.pop("create", None)
    return cls.open(url, storage_options, **kwargs)


class OpenOptions(TypedDict, total=False):
    """Repository.open's options.

    ``index_dir``: where this client's index lives (default: repo.index_dir.default_index_dir);
    ``policy`` says when buffered records are flushed (``durable`` is its shorthand for an fsync
    per flush); ``create``: init the repository when absent, unless the location already holds
    repository data without its objstore.json; ``eval_files`` (default off) also writes each eval
    head as a file under evals/ besides its journal entry (a request per head on a bucket);
    ``value_store_options``: the fsspec options of the repository's value store (default:
    ``storage_options`` when it is the same kind of storage as the repository, else none);
    ``migrate``: upgrade the format to this objstore's now (default: only a repository on this
    machine's own disk); ``auto_compact`` (default on): compact the journal in the background
    past the compact_threshold; ``pack_cache_bytes``: the bound of the local cache of whole packs
    kept beside the index for a remote repository (default packcache.DEFAULT_MAX_BYTES; 0: none,
    ranged reads).
    """

    index_dir: str | os.PathLike[str] | None
    durable: bool
    create: bool
    eval_files: bool | None
    policy: FlushPolicy | None
    value_store_options: dict | None
    migrate: bool | None
    auto_compact: bool
    pack_cache_bytes: int | None


def open_repository(
    cls: type[Repository], url: str, storage_options: dict | None, **options: Unpack[OpenOptions]
) -> Repository:
    """Repository.open (options: OpenOptions)."""
    index_dir, eval_files = options.get("index_dir"), options.get("eval_files")
    value_store_options, pack_cache_bytes = options.get("value_store_options"), options.get("pack_cache_bytes")
    auto_compact, create, migrate = options.get("auto_compact", True), options.get("create", False), options.get("migrate")
    durable, policy = options.get("durable", False), options.get("policy")
    policy = flush_policy({"durable": durable, "policy": policy})
    fsys, root = open_url(url, storage_options)
    blobs = open_blobs(fsys, root)
    doc = read_format(blobs, url)
    if isinstance(doc, Missing):
        bucket = missing_container(fsys, root)
        if bucket is not None:
            raise RepositoryNotFound(f"no objstore repository at {url}: bucket {bucket!r} does not exist")
        if blobs.list_names(layout.JOURNAL):
            # Never a silent new repo_id over someone's data (create or not): that is
            # `objstore init`'s call, made by a user who knows the data is theirs.
            raise RepositoryNotFound(
                f"{url} holds repository data (journal/) but no {layout.FORMAT_FILE}: restore it, "
                f"or adopt the data as a new repository with `objstore init {url}`"
            )
        if not create:
            raise RepositoryNotFound(f"no objstore repository at {url} ({layout.FORMAT_FILE} not found)")
        more: dict[str, Any] = {"index_dir": index_dir, "eval_files": eval_files, "policy": policy,
                                "value_store_options": value_store_options, "auto_compact": auto_compact,
                                "pack_cache_bytes": pack_cache_bytes}  # fmt: skip
        try:
            return init_repository(cls, url, storage_options, **more)
        except RepositoryExists:  # lost a creation race: open the winner's
            return cls.open(url, storage_options, **more)
    repo = cls(
        url, fsys, root, doc, index_dir=index_dir, policy=policy, eval_files=eval_files,
        storage_options=storage_options, value_store_options=value_store_options, auto_compact=auto_compact,
        pack_cache_bytes=pack_cache_bytes,
    )  # fmt: skip
    try:
        repo.adopt_index()
    except BaseException:
        repo.index.close()
        raise
    if migrate is None:
        migrate = migrates_on_open(fsys, root)
    if fmt.version_of(doc) < fmt.FORMAT_VERSION and migrate:
        # A repository on this machine's own disk has no client of another objstore version
        # on another machine that could miss what this one writes: migrate it now. Shared
        # storage (buckets, network mounts) waits for `objstore db upgrade`, run once every
        # client has an objstore that reads the new version.
        try:
            repo.upgrade()
        except StorageError as exc:
            log.warning("%s: left at format %s (cannot migrate it: %s)", url, fmt.show(doc["version"]), exc)
        except BaseException:
            repo.index.close()
            raise
    return repo
