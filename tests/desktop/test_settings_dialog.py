"""The settings dialog edits AppSettings through its widgets and refuses unusable files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QTabBar,
    QWidget,
)

from stagewise.desktop.settings_dialog import GPU_AUTO, GPU_CPU, GPU_LAYERS, SettingsDialog
from stagewise.models.build.tiny_vlm import TINY, TinyPair, write_tiny_pair
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.sampling_settings import SamplingSettings
from stagewise.models.reasoning.search_settings import MAX_BEAM, SearchSettings
from stagewise.models.storage.app_settings import AppSettings


@pytest.fixture
def make_dialog(qtbot):
    def make(settings: AppSettings | None = None) -> SettingsDialog:
        dialog = SettingsDialog(settings or AppSettings())
        qtbot.addWidget(dialog)
        return dialog

    return make


@pytest.fixture
def pair_copy(tiny_pair: TinyPair, tmp_path: Path) -> TinyPair:
    """The tiny pair copied into a folder of its own (so find_mmproj sees only it)."""
    folder = tmp_path / "pair"
    folder.mkdir()
    model = Path(shutil.copy(tiny_pair.model, folder / "tiny-model.gguf"))
    mmproj = Path(shutil.copy(tiny_pair.mmproj, folder / "tiny-mmproj.gguf"))
    return TinyPair(model=model, mmproj=mmproj)


def ok_enabled(dialog: SettingsDialog) -> bool:
    return dialog.button_box.button(QDialogButtonBox.StandardButton.Ok).isEnabled()


def type_into(qtbot, spin: QAbstractSpinBox, text: str) -> None:
    spin.selectAll()
    qtbot.keyClicks(spin, text)
    spin.interpretText()


def test_starts_from_the_given_settings(make_dialog):
    settings = AppSettings(
        model=None,
        search=SearchSettings(beam=5, select="logprob", strategy="sentence",
                              sampling=SamplingSettings(temperature=1.1, top_p=0.75),
                              max_stage_tokens=128),
        engine=EngineSettings(gpu_layers=12, threads=4, n_ctx=16384, allow_amx=True),
        stages_collapsed=True, window_geometry="Z2VvbQ==", window_state="c3RhdGU=",
        auto_beam=False,
    )
    dialog = make_dialog(settings)
    assert dialog.beam_spin.value() == 5
    assert dialog.select_combo.currentData() == "logprob"
    assert dialog.strategy_combo.currentData() == "sentence"
    assert dialog.gpu_combo.currentIndex() == GPU_LAYERS and dialog.gpu_spin.value() == 12
    assert dialog.threads_spin.value() == 4
    assert dialog.amx_check.isChecked()
    assert dialog.collapse_check.isChecked()
    assert dialog.settings() == settings
    assert ok_enabled(dialog)


def test_defaults_round_trip_and_built_in_model_is_valid(make_dialog):
    dialog = make_dialog()
    assert dialog.settings() == AppSettings()
    assert ok_enabled(dialog) and dialog.is_valid()
    assert dialog.status_label.isHidden()
    assert dialog.model_edit.text() == ""
    assert "Built-in" in dialog.model_edit.placeholderText()
    assert not dialog.model_field.reset_button.isEnabled()
    assert dialog.threads_spin.text() == "Automatic"
    assert dialog.beam_spin.text() == "auto"  # the default beam is auto


def test_editing_the_widgets_changes_the_settings(qtbot, make_dialog):
    dialog = make_dialog(AppSettings(window_geometry="Z2VvbQ=="))
    type_into(qtbot, dialog.beam_spin, "6")
    dialog.select_combo.setCurrentIndex(dialog.select_combo.findData("logprob"))
    dialog.strategy_combo.setCurrentIndex(dialog.strategy_combo.findData("best-of-n"))
    type_into(qtbot, dialog.temperature_spin, "0.25")
    dialog.top_p_spin.setValue(0.8)
    type_into(qtbot, dialog.max_tokens_spin, "512")
    dialog.gpu_combo.setCurrentIndex(GPU_CPU)
    dialog.threads_spin.setValue(3)
    dialog.ctx_spin.setValue(4096)
    type_into(qtbot, dialog.prefix_cache_spin, "512")
    qtbot.mouseClick(dialog.amx_check, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(dialog.collapse_check, Qt.MouseButton.LeftButton)

    assert dialog.settings() == AppSettings(
        auto_beam=False, prefix_cache_mib=512,
        search=SearchSettings(beam=6, select="logprob", strategy="best-of-n",
                              sampling=SamplingSettings(temperature=0.25, top_p=0.8),
                              max_stage_tokens=512),
        engine=EngineSettings(gpu_layers=0, threads=3, n_ctx=4096, allow_amx=True),
        stages_collapsed=True, window_geometry="Z2VvbQ==",
    )
    assert dialog.settings().validated() == dialog.settings()
    dialog.prefix_cache_spin.setValue(0)
    assert dialog.prefix_cache_spin.text() == "Off" and dialog.settings().prefix_cache_mib == 0


def test_gpu_layers_combo_and_spin(make_dialog):
    dialog = make_dialog()
    assert dialog.gpu_combo.currentIndex() == GPU_AUTO
    assert not dialog.gpu_spin.isEnabled()
    dialog.gpu_combo.setCurrentIndex(GPU_LAYERS)
    assert dialog.gpu_spin.isEnabled()
    dialog.gpu_spin.setValue(20)
    assert dialog.settings().engine.gpu_layers == 20
    dialog.gpu_combo.setCurrentIndex(GPU_CPU)
    assert dialog.settings().engine.gpu_layers == 0
    dialog.gpu_combo.setCurrentIndex(GPU_AUTO)
    assert dialog.settings().engine.gpu_layers == -1


def test_ranges_match_the_settings_limits(qtbot, make_dialog):
    dialog = make_dialog()
    assert (dialog.beam_spin.minimum(), dialog.beam_spin.maximum()) == (0, MAX_BEAM)  # 0: auto
    assert (dialog.temperature_spin.minimum(), dialog.temperature_spin.maximum()) == (0, 2)
    assert (dialog.top_p_spin.minimum(), dialog.top_p_spin.maximum()) == (0, 1)
    assert (dialog.max_tokens_spin.minimum(), dialog.max_tokens_spin.maximum()) == (1, 4096)
    assert (dialog.ctx_spin.minimum(), dialog.ctx_spin.maximum()) == (0, 131072)
    assert dialog.ctx_spin.value() == 0 and dialog.ctx_spin.text() == "Automatic"
    assert dialog.settings().engine.n_ctx == 0  # the default: sized to the model at load
    dialog.ctx_spin.setValue(100)  # below the smallest context llama.cpp allocates
    assert dialog.settings().engine.n_ctx == 256
    dialog.ctx_spin.setValue(4096)
    assert dialog.settings().engine.n_ctx == 4096
    dialog.beam_spin.setValue(MAX_BEAM + 5)
    assert dialog.settings().search.beam == MAX_BEAM
    dialog.threads_spin.setValue(0)
    assert dialog.settings().engine.threads is None


def test_selection_only_matters_with_a_beam(make_dialog):
    dialog = make_dialog()
    assert dialog.select_combo.isEnabled()  # auto may choose a beam
    dialog.beam_spin.setValue(1)
    assert not dialog.select_combo.isEnabled()
    dialog.beam_spin.setValue(2)
    assert dialog.select_combo.isEnabled()


def test_strategies_have_human_labels(make_dialog):
    dialog = make_dialog()
    labels = [dialog.strategy_combo.itemText(i) for i in range(dialog.strategy_combo.count())]
    keys = [dialog.strategy_combo.itemData(i) for i in range(dialog.strategy_combo.count())]
    assert keys == ["stage", "sentence", "best-of-n", "retrace"]
    assert all(label != key for label, key in zip(labels, keys, strict=True))


def test_restore_defaults_keeps_the_window_layout(qtbot, make_dialog):
    start = AppSettings(search=SearchSettings(beam=8),
                        engine=EngineSettings(n_ctx=4096, gpu_layers=0), stages_collapsed=True,
                        model=Path("/nowhere/model.gguf"), window_state="c3RhdGU=")
    dialog = make_dialog(start)
    assert not ok_enabled(dialog)  # the model file does not exist
    qtbot.mouseClick(dialog.restore_button, Qt.MouseButton.LeftButton)
    assert dialog.settings() == AppSettings(window_state="c3RhdGU=")
    assert ok_enabled(dialog)


def test_choosing_a_model_fills_the_projector_and_validates(make_dialog, pair_copy):
    dialog = make_dialog()
    dialog.set_model_file(pair_copy.model)
    assert dialog.model_edit.text() == str(pair_copy.model)
    assert dialog.projector_edit.text() == str(pair_copy.mmproj)
    assert dialog.problems() == []
    assert dialog.model_error.isHidden() and dialog.projector_error.isHidden()
    assert ok_enabled(dialog)
    settings = dialog.settings()
    assert (settings.model, settings.mmproj) == (pair_copy.model, pair_copy.mmproj)

    dialog.set_model_file(None)  # "Use built-in model"
    assert (dialog.settings().model, dialog.settings().mmproj) == (None, None)
    assert ok_enabled(dialog)


def test_use_built_in_model_button(qtbot, make_dialog, pair_copy):
    dialog = make_dialog(AppSettings(model=pair_copy.model, mmproj=pair_copy.mmproj))
    assert ok_enabled(dialog)
    qtbot.mouseClick(dialog.model_field.reset_button, Qt.MouseButton.LeftButton)
    assert dialog.settings().model is None and dialog.settings().mmproj is None


def test_choose_button_opens_a_gguf_file_dialog(qtbot, make_dialog, pair_copy, monkeypatch):
    asked: list[str] = []

    def fake_open(_parent: QWidget, _caption: str, _folder: str,
                  filters: str) -> tuple[str, str]:
        asked.append(filters)
        return str(pair_copy.model), filters

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(fake_open))
    dialog = make_dialog()
    qtbot.mouseClick(dialog.model_field.choose_button, Qt.MouseButton.LeftButton)
    assert "*.gguf" in asked[0]
    assert dialog.settings().model == pair_copy.model
    assert dialog.settings().mmproj == pair_copy.mmproj

    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *_args: ("", "")))  # cancelled
    qtbot.mouseClick(dialog.projector_field.choose_button, Qt.MouseButton.LeftButton)
    assert dialog.settings().mmproj == pair_copy.mmproj


def test_truncated_model_shows_the_error_and_disables_ok(make_dialog, tiny_pair, tmp_path):
    truncated = tmp_path / "broken-model.gguf"
    truncated.write_bytes(tiny_pair.model.read_bytes()[:100])
    dialog = make_dialog()
    dialog.set_model_file(truncated)
    assert not ok_enabled(dialog)
    assert not dialog.model_error.isHidden()
    assert "truncated" in dialog.model_error.text()
    assert "truncated" in dialog.model_edit.accessibleDescription()
    assert not dialog.status_label.isHidden()
    assert "model file" in dialog.status_label.text()
    assert "OK" in dialog.status_label.text()

    dialog.set_model_file(None)
    assert ok_enabled(dialog) and dialog.model_error.isHidden()
    assert dialog.status_label.isHidden()


def test_model_without_projector_beside_it_is_refused(make_dialog, tiny_pair, tmp_path):
    lonely = Path(shutil.copy(tiny_pair.model, tmp_path / "lonely-model.gguf"))
    dialog = make_dialog()
    dialog.set_model_file(lonely)
    assert dialog.settings().mmproj is None
    assert "No projector" in dialog.projector_error.text()
    assert not ok_enabled(dialog)
    dialog.set_projector_file(tiny_pair.mmproj)
    assert ok_enabled(dialog)
    assert dialog.settings().mmproj == tiny_pair.mmproj


def test_mismatched_pair_shows_the_mismatch(make_dialog, tmp_path):
    pair = write_tiny_pair(tmp_path / "mismatch", TINY, mmproj_n_embd=TINY.n_embd * 2)
    dialog = make_dialog()
    dialog.set_model_file(pair.model)
    assert dialog.settings().mmproj == pair.mmproj
    assert dialog.model_error.isHidden()
    assert "do not belong together" in dialog.projector_error.text()
    assert not ok_enabled(dialog)
    assert "projector file" in dialog.status_label.text()


def test_swapped_files_are_named(make_dialog, pair_copy):
    dialog = make_dialog()
    dialog.set_model_file(pair_copy.mmproj)
    dialog.set_projector_file(pair_copy.model)
    assert "projector" in dialog.model_error.text()
    assert "text model" in dialog.projector_error.text()
    assert not ok_enabled(dialog)


def test_projector_without_a_model_file_is_refused(make_dialog, pair_copy):
    dialog = make_dialog(AppSettings(mmproj=pair_copy.mmproj))
    assert "built-in model" in dialog.projector_error.text()
    assert not ok_enabled(dialog)
    dialog.set_projector_file(None)  # "Automatic"
    assert ok_enabled(dialog)


def test_new_model_replaces_a_projector_found_beside_the_old_one(make_dialog, pair_copy,
                                                                tmp_path):
    other = write_tiny_pair(tmp_path / "other", TINY, seed=1)
    dialog = make_dialog()
    dialog.set_model_file(pair_copy.model)
    dialog.set_model_file(other.model)
    assert dialog.settings().mmproj == other.mmproj
    assert ok_enabled(dialog)
    dialog.set_projector_file(pair_copy.mmproj)  # chosen by hand: kept
    dialog.set_model_file(pair_copy.model)
    assert dialog.settings().mmproj == pair_copy.mmproj


def test_every_control_is_named_described_and_labelled(make_dialog):
    dialog = make_dialog()
    controls = [
        w for w in dialog.findChildren(QWidget)
        if isinstance(w, QAbstractButton | QAbstractSpinBox | QComboBox | QLineEdit)
        and not isinstance(w.parent(), QAbstractSpinBox | QComboBox  # their inner editors
                           | QTabBar)  # the pages' scroll arrows
    ]
    assert len(controls) >= 15
    for control in controls:
        assert control.accessibleName(), control
        assert control.toolTip(), control.accessibleName()
    buddies = {label.buddy() for label in dialog.findChildren(QLabel) if label.buddy()}
    for control in (dialog.model_edit, dialog.projector_edit, dialog.beam_spin,
                    dialog.select_combo, dialog.strategy_combo, dialog.temperature_spin,
                    dialog.top_p_spin, dialog.max_tokens_spin, dialog.gpu_combo,
                    dialog.threads_spin, dialog.ctx_spin):
        assert control in buddies, control.accessibleName()
    mnemonics = [
        label.text().split("&")[1][0].lower()
        for label in dialog.findChildren(QLabel) if "&" in label.text()
    ]
    mnemonics.append(dialog.collapse_check.text().split("&")[1][0].lower())
    assert len(mnemonics) == len(set(mnemonics))


def test_groups_and_minimum_size(qtbot, make_dialog, tiny_pair, tmp_path):
    from PySide6.QtWidgets import QGroupBox

    truncated = tmp_path / "broken-model.gguf"
    truncated.write_bytes(tiny_pair.model.read_bytes()[:100])
    dialog = make_dialog()
    pages = {dialog.pages.tabText(i): [g.title() for g in
                                       dialog.pages.widget(i).findChildren(QGroupBox)]
             for i in range(dialog.pages.count())}
    assert {page: sorted(titles) for page, titles in pages.items()} == {
        "Model": ["Model", "Remote model"], "Answers": ["Search"],
        "This computer": ["Display", "Hardware"]}
    assert dialog.minimumWidth() >= 500
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.width() >= 500 and dialog.height() > 300
    dialog.set_model_file(truncated)  # a long message wraps instead of widening the dialog
    assert dialog.sizeHint().width() < 900


def test_ok_and_cancel(qtbot, make_dialog):
    dialog = make_dialog()
    dialog.beam_spin.setValue(3)
    with qtbot.waitSignal(dialog.accepted, timeout=1000):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.settings().search.beam == 3


def test_retrace_takes_a_pointwise_selection_and_not_the_beam(make_dialog, pair_copy):
    dialog = make_dialog(AppSettings(search=SearchSettings(
        strategy="retrace", select="model", scorer_model=pair_copy.model)))
    assert not dialog.beam_spin.isEnabled() and dialog.select_combo.isEnabled()
    assert dialog.scorer_field.isEnabled()  # the model selection scores with it
    assert dialog.scorer_field.edit.text() == str(pair_copy.model)
    assert dialog.settings().search.scorer_model == pair_copy.model
    items = dialog.select_combo.model()
    enabled = {dialog.select_combo.itemData(row): items.item(row).isEnabled()
               for row in range(dialog.select_combo.count())}
    assert not enabled["judge"] and not enabled["verdict"]  # pairwise: not for retrace
    assert enabled["selfcheck"] and enabled["prm"] and enabled["logprob"]
    dialog.select_combo.setCurrentIndex(dialog.select_combo.findData("logprob"))
    assert not dialog.scorer_field.isEnabled()
    assert dialog.settings().search.select == "logprob"
    dialog.strategy_combo.setCurrentIndex(dialog.strategy_combo.findData("stage"))
    assert dialog.beam_spin.isEnabled()
    dialog.select_combo.setCurrentIndex(dialog.select_combo.findData("judge"))
    dialog.strategy_combo.setCurrentIndex(dialog.strategy_combo.findData("retrace"))
    assert dialog.settings().search.select is None  # a pairwise choice falls back to retrace's


def test_a_remote_model_is_checked_and_its_key_kept_apart(qtbot, make_dialog):
    from stagewise.models.remote.keys import KeyStore
    from stagewise.models.storage.app_settings import settings_path

    dialog = make_dialog()
    group = dialog.remote_group
    assert not group.url.isEnabled()
    group.enabled.setChecked(True)
    group.url.setText("gpu-box:8000")
    assert not dialog.ok_button.isEnabled()
    assert "http://" in dialog.status_label.text()
    group.kind.setCurrentIndex(group.kind.findData("openai"))
    group.url.setText("http://gpu-box:8000/v1")
    assert not dialog.ok_button.isEnabled()  # an OpenAI-compatible server needs the model
    group.model.setText("Xkev/Llama-3.2V-11B-cot")
    group.mode.setCurrentIndex(group.mode.findData("native"))
    group.key.setText("s3cret")
    assert dialog.ok_button.isEnabled()
    with qtbot.waitSignal(dialog.accepted, timeout=1000):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    settings = dialog.settings()
    assert settings.server_settings() is not None
    assert settings.server_settings().describe() == (
        "Xkev/Llama-3.2V-11B-cot on server at http://gpu-box:8000/v1")
    assert "s3cret" not in json.dumps(settings.to_json())
    store = KeyStore()
    assert store.get("http://gpu-box:8000/v1") == "s3cret"
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert not settings_path().exists() or "s3cret" not in settings_path().read_text()
    again = make_dialog(settings)  # the key is shown again, masked
    assert again.remote_group.key.text() == "s3cret"
    assert again.remote_group.key.echoMode() == again.remote_group.key.EchoMode.Password


def test_the_image_token_cap_follows_the_model_it_is_kept_for(qtbot, pair_copy, tmp_path):
    from stagewise.models.storage.model_settings import remember_image_tokens

    kept = tmp_path / "model-settings.json"
    remember_image_tokens(pair_copy.model, 900, kept)
    dialog = SettingsDialog(AppSettings(engine=EngineSettings(image_tokens=64)),
                            model_settings_path=kept)
    qtbot.addWidget(dialog)
    assert dialog.image_tokens_spin.value() == 64  # the built-in model's, as given
    dialog.set_model_file(pair_copy.model)
    assert dialog.image_tokens_spin.value() == 900
    assert dialog.settings().engine.image_tokens == 900
    dialog.set_model_file(None)
    assert dialog.image_tokens_spin.value() == 0  # none kept: the model's own
