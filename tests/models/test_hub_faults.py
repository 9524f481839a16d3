"""Downloads from a misbehaving hub (tests/hub_server.py faults): bodies that contradict the
metadata, stalls and trickles. Each ends with one clear line and keeps nothing bad."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagewise.models.errors import StagewiseError
from stagewise.models.library import hub_transfer
from stagewise.models.library.hub import download
from stagewise.models.library.hub_transfer import DownloadProgress
from tests.hub_server import HTML_PAGE, FakeHub

REPO = "stagewise/faulty"
NAME = "weights.gguf"
SIZE = 300_000
CONTENT = os.urandom(SIZE)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """A fake hub serving :data:`CONTENT` as :data:`NAME`; retries without long pauses."""
    with FakeHub() as served, served.environment():
        served.add(REPO, NAME, CONTENT)
        yield served


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_transfer, "RETRY_DELAYS", (0.01, 0.01))


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "models"


def _partials(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.incomplete")) if folder.exists() else []


def _download_fails(hub: FakeHub, dest: Path, match: str,
                    events: list[DownloadProgress] | None = None) -> str:
    """Downloads :data:`NAME`, expecting a one-line error matching ``match``; returns it."""
    progress = events.append if events is not None else None
    with pytest.raises(StagewiseError, match=match) as failed:
        download(REPO, NAME, dest, progress=progress, endpoint=hub.endpoint)
    message = str(failed.value)
    assert "\n" not in message
    assert not (dest / NAME).exists()
    return message


def _downloads_whole_without_resuming(hub: FakeHub, dest: Path) -> None:
    hub.clear_requests()
    path = download(REPO, NAME, dest, endpoint=hub.endpoint)
    assert path.read_bytes() == CONTENT
    assert all(r.range is None for r in hub.downloads())
    assert _partials(dest) == []


# --------------------------------------------------------------------------- size


def test_endless_body_stops_at_the_listed_size(hub: FakeHub, dest: Path) -> None:
    hub.set_faults(REPO, NAME, endless=True)
    events: list[DownloadProgress] = []
    message = _download_fails(hub, dest, r"more than the 300\.0 kB", events)
    assert "discarded" in message
    assert max(e.done for e in events) <= SIZE
    assert _partials(dest) == []  # nothing of it is kept to resume from
    assert len(hub.downloads()) == 2  # resolve and its CDN redirect: no retry
    hub.set_faults(REPO, NAME, endless=False)
    _downloads_whole_without_resuming(hub, dest)


@pytest.mark.parametrize("served", [b"x" * 1000, CONTENT + b"tail"])
def test_content_length_other_than_the_listed_size_is_discarded(
        hub: FakeHub, dest: Path, served: bytes) -> None:
    hub.set_faults(REPO, NAME, replaced_by=served)
    message = _download_fails(hub, dest, f"announced {len(served)} bytes")
    assert f"the hub lists {SIZE}" in message and "discarded" in message
    assert _partials(dest) == []
    hub.set_faults(REPO, NAME, replaced_by=None)
    _downloads_whole_without_resuming(hub, dest)


def test_wrong_length_on_resume_keeps_the_good_partial(hub: FakeHub, dest: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_transfer, "RETRY_DELAYS", ())
    hub.set_faults(REPO, NAME, cut_after=100_000)
    _download_fails(hub, dest, "broke off")
    hub.set_faults(REPO, NAME, replaced_by=CONTENT + b"tail")
    message = _download_fails(hub, dest, f"announced {SIZE + 4 - 100_000} bytes")
    assert "100.0 kB downloaded so far are kept" in message
    [partial] = _partials(dest)
    assert partial.read_bytes() == CONTENT[:100_000]
    hub.set_faults(REPO, NAME, replaced_by=None)
    assert download(REPO, NAME, dest, endpoint=hub.endpoint).read_bytes() == CONTENT


def test_shorter_body_without_length_is_not_retried_forever(hub: FakeHub, dest: Path) -> None:
    """Each try gets the same 1000 bytes and a 416 on resuming: the retries run out."""
    hub.set_faults(REPO, NAME, replaced_by=b"x" * 1000, no_length=True)
    started = time.monotonic()
    _download_fails(hub, dest, "broke off")
    assert time.monotonic() - started < 5.0
    assert len(hub.downloads()) <= 2 * 6


# --------------------------------------------------------------------------- content type


def test_html_error_page_is_discarded(hub: FakeHub, dest: Path) -> None:
    hub.set_faults(REPO, NAME, html_page=1)
    message = _download_fails(hub, dest, r"an HTML page \(text/html\) instead of")
    assert "discarded" in message
    assert _partials(dest) == []  # not kept as the start of the next download
    _downloads_whole_without_resuming(hub, dest)


def test_an_html_file_may_come_as_html(hub: FakeHub, dest: Path) -> None:
    """A file named .html is allowed its content type."""
    hub.add(REPO, "page.html", HTML_PAGE, lfs=False, html_page=1)
    path = download(REPO, "page.html", dest, endpoint=hub.endpoint)
    assert path.read_bytes() == HTML_PAGE


# --------------------------------------------------------------------------- stalls


def test_stall_after_the_headers_gives_up_after_the_stall_timeout(
        hub: FakeHub, dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_transfer, "RETRY_DELAYS", (0.01,) * 4)
    monkeypatch.setattr(hub_transfer, "STALL_TIMEOUT", 0.5)
    hub.set_faults(REPO, NAME, stall=4.0)
    started = time.monotonic()
    message = _download_fails(hub, dest, r"no data from the server for 0\.5 s")
    assert time.monotonic() - started < 2.0  # not retried: one stall timeout, as stated
    assert "did not answer" not in message
    assert _partials(dest) == []


def test_stall_midway_keeps_what_came(hub: FakeHub, dest: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_transfer, "STALL_TIMEOUT", 0.5)
    hub.set_faults(REPO, NAME, stall=4.0, stall_after=100_000)
    message = _download_fails(hub, dest, r"no data from the server for 0\.5 s")
    assert "the 100.0 kB downloaded so far are kept" in message
    [partial] = _partials(dest)
    assert partial.read_bytes() == CONTENT[:100_000]
    hub.set_faults(REPO, NAME, stall=0.0)
    assert download(REPO, NAME, dest, endpoint=hub.endpoint).read_bytes() == CONTENT
    assert [r.range for r in hub.downloads()][-1] == "bytes=100000-"


def test_trickle_below_the_minimum_rate_is_given_up(hub: FakeHub, dest: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_transfer, "MIN_RATE", 50_000)
    monkeypatch.setattr(hub_transfer, "RATE_WINDOW", 0.5)
    hub.add(REPO, "small.gguf", os.urandom(20_000), trickle=2_000)
    started = time.monotonic()
    with pytest.raises(StagewiseError, match=r"too slow: .* in the last 0\.5 s, below the "
                                             r"minimum of 50\.0 kB/s") as failed:
        download(REPO, "small.gguf", dest, endpoint=hub.endpoint)
    assert time.monotonic() - started < 3.0
    assert "downloaded so far are kept" in str(failed.value)
    [partial] = _partials(dest)
    assert 0 < partial.stat().st_size < 20_000


def test_steady_download_passes_the_rate_check(hub: FakeHub, dest: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_transfer, "MIN_RATE", 50_000)
    monkeypatch.setattr(hub_transfer, "RATE_WINDOW", 0.2)
    hub.set_faults(REPO, NAME, slow=0.05)  # 64 KiB every 50 ms: about 1.3 MB/s
    assert download(REPO, NAME, dest, endpoint=hub.endpoint).read_bytes() == CONTENT
