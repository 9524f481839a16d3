"""A Hugging Face model folder to GGUF (text model and projector), with llama.cpp's own
converter.

The converter must come from the llama.cpp that the installed llama-cpp-python vendors:
an older or newer ``convert_hf_to_gguf.py`` may write keys or tensors this llama.cpp reads
differently. llama-cpp-python's source distribution carries it (``vendor/llama.cpp``), so
:func:`converter_source` fetches that sdist once with pip and keeps only the converter
(``convert_hf_to_gguf.py``, ``conversion/``, ``gguf-py/``, ``LICENSE``) in the cache folder.

:func:`convert` runs it in a subprocess through
:mod:`stagewise.models.recipes.llava_cot.run_converter`, which can name the BPE pre-tokenizer and
add Stagewise's metadata keys.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from stagewise.models.disk.paths import cache_dir
from stagewise.models.errors import StagewiseError

__all__ = ["MARKER", "ConversionError", "convert", "converter_source", "llama_cpp_version"]

SCRIPT = "convert_hf_to_gguf.py"
REQUIRED = (SCRIPT, "conversion", "gguf-py")
"""What a converter folder must hold."""

VENDORED = "vendor/llama.cpp"
"""Where llama.cpp sits inside llama-cpp-python's source tree."""

KEPT = (SCRIPT, "LICENSE", "conversion/", "gguf-py/", "models/templates/",
        "models/ggml-vocab-*")
"""What is extracted from ``vendor/llama.cpp``: files, folders (ending in "/") and name
prefixes (ending in "*"). Besides the converter: real chat templates and vocabulary-only
GGUFs of real tokenizers, for the models the tests write
(:mod:`stagewise.models.recipes.real_vocab`)."""

MARKER = ".stagewise-complete-2"
"""Written last into a cached converter folder: its presence means the folder is whole."""

RUNNER = "stagewise.models.recipes.llava_cot.run_converter"
TAIL_LINES = 20
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+!_-]*")
_UNRECOGNISED = "pre-tokenizer was not recognized"

PRE_TOKENIZER_HINT = (
    "llama.cpp identifies a BPE pre-tokenizer by hashing how a known model's vocabulary "
    "tokenizes a fixed text, so it recognises the tokenizer of a real base model (such as "
    "Qwen2.5-VL's own) but not one learnt from scratch. Name the pre-tokenizer with "
    "pre_tokenizer (--pre-tokenizer on the command line), e.g. \"qwen2\", only for such a "
    "home-made tokenizer; for a real base, use its unmodified tokenizer files instead."
)


class ConversionError(StagewiseError):
    """The converter could not be fetched, or a model could not be converted."""


def llama_cpp_version() -> str:
    """The version of the installed llama-cpp-python (and so of the llama.cpp it vendors).

    Returns:
        ``llama_cpp.__version__``, e.g. "0.3.36".
    """
    import llama_cpp

    return str(llama_cpp.__version__)


# --------------------------------------------------------------------------- the converter


def converter_source(*, version: str | None = None, source: Path | None = None,
                     cache: Path | None = None) -> Path:
    """A folder holding llama.cpp's ``convert_hf_to_gguf.py``, ``conversion/`` and ``gguf-py/``.

    Args:
        version: The llama-cpp-python version whose vendored converter to use; the
            installed one (:func:`llama_cpp_version`) when None. Ignored with ``source``.
        source: Use this folder instead of fetching: a llama.cpp checkout, or an extracted
            llama-cpp-python source tree (its ``vendor/llama.cpp`` is used).
        cache: Where fetched converters are kept; :func:`stagewise.models.disk.paths.cache_dir`
            when None.

    Returns:
        The converter folder: ``source`` (or its ``vendor/llama.cpp``), or
        ``cache/llama.cpp-{version}``, fetched and extracted on first use.

    Raises:
        ConversionError: ``source`` lacks the converter, ``version`` is malformed, or the
            source distribution could not be downloaded or read.
    """
    if source is not None:
        return _checked_source(Path(source))
    version = version or llama_cpp_version()
    if not _VERSION.fullmatch(version):
        raise ConversionError(f"{version!r} is not a llama-cpp-python version")
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / f"llama.cpp-{version}"
    if (target / MARKER).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".llama.cpp-{version}.", dir=cache) as work:
        archive = _download_sdist(version, Path(work) / "download")
        staging = Path(work) / "tree"
        _extract_converter(archive, staging)
        (staging / MARKER).write_text(f"llama-cpp-python {version}\n", encoding="utf-8")
        _move_into_place(staging, target)
    return target


def _checked_source(source: Path) -> Path:
    for folder in (source, source / VENDORED):
        if all((folder / name).exists() for name in REQUIRED):
            return folder
    missing = ", ".join(name for name in REQUIRED if not (source / name).exists())
    raise ConversionError(
        f"{source}: not llama.cpp's converter: it lacks {missing} (and has no "
        f"{VENDORED} holding them); give a llama.cpp checkout or an extracted "
        "llama-cpp-python source distribution")


def _download_sdist(version: str, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={version}", "-d", str(folder)]
    shown = " ".join(command)
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace",
                              check=False)
    except OSError as e:
        raise ConversionError(f"could not run `{shown}`: {e}") from e
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-TAIL_LINES:])
        raise ConversionError(
            f"could not download llama.cpp's converter: `{shown}` failed (exit code "
            f"{done.returncode}); it needs network access, or pip's cache of the file. "
            f"Alternatively give a llama.cpp source folder.\n{tail}")
    archives = sorted(folder.glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        raise ConversionError(f"`{shown}` left no llama_cpp_python-*.tar.gz in {folder}")
    return archives[0]


def _kept_path(name: str) -> PurePosixPath | None:
    """The path below ``vendor/llama.cpp`` of an sdist member to keep, None to skip it.

    Raises:
        ConversionError: A member to keep has a name that could land outside the folder.
    """
    parts = PurePosixPath(name).parts[1:]  # below the top folder, llama_cpp_python-VERSION/
    prefix = PurePosixPath(VENDORED).parts
    if parts[: len(prefix)] != prefix or len(parts) == len(prefix):
        return None
    inner = PurePosixPath(*parts[len(prefix) :])
    text = inner.as_posix()
    if not any(text == keep or (keep.endswith("/") and text.startswith(keep))
               or (keep.endswith("*") and text.startswith(keep[:-1])) for keep in KEPT):
        return None
    if any(part in ("", ".", "..") or "\\" in part or ":" in part for part in inner.parts):
        raise ConversionError(f"the source distribution holds an unsafe path: {name!r}")
    return inner


def _extract_converter(archive: Path, out: Path) -> None:
    """Extract the kept regular files of ``vendor/llama.cpp`` into ``out``."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                inner = _kept_path(member.name)
                if inner is None or not member.isfile():
                    continue  # folders are made as needed; links are never followed
                dest = out.joinpath(*inner.parts)
                if not dest.resolve().is_relative_to(out.resolve()):
                    raise ConversionError(f"{archive.name}: {member.name!r} leads outside")
                dest.parent.mkdir(parents=True, exist_ok=True)
                data = tar.extractfile(member)
                if data is None:
                    continue
                with data, dest.open("wb") as f:
                    shutil.copyfileobj(data, f)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ConversionError(f"{archive}: cannot read the source distribution: {e}") from e
    try:
        _checked_source(out)
    except ConversionError:
        raise ConversionError(
            f"{archive.name} has no {VENDORED}/{SCRIPT} with conversion/ and gguf-py/") from None


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename a finished tree to ``target``; whichever concurrent run renames first wins."""
    try:
        staging.rename(target)
        return
    except OSError:
        if (target / MARKER).is_file():
            return  # another run finished first; its tree is as good as ours
    # ``target`` exists but was never finished (not written by this module): set it aside.
    stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        target.rename(stale)
    try:
        staging.rename(target)
    except OSError as e:
        if not (target / MARKER).is_file():
            raise ConversionError(f"cannot put the converter in {target}: {e}") from e
    shutil.rmtree(stale, ignore_errors=True)


# --------------------------------------------------------------------------- conversion


def convert(model_dir: Path, outfile: Path, *, source: Path, mmproj: bool = False,
            outtype: str = "f16", pre_tokenizer: str | None = None,
            metadata: Mapping[str, str] | None = None,
            log: Callable[[str], None] | None = None) -> Path:
    """Convert a Hugging Face model folder to a GGUF text model or projector.

    The converter writes to a temporary name beside ``outfile``, renamed once it has
    finished: a failed or interrupted conversion leaves no file behind.

    Args:
        model_dir: The Hugging Face folder (``config.json``, safetensors, tokenizer).
        outfile: The GGUF to write, used as is (no ``{ftype}`` templating); replaced if
            it exists. Its folder is created.
        source: The converter folder (:func:`converter_source`).
        mmproj: Write the vision projector instead of the text model.
        outtype: The converter's ``--outtype``: "f32", "f16", "bf16", "q8_0", ...
        pre_tokenizer: The ``tokenizer.ggml.pre`` to write when the tokenizer is home-made
            and so not recognised by llama.cpp's hash (e.g. "qwen2"); None to let the
            converter recognise it.
        metadata: String keys to add to the text model, e.g.
            ``{"stagewise.stage_mode": "native"}``; not written to a projector.
        log: Called with each line the converter prints.

    Returns:
        ``outfile``.

    Raises:
        ConversionError: ``model_dir`` or ``source`` is not usable, or the converter failed;
            the message ends with the converter's last lines.
        ValueError: A metadata key is empty or holds "=".
    """
    model_dir, outfile = Path(model_dir), Path(outfile)
    source = _checked_source(Path(source))
    if not (model_dir / "config.json").is_file():
        raise ConversionError(f"{model_dir}: not a Hugging Face model folder (no config.json)")
    command = [sys.executable, "-m", RUNNER, str(source)]
    if pre_tokenizer is not None:
        command.append(f"--pre-tokenizer={pre_tokenizer}")
    if not mmproj:
        for key, value in (metadata or {}).items():
            if not key or "=" in key:
                raise ValueError(f"metadata key {key!r} must be non-empty and free of '='")
            command.append(f"--kv={key}={value}")
    outfile.parent.mkdir(parents=True, exist_ok=True)
    partial = outfile.with_name(f".{outfile.name}.{uuid.uuid4().hex[:8]}.part")
    command += ["--", str(model_dir), "--outfile", str(partial), "--outtype", outtype]
    if mmproj:
        command.append("--mmproj")
    try:
        code, tail, unrecognised = _run(command, log)
        if code == 0 and partial.is_file():
            partial.replace(outfile)
            return outfile
    finally:
        partial.unlink(missing_ok=True)
    what = "projector" if mmproj else "text model"
    message = f"converting {model_dir} to a GGUF {what} failed"
    message += f" (exit code {code})" if code else " (it wrote no file)"
    if unrecognised:
        message += ": its BPE pre-tokenizer was not recognised. " + PRE_TOKENIZER_HINT
    raise ConversionError(message + "\n" + "\n".join(tail))


def _run(command: list[str], log: Callable[[str], None] | None) -> tuple[int, list[str], bool]:
    """Run the converter, passing each output line to ``log``.

    Returns:
        The exit code, the last non-empty lines, and whether the pre-tokenizer went
        unrecognised.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    env.pop("NO_LOCAL_GGUF", None)  # the converter's own gguf-py, of its version
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    unrecognised = False
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, encoding="utf-8",
                                errors="replace", env=env)
    except OSError as e:
        raise ConversionError(f"could not start the converter ({command[0]}): {e}") from e
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:  # universal newlines: progress bars' "\r" end lines too
            line = raw.rstrip()
            if not line:
                continue
            tail.append(line)
            unrecognised = unrecognised or _UNRECOGNISED in line
            if log is not None:
                log(line)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    return code, list(tail), unrecognised
