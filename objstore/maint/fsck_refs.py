"""fsck of what points into the objects: eval heads (files and journal entries name a value the
repository holds), handle refs (state objstore can read, naming known handles) and the
references of every verified call node, job and execution (values, arguments, upstream calls,
children exist)."""

from __future__ import annotations

import json
import operator

from objstore import model
from objstore.errors import CorruptObject
from objstore.ids import is_hash
from objstore.maint import inventory
from objstore.maint.fsck_context import BATCH
from objstore.maint.fsck_objects import Check
from objstore.missing import Missing
from objstore.repo.evals import parse_head


class EvalHeads(Check):
    def run(self) -> None:
        files = sorted(self.inv.evals.items())
        for start in range(0, len(files), BATCH):  # concurrent reads on object stores
            batch = files[start : start + BATCH]
            for (eval_hash, entry), raw in zip(batch, self.repo.blobs.read_many(e.key for _, e in batch)):
                self._file(eval_hash, entry, raw)
        self._journaled_heads()

    def _file(self, eval_hash: str, entry: inventory.Entry, raw: bytes | Missing) -> None:
        if isinstance(raw, Missing):
            return
        self.report.count("eval head files")
        try:
            value = parse_head(eval_hash, raw)
        except CorruptObject as exc:
            self.report.error(entry.key, "corrupt", exc.reason)
            self.found.bad_evals.append(eval_hash)
            return
        if not self.ctx.exists(value):
            self.report.error(entry.key, "missing", f"points at value {value}, which the repository does not hold "
                              "(a cache miss)")  # fmt: skip

    def _journaled_heads(self) -> None:
        heads = list(self.repo.index.items("evals"))
        # Values the objects found do not hold, as one set difference (a head per job: 10^5..10^6).
        unheld = set(map(operator.itemgetter(1), heads)) - self.found.kinds.keys()
        if unheld:
            for eval_hash, value in heads:
                if value in unheld and eval_hash not in self.inv.evals and not self.ctx.exists(value):
                    self.report.error("journal", "missing", f"eval head {eval_hash} points at value {value}, which "
                                      "the repository does not hold (a cache miss)")  # fmt: skip
        self.report.count("eval heads", len(heads))


class HandleRefs(Check):
    def run(self) -> None:
        refs = sorted(self.inv.refs.items())
        raws = self.repo.blobs.read_many(e.key for _, e in refs)
        for (_name, entry), raw in zip(refs, raws):
            if isinstance(raw, Missing):
                continue
            self.report.count("handle refs")
            try:
                state = json.loads(raw)
                invalid = state["invalid"]
                if not isinstance(invalid, list) or not all(isinstance(h, str) and is_hash(h) for h in invalid):
                    raise ValueError("not a list of handle hashes")
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                self.report.error(entry.key, "corrupt", f"unreadable handle state ({exc}); readers treat every "
                                  "handle of this name as valid")  # fmt: skip
                continue
            for handle_hash in invalid:
                if isinstance(self.repo.index.get("handles", handle_hash), Missing):
                    self.report.warning(entry.key, "unknown", f"invalidates handle {handle_hash}, which no handle "
                                        "record names")  # fmt: skip


class References(Check):
    def run(self) -> None:
        checked = 0
        # An object no journal names is what a writer killed between its objects and its journal
        # segment left behind (its execution's root job had not ended, its start note was in the
        # segment never written): nobody can reach it, so what it refers to is not missing.
        leftovers = set(self.found.unjournaled)
        exists, where = self.ctx.exists, self.ctx.where
        for oid, (kind, edges) in sorted(self.found.edges.items()):
            checked += 1
            for target_kind, target in edges:
                if target_kind == model.TASK:
                    continue  # a task is known by its hash; redun does not always record it as a value
                if not exists(target) and not self._running(target_kind, target):
                    if oid in leftovers:
                        self.report.warning(where(oid), "missing", f"{kind} (unjournaled: an interrupted "
                                            f"flush) refers to {target_kind} {target}, which the repository does "
                                            "not hold", oid)  # fmt: skip
                        continue
                    self.report.error(where(oid), "missing", f"{kind} refers to {target_kind} {target}, which "
                                      "the repository does not hold", oid)  # fmt: skip
        self.report.count("references checked", checked)

    def _running(self, kind: str, target: str) -> bool:
        # A job known only from its start note (still running, or its worker died) is no object yet.
        return kind == model.JOB and not isinstance(self.repo.index.get("job_start", target), Missing)


__all__ = ["EvalHeads", "HandleRefs", "References"]
