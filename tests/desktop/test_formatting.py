"""Numbers for people: sizes, durations, a stage's time."""

from __future__ import annotations

import pytest

from stagewise.desktop.formatting import format_bytes, format_duration, seconds_text


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0004, "0 ms"), (0.042, "42 ms"), (0.1, "0.1 s"), (0.84, "0.8 s"), (9.96, "10.0 s"),
    (12.4, "12 s"), (125, "2 min 5 s"),
])
def test_seconds_text_never_says_a_stage_took_no_time(seconds, text):
    assert seconds_text(seconds) == text


def test_sizes_and_download_durations():
    assert format_bytes(1_234_567) == "1.2 MB"
    assert format_duration(75) == "1:15" and format_duration(9) == "9 s"
