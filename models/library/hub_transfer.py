"""The resumable byte transfer of one file from the hub, with its progress meter.

:func:`fetch_missing` appends to a partial file the bytes it still lacks, with a
``Range`` request from where it stops. A broken connection is retried a few times
(:data:`RETRY_DELAYS`); a cancel or a failure keeps the partial file, so a later call
resumes from it. :class:`ProgressMeter` counts the bytes, checks the cancel event on
every chunk and reports :class:`DownloadProgress` about ten times a second.

What the server sends must agree with the file's metadata, or it is discarded (not
written, or cut back off the partial file) and the download fails at once, not retried,
with one line saying why:

- an HTML page (``text/html``) for a file whose name does not end in ``.html``/``.htm``
  (a proxy's or captive portal's error page);
- a ``Content-Length`` (or ``Content-Range``) other than the listed size, or than the
  bytes still missing when resuming;
- a body longer than that: the transfer stops at the listed size, so an endless body
  never writes more than the file.

Two limits end a transfer that has gone quiet or nearly so, keeping what came:

- :data:`STALL_TIMEOUT` (30 s): no byte for that long (after the headers, or between
  two reads) ends the download at once, not retried, so it ends after the time the
  message states;
- :data:`MIN_RATE` over :data:`RATE_WINDOW` (1 kB/s over 60 s): a download that
  averages less over the last :data:`RATE_WINDOW` seconds is given up.

Both are module constants, read at each download, so tests can shorten them. A
connection that cannot be made within
:data:`~stagewise.models.library.hub_http.CONNECT_TIMEOUT` is not retried either.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx2
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import get_session, hf_raise_for_status

from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.library.hub_http import CONNECT_TIMEOUT, HubError, format_size

__all__ = [
    "MIN_RATE",
    "PROGRESS_INTERVAL",
    "RATE_WINDOW",
    "RETRY_DELAYS",
    "SPEED_WINDOW",
    "STALL_TIMEOUT",
    "DownloadProgress",
    "ProgressMeter",
    "fetch_missing",
]

RETRY_DELAYS: tuple[float, ...] = (0.25, 1.0, 2.0, 4.0)
"""Pauses before each retry of a broken download; the count resets whenever bytes arrive."""
PROGRESS_INTERVAL = 0.1
"""At most one progress event per this many seconds (plus the first and the last)."""
SPEED_WINDOW = 5.0
"""Seconds over which the speed (and so the time left) is averaged."""
STALL_TIMEOUT = 30.0
"""Seconds without a byte from the server after which a download is given up (not retried)."""
MIN_RATE = 1000.0
"""Bytes a second a download must average over :data:`RATE_WINDOW`, or it is given up."""
RATE_WINDOW = 60.0
"""Seconds over which the download rate is averaged for :data:`MIN_RATE`."""

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_HTML_NAMES = (".html", ".htm", ".xhtml")

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class DownloadProgress:
    """How far a download is.

    Attributes:
        file: Path of the file in the repository.
        done: Bytes on disk so far (a resumed download starts above zero).
        total: Size of the file.
        bytes_per_s: Speed over the last few seconds (0 until it can be measured).
        seconds_left: Estimated time to finish, or None while the speed is unknown.
    """

    file: str
    done: int
    total: int
    bytes_per_s: float
    seconds_left: float | None


class ProgressMeter:
    """Counts bytes, checks ``cancel`` on every chunk and reports progress ~10 times a second.

    Speed is measured over the last :data:`SPEED_WINDOW` seconds of reports; every chunk
    also checks the rate against :data:`MIN_RATE` (:meth:`check_rate`).
    """

    def __init__(self, file: str, total: int, done: int,
                 callback: Callable[[DownloadProgress], None] | None,
                 cancel: threading.Event | None) -> None:
        self.file, self.total, self.done = file, total, done
        self.callback, self.cancel = callback, cancel
        self.last = float("-inf")
        self.window: collections.deque[tuple[float, int]] = collections.deque()
        self.rate_samples = collections.deque([(time.monotonic(), done)])

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(
                f"download of {self.file} cancelled at {format_size(self.done)} of "
                f"{format_size(self.total)}; downloading it again resumes from there")

    def restart(self, done: int) -> None:
        """The byte count went back (the server ignored a Range request, or a body was
        discarded)."""
        self.done = done
        self.window.clear()
        self.rate_samples = collections.deque([(time.monotonic(), done)])

    def check_rate(self) -> None:
        """Raises if the last :data:`RATE_WINDOW` seconds averaged below :data:`MIN_RATE`.

        Raises:
            StagewiseError: Too slow; it says how much of the file is kept to resume from.
        """
        now = time.monotonic()
        samples = self.rate_samples
        if now - samples[-1][0] >= RATE_WINDOW / 10:
            samples.append((now, self.done))
        while len(samples) > 1 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()  # keep one sample at least RATE_WINDOW old, the newest such
        since, done = samples[0]
        if now - since < RATE_WINDOW:
            return
        rate = (self.done - done) / (now - since)
        if rate < MIN_RATE:
            raise _gave_up(self.file, self.done, HubError(
                f"too slow: {_format_rate(rate)} on average in the last {RATE_WINDOW:g} s, "
                f"below the minimum of {_format_rate(MIN_RATE)}", "timeout"))

    def advance(self, n: int) -> None:
        self.done += n
        self.check_cancel()
        self.check_rate()
        if self.callback is not None and time.monotonic() - self.last >= PROGRESS_INTERVAL:
            self.report()

    def report(self) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        self.last = now
        self.window.append((now, self.done))
        while len(self.window) > 2 and now - self.window[1][0] >= SPEED_WINDOW:
            self.window.popleft()
        t0, d0 = self.window[0]
        speed = (self.done - d0) / (now - t0) if now > t0 and self.done > d0 else 0.0
        left = max(self.total - self.done, 0)
        seconds_left = 0.0 if left == 0 else (left / speed if speed > 0 else None)
        self.callback(DownloadProgress(self.file, self.done, self.total, speed, seconds_left))


def fetch_missing(url: str, headers: dict[str, str], part: Path, size: int,
                  meter: ProgressMeter, explain: Callable[[Exception], StagewiseError]) -> None:
    """Appends the missing bytes of a ``size``-byte file to ``part``, retrying broken connections.

    Args:
        url: The file's download URL.
        headers: Request headers (token, user agent); a ``Range`` is added to resume.
        part: The partial file (created if missing); it is kept on any failure, less a
            body that contradicted the metadata.
        size: The file's full size.
        meter: Counts the bytes, checks for a cancel and the rate; its ``file`` names
            the download.
        explain: Turns a failed request into the error to show.

    Raises:
        StagewiseError: A refusal, a failed write, an answer that contradicts the
            metadata, a stall of :data:`STALL_TIMEOUT`, a rate below :data:`MIN_RATE`,
            or a broken connection that :data:`RETRY_DELAYS` retries did not mend.
        Cancelled: The meter's cancel event was set.
    """
    failures = 0
    session = get_session()
    part.touch()
    with part.open("r+b") as file:
        furthest = file.seek(0, os.SEEK_END)
        while (start := file.tell()) < size:
            try:
                _fetch_once(session, url, headers, file, (start, size), meter)
                if file.tell() >= size:
                    return
                error: Exception = httpx2.RemoteProtocolError(
                    "the server ended the download early")
            except _Rejected as e:
                raise _gave_up(meter.file, file.tell(), StagewiseError(str(e))) from None
            except httpx2.TimeoutException as e:
                raise _gave_up(meter.file, file.tell(), _timed_out(e, explain)) from e
            except (httpx2.HTTPError, OfflineModeIsEnabled) as e:
                if not _transient(e):
                    raise explain(e) from e
                error = e
            except OSError as e:
                raise StagewiseError(f"cannot write {part}: {e.strerror or e}") from e
            if file.tell() > furthest:
                furthest = file.tell()
                failures = 0  # it got further than ever: a fresh allowance of retries
            if failures >= len(RETRY_DELAYS):
                raise _gave_up(meter.file, file.tell(), explain(error)) from error
            _pause(RETRY_DELAYS[failures], meter)
            failures += 1


class _Rejected(Exception):
    """An answer that contradicts the file's metadata; its body was not kept."""


def _timed_out(error: httpx2.TimeoutException,
               explain: Callable[[Exception], StagewiseError]) -> StagewiseError:
    """Why a download timed out: no connection, or a stall of :data:`STALL_TIMEOUT`."""
    if isinstance(error, httpx2.ConnectTimeout):
        return explain(error)
    return HubError(f"no data from the server for {STALL_TIMEOUT:g} s", "timeout")


def _gave_up(name: str, kept: int, reason: StagewiseError) -> StagewiseError:
    """The error that ends a download, saying how much of ``name`` is kept to resume from."""
    resume = (f"; the {format_size(kept)} downloaded so far are kept and downloading "
              "again resumes from there" if kept else "")
    return HubError(f"download of {name} failed: {reason}{resume}",
                    reason.failure if isinstance(reason, HubError) else "other")


def _format_rate(bytes_per_s: float) -> str:
    """A rate for people: "16 bytes/s", "1.0 kB/s"."""
    if bytes_per_s < 1000:
        return f"{bytes_per_s:.0f} bytes/s"
    return f"{format_size(bytes_per_s)}/s"


def _pause(delay: float, meter: ProgressMeter) -> None:
    """Waits ``delay`` seconds before a retry; a cancel ends the wait early and raises."""
    if meter.cancel is not None:
        meter.cancel.wait(delay)
    else:
        time.sleep(delay)
    meter.check_cancel()


def _fetch_once(session: httpx2.Client, url: str, headers: dict[str, str], file: BinaryIO,
                span: tuple[int, int], meter: ProgressMeter) -> None:
    """One GET of bytes ``start`` to ``size`` (``span``), written to ``file`` at its end.

    Raises:
        _Rejected: The answer contradicts the metadata; nothing of its body is kept.
    """
    start, size = span
    request_headers = dict(headers)
    if start:
        request_headers["Range"] = f"bytes={start}-"
    timeout = httpx2.Timeout(STALL_TIMEOUT, connect=CONNECT_TIMEOUT)
    with session.stream("GET", url, headers=request_headers, timeout=timeout) as response:
        if response.status_code == 416 and start:
            # The partial file is no prefix of the file any more: start over.
            _cut_back(file, 0, meter)
            raise httpx2.RemoteProtocolError("the server refused to resume (HTTP 416)")
        hf_raise_for_status(response)
        resumed = bool(start) and response.status_code == 206
        _check_answer(response, meter.file, start if resumed else 0, size)
        if start and not resumed:
            _cut_back(file, 0, meter)  # the server ignored the Range: it sends everything
        _write_body(response, file, size, meter)


def _write_body(response: httpx2.Response, file: BinaryIO, size: int,
                meter: ProgressMeter) -> None:
    """Appends the body to ``file``, stopping at ``size``: more is discarded and rejected."""
    begin = file.tell()
    for chunk in response.iter_bytes():
        if file.tell() + len(chunk) > size:
            _cut_back(file, begin, meter)
            raise _Rejected(
                f"the server sent more than the {format_size(size)} the hub lists for the "
                "file; what it sent was discarded")
        file.write(chunk)
        meter.advance(len(chunk))


def _cut_back(file: BinaryIO, length: int, meter: ProgressMeter) -> None:
    """Shortens ``file`` to ``length`` bytes (and the meter's count with it)."""
    file.seek(length)
    file.truncate()
    meter.restart(length)


def _check_answer(response: httpx2.Response, name: str, start: int, size: int) -> None:
    """Rejects an answer whose type or length contradicts the metadata.

    Args:
        response: The answer, headers read, body not yet.
        name: Path of the file in the repository.
        start: The first byte the body holds (0 unless it answers a ``Range``).
        size: The file's size as the hub lists it.

    Raises:
        _Rejected: An HTML page for a file not named ``.html``, or a ``Content-Length``
            or ``Content-Range`` that does not fit ``start`` and ``size``.
    """
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind in _HTML_TYPES and not name.lower().endswith(_HTML_NAMES):
        raise _Rejected(f"the server sent an HTML page ({kind}) instead of the file "
                        f"(HTTP {response.status_code}); it was discarded")
    announced = response.headers.get("Content-Length")
    encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
    if announced is not None and not encoded and announced.strip() != str(size - start):
        where = f" from byte {start} of {size}" if start else ""
        raise _Rejected(f"the server announced {announced.strip()} bytes where the hub lists "
                        f"{size - start}{where}; the answer was discarded")
    span = response.headers.get("Content-Range")
    if start and span is not None and not _range_fits(span, start, size):
        raise _Rejected(f"the server sent {span!r} where bytes {start}-{size - 1} of "
                        f"{size} were asked for; the answer was discarded")


def _range_fits(content_range: str, start: int, size: int) -> bool:
    """Whether ``Content-Range: bytes a-b/total`` is bytes ``start``- of a ``size``-byte file."""
    unit, _, rest = content_range.strip().partition(" ")
    first, _, total = rest.partition("/")
    return (unit.lower() == "bytes" and first.partition("-")[0].strip() == str(start)
            and total.strip() in {"*", str(size)})


def _transient(error: Exception) -> bool:
    """Whether a failed download is worth retrying."""
    if isinstance(error, OfflineModeIsEnabled | httpx2.ProxyError):
        return False
    if isinstance(error, httpx2.TransportError):
        return True
    response = getattr(error, "response", None)
    return response is not None and response.status_code in _RETRY_STATUS
