"""Reading a redun database, strictly read-only: sqlite (stdlib) or PostgreSQL (SQLAlchemy).

Why not redun's own models: importing redun.backends.db costs most of a second (boto3, alembic,
the scheduler), more than reading every table of a typical database, and redun's ``load()``
upgrades a sqlite file in place. The schema is small and fixed per version, so plain SQL with
explicit columns reads it; ``tests/test_migrate_redun.py`` checks the version table and the
columns against redun's own models.

Read-only, and one snapshot across tables:
- sqlite: ``file:…?mode=ro`` (a write fails), and one explicit transaction (``BEGIN`` … every
  SELECT … ``ROLLBACK``), because pysqlite starts none for SELECTs.
- PostgreSQL: every transaction ``REPEATABLE READ READ ONLY`` (and the session default read-only
  too), so the whole read is one snapshot and nothing can be written.
"""

from __future__ import annotations

import configparser
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from objstore.errors import UnsupportedSource

# redun's REDUN_DB_VERSIONS (redun/backends/db/__init__.py): alembic migration id -> (major,
# minor). A copy, so reading a database never imports redun; a test keeps it equal to redun's.
REDUN_DB_VERSIONS: dict[str, tuple[int, int]] = {
    "806f5dcb11bf": (1, 0),
    "647c510a77b1": (2, 0),
    "30ffbaee18cd": (2, 1),
    "71ec303c90e4": (2, 2),
    "d4af139b6f53": (2, 3),
    "cd2d53191748": (3, 0),
    "cc4f663817b6": (3, 1),
    "eb7b95e4e8bf": (3, 2),
    "f68b3aaee9cc": (3, 3),
    "3b0a6e67cc58": (3, 4),
    "0bee3d6dba76": (3, 5),
}
SUPPORTED = (3, 5)  # the schema these queries read; redun 0.44 writes it
DEFAULT_DB_URI = "sqlite:///redun.db"  # redun's default, relative to its config directory

# The columns read, per table. Arguments come in insertion order (the order redun recorded a
# call's arguments in: positional, given keywords, defaults), which only rowid/ctid keep.
QUERIES = {
    "value": "SELECT value_hash, type, format, value FROM value",
    "subvalue": "SELECT parent_value_hash, value_hash FROM subvalue",
    "file": "SELECT value_hash, path FROM file",
    "task": "SELECT hash, name, namespace, source FROM task",
    "evaluation": "SELECT eval_hash, task_hash, args_hash, value_hash FROM evaluation",
    "call_node": "SELECT call_hash, task_name, task_hash, args_hash, value_hash, timestamp FROM call_node",
    "argument": "SELECT arg_hash, call_hash, value_hash, arg_position, arg_key FROM argument ORDER BY call_hash, {order}",
    "argument_result": "SELECT arg_hash, result_call_hash FROM argument_result",
    "call_edge": "SELECT parent_id, child_id FROM call_edge ORDER BY parent_id, call_order",
    "call_subtree_task": "SELECT call_hash, task_hash FROM call_subtree_task",
    "job": "SELECT id, start_time, end_time, task_hash, cached, call_hash, parent_id, execution_id FROM job",
    "execution": "SELECT id, args, job_id, updated_time FROM execution",
    "tag": "SELECT tag_hash, entity_type, entity_id, key, value, is_current FROM tag",
    "tag_edit": "SELECT parent_id, child_id FROM tag_edit",
    "handle": "SELECT hash, fullname, value_hash, key, is_valid FROM handle",
    "handle_edge": "SELECT parent_id, child_id FROM handle_edge",
}
Tables = dict[str, list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Source:
    uri: str  # what is connected to (credentials included)
    shown: str  # the same without a password, for messages
    dialect: str  # "sqlite" | "postgresql"
    path: str | None = None  # the sqlite file
    value_store: str | None = None  # redun's value store (a path or URL), when there is one


def _read_ini(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # redun's keys are case-sensitive
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as exc:
        raise ValueError(f"cannot read redun config {path}: {exc}") from None
    return parser


def _absolute(path: str, base: str) -> str:
    return path if "://" in path or os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _with_credentials(uri: str, username: str | None, password: str | None) -> tuple[str, str]:
    """redun's rule: $REDUN_DB_USERNAME replaces the URI's user, $REDUN_DB_PASSWORD is added."""
    parts = urlsplit(uri)
    user = username or parts.username
    secret = password if password else (parts.password or "")
    host = parts.netloc.rsplit("@", 1)[-1]
    if user:
        login = f"{quote_plus(user)}:{quote_plus(secret)}" if secret else quote_plus(user)
        full = urlunsplit(parts._replace(netloc=f"{login}@{host}"))
        shown = urlunsplit(parts._replace(netloc=f"{quote_plus(user)}{':***' if secret else ''}@{host}"))
        return full, shown
    return uri, uri


def locate(
    given: str,
    *,
    cwd: str | os.PathLike[str],
    value_store: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> Source:
    """The database a user named: a db_uri (as written in redun.ini), or a redun.ini / its
    directory (whose db_uri and value_store_path are then read as redun reads them)."""
    cwd = os.fspath(cwd)
    config_dir = None
    store_from_config = None
    candidate = given if os.path.isabs(given) else os.path.join(cwd, given)
    if "://" not in given and (os.path.isdir(candidate) or given.endswith(".ini")):
        ini = os.path.join(candidate, "redun.ini") if os.path.isdir(candidate) else candidate
        if not os.path.isfile(ini):
            raise ValueError(f"no redun.ini in {given}")
        config_dir = os.path.dirname(os.path.abspath(ini))
        parsed = _read_ini(ini)
        backend: Mapping[str, str] = parsed["backend"] if parsed.has_section("backend") else {}
        given = backend.get("db_uri", DEFAULT_DB_URI)
        if backend.get("value_store_path"):
            store_from_config = _absolute(backend["value_store_path"], config_dir)
    scheme = given.split("://", 1)[0].lower() if "://" in given else ""
    if scheme == "sqlite":
        if not given.startswith("sqlite:///"):
            raise ValueError(f"not a sqlite file URI: {given!r} (sqlite:///relative/path or sqlite:////absolute/path)")
        raw = given[len("sqlite:///") :].split("?", 1)[0]
        if not raw or raw == ":memory:":
            raise ValueError("an in-memory sqlite database holds nothing to migrate")
        path = _absolute(raw, config_dir or cwd)
        if store_from_config is None:
            # A database in a redun config directory: its redun.ini says where the value store is.
            beside = os.path.join(os.path.dirname(path), "redun.ini")
            if os.path.isfile(beside):
                section = _read_ini(beside)
                if section.has_option("backend", "value_store_path"):
                    store_from_config = _absolute(section.get("backend", "value_store_path"), os.path.dirname(path))
        store = _absolute(value_store, cwd) if value_store else store_from_config
        return Source(given, given, "sqlite", path=path, value_store=store)
    if scheme.split("+", 1)[0] in ("postgresql", "postgres"):
        full, shown = _with_credentials(given, username, password)
        store = _absolute(value_store, cwd) if value_store else store_from_config
        return Source(full, shown, "postgresql", value_store=store)
    raise ValueError(
        f"unsupported database URI {given!r}: migrate-redun reads sqlite:///… and postgresql://… "
        "(or a redun.ini / its directory)"
    )


# -- reading ------------------------------------------------------------------------------------


def _check_version(tables: set[str], major_rows: list[tuple[Any, ...]], migrations: set[str], shown: str) -> tuple[int, int]:
    if "redun_version" not in tables or not major_rows:
        raise UnsupportedSource(f"{shown} is not a redun database (no redun_version table or no version in it)")
    major = int(major_rows[0][0])
    known = [REDUN_DB_VERSIONS[m] for m in migrations if m in REDUN_DB_VERSIONS and REDUN_DB_VERSIONS[m][0] == major]
    version = max(known) if known else None
    if version == SUPPORTED:
        return version
    seen = f"{version[0]}.{version[1]}" if version else f"{major}.? (migration {', '.join(sorted(migrations)) or 'none'})"
    if version is not None and version < SUPPORTED:
        hint = "upgrade a copy with `redun db upgrade`, then migrate the copy"
    else:
        hint = "newer than this objstore knows"
    raise UnsupportedSource(
        f"{shown}: unsupported redun schema version {seen}: migrate-redun reads {SUPPORTED[0]}.{SUPPORTED[1]} ({hint})"
    )


def read_sqlite(source: Source) -> tuple[tuple[int, int], Tables]:
    path = source.path or ""
    if not os.path.isfile(path):
        raise UnsupportedSource(f"no such sqlite database: {path}")
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise UnsupportedSource(f"cannot open {path}: {exc}") from None
    try:
        conn.execute("BEGIN")  # one snapshot across every table
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        majors = conn.execute("SELECT version FROM redun_version ORDER BY timestamp DESC LIMIT 1").fetchall() if "redun_version" in names else []
        migrations = {r[0] for r in conn.execute("SELECT version_num FROM alembic_version")} if "alembic_version" in names else set()
        version = _check_version(names, majors, migrations, path)
        tables = {name: conn.execute(sql.format(order="rowid")).fetchall() for name, sql in QUERIES.items()}
        conn.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "readonly" in text:
            raise UnsupportedSource(
                f"{path} has an unfinished transaction (a hot {os.path.basename(path)}-journal): open it once "
                "with redun or sqlite3 to recover it, or migrate a copy"
            ) from None
        raise UnsupportedSource(f"cannot read {path} as a redun database: {text}") from None
    finally:
        conn.close()
    return version, tables


def _postgres_url(uri: str) -> str:
    """A plain postgresql:// URI, as redun.ini spells it, with whichever driver is installed."""
    import importlib.util

    scheme, rest = uri.split("://", 1)
    if "+" in scheme:
        return uri
    for driver, module in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    raise UnsupportedSource("no PostgreSQL driver is installed: pip install 'objstore[postgres]' (psycopg 3)")


def read_postgres(source: Source) -> tuple[tuple[int, int], Tables]:
    try:
        import sqlalchemy as sa
    except ImportError:
        raise UnsupportedSource("reading PostgreSQL needs SQLAlchemy: pip install 'objstore[postgres]'") from None
    try:
        engine = sa.create_engine(
            _postgres_url(source.uri), isolation_level="REPEATABLE READ",
            execution_options={"postgresql_readonly": True},
            connect_args={"options": "-c default_transaction_read_only=on"},
        )  # fmt: skip
    except ImportError as exc:
        raise UnsupportedSource(f"the PostgreSQL driver of {source.shown} is not installed ({exc})") from None
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"not a database URI: {source.shown} ({exc})") from None
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            run = conn.exec_driver_sql
            majors = [tuple(r) for r in run("SELECT version FROM redun_version ORDER BY timestamp DESC LIMIT 1")] if "redun_version" in names else []
            migrations = {r[0] for r in run("SELECT version_num FROM alembic_version")} if "alembic_version" in names else set()
            version = _check_version(names, majors, migrations, source.shown)
            tables = {name: [tuple(r) for r in run(sql.format(order="ctid"))] for name, sql in QUERIES.items()}
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UnsupportedSource(f"cannot read {source.shown}: {reason}") from None
    finally:
        engine.dispose()
    return version, tables


def read(source: Source) -> tuple[tuple[int, int], Tables]:
    """(schema version, every table's rows), after refusing any schema but SUPPORTED."""
    return read_sqlite(source) if source.dialect == "sqlite" else read_postgres(source)


__all__ = ["Source", "REDUN_DB_VERSIONS", "SUPPORTED", "QUERIES", "UnsupportedSource", "locate", "read"]
