"""The command line end to end, in subprocesses: init, cat-object, reindex, discovery, errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from objstore import hashing, model
from objstore.cli import Context, command_modules, discover_repo, main
from objstore.cli._progress import Progress
from objstore.repo import Repository, default_index_dir

OBJSTORE = Path(sys.executable).with_name("objstore")


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    e = {k: v for k, v in os.environ.items() if not k.startswith("OBJSTORE_") and k != "XDG_CACHE_HOME"}
    e["HOME"] = str(home)
    return e


def run(args, cwd, env, *, module=False, check=None):
    cmd = [sys.executable, "-m", "objstore.cli", *args] if module else [str(OBJSTORE), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=120)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def assert_one_line_error(proc, code, match):
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    err = proc.stderr.decode()
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("objstore: error: ") and match in last, err


def library_repo(url: str, env) -> Repository:
    """The repository as the CLI would open it (same default index location)."""
    return Repository.open(url, index_dir=default_index_dir(url, Path(env["HOME"]) / ".cache" / "objstore"))


@pytest.fixture
def populated(tmp_path, env):
    run(["init"], tmp_path, env, check=0)
    url = str(tmp_path / ".objstore")
    with library_repo(url, env) as repo:
        value_payload = model.value.encode("builtins.bytes", "pickle", b"\x00\xffraw")
        value_id = hashing.hash_text("v")
        tag_payload = model.tag.KIND.encode("Value", value_id, "env", {"b": 2, "a": [1]}, [])
        tag_id = model.tag.tag_hash_of(json.loads(tag_payload))
        blob_id = hashing.hash_text("blob")
        blob = bytes(range(256)) * 3
        repo.add(value_id, "value", value_payload)
        repo.add(tag_id, "tag", tag_payload)
        repo.add(blob_id, "blob", blob)
        repo.set_eval_head(hashing.hash_text("e"), value_id)
    return {
        "url": url,
        "value": (value_id, value_payload),
        "tag": (tag_id, tag_payload),
        "blob": (blob_id, blob),
    }


def test_init_creates_dot_objstore_and_index_outside(tmp_path, env):
    proc = run(["init"], tmp_path, env, check=0)
    doc = json.loads((tmp_path / ".objstore" / "objstore.json").read_text())
    assert doc["format"] == "objstore"
    assert doc["repo_id"] in proc.stdout.decode() and "Initialized" in proc.stdout.decode()
    index_root = Path(env["HOME"]) / ".cache" / "objstore" / "index"
    assert len(list(index_root.iterdir())) == 1
    assert not list((tmp_path / ".objstore").rglob("*.mdb"))  # never inside the repository
    assert_one_line_error(run(["init"], tmp_path, env), 1, "already exists")


def test_init_explicit_url_and_index_dir(tmp_path, env):
    run(["init", str(tmp_path / "elsewhere"), "--index-dir", str(tmp_path / "myix")], tmp_path, env, check=0)
    assert (tmp_path / "elsewhere" / "objstore.json").is_file()
    assert (tmp_path / "myix" / "data.mdb").is_file()
    out = run(["--repo", str(tmp_path / "elsewhere"), "--index-dir", str(tmp_path / "myix"), "reindex"],
              tmp_path, env, check=0)
    assert b"reindexed 0 journal segments" in out.stdout


def test_init_redun_makes_redun_run_record_into_objstore(tmp_path, env):
    ini = tmp_path / ".redun" / "redun.ini"
    ini.parent.mkdir()
    ini.write_text("[executors.default]\ntype = local\nmax_workers = 2\n")  # kept, not clobbered
    out = run(["init", "--redun"], tmp_path, env, check=0).stdout.decode()
    assert "redun.ini" in out
    text = ini.read_text()
    assert "setup_scheduler = objstore.redun::setup_scheduler" in text
    assert f"objstore_url = {tmp_path / '.objstore'}" in text and "max_workers = 2" in text
    (tmp_path / "wf.py").write_text(
        "from redun import task\nredun_namespace = 'clitest'\n"
        "@task()\ndef add(a: int, b: int) -> int:\n    return a + b\n"
        "@task()\ndef main(x: int = 1) -> int:\n    return add(add(x, 2), 3)\n")
    redun = Path(sys.executable).with_name("redun")
    for expect_cached in (False, True):
        proc = subprocess.run([str(redun), "run", "wf.py", "main", "--x", "5"], cwd=tmp_path, env=env,
                              capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert proc.stdout.decode().strip().splitlines()[-1] == "10"
        assert ("Cached Job" in proc.stderr.decode()) is expect_cached
    assert not (tmp_path / ".redun" / "redun.db").exists()  # sqlite was never used
    assert any((tmp_path / ".objstore" / "objects").iterdir())
    # Running it again on an existing repository only rewrites the redun config.
    assert "existing" in run(["init", "--redun"], tmp_path, env, check=0).stdout.decode()


def test_cat_object_modes(tmp_path, env, populated):
    tag_id, tag_payload = populated["tag"]
    out = run(["cat-object", tag_id], tmp_path, env, check=0).stdout
    assert json.loads(out) == json.loads(tag_payload)
    assert out.decode().startswith("{\n  ") and out != tag_payload  # pretty-printed
    assert run(["cat-object", "-t", tag_id], tmp_path, env, check=0).stdout == b"tag\n"
    assert run(["cat-object", "-s", tag_id], tmp_path, env, check=0).stdout == f"{len(tag_payload)}\n".encode()
    assert run(["cat-object", "--raw", tag_id], tmp_path, env, check=0).stdout == tag_payload
    blob_id, blob = populated["blob"]
    assert run(["cat-object", blob_id], tmp_path, env, check=0).stdout == blob  # raw bytes as-is
    value_id, value_payload = populated["value"]
    assert run(["cat-object", value_id], tmp_path, env, module=True, check=0).stdout == value_payload
    assert run(["cat-object", "--kind", "value", value_id], tmp_path, env, check=0).stdout == value_payload
    assert_one_line_error(run(["cat-object", "--kind", "tag", value_id], tmp_path, env), 1, value_id)


def test_cat_object_prefix_and_errors(tmp_path, env, populated):
    blob_id, blob = populated["blob"]
    assert run(["cat-object", blob_id[:10]], tmp_path, env, check=0).stdout == blob
    assert_one_line_error(run(["cat-object", "0" * 40], tmp_path, env), 1, "0" * 40)
    assert_one_line_error(run(["cat-object", "../../etc/passwd"], tmp_path, env), 1, "not an object id")
    assert_one_line_error(run(["cat-object", "ffff"], tmp_path, env), 1, "no object with id prefix")
    # two ids sharing a prefix
    with library_repo(populated["url"], env) as repo:
        a, b = "abcd" + "0" * 36, "abcd" + "1" * 36
        repo.add(a, "blob", b"a")
        repo.add(b, "blob", b"b")
    assert_one_line_error(run(["cat-object", "abcd"], tmp_path, env), 1, "ambiguous")


def test_discovery_from_a_subdirectory_and_env_and_flag(tmp_path, env, populated):
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    blob_id, blob = populated["blob"]
    assert run(["cat-object", blob_id], deep, env, check=0).stdout == blob
    elsewhere = tmp_path.parent / f"elsewhere-{uuid.uuid4().hex}"
    elsewhere.mkdir()
    assert_one_line_error(run(["cat-object", blob_id], elsewhere, env), 1, "not in an objstore repository")
    assert run(["--repo", populated["url"], "cat-object", blob_id], elsewhere, env, check=0).stdout == blob
    e2 = dict(env, OBJSTORE_REPO=populated["url"])
    assert run(["cat-object", "-t", blob_id], elsewhere, e2, check=0).stdout == b"blob\n"
    assert discover_repo(deep) == tmp_path / ".objstore"


def test_reindex_journal_and_full_scan(tmp_path, env, populated):
    out = run(["reindex"], tmp_path, env, check=0).stdout.decode()
    assert out.startswith("reindexed 1 journal segments")
    out = run(["reindex", "--full-scan"], tmp_path, env, check=0).stdout.decode()
    # A repository on a local disk keeps its eval heads in the journal only (no evals/ files).
    assert "1 journal segments, 3 objects, 0 eval heads" in out
    assert not (Path(populated["url"]) / "evals").exists()
    with library_repo(populated["url"], env) as repo:
        assert repo.index.get("objects", populated["blob"][0]) == "blob"
        assert repo.index.get("evals", hashing.hash_text("e")) == populated["value"][0]


def test_usage_and_environment_errors(tmp_path, env, populated):
    proc = run([], tmp_path, env)
    assert proc.returncode == 2 and b"usage:" in proc.stderr
    assert run(["cat-object"], tmp_path, env).returncode == 2
    assert run(["frobnicate"], tmp_path, env).returncode == 2
    assert run(["cat-object", "-t", "-s", "ab" * 20], tmp_path, env).returncode == 2
    assert_one_line_error(run(["--repo", "ftp://host/x", "reindex"], tmp_path, env), 2, "unsupported url scheme")
    bad = dict(env, OBJSTORE_STORAGE_OPTIONS="{nope")
    assert_one_line_error(run(["reindex"], tmp_path, bad), 2, "OBJSTORE_STORAGE_OPTIONS")
    assert b"usage:" in run(["--help"], tmp_path, env, check=0).stdout


def test_format_refusal_is_one_line(tmp_path, env):
    repo = tmp_path / ".objstore"
    repo.mkdir()
    (repo / "objstore.json").write_text(json.dumps(
        {"format": "objstore", "version": [4, 0], "repo_id": str(uuid.uuid4())}))
    assert_one_line_error(run(["reindex"], tmp_path, env), 1, "4.0 is newer")


@pytest.mark.parametrize("target", ["s3"], indirect=True)
def test_remote_repository_through_env_storage_options(target, tmp_path, env):
    e = dict(env, OBJSTORE_STORAGE_OPTIONS=json.dumps(target.storage_options))
    run(["init", target.url], tmp_path, e, check=0)
    e["OBJSTORE_REPO"] = target.url
    ix = tmp_path / "ix"
    with Repository.open(target.url, target.storage_options, index_dir=ix) as repo:
        repo.add(hashing.hash_text("r"), "blob", b"remote bytes")
    assert run(["cat-object", hashing.hash_text("r")], tmp_path, e, check=0).stdout == b"remote bytes"
    assert b"1 journal segments, 1 objects" in run(["reindex", "--full-scan"], tmp_path, e, check=0).stdout


@pytest.mark.parametrize("target", ["s3"], indirect=True)
def test_upgrade_of_a_shared_repository_is_explicit(target, tmp_path, env):
    e = dict(env, OBJSTORE_STORAGE_OPTIONS=json.dumps(target.storage_options), OBJSTORE_REPO=target.url)
    run(["init"], tmp_path, e, check=0)
    fs, path = target.fs(), f"{target.root}/objstore.json"
    doc = json.loads(fs.cat_file(path))
    fs.pipe_file(path, json.dumps(dict(doc, version=[1, 0])).encode())
    check = run(["upgrade", "--check"], tmp_path, e, check=0).stdout.decode()
    assert "format 1.0: `objstore upgrade` would make it 3.0" in check and "1.0 -> 2.0" in check
    assert json.loads(fs.cat_file(path))["version"] == [1, 0]  # opening it changed nothing
    assert run(["upgrade"], tmp_path, e, check=0).stdout.endswith(b"upgraded repository format 1.0 -> 3.0\n")
    after = json.loads(fs.cat_file(path))
    assert after["version"] == [3, 0] and after["upgraded_from"] == [1, 0] and after["repo_id"] == doc["repo_id"]
    assert b"3.0 (upgraded from 1.0): up to date" in run(["upgrade"], tmp_path, e, check=0).stdout


def test_local_repository_upgrades_on_open(tmp_path, env):
    run(["init"], tmp_path, env, check=0)
    path = tmp_path / ".objstore" / "objstore.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), version=[1, 0])))
    assert b"3.0 (upgraded from 1.0): up to date" in run(["upgrade", "--check"], tmp_path, env, check=0).stdout
    assert json.loads(path.read_text())["version"] == [3, 0]


def test_in_process_main_and_command_discovery(tmp_path, env):
    modules = command_modules()
    assert modules[:6] == ["objstore.cli.repository", "objstore.cli.log", "objstore.cli.tag", "objstore.cli.graph",
                           "objstore.cli.repl", "objstore.cli.objects"]
    assert "objstore.cli._text" not in modules and "objstore.cli.completion" in modules
    assert len(modules) == len(set(modules))
    out, err = io.StringIO(), io.StringIO()
    environ = dict(env, OBJSTORE_REPO=str(tmp_path / "r"))
    assert main(["init"], environ=environ, stdout=out, stderr=err) == 0
    assert str(tmp_path / "r") in out.getvalue()
    assert main(["init"], environ=environ, stdout=out, stderr=err) == 1
    assert err.getvalue().startswith("objstore: error: a repository already exists")


def _top_level_commands(parser) -> set[str]:
    return {name for action in parser._subparsers._group_actions for name in action.choices}


def test_a_command_line_builds_only_its_commands_parser():
    import argparse
    import importlib

    from objstore.cli import COMMANDS, build_parser, command_of

    registered = {}
    for module in command_modules():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        registered.update(dict.fromkeys(sub.choices, module.rsplit(".", 1)[1]))
    assert COMMANDS == registered  # every command, with the module that registers it
    everything = _top_level_commands(build_parser())
    assert everything == set(COMMANDS)
    assert _top_level_commands(build_parser(["--repo", "r", "export", "-o", "x"])) == {"export", "import", "migrate-redun"}
    for argv in (["--index-dir=d", "--re", "sync", "log", "EXEC"], ["--r", "x", "log"], ["--ind", "d", "log", "-h"]):
        assert _top_level_commands(build_parser(argv)) == {"log"}, argv  # argparse's abbreviations too
    for argv in ([], ["-h", "log"], ["--version"], ["--repo"], ["nonesuch"], ["completion", "bash"], ["--", "log"]):
        assert _top_level_commands(build_parser(argv)) == everything, argv
    assert command_of(["--repo", "log", "sync"]) == "sync"
    assert command_of(["--repo=log", "tag", "list"]) == "tag"


def test_help_and_errors_still_list_every_command(tmp_path, env):
    out = run(["-h"], tmp_path, env, check=0).stdout.decode()
    assert all(name in out for name in ("export", "sync", "cat-object", "fsck", "completion"))
    err = run(["--repo", str(tmp_path), "nonesuch"], tmp_path, env, check=2).stderr.decode()
    assert "invalid choice" in err and "'export'" in err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_on_a_terminal_and_nothing_on_a_pipe():
    pipe = io.StringIO()
    quiet = Progress("reindex", pipe)
    quiet("journal", 5)
    quiet.phase("objects", 3, 1 << 20)
    quiet.advance(3, 1 << 20, 40)
    quiet.close()
    assert pipe.getvalue() == ""  # a pipe or a file gets no bar at all

    term = _Terminal()
    with Progress("reindex", term, interval=0) as p:  # the repository's progress(phase, count) callback
        p("journal", 5)
        p("journal", 9)
    assert "reindex: journal" in term.getvalue() and "9" in term.getvalue()
    term = _Terminal()
    with Progress("push", term, interval=0) as p:  # a copy's reporter: bytes, objects and their rate
        p.phase("objects", 4, 4 << 20)
        p.advance(4, 4 << 20, 120)
    out = term.getvalue()
    assert "push: objects" in out and "120 objects" in out and "B/s" in out and "4.00M" in out
    assert isinstance(Context, type)


def test_the_cli_and_a_redun_process_share_one_index_under_xdg_cache_home(tmp_path):
    """One rule for the index directory: with $XDG_CACHE_HOME set, `redun run` (the adapter)
    and `objstore log` (the CLI) open the same index there, and nothing under ~/.cache."""
    from maint_helpers import cli, make_env, redun_project, redun_run

    cache = tmp_path / "xdg"
    env = make_env(tmp_path, XDG_CACHE_HOME=str(cache))
    redun_project(tmp_path, env)
    redun_run(tmp_path, env, "--x", "2")
    listed = cli(["log"], tmp_path, env, check=0).stdout.decode()
    assert listed.count("Exec ") == 1
    indexes = [p for p in (cache / "objstore").rglob("data.mdb")]
    assert len(indexes) == 1, indexes
    assert not (tmp_path / "home" / ".cache" / "objstore").exists()


def test_a_local_repository_never_imports_fsspec(tmp_path, env):
    """A local repository's reads and writes go through os: its commands start without fsspec
    (and the asyncio, importlib.metadata... it brings), a third of a small command's start-up."""
    repo = tmp_path / "repo"
    probe = ("import sys, runpy; sys.argv = ['objstore', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('objstore.cli', run_name='__main__')\n"
             "finally:\n    print('fsspec' in sys.modules, 'asyncio' in sys.modules, file=sys.stderr)\n")
    stream = tmp_path / "out.jsonl"
    for args in (["init", str(repo)], ["--repo", str(repo), "export", "-o", str(stream)],
                 ["--repo", str(repo), "import", str(stream)], ["--repo", str(repo), "log"]):
        proc = subprocess.run([sys.executable, "-c", probe, *args], cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert proc.returncode == 0, (args, proc.stderr)
        assert proc.stderr.decode().strip().splitlines()[-1] == "False False", (args, proc.stderr)
