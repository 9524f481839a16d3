"""GGUF files that would make llama.cpp fail or crash are refused with a clear message."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stagewise.models.build.tiny_vlm import TINY, TinyPair, write_tiny_pair
from stagewise.models.errors import ModelFileError
from stagewise.models.inference.gguf_check import (
    check_pair,
    check_projector,
    check_text_model,
    projector_output_width,
    text_input_width,
)
from stagewise.models.inference.gguf_header import LongArray, inspect_gguf

REPO = Path(__file__).resolve().parents[2]


def _refused(check: Callable[[], object], path: Path, *words: str) -> ModelFileError:
    """Runs ``check`` and asserts it raises ModelFileError naming ``path`` and ``words``."""
    with pytest.raises(ModelFileError) as info:
        check()
    error = info.value
    assert error.path == path
    assert str(path) in str(error)
    for word in words:
        assert word in error.problem, error.problem
    return error


def _patch(path: Path, after: bytes, old: bytes, new: bytes, folder: Path) -> Path:
    """Replaces ``old`` by ``new`` (same length) right after ``after`` in a copy of ``path``
    written into ``folder`` (never beside the shared fixture files)."""
    data = bytearray(path.read_bytes())
    at = data.index(after) + len(after)
    assert data[at : at + len(old)] == old
    data[at : at + len(old)] = new
    out = folder / ("patched-" + path.name)
    out.write_bytes(data)
    return out


# --------------------------------------------------------------------------- good files


def test_good_pair_passes(tiny_pair: TinyPair) -> None:
    model, projector = check_pair(tiny_pair.model, tiny_pair.mmproj)
    assert model.architecture == "llama"
    assert model.name == "stagewise-tiny-random"
    assert model.n_embd == text_input_width(model) == TINY.n_embd
    assert model.file_size == tiny_pair.model.stat().st_size
    assert model.metadata["llama.block_count"] == TINY.n_layer
    assert model.metadata["tokenizer.ggml.tokens"] == LongArray("string", 507)
    assert model.value_types["llama.embedding_length"] == "uint32"
    assert model.value_types["tokenizer.ggml.tokens"] == "array[string]"
    assert model.tensors["token_embd.weight"] == ((TINY.n_embd, 507), "F32")
    assert projector.is_projector
    assert projector.projector_type == "mlp"
    assert projector_output_width(projector) == TINY.n_embd
    assert projector.metadata["clip.vision.image_mean"] == pytest.approx(
        [0.4815, 0.4578, 0.4082], abs=1e-4
    )


# --------------------------------------------------------------------------- not GGUF


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.gguf"
    _refused(lambda: check_text_model(path), path, "does not exist")


def test_directory(tmp_path: Path) -> None:
    _refused(lambda: check_projector(tmp_path), tmp_path, "folder")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    _refused(lambda: check_text_model(path), path, "empty")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("these are not weights\n")
    _refused(lambda: check_text_model(path), path, "text file", "not a GGUF")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(40), ("PNG image",)),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n", ("Git LFS pointer",)),
        (struct.pack("<Q", 100) + b'{"__metadata__": {}}', ("safetensors",)),
        (b"PK\x03\x04" + bytes(40), ("ZIP archive",)),
        (bytes(range(256)), ("not a GGUF",)),
    ],
    ids=["png", "lfs", "safetensors", "zip", "binary"],
)
def test_other_formats(tmp_path: Path, content: bytes, words: tuple[str, ...]) -> None:
    path = tmp_path / "weird.gguf"
    path.write_bytes(content)
    _refused(lambda: inspect_gguf(path), path, *words)


# --------------------------------------------------------------------------- truncated


def test_truncated_in_tensor_data(tmp_path: Path, tiny_pair: TinyPair) -> None:
    data = tiny_pair.model.read_bytes()
    path = tmp_path / "half.gguf"
    path.write_bytes(data[: len(data) // 2])
    _refused(lambda: check_text_model(path), path, "truncated", str(len(data)), "50%")


@pytest.mark.parametrize("cut", [6, 20, 3000])
def test_truncated_in_header(tmp_path: Path, tiny_pair: TinyPair, cut: int) -> None:
    path = tmp_path / "head.gguf"
    path.write_bytes(tiny_pair.model.read_bytes()[:cut])
    _refused(lambda: check_text_model(path), path, "truncated", "header")


def test_truncated_projector(tmp_path: Path, tiny_pair: TinyPair) -> None:
    data = tiny_pair.mmproj.read_bytes()
    path = tmp_path / "mmproj.gguf"
    path.write_bytes(data[:-1])
    _refused(lambda: check_projector(path), path, "truncated")


def test_absurd_counts(tmp_path: Path) -> None:
    path = tmp_path / "counts.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**40, 2**40) + bytes(100))
    _refused(lambda: inspect_gguf(path), path, "damaged", "more than the file can hold")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_damaged_bytes_never_escape_as_other_errors(
    tmp_path: Path, tiny_pair: TinyPair, data: st.DataObject
) -> None:
    source, header_end = data.draw(
        st.sampled_from([(tiny_pair.model, 13_120), (tiny_pair.mmproj, 3_008)])
    )  # where each header ends
    raw = bytearray(source.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, header_end))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    path = tmp_path / "fuzzed.gguf"
    path.write_bytes(raw if cut is None else raw[:cut])
    for check in (inspect_gguf, check_text_model, check_projector):
        try:
            check(path)
        except ModelFileError as error:
            assert error.path == path


# --------------------------------------------------------------------------- wrong role


def test_text_model_given_as_projector(tiny_pair: TinyPair) -> None:
    path = tiny_pair.model
    _refused(lambda: check_projector(path), path, "text model", "'llama'", "not a multimodal")


def test_projector_given_as_text_model(tiny_pair: TinyPair) -> None:
    path = tiny_pair.mmproj
    _refused(lambda: check_text_model(path), path, "projector", "not a text model")


def test_pair_given_swapped(tiny_pair: TinyPair) -> None:
    path = tiny_pair.mmproj
    _refused(lambda: check_pair(tiny_pair.mmproj, tiny_pair.model), path, "not a text model")


# --------------------------------------------------------------------------- broken projectors


def test_width_mismatch(tmp_path: Path, tiny_pair: TinyPair) -> None:
    other = write_tiny_pair(tmp_path, TINY, mmproj_n_embd=96)
    check_projector(other.mmproj)  # fine on its own
    path = other.mmproj
    _refused(lambda: check_pair(tiny_pair.model, path), path, "96", "128", "tiny-model.gguf")


def test_missing_image_mean(tmp_path: Path, tiny_pair: TinyPair) -> None:
    path = write_tiny_pair(tmp_path, TINY, _omit_mmproj={"clip.vision.image_mean"}).mmproj
    _refused(lambda: check_pair(tiny_pair.model, path), path, "clip.vision.image_mean")


def test_garbled_header(tmp_path: Path, tiny_pair: TinyPair) -> None:
    # The element count of image_std goes from 3 to 2 while the third float stays:
    # the reader then takes it for the length of the next key and must not crash.
    key = b"clip.vision.image_std" + struct.pack("<II", 9, 6)
    path = _patch(tiny_pair.mmproj, key, struct.pack("<Q", 3), struct.pack("<Q", 2), tmp_path)
    with pytest.raises(ModelFileError) as info:
        check_projector(path)
    assert str(path) in str(info.value)


def test_mlp_without_mm2_weight(tmp_path: Path) -> None:
    path = write_tiny_pair(tmp_path, TINY, _omit_mmproj={"mm.2.weight"}).mmproj
    _refused(lambda: check_projector(path), path, "mm.2.weight")


def test_missing_vision_block_tensor(tmp_path: Path) -> None:
    path = write_tiny_pair(tmp_path, TINY, _omit_mmproj={"v.blk.1.attn_q.weight"}).mmproj
    _refused(lambda: check_projector(path), path, "v.blk.1.attn_q.weight")


def test_no_vision_encoder(tmp_path: Path) -> None:
    path = write_tiny_pair(tmp_path, TINY, _omit_mmproj={"clip.has_vision_encoder"}).mmproj
    _refused(lambda: check_projector(path), path, "no vision encoder")


def test_unknown_projector_type(tmp_path: Path, tiny_pair: TinyPair) -> None:
    key = b"clip.projector_type" + struct.pack("<IQ", 8, 3)
    path = _patch(tiny_pair.mmproj, key, b"mlp", b"xyz", tmp_path)
    _refused(lambda: check_projector(path), path, "'xyz'", "not supported")


def test_wrongly_typed_key(tmp_path: Path, tiny_pair: TinyPair) -> None:
    # uint32 (4) -> int32 (5): same size, but clip.cpp's gguf_get_val_u32 aborts on it.
    key = b"clip.vision.image_size"
    path = _patch(tiny_pair.mmproj, key, struct.pack("<I", 4), struct.pack("<I", 5), tmp_path)
    _refused(lambda: check_projector(path), path, "clip.vision.image_size", "int32", "uint32")


def test_text_model_without_tokenizer(tmp_path: Path) -> None:
    path = write_tiny_pair(tmp_path, TINY, _omit_model={"tokenizer.ggml.model"}).model
    _refused(lambda: check_text_model(path), path, "tokenizer.ggml.model")


# --------------------------------------------------------------------------- with llama.cpp

_LOAD_AFTER_CHECK = textwrap.dedent(
    """
    import sys
    from stagewise.models.errors import ModelFileError
    from stagewise.models.inference.gguf_check import check_pair

    model_path, mmproj_path = sys.argv[1], sys.argv[2]
    try:
        check_pair(model_path, mmproj_path)
    except ModelFileError as error:
        print("REFUSED", error.problem)
        sys.exit(0)

    from llama_cpp import llama_cpp as lc
    from llama_cpp import mtmd_cpp as mtmd

    params = lc.llama_model_default_params()
    params.n_gpu_layers = 0
    model = lc.llama_model_load_from_file(model_path.encode(), params)
    if not model:
        print("LLAMA FAILED")
        sys.exit(0)
    ctx_params = mtmd.mtmd_context_params_default()
    ctx_params.use_gpu = False
    ctx = mtmd.mtmd_init_from_file(mmproj_path.encode(), model, ctx_params)
    print("LOADED" if ctx else "MTMD FAILED")
    """
)


def _broken_pair(kind: str, directory: Path, good: TinyPair) -> TinyPair:
    if kind == "good":
        return good
    if kind == "truncated":
        data = good.model.read_bytes()
        cut = directory / "truncated.gguf"
        cut.write_bytes(data[: len(data) // 2])
        return TinyPair(cut, good.mmproj)
    if kind == "width":
        return TinyPair(good.model, write_tiny_pair(directory, TINY, mmproj_n_embd=96).mmproj)
    if kind == "no_image_mean":
        omit = {"clip.vision.image_mean"}
    elif kind == "no_mm2_weight":
        omit = {"mm.2.weight"}
    else:
        raise AssertionError(kind)
    return TinyPair(good.model, write_tiny_pair(directory, TINY, _omit_mmproj=omit).mmproj)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("good", "LOADED"),
        ("truncated", "REFUSED"),
        ("width", "REFUSED"),
        ("no_image_mean", "REFUSED"),
        ("no_mm2_weight", "REFUSED"),  # llama.cpp itself would segfault on this one
    ],
)
def test_check_then_load_in_subprocess(
    tmp_path: Path, tiny_pair: TinyPair, kind: str, expected: str
) -> None:
    pair = _broken_pair(kind, tmp_path, tiny_pair)
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_AFTER_CHECK, str(pair.model), str(pair.mmproj)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(expected), result.stdout
