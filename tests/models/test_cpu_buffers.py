"""The engine keeps weights out of llama.cpp's AMX buffers unless the user opts in.

The first test is the one that matters on a Xeon with AMX: it loads the shipped demo model
as every front end does and fails if any weight landed in an AMX buffer. Elsewhere it
still checks that the load reported where its weights went.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stagewise.models.build.quantize import quantize
from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.inference import cpu_buffers
from stagewise.models.inference.cpu_buffers import (
    AMX_BUFFER,
    AMX_ENV,
    choose_weight_buffers,
    offered_extra_buffers,
    parse_weight_buffers,
)
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.library.demo import demo_pair

SETTINGS = EngineSettings(n_ctx=1024, n_seq_max=2, threads=2)


@pytest.fixture(autouse=True)
def _no_amx_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AMX_ENV, raising=False)


@pytest.fixture(scope="module")
def q4_model(tiny_pair: TinyPair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model in Q4_0, a type CPU_REPACK takes on AVX2, AVX-512 and NEON."""
    return quantize(tiny_pair.model, tmp_path_factory.mktemp("q4") / "tiny-Q4_0.gguf", "Q4_0")


def _loaded_buffers(model: Path, mmproj: Path, **settings: object) -> dict[str, float]:
    with Engine(model, mmproj, EngineSettings(**{**SETTINGS.__dict__, **settings})) as engine:
        return dict(engine.weight_buffers)


def test_no_weight_of_the_default_model_lands_in_an_amx_buffer() -> None:
    pair = demo_pair()
    assert pair is not None, "the demo model ships with the package"
    buffers = _loaded_buffers(pair.model, pair.mmproj)
    assert sum(buffers.values()) > 1.0, f"the load reported no weights: {buffers}"
    assert not [name for name in buffers if AMX_BUFFER in name.upper()], buffers


def test_opting_in_puts_weights_in_amx_where_the_build_offers_it(tiny_pair: TinyPair,
                                                                  q4_model: Path) -> None:
    offered = offered_extra_buffers()
    if AMX_BUFFER not in offered:
        pytest.skip(f"this CPU's llama.cpp build offers no AMX buffer type "
                    f"(it offers: {', '.join(offered) or 'none'})")
    assert AMX_BUFFER in _loaded_buffers(q4_model, tiny_pair.mmproj, allow_amx=True)
    assert AMX_BUFFER not in _loaded_buffers(q4_model, tiny_pair.mmproj)


@pytest.fixture
def amx_offered(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ...]]:
    """Make the engine believe the CPU backend offers AMX before the real extra types."""
    real = offered_extra_buffers()
    if "CPU_REPACK" not in real:
        pytest.skip(f"this llama.cpp build offers no CPU_REPACK (offers: {real or 'none'})")
    monkeypatch.setattr(cpu_buffers, "offered_extra_buffers", lambda: (AMX_BUFFER, *real))
    yield real


def test_where_amx_is_offered_the_engine_turns_every_extra_buffer_off(
        amx_offered: tuple[str, ...], tiny_pair: TinyPair, q4_model: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert "CPU_REPACK" in _loaded_buffers(q4_model, tiny_pair.mmproj, allow_amx=True)
    assert "CPU_REPACK" not in _loaded_buffers(q4_model, tiny_pair.mmproj)
    monkeypatch.setenv(AMX_ENV, "1")
    assert "CPU_REPACK" in _loaded_buffers(q4_model, tiny_pair.mmproj)


def test_without_amx_the_extra_buffers_stay_on(tiny_pair: TinyPair, q4_model: Path) -> None:
    offered = offered_extra_buffers()
    if "CPU_REPACK" not in offered or AMX_BUFFER in offered:
        pytest.skip(f"needs CPU_REPACK without AMX (this build offers: {offered or 'none'})")
    assert _loaded_buffers(q4_model, tiny_pair.mmproj).get("CPU_REPACK", 0) > 0


@pytest.mark.parametrize(("offered", "setting", "env", "use_extra", "words"), [
    ((), False, None, True, "offers no extra"),
    (("CPU_REPACK",), False, None, True, "no AMX"),
    (("CPU_REPACK",), True, "0", True, "no AMX"),
    (("AMX", "CPU_REPACK"), False, None, False, f"{AMX_ENV}=1 turns it on"),
    (("AMX", "CPU_REPACK"), False, "maybe", False, "CPU_REPACK off with it"),
    (("AMX",), True, None, True, "as the cpu_amx setting asks"),
    (("AMX",), False, "1", True, f"as {AMX_ENV}=1 asks"),
    (("AMX",), True, "off", False, "not used"),
])
def test_the_decision_and_its_reason(offered: tuple[str, ...], setting: bool,
                                     env: str | None, use_extra: bool, words: str) -> None:
    environ = {} if env is None else {AMX_ENV: env}
    choice = choose_weight_buffers(setting, offered=offered, environ=environ)
    assert choice.use_extra is use_extra
    assert choice.allowed == (offered if use_extra else ())
    assert words in choice.reason


def test_buffer_sizes_are_read_from_llama_cpps_load_lines() -> None:
    lines = ["load_tensors: loaded meta data with 3 key-value pairs",
             "load_tensors:   CPU_Mapped model buffer size =     1.62 MiB",
             "load_tensors:          AMX model buffer size =   120.50 MiB",
             "load_tensors:   CPU_Mapped model buffer size =     0.38 MiB"]
    assert parse_weight_buffers(lines) == {"CPU_Mapped": 2.0, "AMX": 120.5}


def test_the_fit_counts_the_re_laid_weights_as_llama_cpp_lays_them(tiny_pair: TinyPair,
                                                                    q4_model: Path) -> None:
    """The load plan's estimate of the resident peak holds the second copy CPU_REPACK keeps,
    to the MiB llama.cpp reports (what made it 13-18% low on the real-shape 4B pairs)."""
    from stagewise.models.hardware import detect_hardware
    from stagewise.models.hardware.fit import check_fit

    offered = offered_extra_buffers()
    if "CPU_REPACK" not in offered or AMX_BUFFER in offered:
        pytest.skip(f"needs CPU_REPACK without AMX (this build offers: {offered or 'none'})")
    hardware = detect_hardware()
    assert dict(hardware.repack).get("Q4_0"), hardware.repack  # every CPU that repacks: Q4_0
    settings = EngineSettings(**{**SETTINGS.__dict__, "gpu_layers": 0})
    need = check_fit(q4_model, tiny_pair.mmproj, settings, hardware=hardware).need
    assert need is not None
    loaded = _loaded_buffers(q4_model, tiny_pair.mmproj, gpu_layers=0)["CPU_REPACK"]
    assert need.repacked / 2**20 == pytest.approx(loaded, abs=0.01)
    # the fit plans with what the run keeps using; the resident peak holds both copies
    assert need.total == need.weights + need.projector + need.kv_cache + need.compute
    assert need.peak == need.total + need.repacked
    f16 = check_fit(tiny_pair.model, tiny_pair.mmproj, settings, hardware=hardware).need
    assert f16 is not None and f16.repacked == 0  # F16 stays as it is on a CPU
