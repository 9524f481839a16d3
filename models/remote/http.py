"""JSON over HTTP for the remote engines: one request, or a stream of server-sent events.

Standard library only. Every read has a bounded stall timeout; a stream can be closed from
another thread (a cancel), which ends its reader at once. Errors become
:class:`ServerError` with a message that names the server and says what to check.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from stagewise.models.errors import EngineError

__all__ = ["Endpoint", "ServerError", "Stream"]

CONNECT_TIMEOUT = 10.0


class ServerError(EngineError):
    """The server could not be reached, refused the request, or answered nonsense."""


@dataclass(frozen=True)
class Endpoint:
    """A server: its base URL (``http://host:port``, maybe with a path prefix such as
    ``/v1``), an API key or "", and how long a read may stall, in seconds."""

    url: str
    api_key: str = ""
    stall_timeout: float = 60.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"{self.url!r} is not a server address: give one such as "
                              "http://127.0.0.1:8080")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON and return the JSON answer.

        Raises:
            ServerError: The server is unreachable, stalls, says no, or answers nonsense.
        """
        with Stream(self, path, body, streaming=False) as stream:
            return stream.json()

    def get(self, path: str) -> dict[str, Any]:
        with Stream(self, path, None, streaming=False) as stream:
            return stream.json()

    def stream(self, path: str, body: dict[str, Any]) -> Stream:
        """POST ``body`` and read the answer as server-sent events (``data: {...}``)."""
        return Stream(self, path, body, streaming=True)


class Stream:
    """One request's answer; close it (from any thread) to stop reading."""

    def __init__(self, endpoint: Endpoint, path: str, body: dict[str, Any] | None, *,
                 streaming: bool) -> None:
        self.endpoint = endpoint
        parts = urlsplit(endpoint.url)
        self._where = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path.rstrip("/") + path
        kind = http.client.HTTPSConnection if parts.scheme == "https" else \
            http.client.HTTPConnection
        self._conn = kind(parts.hostname, parts.port, timeout=CONNECT_TIMEOUT)
        self._closed = threading.Event()
        headers = {"Accept": "text/event-stream" if streaming else "application/json"}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self._conn.request("POST" if body is not None else "GET", self._path, data,
                               headers)
            if self._conn.sock is not None:
                self._conn.sock.settimeout(endpoint.stall_timeout)
            self._response = self._conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise self._failure(e) from None
        if self._response.status != 200:
            detail = self._error_text()
            self.close()
            raise ServerError(self._status_message(self._response.status, detail))

    # -- reading --------------------------------------------------------------------------

    def json(self) -> dict[str, Any]:
        try:
            raw = self._response.read()
        except (OSError, http.client.HTTPException) as e:
            raise self._failure(e) from None
        return self._decode(raw)

    def events(self) -> Iterator[dict[str, Any]]:
        """The events' JSON objects, until the server ends the stream (or ``[DONE]``)."""
        while True:
            try:
                line = self._response.readline()
            except (OSError, http.client.HTTPException, ValueError, AttributeError) as e:
                # AttributeError: http.client's reader, when close() ran from another thread
                if self._closed.is_set():
                    return
                raise self._failure(e) from None
            if not line:
                return
            text = line.strip()
            if not text.startswith(b"data:"):
                continue
            payload = text[5:].strip()
            if payload == b"[DONE]":
                return
            yield self._decode(payload)

    # -- closing --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Stop reading and drop the connection; safe from any thread, and twice."""
        self._closed.set()
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._conn.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- messages -------------------------------------------------------------------------

    def _decode(self, raw: bytes) -> dict[str, Any]:
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ServerError(f"{self._where}{self._path} answered something that is not "
                              f"JSON: {raw[:80]!r}") from None
        if not isinstance(value, dict):
            raise ServerError(f"{self._where}{self._path} answered {type(value).__name__}, "
                              "not a JSON object")
        if "error" in value and len(value) <= 2:
            raise ServerError(f"{self._where}: {_error_message(value['error'])}")
        return value

    def _error_text(self) -> str:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            raw = self._response.read(4096)
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                value = json.loads(raw)
                if isinstance(value, dict) and "error" in value:
                    return _error_message(value["error"])
            return raw.decode("utf-8", "replace").strip()[:200]
        return ""

    def _status_message(self, status: int, detail: str) -> str:
        where = f"{self._where}{self._path}"
        if status in (401, 403):
            return (f"{self._where} refused the API key (HTTP {status}): check the key in "
                    "the server settings")
        if status == 404:
            return f"{where} does not exist (HTTP 404): is this the right kind of server?"
        return f"{where} answered HTTP {status}" + (f": {detail}" if detail else "")

    def _failure(self, error: BaseException) -> ServerError:
        if isinstance(error, TimeoutError | socket.timeout):
            return ServerError(f"{self._where} did not answer for "
                               f"{self.endpoint.stall_timeout:g} s: is it overloaded?")
        if isinstance(error, ConnectionRefusedError):
            return ServerError(f"nothing answers at {self._where}: is the server running?")
        if isinstance(error, socket.gaierror):
            return ServerError(f"{self._where}: no such host")
        return ServerError(f"the connection to {self._where} failed: {error}")


def _error_message(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)
