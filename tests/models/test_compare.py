"""One question answered by two configurations (:mod:`stagewise.models.compare`): the
configuration strings, the divergence, the runs on the shipped demo model and on a real
llama-server on loopback, and the pair kept in the history and exported as one document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagewise.models.compare import (
    Comparison,
    divergence,
    parse_configuration,
    run_comparison,
    same_model,
)
from stagewise.models.errors import StagewiseError
from stagewise.models.events import SearchResult, Timings
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage, load_image
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.library.demo import example_image
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.remote.server import ServerSettings
from stagewise.models.session import Session, plan
from stagewise.models.stages import STAGES, Stage
from stagewise.models.storage.export_compare import export_comparison
from stagewise.models.storage.history import History, HistoryRecorder, RunSettings

QUESTION = "How many red circles are there?"
BASE = SearchSettings(max_stage_tokens=24)


# -- configurations -------------------------------------------------------------------------

def test_a_configuration_changes_the_search_it_is_given():
    config = parse_configuration(" beam=4, select=verdict ,seed=7,temperature=0.3", BASE)
    s = config.search
    assert (s.beam, s.select, s.seed, s.sampling.temperature) == (4, "verdict", 7, 0.3)
    assert s.max_stage_tokens == 24 and s.strategy == BASE.strategy
    assert config.model is None and config.text == "beam=4, select=verdict ,seed=7,temperature=0.3"
    assert parse_configuration("", BASE).search == BASE
    other = parse_configuration("model=/models/other.gguf,strategy=best-of-n", BASE)
    assert other.model == Path("/models/other.gguf") and other.search.strategy == "best-of-n"
    assert not same_model(config, other) and same_model(config, parse_configuration("", BASE))


@pytest.mark.parametrize(("text", "words"), [
    ("beam=0", ["beam", "from 1 to 16", "0"]),
    ("beam=four", ["beam must be a whole number", "'four'"]),
    ("width=4", ["unknown key 'width'", "beam"]),
    ("beam", ["'beam' is not key=value"]),
    ("select=best", ["select must be one of", "'best'"]),
    ("strategy=zigzag", ["strategy must be one of"]),
    ("temperature=9", ["temperature", "from 0 to 2"]),
    ("beam=2,beam=3", ["beam is given twice"]),
    ("mmproj=x.gguf", ["mmproj needs a model"]),
    ("strategy=retrace,select=judge", ["retrace", "'judge'"]),
])
def test_a_bad_configuration_is_one_line_naming_it(text, words):
    with pytest.raises(StagewiseError) as caught:
        parse_configuration(text, BASE)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"compare configuration {text!r}")
    for word in words:
        assert word in message, message


# -- divergence -----------------------------------------------------------------------------

def result(**stages: str) -> SearchResult:
    texts = {stage: stages.get(stage.value, "same") for stage in STAGES}
    return SearchResult(QUESTION, "stage", 1, "logprob", 0, "native", "finished", "", texts,
                        (), (), (), (), Timings())


def test_divergence_is_the_first_stage_whose_text_differs():
    assert divergence(result(), result(summary="same ")).same  # whitespace aside
    found = divergence(result(caption="two red circles"), result(caption="two blue squares",
                                                                 conclusion="other"))
    assert found.stage is Stage.CAPTION and found.offset == len("two ")
    assert "caption" in found.describe()
    assert divergence(result(), result(conclusion="sam")).offset == 3
    assert found.to_json() == {"stage": "caption", "offset": 4, "same": False}


# -- on the demo model and on llama-server ---------------------------------------------------

@pytest.fixture(scope="module")
def picture() -> PreparedImage:
    return load_image(example_image())


@pytest.fixture(scope="module")
def demo_session() -> Iterator[Session]:
    with Session(plan(None, None, EngineSettings(threads=2), BASE)) as session:
        yield session


def compare_on(sessions, picture: PreparedImage, first: str, second: str,
               seen: list[tuple[int, object]] | None = None) -> Comparison:
    configs = [parse_configuration(text, BASE) for text in (first, second)]
    return run_comparison(sessions, picture, QUESTION, configs,
                          on_event=lambda side, event: seen is not None and seen.append(
                              (side, event)))


def test_two_configurations_on_the_demo_model_share_one_encode(demo_session, picture):
    demo_session.engine.clear()
    demo_session.backend.prefixes.forget()
    demo_session.use_prefix_cache(None)
    seen: list[tuple[int, object]] = []
    comparison = compare_on([demo_session] * 2, picture, "beam=1", "beam=2,select=judge", seen)
    first, second = comparison.results
    assert (first.beam, second.beam, second.select) == (1, 2, "judge")
    assert first.status == second.status == "finished"
    assert first.timings.image_encodes == 1 and second.timings.image_encodes == 0
    assert [side for side, _ in seen] == sorted(side for side, _ in seen)  # A, then B
    assert {side for side, _ in seen} == {0, 1}
    data = comparison.to_json()
    assert [run["side"] for run in data["runs"]] == ["A", "B"]
    assert data["divergence"] == comparison.divergence.to_json()
    assert data["runs"][1]["configuration"]["text"] == "beam=2,select=judge"
    json.dumps(data)


def test_the_same_configuration_twice_does_not_diverge(demo_session, picture):
    comparison = compare_on([demo_session] * 2, picture, "beam=1,seed=3", "seed=3")
    assert comparison.divergence.same
    assert comparison.results[0].stages == comparison.results[1].stages


def test_a_side_that_cannot_run_fails_before_either_answers(demo_session, picture):
    before = demo_session.engine.stats.decode_calls
    with pytest.raises(StagewiseError, match="second model"):
        compare_on([demo_session] * 2, picture, "beam=1", "beam=2,select=model")
    assert demo_session.engine.stats.decode_calls == before


def test_two_configurations_on_llama_server(demo_server, picture):
    settings = ServerSettings(demo_server.url, stage_mode=StageMode.NATIVE)
    with Session.connect(settings) as session:
        comparison = compare_on([session] * 2, picture, "beam=1", "beam=2,select=logprob")
    assert [r.status for r in comparison.results] == ["finished", "finished"]
    assert comparison.results[1].beam == 2
    assert comparison.models[0].startswith("llama-server")
    assert all(r.stages[Stage.CONCLUSION].strip() for r in comparison.results)


# -- the history and the export --------------------------------------------------------------

def test_a_pair_is_kept_and_exported_as_one_document(demo_session, picture, tmp_path):
    folder = tmp_path / "history"
    recorder = HistoryRecorder(folder, warn=pytest.fail)
    records = []

    def on_event(side, event):
        if side == len(records):
            records.append(recorder.start(picture, example_image(), "example.png", QUESTION,
                                          "demo", RunSettings(BASE)))
        records[side].add(event)

    configs = [parse_configuration(t, BASE) for t in ("beam=1", "beam=2")]
    comparison = run_comparison([demo_session] * 2, picture, QUESTION, configs,
                                on_event=on_event)
    recorder.link_comparison(*records)
    recorder.close()
    with History(folder) as history:
        first, second = (history.load(r.run_id) for r in records)
        assert first.entry.compared_with == second.entry.id
        assert second.entry.compared_with == first.entry.id
        assert first.result.stages == comparison.results[0].stages
        for suffix in (".md", ".html", ".json"):
            written = export_comparison(first, second, tmp_path / f"pair{suffix}")
            text = written.read_text(encoding="utf-8")
            assert QUESTION in text
            assert "beam 1" in text or '"beam": 1' in text
        data = json.loads((tmp_path / "pair.json").read_text())
        assert [run["id"] for run in data["runs"]] == [first.entry.id, second.entry.id]
        assert data["divergence"] == comparison.divergence.to_json()
        html = (tmp_path / "pair.html").read_text()
        if not comparison.divergence.same:
            assert "diverged" in html
        history.delete([first.entry.id])
        assert history.load(second.entry.id).entry.compared_with is None
