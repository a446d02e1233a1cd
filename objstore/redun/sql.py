"""redun's SQL-side interface on ObjstoreBackend: what redun's CLI and console reach for.

redun's `log`, `console`, `repl`, `export`, `tag` and `run --rerun` assert the backend is a
``RedunBackendDb`` and query ``backend.session`` with SQLAlchemy. ObjstoreBackend is registered
as a virtual subclass (``RedunBackendDb.register``: isinstance holds, nothing is inherited, so no
SQL write path exists on it) and its ``session`` is the session of a private RedunBackendDb on
the read-only replica (objstore.redun.replica), caught up from the journal when it is opened and
before each top-level query once anything new was flushed (the console keeps one session open).

What would write through SQL refuses in one line naming what to use instead: ``migrate`` (the
repository's format is `objstore upgrade`'s business).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from redun.backends.db import RedunBackendDb, RedunVersionError

from objstore.redun.errors import ObjstoreRedunError

# How often a held session (the console's) also lists the repository's journal for what other
# workers wrote; its own process's flushes are seen at once.
REFRESH_EVERY = 2.0


class ObjstoreRefused(ObjstoreRedunError, RedunVersionError):
    """redun tried to write into an objstore repository through SQL. A RedunVersionError, so
    redun's CLI prints it as one line (``RedunClientError: …``) and exits 1."""


class SqlInterface:
    """Mixed into ObjstoreBackend (which provides ``prov``, ``url``, ``flush`` and ``_config``)."""

    automigrate = False
    prov: Any
    url: str
    _config: Any

    def flush(self) -> None:  # provided by ObjstoreBackend
        raise NotImplementedError

    # -- the replica -------------------------------------------------------------------------

    @property
    def replica(self) -> Any:
        found = self.__dict__.get("_replica")
        if found is None:
            with _REPLICA_LOCK:
                found = self.__dict__.get("_replica")
                if found is None:
                    from objstore.redun.replica import Replica

                    found = Replica(self.prov)
                    self.__dict__["_replica"] = found
                    self.__dict__["_refreshed"] = 0.0
        return found

    def _catch_up(self, *, refresh: bool) -> None:
        """Flush what this process buffered, list the journal (``refresh``: and read handle
        states again), apply what is new."""
        self.flush()
        if refresh:
            self.prov.refresh()
            self.__dict__["_refreshed"] = time.monotonic()
        replica = self.replica
        if refresh or replica.stale():
            replica.sync(handles=refresh)

    def _replica_db(self) -> RedunBackendDb:
        replica = self.replica
        first = replica.db.engine is None
        # redun reads backend.session many times per command: list the journal on the first
        # access and then at most every REFRESH_EVERY seconds (this process's flushes count at once).
        self._catch_up(refresh=first or time.monotonic() - self.__dict__.get("_refreshed", 0.0) > REFRESH_EVERY)
        db = replica.open()
        if first:
            self._watch(db)
        return db

    def _watch(self, db: RedunBackendDb) -> None:
        """Catch up before each top-level SELECT of a held session (cheap when nothing moved)."""
        import sqlalchemy as sa

        busy = threading.local()

        @sa.event.listens_for(db.session, "do_orm_execute")
        def _before_query(state: Any) -> None:
            if not state.is_select or state.is_relationship_load or state.is_column_load:
                return
            if getattr(busy, "on", False):
                return
            busy.on = True
            try:
                stale = time.monotonic() - self.__dict__.get("_refreshed", 0.0) > REFRESH_EVERY
                self._catch_up(refresh=stale)
            finally:
                busy.on = False

    def close_replica(self) -> None:
        replica = self.__dict__.pop("_replica", None)
        if replica is not None:
            replica.close()

    # -- what redun's CLI reads --------------------------------------------------------------

    @property
    def session(self) -> Any:
        return self._replica_db().session

    @property
    def engine(self) -> Any:
        return self._replica_db().engine

    def create_engine(self) -> Any:
        return self._replica_db().engine

    @property
    def db_uri(self) -> str:
        """The db_uri redun's config names (redun compares it to refuse pushing a repository
        into itself), else ``objstore+<url>``."""
        config = self._config or {}
        if config.get("db_uri"):
            return RedunBackendDb._get_uri(None, config)
        url = self.url
        if "://" not in url:
            url = "file://localhost" + url
        return "objstore+" + url

    def get_db_version(self) -> Any:
        return self._replica_db().get_db_version()

    def is_db_compatible(self) -> bool:
        return self._replica_db().is_db_compatible()

    get_db_version_required = staticmethod(RedunBackendDb.get_db_version_required)
    get_all_db_versions = staticmethod(RedunBackendDb.get_all_db_versions)

    def migrate(self, desired_version: Any = None, upgrade_only: bool = False) -> None:
        raise ObjstoreRefused(
            f"{self.url} is an objstore repository: redun's SQL schema is a read-only replica of it "
            "and cannot be migrated; the repository's own format is upgraded with `objstore upgrade`"
        )


_REPLICA_LOCK = threading.Lock()

__all__ = ["SqlInterface", "ObjstoreRefused", "REFRESH_EVERY"]
