"""A small stand-in for LLaVA-CoT-100k, in exactly its published layout, made of puzzles.

:func:`write_synthetic` writes ``train.jsonl`` and the images as a zip split into
``image.zip.part-aa``, ``image.zip.part-ab``, … Records name their images like
``puzzles/train/000001.png``; inside the zip they sit under an extra top-level folder
(``images/puzzles/train/000001.png``), as names in the real archive may. With ``malformed``,
a few bad records are appended, one per reason in :data:`MALFORMED`.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from stagewise.models.build.puzzles import Puzzle, answer_text, draw, generate_split
from stagewise.models.disk.atomic import write_atomic
from stagewise.models.stages import STAGES, Stage

__all__ = ["MALFORMED", "ZIP_FOLDER", "write_synthetic"]

ZIP_FOLDER = "images"
"""The top-level folder of the archive, which record paths leave out."""

MALFORMED: dict[str, int] = {
    "stages: missing <CAPTION>": 1,
    "stages: stages out of order": 1,
    "stages: text outside the stages": 1,
    "not questions and answers in turn": 1,
    "image not in the archive": 1,
    "not JSON": 1,
    "no image": 1,
    "duplicate id": 1,
}
"""The drop reasons of :func:`stagewise.models.recipes.llava_cot.data.prepare` for the bad records
that ``write_synthetic(..., malformed=True)`` appends, with their counts."""


FOLLOW_UP_EVERY = 4
FOLLOW_UP = "Look again, please. "
"""Every fourth good record is a conversation: a second question about the same image,
as some LLaVA-CoT-100k records are."""


def _image_path(index: int) -> str:
    return f"puzzles/train/{index + 1:06d}.png"


def _record(record_id: str, image: str | None, question: str, answer: str) -> dict[str, Any]:
    record: dict[str, Any] = {"id": record_id}
    if image is not None:
        record["image"] = image
    record["conversations"] = [{"from": "human", "value": "<image>\n" + question},
                               {"from": "gpt", "value": answer}]
    return record


def _stages_text(puzzle: Puzzle, order: tuple[Stage, ...]) -> str:
    return "\n\n".join(f"{stage.open_tag} {puzzle.stages[stage]} {stage.close_tag}"
                       for stage in order)


def _malformed(puzzle: Puzzle, first_id: str) -> list[str]:
    """One bad line per reason of :data:`MALFORMED`, in that order."""
    image, answer = _image_path(0), answer_text(puzzle)
    no_caption = tuple(stage for stage in STAGES if stage is not Stage.CAPTION)
    swapped = (STAGES[1], STAGES[0], *STAGES[2:])
    answer_first = _record("bad-answer-first", image, puzzle.question, answer)
    answer_first["conversations"].reverse()
    records = [
        _record("bad-missing-stage", image, puzzle.question, _stages_text(puzzle, no_caption)),
        _record("bad-out-of-order", image, puzzle.question, _stages_text(puzzle, swapped)),
        _record("bad-text-outside", image, puzzle.question, "Sure! Here it is.\n\n" + answer),
        answer_first,
        _record("bad-missing-image", "puzzles/train/999999.png", puzzle.question, answer),
    ]
    lines = [json.dumps(record) for record in records]
    lines.append('{"id": "bad-json", "image": ')
    lines.append(json.dumps(_record("bad-no-image", None, puzzle.question, answer)))
    lines.append(json.dumps(_record(first_id, image, puzzle.question, answer)))
    return lines


def _split(data: bytes, parts: int) -> list[bytes]:
    step = -(-len(data) // parts)
    return [data[i * step : (i + 1) * step] for i in range(parts)]


def _suffix(index: int) -> str:
    return chr(ord("a") + index // 26) + chr(ord("a") + index % 26)


def write_synthetic(out: Path, n: int, *, seed: int = 0, parts: int = 3,
                    malformed: bool = True) -> tuple[Path, Path]:
    """Write a small dataset in the LLaVA-CoT-100k layout.

    Args:
        out: The folder; created if needed.
        n: Good records (one puzzle and one image each; every fourth asks a follow-up).
        seed: The puzzles' seed.
        parts: How many parts the zip is split into (1 to 676).
        malformed: Also append one bad line per reason of :data:`MALFORMED`.

    Returns:
        The jsonl file and the first part of the zip.

    Raises:
        ValueError: ``n`` is below 1 or ``parts`` is out of range.
    """
    if n < 1:
        raise ValueError(f"n must be 1 or more, not {n}")
    if not 1 <= parts <= 26 * 26:
        raise ValueError(f"parts must be from 1 to 676, not {parts}")
    out = Path(out)
    puzzles = generate_split("train", n, seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, puzzle in enumerate(puzzles):
            png = io.BytesIO()
            draw(puzzle.scene).save(png, format="PNG")
            archive.writestr(f"{ZIP_FOLDER}/{_image_path(index)}", png.getvalue())
    records = [_record(p.id, _image_path(i), p.question, answer_text(p))
               for i, p in enumerate(puzzles)]
    for record, puzzle in list(zip(records, puzzles, strict=True))[FOLLOW_UP_EVERY - 1::
                                                                   FOLLOW_UP_EVERY]:
        record["conversations"] += [{"from": "human", "value": FOLLOW_UP + puzzle.question},
                                    {"from": "gpt", "value": answer_text(puzzle)}]
    lines = [json.dumps(record) for record in records]
    if malformed:
        lines += _malformed(puzzles[0], puzzles[0].id)
    jsonl = out / "train.jsonl"
    write_atomic(jsonl, "".join(line + "\n" for line in lines).encode("utf-8"))
    for index, chunk in enumerate(_split(buffer.getvalue(), parts)):
        write_atomic(out / f"image.zip.part-{_suffix(index)}", chunk)
    return jsonl, out / "image.zip.part-aa"
