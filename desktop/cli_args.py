"""Argument types shared by the ``stagewise`` subcommands."""

from __future__ import annotations

import argparse

from models.search_settings import MAX_BEAM


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
