"""fsck of the journal: every segment and checkpoint parses, and its entries are well formed
(entries no objstore writes are a warning: readers skip them). What the readable files list is
what the index check calls journaled."""

from __future__ import annotations

from objstore import layout
from objstore.maint import verify
from objstore.maint.fsck_objects import Check


class JournalFiles(Check):
    def run(self) -> None:
        checks = self.ctx.map_files(sorted(self.inv.journal), verify.verify_journal_at, verify.verify_journal,
                                    layout.segment_key)  # fmt: skip
        for check in checks:
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
