"""Reads the header of a GGUF file: metadata keys and tensor descriptions.

The header is parsed by a small reader of our own rather than
``gguf.GGUFReader``: that one decodes every string of the vocabulary into numpy
views and needs seconds for a 150k-token vocabulary, and it fails on truncated
files with unhelpful errors. Long arrays (tokens, merges) are skipped here, not
decoded. The ``gguf`` package still supplies the tensor type table.

:func:`inspect_gguf` raises :class:`~stagewise.models.errors.ModelFileError` with a message
that names the file and the problem; :mod:`stagewise.models.inference.gguf_check` checks what it
read.
"""

from __future__ import annotations

import codecs
import math
import mmap
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from stagewise.models.errors import ModelFileError

__all__ = [
    "MAX_DECODED_ARRAY",
    "GGUFInfo",
    "LongArray",
    "inspect_gguf",
    "int_value",
]

# Arrays longer than this are summarised as a LongArray instead of decoded.
MAX_DECODED_ARRAY = 64

_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4
_MAX_STRING = 1 << 30

# GGUF value types (gguf.h).
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL = range(8)
_STRING, _ARRAY, _UINT64, _INT64, _FLOAT64 = range(8, 13)
_TYPE_NAMES = {
    _UINT8: "uint8", _INT8: "int8", _UINT16: "uint16", _INT16: "int16",
    _UINT32: "uint32", _INT32: "int32", _FLOAT32: "float32", _BOOL: "bool",
    _STRING: "string", _ARRAY: "array", _UINT64: "uint64", _INT64: "int64",
    _FLOAT64: "float64",
}  # fmt: skip
_SCALAR_FORMATS = {
    _UINT8: "<B", _INT8: "<b", _UINT16: "<H", _INT16: "<h", _UINT32: "<I",
    _INT32: "<i", _FLOAT32: "<f", _BOOL: "<?", _UINT64: "<Q", _INT64: "<q",
    _FLOAT64: "<d",
}  # fmt: skip


@dataclass(frozen=True)
class LongArray:
    """Stands in for a metadata array too long to decode (tokens, merges, ...)."""

    element_type: str
    length: int


@dataclass(frozen=True)
class GGUFInfo:
    """What the header of a GGUF file says.

    Attributes:
        path: The file.
        architecture: ``general.architecture`` ("" when missing).
        name: ``general.name``, if any.
        metadata: Key/value pairs; scalars, strings and arrays of up to 64
            elements decoded to Python values, longer arrays as :class:`LongArray`.
        tensors: Tensor name to (ggml ``ne`` dimensions, type name such as "F16").
        file_size: Size of the file in bytes.
        value_types: Metadata key to its GGUF value type: "uint32", "float32",
            "string", ..., or "array[float32]" and the like for arrays.
    """

    path: Path
    architecture: str
    name: str | None
    metadata: Mapping[str, object]
    tensors: Mapping[str, tuple[tuple[int, ...], str]]
    file_size: int
    value_types: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def is_projector(self) -> bool:
        """Whether this is a multimodal projector (architecture "clip")."""
        return self.architecture == "clip"

    @property
    def n_embd(self) -> int | None:
        """``{architecture}.embedding_length`` of a text model (None if missing)."""
        return int_value(self.metadata.get(f"{self.architecture}.embedding_length"))

    @property
    def projector_type(self) -> str | None:
        """The projector type of a projector file (None if missing)."""
        for key in ("clip.projector_type", "clip.vision.projector_type"):
            value = self.metadata.get(key)
            if isinstance(value, str) and value:
                return value
        return None



def int_value(value: object) -> int | None:
    """A metadata value if it is an integer (a bool is not), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------- reading


class _Truncated(Exception):
    """The header ends before the file does."""


class _Damaged(Exception):
    """The header holds values llama.cpp would refuse."""


class _Cursor:
    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def take(self, n: int) -> int:
        """Advances by ``n`` bytes and returns the old position."""
        start = self.pos
        if n < 0 or start + n > self.size:
            raise _Truncated(start)
        self.pos = start + n
        return start

    def scalar(self, vtype: int) -> object:
        fmt = _SCALAR_FORMATS[vtype]
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt)))[0]

    def u32(self) -> int:
        return struct.unpack_from("<I", self.buf, self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack_from("<Q", self.buf, self.take(8))[0]

    def string(self, what: str) -> str:
        n = self.u64()
        if n > _MAX_STRING:
            raise _Damaged(f"{what} claims a string of {n} bytes")
        start = self.take(n)
        return bytes(self.buf[start : start + n]).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.take(self.u64())

    def value(self, vtype: int, key: str) -> object:
        if vtype == _STRING:
            return self.string(f"metadata key {key!r}")
        if vtype in _SCALAR_FORMATS:
            return self.scalar(vtype)
        raise _Damaged(f"metadata key {key!r} has unknown value type {vtype}")

    def array(self, etype: int, n: int, key: str) -> object:
        if etype not in _TYPE_NAMES:
            raise _Damaged(f"metadata array {key!r} has unknown element type {etype}")
        if etype in _SCALAR_FORMATS:
            width = struct.calcsize(_SCALAR_FORMATS[etype])
            if n * width > self.size - self.pos:
                raise _Truncated(self.pos)
            if n > MAX_DECODED_ARRAY:
                self.take(n * width)
                return LongArray(_TYPE_NAMES[etype], n)
            start = self.take(n * width)
            fmt = "<" + _SCALAR_FORMATS[etype][1] * n
            return list(struct.unpack_from(fmt, self.buf, start))
        if etype == _STRING:
            if n * 8 > self.size - self.pos:
                raise _Truncated(self.pos)
            if n > MAX_DECODED_ARRAY:
                for _ in range(n):
                    self.skip_string()
                return LongArray("string", n)
            return [self.string(f"metadata array {key!r}") for _ in range(n)]
        # Arrays of arrays: llama.cpp's reader rejects them.
        raise _Damaged(f"metadata key {key!r} is an array of arrays")


def _describe_non_gguf(head: bytes) -> str:
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image, not a GGUF model file"
    if head.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image, not a GGUF model file"
    if head.startswith(b"PK\x03\x04"):
        return (
            "it is a ZIP archive (for example a PyTorch checkpoint), not a GGUF model file; "
            "convert the model to GGUF first"
        )
    if head.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the model itself; download the real file"
    if len(head) >= 10 and head[8:10] in (b'{"', b"{'"):
        return "it looks like a safetensors file, not a GGUF model file; convert it to GGUF"
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page (perhaps a failed download), not a GGUF model file"
    try:  # final=False: a character cut off at the end of ``head`` is fine
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "it is a text file, not a GGUF model file"
    return "it is not a GGUF model file (it does not start with the GGUF signature)"


def _open(path: Path) -> tuple[int, bytes]:
    """Returns the size and the first bytes of ``path``, or raises ModelFileError."""
    try:
        if not path.exists():
            raise ModelFileError(path, "the file does not exist")
        if path.is_dir():
            raise ModelFileError(path, "this is a folder, not a model file")
        with path.open("rb") as f:
            head = f.read(64)
            size = f.seek(0, 2)
    except ModelFileError:
        raise
    except OSError as e:
        reason = e.strerror or str(e)
        raise ModelFileError(path, f"the file cannot be read ({reason})") from e
    return size, head


def _read_counts(cur: _Cursor) -> tuple[int, int]:
    """Reads the version and the counts after the magic; returns (tensors, keys)."""
    cur.take(4)  # magic, already checked
    version = cur.u32()
    if version & 0xFFFF == 0 and version != 0:
        raise _Damaged("it is a big-endian GGUF file, which this llama.cpp cannot read")
    if version not in (2, 3):
        raise _Damaged(f"GGUF version {version} is not supported (llama.cpp reads 2 and 3)")
    n_tensors = cur.u64()
    n_kv = cur.u64()
    # Every key needs at least 13 bytes, every tensor at least 28.
    if n_kv * 13 + n_tensors * 28 > cur.size - cur.pos:
        raise _Damaged(
            f"the header claims {n_kv} metadata keys and {n_tensors} tensors, "
            "more than the file can hold; the file is truncated or corrupt"
        )
    return n_tensors, n_kv


def _read_metadata(cur: _Cursor, n_kv: int) -> tuple[dict[str, object], dict[str, str]]:
    """Reads ``n_kv`` key/value pairs; returns the values and their GGUF type names."""
    metadata: dict[str, object] = {}
    value_types: dict[str, str] = {}
    for _ in range(n_kv):
        key = cur.string("a metadata key name")
        vtype = cur.u32()
        if key in metadata:
            raise _Damaged(f"metadata key {key!r} appears twice")
        if vtype == _ARRAY:
            etype = cur.u32()
            metadata[key] = cur.array(etype, cur.u64(), key)
            value_types[key] = f"array[{_TYPE_NAMES[etype]}]"
        else:
            metadata[key] = cur.value(vtype, key)
            value_types[key] = _TYPE_NAMES[vtype]
    return metadata, value_types


def _alignment(metadata: Mapping[str, object], value_types: Mapping[str, str]) -> int:
    """``general.alignment``, or the default; raises _Damaged if it is no power of two."""
    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if "general.alignment" in metadata and (
        value_types["general.alignment"] != "uint32"
        or not isinstance(alignment, int)
        or alignment <= 0
        or alignment & (alignment - 1)
    ):
        raise _Damaged("general.alignment must be a uint32 power of two")
    assert isinstance(alignment, int)
    return alignment


@dataclass(frozen=True)
class _TensorInfo:
    """One tensor as the header describes it."""

    name: str
    dims: tuple[int, ...]
    type_name: str
    offset: int
    n_bytes: int


def _read_tensor_entry(cur: _Cursor) -> tuple[str, tuple[int, ...], int, int]:
    """Reads one tensor description: (name, dims, raw type, offset)."""
    name = cur.string("a tensor name")
    n_dims = cur.u32()
    if n_dims > _MAX_DIMS:
        raise _Damaged(f"tensor {name!r} has {n_dims} dimensions (at most 4 allowed)")
    dims = tuple(cur.u64() for _ in range(n_dims))
    raw_type = cur.u32()
    offset = cur.u64()
    return name, dims, raw_type, offset


def _tensor_type(name: str, raw_type: int, dims: tuple[int, ...], offset: int,
                 alignment: int) -> tuple[str, int]:
    """Checks a tensor's type, shape and offset; returns its type name and byte count."""
    try:
        ttype = GGMLQuantizationType(raw_type)
        block, type_size = GGML_QUANT_SIZES[ttype]
    except (ValueError, KeyError):
        raise _Damaged(
            f"tensor {name!r} has tensor type {raw_type}, which this version does not know "
            "(the file may need a newer llama.cpp)"
        ) from None
    if dims and dims[0] % block:
        raise _Damaged(f"tensor {name!r} has a first dimension that does not fit its type")
    if offset % alignment:
        raise _Damaged(f"tensor {name!r} is not aligned in the file")
    return ttype.name, math.prod(dims) * type_size // block


def _read_tensors(cur: _Cursor, n_tensors: int, alignment: int) -> list[_TensorInfo]:
    """Reads ``n_tensors`` tensor descriptions; raises _Damaged on any llama.cpp refuses."""
    tensors: list[_TensorInfo] = []
    seen: set[str] = set()
    for _ in range(n_tensors):
        name, dims, raw_type, offset = _read_tensor_entry(cur)
        if name in seen:
            raise _Damaged(f"tensor {name!r} appears twice")
        seen.add(name)
        type_name, n_bytes = _tensor_type(name, raw_type, dims, offset, alignment)
        tensors.append(_TensorInfo(name, dims, type_name, offset, n_bytes))
    return tensors


def _parse(path: Path, buf: mmap.mmap) -> GGUFInfo:
    """Reads the header in ``buf``; raises _Truncated or _Damaged for a broken one."""
    cur = _Cursor(buf, len(buf))
    n_tensors, n_kv = _read_counts(cur)
    metadata, value_types = _read_metadata(cur, n_kv)
    alignment = _alignment(metadata, value_types)
    tensors = _read_tensors(cur, n_tensors, alignment)

    data_offset = cur.pos + (-cur.pos) % alignment
    expected = max((data_offset + t.offset + t.n_bytes for t in tensors), default=0)
    if expected > cur.size:
        raise _Truncated(("data", expected))

    arch = metadata.get("general.architecture")
    name_value = metadata.get("general.name")
    return GGUFInfo(
        path=path,
        architecture=arch if isinstance(arch, str) else "",
        name=name_value if isinstance(name_value, str) else None,
        metadata=MappingProxyType(metadata),
        tensors=MappingProxyType({t.name: (t.dims, t.type_name) for t in tensors}),
        file_size=cur.size,
        value_types=MappingProxyType(value_types),
    )


def inspect_gguf(path: Path | str) -> GGUFInfo:
    """Reads the header of a GGUF file.

    Args:
        path: The file.

    Returns:
        What the header says.

    Raises:
        ModelFileError: The file is missing, unreadable, empty, not GGUF,
            truncated, or its header is damaged.
    """
    path = Path(path)
    size, head = _open(path)
    if size == 0:
        raise ModelFileError(path, "the file is empty")
    if not head.startswith(_MAGIC):
        raise ModelFileError(path, _describe_non_gguf(head))
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(path, buf)
    except _Truncated as e:
        where = e.args[0]
        if isinstance(where, tuple):
            expected = where[1]
            problem = (
                f"the file is truncated: its weights need {expected} bytes but the file has "
                f"only {size} ({size / expected:.0%}); download or copy it again"
            )
        else:
            problem = (
                f"the file is truncated: it ends inside its header (after {size} bytes); "
                "download or copy it again"
            )
        raise ModelFileError(path, problem) from None
    except _Damaged as e:
        raise ModelFileError(path, f"the GGUF header is damaged: {e.args[0]}") from None
    except Exception as e:  # anything else a damaged file may provoke
        raise ModelFileError(
            path, f"the file cannot be read as GGUF ({type(e).__name__}: {e})"
        ) from e

