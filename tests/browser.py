"""Headless Chromium for tests of self-contained HTML pages (reports, graphs).

Debian's /usr/bin/chromium is driven over the DevTools protocol by Playwright's sync API
(``playwright`` on PyPI ships its own node driver and never downloads a browser here).
One browser per pytest session, started on first use; every page gets a new browser
context (no shared cookies, storage or cache).

    def test_report(load_page, tmp_path):            # fixtures in conftest.py
        page = load_page(tmp_path / "report.html")   # a Path, a file path or a URL
        assert page.console_errors == []
        assert "main" in page.texts("svg g.node text")
        assert page.screenshot_path.stat().st_size > 0   # taken after load
        page.run(lambda p: p.click("text=main"))      # anything Playwright can do

Playwright's sync objects belong to the thread that started them, and while they exist that
thread looks as if it were inside a running asyncio loop (asyncio.run() refuses to start).
So the browser lives in a thread of its own and nothing here hands a Playwright object to the
caller: use the PageResult methods, or `run(fn)`, which calls fn(page) in that thread.
"""

from __future__ import annotations

import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import servers

CHROMIUM = Path("/usr/bin/chromium")
# What works here as root with no network (shared/reference/postgres-chromium-graphviz.md).
# Playwright adds --headless and a fresh temporary --user-data-dir of its own (and refuses one
# in args), and deletes that profile when the browser closes.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# console message types that count as errors: console.error() and failed console.assert()
# (Chromium also reports resources that fail to load as console errors).
ERROR_TYPES = ("error", "assert")
CALL_TIMEOUT = 120.0  # seconds for any one call into the browser thread


def find_chromium() -> str:
    return servers.find_executable("chromium", CHROMIUM, hint=servers.APT_HINT)


def page_url(target: str | Path) -> str:
    """A URL for a Path or an existing file's path; anything else is taken as a URL."""
    if isinstance(target, Path) or "://" not in str(target):
        path = Path(target).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no such page: {path}")
        return path.as_uri()
    return str(target)


@dataclass
class ConsoleEntry:
    type: str  # "log", "error", "warning", "assert", ... or "pageerror" (uncaught exception)
    text: str
    location: str = ""

    def __str__(self) -> str:
        where = f" ({self.location})" if self.location else ""
        return f"[{self.type}] {self.text}{where}"


@dataclass
class PageResult:
    """One loaded page, open until `close()` (the `load_page` fixture closes it after the test).

    `console`, `console_errors` and `requests` keep filling while the page is open: after a
    `run(...)` that clicks something they include what the click caused.
    """

    url: str
    browser: Browser
    console: list[ConsoleEntry] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    screenshot_path: Path | None = None
    _page: Any = None
    _context: Any = None
    _final_dom: str | None = None

    @property
    def console_errors(self) -> list[str]:
        """console.error()/failed console.assert() texts, then `uncaught <Name>: <message>`
        for each uncaught exception, in the order they happened."""
        return [e.text for e in self.console if e.type in ERROR_TYPES or e.type == "pageerror"]

    @property
    def external_requests(self) -> list[str]:
        """Requests that left the page's own files (a self-contained page makes none)."""
        local = ("file:", "data:", "blob:", "about:")
        return [u for u in self.requests if not u.startswith(local)]

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """fn(page) in the browser thread, with Playwright's sync `Page`; returns fn's result.
        Return plain data from fn, never a Playwright object."""
        if self._page is None:
            raise RuntimeError(f"page {self.url} is closed")
        return self.browser.call(fn, self._page)

    @property
    def dom(self) -> str:
        """The rendered DOM as HTML (document.documentElement.outerHTML, after scripts ran)."""
        if self._page is None:
            return self._final_dom or ""
        return self.run(lambda p: p.content())

    @property
    def text(self) -> str:
        """What the page shows as text (body.innerText)."""
        return self.run(lambda p: p.inner_text("body"))

    def texts(self, selector: str) -> list[str]:
        """textContent of every element matching a CSS (or Playwright) selector; SVG too."""
        return self.run(lambda p: p.locator(selector).all_text_contents())

    def count(self, selector: str) -> int:
        return self.run(lambda p: p.locator(selector).count())

    def evaluate(self, expression: str, arg: Any = None) -> Any:
        """A JavaScript expression or function evaluated in the page (JSON-able result)."""
        return self.run(lambda p: p.evaluate(expression, arg))

    def screenshot(self, path: str | Path, *, full_page: bool = True) -> Path:
        """A PNG of the whole page (of the viewport with full_page=False, and always for a
        document that is not HTML, such as an .svg file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.run(lambda p: p.screenshot(path=str(path), full_page=full_page and _is_html(p)))
        return path

    def close(self) -> None:
        if self._page is None:
            return
        page, context = self._page, self._context

        def close_it():
            try:
                return page.content()
            finally:
                context.close()

        try:
            self._final_dom = self.browser.call(close_it)
        finally:
            self._page = self._context = None

    def __enter__(self) -> PageResult:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_html(page) -> bool:
    # Playwright's full-page screenshot of a bare SVG document never finishes (it times
    # out after 30 s here); such a document has no <body>, and its viewport shot is fine.
    return page.evaluate("() => document.body !== null")


class Browser:
    """Headless Chromium in a thread of its own; `close()` is idempotent."""

    def __init__(self, executable: str | None = None, *, extra_flags: list[str] = ()):
        self.executable = executable or find_chromium()
        self.flags = [*CHROMIUM_FLAGS, *extra_flags]
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._lock = threading.Lock()
        self._playwright = None
        self._browser = None
        self.version = ""

    def call(self, fn: Callable, *args: Any, timeout: float = CALL_TIMEOUT) -> Any:
        """fn(*args) in the browser thread (Playwright's sync objects live there)."""
        return self._thread.submit(fn, *args).result(timeout)

    def start(self) -> Browser:
        with self._lock:
            if self._browser is None:
                self.call(self._start)
        return self

    def _start(self) -> None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise servers.ServerUnavailable(f"playwright is not installed: {servers.INSTALL_HINT}") from None
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable, args=self.flags, headless=True
            )
        except Exception as exc:
            self._playwright.stop()
            self._playwright = None
            raise servers.ServerUnavailable(
                f"headless Chromium ({self.executable}) did not start: {exc}\n({servers.APT_HINT})"
            ) from exc
        self.version = self._browser.version

    def load_page(
        self,
        target: str | Path,
        *,
        screenshot: str | Path | None = None,
        wait_for: str | None = None,
        settle_ms: int = 50,
        viewport: tuple[int, int] = (1200, 800),
        timeout_ms: int = 30_000,
    ) -> PageResult:
        """Open `target` in a new context, wait for its load event (and `wait_for`, a
        selector, if given), let timers and two animation frames run, and return it open.

        `screenshot`: a PNG path to write once the page has settled (full page).
        """
        self.start()
        url = page_url(target)
        result = PageResult(url, self)

        def load():
            context = self._browser.new_context(
                viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1
            )
            context.set_default_timeout(timeout_ms)
            page = context.new_page()
            result._page, result._context = page, context

            def on_console(msg):
                loc = msg.location or {}
                where = f"{loc.get('url', '')}:{loc.get('lineNumber', 0) + 1}" if loc.get("url") else ""
                result.console.append(ConsoleEntry(msg.type, msg.text, where))

            def on_pageerror(error):
                result.console.append(ConsoleEntry("pageerror", f"uncaught {error.name}: {error.message}"))

            page.on("console", on_console)
            page.on("pageerror", on_pageerror)
            page.on("request", lambda r: result.requests.append(r.url))
            page.on("requestfailed", lambda r: result.failed_requests.append(f"{r.url} {r.failure}"))
            page.goto(url, wait_until="load", timeout=timeout_ms)
            if wait_for:
                page.wait_for_selector(wait_for, timeout=timeout_ms)
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            if settle_ms:
                page.wait_for_timeout(settle_ms)
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=_is_html(page))

        try:
            self.call(load)
        except BaseException:
            if result._context is not None:
                self.call(result._context.close)
                result._page = result._context = None
            raise
        if screenshot is not None:
            result.screenshot_path = Path(screenshot)
        return result

    def close(self) -> None:
        with self._lock:
            if self._playwright is not None:
                try:
                    self.call(self._stop, timeout=60)
                finally:
                    self._playwright = self._browser = None
        self._thread.shutdown(wait=True)

    def _stop(self) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            self._playwright.stop()


# ---------------------------------------------------------------- PNG checks (no Pillow)


def png_size(path: str | Path) -> tuple[int, int]:
    data = Path(path).read_bytes()[:24]
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    return struct.unpack(">II", data[16:24])


def png_pixels(path: str | Path) -> tuple[int, int, list[list[tuple[int, ...]]]]:
    """(width, height, rows of RGB(A) tuples) of an 8-bit, non-interlaced RGB/RGBA PNG,
    which is what Chromium's screenshots are. Enough to check what a screenshot shows."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append([tuple(line[x : x + bpp]) for x in range(0, stride, bpp)])
        prev = line
    return width, height, rows
