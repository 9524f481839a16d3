"""The tiny random-weight pair loads and runs through the real llama.cpp and mtmd."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from llama_cpp import llama_cpp as lc
from llama_cpp import mtmd_cpp as mtmd

from stagewise.models.build.tiny_vlm import (
    BENCH,
    EOS_TOKEN,
    STAGE_TAGS,
    TINY,
    TinyPair,
    TinySpec,
    token_id,
    vocabulary,
    write_tiny_pair,
)
from stagewise.models.inference.gguf_check import check_pair


@dataclass
class Loaded:
    model: lc.llama_model_p
    vocab: lc.llama_vocab_p
    ctx: lc.llama_context_p
    mtmd: mtmd.mtmd_context_p


@pytest.fixture(scope="module")
def backend() -> None:
    lc.llama_backend_init()


def _load(pair: TinyPair) -> Loaded:
    mparams = lc.llama_model_default_params()
    mparams.n_gpu_layers = 0
    model = lc.llama_model_load_from_file(str(pair.model).encode(), mparams)
    assert model, "llama.cpp refused the tiny text model"
    cparams = lc.llama_context_default_params()
    cparams.n_ctx = 1024
    cparams.n_batch = 512
    cparams.n_threads = 1
    cparams.n_threads_batch = 1
    ctx = lc.llama_init_from_model(model, cparams)
    assert ctx
    params = mtmd.mtmd_context_params_default()
    params.use_gpu = False
    params.print_timings = False
    params.n_threads = 1
    mctx = mtmd.mtmd_init_from_file(str(pair.mmproj).encode(), model, params)
    assert mctx, "mtmd refused the tiny projector"
    return Loaded(model, lc.llama_model_get_vocab(model), ctx, mctx)


def _free(loaded: Loaded) -> None:
    mtmd.mtmd_free(loaded.mtmd)
    lc.llama_free(loaded.ctx)
    lc.llama_model_free(loaded.model)


@pytest.fixture(scope="module")
def loaded(backend: None, tiny_pair: TinyPair) -> Iterator[Loaded]:
    result = _load(tiny_pair)
    yield result
    _free(result)


def _tokenize(vocab: lc.llama_vocab_p, text: str, *, special: bool = False) -> list[int]:
    data = text.encode()
    buf = (lc.llama_token * 256)()
    n = lc.llama_tokenize(vocab, data, len(data), buf, 256, False, special)
    assert n >= 0
    return list(buf[:n])


def _piece(vocab: lc.llama_vocab_p, token: int) -> str:
    buf = ctypes.create_string_buffer(64)
    n = lc.llama_token_to_piece(vocab, token, buf, 64, 0, True)
    return buf.raw[:n].decode()


@dataclass
class Evaluated:
    n_image_tokens: int
    n_past: int
    first_logits: np.ndarray
    generated: list[int]


def _image(seed: int, width: int = 120, height: int = 90) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _eval_image_prompt(loaded: Loaded, pixels: np.ndarray, n_generate: int = 24) -> Evaluated:
    """Tokenizes a chat prompt with one image, evaluates it and decodes greedily."""
    marker = mtmd.mtmd_default_marker().decode()
    prompt = (
        f"<|im_start|>user\n{marker}\nWhat is in the image?<|im_end|>\n<|im_start|>assistant\n"
    ).encode()
    height, width, _ = pixels.shape
    data = (ctypes.c_uint8 * pixels.size).from_buffer_copy(pixels.tobytes())
    bitmap = mtmd.mtmd_bitmap_init(width, height, data)
    chunks = mtmd.mtmd_input_chunks_init()
    try:
        text = mtmd.mtmd_input_text()
        text.text = prompt
        text.text_len = len(prompt)
        text.add_special = True
        text.parse_special = True
        bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        assert mtmd.mtmd_tokenize(loaded.mtmd, chunks, ctypes.byref(text), bitmaps, 1) == 0
        n_image = [
            mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            for i in range(mtmd.mtmd_input_chunks_size(chunks))
            if mtmd.mtmd_input_chunk_get_type(chunk := mtmd.mtmd_input_chunks_get(chunks, i))
            == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE
        ]
        assert len(n_image) == 1
        lc.llama_memory_clear(lc.llama_get_memory(loaded.ctx), True)
        new_n_past = lc.llama_pos(0)
        status = mtmd.mtmd_helper_eval_chunks(
            loaded.mtmd, loaded.ctx, chunks, 0, 0, 512, True, ctypes.byref(new_n_past)
        )
        assert status == 0
    finally:
        mtmd.mtmd_input_chunks_free(chunks)
        mtmd.mtmd_bitmap_free(bitmap)

    n_vocab = lc.llama_vocab_n_tokens(loaded.vocab)
    first = None
    generated: list[int] = []
    for _ in range(n_generate):
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(loaded.ctx, -1), shape=(n_vocab,))
        if first is None:
            first = logits.copy()
        token = int(np.argmax(logits))
        generated.append(token)
        batch = lc.llama_batch_get_one((lc.llama_token * 1)(token), 1)
        assert lc.llama_decode(loaded.ctx, batch) == 0
    assert first is not None
    return Evaluated(n_image[0], new_n_past.value, first, generated)


def test_files_are_small(tiny_pair: TinyPair) -> None:
    total = tiny_pair.model.stat().st_size + tiny_pair.mmproj.stat().st_size
    assert total < 3_000_000


def test_same_seed_gives_same_bytes(tmp_path: Path, tiny_pair: TinyPair) -> None:
    again = write_tiny_pair(tmp_path, TINY)
    assert again.model.read_bytes() == tiny_pair.model.read_bytes()
    assert again.mmproj.read_bytes() == tiny_pair.mmproj.read_bytes()


def test_metadata_passes_the_checks(tmp_path: Path) -> None:
    pair = write_tiny_pair(tmp_path, TINY, stage_mode="native")
    model, projector = check_pair(pair.model, pair.mmproj)
    assert model.metadata["stagewise.stage_mode"] == "native"
    assert model.metadata["tokenizer.ggml.pre"] == "gpt-2"
    assert model.n_embd == TINY.n_embd
    assert projector.metadata["clip.projector_type"] == "mlp"


def test_rejects_unknown_stage_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stage_mode"):
        write_tiny_pair(tmp_path, TINY, stage_mode="sometimes")


def test_stage_tags_are_single_user_tokens(loaded: Loaded) -> None:
    ids = _tokenize(loaded.vocab, "<SUMMARY>hi</SUMMARY>")
    assert ids[0] == token_id("<SUMMARY>")
    assert ids[-1] == token_id("</SUMMARY>")
    assert "".join(_piece(loaded.vocab, t) for t in ids) == "<SUMMARY>hi</SUMMARY>"
    for tag in STAGE_TAGS:
        assert _tokenize(loaded.vocab, tag) == [token_id(tag)]
        # Inside text, too (the space before it stays a token of its own).
        ids = _tokenize(loaded.vocab, f"x {tag}\n")
        assert ids.count(token_id(tag)) == 1
        assert "".join(_piece(loaded.vocab, t) for t in ids) == f"x {tag}\n"
        assert _piece(loaded.vocab, token_id(tag)) == tag


def test_vocabulary_matches_llama_cpp(loaded: Loaded) -> None:
    assert lc.llama_vocab_n_tokens(loaded.vocab) == len(vocabulary())
    assert lc.llama_vocab_eos(loaded.vocab) == token_id(EOS_TOKEN)
    assert lc.llama_vocab_is_eog(loaded.vocab, token_id(EOS_TOKEN))
    # Merges make common words a single token.
    assert len(_tokenize(loaded.vocab, " the image")) == 2
    text = "The answer is 42, isn't it?\n"
    assert "".join(_piece(loaded.vocab, t) for t in _tokenize(loaded.vocab, text)) == text


def test_chat_template_is_chatml(loaded: Loaded) -> None:
    template = lc.llama_model_chat_template(loaded.model, None)
    assert template
    messages = (lc.llama_chat_message * 2)()
    messages[0].role, messages[0].content = b"system", b"Be brief."
    messages[1].role, messages[1].content = b"user", b"Hello"
    buf = ctypes.create_string_buffer(1024)
    n = lc.llama_chat_apply_template(template, messages, 2, True, buf, 1024)
    assert buf.raw[:n].decode() == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_image_prompt_evaluates_and_generates(loaded: Loaded) -> None:
    result = _eval_image_prompt(loaded, _image(1))
    assert result.n_image_tokens == TINY.n_image_tokens == 64
    assert result.n_past > TINY.n_image_tokens
    assert np.isfinite(result.first_logits).all()
    # Greedy decoding moves between tokens rather than repeating one forever...
    assert len(set(result.generated)) > 5
    # ...and never emits control tokens, stage tags or text that is not ASCII.
    text = "".join(_piece(loaded.vocab, t) for t in result.generated)
    assert text.isascii()
    assert not any(tag in text for tag in STAGE_TAGS)


def test_image_changes_the_output(loaded: Loaded) -> None:
    a = _eval_image_prompt(loaded, _image(1), n_generate=1)
    b = _eval_image_prompt(loaded, _image(2), n_generate=1)
    again = _eval_image_prompt(loaded, _image(1), n_generate=1)
    assert not np.allclose(a.first_logits, b.first_logits)
    np.testing.assert_allclose(a.first_logits, again.first_logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec", [TINY, BENCH], ids=lambda s: s.name)
def test_image_token_count_matches_spec(
    backend: None, tmp_path: Path, spec: TinySpec, tiny_pair: TinyPair
) -> None:
    pair = tiny_pair if spec is TINY else write_tiny_pair(tmp_path, spec)
    loaded = _load(pair)
    try:
        result = _eval_image_prompt(loaded, _image(3, 200, 150), n_generate=2)
    finally:
        _free(loaded)
    assert result.n_image_tokens == spec.n_image_tokens
    assert BENCH.n_image_tokens == 256
