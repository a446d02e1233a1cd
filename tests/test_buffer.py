"""The write buffer: one place a repository's unflushed records live and are read from."""

from __future__ import annotations

import threading

from objstore.repo.buffer import Batch, WriteBuffer


def h(n: int) -> str:
    return f"{n:040x}"


def test_reads_follow_a_record_from_current_to_flushing_to_gone():
    buf = WriteBuffer()
    buf.add(h(1), "value", b"p", [("put", "objects", h(1), "value"), ("add", "subvalues", h(1), h(2))])
    buf.note([("put", "job_start", "j", "{}")])
    buf.set_eval_head(h(9), h(1))
    assert buf.pending() == 3
    assert buf.object(h(1)) == ("value", b"p")
    assert buf.lookup("objects", h(1)) == "value" and buf.lookup("evals", h(9)) == h(1)
    assert buf.lookup_all("subvalues", h(1)) == {h(2)}

    batch = buf.take()
    assert isinstance(batch, Batch) and len(batch) == 3 and buf.pending() == 0
    # Taken but not yet in the index: still answered.
    assert buf.object(h(1)) == ("value", b"p") and buf.lookup("job_start", "j") == "{}"
    buf.add(h(3), "value", b"q", [("add", "subvalues", h(1), h(4))])
    assert buf.lookup_all("subvalues", h(1)) == {h(2), h(4)}  # both batches merged
    buf.done(batch)
    assert buf.object(h(1)) is None and buf.lookup("evals", h(9)) is None
    assert buf.lookup_all("subvalues", h(1)) == {h(4)}
    assert buf.take() is not None and buf.take() is None


def test_a_failed_flush_puts_its_batch_back_under_newer_records():
    buf = WriteBuffer()
    buf.add(h(1), "value", b"first", [("put", "objects", h(1), "value")])
    buf.note([("put", "exec_updated", "e", "t1")])
    buf.set_eval_head(h(9), h(1))
    batch = buf.take()
    assert batch is not None
    buf.add(h(1), "value", b"again", [("add", "subvalues", h(1), h(5))])  # same id, more entries
    buf.note([("put", "exec_updated", "e", "t2")])
    buf.set_eval_head(h(9), h(2))  # a newer head
    buf.restore(batch)
    retry = buf.take()
    assert retry is batch
    assert retry.objects[h(1)][:2] == ("value", b"first")  # objects are immutable: the first stays
    assert ("add", "subvalues", h(1), h(5)) in retry.objects[h(1)][2]
    assert [n[3] for n in retry.notes] == ["t1", "t2"]  # in the order they were written
    assert retry.evals == {h(9): h(2)} and retry.single["evals"][h(9)] == h(2)  # newer head wins


def test_a_reader_never_misses_an_entry_while_it_moves():
    buf = WriteBuffer()
    index: dict[str, str] = {}  # stands in for LMDB: written before the batch is released
    written: list[str] = []
    stop = threading.Event()
    misses: list[str] = []

    def writer():
        for n in range(3000):
            key = h(n)
            buf.add(key, "value", b"", [("put", "objects", key, "value")])
            written.append(key)
            if n % 7 == 0:
                batch = buf.take()
                if batch is not None:
                    index.update(batch.single.get("objects", {}))
                    buf.done(batch)
        stop.set()

    def reader():
        while not stop.is_set():
            for key in list(written[-50:]):
                if buf.lookup("objects", key) is None and key not in index:
                    misses.append(key)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert misses == []
