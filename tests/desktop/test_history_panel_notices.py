"""The history sidebar says what is wrong with the history, and keeps saying it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from stagewise.desktop.history_panel import HistoryPanel
from stagewise.models.errors import StagewiseError
from stagewise.models.inference.images import load_image
from stagewise.models.storage.history import History
from stagewise.models.storage.history.owners import current_owner
from tests.models.test_history_reliability import damage_a_page, fill, read_only


def test_a_damaged_history_is_said_and_stays_said_and_can_be_exported(qtbot, image_file,
                                                                       tmp_path):
    folder = tmp_path / "history"
    fill(folder, image_file, runs=60)
    damage_a_page(folder / "history.sqlite3", b"question-0030 ")
    with History(folder, recover=True) as history:
        panel = HistoryPanel(history)
        qtbot.addWidget(panel)
        panel.refresh()
        assert not panel.notice.isHidden() and "damaged" in panel.notice.text()
        assert not panel.export_damaged.isHidden()
        summary = panel.export_damaged_to(tmp_path / "readable.json")
        assert 40 < summary.runs < 60
        assert len(json.loads((tmp_path / "readable.json").read_text())["runs"]) == summary.runs
        assert "damaged" in panel.notice.text()


def test_a_read_only_history_shows_its_runs_and_says_answers_are_not_saved(qtbot, image_file,
                                                                           tmp_path):
    folder = tmp_path / "history"
    fill(folder, image_file, runs=2)
    with read_only(folder), History(folder, recover=True) as history:
        panel = HistoryPanel(history)
        qtbot.addWidget(panel)
        assert panel.list.count() == 2
        assert "not be saved" in panel.notice.text() and not panel.notice.isHidden()
        assert panel.export_damaged.isHidden()


def test_a_read_error_is_not_overwritten(qtbot, tmp_path, monkeypatch):
    with History(tmp_path / "history") as history:
        panel = HistoryPanel(history)
        qtbot.addWidget(panel)
        assert panel.notice.isHidden()

        def broken(*_: object, **__: object) -> list[object]:
            raise StagewiseError("could not read the history: the history database is damaged")

        monkeypatch.setattr(history, "entries", broken)
        panel.refresh()
        assert "cannot be read" in panel.empty.text() and "damaged" in panel.empty.text()


def test_a_refresh_marks_a_dead_writers_run_interrupted(qtbot, image_file, tmp_path):
    folder = tmp_path / "history"
    with History(folder) as history:
        run_id = history.start(load_image(image_file), image_file.read_bytes(),
                               image_file.name, "asked by a process that died", "m", {})
        panel = HistoryPanel(history)
        qtbot.addWidget(panel)
        assert "answering" in panel.list.item(0).text()
        db = sqlite3.connect(Path(history.database))
        host, boot, _, _ = current_owner().split("/")
        db.execute("UPDATE runs SET owner = ? WHERE id = ?", (f"{host}/{boot}/999999999/1", run_id))
        db.commit()
        db.close()
        panel.refresh()
        assert "interrupted" in panel.list.item(0).text()
