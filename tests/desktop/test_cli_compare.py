"""``stagewise ask --compare A B`` and ``ask --image A --image B`` as a person runs them: real
processes, real llama.cpp (the shipped demo model, a Qwen2.5-VL-shaped pair on Qwen2's real
tokenizer), a real llama-server on loopback, and the history they write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from stagewise.models.library.demo import demo_pair, example_image
from stagewise.models.recipes.real_vocab import qwen_real_vocabulary_pair
from stagewise.models.storage.history import History
from tests.desktop.test_cli import assert_clean_failure, stagewise

QUESTION = "How many red circles are there?"


def compare(*extra: str | Path, data_dir: Path) -> dict:
    result = stagewise("ask", "--image", example_image(), "--question", QUESTION,
                       "--max-stage-tokens", "32", "--json", *extra, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compare_on_the_demo_model_prints_both_and_keeps_a_pair(tmp_path):
    data = compare("--compare", "beam=1", "beam=2,select=judge", data_dir=tmp_path)
    first, second = data["runs"]
    assert [first["side"], second["side"]] == ["A", "B"]
    assert (first["result"]["beam"], second["result"]["beam"]) == (1, 2)
    assert second["result"]["select"] == "judge"
    assert first["result"]["timings"]["image_encodes"] == 1
    assert second["result"]["timings"]["image_encodes"] == 0  # one model: one encode
    assert set(data["divergence"]) == {"stage", "offset", "same"}
    assert first["memory"] is not None
    with History(tmp_path / "history") as history:
        older, newer = sorted(history.entries(), key=lambda e: e.id)
        assert (older.compared_with, newer.compared_with) == (newer.id, older.id)
        assert (older.beam, newer.beam) == (1, 2)


def test_compare_prints_two_columns_with_the_divergence_marked(tmp_path):
    result = stagewise("ask", "--image", example_image(), "--question", QUESTION,
                       "--max-stage-tokens", "32", "--compare", "seed=1", "beam=2,seed=1",
                       data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for title in ("== Summary ==", "== Caption ==", "== Reasoning ==", "== Conclusion =="):
        assert title in out
    assert "A: seed=1" in out and "B: beam=2,seed=1" in out
    assert " │ " in out
    assert ("diverged here" in out) != ("the same in every stage" in out)


@pytest.mark.parametrize(("configs", "words"), [
    (("beam=1", "bem=2"), ["unknown key 'bem'"]),
    (("beam=99", "beam=1"), ["beam", "from 1 to 16"]),
    (("select=nobody", "beam=1"), ["select must be one of"]),
])
def test_a_bad_configuration_fails_in_one_line_before_loading(tmp_path, configs, words):
    result = stagewise("ask", "--image", example_image(), "--question", QUESTION,
                       "--compare", *configs, data_dir=tmp_path)
    assert_clean_failure(result, "compare configuration", *words)
    assert not (tmp_path / "history").exists()  # nothing started


def test_compare_on_a_remote_llama_server(tmp_path, demo_server):
    data = compare("--server", demo_server.url, "--stage-mode", "native",
                   "--compare", "beam=1", "beam=2", data_dir=tmp_path)
    assert [r["result"]["status"] for r in data["runs"]] == ["finished", "finished"]
    assert all(r["model"].startswith("llama-server") for r in data["runs"])
    refused = stagewise("ask", "--image", example_image(), "--question", QUESTION,
                        "--server", demo_server.url, "--compare", "beam=1", "model=x.gguf",
                        data_dir=tmp_path)
    assert_clean_failure(refused, "model= key cannot be used with --server")


@pytest.fixture
def second_image(tmp_path: Path) -> Path:
    path = tmp_path / "blue.png"
    picture = Image.new("RGB", (40, 30), (10, 30, 220))
    picture.paste((230, 20, 20), (4, 4, 16, 16))
    picture.save(path)
    return path


def test_two_images_in_one_question_on_a_qwen25_vl_pair(tmp_path, second_image):
    pair = qwen_real_vocabulary_pair("qwen2.5-vl")
    result = stagewise("ask", "--model", pair.model, "--mmproj", pair.mmproj,
                       "--image", example_image(), "--image", second_image,
                       "--question", "Which picture has more red?", "--max-stage-tokens", "6",
                       "--ctx", "4096", "--json", "--no-prefix-cache", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "finished"
    assert data["timings"]["image_encodes"] == 2
    with History(tmp_path / "history") as history:
        [entry] = history.entries()
        stored = history.load(entry.id)
        assert [name for _, name in stored.images] == ["example.png", "blue.png"]


def test_two_images_for_a_model_that_takes_one_fail_in_one_line(tmp_path, second_image):
    demo = demo_pair()
    assert demo is not None
    result = stagewise("ask", "--model", demo.model, "--image", example_image(), "--image",
                       second_image, "--question", QUESTION, data_dir=tmp_path)
    assert_clean_failure(result, "takes one image per question, not 2")
    with History(tmp_path / "history") as history:
        assert history.entries() == []  # nothing recorded for a refused question


def test_compare_two_models_loads_each_once(tmp_path, tiny_pair):
    data = compare("--compare", "beam=1", f"model={tiny_pair.model},mmproj={tiny_pair.mmproj}",
                   data_dir=tmp_path)
    first, second = data["runs"]
    assert first["model"] == "stagewise-demo-Q8_0.gguf"
    assert second["model"] == tiny_pair.model.name
    assert second["configuration"]["model"] == str(tiny_pair.model)
    # each model encodes the image for itself
    assert [r["result"]["timings"]["image_encodes"] for r in data["runs"]] == [1, 1]
    with History(tmp_path / "history") as history:
        assert sorted(e.model for e in history.entries()) == sorted(
            ["stagewise-demo-Q8_0.gguf", tiny_pair.model.name])
