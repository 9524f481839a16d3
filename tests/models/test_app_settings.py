"""Settings survive a round trip, and no settings file, however damaged, stops the app."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from stagewise.models.disk.paths import CONFIG_DIR_ENV
from stagewise.models.errors import StagewiseError
from stagewise.models.inference.engine_settings import AUTO_CTX, EngineSettings
from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.auto_beam import AUTO_BEAM
from stagewise.models.reasoning.auto_beam import WIDTHS as AUTO_WIDTHS
from stagewise.models.reasoning.search_settings import MAX_BEAM, SearchSettings
from stagewise.models.reasoning.strategies import sequences_needed
from stagewise.models.remote.server import ServerSettings
from stagewise.models.storage import app_settings
from stagewise.models.storage.app_settings import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AppSettings,
    format_gpu_layers,
    load_settings,
    parse_gpu_layers,
    save_settings,
)

CUSTOM = AppSettings(
    model=Path("/models/llava-cot.gguf"),
    mmproj=Path("/models/mmproj-llava-cot.gguf"),
    search=SearchSettings(beam=4, select="logprob", strategy="best-of-n",
                          sampling=SamplingSettings(temperature=1.25, top_p=0.5),
                          max_stage_tokens=512),
    engine=EngineSettings(gpu_layers=20, threads=3, n_ctx=16384),
    stages_collapsed=True,
    window_geometry="AdnQywADAAA=",
    window_state="AAAA/wAAAAE=",
)


def search(**changes: object) -> AppSettings:
    """The default settings with these search values (``temperature`` and ``top_p`` go to
    the sampling); a beam given is a set width (beam "auto" off)."""
    sampling = {k: changes.pop(k) for k in ("temperature", "top_p") if k in changes}
    return AppSettings(search=SearchSettings(sampling=SamplingSettings(**sampling),  # type: ignore[arg-type]
                                             **changes),  # type: ignore[arg-type]
                       auto_beam="beam" not in changes)


def value_at(settings: AppSettings, *path: str) -> object:
    """A value inside the settings: ``value_at(s, "search", "beam")``."""
    value: object = settings
    for name in path:
        value = getattr(value, name)
    return value


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_defaults_are_valid_and_match_the_core_defaults():
    defaults = AppSettings()
    assert defaults.validated() == defaults
    assert defaults.version == SCHEMA_VERSION == 3
    assert defaults.auto_beam and defaults.beam_choice == AUTO_BEAM  # the window's default
    # a load is planned for auto's widest; each answer gets the width auto chose
    assert defaults.search_settings() == SearchSettings(beam=max(AUTO_WIDTHS))
    assert defaults.search_settings(beam=1) == SearchSettings()
    set_two = defaults.with_beam_choice(2)
    assert not set_two.auto_beam and set_two.search_settings(beam=4).beam == 2  # a set width wins
    assert set_two.with_beam_choice(AUTO_BEAM).search.beam == 2  # kept for when auto is off
    search = replace(defaults, auto_beam=False).search_settings()
    assert search == SearchSettings()


def test_round_trip_keeps_every_value(tmp_path):
    path = tmp_path / "settings.json"
    save_settings(CUSTOM, path)
    assert load_settings(path) == CUSTOM
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["version"] == SCHEMA_VERSION
    assert stored["model"] == str(CUSTOM.model)
    assert stored["engine"]["threads"] == 3
    assert stored["search"]["sampling"]["temperature"] == 1.25
    assert stored["server"] == {"url": "", "kind": "llama-server", "model": "",
                                "stage_mode": "prompted", "stall_timeout": 60.0}


def test_round_trip_of_the_defaults_keeps_nulls(tmp_path):
    path = tmp_path / "settings.json"
    save_settings(AppSettings(), path)
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["model"] is None and stored["engine"]["threads"] is None
    assert load_settings(path) == AppSettings()


def test_default_path_is_in_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))
    assert load_settings() == AppSettings()  # missing: defaults, nothing created
    assert not (tmp_path / "config" / "settings.json").exists()
    save_settings(CUSTOM)
    assert (tmp_path / "config" / "settings.json").is_file()
    assert load_settings() == CUSTOM


def test_missing_file_gives_defaults_without_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, "stagewise.settings"):
        assert load_settings(tmp_path / "nothing.json") == AppSettings()
    assert not caplog.records
    assert list(tmp_path.iterdir()) == []


DEEP = '{"beam": ' * 100_000 + "1" + "}" * 100_000  # deeper than Python's recursion limit


@pytest.mark.parametrize("content", ["{not json", "", "[1, 2, 3]", '"text"', "null", DEEP],
                         ids=["not json", "empty", "list", "text", "null", "nested too deep"])
def test_corrupt_file_is_moved_aside(tmp_path, caplog, content):
    path = tmp_path / "settings.json"
    path.write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING, "stagewise.settings"):
        assert load_settings(path) == AppSettings()
    assert (tmp_path / "settings.json.bad").read_text(encoding="utf-8") == content
    assert any("settings" in r.getMessage() for r in caplog.records)
    assert load_settings(path) == AppSettings()  # the repaired file loads cleanly


def test_binary_garbage_is_moved_aside(tmp_path):
    path = tmp_path / "settings.json"
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    assert load_settings(path) == AppSettings()
    assert (tmp_path / "settings.json.bad").read_bytes() == b"\xff\xfe\x00garbage\x80"


def test_bad_values_are_defaulted_one_by_one(tmp_path, caplog):
    path = write_json(tmp_path / "settings.json", {
        "version": 1,
        "model": "/models/good.gguf",
        "mmproj": 42,                 # wrong type
        "beam": "four",               # wrong type
        "select": "logprob",          # fine
        "strategy": "random",         # not a strategy
        "temperature": 0.3,           # fine
        "top_p": 1.5,                 # out of range
        "max_stage_tokens": 5000,     # out of range
        "gpu_layers": -2,             # out of range
        "threads": 0,                 # out of range (null means automatic)
        "n_ctx": 10**9,               # out of range
        "stages_collapsed": "yes",    # wrong type
        "window_geometry": "abc=",    # fine
        "window_state": None,         # wrong type
        "favourite_colour": "green",  # unknown key
    })
    original = path.read_text(encoding="utf-8")
    with caplog.at_level(logging.WARNING, "stagewise.settings"):
        settings = load_settings(path)
    assert settings == replace(search(select="logprob", temperature=0.3),
                               model=Path("/models/good.gguf"), window_geometry="abc=")
    message = " ".join(r.getMessage() for r in caplog.records)
    for word in ("beam", "top_p", "max_stage_tokens", "n_ctx", "favourite_colour",
                 "settings.json.bad"):
        assert word in message
    assert (tmp_path / "settings.json.bad").read_text(encoding="utf-8") == original
    assert load_settings(path) == settings  # the usable part was kept


def test_bad_values_of_the_current_version_are_defaulted_one_by_one(tmp_path, caplog):
    path = write_json(tmp_path / "settings.json", {
        "version": SCHEMA_VERSION,
        "search": {"beam": 3, "select": "vote", "seed": -1,
                   "sampling": {"temperature": 0.3, "top_p": 1.5, "top_k": "many"}},
        "engine": {"n_ctx": 100, "threads": 4, "flash_attn": "sometimes"},
        "server": "http://gpu-box:8080",  # not an object
        "stages_collapsed": True,
        "theme": "dark",
    })
    with caplog.at_level(logging.WARNING, "stagewise.settings"):
        settings = load_settings(path)
    assert settings == replace(search(beam=3, temperature=0.3), auto_beam=True,
                               engine=EngineSettings(threads=4), stages_collapsed=True)
    message = " ".join(r.getMessage() for r in caplog.records)
    for word in ("select", "seed", "top_p", "top_k", "n_ctx", "flash_attn", "server",
                 "'theme'", "settings.json.bad"):
        assert word in message
    assert load_settings(path) == settings  # the usable part was kept


WHERE = {"beam": ("search", "beam"), "temperature": ("search", "sampling", "temperature"),
         "threads": ("engine", "threads"), "select": ("search", "select"),
         "n_ctx": ("engine", "n_ctx"), "prefix_cache_mib": ("prefix_cache_mib",)}


@pytest.mark.parametrize(("key", "value"), [
    ("beam", True), ("beam", 2.0), ("beam", MAX_BEAM + 1), ("beam", -1),
    ("temperature", float("nan")), ("temperature", "0.5"), ("temperature", 2.5),
    ("threads", False), ("select", "coin"), ("n_ctx", 255), ("n_ctx", 131073),
    ("prefix_cache_mib", -1), ("prefix_cache_mib", True), ("prefix_cache_mib", 1.5),
    ("prefix_cache_mib", 2**21),
])
@pytest.mark.parametrize("version", [1, SCHEMA_VERSION])
def test_each_bad_value_alone_is_refused(tmp_path, key, value, version):
    path = tmp_path / "settings.json"
    if version == 1:  # flat
        data: dict[str, object] = {"version": 1, "beam": 3, key: value}
    else:
        data = {"version": version, "search": {"beam": 3}}
        *sections, last = WHERE[key]
        target = data
        for name in sections:
            target = target.setdefault(name, {})  # type: ignore[assignment]
        target[last] = value  # type: ignore[index]
    path.write_text(json.dumps(data), encoding="utf-8")
    settings = load_settings(path)
    assert value_at(settings, *WHERE[key]) == value_at(AppSettings(), *WHERE[key])
    if key != "beam":
        assert settings.search.beam == 3
    assert (tmp_path / "settings.json.bad").exists()


def test_retraces_scorer_of_version_1_becomes_its_selection(tmp_path):
    path = write_json(tmp_path / "settings.json", {
        "version": 1, "strategy": "retrace", "select": "judge", "retrace_scorer": "logprob"})
    settings = load_settings(path)
    assert (settings.search.strategy, settings.search.select) == ("retrace", "logprob")
    other = write_json(tmp_path / "other.json", {
        "version": 1, "strategy": "stage", "select": "judge", "retrace_scorer": "logprob"})
    assert load_settings(other).search.select == "judge"  # the scorer applied to retrace only
    assert not (tmp_path / "settings.json.bad").exists()


def test_whole_number_temperature_is_accepted_as_float(tmp_path):
    path = write_json(tmp_path / "settings.json", {"version": 1, "temperature": 1, "top_p": 1})
    settings = load_settings(path)
    sampling = settings.search.sampling
    assert sampling.temperature == 1.0 and isinstance(sampling.temperature, float)
    assert sampling.top_p == 1.0
    assert not (tmp_path / "settings.json.bad").exists()


def test_version_0_migrates(tmp_path, caplog):
    # the layout before versioning: no "version", other names, GPU layers as a word
    old = {
        "model": "/models/old.gguf",
        "beam_width": 4,
        "selection": "logprob",
        "max_tokens": 128,
        "context": 4096,
        "gpu": "cpu",
        "collapse_stages": True,
        "geometry": "Zm9v",
        "temperature": 0.2,
    }
    path = write_json(tmp_path / "settings.json", old)
    with caplog.at_level(logging.WARNING, "stagewise.settings"):
        settings = load_settings(path)
    assert settings == replace(
        search(beam=4, select="logprob", max_stage_tokens=128, temperature=0.2),
        model=Path("/models/old.gguf"), engine=EngineSettings(n_ctx=4096, gpu_layers=0),
        stages_collapsed=True, window_geometry="Zm9v",
    )
    assert not caplog.records
    assert not (tmp_path / "settings.json.bad").exists()
    assert json.loads(path.read_text(encoding="utf-8")) == old  # not rewritten on load


def test_explicit_version_0_with_gpu_all_migrates(tmp_path):
    path = write_json(tmp_path / "settings.json", {"version": 0, "gpu": "all", "beam_width": 2})
    settings = load_settings(path)
    assert settings.engine.gpu_layers == -1 and settings.search.beam == 2


# every key a version 1 file held, as the app of that version wrote it
VERSION_1 = {
    "version": 1, "model": "/models/v1.gguf", "mmproj": None, "beam": 3, "select": "logprob",
    "strategy": "retrace", "temperature": 0.7, "top_p": 0.95, "max_stage_tokens": 128,
    "retrace_scorer": "model", "scorer_model": "/models/judge.gguf", "gpu_layers": 12,
    "threads": 6, "n_ctx": 16384, "server_url": "http://gpu-box:8000/v1",
    "server_kind": "openai", "server_model": "Xkev/Llama-3.2V-11B-cot",
    "server_stage_mode": "native", "cpu_amx": True, "stages_collapsed": True,
    "window_geometry": "Z2VvbQ==", "window_state": "c3RhdGU=",
}


# every key a version 2 file held: version 1's, retrace's scorer gone into the selection
VERSION_2 = {key: value for key, value in VERSION_1.items() if key != "retrace_scorer"}
VERSION_2.update(version=2, select=None, strategy="stage", n_ctx=8192)


def test_version_2_migrates_into_the_core_dataclasses(tmp_path, caplog):
    path = write_json(tmp_path / "settings.json", VERSION_2)
    with caplog.at_level(logging.WARNING, "stagewise.settings"):
        settings = load_settings(path)
    assert settings.search == SearchSettings(
        strategy="stage", beam=3, select=None,
        sampling=SamplingSettings(temperature=0.7, top_p=0.95), max_stage_tokens=128,
        scorer_model=Path("/models/judge.gguf"))
    # written after the context became automatic: an 8192 there was chosen
    assert settings.engine == EngineSettings(n_ctx=8192, threads=6, gpu_layers=12,
                                             allow_amx=True)
    assert settings.server == ServerSettings("http://gpu-box:8000/v1", "openai",
                                             "Xkev/Llama-3.2V-11B-cot", StageMode.NATIVE)
    assert (settings.model, settings.window_state) == (Path("/models/v1.gguf"), "c3RhdGU=")
    assert not caplog.records
    assert json.loads(path.read_text(encoding="utf-8")) == VERSION_2  # not rewritten on load


def test_version_1_migrates_into_the_core_dataclasses(tmp_path, caplog):
    path = write_json(tmp_path / "settings.json", VERSION_1)
    with caplog.at_level(logging.WARNING, "stagewise.settings"):
        settings = load_settings(path)
    assert settings == AppSettings(
        model=Path("/models/v1.gguf"),
        search=SearchSettings(strategy="retrace", beam=3, select="model",  # its scorer
                              sampling=SamplingSettings(temperature=0.7, top_p=0.95),
                              max_stage_tokens=128, scorer_model=Path("/models/judge.gguf")),
        engine=EngineSettings(n_ctx=16384, threads=6, gpu_layers=12, allow_amx=True),
        server=ServerSettings("http://gpu-box:8000/v1", "openai", "Xkev/Llama-3.2V-11B-cot",
                              StageMode.NATIVE),
        stages_collapsed=True, window_geometry="Z2VvbQ==", window_state="c3RhdGU=",
        auto_beam=False,  # a beam of 3 was set; only 1, the old default, becomes auto
    )
    assert not caplog.records
    assert json.loads(path.read_text(encoding="utf-8")) == VERSION_1  # not rewritten on load
    save_settings(settings, path)
    assert load_settings(path) == settings


def test_a_version_1_context_of_8192_becomes_automatic(tmp_path):
    """Files written before the context was automatic hold 8192, the default of the time."""
    old = write_json(tmp_path / "old.json", {**VERSION_1, "n_ctx": 8192})
    assert load_settings(old).engine.n_ctx == AUTO_CTX
    chosen = write_json(tmp_path / "chosen.json", {**VERSION_1, "n_ctx": 4096})
    assert load_settings(chosen).engine.n_ctx == 4096
    from_v0 = write_json(tmp_path / "v0.json", {"context": 8192, "beam_width": 2})
    assert load_settings(from_v0) == search(beam=2)
    assert load_settings(write_json(tmp_path / "new.json", {
        "version": SCHEMA_VERSION, "engine": {"n_ctx": 8192}})).engine.n_ctx == 8192


def test_migration_table_covers_every_old_version():
    assert sorted(MIGRATIONS) == list(range(SCHEMA_VERSION))
    data: dict[str, object] = {"version": 0}
    for version in range(SCHEMA_VERSION):
        data = MIGRATIONS[version](data)
    assert data["version"] == SCHEMA_VERSION


def test_newer_version_keeps_known_keys_and_is_left_alone(tmp_path, caplog):
    path = write_json(tmp_path / "settings.json", {
        "version": 7,
        "search": {"beam": 3, "sampling": {"top_p": 5.0}},  # out of range here; not then
        "engine": {"n_ctx": 4096, "kv_type": "q8"},  # a key from the future
        "theme": "dark",            # a key from the future
    })
    original = path.read_text(encoding="utf-8")
    with caplog.at_level(logging.WARNING, "stagewise.settings"):
        settings = load_settings(path)
    assert settings == replace(search(beam=3), engine=EngineSettings(n_ctx=4096),
                               auto_beam=True)  # version 3 and later say auto apart
    assert settings.version == SCHEMA_VERSION
    assert path.read_text(encoding="utf-8") == original
    assert not (tmp_path / "settings.json.bad").exists()


@pytest.mark.parametrize("version", ["1", -1, True, 1.5])
def test_nonsense_version_is_read_as_the_layout_it_has(tmp_path, version):
    flat = write_json(tmp_path / "settings.json", {"version": version, "beam": 5})
    assert load_settings(flat) == search(beam=5)
    assert (tmp_path / "settings.json.bad").exists()
    nested = write_json(tmp_path / "nested.json", {"version": version, "search": {"beam": 4}})
    assert load_settings(nested) == replace(search(beam=4), auto_beam=True)
    assert (tmp_path / "nested.json.bad").exists()


def test_unreadable_settings_give_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.mkdir()  # a folder where the file should be
    assert load_settings(path) == AppSettings()
    assert path.is_dir()


def test_engine_settings_follow_the_cli_rules():
    engine = CUSTOM.engine_settings()
    assert engine == replace(CUSTOM.engine, n_seq_max=sequences_needed(4))
    assert engine.n_ctx == 16384
    assert engine.n_seq_max == sequences_needed(4)
    assert engine.threads == 3
    assert engine.gpu_layers == 20
    default = AppSettings().engine_settings()
    assert default.n_seq_max == sequences_needed(max(AUTO_WIDTHS))  # auto: room for 4
    assert default.threads is None and default.gpu_layers == -1


def test_search_settings_mapping():
    search = CUSTOM.search_settings(seed=11)
    assert search == SearchSettings(
        strategy="best-of-n", beam=4, select="logprob",
        sampling=SamplingSettings(temperature=1.25, top_p=0.5),
        max_stage_tokens=512, seed=11,
    )


def test_module_does_not_load_qt_or_llama():
    import subprocess

    code = (
        "import sys; import stagewise.models.storage.app_settings as m; "
        "m.AppSettings().search_settings(); "
        "bad = [n for n in ('PySide6', 'llama_cpp') if n in sys.modules]; "
        "sys.exit(', '.join(bad) or None)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("section", "change", "word"), [
    ("search", {"beam": 0}, "beam"),
    ("search", {"beam": MAX_BEAM + 1}, "beam"),
    ("search", {"select": "vote"}, "select"),
    ("search", {"strategy": "tree"}, "strategy"),
    ("search", {"temperature": -0.1}, "temperature"),
    ("search", {"top_p": 1.01}, "top_p"),
    ("search", {"max_stage_tokens": 5000}, "max_stage_tokens"),
    ("search", {"max_stage_tokens": 0}, "max_stage_tokens"),
    ("engine", {"gpu_layers": -5}, "gpu_layers"),
    ("engine", {"threads": 0}, "threads"),
    ("engine", {"n_ctx": 255}, "n_ctx"),
    ("server", {"url": "gpu-box:8080"}, "is not a server address"),  # refused at once
    ("", {"version": SCHEMA_VERSION + 1}, "version"),
])
def test_validated_names_the_bad_value(section, change, word):
    with pytest.raises(StagewiseError) as info:
        if section == "search":
            bad = search(**change)
        elif section:
            bad = replace(AppSettings(), **{section: replace(getattr(AppSettings(), section),
                                                             **change)})
        else:
            bad = replace(AppSettings(), **change)
        bad.validated()
    assert word in str(info.value)
    assert repr(next(iter(change.values()))) in str(info.value)


def test_validated_normalises_paths():
    settings = replace(search(temperature=1), model="", mmproj="/x/m.gguf")
    fixed = settings.validated()
    assert fixed.model is None and fixed.mmproj == Path("/x/m.gguf")
    assert isinstance(fixed.search.sampling.temperature, float)


def test_save_refuses_invalid_settings_and_writes_nothing(tmp_path):
    path = tmp_path / "settings.json"
    with pytest.raises(StagewiseError):
        save_settings(search(beam=0), path)
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "settings.json"
    save_settings(CUSTOM, path)
    save_settings(search(beam=2), path)
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(app_settings.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_settings(CUSTOM, path)
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]
    assert load_settings(path) == search(beam=2)  # the old file is intact


def test_save_creates_the_folder(tmp_path):
    path = tmp_path / "a" / "b" / "settings.json"
    save_settings(CUSTOM, path)
    assert load_settings(path) == CUSTOM


def test_damaged_file_that_cannot_be_moved_still_loads(tmp_path, monkeypatch, caplog):
    path = write_json(tmp_path / "settings.json", {"version": 1, "beam": 3, "top_p": 9})

    def fail(*_args: object) -> None:
        raise PermissionError("read-only folder")

    monkeypatch.setattr(app_settings.os, "replace", fail)
    with caplog.at_level(logging.WARNING, "stagewise.settings"):
        assert load_settings(path) == search(beam=3)
    assert "cannot move" in " ".join(r.getMessage() for r in caplog.records)
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


@pytest.mark.parametrize(("text", "layers"), [
    ("auto", -1), ("All", -1), (" -1 ", -1), ("cpu", 0), ("none", 0), ("0", 0), ("33", 33),
])
def test_parse_gpu_layers(text, layers):
    assert parse_gpu_layers(text) == layers


@pytest.mark.parametrize("text", ["", "lots", "-2", "1000", "1.5"])
def test_parse_gpu_layers_refuses_nonsense(text):
    with pytest.raises(StagewiseError, match="GPU layers"):
        parse_gpu_layers(text)


@pytest.mark.parametrize("layers", [-1, 0, 1, 40])
def test_format_gpu_layers_round_trips(layers):
    assert parse_gpu_layers(format_gpu_layers(layers)) == layers
    assert format_gpu_layers(-1) == "auto"


@pytest.mark.parametrize(("beam", "auto", "width"), [(1, True, 1), (0, True, 1), (3, False, 3)])
def test_a_version_2_beam_of_the_old_default_becomes_auto(tmp_path, beam, auto, width):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 2, "beam": beam}))
    settings = load_settings(path)
    assert (settings.auto_beam, settings.search.beam) == (auto, width)
    assert not (tmp_path / "settings.json.bad").exists()
