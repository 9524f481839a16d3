"""The history: real searches on the tiny model recorded into SQLite, read back, shared, killed."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from stagewise.models.disk.paths import data_dir
from stagewise.models.errors import StagewiseError
from stagewise.models.events import (
    AnswerFinished,
    Candidate,
    CandidateFinished,
    Event,
    SearchResult,
    SegmentChosen,
    TokenStreamed,
)
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.images import PreparedImage, load_image
from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.run_view import RunStatus, RunView
from stagewise.models.reasoning.search import SearchSettings, StageSearch
from stagewise.models.stages import STAGES, Stage
from stagewise.models.storage.history import SCHEMA_VERSION, History, RunNotFound

QUESTION = "How many red circles are there?"
REPO = Path(__file__).resolve().parents[2]


def search(engine: Engine, image: PreparedImage, *, cancel_after_first_choice: bool = False,
           **settings: object) -> list[Event]:
    """Run a real search and return all its events (ending with AnswerFinished)."""
    options = {"beam": 2, "select": "judge", "max_stage_tokens": 8, "max_judge_tokens": 6,
               "seed": 5, **settings}
    cancel = threading.Event()
    events: list[Event] = []
    search = StageSearch(LlamaBackend(engine), SearchSettings(**options))
    for event in search.run(image, QUESTION, cancel):
        events.append(event)
        if cancel_after_first_choice and isinstance(event, SegmentChosen):
            cancel.set()
    assert isinstance(events[-1], AnswerFinished)
    return events


KINDS: dict[str, dict[str, object]] = {
    "stage": {"strategy": "stage", "select": "judge"},
    "best-of-n": {"strategy": "best-of-n", "select": "judge"},
    "sentence": {"strategy": "sentence", "select": "logprob", "max_stage_tokens": 5},
    "cancelled": {"cancel_after_first_choice": True},
}


@pytest.fixture(scope="module")
def searched(engine: Engine, image: PreparedImage) -> Callable[[str], list[Event]]:
    """The events of one real search of each kind, run once per module on first use."""
    cache: dict[str, list[Event]] = {}

    def get(kind: str) -> list[Event]:
        if kind not in cache:
            cache[kind] = search(engine, image, **KINDS[kind])
        return cache[kind]

    return get


def start(history: History, image_file: Path, question: str = QUESTION,
          image: PreparedImage | None = None) -> int:
    prepared = image or load_image(image_file)
    return history.start(prepared, image_file.read_bytes(), image_file.name, question, "tiny.gguf",
                         {"beam": 2, "mode": StageMode.PROMPTED, "sampling": SamplingSettings()})


def without_tokens(result: SearchResult) -> SearchResult:
    return dataclasses.replace(result, candidates=tuple(
        dataclasses.replace(c, tokens=()) for c in result.candidates))


def assert_same_result(stored: SearchResult, live: SearchResult) -> None:
    live = without_tokens(live)
    for f in dataclasses.fields(SearchResult):
        assert getattr(stored, f.name) == getattr(live, f.name), f.name
    assert stored == live


def stage_texts(view: RunView) -> dict[Stage, str]:
    return {stage: view.stages[stage].text for stage in STAGES}


def live_view(events: list[Event]) -> RunView:
    view = RunView()
    view.apply_all(events)
    return view


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    with History(tmp_path / "history") as opened:
        yield opened


def other_image(tmp_path: Path, size: tuple[int, int] = (400, 100),
                fmt: str = "PNG", name: str = "wide.png") -> Path:
    path = tmp_path / name
    Image.new("RGB", size, (10, 200, 30)).save(path, fmt)
    return path


# --------------------------------------------------------------------------------------------
# Recording real runs


@pytest.mark.parametrize("kind", ["stage", "best-of-n", "sentence"])
def test_a_recorded_run_reads_back_as_its_result(searched, image_file, history, kind):
    events = searched(kind)
    run_id = start(history, image_file)
    assert history.load(run_id).entry.status == "running"
    for event in events:
        history.record(run_id, event)
    live = events[-1].result
    stored = history.load(run_id)
    assert_same_result(stored.result, live)
    assert stored.entry.status == "finished" and stored.error == ""
    assert stored.entry.conclusion == live.conclusion
    assert stored.entry.question == QUESTION and stored.entry.model == "tiny.gguf"
    assert stored.entry.created.tzinfo is not None
    assert abs((datetime.now(UTC) - stored.entry.created).total_seconds()) < 60
    assert stored.image_name == image_file.name
    assert stored.image_path.read_bytes() == image_file.read_bytes()
    assert stored.settings == {"beam": 2, "mode": "prompted",
                               "sampling": dataclasses.asdict(SamplingSettings())}
    restored = RunView.from_result(stored.result)
    assert stage_texts(restored) == stage_texts(live_view(events))
    assert restored.status is RunStatus.FINISHED


def test_an_unfinished_run_reads_back_as_far_as_it_got(searched, image_file, history):
    events = searched("stage")
    last_choice = max(i for i, e in enumerate(events) if isinstance(e, SegmentChosen))
    so_far = events[: last_choice + 1]
    run_id = start(history, image_file)
    for event in so_far:
        history.record(run_id, event)
    stored = history.load(run_id)
    live = events[-1].result
    assert stored.entry.status == "running"
    assert stored.result.status == "cancelled"  # SearchResult has no "running"
    assert stored.result.candidates == without_tokens(live).candidates
    assert stored.result.chosen == live.chosen
    assert stored.result.verdicts == live.verdicts and stored.result.checks == live.checks
    assert (stored.result.strategy, stored.result.beam, stored.result.seed) == ("stage", 2, 5)
    view = live_view(so_far)
    assert stage_texts(RunView.from_result(stored.result)) == stage_texts(view)
    assert stored.entry.conclusion == view.conclusion


def test_a_cancelled_run_keeps_what_was_chosen(searched, image_file, history):
    events = searched("cancelled")
    live = events[-1].result
    assert live.status == "cancelled" and len(live.chosen) == 1
    run_id = start(history, image_file)
    for event in events:
        history.record(run_id, event)
    stored = history.load(run_id)
    assert stored.entry.status == "cancelled"
    assert_same_result(stored.result, live)
    restored = RunView.from_result(stored.result)
    assert stage_texts(restored) == stage_texts(live_view(events))
    assert restored.status is RunStatus.CANCELLED


def test_a_failed_run_keeps_its_message(image_file, history):
    run_id = start(history, image_file)
    history.fail(run_id, "the engine stopped: out of memory")
    stored = history.load(run_id)
    assert stored.entry.status == "failed"
    assert stored.error == "the engine stopped: out of memory"
    assert stored.result.status == "cancelled" and stored.result.candidates == ()
    assert stored.result.timings.total_s == 0.0


def test_streamed_tokens_write_nothing(image_file, history):
    run_id = start(history, image_file)
    before = history.database.with_suffix(".sqlite3-wal").stat().st_size
    for i in range(200):
        history.record(run_id, TokenStreamed(Stage.SUMMARY, 0, 0, f"t{i}"))
    assert history.database.with_suffix(".sqlite3-wal").stat().st_size == before


# --------------------------------------------------------------------------------------------
# Sharing and crashing


def test_two_instances_one_writing_in_another_thread(searched, image_file, tmp_path):
    folder = tmp_path / "history"
    reader = History(folder)
    doomed = start(reader, image_file, question="to delete")
    done = threading.Event()
    failures: list[BaseException] = []
    ids: list[int] = []

    def write() -> None:
        try:
            with History(folder) as writer:
                run_id = start(writer, image_file)
                ids.append(run_id)
                for event in searched("stage"):
                    writer.record(run_id, event)
        except BaseException as error:  # reported by the main thread
            failures.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    reads = 0
    try:
        while not done.is_set() or reads < 3:
            for entry in reader.entries():
                reader.load(entry.id)
            if reads == 1:
                reader.delete([doomed])
            reads += 1
    finally:
        thread.join()
    assert not failures, failures
    stored = reader.load(ids[0])
    assert stored.entry.status == "finished"
    assert [e.id for e in reader.entries()] == ids
    wrong_thread: list[BaseException] = []

    def read_elsewhere() -> None:
        try:
            reader.entries()
        except RuntimeError as error:
            wrong_thread.append(error)

    other = threading.Thread(target=read_elsewhere)
    other.start()
    other.join()
    assert "one thread" in str(wrong_thread[0])
    reader.close()


_KILLED_WRITER = """
import os, pickle, sys
from pathlib import Path
from stagewise.models.events import SegmentChosen
from stagewise.models.storage.history import History
from stagewise.models.inference.images import load_image

folder, image_file, events_file = map(Path, sys.argv[1:4])
events = pickle.loads(events_file.read_bytes())
history = History(folder)
run_id = history.start(load_image(image_file), image_file.read_bytes(), image_file.name,
                       "killed mid-answer", "tiny.gguf", {})
choices = 0
for event in events:
    history.record(run_id, event)
    choices += isinstance(event, SegmentChosen)
    if choices == 2:
        print(run_id, flush=True)
        os._exit(1)  # no close, no commit of anything pending, no cleanup
"""


def test_a_killed_writer_loses_nothing_and_reads_as_interrupted(searched, image_file,
                                                                tmp_path):
    folder = tmp_path / "history"
    events = searched("stage")
    events_file = tmp_path / "events.pickle"
    events_file.write_bytes(pickle.dumps(events))
    with History(folder) as history:  # another instance stays open meanwhile, with a run
        finished = start(history, image_file)
        for event in events:
            history.record(finished, event)
        proc = subprocess.run(
            [sys.executable, "-c", _KILLED_WRITER, str(folder), str(image_file),
             str(events_file)], capture_output=True, text=True, timeout=60, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
        assert proc.returncode == 1, proc.stderr
        killed = int(proc.stdout)
        assert history.load(killed).entry.status == "running"  # nobody recovered it yet
    with History(folder, recover=True) as history:
        db = sqlite3.connect(history.database)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        statuses = {e.id: e.status for e in history.entries()}
        assert statuses == {finished: "finished", killed: "interrupted"}
        stored = history.load(killed)
    second_choice = [i for i, e in enumerate(events) if isinstance(e, SegmentChosen)][1]
    so_far = events[: second_choice + 1]
    recorded = [e.candidate for e in so_far if isinstance(e, CandidateFinished)]
    scores = {(e.segment, i): score for e in so_far if isinstance(e, SegmentChosen)
              for i, score in enumerate(e.scores)}  # a chosen segment's scores are kept
    assert stored.result.candidates == tuple(
        dataclasses.replace(c, tokens=(), score=scores[(c.segment, c.index)]) for c in recorded)
    assert stored.result.chosen == events[-1].result.chosen[:2]
    assert stored.result.status == "cancelled"
    assert stored.entry.question == "killed mid-answer"
    restored = RunView.from_result(stored.result, RunStatus.INTERRUPTED)
    assert restored.status is RunStatus.INTERRUPTED
    assert stage_texts(restored) == stage_texts(live_view(so_far))
    assert restored.stages[Stage.SUMMARY].text and restored.stages[Stage.CAPTION].text


# --------------------------------------------------------------------------------------------
# Files, deleting, searching


def test_images_are_stored_once_with_a_thumbnail(image, image_file, tmp_path, history):
    first = start(history, image_file, image=image)
    second = start(history, image_file, image=image)
    wide_file = other_image(tmp_path)
    wide = start(history, wide_file)
    sha = hashlib.sha256(image_file.read_bytes()).hexdigest()
    expected = history.folder / "images" / sha[:2] / f"{sha}.png"
    assert history.load(first).image_path == history.load(second).image_path == expected
    images = sorted(p for p in (history.folder / "images").rglob("*") if p.is_file())
    assert len(images) == 2 and expected in images
    assert not list(history.folder.rglob(".tmp-*"))
    with Image.open(history.load(first).entry.thumbnail) as thumb:  # small: kept as it is
        assert thumb.size == (image.width, image.height)
        assert thumb.convert("RGB").tobytes() == image.rgb
    with Image.open(history.load(wide).entry.thumbnail) as thumb:
        assert thumb.size == (160, 40)


def test_jpeg_images_keep_their_type(tmp_path, history):
    photo = other_image(tmp_path, (50, 30), "JPEG", "photo.jpeg")
    stored = history.load(start(history, photo))
    assert stored.image_path.suffix == ".jpg"
    assert stored.image_path.read_bytes() == photo.read_bytes()


def test_delete_removes_only_files_no_run_uses(image_file, tmp_path, history):
    a1, a2 = start(history, image_file), start(history, image_file)
    b = start(history, other_image(tmp_path))
    path_a, path_b = history.load(a1).image_path, history.load(b).image_path
    thumb_a = history.load(a1).entry.thumbnail
    history.delete([a1, 12345])
    assert path_a.is_file() and thumb_a.is_file()
    with pytest.raises(RunNotFound) as caught:
        history.load(a1)
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, StagewiseError)
    assert "not in the history" in str(caught.value)
    history.record(a1, CandidateFinished(Candidate(Stage.SUMMARY, 0, 0, "x", 1, -1.0,
                                                   "closed")))  # dropped, not an error
    history.delete([a2])
    assert not path_a.exists() and not thumb_a.exists()
    assert path_b.is_file()
    assert [e.id for e in history.entries()] == [b]
    again = start(history, image_file)  # asked again after deleting: stored again
    assert history.load(again).image_path.read_bytes() == image_file.read_bytes()
    history.delete([])


def test_search_matches_question_and_conclusion_ignoring_case(searched, image_file, history):
    red = start(history, image_file, "How many RED circles?")
    percent = start(history, image_file, "Am I 100% sure_of this?")
    street = start(history, image_file, "Which Straße is it?")
    answered = start(history, image_file, "Something else")
    events = searched("stage")
    for event in events:
        history.record(answered, event)
    conclusion = events[-1].result.conclusion
    assert conclusion

    def ids(text: str) -> set[int]:
        return {e.id for e in history.entries(text)}

    assert ids("red CIRCLES") == {red}
    assert ids("%") == {percent} and ids("_") == {percent}
    assert ids("STRASSE") == {street}
    assert ids(conclusion.upper()) >= {answered}
    assert ids("no such text anywhere") == set()
    assert [e.id for e in history.entries()] == [answered, street, percent, red]
    assert [e.id for e in history.entries(limit=2)] == [answered, street]


# --------------------------------------------------------------------------------------------
# Failures


def test_a_full_database_is_reported_and_the_history_keeps_working(image, image_file,
                                                                   history):
    run_id = start(history, image_file)
    db = history._connection()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now answers SQLITE_FULL for real
    big = Candidate(Stage.SUMMARY, 0, 0, "word " * 50_000, 9, -1.0, "closed")
    with pytest.raises(StagewiseError, match="could not save to history: disk full"):
        history.record(run_id, CandidateFinished(big))
    with pytest.raises(StagewiseError, match="disk full"):
        for _ in range(50):  # each new run needs a little room; soon there is none
            start(history, image_file, image=image)
    assert history.load(run_id).result.candidates == ()  # nothing half-written
    db.execute("PRAGMA max_page_count = 1073741823")
    history.record(run_id, CandidateFinished(big))
    assert history.load(run_id).result.candidates == (big,)


def test_a_file_that_cannot_be_written_is_reported(image, image_file, history):
    blocker = history.folder / "images" / image.sha256[:2]
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"not a folder")  # fails for root too
    with pytest.raises(StagewiseError, match="could not save to history"):
        start(history, image_file, image=image)
    assert history.entries() == []  # the run was not saved without its image
    blocker.unlink()
    assert start(history, image_file, image=image)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_reported(image_file, tmp_path):
    folder = tmp_path / "history"
    with History(folder) as history:
        (folder / "images").mkdir()
        (folder / "images").chmod(0o500)
        try:
            with pytest.raises(StagewiseError, match="permission denied"):
                start(history, image_file)
        finally:
            (folder / "images").chmod(0o700)


# --------------------------------------------------------------------------------------------
# Opening


def test_the_database_is_wal_with_a_schema_version(tmp_path, image_file):
    folder = tmp_path / "history"
    with History(folder) as history:
        start(history, image_file)
        db = history._connection()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with History(folder) as again:  # opening again migrates nothing and keeps the runs
        assert len(again.entries()) == 1
    db = sqlite3.connect(folder / "history.sqlite3")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StagewiseError, match="newer version"):
        History(folder)


def test_the_default_folder_is_in_the_data_folder():
    with History() as history:
        assert history.folder == data_dir() / "history"
        assert history.database.is_file()


def test_a_closed_history_refuses_work_and_wrong_bytes_are_refused(image, tmp_path):
    history = History(tmp_path / "history")
    with pytest.raises(ValueError, match="SHA-256"):
        history.start(image, b"other bytes", "x.png", "q", "m", {})
    history.close()
    history.close()
    with pytest.raises(StagewiseError, match="closed"):
        history.entries()


def test_the_app_keeps_a_damaged_database_aside_and_starts_anew(tmp_path):
    folder = tmp_path / "history"
    folder.mkdir()
    garbage = os.urandom(8192)
    (folder / "history.sqlite3").write_bytes(garbage)
    with pytest.raises(StagewiseError, match="not a database"):
        History(folder)
    history = History(folder, recover=True)
    try:
        assert "damaged" in history.notice
        assert history.entries() == []
        kept = [p for p in folder.iterdir() if p.name.startswith("history.sqlite3.damaged-")]
        assert len(kept) == 1 and kept[0].read_bytes() == garbage
    finally:
        history.close()


def test_a_history_that_cannot_open_is_off_but_does_not_stop_the_app(tmp_path):
    folder = tmp_path / "history"
    with History(folder) as history, history._write() as db:
        db.execute("PRAGMA user_version = 99")
    history = History(folder, recover=True)
    try:
        assert history.notice.startswith("History is off:") and "newer" in history.notice
        with pytest.raises(StagewiseError, match="newer version"):
            history.entries()
    finally:
        history.close()


def test_a_file_name_that_is_not_utf8_is_saved_with_replacement_characters(tmp_path,
                                                                            image_file):
    """A name the file system gave as bytes that are not UTF-8 (Python holds them as
    surrogate escapes): SQLite refused the text, and ``ask`` ended in a traceback."""
    name = os.fsdecode(b"caf\xe9 \xff.png")
    with History(tmp_path) as history:
        run_id = history.start(load_image(image_file), image_file.read_bytes(), name,
                               "How many?", os.fsdecode(b"mod\xe8le.gguf"),
                               {"model": Path(os.fsdecode(b"/m/mod\xe8le.gguf"))})
        run = history.load(run_id)
    assert run.image_name == "caf\ufffd \ufffd.png"
    assert run.entry.model == "mod\ufffdle.gguf"
    assert run.settings["model"] == "/m/mod\ufffdle.gguf"


def test_the_database_is_readable_by_its_owner_only_like_the_images(tmp_path, image_file):
    old = os.umask(0o022)
    try:
        with History(tmp_path / "new") as history:
            run_id = history.start(load_image(image_file), image_file.read_bytes(), "a.png",
                                   "How many?", "m", {})
            image = history.load(run_id).image_path
        files = [history.database, image, *history.database.parent.glob("*-wal")]
        assert all(path.stat().st_mode & 0o777 == 0o600 for path in files), [
            (path.name, oct(path.stat().st_mode)) for path in files]
        # one an older version left readable by others is narrowed at the next opening
        history.database.chmod(0o644)
        History(tmp_path / "new").close()
        assert history.database.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
