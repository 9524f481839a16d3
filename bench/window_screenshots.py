"""The README's screenshots of Question → Compare…, of a question about several images, and
of a picture shown as the model was sent it.

Usage (under Xvfb, with empty data and settings folders, as on a first run)::

    export STAGEWISE_DATA_DIR=$(mktemp -d) STAGEWISE_CONFIG_DIR=$(mktemp -d)
    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python bench/window_screenshots.py \
        compare docs/screenshot-compare.png
    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python bench/window_screenshots.py \
        several docs/screenshot-several.png
    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python bench/window_screenshots.py \
        sent docs/screenshot-sent.png

``compare`` opens the real window on the shipped demo model, opens the shipped example
picture, and compares a single pass with a beam of four judged by the model (``beam=1``
against ``beam=4,select=judge``) on the demo's example question; the shot is the Compare
dialog. ``several`` drops two of the demo's test pictures together on the tiny
Qwen2.5-VL-shaped pair with Qwen2's real tokenizer (random weights: its words mean
nothing), asks which has more red circles, and shoots the window with the strip.
``sent`` opens the example scaled to 900×600 on the same pair with at most 64 tokens per
image, answers, and shoots the window with View → Show Image as Sent on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication, QWidget

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How many red circles are there?"


def wait(condition, timeout_s: float = 300) -> None:
    loop = QEventLoop()
    timer = QTimer(interval=50)
    timer.timeout.connect(lambda: condition() and loop.quit())
    timer.start()
    QTimer.singleShot(round(timeout_s * 1000), loop.quit)
    loop.exec()
    timer.stop()
    if not condition():
        raise SystemExit("timed out")


def settle(widget: QWidget) -> None:
    for _ in range(30):
        QApplication.processEvents()
    widget.repaint()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["compare", "several", "sent"])
    parser.add_argument("png", type=Path)
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    from stagewise.desktop.main_window import MainWindow
    from stagewise.models.inference.engine_settings import EngineSettings
    from stagewise.models.library.demo import demo_pair, example_image
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.storage.app_settings import AppSettings

    if args.what == "compare":
        pair = demo_pair()
        assert pair is not None
        model, mmproj = pair.model, pair.mmproj
    else:
        from stagewise.models.recipes.real_vocab import qwen_real_vocabulary_pair

        qwen = qwen_real_vocabulary_pair("qwen2.5-vl")
        model, mmproj = qwen.model, qwen.mmproj
    settings = AppSettings(model=model, mmproj=mmproj, auto_beam=False,
                           search=SearchSettings(max_stage_tokens=64),
                           engine=EngineSettings(n_ctx=4096,
                                                 image_tokens=64 if args.what == "sent" else 0))
    window = MainWindow(settings)
    window.resize(1280, 800)
    window.show()
    wait(lambda: window.loaded is not None)
    if args.what == "compare":
        window.image_pane.open_file(example_image())
        window.question_box.set_question(QUESTION)
        dialog = window.open_compare()
        dialog.resize(1100, 620)
        dialog.fields[0].setText("beam=1")
        dialog.fields[1].setText("beam=4,select=judge")
        done: list[object] = []
        window.host.worker.compared.connect(lambda *got: done.append(got))
        window.host.worker.compare_failed.connect(lambda message: done.append(message))
        window.compare(*dialog.configurations())
        wait(lambda: bool(done) and not window.busy)
        settle(dialog)
        dialog.grab().save(str(args.png))
        print(dialog.status.text())
    elif args.what == "sent":
        from PIL import Image

        large = args.png.with_name("example-900x600.png")
        with Image.open(example_image()) as picture:
            picture.convert("RGB").resize((900, 600), Image.Resampling.NEAREST).save(large)
        window.image_pane.open_file(large)
        window.question_box.set_question("How many red circles are there?")
        window.ask(window.question_box.question())
        wait(lambda: not window.busy)
        window.sent_action.setChecked(True)
        settle(window)
        window.grab().save(str(args.png))
        large.unlink()
        print(window.image_pane.sent())
    else:
        images = ROOT / "models" / "data" / "demo" / "test" / "images"
        window.image_pane.open_files([images / "test-000000-count.png",
                                      images / "test-000005-count.png"])
        window.question_box.set_question("Which picture has more red circles?")
        window.ask(window.question_box.question())
        wait(lambda: not window.busy)
        settle(window)
        window.grab().save(str(args.png))
        print(window.timing_label.text())
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
