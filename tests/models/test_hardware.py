"""Hardware detection, memory estimates and placement plans."""

from __future__ import annotations

import logging
import math
import re
import sys
from pathlib import Path

import gguf
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from stagewise.models.build.tiny_vlm import TINY, TinyPair
from stagewise.models.hardware import (
    QUANT_BITS_PER_WEIGHT,
    Device,
    Hardware,
    Need,
    NeedDetail,
    check_fit,
    detect_hardware,
    estimate_image_tokens,
    estimate_need,
    need_from_detail,
    plan_fit,
)
from stagewise.models.hardware.need import choose_context
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.gguf_header import inspect_gguf
from stagewise.models.inference.llama_runtime import supports_gpu_offload
from stagewise.models.reasoning.search_settings import SearchSettings

GB = 10**9
QUANTS = list(QUANT_BITS_PER_WEIGHT)


# --------------------------------------------------------------------------- detection


def test_detect_hardware_on_this_machine():
    hw = detect_hardware()
    cpus = [d for d in hw.devices if d.kind == "cpu"]
    assert cpus, hw.devices
    assert cpus[0].name == "CPU"
    for device in hw.devices:
        assert 0 <= device.free_bytes <= device.total_bytes
        assert device.kind in ("cpu", "gpu", "igpu", "accel")
    assert hw.ram_total > 0
    assert 0 < hw.ram_available <= hw.ram_total
    assert hw.cpu_count >= 1
    assert hw.gpu_offload is supports_gpu_offload()
    assert hw.gpu_free == sum(d.free_bytes for d in hw.gpus)
    assert 0 <= hw.usable_ram < hw.ram_available


@pytest.mark.skipif(supports_gpu_offload(), reason="this llama.cpp build has a GPU backend")
def test_a_cpu_only_build_offers_no_gpu():
    hw = detect_hardware()
    assert hw.gpu_offload is False
    assert hw.gpus == ()
    assert hw.gpu_free == 0 and hw.usable_vram == 0
    assert not hw.unified_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/meminfo")
def test_linux_ram_comes_from_meminfo():
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    total = int(fields["MemTotal"].split()[0]) * 1024
    hw = detect_hardware()
    assert hw.ram_total <= total
    assert hw.ram_available <= hw.ram_total


# --------------------------------------------------------------------------- estimates


def _kv_bytes_by_hand(model: Path) -> int:
    """KV bytes per cell from the tiny model's metadata, as llama.cpp computes them."""
    md = inspect_gguf(model).metadata
    n_layer = md["llama.block_count"]
    n_embd = md["llama.embedding_length"]
    n_head = md["llama.attention.head_count"]
    n_head_kv = md["llama.attention.head_count_kv"]
    head_dim = n_embd // n_head  # no key_length / value_length keys in the tiny model
    n_embd_k_gqa = n_embd_v_gqa = head_dim * n_head_kv
    return n_layer * (n_embd_k_gqa + n_embd_v_gqa) * 2  # F16


def test_tiny_kv_by_hand(tiny_pair: TinyPair):
    per_cell = _kv_bytes_by_hand(tiny_pair.model)
    assert per_cell == TINY.n_layer * 2 * (TINY.n_embd // TINY.n_head) * TINY.n_head_kv * 2
    need = estimate_need(tiny_pair.model, tiny_pair.mmproj, n_ctx=4000,
                         search=SearchSettings(beam=1, max_stage_tokens=128))
    assert need.context <= 4000
    assert need.n_ctx == 4096  # padded to 256 as llama.cpp pads it
    assert need.kv_cache == 4096 * per_cell
    assert need.detail is not None and need.detail.kv_per_token == per_cell
    assert need.total == need.weights + need.projector + need.kv_cache + need.compute
    assert need.warnings == ()


def test_weights_are_the_tensor_data(tiny_pair: TinyPair):
    for path, expected_params in ((tiny_pair.model, None), (tiny_pair.mmproj, None)):
        info = inspect_gguf(path)
        data = 0
        for dims, type_name in info.tensors.values():
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
            data += math.prod(dims) * size // block
        assert 0.8 * info.file_size < data < info.file_size, (path, data, expected_params)
    need = estimate_need(tiny_pair.model, tiny_pair.mmproj, n_ctx=2048,
                         search=SearchSettings(beam=1, max_stage_tokens=64))
    model_info, mmproj_info = inspect_gguf(tiny_pair.model), inspect_gguf(tiny_pair.mmproj)
    assert need.weights < model_info.file_size
    assert need.projector < mmproj_info.file_size
    assert need.detail is not None
    assert need.detail.params == sum(math.prod(d) for d, _ in model_info.tensors.values())
    assert need.detail.n_layer == TINY.n_layer


def test_the_estimate_matches_what_llama_cpp_allocates(tiny_pair: TinyPair,
                                                       caplog: pytest.LogCaptureFixture):
    for flash in ("off", "on"):
        need = estimate_need(tiny_pair.model, tiny_pair.mmproj, n_ctx=2000,
                             search=SearchSettings(beam=1, max_stage_tokens=128),
                             flash_attn=flash == "on")
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="stagewise.llama"), Engine(
            tiny_pair.model, tiny_pair.mmproj,
            EngineSettings(n_ctx=2000, n_seq_max=3, threads=1, flash_attn=flash),
        ):
            pass
        text = "\n".join(r.getMessage() for r in caplog.records)
        kv = re.search(r"llama_kv_cache: size = +([\d.]+) MiB \( *(\d+) cells", text)
        assert kv, text[-2000:]
        assert int(kv.group(2)) == need.n_ctx == 2048
        assert need.kv_cache / 2**20 == pytest.approx(float(kv.group(1)), abs=0.01)
        compute = re.search(r"CPU compute buffer size = +([\d.]+) MiB", text)
        assert compute, text[-2000:]
        assert need.detail is not None
        text_compute = (need.compute - need.detail.vision_compute) / 2**20
        assert 0.8 * float(compute.group(1)) < text_compute < 1.6 * float(compute.group(1))


def test_wider_beams_need_more_context(tiny_pair: TinyPair):
    def need(beam: int, select: str | None = None) -> Need:
        return estimate_need(tiny_pair.model, tiny_pair.mmproj, n_ctx=2048,
                             search=SearchSettings(beam=beam, max_stage_tokens=256,
                                                   select=select))

    one, four, eight = need(1), need(4), need(8)
    assert one.context < four.context < eight.context
    # beam 1: prompt + image + 4 stages, no judging
    assert one.context == 256 + TINY.n_image_tokens + 4 * 256
    assert four.context >= 256 + TINY.n_image_tokens + 4 * 4 * 256
    # past the requested context the cache grows with the search and a warning says so
    assert four.n_ctx >= four.context > 2048
    assert four.kv_cache > one.kv_cache
    assert any("beam width 4" in w and "2048" in w for w in four.warnings)
    # choosing by log-probability needs no judge prompts
    assert need(4, "logprob").context == 256 + TINY.n_image_tokens + 4 * 4 * 256


def test_flash_attention_only_changes_the_compute_buffer(tiny_pair: TinyPair):
    kw = {"n_ctx": 4096, "search": SearchSettings(beam=2, max_stage_tokens=128)}
    off = estimate_need(tiny_pair.model, tiny_pair.mmproj, flash_attn=False, **kw)
    on = estimate_need(tiny_pair.model, tiny_pair.mmproj, flash_attn=True, **kw)
    assert on.kv_cache == off.kv_cache and on.context == off.context
    assert on.weights == off.weights and on.projector == off.projector
    assert 0 < on.compute < off.compute


def test_image_tokens(tiny_pair: TinyPair, tmp_path: Path):
    assert estimate_image_tokens(tiny_pair.mmproj) == TINY.n_image_tokens
    given = estimate_need(tiny_pair.model, tiny_pair.mmproj, n_ctx=4096,
                          search=SearchSettings(beam=1, max_stage_tokens=64), image_tokens=1000)
    assert given.context == 256 + 1000 + 4 * 64
    assert given.detail is not None and given.detail.image_tokens == 1000

    def projector(name: str, **values: object) -> Path:
        path = tmp_path / f"{name}.gguf"
        w = gguf.GGUFWriter(str(path), "clip")
        for key, value in values.items():
            key = "clip." + key.replace("__", ".")
            if isinstance(value, str):
                w.add_string(key, value)
            elif isinstance(value, list):
                w.add_array(key, value)
            else:
                w.add_uint32(key, value)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path

    # Qwen2.5-VL: a 2048-pixel image in 14-pixel patches merged 2×2, capped at 4096
    qwen = projector("qwen", projector_type="qwen2.5vl_merger", vision__patch_size=14,
                     vision__image_size=560)
    assert estimate_image_tokens(qwen) == 4096
    # Gemma 3: 896/14 = 64 patches a side, pooled 4×4
    gemma = projector("gemma", projector_type="gemma3", vision__patch_size=14,
                      vision__image_size=896)
    assert estimate_image_tokens(gemma) == 256
    # LLaVA-NeXT: 576 tokens per tile, up to a 2×2 grid of tiles plus the overview
    next_ = projector("next", projector_type="mlp", vision__patch_size=14,
                      vision__image_size=336,
                      vision__image_grid_pinpoints=[336, 672, 672, 336, 672, 672])
    assert estimate_image_tokens(next_) == 576 * 5


# --------------------------------------------------------------------------- plans

CPU = Device("CPU", "a CPU", "cpu", 64 * GB, 64 * GB)


def _gpu(free: float, total: float = 24) -> Device:
    return Device("CUDA0", "a GPU", "gpu", int(free * GB), int(total * GB))


def _machine(ram_available: float, *gpus: Device, ram_total: float = 64,
             unified: bool = False) -> Hardware:
    return Hardware(
        devices=(CPU, *gpus), gpu_offload=bool(gpus), ram_total=int(ram_total * GB),
        ram_available=int(ram_available * GB), cpu_count=8, unified_memory=unified,
    )


def _eight_b(quant: str = "Q8_0", n_ctx: int = 8192) -> Need:
    """A Llama-3-8B-sized model with a LLaVA-sized projector, by the estimate's formulas."""
    params, n_layer, n_embd, n_vocab = 8_030_261_248, 32, 4096, 128_256
    detail = NeedDetail(
        params=params, n_layer=n_layer, n_vocab=n_vocab, n_ctx_train=8192,
        kv_per_token=n_layer * 2 * 1024 * 2, attn_per_token=512 * 2,
        logits=512 * n_vocab * 4, activations=512 * (4 * n_embd + 2 * 14336) * 4,
        vision_compute=60 * 10**6, image_tokens=576,
    )
    weights = int(params * QUANT_BITS_PER_WEIGHT[quant] / 8)
    return need_from_detail(detail, weights=weights, projector=600 * 10**6, context=4000,
                            n_ctx=n_ctx)


def test_a_gpu_with_plenty_takes_every_layer():
    need = _eight_b()
    fit = plan_fit(need, _machine(16, _gpu(40, 48)), n_layer=32)
    assert fit.fits and fit.where == "gpu" and fit.gpu_layers == -1
    assert "GPU" in fit.message
    assert fit.recommended_quant == "Q8_0"
    assert fit.need is need


def test_a_small_gpu_takes_some_layers_and_more_vram_takes_more():
    need = _eight_b()
    layers = []
    for free in (4, 6, 8):
        fit = plan_fit(need, _machine(32, _gpu(free, 12)), n_layer=32)
        assert fit.fits and fit.where == "gpu+cpu", fit
        assert 0 < fit.gpu_layers < 32
        assert f"{fit.gpu_layers} of 32 layers" in fit.message
        layers.append(fit.gpu_layers)
    assert layers == sorted(layers) and layers[0] < layers[-1]
    # the layers placed on the GPU really fit in what it has free, with the reserve
    hw = _machine(32, _gpu(8, 12))
    per_layer = (need.weights + need.kv_cache) / 32
    fixed = need.compute + need.projector
    assert fixed + layers[-1] * per_layer <= hw.usable_vram
    assert fixed + (layers[-1] + 1) * per_layer > hw.usable_vram


def test_without_a_gpu_it_must_fit_in_ram():
    need = _eight_b()
    fit = plan_fit(need, _machine(32), n_layer=32)
    assert fit.fits and fit.where == "cpu" and fit.gpu_layers == 0
    assert plan_fit(need, _machine(32, _gpu(40, 48)), n_layer=32, gpu_layers=0).where == "cpu"


def test_nothing_fits_and_the_message_says_what_would():
    need = _eight_b()  # 8.5 GB of Q8_0 weights, 10.6 GB in all
    hw = _machine(7.5, ram_total=8)  # 6.6 GB usable
    fit = plan_fit(need, hw, n_layer=32)
    assert not fit.fits and fit.where == "none"
    assert fit.message.startswith(f"needs {need.total / GB:.1f} GB, ")
    assert fit.recommended_quant in ("Q3_K_M", "Q4_K_M", "Q5_K_M")
    assert f"a {fit.recommended_quant} of this model (about " in fit.message
    assert "would fit" in fit.message
    # the recommended file does fit, the next larger one does not
    bits = QUANT_BITS_PER_WEIGHT[fit.recommended_quant]
    assert plan_fit(need.with_weights(int(need.detail.params * bits / 8)), hw).fits
    larger = QUANTS[QUANTS.index(fit.recommended_quant) - 1]
    bits = QUANT_BITS_PER_WEIGHT[larger]
    assert not plan_fit(need.with_weights(int(need.detail.params * bits / 8)), hw).fits
    # with far too little memory nothing is recommended
    tiny = plan_fit(need, _machine(1.5, ram_total=2), n_layer=32)
    assert not tiny.fits and tiny.recommended_quant is None
    assert "choose a smaller model" in tiny.message


def test_a_smaller_context_is_offered_when_the_cache_is_the_problem():
    need = _eight_b(quant="Q4_K_M", n_ctx=131_072)  # 16 GB of KV cache
    hw = _machine(12, ram_total=16)
    fit = plan_fit(need, hw, n_layer=32)
    assert not fit.fits
    match = re.search(r"a context of at most (\d+) tokens", fit.message)
    assert match, fit.message
    ctx = int(match.group(1))
    assert ctx % 256 == 0 and ctx >= need.context
    assert plan_fit(need.with_context(ctx), hw).fits
    assert not plan_fit(need.with_context(ctx + 256), hw).fits


def test_too_many_fixed_gpu_layers_are_refused_with_advice():
    need = _eight_b()
    hw = _machine(32, _gpu(6, 12))
    fit = plan_fit(need, hw, n_layer=32, gpu_layers=32)
    assert not fit.fits
    assert fit.message.startswith("32 layers on the GPU need ")
    assert "automatic" in fit.message
    auto = plan_fit(need, hw, n_layer=32)
    assert auto.fits and plan_fit(need, hw, n_layer=32, gpu_layers=auto.gpu_layers).fits


def test_unified_memory_counts_against_ram_too():
    need = _eight_b()
    apple = Device("Metal", "Apple M2", "gpu", 20 * GB, 20 * GB)
    assert plan_fit(need, _machine(24, apple, ram_total=32, unified=True)).where == "gpu"
    cramped = plan_fit(need, _machine(6, apple, ram_total=32, unified=True))
    assert not cramped.fits


def test_recommended_quant_grows_with_free_memory():
    need = _eight_b()

    def rank(fit_quant: str | None) -> int:
        return len(QUANTS) if fit_quant is None else QUANTS.index(fit_quant)

    ranks = [rank(plan_fit(need, _machine(gb / 2, ram_total=64)).recommended_quant)
             for gb in range(2, 40)]
    assert ranks == sorted(ranks, reverse=True)
    assert ranks[0] == len(QUANTS) and ranks[-1] == 0
    vram_ranks = [rank(plan_fit(need, _machine(1, _gpu(gb / 2, 48), ram_total=4))
                       .recommended_quant) for gb in range(2, 40)]
    assert vram_ranks == sorted(vram_ranks, reverse=True)
    assert vram_ranks[-1] == 0


def test_check_fit_on_the_tiny_pair(tiny_pair: TinyPair):
    fit = check_fit(tiny_pair.model, tiny_pair.mmproj,
                    EngineSettings(n_ctx=4096, n_seq_max=9), SearchSettings(beam=4),
                    hardware=_machine(8))
    assert fit.fits and fit.where == "cpu"
    assert fit.need is not None and fit.need.context > 4096
    assert fit.warnings and fit.warnings == fit.need.warnings
    few = check_fit(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_seq_max=4),
                    SearchSettings(beam=4), hardware=_machine(8))
    assert any("sequences" in w for w in few.warnings)
    real = check_fit(tiny_pair.model, tiny_pair.mmproj)
    assert real.fits


def test_the_automatic_context_is_the_trained_one_unless_the_search_needs_more():
    assert choose_context(2048, 1000) == 2048
    assert choose_context(2048, 5000) == 5120  # padded to 256
    assert choose_context(131072, 1000) == 8192  # never more than the fallback by itself
    assert choose_context(0, 100) == 8192  # unknown training context


def test_an_automatic_load_of_the_demo_sizes_its_context_and_does_not_warn():
    from stagewise.models.library.demo import demo_pair
    from stagewise.models.session import plan

    pair = demo_pair()
    trained = inspect_gguf(pair.model).metadata["llama.context_length"]
    single = plan(None, None, EngineSettings(),
                  SearchSettings(beam=1, max_stage_tokens=256))
    assert single.engine.n_ctx == trained  # a single pass fits its trained context
    beam = plan(None, None, EngineSettings(), SearchSettings(beam=4, max_stage_tokens=256))
    assert beam.fit.need is not None and beam.engine.n_ctx == beam.fit.need.n_ctx
    assert beam.engine.n_ctx >= beam.fit.need.context > trained  # the beam's cells need more
    # ... but no one sequence is longer than the model was trained for
    assert not beam.fit.warnings, beam.fit.warnings
    long = plan(None, None, EngineSettings(), SearchSettings(beam=4, max_stage_tokens=1024))
    assert any("longer than the model was trained for" in w for w in long.fit.warnings)
    fixed = plan(None, None, EngineSettings(n_ctx=4096), SearchSettings(beam=1))
    assert fixed.engine.n_ctx == 4096  # a size asked for is kept
