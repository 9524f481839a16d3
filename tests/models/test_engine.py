"""The engine's own contract, through real llama.cpp on the tiny pair."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stagewise.models.build.tiny_vlm import TINY, token_id, write_tiny_pair
from stagewise.models.errors import Cancelled, EngineError, ModelFileError, StagewiseError
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.gguf_check import check_pair
from stagewise.models.inference.mtmd_prompt import Bitmap
from stagewise.models.inference.native_owners import live_owners
from stagewise.models.inference.stage_mode import StageMode

REPO = Path(__file__).resolve().parents[2]


def _freed(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the native owners freed, in order, as they logged it."""
    return [r.getMessage().removeprefix("freed the ") for r in caplog.records
            if r.name == "stagewise.llama" and r.getMessage().startswith("freed the ")]


def test_close_frees_everything_and_is_idempotent(tiny_pair, caplog):
    before = live_owners()
    engine = Engine(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=512, n_seq_max=2))
    assert sorted(live_owners()) == sorted([*before, "batch", "context", "model", "projector"])
    with caplog.at_level(logging.DEBUG, logger="stagewise.llama"):
        engine.close()
        engine.close()
    assert _freed(caplog) == ["batch", "projector", "context", "model"]  # the reverse of made
    assert live_owners() == before
    with pytest.raises(EngineError, match="closed"):
        _ = engine.ctx
    with pytest.raises(EngineError, match="closed"):  # not a read of freed memory
        engine.tokenize("Hi?")


@pytest.fixture(scope="module")
def mismatched_projector(tmp_path_factory: pytest.TempPathFactory, tiny_pair) -> Path:
    """A projector whose header passes every check but whose tensors are not those of its
    declared type ("lfm2"): only libmtmd finds out, after the model and its context exist."""
    path = write_tiny_pair(tmp_path_factory.mktemp("mismatched"), TINY,
                           _projector_type="lfm2").mmproj
    check_pair(tiny_pair.model, path)  # the header checks cannot see it
    return path


def test_a_load_that_fails_late_frees_what_it_made(tiny_pair, mismatched_projector, caplog):
    before = live_owners()
    with caplog.at_level(logging.DEBUG, logger="stagewise.llama"), \
            pytest.raises(EngineError) as info:
        Engine(tiny_pair.model, mismatched_projector,
               EngineSettings(n_ctx=512, n_seq_max=1, threads=1))
    message = str(info.value)
    assert message.startswith(f"{mismatched_projector}: libmtmd could not load the projector")
    assert "\n" not in message
    assert _freed(caplog) == ["context", "model"]  # made before the projector failed
    assert live_owners() == before


def test_failed_loads_neither_leak_nor_crash_the_process(tiny_pair, mismatched_projector):
    """Twenty failed loads, then a good one that answers, in a process of its own: a double
    free or a use after free would kill it, and a leak would leave owners alive."""
    code = f"""
from stagewise.models.errors import EngineError
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.native_owners import live_owners
settings = EngineSettings(n_ctx=512, n_seq_max=1, threads=1)
for _ in range(20):
    try:
        Engine({str(tiny_pair.model)!r}, {str(mismatched_projector)!r}, settings)
    except EngineError:
        pass
    assert live_owners() == [], live_owners()
with Engine({str(tiny_pair.model)!r}, {str(tiny_pair.mmproj)!r}, settings) as engine:
    engine.eval_tokens([(0, 0, engine.tokenize("one two"))])
print("OK", live_owners())
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "OK []"


def test_the_context_manager_closes(tiny_pair):
    with Engine(tiny_pair.model, tiny_pair.mmproj,
                EngineSettings(n_ctx=512, n_seq_max=2)) as engine:
        assert engine.name
    with pytest.raises(EngineError):
        _ = engine.ctx


def test_a_bad_pair_is_refused_before_llama_cpp(tiny_pair):
    with pytest.raises(ModelFileError, match="projector"):
        Engine(tiny_pair.mmproj, tiny_pair.model, EngineSettings(n_ctx=512))


def test_model_facts(engine):
    assert engine.stage_mode is StageMode.PROMPTED
    assert not engine.uses_mrope
    prompt = engine.chat_prompt("What is red?")
    assert prompt.startswith("<|im_start|>user\n" + engine.media_marker)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert engine.tokenize("<SUMMARY>") == [token_id("<SUMMARY>")]
    assert engine.piece(token_id("</CONCLUSION>")) == b"</CONCLUSION>"


def test_a_prompt_splits_into_text_image_text(engine, image):
    with Bitmap(image) as bitmap:
        prompt = engine.tokenize_prompt(engine.chat_prompt("Hi?"), bitmap)
    try:
        kinds = [c.is_image for c in prompt.chunks]
        assert kinds == [False, True]  # libmtmd's part ends at the image
        assert prompt.chunks[1].n_tokens == TINY.n_image_tokens
        assert prompt.shared_pos == prompt.chunks[0].n_pos + TINY.n_image_tokens
        after = engine.chat_prompt("Hi?").rpartition(engine.media_marker)[2]
        assert prompt.tail_tokens() == list(prompt.extra) == engine.tokenize(after)
        assert prompt.n_tokens == prompt.chunks[0].n_tokens + TINY.n_image_tokens + len(
            prompt.extra)
    finally:
        prompt.close()


def test_forked_sequences_decode_in_one_batch_and_match_a_single_one(engine, image):
    """Two sequences forked from one prompt give the logits of the prompt alone."""
    with Bitmap(image) as bitmap:
        prompt = engine.tokenize_prompt(engine.chat_prompt("Hi?"), bitmap)
    try:
        engine.clear()
        pos = engine.eval_prompt(prompt, 0)
        token = engine.tokenize("a")[0]
        engine.decode([token], [pos], [0], [True])
        alone = engine.logits(0).copy()
        engine.clear()
        encodes = engine.stats.image_encodes
        engine.eval_prompt(prompt, 0)
        assert engine.stats.image_encodes == encodes + 1
        engine.copy_seq(0, 1)
        engine.copy_seq(0, 2)
        engine.remove_seq(0)
        engine.decode([token, token], [pos, pos], [1, 2], [True, True])
        for index in (0, 1):
            assert abs(engine.logits(index) - alone).max() < 1e-3
    finally:
        prompt.close()
        engine.clear()


def test_eval_tokens_returns_where_each_sequence_logits_are(engine):
    engine.clear()
    runs = [(0, 0, engine.tokenize("one two three")), (1, 0, engine.tokenize("four"))]
    index = engine.eval_tokens(runs)
    assert index == {0: 0, 1: 1}
    assert engine.logits(index[0]).shape == (engine.n_vocab,)
    engine.clear()


def test_a_full_context_is_a_clear_error(tiny_pair):
    with Engine(tiny_pair.model, tiny_pair.mmproj,
                EngineSettings(n_ctx=256, n_batch=64, n_seq_max=1)) as engine:
        tokens = engine.tokenize("x " * 40)[:60]
        with pytest.raises(EngineError, match=f"context of {engine.n_ctx} tokens is full"):
            for start in range(0, engine.n_ctx + 60, 60):
                engine.decode(tokens, list(range(start, start + 60)), [0] * 60, [False] * 60)


def test_load_progress_is_reported_and_can_cancel_the_load(tiny_pair):
    seen: list[float] = []
    with Engine(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=512, threads=1),
                progress=lambda p: seen.append(p) or True):
        pass
    assert seen and seen[-1] == pytest.approx(1.0)
    assert seen == sorted(seen)

    with pytest.raises(Cancelled, match="cancelled"):
        Engine(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=512, threads=1),
               progress=lambda p: False)


def test_a_prompt_longer_than_the_context_is_refused_before_libmtmd(tiny_pair, image):
    with Engine(tiny_pair.model, tiny_pair.mmproj,
                EngineSettings(n_ctx=256, n_batch=64, n_seq_max=1)) as engine, \
            Bitmap(image) as bitmap:
        prompt = engine.tokenize_prompt(engine.chat_prompt("word " * 300), bitmap)
        try:
            with pytest.raises(EngineError, match="raise the context size"):
                engine.eval_prompt(prompt, 0)
        finally:
            prompt.close()


def test_a_context_llama_cpp_would_abort_on_is_refused(tiny_pair):
    """llama.cpp asserts (and the process dies) below 64 tokens of context."""
    with pytest.raises(StagewiseError, match=r"^n_ctx must be a whole number from 256 to "
                                             r"131072 or 0 \(automatic\), not 32$"):
        Engine(tiny_pair.model, tiny_pair.mmproj, EngineSettings(n_ctx=32))


@pytest.mark.parametrize(("change", "words"), [
    ({"n_ctx": 131073}, "n_ctx must be a whole number from 256 to 131072"),
    ({"n_seq_max": 257}, "n_seq_max must be a whole number from 1 to 256"),
    ({"threads": 0}, "threads must be a whole number from 1 to 256 or None"),
    ({"gpu_layers": -2}, "gpu_layers must be a whole number from -1 to 999"),
    ({"n_batch": 0}, "n_batch must be a whole number from 1"),
    ({"flash_attn": "yes"}, "flash_attn must be one of auto, on, off"),
])
def test_settings_out_of_range_are_refused_before_llama_cpp(tiny_pair, change, words):
    before = live_owners()
    with pytest.raises(StagewiseError, match=words):
        Engine(tiny_pair.model, tiny_pair.mmproj, EngineSettings(**{"n_ctx": 512, **change}))
    assert live_owners() == before  # nothing was loaded


def test_an_automatic_context_is_for_a_load_plan_to_size(tiny_pair):
    with pytest.raises(EngineError, match=r"automatic: a load plan sizes it.*256 to 131072"):
        Engine(tiny_pair.model, tiny_pair.mmproj, EngineSettings())


def test_ctrl_c_inside_a_llama_cpp_log_callback_is_delivered_not_dropped(monkeypatch):
    """ctypes prints an exception raised in a callback and drops it: a Ctrl+C that lands
    while llama.cpp logs must still reach the program's SIGINT handler once the callback
    returns.

    The test installs its own handler (and restores the one before), so it does not depend
    on how the process that started pytest set SIGINT up (ignored, say, for a job started
    in the background) or on what an earlier test left installed.
    """
    from stagewise.models.inference.llama_runtime import NativeLog

    native = NativeLog()

    def interrupted(level: int, text: bytes) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(native, "_take", interrupted)
    delivered: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: delivered.append(signum))
    try:
        native._on_log(3, b"loading\n", None)  # returns normally, the interrupt re-armed
        deadline = time.monotonic() + 30
        while not delivered and time.monotonic() < deadline:  # run at the next check
            time.sleep(0.001)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert delivered == [signal.SIGINT]
