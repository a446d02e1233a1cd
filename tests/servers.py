"""Loopback object-store servers and per-test locations for the test suite.

moto_server (S3), tools/gcs_emulator.py (GCS: gcp-storage-emulator plus preconditions) and
azurite-blob (Azure) run as child processes on free loopback ports, one per pytest
session, started only when a test asks for one. Every test gets a fresh bucket or
container, so nothing needs wiping between tests.

PostgreSQL (``start_postgres``) is a throwaway cluster made by Debian's initdb and started by
pg_ctl on a free loopback port, also one per session and only on demand; every test asks it
for a database of its own. Graphviz's ``dot`` is found by ``find_dot``; headless Chromium
lives in tests/browser.py.

A server that cannot be found or does not come up is a failure naming the fix
(``bash tools/test.sh``), never a skip: a suite that silently skips the remote
backends proves nothing about them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# gcsfs >= 2026 otherwise swaps in a class that asks a gRPC control API (which the
# emulator lacks) for each bucket's layout and stalls ~60 s per bucket. It is read at
# import time, so it must be set before anything imports gcsfs.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import fsspec  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = "run `bash tools/test.sh` once (it creates .venv and installs every test server)"
# PostgreSQL, Chromium and Graphviz come from Debian, not from .venv.
APT_HINT = (
    "run `bash tools/test.sh` as root once (it apt-get installs Debian's postgresql, chromium and "
    "graphviz), or `apt-get install --no-install-recommends postgresql chromium graphviz` yourself"
)
BACKENDS = ("memory", "local", "s3", "gcs", "azure")
REMOTE_BACKENDS = ("s3", "gcs", "azure")

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key (not a secret).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class ServerUnavailable(RuntimeError):
    """A test server binary is missing or the server did not come up."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_executable(name: str, *candidates: Path, hint: str = INSTALL_HINT) -> str:
    """The first existing candidate, else `name` on PATH, else a failure saying how to install."""
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    tried = ", ".join(str(p) for p in candidates) or "(none)"
    raise ServerUnavailable(f"test server `{name}` not found (looked at {tried} and PATH): {hint}")


def _venv_bin() -> Path:
    return Path(sys.executable).parent


@dataclass
class ServerProcess:
    """One running server; `stop()` is idempotent."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer (Azurite: 403 for an unsigned request) means it is up
    except (urllib.error.URLError, OSError):
        return False


def start_server(
    name: str,
    command: Callable[[int], list[str]],
    probe_path: str,
    log_dir: Path,
    *,
    timeout: float = 30.0,
    cwd: Path | None = None,
) -> ServerProcess:
    """Start `command(port)` on a free port and poll `probe_path` until it answers.

    The free port can be taken by someone else between our probe bind and the server's
    bind, so a server that exits during startup is retried on another port.
    """
    last_error = ""
    for attempt in range(3):
        port = free_port()
        log_path = log_dir / f"{name}-{port}.log"
        log = open(log_path, "wb")
        try:
            process = subprocess.Popen(
                command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )
        except OSError as exc:
            log.close()
            raise ServerUnavailable(f"cannot start {name} ({exc}): {INSTALL_HINT}") from exc
        log.close()  # the child holds its own descriptor
        server = ServerProcess(name, port, process, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                last_error = f"{name} exited with {process.returncode} during startup:\n{server.log_tail()}"
                break
            if _answers_http(server.endpoint + probe_path):
                return server
            time.sleep(0.05)
        else:
            server.stop()
            raise ServerUnavailable(
                f"{name} did not answer on port {port} within {timeout:.0f} s:\n{server.log_tail()}"
            )
    raise ServerUnavailable(f"{last_error}\n({INSTALL_HINT})")


def start_s3(log_dir: Path) -> ServerProcess:
    # moto_server itself is only looked up for the install hint: the wrapper runs moto's own
    # server with its conditional writes made atomic (tests/moto_server_atomic.py says why).
    exe = find_executable("moto_server", _venv_bin() / "moto_server", ROOT / ".venv/bin/moto_server")
    python = str(Path(exe).parent / "python")
    wrapper = ROOT / "tests" / "moto_server_atomic.py"
    return start_server("moto_server", lambda p: [python, str(wrapper), "-H", "127.0.0.1", "-p", str(p)],
                        "/moto-api/", log_dir)


def start_gcs(log_dir: Path) -> ServerProcess:
    wrapper = ROOT / "tools" / "gcs_emulator.py"
    python = sys.executable
    try:
        import gcp_storage_emulator  # noqa: F401  (only to fail early with the install hint)
    except ImportError:
        # Maybe pytest runs from another interpreter; the project venv may still have it.
        python = find_executable("python", ROOT / ".venv/bin/python")
        if subprocess.run([python, "-c", "import gcp_storage_emulator"], capture_output=True).returncode:
            raise ServerUnavailable(f"gcp-storage-emulator is not installed: {INSTALL_HINT}") from None
    return start_server(
        "gcs_emulator",
        lambda p: [python, str(wrapper), "start", "-H", "127.0.0.1", "--port", str(p), "--in-memory", "-q"],
        "/",
        log_dir,
    )


def start_azure(log_dir: Path) -> ServerProcess:
    exe = find_executable("azurite-blob", ROOT / "tools/node/node_modules/.bin/azurite-blob")
    # Azurite may drop debug files in its cwd, and --inMemoryPersistence forbids --location.
    workdir = log_dir / "azurite"
    workdir.mkdir(exist_ok=True)
    server = start_server(
        "azurite-blob",
        lambda p: [
            exe, "--blobHost", "127.0.0.1", "--blobPort", str(p), "--inMemoryPersistence",
            # azure-storage-blob sends an x-ms-version newer than Azurite 3.35 knows.
            "--skipApiVersionCheck", "--disableTelemetry", "--silent",
        ],
        f"/{AZURITE_ACCOUNT}?comp=list",
        log_dir,
        cwd=workdir,
    )
    server.extra["connection_string"] = azurite_connection_string(server.port)
    return server


def azurite_connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


# ---------------------------------------------------------------- PostgreSQL

POSTGRES_ROOT = Path("/usr/lib/postgresql")


def postgres_bin_dir(root: Path = POSTGRES_ROOT) -> Path:
    """Debian's newest /usr/lib/postgresql/<major>/bin with initdb and pg_ctl, else PATH's."""

    def major(path: Path) -> tuple[int, str]:
        name = path.parent.name
        return (int(name), name) if name.isdigit() else (-1, name)

    for bin_dir in sorted(root.glob("*/bin"), key=major, reverse=True):
        if all(os.access(bin_dir / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return bin_dir
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    raise ServerUnavailable(
        f"PostgreSQL's initdb/pg_ctl not found (looked in {root}/*/bin and PATH): {APT_HINT}"
    )


def _as_postgres_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs PostgreSQL's programs, and whom to chown its files to.

    initdb and postgres refuse to run as root, so as root they run as the `postgres`
    user (which Debian's package creates); as anyone else they run as that user.
    """
    if os.geteuid() != 0:
        return [], None, None
    import pwd

    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise ServerUnavailable(
            f"running as root, PostgreSQL needs a `postgres` user to run as and there is none: {APT_HINT}"
        ) from None
    runuser = find_executable("runuser", Path("/usr/sbin/runuser"), Path("/sbin/runuser"), hint=APT_HINT)
    return [runuser, "-u", "postgres", "--"], user.pw_uid, user.pw_gid


def _import_psycopg():
    try:
        import psycopg
    except ImportError:
        raise ServerUnavailable(f"psycopg (3) is not installed: {INSTALL_HINT}") from None
    return psycopg


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster on a loopback port; `stop()` is idempotent.

    `uri` names the `postgres` database (trust authentication, user `postgres`); tests
    should work in their own database from `new_database()`.
    """

    port: int
    base: Path  # temp dir owned by the server's user: data/, the unix socket, server.log
    bin_dir: Path
    prefix: list[str]  # runs a command as the server's user (empty when not root)
    log_dir: Path | None = None  # server.log is copied here at stop (the base dir is deleted)
    _stopped: bool = False

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "server.log"

    def uri_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def uri(self) -> str:
        return self.uri_for("postgres")

    def new_database(self, prefix: str = "test") -> str:
        """Create an empty database with a unique name and return its URI."""
        psycopg = _import_psycopg()
        name = f"{prefix}_{uuid.uuid4().hex[:16]}".lower()
        with psycopg.connect(self.uri, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.uri_for(name)

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return _run_pg(self.prefix, [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args],
                       self.base, timeout)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self.pg_ctl("-m", "fast", "-w", "stop")
        finally:
            if self.log_dir is not None and self.log_path.exists():
                shutil.copy(self.log_path, self.log_dir / f"postgres-{self.port}.log")
            shutil.rmtree(self.base, ignore_errors=True)


def _run_pg(prefix: list[str], command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    # With -l, pg_ctl points the server's output at the log file, so nothing holds these pipes.
    try:
        return subprocess.run(
            [*prefix, *command], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerUnavailable(f"{' '.join(command)} did not finish within {timeout:.0f} s") from exc
    except OSError as exc:
        raise ServerUnavailable(f"cannot run {command[0]} ({exc}): {APT_HINT}") from exc


def start_postgres(log_dir: Path | None = None, *, bin_dir: Path | None = None) -> PostgresServer:
    """initdb a new cluster in a temp dir and start it on a free loopback port.

    The cluster lives under /tmp rather than pytest's tmp_path: pytest's base directory is
    private to root, and the server runs as `postgres`. Durability is off (fsync,
    synchronous_commit, full_page_writes): nothing here outlives the session.
    """
    bin_dir = bin_dir or postgres_bin_dir()
    _import_psycopg()
    prefix, uid, gid = _as_postgres_user()
    base = Path(tempfile.mkdtemp(prefix="objstore-pg-"))
    if uid is not None:
        os.chown(base, uid, gid)
    server = PostgresServer(0, base, bin_dir, prefix, log_dir)
    try:
        done = _run_pg(
            prefix,
            [str(bin_dir / "initdb"), "-D", str(server.data_dir), "-A", "trust", "-U", "postgres",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            base,
            120,
        )
        if done.returncode:
            raise ServerUnavailable(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        last_error = ""
        for _attempt in range(3):
            # Another process can take the port between our probe and the server's bind:
            # the start then fails and we try another one.
            server.port = free_port()
            options = (
                f"-p {server.port} -k {base} -c listen_addresses={server.host} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            done = server.pg_ctl("-w", "-t", "60", "-l", str(server.log_path), "-o", options, "start",
                                 timeout=90)
            if done.returncode == 0:
                break
            last_error = f"pg_ctl start failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{server.log_tail()}"
        else:
            raise ServerUnavailable(last_error)
        psycopg = _import_psycopg()
        with psycopg.connect(server.uri, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except BaseException:
        server.stop()
        raise
    return server


# ---------------------------------------------------------------- Graphviz


def find_dot() -> str:
    """Graphviz's `dot`, or a failure saying how to install it."""
    return find_executable("dot", Path("/usr/bin/dot"), hint=APT_HINT)


def run_dot(source: str, fmt: str = "svg", *, dot: str | None = None) -> str:
    """Render a DOT graph with `dot -T<fmt>` and return what it prints."""
    done = subprocess.run(
        [dot or find_dot(), f"-T{fmt}"], input=source, capture_output=True, text=True, timeout=60
    )
    if done.returncode:
        raise RuntimeError(f"dot -T{fmt} failed ({done.returncode}): {done.stderr}")
    return done.stdout


# ---------------------------------------------------------------- per-test locations


@dataclass
class Target:
    """A fresh, empty location on one backend (see docs/contracts.md, "tests")."""

    name: str  # "memory" | "local" | "s3" | "gcs" | "azure"
    url: str  # what a user would type: s3://bkt-…/repo, /tmp/…/repo, memory://…/repo
    protocol: str
    storage_options: dict[str, Any]
    root: str  # the path inside fs() that url names (no protocol, no trailing slash)
    server: ServerProcess | None = None

    def fs(self) -> fsspec.AbstractFileSystem:
        """A new filesystem instance (fsspec's instance cache bypassed)."""
        return fsspec.filesystem(self.protocol, skip_instance_cache=True, **self.storage_options)

    @property
    def is_remote(self) -> bool:
        return self.name in REMOTE_BACKENDS

    def __repr__(self) -> str:
        return f"Target({self.name}, {self.url})"


def s3_options(server: ServerProcess) -> dict[str, Any]:
    # No region_name: with one, s3fs.mkdir sends a us-east-1 LocationConstraint that
    # moto (like AWS) rejects.
    return {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": server.endpoint}}


def gcs_options(server: ServerProcess) -> dict[str, Any]:
    return {"endpoint_url": server.endpoint, "token": "anon", "project": "test"}


def azure_options(server: ServerProcess) -> dict[str, Any]:
    return {"connection_string": server.extra["connection_string"]}


def _unique(prefix: str) -> str:
    # Bucket/container names: 3-63 chars of [a-z0-9-] on all three stores.
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def make_target(name: str, *, tmp_path: Path, server: ServerProcess | None = None) -> Target:
    """Create a fresh, empty location for backend `name` (buckets are created here)."""
    if name == "memory":
        top = _unique("objstore-test")
        return Target(name, f"memory://{top}/repo", "memory", {}, f"/{top}/repo")
    if name == "local":
        path = tmp_path / "repo"
        return Target(name, str(path), "file", {}, str(path))
    if server is None:
        raise ValueError(f"backend {name!r} needs its server")
    if name == "s3":
        protocol, options, bucket = "s3", s3_options(server), _unique("bkt")
    elif name == "gcs":
        protocol, options, bucket = "gs", gcs_options(server), _unique("bkt")
    elif name == "azure":
        protocol, options, bucket = "az", azure_options(server), _unique("ctr")
    else:
        raise ValueError(f"unknown backend {name!r}")
    target = Target(name, f"{protocol}://{bucket}/repo", protocol, options, f"{bucket}/repo", server)
    # One long-lived client per server creates the buckets: a new s3fs/adlfs client
    # costs ~0.3 s to build, which would otherwise be paid on every test's setup.
    admin = server.extra.get("admin_fs")
    if admin is None:
        admin = server.extra["admin_fs"] = target.fs()
    admin.mkdir(bucket)
    return target


def discard_target(target: Target) -> None:
    """Free what the location holds where it would otherwise outlive the test."""
    if target.name == "memory":
        # MemoryFileSystem is one process-wide dict: without this every test's data
        # stays in memory for the rest of the session.
        fs = target.fs()
        top = "/" + target.root.strip("/").split("/")[0]
        if fs.exists(top):
            fs.rm(top, recursive=True)
    # local: pytest owns tmp_path; remote: the servers are in-memory and die with the session.


def backend_params(names=BACKENDS):
    """`params=` for a fixture over backends, remote ones marked `remote`.

    Reuse: ``@pytest.fixture(params=backend_params(("memory", "s3")))`` and then
    ``yield make_target_for(request, tmp_path)`` inside it
    (servers.discard_target(t) afterwards for memory).
    """
    return [
        pytest.param(name, id=name, marks=[pytest.mark.remote] if name in REMOTE_BACKENDS else [])
        for name in names
    ]


def make_target_for(request, tmp_path) -> Target:
    name = request.param
    server = request.getfixturevalue(f"{name}_server") if name in REMOTE_BACKENDS else None
    return make_target(name, tmp_path=tmp_path, server=server)
