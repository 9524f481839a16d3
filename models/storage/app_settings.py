"""The user's settings: typed, versioned, stored as JSON in the config folder.

:class:`AppSettings` is what the desktop app remembers between runs: which model to
load, how to search, how to use the hardware and a few display choices. It maps onto
the core's own settings with :meth:`AppSettings.engine_settings` and
:meth:`AppSettings.search_settings`, following the same rules as ``stagewise ask``.

Loading never fails. A missing file gives the defaults; a damaged one (bad JSON, a
value of the wrong type or out of range, an unknown key) keeps what is valid, defaults
the rest, and is moved aside to ``settings.json.bad`` with a warning in the log. A
file written by a newer version is read for the keys this version knows and left as
it is. Older files are brought up to date through :data:`MIGRATIONS`.

This module is Qt-free and does not load llama.cpp.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.disk.paths import config_dir
from stagewise.models.errors import StagewiseError
from stagewise.models.inference.engine_settings import AUTO_CTX, PREFIX_CACHE_MIB, EngineSettings
from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.registry import Registry
from stagewise.models.reasoning.search_settings import MAX_BEAM, SearchSettings
from stagewise.models.reasoning.selections import SELECTIONS
from stagewise.models.reasoning.strategies import STRATEGIES, sequences_needed
from stagewise.models.reasoning.strategies.retrace import RetraceStrategy
from stagewise.models.remote.server import SERVER_KINDS, ServerSettings
from stagewise.models.storage.settings_values import (
    Invalid,
    bool_value,
    choice_value,
    float_value,
    int_value,
    path_value,
    text_value,
)

__all__ = [
    "BAD_SUFFIX",
    "CTX_MAX",
    "CTX_MIN",
    "GPU_LAYERS_MAX",
    "MAX_STAGE_TOKENS_MAX",
    "MAX_STAGE_TOKENS_MIN",
    "MIGRATIONS",
    "PREFIX_CACHE_MIB_MAX",
    "SCHEMA_VERSION",
    "SETTINGS_FILE",
    "TEMPERATURE_MAX",
    "THREADS_MAX",
    "AppSettings",
    "format_gpu_layers",
    "load_settings",
    "parse_gpu_layers",
    "save_settings",
    "settings_from_json",
    "settings_path",
]

log = logging.getLogger("stagewise.settings")

SCHEMA_VERSION = 2
SETTINGS_FILE = "settings.json"
BAD_SUFFIX = ".bad"

TEMPERATURE_MAX = 2.0
MAX_STAGE_TOKENS_MIN, MAX_STAGE_TOKENS_MAX = 16, 4096
GPU_LAYERS_MAX = 999  # more than any model has; llama.cpp clamps to the real count
THREADS_MAX = 256
CTX_MIN, CTX_MAX = 2048, 131072
PREFIX_CACHE_MIB_MAX = 1 << 20  # 1 TiB


@dataclass(frozen=True)
class AppSettings:
    """Everything the desktop app remembers between runs.

    Attributes:
        version: Schema version of the stored form (:data:`SCHEMA_VERSION`).
        model: Text model GGUF; None means the built-in default model.
        mmproj: Projector GGUF; None means the one beside ``model`` (or the built-in
            model's projector when ``model`` is None).
        beam: Candidates per segment, 1 to
            :data:`~stagewise.models.reasoning.search_settings.MAX_BEAM`;
            1 is a single pass.
        select: How a candidate is chosen: a selection's name
            (:data:`~stagewise.models.reasoning.selections.SELECTIONS`), or None for the
            default (the strategy's, or the measured best).
        strategy: What the search generates: a strategy's name
            (:data:`~stagewise.models.reasoning.strategies.STRATEGIES`).
        temperature: Sampling temperature, 0 to 2; 0 is greedy.
        top_p: Nucleus sampling mass, 0 to 1; 1 turns it off.
        max_stage_tokens: Token budget per stage, 16 to 4096.
        scorer_model: The second model of a selection that scores with one (text GGUF,
            projector beside it).
        gpu_layers: Layers offloaded to the GPU: -1 auto (everything that fits),
            0 CPU only, n that many layers.
        threads: CPU threads; None picks them automatically.
        n_ctx: Context size in tokens, 2048 to 131072, or 0: automatic (the model's
            trained context up to 8192, more when the search needs it).
        server_url: A server that answers instead of a model in this process ("" for
            none): llama.cpp's llama-server, or an OpenAI-compatible server such as vLLM.
            Its API key is kept apart (:mod:`stagewise.models.remote.keys`).
        server_kind: "llama-server" or "openai".
        server_model: The model's name on an OpenAI-compatible server.
        server_stage_mode: "native" when the served model writes the four stages itself
            (a LLaVA-CoT model), else "prompted".
        cpu_amx: Let llama.cpp keep weights in its AMX buffers on CPUs that have AMX
            (off: it crashes on some machines; ``STAGEWISE_CPU_AMX`` wins over it).
        prefix_cache_mib: The most disk space, in MiB, that encoded images take in the
            cache folder (:mod:`stagewise.models.inference.prefix_cache`), so that asking
            about an image again, after a restart too, does not encode it again; 0 keeps
            none.
        stages_collapsed: Whether the Summary, Caption and Reasoning cards start
            collapsed.
        window_geometry: Base64 of the main window's saved geometry; opaque here.
        window_state: Base64 of the main window's saved state; opaque here.
    """

    version: int = SCHEMA_VERSION
    model: Path | None = None
    mmproj: Path | None = None
    beam: int = SearchSettings.beam
    select: str | None = SearchSettings.select
    strategy: str = SearchSettings.strategy
    temperature: float = SamplingSettings.temperature
    top_p: float = SamplingSettings.top_p
    max_stage_tokens: int = SearchSettings.max_stage_tokens
    scorer_model: Path | None = None
    gpu_layers: int = EngineSettings.gpu_layers
    threads: int | None = None
    n_ctx: int = EngineSettings.n_ctx
    server_url: str = ""
    server_kind: str = ServerSettings.kind
    server_model: str = ServerSettings.model
    server_stage_mode: str = ServerSettings.stage_mode.value
    cpu_amx: bool = False
    prefix_cache_mib: int = PREFIX_CACHE_MIB
    stages_collapsed: bool = False
    window_geometry: str = ""
    window_state: str = ""

    def engine_settings(self) -> EngineSettings:
        """The engine settings these settings ask for (as ``stagewise ask`` builds them).

        Returns:
            Settings with room for the beam's sequences (:func:`sequences_needed`).
        """
        return EngineSettings(
            n_ctx=self.n_ctx,
            n_seq_max=sequences_needed(self.beam, self.strategy),
            threads=self.threads,
            gpu_layers=self.gpu_layers,
            allow_amx=self.cpu_amx,
        )

    def server_settings(self) -> ServerSettings | None:
        """The server that answers, or None for a model in this process."""
        if not self.server_url:
            return None
        return ServerSettings(self.server_url, self.server_kind,  # type: ignore[arg-type]
                              self.server_model, StageMode(self.server_stage_mode))

    def search_settings(self, seed: int = 0) -> SearchSettings:
        """The search settings for one run.

        Args:
            seed: Seed of the run's random choices.

        Returns:
            The run's search parameters.
        """
        return SearchSettings(
            strategy=self.strategy,
            beam=self.beam,
            select=self.select,
            sampling=SamplingSettings(temperature=self.temperature, top_p=self.top_p),
            max_stage_tokens=self.max_stage_tokens,
            seed=seed,
            scorer_model=self.scorer_model,
        )

    def validated(self) -> AppSettings:
        """Checks every value and returns the settings in their normal form.

        Paths become :class:`~pathlib.Path` (an empty one None) and whole-number
        temperatures floats.

        Returns:
            Equal settings, normalised.

        Raises:
            StagewiseError: A value is of the wrong type or out of range; the message
                names the setting and the allowed values.
        """
        changes: dict[str, object] = {}
        for name, convert in _CONVERTERS.items():
            try:
                changes[name] = convert(getattr(self, name))
            except Invalid as error:
                raise StagewiseError(f"settings: {error}") from None
        if self.version != SCHEMA_VERSION:
            raise StagewiseError(
                f"settings: version must be {SCHEMA_VERSION}, not {self.version!r}"
            )
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The stored form: a JSON-ready dict starting with ``version``."""
        data = asdict(self)
        for key in ("model", "mmproj", "scorer_model"):
            data[key] = None if data[key] is None else str(data[key])
        return data


# --------------------------------------------------------------------------- values


def _context(value: object) -> int:
    if value == AUTO_CTX and not isinstance(value, bool):
        return AUTO_CTX
    return int_value("n_ctx", CTX_MIN, CTX_MAX, " or 0 (automatic)")(value)


def _threads(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= THREADS_MAX:
        return value
    raise Invalid(
        f"threads must be null (automatic) or a whole number from 1 to {THREADS_MAX}, "
        f"not {value!r}"
    )


def _server_url(value: object) -> str:
    text = text_value("server_url")(value).strip()
    if text and not text.startswith(("http://", "https://")):
        raise Invalid(f"server_url must start with http:// or https://, not {text!r}")
    return text


def _registered(name: str, registry: Registry[Any], *, none_ok: bool = False
                ) -> Callable[[object], str | None]:
    """A name in ``registry`` (read when checked: a plug-in may register late), or None
    (the default) where ``none_ok``."""
    def convert(value: object) -> str | None:
        if isinstance(value, str) and value in registry:
            return value
        if value is None and none_ok:
            return None
        default = " or null (the default)" if none_ok else ""
        raise Invalid(f"{name} must be one of {', '.join(registry.names())}{default}, "
                      f"not {value!r}")

    return convert


# Every stored key but "version", with the function that checks and normalises it.
_CONVERTERS: dict[str, Callable[[object], object]] = {
    "model": path_value("model"),
    "mmproj": path_value("mmproj"),
    "beam": int_value("beam", 1, MAX_BEAM, " (1 is a single pass)"),
    "select": _registered("select", SELECTIONS, none_ok=True),
    "strategy": _registered("strategy", STRATEGIES),
    "temperature": float_value("temperature", 0.0, TEMPERATURE_MAX),
    "top_p": float_value("top_p", 0.0, 1.0),
    "max_stage_tokens": int_value("max_stage_tokens", MAX_STAGE_TOKENS_MIN, MAX_STAGE_TOKENS_MAX),
    "scorer_model": path_value("scorer_model"),
    "gpu_layers": int_value("gpu_layers", -1, GPU_LAYERS_MAX, " (-1 auto, 0 CPU only)"),
    "threads": _threads,
    "n_ctx": _context,
    "server_url": _server_url,
    "server_kind": choice_value("server_kind", SERVER_KINDS),
    "server_model": text_value("server_model"),
    "server_stage_mode": choice_value("server_stage_mode", tuple(m.value for m in StageMode)),
    "cpu_amx": bool_value("cpu_amx"),
    "prefix_cache_mib": int_value("prefix_cache_mib", 0, PREFIX_CACHE_MIB_MAX,
                                  " (0 keeps no encoded images)"),
    "stages_collapsed": bool_value("stages_collapsed"),
    "window_geometry": text_value("window_geometry"),
    "window_state": text_value("window_state"),
}
assert set(_CONVERTERS) | {"version"} == {f.name for f in fields(AppSettings)}


def format_gpu_layers(layers: int) -> str:
    """Shows a GPU layer count: "auto" for -1, "cpu" for 0, else the number."""
    return {-1: "auto", 0: "cpu"}.get(layers, str(layers))


def parse_gpu_layers(text: str) -> int:
    """Reads a GPU layer count as people write it.

    Args:
        text: "auto" or "all" (-1), "cpu" or "none" (0), or a number from -1 to
            :data:`GPU_LAYERS_MAX`.

    Returns:
        The layer count as :class:`AppSettings` stores it.

    Raises:
        StagewiseError: The text is none of these.
    """
    word = text.strip().lower()
    named = {"auto": -1, "all": -1, "cpu": 0, "none": 0}
    if word in named:
        return named[word]
    try:
        value = int(word)
    except ValueError:
        value = None
    if value is None or not -1 <= value <= GPU_LAYERS_MAX:
        raise StagewiseError(
            f"GPU layers must be auto, cpu or a number from 0 to {GPU_LAYERS_MAX}, not {text!r}"
        )
    return value


# --------------------------------------------------------------------------- migrations


def _from_v0(data: dict[str, Any]) -> dict[str, Any]:
    """Version 0, before settings had a version: other key names, GPU layers as words."""
    renamed = {
        "beam_width": "beam",
        "selection": "select",
        "max_tokens": "max_stage_tokens",
        "context": "n_ctx",
        "collapse_stages": "stages_collapsed",
        "geometry": "window_geometry",
    }
    out = {renamed.get(key, key): value for key, value in data.items()}
    gpu = out.pop("gpu", None)
    if isinstance(gpu, str) and "gpu_layers" not in out:
        with contextlib.suppress(StagewiseError):
            out["gpu_layers"] = parse_gpu_layers(gpu)
    out["version"] = 1
    return out


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept retrace's scorer apart; it is retrace's selection now."""
    out = dict(data)
    scorer = out.pop("retrace_scorer", None)
    if out.get("strategy") == RetraceStrategy.name and isinstance(scorer, str):
        out["select"] = scorer
    out["version"] = 2
    return out


# Version n -> function turning a version-n dict into a version n+1 dict.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    0: _from_v0,
    1: _from_v1,
}
assert all(v in MIGRATIONS for v in range(SCHEMA_VERSION))


# --------------------------------------------------------------------------- files


def settings_path() -> Path:
    """Where the settings live by default: ``settings.json`` in the config folder."""
    return config_dir() / SETTINGS_FILE


def load_settings(path: Path | None = None) -> AppSettings:
    """Reads the settings; never raises.

    Args:
        path: The settings file; default :func:`settings_path`.

    Returns:
        The stored settings; defaults for whatever is missing or unusable. A
        damaged file is moved aside to ``<name>.bad`` and the usable part written
        back in its place.
    """
    path = settings_path() if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AppSettings()
    except (OSError, UnicodeDecodeError) as error:
        log.warning("%s: cannot read the settings (%s); using the defaults", path, error)
        if isinstance(error, UnicodeDecodeError):
            _move_aside(path, AppSettings())
        return AppSettings()
    try:
        data = json.loads(text)
    except ValueError as error:
        log.warning("%s: the settings are not valid JSON (%s); using the defaults", path, error)
        _move_aside(path, AppSettings())
        return AppSettings()
    if not isinstance(data, dict):
        log.warning("%s: the settings are not a JSON object; using the defaults", path)
        _move_aside(path, AppSettings())
        return AppSettings()
    settings, problems, newer = settings_from_json(data)
    if problems:
        log.warning(
            "%s: some settings were unusable and are back to their defaults: %s",
            path, "; ".join(problems),
        )
        if not newer:  # a newer app's file is never touched
            _move_aside(path, settings)
    return settings


def settings_from_json(data: Mapping[str, Any]) -> tuple[AppSettings, list[str], bool]:
    """Turns a stored dict into settings, keeping every usable value.

    Args:
        data: The stored JSON object, of any version.

    Returns:
        The settings, the problems found (empty when all was well), and whether
        the dict came from a newer version than this one (whose unknown keys are
        then expected, not problems).
    """
    problems: list[str] = []
    raw = dict(data)
    version = raw.pop("version", 0)  # files without a version predate versioning
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        problems.append(f"version must be a whole number, not {version!r}")
        version = SCHEMA_VERSION
    newer = version > SCHEMA_VERSION
    while version < SCHEMA_VERSION:
        try:
            raw = MIGRATIONS[version]({**raw, "version": version})
        except Exception as error:  # a damaged old file must not stop the app
            problems.append(f"cannot update the settings from version {version} ({error})")
            break
        raw.pop("version", None)
        version += 1
    values: dict[str, object] = {}
    for key, value in raw.items():
        convert = _CONVERTERS.get(key)
        if convert is None:
            if not newer:
                problems.append(f"unknown setting {key!r}")
            continue
        try:
            values[key] = convert(value)
        except Invalid as error:
            problems.append(str(error))
    return AppSettings(**values), problems, newer  # type: ignore[arg-type]


def save_settings(settings: AppSettings, path: Path | None = None) -> None:
    """Writes the settings atomically: a reader sees the old file or the new one.

    Args:
        settings: What to store.
        path: The settings file; default :func:`settings_path`.

    Raises:
        StagewiseError: A value is out of range (nothing is written).
        OSError: The file cannot be written; the old one is left as it was.
    """
    path = settings_path() if path is None else Path(path)
    text = json.dumps(settings.validated().to_json(), indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, text.encode("utf-8"))


def _move_aside(path: Path, repaired: AppSettings) -> None:
    """Keeps a damaged file as ``<name>.bad`` and writes the usable settings in its place."""
    bad = path.with_name(path.name + BAD_SUFFIX)
    try:
        os.replace(path, bad)
    except OSError as error:
        log.warning("%s: cannot move the damaged settings aside (%s)", path, error)
        return
    log.warning("%s: the damaged settings were kept as %s", path, bad.name)
    try:
        save_settings(repaired, path)
    except (OSError, StagewiseError) as error:
        log.warning("%s: cannot write the repaired settings (%s)", path, error)
