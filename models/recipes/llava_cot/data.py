"""The data step of the LLaVA-CoT recipe: check LLaVA-CoT-100k, split it, hold out validation.

LLaVA-CoT-100k (Hugging Face ``Xkev/LLaVA-CoT-100k``) is a ``train.jsonl`` of records
``{"id", "image", "conversations": [{"from": "human", "value": Q}, {"from": "gpt", "value": A}]}``
whose answers are the four tagged stages, and its images as a zip split into
``image.zip.part-aa``, ``image.zip.part-ab``, … :class:`ImageSource` reads the images straight
from the parts (or from a joined zip, or from a folder) without joining them on disk.

:func:`prepare` reads every record, drops those that are unusable (each counted under a
reason), holds out a seeded random validation set and writes, under ``out``:

* ``train.jsonl``: the training records, ``image`` set to the name inside the image source;
* ``val/val.jsonl`` and ``val/images/``: the validation records with their images extracted,
  readable as they are by :func:`stagewise.models.evaluation.data.read_items`;
* ``report.json``: the :class:`DataReport`;
* ``source.json``: where the jsonl and the image source were, for :func:`read_prepared`.
"""

from __future__ import annotations

import bisect
import errno
import io
import json
import os
import random
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

from stagewise.models.disk.atomic import write_atomic, write_atomic_chunks
from stagewise.models.errors import StagewiseError
from stagewise.models.evaluation.data import strip_image_marker
from stagewise.models.stages import STAGES, Stage

__all__ = [
    "LICENCE_NOTICE",
    "DataReport",
    "ImageSource",
    "Sample",
    "check_answer",
    "prepare",
    "read_prepared",
]

LICENCE_NOTICE = (
    "LLaVA-CoT-100k licence: the dataset card on Hugging Face (Xkev/LLaVA-CoT-100k) says "
    "Apache-2.0, but the LLaVA-CoT repository calls the data a research preview for "
    "non-commercial use only, bound by the Llama 3.2 Community License and by OpenAI's terms "
    "of use for generated data (GPT-4o wrote the four stages of every answer). A model trained "
    "on it may inherit those terms. You are responsible for complying with them."
)
"""Shown before training on LLaVA-CoT-100k."""

# --------------------------------------------------------------------------------------------
# Answers


_STAGE_BY_TAG: dict[str, Stage] = {stage.tag: stage for stage in STAGES}
_EXACT_TAG = re.compile("<(/?)(" + "|".join(re.escape(tag) for tag in _STAGE_BY_TAG) + ")>")


def check_answer(text: str) -> str | None:
    """Check that an answer is exactly the four stages, in order.

    Tags must be exact (``<SUMMARY>``, ``</SUMMARY>``, upper case, no blanks); only
    whitespace may come before, between and after the stages.

    Args:
        text: The ``gpt`` turn's value.

    Returns:
        None for a good answer; otherwise the first problem found, e.g. ``"missing
        <CAPTION>"``, ``"<SUMMARY> twice"``, ``"missing </REASONING>"``, ``"stages out of
        order"``, ``"text outside the stages"`` or ``"empty <REASONING>"``.
    """
    tags = [(match[1] == "/", _STAGE_BY_TAG[match[2]], match.start(), match.end())
            for match in _EXACT_TAG.finditer(text)]
    for stage in STAGES:
        for closing, name in ((False, stage.open_tag), (True, stage.close_tag)):
            count = sum(1 for c, s, _, _ in tags if c == closing and s is stage)
            if count == 0:
                return f"missing {name}"
            if count > 1:
                return f"{name} twice"
    expected = [(closing, stage) for stage in STAGES for closing in (False, True)]
    if [(closing, stage) for closing, stage, _, _ in tags] != expected:
        return "stages out of order"
    bounds = [0] + [pos for _, _, start, end in tags for pos in (start, end)] + [len(text)]
    pieces = [text[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
    # pieces alternate: outside, open tag, content, close tag, outside, open tag, ...
    if any(piece.strip() for piece in pieces[::4]):
        return "text outside the stages"
    for stage, content in zip(STAGES, pieces[2::4], strict=True):
        if not content.strip():
            return f"empty {stage.open_tag}"
    return None


@dataclass(frozen=True)
class Sample:
    """One training sample.

    Attributes:
        id: The record's id.
        image: The image's name inside the :class:`ImageSource` (resolved).
        question: The first human turn without its ``<image>`` marker line, stripped.
        answer: The first ``gpt`` turn (the four stages), stripped.
        follow_ups: The later (question, answer) turns of a conversation about the same
            image, in order; each answer is four stages too.
    """

    id: str
    image: str
    question: str
    answer: str
    follow_ups: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------------------------
# Images


_PART = re.compile(r"(?P<prefix>.+)\.part-(?P<suffix>[a-z]+|[0-9]+)")
_SKIPPED_FOLDERS = ("__MACOSX/",)


class _JoinedParts(io.RawIOBase):
    """The parts of a split file, read as one seekable read-only file."""

    def __init__(self, parts: list[Path]) -> None:
        super().__init__()
        self._paths = parts
        self._starts: list[int] = []
        size = 0
        for path in parts:
            self._starts.append(size)
            size += path.stat().st_size
        self._size = size
        self._pos = 0
        self._files: dict[int, BinaryIO] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        self._checkClosed()
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            index = bisect.bisect_right(self._starts, self._pos) - 1
            end = self._starts[index + 1] if index + 1 < len(self._starts) else self._size
            file = self._part(index)
            file.seek(self._pos - self._starts[index])
            count = file.readinto(view[done : done + min(len(view) - done, end - self._pos)])
            if not count:
                raise OSError(f"{self._paths[index]}: shorter than when it was opened")
            done += count
            self._pos += count
        return done

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()
        super().close()

    def _part(self, index: int) -> BinaryIO:
        file = self._files.get(index)
        if file is None:
            file = self._files[index] = open(self._paths[index], "rb", buffering=0)  # noqa: SIM115
        return file


def _part_index(suffix: str) -> int:
    """The position of a split suffix: ``aa`` → 0, ``ab`` → 1, ``ba`` → 26; ``00`` → 0."""
    if suffix.isdigit():
        return int(suffix)
    index = 0
    for char in suffix:
        index = index * 26 + ord(char) - ord("a")
    return index


def _part_suffix(index: int, like: str) -> str:
    """The suffix at ``index``, as long as ``like`` and of the same kind."""
    if like.isdigit():
        return str(index).zfill(len(like))
    letters = []
    for _ in like:
        index, rest = divmod(index, 26)
        letters.append(chr(ord("a") + rest))
    return "".join(reversed(letters))


def _split_parts(folder: Path, prefix: str) -> list[Path]:
    """All parts ``prefix.part-*`` in ``folder``, in order, checked for gaps."""
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        match = _PART.fullmatch(path.name)
        if match and match["prefix"] == prefix and path.is_file():
            found[match["suffix"]] = path
    if not found:
        raise StagewiseError(f"{folder / prefix}.part-*: no parts found")
    lengths = {len(suffix) for suffix in found}
    kinds = {suffix.isdigit() for suffix in found}
    if len(lengths) > 1 or len(kinds) > 1:
        names = ", ".join(sorted(path.name for path in found.values()))
        raise StagewiseError(f"{folder}: the parts of {prefix} are not one sequence ({names})")
    ordered = sorted(found, key=_part_index)
    for position, suffix in enumerate(ordered):
        if _part_index(suffix) != position:
            missing = f"{prefix}.part-{_part_suffix(position, suffix)}"
            raise StagewiseError(
                f"{folder}: part {missing} is missing (found {len(found)} parts of {prefix}, "
                f"up to {found[ordered[-1]].name})")
    return [found[suffix] for suffix in ordered]


def _safe_name(name: str) -> bool:
    """Whether an archive member name is a plain relative path (no ``..``, not absolute)."""
    return not name.startswith(_SKIPPED_FOLDERS) and all(
        part not in ("", ".", "..") for part in name.split("/"))


class ImageSource:
    """Images by name, from a folder, a zip, or a zip split into parts (read in place).

    Open one with :meth:`open`. Names are ``/``-separated paths relative to the folder or
    inside the archive; :meth:`resolve` finds the name for a record's ``image`` path.

    Attributes:
        path: What was opened (a folder, a zip, or the first part), absolute.
        kind: ``"folder"``, ``"zip"`` or ``"split zip"``.
        parts: The parts of a split zip, in order (empty otherwise).
    """

    def __init__(self, path: Path, kind: str, names: Iterable[str], *, root: Path | None = None,
                 archive: zipfile.ZipFile | None = None, parts: tuple[Path, ...] = ()) -> None:
        """Use :meth:`open` instead."""
        self.path = path
        self.kind = kind
        self.parts = parts
        self._root = root
        self._archive = archive
        self._names: set[str] = set()
        self._by_suffix: dict[str, str] = {}
        for name in names:
            self._names.add(name)
            if "/" in name:
                self._by_suffix.setdefault(name.split("/", 1)[1], name)

    @classmethod
    def open(cls, path: Path) -> ImageSource:
        """Open a source of images.

        Args:
            path: One of: a folder of image files (in subfolders too); a folder holding the
                parts ``*.zip.part-*`` of one split zip (or else exactly one ``*.zip``); a
                ``.zip`` file (if it does not exist but its parts do, the parts); any one part
                ``X.part-aa``, ``X.part-ab``, … (all its sibling parts are used, in order).

        Returns:
            The open source; close it (or use it as a context manager).

        Raises:
            StagewiseError: The path is missing, no parts are found, the parts have a gap,
                or the file or the joined parts are not a zip archive.
        """
        path = Path(path).absolute()
        if path.is_dir():
            return cls._open_folder(path)
        match = _PART.fullmatch(path.name)
        if path.is_file():
            if match:
                return cls._open_parts(_split_parts(path.parent, match["prefix"]))
            return cls._open_zip(path)
        if path.suffix.lower() == ".zip" and path.parent.is_dir():
            try:
                parts = _split_parts(path.parent, path.name)
            except StagewiseError:
                raise StagewiseError(
                    f"{path}: no such file, and no parts {path.name}.part-* next to it"
                ) from None
            return cls._open_parts(parts)
        raise StagewiseError(f"{path}: no such file or folder")

    @classmethod
    def _open_folder(cls, folder: Path) -> ImageSource:
        prefixes = sorted({match["prefix"] for path in folder.iterdir()
                           if (match := _PART.fullmatch(path.name)) and path.is_file()
                           and match["prefix"].lower().endswith(".zip")})
        if len(prefixes) > 1:
            raise StagewiseError(
                f"{folder}: more than one split archive here ({', '.join(prefixes)}); "
                "name one of its parts")
        if prefixes:
            return cls._open_parts(_split_parts(folder, prefixes[0]))
        zips = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".zip" and p.is_file())
        if len(zips) == 1:
            return cls._open_zip(zips[0])
        names = [(Path(top) / file).relative_to(folder).as_posix()
                 for top, _, files in os.walk(folder) for file in files]
        if not names:
            raise StagewiseError(f"{folder}: no images and no image.zip.part-* files here")
        return cls(folder, "folder", names, root=folder)

    @classmethod
    def _open_zip(cls, path: Path) -> ImageSource:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise StagewiseError(f"{path}: not a zip archive ({error})") from None
        return cls._from_archive(path, "zip", archive)

    @classmethod
    def _open_parts(cls, parts: list[Path]) -> ImageSource:
        joined = _JoinedParts(parts)
        try:
            archive = zipfile.ZipFile(joined)
        except (zipfile.BadZipFile, OSError) as error:
            joined.close()
            raise StagewiseError(
                f"{parts[0]}: the {len(parts)} parts up to {parts[-1].name} do not make a zip "
                f"archive ({error}); is the last part missing or incomplete?") from None
        return cls._from_archive(parts[0], "split zip", archive, tuple(parts))

    @classmethod
    def _from_archive(cls, path: Path, kind: str, archive: zipfile.ZipFile,
                      parts: tuple[Path, ...] = ()) -> ImageSource:
        names = [info.filename for info in archive.infolist()
                 if not info.is_dir() and _safe_name(info.filename)]
        return cls(path, kind, names, archive=archive, parts=parts)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def resolve(self, image: str) -> str | None:
        """The name of a record's image in this source.

        Args:
            image: The record's ``image`` path, e.g. ``"sqa/train/20839/image.png"``.

        Returns:
            The name itself if present; else the name that is ``image`` under one extra
            top-level folder (``"images/sqa/train/20839/image.png"``; the first in the
            archive's order if several are); else None.
        """
        key = image.strip().replace("\\", "/").removeprefix("./").lstrip("/")
        if key in self._names:
            return key
        return self._by_suffix.get(key)

    def read(self, name: str) -> bytes:
        """The bytes of the image called ``name`` (as :meth:`resolve` returns it).

        Raises:
            StagewiseError: There is no such image, or it cannot be read.
        """
        if name not in self._names:
            raise StagewiseError(f"{self.path}: no image {name!r} here")
        try:
            if self._archive is not None:
                return self._archive.read(name)
            assert self._root is not None
            return (self._root / name).read_bytes()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise StagewiseError(f"{self.path}: image {name!r} cannot be read ({error})") from None

    def close(self) -> None:
        """Close the archive and its parts (nothing to do for a folder)."""
        if self._archive is not None:
            file = self._archive.fp
            self._archive.close()
            if isinstance(file, _JoinedParts):  # ZipFile does not close a file object it got
                file.close()
            self._archive = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class DataReport:
    """What :func:`prepare` kept and dropped.

    Attributes:
        total: Records read (non-blank lines).
        kept: Usable records (``train + val``).
        train: Records written for training.
        val: Records held out for validation.
        dropped: How many records were dropped, by reason.
        examples: Up to five ids (or ``"line N"`` where there is no id) per reason.
    """

    total: int
    kept: int
    train: int
    val: int
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        """All dropped records."""
        return sum(self.dropped.values())

    def to_json(self) -> dict[str, Any]:
        """Everything, as plain JSON-ready data."""
        return {"total": self.total, "kept": self.kept, "train": self.train, "val": self.val,
                "dropped": dict(self.dropped), "examples": {k: list(v) for k, v in
                                                            self.examples.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataReport:
        """The report :meth:`to_json` gave."""
        return cls(int(data["total"]), int(data["kept"]), int(data["train"]), int(data["val"]),
                   {str(k): int(v) for k, v in data.get("dropped", {}).items()},
                   {str(k): [str(x) for x in v] for k, v in data.get("examples", {}).items()})

    def format(self) -> str:
        """A few lines for people: the counts, then each drop reason with examples."""
        head = (f"{self.total:,} samples: {self.kept:,} kept ({self.train:,} train, "
                f"{self.val:,} validation), {self.dropped_total:,} dropped")
        if not self.dropped:
            return head
        reasons = sorted(self.dropped.items(), key=lambda item: (-item[1], item[0]))
        width = len(f"{reasons[0][1]:,}")
        lines = [head + ":"]
        for reason, count in reasons:
            line = f"  {count:>{width},}  {reason}"
            if examples := self.examples.get(reason):
                line += f" (e.g. {', '.join(examples)})"
            lines.append(line)
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Preparing


_EXAMPLES = 5


NOT_IN_TURN = "not questions and answers in turn"
"""The drop reason of a conversation that is not human, gpt, human, gpt, ..."""


class _Drop(Exception):
    """A record that is not used, and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Kept:
    sample: Sample
    record: dict[str, Any]


def _record_id(record: dict[str, Any], number: int) -> str:
    raw = record.get("id")
    return str(raw) if raw not in (None, "") else f"line-{number}"


def _turns(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The (human, gpt) value pairs of a conversation: human first, then in turn."""
    turns = record.get("conversations")
    if (not isinstance(turns, list) or not turns or len(turns) % 2
            or not all(isinstance(turn, dict) and turn.get("from") == ("human", "gpt")[i % 2]
                       and isinstance(turn.get("value"), str)
                       for i, turn in enumerate(turns))):
        raise _Drop(NOT_IN_TURN)
    return [(turns[i]["value"], turns[i + 1]["value"]) for i in range(0, len(turns), 2)]


def _sample(record: dict[str, Any], number: int, source: ImageSource) -> _Kept:
    """The sample of a parsed record; raises :class:`_Drop`."""
    turns = [(strip_image_marker(question), answer.strip())
             for question, answer in _turns(record)]
    for question, answer in turns:
        if not question:
            raise _Drop("empty question")
        if (problem := check_answer(answer)) is not None:
            raise _Drop(f"stages: {problem}")
    image = record.get("image")
    if not isinstance(image, str) or not image.strip():
        raise _Drop("no image")
    name = source.resolve(image)
    if name is None:
        raise _Drop("image not in the archive")
    sample_id = _record_id(record, number)
    (question, answer), *follow_ups = turns
    sample = Sample(sample_id, name, question, answer, tuple(follow_ups))
    return _Kept(sample, _out_record(sample_id, name, turns))


def _out_record(sample_id: str, image: str, turns: list[tuple[str, str]]) -> dict[str, Any]:
    conversations = []
    for i, (question, answer) in enumerate(turns):
        conversations += [{"from": "human", "value": f"<image>\n{question}" if i == 0
                           else question},
                          {"from": "gpt", "value": answer}]
    return {"id": sample_id, "image": image, "conversations": conversations}


def _read_jsonl(jsonl: Path) -> Iterator[tuple[int, bytes]]:
    try:
        with jsonl.open("rb") as handle:
            yield from enumerate(handle, start=1)
    except FileNotFoundError:
        raise StagewiseError(f"{jsonl}: no such file") from None
    except IsADirectoryError:
        raise StagewiseError(f"{jsonl}: this is a folder, not a jsonl file") from None
    except OSError as error:
        raise StagewiseError(f"{jsonl}: cannot be read ({error.strerror or error})") from None


def _write_lines_atomic(path: Path, lines: Iterable[str]) -> None:
    """Write lines through a temporary file in the same folder and a rename."""
    write_atomic_chunks(path, (f"{line}\n".encode() for line in lines))


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False)


def prepare(jsonl: Path, images: Path, out: Path, *, val_size: int = 500,
            seed: int = 0) -> DataReport:
    """Check a LLaVA-CoT-100k jsonl against its images, split it, and write the result.

    Every non-blank line is read. A record is dropped, under the first reason that applies,
    when it is ``"not JSON"`` (or ``"not a JSON object"``), ``"not one question and one
    answer"`` (exactly one ``human`` then one ``gpt`` turn, both text), has an ``"empty
    question"``, an answer that :func:`check_answer` rejects (``"stages: <problem>"``),
    ``"no image"``, an ``"image not in the archive"``, or a ``"duplicate id"`` (the first
    otherwise usable record with an id is kept). Records without an id get ``"line-N"``.

    Args:
        jsonl: The dataset's ``train.jsonl``.
        images: The image source (see :meth:`ImageSource.open`).
        out: The output folder (created; earlier output there is replaced).
        val_size: Usable records to hold out for validation, chosen by a seeded shuffle.
        seed: The shuffle's seed (``random.Random(seed)``).

    Returns:
        The report, also written to ``out/report.json``.

    Raises:
        StagewiseError: The jsonl or the image source cannot be read, or fewer than
            ``val_size + 1`` records are usable.
        ValueError: ``val_size`` is negative.
        OSError: The output cannot be written.
    """
    if val_size < 0:
        raise ValueError(f"val_size must be 0 or more, not {val_size}")
    jsonl, out = Path(jsonl).resolve(), Path(out)
    with ImageSource.open(Path(images)) as source:
        kept, total, dropped, examples = _read_all(jsonl, source)
        if len(kept) <= val_size:
            summary = DataReport(total, len(kept), 0, 0, dropped, examples).format()
            raise StagewiseError(f"{jsonl}: {len(kept):,} usable records, too few to hold out "
                                 f"{val_size:,} for validation and train on the rest\n{summary}")
        order = list(range(len(kept)))
        random.Random(seed).shuffle(order)
        held_out = set(order[:val_size])
        train = [k for i, k in enumerate(kept) if i not in held_out]
        val = [k for i, k in enumerate(kept) if i in held_out]
        out.mkdir(parents=True, exist_ok=True)
        _write_val(out, val, source)
        _write_lines_atomic(out / "train.jsonl", (_json_line(k.record) for k in train))
        report = DataReport(total, len(kept), len(train), len(val), dropped, examples)
        write_atomic(out / "report.json", _json_bytes(report.to_json()))
        write_atomic(out / "source.json", _json_bytes(
            {"jsonl": str(jsonl), "images": str(source.path), "kind": source.kind}))
    return report


def _read_all(jsonl: Path, source: ImageSource
              ) -> tuple[list[_Kept], int, dict[str, int], dict[str, list[str]]]:
    """Read every record: the usable ones in file order, the total, drops and examples."""
    kept: list[_Kept] = []
    dropped: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    seen: set[str] = set()
    total = 0
    for number, line in _read_jsonl(jsonl):
        if not line.strip():
            continue
        total += 1
        where = f"line {number}"
        try:
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise _Drop("not JSON") from None
            if not isinstance(record, dict):
                raise _Drop("not a JSON object")
            if record.get("id") not in (None, ""):
                where = str(record["id"])
            item = _sample(record, number, source)
            if item.sample.id in seen:
                raise _Drop("duplicate id")
        except _Drop as drop:
            dropped[drop.reason] = dropped.get(drop.reason, 0) + 1
            shown = examples.setdefault(drop.reason, [])
            if len(shown) < _EXAMPLES:
                shown.append(where)
            continue
        seen.add(item.sample.id)
        kept.append(item)
    return kept, total, dropped, examples


def _write_val(out: Path, val: list[_Kept], source: ImageSource) -> None:
    """Write ``out/val`` (records and extracted images) in a temporary folder, then swap."""
    temp = Path(tempfile.mkdtemp(dir=out, prefix=".val-"))
    try:
        records = []
        for item in val:
            image = Path("images", *item.sample.image.split("/"))
            target = temp / image
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read(item.sample.image))
            records.append({**item.record, "image": image.as_posix()})
        _write_lines_atomic(temp / "val.jsonl", (_json_line(r) for r in records))
        final = out / "val"
        if final.exists():
            shutil.rmtree(final)
        temp.rename(final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_prepared(out: Path) -> tuple[list[Sample], ImageSource]:
    """The training samples that :func:`prepare` wrote, and their image source, reopened.

    Args:
        out: The folder :func:`prepare` wrote.

    Returns:
        The samples in file order, and the open image source (close it when done).

    Raises:
        StagewiseError: :func:`prepare` has not run there, its output is damaged, or the
            image source has moved or lost images since.
    """
    out = Path(out)
    source_file, train_file = out / "source.json", out / "train.jsonl"
    if not source_file.is_file() or not train_file.is_file():
        raise StagewiseError(f"{out}: no prepared LLaVA-CoT data here (run the data step first)")
    try:
        images = Path(json.loads(source_file.read_text(encoding="utf-8"))["images"])
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise StagewiseError(f"{source_file}: damaged (run the data step again)") from None
    samples: list[Sample] = []
    for number, line in _read_jsonl(train_file):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            (question, answer), *follow_ups = [(strip_image_marker(q), a.strip())
                                               for q, a in _turns(record)]
            samples.append(Sample(str(record["id"]), str(record["image"]), question, answer,
                                  tuple(follow_ups)))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, _Drop):
            raise StagewiseError(
                f"{train_file}:{number}: damaged (run the data step again)") from None
    try:
        source = ImageSource.open(images)
    except StagewiseError as error:
        raise StagewiseError(f"{error} (the image source named in {source_file}; if it moved, "
                             "run the data step again)") from None
    missing = [sample.image for sample in samples if sample.image not in source]
    if missing:
        source.close()
        raise StagewiseError(
            f"{source.path}: {len(missing):,} training images are no longer there (e.g. "
            f"{missing[0]}); run the data step again")
    return samples, source
