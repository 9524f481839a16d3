"""Reading VLMEvalKit benchmark TSVs (MMStar, MMBench, HallusionBench...) as evaluation items."""

from __future__ import annotations

import base64
import csv
import io
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.disk.paths import CACHE_DIR_ENV
from stagewise.models.evaluation import EvalDataError, options, read_items, score
from stagewise.models.evaluation.vlmeval_scoring import item_options
from tests.desktop.test_cli import ROOT

MC_HEADER = ("index", "question", "hint", "A", "B", "C", "D", "answer", "category",
             "l2-category", "image")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache folder the pictures go to: a temporary one, never the user's."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    return folder


def picture(colour: str = "red", image_format: str = "PNG", size: tuple[int, int] = (48, 32),
            noise: bool = False) -> str:
    """A picture, base64-encoded as in a VLMEvalKit ``image`` cell."""
    image = Image.new("RGB", size, "white")
    if noise:  # incompressible: a large cell
        rng = random.Random(0)
        image.frombytes(bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    ImageDraw.Draw(image).ellipse((4, 4, 20, 20), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_tsv(path: Path, header: tuple[str, ...], rows: list[dict[str, str]]) -> Path:
    """A TSV as VLMEvalKit writes it (pandas ``to_csv(sep="\\t", index=False)``)."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.get(column, "") for column in header])
    return path


def mc_row(index: int, answer: str = "B", image: str | None = None, **cells: str) -> dict:
    row = {"index": str(index), "question": "What colour is the ball?", "A": "red",
           "B": "dark blue", "C": "green", "D": "", "answer": answer,
           "category": "colour", "l2-category": "perception",
           "image": picture() if image is None else image}
    return {**row, **cells}


def mmstar(folder: Path, n: int = 3, name: str = "MMStar.tsv") -> Path:
    return write_tsv(folder / name, MC_HEADER, [mc_row(i) for i in range(n)])


def test_multiple_choice_rows_list_their_options_and_score_by_letter_or_text(tmp_path):
    path = write_tsv(tmp_path / "MMStar.tsv", MC_HEADER, [
        mc_row(0), mc_row(7, "C", hint="Look at the ball.", category=""),
    ])
    first, second = read_items(path)
    # ImageMCQDataset.build_prompt's wording, to its last blank and line break
    assert first.question == ("Question: What colour is the ball?\nOptions:\nA. red\n"
                              "B. dark blue\nC. green\n"
                              "Please select the correct answer from the options above. \n")
    assert options(first.question) == {"A": "red", "B": "dark blue", "C": "green"}  # no D
    assert (first.id, first.answers, first.kind, first.line) == ("MMStar-0", ("B",), "colour", 1)
    assert first.stages == {} and first.benchmark == "mcq"
    assert item_options(first) == {"A": "red", "B": "dark blue", "C": "green"}
    assert first.fields["question"] == "What colour is the ball?"
    for prediction, right in (("B", True), ("dark blue", True), ("The answer is B.", True),
                              ("I choose (B) because", True), ("A", False), ("red", False),
                              ("D", False)):
        assert score(prediction, first) is right, prediction
    assert second.question.startswith("Hint: Look at the ball.\nQuestion: What colour")
    assert (second.id, second.kind, second.line) == ("MMStar-7", "", 2)
    assert score("green", second) and not score("B", second)
    with Image.open(first.image) as image:
        assert image.format == "PNG" and image.size == (48, 32)


def test_an_image_cell_naming_an_index_reuses_that_rows_picture(tmp_path):
    path = write_tsv(tmp_path / "MMBench_DEV_EN.tsv", MC_HEADER, [
        mc_row(10, image="12"), mc_row(11), mc_row(12, image=picture("blue")),
        mc_row(13, image="11"),
    ])
    items = read_items(path)
    assert items[0].image == items[2].image and items[3].image == items[1].image
    assert items[0].image != items[1].image
    with Image.open(items[0].image) as image:
        assert image.convert("RGB").getpixel((12, 12)) == (0, 0, 255)
    # the picture of a row after the limit is still found
    only = read_items(path, limit=1)
    assert only[0].image == items[2].image
    broken = write_tsv(tmp_path / "MMBench_DEV_CN.tsv", MC_HEADER, [mc_row(1, image="99")])
    with pytest.raises(EvalDataError, match=r"row 1 \(index 1\).*index 99"):
        read_items(broken)


def test_yes_no_rows_ask_the_question_as_is(tmp_path):
    header = ("index", "category", "question", "answer", "image")
    answers = ("Yes", "No", "1", "0", "yes")
    path = write_tsv(tmp_path / "HallusionBench.tsv", header, [
        {"index": f"VD_figure_0_0_0_{i}", "category": "VD", "question": f"Is circle {i} red?",
         "answer": answer, "image": picture()} for i, answer in enumerate(answers)
    ])
    items = read_items(path)
    assert [item.answers for item in items] == [("Yes",), ("No",), ("Yes",), ("No",), ("Yes",)]
    assert items[0].question == "Is circle 0 red?" and items[0].kind == "VD"
    assert items[0].benchmark == "yes-no"
    # VLMEvalKit reads yes or no from the words, not from the whole answer
    assert score("Yes.", items[0]) and score("no", items[1]) and not score("No", items[2])
    assert score("Yes, the image shows two cats.", items[0])
    assert score("No, it does not.", items[1]) and not score("Yes or no?", items[0])
    bad = write_tsv(tmp_path / "HallusionBench_2.tsv", header, [
        {"index": "VD_figure_0_0_0_0", "question": "Red?", "answer": "maybe",
         "image": picture()}])
    with pytest.raises(EvalDataError, match=r"row 1.*not Yes or No"):
        read_items(bad)
    short = write_tsv(tmp_path / "HallusionBench_3.tsv", header, [
        {"index": "7", "question": "Red?", "answer": "Yes", "image": picture()}])
    with pytest.raises(EvalDataError, match=r"row 1 \(index 7\).*4th to 6th"):
        read_items(short)


def test_other_files_are_multiple_choice_with_options_else_plain(tmp_path):
    plain = write_tsv(tmp_path / "custom.tsv", ("index", "question", "answer", "image"), [
        {"index": "a1", "question": "How many circles?", "answer": "1",
         "image": picture(image_format="JPEG")}])
    (item,) = read_items(plain)
    assert (item.id, item.question, item.answers) == ("custom-a1", "How many circles?", ("1",))
    assert item.image.suffix == ".jpg" and score("one", item)
    assert item.benchmark == "" and item.fields["index"] == "a1"  # Stagewise's own rules
    (choice,) = read_items(mmstar(tmp_path, 1, "my_benchmark.tsv"))
    assert choice.question.startswith("Question: ") and score("B", choice)
    assert choice.benchmark == "mcq"
    texts = write_tsv(tmp_path / "texts.tsv", MC_HEADER, [mc_row(0, answer="dark blue")])
    (by_text,) = read_items(texts)  # the gold is an option's text: Stagewise's matching
    assert by_text.benchmark == "" and score("B", by_text) and score("dark blue", by_text)


def test_the_references_own_prompts_and_the_question_as_is_elsewhere(tmp_path):
    (ai2d,) = read_items(write_tsv(tmp_path / "AI2D_TEST.tsv", MC_HEADER, [
        mc_row(0, hint="ignored by the reference's AI2D prompt")]))
    assert ai2d.question == (  # inference_demo.py's build_prompt for AI2D
        "Look at the scientific diagram carefully and answer the following question: "
        "What colour is the ball?\nA. red\nB. dark blue\nC. green\n"
        "Respond only with the correct option digit.")
    (mmmu,) = read_items(write_tsv(tmp_path / "MMMU_DEV_VAL.tsv", MC_HEADER, [
        mc_row(0, question="What colour is the ball in <image 1>?")]))
    assert mmmu.question == (
        "Look at the image carefully and solve the following question step-by-step. "
        "Question: What colour is the ball in ? Options: A. red\nB. dark blue\nC. green "
        "Indicate the correct answer at the end.")
    header = ("index", "question", "answer", "question_type", "answer_type", "choices",
              "answer_option", "task", "skills", "category", "image")
    path = write_tsv(tmp_path / "MathVista_MINI.tsv", header, [
        {"index": "1", "question": "Hint: Please answer with an integer.\nQuestion: How many?",
         "answer": "3", "question_type": "free_form", "answer_type": "integer",
         "image": picture()},
        {"index": "2", "question": "Which fraction?", "answer": "8/11",
         "question_type": "multi_choice", "answer_type": "text",
         "choices": "['3/11', '8/11']", "answer_option": "B", "image": picture()}])
    free, choice = read_items(path)
    assert free.question == "Hint: Please answer with an integer.\nQuestion: How many?"
    assert (free.benchmark, choice.benchmark) == ("mathvista", "mathvista")
    assert score("3", free) and not score("three", free)  # only the grader reads "three"
    assert score("(B) 8/11", choice)
    for column, words in (("question_type", "needs a 'question_type'"),
                          ("answer_option", "needs an 'answer_option'"),
                          ("choices", "is not a list")):
        broken = write_tsv(tmp_path / f"MathVista_{column}.tsv", header, [
            {"index": "2", "question": "Which?", "answer": "x", "question_type": "multi_choice",
             "answer_type": "text", "choices": "['x', 'y']", "answer_option": "A",
             "image": picture(), column: "not a [list"
             if column == "choices" else ""}])
        with pytest.raises(EvalDataError, match=rf"row 1 \(index 2\).*{re.escape(words)}"):
            read_items(broken)
    (vet,) = read_items(write_tsv(tmp_path / "MMVet.tsv", ("index", "question", "answer",
                                                           "category", "image"), [
        {"index": "0", "question": "What is x?", "answer": "-1<AND>-5", "category": "ocr,math",
         "image": picture()}]))
    assert (vet.question, vet.benchmark, vet.kind) == ("What is x?", "mmvet", "ocr,math")
    assert not score("x = -1 or x = -5", vet)  # only the grader scores MMVet


def test_circular_benchmarks_need_whole_indexes_and_limit_takes_whole_groups(tmp_path):
    path = write_tsv(tmp_path / "MMBench_DEV_EN.tsv", MC_HEADER, [
        mc_row(0), mc_row(1), mc_row(2), mc_row(1000000, image="0"),
        mc_row(1000001, image="1"), mc_row(2000000, image="0"), mc_row(1000002, image="2")])
    assert [i.id for i in read_items(path, limit=1)] == [
        "MMBench_DEV_EN-0", "MMBench_DEV_EN-1000000", "MMBench_DEV_EN-2000000"]
    two = read_items(path, limit=2)
    assert [i.fields["index"] for i in two] == ["0", "1", "1000000", "1000001", "2000000"]
    assert two[2].image == two[0].image  # a copy's picture is its question's
    assert len(read_items(path)) == 7
    bad = write_tsv(tmp_path / "MMBench_DEV_CN.tsv", MC_HEADER, [{**mc_row(0), "index": "q-1"}])
    with pytest.raises(EvalDataError, match=r"row 1 \(index q-1\).*whole number"):
        read_items(bad)
    with pytest.raises(EvalDataError, match=r"index q-1.*whole number"):
        read_items(bad, limit=1)


def test_limit_reads_and_decodes_only_the_first_rows(tmp_path, cache):
    path = write_tsv(tmp_path / "AI2D_TEST.tsv", MC_HEADER, [
        mc_row(0), mc_row(1), mc_row(2, image="not base64!"), mc_row(3, answer="")])
    items = read_items(path, limit=2)
    assert [item.id for item in items] == ["AI2D_TEST-0", "AI2D_TEST-1"]
    assert len(list(cache.rglob("*.png"))) == 2


@pytest.mark.parametrize(("row", "words"), [
    (mc_row(5, image="not base64!"), r"row 2 \(index 5\): the image cell is not valid base64"),
    (mc_row(5, image=base64.b64encode(b"just some text").decode()), r"row 2 .*not a picture"),
    (mc_row(5, answer=""), r"row 2 \(index 5\): the row has no answer"),
    (mc_row(5, question=""), r"row 2 \(index 5\): the row has no question"),
    (mc_row(5, answer="D"), r"row 2 .*'D' is not one of the options A, B, C"),
    (mc_row(0), r"row 2 \(index 0\): index 0 is used by an earlier row too"),
])
def test_a_bad_row_is_named(tmp_path, row, words):
    path = write_tsv(tmp_path / "ScienceQA_VAL.tsv", MC_HEADER, [mc_row(0), row])
    with pytest.raises(EvalDataError, match=words) as raised:
        read_items(path)
    assert str(raised.value).startswith(str(path))


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(EvalDataError, match="no such file"):
        read_items(tmp_path / "MMStar.tsv")
    no_answers = write_tsv(tmp_path / "MMBench_TEST_EN.tsv", ("index", "question", "A", "B",
                                                               "image"), [])
    with pytest.raises(EvalDataError, match="no 'answer' column"):
        read_items(no_answers)
    empty = write_tsv(tmp_path / "empty.tsv", MC_HEADER, [])
    with pytest.raises(EvalDataError, match="no questions"):
        read_items(empty)


def test_pictures_are_written_once_to_the_cache(tmp_path, cache):
    path = mmstar(tmp_path)
    items = read_items(path)
    folder = items[0].image.parent
    assert folder.parent == cache / "eval-images"
    assert folder.name.startswith("MMStar-") and len(folder.name) == len("MMStar-") + 16
    assert sorted(p.name for p in folder.iterdir()) == ["0.png", "1.png", "2.png"]  # no temps
    old = 1_000_000_000
    for item in items:
        os.utime(item.image, ns=(old, old))
    again = read_items(path)
    assert [i.image for i in again] == [i.image for i in items]
    assert all(i.image.stat().st_mtime_ns == old for i in again)  # not rewritten


def test_image_cells_larger_than_the_csv_default_limit_are_read(tmp_path):
    large = picture(size=(256, 256), noise=True)
    assert len(large) > 131072
    path = write_tsv(tmp_path / "MMStar.tsv", MC_HEADER, [mc_row(0, image=large)])
    old = csv.field_size_limit(131072)
    try:
        (item,) = read_items(path)
    finally:
        csv.field_size_limit(old)
    with Image.open(item.image) as image:
        assert image.size == (256, 256)


def test_stagewise_eval_runs_on_a_tsv(tmp_path, tiny_pair: TinyPair):
    path = mmstar(tmp_path, 3)
    done = subprocess.run(
        [sys.executable, "-m", "stagewise.desktop.cli", "eval", str(path),
         "--model", str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj), "--limit", "2",
         "--strategy", "single",
         "--max-stage-tokens", "8", "--threads", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 questions · ")
    assert any(line.split()[:1] == ["single"] for line in done.stdout.splitlines())
    assert "VLMEvalKit's figures for MMStar (no grader: " in done.stdout
    assert "  single: " in done.stdout.split("VLMEvalKit's figures")[1]
