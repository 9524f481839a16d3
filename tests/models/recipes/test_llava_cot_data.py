"""The LLaVA-CoT data step: answer checks, images read from split zips, prepare and read back."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from stagewise.models.errors import StagewiseError
from stagewise.models.evaluation.data import read_items, strip_image_marker
from stagewise.models.recipes.llava_cot.data import (
    LICENCE_NOTICE,
    DataReport,
    ImageSource,
    Sample,
    check_answer,
    prepare,
    read_prepared,
)
from stagewise.models.recipes.llava_cot.synthetic import MALFORMED, ZIP_FOLDER, write_synthetic
from stagewise.models.stages import Stage

GOOD = ("<SUMMARY> s </SUMMARY>\n\n<CAPTION> c </CAPTION>\n\n"
        "<REASONING> r </REASONING>\n\n<CONCLUSION> 3 </CONCLUSION>")
N = 24


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), N, seed=1, parts=3)


@pytest.fixture(scope="module")
def prepared(synthetic: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, DataReport]:
    jsonl, first_part = synthetic
    out = tmp_path_factory.mktemp("prepared")
    return out, prepare(jsonl, first_part, out, val_size=5, seed=7)


# --------------------------------------------------------------------------------------------
# Answers


def test_licence_notice_names_both_terms() -> None:
    for words in ("Apache-2.0", "non-commercial", "Llama 3.2", "OpenAI", "responsible"):
        assert words in LICENCE_NOTICE


@pytest.mark.parametrize("text", [GOOD, f"\n  {GOOD}\n\n", GOOD.replace("\n\n", ""),
                                  GOOD.replace(" r ", " if x < 5 then <b>y</b> ")])
def test_good_answers_pass(text: str) -> None:
    assert check_answer(text) is None


@pytest.mark.parametrize(("text", "reason"), [
    ("", "missing <SUMMARY>"),
    (GOOD.replace("<CAPTION> c </CAPTION>", ""), "missing <CAPTION>"),
    (GOOD.replace("</REASONING>", ""), "missing </REASONING>"),
    (GOOD + "\n<SUMMARY> again </SUMMARY>", "<SUMMARY> twice"),
    (GOOD.replace("<SUMMARY> s </SUMMARY>", "<SUMMARY> s </SUMMARY></SUMMARY>"),
     "</SUMMARY> twice"),
    ("<CAPTION> c </CAPTION><SUMMARY> s </SUMMARY><REASONING> r </REASONING>"
     "<CONCLUSION> 3 </CONCLUSION>", "stages out of order"),
    (GOOD.replace("s </SUMMARY>", "s <CAPTION> c </SUMMARY>").replace("<CAPTION> c </CAPTION>",
                                                                    "</CAPTION>"),
     "stages out of order"),
    ("Sure. " + GOOD, "text outside the stages"),
    (GOOD.replace("\n\n<CAPTION>", " so\n\n<CAPTION>"), "text outside the stages"),
    (GOOD + " done", "text outside the stages"),
    (GOOD.replace(" r ", " \n "), "empty <REASONING>"),
    (GOOD.lower(), "missing <SUMMARY>"),
])
def test_bad_answers_say_why(text: str, reason: str) -> None:
    assert check_answer(text) == reason


def test_strip_image_marker() -> None:
    assert strip_image_marker("<image>\nHow many?") == "How many?"
    assert strip_image_marker("How many?\n<image>") == "How many?"
    assert strip_image_marker("  How <image> many?") == "How <image> many?"


# --------------------------------------------------------------------------------------------
# Image sources


def _originals() -> dict[str, bytes]:
    """Incompressible bytes, so that the zip is about as long as they are."""
    return {f"sqa/train/{i}/image.png": random.Random(i).randbytes(1000 + 37 * i)
            for i in range(7)}


def _zip_bytes(files: dict[str, bytes], folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{folder}/" if folder else "sqa/", b"")  # a directory entry
        for name, data in files.items():
            archive.writestr(f"{folder}/{name}" if folder else name, data)
    return buffer.getvalue()


def _write_parts(folder: Path, data: bytes, sizes: list[int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    for index, size in enumerate([*sizes, len(data) - sum(sizes)]):
        path = folder / f"image.zip.part-a{chr(ord('a') + index)}"
        path.write_bytes(data[start : start + size])
        paths.append(path)
        start += size
    return paths


def _check_source(source: ImageSource, files: dict[str, bytes], prefix: str = "") -> None:
    assert len(source) == len(files)
    for image, data in files.items():
        name = source.resolve(image)
        assert name == prefix + image
        assert source.read(name) == data


def test_folder_source(tmp_path: Path) -> None:
    files = _originals()
    for name, data in files.items():
        (tmp_path / "image" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "image" / name).write_bytes(data)
    with ImageSource.open(tmp_path / "image") as source:
        assert source.kind == "folder"
        _check_source(source, files)
    with ImageSource.open(tmp_path) as source:  # one folder up: found by suffix
        _check_source(source, files, "image/")
        assert source.resolve("./sqa/train/3/image.png") == "image/sqa/train/3/image.png"
        assert source.resolve("sqa/train/99/image.png") is None
        with pytest.raises(StagewiseError, match="no image"):
            source.read("../etc/passwd")


def test_zip_source(tmp_path: Path) -> None:
    files = _originals()
    (tmp_path / "image.zip").write_bytes(_zip_bytes(files, "data"))
    with ImageSource.open(tmp_path / "image.zip") as source:
        assert source.kind == "zip"
        _check_source(source, files, "data/")
    with ImageSource.open(tmp_path) as source:  # a folder with one zip in it
        assert source.kind == "zip"


def test_split_zip_source_reads_across_parts(tmp_path: Path) -> None:
    files = _originals()
    data = _zip_bytes(files)
    parts = _write_parts(tmp_path / "parts", data, [1, 700, 0, 2500])  # tiny, empty, mid-entry
    for path in (parts[0], parts[2], tmp_path / "parts", tmp_path / "parts" / "image.zip"):
        with ImageSource.open(path) as source:
            assert source.kind == "split zip"
            assert source.parts == tuple(parts)
            _check_source(source, files)


def test_joined_parts_seek_and_read(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    parts = _write_parts(tmp_path, _zip_bytes({"a.bin": data}), [10, 300, 123])
    with ImageSource.open(parts[1]) as source:
        joined = source._archive.fp  # the file object under the archive
        whole = b"".join(path.read_bytes() for path in parts)
        assert joined.seek(0, io.SEEK_END) == len(whole)
        joined.seek(5)
        assert joined.read(400) == whole[5:405]
        assert joined.tell() == 405
        joined.seek(-3, io.SEEK_CUR)
        assert joined.read() == whole[402:]
        assert joined.read(10) == b""
        with pytest.raises(OSError):
            joined.seek(-1)


def test_source_errors(tmp_path: Path) -> None:
    data = _zip_bytes(_originals())
    parts = _write_parts(tmp_path / "gap", data, [900, 900])
    parts[1].unlink()
    with pytest.raises(StagewiseError, match=r"part image\.zip\.part-ab is missing"):
        ImageSource.open(parts[0])
    parts = _write_parts(tmp_path / "short", data, [900, 900])
    parts[-1].unlink()
    with pytest.raises(StagewiseError, match="do not make a zip archive"):
        ImageSource.open(parts[0])
    with pytest.raises(StagewiseError, match="no such file or folder"):
        ImageSource.open(tmp_path / "nowhere")
    with pytest.raises(StagewiseError, match="no parts"):
        ImageSource.open(tmp_path / "image.zip")
    (tmp_path / "fake.zip").write_text("not a zip")
    with pytest.raises(StagewiseError, match="not a zip archive"):
        ImageSource.open(tmp_path / "fake.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StagewiseError, match="no images"):
        ImageSource.open(tmp_path / "empty")


# --------------------------------------------------------------------------------------------
# Preparing


def test_synthetic_layout(synthetic: tuple[Path, Path]) -> None:
    jsonl, first_part = synthetic
    assert sorted(p.name for p in jsonl.parent.glob("image.zip.part-*")) == [
        "image.zip.part-aa", "image.zip.part-ab", "image.zip.part-ac"]
    first = json.loads(jsonl.read_text().splitlines()[0])
    assert first["image"] == "puzzles/train/000001.png"
    assert first["conversations"][0]["value"].startswith("<image>\n")
    with ImageSource.open(first_part) as source:
        assert source.resolve(first["image"]) == f"{ZIP_FOLDER}/puzzles/train/000001.png"


def test_prepare_counts_and_files(prepared: tuple[Path, DataReport]) -> None:
    out, report = prepared
    assert report.dropped == MALFORMED
    assert report.total == N + sum(MALFORMED.values())
    assert report.kept == N
    assert (report.train, report.val) == (N - 5, 5)
    assert report.examples["stages: missing <CAPTION>"] == ["bad-missing-stage"]
    assert report.examples["not JSON"] == [f"line {N + 6}"]
    assert json.loads((out / "report.json").read_text()) == report.to_json()
    assert DataReport.from_json(report.to_json()) == report
    source = json.loads((out / "source.json").read_text())
    assert Path(source["images"]).is_absolute() and Path(source["jsonl"]).is_absolute()
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(train) == N - 5
    assert all(r["image"].startswith(f"{ZIP_FOLDER}/puzzles/train/") for r in train)


def test_validation_reads_as_an_evaluation_set(prepared: tuple[Path, DataReport]) -> None:
    out, _ = prepared
    items = read_items(out / "val" / "val.jsonl")
    assert len(items) == 5
    for item in items:
        assert item.image.is_relative_to(out / "val" / "images")
        with Image.open(item.image) as image:
            assert image.size == (96, 96)
        assert not item.question.startswith("<image>")
        assert item.answers == (item.stages[Stage.CONCLUSION],)
    train_ids = {json.loads(line)["id"] for line in (out / "train.jsonl").open()}
    assert not train_ids & {item.id for item in items}


def test_read_prepared(prepared: tuple[Path, DataReport]) -> None:
    out, report = prepared
    samples, source = read_prepared(out)
    with source:
        assert len(samples) == report.train
        assert all(isinstance(s, Sample) for s in samples)
        first = samples[0]
        assert not first.question.startswith("<image>") and first.question
        assert check_answer(first.answer) is None and first.answer == first.answer.strip()
        with Image.open(io.BytesIO(source.read(first.image))) as image:
            assert image.mode == "RGB"
    with pytest.raises(StagewiseError, match="run the data step"):
        read_prepared(out / "val")


def test_conversations_keep_their_follow_up_turns(prepared: tuple[Path, DataReport]) -> None:
    from stagewise.models.recipes.llava_cot.synthetic import FOLLOW_UP, FOLLOW_UP_EVERY

    out, _ = prepared
    samples, source = read_prepared(out)
    source.close()
    talks = [s for s in samples if s.follow_ups]
    val = [json.loads(line) for line in (out / "val" / "val.jsonl").read_text().splitlines()]
    talks_held_out = sum(len(r["conversations"]) > 2 for r in val)
    assert len(talks) + talks_held_out == N // FOLLOW_UP_EVERY
    for talk in talks:
        (question, answer), = talk.follow_ups
        assert question.startswith(FOLLOW_UP) and check_answer(answer) is None


def test_a_conversation_with_a_bad_later_answer_is_dropped(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(images / "a" / "1.png")
    turns = [{"from": "human", "value": "<image>\nHow many?"}, {"from": "gpt", "value": GOOD},
             {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes."}]
    records = [{"id": f"r{i}", "image": "a/1.png", "conversations": turns[:n]}
               for i, n in enumerate((4, 2, 2, 3))]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = prepare(jsonl, images, tmp_path / "out", val_size=0)
    assert report.dropped == {"stages: missing <SUMMARY>": 1,
                              "not questions and answers in turn": 1}
    assert report.kept == 2


def test_read_prepared_notices_moved_images(tmp_path: Path) -> None:
    jsonl, first_part = write_synthetic(tmp_path / "data", 6, parts=2, malformed=False)
    report = prepare(jsonl, first_part, tmp_path / "out", val_size=2)
    assert (report.total, report.kept, report.dropped) == (6, 6, {})
    (tmp_path / "data").rename(tmp_path / "moved")
    with pytest.raises(StagewiseError, match=r"no such file.*source\.json"):
        read_prepared(tmp_path / "out")


def test_same_seed_same_split(synthetic: tuple[Path, Path], tmp_path: Path) -> None:
    jsonl, first_part = synthetic

    def val_ids(out: Path, seed: int) -> list[str]:
        prepare(jsonl, first_part, out, val_size=5, seed=seed)
        return [item.id for item in read_items(out / "val" / "val.jsonl")]

    assert val_ids(tmp_path / "a", 7) == val_ids(tmp_path / "b", 7)
    assert val_ids(tmp_path / "a", 7) != val_ids(tmp_path / "a", 8)  # rerun replaces val/
    assert len(list((tmp_path / "a" / "val" / "images").rglob("*.png"))) == 5


def test_prepare_needs_enough_samples(synthetic: tuple[Path, Path], tmp_path: Path) -> None:
    jsonl, first_part = synthetic
    with pytest.raises(StagewiseError, match="too few"):
        prepare(jsonl, first_part, tmp_path, val_size=N)


def test_report_format() -> None:
    report = DataReport(99012, 98870, 98370, 500,
                        {"stages: missing <CAPTION>": 97, "not JSON": 45},
                        {"stages: missing <CAPTION>": ["a1", "a2"], "not JSON": ["line 3"]})
    text = report.format()
    assert text.startswith("99,012 samples: 98,870 kept (98,370 train, 500 validation), "
                           "142 dropped:")
    assert "97  stages: missing <CAPTION> (e.g. a1, a2)" in text
    assert text.index("missing <CAPTION>") < text.index("not JSON")
    assert DataReport(3, 3, 2, 1).format().endswith("0 dropped")
