"""Trains the demo model on CPU (or a GPU when there is one): seeded and resumable.

First the vision tower and projector learn the picture alone: what is in each grid cell
(:mod:`stagewise.models.recipes.demo.cells`), for ``vision_steps`` steps. Then the whole
model learns the texts: cross-entropy on the reply's tokens only (the answer, verdict or
Yes/No and the end-of-turn token), with the cell loss kept on at ``cell_weight``. AdamW
with a linear warm-up and a cosine decay; a checkpoint is saved after the vision warm-up,
every ``save_every`` steps and on Ctrl+C, and a run started again with the same folder goes
on from the last one, drawing the same batches it would have drawn.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stagewise.models.recipes.demo.cells import CellHead
from stagewise.models.recipes.demo.examples import Example
from stagewise.models.recipes.demo.model import DemoModel, normalise

IGNORE = -100
_VERDICTS = ("judge", "check")  # replies that decide in a token or two
_VALIDATION_SHARE = 0.04  # the budget's part kept for the validation passes


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 2300
    batch: int = 32
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup: int = 100
    weight_decay: float = 0.05
    clip: float = 1.0
    seed: int = 0
    save_every: int = 100
    threads: int = 0  # 0: torch's default
    judge_weight: float = 8.0  # loss weight of judge and check replies against answer tokens
    minutes: float = 0.0  # > 0: after 20 steps, set ``steps`` to what fits this many minutes
    # > 0: the run's budget in minutes of process CPU time (all threads together; the vision
    # warm-up and the validation passes count): after ``calibration_steps``, ``steps`` is
    # set to what fits it. On a shared machine this is the compute an idle one would give.
    cpu_minutes: float = 0.0
    calibration_steps: int = 50  # text steps timed before a CPU budget fixes the step count
    vision_steps: int = 1000  # the vision tower's warm-up on the cells, before the texts
    vision_batch: int = 64
    cell_weight: float = 0.25  # the cell loss beside the text loss, after the warm-up
    aux_weight: float = 0.0  # loss weight of the tokens in an example's ``aux`` spans


@dataclass(frozen=True)
class Batch:
    tokens: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor
    pixels: torch.Tensor
    has_image: torch.Tensor
    cells: torch.Tensor | None = None  # (batch, 9) cell classes, for the rows with an image


def make_batch(examples: list[Example], images: np.ndarray, model: DemoModel,
               pad_id: int, judge_weight: float = 1.0,
               cells: np.ndarray | None = None, aux_weight: float = 0.0) -> Batch:
    """Right-padded tokens, next-token targets (ignored outside the replies), their loss
    weights and pixels.

    A verdict or a Yes/No decides in one token what an answer spreads over a hundred, so
    judge and check replies weigh ``judge_weight`` times an answer's tokens. The tokens of
    an example's ``aux`` spans are predicted too, at ``aux_weight`` (0: not at all).
    """
    length = max(len(e.ids) for e in examples)
    tokens = np.full((len(examples), length), pad_id, dtype=np.int64)
    targets = np.full((len(examples), length), IGNORE, dtype=np.int64)
    weights = np.zeros((len(examples), length), dtype=np.float32)
    for row, e in enumerate(examples):
        n = len(e.ids)
        tokens[row, :n] = e.ids
        targets[row, e.loss_from - 1 : n - 1] = e.ids[e.loss_from :]
        weights[row, e.loss_from - 1 : n - 1] = judge_weight if e.kind in _VERDICTS else 1.0
        for start, end in e.aux if aux_weight else ():
            targets[row, start - 1 : end - 1] = e.ids[start:end]
            weights[row, start - 1 : end - 1] = aux_weight
    index = [max(e.image, 0) for e in examples]
    return Batch(torch.from_numpy(tokens), torch.from_numpy(targets), torch.from_numpy(weights),
                 normalise(images[index], model.spec),
                 torch.tensor([e.image >= 0 for e in examples]),
                 None if cells is None else torch.from_numpy(cells[index]))


def batch_loss(model: DemoModel, batch: Batch, image_at: int,
               head: CellHead | None = None, cell_weight: float = 0.0) -> torch.Tensor:
    """Weighted mean cross-entropy over the reply tokens, plus ``cell_weight`` times the
    cell loss of the rows with an image (when ``head`` and the batch's cells are given)."""
    image = model.vision(batch.pixels)
    logits = model(batch.tokens, image_at=image_at, has_image=batch.has_image, image=image)
    losses = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(),
                             ignore_index=IGNORE, reduction="none")
    weights = batch.weights.flatten()
    loss = (losses * weights).sum() / weights.sum()
    rows = batch.has_image
    if head is not None and cell_weight and batch.cells is not None and bool(rows.any()):
        loss = loss + cell_weight * head.loss(image[rows], batch.cells[rows])
    return loss


def warm_up_vision(model: DemoModel, head: CellHead, images: np.ndarray, cells: np.ndarray,
                   settings: TrainSettings, log: Callable[[str], None] = print,
                   val: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Trains the vision tower, projector and head alone on the cells; returns the share of
    validation cells (or of the last batch's, without ``val``) read right."""
    params = [*model.vision.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=settings.lr, betas=(0.9, 0.95),
                            weight_decay=settings.weight_decay)
    rng = np.random.default_rng([settings.seed, 1])
    warm = max(1, settings.vision_steps // 10)
    accuracy = 0.0
    for step in range(settings.vision_steps):
        for group in opt.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / warm)
        index = rng.integers(0, len(images), settings.vision_batch)
        embeddings = model.vision(normalise(images[index], model.spec))
        target = torch.from_numpy(cells[index])
        loss = head.loss(embeddings, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.clip)
        opt.step()
        if (step + 1) % 100 == 0 or step + 1 == settings.vision_steps:
            if val is not None:
                with torch.no_grad():
                    embeddings = model.vision(normalise(val[0], model.spec))
                    target = torch.from_numpy(val[1])
            accuracy = head.accuracy(embeddings, target)
            log(f"vision warm-up {step + 1}/{settings.vision_steps}  cell loss "
                f"{loss.item():.3f}  cells right {accuracy:.1%}")
    return accuracy


def learning_rate(step: int, s: TrainSettings, total: int) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = min(1.0, (step - s.warmup) / max(1, total - s.warmup))
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _epoch(lengths: np.ndarray, batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    """One epoch's batches: a seeded shuffle, sorted by length within windows of 64
    batches so that little is padding, then the batches shuffled."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(lengths))
    window = batch * 64
    batches = []
    for start in range(0, len(perm) - batch + 1, window):
        part = perm[start : start + window]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch] for i in range(0, len(part) - batch + 1, batch)]
    return [batches[i] for i in rng.permutation(len(batches))]


class _Order:
    """The example indices of each step's batch; the same for the same seed."""

    def __init__(self, examples: list[Example], batch: int, seed: int) -> None:
        self.lengths = np.array([len(e.ids) for e in examples])
        self.batch, self.seed = batch, seed
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def __call__(self, step: int) -> np.ndarray:
        per_epoch = len(self.lengths) // self.batch
        epoch, within = divmod(step, per_epoch)
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, _epoch(self.lengths, self.batch, self.seed, epoch))
        batches = self._cache[1]
        return batches[within % len(batches)]


def train(model: DemoModel, examples: list[Example], images: np.ndarray, out: Path,
          settings: TrainSettings, *, image_at: int, pad_id: int,
          val: tuple[list[Example], np.ndarray] | None = None,
          cells: np.ndarray | None = None, val_cells: np.ndarray | None = None,
          log: Callable[[str], None] = print) -> dict:
    """Runs (or resumes) training; returns the final log record.

    Args:
        model: The model (its weights are replaced by the checkpoint's when resuming).
        examples: Training sequences.
        images: ``(n, H, W, 3)`` uint8 images the examples index.
        out: Folder for ``checkpoint.pt`` and ``train-log.jsonl``.
        settings: Steps, batch, learning rate...
        image_at: Where the image's embeddings start in each sequence.
        pad_id: Token id used for padding.
        val: Held-out examples and their images, for a loss every ``save_every`` steps.
        cells: ``(n, 9)`` cell classes of ``images``: with them, the vision warm-up runs
            first and the cell loss stays on.
        val_cells: The cell classes of ``val``'s images, for the warm-up's accuracy.
        log: Where progress lines go.
    """
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    out.mkdir(parents=True, exist_ok=True)
    head = CellHead(model.spec.text.n_embd) if cells is not None else None
    params = [*model.parameters(), *(head.parameters() if head else ())]
    opt = torch.optim.AdamW(params, lr=settings.lr, betas=(0.9, 0.95),
                            weight_decay=settings.weight_decay)
    ckpt_path, log_path = out / "checkpoint.pt", out / "train-log.jsonl"
    step, spent, total = 0, 0.0, settings.steps
    clock = _CpuClock()
    calibrated = not (settings.minutes or settings.cpu_minutes)
    warmed = head is None or not settings.vision_steps
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        if head is not None and "head" in state:
            head.load_state_dict(state["head"])
        warmed = warmed or state.get("warmed", False)
        opt.load_state_dict(state["opt"])
        step, spent = state["step"], state["seconds"]
        clock.spent = state.get("cpu_seconds", 0.0)
        if settings.minutes or settings.cpu_minutes:  # fixed by the first run's calibration
            total, calibrated = state.get("total", total), state.get("calibrated", True)
        log(f"resuming at step {step} ({spent / 60:.1f} min already spent, "
            f"{clock.spent / 60:.1f} CPU min)")

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "seconds": spent, "cpu_seconds": clock.read(), "total": total,
                    "calibrated": calibrated, "warmed": warmed, "settings": asdict(settings),
                    **({"head": head.state_dict()} if head else {})}, tmp)
        tmp.replace(ckpt_path)

    if not warmed:
        start = time.perf_counter()
        val_pair = (val[1], val_cells) if val is not None and val_cells is not None else None
        right = warm_up_vision(model, head, images, cells, settings, log, val_pair)
        warmed = True
        with log_path.open("a") as f:
            f.write(json.dumps({"vision_steps": settings.vision_steps, "cells_right": right,
                                "minutes": round((time.perf_counter() - start) / 60, 2),
                                "cpu_minutes": round(clock.read() / 60, 2)}) + "\n")
        save()

    record: dict = {}
    order = _Order(examples, settings.batch, settings.seed)
    t0, losses = time.perf_counter(), []
    first_step, step_cpu = step, 0.0  # CPU seconds of text steps alone, for the calibration
    model.train()
    try:
        while step < total:
            lr = learning_rate(step, settings, total)
            for group in opt.param_groups:
                group["lr"] = lr
            idx = order(step)
            batch = make_batch([examples[i] for i in idx], images, model, pad_id,
                               settings.judge_weight, cells, settings.aux_weight)
            cpu_before = time.process_time()
            loss = batch_loss(model, batch, image_at, head, settings.cell_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
            opt.step()
            losses.append(loss.item())
            step += 1
            step_cpu += time.process_time() - cpu_before
            now = time.perf_counter()
            spent, t0 = spent + (now - t0), now
            if (not calibrated and settings.cpu_minutes
                    and step - first_step == settings.calibration_steps):
                per_step = step_cpu / settings.calibration_steps
                room = settings.cpu_minutes * 60 * (1 - _VALIDATION_SHARE) - clock.read()
                total = max(settings.warmup + 1, step + max(0, int(room / per_step)))
                calibrated = True
                log(f"{per_step:.3g} CPU s a step: {total} steps fit {settings.cpu_minutes:g} "
                    f"CPU min ({clock.read() / 60:.3g} spent)")
            elif not calibrated and settings.minutes and step == 20:
                total = max(settings.warmup + 1, int(settings.minutes * 60 / (spent / step)))
                calibrated = True
                log(f"{spent / step:.2f} s a step: {total} steps fit {settings.minutes:g} min")
            if step % settings.save_every == 0 or step == total:
                record = {"step": step, "loss": float(np.mean(losses)), "lr": lr,
                          "minutes": round(spent / 60, 2)}
                if val is not None:
                    record["val_loss"] = evaluate_loss(model, *val, image_at=image_at,
                                                       pad_id=pad_id)
                    t0 = time.perf_counter()  # validation time is not training time
                cpu = clock.read()
                record["cpu_minutes"] = round(cpu / 60, 2)
                log(f"step {step}/{total}  loss {record['loss']:.3f}"
                    + (f"  val {record['val_loss']:.3f}" if "val_loss" in record else "")
                    + f"  lr {lr:.2e}  {spent / 60:.1f} min, {cpu / 60:.1f} CPU min, "
                    + _left(step, total, spent, cpu, first_step, step_cpu))
                with log_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                losses = []
                save()
    except KeyboardInterrupt:
        save()
        log(f"stopped at step {step}; run the same command again to go on")
        raise
    model.eval()
    return record or {"step": step, "minutes": round(spent / 60, 2),
                      "cpu_minutes": round(clock.read() / 60, 2)}


class _CpuClock:
    """Process CPU seconds (all threads) spent by this run, across resumes."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._mark = time.process_time()

    def read(self) -> float:
        now = time.process_time()
        self.spent, self._mark = self.spent + (now - self._mark), now
        return self.spent


def _left(step: int, total: int, wall: float, cpu: float, first_step: int,
          step_cpu: float) -> str:
    """What is left, in CPU minutes and (at this session's pace) wall minutes."""
    if step >= total:
        return "done"
    done_here = max(1, step - first_step)
    cpu_left = step_cpu / done_here * (total - step)
    wall_left = wall / max(1, step) * (total - step)
    return f"about {cpu_left / 60:.0f} CPU min ({wall_left / 60:.0f} min at this pace) left"


@torch.no_grad()
def evaluate_loss(model: DemoModel, examples: list[Example], images: np.ndarray, *,
                  image_at: int, pad_id: int, batch: int = 32) -> float:
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(examples), batch):
        part = examples[start : start + batch]
        total += float(batch_loss(model, make_batch(part, images, model, pad_id), image_at))
    model.train(was_training)
    return total / max(1, math.ceil(len(examples) / batch))
