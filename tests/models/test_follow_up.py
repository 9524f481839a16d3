"""Asking again about the same image: its encoding is kept, and answers are unchanged."""

from __future__ import annotations

from dataclasses import replace

from PIL import Image

from stagewise.models.events import AnswerFinished
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.session import Session, plan

SETTINGS = SearchSettings(beam=2, max_stage_tokens=10, seed=7)


def answer(session: Session, image, question: str, settings: SearchSettings = SETTINGS):
    events = list(session.ask(image, question, settings))
    assert isinstance(events[-1], AnswerFinished)
    return events[-1].result


def test_a_second_question_about_the_same_image_encodes_it_no_more(tiny_pair, image,
                                                                  tmp_path):
    load = plan(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=4096, threads=2))
    with Session(load) as session:
        first = answer(session, image, "How many circles?")
        follow = answer(session, image, "Which shape is blue?")
        again = answer(session, image, "Which shape is blue?", replace(SETTINGS, beam=3))
        other_file = tmp_path / "other.png"
        Image.new("RGB", (48, 48), "green").save(other_file)
        other = answer(session, load_image(other_file), "What colour is it?")
        back = answer(session, image, "How many circles?")
    assert first.timings.image_encodes == 1
    assert follow.timings.image_encodes == 0 and again.timings.image_encodes == 0
    assert other.timings.image_encodes == 1  # another picture is encoded
    assert back.timings.image_encodes == 1  # and the first one again after it
    # the kept image gives the answers a fresh engine gives
    with Session(load) as fresh:
        assert answer(fresh, image, "Which shape is blue?").answer_text == follow.answer_text
    assert back.answer_text == first.answer_text
    assert follow.status == "finished" and follow.answer_text
