"""Downloading model files from the Hugging Face hub, resumably and checked.

:func:`download` fetches one file of a model repository into a folder we own:

1. Offline mode (``HF_HUB_OFFLINE``) or an unreachable hub gives a
   :class:`~models.errors.StagewiseError` at once ("Hugging Face is not reachable
   (offline): ..."), never a hang: every request has a connect timeout
   (:data:`CONNECT_TIMEOUT`) and a read timeout (:data:`READ_TIMEOUT`).
2. The file's metadata comes first (:func:`remote_file`, the hub's ``paths-info``
   API: size and the LFS sha256); HTTP errors become messages that say what to do.
3. Free disk space is checked against what is still to download.
4. The bytes go to ``<name>.<sha256 prefix>.incomplete`` beside the target. A broken
   connection is retried a few times (:data:`RETRY_DELAYS`) with a ``Range`` request
   from where it stopped; a cancelled or failed download keeps the partial file, and
   the next :func:`download` of the same file resumes from it.
5. Size and SHA-256 are checked against the hub's metadata (and the caller's
   expectations); a mismatch deletes the file. Only a checked file is renamed to
   its final name, so a file under the final name is always whole.

Why not ``hf_hub_download(local_dir=...)``: in huggingface_hub 2.4 it downloads to a
process-unique temporary file that it deletes on any failure, so nothing survives a
cancel or a crash to resume from (it only resumes within one call), and it reads
the body in 10 MB chunks, which makes progress coarse and a cancel slow. This module
uses huggingface_hub's pieces instead: its HTTP session (proxies, offline switch),
:func:`~huggingface_hub.hf_hub_url`, :func:`~huggingface_hub.utils.build_hf_headers`
(token, user agent), ``hf_raise_for_status`` (hub error codes) and
:class:`~huggingface_hub.hf_api.RepoFile` (the metadata format).

The endpoint is the ``endpoint`` argument, else ``HF_ENDPOINT``, else
``huggingface_hub.constants.ENDPOINT`` (https://huggingface.co). The module is
Qt-free; progress and cancel are a callback and a :class:`threading.Event`, called
and checked on the downloading thread.
"""

from __future__ import annotations

import collections
import hashlib
import http
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import quote

import httpx2
from huggingface_hub import constants, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import (
    build_hf_headers,
    get_session,
    hf_raise_for_status,
    validate_repo_id,
)

from models.errors import Cancelled, StagewiseError

__all__ = [
    "CONNECT_TIMEOUT",
    "PROGRESS_INTERVAL",
    "READ_TIMEOUT",
    "RETRY_DELAYS",
    "SPACE_MARGIN",
    "SPEED_WINDOW",
    "DownloadProgress",
    "RemoteFile",
    "download",
    "is_offline",
    "remote_file",
    "resolve_endpoint",
    "sha256_file",
]

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a connection to the hub."""
READ_TIMEOUT = 30.0
"""Seconds to wait for the hub to send anything on an open connection."""
RETRY_DELAYS: tuple[float, ...] = (0.25, 1.0, 2.0, 4.0)
"""Pauses before each retry of a broken download; the count resets whenever bytes arrive."""
SPACE_MARGIN = 100 * 1000**2
"""Bytes to leave free on the disk beyond the download itself."""

PROGRESS_INTERVAL = 0.1
"""At most one progress event per this many seconds (plus the first and the last)."""
SPEED_WINDOW = 5.0
"""Seconds over which the speed (and so the time left) is averaged."""

_CHUNK = 4 * 1024 * 1024
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RemoteFile:
    """A file of a model repository, as the hub's LFS metadata describes it.

    Attributes:
        repo: ``owner/name`` of the repository.
        revision: The revision it was looked up at (branch, tag or commit).
        name: Path of the file in the repository.
        size: Size in bytes.
        sha256: SHA-256 of the content (lower-case hex); empty for a file not kept in LFS
            (small text files), whose content the hub only names by its git sha1.
    """

    repo: str
    revision: str
    name: str
    size: int
    sha256: str


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


# --------------------------------------------------------------------------- settings


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The hub URL to use: ``endpoint``, else ``HF_ENDPOINT``, else huggingface_hub's default."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_offline() -> bool:
    """Whether offline mode is on (``HF_HUB_OFFLINE``, read now or at import)."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return constants.is_offline_mode() or value in {"1", "ON", "YES", "TRUE"}


def _timeout() -> httpx2.Timeout:
    return httpx2.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)


def _web_page(endpoint: str, repo: str) -> str:
    """The repository's web page (where the licence is accepted)."""
    return f"{endpoint}/{repo}"


def _check_repo(repo: str, name: str) -> PurePosixPath:
    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise StagewiseError(
            f"{repo!r} is not a Hugging Face repository name (expected owner/name)") from None
    relative = PurePosixPath(name)
    if not name or relative.is_absolute() or ".." in relative.parts or "\\" in name:
        raise StagewiseError(f"{name!r} is not a file name inside a repository")
    return relative


# --------------------------------------------------------------------------- errors


def _offline_error(reason: str) -> StagewiseError:
    return StagewiseError(f"Hugging Face is not reachable (offline): {reason}")


def _explain(error: Exception, *, repo: str, name: str, revision: str,
             endpoint: str) -> StagewiseError:
    """A user-facing error for a failed request about ``repo``/``name``."""
    if isinstance(error, OfflineModeIsEnabled):
        return _offline_error("offline mode is on (HF_HUB_OFFLINE is set)")
    if isinstance(error, httpx2.ProxyError):
        return StagewiseError(f"the proxy refused the connection to {endpoint}: {error}")
    if isinstance(error, httpx2.ConnectTimeout):
        return _offline_error(
            f"no connection to {endpoint} within {CONNECT_TIMEOUT:g} s")
    if isinstance(error, httpx2.ConnectError):
        return _offline_error(f"cannot connect to {endpoint} ({_reason(error)})")
    if isinstance(error, httpx2.TimeoutException):
        return StagewiseError(
            f"Hugging Face ({endpoint}) did not answer within {READ_TIMEOUT:g} s; "
            "check the connection and try again")
    if isinstance(error, httpx2.TransportError):
        return StagewiseError(
            f"the connection to Hugging Face ({endpoint}) broke off ({_reason(error)})")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return _explain_status(error.response, repo=repo, name=name, revision=revision,
                               endpoint=endpoint)
    return StagewiseError(f"unexpected answer from Hugging Face ({endpoint}): {error}")


def _explain_status(response: httpx2.Response, *, repo: str, name: str, revision: str,
                    endpoint: str) -> StagewiseError:
    status = response.status_code
    code = response.headers.get("X-Error-Code", "")
    words = f"HTTP {status} {_phrase(status)}"
    if status in (401, 403) or code == "GatedRepo":
        maybe_missing = " (or it does not exist)" if code == "RepoNotFound" else ""
        return StagewiseError(
            f"{repo} needs a Hugging Face login / accepting the licence at "
            f"{_web_page(endpoint, repo)}{maybe_missing}: log in with `hf auth login` or "
            f"set HF_TOKEN, then try again ({words})")
    if code == "RepoNotFound":
        return StagewiseError(f"no model repository named {repo} on Hugging Face ({words})")
    if code == "RevisionNotFound":
        return StagewiseError(f"the model repository {repo} has no revision {revision!r}")
    if code == "EntryNotFound":
        return _no_file(repo, name, revision)
    if status == 404:
        return StagewiseError(
            f"no model repository/file named {repo}/{name} on Hugging Face ({words})")
    if status == 429:
        return StagewiseError(f"Hugging Face is limiting requests ({words}); try again later")
    if status >= 500:
        return StagewiseError(f"Hugging Face has a problem ({words}); try again later")
    return StagewiseError(f"Hugging Face refused {repo}/{name} ({words})")


def _no_file(repo: str, name: str, revision: str) -> StagewiseError:
    return StagewiseError(
        f"no file named {name} in the model repository {repo} (revision {revision})")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text or type(error).__name__


def _size(n: float) -> str:
    if n >= 1000**3:
        return f"{n / 1000**3:.1f} GB"
    if n >= 1000**2:
        return f"{n / 1000**2:.1f} MB"
    return f"{n / 1000:.1f} kB"


# --------------------------------------------------------------------------- metadata


def remote_file(repo: str, name: str, revision: str = "main", *,
                endpoint: str | None = None, token: str | bool | None = None) -> RemoteFile:
    """Looks up a file's size and SHA-256 on the hub (its ``paths-info`` API).

    Args:
        repo: ``owner/name`` of a model repository.
        name: Path of the file in the repository.
        revision: Branch, tag or commit.
        endpoint: Hub URL; see :func:`resolve_endpoint`.
        token: Hugging Face token; None uses the saved login (or ``HF_TOKEN``), False none.

    Returns:
        The file's metadata.

    Raises:
        StagewiseError: Offline, the hub unreachable or refusing, no such repository,
            revision or file.
    """
    _check_repo(repo, name)
    endpoint = resolve_endpoint(endpoint)
    if is_offline():
        raise _offline_error("offline mode is on (HF_HUB_OFFLINE is set)")
    url = f"{endpoint}/api/models/{repo}/paths-info/{quote(revision, safe='')}"
    try:
        response = get_session().post(
            url, data={"paths": [name], "expand": False},
            headers=build_hf_headers(token=token, library_name="stagewise"),
            timeout=_timeout())
        hf_raise_for_status(response)
        entries = response.json()
    except (httpx2.HTTPError, OfflineModeIsEnabled) as e:
        raise _explain(e, repo=repo, name=name, revision=revision, endpoint=endpoint) from e
    except ValueError as e:  # not JSON
        raise StagewiseError(
            f"{endpoint} did not answer like a Hugging Face hub ({e})") from e
    try:
        info = next(RepoFile(**entry) for entry in entries
                    if entry.get("type") == "file" and entry.get("path") == name)
    except StopIteration:
        raise _no_file(repo, name, revision) from None
    except (TypeError, KeyError, AttributeError) as e:
        raise StagewiseError(
            f"{endpoint} did not answer like a Hugging Face hub ({e!r})") from e
    if info.lfs is not None:
        return RemoteFile(repo, revision, name, int(info.lfs.size), str(info.lfs.sha256).lower())
    return RemoteFile(repo, revision, name, int(info.size), "")


# --------------------------------------------------------------------------- progress


class _Meter:
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
                f"download of {self.file} cancelled at {_size(self.done)} of "
                f"{_size(self.total)}; downloading it again resumes from there")

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


# --------------------------------------------------------------------------- download


def sha256_file(path: Path | str, cancel: threading.Event | None = None) -> str:
    """SHA-256 of a file (lower-case hex), read in chunks.

    Raises:
        Cancelled: ``cancel`` was set.
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while n := file.readinto(buffer):
            digest.update(view[:n])
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"checking {Path(path).name} cancelled")
    return digest.hexdigest()


def download(repo: str, name: str, dest_dir: Path | str, *, revision: str = "main",
             expected_size: int | None = 0, expected_sha256: str | None = "",
             progress: Callable[[DownloadProgress], None] | None = None,
             cancel: threading.Event | None = None, endpoint: str | None = None,
             token: str | bool | None = None) -> Path:
    """Downloads one file of a model repository into ``dest_dir``, resuming and checking it.

    A file already at the target with the right size and SHA-256 is not downloaded
    again (for a file without LFS metadata and no ``expected_sha256``, the right size
    is enough). Not safe for two simultaneous downloads of the same file into one folder.

    Args:
        repo: ``owner/name`` of a model repository.
        name: Path of the file in the repository; it lands at ``dest_dir / name``.
        dest_dir: Folder to download into (created if needed).
        revision: Branch, tag or commit.
        expected_size: Size the caller expects (0 or None: any).
        expected_sha256: SHA-256 the caller expects ("" or None: any).
        progress: Called on this thread with :class:`DownloadProgress` events: one at
            the start, then at most ~10 a second, and one with ``done == total`` when
            all bytes are in (before the checksum is computed).
        cancel: Set it to stop; the partial file is kept for a resume.
        endpoint: Hub URL; see :func:`resolve_endpoint`.
        token: Hugging Face token; None uses the saved login (or ``HF_TOKEN``), False none.

    Returns:
        The path of the checked file.

    Raises:
        StagewiseError: Offline or unreachable, refused (login / licence), no such file,
            not enough disk space, a broken connection that retries did not mend, or a
            file that fails its size or checksum test (it is deleted).
        Cancelled: ``cancel`` was set.
    """
    relative = _check_repo(repo, name)
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"download of {name} cancelled")
    endpoint = resolve_endpoint(endpoint)
    dest_dir = Path(dest_dir)
    target = dest_dir.joinpath(*relative.parts)

    remote = remote_file(repo, name, revision, endpoint=endpoint, token=token)
    _check_expected(remote, expected_size or 0, (expected_sha256 or "").lower())
    wanted = remote.sha256 or (expected_sha256 or "").lower()
    if target.is_file() and _is_intact(target, remote.size, wanted, cancel):
        meter = _Meter(name, remote.size, remote.size, progress, cancel)
        meter.report()
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.{remote.sha256[:16] or 'nosha'}.incomplete")
    for stale in target.parent.glob(f"{_glob_escape(target.name)}.*.incomplete"):
        if stale != part:
            stale.unlink(missing_ok=True)  # a partial of an older version of the file
    if part.is_file() and part.stat().st_size > remote.size:
        part.unlink()
    have = part.stat().st_size if part.is_file() else 0
    _check_space(dest_dir, remote.size - have)

    meter = _Meter(name, remote.size, have, progress, cancel)
    meter.report()
    url = hf_hub_url(repo, name, revision=revision, endpoint=endpoint)
    headers = build_hf_headers(token=token, library_name="stagewise")
    headers["Accept-Encoding"] = "identity"
    try:
        _fetch(url, headers, part, remote, meter, endpoint)
    except BaseException:
        if part.is_file() and part.stat().st_size == 0:
            part.unlink()  # nothing to resume from: leave no clutter
        raise
    meter.report()

    size = part.stat().st_size
    if size != remote.size:
        part.unlink(missing_ok=True)
        raise StagewiseError(
            f"{name} from {repo} has {size} bytes instead of the {remote.size} the hub lists; "
            "the file was deleted, download it again")
    if wanted:
        actual = sha256_file(part, cancel)
        if actual != wanted:
            part.unlink(missing_ok=True)
            raise StagewiseError(
                f"{name} from {repo} is damaged: its SHA-256 is {actual}, but should be "
                f"{wanted}; the file was deleted, download it again")
    os.replace(part, target)
    return target


def _check_expected(remote: RemoteFile, size: int, sha256: str) -> None:
    where = f"{remote.name} in {remote.repo} (revision {remote.revision})"
    if size and remote.size != size:
        raise StagewiseError(
            f"{where} has {remote.size} bytes on the hub, but {size} were expected: "
            "it is not the expected file; nothing was downloaded")
    if sha256 and remote.sha256 and remote.sha256 != sha256:
        raise StagewiseError(
            f"{where} has SHA-256 {remote.sha256} on the hub, but {sha256} was expected: "
            "it is not the expected file; nothing was downloaded")


def _is_intact(path: Path, size: int, sha256: str, cancel: threading.Event | None) -> bool:
    if path.stat().st_size != size:
        return False
    return not sha256 or sha256_file(path, cancel) == sha256


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _check_space(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed + SPACE_MARGIN > free:
        raise StagewiseError(
            f"not enough free space in {folder}: needs {_size(needed)} "
            f"(and {_size(SPACE_MARGIN)} to spare), {_size(free)} free")


def _fetch(url: str, headers: dict[str, str], part: Path, remote: RemoteFile,
           meter: _Meter, endpoint: str) -> None:
    """Appends the missing bytes of ``remote`` to ``part``, retrying broken connections."""
    failures = 0
    session = get_session()
    part.touch()
    with part.open("r+b") as file:
        file.seek(0, os.SEEK_END)
        while (start := file.tell()) < remote.size:
            try:
                _fetch_once(session, url, headers, file, start, meter)
                if file.tell() >= remote.size:
                    return
                error: Exception = httpx2.RemoteProtocolError(
                    "the server ended the download early")
            except (httpx2.HTTPError, OfflineModeIsEnabled) as e:
                if not _transient(e):
                    raise _explain(e, repo=remote.repo, name=remote.name,
                                   revision=remote.revision, endpoint=endpoint) from e
                error = e
            except OSError as e:
                raise StagewiseError(f"cannot write {part}: {e.strerror or e}") from e
            if file.tell() > start:
                failures = 0  # it moved on: a fresh allowance of retries
            if failures >= len(RETRY_DELAYS):
                kept = file.tell()
                resume = (f"; the {_size(kept)} downloaded so far are kept and downloading "
                          "again resumes from there" if kept else "")
                reason = _explain(error, repo=remote.repo, name=remote.name,
                                  revision=remote.revision, endpoint=endpoint)
                raise StagewiseError(
                    f"download of {remote.name} failed: {reason}{resume}") from error
            delay = RETRY_DELAYS[failures]
            failures += 1
            if meter.cancel is not None:
                meter.cancel.wait(delay)
            else:
                time.sleep(delay)
            meter.check_cancel()


def _fetch_once(session: httpx2.Client, url: str, headers: dict[str, str], file: BinaryIO,
                start: int, meter: _Meter) -> None:
    """One GET from byte ``start`` on, written to ``file`` at its end."""
    request_headers = dict(headers)
    if start:
        request_headers["Range"] = f"bytes={start}-"
    with session.stream("GET", url, headers=request_headers, timeout=_timeout()) as response:
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
