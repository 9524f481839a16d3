"""VLMEvalKit's scoring rules, as Stagewise copies them: cases written from VLMEvalKit's code.

Each case is what VLMEvalKit's own function returns for it (``vlmeval/utils/matching_util.py``,
``vlmeval/dataset/utils/yorn.py``, ``mathvista.py``, ``mmvet.py``, ``multiple_choice.py``);
``bench/check_vlmevalkit_rules.py`` compares the two on random answers against a VLMEvalKit
checkout.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from stagewise.models.evaluation.benchmark_figures import figures
from stagewise.models.evaluation.benchmarks import Benchmark, benchmark_of, build_question
from stagewise.models.evaluation.data import EvalItem
from stagewise.models.evaluation.grader import Grade, grade, grade_report
from stagewise.models.evaluation.grader_prompts import (
    choice_prompt,
    mathvista_prompt,
    mmvet_prompt,
    yes_no_prompt,
)
from stagewise.models.evaluation.results import EvalReport, ItemResult, make_configs
from stagewise.models.evaluation.results import StrategyReport as Strategy
from stagewise.models.evaluation.vlmeval_rules import (
    can_infer,
    circular_group,
    mathvista_hit,
    mathvista_prefetch,
    process_punctuation,
    yes_no,
)
from stagewise.models.reasoning.search_settings import SearchSettings

COLOURS = {"A": "red", "B": "dark blue", "C": "green"}
MODULI = {"A": "15 MPa", "B": "5 MPa", "C": "50 GPa"}


@pytest.mark.parametrize(("answer", "choices", "letter"), [
    ("B", COLOURS, "B"),
    ("B is correct", COLOURS, "B"),                   # a standing letter among the last four words
    ("I choose (B) because", COLOURS, "B"),
    ("(C)", COLOURS, "C"),
    ("**C**", COLOURS, "C"),
    ("The answer is C.", COLOURS, "C"),
    ("The correct answer is **B**. Here's why: the ball is a deep shade of blue all over.",
     COLOURS, "B"),                                   # too early a letter, but "answer is B"
    ("B because the ball in the picture looks like a deep blue", COLOURS, None),
    ("A or B", COLOURS, None),                        # two letters: the option text decides
    ("dark blue", COLOURS, "B"),                      # the one option text inside the answer
    ("The shear modulus is 5 MPa.", MODULI, "B"),     # "15 MPa" is not inside it
    ("It is red or green", COLOURS, None),            # two option texts
    ("red " * 20, COLOURS, None),                     # longer than twice the options' texts
    ("D", COLOURS, None),                             # not an option
    ("Z", COLOURS, "Z"),                              # no option
    ("Cannot determine the answer", COLOURS, "Z"),    # one of VLMEvalKit's refusals
    ("the answer is a dog", COLOURS, "A"),            # VLMEvalKit's quirk: any case
])
def test_can_infer_reads_options_as_vlmevalkit_does(answer, choices, letter):
    assert can_infer(answer, choices) == letter


@pytest.mark.parametrize(("answer", "said"), [
    ("Yes", "Yes"), ("Yes.", "Yes"), ("NO!", "No"),
    ("Yes, the image shows two cats.", "Yes"), ("No, it does not.", "No"),
    ("Yes or no?", "Unknown"), ("yes-no", "Unknown"), ("Not sure", "Unknown"),
    ("I cannot tell", "Unknown"), ("(yes)", "Yes"),
])
def test_yes_no_is_read_from_the_words(answer, said):
    assert yes_no(answer) == said


def test_punctuation_is_dropped_or_spaced_as_vlmevalkit_does():
    assert process_punctuation("yes,no") == "yes no"       # not beside a blank: a blank
    assert process_punctuation("yes, no") == "yes no"      # beside a blank: dropped
    assert process_punctuation("1,000 yes-no") == "1000 yesno"  # a number's comma: all dropped
    assert process_punctuation("Yes. 3.5") == "Yes 3.5"    # a period beside a digit stays
    assert process_punctuation("." * 40) == "." * 8        # only the first 32 periods go


def test_circular_groups_are_the_index_modulo_a_million():
    assert [circular_group(i) for i in ("7", "1000007", "3000007", "1000000")] == [7, 7, 7, 0]
    with pytest.raises(ValueError):
        circular_group("7a")


def test_mathvista_post_check():
    integer = {"question_type": "free_form", "answer_type": "integer", "answer": "14"}
    assert mathvista_prefetch("14", integer) == "14" and mathvista_hit(" 14 ", integer)
    assert mathvista_prefetch("13", integer) is None and not mathvista_hit("13", integer)
    assert mathvista_prefetch("14.0", integer) is None and not mathvista_hit("14.0", integer)
    zero = {**integer, "answer": "0"}
    assert mathvista_prefetch("0", zero) is None and mathvista_hit("0", zero)  # 0 is falsy
    real = {"question_type": "free_form", "answer_type": "float", "answer": "1.45"}
    assert mathvista_hit("1.450", real) and not mathvista_hit("$1.45", real)
    choice = {"question_type": "multi_choice", "answer_type": "text", "answer": "8/11",
              "answer_option": "B", "choices": "['3/11', '8/11', '6/11', '3/5']"}
    assert mathvista_prefetch("The correct answer is (B) 8/11.", choice) == "B"
    assert mathvista_prefetch("(A) 3/11", choice) == "A"  # taken, right or wrong
    assert mathvista_hit("B", choice) and not mathvista_hit("A", choice)
    listed = {"question_type": "free_form", "answer_type": "list", "answer": "[2007, 2008]"}
    assert not mathvista_hit("[2007, 2008]", listed)  # VLMEvalKit compares str(None) here


def test_grader_prompts_are_worded_as_vlmevalkit_words_them():
    prompt = choice_prompt("What colour is the ball", COLOURS, "bluish")
    assert prompt.startswith("You are an AI assistant who will help me to match an answer "
                             "with several options of a single-choice question. ")
    assert prompt.endswith("Example 3: \nQuestion: What colour is the ball?\nOptions: There "
                           "are several options: \nA. red\nB. dark blue\nC. green\n\n"
                           "Answer: bluish\nYour output: ")
    assert choice_prompt("图中是什么", {"A": "猫"}, "猫").startswith("你是一个帮助我匹配答案")
    assert yes_no_prompt("Is it red", "It is.").endswith(
        "Question: Is it red?\nAnswer: It is.\nYour output: ")
    vista = mathvista_prompt("Question: How many?", "There are 3.")
    assert vista.startswith("\nPlease read the following example.\n")
    assert vista.count("Extracted answer:") == 6
    assert vista.endswith("Question: How many?\nModel respone: There are 3.Extracted answer:")
    vet = mmvet_prompt("What is x?", "-1<AND>-5", "x = -1")
    assert vet.endswith("and their actual physical characteristics. | 1.0\n\n"
                        "What is x? | -1 <AND> -5 | x = -1 | ")


def test_benchmarks_are_told_by_name_as_vlmevalkit_tells_them():
    assert benchmark_of(Path("MMBench_DEV_EN.tsv")) == Benchmark("MMBench_DEV_EN", "", True)
    assert benchmark_of(Path("CCBench.tsv")).circular
    assert benchmark_of(Path("BLINK_circular.tsv")).circular
    assert not benchmark_of(Path("MMStar.tsv")).circular
    assert benchmark_of(Path("HallusionBench.tsv")).hallusion
    assert benchmark_of(Path("MathVista_MINI.tsv")).needs_grader
    assert benchmark_of(Path("MMVet.tsv")).label == "MMVet"
    plain = build_question(Benchmark("MMStar", "", False), "Which?", {"A": "x", "B": "y"},
                           "Look.")
    assert plain == ("Hint: Look.\nQuestion: Which?\nOptions:\nA. x\nB. y\n"
                     "Please select the correct answer from the options above. \n")


# -- figures from answers ------------------------------------------------------------------


def mc_item(index: int, answer: str, **fields: str) -> EvalItem:
    cells = {"index": str(index), "question": "Which colour?", **COLOURS, **fields}
    return EvalItem(f"MMBench-{index}", Path("x.png"), "Which colour?", (answer,),
                    kind=fields.get("category", ""), benchmark="mcq", fields=cells)


def report_of(items: list[EvalItem], predictions: dict[str, list[str]]) -> EvalReport:
    """A report as the runner makes it: each strategy's conclusions, scored by ``score``."""
    from stagewise.models.evaluation.scoring import score

    configs = make_configs(predictions, 2, "judge")
    strategies = []
    for config in configs:
        results = tuple(ItemResult(item.id, item.kind, config.name, said, score(said, item),
                                   1.0, 10)
                        for item, said in zip(items, predictions[config.name], strict=False))
        strategies.append(Strategy(config, results))
    return EvalReport(tuple(strategies), len(items), "finished", SearchSettings())


def test_a_circular_question_counts_only_when_every_rotated_copy_is_right(tmp_path):
    items = [mc_item(0, "B", category="colour", **{"l2-category": "perception"}),
             mc_item(1, "A", category="shape", **{"l2-category": "perception"}),
             mc_item(1000000, "C"), mc_item(1000001, "B"), mc_item(2000000, "A"),
             mc_item(2000001, "C"), mc_item(5, "A"), mc_item(1000005, "B")]
    predictions = {
        # question 0: one rotated copy wrong; question 1: all right; question 5: a copy
        # not answered (the run stopped), so not counted
        "single": ["B", "The answer is A.", "C", "(B)", "B", "green", "A"],
        "stage": ["B", "A", "C", "B", "A", "C", "A", "B"],
    }
    graded = grade_report(report_of(items, predictions), items, None)
    scores = figures(graded, items, benchmark_of(Path("MMBench_DEV_EN.tsv")))
    assert scores.summary["single"] == {"circular_accuracy": 0.5, "circular_questions": 2,
                                        "undecided": 0}
    assert scores.summary["stage"]["circular_accuracy"] == 1.0
    assert scores.summary["stage"]["circular_questions"] == 3
    single = graded.report.strategies[0]
    assert single.correct == 6  # the rows, each on its own
    # report_acc's table: the question's own category, as a fraction
    assert scores.tables["single"] == [{"split": "none", "Overall": 0.5, "perception": 0.5,
                                        "colour": 0.0, "shape": 1.0}]
    written = scores.write_csv(tmp_path / "acc.csv")
    with written[0].open() as file:
        rows = list(csv.DictReader(file))
    assert rows[0] == {"strategy": "single", "split": "none", "Overall": "0.5",
                       "perception": "0.5", "colour": "0.0", "shape": "1.0"}
    assert [r["strategy"] for r in rows] == ["single", "stage"]


def hallusion_item(number: int, set_id: int, figure: int, question: int, answer: str,
                   category: str = "VD", l2: str = "chart") -> EvalItem:
    index = f"{category}_{l2}_x_{set_id}_{figure}_{question}"
    return EvalItem(f"HallusionBench-{number}", Path("x.png"), "Is it so?", (answer,),
                    kind=category, benchmark="yes-no",
                    fields={"index": index, "category": category, "l2-category": l2,
                            "question": "Is it so?"})


def test_hallusionbench_figures_and_questions_are_grouped_as_vlmevalkit_groups_them():
    items = [  # set 0: figures 0 and 1, each asked questions 0 and 1; set 1: one figure
        hallusion_item(0, 0, 0, 0, "Yes"), hallusion_item(1, 0, 0, 1, "No"),
        hallusion_item(2, 0, 1, 0, "No"), hallusion_item(3, 0, 1, 1, "Yes"),
        hallusion_item(4, 1, 0, 0, "Yes", "VS", "map"),
    ]
    said = ["Yes, it is.", "No.", "Yes", "Yes", "yes"]  # only item 2 is wrong
    graded = grade_report(report_of(items, {"single": said}), items, None)
    scores = figures(graded, items, benchmark_of(Path("HallusionBench.tsv")))
    # aAcc: 4 of 5 answers; fAcc: figures chart/0/0 and map/1/0 all right, chart/0/1 not: 2
    # of 3; qAcc: questions chart/0/0 (figure 1 wrong) not, chart/0/1 and map/1/0 right: 2 of 3
    assert scores.summary["single"] == {"aAcc": 0.8, "fAcc": 0.6667, "qAcc": 0.6667,
                                        "undecided": 0}
    table = scores.tables["single"]
    assert [row["split"] for row in table] == ["Overall", "VD", "VS", "chart", "map"]
    assert table[0]["aAcc"] == pytest.approx(80.0)  # VLMEvalKit's table is in percent
    assert table[1] == {"split": "VD", "aAcc": 75.0, "fAcc": 50.0, "qAcc": 50.0}
    undecided = grade_report(report_of(items, {"single": ["maybe"] * 5}), items, None)
    assert figures(undecided, items, None).summary["single"]["undecided"] == 5


class Scripted:
    """A grader whose replies are written in the test: the rules that read them are real."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.asked: list[tuple[str, float]] = []

    def reply(self, prompt: str, *, max_tokens: int, temperature: float, seed: int) -> str:
        self.asked.append((prompt, temperature))
        return self.replies.pop(0)


def test_the_grader_reads_what_matching_cannot():
    item = mc_item(0, "B")
    assert grade(Scripted(), "B", item) == Grade("B", True)  # matched: no grader asked
    model = Scripted("Your output: B")
    marks = grade(model, "a bluish one", item)
    assert marks == Grade("B", True, asked=1, output="Your output: B")
    assert model.asked[0][0] == choice_prompt("Which colour?", COLOURS, "a bluish one")
    assert grade(Scripted("I cannot say"), "a bluish one", item).undecided  # no random pick
    assert grade(None, "a bluish one", item) == Grade("", False)
    yes = hallusion_item(0, 0, 0, 0, "Yes")
    model = Scripted("Hmm", "Unknown", "Yes")
    assert grade(model, "Perhaps", yes) == Grade("Yes", True, asked=3, output="Yes")
    assert [t for _, t in model.asked] == [0.0, 0.5, 1.0]  # YOrN_auxeval's temperatures


def test_mathvista_and_mmvet_are_graded_as_vlmevalkit_grades_them():
    fields = {"question": "How many?", "question_type": "free_form", "answer_type": "integer",
              "answer": "3"}
    vista = EvalItem("MathVista-1", Path("x.png"), "How many?", ("3",), benchmark="mathvista",
                     fields=fields)
    assert grade(Scripted(), "3", vista) == Grade("3", True)  # prefetched
    model = Scripted("3")
    assert grade(model, "three circles", vista) == Grade("3", True, asked=1, output="3")
    assert model.asked[0][0] == mathvista_prompt("How many?", "three circles")
    assert not grade(Scripted("3 circles"), "three circles", vista).correct
    vet = EvalItem("MMVet-0", Path("x.png"), "What is x?", ("-1<AND>-5",), benchmark="mmvet",
                   fields={"question": "What is x?", "category": "ocr,math"})
    model = Scripted("about half", "1.5", "0.5")
    marks = grade(model, "x = -1", vet)
    assert (marks.points, marks.correct, marks.asked) == (0.5, False, 3)
    assert [t for _, t in model.asked] == [0.0, 0.5, 1.0]
    failed = grade(Scripted(*["no"] * 5), "x = -1", vet)
    assert (failed.points, failed.asked) == (0.0, 5)  # five tries, then 0
    items = [vet, EvalItem("MMVet-1", Path("x.png"), "Read it", ("hello",), benchmark="mmvet",
                           fields={"question": "Read it", "category": "ocr"})]
    graded = grade_report(report_of(items, {"single": ["x = -1", "hello"]}), items,
                          Scripted("0.5", "1.0"), grader="scripted")
    scores = figures(graded, items, benchmark_of(Path("MMVet.tsv")))
    assert scores.summary["single"]["mmvet_score"] == 0.75
    assert graded.report.strategies[0].correct == 1  # full marks only
    capabilities = {row["Category"]: row for row in scores.tables["single"]}
    assert capabilities["ocr"] == {"Category": "ocr", "tot": 2, "acc": 75.0}
    assert capabilities["math"]["acc"] == 50.0 and capabilities["rec"]["acc"] is None
    assert [row["Category"] for row in scores.fine["single"]] == ["ocr_math", "ocr", "Overall"]
