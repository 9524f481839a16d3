"""The code's shape: files and lines, the largest modules, long functions, repeated blocks.

Run before and after a refactor and compare (issue 16 records both in the README)::

    python bench/code_shape.py            # models/ and desktop/
    python bench/code_shape.py --all      # tests/, bench/ and packaging/ too

A repeated block is a run of :data:`WINDOW` lines (blank lines, comments, imports and
docstrings passed over, white space folded) that stands in more than one place.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 6
LONG_FUNCTION = 80


def _skipped(tree: ast.Module) -> set[int]:
    """Line numbers of imports and docstrings."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            skipped.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return skipped


def _code_lines(path: Path) -> list[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    skipped = _skipped(ast.parse(source))
    lines = []
    for no, line in enumerate(source.splitlines(), 1):
        text = " ".join(line.split())
        if no in skipped or not text or text.startswith("#") or text in "()[]{}:,":
            continue
        lines.append((no, text))
    return lines


def _long_functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > LONG_FUNCTION:
                found.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", length))
    return found


def _repeated_blocks(files: list[Path]) -> int:
    """How many :data:`WINDOW`-line runs stand in two or more places."""
    places: dict[str, set[tuple[Path, int]]] = defaultdict(set)
    for path in files:
        lines = _code_lines(path)
        for i in range(len(lines) - WINDOW + 1):
            window = "\n".join(text for _, text in lines[i:i + WINDOW])
            places[hashlib.sha1(window.encode()).hexdigest()].add((path, lines[i][0]))
    return sum(1 for spots in places.values() if len(spots) > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="measure tests, bench, packaging too")
    args = parser.parse_args()
    tops = ["models", "desktop"] + (["tests", "bench", "packaging"] if args.all else [])
    files = sorted(p for top in tops for p in (ROOT / top).rglob("*.py")
                   if ".venv" not in p.parts)
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in files}
    runtime = [p for p in files if "recipes" not in p.relative_to(ROOT).parts]
    print(f"files: {len(files)}  lines: {sum(sizes.values())}")
    for top in tops:
        inside = [p for p in files if p.relative_to(ROOT).parts[0] == top]
        print(f"  {top + '/':<11} {len(inside):>4} files {sum(sizes[p] for p in inside):>7} lines")
    print("largest modules outside the recipes:")
    for path in sorted(runtime, key=lambda p: -sizes[p])[:10]:
        print(f"  {sizes[path]:>5}  {path.relative_to(ROOT)}")
    over = [p for p in runtime if p.relative_to(ROOT).parts[0] == "models" and sizes[p] > 500]
    print(f"models/ modules over 500 lines outside the recipes: {len(over)}")
    long = sorted((f for p in files for f in _long_functions(p)), key=lambda f: -f[1])
    print(f"functions over {LONG_FUNCTION} lines: {len(long)}")
    for name, length in long:
        print(f"  {length:>5}  {name}")
    print(f"repeated {WINDOW}-line blocks: {_repeated_blocks(files)}")


if __name__ == "__main__":
    main()
