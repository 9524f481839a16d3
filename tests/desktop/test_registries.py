"""A strategy and a selection of the test's own, registered without editing a product file,
reach every front end: ask's choices, Preferences, eval's table, the run view and exports."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from stagewise.desktop.candidates_view import CandidatesView
from stagewise.desktop.cli import build_parser, main
from stagewise.desktop.settings_dialog import SettingsDialog
from stagewise.models.evaluation import format_report, make_configs, read_items
from stagewise.models.evaluation.runner import evaluate
from stagewise.models.events import AnswerFinished, Candidate, Event
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.library.demo import demo_test_split, example_image
from stagewise.models.reasoning.run_view import RunView
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.search_sizes import SearchSizes, Segments
from stagewise.models.reasoning.search_steps import SearchSteps
from stagewise.models.reasoning.selections import SELECTIONS, Choosing, PointwiseSelection
from stagewise.models.reasoning.strategies import STRATEGIES, Strategy
from stagewise.models.reasoning.strategies.stage import StageStrategy
from stagewise.models.session import Session, plan
from stagewise.models.stages import STAGES, Stage
from stagewise.models.storage.app_settings import AppSettings
from stagewise.models.storage.export_markdown import to_markdown
from stagewise.models.storage.history import History

ROOT = Path(__file__).resolve().parents[2]


class ShortestFirst(PointwiseSelection):
    """Keeps the candidate with the fewest tokens."""

    name = "shortest"
    label = "The shortest candidate"
    title = "shortest-candidate selection"
    help = "the candidate with the fewest tokens"
    score_label = "shortness"
    default_cutoff = -1e9

    def score(self, job: Choosing, candidates: Sequence[Candidate]) -> list[float]:
        return [-float(c.n_tokens) for c in candidates]


class StagesAgain(Strategy):
    """Stage-level search under a name of its own: a plug-in needs nothing but this."""

    name = "stages-again"
    label = "Stage by stage, once more"
    title = "stages-again search"
    help = "stage-level search, registered by a test"

    def segments(self, sizes: SearchSizes) -> Segments:
        return StageStrategy().segments(sizes)

    def run(self, steps: SearchSteps) -> Iterator[Event]:
        yield from StageStrategy().run(steps)


@pytest.fixture()
def plugged() -> Iterator[None]:
    STRATEGIES.register(StagesAgain())
    SELECTIONS.register(ShortestFirst())
    yield
    STRATEGIES.unregister(StagesAgain.name)
    SELECTIONS.unregister(ShortestFirst.name)


def _choices(parser_action_dest: str) -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    ask = sub.choices["ask"]  # type: ignore[index]
    action = next(a for a in ask._actions if a.dest == parser_action_dest)
    return list(action.choices or ())


def test_they_are_choices_of_ask(plugged):
    assert "stages-again" in _choices("strategy")
    assert "shortest" in _choices("select")


def test_ask_runs_with_them_and_says_their_scores(plugged, capsys):
    status = main(["ask", "--image", str(example_image()), "--question", "How many shapes?",
                   "--strategy", "stages-again", "--select", "shortest", "--beam", "3",
                   "--json", "--no-history"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0
    assert out["strategy"] == "stages-again" and out["select"] == "shortest"
    for candidates in out["candidates"].values():
        scores = [c["score"] for c in candidates]
        chosen = [c for c in candidates if c["chosen"]]
        assert len(chosen) == 1 and chosen[0]["score"] == max(scores)
        assert chosen[0]["score"] == -min(c["tokens"] for c in candidates)


def test_preferences_offer_them(plugged, qtbot):
    dialog = SettingsDialog(AppSettings(search=SearchSettings(strategy="stages-again",
                                                              select="shortest")))
    qtbot.addWidget(dialog)
    strategy = dialog.strategy_combo
    select = dialog.select_combo
    assert strategy.itemText(strategy.findData("stages-again")) == "Stage by stage, once more"
    assert select.itemText(select.findData("shortest")) == "The shortest candidate"
    assert strategy.currentData() == "stages-again" and select.currentData() == "shortest"
    settings = dialog.settings()
    assert (settings.search.strategy, settings.search.select) == ("stages-again", "shortest")


def test_evals_table_the_run_view_and_exports_show_them(plugged, tmp_path, qtbot):
    split = demo_test_split()
    assert split is not None
    items = read_items(split, 2)
    configs = make_configs(["greedy", "stages-again"], 2, ["shortest"])
    with Session(plan(None, None, EngineSettings(threads=2))) as session:
        report = evaluate(session, items, configs, base_settings=SearchSettings(seed=1))
        text = format_report(report)
        assert re.search(r"^stages-again\s+2\s+shortest", text, re.M), text
        assert "stages-again vs greedy" in text
        settings = SearchSettings(strategy="stages-again", select="shortest", beam=2)
        events = list(session.ask(load_image(example_image()), "How many shapes?", settings))
    result = events[-1].result
    assert isinstance(events[-1], AnswerFinished)
    view = RunView.from_result(result)
    assert view.strategy is not None and view.strategy.name == "stages-again"
    caption = view.stages[Stage.CAPTION]
    candidates = CandidatesView(Stage.CAPTION)
    qtbot.addWidget(candidates)
    candidates.show_stage(caption, result.select, result.strategy)
    assert candidates.why_text().startswith("Highest shortness:")
    image_path = example_image()
    with History(tmp_path / "history") as history:
        run_id = history.start(load_image(image_path), image_path.read_bytes(),
                               image_path.name, result.question, "demo", {})
        for event in events:
            history.record(run_id, event)
        stored = history.load(run_id)
    assert [c.score for c in stored.result.candidates] == [c.score
                                                          for c in result.candidates]
    markdown = to_markdown([stored])
    assert "stages-again search" in markdown and "shortest-candidate selection" in markdown
    assert "Chosen by the highest shortness." in markdown
    assert all(stage.title in markdown for stage in STAGES)


PRODUCT = [ROOT / "models", ROOT / "desktop"]
REGISTERED = {"stage", "sentence", "best-of-n", "retrace", "judge", "logprob", "selfcheck",
              "model", "verdict", "entropy", "prm"}


def test_no_code_outside_the_registries_compares_a_name_to_a_literal():
    """``x.strategy == "retrace"``, ``select in ("judge", ...)``, ``{"stage": ...}.get(...)``:
    each such place is one more file to edit when a strategy or selection is added."""
    found = []
    for folder in PRODUCT:
        for path in folder.rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(("models/reasoning/strategies/", "models/reasoning/selections/",
                               "models/recipes/")):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Compare):
                    operands = [node.left, *node.comparators]
                    literals = [c.value for c in operands if isinstance(c, ast.Constant)]
                    for c in node.comparators:
                        if isinstance(c, ast.Tuple | ast.Set | ast.List):
                            literals += [e.value for e in c.elts if isinstance(e, ast.Constant)]
                    named = any(re.search(r"strateg|select|scorer", ast.unparse(c))
                                for c in operands if not isinstance(c, ast.Constant))
                    if named and any(isinstance(v, str) and v in REGISTERED for v in literals):
                        found.append(f"{rel}:{node.lineno}")
                elif isinstance(node, ast.Dict) and rel != "models/library/catalogue.py":
                    # (the catalogue's table kinds, [[model]] and [[prm]], are not names
                    # of selections, though they share two)
                    keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
                    if sum(isinstance(k, str) and k in REGISTERED for k in keys) >= 2:
                        found.append(f"{rel}:{node.lineno}")
    assert not found, "names compared outside the registries: " + ", ".join(found)
