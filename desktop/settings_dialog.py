"""The settings dialog: model files, search, hardware and display.

:class:`SettingsDialog` edits an :class:`~stagewise.models.storage.app_settings.AppSettings` and
hands the edited copy back from :meth:`SettingsDialog.settings`; it neither reads nor saves
the settings file, the caller does. Model files are checked as soon as they are
chosen (the GGUF header only, a fraction of a second) and a problem is shown under
the field; OK stays disabled, with a line saying why, until both files are usable.

The file pickers call :meth:`SettingsDialog.set_model_file` and
:meth:`SettingsDialog.set_projector_file`, which tests call directly.

The groups sit on three pages (Model, Answers, This computer), each scrolling when the
screen is smaller than it, so the dialog and its buttons fit a 1024 × 640 screen. Only what
applies to this machine and build is offered (:class:`BuildOffers`): no GPU layers on a
CPU-only llama.cpp, no AMX box on a CPU without AMX.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from stagewise.desktop.remote_model_group import RemoteModelGroup
from stagewise.desktop.widgets import (
    fit_to_screen,
    keep_on_screen,
    muted_label,
    plain_label,
    plain_tip,
)
from stagewise.models.errors import ModelFileError, StagewiseError
from stagewise.models.inference.engine_settings import (
    AUTO_CTX,
    FALLBACK_CTX,
    IMAGE_TOKENS,
    N_CTX,
    PREFIX_CACHE,
    THREADS,
)
from stagewise.models.inference.engine_settings import GPU_LAYERS as GPU_LAYER_RANGE
from stagewise.models.inference.gguf_check import check_pair, check_projector, check_text_model
from stagewise.models.inference.sampling_settings import TEMPERATURE, TOP_P
from stagewise.models.library.files import find_mmproj
from stagewise.models.reasoning.auto_beam import AUTO_BEAM
from stagewise.models.reasoning.search_settings import BEAM, MAX_STAGE_TOKENS
from stagewise.models.reasoning.selections import SELECTIONS
from stagewise.models.reasoning.strategies import STRATEGIES, default_selection
from stagewise.models.storage.app_settings import SCHEMA_VERSION, AppSettings
from stagewise.models.storage.model_settings import image_tokens_for

__all__ = ["DEMO_PLACEHOLDER", "GPU_AUTO", "GPU_CPU", "GPU_LAYERS", "BuildOffers",
           "SettingsDialog"]

GPU_AUTO, GPU_CPU, GPU_LAYERS = range(3)  # rows of the GPU layers combo
GGUF_FILTER = "GGUF model files (*.gguf);;All files (*)"
_DEFAULT_GPU_LAYER_COUNT = 32
DEMO_PLACEHOLDER = "Built-in demo model"
DEMO_NOTE = ("The built-in demo model knows only pictures of coloured circles, squares and "
             "triangles; choose a real model's file, or get one in Settings → Models.")
NO_GPU_TEXT = "CPU only: this build of llama.cpp cannot use a GPU"


@dataclass(frozen=True)
class BuildOffers:
    """What this machine and this llama.cpp build offer, so Preferences shows only that.

    Attributes:
        gpu_offload: The build can put layers on a GPU (``llama_supports_gpu_offload``).
        amx: The CPU backend offers its AMX weight buffers: the build has them and the CPU
            has AMX (Intel Sapphire Rapids and later) with the kernel's leave to use it.
    """

    gpu_offload: bool
    amx: bool

    @classmethod
    def detect(cls) -> BuildOffers:
        """Ask the llama.cpp this process loads."""
        from stagewise.models.inference.cpu_buffers import AMX_BUFFER, offered_extra_buffers
        from stagewise.models.inference.llama_runtime import supports_gpu_offload

        return cls(gpu_offload=supports_gpu_offload(),
                   amx=AMX_BUFFER in offered_extra_buffers())


def _sentence(text: str) -> str:
    """``text`` with a capital first letter and a full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


class _FileField(QWidget):
    """A read-only path, a "Choose…" button, a reset button and an inline error."""

    def __init__(self, what: str, reset_text: str, reset_tip: str, tip: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.what = what
        self.tip = tip
        self.edit = QLineEdit(self)
        self.edit.setReadOnly(True)
        self.edit.setAccessibleName(what)
        self.edit.setToolTip(tip)
        self.choose_button = QPushButton("Choose…", self)
        self.choose_button.setAccessibleName(f"Choose the {what.lower()}")
        self.choose_button.setToolTip(f"Pick the {what.lower()} (a .gguf file) from disk.")
        self.reset_button = QPushButton(reset_text, self)
        self.reset_button.setAccessibleName(reset_text)
        self.reset_button.setToolTip(reset_tip)
        self.error = plain_label("", self)  # names files
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setStyleSheet("color: #c62828;")
        self.error.setAccessibleName(f"{what} problem")
        self.error.setToolTip(f"Why the {what.lower()} cannot be used.")
        self.error.hide()
        self.note = muted_label("", self)  # what an empty field means, where it needs words
        self.note.setWordWrap(True)
        self.note.hide()

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.choose_button)
        row.addWidget(self.reset_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(row)
        column.addWidget(self.note)
        column.addWidget(self.error)

    def show_path(self, path: Path | None, placeholder: str) -> None:
        self.edit.setText("" if path is None else str(path))
        self.edit.setPlaceholderText(placeholder)
        self.edit.setToolTip(plain_tip(f"{self.tip}\n{path if path is not None else placeholder}"))
        self.edit.setCursorPosition(len(self.edit.text()))  # the file name is what matters

    def show_note(self, text: str) -> None:
        """A muted line under the field ("" hides it)."""
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def show_error(self, message: str | None) -> None:
        self.error.setText(message or "")
        self.error.setVisible(bool(message))
        self.edit.setAccessibleDescription(message or "")


class SettingsDialog(QDialog):
    """Edits the app's settings; :meth:`settings` returns the edited values.

    Args:
        settings: The values to start from; window geometry and state pass through
            unchanged.
        parent: The owning window.
        offers: What this machine and build offer (default: asked of llama.cpp).
    """

    def __init__(self, settings: AppSettings, parent: QWidget | None = None, *,
                 offers: BuildOffers | None = None,
                 model_settings_path: Path | None = None) -> None:
        """Edit ``settings``; ``model_settings_path`` is where settings kept per model are
        read (default: beside the settings in the config folder)."""
        super().__init__(parent)
        self._model_settings_path = model_settings_path
        self.setWindowTitle("Preferences")
        self.setMinimumWidth(560)
        self.offers = offers if offers is not None else BuildOffers.detect()
        self._original = settings
        self._model: Path | None = None
        self._mmproj: Path | None = None
        self._mmproj_auto = False  # the projector was filled in from beside the model
        self._model_problem: str | None = None
        self._mmproj_problem: str | None = None

        layout = QVBoxLayout(self)
        self.remote_group = RemoteModelGroup(self)
        self.remote_group.enabled.toggled.connect(self._update_ok)
        self.remote_group.url.textChanged.connect(self._update_ok)
        self.remote_group.model.textChanged.connect(self._update_ok)
        self.remote_group.kind.currentIndexChanged.connect(self._update_ok)
        self.pages = QTabWidget(self)
        self.pages.setAccessibleName("Preferences pages")
        self.pages.setDocumentMode(True)
        model_group = self._build_model_group()
        self._add_page("Model", "The model that answers: a file here, or a server",
                       model_group, self.remote_group)
        self._add_page("Answers", "How candidates are sampled and the best one chosen",
                       self._build_search_group())
        self._add_page("This computer", "What the model runs on, and what the window shows",
                       self._build_hardware_group(), self._build_display_group())
        layout.addWidget(self.pages, 1)

        self.status_label = plain_label("", self)  # a key store's error names its file
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #c62828;")
        self.status_label.setAccessibleName("Why OK is unavailable")
        self.status_label.setToolTip("What must be fixed before the settings can be applied.")
        self.status_label.hide()
        layout.addWidget(self.status_label)

        buttons = QDialogButtonBox.StandardButton
        self.button_box = QDialogButtonBox(
            buttons.Ok | buttons.Cancel | buttons.RestoreDefaults, self
        )
        self.ok_button = self.button_box.button(buttons.Ok)
        self.ok_button.setAccessibleName("OK")
        self.ok_button.setToolTip("Apply these settings.")
        cancel = self.button_box.button(buttons.Cancel)
        cancel.setAccessibleName("Cancel")
        cancel.setToolTip("Close without changing the settings.")
        self.restore_button = self.button_box.button(buttons.RestoreDefaults)
        self.restore_button.setAccessibleName("Restore defaults")
        self.restore_button.setToolTip("Put every setting in this dialog back to its default.")
        self.restore_button.clicked.connect(self.restore_defaults)
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)
        layout.addWidget(self.button_box)

        self._load(settings)
        self._grown = False
        keep_on_screen(self)  # less, with scrolling pages, on a small screen

    def _whole_size(self) -> QSize:
        """The size that shows the tallest page without scrolling."""
        tallest = max(self.pages.widget(i).widget().sizeHint().height()  # type: ignore[attr-defined]
                      for i in range(self.pages.count()))
        shown = self.pages.currentWidget()
        return QSize(self.width(), self.height() + max(0, tallest - shown.height()) + 4)

    def showEvent(self, event: QShowEvent) -> None:
        """Once laid out (wrapped notes know their lines only then), grow to show the
        tallest page whole, as far as the screen allows."""
        super().showEvent(event)
        if not self._grown:
            self._grown = True
            QTimer.singleShot(0, self._grow)

    def _grow(self) -> None:
        self.resize(self._whole_size())
        fit_to_screen(self)

    def _add_page(self, title: str, tip: str, *groups: QWidget) -> None:
        """A page of the dialog: ``groups`` one under the other, scrolling when the screen
        is too small for them."""
        inner = QWidget()
        column = QVBoxLayout(inner)
        for group in groups:
            column.addWidget(group)
        column.addStretch(1)
        scroll = QScrollArea(self.pages)
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        index = self.pages.addTab(scroll, title)
        self.pages.setTabToolTip(index, tip)

    # ------------------------------------------------------------------ building

    def _build_model_group(self) -> QGroupBox:
        group = QGroupBox("Model", self)
        form = QFormLayout(group)
        self.model_field = _FileField(
            "Model file", "Use built-in model",
            "Go back to the built-in demo model (it knows only pictures of coloured shapes).",
            "The language model: a .gguf file.",
            group,
        )
        self.model_field.choose_button.clicked.connect(self._choose_model)
        self.model_field.reset_button.clicked.connect(lambda: self.set_model_file(None))
        self.projector_field = _FileField(
            "Projector file", "Automatic",
            "Use the projector (mmproj) file lying beside the model.",
            "The vision projector (mmproj) that belongs to the model: a .gguf file.",
            group,
        )
        self.projector_field.choose_button.clicked.connect(self._choose_projector)
        self.projector_field.reset_button.clicked.connect(lambda: self.set_projector_file(None))
        self._add_row(form, "&Model file:", self.model_field, self.model_field.edit)
        self._add_row(form, "&Projector file:", self.projector_field, self.projector_field.edit)
        # short aliases for callers and tests
        self.model_edit, self.model_error = self.model_field.edit, self.model_field.error
        self.projector_edit = self.projector_field.edit
        self.projector_error = self.projector_field.error
        return group

    def _build_search_group(self) -> QGroupBox:
        group = QGroupBox("Search", self)
        form = QFormLayout(group)

        self.beam_spin = QSpinBox(group)
        self.beam_spin.setRange(AUTO_BEAM, BEAM.high)
        self.beam_spin.setSpecialValueText("auto")  # 0: the core's AutoBeam chooses
        self._describe(self.beam_spin, "Beam width",
                       f"Candidates sampled for each stage, {BEAM.low} to {BEAM.high}; "
                       "1 = single pass. Wider beams are slower and use more memory.")
        self.beam_spin.valueChanged.connect(self._update_enabled)

        self.select_combo = QComboBox(group)
        self.select_combo.addItem("Automatic (the strategy's own)", "")
        for chosen_by in SELECTIONS:
            self.select_combo.addItem(chosen_by.label, chosen_by.name)
            self.select_combo.setItemData(self.select_combo.count() - 1, chosen_by.help,
                                          Qt.ItemDataRole.ToolTipRole)
        self._describe(self.select_combo, "Selection",
                       "How the best candidate is chosen when the beam is wider than 1.")
        self.select_combo.currentIndexChanged.connect(self._update_enabled)

        self.strategy_combo = QComboBox(group)
        for strategy in STRATEGIES:
            self.strategy_combo.addItem(strategy.label, strategy.name)
            self.strategy_combo.setItemData(self.strategy_combo.count() - 1, strategy.help,
                                            Qt.ItemDataRole.ToolTipRole)
        self._describe(self.strategy_combo, "Strategy",
                       "What a candidate is: one stage (the paper's method), one sentence, "
                       "or a whole answer (best of N). Retrace (the final paper's search) "
                       "samples 4 captions, keeps the best 2, samples 2 reasonings for each, "
                       "and samples new captions while the second-best reasoning scores "
                       "low; its sizes are the paper's, so the beam width does not apply.")
        self.strategy_combo.currentIndexChanged.connect(self._update_enabled)

        self.scorer_field = _FileField(
            "Second model", "None", "Use no second model.",
            "A second vision model that checks each candidate, for the selections that "
            "use one (\"A second model checks each candidate\", \"A process reward model "
            "scores each step\"): a .gguf file, its projector beside it. Other selections "
            "ignore it.",
            group)
        self.scorer_field.choose_button.clicked.connect(self._choose_scorer_model)
        self.scorer_field.reset_button.clicked.connect(lambda: self._set_scorer_model(None))

        self.temperature_spin = QDoubleSpinBox(group)
        self.temperature_spin.setRange(TEMPERATURE.low, TEMPERATURE.high)
        self.temperature_spin.setDecimals(2)
        self.temperature_spin.setSingleStep(0.05)
        self._describe(self.temperature_spin, "Temperature",
                       f"Sampling temperature, {TEMPERATURE.low:g} to {TEMPERATURE.high:g}; 0 "
                       "always takes the most likely token, higher values vary more.")

        self.top_p_spin = QDoubleSpinBox(group)
        self.top_p_spin.setRange(TOP_P.low, TOP_P.high)
        self.top_p_spin.setDecimals(2)
        self.top_p_spin.setSingleStep(0.05)
        self._describe(self.top_p_spin, "Top-p",
                       "Nucleus sampling: keep the most likely tokens making up this share "
                       "of the probability; 1 turns it off.")

        self.max_tokens_spin = QSpinBox(group)
        self.max_tokens_spin.setRange(MAX_STAGE_TOKENS.low, MAX_STAGE_TOKENS.high)
        self.max_tokens_spin.setSingleStep(16)
        self.max_tokens_spin.setSuffix(" tokens")
        self._describe(self.max_tokens_spin, "Max tokens per stage",
                       f"Token budget of each stage, {MAX_STAGE_TOKENS.low} to "
                       f"{MAX_STAGE_TOKENS.high}; a whole answer has four stages.")

        self._add_row(form, "&Beam width:", self.beam_spin)
        self._add_row(form, "Se&lection:", self.select_combo)
        self._add_row(form, "S&trategy:", self.strategy_combo)
        self._add_row(form, "Second mo&del:", self.scorer_field, self.scorer_field.edit)
        self._add_row(form, "Temperat&ure:", self.temperature_spin)
        self._add_row(form, "T&op-p:", self.top_p_spin)
        self._add_row(form, "Max tokens per &stage:", self.max_tokens_spin)
        return group

    def _build_hardware_group(self) -> QGroupBox:
        group = QGroupBox("Hardware", self)
        form = QFormLayout(group)

        gpu_row = QWidget(group)
        self.gpu_combo = QComboBox(gpu_row)
        self.gpu_combo.insertItem(GPU_AUTO, "As much as fits")
        self.gpu_combo.insertItem(GPU_CPU, "None (CPU only)")
        self.gpu_combo.insertItem(GPU_LAYERS, "This many layers")
        self._describe(self.gpu_combo, "GPU layers",
                       "How much of the model runs on the GPU: as many of its layers as fit "
                       "in the GPU's memory, none, or a number you choose. The rest runs on "
                       "the CPU.")
        self.gpu_spin = QSpinBox(gpu_row)
        self.gpu_spin.setRange(1, GPU_LAYER_RANGE.high)  # -1 and 0 are the combo's rows
        self.gpu_spin.setSuffix(" layers")
        self._describe(self.gpu_spin, "Number of GPU layers",
                       "Layers put on the GPU when \"This many layers\" is chosen.")
        self.gpu_combo.currentIndexChanged.connect(self._update_enabled)
        self.no_gpu_label = muted_label(NO_GPU_TEXT, gpu_row)
        self.no_gpu_label.setWordWrap(True)
        self.no_gpu_label.setToolTip("Where llama.cpp was built without CUDA, Metal, Vulkan "
                                     "or the like, the model runs on the CPU; Help → "
                                     "Diagnostics shows what this build offers.")
        row = QHBoxLayout(gpu_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.gpu_combo, 1)
        row.addWidget(self.gpu_spin)
        row.addWidget(self.no_gpu_label, 1)
        gpu = self.offers.gpu_offload  # a CPU-only build: no choice to offer
        self.gpu_combo.setVisible(gpu)
        self.gpu_spin.setVisible(gpu)
        self.no_gpu_label.setVisible(not gpu)

        self.threads_spin = QSpinBox(group)
        self.threads_spin.setRange(0, THREADS.high)  # 0 shows None: automatic
        self.threads_spin.setSpecialValueText("Automatic")
        self._describe(self.threads_spin, "Threads",
                       "CPU threads for generation. Automatic uses every core on small "
                       "machines and half of them on large ones.")

        self.ctx_spin = QSpinBox(group)
        self.ctx_spin.setRange(AUTO_CTX, N_CTX.high)  # below N_CTX.low only 0 (Automatic)
        self.ctx_spin.setSingleStep(1024)
        self.ctx_spin.setSuffix(" tokens")
        self.ctx_spin.setSpecialValueText("Automatic")
        self._describe(self.ctx_spin, "Context size",
                       f"Tokens the model can hold at once, shared by all candidates, "
                       f"{N_CTX.low} to {N_CTX.high}. Automatic uses the model's trained context "
                       f"(up to {FALLBACK_CTX}), or more when the search needs it. Larger "
                       "needs more memory.")

        self.image_tokens_spin = QSpinBox(group)
        self.image_tokens_spin.setRange(0, IMAGE_TOKENS.high)  # 0: the model's own cap
        self.image_tokens_spin.setSingleStep(256)
        self.image_tokens_spin.setSuffix(" tokens")
        self.image_tokens_spin.setSpecialValueText("The model's own")
        self._describe(self.image_tokens_spin, "Most tokens per image",
                       "How much of a picture this model sees (kept for each model). "
                       "For models whose image tokens follow the picture's size (Qwen-VL: "
                       "one token per 28×28 pixels, 8 to 4096; their own cap is 1280), a "
                       "larger picture is made smaller, its aspect kept, before it is "
                       "encoded. More tokens see finer detail but take more context and "
                       "memory (the fit and the automatic context "
                       "count them). Models that take every picture at one size ignore it.")

        self.amx_check = QCheckBox("Use Intel &AMX for weights (experimental)", group)
        self._describe(self.amx_check, "Use Intel AMX for weights",
                       "On CPUs with AMX, let llama.cpp keep weights in its AMX buffers. "
                       "Off by default: llama.cpp's AMX path crashes on some machines and "
                       "was slower where measured. The STAGEWISE_CPU_AMX environment "
                       "variable (1 or 0) wins over this box. Help → Diagnostics shows "
                       "what this machine offers.")

        self.prefix_cache_spin = QSpinBox(group)
        self.prefix_cache_spin.setRange(PREFIX_CACHE.low, PREFIX_CACHE.high)
        self.prefix_cache_spin.setSingleStep(256)
        self.prefix_cache_spin.setSuffix(" MiB")
        self.prefix_cache_spin.setSpecialValueText("Off")
        self._describe(self.prefix_cache_spin, "Encoded images kept",
                       "Disk space for images the model has already encoded, so that a "
                       "question about one of them later (reopened from the history, or "
                       "after a restart) starts at once instead of encoding it again. The "
                       "images used longest ago make room; Off keeps none.")

        self._add_row(form, "&GPU layers:" if self.offers.gpu_offload else "GPU:", gpu_row,
                      self.gpu_combo)
        self._add_row(form, "T&hreads:", self.threads_spin)
        self._add_row(form, "Conte&xt size:", self.ctx_spin)
        self._add_row(form, "Most tokens pe&r image:", self.image_tokens_spin)
        self._add_row(form, "Encoded &images kept:", self.prefix_cache_spin)
        if self.offers.amx:  # only a CPU (and build) with AMX has the choice
            form.addRow(self.amx_check)
        else:
            self.amx_check.hide()
        return group

    def _build_display_group(self) -> QGroupBox:
        group = QGroupBox("Display", self)
        form = QFormLayout(group)
        self.collapse_check = QCheckBox(
            "&Collapse Summary, Caption and Reasoning by default", group
        )
        self._describe(self.collapse_check, "Collapse Summary, Caption and Reasoning by default",
                       "Start each answer with only the Conclusion open; the other stages "
                       "open with a click.")
        form.addRow(self.collapse_check)
        return group

    @staticmethod
    def _describe(widget: QWidget, name: str, tip: str) -> None:
        widget.setAccessibleName(name)
        widget.setToolTip(tip)

    @staticmethod
    def _add_row(form: QFormLayout, text: str, field: QWidget,
                 buddy: QWidget | None = None) -> None:
        label = QLabel(text, form.parentWidget())
        label.setBuddy(buddy or field)
        form.addRow(label, field)

    # ------------------------------------------------------------------ values

    def _load(self, settings: AppSettings) -> None:
        self._model, self._mmproj = settings.model, settings.mmproj
        self._mmproj_auto = (
            settings.model is not None
            and settings.mmproj is not None
            and settings.mmproj.parent == settings.model.parent
        )
        search, engine = settings.search, settings.engine
        self._set_beam = settings.search.beam  # the width kept while auto is chosen
        self.beam_spin.setValue(settings.beam_choice)
        self.select_combo.setCurrentIndex(
            max(0, self.select_combo.findData(search.select or "")))
        self.strategy_combo.setCurrentIndex(
            max(0, self.strategy_combo.findData(search.strategy))
        )
        self._set_scorer_model(search.scorer_model)
        self.temperature_spin.setValue(search.sampling.temperature)
        self.top_p_spin.setValue(search.sampling.top_p)
        self.max_tokens_spin.setValue(search.max_stage_tokens)
        if engine.gpu_layers < 0:
            self.gpu_combo.setCurrentIndex(GPU_AUTO)
            self.gpu_spin.setValue(_DEFAULT_GPU_LAYER_COUNT)
        elif engine.gpu_layers == 0:
            self.gpu_combo.setCurrentIndex(GPU_CPU)
            self.gpu_spin.setValue(_DEFAULT_GPU_LAYER_COUNT)
        else:
            self.gpu_combo.setCurrentIndex(GPU_LAYERS)
            self.gpu_spin.setValue(engine.gpu_layers)
        self.threads_spin.setValue(engine.threads or 0)
        self.ctx_spin.setValue(engine.n_ctx)
        self.image_tokens_spin.setValue(engine.image_tokens)
        self.amx_check.setChecked(engine.allow_amx)
        self.prefix_cache_spin.setValue(settings.prefix_cache_mib)
        self.collapse_check.setChecked(settings.stages_collapsed)
        self.remote_group.load(settings.server, _stored_key(settings.server.url))
        self._update_enabled()
        self._files_changed()

    def settings(self) -> AppSettings:
        """The settings as edited; window geometry and state as they were given."""
        gpu = self.gpu_combo.currentIndex()
        gpu_layers = -1 if gpu == GPU_AUTO else 0 if gpu == GPU_CPU else self.gpu_spin.value()
        original = self._original
        search = replace(
            original.search,
            beam=self._set_beam,
            select=self.select_combo.currentData() or None,
            strategy=self.strategy_combo.currentData(),
            sampling=replace(original.search.sampling,
                             temperature=round(self.temperature_spin.value(), 2),
                             top_p=round(self.top_p_spin.value(), 2)),
            max_stage_tokens=self.max_tokens_spin.value(),
            scorer_model=self._scorer_model,
        )
        engine = replace(
            original.engine,
            gpu_layers=gpu_layers,
            threads=self.threads_spin.value() or None,
            n_ctx=_context(self.ctx_spin.value()),
            image_tokens=self.image_tokens_spin.value(),
            allow_amx=self.amx_check.isChecked(),
        )
        return replace(
            original,
            version=SCHEMA_VERSION,
            model=self._model,
            mmproj=self._mmproj,
            search=search,
            engine=engine,
            prefix_cache_mib=self.prefix_cache_spin.value(),
            server=self.remote_group.values(original.server),
            stages_collapsed=self.collapse_check.isChecked(),
        ).with_beam_choice(self.beam_spin.value())

    def accept(self) -> None:
        """Apply: the server's key, and any login typed into its address, go to the key
        store (never into the settings)."""
        address = self.remote_group.address()
        if address is not None:
            from stagewise.models.remote.keys import KeyStore

            try:
                KeyStore().set(address.url, self.remote_group.key.text())
                if address.had_login:
                    KeyStore.logins().set(address.url, address.login)
            except StagewiseError as error:
                self.status_label.setText(str(error))
                self.status_label.show()
                return
        super().accept()

    def restore_defaults(self) -> None:
        """Puts every field back to its default (the window layout is kept)."""
        self._load(AppSettings())

    def problems(self) -> list[str]:
        """The messages shown under the fields; empty when OK is available."""
        return [p for p in (self._model_problem, self._mmproj_problem,
                            self.remote_group.problem()) if p]

    def is_valid(self) -> bool:
        """Whether the settings can be applied (OK is enabled)."""
        return not self.problems()

    # ------------------------------------------------------------------ files

    def set_model_file(self, path: Path | str | None) -> None:
        """Takes ``path`` as the model file, or the built-in model for None.

        When no projector is chosen (or the current one was found beside the
        previous model) the projector beside the new model is filled in. The
        files are checked at once and a problem is shown under its field.
        """
        if path is None:
            self._model, self._mmproj, self._mmproj_auto = None, None, False
        else:
            self._model = Path(path)
            if self._mmproj is None or self._mmproj_auto:
                found = self._beside(self._model)
                self._mmproj, self._mmproj_auto = found, found is not None
        # the image-token cap is the model's own: show the one kept for this model
        self.image_tokens_spin.setValue(
            image_tokens_for(self._model, self._model_settings_path) or 0)
        self._files_changed()

    def set_projector_file(self, path: Path | str | None) -> None:
        """Takes ``path`` as the projector file, or None for the one beside the model."""
        self._mmproj = None if path is None else Path(path)
        self._mmproj_auto = False
        self._files_changed()

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose the model file", self._start_folder(self._model), GGUF_FILTER
        )
        if path:
            self.set_model_file(Path(path))

    def _choose_projector(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose the projector file", self._start_folder(self._mmproj or self._model),
            GGUF_FILTER,
        )
        if path:
            self.set_projector_file(Path(path))

    def _choose_scorer_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose the scorer model", self._start_folder(self._scorer_model),
            GGUF_FILTER)
        if path:
            self._set_scorer_model(Path(path))

    def _set_scorer_model(self, path: Path | None) -> None:
        self._scorer_model = path
        self.scorer_field.show_path(path, "No second model")

    @staticmethod
    def _start_folder(path: Path | None) -> str:
        return str(path.parent) if path is not None else str(Path.home())

    @staticmethod
    def _beside(model: Path) -> Path | None:
        with contextlib.suppress(OSError):
            return find_mmproj(model)
        return None

    def _files_changed(self) -> None:
        model, mmproj = self._model, self._mmproj
        beside = self._beside(model) if model is not None and mmproj is None else None
        self.model_field.show_path(model, DEMO_PLACEHOLDER)
        self.model_field.show_note(DEMO_NOTE if model is None else "")
        if model is None:
            placeholder = "The built-in model's projector"
        elif beside is not None:
            placeholder = f"Automatic: {beside.name}"
        else:
            placeholder = "Automatic: none found beside the model"
        self.projector_field.show_path(mmproj, placeholder)
        self.model_field.reset_button.setEnabled(model is not None)
        self.projector_field.reset_button.setEnabled(mmproj is not None)
        self._model_problem, self._mmproj_problem = self._check_files(model, mmproj or beside)
        self.model_field.show_error(self._model_problem)
        self.projector_field.show_error(self._mmproj_problem)
        self._update_ok()

    @staticmethod
    def _check_files(model: Path | None,
                     mmproj: Path | None) -> tuple[str | None, str | None]:
        """Problems with the model and the projector (None where there is none)."""

        def describe(error: ModelFileError, field: Path) -> str:
            return _sentence(error.problem) if error.path == field else str(error)

        if model is None:
            if mmproj is None:
                return None, None
            return None, ("The built-in model brings its own projector: choose a model file "
                          "as well, or press Automatic.")
        if mmproj is None:
            try:
                check_text_model(model)
                model_problem = None
            except ModelFileError as error:
                model_problem = describe(error, model)
            return model_problem, ("No projector (mmproj) file was found beside the model; "
                                   "choose one.")
        try:
            check_pair(model, mmproj)
        except ModelFileError as error:
            if error.path != model:
                return None, describe(error, mmproj)
            model_problem = describe(error, model)
            try:
                check_projector(mmproj)
            except ModelFileError as projector_error:
                return model_problem, describe(projector_error, mmproj)
            return model_problem, None
        return None, None

    # ------------------------------------------------------------------ state

    def _update_enabled(self) -> None:
        strategy = STRATEGIES.find(self.strategy_combo.currentData())
        uses_beam = strategy is None or strategy.uses_beam
        pointwise_only = strategy is not None and strategy.pointwise_only
        model = self.select_combo.model()
        for row in range(self.select_combo.count()):  # what this strategy can choose with
            chosen_by = SELECTIONS.find(self.select_combo.itemData(row))
            usable = chosen_by is None or not (pointwise_only and chosen_by.pairwise)
            model.item(row).setEnabled(usable)  # type: ignore[attr-defined]
        current = SELECTIONS.find(self.select_combo.currentData())
        if current is not None and pointwise_only and current.pairwise:
            self.select_combo.setCurrentIndex(0)  # automatic: the strategy's own
            return  # the change calls back here
        self.select_combo.setEnabled(self.beam_spin.value() != 1 or not uses_beam)
        self.beam_spin.setEnabled(uses_beam)
        name = self.select_combo.currentData() or (
            default_selection(strategy.name) if strategy is not None else "")
        current = SELECTIONS.find(name)
        self.scorer_field.setEnabled(current is not None and current.needs_verifier)
        self.gpu_spin.setEnabled(self.gpu_combo.currentIndex() == GPU_LAYERS)

    def _update_ok(self) -> None:
        broken = [
            what for what, problem in (("model file", self._model_problem),
                                       ("projector file", self._mmproj_problem))
            if problem
        ]
        remote = self.remote_group.problem()
        self.ok_button.setEnabled(not broken and not remote)
        if broken:
            self.status_label.setText(
                f"OK is unavailable: the {' and the '.join(broken)} cannot be used "
                "(see the message above)."
            )
        elif remote:
            self.status_label.setText(f"OK is unavailable: {remote}")
        self.status_label.setVisible(bool(broken or remote))


def _stored_key(url: str) -> str:
    """The key kept for ``url`` ("" when none, or when the store cannot be read)."""
    if not url:
        return ""
    from stagewise.models.remote.keys import KeyStore

    try:
        return KeyStore().get(url)
    except StagewiseError:
        return ""


def _context(value: int) -> int:
    """The spin box's context: 0 stays automatic, other values are raised to the floor
    (:data:`~stagewise.models.inference.engine_settings.N_CTX`)."""
    return value if value == AUTO_CTX else max(N_CTX.low, value)
