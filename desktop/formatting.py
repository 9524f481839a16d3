"""Numbers for people, the same in the terminal and the window."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stagewise.models.events import Timings
    from stagewise.models.library.hub_transfer import DownloadProgress
    from stagewise.models.reasoning.search_backend import PrefixReport


def format_bytes(n: float) -> str:
    """``1234567`` → ``"1.2 MB"`` (decimal units, as disks and the hub count them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_duration(seconds: float) -> str:
    """``75`` → ``"1:15"``, ``9`` → ``"9 s"``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{seconds:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def seconds_text(seconds: float) -> str:
    """A duration for people: ``"40 ms"``, ``"0.8 s"``, ``"12 s"``, ``"2 min 5 s"``."""
    if seconds < 0.1:  # a small model's stage: "0.0 s" would say it took no time
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def progress_text(p: DownloadProgress) -> str:
    """``"model.gguf: 412.3 MB of 1.9 GB · 23.4 MB/s · 1:05 left"``."""
    left = f" · {format_duration(p.seconds_left)} left" if p.seconds_left is not None else ""
    return (f"{p.file}: {format_bytes(p.done)} of {format_bytes(p.total)} · "
            f"{format_bytes(round(p.bytes_per_s))}/s{left}")


def fits_text(fit: bool | None) -> str:
    """The "fits this machine" mark: yes, no, or ? while the size is unknown."""
    return {True: "yes", False: "no", None: "?"}[fit]


def ready_text(report: PrefixReport) -> str:
    """How an image became ready to ask about, for the status bar ("" when it did not)."""
    if report.origin == "encoded":
        return f"Image ready to ask: encoded in {seconds_text(report.seconds)}"
    if report.origin == "cache":
        return (f"Image ready to ask: read from the cache in {seconds_text(report.seconds)}"
                f" (encoding it took {seconds_text(report.encode_s)})")
    if report.origin == "memory":
        return "Image ready to ask"
    return ""


def prefix_text(t: Timings) -> str:
    """Where an answer's image came from, in a few words ("" for a run saved before the
    answers said)."""
    origin = t.prefix_from
    if origin == "cache":
        return f"image from the cache {seconds_text(t.cache_load_s)}"
    if origin == "encoded":
        return f"image encoded {seconds_text(t.encode_s)}" if t.encode_s else ""
    return "image ready before the question"


def sent_text(t: Timings) -> str:
    """The picture as the model saw it: its size after any downscaling and its tokens
    ("" when not known: a server's answer, or a run saved before the answers said)."""
    if not t.image_tokens:
        return ""
    width, height = t.image_size
    size = f"{width}×{height} px, " if width and height else ""
    return f"image sent as {size}{t.image_tokens} tokens"
