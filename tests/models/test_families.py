"""Model family adapters and the sandboxed chat template renderer.

The templates in tests/data/templates are real published chat templates (see SOURCES.md
there); metadata dicts use the real GGUF key names and values of llama.cpp
(``src/llama-arch.cpp``, ``tools/mtmd/clip-impl.h``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from llama_cpp import mtmd_cpp
from PIL import Image

from stagewise.models.build.tiny_vlm import CHATML_TEMPLATE
from stagewise.models.errors import StagewiseError
from stagewise.models.inference.chat_template import (
    MAX_OUTPUT_CHARS,
    MAX_TEMPLATE_CHARS,
    ChatTemplateError,
    render_chat,
)
from stagewise.models.inference.families import (
    CHATML,
    DEFAULT_MAX_IMAGE_PIXELS,
    GEMMA3,
    GENERIC,
    INTERNVL,
    QWEN2_VL,
    QWEN3_VL,
    SMOLVLM,
    FamilyAdapter,
    detect_family,
    family_named,
    fit_pixels,
)
from stagewise.models.inference.gguf_header import inspect_gguf
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.mtmd_prompt import Bitmap
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import StageSearch
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import user_text

TEMPLATES = Path(__file__).parent.parent / "data" / "templates"
MARKER = mtmd_cpp.mtmd_default_marker().decode()
QUESTION = "What colour is the ball?"


@dataclasses.dataclass(frozen=True)
class Case:
    """A published template, its family, and what its rendering must look like."""

    file: str
    family: FamilyAdapter
    opener: str  # how the template opens the user turn
    generation: str  # how the prompt must end
    placeholders: tuple[str, ...]  # the family's image placeholders: none may be left
    stop: str  # what the template ends an assistant turn with
    thinking: bool = False


CASES = [
    Case("qwen2.5-vl-3b-instruct.jinja", QWEN2_VL, "<|im_start|>user\n",
         "<|im_start|>assistant\n", ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"),
         "<|im_end|>"),
    Case("qwen3-vl-instruct.jinja", QWEN3_VL, "<|im_start|>user\n", "<|im_start|>assistant\n",
         ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"), "<|im_end|>"),
    Case("qwen3-vl-thinking.jinja", QWEN3_VL, "<|im_start|>user\n",
         "<|im_start|>assistant\n<think>\n\n</think>\n\n",
         ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"), "<|im_end|>", thinking=True),
    Case("gemma-3-4b-it.jinja", GEMMA3, "<start_of_turn>user\n", "<start_of_turn>model\n",
         ("<start_of_image>", "<end_of_image>"), "<end_of_turn>"),
    Case("smolvlm2-2.2b-instruct.jinja", SMOLVLM, "<|im_start|>User:", "Assistant:",
         ("<image>", "<fake_token_around_image>", "<global-img>"), "<end_of_utterance>"),
    Case("internvl3-2b-hf.jinja", INTERNVL, "<|im_start|>user\n", "<|im_start|>assistant\n",
         ("<image>", "<img>", "</img>", "<IMG_CONTEXT>"), "<|im_end|>"),
]
IDS = [case.file.removesuffix(".jinja") for case in CASES]


def template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def test_every_template_file_is_listed_in_sources():
    sources = (TEMPLATES / "SOURCES.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in TEMPLATES.glob("*.jinja"))
    assert files == sorted(case.file for case in CASES)
    for name in files:
        assert f"`{name}`" in sources


# --------------------------------------------------------------------------------------------
# Rendering real templates


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_image_marker_sits_where_the_template_puts_the_image(case):
    prompt = case.family.render_prompt(template(case.file), QUESTION, MARKER, with_image=True)
    assert prompt.count(MARKER) == 1
    opener = prompt.rindex(case.opener)
    marker = prompt.index(MARKER)
    question = prompt.index(QUESTION)
    assert opener + len(case.opener) <= marker < question
    # only the family's own padding between the opener, the marker and the question
    between = prompt[opener + len(case.opener) : marker] + prompt[marker + len(MARKER) : question]
    assert between.strip() == ""
    for placeholder in case.placeholders:
        assert placeholder not in prompt
    assert prompt.endswith(case.generation)
    assert prompt.count(case.generation) == 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_follow_up_renders_the_earlier_turn_and_keeps_the_image_prefix(case):
    earlier = [("How many balls?", "Two balls.")]
    single = case.family.render_prompt(template(case.file), QUESTION, MARKER, with_image=True)
    follow = case.family.render_prompt(template(case.file), "Why red?", MARKER,
                                       with_image=True, earlier=earlier)
    assert follow.count(MARKER) == 1
    # the text up to the image is a single question's: the kept image can be reused
    assert follow.partition(MARKER)[0] == single.partition(MARKER)[0]
    at = [follow.index(text) for text in (MARKER, "How many balls?", "Two balls.", "Why red?")]
    assert at == sorted(at)
    answer_end = follow.index("Two balls.") + len("Two balls.")
    assert follow[answer_end:].lstrip().startswith(case.stop)  # the answer's turn is closed
    assert follow.endswith(case.generation)
    for placeholder in case.placeholders:
        assert placeholder not in follow


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_text_only_turn_has_no_marker(case):
    prompt = case.family.render_prompt(template(case.file), QUESTION, MARKER, with_image=False)
    assert MARKER not in prompt
    assert prompt.index(case.opener) < prompt.index(QUESTION)
    assert prompt.endswith(case.generation)
    for placeholder in case.placeholders:
        assert placeholder not in prompt


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_stop_token_is_what_the_template_ends_turns_with(case):
    assert case.family.stop_tokens[0] == case.stop
    conversation = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello there"}]},
    ]
    rendered = render_chat(template(case.file), conversation, add_generation_prompt=False,
                           bos_token="", eos_token="")
    after_answer = rendered[rendered.index("Hello there") + len("Hello there"):]
    assert after_answer.startswith(case.stop)
    after_question = rendered[rendered.index("Hi") + 2:]
    assert after_question.startswith(case.stop)


def test_a_thinking_template_gets_its_think_block_closed_and_instruct_gets_none():
    thinking = QWEN3_VL.render_prompt(template("qwen3-vl-thinking.jinja"), QUESTION, MARKER,
                                      with_image=True)
    assert thinking.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert thinking.count("<think>") == 1 and thinking.count("</think>") == 1
    # the raw template leaves it open: the model would think before the stage grammar
    raw = render_chat(template("qwen3-vl-thinking.jinja"),
                      [{"role": "user", "content": QUESTION}])
    assert raw.endswith("<think>\n")
    instruct = QWEN3_VL.render_prompt(template("qwen3-vl-instruct.jinja"), QUESTION, MARKER,
                                      with_image=True)
    assert "<think>" not in instruct


def test_qwen_prompts_match_the_format_in_the_qwen_model_cards():
    prompt = QWEN2_VL.render_prompt(template("qwen2.5-vl-3b-instruct.jinja"), QUESTION, MARKER,
                                    with_image=True)
    assert prompt == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                      f"<|im_start|>user\n{MARKER}{QUESTION}<|im_end|>\n"
                      "<|im_start|>assistant\n")


def test_gemma_gets_the_blank_lines_its_processor_puts_around_the_image():
    prompt = GEMMA3.render_prompt(template("gemma-3-4b-it.jinja"), QUESTION, MARKER,
                                  with_image=True)
    assert prompt == (f"<start_of_turn>user\n\n\n{MARKER}\n\n{QUESTION}<end_of_turn>\n"
                      "<start_of_turn>model\n")
    with_bos = GEMMA3.render_prompt(template("gemma-3-4b-it.jinja"), QUESTION, MARKER,
                                    with_image=True, bos_token="<bos>")
    assert with_bos == "<bos>" + prompt


def test_the_prompted_instruction_survives_every_template():
    text = user_text(QUESTION, StageMode.PROMPTED)
    for case in CASES:
        prompt = case.family.render_prompt(template(case.file), text, MARKER, with_image=True)
        assert "<SUMMARY>...</SUMMARY>" in prompt
        assert prompt.index(MARKER) < prompt.index(QUESTION)


def test_a_placeholder_typed_in_the_question_is_left_alone():
    question = "Is there an <image> tag in the page?"
    prompt = SMOLVLM.render_prompt(template("smolvlm2-2.2b-instruct.jinja"), question, MARKER,
                                   with_image=True)
    assert prompt.count(MARKER) == 1
    assert prompt.index(MARKER) < prompt.index(question)


def test_a_string_only_template_gets_the_image_as_string_content():
    # InternVL's original templates concatenate content as a string, as this one does
    prompt = INTERNVL.render_prompt(CHATML_TEMPLATE, QUESTION, MARKER, with_image=True)
    assert prompt == f"<|im_start|>user\n{MARKER}\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"


def test_the_chatml_and_generic_adapters_put_the_marker_first():
    expected = f"<|im_start|>user\n{MARKER}\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    assert CHATML.render_prompt(CHATML_TEMPLATE, QUESTION, MARKER, with_image=True) == expected
    assert GENERIC.render_prompt(CHATML_TEMPLATE, QUESTION, MARKER, with_image=True) == expected


def test_a_template_that_drops_the_image_is_an_error():
    silent = "{% for m in messages %}{{ m['content'][-1]['text'] }}{% endfor %}"
    with pytest.raises(ChatTemplateError, match="image"):
        QWEN2_VL.render_prompt(silent, QUESTION, MARKER, with_image=True)
    with pytest.raises(ChatTemplateError, match="no chat template"):
        GEMMA3.render_prompt(None, QUESTION, MARKER, with_image=True)


def test_adapter_facts():
    assert QWEN2_VL.uses_mrope and QWEN3_VL.uses_mrope
    assert not any(f.uses_mrope for f in (GEMMA3, SMOLVLM, INTERNVL, CHATML, GENERIC))
    assert QWEN2_VL.max_image_pixels == 1280 * 28 * 28
    assert QWEN3_VL.max_image_pixels == 1280 * 32 * 32
    assert GEMMA3.max_image_pixels == DEFAULT_MAX_IMAGE_PIXELS
    assert GENERIC.native_template and not CHATML.native_template
    assert family_named("gemma3") is GEMMA3
    with pytest.raises(KeyError):
        family_named("nope")


# --------------------------------------------------------------------------------------------
# The sandbox


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ raise_exception.__globals__ }}",
    "{% set x = messages.append(1) %}",
    "{{ messages.__class__ }}",
])
def test_the_sandbox_refuses_escapes(source):
    with pytest.raises(ChatTemplateError, match="sandbox"):
        render_chat(source, [{"role": "user", "content": "hi"}])


def test_a_template_that_raises_gives_a_clear_error():
    source = template("gemma-3-4b-it.jinja")
    two_users = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(ChatTemplateError,
                       match="refused the conversation: Conversation roles must alternate"):
        render_chat(source, two_users)
    with pytest.raises(StagewiseError, match="refused the conversation: no tools here"):
        render_chat("{{ raise_exception('no tools here') }}", [])


@pytest.mark.parametrize(("source", "problem"), [
    ("{% if %}", "not valid Jinja"),
    ("{{ 'a' * 10**9 }}", "sandbox"),
    ("{% for i in range(10**9) %}{% endfor %}", "failed"),
    ("{% for i in range(100000) %}{{ 'abcdefghijklmnopqrstuvwxyz' }}{% endfor %}",
     f"more than {MAX_OUTPUT_CHARS:,}"),
    ("x" * (MAX_TEMPLATE_CHARS + 1), "refused"),
    ("{{ messages[5]['content'] }}", "failed"),
    ("   ", "no chat template"),
])
def test_bad_templates_fail_with_a_message(source, problem):
    with pytest.raises(ChatTemplateError, match=problem):
        render_chat(source, [{"role": "user", "content": "hi"}])


def test_the_sandbox_has_what_hugging_face_templates_use():
    source = ("{{ strftime_now('%Y') | length }}|{{ {'k': 'é<'} | tojson }}|"
              "{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}|"
              "{% generation %}kept{% endgeneration %}|{{ undefined_flag is defined }}")
    assert render_chat(source, []) == '4|{"k": "é<"}|02|kept|False'


# --------------------------------------------------------------------------------------------
# Detection from GGUF metadata


def text_meta(arch: str, template_file: str | None = None, source: str | None = None) -> dict:
    meta: dict[str, object] = {"general.architecture": arch, "general.name": "Test",
                               f"{arch}.embedding_length": 2048}
    if template_file:
        meta["tokenizer.chat_template"] = template(template_file)
    if source:
        meta["tokenizer.chat_template"] = source
    return meta


def clip_meta(projector: str, key: str = "clip.projector_type") -> dict:
    return {"general.architecture": "clip", "clip.has_vision_encoder": True, key: projector,
            "clip.vision.image_size": 448, "clip.vision.patch_size": 14}


@pytest.mark.parametrize(("text", "projector", "family"), [
    (text_meta("qwen2vl", "qwen2.5-vl-3b-instruct.jinja"), clip_meta("qwen2.5vl_merger"),
     QWEN2_VL),
    (text_meta("qwen2vl"), clip_meta("qwen2vl_merger"), QWEN2_VL),
    (text_meta("qwen3vl", "qwen3-vl-instruct.jinja"), clip_meta("qwen3vl_merger"), QWEN3_VL),
    (text_meta("qwen3vlmoe", "qwen3-vl-thinking.jinja"), clip_meta("qwen3vl_merger"), QWEN3_VL),
    (text_meta("gemma3", "gemma-3-4b-it.jinja"), clip_meta("gemma3"), GEMMA3),
    (text_meta("llama", "smolvlm2-2.2b-instruct.jinja"), clip_meta("idefics3"), SMOLVLM),
    (text_meta("qwen2", "internvl3-2b-hf.jinja"), clip_meta("internvl"), INTERNVL),
    (text_meta("qwen2", "internvl3-2b-hf.jinja"),
     clip_meta("internvl", "clip.vision.projector_type"), INTERNVL),
    # the projector decides over the template: InternVL's template is ChatML
    (text_meta("llama", source=CHATML_TEMPLATE), clip_meta("internvl"), INTERNVL),
    # the tiny test model: llama + LLaVA-style "mlp" projector + ChatML template
    (text_meta("llama", source=CHATML_TEMPLATE), clip_meta("mlp"), CHATML),
    # without the projector, the architecture and then the template decide
    (text_meta("qwen3vl", "qwen3-vl-instruct.jinja"), None, QWEN3_VL),
    (text_meta("gemma3"), {}, GEMMA3),
    (text_meta("llama", "smolvlm2-2.2b-instruct.jinja"), None, SMOLVLM),
    (text_meta("qwen2vl", "qwen3-vl-thinking.jinja"), None, QWEN2_VL),
    (text_meta("unknownarch", "qwen3-vl-thinking.jinja"), None, QWEN3_VL),
    # nothing known: llama.cpp's own handling
    (text_meta("llama", source="{{ messages[0]['content'] }}"), clip_meta("mlp"), GENERIC),
    (text_meta("llama"), clip_meta("ldpv2"), GENERIC),
    ({}, None, GENERIC),
])
def test_detection_picks_the_family_from_gguf_metadata(text, projector, family):
    assert detect_family(text, projector) is family
    assert family.matches(text, projector) or family is GENERIC


def test_detection_on_the_tiny_pair_files(tiny_pair):
    text, projector = inspect_gguf(tiny_pair.model), inspect_gguf(tiny_pair.mmproj)
    assert text.architecture == "llama" and projector.projector_type == "mlp"
    assert detect_family(text.metadata, projector.metadata) is CHATML


# --------------------------------------------------------------------------------------------
# Images


def prepared(width: int, height: int) -> PreparedImage:
    image = Image.new("RGB", (width, height), (200, 30, 30))
    return PreparedImage(image.tobytes(), width, height, width, height, "<test>", "0" * 64)


def test_fit_pixels_downscales_keeping_the_aspect_ratio():
    big = prepared(4000, 1000)
    small = fit_pixels(big, 1280 * 28 * 28)
    assert small.width * small.height <= 1280 * 28 * 28
    assert abs(small.width / small.height - 4.0) < 0.02
    assert len(small.rgb) == small.width * small.height * 3
    assert (small.original_width, small.original_height) == (4000, 1000)
    assert small.source == big.source and small.sha256 == big.sha256
    assert Image.frombytes("RGB", (small.width, small.height), small.rgb).getpixel((5, 5)) == (
        200, 30, 30)


def test_fit_pixels_leaves_images_that_fit():
    image = prepared(100, 50)
    assert fit_pixels(image, 5000) is image
    assert fit_pixels(image, None) is image
    assert fit_pixels(prepared(1, 3), 2).width * fit_pixels(prepared(1, 3), 2).height <= 2
    with pytest.raises(ValueError):
        fit_pixels(image, 0)


# --------------------------------------------------------------------------------------------
# The engine on the tiny model


def test_the_tiny_model_prompt_is_unchanged(engine):
    assert engine.family == "chatml"
    assert engine.stop_texts == ("<|im_end|>",)
    assert engine.max_image_pixels == DEFAULT_MAX_IMAGE_PIXELS
    for text in ("What is red?", user_text("Why?", StageMode.PROMPTED), "a\n\nb  "):
        for with_image in (True, False):
            assert engine.chat_prompt(text, with_image=with_image) == (
                engine.prompts.native_chat_prompt(text, with_image=with_image))
    assert engine.chat_prompt("Hi?") == (
        f"<|im_start|>user\n{engine.media_marker}\nHi?<|im_end|>\n<|im_start|>assistant\n")


def test_a_broken_template_falls_back_to_llama_cpp(engine, monkeypatch):
    monkeypatch.setattr(engine.prompts, "template", "{{ ''.__class__ }}")
    assert engine.chat_prompt("Hi?") == engine.prompts.native_chat_prompt("Hi?")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_family_prompt_splits_into_text_image_text(engine, image, case):
    """libmtmd finds exactly one image in each family's prompt (tokenized by the tiny model)."""
    prompt = case.family.render_prompt(template(case.file), QUESTION, engine.media_marker,
                                       with_image=True)
    with Bitmap(image) as bitmap:
        tokenized = engine.tokenize_prompt(prompt, bitmap)
    try:
        assert [c.is_image for c in tokenized.chunks][:2] == [False, True]
        assert sum(c.is_image for c in tokenized.chunks) == 1
        assert tokenized.extra  # the question and the turn's end, after the image
    finally:
        tokenized.close()


def test_the_search_hands_libmtmd_an_image_within_the_family_cap(engine, image, monkeypatch):
    seen: list[tuple[int, int]] = []

    class Recording(Bitmap):
        def __init__(self, images: PreparedImage | tuple[PreparedImage, ...]) -> None:
            super().__init__(images)
            seen.extend((each.width, each.height) for each in self.images)

    monkeypatch.setattr("stagewise.models.reasoning.llama_backend.Bitmap", Recording)
    monkeypatch.setattr(engine, "adapter", dataclasses.replace(engine.adapter,
                                                               max_image_pixels=1500))
    events = list(StageSearch(LlamaBackend(engine), SearchSettings(beam=1, max_stage_tokens=4)).run(
        image, QUESTION))
    assert events[-1].result.status == "finished"
    assert len(seen) == 1
    width, height = seen[0]
    assert width * height <= 1500 < image.width * image.height
