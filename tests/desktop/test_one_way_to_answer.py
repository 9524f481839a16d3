"""`stagewise ask` and the window plan a load the same way (stagewise.models.session.plan).

Both run here on one described machine: the same refusal when a model cannot fit, and the
same GPU layers when only part of it fits on the GPU.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from stagewise.desktop import cli
from stagewise.models import session as session_module
from stagewise.models.errors import Cancelled
from stagewise.models.hardware import Device, Hardware
from stagewise.models.hardware import devices as devices_module
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.session import plan
from stagewise.models.storage.app_settings import AppSettings

GiB = 2**30


def tiny_machine() -> Hardware:
    return Hardware(devices=(), gpu_offload=False, ram_total=2**20, ram_available=2**19,
                    cpu_count=2)


def small_gpu_machine() -> Hardware:
    """A GPU with room, after its reserve, for one of the tiny model's two layers."""
    gpu = Device("CUDA0", "a small GPU", "gpu", free_bytes=316 * 2**20, total_bytes=2**30)
    return Hardware(devices=(gpu,), gpu_offload=True, ram_total=16 * GiB,
                    ram_available=12 * GiB, cpu_count=2)


@pytest.fixture
def settings(tiny_pair) -> AppSettings:
    return AppSettings(model=tiny_pair.model, mmproj=tiny_pair.mmproj, auto_beam=False,
                       search=SearchSettings(beam=2, max_stage_tokens=16),
                       engine=EngineSettings(threads=2, n_ctx=4096))


def ask_args(settings: AppSettings, image_file) -> list[str]:
    return ["ask", "--model", str(settings.model), "--mmproj", str(settings.mmproj),
            "--image", str(image_file), "--question", "How many?", "--beam",
            str(settings.search.beam), "--max-stage-tokens",
            str(settings.search.max_stage_tokens), "--threads", str(settings.engine.threads),
            "--ctx", str(settings.engine.n_ctx)]


def test_the_same_refusal(monkeypatch, capsys, qtbot, settings, image_file):
    from stagewise.desktop.worker import EngineHost

    monkeypatch.setattr(devices_module, "detect_hardware", tiny_machine)
    monkeypatch.setattr("stagewise.models.hardware.detect_hardware", tiny_machine)
    assert cli.main(ask_args(settings, image_file)) == cli.EXIT_ERROR
    ask_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert ask_line.startswith("stagewise: error: ") and "does not fit this machine" in ask_line

    host = EngineHost()  # the window's engine side
    try:
        host.worker._hardware = tiny_machine()
        with qtbot.waitSignal(host.worker.model_failed, timeout=60_000) as failed:
            host.load(settings)
        assert failed.args[0] == ask_line.removeprefix("stagewise: error: ")
    finally:
        host.shut_down()


def test_the_same_gpu_layers(monkeypatch, capsys, qtbot, settings, image_file):
    from stagewise.desktop.worker import EngineHost

    planned = []

    class Recording:
        def __init__(self, load, progress=None, prefix_cache=None):
            planned.append(load)
            raise Cancelled("recorded")

    monkeypatch.setattr(session_module, "Session", Recording)
    monkeypatch.setattr("stagewise.models.hardware.detect_hardware", small_gpu_machine)
    cli.main(ask_args(settings, image_file))
    host = EngineHost()
    try:
        host.worker._hardware = small_gpu_machine()
        with qtbot.waitSignal(host.worker.model_failed, timeout=60_000):
            host.load(settings)
    finally:
        host.shut_down()
    assert len(planned) == 2
    from_ask, from_window = planned
    expected = plan(settings.model, settings.mmproj, settings.engine_settings(),
                    settings.search_settings(), hardware=small_gpu_machine())
    assert expected.engine.gpu_layers == 1 and expected.fit.where == "gpu+cpu"
    assert from_ask.engine.gpu_layers == from_window.engine.gpu_layers == \
        expected.engine.gpu_layers
    assert from_ask.engine.n_seq_max == from_window.engine.n_seq_max


def test_ask_and_the_window_start_from_the_same_defaults():
    """Both take their defaults from the settings dataclasses: no literal is typed twice."""
    from stagewise.desktop.cli import ask

    args = cli.build_parser().parse_args(["ask", "--image", "x.png", "--question", "?"])
    window = AppSettings()
    assert ask.search_settings(args) == window.search_settings()
    sequences = window.engine_settings().n_seq_max  # plan() sizes them for every load
    assert replace(ask.engine_settings(args), n_seq_max=sequences) == window.engine_settings()
