"""`stagewise ask` as a person runs it: a real process, real llama.cpp, real files.

Every bad input runs in its own process, so that a C-level abort would show up as a
signal instead of taking the test run down with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stagewise.models.build.tiny_vlm import TINY, TinyPair, write_tiny_pair
from stagewise.models.storage.app_settings import settings_from_json
from tests.models.test_images import write_header_only_png

ROOT = Path(__file__).resolve().parents[2]


def stagewise(*args: str | Path, data_dir: Path | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if data_dir is not None:
        env["STAGEWISE_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "stagewise.desktop.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )


def ask(pair: TinyPair, image: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return stagewise("ask", "--model", pair.model, "--mmproj", pair.mmproj, "--image", image,
                     "--question", "How many circles?", "--max-stage-tokens", "10", *extra)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stagewise: error: ")
    for word in words:
        assert word in lines[0], lines[0]


def test_json_output_has_stages_candidates_verdicts_and_timings(tiny_pair, image_file):
    result = ask(tiny_pair, image_file, "--beam", "2", "--select", "judge", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data["stages"]) == ["summary", "caption", "reasoning", "conclusion"]
    assert all(text.strip() for text in data["stages"].values())
    for stage in data["stages"]:
        assert len(data["candidates"][stage]) == 2
        assert sum(c["chosen"] for c in data["candidates"][stage]) == 1
    assert len(data["verdicts"]) == 4
    assert data["timings"]["image_encodes"] == 1
    assert data["status"] == "finished"
    memory = data["memory"]  # the plan's estimate beside what the process really held
    assert memory["estimated_bytes"] > tiny_pair.model.stat().st_size
    assert memory["peak_rss_bytes"] > 10 * 2**20


def test_beam_auto_measures_a_single_pass_first_then_chooses(tiny_pair, image_file):
    result = ask(tiny_pair, image_file, "--question", "And the square?",
                 "--max-stage-tokens", "4", "--select", "logprob", "--json")
    assert result.returncode == 0, result.stderr
    first, second = json.loads(result.stdout)
    assert first["beam"] == 1 and "a single pass first" in result.stderr
    chosen = [line for line in result.stderr.splitlines() if "(auto, " in line]
    assert len(chosen) == 1 and f"beam {second['beam']} (auto" in chosen[0]
    assert second["beam"] in (1, 2, 4)


def test_streaming_output_shows_the_four_stage_headers(tiny_pair, image_file):
    result = ask(tiny_pair, image_file, "--flash-attn", "off", "--threads", "1")
    assert result.returncode == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line.startswith("== ")]
    assert headers == ["== Summary ==", "== Caption ==", "== Reasoning ==", "== Conclusion =="]
    assert "<SUMMARY>" not in result.stdout
    assert "1 image encode" in result.stderr


def test_without_a_model_the_built_in_one_answers_and_says_so(tmp_path):
    example = ROOT / "models" / "data" / "example.png"
    result = stagewise("ask", "--image", example, "--question", "How many shapes are there?",
                       "--json", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "built-in demo model" in result.stderr
    stages = json.loads(result.stdout)["stages"]
    assert stages["summary"].startswith("The question asks how many shapes")
    assert stages["conclusion"].isdigit()


def test_the_projector_beside_the_model_is_found(tmp_path, image_file):
    pair = write_tiny_pair(tmp_path, TINY)
    result = stagewise("ask", "--model", pair.model, "--image", image_file, "--question", "Hi?",
                       "--max-stage-tokens", "4", "--json")
    assert result.returncode == 0, result.stderr


# -- bad input: one line on stderr, exit status 2, never a traceback or a core dump ----------

def test_missing_image(tiny_pair, tmp_path):
    assert_clean_failure(ask(tiny_pair, tmp_path / "nope.png"), "nope.png")


def test_corrupt_image(tiny_pair, image_file, tmp_path):
    cut = tmp_path / "cut.png"
    cut.write_bytes(image_file.read_bytes()[:200])
    assert_clean_failure(ask(tiny_pair, cut), "cut.png")


def test_text_file_named_png(tiny_pair, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("these are not pixels\n")
    assert_clean_failure(ask(tiny_pair, fake), "notes.png")


def test_huge_image_is_refused_before_decoding(tiny_pair, tmp_path):
    huge = write_header_only_png(tmp_path / "huge.png", 30000, 30000)
    result = ask(tiny_pair, huge)
    assert_clean_failure(result, "huge.png", "too large")


def test_truncated_gguf(tmp_path, image_file):
    pair = write_tiny_pair(tmp_path, TINY)
    data = pair.model.read_bytes()
    pair.model.write_bytes(data[: len(data) // 2])
    assert_clean_failure(ask(pair, image_file), str(pair.model.name), "truncated")


def test_projector_of_the_wrong_width(tmp_path, image_file):
    pair = write_tiny_pair(tmp_path, TINY, mmproj_n_embd=TINY.n_embd * 2)
    assert_clean_failure(ask(pair, image_file), pair.mmproj.name)


def test_projector_without_image_mean(tmp_path, image_file):
    pair = write_tiny_pair(tmp_path, TINY, _omit_mmproj={"clip.vision.image_mean"})
    assert_clean_failure(ask(pair, image_file), pair.mmproj.name, "image_mean")


def test_model_and_projector_swapped(tiny_pair, image_file):
    swapped = TinyPair(model=tiny_pair.mmproj, mmproj=tiny_pair.model)
    assert_clean_failure(ask(swapped, image_file))


@pytest.mark.parametrize("args", [["--beam", "0"], ["--beam", "500"], ["--select", "vote"],
                                  ["--max-stage-tokens", "x"]])
def test_bad_options_are_usage_errors(tiny_pair, image_file, args):
    result = ask(tiny_pair, image_file, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_retrace_answers_in_four_stages(tiny_pair, image_file):
    result = ask(tiny_pair, image_file, "--strategy", "retrace", "--scorer", "selfcheck",
                 "--retrace-cutoff", "2", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["strategy"] == "retrace"
    assert all(answer["stages"][name].strip() for name in
               ("summary", "caption", "reasoning", "conclusion"))
    printed = ask(tiny_pair, image_file, "--strategy", "retrace", "--retrace-cutoff", "2")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.count("== Caption ==") == 1
    assert "[retrace: second-best reasoning scored" in printed.stderr


def test_the_model_scorer_without_a_model_is_one_clear_line(tiny_pair, image_file):
    assert_clean_failure(ask(tiny_pair, image_file, "--strategy", "retrace", "--scorer",
                             "model"), "second model")


def test_ask_keeps_its_answer_in_the_history_the_window_reads(tiny_pair, image_file, tmp_path):
    from stagewise.models.storage.history import History

    data = tmp_path / "data"
    done = stagewise("ask", "--model", tiny_pair.model, "--mmproj", tiny_pair.mmproj,
                     "--image", image_file, "--question", "How many circles?",
                     "--max-stage-tokens", "8", "--beam", "2", data_dir=data)
    assert done.returncode == 0, done.stderr
    skipped = stagewise("ask", "--model", tiny_pair.model, "--mmproj", tiny_pair.mmproj,
                        "--image", image_file, "--question", "Not kept?", "--no-history",
                        "--max-stage-tokens", "8", data_dir=data)
    assert skipped.returncode == 0, skipped.stderr
    entries = History(data / "history").entries()
    assert [e.question for e in entries] == ["How many circles?"]
    assert entries[0].model == tiny_pair.model.name and entries[0].status == "finished"
    run = History(data / "history").load(entries[0].id)
    assert run.result.beam == 2 and len(run.result.candidates) == 8
    # its settings as the window's own (schema 3), read back to ask again as it was asked
    assert run.settings["version"] == 3 and run.settings["auto_beam"] is False
    assert run.settings["search"]["beam"] == 2
    assert run.settings["search"]["max_stage_tokens"] == 8
    assert run.settings["model"] == str(tiny_pair.model) and run.settings["server"]["url"] == ""
    restored, problems, _ = settings_from_json(run.settings)
    assert problems == [] and restored.search.beam == 2 and not restored.auto_beam


def test_ask_keeps_the_width_beam_auto_chose_for_each_answer(tiny_pair, image_file, tmp_path):
    from stagewise.models.storage.history import History

    data = tmp_path / "data"
    done = stagewise("ask", "--model", tiny_pair.model, "--mmproj", tiny_pair.mmproj,
                     "--image", image_file, "--question", "How many circles?", "--question",
                     "Which shape is blue?", "--max-stage-tokens", "8", "--json",
                     data_dir=data)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    with History(data / "history") as history:
        runs = [history.load(e.id) for e in history.entries(threads=True)]
    assert [r.entry.question for r in runs] == ["How many circles?", "Which shape is blue?"]
    assert answers[0]["beam"] == 1  # auto's first answer is a single pass, not its widest
    assert [r.settings["search"]["beam"] for r in runs] == [a["beam"] for a in answers]
    assert all(r.settings["auto_beam"] is True for r in runs)


def test_a_history_that_cannot_be_written_costs_a_warning_not_the_answer(
        tiny_pair, image_file, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "history").write_text("a file where the history folder should be")
    done = stagewise("ask", "--model", tiny_pair.model, "--mmproj", tiny_pair.mmproj,
                     "--image", image_file, "--question", "How many circles?",
                     "--max-stage-tokens", "8", data_dir=data)
    assert done.returncode == 0, done.stderr
    assert "will not be saved in the history" in done.stderr
    assert "Traceback" not in done.stderr


def test_follow_ups_see_the_earlier_answers_and_are_kept_as_one_thread(
        tiny_pair, image_file, tmp_path):
    from stagewise.models.storage.history import History

    model = ("--model", tiny_pair.model, "--mmproj", tiny_pair.mmproj, "--image", image_file,
             "--beam", "2", "--max-stage-tokens", "10")
    questions = ("--question", "How many circles?", "--question", "Why is it red?")
    data = tmp_path / "data"
    follow = stagewise("ask", *model, *questions, "--follow-up", "--json", data_dir=data)
    plain = stagewise("ask", *model, *questions, "--json", "--no-history", data_dir=data)
    assert follow.returncode == 0 and plain.returncode == 0, follow.stderr + plain.stderr
    followed, asked = json.loads(follow.stdout), json.loads(plain.stdout)
    assert followed[0]["stages"]["conclusion"].strip()  # an answer to follow up on
    assert [a["timings"]["image_encodes"] for a in followed] == [1, 0]
    assert [a["timings"]["earlier_turns"] for a in followed] == [0, 1]
    assert [a["timings"]["earlier_turns"] for a in asked] == [0, 0]
    # the same first answer; the follow-up's prompt holds the first question and answer
    assert followed[0]["answer_text"] == asked[0]["answer_text"]
    extra = len(" ".join(("How many circles?", followed[0]["stages"]["conclusion"]))) // 8
    assert (followed[1]["timings"]["prompt_tokens"]
            > asked[1]["timings"]["prompt_tokens"] + extra)
    # one thread in the history, the second question marked as a follow-up
    with History(data / "history") as history:
        entries = history.entries(threads=True)
        assert [e.question for e in entries] == ["How many circles?", "Why is it red?"]
        assert [e.follow_up for e in entries] == [False, True]
        assert entries[1].thread == entries[0].id
    streamed = stagewise("ask", *model, *questions, "--follow-up", "--no-history")
    assert streamed.returncode == 0, streamed.stderr
    lines = streamed.stdout.splitlines()
    assert "# How many circles?" in lines
    assert ("# Follow-up 2 (1 earlier question and answer in context): Why is it red?"
            in lines)
    # the first question's image comes from the cache the first run wrote, the follow-up's
    # from the engine's memory
    assert streamed.stderr.count("0 image encode(s)") == 2
    assert streamed.stderr.count("image from the cache") == 1


def test_several_questions_about_one_image_encode_it_once(tiny_pair, image_file, tmp_path):
    done = stagewise("ask", "--model", tiny_pair.model, "--mmproj", tiny_pair.mmproj,
                     "--image", image_file, "--question", "How many circles?",
                     "--question", "Which shape is blue?", "--max-stage-tokens", "8", "--json",
                     data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert [a["question"] for a in answers] == ["How many circles?", "Which shape is blue?"]
    assert [a["timings"]["image_encodes"] for a in answers] == [1, 0]
    streamed = stagewise("ask", "--model", tiny_pair.model, "--mmproj", tiny_pair.mmproj,
                         "--image", image_file, "--question", "One?", "--question", "Two?",
                         "--max-stage-tokens", "8", "--no-history")
    assert streamed.returncode == 0, streamed.stderr
    assert "# One?" in streamed.stdout and "# Two?" in streamed.stdout


def test_a_second_ask_about_the_same_image_reads_it_from_the_cache(
        tiny_pair, image_file, tmp_path, monkeypatch):
    args = ("--beam", "2", "--max-stage-tokens", "8", "--max-judge-tokens", "8", "--json",
            "--no-history")
    first, second = ask(tiny_pair, image_file, *args), ask(tiny_pair, image_file, *args)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["timings"]["prefix"]["from"] == "encoded" and a["timings"]["image_encodes"] == 1
    assert a["timings"]["prefix"]["encode_s"] > 0
    assert b["timings"]["prefix"]["from"] == "cache" and b["timings"]["image_encodes"] == 0
    assert b["timings"]["prefix"]["encode_s"] == 0
    assert b["timings"]["prefix"]["cache_load_s"] > 0
    assert (a["answer_text"], a["candidates"]) == (b["answer_text"], b["candidates"])
    skipped = ask(tiny_pair, image_file, *args, "--no-prefix-cache")
    assert json.loads(skipped.stdout)["timings"]["prefix"]["from"] == "encoded"
    # the window's setting "keep none" is ask's too
    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.json").write_text(json.dumps({"version": 2, "prefix_cache_mib": 0}))
    monkeypatch.setenv("STAGEWISE_CONFIG_DIR", str(config))
    off = ask(tiny_pair, image_file, *args)
    assert json.loads(off.stdout)["timings"]["prefix"]["from"] == "encoded", off.stderr


def test_ctx_takes_auto_or_a_size_in_range():
    from stagewise.desktop.cli.args import context_size

    assert context_size("auto") == context_size("0") == 0
    assert context_size("4096") == 4096
    for bad in ("255", "lots", "999999"):
        with pytest.raises(argparse.ArgumentTypeError, match="or auto"):
            context_size(bad)
