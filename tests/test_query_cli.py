"""objstore's query commands on real workflows, through their real entry point (subprocesses).

* redun's compile example (examples/compile), recorded by `redun run workflow.py make` twice
  (lib.c edited in between) on a local repository and on S3 (moto; credentials only in
  $OBJSTORE_STORAGE_OPTIONS, read alike by `redun run` and `objstore`): which call nodes
  produced and consumed each file, the file list, the repl, a graph, all found from
  .redun/redun.ini with no --repo.
* Bad input: unknown, ambiguous and too-short ids, a path no call node touched, a damaged object
  behind a job (one line naming it; the rest still prints), and a value whose pickle would run
  code: no command unpickles it but the repl's explicit ``.value``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from redun import Scheduler, task
from redun.config import Config

import recorded
import servers
from damage import damage_object
from objstore import hashing, model
from objstore.format import FORMAT_VERSION, show
from objstore.backend import Provenance, ValueSpec
from objstore.redun import ObjstoreBackend
from objstore.repo import Repository

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "compile"


def assert_one_line_error(proc, code: int, match: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines, proc.stderr
    assert lines[-1].startswith("objstore: error: ") and match in lines[-1], proc.stderr


# ------------------------------------------------------------------------ the compile example


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.remote)])
def compiled(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"compile-{request.param}")
    work = base / "work"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns(".redun", ".objstore", "*.o", "prog", "prog2"))
    d = recorded.Dir(work, recorded.clean_env(base / "home"))
    (base / "home").mkdir()
    if request.param == "s3":
        target = servers.make_target("s3", tmp_path=base, server=request.getfixturevalue("s3_server"))
        d.env["OBJSTORE_STORAGE_OPTIONS"] = json.dumps(target.storage_options)
        d.objstore("init", target.url, "--redun")
    else:
        d.objstore("init", "--redun")
    ini = (work / ".redun" / "redun.ini").read_text()
    assert "objstore_storage_options" not in ini  # credentials stay in the environment
    d.redun("run", "workflow.py", "make")
    (work / "lib.c").write_text((work / "lib.c").read_text().replace("Hello, World!", "Hello, objstore!"))
    d.redun("run", "workflow.py", "make")
    assert subprocess.run(["./prog"], cwd=work, capture_output=True, text=True).stdout == "prog1: Hello, objstore!\n"
    return d


def test_compile_example_files_their_producers_and_consumers(compiled):
    d = compiled
    files = d.objstore("log", "--file").stdout.split()[2::3]
    assert files == ["lib.c", "lib.o", "prog", "prog.c", "prog.o", "prog2", "prog2.c", "prog2.o"]

    src = json.loads(d.objstore("log", "prog.c", "--json").stdout)  # a relative path, as recorded
    assert src["path"] == "prog.c" and src["verb"] == "Consumed" and not src["produced_by"]
    consumers = {u["call"]["task_name"] for u in src["consumed_by"]}
    # compile(prog.c) takes it; make_prog and make take it inside their list / dict arguments.
    assert consumers == {"redun.examples.compile.compile", "redun.examples.compile.make_prog",
                         "redun.examples.compile.make"}  # fmt: skip
    # The same path through an absolute spelling, and redun's text form.
    assert json.loads(d.objstore("log", str(d.path / "prog.c"), "--json").stdout)["path"] == "prog.c"
    text = d.objstore("log", "prog.c").stdout
    assert text.startswith("File ") and "Consumed by Job " in text and "def compile(c_file: File) -> File:" in text

    lib = json.loads(d.objstore("log", "lib.o", "--json").stdout)
    assert len(lib["values"]) == 2  # lib.o had two contents: before and after the edit
    makers = [u for u in lib["produced_by"] if u["call"]["task_name"].endswith(".compile")]
    assert len(makers) == 2 and lib["verb"] == "Produced"
    assert {u["execution_id"] for u in makers} == set(json.loads(d.objstore("log", "--json", "--limit", "0").stdout)
                                                      and [e["id"] for e in json.loads(d.objstore("log", "--json").stdout)])
    prog = json.loads(d.objstore("log", "prog", "--json").stdout)
    assert {u["call"]["task_name"].rsplit(".", 1)[1] for u in prog["produced_by"]} == {"link", "make_prog", "make"}
    assert prog["job"]["task"]["name"] == "link" and "def link(" in prog["job"]["task"]["source"]


def test_compile_example_job_tree_marks_cached_jobs(compiled):
    second = compiled.objstore("log", "-").stdout
    jobs = [line.strip() for line in second.splitlines() if line.lstrip().startswith("Job ")]
    cached = [j for j in jobs if "[CACHED]" in j]
    assert any("compile(File(path=prog.c" in j for j in cached)
    assert any("compile(File(path=lib.c" in j and "[ DONE ]" in j for j in jobs)
    dot = compiled.objstore("graph", "-").stdout
    compile_nodes = [line for line in dot.splitlines() if "compile\\n" in line and "[CACHED]" in line]
    assert compile_nodes and all("dashed" in line for line in compile_nodes)


def test_compile_example_repl_on_the_repository(compiled):
    code = (
        "f = query('prog.c')\n"
        "print(sorted({c.task.name for c in f.consumed_by}))\n"
        "e = query('-'); j = [j for j in e.jobs if j.task.name == 'link'][0]\n"
        "print(j.call_node.arguments[0].value.preview, j.parent.task.name, j.execution == e)\n"
        "print([a.upstream[0].task.name for a in j.call_node.arguments if a.upstream][:1])\n"
    )
    out = compiled.objstore("repl", "-c", code).stdout.splitlines()
    assert out[0] == "['compile', 'make', 'make_prog']"
    assert out[1] in ("'prog' make_prog True", "'prog2' make_prog True")
    assert out[2] == "['compile']"


def test_no_repository_named_anywhere(tmp_path):
    d = recorded.Dir(tmp_path, recorded.clean_env(tmp_path))
    assert_one_line_error(d.objstore("log", check=None), 1, "not in an objstore repository")


def test_version_and_completion(tmp_path):
    d = recorded.Dir(tmp_path, recorded.clean_env(tmp_path))
    version = d.objstore("--version").stdout
    assert version.startswith("objstore ") and f"repository format {show(FORMAT_VERSION)}" in version
    script = d.objstore("completion", "bash").stdout
    # The completion is generated from the parser: every command is offered.
    proc = subprocess.run(["bash", "-c", script + '\nCOMP_WORDS=(objstore ""); COMP_CWORD=1; _objstore; '
                           'echo "${COMPREPLY[@]}"; COMP_WORDS=(objstore log --job-s); COMP_CWORD=2; _objstore; '
                           'echo "${COMPREPLY[@]}"'], capture_output=True, text=True)  # fmt: skip
    first, second = proc.stdout.splitlines()
    assert {"log", "tag", "graph", "repl", "init", "cat-object", "completion"} <= set(first.split())
    assert second == "--job-status"
    assert "complete -c objstore" in d.objstore("completion", "fish").stdout


# ------------------------------------------------------------------------------- bad input


class Planted:
    """A value whose unpickling would run a shell command (creating ``marker``)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


redun_namespace = "badinput"


@task()
def inc(x: int) -> int:
    return x + 1


@task()
def main(x: int) -> int:
    return inc(inc(x))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    url = str(base / "repo")
    backend = ObjstoreBackend(url, index_dir=str(base / "writer-index"), create=True)
    scheduler = Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend)
    assert scheduler.run(main(1)) == 3
    backend.close()
    d = recorded.Dir(base, recorded.clean_env(base / "home"))
    d.env["OBJSTORE_REPO"] = url
    d.url = url  # type: ignore[attr-defined]
    return d


def test_unknown_ambiguous_and_short_ids(small):
    assert_one_line_error(small.objstore("log", "0000ffff", check=None), 1, "no record with id prefix '0000ffff'")
    assert_one_line_error(small.objstore("log", "--job", "0000ffff", check=None), 1, "no job with id prefix")
    assert_one_line_error(small.objstore("log", "ab", check=None), 1, "too short: give at least 4 characters")
    assert_one_line_error(small.objstore("log", "~9", check=None), 1, "execution index too high")
    assert_one_line_error(small.objstore("tag", "add", "0000ffff", "a=1", check=None), 1, "no record with id prefix")
    assert_one_line_error(small.objstore("graph", "0000ffff", check=None), 1, "no record")
    # Two values planted with one prefix: the candidates are listed.
    with Repository.open(small.url, index_dir=small.path / "plant-index") as repo:
        prov = Provenance(repo)
        found: dict[str, str] = {}
        n = 0
        while len(found) < 2 and n < 200000:
            h = hashing.hash_text(f"v{n}")
            n += 1
            if h.startswith("ab") and (not found or next(iter(found)).startswith(h[:4])):
                found[h] = f"v{n}"
            elif h.startswith("ab") and not found:
                found[h] = f"v{n}"
        assert len(found) == 2
        for h in found:
            prov.values.record_value(ValueSpec(h, "builtins.str", "application/python-pickle", b"\x80\x03X\x01\x00\x00\x00x."))
        prov.flush()
    prefix = os.path.commonprefix(list(found))
    proc = small.objstore("log", prefix, check=None)
    assert_one_line_error(proc, 1, f"ambiguous record id prefix {prefix!r}")
    assert all(h in proc.stderr for h in found)


def test_a_path_no_call_node_touched(small):
    (small.path / "notes.txt").write_text("never recorded")
    assert_one_line_error(small.objstore("log", "notes.txt", check=None), 1,
                          "no File was recorded at 'notes.txt': no call node produced or consumed it")  # fmt: skip
    assert_one_line_error(small.objstore("log", "no/such/file.txt", check=None), 1, "no File was recorded")
    assert_one_line_error(small.objstore("repl", "-c", "query('notes.txt')", check=None), 1, "no File was recorded")


def test_a_damaged_object_behind_a_job(small, tmp_path):
    url = str(tmp_path / "copy")
    shutil.copytree(small.url, url)
    d = recorded.Dir(small.path, {**small.env, "OBJSTORE_REPO": url})
    tree = json.loads(d.objstore("log", "-", "--json").stdout)
    child = tree["root"]["children"][0]
    damage_object(url, child["call_hash"], "corrupt")
    proc = d.objstore("log", "-")
    jobs = [line for line in proc.stdout.splitlines() if line.lstrip().startswith("Job ")]
    assert len(jobs) == 3, proc.stdout  # the rest of the tree still prints
    warnings = proc.stderr.strip().splitlines()
    # One line per damaged object (the repair ledger may add one saying it will be rewritten).
    assert warnings and all(w.startswith("objstore: warning: ") for w in warnings), warnings
    assert warnings[0].startswith(f"objstore: warning: call node {child['call_hash']} is unreadable"), warnings
    assert len(warnings) <= 2 and "Traceback" not in proc.stderr
    detail = d.objstore("log", child["id"])
    assert f"CallNode {child['call_hash']} is unreadable" in detail.stdout and "def inc(x: int)" in detail.stdout
    assert len(detail.stderr.strip().splitlines()) == 1 and child["call_hash"] in detail.stderr
    # The damaged value behind a call: its preview is named missing, the command goes on.
    value = tree["root"]["call_hash"]
    assert d.objstore("graph", "-").returncode == 0 and d.objstore("log", value).returncode == 0


@task()
def planted(marker: str) -> Planted:
    return Planted(marker)


def test_a_value_whose_pickle_runs_code_is_never_unpickled_but_by_dot_value(tmp_path):
    marker = tmp_path / "ran"
    url = str(tmp_path / "repo")
    backend = ObjstoreBackend(url, index_dir=str(tmp_path / "w"), create=True)
    Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend).run(planted(str(marker)))
    backend.close()
    assert not marker.exists(), "redun itself unpickled it"
    d = recorded.Dir(tmp_path, {**recorded.clean_env(tmp_path / "home"), "OBJSTORE_REPO": url})
    tree = json.loads(d.objstore("log", "-", "--json").stdout)
    job = tree["root"]["children"][0] if tree["root"]["children"] else tree["root"]
    call = json.loads(d.objstore("log", job["id"], "--json").stdout)["call"]
    value = call["result_hash"]
    assert "system(" in call["result"]["preview"]  # the safe preview shows what it would run
    for args in (["log"], ["log", "-"], ["log", job["id"]], ["log", value], ["log", "--value"], ["log", "--all"],
                 ["log", "--all", "--count"], ["log", "--value", "--json"], ["graph", "-"], ["graph", "-", "--format",
                 "mermaid"], ["tag", "list"], ["tag", "add", value, "k=v"], ["tag", "list", "k=v"], ["cat-object", "-s", value],
                 ["repl", "-c", f"v = query('{value}'); print(v.preview, v.produced_by, v.type)"]):  # fmt: skip
        d.objstore(*args)
        assert not marker.exists(), f"objstore {' '.join(args)} ran the pickle's code"
    d.objstore("repl", "-c", f"query('{value}').value")  # the one explicit unpickle
    assert marker.exists()


def test_json_on_every_form(small):
    tree = json.loads(small.objstore("log", "-", "--json").stdout)
    job = tree["root"]["id"]
    call = tree["root"]["call_hash"]
    value = json.loads(small.objstore("log", job, "--json").stdout)["call"]["result_hash"]
    task_hash = tree["root"]["task_hash"]
    for args, kind in ((["log"], list), (["log", "-"], "ExecutionTree"), (["log", job], "JobDetail"),
                       (["log", call], "CallInfo"), (["log", value], "ValueDetail"), (["log", task_hash], "TaskInfo"),
                       (["log", "--job"], list), (["log", "--all", "--count"], list), (["tag", "list"], list)):  # fmt: skip
        got = json.loads(small.objstore(*args, "--json").stdout)
        assert isinstance(got, list) if kind is list else got["_type"] == kind, (args, got)


def test_limit_everywhere(small):
    assert len([ln for ln in small.objstore("log", "-", "--limit", "2").stdout.splitlines() if "Job " in ln]) == 2
    assert "... 1 more jobs (--limit 2)" in small.objstore("log", "-", "--limit", "2").stdout
    assert len(small.objstore("log", "--job", "--limit", "1").stdout.splitlines()) == 1
    assert len(json.loads(small.objstore("log", "--all", "--limit", "1", "--json").stdout)) == 5  # one per type


def test_output_is_paged_on_a_terminal_only(small, tmp_path):
    import pty

    pager = tmp_path / "pager.py"
    pager.write_text("import sys\nsys.stdout.write('PAGED:' + sys.stdin.read())\n")
    env = {**small.env, "PAGER": f"{sys.executable} {pager}"}
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "objstore.cli", "log"], stdout=slave, stderr=subprocess.PIPE,
                            env=env, cwd=small.path)  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the other side closed
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    shown = b"".join(chunks).decode()
    assert proc.returncode == 0 and shown.startswith("PAGED:Recent executions:"), shown
    assert "PAGED:" not in recorded.Dir(small.path, env).objstore("log").stdout  # a pipe: no pager
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "objstore.cli", "log", "--no-pager"], stdout=slave, env=env,
                            cwd=small.path)  # fmt: skip
    os.close(slave)
    data = os.read(master, 65536)
    proc.wait(timeout=60)
    os.close(master)
    assert b"PAGED:" not in data and b"Recent executions:" in data
