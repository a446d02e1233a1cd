"""push / pull / sync and named remotes through the command line, as a user runs them.

redun records a real workflow (File, value store-sized value, caught failure, tags, a Handle)
into one repository; after a push to an empty repository a run there executes no task body;
two repositories that ran different workflows and synced both ways each run both without
executing anything; a killed push resumes; every bad input is one line and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
import servers
from sync_helpers import (
    FIRST_RUN,
    OBJSTORE,
    assert_one_line_error,
    clean_env,
    load_workflow,
    redun_ini,
    redun_run,
    run,
    scheduler_run,
    write_workflow,
)

from objstore import hashing, model
from objstore.cli import main
from objstore.repo import Repository
from objstore.sync.endpoint import list_files, open_endpoint


@pytest.fixture
def env(tmp_path):
    return clean_env(tmp_path / "home")


@pytest.fixture
def recorded(tmp_path, env):
    """A local repository A holding one redun run of the workflow (`redun run` in a subprocess)."""
    work = tmp_path / "work"
    write_workflow(work)
    repo_a = tmp_path / "a"
    run(["init", repo_a], tmp_path, env, check=0)
    config = redun_ini(work / ".redunA", objstore_url=str(repo_a))
    ran = redun_run(work, config, env)
    assert set(ran) >= FIRST_RUN and ran.count("inc") == 5
    return {"work": work, "a": repo_a, "config": config}


def test_push_to_an_empty_repository_then_a_run_there_is_fully_cached(recorded, tmp_path, env):
    work, repo_a = recorded["work"], recorded["a"]
    repo_b = tmp_path / "b"
    run(["init", repo_b], tmp_path, env, check=0)
    before = sorted(p.relative_to(repo_b) for p in repo_b.rglob("*"))
    dry = run(["--repo", repo_a, "push", repo_b, "--dry-run"], tmp_path, env, check=0).stdout.decode()
    assert "push (dry run)" in dry and "would copy" in dry and "journal segments" in dry
    assert sorted(p.relative_to(repo_b) for p in repo_b.rglob("*")) == before  # a dry run writes nothing

    out = run(["--repo", repo_a, "push", repo_b], tmp_path, env, check=0).stdout.decode()
    assert out.startswith(f"push: {repo_a} -> {repo_b}: ") and "objects/s" in out, out
    assert "up to date" in run(["--repo", repo_a, "push", repo_b], tmp_path, env, check=0).stdout.decode()
    assert redun_run(work, redun_ini(work / ".redunB", objstore_url=str(repo_b)), env) == []
    # And the other way: pull into a third, empty repository.
    repo_c = tmp_path / "c"
    run(["init", repo_c], tmp_path, env, check=0)
    assert "pull: " in run(["--repo", repo_c, "pull", repo_a], tmp_path, env, check=0).stdout.decode()
    assert redun_run(work, redun_ini(work / ".redunC", objstore_url=str(repo_c)), env) == []


def test_two_repositories_synced_both_ways_hold_the_union_and_each_is_fully_cached(recorded, tmp_path, env):
    """A ran `main` in one working directory, B ran another workflow in another (two laptops)."""
    work, repo_a = recorded["work"], recorded["a"]
    work_b = tmp_path / "work-b"
    write_workflow(work_b)
    repo_b = tmp_path / "b"
    run(["init", repo_b], tmp_path, env, check=0)
    config_b = redun_ini(work_b / ".redunB", objstore_url=str(repo_b))
    ran_b = redun_run(work_b, config_b, env, "--n", "8", "--second", "c", task="compute")
    assert ran_b.count("inc") == 8 and "ledger_add:c" in ran_b and "compute" in ran_b
    run(["sync", repo_a, repo_b], tmp_path, env, check=0)
    run(["sync", repo_b, repo_a], tmp_path, env, check=0)
    for repo in (repo_a, repo_b):
        log = run(["--repo", repo, "log", "--json"], tmp_path, env, check=0).stdout.decode()
        assert len(json.loads(log)) == 2  # the union: both executions
    assert redun_run(work_b, recorded["config"], env, "--n", "8", "--second", "c", task="compute") == []  # B's, in A
    assert redun_run(work, config_b, env) == []  # A's, in B
    # The cached runs recorded new executions; once they are exchanged too, nothing is left.
    run(["sync", repo_a, repo_b], tmp_path, env, check=0)
    run(["sync", repo_b, repo_a], tmp_path, env, check=0)
    assert "up to date" in run(["sync", repo_a, repo_b], tmp_path, env, check=0).stdout.decode()
    assert "up to date" in run(["sync", repo_b, repo_a], tmp_path, env, check=0).stdout.decode()


def test_handle_rollbacks_of_both_sides_survive_a_sync_both_ways(tmp_path, env):
    """Both sides advanced the same handle and each rolled back a different branch (redun rolls
    back a handle's other descendants when a consumer re-runs): after syncing both ways each
    side re-runs the branch the *other* side rolled back, as if it had replayed that run."""
    work = tmp_path / "work"
    write_workflow(work)
    repos = {}
    for name in ("a", "b"):
        run(["init", tmp_path / name], tmp_path, env, check=0)
        repos[name] = redun_ini(work / f".redun{name.upper()}", objstore_url=str(tmp_path / name))
    assert "ledger_add:b" in redun_run(work, repos["a"], env, "--second", "b", task="compute")
    assert redun_run(work, repos["a"], env, "--second", "c", task="compute") == ["compute", "ledger_add:c"]  # rolls b back
    assert "ledger_add:d" in redun_run(work, repos["b"], env, "--second", "d", task="compute")
    assert redun_run(work, repos["b"], env, "--second", "e", task="compute") == ["compute", "ledger_add:e"]  # rolls d back
    run(["sync", tmp_path / "a", tmp_path / "b"], tmp_path, env, check=0)
    out = run(["sync", tmp_path / "b", tmp_path / "a"], tmp_path, env, check=0).stdout.decode()
    assert "1 refs" in out  # A's handle state: merged, not replaced
    assert redun_run(work, repos["a"], env, "--second", "d", task="compute") == ["ledger_add:d"]  # B's rollback
    assert redun_run(work, repos["b"], env, "--second", "b", task="compute") == ["ledger_add:b"]  # A's rollback


@pytest.mark.remote
@pytest.mark.parametrize("backend", ["s3", "gcs", "azure"])
def test_push_and_pull_through_a_named_remote_bucket(backend, recorded, tmp_path, env, request):
    bucket = servers.make_target(backend, tmp_path=tmp_path, server=request.getfixturevalue(f"{backend}_server"))
    repo_a = recorded["a"]
    env_a = dict(env, OBJSTORE_REPO=str(repo_a))
    e = dict(env, OBJSTORE_STORAGE_OPTIONS=json.dumps(bucket.storage_options))
    run(["init", bucket.url], tmp_path, e, check=0)
    options = json.dumps(bucket.storage_options)
    run(["repo", "add", "bucket", bucket.url, "--storage-options", options], tmp_path, env_a, check=0)
    assert f"bucket\t{bucket.url}" in run(["repo", "list"], tmp_path, env_a, check=0).stdout.decode()
    out = run(["push", "bucket"], tmp_path, env_a, check=0).stdout.decode()
    assert f"push: {repo_a} -> bucket ({bucket.url}): " in out
    assert "up to date" in run(["push", "bucket"], tmp_path, env_a, check=0).stdout.decode()
    # --repo NAME wherever a repository is taken: the bucket's log, through the remote's name.
    log = run(["--repo", "bucket", "log", "--json"], tmp_path, env_a, check=0).stdout.decode()
    assert len(json.loads(log)) == 1
    # A real redun run on the bucket: nothing executes.
    from objstore.redun import ObjstoreBackend

    module = load_workflow(recorded["work"] / "wf.py")
    os.chdir(recorded["work"])
    backend_ = ObjstoreBackend(bucket.url, storage_options=bucket.storage_options, index_dir=str(tmp_path / "ix-bucket"))
    assert scheduler_run(module, backend_, tmp_path / "ran-bucket.log") == []
    backend_.close()
    # Pull it back into an empty local repository: cached there too.
    repo_c = tmp_path / "c"
    run(["init", repo_c], tmp_path, env, check=0)
    env_c = dict(env, OBJSTORE_REPO=str(repo_c))
    run(["repo", "add", "origin", bucket.url, "--storage-options", options], tmp_path, env_c, check=0)
    run(["pull", "origin"], tmp_path, env_c, check=0)
    work = recorded["work"]
    assert redun_run(work, redun_ini(work / ".redunC", objstore_url=str(repo_c)), env) == []
    assert "origin" in json.loads((repo_c / "config.json").read_text())["remotes"]
    assert not bucket.fs().exists(f"{bucket.root}/config.json")  # remotes are never pushed


def test_sync_with_memory_repositories_in_one_process(tmp_path, env):
    """memory:// lives in one process: the CLI's main() there, local -> memory -> local."""
    repo_a = tmp_path / "a"
    with Repository.init(str(repo_a), index_dir=tmp_path / "ix-a") as repo:
        ids = []
        for i in range(10):
            payload = model.value.encode("builtins.int", "pickle", str(i).encode())
            ids.append(hashing.hash_text(f"v{i}"))
            repo.add(ids[-1], "value", payload)
    environ = dict(env)
    for argv in (["init", "memory://sync-cli-test/m"], ["init", str(tmp_path / "c")],
                 ["sync", str(repo_a), "memory://sync-cli-test/m"],
                 ["sync", "memory://sync-cli-test/m", str(tmp_path / "c")]):
        out, err = _Out(), _Out()
        assert main(argv, environ=environ, stdout=out, stderr=err) == 0, err.getvalue()
    with Repository.open(str(tmp_path / "c"), index_dir=tmp_path / "ix-c") as repo:
        assert len([g for g in repo.get_many(ids) if g]) == 10


class _Out:
    def __init__(self):
        self.parts = []

    def write(self, s):
        self.parts.append(s)

    def flush(self):
        pass

    def isatty(self):
        return False

    def getvalue(self):
        return "".join(self.parts)


def test_remotes_add_list_remove_and_their_errors(tmp_path, env):
    run(["init"], tmp_path, env, check=0)  # ./.objstore: the local repository
    other = tmp_path / "other"
    run(["init", other], tmp_path, env, check=0)
    assert run(["repo", "add", "origin", "other"], tmp_path, env, check=0).stdout.decode() == f"added remote origin -> {other}\n"
    run(["repo", "add", "bucket", "s3://some-bucket/repo", "--storage-options", '{"anon": true}'], tmp_path, env, check=0)
    listed = run(["repo", "list", "-v"], tmp_path, env, check=0).stdout.decode()
    assert listed == f"bucket\ts3://some-bucket/repo\t(storage options: anon)\norigin\t{other}\n"
    assert json.loads((tmp_path / ".objstore" / "config.json").read_text())["remotes"]["origin"] == {"url": str(other)}
    assert_one_line_error(run(["repo", "add", "origin", "/x"], tmp_path, env), 2, "remote 'origin' already exists")
    assert_one_line_error(run(["repo", "add", "bad/name", "/x"], tmp_path, env), 2, "not a valid remote name")
    assert_one_line_error(run(["repo", "add", "x", "ftp://host/repo"], tmp_path, env), 2, "unsupported url scheme 'ftp'")
    assert_one_line_error(run(["repo", "add", "x", "/x", "--storage-options", "[1]"], tmp_path, env), 2, "must be a JSON object")
    assert_one_line_error(run(["repo", "remove", "nosuch"], tmp_path, env), 2, "no remote named 'nosuch'")
    # The name works wherever a repository is taken.
    assert run(["--repo", "origin", "log"], tmp_path, env, check=0).stdout == b"No executions.\n"
    assert "up to date" in run(["push", "origin"], tmp_path, env, check=0).stdout.decode()
    assert run(["repo", "remove", "bucket"], tmp_path, env, check=0).stdout == b"removed remote bucket\n"
    assert run(["repo", "list"], tmp_path, env, check=0).stdout.decode() == f"origin\t{other}\n"
    # Remotes stay out of the copy.
    run(["push", "origin"], tmp_path, env, check=0)
    assert not (other / "config.json").exists()
    help_ = run(["repo", "--help"], tmp_path, env, check=0).stdout.decode()
    assert "never copies" in help_ and "add" in help_ and "remove" in help_


def test_bad_inputs_are_one_line_errors(tmp_path, env, request):
    run(["init"], tmp_path, env, check=0)
    (tmp_path / "plain").mkdir()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "objstore.json").write_text('{"format": "something-else"}')
    newer = tmp_path / "newer"
    run(["init", newer], tmp_path, env, check=0)
    doc = json.loads((newer / "objstore.json").read_text())
    (newer / "objstore.json").write_text(json.dumps(dict(doc, version=[99, 0])))
    cases = [
        (["push", str(tmp_path / "missing")], 1, "destination", "is not an objstore repository", "objstore init"),
        (["push", str(tmp_path / "plain")], 1, "is not an objstore repository"),
        (["push", str(tmp_path / "foreign")], 1, "says format 'something-else'"),
        (["push", str(newer)], 1, "format version 99.0 is newer than this objstore supports"),
        (["pull", "nosuch"], 2, "'nosuch' is neither a remote of this repository nor a path"),
        (["push", "ftp://host/x"], 2, "unsupported url scheme 'ftp'"),
        (["sync", str(tmp_path / "missing"), str(tmp_path / ".objstore")], 1, "source", "not an objstore repository"),
        (["sync", str(tmp_path / ".objstore"), str(tmp_path / ".objstore")], 2, "the same repository"),
    ]
    for argv, code, *needles in cases:
        assert_one_line_error(run(argv, tmp_path, env), code, *needles)
    for name in ("push", "pull", "sync", "export", "import", "migrate-redun"):
        assert run([name, "--help"], tmp_path, env, check=0).stdout.startswith(b"usage: objstore " + name.encode())


@pytest.mark.remote
def test_refused_credentials_are_one_line(tmp_path, env, monkeypatch):
    """A bucket that refuses the given keys (moto with IAM checks on: its documented switch,
    read when the server starts, so this test starts a server of its own)."""
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")
    server = servers.start_s3(tmp_path)
    try:
        run(["init"], tmp_path, env, check=0)
        options = json.dumps(servers.s3_options(server))
        run(["repo", "add", "bucket", "s3://locked-bucket/repo", "--storage-options", options], tmp_path, env, check=0)
        for argv in (["push", "bucket"], ["pull", "bucket"], ["--repo", "bucket", "export"]):
            line = assert_one_line_error(run(argv, tmp_path, env), 1)
            assert "locked-bucket/repo" in line and "Access Key Id you provided does not exist" in line, line
    finally:
        server.stop()


def _many_packs(url: str, index_dir: Path, flushes: int, per: int) -> None:
    with Repository.init(url, index_dir=index_dir) as repo:
        for f in range(flushes):
            for i in range(per):
                repo.add(hashing.hash_text(f"{f}-{i}"), "value",
                         model.value.encode("builtins.str", "pickle", f"{f}-{i}".encode() * 50))
            repo.flush()


def test_a_killed_push_resumes_copying_only_what_is_missing(tmp_path, env):
    src = tmp_path / "src"
    _many_packs(str(src), tmp_path / "ix", flushes=300, per=10)
    total_files = list_files(open_endpoint(str(src))).files
    for attempt in range(5):
        dst = tmp_path / f"dst{attempt}"
        run(["init", dst], tmp_path, env, check=0)
        proc = subprocess.Popen([str(OBJSTORE), "sync", str(src), str(dst)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        packs = dst / "objects" / "pack"
        while proc.poll() is None and not (packs.is_dir() and sum(n.endswith(".pack") for n in os.listdir(packs)) >= 20):
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL:
            break
    else:
        pytest.fail("the push always finished before it could be killed")
    side = open_endpoint(str(dst))
    partial = list_files(side)
    assert 0 < len(partial.packs) < 300
    # No journal segment names an object that is not there.
    from test_sync import segments_complete

    class T:
        url, storage_options = str(dst), None
    assert segments_complete(T) == []
    out = run(["sync", str(src), str(dst)], tmp_path, env, check=0).stdout.decode()
    copied_packs = int(out.split("(")[1].split(" packs")[0])
    assert copied_packs == 300 - len(partial.packs), out  # only what was missing
    assert list_files(open_endpoint(str(dst))).files == total_files
    assert "up to date" in run(["sync", str(src), str(dst)], tmp_path, env, check=0).stdout.decode()


def test_progress_bar_on_a_terminal_and_nothing_on_a_pipe(tmp_path, env):
    src = tmp_path / "src"
    _many_packs(str(src), tmp_path / "ix", flushes=40, per=5)
    for i in (1, 2):
        run(["init", tmp_path / f"dst{i}"], tmp_path, env, check=0)
    piped = run(["sync", src, tmp_path / "dst1"], tmp_path, env, check=0)
    assert piped.stderr == b""  # nothing but the summary, on stdout
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(OBJSTORE), "sync", str(src), str(tmp_path / "dst2")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    drawn = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    proc.wait(60)
    os.close(master)
    assert proc.returncode == 0
    assert b"sync: objects" in drawn and b"objects" in drawn and b"B/s" in drawn, drawn[-500:]


def test_a_remote_name_is_looked_up_in_the_repository_repo_names(tmp_path, env):
    """`objstore --repo A repo add NAME URL` keeps NAME in A; `objstore --repo A push NAME` must
    push to A's NAME, not to a same-named remote of the local repository (or fail to find it)."""
    run(["init"], tmp_path, env, check=0)  # ./.objstore, the local repository
    a, theirs, ours = tmp_path / "a", tmp_path / "theirs", tmp_path / "ours"
    for where in (a, theirs, ours):
        run(["init", where], tmp_path, env, check=0)
    run(["repo", "add", "backup", str(ours)], tmp_path, env, check=0)  # the local one's "backup"
    run(["--repo", str(a), "repo", "add", "backup", str(theirs)], tmp_path, env, check=0)
    assert run(["--repo", str(a), "repo", "list"], tmp_path, env, check=0).stdout.decode() == f"backup\t{theirs}\n"
    done = run(["--repo", str(a), "push", "backup", "--dry-run"], tmp_path, env, check=0).stdout.decode()
    assert str(theirs) in done and str(ours) not in done, done
    # A name only the local repository knows still resolves (--repo A has no such remote).
    run(["repo", "add", "mine", str(ours)], tmp_path, env, check=0)
    assert str(ours) in run(["--repo", str(a), "push", "mine", "--dry-run"], tmp_path, env, check=0).stdout.decode()
    assert_one_line_error(run(["--repo", str(a), "push", "nosuch"], tmp_path, env), 2, "neither a remote")
