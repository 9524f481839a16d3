"""Several images in one question: every marker and bitmap in one ``mtmd_tokenize`` call, each
image encoded once, for the families whose chat template takes several; the others refuse
with one line.

The answers run on the tiny Qwen2.5-VL-shaped pair on Qwen2's real tokenizer and template
(:func:`~stagewise.models.recipes.real_vocab.qwen_real_vocabulary_pair`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PIL import Image

from stagewise.models.errors import StagewiseError
from stagewise.models.events import AnswerFinished, PromptEvaluated
from stagewise.models.inference.chat_template import ChatTemplateError
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage, image_list, load_image
from stagewise.models.inference.mtmd_prompt import Bitmap, split_after_images
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import SearchSettings, StageSearch
from stagewise.models.reasoning.strategies import sequences_needed
from stagewise.models.recipes.real_vocab import qwen_real_vocabulary_pair
from stagewise.models.stages import STAGES
from tests.models.test_families import CASES, IDS, MARKER, QUESTION, template

ASKED = "Which picture has more red circles?"


@pytest.fixture(scope="module")
def qwen() -> Iterator[Engine]:
    pair = qwen_real_vocabulary_pair("qwen2.5-vl")
    settings = EngineSettings(n_ctx=4096, n_seq_max=sequences_needed(2), threads=2)
    with Engine(pair.model, pair.mmproj, settings) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> PreparedImage:
    path = tmp_path_factory.mktemp("second") / "blue.png"
    picture = Image.new("RGB", (40, 28), (20, 40, 200))
    picture.paste((250, 250, 0), (5, 5, 20, 20))
    picture.save(path)
    return load_image(path)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_family_that_takes_several_gets_a_marker_per_image(case):
    assert case.family.several_images
    prompt = case.family.render_prompt(template(case.file), QUESTION, MARKER, with_image=True,
                                       images=3)
    assert prompt.count(MARKER) == 3
    assert prompt.rindex(MARKER) < prompt.index(QUESTION)
    for placeholder in case.placeholders:
        assert placeholder not in prompt
    head, after = split_after_images(prompt, MARKER, 3)
    assert head.endswith(MARKER) and QUESTION in after and MARKER not in after


def test_a_family_whose_template_takes_one_refuses_several():
    from stagewise.models.inference.families import CHATML

    with pytest.raises(ChatTemplateError, match="one image per question"):
        CHATML.render_prompt("{{ messages[0]['content'] }}", QUESTION, MARKER,
                             with_image=True, images=2)


def test_two_images_answer_with_two_encodes_on_a_qwen25_vl_pair(qwen: Engine,
                                                                image: PreparedImage,
                                                                second: PreparedImage):
    assert qwen.family == "qwen2.5-vl"
    backend = LlamaBackend(qwen, keep_image=True)
    single = list(StageSearch(backend, SearchSettings(max_stage_tokens=6)).run(image, ASKED))
    before = qwen.stats.image_encodes
    events = list(StageSearch(backend, SearchSettings(max_stage_tokens=6)).run(
        (image, second), ASKED))
    result = events[-1].result
    assert isinstance(events[-1], AnswerFinished) and result.status == "finished"
    assert all(result.stages[stage].strip() for stage in STAGES)
    assert qwen.stats.image_encodes - before == 2  # counted by the engine: one per image
    assert result.timings.image_encodes == 2
    one = next(e for e in single if isinstance(e, PromptEvaluated)).n_tokens
    two = next(e for e in events if isinstance(e, PromptEvaluated)).n_tokens
    assert two > one  # the second image's tokens are in the prompt
    # a next question about the same two images reuses them: no encode
    again = list(StageSearch(backend, SearchSettings(max_stage_tokens=6)).run(
        (image, second), "And which has more blue?"))
    assert again[-1].result.status == "finished"
    assert again[-1].result.timings.image_encodes == 0
    # their order matters: swapped, they are other cells
    swapped = list(StageSearch(backend, SearchSettings(max_stage_tokens=6)).run(
        (second, image), ASKED))
    assert swapped[-1].result.timings.image_encodes == 2


def test_the_prompt_holds_one_image_chunk_per_image(qwen: Engine, image: PreparedImage,
                                                   second: PreparedImage):
    text = qwen.chat_prompt("Which?", images=2)
    with Bitmap((image, second)) as bitmap:
        prompt = qwen.tokenize_prompt(text, bitmap, ("Which?",))
        try:
            assert sum(c.is_image for c in prompt.chunks) == 2
            assert prompt.extra  # the question, after both images
            assert prompt.media_end == len(prompt.chunks) - (not prompt.chunks[-1].is_image)
        finally:
            prompt.close()
    with Bitmap((image, second)) as bitmap, pytest.raises(StagewiseError, match="fewer places"):
        qwen.tokenize_prompt(qwen.chat_prompt("Which?"), bitmap)


def test_a_judge_selection_runs_on_two_images(qwen: Engine, image: PreparedImage,
                                              second: PreparedImage):
    search = StageSearch(LlamaBackend(qwen), SearchSettings(beam=2, select="judge",
                                                            max_stage_tokens=5,
                                                            max_judge_tokens=4))
    events = list(search.run((image, second), ASKED))
    assert events[-1].result.status == "finished"
    assert events[-1].result.timings.image_encodes == 2


def test_a_model_whose_template_takes_one_refuses_two_in_one_line(engine: Engine,
                                                                 image: PreparedImage,
                                                                 second: PreparedImage):
    assert not engine.adapter.several_images
    search = StageSearch(LlamaBackend(engine), SearchSettings(max_stage_tokens=4))
    with pytest.raises(StagewiseError, match="one image per question") as caught:
        list(search.run((image, second), ASKED))
    assert "\n" not in str(caught.value)
    before = engine.stats.image_encodes
    assert list(search.run(image, ASKED))[-1].result.status == "finished"  # nothing broken
    assert engine.stats.image_encodes == before + 1


def test_image_list_takes_one_or_several(image: PreparedImage, second: PreparedImage):
    assert image_list(image) == (image,)
    assert image_list((image, second)) == (image, second)
    with pytest.raises(StagewiseError, match="at least one"):
        image_list(())
    with pytest.raises(StagewiseError, match="at most"):
        image_list((image,) * 9)
