"""The window's Question → Compare… on the shipped demo model and through a real llama-server,
and a question about several images dropped together (the strip, the history) on a
Qwen2.5-VL-shaped pair with Qwen2's real tokenizer."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from stagewise.desktop.main_window import MainWindow
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.library.demo import demo_pair, example_image
from stagewise.models.reasoning.run_view import RunStatus
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.remote.server import ServerSettings
from stagewise.models.stages import STAGES
from stagewise.models.storage.app_settings import AppSettings
from stagewise.models.storage.history import History
from tests.desktop.test_main_window import ANSWER_MS, drop_files, wait_answer

QUESTION = "How many red circles are there?"


def demo_settings() -> AppSettings:
    pair = demo_pair()
    assert pair is not None
    return AppSettings(model=pair.model, mmproj=pair.mmproj, auto_beam=False,
                       search=SearchSettings(max_stage_tokens=32),
                       engine=EngineSettings(threads=2))


def compare_in(qtbot, window: MainWindow, first: str, second: str):
    drop_files(window.image_pane, [example_image()])
    window.question_box.set_question(QUESTION)
    dialog = window.open_compare()
    dialog.fields[0].setText(first)
    dialog.fields[1].setText(second)
    with qtbot.waitSignal(window.host.worker.compared, timeout=ANSWER_MS) as blocker:
        qtbot.mouseClick(dialog.compare_button, qtbot_left())
        assert window.busy and not dialog.compare_button.isEnabled()
    qtbot.waitUntil(lambda: not window.busy, timeout=ANSWER_MS)
    return dialog, blocker.args[0], blocker.args[1]


def qtbot_left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_compare_on_the_demo_model_shows_two_columns_and_keeps_the_pair(
        qtbot, make_window, tmp_path):
    window = make_window(demo_settings())
    dialog, comparison, ids = compare_in(qtbot, window, "beam=1", "beam=2,select=judge")
    first, second = comparison.results
    assert (first.beam, second.beam) == (1, 2)
    assert second.timings.image_encodes == 0  # one model: B finds the image kept
    assert window.host.worker._session.engine.stats.image_encodes == 1  # on the drop, or by A
    for index, stage in enumerate(STAGES):
        for side, result in enumerate(comparison.results):
            assert dialog.cell_text(index, side) == (result.stages[stage].strip() or "—")
    where = comparison.divergence
    assert dialog.marked_stage() == ("" if where.same else where.stage.title)
    assert dialog.status.text().lower().startswith(where.describe()[:20].lower())
    with History(tmp_path / "history") as history:
        a, b = (history.load(run_id) for run_id in ids)
        assert (a.entry.compared_with, b.entry.compared_with) == (b.entry.id, a.entry.id)
    # selected together, the pair exports as one comparison document
    written = window.export_runs(list(ids), tmp_path / "pair.html")
    assert written is not None and "Stagewise comparison" in written.read_text()
    # the pair comes back from the history: a past answer of it, then Compare…
    dialog.close()
    window.show_past_run(ids[1])
    again = window.open_compare()
    assert [again.cell_text(3, side) for side in (0, 1)] == [
        r.stages[STAGES[3]].strip() or "—" for r in comparison.results]


def test_a_bad_configuration_is_one_line_and_compare_waits(qtbot, make_window):
    window = make_window(demo_settings())
    dialog = window.open_compare()
    dialog.fields[1].setText("beam=4,select=nobody")
    assert not dialog.compare_button.isEnabled()
    assert dialog.problems[1].isVisibleTo(dialog)
    assert "select must be one of" in dialog.problems[1].text()
    assert "\n" not in dialog.problems[1].text()
    dialog.fields[1].setText("beam=4")
    assert dialog.compare_button.isEnabled() and not dialog.problems[1].isVisibleTo(dialog)
    assert not window.compare("beam=1", "beam=2")  # no image yet: it says so
    assert "image" in dialog.status.text()


def test_compare_through_a_remote_llama_server(qtbot, make_window, demo_server):
    settings = AppSettings(server=ServerSettings(demo_server.url, stage_mode=StageMode.NATIVE),
                           auto_beam=False, search=SearchSettings(max_stage_tokens=32))
    window = make_window(settings)
    dialog, comparison, _ = compare_in(qtbot, window, "beam=1", "beam=2")
    assert [r.status for r in comparison.results] == ["finished", "finished"]
    assert all(m.startswith("llama-server") for m in comparison.models)
    assert dialog.cell_text(3, 0) == comparison.results[0].stages[STAGES[3]].strip() or "—"


def picture(path: Path, colour: tuple[int, int, int]) -> Path:
    image = Image.new("RGB", (40, 30), colour)
    image.paste((230, 20, 20), (5, 5, 15, 15))
    image.save(path)
    return path


def test_two_images_dropped_together_are_one_question_with_two_encodes(
        qtbot, make_window, tmp_path):
    from stagewise.models.recipes.real_vocab import qwen_real_vocabulary_pair

    pair = qwen_real_vocabulary_pair("qwen2.5-vl")
    settings = AppSettings(model=pair.model, mmproj=pair.mmproj, auto_beam=False,
                           search=SearchSettings(max_stage_tokens=6),
                           engine=EngineSettings(threads=2, n_ctx=4096))
    window = make_window(settings)
    paths = [picture(tmp_path / "a.png", (20, 200, 20)), picture(tmp_path / "b.png",
                                                                 (20, 20, 200))]
    drop_files(window.image_pane, paths)
    pane = window.image_pane
    assert [image.name for image in pane.images()] == ["a.png", "b.png"]
    assert pane.strip().count() == 2 and pane.strip().isVisibleTo(pane)
    assert "2 images dropped" in pane.message()
    pane.show_image(1)
    assert pane.caption().startswith("image 2 of 2 — b.png")
    window.question_box.set_question("Which has more green?")
    window.ask(window.question_box.question())
    view = wait_answer(qtbot, window)
    assert view.status is RunStatus.FINISHED
    # each image encoded once: on the drop (prepared) or by the answer, never both
    assert window.host.worker._session.engine.stats.image_encodes == 2
    with History(tmp_path / "history") as history:
        [entry] = history.entries()
        stored = history.load(entry.id)
        assert [name for _, name in stored.images] == ["a.png", "b.png"]
    # restoring it brings both images back as the strip
    drop_files(pane, [paths[0]])
    assert pane.strip().isHidden()
    window.show_past_run(entry.id)
    assert [image.name for image in pane.images()] == ["a.png", "b.png"]
