"""Which server answers, and opening the search's backend on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stagewise.models.bounds import FloatRange
from stagewise.models.errors import StagewiseError
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.search_backend import SearchBackend
from stagewise.models.remote.address import parse_address
from stagewise.models.remote.http import Endpoint, ServerError

__all__ = ["SERVER_KINDS", "STALL_TIMEOUT", "ServerKind", "ServerSettings", "connect"]

ServerKind = Literal["llama-server", "openai"]
SERVER_KINDS: tuple[ServerKind, ...] = ("llama-server", "openai")

STALL_TIMEOUT = FloatRange("stall_timeout", 0.1, 86400.0)
"""Seconds a read may wait for the server."""


@dataclass(frozen=True)
class ServerSettings:
    """A remote model.

    Attributes:
        url: The server's address, e.g. ``http://127.0.0.1:8080`` (llama-server) or
            ``http://gpu-box:8000/v1`` (vLLM).
        kind: "llama-server" (llama.cpp's own API) or "openai" (an OpenAI-compatible chat
            completions API, as vLLM serves it).
        model: The model's name on the server ("" for llama-server, which serves one).
        stage_mode: Whether the model writes the four stages itself (a LLaVA-CoT model,
            such as Xkev/Llama-3.2V-11B-cot) or must be prompted for them.
        stall_timeout: Seconds a read may wait for the server before giving up, and a
            stream may go without sending text.
        login: ``user:password`` for HTTP Basic authentication. One written into ``url``
            is moved here, so that the address shown, saved and named in errors never
            holds it; it is never in a repr.

    Raises:
        ServerError: ``url`` is not a usable server address (one line saying why).
    """

    url: str
    kind: ServerKind = "llama-server"
    model: str = ""
    stage_mode: StageMode = StageMode.PROMPTED
    stall_timeout: float = 60.0
    login: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.url:  # a server switched off in the window keeps its other values
            return
        address = parse_address(self.url)
        object.__setattr__(self, "url", address.url)
        if address.login and not self.login:
            object.__setattr__(self, "login", address.login)
        if not 0 < self.stall_timeout <= 86400:
            raise ServerError(f"the stall timeout must be from 0 to 86400 s, not "
                              f"{self.stall_timeout!r}")

    def validate(self) -> None:
        """Checks the values: the address's scheme (an empty address is allowed: the
        window's settings keep the other values of a server that is switched off), the
        kind, the stage mode and :data:`STALL_TIMEOUT`.

        Raises:
            StagewiseError: A value is not usable; the message names the setting.
        """
        if not isinstance(self.url, str) or (
                self.url and not self.url.startswith(("http://", "https://"))):
            raise StagewiseError(f"url must start with http:// or https://, not {self.url!r}")
        if self.kind not in SERVER_KINDS:
            raise StagewiseError(f"kind must be one of {', '.join(SERVER_KINDS)}, "
                                 f"not {self.kind!r}")
        if not isinstance(self.model, str):
            raise StagewiseError(f"model must be text, not {self.model!r}")
        if not isinstance(self.stage_mode, StageMode):
            raise StagewiseError(f"stage_mode must be native or prompted, "
                                 f"not {self.stage_mode!r}")
        STALL_TIMEOUT.check(self.stall_timeout)

    def describe(self) -> str:
        """How the window and the history name it: "llama-server at http://…"."""
        name = f"{self.model} on " if self.model else ""
        kind = "llama-server" if self.kind == "llama-server" else "server"
        return f"{name}{kind} at {self.url}"


def connect(server: ServerSettings, api_key: str = "") -> SearchBackend:
    """The search's backend on ``server``.

    Raises:
        ServerError: The server cannot be reached, refuses the key, or cannot take images.
        StagewiseError: The settings are not usable.
    """
    server.validate()
    endpoint = Endpoint(server.url, api_key, server.stall_timeout, server.login)
    if server.kind == "llama-server":
        from stagewise.models.remote.server_backend import ServerBackend

        return ServerBackend(endpoint, server.stage_mode)
    if server.kind == "openai":
        if not server.model:
            raise StagewiseError("an OpenAI-compatible server needs the model's name "
                                 "(--server-model)")
        from stagewise.models.remote.openai_backend import OpenAIBackend

        return OpenAIBackend(endpoint, server.model, server.stage_mode)
    raise StagewiseError(f"unknown server kind {server.kind!r}: use one of {SERVER_KINDS}")
