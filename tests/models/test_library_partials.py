"""What a stopped pull leaves on disk: counted to resume from, deleted on request."""

from __future__ import annotations

import threading

import pytest

from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.library.hub_transfer import DownloadProgress
from stagewise.models.library.installed import Library
from tests.library_fixtures import ENTRY_ID, REPO


def test_a_stopped_pull_is_counted_resumed_and_discarded(served_catalogue, tiny_pair,
                                                         tmp_path):
    library = Library(tmp_path / "models")
    entry = served_catalogue.entry
    served_catalogue.hub.set_faults(REPO, tiny_pair.model.name, slow=0.02)
    stop = threading.Event()

    def progress(p: DownloadProgress) -> None:
        if p.file == tiny_pair.model.name and p.done > 0:
            stop.set()

    with pytest.raises(Cancelled):
        library.pull(entry, progress=progress, cancel=stop)
    kept = library.partial_bytes(ENTRY_ID)
    assert tiny_pair.mmproj.stat().st_size < kept < entry.total_bytes
    assert library.find(ENTRY_ID) is None

    assert library.discard_download(ENTRY_ID)
    assert not (library.folder / ENTRY_ID).exists() and library.partial_bytes(ENTRY_ID) == 0
    assert not library.discard_download(ENTRY_ID)  # nothing left


def test_an_installed_model_is_never_discarded(served_catalogue, tiny_pair, tmp_path):
    library = Library(tmp_path / "models")
    model = library.pull(served_catalogue.entry)
    assert library.partial_bytes(ENTRY_ID) == 0
    assert not library.discard_download(ENTRY_ID)
    assert model.present
    for bad in ("", "..", "a/b"):
        with pytest.raises(StagewiseError):
            library.discard_download(bad)
