"""Schema 5 of the history: a compared pair (each run names the other) and the further images
of a question about several; a schema 4 database migrates and keeps its runs, and one that
cannot be written is read as it is."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from stagewise.models.inference.images import load_image
from stagewise.models.storage.export import export
from stagewise.models.storage.history import SCHEMA_VERSION, History, RunNotFound
from stagewise.models.storage.history.schema import _MIGRATIONS
from tests.models.test_history_reliability import read_only


@pytest.fixture
def second_file(tmp_path: Path) -> Path:
    path = tmp_path / "second.png"
    Image.new("RGB", (30, 20), (0, 90, 200)).save(path)
    return path


def start(history: History, image_file: Path, question: str, *more: Path) -> int:
    return history.start(load_image(image_file), image_file.read_bytes(), image_file.name,
                         question, "tiny.gguf", {"beam": 1},
                         more_images=[(load_image(p), p.read_bytes(), p.name) for p in more])


def test_a_question_about_two_images_keeps_both_in_order(tmp_path, image_file, second_file):
    with History(tmp_path / "history") as history:
        run = start(history, image_file, "Which has more?", second_file)
        single = start(history, second_file, "Only the second?")
        stored = history.load(run)
        assert [name for _, name in stored.images] == [image_file.name, second_file.name]
        assert [p.read_bytes() for p, _ in stored.images] == [image_file.read_bytes(),
                                                              second_file.read_bytes()]
        assert history.load(single).more_images == ()
        text = export([stored], tmp_path / "two.md").read_text()
        assert text.count("![") == 2 and "Images:" in text
        assert all((tmp_path / "two-images" / p.name).is_file() for p, _ in stored.images)
        html = export([stored], tmp_path / "two.html").read_text()
        assert html.count("<img ") == 2
        # deleting the run keeps the image another run uses, and removes the one it alone used
        history.delete([run])
        assert history.load(single).image_path.is_file()
        first_copy = stored.images[0][0]
        assert not first_copy.exists()


def test_a_pair_names_each_other_and_unknown_runs_are_refused(tmp_path, image_file):
    with History(tmp_path / "history") as history:
        a, b = (start(history, image_file, "Same?") for _ in range(2))
        history.link_comparison(a, b)
        assert [e.compared_with for e in history.entries()] == [a, b]
        with pytest.raises(RunNotFound):
            history.link_comparison(a, 999)


def schema_4_database(folder: Path, image_file: Path) -> int:
    folder.mkdir(parents=True)
    db = sqlite3.connect(folder / "history.sqlite3", isolation_level=None)
    for version in range(4):
        _MIGRATIONS[version](db)
    db.execute("PRAGMA user_version = 4")
    sha = load_image(image_file).sha256
    db.execute("INSERT INTO images (sha256, ext, size) VALUES (?, 'png', 1)", (sha,))
    (folder / "images" / sha[:2]).mkdir(parents=True)
    (folder / "images" / sha[:2] / f"{sha}.png").write_bytes(image_file.read_bytes())
    cursor = db.execute(
        "INSERT INTO runs (created, question, model, status, image, image_name) VALUES "
        "('2026-12-01T10:00:00+00:00', 'Old?', 'old.gguf', 'finished', ?, 'old.png')", (sha,))
    db.close()
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def test_a_schema_4_database_migrates(tmp_path, image_file, second_file):
    folder = tmp_path / "history"
    old = schema_4_database(folder, image_file)
    with History(folder) as history:
        assert history._connection().execute("PRAGMA user_version").fetchone()[0] == \
            SCHEMA_VERSION == 6
        stored = history.load(old)
        assert stored.entry.compared_with is None and stored.more_images == ()
        new = start(history, image_file, "New?", second_file)
        history.link_comparison(old, new)
        assert history.load(old).entry.compared_with == new
        assert len(history.load(new).images) == 2


def test_a_read_only_schema_4_database_is_read_without_migrating(tmp_path, image_file):
    folder = tmp_path / "history"
    old = schema_4_database(folder, image_file)
    with read_only(folder), History(folder) as history:
        assert history.read_only
        assert [e.compared_with for e in history.entries()] == [None]
        assert history.load(old).images[0][1] == "old.png"
