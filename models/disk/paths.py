"""Where Stagewise keeps its files.

``STAGEWISE_DATA_DIR`` redirects the data folder (models, history) and
``STAGEWISE_CONFIG_DIR`` the config folder (settings); tests point both at temporary folders.
``STAGEWISE_CACHE_DIR`` redirects the cache folder (files that can be fetched again, such as
llama.cpp's converter); tests leave it alone, since what it holds is public and re-fetchable.
``STAGEWISE_PREFIX_CACHE_DIR`` redirects the one part of the cache that is the user's own: the
encoded images (:mod:`stagewise.models.inference.prefix_cache`); tests point it at a temporary
folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DATA_DIR_ENV = "STAGEWISE_DATA_DIR"
CONFIG_DIR_ENV = "STAGEWISE_CONFIG_DIR"
CACHE_DIR_ENV = "STAGEWISE_CACHE_DIR"
PREFIX_CACHE_DIR_ENV = "STAGEWISE_PREFIX_CACHE_DIR"


def data_dir() -> Path:
    """The user's Stagewise data folder (models, history), created on first use."""
    return _folder(DATA_DIR_ENV, platformdirs.user_data_dir("stagewise", False))


def config_dir() -> Path:
    """The user's Stagewise config folder (settings), created on first use."""
    return _folder(CONFIG_DIR_ENV, platformdirs.user_config_dir("stagewise", False))


def cache_dir() -> Path:
    """The user's Stagewise cache folder (re-fetchable downloads), created on first use."""
    return _folder(CACHE_DIR_ENV, platformdirs.user_cache_dir("stagewise", False))


def prefix_cache_dir() -> Path:
    """Where encoded images are kept between runs: ``image-prefixes`` in the cache folder,
    created on first use."""
    override = os.environ.get(PREFIX_CACHE_DIR_ENV)
    if override:
        return _folder(PREFIX_CACHE_DIR_ENV, override)
    path = cache_dir() / "image-prefixes"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _folder(env: str, default: str) -> Path:
    override = os.environ.get(env)
    path = Path(override) if override else Path(default)
    path.mkdir(parents=True, exist_ok=True)
    return path
