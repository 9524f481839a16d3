"""Server addresses as people type them, checked before anything connects.

Every front end (``--server``, the settings file, the settings dialog) reads an address
through :func:`parse_address`, so an unusable one is refused in one line wherever it
comes from, and a user name and password written into it (``http://user:pw@host``) are
taken out: the address that is shown, saved and named in errors never holds them. The
login is sent as HTTP Basic authentication and kept, like an API key, in the key store
(:mod:`stagewise.models.remote.keys`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from stagewise.models.remote.http import ServerError

__all__ = ["EXAMPLE", "ServerAddress", "parse_address", "redacted"]

EXAMPLE = "http://127.0.0.1:8080"
MAX_ADDRESS = 2048
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+(%[A-Za-z0-9._-]+)?\]")
_LOGIN = re.compile(r"(//)[^/?#@]*@")


@dataclass(frozen=True)
class ServerAddress:
    """A checked server address.

    Attributes:
        url: ``scheme://host[:port][/path]``, without a login, query or fragment, and
            without a trailing slash.
        login: ``user:password`` taken out of the address ("" for none); never in a repr.
        had_login: The address held a login part (``user@``, or ``@`` alone, which
            forgets a stored one).
    """

    url: str
    login: str = field(default="", repr=False)
    had_login: bool = False


def parse_address(text: str) -> ServerAddress:
    """Check a server address and take any login out of it.

    Raises:
        ServerError: It is not an http(s) address with a host and, if given, a port from
            1 to 65535 (the message never repeats a password).
    """
    text = text.strip()
    shown = redacted(text)[:120]

    def refuse(problem: str) -> ServerError:
        return ServerError(f"{shown!r} is not a server address: {problem}; give one such as "
                           f"{EXAMPLE}")

    if not text:
        raise ServerError(f"no server address: give one such as {EXAMPLE}")
    if len(text) > MAX_ADDRESS:
        raise refuse(f"it is over {MAX_ADDRESS} characters")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise refuse("it holds spaces or control characters")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise refuse("its brackets around an IPv6 host are not closed") from None
    if parts.scheme not in ("http", "https"):
        raise refuse("it must start with http:// or https://")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not _HOST.fullmatch(_host_part(hostport)):
        raise refuse("it names no usable host")
    try:
        port = parts.port
    except ValueError:
        port_text = hostport.rpartition(":")[2] if not hostport.endswith("]") else ""
        raise refuse(f"its port {port_text[:12]!r} is not a number from 1 to 65535") from None
    if port == 0:
        raise refuse("its port must be from 1 to 65535")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise refuse("a server address has no ?query or #fragment")
    login = ""
    if userinfo:
        user, _, password = userinfo.partition(":")
        login = f"{unquote(user)}:{unquote(password)}"
    url = f"{parts.scheme}://{hostport}{parts.path.rstrip('/')}"
    return ServerAddress(url, login, bool(at))


def redacted(text: str) -> str:
    """``text`` with any login in a URL replaced by ``…@`` (for messages and logs)."""
    return _LOGIN.sub(r"\1…@", text)


def _host_part(hostport: str) -> str:
    """The host of ``host[:port]`` (an IPv6 host keeps its brackets)."""
    if hostport.startswith("["):
        return hostport[: hostport.find("]") + 1] if "]" in hostport else hostport
    return hostport.partition(":")[0]
