"""Questions asked one after another about the same open image are one thread in the
history (schema 3), and a database written before threads still opens and reads."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from stagewise.models.inference.images import load_image
from stagewise.models.storage.history import SCHEMA_VERSION, History
from stagewise.models.storage.history.schema import _MIGRATIONS
from tests.models.test_history_reliability import read_only


def start(history: History, image_file: Path, question: str, **thread: object) -> int:
    return history.start(load_image(image_file), image_file.read_bytes(), image_file.name,
                         question, "tiny.gguf", {"beam": 1}, **thread)


def test_re_asks_and_follow_ups_form_one_thread_listed_together(tmp_path, image_file):
    with History(tmp_path / "history") as history:
        first = start(history, image_file, "How many circles?")
        again = start(history, image_file, "How many squares?", thread=first)
        other = start(history, image_file, "Another picture's question")
        follow = start(history, image_file, "Why red?", thread=again, follow_up=True)
        thread = history.thread(follow)
        assert [e.id for e in thread] == [first, again, follow]
        assert [e.question for e in history.thread(first)] == [
            "How many circles?", "How many squares?", "Why red?"]
        assert {e.thread_id for e in thread} == {first}
        assert [e.follow_up for e in thread] == [False, False, True]
        assert [e.thread for e in thread] == [None, first, first]  # the root, not the parent
        assert [e.id for e in history.thread(other)] == [other]
        # the list: newest first as before; grouped, a thread's runs together, oldest
        # first, threads ordered by their newest run
        assert [e.id for e in history.entries()] == [follow, other, again, first]
        assert [e.id for e in history.entries(threads=True)] == [first, again, follow, other]
        assert [e.id for e in history.entries("why", threads=True)] == [follow]
        # deleting the thread's first run leaves the others one thread
        history.delete([first])
        assert [e.id for e in history.thread(again)] == [again, follow]
        assert history.load(follow).entry.follow_up


def old_database(folder: Path, image_file: Path) -> int:
    """A history written by schema 2 (before threads), with one finished run."""
    folder.mkdir(parents=True)
    db = sqlite3.connect(folder / "history.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for version in (0, 1):
        _MIGRATIONS[version](db)
    db.execute("PRAGMA user_version = 2")
    sha = load_image(image_file).sha256
    db.execute("INSERT INTO images (sha256, ext, size) VALUES (?, 'png', ?)",
               (sha, image_file.stat().st_size))
    (folder / "images" / sha[:2]).mkdir(parents=True)
    (folder / "images" / sha[:2] / f"{sha}.png").write_bytes(image_file.read_bytes())
    cursor = db.execute(
        "INSERT INTO runs (created, question, model, status, image, image_name, settings, "
        "beam, strategy, conclusion, owner) VALUES (?, 'Old question?', 'old.gguf', "
        "'finished', ?, 'shapes.png', '{}', 2, 'stage', 'Old answer.', NULL)",
        (datetime.now(UTC).isoformat(), sha))
    db.close()
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def test_a_database_from_before_threads_is_migrated_and_keeps_its_runs(tmp_path, image_file):
    folder = tmp_path / "history"
    old = old_database(folder, image_file)
    with History(folder) as history:
        db = history._connection()
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        [entry] = history.entries(threads=True)
        assert (entry.id, entry.question, entry.conclusion) == (old, "Old question?",
                                                                "Old answer.")
        assert entry.thread is None and entry.thread_id == old and not entry.follow_up
        assert history.load(old).entry.question == "Old question?"
        # an old run can start a thread
        follow = start(history, image_file, "New follow-up?", thread=old, follow_up=True)
        assert [e.id for e in history.thread(follow)] == [old, follow]


def test_a_read_only_database_from_before_threads_is_read_without_migrating(
        tmp_path, image_file):
    folder = tmp_path / "history"
    old = old_database(folder, image_file)
    with read_only(folder), History(folder) as history:
        assert history.read_only
        assert history._connection().execute("PRAGMA user_version").fetchone()[0] == 2
        assert [e.id for e in history.entries(threads=True)] == [old]
        assert [e.id for e in history.thread(old)] == [old]
        assert history.load(old).entry.thread_id == old
