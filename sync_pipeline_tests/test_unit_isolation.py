"""`make unit` needs no server: a test without the integration marker that connects to a server it
did not start fails (conftest.no_network_in_unit_tests), and a test asking for the servers is an
integration test whatever its marks say."""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.request

import pytest

from .conftest import NetworkInUnitTest, pytest_collection_modifyitems


def test_a_unit_test_connecting_to_a_server_it_did_not_start_fails_naming_it() -> None:
    with socket.socket() as sock, pytest.raises(NetworkInUnitTest, match="mark it integration"):
        sock.connect(("127.0.0.1", 59200))
    with socket.socket() as sock, pytest.raises(NetworkInUnitTest, match=r"192\.0\.2\.1"):
        sock.connect_ex(("192.0.2.1", 80))  # TEST-NET-1: never a real host


def test_a_server_the_test_runs_itself_may_be_reached() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/", timeout=5) as response:
            assert response.status == 200
    finally:
        server.server_close()


def test_a_test_asking_for_the_servers_is_marked_integration() -> None:
    class Item:
        def __init__(self, name: str, fixturenames: list[str]) -> None:
            self.nodeid = f"sync_pipeline_tests/test_x.py::{name}"
            self.fixturenames, self.marks = fixturenames, []

        def add_marker(self, mark: pytest.MarkDecorator) -> None:
            self.marks.append(mark.name)

    # `scenario` needs `live`, which needs `service_urls`: pytest lists the whole closure
    needs_servers = Item("test_a", ["scenario", "live", "service_urls"])
    pure = Item("test_b", ["tmp_path"])
    pytest_collection_modifyitems([needs_servers, pure])  # type: ignore[list-item]
    assert (needs_servers.marks, pure.marks) == (["integration"], [])
