"""Evaluation questions read from a VLMEvalKit benchmark TSV, the format of LLaVA-CoT's benchmarks.

VLMEvalKit keeps one tab-separated file per benchmark, header row first, with the columns
``index``, ``question``, ``answer`` and ``image`` (the picture itself, base64-encoded), and
optionally option columns ``A``, ``B``, ... (an empty cell: no such option), ``hint``,
``category``, ``l2-category``, ``image_path``... An ``image`` cell that is a short all-digit
string is the ``index`` of another row whose picture this row reuses (as in MMBench).

Which benchmark a file holds is told by its name (``MMStar.tsv``, ``MMBench_DEV_EN.tsv``,
``AI2D_TEST.tsv``, ``HallusionBench.tsv``, ``MathVista_MINI.tsv``, ``MMVet.tsv``...; see
:mod:`~stagewise.models.evaluation.benchmarks`), and so are the question asked and the rules
its answers are read by (the item's ``benchmark``; its ``fields`` keep the row's cells):

* Multiple choice (any file with option columns and a gold option letter): the question as
  VLMEvalKit or the LLaVA-CoT reference asks it
  (:func:`~stagewise.models.evaluation.benchmarks.build_question`), read by VLMEvalKit's
  ``can_infer``. For a CircularEval benchmark (MMBench...) the index must be a whole number,
  and ``limit`` counts questions with all their rotated copies (index ``i + k·1,000,000``).
* Yes/no (HallusionBench): the question as is; the gold answer ``"Yes"`` or ``"No"`` (``1``
  and ``0`` mean yes and no); the index must name set, figure and question as VLMEvalKit's
  ``Hallusion_rating`` reads them (its 4th, 5th and 6th ``_``-separated parts).
* MathVista and MMVet: the question as is, scored by an LLM grader
  (:mod:`~stagewise.models.evaluation.grader`); a MathVista row needs ``question_type`` and
  ``answer_type``, and a multiple-choice one ``choices`` and ``answer_option``.
* Any other file: plain question and answer, scored by Stagewise's normalised match.

The pictures are written once, as files named by the row's index, to a folder under
:func:`stagewise.models.disk.paths.cache_dir` named after the TSV (its stem and a hash of its
path, size and modification time), since an :class:`~stagewise.models.evaluation.data.EvalItem`
names an image file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from stagewise.models.disk.paths import cache_dir
from stagewise.models.evaluation.benchmarks import Benchmark, Rules, benchmark_of, build_question
from stagewise.models.evaluation.data import EvalDataError, EvalItem
from stagewise.models.evaluation.vlmeval_rules import circular_group, mathvista_choices

__all__ = ["HALLUSION_ID_PARTS", "image_folder", "read_tsv"]

HALLUSION_ID_PARTS = 6
"""A HallusionBench index splits on "_" into at least this many parts: VLMEvalKit's
``Hallusion_rating`` reads set, figure and question ids from parts 4, 5 and 6."""

_OPTION_COLUMN = re.compile(r"[A-Z]")
_MAX_REFERENCE = 64  # VLMEvalKit: an image cell this short names another row's index
_YES_NO = {"yes": "Yes", "1": "Yes", "1.0": "Yes", "no": "No", "0": "No", "0.0": "No"}
_EMPTY = frozenset({"", "nan"})  # pandas writes a missing cell as "" and reads "nan" as one
_SAFE_NAME = re.compile(r"[^\w.-]")
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}


@dataclass
class _Row:
    number: int
    index: str
    question: str
    answers: tuple[str, ...]
    kind: str
    image: Path | None = None
    reference: str = ""  # the index of the row whose picture this row reuses
    rules: Rules = ""
    fields: dict[str, str] = field(default_factory=dict)


def read_tsv(path: Path, limit: int | None = None) -> list[EvalItem]:
    """Read the questions of a VLMEvalKit benchmark TSV, writing its pictures to the cache.

    Args:
        path: The TSV file; its name tells the benchmark (see the module docstring).
        limit: Read only the first ``limit`` rows (pictures of later rows are not decoded,
            except one that an earlier row reuses); for a CircularEval benchmark, the first
            ``limit`` questions and all their rotated copies.

    Returns:
        The questions, in file order: id ``"<stem>-<index>"``, kind the row's ``category``
        (``""`` if none), line the row's number (1-based, the header not counted).

    Raises:
        EvalDataError: The file is missing or unreadable, lacks a needed column, or a row
            has no question or answer, an image that is not base64 of a picture, reuses the
            picture of an index not in the file, or lacks what its benchmark's rules read
            (see the module docstring). The message names the file and row.
    """
    if not path.is_file():
        raise EvalDataError(f"{path}: no such file")
    benchmark = benchmark_of(path)
    try:
        folder = image_folder(path)
    except OSError as error:
        raise EvalDataError(f"{path}: no cache folder for its pictures "
                            f"({error.strerror or error})") from None
    _raise_field_limit()
    try:
        keep = None
        if benchmark.circular and limit is not None:
            keep, limit = _circular_selection(path, limit), None
        with path.open(encoding="utf-8-sig", newline="") as file:
            rows = _rows(file)
            header = _header(path, rows)
            items = _read(path, header, rows, folder, benchmark, limit, keep)
    except UnicodeDecodeError:
        raise EvalDataError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as error:
        raise EvalDataError(f"{path}: not a readable TSV file ({error})") from None
    except OSError as error:
        raise EvalDataError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not items:
        raise EvalDataError(f"{path}: no questions in this file")
    return items


def image_folder(path: Path) -> Path:
    """The cache folder for a TSV's pictures: ``eval-images/<stem>-<hash>`` in the cache.

    The hash (16 hex digits of a SHA-256) covers the file's absolute path, size and
    modification time, so a changed file gets a fresh folder.
    """
    stat = path.stat()
    key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    return cache_dir() / "eval-images" / f"{path.stem}-{hashlib.sha256(key).hexdigest()[:16]}"


def _raise_field_limit() -> None:
    """Let the csv module read cells as large as a picture (its default limit is 128 KiB)."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


def _rows(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """The file's rows, numbered from 0 (the header); blank lines are skipped."""
    return enumerate(row for row in csv.reader(lines, delimiter="\t") if any(row))


def _rows_after_header(path: Path) -> Iterator[tuple[int, list[str]]]:
    """The file's rows read afresh, the header skipped."""
    with path.open(encoding="utf-8-sig", newline="") as file:
        rows = _rows(file)
        next(rows, None)
        yield from rows


def _circular_selection(path: Path, limit: int) -> set[str]:
    """The indexes of the first ``limit`` CircularEval questions and their rotated copies.

    A question is a row whose index is its own group (VLMEvalKit's ``g_index``); its
    rotated copies are the rows of that group anywhere in the file.
    """
    with path.open(encoding="utf-8-sig", newline="") as file:
        rows = _rows(file)
        header = _header(path, rows)
        groups: dict[int, list[str]] = {}
        questions: list[int] = []
        for number, cells in rows:
            index = _cell(header, cells, "index").strip() or str(number)
            group = _group(path, number, index)
            groups.setdefault(group, []).append(index)
            if str(group) == index and group not in questions:
                questions.append(group)
    return {index for group in questions[:limit] for index in groups[group]}


def _group(path: Path, number: int, index: str) -> int:
    try:
        return circular_group(index)
    except ValueError:
        raise EvalDataError(f"{path}: row {number} (index {index}): a CircularEval benchmark's "
                            "index must be a whole number (VLMEvalKit groups rotated copies "
                            "by index modulo 1,000,000)") from None


def _header(path: Path, rows: Iterator[tuple[int, list[str]]]) -> dict[str, int]:
    first = next(rows, None)
    if first is None:
        raise EvalDataError(f"{path}: no questions in this file")
    header = {name.strip(): i for i, name in reversed(list(enumerate(first[1])))}
    for needed in ("question", "answer"):
        if needed not in header:
            words = " (a test split without answers cannot be scored)" if needed == "answer" \
                else ""
            raise EvalDataError(f"{path}: no {needed!r} column in the header{words}")
    if "image" not in header and "image_path" not in header:
        raise EvalDataError(f"{path}: no 'image' or 'image_path' column in the header")
    return header


def _read(path: Path, header: dict[str, int], rows: Iterator[tuple[int, list[str]]],
          folder: Path, benchmark: Benchmark, limit: int | None,
          keep: set[str] | None) -> list[EvalItem]:
    option_columns = sorted(c for c in header if _OPTION_COLUMN.fullmatch(c))
    read: list[_Row] = []
    pictures: dict[str, Path] = {}  # index -> its picture file
    for number, cells in rows:
        if limit is not None and len(read) >= limit:
            break
        if keep is not None and (_cell(header, cells, "index").strip() or str(number)) \
                not in keep:
            continue
        row = _row(path, header, option_columns, benchmark, number, cells)
        if any(r.index == row.index for r in read):
            raise EvalDataError(f"{_where(path, row)}: index {row.index} is used by "
                                "an earlier row too")
        cell = _cell(header, cells, "image").strip()
        if _is_reference(cell):
            row.reference = cell
        else:
            row.image = _picture(path, header, cells, row, cell, folder)
            pictures[row.index] = row.image
        read.append(row)
    missing = {r.reference for r in read if r.reference and r.reference not in pictures}
    if missing:  # reused pictures of rows after the limit, or of rows not kept
        source = rows if keep is None else _rows_after_header(path)
        pictures.update(_later_pictures(path, header, source, missing, folder))
    items = []
    for row in read:
        image = row.image or pictures.get(row.reference)
        if image is None:
            raise EvalDataError(f"{_where(path, row)}: the image cell names index "
                                f"{row.reference}, which has no picture in this file")
        items.append(EvalItem(f"{path.stem}-{row.index}", image, row.question, row.answers,
                              {}, row.kind, row.number, row.rules, row.fields))
    return items


def _row(path: Path, header: dict[str, int], option_columns: list[str], benchmark: Benchmark,
         number: int, cells: list[str]) -> _Row:
    index = _cell(header, cells, "index").strip() or str(number)
    row = _Row(number, index, "", (), _cell(header, cells, "category").strip())
    where = _where(path, row)
    question = _cell(header, cells, "question").strip()
    if not question:
        raise EvalDataError(f"{where}: the row has no question")
    answer = _cell(header, cells, "answer").strip()
    if not answer:
        raise EvalDataError(f"{where}: the row has no answer")
    row.fields = {column: _clean(_cell(header, cells, column)) for column in header
                  if column not in ("image", "")}
    row.fields["index"] = index
    options = {c: row.fields[c] for c in option_columns if row.fields[c]}
    if benchmark.needs_grader:
        if benchmark.rules == "mathvista":
            _check_mathvista(where, row.fields)
        row.question, row.answers, row.rules = question, (answer,), benchmark.rules
    elif benchmark.rules == "yes-no" and not options:
        gold = _YES_NO.get(answer.lower())
        if gold is None:
            raise EvalDataError(f"{where}: the answer {answer!r} is not Yes or No")
        if len(index.split("_")) < HALLUSION_ID_PARTS:
            raise EvalDataError(f"{where}: a HallusionBench index names its set, figure and "
                                "question as its 4th to 6th '_'-separated parts, as "
                                "VLMEvalKit reads them")
        row.question, row.answers, row.rules = question, (gold,), "yes-no"
    elif options:
        if _OPTION_COLUMN.fullmatch(answer) and answer not in options:
            raise EvalDataError(f"{where}: the answer {answer!r} is not one of the options "
                                f"{', '.join(options)}")
        if benchmark.circular:
            _group(path, number, index)
        row.question = build_question(benchmark, question, options, row.fields.get("hint", ""))
        row.answers = (answer,)
        row.rules = "mcq" if answer in options else ""  # an option's text: Stagewise's rules
    else:
        row.question, row.answers = question, (answer,)
    return row


def _clean(cell: str) -> str:
    """A cell as VLMEvalKit reads it, without blanks at its ends; "" for a missing one."""
    text = cell.strip()
    return "" if text.lower() in _EMPTY else text


def _check_mathvista(where: str, fields: dict[str, str]) -> None:
    """A MathVista row holds what ``post_check`` reads."""
    for column in ("question_type", "answer_type"):
        if not fields.get(column):
            raise EvalDataError(f"{where}: a MathVista row needs a {column!r} cell")
    if fields["question_type"] == "multi_choice":
        if not fields.get("answer_option"):
            raise EvalDataError(f"{where}: a multiple-choice MathVista row needs an "
                                "'answer_option' cell")
        try:
            mathvista_choices(fields)
        except ValueError as error:
            raise EvalDataError(f"{where}: {error}") from None


def _cell(header: dict[str, int], cells: list[str], column: str) -> str:
    i = header.get(column)
    return cells[i] if i is not None and i < len(cells) else ""


def _where(path: Path, row: _Row) -> str:
    return f"{path}: row {row.number} (index {row.index})"


def _is_reference(cell: str) -> bool:
    return 0 < len(cell) <= _MAX_REFERENCE and cell.isdigit()


def _picture(path: Path, header: dict[str, int], cells: list[str], row: _Row, cell: str,
             folder: Path) -> Path:
    """The row's picture file: its base64 cell written to the cache, or its image_path."""
    where = _where(path, row)
    if not cell:
        given = _cell(header, cells, "image_path").strip()
        if not given:
            raise EvalDataError(f"{where}: the row has no image")
        image = Path(given) if Path(given).is_absolute() else path.parent / given
        if not image.is_file():
            raise EvalDataError(f"{where}: image {image} does not exist")
        return image
    if cell.startswith("["):
        raise EvalDataError(f"{where}: the row has several images, which Stagewise does "
                            "not evaluate")
    try:
        data = base64.b64decode("".join(cell.split()), validate=True)
    except (binascii.Error, ValueError):
        raise EvalDataError(f"{where}: the image cell is not valid base64") from None
    try:
        with Image.open(io.BytesIO(data)) as picture:  # reads the header only
            image_format = picture.format or ""
    except (UnidentifiedImageError, OSError):
        raise EvalDataError(f"{where}: the image cell is not a picture Stagewise can "
                            "read") from None
    extension = _EXTENSIONS.get(image_format, f".{image_format.lower() or 'img'}")
    return _write_once(folder / f"{_file_stem(row.index)}{extension}", data)


def _later_pictures(path: Path, header: dict[str, int], rows: Iterator[tuple[int, list[str]]],
                    wanted: set[str], folder: Path) -> dict[str, Path]:
    """The pictures of the rows in ``wanted`` (by index), read on from where reading stopped."""
    found: dict[str, Path] = {}
    for number, cells in rows:
        index = _cell(header, cells, "index").strip() or str(number)
        if index not in wanted or index in found:
            continue
        cell = _cell(header, cells, "image").strip()
        if cell and not _is_reference(cell):
            row = _Row(number, index, "", (), "")
            found[index] = _picture(path, header, cells, row, cell, folder)
        if len(found) == len(wanted):
            break
    return found


def _file_stem(index: str) -> str:
    """A file name for an index: the index itself when it is safe, else made safe."""
    safe = _SAFE_NAME.sub("_", index)
    if safe != index or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha256(index.encode()).hexdigest()[:8]}"
    return safe


def _write_once(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically, unless the file is there already."""
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                             suffix=".tmp")
    except OSError as error:
        raise EvalDataError(f"{target.parent}: cannot write the pictures here "
                            f"({error.strerror or error})") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise EvalDataError(f"{target}: cannot be written "
                                f"({error.strerror or error})") from None
        raise
    return target
