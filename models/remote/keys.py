"""API keys and logins for servers, kept out of the settings file.

One JSON file in the config folder, readable by its owner only (0600), mapping a server's
address to its key; another, :data:`LOGIN_FILE`, maps it to the ``user:password`` that was
written into its address (:mod:`stagewise.models.remote.address` takes it out). No keyring
library is among Stagewise's dependencies, so the files are the store on every platform;
neither secret is ever written to the settings, the history, an export or a log line.
``STAGEWISE_API_KEY`` overrides the key for scripts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.disk.paths import config_dir
from stagewise.models.errors import StagewiseError

if TYPE_CHECKING:
    from stagewise.models.remote.server import ServerSettings

__all__ = ["KEY_ENV", "LOGIN_FILE", "KeyStore", "with_secrets"]

KEY_ENV = "STAGEWISE_API_KEY"
FILE_NAME = "server-keys.json"
LOGIN_FILE = "server-logins.json"


class KeyStore:
    """Keys (or, from :meth:`logins`, logins) by server address."""

    def __init__(self, path: Path | None = None, *, env: str | None = KEY_ENV) -> None:
        """``env``: the environment variable that overrides every stored value (None: no
        override)."""
        self.path = path or config_dir() / FILE_NAME
        self._env = env

    @classmethod
    def logins(cls, folder: Path | None = None) -> KeyStore:
        """The store of logins (``user:password``) by server address."""
        return cls((folder or config_dir()) / LOGIN_FILE, env=None)

    def get(self, url: str) -> str:
        """The key for ``url``: ``STAGEWISE_API_KEY`` if set, else the stored one, else ""."""
        if self._env and os.environ.get(self._env):
            return os.environ[self._env]
        return self._read().get(_normal(url), "")

    def set(self, url: str, key: str) -> None:
        """Store (or, with "", forget) the key for ``url``.

        Raises:
            StagewiseError: The file cannot be written.
        """
        keys = self._read()
        if key:
            keys[_normal(url)] = key
        else:
            keys.pop(_normal(url), None)
        data = json.dumps(keys, indent=1).encode()
        try:
            write_atomic(self.path, data)  # through mkstemp: the owner's only
            self.path.chmod(0o600)
        except OSError as e:
            raise StagewiseError(f"cannot save the server key in {self.path}: "
                                 f"{e.strerror or e}") from e

    def _read(self) -> dict[str, str]:
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as e:
            problem = (e.strerror or str(e)) if isinstance(e, OSError) else "not valid JSON"
            raise StagewiseError(f"cannot read the server keys in {self.path}: "
                                 f"{problem}") from e
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def with_secrets(server: ServerSettings, folder: Path | None = None
                 ) -> tuple[ServerSettings, str]:
    """``server`` with its stored login (unless its address gave one), and its API key.

    Raises:
        StagewiseError: A store cannot be read.
    """
    from dataclasses import replace

    keys = KeyStore(folder / FILE_NAME if folder else None)
    if not server.login:
        login = KeyStore.logins(folder).get(server.url)
        if login:
            server = replace(server, login=login)
    return server, keys.get(server.url)


def _normal(url: str) -> str:
    return url.strip().rstrip("/")
