"""Issue 30, points 1, 4 and 6 in the real window (offscreen), with the built-in demo model
through real llama.cpp: how sure the search is, a picture outside what the model knows, the
model's own judgements said as such, and a run's warnings shown where the run is shown."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from stagewise.desktop.main_window import MainWindow
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.library.demo import example_image
from stagewise.models.reasoning.measured import picks_right
from stagewise.models.reasoning.run_view import RunStatus, RunView
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import Stage
from stagewise.models.storage.app_settings import AppSettings

ANSWER_MS = 60_000


@pytest.fixture
def settings() -> AppSettings:
    """The built-in demo model (no model named), a set beam."""
    return AppSettings(auto_beam=False, engine=EngineSettings(threads=2),
                       search=SearchSettings(beam=4, max_stage_tokens=64))


def ask(qtbot, window: MainWindow, image: Path, question: str) -> RunView:
    window.image_pane.open_file(image)
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        assert window.ask(question)
    view: RunView = blocker.args[0]
    assert view.status is RunStatus.FINISHED
    return view


def restore_last(window: MainWindow) -> RunView:
    """Restore the newest saved run, as a click in the history does."""
    window.new_question()
    window.show_past_run(window.history.entries()[0].id)
    return window.shown


@pytest.fixture
def sign_photo(tmp_path) -> Path:
    """A 2000×1500 photo of a sign: the issue's picture outside what the demo knows."""
    sign = Image.new("RGB", (2000, 1500), (90, 110, 140))
    draw = ImageDraw.Draw(sign)
    draw.rectangle((400, 400, 1600, 1100), fill=(250, 250, 240))
    draw.text((600, 700), "OPEN 9-5 SUNDAY", fill=(0, 0, 0))
    path = tmp_path / "sign.jpg"
    data = io.BytesIO()
    sign.save(data, "JPEG")
    path.write_bytes(data.getvalue())
    return path


def test_the_conclusion_says_how_sure_the_search_is_and_a_restored_run_does_too(
        qtbot, make_window, settings):
    window = make_window(settings)
    view = ask(qtbot, window, example_image(), "How many red circles are there?")
    card = window.reasoning.card(Stage.CONCLUSION)
    confidence = view.confidence
    assert confidence is not None and confidence.candidates == 4
    assert card.confidence_text() == confidence.label == f"{confidence.agreeing} of 4 agree"
    tip = card.badge.toolTip()
    assert f"{confidence.agreeing} of 4 final candidates" in tip
    assert "its one chosen reasoning" in tip  # why stage-beam conclusions agree easily
    assert f"{picks_right('logprob').picks_right:.0%}" in tip and "chance: 50%" in tip
    assert card.badge.accessibleDescription() == tip
    restored = restore_last(window)
    assert restored is not view and restored.confidence == confidence
    assert card.confidence_text() == confidence.label and card.badge.toolTip() == tip
    window.new_question()  # nothing answered: no badge
    assert card.confidence_text() == ""


def test_a_single_pass_badge_is_the_conclusion_s_own_probability(qtbot, make_window,
                                                                  settings):
    window = make_window(replace(settings, search=replace(settings.search, beam=1)))
    view = ask(qtbot, window, example_image(), "How many red circles are there?")
    confidence = view.confidence
    assert confidence is not None and confidence.agreeing is None
    card = window.reasoning.card(Stage.CONCLUSION)
    assert card.confidence_text() == confidence.level in ("sure", "fairly sure", "unsure")
    assert "not how often it is right" in card.badge.toolTip()


def test_a_picture_the_demo_does_not_know_is_said_under_the_answer(
        qtbot, make_window, settings, sign_photo):
    window = make_window(replace(settings, search=replace(settings.search, beam=1)))
    view = ask(qtbot, window, sign_photo, "What does the sign say?")
    card = window.reasoning.card(Stage.CONCLUSION)
    assert [w.kind for w in view.warnings] == ["outside"]
    said = card.doubt_text()
    assert "does not look like the demo model's puzzles" in said and "not square" in said
    restored = restore_last(window)  # kept in the history
    assert [w.kind for w in restored.warnings] == ["outside"]
    assert card.doubt_text() == said
    view = ask(qtbot, window, example_image(), "How many red circles are there?")
    assert view.warnings == [] and "demo model's puzzles" not in card.doubt_text()


def test_a_context_past_the_trained_length_reaches_the_window(qtbot, make_window, settings):
    long = replace(settings, search=replace(settings.search, beam=1, max_stage_tokens=1024))
    window = make_window(long)
    view = ask(qtbot, window, example_image(), "What colour is the triangle?")
    card = window.reasoning.card(Stage.CONCLUSION)
    assert [w.kind for w in view.warnings] == ["context"]
    assert "longer than the model was trained for (2048)" in card.doubt_text()
    restore_last(window)
    assert "longer than the model was trained for (2048)" in card.doubt_text()


def test_the_judge_s_reasons_are_said_to_be_its_own_with_how_reliable_it_measured(
        qtbot, make_window, settings):
    judged = replace(settings, search=replace(settings.search, beam=2, select="judge"))
    window = make_window(judged)
    view = ask(qtbot, window, example_image(), "How many red circles are there?")
    card = window.reasoning.card(Stage.REASONING)
    card.set_candidates_open(True)
    why = card.candidates_view.why_text()
    assert "the model judging its own candidates" in why
    assert f"{picks_right('judge').picks_right:.0%} of the time" in why
    segment = view.stages[Stage.REASONING].segments[-1]
    for check in segment.checks:  # the correctness check is named as the model's own
        verb = "passed" if check.correct else "failed"
        assert f"Candidate {check.candidate + 1} {verb} the correctness check (the model's " \
               "own)" in why
    doubts = window.reasoning.card(Stage.CONCLUSION).doubt_text()
    assert "failed the correctness check" not in doubts  # never stated as a finding
    if segment.checks and not any(c.correct for c in segment.checks):
        assert "the model judging itself" in doubts and "not a finding" in doubts
