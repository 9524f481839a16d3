"""The image-token cap: what libmtmd is handed, what it makes of it, and the fit.

On the recipe's tiny Qwen2.5-VL-shaped pair (a real ``qwen2.5vl_merger`` projector, Qwen2's
real tokenizer; see tests/models/test_real_vocabularies.py), through real llama.cpp.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.families import GEMMA3, QWEN2_VL, QWEN3_VL, fit_tokens
from stagewise.models.inference.images import load_image
from stagewise.models.inference.mtmd_prompt import Bitmap
from stagewise.models.recipes.real_vocab import qwen_real_vocabulary_pair
from stagewise.models.session import plan
from tests.desktop.test_cli import stagewise


@pytest.fixture(scope="module")
def qwen_pair():
    return qwen_real_vocabulary_pair("qwen2.5-vl")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 900×600 picture: 672 tokens at Qwen2.5-VL's 28×28 pixels a token."""
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    image = Image.new("RGB", (900, 600), "white")
    ImageDraw.Draw(image).ellipse((100, 100, 400, 400), fill="red")
    image.save(path)
    return path


@pytest.mark.parametrize("size", [(900, 600), (600, 900), (2048, 37), (41, 41), (28, 28)])
@pytest.mark.parametrize("cap", [8, 16, 100, 1280])
def test_fit_tokens_hands_over_whole_tokens_within_the_cap_keeping_the_aspect(size, cap):
    image = load_image(_png(Image.new("RGB", size, "blue")))
    fitted = fit_tokens(image, cap, 28)
    columns, rows = -(-fitted.width // 28), -(-fitted.height // 28)
    assert columns * rows <= cap  # libmtmd rounds each side; up is the worst case
    if fitted is not image:
        assert fitted.width % 28 == 0 and fitted.height % 28 == 0
        aspect, kept = size[0] / size[1], fitted.width / fitted.height
        assert abs(kept - aspect) / aspect < 0.5 or min(columns, rows) == 1
        assert (fitted.sha256, fitted.original_width) == (image.sha256, image.original_width)


def test_the_families_say_whether_the_cap_applies_and_keep_it_in_range():
    assert QWEN2_VL.image_token_cap(0) == 1280  # Qwen's own max_pixels = 1280·28·28
    assert QWEN3_VL.image_token_cap(0) == 1280
    assert QWEN2_VL.image_token_cap(2) == 8 and QWEN2_VL.image_token_cap(99_999) == 4096
    assert GEMMA3.image_token_cap(256) is None and not GEMMA3.image_tokens_follow_size


def test_the_cap_changes_the_tokens_libmtmd_makes(qwen_pair, photo):
    image = load_image(photo)
    counts = {}
    for cap in (0, 16, 64, 300):
        with Engine(qwen_pair.model, qwen_pair.mmproj,
                    EngineSettings(n_ctx=4096, threads=2, image_tokens=cap)) as engine:
            fitted = engine.fit_image(image)
            with Bitmap(fitted) as bitmap:
                prompt = engine.tokenize_prompt(engine.chat_prompt("How many?"), bitmap)
                counts[cap] = prompt.image_tokens
                prompt.close()
    assert counts[0] == (900 // 28) * (600 // 28)  # under the family's own 1280: as it is
    assert counts[16] <= 16 and counts[64] <= 64 and counts[300] <= 300
    assert counts[16] < counts[64] < counts[300] < counts[0]
    assert counts[300] > 0.8 * 300  # the cap is used, not wasted


def test_ask_json_reports_the_image_tokens_and_the_size_sent(qwen_pair, photo):
    seen = {}
    for cap in ("16", "300"):
        result = stagewise("ask", "--model", qwen_pair.model, "--mmproj", qwen_pair.mmproj,
                           "--image", photo, "--question", "How many circles?", "--beam", "1",
                           "--max-stage-tokens", "2", "--image-tokens", cap, "--json",
                           "--no-history", "--threads", "2")
        assert result.returncode == 0, result.stderr
        timings = json.loads(result.stdout)["timings"]
        seen[cap] = (timings["image_tokens"], tuple(timings["image_size"]))
    (small, small_size), (large, large_size) = seen["16"], seen["300"]
    assert 0 < small <= 16 < large <= 300
    assert small_size[0] < large_size[0] < 900 and small_size[1] < large_size[1] < 600


def test_the_demo_model_says_the_cap_changes_nothing(image_file):
    result = stagewise("ask", "--image", image_file, "--question", "How many circles?",
                       "--beam", "1", "--max-stage-tokens", "2", "--image-tokens", "64",
                       "--json", "--no-history")
    assert result.returncode == 0, result.stderr
    assert "takes every picture at one size, so --image-tokens changes nothing" in result.stderr


def test_the_fit_and_the_automatic_context_count_the_capped_tokens(qwen_pair):
    few = plan(qwen_pair.model, qwen_pair.mmproj, EngineSettings(image_tokens=64))
    many = plan(qwen_pair.model, qwen_pair.mmproj, EngineSettings(image_tokens=2000))
    assert few.fit.need.detail.image_tokens == 64
    assert many.fit.need.detail.image_tokens == 2000
    assert many.fit.need.context - few.fit.need.context >= 2000 - 64
    assert many.fit.need.total > few.fit.need.total
    assert many.engine.n_ctx >= many.fit.need.context  # the automatic context holds it


def _png(image: Image.Image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_the_cap_is_kept_per_model_and_a_damaged_file_costs_nothing(tmp_path):
    from stagewise.models.storage.app_settings import AppSettings
    from stagewise.models.storage.model_settings import (
        image_tokens_for,
        remember_image_tokens,
        with_model_image_tokens,
    )

    path = tmp_path / "model-settings.json"
    qwen, other = tmp_path / "qwen.gguf", tmp_path / "other.gguf"
    assert image_tokens_for(qwen, path) is None
    remember_image_tokens(qwen, 1000, path)
    remember_image_tokens(None, 64, path)  # the built-in model
    assert (image_tokens_for(qwen, path), image_tokens_for(other, path),
            image_tokens_for(None, path)) == (1000, None, 64)
    settings = with_model_image_tokens(AppSettings(model=qwen), path)
    assert settings.engine.image_tokens == 1000
    assert with_model_image_tokens(AppSettings(model=other), path).engine.image_tokens == 0
    with pytest.raises(Exception, match="image_tokens"):
        remember_image_tokens(qwen, -5, path)
    path.write_text("{not json")
    assert image_tokens_for(qwen, path) is None


def test_ask_uses_the_cap_preferences_keep_for_its_model(qwen_pair, photo, tmp_path):
    import os
    import subprocess
    import sys

    from stagewise.models.disk.paths import CONFIG_DIR_ENV
    from stagewise.models.storage.model_settings import remember_image_tokens
    from tests.desktop.test_cli import ROOT

    config = tmp_path / "config"
    remember_image_tokens(qwen_pair.model, 16, config / "model-settings.json")
    env = {**os.environ, CONFIG_DIR_ENV: str(config)}
    result = subprocess.run(
        [sys.executable, "-m", "stagewise.desktop.cli", "ask", "--model", str(qwen_pair.model),
         "--image", str(photo), "--question", "How many?", "--beam", "1",
         "--max-stage-tokens", "2", "--json", "--no-history", "--threads", "2"],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert 0 < json.loads(result.stdout)["timings"]["image_tokens"] <= 16
