"""Evaluation: scoring, intervals, reading question files, judge accuracy, and real runs on
the tiny random-weight pair (whose answers are noise: structure is checked, not accuracy)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.errors import StagewiseError
from stagewise.models.evaluation import (
    EvalDataError,
    EvalItem,
    EvalReport,
    ItemResult,
    JudgeCall,
    StrategyReport,
    answer_letter,
    candidate_content,
    format_report,
    is_correct,
    item_kind,
    judge_calls,
    make_configs,
    normalise,
    options,
    paired_difference,
    read_items,
    score,
    wilson_interval,
)
from stagewise.models.evaluation.runner import EvalProgress, evaluate
from stagewise.models.events import Candidate, SearchResult, Timings, Verdict
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.strategies import sequences_needed
from stagewise.models.session import Session, plan
from stagewise.models.stages import STAGES, Stage

MC_QUESTION = "What colour is the ball?\nA. red\nB. dark blue\nC. green"

# --------------------------------------------------------------------------------------------
# scoring


@pytest.mark.parametrize(("text", "expected"), [
    ("Two.", "2"),
    ("  The   Dog ", "dog"),
    ("yes.", "yes"),
    ("YES!", "yes"),
    ("an apple", "apple"),
    ("twenty", "20"),
    ("zero", "0"),
    ("twenty-one", "twenty-one"),
    ('"Paris"', "paris"),
    ("-3", "-3"),
    (".5", ".5"),
    ("3.14", "3.14"),
    ("red, blue", "red blue"),
    ("", ""),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize(("prediction", "gold", "right"), [
    ("2", "two", True),
    ("Two", "2", True),
    ("There are 2", "2", False),
    ("yes.", "Yes", True),
    ("no", "yes", False),
    ("The cat", "a cat", True),
    ("", "", False),
    ("eleven", "11", True),
])
def test_exact_match_after_normalisation(prediction, gold, right):
    assert is_correct(prediction, gold) is right


def test_options_are_read_from_lines_in_three_styles():
    assert options(MC_QUESTION) == {"A": "red", "B": "dark blue", "C": "green"}
    assert options("Which?\n(A) cat\n(B) dog") == {"A": "cat", "B": "dog"}
    assert options("Which?\nA) cat\nB) dog\n") == {"A": "cat", "B": "dog"}
    assert options("How many? A lot.") == {}
    assert options("Which?\nA. only one") == {}


@pytest.mark.parametrize(("prediction", "letter"), [
    ("B", "B"),
    ("B.", "B"),
    ("(B)", "B"),
    ("B) dark blue", "B"),
    ("B. dark blue", "B"),
    ("The answer is B", "B"),
    ("The answer is B.", "B"),
    ("Answer: (C)", "C"),
    ("the correct option is b.", "B"),
    ("b", "B"),
    ("the answer is a dog", None),
    ("Blue", None),
    ("D", None),  # not an option
])
def test_answer_letter(prediction, letter):
    assert answer_letter(prediction, "ABC") == letter


@pytest.mark.parametrize(("prediction", "right"), [
    ("B", True),
    ("(B)", True),
    ("B) dark blue", True),
    ("The answer is B.", True),
    ("dark blue", True),
    ("Dark blue.", True),
    ("A", False),
    ("red", False),
    ("blue", False),
    ("", False),
])
def test_multiple_choice_with_a_gold_letter(prediction, right):
    assert is_correct(prediction, "B", MC_QUESTION) is right


def test_multiple_choice_with_gold_text_accepts_the_letter_too():
    assert is_correct("B", "dark blue", MC_QUESTION)
    assert is_correct("dark blue", "dark blue", MC_QUESTION)
    assert not is_correct("A", "dark blue", MC_QUESTION)
    assert is_correct("B", "B. dark blue", MC_QUESTION)


def test_score_accepts_any_gold_answer(tmp_path):
    item = EvalItem("x", tmp_path / "i.png", "How many?", ("2", "two", "a pair"))
    assert score("A pair.", item) and score("2", item)
    assert not score("3", item)


# --------------------------------------------------------------------------------------------
# statistics


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4901625, abs=1e-6)
    assert high == pytest.approx(0.9433178, abs=1e-6)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775328, abs=1e-6)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.7224672, abs=1e-6) and high == 1.0
    assert wilson_interval(50, 100) == pytest.approx((0.4038315, 0.5961685), abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_paired_difference_matches_newcombe_square_and_add():
    # Fagerland, Lydersen & Laake, the paired 2x2 table of Cavo et al. (2012):
    # 59 both, 6 only first, 16 only second, 80 neither -> -0.0621 (-0.1186 to -0.0046)
    a = [True] * 65 + [False] * 96
    b = [True] * 59 + [False] * 6 + [True] * 16 + [False] * 80
    d = paired_difference(a, b)
    assert (d.n, d.both, d.a_only, d.b_only, d.neither) == (161, 59, 6, 16, 80)
    assert d.difference == pytest.approx(-0.0621, abs=1e-4)
    assert d.low == pytest.approx(-0.1186, abs=1e-4)
    assert d.high == pytest.approx(-0.0046, abs=1e-4)
    assert d.verdict == "worse"
    swapped = paired_difference(b, a)
    assert (swapped.low, swapped.high) == pytest.approx((-d.high, -d.low))


def test_paired_difference_edge_cases():
    same = paired_difference([True, False, True], [True, False, True])
    assert same.difference == 0 and same.low < 0 < same.high and same.verdict == "within noise"
    sweep = paired_difference([True] * 5, [False] * 5)  # does not collapse to a point
    assert sweep.difference == 1 and 0 < sweep.low < 1 and sweep.high == 1
    assert sweep.verdict == "better"
    empty = paired_difference([], [])
    assert (empty.n, empty.low, empty.high) == (0, -1.0, 1.0)
    with pytest.raises(ValueError):
        paired_difference([True], [])


# --------------------------------------------------------------------------------------------
# reading question files


def write_png(path: Path, circles: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (64, 48), "white")
    draw = ImageDraw.Draw(image)
    for k in range(circles):
        draw.ellipse((4 + 18 * k, 8, 18 + 18 * k, 22), fill="red")
    image.save(path)
    return path


def cot_record(item_id: str, image: str, question: str, answer: str) -> dict:
    return {"id": item_id, "image": image, "conversations": [
        {"from": "human", "value": question},
        {"from": "gpt", "value": f"<SUMMARY>Count them.</SUMMARY>\n<CAPTION>Red circles on "
                                 f"white.</CAPTION>\n<REASONING>I see {answer}.</REASONING>\n"
                                 f"<CONCLUSION>{answer}</CONCLUSION>"},
    ]}


def write_jsonl(path: Path, records: list[object]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_llava_cot_records(tmp_path):
    write_png(tmp_path / "images" / "a.png")
    path = write_jsonl(tmp_path / "test.jsonl", [
        cot_record("test-000001-count", "images/a.png", "<image>\nHow many circles?", "1"),
        "",
        cot_record("x7", str(tmp_path / "images" / "a.png"), "What is red?\n<image>", "circle"),
    ])
    first, second = read_items(path)
    assert first.id == "test-000001-count" and first.kind == "count"
    assert first.image == tmp_path / "images" / "a.png"
    assert first.question == "How many circles?"
    assert first.answers == ("1",)
    assert first.stages[Stage.CAPTION] == "Red circles on white."
    assert set(first.stages) == set(STAGES)
    assert first.line == 1
    assert second.question == "What is red?" and second.kind == "" and second.line == 3


def test_reads_plain_vqa_records_and_limits(tmp_path):
    write_png(tmp_path / "a.png")
    path = write_jsonl(tmp_path / "vqa.jsonl", [
        {"image": "a.png", "question": "How many?", "answer": "1"},
        {"id": 5, "image": "a.png", "question": "Colour?",
         "answers": ["red", {"answer": "crimson"}, "red"]},
        {"image": "a.png", "question": "Count?", "answer": 3},
    ])
    items = read_items(path)
    assert [i.id for i in items] == ["line-1", "5", "line-3"]
    assert items[1].answers == ("red", "crimson")
    assert items[2].answers == ("3",)
    assert items[0].stages == {}
    assert [i.id for i in read_items(path, limit=2)] == ["line-1", "5"]


def test_kinds_come_from_ids():
    assert item_kind("test-000012-count") == "count"
    assert item_kind("test-000012-odd-one-out") == "out"
    assert item_kind("abc") == "" and item_kind("test-count") == ""


@pytest.mark.parametrize(("records", "message"), [
    (['{"image": "a.png", "question": "Q", '], "bad.jsonl:1: bad JSON"),
    ([{"image": "a.png", "question": "Q", "answer": "1"}, "[1, 2]"],
     "bad.jsonl:2: not a JSON object"),
    ([{"image": "a.png", "answer": "1"}], "bad.jsonl:1: the record has no question"),
    ([{"image": "a.png", "question": "Q"}], "bad.jsonl:1: the record has no answer"),
    ([{"question": "Q", "answer": "1"}], "bad.jsonl:1: the record has no image"),
    ([{"image": "gone.png", "question": "Q", "answer": "1"}],
     "bad.jsonl:1: image {tmp}/gone.png does not exist"),
    ([{"image": "a.png", "conversations": [{"from": "gpt", "value": "x"}]}],
     "bad.jsonl:1: the record has no question"),
    ([{"image": "a.png", "conversations": [{"from": "human", "value": "Q"}]}],
     "bad.jsonl:1: the record has no answer"),
    ([{"image": "a.png", "conversations": [{"from": "human", "value": "Q"},
                                           {"from": "gpt", "value": "<SUMMARY>s</SUMMARY>"}]}],
     "bad.jsonl:1: the answer has no <CONCLUSION> stage"),
    ([""], "bad.jsonl: no questions in this file"),
])
def test_bad_files_give_one_clear_error(tmp_path, records, message):
    write_png(tmp_path / "a.png")
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(EvalDataError) as caught:
        read_items(path)
    assert message.format(tmp=tmp_path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, StagewiseError)


def test_a_missing_file_or_a_folder_is_refused(tmp_path):
    with pytest.raises(EvalDataError, match="no such file"):
        read_items(tmp_path / "nope.jsonl")
    with pytest.raises(EvalDataError, match="folder"):
        read_items(tmp_path)


# --------------------------------------------------------------------------------------------
# judge accuracy, on hand-built results


def result_with(candidates: list[Candidate], verdicts: list[Verdict],
                select: str = "judge") -> SearchResult:
    return SearchResult(
        question="How many?", strategy="stage", beam=2, select=select, seed=0,
        mode="prompted", status="finished", answer_text="", stages={},
        candidates=tuple(candidates), chosen=(), verdicts=tuple(verdicts), checks=(),
        timings=Timings(),
    )


def cand(unit: Stage | None, segment: int, index: int, text: str) -> Candidate:
    return Candidate(unit, segment, index, text, 3, -1.0, "closed")


def verdict(unit: Stage | None, segment: int, first: int, second: int,
            winner: int) -> Verdict:
    return Verdict(unit, segment, 0, first, second, winner, "", "")


ITEM = EvalItem("q", Path("i.png"), "How many circles?", ("2",),
                {Stage.CAPTION: "Two red circles.", Stage.CONCLUSION: "2"})


def test_candidate_content_reads_native_and_prompted_candidates():
    assert candidate_content(cand(Stage.CONCLUSION, 3, 0, "two</CONCLUSION>")) == "two"
    assert candidate_content(cand(Stage.CONCLUSION, 3, 0,
                                  "\n\n<CONCLUSION> 2 </CONCLUSION>")) == "2"
    assert candidate_content(cand(Stage.CAPTION, 1, 0, "just text")) == "just text"
    whole = "s</SUMMARY>\n<CAPTION>c</CAPTION><REASONING>r</REASONING><CONCLUSION>4</CONCLUSION>"
    assert candidate_content(cand(None, 0, 0, whole)) == "4"
    assert candidate_content(cand(None, 0, 0, "s</SUMMARY><CAPTION>cut off")) == ""
    assert candidate_content(cand(None, 0, 0, " 7 ")) == "7"


def test_judge_accuracy_counts_only_right_against_wrong():
    candidates = [
        cand(Stage.CAPTION, 1, 0, "Two red circles.</CAPTION>"),  # right
        cand(Stage.CAPTION, 1, 1, "<CAPTION>A cat.</CAPTION>"),  # wrong
        cand(Stage.REASONING, 2, 0, "one</REASONING>"),  # no gold reasoning: unknown
        cand(Stage.REASONING, 2, 1, "two</REASONING>"),
        cand(Stage.CONCLUSION, 3, 0, "2</CONCLUSION>"),  # right
        cand(Stage.CONCLUSION, 3, 1, "3</CONCLUSION>"),  # wrong
        cand(Stage.CONCLUSION, 3, 2, "5</CONCLUSION>"),  # wrong
        cand(Stage.CONCLUSION, 3, 3, "two</CONCLUSION>"),  # right
    ]
    verdicts = [
        verdict(Stage.CAPTION, 1, 0, 1, 1),  # picked wrong
        verdict(Stage.REASONING, 2, 0, 1, 0),  # not counted
        verdict(Stage.CONCLUSION, 3, 0, 1, 0),  # picked right
        verdict(Stage.CONCLUSION, 3, 2, 3, 3),  # picked right
        verdict(Stage.CONCLUSION, 3, 0, 3, 0),  # both right: not counted
        verdict(Stage.CONCLUSION, 3, 1, 2, 1),  # both wrong: not counted
    ]
    calls = judge_calls(result_with(candidates, verdicts), ITEM)
    assert calls == (JudgeCall("caption", False), JudgeCall("conclusion", True),
                     JudgeCall("conclusion", True))
    assert judge_calls(result_with(candidates, verdicts, select="logprob"), ITEM) == ()


def test_judge_accuracy_for_whole_answers():
    answer = "s</SUMMARY><CAPTION>c</CAPTION><REASONING>r</REASONING><CONCLUSION>{}</CONCLUSION>"
    candidates = [cand(None, 0, 0, answer.format("3")), cand(None, 0, 1, answer.format("2"))]
    calls = judge_calls(result_with(candidates, [verdict(None, 0, 0, 1, 0)]), ITEM)
    assert calls == (JudgeCall("answer", False),)


def test_strategy_report_tallies_kinds_and_judge_units():
    config = make_configs(["stage"], 2, "judge")[0]
    items = (
        ItemResult("a", "count", "stage", "2", True, 1.0, 10,
                   judge=(JudgeCall("conclusion", True), JudgeCall("caption", False))),
        ItemResult("b", "count", "stage", "1", False, 2.0, 20),
        ItemResult("c", "colour", "stage", "", False, 3.0, 0, error="broken image",
                   judge=(JudgeCall("conclusion", True),)),
    )
    r = StrategyReport(config, items)
    assert (r.n, r.correct, r.errors) == (3, 1, 1)
    assert r.seconds_per_question == pytest.approx(2.0)
    assert r.tokens_per_question == pytest.approx(10.0)
    assert r.by_kind() == {"colour": (0, 1), "count": (1, 2)}
    assert r.judge_by_unit() == {"caption": (0, 1), "conclusion": (2, 2)}
    assert r.judge_total == (2, 3)
    data = r.to_json()
    assert data["picks"]["right"] == 2 and data["picks"]["counted"] == 3
    assert data["ci95"][0] < r.accuracy < data["ci95"][1]


def test_make_configs():
    configs = make_configs(["single", "stage", "single", "best-of-n"], 4, "logprob")
    assert [(c.name, c.strategy, c.beam, c.select) for c in configs] == [
        ("single", "stage", 1, "logprob"), ("stage", "stage", 4, "logprob"),
        ("best-of-n", "best-of-n", 4, "logprob")]
    assert not configs[0].chooses and configs[1].chooses
    greedy, single = make_configs(["greedy", "single"], 4, "judge")
    base = SearchSettings()
    assert greedy.settings(base, 3).sampling.greedy and greedy.settings(base, 3).beam == 1
    assert single.settings(base, 3).sampling == base.sampling != greedy.settings(base, 3).sampling
    with pytest.raises(ValueError, match="unknown strategy"):
        make_configs(["beam"], 2, "judge")


def test_make_configs_crosses_strategies_with_selections():
    configs = make_configs(["greedy", "stage", "retrace"], 4, ["judge", "logprob"])
    assert [(c.name, c.strategy, c.select) for c in configs] == [
        ("greedy", "stage", "judge"),
        ("stage+judge", "stage", "judge"), ("stage+logprob", "stage", "logprob"),
        ("retrace+logprob", "retrace", "logprob")]  # retrace cannot judge pairs
    defaults = make_configs(["stage", "retrace"], 2)  # each strategy's own selection
    assert [(c.name, c.select) for c in defaults] == [("stage", "logprob"),
                                                       ("retrace", "selfcheck")]
    with pytest.raises(ValueError, match="on its own"):
        make_configs(["retrace"], 4, ["judge"])
    with pytest.raises(ValueError, match="unknown selection"):
        make_configs(["stage"], 4, ["coin"])


# --------------------------------------------------------------------------------------------
# real runs on the tiny random pair


@pytest.fixture(scope="module")
def engine(tiny_pair: TinyPair) -> Iterator[Session]:
    """A session on the tiny pair, on one thread (two spinning threads crawl when the cores
    are busy), with room for beam 2 only."""
    load = plan(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=4096, threads=1))
    load = replace(load, engine=replace(load.engine, n_seq_max=sequences_needed(2)))
    with Session(load) as loaded:
        yield loaded


@pytest.fixture()
def questions(tmp_path) -> list[EvalItem]:
    for i in range(3):
        write_png(tmp_path / "images" / f"{i}.png", circles=i + 1)
    records = [cot_record(f"test-{i:06d}-{kind}", f"images/{i}.png", "How many circles?",
                          str(i + 1)) for i, kind in enumerate(("count", "count", "colour"))]
    return read_items(write_jsonl(tmp_path / "test.jsonl", records))


SMALL = SearchSettings(max_stage_tokens=6, seed=7)


def test_runs_every_strategy_on_every_question(engine, questions):
    configs = make_configs(["single", "best-of-n", "sentence", "stage"], 2, "judge")
    seen: list[EvalProgress] = []
    report = evaluate(engine, questions, configs, base_settings=SMALL, progress=seen.append)
    assert report.status == "finished" and (report.done, report.total) == (3, 3)
    assert [r.config.name for r in report.strategies] == ["single", "best-of-n", "sentence",
                                                          "stage"]
    for r in report.strategies:
        assert r.n == 3 and r.errors == 0
        assert [i.item_id for i in r.items] == [q.id for q in questions]
        assert all(i.seconds > 0 and i.tokens > 0 for i in r.items)
        assert r.seconds_per_question > 0 and r.tokens_per_question > 0
        assert sum(r.by_kind().get("count", (0, 0))) >= 2
        for item in r.items:  # a prediction is scored the way score() scores it
            question = next(q for q in questions if q.id == item.item_id)
            assert item.correct == score(item.prediction, question)
    assert [p.done for p in seen] == [1, 2, 3]
    assert all(len(p.results) == 4 for p in seen)
    assert seen[-1].running["stage"][1] == 3
    assert [c[0] for c in report.comparisons()] == ["best-of-n", "sentence", "stage"]
    data = json.loads(json.dumps(report.to_json()))
    assert {"status", "questions", "done", "settings", "strategies", "comparisons",
            "items"} <= set(data)
    assert len(data["items"]) == 12
    text = format_report(report)
    for name in ("single", "best-of-n", "sentence", "stage"):
        assert any(line.startswith(name) for line in text.splitlines())
    assert "stage vs single:" in text and "judge (stage):" in text and "count" in text


def test_the_same_seed_gives_the_same_predictions(engine, questions):
    configs = make_configs(["single", "stage"], 2, "judge")
    first = evaluate(engine, questions, configs, base_settings=SMALL)
    second = evaluate(engine, questions, configs, base_settings=SMALL)
    predictions = [[i.prediction for i in r.items] for r in first.strategies]
    assert predictions == [[i.prediction for i in r.items] for r in second.strategies]
    # each question has its own seed: the single pass does not repeat one answer throughout
    assert len(set(predictions[0])) > 1


def test_a_broken_image_counts_as_wrong_and_the_rest_runs(engine, questions):
    questions[1].image.write_bytes(b"not a png at all")
    report = evaluate(engine, questions, make_configs(["single"], 1, "judge"),
                      base_settings=SMALL)
    items = report.strategies[0].items
    assert report.done == 3 and report.strategies[0].errors == 1
    assert items[1].error and "not an image" in items[1].error and not items[1].correct
    assert not items[0].error and not items[2].error
    assert "1 failed run(s)" in format_report(report)


def test_cancel_keeps_the_questions_done(engine, questions):
    cancel = threading.Event()
    configs = make_configs(["single", "stage"], 2, "logprob")

    def stop_after_first(p: EvalProgress) -> None:
        cancel.set()

    report = evaluate(engine, questions, configs, cancel=cancel, progress=stop_after_first,
                      base_settings=SMALL)
    assert report.status == "cancelled" and report.done == 1
    assert all(r.n == 1 for r in report.strategies)
    assert format_report(report).startswith("cancelled: 1 of 3 questions done")
    already = evaluate(engine, questions, configs, cancel=cancel, base_settings=SMALL)
    assert already.done == 0 and already.status == "cancelled"
    assert "-" in format_report(already)


def test_a_beam_the_engine_cannot_hold_fails_before_any_question(engine, questions):
    with pytest.raises(StagewiseError, match="n_seq_max"):
        evaluate(engine, questions, make_configs(["stage"], 16, "judge"), base_settings=SMALL)


def test_an_empty_report_formats():
    report = EvalReport((), 0, "finished", SearchSettings())
    assert report.done == 0 and report.comparisons() == []
    assert "0 questions" in format_report(report)


MMSTAR_QUESTION = ("What is the stress in the rod? Options: A: 15 MPa, B: 5 MPa, C: 10 MPa, "
                   "D: 20 MPa")
CLEVR_QUESTION = ("Subtract all tiny shiny balls. Subtract all purple objects. How many objects "
                  "are left? Options: A. 4, B. 8, C. 2, D. 6")
COLON_LINES = "Which animal is shown?\nA: cat\nB: dog\nC: cow"


@pytest.mark.parametrize(("question", "found"), [
    (MMSTAR_QUESTION, {"A": "15 MPa", "B": "5 MPa", "C": "10 MPa", "D": "20 MPa"}),
    (CLEVR_QUESTION, {"A": "4", "B": "8", "C": "2", "D": "6"}),
    (COLON_LINES, {"A": "cat", "B": "dog", "C": "cow"}),
    ("Question: Which?\nOptions:\nA. red\nB. blue\nAnswer with the letter.",
     {"A": "red", "B": "blue"}),
    ("Choices: (A) a cat (B) a dog", {"A": "a cat", "B": "a dog"}),
    ("Options: A: only one", {}),
    ("Is it a B: or not?", {}),
])
def test_options_in_every_layout_the_papers_benchmarks_use(question, found):
    assert options(question) == found


@pytest.mark.parametrize(("prediction", "gold", "question", "right"), [
    ("B: 5 MPa", "B", MMSTAR_QUESTION, True),
    ("5 MPa", "B", MMSTAR_QUESTION, True),
    ("The answer is B.", "B", MMSTAR_QUESTION, True),
    ("15 MPa", "B", MMSTAR_QUESTION, False),
    ("A", "B", MMSTAR_QUESTION, False),
    ("**B**", "B", CLEVR_QUESTION, True),  # the released model's own conclusion
    ("8", "B", CLEVR_QUESTION, True),
    ("dog", "B", COLON_LINES, True),
    ("The answer is B.", "B", "Which one?", True),
    ("a dog", "A", "Which one?", False),
])
def test_multiple_choice_answers_are_scored_as_vlmevalkit_matches_options(prediction, gold,
                                                                          question, right):
    assert is_correct(prediction, gold, question) is right
