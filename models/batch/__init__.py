"""Many images asked the same questions: one model load, each image encoded once.

Qt-free: ``stagewise batch`` and the window's File → Ask About a Folder… both run
:func:`~stagewise.models.batch.runner.run_batch` on a
:class:`~stagewise.models.session.Session`, and write one row per image and question to a
CSV or JSONL file (:mod:`~stagewise.models.batch.results`), which a second run reads to
skip what is done.
"""

from stagewise.models.batch.folder import folder_files
from stagewise.models.batch.results import (
    COLUMNS,
    BatchRow,
    ResultsFile,
    RowStatus,
    read_rows,
    row_key,
)
from stagewise.models.batch.runner import (
    BatchJob,
    BatchProgress,
    BatchSummary,
    run_batch,
    settings_key,
)

__all__ = [
    "COLUMNS",
    "BatchJob",
    "BatchProgress",
    "BatchRow",
    "BatchSummary",
    "ResultsFile",
    "RowStatus",
    "folder_files",
    "read_rows",
    "row_key",
    "run_batch",
    "settings_key",
]
