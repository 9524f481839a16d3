"""The model library: pull from a (loopback) hub, import local files, remove."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.inference.gguf_check import check_pair
from stagewise.models.library.defaults import resolve_pair
from stagewise.models.library.installed import LIBRARY_FILE, Library
from tests.library_fixtures import ENTRY_ID


def test_pull_installs_a_checked_pair_that_resolves_by_id(served_catalogue, tmp_path,
                                                          monkeypatch, tiny_pair):
    monkeypatch.setenv("STAGEWISE_DATA_DIR", str(tmp_path / "data"))
    library = Library()
    seen = []
    model = library.pull(served_catalogue.entry, progress=seen.append)
    assert model.id == ENTRY_ID and model.source == "catalogue" and model.present
    assert model.model.read_bytes() == tiny_pair.model.read_bytes()
    check_pair(model.model, model.mmproj)
    assert {p.file for p in seen} == {tiny_pair.model.name, tiny_pair.mmproj.name}
    assert [m.id for m in Library().installed()] == [ENTRY_ID]  # a new instance reads it
    pair = resolve_pair(Path(ENTRY_ID), None)  # `--model ID` and the settings use this
    assert (pair.model, pair.mmproj) == (model.model, model.mmproj)

    gone = library.remove(ENTRY_ID)
    assert not gone.model.exists() and library.installed() == []


def test_a_cancelled_pull_resumes(served_catalogue, tmp_path, tiny_pair):
    library = Library(tmp_path / "models")
    served_catalogue.hub.set_faults(
        "stagewise-test/tiny-vlm-GGUF", tiny_pair.model.name, slow=0.01)
    cancel = threading.Event()

    def stop_midway(p):
        if p.file == tiny_pair.model.name and 0 < p.done < p.total:
            cancel.set()

    with pytest.raises(Cancelled):
        library.pull(served_catalogue.entry, progress=stop_midway, cancel=cancel)
    assert library.installed() == []
    served_catalogue.hub.set_faults("stagewise-test/tiny-vlm-GGUF", tiny_pair.model.name,
                                    slow=0)
    served_catalogue.hub.clear_requests()
    model = library.pull(served_catalogue.entry)
    assert model.model.read_bytes() == tiny_pair.model.read_bytes()
    ranges = [r.range for r in served_catalogue.hub.downloads() if r.range]
    assert ranges, "the second pull should resume with a Range request"


def test_import_keeps_files_in_place_and_finds_the_projector(tiny_pair, tmp_path):
    library = Library(tmp_path / "models")
    added = library.import_files(tiny_pair.model)
    assert added.source == "imported"
    assert (added.model, added.mmproj) == (tiny_pair.model.resolve(), tiny_pair.mmproj.resolve())
    again = library.import_files(tiny_pair.model, tiny_pair.mmproj)
    assert again.id != added.id  # a second import gets its own id
    library.remove(added.id)
    assert tiny_pair.model.exists() and tiny_pair.mmproj.exists()


def test_import_refuses_what_would_not_load(tiny_pair, tmp_path):
    library = Library(tmp_path / "models")
    cut = tmp_path / "cut-model.gguf"
    cut.write_bytes(tiny_pair.model.read_bytes()[:4000])
    with pytest.raises(StagewiseError, match=r"cut-model\.gguf"):
        library.import_files(cut, tiny_pair.mmproj)
    lonely = tmp_path / "alone" / "model.gguf"
    lonely.parent.mkdir()
    lonely.write_bytes(tiny_pair.model.read_bytes())
    with pytest.raises(StagewiseError, match="no projector"):
        library.import_files(lonely)
    assert library.installed() == []


def test_a_local_entry_is_not_downloaded_and_a_damaged_record_is_explained(tmp_path):
    from stagewise.models.library.catalogue import load_catalogue

    local = next(e for e in load_catalogue() if e.local)
    library = Library(tmp_path / "models")
    with pytest.raises(StagewiseError, match="built locally"):
        library.pull(local)
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / LIBRARY_FILE).write_text("{not json")
    with pytest.raises(StagewiseError, match="cannot be read"):
        library.installed()
    with pytest.raises(StagewiseError, match="no installed model named 'nope'"):
        Library(tmp_path / "other").get("nope")


def test_a_built_pair_fills_its_local_slot_and_is_deleted_with_it(tiny_pair, tmp_path):
    import shutil

    from stagewise.models.library.catalogue import load_catalogue

    entries = load_catalogue()
    local = next(e for e in entries if e.local)
    library = Library(tmp_path / "models")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(StagewiseError, match="go in"):
        library.add_built(local, tiny_pair.model, tiny_pair.mmproj)
    with pytest.raises(StagewiseError, match="not built"):
        library.add_built(next(e for e in entries if not e.local), tiny_pair.model,
                          tiny_pair.mmproj)
    home = tmp_path / "models" / local.id
    home.mkdir(parents=True)
    model = Path(shutil.copy(tiny_pair.model, home / "m.gguf"))
    mmproj = Path(shutil.copy(tiny_pair.mmproj, home / "mmproj.gguf"))
    added = library.add_built(local, model, mmproj)
    assert (added.id, added.source, added.present) == (local.id, "catalogue", True)
    library.remove(local.id)
    assert not home.exists()
