"""Warnings of one command, printed once at its end: one line per damaged object.

The library logs what it skips (a corrupt object, an unreadable journal segment) on the
``objstore`` logger; queries also note, in their own words, what a damaged object left out of
an answer. A command shows both as ``objstore: warning: …`` lines on stderr after its output,
the query's first, and a logged warning only if it names an object no earlier line named.
"""

from __future__ import annotations

import logging
import re
from typing import TextIO

_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.noted: list[str] = []  # from the command itself (ctx.warn)
        self.logged: list[str] = []  # from the objstore logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.logged.append(record.getMessage())
        except Exception:  # a bad log call must not fail the command
            pass

    def lines(self) -> list[str]:
        out: list[str] = []
        named: set[str] = set()
        for text in [*self.noted, *self.logged]:
            text = text.removeprefix("objstore: ")
            ids = set(_ID.findall(text))
            if text in out or (ids and ids <= named):
                continue
            named |= ids
            out.append(text)
        return out

    def write(self, stream: TextIO) -> None:
        """Print the warnings so far, once (a command that fails prints them before its one
        error line, so the error is always the last line)."""
        for text in self.lines():
            stream.write(f"objstore: warning: {text}\n")
        self.noted.clear()
        self.logged.clear()


def install() -> tuple[Warnings, logging.Logger, bool]:
    handler = Warnings()
    logger = logging.getLogger("objstore")
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # no second copy from logging's last-resort handler
    return handler, logger, propagate


def remove(handler: Warnings, logger: logging.Logger, propagate: bool) -> None:
    logger.removeHandler(handler)
    logger.propagate = propagate


__all__ = ["Warnings", "install", "remove"]
