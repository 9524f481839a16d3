"""Encoded images kept on disk: a question's prompt up to its image's end, as cache cells.

Encoding an image and evaluating the prompt up to it is most of the wait before a first
token on a CPU (24 of 27 s for a 3B-scale pair). That part is the same for every question
about the image, so its cells (llama.cpp's sequence state,
:mod:`stagewise.models.inference.seq_state`) are written to a file here, and the next
question about the image tomorrow, or after a restart, reads them back instead.

An entry is one file, ``<key digest>.kv``:

* :data:`MAGIC`, then the length of a JSON header, then the header: the whole key (see
  :func:`prefix_key`), llama-cpp-python's version, the positions the state holds, the
  text tokens it holds after the image (a prompted model's stage instruction, which every
  question has there), the payload's size and SHA-256, and how long the encode it saves
  took;
* the payload: llama.cpp's bytes for the sequence.

An entry is used only when its header parses, its key is exactly the one asked for
(model and projector file, image, the prompt before the image, the settings that change
the cells), its version is this llama.cpp's, the file is exactly as long as the header
says, the payload's hash matches, llama.cpp takes it, and the sequence then ends where
the header says. Anything else discards the file with one line in the log and the image
is encoded. Writes go to a temporary file renamed into place, so a reader never sees half
a file; a full disk loses only the entry. The folder is capped: after each write the
entries used longest ago (a read touches a file's time) are deleted until it fits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from stagewise.models.disk.paths import prefix_cache_dir
from stagewise.models.errors import EngineError
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import PREFIX_CACHE_MIB
from stagewise.models.inference.seq_state import read_seq, seq_positions, write_seq

__all__ = ["DEFAULT_CAP_MIB", "MAGIC", "CachedPrefix", "PrefixCache", "file_identity",
           "prefix_key"]

log = logging.getLogger("stagewise.prefix_cache")

MAGIC = b"STAGEWISE-PREFIX\x00\x01"
"""The first bytes of every entry (the last one is the format's version)."""

DEFAULT_CAP_MIB = PREFIX_CACHE_MIB
"""The folder's default cap: a few dozen images of a 3-4B model, a handful of a 7B one."""

SUFFIX = ".kv"
_LENGTH = struct.Struct("<I")
_MAX_HEADER = 1 << 20
_STALE_TEMP_S = 3600.0  # a temporary file this old was left by a process that died


def file_identity(path: Path) -> dict[str, Any]:
    """What identifies a model file without reading it: where it is, its size and when it
    was last written (a file replaced in place gets a new time)."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def prefix_key(engine: Engine, image: tuple[int, int, str], head: object) -> dict[str, Any]:
    """Everything the cells of a prompt up to its image's end depend on.

    Args:
        engine: The loaded model: its two files, and the settings that change the cells'
            values or layout (the batch size splits the evaluation; flash attention
            changes the arithmetic and how values are stored; offloaded layers run on
            other hardware; extra weight buffers use other kernels). Threads and the
            context size do not change them.
        image: Width, height and SHA-256 of the pixels handed to libmtmd.
        head: The prompt's chunks up to the image's end (their tokens, the image's size
            in tokens and positions), as a value with a stable ``repr``.

    Returns:
        A JSON-ready dict; equal dicts mean interchangeable cells.
    """
    s = engine.settings
    return {
        "model": file_identity(engine.model_path),
        "mmproj": file_identity(engine.mmproj_path),
        "image": list(image),
        "head": hashlib.sha256(repr(head).encode()).hexdigest(),
        "settings": {
            "n_batch": s.n_batch, "flash_attn": s.flash_attn, "gpu_layers": s.gpu_layers,
            "extra_buffers": bool(engine.buffer_choice.use_extra),
        },
        "llama_cpp": llama_cpp.__version__,
    }


def _digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class CachedPrefix:
    """An entry read into a sequence.

    Attributes:
        seconds: How long reading it took.
        encode_s: How long the encode it replaced took when it was made.
        n_pos: The next position after it.
        after: The text tokens it holds after the image's end.
    """

    seconds: float
    encode_s: float
    n_pos: int
    after: tuple[int, ...] = ()


class PrefixCache:
    """A folder of encoded prefixes, capped in size.

    Attributes:
        folder: Where the entries are.
        cap_bytes: The most the entries may take together.
    """

    def __init__(self, folder: Path | None = None, cap_bytes: int = DEFAULT_CAP_MIB << 20
                 ) -> None:
        """Use ``folder`` (default: :func:`~stagewise.models.disk.paths.prefix_cache_dir`),
        holding at most ``cap_bytes``."""
        self.folder = Path(folder) if folder is not None else prefix_cache_dir()
        self.cap_bytes = max(int(cap_bytes), 0)

    @classmethod
    def with_cap_mib(cls, cap_mib: int) -> PrefixCache | None:
        """The cache in its usual folder with a cap in MiB; None (no cache) for 0."""
        return cls(cap_bytes=cap_mib << 20) if cap_mib > 0 else None

    def path_of(self, key: Mapping[str, Any]) -> Path:
        """The file of ``key``'s entry (which may not exist)."""
        return self.folder / f"{_digest(key)}{SUFFIX}"

    def entries(self) -> list[Path]:
        """The entries, least recently used first."""
        found = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            with contextlib.suppress(OSError):
                found.append((path.stat().st_mtime_ns, path))
        return [path for _, path in sorted(found)]

    def size(self) -> int:
        """Bytes the entries take together."""
        total = 0
        for path in self.entries():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    # -- reading --------------------------------------------------------------------------

    def load(self, engine: Engine, key: Mapping[str, Any], seq: int) -> CachedPrefix | None:
        """Put ``key``'s entry into the empty sequence ``seq``; None when there is no
        usable entry (a bad one is deleted, and the log says why in one line)."""
        path = self.path_of(key)
        start = time.perf_counter()
        try:
            with open(path, "rb") as file:
                header, payload = _read_entry(file, key, os.fstat(file.fileno()).st_size)
        except FileNotFoundError:
            return None
        except _Unusable as problem:
            self._discard(path, str(problem))
            return None
        except OSError as error:
            log.warning("prefix cache: cannot read %s (%s); encoding the image", path.name,
                        error)
            return None
        if not write_seq(engine, seq, payload):
            engine.remove_seq(seq)
            self._discard(path, "llama.cpp refused its cells")
            return None
        if seq_positions(engine, seq) != tuple(header["positions"]):
            engine.remove_seq(seq)
            self._discard(path, f"its cells hold positions {seq_positions(engine, seq)}, "
                                f"not {tuple(header['positions'])}")
            return None
        _touch(path)  # used now: the last to be evicted
        return CachedPrefix(time.perf_counter() - start, float(header["encode_s"]),
                            int(header["n_pos"]), tuple(header.get("after", ())))

    def _discard(self, path: Path, why: str) -> None:
        log.warning("prefix cache: %s is unusable (%s); deleted it, encoding the image",
                    path.name, why)
        with contextlib.suppress(OSError):
            path.unlink()

    # -- writing --------------------------------------------------------------------------

    def save(self, engine: Engine, key: Mapping[str, Any], seq: int, n_pos: int,
             encode_s: float, after: tuple[int, ...] = ()) -> bool:
        """Keep sequence ``seq`` (a prompt up to its image's end, then the text tokens
        ``after`` it; ``n_pos`` positions) as ``key``'s entry, then evict the least
        recently used entries beyond the cap.

        Returns:
            Whether it was written. A full disk or an unwritable folder is one line in
            the log, never an error: the image is encoded again next time.
        """
        try:
            payload = read_seq(engine, seq)
        except EngineError as error:
            log.warning("prefix cache: cannot read the image's cells (%s)", error)
            return False
        header = {
            "key": dict(key), "positions": list(seq_positions(engine, seq)), "n_pos": n_pos,
            "after": list(after),
            "payload_bytes": len(payload),
            "payload_sha256": hashlib.sha256(memoryview(payload)).hexdigest(),
            "encode_s": round(encode_s, 4), "written": time.time(),
        }
        head = json.dumps(header, sort_keys=True).encode()
        size = len(MAGIC) + _LENGTH.size + len(head) + len(payload)
        if size > self.cap_bytes:
            log.info("prefix cache: the image's cells (%.1f MiB) exceed the cache's cap "
                     "(%.1f MiB); not kept", size / 2**20, self.cap_bytes / 2**20)
            return False
        path = self.path_of(key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_entry(path, (MAGIC, _LENGTH.pack(len(head)), head, memoryview(payload)))
        except OSError as error:
            log.warning("prefix cache: cannot keep the encoded image in %s (%s); it will be "
                        "encoded again next time", self.folder, error.strerror or error)
            return False
        _touch(path)
        self.evict(keep=path)
        return True

    def evict(self, keep: Path | None = None) -> None:
        """Delete the least recently used entries until the rest fit the cap (and any
        temporary file a dead process left); ``keep`` (the entry just written) stays."""
        now = time.time()
        for temp in self.folder.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                if now - temp.stat().st_mtime > _STALE_TEMP_S:
                    temp.unlink()
        entries = []
        for path in self.entries():
            with contextlib.suppress(OSError):
                entries.append((path, path.stat().st_size))
        total = sum(size for _, size in entries)
        for path, size in entries:  # oldest first
            if total <= self.cap_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size


_KEY_WORDS = {"model": "model", "mmproj": "projector", "image": "image",
              "head": "prompt before the image", "settings": "engine settings",
              "llama_cpp": "llama.cpp version"}


class _Unusable(Exception):
    """An entry that must not be loaded; the message says why."""


def _read_entry(file: Any, key: Mapping[str, Any], size: int
                ) -> tuple[dict[str, Any], bytearray]:
    """An entry's header and payload, checked against ``key`` and itself.

    Raises:
        _Unusable: Any check failed.
    """
    magic = file.read(len(MAGIC))
    if magic != MAGIC:
        raise _Unusable("it is not a Stagewise prefix entry of this format")
    raw = file.read(_LENGTH.size)
    if len(raw) != _LENGTH.size:
        raise _Unusable("it is truncated")
    (length,) = _LENGTH.unpack(raw)
    if length > _MAX_HEADER:
        raise _Unusable("its header is damaged")
    try:
        header = json.loads(file.read(length))
        payload_bytes = int(header["payload_bytes"])
        stored_key, digest = header["key"], str(header["payload_sha256"])
        positions = [int(p) for p in header["positions"]]
        int(header["n_pos"]), float(header["encode_s"]), [int(t) for t in header.get("after", ())]
    except (ValueError, KeyError, TypeError) as error:
        raise _Unusable(f"its header is damaged ({type(error).__name__})") from None
    if len(positions) != 2:
        raise _Unusable("its header is damaged (positions)")
    if not isinstance(stored_key, dict):
        raise _Unusable("its header is damaged (key)")
    if stored_key != key:
        differ = [words for part, words in _KEY_WORDS.items()
                  if stored_key.get(part) != key.get(part)] or ["key"]
        raise _Unusable(f"it was made for another {' and '.join(differ)}")
    expected = len(MAGIC) + _LENGTH.size + length + payload_bytes
    if size != expected:
        raise _Unusable(f"it holds {size} bytes, not {expected}: "
                        + ("truncated" if size < expected else "damaged"))
    payload = bytearray(payload_bytes)
    if file.readinto(payload) != payload_bytes:
        raise _Unusable("it is truncated")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise _Unusable("its cells do not match their checksum")
    return header, payload


def _touch(path: Path) -> None:
    """Mark an entry used now, to the nanosecond of Python's clock (the file system's
    own time for a write can be a few milliseconds coarse, and tie with the last one)."""
    now = time.time_ns()
    with contextlib.suppress(OSError):
        os.utime(path, ns=(now, now))


def _write_entry(path: Path, parts: tuple[bytes | memoryview, ...]) -> None:
    """Write an entry through a temporary file renamed into place.

    Not synced to the disk: a crash may leave a damaged entry, which is found out and
    discarded when read; syncing would cost the writer the time the cache saves.

    Raises:
        OSError: It could not be written (``path`` is then unchanged).
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            for part in parts:
                file.write(part)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
