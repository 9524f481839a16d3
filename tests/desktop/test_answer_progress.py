"""While an answer streams, the status bar's bar counts its chosen stages, without
animating: the busy indicator repainted the window 60 times a second while llama.cpp kept
every core busy (``bench/gui_latency.py``: the window's thread ran 7.5% of a core during a
3B model's answer with it, 5% without)."""

from __future__ import annotations

from pathlib import Path

from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.stages import STAGES
from stagewise.models.storage.app_settings import AppSettings

ANSWER_MS = 180_000
EXAMPLE = Path(__file__).parents[2] / "models" / "data" / "example.png"


def test_the_bar_counts_the_chosen_stages_and_goes_when_the_answer_is_done(
        qtbot, tiny_pair, make_window):
    settings = AppSettings(model=tiny_pair.model, mmproj=tiny_pair.mmproj, auto_beam=False,
                           search=SearchSettings(beam=2, max_stage_tokens=8, select="logprob"),
                           engine=EngineSettings(threads=2, n_ctx=4096))
    window = make_window(settings)
    window.image_pane.open_file(EXAMPLE)
    values: list[int] = []
    window.progress.valueChanged.connect(values.append)

    assert window.ask("How many red circles?")
    assert window.progress.isVisibleTo(window)
    assert (window.progress.minimum(), window.progress.maximum()) == (0, len(STAGES))
    assert window.progress.value() == 0
    assert window.progress.toolTip() == f"0 of {len(STAGES)} stages written and chosen"
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS):
        pass

    assert values == sorted(values) and values[-1] == len(STAGES)  # one stage after another
    assert not window.progress.isVisibleTo(window)
