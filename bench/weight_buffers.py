"""What llama.cpp's extra CPU weight buffers are worth, measured side by side in one run.

Usage::

    python bench/weight_buffers.py [--steps 32] [--repeat 5] [--threads 2]

The engine lets llama.cpp use the CPU backend's extra buffer types (CPU_REPACK, and AMX on
builds that offer it) except where AMX is offered, where it turns them all off
(:mod:`stagewise.models.inference.cpu_buffers`). This bench loads each model twice, once with the
extra types (*on*: the default where AMX is not offered, or AMX opted in where it is) and
once without (*off*: what the engine does by default where AMX is offered), and measures
in interleaved rounds:

* a prompt of 256 tokens evaluated in one batch (ms);
* decode steps of 1 sequence and of 4 sequences together, as a beam of 4 decodes (ms per
  step);

for the shipped demo model (Q8_0) and a random-weight llama (n_embd 1024, 8 layers, about
100 M parameters) in F16, Q8_0, Q4_K_M and Q4_0. It prints the weights' buffer types and
the ratio off / on of each figure's median: above 1 means the extra types help.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from unittest import mock

from stagewise.models.build.quantize import quantize
from stagewise.models.build.tiny_vlm import TinySpec, write_tiny_pair
from stagewise.models.inference import cpu_buffers
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.library.demo import demo_pair

LARGER = TinySpec(name="buffers", n_embd=1024, n_layer=8, n_head=16, n_head_kv=8, n_ff=2816,
                  n_ctx_train=4096, image_size=64, patch_size=16, v_embd=64, v_layer=2,
                  v_head=2, v_ff=128)
PROMPT = 256
BEAM = 4


def _forced_off() -> AbstractContextManager[object]:
    """Load as the engine does where AMX is offered: no extra buffer types at all."""
    real = cpu_buffers.offered_extra_buffers()
    return mock.patch.object(cpu_buffers, "offered_extra_buffers",
                             lambda: (cpu_buffers.AMX_BUFFER, *real))


def load(model: Path, mmproj: Path, extra: bool, threads: int) -> Engine:
    settings = EngineSettings(n_ctx=2048, n_batch=512, n_seq_max=BEAM + 1, threads=threads,
                              allow_amx=extra)
    with nullcontext() if extra else _forced_off():
        return Engine(model, mmproj, settings)


def prompt_ms(engine: Engine) -> float:
    engine.clear()
    tokens = [i % 200 + 10 for i in range(PROMPT)]
    start = time.perf_counter()
    engine.decode(tokens, list(range(PROMPT)), [0] * PROMPT, [False] * (PROMPT - 1) + [True])
    return (time.perf_counter() - start) * 1e3


def decode_ms(engine: Engine, n_seq: int, steps: int) -> float:
    """Milliseconds per decode step of ``n_seq`` sequences after a 32-token prefix."""
    engine.clear()
    engine.decode(list(range(10, 42)), list(range(32)), [0] * 32, [False] * 31 + [True])
    for seq in range(1, n_seq):
        engine.copy_seq(0, seq)
    start = time.perf_counter()
    for step in range(steps):
        engine.decode([11 + step % 50] * n_seq, [32 + step] * n_seq, list(range(n_seq)),
                      [True] * n_seq)
    return (time.perf_counter() - start) * 1e3 / steps


MEASURES: dict[str, Callable[[Engine, int], float]] = {
    f"prompt {PROMPT} (ms)": lambda e, _steps: prompt_ms(e),
    "decode 1 seq (ms/step)": lambda e, steps: decode_ms(e, 1, steps),
    f"decode {BEAM} seqs (ms/step)": lambda e, steps: decode_ms(e, BEAM, steps),
}


def _buffers(engine: Engine) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in engine.weight_buffers.items()) + " MiB"


def bench(name: str, model: Path, mmproj: Path, steps: int, repeat: int, threads: int) -> None:
    engines = {"on": load(model, mmproj, True, threads), "off": load(model, mmproj, False,
                                                                        threads)}
    try:
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeat):
            for label, measure in MEASURES.items():
                for mode, engine in engines.items():
                    times.setdefault((label, mode), []).append(measure(engine, steps))
        print(f"\n{name}")
        for mode, engine in engines.items():
            print(f"  weights, extra {mode:>3}: {_buffers(engine)}")
        print(f"  {'':28} {'on':>9} {'off':>9} {'off/on':>7}")
        for label in MEASURES:
            on = statistics.median(times[(label, "on")])
            off = statistics.median(times[(label, "off")])
            print(f"  {label:28} {on:9.2f} {off:9.2f} {off / on:7.2f}")
    finally:
        for engine in engines.values():
            engine.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=32, help="decode steps per measure")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    offered = cpu_buffers.offered_extra_buffers()
    print(f"extra CPU buffer types offered here: {', '.join(offered) or 'none'}")
    print(f"the engine's default here: {cpu_buffers.choose_weight_buffers().reason}")
    demo = demo_pair()
    if demo is not None:
        bench("demo model (Q8_0)", demo.model, demo.mmproj, args.steps, args.repeat,
              args.threads)
    with tempfile.TemporaryDirectory() as temp:
        pair = write_tiny_pair(Path(temp), LARGER)
        bench("random llama, 100 M parameters, F16", pair.model, pair.mmproj, args.steps,
              args.repeat, args.threads)
        for quant in ("Q8_0", "Q4_K_M", "Q4_0"):
            quantized = quantize(pair.model, Path(temp) / f"m-{quant}.gguf", quant)
            bench(f"random llama, 100 M parameters, {quant}", quantized, pair.mmproj,
                  args.steps, args.repeat, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
