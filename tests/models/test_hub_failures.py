"""Each way a download from the hub fails is named (HubError.failure), so a front end can
say what to do next; against real sockets on loopback and a name that cannot resolve."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.library import hub_http
from stagewise.models.library.hub import download
from stagewise.models.library.hub_http import HubError
from tests.hub_server import FakeHub

REPO = "stagewise/tiny-vlm"
MODEL = "tiny-model.gguf"


@pytest.fixture
def fake_hub(tiny_pair: TinyPair) -> Iterator[FakeHub]:
    with FakeHub() as served, served.environment():
        served.add(REPO, MODEL, tiny_pair.model)
        yield served


def _failure(endpoint: str, dest: Path) -> HubError:
    with pytest.raises(HubError) as caught:
        download(REPO, MODEL, dest, endpoint=endpoint)
    return caught.value


def test_a_name_that_does_not_resolve_is_offline(tmp_path: Path) -> None:
    """What an offline computer gets for huggingface.co: "[Errno -2] Name or service not
    known" (a .invalid name never resolves, RFC 6761)."""
    error = _failure("http://stagewise-hub.invalid", tmp_path)
    assert error.failure == "offline"
    assert "not reachable (offline)" in str(error)


def test_offline_mode_is_offline(fake_hub: FakeHub, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _failure(fake_hub.endpoint, tmp_path).failure == "offline"


def test_a_closed_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert _failure(f"http://127.0.0.1:{port}", tmp_path).failure == "refused"


def test_a_silent_server_is_a_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_http, "READ_TIMEOUT", 0.3)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert _failure(endpoint, tmp_path).failure == "timeout"


@pytest.mark.parametrize(("status", "failure"), [(401, "login"), (403, "login"),
                                                 (404, "missing"), (500, "server")])
def test_hub_statuses(fake_hub: FakeHub, tmp_path: Path, status: int, failure: str,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    from stagewise.models.library import hub_transfer

    monkeypatch.setattr(hub_transfer, "RETRY_DELAYS", (0.01,))
    fake_hub.set_faults(REPO, MODEL, status=status)
    assert _failure(fake_hub.endpoint, tmp_path).failure == failure


def test_a_failure_mid_transfer_keeps_its_kind(fake_hub: FakeHub, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from stagewise.models.library import hub_transfer

    monkeypatch.setattr(hub_transfer, "RETRY_DELAYS", (0.01,))
    fake_hub.set_faults(REPO, MODEL, content_status=503)
    error = _failure(fake_hub.endpoint, tmp_path)
    assert error.failure == "server" and "try again later" in str(error)
