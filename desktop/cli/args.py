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
from stagewise.models.inference.engine_settings import AUTO_CTX, FALLBACK_CTX, N_CTX
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.judge import WORDINGS
from stagewise.models.reasoning.search_settings import BEAM, MAX_JUDGE_TOKENS, SearchSettings
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
