"""The index tables queries read backwards (files by path, calls by result and argument, jobs by
call node, value parents), including for journal segments written before they existed, and the
library API objstore.query.query / open_graph."""

from __future__ import annotations

import json
import os

import pytest
from redun import File, Scheduler, task
from redun.config import Config

from objstore import codec, layout, model
from objstore.backend import Provenance
from objstore.model.schema import path_key
from objstore.query import open_graph, query
from objstore.redun import ObjstoreBackend
from objstore.repo import Repository
from objstore.repo import journal as journal_mod

redun_namespace = "qindex"
QUERY_TABLES = {"value_parents", "files_by_path", "calls_by_result", "calls_by_arg", "jobs_by_call"}


@task()
def write(path: str) -> File:
    f = File(path)
    f.write("x")
    return f


@task()
def size(f: File) -> int:
    return len(f.read())


@task()
def main(path: str) -> list:
    f = write(path)
    return [f, size(f)]


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = str(tmp_path / "repo")
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "writer"), create=True)
    Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend).run(main("a.txt"))
    backend.close()
    return url


def answers(url: str, index_dir) -> dict:
    with Repository.open(url, index_dir=index_dir) as repo:
        files = repo.lookup_all("files_by_path", path_key("a.txt"))
        assert len(files) == 1
        (value,) = files
        return {
            "files": files,
            "made_by": repo.lookup_all("calls_by_result", value),
            "taken_by": repo.lookup_all("calls_by_arg", value),
            "parents": repo.lookup_all("value_parents", value),
        }


def test_the_query_tables_come_with_every_segment(recorded, tmp_path):
    got = answers(recorded, tmp_path / "reader")
    assert len(got["made_by"]) == 1 and len(got["taken_by"]) == 1 and len(got["parents"]) == 1
    # Every segment says which derivation wrote it.
    repo = Repository.open(recorded, index_dir=tmp_path / "r2")
    with repo:
        segments = list(repo.read_segments(sorted(repo.applied_segments())))
    assert segments and all(s.derivation == model.DERIVATION for s in segments)


def test_segments_of_an_older_derivation_are_derived_again(recorded, tmp_path):
    want = answers(recorded, tmp_path / "reference")
    # Rewrite the journal as an objstore before these tables wrote it: no "derived" field, and
    # none of the query tables' entries.
    jdir = f"{recorded}/{layout.JOURNAL}"
    for name in os.listdir(jdir):
        path = os.path.join(jdir, name)
        _, payload = codec.decode(open(path, "rb").read(), object_id=name, expect_kind=journal_mod.KIND)
        doc = json.loads(payload)
        doc.pop("derived", None)
        doc["entries"] = [e for e in doc["entries"] if e[1] not in QUERY_TABLES]
        open(path, "wb").write(codec.encode(journal_mod.KIND, codec.canonical_json(doc)))
    # A fresh index ingests the old segments and derives their objects' entries again.
    assert answers(recorded, tmp_path / "fresh") == want


def test_library_query_api(recorded, tmp_path):
    graph = open_graph(recorded, index_dir=tmp_path / "lib")
    e = graph.query("-")
    assert e.kind == "Execution" and e.status == "DONE" and e.job.task.fullname == "qindex.main"
    f = graph.query("a.txt")
    assert f.kind == "File" and sorted(c.task.name for c in f.produced_by) == ["main", "write"]
    assert [c.task.name for c in f.consumed_by] == ["size"]
    call = [c for c in f.consumed_by][0]
    assert call.arguments[0].upstream[0].task.name == "write"
    assert call.value.preview == "1" and call.parents[0].task.name == "main" and call.jobs[0].status == "DONE"
    assert "def size(f: File)" in call.task.source
    assert query(e.id[:8], graph).id == e.id  # the module-level function, on any repo handle
    with pytest.raises(KeyError):
        graph.query("ffff0000")
    graph.prov.close()
