"""Requests to the Hugging Face hub: their timeouts, and what their failures mean.

Every request has a connect timeout (:data:`CONNECT_TIMEOUT`) and a read timeout
(:data:`READ_TIMEOUT`), so an unreachable hub gives an error at once, never a hang.
:func:`explain_failure` turns what ``httpx2`` and ``huggingface_hub`` raise into a
:class:`~stagewise.models.errors.StagewiseError` that says what to do.
"""

from __future__ import annotations

import http
import socket
from typing import Literal

import httpx2
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from stagewise.models.errors import StagewiseError

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "HubError",
    "HubFailure",
    "explain_failure",
    "format_size",
    "no_file_error",
    "offline_error",
    "request_timeout",
]

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a connection to the hub."""
READ_TIMEOUT = 30.0
"""Seconds to wait for the hub to send anything on an open connection (a download's
limit is :data:`stagewise.models.library.hub_transfer.STALL_TIMEOUT`)."""


HubFailure = Literal["offline", "refused", "timeout", "login", "missing", "server", "other"]
"""What went wrong with the hub, for a front end that says what to do next: ``offline``
(offline mode, or the hub's name cannot be resolved), ``refused`` (no connection: refused,
proxy), ``timeout`` (no answer, a stall, too slow), ``login`` (401/403, a gated
repository), ``missing`` (404: no such repository, revision or file), ``server`` (429,
5xx, a broken connection), ``other``."""


class HubError(StagewiseError):
    """A request to the hub failed; :attr:`failure` says how (see :data:`HubFailure`)."""

    def __init__(self, message: str, failure: HubFailure = "other") -> None:
        super().__init__(message)
        self.failure: HubFailure = failure


def request_timeout() -> httpx2.Timeout:
    """The timeouts of one request: :data:`READ_TIMEOUT`, :data:`CONNECT_TIMEOUT`."""
    return httpx2.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)


def _web_page(endpoint: str, repo: str) -> str:
    """The repository's web page (where the licence is accepted)."""
    return f"{endpoint}/{repo}"


def offline_error(reason: str, failure: HubFailure = "offline") -> HubError:
    """The error for a hub that cannot be reached, saying why."""
    return HubError(f"Hugging Face is not reachable (offline): {reason}", failure)


def explain_failure(error: Exception, *, repo: str, name: str, revision: str,
                    endpoint: str) -> HubError:
    """A user-facing error for a failed request about ``repo``/``name``."""
    if isinstance(error, OfflineModeIsEnabled):
        return offline_error("offline mode is on (HF_HUB_OFFLINE is set)")
    if isinstance(error, httpx2.ProxyError):
        return HubError(f"the proxy refused the connection to {endpoint}: {error}",
                        "refused")
    if isinstance(error, httpx2.ConnectTimeout):
        return offline_error(
            f"no connection to {endpoint} within {CONNECT_TIMEOUT:g} s", "timeout")
    if isinstance(error, httpx2.ConnectError):
        failure: HubFailure = "offline" if _name_not_resolved(error) else "refused"
        return offline_error(f"cannot connect to {endpoint} ({_reason(error)})", failure)
    if isinstance(error, httpx2.TimeoutException):
        return HubError(
            f"Hugging Face ({endpoint}) did not answer within {READ_TIMEOUT:g} s; "
            "check the connection and try again", "timeout")
    if isinstance(error, httpx2.TransportError):
        return HubError(
            f"the connection to Hugging Face ({endpoint}) broke off ({_reason(error)})",
            "server")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return _explain_status(error.response, repo=repo, name=name, revision=revision,
                               endpoint=endpoint)
    return HubError(f"unexpected answer from Hugging Face ({endpoint}): {error}")


_NAME_ERRORS = ("name or service not known", "temporary failure in name resolution",
                "nodename nor servname", "getaddrinfo failed", "no address associated",
                "name resolution")


def _name_not_resolved(error: BaseException) -> bool:
    """Whether a failed connection failed at the name lookup (DNS): offline, most likely."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(error).lower()
    return any(words in text for words in _NAME_ERRORS)


def _explain_status(response: httpx2.Response, *, repo: str, name: str, revision: str,
                    endpoint: str) -> HubError:
    status = response.status_code
    code = response.headers.get("X-Error-Code", "")
    words = f"HTTP {status} {_phrase(status)}"
    if status in (401, 403) or code == "GatedRepo":
        maybe_missing = " (or it does not exist)" if code == "RepoNotFound" else ""
        return HubError(
            f"{repo} needs a Hugging Face login / accepting the licence at "
            f"{_web_page(endpoint, repo)}{maybe_missing}: log in with `hf auth login` or "
            f"set HF_TOKEN, then try again ({words})", "login")
    if code == "RepoNotFound":
        return HubError(f"no model repository named {repo} on Hugging Face ({words})",
                        "missing")
    if code == "RevisionNotFound":
        return HubError(f"the model repository {repo} has no revision {revision!r}",
                        "missing")
    if code == "EntryNotFound":
        return no_file_error(repo, name, revision)
    if status == 404:
        return HubError(
            f"no model repository/file named {repo}/{name} on Hugging Face ({words})",
            "missing")
    if status == 429:
        return HubError(f"Hugging Face is limiting requests ({words}); try again later",
                        "server")
    if status >= 500:
        return HubError(f"Hugging Face has a problem ({words}); try again later", "server")
    return HubError(f"Hugging Face refused {repo}/{name} ({words})")


def no_file_error(repo: str, name: str, revision: str) -> HubError:
    """The error for a repository that has no file ``name`` at ``revision``."""
    return HubError(
        f"no file named {name} in the model repository {repo} (revision {revision})",
        "missing")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text or type(error).__name__


def format_size(n: float) -> str:
    """A byte count for people: "1.5 GB", "20.0 MB", "0.5 kB"."""
    if n >= 1000**3:
        return f"{n / 1000**3:.1f} GB"
    if n >= 1000**2:
        return f"{n / 1000**2:.1f} MB"
    return f"{n / 1000:.1f} kB"
