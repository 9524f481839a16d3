"""Every catalogue source is a link a reader can follow."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stagewise.models.library.catalogue import CatalogueError, load_catalogue, source_link


def test_every_packaged_source_is_an_http_link() -> None:
    for entry in load_catalogue():
        for source in entry.sources:
            url, note = source_link(source)
            parts = urlsplit(url)
            assert parts.scheme in ("http", "https") and "." in parts.netloc, (entry.id, source)
            assert "code index" not in source.lower() and "file id" not in source.lower()
            assert source.startswith(url) and (not note or note in source)


def test_every_downloadable_entry_links_its_files_on_the_hub() -> None:
    for entry in load_catalogue():
        if entry.local:
            continue
        urls = {source_link(s)[0] for s in entry.sources}
        for file in (entry.model, entry.mmproj):
            assert (f"https://huggingface.co/{entry.repo}/blob/{entry.revision}/{file.name}"
                    in urls), (entry.id, file.name)


def test_a_source_splits_into_link_and_note() -> None:
    assert source_link("https://example.org/a (what it says)") == (
        "https://example.org/a", "what it says")
    assert source_link("http://example.org/b") == ("http://example.org/b", "")


@pytest.mark.parametrize("source", [
    "GitHub code index, file id 67528524220 (model notes)",
    "README.md of this repository",
    "ftp://example.org/file",
    "https:// example.org",
])
def test_a_source_that_is_no_link_is_refused(source: str, tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="no link"):
        source_link(source)
    packaged = Path(__file__).parents[2] / "models" / "data" / "catalogue.toml"
    text = packaged.read_text(encoding="utf-8")
    first = text.index('sources = [\n') + len('sources = [\n')
    broken = tmp_path / "catalogue.toml"
    broken.write_text(text[:first] + f'  "{source}",\n' + text[first:], encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"smolvlm2-2\.2b-q4.*no link"):
        load_catalogue(broken)

