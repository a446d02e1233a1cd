"""redun's own CLI on an objstore repository (`objstore init --redun`), in subprocesses.

What needs SQL reads objstore's read-only replica; what would write through SQL refuses in one
line; `redun db info` says what it is and leaves no stray sqlite file; one configuration source
(redun.ini or $OBJSTORE_STORAGE_OPTIONS) serves `redun run`, redun's CLI and objstore's CLI; and
the replica keeps up incrementally (another process's run, a running job that ends later).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

import recorded
import servers
from objstore.backend import Provenance
from objstore.repo import Repository
from objstore.repo.index_dir import default_index_dir

WF = recorded.WORKFLOW.name


@pytest.fixture
def project(tmp_path):
    """A directory redun runs in, recording into objstore (one run of the workflow)."""
    d = recorded._prepare(tmp_path / "project", tmp_path / "home")
    (d.path / ".redun").mkdir()
    (d.path / ".redun" / "redun.ini").write_text(
        "# The team's redun settings: keep this comment.\n[scheduler]\n"
        "; and this one\nignore_warnings = namespace\n\n[executors.default]\ntype = local\n"
    )
    d.objstore("init", "--redun")
    d.redun("run", WF, "main", "--x", "3")
    return d


def test_init_redun_keeps_the_existing_config_and_comments(project):
    text = (project.path / ".redun" / "redun.ini").read_text()
    assert "# The team's redun settings: keep this comment." in text and "; and this one" in text
    assert "[executors.default]\ntype = local" in text
    assert "setup_scheduler = objstore.redun::setup_scheduler" in text
    assert f"db_uri = objstore+file://localhost{project.path}/.objstore" in text
    # Running it again changes nothing.
    project.objstore("init", "--redun")
    assert (project.path / ".redun" / "redun.ini").read_text() == text


def test_db_info_says_objstore_and_creates_no_sqlite_file(project):
    proc = project.redun("db", "info")
    assert "db version: 3.5" in proc.stdout and "CLI compatible with db: True" in proc.stdout
    assert f"{project.path}/.objstore is an objstore repository" in proc.stderr
    assert "redun-replica.sqlite" in proc.stderr
    assert sorted(p.name for p in (project.path / ".redun").iterdir()) == ["redun.ini"]  # no stray redun.db
    assert "No migration needed" in project.redun("db", "upgrade", "latest").stdout
    versions = project.redun("db", "versions").stdout
    assert "3.5" in versions


@pytest.mark.parametrize("command", [["db", "downgrade", "3.0"], ["db", "downgrade", "1"]])
def test_migrations_refuse_in_one_line(project, command):
    proc = project.redun(*command, check=1)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RedunClientError: ") and "objstore repository" in last and "objstore upgrade" in last
    assert "Traceback" not in proc.stdout + proc.stderr


def test_push_into_objstore_refuses_and_pull_from_it_works(project, tmp_path):
    # A sqlite project that pushes into (and pulls from) the objstore one.
    sq = recorded._prepare(tmp_path / "sq", tmp_path / "home-sq")
    sq.redun("init")
    (sq.path / ".redun" / "redun.ini").write_text(
        "[scheduler]\nignore_warnings = namespace\n\n[repos.objstore]\n"
        f"config_dir = {project.path / '.redun'}\n")  # fmt: skip
    sq.redun("run", WF, "fails", check=None)
    proc = sq.redun("push", "objstore", check=1)
    assert proc.stdout.strip().splitlines()[-1].startswith("RedunClientError: ") and "cannot write into it" in proc.stdout
    pulled = sq.redun("pull", "objstore").stdout
    assert "Pulled" in pulled and "new record(s)" in pulled
    assert "run query_wf.py main --x 3" in sq.redun("log").stdout  # the objstore run, now in sqlite too
    # The other way round goes through objstore's backend: `redun pull` inside the objstore project.
    (project.path / ".redun" / "redun.ini").write_text(
        (project.path / ".redun" / "redun.ini").read_text() + f"\n[repos.sq]\nconfig_dir = {sq.path / '.redun'}\n")
    assert "Pulled" in project.redun("pull", "sq").stdout
    assert "run query_wf.py fails" in project.redun("log").stdout
    assert "run query_wf.py fails" in project.objstore("log").stdout


def test_rerun_and_tag_edits_go_through_the_backend(project):
    job = project.redun("log", "--job", "--task-name", "qwf.main").stdout.split()[1]
    project.redun("run", "--rerun", WF, job, "--x", "10")  # redun reads the job's call node through SQL
    jobs = project.objstore("log", "--job").stdout
    assert "qwf.main(x=10)" in jobs and "qwf.inc(10)" in jobs
    project.redun("tag", "add", "-", "stage=one")
    assert "stage=one" in project.objstore("log").stdout  # written through ObjstoreBackend.record_tags
    project.objstore("tag", "update", "-", "stage=two")
    assert "stage=two" in project.redun("tag", "list", "--values").stdout  # and read back through the replica


def test_objstore_cli_finds_the_repository_through_redun_ini(project):
    sub = project.path / "src" / "deep"
    sub.mkdir(parents=True)
    d = recorded.Dir(sub, project.env)
    # From a subdirectory, with no .objstore here: redun's config names it.
    (project.path / ".objstore").rename(project.path / "elsewhere")
    ini = project.path / ".redun" / "redun.ini"
    ini.write_text(ini.read_text().replace(f"{project.path}/.objstore", f"{project.path}/elsewhere"))
    assert "run query_wf.py main --x 3" in d.objstore("log").stdout
    assert "run query_wf.py main --x 3" in d.redun("log").stdout


@pytest.mark.remote
@pytest.mark.parametrize("where", ["environment", "redun.ini"])
def test_one_configuration_source_on_s3(s3_server, tmp_path, where):
    target = servers.make_target("s3", tmp_path=tmp_path, server=s3_server)
    options = json.dumps(target.storage_options)
    d = recorded._prepare(tmp_path / "p", tmp_path / "home")
    (d.path / ".redun").mkdir()
    (d.path / ".redun" / "redun.ini").write_text("[scheduler]\nignore_warnings = namespace\n")
    d.env["OBJSTORE_STORAGE_OPTIONS"] = options
    d.objstore("init", target.url, "--redun")
    if where == "redun.ini":
        del d.env["OBJSTORE_STORAGE_OPTIONS"]
        ini = d.path / ".redun" / "redun.ini"
        ini.write_text(ini.read_text().replace("[backend]\n", f"[backend]\nobjstore_storage_options = {options}\n"))
    d.redun("run", WF, "main", "--x", "5")  # the redun backend reads the same setting
    assert "run query_wf.py main --x 5" in d.objstore("log").stdout  # found via .redun/redun.ini
    assert "run query_wf.py main --x 5" in d.redun("log").stdout  # redun's CLI, through the replica
    assert "db version: 3.5" in d.redun("db", "info").stdout  # the dialect on an objstore+s3:// db_uri
    assert "s3://" in (d.path / ".redun" / "redun.ini").read_text()


def test_the_replica_keeps_up_incrementally(project, tmp_path):
    replica = default_index_dir(str(project.path / ".objstore"), Path(project.env["HOME"]) / ".cache" / "objstore")
    path = replica / "redun-replica.sqlite"
    assert "Exec " in project.redun("log").stdout and path.exists()
    def written() -> int:  # the replica runs in WAL mode: a write may sit in -wal until a checkpoint
        wal = path.with_name(path.name + "-wal")
        return max(path.stat().st_mtime_ns, wal.stat().st_mtime_ns if wal.exists() else 0)

    before = written()
    count = sqlite3.connect(path).execute("SELECT count(*) FROM objstore_segment").fetchone()[0]
    # Another worker with its own index records a run and leaves a job running.
    with Repository.open(str(project.path / ".objstore"), index_dir=tmp_path / "worker") as repo:
        prov = Provenance(repo)
        prov.refresh()
        execution = prov.jobs.list_executions()[0]
        root = prov.jobs.get_execution(execution)["job_id"]
        task_hash = prov.jobs.get_job_info(root)["task_hash"]
        prov.jobs.job_started("12345678-0000-4000-8000-000000000001", task_hash=task_hash, execution_id=execution,
                              parent_id=root)  # fmt: skip
    project.redun("run", WF, "fails", check=None)
    jobs = project.redun("log", "--job").stdout
    assert "qwf.boom(1)" in jobs and "Job 12345678 [ RUN  ]" in jobs.replace("[RUN ]", "[ RUN  ]") or "12345678" in jobs
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM objstore_segment").fetchone()[0] > count  # applied, not rebuilt
    assert db.execute("SELECT end_time FROM job WHERE id LIKE '12345678%'").fetchone() == (None,)
    assert written() != before
    # Deleting the replica loses nothing: it is rebuilt from the journal.
    path.unlink()
    assert "qwf.boom(1)" in project.redun("log", "--job").stdout


def test_redun_log_answers_while_another_process_writes(project):
    # The console keeps one session open: new runs appear without reopening it.
    code = (
        "import subprocess, sys\n"
        "from redun.cli import RedunClient\n"
        "client = RedunClient()\n"
        "args, _ = client.get_command_parser().parse_known_args(['log'])\n"
        "session = client.get_scheduler(args).backend.session\n"
        "from redun.backends.db import Execution\n"
        "print(session.query(Execution).count())\n"
        f"subprocess.run([sys.argv[1], 'run', '{WF}', 'fails'], capture_output=True)\n"
        "import time; time.sleep(2.5)\n"
        "print(session.query(Execution).count())\n"
    )
    out = project.run([recorded.sys.executable, "-c", code, str(recorded.BIN / "redun")]).stdout.split()
    assert out == ["1", "2"], out
    time.sleep(0)


@pytest.mark.slow
def test_objstore_tag_commands_supersede_tags_as_redun_tag_does(project, tmp_path):
    sq = recorded._prepare(tmp_path / "sq", tmp_path / "home-sq")
    sq.redun("init")
    (sq.path / ".redun" / "redun.ini").write_text("[scheduler]\nignore_warnings = namespace\n")
    sq.redun("run", WF, "main", "--x", "3")
    four = "6f3255df8edcac1781aa65243886d5b24a00dbf6"  # the value 4 (qwf.inc(3)), alike on both
    job = {id(d): d.redun("log", "--job", "--task-name", "qwf.inc").stdout.split()[1] for d in (sq, project)}
    steps = [
        ("add", "-", "a=1", "b=x"), ("add", "-", "a=1"), ("update", "-", "a=2"), ("rm", "-", "--", "b"),
        ("add", "JOB", "c=[1, 2]", "d=true"), ("rm", "JOB", "c=[1, 2]"), ("add", "-", "a=2"),
        ("update", "-", "a=3", "b=y"), ("add", four[:10], "owner=me"), ("rm", "-", "a=3"),
    ]
    for step in steps:  # redun on sqlite: one process per command (its sessions keep sqlite locked)
        sq.redun("tag", *[job[id(sq)] if s == "JOB" else s for s in step])
    # objstore: the same commands in one process, each as its console script runs it.
    project.batch("objstore", [("tag", *[job[id(project)] if s == "JOB" else s for s in step]) for step in steps])
    forms = [("tag", "list", "--values"), ("tag", "list"), ("log", "--exec"), ("log", "--job", "--tag", "d=true"),
             ("tag", "list", "owner=me")]  # fmt: skip
    want, replica, mine = sq.batch("redun", forms), project.batch("redun", forms), project.batch("objstore", forms)
    for form in forms:
        assert recorded.normalized(replica[form]) == recorded.normalized(want[form]), form
        assert recorded.normalized(mine[form]) == recorded.normalized(want[form]), form
        assert want[form].strip()
    mine = project.objstore("tag", "list", "--exec", "-").stdout.splitlines()
    assert "  b=y" in mine and not any(line.startswith("  a=") for line in mine)
