"""`make unit` needs no server: a test in unit/ that connects to a server it did not start fails
(conftest.no_network_in_unit_tests), and one that asks for the servers fails before they are started,
saying to move it (conftest.pytest_runtest_setup). A test's kind marker is its folder."""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.request

import pytest

from sync_pipeline_tests.conftest import (
    TESTS,
    NetworkInUnitTest,
    ServersInUnitTest,
    pytest_collection_modifyitems,
    pytest_runtest_setup,
)


def test_a_unit_test_connecting_to_a_server_it_did_not_start_fails_naming_it() -> None:
    with socket.socket() as sock, pytest.raises(NetworkInUnitTest, match="move it to integration/"):
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


class Item:
    """What the hooks read of a collected test."""

    def __init__(self, module: str, name: str, fixturenames: list[str]) -> None:
        self.path, self.name = TESTS / module, name
        self.nodeid = f"sync_pipeline_tests/{module}::{name}"
        self.fixturenames, self.marks = fixturenames, []

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.marks.append(mark.name)


def test_a_tests_kind_is_its_folder_and_a_unit_test_asking_for_the_servers_fails_saying_to_move_it() -> None:
    # `scenario` needs `live`, which needs `service_urls`: pytest lists the whole closure
    servers = ["scenario", "live", "service_urls"]
    with pytest.raises(ServersInUnitTest, match="move it to sync_pipeline_tests/integration/"):
        pytest_runtest_setup(Item("unit/test_x.py", "test_a", servers))  # type: ignore[arg-type]
    pytest_runtest_setup(Item("unit/test_x.py", "test_b", ["tmp_path"]))  # type: ignore[arg-type]
    pytest_runtest_setup(Item("integration/test_x.py", "test_c", servers))  # type: ignore[arg-type]

    items = [
        Item("unit/test_x.py", "test_a", ["tmp_path"]),
        Item("integration/test_x.py", "test_b", ["service_urls"]),
        Item("chaos/test_x.py", "test_c", ["service_urls"]),
        Item("e2e/test_x.py", "test_d", ["tmp_path"]),
        Item(
            "integration/test_correctness.py", "test_verify_fix_repairs_every_kind_of_drift", ["service_urls"]
        ),
    ]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [item.marks for item in items] == [
        ["unit"],
        ["integration"],
        ["chaos"],
        ["e2e"],
        ["integration", "compat"],
    ]
