"""Asking again about the same image: its encoding is kept, and answers are unchanged."""

from __future__ import annotations

from dataclasses import replace

from PIL import Image

from stagewise.models.events import AnswerFinished, PromptEvaluated
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.reasoning.conversation import Turn, answer_room, turns_of
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


# -- follow-ups: the earlier turns in the prompt ----------------------------------------------

EARLIER = (Turn("How many circles?", "There is one red circle."),)


def prompts_of(session: Session, monkeypatch) -> list[str]:
    """The prompt texts the session's engine tokenizes from now on, in order."""
    engine = session.engine
    seen: list[str] = []
    real = engine.tokenize_prompt

    def spy(prompt, bitmap, plain=()):
        seen.append(prompt)
        return real(prompt, bitmap, plain)

    monkeypatch.setattr(engine, "tokenize_prompt", spy)
    return seen


def run_events(session: Session, image, question: str, earlier=(), settings=SETTINGS):
    events = list(session.ask(image, question, settings, earlier=earlier))
    assert isinstance(events[-1], AnswerFinished)
    prompt = next(e for e in events if isinstance(e, PromptEvaluated))
    return prompt, events[-1].result


def test_a_follow_up_has_the_earlier_turn_in_its_prompt_and_encodes_no_image(
        tiny_pair, image, monkeypatch):
    load = plan(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=4096, threads=2))
    with Session(load) as session:
        first = answer(session, image, "How many circles?")
        seen = prompts_of(session, monkeypatch)
        plain_info, plain = run_events(session, image, "Why is it red?")
        follow_info, follow = run_events(session, image, "Why is it red?", EARLIER)
    assert first.timings.image_encodes == 1
    assert plain.timings.image_encodes == 0 and follow.timings.image_encodes == 0
    question_prompt, follow_prompt = seen[0], seen[1]
    marker = session.engine.media_marker
    assert "There is one red circle." not in question_prompt
    # the template's multi-turn form: image and first question, its answer, the new question
    at = [follow_prompt.index(text) for text in
          (marker, "How many circles?", "There is one red circle.", "Why is it red?")]
    assert at == sorted(at)
    assert follow_prompt.count(marker) == 1
    assert follow_info.earlier_turns == 1 and follow_info.dropped_turns == 0
    assert follow.timings.earlier_turns == 1 and plain.timings.earlier_turns == 0
    # the earlier turn's text is evaluated after the kept image: more prompt tokens
    assert follow.timings.prompt_tokens > plain.timings.prompt_tokens
    assert follow_info.n_tokens > plain_info.n_tokens
    # a fresh engine, which encodes the image, answers the follow-up the same way
    with Session(load) as fresh:
        _, again = run_events(fresh, image, "Why is it red?", EARLIER)
    assert again.timings.image_encodes == 1
    assert again.answer_text == follow.answer_text and follow.status == "finished"


def test_a_thread_too_long_for_the_context_leaves_its_oldest_turns_out(
        tiny_pair, image, monkeypatch):
    load = plan(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=1024, threads=2))
    with Session(load) as session:
        engine = session.engine
        room = answer_room(SETTINGS)
        free = engine.n_ctx - room - 200  # what the turns may take beside the image
        words = "the red circle is left of the blue square and "
        long_answer = words * (free // 2 // len(engine.tokenize(words)) + 1)
        turns = tuple(Turn(f"Question number {i}?", long_answer) for i in range(3))
        answer(session, image, "How many circles?")
        seen = prompts_of(session, monkeypatch)
        info, result = run_events(session, image, "And now?", turns)
        assert result.status == "finished"
        assert 1 <= info.dropped_turns <= 2
        assert info.earlier_turns + info.dropped_turns == 3
        assert result.timings.dropped_turns == info.dropped_turns
        assert result.timings.image_encodes == 0
        used = seen[-1]
        assert "Question number 0?" not in used and "Question number 2?" in used
        assert info.n_tokens + room <= engine.n_ctx
        # a single turn longer than the whole context is left out too; the question is
        # still answered
        huge = (Turn("Huge?", words * (engine.n_ctx // len(engine.tokenize(words)) + 1)),)
        info, result = run_events(session, image, "And now?", huge)
    assert result.status == "finished" and info.dropped_turns == 1
    assert info.earlier_turns == 0


def test_turns_of_keeps_each_answered_question_with_its_conclusion_only(tiny_pair, image):
    load = plan(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=4096, threads=2))
    with Session(load) as session:
        result = answer(session, image, "  How many circles?  ")
    cancelled = replace(result, status="cancelled", stages={})
    turns = turns_of([result, cancelled])
    if result.conclusion.strip():
        assert turns == (Turn("How many circles?", result.conclusion.strip()),)
        assert "<SUMMARY>" not in turns[0].answer
    else:
        assert turns == ()


def test_llama_cpps_own_template_handling_renders_the_thread_too(tiny_pair, image,
                                                                 monkeypatch):
    from stagewise.models.inference.families import GENERIC

    load = plan(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=4096, threads=2))
    with Session(load) as session:
        monkeypatch.setattr(session.engine.prompts, "adapter", GENERIC)  # llama_chat_apply_template
        prompt = session.engine.chat_prompt("Why red?", earlier=EARLIER)
        marker = session.engine.media_marker
        at = [prompt.index(text) for text in
              (marker, "How many circles?", "There is one red circle.", "Why red?")]
        assert at == sorted(at) and prompt.count(marker) == 1
        answer(session, image, "How many circles?")
        _, follow = run_events(session, image, "Why red?", EARLIER)
    assert follow.timings.image_encodes == 0 and follow.timings.earlier_turns == 1
