"""llama.cpp's ``llama-server``, built from the sources the installed llama-cpp-python vendors.

The remote-engine tests and ``bench/beam.py --server`` run the search against a real
server of the same llama.cpp version as the in-process engine. The binary is built once
(CPU only, for this machine) into the cache folder and reused::

    python -m stagewise.models.build.llama_server      # prints the binary's path

The source distribution comes from pip (its cache, or the package index); cmake and a C++
compiler must be installed. :func:`serve` starts it on loopback with a model pair.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stagewise.models.build.llama_tools import CMAKE_OPTIONS, BuildError, built_tools

__all__ = ["CMAKE_OPTIONS", "BuildError", "RunningServer", "free_port", "llama_server", "serve"]

def llama_server(cache: Path | None = None, *, log: Callable[[str], None] | None = None
                 ) -> Path:
    """The path of a built ``llama-server``, building it on first use.

    Args:
        cache: Where builds are kept; the cache folder when None.
        log: Called with each line of progress (the build takes minutes).

    Raises:
        BuildError: The sdist could not be had, or cmake or the compiler failed.
    """
    return built_tools(("llama-server",), "llama-server", cache=cache, log=log)["llama-server"]


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
def serve(model: Path, mmproj: Path, folder: Path, *, slots: int = 4,
          ctx_per_slot: int = 4096, api_key: str = "", threads: int = 2,
          log_line: Callable[[str], None] | None = None) -> Iterator[RunningServer]:
    """Start llama-server with ``model`` and ``mmproj`` on 127.0.0.1 (building it first
    if needed); stop it after. Its log goes to a file in ``folder``."""
    binary = llama_server(log=log_line)
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


if __name__ == "__main__":
    print(llama_server(log=lambda line: print(line, file=sys.stderr)))
