"""Argument types shared by the ``stagewise`` subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from stagewise.models.reasoning.search_settings import MAX_BEAM, RETRACE_SCORERS, SearchSettings


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def beam_width(text: str) -> int:
    """A beam width from 1 to :data:`MAX_BEAM`."""
    value = positive_int(text)
    if value > MAX_BEAM:
        raise argparse.ArgumentTypeError(f"at most {MAX_BEAM}, not {value}")
    return value


def add_retrace_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the retrace strategy (SWIRES), shared by ``ask`` and ``eval``."""
    group = parser.add_argument_group("retrace (--strategy retrace)")
    group.add_argument("--scorer", choices=RETRACE_SCORERS, default=SearchSettings.retrace_scorer,
                       help="what scores candidates: the model's own P(yes) to 'is this "
                            "correct?' (selfcheck, default), their mean log-probability "
                            "(logprob), or a second model (model, with --scorer-model)")
    group.add_argument("--scorer-model", type=Path, metavar="GGUF",
                       help="the second model's text GGUF (projector beside it) or "
                            "library id, for --scorer model")
    group.add_argument("--retrace-cutoff", type=float, metavar="X",
                       help="retrace while the second-best reasoning score is not above X "
                            "(default: 0.5 for selfcheck and model; logprob never retraces)")


def retrace_settings(args: argparse.Namespace) -> dict[str, object]:
    """The SearchSettings fields the retrace options give."""
    return {"retrace_scorer": args.scorer, "retrace_cutoff": args.retrace_cutoff,
            "scorer_model": args.scorer_model}
