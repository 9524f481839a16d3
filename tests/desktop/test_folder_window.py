"""File → Ask About a Folder… in the real window, offscreen: the dialog, the run on the
engine thread with the tiny model through real llama.cpp, the table, Stop, and a row
opened as a normal answer from the real history."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from PySide6.QtCore import Qt

from stagewise.desktop.main_window import MainWindow
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.storage.app_settings import AppSettings

RUN_MS = 240_000


@pytest.fixture
def window(qtbot, tiny_pair, tmp_path) -> MainWindow:
    settings = AppSettings(model=tiny_pair.model, mmproj=tiny_pair.mmproj, auto_beam=False,
                           search=SearchSettings(beam=1, max_stage_tokens=8),
                           engine=EngineSettings(threads=2, n_ctx=4096))
    shown = MainWindow(settings, settings_path=tmp_path / "config" / "settings.json",
                       history_folder=tmp_path / "history")
    qtbot.addWidget(shown)
    shown.show()
    qtbot.waitUntil(lambda: shown.loaded is not None, timeout=RUN_MS)
    yield shown
    shown.close()


def pictures(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        image = Image.new("RGB", (64 + 8 * i, 48), "white")
        ImageDraw.Draw(image).ellipse((4 + i, 4, 30 + i, 30), fill=(40 * i % 255, 0, 200))
        image.save(folder / f"picture-{i:02}.png")
    return folder


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_the_folder_dialog_runs_a_folder_into_a_table_whose_rows_open_as_answers(
        qtbot, window, tmp_path):
    folder = pictures(tmp_path / "pictures", 3)
    (folder / "readme.txt").write_text("not a picture")
    out = tmp_path / "results.csv"
    dialog = window.ask_folder()
    assert not dialog.ask_button.isEnabled()  # no folder, no questions yet
    dialog.set_request(folder, "How many circles?\n\nWhat colour is it?\n", out)
    assert dialog.ask_button.isEnabled(), dialog.problem.text()
    qtbot.mouseClick(dialog.ask_button, Qt.MouseButton.LeftButton)

    batch = window.batch
    assert batch is not None and batch.isVisible()
    assert window.ask("Another question?") is False  # one thing at a time
    qtbot.waitUntil(lambda: batch.summary is not None, timeout=RUN_MS)
    summary = batch.summary
    assert (summary.answered, summary.image_encodes, summary.cancelled) == (6, 3, False)
    assert [Path(name).name for name, _ in summary.bad_files] == ["readme.txt"]
    assert batch.bar.value() == batch.bar.maximum() == 8
    assert batch.table.rowCount() == 8 == len(csv_rows(out))
    assert "Done: 6 answered" in batch.status.text()

    rows = csv_rows(out)
    row = next(i for i, r in enumerate(rows) if r["status"] == "finished"
               and r["question"] == "What colour is it?")
    batch.table.selectRow(row)
    assert batch.open_row(row)
    assert window.question_box.question() == "What colour is it?"
    assert window.shown.conclusion.strip() == rows[row]["conclusion"]
    width, height, tokens = window.image_pane.sent()  # as the model was sent it
    assert (width, height) == (64 + 8 * int(Path(rows[row]["path"]).stem[-2:]), 48)
    assert tokens == int(rows[row]["image_tokens"]) > 0
    bad = next(i for i, r in enumerate(rows) if r["status"] == "bad file")
    assert not batch.open_row(bad)  # nothing in the history to open
    batch.close()

    again = window.start_folder(dialog_request(folder, ("How many circles?",
                                                        "What colour is it?"), out))
    assert again is not None and again.table.rowCount() == 8  # the file's rows, at once
    qtbot.waitUntil(lambda: again.summary is not None, timeout=RUN_MS)
    assert (again.summary.answered, again.summary.already_done) == (0, 8)
    assert again.summary.image_encodes == 0


def test_stop_ends_the_folder_after_the_answer_being_written(qtbot, window, tmp_path):
    folder = pictures(tmp_path / "pictures", 12)
    out = tmp_path / "results.csv"
    batch = window.start_folder(dialog_request(folder, ("How many circles?",), out))
    assert batch is not None
    qtbot.waitUntil(lambda: batch.table.rowCount() >= 1, timeout=RUN_MS)
    qtbot.mouseClick(batch.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: batch.summary is not None, timeout=RUN_MS)
    assert batch.summary.cancelled
    assert "Stopped" in batch.status.text()
    rows = csv_rows(out)
    assert 1 <= len(rows) < 12 and all(r["status"] == "finished" for r in rows)
    assert window.ask("How many circles?") is False or window.busy  # the window is usable
    window.stop()


def dialog_request(folder: Path, questions: tuple[str, ...], out: Path):
    from stagewise.desktop.folder_dialog import FolderRequest

    return FolderRequest(folder, questions, out)
