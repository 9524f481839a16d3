"""The user's settings: typed, versioned, stored as JSON in the config folder.

:class:`AppSettings` is what the desktop app remembers between runs: which model to
load, and the core's own settings dataclasses as they are: how to search
(:class:`~stagewise.models.reasoning.search_settings.SearchSettings`, its sampling
included), how to load the model
(:class:`~stagewise.models.inference.engine_settings.EngineSettings`), which server
answers (:class:`~stagewise.models.remote.server.ServerSettings`), and a few display
choices. Each dataclass owns its fields' ranges and checks them (``validate()``); the file
stores each as a JSON object under its name.

Loading never fails. A missing file gives the defaults; a damaged one (bad JSON, a
value of the wrong type or out of range, an unknown key) keeps what is valid, defaults
the rest, and is moved aside to ``settings.json.bad`` with a warning in the log. A
file written by a newer version is read for the keys this version knows and left as
it is. Older files are brought up to date through :data:`MIGRATIONS`.

This module is Qt-free and does not load llama.cpp.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.disk.paths import config_dir
from stagewise.models.errors import StagewiseError
from stagewise.models.inference.engine_settings import (
    AUTO_CTX,
    FALLBACK_CTX,
    GPU_LAYERS,
    PREFIX_CACHE,
    PREFIX_CACHE_MIB,
    EngineSettings,
)
from stagewise.models.reasoning.auto_beam import AUTO_BEAM
from stagewise.models.reasoning.auto_beam import WIDTHS as AUTO_WIDTHS
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.strategies import sequences_needed
from stagewise.models.reasoning.strategies.retrace import RetraceStrategy
from stagewise.models.remote.address import parse_address, redacted
from stagewise.models.remote.http import ServerError
from stagewise.models.remote.server import ServerSettings
from stagewise.models.storage.settings_values import Invalid, decode, encode, supported

__all__ = [
    "BAD_SUFFIX",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SETTINGS_FILE",
    "AppSettings",
    "format_gpu_layers",
    "load_settings",
    "parse_gpu_layers",
    "save_settings",
    "settings_from_json",
    "settings_path",
]

log = logging.getLogger("stagewise.settings")

SCHEMA_VERSION = 3
SETTINGS_FILE = "settings.json"
BAD_SUFFIX = ".bad"


@dataclass(frozen=True)
class AppSettings:
    """Everything the desktop app remembers between runs.

    Attributes:
        version: Schema version of the stored form (:data:`SCHEMA_VERSION`).
        model: Text model GGUF; None means the built-in default model.
        mmproj: Projector GGUF; None means the one beside ``model`` (or the built-in
            model's projector when ``model`` is None).
        search: How to search: the strategy and the selection by their names in the
            registries (:data:`~stagewise.models.reasoning.strategies.STRATEGIES`,
            :data:`~stagewise.models.reasoning.selections.SELECTIONS`); its seed is each
            run's own (:meth:`search_settings`). Its beam is the width used when
            ``auto_beam`` is off.
        auto_beam: Beam "auto": each answer's width is the widest of 1, 2, 4 this machine
            runs within twice a single pass (:mod:`~stagewise.models.reasoning.auto_beam`);
            a load is planned for the widest.
        engine: How to load the model; its sequences follow the search
            (:meth:`engine_settings`), its context 0 is automatic (a load plan sizes it).
        server: A server that answers instead of a model in this process: llama.cpp's
            llama-server, or an OpenAI-compatible server such as vLLM; an empty ``url``
            means none (the rest is kept for when it is switched on again). Its API key
            is kept apart (:mod:`stagewise.models.remote.keys`).
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
    search: SearchSettings = field(default_factory=SearchSettings)
    auto_beam: bool = True
    engine: EngineSettings = field(default_factory=EngineSettings)
    server: ServerSettings = field(default_factory=lambda: ServerSettings(""))
    prefix_cache_mib: int = PREFIX_CACHE_MIB
    stages_collapsed: bool = False
    window_geometry: str = ""
    window_state: str = ""

    def engine_settings(self) -> EngineSettings:
        """The engine settings these settings ask for (as ``stagewise ask`` builds them).

        Returns:
            :attr:`engine` with room for the beam's sequences (:func:`sequences_needed`).
        """
        return replace(self.engine,
                       n_seq_max=sequences_needed(self.planned_beam, self.search.strategy))

    def server_settings(self) -> ServerSettings | None:
        """The server that answers, or None for a model in this process."""
        return self.server if self.server.url else None

    @property
    def planned_beam(self) -> int:
        """The beam a load is planned for: the set one, or auto's widest."""
        return max(AUTO_WIDTHS) if self.auto_beam else self.search.beam

    @property
    def beam_choice(self) -> int:
        """The beam as the window's spin boxes show it: :data:`AUTO_BEAM` (0) for auto."""
        return AUTO_BEAM if self.auto_beam else self.search.beam

    def with_beam_choice(self, beam: int) -> AppSettings:
        """These settings with the beam a spin box shows (0: auto, which keeps the set
        width for when auto is turned off)."""
        if beam == AUTO_BEAM:
            return replace(self, auto_beam=True)
        return replace(self, auto_beam=False, search=replace(self.search, beam=beam))

    def search_settings(self, seed: int = 0, beam: int | None = None) -> SearchSettings:
        """The search settings for one run.

        Args:
            seed: Seed of the run's random choices.
            beam: The width auto chose (the set beam wins when there is one); None plans
                for auto's widest.

        Returns:
            The run's search parameters.
        """
        beam = self.search.beam if not self.auto_beam else (beam or self.planned_beam)
        return replace(self.search, seed=seed, beam=beam)

    def validate(self) -> None:
        """Checks the values kept here rather than in the core's dataclasses (which check
        their own).

        Raises:
            StagewiseError: ``prefix_cache_mib`` is out of :data:`PREFIX_CACHE`.
        """
        PREFIX_CACHE.check(self.prefix_cache_mib)

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
        if self.version != SCHEMA_VERSION:
            raise StagewiseError(
                f"settings: version must be {SCHEMA_VERSION}, not {self.version!r}"
            )
        problems: list[str] = []
        settings = _read(AppSettings, AppSettings(), self.to_json(), "", problems, newer=False)
        if problems:
            raise StagewiseError(f"settings: {problems[0]}")
        return settings

    def to_json(self) -> dict[str, Any]:
        """The stored form: a JSON-ready dict starting with ``version``, each of the
        core's dataclasses an object under its name."""
        data = typing.cast(dict[str, Any], encode(dataclasses.asdict(self)))
        del data["server"]["login"]  # kept in the key store, never in the settings file
        return data


# --------------------------------------------------------------------------- reading


def _read(cls: type, default: Any, data: object, where: str, problems: list[str], *,
          newer: bool) -> Any:
    """A ``cls`` from its stored object, keeping every usable value.

    Each key is decoded to its field's type, then checked by ``cls.validate()`` with the
    other values at their defaults, so that a bad value costs only itself; the whole is
    checked once more at the end. A nested dataclass is read the same way.

    Args:
        cls: The dataclass.
        default: The instance whose values stand in for what is missing or unusable.
        data: The stored object.
        where: The keys above it ("search."), for messages.
        problems: Where to add what was unusable.
        newer: The file is from a newer version: its unknown keys are expected.
    """
    if not isinstance(data, dict):
        problems.append(f"{where.rstrip('.') or 'the settings'} must be a JSON object, "
                        f"not {data!r}")
        return default
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    values: dict[str, object] = {}
    for key, value in data.items():
        if key not in names:
            if not newer:
                problems.append(f"unknown setting {where + key!r}")
            continue
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _read(hint, getattr(default, key), value, f"{where}{key}.",
                                problems, newer=newer)
            continue
        try:
            decoded = decode(hint, where + key, value)
        except Invalid as error:
            problems.append(str(error))
            continue
        try:
            _validate(replace(default, **{key: decoded}))
        except StagewiseError as error:  # its message starts with the key
            problems.append(where + str(error))
            continue
        values[key] = decoded
    result = replace(default, **values)
    try:
        _validate(result)
    except StagewiseError as error:  # values that are fine alone but not together
        problems.append(f"{where}{error}")
        return default
    return result


def _validate(settings: object) -> None:
    validate = getattr(settings, "validate", None)
    if validate is not None:
        validate()


def _check_types(cls: type) -> None:
    """Every field of the stored dataclasses is of a type :func:`decode` knows."""
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            _check_types(hint)  # type: ignore[arg-type]
        else:
            assert supported(hint), f"{cls.__name__}.{name}: {hint} cannot be stored"


_check_types(AppSettings)


def format_gpu_layers(layers: int) -> str:
    """Shows a GPU layer count: "auto" for -1, "cpu" for 0, else the number."""
    return {-1: "auto", 0: "cpu"}.get(layers, str(layers))


def parse_gpu_layers(text: str) -> int:
    """Reads a GPU layer count as people write it.

    Args:
        text: "auto" or "all" (-1), "cpu" or "none" (0), or a number from -1 to
            ``GPU_LAYERS.high``
            (:data:`~stagewise.models.inference.engine_settings.GPU_LAYERS`).

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
    if value is None or not GPU_LAYERS.allows(value):
        raise StagewiseError(
            f"GPU layers must be auto, cpu or a number from 0 to {GPU_LAYERS.high}, "
            f"not {text!r}"
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
    """Version 1 kept retrace's scorer apart; it is retrace's selection now.

    A context of exactly :data:`FALLBACK_CTX` (8192) becomes automatic: it is what every
    file written before the context was automatic holds, as the default of the time (they
    are all version 1 or older), and automatic gives the same 8192 unless the model was
    trained for less (which is why it became the default) or the search needs more.
    """
    out = dict(data)
    scorer = out.pop("retrace_scorer", None)
    if out.get("strategy") == RetraceStrategy.name and isinstance(scorer, str):
        out["select"] = scorer
    context = out.get("n_ctx")
    if context == FALLBACK_CTX and not isinstance(context, bool):
        out["n_ctx"] = AUTO_CTX
    out["version"] = 2
    return out


# Where version 2's flat keys went in version 3: the object and the key in it.
_V2_KEYS: dict[str, tuple[str, ...]] = {
    "beam": ("search", "beam"),
    "select": ("search", "select"),
    "strategy": ("search", "strategy"),
    "temperature": ("search", "sampling", "temperature"),
    "top_p": ("search", "sampling", "top_p"),
    "max_stage_tokens": ("search", "max_stage_tokens"),
    "scorer_model": ("search", "scorer_model"),
    "gpu_layers": ("engine", "gpu_layers"),
    "threads": ("engine", "threads"),
    "n_ctx": ("engine", "n_ctx"),
    "cpu_amx": ("engine", "allow_amx"),
    "server_url": ("server", "url"),
    "server_kind": ("server", "kind"),
    "server_model": ("server", "model"),
    "server_stage_mode": ("server", "stage_mode"),
}


def _from_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 kept every setting flat, copied from the core's dataclasses under names of
    its own; version 3 stores the dataclasses themselves, each under its name. Keys that
    version 2 did not know stay where they are, and are reported as unknown.

    A beam of 1, the default of the time, becomes beam "auto" (the default now), as a
    context of 8192 became automatic; a beam a person widened stays as set.
    """
    out: dict[str, Any] = {"version": 3}
    beam = data.get("beam")
    if isinstance(beam, int) and not isinstance(beam, bool):
        out["auto_beam"] = beam in (0, 1)  # 0: auto, as a preview of version 2 stored it
        if beam == 0:
            data = {k: v for k, v in data.items() if k != "beam"}
    for key, value in data.items():
        if key == "version":
            continue
        *path, last = _V2_KEYS.get(key, (key,))
        target = out
        for name in path:
            target = target.setdefault(name, {})
        target[last] = value
    return out


# Version n -> function turning a version-n dict into a version n+1 dict.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    0: _from_v0,
    1: _from_v1,
    2: _from_v2,
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
    except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
        problem = error if isinstance(error, ValueError) else "nested too deep"
        log.warning("%s: the settings are not valid JSON (%s); using the defaults", path,
                    problem)
        _move_aside(path, AppSettings())
        return AppSettings()
    if not isinstance(data, dict):
        log.warning("%s: the settings are not a JSON object; using the defaults", path)
        _move_aside(path, AppSettings())
        return AppSettings()
    moved = _move_login(path, data)
    settings, problems, newer = settings_from_json(data)
    if moved and not problems and not newer:  # the address without its login, at once
        try:
            save_settings(settings, path)
        except (OSError, StagewiseError) as error:
            log.warning("%s: cannot write the settings without the login (%s)", path, error)
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
        # read the layout it has: the flat keys of versions 1 and 2, or the current one
        flat = any(key in raw for key in (*_V2_KEYS, "retrace_scorer"))
        version = 1 if flat else SCHEMA_VERSION
    newer = version > SCHEMA_VERSION
    while version < SCHEMA_VERSION:
        try:
            raw = MIGRATIONS[version]({**raw, "version": version})
        except Exception as error:  # a damaged old file must not stop the app
            problems.append(f"cannot update the settings from version {version} ({error})")
            break
        raw.pop("version", None)
        version += 1
    settings = _read(AppSettings, AppSettings(), raw, "", problems, newer=newer)
    return settings, problems, newer


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


def _move_login(path: Path, data: dict[str, Any]) -> bool:
    """Move a login written into the stored server address (``http://user:pw@host``), or
    stored beside it, to the key store, leaving ``data`` without it; True if one was moved.
    Both layouts are read: ``server_url`` (versions 1 and 2) and ``server.url``. A login
    that cannot be stored is dropped (the server then asks for it again)."""
    server = data.get("server")
    holder, key = (server, "url") if isinstance(server, dict) else (data, "server_url")
    url = holder.get(key)
    stored = holder.pop("login", "") if holder is server else ""
    if not isinstance(url, str) or not url.strip():
        return bool(stored)
    try:
        address = parse_address(url)
    except ServerError:
        return bool(stored)
    login = address.login or (stored if isinstance(stored, str) else "")
    if not address.had_login and not login:
        return bool(stored)
    holder[key] = address.url
    if login:
        from stagewise.models.remote.keys import KeyStore

        try:
            KeyStore.logins(path.parent).set(address.url, login)
        except StagewiseError as error:
            log.warning("%s: cannot keep the login of %s (%s)", path, address.url, error)
    log.warning("%s: the login of %s was moved to the key store", path, redacted(url))
    return True


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
