"""The real window, offscreen, with the tiny model through real llama.cpp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from stagewise.desktop.main_window import MainWindow
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.reasoning.run_view import RunStatus, RunView
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import STAGES, Stage
from stagewise.models.storage.app_settings import AppSettings

ANSWER_MS = 180_000  # a loaded machine: beam 16 on two shared cores takes a minute


def tuned(settings: AppSettings, n_ctx: int | None = None, **search: object) -> AppSettings:
    """``settings`` with other search values, and another context size if given."""
    engine = settings.engine if n_ctx is None else replace(settings.engine, n_ctx=n_ctx)
    return replace(settings, search=replace(settings.search, **search), engine=engine)


@pytest.fixture
def settings(tiny_pair) -> AppSettings:
    return AppSettings(model=tiny_pair.model, mmproj=tiny_pair.mmproj, auto_beam=False,
                       search=SearchSettings(beam=2, max_stage_tokens=16, select="judge"),
                       engine=EngineSettings(threads=2, n_ctx=4096))


def drop_files(widget, paths: list[Path]) -> None:
    """A real drag and drop of files onto ``widget``, as the platform delivers it."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)


def ask_by_keyboard(qtbot, window: MainWindow, question: str) -> None:
    edit = window.question_box.edit
    edit.setFocus()
    qtbot.keyClicks(edit, question)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def wait_answer(qtbot, window: MainWindow) -> RunView:
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        pass
    return blocker.args[0]


def test_drop_ask_and_all_four_stages_stream_in(qtbot, make_window, settings, image_file):
    window = make_window(settings)
    drop_files(window.image_pane, [image_file])
    assert window.image_pane.current() is not None
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        ask_by_keyboard(qtbot, window, "How many red circles?")
        assert window.busy and window.question_box.stop_button.isEnabled()
    view: RunView = blocker.args[0]
    assert view.status is RunStatus.FINISHED
    for stage in STAGES:
        card = window.reasoning.card(stage)
        assert view.stages[stage].text
        assert view.stages[stage].text in card.text_shown()
        assert len(view.stages[stage].segments[-1].candidates) == 2
    assert not window.busy and not window.question_box.stop_button.isEnabled()
    assert "total" in window.timing_label.full_text()
    assert window.model_label.text().startswith(settings.model.name)


def test_the_candidates_view_shows_n_candidates_and_the_winner(
        qtbot, make_window, settings, image_file):
    window = make_window(tuned(settings, beam=3))
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS):
        window.ask("What is red?")
    card = window.reasoning.card(Stage.CAPTION)
    card.candidates_button.click()
    view = card.candidates_view
    assert view.isVisible()
    assert len(view.columns()) == 3
    assert sum(column.chosen for column in view.columns()) == 1
    assert "Round 1" in view.why_text()  # the judge's verdicts, with their reasons


def test_stop_mid_stream_keeps_what_was_written(qtbot, make_window, settings, image_file):
    window = make_window(tuned(settings, max_stage_tokens=1024, beam=2, n_ctx=16384))
    window.image_pane.open_file(image_file)
    window.ask("Describe everything.")
    qtbot.waitUntil(lambda: bool(window.view.stages[Stage.SUMMARY].text), timeout=ANSWER_MS)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    view: RunView = blocker.args[0]
    assert view.status is RunStatus.CANCELLED
    assert view.stages[Stage.SUMMARY].text
    assert view.stages[Stage.CONCLUSION].status.value in ("waiting", "stopped")
    assert window.history.entries()[0].status == "cancelled"
    from stagewise.desktop.stage_cards import NOT_WRITTEN

    if view.stages[Stage.CONCLUSION].status.value == "waiting":  # honest after Stop
        card = window.reasoning.card(Stage.CONCLUSION)
        assert card.text.placeholderText() == NOT_WRITTEN


def test_closing_mid_answer_stops_the_engine_thread(qtbot, make_window, settings, image_file):
    window = make_window(tuned(settings, max_stage_tokens=1024, n_ctx=16384))
    window.image_pane.open_file(image_file)
    window.ask("Describe everything.")
    qtbot.waitUntil(lambda: bool(window.view.stages[Stage.SUMMARY].text), timeout=ANSWER_MS)
    window.close()
    assert window.engine_stopped


def test_history_survives_a_new_window_and_restores_the_full_view(
        qtbot, make_window, settings, image_file):
    window = make_window(settings)
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        window.ask("Which shape is blue?")
    live: RunView = blocker.args[0]
    window.close()

    again = make_window(settings)
    entries = again.history.entries()
    assert [e.question for e in entries] == ["Which shape is blue?"]
    assert again.history_panel.list.count() == 1
    again.history_panel.list.item(0).setSelected(True)
    assert again.question_box.question() == "Which shape is blue?"
    assert again.image_pane.current() is not None
    assert again.image_pane.current().data == image_file.read_bytes()
    for stage in STAGES:
        assert again.shown.stages[stage].text == live.stages[stage].text
        assert live.stages[stage].text in again.reasoning.card(stage).text_shown()
        restored, original = again.shown.stages[stage].segments, live.stages[stage].segments
        assert [len(s.candidates) for s in restored] == [len(s.candidates) for s in original]
        assert [s.chosen for s in restored] == [s.chosen for s in original]
        assert [[v.reason for v in s.verdicts] for s in restored] == \
               [[v.reason for v in s.verdicts] for s in original]


def test_export_writes_readable_files(qtbot, make_window, settings, image_file, tmp_path):
    window = make_window(settings)
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        window.ask("What colour is the circle?")
    view: RunView = blocker.args[0]
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS):
        window.ask("And the square?")
    ids = [e.id for e in window.history.entries()]
    assert len(ids) == 2
    window.history_panel.list.selectAll()
    assert sorted(window.history_panel.selected_ids()) == sorted(ids)
    data = json.loads(window.export_runs(ids, tmp_path / "out.json").read_text())
    questions = {run["question"]: run for run in data["runs"]}
    assert set(questions) == {"What colour is the circle?", "And the square?"}
    assert questions["What colour is the circle?"]["result"]["stages"]["conclusion"] == \
        view.conclusion
    html = window.export_runs(ids, tmp_path / "out.html").read_text()
    assert "data:image/png;base64," in html and "What colour is the circle?" in html
    markdown = window.export_runs(ids, tmp_path / "out.md").read_text()
    assert "What colour is the circle?" in markdown


def test_bad_drops_say_why_and_keep_the_image(qtbot, make_window, settings, image_file,
                                              tmp_path):
    window = make_window(settings)
    drop_files(window.image_pane, [image_file])
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    drop_files(window.image_pane, [notes])
    assert "not an image" in window.image_pane.message()
    assert window.image_pane.current().data == image_file.read_bytes()
    drop_files(window.image_pane, [tmp_path])
    assert "folder" in window.image_pane.message()


def test_asking_without_an_image_says_so(qtbot, make_window, settings):
    window = make_window(settings)
    assert not window.ask("What is this?")
    assert "image" in window.message.text()
    assert not window.question_box.ask_button.isEnabled()


def test_a_failed_run_is_shown_and_saved_as_failed(qtbot, make_window, settings, image_file):
    window = make_window(tuned(settings, n_ctx=2048, max_stage_tokens=1024, beam=4))
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        window.ask("Describe everything.")
    view: RunView = blocker.args[0]
    assert view.status is RunStatus.FAILED
    assert "full" in view.error
    assert "failed" in window.message.text()
    assert window.history.entries()[0].status == "failed"


def test_a_history_that_cannot_be_written_costs_a_notice_not_the_answer(
        qtbot, make_window, settings, folders, image_file):
    folders["history_folder"].write_text("a file where the history folder should be")
    window = make_window(settings)
    window.image_pane.open_file(image_file)
    with (qtbot.waitSignal(window.host.worker.run_started, timeout=ANSWER_MS) as started,
          qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker):
        window.ask("Which shape is blue?")
    assert started.args == [-1]  # not saved
    view: RunView = blocker.args[0]
    assert view.status is RunStatus.FINISHED and view.stages[Stage.CONCLUSION].text
    assert window.message.text().startswith("This answer will not be saved in the history: ")


def test_settings_and_window_geometry_are_remembered(qtbot, make_window, settings, folders):
    window = make_window(settings)
    window.resize(780, 520)  # the offscreen screen is 800 × 600
    window.question_box.beam.setValue(5)
    window.close()
    from stagewise.models.storage.app_settings import load_settings

    saved = load_settings(folders["settings_path"])
    assert saved.search.beam == 5
    assert saved.window_geometry
    again = make_window(saved)
    assert again.question_box.beam.value() == 5
    assert (again.width(), again.height()) == (780, 520)


def _run(args: list[str], tmp_path: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               STAGEWISE_DATA_DIR=str(tmp_path / "data"),
               STAGEWISE_CONFIG_DIR=str(tmp_path / "config"))
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


def test_self_test_answers_and_saves_a_screenshot(tiny_pair, tmp_path):
    shot = tmp_path / "window.png"
    done = _run([sys.executable, "-m", "stagewise.desktop", "--self-test", "--screenshot",
                 str(shot), "--model", str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj)],
                tmp_path)
    assert done.returncode == 0, done.stderr
    assert "all four stages arrived" in done.stdout
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "QThread" not in done.stderr


def test_self_test_can_show_a_stages_candidates_for_its_screenshot(tmp_path):
    shot = tmp_path / "candidates.png"  # the built-in demo model: short answers at beam 2
    done = _run([sys.executable, "-m", "stagewise.desktop", "--self-test", "--beam", "2",
                 "--show-candidates", "caption", "--screenshot", str(shot)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "; 2 caption candidates shown" in done.stdout
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    alone = _run([sys.executable, "-m", "stagewise.desktop", "--show-candidates", "caption"],
                 tmp_path)
    assert alone.returncode == 2 and "go with --self-test" in alone.stderr


def test_self_test_fails_on_a_broken_model(tiny_pair, tmp_path):
    broken = tmp_path / "broken-model.gguf"
    broken.write_bytes(tiny_pair.model.read_bytes()[:5000])
    done = _run([sys.executable, "-m", "stagewise.desktop", "--self-test", "--model", str(broken),
                 "--mmproj", str(tiny_pair.mmproj), "--timeout", "60"], tmp_path)
    assert done.returncode == 1
    assert "could not be loaded" in done.stderr


def test_closing_mid_answer_in_a_real_process_is_clean(tiny_pair, image_file, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from dataclasses import replace
        from pathlib import Path
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from stagewise.desktop.main_window import MainWindow
        from stagewise.models.inference.engine_settings import EngineSettings
        from stagewise.models.reasoning.search_settings import SearchSettings
        from stagewise.models.storage.app_settings import AppSettings
        from stagewise.models.stages import Stage
        app = QApplication([])
        settings = AppSettings(model=Path({str(tiny_pair.model)!r}),
                               mmproj=Path({str(tiny_pair.mmproj)!r}),
                               search=SearchSettings(beam=2, max_stage_tokens=1024),
                               auto_beam=False,
                               engine=EngineSettings(n_ctx=16384))
        window = MainWindow(settings)
        window.show()
        window.image_pane.open_file({str(image_file)!r})
        window.ask("Describe everything.")
        window.answer_done.connect(lambda view: (print("ended", view.status), app.quit()))
        def close_when_streaming():
            if window.view.stages[Stage.SUMMARY].text:
                window.close()
                print("closed while", window.view.status.value)
                app.quit()
            else:
                QTimer.singleShot(5, close_when_streaming)
        QTimer.singleShot(5, close_when_streaming)
        app.exec()
        del window
        print("exited cleanly")
    """)
    done = _run([sys.executable, "-c", script], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "closed while running" in done.stdout and "exited cleanly" in done.stdout
    assert "QThread" not in done.stderr and "Destroyed" not in done.stderr


def test_an_image_pasted_into_the_question_goes_to_the_image(qtbot, make_window, settings,
                                                             image_file):
    window = make_window(settings)
    edit = window.question_box.edit
    edit.setFocus()
    qtbot.keyClicks(edit, "What is this?")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image_file))])
    QApplication.clipboard().setMimeData(mime)
    edit.paste()
    assert window.image_pane.current().data == image_file.read_bytes()
    assert window.question_box.question() == "What is this?"
    QApplication.clipboard().setText("red?")
    edit.paste()
    assert window.question_box.question() == "What is this?red?"


def test_a_broken_model_is_reported_and_asking_says_why(qtbot, settings, folders, image_file,
                                                         tmp_path):
    broken = tmp_path / "broken-model.gguf"
    broken.write_bytes(settings.model.read_bytes()[:5000])
    window = MainWindow(replace(settings, model=broken), **folders)
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: "could not be loaded" in window.message.text(),
                        timeout=ANSWER_MS)
        assert "broken-model.gguf" in window.message.text()
        assert window.model_label.text() == "No model loaded"
        window.image_pane.open_file(image_file)
        with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
            window.ask("What is this?")
        assert blocker.args[0].status is RunStatus.FAILED
        assert "failed" in window.message.text() and "broken-model.gguf" in window.message.text()
        assert not window.busy
    finally:
        window.close()


def test_new_settings_load_the_new_model_and_are_saved(qtbot, make_window, settings, folders,
                                                       tmp_path):
    from stagewise.models.build.tiny_vlm import TINY, write_tiny_pair
    from stagewise.models.storage.app_settings import load_settings

    window = make_window(settings)
    other = write_tiny_pair(tmp_path / "other", TINY, seed=1)
    renamed = other.model.with_name("other-model.gguf")
    other.model.rename(renamed)
    with qtbot.waitSignal(window.host.worker.model_loaded, timeout=ANSWER_MS) as blocker:
        window.apply_settings(replace(settings, model=renamed, mmproj=other.mmproj,
                                      stages_collapsed=True))
    assert blocker.args[0].name == "other-model.gguf"
    # the window's own slot may run after the test's: wait for its state, not a time
    qtbot.waitUntil(lambda: window.model_label.text().startswith("other-model.gguf"),
                    timeout=ANSWER_MS)
    assert window.reasoning.card(Stage.SUMMARY).is_collapsed()
    assert not window.reasoning.card(Stage.CONCLUSION).is_collapsed()
    assert load_settings(folders["settings_path"]).model == renamed


def test_ctrl_c_in_the_terminal_closes_the_window_cleanly(tiny_pair, tmp_path):
    import signal
    import time

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               STAGEWISE_DATA_DIR=str(tmp_path / "data"),
               STAGEWISE_CONFIG_DIR=str(tmp_path / "config"))
    process = subprocess.Popen(
        [sys.executable, "-m", "stagewise.desktop", "--model", str(tiny_pair.model), "--mmproj",
         str(tiny_pair.mmproj)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    database = tmp_path / "data" / "history" / "history.sqlite3"
    deadline = time.monotonic() + 60
    while not database.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the event loop is running
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "QThread" not in err
    assert (tmp_path / "config" / "settings.json").is_file()


def test_a_damaged_history_is_set_aside_and_the_window_still_answers(
        qtbot, make_window, settings, folders, image_file):
    folders["history_folder"].mkdir(parents=True)
    (folders["history_folder"] / "history.sqlite3").write_bytes(b"not sqlite at all" * 100)
    window = make_window(settings)
    assert "damaged" in window.message.text()
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        window.ask("Still working?")
    assert blocker.args[0].status is RunStatus.FINISHED
    assert [e.question for e in window.history.entries()] == ["Still working?"]


def test_changing_the_beam_width_does_not_reload_the_model(qtbot, make_window, settings,
                                                           image_file):
    window = make_window(tuned(settings, beam=1))
    loads: list[str] = []
    window.host.worker.model_loading.connect(loads.append)
    window.image_pane.open_file(image_file)
    for beam in (1, 4, 16):
        window.question_box.beam.setValue(beam)
        with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
            window.ask("How many?")
        view: RunView = blocker.args[0]
        assert view.status is RunStatus.FINISHED
        assert len(view.stages[Stage.SUMMARY].segments[-1].candidates) == beam
    assert loads == []


def test_a_model_that_cannot_fit_is_refused_before_loading(qtbot, make_window, settings):
    from stagewise.models.hardware import Hardware

    window = make_window(settings)
    window.host.worker._hardware = Hardware(devices=(), gpu_offload=False, ram_total=2**20,
                                            ram_available=2**19, cpu_count=2)
    with qtbot.waitSignal(window.host.worker.model_failed, timeout=ANSWER_MS) as failed:
        window.apply_settings(tuned(settings, n_ctx=8192))
    assert "does not fit this machine" in failed.args[0]
    # the window's own slot may run after the test's: wait for its state, not a time
    qtbot.waitUntil(lambda: "could not be loaded" in window.message.text(), timeout=ANSWER_MS)
    assert window.model_label.text() == "No model loaded"


def test_help_diagnostics_opens_the_doctors_report(qtbot, make_window, settings):
    window = make_window(settings)
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    action = next(a for a in help_menu.actions() if a.text() == "&Diagnostics…")
    action.trigger()
    from stagewise.desktop.diagnostics_dialog import DiagnosticsDialog

    dialog = window.findChild(DiagnosticsDialog)
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.ready, timeout=ANSWER_MS * 5)
    assert str(settings.model) in dialog.text.toPlainText()  # the window's own settings
    dialog.close()


def test_a_new_image_starts_a_new_question(qtbot, make_window, settings, image_file,
                                           tmp_path):
    """The previous image's answer goes; the keyboard goes to the question box."""
    from PIL import Image

    window = make_window(settings)
    assert window.focusWidget() is window.question_box.edit  # at launch, not the search
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS):
        window.ask("How many red circles?")
    assert window.shown.stages[Stage.CONCLUSION].text
    window.history_panel.list.item(0).setSelected(True)  # looking at the saved answer
    other = tmp_path / "other.png"
    Image.new("RGB", (64, 64), "green").save(other)
    window.history_panel.search.setFocus()
    window.image_pane.open_file(other)
    assert not any(v.text for v in window.shown.stages.values())  # not the other's answer
    assert all(not window.reasoning.card(stage).text_shown().strip() or
               "appears here" in window.reasoning.card(stage).text_shown()
               for stage in STAGES)
    assert not window.history_panel.list.selectedItems()
    assert window.focusWidget() is window.question_box.edit


def test_enter_without_an_image_says_why(qtbot, make_window, settings):
    window = make_window(settings)
    window.question_box.edit.setFocus()
    qtbot.keyClicks(window.question_box.edit, "What is this?")
    qtbot.keyClick(window.question_box.edit, Qt.Key.Key_Return)
    assert window.message.isVisible() or not window.message.isHidden()
    assert "image first" in window.message.text()
    assert not window.busy


def test_the_conclusion_says_when_a_verdict_named_neither_or_all_failed(
        qtbot, make_window, settings, image_file):
    """The tiny random model's verdicts rarely name a response: they are read as the
    reference reads them, and the answer says so under the conclusion (live, and restored
    from the history)."""
    window = make_window(settings)
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        window.ask("How many red circles?")
    view: RunView = blocker.args[0]
    unread = [v for seg in view.segments for v in seg.verdicts if v.unread]
    assert unread, "the tiny model was expected to write verdicts that name neither"
    card = window.reasoning.card(Stage.CONCLUSION)
    assert "named neither" in card.doubt_text()
    assert card.doubt_text() == "⚠ " + " ".join(view.cautions())
    window.new_question()
    assert card.doubt_text() == ""
    window.history_panel.list.item(0).setSelected(True)
    assert "named neither" in card.doubt_text()


def test_history_rows_show_the_answer_beam_and_model_and_restore_the_search(
        qtbot, make_window, settings, image_file):
    window = make_window(tuned(settings, beam=3, select="logprob"))
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        window.ask("Which shape is blue?")
    view: RunView = blocker.args[0]
    row = window.history_panel.list.item(0).text()
    conclusion = " ".join(view.stages[Stage.CONCLUSION].text.split())
    assert "beam 3" in row and settings.model.name in row
    assert f"→ {conclusion[:20]}" in row
    window.question_box.beam.setValue(1)  # asked since with other settings
    window.settings = tuned(window.settings, beam=1, select="judge")
    window.history_panel.list.clearSelection()
    window.history_panel.list.item(0).setSelected(True)
    assert window.settings.search.beam == 3 and window.settings.search.select == "logprob"
    assert window.question_box.beam.value() == 3


def test_beam_auto_keeps_the_width_it_chose_and_restores_it(qtbot, make_window, settings,
                                                            image_file):
    window = make_window(replace(settings, auto_beam=True))  # the set width (2) is kept aside
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        window.ask("Which shape is blue?")
    result = blocker.args[0].result
    assert result.beam == 1  # auto's first answer is a single pass
    saved = window.history.load(window.history.entries()[0].id).settings
    assert saved["auto_beam"] is True and saved["version"] == 3
    assert saved["search"]["beam"] == 1 and saved["search"]["seed"] == result.seed
    assert saved["model"] == str(settings.model) and "window_geometry" not in saved
    window.history_panel.list.clearSelection()
    window.history_panel.list.item(0).setSelected(True)  # ask again as it was asked
    assert not window.settings.auto_beam and window.settings.search.beam == 1
    assert window.question_box.beam.value() == 1


def test_a_follow_up_about_the_open_image_does_not_encode_it_again(qtbot, make_window,
                                                                    settings, image_file):
    window = make_window(settings)
    window.image_pane.open_file(image_file)
    views = []
    for question in ("How many red circles?", "Which shape is blue?"):
        with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
            window.ask(question)
        views.append(blocker.args[0])
    # encoded once, when it was opened: neither question encodes it
    assert [v.result.timings.image_encodes for v in views] == [0, 0]
    assert window.host.worker._session.engine.stats.image_encodes == 1
    assert [e.question for e in window.history.entries()] == ["Which shape is blue?",
                                                             "How many red circles?"]


def test_the_demo_model_says_what_it_knows_and_leads_to_a_real_model(
        qtbot, make_window, settings, monkeypatch):
    from stagewise.desktop.demo_notice import TEXT

    window = make_window(replace(settings, model=None, mmproj=None))
    notice = window.demo_notice
    qtbot.waitUntil(lambda: window.model_setup is not None)
    window.welcome.dismiss()  # with no real model the get-a-model panel stands in for it
    assert notice.isVisible() and notice.label.text() == TEXT
    opened = []
    monkeypatch.setattr(window, "open_models", lambda: opened.append(True))
    notice.get_model.disconnect()
    notice.get_model.connect(window.open_models)
    qtbot.mouseClick(notice.button, Qt.MouseButton.LeftButton)
    assert opened
    qtbot.mouseClick(notice.close_button, Qt.MouseButton.LeftButton)
    assert not notice.isVisible()
    notice.show_for(True)  # the demo loads again (new settings): it stays hidden
    assert not notice.isVisible()


def test_no_demo_notice_with_a_real_model(make_window, settings):
    window = make_window(settings)
    assert not window.demo_notice.isVisible()


def test_help_has_getting_started_and_every_shortcut(qtbot, make_window, settings,
                                                     monkeypatch):
    from stagewise.desktop import settings_dialog

    window = make_window(settings)
    keys = window.open_help("keys")
    text = keys.browser.toPlainText()
    for command, shortcut in (("Open Image", "Ctrl+O"), ("Stop", "Esc"), ("Models", "Ctrl+M"),
                              ("Keyboard Shortcuts", "Ctrl+/")):
        assert command in text and shortcut in text
    started = window.open_help("started")
    assert "Getting started" in started.browser.toPlainText()
    # the menus' own commands open them (and Preferences, with the triggered argument)
    shown: list[object] = []
    monkeypatch.setattr(settings_dialog.SettingsDialog, "exec", lambda d: shown.append(d) or 0)
    for menu_action in window.menuBar().actions():
        for act in menu_action.menu().actions():
            if act.text().replace("&", "") in ("Preferences…", "Getting Started"):
                act.trigger()
    assert len(shown) == 1


def test_a_first_run_window_fits_a_small_screen():
    from PySide6.QtCore import QMargins, QSize

    from stagewise.desktop.main_window import FIRST_SIZE
    from stagewise.desktop.widgets import fitted_size

    frame = QMargins(4, 30, 4, 4)  # a title bar and a thin border
    assert fitted_size(FIRST_SIZE, QSize(1024, 610), frame) == QSize(1016, 576)
    assert fitted_size(FIRST_SIZE, QSize(1920, 1050), frame) == QSize(1280, 800)


def test_the_image_button_opens_an_image_for_the_question(qtbot, make_window, settings,
                                                          image_file, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    window = make_window(settings)
    asked: list[str] = []
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        lambda *args, **kw: (asked.append(args[1]) or [str(image_file)], ""))
    assert window.question_box.attach_button.isVisible()
    qtbot.mouseClick(window.question_box.attach_button, Qt.MouseButton.LeftButton)
    assert asked == ["Open Image"]
    assert window.image_pane.current() is not None
    assert window.image_pane.current().data == image_file.read_bytes()


def test_several_images_chosen_in_the_open_dialog_are_one_question(
        qtbot, make_window, settings, image_file, tmp_path, monkeypatch):
    from PIL import Image
    from PySide6.QtWidgets import QFileDialog

    window = make_window(settings)
    other = tmp_path / "other.png"
    Image.new("RGB", (20, 20), (0, 0, 200)).save(other)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        lambda *args, **kw: ([str(image_file), str(other)], ""))
    window.open_image()
    assert [image.name for image in window.image_pane.images()] == [image_file.name, "other.png"]
    # the tiny model's family takes one image: asking says so in one line, nothing is kept
    window.ask("Which one?")
    view = wait_answer(qtbot, window)
    assert view.status is RunStatus.FAILED
    assert "takes one image per question, not 2" in view.error
    assert window.history.entries() == []
