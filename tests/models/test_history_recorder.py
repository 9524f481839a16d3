"""The history recorder: real searches on the tiny model kept in real SQLite as they run."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from stagewise.models.events import (
    AnswerFinished,
    Candidate,
    CandidateFinished,
    Event,
    SegmentChosen,
)
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.remote.server import ServerSettings
from stagewise.models.session import Session, plan
from stagewise.models.stages import Stage
from stagewise.models.storage.app_settings import AppSettings, settings_from_json
from stagewise.models.storage.history import History, HistoryRecorder, RecordedRun, RunSettings
from tests.models.test_history_reliability import read_only

QUESTION = "How many red circles are there?"
SEARCH = SearchSettings(beam=2, max_stage_tokens=8, max_judge_tokens=6, seed=5,
                        sampling=SamplingSettings(temperature=0.7, top_p=0.8))
ASKED = RunSettings(SEARCH, EngineSettings(n_ctx=4096, threads=2, flash_attn="off"),
                    model=Path("tiny.gguf"), auto_beam=True)


@pytest.fixture(scope="module")
def session(tiny_pair) -> Iterator[Session]:
    load = plan(tiny_pair.model, tiny_pair.mmproj, ASKED.engine, SEARCH)
    with Session(load) as opened:
        yield opened


@pytest.fixture
def warnings() -> list[str]:
    return []


@pytest.fixture
def recorder(tmp_path: Path, warnings: list[str]) -> Iterator[HistoryRecorder]:
    with HistoryRecorder(tmp_path / "history", warn=warnings.append) as opened:
        yield opened


def start(recorder: HistoryRecorder, image: PreparedImage, image_file: Path, **kw) -> RecordedRun:
    return recorder.start(image, image_file, image_file.name, QUESTION, "tiny.gguf", ASKED, **kw)


def stored(tmp_path: Path, run_id: int):
    """The run as another reader (the window's own History) sees it now."""
    with History(tmp_path / "history") as history:
        return history.load(run_id)


def first_choice(events: list[Event]) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, SegmentChosen))


def test_a_run_is_kept_as_it_goes_and_finished_with_its_result(
        session, recorder, image, image_file, tmp_path, warnings):
    run = start(recorder, image, image_file)
    assert run.saved and stored(tmp_path, run.run_id).entry.status == "running"
    events = list(session.ask(image, QUESTION, SEARCH))
    chosen = first_choice(events)
    for event in events[:chosen + 1]:
        run.add(event)
    partial = stored(tmp_path, run.run_id)  # the summary is saved before the run ends
    assert partial.entry.status == "running"
    result = events[-1].result
    assert partial.result.answer_text.endswith(events[chosen].text)
    assert result.answer_text.startswith(partial.result.answer_text)
    assert {c.unit for c in partial.result.candidates} == {Stage.SUMMARY}
    for event in events[chosen + 1:]:
        run.add(event)
    kept = stored(tmp_path, run.run_id)
    assert kept.entry.status == "finished" and kept.error == ""
    assert kept.result.answer_text == result.answer_text
    assert kept.result.chosen == result.chosen and kept.result.verdicts == result.verdicts
    assert len(kept.result.candidates) == len(result.candidates) == 8
    assert (kept.result.strategy, kept.result.beam, kept.result.seed) == ("stage", 2, 5)
    assert kept.entry.question == QUESTION and kept.entry.model == "tiny.gguf"
    assert kept.image_path.read_bytes() == image_file.read_bytes()
    assert warnings == []
    run.fail("too late")  # a finished run stays finished
    assert stored(tmp_path, run.run_id).entry.status == "finished"


def test_the_settings_are_kept_in_the_settings_files_form(recorder, image, image_file,
                                                          tmp_path):
    run = start(recorder, image, image_file)
    settings = stored(tmp_path, run.run_id).settings
    assert settings == json.loads(json.dumps(ASKED.record()))
    expected = AppSettings(model=Path("tiny.gguf"), search=SEARCH, auto_beam=True,
                           engine=ASKED.engine).to_json()
    del expected["window_geometry"], expected["window_state"]
    assert settings == expected
    assert settings["version"] == 3 and not any(k.startswith("window_") for k in settings)
    assert settings["search"]["beam"] == 2 and settings["search"]["seed"] == 5
    assert (settings["search"]["sampling"]["temperature"],
            settings["search"]["sampling"]["top_p"]) == (0.7, 0.8)
    assert (settings["model"], settings["engine"]["n_ctx"], settings["engine"]["threads"]) == (
        "tiny.gguf", 4096, 2)
    assert settings["engine"]["flash_attn"] == "off" and settings["server"]["url"] == ""
    # what the window reads back to ask again as this run was asked
    restored, problems, newer = settings_from_json(settings)
    assert problems == [] and not newer
    assert restored.search == SEARCH and restored.auto_beam and restored.engine == ASKED.engine


def test_a_servers_address_is_kept_and_its_login_never(recorder, image, image_file, tmp_path):
    server = ServerSettings("http://someone:secret@127.0.0.1:9", "openai", "llava",
                            StageMode.NATIVE)
    assert server.login == "someone:secret"
    served = dataclasses.replace(ASKED, server=server, model=None)
    run = recorder.start(image, image_file, image_file.name, QUESTION, "llava", served)
    settings = stored(tmp_path, run.run_id).settings
    assert settings["model"] is None
    assert {k: settings["server"][k] for k in ("url", "kind", "model", "stage_mode")} == {
        "url": "http://127.0.0.1:9", "kind": "openai", "model": "llava",
        "stage_mode": "native"}
    assert "login" not in settings["server"] and "secret" not in json.dumps(settings)
    restored, problems, _ = settings_from_json(settings)
    assert problems == [] and restored.server.url == "http://127.0.0.1:9"
    assert restored.server.login == ""


def test_a_failure_midway_keeps_what_arrived(session, recorder, image, image_file, tmp_path,
                                             warnings):
    run = start(recorder, image, image_file)
    events = list(session.ask(image, QUESTION, SEARCH))
    arrived = events[:first_choice(events) + 1]
    for event in arrived:
        run.add(event)
    run.fail("the context is full")
    kept = stored(tmp_path, run.run_id)
    assert kept.entry.status == "failed" and kept.error == "the context is full"
    summaries = [e.candidate for e in arrived if isinstance(e, CandidateFinished)]
    assert [c.text for c in kept.result.candidates] == [c.text for c in summaries]
    assert kept.result.answer_text and kept.entry.conclusion == ""
    run.add(events[-1])  # nothing is written after the end
    assert stored(tmp_path, run.run_id).entry.status == "failed"
    assert warnings == []


def test_a_cancelled_run_is_kept_with_what_its_candidates_wrote(
        session, recorder, image, image_file, tmp_path):
    run = start(recorder, image, image_file)
    cancel = threading.Event()
    for event in session.ask(image, QUESTION, SEARCH, cancel):
        run.add(event)
        if isinstance(event, SegmentChosen):
            cancel.set()
    assert isinstance(event, AnswerFinished) and event.result.status == "cancelled"
    kept = stored(tmp_path, run.run_id)
    assert kept.entry.status == "cancelled" and kept.error == ""
    assert kept.result.answer_text == event.result.answer_text != ""
    assert len(kept.result.candidates) == len(event.result.candidates) >= 2


def test_follow_ups_join_the_thread_of_the_run_they_follow(recorder, image, image_file,
                                                           tmp_path):
    first = start(recorder, image, image_file)
    second = start(recorder, image, image_file, thread=first.run_id, follow_up=True)
    with History(tmp_path / "history") as history:
        entries = {e.id: e for e in history.entries(threads=True)}
    assert entries[second.run_id].thread == first.run_id
    assert entries[second.run_id].follow_up and not entries[first.run_id].follow_up


def test_a_history_that_cannot_be_opened_costs_one_warning_and_no_answer(
        tmp_path, image, image_file):
    (tmp_path / "history").write_text("a file where the history folder should be")
    warnings: list[str] = []
    with HistoryRecorder(tmp_path / "history", warn=warnings.append) as recorder:
        run = start(recorder, image, image_file)
        assert not run.saved and run.run_id == -1
        run.add(SegmentChosen(Stage.SUMMARY, 0, 0, "text", (), 0.0))  # no-ops
        run.fail("a failure")
    assert len(warnings) == 1
    assert warnings[0].startswith("this answer will not be saved in the history: ")


def test_a_damaged_database_is_not_written_into(tmp_path, image, image_file):
    folder = tmp_path / "history"
    folder.mkdir()
    (folder / "history.sqlite3").write_bytes(b"not sqlite at all" * 100)
    warnings: list[str] = []
    with HistoryRecorder(folder, warn=warnings.append) as recorder:
        assert not start(recorder, image, image_file).saved
    assert len(warnings) == 1 and "damaged" in warnings[0]
    assert (folder / "history.sqlite3").read_bytes() == b"not sqlite at all" * 100


def test_a_read_only_folder_warns_once_and_keeps_what_it_holds(tmp_path, image, image_file):
    folder = tmp_path / "history"
    with HistoryRecorder(folder, warn=pytest.fail) as recorder:
        kept = start(recorder, image, image_file)
    before = stored(tmp_path, kept.run_id)
    warnings: list[str] = []
    with read_only(folder), HistoryRecorder(folder, warn=warnings.append) as recorder:
        run = start(recorder, image, image_file)
        assert not run.saved
        run.fail("a failure")  # a run not saved: nothing more is tried, nor said
    assert len(warnings) == 1
    assert warnings[0].startswith("this answer will not be saved in the history: ")
    assert "read-only" in warnings[0]
    with History(folder) as history:
        assert [e.id for e in history.entries()] == [kept.run_id]
    assert stored(tmp_path, kept.run_id).entry == before.entry


def test_an_image_file_changed_since_it_was_read_is_not_saved_with_it(
        recorder, image, tmp_path, warnings):
    other = tmp_path / "other.png"
    Image.new("RGB", (20, 20), "green").save(other)
    run = recorder.start(image, other, other.name, QUESTION, "tiny.gguf", ASKED)
    assert not run.saved and len(warnings) == 1 and "not be saved" in warnings[0]


def test_a_full_disk_midway_warns_once_and_a_later_end_is_still_saved(
        session, recorder, image, image_file, tmp_path, warnings):
    run = start(recorder, image, image_file)
    events = list(session.ask(image, QUESTION, SEARCH))
    db = recorder._history._connection()  # the recorder's own connection: its thread's
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now answers SQLITE_FULL for real
    big = Candidate(Stage.SUMMARY, 0, 0, "word " * 50_000, 9, -1.0, "closed")
    run.add(CandidateFinished(big))
    for event in events[:-1]:  # the rest of the progress is not tried: no more warnings
        run.add(event)
    assert len(warnings) == 1
    assert warnings[0].startswith("this answer could not be saved in full in the history: ")
    assert "disk full" in warnings[0]
    assert stored(tmp_path, run.run_id).result.candidates == ()
    db.execute("PRAGMA max_page_count = 1073741823")  # room again before the answer ends
    run.add(events[-1])
    kept = stored(tmp_path, run.run_id)
    assert kept.entry.status == "finished"
    assert kept.result.answer_text == events[-1].result.answer_text
    assert len(kept.result.candidates) == len(events[-1].result.candidates)
    assert len(warnings) == 1


def test_no_history_saves_nothing_and_says_nothing(tmp_path, image, image_file):
    warnings: list[str] = []
    with HistoryRecorder(tmp_path / "history", warn=warnings.append, save=False) as recorder:
        assert not start(recorder, image, image_file).saved
    assert warnings == [] and not (tmp_path / "history").exists()
