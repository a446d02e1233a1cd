"""Writing the index's tables: entries applied in one transaction, a checkpoint's bulk load,
and a bulk ingest of many journal segments at once.

Every write names the journal files it covers in the same transaction (the ``_segments``
table), so a crash leaves each file either applied and marked, or neither: a later refresh
ingests exactly what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lmdb

from objstore.index.entries import (
    BulkPlan,
    Checked,
    Pairs,
    apply_bulk,
    apply_checked,
    check_entry,
    encode_key,
    rows_size,
)
from objstore.index.env import SEGMENTS
from objstore.index.reads import Tables
from objstore.model.schema import IndexEntry


class Writes:
    """The write side of one Index (``core``: its tables)."""

    def __init__(self, core: Tables):
        self.core = core

    def check_entry(self, entry: Any) -> Checked:
        """Validate one IndexEntry; returns (op, db, multi, key bytes, value bytes)."""
        return check_entry(entry, self.core.tables, self.core._dbs)

    def apply(self, entries: Iterable[IndexEntry], *, segment: str | None = None, prechecked: bool = False) -> None:
        """See Index.apply."""
        core = self.core
        core._check_open()
        if prechecked:
            dbs, tables = core._dbs, core.tables
            items = [
                (op, dbs[table], tables[table], key.encode("utf-8"), value.encode("utf-8"))
                for op, table, key, value in entries
            ]
        else:
            items = [self.check_entry(e) for e in entries]
        seg = encode_key(segment, "segment name") if segment is not None else None
        seg_db = core._dbs[SEGMENTS]

        def body(txn: Any) -> None:
            apply_checked(txn, items)
            if seg is not None:
                txn.put(seg, b"", db=seg_db)

        core._write(body)

    def plan(self) -> BulkPlan:
        return BulkPlan(self.core.tables, self.core._dbs)

    def ingest(self, segments: Sequence[tuple[str, Sequence[IndexEntry]]]) -> None:
        """See Index.ingest."""
        plan = self.plan()
        for _, entries in segments:
            plan.add(entries)
        self.ingest_plan(plan, [name for name, _ in segments])

    def ingest_plan(self, plan: BulkPlan, names: Sequence[str]) -> None:
        """See Index.ingest_plan."""
        core = self.core
        core._check_open()
        runs = plan.runs()
        marked = sorted(encode_key(name, "segment name") for name in names)
        seg_db = core._dbs[SEGMENTS]
        core._reserve(sum(run.size() for run in runs))

        def body(txn: Any) -> None:
            apply_bulk(txn, runs)
            if marked:
                txn.cursor(db=seg_db).putmulti([(name, b"") for name in marked])

        core._write(body)

    def load(
        self,
        groups: Iterable[tuple[str, str, list[tuple[bytes, bytes]] | Pairs]],
        *,
        entries: Iterable[IndexEntry] = (),
        marks: Mapping[str, str] | None = None,
    ) -> None:
        """See Index.load."""
        core = self.core
        core._check_open()
        checked = [self.check_entry(e) for e in entries]
        plan = []
        for op, table, rows in groups:
            if op not in ("put", "add"):
                raise ValueError(f"bulk load takes put or add rows, not {op!r}")
            plan.append((core._db(table), bool(core.tables[table]), op, rows))
        marked = [(encode_key(n, "segment name"), v.encode("utf-8")) for n, v in (marks or {}).items()]
        seg_db = core._dbs[SEGMENTS]
        core._reserve(sum(rows_size(rows) for _, _, _, rows in plan))

        def body(txn: Any) -> None:
            apply_checked(txn, checked)
            for db, multi, op, rows in plan:
                if not rows:
                    continue
                cur = txn.cursor(db=db)
                if multi:
                    cur.putmulti(rows, dupdata=True, overwrite=True)
                else:
                    cur.putmulti(rows, dupdata=False, overwrite=op == "put")
            if marked:
                txn.cursor(db=seg_db).putmulti(marked)

        try:
            core._write(body)
        except lmdb.BadValsizeError as exc:
            raise ValueError(f"a bulk-loaded key or value does not fit the index: {exc}") from None


__all__ = ["Writes"]
