"""Index entries as LMDB sees them: key checks, one entry's validation, and applying checked
entries inside a write transaction, one by one or as a sorted bulk ingest.

An entry is (op, table, key, value) (objstore.model.schema.IndexEntry). Ops on different keys
commute: ``put``, ``add``, ``del`` and ``delall`` each read and write only their own (table,
key). So a batch of entries can be applied grouped by table and sorted by key, keeping the
order of the entries of each one key (a stable sort), and ends exactly as applying them in
order would. LMDB inserts sorted keys far faster than random ones (each page of the tree is
visited once, while it is hot), and runs of one kind go through ``putmulti`` in C.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain, groupby
from operator import itemgetter
from typing import Any

from objstore.errors import ValueTooLarge
from objstore.model.schema import IndexEntry

OPS = frozenset({"put", "add", "del", "delall"})
MAX_KEY_BYTES = 511  # LMDB's compile-time MDB_MAXKEYSIZE; dupsort values are keys too

# (op, LMDB db handle, multi, key bytes, value bytes): an entry checked and encoded.
Checked = tuple[str, Any, bool, bytes, bytes]


def encode_key(text: str, what: str = "key") -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"index {what} must be str, not {type(text).__name__}")
    raw = text.encode("utf-8")
    if not raw:
        raise ValueError(f"index {what} must not be empty")
    if len(raw) > MAX_KEY_BYTES:
        raise ValueTooLarge(
            f"index {what} is {len(raw)} bytes utf-8, over LMDB's {MAX_KEY_BYTES}-byte limit: "
            f"{text[:60]!r}..."
        )
    return raw


def check_entry(entry: Any, tables: Mapping[str, bool], dbs: Mapping[str, Any]) -> Checked:
    """Validate one IndexEntry against ``tables`` (name -> multi); its checked form."""
    try:
        op, table, key, value = entry
    except (TypeError, ValueError):
        raise ValueError(f"an index entry is (op, table, key, value), not {entry!r}") from None
    if op not in OPS:
        raise ValueError(f"unknown index op {op!r} (expected one of {sorted(OPS)})")
    multi = tables.get(table)
    if multi is None:
        raise KeyError(f"unknown index table {table!r}")
    if not isinstance(value, str):
        raise TypeError(f"index value must be str, not {type(value).__name__}")
    # Inline fast path of encode_key (called for every buffered entry); it raises the errors.
    k = key.encode("utf-8") if isinstance(key, str) else encode_key(key)
    if not 0 < len(k) <= MAX_KEY_BYTES:
        encode_key(key)
    v = value.encode("utf-8")
    if multi and op != "delall" and v and len(v) > MAX_KEY_BYTES:
        encode_key(value, "value in a multi table")
    return op, dbs[table], multi, k, v


def apply_checked(txn: Any, items: Iterable[Checked]) -> None:
    """Apply checked entries in order inside the write txn ``txn`` (the ops: Index.apply).

    A run of puts into one single-valued table (a repack moving a million locations) is one
    putmulti, a C loop: the same writes, in the same order, as a put each."""
    for (op, db, multi), run in groupby(items, _RUN_KEY):
        if op == "put" and not multi:
            txn.cursor(db=db).putmulti(map(_KEY_VALUE, run), dupdata=False, overwrite=True)
        else:
            _apply_each(txn, run)


_RUN_KEY = itemgetter(0, 1, 2)
_KEY_VALUE = itemgetter(3, 4)


def _apply_each(txn: Any, items: Iterable[Checked]) -> None:
    for op, db, multi, k, v in items:
        if op == "put":
            if multi:
                txn.delete(k, db=db)
            txn.put(k, v, db=db)
        elif op == "add":
            txn.put(k, v, db=db, overwrite=multi)
        elif op == "del":
            if not v:
                txn.delete(k, db=db)
            elif multi:
                txn.delete(k, v, db=db)
            elif txn.get(k, db=db) == v:
                txn.delete(k, db=db)
        else:  # delall
            txn.delete(k, db=db)


# -- bulk ingest ------------------------------------------------------------------------------

_FIRST = itemgetter(0)


class Run:
    """One table's share of a bulk ingest, sorted by key: either ``rows`` for one putmulti
    (``kind``: "put" sets, "add" sets if absent, "dup" adds a multi-table value), or, when the
    table's entries mix ops, ``items`` to apply one by one (still in key order)."""

    __slots__ = ("db", "kind", "rows", "items")

    def __init__(self, db: Any, kind: str, rows: list[tuple[bytes, bytes]], items: list[Checked]):
        self.db, self.kind, self.rows, self.items = db, kind, rows, items

    def size(self) -> int:
        """About how many bytes the run writes (to grow the map once, ahead)."""
        return rows_size(self.rows) + sum(len(i[3]) + len(i[4]) + 16 for i in self.items)


class Pairs:
    """(key, value) rows kept as their two columns (a checkpoint block's): iterated as the
    2-tuples putmulti takes, one at a time, not held as a list of millions of tuples (building
    that list was a sixth of a cold refresh of 10^6 records); iterable again when a write that
    outgrew the map is retried."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: Sequence[bytes], values: Sequence[bytes]):
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys for {len(values)} values")
        self.keys, self.values = keys, values

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return zip(self.keys, self.values)

    def __getitem__(self, cut: slice) -> list[tuple[bytes, bytes]]:
        return list(zip(self.keys[cut], self.values[cut]))


def rows_size(rows: Sequence[tuple[bytes, bytes]] | Pairs) -> int:
    """About how many bytes (key, value) rows take in LMDB: from a sample of them (summing
    millions of lengths cost more than the bulk write it sizes; it only tells how far to grow
    the map ahead, and a write that still does not fit grows it and retries)."""
    step = max(len(rows) // _SAMPLE, 1)
    sample = rows[::step]
    if not sample:
        return 0
    return (sum(map(len, chain.from_iterable(sample))) * len(rows)) // len(sample) + 16 * len(rows)


_SAMPLE = 512


# One str object per op: a plan keeps an op per entry, and the parsed ones are each their own.
_OP = {op: op for op in OPS}


class BulkPlan:
    """Checked (``prechecked``, see Index.apply) entries gathered for one bulk ingest, in the
    order they must take effect: per table, encoded as they are added, so that whoever parsed
    them can drop them at once (a million str entries take twice the memory of their bytes)."""

    def __init__(self, tables: Mapping[str, bool], dbs: Mapping[str, Any]):
        self.tables, self.dbs = tables, dbs
        self.columns: dict[str, tuple[list[bytes], list[bytes], list[str]]] = {}  # keys, values, ops
        self.size = 0  # entries

    def add(self, entries: Iterable[IndexEntry]) -> None:
        by_table: dict[str, list[IndexEntry]] = {}
        for e in entries:
            group = by_table.get(e[1])
            if group is None:
                by_table[e[1]] = [e]
            else:
                group.append(e)
        for table, rows in by_table.items():
            keys, values, ops = self.columns.setdefault(table, ([], [], []))
            keys.extend(map(str.encode, map(itemgetter(2), rows)))
            values.extend(map(str.encode, map(itemgetter(3), rows)))
            ops.extend(map(_OP.__getitem__, map(itemgetter(0), rows)))
            self.size += len(rows)

    def runs(self) -> list[Run]:
        """Per-table runs sorted by key (stable, by key bytes: LMDB's order) that end as
        applying the entries in order would."""
        runs: list[Run] = []
        for table in sorted(self.columns):
            keys, values, ops = self.columns[table]
            multi, db = self.tables[table], self.dbs[table]
            kinds = set(ops)
            if kinds == {"put"} and not multi or kinds == {"add"}:
                # Of one key's puts the last stays, of its adds the first, and a multi table's
                # adds are a set: one putmulti each.
                pairs = list(zip(keys, values))
                pairs.sort(key=_FIRST)
                runs.append(Run(db, "dup" if multi else kinds.pop(), pairs, []))
            else:
                triples = list(zip(keys, values, ops))
                triples.sort(key=_FIRST)
                runs.append(Run(db, "mixed", [], [(op, db, multi, k, v) for k, v, op in triples]))
        return runs


def plan_bulk(entries: Sequence[IndexEntry], tables: Mapping[str, bool], dbs: Mapping[str, Any]) -> list[Run]:
    """BulkPlan.runs of ``entries``."""
    plan = BulkPlan(tables, dbs)
    plan.add(entries)
    return plan.runs()


def apply_bulk(txn: Any, runs: Iterable[Run]) -> None:
    """Apply planned runs inside the write txn ``txn``."""
    for run in runs:
        if run.items:
            apply_checked(txn, run.items)
        elif run.rows:
            cur = txn.cursor(db=run.db)
            if run.kind == "dup":
                cur.putmulti(run.rows, dupdata=True, overwrite=True)
            else:
                cur.putmulti(run.rows, dupdata=False, overwrite=run.kind == "put")


__all__ = [
    "OPS", "MAX_KEY_BYTES", "Checked", "encode_key", "check_entry", "apply_checked", "Run", "plan_bulk",
    "apply_bulk", "rows_size", "BulkPlan", "Pairs",
]
