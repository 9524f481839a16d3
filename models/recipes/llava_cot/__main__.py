"""``python -m stagewise.models.recipes.llava_cot STEP OUT``: a LLaVA-CoT model llama.cpp can run.

Steps, in order (``all`` runs them in turn; each can be run again, and ``train`` resumes):

* ``data``: check LLaVA-CoT-100k (``--jsonl train.jsonl --images image.zip.part-aa``),
  drop and count unusable samples, hold out a validation slice; shows the data licence.
* ``train``: LoRA on the base's language model (``--base``, default Qwen2.5-VL-3B-Instruct,
  downloaded on request, or ``--base-dir`` for a local copy).
* ``merge``: the adapter merged into the base.
* ``convert``: text and projector GGUF (F16) with the converter of the llama.cpp that the
  installed llama-cpp-python runs.
* ``quantize``: Q4_K_M and Q8_0 text models (the projector stays F16).
* ``register``: the pair and its model card into the model library, as ``llava-cot-local``.
* ``evaluate``: a single pass against stage beam search on the held-out slice.

``tiny OUT`` writes the CPU proof's inputs: a tiny random Qwen2.5-VL and a synthetic
dataset in LLaVA-CoT-100k's layout (see README.md beside this file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stagewise.models.errors import StagewiseError
from stagewise.models.recipes.llava_cot.bases import BASES, DEFAULT_BASE, Base, get_base
from stagewise.models.recipes.llava_cot.workdir import Workdir

QUANTS = ("Q4_K_M", "Q8_0")
TINY_BUILDERS = {"qwen2.5-vl-3b": ("tiny_qwen", "build_tiny_qwen25vl"),
                 "qwen3-vl-4b": ("tiny_qwen", "build_tiny_qwen3vl"),
                 "gemma-3-4b": ("tiny_gemma", "build_tiny_gemma3")}
"""``tiny --base``: the builder of a random miniature of each kind of base."""
STEPS = ("data", "train", "merge", "convert", "quantize", "register", "evaluate")


def _parser() -> argparse.ArgumentParser:
    data = argparse.ArgumentParser(add_help=False)
    group = data.add_argument_group("data")
    group.add_argument("--jsonl", type=Path, help="LLaVA-CoT-100k's train.jsonl")
    group.add_argument("--images", type=Path,
                       help="its images: image.zip.part-aa (the other parts beside it), a "
                            "joined zip, or a folder")
    group.add_argument("--val-size", type=int, default=500, help="held-out samples (500)")

    seeded = argparse.ArgumentParser(add_help=False)  # data, train and evaluate read it
    seeded.add_argument("--seed", type=int, default=0,
                        help="seeds the held-out slice, training and the search (0)")

    train = argparse.ArgumentParser(add_help=False)
    group = train.add_argument_group("train")
    group.add_argument("--base", choices=sorted(BASES), default=None,
                       help=f"the base to fine-tune (default {DEFAULT_BASE})")
    group.add_argument("--base-dir", type=Path,
                       help="a local copy of the base (save_pretrained layout) instead of "
                            "downloading it; --base then says which kind it is")
    group.add_argument("--steps", type=int, default=0, help="optimizer steps (0: --epochs)")
    group.add_argument("--epochs", type=float, default=1.0)
    group.add_argument("--accumulate", type=int, default=16, help="samples per step (16)")
    group.add_argument("--lr", type=float, default=1e-4)
    group.add_argument("--rank", type=int, default=16)
    group.add_argument("--alpha", type=int, default=32)
    group.add_argument("--max-tokens", type=int, default=4096,
                       help="skip longer samples (image tokens included)")
    group.add_argument("--save-every", type=int, default=200)
    group.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    group.add_argument("--no-gradient-checkpointing", action="store_true")
    group.add_argument("--yes", action="store_true",
                       help="do not ask to confirm the data licence")

    convert = argparse.ArgumentParser(add_help=False)
    group = convert.add_argument_group("convert")
    group.add_argument("--llama-cpp-source", type=Path,
                       help="a llama.cpp source tree with convert_hf_to_gguf.py (default: "
                            "the installed llama-cpp-python's sdist, fetched once)")
    group.add_argument("--pre-tokenizer",
                       help="name the BPE pre-tokenizer (only for a home-made tokenizer "
                            "llama.cpp cannot recognise, such as the tiny proof's)")

    quant = argparse.ArgumentParser(add_help=False)
    group = quant.add_argument_group("quantize and register")
    group.add_argument("--quant", action="append", choices=QUANTS,
                       help="quantize to this (repeat; default both)")
    group.add_argument("--register-quant", choices=QUANTS, default="Q4_K_M",
                       help="the one registered and evaluated (Q4_K_M)")

    evaluate = argparse.ArgumentParser(add_help=False)
    group = evaluate.add_argument_group("evaluate")
    group.add_argument("--limit", type=int, help="only the first N held-out questions")
    group.add_argument("--beam", type=int, default=4)
    group.add_argument("--max-stage-tokens", type=int, default=256)
    group.add_argument("--ctx", type=int, default=8192)

    parser = argparse.ArgumentParser(prog="python -m stagewise.models.recipes.llava_cot",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    parents = {"data": [data, seeded], "train": [train, seeded], "merge": [train],
               "convert": [convert], "quantize": [quant], "register": [quant],
               "evaluate": [quant, evaluate, seeded],
               "all": [data, train, convert, quant, evaluate, seeded]}
    for name, parent in parents.items():
        step = sub.add_parser(name, parents=parent)
        step.add_argument("out", type=Path, help="the working folder")
    tiny = sub.add_parser("tiny", help="write the tiny proof's base model and data")
    tiny.add_argument("out", type=Path)
    tiny.add_argument("--samples", type=int, default=24)
    tiny.add_argument("--base", choices=sorted(TINY_BUILDERS), default=DEFAULT_BASE,
                      help="the kind of base to imitate (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.step == "tiny":
            return _tiny(args)
        wd = Workdir(args.out)
        args.out.mkdir(parents=True, exist_ok=True)
        for step in STEPS if args.step == "all" else (args.step,):
            _STEPS[step](wd, args)
    except StagewiseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a folder that cannot be written
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}; what was finished is kept, run "
              "the same command again to go on", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped; run the same command again to go on", file=sys.stderr)
        return 130
    return 0


def _say(text: str) -> None:
    print(text, flush=True)


def _data(wd: Workdir, args: argparse.Namespace) -> None:
    from stagewise.models.recipes.llava_cot.data import LICENCE_NOTICE, prepare

    if args.jsonl is None or args.images is None:
        if args.step == "all" and (wd.data / "train.jsonl").is_file():
            return  # prepared before
        raise StagewiseError("the data step needs --jsonl and --images")
    _say(LICENCE_NOTICE)
    report = prepare(args.jsonl, args.images, wd.data, val_size=args.val_size, seed=args.seed)
    wd.update(data={"dataset": str(args.jsonl), **report.to_json()})
    _say(report.format())


def _base(wd: Workdir, args: argparse.Namespace) -> tuple[Base, Path]:
    """The base and its folder: as recorded, or from --base / --base-dir (downloaded if
    needed)."""
    record = wd.record().get("base")
    if record and args.base is None and args.base_dir is None:
        return get_base(record["key"]), Path(record["folder"])
    base = get_base(args.base or DEFAULT_BASE)
    if args.base_dir is not None:
        folder, origin = args.base_dir.resolve(), str(args.base_dir.resolve())
    else:
        folder, origin = wd.base, base.repo
    if record and (record["folder"], record["origin"]) != (str(folder), origin):
        raise StagewiseError(f"{wd.root} was trained from {record['origin']}; use a new folder "
                             "for another base")
    if args.base_dir is None and not (folder / "config.json").is_file():
        _download_base(base, folder)
    wd.update(base={"key": base.key, "origin": origin, "folder": str(folder),
                    "licence": base.licence if args.base_dir is None else "see the base"})
    return base, folder


def _download_base(base: Base, folder: Path) -> None:
    from huggingface_hub import snapshot_download

    _say(f"downloading {base.repo} into {folder} (about {base.params} parameters)")
    try:
        snapshot_download(base.repo, local_dir=folder,
                          allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja",
                                          "*.model", "*.py"])
    except Exception as error:  # the hub's errors are many; the message says what happened
        raise StagewiseError(f"could not download {base.repo}: {error}") from error


def _train(wd: Workdir, args: argparse.Namespace) -> None:
    from stagewise.models.inference.families import family_named
    from stagewise.models.recipes.llava_cot.data import LICENCE_NOTICE, read_prepared
    from stagewise.models.recipes.llava_cot.inputs import load_prompt_builder
    from stagewise.models.recipes.llava_cot.train import TrainProgress, TrainSettings, train

    _say(LICENCE_NOTICE)  # before anything is downloaded or trained
    if not args.yes and sys.stdin.isatty() \
            and input("Train on this data under these terms? [y/N] ").strip().lower() != "y":
        raise StagewiseError("not confirmed; nothing was trained")
    base, folder = _base(wd, args)
    if args.base_dir is None:
        h100, rtx = base.gpu_hours
        _say(f"{base.repo}: one epoch of LLaVA-CoT-100k is estimated at {h100:g} h on an H100"
             + (f", {rtx:g} h on an RTX 4090" if rtx else "")
             + f", about {base.gpu_memory_gb} GB of GPU memory (estimates, see bases.py)")
    settings = TrainSettings(
        steps=args.steps, epochs=args.epochs, accumulate=args.accumulate, lr=args.lr,
        rank=args.rank, alpha=args.alpha, max_tokens=args.max_tokens,
        save_every=args.save_every, seed=args.seed, dtype=args.dtype,
        gradient_checkpointing=not args.no_gradient_checkpointing)
    samples, images = read_prepared(wd.data)

    def show(p: TrainProgress) -> None:
        minutes = p.seconds_left / 60
        _say(f"step {p.step}/{p.total} · loss {p.loss:.3f} · {p.seconds_per_step:.2f} s/step"
             f" · {minutes:.0f} min left" + (f" (resumed at {p.resumed_from})"
                                             if p.resumed_from and p.step == p.resumed_from + 1
                                             else ""))

    prompts = load_prompt_builder(folder, base.prompting,
                                  family_named(base.family).max_image_pixels)
    with images:
        result = train(folder, samples, images, wd.root, prompts, settings, progress=show)
    wd.update(training={"steps": result.steps, "accumulate": settings.accumulate,
                        "lr": settings.lr, "rank": settings.rank, "alpha": settings.alpha,
                        "dtype": settings.dtype, "first_loss": result.losses[0],
                        "final_loss": result.losses[-1], "skipped": len(result.skipped)})
    _say(f"adapter: {result.adapter} ({result.steps} steps, loss {result.losses[0]:.3f} -> "
         f"{result.losses[-1]:.3f}, {len(result.skipped)} samples skipped)")


def _merge(wd: Workdir, args: argparse.Namespace) -> None:
    from stagewise.models.recipes.llava_cot.merge import merge_adapter

    _, folder = _base(wd, args)
    dtype = wd.record().get("training", {}).get("dtype", "bf16")
    merge_adapter(folder, wd.require(wd.adapter, "train"), wd.merged, dtype=dtype)
    _say(f"merged: {wd.merged}")


def _convert(wd: Workdir, args: argparse.Namespace) -> None:
    from stagewise.models.inference.stage_mode import STAGE_MODE_KEY
    from stagewise.models.recipes.llava_cot.converter import convert, converter_source

    merged = wd.require(wd.merged, "merge")
    source = converter_source(source=args.llama_cpp_source)
    convert(merged, wd.text_f16, source=source, pre_tokenizer=args.pre_tokenizer,
            metadata={STAGE_MODE_KEY: "native"}, log=_converter_line)
    convert(merged, wd.mmproj, source=source, mmproj=True, log=_converter_line)
    wd.update(convert={"source": str(source), "pre_tokenizer": args.pre_tokenizer})
    _say(f"converted: {wd.text_f16.name}, {wd.mmproj.name}")


def _converter_line(line: str) -> None:
    """The converter's output, less its line per tensor (hundreds for a real model)."""
    if line.strip() and "shape = {" not in line:
        _say(line)


def _quantize(wd: Workdir, args: argparse.Namespace) -> None:
    from stagewise.models.build.quantize import quantize

    f16 = wd.require(wd.text_f16, "convert")
    for quant in args.quant or QUANTS:
        out = quantize(f16, wd.quantized(quant), quant)
        _say(f"quantized: {out.name} ({out.stat().st_size / 1e6:.1f} MB)")


def _register(wd: Workdir, args: argparse.Namespace) -> None:
    from stagewise.models.recipes.llava_cot.card import DATASET, ModelCard, register
    from stagewise.models.recipes.llava_cot.converter import llama_cpp_version

    model = wd.require(wd.quantized(args.register_quant), "quantize")
    record = wd.record()
    if "base" not in record:
        raise StagewiseError(f"{wd.root / 'recipe.json'} does not say which base was trained; "
                             "run the 'train' step in this folder")
    data = record.get("data", {})
    card = ModelCard(
        base=record["base"]["origin"], base_licence=record["base"]["licence"],
        data={"dataset": data.get("dataset", DATASET), "train": data.get("train"),
              "val": data.get("val")},
        training=record.get("training", {}), quant=args.register_quant,
        llama_cpp=llama_cpp_version())
    installed = register(model, wd.require(wd.mmproj, "convert"), card)
    _say(f"registered as {installed.id!r}: {installed.model}")


def _evaluate(wd: Workdir, args: argparse.Namespace) -> None:
    from stagewise.models.disk.atomic import write_atomic
    from stagewise.models.evaluation import format_report, make_configs, read_items
    from stagewise.models.evaluation.runner import evaluate
    from stagewise.models.inference.engine_settings import EngineSettings
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.session import Session, plan

    items = read_items(wd.require(wd.val, "data"), args.limit)
    configs = make_configs(["single", "stage"], args.beam, "judge")
    base = SearchSettings(seed=args.seed, max_stage_tokens=args.max_stage_tokens)
    model = wd.require(wd.quantized(args.register_quant), "quantize")
    load = plan(model, wd.require(wd.mmproj, "convert"), EngineSettings(n_ctx=args.ctx),
                configs[-1].settings(base, base.seed))
    with Session(load) as session:
        report = evaluate(session, items, configs, base_settings=base,
                          progress=lambda p: _say(f"evaluated {p.done}/{p.total}"))
    text = format_report(report)
    write_atomic(wd.eval_json, (json.dumps({"model": str(model), **report.to_json()},
                                           indent=2) + "\n").encode())
    write_atomic(wd.root / "eval.txt", text.encode())
    _say(text)


def _tiny(args: argparse.Namespace) -> int:
    from importlib import import_module

    from stagewise.models.build.puzzles import answer_text, generate_split
    from stagewise.models.recipes.llava_cot.synthetic import write_synthetic

    module, function = TINY_BUILDERS[args.base]
    build = getattr(import_module(f"stagewise.models.recipes.llava_cot.{module}"), function)
    jsonl, first_part = write_synthetic(args.out / "synthetic-data", args.samples)
    texts = [t for p in generate_split("train", 200, 1, set()) for t in (p.question,
                                                                        answer_text(p))]
    base = build(args.out / "tiny-base", texts)
    _say(f"tiny base ({args.base} in miniature): {base}\n"
         f"synthetic data: {jsonl}, images {first_part}")
    return 0


_STEPS = {"data": _data, "train": _train, "merge": _merge, "convert": _convert,
          "quantize": _quantize, "register": _register, "evaluate": _evaluate}

if __name__ == "__main__":
    sys.exit(main())
