"""Settings survive a round trip, and no settings file, however damaged, stops the app."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from stagewise.models.disk.paths import CONFIG_DIR_ENV
from stagewise.models.errors import StagewiseError
from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.reasoning.auto_beam import AUTO_BEAM
from stagewise.models.reasoning.auto_beam import WIDTHS as AUTO_WIDTHS
from stagewise.models.reasoning.search_settings import MAX_BEAM, SearchSettings
from stagewise.models.reasoning.strategies import sequences_needed
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
    beam=4,
    select="logprob",
    strategy="best-of-n",
    temperature=1.25,
    top_p=0.5,
    max_stage_tokens=512,
    gpu_layers=20,
    threads=3,
    n_ctx=16384,
    stages_collapsed=True,
    window_geometry="AdnQywADAAA=",
    window_state="AAAA/wAAAAE=",
)


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_defaults_are_valid_and_match_the_core_defaults():
    defaults = AppSettings()
    assert defaults.validated() == defaults
    assert defaults.version == SCHEMA_VERSION == 2
    assert defaults.beam == AUTO_BEAM  # the window's default is beam "auto"
    # a load is planned for auto's widest; each answer gets the width auto chose
    assert defaults.search_settings() == SearchSettings(beam=max(AUTO_WIDTHS))
    assert defaults.search_settings(beam=1) == SearchSettings()
    assert AppSettings(beam=2).search_settings(beam=4).beam == 2  # a set number wins


def test_round_trip_keeps_every_value(tmp_path):
    path = tmp_path / "settings.json"
    save_settings(CUSTOM, path)
    assert load_settings(path) == CUSTOM
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["version"] == SCHEMA_VERSION
    assert stored["model"] == str(CUSTOM.model)
    assert stored["threads"] == 3


def test_round_trip_of_the_defaults_keeps_nulls(tmp_path):
    path = tmp_path / "settings.json"
    save_settings(AppSettings(), path)
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["model"] is None and stored["threads"] is None
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


@pytest.mark.parametrize("content", ["{not json", "", "[1, 2, 3]", '"text"', "null"])
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
        "max_stage_tokens": 8,        # out of range
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
    assert settings == AppSettings(
        model=Path("/models/good.gguf"), select="logprob", temperature=0.3,
        window_geometry="abc=",
    )
    message = " ".join(r.getMessage() for r in caplog.records)
    for word in ("beam", "top_p", "n_ctx", "favourite_colour", "settings.json.bad"):
        assert word in message
    assert (tmp_path / "settings.json.bad").read_text(encoding="utf-8") == original
    assert load_settings(path) == settings  # the usable part was kept


@pytest.mark.parametrize(("key", "value"), [
    ("beam", True), ("beam", 2.0), ("beam", MAX_BEAM + 1), ("beam", -1),
    ("temperature", float("nan")), ("temperature", "0.5"), ("temperature", 2.5),
    ("threads", False), ("select", "coin"), ("n_ctx", 2047),
])
def test_each_bad_value_alone_is_refused(tmp_path, key, value):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 1, "beam": 3, key: value}), encoding="utf-8")
    settings = load_settings(path)
    assert getattr(settings, key) == getattr(AppSettings(), key)
    if key != "beam":
        assert settings.beam == 3
    assert (tmp_path / "settings.json.bad").exists()


def test_retraces_scorer_of_version_1_becomes_its_selection(tmp_path):
    path = write_json(tmp_path / "settings.json", {
        "version": 1, "strategy": "retrace", "select": "judge", "retrace_scorer": "logprob"})
    settings = load_settings(path)
    assert (settings.strategy, settings.select) == ("retrace", "logprob")
    other = write_json(tmp_path / "other.json", {
        "version": 1, "strategy": "stage", "select": "judge", "retrace_scorer": "logprob"})
    assert load_settings(other).select == "judge"  # the scorer applied to retrace only
    assert not (tmp_path / "settings.json.bad").exists()


def test_whole_number_temperature_is_accepted_as_float(tmp_path):
    path = write_json(tmp_path / "settings.json", {"version": 1, "temperature": 1, "top_p": 1})
    settings = load_settings(path)
    assert settings.temperature == 1.0 and isinstance(settings.temperature, float)
    assert settings.top_p == 1.0
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
    assert settings == AppSettings(
        model=Path("/models/old.gguf"), beam=4, select="logprob", max_stage_tokens=128,
        n_ctx=4096, gpu_layers=0, stages_collapsed=True, window_geometry="Zm9v",
        temperature=0.2,
    )
    assert not caplog.records
    assert not (tmp_path / "settings.json.bad").exists()
    assert json.loads(path.read_text(encoding="utf-8")) == old  # not rewritten on load


def test_explicit_version_0_with_gpu_all_migrates(tmp_path):
    path = write_json(tmp_path / "settings.json", {"version": 0, "gpu": "all", "beam_width": 2})
    settings = load_settings(path)
    assert settings.gpu_layers == -1 and settings.beam == 2


def test_migration_table_covers_every_old_version():
    assert sorted(MIGRATIONS) == list(range(SCHEMA_VERSION))
    data: dict[str, object] = {"version": 0}
    for version in range(SCHEMA_VERSION):
        data = MIGRATIONS[version](data)
    assert data["version"] == SCHEMA_VERSION


def test_newer_version_keeps_known_keys_and_is_left_alone(tmp_path, caplog):
    path = write_json(tmp_path / "settings.json", {
        "version": 7,
        "beam": 3,
        "n_ctx": 4096,
        "theme": "dark",            # a key from the future
        "top_p": 5.0,               # out of range here; perhaps not then
    })
    original = path.read_text(encoding="utf-8")
    with caplog.at_level(logging.WARNING, "stagewise.settings"):
        settings = load_settings(path)
    assert settings == AppSettings(beam=3, n_ctx=4096)
    assert settings.version == SCHEMA_VERSION
    assert path.read_text(encoding="utf-8") == original
    assert not (tmp_path / "settings.json.bad").exists()


@pytest.mark.parametrize("version", ["1", -1, True, 1.5])
def test_nonsense_version_is_read_as_current(tmp_path, version):
    path = write_json(tmp_path / "settings.json", {"version": version, "beam": 5})
    assert load_settings(path) == AppSettings(beam=5)
    assert (tmp_path / "settings.json.bad").exists()


def test_unreadable_settings_give_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.mkdir()  # a folder where the file should be
    assert load_settings(path) == AppSettings()
    assert path.is_dir()


def test_engine_settings_follow_the_cli_rules():
    engine = CUSTOM.engine_settings()
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


@pytest.mark.parametrize(("change", "word"), [
    ({"beam": -1}, "beam"),
    ({"beam": MAX_BEAM + 1}, "beam"),
    ({"select": "vote"}, "select"),
    ({"strategy": "tree"}, "strategy"),
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 1.01}, "top_p"),
    ({"max_stage_tokens": 5000}, "max_stage_tokens"),
    ({"gpu_layers": -5}, "gpu_layers"),
    ({"threads": 0}, "threads"),
    ({"n_ctx": 1024}, "n_ctx"),
    ({"version": 3}, "version"),
])
def test_validated_names_the_bad_value(change, word):
    from dataclasses import replace

    with pytest.raises(StagewiseError) as info:
        replace(AppSettings(), **change).validated()
    assert word in str(info.value)
    assert repr(next(iter(change.values()))) in str(info.value)


def test_validated_normalises_paths():
    settings = AppSettings(model="", mmproj="/x/m.gguf", temperature=1)  # type: ignore[arg-type]
    fixed = settings.validated()
    assert fixed.model is None and fixed.mmproj == Path("/x/m.gguf")
    assert isinstance(fixed.temperature, float)


def test_save_refuses_invalid_settings_and_writes_nothing(tmp_path):
    path = tmp_path / "settings.json"
    with pytest.raises(StagewiseError):
        save_settings(AppSettings(beam=-1), path)
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "settings.json"
    save_settings(CUSTOM, path)
    save_settings(AppSettings(beam=2), path)
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(app_settings.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_settings(CUSTOM, path)
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]
    assert load_settings(path) == AppSettings(beam=2)  # the old file is intact


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
        assert load_settings(path) == AppSettings(beam=3)
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
