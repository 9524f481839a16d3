"""llama.cpp's own programs, built from the sources the installed llama-cpp-python vendors.

The remote-engine tests run ``llama-server``
(:mod:`stagewise.models.build.llama_server`); the real-size recipe quantizes with
``llama-quantize`` and ``bench/real_size.py`` times Stagewise against ``llama-mtmd-cli``.
Each is of the same llama.cpp version as the in-process engine, built once (CPU only,
static, for this machine) into the cache folder and reused::

    python -m stagewise.models.build.llama_tools      # builds the tools, prints their paths

The source distribution comes from pip (its cache, or the package index); cmake and a C++
compiler must be installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from stagewise.models.disk.paths import cache_dir
from stagewise.models.errors import StagewiseError

__all__ = ["CMAKE_OPTIONS", "TOOLS", "BuildError", "built_tools", "llama_tool"]

CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # it would download the web UI
)
"""How the programs are configured: static, CPU only, no downloads, no web UI."""

TOOLS = ("llama-mtmd-cli", "llama-quantize")
"""The command-line tools :func:`llama_tool` builds (together, in one build)."""

VENDORED = PurePosixPath("vendor/llama.cpp")
_DONE = ".stagewise-built"


class BuildError(StagewiseError):
    """The sources could not be fetched, or a program did not build."""


def llama_tool(name: str, cache: Path | None = None, *,
               log: Callable[[str], None] | None = None) -> Path:
    """The path of one of :data:`TOOLS`, building them all on first use.

    Raises:
        ValueError: ``name`` is not one of :data:`TOOLS`.
        BuildError: The sdist could not be had, or cmake or the compiler failed.
    """
    if name not in TOOLS:
        raise ValueError(f"{name!r} is not one of {', '.join(TOOLS)}")
    return built_tools(TOOLS, "llama-tools", cache=cache, log=log)[name]


def built_tools(targets: Sequence[str], name: str, *, cache: Path | None = None,
                log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Build the cmake ``targets`` of the vendored llama.cpp once, into
    ``cache/{name}-{version}-{options key}``; their paths by target.

    Args:
        targets: The cmake targets, each a program of that name.
        name: The cache folder's first part, naming what it holds.
        cache: Where builds are kept; the cache folder when None.
        log: Called with each line of progress (a build takes minutes).

    Raises:
        BuildError: The sdist could not be had, or cmake or the compiler failed.
    """
    import llama_cpp

    version = str(llama_cpp.__version__)
    key = hashlib.sha256(" ".join(CMAKE_OPTIONS).encode()).hexdigest()[:12]
    target = (cache or cache_dir()) / f"{name}-{version}-{key}"
    binaries = {t: target / t for t in targets}
    if _complete(target, targets):
        return binaries
    say = log or (lambda _line: None)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=target.parent) as work:
        work_dir = Path(work)
        say(f"fetching llama-cpp-python {version}'s source distribution")
        archive = _download_sdist(version, work_dir / "download")
        source = work_dir / "llama.cpp"
        _extract_vendored(archive, source)
        say(f"building {', '.join(targets)} (a few minutes)")
        built = _build(source, work_dir / "build", targets, say)
        staging = work_dir / "out"
        staging.mkdir()
        for program, path in built.items():
            shutil.copy2(path, staging / program)
        (staging / _DONE).write_text(
            f"llama-cpp-python {version}\n{' '.join(CMAKE_OPTIONS)}\n{' '.join(targets)}\n",
            encoding="utf-8")
        _move_into_place(staging, target, targets)
    return binaries


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


def _build(source: Path, build: Path, targets: Sequence[str],
           say: Callable[[str], None]) -> dict[str, Path]:
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildError(f"building {', '.join(targets)} needs cmake (and a C++ compiler)")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    jobs = str(os.cpu_count() or 1)
    for step in ([cmake, "-S", str(source), "-B", str(build), *generator, *CMAKE_OPTIONS],
                 [cmake, "--build", str(build), "--target", *targets, "-j", jobs]):
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
    built = {}
    for program in targets:
        found = sorted(p for p in build.rglob(program) if p.is_file())
        if not found:
            raise BuildError(f"the build left no {program} in {build}")
        built[program] = found[0]
    return built


def _complete(folder: Path, targets: Sequence[str]) -> bool:
    return (folder / _DONE).is_file() and all((folder / t).is_file() for t in targets)


def _move_into_place(staging: Path, target: Path, targets: Sequence[str]) -> None:
    """Rename the finished build to ``target``; a concurrent build that finished first wins."""
    if target.exists() and not _complete(target, targets):  # unfinished, or built for less
        stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex[:8]}")
        target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError as e:
        if not _complete(target, targets):
            raise BuildError(f"cannot put the programs in {target}: {e}") from e


if __name__ == "__main__":
    for tool in TOOLS:
        print(llama_tool(tool, log=lambda line: print(line, file=sys.stderr)))
