"""The PRM recipe: a Hugging Face PRM folder converted, checked and registered, then used.

Hubs are unreachable here, so the folder is a random-weight PRM of VL-PRM's shape
(Qwen2.5-VL in miniature) on Qwen2's real tokenizer, rebuilt from llama.cpp's own copy of
that vocabulary; the converter must recognise it as Qwen2's by hash, as it would a download.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from stagewise.models.errors import StagewiseError
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.gguf_header import inspect_gguf
from stagewise.models.library.catalogue import find_entry, load_catalogue
from stagewise.models.library.installed import Library
from stagewise.models.reasoning.prm_verifier import SYSTEM_KEY, VL_PRM_SYSTEM, PrmVerifier
from stagewise.models.recipes.llava_cot.converter import converter_source
from stagewise.models.recipes.prm.__main__ import main
from stagewise.models.recipes.prm.build import build_prm
from stagewise.models.recipes.prm.checks import answer_tokens, check_folder
from stagewise.models.recipes.prm.tiny import tiny_prm_folder
from stagewise.models.recipes.real_vocab import REAL_VOCABULARIES
from tests.desktop.test_cli import ROOT, stagewise
from tests.models.test_catalogue_prm import PRM_ENTRY

QUESTION = "How many red circles are there?"


@pytest.fixture(scope="module")
def source() -> Path:
    return converter_source()


@pytest.fixture(scope="module")
def hf(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the random-weight PRM folder (the recipe writes nothing into it, but a
    copy keeps the cached one safe from a test that would)."""
    folder = tmp_path_factory.mktemp("prm") / "Qwen-VL-PRM-3B"
    return Path(shutil.copytree(tiny_prm_folder(source=source), folder))


def _recipe(*args: str | Path, data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stagewise.models.recipes.prm", *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={**os.environ, "STAGEWISE_DATA_DIR": str(data), **env})


def test_the_folder_has_qwen2s_real_tokenizer(hf: Path, source: Path) -> None:
    """llama.cpp's test texts for the Qwen2 vocabulary tokenize to the ids it expects."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf)
    vocab_file = REAL_VOCABULARIES["qwen2"].files(source)[0]
    texts = vocab_file.with_name(vocab_file.name + ".inp").read_text(encoding="utf-8")
    expected = vocab_file.with_name(vocab_file.name + ".out").read_text(encoding="utf-8")
    pairs = list(zip(texts.split("\n__ggml_vocab_test__\n"), expected.split("\n"), strict=False))
    assert len(pairs) > 40
    for text, ids in pairs:
        assert tokenizer.encode(text, add_special_tokens=False) == [int(i) for i in ids.split()]
    assert tokenizer.convert_tokens_to_ids(["+", "-", "<|im_end|>", "<|vision_start|>"]) == [
        10, 12, 151645, 151652]


def test_convert_registers_a_prm_the_prm_selection_uses(hf: Path, tmp_path: Path,
                                                        tiny_pair, image_file: Path) -> None:
    data = tmp_path / "data"
    built = _recipe("convert", hf, "--id", "vl-prm-3b", data=data)
    assert built.returncode == 0, built.stderr + built.stdout
    out = built.stdout
    assert "Qwen2_5_VLForConditionalGeneration, the weights of ob11/Qwen-VL-PRM-3B" in out
    assert "answers: '+' is token 10, '-' is token 12, one token each" in out
    assert "shape = {" not in out and "converting to q8_0" not in out  # no line per tensor
    home = data / "models" / "vl-prm-3b"
    (record,) = Library(data / "models").installed()
    assert (record.id, record.model, record.mmproj) == (
        "vl-prm-3b", home / "vl-prm-3b-Q8_0.gguf", home / "mmproj-vl-prm-3b-f16.gguf")
    card = json.loads((home / "card.json").read_text())
    assert card["answer_ids"] == [10, 12] and card["quant"] == "Q8_0"
    assert not list((hf.parent / f"{hf.name}-gguf").glob("*.gguf"))  # F16 gone, once used
    text = inspect_gguf(record.model)
    assert text.metadata["tokenizer.ggml.pre"] == "qwen2"  # recognised by hash, not named
    assert text.metadata["general.file_type"] == 7  # LLAMA_FTYPE_MOSTLY_Q8_0
    assert SYSTEM_KEY not in text.metadata  # VL-PRM's is the selection's default
    assert inspect_gguf(record.mmproj).metadata["clip.projector_type"] == "qwen2.5vl_merger"

    listed = stagewise("models", "list", data_dir=data).stdout
    row = next(line for line in listed.splitlines() if "vl-prm-3b" in line)
    assert row.startswith("*") and "process reward model, scores steps for --select prm" in row
    info = stagewise("models", "info", "vl-prm-3b", data_dir=data).stdout
    assert "--scorer-model vl-prm-3b; it does not answer questions" in info
    assert f"installed: {record.model}" in info

    asked = stagewise("ask", "--model", tiny_pair.model, "--mmproj", tiny_pair.mmproj,
                      "--image", image_file, "--question", QUESTION, "--beam", "2",
                      "--select", "prm", "--scorer-model", "vl-prm-3b",
                      "--max-stage-tokens", "6", "--json", "--no-history", data_dir=data,
                      timeout=300)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["status"] == "finished" and answer["select"] == "prm"
    for candidates in answer["candidates"].values():
        scores = [c["score"] for c in candidates]
        assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)
        assert next(c for c in candidates if c["chosen"])["score"] == max(scores)


def test_a_prms_own_system_message_is_written_and_read(hf: Path, source: Path,
                                                       tmp_path: Path, image) -> None:
    """As VisualPRM's is: the catalogue entry's system prompt goes into the GGUF, where the
    prm selection finds it (a [[prm]] entry of VL-PRM's shape here, kept F16)."""
    system = "Judge each step.\n\nAnswer \"+\" or \"-\"."
    catalogue = tmp_path / "catalogue.toml"
    catalogue.write_text((ROOT / "models/data/catalogue.toml").read_text(encoding="utf-8")
                         + "\n" + PRM_ENTRY + f"system_prompt = {json.dumps(system)}\n",
                         encoding="utf-8")
    entry = find_entry("test-prm", load_catalogue(catalogue))
    lines: list[str] = []
    record = build_prm(hf, entry, work=tmp_path / "work", source=source, quant="F16",
                       library=Library(tmp_path / "models"), log=lines.append)
    assert record.model == tmp_path / "models" / "test-prm" / "test-prm-F16.gguf"
    assert inspect_gguf(record.model).metadata[SYSTEM_KEY] == system
    with Engine(record.model, record.mmproj,
                EngineSettings(n_ctx=2048, n_seq_max=2, threads=2)) as engine:
        verifier = PrmVerifier(engine)
        assert verifier.system == system != VL_PRM_SYSTEM
        assert (verifier.good, verifier.bad) == (10, 12)
        verifier.start(image, QUESTION)
        try:
            (score,) = verifier.score(None, "", ["<SUMMARY>Count.</SUMMARY>"])
        finally:
            verifier.finish()
    assert 0.0 < score < 1.0
    assert not (tmp_path / "work" / "test-prm-F16.gguf").exists()  # moved, not copied


def _config(folder: Path, config: dict, weights: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if weights:
        (folder / "model.safetensors").write_bytes(b"")
    return folder


INTERNVL = {"architectures": ["InternVLChatModel"],
            "llm_config": {"architectures": ["Qwen2ForCausalLM"]}}


def test_a_folder_that_is_not_the_entrys_weights_is_refused_before_converting(
        hf: Path, tmp_path: Path) -> None:
    visual = find_entry("visualprm-8b-v1.1")
    with pytest.raises(StagewiseError, match="holds a Qwen2_5_VLForConditionalGeneration, "
                       "not the InternVLChatModel that OpenGVLab/VisualPRM-8B-v1_1"):
        check_folder(hf, visual)
    v1 = _config(tmp_path / "v1", {**INTERNVL, "llm_config": {
        "architectures": ["InternLM2ForCausalLM"]}})
    with pytest.raises(StagewiseError, match=r"InternLM2ForCausalLM .VisualPRM-8B v1's.: "
                       r"llama.cpp's converter has no InternLM2 text model"):
        check_folder(v1, visual)
    facts = check_folder(_config(tmp_path / "v11", {**INTERNVL, "system_message": "Hi"}), visual)
    assert (facts.architecture, facts.language_model, facts.system_message) == (
        "InternVLChatModel", "Qwen2ForCausalLM", "Hi")
    with pytest.raises(StagewiseError, match=r"no weights .*download the whole repository"):
        check_folder(_config(tmp_path / "bare", INTERNVL, weights=False), visual)
    with pytest.raises(StagewiseError, match="not a Hugging Face model folder"):
        check_folder(tmp_path, find_entry("vl-prm-3b"))


def test_the_answers_must_be_single_tokens_spelt_plus_and_minus(source: Path) -> None:
    models = source / "models"
    assert answer_tokens(models / "ggml-vocab-qwen2.gguf") == (10, 12)
    with pytest.raises(StagewiseError, match=r"'\+' is 1 token\(s\) \[' \+'\]"):
        answer_tokens(models / "ggml-vocab-llama-spm.gguf")  # SentencePiece: "▁+", another


@pytest.mark.parametrize(("args", "words"), [
    (["convert", "HF", "--id", "qwen2.5-vl-3b-q4"], ["a model that answers", "vl-prm-3b"]),
    (["convert", "HF", "--id", "vl-prm-3c"], ["did you mean", "'vl-prm-3b'"]),
    (["convert", "HF", "--id", "vl-prm-3b", "--quant", "Q2_K"], ["invalid choice"]),
    (["download", "vl-prm-3b", "OUT"], ["could not download ob11/Qwen-VL-PRM-3B"]),
])
def test_bad_requests_are_one_line(args: list[str], words: list[str], tmp_path: Path,
                                   monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never the network, in a test
    args = [str(tmp_path / a) if a in ("HF", "OUT") else a for a in args]
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    assert code in (1, 2)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(lines) and all(w in lines[-1] for w in words), lines
