"""`stagewise ask` says how sure the search is, and warns about a picture the built-in demo
model does not know: a real process, the shipped demo model through real llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from stagewise.models.library.demo import example_image
from stagewise.models.reasoning.confidence import normalise_conclusion
from tests.desktop.test_cli import stagewise


def test_ask_json_has_a_confidence_object_that_matches_its_candidates(tmp_path):
    done = stagewise("ask", "--image", example_image(), "--question",
                     "How many red circles are there?", "--beam", "4", "--json",
                     "--no-history", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    confidence = data["confidence"]
    assert {"agreement", "margin", "label"} <= set(confidence)
    finals = data["candidates"]["conclusion"]
    assert len(finals) == 4 and confidence["candidates"] == 4
    chosen = normalise_conclusion(data["stages"]["conclusion"])
    agreeing = sum(normalise_conclusion(c["text"]) == chosen for c in finals)
    assert confidence["agreeing"] == agreeing
    assert confidence["agreement"] == agreeing / 4
    assert confidence["label"] == f"{agreeing} of 4 agree"
    winner = next(c for c in finals if c["chosen"])
    best_other = max(c["score"] for c in finals if c is not winner)
    assert abs(confidence["margin"] - (winner["score"] - best_other)) < 1e-3
    assert data["warnings"] == [] and isinstance(data["cautions"], list)


def test_ask_says_how_sure_it_is_and_that_a_photo_is_outside_the_demo(tmp_path: Path):
    photo = tmp_path / "sign.png"
    sign = Image.new("RGB", (2000, 1500), (90, 110, 140))
    ImageDraw.Draw(sign).text((600, 700), "OPEN 9-5 SUNDAY", fill=(0, 0, 0))
    sign.save(photo)
    done = stagewise("ask", "--image", photo, "--question", "What does the sign say?",
                     "--beam", "1", "--no-history", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    warning = [line for line in done.stderr.splitlines()
               if line.startswith("stagewise: warning: ")]
    assert len(warning) == 1 and "does not look like the demo model's puzzles" in warning[0]
    sure = [line for line in done.stderr.splitlines() if line.startswith("confidence: ")]
    assert len(sure) == 1 and "mean probability" in sure[0]
    as_json = stagewise("ask", "--image", photo, "--question", "What does the sign say?",
                        "--beam", "1", "--no-history", "--json", data_dir=tmp_path)
    data = json.loads(as_json.stdout)
    assert [w["kind"] for w in data["warnings"]] == ["outside"]
    assert data["confidence"]["agreement"] is None
    assert data["confidence"]["label"] in ("sure", "fairly sure", "unsure")
