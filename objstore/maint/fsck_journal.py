"""fsck of the journal: every segment and checkpoint parses, and its entries are well formed
(entries no objstore writes are a warning: readers skip them). What the readable files list is
what the index check calls journaled."""

from __future__ import annotations

from objstore import layout
from objstore.maint import verify
from objstore.maint.fsck_context import Started
from objstore.maint.fsck_objects import Check


class JournalFiles(Check):
    started: Started | None = None

    def start(self) -> None:
        # A checkpoint of 10^6 records takes about as long to verify as every pack's toc: on a
        # local directory it is checked in a worker while the packs are (a sampled fsck of 10^6
        # objects 5.6-6.2 s -> 4.7-5.1 s).
        names = sorted(self.inv.journal)
        self.started = self.ctx.start_files(names, verify.verify_journal_at, verify.verify_journal,
                                            layout.segment_key, big=any(map(layout.is_checkpoint_name, names)))  # fmt: skip

    def close(self) -> None:
        if self.started is not None:
            self.started.close()

    def run(self) -> None:
        if self.started is None:
            self.start()
        assert self.started is not None
        for check in self.started:
            if check.missing:
                continue
            key = layout.segment_key(check.name)
            self.report.count("journal files")
            if check.reason is not None:
                self.report.error(key, "corrupt", check.reason)
                self.found.bad_journal.append(check.name)
                continue
            self.found.journaled.update(check.ids)
            if check.malformed:
                self.report.warning(key, "malformed", f"{check.malformed} of its {check.entries} index entries are "
                                    "not ones this objstore knows (readers skip them)")  # fmt: skip


__all__ = ["JournalFiles"]
