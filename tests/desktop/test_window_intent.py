"""The window keeps the person's intent (issue 30, points 2, 3 and 8), in the real window,
offscreen, with the tiny model through real llama.cpp and a real history: follow-up only
when ticked, a new image's keystrokes replace the old question, a restore says what it
changed, the history searches every stage, closing mid-answer asks, and a tiny picture is
shown enlarged with sharp pixels."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QMessageBox

from stagewise.desktop.image_view import SHARP_FROM
from stagewise.desktop.main_window import MainWindow
from stagewise.models.library.demo import example_image
from stagewise.models.reasoning.run_view import RunStatus, RunView
from stagewise.models.stages import STAGES, Stage
from tests.desktop import test_main_window as shared
from tests.desktop.test_main_window import ANSWER_MS, ask_by_keyboard, tuned

# the real window's settings, shared with its own tests (make_window: conftest)
settings = shared.settings


def answered(qtbot, window: MainWindow, question: str) -> RunView:
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        assert window.ask(question)
    view: RunView = blocker.args[0]
    assert view.status is RunStatus.FINISHED
    return view


def select_row(window: MainWindow, run_id: int) -> None:
    panel = window.history_panel
    panel.list.clearSelection()
    row = next(i for i in range(panel.list.count())
               if panel.list.item(i).data(Qt.ItemDataRole.UserRole) == run_id)
    panel.list.item(row).setSelected(True)


# -- point 2: Follow-up is on only when the person turns it on --------------------------------

def test_follow_up_is_never_ticked_for_the_person(qtbot, make_window, settings, image_file,
                                                  tmp_path):
    window = make_window(settings)
    box = window.question_box.follow_up
    window.image_pane.open_file(image_file)
    answered(qtbot, window, "How many circles?")
    assert box.isEnabled() and not box.isChecked()  # offered, not ticked
    plain = answered(qtbot, window, "And how many squares?")
    assert plain.result.timings.earlier_turns == 0  # a plain question, as typed
    assert not box.isChecked()

    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)  # the person ticks it: it holds
    follow = answered(qtbot, window, "Why?")
    follow_id = window.history.entries()[0].id
    assert follow.result.timings.earlier_turns == 2 and box.isChecked()

    other = tmp_path / "other.png"
    Image.new("RGB", (48, 48), "green").save(other)
    window.image_pane.open_file(other)  # a new image: off
    assert not box.isChecked()

    select_row(window, follow_id)  # a past thread: offered, not ticked
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)
    assert box.isChecked()
    select_row(window, window.history.entries()[-1].id)  # a restore: off again
    assert box.isEnabled() and not box.isChecked()
    again = answered(qtbot, window, "Once more?")
    assert again.result.timings.earlier_turns == 0


# -- point 3: a new image's keystrokes replace the old question; a restore says what changed --

def test_typing_after_a_new_image_replaces_the_old_question(qtbot, make_window, settings,
                                                           image_file, tmp_path):
    window = make_window(settings)
    window.image_pane.open_file(image_file)
    ask_by_keyboard(qtbot, window, "And how many squares?")
    qtbot.waitUntil(lambda: not window.busy, timeout=ANSWER_MS)
    sign = tmp_path / "sign.png"
    Image.new("RGB", (200, 100), "white").save(sign)
    window.image_pane.open_file(sign)
    edit = window.question_box.edit
    assert edit.hasFocus() and edit.textCursor().selectedText() == "And how many squares?"
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS):
        ask_by_keyboard(qtbot, window, "What does the sign say?")
    assert window.history.entries()[0].question == "What does the sign say?"

    edit.selectAll()  # a question typed first, then an image: it stays as typed
    qtbot.keyClicks(edit, "Which colour?")
    window.image_pane.open_file(image_file)
    assert not edit.textCursor().hasSelection()
    assert window.question_box.question() == "Which colour?"


def test_a_restore_says_what_it_changed(qtbot, make_window, settings, image_file):
    window = make_window(settings)  # beam 2
    window.image_pane.open_file(image_file)
    run = window.history.entries  # read after each answer
    answered(qtbot, window, "Which shape is blue?")
    first = run()[0].id
    window.question_box.beam.setValue(4)
    answered(qtbot, window, "Which shape is red?")

    select_row(window, first)  # asked at beam 2: the box had 4
    assert window.question_box.beam.value() == 2
    text = window.message.text()
    assert window.message.isVisible() and "Beam 2 (was 4)" in text
    assert "Temperature" not in text  # only what changed

    second = run()[0].id
    select_row(window, second)  # asked at beam 4
    assert window.question_box.beam.value() == 4 and "Beam 4 (was 2)" in window.message.text()
    select_row(window, first)
    select_row(window, first)  # restored twice: nothing changed the second time
    assert window.message.isHidden()


# -- point 8: the smaller gaps ----------------------------------------------------------------

def test_history_search_finds_words_of_every_stage(qtbot, make_window, settings, image_file):
    window = make_window(settings)
    window.image_pane.open_file(image_file)
    view = answered(qtbot, window, "Which shape is blue?")
    answered(qtbot, window, "Which shape is red?")
    outside = (view.conclusion + " which shape is blue? red").casefold()
    words = [w for stage in STAGES[:-1] for w in view.stages[stage].text.split()
             if len(w) >= 4 and w.casefold() not in outside
             and w.casefold() not in window.history.entries()[0].conclusion.casefold()]
    assert words, f"the tiny model wrote no word to search for: {view.stages}"
    panel = window.history_panel
    panel.search.setText(words[0])
    qtbot.waitUntil(lambda: panel.list.count() >= 1
                    and panel.list.item(0).text().startswith("Which shape is blue?"),
                    timeout=5000)
    panel.search.setText("no stage says qqqzzz")
    qtbot.waitUntil(lambda: panel.list.count() == 0, timeout=5000)


def _answer_close_question(qtbot, window: MainWindow, button_text: str) -> None:
    """Click ``button_text`` in the "Stop the answer?" box once it is open."""
    def click() -> None:
        box = window.close_question
        if box is None:
            QTimer.singleShot(10, click)
            return
        assert isinstance(box, QMessageBox) and box.isVisible()
        button = next(b for b in box.buttons() if b.text() == button_text)
        button.click()

    QTimer.singleShot(0, click)


def test_closing_mid_answer_asks_first(qtbot, make_window, settings, image_file):
    window = make_window(tuned(settings, max_stage_tokens=1024, n_ctx=16384))
    window.image_pane.open_file(image_file)
    window.ask("Describe everything.")
    qtbot.waitUntil(lambda: bool(window.view.stages[Stage.SUMMARY].text), timeout=ANSWER_MS)

    _answer_close_question(qtbot, window, "Keep Writing")
    assert not window.quit()
    assert window.isVisible() and not window.engine_stopped

    _answer_close_question(qtbot, window, "Stop and Close")
    assert window.quit()
    assert not window.isVisible() and window.engine_stopped


def test_quitting_while_idle_does_not_ask(qtbot, make_window, settings):
    window = make_window(settings)
    assert window.quit()  # nothing to lose: no box (a box would block this test)
    assert window.close_question is None and not window.isVisible()


def test_the_small_example_is_enlarged_with_sharp_pixels(qtbot, make_window, settings):
    window = make_window(settings)
    window.resize(800, 600)
    window.image_pane.open_file(example_image())
    pane = window.image_pane
    qtbot.waitUntil(lambda: pane.scale() >= SHARP_FROM)
    assert pane.scale() == int(pane.scale()) and pane.is_fitted()
    shown = pane.shown_size()
    assert shown.width() == 96 * pane.scale()
    assert f"shown at {pane.scale() * 100:.0f}%" in pane.caption()
