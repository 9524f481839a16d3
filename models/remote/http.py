"""JSON over HTTP for the remote engines: one request, or a stream of server-sent events.

Standard library only. Nothing a server sends is trusted: every read has a bounded stall
timeout, a JSON answer is read whole within one stall timeout and at most
:data:`MAX_BODY` bytes, an event is at most :data:`MAX_EVENT` bytes, JSON is nested at
most :data:`MAX_DEPTH` deep, and what is not a stream of events (a web page, a cut chunk)
is said to be so. A request can be closed from another thread (a cancel), which ends its
reader at once, also while it still waits for the server's first byte. Errors become
:class:`ServerError`, one line that names the server (never a login) and says what to
check.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from stagewise.models.errors import EngineError

__all__ = ["MAX_BODY", "MAX_DEPTH", "MAX_EVENT", "Endpoint", "ServerError", "Stream"]

CONNECT_TIMEOUT = 10.0
MAX_BODY = 4 * 2**20
"""The largest JSON answer read (a llama-server's ``/props`` is a few tens of kB)."""
MAX_EVENT = 2**20
"""The largest server-sent event read (one token's event is well under 1 kB)."""
MAX_DEPTH = 64
"""The deepest JSON nesting read (the servers' answers nest under 10 deep)."""
_READ = 65536
_SPECIAL = re.compile(rb'[\[\]{}"\\]')


class ServerError(EngineError):
    """The server could not be reached, refused the request, or answered nonsense."""


@dataclass(frozen=True)
class Endpoint:
    """A server: its base URL (``http://host:port``, maybe with a path prefix such as
    ``/v1``), an API key or "", how long a read may stall, in seconds, and a login
    (``user:password``, sent as HTTP Basic authentication when there is no API key).

    A login written into ``url`` is taken out of it; an unusable ``url`` raises
    :class:`ServerError`.
    """

    url: str
    api_key: str = field(default="", repr=False)
    stall_timeout: float = 60.0
    login: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        from stagewise.models.remote.address import parse_address

        address = parse_address(self.url)
        object.__setattr__(self, "url", address.url)
        if address.login and not self.login:
            object.__setattr__(self, "login", address.login)

    def post(self, path: str, body: dict[str, Any], *,
             opened: Callable[[Stream], None] | None = None) -> dict[str, Any]:
        """POST ``body`` as JSON and return the JSON answer; ``opened`` is given the
        request before it is sent (to close it from another thread).

        Raises:
            ServerError: The server is unreachable, stalls, says no, or answers nonsense.
        """
        with Stream(self, path, body, streaming=False, opened=opened) as stream:
            return stream.json()

    def get(self, path: str, *, opened: Callable[[Stream], None] | None = None
            ) -> dict[str, Any]:
        """GET ``path``'s JSON answer (see :meth:`post`)."""
        with Stream(self, path, None, streaming=False, opened=opened) as stream:
            return stream.json()

    def stream(self, path: str, body: dict[str, Any], *,
               opened: Callable[[Stream], None] | None = None) -> Stream:
        """POST ``body`` and read the answer as server-sent events (``data: {...}``)."""
        return Stream(self, path, body, streaming=True, opened=opened)

    def headers(self) -> dict[str, str]:
        """The authentication headers: the API key, else the login."""
        if self.api_key:
            return {"Authorization": f"Bearer {self.api_key}"}
        if self.login:
            token = base64.b64encode(self.login.encode("utf-8")).decode("ascii")
            return {"Authorization": f"Basic {token}"}
        return {}


class Stream:
    """One request's answer; close it (from any thread) to stop reading.

    Attributes:
        done: The server ended the stream with ``data: [DONE]``.
    """

    def __init__(self, endpoint: Endpoint, path: str, body: dict[str, Any] | None, *,
                 streaming: bool, opened: Callable[[Stream], None] | None = None) -> None:
        self.endpoint = endpoint
        self.done = False
        parts = urlsplit(endpoint.url)
        self._where = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path.rstrip("/") + path
        self._streaming = streaming
        kind = http.client.HTTPSConnection if parts.scheme == "https" else \
            http.client.HTTPConnection
        self._conn = kind(parts.hostname, parts.port, timeout=CONNECT_TIMEOUT)
        self._sock: socket.socket | None = None  # kept: http.client lets go of it
        self._closed = threading.Event()
        headers = {"Accept": "text/event-stream" if streaming else "application/json",
                   **endpoint.headers()}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if opened is not None:
            opened(self)
        try:
            self._conn.connect()
            self._sock = self._conn.sock
            if self._closed.is_set():  # closed while connecting
                raise ConnectionAbortedError("closed")
            if self._sock is not None:
                self._sock.settimeout(endpoint.stall_timeout)
            self._conn.request("POST" if body is not None else "GET", self._path, data,
                               headers)
            self._response = self._conn.getresponse()
        except (OSError, http.client.HTTPException, ValueError) as e:
            failure = self._failure(e)
            self.close()
            raise failure from None
        if self._response.status != 200:
            detail = self._error_text()
            self.close()
            raise ServerError(self._status_message(self._response.status, detail))
        if "html" in self._response.getheader("Content-Type", "").lower():
            self.close()
            raise ServerError(f"{self.where} answered a web page, not "
                              f"{'a stream of events' if streaming else 'JSON'}: is this the "
                              "server's address?")

    @property
    def where(self) -> str:
        """The request's URL, for messages (never with a login)."""
        return f"{self._where}{self._path}"

    # -- reading --------------------------------------------------------------------------

    def json(self) -> dict[str, Any]:
        """The whole answer as a JSON object, read within one stall timeout.

        Raises:
            ServerError: It is too big, too slow, cut short, or not a JSON object.
        """
        length = self._response.getheader("Content-Length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            raise ServerError(f"{self.where} answered {int(length)} bytes, over the "
                              f"{MAX_BODY // 2**20} MiB this client reads")
        deadline = time.monotonic() + self.endpoint.stall_timeout
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := self._response.read1(_READ):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY:
                    raise ServerError(f"{self.where} answered over the "
                                      f"{MAX_BODY // 2**20} MiB this client reads")
                if time.monotonic() > deadline:
                    raise ServerError(f"{self.where} sent its answer too slowly (not all of "
                                      f"it in {self.endpoint.stall_timeout:g} s)")
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as e:
            raise self._failure(e) from None
        return self._decode(b"".join(chunks))

    def events(self) -> Iterator[dict[str, Any]]:
        """The events' JSON objects, until the server ends the stream (:attr:`done` says
        whether it ended with ``[DONE]``) or the stream is closed.

        Raises:
            ServerError: The connection broke, an event is too big or not JSON, the answer
                is not a stream of server-sent events, or the server reported an error.
        """
        data: list[bytes] = []
        size = 0
        while True:
            line = self._line()
            if line is None:
                return
            text = line.rstrip(b"\r\n")
            if not text:  # a blank line ends an event
                if data:
                    payload = b"\n".join(data).strip()
                    data, size = [], 0
                    if payload == b"[DONE]":
                        self.done = True
                        return
                    yield self._decode(payload)
                continue
            name, _, value = text.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"data":
                size += len(value)
                if size > MAX_EVENT:
                    raise self._too_big()
                data.append(value)
            elif name == b"error":  # llama-server's own way of failing mid-stream
                raise ServerError(f"{self._where} reported an error: {self._error_of(value)}")
            elif name not in (b"", b"event", b"id", b"retry"):  # b"": a comment
                raise ServerError(f"{self.where} answered something that is not a stream "
                                  f"of server-sent events: {_shown(text)}")

    def _line(self) -> bytes | None:
        """The next line, or None at the end (or once closed)."""
        try:
            line = self._response.readline(MAX_EVENT + 1)
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as e:
            # AttributeError: http.client's reader, when close() ran from another thread
            if self._closed.is_set():
                return None
            raise self._failure(e) from None
        if not line or self._closed.is_set():
            return None
        if len(line) > MAX_EVENT:
            raise self._too_big()
        return line

    # -- closing --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Stop reading and drop the connection; safe from any thread, and twice."""
        self._closed.set()
        # the connection's own socket: once the answer says it closes the connection,
        # http.client hands it to the answer and forgets it (conn.sock is None)
        sock = self._sock or self._conn.sock
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
        depth = _depth(raw)
        if depth > MAX_DEPTH:
            raise ServerError(f"{self.where} answered JSON nested {depth} deep (this client "
                              f"reads at most {MAX_DEPTH})")
        try:
            value = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ServerError(f"{self.where} answered something that is not "
                              f"JSON: {_shown(raw)}") from None
        if not isinstance(value, dict):
            raise ServerError(f"{self.where} answered {type(value).__name__}, "
                              "not a JSON object")
        if "error" in value and len(value) <= 2:
            raise ServerError(f"{self._where} reported an error: "
                              f"{_error_message(value['error'])}")
        return value

    def _error_of(self, raw: bytes) -> str:
        """The message of an ``error:`` line or body."""
        with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError):
            if _depth(raw) <= MAX_DEPTH:
                value = json.loads(raw)
                if isinstance(value, dict) and "error" in value:
                    return _error_message(value["error"])
                if isinstance(value, dict) and "message" in value:
                    return _error_message(value)
        return _one_line(raw.decode("utf-8", "replace"))

    def _error_text(self) -> str:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            raw = self._response.read(4096)
            if _is_page(raw) or b"<html" in raw[:512].lower():
                return "(a web page)"
            return self._error_of(raw)
        return ""

    def _status_message(self, status: int, detail: str) -> str:
        if status in (401, 403):
            return (f"{self._where} refused the API key (HTTP {status}): check the key in "
                    "the server settings")
        if status == 404:
            return f"{self.where} does not exist (HTTP 404): is this the right kind of server?"
        return f"{self.where} answered HTTP {status}" + (f": {detail}" if detail else "")

    def _too_big(self) -> ServerError:
        return ServerError(f"{self.where} sent an event over the {MAX_EVENT // 2**20} MiB "
                           "this client reads")

    def _failure(self, error: BaseException) -> ServerError:
        if self._closed.is_set():
            return ServerError(f"the request to {self._where} was stopped")
        if isinstance(error, TimeoutError | socket.timeout):
            return ServerError(f"{self._where} did not answer for "
                               f"{self.endpoint.stall_timeout:g} s: is it overloaded?")
        if isinstance(error, ConnectionRefusedError):
            return ServerError(f"nothing answers at {self._where}: is the server running?")
        if isinstance(error, socket.gaierror):
            return ServerError(f"{self._where}: no such host")
        if isinstance(error, http.client.IncompleteRead | http.client.RemoteDisconnected |
                      ConnectionResetError | ValueError):
            return ServerError(f"{self._where} closed the connection mid-answer: did the "
                               "server stop?")
        if isinstance(error, http.client.HTTPException):
            return ServerError(f"{self._where} answered something that is not HTTP: "
                               f"{_one_line(str(error))}")
        return ServerError(f"the connection to {self._where} failed: {_one_line(str(error))}")


def _depth(raw: bytes) -> int:
    """How deep JSON text nests its arrays and objects (brackets in strings left out);
    the scan stops once past :data:`MAX_DEPTH`."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be deeper than the limit: skip the scan
    depth = deepest = 0
    in_string = False
    escaped = -1  # the position a backslash escapes
    for found in _SPECIAL.finditer(raw):
        at = found.start()
        char = raw[at]
        if at == escaped:
            continue
        if in_string:
            if char == 0x5C:  # backslash
                escaped = at + 1
            elif char == 0x22:  # quote
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif char in b"]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> None:
    """``NaN`` and ``Infinity`` are not JSON: read them as missing."""
    return None


def _error_message(error: object) -> str:
    if isinstance(error, dict):
        message = error.get("message") or error
        return _one_line(message if isinstance(message, str) else json.dumps(message)[:200])
    return _one_line(str(error))


def _one_line(text: str, limit: int = 200) -> str:
    """``text`` as one line of printable characters, at most ``limit`` long."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _shown(raw: bytes) -> str:
    """The start of a server's bytes, as a message can show them ("a web page" for one)."""
    if _is_page(raw):
        return "a web page"
    return repr(raw[:80])


def _is_page(raw: bytes) -> bool:
    """Whether bytes start like HTML."""
    head = raw[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<?xml"))
