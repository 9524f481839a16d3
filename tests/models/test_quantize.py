"""llama.cpp's quantizer, through stagewise.models.build.quantize, on the tiny test pair."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from stagewise.models.build.quantize import quantize
from stagewise.models.errors import StagewiseError


def _file_type(path: Path) -> int:
    field = gguf.GGUFReader(str(path)).fields["general.file_type"]
    return int(field.parts[field.data[0]][0])


def test_quantizes_to_q8_0(tiny_pair, tmp_path):
    import llama_cpp

    out = quantize(tiny_pair.model, tmp_path / "q8.gguf", "Q8_0")
    assert out == tmp_path / "q8.gguf"
    assert _file_type(out) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert out.stat().st_size < tiny_pair.model.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["q8.gguf"]


def test_unknown_type_and_missing_source(tmp_path):
    with pytest.raises(StagewiseError, match="unknown quantization 'Q9_9'"):
        quantize(tmp_path / "a.gguf", tmp_path / "b.gguf", "Q9_9")
    with pytest.raises(StagewiseError, match="no such model"):
        quantize(tmp_path / "missing.gguf", tmp_path / "b.gguf")


def test_a_truncated_model_fails_and_leaves_nothing(tiny_pair, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_pair.model.read_bytes()[:4096])
    with pytest.raises(StagewiseError, match="could not quantize"):
        quantize(broken, tmp_path / "out.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.gguf"]
