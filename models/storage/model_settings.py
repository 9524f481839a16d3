"""Settings kept per model: what one model needs that another does not.

Today one: the most tokens an image may take (``EngineSettings.image_tokens``), which
depends on the model's encoder (a Qwen-VL model reads fine print at 1,000 tokens, another
family ignores the cap). Kept in ``model-settings.json`` in the config folder beside the
settings, by model file: Preferences writes the value of the model it is set for, and the
window and ``stagewise ask``/``batch`` read the value of the model they load.

Reading never fails: a missing or damaged file gives no values (a damaged one is logged and
left as it is until the next write replaces it). Qt-free.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.disk.paths import config_dir
from stagewise.models.errors import StagewiseError
from stagewise.models.inference.engine_settings import IMAGE_TOKENS
from stagewise.models.storage.app_settings import AppSettings

__all__ = ["BUILT_IN", "MODEL_SETTINGS_FILE", "image_tokens_for", "model_key",
           "remember_image_tokens", "with_model_image_tokens"]

log = logging.getLogger("stagewise.settings")

MODEL_SETTINGS_FILE = "model-settings.json"
BUILT_IN = "built-in"
"""The key of the model used when none is named (the demo, or the default pair)."""


def model_key(model: Path | None) -> str:
    """How a model file is named in the file: its absolute path (:data:`BUILT_IN` for
    None)."""
    return BUILT_IN if model is None else str(Path(model).expanduser().absolute())


def image_tokens_for(model: Path | None, path: Path | None = None) -> int | None:
    """The image-token cap kept for ``model`` (None: none kept, the load settings' stands).

    Args:
        model: The text model file (None: the built-in one).
        path: The file; default ``model-settings.json`` in the config folder.
    """
    value = _read(path).get(model_key(model), {}).get("image_tokens")
    if isinstance(value, int) and not isinstance(value, bool) and IMAGE_TOKENS.allows(value):
        return value
    return None


def with_model_image_tokens(settings: AppSettings, path: Path | None = None) -> AppSettings:
    """``settings`` with the image-token cap kept for its model (unchanged when none is
    kept)."""
    tokens = image_tokens_for(settings.model, path)
    if tokens is None or tokens == settings.engine.image_tokens:
        return settings
    return replace(settings, engine=replace(settings.engine, image_tokens=tokens))


def remember_image_tokens(model: Path | None, tokens: int, path: Path | None = None) -> None:
    """Keep ``tokens`` (0: the model's own cap) as ``model``'s image-token cap.

    Raises:
        StagewiseError: The value is out of range, or the file cannot be written.
    """
    IMAGE_TOKENS.check(tokens)
    path = path or config_dir() / MODEL_SETTINGS_FILE
    data = _read(path)
    data.setdefault(model_key(model), {})["image_tokens"] = tokens
    text = json.dumps({"version": 1, "models": data}, indent=2, ensure_ascii=False) + "\n"
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as error:
        raise StagewiseError(f"{path}: cannot keep the model's settings "
                             f"({error.strerror or error})") from None


def _read(path: Path | None) -> dict[str, dict[str, object]]:
    path = path or config_dir() / MODEL_SETTINGS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as error:
        log.warning("%s: cannot read the per-model settings (%s); none used", path, error)
        return {}
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        log.warning("%s: not per-model settings; none used", path)
        return {}
    return {key: value for key, value in models.items()
            if isinstance(key, str) and isinstance(value, dict)}
