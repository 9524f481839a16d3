"""A misbehaving model server on loopback, speaking llama-server's API or the OpenAI one.

:class:`FakeServer` runs a real HTTP/1.1 server on ``127.0.0.1`` (a free port) in daemon
threads. The fault is the first segment of the path, so one server serves every fault:
``http://127.0.0.1:PORT/<fault>`` is a llama-server, ``http://127.0.0.1:PORT/<fault>/v1``
an OpenAI-compatible server (as vLLM serves one). A well-behaved request gets what the
real server sends, in the shapes the remote engines read: llama-server's ``/props``,
``/tokenize``, ``/apply-template`` and ``/completion`` (streamed: ``data:`` events with
``content``, ``tokens``, ``completion_probabilities``, ending with ``stop: true`` and the
stop word); the OpenAI ``/v1/models`` and ``/v1/chat/completions`` (streamed chunks with
``choices[].delta.content`` and ``finish_reason``, then ``data: [DONE]``). Each stage's
answer is a short sentence in its tags, so that ``--stage-mode native --beam 1`` answers
all four stages.

The faults (:data:`FAULTS`) hit every streamed answer unless they name another request;
every response closes its connection.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

from stagewise.models.stages import STAGES, Stage

MODEL = "fake/model"
TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
            "{{ message['content'] }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n")
MARKER = "<__media__>"
PAGE = (b"<!doctype html><html><head><title>502</title></head><body><h1>Bad gateway</h1>"
        b"<a href='file:///etc/passwd'>details</a><img src='file:///etc/hosts'></body></html>")

FAULTS: dict[str, str] = {
    "ok": "answers well",
    "no-logprobs": "answers well, without log-probabilities",
    "cut": "the connection closes mid-answer (after three tokens; no length, not chunked)",
    "cut-late": "answers the summary and caption well, then the connection closes mid-way "
                "through the reasoning",
    "no-end": "the stream ends cleanly, without its end (no stop, no finish reason)",
    "html": "200 with an HTML page instead of the stream",
    "html-as-events": "200 text/event-stream, but an HTML page in it",
    "bad-chunk": "broken chunked encoding mid-answer",
    "error-event": "an error reported mid-stream",
    "html-error": "HTTP 500 with an HTML page (a heading, a file link, an image)",
    "index-text": "a choice or completion index that is not a number",
    "logprob-text": "a log-probability that is text",
    "tokens-text": "a token list that is text",
    "choices-text": "a string where the choice list belongs",
    "deep": "an event nested 100000 deep",
    "not-json": "an event that is not JSON",
    "props-types": "/props (llama-server) or /models (OpenAI) with fields of the wrong type",
    "start-types": "the first, non-streamed answer with fields of the wrong type",
    "comments": "keep-alive comments, four a second, and nothing else",
    "empty-events": "empty events, four a second, and nothing else",
    "drip": "an event a byte at a time, five bytes a second",
    "endless": "text past the request's token cap, without end",
    "big-event": "one 50 MB event: a token with three million log-probabilities",
    "slow": "no answer at all to the streamed request (it waits)",
    "marker": "answers well (for a question that spells the media marker)",
    "markup": "answers well, with HTML in every stage's text",
    "close-first": "a stage's answer that closes it before opening it, then opens it",
}
HOSTILE = "<h1>HOSTILE</h1><a href='file:///etc/passwd'>link</a><img src='file:///etc/hosts'>"
BIG_EVENT = 50 * 2**20
TICK = 0.25


class FakeServer:
    """The server; use as a context manager. :attr:`requests` records (path, body) of
    each POST, :attr:`authorizations` the ``Authorization`` header of every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.authorizations: list[str] = []
        self._stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, fault: str, kind: str = "llama-server") -> str:
        """The address of a server of ``kind`` with ``fault``."""
        assert fault in FAULTS, fault
        base = f"http://127.0.0.1:{self.port}/{fault}"
        return base + "/v1" if kind == "openai" else base

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def stopping(self, seconds: float) -> bool:
        """Sleep; True when the server is shutting down."""
        return self._stopping.wait(seconds)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeServer

    def log_message(self, *args: object) -> None:
        pass

    # -- routing --------------------------------------------------------------------------

    def do_GET(self) -> None:
        self.fake.authorizations.append(self.headers.get("Authorization", ""))
        fault, kind, route = self._route()
        if route in ("/props", "/models"):
            self._json(_props(fault) if kind == "llama-server" else _models(fault))
        elif route == "/deep":  # JSON nested deeper than Python's recursion limit
            data = b"[" * 100_000 + b"]" * 100_000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        else:
            self._json({"error": {"message": "not found"}}, 404)

    def do_POST(self) -> None:
        self.fake.authorizations.append(self.headers.get("Authorization", ""))
        fault, kind, route = self._route()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.fake.requests.append((self.path, body))
        if route == "/tokenize":
            self._json({"tokens": [1, 2, 3, 4]})
        elif route == "/apply-template":
            self._json({"prompt": _rendered(body)})
        elif route in ("/completion", "/chat/completions"):
            if not body.get("stream"):
                self._json(_start(fault, kind))
            elif fault == "markup":
                self._events(_answer(kind, body, words=[HOSTILE, " is ", "shown."]))
            elif fault == "close-first" and _stage_of(body) is Stage.CAPTION:
                self._events(_close_first(kind))
            elif fault == "cut-late" and _stage_of(body) in (Stage.SUMMARY, Stage.CAPTION):
                self._events(_answer(kind, body))
            elif fault not in _WELL_BEHAVED:
                self._fault("cut" if fault == "cut-late" else fault, kind, body)
            else:
                self._events(_answer(kind, body, logprobs=fault != "no-logprobs"))
        else:
            self._json({"error": {"message": "not found"}}, 404)

    def _route(self) -> tuple[str, str, str]:
        parts = self.path.split("/")
        fault, rest = parts[1], "/" + "/".join(parts[2:])
        if rest.startswith("/v1/"):
            return fault, "openai", rest[3:]
        return fault, "llama-server", rest

    # -- answers --------------------------------------------------------------------------

    def _json(self, value: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _start_events(self, content_type: str = "text/event-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _events(self, events: Iterator[bytes]) -> None:
        self._start_events()
        with contextlib.suppress(OSError):  # the client closed: its choice
            for event in events:
                self._chunk(event)
            self._end()

    def _fault(self, fault: str, kind: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the client closed: its choice
            self._fault_events(fault, kind, body)
        self.close_connection = True

    def _fault_events(self, fault: str, kind: str, body: dict[str, Any]) -> None:
        good = list(_answer(kind, body))
        if fault == "html":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(PAGE)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(PAGE)
            return
        if fault == "html-error":
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(PAGE)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(PAGE)
            return
        if fault == "cut":  # a body that ends when the connection closes, as HTTP/1.0's
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for event in good[:3]:
                self.wfile.write(event)
            return
        self._start_events()
        if fault == "html-as-events":
            self._chunk(PAGE + b"\n")
            self._end()
        elif fault == "no-end":
            for event in good[:3]:
                self._chunk(event)
            if kind == "openai":
                self._chunk(b"data: [DONE]\n\n")
            self._end()
        elif fault == "bad-chunk":
            for event in good[:3]:
                self._chunk(event)
            self.wfile.write(b"zz\r\nthis is not a chunk\r\n")
        elif fault == "error-event":
            self._chunk(good[0])
            self._chunk(b'error: {"code": 500, "message": "the slot crashed", '
                        b'"type": "server_error"}\n\n')
            self._end()
        elif fault in _BAD_EVENTS:
            self._chunk(good[0])
            self._chunk(b"data: " + _BAD_EVENTS[fault](kind) + b"\n\n")
            for event in good[1:]:
                self._chunk(event)
            self._end()
        elif fault in ("comments", "empty-events"):
            line = b": keep-alive\n\n" if fault == "comments" else b"data: {}\n\n"
            while not self.fake.stopping(TICK):
                self._chunk(line)
        elif fault == "drip":
            for byte in good[0] * 1000:
                if self.fake.stopping(0.2):
                    return
                self._chunk(bytes([byte]))
        elif fault == "endless":
            n = 0
            while not self.fake.stopping(0):
                self._chunk(_piece(kind, "more and more text ", n))
                n += 1
        elif fault == "big-event":  # small objects: parsed whole, many times its size
            self._chunk(good[0])
            if kind == "llama-server":
                self._chunk(b'data: {"index": 0, "content": "x", "stop": false, '
                            b'"completion_probabilities": [')
            else:
                self._chunk(b'data: {"choices": [{"index": 0, "delta": {"content": "x"}, '
                            b'"logprobs": {"content": [')
            item = b'{"logprob": -0.5}, '
            block = item * (2**20 // len(item))
            for _ in range(BIG_EVENT // len(block)):
                self._chunk(block)
            self._chunk(b'{"logprob": -0.5}]}\n\n' if kind == "llama-server" else
                        b'{"logprob": -0.5}]}}]}\n\n')
            for event in good[1:]:
                self._chunk(event)
            self._end()
        elif fault == "slow":
            self.fake.stopping(120)


def _props(fault: str) -> dict[str, Any]:
    if fault == "props-types":
        return {"modalities": {"vision": True}, "total_slots": "many",
                "media_marker": ["<__media__>"], "chat_template": 7}
    return {"modalities": {"vision": True}, "total_slots": 1, "media_marker": MARKER,
            "chat_template": TEMPLATE, "eos_token": "<|im_end|>"}


def _models(fault: str) -> dict[str, Any]:
    if fault == "props-types":
        return {"object": "list", "data": "fake/model"}
    return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}


def _start(fault: str, kind: str) -> dict[str, Any]:
    """The first, non-streamed answer (the prompt warmed, one token at most)."""
    if kind == "llama-server":
        if fault == "start-types":
            return {"content": "", "tokens_evaluated": "lots", "timings": []}
        return {"content": "", "tokens_evaluated": 40, "stop": True,
                "timings": {"prompt_n": 40, "cache_n": 0}}
    if fault == "start-types":
        return {"choices": "none", "usage": {"prompt_tokens": [40]}}
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 40, "prompt_tokens_details": {"cached_tokens": 0}}}


def _rendered(body: dict[str, Any]) -> str:
    parts = body["messages"][0]["content"]
    text = "".join(MARKER if p["type"] == "image_url" else p["text"] for p in parts)
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def _stage_of(body: dict[str, Any]) -> Stage:
    stops = " ".join(body.get("stop") or [])
    return next((s for s in STAGES if s.close_tag in stops), Stage.CONCLUSION)


def _answer(kind: str, body: dict[str, Any], *, logprobs: bool = True,
            words: list[str] | None = None) -> Iterator[bytes]:
    """A well-behaved stream: for each candidate asked for, the stage's open tag, a
    sentence and its close tag."""
    stage = _stage_of(body)
    words = [stage.open_tag, *(words or [f"The {stage.value} ", "is ", "short."])]
    n = body.get("n_cmpl" if kind == "llama-server" else "n") or 1
    for i in range(n):
        for k, word in enumerate(words):
            yield _piece(kind, word, k, logprobs=logprobs, index=i)
        if kind == "llama-server":
            yield _event({"index": i, "content": "", "stop": True, "stop_type": "word",
                          "stopping_word": stage.close_tag,
                          "timings": {"prompt_n": 4, "cache_n": 40}})
        else:
            yield _event({"choices": [{"index": i, "delta": {"content": stage.close_tag},
                                       "finish_reason": "stop"}]})
    if kind == "openai":
        yield _event({"choices": [], "usage": {"prompt_tokens": 44}})
        yield b"data: [DONE]\n\n"


def _close_first(kind: str) -> Iterator[bytes]:
    """The caption closed first. A server stops at its stop string (the close tag), so
    only the close tag comes, and the candidate ends there."""
    close = Stage.CAPTION.close_tag
    if kind == "llama-server":
        yield _event({"index": 0, "content": "", "stop": True, "stop_type": "word",
                      "stopping_word": close, "timings": {"prompt_n": 4, "cache_n": 40}})
    else:
        yield _event({"choices": [{"index": 0, "delta": {"content": close},
                                   "finish_reason": "stop"}]})
        yield b"data: [DONE]\n\n"


def _piece(kind: str, text: str, n: int, *, logprobs: bool = True, index: int = 0) -> bytes:
    if kind == "llama-server":
        event: dict[str, Any] = {"index": index, "content": text, "tokens": [100 + n],
                                 "stop": False}
        if logprobs:
            event["completion_probabilities"] = [{"id": 100 + n, "token": text,
                                                  "logprob": -0.5}]
        return _event(event)
    choice: dict[str, Any] = {"index": index, "delta": {"content": text},
                              "finish_reason": None}
    if logprobs:
        choice["logprobs"] = {"content": [{"token": text, "logprob": -0.5}]}
    return _event({"choices": [choice]})


def _event(value: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(value).encode() + b"\n\n"


def _bad_index(kind: str) -> bytes:
    if kind == "llama-server":
        return b'{"index": "first", "content": "x", "stop": false}'
    return b'{"choices": [{"index": "first", "delta": {"content": "x"}}]}'


def _bad_logprob(kind: str) -> bytes:
    if kind == "llama-server":
        return (b'{"index": 0, "content": "x", "stop": false, '
                b'"completion_probabilities": [{"logprob": "high"}]}')
    return (b'{"choices": [{"index": 0, "delta": {"content": "x"}, '
            b'"logprobs": {"content": [{"token": "x", "logprob": "high"}]}}]}')


def _bad_tokens(kind: str) -> bytes:
    if kind == "llama-server":
        return b'{"index": 0, "content": "x", "tokens": "abc", "stop": false}'
    return (b'{"choices": [{"index": 0, "delta": {"content": "x"}, '
            b'"logprobs": {"content": "abc"}}]}')


def _bad_choices(kind: str) -> bytes:
    if kind == "llama-server":
        return b'{"index": 0, "content": ["x"], "stop": false}'
    return b'{"choices": "x"}'


_WELL_BEHAVED = ("ok", "no-logprobs", "marker", "markup", "close-first")
_BAD_EVENTS = {
    "index-text": _bad_index,
    "logprob-text": _bad_logprob,
    "tokens-text": _bad_tokens,
    "choices-text": _bad_choices,
    "deep": lambda kind: b"[" * 100_000 + b"]" * 100_000,
    "not-json": lambda kind: b"{this is not json",
}

