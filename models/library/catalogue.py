"""The catalogue of vision models Stagewise knows how to fetch and run.

Each entry is a text-model GGUF plus its multimodal projector (``mmproj``) GGUF that
llama.cpp's libmtmd runs. Entries live in ``models/data/catalogue.toml``, one
``[[model]]`` table per Hugging Face download and one ``[[local]]`` table per model that
is built on this machine (the LLaVA-CoT fine-tune), which has no repository.

A ``[[prm]]`` table is a process reward model: a verifier that scores the stages another
model writes (the ``prm`` selection's ``--scorer-model``), never a model to answer with
(its :attr:`CatalogueEntry.role` is "verifier"). No GGUF of one is published, so it is built
on this machine too, from the Hugging Face repository of its published weights
(``weights``) by the PRM recipe (:mod:`stagewise.models.recipes.prm`); a PRM whose own
system message differs from the one the ``prm`` selection assumes names it in
``system_prompt``, which the recipe writes into the GGUF.

Sizes and SHA-256 digests are recorded where a source was found for them; an unknown
size is ``0`` and an unknown digest ``""``. The downloader then takes them from the
hub's metadata at download time, and it always checks the file against the hub, so the
catalogue is a cross-check, never the only one. Every entry names its ``sources``: each
an http(s) link a reader can follow, with an optional note after it (:func:`source_link`).

:func:`load_catalogue` checks every field and raises :class:`CatalogueError` (a
:class:`~stagewise.models.errors.StagewiseError`) with a message that names the file, the entry
and the field. This module is Qt-free and does not load llama.cpp.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from stagewise.models.errors import StagewiseError

__all__ = [
    "CATALOGUE_RESOURCE",
    "FAMILIES",
    "ROLES",
    "SCHEMA_VERSION",
    "STAGE_MODES",
    "CatalogueEntry",
    "CatalogueError",
    "CatalogueFile",
    "find_entry",
    "load_catalogue",
    "source_link",
]

SCHEMA_VERSION = 1
"""The ``schema`` number this module reads."""

CATALOGUE_RESOURCE = "data/catalogue.toml"
"""Where the packaged catalogue lies inside the ``models`` package."""

FAMILIES = frozenset({"smolvlm", "qwen2.5-vl", "qwen3-vl", "gemma3", "internvl", "llava-cot-local"})
"""Model families an entry may belong to."""

LOCAL_FAMILY = "llava-cot-local"

STAGE_MODES = frozenset({"prompted", "native"})
"""``prompted``: told to answer in stages; ``native``: a LLaVA-CoT fine-tune."""

ROLES = frozenset({"answer", "verifier"})
"""``answer``: a model that answers questions; ``verifier``: a process reward model that
only scores another model's steps ([[prm]] tables)."""

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SOURCE_RE = re.compile(r"^(?P<url>https?://[^\s/]+\S*)(?:\s+(?P<note>.*))?$", re.DOTALL)

_KINDS = ("model", "local", "prm")
_TOP_LEVEL_KEYS = frozenset({"schema", *_KINDS})
_REQUIRED = (
    "id",
    "name",
    "family",
    "model_file",
    "model_bytes",
    "model_sha256",
    "mmproj_file",
    "mmproj_bytes",
    "mmproj_sha256",
    "quant",
    "params",
    "licence",
    "licence_url",
    "stage_mode",
    "thinking",
    "sources",
)
_OPTIONAL = ("repo", "revision", "context", "notes", "trained_for")
_PRM_REQUIRED = (*(key for key in _REQUIRED if key not in ("stage_mode", "thinking")),
                 "weights")
"""A verifier answers no question, so it has no stage mode and writes no thinking block."""
_PRM_OPTIONAL = ("context", "notes", "system_prompt")
_FIELDS = {"model": (_REQUIRED, _OPTIONAL), "local": (_REQUIRED, _OPTIONAL),
           "prm": (_PRM_REQUIRED, _PRM_OPTIONAL)}
"""Each kind of table's required and optional fields."""


class CatalogueError(StagewiseError):
    """The model catalogue is unreadable or an entry in it is malformed."""


@dataclass(frozen=True)
class CatalogueFile:
    """One file of an entry: the text model or the projector.

    Attributes:
        name: File name in the repository (hub entries) or path relative to the user's
            data folder, with forward slashes (local entries).
        size: Size in bytes; 0 when unknown (the downloader asks the hub).
        sha256: Lower-case hex SHA-256 (the Git LFS oid); "" when unknown.
    """

    name: str
    size: int
    sha256: str

    @property
    def known(self) -> bool:
        """Whether both the size and the digest are recorded."""
        return self.size > 0 and bool(self.sha256)


@dataclass(frozen=True)
class CatalogueEntry:
    """A text-model GGUF and its projector GGUF, with what is known about them.

    Attributes:
        id: Short, stable identifier, e.g. ``"qwen2.5-vl-3b-q4"``.
        name: Human-readable name.
        family: One of :data:`FAMILIES`.
        repo: Hugging Face repository (``owner/name``); None for a local entry.
        revision: Commit hash or ``"main"``; ``""`` for a local entry.
        model: The text-model file.
        mmproj: The projector file.
        quant: Quantization of the text model, e.g. ``"Q4_K_M"``.
        params: Parameter count as published, e.g. ``"3B"``; may be empty.
        licence: SPDX id or licence name as published; ``""`` when unknown.
        licence_url: Where the licence can be read; may be empty.
        stage_mode: ``"prompted"`` or ``"native"`` (see :data:`STAGE_MODES`).
        thinking: Whether the model writes a thinking block before answering.
        context: Trained context length in tokens; None when unknown.
        notes: Caveats, including which facts are unknown and why.
        sources: Where each recorded fact came from or can be checked: an http(s) URL,
            optionally followed by a note (see :func:`source_link`).
        role: "answer", or "verifier" for a process reward model (see :data:`ROLES`); a
            verifier's ``stage_mode`` is "prompted" and means nothing.
        weights: A verifier's published Hugging Face weights (``owner/name``), which the
            PRM recipe converts; None for other entries.
        system_prompt: A verifier's own system message, written into its GGUF when built;
            "" for the ``prm`` selection's default (VL-PRM's).
        trained_for: What the model was trained for, in a sentence, from its publisher's
            card (a source says where); "" when not recorded. Its answers about other
            kinds of pictures deserve less trust.
    """

    id: str
    name: str
    family: str
    repo: str | None
    revision: str
    model: CatalogueFile
    mmproj: CatalogueFile
    quant: str
    params: str
    licence: str
    licence_url: str
    stage_mode: str
    thinking: bool
    context: int | None
    notes: str
    sources: tuple[str, ...]
    role: str = "answer"
    weights: str | None = None
    system_prompt: str = ""
    trained_for: str = ""

    @property
    def total_bytes(self) -> int:
        """Bytes of both files together; 0 if either size is unknown."""
        if self.model.size <= 0 or self.mmproj.size <= 0:
            return 0
        return self.model.size + self.mmproj.size

    @property
    def local(self) -> bool:
        """Whether the entry is built on this machine rather than downloaded."""
        return self.repo is None

    @property
    def verifier(self) -> bool:
        """Whether it is a process reward model, which scores steps and answers nothing."""
        return self.role == "verifier"

    @property
    def build_command(self) -> str:
        """How a local entry is built on this machine ("" for a download)."""
        if self.verifier:
            return (f"python -m stagewise.models.recipes.prm download {self.id} HF_FOLDER, "
                    f"then python -m stagewise.models.recipes.prm convert HF_FOLDER "
                    f"--id {self.id}")
        if self.local:
            return ("python -m stagewise.models.recipes.llava_cot all OUT --jsonl train.jsonl "
                    "--images image.zip.part-aa (see models/recipes/llava_cot/README.md)")
        return ""


CATALOGUE_ENV = "STAGEWISE_CATALOGUE"


def load_catalogue(path: Path | None = None) -> tuple[CatalogueEntry, ...]:
    """Reads and checks a catalogue file.

    Args:
        path: The TOML file to read; None reads ``$STAGEWISE_CATALOGUE`` if set (a
            catalogue of one's own, e.g. models on a local mirror; tests use it), else the
            catalogue packaged with Stagewise.

    Returns:
        The entries in file order: every ``[[model]]`` table, then every ``[[local]]``,
        then every ``[[prm]]``.

    Raises:
        CatalogueError: The file cannot be read, is not TOML, or an entry is malformed
            (unknown family or field, duplicate id, a digest that is not 64 hex digits,
            a projector whose name lacks "mmproj", ...).
    """
    if path is None and os.environ.get(CATALOGUE_ENV):
        path = Path(os.environ[CATALOGUE_ENV])
    if path is None:
        source = f"models/{CATALOGUE_RESOURCE} (packaged)"
        try:
            packaged = resources.files("stagewise.models").joinpath(CATALOGUE_RESOURCE)
            text = packaged.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogueError(f"{source}: cannot read the catalogue: {exc}") from exc
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise CatalogueError(f"{source}: cannot read the catalogue: {reason}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{source}: not valid TOML: {exc}") from exc
    return _parse(data, source)


def find_entry(
    entry_id: str, catalogue: tuple[CatalogueEntry, ...] | None = None
) -> CatalogueEntry:
    """Looks an entry up by id.

    Args:
        entry_id: The id to find (exact match).
        catalogue: Entries to search; None loads the packaged catalogue.

    Returns:
        The entry with that id.

    Raises:
        StagewiseError: No entry has that id; the message suggests close ids.
    """
    entries = load_catalogue() if catalogue is None else catalogue
    for entry in entries:
        if entry.id == entry_id:
            return entry
    ids = [entry.id for entry in entries]
    close = difflib.get_close_matches(entry_id, ids, n=3, cutoff=0.5)
    if close:
        hint = "did you mean " + ", ".join(repr(i) for i in close) + "?"
    elif ids:
        hint = "known ids: " + ", ".join(ids)
    else:
        hint = "the catalogue is empty"
    raise StagewiseError(f"no catalogue entry {entry_id!r}; {hint}")


def source_link(source: str) -> tuple[str, str]:
    """Splits a catalogue source into its link and its note.

    Args:
        source: ``"https://host/path (what it says)"``; the note is optional.

    Returns:
        The URL and the note without its parentheses ("" when there is none).

    Raises:
        CatalogueError: The source does not start with an http(s) URL.
    """
    match = _SOURCE_RE.match(source.strip())
    if match is None:
        raise CatalogueError(
            f"source {source!r} is no link: a source starts with an http(s) URL a reader "
            "can open (a note may follow it)")
    note = (match.group("note") or "").strip()
    if note.startswith("(") and note.endswith(")"):
        note = note[1:-1].strip()
    return match.group("url"), note


def _parse(data: Mapping[str, Any], source: str) -> tuple[CatalogueEntry, ...]:
    unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
    if unknown:
        raise CatalogueError(
            f"{source}: unknown top-level key(s) {', '.join(unknown)}; "
            f"expected 'schema', [[model]], [[local]] and [[prm]] tables"
        )
    schema = data.get("schema", SCHEMA_VERSION)
    if type(schema) is not int or schema != SCHEMA_VERSION:
        raise CatalogueError(
            f"{source}: schema {schema!r} is not supported; this version reads {SCHEMA_VERSION}"
        )
    entries: list[CatalogueEntry] = []
    seen: dict[str, str] = {}
    for kind in _KINDS:
        tables = data.get(kind, [])
        if not isinstance(tables, list):
            raise CatalogueError(f"{source}: '{kind}' must be an array of tables, [[{kind}]]")
        for index, table in enumerate(tables, start=1):
            where = f"{source}: [[{kind}]] #{index}"
            if not isinstance(table, dict):
                raise CatalogueError(f"{where}: must be a table")
            entry = _parse_entry(table, kind, where)
            label = f"[[{kind}]] #{index}"
            if entry.id in seen:
                raise CatalogueError(
                    f"{where}: duplicate id {entry.id!r} (first used by {seen[entry.id]})"
                )
            seen[entry.id] = label
            entries.append(entry)
    if not any(entry.role == "answer" for entry in entries):
        raise CatalogueError(f"{source}: no [[model]] or [[local]] entries")
    return tuple(entries)


def _parse_entry(table: Mapping[str, Any], kind: str, where: str) -> CatalogueEntry:
    """One [[model]], [[local]] or [[prm]] table as an entry; ``where`` names it in errors."""
    where = _check_fields(table, kind, where)
    entry_id = _entry_id(table, where)
    name = _text(table, "name", where)
    verifier = kind == "prm"
    family, stage_mode = (_verifier_family(table, where) if verifier
                          else _family_and_mode(table, where))
    local = kind in ("local", "prm")
    repo, revision = _origin(table, local, where)
    if family == LOCAL_FAMILY and kind != "local":
        raise CatalogueError(f"{where}: family {LOCAL_FAMILY!r} goes in a [[local]] table")
    model, mmproj = _model_files(table, local, where)
    quant = _text(table, "quant", where)
    params = _text(table, "params", where, allow_empty=True)
    licence, licence_url = _licence(table, where)
    thinking = False if verifier else table["thinking"]
    if not isinstance(thinking, bool):
        raise CatalogueError(f"{where}: thinking must be true or false, not {thinking!r}")
    context = _context(table, where)
    weights = _weights(table, where) if verifier else None
    system_prompt = _text(table, "system_prompt", where) if "system_prompt" in table else ""
    notes = _text(table, "notes", where, allow_empty=True) if "notes" in table else ""
    trained_for = _text(table, "trained_for", where) if "trained_for" in table else ""
    sources = _sources(table, where)
    if not local and not notes.strip():
        _require_known_facts(model, mmproj, licence, where)

    return CatalogueEntry(
        id=entry_id,
        name=name,
        family=family,
        repo=repo,
        revision=revision,
        model=model,
        mmproj=mmproj,
        quant=quant,
        params=params,
        licence=licence,
        licence_url=licence_url,
        stage_mode=stage_mode,
        thinking=thinking,
        context=context,
        notes=notes,
        sources=sources,
        role="verifier" if verifier else "answer",
        weights=weights,
        system_prompt=system_prompt,
        trained_for=trained_for,
    )


def _check_fields(table: Mapping[str, Any], kind: str, where: str) -> str:
    """Refuses unknown and missing fields; returns ``where`` with the entry's id, if any."""
    raw_id = table.get("id")
    if isinstance(raw_id, str) and raw_id:
        where = f"{where} ({raw_id})"
    required, optional = _FIELDS[kind]
    unknown = sorted(set(table) - set(required) - set(optional))
    if unknown:
        raise CatalogueError(f"{where}: unknown field(s) {', '.join(unknown)}")
    missing = [key for key in required if key not in table]
    if missing:
        raise CatalogueError(f"{where}: missing field(s) {', '.join(missing)}")
    return where


def _entry_id(table: Mapping[str, Any], where: str) -> str:
    entry_id = _text(table, "id", where)
    if not _ID_RE.match(entry_id):
        raise CatalogueError(
            f"{where}: id {entry_id!r} must be lower-case letters, digits, '.', '_' or '-'"
        )
    return entry_id


def _family_and_mode(table: Mapping[str, Any], where: str) -> tuple[str, str]:
    """The family and the stage mode; "native" stages belong to the local family only."""
    family = _choice(table, "family", FAMILIES, where)
    stage_mode = _choice(table, "stage_mode", STAGE_MODES, where)
    if (stage_mode == "native") != (family == LOCAL_FAMILY):
        raise CatalogueError(
            f"{where}: stage_mode 'native' belongs to family {LOCAL_FAMILY!r} and only to "
            f"it (got family {family!r}, stage_mode {stage_mode!r})"
        )
    return family, stage_mode


def _verifier_family(table: Mapping[str, Any], where: str) -> tuple[str, str]:
    """A verifier's family (whose projector and chat template it has) and its nominal
    stage mode: "prompted", which it never uses, as it answers no question."""
    family = _choice(table, "family", FAMILIES - {LOCAL_FAMILY}, where)
    return family, "prompted"


def _weights(table: Mapping[str, Any], where: str) -> str:
    """The Hugging Face repository of a verifier's published weights."""
    weights = _text(table, "weights", where)
    if not _REPO_RE.match(weights):
        raise CatalogueError(f"{where}: weights {weights!r} must look like 'owner/name'")
    return weights


def _model_files(table: Mapping[str, Any], local: bool,
                 where: str) -> tuple[CatalogueFile, CatalogueFile]:
    """The model and the projector file; only the projector's name may contain "mmproj"."""
    model = _file(table, "model", local, where)
    mmproj = _file(table, "mmproj", local, where)
    if "mmproj" in PurePosixPath(model.name).name.lower():
        raise CatalogueError(
            f"{where}: model_file {model.name!r} looks like a projector (contains 'mmproj')"
        )
    if "mmproj" not in PurePosixPath(mmproj.name).name.lower():
        raise CatalogueError(
            f"{where}: mmproj_file {mmproj.name!r} must contain 'mmproj' in its name"
        )
    return model, mmproj


def _licence(table: Mapping[str, Any], where: str) -> tuple[str, str]:
    """The licence's name and its https:// address (either may be empty)."""
    licence = _text(table, "licence", where, allow_empty=True)
    licence_url = _text(table, "licence_url", where, allow_empty=True)
    if licence_url and not licence_url.startswith("https://"):
        raise CatalogueError(f"{where}: licence_url {licence_url!r} must start with https://")
    return licence, licence_url


def _require_known_facts(model: CatalogueFile, mmproj: CatalogueFile, licence: str,
                         where: str) -> None:
    """Refuses a downloadable entry whose sizes, digests or licence are left unknown."""
    unknown_facts = [
        label
        for label, missing_fact in (
            ("model_bytes", model.size == 0),
            ("model_sha256", not model.sha256),
            ("mmproj_bytes", mmproj.size == 0),
            ("mmproj_sha256", not mmproj.sha256),
            ("licence", not licence),
        )
        if missing_fact
    ]
    if unknown_facts:
        raise CatalogueError(f"{where}: {', '.join(unknown_facts)} unknown; say why in 'notes'")


def _text(table: Mapping[str, Any], key: str, where: str, *, allow_empty: bool = False) -> str:
    value = table[key]
    if not isinstance(value, str):
        raise CatalogueError(f"{where}: {key} must be a string, not {value!r}")
    if not allow_empty and not value.strip():
        raise CatalogueError(f"{where}: {key} must not be empty")
    return value


def _choice(table: Mapping[str, Any], key: str, allowed: frozenset[str], where: str) -> str:
    value = _text(table, key, where)
    if value not in allowed:
        raise CatalogueError(
            f"{where}: unknown {key} {value!r}; expected one of {', '.join(sorted(allowed))}"
        )
    return value


def _origin(table: Mapping[str, Any], local: bool, where: str) -> tuple[str | None, str]:
    if local:
        for key in ("repo", "revision"):
            if key in table:
                raise CatalogueError(
                    f"{where}: a [[local]] entry has no {key}; it is built on this machine"
                )
        return None, ""
    if "repo" not in table:
        raise CatalogueError(
            f"{where}: missing field repo (a model without one goes in a [[local]] table)"
        )
    repo = _text(table, "repo", where)
    if not _REPO_RE.match(repo):
        raise CatalogueError(f"{where}: repo {repo!r} must look like 'owner/name'")
    revision = _text(table, "revision", where) if "revision" in table else "main"
    if revision != "main" and not _REVISION_RE.match(revision):
        raise CatalogueError(
            f"{where}: revision {revision!r} must be 'main' or a 40-digit lower-case commit hash"
        )
    return repo, revision


def _file(table: Mapping[str, Any], prefix: str, local: bool, where: str) -> CatalogueFile:
    name = _text(table, f"{prefix}_file", where)
    path = PurePosixPath(name)
    if "\\" in name or path.is_absolute() or ".." in path.parts or name != str(path):
        raise CatalogueError(
            f"{where}: {prefix}_file {name!r} must be a plain relative path with '/' separators"
        )
    if not local and len(path.parts) != 1:
        raise CatalogueError(f"{where}: {prefix}_file {name!r} must be a bare file name")
    if not name.lower().endswith(".gguf"):
        raise CatalogueError(f"{where}: {prefix}_file {name!r} must end in .gguf")

    size = table[f"{prefix}_bytes"]
    if type(size) is not int or size < 0:
        raise CatalogueError(
            f"{where}: {prefix}_bytes must be a whole number of bytes (0 = unknown), not {size!r}"
        )
    digest = table[f"{prefix}_sha256"]
    if not isinstance(digest, str):
        raise CatalogueError(f"{where}: {prefix}_sha256 must be a string, not {digest!r}")
    if digest and len(digest) != 64:
        raise CatalogueError(
            f"{where}: {prefix}_sha256 has {len(digest)} characters; a SHA-256 has 64 "
            f'hex digits (or leave it "" when unknown)'
        )
    if digest and not _SHA256_RE.match(digest):
        raise CatalogueError(f"{where}: {prefix}_sha256 {digest!r} must be lower-case hex digits")
    return CatalogueFile(name=name, size=size, sha256=digest)


def _context(table: Mapping[str, Any], where: str) -> int | None:
    if "context" not in table:
        return None
    value = table["context"]
    if type(value) is not int or value <= 0:
        raise CatalogueError(
            f"{where}: context must be a positive number of tokens (leave it out when "
            f"unknown), not {value!r}"
        )
    return value


def _sources(table: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = table["sources"]
    if not isinstance(value, list) or not value:
        raise CatalogueError(f"{where}: sources must be a non-empty list of strings")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise CatalogueError(f"{where}: every source must be a non-empty string")
        try:
            source_link(item)
        except CatalogueError as error:
            raise CatalogueError(f"{where}: {error}") from None
    return tuple(value)
