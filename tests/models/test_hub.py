"""stagewise.models.library.hub against a real HTTP server on loopback (tests/hub_server.py), real
huggingface_hub."""

from __future__ import annotations

import hashlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants, hf_hub_download

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.errors import Cancelled, StagewiseError
from stagewise.models.inference.gguf_check import check_projector, check_text_model
from stagewise.models.library import hub_http, hub_transfer
from stagewise.models.library.hub import RemoteFile, download, remote_file, sha256_file
from stagewise.models.library.hub_transfer import DownloadProgress
from tests.hub_server import FakeHub

REPO = "stagewise/tiny-vlm"
MODEL = "tiny-model.gguf"
MMPROJ = "tiny-mmproj.gguf"


@pytest.fixture
def fake_hub(tiny_pair: TinyPair) -> Iterator[FakeHub]:
    """A running fake hub serving the tiny pair; huggingface_hub pointed at it."""
    with FakeHub() as served, served.environment():
        served.add(REPO, MODEL, tiny_pair.model)
        served.add(REPO, MMPROJ, tiny_pair.mmproj)
        yield served


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "models"


def _partials(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.incomplete")) if folder.exists() else []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- happy path


def test_remote_file_reads_lfs_metadata(fake_hub: FakeHub, tiny_pair: TinyPair) -> None:
    data = tiny_pair.model.read_bytes()
    info = remote_file(REPO, MODEL, endpoint=fake_hub.endpoint)
    assert info == RemoteFile(REPO, "main", MODEL, len(data), hashlib.sha256(data).hexdigest())
    paths_info = [r for r in fake_hub.requests if "/paths-info/" in r.path]
    assert [r.method for r in paths_info] == ["POST"]


def test_download_reports_progress_and_checks_out(fake_hub: FakeHub, tiny_pair: TinyPair,
                                                  dest: Path) -> None:
    fake_hub.set_faults(REPO, MODEL, slow=0.01)
    size = tiny_pair.model.stat().st_size
    events: list[DownloadProgress] = []

    path = download(REPO, MODEL, dest, progress=events.append, endpoint=fake_hub.endpoint)

    assert path == dest / MODEL
    assert path.read_bytes() == tiny_pair.model.read_bytes()
    check_text_model(path)
    assert _partials(dest) == []
    assert len(events) >= 3
    assert all(e.file == MODEL and e.total == size for e in events)
    dones = [e.done for e in events]
    assert dones == sorted(dones)
    assert dones[0] == 0 and dones[-1] == size
    assert events[-1].bytes_per_s > 0 and events[-1].seconds_left == 0
    # The fake hub redirected resolve to its CDN path, as the hub does for LFS files.
    assert any(r.path.startswith("/cdn/") for r in fake_hub.downloads())


def test_progress_is_throttled(fake_hub: FakeHub, dest: Path) -> None:
    fake_hub.add(REPO, "big.bin", os.urandom(4 * 1024 * 1024), slow=0.005)
    stamps: list[float] = []
    download(REPO, "big.bin", dest, progress=lambda e: stamps.append(time.monotonic()),
             endpoint=fake_hub.endpoint)
    gaps = [b - a for a, b in itertools.pairwise(stamps[:-1])]  # the last is forced
    assert len(gaps) >= 2
    assert all(gap >= hub_transfer.PROGRESS_INTERVAL * 0.9 for gap in gaps)


def test_second_download_of_a_whole_file_fetches_nothing(fake_hub: FakeHub,
                                                         dest: Path) -> None:
    first = download(REPO, MMPROJ, dest, endpoint=fake_hub.endpoint)
    fake_hub.clear_requests()
    events: list[DownloadProgress] = []
    again = download(REPO, MMPROJ, dest, progress=events.append, endpoint=fake_hub.endpoint)
    assert again == first
    check_projector(again)
    assert fake_hub.downloads() == []
    assert [e.done for e in events] == [first.stat().st_size]


def test_endpoint_from_environment(fake_hub: FakeHub, tiny_pair: TinyPair,
                                   dest: Path) -> None:
    """No endpoint argument: HF_ENDPOINT (set by FakeHub.environment) is used."""
    path = download(REPO, MMPROJ, dest)
    assert path.read_bytes() == tiny_pair.mmproj.read_bytes()


def test_subfolder_names_land_in_subfolders(fake_hub: FakeHub, dest: Path) -> None:
    fake_hub.add(REPO, "q4/weights.bin", b"quantised" * 1000)
    path = download(REPO, "q4/weights.bin", dest, endpoint=fake_hub.endpoint)
    assert path == dest / "q4" / "weights.bin"
    assert path.read_bytes() == b"quantised" * 1000


# --------------------------------------------------------------------------- resume


def test_cut_connection_is_resumed_within_the_call(fake_hub: FakeHub, tiny_pair: TinyPair,
                                                   dest: Path) -> None:
    fake_hub.set_faults(REPO, MODEL, cut_after=300_000)
    path = download(REPO, MODEL, dest, endpoint=fake_hub.endpoint)
    assert path.read_bytes() == tiny_pair.model.read_bytes()
    assert [r.range for r in fake_hub.downloads() if r.range] == [
        "bytes=300000-", "bytes=300000-"]  # resolve, then the CDN it redirects to


def test_cut_connection_then_download_again_resumes(fake_hub: FakeHub, tiny_pair: TinyPair,
                                                    dest: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_transfer, "RETRY_DELAYS", ())  # give up at once
    fake_hub.set_faults(REPO, MODEL, cut_after=500_000)

    with pytest.raises(StagewiseError, match="resumes") as failed:
        download(REPO, MODEL, dest, endpoint=fake_hub.endpoint)
    assert "broke off" in str(failed.value)
    assert not (dest / MODEL).exists()
    [partial] = _partials(dest)
    assert partial.stat().st_size == 500_000

    fake_hub.clear_requests()
    path = download(REPO, MODEL, dest, endpoint=fake_hub.endpoint)
    assert path.read_bytes() == tiny_pair.model.read_bytes()
    assert all(r.range == "bytes=500000-" for r in fake_hub.downloads())
    assert _partials(dest) == []


def test_cancel_keeps_the_partial_file_and_the_next_download_resumes(
        fake_hub: FakeHub, tiny_pair: TinyPair, dest: Path) -> None:
    fake_hub.set_faults(REPO, MODEL, slow=0.01)
    size = tiny_pair.model.stat().st_size
    cancel = threading.Event()

    def stop_midway(event: DownloadProgress) -> None:
        if 0 < event.done < event.total:
            cancel.set()

    with pytest.raises(Cancelled):
        download(REPO, MODEL, dest, progress=stop_midway, cancel=cancel,
                 endpoint=fake_hub.endpoint)
    [partial] = _partials(dest)
    kept = partial.stat().st_size
    assert 0 < kept < size
    assert not (dest / MODEL).exists()

    fake_hub.clear_requests()
    events: list[DownloadProgress] = []
    path = download(REPO, MODEL, dest, progress=events.append, endpoint=fake_hub.endpoint)
    assert path.read_bytes() == tiny_pair.model.read_bytes()
    assert {r.range for r in fake_hub.downloads()} == {f"bytes={kept}-"}
    assert events[0].done == kept and events[-1].done == size


def test_cancel_before_start_does_nothing(fake_hub: FakeHub, dest: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        download(REPO, MODEL, dest, cancel=cancel, endpoint=fake_hub.endpoint)
    assert fake_hub.requests == []


def test_partial_of_an_older_version_is_discarded(fake_hub: FakeHub, tiny_pair: TinyPair,
                                                  dest: Path) -> None:
    dest.mkdir()
    stale = dest / f"{MODEL}.0123456789abcdef.incomplete"
    stale.write_bytes(b"x" * 1000)
    path = download(REPO, MODEL, dest, endpoint=fake_hub.endpoint)
    assert path.read_bytes() == tiny_pair.model.read_bytes()
    assert not stale.exists()
    assert all(r.range is None for r in fake_hub.downloads())


# --------------------------------------------------------------------------- checks


def test_corrupted_byte_is_caught_and_the_file_deleted(fake_hub: FakeHub,
                                                       dest: Path) -> None:
    fake_hub.set_faults(REPO, MODEL, corrupt=True)
    with pytest.raises(StagewiseError, match="damaged: its SHA-256") as failed:
        download(REPO, MODEL, dest, endpoint=fake_hub.endpoint)
    assert "deleted" in str(failed.value)
    assert not (dest / MODEL).exists()
    assert _partials(dest) == []


@pytest.mark.parametrize(("expected", "message"), [
    ({"expected_sha256": "0" * 64}, "has SHA-256 .* but 0{64} was expected"),
    ({"expected_size": 12345}, "bytes on the hub, but 12345 were expected"),
])
def test_expectation_mismatch_downloads_nothing(fake_hub: FakeHub, dest: Path,
                                                expected: dict, message: str) -> None:
    with pytest.raises(StagewiseError, match=message):
        download(REPO, MODEL, dest, endpoint=fake_hub.endpoint, **expected)
    assert fake_hub.downloads() == []


def test_expected_sha256_is_checked_for_a_file_without_lfs_metadata(
        fake_hub: FakeHub, dest: Path) -> None:
    fake_hub.add(REPO, "config.json", b'{"a": 1}', lfs=False)
    with pytest.raises(StagewiseError, match="damaged"):
        download(REPO, "config.json", dest, expected_sha256="ab" * 32,
                 endpoint=fake_hub.endpoint)
    assert not (dest / "config.json").exists()
    good = hashlib.sha256(b'{"a": 1}').hexdigest()
    path = download(REPO, "config.json", dest, expected_sha256=good,
                    endpoint=fake_hub.endpoint)
    assert path.read_bytes() == b'{"a": 1}'


def test_matching_expectations_pass(fake_hub: FakeHub, tiny_pair: TinyPair,
                                    dest: Path) -> None:
    data = tiny_pair.mmproj.read_bytes()
    path = download(REPO, MMPROJ, dest, expected_size=len(data),
                    expected_sha256=hashlib.sha256(data).hexdigest().upper(),
                    endpoint=fake_hub.endpoint)
    assert path.read_bytes() == data


def test_not_enough_disk_space_is_refused_before_downloading(fake_hub: FakeHub,
                                                            dest: Path) -> None:
    fake_hub.set_faults(REPO, MODEL, claim_size=10**16)  # 10 PB
    with pytest.raises(StagewiseError, match=r"not enough free space .*needs 10000000\.0 GB "
                                             r"\(and 100\.0 MB to spare\), [\d.]+ [kMG]B free"):
        download(REPO, MODEL, dest, endpoint=fake_hub.endpoint)
    assert fake_hub.downloads() == []
    assert _partials(dest) == []


def test_sha256_file(tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024 + 7)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        sha256_file(path, cancel)


# --------------------------------------------------------------------------- refusals


def test_unknown_repository(fake_hub: FakeHub, dest: Path) -> None:
    with pytest.raises(StagewiseError, match="no model repository named nobody/nothing"):
        download("nobody/nothing", MODEL, dest, endpoint=fake_hub.endpoint)


def test_unknown_file(fake_hub: FakeHub, dest: Path) -> None:
    with pytest.raises(StagewiseError, match=f"no file named missing.gguf in the model "
                                             f"repository {REPO}"):
        download(REPO, "missing.gguf", dest, endpoint=fake_hub.endpoint)


def test_unknown_revision(fake_hub: FakeHub, dest: Path) -> None:
    with pytest.raises(StagewiseError, match="has no revision 'v9'"):
        download(REPO, MODEL, dest, revision="v9", endpoint=fake_hub.endpoint)


def test_plain_404(fake_hub: FakeHub, dest: Path) -> None:
    fake_hub.set_faults(REPO, MODEL, status=404)
    with pytest.raises(StagewiseError,
                       match=f"no model repository/file named {REPO}/{MODEL} .*HTTP 404"):
        download(REPO, MODEL, dest, endpoint=fake_hub.endpoint)


@pytest.mark.parametrize("status", [401, 403])
def test_login_needed(fake_hub: FakeHub, dest: Path, status: int) -> None:
    fake_hub.set_faults(REPO, MODEL, status=status)
    with pytest.raises(StagewiseError) as failed:
        download(REPO, MODEL, dest, endpoint=fake_hub.endpoint)
    message = str(failed.value)
    assert "needs a Hugging Face login / accepting the licence at" in message
    assert f"{fake_hub.endpoint}/{REPO}" in message
    assert f"HTTP {status}" in message


def test_gated_file_needs_the_token(fake_hub: FakeHub, tiny_pair: TinyPair,
                                   dest: Path) -> None:
    """Metadata is public, the content needs the token (as on the hub)."""
    fake_hub.set_faults(REPO, MMPROJ, token="hf_secret")
    with pytest.raises(StagewiseError, match="needs a Hugging Face login"):
        download(REPO, MMPROJ, dest, endpoint=fake_hub.endpoint)
    assert _partials(dest) == []  # nothing came, so nothing is left to resume
    path = download(REPO, MMPROJ, dest, endpoint=fake_hub.endpoint, token="hf_secret")
    assert path.read_bytes() == tiny_pair.mmproj.read_bytes()


def test_server_error_is_retried_then_explained(fake_hub: FakeHub, dest: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_transfer, "RETRY_DELAYS", (0.01, 0.01))
    fake_hub.set_faults(REPO, MMPROJ, content_status=503)
    with pytest.raises(StagewiseError, match="HTTP 503 Service Unavailable"):
        download(REPO, MMPROJ, dest, endpoint=fake_hub.endpoint)
    assert len(fake_hub.downloads()) == 3  # the first try and two retries


def test_bad_names(dest: Path) -> None:
    with pytest.raises(StagewiseError, match="not a Hugging Face repository name"):
        download("not a repo!", MODEL, dest, endpoint="http://127.0.0.1:9")
    with pytest.raises(StagewiseError, match="not a file name"):
        download(REPO, "../escape.gguf", dest, endpoint="http://127.0.0.1:9")


# --------------------------------------------------------------------------- offline


@pytest.mark.parametrize("how", ["environment", "constants"])
def test_offline_mode(fake_hub: FakeHub, dest: Path, monkeypatch: pytest.MonkeyPatch,
                      how: str) -> None:
    if how == "environment":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    started = time.monotonic()
    with pytest.raises(StagewiseError, match=r"Hugging Face is not reachable \(offline\)"):
        download(REPO, MODEL, dest, endpoint=fake_hub.endpoint)
    assert time.monotonic() - started < 1
    assert fake_hub.requests == []


def test_closed_port(dest: Path) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(StagewiseError,
                       match=r"Hugging Face is not reachable \(offline\): cannot connect to "
                             + endpoint):
        download(REPO, MODEL, dest, endpoint=endpoint)
    assert time.monotonic() - started < 3


def test_silent_server_times_out(dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that accepts the connection but never answers: the read timeout ends it."""
    monkeypatch.setattr(hub_http, "READ_TIMEOUT", 0.3)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(StagewiseError, match=r"did not answer within 0\.3 s"):
            download(REPO, MODEL, dest, endpoint=endpoint)
        assert time.monotonic() - started < 3


# --------------------------------------------------------------------------- the fake hub


def test_fake_hub_serves_huggingface_hub_itself(fake_hub: FakeHub, tiny_pair: TinyPair,
                                                tmp_path: Path) -> None:
    """Other tests may use hf_hub_download / model_info against the fake hub directly."""
    path = hf_hub_download(REPO, MODEL, local_dir=tmp_path / "hf")
    assert Path(path).read_bytes() == tiny_pair.model.read_bytes()
    info = HfApi().model_info(REPO, files_metadata=True)
    sizes = {s.rfilename: (s.size, s.lfs.sha256) for s in info.siblings}
    data = tiny_pair.mmproj.read_bytes()
    assert sizes[MMPROJ] == (len(data), hashlib.sha256(data).hexdigest())
    heads = [r for r in fake_hub.requests if r.method == "HEAD"]
    assert heads and heads[0].path == f"/{REPO}/resolve/main/{MODEL}"


def test_fake_hub_leaves_no_thread_running(tiny_pair: TinyPair, tmp_path: Path) -> None:
    before = set(threading.enumerate())
    cancel = threading.Event()
    with FakeHub() as served:
        served.add(REPO, MODEL, tiny_pair.model, slow=0.05)
        with pytest.raises(Cancelled):
            download(REPO, MODEL, tmp_path, endpoint=served.endpoint, cancel=cancel,
                     progress=lambda e: cancel.set() if e.done else None)
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []
