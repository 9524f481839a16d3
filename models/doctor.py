"""What ``stagewise doctor`` and Help → Diagnostics show: one report for bug reports.

:func:`collect` gathers the facts that need no model (versions, llama.cpp's system info,
devices, the weight-buffer decision, folders, installed models and whether each pair
validates); :func:`smoke_answer` loads a pair and answers one question about the example
picture. The front ends run the smoke answer in a child process, so that a crash inside
llama.cpp becomes a line of the report instead of the end of the program.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from stagewise.models.disk.paths import cache_dir, config_dir, data_dir
from stagewise.models.errors import StagewiseError
from stagewise.models.storage.app_settings import AppSettings, settings_path

SMOKE_QUESTION = "How many shapes are there?"
STAGE_NAMES = ("summary", "caption", "reasoning", "conclusion")


@dataclass(frozen=True)
class Section:
    """A titled block of the report: ``(label, value)`` rows."""

    title: str
    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SmokeResult:
    """How one answer from a model pair went.

    Attributes:
        ok: All four stages arrived, each non-empty.
        model: The text model file used.
        seconds: Load and answer together, wall time.
        conclusion: The answer's conclusion ("" when none).
        weight_buffers: MiB of weights per llama.cpp buffer type, as the load reported.
        buffer_reason: The engine's weight-buffer decision.
        error: Why it failed; "" when it did not.
        memory: The load plan's estimated bytes and the child's measured peak resident
            bytes (:func:`~stagewise.models.hardware.process_memory.memory_report`).
    """

    ok: bool
    model: str = ""
    seconds: float = 0.0
    conclusion: str = ""
    weight_buffers: dict[str, float] = field(default_factory=dict)
    buffer_reason: str = ""
    error: str = ""
    memory: dict[str, int | None] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SmokeResult:
        """The result a child process printed.

        Raises:
            ValueError: The text is not such a result.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
            raise ValueError("not a smoke result")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def section(self) -> Section:
        rows: list[tuple[str, str]] = [("model", self.model or "(none)")]
        if self.ok:
            rows += [("result", f"passed: four stages in {self.seconds:.2f} s, "
                                f"load included"),
                     ("conclusion", self.conclusion)]
        else:
            rows.append(("result", f"FAILED: {self.error}"))
        estimated, peak = self.memory.get("estimated_bytes"), self.memory.get("peak_rss_bytes")
        if estimated and peak:
            rows.append(("memory", f"estimated {estimated / 2**20:.0f} MiB, peak resident "
                                   f"{peak / 2**20:.0f} MiB (the process's; estimate / peak "
                                   f"{estimated / peak:.2f})"))
        if self.weight_buffers:
            rows.append(("weights in", ", ".join(f"{name} {mib:.1f} MiB" for name, mib
                                                 in self.weight_buffers.items())))
        return Section("Smoke answer", tuple(rows))


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _about() -> Section:
    frozen = " (installed bundle)" if getattr(sys, "frozen", False) else ""
    return Section("Stagewise", (
        ("version", _version("stagewise") + frozen),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("system", f"{platform.platform()} on {platform.machine()}"),
        ("processor", _cpu_name()),
    ))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _llama() -> Section:
    import llama_cpp
    from llama_cpp import llama_cpp as lc

    from stagewise.models.inference.llama_runtime import supports_gpu_offload

    info = lc.llama_print_system_info().decode("utf-8", "replace").strip()
    return Section("llama.cpp", (
        ("llama-cpp-python", getattr(llama_cpp, "__version__", "unknown")),
        ("library", str(Path(llama_cpp.__file__).parent / "lib")),
        ("GPU offload", "yes" if supports_gpu_offload() else "no (CPU-only build)"),
        ("system info", info),
    ))


def _devices() -> Section:
    from stagewise.models.hardware import detect_hardware

    hardware = detect_hardware()
    rows = [(d.name, f"{d.description} ({d.kind}): {_size(d.free_bytes)} free of "
                     f"{_size(d.total_bytes)}") for d in hardware.devices]
    rows.append(("RAM", f"{_size(hardware.ram_available)} available of "
                        f"{_size(hardware.ram_total)}"))
    rows.append(("CPU threads", str(hardware.cpu_count)))
    return Section("Devices", tuple(rows))


def _buffers(settings: AppSettings) -> Section:
    from stagewise.models.inference.cpu_buffers import choose_weight_buffers

    choice = choose_weight_buffers(settings.engine.allow_amx)
    return Section("Weight buffers", (
        ("offered", ", ".join(choice.offered) or "none"),
        ("used", ", ".join(choice.allowed) or "plain CPU memory only"),
        ("why", choice.reason),
    ))


def _folders() -> Section:
    return Section("Folders", (
        ("data", str(data_dir())),
        ("config", str(config_dir())),
        ("settings", str(settings_path())),
        ("cache", str(cache_dir())),
    ))


def _check(model: Path, mmproj: Path) -> str:
    from stagewise.models.inference.gguf_check import check_pair

    try:
        check_pair(model, mmproj)
    except StagewiseError as error:
        return f"does not validate: {error}"
    return "validates"


def _models(settings: AppSettings) -> Section:
    from stagewise.models.library.defaults import resolve_pair
    from stagewise.models.library.installed import Library

    rows: list[tuple[str, str]] = []
    try:
        chosen = resolve_pair(settings.model, settings.mmproj)
        rows.append(("in use", f"{chosen.model} + {chosen.mmproj.name}: "
                               f"{_check(chosen.model, chosen.mmproj)}"))
    except StagewiseError as error:
        rows.append(("in use", f"cannot be found: {error}"))
    installed = Library().installed()
    for item in installed:
        state = _check(item.model, item.mmproj) if item.present else "files missing"
        rows.append((item.id, f"{item.model}: {state}"))
    if not installed:
        rows.append(("library", "no models installed (the built-in demo model is used)"))
    return Section("Models", tuple(rows))


def collect(settings: AppSettings) -> list[Section]:
    """Every section but the smoke answer; nothing here loads a model.

    A section that cannot be gathered says why in its place.
    """
    sections = []
    for title, part in (("Stagewise", _about), ("llama.cpp", _llama), ("Devices", _devices),
                        ("Weight buffers", lambda: _buffers(settings)),
                        ("Folders", _folders), ("Models", lambda: _models(settings))):
        try:
            sections.append(part())
        except Exception as error:  # a report must survive what it reports on
            sections.append(Section(title, (("error", f"{type(error).__name__}: {error}"),)))
    return sections


def smoke_answer(model: Path | None = None, mmproj: Path | None = None,
                 allow_amx: bool = False) -> SmokeResult:
    """Load a pair (the built-in demo model by default) and answer one question, greedily.

    Never raises for a model or engine failure: the result says what went wrong.
    """
    from stagewise.models.events import AnswerFinished
    from stagewise.models.hardware.process_memory import memory_report
    from stagewise.models.inference.engine_settings import EngineSettings
    from stagewise.models.inference.images import load_image
    from stagewise.models.inference.sampling_settings import SamplingSettings
    from stagewise.models.library.demo import example_image
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.session import Session, plan

    start = time.perf_counter()
    name = ""
    try:
        search = SearchSettings(beam=1, sampling=SamplingSettings(temperature=0.0))
        load = plan(model, mmproj, EngineSettings(allow_amx=allow_amx), search)
        name = str(load.model)
        image = load_image(example_image())
        with Session(load) as session:
            result = None
            for event in session.ask(image, SMOKE_QUESTION, search):
                if isinstance(event, AnswerFinished):
                    result = event.result
            engine = session.engine
            buffers, reason = dict(engine.weight_buffers), engine.buffer_choice.reason
        memory = memory_report(load.fit.need)
    except (StagewiseError, OSError, MemoryError) as error:
        return SmokeResult(False, name, time.perf_counter() - start, error=str(error))
    seconds = time.perf_counter() - start
    stages = result.to_json().get("stages", {}) if result is not None else {}
    missing = [s for s in STAGE_NAMES if not str(stages.get(s, "")).strip()]
    return SmokeResult(
        not missing, name, seconds, str(stages.get("conclusion", "")).strip(), buffers,
        reason, error=f"stages missing: {', '.join(missing)}" if missing else "",
        memory=memory)


def render(sections: list[Section]) -> str:
    """The report as plain text, for a terminal, a dialog and a bug report alike."""
    out: list[str] = []
    for section in sections:
        out.append(f"== {section.title} ==")
        width = max((len(label) for label, _ in section.rows), default=0)
        out += [f"  {label.ljust(width)}  {value}" for label, value in section.rows]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
