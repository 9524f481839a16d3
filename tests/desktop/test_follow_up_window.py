"""Follow-up questions in the real window, offscreen, with the tiny model through real
llama.cpp and a real history: ask → follow-up → the history shows one thread → restore."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox

from stagewise.desktop.follow_ups import ThreadView
from stagewise.desktop.history_panel import THREAD_INDENT, THREAD_ROLE
from stagewise.models.events import SearchResult, Timings
from stagewise.models.reasoning.conversation import Turn
from stagewise.models.reasoning.run_view import RunStatus, RunView
from stagewise.models.stages import Stage
from tests.desktop import test_main_window as shared
from tests.desktop.test_main_window import ANSWER_MS, ask_by_keyboard

# the real window's settings, shared with its own tests (make_window: conftest)
settings = shared.settings


def asked(qtbot, window, question: str) -> RunView:
    window.question_box.set_question("")  # the last question stays in the box
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        ask_by_keyboard(qtbot, window, question)
    view: RunView = blocker.args[0]
    assert view.result is not None and view.result.status == "finished"
    return view


def prompts_of(window) -> list[str]:
    """The prompts the window's engine tokenizes from now on (it runs in the engine
    thread; the list is only read once an answer is done)."""
    engine = window.host.worker._session.engine
    seen: list[str] = []
    real = engine.tokenize_prompt

    def spy(prompt, bitmap, plain=()):
        seen.append(prompt)
        return real(prompt, bitmap, plain)

    engine.tokenize_prompt = spy
    return seen


def rows(window) -> list[tuple[str, int, int]]:
    """The history list: each row's first line, run id and thread."""
    items = [window.history_panel.list.item(i)
             for i in range(window.history_panel.list.count())]
    return [(item.text().splitlines()[0], item.data(Qt.ItemDataRole.UserRole),
             item.data(THREAD_ROLE)) for item in items]


def test_ask_follow_up_one_thread_in_history_and_restore(qtbot, make_window, settings,
                                                          image_file, tmp_path):
    window = make_window(settings)
    box, thread_view = window.question_box, window.thread_view
    window.image_pane.open_file(image_file)
    assert not box.follow_up.isEnabled() and not box.follow_up.isChecked()
    assert thread_view.isHidden()

    first = asked(qtbot, window, "How many circles?")
    conclusion = first.conclusion.strip()
    assert conclusion, "the tiny model was expected to write a conclusion"
    # after the first answer about this image the follow-up box can be ticked; only the
    # person asking ticks it
    assert box.follow_up.isVisible() and box.follow_up.isEnabled()
    assert not box.follow_up.isChecked()
    assert thread_view.isVisible() and "How many circles?" in thread_view.label.text()
    qtbot.mouseClick(box.follow_up, Qt.MouseButton.LeftButton)
    assert box.follow_up.isChecked()

    seen = prompts_of(window)
    follow = asked(qtbot, window, "Why is it red?")
    t = follow.result.timings
    assert t.image_encodes == 0 and t.earlier_turns == 1 and t.dropped_turns == 0
    prompt = seen[-1]
    at = [prompt.index(text) for text in ("How many circles?", conclusion, "Why is it red?")]
    assert at == sorted(at) and prompt.count("How many circles?") == 1

    # untick: a plain question asked again, in the same thread, without the earlier turns
    qtbot.mouseClick(box.follow_up, Qt.MouseButton.LeftButton)
    assert not box.follow_up.isChecked()
    again = asked(qtbot, window, "Which shape is blue?")
    assert again.result.timings.earlier_turns == 0
    assert again.result.timings.image_encodes == 0
    assert "How many circles?" not in seen[-1]

    # the history: one thread, its questions together, oldest first, the later indented
    listed = rows(window)
    assert [r[0] for r in listed] == ["How many circles?", f"{THREAD_INDENT}Why is it red?",
                                      f"{THREAD_INDENT}Which shape is blue?"]
    assert len({r[2] for r in listed}) == 1 and listed[0][2] == listed[0][1]
    detail = window.history_panel.list.item(1).text().splitlines()[1]
    assert "follow-up" in detail
    assert "asked again" in window.history_panel.list.item(2).text()
    thread = window.history.thread(listed[2][1])
    assert [e.follow_up for e in thread] == [False, True, False]

    # a new image: a new thread, no follow-up
    other = tmp_path / "other.png"
    Image.new("RGB", (64, 64), "green").save(other)
    window.image_pane.open_file(other)
    assert not box.follow_up.isEnabled() and not box.follow_up.isChecked()
    assert thread_view.isHidden()
    asked(qtbot, window, "What colour is it?")
    listed = rows(window)
    assert listed[0][0] == "What colour is it?" and listed[0][2] != listed[1][2]

    # restoring the first thread's follow-up shows its thread, and a follow-up goes on
    window.history_panel.list.clearSelection()
    row = next(i for i, r in enumerate(rows(window)) if r[0].endswith("Why is it red?"))
    window.history_panel.list.item(row).setSelected(True)
    assert box.question() == "Why is it red?"
    assert window.image_pane.current().data == image_file.read_bytes()
    text = thread_view.label.text()
    assert thread_view.isVisible()
    assert all(q in text for q in ("How many circles?", "Why is it red?",
                                   "Which shape is blue?"))
    assert window.shown.conclusion == follow.conclusion
    assert box.follow_up.isEnabled() and not box.follow_up.isChecked()  # a restore unticks
    qtbot.mouseClick(box.follow_up, Qt.MouseButton.LeftButton)
    more = asked(qtbot, window, "And the square?")
    assert more.result.timings.earlier_turns == 3
    assert [e.question for e in window.history.thread(listed[-1][1])] == [
        "How many circles?", "Why is it red?", "Which shape is blue?", "And the square?"]


def ended(status: RunStatus, conclusion: str) -> RunView:
    view = RunView()
    view.stages[Stage.CONCLUSION].text = conclusion
    view.status = status
    return view


def test_the_follow_up_box_follows_the_thread(qtbot):
    box = QCheckBox("Follow-up")
    view = ThreadView(box)
    qtbot.addWidget(view)
    assert not box.isEnabled() and view.isHidden()
    assert view.job_fields("First?") == {"earlier": (), "thread": None}
    view.answered(7, ended(RunStatus.CANCELLED, "half an ans"))
    assert not box.isEnabled()  # a stopped answer gives nothing to follow up on
    assert view.job_fields("Second?") == {"earlier": (), "thread": 7}
    view.answered(8, ended(RunStatus.FINISHED, "Two <b>circles</b>."))
    assert box.isEnabled() and not box.isChecked()  # available, not ticked for the person
    assert view.job_fields("Plain first?")["earlier"] == ()
    assert "&lt;b&gt;" in view.label.text()  # answers are shown as text
    box.setChecked(True)
    assert view.job_fields("Why?") == {"earlier": (Turn("Second?", "Two <b>circles</b>."),),
                                       "thread": 8}
    box.setChecked(False)  # the person's choice holds for the next answers
    view.answered(-1, ended(RunStatus.FINISHED, "Because."))
    assert not box.isChecked()
    assert view.job_fields("Plain?")["earlier"] == ()
    assert view.job_fields("Plain?")["thread"] == 8  # the last saved run of the thread
    short = ended(RunStatus.FINISHED, "Left out.")
    short.result = SearchResult("Long thread?", "stage", 1, "judge", 0, "prompted",
                                "finished", "", {}, (), (), (), (),
                                Timings(earlier_turns=1, dropped_turns=2))
    view.job_fields("Long thread?")
    view.answered(9, short)
    assert "oldest 2 of the earlier questions were left out" in view.label.text()
    view.forget([8, 9])
    assert [t.run_id for t in view.turns] == [7, -1]
    view.new_image()
    assert view.turns == [] and not box.isEnabled() and not box.isChecked()


def test_no_follow_ups_while_a_server_answers(qtbot):
    """A server answers each question on its own, so the box stays off and says why."""
    box = QCheckBox("Follow-up")
    view = ThreadView(box)
    qtbot.addWidget(view)
    view.set_supported(False)
    view.job_fields("First?")
    view.answered(1, ended(RunStatus.FINISHED, "Two."))
    assert not box.isEnabled() and not box.isChecked()
    assert "server" in box.toolTip()
    assert view.job_fields("Why?")["earlier"] == ()
    view.set_supported(True)  # back to a model on this computer
    assert box.isEnabled()
