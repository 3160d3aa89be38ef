"""The GET requests of the API client, over the standard library's HTTP client or over an
httpx client a caller hands in (a test's app client, a script's own configured client).

A query command spends most of its run importing: the standard library's client is already
loaded with the interpreter's own modules, where httpx also loads its command line's (click,
pygments, rich's progress and syntax modules) (bench/cli_latency.py).
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Answer:
    status: int
    content: bytes
    reason: str


class Unreachable(Exception):
    """Nothing accepted the connection."""


class NoAnswer(Exception):
    """The connection was made but no complete answer came back."""


class Http(Protocol):
    def get(self, path: str, query: dict[str, Any]) -> Answer: ...

    def close(self) -> None: ...


def bearer(token: str | None) -> dict[str, str]:
    """The header that carries an API token, if there is one."""
    return {"Authorization": f"Bearer {token}"} if token else {}


# What a kept-alive connection meets when the server closed it while it sat idle.
_CLOSED_WHILE_IDLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_FAILED = (OSError, http.client.HTTPException)


class StdlibHttp:
    """One kept-alive connection to the API; one the server closed while idle is opened again,
    as a GET may safely be repeated."""

    def __init__(self, base_url: str, timeout: float, token: str | None = None) -> None:
        parts = urlsplit(base_url)
        self._headers = {"Accept": "application/json", **bearer(token)}
        self._prefix = parts.path.rstrip("/")
        # HTTPS checks the server's certificate against the system's CAs by default.
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._connection = kind(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)

    def get(self, path: str, query: dict[str, Any]) -> Answer:
        target = self._prefix + path + (f"?{urlencode(query, doseq=True)}" if query else "")
        if self._connection.sock is not None:
            try:
                return self._exchange(target)
            except _CLOSED_WHILE_IDLE:
                self._connection.close()
            except _FAILED as error:
                raise self._no_answer(error) from error
        self._connect()
        try:
            return self._exchange(target)
        except _FAILED as error:
            raise self._no_answer(error) from error

    def close(self) -> None:
        self._connection.close()

    def _connect(self) -> None:
        try:
            self._connection.connect()
        except OSError as error:
            self._connection.close()
            raise Unreachable(str(error)) from error

    def _no_answer(self, error: Exception) -> NoAnswer:
        self._connection.close()
        return NoAnswer(str(error) or type(error).__name__)

    def _exchange(self, target: str) -> Answer:
        self._connection.request("GET", target, headers=self._headers)
        response = self._connection.getresponse()
        return Answer(response.status, response.read(), response.reason)


class HttpxHttp:
    def __init__(self, client: httpx.Client, token: str | None = None) -> None:
        self._client = client
        self._headers = bearer(token)

    def get(self, path: str, query: dict[str, Any]) -> Answer:
        import httpx  # already loaded by whoever made the client

        try:
            response = self._client.get(path, params=query, headers=self._headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise Unreachable(str(error)) from error
        except httpx.TransportError as error:
            raise NoAnswer(str(error)) from error
        return Answer(response.status_code, response.content, response.reason_phrase)

    def close(self) -> None:
        self._client.close()
