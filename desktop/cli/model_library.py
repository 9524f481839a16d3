"""``stagewise models list | info | pull | rm | import``: the model library in the terminal."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from stagewise.desktop.cli.progress_line import ProgressLine
from stagewise.desktop.formatting import fits_text, format_bytes, progress_text
from stagewise.models.errors import Cancelled, StagewiseError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``models`` command and its subcommands to the ``stagewise`` parser."""
    models = sub.add_parser("models", help="list, download, import and remove models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = msub.add_parser("list", help="the catalogue and what is installed")
    listing.add_argument("--installed", action="store_true", help="only installed models")
    info = msub.add_parser("info", help="everything known about one model")
    info.add_argument("id")
    pull = msub.add_parser("pull", help="download a catalogue model (resumes if interrupted)")
    pull.add_argument("id")
    rm = msub.add_parser("rm", help="remove an installed model (imported files are kept)")
    rm.add_argument("id")
    imp = msub.add_parser("import", help="use local GGUF files (they stay where they are)")
    imp.add_argument("model", type=Path, help="the text model GGUF")
    imp.add_argument("mmproj", type=Path, nargs="?",
                     help="its projector GGUF (default: the one beside the model)")
    imp.add_argument("--name", help="what to call it (default: the file name)")


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run a ``models`` subcommand; returns the exit status (errors raise StagewiseError)."""
    from stagewise.models.library.installed import Library

    library = Library()
    match args.models_command:
        case "list":
            return _list(library, args.installed, out)
        case "info":
            return _info(library, args.id, out)
        case "pull":
            return _pull(library, args.id, out, err)
        case "rm":
            gone = library.remove(args.id)
            kept = " (its files were kept)" if gone.source == "imported" else ""
            print(f"removed {gone.id}{kept}", file=out)
            return 0
        case "import":
            added = library.import_files(args.model, args.mmproj, args.name)
            print(f"imported {added.id}: {added.model} + {added.mmproj.name}", file=out)
            return 0
    raise StagewiseError(f"unknown models action {args.models_command!r}")


VERIFIER = "process reward model, scores steps for --select prm"
"""What a verifier (a [[prm]] catalogue entry) is, beside its name."""


def _list(library: object, installed_only: bool, out: TextIO) -> int:
    from stagewise.models.hardware import detect_hardware
    from stagewise.models.library.catalogue import load_catalogue
    from stagewise.models.library.installed import rough_fit

    hardware = detect_hardware()
    installed = {m.id: m for m in library.installed()}
    rows = [("", "ID", "SIZE", "FITS", "NAME")]
    for entry in load_catalogue():
        if installed_only and entry.id not in installed:
            continue
        mark = "*" if entry.id in installed else ""
        size = installed[entry.id].size if entry.id in installed else entry.total_bytes
        name = f"{entry.name}: {VERIFIER}" if entry.verifier else entry.name
        rows.append((mark, entry.id, format_bytes(size) if size else "?",
                     fits_text(rough_fit(size, hardware)), name))
    for model in installed.values():
        if model.source == "imported":
            fit = rough_fit(model.size, hardware)
            rows.append(("*", model.id, format_bytes(model.size), fits_text(fit),
                         f"{model.name} (imported)"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4],
              file=out)
    print("\n* installed. FITS: whether its files fit in this machine's free memory "
          f"({format_bytes(hardware.ram_available)} RAM"
          + (f", {format_bytes(hardware.gpu_free)} GPU" if hardware.gpus else "") + ").", file=out)
    return 0


def _info(library: object, model_id: str, out: TextIO) -> int:
    from stagewise.models.library.catalogue import find_entry

    installed = library.find(model_id)
    try:
        entry = find_entry(model_id)
    except StagewiseError:
        if installed is None:
            raise
        entry = None
    if entry is not None:
        print(f"{entry.name}  [{entry.id}]", file=out)
        if entry.verifier:
            _verifier_lines(entry, out)
        else:
            print(f"  family {entry.family}, {entry.params}, {entry.quant}, "
                  f"stages {entry.stage_mode}" + (", thinking" if entry.thinking else ""),
                  file=out)
        if entry.repo:
            print(f"  from https://huggingface.co/{entry.repo} ({entry.revision})", file=out)
        unknown = "built on this machine" if entry.local else "size from the hub"
        for item in (entry.model, entry.mmproj):
            size = format_bytes(item.size) if item.size else unknown
            print(f"  {item.name}  {size}", file=out)
        print(f"  licence {entry.licence}  {entry.licence_url}", file=out)
        if entry.trained_for:
            print(f"  trained for: {entry.trained_for}", file=out)
        if entry.notes:
            print(f"  note: {entry.notes}", file=out)
        for source in entry.sources:
            print(f"  source: {source}", file=out)
    if installed is not None:
        state = "installed" if installed.present else "installed, but files are missing"
        print(f"  {state}: {installed.model}\n  {' ' * len(state)}  {installed.mmproj}",
              file=out)
    elif entry is not None and entry.local:
        print(f"  not built yet: {entry.build_command}", file=out)
    else:
        print(f"  not installed: stagewise models pull {model_id}", file=out)
    return 0


def _verifier_lines(entry: object, out: TextIO) -> None:
    """What a process reward model is for, where its weights are and its prompt."""
    print(f"  {VERIFIER} --scorer-model {entry.id}; it does not answer questions", file=out)
    print(f"  family {entry.family}, {entry.params}, {entry.quant}", file=out)
    print(f"  weights https://huggingface.co/{entry.weights}, converted on this machine",
          file=out)
    if entry.system_prompt:
        first = entry.system_prompt.splitlines()[0]
        print(f"  its own system message, written into the GGUF: {first[:72]}…", file=out)


def _pull(library: object, model_id: str, out: TextIO, err: TextIO) -> int:
    from stagewise.models.library.catalogue import find_entry

    entry = find_entry(model_id)
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    meter = _Meter(err)
    try:
        model = library.pull(entry, progress=meter.show, cancel=cancel)
    except Cancelled:
        meter.done()
        print(f"stopped; run `stagewise models pull {model_id}` again to resume", file=err)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    meter.done()
    print(f"installed {model.id}: {model.model}", file=out)
    return 0


class _Meter:
    """A one-line download meter on a terminal; a line every few seconds otherwise."""

    def __init__(self, err: TextIO) -> None:
        self.line = ProgressLine(err)
        self.last = 0.0

    def show(self, p: object) -> None:
        now = time.monotonic()
        if not self.line.tty and now - self.last < 5 and p.done < p.total:
            return
        self.last = now
        self.line.show(progress_text(p))

    def done(self) -> None:
        self.line.keep()

