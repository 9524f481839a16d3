"""`stagewise models …` in real subprocesses, downloading from a loopback fake hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.desktop.test_cli import ROOT, assert_clean_failure, stagewise
from tests.library_fixtures import ENTRY_ID, REPO


def test_list_shows_the_catalogue_with_sizes_and_fit(served_catalogue, tmp_path):
    result = stagewise("models", "list", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "SIZE", "FITS", "NAME"]
    row = next(line for line in lines if ENTRY_ID in line)
    assert "MB" in row and " yes " in row and "Tiny test VLM" in row


def test_pull_then_ask_by_id_then_remove(served_catalogue, tmp_path, image_file):
    data = tmp_path / "data"
    pulled = stagewise("models", "pull", ENTRY_ID, data_dir=data)
    assert pulled.returncode == 0, pulled.stderr
    assert f"installed {ENTRY_ID}" in pulled.stdout
    assert "tiny-model.gguf:" in pulled.stderr and "/s" in pulled.stderr  # progress lines

    listed = stagewise("models", "list", "--installed", data_dir=data)
    assert any(line.startswith("*") and ENTRY_ID in line for line in listed.stdout.splitlines())
    info = stagewise("models", "info", ENTRY_ID, data_dir=data)
    assert "installed:" in info.stdout and REPO in info.stdout

    answer = stagewise("ask", "--model", ENTRY_ID, "--image", image_file, "--question", "Hm?",
                       "--max-stage-tokens", "4", "--json", data_dir=data)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["status"] == "finished"

    removed = stagewise("models", "rm", ENTRY_ID, data_dir=data)
    assert removed.returncode == 0 and f"removed {ENTRY_ID}" in removed.stdout
    assert not (data / "models" / ENTRY_ID).exists()


def test_import_keeps_the_files(tiny_pair, tmp_path):
    data = tmp_path / "data"
    imported = stagewise("models", "import", tiny_pair.model, "--name", "My tiny",
                         data_dir=data)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("imported my-tiny: ")
    removed = stagewise("models", "rm", "my-tiny", data_dir=data)
    assert "its files were kept" in removed.stdout
    assert tiny_pair.model.exists()


def test_bad_requests_end_in_one_clear_line(served_catalogue, tmp_path, tiny_pair):
    data = tmp_path / "data"
    assert_clean_failure(stagewise("models", "pull", "tiny-vlm-tset", data_dir=data),
                         "tiny-vlm-tset", ENTRY_ID)
    assert_clean_failure(stagewise("models", "rm", "nothing", data_dir=data), "nothing")
    served_catalogue.hub.set_faults(REPO, tiny_pair.mmproj.name, status=401)
    assert_clean_failure(stagewise("models", "pull", ENTRY_ID, data_dir=data),
                         "login", REPO)
    cut = tmp_path / "cut-model.gguf"
    cut.write_bytes(tiny_pair.model.read_bytes()[:3000])
    assert_clean_failure(stagewise("models", "import", cut, tiny_pair.mmproj, data_dir=data),
                         "cut-model.gguf")


def test_ctrl_c_stops_a_pull_and_says_how_to_resume(served_catalogue, tmp_path, tiny_pair):
    served_catalogue.hub.set_faults(REPO, tiny_pair.model.name, slow=0.05)
    env = {**os.environ, "STAGEWISE_DATA_DIR": str(tmp_path / "d")}
    process = subprocess.Popen([sys.executable, "-m", "stagewise.desktop.cli", "models", "pull",
                                ENTRY_ID],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=ROOT)
    partial = tmp_path / "d" / "models" / ENTRY_ID
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            p.name.startswith(tiny_pair.model.name) for p in partial.glob("*.incomplete")):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"stagewise models pull {ENTRY_ID}" in err and "resume" in err
    assert "Traceback" not in err


def test_the_local_slot_says_how_it_is_built_and_shows_its_size_once_built(tiny_pair,
                                                                           tmp_path):
    import shutil

    from stagewise.models.library.catalogue import find_entry
    from stagewise.models.library.installed import Library

    data = tmp_path / "data"
    info = stagewise("models", "info", "llava-cot-local", data_dir=data)
    assert "not built yet: python -m stagewise.models.recipes.llava_cot all" in info.stdout
    assert "  source: https://arxiv.org/abs/2411.10440 " in info.stdout  # links, one a line
    assert "size from the hub" not in info.stdout
    home = data / "models" / "llava-cot-local"
    home.mkdir(parents=True)
    Library(data / "models").add_built(find_entry("llava-cot-local"),
                                       shutil.copy(tiny_pair.model, home),
                                       shutil.copy(tiny_pair.mmproj, home))
    row = next(line for line in stagewise("models", "list", data_dir=data).stdout.splitlines()
               if "llava-cot-local" in line)
    assert row.startswith("*") and " ? " not in row and "MB" in row
