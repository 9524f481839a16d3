"""The models on this machine: pulled from the catalogue, or imported from local files.

Pulled models live in ``data_dir()/models/<id>/`` (the text model and its projector, as
named on the hub); imported ones stay where they are and are only recorded. The record is
``library.json`` in the same folder, rewritten atomically. Nothing here touches the
network except :meth:`Library.pull`, which the user asks for.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.disk.paths import data_dir
from stagewise.models.errors import StagewiseError
from stagewise.models.hardware import Hardware
from stagewise.models.inference.gguf_check import check_pair
from stagewise.models.library.catalogue import CatalogueEntry
from stagewise.models.library.files import find_mmproj
from stagewise.models.library.hub import download
from stagewise.models.library.hub_transfer import DownloadProgress

LIBRARY_FILE = "library.json"
LIBRARY_VERSION = 1
Source = Literal["catalogue", "imported"]


@dataclass(frozen=True)
class InstalledModel:
    """A model this machine can load.

    Attributes:
        id: The catalogue id, or a name made from the file for an imported model.
        name: What to show.
        model: The text model GGUF.
        mmproj: Its projector GGUF.
        source: "catalogue" (pulled, or built by a recipe into the slot of a local
            catalogue entry; the files are the library's) or "imported" (the user's files,
            left where they are).
        installed: When it was added (UTC, ISO 8601).
    """

    id: str
    name: str
    model: Path
    mmproj: Path
    source: Source
    installed: str

    @property
    def size(self) -> int:
        """Bytes on disk (0 for a file that has gone missing)."""
        return sum(p.stat().st_size for p in (self.model, self.mmproj) if p.is_file())

    @property
    def present(self) -> bool:
        return self.model.is_file() and self.mmproj.is_file()


class Library:
    """The installed models under one folder (default ``data_dir()/models``)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else data_dir() / "models"
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------

    def installed(self) -> list[InstalledModel]:
        """Every installed model, in the order they were added."""
        return list(self._read().values())

    def get(self, model_id: str) -> InstalledModel:
        """The installed model with this id.

        Raises:
            StagewiseError: None is installed under that id.
        """
        models = self._read()
        if model_id not in models:
            known = ", ".join(models) or "none yet"
            raise StagewiseError(f"no installed model named {model_id!r} (installed: {known})")
        return models[model_id]

    def find(self, model_id: str) -> InstalledModel | None:
        return self._read().get(model_id)

    # -- changing -------------------------------------------------------------------------

    def pull(self, entry: CatalogueEntry, *,
             progress: Callable[[DownloadProgress], None] | None = None,
             cancel: threading.Event | None = None, endpoint: str | None = None,
             token: str | None = None) -> InstalledModel:
        """Download a catalogue model (projector first, it is small), check the pair, record it.

        An interrupted or cancelled pull keeps its partial file; pulling again resumes.

        Raises:
            StagewiseError: The entry has no repository, the hub refused, the download
                failed its checks, or the files do not make a loadable pair.
            Cancelled: ``cancel`` was set; what was downloaded is kept for a resume.
        """
        if entry.repo is None:
            raise StagewiseError(f"{entry.id} is built locally, not downloaded: "
                                 f"{entry.build_command}")
        folder = self.folder / entry.id
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for item in (entry.mmproj, entry.model):
            files.append(download(
                entry.repo, item.name, folder, revision=entry.revision,
                expected_size=item.size, expected_sha256=item.sha256, progress=progress,
                cancel=cancel, endpoint=endpoint, token=token))
        mmproj, model = files
        check_pair(model, mmproj)
        return self._add(InstalledModel(entry.id, entry.name, model, mmproj, "catalogue",
                                        _now()))

    def add_built(self, entry: CatalogueEntry, model: Path, mmproj: Path) -> InstalledModel:
        """Record a pair a recipe built into the library's folder for a local catalogue entry.

        The files become the library's: removing the model deletes them.

        Raises:
            StagewiseError: The entry is not a local one, the files are not in its folder
                (``folder/<entry id>/``), or they are not a loadable pair.
        """
        if not entry.local:
            raise StagewiseError(f"{entry.id} is downloaded, not built: pull it instead")
        home = (self.folder / entry.id).resolve()
        model, mmproj = Path(model).resolve(), Path(mmproj).resolve()
        for path in (model, mmproj):
            if path.parent != home:
                raise StagewiseError(f"{path}: a built model's files go in {home}")
        check_pair(model, mmproj)
        return self._add(InstalledModel(entry.id, entry.name, model, mmproj, "catalogue",
                                        _now()))

    def import_files(self, model: Path, mmproj: Path | None = None,
                     name: str | None = None) -> InstalledModel:
        """Record local files (left where they are) after checking they make a pair.

        Args:
            model: The text model GGUF.
            mmproj: Its projector; default the one GGUF with "mmproj" in its name beside it.
            name: What to call it; default the model's file name.

        Raises:
            StagewiseError: A file is missing or not a loadable pair, or no projector was
                given and none lies beside the model.
        """
        model = Path(model).expanduser().resolve()
        if mmproj is None:
            mmproj = find_mmproj(model)
            if mmproj is None:
                raise StagewiseError(f"{model}: no projector given and none (exactly one GGUF "
                                     "with 'mmproj' in its name) found beside it")
        mmproj = Path(mmproj).expanduser().resolve()
        check_pair(model, mmproj)
        model_id = self._free_id(_slug(name or model.stem))
        return self._add(InstalledModel(model_id, name or model.name, model, mmproj,
                                        "imported", _now()))

    def remove(self, model_id: str) -> InstalledModel:
        """Forget a model; a pulled model's files are deleted, an imported one's are kept.

        Raises:
            StagewiseError: None is installed under that id, or its files cannot be deleted.
        """
        with self._lock:
            models = self._read()
            if model_id not in models:
                raise StagewiseError(f"no installed model named {model_id!r}")
            gone = models.pop(model_id)
            if gone.source == "catalogue":
                try:
                    shutil.rmtree(self.folder / model_id)
                except FileNotFoundError:
                    pass
                except OSError as error:
                    raise StagewiseError(f"could not delete {self.folder / model_id}: "
                                         f"{error.strerror or error}") from error
            self._write(models)
        return gone

    def partial_bytes(self, entry_id: str) -> int:
        """Bytes an unfinished download of ``entry_id`` has left on disk (0 for none, or
        for an installed model): what a resumed pull starts from."""
        folder = self.folder / entry_id
        if entry_id in self._read() or not folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())

    def discard_download(self, entry_id: str) -> bool:
        """Delete what an unfinished pull of ``entry_id`` left (partial and whole files).

        An installed model is left alone: :meth:`remove` deletes one.

        Returns:
            Whether anything was deleted.

        Raises:
            StagewiseError: The files cannot be deleted.
        """
        if not entry_id or entry_id in {".", ".."} or Path(entry_id).name != entry_id:
            raise StagewiseError(f"{entry_id!r} is not a catalogue id")
        folder = self.folder / entry_id
        if entry_id in self._read() or not folder.is_dir():
            return False
        try:
            shutil.rmtree(folder)
        except OSError as error:
            raise StagewiseError(f"could not delete {folder}: "
                                 f"{error.strerror or error}") from error
        return True

    # -- storage --------------------------------------------------------------------------

    def _add(self, model: InstalledModel) -> InstalledModel:
        with self._lock:
            models = self._read()
            models[model.id] = model
            self._write(models)
        return model

    def _free_id(self, base: str) -> str:
        taken = self._read()
        model_id, n = base, 2
        while model_id in taken:
            model_id, n = f"{base}-{n}", n + 1
        return model_id

    def _read(self) -> dict[str, InstalledModel]:
        path = self.folder / LIBRARY_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise StagewiseError(f"the model library {path} cannot be read: {error}") from error
        return {m.id: m for m in (_model(item) for item in data.get("models", []))
                if m is not None}

    def _write(self, models: dict[str, InstalledModel]) -> None:
        data = {"version": LIBRARY_VERSION,
                "models": [{**asdict(m), "model": str(m.model), "mmproj": str(m.mmproj)}
                           for m in models.values()]}
        try:
            write_atomic(self.folder / LIBRARY_FILE,
                         (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())
        except OSError as error:
            raise StagewiseError(f"could not save the model library: "
                                 f"{error.strerror or error}") from error


def _model(item: dict[str, Any]) -> InstalledModel | None:
    try:
        return InstalledModel(str(item["id"]), str(item["name"]), Path(item["model"]),
                              Path(item["mmproj"]), item["source"], str(item["installed"]))
    except (KeyError, TypeError):
        return None  # a damaged entry is skipped, not fatal


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return slug or "model"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


FIT_MARGIN = 1.2
"""Files times this must fit: room for the KV cache and compute buffers beside the weights."""


def rough_fit(size: int, hardware: Hardware) -> bool | None:
    """Whether a model of ``size`` bytes (model + projector) fits this machine's free memory
    (RAM and GPU together); None when the size is not known yet. The exact check, with the
    context and beam width, runs before loading (:func:`stagewise.models.hardware.check_fit`)."""
    if size <= 0:
        return None
    return size * FIT_MARGIN <= hardware.ram_available + hardware.gpu_free
