"""API keys for servers, kept out of the settings file.

One JSON file in the config folder, readable by its owner only (0600), mapping a server's
address to its key. No keyring library is among Stagewise's dependencies, so the file is
the store on every platform; the key is never written to the settings, the history, an
export or a log line. ``STAGEWISE_API_KEY`` overrides it for scripts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.disk.paths import config_dir
from stagewise.models.errors import StagewiseError

__all__ = ["KEY_ENV", "KeyStore"]

KEY_ENV = "STAGEWISE_API_KEY"
FILE_NAME = "server-keys.json"


class KeyStore:
    """Keys by server address."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / FILE_NAME

    def get(self, url: str) -> str:
        """The key for ``url``: ``STAGEWISE_API_KEY`` if set, else the stored one, else ""."""
        if os.environ.get(KEY_ENV):
            return os.environ[KEY_ENV]
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
            raise StagewiseError(f"cannot save the server key in {self.path}: {e}") from e

    def _read(self) -> dict[str, str]:
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise StagewiseError(f"cannot read the server keys in {self.path}: {e}") from e
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _normal(url: str) -> str:
    return url.strip().rstrip("/")
