"""llama.cpp's own converter, fetched for the installed llama-cpp-python, on the tiny Qwen2.5-VL.

The converter is downloaded once (pip's cache helps) into the user's cache folder and kept
there: it is public and the same for every run.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from stagewise.models.build.puzzles import answer_text, generate_split
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.gguf_header import LongArray, inspect_gguf
from stagewise.models.recipes.llava_cot.converter import (
    MARKER,
    ConversionError,
    _extract_converter,
    convert,
    converter_source,
)
from stagewise.models.recipes.llava_cot.tiny_qwen import TINY_PRE_TOKENIZER, build_tiny_qwen25vl

STAGE_MODE = {"stagewise.stage_mode": "native"}


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    puzzles = generate_split("train", 50, 0, set())
    texts = [t for p in puzzles for t in (p.question, answer_text(p))]
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny_qwen") / "hf", texts)


@pytest.fixture(scope="module")
def source() -> Path:
    return converter_source()


@pytest.fixture(scope="module")
def converted(tiny_qwen: Path, source: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    out = tmp_path_factory.mktemp("gguf")
    lines: list[str] = []
    text = convert(tiny_qwen, out / "tiny-f16.gguf", source=source,
                   pre_tokenizer=TINY_PRE_TOKENIZER, metadata=STAGE_MODE, log=lines.append)
    mmproj = convert(tiny_qwen, out / "mmproj-tiny-f16.gguf", source=source, mmproj=True,
                     metadata=STAGE_MODE)
    return text, mmproj, lines


def test_cached_converter_is_complete(source: Path) -> None:
    assert (source / MARKER).is_file()
    assert (source / "convert_hf_to_gguf.py").is_file()
    assert (source / "conversion" / "base.py").is_file()
    assert (source / "gguf-py" / "gguf" / "__init__.py").is_file()
    assert converter_source(source=source) == source


def test_text_model_converts_with_named_pre_tokenizer_and_metadata(
        converted: tuple[Path, Path, list[str]], tiny_qwen: Path) -> None:
    from transformers import AutoTokenizer

    text, _mmproj, lines = converted
    assert any("successfully exported" in line for line in lines)
    info = inspect_gguf(text)
    assert info.architecture == "qwen2vl"
    assert info.metadata["tokenizer.ggml.pre"] == "qwen2"
    assert info.metadata["stagewise.stage_mode"] == "native"
    tokens = info.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, LongArray)
    # the converter pads the vocabulary to the embedding's rows
    assert tokens.length == info.tensors["token_embd.weight"][0][1]
    assert tokens.length >= len(AutoTokenizer.from_pretrained(tiny_qwen))
    assert not list(text.parent.glob(".*.part"))


def test_projector_converts_without_our_metadata(
        converted: tuple[Path, Path, list[str]]) -> None:
    _text, mmproj, _lines = converted
    info = inspect_gguf(mmproj)
    assert info.is_projector
    assert info.metadata["clip.projector_type"] == "qwen2.5vl_merger"
    assert not any(key.startswith("stagewise.") for key in info.metadata)


def test_llama_cpp_loads_the_converted_pair(converted: tuple[Path, Path, list[str]]) -> None:
    text, mmproj, _lines = converted
    settings = EngineSettings(n_ctx=512, n_batch=64, n_seq_max=1, threads=1, gpu_layers=0)
    with Engine(text, mmproj, settings) as engine:
        assert engine.uses_mrope is True
        assert engine.stage_mode.value == "native"


def test_unrecognised_pre_tokenizer_is_explained_and_leaves_no_file(
        tiny_qwen: Path, source: Path, tmp_path: Path) -> None:
    outfile = tmp_path / "tiny.gguf"
    with pytest.raises(ConversionError, match="pre-tokenizer") as caught:
        convert(tiny_qwen, outfile, source=source)
    assert "--pre-tokenizer" in str(caught.value)
    assert "hash" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_empty_source_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"convert_hf_to_gguf\.py"):
        converter_source(source=tmp_path)


def test_source_may_be_an_extracted_sdist(tmp_path: Path) -> None:
    vendored = tmp_path / "vendor" / "llama.cpp"
    (vendored / "conversion").mkdir(parents=True)
    (vendored / "gguf-py").mkdir()
    (vendored / "convert_hf_to_gguf.py").write_text("")
    assert converter_source(source=tmp_path) == vendored


def test_extraction_refuses_paths_that_climb_out(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"print('hi')\n"
        member = tarfile.TarInfo("pkg-1/vendor/llama.cpp/conversion/../../../../escaped.py")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    with pytest.raises(ConversionError, match="unsafe"):
        _extract_converter(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.py").exists()
