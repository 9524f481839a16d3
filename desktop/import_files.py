"""Asking the user for a model's GGUF files on this computer (Import Files…)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from stagewise.models.library.files import find_mmproj

__all__ = ["choose_model_files"]


def choose_model_files(parent: QWidget | None) -> tuple[Path, Path | None] | None:
    """The text model GGUF and, unless one lies beside it, its projector.

    Returns:
        ``(model, mmproj)``, mmproj None when the one beside the model will do; None if
        the user cancelled.
    """
    path, _ = QFileDialog.getOpenFileName(parent, "Import a model", "",
                                          "GGUF models (*.gguf);;All files (*)")
    if not path:
        return None
    model = Path(path)
    if find_mmproj(model) is not None:
        return model, None
    projector, _ = QFileDialog.getOpenFileName(
        parent, "Its projector (mmproj)", str(model.parent),
        "GGUF projectors (*mmproj*.gguf);;GGUF files (*.gguf)")
    if not projector:
        return None
    return model, Path(projector)
