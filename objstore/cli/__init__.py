"""objstore's command line: the only code that parses argv or reads os.environ.

Commands live in modules of this package; each exposes ``register(subparsers)`` and sets
``func=handler`` on its parsers, where ``handler(args, ctx: Context) -> int | None``. A new
module here is picked up without editing this file (modules starting with ``_`` are skipped).

Where the repository is: ``--repo URL``, else ``$OBJSTORE_REPO``, else the nearest
``.objstore/`` (holding objstore.json) in the working directory or a parent.
Where its index is: ``--index-dir``, else ``$OBJSTORE_INDEX_DIR``, else the rule every entry
point shares (objstore.repo.default_index_dir: under ``$XDG_CACHE_HOME/objstore``, default
``~/.cache/objstore``, keyed by the repository URL).
``$OBJSTORE_STORAGE_OPTIONS`` may hold a JSON object of fsspec options (endpoints, credentials);
``$OBJSTORE_VALUE_STORE_OPTIONS`` the same for the repository's value store.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import pkgutil
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
FIRST = ("repository", "log", "objects", "maint", "db")


def command_modules() -> list[str]:
    """Every command module of this package (modules starting with ``_`` are not)."""
    names = sorted(
        m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
    )
    names.sort(key=lambda n: FIRST.index(n) if n in FIRST else len(FIRST))
    return [f"{__name__}.{n}" for n in names]


def discover_repo(start: Path) -> Path | None:
    """The nearest ``.objstore`` directory holding objstore.json at or above ``start``."""
    start = start.absolute()
    for directory in (start, *start.parents):
        candidate = directory / REPO_DIR
        if (candidate / FORMAT_FILE).is_file():
            return candidate
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

    def repo_url(self) -> str:
        return self.locate().url

    def local_repo_url(self) -> str:
        """The repository this command runs in: $OBJSTORE_REPO, else the nearest .objstore/
        (never --repo, which may name a remote *of* this repository)."""
        url = self.environ.get("OBJSTORE_REPO")
        if url:
            return url
        found = discover_repo(self.cwd)
        if found is None:
            raise RepositoryNotFound(
                f"not in an objstore repository (no {REPO_DIR}/{FORMAT_FILE} in {self.cwd} or any "
                "parent); use --repo URL or set OBJSTORE_REPO"
            )
        return str(found)

    def locate(self, given: str | None = None) -> Location:
        """Where a repository is: ``given`` (a URL, a path, or the name of a remote of the
        local repository), else --repo, else the local repository. A remote brings its own
        storage options; anything else uses $OBJSTORE_STORAGE_OPTIONS."""
        value = given or getattr(self.args, "repo", None)
        if not value:
            return Location(self.local_repo_url(), self.storage_options())
        return self._resolve(value)

    def _resolve(self, value: str) -> Location:
        from objstore.sync.remotes import is_remote_name

        if "://" in value or not is_remote_name(value):
            return Location(value, self.storage_options())
        remote = self._remote(value)
        if remote is not None:
            return Location(remote.url, remote.storage_options or self.storage_options(), remote.name)
        if (self.cwd / value).exists():
            return Location(str(self.cwd / value), self.storage_options())
        raise UsageError(
            f"{value!r} is neither a remote of this repository nor a path (see `objstore repo list`)"
        )

    def _remote(self, name: str):
        """The remote ``name`` of the local repository, or None (also when there is none)."""
        from objstore.sync.remotes import get_remote

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
        if given:
            return Path(given)
        return default_index_dir(url, self.cache_home())

    def storage_options(self) -> dict[str, Any] | None:
        raw = self.environ.get("OBJSTORE_STORAGE_OPTIONS")
        if not raw:
            return None
        try:
            options = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"OBJSTORE_STORAGE_OPTIONS is not valid JSON: {exc}") from None
        if not isinstance(options, dict):
            raise UsageError("OBJSTORE_STORAGE_OPTIONS must be a JSON object")
        return options

    def value_store_options(self) -> dict[str, Any] | None:
        """$OBJSTORE_VALUE_STORE_OPTIONS: fsspec options for the repository's value store (by
        default the repository's own when both are the same kind of storage)."""
        raw = self.environ.get("OBJSTORE_VALUE_STORE_OPTIONS")
        if not raw:
            return None
        try:
            options = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"OBJSTORE_VALUE_STORE_OPTIONS is not valid JSON: {exc}") from None
        if not isinstance(options, dict):
            raise UsageError("OBJSTORE_VALUE_STORE_OPTIONS must be a JSON object")
        return options

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A content-addressed provenance and cache store for workflow schedulers.",
    )
    parser.add_argument("--repo", metavar="URL", help="repository URL, path, or the name of a remote "
                        f"(default: $OBJSTORE_REPO, else the nearest {REPO_DIR}/ here or above)")
    parser.add_argument("--index-dir", metavar="DIR", help="local index directory (default: "
                        "$OBJSTORE_INDEX_DIR, else under ~/.cache/objstore)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        module = importlib.import_module(name)
        register = getattr(module, "register", None)
        if callable(register):
            register(sub)
    return parser


def _handled_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ObjstoreError]
    try:
        import refs

        errors.append(refs.RefsError)
    except Exception:  # refs is a dependency; a broken one must not hide the real error
        pass
    return tuple(errors)


def main(
    argv: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage
        return int(exc.code or 0)
    ctx = Context(args, os.environ if environ is None else environ, Path.cwd(), stdout, stderr)
    handled = _handled_errors()
    try:
        return int(args.func(args, ctx) or 0)
    except UsageError as exc:
        parser.print_usage(stderr)
        stderr.write(f"{PROG}: error: {one_line(exc)}\n")
        return 2
    except handled as exc:
        stderr.write(f"{PROG}: error: {one_line(exc)}\n")
        return 1
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


__all__ = ["main", "Context", "Location", "UsageError", "bad_url_is_usage", "build_parser", "command_modules", "discover_repo"]
