"""The one progress display of every long command: a tqdm bar on a terminal, nothing on a pipe.

``Progress(label, stream)`` is two things at once, so every caller can use the form it has:

* the repository's ``progress(phase, count)`` callback (refresh, reindex, and whatever else
  counts items as it goes): one bar per phase, counting;
* a copy's reporter (objstore.sync.transfer.Reporter): ``phase(name, files, bytes)`` opens a
  bar over the bytes to move, ``advance(files, bytes, objects)`` moves it, with the objects
  copied and their rate beside the byte rate.

tqdm is imported only when a bar is actually drawn, so a command whose stderr is a pipe or a
file pays nothing for it and prints nothing.
"""

from __future__ import annotations

import os
import time
from typing import Any, TextIO


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _columns(stream: Any) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


class Progress:
    def __init__(self, label: str, stream: TextIO, *, enabled: bool | None = None, interval: float = 0.2):
        self.label = label
        self.stream = stream
        self.interval = interval  # at most this often a redraw
        self.enabled = is_terminal(stream) if enabled is None else enabled
        self._bar: Any = None
        self._phase: str | None = None
        self._objects = 0
        self._started = 0.0

    def _open(self, phase: str, **options: Any) -> None:
        self.close()
        from tqdm import tqdm

        self._phase = phase
        self._objects = 0
        self._started = time.monotonic()
        # A terminal that reports no size (a fresh pty, some CI consoles) would get an empty bar.
        sizing = {"dynamic_ncols": True} if _columns(self.stream) else {"ncols": 80, "nrows": 24}
        self._bar = tqdm(
            desc=f"{self.label}: {phase}", file=self.stream, leave=False, mininterval=self.interval,
            miniters=1, **sizing, **options,
        )  # fmt: skip

    # -- progress(phase, count): the repository's callback ----------------------------------

    def __call__(self, phase: str, count: int) -> None:
        if not self.enabled:
            return
        if self._bar is None or phase != self._phase:
            self._open(phase, unit=" items")
        self._bar.update(max(0, count - self._bar.n))

    # -- a copy's reporter ------------------------------------------------------------------

    def phase(self, name: str, files: int, nbytes: int) -> None:
        if not self.enabled:
            return
        if nbytes:
            # Bytes on the bar, the objects and their rate beside it: kept short enough for 80 columns.
            self._open(name, total=nbytes, unit="B", unit_scale=True, unit_divisor=1024,
                       bar_format="{desc} {percentage:3.0f}%|{bar:12}| {n_fmt}/{total_fmt} {rate_fmt}{postfix}")
        else:
            self._open(name, total=files, unit=" files")

    def advance(self, files: int, nbytes: int, objects: int) -> None:
        if not self.enabled or self._bar is None:
            return
        self._objects += objects
        if self._bar.unit == "B":
            elapsed = max(time.monotonic() - self._started, 1e-6)
            self._bar.set_postfix_str(f"{self._objects:,} objects {self._objects / elapsed:,.0f}/s", refresh=False)
            self._bar.update(nbytes)
        else:
            self._bar.update(files)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Progress", "is_terminal"]
