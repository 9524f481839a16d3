"""Selections through a real llama-server (built from the vendored sources) on the demo pair:
``verdict``, ``selfcheck``, ``logprob`` and the written ``judge`` run there; ``entropy``
says in one line why it cannot (a server returns a few log-probabilities, not whole
distributions)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagewise.models.build.llama_server import RunningServer, serve
from stagewise.models.errors import StagewiseError
from stagewise.models.events import AnswerFinished
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage, load_image
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.library.demo import demo_pair, example_image
from stagewise.models.reasoning import judge as judging
from stagewise.models.reasoning.search_backend import Prompt
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.remote.server import ServerSettings
from stagewise.models.session import Session, plan

QUESTION = "How many red circles are there?"


@pytest.fixture(scope="module")
def demo() -> tuple[Path, Path]:
    pair = demo_pair()
    assert pair is not None
    return pair.model, pair.mmproj


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory) -> Iterator[RunningServer]:
    with serve(*demo, tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture(scope="module")
def picture() -> PreparedImage:
    return load_image(example_image())


def remote(url: str) -> Session:
    return Session.connect(ServerSettings(url, stage_mode=StageMode.NATIVE))


@pytest.mark.parametrize("select", ["verdict", "selfcheck", "logprob", "judge"])
def test_a_selection_runs_through_the_server(server, picture, select):
    settings = SearchSettings(beam=2, select=select, max_stage_tokens=48, seed=2)
    with remote(server.url) as session:
        events = list(session.ask(picture, QUESTION, settings))
    result = events[-1].result
    assert isinstance(events[-1], AnswerFinished) and result.status == "finished"
    assert result.select == select and result.conclusion
    scored = [c for c in result.candidates if c.score is not None]
    assert len(scored) == len(result.candidates)  # every segment was chosen in
    if select == "verdict":
        assert all(v.probability is not None and 0.5 <= v.probability <= 1
                   for v in result.verdicts if v.text == "")


def test_entropy_is_refused_there_in_one_line(server):
    with remote(server.url) as session, pytest.raises(StagewiseError) as caught:
        session.search(SearchSettings(beam=2, select="entropy"))
    message = str(caught.value)
    assert "\n" not in message and "entropy" in message and "not the whole distribution" in message


def test_verdict_probabilities_match_the_in_process_engines(server, demo, picture):
    """The same prompt, the same model: the server's top log-probabilities give the
    probabilities of "1" and "2" the in-process logits give."""
    texts = [judging.judge_text(None, QUESTION, "<CONCLUSION>3</CONCLUSION>",
                                "<CONCLUSION>2</CONCLUSION>"),
             judging.judge_text(None, QUESTION, "<CONCLUSION>2</CONCLUSION>",
                                "<CONCLUSION>3</CONCLUSION>")]
    prompts = [Prompt(t, (QUESTION,)) for t in texts]

    def probabilities(session: Session) -> list[tuple[float, ...]]:
        backend = session.backend
        backend.begin(picture, QUESTION, StageMode.NATIVE, threading.Event())
        try:
            return backend.choice_probabilities(prompts, judging.CHOICE_PHRASE, ("1", "2"))
        finally:
            backend.end()

    with remote(server.url) as session:
        served = probabilities(session)
    with Session(plan(*demo, EngineSettings(n_ctx=4096, threads=2))) as local:
        here = probabilities(local)
    for a, b in zip(served, here, strict=True):
        assert a == pytest.approx(b, abs=0.02)
