"""A fake Hugging Face hub on loopback, for tests that download models.

:class:`FakeHub` runs a real HTTP server on ``127.0.0.1`` (a free port) in a daemon
thread and answers the requests ``huggingface_hub`` 2.4 and :mod:`stagewise.models.library.hub`
make:

``POST /api/models/{repo}/paths-info/{revision}``
    Form field ``paths`` (repeated). Answers a JSON list with one entry per known
    file: ``{"type": "file", "path", "size", "oid" (git blob sha1), "lfs": {"oid"
    (sha256), "size", "pointerSize"}}``, as ``HfApi.get_paths_info`` reads it.
    Unknown paths are left out (the hub does the same); an unknown repository is
    a 404 with ``X-Error-Code: RepoNotFound``, an unknown revision one with
    ``RevisionNotFound``.
``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{revision}``
    Model info with ``sha`` (the commit) and ``siblings`` (``rfilename``, ``size``,
    ``blobId``, ``lfs: {sha256, size, pointerSize}``), as ``HfApi.model_info(...,
    files_metadata=True)`` reads it.
``HEAD``/``GET /{repo}/resolve/{revision}/{filename}``
    Headers ``X-Repo-Commit``, ``ETag`` and, for LFS files, ``X-Linked-Etag`` (the
    sha256, quoted) and ``X-Linked-Size``. LFS files are redirected (302,
    ``Location``) to ``/cdn/{sha256}`` on the same server, the way the hub sends
    them to its CDN (turn off with ``FakeHub(redirect=False)``); the content itself
    answers with ``Content-Length``, ``Accept-Ranges: bytes`` and honours ``Range:
    bytes=a-`` / ``bytes=a-b`` (206 with ``Content-Range``, 416 past the end). An
    unknown file is a 404 with ``X-Error-Code: EntryNotFound``.

Every response carries ``Connection: close`` so that no handler thread waits on an
idle keep-alive connection; leaving the context shuts the server down, closes any
connection still open and joins every thread it started.

Faults, per file (arguments of :meth:`FakeHub.add`, changed later with
:meth:`FakeHub.set_faults`):

- ``cut_after=N``: send N bytes of the body, then drop the connection; ``cut_times``
  responses are cut (default one), later ones are whole.
- ``corrupt=True``: one byte of the served content is flipped; the metadata keeps
  the true sha256, so the client's checksum must catch it.
- ``status=401`` (or 403, 404, 500, ...): every request about the file gets that
  status (``error_code`` sets ``X-Error-Code``).
- ``content_status=503``: only requests for the content (``resolve``, ``cdn``) get
  that status; the metadata answers normally.
- ``token="secret"``: the content (``resolve``) needs ``Authorization: Bearer
  secret``, as for a gated repository; without it the answer is 401 with
  ``X-Error-Code: GatedRepo``. The metadata stays readable, as on the hub.
- ``slow=S``: sleep S seconds before each ``chunk_size`` bytes of body.
- ``claim_size=N``: the metadata claims N bytes (e.g. more than any disk holds).
- ``endless=True``: the content comes without ``Content-Length`` and is followed by
  filler bytes without end (the server stops after :data:`ENDLESS_LIMIT` bytes, so a
  client that never stops reading still ends).
- ``html_page=N``: the next N content responses are ``200 text/html`` error pages
  instead of the file, as a proxy or captive portal sends them.
- ``replaced_by=b"..."``: these bytes are served instead of the content (with their own,
  honest ``Content-Length``); the metadata still lists the content.
- ``no_length=True``: no ``Content-Length``; the body ends when the connection closes.
- ``stall=S``: S seconds of silence after the headers (or after ``stall_after`` bytes
  of the body).
- ``trickle=N``: the body comes at about N bytes a second (in pieces every
  :data:`TRICKLE_STEP` seconds).

Requests are recorded in :attr:`FakeHub.requests` (method, path, lower-case headers),
so a test can check that a resume sent a ``Range`` header.

Pointing clients at the server: :mod:`stagewise.models.library.hub` functions take ``endpoint=``;
pass ``hub.endpoint``. Code that cannot be given an endpoint (``hf_hub_download`` without
``endpoint=``, a CLI in a subprocess) is covered by :meth:`FakeHub.environment`,
which is the one place that knows where ``huggingface_hub`` reads its settings.

Example::

    with FakeHub() as hub, hub.environment():
        hub.add("stagewise/tiny", "tiny-model.gguf", tiny_pair.model)
        path = download("stagewise/tiny", "tiny-model.gguf", tmp_path)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from huggingface_hub import constants
from huggingface_hub.utils import disable_progress_bars
from huggingface_hub.utils.tqdm import tqdm as hf_tqdm

__all__ = ["ENDLESS_LIMIT", "HTML_PAGE", "TRICKLE_STEP", "FakeHub", "HubFile", "Recorded"]

_PATHS_INFO = re.compile(r"^/api/models/(?P<repo>.+)/paths-info/(?P<revision>[^/]+)$")
_MODEL_INFO = re.compile(r"^/api/models/(?P<repo>.+?)(?:/revision/(?P<revision>[^/]+))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<name>.+)$")
_CDN = re.compile(r"^/cdn/(?P<sha>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")
_POINTER_SIZE = 134  # what a git-lfs pointer file of a large file takes
ENDLESS_LIMIT = 64 * 1024 * 1024
"""Bytes after which an ``endless`` body ends anyway (a safety net for broken clients)."""
TRICKLE_STEP = 0.05
"""Seconds between the pieces of a ``trickle`` body."""
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
              b"<body><h1>502 Bad Gateway</h1><p>The proxy could not reach the origin."
              b"</p></body></html>\n")


@dataclass
class HubFile:
    """One file the fake hub serves, with its faults (change them with set_faults)."""

    repo: str
    name: str
    revision: str
    content: bytes
    lfs: bool = True
    cut_after: int | None = None
    cut_times: int = 1
    corrupt: bool = False
    status: int | None = None
    content_status: int | None = None
    error_code: str | None = None
    token: str | None = None
    slow: float = 0.0
    claim_size: int | None = None
    endless: bool = False
    html_page: int = 0
    replaced_by: bytes | None = None
    no_length: bool = False
    stall: float = 0.0
    stall_after: int = 0
    trickle: int = 0

    @property
    def sha256(self) -> str:
        """The sha256 of the true content (what the metadata lists)."""
        return hashlib.sha256(self.content).hexdigest()

    @property
    def git_oid(self) -> str:
        """The git blob sha1 of the true content."""
        return hashlib.sha1(b"blob %d\0" % len(self.content) + self.content).hexdigest()

    @property
    def size(self) -> int:
        """The size the metadata lists."""
        return len(self.content) if self.claim_size is None else self.claim_size

    def served(self) -> bytes:
        """The bytes actually sent: the content (or ``replaced_by``), one byte flipped if
        ``corrupt``."""
        content = self.content if self.replaced_by is None else self.replaced_by
        if not self.corrupt or not content:
            return content
        data = bytearray(content)
        data[len(data) // 2] ^= 0xFF
        return bytes(data)


@dataclass(frozen=True)
class Recorded:
    """A request the fake hub received."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def range(self) -> str | None:
        """The ``Range`` header, if one was sent."""
        return self.headers.get("range")


def commit_of(repo: str, revision: str) -> str:
    """The (made-up, stable) 40-hex commit id the fake hub gives ``repo`` at ``revision``."""
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()


class FakeHub:
    """A loopback HTTP server that behaves like the Hugging Face hub for downloads.

    Use it as a context manager; :attr:`endpoint` is its base URL.

    Args:
        redirect: Redirect LFS files from ``resolve`` to ``/cdn/{sha256}``, as the hub does.
        chunk_size: Bytes written per write (and per ``slow`` sleep).
    """

    def __init__(self, *, redirect: bool = True, chunk_size: int = 64 * 1024) -> None:
        self.redirect = redirect
        self.chunk_size = chunk_size
        self._files: dict[tuple[str, str, str], HubFile] = {}
        self._requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = True  # server_close() joins the handler threads
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving, drop open connections and join every thread; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            still_open = list(self._open)
        for sock in still_open:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def endpoint(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:40123``."""
        if self._server is None:
            raise RuntimeError("the fake hub is not running (use it as a context manager)")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- content ---------------------------------------------------------------------------

    def add(self, repo: str, name: str, content: bytes | str | os.PathLike[str], *,
            revision: str = "main", lfs: bool = True, **faults: object) -> HubFile:
        """Serve ``content`` (bytes, or a file read now) as ``name`` in ``repo`` at ``revision``.

        Args:
            repo: ``owner/name``.
            name: Path of the file in the repository.
            content: The bytes, or a path to read them from.
            revision: Branch name (or commit id) it is served under.
            lfs: Serve it as an LFS file (sha256 in the metadata, CDN redirect).
            **faults: Any of the fault fields of :class:`HubFile`.

        Returns:
            The served file; its ``sha256`` and ``size`` are what the metadata lists.
        """
        data = content if isinstance(content, bytes) else Path(content).read_bytes()
        hub_file = HubFile(repo=repo, name=name, revision=revision, content=data, lfs=lfs)
        with self._lock:
            self._files[(repo, revision, name)] = hub_file
        self.set_faults(repo, name, revision=revision, **faults)
        return hub_file

    def set_faults(self, repo: str, name: str, *, revision: str = "main",
                   **faults: object) -> None:
        """Change the faults of a served file (``cut_after=None`` etc. to clear one)."""
        with self._lock:
            hub_file = self._files[(repo, revision, name)]
            for key, value in faults.items():
                if key in {"repo", "name", "revision", "content"} or not hasattr(hub_file, key):
                    raise TypeError(f"unknown fault {key!r}")
                setattr(hub_file, key, value)

    # -- requests --------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def downloads(self) -> list[Recorded]:
        """The GET requests for file content (``resolve`` and ``cdn``)."""
        return [r for r in self.requests
                if r.method == "GET" and ("/resolve/" in r.path or r.path.startswith("/cdn/"))]

    # -- environment -----------------------------------------------------------------------

    @contextmanager
    def environment(self) -> Iterator[FakeHub]:
        """Point ``huggingface_hub`` (this process and child processes) at this server.

        ``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and
        ``HF_HUB_DISABLE_IMPLICIT_TOKEN`` once, at import, into
        ``huggingface_hub.constants`` (``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``,
        ``HF_HUB_OFFLINE``, ``HF_HUB_DISABLE_IMPLICIT_TOKEN``). This sets both the
        environment variables (for processes started inside the block) and those
        constants (for this process), turns offline mode off, keeps a developer's own
        token from being sent and turns huggingface_hub's tqdm bars off, monitor thread
        included (tqdm starts a ``tqdm_monitor`` thread that outlives the test even for a
        hidden bar, which trips tests that check for leftover threads); all is restored on
        exit. Not thread-safe: it changes process-wide state.
        """
        endpoint = self.endpoint
        env = {
            "HF_ENDPOINT": endpoint,
            "HF_HUB_OFFLINE": None,
            "TRANSFORMERS_OFFLINE": None,
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
        consts = {
            "ENDPOINT": endpoint,
            "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": True,
        }
        saved_env = {key: os.environ.get(key) for key in env}
        saved_consts = {key: getattr(constants, key) for key in consts}
        saved_monitor = hf_tqdm.monitor_interval
        try:
            hf_tqdm.monitor_interval = 0  # no tqdm_monitor thread, even for hidden bars
            for key, value in env.items():
                _set_env(key, value)
            for key, value in consts.items():
                setattr(constants, key, value)
            with disable_progress_bars():
                yield self
        finally:
            for key, value in saved_env.items():
                _set_env(key, value)
            for key, value in saved_consts.items():
                setattr(constants, key, value)
            hf_tqdm.monitor_interval = saved_monitor

    # -- used by the handler ---------------------------------------------------------------

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self._requests.append(request)

    def _lookup(self, repo: str, revision: str, name: str) -> HubFile | None:
        with self._lock:
            return self._files.get((repo, revision, name))

    def _by_sha(self, sha: str) -> HubFile | None:
        with self._lock:
            return next((f for f in self._files.values() if f.sha256 == sha), None)

    def _repo_files(self, repo: str) -> dict[str, list[HubFile]]:
        """Files of ``repo`` by revision (both branch names and their commit ids)."""
        with self._lock:
            files = [f for f in self._files.values() if f.repo == repo]
        by_revision: dict[str, list[HubFile]] = {}
        for hub_file in files:
            by_revision.setdefault(hub_file.revision, []).append(hub_file)
            by_revision.setdefault(commit_of(repo, hub_file.revision), []).append(hub_file)
        return by_revision

    def _take_cut(self, hub_file: HubFile) -> int | None:
        """Where to cut this response, using up one of the file's cuts."""
        with self._lock:
            if hub_file.cut_after is None or hub_file.cut_times <= 0:
                return None
            hub_file.cut_times -= 1
            return hub_file.cut_after

    def _take_html_page(self, hub_file: HubFile) -> bool:
        """Whether to answer this content request with an HTML page, using one up."""
        with self._lock:
            if hub_file.html_page <= 0:
                return False
            hub_file.html_page -= 1
            return True


def _set_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


class _Handler(BaseHTTPRequestHandler):
    """Answers one request per connection (``Connection: close``)."""

    protocol_version = "HTTP/1.1"
    hub: FakeHub

    # -- plumbing --------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._open.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.hub._lock:
                self.hub._open.discard(self.connection)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read :attr:`FakeHub.requests` instead."""

    def _begin(self) -> None:
        self.close_connection = True
        self.hub._record(Recorded(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))

    def _send(self, status: int, headers: dict[str, str] | None = None,
              body: bytes = b"", *, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, headers, json.dumps({"error": message}).encode())

    def _fault(self, hub_file: HubFile, *, content: bool = False) -> bool:
        """Answer with the file's status fault, if it has one."""
        status = hub_file.status
        if status is None and content:
            status = hub_file.content_status
        if status is None:
            return False
        phrase = HTTPStatus(status).phrase
        self._error(status, hub_file.error_code, f"{phrase} (fake hub fault)")
        return True

    # -- verbs -----------------------------------------------------------------------------

    def do_POST(self) -> None:
        self._begin()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        match = _PATHS_INFO.match(urlsplit(self.path).path)
        if match is None:
            self._error(404, None, "not found")
            return
        repo, revision = match["repo"], unquote(match["revision"])
        form = parse_qs(body)
        if self.headers.get("Content-Type", "").startswith("application/json") and body:
            form = {"paths": json.loads(body).get("paths", [])}
        files = self._files_at(repo, revision)
        if files is None:
            return
        known = {f.name: f for f in files}
        entries = []
        for path in form.get("paths", []):
            hub_file = known.get(path)
            if hub_file is None:
                continue
            if self._fault(hub_file):
                return
            entry: dict[str, object] = {
                "type": "file", "path": hub_file.name, "size": hub_file.size,
                "oid": hub_file.git_oid,
            }
            if hub_file.lfs:
                entry["lfs"] = {"oid": hub_file.sha256, "size": hub_file.size,
                                "pointerSize": _POINTER_SIZE}
            entries.append(entry)
        self._send(200, {}, json.dumps(entries).encode())

    def _files_at(self, repo: str, revision: str) -> list | None:
        """The files of ``repo`` at ``revision``; None after answering 404 as the hub does."""
        by_revision = self.hub._repo_files(repo)
        if not by_revision:
            self._error(404, "RepoNotFound", f"Repository {repo} not found")
            return None
        if revision not in by_revision:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return by_revision[revision]

    def do_HEAD(self) -> None:
        self._get()

    def do_GET(self) -> None:
        self._get()

    def _get(self) -> None:
        self._begin()
        path = urlsplit(self.path).path
        if path.startswith("/api/models/"):
            self._model_info(path)
            return
        if match := _CDN.match(path):
            hub_file = self.hub._by_sha(match["sha"])
            if hub_file is None:
                self._error(404, None, "no such object")
                return
            if not self._fault(hub_file, content=True):
                self._content(hub_file)
            return
        match = _RESOLVE.match(path)
        if match is None:
            self._error(404, None, "not found")
            return
        repo, revision, name = match["repo"], unquote(match["revision"]), unquote(match["name"])
        files = self._files_at(repo, revision)
        if files is None:
            return
        hub_file = next((f for f in files if f.name == name), None)
        if hub_file is None:
            self._error(404, "EntryNotFound", f"{name} does not exist on {revision!r}")
            return
        if self._fault(hub_file, content=self.command == "GET"):
            return
        if hub_file.token is not None and (
                self.headers.get("Authorization") != f"Bearer {hub_file.token}"):
            self._error(401, "GatedRepo",
                        f"Access to model {repo} is restricted. You must have access to it"
                        " and be authenticated to access it. Please log in.")
            return
        if hub_file.lfs and self.hub.redirect:
            headers = self._file_headers(hub_file)
            headers["Location"] = f"{self.hub.endpoint}/cdn/{hub_file.sha256}"
            self._send(302, headers, b"Found. Redirecting.", content_type="text/plain")
            return
        self._content(hub_file)

    def _file_headers(self, hub_file: HubFile) -> dict[str, str]:
        headers = {"X-Repo-Commit": commit_of(hub_file.repo, hub_file.revision)}
        if hub_file.lfs:
            headers["ETag"] = f'"{hub_file.sha256}"'
            headers["X-Linked-Etag"] = f'"{hub_file.sha256}"'
            headers["X-Linked-Size"] = str(hub_file.size)
        else:
            headers["ETag"] = f'"{hub_file.git_oid}"'
        return headers

    def _content(self, hub_file: HubFile) -> None:
        if self.hub._take_html_page(hub_file):
            self._send(200, {}, HTML_PAGE, content_type="text/html; charset=utf-8")
            return
        if hub_file.endless:
            self._endless(hub_file)
            return
        data = hub_file.served()
        size = len(data)
        headers = self._file_headers(hub_file)
        headers["Accept-Ranges"] = "bytes"
        start, end, status = 0, size - 1, 200
        wanted = self.headers.get("Range")
        if wanted:
            match = _RANGE.match(wanted.strip())
            if match is None or int(match["start"]) >= size:
                headers["Content-Range"] = f"bytes */{size}"
                self._error(416, None, "Range Not Satisfiable")
                return
            start = int(match["start"])
            end = min(int(match["end"]), size - 1) if match["end"] else size - 1
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        body = data[start:end + 1]
        if not hub_file.no_length:
            headers["Content-Length"] = str(len(body))
        self._file_head(status, headers)
        if self.command == "HEAD":
            return
        cut = self.hub._take_cut(hub_file)
        if cut is not None:
            body = body[:cut]
        if not self._body(hub_file, body):
            return  # the client went away (cancelled): nothing more to do
        if cut is not None:
            # Drop the connection with the body incomplete, as a broken network would.
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _file_head(self, status: int, headers: dict[str, str]) -> None:
        """The status line and headers of a content answer (``Connection: close``)."""
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()

    def _body(self, hub_file: HubFile, body: bytes) -> bool:
        """Sends ``body`` with the file's ``stall``, ``slow`` and ``trickle``; False if cut off."""
        stall_at = min(hub_file.stall_after, len(body)) if hub_file.stall else len(body)
        try:
            if not self._pieces(hub_file, body[:stall_at]):
                return False
            if hub_file.stall and self.hub._stopping.wait(hub_file.stall):
                return False
            return self._pieces(hub_file, body[stall_at:])
        except OSError:
            return False

    def _pieces(self, hub_file: HubFile, data: bytes) -> bool:
        """Writes ``data`` in ``chunk_size`` pieces (or trickles it); False if the hub stops."""
        piece = max(1, int(hub_file.trickle * TRICKLE_STEP)) if hub_file.trickle else 0
        step = piece or self.hub.chunk_size
        pause = TRICKLE_STEP if piece else hub_file.slow
        for offset in range(0, len(data), step):
            if pause and self.hub._stopping.wait(pause):
                return False
            self.wfile.write(data[offset:offset + step])
        return True

    def _endless(self, hub_file: HubFile) -> None:
        """The content without ``Content-Length``, then filler until the client hangs up."""
        self._file_head(200, self._file_headers(hub_file))
        if self.command == "HEAD" or not self._body(hub_file, hub_file.served()):
            return
        filler = b"\0" * self.hub.chunk_size
        sent = len(hub_file.content)
        with suppress(OSError):
            while sent < ENDLESS_LIMIT and not self.hub._stopping.is_set():
                self.wfile.write(filler)
                sent += len(filler)

    def _model_info(self, path: str) -> None:
        match = _MODEL_INFO.match(path)
        repo = match["repo"] if match else ""
        revision = unquote(match["revision"]) if match and match["revision"] else "main"
        by_revision = self.hub._repo_files(repo)
        if not by_revision:
            self._error(404, "RepoNotFound", f"Repository {repo} not found")
            return
        if revision not in by_revision:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        blobs = "blobs" in parse_qs(urlsplit(self.path).query)
        siblings = []
        for hub_file in by_revision[revision]:
            sibling: dict[str, object] = {"rfilename": hub_file.name}
            if blobs:
                sibling.update(size=hub_file.size, blobId=hub_file.git_oid)
                if hub_file.lfs:
                    sibling["lfs"] = {"sha256": hub_file.sha256, "size": hub_file.size,
                                      "pointerSize": _POINTER_SIZE}
            siblings.append(sibling)
        info = {"id": repo, "modelId": repo, "sha": commit_of(repo, revision),
                "private": False, "siblings": siblings}
        self._send(200, {}, json.dumps(info).encode())


def resolve_path(repo: str, name: str, revision: str = "main") -> str:
    """The URL path ``hf_hub_url`` builds for a file (for matching recorded requests)."""
    return f"/{repo}/resolve/{quote(revision, safe='')}/{quote(name)}"
