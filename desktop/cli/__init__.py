"""The ``stagewise`` command: the window, or one of ``ask``, ``models``, ``eval``, ``doctor``.

With no command it opens the window (:mod:`stagewise.desktop.app`). Each command is a module with
``add_parser`` and ``run``: :mod:`stagewise.desktop.cli.ask`,
:mod:`stagewise.desktop.cli.model_library`, :mod:`stagewise.desktop.cli.evaluate` and
:mod:`stagewise.desktop.cli.doctor`. Bad input ends with a one-line message on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stagewise.models.errors import StagewiseError
from stagewise.models.stages import STAGES, Stage

# The commands' modules (and the core they import) load inside main(), so that Ctrl+C
# while they load is main()'s to answer, in one line.

EXIT_INTERRUPTED = 130
EXIT_ERROR = 2


def ensure_std_streams() -> None:
    """Give Python a stdout and stderr where there are none.

    A windowed bundle (``pythonw``, PyInstaller's ``console=False``) starts with
    ``sys.stdout`` and ``sys.stderr`` set to None; the first ``print`` or log record, ours
    or a library's, would then raise. They go to the null device instead.
    """
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


def build_parser() -> argparse.ArgumentParser:
    """The parser of the window's options and of every command."""
    from stagewise.desktop.cli import ask, batch, doctor, evaluate, model_library
    from stagewise.desktop.cli.args import beam_width_or_auto

    parser = argparse.ArgumentParser(
        prog="stagewise",
        description="Answer questions about images with visible, staged reasoning. "
                    "With no command, opens the window.",
    )
    window = parser.add_argument_group("the window")
    window.add_argument("--self-test", action="store_true",
                        help="open the window, answer a built-in question about a built-in "
                             "image, exit 0 only if all four stages arrived")
    window.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="with --self-test: save a screenshot of the window at the end")
    window.add_argument("--show-candidates", choices=[s.value for s in STAGES], metavar="STAGE",
                        help="with --self-test: open this stage's candidates before the "
                             "screenshot (summary, caption, reasoning or conclusion)")
    window.add_argument("--startup-report", type=Path, metavar="FILE",
                        help=argparse.SUPPRESS)  # the packaging check's launch timer
    window.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="with --self-test: give up after this long (default 300)")
    window.add_argument("--model", dest="window_model", type=Path, metavar="GGUF",
                        help="text model GGUF for this session (default: the one in Settings)")
    window.add_argument("--mmproj", dest="window_mmproj", type=Path, metavar="GGUF",
                        help="projector GGUF for this session")
    window.add_argument("--beam", dest="window_beam", type=beam_width_or_auto, metavar="N",
                        help="candidates per stage for this session, or auto (default: "
                             "Settings)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    ask.add_parser(sub)
    batch.add_parser(sub)
    model_library.add_parser(sub)
    evaluate.add_parser(sub)
    doctor.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``stagewise`` command.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 when all went well, :data:`EXIT_ERROR` after an error.
    """
    try:
        return _run(argv)
    except KeyboardInterrupt:  # Ctrl+C before a command set its own handler (loading, say)
        print("stagewise: stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(argv: Sequence[str] | None) -> int:
    ensure_std_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if (args.screenshot or args.show_candidates) and not args.self_test:
            parser.error("--screenshot and --show-candidates go with --self-test")
        from stagewise.desktop.app import WindowOptions, run_window

        return run_window(WindowOptions(
            self_test=args.self_test, screenshot=args.screenshot, model=args.window_model,
            mmproj=args.window_mmproj, beam=args.window_beam, timeout_s=args.timeout,
            startup_report=args.startup_report,
            show_candidates=Stage(args.show_candidates) if args.show_candidates else None))
    from stagewise.desktop.cli import ask, batch, doctor, evaluate, model_library

    try:
        if args.command == "models":
            return model_library.run(args)
        if args.command == "eval":
            return evaluate.run(args)
        if args.command == "doctor":
            return doctor.run(args)
        if args.command == "batch":
            return batch.run(args)
        return ask.run(args)
    except StagewiseError as error:
        print(f"stagewise: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, MemoryError) as error:
        print(f"stagewise: error: {error}", file=sys.stderr)
        return EXIT_ERROR
