"""Runs llama.cpp's ``convert_hf_to_gguf.py`` with two small patches; a subprocess entry point.

Usage::

    python -m stagewise.models.recipes.llava_cot.run_converter SRC [--pre-tokenizer NAME]
        [--kv KEY=VALUE ...] -- MODEL_DIR --outfile OUT.gguf --outtype f16 [--mmproj]

``SRC`` is a folder holding ``convert_hf_to_gguf.py``, its ``conversion`` package and its
``gguf-py`` (see :func:`stagewise.models.recipes.llava_cot.converter.converter_source`); everything
after ``--`` goes to the converter unchanged.
:func:`~stagewise.models.recipes.llava_cot.converter.convert` starts this module; it is not meant to
be imported.

The converter is run as it is, with two patches to ``conversion.base.TextModel``, made
before the script runs so that every text model class inherits them:

* ``get_vocab_base_pre`` returns ``--pre-tokenizer`` when it is given. llama.cpp tells BPE
  pre-tokenizers apart by hashing a known vocabulary's tokens for a fixed text, so a
  tokenizer learnt from scratch (the recipe's tiny proof model) matches no hash even when it
  splits text exactly as a known one does; naming the pre-tokenizer is the only way through.
* ``prepare_metadata`` adds each ``--kv`` as a string key after the converter's own keys.
  The converter has no option for arbitrary keys (``--metadata`` takes ``general.*`` fields
  only), and adding them here avoids rewriting a multi-gigabyte GGUF afterwards.
  Projector models (``MmprojModel``) are not text models and get neither patch.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

SCRIPT = "convert_hf_to_gguf.py"


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split the command line into ours (before ``--``) and the converter's (after it).

    Args:
        argv: The arguments, without the program name.

    Returns:
        Our parsed options, and the converter's arguments.
    """
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    ours, theirs = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m stagewise.models.recipes.llava_cot.run_converter",
        description="Run llama.cpp's convert_hf_to_gguf.py; arguments after -- are its own.")
    parser.add_argument("src", type=Path,
                        help="folder with convert_hf_to_gguf.py, conversion/ and gguf-py/")
    parser.add_argument("--pre-tokenizer", default=None,
                        help="write this tokenizer.ggml.pre instead of recognising it by hash")
    parser.add_argument("--kv", action="append", default=[], metavar="KEY=VALUE",
                        help="a string metadata key for the text model (repeatable)")
    args = parser.parse_args(ours)
    pairs: list[tuple[str, str]] = []
    for item in args.kv:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--kv wants KEY=VALUE, not {item!r}")
        pairs.append((key, value))
    args.kv = pairs
    return args, theirs


def patch_converter(pre_tokenizer: str | None, metadata: Sequence[tuple[str, str]]) -> None:
    """Patch ``conversion.base.TextModel`` (see the module docstring for why).

    Args:
        pre_tokenizer: The ``tokenizer.ggml.pre`` to write, or None to keep the hash lookup.
        metadata: String keys and values to add to text models.
    """
    from conversion import base  # the converter's own package, from SRC

    if pre_tokenizer is not None:
        def named_pre_tokenizer(self: object, tokenizer: object) -> str:
            return pre_tokenizer

        base.TextModel.get_vocab_base_pre = named_pre_tokenizer

    if metadata:
        prepare_metadata = base.TextModel.prepare_metadata

        def prepare_with_ours(self: base.TextModel, vocab_only: bool) -> None:
            prepare_metadata(self, vocab_only)
            for key, value in metadata:
                self.gguf_writer.add_string(key, value)

        base.TextModel.prepare_metadata = prepare_with_ours


def main(argv: Sequence[str] | None = None) -> None:
    """Patch the converter in ``SRC`` and run it as ``__main__``.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when None.
    """
    args, converter_args = parse_args(sys.argv[1:] if argv is None else argv)
    src = args.src.resolve()
    script = src / SCRIPT
    if not script.is_file():
        sys.exit(f"error: {src} has no {SCRIPT}")
    # What the script does for itself, done before ``conversion`` (which imports gguf) loads:
    # the converter's own package first, and its own gguf-py unless NO_LOCAL_GGUF is set.
    sys.path.insert(0, str(src))
    if "NO_LOCAL_GGUF" not in os.environ:
        sys.path.insert(1, str(src / "gguf-py"))
    patch_converter(args.pre_tokenizer, args.kv)
    sys.argv = [str(script), *converter_args]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
