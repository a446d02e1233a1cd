"""fsck: verify everything a repository holds, and that the local index agrees with it.

    objstore.json   parses, names this format, a version this objstore reads, sane settings
    objects         every loose object (or a random ``sample`` of them): the frame checksum,
                    the kind, the length, and the id where it can be recomputed
    packs           the name is the content's hash; the toc parses; entries lie inside the
                    pack, in order, without overlaps; each (sampled) entry verifies like a read
    value stores    every value the journal places there is there (sampled ones verify)
    journal         every segment and checkpoint parses and its entries are well formed
    eval heads      each file holds a value hash; each head (file or journal) names a value
                    the repository holds
    handle refs     each holds handle state objstore can read
    call nodes      (those verified) their result, arguments, upstream calls and children
                    exist; a job's call node and an execution's root job too
    index           after a refresh, everything the index lists is stored where it says, and
                    everything stored is listed (else it is "unjournaled")

Listings come from the repository itself (objstore.maint.inventory), never from the index: the
index is one of the things checked. Each job is a small class in its own module (fsck_objects:
packs, loose objects, value stores; fsck_journal; fsck_index; fsck_refs: eval heads, handle
refs, references) over one shared context (fsck_context); Fsck runs them in order. What is wrong goes into a Report, each problem naming its
file and object; a foreign file (one objstore never writes) is a warning, and left alone.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from objstore import format as fmt
from objstore import layout
from objstore.errors import CorruptObject, FormatError, RepositoryNotFound, StorageError
from objstore.fs import missing_container, open_url
from objstore.maint import inventory, verify
from objstore.maint.fsck_context import Context, Found, Progress
from objstore.maint.fsck_index import IndexAgreement
from objstore.maint.fsck_journal import JournalFiles
from objstore.maint.fsck_objects import Check, LooseObjects, Packs, ValueStores
from objstore.maint.fsck_refs import EvalHeads, HandleRefs, References
from objstore.maint.report import Report, bulk
from objstore.missing import Missing
from objstore.repo import Repository
from objstore.store import open_blobs

log = logging.getLogger("objstore.maint")


# -- objstore.json, before a repository can be opened -------------------------------------------


def check_format_file(url: str, storage_options: dict | None, report: Report) -> dict[str, Any] | None:
    """objstore.json as a document this objstore can use, or None (with the problem reported)."""
    fs, root = open_url(url, storage_options)
    raw = open_blobs(fs, root).read(layout.FORMAT_FILE)
    if isinstance(raw, Missing):
        bucket = missing_container(fs, root)
        if bucket is not None:  # nothing to check, and nothing --repair may create there
            raise RepositoryNotFound(f"no objstore repository at {url}: bucket {bucket!r} does not exist")
        report.error(layout.FORMAT_FILE, "missing", "the repository has no objstore.json")
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        report.error(layout.FORMAT_FILE, "corrupt", f"not valid JSON ({exc})")
        return None
    version = doc.get("version") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and isinstance(version, list) and version and isinstance(version[0], int):
        if doc.get("format") == fmt.FORMAT_NAME and not fmt.compatible((version[0], 0)):
            fmt.check(doc, url)  # a version this objstore must not touch: refused, never "repaired"
    if isinstance(doc, dict) and isinstance(doc.get("format"), str) and doc["format"] != fmt.FORMAT_NAME:
        fmt.check(doc, url)  # somebody else's file: not ours to rewrite
    try:
        return fmt.check(doc, layout.FORMAT_FILE)
    except FormatError as exc:
        report.error(layout.FORMAT_FILE, "corrupt", str(exc))
        return None


# -- the checks, in order -----------------------------------------------------------------------

# What the repository holds, read from its files; then (after a refresh) what the index says of it.
FILE_CHECKS: tuple[type[Check], ...] = (Packs, LooseObjects, JournalFiles)
INDEX_CHECKS: tuple[type[Check], ...] = (ValueStores, IndexAgreement, EvalHeads, HandleRefs, References)


class Fsck:
    def __init__(self, repo: Repository, report: Report, *, sample: float = 1.0, seed: int | None = None,
                 progress: Progress | None = None, jobs: int | None = None):  # fmt: skip
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"--sample is a fraction between 0 and 1, not {sample}")
        self.repo = repo
        self.report = report
        self.ctx = Context(repo, report, span=verify.sample_span(sample, seed), progress=progress, jobs=jobs)

    @property
    def found(self) -> Found:
        return self.ctx.found

    def run(self) -> Found:
        ctx = self.ctx
        ctx.inv = inventory.take(self.repo)
        for key, why in ctx.inv.foreign:
            self.report.warning(key, "foreign", f"{why}; objstore leaves it alone")
        file_checks = [kind(ctx) for kind in FILE_CHECKS]
        try:
            for started in file_checks:
                started.start()
            for running in file_checks:
                running.run()
        finally:
            for done in file_checks:
                done.close()
        try:
            self.repo.refresh()
        except (StorageError, CorruptObject) as exc:
            self.report.error("index", "unavailable", f"refreshing the index failed: {exc}")
        for check in INDEX_CHECKS:
            check(ctx).run()
        return ctx.found


def fsck(repo: Repository, *, sample: float = 1.0, seed: int | None = None, progress: Progress | None = None,
         report: Report | None = None, jobs: int | None = None) -> tuple[Report, Found]:  # fmt: skip
    """Check ``repo``; ``jobs``: processes verifying packs and journal files (default: one per core
    for 16+ files, and a journal checkpoint in a worker beside the packs; 1: all in this process)."""
    report = report or Report(repo.url)
    with bulk():
        found = Fsck(repo, report, sample=sample, seed=seed, progress=progress, jobs=jobs).run()
    report.checked["objects"] = len(found.kinds)
    return report, found


__all__ = ["fsck", "Fsck", "Found", "check_format_file", "FILE_CHECKS", "INDEX_CHECKS"]
