"""LoRA fine-tuning of a base's language model on LLaVA-CoT samples: seeded and resumable.

One sample per forward pass (images differ in size, so their token counts do),
``accumulate`` of them per optimizer step. AdamW on the LoRA weights only, a linear
warm-up and a cosine decay, bf16 weights, gradient checkpointing. A checkpoint (adapter,
optimizer, schedule, random states) is written every ``save_every`` steps and on Ctrl+C;
a run started again on the same folder goes on from the last one, drawing the samples it
would have drawn, so an interrupted run ends where an uninterrupted one would.
"""

from __future__ import annotations

import functools
import io
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from stagewise.models.errors import StagewiseError
from stagewise.models.recipes.llava_cot.bases import LORA_TARGETS
from stagewise.models.recipes.llava_cot.inputs import Example, PromptBuilder

__all__ = ["TrainProgress", "TrainResult", "TrainSettings", "train"]

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
STATE_FILE = "state.pt"


class TrainingSample(Protocol):
    """What training reads of a sample (see
    :class:`stagewise.models.recipes.llava_cot.data.Sample`)."""

    id: str
    image: str
    question: str
    answer: str
    follow_ups: tuple[tuple[str, str], ...]


class ImageReader(Protocol):
    def read(self, name: str) -> bytes: ...


@dataclass(frozen=True)
class TrainSettings:
    """How to train.

    Attributes:
        steps: Optimizer steps; 0 means ``epochs`` passes over the data.
        epochs: Passes over the data when ``steps`` is 0.
        accumulate: Samples per optimizer step.
        lr: Peak learning rate.
        warmup: Fraction of the steps spent warming up.
        rank: LoRA rank.
        alpha: LoRA alpha (the update is scaled by alpha / rank).
        dropout: LoRA dropout.
        max_tokens: Samples longer than this (image tokens included) are skipped.
        save_every: Steps between checkpoints.
        keep: Checkpoints kept (the newest).
        seed: Seeds the LoRA initialisation, the sample order and dropout.
        dtype: Weights' type: "bf16" (the recipe's) or "fp32".
        gradient_checkpointing: Recompute activations in the backward pass.
    """

    steps: int = 0
    epochs: float = 1.0
    accumulate: int = 16
    lr: float = 1e-4
    warmup: float = 0.03
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    max_tokens: int = 4096
    save_every: int = 200
    keep: int = 2
    seed: int = 0
    dtype: Literal["bf16", "fp32"] = "bf16"
    gradient_checkpointing: bool = True

    def total_steps(self, n_samples: int) -> int:
        if self.steps > 0:
            return self.steps
        return max(1, math.ceil(self.epochs * n_samples / self.accumulate))


_MUST_MATCH = ("accumulate", "lr", "warmup", "rank", "alpha", "dropout", "max_tokens", "seed",
               "dtype")
"""Settings a resumed run must share with the run it continues (the step count may grow)."""


@dataclass(frozen=True)
class TrainProgress:
    """After each optimizer step.

    Attributes:
        step: Steps done.
        total: Steps in the run.
        loss: Mean loss over this step's samples.
        seconds_per_step: Mean over the steps of this session.
        resumed_from: The step this session started at (0 for a fresh run).
    """

    step: int
    total: int
    loss: float
    seconds_per_step: float
    resumed_from: int

    @property
    def seconds_left(self) -> float:
        return (self.total - self.step) * self.seconds_per_step


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        adapter: The folder of the final LoRA adapter (peft format).
        steps: Steps done.
        losses: Mean loss of every step, from the first step of the run.
        skipped: Sample ids skipped, with the reason (too long, unreadable image).
        seconds: Training time of this session.
    """

    adapter: Path
    steps: int
    losses: list[float]
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _schedule(step: int, total: int, warmup: float) -> float:
    """Learning-rate factor at ``step``: linear warm-up, then cosine to zero."""
    warm = max(1, round(total * warmup))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


@functools.lru_cache(maxsize=2)
def _order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    """The sample order of one epoch (cached: it is asked for every sample)."""
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return tuple(order)


def load_base(base_dir: Path, dtype: str) -> Any:
    """The base model, in ``dtype``, on the best device there is."""
    import torch
    from transformers import AutoModelForImageTextToText

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=torch_dtype)
    return model.to(_device())


def _lora_model(base_dir: Path, s: TrainSettings) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    model = load_base(base_dir, s.dtype)
    model.config.use_cache = False
    if s.gradient_checkpointing:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # frozen embeddings: let gradients reach LoRA
    torch.manual_seed(s.seed)
    config = LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout,
                        target_modules=LORA_TARGETS, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _latest_checkpoint(out: Path) -> Path | None:
    folder = out / CHECKPOINTS
    done = sorted(p for p in folder.glob("step-*") if (p / STATE_FILE).is_file()) \
        if folder.is_dir() else []
    return done[-1] if done else None


def _random_states() -> dict[str, Any]:
    import torch

    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_random_states(states: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def train(base_dir: Path, samples: Sequence[TrainingSample], images: ImageReader, out: Path,
          prompts: PromptBuilder, settings: TrainSettings = TrainSettings(), *,
          progress: Callable[[TrainProgress], None] | None = None) -> TrainResult:
    """Fine-tune ``base_dir``'s language model with LoRA; write the adapter to ``out/adapter``.

    Args:
        base_dir: The base model folder (``save_pretrained`` layout).
        samples: The training samples.
        images: Where the samples' images are read from.
        out: The working folder: checkpoints go to ``out/checkpoints``, the final adapter
            to ``out/adapter``. A run on a folder with checkpoints resumes the newest.
        prompts: Builds model inputs (see :mod:`stagewise.models.recipes.llava_cot.inputs`).
        settings: Hyper-parameters.
        progress: Called after every step.

    Returns:
        The adapter and the loss history.

    Raises:
        StagewiseError: No samples, every sample skipped, or a checkpoint from a run with
            different settings.
        KeyboardInterrupt: Re-raised after a checkpoint of the last finished step is saved.
    """
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if not samples:
        raise StagewiseError("no training samples")
    s = settings
    total = s.total_steps(len(samples))
    model = _lora_model(base_dir, s)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=s.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _schedule(step, total, s.warmup))
    step, losses, skipped = 0, [], {}
    checkpoint = _latest_checkpoint(out)
    if checkpoint is not None:
        state = torch.load(checkpoint / STATE_FILE, weights_only=False)
        _check_same_run(state["settings"], s, checkpoint)
        set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors"))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_random_states(state["random"])
        step, losses, skipped = state["step"], state["losses"], state["skipped"]
    resumed_from = step
    device = next(model.parameters()).device
    model.train()

    def save() -> None:
        _save_checkpoint(out, step, model, optimizer, scheduler, losses, skipped, s)

    started = time.perf_counter()
    try:
        while step < total:
            step_losses = []
            for k in range(s.accumulate):
                index = step * s.accumulate + k
                epoch, at = divmod(index, len(samples))
                sample = samples[_order(len(samples), s.seed, epoch)[at]]
                example = _example(sample, images, prompts, s.max_tokens, skipped)
                if example is None:
                    continue
                inputs = {k: v.to(device) for k, v in example.inputs.items()}
                loss = model(**inputs, labels=example.labels.to(device)).loss
                (loss / s.accumulate).backward()
                step_losses.append(float(loss.detach()))
            if not step_losses and len(skipped) >= len(samples):
                raise StagewiseError("every sample was skipped: "
                                     + "; ".join(sorted(set(skipped.values()))))
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(sum(step_losses) / max(1, len(step_losses)))
            if progress is not None:
                elapsed = time.perf_counter() - started
                progress(TrainProgress(step, total, losses[-1], elapsed / (step - resumed_from),
                                       resumed_from))
            if step % s.save_every == 0 or step == total:
                save()
    except KeyboardInterrupt:
        if step > resumed_from:
            save()
        raise
    adapter = out / ADAPTER
    final = _latest_checkpoint(out)
    assert final is not None
    _publish_adapter(final, adapter, losses, skipped, s)
    return TrainResult(adapter, step, losses, skipped, time.perf_counter() - started)


def _example(sample: TrainingSample, images: ImageReader, prompts: PromptBuilder,
             max_tokens: int, skipped: dict[str, str]) -> Example | None:
    from PIL import Image, UnidentifiedImageError

    if sample.id in skipped:
        return None
    try:
        with Image.open(io.BytesIO(images.read(sample.image))) as image:
            image.load()
            example = prompts.example(image, sample.question, sample.answer,
                                      sample.follow_ups)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        skipped[sample.id] = f"image unreadable: {error}"
        return None
    except StagewiseError as error:  # the template cannot render this conversation
        skipped[sample.id] = str(error)
        return None
    if example.n_tokens > max_tokens:
        skipped[sample.id] = f"longer than {max_tokens} tokens"
        return None
    return example


def _check_same_run(saved: dict[str, Any], s: TrainSettings, checkpoint: Path) -> None:
    now = asdict(s)
    differ = [f"{key} {saved.get(key)!r} -> {now[key]!r}" for key in _MUST_MATCH
              if saved.get(key) != now[key]]
    if differ:
        raise StagewiseError(f"{checkpoint} is from a run with other settings "
                             f"({', '.join(differ)}); use a new folder or the same settings")


def _save_checkpoint(out: Path, step: int, model: Any, optimizer: Any, scheduler: Any,
                     losses: list[float], skipped: dict[str, str], s: TrainSettings) -> None:
    import torch

    folder = out / CHECKPOINTS
    final = folder / f"step-{step:07d}"
    partial = folder / f".step-{step:07d}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    torch.save({"step": step, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "random": _random_states(),
                "losses": losses, "skipped": skipped, "settings": asdict(s)},
               partial / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in sorted(folder.glob("step-*"))[:-s.keep]:
        shutil.rmtree(old, ignore_errors=True)


def _publish_adapter(checkpoint: Path, adapter: Path, losses: list[float],
                     skipped: dict[str, str], s: TrainSettings) -> None:
    partial = adapter.with_name(f".{adapter.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(checkpoint, partial, ignore=shutil.ignore_patterns(STATE_FILE))
    (partial / "training.json").write_text(json.dumps(
        {"steps": len(losses), "losses": losses, "skipped": skipped, "settings": asdict(s)},
        indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(adapter, ignore_errors=True)
    partial.rename(adapter)
