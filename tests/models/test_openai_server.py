"""The OpenAI-compatible dialect (vLLM) against a loopback fake that checks each request.

The fake accepts only the request fields vLLM's chat completions API documents
(``ChatCompletionRequest`` in ``vllm/entrypoints/openai/protocol.py``: the OpenAI fields
plus vLLM's extra parameters), enforces the rules it documents for them, and answers in
the shapes it documents: streamed ``choices[].delta.content`` with ``logprobs.content``
and ``finish_reason``, a final ``usage`` chunk with ``prompt_tokens_details``, then
``[DONE]``. No vLLM runs here; docs/remote.md says what has been run.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from stagewise.models.events import AnswerFinished
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.remote.http import ServerError
from stagewise.models.remote.server import ServerSettings
from stagewise.models.session import Session
from stagewise.models.stages import STAGES, Stage

MODEL = "Xkev/Llama-3.2V-11B-cot"
KEY = "vllm-key"
DOCUMENTED = {  # vLLM's ChatCompletionRequest fields this client may send
    "model", "messages", "n", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "top_k", "min_p", "seed", "stop", "stream", "stream_options", "logprobs",
    "top_logprobs", "include_stop_str_in_output", "continue_final_message",
    "add_generation_prompt", "structured_outputs",
    "guided_grammar",  # before 0.10.2 (the versions whose V0 engine runs Llama 3.2 Vision)
}


class FakeVLLM(http.server.BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path == "/v1/models":
            self._json({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._json({"error": {"message": "not found"}}, 404)

    def do_POST(self) -> None:
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        problem = _invalid(body)
        if problem:
            self._json({"object": "error", "message": problem, "code": 400}, 400)
            return
        self.requests.append(body)
        if body.get("stream"):
            self._stream(body)
        else:
            self._json(_answer(body))

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {KEY}":
            return True
        self._json({"error": "Unauthorized"}, 401)
        return False

    def _json(self, value: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for chunk in _chunks(body):
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args: object) -> None:
        pass


def _invalid(body: dict[str, Any]) -> str:
    """What vLLM would refuse in this request, or ""."""
    unknown = set(body) - DOCUMENTED
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    if body.get("model") != MODEL:
        return "no such model"
    if body.get("continue_final_message") and body.get("add_generation_prompt"):
        return "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
    messages = body.get("messages") or []
    if body.get("continue_final_message") and messages[-1]["role"] != "assistant":
        return "continue_final_message needs an assistant message last"
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            for part in content:
                if part["type"] == "image_url":
                    if not part["image_url"]["url"].startswith("data:image/png;base64,"):
                        return "bad image url"
                elif part["type"] != "text":
                    return f"unknown part {part['type']}"
    if body.get("top_logprobs") and not body.get("logprobs"):
        return "top_logprobs needs logprobs"
    grammar = (body.get("structured_outputs") or {}).get("grammar")
    if grammar is not None and ("root ::=" not in grammar
                                or body.get("guided_grammar") != grammar):
        return "bad grammar"
    return ""


def _stage_after(body: dict[str, Any]) -> Stage:
    stops = " ".join(body.get("stop") or [])
    return next((s for s in STAGES if s.close_tag in stops), Stage.CONCLUSION)


def _chunks(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    stage = _stage_after(body)
    prompted = body.get("structured_outputs") is not None
    for i in range(body.get("n", 1)):
        words = [f"The {stage.value} ", f"of candidate {i}", "."]
        text = [*([] if prompted else [stage.open_tag]), *words, stage.close_tag]
        for k, piece in enumerate(text):
            last = k == len(text) - 1
            yield {"object": "chat.completion.chunk", "model": MODEL, "choices": [{
                "index": i, "delta": {"content": piece},
                "logprobs": {"content": [{"token": piece, "logprob": -0.1 * (i + 1),
                                          "bytes": list(piece.encode()), "top_logprobs": []}]},
                "finish_reason": "stop" if last else None}]}
    yield {"object": "chat.completion.chunk", "model": MODEL, "choices": [],
           "usage": {"prompt_tokens": 120, "completion_tokens": 20, "total_tokens": 140,
                     "prompt_tokens_details": {"cached_tokens": 110}}}


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    grammar = (body.get("structured_outputs") or {}).get("grammar") or ""
    logprobs = None
    asked = json.dumps(body.get("messages") or [])
    if "Since" in grammar or (not grammar and "I choose response" in asked
                              and not body.get("top_logprobs")):  # the judge's free reply
        content = "Since the first one is clearer, I choose response 1."
    elif '"Yes"' in grammar:
        content = "Yes"
    elif '"1"' in grammar:
        content = "2"
    elif body.get("top_logprobs"):
        content = "Yes"
        top = [{"token": "Yes", "logprob": -0.2}, {"token": "No", "logprob": -1.8}]
        logprobs = {"content": [{"token": "Yes", "logprob": -0.2, "top_logprobs": top}]}
    else:
        content = "x"
    return {"object": "chat.completion", "model": MODEL, "choices": [{
        "index": 0, "message": {"role": "assistant", "content": content},
        "logprobs": logprobs, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 1,
                  "prompt_tokens_details": {"cached_tokens": 0}}}


@pytest.fixture
def fake() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []
    handler = type("Handler", (FakeVLLM,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    server.shutdown()
    server.server_close()


def vllm(url: str, mode: StageMode = StageMode.NATIVE) -> ServerSettings:
    return ServerSettings(url, kind="openai", model=MODEL, stage_mode=mode)


def run(session: Session, image: PreparedImage, **settings: object):
    events = list(session.ask(image, "How many red circles?", SearchSettings(**settings)))
    assert isinstance(events[-1], AnswerFinished)
    return events[-1].result


def test_stage_beam_4_on_an_openai_compatible_server(fake, image):
    url, requests = fake
    with Session.connect(vllm(url), KEY) as session:
        assert session.served_by == f"{MODEL} on server at {url}"
        result = run(session, image, beam=4, seed=2, select="judge")
    assert result.status == "finished"
    assert all(result.stages[stage] for stage in STAGES)
    assert result.stages[Stage.CONCLUSION].startswith("The conclusion of candidate")
    samples = [r for r in requests if r.get("stream")]
    assert len(samples) == 4 and all(r["n"] == 4 for r in samples)
    first, later = samples[0], samples[1:]
    assert first["add_generation_prompt"] and not first["continue_final_message"]
    assert [m["role"] for m in first["messages"]] == ["user"]
    for r in later:  # the chosen text continues as the assistant's own turn
        assert r["continue_final_message"] and not r["add_generation_prompt"]
        assert result.answer_text.startswith(r["messages"][-1]["content"])
    for r in samples:
        assert r["include_stop_str_in_output"] and r["logprobs"] and r["stream_options"]
        assert r["messages"][0]["content"][0]["type"] == "image_url"
    # the candidates' log-probabilities came from the stream
    assert {round(c.mean_logprob, 2) for c in result.candidates} == {-0.1, -0.2, -0.3, -0.4}
    assert result.verdicts and all(v.text.startswith("Since") for v in result.verdicts
                                   if v.text)


def test_prompted_mode_sends_the_stage_grammar(fake, image):
    url, requests = fake
    with Session.connect(vllm(url, StageMode.PROMPTED), KEY) as session:
        result = run(session, image, beam=2, select="logprob")
    assert result.status == "finished"
    samples = [r for r in requests if r.get("stream")]
    assert all("root ::=" in r["structured_outputs"]["grammar"] for r in samples)
    assert samples[0]["messages"][-1] == {"role": "assistant", "content": "<SUMMARY>"}


def test_retrace_reads_yes_from_the_top_logprobs(fake, image):
    url, requests = fake
    with Session.connect(vllm(url), KEY) as session:
        result = run(session, image, strategy="retrace", select="selfcheck")
    assert result.status == "finished"
    asked = [r for r in requests if r.get("top_logprobs")]
    assert asked and all(r["max_tokens"] == 1 for r in asked)


def test_the_model_name_is_checked(fake):
    url, _ = fake
    with pytest.raises(ServerError, match=re.escape(f"it serves: {MODEL}")):
        Session.connect(ServerSettings(url, kind="openai", model="other"), KEY)


def test_a_missing_key_is_refused_in_one_line(fake):
    url, _ = fake
    with pytest.raises(ServerError, match="refused the API key"):
        Session.connect(vllm(url), "")
