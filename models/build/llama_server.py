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
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stagewise.models.disk.paths import cache_dir
from stagewise.models.errors import StagewiseError

__all__ = ["CMAKE_OPTIONS", "BuildError", "RunningServer", "free_port", "llama_server", "serve"]

CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # it would download the web UI
)
"""How the server is configured: static, CPU only, no downloads, no web UI."""
VENDORED = PurePosixPath("vendor/llama.cpp")
_DONE = ".stagewise-built"


class BuildError(StagewiseError):
    """The server's sources could not be fetched, or it did not build."""


def llama_server(cache: Path | None = None, *, log: Callable[[str], None] | None = None
                 ) -> Path:
    """The path of a built ``llama-server``, building it on first use.

    Args:
        cache: Where builds are kept; the cache folder when None.
        log: Called with each line of progress (the build takes minutes).

    Raises:
        BuildError: The sdist could not be had, or cmake or the compiler failed.
    """
    import llama_cpp

    version = str(llama_cpp.__version__)
    key = hashlib.sha256(" ".join(CMAKE_OPTIONS).encode()).hexdigest()[:12]
    target = (cache or cache_dir()) / f"llama-server-{version}-{key}"
    binary = target / "llama-server"
    if (target / _DONE).is_file() and binary.is_file():
        return binary
    say = log or (lambda _line: None)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".llama-server.", dir=target.parent) as work:
        work_dir = Path(work)
        say(f"fetching llama-cpp-python {version}'s source distribution")
        archive = _download_sdist(version, work_dir / "download")
        source = work_dir / "llama.cpp"
        _extract_vendored(archive, source)
        say("building llama-server (a few minutes)")
        built = _build(source, work_dir / "build", say)
        staging = work_dir / "out"
        staging.mkdir()
        shutil.copy2(built, staging / "llama-server")
        (staging / _DONE).write_text(f"llama-cpp-python {version}\n{' '.join(CMAKE_OPTIONS)}\n",
                                     encoding="utf-8")
        _move_into_place(staging, target)
    return binary


def _download_sdist(version: str, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={version}", "-d", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, errors="replace",
                          check=False)
    archives = sorted(folder.glob("llama_cpp_python-*.tar.gz"))
    if done.returncode != 0 or not archives:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise BuildError(f"could not download llama-cpp-python {version}'s sources with "
                         f"`{' '.join(command)}` (it needs the package index or pip's "
                         f"cache)\n{tail}")
    return archives[0]


def _extract_vendored(archive: Path, out: Path) -> None:
    """Extract ``vendor/llama.cpp`` (regular files only, never outside ``out``)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts[1:]
                inner = PurePosixPath(*parts[len(VENDORED.parts):]) if (
                    parts[:len(VENDORED.parts)] == VENDORED.parts) else None
                if inner is None or not member.isfile() or not inner.parts:
                    continue
                if any(p in ("", ".", "..") for p in inner.parts):
                    raise BuildError(f"{archive.name}: unsafe path {member.name!r}")
                dest = out.joinpath(*inner.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                data = tar.extractfile(member)
                if data is not None:
                    with data, dest.open("wb") as f:
                        shutil.copyfileobj(data, f)
                    dest.chmod(member.mode & 0o755 | 0o600)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BuildError(f"{archive}: cannot read the source distribution: {e}") from e
    if not (out / "tools" / "server").is_dir():
        raise BuildError(f"{archive.name} has no {VENDORED}/tools/server")


def _build(source: Path, build: Path, say: Callable[[str], None]) -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildError("building llama-server needs cmake (and a C++ compiler)")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    jobs = str(os.cpu_count() or 1)
    for step in ([cmake, "-S", str(source), "-B", str(build), *generator, *CMAKE_OPTIONS],
                 [cmake, "--build", str(build), "--target", "llama-server", "-j", jobs]):
        process = subprocess.Popen(step, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace")
        lines: list[str] = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if "Building" in line or "Linking" in line or line.startswith("["):
                say(line.rstrip())
        if process.wait() != 0:
            tail = "\n".join(lines[-15:])
            raise BuildError(f"`{' '.join(step[:3])} …` failed:\n{tail}")
    found = sorted(build.rglob("llama-server"))
    if not found:
        raise BuildError(f"the build left no llama-server in {build}")
    return found[0]


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished build to ``target``; a concurrent build that finished first wins."""
    if target.exists() and not (target / _DONE).is_file():  # an unfinished leftover
        stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex[:8]}")
        target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError as e:
        if not (target / _DONE).is_file():
            raise BuildError(f"cannot put the server in {target}: {e}") from e


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
