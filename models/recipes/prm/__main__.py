"""``python -m stagewise.models.recipes.prm ACTION``: a process reward model llama.cpp can run.

Actions:

* ``download ID HF_FOLDER``: the published weights of the catalogue's PRM ``ID`` (its
  ``weights`` repository) from Hugging Face, on request (several GB).
* ``convert HF_FOLDER --id ID``: check the folder, convert it to a text model and projector
  (F16) with the converter of the llama.cpp that the installed llama-cpp-python runs,
  quantize the text model (``--quant``, Q8_0 by default), check that "+" and "-" are single
  tokens, and register the pair in the model library as ``ID``. Then
  ``stagewise ask --select prm --scorer-model ID`` uses it.
* ``tiny HF_FOLDER``: a random-weight PRM of VL-PRM's shape on Qwen2's real tokenizer, to
  prove the conversion where no hub is reachable (``convert`` it with ``--id vl-prm-3b``).

The catalogue's PRMs (``stagewise models list``): vl-prm-3b, vl-prm-7b (VL-PRM, on
Qwen2.5-VL) and visualprm-8b-v1.1 (VisualPRM v1.1, InternVL with, probably, a Qwen2
language model; ``convert`` refuses it if it is not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stagewise.models.errors import StagewiseError

DOWNLOADED = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.py", "*.tiktoken"]
"""What ``download`` fetches: configs, weights, tokenizer files, the chat template and the
InternVL models' code (read by the converter's tokenizer loading)."""


def _parser() -> argparse.ArgumentParser:
    from stagewise.models.recipes.prm.build import DEFAULT_QUANT, QUANTS

    parser = argparse.ArgumentParser(prog="python -m stagewise.models.recipes.prm",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    download = sub.add_parser("download", help="fetch a PRM's published weights")
    download.add_argument("id", help="the catalogue id, e.g. vl-prm-3b")
    download.add_argument("folder", type=Path, help="where to put them")
    convert = sub.add_parser("convert", help="convert, check and register a downloaded PRM")
    convert.add_argument("folder", type=Path, help="the Hugging Face folder of its weights")
    convert.add_argument("--id", required=True, dest="entry_id",
                         help="its catalogue id: vl-prm-3b, vl-prm-7b or visualprm-8b-v1.1")
    convert.add_argument("--quant", choices=QUANTS, default=DEFAULT_QUANT,
                         help="the text model's quantization (%(default)s)")
    convert.add_argument("--work", type=Path,
                         help="where the F16 files are written (default: FOLDER-gguf beside "
                              "the folder)")
    convert.add_argument("--keep-f16", action="store_true",
                         help="keep the F16 text model in the work folder")
    convert.add_argument("--llama-cpp-source", type=Path,
                         help="a llama.cpp source tree with convert_hf_to_gguf.py (default: "
                              "the installed llama-cpp-python's sdist, fetched once)")
    tiny = sub.add_parser("tiny", help="write a random-weight PRM folder (the proof)")
    tiny.add_argument("folder", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.action == "download":
            _download(args)
        elif args.action == "convert":
            _convert(args)
        else:
            from stagewise.models.recipes.prm.tiny import build_tiny_prm

            _say(f"random-weight PRM (VL-PRM's shape, Qwen2's tokenizer): "
                 f"{build_tiny_prm(args.folder, seed=args.seed)}")
    except StagewiseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a folder that cannot be written
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 130
    return 0


def _say(text: str) -> None:
    print(text, flush=True)


def _download(args: argparse.Namespace) -> None:
    from stagewise.models.recipes.prm.build import prm_entry

    entry = prm_entry(args.id)
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:
        raise StagewiseError("downloading needs huggingface_hub (pip install "
                             "'stagewise[train]')") from error
    _say(f"downloading {entry.weights} ({entry.params} parameters, licence "
         f"{entry.licence or 'unknown'}: {entry.licence_url}) into {args.folder}")
    try:
        snapshot_download(entry.weights, local_dir=args.folder, allow_patterns=DOWNLOADED)
    except Exception as error:  # the hub's errors are many; the message says what happened
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise StagewiseError(f"could not download {entry.weights}: {first}") from error
    _say(f"downloaded; now: python -m stagewise.models.recipes.prm convert {args.folder} "
         f"--id {entry.id}")


def _convert(args: argparse.Namespace) -> None:
    from stagewise.models.recipes.llava_cot.converter import converter_source
    from stagewise.models.recipes.prm.build import build_prm, prm_entry

    entry = prm_entry(args.entry_id)
    folder = args.folder.resolve()
    work = args.work or folder.with_name(f"{folder.name}-gguf")
    installed = build_prm(folder, entry, work=work,
                          source=converter_source(source=args.llama_cpp_source),
                          quant=args.quant, keep_f16=args.keep_f16, log=_say)
    _say(f"use it: stagewise ask --select prm --scorer-model {installed.id} ...")


if __name__ == "__main__":
    sys.exit(main())
