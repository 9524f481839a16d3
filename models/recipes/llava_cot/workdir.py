"""The recipe's working folder: where each step reads and writes, and what it recorded.

::

    OUT/recipe.json        the base (key, repository, folder) and what each step recorded
    OUT/data/              train.jsonl, val/val.jsonl + val/images/, report.json  (data)
    OUT/base/              the downloaded base, when --base names a repository     (train)
    OUT/checkpoints/       resumable checkpoints; OUT/adapter/ the final adapter   (train)
    OUT/merged/            the base with the adapter merged                        (merge)
    OUT/gguf/              F16 text model and F16 projector                        (convert)
                           and the quantized text models                           (quantize)
    OUT/eval.json, eval.txt  single pass against stage beam search               (evaluate)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagewise.models.disk.atomic import write_atomic
from stagewise.models.errors import StagewiseError

__all__ = ["MODEL_STEM", "Workdir"]

MODEL_STEM = "llava-cot-local"


@dataclass(frozen=True)
class Workdir:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def val(self) -> Path:
        return self.data / "val" / "val.jsonl"

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def text_f16(self) -> Path:
        return self.root / "gguf" / f"{MODEL_STEM}-F16.gguf"

    @property
    def mmproj(self) -> Path:
        return self.root / "gguf" / f"mmproj-{MODEL_STEM}-f16.gguf"

    def quantized(self, quant: str) -> Path:
        return self.root / "gguf" / f"{MODEL_STEM}-{quant}.gguf"

    @property
    def eval_json(self) -> Path:
        return self.root / "eval.json"

    # -- recipe.json ----------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        path = self.root / "recipe.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as error:
            raise StagewiseError(f"{path} is damaged: {error}") from error

    def update(self, **values: Any) -> dict[str, Any]:
        record = {**self.record(), **values}
        write_atomic(self.root / "recipe.json",
                     (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode())
        return record

    def require(self, path: Path, step: str) -> Path:
        """``path``, which the step ``step`` writes; a clear error if it has not run."""
        if not path.exists():
            raise StagewiseError(f"{path} is missing: run the {step!r} step first")
        return path
