"""Each setting's range is written once: the engine, the search, the CLI and the dialog agree.

The beam width's range is :data:`~stagewise.models.reasoning.search_settings.BEAM`, the
context size's :data:`~stagewise.models.inference.engine_settings.N_CTX`. Each consumer is
probed at both ends and one past them, through its real interface: the engine (a real
load, or a refusal before the model files are read), the search, ``stagewise``'s argument
parser, and the dialog's spin boxes.
"""

from __future__ import annotations

from collections.abc import Callable

from stagewise.desktop import cli
from stagewise.desktop.question_box import QuestionBox
from stagewise.desktop.settings_dialog import SettingsDialog
from stagewise.models.errors import ModelFileError, StagewiseError
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import AUTO_CTX, N_CTX, EngineSettings
from stagewise.models.reasoning.auto_beam import AUTO_BEAM
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import StageSearch
from stagewise.models.reasoning.search_settings import BEAM, SearchSettings
from stagewise.models.session import sequences_reserved
from stagewise.models.storage.app_settings import AppSettings


def accepted_range(accepts: Callable[[int], bool], low: int, high: int) -> tuple[int, int]:
    """The range a consumer shows: both ends must be accepted and one past each refused
    (else the end that fails is returned in its place, and the comparison fails)."""
    assert accepts(low) and accepts(high), (low, high)
    assert not accepts(low - 1), f"{low - 1} accepted"
    assert not accepts(high + 1), f"{high + 1} accepted"
    return low, high


def cli_accepts(*args: str) -> Callable[[int], bool]:
    """Whether ``stagewise`` parses its arguments with the value appended."""

    def accepts(value: int) -> bool:
        try:
            cli.build_parser().parse_args([*args, str(value)])
        except SystemExit:
            return False
        return True

    return accepts


ASK = ("ask", "--image", "x.png", "--question", "?")


def test_the_beam_width_has_one_range(qtbot, tiny_pair, capsys):
    bounds = (BEAM.low, BEAM.high)
    # the search, on an engine with room for the widest beam
    with Engine(tiny_pair.model, tiny_pair.mmproj,
                EngineSettings(n_ctx=512, n_seq_max=sequences_reserved(), threads=1)) as engine:
        backend = LlamaBackend(engine)

        def search_accepts(beam: int) -> bool:
            try:
                StageSearch(backend, SearchSettings(beam=beam))
            except StagewiseError as error:
                assert "beam must be a whole number" in str(error)
                return False
            return True

        assert accepted_range(search_accepts, *bounds) == bounds
    # the CLI: ask, eval and the window's option
    for args in ((*ASK, "--beam"), ("eval", "--demo", "--beam"), ("--beam",)):
        assert accepted_range(cli_accepts(*args), *bounds) == bounds, args
    capsys.readouterr()
    # the widgets: Preferences and the question box
    dialog = SettingsDialog(AppSettings())
    box = QuestionBox()
    qtbot.addWidget(dialog)
    qtbot.addWidget(box)
    for spin in (dialog.beam_spin, box.beam):  # below the range, one more value: auto
        assert (spin.minimum(), spin.maximum()) == (bounds[0] - 1, bounds[1])
        assert spin.minimum() == AUTO_BEAM and spin.specialValueText() == "auto"


def test_the_context_size_has_one_range(qtbot, tiny_pair, tmp_path, capsys):
    bounds = (N_CTX.low, N_CTX.high)
    missing = tmp_path / "missing.gguf"

    def engine_accepts(n_ctx: int) -> bool:
        """Refused values never reach the files; accepted ones fail only on the missing one."""
        try:
            Engine(missing, tiny_pair.mmproj, EngineSettings(n_ctx=n_ctx))
        except ModelFileError as error:
            assert error.path == missing
            return True
        except StagewiseError as error:
            assert "n_ctx must be a whole number" in str(error)
            return False
        raise AssertionError("a missing model loaded")

    assert accepted_range(engine_accepts, *bounds) == bounds
    with Engine(tiny_pair.model, tiny_pair.mmproj,
                EngineSettings(n_ctx=N_CTX.low, n_seq_max=1, threads=1)) as smallest:
        assert smallest.n_ctx == N_CTX.low  # llama.cpp really makes the smallest one
    # the CLI's --ctx takes the range and "auto" (0)
    for args in ((*ASK, "--ctx"), ("eval", "--demo", "--ctx")):
        assert accepted_range(cli_accepts(*args), *bounds) == bounds, args
        assert cli_accepts(*args)(AUTO_CTX)
    capsys.readouterr()
    # the dialog: Automatic (0), then the range; a value below it is raised to the floor
    dialog = SettingsDialog(AppSettings())
    qtbot.addWidget(dialog)
    assert (dialog.ctx_spin.minimum(), dialog.ctx_spin.maximum()) == (AUTO_CTX, N_CTX.high)
    for shown, kept in ((AUTO_CTX, AUTO_CTX), (1, N_CTX.low), (N_CTX.low - 1, N_CTX.low),
                        (N_CTX.low, N_CTX.low), (N_CTX.high, N_CTX.high)):
        dialog.ctx_spin.setValue(shown)
        assert dialog.settings().engine.n_ctx == kept, shown
    assert dialog.settings().validated().engine.n_ctx == N_CTX.high


def test_the_settings_file_keeps_the_same_ranges(tmp_path):
    from stagewise.models.storage.app_settings import load_settings

    def stored(section: str, key: str) -> Callable[[int], bool]:
        def accepts(value: int) -> bool:
            path = tmp_path / f"{key}-{value}.json"
            path.write_text(f'{{"version": 2, "{section}": {{"{key}": {value}}}}}')
            return getattr(getattr(load_settings(path), section), key) == value

        return accepts

    assert accepted_range(stored("search", "beam"), BEAM.low, BEAM.high) == (BEAM.low, BEAM.high)
    assert accepted_range(stored("engine", "n_ctx"), N_CTX.low, N_CTX.high) == (
        N_CTX.low, N_CTX.high)
