"""The packaged model catalogue loads, holds real-looking facts, and bad files are refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stagewise.models.errors import StagewiseError
from stagewise.models.library.catalogue import (
    FAMILIES,
    CatalogueEntry,
    CatalogueError,
    CatalogueFile,
    find_entry,
    load_catalogue,
)

HEX64 = re.compile(r"^[0-9a-f]{64}$")

GOOD_ENTRY = """\
[[model]]
id = "demo-q4"
name = "Demo"
family = "qwen2.5-vl"
repo = "owner/Demo-GGUF"
revision = "main"
model_file = "Demo-Q4_K_M.gguf"
model_bytes = 10
model_sha256 = "{sha}"
mmproj_file = "mmproj-Demo-f16.gguf"
mmproj_bytes = 20
mmproj_sha256 = "{sha}"
quant = "Q4_K_M"
params = "3B"
licence = "apache-2.0"
licence_url = "https://example.org/licence"
stage_mode = "prompted"
thinking = false
context = 4096
notes = ""
sources = ["https://example.org/demo"]
""".replace("{sha}", "a" * 64)


@pytest.fixture(scope="module")
def catalogue() -> tuple[CatalogueEntry, ...]:
    return load_catalogue()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalogue.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_packaged_catalogue_loads(catalogue: tuple[CatalogueEntry, ...]) -> None:
    assert len(catalogue) >= 9
    assert all(isinstance(entry, CatalogueEntry) for entry in catalogue)


def test_required_families_and_models_present(catalogue: tuple[CatalogueEntry, ...]) -> None:
    assert {entry.family for entry in catalogue} == FAMILIES
    ids = {entry.id for entry in catalogue}
    for wanted in (
        "smolvlm2-2.2b-q4",
        "qwen2.5-vl-3b-q4",
        "qwen2.5-vl-7b-q4",
        "qwen3-vl-2b-instruct-q4",
        "qwen3-vl-2b-thinking-q4",
        "qwen3-vl-4b-instruct-q4",
        "qwen3-vl-4b-thinking-q4",
        "gemma3-4b-q4",
        "internvl3-2b-q4",
        "llava-cot-local",
    ):
        assert wanted in ids
    thinking = {entry.id for entry in catalogue if entry.thinking}
    assert thinking == {"qwen3-vl-2b-thinking-q4", "qwen3-vl-4b-thinking-q4"}


def test_ids_unique(catalogue: tuple[CatalogueEntry, ...]) -> None:
    ids = [entry.id for entry in catalogue]
    assert len(ids) == len(set(ids))


def test_digests_are_empty_or_64_hex(catalogue: tuple[CatalogueEntry, ...]) -> None:
    for entry in catalogue:
        for file in (entry.model, entry.mmproj):
            assert file.sha256 == "" or HEX64.match(file.sha256), (entry.id, file.name)
            assert file.size >= 0


def test_every_entry_has_sources(catalogue: tuple[CatalogueEntry, ...]) -> None:
    for entry in catalogue:
        assert entry.sources, entry.id
        assert all(source.strip() for source in entry.sources)


def test_file_names(catalogue: tuple[CatalogueEntry, ...]) -> None:
    for entry in catalogue:
        assert "mmproj" in entry.mmproj.name.lower(), entry.id
        assert "mmproj" not in entry.model.name.lower(), entry.id
        assert entry.model.name.endswith(".gguf")
        assert entry.mmproj.name.endswith(".gguf")


def test_unknown_facts_are_explained(catalogue: tuple[CatalogueEntry, ...]) -> None:
    for entry in catalogue:
        if entry.local:
            continue
        if not (entry.model.known and entry.mmproj.known and entry.licence):
            assert entry.notes.strip(), entry.id


def test_stage_modes(catalogue: tuple[CatalogueEntry, ...]) -> None:
    for entry in catalogue:
        if entry.family == "llava-cot-local":
            assert entry.stage_mode == "native"
            assert entry.local
        else:
            assert entry.stage_mode == "prompted"
            assert entry.local == entry.verifier  # a PRM is built here; the rest downloaded


def test_local_slot_has_no_repo(catalogue: tuple[CatalogueEntry, ...]) -> None:
    local = find_entry("llava-cot-local", catalogue)
    assert local.repo is None
    assert local.local
    assert local.revision == ""
    assert local.model.name.startswith("models/llava-cot-local/")
    assert local.total_bytes == 0


def test_hub_entries_have_repo_and_revision(catalogue: tuple[CatalogueEntry, ...]) -> None:
    for entry in catalogue:
        if entry.local:
            continue
        assert entry.repo and "/" in entry.repo
        assert entry.revision == "main" or re.fullmatch(r"[0-9a-f]{40}", entry.revision)
        assert "/" not in entry.model.name


def test_total_bytes() -> None:
    known = CatalogueFile("a.gguf", 10, "")
    unknown = CatalogueFile("mmproj-a.gguf", 0, "")
    entry = find_entry("qwen2.5-vl-3b-q4")
    assert entry.total_bytes == entry.model.size + entry.mmproj.size > 0
    assert not unknown.known
    assert not known.known
    assert CatalogueFile("b.gguf", 1, "a" * 64).known


def test_good_entry_round_trip(tmp_path: Path) -> None:
    (entry,) = load_catalogue(write(tmp_path, GOOD_ENTRY))
    assert entry.id == "demo-q4"
    assert entry.context == 4096
    assert entry.total_bytes == 30
    assert entry.sources == ("https://example.org/demo",)


def test_malformed_toml_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[[model]]\nid = "broken\nname = 3\n')
    with pytest.raises(CatalogueError, match="not valid TOML") as info:
        load_catalogue(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, StagewiseError)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read the catalogue"):
        load_catalogue(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('family = "qwen2.5-vl"', 'family = "llava"', "unknown family 'llava'"),
        (f'model_sha256 = "{"a" * 64}"', 'model_sha256 = "abc123"', "has 6 characters"),
        (f'model_sha256 = "{"a" * 64}"', f'model_sha256 = "{"A" * 64}"', "lower-case hex"),
        ('mmproj_file = "mmproj-Demo-f16.gguf"', 'mmproj_file = "proj.gguf"', "'mmproj'"),
        ('model_file = "Demo-Q4_K_M.gguf"', 'model_file = "Demo.bin"', "end in .gguf"),
        ('model_file = "Demo-Q4_K_M.gguf"', 'model_file = "../Demo.gguf"', "relative path"),
        ("model_bytes = 10", "model_bytes = -1", "whole number of bytes"),
        ('stage_mode = "prompted"', 'stage_mode = "native"', "stage_mode 'native'"),
        ('revision = "main"', 'revision = "v1"', "commit hash"),
        ('repo = "owner/Demo-GGUF"', 'repo = "nope"', "owner/name"),
        ("thinking = false", 'thinking = "no"', "true or false"),
        ("context = 4096", "context = 0", "positive number of tokens"),
        ('sources = ["https://example.org/demo"]', "sources = []", "sources"),
        ('notes = ""', 'notes = ""\ncolour = "red"', "unknown field(s) colour"),
        ('quant = "Q4_K_M"\n', "", "missing field(s) quant"),
        ('repo = "owner/Demo-GGUF"\n', "", "[[local]]"),
        (f'model_sha256 = "{"a" * 64}"', 'model_sha256 = ""', "say why in 'notes'"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD_ENTRY
    path = write(tmp_path, GOOD_ENTRY.replace(old, new, 1))
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    text = str(info.value)
    assert message in text
    assert str(path) in text
    assert "demo-q4" in text or "[[model]] #1" in text


def test_duplicate_id(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="duplicate id 'demo-q4'"):
        load_catalogue(write(tmp_path, GOOD_ENTRY + "\n" + GOOD_ENTRY))


def test_local_entry_rejects_repo(tmp_path: Path) -> None:
    local = GOOD_ENTRY.replace("[[model]]", "[[local]]")
    with pytest.raises(CatalogueError, match="a \\[\\[local\\]\\] entry has no repo"):
        load_catalogue(write(tmp_path, local))


def test_local_entry_without_repo(tmp_path: Path) -> None:
    local = (
        GOOD_ENTRY.replace("[[model]]", "[[local]]")
        .replace('repo = "owner/Demo-GGUF"\n', "")
        .replace('revision = "main"\n', "")
        .replace('family = "qwen2.5-vl"', 'family = "llava-cot-local"')
        .replace('stage_mode = "prompted"', 'stage_mode = "native"')
        .replace('model_file = "Demo-Q4_K_M.gguf"', 'model_file = "models/x/Demo.gguf"')
        .replace(f'model_sha256 = "{"a" * 64}"', 'model_sha256 = ""')
    )
    (entry,) = load_catalogue(write(tmp_path, local))
    assert entry.local
    assert entry.repo is None
    assert entry.model.name == "models/x/Demo.gguf"


def test_unknown_top_level_key_and_schema(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="unknown top-level key"):
        load_catalogue(write(tmp_path, "[[models]]\nid = 'x'\n"))
    with pytest.raises(CatalogueError, match="schema 2 is not supported"):
        load_catalogue(write(tmp_path, "schema = 2\n" + GOOD_ENTRY))
    with pytest.raises(CatalogueError, match="no \\[\\[model\\]\\] or \\[\\[local\\]\\]"):
        load_catalogue(write(tmp_path, "schema = 1\n"))


def test_find_entry(catalogue: tuple[CatalogueEntry, ...]) -> None:
    assert find_entry("gemma3-4b-q4", catalogue).repo == "ggml-org/gemma-3-4b-it-GGUF"
    assert find_entry("gemma3-4b-q4").id == "gemma3-4b-q4"


def test_find_entry_suggests_close_ids(catalogue: tuple[CatalogueEntry, ...]) -> None:
    with pytest.raises(StagewiseError, match="did you mean") as info:
        find_entry("qwen2.5-vl-3b-q8", catalogue)
    assert "'qwen2.5-vl-3b-q4'" in str(info.value)
    assert "'qwen2.5-vl-3b-q8'" in str(info.value)


def test_find_entry_lists_ids_when_nothing_is_close(
    catalogue: tuple[CatalogueEntry, ...],
) -> None:
    with pytest.raises(StagewiseError, match="known ids: ") as info:
        find_entry("zzzzzzzzzzzzzzzzzzzzzzzz", catalogue)
    assert "smolvlm2-2.2b-q4" in str(info.value)


def test_every_answering_model_says_what_it_was_trained_for(
        catalogue: tuple[CatalogueEntry, ...], tmp_path: Path) -> None:
    answering = [e for e in catalogue if not e.verifier]
    assert answering and all(e.trained_for.strip().endswith(".") for e in answering)
    downloaded = [e for e in answering if e.repo]
    assert all(any("trained for" in s or "over 140 languages" in s for s in e.sources)
               for e in downloaded)  # a source says where the sentence comes from
    entry = load_catalogue(write(tmp_path, GOOD_ENTRY.replace(
        'notes = ""', 'notes = ""\ntrained_for = "Shape puzzles."')))[0]
    assert entry.trained_for == "Shape puzzles."
    assert load_catalogue(write(tmp_path, GOOD_ENTRY))[0].trained_for == ""  # optional
