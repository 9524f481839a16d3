"""Fingerprints of what fixed searches answer, to show a refactor changed no answer.

Usage::

    python bench/answer_hashes.py > before.json      # on the old code
    python bench/answer_hashes.py --against before.json   # on the new code

Runs 20 configurations (the demo pair and the tiny random-weight pair; stage, sentence,
best-of-N and retrace; beam 1 to 4; each selection; stage budgets that cut candidates
off) and hashes, for each, the chosen answer, every candidate (text, tokens, finish,
mean log-probability to 4 places), every verdict and check, the chosen picks, the scores
and the token counts. ``--against`` prints which configurations differ and exits 1 if any
does. Threads are fixed (2) so the arithmetic is the same from run to run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from stagewise.models.build.tiny_vlm import TINY, write_tiny_pair
from stagewise.models.events import AnswerFinished, SegmentChosen
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.library.demo import demo_pair
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.session import Session, plan

EXAMPLE = Path(__file__).parents[1] / "models" / "data" / "example.png"

# (pair, question, settings), as written before the registries (see _today)
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    ("demo", "How many red circles are there?", {"beam": 1}),
    ("demo", "How many red circles are there?", {"beam": 2, "select": "judge"}),
    ("demo", "How many red circles are there?", {"beam": 3, "select": "judge"}),
    ("demo", "How many red circles are there?", {"beam": 4, "select": "judge"}),
    ("demo", "How many red circles are there?", {"beam": 4, "select": "logprob"}),
    ("demo", "What color is the triangle at the top?",
     {"beam": 2, "select": "judge", "max_stage_tokens": 8}),
    ("demo", "How many shapes are there?", {"strategy": "best-of-n", "beam": 3}),
    ("demo", "How many shapes are there?",
     {"strategy": "best-of-n", "beam": 4, "select": "logprob"}),
    ("demo", "How many shapes are there?",
     {"strategy": "best-of-n", "beam": 2, "max_stage_tokens": 6}),
    ("demo", "Is there a blue square?", {"strategy": "sentence", "beam": 2}),
    ("demo", "Is there a blue square?",
     {"strategy": "sentence", "beam": 2, "select": "logprob"}),
    ("demo", "How many red circles are there?",
     {"strategy": "retrace", "retrace_scorer": "selfcheck"}),
    ("demo", "How many red circles are there?",
     {"strategy": "retrace", "retrace_scorer": "logprob"}),
    ("tiny", "What is in the picture?", {"beam": 1, "max_stage_tokens": 12}),
    ("tiny", "What is in the picture?", {"beam": 3, "max_stage_tokens": 12}),
    ("tiny", "What is in the picture?",
     {"strategy": "best-of-n", "beam": 2, "select": "logprob", "max_stage_tokens": 10}),
    ("tiny", "What is in the picture?",
     {"strategy": "sentence", "beam": 2, "max_stage_tokens": 10}),
    ("tiny", "What is in the picture?",
     {"strategy": "retrace", "retrace_scorer": "selfcheck", "max_stage_tokens": 8}),
    ("demo", "How many red circles are there?", {"beam": 4, "select": "verdict"}),
    ("tiny", "What is in the picture?", {"beam": 4, "select": "verdict", "max_stage_tokens": 12}),
]


def fingerprint(session: Session, image: Any, question: str, settings: SearchSettings
                ) -> str:
    scores = []
    result = None
    for event in session.ask(image, question, settings):
        if isinstance(event, SegmentChosen):
            scores.append([event.segment, event.candidate, [round(s, 4) for s in event.scores]])
        elif isinstance(event, AnswerFinished):
            result = event.result
    assert result is not None
    t = result.timings
    data = {
        "answer": result.answer_text,
        "status": result.status,
        "candidates": [[c.unit.value if c.unit else None, c.segment, c.index, c.text,
                        list(c.tokens), c.n_tokens, round(c.mean_logprob, 4), c.finish]
                       for c in result.candidates],
        "chosen": [list(p) for p in result.chosen],
        "verdicts": [[v.segment, v.round, v.first, v.second, v.winner, v.reason, v.text,
                      v.forced] for v in result.verdicts],
        "checks": [[c.segment, c.candidate, c.correct, c.text] for c in result.checks],
        "scores": scores,
        "tokens": [t.image_encodes, t.prompt_tokens, t.generated_tokens, t.decode_steps],
    }
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _today(values: dict[str, Any]) -> dict[str, Any]:
    """The configuration in today's settings: retrace's scorer became its selection."""
    values = dict(values)
    if "retrace_scorer" in values and "retrace_scorer" not in SearchSettings.__annotations__:
        values["select"] = values.pop("retrace_scorer")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", type=Path, help="a JSON file this command wrote before")
    args = parser.parse_args()
    image = load_image(EXAMPLE)
    engine = EngineSettings(n_ctx=8192, threads=2)
    hashes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tiny = write_tiny_pair(Path(tmp), TINY)
        demo = demo_pair()
        pairs = {"demo": (demo.model, demo.mmproj), "tiny": (tiny.model, tiny.mmproj)}
        for name, (model, mmproj) in pairs.items():
            with Session(plan(model, mmproj, engine)) as session:
                for no, (pair, question, values) in enumerate(CONFIGS):
                    if pair != name:
                        continue
                    settings = SearchSettings(seed=7, **_today(values))
                    key = f"{no:02d} {pair} {json.dumps(values, sort_keys=True)}"
                    hashes[key] = fingerprint(session, image, question, settings)
    hashes = dict(sorted(hashes.items()))
    if args.against is None:
        json.dump(hashes, sys.stdout, indent=1)
        print()
        return 0
    before = json.loads(args.against.read_text())
    differ = [k for k in before if hashes.get(k) != before[k]]
    for key in hashes:
        print(f"{'same  ' if key not in differ else 'DIFFER'} {hashes[key]}  {key}")
    print(f"{len(hashes) - len(differ)} of {len(hashes)} configurations answer the same")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
