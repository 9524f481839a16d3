"""Remote engines against servers that misbehave: every fault is one ServerError line.

Both dialects (llama-server's API and the OpenAI-compatible one) against the loopback
fake of :mod:`tests.remote_fake`, through the real session and search. The command line's
side of the same faults (exit codes, the history) is the remote family of
``tests/desktop/test_bad_input_corpus.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagewise.models.errors import StagewiseError
from stagewise.models.events import AnswerFinished, SegmentStarted, TokenStreamed
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.remote.http import Endpoint, ServerError
from stagewise.models.remote.server import ServerSettings
from stagewise.models.session import Session
from stagewise.models.stages import STAGES, Stage, parse_answer
from stagewise.models.storage.history import History
from tests.remote_fake import MODEL, FakeServer

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("llama-server", "openai")
STALL = 1.5

# fault -> words the one error line must hold
FAULT_WORDS: dict[str, str] = {
    "cut": "closed the connection mid-answer",
    "html": "answered a web page",
    "html-as-events": "not a stream of server-sent events",
    "bad-chunk": "closed the connection mid-answer",
    "error-event": "the slot crashed",
    "html-error": "HTTP 500: (a web page)",
    "index-text": "index is not a whole number",
    "logprob-text": "logprob is not a number",
    "tokens-text": "is not a list",
    "deep": "nested 65 deep",
    "not-json": "not JSON",
    "props-types": "is not",
    "start-types": "is not",
    "comments": f"sent no text for {STALL:g} s",
    "empty-events": f"sent no text for {STALL:g} s",
    "drip": f"sent no text for {STALL:g} s",
    "endless": "sent more than the 16 tokens asked for",
    "big-event": "an event over the 1 MiB",
}
NO_END = {"llama-server": "closed the connection mid-answer", "openai": "no finish reason"}
CHOICES = {"llama-server": "content is not text", "openai": "choices is not a list"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def settings(url: str, kind: str, stall: float = STALL) -> ServerSettings:
    return ServerSettings(url, kind, MODEL if kind == "openai" else "",  # type: ignore[arg-type]
                          StageMode.NATIVE, stall)


def ask(server: ServerSettings, image: PreparedImage, cancel: threading.Event | None = None,
        question: str = "How many circles?"):
    with Session.connect(server) as session:
        events = list(session.ask(image, question, SearchSettings(beam=1,
                                                                  max_stage_tokens=16), cancel))
    assert isinstance(events[-1], AnswerFinished)
    return events[-1].result


def error_of(fake: FakeServer, fault: str, kind: str, image: PreparedImage) -> str:
    with pytest.raises(ServerError) as raised:
        ask(settings(fake.url(fault, kind), kind), image)
    return str(raised.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_well_behaved_fake_answers_four_stages(fake, image, kind):
    result = ask(settings(fake.url("ok", kind), kind), image)
    assert result.status == "finished"
    assert all(result.stages[stage] == f"The {stage.value} is short." for stage in STAGES)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", [*FAULT_WORDS, "no-end", "choices-text"])
def test_each_fault_is_one_clear_line(fake, image, kind, fault):
    message = error_of(fake, fault, kind, image)
    words = NO_END[kind] if fault == "no-end" else CHOICES[kind] if fault == "choices-text" \
        else FAULT_WORDS[fault]
    assert words in message
    assert "\n" not in message and len(message) < 400
    assert "<h1>" not in message and "Traceback" not in message


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_cut_mid_answer_is_never_a_finished_answer(fake, image, kind):
    """The text that arrived before the cut is streamed, but the answer is an error."""
    streamed: list[str] = []
    with Session.connect(settings(fake.url("cut", kind), kind)) as session, \
            pytest.raises(ServerError, match="closed the connection mid-answer"):
        for event in session.ask(image, "How many?", SearchSettings(beam=1)):
            if isinstance(event, TokenStreamed):
                streamed.append(event.text)
            assert not isinstance(event, AnswerFinished)
    assert "".join(streamed).startswith("<SUMMARY>The summary")


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_against_a_server_that_never_answers_ends_at_once(fake, image, kind):
    """The streamed request waits for its first byte: a cancel closes it, and no reader
    thread is left behind (it was left blocked, and the answer waited 5 s for it)."""
    cancel = threading.Event()
    stopped: list[float] = []

    def stop_soon() -> None:
        time.sleep(0.5)  # the request is sent and waits for the server
        stopped.append(time.monotonic())
        cancel.set()

    server = settings(fake.url("slow", kind), kind, stall=60)
    with Session.connect(server) as session:
        for event in session.ask(image, "How many?", SearchSettings(beam=1), cancel):
            if isinstance(event, SegmentStarted):
                threading.Thread(target=stop_soon, daemon=True).start()
            if isinstance(event, AnswerFinished):
                took = time.monotonic() - stopped[0]
                result = event.result
    assert result.status == "cancelled"
    readers = [t for t in threading.enumerate() if t.name.startswith("stagewise-remote")]
    assert not [t for t in readers if t.is_alive()]
    assert took < 5  # well within one second here; 5 s before


@pytest.mark.parametrize("kind", KINDS)
def test_a_stage_closed_before_it_opens_is_not_a_closed_stage(fake, image, kind):
    result = ask(settings(fake.url("close-first", kind), kind), image)
    caption = [c for c in result.candidates if c.unit is Stage.CAPTION]
    assert caption and all(c.finish != "closed" for c in caption)
    parsed = parse_answer(result.answer_text)
    assert Stage.CAPTION not in parsed.closed and not parsed.complete
    assert result.stages[Stage.REASONING] == "The reasoning is short."


@pytest.mark.parametrize("kind", KINDS)
def test_a_question_spelling_the_media_marker_stays_text(fake, image, kind):
    result = ask(settings(fake.url("marker", kind), kind), image,
                 question="What is <__media__> in the picture?")
    assert result.status == "finished"
    if kind == "llama-server":  # the prompt holds one marker: the image's
        prompts = [body["prompt"]["prompt_string"] for path, body in fake.requests
                   if path.startswith("/marker/completion") and isinstance(body["prompt"],
                                                                          dict)]
        assert prompts and all(p.count("<__media__>") == 1 for p in prompts)


def test_the_login_in_an_address_is_moved_out_and_sent_as_basic_auth(fake, image):
    url = fake.url("ok").replace("http://", "http://ana:s3cret%21@")
    server = settings(url, "llama-server")
    assert server.url == fake.url("ok") and server.login == "ana:s3cret!"
    assert "s3cret" not in repr(server) and "s3cret" not in server.describe()
    before = len(fake.authorizations)
    ask(server, image)
    sent = fake.authorizations[before:]
    assert sent and all(a == "Basic YW5hOnMzY3JldCE=" for a in sent)


@pytest.mark.parametrize("text, words", [
    ("http://[::1", "brackets"),
    ("http://127.0.0.1:99999", "port '99999'"),
    ("http://127.0.0.1:abc", "port 'abc'"),
    ("http://127.0.0.1:0", "port"),
    ("localhost:8080", "http://"),
    ("http://", "no usable host"),
    ("http://host name", "spaces"),
    ("http://127.0.0.1:8080/?x=1", "query"),
    ("http://ana:s3cret@[::1", "brackets"),
])
def test_unusable_addresses_are_one_line_wherever_they_come_from(text, words):
    from stagewise.models.remote.address import parse_address

    for make in (parse_address, ServerSettings, Endpoint):
        with pytest.raises(ServerError) as raised:
            make(text)
        message = str(raised.value)
        assert words in message and "\n" not in message and "s3cret" not in message


def test_deep_json_from_a_server_is_refused_before_it_is_parsed(fake):
    """Deeper than Python's recursion limit: a RecursionError in a reader thread before."""
    with pytest.raises(ServerError, match="nested"):
        Endpoint(fake.url("ok")).get("/deep")


def test_a_50_mb_event_is_refused_without_holding_it(fake, image, tmp_path):
    """The child's peak memory with the 50 MB event (three million small objects) stays
    near a good answer's: it was read whole and parsed before, well over 1 GB."""
    peaks, codes = {}, {}
    for fault in ("ok", "big-event"):
        process = subprocess.Popen(
            [sys.executable, "-m", "stagewise.desktop.cli", "ask", "--image",
             str(ROOT / "models/data/example.png"), "--question", "How many?", "--server",
             fake.url(fault), "--stage-mode", "native", "--beam", "1", "--no-history"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
            env={**os.environ, "STAGEWISE_API_KEY": ""})
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        peaks[fault] = usage.ru_maxrss  # kB on Linux
        codes[fault] = process.returncode
    assert peaks["big-event"] < peaks["ok"] + 200 * 1024, peaks
    assert codes == {"ok": 0, "big-event": 2}


@pytest.mark.parametrize("kind", KINDS)
def test_ask_json_is_json_when_log_probabilities_are_missing(fake, kind, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "stagewise.desktop.cli", "ask", "--image",
         str(ROOT / "models/data/example.png"), "--question", "How many?", "--server",
         fake.url("no-logprobs", kind), "--server-kind", kind, "--server-model", MODEL,
         "--stage-mode", "native", "--beam", "2", "--select", "logprob", "--json",
         "--no-history"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "STAGEWISE_API_KEY": ""})
    assert done.returncode == 0, done.stderr

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    answer = json.loads(done.stdout, parse_constant=refuse)
    candidates = [c for by_unit in answer["candidates"].values() for c in by_unit]
    assert len(candidates) == 8 and all(c["mean_logprob"] is None for c in candidates)


def test_a_failed_remote_answer_is_saved_as_failed_with_what_arrived(fake, tmp_path):
    """Cut in the reasoning: exit 2, the run failed, the stages before it kept; and the
    login in the address is nowhere (not the history, not a line printed)."""
    url = fake.url("cut-late").replace("http://", "http://ana:s3cret@")
    done = subprocess.run(
        [sys.executable, "-m", "stagewise.desktop.cli", "ask", "--image",
         str(ROOT / "models/data/example.png"), "--question", "How many?", "--question",
         "And now?", "--server", url, "--stage-mode", "native", "--beam", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "STAGEWISE_API_KEY": "", "STAGEWISE_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith("closed the connection mid-answer: did "
                                                 "the server stop?")
    with History(tmp_path / "history") as history:
        entry, = history.entries()
        run = history.load(entry.id)
    assert entry.status == "failed" and "mid-answer" in run.error
    assert run.result.stages[Stage.SUMMARY] == "The summary is short."
    assert run.result.stages[Stage.CAPTION] == "The caption is short."
    assert not run.result.stages[Stage.REASONING]
    assert entry.model == f"llama-server at {fake.url('cut-late')}"
    assert run.settings["server"]["url"] == fake.url("cut-late")
    stored = list((tmp_path / "history").glob("history.sqlite3*"))
    assert stored
    for text in (done.stdout, done.stderr, *(p.read_bytes().decode("utf-8", "replace")
                                              for p in stored)):
        assert "s3cret" not in text


def test_a_settings_file_with_a_bad_or_logged_in_address_is_put_right(tmp_path):
    from stagewise.models.remote.keys import KeyStore
    from stagewise.models.storage.app_settings import load_settings

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 1, "server_url": "http://[::1"}))
    assert load_settings(path).server.url == ""
    assert (tmp_path / "settings.json.bad").is_file()

    for i, stored in enumerate(({"version": 1, "server_url": "http://ana:pw@gpu-box:8000/v1"},
                   {"version": 3, "server": {"url": "http://ana:pw@gpu-box:8000/v1"}},
                   {"version": 3, "server": {"url": "http://gpu-box:8000/v1",
                                             "login": "ana:pw"}})):
        path = tmp_path / f"layout-{i}" / "settings.json"
        path.parent.mkdir()
        path.write_text(json.dumps(stored))
        settings = load_settings(path)
        assert settings.server.url == "http://gpu-box:8000/v1" and not settings.server.login
        assert "pw" not in path.read_text()
        logins = KeyStore.logins(path.parent)
        assert logins.get("http://gpu-box:8000/v1") == "ana:pw"
        assert logins.path.stat().st_mode & 0o777 == 0o600


def test_endpoint_errors_never_show_the_login():
    with pytest.raises(StagewiseError) as raised:
        Endpoint("http://ana:s3cret@127.0.0.1:9/x").get("/props")
    assert "s3cret" not in str(raised.value) and "127.0.0.1:9" in str(raised.value)


def test_ctrl_c_in_ask_against_a_server_that_never_answers(fake, tmp_path):
    """SIGINT once the streamed request waits for the server: "cancelled", exit 130, at
    once (ask waited 5 s for the request's thread before)."""
    import signal

    def streamed() -> int:
        return sum(path.startswith("/slow/completion") and bool(body.get("stream"))
                   for path, body in list(fake.requests))

    before = streamed()
    process = subprocess.Popen(
        [sys.executable, "-m", "stagewise.desktop.cli", "ask", "--image",
         str(ROOT / "models/data/example.png"), "--question", "Slow?", "--server",
         fake.url("slow"), "--stage-mode", "native", "--beam", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "STAGEWISE_API_KEY": "", "STAGEWISE_DATA_DIR": str(tmp_path)})
    deadline = time.monotonic() + 60
    while streamed() == before:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    time.sleep(0.2)  # the request is waiting for its answer
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    took = time.monotonic() - sent
    assert process.returncode == 130, err
    assert "Traceback" not in err and "cancelled in" in err
    assert took < 4  # the interpreter's exit included; 5 s and more before
    with History(tmp_path / "history") as history:
        entry, = history.entries()
    assert entry.status == "cancelled"
