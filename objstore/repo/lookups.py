"""Index reads with this process's unflushed writes on top (the write buffer first)."""

from __future__ import annotations

from collections.abc import Iterable

from objstore.index import MAX_KEY_BYTES, Index
from objstore.missing import MISSING, Missing
from objstore.repo.buffer import WriteBuffer


def indexable(key: object) -> bool:
    """Whether the index could hold ``key`` at all."""
    return isinstance(key, str) and 0 < len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES


class Lookups:
    def __init__(self, buffer: WriteBuffer, index: Index):
        self.buffer = buffer
        self.index = index

    def lookup(self, table: str, key: str) -> str | Missing:
        """An index value with this process's unflushed writes on top. A key the index cannot
        hold (empty, over-long: built from bad input) was never written: MISSING."""
        value = self.buffer.lookup(table, key)
        if value is not None:
            return value
        try:
            return self.index.get(table, key)
        except (TypeError, ValueError):  # not text, empty, over-long, unencodable: never written
            return MISSING

    def lookup_many(self, table: str, keys: Iterable[str]) -> list[str | Missing]:
        """``lookup`` for many keys in one index read (input order kept)."""
        keys = list(keys)
        if self.buffer.idle():
            try:
                return self.index.get_many(table, keys)
            except (ValueError, TypeError):  # a key the index cannot hold: one by one below
                pass
        out: list[str | Missing] = [MISSING] * len(keys)
        todo = []
        for i, key in enumerate(keys):
            value = self.buffer.lookup(table, key)
            if value is not None:
                out[i] = value
            elif indexable(key):
                todo.append(i)
        if todo:
            for i, value in zip(todo, self.index.get_many(table, [keys[i] for i in todo])):
                out[i] = value
        return out

    def lookup_all(self, table: str, key: str) -> list[str]:
        """Every value of a multi-table key, unflushed writes included, sorted."""
        pending = self.buffer.lookup_all(table, key)
        stored = self.index.get_all(table, key) if indexable(key) else []
        return sorted(set(stored) | pending) if pending else stored


__all__ = ["Lookups", "indexable"]
