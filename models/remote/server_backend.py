"""The search on llama.cpp's ``llama-server``, through its own API.

Prompts are rendered as the in-process engine renders them: the model family's adapter
(:mod:`stagewise.models.inference.families`, recognised from the chat template the server
reports) over that template, with the server's media marker where the image goes (the
server's own ``/apply-template`` when the adapter cannot render it). They are continued
with ``/completion``: the prompt string, the image as ``multimodal_data``, the chosen text
appended. All candidates of a segment are one streamed request (``n_cmpl``): the server
evaluates the prompt once, always in slot 0 (whose cache keeps the image and the chosen
text up to the last segment, so only the newly chosen text is evaluated), and copies that
slot's cache to the others, as the in-process engine forks its root sequence. (A slot that
received a copy does not serve later prompts from its cache, so the winner's own slot is
not used.) Each candidate streams with the log-probability of every token (``n_probs``),
the stage's close tag as a stop word and, in prompted mode, the stage's grammar. How often
the server still had to encode the image is read from the cached-token counts it reports.

What the server cannot do as the in-process engine does: force a stage's close tag into a
whole answer that overran its stage's budget (best-of-N and sentence search get the whole
answer's budget only), and give P("Yes") beyond its top 20 first tokens.
"""

from __future__ import annotations

import base64
import contextlib
import io
import threading
import time
from typing import Any

from stagewise.models.errors import Cancelled
from stagewise.models.inference.chat_template import ChatTemplateError
from stagewise.models.inference.families import detect_family
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.sampling import mix_seed
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.search_backend import (
    PrefixReport,
    Prompt,
    PromptInfo,
    ReplyRequest,
    SampleRequest,
)
from stagewise.models.remote.fields import Fields
from stagewise.models.remote.http import Endpoint, ServerError
from stagewise.models.remote.text_backend import Job, RemoteBackend, Update
from stagewise.models.stages import user_text

__all__ = ["ServerBackend", "png_base64"]

MARKER = "<__media__>"  # libmtmd's default marker, for a server that does not say its own
_TOP = 20
_FINISH = {"eos": "eog", "word": "closed", "limit": "length"}
MAX_SLOTS = 4096
MAX_TOKEN_ID = 2**31 - 1


class ServerBackend(RemoteBackend):
    """:class:`~stagewise.models.reasoning.search_backend.SearchBackend` on a llama-server."""

    def __init__(self, endpoint: Endpoint, stage_mode: StageMode = StageMode.PROMPTED) -> None:
        """Check that the server is a llama-server that takes images.

        Raises:
            ServerError: It cannot be reached, refuses the key, or takes no images.
        """
        super().__init__(endpoint, stage_mode)
        props = Fields(endpoint.get("/props"), f"{endpoint.url}/props")
        if not props.object("modalities").flag("vision"):
            raise ServerError(f"the model at {endpoint.url} takes no images: start "
                              "llama-server with --mmproj")
        self.slots = max(props.integer("total_slots", 1, 0, MAX_SLOTS), 1)
        marker = props.text("media_marker")
        self._marker = marker if 0 < len(marker) <= 64 and marker.strip() else MARKER
        self._chat_template = props.text("chat_template") or None
        self._eos = props.text("eos_token")
        self._family = detect_family({"tokenizer.chat_template": self._chat_template or ""})
        self._image = ""
        self._prompt = ""
        self._before_image = 0  # a request that reuses no more tokens encodes the image again

    def start(self, image: PreparedImage, question: str, mode: StageMode) -> PromptInfo:
        self._image = png_base64(image)
        # the server takes every media marker for an image: one the question spells stays text
        question = question.replace(self._marker, f"{self._marker[:1]}\u200b{self._marker[1:]}")
        self._prompt = self._template(Prompt(user_text(question, mode)), True)
        head = self._prompt.partition(self._marker)[0]
        tokenized = Fields(self.post("/tokenize", {"content": head}),
                           f"{self.endpoint.url}/tokenize")
        self._before_image = len(tokenized.integers("tokens", MAX_TOKEN_ID))
        done = self._complete(self._prompt, {"n_predict": 0}, image=True, slot=0)
        n = done.integer("tokens_evaluated")
        return PromptInfo(n, n)

    def prepare(self, image: PreparedImage, mode: StageMode, cancel: threading.Event
                ) -> PrefixReport:
        """Have the server evaluate the prompt up to the end of ``image`` in slot 0, where
        :meth:`start` evaluates every question: the server's prompt cache
        (``cache_prompt``) keeps it, and a question about the image then evaluates only
        its own tokens. Only the server's memory holds it: a restarted server, or a slot
        that served another prompt since, encodes the image again.

        Raises:
            Cancelled: ``cancel`` was set before the request went.
            ServerError: The server failed.
        """
        if cancel.is_set():
            raise Cancelled()
        self._image = png_base64(image)
        first, second = (self._template(Prompt(user_text(question, mode)), True)
                         for question in ("What is it?", "Where are the two shapes?"))
        head, _, after = first.partition(self._marker)
        if head != second.partition(self._marker)[0]:
            return PrefixReport("", reason="the chat template puts text that depends on the "
                                           "question before the image")
        # a prompt that ends with the image aborts llama-server (GGML_ASSERT(batch.size()
        # > 0) in server-context.cpp): end it with the text every question has after it
        shared = _common_start(after, second.partition(self._marker)[2]) or "\n"
        start = time.perf_counter()
        done = self.post("/completion", self._body(head + self._marker + shared, image=True,
                                                   slot=0) | {"n_predict": 0})
        seconds = time.perf_counter() - start
        timings = done.get("timings") or {}
        cached = int(timings.get("cache_n") or 0)
        before = len(self.post("/tokenize", {"content": head}).get("tokens") or [])
        origin = "memory" if cached > before else "encoded"
        return PrefixReport(origin, seconds, seconds if origin == "encoded" else 0.0)

    def jobs(self, request: SampleRequest, chosen: str) -> list[Job]:
        """One request for all candidates (``n_cmpl``): the server evaluates the prompt once,
        in slot 0, and copies it to the others."""
        body = self._body(self._prompt + chosen, image=True, slot=0) | {
            "n_cmpl": request.n, "n_predict": request.max_tokens, "stream": True,
            "n_probs": 1, "return_tokens": True, "stop": list(request.stop_strings),
            "seed": mix_seed(request.seed, request.segment) % (2**32 - 1),
            **_sampling(request)}
        if request.grammar is not None:
            body["grammar"] = request.grammar
        return [Job("/completion", body, tuple(range(request.n)))]

    def updates(self, event: dict[str, Any], job: Job) -> list[Update]:
        fields = Fields(event, f"{self.endpoint.url}{job.path}")
        text = fields.text("content")
        logprobs = tuple(lp for p in fields.objects("completion_probabilities")
                         if (lp := p.number("logprob")) is not None)
        finish = None
        if fields.flag("stop"):
            kind = fields.text("stop_type", "limit")
            finish = _FINISH.get(kind, "length")
            if kind == "word":  # the server leaves the stop word out of the text
                text += fields.text("stopping_word")
            self._count(fields)
        tokens = fields.integers("tokens", MAX_TOKEN_ID)
        index = fields.integer("index", 0, 0, MAX_SLOTS)
        if index not in job.indexes:
            raise ServerError(f"{self.endpoint.url} answered a completion {index} it was not "
                              "asked for")
        return [Update(index, text, tokens, logprobs, finish)]

    def greedy(self, prompt: Prompt, grammar: str, max_tokens: int, *, image: bool,
               reply: str = "") -> str:
        options = {"n_predict": max_tokens, "grammar": grammar, "temperature": 0}
        done = self._complete(self._template(prompt, image) + reply, options, image=image)
        return done.text("content")

    def top_logprobs(self, prompt: Prompt, reply: str = "") -> dict[str, float]:
        done = self._complete(self._template(prompt, True) + reply,
                              {"n_predict": 1, "n_probs": _TOP, "temperature": 0}, image=True)
        first = (done.objects("completion_probabilities") or [Fields({}, done.where)])[0]
        return {t.text("token").strip(): lp for t in first.objects("top_logprobs")
                if (lp := t.number("logprob")) is not None}

    def sampled(self, prompt: Prompt, request: ReplyRequest, seed: int) -> str:
        options = {"n_predict": request.max_tokens, "seed": seed,
                   "stop": list(request.stop_strings), **_sampling(request)}
        done = self._complete(self._template(prompt, prompt.image), options,
                              image=prompt.image)
        stop = done.text("stopping_word") if done.flag("stopped_word") else ""
        return done.text("content") + stop

    # -- requests -------------------------------------------------------------------------

    def _template(self, prompt: Prompt, image: bool) -> str:
        """One user turn in the model's chat template, the image first, as the in-process
        engine renders it; the server's rendering where the family's adapter cannot."""
        if not self._family.native_template:
            with contextlib.suppress(ChatTemplateError):
                return self._family.render_prompt(self._chat_template, prompt.text,
                                                  self._marker, with_image=image,
                                                  eos_token=self._eos)
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt.text}]
        if image:
            content.insert(0, {"type": "image_url",
                               "image_url": {"url": f"data:image/png;base64,{self._image}"}})
        done = Fields(self.post("/apply-template",
                                {"messages": [{"role": "user", "content": content}]}),
                      f"{self.endpoint.url}/apply-template")
        rendered = done.text("prompt")
        if not rendered or (image and self._marker not in rendered):
            raise ServerError(f"{self.endpoint.url}/apply-template gave no prompt with an "
                              "image marker")
        return rendered

    def _body(self, prompt: str, *, image: bool, slot: int = -1) -> dict[str, Any]:
        data: Any = ({"prompt_string": prompt, "multimodal_data": [self._image]} if image
                     else prompt)
        return {"prompt": data, "cache_prompt": True, "id_slot": slot}

    def _complete(self, prompt: str, options: dict[str, Any], *, image: bool,
                  slot: int = -1) -> Fields:
        done = Fields(self.post("/completion", self._body(prompt, image=image, slot=slot) |
                                options), f"{self.endpoint.url}/completion")
        if image:
            self._count(done)
        return done

    def _count(self, done: Fields) -> None:
        """Note the prompt tokens the server evaluated, and whether it encoded the image."""
        timings = done.object("timings")
        self.prompt_tokens += timings.integer("prompt_n")
        if timings.integer("cache_n") <= self._before_image:
            self.image_encodes += 1


def _common_start(a: str, b: str) -> str:
    """The longest text both start with."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def png_base64(image: PreparedImage) -> str:
    """The image as a base64 PNG, as servers take it."""
    from PIL import Image

    picture = Image.frombytes("RGB", (image.width, image.height), image.rgb)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def _sampling(request: SampleRequest | ReplyRequest) -> dict[str, Any]:
    s = request.sampling
    if s.greedy:
        return {"temperature": 0}
    return {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p,
            "samplers": ["top_k", "temperature", "top_p", "min_p"]}
