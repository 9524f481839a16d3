"""Argument types shared by the ``stagewise`` subcommands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from stagewise.models.errors import StagewiseError
from stagewise.models.inference.engine_settings import AUTO_CTX, FALLBACK_CTX
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.judge import WORDINGS
from stagewise.models.reasoning.search_settings import MAX_BEAM, SearchSettings
from stagewise.models.reasoning.selections import SELECTIONS
from stagewise.models.reasoning.strategies import STRATEGIES, default_selection
from stagewise.models.remote.server import SERVER_KINDS, ServerSettings
from stagewise.models.storage.app_settings import CTX_MAX, CTX_MIN


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


SEED_MAX = 2**32 - 1


def context_size(text: str) -> int:
    """``--ctx``: "auto" (or 0), or a whole number from CTX_MIN to CTX_MAX."""
    if text.strip().lower() in ("auto", str(AUTO_CTX)):
        return AUTO_CTX
    try:
        return int_in(CTX_MIN, CTX_MAX)(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error}, or auto") from None


CTX_HELP = (f"context size in tokens, {CTX_MIN} to {CTX_MAX}, or auto (the default): the "
            f"model's trained context up to {FALLBACK_CTX}, or more when the search needs it")


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


def beam_width(text: str) -> int:
    """A beam width from 1 to :data:`MAX_BEAM`."""
    value = positive_int(text)
    return _at_most_max_beam(value)


def beam_width_or_auto(text: str) -> int:
    """A beam width from 1 to :data:`MAX_BEAM`, or "auto" (read as 0,
    :data:`~stagewise.models.reasoning.auto_beam.AUTO_BEAM`, as the settings store it)."""
    if text.strip().lower() == "auto":
        return 0
    return beam_width(text)


def _at_most_max_beam(value: int) -> int:
    if value > MAX_BEAM:
        raise argparse.ArgumentTypeError(f"at most {MAX_BEAM}, not {value}")
    return value


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """The judge's wording and reply budget, shared by ``ask`` and ``eval``."""
    parser.add_argument("--judge-prompt", choices=WORDINGS, default=SearchSettings.judge_prompt,
                        help="the judge's wording: short (this project's, which the demo "
                             "model was trained on) or reference (the paper code's); "
                             "default %(default)s")
    parser.add_argument("--max-judge-tokens", type=int_in(1, 4096),
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


def server_settings(args: argparse.Namespace) -> ServerSettings | None:
    """The server the options name, or None for a model in this process.

    Raises:
        StagewiseError: Both --server and --model were given.
    """
    if not args.server:
        return None
    if getattr(args, "model", None) is not None:
        raise StagewiseError("give --server or --model, not both")
    return ServerSettings(args.server, args.server_kind, args.server_model,
                          StageMode(args.stage_mode))
