"""A windowed bundle has no console: Python starts with sys.stdout and sys.stderr set to
None (pythonw, PyInstaller's console=False). The app must still run and answer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

WITHOUT_CONSOLE = textwrap.dedent("""
    import sys
    sys.stdout = None
    sys.stderr = None
    from stagewise.desktop.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               STAGEWISE_DATA_DIR=str(tmp_path / "data"),
               STAGEWISE_CONFIG_DIR=str(tmp_path / "config"))
    return subprocess.run([sys.executable, "-c", WITHOUT_CONSOLE, *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_ask_answers_with_nowhere_to_print(tiny_pair, image_file, tmp_path):
    done = _run(["ask", "--model", str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj),
                 "--image", str(image_file), "--question", "How many?",
                 "--max-stage-tokens", "6"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_the_window_answers_and_reports_when_it_was_shown(tiny_pair, tmp_path):
    shot, shown = tmp_path / "window.png", tmp_path / "shown.txt"
    before = time.time()
    done = _run(["--self-test", "--screenshot", str(shot), "--startup-report", str(shown),
                 "--model", str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj)], tmp_path)
    after = time.time()
    assert done.returncode == 0, done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the self-test passed and saved
    assert before < float(shown.read_text()) < after
