"""``python -m stagewise.models.recipes.real_shape NAME``: build one real-shape pair.

Prints the paths of the text model and projector (built once, kept in the cache folder).
NAME is one of ``qwen2.5-vl-3b``, ``qwen3-vl-4b``, ``gemma3-4b``, ``smolvlm2-2.2b`` (or
the same with ``-scaled``, a scaled-down copy for quick checks). Needs the ``train`` extra
(torch, transformers), cmake and a C++ compiler; Gemma 3's tokenizer needs npm.
"""

from __future__ import annotations

import argparse
import sys

from stagewise.models.errors import StagewiseError
from stagewise.models.recipes.real_shape.build import build_pair
from stagewise.models.recipes.real_shape.shapes import SCALED, SHAPES


def main(argv: list[str] | None = None) -> int:
    """Build the named pair and print its two paths."""
    names = {**SHAPES, **SCALED}
    parser = argparse.ArgumentParser(prog="python -m stagewise.models.recipes.real_shape",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(names))
    args = parser.parse_args(argv)
    try:
        pair = build_pair(names[args.name], log=lambda line: print(line, file=sys.stderr,
                                                                   flush=True))
    except StagewiseError as error:
        print(f"real_shape: {error}", file=sys.stderr)
        return 2
    print(pair.model)
    print(pair.mmproj)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
