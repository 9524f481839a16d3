"""`stagewise doctor` as a person runs it, and Help → Diagnostics in the window.

Each doctor runs in its own process, with private folders; its smoke answer runs in a
further child process, as it does for users.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stagewise.desktop.cli import doctor as doctor_command
from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.inference.cpu_buffers import AMX_ENV
from stagewise.models.library.installed import Library
from tests.desktop.test_cli import ROOT


def doctor(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "STAGEWISE_DATA_DIR": str(data_dir),
               **env}
    environ.pop(AMX_ENV, None)
    return subprocess.run([sys.executable, "-m", "stagewise.desktop", "doctor", *args],
                          capture_output=True, text=True, timeout=300, env=environ, cwd=ROOT)


def rows(report: str) -> dict[str, str]:
    """``label  value`` rows of the report, by label (the last of a repeated label)."""
    out = {}
    for line in report.splitlines():
        if line.startswith("  "):
            label, _, value = line.strip().partition("  ")
            out[label] = value.strip()
    return out


def test_the_report_shows_the_machine_the_buffers_and_a_passing_smoke_answer(tmp_path):
    done = doctor(data_dir=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for title in ("Stagewise", "llama.cpp", "Devices", "Weight buffers", "Folders", "Models",
                  "Smoke answer"):
        assert f"== {title} ==" in done.stdout
    found = rows(done.stdout)
    assert found["system info"].startswith("CPU :")
    assert found["data"] == str(tmp_path)
    assert "AMX" in found["why"] or "extra CPU buffer" in found["why"]
    assert found["result"].startswith("passed: four stages in")
    assert found["conclusion"]
    assert "AMX" not in found["weights in"]
    assert "validates" in found["in use"] and "demo" in found["in use"]


def test_an_installed_model_that_no_longer_validates_is_named(tmp_path, tiny_pair: TinyPair):
    folder = tmp_path / "files"
    folder.mkdir()
    model = Path(shutil.copy(tiny_pair.model, folder / "tiny.gguf"))
    shutil.copy(tiny_pair.mmproj, folder / "mmproj-tiny.gguf")
    Library(tmp_path / "data" / "models").import_files(model, name="tiny")
    with model.open("r+b") as file:
        file.truncate(model.stat().st_size // 2)
    done = doctor("--no-smoke", data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert "does not validate" in rows(done.stdout)["tiny"]
    assert "Smoke answer" not in done.stdout


def test_a_failing_smoke_answer_is_reported_and_exits_1(tmp_path, tiny_pair: TinyPair):
    broken = tmp_path / "demo"
    broken.mkdir()
    (broken / "stagewise-demo-Q8_0.gguf").write_bytes(tiny_pair.model.read_bytes()[:4096])
    shutil.copy(tiny_pair.mmproj, broken / "mmproj-stagewise-demo-f16.gguf")
    done = doctor(data_dir=tmp_path / "data", STAGEWISE_DEMO_DIR=str(broken))
    assert done.returncode == 1
    assert rows(done.stdout)["result"].startswith("FAILED:")
    assert "Traceback" not in done.stdout + done.stderr


def test_a_crash_while_answering_is_one_line_of_the_report(monkeypatch):
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    monkeypatch.setattr(doctor_command, "_self_command", lambda: [sys.executable, "-c", crash])
    result = doctor_command.isolated_smoke_answer(timeout_s=60)
    assert not result.ok
    assert "crashed (SIGSEGV)" in result.error
    assert "FAILED: the answering process crashed (SIGSEGV)" in dict(result.section().rows)[
        "result"]


@pytest.mark.usefixtures("qapp")
def test_help_diagnostics_shows_the_report_and_copies_it(qtbot, tmp_path):
    from PySide6.QtGui import QGuiApplication

    from stagewise.desktop.diagnostics_dialog import DiagnosticsDialog
    from stagewise.models.storage.app_settings import AppSettings

    dialog = DiagnosticsDialog(AppSettings())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.ready, timeout=300_000)
    text = dialog.text.toPlainText()
    assert "== Weight buffers ==" in text and "== Smoke answer ==" in text
    assert "passed" in dialog.status.text()
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == text


def test_settings_nested_too_deep_are_set_aside_not_a_crash(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.json").write_text('{"beam": ' * 100_000 + "1" + "}" * 100_000)
    done = doctor("--no-smoke", data_dir=tmp_path / "data", STAGEWISE_CONFIG_DIR=str(config))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "nested too deep" in done.stderr
    assert (config / "settings.json.bad").is_file()
