"""Where Stagewise keeps its files; ``STAGEWISE_DATA_DIR`` redirects them (tests use it)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DATA_DIR_ENV = "STAGEWISE_DATA_DIR"


def data_dir() -> Path:
    """The user's Stagewise data folder (models, history), created on first use."""
    override = os.environ.get(DATA_DIR_ENV)
    path = Path(override) if override else Path(platformdirs.user_data_dir("stagewise", False))
    path.mkdir(parents=True, exist_ok=True)
    return path
