"""Real runs of the tiny model fed to a real ReasoningPanel: shared by the panel's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from stagewise.desktop.stage_cards import ReasoningPanel
from stagewise.models.events import Event, RunStarted
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.images import PreparedImage
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.run_view import RunView
from stagewise.models.reasoning.search import StageSearch
from stagewise.models.reasoning.search_settings import SearchSettings

Search = Callable[..., list[Event]]
Hook = Callable[[Event, RunView], None]


def search_runner(engine: Engine, image: PreparedImage, question: str,
                  **defaults: object) -> Search:
    """Events of a real search with ``defaults`` (beam 2, 8 tokens a stage, judge unless
    given) and the settings of each call; each setting is run once."""
    cache: dict[tuple[tuple[str, object], ...], list[Event]] = {}
    base = {"beam": 2, "max_stage_tokens": 8, "select": "judge", **defaults}

    def run(**settings: object) -> list[Event]:
        key = tuple(sorted(settings.items()))
        if key not in cache:
            chosen = {**base, **settings}
            search = StageSearch(LlamaBackend(engine), SearchSettings(**chosen))  # type: ignore[arg-type]
            cache[key] = list(search.run(image, question))
        return cache[key]

    return run


def shown_panel(qtbot: QtBot, width: int, height: int) -> ReasoningPanel:
    """A ReasoningPanel of this size, shown and exposed."""
    widget = ReasoningPanel()
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def stream(panel: ReasoningPanel, events: Iterable[Event], after: Hook | None = None, *,
           lay_out: bool = True) -> RunView:
    """Feed ``events`` to a RunView one by one as the window does, updating the panel (and,
    with ``lay_out``, letting Qt lay out after each)."""
    view = RunView()
    panel.show_run(view)
    for event in events:
        changed = view.apply(event)
        if isinstance(event, RunStarted):
            panel.show_run(view)
        else:
            panel.update_stages(view, changed)
        if lay_out:
            QApplication.processEvents()
        if after is not None:
            after(event, view)
    return view
