"""The stage cards and candidates view, fed real runs of the tiny model event by event."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton
from pytestqt.qtbot import QtBot

from stagewise.desktop.candidates_view import UNREAD_NOTE, CandidatesView, signed
from stagewise.desktop.stage_cards import (
    ANSWER_PLACEHOLDER,
    NOT_WRITTEN,
    ReasoningPanel,
    StageCard,
)
from stagewise.models.events import (
    AnswerFinished,
    Event,
    SearchResult,
    SegmentChosen,
    SegmentStarted,
    TokenStreamed,
)
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.images import PreparedImage
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.measured import selection_reliability
from stagewise.models.reasoning.run_view import RunView, StageStatus
from stagewise.models.reasoning.search import StageSearch
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import STAGES, Stage
from tests.desktop.panel_runs import Search, search_runner, shown_panel
from tests.desktop.panel_runs import stream as stream_events

QUESTION = "What is this?"
FIRST_THREE = (Stage.SUMMARY, Stage.CAPTION, Stage.REASONING)


@pytest.fixture(scope="module")
def search(engine: Engine, image: PreparedImage) -> Search:
    return search_runner(engine, image, QUESTION, beam=3)


@pytest.fixture
def panel(qtbot: QtBot) -> ReasoningPanel:
    return shown_panel(qtbot, 560, 900)


def stream(panel: ReasoningPanel, events: Iterable[Event],
           after: Callable[[Event, RunView], None] | None = None) -> RunView:
    """Feed ``events`` as the window does, without a layout pass between them."""
    return stream_events(panel, events, after, lay_out=False)


def result_of(events: list[Event]) -> SearchResult:
    last = events[-1]
    assert isinstance(last, AnswerFinished)
    return last.result


def open_candidates(card: StageCard) -> CandidatesView:
    assert card.candidates_button.isEnabled()
    card.candidates_button.click()
    view = card.candidates_view
    assert view is not None and view.isVisible()
    return view


def assert_columns_match(card: StageCard, view: RunView, segment_index: int = -1) -> None:
    stage = card.stage
    segment = view.stages[stage].segments[segment_index]
    candidates = card.candidates_view
    assert candidates is not None
    columns = candidates.columns()
    assert len(columns) == len(segment.candidates)
    for column, cand in zip(columns, segment.candidates, strict=True):
        assert column.header.text() == f"Candidate {cand.index + 1}"
        assert column.text.text() == segment.content(cand, stage)
        assert column.text.toPlainText() == segment.content(cand, stage)
        assert column.chosen == (cand.index == segment.chosen)
        assert f"mean log-prob {signed(cand.mean_logprob or 0.0)}" in column.footer.text()
    assert sum(column.chosen for column in columns) == 1


def test_live_judge_run_renders_texts_statuses_and_verdicts(
        panel: ReasoningPanel, search: Search) -> None:
    seen: dict[Stage, set[str]] = {s: set() for s in STAGES}

    def record(_event: Event, _view: RunView) -> None:
        for stage in STAGES:
            seen[stage].add(panel.card(stage).status_text())

    view = stream(panel, search(select="judge"), record)

    for stage in STAGES:
        card = panel.card(stage)
        assert card.text_shown() == view.stages[stage].text
        assert card.text.toPlainText() == view.stages[stage].text
        assert re.fullmatch(r"Chosen · (\d+(\.\d)? s|\d+ ms)", card.status_text())
        assert {"Waiting", "Sampling 3 candidates", "Judging 2 comparisons"} <= seen[stage]
        assert card.candidates_button.isEnabled()
        assert card.candidates_button.text() == "3 candidates"
        assert card.candidates_button.toolTip() and card.chip.toolTip()

    conclusion = panel.card(Stage.CONCLUSION)
    candidates = open_candidates(conclusion)
    assert_columns_match(conclusion, view)
    segment = view.stages[Stage.CONCLUSION].segments[-1]
    why = candidates.why_text().splitlines()
    assert candidates.why_title.text() == "Why it won"
    for verdict in segment.verdicts:
        prefix = (f"Round {verdict.round + 1} · {verdict.first + 1} vs {verdict.second + 1} "
                  f"→ {verdict.winner + 1}")
        assert any(line.startswith(prefix) for line in why), (prefix, why)
        if verdict.unread:
            assert any(line.startswith(prefix) and line.endswith(UNREAD_NOTE) for line in why)
    assert not candidates.stepper.isVisibleTo(candidates)


def test_correctness_checks_are_listed_for_reasoning(panel: ReasoningPanel,
                                                     search: Search) -> None:
    view = stream(panel, search(select="judge"))
    segment = view.stages[Stage.REASONING].segments[-1]
    assert segment.checks, "the judge run checks its reasoning candidates"
    candidates = open_candidates(panel.card(Stage.REASONING))
    why = candidates.why_text()
    for check in segment.checks:
        verb = "passed" if check.correct else "failed"
        assert f"Candidate {check.candidate + 1} {verb} the correctness check" in why


def test_candidates_fill_live_while_sampling(panel: ReasoningPanel, search: Search) -> None:
    card = panel.card(Stage.SUMMARY)
    checked = []

    def follow(event: Event, view: RunView) -> None:
        if isinstance(event, SegmentStarted) and event.unit is Stage.SUMMARY:
            card.candidates_button.click()
        elif isinstance(event, TokenStreamed) and event.unit is Stage.SUMMARY:
            segment = view.stages[Stage.SUMMARY].segments[-1]
            candidates = card.candidates_view
            assert candidates is not None
            column = candidates.columns()[event.candidate]
            assert column.text.text() == segment.content(segment.candidates[event.candidate],
                                                         Stage.SUMMARY)
            assert "writing…" in column.footer.text()
            checked.append(event.candidate)

    view = stream(panel, search(select="judge"), follow)
    assert set(checked) == {0, 1, 2}
    assert_columns_match(card, view)


def test_logprob_selection_explains_the_scores(panel: ReasoningPanel, search: Search) -> None:
    view = stream(panel, search(select="logprob"))
    for stage in STAGES:
        card = panel.card(stage)
        assert card.text_shown() == view.stages[stage].text
        candidates = open_candidates(card)
        assert_columns_match(card, view)
        segment = view.stages[stage].segments[-1]
        assert segment.chosen is not None
        best = segment.scores[segment.chosen]
        others = sorted((s for i, s in enumerate(segment.scores) if i != segment.chosen),
                        reverse=True)
        expected = (f"Highest mean log-probability: {signed(best)} vs "
                    + ", ".join(signed(s) for s in others))
        first, trust = candidates.why_text().split("\n")
        assert first == expected
        assert trust == selection_reliability("logprob")  # how often it picked right
        assert "−" in expected  # log-probabilities are negative: a true minus sign
        for column in candidates.columns():
            assert "score " in column.footer.text()
            assert "token limit" in column.footer.text()


def test_best_of_n_shows_the_answers_in_every_card(panel: ReasoningPanel,
                                                   search: Search) -> None:
    view = stream(panel, search(strategy="best-of-n"))
    for stage in STAGES:
        card = panel.card(stage)
        assert card.text_shown() == view.stages[stage].text
        assert card.status_text().startswith("Chosen")
        open_candidates(card)
        assert_columns_match(card, view)
    segments = {id(view.stages[s].segments[-1]) for s in STAGES}
    assert len(segments) == 1  # one whole-answer segment, shown stage by stage


def test_sentence_search_steps_through_segments(panel: ReasoningPanel,
                                                search: Search) -> None:
    """The paper's sentence-level search writes the whole answer one sentence at a time:
    every card steps through the same sentence segments."""
    for seed in range(20):
        events = search(strategy="sentence", select="logprob", max_stage_tokens=24, seed=seed)
        starts = [e for e in events if isinstance(e, SegmentStarted)]
        if len(starts) > 1:
            break
    else:
        pytest.fail("no seed gave an answer of several sentences")
    assert all(e.unit is None for e in starts)
    stage = Stage.CAPTION
    view = stream(panel, events)
    n = len(view.stages[stage].segments)
    card = panel.card(stage)
    for s in STAGES:
        assert panel.card(s).text_shown() == view.stages[s].text
    candidates = open_candidates(card)
    assert candidates.stepper.isVisible()
    assert candidates.segment_label.text() == f"Sentence {n} of {n}"
    assert not candidates.next_button.isEnabled()
    assert_columns_match(card, view, n - 1)
    for k in range(n - 1, 0, -1):
        candidates.previous_button.click()
        assert candidates.segment_label.text() == f"Sentence {k} of {n}"
        assert_columns_match(card, view, k - 1)
    assert not candidates.previous_button.isEnabled()
    candidates.next_button.click()
    assert candidates.segment_index() == 1
    assert_columns_match(card, view, 1)
    for button in (candidates.previous_button, candidates.next_button):
        assert button.accessibleName()


def test_collapsing_while_streaming_sticks_and_shows_a_preview(
        panel: ReasoningPanel, search: Search, qtbot: QtBot) -> None:
    card = panel.card(Stage.SUMMARY)

    def collapse(event: Event, _view: RunView) -> None:
        if (isinstance(event, TokenStreamed) and event.unit is Stage.SUMMARY
                and not card.is_collapsed() and not card.user_toggled):
            qtbot.mouseClick(card.disclosure, Qt.MouseButton.LeftButton)
            assert card.is_collapsed()

    view = stream(panel, search(select="judge"), collapse)
    assert card.is_collapsed()
    assert not card.body.isVisible()
    assert card.preview.isVisible()
    assert card.preview_text() == " ".join(view.stages[Stage.SUMMARY].text.split())
    assert card.disclosure.accessibleName() == "Expand Summary"
    assert card.text_shown() == view.stages[Stage.SUMMARY].text  # kept current while hidden
    for stage in (Stage.CAPTION, Stage.REASONING):
        assert panel.card(stage).is_collapsed()  # finished stages fold on their own
        assert not panel.card(stage).user_toggled
    assert not panel.card(Stage.CONCLUSION).is_collapsed()

    card.disclosure.setFocus()
    qtbot.keyClick(card.disclosure, Qt.Key.Key_Space)
    assert not card.is_collapsed()
    assert card.body.isVisible()
    assert not card.preview.isVisible()
    assert card.disclosure.accessibleName() == "Collapse Summary"

    qtbot.mouseClick(card.title, Qt.MouseButton.LeftButton)  # the header toggles too
    assert card.is_collapsed()
    qtbot.mouseClick(card.title, Qt.MouseButton.LeftButton)
    assert not card.is_collapsed()


def test_candidates_view_refreshes_only_while_shown(panel: ReasoningPanel,
                                                    search: Search) -> None:
    card = panel.card(Stage.CAPTION)
    events = search(select="judge")
    view = RunView()
    panel.show_run(view)
    opened = False
    for event in events:
        changed = view.apply(event)
        panel.update_stages(view, changed)
        if isinstance(event, TokenStreamed) and event.unit is Stage.CAPTION and not opened:
            card.candidates_button.click()
            card.toggle_collapsed()  # hidden: the columns stop following
            opened = True
    assert opened and card.is_collapsed()
    candidates = card.candidates_view
    assert candidates is not None
    segment = view.stages[Stage.CAPTION].segments[-1]
    stale = [c.text.text() for c in candidates.columns()]
    assert stale != [segment.content(c, Stage.CAPTION) for c in segment.candidates]
    card.toggle_collapsed()
    assert candidates.isVisible()
    assert_columns_match(card, view)


def test_collapsed_default_applies_to_the_first_three(panel: ReasoningPanel,
                                                      search: Search) -> None:
    view = stream(panel, search(select="judge"))
    panel.set_collapsed_default(True)
    panel.show_run(view)
    for stage in FIRST_THREE:
        card = panel.card(stage)
        assert card.is_collapsed()
        assert card.preview_text() == " ".join(view.stages[stage].text.split())
    conclusion = panel.card(Stage.CONCLUSION)
    assert not conclusion.is_collapsed()
    assert conclusion.body.isVisible()
    assert not conclusion.disclosure.isVisible()
    conclusion.set_collapsed(True, user=True)
    assert not conclusion.is_collapsed()

    panel.card(Stage.CAPTION).toggle_collapsed()  # the user opens one card
    panel.set_collapsed_default(False)
    assert panel.card(Stage.SUMMARY).is_collapsed()  # finished: stays folded
    assert not panel.card(Stage.CAPTION).is_collapsed()
    panel.show_run(RunView())
    for stage in FIRST_THREE:  # not finished, not collapsed by default
        assert not panel.card(stage).is_collapsed()
    panel.set_collapsed_default(True)
    assert panel.card(Stage.SUMMARY).is_collapsed()
    panel.show_run(view)
    panel.card(Stage.CAPTION).toggle_collapsed()
    panel.set_collapsed_default(True)
    assert not panel.card(Stage.CAPTION).is_collapsed()  # the user's toggle wins this run
    panel.show_run(view)
    assert panel.card(Stage.CAPTION).is_collapsed()  # ...until the next run is shown


def test_opening_candidates_expands_a_collapsed_card(panel: ReasoningPanel,
                                                     search: Search) -> None:
    view = stream(panel, search(select="judge"))
    panel.set_collapsed_default(True)
    panel.show_run(view)
    card = panel.card(Stage.REASONING)
    assert card.is_collapsed()
    open_candidates(card)
    assert not card.is_collapsed()
    assert_columns_match(card, view)


def test_a_restored_run_looks_like_the_live_one(qtbot: QtBot, search: Search) -> None:
    panels = []
    for _ in range(2):
        widget = ReasoningPanel()
        qtbot.addWidget(widget)
        widget.resize(560, 900)
        widget.show()
        panels.append(widget)
    live_panel, restored_panel = panels
    events = search(select="judge")
    live = stream(live_panel, events)
    restored = RunView.from_result(result_of(events))
    restored_panel.show_run(restored)
    for stage in STAGES:
        live_card, restored_card = live_panel.card(stage), restored_panel.card(stage)
        assert restored_card.text_shown() == live_card.text_shown() == live.stages[stage].text
        assert restored_card.status_text().startswith("Chosen")
        assert restored_card.candidates_button.text() == "3 candidates"
        open_candidates(live_card)
        open_candidates(restored_card)
        assert_columns_match(restored_card, restored)
        live_columns = live_card.candidates_view.columns()  # type: ignore[union-attr]
        restored_columns = restored_card.candidates_view.columns()  # type: ignore[union-attr]
        assert [c.text.text() for c in live_columns] == [c.text.text() for c in restored_columns]
        assert [c.chosen for c in live_columns] == [c.chosen for c in restored_columns]


def test_a_cancelled_run_shows_stopped_and_waiting(panel: ReasoningPanel, engine: Engine,
                                                   image: PreparedImage) -> None:
    cancel = threading.Event()
    settings = SearchSettings(beam=3, max_stage_tokens=8, select="judge")
    events = StageSearch(LlamaBackend(engine), settings).run(image, QUESTION, cancel=cancel)

    def stop(event: Event, _view: RunView) -> None:
        if isinstance(event, SegmentChosen):
            cancel.set()

    view = stream(panel, events, stop)
    assert view.result is not None and view.result.status == "cancelled"
    statuses = {s: panel.card(s).status_text() for s in STAGES}
    assert statuses[Stage.SUMMARY].startswith("Chosen")
    assert statuses[Stage.CAPTION] == "Stopped"
    # the stages the stop came before say so (not "Waiting", not "The answer appears here")
    assert statuses[Stage.REASONING] == "Not written"
    assert statuses[Stage.CONCLUSION] == "Not written"
    assert view.stages[Stage.CAPTION].status is StageStatus.STOPPED
    assert panel.card(Stage.CONCLUSION).text.placeholderText() == NOT_WRITTEN
    for stage in STAGES:
        assert panel.card(stage).text_shown() == view.stages[stage].text


def test_empty_panel_and_clear(panel: ReasoningPanel, search: Search) -> None:
    conclusion = panel.card(Stage.CONCLUSION)
    assert conclusion.text_shown() == ""
    assert conclusion.text.placeholderText() == ANSWER_PLACEHOLDER
    for stage in STAGES:
        card = panel.card(stage)
        assert card.status_text() == "Waiting"
        assert not card.candidates_button.isEnabled()
    stream(panel, search(select="judge"))
    open_candidates(panel.card(Stage.SUMMARY))
    panel.clear()
    for stage in STAGES:
        card = panel.card(stage)
        assert card.text_shown() == ""
        assert card.status_text() == "Waiting"
        assert not card.candidates_button.isChecked()
        assert not card.candidates_button.isEnabled()
    assert panel.minimumWidth() >= 320


def test_every_control_has_an_accessible_name(panel: ReasoningPanel, search: Search) -> None:
    stream(panel, search(strategy="sentence", select="logprob", max_stage_tokens=24, seed=0))
    for stage in STAGES:
        if panel.card(stage).candidates_button.isEnabled():
            open_candidates(panel.card(stage))
    buttons = panel.findChildren(QAbstractButton)
    assert buttons
    for button in buttons:
        assert button.accessibleName(), button
    for stage in STAGES:
        card = panel.card(stage)
        assert card.text.accessibleName() == f"{stage.title} text"
        assert card.chip.toolTip()


def test_retrace_shows_its_candidate_sets_scores_and_retraces(panel: ReasoningPanel,
                                                              search: Search) -> None:
    events = search(strategy="retrace", select="selfcheck", retrace_cutoff=2.0)
    view = stream(panel, events)
    for stage in STAGES:
        assert panel.card(stage).text_shown() == view.stages[stage].text
    candidates = open_candidates(panel.card(Stage.REASONING))
    n = len(view.stages[Stage.REASONING].segments)
    assert candidates.segment_label.text() == f"Candidate set {n} of {n}"
    retraced = next(k for k, s in enumerate(view.stages[Stage.REASONING].segments)
                    if s.retraced is not None)
    candidates.set_segment_index(retraced)
    why = candidates.why.text()
    assert "Retraced after pass 1" in why and "Scores 1:" in why
