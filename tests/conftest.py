"""Session servers and the `target` fixture every conformance test runs on.

    def test_something(target):          # runs on memory, local, s3, gcs, azure
        fs = target.fs(); fs.pipe_file(f"{target.root}/x", b"1")

Servers start lazily: a run that never touches a remote backend (``-k memory``) starts
none. Use ``-m "not remote"`` to run only memory and local.

Also, started the same lazy way: `postgres_server` / `postgres_db` (PostgreSQL),
`chromium` / `load_page` (headless Chromium, tests/browser.py) and `graphviz_dot`.
"""

from __future__ import annotations

import pytest

import servers  # sets GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT before anything imports gcsfs


def pytest_configure(config):
    config.addinivalue_line("markers", "remote: needs a loopback object-store server (s3, gcs, azure)")
    config.addinivalue_line("markers", "slow: runs for a minute or more; collected first (see below)")


def pytest_collection_modifyitems(config, items):
    """The `slow` tests first, the rest in file order: on tools/test.sh's two workers a
    minutes-long test that starts last runs alone at the end while the other core idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _server_fixture(start):
    @pytest.fixture(scope="session")
    def fixture(tmp_path_factory):
        try:
            server = start(tmp_path_factory.mktemp("servers"))
        except servers.ServerUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield server
        finally:
            server.stop()

    return fixture


s3_server = _server_fixture(servers.start_s3)
gcs_server = _server_fixture(servers.start_gcs)
azure_server = _server_fixture(servers.start_azure)
# A PostgreSQL cluster: .uri, .new_database() -> a fresh database's URI (postgres_db below).
postgres_server = _server_fixture(servers.start_postgres)


@pytest.fixture
def postgres_db(postgres_server):
    """The URI of a new, empty database on the session's PostgreSQL server."""
    return postgres_server.new_database()


@pytest.fixture(scope="session")
def chromium():
    """A started headless Chromium (browser.Browser), one per session."""
    import browser

    try:
        chrome = browser.Browser().start()
    except servers.ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield chrome
    finally:
        chrome.close()


@pytest.fixture
def load_page(chromium, tmp_path):
    """load_page(path_or_url, **options) -> browser.PageResult, screenshot included.

    Each call writes a full-page screenshot to tmp_path (result.screenshot_path) unless
    screenshot= names another path or is None; every page is closed after the test.
    """
    pages = []

    def load(target, *, screenshot="auto", **options):
        if screenshot == "auto":
            screenshot = tmp_path / f"screenshot-{len(pages) + 1}.png"
        page = chromium.load_page(target, screenshot=screenshot, **options)
        pages.append(page)
        return page

    try:
        yield load
    finally:
        for page in pages:
            page.close()


@pytest.fixture(scope="session")
def graphviz_dot():
    """The path of Graphviz's `dot` (a failure naming the install when it is missing)."""
    try:
        return servers.find_dot()
    except servers.ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=servers.backend_params())
def target(request, tmp_path):
    t = servers.make_target_for(request, tmp_path)
    try:
        yield t
    finally:
        servers.discard_target(t)
