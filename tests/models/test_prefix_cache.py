"""The image ready before the question: prepared on arrival, kept on disk, and never a
different answer for it.

Real tiny GGUF pairs through real llama.cpp; the cache is a real folder. A full disk is
the one fault made up: the write raises ENOSPC as a full file system's write does.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import struct
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from stagewise.models.build.tiny_vlm import TINY, write_tiny_pair
from stagewise.models.errors import Cancelled
from stagewise.models.events import AnswerFinished, SearchResult
from stagewise.models.inference import prefix_cache as prefix_cache_module
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage, load_image
from stagewise.models.inference.prefix_cache import MAGIC, PrefixCache
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.session import Session, plan
from stagewise.models.stages import PROMPTED_INSTRUCTION, user_text
from tests.models.test_families import CASES, IDS, MARKER, template

SETTINGS = SearchSettings(beam=2, max_stage_tokens=12, max_judge_tokens=8, seed=11)
QUESTION = "Which shape is blue?"
ONE_PASS = dataclasses.replace(SETTINGS, beam=1)
CACHE_LOG = "stagewise.prefix_cache"


def load_of(pair):
    return plan(pair.model, pair.mmproj, EngineSettings(n_ctx=4096, threads=1))


def answer(session: Session, image: PreparedImage, question: str = QUESTION,
           settings: SearchSettings = SETTINGS) -> SearchResult:
    events = list(session.ask(image, question, settings))
    assert isinstance(events[-1], AnswerFinished)
    return events[-1].result


def same_answer(a: SearchResult, b: SearchResult) -> bool:
    """Everything the search chose and sampled, token for token."""
    return (a.answer_text == b.answer_text and a.chosen == b.chosen
            and [(c.text, c.tokens, round(c.mean_logprob, 6)) for c in a.candidates]
            == [(c.text, c.tokens, round(c.mean_logprob, 6)) for c in b.candidates]
            and a.verdicts == b.verdicts)


def cache_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == CACHE_LOG and r.levelno >= logging.WARNING]


def picture(tmp_path: Path, index: int) -> PreparedImage:
    """A small picture of its own for each index."""
    path = tmp_path / f"picture-{index}.png"
    image = Image.new("RGB", (48, 40), (index * 5 % 256, 120, 255 - index * 5 % 256))
    ImageDraw.Draw(image).rectangle((index % 20, 4, index % 20 + 12, 30), fill="black")
    image.save(path)
    return load_image(path)


@pytest.fixture(scope="module")
def other_pair(tmp_path_factory):
    """A pair of TINY's shape with other weights: its cells would load without a word
    from llama.cpp, and mean nothing."""
    return write_tiny_pair(tmp_path_factory.mktemp("other_pair"), dataclasses.replace(
        TINY, name="other"), seed=5)


@pytest.fixture(scope="module")
def deeper_pair(tmp_path_factory):
    """A pair with one more layer: llama.cpp itself refuses its cells for TINY."""
    return write_tiny_pair(tmp_path_factory.mktemp("deeper_pair"), dataclasses.replace(
        TINY, name="deeper", n_layer=3), seed=5)


# -- answers are the same however the image got there -----------------------------------------


def test_answers_are_identical_with_and_without_the_cache(tiny_pair, image, tmp_path):
    load = load_of(tiny_pair)
    with Session(load) as plain:
        without = answer(plain, image)
    cache = PrefixCache(tmp_path / "cache")
    with Session(load, prefix_cache=cache) as first:
        encoded = answer(first, image)
    assert len(cache.entries()) == 1  # written after the answer
    with Session(load, prefix_cache=cache) as second:
        cached = answer(second, image)
        again = answer(second, image)
    assert without.timings.prefix_from == "encoded" and without.timings.image_encodes == 1
    assert encoded.timings.prefix_from == "encoded" and encoded.timings.encode_s > 0
    assert cached.timings.prefix_from == "cache" and cached.timings.image_encodes == 0
    assert cached.timings.cache_loads == 1 and cached.timings.encode_s == 0
    assert again.timings.prefix_from == "memory"
    assert same_answer(without, encoded) and same_answer(without, cached)
    assert same_answer(without, again)
    json_prefix = cached.to_json()["timings"]["prefix"]
    assert json_prefix["from"] == "cache" and json_prefix["encode_s"] == 0


def test_a_prepared_image_leaves_only_the_question_to_evaluate(tiny_pair, image, tmp_path):
    load = load_of(tiny_pair)
    with Session(load) as plain:
        reference = answer(plain, image)
    cache = PrefixCache(tmp_path / "cache")
    with Session(load, prefix_cache=cache) as session:
        report = session.prepare(image)
        assert report.ready and report.origin == "encoded" and report.saved
        assert len(cache.entries()) == 1  # a prepared image is written at once
        again = session.prepare(image)
        assert again.origin == "memory" and again.encode_s == report.encode_s
        result = answer(session, image)
    assert result.timings.image_encodes == 0 and result.timings.prefix_from == "memory"
    assert result.timings.prompt_tokens < reference.timings.prompt_tokens
    assert same_answer(reference, result)
    with Session(load, prefix_cache=cache) as restarted:  # the app restarted
        assert restarted.prepare(image).origin == "cache"
        assert same_answer(reference, answer(restarted, image))


def test_a_prepared_image_serves_a_follow_up_and_another_image_replaces_it(
        tiny_pair, image, tmp_path):
    load = load_of(tiny_pair)
    with Session(load) as session:
        session.prepare(image)
        first = answer(session, image)
        other = picture(tmp_path, 1)
        assert session.prepare(other).origin == "encoded"
        about_other = answer(session, other, "What colour is it?")
        back = answer(session, image)
    assert first.timings.image_encodes == 0 and about_other.timings.image_encodes == 0
    assert back.timings.image_encodes == 1  # no disk cache: encoded again
    assert same_answer(first, back)


def test_a_cancelled_preparation_stops_inside_the_encode_and_keeps_nothing(
        tiny_pair, image):
    load = load_of(tiny_pair)
    with Session(load) as session:
        engine = session.engine
        assert engine is not None

        class SetOnceEncoding(threading.Event):
            """Set from the moment the encode first looks at it: a stop mid-encode."""

            def is_set(self) -> bool:
                return engine.encode_abort.checks > checks_before or super().is_set()

        checks_before = engine.encode_abort.checks
        stops_before = engine.encode_abort.stops
        with pytest.raises(Cancelled):
            session.prepare(image, SetOnceEncoding())
        assert engine.encode_abort.stops == stops_before + 1
        result = answer(session, image)  # nothing half-made was kept
    assert result.timings.image_encodes == 1
    with Session(load) as fresh:
        assert same_answer(result, answer(fresh, image))


def test_a_preparation_cancelled_before_it_starts_encodes_nothing(tiny_pair, image):
    with Session(load_of(tiny_pair)) as session:
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(Cancelled):
            session.prepare(image, cancel)
        assert session.engine is not None and session.engine.stats.image_encodes == 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_family_template_puts_the_same_text_before_the_image(case):
    """What makes preparing possible: the prompt up to the image does not depend on the
    question or the stage mode, for each family's published template."""
    heads = {case.family.render_prompt(template(case.file), user_text(question, mode),
                                       MARKER, with_image=True).partition(MARKER)[0]
             for question in ("How many?", "Is the <b>cat</b> left of the dog?")
             for mode in StageMode}
    assert len(heads) == 1


def test_a_template_with_the_question_before_the_image_is_not_prepared(image, tmp_path):
    """A template that writes something of the question (here its length) before the
    image: prepared cells would fit no question, so the image is encoded when asked."""
    counting = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n('"
        " + (message['content'] | length | string) + ' characters)\\n'"
        " + message['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    pair = write_tiny_pair(tmp_path / "pair", TINY, chat_template=counting)
    cache = PrefixCache(tmp_path / "cache")
    with Session(load_of(pair), prefix_cache=cache) as session:
        assert session.engine is not None and session.engine.family == "chatml"
        report = session.prepare(image)
        assert not report.ready and "before the image" in report.reason
        assert session.engine.stats.image_encodes == 0
        # one pass: a judge's prompts could not share the image under such a template
        result = answer(session, image, settings=dataclasses.replace(SETTINGS, beam=1))
    assert result.status == "finished" and result.timings.prefix_from == "encoded"


# -- bad entries and a full disk fall back to encoding, with one line ------------------------


def make_entry(pair, image, folder: Path) -> Path:
    cache = PrefixCache(folder)
    with Session(load_of(pair), prefix_cache=cache) as session:
        assert session.prepare(image).saved
    (entry,) = cache.entries()
    return entry


def test_an_entry_made_by_another_model_is_discarded_and_the_image_encoded(
        tiny_pair, other_pair, image, tmp_path, caplog):
    mine = make_entry(tiny_pair, image, tmp_path / "mine")
    foreign = make_entry(other_pair, image, tmp_path / "foreign")
    mine.write_bytes(foreign.read_bytes())  # the other model's cells under my key
    caplog.set_level(logging.INFO)
    cache = PrefixCache(tmp_path / "mine")
    with Session(load_of(tiny_pair), prefix_cache=cache) as session:
        result = answer(session, image)
    assert result.timings.prefix_from == "encoded"
    (line,) = cache_lines(caplog)
    assert "another model" in line and "encoding the image" in line
    with Session(load_of(tiny_pair)) as plain:
        assert same_answer(plain_answer := answer(plain, image), result), plain_answer
    # the bad entry is gone and a good one took its place
    with Session(load_of(tiny_pair), prefix_cache=cache) as session:
        assert answer(session, image).timings.prefix_from == "cache"


def test_an_entry_forged_for_my_key_is_refused_by_llama_cpp(
        tiny_pair, deeper_pair, image, tmp_path, caplog):
    """A header that claims my key over another shape's cells: the checks of the header
    pass, llama.cpp's own check of the layers does not."""
    mine = make_entry(tiny_pair, image, tmp_path / "mine")
    foreign = make_entry(deeper_pair, image, tmp_path / "foreign")
    my_header = read_header(mine)
    data = foreign.read_bytes()
    header = read_header(foreign)
    payload = data[len(MAGIC) + 4 + header_length(data):]
    header["key"] = my_header["key"]
    header["positions"] = my_header["positions"]
    raw = json.dumps(header).encode()
    mine.write_bytes(MAGIC + struct.pack("<I", len(raw)) + raw + payload)
    caplog.set_level(logging.INFO)
    with Session(load_of(tiny_pair), prefix_cache=PrefixCache(tmp_path / "mine")) as session:
        result = answer(session, image)
    assert result.timings.prefix_from == "encoded"
    (line,) = cache_lines(caplog)
    assert "llama.cpp refused" in line


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "empty"])
def test_a_damaged_entry_is_discarded_and_the_image_encoded(tiny_pair, image, tmp_path,
                                                            caplog, damage):
    entry = make_entry(tiny_pair, image, tmp_path / "cache")
    data = bytearray(entry.read_bytes())
    if damage == "truncated":
        data = data[: len(data) - 1000]
    elif damage == "flipped":
        data[-50] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(b"\x00not an entry" * 100)
    else:
        data = bytearray()
    entry.write_bytes(bytes(data))
    caplog.set_level(logging.INFO)
    with Session(load_of(tiny_pair), prefix_cache=PrefixCache(tmp_path / "cache")) as session:
        result = answer(session, image)
    assert result.timings.prefix_from == "encoded" and result.timings.image_encodes == 1
    (line,) = cache_lines(caplog)
    assert entry.name in line and "encoding the image" in line


def test_a_full_disk_loses_the_entry_and_nothing_else(tiny_pair, image, tmp_path, caplog,
                                                      monkeypatch):
    def full_disk(path, parts):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(prefix_cache_module, "_write_entry", full_disk)
    caplog.set_level(logging.INFO)
    cache = PrefixCache(tmp_path / "cache")
    load = load_of(tiny_pair)
    with Session(load, prefix_cache=cache) as session:
        first = answer(session, image)
    assert first.status == "finished" and first.timings.prefix_from == "encoded"
    (line,) = cache_lines(caplog)
    assert "No space left on device" in line and "encoded again next time" in line
    assert cache.entries() == [] and list(cache.folder.iterdir()) == []
    with Session(load, prefix_cache=cache) as session:
        assert answer(session, image).timings.prefix_from == "encoded"
    with Session(load) as plain:
        assert same_answer(answer(plain, image), first)


def test_a_full_disk_on_a_real_write_leaves_no_temporary_file(tiny_pair, image, tmp_path,
                                                              monkeypatch, caplog):
    """The real write path, failing part-way as a full disk makes it fail."""
    real_fdopen = prefix_cache_module.os.fdopen

    class FullFile:
        def __init__(self, fd, mode):
            self.file = real_fdopen(fd, mode)

        def write(self, data):
            self.file.write(bytes(data)[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(prefix_cache_module.os, "fdopen", FullFile)
    caplog.set_level(logging.INFO)
    cache = PrefixCache(tmp_path / "cache")
    with Session(load_of(tiny_pair), prefix_cache=cache) as session:
        assert session.prepare(image).saved is False
        assert answer(session, image).timings.prefix_from == "memory"
    assert list(cache.folder.iterdir()) == []
    assert len(cache_lines(caplog)) == 1


# -- the cap ------------------------------------------------------------------------------


def test_the_cap_holds_over_fifty_images_and_the_least_recently_used_go(tiny_pair,
                                                                        tmp_path):
    probe = PrefixCache(tmp_path / "probe")
    entry = make_entry(tiny_pair, picture(tmp_path, 0), probe.folder)
    size = entry.stat().st_size
    cache = PrefixCache(tmp_path / "cache", cap_bytes=int(size * 4.5))  # four entries
    settings = dataclasses.replace(SETTINGS, beam=1, max_stage_tokens=4)
    pictures = [picture(tmp_path, i) for i in range(50)]
    with Session(load_of(tiny_pair), prefix_cache=cache) as session:
        for i, each in enumerate(pictures):
            result = answer(session, each, settings=settings)
            assert result.timings.prefix_from == "encoded"
            assert cache.size() <= cache.cap_bytes
            assert len(cache.entries()) == min(i + 1, 4)
            if i == 47:  # asked again from disk: the most recently used now
                with Session(load_of(tiny_pair), prefix_cache=cache) as other:
                    assert answer(other, pictures[45], settings=settings
                                  ).timings.prefix_from == "cache"
    with Session(load_of(tiny_pair), prefix_cache=cache) as session:
        found = {i: answer(session, pictures[i], settings=settings).timings.prefix_from
                 for i in (45, 49, 48, 0)}
    # 44 and 46 went when 48 and 49 came; 45 stayed, being used at 47
    assert found == {45: "cache", 49: "cache", 48: "cache", 0: "encoded"}
    assert cache.size() <= cache.cap_bytes


def test_an_entry_larger_than_the_cap_is_not_kept(tiny_pair, image, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cache = PrefixCache(tmp_path / "cache", cap_bytes=1000)
    with Session(load_of(tiny_pair), prefix_cache=cache) as session:
        assert session.prepare(image).saved is False
    assert cache.entries() == []
    assert any("exceed the cache's cap" in r.getMessage() for r in caplog.records)


def read_header(path: Path) -> dict:
    data = path.read_bytes()
    return json.loads(data[len(MAGIC) + 4: len(MAGIC) + 4 + header_length(data)])


def header_length(data: bytes) -> int:
    return struct.unpack("<I", data[len(MAGIC): len(MAGIC) + 4])[0]


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_m_rope_families_give_the_same_answer_from_the_cache(family, image, tmp_path):
    """Qwen2.5-VL's and Qwen3-VL's shapes (M-RoPE positions: an image spans fewer positions
    than it has embeddings) with their real vocabulary and template, through the cache."""
    from stagewise.models.recipes.real_vocab import qwen_real_vocabulary_pair

    pair = qwen_real_vocabulary_pair(family)
    load = load_of(pair)
    with Session(load) as plain:
        assert plain.engine is not None and plain.engine.uses_mrope
        reference = answer(plain, image, settings=ONE_PASS)
    cache = PrefixCache(tmp_path / "cache")
    with Session(load, prefix_cache=cache) as first:
        assert first.prepare(image).origin == "encoded"
        prepared = answer(first, image, settings=ONE_PASS)
    with Session(load, prefix_cache=cache) as second:
        cached = answer(second, image, settings=ONE_PASS)
    assert cached.timings.prefix_from == "cache"
    assert same_answer(reference, prepared) and same_answer(reference, cached)


def test_a_prompted_models_instruction_is_prepared_with_its_image(image, tmp_path):
    """A prompted model's stage instruction follows the image in every question's prompt:
    it is evaluated with the image when the image arrives, and kept with it on disk, so
    asking evaluates only the question's own tokens; the judge's prompts still share the
    image, a follow-up (whose first turn has no instruction there) still answers, and the
    answers are the same as without preparing."""
    from stagewise.models.reasoning.conversation import Turn
    from stagewise.models.recipes.real_vocab import qwen_real_vocabulary_pair

    pair = qwen_real_vocabulary_pair("qwen2.5-vl")
    load = load_of(pair)
    judged = dataclasses.replace(SETTINGS, select="judge")
    earlier = (Turn("What is it?", "A square."),)
    with Session(load) as plain:
        assert plain.engine is not None and plain.engine.stage_mode is StageMode.PROMPTED
        instruction = len(plain.engine.tokenize(PROMPTED_INSTRUCTION))
        reference = answer(plain, image, settings=judged)
        reference_follow = list(plain.ask(image, QUESTION, ONE_PASS, earlier=earlier))[-1]
    cache = PrefixCache(tmp_path / "cache")
    with Session(load, prefix_cache=cache) as session:
        report = session.prepare(image)
        assert report.origin == "encoded" and report.saved
        prepared = answer(session, image, settings=judged)
        follow = list(session.ask(image, QUESTION, ONE_PASS, earlier=earlier))[-1]
        after_follow = answer(session, image, settings=judged)
    assert prepared.timings.image_encodes == 0 and prepared.timings.prefix_from == "memory"
    assert 0 < prepared.timings.prompt_tokens < instruction  # the question's own tokens
    assert reference.timings.prompt_tokens > instruction
    assert same_answer(reference, prepared) and same_answer(reference, after_follow)
    assert same_answer(reference_follow.result, follow.result)
    with Session(load, prefix_cache=cache) as restarted:  # the instruction came from disk
        again = answer(restarted, image, settings=judged)
    assert again.timings.prefix_from == "cache" and again.timings.image_encodes == 0
    assert 0 < again.timings.prompt_tokens < instruction
    assert same_answer(reference, again)
