"""Finding a model's projector beside it, also in a folder that holds two pairs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagewise.models.errors import StagewiseError
from stagewise.models.library.defaults import resolve_pair
from stagewise.models.library.files import find_mmproj


def _touch(folder: Path, *names: str) -> list[Path]:
    paths = [folder / name for name in names]
    for path in paths:
        path.write_bytes(b"GGUF")
    return paths


def test_the_one_projector_beside_a_model_is_its_own(tmp_path):
    model, mmproj = _touch(tmp_path, "some-model-Q4_K_M.gguf", "mmproj-other-name-f16.gguf")
    assert find_mmproj(model) == mmproj
    alone = tmp_path / "alone"
    alone.mkdir()
    (lonely,) = _touch(alone, "alone-Q8_0.gguf")
    assert find_mmproj(lonely) is None


def test_two_pairs_in_one_folder_each_find_their_own_projector(tmp_path):
    demo, verifier, demo_proj, verifier_proj = _touch(
        tmp_path, "stagewise-demo-Q8_0.gguf", "stagewise-demo-verifier-Q8_0.gguf",
        "mmproj-stagewise-demo-f16.gguf", "mmproj-stagewise-demo-verifier-f16.gguf")
    assert find_mmproj(demo) == demo_proj
    assert find_mmproj(verifier) == verifier_proj
    assert resolve_pair(verifier, None).mmproj == verifier_proj
    qwen, qwen_proj = _touch(tmp_path, "Qwen2.5-VL-3B-Instruct-q4_k_m.gguf",
                             "Qwen2.5-VL-3B-Instruct-mmproj-bf16.gguf")
    assert find_mmproj(qwen) == qwen_proj


def test_several_projectors_none_of_them_named_for_the_model_is_no_guess(tmp_path):
    (model, *_) = _touch(tmp_path, "model-Q8_0.gguf", "mmproj-a-f16.gguf", "mmproj-b-f16.gguf")
    assert find_mmproj(model) is None
    with pytest.raises(StagewiseError, match="no projector chosen and none found beside it"):
        resolve_pair(model, None)
