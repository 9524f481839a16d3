"""The catalogue's process reward models: verifiers built here, never models to answer with."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stagewise.models.errors import StagewiseError
from stagewise.models.hardware import Device, Hardware
from stagewise.models.library.catalogue import (
    CatalogueError,
    CatalogueFile,
    find_entry,
    load_catalogue,
)
from stagewise.models.library.installed import Library
from stagewise.models.library.recommend import recommend

PRMS = {"vl-prm-3b": "ob11/Qwen-VL-PRM-3B", "vl-prm-7b": "ob11/Qwen-VL-PRM-7B",
        "visualprm-8b-v1.1": "OpenGVLab/VisualPRM-8B-v1_1"}

PRM_ENTRY = """\
[[prm]]
id = "test-prm"
name = "Test PRM"
family = "qwen2.5-vl"
weights = "owner/Test-PRM"
model_file = "models/test-prm/test-prm-Q8_0.gguf"
model_bytes = 0
model_sha256 = ""
mmproj_file = "models/test-prm/mmproj-test-prm-f16.gguf"
mmproj_bytes = 0
mmproj_sha256 = ""
quant = "Q8_0"
params = "3B"
licence = "mit"
licence_url = "https://example.org/licence"
sources = ["https://example.org/prm"]
"""

ANSWERING = """\
[[model]]
id = "demo-q4"
name = "Demo"
family = "qwen2.5-vl"
repo = "owner/Demo-GGUF"
model_file = "Demo-Q4_K_M.gguf"
model_bytes = 10
model_sha256 = "{sha}"
mmproj_file = "mmproj-Demo-f16.gguf"
mmproj_bytes = 20
mmproj_sha256 = "{sha}"
quant = "Q4_K_M"
params = "3B"
licence = "apache-2.0"
licence_url = "https://example.org/licence"
stage_mode = "prompted"
thinking = false
sources = ["https://example.org/demo"]
""".replace("{sha}", "a" * 64)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalogue.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_open_prms_llama_cpp_can_run_are_verifiers_built_here() -> None:
    catalogue = load_catalogue()
    verifiers = {e.id: e for e in catalogue if e.verifier}
    assert {i: e.weights for i, e in verifiers.items()} == PRMS
    for entry in verifiers.values():
        assert entry.local and entry.repo is None and entry.role == "verifier"
        assert not entry.thinking and entry.licence and entry.licence_url.startswith("https://")
        assert entry.model.name == f"models/{entry.id}/{entry.id}-{entry.quant}.gguf"
        assert entry.mmproj.name == f"models/{entry.id}/mmproj-{entry.id}-f16.gguf"
        assert "Not run here (hubs unreachable)" in entry.notes
        assert entry.build_command.endswith(f"convert HF_FOLDER --id {entry.id}")
    assert all(not e.verifier and e.weights is None and not e.system_prompt
               for e in catalogue if e.id not in PRMS)
    assert [verifiers[i].family for i in PRMS] == ["qwen2.5-vl", "qwen2.5-vl", "internvl"]


def test_only_visualprm_carries_its_own_system_message() -> None:
    """VL-PRM's is the prm selection's default; VisualPRM's differs (its training data's)."""
    from stagewise.models.reasoning.prm_verifier import VL_PRM_SYSTEM

    visual = find_entry("visualprm-8b-v1.1")
    assert visual.system_prompt.startswith(
        "You are an advanced AI assistant, designed to serve as a process supervision model.")
    assert visual.system_prompt.endswith(
        "verify the accuracy and correctness of each step in the given solution process.")
    assert visual.system_prompt == visual.system_prompt.strip() != VL_PRM_SYSTEM
    assert visual.system_prompt.count("\n\n") == 5 and '**"+"**' in visual.system_prompt
    assert "UNCONFIRMED" in visual.notes and "Qwen2ForCausalLM" in visual.notes
    assert not find_entry("vl-prm-3b").system_prompt and not find_entry("vl-prm-7b").system_prompt


def test_a_prm_table_round_trips(tmp_path: Path) -> None:
    text = PRM_ENTRY + 'system_prompt = """Judge.\nSay + or -."""\n'
    prm, answering = load_catalogue(_write(tmp_path, ANSWERING + "\n" + text))[::-1]
    assert prm.verifier and prm.local and prm.weights == "owner/Test-PRM"
    assert prm.system_prompt == "Judge.\nSay + or -." and prm.stage_mode == "prompted"
    assert not answering.verifier and answering.role == "answer"


@pytest.mark.parametrize(("old", "new", "message"), [
    ('quant = "Q8_0"', 'quant = "Q8_0"\nstage_mode = "prompted"', "unknown field(s) stage_mode"),
    ('quant = "Q8_0"', 'quant = "Q8_0"\nthinking = false', "unknown field(s) thinking"),
    ('quant = "Q8_0"', 'quant = "Q8_0"\nrepo = "owner/x"', "unknown field(s) repo"),
    ('weights = "owner/Test-PRM"\n', "", "missing field(s) weights"),
    ('weights = "owner/Test-PRM"', 'weights = "nope"', "weights 'nope' must look like"),
    ('family = "qwen2.5-vl"', 'family = "llava-cot-local"', "unknown family"),
    ('sources = ["https://example.org/prm"]', 'sources = ["the model card"]', "no link"),
])
def test_a_bad_prm_table_is_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in PRM_ENTRY
    with pytest.raises(CatalogueError) as info:
        load_catalogue(_write(tmp_path, ANSWERING + "\n" + PRM_ENTRY.replace(old, new)))
    assert message in str(info.value) and "[[prm]] #1 (test-prm)" in str(info.value)


def test_only_a_prm_table_has_weights_or_a_system_prompt(tmp_path: Path) -> None:
    for extra in ('weights = "owner/x"', 'system_prompt = "Judge."'):
        with pytest.raises(CatalogueError, match="unknown field"):
            load_catalogue(_write(tmp_path, ANSWERING.replace("thinking = false",
                                                               f"thinking = false\n{extra}")))
    with pytest.raises(CatalogueError, match=r"no \[\[model\]\] or \[\[local\]\] entries"):
        load_catalogue(_write(tmp_path, PRM_ENTRY))  # verifiers alone answer nothing


def test_a_prm_is_never_the_model_suggested_to_answer_with() -> None:
    """Even a PRM with known sizes and a repository, the largest that fits, is passed over."""
    catalogue = load_catalogue()
    big = replace(find_entry("vl-prm-7b", catalogue), repo="ob11/made-up-GGUF",
                  model=CatalogueFile("a.gguf", 9 * 10**9, "a" * 64),
                  mmproj=CatalogueFile("mmproj-a.gguf", 10**9, "a" * 64))
    ram = 64 * 10**9
    machine = Hardware(devices=(Device("CPU", "a CPU", "cpu", ram, ram),
                                Device("CUDA0", "a GPU", "gpu", ram, ram)),
                       gpu_offload=True, ram_total=ram, ram_available=ram, cpu_count=8)
    choice = recommend((*catalogue, big), machine)
    assert choice is not None and not choice.verifier
    assert recommend((big,), machine) is None


def test_pulling_a_prm_says_how_it_is_built(tmp_path: Path) -> None:
    with pytest.raises(StagewiseError, match=r"vl-prm-3b is built locally, not downloaded: "
                       r"python -m stagewise\.models\.recipes\.prm download vl-prm-3b"):
        Library(tmp_path / "models").pull(find_entry("vl-prm-3b"))
