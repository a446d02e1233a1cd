"""The PostgreSQL, headless-Chromium and Graphviz test infrastructure really works.

Each test drives the real thing (a PostgreSQL server that redun records into, a Chromium
that runs scripts and paints pixels, dot's real output) and checks an answer that a broken
fixture could not give.
"""

from __future__ import annotations

import asyncio
import re

import pytest
import sqlalchemy as sa
from redun import Scheduler, task
from redun.backends.db import RedunBackendDb
from redun.config import Config

import browser
import servers

# ---------------------------------------------------------------- PostgreSQL

CALLS: list[tuple] = []  # task bodies that actually ran (the default executor uses threads)


@task(namespace="objstore_infra")
def square(x: int) -> int:
    CALLS.append(("square", x))
    return x * x


@task(namespace="objstore_infra")
def total(values: list) -> int:
    CALLS.append(("total", len(values)))
    return sum(values)


@task(namespace="objstore_infra")
def pipeline(n: int) -> int:
    return total([square(i) for i in range(n)])


def _run_recorded(uri: str, n: int) -> int:
    """One redun run in a new backend and scheduler, as a new process would do it."""
    backend = RedunBackendDb(db_uri=uri)
    scheduler = Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend)
    scheduler.load(migrate=True)  # creates redun's schema (alembic) in the empty database
    try:
        return scheduler.run(pipeline(n))
    finally:
        backend.engine.dispose()


def _scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def test_postgres_databases_are_real_and_separate(postgres_server):
    first, second = postgres_server.new_database(), postgres_server.new_database()
    assert first != second and first.startswith(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/")
    one, two = sa.create_engine(first), sa.create_engine(second)
    try:
        with one.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1), (2)"))
        assert _scalar(one, "SELECT sum(x) FROM t") == 3
        assert _scalar(one, "SELECT current_database()") == first.rsplit("/", 1)[1]
        assert _scalar(one, "SHOW server_version").startswith(postgres_server.bin_dir.parent.name)
        assert one.dialect.driver == "psycopg"  # plain postgresql:// goes to psycopg 3
        assert _scalar(two, "SELECT count(*) FROM pg_tables WHERE tablename = 't'") == 0
    finally:
        one.dispose()
        two.dispose()


def test_redun_records_into_postgres_and_hits_its_cache(postgres_db):
    CALLS.clear()
    assert _run_recorded(postgres_db, 5) == 0 + 1 + 4 + 9 + 16
    assert sorted(CALLS) == sorted([("square", i) for i in range(5)] + [("total", 5)])

    engine = sa.create_engine(postgres_db)
    try:
        assert _scalar(engine, "SELECT count(*) FROM execution") == 1
        # pipeline, five squares and total: one job each
        assert _scalar(engine, "SELECT count(*) FROM job") == 7
        assert _scalar(engine, "SELECT count(*) FROM job WHERE cached") == 0
        assert _scalar(engine, "SELECT count(DISTINCT call_hash) FROM job") == 7
        assert _scalar(engine, "SELECT count(*) FROM task WHERE namespace = 'objstore_infra'") == 3

        # A second run with a new backend: answered from the database, no task body runs.
        CALLS.clear()
        assert _run_recorded(postgres_db, 5) == 30
        assert CALLS == []
        assert _scalar(engine, "SELECT count(*) FROM execution") == 2
        second = _scalar(engine, "SELECT id FROM execution ORDER BY updated_time DESC LIMIT 1")
        # redun records the whole job tree again, every job a cache hit
        assert _scalar(engine, "SELECT count(*) FROM job WHERE execution_id = :e", e=second) == 7
        assert _scalar(engine, "SELECT count(*) FROM job WHERE execution_id = :e AND cached", e=second) == 7

        # A new argument is new work again: only the new square and a new total run.
        CALLS.clear()
        assert _run_recorded(postgres_db, 6) == 55
        assert sorted(CALLS) == [("square", 5), ("total", 6)]
    finally:
        engine.dispose()


def test_missing_postgres_is_a_failure_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "15" / "bin").mkdir(parents=True)  # a version dir without the programs
    with pytest.raises(servers.ServerUnavailable, match="apt-get install .*postgresql"):
        servers.postgres_bin_dir(root=tmp_path)


# ---------------------------------------------------------------- Chromium

CLEAN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>infra check</title>
<style>body { margin: 0; background: #fff; font: 16px sans-serif; }</style></head>
<body>
<h1 id="title">Provenance report</h1>
<svg id="graph" width="200" height="100" xmlns="http://www.w3.org/2000/svg">
  <rect x="0" y="0" width="200" height="100" fill="#ff0000"/>
  <text x="20" y="55" fill="#000">node-a</text>
</svg>
<p id="js">not rendered</p>
<script>
  document.getElementById("js").textContent = "rendered by script";
  console.log("a log line is not an error");
  console.warn("nor is a warning");
</script>
</body></html>
"""

BROKEN_PAGE = """<!doctype html>
<html><body><p>broken</p>
<script>console.error("x");</script>
<script>throw new TypeError("thrown at load");</script>
<script>setTimeout(() => { throw new Error("thrown later"); }, 0);</script>
<img src="missing-image.png">
</body></html>
"""


def test_chromium_renders_a_clean_page(load_page, tmp_path):
    path = tmp_path / "clean.html"
    path.write_text(CLEAN_PAGE)
    page = load_page(path, viewport=(400, 300))

    assert page.console_errors == [], page.console
    assert [e.type for e in page.console] == ["log", "warning"]  # the detector sees the console
    assert page.url == path.resolve().as_uri()
    assert page.external_requests == [] and page.failed_requests == []
    # the script ran before the DOM was read
    assert '<p id="js">rendered by script</p>' in page.dom
    assert "Provenance report" in page.text and "rendered by script" in page.text
    assert page.texts("svg#graph text") == ["node-a"]
    assert page.count("svg rect") == 1
    assert page.evaluate("() => document.title") == "infra check"

    # The screenshot is a real picture of the page: the 200x100 red SVG rect (body margin 0,
    # under the heading) is painted, and the rest of the page is mostly white.
    shot = page.screenshot_path
    assert shot is not None and shot.is_file()
    assert browser.png_size(shot) == (400, 300)
    width, height, rows = browser.png_pixels(shot)
    red = sum(1 for row in rows for px in row if px[0] > 200 and px[1] < 60 and px[2] < 60)
    white = sum(1 for row in rows for px in row if min(px[:3]) > 240)
    assert 200 * 100 * 0.9 <= red <= 200 * 100, red
    assert white > width * height * 0.5
    top = next(y for y, row in enumerate(rows) if row[100][0] > 200 and row[100][1] < 60)
    assert 30 < top < 150  # below the heading, not at the top: the layout was rendered

    # screenshot() on demand, after the page changed
    page.run(lambda p: p.evaluate("() => { document.getElementById('graph').remove(); }"))
    again = page.screenshot(tmp_path / "after.png", full_page=False)
    _, _, rows = browser.png_pixels(again)
    assert not any(px[0] > 200 and px[1] < 60 and px[2] < 60 for row in rows for px in row)


def test_chromium_reports_console_errors_and_uncaught_exceptions(load_page, tmp_path):
    path = tmp_path / "broken.html"
    path.write_text(BROKEN_PAGE)
    page = load_page(path, screenshot=None)
    errors = page.console_errors
    assert "x" in errors
    assert "uncaught TypeError: thrown at load" in errors
    assert "uncaught Error: thrown later" in errors  # after the load event: the settle wait
    assert any(re.search(r"Failed to load resource.*ERR_FILE_NOT_FOUND", e) for e in errors), errors
    assert len(errors) == 4, page.console
    assert page.failed_requests and "missing-image.png" in page.failed_requests[0]
    assert page.screenshot_path is None

    # errors keep being collected while the page is open (say, after a click)
    page.run(lambda p: p.evaluate("() => setTimeout(() => console.error('after a click'), 0)"))
    page.run(lambda p: p.wait_for_timeout(50))
    assert page.console_errors[-1] == "after a click"


def test_chromium_pages_are_isolated(load_page, tmp_path):
    (tmp_path / "a.html").write_text("<script>localStorage.setItem('k', 'v')</script><p>a</p>")
    (tmp_path / "b.html").write_text("<p>b</p>")
    first = load_page(tmp_path / "a.html", screenshot=None)
    assert first.evaluate("() => localStorage.getItem('k')") == "v"
    second = load_page(str(tmp_path / "b.html"), screenshot=None)  # a plain path works too
    assert second.evaluate("() => localStorage.getItem('k')") is None
    first.close()
    assert "<p>a</p>" in first.dom  # the last DOM stays readable after close
    with pytest.raises(RuntimeError, match="closed"):
        first.run(lambda p: p.title())


def test_asyncio_still_runs_beside_the_browser(load_page, tmp_path):
    """Playwright's sync API in the test thread would make asyncio.run() raise for the rest
    of the session ("cannot be called from a running event loop"); it lives in its own."""
    (tmp_path / "p.html").write_text("<p>p</p>")
    page = load_page(tmp_path / "p.html", screenshot=None)

    async def answer():
        await asyncio.sleep(0)
        return 42

    assert asyncio.run(answer()) == 42
    assert page.texts("p") == ["p"]
    assert asyncio.run(answer()) == 42


def test_missing_chromium_or_dot_is_a_failure_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in ("chromium", "dot"):
        with pytest.raises(servers.ServerUnavailable, match="apt-get install .*chromium graphviz"):
            servers.find_executable(name, tmp_path / name, hint=servers.APT_HINT)
    with pytest.raises(FileNotFoundError):
        browser.page_url(tmp_path / "no-such-page.html")


# ---------------------------------------------------------------- Graphviz


DOT_GRAPH = 'digraph g { "alpha node" -> "beta node"; }'


def test_dot_svg_renders_in_chromium(graphviz_dot, load_page, tmp_path):
    svg = servers.run_dot(DOT_GRAPH, "svg", dot=graphviz_dot)
    assert "<svg" in svg and svg.count('class="node"') == 2 and svg.count('class="edge"') == 1

    # inline in a self-contained HTML page, the way a report embeds it
    inline = svg[svg.index("<svg") :]
    html = tmp_path / "graph.html"
    html.write_text(f"<!doctype html><html><body><h1>graph</h1>{inline}</body></html>")
    page = load_page(html)
    assert page.console_errors == [], page.console
    assert page.texts("svg g.node text") == ["alpha node", "beta node"]
    assert page.texts("svg g.edge title") == ["alpha node->beta node"]
    # the graph has a real size on the page (dot's layout survived into the DOM)
    box = page.evaluate("() => { const r = document.querySelector('svg').getBoundingClientRect();"
                        " return [r.width, r.height]; }")
    assert box[0] > 50 and box[1] > 100, box

    # and as an SVG document of its own
    (tmp_path / "graph.svg").write_text(svg)
    page = load_page(tmp_path / "graph.svg")
    assert page.console_errors == []
    assert page.texts("g.node text") == ["alpha node", "beta node"]
