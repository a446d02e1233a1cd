"""Format versions through the command line: db info / versions / upgrade / downgrade, every
migration in both directions on a populated repository, refusals, and an old-minor client (the
objstore of the commit before format 2.1, run from its own source tree) sharing a bucket with
this one through the upgrade."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from maint_helpers import ROOT, cli, library, make_env, one_line_error, out, populate, value

from objstore import codec, layout
from objstore import format as fmt

# The last commit whose objstore wrote format 2.0 (before this issue): the "old-minor" client.
OLD_COMMIT = "001e4b6"
KEY_TABLES = ("objects", "packed", "value_store", "evals", "value_type", "subvalues")


def key_snapshot(repo) -> dict[str, list]:
    return {t: sorted(repo.index.scan(t)) for t in KEY_TABLES}


def read_doc(repo_dir: Path) -> dict:
    return json.loads((repo_dir / "objstore.json").read_text())


def test_db_info_and_versions_say_where_a_repository_stands(tmp_path):
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    info = out(cli(["db", "info"], tmp_path, env, check=0))
    assert f"format:        {fmt.show(fmt.FORMAT_VERSION)}" in info and "compatible:    yes: up to date" in info
    assert "reads 1.0 to 3.x" in info and "on open" in info
    doc = json.loads(out(cli(["db", "info", "--json"], tmp_path, env, check=0)))
    assert doc["version"] == "3.0" and doc["compatible"] and doc["settings"]["pack"] is True
    versions = out(cli(["db", "versions"], tmp_path, env, check=0))
    for v in fmt.VERSIONS:
        assert f" {fmt.show(v.version)}  " in versions
    assert "* 3.0" in versions and "journal checkpoints" in versions and "value store" in versions


def test_a_newer_major_is_refused_in_one_line_and_a_newer_minor_is_used(tmp_path):
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    repo_dir = tmp_path / ".objstore"
    doc = read_doc(repo_dir)
    (repo_dir / "objstore.json").write_text(json.dumps(dict(doc, version=[4, 0])))
    info = cli(["db", "info"], tmp_path, env)
    assert info.returncode == 1 and "compatible:    NO" in out(info)
    for args in (["log"], ["fsck"], ["gc"], ["reindex"], ["db", "upgrade"], ["config"]):
        one_line_error(cli(args, tmp_path, env), 1, "4.0 is newer than this objstore supports")
    (repo_dir / "objstore.json").write_text(json.dumps(dict(doc, version=[3, 9])))
    assert "a newer minor of major 3" in out(cli(["db", "info"], tmp_path, env, check=0))
    with library(str(repo_dir), env) as repo:
        item = value("written at 3.9")
        repo.add(*item)
    assert cli(["cat-object", "--raw", item[0]], tmp_path, env, check=0).stdout == item[2]
    assert read_doc(repo_dir)["version"] == [3, 9]  # never "upgraded" down to 3.0
    one_line_error(cli(["db", "downgrade", "2.1"], tmp_path, env), 1, "3.9 is newer than this objstore knows")


def test_bad_version_arguments_are_usage_errors(tmp_path):
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    one_line_error(cli(["db", "downgrade", "abc"], tmp_path, env), 2, "not a format version")
    one_line_error(cli(["db", "downgrade", "3.0"], tmp_path, env), 2, "is not below")
    one_line_error(cli(["db", "downgrade", "0.9"], tmp_path, env), 1, "unknown format version 0.9")
    one_line_error(cli(["db", "upgrade", "7.2"], tmp_path, env), 1, "unknown format version 7.2")


def _check_everything_reads(url, env, made, **kw):
    with library(url, env, migrate=False, auto_compact=False, **kw) as repo:
        for oid, kind, payload in made:
            assert repo.get(oid) == (kind, payload)
        return key_snapshot(repo), fmt.version_of(repo.format)


def test_every_migration_both_ways_on_a_populated_repository(tmp_path):
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    repo_dir = tmp_path / ".objstore"
    url = str(repo_dir)
    cli(["config", "value_store_url", str(tmp_path / "values")], tmp_path, env, check=0)
    cli(["config", "value_store_min_size", "5000"], tmp_path, env, check=0)
    with library(url, env) as repo:
        made = populate(repo, flushes=5)
        big = [value(f"big {i}", size=8000) for i in range(3)]
        for item in big:
            repo.add(*item)
        repo.flush()
        made += big
    cli(["gc", "--grace", "0"], tmp_path, env, check=0)  # a checkpoint, its segments retired
    assert [n for n in os.listdir(repo_dir / "journal")][0].endswith(".ckpt")
    assert len(os.listdir(tmp_path / "values" / "objects")) >= 1
    snap, _ = _check_everything_reads(url, env, made)
    assert len(snap["value_store"]) == 3 and snap["packed"]

    # 3.0 -> 2.1: the checkpoint becomes ordinary segments.
    text = out(cli(["db", "downgrade", "2.1"], tmp_path, env, check=0))
    assert "3.0 -> 2.1: expanded 1 checkpoint(s)" in text
    assert not any(n.endswith(".ckpt") for n in os.listdir(repo_dir / "journal"))
    assert read_doc(repo_dir)["version"] == [2, 1] and read_doc(repo_dir)["settings"]["value_store_url"]
    env2 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "ix-2.1"))
    assert _check_everything_reads(url, env2, made) == (snap, (2, 1))

    # 2.1 -> 2.0: values come home from the value store; the settings go.
    text = out(cli(["db", "downgrade", "2.0"], tmp_path, env, check=0))
    assert "2.1 -> 2.0: copied 3 values" in text
    assert "settings" not in read_doc(repo_dir)
    for oid, _, _ in big:
        assert (repo_dir / layout.object_key(oid)).is_file()
    env3 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "ix-2.0"))
    snap20, version = _check_everything_reads(url, env3, made)
    assert version == (2, 0) and snap20["value_store"] == [] and snap20["objects"] == snap["objects"]

    # 2.0 -> 1.0: every packed object is a loose file; a reader that knows no packs reads all.
    text = out(cli(["db", "downgrade", "1.0"], tmp_path, env, check=0))
    assert "2.0 -> 1.0: unpacked" in text
    for oid, kind, payload in made:
        assert codec.decode((repo_dir / layout.object_key(oid)).read_bytes(), object_id=oid) == (kind, payload)
    env4 = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "ix-1.0"))
    snap10, version = _check_everything_reads(url, env4, made)
    assert version == (1, 0) and snap10["packed"] == [] and snap10["objects"] == snap["objects"]

    # And back up, one step at a time (db upgrade V), then to the latest.
    for target, check in (("2.0", "1.0 -> 2.0"), ("2.1", "2.0 -> 2.1"), ("3.0", "2.1 -> 3.0: journal compacted")):
        text = out(cli(["db", "upgrade", target], tmp_path, env, check=0))
        assert check in text
        assert read_doc(repo_dir)["version"] == list(fmt.parse_version(target))
        e = dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / f"ix-up-{target}"))
        snap_up, _ = _check_everything_reads(url, e, made)
        assert snap_up["objects"] == snap["objects"]
    assert any(n.endswith(".ckpt") for n in os.listdir(repo_dir / "journal"))
    assert "up to date" in out(cli(["db", "upgrade"], tmp_path, env, check=0))
    assert cli(["fsck"], tmp_path, env).returncode == 0


def test_a_downgrade_below_what_the_data_needs_is_refused_and_loses_nothing(tmp_path):
    env = make_env(tmp_path)
    cli(["init"], tmp_path, env, check=0)
    repo_dir = tmp_path / ".objstore"
    cli(["config", "value_store_url", "values"], tmp_path, env, check=0)  # relative: made absolute
    assert read_doc(repo_dir)["settings"]["value_store_url"] == str(tmp_path / "values")
    cli(["config", "value_store_min_size", "1000"], tmp_path, env, check=0)
    with library(str(repo_dir), env) as repo:
        kept, lost = value("kept", size=2000), value("lost", size=2000)
        repo.add(*kept)
        repo.add(*lost)
    os.remove(tmp_path / "values" / layout.object_key(lost[0]))
    assert "3.0 -> 2.1" in out(cli(["db", "downgrade", "2.0", "--check"], tmp_path, env, check=0))
    line = one_line_error(cli(["db", "downgrade", "2.0"], tmp_path, env), 1, "cannot downgrade below 2.1")
    assert lost[0] in line and "stays at 2.1" in line
    assert read_doc(repo_dir)["version"] == [2, 1]  # the step that could run did; nothing lost
    with library(str(repo_dir), env, migrate=False) as repo:
        assert repo.get(kept[0]) == kept[1:]
    one_line_error(cli(["cat-object", lost[0]], tmp_path, dict(env, OBJSTORE_INDEX_DIR=str(tmp_path / "i2"))),
                   1, "value store")


# -- an old-minor client and a new-minor one on one bucket --------------------------------------------

OLD_CLIENT = textwrap.dedent('''
    import json, sys
    import objstore, objstore.format
    from objstore import hashing, model
    from objstore.repo import Repository
    url, options, index_dir, action, *names = sys.argv[1:]
    out = {"objstore": objstore.__file__, "writes": list(objstore.format.FORMAT_VERSION)}
    try:
        repo = Repository.open(url, json.loads(options), index_dir=index_dir, create=action == "write")
    except Exception as exc:
        print(json.dumps(dict(out, error=f"{type(exc).__name__}: {exc}"))); sys.exit(0)
    with repo:
        if action == "write":
            for name in names:
                repo.add(hashing.hash_text("value:" + name), "value",
                         model.value.encode("builtins.bytes", "pickle", name.encode()))
        else:
            got = {}
            for name in names:
                oid = hashing.hash_text("value:" + name)
                try:
                    kind, payload = repo.get(oid)
                    got[name] = model.value.split(payload)[1].decode()
                except KeyError:
                    got[name] = None
            out["read"] = got
        out["version"] = repo.format["version"]
    print(json.dumps(out))
''')


@pytest.fixture(scope="session")
def old_tree(tmp_path_factory):
    """The objstore source of OLD_COMMIT (format 2.0), unpacked from this repository's history."""
    dest = tmp_path_factory.mktemp("objstore-2.0")
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT, "objstore", "refs"],
                                 capture_output=True, check=True, timeout=120).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"this test needs the git history (commit {OLD_COMMIT}) of the checkout: {exc}", pytrace=False)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    assert "FORMAT_VERSION: tuple[int, int] = (2, 0)" in (dest / "objstore" / "format.py").read_text()
    return dest


def run_old(old_tree, target, index_dir, action, *names):
    env = dict(os.environ, PYTHONPATH=str(old_tree))
    proc = subprocess.run([sys.executable, "-c", OLD_CLIENT, target.url, json.dumps(target.storage_options),
                           str(index_dir), action, *names], capture_output=True, env=env, timeout=120,
                          cwd=old_tree)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    doc = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert doc["objstore"].startswith(str(old_tree)) and doc["writes"] == [2, 0]
    return doc


@pytest.mark.parametrize("target", ["s3"], indirect=True)
def test_an_old_minor_client_and_a_new_one_share_a_bucket_through_the_upgrade(target, tmp_path, old_tree):
    env = make_env(tmp_path, OBJSTORE_REPO=target.url, OBJSTORE_STORAGE_OPTIONS=json.dumps(target.storage_options))
    old_ix = tmp_path / "old-index"
    # The old objstore creates the bucket's repository: format 2.0.
    assert run_old(old_tree, target, old_ix, "write", "old-1")["version"] == [2, 0]
    cli(["log"], tmp_path, env, check=0)
    with _new(target, tmp_path) as new:
        assert new.format["version"] == [2, 0]  # shared: a new client does not migrate it
        assert not new.checkpoints and new._value_store_target() is None
        new.add(*value("new-1"))
    assert run_old(old_tree, target, old_ix, "read", "old-1", "new-1")["read"] == {"old-1": "old-1", "new-1": "new-1"}
    one_line_error(cli(["config", "value_store_url", str(tmp_path / "vs")], tmp_path, env), 1, "need format 2.1")

    # The minor upgrade, with the old client still running: nothing it does breaks.
    assert "2.0 -> 2.1" in out(cli(["db", "upgrade", "2.1"], tmp_path, env, check=0))
    cli(["config", "value_store_url", str(tmp_path / "vs")], tmp_path, env, check=0)
    cli(["config", "value_store_min_size", "100"], tmp_path, env, check=0)
    assert run_old(old_tree, target, old_ix, "write", "old-2")["version"] == [2, 1]
    big = "new-big-" + "x" * 200
    with _new(target, tmp_path) as new:
        new.add(*value("new-2"))
        new.add(*value(big))
    assert os.listdir(tmp_path / "vs" / "objects")  # the big value went to the value store
    got = run_old(old_tree, target, tmp_path / "old-fresh", "read", "old-1", "old-2", "new-2", big)["read"]
    # The old client reads everything it can; the value at the second URL is a miss, not a crash.
    assert got == {"old-1": "old-1", "old-2": "old-2", "new-2": "new-2", big: None}
    with _new(target, tmp_path, "new-fresh") as new:
        for name in ("old-1", "old-2", "new-2", big):
            assert new.get(value(name)[0]) == value(name)[1:]

    # The major upgrade: the old client is refused in one line, never lets it write.
    cli(["db", "upgrade"], tmp_path, env, check=0)
    cli(["gc", "--grace", "0"], tmp_path, env, check=0)
    assert "3.0 is newer than this objstore supports" in run_old(old_tree, target, tmp_path / "old-3", "read", "x")["error"]
    old_cli = subprocess.run([sys.executable, "-m", "objstore.cli", "log"], cwd=old_tree, capture_output=True,
                             env=dict(env, PYTHONPATH=str(old_tree)), timeout=120)  # fmt: skip
    one_line_error(old_cli, 1, "3.0 is newer than this objstore supports")
    with _new(target, tmp_path, "new-3") as new:
        for name in ("old-1", "old-2", "new-2", big):
            assert new.get(value(name)[0]) == value(name)[1:]


def _new(target, tmp_path, ix="new-index"):
    from objstore.repo import Repository

    return Repository.open(target.url, target.storage_options, index_dir=tmp_path / ix)
