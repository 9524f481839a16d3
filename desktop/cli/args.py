"""Argument types shared by the ``stagewise`` subcommands."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stagewise.models.bounds import FloatRange, IntRange
from stagewise.models.errors import StagewiseError
from stagewise.models.inference.engine_settings import (
    AUTO_CTX,
    FALLBACK_CTX,
    FLASH_ATTENTION,
    GPU_LAYERS,
    IMAGE_TOKENS,
    N_CTX,
    THREADS,
    EngineSettings,
)
from stagewise.models.inference.sampling_settings import TEMPERATURE, TOP_P, SamplingSettings
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.auto_beam import AUTO_BEAM
from stagewise.models.reasoning.judge import WORDINGS
from stagewise.models.reasoning.search_settings import (
    BEAM,
    MAX_JUDGE_TOKENS,
    MAX_STAGE_TOKENS,
    SEED,
    SearchSettings,
)
from stagewise.models.reasoning.selections import SELECTIONS
from stagewise.models.reasoning.strategies import STRATEGIES, default_selection
from stagewise.models.remote.server import SERVER_KINDS, ServerSettings


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def context_size(text: str) -> int:
    """``--ctx``: "auto" (or 0), or a whole number in
    :data:`~stagewise.models.inference.engine_settings.N_CTX`."""
    if text.strip().lower() in ("auto", str(AUTO_CTX)):
        return AUTO_CTX
    try:
        return int_in(N_CTX.low, N_CTX.high)(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error}, or auto") from None


CTX_HELP = (f"context size in tokens, {N_CTX.low} to {N_CTX.high}, or auto (the default): the "
            f"model's trained context up to {FALLBACK_CTX}, or more when the search needs it")


def setting(bound: IntRange | FloatRange) -> Callable[[str], Any]:
    """The argument type of a setting: a value its range (``bound``) allows, read as a whole
    number or a number as the range is; out of range, argparse says which range."""
    if isinstance(bound, FloatRange):
        return number_in(bound.low, bound.high)
    return int_in(bound.low, bound.high)


def int_in(low: int, high: int) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high``; out of range, argparse says which range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def number_in(low: float, high: float) -> Callable[[str], float]:
    """A finite number from ``low`` to ``high`` (no nan or inf)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, not {text}")
        return value

    parse.__name__ = "number"
    return parse


def checked_question(text: str) -> str:
    """The question, if it is one.

    Raises:
        StagewiseError: It is empty, or holds bytes that are not UTF-8 text (the shell
            passed them through, as surrogate escapes).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise StagewiseError("the question is not valid UTF-8 text") from None
    if not text.strip():
        raise StagewiseError("the question is empty")
    return text


QUESTION_FILE_MAX = 2**20


def question_file(text: str) -> str:
    """``--question-file``: the question a UTF-8 text file holds (``-``: standard input),
    its last line end left out. The command line caps one argument at 128 KiB; a file
    may hold up to 1 MiB.

    Raises:
        argparse.ArgumentTypeError: It cannot be read, is over 1 MiB or is not UTF-8 text.
    """
    try:
        if text == "-":
            data = sys.stdin.buffer.read(QUESTION_FILE_MAX + 1)
        else:
            with open(text, "rb") as file:
                data = file.read(QUESTION_FILE_MAX + 1)
    except OSError as error:
        raise argparse.ArgumentTypeError(
            f"cannot read {text}: {error.strerror or error}") from None
    if len(data) > QUESTION_FILE_MAX:
        raise argparse.ArgumentTypeError(f"{text} is over {QUESTION_FILE_MAX // 2**20} MiB")
    try:
        question = data.decode("utf-8")
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{text} is not UTF-8 text") from None
    return question.removesuffix("\n").removesuffix("\r")


beam_width = setting(BEAM)
"""``--beam``: a width that :data:`~stagewise.models.reasoning.search_settings.BEAM` allows."""


def beam_width_or_auto(text: str) -> int:
    """``--beam``: a width :data:`~stagewise.models.reasoning.search_settings.BEAM` allows,
    or "auto" (read as :data:`~stagewise.models.reasoning.auto_beam.AUTO_BEAM`, 0)."""
    if text.strip().lower() == "auto":
        return 0
    return beam_width(text)


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """The judge's wording and reply budget, shared by ``ask`` and ``eval``."""
    parser.add_argument("--judge-prompt", choices=WORDINGS, default=SearchSettings.judge_prompt,
                        help="the judge's wording: short (this project's, which the demo "
                             "model was trained on) or reference (the paper code's); "
                             "default %(default)s")
    parser.add_argument("--max-judge-tokens", type=setting(MAX_JUDGE_TOKENS),
                        default=SearchSettings.max_judge_tokens, metavar="N",
                        help="tokens a judge's reply may write before it is read "
                             "(default %(default)s; the reference allows 2048)")


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """``--strategy`` and ``--select`` of ``ask``: their choices are the registries'."""
    parser.add_argument("--select", choices=SELECTIONS.names(), metavar="SELECTION",
                        help="how a candidate is chosen: "
                             + "; ".join(f"{s.name}: {s.help}" for s in SELECTIONS)
                             + " (default: the strategy's, else "
                             + f"{default_selection(SearchSettings.strategy)})")
    parser.add_argument("--strategy", choices=STRATEGIES.names(),
                        default=SearchSettings.strategy, metavar="STRATEGY",
                        help="what the search generates: "
                             + "; ".join(f"{s.name}: {s.help}" for s in STRATEGIES)
                             + " (default %(default)s)")


def selection_of(args: argparse.Namespace) -> str | None:
    """The selection the options ask for: ``--select`` (or its older name ``--scorer``);
    None leaves it to the default (the strategy's)."""
    return args.select or args.scorer


def add_retrace_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the retrace strategy (SWIRES) and of a second model, shared by ``ask``
    and ``eval``."""
    group = parser.add_argument_group("retrace (--strategy retrace) and a second model")
    # retrace's scorer is its selection now; --scorer stays as another name for --select
    group.add_argument("--scorer", choices=SELECTIONS.names(), help=argparse.SUPPRESS)
    group.add_argument("--scorer-model", type=Path, metavar="GGUF",
                       help="a second model's text GGUF (projector beside it) or library id, "
                            "for a selection that scores with one (--select model)")
    group.add_argument("--retrace-cutoff", type=number_in(-1e9, 1e9), metavar="X",
                       help="retrace while the second-best reasoning score is not above X "
                            "(default: the selection's; probabilities 0.5, log-probabilities "
                            "never retrace)")


def retrace_settings(args: argparse.Namespace) -> dict[str, object]:
    """The SearchSettings fields the retrace, second-model and judge options give."""
    return {"retrace_cutoff": args.retrace_cutoff, "scorer_model": args.scorer_model,
            "judge_prompt": args.judge_prompt, "max_judge_tokens": args.max_judge_tokens}


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that send the questions to a model another program serves."""
    group = parser.add_argument_group("a remote model (instead of --model)")
    group.add_argument("--server", metavar="URL",
                       help="answer with the model a server serves: llama.cpp's llama-server "
                            "(http://HOST:PORT) or an OpenAI-compatible server such as vLLM "
                            "(http://HOST:PORT/v1, with --server-kind openai); the API key "
                            "comes from STAGEWISE_API_KEY or the window's server settings")
    group.add_argument("--server-kind", choices=SERVER_KINDS, default=ServerSettings.kind,
                       help="the server's API (default %(default)s)")
    group.add_argument("--server-model", metavar="NAME", default=ServerSettings.model,
                       help="the model's name on an OpenAI-compatible server")
    group.add_argument("--stage-mode", choices=[m.value for m in StageMode],
                       default=ServerSettings.stage_mode.value,
                       help="whether the served model writes the four stages itself (native: "
                            "a LLaVA-CoT model) or is prompted for them (default %(default)s)")
    group.add_argument("--server-timeout", type=number_in(0.1, 86400.0), metavar="SECONDS",
                       default=ServerSettings.stall_timeout,
                       help="give up on a server that answers nothing, or streams no text, "
                            "for this long (default %(default)g)")


def server_settings(args: argparse.Namespace) -> ServerSettings | None:
    """The server the options name, or None for a model in this process. A login in the
    address (``http://user:pw@host``) is moved into the settings' ``login``.

    Raises:
        StagewiseError: Both --server and --model were given.
        ServerError: --server is not a usable address.
    """
    if not args.server:
        return None
    if getattr(args, "model", None) is not None:
        raise StagewiseError("give --server or --model, not both")
    return ServerSettings(args.server, args.server_kind, args.server_model,
                          StageMode(args.stage_mode), args.server_timeout)


def add_answer_arguments(parser: argparse.ArgumentParser, *, auto_beam: bool) -> None:
    """The model, search, hardware and history options that ``ask`` and ``batch`` share;
    their defaults are the settings dataclasses' own, as the window's are.

    Args:
        parser: The command's parser.
        auto_beam: ``--beam`` takes "auto" and is auto by default (``ask``); otherwise
            a width, by default the settings' (``batch``, whose rows must not depend on
            the machine's speed).
    """
    parser.add_argument("--model", type=Path, help="text model GGUF (default: built-in model)")
    parser.add_argument("--mmproj", type=Path,
                        help="projector GGUF (default: the one beside --model)")
    if auto_beam:
        parser.add_argument(
            "--beam", type=beam_width_or_auto, default=AUTO_BEAM,
            help=f"candidates per stage, {BEAM.low} to {BEAM.high} (1 is a single pass), or "
                 "auto (the default): a single pass first, then the widest of 1, 2 and 4 "
                 "that this machine runs within twice a single pass")
    else:
        parser.add_argument("--beam", type=beam_width, default=SearchSettings.beam,
                            help=f"candidates per stage, {BEAM.low} to {BEAM.high} (default "
                                 "%(default)s, a single pass)")
    add_search_arguments(parser)
    parser.add_argument("--max-stage-tokens", type=setting(MAX_STAGE_TOKENS),
                        default=SearchSettings.max_stage_tokens,
                        help=f"token budget per stage, {MAX_STAGE_TOKENS.low} to "
                             f"{MAX_STAGE_TOKENS.high} (default %(default)s)")
    parser.add_argument("--temperature", type=setting(TEMPERATURE),
                        default=SamplingSettings.temperature,
                        help=f"{TEMPERATURE.low:g} to {TEMPERATURE.high:g}; 0 is greedy "
                             "(default %(default)s)")
    parser.add_argument("--top-p", type=setting(TOP_P), default=SamplingSettings.top_p,
                        help=f"{TOP_P.low:g} to {TOP_P.high:g} (default %(default)s)")
    parser.add_argument("--seed", type=setting(SEED), default=SearchSettings.seed,
                        help=f"{SEED.low} to {SEED.high} (default %(default)s)")
    parser.add_argument("--threads", type=setting(THREADS),
                        help=f"CPU threads, {THREADS.low} to {THREADS.high} (default: auto)")
    parser.add_argument("--gpu-layers", type=setting(GPU_LAYERS),
                        default=EngineSettings.gpu_layers,
                        help="layers to offload to the GPU: -1 all that fit (default), 0 none")
    parser.add_argument("--ctx", type=context_size, default=EngineSettings.n_ctx,
                        help=CTX_HELP)
    parser.add_argument("--flash-attn", choices=FLASH_ATTENTION,
                        default=EngineSettings.flash_attn,
                        help="flash attention (default %(default)s)")
    parser.add_argument("--image-tokens", type=image_tokens, metavar="N",
                        help=IMAGE_TOKENS_HELP)
    parser.add_argument("--no-history", action="store_true",
                        help="do not keep the questions and their answers in the history "
                             "(which the window shows)")
    add_judge_arguments(parser)
    add_retrace_arguments(parser)


IMAGE_TOKENS_HELP = (
    f"most tokens one image may take, {IMAGE_TOKENS.low} to {IMAGE_TOKENS.high}, or 0: the "
    "model's own cap (default: what the window's Preferences keep for this model, else 0). "
    "For models whose image tokens follow the picture's size "
    "(Qwen-VL: one token per 28x28 pixels, 8 to 4096), a larger picture is downscaled, its "
    "aspect kept, before it is encoded; more tokens see finer detail and need more context. "
    "Other models take every picture at one size and ignore it")


def image_tokens_of(args: argparse.Namespace) -> int:
    """The image-token cap a command runs with: ``--image-tokens``, else the one the
    window's Preferences keep for the model (``model-settings.json``), else 0.

    Raises:
        StagewiseError: ``--model`` names no model that can be found.
    """
    from stagewise.models.library.defaults import resolve_pair
    from stagewise.models.storage.model_settings import image_tokens_for

    if args.image_tokens is not None:
        return args.image_tokens
    if getattr(args, "server", None):
        return 0  # a server sizes its images itself
    model = resolve_pair(args.model, args.mmproj).model if args.model is not None else None
    return image_tokens_for(model) or 0


def image_tokens(text: str) -> int:
    """``--image-tokens``: 0 (the model's own cap), or a count
    :data:`~stagewise.models.inference.engine_settings.IMAGE_TOKENS` allows."""
    if text.strip() == "0":
        return 0
    return int_in(IMAGE_TOKENS.low, IMAGE_TOKENS.high)(text)
