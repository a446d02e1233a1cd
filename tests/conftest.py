"""Session servers and the `target` fixture every conformance test runs on.

    def test_something(target):          # runs on memory, local, s3, gcs, azure
        fs = target.fs(); fs.pipe_file(f"{target.root}/x", b"1")

Servers start lazily: a run that never touches a remote backend (``-k memory``) starts
none. Use ``-m "not remote"`` to run only memory and local.
"""

from __future__ import annotations

import pytest

import servers  # sets GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT before anything imports gcsfs


def pytest_configure(config):
    config.addinivalue_line("markers", "remote: needs a loopback object-store server (s3, gcs, azure)")


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


@pytest.fixture(params=servers.backend_params())
def target(request, tmp_path):
    t = servers.make_target_for(request, tmp_path)
    try:
        yield t
    finally:
        servers.discard_target(t)
