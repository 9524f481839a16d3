"""The shipped demo model: its files, its place as the default, parity, and real answers."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from PIL import Image

from stagewise.models.errors import StagewiseError
from stagewise.models.evaluation import read_items, score
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.gguf_check import check_pair
from stagewise.models.inference.images import load_image
from stagewise.models.library.defaults import DEMO_NOTE, default_model
from stagewise.models.library.demo import (
    DEMO_MMPROJ,
    DEMO_MODEL,
    demo_pair,
    demo_test_split,
    demo_validation_split,
)
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import StageSearch
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import STAGES

MAX_SHIPPED_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def shipped():
    pair = demo_pair()
    assert pair is not None, "the demo model is missing from models/data/demo/"
    return pair


def test_the_pair_is_small_valid_and_native(shipped):
    assert shipped.model.name == DEMO_MODEL and shipped.mmproj.name == DEMO_MMPROJ
    assert shipped.model.stat().st_size + shipped.mmproj.stat().st_size <= MAX_SHIPPED_BYTES
    check_pair(shipped.model, shipped.mmproj)  # raises on any mismatch
    with Engine(shipped.model, shipped.mmproj,
                EngineSettings(n_ctx=1024, n_seq_max=1, threads=1)) as e:
        assert e.stage_mode.value == "native"
        assert [len(e.tokenize(s.open_tag)) for s in STAGES] == [1] * 4


def test_it_is_the_default_model_and_says_what_it_knows(shipped):
    chosen = default_model()
    assert (chosen.model, chosen.mmproj, chosen.note) == (shipped.model, shipped.mmproj,
                                                          DEMO_NOTE)


def test_without_the_demo_there_is_no_built_in_model_and_it_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("STAGEWISE_DEMO_DIR", str(tmp_path / "none"))
    with pytest.raises(StagewiseError, match=r"no built-in model.*--model"):
        default_model()


def test_the_validation_puzzles_ship_and_are_not_test_puzzles(shipped):
    validation = read_items(demo_validation_split())
    test = read_items(demo_test_split())
    assert len(validation) == 20 and all(i.id.startswith("val-") for i in validation)

    def puzzles(items):  # a puzzle is its question about its picture
        return {(i.question, hashlib.sha256(i.image.read_bytes()).hexdigest()) for i in items}

    assert not puzzles(validation) & puzzles(test)


def test_the_test_split_is_held_out_llava_cot_data(shipped):
    split = demo_test_split()
    assert split is not None
    items = read_items(split)
    assert len(items) >= 500
    assert all(item.id.startswith("test-") for item in items)
    assert {item.kind for item in items} == {"count", "attribute", "spatial", "compare",
                                             "arithmetic", "choice"}


def test_the_demo_answers_puzzles_it_never_saw(shipped):
    """A single pass through the real search answers held-out questions far above chance.

    Measured on 500 test questions: 39% (README); these 24 give 9 on this machine. A
    random-weight model gets none: most answers are numbers or words, not yes or no.
    """
    items = read_items(demo_test_split(), limit=24)
    right = 0
    with Engine(shipped.model, shipped.mmproj,
                EngineSettings(n_ctx=8192, n_seq_max=3, threads=2)) as e:
        for i, item in enumerate(items):
            search = StageSearch(LlamaBackend(e), SearchSettings(beam=1, seed=i))
            result = list(search.run(load_image(item.image), item.question))[-1].result
            assert all(result.stages[s] for s in STAGES), result.answer_text
            right += score(result.conclusion, item)
    assert right >= 6, f"{right} of {len(items)}"


def test_shipped_pair_matches_pytorch(shipped):
    """The quantized weights read back into PyTorch give llama.cpp's logits."""
    pytest.importorskip("torch")
    from stagewise.models.recipes.demo.export import load_pair
    from stagewise.models.recipes.demo.parity import llama_logits, torch_logits

    items = read_items(demo_test_split(), limit=2)
    model = load_pair(shipped.model, shipped.mmproj)
    for item in items:
        pixels = np.asarray(Image.open(item.image).convert("RGB"))
        ll = llama_logits(shipped.model, shipped.mmproj, pixels, item.question)
        expected = torch_logits(model, pixels, ll)
        spread = float(expected.max() - expected.min())
        assert np.abs(ll.logits - expected).max() < 0.02 * spread
        top = [int(i) for i in itertools.islice(np.argsort(-expected), 3)]
        assert int(ll.logits.argmax()) == top[0]
