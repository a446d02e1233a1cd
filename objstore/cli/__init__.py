"""objstore's command line: the only code that parses argv or reads os.environ.

Commands live in modules of this package; each exposes ``register(subparsers)`` and sets
``func=handler`` on its parsers, where ``handler(args, ctx: Context) -> int | None``. A new
module here is picked up without editing this file (modules starting with ``_`` are skipped).

Where the repository is: ``--repo URL``, else ``$OBJSTORE_REPO``, else the nearest ``.objstore/``
(holding objstore.json) or ``.redun/redun.ini`` naming a repository (``[backend] objstore_url`` or
an ``objstore+`` db_uri, as `objstore init --redun` writes) in the working directory or a parent
(``$REDUN_CONFIG`` first, as redun looks there first).
Where its index is: ``--index-dir``, else ``$OBJSTORE_INDEX_DIR``, else redun.ini's
``objstore_index_dir`` when the repository was found there, else the rule every entry point
shares (objstore.repo.default_index_dir: under ``$XDG_CACHE_HOME/objstore``, default
``~/.cache/objstore``, keyed by the repository URL).
``$OBJSTORE_STORAGE_OPTIONS`` may hold a JSON object of fsspec options (endpoints, credentials);
else redun.ini's ``objstore_storage_options``, the same setting the redun backend reads;
``$OBJSTORE_VALUE_STORE_OPTIONS`` the same for the repository's value store.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from objstore.errors import ObjstoreError, RepositoryNotFound

REPO_DIR = ".objstore"
FORMAT_FILE = "objstore.json"
PROG = "objstore"


class UsageError(Exception):
    """Bad arguments or environment: exit status 2, like argparse's own errors."""


@dataclass(frozen=True)
class Location:
    """A repository as the command line names it: its URL, fsspec options, and the remote
    name it was given by (if any)."""

    url: str
    storage_options: dict[str, Any] | None = None
    remote: str | None = None


# Modules listed here come first in `objstore --help`, in this order; the rest follow by name.
FIRST = ("repository", "log", "tag", "graph", "repl", "objects", "maint", "db")


def command_modules() -> list[str]:
    """Every command module of this package (modules starting with ``_`` are not)."""
    import pkgutil

    names = sorted(
        m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
    )
    names.sort(key=lambda n: FIRST.index(n) if n in FIRST else len(FIRST))
    return [f"{__name__}.{n}" for n in names]


def discover_repo(start: Path) -> Path | None:
    """The nearest ``.objstore`` directory holding objstore.json at or above ``start``."""
    found = discover(start)
    return Path(found[0]) if found and found[1] is None else None


def redun_settings(config_dir: Path) -> dict[str, str] | None:
    """The [backend] settings of ``config_dir/redun.ini`` if they name an objstore repository
    (objstore_url, or an objstore+ db_uri), with the URL under ``objstore_url``."""
    import configparser

    ini = config_dir / "redun.ini"
    if not ini.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # redun's keys are case-sensitive
    try:
        parser.read(ini)
    except configparser.Error as exc:
        raise UsageError(f"{ini}: {exc}") from None
    backend = dict(parser["backend"]) if parser.has_section("backend") else {}
    if not backend.get("objstore_url") and str(backend.get("db_uri", "")).startswith("objstore+"):
        from objstore.redun.config import from_uri

        backend["objstore_url"] = from_uri(backend["db_uri"])
    if not backend.get("objstore_url"):
        return None
    url = backend["objstore_url"]
    if "://" not in url and not os.path.isabs(url):
        backend["objstore_url"] = str((config_dir / url).resolve())  # relative to the config dir
    return backend


def discover(start: Path, redun_config: str | None = None) -> tuple[str, dict[str, str] | None] | None:
    """(repository URL, redun.ini [backend] settings or None) from ``$REDUN_CONFIG``, else the
    nearest ``.objstore/`` or ``.redun/redun.ini`` naming one, at or above ``start``."""
    if redun_config:
        settings = redun_settings(Path(redun_config))
        if settings:
            return settings["objstore_url"], settings
    start = start.absolute()
    for directory in (start, *start.parents):
        candidate = directory / REPO_DIR
        if (candidate / FORMAT_FILE).is_file():
            return str(candidate), None
        settings = redun_settings(directory / ".redun")
        if settings:
            return settings["objstore_url"], settings
    return None


class Context:
    """What a command needs from the outside world, resolved lazily from args + environment."""

    def __init__(
        self,
        args: argparse.Namespace,
        environ: Mapping[str, str],
        cwd: Path,
        stdout: TextIO,
        stderr: TextIO,
    ):
        self.args = args
        self.environ = environ
        self.cwd = cwd
        self.stdout = stdout
        self.stderr = stderr
        self.redun: dict[str, str] | None = None  # redun.ini [backend], when it named the repository
        self.warnings: Any = None  # objstore.cli._warnings.Warnings of this command

    def warn(self, text: str) -> None:
        """A warning printed once after the command's output (``objstore: warning: …``)."""
        if self.warnings is not None:
            self.warnings.noted.append(text)
        else:
            self.stderr.write(f"{PROG}: warning: {text}\n")

    def repo_url(self) -> str:
        return self.locate().url

    def local_repo_url(self) -> str:
        """The repository this command runs in: $OBJSTORE_REPO, else the nearest .objstore/
        (never --repo, which may name a remote *of* this repository)."""
        url = self.environ.get("OBJSTORE_REPO")
        if url:
            return url
        found = discover(self.cwd, self.environ.get("REDUN_CONFIG"))
        if found is None:
            raise RepositoryNotFound(
                f"not in an objstore repository (no {REPO_DIR}/{FORMAT_FILE}, nor a .redun/redun.ini "
                f"naming one, in {self.cwd} or any parent); use --repo URL or set OBJSTORE_REPO"
            )
        url, self.redun = found
        return url

    def locate(self, given: str | None = None) -> Location:
        """Where a repository is: ``given`` (a URL, a path, or the name of a remote), else
        --repo, else the local repository. A remote name in ``given`` is one of the repository
        --repo names (as `objstore --repo A repo add` added it), else of the local repository;
        --repo's own name is a remote of the local repository. A remote brings its own storage
        options; anything else uses $OBJSTORE_STORAGE_OPTIONS."""
        repo_arg = getattr(self.args, "repo", None)
        value = given or repo_arg
        if not value:
            return Location(self.local_repo_url(), self.storage_options())
        return self._resolve(value, search_repo_arg=bool(given and repo_arg))

    def _resolve(self, value: str, *, search_repo_arg: bool = False) -> Location:
        from objstore.sync.remotes import is_remote_name

        if "://" in value or not is_remote_name(value):
            return Location(value, self.storage_options())
        remote = self._remote(value, search_repo_arg=search_repo_arg)
        if remote is not None:
            return Location(remote.url, remote.storage_options or self.storage_options(), remote.name)
        if (self.cwd / value).exists():
            return Location(str(self.cwd / value), self.storage_options())
        raise UsageError(
            f"{value!r} is neither a remote of this repository nor a path (see `objstore repo list`)"
        )

    def _remote(self, name: str, *, search_repo_arg: bool = False):
        """The remote ``name`` of --repo's repository (when asked), else of the local one, or None."""
        from objstore.sync.remotes import get_remote

        if search_repo_arg:
            home = self.locate()
            try:
                fs, root = self._open_url(home.url, home.storage_options)
                remote = get_remote(fs, root, name)
            except ObjstoreError:  # --repo's repository unreadable: its command says why
                remote = None
            if remote is not None:
                return remote
        try:
            url = self.local_repo_url()
        except RepositoryNotFound:
            return None
        fs, root = self._open_url(url, self.storage_options())
        return get_remote(fs, root, name)

    @staticmethod
    def _open_url(url: str, options: dict[str, Any] | None):
        from objstore.fs import open_url

        with bad_url_is_usage(url):
            return open_url(url, options)

    def cache_home(self) -> Path:
        from objstore.repo import cache_home

        return cache_home(self.environ)

    def index_dir(self, url: str) -> Path:
        from objstore.repo import default_index_dir

        given = getattr(self.args, "index_dir", None) or self.environ.get("OBJSTORE_INDEX_DIR")
        if not given and self.redun:
            from objstore.redun.config import index_dir

            given = index_dir(self.redun, {})
        if given:
            return Path(given)
        return default_index_dir(url, self.cache_home())

    def storage_options(self) -> dict[str, Any] | None:
        """fsspec options of the repository: redun.ini's (when it named the repository), else
        $OBJSTORE_STORAGE_OPTIONS."""
        return self._json_setting("OBJSTORE_STORAGE_OPTIONS", "objstore_storage_options")

    def value_store_options(self) -> dict[str, Any] | None:
        """fsspec options of the repository's value store, read as storage_options is (by
        default the repository's own when both are the same kind of storage)."""
        return self._json_setting("OBJSTORE_VALUE_STORE_OPTIONS", "objstore_value_store_options")

    def _json_setting(self, env_name: str, ini_key: str) -> dict[str, Any] | None:
        from objstore.redun.config import ConfigError, json_object

        # The redun adapter's order (objstore.redun.config): the redun.ini that named this
        # repository, then the environment, so `objstore` and `redun run` agree.
        raw, where = (self.redun or {}).get(ini_key), f"redun.ini {ini_key}"
        if not raw:
            raw, where = self.environ.get(env_name), f"${env_name}"
        if not raw:
            return None
        try:
            return json_object(raw, where)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None

    def open_repo(self, url: str | None = None, **kwargs: Any):
        from objstore.repo import Repository

        where = self.locate(url)
        kwargs.setdefault("value_store_options", self.value_store_options())
        with bad_url_is_usage(where.url):
            return Repository.open(where.url, where.storage_options, index_dir=self.index_dir(where.url), **kwargs)

    def progress(self, label: str):
        """The shared progress display on stderr (objstore.cli._progress.Progress): usable as a
        ``progress(phase, count)`` callback and as a copy's reporter; silent unless stderr is
        a terminal."""
        from objstore.cli._progress import Progress

        return Progress(label, self.stderr)


@contextlib.contextmanager
def no_gc():
    """For a command that reads a lot and prints it: everything it builds lives until it ends,
    so the cyclic collector's passes over ~10^5 live objects only cost (a fifth of a job tree)."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextlib.contextmanager
def bad_url_is_usage(url: str):
    """fs.open_url's ValueError (unknown scheme, no bucket) is the user's typo, not a crash."""
    try:
        yield
    except ObjstoreError:
        raise
    except ValueError as exc:
        raise UsageError(f"cannot use {url!r}: {exc}") from None


def one_line(exc: BaseException) -> str:
    """An error as one line (a server's multi-line message included)."""
    return " ".join(str(exc).split()) or type(exc).__name__


# The command each module registers, so a command line naming one imports and builds only that
# module's parsers (the other eleven cost ~15 ms a command). tests/test_cli.py checks this
# against what each module's register() really adds; a command missing here still works, through
# the whole parser.
COMMANDS = {
    "init": "repository", "reindex": "repository", "upgrade": "repository", "log": "log", "tag": "tag",
    "graph": "graph", "repl": "repl", "cat-object": "objects", "fsck": "maint", "gc": "maint",
    "repack": "maint", "unpack": "maint", "config": "db", "db": "db", "completion": "completion",
    "export": "interchange", "import": "interchange", "migrate-redun": "interchange", "repo": "remote",
    "pull": "sync", "push": "sync", "sync": "sync",
}  # fmt: skip
_GLOBAL_VALUED = ("--repo", "--index-dir")  # the top-level options that take a value


def command_of(argv: list[str]) -> str | None:
    """The command word of a command line after --repo/--index-dir (or an abbreviation argparse
    would take for one); None if there is none, or another option comes first (-h, --version)."""
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-"):
            return arg
        name, eq, _ = arg.partition("=")
        if len(name) < 3 or not any(option.startswith(name) for option in _GLOBAL_VALUED):
            return None
        if not eq:
            next(args, None)  # its value
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the command line, with only its command's module registered when it
    names a known command (help, completion and anything else get every command)."""
    command = command_of(argv) if argv is not None else None
    only = COMMANDS.get(command) if command and command != "completion" else None
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A content-addressed provenance and cache store for workflow schedulers.",
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="show the version and exit")
    parser.add_argument("--repo", metavar="URL", help="repository URL, path, or the name of a remote "
                        f"(default: $OBJSTORE_REPO, else the nearest {REPO_DIR}/ here or above)")
    parser.add_argument("--index-dir", metavar="DIR", help="local index directory (default: "
                        "$OBJSTORE_INDEX_DIR, else under ~/.cache/objstore)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in [f"{__name__}.{only}"] if only else command_modules():
        module = importlib.import_module(name)
        register = getattr(module, "register", None)
        if callable(register):
            register(sub)
    return parser


class _VersionAction(argparse.Action):
    """--version, worked out only when asked for (importlib.metadata costs a tenth of a second)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser._print_message(version_text() + "\n", sys.stdout)  # as argparse's own version action
        parser.exit()


def version_text() -> str:
    """``objstore X (repository format M.N[, redun R])``."""
    from importlib import metadata

    from objstore.format import FORMAT_VERSION

    try:
        mine = metadata.version("objstore")
    except metadata.PackageNotFoundError:
        mine = "(not installed)"
    text = f"{PROG} {mine} (repository format {FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"
    try:
        text += f", redun {metadata.version('redun')}"
    except metadata.PackageNotFoundError:
        pass
    return text + ")"


def _handled_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ObjstoreError]
    try:
        import refs

        errors.append(refs.RefsError)
    except Exception:  # refs is a dependency; a broken one must not hide the real error
        pass
    return tuple(errors)


def _fail(stderr: TextIO, warnings: tuple, exc: BaseException, code: int) -> int:
    """A failed command's warnings, then its error: the error is always the last line (the
    one a script or a user reads), not followed by the warnings it caused."""
    warnings[0].write(stderr)  # prints them once
    stderr.write(f"{PROG}: error: {one_line(exc)}\n")
    return code


def main(
    argv: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage
        return int(exc.code or 0)
    ctx = Context(args, os.environ if environ is None else environ, Path.cwd(), stdout, stderr)
    handled = _handled_errors()
    from objstore.cli import _warnings

    warnings = _warnings.install()
    ctx.warnings = warnings[0]
    try:
        return int(args.func(args, ctx) or 0)
    except UsageError as exc:
        parser.print_usage(stderr)
        return _fail(stderr, warnings, exc, 2)
    except handled as exc:
        return _fail(stderr, warnings, exc, 1)
    except KeyboardInterrupt:
        stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        # `objstore cat-object … | head`: the reader left; say nothing, like git.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    finally:
        _warnings.remove(*warnings)
        warnings[0].write(stderr)


__all__ = [
    "main", "Context", "Location", "UsageError", "bad_url_is_usage", "no_gc", "build_parser", "command_modules", "command_of",
    "COMMANDS", "discover_repo",
    "discover", "redun_settings", "version_text",
]
