"""How sure a run is, from the search itself: real runs of the demo model through llama.cpp,
the demo's check of a picture, and the warnings a run carries into its result and history."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from stagewise.models.build.puzzles import scenes
from stagewise.models.events import AnswerFinished, RunWarning, SearchResult
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.library.demo import demo_dir, example_image
from stagewise.models.library.demo_pictures import PALETTE, check_picture, outside_demo
from stagewise.models.reasoning.confidence import (
    SURE_PROBABILITY,
    Confidence,
    confidence_of,
    explain,
    normalise_conclusion,
)
from stagewise.models.reasoning.measured import LEVEL_RIGHT, level_reliability, picks_right
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.session import Session, plan
from stagewise.models.stages import Stage, parse_answer
from stagewise.models.storage.export import to_json
from stagewise.models.storage.export_html import to_html
from stagewise.models.storage.export_markdown import to_markdown
from stagewise.models.storage.history import HistoryRecorder, RunSettings

QUESTION = "How many red circles are there?"


@pytest.fixture(scope="module")
def demo() -> Session:
    load = plan(None, None, EngineSettings(threads=2), SearchSettings(beam=4))
    with Session(load) as session:
        yield session


def answer(session: Session, image, question: str = QUESTION, **search) -> SearchResult:
    result = None
    events = []
    for event in session.ask(image, question, SearchSettings(**search)):
        events.append(event)
        if isinstance(event, AnswerFinished):
            result = event.result
    assert result is not None
    answer.events = events
    return result


@pytest.fixture(scope="module")
def example():
    return load_image(example_image())


def sign_photo() -> bytes:
    """A 2000×1500 photo-like picture of a sign, as the issue's newcomer dropped."""
    sign = Image.new("RGB", (2000, 1500), (90, 110, 140))
    draw = ImageDraw.Draw(sign)
    draw.rectangle((400, 400, 1600, 1100), fill=(250, 250, 240))
    draw.text((600, 700), "OPEN 9-5 SUNDAY", fill=(0, 0, 0))
    data = io.BytesIO()
    sign.save(data, "JPEG")
    return data.getvalue()


def test_stage_beam_counts_the_conclusions_that_agree_and_the_margin(demo, example):
    result = answer(demo, example, beam=4)
    found = confidence_of(result)
    assert found is not None
    finals = [c for c in result.candidates if c.unit is Stage.CONCLUSION]
    assert len(finals) == 4 and found.candidates == 4
    target = normalise_conclusion(result.conclusion)
    agreeing = sum(normalise_conclusion(c.text) == target for c in finals)
    assert found.agreeing == agreeing and found.label == f"{agreeing} of 4 agree"
    assert found.level == ("sure" if agreeing == 4 else
                           "fairly sure" if agreeing > 2 else "unsure")
    assert found.shared_reasoning  # all written after the one chosen reasoning
    winner = next(c for c in finals if (c.segment, c.index) in set(result.chosen))
    others = [c.score for c in finals if c is not winner]
    assert found.margin == pytest.approx(winner.score - max(others))
    assert found.margin >= 0  # log-probability keeps the highest score
    assert found.select == result.select == "logprob"
    data = found.to_json()
    assert {"agreement", "margin", "label"} <= set(data)
    assert data["agreement"] == pytest.approx(agreeing / 4)
    assert data["label"] == found.label


def test_a_single_pass_is_as_sure_as_its_conclusion_tokens(demo, example):
    result = answer(demo, example, beam=1)
    found = confidence_of(result)
    assert found is not None and found.agreeing is None and found.margin is None
    conclusion = next(c for c in result.candidates if c.unit is Stage.CONCLUSION)
    assert found.probability == pytest.approx(math.exp(conclusion.mean_logprob))
    expected = "sure" if found.probability >= SURE_PROBABILITY else found.level
    assert found.level == expected and found.label == found.level
    assert found.to_json()["agreement"] is None
    tip = explain(found, result.strategy)
    assert "not how often it is right" in tip  # the model's own certainty, said as such


def test_best_of_n_reads_each_whole_answer_s_conclusion(demo, example):
    result = answer(demo, example, beam=4, strategy="best-of-n")
    found = confidence_of(result)
    assert found is not None and found.candidates == 4
    assert not found.shared_reasoning  # independent whole answers
    conclusions = [normalise_conclusion(parse_answer(c.text).stages.get(Stage.CONCLUSION, ""))
                   for c in result.candidates]
    assert all(conclusions)
    assert found.agreeing == conclusions.count(normalise_conclusion(result.conclusion))


def test_sentence_search_s_last_sentences_continue_the_chosen_text(demo, example):
    result = answer(demo, example, beam=4, strategy="sentence")
    found = confidence_of(result)
    last = max(c.segment for c in result.candidates)
    finals = [c for c in result.candidates if c.segment == last]
    assert found is not None and found.candidates == len(finals) == 4
    assert found.shared_reasoning
    assert "continue the text the search had already kept" in explain(found, "sentence")


def test_retrace_counts_its_finalists(demo, example):
    result = answer(demo, example, strategy="retrace")
    found = confidence_of(result)
    finals = [c for c in result.candidates if c.unit is Stage.CONCLUSION]
    assert found is not None and found.candidates == len(finals) == 3
    assert not found.shared_reasoning  # each after its own caption and reasoning


def test_a_stopped_run_has_no_confidence(demo, example):
    import threading

    cancel = threading.Event()
    cancel.set()
    result = None
    for event in demo.ask(example, QUESTION, SearchSettings(beam=2), cancel):
        if isinstance(event, AnswerFinished):
            result = event.result
    assert result is not None and result.status == "cancelled"
    assert confidence_of(result) is None


def test_conclusions_are_compared_normalised():
    assert normalise_conclusion("<CONCLUSION> The answer: 3. </CONCLUSION>") == "answer 3"
    assert normalise_conclusion(" Green ") == normalise_conclusion("green.")
    assert normalise_conclusion("a red circle") == "red circle"
    assert normalise_conclusion("") == ""


def test_the_tooltip_quotes_the_selection_s_measured_reliability():
    found = Confidence("fairly sure", "3 of 4 agree", 3, 4, 0.2, None, "judge")
    tip = explain(found, "stage")
    assert f"{picks_right('judge').picks_right:.0%}" in tip and "chance: 50%" in tip
    unmeasured = Confidence("sure", "2 of 2 agree", 2, 2, None, None, "prm")
    assert "has not been measured" in explain(unmeasured, "stage")
    # and how answers with this label fared on the demo's held-out puzzles
    stage_sure = Confidence("sure", "4 of 4 agree", 4, 4, 0.0, None, "logprob", True)
    worth = level_reliability("stage", "sure")
    assert worth and worth in explain(stage_sure, "stage")
    record = next(r for r in LEVEL_RIGHT if (r.run, r.level) == ("stage", "sure"))
    assert f"{record.answers} answers" in worth
    assert f"{record.right:.0%} of them were right" in worth
    assert level_reliability("retrace", "sure") == ""  # not measured: nothing claimed


def test_every_shipped_puzzle_looks_like_one_and_a_photo_does_not():
    pictures = [*sorted(demo_dir().glob("*/images/*.png")), example_image()]
    assert len(pictures) > 100
    for path in pictures:
        assert outside_demo(load_image(path)) is None, path
    said = outside_demo(load_image(sign_photo()))
    assert said is not None
    assert "not square" in said and "colours" in said and "means nothing" in said


def test_a_resaved_puzzle_still_passes_and_the_palette_is_the_puzzles():
    bigger = Image.open(example_image()).convert("RGB").resize((384, 384),
                                                               Image.Resampling.BILINEAR)
    data = io.BytesIO()
    bigger.save(data, "JPEG", quality=75)
    checked = check_picture(load_image(data.getvalue()))
    assert checked.reasons() == []
    assert set(PALETTE) == {scenes.BACKGROUND_RGB, scenes.CLUTTER_RGB,
                            *scenes.COLOURS.values()}
    blank = io.BytesIO()
    Image.new("RGB", (96, 96), "white").save(blank, "PNG")
    assert any("white background" in r for r in check_picture(load_image(
        blank.getvalue())).reasons())


def test_the_demo_warns_about_a_picture_it_does_not_know_and_history_keeps_it(
        demo, tmp_path: Path):
    photo = load_image(sign_photo())
    result = answer(demo, photo, question="What does the sign say?", beam=1,
                    max_stage_tokens=32)
    events = answer.events
    warnings = [e for e in events if isinstance(e, RunWarning)]
    assert [w.kind for w in warnings] == ["outside"]
    assert result.warnings == tuple(warnings)
    assert events.index(warnings[0]) == 1  # right after the run started
    assert not [w for w in answer(demo, load_image(example_image()), beam=1).warnings]
    with HistoryRecorder(tmp_path / "history", warn=pytest.fail) as recorder:
        record = recorder.start(photo, sign_photo(), "sign.jpg", "What does the sign say?",
                                "demo", RunSettings(SearchSettings(beam=1)))
        for event in events:
            record.add(event)
    from stagewise.models.storage.history import History

    with History(tmp_path / "history") as history:
        run = history.load(record.run_id)
    stored = run.result
    assert stored.warnings == result.warnings
    assert confidence_of(stored) == confidence_of(result)
    # the exports say it as the window does: how sure, then the warnings
    found = confidence_of(stored)
    assert found is not None
    data = json.loads(to_json([run]))["runs"][0]
    assert data["confidence"] == json.loads(json.dumps(found.to_json()))
    assert {"agreement", "margin", "label"} <= set(data["confidence"])
    assert data["result"]["warnings"] == [{"kind": "outside", "text": warnings[0].text}]
    assert warnings[0].text in data["cautions"]
    markdown, html = to_markdown([run]), to_html([run])
    assert f"**How sure:** {found.label}" in markdown
    assert "does not look like the demo model" in markdown
    assert f"<strong>How sure:</strong> {found.label}" in html
    assert '<p class="warning">⚠ This picture does not look like' in html


def test_a_failed_run_keeps_the_warnings_it_started_with(demo, tmp_path: Path):
    photo = load_image(sign_photo())
    from stagewise.models.storage.history import History

    with HistoryRecorder(tmp_path / "history", warn=pytest.fail) as recorder:
        record = recorder.start(photo, sign_photo(), "sign.jpg", "Sign?", "demo",
                                RunSettings(SearchSettings(beam=1)))
        for event in demo.ask(photo, "Sign?", SearchSettings(beam=1)):
            record.add(event)
            if isinstance(event, RunWarning):
                record.fail("stopped by the test")
                break
    with History(tmp_path / "history") as history:
        stored = history.load(record.run_id)
    assert stored.entry.status == "failed"
    assert [w.kind for w in stored.result.warnings] == ["outside"]


def test_a_context_past_the_trained_length_is_a_warning_of_the_run(demo, example):
    result = answer(demo, example, beam=1, max_stage_tokens=1024)
    context = [w for w in result.warnings if w.kind == "context"]
    assert len(context) == 1
    assert "longer than the model was trained for (2048)" in context[0].text
    assert context[0].text[0].isupper() and context[0].text.endswith(".")
    assert not [w for w in answer(demo, example, beam=1).warnings if w.kind == "context"]
