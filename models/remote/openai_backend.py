"""The search on an OpenAI-compatible chat completions server, as vLLM serves one.

vLLM runs the released LLaVA-CoT model as published (a Llama 3.2 Vision model, which
llama.cpp cannot run), with prefix caching that keeps an image's encoding between
requests. Each segment is one streamed request for ``n`` candidates: the question (image
first) as the user turn and the chosen text as an assistant turn to continue
(``continue_final_message``; ``add_generation_prompt`` off), the stage's close tag as a
stop string kept in the output (``include_stop_str_in_output``), log-probabilities on,
and in prompted mode the stage's grammar (``structured_outputs``, and ``guided_grammar``
for older vLLM). Extra parameters are
vLLM's (its OpenAI-compatible server documentation); other servers may ignore them.

The judge is more requests. Whether the server reused the image's encoding is read from
``usage.prompt_tokens_details.cached_tokens`` where the server reports it (vLLM with
``--enable-prompt-tokens-details``).
"""

from __future__ import annotations

from typing import Any

from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.sampling import mix_seed
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.search_backend import (
    Prompt,
    PromptInfo,
    ReplyRequest,
    SampleRequest,
)
from stagewise.models.remote.fields import Fields
from stagewise.models.remote.http import Endpoint, ServerError
from stagewise.models.remote.server_backend import png_base64
from stagewise.models.remote.text_backend import Job, RemoteBackend, Update
from stagewise.models.stages import user_text

__all__ = ["OpenAIBackend"]

_TOP = 20
_FINISH = {"length": "length"}
MAX_CHOICES = 4096


class OpenAIBackend(RemoteBackend):
    """:class:`~stagewise.models.reasoning.search_backend.SearchBackend` on a chat
    completions server."""

    def __init__(self, endpoint: Endpoint, model: str,
                 stage_mode: StageMode = StageMode.PROMPTED) -> None:
        """Check that the server serves ``model``.

        Raises:
            ServerError: It cannot be reached, refuses the key, or does not serve the model.
        """
        super().__init__(endpoint, stage_mode)
        self.model = model
        models = Fields(endpoint.get("/models"), f"{endpoint.url}/models")
        served = [m.text("id") for m in models.objects("data")]
        if model not in served:
            names = ", ".join(" ".join(name.split())[:80] for name in served[:8]) + (
                ", …" if len(served) > 8 else "")
            raise ServerError(f"{endpoint.url} does not serve {model!r} (it serves: "
                              f"{names or 'nothing'})")
        self._image = ""
        self._question = ""

    def start(self, image: PreparedImage, question: str, mode: StageMode) -> PromptInfo:
        self._image = png_base64(image)
        self._question = user_text(question, mode)
        done = self._chat(self._messages(Prompt(self._question), ""), {"max_tokens": 1})
        n = done.object("usage").integer("prompt_tokens")
        return PromptInfo(n, n)

    def jobs(self, request: SampleRequest, chosen: str) -> list[Job]:
        body = self._request(self._messages(Prompt(self._question), chosen)) | {
            "n": request.n, "max_tokens": request.max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, "logprobs": True,
            "stop": list(request.stop_strings), "include_stop_str_in_output": True,
            "seed": mix_seed(request.seed, request.segment) % (2**31 - 1), **_sampling(request)}
        if request.grammar is not None:
            body |= _grammar(request.grammar)
        return [Job("/chat/completions", body, tuple(range(request.n)))]

    def updates(self, event: dict[str, Any], job: Job) -> list[Update]:
        fields = Fields(event, f"{self.endpoint.url}{job.path}")
        if fields.has("usage"):
            self._count(fields.object("usage"))
        found = []
        for choice in fields.objects("choices"):
            index = choice.integer("index", 0, 0, MAX_CHOICES)
            if index not in job.indexes:
                raise ServerError(f"{self.endpoint.url} answered a choice {index} it was not "
                                  "asked for")
            text = choice.object("delta").text("content")
            logprobs = tuple(lp for t in choice.object("logprobs").objects("content")
                             if (lp := t.number("logprob")) is not None)
            reason = choice.text("finish_reason")
            # "stop" is the end of the turn or a stop string (kept in the text, which the
            # search's stop test then finds)
            finish = _FINISH.get(reason, "eog") if reason else None
            found.append(Update(index, text, (), logprobs, finish))
        return found

    def greedy(self, prompt: Prompt, grammar: str, max_tokens: int, *, image: bool,
               reply: str = "") -> str:
        options = {"max_tokens": max_tokens, "temperature": 0, **_grammar(grammar)}
        done = self._chat(self._messages(prompt, reply, image=image), options)
        return _first_choice(done).object("message").text("content")

    def top_logprobs(self, prompt: Prompt, reply: str = "") -> dict[str, float]:
        done = self._chat(self._messages(prompt, reply), {
            "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": _TOP})
        content = _first_choice(done).object("logprobs").objects("content")
        first = content[0] if content else Fields({}, done.where)
        return {t.text("token").strip(): lp for t in first.objects("top_logprobs")
                if (lp := t.number("logprob")) is not None}

    def sampled(self, prompt: Prompt, request: ReplyRequest, seed: int) -> str:
        options = {"max_tokens": request.max_tokens, "seed": seed,
                   "stop": list(request.stop_strings), "include_stop_str_in_output": True,
                   **_sampling(request)}
        done = self._chat(self._messages(prompt, "", image=prompt.image), options)
        return _first_choice(done).object("message").text("content")

    # -- requests -------------------------------------------------------------------------

    def _messages(self, prompt: Prompt, chosen: str, *, image: bool = True
                  ) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt.text}]
        if image:
            content.insert(0, {"type": "image_url",
                               "image_url": {"url": f"data:image/png;base64,{self._image}"}})
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if chosen:
            messages.append({"role": "assistant", "content": chosen})
        return messages

    def _request(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        continuing = messages[-1]["role"] == "assistant"
        return {"model": self.model, "messages": messages,
                "continue_final_message": continuing, "add_generation_prompt": not continuing}

    def _chat(self, messages: list[dict[str, Any]], options: dict[str, Any]) -> Fields:
        done = Fields(self.post("/chat/completions", self._request(messages) | options),
                      f"{self.endpoint.url}/chat/completions")
        self._count(done.object("usage"))
        return done

    def _count(self, usage: Fields) -> None:
        self.prompt_tokens += usage.integer("prompt_tokens")
        details = usage.object("prompt_tokens_details")
        if details.has("cached_tokens") and details.integer("cached_tokens") == 0:
            self.image_encodes += 1


def _first_choice(done: Fields) -> Fields:
    choices = done.objects("choices")
    return choices[0] if choices else Fields({}, done.where)


def _sampling(request: SampleRequest | ReplyRequest) -> dict[str, Any]:
    s = request.sampling
    if s.greedy:
        return {"temperature": 0}
    return {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p}


def _grammar(grammar: str) -> dict[str, Any]:
    """A GBNF grammar as vLLM takes it: ``structured_outputs`` (0.10.2 on), and
    ``guided_grammar`` for the versions before, which still run Llama 3.2 Vision on their
    V0 engine (each version ignores the other's field)."""
    return {"structured_outputs": {"grammar": grammar}, "guided_grammar": grammar}
