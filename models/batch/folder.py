"""The files of a folder that a batch asks about."""

from __future__ import annotations

from pathlib import Path

from stagewise.models.errors import StagewiseError

__all__ = ["folder_files"]


def folder_files(folder: Path) -> list[Path]:
    """The files directly in ``folder``, by name (hidden files and sub-folders left out).

    Every file is returned, images or not: a batch tries each and lists the ones it cannot
    read with why, so a stray text file or a broken picture is reported, not silently
    passed over.

    Raises:
        StagewiseError: ``folder`` is not a folder that can be read.
    """
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        raise StagewiseError(f"{folder}: no such folder") from None
    except NotADirectoryError:
        raise StagewiseError(f"{folder}: not a folder") from None
    except OSError as error:
        raise StagewiseError(f"{folder}: cannot be read ({error.strerror or error})") from None
    files = [path for path in entries
             if not path.name.startswith(".") and not path.is_dir()]
    return sorted(files, key=lambda path: path.name)
