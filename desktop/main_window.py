"""The main window: history | image and question | the four stage cards."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from stagewise.desktop.compare_view import CompareDialog
from stagewise.desktop.demo_notice import DemoNotice
from stagewise.desktop.follow_ups import ThreadView
from stagewise.desktop.formatting import prefix_text, ready_text, seconds_text, sent_text
from stagewise.desktop.heap import freeze_long_lived
from stagewise.desktop.history_panel import HistoryPanel
from stagewise.desktop.image_input import ImageInput
from stagewise.desktop.image_pane import ImagePane
from stagewise.desktop.image_view import MessageBar
from stagewise.desktop.question_box import QuestionBox
from stagewise.desktop.restore_notice import restored_changes, restored_text
from stagewise.desktop.settings_dialog import SettingsDialog
from stagewise.desktop.stage_cards import ReasoningPanel
from stagewise.desktop.threads import import_in_background
from stagewise.desktop.welcome_panel import WelcomePanel
from stagewise.desktop.widgets import (
    ElidedLabel,
    fitted_size,
    frame_margins,
    keep_on_screen,
    plain_label,
    plain_tip,
)
from stagewise.desktop.worker import AskJob, CompareJob, EngineHost, LoadedModel, PrepareJob
from stagewise.models.errors import StagewiseError
from stagewise.models.events import Event, SearchResult
from stagewise.models.reasoning.auto_beam import AUTO_BEAM
from stagewise.models.reasoning.compare import Comparison
from stagewise.models.reasoning.run_view import RunStatus, RunView, StageStatus
from stagewise.models.stages import STAGES, Stage
from stagewise.models.storage.app_settings import AppSettings, save_settings, settings_from_json
from stagewise.models.storage.export import export
from stagewise.models.storage.export_compare import export_comparison
from stagewise.models.storage.export_view import suggested_name
from stagewise.models.storage.history import History
from stagewise.models.storage.model_settings import (
    MODEL_SETTINGS_FILE,
    image_tokens_for,
    remember_image_tokens,
    with_model_image_tokens,
)

if TYPE_CHECKING:  # the model manager (and huggingface_hub) load when first opened
    from stagewise.desktop.batch_window import BatchWindow
    from stagewise.desktop.diagnostics_dialog import DiagnosticsDialog
    from stagewise.desktop.folder_dialog import AskFolderDialog, FolderRequest
    from stagewise.desktop.help_pages import HelpPage
    from stagewise.desktop.model_manager import ModelManager
    from stagewise.desktop.model_setup import ModelSetup
    from stagewise.models.library.installed import InstalledModel
    from stagewise.models.reasoning.search_backend import PrefixReport

RENDER_MS = 33
"""Stage cards are re-rendered at most this often while tokens stream."""

SHUTDOWN_MS = 5000
"""How long closing the window waits for the engine to stop."""

FIRST_SIZE = QSize(1280, 800)
"""The window's size on a first run, less where the screen's usable area is smaller (a
1024 × 640 laptop screen gets the window whole, its frame and title bar included)."""

SETUP_DELAY_MS = 150
"""The first-run panel and the download machinery are set up this long after launch (or
once :data:`MODEL_LIBRARY` is imported, if later)."""

MODEL_LIBRARY = "stagewise.models.library.hub"
"""What the first-run panel and the downloads need that is slow to import (huggingface_hub,
httpx): imported in a thread of its own as the window opens."""

_STATUS_OF_RECORD = {
    "finished": RunStatus.FINISHED,
    "cancelled": RunStatus.CANCELLED,
    "failed": RunStatus.FAILED,
    "interrupted": RunStatus.INTERRUPTED,
    "running": RunStatus.INTERRUPTED,
}

_EXPORT_FILTERS = "Markdown (*.md);;HTML page (*.html);;JSON (*.json)"


class MainWindow(QMainWindow):
    """The Stagewise window. ``settings_path``/``history_folder`` default to the user's."""

    answer_done = Signal(object)  # the RunView of a run that ended (finished, stopped, failed)

    def __init__(self, settings: AppSettings, settings_path: Path | None = None,
                 history_folder: Path | None = None) -> None:
        super().__init__()
        self.settings_path = settings_path
        # kept per model beside the settings (model-settings.json)
        self.model_settings_path = (settings_path.parent / MODEL_SETTINGS_FILE
                                    if settings_path is not None else None)
        self.settings = with_model_image_tokens(settings, self.model_settings_path)
        self.setWindowTitle("Stagewise")
        self.setMinimumSize(760, 480)

        self.history = History(history_folder, recover=True)
        self.host = EngineHost(history_folder, self)
        self.view = RunView()  # the live run
        self.shown = self.view  # what the cards show: the live run or a past one
        self.loaded: LoadedModel | None = None
        self.busy = False
        self._answering = False  # busy with an answer (not a comparison)
        self.batch: BatchWindow | None = None  # the folder being asked about, if any
        self.live_run_id = -1
        self._dirty: set[Stage] = set()
        self._restoring = False  # a past run's image is going in: keep its answer
        self._preparing: PrepareJob | None = None  # the shown image, being made ready
        self.model_setup: ModelSetup | None = None  # made once the window is up
        self.close_question: QMessageBox | None = None  # "Stop the answer?", while asked
        self._asked = ""  # the question last asked (or restored), as the box had it
        self.compare_dialog: CompareDialog | None = None  # made when first opened
        self.shown_run_id = -1  # the past run the cards show (-1: none, or the live one)

        self._build_widgets()
        self._build_menus()
        self._connect()
        self._restore_window_state()
        self.reasoning.set_collapsed_default(settings.stages_collapsed)
        self.reasoning.show_run(self.shown)
        self._load_cancel = self.host.load(settings)
        if self.history.notice:
            self.show_message(self.history.notice)
        self.question_box.edit.setFocus()  # typing at launch writes the question
        # the model library loads huggingface_hub (a few 100 ms): imported off this thread,
        # then set up after the first frame
        self._library_import = import_in_background(MODEL_LIBRARY)
        QTimer.singleShot(SETUP_DELAY_MS, self, self._setup_models_when_imported)

    # -- construction ---------------------------------------------------------------------

    def _build_widgets(self) -> None:
        self.image_pane = ImagePane()
        self.question_box = QuestionBox()
        self.question_box.beam.setValue(self.settings.beam_choice)
        self.message = plain_label()  # a server's error page is text, not markup
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Message")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        self.notice = MessageBar()  # stays until dismissed: a failed download's next steps
        self.notice.setAccessibleName("Notice")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.notice)
        left_layout.addWidget(self.image_pane, 1)
        left_layout.addWidget(self.message)
        self.thread_view = ThreadView(self.question_box.follow_up)
        self.thread_view.set_supported(self.settings.server_settings() is None)
        left_layout.addWidget(self.thread_view)
        left_layout.addWidget(self.question_box)

        self.reasoning = ReasoningPanel()
        self.history_panel = HistoryPanel(self.history)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.history_panel)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.reasoning)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 1)
        self.splitter.setSizes([200, 420, 480])
        container = QWidget()
        layout = QVBoxLayout(container)
        layout.setContentsMargins(8, 8, 8, 4)
        self.welcome = WelcomePanel(container)
        layout.addWidget(self.welcome)
        self.demo_notice = DemoNotice(container)
        layout.addWidget(self.demo_notice)
        layout.addWidget(self.splitter)
        self.setCentralWidget(container)

        bar = self.statusBar()
        self.model_label = plain_label("No model loaded")
        self.model_label.setAccessibleName("Model")
        self.timing_label = ElidedLabel(tooltip=True)  # all of it in the tooltip when narrow
        self.timing_label.setAccessibleName("Timings")
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Progress")
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.beam_label = plain_label()
        self.beam_label.setAccessibleName("Beam")
        bar.addWidget(self.model_label)
        bar.addWidget(self.timing_label, 1)
        bar.addPermanentWidget(self.beam_label)
        bar.addPermanentWidget(self.progress)

        self._render_timer = QTimer(self, singleShot=True, interval=RENDER_MS)
        self._render_timer.timeout.connect(self._render)

    def _build_menus(self) -> None:
        def action(menu: object, text: str, slot: object, shortcut: object = None,
                   tip: str = "") -> QAction:
            act = QAction(text, self)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            if tip:
                act.setStatusTip(tip)
            act.triggered.connect(slot)
            menu.addAction(act)
            return act

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        action(file_menu, "&Open Image…", self.open_image, QKeySequence.StandardKey.Open)
        action(file_menu, "&Paste Image", self.image_pane.paste_from_clipboard,
               QKeySequence.StandardKey.Paste)
        action(file_menu, "Ask About a &Folder…", self.ask_folder, "Ctrl+Shift+O",
               "Ask every image in a folder the same questions, into a CSV or JSONL table")
        file_menu.addSeparator()
        self.export_action = action(file_menu, "&Export Selected…", self.export_selected,
                                    "Ctrl+E", "Export the selected past questions")
        file_menu.addSeparator()
        action(file_menu, "&Quit", self.quit, QKeySequence.StandardKey.Quit)

        ask_menu = bar.addMenu("&Question")
        self.ask_action = action(ask_menu, "&Ask", self._ask_from_box, "Ctrl+Return")
        self.stop_action = action(ask_menu, "&Stop", self.stop, "Esc")
        self.compare_action = action(
            ask_menu, "Co&mpare…", self.open_compare, "Ctrl+Shift+M",
            "Answer the question with two configurations side by side (or show the pair "
            "a past compared answer belongs to)")
        self.stop_action.setEnabled(False)
        action(ask_menu, "&New Question", self.new_question, QKeySequence.StandardKey.New)
        action(ask_menu, "&Copy Answer", self.copy_answer, "Ctrl+Shift+C")
        ask_menu.addSeparator()
        action(ask_menu, "&Wider Beam", lambda: self.question_box.beam.stepUp(), "Ctrl+]")
        action(ask_menu, "&Narrower Beam", lambda: self.question_box.beam.stepDown(), "Ctrl+[")

        view_menu = bar.addMenu("&View")
        action(view_menu, "Zoom &In", self.image_pane.zoom_in, QKeySequence.StandardKey.ZoomIn)
        action(view_menu, "Zoom &Out", self.image_pane.zoom_out,
               QKeySequence.StandardKey.ZoomOut)
        action(view_menu, "&Fit Image", self.image_pane.zoom_fit, "Ctrl+0")
        action(view_menu, "&Actual Size", self.image_pane.zoom_actual, "Ctrl+1")
        self.sent_action = action(view_menu, "Show Image as &Sent", self.image_pane.show_sent,
                                  "Ctrl+Shift+I", "The picture at the size the model was "
                                  "sent it for the answer shown (after any downscaling)")
        self.sent_action.setCheckable(True)
        view_menu.addSeparator()
        self.history_action = action(view_menu, "&History", self._toggle_history, "Ctrl+H")
        self.history_action.setCheckable(True)
        self.history_action.setChecked(True)
        action(view_menu, "&Search History", self._focus_search, QKeySequence.StandardKey.Find)
        self.collapse_action = action(view_menu, "&Collapse Summary, Caption, Reasoning",
                                      self._toggle_collapsed, "Ctrl+Shift+K")
        self.collapse_action.setCheckable(True)
        self.collapse_action.setChecked(self.settings.stages_collapsed)

        settings_menu = bar.addMenu("&Settings")
        action(settings_menu, "&Models…", self.open_models, "Ctrl+M",
               "Download, import and choose models")
        prefs = action(settings_menu, "&Preferences…", self.open_settings,
                       QKeySequence.StandardKey.Preferences)
        if prefs.shortcut().isEmpty():
            prefs.setShortcut(QKeySequence("Ctrl+,"))

        help_menu = bar.addMenu("&Help")
        action(help_menu, "&Getting Started", lambda: self.open_help("started"), None,
               "How to ask a question, in five steps")
        action(help_menu, "&Keyboard Shortcuts", lambda: self.open_help("keys"), "Ctrl+/",
               "Every shortcut of the window")
        action(help_menu, "&Diagnostics…", self.open_diagnostics, None,
               "Versions, what llama.cpp sees on this machine, models, a test answer")
        help_menu.addSeparator()
        action(help_menu, "&About Stagewise", self._about, "F1")

    def open_help(self, page: str) -> HelpPage:
        """Show a help page: "started" (getting started) or "keys" (shortcuts)."""
        from stagewise.desktop.help_pages import GETTING_STARTED, HelpPage, shortcuts_html

        if page == "keys":
            dialog = HelpPage("Keyboard Shortcuts", shortcuts_html(self.menuBar()), self)
        else:
            dialog = HelpPage("Getting Started", GETTING_STARTED, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def _connect(self) -> None:
        w = self.host.worker
        w.model_loading.connect(self._on_model_loading)
        w.model_progress.connect(self._on_model_progress)
        w.model_loaded.connect(self._on_model_loaded)
        w.model_failed.connect(self._on_model_failed)
        w.run_started.connect(self._on_run_started)
        w.events.connect(self._on_events)
        w.run_failed.connect(self._on_run_failed)
        w.run_finished.connect(self._on_run_finished)
        w.notice.connect(self.show_message)
        w.beam_chosen.connect(self._on_beam_chosen)
        w.image_ready.connect(self._on_image_ready)
        w.compare_progress.connect(self._on_compare_progress)
        w.compared.connect(self._on_compared)
        w.compare_failed.connect(self._on_compare_failed)
        self.image_pane.image_changed.connect(self._on_image)
        self.demo_notice.get_model.connect(self.open_models)
        self.question_box.ask_requested.connect(self.ask)
        self.question_box.stop_requested.connect(self.stop)
        self.question_box.attach_requested.connect(self.open_image)
        self.question_box.beam_changed.connect(self._on_beam)
        self.question_box.image_pasted.connect(self.image_pane.paste_mime)
        self.history_panel.run_selected.connect(self.show_past_run)
        self.history_panel.export_requested.connect(self.export_runs)
        self.history_panel.deleted.connect(self._on_deleted)

    # -- asking ---------------------------------------------------------------------------

    def ask(self, question: str) -> bool:
        """Ask ``question`` about the current image; False (with a message) if it cannot."""
        image = self.image_pane.current()
        if self.busy:
            self.show_message("An answer is already being written: stop it first.")
            return False
        if self.batch_running:
            self.show_message("A folder is being asked about: stop it first.")
            return False
        if image is None:
            self.show_message("Drop, paste or open an image first.")
            return False
        if not question.strip():
            self.show_message("Type a question first.")
            return False
        self.hide_message()
        self._asked = question.strip()
        self.view = RunView()
        self.shown = self.view
        self.shown_run_id = -1
        self.reasoning.show_run(self.shown)
        self._set_busy(True, answering=True)
        self.statusBar().clearMessage()  # "image ready" is past once asked; timings follow
        self.timing_label.set_full_text("Reading the image…")
        self.live_run_id = -1
        job = AskJob(image.data, image.name, question.strip(), self.settings,
                     seed=random.randrange(2**31),
                     **self.thread_view.job_fields(question.strip()),
                     more_images=self._more_images())
        self.host.ask(job)
        return True

    def _more_images(self) -> tuple[tuple[bytes, str], ...]:
        """The further images of a question about several (the pane's strip), in order."""
        return tuple((each.data, each.name) for each in self.image_pane.images()[1:])

    # -- comparing ------------------------------------------------------------------------

    def open_compare(self) -> CompareDialog:
        """Question → Compare…: the two-column view. When the cards show a past answer that
        is one of a compared pair, the pair is shown."""
        if self.compare_dialog is None:
            self.compare_dialog = CompareDialog(self.settings.search_settings(), self)
            self.compare_dialog.compare_requested.connect(self.compare)
            self.compare_dialog.stop_requested.connect(self.stop)
        dialog = self.compare_dialog
        dialog.set_base(self.settings.search_settings())
        if self.shown_run_id >= 0 and not self.busy:
            self._show_stored_pair(self.shown_run_id)
        dialog.show()
        dialog.raise_()
        return dialog

    def _show_stored_pair(self, run_id: int) -> None:
        assert self.compare_dialog is not None
        try:
            first = self.history.load(run_id)
            partner = first.entry.compared_with
            if partner is None:
                return
            second = self.history.load(partner)
        except StagewiseError as error:
            self.compare_dialog.status.setText(f"The compared pair cannot be shown: {error}")
            return
        if second.entry.id < first.entry.id:
            first, second = second, first
        self.compare_dialog.show_pair(first.result, second.result,
                                      (first.entry.model, second.entry.model))

    def compare(self, first: str, second: str) -> bool:
        """Answer the question in the box about the current image(s) with two
        configurations; False (with a message) if it cannot start."""
        image = self.image_pane.current()
        question = self.question_box.question().strip()
        dialog = self.open_compare() if self.compare_dialog is None else self.compare_dialog
        problem = ("An answer is already being written: stop it first." if self.busy else
                   "Drop, paste or open an image first." if image is None else
                   "Type a question first." if not question else "")
        if problem:
            dialog.status.setText(problem)
            return False
        assert image is not None
        self._set_busy(True)
        dialog.set_busy(True, "Answering with A, then B…")
        self.host.compare(CompareJob(image.data, image.name, question, (first, second),
                                     self.settings, more_images=self._more_images()))
        return True

    @Slot(int, str)
    def _on_compare_progress(self, side: int, text: str) -> None:
        if self.compare_dialog is not None:
            self.compare_dialog.set_progress(side, text)

    @Slot(object, object)
    def _on_compared(self, comparison: Comparison, run_ids: tuple[int, ...]) -> None:
        self._set_busy(False)
        if self.compare_dialog is not None:
            self.compare_dialog.show_comparison(comparison)
        self.history_panel.refresh(select=run_ids[-1] if run_ids and run_ids[-1] >= 0
                                   else None)

    @Slot(str)
    def _on_compare_failed(self, message: str) -> None:
        self._set_busy(False)
        if self.compare_dialog is not None:
            self.compare_dialog.set_failed(message)

    def stop(self) -> None:
        if self.busy:
            self.timing_label.set_full_text("Stopping…")
        self.host.stop()

    def new_question(self) -> None:
        if self.busy:
            return
        self.question_box.set_question("")
        self.question_box.edit.setFocus()
        self.view = RunView()
        self.shown = self.view
        self.reasoning.show_run(self.shown)
        self.history_panel.list.clearSelection()

    def copy_answer(self) -> None:
        text = self.shown.conclusion
        if text:
            QGuiApplication.clipboard().setText(text)
            self.statusBar().showMessage("Answer copied", 2000)

    def _ask_from_box(self) -> None:
        self.ask(self.question_box.question())

    def _set_busy(self, busy: bool, *, answering: bool = False) -> None:
        """``answering``: the status bar's bar counts the answer's chosen stages."""
        self.busy = busy
        self._answering = busy and answering
        self.question_box.set_busy(busy)
        self.stop_action.setEnabled(busy)
        self.ask_action.setEnabled(not busy)
        self._show_progress()
        self.progress.setVisible(busy)

    def _show_progress(self) -> None:
        """While busy, the status bar's bar: an answer's chosen stages out of four, or (a
        comparison) a busy indicator. An answer's bar does not animate: the busy indicator
        repainted the window 60 times a second, each time waiting for a core llama.cpp
        keeps busy (``bench/gui_latency.py``)."""
        if not self._answering:
            self.progress.setRange(0, 0)
            self.progress.setToolTip("")
            return
        chosen = sum(v.status is StageStatus.CHOSEN for v in self.view.stages.values())
        if (self.progress.maximum(), self.progress.value()) == (len(STAGES), chosen):
            return
        # QProgressBar repaints itself at once on a new value (1-2 ms, at a stage's end when
        # the window has the most to do); with updates off it joins the window's next paint
        self.progress.setUpdatesEnabled(False)
        self.progress.setRange(0, len(STAGES))
        self.progress.setValue(chosen)
        self.progress.setUpdatesEnabled(True)
        self.progress.setToolTip(f"{chosen} of {len(STAGES)} stages written and chosen")

    # -- worker signals -------------------------------------------------------------------

    @Slot(str)
    def _on_model_loading(self, name: str) -> None:
        self.loaded = None
        self.model_label.setText(f"Loading {name}…")
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.show()

    @Slot(float)
    def _on_model_progress(self, value: float) -> None:
        if self.progress.maximum():
            self.progress.setValue(round(value * 100))

    @Slot(object)
    def _on_model_loaded(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        freeze_long_lived()  # full collections while answers stream: 36 ms -> a few
        if loaded.server:  # the name says which server answers
            self.model_label.setText(loaded.name)
            self.model_label.setToolTip(plain_tip(f"Answers come from {loaded.server}; "
                                                  "Preferences → Remote model changes it."))
        else:
            where = "GPU" if loaded.gpu_offload else "CPU"
            self.model_label.setText(f"{loaded.name} · {where}")
            self.model_label.setToolTip(plain_tip(f"{loaded.model}\n{loaded.mmproj}\n"
                                                  f"loaded in {loaded.seconds:.1f} s"))
        self.demo_notice.show_for(bool(loaded.note) and self.welcome.isHidden())
        if loaded.note:  # the built-in model: say what it can do
            self.model_label.setText(f"{loaded.name} · {where} · built-in model")
            self.model_label.setToolTip(
                f"{loaded.note[0].upper()}{loaded.note[1:]}.\n"
                "Download or import a real model in Settings → Models.")
        if not self.busy:
            self.progress.hide()
        else:
            self._show_progress()

    @Slot(str)
    def _on_model_failed(self, message: str) -> None:
        self.model_label.setText("No model loaded")
        if not self.busy:
            self.progress.hide()
        self.show_message(f"The model could not be loaded: {message}")

    @Slot(int)
    def _on_run_started(self, run_id: int) -> None:
        self.live_run_id = run_id
        self.history_panel.refresh(select=run_id, repair=False)

    @Slot(list)
    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            self._dirty |= self.view.apply(event)
        if self.shown is self.view and not self._render_timer.isActive():
            self._render_timer.start()

    def _render(self) -> None:
        if self.shown is self.view and self._dirty:
            self.reasoning.update_stages(self.view, self._dirty)
        if self._answering:
            self._show_progress()
        self._dirty = set()
        self._show_timings(self.view)

    @Slot(str, bool)
    def _on_run_failed(self, message: str, cancelled: bool) -> None:
        self.view.end(RunStatus.CANCELLED if cancelled else RunStatus.FAILED, message)
        self._end_run()
        if cancelled:
            self.statusBar().showMessage("Stopped before the answer began", 4000)
        else:
            self.show_message(f"The answer failed: {message}")

    @Slot(object)
    def _on_run_finished(self, result: SearchResult) -> None:
        self._end_run()
        if result.status == "cancelled":
            self.statusBar().showMessage("Stopped; what was written is kept", 4000)

    def _end_run(self) -> None:
        self.thread_view.answered(self.live_run_id, self.view)
        self._render_timer.stop()
        self._dirty = set(STAGES)
        self._render()
        self._set_busy(False)
        self.history_panel.refresh(select=self.live_run_id if self.live_run_id >= 0 else None)
        self.answer_done.emit(self.view)

    def _show_timings(self, view: RunView) -> None:
        parts = [f"{v.stage.title} {seconds_text(v.seconds)}" for v in view.stages.values()
                 if v.seconds is not None]
        if view.result is not None:
            t = view.result.timings
            self.image_pane.set_sent(t.image_size, t.image_tokens)
            parts.append(f"total {seconds_text(t.total_s)}")
            if t.tokens_per_s:
                parts.append(f"{t.tokens_per_s:.0f} tokens/s")
            if prefix := prefix_text(t):
                parts.append(prefix)
            if sent := sent_text(t):
                parts.append(sent)
        elif view.status is RunStatus.RUNNING:
            active = [v.stage.title for v in view.stages.values()
                      if v.status.value in ("sampling", "judging")]
            if active:
                parts.append(f"{', '.join(active)}…")
        if view.error:
            parts.append("failed")
        self.timing_label.set_full_text(" · ".join(parts))

    # -- image ----------------------------------------------------------------------------

    def open_image(self) -> None:
        """File → Open Image…: one image, or several chosen together for one question."""
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Open Image", "",
            "Images (*.png *.jpg *.jpeg *.gif *.webp *.bmp *.tif *.tiff *.ppm *.ico *.qoi "
            "*.jp2 *.avif);;All files (*)")
        if len(paths) == 1:
            self.image_pane.open_file(Path(paths[0]))
        elif paths:
            self.image_pane.open_files([Path(p) for p in paths])

    def _on_image(self, image: ImageInput | None) -> None:
        """A new image starts a new question: the previous image's answer goes, and the
        keyboard goes to the question (a past run's own image, restored, keeps its run).
        Either way the engine makes the image ready for a question at once."""
        self.question_box.set_image_ready(image is not None)
        self._prepare(image)
        if image is None or self._restoring:
            return
        self.thread_view.new_image()  # a new image starts a new thread
        self.shown_run_id = -1
        if not self.busy:
            self.view = RunView()
            self.shown = self.view
            self.reasoning.show_run(self.shown)
            self._show_timings(self.view)
            self.history_panel.list.clearSelection()
            self.hide_message()
        self.question_box.edit.setFocus()
        if self.question_box.question() and self.question_box.question() == self._asked:
            # the question asked about the last image: typing replaces it, Enter asks it
            # again; one typed since (then the image attached) stays as it is
            self.question_box.edit.selectAll()

    def _prepare(self, image: ImageInput | None) -> None:
        """Have the engine encode ``image`` before its question (None: stop preparing)."""
        if image is None:
            self.host.cancel_preparing()
            self._preparing = None
            return
        self._preparing = self.host.prepare(image.data, image.name, self.settings,
                                            self._more_images())
        self.image_pane.set_readiness("preparing…")

    @Slot(object, object)
    def _on_image_ready(self, job: PrepareJob, report: PrefixReport) -> None:
        if job is not self._preparing:
            return  # an image shown before this one
        self.image_pane.set_readiness("ready to ask" if report.ready else "")
        if report.ready and not self.busy:  # once asked, the timings say where it came from
            self.statusBar().showMessage(ready_text(report), 8000)

    # -- a folder -------------------------------------------------------------------------

    @property
    def batch_running(self) -> bool:
        """Whether a folder is being asked about."""
        return self.batch is not None and self.batch.running

    def ask_folder(self) -> AskFolderDialog:
        """File → Ask About a Folder…: the dialog, open (window-modal); its Ask starts the
        folder (:meth:`start_folder`)."""
        from stagewise.desktop.folder_dialog import AskFolderDialog

        dialog = AskFolderDialog(self, questions=self.question_box.question().strip())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._start_requested(dialog))
        dialog.open()
        return dialog

    def _start_requested(self, dialog: AskFolderDialog) -> None:
        request = dialog.request()
        if request is not None:
            self.start_folder(request)

    def start_folder(self, request: FolderRequest) -> BatchWindow | None:
        """Ask every file of ``request``'s folder its questions on the engine thread, in a
        window of its own with the progress, Stop and the table of rows; None (with a
        message) while an answer or another folder is under way."""
        from stagewise.desktop.batch_window import BatchWindow
        from stagewise.desktop.worker import FolderJob
        from stagewise.models.batch import read_rows

        if self.busy or self.batch_running:
            self.show_message("An answer is being written: stop it first.")
            return None
        window = BatchWindow(request.folder, request.out, self)
        if request.out.exists():  # a file that cannot be used: the run itself says why
            with contextlib.suppress(StagewiseError):
                window.show_rows(read_rows(request.out))
        job = FolderJob(request.folder, request.questions, request.out, self.settings)
        w = self.host.worker
        links = [(w.folder_started, window.run_started),
                 (w.folder_progress, window.run_progress), (w.folder_row, window.add_row),
                 (w.folder_finished, window.run_finished), (w.folder_failed, window.run_failed)]
        for signal, slot in links:
            signal.connect(slot)

        def ended() -> None:  # in this thread: the window's own signal
            for signal, slot in links:
                signal.disconnect(slot)
            self.history_panel.refresh()

        window.ended.connect(ended)
        window.stop_requested.connect(job.cancel.set)
        window.open_run.connect(self.show_past_run)
        window.rejected.connect(job.cancel.set)  # closing the window stops the folder
        self.batch = window
        self.host.ask_folder(job)
        window.show()
        return window

    # -- history --------------------------------------------------------------------------

    def show_past_run(self, run_id: int) -> None:
        """Restore a saved run: its image, question and every stage, candidate and verdict."""
        if run_id == self.live_run_id and self.busy:
            self.shown = self.view
            self.reasoning.show_run(self.shown)
            return
        if self.busy:
            self.statusBar().showMessage("Stop the answer to look at past questions", 3000)
            return
        try:
            stored = self.history.load(run_id)
            data = stored.image_path.read_bytes()
            more = [(path.read_bytes(), name) for path, name in stored.more_images]
        except (StagewiseError, OSError) as error:
            self.show_message(f"That question cannot be restored: {error}")
            return
        view = RunView.from_result(stored.result, _STATUS_OF_RECORD[stored.entry.status],
                                   stored.error)
        self._restoring = True
        try:
            self.image_pane.set_image_bytes(data, stored.image_name, more)
        finally:
            self._restoring = False
        self.shown_run_id = run_id
        self.question_box.set_question(stored.entry.question)
        self._asked = self.question_box.question()
        self._restore_thread(run_id)
        changed = restored_text(self._restore_search(stored.settings))
        self.view = self.shown = view
        self.reasoning.show_run(view)
        self._show_timings(view)
        said = [changed] if changed else []
        if stored.error:
            said.insert(0, f"This answer failed: {stored.error}")
        elif view.status is RunStatus.INTERRUPTED:
            said.insert(0, "This answer was interrupted when Stagewise closed.")
        if said:
            self.show_message("\n".join(said))
        else:
            self.hide_message()

    def _restore_thread(self, run_id: int) -> None:
        """Show the questions of the past run's thread; a follow-up goes on from them."""
        try:
            self.thread_view.restore(self.history.thread(run_id))
        except StagewiseError:
            self.thread_view.new_image()

    def _restore_search(self, saved: dict[str, object]) -> list[str]:
        """Ask again as the past run was asked: its search (beam, selection, strategy,
        sampling, budgets; the scorer model stays the current one). Saved settings that no
        longer validate, or a run saved without them, leave the search as it is; runs saved
        before settings version 3 (flat) are read through the settings' migrations.

        Returns:
            What changed, for the window to say (:func:`restored_changes`).
        """
        if not isinstance(saved.get("search"), dict) and "beam" not in saved:
            return []
        restored, problems, _ = settings_from_json(saved)
        if problems:
            return []
        search = dataclasses.replace(restored.search,
                                     scorer_model=self.settings.search.scorer_model)
        changes = restored_changes(self.settings.search, self.settings.auto_beam, search)
        self.settings = dataclasses.replace(self.settings, search=search, auto_beam=False)
        self.question_box.beam.setValue(search.beam)  # the width it was asked with
        return changes

    def export_selected(self) -> None:
        self.export_runs(self.history_panel.selected_ids())

    def export_runs(self, ids: list[int], path: Path | None = None) -> Path | None:
        """Export saved runs; asks for a file when ``path`` is None. The two runs of a
        compared pair, selected together, export as one comparison document."""
        if not ids:
            self.show_message("Select one or more past questions to export.")
            return None
        try:
            runs = [self.history.load(run_id) for run_id in ids]
            if path is None:
                name, _ = QFileDialog.getSaveFileName(self, "Export", suggested_name(runs),
                                                      _EXPORT_FILTERS)
                if not name:
                    return None
                path = Path(name)
            if len(runs) == 2 and runs[0].entry.compared_with == runs[1].entry.id:
                first, second = sorted(runs, key=lambda run: run.entry.id)
                written = export_comparison(first, second, path)
            else:
                written = export(runs, path)
        except (StagewiseError, OSError) as error:
            self.show_message(f"Export failed: {error}")
            return None
        self.statusBar().showMessage(f"Exported {len(ids)} to {written}", 4000)
        return written

    def _on_deleted(self, ids: list[int]) -> None:
        self.thread_view.forget(ids)
        if self.shown is not self.view or self.live_run_id in ids:
            self.new_question()

    def _toggle_history(self) -> None:
        self.history_panel.setVisible(self.history_action.isChecked())

    def _focus_search(self) -> None:
        self.history_action.setChecked(True)
        self.history_panel.show()
        self.history_panel.search.setFocus()

    # -- settings -------------------------------------------------------------------------

    def open_models(self) -> ModelManager:
        """Open the model manager (a download it starts goes on after it closes)."""
        from stagewise.desktop.model_manager import ModelManager

        setup = self.setup_models()
        manager = ModelManager(setup.library, setup.catalogue, setup.hardware,
                               current=self.loaded.model if self.loaded else None,
                               downloads=setup.downloads, parent=self)
        manager.model_chosen.connect(self.use_model)
        manager.server_requested.connect(manager.close)
        manager.server_requested.connect(lambda: self.open_settings(remote=True))
        manager.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        manager.open()
        return manager

    def _setup_models_when_imported(self) -> None:
        """:meth:`setup_models` once the model library is imported (checked every
        :data:`SETUP_DELAY_MS`, so that this thread never waits for the import)."""
        if self._library_import.is_alive():
            QTimer.singleShot(SETUP_DELAY_MS, self, self._setup_models_when_imported)
            return
        self.setup_models()

    def setup_models(self) -> ModelSetup:
        """The first-run panel and the background download (made on first use)."""
        if self.model_setup is None:
            from stagewise.desktop.model_setup import ModelSetup

            self.model_setup = ModelSetup(self)
        return self.model_setup

    def use_model(self, model: InstalledModel) -> None:
        """Answer with this installed model from now on (with its own image-token cap)."""
        tokens = image_tokens_for(model.model, self.model_settings_path) or 0
        engine = dataclasses.replace(self.settings.engine, image_tokens=tokens)
        self.apply_settings(dataclasses.replace(
            self.settings, model=model.model, mmproj=model.mmproj, engine=engine,
            server=dataclasses.replace(self.settings.server, url="")))

    def open_settings(self, *, remote: bool = False) -> None:
        """Open Preferences; ``remote`` starts at the remote model, switched on."""
        dialog = SettingsDialog(self.settings, self,
                                model_settings_path=self.model_settings_path)
        if remote:
            dialog.remote_group.enabled.setChecked(True)
            dialog.remote_group.url.setFocus()
        if dialog.exec():
            settings = dialog.settings()
            try:  # the image-token cap is kept for the model it was set for
                remember_image_tokens(settings.model, settings.engine.image_tokens,
                                      self.model_settings_path)
            except StagewiseError as error:
                self.show_message(f"The image-token setting is not kept: {error}")
            self.apply_settings(settings)

    def apply_settings(self, settings: AppSettings) -> None:
        """Use new settings from now on (and load another model if they name one)."""
        old = self.settings
        self.settings = settings
        self.question_box.beam.setValue(settings.beam_choice)
        self.reasoning.set_collapsed_default(settings.stages_collapsed)
        self.collapse_action.setChecked(settings.stages_collapsed)
        self.thread_view.set_supported(settings.server_settings() is None)
        self._save_settings()
        changed = ((old.model, old.mmproj, old.server)
                   != (settings.model, settings.mmproj, settings.server))
        if changed or old.engine_settings() != settings.engine_settings():
            self._load_cancel = self.host.load(settings)  # runs after a running answer
            self._prepare(self.image_pane.current())  # for the model loaded next
        if self.model_setup is not None:
            self.model_setup.refresh()  # a real model now: no first-run panel

    def _on_beam_chosen(self, reason: str) -> None:
        """Beam "auto" chose a width: the status bar says which and why."""
        head, _, why = reason.partition(": ")
        self.beam_label.setText(head)
        self.beam_label.setToolTip(why or head)

    def _on_beam(self, beam: int) -> None:
        if beam != AUTO_BEAM:
            self.beam_label.clear()  # a set width always wins
        if beam != self.settings.beam_choice:
            self.settings = self.settings.with_beam_choice(beam)

    def _toggle_collapsed(self) -> None:
        collapsed = self.collapse_action.isChecked()
        self.settings = dataclasses.replace(self.settings, stages_collapsed=collapsed)
        self.reasoning.set_collapsed_default(collapsed)
        self.reasoning.show_run(self.shown)

    def _save_settings(self) -> None:
        try:
            save_settings(self.settings, self.settings_path)
        except (StagewiseError, OSError) as error:
            self.show_message(f"Settings could not be saved: {error}")

    def _restore_window_state(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        else:  # room for the window frame and title bar on the screen
            frame = frame_margins(self)
            self.resize(fitted_size(FIRST_SIZE, self.screen().availableGeometry().size(),
                                    frame))
        keep_on_screen(self)  # a saved size from a larger screen is fitted too
        if self.settings.window_state:
            self.splitter.restoreState(QByteArray.fromBase64(self.settings.window_state.encode()))

    # -- messages -------------------------------------------------------------------------

    @Slot(str)
    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    def hide_message(self) -> None:
        """Hide the message line (a new image, question or run makes it stale); a notice
        (:meth:`show_notice`) stays until dismissed."""
        self.message.hide()

    def show_notice(self, text: str) -> None:
        """Show ``text`` until it is dismissed, its web addresses as links: what the person
        has to act on (a failed download's next steps), which a new image must not hide."""
        self.notice.show_message(text, warning=True, links=True)

    def open_diagnostics(self) -> DiagnosticsDialog:
        """Show ``stagewise doctor``'s report (for bug reports); returns the dialog."""
        from stagewise.desktop.diagnostics_dialog import DiagnosticsDialog

        dialog = DiagnosticsDialog(self.settings, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def _about(self) -> None:
        QMessageBox.about(
            self, "About Stagewise",
            "<b>Stagewise</b><br>Answers questions about images in four visible stages "
            "(Summary, Caption, Reasoning, Conclusion) with a local vision model, "
            "sampling candidates per stage and keeping the best (LLaVA-CoT).<br><br>"
            "Everything runs on this computer; nothing is sent anywhere.")

    # -- closing --------------------------------------------------------------------------

    def quit(self) -> bool:
        """File → Quit: close, asking first while an answer is being written; whether the
        window closed."""
        return self.may_close() and self.close()

    def may_close(self) -> bool:
        """Whether the person lets the window close: while an answer is being written they
        are asked (:attr:`close_question` is the box, for tests to answer)."""
        if not self.busy:
            return True
        box = QMessageBox(QMessageBox.Icon.Question, "Stop the answer?",
                          "An answer is still being written. Stop it and close Stagewise? "
                          "What it wrote so far is kept in the history.",
                          QMessageBox.StandardButton.NoButton, self)
        stop = box.addButton("Stop and Close", QMessageBox.ButtonRole.AcceptRole)
        keep = box.addButton("Keep Writing", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        self.close_question = box
        try:
            box.exec()
            return box.clickedButton() is stop
        finally:
            self.close_question = None
            box.deleteLater()

    def closeEvent(self, event: QCloseEvent) -> None:
        # the window manager's close button asks first; a close from code (Ctrl+C in the
        # terminal, the self-test, Quit after asking) does not
        if event.spontaneous() and not self.may_close():
            event.ignore()
            return
        self.settings = dataclasses.replace(
            self.settings,
            window_geometry=bytes(self.saveGeometry().toBase64()).decode(),
            window_state=bytes(self.splitter.saveState().toBase64()).decode(),
        )
        self._save_settings()
        self._render_timer.stop()
        self._library_import.join(SHUTDOWN_MS / 1000)
        if self.model_setup is not None:
            self.model_setup.shut_down()
        self.host.shut_down(SHUTDOWN_MS)
        self.history.close()
        event.accept()

    @property
    def engine_stopped(self) -> bool:
        return not self.host.thread.isRunning()



