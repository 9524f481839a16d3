"""The window answering through a remote model: a real llama-server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stagewise.desktop.main_window import MainWindow
from stagewise.models.build.llama_server import RunningServer, serve
from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.library.demo import demo_pair, example_image
from stagewise.models.reasoning.run_view import RunStatus, RunView
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.remote.server import ServerSettings
from stagewise.models.stages import STAGES
from stagewise.models.storage.app_settings import AppSettings
from tests.desktop.test_main_window import ANSWER_MS


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RunningServer]:
    pair = demo_pair()
    assert pair is not None
    with serve(pair.model, pair.mmproj, tmp_path_factory.mktemp("server"), slots=2) as running:
        yield running


def test_the_window_answers_through_a_remote_model(qtbot, server, tmp_path):
    settings = AppSettings(server=ServerSettings(server.url, stage_mode=StageMode.NATIVE),
                           search=SearchSettings(beam=2, max_stage_tokens=48), auto_beam=False)
    window = MainWindow(settings, settings_path=tmp_path / "settings.json",
                        history_folder=tmp_path / "history")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=ANSWER_MS)
    assert window.model_label.text() == f"llama-server at {server.url}"
    window.image_pane.open_file(example_image())
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        window.ask("How many red circles are there?")
    view: RunView = blocker.args[0]
    assert view.status is RunStatus.FINISHED
    for stage in STAGES:
        assert view.stages[stage].text
        assert view.stages[stage].text in window.reasoning.card(stage).text_shown()
        assert len(view.stages[stage].segments[-1].candidates) == 2
    # the history says which server answered
    entry, = window.history.entries()
    assert entry.model == f"llama-server at {server.url}"
    # a server holds no thread: no follow-up is offered after the answer
    follow_up = window.question_box.follow_up
    assert not follow_up.isEnabled() and not follow_up.isChecked()
    assert "server" in follow_up.toolTip()
    window.close()
