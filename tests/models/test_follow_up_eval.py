"""Follow-up pairs in ``stagewise eval``: read from multi-turn records, asked as the window asks
them (the first question and the conclusion given to it in the prompt), on the tiny pair."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.evaluation import EvalDataError, format_report, make_configs, read_items
from stagewise.models.evaluation.results import FollowUpResult, ItemResult, StrategyReport
from stagewise.models.evaluation.runner import evaluate
from stagewise.models.events import AnswerFinished, PromptEvaluated
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.reasoning.conversation import Turn
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.strategies import sequences_needed
from stagewise.models.session import Session, plan
from tests.models.test_evaluation import cot_record, write_jsonl, write_png

SMALL = SearchSettings(max_stage_tokens=6, seed=3)


def _with_follow_up(record: dict, question: str, answer: str) -> dict:
    turns = [*record["conversations"], {"from": "human", "value": question},
             {"from": "gpt", "value": f"<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION>"
                                      f"<REASONING>r</REASONING><CONCLUSION>{answer}"
                                      "</CONCLUSION>"}]
    return {**record, "conversations": turns}


@pytest.fixture()
def threads(tmp_path) -> list:
    for i in range(2):
        write_png(tmp_path / "images" / f"{i}.png", circles=i + 1)
    records = [_with_follow_up(cot_record(f"test-{i:06d}-count", f"images/{i}.png",
                                          "How many circles?", str(i + 1)),
                               "How many are left if one is removed?", str(i))
               for i in range(2)]
    return read_items(write_jsonl(tmp_path / "test.jsonl", records))


@pytest.fixture(scope="module")
def session(tiny_pair: TinyPair) -> Iterator[Session]:
    load = plan(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=4096, threads=1))
    load = replace(load, engine=replace(load.engine, n_seq_max=sequences_needed(2)))
    with Session(load) as loaded:
        yield loaded


def test_a_follow_up_turn_is_read_with_its_gold_conclusion(threads):
    (follow,) = threads[0].follow_ups
    assert follow.question == "How many are left if one is removed?"
    assert follow.answers == ("0",)
    assert threads[0].answers == ("1",)


def test_a_second_human_turn_without_its_answer_is_refused(tmp_path):
    write_png(tmp_path / "a.png")
    record = cot_record("x", "a.png", "How many?", "1")
    record["conversations"] += [{"from": "human", "value": "Why?"},
                                {"from": "human", "value": "And?"}]
    with pytest.raises(EvalDataError, match=r"bad\.jsonl:1: turn 3 is not a question followed"):
        read_items(write_jsonl(tmp_path / "bad.jsonl", [record]))


def test_each_follow_up_is_asked_after_the_first_answer_as_the_window_asks_it(session,
                                                                             threads):
    configs = make_configs(["greedy", "stage"], 2, "logprob")
    report = evaluate(session, threads, configs, base_settings=SMALL)
    for strategy in report.strategies:
        for index, (item, result) in enumerate(zip(threads, strategy.items, strict=True)):
            (follow,) = result.follow_ups
            assert follow.question == item.follow_ups[0].question and not follow.error
            assert follow.correct == (follow.prediction.strip() == item.follow_ups[0].answers[0])
            # the same follow-up asked by hand after the first answer's conclusion
            settings = strategy.config.settings(SMALL, SMALL.seed + index)
            earlier = (Turn(item.question, result.prediction.strip()),)
            events = list(session.ask(load_image(item.image), follow.question, settings,
                                      earlier=earlier))
            prompt = next(e for e in events if isinstance(e, PromptEvaluated))
            assert prompt.earlier_turns == 1
            assert events[-1].result.conclusion == follow.prediction
            assert isinstance(events[-1], AnswerFinished)
    data = json.loads(json.dumps(report.to_json()))
    assert data["strategies"][0]["follow_ups"]["asked"] == 2
    assert data["items"][0]["follow_ups"][0]["question"] == "How many are left if one is removed?"
    assert "follow-ups (greedy): the second answer right in" in format_report(report)


def _result(first: bool, second: bool) -> ItemResult:
    return ItemResult("q", "count", "greedy", "", first, 0.1, 3,
                      follow_ups=(FollowUpResult("Why?", "", second, 0.1),))


def test_the_tally_counts_second_answers_where_the_first_was_right():
    report = StrategyReport(make_configs(["greedy"], 1)[0], (
        _result(True, True), _result(True, False), _result(False, True), _result(True, True),
        ItemResult("r", "count", "greedy", "", True, 0.1, 3)))  # no follow-up: not counted
    tally = report.follow_up_tally()
    assert (tally.asked, tally.right, tally.first_right, tally.right_after_right) == (4, 3, 3, 2)
    assert tally.rate_after_right == pytest.approx(2 / 3)
    low, high = tally.interval
    assert low < 2 / 3 < high
    assert StrategyReport(report.config, report.items[-1:]).follow_up_tally() is None
