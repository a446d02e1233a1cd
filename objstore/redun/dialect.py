"""The SQLAlchemy dialect behind ``db_uri = objstore+<url>``: redun's own RedunBackendDb on an
objstore repository reads its SQL replica, and is refused any write in one line.

redun builds a RedunBackendDb straight from ``[backend] db_uri`` where it never asks the
``setup_scheduler`` hook: `redun db info / upgrade / downgrade`, the other side of `push` /
`pull`, and `subrun`. With ``db_uri = objstore+file://localhost/abs/.objstore`` (what `objstore
init --redun` writes; ``objstore+s3://bucket/repo`` and the like for buckets) SQLAlchemy loads
this dialect (entry points ``objstore.file``, ``objstore.s3`` ...), which brings the repository's
replica up to date and connects to it. It keeps ``name = "sqlite"``: redun branches on the
dialect's name. Every statement that would write (INSERT, UPDATE, DELETE, DDL) raises
ObjstoreRefused (a RedunVersionError: redun's CLI prints it as one line and exits 1) before it
reaches sqlite, so redun's retry-on-OperationalError never sleeps over it.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from objstore.redun.config import index_dir, storage_options, uri_index_dir
from objstore.redun.sql import ObjstoreRefused

log = logging.getLogger("redun")
_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
_DDL = re.compile(r"^\s*(CREATE|DROP|ALTER)\b", re.IGNORECASE)
_announced: set[str] = set()


def repository_url(url: Any) -> str:
    """The repository URL of a SQLAlchemy URL ``objstore+<scheme>://<host>/<path>``."""
    scheme = url.drivername.split("+", 1)[1] if "+" in url.drivername else "file"
    path = url.database or ""
    if scheme == "file":
        if url.host not in (None, "", "localhost"):
            raise ObjstoreRefused(f"objstore+file://{url.host}/...: a local repository is named "
                                  "objstore+file://localhost/<absolute path>")  # fmt: skip
        return "/" + path.lstrip("/")
    return f"{scheme}://{url.host or ''}/{path}".rstrip("/")


def redun_settings(repo_url: str) -> dict[str, Any]:
    """The [backend] settings of the redun config in use (as redun finds it: $REDUN_CONFIG, else
    the nearest .redun/) when they name this repository: SQLAlchemy hands the dialect only the
    URL, and a bucket's storage options may live in redun.ini (objstore_storage_options)."""
    import configparser

    from redun.cli import get_config_dir

    from objstore.redun.config import URI_PREFIX, from_uri

    ini = os.path.join(get_config_dir(), "redun.ini")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read(ini)
    except configparser.Error:
        return {}
    backend = dict(parser["backend"]) if parser.has_section("backend") else {}
    named = backend.get("objstore_url") or (from_uri(backend["db_uri"]) if str(backend.get("db_uri", "")).startswith(URI_PREFIX) else "")
    return backend if named and named.rstrip("/") == repo_url.rstrip("/") else {}


class ObjstoreDialect(SQLiteDialect_pysqlite):
    name = "sqlite"
    driver = "objstore"
    supports_statement_cache = True

    def create_connect_args(self, url: Any) -> Any:
        from objstore.redun.backend import ObjstoreBackend

        self._repo_url = repo_url = repository_url(url)
        settings = redun_settings(repo_url)
        config = {"objstore_index_dir": uri_index_dir(str(url)) or index_dir(settings)}
        backend = ObjstoreBackend(repo_url, storage_options=storage_options(settings), config=config)
        try:
            backend.prov.refresh()
            replica = backend.replica
            replica.sync(handles=True)
            path = str(replica.path)
        finally:
            backend.close()
        if repo_url not in _announced:
            _announced.add(repo_url)
            log.info(f"{repo_url} is an objstore repository; redun reads its read-only SQL replica {path}")
        return [path], {"check_same_thread": False}

    def on_connect(self) -> Any:
        parent = super().on_connect()

        def connect(dbapi_connection: Any) -> None:
            if parent is not None:
                parent(dbapi_connection)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA query_only = ON")  # a second lock behind the refusal below
            cursor.close()

        return connect

    def _refuse(self, statement: str) -> None:
        if not _WRITE.match(statement):
            return
        repo = getattr(self, "_repo_url", "this repository")
        if _DDL.match(statement):
            raise ObjstoreRefused(
                f"{repo} is an objstore repository: redun's schema there is a read-only replica and "
                "is not migrated; the repository's own format is upgraded with `objstore upgrade`"
            )
        raise ObjstoreRefused(
            f"{repo} is an objstore repository: redun cannot write into it through SQL; record into it "
            "with `redun run` (its setup_scheduler), or copy records in with `redun pull` run from its "
            "own project, which writes through objstore's backend"
        )

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        self._refuse(statement)
        super().do_execute(cursor, statement, parameters, context)

    def do_executemany(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        self._refuse(statement)
        super().do_executemany(cursor, statement, parameters, context)

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        self._refuse(statement)
        super().do_execute_no_params(cursor, statement, context)


__all__ = ["ObjstoreDialect", "repository_url"]
