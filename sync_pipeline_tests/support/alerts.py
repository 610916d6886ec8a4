"""A real local HTTP receiver for alert webhooks (`http_receiver`, a fixture of every module)."""

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# --- real receivers -----------------------------------------------------------------------------


@dataclass
class HttpReceiver:
    server: ThreadingHTTPServer
    requests: list[dict] = field(default_factory=list)
    status: int = 200

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture()
def http_receiver() -> Iterator[HttpReceiver]:
    receiver: HttpReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(receiver.status)
            self.send_header("Content-Type", "text/plain")
            if 300 <= receiver.status < 400:
                self.send_header("Location", "/elsewhere")
            self.end_headers()
            self.wfile.write(b"ok" if receiver.status < 300 else b"internal trouble")

        def log_message(self, format, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = HttpReceiver(server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join(5)
