"""Checks GGUF files before llama.cpp sees them.

llama.cpp reports many broken files with an error, but some (a projector with a
wrongly typed key, an "mlp" projector without ``mm.2.weight``, ...) make it
abort or crash, which takes the whole app down. The checks here read only the
GGUF header, in pure Python, and raise :class:`~models.errors.ModelFileError`
with a message that names the file and the problem.

The header is parsed by a small reader of our own rather than
``gguf.GGUFReader``: that one decodes every string of the vocabulary into numpy
views and needs seconds for a 150k-token vocabulary, and it fails on truncated
files with unhelpful errors. Long arrays (tokens, merges) are skipped here, not
decoded. The ``gguf`` package still supplies the tensor type table.

What is checked follows the llama.cpp that llama-cpp-python 0.3.36 vendors
(``tools/mtmd/clip.cpp``, ``clip-impl.h``).
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

from models.errors import ModelFileError

__all__ = [
    "PROJECTOR_TYPES",
    "GGUFInfo",
    "LongArray",
    "check_pair",
    "check_projector",
    "check_text_model",
    "inspect_gguf",
    "projector_output_width",
    "text_input_width",
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

# Projector types the bundled clip.cpp knows (PROJECTOR_TYPE_NAMES in clip-impl.h).
PROJECTOR_TYPES: frozenset[str] = frozenset({
    "mlp", "ldp", "ldpv2", "resampler", "adapter", "qwen2vl_merger", "qwen2.5vl_merger",
    "qwen3vl_merger", "ling3vl", "step3vl", "gemma3", "gemma3nv", "gemma3na", "gemma4v",
    "gemma4a", "gemma4uv", "gemma4ua", "phi4", "idefics3", "pixtral", "ultravox", "internvl",
    "llama4", "qwen2a", "qwen3a", "glma", "qwen2.5o", "voxtral", "meralion", "musicflamingo",
    "lfm2", "kimivl", "paddleocr", "lightonocr", "cogvlm", "janus_pro", "dots_ocr",
    "dots3note_v", "dots3note_a", "deepseekocr", "deepseekocr2", "deepseek4v", "lfm2a",
    "glm4v", "glm5v", "youtuvl", "yasa2", "kimik25", "nemotron_v2_vl", "exaone4_5",
    "hunyuanvl", "minicpmv4_6", "granite_speech", "mimovl", "minimax_m3", "granite4_vision",
    "mimo_audio", "parakeet", "qwen3tts_spkenc", "qwen3tts_gen", "pockettts_spkenc",
    "pockettts_gen", "muse-glimmer",
})  # fmt: skip

# Keys clip.cpp reads with a type-asserting getter (gguf_get_val_u32 & co. abort
# the process on a type mismatch), with the type they must have when present.
_CLIP_KEY_TYPES: dict[str, int] = {
    "general.name": _STRING,
    "general.description": _STRING,
    "clip.has_vision_encoder": _BOOL,
    "clip.has_audio_encoder": _BOOL,
    "clip.has_gen_audio_encoder": _BOOL,
    "clip.use_gelu": _BOOL,
    "clip.use_silu": _BOOL,
    "clip.projector_type": _STRING,
    "clip.vision.projector_type": _STRING,
    "clip.vision.mm_patch_merge_type": _STRING,
    "clip.vision.embedding_length": _UINT32,
    "clip.vision.feed_forward_length": _UINT32,
    "clip.vision.block_count": _UINT32,
    "clip.vision.projection_dim": _UINT32,
    "clip.vision.attention.head_count": _UINT32,
    "clip.vision.attention.head_count_kv": _UINT32,
    "clip.vision.attention.head_dim": _UINT32,
    "clip.vision.attention.layer_norm_epsilon": _FLOAT32,
    "clip.vision.image_size": _UINT32,
    "clip.vision.patch_size": _UINT32,
    "clip.vision.image_min_pixels": _UINT32,
    "clip.vision.image_max_pixels": _UINT32,
    "clip.vision.preproc_image_size": _UINT32,
    "clip.vision.preproc_min_tiles": _UINT32,
    "clip.vision.preproc_max_tiles": _UINT32,
    "clip.vision.projector.scale_factor": _UINT32,
    "clip.vision.spatial_merge_size": _UINT32,
    "clip.vision.n_wa_pattern": _UINT32,
    "clip.vision.window_size": _UINT32,
    "clip.minicpmv_version": _INT32,
    "clip.minicpmv_query_num": _UINT32,
}

# Keys clip.cpp's load_hparams requires for a vision encoder.
_CLIP_VISION_REQUIRED = (
    "clip.vision.embedding_length",
    "clip.vision.attention.head_count",
    "clip.vision.feed_forward_length",
    "clip.vision.block_count",
    "clip.vision.projection_dim",
    "clip.vision.attention.layer_norm_epsilon",
    "clip.vision.image_size",
    "clip.vision.patch_size",
)

# Output width of a projector, as clip_n_mmproj_embd computes it: the tensor it
# reads and the ggml dimension (ne index) it takes. Types not listed are not
# checked.
_WIDTH_SOURCES: dict[str, tuple[str, int]] = {
    "mlp": ("mm.2.weight", 1),
    "ldp": ("mm.model.mb_block.1.block.2.1.bias", 0),
    "ldpv2": ("mm.model.peg.0.bias", 0),
    "resampler": ("resampler.proj.weight", 0),
    "adapter": ("adapter.linear.dense_4h_to_h.weight", 1),
    "qwen2vl_merger": ("mm.2.bias", 0),
    "qwen2.5vl_merger": ("mm.2.bias", 0),
    "qwen2.5o": ("mm.2.bias", 0),
    "qwen3vl_merger": ("mm.2.bias", 0),
    "exaone4_5": ("mm.2.bias", 0),
    "youtuvl": ("mm.2.bias", 0),
    "ling3vl": ("mm.2.bias", 0),
    "mimovl": ("mm.2.weight", 1),
    "gemma3": ("mm.input_projection.weight", 0),
    "gemma3nv": ("mm.input_projection.weight", 0),
    "gemma4v": ("mm.input_projection.weight", 1),
    "gemma4uv": ("mm.input_projection.weight", 1),
    "idefics3": ("mm.model.fc.weight", 1),
    "internvl": ("mm.model.mlp.3.weight", 1),
    "nemotron_v2_vl": ("mm.model.mlp.3.weight", 1),
    "pixtral": ("mm.2.weight", 1),
    "lightonocr": ("mm.2.weight", 1),
    "dots_ocr": ("mm.2.weight", 1),
    "dots3note_v": ("mm.2.weight", 1),
    "lfm2": ("mm.2.weight", 1),
    "kimivl": ("mm.2.weight", 1),
    "paddleocr": ("mm.2.weight", 1),
    "kimik25": ("mm.2.weight", 1),
    "yasa2": ("mm.2.weight", 1),
    "deepseek4v": ("mm.2.weight", 1),
    "muse-glimmer": ("mm.2.weight", 1),
    "glm4v": ("mm.down.weight", 1),
    "glm5v": ("mm.down.weight", 1),
    "minicpmv4_6": ("mm.down.weight", 1),
    "minimax_m3": ("mm.merger.fc2.bias", 0),
}

# Projector types that run the LLaVA graph (tools/mtmd/models/llava.cpp), which
# uses these tensors without checking that they were loaded.
_LLAVA_GRAPH_TYPES = frozenset({"mlp", "ldp", "ldpv2"})


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
        value = self.metadata.get(f"{self.architecture}.embedding_length")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def projector_type(self) -> str | None:
        """The projector type of a projector file (None if missing)."""
        for key in ("clip.projector_type", "clip.vision.projector_type"):
            value = self.metadata.get(key)
            if isinstance(value, str) and value:
                return value
        return None


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


def _parse(path: Path, buf: mmap.mmap) -> GGUFInfo:
    size = len(buf)
    cur = _Cursor(buf, size)
    cur.take(4)  # magic, already checked
    version = cur.u32()
    if version & 0xFFFF == 0 and version != 0:
        raise _Damaged("it is a big-endian GGUF file, which this llama.cpp cannot read")
    if version not in (2, 3):
        raise _Damaged(f"GGUF version {version} is not supported (llama.cpp reads 2 and 3)")
    n_tensors = cur.u64()
    n_kv = cur.u64()
    # Every key needs at least 13 bytes, every tensor at least 28.
    if n_kv * 13 + n_tensors * 28 > size - cur.pos:
        raise _Damaged(
            f"the header claims {n_kv} metadata keys and {n_tensors} tensors, "
            "more than the file can hold; the file is truncated or corrupt"
        )

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

    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if "general.alignment" in metadata and (
        value_types["general.alignment"] != "uint32"
        or not isinstance(alignment, int)
        or alignment <= 0
        or alignment & (alignment - 1)
    ):
        raise _Damaged("general.alignment must be a uint32 power of two")
    assert isinstance(alignment, int)

    infos: list[tuple[str, tuple[int, ...], str, int, int]] = []
    seen: set[str] = set()
    for _ in range(n_tensors):
        name = cur.string("a tensor name")
        n_dims = cur.u32()
        if n_dims > _MAX_DIMS:
            raise _Damaged(f"tensor {name!r} has {n_dims} dimensions (at most 4 allowed)")
        dims = tuple(cur.u64() for _ in range(n_dims))
        raw_type = cur.u32()
        offset = cur.u64()
        if name in seen:
            raise _Damaged(f"tensor {name!r} appears twice")
        seen.add(name)
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
        n_bytes = math.prod(dims) * type_size // block
        infos.append((name, dims, ttype.name, offset, n_bytes))

    data_offset = cur.pos + (-cur.pos) % alignment
    expected = max((data_offset + offset + n_bytes for *_, offset, n_bytes in infos), default=0)
    if expected > size:
        raise _Truncated(("data", expected))

    arch = metadata.get("general.architecture")
    name_value = metadata.get("general.name")
    return GGUFInfo(
        path=path,
        architecture=arch if isinstance(arch, str) else "",
        name=name_value if isinstance(name_value, str) else None,
        metadata=MappingProxyType(metadata),
        tensors=MappingProxyType({n: (d, t) for n, d, t, _o, _b in infos}),
        file_size=size,
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


# --------------------------------------------------------------------------- checks


def _require_key(info: GGUFInfo, key: str, what: str) -> object:
    if key not in info.metadata:
        raise ModelFileError(info.path, f"{what} is missing the metadata key {key!r}")
    return info.metadata[key]


def _kv_type(info: GGUFInfo, key: str) -> str | None:
    return info.value_types.get(key)


def _arch_key_int(info: GGUFInfo, suffix: str) -> int | None:
    value = info.metadata.get(f"{info.architecture}.{suffix}")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text_input_width(info: GGUFInfo) -> int | None:
    """The embedding width a text model takes as input (llama_model_n_embd_inp).

    That is ``embedding_length``, times (1 + deepstack layers) for models with
    deepstack inputs (Qwen3-VL, Granite vision). None if the width is missing.
    """
    n_embd = info.n_embd
    if n_embd is None:
        return None
    n_deepstack = _arch_key_int(info, "n_deepstack_layers") or 0
    mapping = info.metadata.get(f"{info.architecture}.deepstack_mapping")
    if isinstance(mapping, LongArray):
        return None  # too long to have been decoded; do not guess
    if isinstance(mapping, list):
        n_deepstack = len({v for v in mapping if isinstance(v, int) and v >= 0})
    return n_embd * (1 + n_deepstack)


def check_text_model(path: Path | str) -> GGUFInfo:
    """Checks that ``path`` is a GGUF text model llama.cpp can be given.

    Returns:
        The file's header; ``info.n_embd`` is the model's width.

    Raises:
        ModelFileError: The file is unreadable, not GGUF, truncated, a
            projector, or lacks what every llama.cpp text model has.
    """
    info = inspect_gguf(path)
    if info.is_projector:
        raise ModelFileError(
            info.path,
            "this is a multimodal projector (mmproj) file, not a text model; "
            "choose it as the projector and pick the language model file as the model",
        )
    if not info.architecture:
        raise ModelFileError(info.path, "the file has no general.architecture, so it is no model")
    what = "the text model"
    _require_key(info, "tokenizer.ggml.model", what)
    _require_key(info, "tokenizer.ggml.tokens", what)
    for suffix in ("embedding_length", "block_count"):
        _require_key(info, f"{info.architecture}.{suffix}", what)
        if _arch_key_int(info, suffix) is None:
            raise ModelFileError(
                info.path, f"the metadata key '{info.architecture}.{suffix}' is not an integer"
            )
    if not info.tensors:
        raise ModelFileError(
            info.path, "the file holds no weights (it may be a vocabulary-only file)"
        )
    return info


def projector_output_width(info: GGUFInfo) -> int | None:
    """The embedding width a projector produces, as clip_n_mmproj_embd computes it.

    Returns:
        The width, or None for projector types not covered here.

    Raises:
        ModelFileError: The tensor the width is read from is missing (for the
            "mlp" type llama.cpp would crash on it).
    """
    ptype = info.projector_type
    if ptype is None or ptype not in _WIDTH_SOURCES:
        return None
    tensor, axis = _WIDTH_SOURCES[ptype]
    if ptype == "mlp" and "mm.3.weight" in info.tensors:
        tensor, axis = "mm.3.bias", 0  # Yi-style "mlp_norm" projector
    if tensor not in info.tensors:
        raise ModelFileError(
            info.path,
            f"the {ptype!r} projector is missing the tensor {tensor!r}, "
            "which llama.cpp needs to know its output width",
        )
    dims = info.tensors[tensor][0]
    if len(dims) <= axis:
        raise ModelFileError(info.path, f"the tensor {tensor!r} has too few dimensions")
    width = dims[axis]
    if ptype == "qwen3vl_merger":
        n_blocks = info.metadata.get("clip.vision.block_count")
        n_deepstack = sum(
            f"v.deepstack.{i}.fc1.weight" in info.tensors
            for i in range(n_blocks if isinstance(n_blocks, int) else 0)
        )
        width *= 1 + n_deepstack
    return width


def _check_key_types(info: GGUFInfo) -> None:
    for key, expected in _CLIP_KEY_TYPES.items():
        actual = _kv_type(info, key)
        if actual is not None and actual != _TYPE_NAMES[expected]:
            raise ModelFileError(
                info.path,
                f"the metadata key {key!r} is stored as {actual} but llama.cpp reads it as "
                f"{_TYPE_NAMES[expected]} (and would abort)",
            )


def _check_llava_tensors(info: GGUFInfo) -> None:
    needed = ["v.patch_embd.weight", "v.position_embd.weight"]
    n_blocks = info.metadata["clip.vision.block_count"]
    assert isinstance(n_blocks, int)
    for i in range(n_blocks):
        needed += [
            f"v.blk.{i}.{part}.weight"
            for part in ("attn_q", "attn_k", "attn_v", "attn_out", "ffn_up", "ffn_down")
        ]
    if info.projector_type == "mlp":
        needed += ["mm.0.weight", "mm.0.bias"]
        if "mm.3.weight" not in info.tensors:
            needed += ["mm.2.weight", "mm.2.bias"]
    for name in needed:
        if name not in info.tensors:
            raise ModelFileError(
                info.path, f"the projector is missing the tensor {name!r}, which llama.cpp needs"
            )


def check_projector(path: Path | str) -> GGUFInfo:
    """Checks that ``path`` is a vision projector (mmproj) llama.cpp can be given.

    Returns:
        The file's header.

    Raises:
        ModelFileError: The file is unreadable, not GGUF, truncated, a text
            model, has no vision encoder, an unknown projector type, or lacks
            keys or tensors that llama.cpp needs.
    """
    info = inspect_gguf(path)
    if not info.is_projector:
        arch = info.architecture or "unknown"
        raise ModelFileError(
            info.path,
            f"this is a text model (architecture {arch!r}), not a multimodal projector "
            "(mmproj) file; choose the matching mmproj file as the projector",
        )
    _check_key_types(info)
    if info.metadata.get("clip.has_vision_encoder") is not True:
        if info.metadata.get("clip.has_audio_encoder") is True:
            problem = "this projector is for audio only; Stagewise needs a vision projector"
        else:
            problem = "this projector has no vision encoder (clip.has_vision_encoder is not set)"
        raise ModelFileError(info.path, problem)
    ptype = info.projector_type
    if ptype is None:
        raise ModelFileError(info.path, "the projector does not say its type (clip.projector_type)")
    if ptype not in PROJECTOR_TYPES:
        raise ModelFileError(
            info.path,
            f"the projector type {ptype!r} is not supported by the bundled llama.cpp",
        )
    what = "the projector"
    for key in _CLIP_VISION_REQUIRED:
        _require_key(info, key, what)
    for key in ("clip.vision.image_mean", "clip.vision.image_std"):
        value = _require_key(info, key, what)
        if _kv_type(info, key) != "array[float32]" or not isinstance(value, list) or len(value) < 3:
            raise ModelFileError(
                info.path, f"the metadata key {key!r} must be an array of at least 3 float32 values"
            )
    image_size = info.metadata["clip.vision.image_size"]
    patch_size = info.metadata["clip.vision.patch_size"]
    assert isinstance(image_size, int) and isinstance(patch_size, int)
    if patch_size <= 0 or image_size > 8192:
        raise ModelFileError(info.path, "the projector's image_size or patch_size is out of range")
    if ptype in _LLAVA_GRAPH_TYPES:
        _check_llava_tensors(info)
    projector_output_width(info)  # raises if the width tensor is missing
    return info


def check_pair(model_path: Path | str, mmproj_path: Path | str) -> tuple[GGUFInfo, GGUFInfo]:
    """Checks a text model and a projector and that they fit together.

    Returns:
        The headers of the model and of the projector.

    Raises:
        ModelFileError: Either file fails its own check, or the projector's
            output width differs from the text model's input width (the error
            names the projector).
    """
    model = check_text_model(model_path)
    projector = check_projector(mmproj_path)
    produced = projector_output_width(projector)
    expected = text_input_width(model)
    if produced is not None and expected is not None and produced != expected:
        raise ModelFileError(
            projector.path,
            f"this projector produces embeddings of width {produced}, but the text model "
            f"{model.path.name} takes width {expected}; they do not belong together",
        )
    return model, projector
