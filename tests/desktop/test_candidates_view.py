"""The candidates view (issue 20): the chosen candidate first, columns that wrap to fit a
1024 px window, stepped through by keyboard, and verdicts that name candidates by the numbers
their columns show. Real widgets, fed real runs of the tiny model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QScrollBar
from pytestqt.qtbot import QtBot

from stagewise.desktop.candidates_view import COLUMN_MIN_WIDTH, CandidateColumn, CandidatesView
from stagewise.desktop.main_window import MainWindow
from stagewise.desktop.stage_cards import ReasoningPanel, StageCard
from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.events import (
    Event,
    JudgeVerdict,
    SegmentChosen,
    SegmentStarted,
)
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage
from stagewise.models.reasoning.run_view import RunView
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import STAGES, Stage
from stagewise.models.storage.app_settings import AppSettings
from tests.desktop.panel_runs import Search, search_runner, shown_panel, stream

QUESTION = "What is this?"
BEAM = 4
ANSWER_MS = 180_000  # a loaded CI machine
REASON = "response 2 names more shapes than response 1"


@pytest.fixture(scope="module")
def search(engine: Engine, image: PreparedImage) -> Search:
    return search_runner(engine, image, QUESTION, beam=BEAM)


@pytest.fixture
def panel(qtbot: QtBot) -> ReasoningPanel:
    return shown_panel(qtbot, 480, 360)


def open_candidates(card: StageCard) -> CandidatesView:
    card.candidates_button.click()
    QApplication.processEvents()
    view = card.candidates_view
    assert view is not None and view.isVisible()
    return view


def numbers(columns: list[CandidateColumn]) -> list[int]:
    """The numbers the columns show, in the order they stand ("Candidate 3" → 3)."""
    found = []
    for column in columns:
        match = re.fullmatch(r"Candidate (\d+)", column.header.text())
        assert match, column.header.text()
        found.append(int(match.group(1)))
    return found


def chosen_somewhere_but_first(search: Search) -> list[Event]:
    """A run in which some stage kept a candidate other than the first written."""
    for seed in range(10):
        events = search(seed=seed)
        if any(isinstance(e, SegmentChosen) and e.candidate != 0 for e in events):
            return events
    pytest.fail("every seed kept candidate 1 of every stage")


def in_viewport(panel: ReasoningPanel, column: CandidateColumn) -> tuple[int, int, int, int]:
    """The column's left, top, right and bottom in the stage cards' viewport."""
    corner = column.mapTo(panel.scroll.viewport(), QPoint(0, 0))
    return corner.x(), corner.y(), corner.x() + column.width(), corner.y() + column.height()


def test_the_chosen_candidate_comes_first(panel: ReasoningPanel, search: Search) -> None:
    seen_before_choice: set[Stage] = set()

    def check(event: Event, view: RunView) -> None:
        if isinstance(event, SegmentStarted) and event.unit is not None:
            open_candidates(panel.card(event.unit))  # watched while written
        for stage in STAGES:
            candidates = panel.card(stage).candidates_view
            if candidates is None or not view.stages[stage].segments:
                continue
            segment = view.stages[stage].segments[-1]
            shown = numbers(candidates.shown_order())
            if segment.chosen is None:  # not chosen yet: in the order they were written
                assert shown == list(range(1, BEAM + 1))
                seen_before_choice.add(stage)
            else:
                rest = [n for n in range(1, BEAM + 1) if n != segment.chosen + 1]
                assert shown == [segment.chosen + 1, *rest]
                assert candidates.shown_order()[0].chosen
                assert not any(c.chosen for c in candidates.shown_order()[1:])

    view = stream(panel, chosen_somewhere_but_first(search), check)
    assert seen_before_choice == set(STAGES)
    for stage in STAGES:
        segment = view.stages[stage].segments[-1]
        candidates = panel.card(stage).candidates_view
        assert candidates is not None
        first = candidates.shown_order()[0]
        assert first.number == segment.chosen + 1  # type: ignore[operator]
        assert first.text.text() == segment.content(segment.candidates[segment.chosen], stage)


def test_verdicts_name_candidates_by_their_column_numbers(panel: ReasoningPanel,
                                                         search: Search) -> None:
    """The judge's reason says "response 1/2" (places in the pair it was shown); the view
    says which candidate that was, by the number its column shows."""
    events = [replace(e, verdict=replace(e.verdict, reason=REASON))
              if isinstance(e, JudgeVerdict) else e for e in search()]
    view = stream(panel, events)
    moved = 0
    for stage in STAGES:
        candidates = open_candidates(panel.card(stage))
        why = candidates.why_text()
        assert "response" not in why.lower()
        shown = set(numbers(candidates.shown_order()))
        assert {int(n) for n in re.findall(r"[Cc]andidate (\d+)", why)} <= shown
        for v in view.stages[stage].segments[-1].verdicts:
            a, b, w = v.first + 1, v.second + 1, v.winner + 1
            line = (f"{a} vs {b} → {w}: candidate {b} names more shapes than candidate {a}")
            assert line in why, (line, why)
            assert {a, b, w} <= shown
            moved += (a, b) != (1, 2)
    assert moved  # some pair was not candidates 1 and 2: the places really were mapped


def test_the_keyboard_steps_through_the_candidates(panel: ReasoningPanel, search: Search,
                                                  qtbot: QtBot) -> None:
    panel.resize(480, 300)
    stream(panel, chosen_somewhere_but_first(search))
    card = panel.card(Stage.REASONING)
    candidates = open_candidates(card)
    grid = candidates.grid
    order = candidates.shown_order()
    assert len(order) == BEAM and grid.per_row() < BEAM  # wrapped into rows
    panel.activateWindow()
    card.candidates_button.setFocus()
    qtbot.waitUntil(card.candidates_button.hasFocus)
    height = panel.scroll.viewport().height()
    panel.scroll.verticalScrollBar().setValue(0)
    assert in_viewport(panel, order[-1])[3] > height  # the last one is out of sight
    unfocused = grid.grab().toImage()
    qtbot.keyClick(card.candidates_button, Qt.Key.Key_Tab)  # Tab goes into the candidates
    assert QApplication.focusWidget() is grid
    assert grid.current() is order[0] and order[0].chosen
    assert grid.grab().toImage() != unfocused  # the focus frame shows where the keyboard is

    for k in range(1, BEAM):
        with qtbot.waitSignal(grid.current_changed) as changed:
            qtbot.keyClick(grid, Qt.Key.Key_Right)
        assert grid.current() is order[k] and changed.args == [order[k].number]
        _, top, _, bottom = in_viewport(panel, order[k])
        assert top >= 0 and bottom <= height, (k, top, bottom)  # in view
    qtbot.keyClick(grid, Qt.Key.Key_Right)  # at the end: stays
    assert grid.current() is order[-1]
    keys = [(Qt.Key.Key_Home, 0), (Qt.Key.Key_PageDown, 1), (Qt.Key.Key_PageUp, 0),
            (Qt.Key.Key_Down, grid.per_row()), (Qt.Key.Key_Up, 0), (Qt.Key.Key_End, BEAM - 1),
            (Qt.Key.Key_Left, BEAM - 2)]
    for key, position in keys:
        qtbot.keyClick(grid, key)
        assert grid.current() is order[position], key
    assert f"Candidate {order[BEAM - 2].number}" in grid.accessibleDescription()
    qtbot.keyClick(grid, Qt.Key.Key_Tab)  # and on out of them
    assert QApplication.focusWidget() is not grid


@pytest.fixture
def wide_beam_window(qtbot: QtBot, tiny_pair: TinyPair,
                     tmp_path: Path) -> Iterator[MainWindow]:
    """The real window at 1024 × 640 with the tiny model and four candidates a stage."""
    settings = AppSettings(model=tiny_pair.model, mmproj=tiny_pair.mmproj, auto_beam=False,
                           search=SearchSettings(beam=BEAM, max_stage_tokens=24,
                                                 select="logprob"),
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


def test_every_candidate_fits_a_1024_px_window(qtbot: QtBot, wide_beam_window: MainWindow,
                                               image_file: Path) -> None:
    window = wide_beam_window
    assert window.width() == 1024
    window.image_pane.open_file(image_file)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS):
        window.ask("What shapes are there?")
    panel = window.reasoning
    width = panel.scroll.viewport().width()
    for stage in STAGES:
        candidates = open_candidates(panel.card(stage))
        qtbot.wait(20)
        columns = candidates.shown_order()
        assert len(columns) == BEAM and columns[0].chosen
        for column in columns:
            left, _, right, _ = in_viewport(panel, column)
            assert column.isVisible() and column.width() >= COLUMN_MIN_WIDTH
            assert left >= 0 and right <= width, (stage, left, right, width)
    bars = [b for b in window.reasoning.findChildren(QScrollBar)
            if b.orientation() is Qt.Orientation.Horizontal and b.isVisible()]
    assert not bars
    assert panel.scroll.widget().width() <= width  # nothing cut off at the right either

    # every candidate is reachable by keyboard from the Conclusion's toggle
    card = panel.card(Stage.CONCLUSION)
    grid = card.candidates_view.grid  # type: ignore[union-attr]
    card.candidates_button.setFocus()
    qtbot.keyClick(card.candidates_button, Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is grid
    reached = [grid.current()]
    for _ in range(BEAM - 1):
        qtbot.keyClick(grid, Qt.Key.Key_Right)
        reached.append(grid.current())
        _, top, _, _ = in_viewport(panel, grid.current())  # type: ignore[arg-type]
        assert 0 <= top < panel.scroll.viewport().height()
    assert reached == grid.order()
