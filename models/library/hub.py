"""Downloading model files from the Hugging Face hub, resumably and checked.

:func:`download` fetches one file of a model repository into a folder we own:

1. Offline mode (``HF_HUB_OFFLINE``) or an unreachable hub gives a
   :class:`~stagewise.models.errors.StagewiseError` at once ("Hugging Face is not reachable
   (offline): ..."), never a hang: every request has a connect and a read timeout
   (:mod:`stagewise.models.library.hub_http`, which also words the errors).
2. The file's metadata comes first (:func:`remote_file`, the hub's ``paths-info``
   API: size and the LFS sha256); HTTP errors become messages that say what to do.
3. Free disk space is checked against what is still to download.
4. The bytes go to ``<name>.<sha256 prefix>.incomplete`` beside the target
   (:mod:`stagewise.models.library.hub_transfer`). A broken connection is retried a few times with a
   ``Range`` request from where it stopped; a cancelled or failed download keeps the
   partial file, and the next :func:`download` of the same file resumes from it. An
   answer that contradicts the metadata (an HTML page, another ``Content-Length``, a
   body longer than the file) is discarded at once; a stall of
   :data:`~stagewise.models.library.hub_transfer.STALL_TIMEOUT` seconds or a rate below
   :data:`~stagewise.models.library.hub_transfer.MIN_RATE` over
   :data:`~stagewise.models.library.hub_transfer.RATE_WINDOW` seconds ends the download.
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

import functools
import hashlib
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import httpx2
from huggingface_hub import constants, hf_hub_url
from huggingface_hub.errors import HFValidationError, OfflineModeIsEnabled
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import (
    build_hf_headers,
    get_session,
    hf_raise_for_status,
    validate_repo_id,
)

from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.library.hub_http import (
    explain_failure,
    format_size,
    no_file_error,
    offline_error,
    request_timeout,
)
from stagewise.models.library.hub_transfer import DownloadProgress, ProgressMeter, fetch_missing

__all__ = [
    "SPACE_MARGIN",
    "RemoteFile",
    "download",
    "is_offline",
    "remote_file",
    "resolve_endpoint",
    "sha256_file",
]

SPACE_MARGIN = 100 * 1000**2
"""Bytes to leave free on the disk beyond the download itself."""

_CHUNK = 4 * 1024 * 1024


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


# --------------------------------------------------------------------------- settings


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The hub URL to use: ``endpoint``, else ``HF_ENDPOINT``, else huggingface_hub's default."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_offline() -> bool:
    """Whether offline mode is on (``HF_HUB_OFFLINE``, read now or at import)."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return constants.is_offline_mode() or value in {"1", "ON", "YES", "TRUE"}


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
        raise offline_error("offline mode is on (HF_HUB_OFFLINE is set)")
    url = f"{endpoint}/api/models/{repo}/paths-info/{quote(revision, safe='')}"
    try:
        response = get_session().post(
            url, data={"paths": [name], "expand": False},
            headers=build_hf_headers(token=token, library_name="stagewise"),
            timeout=request_timeout())
        hf_raise_for_status(response)
        entries = response.json()
    except (httpx2.HTTPError, OfflineModeIsEnabled) as e:
        raise explain_failure(e, repo=repo, name=name, revision=revision,
                              endpoint=endpoint) from e
    except ValueError as e:  # not JSON
        raise StagewiseError(
            f"{endpoint} did not answer like a Hugging Face hub ({e})") from e
    try:
        info = next(RepoFile(**entry) for entry in entries
                    if entry.get("type") == "file" and entry.get("path") == name)
    except StopIteration:
        raise no_file_error(repo, name, revision) from None
    except (TypeError, KeyError, AttributeError) as e:
        raise StagewiseError(
            f"{endpoint} did not answer like a Hugging Face hub ({e!r})") from e
    if info.lfs is not None:
        return RemoteFile(repo, revision, name, int(info.lfs.size), str(info.lfs.sha256).lower())
    return RemoteFile(repo, revision, name, int(info.size), "")


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
        progress: Called on this thread with
            :class:`~stagewise.models.library.hub_transfer.DownloadProgress` events: one at the
            start, then at most ~10 a second, and one with ``done == total`` when all bytes are in
            (before the checksum is computed).
        cancel: Set it to stop; the partial file is kept for a resume.
        endpoint: Hub URL; see :func:`resolve_endpoint`.
        token: Hugging Face token; None uses the saved login (or ``HF_TOKEN``), False none.

    Returns:
        The path of the checked file.

    Raises:
        StagewiseError: Offline or unreachable, refused (login / licence), no such file,
            not enough disk space, a broken connection that retries did not mend, an
            answer that contradicts the metadata (discarded), a stall or too slow a
            transfer, or a file that fails its size or checksum test (it is deleted).
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
        ProgressMeter(name, remote.size, remote.size, progress, cancel).report()
        return target

    part = _partial_file(target, remote)
    have = part.stat().st_size if part.is_file() else 0
    _check_space(dest_dir, remote.size - have)
    meter = ProgressMeter(name, remote.size, have, progress, cancel)
    meter.report()
    _transfer(remote, part, meter, endpoint=endpoint, token=token)
    meter.report()
    _check_download(part, remote, wanted, cancel)
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


def _partial_file(target: Path, remote: RemoteFile) -> Path:
    """The partial file to download ``remote`` into, beside ``target``.

    Partials of other versions of the file are deleted, and so is a partial longer
    than the file (it cannot be a prefix of it).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.{remote.sha256[:16] or 'nosha'}.incomplete")
    for stale in target.parent.glob(f"{_glob_escape(target.name)}.*.incomplete"):
        if stale != part:
            stale.unlink(missing_ok=True)  # a partial of an older version of the file
    if part.is_file() and part.stat().st_size > remote.size:
        part.unlink()
    return part


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _check_space(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed + SPACE_MARGIN > free:
        raise StagewiseError(
            f"not enough free space in {folder}: needs {format_size(needed)} "
            f"(and {format_size(SPACE_MARGIN)} to spare), {format_size(free)} free")


def _transfer(remote: RemoteFile, part: Path, meter: ProgressMeter, *, endpoint: str,
              token: str | bool | None) -> None:
    """Fetches the bytes ``part`` lacks; an empty ``part`` is deleted if that fails."""
    url = hf_hub_url(remote.repo, remote.name, revision=remote.revision, endpoint=endpoint)
    headers = build_hf_headers(token=token, library_name="stagewise")
    headers["Accept-Encoding"] = "identity"
    explain = functools.partial(explain_failure, repo=remote.repo, name=remote.name,
                                revision=remote.revision, endpoint=endpoint)
    try:
        fetch_missing(url, headers, part, remote.size, meter, explain)
    except BaseException:
        if part.is_file() and part.stat().st_size == 0:
            part.unlink()  # nothing to resume from: leave no clutter
        raise


def _check_download(part: Path, remote: RemoteFile, sha256: str,
                    cancel: threading.Event | None) -> None:
    """Checks the size and (if known) the SHA-256 of ``part``; deletes it if either is wrong."""
    size = part.stat().st_size
    if size != remote.size:
        part.unlink(missing_ok=True)
        raise StagewiseError(
            f"{remote.name} from {remote.repo} has {size} bytes instead of the {remote.size} "
            "the hub lists; the file was deleted, download it again")
    if sha256:
        actual = sha256_file(part, cancel)
        if actual != sha256:
            part.unlink(missing_ok=True)
            raise StagewiseError(
                f"{remote.name} from {remote.repo} is damaged: its SHA-256 is {actual}, but "
                f"should be {sha256}; the file was deleted, download it again")
