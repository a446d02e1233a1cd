"""objstore migrate-redun: a redun database (sqlite, PostgreSQL) into a repository, cache included.

The workflow is recorded by redun itself (its CLI, its own sqlite or PostgreSQL backend, its
value store, its tag commands, its alembic migrations for the PostgreSQL schema); migrating it
and re-running on objstore executes nothing, and redun's rollback of a handle survives. The
source database is never written. Every refused source is one line and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sync_helpers import (
    FIRST_RUN,
    REDUN,
    assert_one_line_error,
    clean_env,
    redun_ini,
    redun_run,
    run,
    write_workflow,
)

from objstore.repo import Repository
from objstore.sync import redun_db


@pytest.fixture
def env(tmp_path):
    return clean_env(tmp_path / "home")


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def redun_cli(config: Path, *args: str, cwd: Path, env) -> str:
    proc = subprocess.run([str(REDUN), "-c", str(config), *args], cwd=cwd, env=env, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc.stdout.decode()


def record_into_redun(work: Path, config: Path, env) -> None:
    """Two runs (the second rolls the ledger's "b" branch back) and tag edits, all by redun."""
    assert set(redun_run(work, config, env)) >= FIRST_RUN
    assert redun_run(work, config, env, "--second", "c") == ["main", "ledger_add:c"]
    log = redun_cli(config, "log", "--exec", cwd=work, env=env)
    first_exec = log.split("Exec ")[-1].split()[0]  # the oldest execution listed
    redun_cli(config, "tag", "add", first_exec, "project=migrated", cwd=work, env=env)
    redun_cli(config, "tag", "add", first_exec, "env=dev", cwd=work, env=env)
    redun_cli(config, "tag", "update", first_exec, "env=prod", cwd=work, env=env)
    redun_cli(config, "tag", "rm", first_exec, "project=migrated", cwd=work, env=env)


@pytest.fixture
def sqlite_db(tmp_path, env):
    work = tmp_path / "work"
    write_workflow(work)
    config = redun_ini(work / ".redun", sqlite="sqlite:///redun.db", value_store="values")
    record_into_redun(work, config, env)
    assert any((config / "values").rglob("*")), "the big value should be in redun's value store"
    return {"work": work, "config": config, "db": config / "redun.db"}


def objects_of(url: Path, index: Path) -> dict[str, int]:
    with Repository.open(str(url), index_dir=index) as repo:
        kinds: dict[str, int] = {}
        for _, kind in repo.scan("objects"):
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds


def test_migrated_sqlite_database_reruns_fully_cached(sqlite_db, tmp_path, env):
    work, config, db = sqlite_db["work"], sqlite_db["config"], sqlite_db["db"]
    before = sha1(db)
    repo = tmp_path / "repo"
    run(["init", repo], tmp_path, env, check=0)
    out = run(["--repo", repo, "migrate-redun", config], tmp_path, env, check=0).stdout.decode()  # the config dir
    assert out.startswith("migrated redun schema 3.5 from sqlite:///redun.db: ") and "eval heads" in out, out
    assert sha1(db) == before  # read-only: not a byte changed
    kinds = objects_of(repo, tmp_path / "ix1")
    assert {"value", "call", "job", "exec", "tag", "handle", "handle_edge"} <= set(kinds)
    again = run(["--repo", repo, "migrate-redun", f"sqlite:///{db}"], tmp_path, env, check=0).stdout.decode()
    assert ": 0 new objects" in again and objects_of(repo, tmp_path / "ix2") == kinds  # idempotent

    os_config = redun_ini(work / ".redun-os", objstore_url=str(repo))
    assert redun_run(work, os_config, env, "--second", "c") == []  # the eval cache came along
    assert redun_run(work, os_config, env) == ["ledger_add:b"]  # and redun's rollback of "b"
    assert sha1(db) == before


def test_migrate_keeps_what_redun_export_keeps_and_more(sqlite_db, tmp_path, env):
    work, config = sqlite_db["work"], sqlite_db["config"]
    repo = tmp_path / "repo"
    run(["init", repo], tmp_path, env, check=0)
    run(["--repo", repo, "migrate-redun", config / "redun.ini"], tmp_path, env, check=0)
    theirs = [json.loads(line) for line in redun_cli(config, "export", cwd=work, env=env).splitlines()]
    ours = [json.loads(line) for line in run(["--repo", repo, "export", "--redun"], tmp_path, env, check=0).stdout.splitlines()]

    def key(r):
        r = dict(r)
        if r["_type"] in ("CallNode", "Job"):
            r["children"] = sorted(r["children"])  # redun's export: hash order, query order
        if r["_type"] == "Value" and r["data"] == "":
            r.pop("data")  # redun's export drops what its value store holds; migrate has it
        return json.dumps(r, sort_keys=True)

    stored = {r["value_hash"] for r in theirs if r["_type"] == "Value" and r["data"] == ""}
    assert stored, "redun's export has value-store values without their bytes"
    in_store = [r for r in ours if r["_type"] == "Value" and r["value_hash"] in stored]
    assert {key(r) for r in theirs} == {key({**r, "data": ""} if r in in_store else r) for r in ours}
    assert len(in_store) == len(stored) and all(r["data"] for r in in_store)  # the bytes came along
    tags = [r for r in ours if r["_type"] == "Tag"]
    assert any(r["key"] == "env" and r["value"] == "prod" and r["parents"] for r in tags)  # the update's edit


def _copy(db: Path, to: Path) -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(db, to)
    return to


def _sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    for s in statements:
        conn.execute(s)
    conn.commit()
    conn.close()


def test_refused_sources_are_one_line_and_write_nothing(sqlite_db, tmp_path, env):
    db = sqlite_db["db"]
    bad = tmp_path / "bad"
    unknown = _copy(db, bad / "unknown" / "redun.db")
    _sql(unknown, "UPDATE alembic_version SET version_num = 'ffffdeadbeef'")
    older = _copy(db, bad / "older" / "redun.db")
    _sql(older, "UPDATE alembic_version SET version_num = '3b0a6e67cc58'")
    newer_major = _copy(db, bad / "major" / "redun.db")
    _sql(newer_major, "INSERT INTO redun_version VALUES ('00000000-0000-4000-8000-000000000000', 4, '2999-01-01 00:00:00.000000')")
    empty = bad / "empty" / "redun.db"
    empty.parent.mkdir(parents=True)
    sqlite3.connect(empty).close()
    text = bad / "text.db"
    text.write_text("not a database at all, just text " * 100)
    alone = _copy(db, bad / "alone" / "redun.db")  # no redun.ini beside it: where is the value store?
    edited = _copy(db, bad / "edited" / "redun.db")  # a hand-edited row: ids no longer match content
    _sql(edited, "UPDATE tag SET value = '\"staging\"' WHERE key = 'env' AND is_current = 1")
    args = _copy(db, bad / "args" / "redun.db")
    _sql(args, "UPDATE argument SET arg_key = 'renamed' WHERE arg_key = 'second'")
    cases = [
        ([f"sqlite:///{unknown}"], 1, "unsupported redun schema version 3.? (migration ffffdeadbeef)", "newer than this objstore knows"),
        ([f"sqlite:///{older}"], 1, "unsupported redun schema version 3.4", "redun db upgrade"),
        ([f"sqlite:///{newer_major}"], 1, "unsupported redun schema version 4.?"),
        ([f"sqlite:///{empty}"], 1, "is not a redun database"),
        ([f"sqlite:///{text}"], 1, "cannot read", "as a redun database"),
        ([f"sqlite:///{bad}/missing.db"], 1, "no such sqlite database"),
        ([f"sqlite:///{alone}"], 1, "values of", "are in redun's value store; pass --value-store PATH"),
        ([f"sqlite:///{alone}", "--value-store", str(bad / "nowhere")], 1, "are missing from"),
        ([f"sqlite:///{edited}", "--value-store", str(sqlite_db["config"] / "values")], 1, "its hash does not match its entity"),
        ([f"sqlite:///{args}", "--value-store", str(sqlite_db["config"] / "values")], 1, "its hash does not match its value"),
        (["mysql://host/db"], 2, "unsupported database URI"),
        ([str(bad / "nodir")], 2, "unsupported database URI"),
        ([str(bad)], 2, "no redun.ini in"),
    ]
    repo = tmp_path / "repo"
    run(["init", repo], tmp_path, env, check=0)
    for args, code, *needles in cases:
        assert_one_line_error(run(["--repo", repo, "migrate-redun", *args], tmp_path, env), code, *needles)
    assert objects_of(repo, tmp_path / "ix") == {}  # nothing was written by any of them
    # With the value store named, the lone copy migrates.
    out = run(["--repo", repo, "migrate-redun", f"sqlite:///{alone}", "--value-store", str(sqlite_db["config"] / "values")],
              tmp_path, env, check=0).stdout.decode()
    assert "new objects" in out


def test_redun_db_versions_and_columns_match_redun():
    from redun.backends.db import REDUN_DB_VERSIONS, Base

    assert redun_db.REDUN_DB_VERSIONS == {v.migration_id: (v.major, v.minor) for v in REDUN_DB_VERSIONS}
    assert max(redun_db.REDUN_DB_VERSIONS.values()) == redun_db.SUPPORTED  # redun's newest is read
    for table, sql in redun_db.QUERIES.items():
        columns = sql.split("SELECT ", 1)[1].split(" FROM ", 1)[0].split(", ")
        assert set(columns) <= set(Base.metadata.tables[table].columns.keys()), table


def test_postgresql_database_as_redun_ini_names_it(postgres_db, tmp_path, env):
    """redun's schema by redun's own migrations (`redun db upgrade`), a workflow recorded by
    redun into PostgreSQL, the db_uri copied from redun.ini as written (no driver in it, the
    user from $REDUN_DB_USERNAME as redun takes it): migrated, then cached on objstore."""
    work = tmp_path / "work"
    write_workflow(work)
    config = redun_ini(work / ".redun", sqlite=postgres_db)
    redun_cli(config, "db", "upgrade", "latest", cwd=work, env=env)
    record_into_redun(work, config, env)
    repo = tmp_path / "repo"
    run(["init", repo], tmp_path, env, check=0)
    import psycopg

    def row_counts() -> dict[str, int]:
        with psycopg.connect(postgres_db) as conn:
            return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in redun_db.QUERIES}

    before = row_counts()
    without_user = postgres_db.replace("postgres@", "")
    out = run(["--repo", repo, "migrate-redun", without_user], tmp_path, dict(env, REDUN_DB_USERNAME="postgres"), check=0)
    assert "migrated redun schema 3.5 from postgresql://postgres@" in out.stdout.decode()
    kinds = objects_of(repo, tmp_path / "ix")
    assert {"value", "call", "job", "exec", "tag", "handle", "handle_edge"} <= set(kinds)
    assert row_counts() == before and before["evaluation"] > 0  # read, never written
    os_config = redun_ini(work / ".redun-os", objstore_url=str(repo))
    assert redun_run(work, os_config, env, "--second", "c") == []
    assert redun_run(work, os_config, env) == ["ledger_add:b"]
    # The same database through redun.ini (the config dir) works too, and adds nothing.
    again = run(["--repo", repo, "migrate-redun", config], tmp_path, env, check=0).stdout.decode()
    assert ": 0 new objects" in again
    refused = run(["--repo", repo, "migrate-redun", postgres_db.rsplit("/", 1)[0] + "/nosuchdb"], tmp_path, env)
    assert_one_line_error(refused, 1, "cannot read postgresql://postgres@", "nosuchdb")
