"""The catalogue's models at their real shapes, timed side by side with llama.cpp's own tool.

Usage::

    python bench/real_size.py qwen2.5-vl-3b [--tokens 16] [--threads 2] [--repeat 1]
        [--selections logprob,judge] [--no-beam]

On the real-shape pair (built first if needed: ``python -m
stagewise.models.recipes.real_shape NAME``; random weights, so every stage spends its whole
token budget). Prints, each measured in this run:

* Stagewise's single pass against llama.cpp's ``llama-mtmd-cli`` (built from the sources
  llama-cpp-python vendors), same pair, image, threads, context, prompt text and token
  count: load, image encode, prompt evaluation, time to the first token and decode
  tokens/s, and Stagewise's time over mtmd-cli's (target: at most 1.05 to the first token
  and per decoded token);
* stage beam 2 and 4 with each selection asked for, over the single pass;
* the process's peak resident memory over the load plan's estimate made for the image the
  run used (target within ±10%; the plan itself budgets for the family's largest image,
  printed beside it);
* the largest image the family accepts (a 2048-pixel square, capped as the family caps it):
  its real image tokens (libmtmd's), the context a beam-4 search of the default budgets
  needs with it, and the automatic context the plan chose (target: no overflow).

Run one shape per process (the peak RSS is the process's). Times are medians of
``--repeat`` interleaved runs; this machine is shared, so compare only within one run.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from stagewise.models.build.llama_tools import llama_tool
from stagewise.models.events import AnswerFinished, PromptEvaluated, TokenStreamed
from stagewise.models.hardware.fit import check_fit
from stagewise.models.hardware.process_memory import peak_rss_bytes
from stagewise.models.inference.engine_settings import AUTO_CTX, EngineSettings
from stagewise.models.inference.images import load_image
from stagewise.models.inference.llama_runtime import native_log
from stagewise.models.inference.mtmd_prompt import Bitmap
from stagewise.models.reasoning.search_settings import SearchSettings
from stagewise.models.reasoning.strategies import context_need
from stagewise.models.recipes.real_shape import SCALED, SHAPES, build_pair
from stagewise.models.session import Session, plan
from stagewise.models.stages import user_text

QUESTION = "How many shapes are red, and which one is largest?"
TTFT_TARGET = DECODE_TARGET = 1.05
MEMORY_TOLERANCE = 0.10


@dataclass
class Run:
    """One single pass's times, in seconds (decode: tokens per second).

    ``decode_tps`` counts every token decoded after the first one was sampled: the sampled
    tokens and, for Stagewise, the stage tags it writes itself when a stage spends its
    budget (``forced``; mtmd-cli has none). ``sampled_tps`` counts sampled tokens only.
    """

    load: float
    encode: float
    prompt: float
    ttft: float
    decode_tps: float
    prompt_tokens: int
    tokens: int
    sampled_tps: float = 0.0
    forced: int = 0


def make_image(folder: Path, side: int = 448, variant: int = 0) -> Path:
    """A scene of six shapes; each ``variant`` a different image (the session keeps the
    last image it encoded, and each repeat must encode its own, as mtmd-cli does)."""
    path = folder / f"scene-{side}-{variant}.png"
    img = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(img)
    step = side // 8
    for i in range(6):
        draw.ellipse((step * i + 4, step, step * i + step, 2 * step + i * 8),
                     fill=("red", "blue")[i % 2])
    draw.rectangle((4, side - step, 4 + variant * 8 + 8, side - 4), fill="green")
    img.save(path)
    return path


def _encode_ms(lines: list[str]) -> float:
    return sum(float(m.group(1)) for line in lines
               if (m := re.search(r"slice encoded in (\d+) ms", line)))


def stagewise_single(pair_model: Path, pair_mmproj: Path, image_path: Path, threads: int,
                     tokens: int) -> tuple[Run, Session]:
    """Load (timed) and answer once with a single pass; the session stays open."""
    start = time.perf_counter()
    session = Session(plan(pair_model, pair_mmproj, EngineSettings(threads=threads)))
    load = time.perf_counter() - start
    return single_pass(session, image_path, tokens, load), session


def single_pass(session: Session, image_path: Path, tokens: int, load: float = 0.0) -> Run:
    image = load_image(image_path)
    settings = SearchSettings(beam=1, max_stage_tokens=tokens, seed=1)
    engine = session.engine
    assert engine is not None
    first = prompt_done = None
    decoded_at_first = 0
    with native_log.capture() as lines:
        start = time.perf_counter()
        for event in session.ask(image, QUESTION, settings):
            now = time.perf_counter()
            if isinstance(event, PromptEvaluated) and prompt_done is None:
                prompt_done = now
            elif isinstance(event, TokenStreamed) and first is None:
                first = now
                decoded_at_first = engine.stats.decoded_tokens
            elif isinstance(event, AnswerFinished):
                result = event.result
        end = time.perf_counter()
    encode = _encode_ms(lines) / 1000
    generated = result.timings.generated_tokens
    decoded = engine.stats.decoded_tokens - decoded_at_first
    assert first is not None and prompt_done is not None
    return Run(load, encode, prompt_done - start - encode, first - start,
               decoded / (end - first), result.timings.prompt_tokens, generated,
               sampled_tps=(generated - 1) / (end - first), forced=decoded - (generated - 1))


def mtmd_cli(pair_model: Path, pair_mmproj: Path, image_path: Path, threads: int,
             n_ctx: int, prompt: str, tokens: int) -> Run:
    """llama-mtmd-cli once, with its own timings read from its log."""
    binary = llama_tool("llama-mtmd-cli")
    command = [str(binary), "-m", str(pair_model), "--mmproj", str(pair_mmproj),
               "--image", str(image_path), "-p", prompt, "-n", str(tokens), "-t", str(threads),
               "-c", str(n_ctx), "--temp", "0.6", "--top-p", "0.9", "--top-k", "50",
               "--ignore-eos", "--no-warmup", "--jinja", "--seed", "1",
               "-lv", "4"]  # its timings are logged above the default verbosity
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, errors="replace")

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append((time.perf_counter() - start, line.rstrip()))

    reader = threading.Thread(target=read)
    reader.start()
    process.wait()
    reader.join()
    if process.returncode != 0:
        raise RuntimeError("llama-mtmd-cli failed:\n" + "\n".join(t for _, t in lines[-15:]))
    text = [t for _, t in lines]
    ready = next(s for s, t in lines if "encoding mtmd batch" in t or "encoding image" in t)
    encode = sum(float(m.group(1)) for t in text
                 if (m := re.search(r"batch encoding done in (\d+) ms", t)))
    prompt_m = next(m for t in text if (m := re.search(
        r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens", t)))
    eval_m = next(m for t in text if (m := re.search(
        r"\beval time =\s*([\d.]+) ms /\s*(\d+) runs", t)))
    prompt_s = float(prompt_m.group(1)) / 1000
    eval_s, runs = float(eval_m.group(1)) / 1000, int(eval_m.group(2))
    tps = runs / eval_s if eval_s else 0.0
    return Run(ready, encode / 1000, prompt_s, encode / 1000 + prompt_s, tps,
               int(prompt_m.group(2)), runs + 1, sampled_tps=tps)


def beam_costs(session: Session, image_path: Path, tokens: int, selections: list[str],
               repeat: int) -> dict[str, float]:
    """Seconds of each search (single pass, beam 2 and 4 per selection): medians."""
    image = load_image(image_path)
    runs = {"single pass": SearchSettings(beam=1, max_stage_tokens=tokens, seed=1)}
    for select in selections:
        for beam in (2, 4):
            runs[f"beam {beam}, {select}"] = SearchSettings(
                beam=beam, select=select, max_stage_tokens=tokens, seed=1)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, settings in runs.items():
            start = time.perf_counter()
            for _event in session.ask(image, QUESTION, settings):
                pass
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def image_and_prompt_tokens(session: Session, path: Path) -> tuple[int, int]:
    """The real (libmtmd's) tokens of an image and of the rest of the question's prompt."""
    engine = session.engine
    assert engine is not None
    prompt = engine.chat_prompt(user_text(QUESTION, engine.stage_mode))
    with Bitmap(load_image(path)) as bitmap:
        tokenized = engine.tokenize_prompt(prompt, bitmap)
        image_tokens = sum(c.n_tokens for c in tokenized.chunks if c.is_image)
        prompt_tokens = tokenized.n_tokens - image_tokens
        tokenized.close()
    return image_tokens, prompt_tokens


def estimate_for(session: Session, image_tokens: int) -> int:
    """The load plan's memory estimate, made again for an image of this many tokens (the
    plan itself budgets for the family's largest image)."""
    assert session.plan is not None
    fit = check_fit(session.plan.model, session.plan.mmproj, session.plan.engine,
                    SearchSettings(beam=4), image_tokens=image_tokens)
    return fit.need.peak if fit.need else 0


def largest_image(session: Session, folder: Path) -> tuple[int, int, int, int]:
    """The family's largest image: its side after the caps, its real image tokens, the
    context a default beam-4 search needs with it, and the automatic context planned."""
    engine = session.engine
    assert engine is not None and session.plan is not None
    path = make_image(folder, 2048)
    image = load_image(path)
    image_tokens, prompt_tokens = image_and_prompt_tokens(session, path)
    need = context_need(SearchSettings(beam=4), prompt_tokens=prompt_tokens,
                        image_tokens=image_tokens)
    auto = plan(session.plan.model, session.plan.mmproj,
                EngineSettings(n_ctx=AUTO_CTX, threads=engine.settings.threads),
                SearchSettings(beam=4)).engine.n_ctx
    return max(image.width, image.height), image_tokens, need, auto


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", choices=sorted({**SHAPES, **SCALED}))
    parser.add_argument("--tokens", type=int, default=16, help="tokens per stage (default 16)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--image-side", type=int, default=448)
    parser.add_argument("--selections", default="logprob,judge")
    parser.add_argument("--no-beam", action="store_true", help="leave out the beam runs")
    args = parser.parse_args()

    shape = {**SHAPES, **SCALED}[args.shape]
    pair = build_pair(shape)
    folder = Path(tempfile.mkdtemp(prefix="stagewise-real-size-"))
    image_path = make_image(folder, args.image_side)
    ours, session = stagewise_single(pair.model, pair.mmproj, image_path, args.threads,
                                     args.tokens)
    with session:
        engine = session.engine
        assert engine is not None and session.plan is not None
        prompt = user_text(QUESTION, engine.stage_mode)
        n_ctx = session.plan.engine.n_ctx
        theirs_runs, ours_runs = [], [ours]
        for i in range(args.repeat):
            image_i = image_path if i == 0 else make_image(folder, args.image_side, i)
            theirs_runs.append(mtmd_cli(pair.model, pair.mmproj, image_i, args.threads,
                                        n_ctx, prompt, ours.tokens))
            if i + 1 < args.repeat:
                ours_runs.append(single_pass(session, make_image(folder, args.image_side, i + 1),
                                             args.tokens, ours.load))
        costs = (beam_costs(session, image_path, args.tokens, args.selections.split(","),
                            args.repeat) if not args.no_beam else {})
        side, image_tokens, need, auto_ctx = largest_image(session, folder)
        planned = session.plan.fit.need.peak if session.plan.fit.need else 0
        estimate = estimate_for(session, image_and_prompt_tokens(session, image_path)[0])
        buffers = ", ".join(f"{k} {v:.0f} MiB" for k, v in engine.weight_buffers.items())

    def med(runs: list[Run], field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs)

    print(f"{shape.name} (stands for {shape.catalogue_id}): {pair.model.name} "
          f"{pair.model.stat().st_size / 1e9:.2f} GB, {pair.mmproj.name} "
          f"{pair.mmproj.stat().st_size / 1e9:.2f} GB; threads {args.threads}; "
          f"{args.image_side}px image; {args.tokens} tokens per stage; context {n_ctx}; "
          f"median of {args.repeat}; weights: {buffers}")
    print(f"{'single pass':<24}{'Stagewise':>11}{'mtmd-cli':>11}{'ratio':>8}")
    rows = [("load (s)", "load"), ("image encode (s)", "encode"),
            ("prompt eval (s)", "prompt"), ("first token (s)", "ttft")]
    for label, field in rows:
        a, b = med(ours_runs, field), med(theirs_runs, field)
        print(f"{label:<24}{a:>11.2f}{b:>11.2f}{a / b if b else 0:>8.2f}")
    for label, field in (("decode (tokens/s)", "decode_tps"),
                         ("sampled (tokens/s)", "sampled_tps")):
        a, b = med(ours_runs, field), med(theirs_runs, field)
        print(f"{label:<24}{a:>11.2f}{b:>11.2f}{b / a if a else 0:>8.2f}"
              "   (ratio: time per token)")
    print(f"{'prompt tokens':<24}{ours.prompt_tokens:>11}{theirs_runs[0].prompt_tokens:>11}")
    print(f"{'generated tokens':<24}{ours.tokens:>11}{theirs_runs[0].tokens:>11}")
    print(f"{'stage tags decoded':<24}{ours.forced:>11}{0:>11}"
          "   (written by Stagewise when a stage spends its budget)")
    if args.repeat > 1:
        spread = ", ".join(f"{b.decode_tps / a.decode_tps:.2f}"
                           for a, b in zip(ours_runs, theirs_runs, strict=True))
        print(f"per decoded token, run by run: {spread}")
    ttft = med(ours_runs, "ttft") / med(theirs_runs, "ttft")
    per_token = med(theirs_runs, "decode_tps") / med(ours_runs, "decode_tps")
    for label, value, target in (("first token", ttft, TTFT_TARGET),
                                 ("per decoded token", per_token, DECODE_TARGET)):
        print(f"Stagewise / mtmd-cli, {label}: {value:.2f}   target <= {target:.2f}  "
              f"{'met' if value <= target else 'MISSED'}")
    if costs:
        base = costs["single pass"]
        print(f"{'search':<24}{'seconds':>11}{'x single':>9}")
        for name, t in costs.items():
            print(f"{name:<24}{t:>11.1f}{t / base:>9.2f}")
    peak = peak_rss_bytes() or 0
    ratio = estimate / peak if peak else 0
    ok = abs(ratio - 1) <= MEMORY_TOLERANCE
    print(f"memory: estimated {estimate / 2**20:.0f} MiB for this image (the plan, for the "
          f"largest image: {planned / 2**20:.0f} MiB), peak RSS {peak / 2**20:.0f} MiB, "
          f"estimated/measured {ratio:.2f}   target 0.90..1.10  {'met' if ok else 'MISSED'}")
    fits = need <= auto_ctx
    print(f"largest image: {side}px side after the family's cap, {image_tokens} image tokens; "
          f"beam 4 at the default budgets needs {need} cells, automatic context {auto_ctx}: "
          f"{'no overflow' if fits else 'OVERFLOW'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
