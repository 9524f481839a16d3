"""The reasoning view follows the answer: fed real runs of the tiny model event by event, it
keeps the stage being written in view unless the user scrolled away, folds finished stages to
one line with their time, and keeps the Conclusion in view (issue 20)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from stagewise.desktop.formatting import seconds_text
from stagewise.desktop.main_window import MainWindow
from stagewise.desktop.stage_cards import FOLLOW_MARGIN, NOT_WRITTEN, ReasoningPanel, StageCard
from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.events import (
    AnswerFinished,
    Event,
    SearchResult,
    SegmentChosen,
    SegmentStarted,
)
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.run_view import RunView, StageStatus
from stagewise.models.reasoning.search import StageSearch
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import STAGES, Stage
from stagewise.models.storage.app_settings import AppSettings
from tests.desktop.panel_runs import Search, search_runner, shown_panel, stream

QUESTION = "What is this?"
ANSWER_MS = 180_000  # a loaded CI machine
FIRST_THREE = (Stage.SUMMARY, Stage.CAPTION, Stage.REASONING)


@pytest.fixture(scope="module")
def search(engine: Engine, image: PreparedImage) -> Search:
    return search_runner(engine, image, QUESTION, max_stage_tokens=64)


@pytest.fixture
def panel(qtbot: QtBot) -> ReasoningPanel:
    """A short panel, so that a run's cards do not all fit and the view has to follow."""
    return shown_panel(qtbot, 420, 240)


def span(panel: ReasoningPanel, card: StageCard) -> tuple[int, int]:
    """The card's top and bottom in the panel's viewport (0 = the viewport's top edge)."""
    top = card.mapTo(panel.scroll.viewport(), QPoint(0, 0)).y()
    return top, top + card.height()


def settle(qtbot: QtBot, panel: ReasoningPanel, timeout_ms: int = 3000) -> None:
    """Wait until the cards' heights stop changing (a wrapped label takes its height for
    its width a layout pass later, and later still under load)."""
    def heights() -> list[int]:
        return [panel.card(stage).height() for stage in STAGES]

    waited, last = 0, heights()
    while waited < timeout_ms:
        qtbot.wait(100)
        waited += 100
        now = heights()
        if now == last:
            return
        last = now


def fully_in_view(panel: ReasoningPanel, card: StageCard) -> bool:
    top, bottom = span(panel, card)
    return top >= 0 and bottom <= panel.scroll.viewport().height()


def assert_shows_the_conclusion(panel: ReasoningPanel) -> None:
    """Once the run is over the Conclusion is in view: all of it if it fits, else its
    start."""
    top, bottom = span(panel, panel.card(Stage.CONCLUSION))
    if bottom - top + 2 * FOLLOW_MARGIN <= panel.scroll.viewport().height():
        assert fully_in_view(panel, panel.card(Stage.CONCLUSION))
    else:
        assert top == FOLLOW_MARGIN, (top, bottom)


def assert_follows(panel: ReasoningPanel, card: StageCard) -> None:
    """The card being written is in view: all of it if it fits, else its latest text."""
    height = panel.scroll.viewport().height()
    top, bottom = span(panel, card)
    if bottom - top + 2 * FOLLOW_MARGIN <= height:
        assert top >= 0 and bottom <= height, (card.stage, top, bottom, height)
    else:
        assert bottom + FOLLOW_MARGIN == height, (card.stage, top, bottom, height)


def wheel(panel: ReasoningPanel, notches: int) -> None:
    """The user turns the mouse wheel over the cards (positive: up, towards the start)."""
    viewport = panel.scroll.viewport()
    pos = QPointF(viewport.width() / 2, viewport.height() / 2)
    event = QWheelEvent(pos, viewport.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(viewport, event)


def test_the_view_follows_the_stage_being_written(panel: ReasoningPanel,
                                                  search: Search) -> None:
    followed: list[Stage] = []
    bar = panel.scroll.verticalScrollBar()

    def check(event: Event, _view: RunView) -> None:
        card = panel.writing_card()
        if card is None:
            return
        assert panel.is_following()
        assert_follows(panel, card)
        if bar.value() > 0:  # the view had to move to keep up
            followed.append(card.stage)

    stream(panel, search(), check)
    assert set(followed) >= {Stage.REASONING, Stage.CONCLUSION}, followed
    assert_shows_the_conclusion(panel)


def test_scrolling_away_stops_following_until_back_at_the_bottom(
        panel: ReasoningPanel, search: Search) -> None:
    bar = panel.scroll.verticalScrollBar()
    state = {"away_at": None, "left_behind": 0, "back": False}

    def user(event: Event, _view: RunView) -> None:
        card = panel.writing_card()
        if state["away_at"] is None and card is not None and card.stage is Stage.REASONING \
                and bar.value() > 0:
            wheel(panel, 2)  # up, to read what came before
            assert not panel.is_following()
            state["away_at"] = bar.value()
        elif state["away_at"] is not None and not state["back"]:
            assert bar.value() == state["away_at"]  # it stays where the user put it
            if card is not None and not fully_in_view(panel, card):
                state["left_behind"] += 1
            if isinstance(event, SegmentStarted) and event.unit is Stage.CONCLUSION:
                wheel(panel, -50)  # back down to the bottom: following again
                assert bar.value() == bar.maximum()
                assert panel.is_following()
                state["back"] = True
        elif state["back"] and card is not None:
            assert_follows(panel, card)

    stream(panel, search(), user)
    assert state["away_at"] is not None and state["back"]
    assert state["left_behind"] > 0  # the stream went on below while the view stayed put
    assert_shows_the_conclusion(panel)


def test_a_finished_stage_folds_to_one_line_with_its_time(panel: ReasoningPanel,
                                                         search: Search,
                                                         qtbot: QtBot) -> None:
    def check(event: Event, view: RunView) -> None:
        for stage in FIRST_THREE:
            status = view.stages[stage].status
            assert panel.card(stage).is_collapsed() == (status is StageStatus.CHOSEN), stage
        assert not panel.card(Stage.CONCLUSION).is_collapsed()

    view = stream(panel, search(), check)
    for stage in FIRST_THREE:
        card = panel.card(stage)
        seconds = view.stages[stage].seconds
        assert seconds is not None and seconds > 0
        assert card.is_collapsed() and not card.body.isVisible()
        assert card.title.text() == stage.title
        assert card.chip.isVisible() and card.status_text() == f"Chosen · {seconds_text(seconds)}"
        # one line: the preview of its text sits beside the title, not under it
        assert card.preview.isVisible()
        title, preview = card.title.geometry(), card.preview.geometry()
        assert title.top() <= preview.center().y() <= title.bottom()
        assert preview.left() > card.chip.geometry().right()
        assert card.header.height() < 2 * card.title.height()
        assert card.disclosure.arrowType() is Qt.ArrowType.RightArrow
    conclusion = panel.card(Stage.CONCLUSION)
    assert conclusion.body.isVisible() and conclusion.text_shown() == view.conclusion

    card = panel.card(Stage.CAPTION)
    qtbot.mouseClick(card.title, Qt.MouseButton.LeftButton)  # a click on the line opens it
    assert not card.is_collapsed() and card.body.isVisible()
    assert card.text_shown() == view.stages[Stage.CAPTION].text
    card.disclosure.setFocus()
    for key, collapsed in ((Qt.Key.Key_Return, True), (Qt.Key.Key_Space, False),
                           (Qt.Key.Key_Enter, True)):
        qtbot.keyClick(card.disclosure, key)
        assert card.is_collapsed() is collapsed, key
    # a run shown again (restored from history) looks like the one that just finished
    panel.show_run(RunView.from_result(_result(search())))
    assert [panel.card(s).is_collapsed() for s in STAGES] == [True, True, True, False]


def test_a_card_the_user_opened_or_watches_does_not_fold(panel: ReasoningPanel,
                                                       search: Search) -> None:
    caption, reasoning = panel.card(Stage.CAPTION), panel.card(Stage.REASONING)

    def user(event: Event, _view: RunView) -> None:
        if isinstance(event, SegmentStarted) and event.unit is Stage.CAPTION:
            caption.toggle_collapsed()  # the user closes and opens it again
            caption.toggle_collapsed()
        if isinstance(event, SegmentStarted) and event.unit is Stage.REASONING:
            reasoning.candidates_button.click()

    stream(panel, search(), user)
    assert not caption.is_collapsed() and not reasoning.is_collapsed()
    assert panel.card(Stage.SUMMARY).is_collapsed()


def test_after_stop_only_finished_stages_fold_and_the_rest_say_so(
        panel: ReasoningPanel, engine: Engine, image: PreparedImage) -> None:
    cancel = threading.Event()
    settings = SearchSettings(beam=2, max_stage_tokens=32, select="judge")
    events = StageSearch(LlamaBackend(engine), settings).run(image, QUESTION, cancel=cancel)

    def stop(event: Event, _view: RunView) -> None:
        if isinstance(event, SegmentChosen):
            cancel.set()

    view = stream(panel, events, stop)
    assert view.result is not None and view.result.status == "cancelled"
    assert panel.card(Stage.SUMMARY).is_collapsed()
    for stage in (Stage.CAPTION, Stage.REASONING, Stage.CONCLUSION):
        assert not panel.card(stage).is_collapsed(), stage
    assert panel.card(Stage.CAPTION).status_text() == "Stopped"
    assert panel.card(Stage.CONCLUSION).status_text() == "Not written"
    assert panel.card(Stage.CONCLUSION).text.placeholderText() == NOT_WRITTEN


@pytest.fixture
def small_window(qtbot: QtBot, tiny_pair: TinyPair,
                 tmp_path: Path) -> Iterator[MainWindow]:
    """The real window at 1024 × 640 with the tiny model, answering at length."""
    settings = AppSettings(model=tiny_pair.model, mmproj=tiny_pair.mmproj, auto_beam=False,
                           search=SearchSettings(beam=2, max_stage_tokens=96, select="logprob"),
                           engine=EngineSettings(threads=2, n_ctx=4096))
    window = MainWindow(settings, settings_path=tmp_path / "settings.json",
                        history_folder=tmp_path / "history")
    qtbot.addWidget(window)
    window.show()  # fitted to the offscreen screen (800 × 600) as it shows, so the size
    window.resize(1024, 640)  # of a 1024 × 640 screen is set after
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=ANSWER_MS)
    yield window
    window.close()


def test_the_conclusion_is_in_view_at_1024_by_640(qtbot: QtBot, small_window: MainWindow,
                                                  image_file: Path) -> None:
    window = small_window
    assert window.width() == 1024 and window.height() == 640
    panel = window.reasoning
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS):
        window.ask("What shapes are there?")
    conclusion = panel.card(Stage.CONCLUSION)
    # the last layout and scroll of the run settle (later under load than at rest)
    qtbot.waitUntil(lambda: fully_in_view(panel, conclusion), timeout=5000)
    qtbot.wait(200)
    assert window.view.conclusion and conclusion.text_shown() == window.view.conclusion
    assert fully_in_view(panel, conclusion)
    for stage in FIRST_THREE:
        card = panel.card(stage)
        assert card.is_collapsed() and card.visibleRegion().boundingRect().height() > 0
        assert card.status_text().startswith("Chosen · ")
    # opened, the stages would not all fit: the fold is what keeps the answer in view
    bar = panel.scroll.verticalScrollBar()
    for stage in FIRST_THREE:
        card = panel.card(stage)
        settle(qtbot, panel)  # the card opened before has wrapped its text to its width
        before = span(panel, card)
        qtbot.mouseClick(card.title, Qt.MouseButton.LeftButton)
        qtbot.wait(20)
        assert span(panel, card)[0] == before[0]  # what the user opened stays where it was
        assert not panel.is_following()
    assert bar.maximum() > 0 and not fully_in_view(panel, conclusion)


def _result(events: list[Event]) -> SearchResult:
    last = events[-1]
    assert isinstance(last, AnswerFinished)
    return last.result
