"""Compare Stagewise's copies of VLMEvalKit's scoring rules with VLMEvalKit's own functions.

Usage::

    git clone https://github.com/open-compass/VLMEvalKit
    python bench/check_vlmevalkit_rules.py VLMEvalKit [--answers 200000]

Loads, from the VLMEvalKit checkout's source (without importing VLMEvalKit or pandas: each
function is compiled on its own, with the few names it uses supplied), ``can_infer``,
``YOrN_Extraction``, ``process_punctuation``, MathVista's ``post_check`` and the grader
prompts (``build_prompt``, ``build_prompt_cn``, ``YOrN_match_prompt``,
``build_mathvista_gpt4_prompt``, ``build_mmvet_gpt4_prompt``), and checks that
:mod:`stagewise.models.evaluation.vlmeval_rules` and
:mod:`~stagewise.models.evaluation.grader_prompts` give the same results: on random answers
built from letters, option texts, yes/no words and punctuation, and on fixed prompts and
MathVista cases. Prints what it checked; exits 1 at the first difference.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import random
import re
import string
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from stagewise.models.evaluation import grader_prompts, vlmeval_rules

SOURCES = {
    "vlmeval/utils/matching_util.py": {"_VERBOSE_ANSWER_RE", "can_infer_option",
                                       "can_infer_text", "can_infer"},
    "vlmeval/smp/misc.py": {"process_punctuation", "cn_string"},
    "vlmeval/dataset/utils/yorn.py": {"YOrN_Extraction", "YOrN_match_prompt"},
    "vlmeval/smp/vlm.py": {"build_option_str"},
    "vlmeval/dataset/utils/multiple_choice.py": {"build_prompt", "build_prompt_cn"},
    "vlmeval/dataset/utils/mathvista.py": {"get_gpt4_ICE", "build_mathvista_gpt4_prompt",
                                           "list_to_dict", "post_check", "FAIL_MSG"},
    "vlmeval/dataset/utils/mmvet.py": {"build_mmvet_gpt4_prompt"},
}
WORDS = ("A", "B", "C", "D", "E", "Z", "a", "b", "the", "answer", "is", "correct", "The",
         "Answer", "option", "(B)", "B.", "**C**", "[D]", "I", "choose", "because", "red",
         "dark blue", "5 MPa", "green", "yes", "no", "Yes,", "No.", "cat", "not", "{A}", "#B",
         "B:", "c)", "answer is b", "correct answer is **A**", "Cannot determine the answer",
         ",", ".", "!", "?", "-", "_", "1,000", "3.5", "x.", "(", ")", '"', "/")
OPTIONS = ({"A": "red", "B": "dark blue", "C": "green"},
           {"A": "5 MPa", "B": "15 MPa", "C": "25 MPa", "D": "50 MPa"},
           {"A": "yes", "B": "no"},
           {"A": "cat", "B": "dog", "C": "teddy bear", "D": "rabbit", "E": "mouse"})


class _Pandas:
    """The one pandas function the compiled functions call."""

    @staticmethod
    def isna(value: object) -> bool:
        return value is None


class _Logger:
    def warning(self, *args: object) -> None:
        pass

    info = warning


def load(checkout: Path) -> dict[str, Any]:
    """VLMEvalKit's functions, each compiled from its source file."""
    names: dict[str, Any] = {"re": re, "os": os, "cp": copy, "string": string,
                             "Counter": Counter, "defaultdict": defaultdict,
                             "logger": _Logger(), "pd": _Pandas}
    for relative, wanted in SOURCES.items():
        path = checkout / relative
        tree = ast.parse(path.read_text(encoding="utf-8"))
        body = [node for node in tree.body
                if (isinstance(node, ast.FunctionDef) and node.name in wanted)
                or (isinstance(node, ast.Assign)
                    and any(getattr(t, "id", None) in wanted for t in node.targets))]
        exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), names)
    return names


def check(theirs: dict[str, Any], answers: int, seed: int = 1) -> list[str]:
    """Run the comparisons; raise AssertionError at the first difference."""
    done = []
    rng = random.Random(seed)
    for _ in range(answers):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 9)))
        if rng.random() < 0.3:
            text = text.replace(" ", rng.choice(["", ",", ".", " "]))
        options = rng.choice(OPTIONS)
        expected = theirs["can_infer"](text, dict(options)) or None
        assert vlmeval_rules.can_infer(text, options) == expected, (text, options)
        assert vlmeval_rules.yes_no(text) == theirs["YOrN_Extraction"](text), text
        assert vlmeval_rules.process_punctuation(text) == theirs["process_punctuation"](text)
    done.append(f"can_infer, YOrN_Extraction, process_punctuation: {answers} random answers")

    for question, options, answer in (("What colour is the ball", OPTIONS[0], "It is blue."),
                                      ("图中是什么", {"A": "猫", "B": "狗"}, "猫")):
        build = theirs["build_prompt_cn"] if theirs["cn_string"](question) \
            else theirs["build_prompt"]
        assert grader_prompts.choice_prompt(question, options, answer) == build(
            question, theirs["build_option_str"](options), answer)
    assert grader_prompts.yes_no_prompt("Is it red", "Maybe") == theirs["YOrN_match_prompt"](
        {"question": "Is it red", "prediction": "Maybe"})
    line = {"question": "Hint: x\nQuestion: How many?", "prediction": "There are 3."}
    assert grader_prompts.mathvista_prompt(line["question"], line["prediction"]) == \
        theirs["build_mathvista_gpt4_prompt"](line)
    line = {"question": "What is x?", "answer": "-1<AND>-5", "prediction": "x = -1"}
    assert grader_prompts.mmvet_prompt("What is x?", "-1<AND>-5", "x = -1") == \
        theirs["build_mmvet_gpt4_prompt"](line)
    done.append("grader prompts: multiple choice (English, Chinese), yes/no, MathVista, MMVet")

    cases = 0
    for kind, answer_type, answer, option, choices in (
            ("free_form", "integer", "14", "", ""), ("free_form", "float", "1.45", "", ""),
            ("free_form", "integer", "0", "", ""), ("free_form", "list", "[2007, 2008]", "", ""),
            ("free_form", "text", "None", "", ""),
            ("multi_choice", "text", "8/11", "B", "['3/11', '8/11', '6/11', '3/5']")):
        for prediction in ("14", " 14 ", "14.0", "1.45", "1.450", "0", "[2007, 2008]", "B",
                           "(B) 8/11", "The answer is B", "8/11", "None", "x"):
            fields = {"question_type": kind, "answer_type": answer_type, "answer": answer,
                      "answer_option": option, "choices": choices}
            row = dict(fields, prediction=prediction, res=prediction)
            prefetched = theirs["post_check"](dict(row), prefetch=True)
            assert bool(vlmeval_rules.mathvista_prefetch(prediction, fields)) == \
                bool(prefetched), (fields, prediction)
            assert vlmeval_rules.mathvista_hit(prediction, fields) == \
                theirs["post_check"](dict(row), prefetch=False), (fields, prediction)
            cases += 1
    done.append(f"MathVista post_check: {cases} cases")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a VLMEvalKit checkout")
    parser.add_argument("--answers", type=int, default=200_000,
                        help="random answers to compare (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        for line in check(load(args.checkout), args.answers):
            print(f"same: {line}")
    except AssertionError as error:
        print(f"different: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
