"""The real window makes an image ready before its question: on drop or open, on a past
run restored (from the disk cache after a restart), and a newer image cancels it.

Offscreen, with the tiny model through real llama.cpp, a real history and a real cache.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from PIL import Image

from stagewise.desktop.worker import AskJob, EngineHost
from stagewise.models.reasoning.run_view import RunView
from tests.desktop import test_main_window as shared
from tests.desktop.test_main_window import ANSWER_MS, ask_by_keyboard, drop_files

settings = shared.settings


def one_thread(settings):
    # fast on a machine with other work on it
    return replace(settings, engine=replace(settings.engine, threads=1))


def ready(qtbot, window, open_image):
    """Show an image with ``open_image()`` and wait until the engine made it ready."""
    with qtbot.waitSignal(window.host.worker.image_ready, timeout=ANSWER_MS,
                          check_params_cb=lambda job, _: job is window._preparing) as got:
        open_image()
        assert window.image_pane.readiness() == "preparing…"
    # the wait above ends in the engine thread; the window hears of it in its own, next
    qtbot.waitUntil(lambda: window.image_pane.readiness() != "preparing…", timeout=ANSWER_MS)
    return got.args[1]


def asked(qtbot, window, question: str) -> RunView:
    with qtbot.waitSignal(window.answer_done, timeout=ANSWER_MS) as blocker:
        ask_by_keyboard(qtbot, window, question)
    view: RunView = blocker.args[0]
    assert view.result is not None and view.result.status == "finished"
    return view


def test_a_dropped_image_is_ready_before_the_question(qtbot, make_window, settings,
                                                      image_file):
    window = make_window(one_thread(settings))
    report = ready(qtbot, window, lambda: drop_files(window.image_pane, [image_file]))
    assert report.origin == "encoded" and report.saved
    assert window.image_pane.readiness() == "ready to ask"
    assert window.image_pane.caption().endswith(" — ready to ask")
    assert window.statusBar().currentMessage().startswith("Image ready to ask: encoded in")
    view = asked(qtbot, window, "How many circles?")
    t = view.result.timings
    assert t.image_encodes == 0 and t.prefix_from == "memory"
    assert "image ready before the question" in window.timing_label.full_text()


def test_an_image_reopened_after_a_restart_comes_from_the_cache(qtbot, make_window,
                                                                settings, image_file):
    first = make_window(one_thread(settings))
    ready(qtbot, first, lambda: first.image_pane.open_file(image_file))
    asked(qtbot, first, "How many circles?")
    run_id = first.live_run_id
    first.close()  # the app quits
    second = make_window(one_thread(settings))  # and starts again
    report = ready(qtbot, second, lambda: second.show_past_run(run_id))
    assert report.origin == "cache" and report.encode_s > 0
    assert "read from the cache" in second.statusBar().currentMessage()
    assert second.image_pane.readiness() == "ready to ask"
    view = asked(qtbot, second, "Which shape is blue?")
    assert view.result.timings.image_encodes == 0


def test_a_newer_image_cancels_the_preparation_of_the_one_before(qtbot, make_window,
                                                                 settings, image_file,
                                                                 tmp_path):
    other = tmp_path / "other.png"
    Image.new("RGB", (40, 40), "green").save(other)
    window = make_window(one_thread(settings))
    seen = []
    window.host.worker.image_ready.connect(lambda job, report: seen.append(job))
    window.image_pane.open_file(image_file)
    first = window._preparing
    report = ready(qtbot, window, lambda: window.image_pane.open_file(other))
    assert first.cancel.is_set()  # told to stop at once, whether or not it had begun
    assert report.ready and window.image_pane.readiness() == "ready to ask"
    assert seen[-1] is window._preparing
    view = asked(qtbot, window, "What colour is it?")
    assert view.result.timings.image_encodes == 0  # the newer image was the one kept


def test_a_question_about_another_image_cancels_a_preparation(qtbot, settings, image_file,
                                                              tmp_path):
    host = EngineHost()
    try:
        with qtbot.waitSignal(host.worker.model_loaded, timeout=ANSWER_MS):
            host.load(one_thread(settings))
        preparing = host.prepare(image_file.read_bytes(), image_file.name, settings)
        other = tmp_path / "other.png"
        Image.new("RGB", (40, 40), "green").save(other)
        job = AskJob(other.read_bytes(), other.name, "What colour?", one_thread(settings),
                     cancel=threading.Event())
        with qtbot.waitSignal(host.worker.run_finished, timeout=ANSWER_MS):
            host.ask(job)
        assert preparing.cancel.is_set() and not job.cancel.is_set()
        same = host.prepare(other.read_bytes(), other.name, settings)
        with qtbot.waitSignal(host.worker.run_finished, timeout=ANSWER_MS):
            host.ask(AskJob(other.read_bytes(), other.name, "Why?", one_thread(settings)))
        assert not same.cancel.is_set()  # a preparation of the asked image goes on
    finally:
        host.shut_down()
