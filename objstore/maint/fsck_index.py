"""fsck of the local index against the repository, after a refresh: everything the index lists
is stored where it says (else "missing", or a "mismatch" of kind or place), everything stored is
named by some journal file (else "unjournaled"), and every journal file has been ingested."""

from __future__ import annotations

import functools

from objstore.maint import verify
from objstore.maint.fsck_objects import Check


class IndexAgreement(Check):
    def run(self) -> None:
        # Whole tables compared as sets (C loops): a million rows each, several times.
        index, found, span = self.repo.index, self.found, self.ctx.span
        stored = found.kinds
        if span is not None:  # the sampled range of each table, and of what is stored
            ids = list(stored)
            stored = {ids[i]: stored[ids[i]] for i in verify.sampled_rows(ids, span)}
        rows = functools.partial(index.items, start=span[0] if span else None, stop=span[1] if span else None)
        self._objects(dict(rows("objects")), stored)
        self._placed(dict(rows("packed")), stored)
        self._journaled()
        unseen = [n for n in self.inv.journal if not index.has_segment(n) and n not in found.bad_journal]
        if unseen:
            self.report.error("index", "behind", f"{len(unseen)} journal file(s) not ingested (e.g. {unseen[0]})")
            found.index_disagrees = True

    def _objects(self, listed: dict[str, str], stored: dict[str, str]) -> None:
        found = self.found
        in_stores: set[str] = set().union(*found.value_stores.values()) if found.value_stores else set()
        for oid in sorted(listed.keys() - stored.keys() - in_stores):
            self.report.error("journal", "missing", f"the journal names this {listed[oid]}; the repository holds "
                              "it nowhere", oid)  # fmt: skip
            found.missing.append(oid)
        for oid, kind in sorted(listed.items() - stored.items()):
            have = stored.get(oid)
            if have and have != kind:
                self.report.error("index", "mismatch", f"the index says {kind}, the object is a {have}", oid)
                found.index_disagrees = True
        self.report.count("index entries", len(listed))

    def _placed(self, packed: dict[str, str], stored: dict[str, str]) -> None:
        found = self.found
        if stored is found.kinds:  # (every packed id is in found.kinds)
            expected = found.placed
        else:  # a sample: the sampled range only
            toc = found.toc
            expected = {oid: "{}:{}:{}".format(*toc[oid]) for oid in stored if oid in toc}
        for oid, text in sorted(packed.items() - expected.items()):
            at = found.toc.get(oid)
            if at is None:
                if oid in self.inv.loose:
                    continue  # unpacked since (a reader falls back to the loose file)
                self.report.error("index", "mismatch", f"the index places it in {text}, no pack holds it", oid)
                found.index_disagrees = True
            elif at[0] not in found.damaged_packs and not found.copies.holds(oid, text):
                name = text.partition(":")[0]
                if name in found.damaged_packs:
                    continue  # reported with its pack
                self.report.error("index", "mismatch", f"the index places it at {text}, where no pack holds it; "
                                  f"it is at {at[0]}:{at[1]}:{at[2]}", oid)  # fmt: skip
                found.index_disagrees = True

    def _journaled(self) -> None:
        found = self.found
        for oid in sorted(set(found.kinds) - found.journaled):
            if oid in found.bad_objects and oid not in found.good_copies:
                continue  # damaged and named by no journal: reported as corrupt already
            self.report.warning(self.ctx.where(oid), "unjournaled", "stored, but no journal file names it (readers "
                                "of other indexes may not find it)", oid)  # fmt: skip
            found.unjournaled.append(oid)


__all__ = ["IndexAgreement"]
