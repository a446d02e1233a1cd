"""What every hostile test shares: the recorded bases (once per session), a fresh copy per
case, the command's environment, the CLI server, and a redun Scheduler on ObjstoreBackend."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from redun import Scheduler
from redun.config import Config

from hostile import corpus
from hostile import workflow as wf
from hostile.cli import CLI
from objstore.redun import ObjstoreBackend

_BASES: dict[tuple[str, bool], corpus.Repo] = {}
_CLI: list[CLI] = []


def base(tmp_path_factory, *, loose: bool = False) -> corpus.Repo:
    """The recorded repository (packed, or loose objects), recorded once per session."""
    key = (str(tmp_path_factory.getbasetemp()), loose)
    if key not in _BASES:
        _BASES[key] = corpus.record(tmp_path_factory.mktemp("hostile-base") / "repo", loose=loose)
    return _BASES[key]


def cli() -> CLI:
    if not _CLI:
        _CLI.append(CLI())
    return _CLI[0]


def close_cli() -> None:
    while _CLI:
        _CLI.pop().close()


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OBJSTORE_", "REDUN_")) and k not in ("XDG_CACHE_HOME", "PAGER")}  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    return env


class Case:
    """One damaged copy: ``case.objstore(*args)`` runs the CLI on it (its own HOME, so its own
    index); ``case.run(expr)`` runs a redun Scheduler on ObjstoreBackend over it."""

    def __init__(self, repo: corpus.Repo, tmp: Path):
        self.repo = repo
        self.tmp = tmp
        self.env = clean_env(tmp / "home")
        self.runs = 0

    def objstore(self, *args: str, stdin: str = ""):
        return cli().run(["--repo", self.repo.url, *args], cwd=self.tmp, env=self.env, stdin=stdin)

    def cli(self, *args: str, stdin: str = ""):
        """The CLI without --repo (for arguments that are the test themselves)."""
        return cli().run(list(args), cwd=self.tmp, env=self.env, stdin=stdin)

    @contextlib.contextmanager
    def backend(self, index: str | None = None, **kwargs) -> Iterator[ObjstoreBackend]:
        self.runs += 1
        b = ObjstoreBackend(self.repo.url, index_dir=str(self.tmp / (index or f"ix-run{self.runs}")), **kwargs)
        try:
            yield b
        finally:
            with contextlib.suppress(Exception):
                b.close()

    def run(self, expr, *, index: str | None = None):
        """(result, what ran) of one Scheduler run of ``expr``."""
        with self.backend(index) as b:
            wf.RAN.clear()
            result = Scheduler(config=Config(corpus.CONFIG), backend=b).run(expr)
            return result, list(wf.RAN)
