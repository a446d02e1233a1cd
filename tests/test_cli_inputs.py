"""Bad input and awkward cases at the command line (issue 8, defect 9), each in a subprocess.

Storage options and remote failures, cat-object's kinds, terminals and id spellings, `log`'s
empty id and --limit on a job tree, and executions that came in through `redun import`.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

import servers

OBJSTORE = Path(sys.executable).with_name("objstore")
REDUN = Path(sys.executable).with_name("redun")

WORKFLOW = """
from redun import task

redun_namespace = "cli_inputs"


@task()
def square(x: int) -> int:
    return x * x


@task()
def main(n: int = 6) -> list:
    return [square(i) for i in range(n)]
"""


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OBJSTORE_", "REDUN_")) and k != "XDG_CACHE_HOME"}
    e["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    return e


def run(args, cwd, env, *, check=None, exe=OBJSTORE) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check is not None:
        assert proc.returncode == check, (args, proc.stdout, proc.stderr)
    return proc


def assert_one_line_error(proc, code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("objstore: error: "), proc.stderr
    assert "[Errno" not in last, last
    for needle in needles:
        assert needle in last, (needle, last)
    return last


@pytest.fixture
def project(tmp_path, env):
    """`objstore init --redun` and one `redun run` of a six-job workflow."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "workflow.py").write_text(WORKFLOW)
    run(["init", "--redun"], work, env, check=0)
    run(["run", "workflow.py", "main"], work, env, check=0, exe=REDUN)
    return work


def ids_of(work, env) -> dict:
    """The latest execution's id, a job's call node, and a result value (from log --json)."""
    [summary] = json.loads(run(["log", "--json"], work, env, check=0).stdout)[:1]
    tree = json.loads(run(["log", "--json", summary["id"]], work, env, check=0).stdout)
    job = tree["root"]["children"][0]
    call = json.loads(run(["log", "--json", "--job", job["id"]], work, env, check=0).stdout)["call"]
    return {"exec": summary["id"], "call": call["call_hash"], "value": call["result_hash"]}


# -- storage options and remote failures ------------------------------------------------------


@pytest.mark.remote
@pytest.mark.parametrize("case", ["unknown option", "missing bucket", "dead endpoint"])
def test_remote_failures_are_one_line(tmp_path, env, s3_server, case):
    target = servers.make_target("s3", tmp_path=tmp_path, server=s3_server)
    bucket = target.root.split("/")[0]
    good = dict(env, OBJSTORE_STORAGE_OPTIONS=json.dumps(target.storage_options))
    run(["init", target.url], tmp_path, good, check=0)
    if case == "unknown option":  # a typo of endpoint_url: a usage error, not a TypeError deep inside
        typo = dict(env, OBJSTORE_STORAGE_OPTIONS=json.dumps(dict(target.storage_options, endpoint=1)))
        assert_one_line_error(run(["--repo", target.url, "log"], tmp_path, typo), 2, "unknown storage option",
                              "endpoint")
    elif case == "missing bucket":  # not "no objstore repository" as if the bucket were there
        missing = f"s3://no-such-{bucket[-8:]}/repo"
        assert_one_line_error(run(["--repo", missing, "log"], tmp_path, good), 1, missing, "does not exist")
    else:  # and no "[Errno None]" in front of the cause
        dead = dict(target.storage_options, client_kwargs={"endpoint_url": f"http://127.0.0.1:{servers.free_port()}"},
                    config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2})
        e = dict(env, OBJSTORE_STORAGE_OPTIONS=json.dumps(dead))
        assert_one_line_error(run(["--repo", target.url, "log"], tmp_path, e), 1, "Could not connect")


# -- cat-object ---------------------------------------------------------------------------------


def test_cat_object_kinds(project, env):
    ids = ids_of(project, env)
    last = assert_one_line_error(run(["cat-object", "--kind", "value", ids["call"]], project, env), 1, ids["call"])
    assert "is a 'call', not a 'value'" in last and "corrupt" not in last
    proc = run(["cat-object", "--kind", "bogus", ids["call"]], project, env)
    assert proc.returncode == 2 and "invalid choice: 'bogus'" in proc.stderr
    assert run(["cat-object", "-t", "--kind", "call", ids["call"]], project, env, check=0).stdout == "call\n"


def test_cat_object_accepts_any_case(project, env):
    ids = ids_of(project, env)
    for text in (ids["call"].upper(), ids["exec"].upper(), ids["call"][:12].upper()):
        assert run(["cat-object", "-t", text], project, env, check=0).stdout in ("call\n", "exec\n")


def on_a_terminal(args, cwd, env) -> bytes:
    """What the command writes when its stdout is a terminal."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([str(OBJSTORE), *args], cwd=cwd, env=env, stdout=secondary, stderr=subprocess.PIPE)
    os.close(secondary)
    out = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out += chunk
    os.close(primary)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    return out


def test_cat_object_describes_binary_payloads_on_a_terminal(project, env):
    ids = ids_of(project, env)
    piped = subprocess.run([str(OBJSTORE), "cat-object", ids["value"]], cwd=project, env=env, capture_output=True)
    assert piped.returncode == 0 and b"\0" in piped.stdout  # a pipe gets the payload as stored
    shown = on_a_terminal(["cat-object", ids["value"]], project, env)
    assert b"\0" not in shown and b"pickle" in shown
    assert b"preview: " in shown and b"--raw" in shown
    raw = on_a_terminal(["cat-object", "--raw", ids["value"]], project, env)
    assert b"\0" in raw
    doc = on_a_terminal(["cat-object", ids["call"]], project, env)
    assert json.loads(doc)["task_hash"]  # JSON is pretty-printed on a terminal as before


# -- log --------------------------------------------------------------------------------------


def test_log_with_an_empty_id_is_an_error(project, env):
    assert_one_line_error(run(["log", ""], project, env), 1, "empty")


def test_log_limit_applies_to_a_job_tree(project, env):
    ids = ids_of(project, env)
    full = run(["log", ids["exec"]], project, env, check=0).stdout
    assert sum(1 for line in full.splitlines() if line.lstrip().startswith("Job ")) == 7
    cut = run(["log", ids["exec"], "--limit", "3"], project, env, check=0).stdout
    assert sum(1 for line in cut.splitlines() if line.lstrip().startswith("Job ")) == 3
    assert "4 more jobs" in cut
    tree = json.loads(run(["log", "--json", ids["exec"], "--limit", "3"], project, env, check=0).stdout)
    assert 1 + len(tree["root"]["children"]) == 3
    assert run(["log", ids["exec"], "--limit", "0"], project, env, check=0).stdout == full


def test_executions_imported_by_redun_import_sort_by_when_they_ran(project, tmp_path, env):
    # An execution recorded later in redun's own sqlite backend, then imported.
    other = tmp_path / "sqlite-project"
    other.mkdir()
    (other / "workflow.py").write_text(WORKFLOW)
    run(["run", "workflow.py", "main", "--n", "3"], other, env, check=0, exe=REDUN)
    export = tmp_path / "export.jsonl"
    run(["export", "--file", str(export)], other, env, check=0, exe=REDUN)
    imported = [json.loads(line)["id"] for line in export.read_text().splitlines()
                if json.loads(line)["_type"] == "Execution"]
    native = ids_of(project, env)["exec"]
    run(["import", "--file", str(export)], project, env, check=0, exe=REDUN)
    listed = [e["id"] for e in json.loads(run(["log", "--json"], project, env, check=0).stdout)]
    assert listed == imported + [native]  # newest first: the import ran after the native run
