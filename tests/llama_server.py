"""A real llama.cpp ``llama-server`` on loopback, for the remote-engine tests and bench.

The binary is built from the llama.cpp sources the installed llama-cpp-python vendors
(:func:`stagewise.models.build.llama_server.llama_server`, cached after the first build).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stagewise.models.build.llama_server import llama_server


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(model: Path, mmproj: Path, folder: Path, *, slots: int = 4,
                   ctx_per_slot: int = 4096, api_key: str = "", threads: int = 2
                   ) -> Iterator[RunningServer]:
    """Start llama-server with ``model`` and ``mmproj`` on 127.0.0.1; stop it after."""
    binary = llama_server(log=print)
    port = free_port()
    log = folder / f"llama-server-{port}.log"
    command = [str(binary), "-m", str(model), "--mmproj", str(mmproj), "--host", "127.0.0.1",
               "--port", str(port), "-np", str(slots), "-c", str(ctx_per_slot * slots),
               "-t", str(threads), "--no-warmup"]
    if api_key:
        command += ["--api-key", api_key]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = RunningServer(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_until_ready(server)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(server: RunningServer, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"llama-server exited ({server.process.returncode}):\n"
                               + server.log.read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as answer:
                if json.load(answer).get("status") == "ok":
                    return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError("llama-server did not get ready:\n"
                       + server.log.read_text(errors="replace")[-3000:])
