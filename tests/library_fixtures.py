"""A catalogue of the tiny test pair, served by a loopback fake hub (used by several tests)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.library.catalogue import CATALOGUE_ENV, CatalogueEntry, load_catalogue
from tests.hub_server import FakeHub

REPO = "stagewise-test/tiny-vlm-GGUF"
ENTRY_ID = "tiny-vlm-test"


@dataclass
class ServedCatalogue:
    hub: FakeHub
    path: Path
    entry: CatalogueEntry


def write_catalogue(path: Path, pair: TinyPair) -> Path:
    """A catalogue with one entry: the tiny pair, its real sizes and SHA-256."""
    def facts(file: Path) -> tuple[int, str]:
        data = file.read_bytes()
        return len(data), hashlib.sha256(data).hexdigest()

    model_bytes, model_sha = facts(pair.model)
    mmproj_bytes, mmproj_sha = facts(pair.mmproj)
    path.write_text(f'''schema = 1

[[model]]
id = "{ENTRY_ID}"
name = "Tiny test VLM"
family = "qwen2.5-vl"
repo = "{REPO}"
revision = "main"
model_file = "{pair.model.name}"
model_bytes = {model_bytes}
model_sha256 = "{model_sha}"
mmproj_file = "{pair.mmproj.name}"
mmproj_bytes = {mmproj_bytes}
mmproj_sha256 = "{mmproj_sha}"
quant = "F32"
params = "1M"
licence = "apache-2.0"
licence_url = "https://example.invalid/licence"
stage_mode = "prompted"
thinking = false
notes = "The tiny random-weight test pair."
sources = ["https://example.invalid/stagewise/tests/library_fixtures.py (a test pair)"]
''', encoding="utf-8")
    return path


@pytest.fixture
def served_catalogue(tiny_pair: TinyPair, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[ServedCatalogue]:
    """The tiny pair on a fake hub, and a catalogue naming it ($STAGEWISE_CATALOGUE set)."""
    path = write_catalogue(tmp_path / "catalogue.toml", tiny_pair)
    monkeypatch.setenv(CATALOGUE_ENV, str(path))
    with FakeHub() as hub, hub.environment():
        hub.add(REPO, tiny_pair.model.name, tiny_pair.model)
        hub.add(REPO, tiny_pair.mmproj.name, tiny_pair.mmproj)
        (entry,) = load_catalogue(path)
        yield ServedCatalogue(hub, path, entry)
