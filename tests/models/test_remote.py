"""The search on a real llama.cpp ``llama-server`` on loopback, and on servers that misbehave.

The server is built from the llama.cpp sources the installed llama-cpp-python vendors
(cached after the first build) and serves the shipped demo pair, as the in-process engine
loads it.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from stagewise.models.build.llama_server import RunningServer, free_port, serve
from stagewise.models.errors import Cancelled
from stagewise.models.events import AnswerFinished, Event, SearchResult, TokenStreamed
from stagewise.models.inference.images import PreparedImage, load_image
from stagewise.models.inference.sampling_settings import GREEDY
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.library.demo import demo_pair, example_image
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.remote.http import Endpoint, ServerError
from stagewise.models.remote.server import ServerSettings
from stagewise.models.session import Session, plan
from stagewise.models.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How many red circles are there?"
KEY = "sekrit-test-key"


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


def native(url: str, **changes: object) -> ServerSettings:
    return replace(ServerSettings(url, stage_mode=StageMode.NATIVE), **changes)


def answer(session: Session, image: PreparedImage, settings: SearchSettings,
           cancel: threading.Event | None = None) -> tuple[list[Event], SearchResult]:
    events = list(session.ask(image, QUESTION, settings, cancel))
    assert isinstance(events[-1], AnswerFinished)
    return events, events[-1].result


def test_four_stages_at_beam_4_through_llama_server(server, picture):
    with Session.connect(native(server.url)) as session:
        assert session.served_by == f"llama-server at {server.url}"
        events, result = answer(session, picture, SearchSettings(beam=4, seed=3,
                                                                 select="judge"))
    assert result.status == "finished"
    assert all(result.stages[stage].strip() for stage in STAGES)
    assert len(result.candidates) == 16 and result.verdicts
    assert any(isinstance(e, TokenStreamed) for e in events)
    # the image is sent with every request; each of the 4 slots encodes it at most once,
    # and again only after a text-only reasoning check took the slot (and its cache)
    assert 1 <= result.timings.image_encodes <= 4 + len(result.checks)


@pytest.mark.parametrize("settings", [
    SearchSettings(beam=1, sampling=GREEDY, seed=5),
    SearchSettings(beam=2, select="logprob", sampling=GREEDY, seed=5),
], ids=["single", "beam-2-logprob"])
def test_greedy_answers_match_the_in_process_engine(server, demo, picture, settings):
    with Session.connect(native(server.url)) as remote:
        _, served = answer(remote, picture, settings)
    with Session(plan(*demo, replace_ctx(), settings)) as local:
        _, here = answer(local, picture, settings)
    assert served.answer_text == here.answer_text
    assert [c.text for c in served.candidates] == [c.text for c in here.candidates]


def replace_ctx():
    from stagewise.models.inference.engine_settings import EngineSettings

    return EngineSettings(n_ctx=4096, threads=2)


@pytest.mark.parametrize("strategy", ["best-of-n", "sentence", "retrace"])
def test_the_other_strategies_run_unchanged(server, picture, strategy):
    settings = SearchSettings(strategy=strategy, beam=2, max_stage_tokens=48, seed=1)
    with Session.connect(native(server.url)) as session:
        _, result = answer(session, picture, settings)
    assert result.status == "finished" and result.answer_text
    assert result.candidates


def test_cancel_mid_stage_keeps_what_was_written(server, picture):
    cancel = threading.Event()
    events: list[Event] = []
    with Session.connect(native(server.url)) as session:
        started = time.monotonic()
        for event in session.ask(picture, QUESTION, SearchSettings(beam=4), cancel):
            events.append(event)
            if isinstance(event, TokenStreamed) and event.unit is STAGES[1]:
                cancel.set()
        took = time.monotonic() - started
    result = events[-1].result
    assert result.status == "cancelled"
    assert result.stages[STAGES[0]]  # the chosen summary is kept
    assert any(c.unit is STAGES[1] and c.finish == "cancelled" for c in result.candidates)
    assert took < 30


def test_a_server_killed_mid_answer_is_a_clear_error(demo, picture, tmp_path):
    streamed: list[str] = []
    with serve(*demo, tmp_path, slots=2) as doomed, \
            Session.connect(native(doomed.url)) as session, pytest.raises(ServerError) as raised:
        for event in session.ask(picture, QUESTION, SearchSettings(beam=2)):
            if isinstance(event, TokenStreamed):
                streamed.append(event.text)
                if len(streamed) == 3:
                    doomed.kill()
    assert streamed
    assert doomed.url.removeprefix("http://") in str(raised.value)


def test_nothing_listening_is_one_clear_line():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"nothing answers at .*: is the server running"):
        Session.connect(ServerSettings(url))
    assert time.monotonic() - started < 5


def test_a_wrong_api_key_is_refused_and_the_right_one_answers(demo, picture, tmp_path):
    with serve(*demo, tmp_path, slots=1, api_key=KEY) as guarded:
        with pytest.raises(ServerError, match="refused the API key"), \
                Session.connect(native(guarded.url), "wrong") as session:
            answer(session, picture, SearchSettings(max_stage_tokens=8))
        with Session.connect(native(guarded.url), KEY) as session:
            _, result = answer(session, picture, SearchSettings(max_stage_tokens=8))
    assert result.status == "finished"


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    mode = "garbage"

    def do_GET(self) -> None:
        if self.mode == "stall":
            time.sleep(30)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{this is not json")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def misbehaving() -> Iterator[tuple[str, type[_Misbehaving]]]:
    handler = type("Handler", (_Misbehaving,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_malformed_json_is_named(misbehaving):
    url, _ = misbehaving
    with pytest.raises(ServerError, match="not JSON"):
        Session.connect(ServerSettings(url))


def test_a_stalled_server_is_given_up_after_the_stall_timeout(misbehaving):
    url, handler = misbehaving
    handler.mode = "stall"
    started = time.monotonic()
    with pytest.raises(ServerError, match="did not answer for 1 s"):
        Endpoint(url, stall_timeout=1.0).get("/props")
    assert time.monotonic() - started < 5


def test_stagewise_ask_prints_four_stages_through_the_server(server):
    done = subprocess.run(
        [sys.executable, "-m", "stagewise.desktop.cli", "ask", "--image", str(example_image()),
         "--question", QUESTION, "--beam", "4", "--server", server.url,
         "--stage-mode", "native"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "STAGEWISE_API_KEY": ""})
    assert done.returncode == 0, done.stderr
    for stage in STAGES:
        assert stage.value.capitalize() in done.stdout or stage.title in done.stdout
    assert "Traceback" not in done.stderr


def test_stagewise_eval_runs_through_the_server(server):
    done = subprocess.run(
        [sys.executable, "-m", "stagewise.desktop.cli", "eval", "--demo", "--limit", "3",
         "--strategy", "single,stage", "--beam", "2", "--server", server.url,
         "--stage-mode", "native", "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "STAGEWISE_API_KEY": ""})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model"] == f"llama-server at {server.url}" and report["mmproj"] is None
    assert report["status"] == "finished" and report["done"] == 3
    assert len(report["items"]) == 6  # two strategies for each question


def test_eval_reports_vlmevalkits_figures_through_the_server(server, tmp_path):
    from tests.desktop.test_cli_eval_benchmarks import (
        circular_accuracy,
        hallusion_figures,
        hallusionbench,
        mmbench,
    )

    env = {**os.environ, "STAGEWISE_API_KEY": "", "STAGEWISE_CACHE_DIR": str(tmp_path / "c")}
    reports = []
    for data in (mmbench(tmp_path), hallusionbench(tmp_path)):
        done = subprocess.run(
            [sys.executable, "-m", "stagewise.desktop.cli", "eval", str(data), "--strategy",
             "single", "--server", server.url, "--stage-mode", "native", "--json"],
            capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    circular, hallusion = reports
    assert circular["model"] == f"llama-server at {server.url}"
    assert circular["settings"]["max_stage_tokens"] == 2048  # the reference's budget
    (single,) = circular["strategies"]
    assert single["circular_questions"] == 2
    assert single["circular_accuracy"] == circular_accuracy(circular["items"])
    (single,) = hallusion["strategies"]
    assert {k: single[k] for k in ("aAcc", "fAcc", "qAcc")} == hallusion_figures(
        hallusion["items"])


def test_an_image_prepared_on_llama_server_is_kept_by_its_prompt_cache(server, picture):
    """The server evaluates the prompt up to the image in slot 0 when the image arrives;
    its prompt cache keeps it for the question, which then encodes no image."""
    settings = SearchSettings(beam=1, seed=3, max_stage_tokens=16)
    with Session.connect(native(server.url)) as session:
        report = session.prepare(picture)
        assert report.ready and report.origin == "encoded" and not report.saved
        assert session.prepare(picture).origin == "memory"
        _, prepared = answer(session, picture, settings)
    assert prepared.timings.image_encodes == 0 and prepared.timings.prefix_from == "memory"
    cancel = threading.Event()
    cancel.set()
    with Session.connect(native(server.url)) as session, pytest.raises(Cancelled):
        session.prepare(picture, cancel)
