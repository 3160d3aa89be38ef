"""The API client's standard-library HTTP: kept-alive connections the server closed while idle
are reopened, and a server that answers nothing is reported as such."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from privtrail.client import ApiClient, ApiError

STATS = {
    "events": 3,
    "violations": 1,
    "lineage_edges": 2,
    "rejected_events": 0,
    "violations_by_rule": [],
    "violations_by_org": {},
}


class _ClosesAfterEachAnswer(BaseHTTPRequestHandler):
    """Answers over HTTP/1.1 without `Connection: close`, then hangs up, as a server does
    when a kept-alive connection has sat idle past its timeout."""

    protocol_version = "HTTP/1.1"
    connections: ClassVar[list[int]] = []

    def setup(self) -> None:
        super().setup()
        self.connections.append(self.client_address[1])

    def do_GET(self) -> None:
        body = json.dumps({**STATS, "events": len(self.connections)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def closing_server() -> Iterator[str]:
    _ClosesAfterEachAnswer.connections = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ClosesAfterEachAnswer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_connection_the_server_closed_is_opened_again(closing_server: str) -> None:
    with ApiClient(closing_server) as api:
        first, second, third = api.stats(), api.stats(), api.stats()

    assert (first.events, second.events, third.events) == (1, 2, 3)


def test_a_server_that_hangs_up_without_answering_is_reported() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"

        def hang_up() -> None:
            connection, _ = listener.accept()
            connection.recv(4096)
            connection.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        with ApiClient(url) as api, pytest.raises(ApiError, match=f"at {url} did not answer GET"):
            api.stats()
        thread.join(timeout=10)
