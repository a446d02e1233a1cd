"""pytest plugin: run redun's own shipped test suite against objstore's redun backend.

Load it with ``-p redun_plugin`` (tests/ on PYTHONPATH) while collecting the tests inside the
installed wheel (``site-packages/redun/tests``); ``tools/redun_suite.sh`` does both.

redun hard-codes its backend: ``Scheduler(config)`` calls
``redun.scheduler.get_backend_from_config``, which always builds a ``RedunBackendDb``. That
function is the single place every fixture, the CLI's default ``setup_scheduler`` and
``subrun`` get a backend from, so replacing it (and nothing else) switches the whole suite while
still respecting a ``Scheduler(backend=...)`` passed explicitly by a test.

Backends (``--redun-backend``):
  objstore        the thing under test: ``ObjstoreBackend`` on a fresh repository per call
                  (``memory://`` for redun's in-memory default, a local directory next to the
                  sqlite file a config names, so two Schedulers on one config share a repository
                  exactly as they would share the sqlite file); the LMDB index in a temp dir.
  sqlite          redun unchanged: the baseline the objstore run is compared with.
  sqlite-wrapped  a harness self-check, not a backend under test: redun's own RedunBackendDb
                  behind a wrapper that forwards only the 24 abstract methods. Everything that
                  fails with it reached past the abstract interface, which is exactly what the
                  ``sql`` entries of the deselect file must cover.

Deselect file (``--redun-deselect``, default ``tests/redun_deselect.txt``): one entry per line,
``<category> <test id> <reason>``; ``service`` entries (whole files or tests needing services or
packages we do not have) are ignored in every mode; ``sql`` entries (tests that reach into
SQLAlchemy / RedunBackendDb beyond the abstract API) and ``subrun`` entries (redun's subrun builds
its own backend from config, whatever the parent uses) only when the backend is not sqlite.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
DEFAULT_DESELECT = HERE / "redun_deselect.txt"
BACKENDS = ("objstore", "sqlite", "sqlite-wrapped")
# service: never run; sql / subrun: not run unless the backend is redun's own sqlite.
CATEGORIES = ("service", "sql", "subrun")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("redun-suite", "redun's shipped tests against objstore")
    group.addoption("--redun-backend", choices=BACKENDS, default="objstore",
                    help="backend every Scheduler without an explicit backend= gets")
    group.addoption("--redun-deselect", default=str(DEFAULT_DESELECT),
                    help="data file: <category> <test id> <reason>")


# -- deselect file ------------------------------------------------------------------------------

def read_deselect(path: str | Path) -> dict[str, tuple[str, str]]:
    """test id (``file.py`` or ``file.py::[Class::]name``) -> (category, reason)."""
    entries: dict[str, tuple[str, str]] = {}
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[0] not in CATEGORIES:
            raise pytest.UsageError(f"{path}:{lineno}: want '<{'|'.join(CATEGORIES)}> <test id> <reason>'")
        category, test_id, reason = parts
        if test_id in entries:
            raise pytest.UsageError(f"{path}:{lineno}: {test_id} listed twice")
        entries[test_id] = (category, reason)
    return entries


def _item_keys(item: pytest.Item) -> list[str]:
    # Parametrised ids are matched at function level: the reasons are about the test body.
    parts = item.nodeid.split("::")
    name = Path(parts[0]).name
    rest = [p.split("[", 1)[0] for p in parts[1:]]
    return [name] + ["::".join([name] + rest[: i + 1]) for i in range(len(rest))]


# -- backends -----------------------------------------------------------------------------------

class _Scratch:
    """Repositories and index dirs made during one test; removed at its teardown."""

    def __init__(self) -> None:
        self.dirs: list[str] = []
        self.memory_roots: list[str] = []

    def tmpdir(self, prefix: str) -> str:
        d = tempfile.mkdtemp(prefix=prefix)
        self.dirs.append(d)
        return d

    def cleanup(self) -> None:
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs.clear()
        if self.memory_roots:
            from fsspec.implementations.memory import MemoryFileSystem

            for root in self.memory_roots:
                for key in [k for k in MemoryFileSystem.store if k.startswith(root)]:
                    MemoryFileSystem.store.pop(key, None)
                MemoryFileSystem.pseudo_dirs[:] = [
                    p for p in MemoryFileSystem.pseudo_dirs if not p.startswith(root)]
            self.memory_roots.clear()


_scratch = _Scratch()
_counter = itertools.count()


def _sqlite_path(db_uri: str) -> str | None:
    """The file behind a sqlite URI, or None for an in-memory one."""
    if not db_uri.startswith("sqlite:///"):
        raise pytest.UsageError(f"redun_plugin: cannot map non-sqlite db_uri {db_uri!r}")
    path = db_uri[len("sqlite:///"):]
    return None if path in ("", ":memory:") else os.path.abspath(path)


def make_objstore_backend(backend_config: Any):
    """An ObjstoreBackend standing where get_backend_from_config would build a RedunBackendDb."""
    from objstore.redun import ObjstoreBackend

    db_uri = (backend_config or {}).get("db_uri") or "sqlite:///:memory:"
    path = _sqlite_path(db_uri)
    if path is None:
        root = f"/redun-suite-{uuid.uuid4().hex}"
        _scratch.memory_roots.append(root)
        backend = ObjstoreBackend(url=f"memory://{root}", config=backend_config,
                                  index_dir=_scratch.tmpdir("redun-suite-index-"))
        # get_backend_from_config loads its in-memory db itself; fixtures rely on that.
        backend.load()
        return backend
    # A config naming a sqlite file: a repository beside it, shared by every Scheduler built on
    # the same config (tests rely on a second Scheduler seeing the first one's cache).
    # create=True: redun creates a sqlite file on first use, and its tests expect that. The config
    # goes along (as setup_scheduler passes it): backend.db_uri is then the db_uri
    # redun compares to refuse pushing a repository into itself.
    return ObjstoreBackend(
        url=path + ".objstore", config=backend_config, index_dir=path + ".objstore-index", create=True
    )


def make_wrapped_sqlite_backend(backend_config: Any):
    from redun.backends.base import RedunBackend

    inner = _original_get_backend(backend_config)
    names = sorted(RedunBackend.__abstractmethods__)

    def forward(name):
        def method(self, *args, **kwargs):
            return getattr(self._inner, name)(*args, **kwargs)
        method.__name__ = name
        return method

    cls = type("AbstractOnlyBackend", (RedunBackend,), {n: forward(n) for n in names})
    backend = cls.__new__(cls)
    RedunBackend.__init__(backend)
    backend._inner = inner
    return backend


_original_get_backend = None


def pytest_configure(config: pytest.Config) -> None:
    _install_moto4_names()
    mode = config.getoption("--redun-backend")
    config._redun_deselect = read_deselect(config.getoption("--redun-deselect"))
    config._redun_mode = mode
    if mode == "sqlite":
        return
    import redun.scheduler

    global _original_get_backend
    _original_get_backend = redun.scheduler.get_backend_from_config
    factory = make_objstore_backend if mode == "objstore" else make_wrapped_sqlite_backend
    redun.scheduler.get_backend_from_config = factory
    if mode == "objstore":
        _warm_imports()


def _warm_imports() -> None:
    # redun's autouse redun_globals fixture pops every module first imported *during* a test
    # from sys.modules. Whatever objstore imports lazily (fsspec implementations, refs stores)
    # would then be re-imported as new module objects in the next test, and class identity
    # checks (isinstance(fs, MemoryFileSystem)) would fail across the two copies. Importing it
    # all once, before any test, puts it in the fixture's "already imported" set.
    for url in ("memory:///redun-suite-warmup", None):
        with tempfile.TemporaryDirectory(prefix="redun-suite-warmup-") as d:
            backend = make_objstore_backend(
                {"db_uri": f"sqlite:///{d}/redun.db"} if url is None else None)
            backend.record_value(1)
            backend.close()
    _scratch.cleanup()


def _install_moto4_names() -> None:
    # redun's tests import moto<5's per-service decorators (mock_s3, mock_logs); moto 5 (which
    # objstore's own S3 tests need for conditional writes) merged them into mock_aws, which
    # covers every service, so the old names are aliases of it.
    import moto

    for name in ("mock_s3", "mock_logs"):
        if not hasattr(moto, name):
            setattr(moto, name, moto.mock_aws)


# -- collection ---------------------------------------------------------------------------------

def pytest_ignore_collect(collection_path: Path, config: pytest.Config):
    entry = getattr(config, "_redun_deselect", {}).get(collection_path.name)
    if entry and entry[0] == "service" and collection_path.suffix == ".py":
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    entries = config._redun_deselect
    keep, dropped = [], []
    counts = dict.fromkeys(CATEGORIES, 0)
    for item in items:
        hit = next((entries[k] for k in _item_keys(item) if k in entries), None)
        if hit and (hit[0] == "service" or config._redun_mode != "sqlite"):
            dropped.append(item)
            counts[hit[0]] += 1
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    config._redun_counts = counts


def pytest_report_header(config: pytest.Config) -> str:
    return f"redun suite backend: {config._redun_mode}"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    counts = getattr(config, "_redun_counts", None)
    if counts is not None:
        terminalreporter.write_line(
            f"redun suite [{config._redun_mode}]: deselected {counts['service']} service, "
            f"{counts['sql']} sql-only, {counts['subrun']} subrun "
            f"(see {config.getoption('--redun-deselect')})")


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    _scratch.cleanup()
