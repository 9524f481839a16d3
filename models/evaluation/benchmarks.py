"""Which VLMEvalKit benchmark a TSV holds, how its questions are asked, and how it is scored.

A benchmark is told by its file's name, as VLMEvalKit tells it by the dataset's name (the
file stem; Stagewise compares case-insensitively):

========================  ===========  =====================================================
name holds                rules        as in VLMEvalKit
========================  ===========  =====================================================
``MathVista``             mathvista    ``MathVista`` (``vlmeval/dataset/image_vqa.py``): an
                                       LLM extracts the answer, ``post_check`` scores it
``MMVet``                 mmvet        ``MMVet`` (``image_vqa.py``): an LLM scores 0 to 1
``Hallusion``             yes-no       ``ImageYORNDataset`` (``image_yorn.py``): yes/no
                                       extraction, ``Hallusion_rating``'s aAcc, fAcc, qAcc
option columns A, B, ...  mcq          ``ImageMCQDataset`` (``image_mcq.py``): ``can_infer``;
                                       CircularEval when the name holds ``mmbench``,
                                       ``ccbench``, ``circular`` or ``mmcr``
anything else             (Stagewise)  not VLMEvalKit's: normalised exact match
========================  ===========  =====================================================

The question asked is VLMEvalKit's (``ImageMCQDataset.build_prompt``: ``Hint: …``,
``Question: …``, ``Options:``, one ``A. text`` line per option, ``Please select the correct
answer from the options above.``), except where the LLaVA-CoT reference's model
(``inference/VLMEvalKit/inference_demo.py``, ``use_custom_prompt`` and ``build_prompt``)
asks its own: AI2D ("Look at the scientific diagram carefully…"), MMMU ("Look at the image
carefully and solve…") and MathVista (the question as it is). MMVet and HallusionBench ask
the question as it is (``ImageBaseDataset.build_prompt``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "CIRCULAR_NAMES",
    "Benchmark",
    "Rules",
    "benchmark_of",
    "build_question",
]

Rules = Literal["mcq", "yes-no", "mathvista", "mmvet", ""]
"""How a benchmark's answers are read: VLMEvalKit's rules, or "" for Stagewise's own."""

CIRCULAR_NAMES = ("mmbench", "ccbench", "circular", "mmcr")
"""A multiple-choice benchmark whose name holds one of these is scored by CircularEval
(``ImageMCQDataset.evaluate_heuristic``)."""

_GRADED: tuple[tuple[str, Rules], ...] = (("mathvista", "mathvista"), ("mmvet", "mmvet"))
_YES_NO = ("hallusion",)
_AI2D_PROMPT = ("Look at the scientific diagram carefully and answer the following question: "
                "{question}\nRespond only with the correct option digit.")
_MMMU_PROMPT = ("Look at the image carefully and solve the following question step-by-step. "
                "Question: {question} Options: {options} Indicate the correct answer at the "
                "end.")


@dataclass(frozen=True)
class Benchmark:
    """A VLMEvalKit benchmark as its file's name tells it.

    Attributes:
        name: The file's stem ("MMBench_DEV_EN").
        rules: How its answers are read, before the file is read: "mathvista", "mmvet",
            "yes-no", or "" (multiple choice when the file has option columns, else
            Stagewise's own).
        circular: Multiple choice scored by CircularEval.
    """

    name: str
    rules: Rules
    circular: bool

    @property
    def hallusion(self) -> bool:
        """HallusionBench: aAcc, fAcc and qAcc are reported."""
        return self.rules == "yes-no"

    @property
    def needs_grader(self) -> bool:
        """Whether only an LLM can score its answers (MathVista, MMVet)."""
        return self.rules in ("mathvista", "mmvet")

    @property
    def label(self) -> str:
        """The benchmark as a person reads it ("MathVista", "MMBench_DEV_EN")."""
        return {"mathvista": "MathVista", "mmvet": "MMVet"}.get(self.rules, self.name)


def benchmark_of(path: Path) -> Benchmark:
    """The benchmark a VLMEvalKit TSV holds, from its name (see the module docstring)."""
    name = path.stem
    lowered = name.lower()
    rules: Rules = next((r for key, r in _GRADED if key in lowered), "")
    if not rules and any(key in lowered for key in _YES_NO):
        rules = "yes-no"
    return Benchmark(name, rules, any(key in lowered for key in CIRCULAR_NAMES))


def build_question(benchmark: Benchmark, question: str, options: Mapping[str, str],
                   hint: str) -> str:
    """The text a multiple-choice question is asked with (see the module docstring).

    Args:
        benchmark: The benchmark.
        question: The row's question.
        options: Its options by letter, in letter order (empty ones left out).
        hint: Its hint ("" if none).
    """
    lowered = benchmark.name.lower()
    if "ai2d" in lowered:  # the reference appends each option as "\nA. text"
        listed = question + "".join(f"\n{letter}. {text}" for letter, text in options.items())
        return _AI2D_PROMPT.format(question=listed)
    if "mmmu" in lowered:  # its "<image 1>" marker is dropped (one image per question here)
        listed = "\n".join(f"{letter}. {text}" for letter, text in options.items())
        return _MMMU_PROMPT.format(question=question, options=listed).replace("<image 1>", "")
    lines = [f"Hint: {hint}"] if hint else []
    lines += [f"Question: {question}", "Options:"]
    lines += [f"{letter}. {text}" for letter, text in options.items()]
    return "\n".join(lines) + "\nPlease select the correct answer from the options above. \n"
