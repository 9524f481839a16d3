"""The resumable byte transfer of one file from the hub, with its progress meter.

:func:`fetch_missing` appends to a partial file the bytes it still lacks, with a
``Range`` request from where it stops. A broken connection is retried a few times
(:data:`RETRY_DELAYS`); a cancel or a failure keeps the partial file, so a later call
resumes from it. :class:`ProgressMeter` counts the bytes, checks the cancel event on
every chunk and reports :class:`DownloadProgress` about ten times a second.
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
from stagewise.models.library.hub_http import format_size, request_timeout

__all__ = [
    "PROGRESS_INTERVAL",
    "RETRY_DELAYS",
    "SPEED_WINDOW",
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

    Speed is measured over the last :data:`SPEED_WINDOW` seconds of reports.
    """

    def __init__(self, file: str, total: int, done: int,
                 callback: Callable[[DownloadProgress], None] | None,
                 cancel: threading.Event | None) -> None:
        self.file, self.total, self.done = file, total, done
        self.callback, self.cancel = callback, cancel
        self.last = float("-inf")
        self.window: collections.deque[tuple[float, int]] = collections.deque()

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(
                f"download of {self.file} cancelled at {format_size(self.done)} of "
                f"{format_size(self.total)}; downloading it again resumes from there")

    def restart(self, done: int) -> None:
        """The byte count went back (the server ignored a Range request)."""
        self.done = done
        self.window.clear()

    def advance(self, n: int) -> None:
        self.done += n
        self.check_cancel()
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
        part: The partial file (created if missing); it is kept on any failure.
        size: The file's full size.
        meter: Counts the bytes and checks for a cancel; its ``file`` names the download.
        explain: Turns a failed request into the error to show.

    Raises:
        StagewiseError: A refusal, a failed write, or a broken connection that
            :data:`RETRY_DELAYS` retries did not mend.
        Cancelled: The meter's cancel event was set.
    """
    failures = 0
    session = get_session()
    part.touch()
    with part.open("r+b") as file:
        file.seek(0, os.SEEK_END)
        while (start := file.tell()) < size:
            try:
                _fetch_once(session, url, headers, file, start, meter)
                if file.tell() >= size:
                    return
                error: Exception = httpx2.RemoteProtocolError(
                    "the server ended the download early")
            except (httpx2.HTTPError, OfflineModeIsEnabled) as e:
                if not _transient(e):
                    raise explain(e) from e
                error = e
            except OSError as e:
                raise StagewiseError(f"cannot write {part}: {e.strerror or e}") from e
            if file.tell() > start:
                failures = 0  # it moved on: a fresh allowance of retries
            if failures >= len(RETRY_DELAYS):
                raise _gave_up(meter.file, file.tell(), explain(error)) from error
            _pause(RETRY_DELAYS[failures], meter)
            failures += 1


def _gave_up(name: str, kept: int, reason: StagewiseError) -> StagewiseError:
    """The error after the last retry, saying how much of ``name`` is kept to resume from."""
    resume = (f"; the {format_size(kept)} downloaded so far are kept and downloading "
              "again resumes from there" if kept else "")
    return StagewiseError(f"download of {name} failed: {reason}{resume}")


def _pause(delay: float, meter: ProgressMeter) -> None:
    """Waits ``delay`` seconds before a retry; a cancel ends the wait early and raises."""
    if meter.cancel is not None:
        meter.cancel.wait(delay)
    else:
        time.sleep(delay)
    meter.check_cancel()


def _fetch_once(session: httpx2.Client, url: str, headers: dict[str, str], file: BinaryIO,
                start: int, meter: ProgressMeter) -> None:
    """One GET from byte ``start`` on, written to ``file`` at its end."""
    request_headers = dict(headers)
    if start:
        request_headers["Range"] = f"bytes={start}-"
    with session.stream("GET", url, headers=request_headers, timeout=request_timeout()) as response:
        if response.status_code == 416 and start:
            # The partial file is no prefix of the file any more: start over.
            file.seek(0)
            file.truncate()
            meter.restart(0)
            raise httpx2.RemoteProtocolError("the server refused to resume (HTTP 416)")
        hf_raise_for_status(response)
        if start and response.status_code != 206:
            file.seek(0)  # the server ignored the Range: it sends everything
            file.truncate()
            meter.restart(0)
        for chunk in response.iter_bytes():
            file.write(chunk)
            meter.advance(len(chunk))


def _transient(error: Exception) -> bool:
    """Whether a failed download is worth retrying."""
    if isinstance(error, OfflineModeIsEnabled | httpx2.ProxyError):
        return False
    if isinstance(error, httpx2.TransportError):
        return True
    response = getattr(error, "response", None)
    return response is not None and response.status_code in _RETRY_STATUS
